//! The API's way into the daemon.

use std::sync::Arc;

use flux_api::{Identity, JobSpec, Manifest, SyncRequested, SyncStatus, WorkloadResult};

use super::Inner;
use crate::server::{Control, Pending};

/// The API's way into the daemon.
pub(super) struct Controls(pub(super) Arc<Inner>);

impl Control for Controls {
    fn sync(&self) -> Pending<'_, SyncRequested> {
        Box::pin(async move {
            let daemon = &self.0;
            daemon.repo.refresh().await.map_err(|e| e.to_string())?;
            let moved = daemon.reload().await?;
            // A new head is synced as soon as it is read; only an unmoved
            // one needs asking.
            if let Some(side) = daemon.cluster.as_ref().filter(|_| !moved) {
                side.wake.notify_one();
            }
            let revision = daemon.repo.head().await.map_err(|e| e.to_string())?;
            Ok(SyncRequested {
                branch: daemon.config.git_branch.clone(),
                revision,
            })
        })
    }

    fn sync_status(&self, revision: String) -> Pending<'_, SyncStatus> {
        Box::pin(async move {
            let daemon = &self.0;
            let pending = if daemon.cluster.is_some() {
                daemon.repo.sync_status(&revision).await
            } else {
                let read = daemon.loaded.lock().await.as_ref().map(|l| l.head.clone());
                daemon.repo.commits_since(read.as_deref(), &revision).await
            };
            let pending = pending.map_err(|e| e.to_string())?;
            let errors = match &daemon.view.borrow().read {
                Ok(read) => read.errors.clone(),
                Err(_) => Vec::new(),
            };
            Ok(SyncStatus {
                revision,
                pending: pending.into_iter().map(|c| c.id).collect(),
                errors,
            })
        })
    }

    fn plan(&self, spec: JobSpec) -> Pending<'_, Vec<WorkloadResult>> {
        Box::pin(self.0.plan(spec))
    }

    fn identity(&self) -> Option<Identity> {
        self.0.identity_shown()
    }

    fn cluster_unreachable(&self) -> Option<String> {
        let side = self.0.cluster.as_ref()?;
        side.unreachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn regenerate_identity(&self) -> Pending<'_, Option<Identity>> {
        Box::pin(self.0.regenerate_deploy_key())
    }

    fn manifests(&self) -> Pending<'_, Vec<Manifest>> {
        Box::pin(self.0.manifests())
    }
}
