//! The seed's workflows end to end: `fluxctl` against a real `fluxd` that
//! syncs the Kubernetes API server double (through its kubeconfig), on a
//! bare repo seeded with the sock-shop manifests, with a real registry
//! that notifies fluxd of every push.

mod binaries;

use std::time::{Duration, Instant};

use binaries::{fluxctl, stderr, stdout};
use flux_api::{Job, JobSpec};
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo, wait_for};
use flux_testkit::git::{BRANCH, BareRepo, free_port};
use flux_testkit::kube::{ApiServer, WorkloadState};
use flux_testkit::registry::{ImageSpec, Notifications, Registry};
use serde_json::Value;

const RABBITMQ: &str = "sock-shop:deployment/rabbitmq";

/// A registry that notifies fluxd, a repo whose front-end runs an image
/// of that registry, the cluster double, and fluxd syncing it.
struct World {
    registry: Registry,
    repo: BareRepo,
    cluster: ApiServer,
    fluxd: Fluxd,
    /// `<registry>/sock-shop/front-end`.
    image: String,
    _secret: tempfile::NamedTempFile,
}

impl World {
    async fn start() -> World {
        World::start_with(&[]).await
    }

    /// The same, with more flags for fluxd.
    async fn start_with(extra: &[&str]) -> World {
        let port = free_port();
        let secret = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(secret.path(), "registry-secret").expect("the secret is written");
        let hook = format!("http://127.0.0.1:{port}/hooks/registry");
        let registry = Registry::start_notifying(&Notifications {
            url: hook,
            authorization: "Bearer registry-secret".into(),
        });
        for (tag, created) in [
            ("0.3.12", "2016-11-18T16:00:00Z"),
            ("0.3.13", "2017-01-10T10:00:00Z"),
            ("0.4.0", "2017-03-01T10:00:00Z"),
        ] {
            push(&registry, tag, created).await;
        }
        let image = registry.image("sock-shop/front-end");
        let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
        let cluster = ApiServer::start();
        let include = format!("--registry-include-image={}/*", registry.host());
        let secret_file = secret.path().to_str().expect("temporary paths are UTF-8");
        let fluxd = Fluxd::launch(
            &binaries::fluxd(),
            &repo,
            Some(&cluster.kubeconfig()),
            port,
            &[&[&include, "--webhook-secret-file", secret_file], extra].concat(),
        )
        .await;
        let world = World {
            registry,
            repo,
            cluster,
            fluxd,
            image,
            _secret: secret,
        };
        world.wait_for_image("front-end", 0, ":0.3.12").await;
        let client = world.fluxd.client();
        wait_for("the registry's tags in the view", || async {
            let images = client.images(&[FRONT_END.to_string()], None).await;
            images.is_ok_and(|i| i[0].containers[0].available.len() == 3)
        })
        .await;
        world
    }

    /// Runs fluxctl against this fluxd, with its token.
    fn fluxctl(&self, args: &[&str]) -> std::process::Output {
        let base = ["--url", &self.fluxd.url, "--token", &self.fluxd.token];
        fluxctl(&[&base[..], args].concat())
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        self.cluster.object("Deployment", Some("sock-shop"), name)
    }

    /// Waits until the cluster's deployment runs an image ending in `suffix`
    /// in its container `index`.
    async fn wait_for_image(&self, name: &str, index: usize, suffix: &str) {
        let what = format!("{name} to run {suffix} in the cluster");
        self.eventually(&what, async || {
            let deployment = self.deployment(name)?;
            let image =
                deployment["spec"]["template"]["spec"]["containers"][index]["image"].as_str()?;
            image.ends_with(suffix).then_some(())
        })
        .await;
    }

    /// Commits, as a person would, carts scaled from one replica to
    /// `replicas`; answers with the commit.
    fn scale_carts(&self, replicas: u32) -> String {
        let path = "manifests/01-carts-dep.yaml";
        let carts = self.repo.git(&["show", &format!("{BRANCH}:{path}")]);
        let scaled = carts.replacen("replicas: 1", &format!("replicas: {replicas}"), 1);
        assert_ne!(scaled, carts, "the fixture runs one carts replica");
        self.repo.commit_file(BRANCH, path, &scaled, "Scale carts")
    }

    /// Commits the shipping service's manifest emptied.
    fn retire_shipping_service(&self) {
        let path = "manifests/24-shipping-svc.yaml";
        self.repo
            .commit_file(BRANCH, path, "", "Retire the shipping service");
    }

    /// The shipping service as the cluster holds it.
    fn shipping_service(&self) -> Option<Value> {
        self.cluster
            .object("Service", Some("sock-shop"), "shipping")
    }

    /// The changed lines of the last commit, `-` and `+` alike.
    fn last_change(&self) -> Vec<String> {
        self.repo
            .git(&["diff", "--unified=0", "HEAD~1", "HEAD"])
            .lines()
            .filter(|l| l.starts_with(['-', '+']) && !l.starts_with("---") && !l.starts_with("+++"))
            .map(str::to_string)
            .collect()
    }

    /// The newest job of the daemon matching `wanted`, once there is one.
    async fn job(&self, what: &str, wanted: impl Fn(&Job) -> bool) -> Job {
        let client = self.fluxd.client();
        self.eventually(what, async || {
            let jobs = client.jobs().await.ok()?;
            jobs.into_iter().find(|j| wanted(j))
        })
        .await
    }

    /// What `attempt` finds, once it finds something; after a minute,
    /// panics with fluxd's log.
    async fn eventually<T>(&self, what: &str, mut attempt: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = attempt().await {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; fluxd said:\n{}",
                    self.fluxd.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn push(registry: &Registry, tag: &str, created: &str) {
    registry
        .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
        .await;
}

fn releases_to(job: &Job, suffix: &str) -> bool {
    job.result
        .iter()
        .flat_map(|r| &r.updates)
        .any(|u| u.target.ends_with(suffix))
}

#[tokio::test]
async fn release_of_all_images_changes_only_the_image_bytes_and_the_cluster_runs_it() {
    let world = World::start().await;
    let before = world.repo.head(BRANCH);

    let released = world.fluxctl(&["release", "--workload", FRONT_END, "--update-all-images"]);
    assert!(released.status.success(), "{}", stderr(&released));
    let out = stdout(&released);
    let image = &world.image;
    assert!(
        out.contains(&format!(
            "{FRONT_END}  success  front-end: {image}:0.3.12 -> 0.4.0"
        )),
        "{out}"
    );
    let head = world.repo.head(BRANCH);
    assert!(
        out.contains(&format!("Commit pushed:\t{}", &head[..7])),
        "{out}"
    );
    assert!(
        out.contains(&format!("Commit applied:\t{}", &head[..7])),
        "{out}"
    );
    assert_eq!(world.repo.git(&["rev-parse", "HEAD~1"]).trim(), before);
    assert_eq!(
        world.last_change(),
        [
            format!("-        image: {image}:0.3.12"),
            format!("+        image: {image}:0.4.0"),
        ]
    );

    world.wait_for_image("front-end", 0, ":0.4.0").await;
    let job = world
        .job("the release to be applied", |j| {
            releases_to(j, ":0.4.0") && j.applied.is_some()
        })
        .await;
    assert_eq!(job.applied.as_deref(), Some(head.as_str()));
    world
        .eventually(
            "the sync marker to move to the applied commit",
            async || {
                // The annotated tag, peeled to its commit; empty while absent.
                let marker = world.repo.git(&[
                    "for-each-ref",
                    "--format=%(*objectname)",
                    "refs/tags/flux-sync",
                ]);
                (marker.trim() == head).then_some(())
            },
        )
        .await;

    world
        .cluster
        .set_workload_state("Deployment", "sock-shop", "front-end", WorkloadState::Ready);
    wait_for("list-workloads to show the rollout ready", || async {
        let listed = world.fluxctl(&["list-workloads", "-n", "sock-shop"]);
        stdout(&listed)
            .lines()
            .any(|l| l.starts_with(FRONT_END) && l.contains("ready"))
    })
    .await;
}

#[tokio::test]
async fn release_watch_follows_the_rollout_until_every_workload_is_ready() {
    let world = World::start().await;
    let args: Vec<String> = [
        "--url",
        &world.fluxd.url,
        "--token",
        &world.fluxd.token,
        "release",
        "--workload",
        FRONT_END,
        "--update-all-images",
        "--watch",
    ]
    .map(str::to_string)
    .into();
    let watching = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fluxctl(&args)
    });
    // The controller rolls the new spec out a moment after it is applied.
    world.wait_for_image("front-end", 0, ":0.4.0").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world
        .cluster
        .set_workload_state("Deployment", "sock-shop", "front-end", WorkloadState::Ready);
    let out = tokio::task::spawn_blocking(move || watching.join().expect("fluxctl ran"))
        .await
        .expect("the wait ends");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let image = format!("{}:0.4.0", world.image);
    assert!(
        rows.contains(&vec![
            "WORKLOAD",
            "CONTAINER",
            "IMAGE",
            "RELEASE",
            "REPLICAS"
        ]),
        "{text}"
    );
    assert!(
        rows.contains(&vec![FRONT_END, "front-end", &image, "ready", "1/1"]),
        "{text}"
    );
    assert!(
        stderr(&out).contains("All workloads ready."),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_release_to_a_sidecar_changes_only_that_container() {
    let world = World::start().await;
    world
        .wait_for_image("rabbitmq", 1, "rabbitmq-exporter")
        .await;
    let target = "kbudde/rabbitmq-exporter:master-a000001";

    let released = world.fluxctl(&["release", "--workload", RABBITMQ, "--update-image", target]);
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(
        stdout(&released).contains("rabbitmq-exporter: kbudde/rabbitmq-exporter -> master-a000001"),
        "{}",
        stdout(&released)
    );
    assert_eq!(
        world.last_change(),
        [
            "-        image: kbudde/rabbitmq-exporter",
            "+        image: kbudde/rabbitmq-exporter:master-a000001",
        ]
    );
    world.wait_for_image("rabbitmq", 1, ":master-a000001").await;
    let rabbitmq = world.deployment("rabbitmq").expect("rabbitmq runs");
    assert_eq!(
        rabbitmq["spec"]["template"]["spec"]["containers"][0]["image"], "rabbitmq:3.6.8-management",
        "the main container is left alone"
    );
}

#[tokio::test]
async fn a_pushed_tag_is_automated_into_the_cluster_with_its_timeline() {
    let world = World::start().await;
    let automated = world.fluxctl(&["automate", "-w", FRONT_END]);
    assert!(automated.status.success(), "{}", stderr(&automated));
    // Automating moves front-end to the newest tag there already is.
    world.wait_for_image("front-end", 0, ":0.4.0").await;

    push(&world.registry, "0.4.1", "2017-04-01T10:00:00Z").await;
    world.wait_for_image("front-end", 0, ":0.4.1").await;
    let job = world
        .job("the automation job to be applied", |j| {
            matches!(j.spec, JobSpec::Automation(_))
                && releases_to(j, ":0.4.1")
                && j.applied.is_some()
        })
        .await;
    assert_eq!(
        world.repo.git(&["log", "-1", "--format=%s"]).trim(),
        format!("Auto-release {}:0.4.1", world.image)
    );

    // The controller reports the new spec rolled out; fluxd sees it.
    let client = world.fluxd.client();
    let ready = world
        .eventually("the rollout to be seen ready", async || {
            world.cluster.set_workload_state(
                "Deployment",
                "sock-shop",
                "front-end",
                WorkloadState::Ready,
            );
            let seen = client.job(&job.id).await.expect("the job is kept");
            seen.timeline.ready.is_some().then_some(seen)
        })
        .await;
    let t = &ready.timeline;
    let steps = [
        t.first_seen,
        t.queued,
        t.committed,
        t.pushed,
        t.applied,
        t.ready,
    ];
    assert!(steps.iter().all(Option::is_some), "{t:?}");
    assert!(steps.is_sorted(), "the steps come in order: {t:?}");

    let metrics = reqwest::get(format!("{}/metrics", world.fluxd.url))
        .await
        .expect("fluxd answers")
        .text()
        .await
        .expect("metrics are text");
    for wanted in [
        "flux_push_to_applied_seconds_count ",
        "flux_job_step_seconds_count{step=\"ready\"} ",
        "flux_sync_duration_seconds_count{result=\"success\"} ",
    ] {
        let line = metrics.lines().find(|l| l.starts_with(wanted));
        let count: f64 = line
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert!(count >= 1.0, "{wanted} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_locked_workload_is_skipped_unless_the_release_is_forced() {
    let world = World::start().await;
    let locked = world.fluxctl(&["lock", "-w", FRONT_END, "-m", "freeze"]);
    assert!(locked.status.success(), "{}", stderr(&locked));
    let target = format!("{}:0.3.13", world.image);
    let before = world.repo.head(BRANCH);

    let skipped = world.fluxctl(&["release", "--workload", FRONT_END, "-i", &target, "-v"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    assert!(
        stdout(&skipped).contains(&format!("{FRONT_END}  skipped  locked")),
        "{}",
        stdout(&skipped)
    );
    assert_eq!(world.repo.head(BRANCH), before, "nothing is committed");

    let forced = world.fluxctl(&["release", "--workload", FRONT_END, "-i", &target, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(stdout(&forced).contains("success"), "{}", stdout(&forced));
    world.wait_for_image("front-end", 0, ":0.3.13").await;
}

#[tokio::test]
async fn a_tag_policy_restricts_what_automation_releases() {
    let world = World::start().await;
    let policy = world.fluxctl(&[
        "policy",
        "-w",
        FRONT_END,
        "--automate",
        "--tag",
        "front-end=semver:~0.3",
    ]);
    assert!(policy.status.success(), "{}", stderr(&policy));
    world.wait_for_image("front-end", 0, ":0.3.13").await;

    push(&world.registry, "0.3.14", "2017-05-01T10:00:00Z").await;
    push(&world.registry, "0.5.0", "2017-05-02T10:00:00Z").await;
    world.wait_for_image("front-end", 0, ":0.3.14").await;
    // Give automation its batch window and a sync; 0.5.0 stays out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = world.repo.git(&["log", "--format=%s"]);
    assert!(!log.contains("0.5.0"), "{log}");
    world.wait_for_image("front-end", 0, ":0.3.14").await;
}

#[tokio::test]
async fn a_hand_made_commit_is_applied_after_sync() {
    let world = World::start().await;
    let head = world.scale_carts(3);

    let synced = world.fluxctl(&["sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    let out = stdout(&synced);
    assert!(
        out.contains(&format!("Revision of {BRANCH} to apply is {}", &head[..7])),
        "{out}"
    );
    assert!(out.trim_end().ends_with("Done."), "{out}");
    let replicas = world.deployment("carts").expect("carts runs")["spec"]["replicas"].clone();
    assert_eq!(replicas, 3, "applied by the time sync is done");
}

#[tokio::test]
async fn garbage_collection_deletes_what_left_the_repo_once_synced() {
    let world = World::start_with(&["--sync-garbage-collection"]).await;
    let shipping = || world.shipping_service();
    assert!(
        shipping().is_some(),
        "the first sync applied every manifest"
    );
    world.retire_shipping_service();

    let synced = world.fluxctl(&["sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert!(
        shipping().is_none(),
        "collected by the sync that applied the commit; fluxd said:\n{}",
        world.fluxd.log()
    );
    assert!(world.deployment("shipping").is_some(), "the rest stays");
}

#[tokio::test]
async fn a_broken_file_is_named_with_its_line_and_the_other_files_still_sync() {
    let world = World::start_with(&["--sync-garbage-collection"]).await;
    world.repo.commit_file(
        BRANCH,
        "manifests/30-broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  labels: [\n",
        "A broken file",
    );
    world.scale_carts(2);
    world.retire_shipping_service();

    let synced = world.fluxctl(&["sync"]);
    assert_eq!(synced.status.code(), Some(1), "a file was not synced");
    let said = stderr(&synced);
    assert!(
        said.contains("fluxctl: manifests/30-broken.yaml:5:"),
        "{said}"
    );
    assert!(!stdout(&synced).contains("Done."), "{}", stdout(&synced));
    let carts = world.deployment("carts").expect("carts runs");
    assert_eq!(carts["spec"]["replicas"], 2, "the other files synced");
    let log = world.fluxd.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("manifests/30-broken.yaml:")),
        "{log}"
    );
    assert!(
        world.shipping_service().is_some(),
        "garbage collection holds back while a file is unreadable (its objects would look orphaned)"
    );
}

/// `kubectl scale`, as a person (or an autoscaler) does it: the scale
/// subresource, which takes `.spec.replicas` away from fluxd.
fn kubectl_scale_carts(world: &World, replicas: u32) {
    let scaled = world
        .cluster
        .kubectl()
        .args(["-n", "sock-shop", "scale", "deploy", "carts"])
        .arg(format!("--replicas={replicas}"))
        .output()
        .expect("kubectl runs");
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
}

const CARTS: &str = "sock-shop:deployment/carts";

/// `fluxctl release` of carts 0.4.10, with `extra` flags.
fn release_carts(world: &World, extra: &[&str]) -> std::process::Output {
    let release = [
        "release",
        "--workload",
        CARTS,
        "--update-image",
        "weaveworksdemos/carts:0.4.10",
    ];
    world.fluxctl(&[&release[..], extra].concat())
}

#[tokio::test]
async fn a_release_that_conflicts_with_kubectl_scale_is_not_reported_applied() {
    let world = World::start_with(&["--sync-force-conflicts=false"]).await;
    world.wait_for_image("carts", 0, "carts:0.4.8").await;
    kubectl_scale_carts(&world, 2);
    world
        .cluster
        .set_workload_state("Deployment", "sock-shop", "carts", WorkloadState::Ready);

    let released = release_carts(&world, &["--watch", "--timeout", "30s"]);
    assert_eq!(released.status.code(), Some(1), "{}", stdout(&released));
    let out = stdout(&released);
    let said = stderr(&released);
    assert!(out.contains("Commit pushed:"), "{out}");
    assert!(!out.contains("Commit applied:"), "{out}");
    assert!(!said.contains("All workloads ready."), "{said}");
    assert!(said.contains("was not applied:"), "{said}");
    assert!(
        said.contains(&format!("{CARTS}: Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas")),
        "{said}"
    );
    let carts = world.deployment("carts").expect("carts runs");
    assert_eq!(
        carts["spec"]["replicas"], 2,
        "kubectl's replicas are left alone"
    );
    // One failure, one log line: each sync names the conflict once.
    let log = world.fluxd.log();
    let named = log.lines().filter(|l| l.contains("Apply failed")).count();
    let failed_syncs = log
        .lines()
        .filter(|l| l.contains(" synced") && l.contains("errors=1"))
        .count();
    assert!(named >= 1 && named == failed_syncs, "{log}");

    let job = world
        .job("the release", |j| releases_to(j, "carts:0.4.10"))
        .await;
    assert_eq!(job.applied, None);
    assert_eq!(job.apply_errors.len(), 1, "{job:?}");
    assert_eq!(job.apply_errors[0].id, CARTS);

    // What runs is not what git says: both are shown.
    wait_for("list-workloads to show the live image", || async {
        let listed = world.fluxctl(&["list-workloads", "-n", "sock-shop"]);
        stdout(&listed).lines().any(|l| {
            l.starts_with(CARTS)
                && l.contains("weaveworksdemos/carts:0.4.10")
                && l.contains("(live: weaveworksdemos/carts:0.4.8)")
        })
    })
    .await;
    let workloads = world
        .fluxd
        .client()
        .workloads(Some("sock-shop"))
        .await
        .unwrap();
    let carts = workloads
        .iter()
        .find(|w| w.id == CARTS)
        .expect("carts is listed");
    assert_eq!(carts.containers[0].image, "weaveworksdemos/carts:0.4.10");
    assert_eq!(
        carts.containers[0].live_image.as_deref(),
        Some("weaveworksdemos/carts:0.4.8")
    );
}

#[tokio::test]
async fn by_default_git_takes_back_what_kubectl_scale_changed() {
    let world = World::start().await;
    world.wait_for_image("carts", 0, "carts:0.4.8").await;
    kubectl_scale_carts(&world, 2);

    let released = release_carts(&world, &[]);
    assert!(released.status.success(), "{}", stderr(&released));
    assert!(
        stdout(&released).contains("Commit applied:"),
        "{}",
        stdout(&released)
    );
    let carts = world.deployment("carts").expect("carts runs");
    assert_eq!(carts["spec"]["replicas"], 1, "git's replicas");
    assert_eq!(
        carts["spec"]["template"]["spec"]["containers"][0]["image"],
        "weaveworksdemos/carts:0.4.10"
    );
}

#[tokio::test]
async fn a_manifest_can_opt_out_of_taking_fields_back() {
    let world = World::start().await;
    world.wait_for_image("carts", 0, "carts:0.4.8").await;
    let path = "manifests/01-carts-dep.yaml";
    let carts = world.repo.git(&["show", &format!("{BRANCH}:{path}")]);
    let opted_out = carts.replacen(
        "metadata:\n",
        "metadata:\n  annotations:\n    fluxcd.io/force-conflicts: \"false\"\n",
        1,
    );
    assert_ne!(opted_out, carts);
    world
        .repo
        .commit_file(BRANCH, path, &opted_out, "Leave carts' replicas to kubectl");
    let synced = world.fluxctl(&["sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    kubectl_scale_carts(&world, 3);

    let released = release_carts(&world, &["--timeout", "30s"]);
    assert_eq!(released.status.code(), Some(1), "{}", stdout(&released));
    assert!(
        stderr(&released).contains(".spec.replicas"),
        "{}",
        stderr(&released)
    );
    assert_eq!(
        world.deployment("carts").expect("carts runs")["spec"]["replicas"],
        3
    );
}

#[tokio::test]
async fn an_unavailable_api_group_is_logged_by_fluxd_alone() {
    let world = World::start().await;
    world
        .cluster
        .add_unavailable_group("metrics.k8s.io", "v1beta1");
    let synced = world.fluxctl(&["sync"]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    let log = world
        .eventually("fluxd to name the unavailable group", async || {
            let log = world.fluxd.log();
            log.contains("metrics.k8s.io").then_some(log)
        })
        .await;
    assert!(
        !log.lines()
            .any(|l| l.contains("ERROR") || l.contains("failed with status")),
        "no second report from the Kubernetes client: {log}"
    );
}
