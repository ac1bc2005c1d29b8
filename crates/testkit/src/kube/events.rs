//! Events in two API groups over one store, as the real API server keeps them:
//! core/v1 `events` and events.k8s.io/v1 `events` are two versions of one
//! resource. The store holds the core/v1 shape; requests to events.k8s.io/v1
//! are converted on the way in and out with the field mapping of the
//! upstream conversion (`regarding` is `involvedObject`, `note` is
//! `message`, `deprecatedCount` is `count`, and so on).

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde_json::{Map, Value, json};

use super::store::{self, ApiError, Store, Target};
use super::types::ResourceType;

/// (events.k8s.io/v1 field, core/v1 field) for the fields whose names differ.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

/// Whether `rt` is events.k8s.io's Event, whose objects live as core/v1 ones.
pub(crate) fn is_events_v1(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

fn rename(object: &Value, from_new: bool) -> Value {
    let Some(fields) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (field, value) in fields {
        let renamed = RENAMED.iter().find_map(|(new, core)| match from_new {
            true if field == new => Some(*core),
            false if field == core => Some(*new),
            _ => None,
        });
        out.insert(renamed.unwrap_or(field).to_string(), value.clone());
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 Event in the core/v1 shape.
fn to_core(object: &Value) -> Value {
    let mut core = rename(object, true);
    if core.get("apiVersion").is_some() {
        core["apiVersion"] = json!("v1");
    }
    core
}

/// A core/v1 Event (or a list of them) in the events.k8s.io/v1 shape.
fn from_core(answer: &Value) -> Value {
    if let Some(items) = answer["items"].as_array() {
        let mut list = answer.clone();
        list["apiVersion"] = json!("events.k8s.io/v1");
        list["items"] = Value::Array(items.iter().map(from_core).collect());
        return list;
    }
    let mut object = rename(answer, false);
    if object["kind"] == "Event" {
        object["apiVersion"] = json!("events.k8s.io/v1");
    }
    object
}

/// A field selector of events.k8s.io (`regarding.name=x`) in core/v1 field labels.
fn core_selector(selector: &str) -> String {
    selector
        .split(',')
        .map(|clause| {
            let field_end = clause.find(['=', '!']).unwrap_or(clause.len());
            let (field, rest) = clause.split_at(field_end);
            let (head, tail) = field.split_once('.').unwrap_or((field, ""));
            let head = RENAMED
                .iter()
                .find(|(new, _)| *new == head.trim())
                .map_or(head, |(_, core)| core);
            match tail {
                "" => format!("{head}{rest}"),
                tail => format!("{head}.{tail}{rest}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Answers a request to events.k8s.io/v1 `events` from the core/v1 objects:
/// `answer` is the double's handling of a request to a target.
pub(crate) fn serve_v1(
    store: &mut Store,
    method: &Method,
    headers: &HeaderMap,
    target: &Target,
    query: &[(String, String)],
    body: &Bytes,
    answer: impl Fn(&mut Store, &Target, &[(String, String)], &Bytes) -> Result<(u16, Value), ApiError>,
) -> Result<(u16, Value), ApiError> {
    let core_type = store
        .types()
        .into_iter()
        .find(|t| t.group.is_empty() && t.plural == "events")
        .expect("the built-in types include core/v1 events");
    let core = Target {
        rt: core_type,
        ..target.clone()
    };
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| match k.as_str() {
            "fieldSelector" => (k.clone(), core_selector(v)),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    let parse = |body: &Bytes| -> Result<Value, ApiError> {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
    };
    let is_merge = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("merge-patch+json"));
    let core_body = match method.as_str() {
        "POST" | "PUT" => {
            Bytes::from(serde_json::to_vec(&to_core(&parse(body)?)).expect("JSON values serialise"))
        }
        // A merge patch names events.k8s.io fields: patch the converted object
        // and store it back whole.
        "PATCH" if is_merge => {
            let live = store.get(&core)?;
            let mut converted = from_core(&live);
            store::merge_patch(&mut converted, &parse(body)?);
            let core_object = to_core(&converted);
            let (code, value) = store.update(&core, core_object, &Default::default())?;
            return Ok((code, from_core(&value)));
        }
        _ => body.clone(),
    };
    let (code, value) = answer(store, &core, &query, &core_body)?;
    Ok((code, from_core(&value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_both_ways() {
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "regarding": {"name": "front-end"}, "note": "released", "deprecatedCount": 2});
        let core = to_core(&new);
        assert_eq!(core["involvedObject"]["name"], "front-end");
        assert_eq!(core["message"], "released");
        assert_eq!(core["count"], 2);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(from_core(&core), new);
    }

    #[test]
    fn selectors_name_core_fields() {
        assert_eq!(
            core_selector("regarding.name=front-end,reportingController=fluxd"),
            "involvedObject.name=front-end,reportingComponent=fluxd"
        );
    }
}
