//! Requests `fluxd` makes to the Kubernetes API server at rest: 1,000
//! Deployments (and 1,000 ConfigMaps) in 4 namespaces, read from git by the
//! real `fluxd` binary and synced to the API server double, whose controller
//! rolls them out. The double counts every request (discovery included, a
//! watch once when opened) while fluxd syncs and follows the rollouts; then,
//! once every Deployment is rolled out and fluxd's jobs are done, nothing
//! changes, and it counts them for a window at rest. This prints both per
//! minute, the window's by verb and path. Asserts nothing about time.
//!
//! `cargo bench -p fluxd --bench rest`; sizes from `FLUX_BENCH_WORKLOADS`
//! (1,000), `FLUX_BENCH_WINDOW` (seconds, 180) and
//! `FLUX_BENCH_SYNC_INTERVAL` (fluxd's `--sync-interval`, `1m`: so that the
//! window holds syncs; the default `5m` needs a window over ten minutes);
//! `FLUX_BENCH_FLUXD` measures another fluxd binary (e.g. an older build).
//! Request counts do not depend on the build's optimisation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flux_testkit::daemon::Fluxd;
use flux_testkit::git::{BareRepo, free_port};
use flux_testkit::kube::{ApiServer, Controller};

const NAMESPACES: usize = 4;
/// Longer than this to sync and roll out means something is broken.
const PATIENCE: Duration = Duration::from_secs(900);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let workloads = setting("FLUX_BENCH_WORKLOADS", 1000) as usize;
    let window = Duration::from_secs(setting("FLUX_BENCH_WINDOW", 180).max(1));
    let interval = std::env::var("FLUX_BENCH_SYNC_INTERVAL").unwrap_or_else(|_| "1m".into());
    let interval = format!("--sync-interval={interval}");
    let binary = std::env::var_os("FLUX_BENCH_FLUXD")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fluxd")), PathBuf::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let server = ApiServer::start();
    let _controller = Controller::start(&server);
    let repo = BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        std::fs::create_dir_all(&manifests).expect("the manifests folder can be made");
        flux_testkit::generate::sync_set(&manifests, workloads * 2, NAMESPACES)
            .expect("the manifests can be written");
    });
    println!(
        "rest benchmark: {workloads} Deployments and {workloads} ConfigMaps in {NAMESPACES} namespaces, {} binary",
        binary.display()
    );
    let started = Instant::now();
    let kubeconfig = server.kubeconfig();
    let fluxd = runtime.block_on(Fluxd::launch(
        &binary,
        &repo,
        Some(&kubeconfig),
        free_port(),
        &["--registry-exclude-image=*", &interval],
    ));
    wait(
        &fluxd,
        "every Deployment to be synced and rolled out",
        || (0..workloads).all(|w| rolled_out(&server, 2 * w + 1)),
    );
    let client = fluxd.client();
    wait(&fluxd, "fluxd's jobs to be done", || {
        runtime.block_on(client.jobs()).is_ok_and(|jobs| {
            jobs.iter()
                .all(|j| j.commit.is_none() || j.timeline.ready.is_some())
        })
    });
    let busy = started.elapsed();
    let mut by_verb: BTreeMap<String, u64> = BTreeMap::new();
    for ((verb, _), count) in server.request_counts() {
        *by_verb.entry(verb).or_default() += count;
    }
    let requests: u64 = by_verb.values().sum();
    println!(
        "synced and rolled out after {busy:.1?} ({interval}): {requests} requests, {:.1} per minute ({by_verb:?})",
        requests as f64 / (busy.as_secs_f64() / 60.0)
    );
    // Rollouts that just finished may still be looked at once.
    std::thread::sleep(Duration::from_secs(5));

    server.reset_request_counts();
    std::thread::sleep(window);
    let counts = server.request_counts();
    let minutes = window.as_secs_f64() / 60.0;
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for ((verb, path), count) in &counts {
        *by_kind
            .entry(format!("{verb} {}", shape(path)))
            .or_default() += count;
    }
    let total: u64 = counts.values().sum();
    println!(
        "at rest for {:.0?}: {total} requests, {:.1} per minute",
        window,
        total as f64 / minutes
    );
    let mut rows: Vec<(String, u64)> = by_kind.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (what, count) in rows {
        println!("  {:>8.1}/min  {what}", count as f64 / minutes);
    }
    if fluxd.log().contains("panicked") {
        panic!("fluxd panicked:\n{}", fluxd.log());
    }
}

/// Whether the `n`th generated resource (a Deployment) is rolled out.
fn rolled_out(server: &ApiServer, n: usize) -> bool {
    let namespace = format!("bench-{}", n % NAMESPACES);
    let Some(deployment) = server.object("Deployment", Some(&namespace), &format!("app-{n}"))
    else {
        return false;
    };
    let status = &deployment["status"];
    status["observedGeneration"] == deployment["metadata"]["generation"]
        && status["updatedReplicas"] == deployment["spec"]["replicas"]
        && status["readyReplicas"] == deployment["spec"]["replicas"]
}

/// A request path with the namespace in place of its name, so that the
/// same request to each namespace adds up.
fn shape(path: &str) -> String {
    let mut parts: Vec<&str> = path.split('/').collect();
    if let Some(at) = parts.iter().position(|p| *p == "namespaces")
        && at + 2 < parts.len()
    {
        parts[at + 1] = "{ns}";
    }
    parts.join("/")
}

fn wait(fluxd: &Fluxd, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited too long for {what}; fluxd said:\n{}",
            fluxd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
