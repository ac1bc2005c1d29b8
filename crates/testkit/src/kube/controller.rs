//! A simulated workload controller beside the double: each Deployment,
//! DaemonSet and StatefulSet spec change (a new `metadata.generation`) becomes
//! a rollout whose status climbs step by step, in the fields and conditions
//! the real controllers write. No pod exists; only the status moves.
//!
//! The rollouts follow the default strategies on one simulated node:
//! a Deployment surges one new replica, waits for it to be ready, then scales
//! an old one down, replica by replica (`RollingUpdate`); a DaemonSet runs one
//! pod, replaced by deleting the old one first; a StatefulSet replaces its
//! pods from the highest ordinal down, each deleted, then recreated, then ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::store::Store;
use super::types::ResourceType;
use super::{ApiServer, Shared};

/// The time between two steps of a rollout. The first status is written as
/// soon as the change is seen; a one-replica Deployment's third, ready, one
/// two steps (a second) later.
pub const STEP: Duration = Duration::from_millis(500);

/// The kinds whose rollouts are simulated.
const KINDS: [&str; 3] = ["Deployment", "DaemonSet", "StatefulSet"];

/// A running simulated controller; stops when dropped (or with its double).
///
/// ```
/// use flux_testkit::kube::{ApiServer, Controller};
/// let server = ApiServer::start();
/// let _controller = Controller::start(&server);
/// ```
pub struct Controller {
    task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// Starts rolling out every Deployment, DaemonSet and StatefulSet of `server`
    /// whose spec its status has not observed, now and after every change.
    pub fn start(server: &ApiServer) -> Controller {
        let shared = server.shared.clone();
        let runtime = server
            .runtime
            .as_ref()
            .expect("a running double has its runtime");
        let task = runtime.spawn(run(shared)).abort_handle();
        Controller { task }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One rollout under way: the statuses still to write, one per step.
struct Rollout {
    generation: u64,
    steps: std::vec::IntoIter<Value>,
    /// When the next status is written.
    due: Instant,
}

/// (kind, namespace, name).
type Key = (String, String, String);

async fn run(shared: Arc<Shared>) {
    let mut rollouts: HashMap<Key, Rollout> = HashMap::new();
    loop {
        // Made before the scan, so a write during it still wakes the loop.
        let changed = shared.changed.notified();
        step_rollouts(&shared, &mut rollouts);
        start_rollouts(&shared, &mut rollouts);
        match rollouts.values().map(|r| r.due).min() {
            Some(due) => {
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            None => changed.await,
        }
    }
}

/// Plans a rollout for every workload whose generation has no rollout yet,
/// and writes its first status at once (a controller observes a change as
/// soon as it sees it).
fn start_rollouts(shared: &Shared, rollouts: &mut HashMap<Key, Rollout>) {
    let mut store = shared.store();
    for rt in store.types() {
        if rt.group != "apps" || !KINDS.contains(&rt.kind.as_str()) {
            continue;
        }
        for object in store.all(&rt) {
            let generation = object["metadata"]["generation"].as_u64().unwrap_or(1);
            let observed = object["status"]["observedGeneration"].as_u64();
            let key = key_of(&rt.kind, &object);
            let planned = rollouts.get(&key).map(|r| r.generation);
            if observed >= Some(generation) || planned == Some(generation) {
                continue;
            }
            let mut steps = plan(&rt.kind, &object).into_iter();
            if let Some(first) = steps.next() {
                write_status(&mut store, &rt, &key, first);
            }
            let due = Instant::now() + STEP;
            rollouts.insert(
                key,
                Rollout {
                    generation,
                    steps,
                    due,
                },
            );
        }
    }
}

/// Writes the next status of every rollout whose step is due; forgets
/// those done and those whose object is gone.
fn step_rollouts(shared: &Shared, rollouts: &mut HashMap<Key, Rollout>) {
    let mut store = shared.store();
    let types = store.types();
    let now = Instant::now();
    rollouts.retain(|(kind, namespace, name), rollout| {
        if rollout.due > now {
            return true;
        }
        let Some(rt) = types.iter().find(|t| t.group == "apps" && t.kind == *kind) else {
            return false;
        };
        let Some(status) = rollout.steps.next() else {
            return false;
        };
        rollout.due = now + STEP;
        let key = (kind.clone(), namespace.clone(), name.clone());
        write_status(&mut store, rt, &key, status)
    });
}

/// Replaces the object's status, keeping each condition's transition time
/// while its status stays (as controllers do); false when the object is gone.
fn write_status(store: &mut Store, rt: &ResourceType, key: &Key, mut status: Value) -> bool {
    let (_, namespace, name) = key;
    let Some(live) = store.object(rt, Some(namespace), name) else {
        return false;
    };
    let before = live["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(conditions) = status["conditions"].as_array_mut() {
        for condition in conditions {
            let kept = before
                .iter()
                .find(|c| c["type"] == condition["type"] && c["status"] == condition["status"]);
            if let Some(kept) = kept {
                condition["lastTransitionTime"] = kept["lastTransitionTime"].clone();
            }
        }
    }
    store.set_status(rt, Some(namespace), name, status)
}

fn key_of(kind: &str, object: &Value) -> Key {
    let text = |field: &str| {
        object["metadata"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (kind.to_string(), text("namespace"), text("name"))
}

/// The statuses a controller writes while rolling `object` out to its
/// current spec, first to last.
fn plan(kind: &str, object: &Value) -> Vec<Value> {
    match kind {
        "DaemonSet" => daemonset_steps(object),
        "StatefulSet" => statefulset_steps(object),
        _ => deployment_steps(object),
    }
}

/// The first ten hex digits of a hash of the pod template: the part of a
/// ReplicaSet's or controller revision's name that changes with the spec.
fn template_hash(object: &Value) -> String {
    let template = serde_json::to_vec(&object["spec"]["template"]).unwrap_or_default();
    hex::encode(Sha256::digest(template))[..10].to_string()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn desired_replicas(object: &Value) -> u64 {
    object["spec"]["replicas"].as_u64().unwrap_or(1)
}

/// Whether the workload ran a spec before this change (it has been observed).
fn ran_before(object: &Value) -> bool {
    object["status"]["observedGeneration"].as_u64().is_some()
}

/// Replica counts of a Deployment at one step.
#[derive(Debug, Clone, Copy)]
struct Replicas {
    total: u64,
    updated: u64,
    ready: u64,
}

fn deployment_steps(object: &Value) -> Vec<Value> {
    let desired = desired_replicas(object);
    let mut counts = Vec::new();
    if ran_before(object) {
        // RollingUpdate one replica at a time: a new one surges, becomes
        // ready, then an old one goes.
        for updated in 1..=desired {
            counts.push(Replicas {
                total: desired + 1,
                updated,
                ready: desired,
            });
            counts.push(Replicas {
                total: desired + 1,
                updated,
                ready: desired + 1,
            });
        }
    } else {
        // A new Deployment: its replicas start together, then become ready.
        for ready in 0..desired {
            counts.push(Replicas {
                total: desired,
                updated: desired,
                ready,
            });
        }
    }
    counts.push(Replicas {
        total: desired,
        updated: desired,
        ready: desired,
    });
    let replica_set = format!(
        "{}-{}",
        object["metadata"]["name"].as_str().unwrap_or_default(),
        template_hash(object)
    );
    let generation = &object["metadata"]["generation"];
    let last = counts.len() - 1;
    counts
        .into_iter()
        .enumerate()
        .map(|(step, replicas)| {
            deployment_status(generation, desired, replicas, &replica_set, step == last)
        })
        .collect()
}

fn deployment_status(
    generation: &Value,
    desired: u64,
    replicas: Replicas,
    replica_set: &str,
    done: bool,
) -> Value {
    let time = now();
    // Available as the default maxUnavailable (25%, rounded down) allows.
    let available = replicas.ready >= desired - desired / 4;
    let availability = if available {
        json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.",
            "lastUpdateTime": time, "lastTransitionTime": time})
    } else {
        json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.",
            "lastUpdateTime": time, "lastTransitionTime": time})
    };
    let progress = if done {
        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
            "message": format!("ReplicaSet \"{replica_set}\" has successfully progressed."),
            "lastUpdateTime": time, "lastTransitionTime": time})
    } else {
        json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "message": format!("ReplicaSet \"{replica_set}\" is progressing."),
            "lastUpdateTime": time, "lastTransitionTime": time})
    };
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": replicas.total,
        "updatedReplicas": replicas.updated,
        "conditions": [availability, progress],
    });
    // The controller leaves zero counts out, as their `omitempty` fields do.
    if replicas.ready > 0 {
        status["readyReplicas"] = json!(replicas.ready);
        status["availableReplicas"] = json!(replicas.ready);
    }
    if replicas.total > replicas.ready {
        status["unavailableReplicas"] = json!(replicas.total - replicas.ready);
    }
    status
}

/// One node: one pod. An update deletes the old pod first (the default
/// `maxUnavailable: 1`, `maxSurge: 0`), then the new one starts and is ready.
fn daemonset_steps(object: &Value) -> Vec<Value> {
    let generation = &object["metadata"]["generation"];
    let mut steps = Vec::new();
    if ran_before(object) {
        // (current, updated, ready)
        steps.push((0, 0, 0));
    }
    steps.push((1, 1, 0));
    steps.push((1, 1, 1));
    steps
        .into_iter()
        .map(|(current, updated, ready)| {
            let mut status = json!({
                "observedGeneration": generation,
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": current,
                "numberMisscheduled": 0,
                "numberReady": ready,
            });
            if updated > 0 {
                status["updatedNumberScheduled"] = json!(updated);
            }
            if ready > 0 {
                status["numberAvailable"] = json!(ready);
            } else {
                status["numberUnavailable"] = json!(1);
            }
            status
        })
        .collect()
}

/// Pods `name-0` … `name-(n-1)`. A new StatefulSet starts them in order,
/// each ready before the next; an update replaces them from the highest
/// ordinal down: deleted, recreated at the new revision, ready.
fn statefulset_steps(object: &Value) -> Vec<Value> {
    let desired = desired_replicas(object);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let update_revision = format!("{name}-{}", template_hash(object));
    let generation = &object["metadata"]["generation"];
    let current_revision = object["status"]["currentRevision"]
        .as_str()
        .filter(|_| ran_before(object))
        .unwrap_or(&update_revision)
        .to_string();
    // (replicas, updated, ready)
    let mut counts = Vec::new();
    if current_revision == update_revision {
        for started in 1..=desired {
            counts.push((started, started, started - 1));
            counts.push((started, started, started));
        }
    } else {
        for updated in 1..=desired {
            counts.push((desired - 1, updated - 1, desired - 1));
            counts.push((desired, updated, desired - 1));
            counts.push((desired, updated, desired));
        }
    }
    if counts.is_empty() {
        counts.push((0, 0, 0));
    }
    let last = counts.len() - 1;
    counts
        .into_iter()
        .enumerate()
        .map(|(step, (replicas, updated, ready))| {
            let done = step == last;
            let current = if done {
                &update_revision
            } else {
                &current_revision
            };
            let current_replicas = if done || current_revision == update_revision {
                replicas
            } else {
                replicas - updated
            };
            let mut status = json!({
                "observedGeneration": generation,
                "replicas": replicas,
                "currentRevision": current,
                "updateRevision": update_revision,
                "collisionCount": 0,
            });
            for (field, count) in [
                ("readyReplicas", ready),
                ("availableReplicas", ready),
                ("currentReplicas", current_replicas),
                ("updatedReplicas", updated),
            ] {
                if count > 0 {
                    status[field] = json!(count);
                }
            }
            status
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: u64, generation: u64, status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "x", "generation": generation},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"image": "a:2"}]}}},
            "status": status,
        })
    }

    fn counts(status: &Value, fields: &[&str]) -> Vec<u64> {
        fields
            .iter()
            .map(|f| status[*f].as_u64().unwrap_or(0))
            .collect()
    }

    #[test]
    fn a_changed_deployment_surges_one_replica_then_scales_the_old_one_down() {
        let steps = deployment_steps(&deployment(1, 2, json!({"observedGeneration": 1})));
        let fields = [
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
        ];
        let seen: Vec<_> = steps.iter().map(|s| counts(s, &fields)).collect();
        assert_eq!(seen, [[2, 2, 1, 1], [2, 2, 1, 2], [2, 1, 1, 1]]);
        let reasons: Vec<_> = steps
            .iter()
            .map(|s| s["conditions"][1]["reason"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "ReplicaSetUpdated",
                "ReplicaSetUpdated",
                "NewReplicaSetAvailable"
            ]
        );
        let done = &steps[2]["conditions"];
        assert_eq!(done[0]["type"], "Available");
        assert_eq!(done[0]["status"], "True");
        assert!(
            done[1]["message"]
                .as_str()
                .unwrap()
                .starts_with("ReplicaSet \"web-")
        );
    }

    #[test]
    fn a_new_deployment_becomes_available_once_its_replicas_are_ready() {
        let steps = deployment_steps(&deployment(2, 1, Value::Null));
        let fields = [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "unavailableReplicas",
        ];
        let seen: Vec<_> = steps.iter().map(|s| counts(s, &fields)).collect();
        assert_eq!(seen, [[2, 2, 0, 2], [2, 2, 1, 1], [2, 2, 2, 0]]);
        assert_eq!(steps[0]["conditions"][0]["status"], "False");
        assert_eq!(steps[2]["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_statefulset_update_ends_with_the_current_revision_the_updated_one() {
        let set = json!({
            "metadata": {"name": "db", "namespace": "x", "generation": 2},
            "spec": {"replicas": 2, "template": {"spec": {}}},
            "status": {"observedGeneration": 1, "currentRevision": "db-old", "updateRevision": "db-old"},
        });
        let steps = statefulset_steps(&set);
        assert_eq!(steps.len(), 6);
        assert!(steps[..5].iter().all(|s| s["currentRevision"] == "db-old"));
        let last = &steps[5];
        assert_eq!(last["currentRevision"], last["updateRevision"]);
        assert_eq!(
            counts(last, &["replicas", "updatedReplicas", "readyReplicas"]),
            [2, 2, 2]
        );
    }

    #[test]
    fn a_daemonset_update_deletes_the_old_pod_first() {
        let set = json!({
            "metadata": {"name": "agent", "namespace": "x", "generation": 3},
            "spec": {"template": {}},
            "status": {"observedGeneration": 2},
        });
        let steps = daemonset_steps(&set);
        let fields = [
            "currentNumberScheduled",
            "updatedNumberScheduled",
            "numberReady",
        ];
        let seen: Vec<_> = steps.iter().map(|s| counts(s, &fields)).collect();
        assert_eq!(seen, [[0, 0, 0], [1, 1, 0], [1, 1, 1]]);
    }
}
