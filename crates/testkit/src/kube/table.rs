//! Server-side tables (`Accept: application/json;as=Table;g=meta.k8s.io`),
//! which `kubectl get` asks for to print its columns: for Deployments,
//! DaemonSets and StatefulSets the columns the real server prints; other
//! kinds are answered as plain lists, which kubectl prints as `NAME AGE`.

use serde_json::{Value, json};

/// Whether the request asks for a table (kubectl's human-readable `get`).
pub(crate) fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// `answer` (an object or a list of them) as a `meta.k8s.io/v1` Table, for
/// the kinds that have their own columns; `None` for the others.
pub(crate) fn of(kind: &str, answer: &Value) -> Option<Value> {
    let columns = columns(kind)?;
    let objects: Vec<&Value> = match answer["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![answer],
    };
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|object| {
            json!({
                "cells": cells(kind, object, now),
                "object": {
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": object["metadata"],
                },
            })
        })
        .collect();
    let mut metadata = json!({});
    for field in ["resourceVersion", "continue"] {
        if let Some(value) = answer["metadata"][field].as_str() {
            metadata[field] = json!(value);
        }
    }
    Some(json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": metadata,
        "columnDefinitions": columns
            .iter()
            .map(|(name, kind, priority)| json!({
                "name": name, "type": kind, "format": if *name == "Name" { "name" } else { "" },
                "description": "", "priority": priority,
            }))
            .collect::<Vec<_>>(),
        "rows": rows,
    }))
}

/// (name, type, priority): priority 1 columns show with `-o wide`.
fn columns(kind: &str) -> Option<&'static [(&'static str, &'static str, u8)]> {
    Some(match kind {
        "Deployment" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "DaemonSet" => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "StatefulSet" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        _ => return None,
    })
}

fn cells(kind: &str, object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let status = &object["status"];
    let count = |field: &str| status[field].as_u64().unwrap_or(0);
    let name = object["metadata"]["name"].clone();
    let age = age(object, now);
    let containers = object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let joined = |field: &str| {
        containers
            .iter()
            .filter_map(|c| c[field].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let desired = object["spec"]["replicas"].as_u64().unwrap_or(1);
    match kind {
        "Deployment" => vec![
            name,
            json!(format!("{}/{desired}", count("readyReplicas"))),
            json!(count("updatedReplicas")),
            json!(count("availableReplicas")),
            json!(age),
            json!(joined("name")),
            json!(joined("image")),
            json!(selector),
        ],
        "DaemonSet" => {
            let node_selector = object["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".to_string());
            vec![
                name,
                json!(count("desiredNumberScheduled")),
                json!(count("currentNumberScheduled")),
                json!(count("numberReady")),
                json!(count("updatedNumberScheduled")),
                json!(count("numberAvailable")),
                json!(node_selector),
                json!(age),
                json!(joined("name")),
                json!(joined("image")),
                json!(selector),
            ]
        }
        _ => vec![
            name,
            json!(format!("{}/{desired}", count("readyReplicas"))),
            json!(age),
            json!(joined("name")),
            json!(joined("image")),
        ],
    }
}

/// The object's age as kubectl words durations (`45s`, `3m20s`, `2d5h`).
fn age(object: &Value, now: jiff::Timestamp) -> String {
    let Some(created) = object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".to_string();
    };
    human_duration(now.duration_since(created).as_secs())
}

/// Durations in kubectl's short form.
fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = seconds / 3600;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 && seconds % 60 != 0 {
        format!("{minutes}m{}s", seconds % 60)
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 && minutes % 60 != 0 {
        format!("{hours}h{}m", minutes % 60)
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 && hours % 24 != 0 {
        format!("{days}d{}h", hours % 24)
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if years < 8 && days % 365 != 0 {
        format!("{years}y{}d", days % 365)
    } else {
        format!("{years}y")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_writes_them() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 120, "3h2m"),
            (9 * 3600, "9h"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
        ];
        for (seconds, written) in cases {
            assert_eq!(human_duration(seconds), written, "{seconds}s");
        }
    }

    #[test]
    fn a_deployment_row_counts_ready_of_desired() {
        let deployment = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"name": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
        });
        let table = of("Deployment", &deployment).expect("deployments have columns");
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], 2);
        assert_eq!(cells[6], "web:1");
        assert_eq!(cells[7], "name=web");
        assert!(of("Service", &deployment).is_none());
    }
}
