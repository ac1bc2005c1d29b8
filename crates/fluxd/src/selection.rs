//! Releases narrowed to chosen containers: what `fluxctl release
//! --interactive` sends in [`flux_api::ReleaseSpec::containers`] after the
//! user unticked some rows of the plan.
//!
//! The release is first decided as usual (for all-latest, each container's
//! newest admitted tag); [`narrow`] then keeps the targets of the chosen
//! containers only, so the rules (locks, excludes, ignore) and the result
//! table stay those of any release.

use std::collections::{BTreeMap, BTreeSet};

use flux_manifests::release::{self, ContainerTarget, ReleaseSpec, Update};
use flux_manifests::{Checkout, ResourceId};

/// Workload id to the names of its chosen containers.
pub type Chosen = BTreeMap<ResourceId, BTreeSet<String>>;

/// The chosen containers of a wire release; `None` when it names none
/// (every container the update concerns). An invalid workload id refuses
/// the whole release.
pub fn chosen(wire: &flux_api::ReleaseSpec) -> Result<Option<Chosen>, String> {
    if wire.containers.is_empty() {
        return Ok(None);
    }
    let mut chosen = Chosen::new();
    for (id, containers) in &wire.containers {
        let id: ResourceId = id
            .parse()
            .map_err(|e| format!("containers: invalid workload id {id:?}: {e}"))?;
        chosen.insert(id, containers.clone());
    }
    Ok(Some(chosen))
}

/// Keeps only the chosen containers' targets. Call it once the update's
/// targets are decided (after `--update-all-images` resolved them), before
/// planning or executing. An image release becomes per-container targets:
/// the chosen containers among those running the image's repository.
pub fn narrow(checkout: &Checkout, spec: &mut ReleaseSpec, chosen: &Chosen) {
    let is_chosen = |id: &ResourceId, container: &str| {
        chosen
            .get(id)
            .is_some_and(|names| names.contains(container))
    };
    let targets = match &spec.update {
        Update::Image(image) => {
            let mut targets = release::ContainerTargets::new();
            for (workload, containers) in release::candidates(checkout, spec) {
                for container in containers {
                    if is_chosen(&workload.id, &container.name) {
                        targets.entry(workload.id.clone()).or_default().insert(
                            container.name.clone(),
                            ContainerTarget::Image(image.clone()),
                        );
                    }
                }
            }
            targets
        }
        Update::PerContainer(targets) => targets
            .iter()
            .map(|(id, containers)| {
                let kept = containers
                    .iter()
                    .filter(|(name, _)| is_chosen(id, name))
                    .map(|(name, target)| (name.clone(), target.clone()))
                    .collect();
                (id.clone(), kept)
            })
            .collect(),
    };
    spec.update = Update::PerContainer(targets);
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use flux_image::ImageRef;
    use flux_manifests::release::{self, ContainerTarget, ReleaseSpec, Status, Targets, Update};
    use flux_manifests::{Checkout, LoadOptions, ResourceId};

    const SIDECAR: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end\n  namespace: sock-shop\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.12\n      - name: proxy\n        image: weaveworksdemos/front-end:0.3.12\n      - name: log\n        image: fluent/fluentd:1.0\n";

    fn front_end() -> ResourceId {
        "sock-shop:deployment/front-end"
            .parse()
            .expect("a valid id")
    }

    fn checkout() -> Checkout {
        Checkout::from_text(Path::new("front-end.yaml"), SIDECAR, LoadOptions::default())
    }

    fn spec(update: Update) -> ReleaseSpec {
        ReleaseSpec {
            targets: Targets::Only(vec![front_end()]),
            excludes: Vec::new(),
            update,
            containers: Vec::new(),
            force: false,
        }
    }

    fn only(containers: &[&str]) -> super::Chosen {
        BTreeMap::from([(
            front_end(),
            containers.iter().map(|c| c.to_string()).collect(),
        )])
    }

    fn updated(spec: &ReleaseSpec, checkout: &Checkout) -> Vec<String> {
        let results = release::plan(checkout, spec);
        assert_eq!(results[0].status, Status::Success, "{results:?}");
        results[0]
            .updates
            .iter()
            .map(|u| u.container.clone())
            .collect()
    }

    #[test]
    fn an_image_release_updates_only_the_chosen_container_of_those_running_the_image() {
        let checkout = checkout();
        let image = ImageRef::parse("weaveworksdemos/front-end:0.4.0").expect("an image");
        let mut spec = spec(Update::Image(image));
        assert_eq!(updated(&spec, &checkout), ["front-end", "proxy"]);
        super::narrow(&checkout, &mut spec, &only(&["proxy"]));
        assert_eq!(updated(&spec, &checkout), ["proxy"]);
    }

    #[test]
    fn per_container_targets_keep_only_the_chosen_ones() {
        let checkout = checkout();
        let target = |text: &str| ContainerTarget::Image(ImageRef::parse(text).expect("an image"));
        let targets = BTreeMap::from([(
            front_end(),
            BTreeMap::from([
                (
                    "front-end".to_string(),
                    target("weaveworksdemos/front-end:0.4.0"),
                ),
                ("log".to_string(), target("fluent/fluentd:1.1")),
            ]),
        )]);
        let mut spec = spec(Update::PerContainer(targets));
        assert_eq!(updated(&spec, &checkout), ["front-end", "log"]);
        super::narrow(&checkout, &mut spec, &only(&["log"]));
        assert_eq!(updated(&spec, &checkout), ["log"]);
    }

    #[test]
    fn a_workload_with_nothing_chosen_is_left_as_it_is() {
        let checkout = checkout();
        let image = ImageRef::parse("weaveworksdemos/front-end:0.4.0").expect("an image");
        let mut spec = spec(Update::Image(image));
        super::narrow(&checkout, &mut spec, &BTreeMap::new());
        let results = release::plan(&checkout, &spec);
        assert!(results[0].updates.is_empty(), "{results:?}");
        assert_ne!(results[0].status, Status::Success);
    }

    fn wire(containers: BTreeMap<String, BTreeSet<String>>) -> flux_api::ReleaseSpec {
        flux_api::ReleaseSpec {
            targets: flux_api::Targets::All,
            exclude: Vec::new(),
            update: flux_api::ImageUpdate::AllLatest,
            force: false,
            dry_run: false,
            message: None,
            user: None,
            containers,
        }
    }

    #[test]
    fn the_wire_choice_is_parsed_and_a_bad_workload_id_refuses_the_release() {
        assert_eq!(super::chosen(&wire(BTreeMap::new())), Ok(None));
        let named = BTreeMap::from([(
            "sock-shop:deployment/front-end".to_string(),
            BTreeSet::from(["proxy".to_string()]),
        )]);
        assert_eq!(super::chosen(&wire(named)), Ok(Some(only(&["proxy"]))));
        let bad = BTreeMap::from([("front-end".to_string(), BTreeSet::new())]);
        let error = super::chosen(&wire(bad)).expect_err("no namespace, no kind");
        assert!(error.contains("\"front-end\""), "{error}");
    }
}
