//! The policy job: automate, lock and tag-policy changes as annotation
//! edits, with the original's commit messages.

use flux_api::{JobSpec, PolicySpec, ResultStatus, WorkloadResult};
use flux_git::CommitMessage;
use flux_manifests::{PolicyUpdate, ResourceId};

use super::Inner;
use super::job::parse_id;
use crate::jobs::Outcome;

impl Inner {
    pub(super) async fn policy(&self, wire: PolicySpec) -> Result<Outcome, String> {
        let updates = policy_updates(&wire)?;
        let message = policy_message(&wire);
        let job = JobSpec::Policy(wire.clone());
        self.edit_and_push(&job, wire.user.as_deref(), |_, transaction| {
            let mut results = Vec::new();
            for (id, update) in &updates {
                let changed = transaction
                    .update_policies(id, update)
                    .map_err(|e| std::io::Error::other(format!("{id}: {e}")))?;
                results.push(WorkloadResult {
                    workload: id.to_string(),
                    status: if changed {
                        ResultStatus::Success
                    } else {
                        ResultStatus::Skipped
                    },
                    error: (!changed).then(|| "no changes".to_string()),
                    updates: Vec::new(),
                });
            }
            Ok((results, Some(message.clone())))
        })
        .await
    }
}

/// Each workload's annotation changes; refused as a whole when one is invalid.
fn policy_updates(wire: &PolicySpec) -> Result<Vec<(ResourceId, PolicyUpdate)>, String> {
    if wire.changes.is_empty() {
        return Err("no policy changes given".into());
    }
    wire.changes
        .iter()
        .map(|change| {
            let id = parse_id(&change.workload)?;
            let mut update = PolicyUpdate::default();
            match change.automated {
                Some(true) => update = update.and(PolicyUpdate::automate()),
                Some(false) => update = update.and(PolicyUpdate::deautomate()),
                None => {}
            }
            match change.locked {
                Some(true) => {
                    let lock = PolicyUpdate::lock(wire.message.as_deref(), wire.user.as_deref());
                    update = update.and(lock);
                }
                Some(false) => update = update.and(PolicyUpdate::unlock()),
                None => {}
            }
            for (container, policy) in &change.tags {
                let policy = if policy.is_empty() { "glob:*" } else { policy };
                let tag = PolicyUpdate::tag(container, policy)
                    .map_err(|e| format!("{id}: tag policy of {container}: {e}"))?;
                update = update.and(tag);
            }
            if update.is_empty() {
                return Err(format!("{id}: no policy change given"));
            }
            Ok((id, update))
        })
        .collect()
}

/// `Automated: …`, `Locked: …` and the rest, grouped by kind as the
/// original did; a user's message heads a list of them.
fn policy_message(wire: &PolicySpec) -> CommitMessage {
    use flux_git::PolicyChange as Kind;
    let mut automated = Vec::new();
    let mut deautomated = Vec::new();
    let mut locked = Vec::new();
    let mut unlocked = Vec::new();
    let mut updated = Vec::new();
    for change in &wire.changes {
        let id = change.workload.clone();
        match change.automated {
            Some(true) => automated.push(id.clone()),
            Some(false) => deautomated.push(id.clone()),
            None => {}
        }
        match change.locked {
            Some(true) => locked.push(id.clone()),
            Some(false) => unlocked.push(id.clone()),
            None => {}
        }
        if !change.tags.is_empty() {
            updated.push(id);
        }
    }
    let kinds: Vec<Kind> = [
        (automated, Kind::Automated as fn(Vec<String>) -> Kind),
        (deautomated, Kind::Deautomated),
        (locked, Kind::Locked),
        (unlocked, Kind::Unlocked),
        (updated, Kind::UpdatedPolicies),
    ]
    .into_iter()
    .filter(|(ids, _)| !ids.is_empty())
    .map(|(ids, kind)| kind(ids))
    .collect();
    match wire.message.as_deref() {
        Some(user) => CommitMessage::policies_with_user_message(user, &kinds),
        None => CommitMessage::policies(&kinds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_messages_take_the_original_forms() {
        let change = |automated, locked| flux_api::PolicyChange {
            workload: "sock-shop:deployment/front-end".into(),
            automated,
            locked,
            ..Default::default()
        };
        let spec = |changes, message: Option<&str>| PolicySpec {
            changes,
            message: message.map(str::to_string),
            user: None,
        };
        assert_eq!(
            policy_message(&spec(vec![change(Some(true), None)], None)).as_str(),
            "Automated: sock-shop:deployment/front-end"
        );
        assert_eq!(
            policy_message(&spec(vec![change(None, Some(false))], Some("thaw"))).as_str(),
            "thaw\n\n- Unlocked: sock-shop:deployment/front-end"
        );
    }

    #[test]
    fn an_invalid_tag_policy_refuses_the_whole_job() {
        let spec = PolicySpec {
            changes: vec![flux_api::PolicyChange {
                workload: "sock-shop:deployment/front-end".into(),
                tags: [("front-end".to_string(), "semver:>=>1".to_string())].into(),
                ..Default::default()
            }],
            message: None,
            user: None,
        };
        assert!(policy_updates(&spec).is_err());
    }
}
