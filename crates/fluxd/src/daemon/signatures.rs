//! Signed images: which cosign keys a container's images must be signed
//! by, the verdicts kept warm after each repository's poll, and the checks
//! automation, `--update-all-images` and `release --update-image` make.
//!
//! A container needs signatures when its workload has
//! `fluxcd.io/verify.<container>` (an inline PEM key, names of
//! `--registry-verify-key` keys, or `*` for any of them), or when any
//! `--registry-verify-key` is given (then one of those keys).

use flux_api::Signature;
use flux_image::ImageRef;
use flux_manifests::{Checkout, Container, Policies};
use flux_registry::cosign::keys_for_annotation;
use flux_registry::{RepositoryInfo, Verdict, VerifyKey};

use super::Inner;

impl Inner {
    /// The keys a container's images must be signed by; `None` when they
    /// need no signature. A bad annotation is an error naming it.
    pub(super) fn container_keys(
        &self,
        policies: &Policies,
        container: &str,
    ) -> Result<Option<Vec<VerifyKey>>, String> {
        if let Some(value) = policies.verify.get(container) {
            return keys_for_annotation(value, &self.verify_keys)
                .map(Some)
                .map_err(|e| format!("fluxcd.io/verify.{container}: {e}"));
        }
        Ok((!self.verify_keys.is_empty()).then(|| self.verify_keys.clone()))
    }

    /// Every key some container running `info`'s repository asks for.
    fn keys_in_use(&self, checkout: &Checkout, info: &RepositoryInfo) -> Vec<VerifyKey> {
        let mut keys: Vec<VerifyKey> = Vec::new();
        for workload in &checkout.workloads {
            for container in &workload.containers {
                if container.image.name() != &info.name {
                    continue;
                }
                let Ok(Some(wanted)) = self.container_keys(&workload.policies, &container.name)
                else {
                    continue;
                };
                for key in wanted {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        keys
    }

    /// Verifies the signatures of a repository's tags with every key in
    /// use for it, after its poll; what was verified before is not fetched
    /// again.
    pub(super) async fn verify_signatures(&self, info: &RepositoryInfo) {
        let read = self
            .checkout_read
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let Some(checkout) = read else {
            return;
        };
        let keys = self.keys_in_use(&checkout, info);
        if keys.is_empty() {
            return;
        }
        self.signatures.verify_tags(info, &keys).await;
    }

    /// Whether a tag may be picked for this container: signed, when its
    /// images need a signature. Known verdicts only: a tag not verified yet
    /// waits for its repository's next poll.
    pub(super) fn eligible<'a>(
        &'a self,
        keys: Option<&'a [VerifyKey]>,
        info: Option<&'a RepositoryInfo>,
    ) -> impl Fn(&str) -> bool + 'a {
        move |tag| match keys {
            None => true,
            Some(keys) => info.is_some_and(|info| {
                self.signatures
                    .known(info, tag, keys)
                    .is_some_and(|v| v.is_signed())
            }),
        }
    }

    /// The signature state shown for a tag of this container.
    pub(super) fn signature_shown(
        &self,
        policies: &Policies,
        container: &Container,
        info: &RepositoryInfo,
        tag: &str,
    ) -> Option<Signature> {
        let keys = match self.container_keys(policies, &container.name) {
            Ok(keys) => keys?,
            Err(error) => return Some(Signature::Unsigned { reason: error }),
        };
        let verdict =
            self.signatures
                .known(info, tag, &keys)
                .unwrap_or_else(|| Verdict::Unsigned {
                    reason: "not verified yet".into(),
                });
        Some(wire(verdict))
    }

    /// `release --update-image` of an image some targeted container needs
    /// signed: refused, unless forced, when it is not.
    pub(super) async fn refuse_unsigned(
        &self,
        image: &ImageRef,
        containers: &[(Policies, String)],
    ) -> Result<(), String> {
        let Some(tag) = image.tag() else {
            return Ok(());
        };
        for (policies, container) in containers {
            let Some(keys) = self.container_keys(policies, container)? else {
                continue;
            };
            let info = self.cached(image.name()).unwrap_or_else(|| RepositoryInfo {
                name: image.name().clone(),
                tags: Vec::new(),
                error: None,
                listed_at: None,
            });
            if let Verdict::Unsigned { reason } =
                self.signatures.verify_tag(&info, tag, &keys).await
            {
                return Err(format!(
                    "{image} is not signed ({reason}); container {container} needs a cosign signature: release with --force to run it anyway"
                ));
            }
        }
        Ok(())
    }
}

fn wire(verdict: Verdict) -> Signature {
    match verdict {
        Verdict::Signed { key } => Signature::Signed { key },
        Verdict::Unsigned { reason } => Signature::Unsigned { reason },
    }
}
