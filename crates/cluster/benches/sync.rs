//! Sync benchmark: 1,000 generated resources applied through `flux-cluster`'s sync and
//! through `kubectl apply --server-side -f <dir>`, each against a fresh API server
//! double, then the unchanged resync of each. Prints figures; asserts nothing about time.
//!
//! cargo bench -p flux-cluster --bench sync [-- RESOURCES NAMESPACES ROUNDS]

use std::path::Path;
use std::time::{Duration, Instant};

use flux_cluster::{Cluster, Connection, ManifestSet, Scope, SyncOptions};
use flux_testkit::kube::ApiServer;

struct Figures {
    first: Duration,
    resync: Duration,
    first_writes: u64,
    resync_writes: u64,
}

fn kubectl_round(dir: &Path) -> Figures {
    let server = ApiServer::start();
    let apply = |server: &ApiServer| {
        let started = Instant::now();
        let output = server
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(dir)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        started.elapsed()
    };
    let first = apply(&server);
    let first_writes = server.total_writes();
    server.reset_writes();
    let resync = apply(&server);
    Figures {
        first,
        resync,
        first_writes,
        resync_writes: server.total_writes(),
    }
}

async fn flux_round(dir: &Path) -> Figures {
    let server = ApiServer::start();
    let options = SyncOptions::default();
    let started = Instant::now();
    let run = || async {
        let t0 = Instant::now();
        let connection = Connection {
            kubeconfig: Some(server.kubeconfig()),
            context: None,
        };
        let cluster = Cluster::connect(&connection, Scope::default())
            .await
            .expect("connects");
        let t1 = Instant::now();
        let set = ManifestSet::load_dir(dir);
        let t2 = Instant::now();
        let report = cluster.sync(&set, &options).await.expect("sync runs");
        assert!(report.is_success(), "{:?}", report.errors.first());
        println!(
            "  flux phases: connect {}, read {}, sync {}",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t2.elapsed())
        );
        report
    };
    let report = run().await;
    let first = started.elapsed();
    assert!(!report.applied.is_empty());
    let first_writes = server.total_writes();
    server.reset_writes();
    let started = Instant::now();
    let report = run().await;
    let resync = started.elapsed();
    assert!(report.applied.is_empty());
    Figures {
        first,
        resync,
        first_writes,
        resync_writes: server.total_writes(),
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let resources = numbers.first().copied().unwrap_or(1000);
    let namespaces = numbers.get(1).copied().unwrap_or(4);
    let rounds = numbers.get(2).copied().unwrap_or(3).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let files =
        flux_testkit::generate::sync_set(dir.path(), resources, namespaces).expect("generate");
    println!(
        "sync benchmark: {resources} resources (+{namespaces} namespaces) in {files} files, {rounds} rounds, median"
    );

    let started = Instant::now();
    let set = ManifestSet::load_dir(dir.path());
    println!(
        "reading {} manifests (ManifestSet::load_dir): {}",
        set.manifests.len(),
        ms(started.elapsed())
    );

    let mut kubectl = Vec::new();
    let mut flux = Vec::new();
    for _ in 0..rounds {
        kubectl.push(kubectl_round(dir.path()));
        flux.push(flux_round(dir.path()).await);
    }
    let k_first = median(kubectl.iter().map(|f| f.first).collect());
    let k_resync = median(kubectl.iter().map(|f| f.resync).collect());
    let f_first = median(flux.iter().map(|f| f.first).collect());
    let f_resync = median(flux.iter().map(|f| f.resync).collect());
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}",
        "", "apply", "resync", "apply writes", "resync writes"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}",
        "kubectl apply --server-side -f",
        ms(k_first),
        ms(k_resync),
        kubectl[0].first_writes,
        kubectl[0].resync_writes
    );
    println!(
        "{:<34} {:>10} {:>10} {:>14} {:>14}",
        "flux-cluster sync",
        ms(f_first),
        ms(f_resync),
        flux[0].first_writes,
        flux[0].resync_writes
    );
    println!(
        "ratio flux/kubectl: apply {:.3}x, resync {:.3}x (goal: apply <= 0.3x, zero resync writes)",
        f_first.as_secs_f64() / k_first.as_secs_f64(),
        f_resync.as_secs_f64() / k_resync.as_secs_f64()
    );
}
