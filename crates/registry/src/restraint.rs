//! What keeps automation below the newest tag a policy admits: tags
//! reverted after a failed rollout, a person's rollback in git, unsigned
//! images; and, per container, the answer to "why did automation not move
//! it?".

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use flux_image::{Candidate, ImageRef, Name, Policy, Rejection};

use crate::plan::newest_admitted_where;
use crate::scan::RepositoryInfo;

/// Limits on what automation may pick for one container, beyond its policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restraint {
    /// Tags reverted after their rollout failed: never picked again.
    pub reverted: BTreeSet<String>,
    /// A person rolled the container back from this tag: nothing moves it
    /// until a tag newer than this one is admitted.
    pub held_below: Option<String>,
    /// Tags whose image carries no valid signature, where signatures are
    /// required: never picked. Filled by signature verification; empty
    /// where none is asked for.
    pub unsigned: BTreeSet<String>,
}

impl Restraint {
    /// Whether automation may pick `tag` at all.
    fn allows(&self, tag: &str) -> bool {
        !self.reverted.contains(tag) && !self.unsigned.contains(tag)
    }
}

/// [`crate::newest_admitted`], restrained: reverted and unsigned tags are
/// passed over, and a hold keeps the container where it is until a tag
/// newer than the one rolled back from is admitted.
pub fn newest_allowed(
    image: &ImageRef,
    policy: &Policy,
    repositories: &HashMap<Name, RepositoryInfo>,
    restraint: &Restraint,
) -> Result<Option<ImageRef>, String> {
    let next = newest_admitted_where(image, policy, repositories, |tag| restraint.allows(tag))?;
    let Some(from) = &restraint.held_below else {
        return Ok(next);
    };
    let Some(next) = next else {
        return Ok(None);
    };
    let (Some(info), Some(tag)) = (repositories.get(image.name()), next.tag()) else {
        return Ok(Some(next));
    };
    if policy.newer_first(&candidate(info, tag), &candidate(info, from)) != Ordering::Less {
        return Ok(None);
    }
    Ok(Some(next))
}

/// Whether `tag` is older than `than` by `policy`'s ordering (versions for
/// semver, creation times otherwise); false when it cannot tell.
pub fn is_older(policy: &Policy, info: Option<&RepositoryInfo>, tag: &str, than: &str) -> bool {
    let (a, b) = match info {
        Some(info) => (candidate(info, tag), candidate(info, than)),
        None => (Candidate::new(tag), Candidate::new(than)),
    };
    if !policy.orders_by_version() && (a.created.is_none() || b.created.is_none()) {
        return false;
    }
    policy.newer_first(&b, &a) == Ordering::Less
}

fn candidate(info: &RepositoryInfo, tag: &str) -> Candidate {
    info.tag(tag)
        .map(|t| t.candidate())
        .unwrap_or_else(|| Candidate::new(tag))
}

/// Why automation passed over a tag newer than the one running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassedOver {
    /// The policy does not admit it.
    Policy(Rejection),
    /// A glob or regex policy cannot order a tag without a creation time.
    NoCreationTime,
    /// It has no image for a wanted platform.
    NoPlatform,
    /// Its manifest could not be read.
    Unreadable(String),
    /// It was reverted after its rollout failed.
    Reverted,
    /// A person rolled the container back from it, or from a newer tag.
    Held,
    /// Its image carries no valid signature.
    Unsigned,
}

/// What automation makes of one container's image, and of every tag newer
/// than the one it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The tag automation would move it to next; none when it stays.
    pub next: Option<String>,
    /// Tags newer than the running one that automation passed over, newest
    /// first, each with why.
    pub passed_over: Vec<(String, PassedOver)>,
}

/// Why automation moves, or does not move, a container running `image`:
/// the tags newer than its own (by creation time, or by version for a
/// semver policy) and what kept each. `Err` when the repository is not
/// known or its scan failed; a digest-only image has nothing newer.
pub fn explain(
    image: &ImageRef,
    policy: &Policy,
    repositories: &HashMap<Name, RepositoryInfo>,
    restraint: &Restraint,
) -> Result<Explanation, String> {
    let next = newest_allowed(image, policy, repositories, restraint)?
        .and_then(|i| i.tag().map(str::to_string));
    let info = &repositories[image.name()];
    let Some(current_tag) = image.tag() else {
        return Ok(Explanation {
            next,
            passed_over: Vec::new(),
        });
    };
    let current = candidate(info, current_tag);
    let held_below = restraint.held_below.as_ref().map(|t| candidate(info, t));
    let mut newer: Vec<_> = info
        .tags
        .iter()
        .filter(|t| t.tag != current_tag && Some(&t.tag) != next.as_ref())
        .filter(|t| newer_than(policy, &t.candidate(), &current))
        .collect();
    newer.sort_by(|a, b| {
        let (a, b) = (a.candidate(), b.candidate());
        b.created.cmp(&a.created).then(policy.newer_first(&a, &b))
    });
    let passed_over = newer
        .into_iter()
        .map(|t| {
            let why = if let Some(error) = &t.error {
                PassedOver::Unreadable(error.clone())
            } else if !t.runs_here() {
                PassedOver::NoPlatform
            } else if let Err(rejection) = policy.check(&t.tag) {
                PassedOver::Policy(rejection)
            } else if !policy.can_automate(&t.candidate()) {
                PassedOver::NoCreationTime
            } else if restraint.reverted.contains(&t.tag) {
                PassedOver::Reverted
            } else if restraint.unsigned.contains(&t.tag) {
                PassedOver::Unsigned
            } else if held_below
                .as_ref()
                .is_some_and(|from| policy.newer_first(&t.candidate(), from) != Ordering::Less)
            {
                PassedOver::Held
            } else {
                // Admitted, but older than the tag automation picks.
                return None;
            };
            Some((t.tag.clone(), why))
        })
        .collect::<Option<Vec<_>>>();
    Ok(Explanation {
        next,
        passed_over: passed_over.unwrap_or_default(),
    })
}

/// Whether `tag` is newer than `current`: by creation time when both have
/// one; otherwise, for a semver policy, by version.
fn newer_than(policy: &Policy, tag: &Candidate, current: &Candidate) -> bool {
    match (tag.created, current.created) {
        (Some(a), Some(b)) => a > b,
        _ if policy.orders_by_version() => {
            policy.check(&tag.tag).is_ok() && policy.newer_first(tag, current) == Ordering::Less
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Platform;
    use crate::scan::TagInfo;

    fn tag(tag: &str, created: &str) -> TagInfo {
        TagInfo {
            tag: tag.to_string(),
            digest: Some(format!("sha256:{tag}")),
            created: Some(created.parse().expect("a valid time")),
            platforms: Vec::new(),
            platform: Some(Platform::linux_amd64()),
            image_digest: None,
            error: None,
            first_seen: None,
        }
    }

    fn front_end(tags: Vec<TagInfo>) -> (ImageRef, HashMap<Name, RepositoryInfo>) {
        let image = ImageRef::parse("registry.test/front-end:0.3.13").expect("an image");
        let info = RepositoryInfo {
            name: image.name().clone(),
            tags,
            error: None,
            listed_at: None,
        };
        (image.clone(), HashMap::from([(image.name().clone(), info)]))
    }

    fn tags() -> Vec<TagInfo> {
        vec![
            tag("0.3.13", "2017-01-10T10:00:00Z"),
            tag("0.3.14", "2017-02-10T10:00:00Z"),
            tag("0.3.15", "2017-03-10T10:00:00Z"),
        ]
    }

    fn next(image: &ImageRef, repos: &HashMap<Name, RepositoryInfo>, r: &Restraint) -> String {
        newest_allowed(image, &Policy::all(), repos, r)
            .expect("scanned")
            .map(|i| i.tag().expect("a tag").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_reverted_tag_is_passed_over_for_the_next_newest() {
        let (image, repos) = front_end(tags());
        let restraint = Restraint {
            reverted: BTreeSet::from(["0.3.15".to_string()]),
            ..Restraint::default()
        };
        assert_eq!(next(&image, &repos, &Restraint::default()), "0.3.15");
        assert_eq!(next(&image, &repos, &restraint), "0.3.14");
    }

    #[test]
    fn a_hold_lasts_until_a_tag_newer_than_the_one_rolled_back_from() {
        let (image, repos) = front_end(tags()[..2].to_vec());
        let held = Restraint {
            held_below: Some("0.3.14".to_string()),
            ..Restraint::default()
        };
        assert_eq!(
            next(&image, &repos, &held),
            "",
            "0.3.14 is what was rolled back"
        );
        let explained = explain(&image, &Policy::all(), &repos, &held).expect("scanned");
        assert_eq!(explained.passed_over, [("0.3.14".into(), PassedOver::Held)]);

        let (image, repos) = front_end(tags());
        assert_eq!(next(&image, &repos, &held), "0.3.15");
    }

    #[test]
    fn the_policy_s_rejections_of_newer_tags_are_explained() {
        let (image, repos) = front_end(tags());
        let policy: Policy = "semver:~0.3.13 <0.3.14".parse().expect("a policy");
        let explained = explain(&image, &policy, &repos, &Restraint::default()).expect("scanned");
        assert_eq!(explained.next, None);
        let tags: Vec<_> = explained
            .passed_over
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(tags, ["0.3.15", "0.3.14"]);
        assert!(matches!(
            explained.passed_over[0].1,
            PassedOver::Policy(Rejection::OutsideRange(_))
        ));
    }

    #[test]
    fn older_goes_by_the_policy_s_ordering() {
        let (_, repos) = front_end(tags());
        let info = repos.values().next();
        assert!(is_older(&Policy::all(), info, "0.3.13", "0.3.14"));
        assert!(!is_older(&Policy::all(), info, "0.3.15", "0.3.14"));
        assert!(
            !is_older(&Policy::all(), None, "0.3.13", "0.3.14"),
            "no times"
        );
        let semver: Policy = "semver:*".parse().expect("a policy");
        assert!(is_older(&semver, None, "0.3.13", "0.3.14"));
    }
}
