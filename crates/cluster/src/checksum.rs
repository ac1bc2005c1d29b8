//! The marks a sync leaves on what it applies: the GC mark label (which sync set and
//! which resource the object belongs to) and the checksum annotation (which manifest
//! it was applied from), and the check that a live object still is what was applied.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::resource::ResourceId;

/// Label carrying the GC mark.
pub const GC_MARK_LABEL: &str = "fluxcd.io/sync-gc-mark";
/// Annotation carrying the checksum of the applied manifest.
pub const CHECKSUM_ANNOTATION: &str = "fluxcd.io/sync-checksum";

/// The GC mark of one object of a sync set: `sha256.` and the unpadded URL-safe
/// base64 of SHA-256(set name ‖ resource id), as the original Flux made it. Being
/// per object, a label copied onto another object does not make that object ours.
pub fn gc_mark(set_name: &str, id: &ResourceId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(set_name.as_bytes());
    hasher.update(id.to_string().as_bytes());
    format!("sha256.{}", URL_SAFE_NO_PAD.encode(hasher.finalize()))
}

/// Hex SHA-256 of the object as applied, over a canonical form: keys sorted, nulls
/// dropped, and without what the resource id already says (apiVersion, kind, name,
/// namespace), server fields, and the checksum annotation itself.
pub fn checksum(object: &Value) -> String {
    let normal = normalise(object);
    let mut text = String::new();
    canonical(&normal, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn normalise(object: &Value) -> Value {
    let mut copy = drop_nulls(object);
    let Some(map) = copy.as_object_mut() else {
        return copy;
    };
    map.remove("apiVersion");
    map.remove("kind");
    map.remove("status");
    if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            metadata.remove(field);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(CHECKSUM_ANNOTATION);
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
        if metadata.is_empty() {
            map.remove("metadata");
        }
    }
    copy
}

/// The value without null members (a null in an apply configuration sets nothing).
pub(crate) fn drop_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), drop_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(drop_nulls).collect()),
        other => other.clone(),
    }
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                canonical(&map[*key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether a live object is still what `field_manager` applied: the fields it owns
/// (per `metadata.managedFields`), read from the live object, hash to the checksum
/// annotation. Someone else changing an owned field takes its ownership away, so the
/// projection (and the hash) differ.
pub fn unchanged_since_applied(live: &Value, field_manager: &str) -> bool {
    let Some(recorded) = live["metadata"]["annotations"][CHECKSUM_ANNOTATION].as_str() else {
        return false;
    };
    let Some(fields) = owned_fields(live, field_manager) else {
        return false;
    };
    let projected = project(live, &fields).unwrap_or(Value::Null);
    checksum(&projected) == recorded
}

/// The union of the field sets `manager` holds through apply operations.
fn owned_fields(live: &Value, manager: &str) -> Option<Value> {
    let entries = live["metadata"]["managedFields"].as_array()?;
    let mut union = Value::Object(Map::new());
    let mut found = false;
    for entry in entries {
        let ours = entry["manager"] == manager
            && entry["operation"] == "Apply"
            && entry["subresource"].as_str().is_none_or(str::is_empty);
        if ours {
            found = true;
            merge_fields(&mut union, &entry["fieldsV1"]);
        }
    }
    found.then_some(union)
}

fn merge_fields(into: &mut Value, from: &Value) {
    let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) else {
        return;
    };
    for (key, value) in from {
        let slot = into
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        merge_fields(slot, value);
    }
}

/// The part of `live` that a FieldsV1 set names: `f:<field>` members, `k:<json>` list
/// items picked by key, `v:<json>` set items; an empty set takes the whole value.
fn project(live: &Value, fields: &Value) -> Option<Value> {
    let Some(set) = fields.as_object().filter(|s| s.keys().any(|k| k != ".")) else {
        return Some(live.clone());
    };
    match live {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, sub) in set {
                let Some(name) = key.strip_prefix("f:") else {
                    continue;
                };
                if let Some(value) = map.get(name).and_then(|v| project(v, sub)) {
                    out.insert(name.to_string(), value);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                for (key, sub) in set {
                    if let Some(wanted) = key.strip_prefix("k:") {
                        let Ok(Value::Object(wanted)) = serde_json::from_str::<Value>(wanted)
                        else {
                            continue;
                        };
                        if wanted.iter().all(|(k, v)| item.get(k) == Some(v)) {
                            out.extend(project(item, sub));
                        }
                    } else if let Some(wanted) = key.strip_prefix("v:")
                        && serde_json::from_str::<Value>(wanted).ok().as_ref() == Some(item)
                    {
                        out.push(item.clone());
                    }
                }
            }
            Some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gc_mark_is_a_valid_label_value_per_object() {
        let a = gc_mark("git", &"default:deployment/a".parse().unwrap());
        let b = gc_mark("git", &"default:deployment/b".parse().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("sha256.") && a.len() <= 63, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }

    #[test]
    fn checksum_ignores_key_order_identity_and_itself() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1"}},
            "data": {"k": "v", "j": null}});
        let b = json!({"data": {"k": "v"}, "metadata": {"labels": {"a": "1"}, "namespace": "n",
            "annotations": {CHECKSUM_ANNOTATION: "old"}}});
        assert_eq!(checksum(&a), checksum(&b));
        let c = json!({"data": {"k": "w"}, "metadata": {"labels": {"a": "1"}}});
        assert_ne!(checksum(&a), checksum(&c));
    }

    fn live_with(fields: Value, data: Value, recorded: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "n", "uid": "u",
                "annotations": {CHECKSUM_ANNOTATION: recorded, "other": "x"},
                "managedFields": [{"manager": "fluxd", "operation": "Apply", "fieldsV1": fields}]},
            "data": data,
        })
    }

    #[test]
    fn live_object_matching_its_owned_fields_is_unchanged() {
        let applied = json!({"metadata": {"annotations": {}}, "data": {"k": "v"}});
        let recorded = checksum(&applied);
        let fields = json!({"f:metadata": {"f:annotations": {"f:fluxcd.io/sync-checksum": {}}},
            "f:data": {"f:k": {}}});
        let live = live_with(
            fields.clone(),
            json!({"k": "v", "added-by-someone": "1"}),
            &recorded,
        );
        assert!(unchanged_since_applied(&live, "fluxd"));
        let taken = json!({"f:metadata": {"f:annotations": {"f:fluxcd.io/sync-checksum": {}}}, "f:data": {}});
        let live = live_with(taken, json!({"k": "changed"}), &recorded);
        assert!(!unchanged_since_applied(&live, "fluxd"));
        let live = live_with(fields, json!({"k": "v"}), &recorded);
        assert!(!unchanged_since_applied(&live, "someone-else"));
    }

    #[test]
    fn keyed_list_items_are_projected_by_key() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent"},
            {"name": "b", "image": "y:1"}]}});
        let fields = json!({"f:spec": {"f:containers": {
            "k:{\"name\":\"a\"}": {".": {}, "f:image": {}, "f:name": {}}}}});
        let projected = project(&live, &fields).unwrap();
        assert_eq!(
            projected,
            json!({"spec": {"containers": [{"name": "a", "image": "x:1"}]}})
        );
    }
}
