//! The git loop: fetches on an interval and on request, and reads the
//! manifests again whenever the branch head moves.

use std::collections::BTreeSet;
use std::sync::Arc;

use flux_api::{ReadState, Unverified};
use flux_git::RepoState;
use flux_image::Name;
use flux_manifests::Checkout;
use tokio::sync::watch;

use super::manifests::{manifest_paths, sync_set, unbuilt};
use super::{Inner, Loaded, cluster};
use crate::server::View;
use crate::view::Workloads;

/// Fetches on an interval and on request; reads the manifests again when
/// the head moved.
pub(super) async fn git_loop(daemon: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        daemon.refresh().await;
        tokio::select! {
            () = tokio::time::sleep(daemon.config.git_poll_interval) => {}
            () = daemon.git_wake.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

impl Inner {
    /// Fetches, then reads the manifests again if the head moved.
    async fn refresh(&self) {
        match self.repo.refresh().await {
            Ok(status) => {
                let ready = matches!(status.state, RepoState::Ready | RepoState::ReadOnly);
                self.metrics.git_ready.set(i64::from(ready));
                if let Some(error) = status.last_error {
                    tracing::warn!(url = %self.config.git_url, %error, "git repo");
                    self.not_read(&error).await;
                }
            }
            Err(error) => {
                self.metrics.git_ready.set(0);
                tracing::warn!(url = %self.config.git_url, %error, "git refresh failed");
                self.not_read(&error.to_string()).await;
                return;
            }
        }
        if let Err(error) = self.reload().await {
            tracing::warn!(%error, "reading the manifests failed");
            self.not_read(&error).await;
        }
    }

    /// Until the manifests were read once, listings answer why they cannot
    /// be made (a wrong URL, a missing branch) instead of an empty list.
    async fn not_read(&self, why: &str) {
        if self.loaded.lock().await.is_some() {
            return;
        }
        let why = format!(
            "fluxd has not read the git repo {} yet: {why}",
            self.config.git_url
        );
        self.view.send_modify(|view| view.read = Err(why));
    }

    /// The revision to read and apply: the mirror's head or, with
    /// `--git-verify-signatures`, the newest verified commit up to it; and
    /// why the head is not it.
    pub(super) async fn verified_head(&self) -> Result<(String, Option<Unverified>), String> {
        let check = self
            .repo
            .check_signatures()
            .await
            .map_err(|e| e.to_string())?;
        let unverified = check.refused.map(|refused| Unverified {
            head: check.head.clone(),
            what: refused.what,
            reason: refused.reason,
        });
        self.note_unverified(unverified.as_ref());
        match (check.verified, unverified) {
            (Some(revision), unverified) => Ok((revision, unverified)),
            (None, Some(unverified)) => Err(format!(
                "nothing on {} is applied: {} is not verified: {}",
                self.config.git_branch, unverified.what, unverified.reason
            )),
            (None, None) => Err("no revision to read".into()),
        }
    }

    /// Logs a change of why the head is not applied, and shows it in the
    /// view's read state.
    fn note_unverified(&self, unverified: Option<&Unverified>) {
        let before = match &self.view.borrow().read {
            Ok(read) => read.unverified.clone(),
            Err(_) => None,
        };
        if before.as_ref() == unverified {
            return;
        }
        match unverified {
            Some(u) => {
                tracing::warn!(head = %u.head, what = %u.what, reason = %u.reason, "not applying the branch head: a commit is not verified")
            }
            None => tracing::info!("the branch head verifies again"),
        }
        self.view.send_modify(|view| {
            if let Ok(read) = &mut view.read {
                read.unverified = unverified.cloned();
            }
        });
    }

    /// Reads the manifests at the mirror's head (the newest verified commit,
    /// with `--git-verify-signatures`) when it is not the one last read,
    /// and replaces the view and the images in use (and, with a cluster,
    /// what the sync applies); true when it read a new head.
    pub(super) async fn reload(&self) -> Result<bool, String> {
        let mut loaded = self.loaded.lock().await;
        let (head, unverified) = self.verified_head().await?;
        if loaded.as_ref().is_some_and(|l| l.head == head) {
            return Ok(false);
        }
        let files = self
            .repo
            .checkout_at(&head)
            .await
            .map_err(|e| e.to_string())?;
        let paths = manifest_paths(files.dir(), &self.config.git_paths);
        let root = files.dir().to_path_buf();
        let applying = self.cluster.is_some();
        let at = root.clone();
        let options = self.load_options(&root);
        let (checkout, set) = tokio::task::spawn_blocking(move || {
            let checkout = Checkout::load(&paths, options);
            let set = applying.then(|| sync_set(&at, &checkout));
            (checkout, set)
        })
        .await
        .map_err(|e| format!("reading the manifests at {head}: {e}"))?;
        if let Err(error) = files.remove().await {
            tracing::warn!(%error, "removing a read checkout failed");
        }
        let errors = crate::view::file_errors(&checkout, &root);
        for error in &errors {
            tracing::warn!(revision = %head, "{}", error.message);
        }
        let in_use: BTreeSet<Name> = checkout
            .workloads
            .iter()
            .flat_map(|w| &w.containers)
            .map(|c| c.image.name().clone())
            .collect();
        let moves = self.moves_by_people(&head, &checkout, &root).await;
        let before = loaded.as_ref().map(|l| crate::view::Before {
            checkout: &l.checkout,
            root: &l.root,
            carried: &l.carried,
        });
        let carried = crate::view::carried(&errors, &checkout, before);
        let checkout = Arc::new(checkout);
        let shown = carried.iter().map(|c| c.workload.clone()).collect();
        let mut workloads = Workloads::read(checkout.clone(), shown);
        workloads.show_holds(self.holds(&checkout, &moves));
        let mut view = View {
            workloads,
            images: crate::view::images(
                &checkout,
                |name| self.cached(name),
                |policies, container, info, tag| {
                    self.signature_shown(policies, container, info, tag)
                },
            ),
            read: Ok(ReadState {
                revision: head.clone(),
                errors,
                unverified,
                synced: self
                    .view
                    .borrow()
                    .read
                    .as_ref()
                    .ok()
                    .and_then(|r| r.synced.clone()),
                commit_url: crate::notify::message::WebRepo::of_git_url(&self.config.git_url)
                    .map(|web| web.commit_url("{commit}")),
            }),
        };
        if let Some(side) = &self.cluster {
            side.decorate(&mut view.workloads);
        }
        tracing::info!(revision = %head, workloads = view.workloads.len(), "read the manifests");
        self.view.send_replace(view);
        self.images.send_if_modified(|images| {
            let moved = *images != in_use;
            *images = in_use;
            moved
        });
        if let (Some(side), Some(set)) = (&self.cluster, set) {
            side.want(cluster::Desired {
                revision: head.clone(),
                files: Arc::new(set),
                unbuilt: Arc::new(unbuilt(&checkout, &root)),
            });
        }
        *self
            .checkout_read
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(checkout.clone());
        *loaded = Some(Loaded {
            head,
            checkout,
            root,
            carried,
            moves: Arc::new(moves),
        });
        let _ = self.automation.send(None);
        Ok(true)
    }
}
