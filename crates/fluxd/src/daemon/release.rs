//! The release job and its plan (a dry run on the manifests last read).

use flux_api::{ImageUpdate, JobSpec, WorkloadResult};
use flux_git::CommitMessage;
use flux_image::ImageRef;
use flux_manifests::Checkout;
use flux_manifests::release::{self, ReleaseSpec, Targets, Update};
use flux_registry::newest_admitted;

use super::Inner;
use super::job::{parse_id, wire_result};
use crate::jobs::Outcome;

impl Inner {
    pub(super) async fn release(&self, wire: flux_api::ReleaseSpec) -> Result<Outcome, String> {
        let base = release_spec(&wire)?;
        let chosen = crate::selection::chosen(&wire)?;
        let message = release_message(&wire);
        let job = JobSpec::Release(wire.clone());
        self.edit_and_push(&job, wire.user.as_deref(), |checkout, transaction| {
            let mut spec = base.clone();
            if wire.update == ImageUpdate::AllLatest {
                spec.update = Update::PerContainer(self.newest_targets(checkout, &spec));
            }
            if let Some(chosen) = &chosen {
                crate::selection::narrow(checkout, &mut spec, chosen);
            }
            let results = release::execute(transaction, &spec);
            Ok((
                results.iter().map(wire_result).collect(),
                Some(message.clone()),
            ))
        })
        .await
    }

    /// `--update-all-images`: each considered container's newest admitted
    /// tag, from what the scanner has cached.
    pub(super) fn newest_targets(
        &self,
        checkout: &Checkout,
        spec: &ReleaseSpec,
    ) -> release::ContainerTargets {
        let repositories = self.cached_all(release::repositories(checkout, spec));
        release::per_container_targets(checkout, spec, |image, policy| {
            newest_admitted(image, policy, &repositories)
        })
    }

    pub(super) async fn plan(&self, spec: JobSpec) -> Result<Vec<WorkloadResult>, String> {
        let JobSpec::Release(wire) = spec else {
            return Err("only releases can be planned".into());
        };
        let mut spec = release_spec(&wire)?;
        let chosen = crate::selection::chosen(&wire)?;
        let checkout = {
            let loaded = self.loaded.lock().await;
            let Some(loaded) = loaded.as_ref() else {
                let status = self.repo.status();
                return Err(format!(
                    "the git repo has not been read yet{}",
                    status
                        .last_error
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            };
            loaded.checkout.clone()
        };
        if wire.update == ImageUpdate::AllLatest {
            spec.update = Update::PerContainer(self.newest_targets(&checkout, &spec));
        }
        if let Some(chosen) = &chosen {
            crate::selection::narrow(&checkout, &mut spec, chosen);
        }
        Ok(release::plan(&checkout, &spec)
            .iter()
            .map(wire_result)
            .collect())
    }
}

/// The release as flux-manifests plans it; with all-latest, the targets are
/// decided later, on the manifests the job edits.
fn release_spec(wire: &flux_api::ReleaseSpec) -> Result<ReleaseSpec, String> {
    let targets = match &wire.targets {
        flux_api::Targets::All => Targets::All,
        flux_api::Targets::Workloads(ids) => Targets::Only(
            ids.iter()
                .map(|id| parse_id(id))
                .collect::<Result<_, _>>()?,
        ),
    };
    let excludes = wire
        .exclude
        .iter()
        .map(|id| parse_id(id))
        .collect::<Result<_, _>>()?;
    let update = match &wire.update {
        ImageUpdate::Image(text) => {
            let image =
                ImageRef::parse(text).map_err(|e| format!("invalid image {text:?}: {e}"))?;
            if image.tag().is_none() && image.digest().is_none() {
                return Err(format!("image {text:?} names no tag or digest"));
            }
            Update::Image(image)
        }
        ImageUpdate::AllLatest => Update::PerContainer(release::ContainerTargets::new()),
    };
    Ok(ReleaseSpec {
        targets,
        excludes,
        update,
        containers: Vec::new(),
        force: wire.force,
    })
}

/// `Release <image> to <workloads>`, as the original wrote it (`all latest`
/// and `all` for the specs).
fn release_message(wire: &flux_api::ReleaseSpec) -> CommitMessage {
    let image = match &wire.update {
        ImageUpdate::Image(image) => image.clone(),
        ImageUpdate::AllLatest => "<all latest>".to_string(),
    };
    let workloads = match &wire.targets {
        flux_api::Targets::All => vec!["<all>".to_string()],
        flux_api::Targets::Workloads(ids) => ids.clone(),
    };
    CommitMessage::release(image, &workloads).headed_by(wire.message.as_deref())
}
