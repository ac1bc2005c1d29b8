//! "Why not?": per container of a workload, why automation did or did not
//! move it, from the manifests last read, the registry cache and git's
//! history (the same restraints automation plans with).

use flux_api::{Explanation, Reason, ReasonKind};
use flux_manifests::{Checkout, Ignore, Workload};
use flux_registry::PassedOver;

use super::Inner;
use super::hold::Moved;

impl Inner {
    /// Why automation did or did not move each container of `workload`;
    /// `None` when the manifests last read hold no such workload.
    pub(super) async fn explain(&self, workload: &str) -> Option<Vec<Explanation>> {
        let (checkout, moves) = {
            let loaded = self.loaded.lock().await;
            let loaded = loaded.as_ref()?;
            (loaded.checkout.clone(), loaded.moves.clone())
        };
        let found = checkout
            .workloads
            .iter()
            .find(|w| w.id.to_string() == workload)?;
        Some(
            found
                .containers
                .iter()
                .map(|c| self.explain_container(&checkout, &moves, found, &c.name))
                .collect(),
        )
    }

    fn explain_container(
        &self,
        checkout: &Checkout,
        moves: &[Moved],
        workload: &Workload,
        container: &str,
    ) -> Explanation {
        let running = workload
            .container(container)
            .expect("the container is the workload's own");
        let mut explained = Explanation {
            workload: workload.id.to_string(),
            container: container.to_string(),
            image: running.spelling.clone(),
            next: None,
            reasons: workload_reasons(workload),
        };
        let restraint = self.restraint(checkout, moves, &workload.id, container);
        let repositories = self.cached_all([running.image.name().clone()].into());
        let policy = workload.policies.tag_policy(container);
        let found = match flux_registry::explain(&running.image, &policy, &repositories, &restraint)
        {
            Ok(found) => found,
            Err(why) => {
                explained
                    .reasons
                    .push(reason(ReasonKind::Unknown, None, why));
                return explained;
            }
        };
        if running.image.tag().is_none() {
            let message = "pinned by digest: no tag to move from".to_string();
            explained
                .reasons
                .push(reason(ReasonKind::Digest, None, message));
            return explained;
        }
        if let Some(moved) = self.rollback(workload, moves, container) {
            let short = moved.commit.get(..7).unwrap_or(&moved.commit);
            let message = format!(
                "held at {} by {short}, a rollback from {}: held until a tag newer than {} appears",
                moved.tag, moved.from, moved.from
            );
            explained
                .reasons
                .push(reason(ReasonKind::Held, Some(&moved.tag), message));
        }
        if let Some(reverted) = workload.policies.reverted.get(container) {
            explained.reasons.push(reason(
                ReasonKind::Reverted,
                Some(&reverted.tag),
                reverted.to_string(),
            ));
        }
        for (tag, why) in &found.passed_over {
            explained
                .reasons
                .push(passed_over(tag, why, &policy.to_string()));
        }
        explained.next = found.next;
        if explained.next.is_none() && found.passed_over.is_empty() {
            let tag = running.image.tag().unwrap_or_default();
            let message = format!("{tag} is the newest tag automation may pick");
            explained
                .reasons
                .push(reason(ReasonKind::Newest, Some(tag), message));
        }
        explained
    }
}

/// Locked, ignored, not automated: reasons that hold for every container.
fn workload_reasons(workload: &Workload) -> Vec<Reason> {
    let policies = &workload.policies;
    let mut reasons = Vec::new();
    if !policies.automated {
        let message = "not automated (fluxctl automate turns it on)".to_string();
        reasons.push(reason(ReasonKind::NotAutomated, None, message));
    }
    if policies.locked {
        let by = policies
            .locked_user
            .as_deref()
            .map(|u| format!(" by {u}"))
            .unwrap_or_default();
        let message = policies
            .locked_msg
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let message = format!("locked{by}{message}");
        reasons.push(reason(ReasonKind::Locked, None, message));
    }
    if policies.ignore == Some(Ignore::All) {
        let message = "ignored (fluxcd.io/ignore)".to_string();
        reasons.push(reason(ReasonKind::Ignored, None, message));
    }
    reasons
}

fn passed_over(tag: &str, why: &PassedOver, policy: &str) -> Reason {
    let (kind, message) = match why {
        PassedOver::Policy(rejection) => (
            ReasonKind::Policy,
            format!("{tag}: rejected by {policy}: {rejection}"),
        ),
        PassedOver::NoCreationTime => (
            ReasonKind::NoCreationTime,
            format!("{tag}: no creation time, which {policy} orders by"),
        ),
        PassedOver::NoPlatform => (
            ReasonKind::NoPlatform,
            format!("{tag}: no image for the wanted platforms"),
        ),
        PassedOver::Unreadable(error) => (ReasonKind::Unreadable, format!("{tag}: {error}")),
        PassedOver::Reverted => (
            ReasonKind::Reverted,
            format!("{tag}: reverted after its rollout failed"),
        ),
        PassedOver::Held => (
            ReasonKind::Held,
            format!("{tag}: not newer than the tag a person rolled back from"),
        ),
        PassedOver::Unsigned => (ReasonKind::Unsigned, format!("{tag}: unsigned")),
    };
    reason(kind, Some(tag), message)
}

fn reason(kind: ReasonKind, tag: Option<&str>, message: String) -> Reason {
    Reason {
        kind,
        tag: tag.map(str::to_string),
        message,
    }
}
