//! What the API shows, made from what git says (a loaded checkout) and what
//! the registries hold (the scanner's cache).

use flux_api::{Container, ContainerImages, Policies, TagInfo, Workload, WorkloadImages};
use flux_image::Name;
use flux_manifests::Checkout;
use flux_registry::RepositoryInfo;

/// The workloads of a checkout, as the API shows them.
pub fn workloads(checkout: &Checkout) -> Vec<Workload> {
    checkout
        .workloads
        .iter()
        .map(|w| Workload {
            id: w.id.to_string(),
            containers: w
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    image: c.spelling.clone(),
                })
                .collect(),
            policies: policies(&w.policies),
            rollout: None,
            sync_error: None,
        })
        .collect()
}

fn policies(p: &flux_manifests::Policies) -> Policies {
    Policies {
        automated: p.automated,
        locked: p.locked,
        ignore: p.ignore.is_some(),
        locked_user: p.locked_user.clone(),
        locked_msg: p.locked_msg.clone(),
        tags: p
            .tags
            .iter()
            .map(|(c, policy)| (c.clone(), policy.to_string()))
            .collect(),
    }
}

/// The images of a checkout's workloads, with the tags each container's
/// policy admits, newest first; `repository` looks a repository up in the
/// scanner's cache (no network).
pub fn images(
    checkout: &Checkout,
    repository: impl Fn(&Name) -> Option<RepositoryInfo>,
) -> Vec<WorkloadImages> {
    checkout
        .workloads
        .iter()
        .map(|w| WorkloadImages {
            id: w.id.to_string(),
            containers: w
                .containers
                .iter()
                .map(|c| container_images(c, &w.policies, repository(c.image.name())))
                .collect(),
        })
        .collect()
}

fn container_images(
    container: &flux_manifests::Container,
    policies: &flux_manifests::Policies,
    info: Option<RepositoryInfo>,
) -> ContainerImages {
    let policy = policies.tag_policy(&container.name);
    let current = container
        .image
        .tag()
        .or(container.image.digest())
        .unwrap_or("latest")
        .to_string();
    let (available, error) = match info {
        None => (Vec::new(), Some("not scanned yet".to_string())),
        Some(info) => {
            let verdict = policy.judge(info.candidates());
            let available = verdict
                .admitted
                .into_iter()
                .map(|candidate| TagInfo {
                    digest: info.tag(&candidate.tag).and_then(|t| t.digest.clone()),
                    tag: candidate.tag,
                    created: candidate.created,
                })
                .collect();
            (available, info.error)
        }
    };
    ContainerImages {
        name: container.name.clone(),
        repository: container.image.name().familiar(),
        current,
        policy: policy.to_string(),
        available,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_manifests::LoadOptions;
    use flux_registry::TagInfo as ScannedTag;
    use jiff::Timestamp;

    const FRONT_END: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end\n  namespace: sock-shop\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.front-end: semver:~0.3\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.12\n";

    fn checkout() -> Checkout {
        Checkout::from_text(
            std::path::Path::new("front-end.yaml"),
            FRONT_END,
            LoadOptions::default(),
        )
    }

    fn scanned(tag: &str, second: i64) -> ScannedTag {
        ScannedTag {
            tag: tag.into(),
            digest: Some(format!("sha256:{tag}")),
            created: Some(Timestamp::from_second(1_700_000_000 + second).unwrap()),
            platforms: vec![],
            platform: Some("linux/amd64".parse().unwrap()),
            image_digest: None,
            error: None,
        }
    }

    #[test]
    fn workloads_show_images_as_spelled_and_their_policies() {
        let workloads = workloads(&checkout());
        assert_eq!(workloads.len(), 1);
        let w = &workloads[0];
        assert_eq!(w.id, "sock-shop:deployment/front-end");
        assert_eq!(w.containers[0].image, "weaveworksdemos/front-end:0.3.12");
        assert!(w.policies.automated && !w.policies.locked);
        assert_eq!(w.policies.tags["front-end"], "semver:~0.3");
    }

    #[test]
    fn images_list_what_the_policy_admits_newest_first() {
        let checkout = checkout();
        let name = checkout.workloads[0].containers[0].image.name().clone();
        let info = RepositoryInfo {
            name: name.clone(),
            tags: vec![
                scanned("0.3.12", 0),
                scanned("0.3.13", 10),
                scanned("0.4.0", 20),
                scanned("latest", 30),
            ],
            error: None,
            listed_at: None,
        };
        let images = images(&checkout, |n| (n == &name).then(|| info.clone()));
        let container = &images[0].containers[0];
        assert_eq!(container.current, "0.3.12");
        assert_eq!(container.policy, "semver:~0.3");
        let tags: Vec<&str> = container.available.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["0.3.13", "0.3.12"]);
        assert_eq!(
            container.available[0].digest.as_deref(),
            Some("sha256:0.3.13")
        );
    }

    #[test]
    fn an_unscanned_repository_says_so() {
        let images = images(&checkout(), |_| None);
        assert_eq!(
            images[0].containers[0].error.as_deref(),
            Some("not scanned yet")
        );
    }
}
