//! Kubernetes Events: what fluxd did or failed to do, recorded on the object
//! concerned so that `kubectl describe` and `kubectl get events` show it.
//!
//! The [`Recorder`] behaves as client-go's event recorder does: an event
//! that repeats one already recorded (same object, type, reason and message)
//! within ten minutes bumps that event's `count` and `lastTimestamp` instead
//! of making a new object, and each object has a token bucket (a burst of 25,
//! then one event per five minutes) so that a failure loop cannot flood the
//! API server. Events are written as core/v1 `Event`s, the version every
//! API server serves and `kubectl describe` reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::ClusterError;

/// How long a recorded event absorbs its repeats.
const AGGREGATION_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Events one object may get at once.
const BURST: f64 = 25.0;
/// Time for one more event once an object's burst is spent.
const REFILL: Duration = Duration::from_secs(5 * 60);
/// Entries the aggregation cache keeps before it forgets the oldest.
const CACHE_SIZE: usize = 4096;

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Regarding {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, `Pod`, ...
    pub kind: String,
    /// None for cluster-scoped objects (their events go to `default`).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl Regarding {
    /// An object of `kind` in `api_version`.
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Regarding {
        Regarding {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The namespace the event lives in: the object's, or `default` for a
    /// cluster-scoped object, as the API server's own recorders do.
    fn event_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// `Normal` or `Warning`, the two types Kubernetes knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something worked.
    Normal,
    /// Something failed or needs a look.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRecord {
    /// Normal or Warning.
    pub type_: EventType,
    /// A short CamelCase word (`Released`, `SyncFailed`).
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

/// What [`Recorder::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new Event object.
    Created,
    /// An existing Event's count went up to this.
    Aggregated(i32),
    /// The object's rate limit refused it.
    RateLimited,
    /// There was no object to record it on (no fallback Pod either).
    NoObject,
}

struct Series {
    name: String,
    count: i32,
    last: Instant,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(now: Instant) -> Bucket {
        Bucket {
            tokens: BURST,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refilled = now.duration_since(self.last).as_secs_f64() / REFILL.as_secs_f64();
        self.tokens = (self.tokens + refilled).min(BURST);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

type SeriesKey = (Regarding, EventRecord);

/// Records events for one reporting component (`fluxd`) and instance (its Pod).
pub struct Recorder {
    client: kube::Client,
    component: String,
    instance: String,
    fallback: Option<Regarding>,
    series: Mutex<HashMap<SeriesKey, Series>>,
    buckets: Mutex<HashMap<Regarding, Bucket>>,
}

impl Recorder {
    /// A recorder reporting as `component` (`source.component`,
    /// `reportingComponent`) from `instance` (`source.host`, `reportingInstance`).
    pub fn new(client: kube::Client, component: &str, instance: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            fallback: None,
            series: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Events with no object of their own go on this one (fluxd's Pod).
    pub fn with_fallback(mut self, fallback: Regarding) -> Recorder {
        self.fallback = Some(fallback);
        self
    }

    /// Records `event` on `regarding`, or on the fallback object when there is
    /// none. Repeats within ten minutes are aggregated; an object past its
    /// rate limit gets nothing.
    pub async fn record(
        &self,
        regarding: Option<&Regarding>,
        event: &EventRecord,
    ) -> Result<Recorded, ClusterError> {
        let Some(regarding) = regarding.or(self.fallback.as_ref()) else {
            return Ok(Recorded::NoObject);
        };
        let now = Instant::now();
        if !self.admit(regarding, now) {
            return Ok(Recorded::RateLimited);
        }
        let key = (regarding.clone(), event.clone());
        let repeat = self.repeat_of(&key, now);
        let api: Api<Event> = Api::namespaced(self.client.clone(), regarding.event_namespace());
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": timestamp()});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, count, now);
                    return Ok(Recorded::Aggregated(count));
                }
                // Expired or deleted: start a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(ClusterError::Api(error)),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name,
            k8s_openapi::jiff::Timestamp::now().as_nanosecond()
        );
        let uid = self.uid_of(regarding).await;
        let object = self.event_object(&name, regarding, uid.as_deref(), event);
        let object: Event = serde_json::from_value(object).expect("the Event JSON is an Event");
        api.create(&PostParams::default(), &object)
            .await
            .map_err(ClusterError::Api)?;
        self.remember(key, name, 1, now);
        Ok(Recorded::Created)
    }

    fn admit(&self, regarding: &Regarding, now: Instant) -> bool {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry(regarding.clone())
            .or_insert_with(|| Bucket::full(now))
            .take(now)
    }

    fn repeat_of(&self, key: &SeriesKey, now: Instant) -> Option<(String, i32)> {
        let series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = series.get(key)?;
        (now.duration_since(entry.last) < AGGREGATION_WINDOW)
            .then(|| (entry.name.clone(), entry.count + 1))
    }

    fn remember(&self, key: SeriesKey, name: String, count: i32, now: Instant) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if series.len() >= CACHE_SIZE {
            series.retain(|_, entry| now.duration_since(entry.last) < AGGREGATION_WINDOW);
        }
        if series.len() >= CACHE_SIZE {
            series.clear();
        }
        series.insert(
            key,
            Series {
                name,
                count,
                last: now,
            },
        );
    }

    /// The object's uid, which `kubectl describe` matches events on; none
    /// when the object or its kind is not found (the event still records).
    async fn uid_of(&self, regarding: &Regarding) -> Option<String> {
        let (group, version) = match regarding.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", regarding.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &regarding.kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .ok()?;
        let api: Api<DynamicObject> = match &regarding.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let object = api.get_metadata_opt(&regarding.name).await.ok()??;
        object.metadata.uid
    }

    fn event_object(
        &self,
        name: &str,
        regarding: &Regarding,
        uid: Option<&str>,
        event: &EventRecord,
    ) -> serde_json::Value {
        let now = timestamp();
        let mut involved = json!({
            "apiVersion": regarding.api_version,
            "kind": regarding.kind,
            "name": regarding.name,
        });
        if let Some(namespace) = &regarding.namespace {
            involved["namespace"] = json!(namespace);
        }
        if let Some(uid) = uid {
            involved["uid"] = json!(uid);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": regarding.event_namespace()},
            "involvedObject": involved,
            "type": event.type_.as_str(),
            "reason": event.reason,
            "message": event.message,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        })
    }
}

fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_refills_slowly() {
        let start = Instant::now();
        let mut bucket = Bucket::full(start);
        let allowed = (0..30).filter(|_| bucket.take(start)).count();
        assert_eq!(allowed, 25);
        assert!(!bucket.take(start + Duration::from_secs(60)));
        assert!(bucket.take(start + REFILL + Duration::from_secs(1)));
    }
}
