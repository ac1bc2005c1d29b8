//! Kustomize trees: what is built (by the real `kubectl kustomize`), the
//! ids and images of the build, and edits landing where the image or
//! annotation is defined.

use std::path::Path;
use std::sync::Arc;

use flux_image::ImageRef;
use flux_manifests::{
    BuildCache, Checkout, LoadError, LoadOptions, PolicyUpdate, ResourceId, Transaction,
};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).expect("read")
}

fn id(text: &str) -> ResourceId {
    text.parse().expect("a valid id")
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25 # the base's
";

const PROD: &str = "\
namespace: prod
resources:
- ../../base
patches:
- path: replicas.yaml
images:
- name: nginx
  newTag: \"1.26\" # prod runs this
";

const REPLICAS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
";

/// The tree: a base and a prod overlay with a patch and `images:`.
fn base_and_prod(root: &Path) {
    write(
        root,
        &[
            ("base/deployment.yaml", DEPLOYMENT),
            ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
            ("overlays/prod/kustomization.yaml", PROD),
            ("overlays/prod/replicas.yaml", REPLICAS),
        ],
    );
}

fn load(root: &Path) -> Checkout {
    let options = LoadOptions {
        root: Some(root.to_path_buf()),
        ..LoadOptions::default()
    };
    Checkout::load(&[root], options)
}

fn set_image(
    root: &Path,
    workload: &str,
    image: &str,
) -> Result<Vec<String>, flux_manifests::EditError> {
    let checkout = load(root);
    let mut edits = Transaction::new(&checkout);
    edits.set_image(
        &id(workload),
        "web",
        &ImageRef::parse(image).expect("an image"),
    )?;
    let written = edits.write().expect("written");
    Ok(written
        .iter()
        .map(|p| p.strip_prefix(root).expect("inside").display().to_string())
        .collect())
}

#[test]
fn an_overlay_is_listed_as_kustomize_builds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    let checkout = load(dir.path());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    let ids: Vec<String> = checkout
        .workloads
        .iter()
        .map(|w| w.id.to_string())
        .collect();
    assert_eq!(ids, ["prod:deployment/web"]);
    let web = checkout
        .workload(&id("prod:deployment/web"))
        .expect("built");
    assert_eq!(
        web.containers[0].image.to_string(),
        "docker.io/library/nginx:1.26"
    );
    let built = dir.path().join("overlays/prod/kustomization.yaml");
    assert_eq!(*web.location.file, *built);
    let output = checkout.built_output(&built).expect("the build's output");
    assert!(
        output.contains("replicas: 3") && output.contains("namespace: prod"),
        "{output}"
    );
}

#[test]
fn releasing_an_overlay_workload_changes_the_overlays_images_entry_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    let written = set_image(dir.path(), "prod:deployment/web", "nginx:1.27").expect("released");
    assert_eq!(written, ["overlays/prod/kustomization.yaml"]);
    assert_eq!(
        read(dir.path(), "overlays/prod/kustomization.yaml"),
        PROD.replace("\"1.26\"", "\"1.27\"")
    );
    assert_eq!(read(dir.path(), "base/deployment.yaml"), DEPLOYMENT);
    let again = load(dir.path());
    let web = again.workload(&id("prod:deployment/web")).expect("built");
    assert_eq!(web.containers[0].image.tag(), Some("1.27"));
}

#[test]
fn a_base_used_by_one_overlay_only_is_edited_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            ("base/deployment.yaml", DEPLOYMENT),
            ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
            (
                "overlays/prod/kustomization.yaml",
                "namespace: prod\nresources:\n- ../../base\n",
            ),
        ],
    );
    let written = set_image(dir.path(), "prod:deployment/web", "nginx:1.27").expect("released");
    assert_eq!(written, ["base/deployment.yaml"]);
    assert_eq!(
        read(dir.path(), "base/deployment.yaml"),
        DEPLOYMENT.replace("1.25", "1.27")
    );
}

#[test]
fn a_shared_base_is_left_alone_and_the_overlay_gets_its_own_images_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    let staging = "namespace: staging\nresources:\n- ../../base\n";
    write(
        dir.path(),
        &[("overlays/staging/kustomization.yaml", staging)],
    );
    let written = set_image(dir.path(), "staging:deployment/web", "nginx:1.28").expect("released");
    assert_eq!(written, ["overlays/staging/kustomization.yaml"]);
    assert_eq!(
        read(dir.path(), "overlays/staging/kustomization.yaml"),
        format!("{staging}images:\n- name: nginx\n  newTag: \"1.28\"\n")
    );
    assert_eq!(read(dir.path(), "base/deployment.yaml"), DEPLOYMENT);
    let again = load(dir.path());
    let image = |w: &str| {
        again.workload(&id(w)).expect("built").containers[0]
            .image
            .to_string()
    };
    assert_eq!(
        image("staging:deployment/web"),
        "docker.io/library/nginx:1.28"
    );
    assert_eq!(image("prod:deployment/web"), "docker.io/library/nginx:1.26");
}

#[test]
fn an_entry_with_new_name_gets_the_tag_and_keeps_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kustomization = "\
resources:
- deployment.yaml
images:
- name: nginx
  newName: registry.example.com/mirror/nginx
";
    write(
        dir.path(),
        &[
            ("app/deployment.yaml", DEPLOYMENT),
            ("app/kustomization.yaml", kustomization),
        ],
    );
    let checkout = load(dir.path());
    let web = checkout
        .workload(&id("default:deployment/web"))
        .expect("built");
    assert_eq!(
        web.containers[0].image.to_string(),
        "registry.example.com/mirror/nginx:1.25"
    );
    drop(checkout);
    let written = set_image(
        dir.path(),
        "default:deployment/web",
        "registry.example.com/mirror/nginx:1.26",
    )
    .expect("released");
    assert_eq!(written, ["app/kustomization.yaml"]);
    let after = read(dir.path(), "app/kustomization.yaml");
    assert!(after.starts_with(kustomization), "{after}");
    assert!(after.contains("newTag"), "{after}");
    let again = load(dir.path());
    let web = again
        .workload(&id("default:deployment/web"))
        .expect("built");
    assert_eq!(web.containers[0].image.tag(), Some("1.26"));
}

#[test]
fn components_and_name_prefixes_are_followed_to_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &[
            ("base/deployment.yaml", DEPLOYMENT),
            ("base/kustomization.yaml", "resources:\n- deployment.yaml\n"),
            (
                "components/labels/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonLabels:\n  team: web\n",
            ),
            (
                "prod/kustomization.yaml",
                "namePrefix: prod-\nresources:\n- ../base\ncomponents:\n- ../components/labels\n",
            ),
        ],
    );
    let checkout = load(dir.path());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert!(
        checkout
            .workload(&id("default:deployment/prod-web"))
            .is_some()
    );
    drop(checkout);
    let written =
        set_image(dir.path(), "default:deployment/prod-web", "nginx:1.27").expect("released");
    assert_eq!(written, ["base/deployment.yaml"]);
}

#[test]
fn policies_are_read_from_the_build_and_written_where_the_annotation_comes_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    let patch = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    fluxcd.io/tag.web: semver:~1.26
spec:
  replicas: 3
";
    write(dir.path(), &[("overlays/prod/replicas.yaml", patch)]);
    let checkout = load(dir.path());
    let web = checkout
        .workload(&id("prod:deployment/web"))
        .expect("built");
    assert!(web.policies.tags.contains_key("web"), "{:?}", web.policies);
    let mut edits = Transaction::new(&checkout);
    edits
        .update_policies(&id("prod:deployment/web"), &PolicyUpdate::automate())
        .expect("automated");
    edits.write().expect("written");
    let after = read(dir.path(), "overlays/prod/replicas.yaml");
    assert!(after.contains("fluxcd.io/automated: \"true\""), "{after}");
    assert_eq!(read(dir.path(), "base/deployment.yaml"), DEPLOYMENT);
    let again = load(dir.path());
    assert!(
        again
            .workload(&id("prod:deployment/web"))
            .expect("built")
            .policies
            .automated
    );
}

#[test]
fn a_tree_that_does_not_build_is_reported_and_the_others_still_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    write(
        dir.path(),
        &[
            ("broken/kustomization.yaml", "resources:\n- missing.yaml\n"),
            (
                "plain/configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n",
            ),
        ],
    );
    let checkout = load(dir.path());
    let errors: Vec<String> = checkout.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("broken/kustomization.yaml") && errors[0].contains("missing.yaml"),
        "{errors:?}"
    );
    assert!(matches!(checkout.errors[0], LoadError::Build { .. }));
    assert!(checkout.workload(&id("prod:deployment/web")).is_some());
    assert!(
        checkout
            .resources
            .iter()
            .any(|r| r.id.to_string() == "default:configmap/plain")
    );
}

#[test]
fn a_kustomization_may_not_read_outside_the_checkout_or_fetch_remote_trees() {
    let outside = tempfile::tempdir().expect("tempdir");
    write(
        outside.path(),
        &[
            ("secret/kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "secret/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n",
            ),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let escape = format!(
        "resources:\n- {}\n",
        outside.path().join("secret").display()
    );
    write(
        dir.path(),
        &[
            ("escape/kustomization.yaml", escape.as_str()),
            (
                "remote/kustomization.yaml",
                "resources:\n- github.com/example/config//base?ref=main\n",
            ),
        ],
    );
    write(
        dir.path(),
        &[("linked/kustomization.yaml", "resources:\n- base\n")],
    );
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        dir.path().join("linked/base"),
    )
    .expect("symlink");
    let checkout = load(dir.path());
    let errors: Vec<String> = checkout.errors.iter().map(ToString::to_string).collect();
    // The walk refuses the link too, as it refuses any link out.
    assert_eq!(errors.len(), 4, "{errors:?}");
    let linked = errors
        .iter()
        .find(|e| e.contains("linked/kustomization.yaml"))
        .expect("the symlinked base is refused");
    assert!(
        linked.contains("a symlink that leads outside the checkout"),
        "{linked}"
    );
    assert!(
        !linked.contains(&outside.path().display().to_string()),
        "{linked}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("escape/kustomization.yaml") && e.contains("outside the checkout")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("remote resources are not fetched")),
        "{errors:?}"
    );
    assert!(checkout.resources.is_empty());
}

#[test]
fn a_tree_whose_files_did_not_change_is_not_built_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    base_and_prod(dir.path());
    write(
        dir.path(),
        &[(
            "overlays/staging/kustomization.yaml",
            "namespace: staging\nresources:\n- ../../base\n",
        )],
    );
    let cache = Arc::new(BuildCache::default());
    let options = LoadOptions {
        root: Some(dir.path().to_path_buf()),
        builds: Some(cache.clone()),
        ..LoadOptions::default()
    };
    Checkout::load(&[dir.path()], options.clone());
    assert_eq!(cache.runs(), 2);
    Checkout::load(&[dir.path()], options.clone());
    assert_eq!(cache.runs(), 2, "nothing changed");
    write(
        dir.path(),
        &[("overlays/prod/replicas.yaml", &REPLICAS.replace('3', "4"))],
    );
    let checkout = Checkout::load(&[dir.path()], options);
    assert_eq!(cache.runs(), 3, "only prod read the changed file");
    let built = checkout.built_output(&dir.path().join("overlays/prod/kustomization.yaml"));
    assert!(built.is_some_and(|o| o.contains("replicas: 4")));
}

#[test]
fn an_edit_kustomize_would_not_build_as_intended_is_refused_and_nothing_is_written() {
    // Kustomize applies both entries, the second last; the edit goes to the
    // entry named nginx, the first, so the rebuilt tree still runs 1.26.
    let dir = tempfile::tempdir().expect("tempdir");
    let kustomization = "resources:\n- deployment.yaml\nimages:\n- name: nginx\n  newTag: \"1.26\"\n- name: nginx\n  newTag: \"1.26\"\n";
    write(
        dir.path(),
        &[
            ("app/deployment.yaml", DEPLOYMENT),
            ("app/kustomization.yaml", kustomization),
        ],
    );
    let error = set_image(dir.path(), "default:deployment/web", "nginx:1.27").expect_err("refused");
    assert!(
        matches!(&error, flux_manifests::EditError::Verify(m) if m.contains("kustomize builds docker.io/library/nginx:1.26")),
        "{error}"
    );
    assert_eq!(read(dir.path(), "app/kustomization.yaml"), kustomization);
}
