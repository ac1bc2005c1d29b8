//! Many image edits at once: the edits of one file are planned together,
//! made in one pass and verified once, and give the very bytes that making
//! them one by one gives; a refused edit fails its workload only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flux_image::ImageRef;
use flux_manifests::release::{self, ContainerTarget, ReleaseSpec, Status, Targets, Update};
use flux_manifests::{Checkout, ImageEdits, LoadOptions, Transaction};

fn release_spec(update: Update) -> ReleaseSpec {
    ReleaseSpec {
        targets: Targets::All,
        excludes: Vec::new(),
        update,
        containers: Vec::new(),
        force: true,
    }
}

fn changes(transaction: &Transaction<'_>) -> BTreeMap<PathBuf, String> {
    transaction
        .changes()
        .map(|(path, _, after)| (path.to_path_buf(), after.to_string()))
        .collect()
}

/// Every container of every workload moved to a tag of its own.
fn every_container_moved(checkout: &Checkout) -> release::ContainerTargets {
    let mut targets = release::ContainerTargets::new();
    for workload in &checkout.workloads {
        for (n, container) in workload.containers.iter().enumerate() {
            let tag = format!("{}-next{n}", container.image.tag().unwrap_or("latest"));
            let image = container.image.with_tag(&tag).expect("a valid tag");
            targets
                .entry(workload.id.clone())
                .or_default()
                .insert(container.name.clone(), ContainerTarget::Image(image));
        }
    }
    targets
}

#[test]
fn a_release_of_every_container_gives_the_bytes_of_the_edits_made_one_by_one() {
    for seed in 1..=12 {
        let dir = tempfile::tempdir().unwrap();
        flux_testkit::generate::write(dir.path(), 60, 4, seed).unwrap();
        let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
        assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
        let targets = every_container_moved(&checkout);

        let mut together = Transaction::new(&checkout);
        let results = release::execute(
            &mut together,
            &release_spec(Update::PerContainer(targets.clone())),
        );
        let failed: Vec<_> = results
            .iter()
            .filter(|r| r.status != Status::Success)
            .collect();
        assert!(failed.is_empty(), "seed {seed}: {failed:?}");

        let mut one_by_one = Transaction::new(&checkout);
        for (id, containers) in &targets {
            for (container, target) in containers {
                let ContainerTarget::Image(image) = target else {
                    unreachable!("every target is an image")
                };
                one_by_one.set_image(id, container, image).unwrap();
            }
        }
        let made = changes(&together);
        assert_eq!(made.len(), 4, "seed {seed}: every file is edited");
        assert_eq!(made, changes(&one_by_one), "seed {seed}");
    }
}

const THREE: &str = "\
kind: Deployment
metadata: {name: a, namespace: shop}
spec:
  template:
    spec:
      containers:
      - name: a
        image: ghcr.io/acme/web:1.0
---
kind: Deployment
metadata: {name: b, namespace: shop}
spec:
  template:
    spec:
      containers:
      - name: b
        image: ghcr.io/acme/web:1.0
      - name: anchored
        image: &web ghcr.io/acme/web:1.0
---
kind: Deployment
metadata: {name: c, namespace: shop}
spec:
  template:
    spec:
      containers:
      - name: c
        image: \"ghcr.io/acme/web:1.0\"
";

#[test]
fn a_refused_edit_fails_its_whole_workload_and_the_rest_of_the_file_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    std::fs::write(&file, THREE).unwrap();
    let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let mut transaction = Transaction::new(&checkout);
    let image = ImageRef::parse("ghcr.io/acme/web:1.1").unwrap();
    let results = release::execute(&mut transaction, &release_spec(Update::Image(image)));
    let outcome: Vec<(String, Status, Option<String>)> = results
        .iter()
        .map(|r| (r.id.to_string(), r.status, r.reason.clone()))
        .collect();
    assert_eq!(
        outcome,
        [
            ("shop:deployment/a".to_string(), Status::Success, None),
            (
                "shop:deployment/b".to_string(),
                Status::Failed,
                Some(
                    "anchored: spec.template.spec.containers[1].image (line 19) is behind \
                     an anchor or alias; edit it by hand"
                        .to_string()
                )
            ),
            ("shop:deployment/c".to_string(), Status::Success, None),
        ]
    );
    transaction.write().unwrap();
    let expected = THREE
        .replacen(
            "image: ghcr.io/acme/web:1.0",
            "image: ghcr.io/acme/web:1.1",
            1,
        )
        .replace(
            "image: \"ghcr.io/acme/web:1.0\"",
            "image: \"ghcr.io/acme/web:1.1\"",
        );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected);
}

#[test]
fn set_images_says_per_workload_whether_its_text_changed_or_why_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.yaml"), THREE).unwrap();
    let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
    let mut transaction = Transaction::new(&checkout);
    let (a, b, c) = (
        "shop:deployment/a".parse().unwrap(),
        "shop:deployment/b".parse().unwrap(),
        "shop:deployment/c".parse().unwrap(),
    );
    let same = ImageRef::parse("ghcr.io/acme/web:1.0").unwrap();
    let next = ImageRef::parse("ghcr.io/acme/web:1.1").unwrap();
    let other = ImageRef::parse("ghcr.io/acme/api:1.1").unwrap();
    let outcomes = transaction.set_images(&[
        ImageEdits {
            id: &a,
            containers: vec![("a", &same)],
        },
        ImageEdits {
            id: &b,
            containers: vec![("b", &next), ("nothing", &next)],
        },
        ImageEdits {
            id: &c,
            containers: vec![("c", &other)],
        },
    ]);
    let shown: Vec<Result<bool, (String, String)>> = outcomes
        .into_iter()
        .map(|o| o.map_err(|(container, e)| (container, e.to_string())))
        .collect();
    assert_eq!(
        shown,
        [
            Ok(false),
            Err((
                "nothing".to_string(),
                "workload shop:deployment/b has no container nothing".to_string()
            )),
            Err((
                "c".to_string(),
                "container c of shop:deployment/c runs ghcr.io/acme/web, not ghcr.io/acme/api"
                    .to_string()
            )),
        ]
    );
    assert_eq!(transaction.changes().count(), 0, "nothing was edited");
}
