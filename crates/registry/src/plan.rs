//! Planning `release --update-all-images`: for each container, the newest
//! tag its policy admits, from what the scanner knows. Planning only; the
//! manifest edits belong to the manifests crate.

use std::cmp::Ordering;
use std::collections::HashMap;

use flux_image::{ImageRef, Name, Policy};

use crate::scan::RepositoryInfo;

/// A container of a workload, with the image it runs and its tag policy.
#[derive(Debug, Clone)]
pub struct ContainerImage {
    /// The workload id, `namespace:kind/name`.
    pub workload: String,
    /// The container's name.
    pub container: String,
    /// The image it runs.
    pub image: ImageRef,
    /// Its tag policy (`Policy::all()` when the workload names none).
    pub policy: Policy,
}

/// One container to move to another tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpdate {
    /// The workload id.
    pub workload: String,
    /// The container.
    pub container: String,
    /// The image it runs now.
    pub from: ImageRef,
    /// The image it should run.
    pub to: ImageRef,
}

/// For each container, the newest tag its policy admits, when that is newer
/// than what it runs. A tag is never picked when its image lacks every
/// wanted platform, nor, under a glob or regex policy, when its creation
/// time is unknown. Containers whose repository could not be read, or
/// whose image is pinned by digest only, are left alone.
pub fn plan_update_all(
    containers: &[ContainerImage],
    repositories: &HashMap<Name, RepositoryInfo>,
) -> Vec<PlannedUpdate> {
    containers
        .iter()
        .filter_map(|c| plan_container(c, repositories))
        .collect()
}

fn plan_container(
    container: &ContainerImage,
    repositories: &HashMap<Name, RepositoryInfo>,
) -> Option<PlannedUpdate> {
    let to = newest_admitted(&container.image, &container.policy, repositories).ok()??;
    Some(PlannedUpdate {
        workload: container.workload.clone(),
        container: container.container.clone(),
        from: container.image.clone(),
        to,
    })
}

/// The image one container running `image` under `policy` should move to:
/// `Ok(Some(newer))`, `Ok(None)` when it runs the newest admitted tag (or
/// is pinned by digest only, or nothing newer is admitted), and `Err` with
/// the reason when its repository is not in `repositories` or could not be
/// read. The same rules as [`plan_update_all`]; the release planners of
/// `fluxctl` and `fluxd` call it for each container they consider.
pub fn newest_admitted(
    image: &ImageRef,
    policy: &Policy,
    repositories: &HashMap<Name, RepositoryInfo>,
) -> Result<Option<ImageRef>, String> {
    newest_admitted_where(image, policy, repositories, |_| true)
}

/// [`newest_admitted`] among the tags `eligible` lets through (with
/// signature verification: the signed ones). The tag running now is
/// compared with as it is, eligible or not.
pub fn newest_admitted_where(
    image: &ImageRef,
    policy: &Policy,
    repositories: &HashMap<Name, RepositoryInfo>,
    eligible: impl Fn(&str) -> bool,
) -> Result<Option<ImageRef>, String> {
    let info = repositories
        .get(image.name())
        .ok_or_else(|| format!("{}: not scanned", image.name().familiar()))?;
    if let Some(error) = &info.error {
        return Err(error.clone());
    }
    let Some(current_tag) = image.tag() else {
        return Ok(None);
    };
    let candidates = info
        .candidates()
        .into_iter()
        .filter(|c| policy.can_automate(c) && eligible(&c.tag));
    let Some(newest) = policy.judge(candidates).admitted.into_iter().next() else {
        return Ok(None);
    };
    if newest.tag == current_tag {
        return Ok(None);
    }
    let current = info
        .tag(current_tag)
        .map(|t| t.candidate())
        .unwrap_or_else(|| flux_image::Candidate::new(current_tag));
    if policy.admits(current_tag) && policy.newer_first(&current, &newest) != Ordering::Greater {
        return Ok(None);
    }
    Ok(image.name().with_tag(&newest.tag).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Platform;
    use crate::scan::TagInfo;

    fn tag(tag: &str, created: Option<&str>, runs_here: bool) -> TagInfo {
        TagInfo {
            tag: tag.into(),
            digest: Some(format!("sha256:{tag}")),
            created: created.map(|c| c.parse().unwrap()),
            platforms: vec![Platform::linux_amd64()],
            platform: runs_here.then(Platform::linux_amd64),
            image_digest: None,
            error: None,
            first_seen: None,
        }
    }

    fn repo(name: &str, tags: Vec<TagInfo>) -> (Name, RepositoryInfo) {
        let name: Name = name.parse().unwrap();
        (
            name.clone(),
            RepositoryInfo {
                name,
                tags,
                error: None,
                listed_at: None,
            },
        )
    }

    fn container(image: &str, policy: &str) -> ContainerImage {
        ContainerImage {
            workload: "default:deployment/app".into(),
            container: "app".into(),
            image: ImageRef::parse(image).unwrap(),
            policy: policy.parse().unwrap(),
        }
    }

    fn targets(plan: &[PlannedUpdate]) -> Vec<String> {
        plan.iter().map(|u| u.to.familiar()).collect()
    }

    #[test]
    fn glob_picks_the_newest_created_tag() {
        let repos = HashMap::from([repo(
            "example/app",
            vec![
                tag("a", Some("2020-01-01T00:00:00Z"), true),
                tag("b", Some("2022-01-01T00:00:00Z"), true),
                tag("c", Some("2021-01-01T00:00:00Z"), true),
            ],
        )]);
        let plan = plan_update_all(&[container("example/app:a", "glob:*")], &repos);
        assert_eq!(targets(&plan), ["example/app:b"]);
        assert_eq!(plan[0].from.familiar(), "example/app:a");
        assert_eq!(plan[0].workload, "default:deployment/app");
    }

    #[test]
    fn glob_skips_tags_whose_creation_time_is_unknown() {
        let repos = HashMap::from([repo(
            "example/app",
            vec![
                tag("a", Some("2020-01-01T00:00:00Z"), true),
                tag("mystery", None, true),
                tag("b", Some("2021-01-01T00:00:00Z"), true),
            ],
        )]);
        let plan = plan_update_all(&[container("example/app:a", "*")], &repos);
        assert_eq!(targets(&plan), ["example/app:b"]);
    }

    #[test]
    fn semver_needs_no_creation_time() {
        let repos = HashMap::from([repo(
            "example/app",
            vec![
                tag("1.2.0", None, true),
                tag("1.2.7", None, true),
                tag("1.3.0", None, true),
            ],
        )]);
        let plan = plan_update_all(&[container("example/app:1.2.0", "semver:~1.2")], &repos);
        assert_eq!(targets(&plan), ["example/app:1.2.7"]);
    }

    #[test]
    fn tags_without_the_wanted_platform_are_never_picked() {
        let repos = HashMap::from([repo(
            "example/app",
            vec![tag("1.0.0", None, true), tag("1.1.0", None, false)],
        )]);
        let plan = plan_update_all(&[container("example/app:1.0.0", "semver:^1")], &repos);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn never_a_downgrade_and_nothing_when_current() {
        let repos = HashMap::from([repo(
            "example/app",
            vec![
                tag("old", Some("2020-01-01T00:00:00Z"), true),
                tag("new", Some("2021-01-01T00:00:00Z"), true),
            ],
        )]);
        let plan = plan_update_all(
            &[
                container("example/app:new", "glob:*"),
                container("example/app:9.9.9", "semver:*"),
            ],
            &repos,
        );
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn unreadable_or_unknown_repositories_and_digest_pins_are_left_alone() {
        let (name, mut info) = repo("example/app", vec![tag("2.0.0", None, true)]);
        info.error = Some("example: 500".into());
        let repos = HashMap::from([(name, info)]);
        let plan = plan_update_all(
            &[
                container("example/app:1.0.0", "semver:*"),
                container("example/other:1.0.0", "semver:*"),
                container(
                    "example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    "semver:*",
                ),
            ],
            &repos,
        );
        assert!(plan.is_empty(), "{plan:?}");
    }
}
