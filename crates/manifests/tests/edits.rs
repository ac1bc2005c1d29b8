//! Golden files for byte-exact edits: each style of YAML a repository may
//! use, edited, and compared with the committed result.

use std::path::Path;

use flux_image::ImageRef;
use flux_manifests::{Checkout, EditError, LoadOptions, PolicyUpdate, ResourceId};

fn checkout(name: &str, text: &str) -> Checkout {
    let checkout = Checkout::from_text(Path::new(name), text, LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    checkout
}

fn id(text: &str) -> ResourceId {
    text.parse().unwrap()
}

fn set_image(
    text: &str,
    workload: &str,
    container: &str,
    image: &str,
) -> Result<String, EditError> {
    checkout("w.yaml", text).set_image(
        text,
        &id(workload),
        container,
        &ImageRef::parse(image).unwrap(),
    )
}

fn policies(text: &str, workload: &str, update: PolicyUpdate) -> String {
    checkout("w.yaml", text)
        .update_policies(text, &id(workload), &update)
        .unwrap()
}

/// Shows invisible bytes so snapshots pin them down.
fn visible(text: &str) -> String {
    text.replace('\u{feff}', "<BOM>").replace("\r\n", "<CR>\n")
}

/// The bytes that differ: the changed part of `before` and of `after`,
/// after the common prefix and suffix.
fn difference<'t>(before: &'t str, after: &'t str) -> (&'t str, &'t str) {
    let prefix = before
        .bytes()
        .zip(after.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = before[prefix..]
        .bytes()
        .rev()
        .zip(after[prefix..].bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (
        &before[prefix..before.len() - suffix],
        &after[prefix..after.len() - suffix],
    )
}

const PLAIN: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: db
  namespace: data
spec:
  template:
    spec:
      containers:
      - name: postgres
        image: docker.io/library/postgres:16.1 # keep this comment
        env:
        - name: NOTE
          value: \"image: docker.io/library/postgres:16.1\"
";

#[test]
fn a_plain_image_keeps_the_files_repository_spelling_and_its_comment() {
    let after = set_image(PLAIN, "data:deployment/db", "postgres", "postgres:16.2").unwrap();
    assert_eq!(difference(PLAIN, &after), ("1", "2"));
    insta::assert_snapshot!(after);
}

#[test]
fn quoted_images_stay_quoted_in_their_style() {
    let single = PLAIN.replace(
        "docker.io/library/postgres:16.1 #",
        "'docker.io/library/postgres:16.1' #",
    );
    let after = set_image(&single, "data:deployment/db", "postgres", "postgres:16.2").unwrap();
    insta::assert_snapshot!("single_quoted", after);
    let double = PLAIN.replace(
        "docker.io/library/postgres:16.1 #",
        "\"docker.io/library/postgres:16.1\" #",
    );
    let after = set_image(&double, "data:deployment/db", "postgres", "postgres:17.0").unwrap();
    assert_eq!(difference(&double, &after), ("6.1", "7.0"));
    insta::assert_snapshot!("double_quoted", after);
}

#[test]
fn a_digest_replaces_the_tag() {
    let digest = "postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let after = set_image(PLAIN, "data:deployment/db", "postgres", digest).unwrap();
    insta::assert_snapshot!(after);
}

const CRLF: &str = "\u{feff}# exported by a Windows tool\r\n---\r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: settings\r\ndata:\r\n  notes: |\r\n    image: web:1.0\r\n...\r\n---\r\napiVersion: apps/v1\r\nkind: StatefulSet\r\nmetadata:\r\n    name: web\r\nspec:\r\n    template:\r\n        spec:\r\n            initContainers:\r\n                -   name: migrate\r\n                    image: \"ghcr.io/acme/web:1.0\"\r\n            containers:\r\n                -   name: web\r\n                    image: 'ghcr.io/acme/web:1.0'   # app\r\n...\r\n";

#[test]
fn crlf_bom_markers_wide_indents_and_block_scalars_are_kept() {
    let checkout = checkout("s.yaml", CRLF);
    let step = checkout.set_image(
        CRLF,
        &id("default:statefulset/web"),
        "web",
        &ImageRef::parse("ghcr.io/acme/web:1.1").unwrap(),
    );
    let after = step.unwrap();
    let after = checkout
        .set_image(
            &after,
            &id("default:statefulset/web"),
            "migrate",
            &ImageRef::parse("ghcr.io/acme/web:1.1").unwrap(),
        )
        .unwrap();
    assert!(
        after.contains("    image: web:1.0\r\n"),
        "the block scalar is untouched"
    );
    insta::assert_snapshot!(visible(&after));
}

const FLOW: &str = "kind: Pod\napiVersion: v1\nmetadata: {name: tools, namespace: ops, labels: {app: tools}}\nspec: {containers: [{name: shell, image: busybox:1.36}, {name: curl, image: \"curlimages/curl:8.5.0\"}]}\n";

#[test]
fn flow_style_collections_are_edited_in_place() {
    let after = set_image(FLOW, "ops:pod/tools", "shell", "busybox:1.37").unwrap();
    let after = set_image(&after, "ops:pod/tools", "curl", "curlimages/curl:8.6.0").unwrap();
    insta::assert_snapshot!(after);
}

const HELM: &str = r#"apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
spec:
  chart:
    spec: {chart: podinfo, version: "6.x"}
  values:
    image: ghcr.io/stefanprodan/podinfo   # the app
    tag: 6.5.0
    redis:
      image: 'redis:7.2'
    db:
      image:
        registry: quay.io
        repository: acme/postgres
        tag: 1.10
"#;

#[test]
fn helm_split_fields_stay_split() {
    let after = set_image(
        HELM,
        "apps:helmrelease/podinfo",
        "chart-image",
        "ghcr.io/stefanprodan/podinfo:6.5.4",
    )
    .unwrap();
    assert_eq!(difference(HELM, &after), ("0", "4"));
    let after = set_image(&after, "apps:helmrelease/podinfo", "redis", "redis:7.4").unwrap();
    let after = set_image(
        &after,
        "apps:helmrelease/podinfo",
        "db",
        "quay.io/acme/postgres:1.11",
    )
    .unwrap();
    insta::assert_snapshot!(after);
}

#[test]
fn a_numeric_helm_tag_that_becomes_a_string_is_quoted() {
    let after = set_image(
        HELM,
        "apps:helmrelease/podinfo",
        "db",
        "quay.io/acme/postgres:1.11-rc.1",
    )
    .unwrap();
    assert_eq!(difference(HELM, &after), ("1.10", "\"1.11-rc.1\""));
}

#[test]
fn a_split_tag_field_cannot_take_a_digest() {
    let digest = "quay.io/acme/postgres@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let error = set_image(HELM, "apps:helmrelease/podinfo", "db", digest).unwrap_err();
    assert!(error.to_string().contains("takes a tag"), "{error}");
}

const KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\nimages:\n  - name: nginx\n    newTag: 1.25.3 # bumped by CI\n  - name: ghcr.io/acme/api\n    newName: registry.acme.io/api\n  - name: redis\n    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n";

#[test]
fn kustomization_images_are_set_like_kustomize_edit_set_image() {
    let checkout = Checkout::from_text(
        Path::new("app/kustomization.yaml"),
        KUSTOMIZATION,
        LoadOptions::default(),
    );
    let id = id("<cluster>:kustomization/.");
    let set = |text: &str, container: &str, image: &str| {
        checkout
            .set_image(text, &id, container, &ImageRef::parse(image).unwrap())
            .unwrap()
    };
    let after = set(KUSTOMIZATION, "nginx", "nginx:1.27.0");
    let after = set(&after, "ghcr.io/acme/api", "registry.acme.io/api:2.0.0");
    let after = set(&after, "redis", "redis:7.4");
    insta::assert_snapshot!(after);
}

#[test]
fn annotations_are_created_indented_like_the_file() {
    let after = policies(PLAIN, "data:deployment/db", PolicyUpdate::automate());
    insta::assert_snapshot!("created_two_spaces", after);
    let wide = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n    name: web\nspec:\n    template:\n        spec:\n            containers:\n                - name: web\n                  image: nginx:1.25\n";
    let update = PolicyUpdate::lock(Some("release freeze"), Some("ops@example.com"))
        .and(PolicyUpdate::tag("web", "semver:~1.25").unwrap());
    let after = policies(wide, "default:deployment/web", update);
    insta::assert_snapshot!("created_four_spaces", after);
    let after = policies(FLOW, "ops:pod/tools", PolicyUpdate::automate());
    insta::assert_snapshot!("created_in_flow_metadata", after);
}

const ANNOTATED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    flux.weave.works/automated: 'false'  # legacy\n    fluxcd.io/locked: \"true\"\n    fluxcd.io/locked_msg: incident 42\n    team: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n";

#[test]
fn legacy_annotations_are_updated_where_they_are() {
    let after = policies(
        ANNOTATED,
        "default:deployment/web",
        PolicyUpdate::automate(),
    );
    assert_eq!(difference(ANNOTATED, &after), ("fals", "tru"));
    insta::assert_snapshot!(after);
}

#[test]
fn unlocking_removes_the_lock_lines_and_keeps_the_rest() {
    let after = policies(ANNOTATED, "default:deployment/web", PolicyUpdate::unlock());
    insta::assert_snapshot!(after);
}

#[test]
fn removing_the_last_annotation_removes_the_annotations_entry() {
    let text = ANNOTATED.replace(
        "    flux.weave.works/automated: 'false'  # legacy\n    fluxcd.io/locked: \"true\"\n    fluxcd.io/locked_msg: incident 42\n    team: web\n",
        "    fluxcd.io/tag.web: glob:1.*\n",
    );
    let after = policies(
        &text,
        "default:deployment/web",
        PolicyUpdate::tag("web", "glob:*").unwrap(),
    );
    insta::assert_snapshot!(after);
}

#[test]
fn a_tag_policy_for_a_missing_container_is_refused() {
    let checkout = checkout("w.yaml", ANNOTATED);
    let update = PolicyUpdate::tag("nope", "semver:^1").unwrap();
    let error = checkout
        .update_policies(ANNOTATED, &id("default:deployment/web"), &update)
        .unwrap_err();
    assert!(error.to_string().contains("no container nope"), "{error}");
}

#[test]
fn an_image_behind_an_anchor_is_refused_with_its_line() {
    let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: &img nginx:1.25\n  - name: b\n    image: *img\n";
    let error = set_image(text, "default:pod/p", "b", "nginx:1.27").unwrap_err();
    insta::assert_snapshot!(error.to_string());
    assert!(matches!(error, EditError::Alias { line: 8, .. }));
    let error = set_image(text, "default:pod/p", "a", "nginx:1.27").unwrap_err();
    assert!(matches!(error, EditError::Alias { line: 6, .. }));
}

#[test]
fn an_image_in_a_block_scalar_is_refused() {
    let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: >-\n      nginx:1.25\n";
    let error = set_image(text, "default:pod/p", "a", "nginx:1.27").unwrap_err();
    assert!(
        matches!(error, EditError::Unsupported { line: 7, .. }),
        "{error}"
    );
}

#[test]
fn another_repository_is_not_written_into_a_container() {
    let error = set_image(PLAIN, "data:deployment/db", "postgres", "mysql:8").unwrap_err();
    assert!(
        error.to_string().contains("not docker.io/library/mysql"),
        "{error}"
    );
}

#[test]
fn setting_the_image_a_container_already_runs_changes_nothing() {
    let after = set_image(PLAIN, "data:deployment/db", "postgres", "postgres:16.1").unwrap();
    assert_eq!(after, PLAIN);
}

#[test]
fn empty_annotations_are_filled_in_whichever_style_they_have() {
    let base = "kind: Pod\nmetadata:\n  name: p\n  annotations: {}\nspec:\n  containers:\n  - {name: a, image: 'nginx:1.25'}\n";
    let after = policies(base, "default:pod/p", PolicyUpdate::automate());
    assert_eq!(
        after,
        base.replace(
            "annotations: {}",
            "annotations: {fluxcd.io/automated: \"true\"}"
        )
    );
    let null = base.replace("  annotations: {}\n", "  annotations:\n");
    let after = policies(&null, "default:pod/p", PolicyUpdate::automate());
    assert_eq!(
        after,
        base.replace(
            "  annotations: {}\n",
            "  annotations:\n    fluxcd.io/automated: \"true\"\n"
        )
    );
}

#[test]
fn new_annotations_follow_crlf_and_stay_above_trailing_comments() {
    let text = "kind: Pod\r\nmetadata:\r\n  name: p # the pod\r\n# about the spec\r\nspec:\r\n  containers:\r\n  - name: a\r\n    image: nginx:1.25\r\n";
    let after = policies(
        text,
        "default:pod/p",
        PolicyUpdate::lock(Some("it's: frozen"), None),
    );
    assert_eq!(
        after,
        text.replace(
            "  name: p # the pod\r\n",
            "  name: p # the pod\r\n  annotations:\r\n    fluxcd.io/locked: \"true\"\r\n    fluxcd.io/locked_msg: \"it's: frozen\"\r\n"
        )
    );
}

#[test]
fn workloads_inside_a_list_are_edited_in_their_item() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Deployment\n  metadata: {name: a}\n  spec: {template: {spec: {containers: [{name: a, image: 'a:1'}]}}}\n- kind: Deployment\n  metadata:\n    name: b\n  spec:\n    template:\n      spec:\n        containers:\n        - name: b\n          image: b:1\n";
    let after = set_image(text, "default:deployment/b", "b", "b:2").unwrap();
    assert_eq!(after, text.replace("image: b:1", "image: b:2"));
    let after = policies(&after, "default:deployment/b", PolicyUpdate::automate());
    assert!(
        after.contains("    name: b\n    annotations:\n      fluxcd.io/automated: \"true\"\n"),
        "{after}"
    );
}

#[test]
fn locking_and_deautomating_replaces_the_only_annotation() {
    let automated = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    fluxcd.io/automated: 'true'\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n";
    let flow = automated.replace(
        "  annotations:\n    fluxcd.io/automated: 'true'\n",
        "  annotations: {fluxcd.io/automated: 'true'}\n",
    );
    let crlf = automated.replace('\n', "\r\n");
    for text in [automated.to_string(), flow, crlf] {
        let update = PolicyUpdate::lock(None, None).and(PolicyUpdate::deautomate());
        let after = policies(&text, "default:deployment/web", update);
        let reread = checkout("w.yaml", &after);
        let web = reread.workload(&id("default:deployment/web")).unwrap();
        let annotations: Vec<&str> = web.annotations.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(annotations, ["fluxcd.io/locked"], "{after}");
        let (_, added) = difference(&text, &after);
        assert!(
            !added.contains("image") && !added.contains("name"),
            "{after}"
        );

        let after = policies(&text, "default:deployment/web", PolicyUpdate::deautomate());
        let eol = if text.contains('\r') { "\r\n" } else { "\n" };
        assert_eq!(
            after,
            text.replace(
                &format!("  annotations:{eol}    fluxcd.io/automated: 'true'{eol}"),
                ""
            )
            .replace("  annotations: {fluxcd.io/automated: 'true'}\n", ""),
            "the last annotation goes with its `annotations:` key"
        );
        assert!(
            checkout("w.yaml", &after).workloads[0]
                .annotations
                .is_empty()
        );
    }
}

#[test]
fn removing_the_last_annotation_keeps_the_key_after_the_annotations() {
    // kustomize writes `annotations:` before `name:`; the key that follows
    // the removed block must stay.
    let text = "kind: Deployment\nmetadata:\n  annotations:\n    fluxcd.io/automated: \"true\"\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n";
    let after = policies(text, "default:deployment/web", PolicyUpdate::deautomate());
    assert_eq!(
        after,
        text.replace("  annotations:\n    fluxcd.io/automated: \"true\"\n", "")
    );
}
