//! Policies a workload carries in its annotations: automated, locked,
//! ignore, and a tag filter per container.

use std::collections::BTreeMap;

use flux_image::Policy;

/// The current annotation prefix.
pub const PREFIX: &str = "fluxcd.io/";
/// The prefix Flux used before `fluxcd.io/`; still read, and updated in place.
pub const LEGACY_PREFIX: &str = "flux.weave.works/";
/// The prefix of per-container tag filters in the `filter.fluxcd.io/<container>` form.
pub const FILTER_PREFIX: &str = "filter.fluxcd.io/";

/// Whether, and how, a workload is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignore {
    /// `fluxcd.io/ignore: "true"`: neither synced nor released.
    All,
    /// `fluxcd.io/ignore: sync_only`: not synced, still released.
    SyncOnly,
}

/// The policies of one workload.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Policies {
    /// New images are released automatically.
    pub automated: bool,
    /// Releases leave the workload alone.
    pub locked: bool,
    /// Who locked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_user: Option<String>,
    /// Why it is locked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_msg: Option<String>,
    /// Whether it is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore: Option<Ignore>,
    /// Tag filter per container name.
    #[serde(serialize_with = "tags_as_strings")]
    pub tags: BTreeMap<String, Policy>,
    /// Cosign keys per container name (`fluxcd.io/verify.<container>`):
    /// an inline PEM public key, or names of `--registry-verify-key` keys.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub verify: BTreeMap<String, String>,
    /// `fluxcd.io/rollback-on-failure`: an automated release whose rollout
    /// fails is reverted.
    pub rollback_on_failure: bool,
    /// `fluxcd.io/rollout-deadline`, as written (`10m`): how long an
    /// automated release may take to be ready before it counts as failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_deadline: Option<String>,
    /// `fluxcd.io/reverted.<container>`: per container, the tag whose
    /// rollout failed and was reverted; automation never picks it again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reverted: BTreeMap<String, Reverted>,
}

/// A tag reverted after its rollout failed, as its annotation records it:
/// `<tag>` or `<tag>: <reason>` (a tag never holds a colon).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reverted {
    /// The tag that failed.
    pub tag: String,
    /// Why its rollout failed, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Reverted {
    /// Reads an annotation's value.
    pub fn parse(value: &str) -> Option<Reverted> {
        let (tag, reason) = match value.split_once(':') {
            Some((tag, reason)) => (tag.trim(), Some(reason.trim().to_string())),
            None => (value.trim(), None),
        };
        if tag.is_empty() {
            return None;
        }
        Some(Reverted {
            tag: tag.to_string(),
            reason: reason.filter(|r| !r.is_empty()),
        })
    }

    /// The annotation's value.
    pub fn value(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{}: {reason}", self.tag),
            None => self.tag.clone(),
        }
    }
}

impl std::fmt::Display for Reverted {
    /// `reverted: <tag> failed its rollout (<reason>)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reverted: {} failed its rollout", self.tag)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

fn tags_as_strings<S: serde::Serializer>(
    tags: &BTreeMap<String, Policy>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(tags.iter().map(|(c, p)| (c, p.to_string())))
}

impl Policies {
    /// The tag filter for a container; admits everything when none is set.
    pub fn tag_policy(&self, container: &str) -> Policy {
        self.tags
            .get(container)
            .cloned()
            .unwrap_or_else(Policy::all)
    }

    /// The names shown in the POLICY column: a sorted subset of
    /// `automated`, `ignore`, `locked`.
    pub fn markers(&self) -> Vec<&'static str> {
        let mut markers = Vec::new();
        if self.automated {
            markers.push("automated");
        }
        if self.ignore == Some(Ignore::All) {
            markers.push("ignore");
        }
        if self.locked {
            markers.push("locked");
        }
        markers
    }
}

/// An annotation whose value is not a valid policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAnnotation {
    /// The annotation key as written.
    pub annotation: String,
    /// What is wrong with its value.
    pub message: String,
}

/// A policy an annotation can set, independent of prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKey {
    /// `automated`
    Automated,
    /// `locked`
    Locked,
    /// `locked_user`
    LockedUser,
    /// `locked_msg`
    LockedMsg,
    /// `ignore`
    Ignore,
    /// `tag.<container>`
    Tag(String),
    /// `rollback-on-failure`
    RollbackOnFailure,
    /// `rollout-deadline`
    RolloutDeadline,
    /// `reverted.<container>`
    Reverted(String),
}

impl PolicyKey {
    /// The suffix after the prefix: `automated`, `tag.<container>`, …
    pub fn suffix(&self) -> String {
        match self {
            PolicyKey::Automated => "automated".into(),
            PolicyKey::Locked => "locked".into(),
            PolicyKey::LockedUser => "locked_user".into(),
            PolicyKey::LockedMsg => "locked_msg".into(),
            PolicyKey::Ignore => "ignore".into(),
            PolicyKey::Tag(container) => format!("tag.{container}"),
            PolicyKey::RollbackOnFailure => "rollback-on-failure".into(),
            PolicyKey::RolloutDeadline => "rollout-deadline".into(),
            PolicyKey::Reverted(container) => format!("reverted.{container}"),
        }
    }

    /// Every annotation key that sets this policy, the preferred one first.
    pub fn annotations(&self) -> Vec<String> {
        let suffix = self.suffix();
        let mut keys = vec![
            format!("{PREFIX}{suffix}"),
            format!("{LEGACY_PREFIX}{suffix}"),
        ];
        if let PolicyKey::Tag(container) = self {
            keys.push(format!("{FILTER_PREFIX}{container}"));
        }
        keys
    }

    /// The policy an annotation key sets, if it is one of ours.
    pub fn from_annotation(key: &str) -> Option<PolicyKey> {
        if let Some(container) = key.strip_prefix(FILTER_PREFIX) {
            return Some(PolicyKey::Tag(container.to_string()));
        }
        let suffix = key
            .strip_prefix(PREFIX)
            .or_else(|| key.strip_prefix(LEGACY_PREFIX))?;
        Some(match suffix {
            "automated" => PolicyKey::Automated,
            "locked" => PolicyKey::Locked,
            "locked_user" => PolicyKey::LockedUser,
            "locked_msg" => PolicyKey::LockedMsg,
            "ignore" => PolicyKey::Ignore,
            "rollback-on-failure" => PolicyKey::RollbackOnFailure,
            "rollout-deadline" => PolicyKey::RolloutDeadline,
            _ => match suffix.strip_prefix("reverted.") {
                Some(container) => PolicyKey::Reverted(container.to_string()),
                None => PolicyKey::Tag(suffix.strip_prefix("tag.")?.to_string()),
            },
        })
    }
}

fn flag(key: &str, value: &str) -> Result<bool, InvalidAnnotation> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" | "" => Ok(false),
        _ => Err(InvalidAnnotation {
            annotation: key.to_string(),
            message: format!("expected \"true\" or \"false\", found {value:?}"),
        }),
    }
}

/// Reads the policies out of a workload's annotations. Invalid values are
/// returned beside the policies that were valid.
pub fn from_annotations<'k>(
    annotations: impl IntoIterator<Item = (&'k str, &'k str)>,
) -> (Policies, Vec<InvalidAnnotation>) {
    let mut policies = Policies::default();
    let mut invalid = Vec::new();
    for (key, value) in annotations {
        if let Some(container) = verify_container(key) {
            policies
                .verify
                .insert(container.to_string(), value.to_string());
            continue;
        }
        let Some(policy) = PolicyKey::from_annotation(key) else {
            continue;
        };
        let result = match policy {
            PolicyKey::Automated => flag(key, value).map(|on| policies.automated |= on),
            PolicyKey::Locked => flag(key, value).map(|on| policies.locked |= on),
            PolicyKey::LockedUser => {
                policies.locked_user = Some(value.to_string());
                Ok(())
            }
            PolicyKey::LockedMsg => {
                policies.locked_msg = Some(value.to_string());
                Ok(())
            }
            PolicyKey::Ignore => read_ignore(key, value).map(|ignore| {
                policies.ignore = policies.ignore.or(ignore);
            }),
            PolicyKey::Tag(container) => value
                .parse::<Policy>()
                .map(|policy| {
                    policies.tags.insert(container, policy);
                })
                .map_err(|error| InvalidAnnotation {
                    annotation: key.to_string(),
                    message: error.to_string(),
                }),
            PolicyKey::RollbackOnFailure => {
                flag(key, value).map(|on| policies.rollback_on_failure |= on)
            }
            PolicyKey::RolloutDeadline => {
                policies.rollout_deadline = Some(value.trim().to_string());
                Ok(())
            }
            PolicyKey::Reverted(container) => match Reverted::parse(value) {
                Some(reverted) => {
                    policies.reverted.insert(container, reverted);
                    Ok(())
                }
                None => Err(InvalidAnnotation {
                    annotation: key.to_string(),
                    message: "expected the reverted tag, as in \"0.3.14\"".into(),
                }),
            },
        };
        if let Err(error) = result {
            invalid.push(error);
        }
    }
    (policies, invalid)
}

/// The container a `fluxcd.io/verify.<container>` annotation is about.
fn verify_container(key: &str) -> Option<&str> {
    key.strip_prefix(PREFIX)?
        .strip_prefix("verify.")
        .filter(|container| !container.is_empty())
}

fn read_ignore(key: &str, value: &str) -> Result<Option<Ignore>, InvalidAnnotation> {
    match value.trim().to_ascii_lowercase().as_str() {
        "sync_only" => Ok(Some(Ignore::SyncOnly)),
        other => flag(key, other).map(|on| on.then_some(Ignore::All)),
    }
}

/// A change of policies: annotations to set and to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyUpdate {
    /// Policies to set, with their values.
    pub add: Vec<(PolicyKey, String)>,
    /// Policies to remove.
    pub remove: Vec<PolicyKey>,
}

impl PolicyUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// `fluxcd.io/automated: "true"`.
    pub fn automate() -> PolicyUpdate {
        PolicyUpdate {
            add: vec![(PolicyKey::Automated, "true".into())],
            remove: Vec::new(),
        }
    }

    /// Removes `fluxcd.io/automated`.
    pub fn deautomate() -> PolicyUpdate {
        PolicyUpdate {
            add: Vec::new(),
            remove: vec![PolicyKey::Automated],
        }
    }

    /// `fluxcd.io/locked: "true"`, with who locked it and why when given.
    pub fn lock(message: Option<&str>, user: Option<&str>) -> PolicyUpdate {
        let mut add = vec![(PolicyKey::Locked, "true".to_string())];
        add.extend(message.map(|m| (PolicyKey::LockedMsg, m.to_string())));
        add.extend(user.map(|u| (PolicyKey::LockedUser, u.to_string())));
        PolicyUpdate {
            add,
            remove: Vec::new(),
        }
    }

    /// Removes the lock, its message and its user.
    pub fn unlock() -> PolicyUpdate {
        PolicyUpdate {
            add: Vec::new(),
            remove: vec![
                PolicyKey::Locked,
                PolicyKey::LockedMsg,
                PolicyKey::LockedUser,
            ],
        }
    }

    /// Sets a container's tag filter; `*` and `glob:*` (admit everything)
    /// remove it instead. The policy is checked before anything is edited.
    pub fn tag(container: &str, policy: &str) -> Result<PolicyUpdate, flux_image::PolicyError> {
        let key = PolicyKey::Tag(container.to_string());
        let parsed: Policy = policy.parse()?;
        if parsed.is_all() {
            return Ok(PolicyUpdate {
                add: Vec::new(),
                remove: vec![key],
            });
        }
        Ok(PolicyUpdate {
            add: vec![(key, policy.to_string())],
            remove: Vec::new(),
        })
    }

    /// This update followed by `other`.
    pub fn and(mut self, other: PolicyUpdate) -> PolicyUpdate {
        self.remove
            .retain(|k| !other.add.iter().any(|(a, _)| a == k));
        self.add.retain(|(k, _)| !other.remove.contains(k));
        self.add.extend(other.add);
        self.remove.extend(other.remove);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_annotations_name_the_keys_of_a_container() {
        let (policies, invalid) = from_annotations([
            ("fluxcd.io/verify.front-end", "release"),
            ("fluxcd.io/verify.", "ignored: no container"),
            ("fluxcd.io/tag.front-end", "semver:~0.3"),
        ]);
        assert!(invalid.is_empty());
        assert_eq!(policies.verify.len(), 1);
        assert_eq!(policies.verify["front-end"], "release");
        assert_eq!(policies.tags["front-end"].to_string(), "semver:~0.3");
    }

    #[test]
    fn current_and_legacy_prefixes_are_both_read() {
        let (policies, invalid) = from_annotations([
            ("fluxcd.io/automated", "true"),
            ("flux.weave.works/locked", "true"),
            ("flux.weave.works/locked_msg", "hotfix"),
            ("fluxcd.io/tag.front-end", "semver:~0.3"),
            ("filter.fluxcd.io/user", "glob:master-*"),
            ("fluxcd.io/ignore", "sync_only"),
            ("unrelated.io/x", "y"),
        ]);
        assert!(invalid.is_empty());
        assert!(policies.automated && policies.locked);
        assert_eq!(policies.locked_msg.as_deref(), Some("hotfix"));
        assert_eq!(policies.ignore, Some(Ignore::SyncOnly));
        assert_eq!(policies.tags["front-end"].to_string(), "semver:~0.3");
        assert_eq!(policies.tags["user"].to_string(), "glob:master-*");
        assert_eq!(policies.markers(), ["automated", "locked"]);
    }

    #[test]
    fn invalid_values_name_their_annotation_and_spare_the_others() {
        let (policies, invalid) = from_annotations([
            ("fluxcd.io/tag.web", "semver:>=>1"),
            ("fluxcd.io/automated", "yes"),
            ("fluxcd.io/locked", "true"),
        ]);
        assert!(policies.locked);
        let keys: Vec<_> = invalid.iter().map(|i| i.annotation.as_str()).collect();
        assert_eq!(keys, ["fluxcd.io/tag.web", "fluxcd.io/automated"]);
    }

    #[test]
    fn a_reverted_tag_keeps_its_reason_and_rollback_is_a_flag() {
        let (policies, invalid) = from_annotations([
            ("fluxcd.io/rollback-on-failure", "true"),
            ("fluxcd.io/rollout-deadline", "5m"),
            (
                "fluxcd.io/reverted.front-end",
                "0.3.14: ProgressDeadlineExceeded",
            ),
            ("fluxcd.io/reverted.sidecar", "1.2"),
        ]);
        assert!(invalid.is_empty(), "{invalid:?}");
        assert!(policies.rollback_on_failure);
        assert_eq!(policies.rollout_deadline.as_deref(), Some("5m"));
        let reverted = &policies.reverted["front-end"];
        assert_eq!(reverted.tag, "0.3.14");
        assert_eq!(
            reverted.to_string(),
            "reverted: 0.3.14 failed its rollout (ProgressDeadlineExceeded)"
        );
        assert_eq!(reverted.value(), "0.3.14: ProgressDeadlineExceeded");
        assert_eq!(policies.reverted["sidecar"].reason, None);
    }

    #[test]
    fn ignore_true_is_shown_as_a_marker() {
        let (policies, _) = from_annotations([("fluxcd.io/ignore", "true")]);
        assert_eq!(policies.markers(), ["ignore"]);
    }
}
