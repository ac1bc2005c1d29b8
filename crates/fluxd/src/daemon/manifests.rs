//! How the manifests of a checkout are read, and what of them the sync
//! applies and the API shows.

use std::path::{Path, PathBuf};

use flux_api::Manifest;
use flux_manifests::{Checkout, LoadError, LoadOptions};

use super::Inner;
use crate::config::Config;

impl Inner {
    /// The resources of the manifests at the head read last, each with its
    /// text as written: a checkout of that head, read and removed again.
    pub(super) async fn manifests(&self) -> Result<Vec<Manifest>, String> {
        let head = self.loaded.lock().await.as_ref().map(|l| l.head.clone());
        let Some(head) = head else {
            return Err("fluxd has not read the git repo yet".to_string());
        };
        let files = self
            .repo
            .checkout_at(&head)
            .await
            .map_err(|e| format!("checking out {head}: {e}"))?;
        let root = files.dir().to_path_buf();
        let paths = manifest_paths(&root, &self.config.git_paths);
        let options = self.load_options(&root);
        let answer = tokio::task::spawn_blocking(move || {
            let checkout = Checkout::load(&paths, options);
            manifests_of(&checkout, &root)
        })
        .await
        .map_err(|e| format!("reading the manifests at {head}: {e}"));
        if let Err(error) = files.remove().await {
            tracing::warn!(%error, "removing a read checkout failed");
        }
        answer?.map_err(|e| format!("reading the manifests at {head}: {e}"))
    }

    /// How a checkout at `root` is read: confined to it, reusing earlier
    /// kustomize builds.
    pub(super) fn load_options(&self, root: &Path) -> LoadOptions {
        LoadOptions {
            builds: Some(self.builds.clone()),
            manifest_generation: self.config.manifest_generation,
            generation_timeout: self.config.manifest_generation_timeout,
            ..load_options(&self.config, root)
        }
    }

    /// The manifests in a checkout folder.
    pub(super) fn load(&self, dir: &Path) -> Checkout {
        let checkout = Checkout::load(
            &manifest_paths(dir, &self.config.git_paths),
            self.load_options(dir),
        );
        for error in &checkout.errors {
            tracing::warn!("{error}");
        }
        checkout
    }
}

/// What a sync applies: the texts of the files the checkout read, named as
/// in the repo, but kustomization files, which configure kustomize rather
/// than the cluster. Kept as text: parsed, they would take a hundred times
/// the room for as long as they are kept.
pub(super) fn sync_set(root: &Path, checkout: &Checkout) -> Vec<(String, String)> {
    checkout
        .files
        .iter()
        .filter(|f| f.kustomization.is_none())
        .filter_map(|f| {
            let name = f.path.strip_prefix(root).unwrap_or(&f.path);
            if let Some(built) = &f.built {
                return Some((name.display().to_string(), built.to_string()));
            }
            match std::fs::read_to_string(&f.path) {
                Ok(text) => Some((name.display().to_string(), text)),
                Err(error) => {
                    tracing::warn!(file = %name.display(), %error, "not synced: unreadable");
                    None
                }
            }
        })
        .collect()
}

/// The kustomize trees that did not build and the `.flux.yaml` paths whose
/// commands failed, `(file, why)`
/// each: the sync holds garbage collection back for them as for a file
/// that does not parse, since what they built before is not in the set.
pub(super) fn unbuilt(checkout: &Checkout, root: &Path) -> Vec<(String, String)> {
    checkout
        .errors
        .iter()
        .filter(|error| matches!(error, LoadError::Build { .. } | LoadError::Generate(_)))
        .map(|error| {
            let path = error.path();
            let file = path
                .strip_prefix(root)
                .unwrap_or(path)
                .display()
                .to_string();
            (file, error.to_string())
        })
        .collect()
}

/// How a checkout at `root` is read: nothing outside `root`, and no file
/// larger than `--manifest-max-file-size`.
fn load_options(config: &Config, root: &Path) -> LoadOptions {
    LoadOptions {
        root: Some(root.to_path_buf()),
        max_file_bytes: config.manifest_max_file_size,
        ..LoadOptions::default()
    }
}

/// The folders `--git-path` names in a checkout at `dir`; the paths are
/// normalised when the flags are read, `.` being the whole repo (which
/// holds every other path).
pub(super) fn manifest_paths(dir: &Path, paths: &[String]) -> Vec<PathBuf> {
    if paths.is_empty() || paths.iter().any(|p| p == ".") {
        return vec![dir.to_path_buf()];
    }
    paths.iter().map(|p| dir.join(p)).collect()
}

/// Every resource of `checkout` (read under `root`) with its file, relative
/// to `root`, and its text there. Each file is read once.
fn manifests_of(checkout: &Checkout, root: &Path) -> Result<Vec<Manifest>, String> {
    let mut manifests = Vec::with_capacity(checkout.resources.len());
    let mut text: Option<(&Path, String)> = None;
    for resource in &checkout.resources {
        let path = &*resource.location.file;
        if text.as_ref().is_none_or(|(read, _)| *read != path) {
            let read = match checkout.built_output(path) {
                Some(built) => built.to_string(),
                None => std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?,
            };
            text = Some((path, read));
        }
        let Some((_, file_text)) = &text else {
            continue;
        };
        let relative = path.strip_prefix(root).unwrap_or(path);
        let document = resource.location.text_in(file_text).ok_or_else(|| {
            format!(
                "{}: the document of {} is not where it was read",
                relative.display(),
                resource.id
            )
        })?;
        manifests.push(Manifest {
            id: resource.id.to_string(),
            kind: resource.kind.clone(),
            file: relative.to_string_lossy().into_owned(),
            text: document.into_owned(),
        });
    }
    Ok(manifests)
}
