//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's
//! leader election does it: a candidate takes the Lease when it is vacant or
//! when its holder has not renewed it for the lease duration, the holder
//! renews it, and every write carries the `resourceVersion` it read, so of
//! two candidates writing at once the API server keeps one and refuses the
//! other with 409 Conflict.
//!
//! Expiry is judged by this process's own clock: from when it last saw the
//! Lease change, not from the holder's `renewTime`, so clocks that disagree
//! between nodes cannot make a live holder look expired.
//!
//! The holder keeps annotations of its own on the Lease (where it can be
//! reached, say); a candidate that takes the Lease over is handed those of
//! the holder before it, and leaves those it does not set itself in place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::ClusterError;

/// Who holds a Lease, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// `spec.holderIdentity`; `None` when the Lease is vacant (released).
    pub identity: Option<String>,
    /// The Lease's annotations as its holder wrote them.
    pub annotations: BTreeMap<String, String>,
}

/// What one attempt to take or renew the Lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// This candidate holds the Lease. `taken_from` is set on the attempt
    /// that took it: the Lease as its previous holder left it (a vacant
    /// Holder when the Lease was made just now).
    Leading {
        /// The Lease before this candidate took it; `None` on a renewal.
        taken_from: Option<Holder>,
    },
    /// Another candidate holds it (or won the race to it: `identity` is
    /// then not yet known).
    Following(Holder),
}

/// One candidate's handle on a Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    annotations: BTreeMap<String, String>,
    /// The Lease's `resourceVersion` as last seen, and when it was seen
    /// to change.
    observed: Option<(String, Instant)>,
}

impl LeaseLock {
    /// A candidate called `identity` for the Lease `namespace/name`,
    /// which it holds for `duration` after each renewal.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            annotations: BTreeMap::new(),
            observed: None,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Sets an annotation written with the next take, renewal or release.
    /// Annotations this candidate does not set are kept as they are on the
    /// Lease (a previous holder's, say, until the new one replaces them).
    pub fn annotate(&mut self, key: &str, value: String) {
        self.annotations.insert(key.to_string(), value);
    }

    /// Stops setting an annotation (it stays on the Lease as last written).
    pub fn unannotate(&mut self, key: &str) {
        self.annotations.remove(key);
    }

    /// The Lease's annotations with this candidate's set over them.
    fn annotated(&self, lease: &Lease) -> BTreeMap<String, String> {
        let mut annotations = lease.metadata.annotations.clone().unwrap_or_default();
        annotations.extend(self.annotations.clone());
        annotations
    }

    /// Takes the Lease when it is vacant or expired, renews it when this
    /// candidate holds it, and otherwise says who does.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Held, ClusterError> {
        let Some(lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(ClusterError::Api)?
        else {
            return self.create().await;
        };
        let now = Instant::now();
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let changed_at = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => now,
        };
        self.observed = Some((version, changed_at));
        let holder = holder_of(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = holder.identity.as_deref() == Some(self.identity.as_str());
        if !ours && holder.identity.is_some() {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(self.duration, Duration::from_secs);
            if now.duration_since(changed_at) < duration {
                return Ok(Held::Following(holder));
            }
        }
        let mut taken = lease;
        let stamp = MicroTime(jiff::Timestamp::now());
        let mut next = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds(self.duration)),
            renew_time: Some(stamp.clone()),
            ..spec.clone()
        };
        if !ours {
            next.acquire_time = Some(stamp);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        taken.spec = Some(next);
        taken.metadata.annotations = Some(self.annotated(&taken));
        match self.replace(&taken).await? {
            true => Ok(Held::Leading {
                taken_from: (!ours).then_some(holder),
            }),
            false => Ok(Held::Following(Holder::default())),
        }
    }

    /// Gives the Lease up, when this candidate holds it, so that another
    /// takes it at once rather than after the lease duration. The
    /// annotations set last are kept on it for the next holder.
    pub async fn release(&mut self) -> Result<bool, ClusterError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(ClusterError::Api)?
        else {
            return Ok(false);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..spec
        });
        lease.metadata.annotations = Some(self.annotated(&lease));
        self.replace(&lease).await
    }

    async fn create(&mut self) -> Result<Held, ClusterError> {
        let stamp = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                annotations: Some(self.annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds(self.duration)),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(made) => {
                self.seen(&made);
                Ok(Held::Leading {
                    taken_from: Some(Holder::default()),
                })
            }
            Err(error) if is_conflict(&error) => Ok(Held::Following(Holder::default())),
            Err(error) => Err(ClusterError::Api(error)),
        }
    }

    /// Writes `lease` at the `resourceVersion` it was read at; false when
    /// another writer changed it first.
    async fn replace(&mut self, lease: &Lease) -> Result<bool, ClusterError> {
        match self
            .api
            .replace(&self.name, &PostParams::default(), lease)
            .await
        {
            Ok(written) => {
                self.seen(&written);
                Ok(true)
            }
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(ClusterError::Api(error)),
        }
    }

    fn seen(&mut self, lease: &Lease) {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        self.observed = Some((version, Instant::now()));
    }
}

fn holder_of(lease: &Lease) -> Holder {
    Holder {
        identity: lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|identity| !identity.is_empty()),
        annotations: lease.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// 409: a stale `resourceVersion`, or a Lease another candidate made first.
fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}
