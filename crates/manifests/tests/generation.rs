//! `Checkout::load` and `Transaction` on paths governed by a `.flux.yaml`
//! (Flux v1's manifest generation): generated workloads are listed, their
//! updates are made through the updaters or the patch file, and nothing on
//! disk changes before the transaction is written.

use std::path::{Path, PathBuf};

use flux_image::ImageRef;
use flux_manifests::{Checkout, LoadError, LoadOptions, PolicyUpdate, ResourceId, Transaction};

fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux-yaml")
        .join(name);
    flux_testkit::copy_dir(&from, dir.path()).expect("copied");
    dir
}

fn load(root: &Path, paths: &[&str], generation: bool) -> Checkout {
    let paths: Vec<PathBuf> = paths.iter().map(|p| root.join(p)).collect();
    let options = LoadOptions {
        root: Some(root.to_path_buf()),
        manifest_generation: generation,
        ..LoadOptions::default()
    };
    Checkout::load(&paths, options)
}

fn id(text: &str) -> ResourceId {
    text.parse().expect("an id")
}

fn image(checkout: &Checkout, workload: &str, container: &str) -> String {
    let workload = checkout
        .workload(&id(workload))
        .expect("the workload is loaded");
    workload
        .container(container)
        .expect("the container")
        .image
        .to_string()
}

#[test]
fn command_updated_paths_list_what_the_generators_make_and_release_through_the_updaters() {
    let repo = fixture("command-updated");
    let checkout = load(repo.path(), &["staging", "production"], true);
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert_eq!(
        image(&checkout, "staging:deployment/web", "web"),
        "docker.io/library/nginx:1.25"
    );
    let before = std::fs::read_to_string(repo.path().join("staging/web.yaml")).expect("read");

    let mut edits = Transaction::new(&checkout);
    let changed = edits
        .set_image(
            &id("staging:deployment/web"),
            "web",
            &ImageRef::parse("nginx:1.26").expect("image"),
        )
        .expect("released");
    assert!(changed);
    assert_eq!(
        std::fs::read_to_string(repo.path().join("staging/web.yaml")).expect("read"),
        before,
        "nothing is written before the transaction is"
    );
    let written = edits.write().expect("written");
    assert_eq!(written, [repo.path().join("staging/web.yaml")]);
    let after = std::fs::read_to_string(repo.path().join("staging/web.yaml")).expect("read");
    assert_eq!(after, before.replace("nginx:1.25", "nginx:1.26"));
    let again = load(repo.path(), &["staging", "production"], true);
    assert_eq!(
        image(&again, "staging:deployment/web", "web"),
        "docker.io/library/nginx:1.26"
    );
}

#[test]
fn patch_updated_paths_record_what_fluxd_sets_in_the_patch_file() {
    let repo = fixture("patch-updated");
    let checkout = load(repo.path(), &["staging"], true);
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let web = checkout
        .workload(&id("staging:deployment/web"))
        .expect("generated");
    assert!(
        web.policies.automated,
        "the patch file's annotation is applied"
    );
    assert_eq!(
        image(&checkout, "staging:deployment/web", "web"),
        "docker.io/library/nginx:1.25"
    );

    let mut edits = Transaction::new(&checkout);
    edits
        .set_image(
            &id("staging:deployment/web"),
            "web",
            &ImageRef::parse("nginx:1.27").expect("image"),
        )
        .expect("released");
    edits
        .update_policies(
            &id("staging:deployment/web"),
            &PolicyUpdate::lock(Some("freeze"), None),
        )
        .expect("locked");
    let written = edits.write().expect("written");
    assert_eq!(written, [repo.path().join("staging/flux-patch.yaml")]);
    let again = load(repo.path(), &["staging"], true);
    let web = again
        .workload(&id("staging:deployment/web"))
        .expect("generated");
    assert!(
        web.policies.locked && web.policies.automated,
        "{:?}",
        web.policies
    );
    assert_eq!(
        image(&again, "staging:deployment/web", "web"),
        "docker.io/library/nginx:1.27"
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("base/web.yaml")).expect("read"),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/flux-yaml/patch-updated/base/web.yaml")
        )
        .expect("read"),
        "the generators' inputs are left alone"
    );
}

#[test]
fn without_manifest_generation_a_flux_yaml_is_ignored_as_in_flux_v1() {
    let repo = fixture("patch-updated");
    let checkout = load(repo.path(), &["staging"], false);
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    // The folder is a kustomize tree, built natively; the patch file is not applied.
    let web = checkout
        .workload(&id("staging:deployment/web"))
        .expect("built");
    assert!(!web.policies.automated);
    assert_eq!(
        image(&checkout, "staging:deployment/web", "web"),
        "docker.io/library/nginx:1.24"
    );
}

#[test]
fn a_failing_generator_fails_its_path_only() {
    let repo = fixture("command-updated");
    std::fs::create_dir_all(repo.path().join("plain")).expect("mkdir");
    std::fs::write(
        repo.path().join("plain/.flux.yaml"),
        "version: 1\ncommandUpdated:\n  generators:\n  - command: echo broken >&2; exit 3\n",
    )
    .expect("written");
    let checkout = load(repo.path(), &["staging", "plain"], true);
    assert_eq!(checkout.errors.len(), 1, "{:?}", checkout.errors);
    let LoadError::Generate(error) = &checkout.errors[0] else {
        panic!("{:?}", checkout.errors);
    };
    let message = error.to_string();
    assert!(
        message.contains("plain/.flux.yaml:4") && message.contains("broken"),
        "{message}"
    );
    assert!(checkout.workload(&id("staging:deployment/web")).is_some());
}
