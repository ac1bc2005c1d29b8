//! fluxd on a hostile config repo, syncing the API server double: the
//! path out or the file past a limit is refused by name in the sync
//! status and the log, nothing from outside the repo reaches the cluster,
//! the API or the log, and the rest of the repo is applied. Each run's peak
//! memory is printed beside a run on the same repo without the hostile
//! entry.

use std::path::Path;

use flux_api::FileError;
use flux_testkit::daemon::{Fluxd, wait_for};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::hostile::{Case, GOOD, GOOD_CONFIG, Outside, SECRET, SECRET_NAME};
use flux_testkit::kube::ApiServer;

fn fluxd_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// The peak resident memory of a running process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is mounted");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the status has VmHWM")
}

/// What a run on one repo showed.
struct Run {
    errors: Vec<FileError>,
    log: String,
    manifests: String,
    peak_kib: u64,
}

/// Runs fluxd on the repo `fill` writes, with `git_paths`, until the good
/// manifests are applied and the revision is synced.
async fn run(fill: impl FnOnce(&Path), git_paths: &[&str]) -> (Run, ApiServer) {
    let repo = BareRepo::seeded_with(fill);
    let cluster = ApiServer::start();
    let paths = git_paths.join(",");
    let fluxd = Fluxd::start_with_cluster(
        fluxd_binary(),
        &repo,
        &cluster.kubeconfig(),
        &["--git-path", &paths],
    )
    .await;
    let client = fluxd.client();
    let head = repo.head(BRANCH);
    wait_for("the revision applied", || async {
        client
            .sync_status(&head)
            .await
            .is_ok_and(|s| s.pending.is_empty())
    })
    .await;
    wait_for("the good manifests applied", || async {
        cluster
            .object("ConfigMap", Some("default"), GOOD_CONFIG)
            .is_some()
            && cluster
                .object("Deployment", Some("default"), "good")
                .is_some()
    })
    .await;
    let status = client.sync_status(&head).await.expect("the status");
    let workloads = client.workloads(None).await.expect("the workloads");
    assert!(workloads.iter().any(|w| w.id == GOOD));
    let manifests = client.manifests().await.expect("the manifests");
    let run = Run {
        errors: status.errors,
        log: fluxd.log(),
        manifests: format!("{manifests:?}"),
        peak_kib: peak_rss_kib(fluxd.child.id()),
    };
    (run, cluster)
}

#[tokio::test]
async fn each_hostile_file_is_refused_by_name_and_the_rest_of_the_repo_is_applied() {
    let (baseline, _) = run(
        |work| {
            flux_testkit::git::write_file(
                &work.join("apps/good.yaml"),
                flux_testkit::hostile::good_manifests().as_bytes(),
            )
        },
        &["."],
    )
    .await;
    assert!(baseline.errors.is_empty(), "{:?}", baseline.errors);
    let mut figures = vec![format!("{:<18} {:>6} KiB", "none", baseline.peak_kib)];
    for case in Case::ALL {
        let outside = Outside::new();
        let (run, cluster) = run(|work| case.fill(work, &outside), case.git_paths()).await;
        let expected = FileError {
            file: case.refused().to_string(),
            line: case.line(),
            column: None,
            message: case.error(),
        };
        assert_eq!(run.errors, [expected], "{case:?}");
        assert!(run.log.contains(&case.error()), "{case:?}: {}", run.log);
        assert!(
            cluster
                .object("ConfigMap", Some("default"), SECRET_NAME)
                .is_none(),
            "{case:?}: the manifest outside the repo was applied"
        );
        let outside_dir = outside.dir().to_string_lossy().into_owned();
        for (what, text) in [("log", &run.log), ("manifests", &run.manifests)] {
            assert!(
                !text.contains(SECRET),
                "{case:?}: the {what} shows the secret"
            );
            assert!(
                !text.contains(&outside_dir),
                "{case:?}: the {what} shows where it is"
            );
        }
        figures.push(format!(
            "{:<18} {:>6} KiB",
            format!("{case:?}"),
            run.peak_kib
        ));
        // A refused file costs no more than the bytes fluxd reads anyway
        // (the huge file's are never read): far below what an expanded
        // alias bomb or a gigabyte read would take.
        assert!(
            run.peak_kib < baseline.peak_kib + 64 * 1024,
            "{case:?}: peak {} KiB against {} KiB",
            run.peak_kib,
            baseline.peak_kib
        );
    }
    eprintln!(
        "fluxd peak RSS (VmHWM) per hostile file:\n{}",
        figures.join("\n")
    );
}
