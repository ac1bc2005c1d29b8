//! Push-to-applied latency of `fluxd`: an automated workload, a new tag
//! pushed to a real registry, and the time until the Kubernetes API server
//! double holds the Deployment running that tag. Measured with registry
//! notifications (two automation batch windows) and with a 1 s registry
//! poll instead, then broken down along the jobs' timelines. Side by side:
//! the CI-style script a user would otherwise run for the last step,
//! `git clone --depth 1` + `kubectl apply --server-side -f manifests/`,
//! timed from the `git push` of a changed manifest to kubectl returning.
//! Prints figures; asserts nothing about time.
//!
//! With `hosts`, push-to-commit instead, all images on the local registry
//! against three other workloads' images on a host that does not answer:
//! one that accepts connections and never replies (hangs), and, polled,
//! one that refuses them (down); with notifications and with a 1 s poll.
//! The ratio of each p50 to the all-local one tells whether a host that
//! does not answer delays the others. Modes' slugs after `hosts` run
//! those only (`hosts 3 poll-hanging`).
//!
//! `cargo bench -p fluxd --bench latency [-- [hosts [SLUG ...]] [ROUNDS]]` (20 rounds;
//! needs docker-registry, git and kubectl). Cargo builds the release
//! `fluxd` this runs. `BENCH_LOG_DIR=<dir>` keeps fluxd's log of each mode
//! there (`FLUXD_LOG=debug` for more).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flux_api::{Job, JobSpec, PolicyChange, PolicySpec, Timeline};
use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo};
use flux_testkit::git::{BRANCH, BareRepo, IsolatedEnv, free_port};
use flux_testkit::kube::ApiServer;
use flux_testkit::registry::{ImageSpec, Notifications, Registry};
use flux_testkit::unreachable::{HangingHost, refusing_host};
use jiff::Timestamp;

const REPOSITORY: &str = "sock-shop/front-end";
const MANIFEST: &str = "manifests/09-front-end-dep.yaml";
/// How often the double is looked at while waiting for a change.
const POLL: Duration = Duration::from_millis(5);
/// The pause after each change landed, longer than any batch window.
const QUIET: Duration = Duration::from_millis(1500);
/// Longer than this for one change means something is broken (a host
/// that hangs holds a request for its timeout and retries: minutes).
const PATIENCE: Duration = Duration::from_secs(600);
/// The workloads whose images the `hosts` modes move to the host that does
/// not answer.
const ELSEWHERE: [&str; 3] = ["carts", "catalogue", "orders"];

/// How fluxd learns of new tags, and how long it batches them.
struct Mode {
    name: &'static str,
    /// Names its log file.
    slug: &'static str,
    notifications: bool,
    batch_window: &'static str,
    /// Where the images of [`ELSEWHERE`] are; the sock-shop's own
    /// (unscanned) images when `None`.
    elsewhere: Option<Elsewhere>,
}

/// A registry host that does not answer.
#[derive(Clone, Copy)]
enum Elsewhere {
    /// Accepts connections, never replies.
    Hanging,
    /// Refuses connections.
    Refusing,
}

const MODES: [Mode; 3] = [
    Mode {
        name: "notifications, batch window 1s (default)",
        slug: "notify-1s",
        notifications: true,
        batch_window: "1s",
        elsewhere: None,
    },
    Mode {
        name: "notifications, batch window 100ms",
        slug: "notify-100ms",
        notifications: true,
        batch_window: "100ms",
        elsewhere: None,
    },
    Mode {
        name: "registry poll 1s, batch window 1s",
        slug: "poll-1s",
        notifications: false,
        batch_window: "1s",
        elsewhere: None,
    },
];

/// `hosts`: each setting all local, then with a host that does not answer.
const HOST_MODES: [Mode; 5] = [
    Mode {
        name: "notifications, all local",
        slug: "notify-local",
        notifications: true,
        batch_window: "1s",
        elsewhere: None,
    },
    Mode {
        name: "notifications, one host hangs",
        slug: "notify-hanging",
        notifications: true,
        batch_window: "1s",
        elsewhere: Some(Elsewhere::Hanging),
    },
    Mode {
        name: "registry poll 1s, all local",
        slug: "poll-local",
        notifications: false,
        batch_window: "1s",
        elsewhere: None,
    },
    Mode {
        name: "registry poll 1s, one host hangs",
        slug: "poll-hanging",
        notifications: false,
        batch_window: "1s",
        elsewhere: Some(Elsewhere::Hanging),
    },
    Mode {
        name: "registry poll 1s, one host refuses",
        slug: "poll-refusing",
        notifications: false,
        batch_window: "1s",
        elsewhere: Some(Elsewhere::Refusing),
    },
];

/// One pushed tag: when its manifest PUT returned, and how long until the
/// double ran it.
struct Round {
    tag: String,
    pushed_at: Timestamp,
    latency: Duration,
}

/// The steps of one automation job, in seconds.
#[derive(Default)]
struct Steps {
    push_to_first_seen: Vec<f64>,
    push_to_committed: Vec<f64>,
    first_seen_to_queued: Vec<f64>,
    queued_to_committed: Vec<f64>,
    committed_to_pushed: Vec<f64>,
    pushed_to_applied: Vec<f64>,
}

/// What one mode measured.
struct Figures {
    latencies: Vec<Duration>,
    steps: Steps,
    /// Mean of fluxd's own `flux_push_to_applied_seconds` histogram.
    metric_mean: Option<f64>,
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_fluxd"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if args.iter().any(|a| a == "hosts") {
        // Slugs given pick those modes only.
        let modes: Vec<&Mode> = HOST_MODES
            .iter()
            .filter(|m| args.iter().all(|a| !is_slug(a)) || args.iter().any(|a| a == m.slug))
            .collect();
        hosts(&runtime, &binary, &modes, rounds);
        return;
    }
    let results = run_modes(&runtime, &binary, &MODES, rounds);
    println!("CI script (git clone --depth 1 + kubectl apply --server-side): {rounds} pushes ...");
    let script = ci_script(rounds);

    println!();
    println!(
        "push-to-applied latency over {rounds} pushes (registry PUT returned -> Deployment runs the tag):"
    );
    println!("  {:<44} {:>9} {:>9} {:>9}", "mode", "p50", "p90", "max");
    for (mode, figures) in &results {
        let mut sorted = figures.latencies.clone();
        sorted.sort();
        println!(
            "  {:<44} {:>9} {:>9} {:>9}",
            mode.name,
            ms(percentile(&sorted, 50)),
            ms(percentile(&sorted, 90)),
            ms(*sorted.last().expect("at least one round"))
        );
    }
    println!();
    println!("medians of the jobs' timelines (ms):");
    println!(
        "  {:<44} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "mode", "push->seen", "seen->queue", "queue->commit", "commit->push", "push->applied"
    );
    for (mode, figures) in &results {
        let s = &figures.steps;
        println!(
            "  {:<44} {:>14.0} {:>14.0} {:>14.0} {:>14.0} {:>14.0}   (metric mean push->applied: {})",
            mode.name,
            median_ms(&s.push_to_first_seen),
            median_ms(&s.first_seen_to_queued),
            median_ms(&s.queued_to_committed),
            median_ms(&s.committed_to_pushed),
            median_ms(&s.pushed_to_applied),
            figures
                .metric_mean
                .map_or("-".to_string(), |m| format!("{:.0} ms", m * 1000.0)),
        );
    }
    println!();
    let mut script_sorted = script.clone();
    script_sorted.sort();
    let script_p50 = percentile(&script_sorted, 50);
    println!(
        "git push -> applied, CI script: p50 {}, p90 {}, max {}",
        ms(script_p50),
        ms(percentile(&script_sorted, 90)),
        ms(*script_sorted.last().expect("at least one round"))
    );
    let (_, default_mode) = &results[0];
    let fluxd_p50 = median_ms(&default_mode.steps.pushed_to_applied);
    println!(
        "git push -> applied, fluxd (timeline pushed->applied, median): {fluxd_p50:.0} ms; ratio fluxd / CI script {:.3}",
        fluxd_p50 / (script_p50.as_secs_f64() * 1000.0)
    );
}

fn is_slug(arg: &str) -> bool {
    HOST_MODES.iter().any(|m| m.slug == arg)
}

fn run_modes<'m>(
    runtime: &tokio::runtime::Runtime,
    binary: &Path,
    modes: impl IntoIterator<Item = &'m Mode>,
    rounds: usize,
) -> Vec<(&'m Mode, Figures)> {
    let mut results = Vec::new();
    for mode in modes {
        println!("{}: {rounds} pushes ...", mode.name);
        let figures = runtime.block_on(measure(binary, mode, rounds));
        let mut sorted = figures.latencies.clone();
        sorted.sort();
        println!(
            "  p50 {}, max {}",
            ms(percentile(&sorted, 50)),
            ms(*sorted.last().expect("at least one round"))
        );
        results.push((mode, figures));
    }
    results
}

/// Push-to-commit with and without a host that does not answer, and the
/// ratio of each p50 to the all-local p50 of the same setting.
fn hosts(runtime: &tokio::runtime::Runtime, binary: &Path, modes: &[&Mode], rounds: usize) {
    let results = run_modes(runtime, binary, modes.iter().copied(), rounds);
    println!();
    println!(
        "push-to-commit latency over {rounds} pushes (registry PUT returned -> automation commit), {} of the other workloads' images elsewhere:",
        ELSEWHERE.len()
    );
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>12}",
        "mode", "p50", "p90", "max", "p50 / local"
    );
    let mut local = f64::NAN;
    for (mode, figures) in &results {
        let committed = &figures.steps.push_to_committed;
        let p50 = median_ms(committed);
        if mode.elsewhere.is_none() {
            local = p50;
        }
        println!(
            "  {:<44} {:>9} {:>9} {:>9} {:>12.3}",
            mode.name,
            format!("{p50:.0} ms"),
            format!("{:.0} ms", percentile_ms(committed, 90)),
            format!("{:.0} ms", percentile_ms(committed, 100)),
            p50 / local,
        );
    }
}

/// Starts a registry, a repo, the double and fluxd in `mode`, automates
/// front-end, then pushes `rounds` newer tags one after another.
async fn measure(binary: &Path, mode: &Mode, rounds: usize) -> Figures {
    let port = free_port();
    let secret = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(secret.path(), "registry-secret").expect("the secret is written");
    let registry = if mode.notifications {
        Registry::start_notifying(&Notifications {
            url: format!("http://127.0.0.1:{port}/hooks/registry"),
            authorization: "Bearer registry-secret".into(),
        })
    } else {
        Registry::start()
    };
    push(&registry, "0.3.12", "2016-11-18T16:00:00Z").await;
    push(&registry, "0.4.0", "2017-03-01T10:00:00Z").await;
    let image = registry.image(REPOSITORY);
    let hanging = matches!(mode.elsewhere, Some(Elsewhere::Hanging)).then(HangingHost::start);
    let other_host = match mode.elsewhere {
        None => None,
        Some(Elsewhere::Hanging) => hanging.as_ref().map(HangingHost::host),
        Some(Elsewhere::Refusing) => Some(refusing_host().to_string()),
    };
    let repo = match &other_host {
        None => sock_shop_repo(Some(&format!("{image}:0.3.12"))),
        Some(host) => repo_elsewhere(&image, host),
    };
    let cluster = ApiServer::start();
    let include = format!("--registry-include-image={}/*", registry.host());
    let include_other = other_host
        .as_ref()
        .map(|host| format!("--registry-include-image={host}/*"));
    let secret_file = secret.path().to_str().expect("temporary paths are UTF-8");
    let window = format!("--automation-batch-window={}", mode.batch_window);
    let mut extra = vec![
        include.as_str(),
        "--webhook-secret-file",
        secret_file,
        window.as_str(),
    ];
    extra.extend(include_other.as_deref());
    if !mode.notifications {
        // Overrides the fixture's hourly poll.
        extra.push("--registry-poll-interval=1s");
    }
    let fluxd = Fluxd::launch(binary, &repo, Some(&cluster.kubeconfig()), port, &extra).await;
    let fail = |what: &str| -> ! { panic!("{what}; fluxd said:\n{}", fluxd.log()) };

    settle(&fluxd, &cluster).await.unwrap_or_else(|e| fail(&e));
    let mut done = Vec::new();
    for round in 0..rounds {
        let tag = format!("0.5.{round}");
        let created = format!("2018-01-{:02}T10:00:00Z", round + 1);
        push(&registry, &tag, &created).await;
        let started = Instant::now();
        let pushed_at = Timestamp::now();
        wait_for_tag(&cluster, &tag)
            .await
            .unwrap_or_else(|e| fail(&e));
        done.push(Round {
            tag,
            pushed_at,
            latency: started.elapsed(),
        });
        // Tags come minutes apart in real life: let the automation request
        // that applying this one raised pass, so no push lands in a batch
        // window that is already open.
        tokio::time::sleep(QUIET).await;
    }
    let jobs = applied_jobs(&fluxd, &done)
        .await
        .unwrap_or_else(|e| fail(&e));
    if let Ok(dir) = std::env::var("BENCH_LOG_DIR") {
        let file = Path::new(&dir).join(format!("fluxd-{}.log", mode.slug));
        std::fs::write(&file, fluxd.log()).expect("the log folder is writable");
    }
    if let Some(hanging) = &hanging {
        println!(
            "  the hanging host accepted {} connections, {} still open",
            hanging.accepted(),
            hanging.open()
        );
    }
    Figures {
        latencies: done.iter().map(|r| r.latency).collect(),
        steps: steps(&done, &jobs),
        metric_mean: metric_mean(&fluxd.url).await,
    }
}

/// The sock-shop repo with front-end in `front_end` (a repository, at
/// 0.3.12) and the images of [`ELSEWHERE`] on `host`.
fn repo_elsewhere(front_end: &str, host: &str) -> BareRepo {
    BareRepo::seeded_with(|work| {
        let manifests = work.join("manifests");
        flux_testkit::copy_dir(&flux_testkit::sock_shop_manifests(), &manifests)
            .expect("the fixtures can be copied");
        let mut moves = vec![(
            "09-front-end-dep.yaml".to_string(),
            "weaveworksdemos/front-end:".to_string(),
            format!("{front_end}:"),
        )];
        for workload in ELSEWHERE {
            let file = std::fs::read_dir(&manifests)
                .expect("the copy is readable")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|f| f.ends_with(&format!("-{workload}-dep.yaml")))
                .unwrap_or_else(|| panic!("the fixtures hold {workload}"));
            moves.push((
                file,
                format!("weaveworksdemos/{workload}:"),
                format!("{host}/sock-shop/{workload}:"),
            ));
        }
        for (file, from, to) in moves {
            let path = manifests.join(file);
            let text = std::fs::read_to_string(&path).expect("the fixture exists");
            let moved = text.replace(&from, &to);
            assert_ne!(moved, text, "{} names {from}", path.display());
            std::fs::write(&path, moved).expect("the copy is writable");
        }
    })
}

async fn push(registry: &Registry, tag: &str, created: &str) {
    registry
        .push_image(REPOSITORY, tag, &ImageSpec::created(created))
        .await;
}

/// Automates front-end through the API (as `fluxctl automate` does) and
/// waits until it runs the newest tag there is and nothing is left to do.
async fn settle(fluxd: &Fluxd, cluster: &ApiServer) -> Result<(), String> {
    let client = fluxd.client();
    let spec = JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: FRONT_END.to_string(),
            automated: Some(true),
            ..PolicyChange::default()
        }],
        message: None,
        user: None,
    });
    client.submit(&spec).await.map_err(|e| e.to_string())?;
    wait_for_tag(cluster, "0.4.0").await?;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let jobs = client.jobs().await.map_err(|e| e.to_string())?;
        let settled = jobs
            .iter()
            .all(|j| j.commit.is_none() || j.applied.is_some());
        if settled && jobs.iter().any(|j| releases_to(j, ":0.4.0")) {
            break;
        }
        if Instant::now() > deadline {
            return Err("automation did not settle".to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the automation request that the last applied head raises pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Waits until the double's front-end Deployment runs `tag`.
async fn wait_for_tag(cluster: &ApiServer, tag: &str) -> Result<(), String> {
    let suffix = format!(":{tag}");
    let deadline = Instant::now() + PATIENCE;
    while !runs(cluster, &suffix) {
        if Instant::now() > deadline {
            return Err(format!("front-end never ran {tag}"));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

fn runs(cluster: &ApiServer, suffix: &str) -> bool {
    cluster
        .object("Deployment", Some("sock-shop"), "front-end")
        .and_then(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .map(|i| i.ends_with(suffix))
        })
        .unwrap_or(false)
}

fn releases_to(job: &Job, suffix: &str) -> bool {
    job.result
        .iter()
        .flat_map(|r| &r.updates)
        .any(|u| u.target.ends_with(suffix))
}

/// The automation job of each round, once fluxd marked it applied.
async fn applied_jobs(fluxd: &Fluxd, rounds: &[Round]) -> Result<Vec<Job>, String> {
    let client = fluxd.client();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let jobs = client.jobs().await.map_err(|e| e.to_string())?;
        let found: Vec<Job> = rounds
            .iter()
            .filter_map(|r| {
                let suffix = format!(":{}", r.tag);
                jobs.iter()
                    .find(|j| {
                        matches!(j.spec, JobSpec::Automation(_))
                            && releases_to(j, &suffix)
                            && j.timeline.applied.is_some()
                    })
                    .cloned()
            })
            .collect();
        if found.len() == rounds.len() {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} automation jobs marked applied",
                found.len(),
                rounds.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn steps(rounds: &[Round], jobs: &[Job]) -> Steps {
    let mut steps = Steps::default();
    for (round, job) in rounds.iter().zip(jobs) {
        let Timeline {
            first_seen,
            queued,
            committed,
            pushed,
            applied,
            ..
        } = job.timeline;
        let add = |into: &mut Vec<f64>, from: Option<Timestamp>, to: Option<Timestamp>| {
            if let (Some(from), Some(to)) = (from, to) {
                into.push(to.duration_since(from).as_secs_f64());
            }
        };
        add(
            &mut steps.push_to_first_seen,
            Some(round.pushed_at),
            first_seen,
        );
        add(
            &mut steps.push_to_committed,
            Some(round.pushed_at),
            committed,
        );
        add(&mut steps.first_seen_to_queued, first_seen, queued);
        add(&mut steps.queued_to_committed, queued, committed);
        add(&mut steps.committed_to_pushed, committed, pushed);
        add(&mut steps.pushed_to_applied, pushed, applied);
    }
    steps
}

/// Sum over count of fluxd's `flux_push_to_applied_seconds` histogram.
async fn metric_mean(url: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    let sum = value("flux_push_to_applied_seconds_sum ")?;
    let count = value("flux_push_to_applied_seconds_count ")?;
    (count > 0.0).then(|| sum / count)
}

/// The last step done by hand: a developer pushes a changed manifest, a CI
/// job clones the repo (`--depth 1`) and runs `kubectl apply --server-side`
/// on its manifests folder. Times each from the push returning to kubectl
/// returning, on a double that already holds the manifests.
fn ci_script(rounds: usize) -> Vec<Duration> {
    let image = "registry.example/sock-shop/front-end";
    let repo = sock_shop_repo(Some(&format!("{image}:0.4.0")));
    let cluster = ApiServer::start();
    let env = IsolatedEnv::new();
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let work = scratch.path().join("developer");
    env.run(
        scratch.path(),
        &["clone", "-q", "-b", BRANCH, &repo.url(), path_str(&work)],
    );
    apply(&cluster, &clone(&env, &repo, scratch.path(), "seed"));

    let mut latencies = Vec::new();
    let mut clones = Vec::new();
    for round in 0..rounds {
        let tag = format!("0.5.{round}");
        let path = work.join(MANIFEST);
        let text = std::fs::read_to_string(&path).expect("the manifest is readable");
        let previous = if round == 0 {
            "0.4.0".to_string()
        } else {
            format!("0.5.{}", round - 1)
        };
        let changed = text.replace(&format!("{image}:{previous}"), &format!("{image}:{tag}"));
        assert_ne!(changed, text, "the manifest names {previous}");
        std::fs::write(&path, changed).expect("the manifest is writable");
        env.run(&work, &["commit", "-q", "-am", &format!("Release {tag}")]);
        env.run(&work, &["push", "-q", "origin", BRANCH]);
        let started = Instant::now();
        let checkout = clone(&env, &repo, scratch.path(), &format!("ci-{round}"));
        clones.push(started.elapsed());
        apply(&cluster, &checkout);
        latencies.push(started.elapsed());
        assert!(runs(&cluster, &format!(":{tag}")), "kubectl applied {tag}");
    }
    clones.sort();
    println!(
        "  median clone {}, the rest is kubectl",
        ms(percentile(&clones, 50))
    );
    latencies
}

fn clone(env: &IsolatedEnv, repo: &BareRepo, scratch: &Path, name: &str) -> PathBuf {
    let dir = scratch.join(name);
    env.run(
        scratch,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "-b",
            BRANCH,
            &repo.url(),
            path_str(&dir),
        ],
    );
    dir
}

fn apply(cluster: &ApiServer, checkout: &Path) {
    let output = cluster
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(checkout.join("manifests"))
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn median_ms(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2] * 1000.0
}

/// Nearest-rank percentile of seconds, in milliseconds.
fn percentile_ms(values: &[f64], p: usize) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1] * 1000.0
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}
