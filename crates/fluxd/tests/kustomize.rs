//! fluxd on a kustomize repo, against the Kubernetes API server double:
//! the sock-shop manifests as a base, a prod overlay setting front-end's
//! tag and replicas. What lands is what the overlay builds; a release of
//! front-end changes one line of the overlay's kustomization.

use flux_api::{ImageUpdate, JobSpec, ReleaseSpec, Targets};
use flux_testkit::daemon::{FRONT_END, Fluxd, finished, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::kube::ApiServer;

const OVERLAY: &str = "\
resources:
- ../../base
patches:
- path: front-end-replicas.yaml
images:
- name: weaveworksdemos/front-end
  newTag: 0.3.13 # prod's
";

const REPLICAS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: front-end
  namespace: sock-shop
spec:
  replicas: 2
";

fn kustomized_sock_shop() -> BareRepo {
    BareRepo::seeded_with(|work| {
        let base = work.join("manifests/base");
        flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), &base)
            .expect("the fixtures can be copied");
        let mut files: Vec<String> = std::fs::read_dir(&base)
            .expect("the base is there")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let listed: String = files.iter().map(|f| format!("- {f}\n")).collect();
        std::fs::write(
            base.join("kustomization.yaml"),
            format!("resources:\n{listed}"),
        )
        .expect("written");
        let prod = work.join("manifests/overlays/prod");
        std::fs::create_dir_all(&prod).expect("mkdir");
        std::fs::write(prod.join("kustomization.yaml"), OVERLAY).expect("written");
        std::fs::write(prod.join("front-end-replicas.yaml"), REPLICAS).expect("written");
    })
}

/// A release of `image` to one workload.
fn release_of(workload: &str, image: &str) -> JobSpec {
    JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![workload.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image(image.into()),
        force: false,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    })
}

fn live_front_end(cluster: &ApiServer) -> Option<(String, u64)> {
    let object = cluster.object("Deployment", Some("sock-shop"), "front-end")?;
    let image = object["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()?
        .to_string();
    Some((image, object["spec"]["replicas"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overlay_is_synced_and_a_release_edits_its_images_entry() {
    let repo = kustomized_sock_shop();
    let cluster = ApiServer::start();
    let fluxd = Fluxd::start_with_cluster(
        std::path::Path::new(env!("CARGO_BIN_EXE_fluxd")),
        &repo,
        &cluster.kubeconfig(),
        &[],
    )
    .await;
    let client = fluxd.client();
    wait_for("the overlay's build applied", || async {
        live_front_end(&cluster) == Some(("weaveworksdemos/front-end:0.3.13".into(), 2))
    })
    .await;
    assert!(
        cluster
            .object("Deployment", Some("sock-shop"), "carts")
            .is_some(),
        "the base's other objects are applied with it"
    );
    let read = client.read_state().await.expect("read");
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let workloads = client.workloads(None).await.expect("listed");
    let front_end = workloads
        .iter()
        .find(|w| w.id == FRONT_END)
        .expect("front-end is listed once, as built");
    assert_eq!(
        front_end.containers[0].image,
        "weaveworksdemos/front-end:0.3.13"
    );

    let release = release_of(FRONT_END, "weaveworksdemos/front-end:0.4.0");
    let submitted = client.submit(&release).await.expect("queued");
    finished(&client, &submitted.id).await;
    wait_for("the release applied", || async {
        let job = client.job(&submitted.id).await.expect("kept");
        job.timeline.applied.is_some()
    })
    .await;
    assert_eq!(
        live_front_end(&cluster),
        Some(("weaveworksdemos/front-end:0.4.0".into(), 2))
    );
    let diff = repo.git(&["diff", "--stat", "HEAD~1", "HEAD"]);
    assert!(
        diff.contains("manifests/overlays/prod/kustomization.yaml | 2 +-")
            && diff.contains("1 file changed"),
        "{diff}"
    );
    let overlay = repo.git(&["show", "HEAD:manifests/overlays/prod/kustomization.yaml"]);
    assert_eq!(overlay, OVERLAY.replace("0.3.13", "0.4.0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tree_that_does_not_build_is_reported_and_holds_garbage_collection_back() {
    let repo = kustomized_sock_shop();
    let cluster = ApiServer::start();
    let fluxd = Fluxd::start_with_cluster(
        std::path::Path::new(env!("CARGO_BIN_EXE_fluxd")),
        &repo,
        &cluster.kubeconfig(),
        &["--sync-garbage-collection", "--git-poll-interval=1s"],
    )
    .await;
    let client = fluxd.client();
    wait_for("the overlay applied", || async {
        live_front_end(&cluster).is_some()
    })
    .await;
    let broken = repo.commit_file(
        BRANCH,
        "manifests/overlays/prod/kustomization.yaml",
        "resources:\n- ../../base\n- missing.yaml\n",
        "break the overlay",
    );
    wait_for("the broken build reported", || async {
        client.read_state().await.is_ok_and(|r| {
            r.errors.iter().any(|e| {
                e.file == "manifests/overlays/prod/kustomization.yaml"
                    && e.message.contains("missing.yaml")
            })
        })
    })
    .await;
    // A sync at the broken revision must not delete what the tree built before.
    wait_for("a sync of the broken revision", || async {
        fluxd
            .log()
            .lines()
            .any(|l| l.contains("synced") && l.contains(&broken))
    })
    .await;
    assert!(live_front_end(&cluster).is_some(), "{}", fluxd.log());
}

const GENERATED_WEB: &str = "\
apiVersion: v1
kind: Namespace
metadata:
  name: generated
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: generated
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
";

#[tokio::test(flavor = "multi_thread")]
async fn with_manifest_generation_a_flux_yaml_path_is_generated_and_released_through_its_updater() {
    let repo = BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        std::fs::write(manifests.join("web.yaml.in"), GENERATED_WEB).expect("written");
        std::fs::write(
            manifests.join(".flux.yaml"),
            "version: 1\ncommandUpdated:\n  generators:\n  - command: cat web.yaml.in\n  updaters:\n  - containerImage:\n      command: >-\n        sed -i \"s|image: $FLUX_IMG:.*|image: $FLUX_IMG:$FLUX_TAG|\" web.yaml.in\n",
        )
        .expect("written");
    });
    let cluster = ApiServer::start();
    let fluxd = Fluxd::start_with_cluster(
        std::path::Path::new(env!("CARGO_BIN_EXE_fluxd")),
        &repo,
        &cluster.kubeconfig(),
        &["--manifest-generation"],
    )
    .await;
    let client = fluxd.client();
    let live = || {
        cluster
            .object("Deployment", Some("generated"), "web")
            .and_then(|o| {
                o["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(str::to_string)
            })
    };
    wait_for("the generated deployment applied", || async {
        live().as_deref() == Some("nginx:1.25")
    })
    .await;
    let read = client.read_state().await.expect("read");
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let release = release_of("generated:deployment/web", "nginx:1.26");
    let submitted = client.submit(&release).await.expect("queued");
    finished(&client, &submitted.id).await;
    wait_for("the release applied", || async {
        client
            .job(&submitted.id)
            .await
            .is_ok_and(|job| job.timeline.applied.is_some())
    })
    .await;
    assert_eq!(live().as_deref(), Some("nginx:1.26"));
    assert_eq!(
        repo.git(&["show", "HEAD:manifests/web.yaml.in"]),
        GENERATED_WEB.replace("1.25", "1.26")
    );
}
