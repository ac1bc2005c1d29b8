//! Cold scan of many repositories on the real local registry, side by side
//! with what a user would otherwise script: `skopeo list-tags` plus
//! `skopeo inspect --config` per tag. Then the request count of a second
//! poll with nothing new.
//!
//! `cargo bench -p flux-registry --bench scan`; sizes from `BENCH_REPOS`
//! (50), `BENCH_TAGS` (100) and `BENCH_SKOPEO_REPOS` (5: skopeo is timed
//! on that many repositories and extrapolated linearly) and
//! `BENCH_CONCURRENCY` (16 requests in flight).
//!
//! Both tools read the same registry process, started with `GOGC` from
//! `BENCH_REGISTRY_GOGC` (400; `100` is the Go default): distribution 2.8
//! allocates a 4 MiB read buffer for every blob it serves and builds its URL
//! router for every request, so with a live heap of a few MiB the default
//! collects garbage every few requests.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_image::Name;
use flux_registry::{Cache, Client, ClientConfig, Credentials, HostLimits, ScanConfig, Scanner};
use flux_testkit::registry::{ImageSpec, Registry};
use futures::StreamExt as _;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let repos = env_usize("BENCH_REPOS", 50);
    let tags = env_usize("BENCH_TAGS", 100);
    let skopeo_repos = env_usize("BENCH_SKOPEO_REPOS", 5).min(repos);
    let concurrency = env_usize("BENCH_CONCURRENCY", 16);
    let gogc = std::env::var("BENCH_REGISTRY_GOGC").unwrap_or_else(|_| "400".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let registry = Registry::start_with_env(&[("GOGC", &gogc)]);
    println!(
        "registry: {} (filesystem storage, blob descriptors cached in memory, log level error, no access log), GOGC={gogc}",
        registry_version()
    );
    let setup = Instant::now();
    runtime.block_on(populate(&registry, repos, tags));
    println!(
        "setup: pushed {repos} repositories x {tags} tags ({} images) in {:.1?}",
        repos * tags,
        setup.elapsed()
    );

    let names: Vec<Name> = (0..repos)
        .map(|r| registry.image(&repo(r)).parse().expect("valid name"))
        .collect();
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let client = Arc::new(Client::new(
        ClientConfig {
            limits: HostLimits {
                rps: f64::INFINITY,
                concurrency,
                ..HostLimits::default()
            },
            ..ClientConfig::default()
        },
        Credentials::none(),
    ));
    let scanner = Scanner::new(
        client.clone(),
        Arc::new(Cache::open(&cache_dir.path().join("registry.redb"))),
        ScanConfig {
            repository_concurrency: concurrency,
            ..ScanConfig::default()
        },
    );
    let counters = client.counters();

    let registry_cpu_before = cpu_times(registry.pid());
    let own_cpu_before = cpu_seconds(std::process::id());
    let cold = Instant::now();
    let results = runtime.block_on(scanner.poll(&names));
    let cold_time = cold.elapsed();
    let (registry_user, registry_system) = cpu_times(registry.pid()) - registry_cpu_before;
    let registry_cpu = registry_user + registry_system;
    let own_cpu = cpu_seconds(std::process::id()) - own_cpu_before;
    let cold_requests = counters.total();
    let cold_statuses: Vec<(u16, u64)> = counters
        .snapshot()
        .into_iter()
        .map(|((_, status), n)| (status, n))
        .collect();
    let with_time: usize = results
        .iter()
        .flat_map(|r| &r.info.tags)
        .filter(|t| t.created.is_some())
        .count();
    let errors = results.iter().filter(|r| r.info.error.is_some()).count();

    let warm = Instant::now();
    runtime.block_on(scanner.poll(&names));
    let warm_time = warm.elapsed();
    let warm_requests = counters.total() - cold_requests;

    let skopeo_registry_before = cpu_seconds(registry.pid());
    let skopeo_time = time_skopeo(&registry, skopeo_repos);
    let skopeo_registry_cpu = cpu_seconds(registry.pid()) - skopeo_registry_before;
    let skopeo_estimate = skopeo_time.mul_f64(repos as f64 / skopeo_repos.max(1) as f64);

    println!();
    println!("cold scan of {repos} repositories x {tags} tags, creation time of every tag:");
    println!(
        "  flux-registry                 {:>10.2?}  {cold_requests} requests, {with_time} tags with a creation time, {errors} repository errors",
        cold_time
    );
    println!(
        "  skopeo list-tags + inspect    {:>10.2?}  measured on {skopeo_repos} repositories ({:.2?}), extrapolated linearly",
        skopeo_estimate, skopeo_time
    );
    println!(
        "  CPU during the cold scan: registry {registry_cpu:.2}s (user {registry_user:.2}s, system {registry_system:.2}s; {:.2} ms per request), flux-registry {own_cpu:.2}s ({:.2} ms per request)",
        registry_cpu * 1000.0 / cold_requests.max(1) as f64,
        own_cpu * 1000.0 / cold_requests.max(1) as f64
    );
    println!(
        "  requests per second           {:>10.0}  by status: {:?}",
        cold_requests as f64 / cold_time.as_secs_f64(),
        cold_statuses
    );
    println!(
        "  CPU of the registry while skopeo ran on {skopeo_repos} repositories: {skopeo_registry_cpu:.2}s"
    );
    println!(
        "  ratio flux-registry / skopeo  {:>10.4}  (goal <= 0.1)",
        cold_time.as_secs_f64() / skopeo_estimate.as_secs_f64()
    );
    println!();
    println!("second poll, nothing new:");
    println!("  requests                      {warm_requests:>10}  (goal: exactly {repos})");
    println!("  time                          {warm_time:>10.2?}");
    let (hits, misses) = scanner.cache().counters().get();
    println!("  cache lookups over both polls  hits {hits}, misses {misses}");
}

/// The registry's version line (`docker-registry --version`).
fn registry_version() -> String {
    Command::new(flux_testkit::registry::REGISTRY_BINARY)
        .arg("--version")
        .output()
        .map(|o| {
            // The first word is the binary's own path.
            let text = String::from_utf8_lossy(&o.stdout);
            let text = text.trim();
            text.split_once(' ')
                .map_or(text, |(_, rest)| rest)
                .to_string()
        })
        .unwrap_or_default()
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let times = cpu_times(pid);
    times.user + times.system
}

/// User and system CPU seconds of a process.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    user: f64,
    system: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = (f64, f64);

    fn sub(self, before: CpuTimes) -> (f64, f64) {
        (self.user - before.user, self.system - before.system)
    }
}

/// User and system CPU seconds of a process, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, as on Linux everywhere here).
fn cpu_times(pid: u32) -> CpuTimes {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    CpuTimes {
        user: ticks(11) / 100.0,
        system: ticks(12) / 100.0,
    }
}

fn repo(index: usize) -> String {
    format!("bench/app{index:02}")
}

async fn populate(registry: &Registry, repos: usize, tags: usize) {
    let work: Vec<(usize, usize)> = (0..repos)
        .flat_map(|r| (0..tags).map(move |t| (r, t)))
        .collect();
    futures::stream::iter(work)
        .map(|(r, t)| async move {
            let created = jiff::Timestamp::from_second(1_500_000_000 + (r * 1000 + t) as i64 * 60)
                .expect("valid time")
                .to_string();
            registry
                .push_image(&repo(r), &format!("1.{t}.0"), &ImageSpec::created(&created))
                .await;
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Times `skopeo list-tags` and `skopeo inspect --config` per tag, one
/// after the other, on the first `repos` repositories.
fn time_skopeo(registry: &Registry, repos: usize) -> Duration {
    let start = Instant::now();
    for r in 0..repos {
        let reference = format!("docker://{}", registry.image(&repo(r)));
        let output = Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false", &reference])
            .output()
            .expect("skopeo is installed (Debian package skopeo)");
        assert!(
            output.status.success(),
            "skopeo list-tags: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listing: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("skopeo JSON");
        let tags: Vec<String> = listing["Tags"]
            .as_array()
            .expect("Tags")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        for tag in tags {
            let output = Command::new("skopeo")
                .args([
                    "inspect",
                    "--config",
                    "--tls-verify=false",
                    &format!("{reference}:{tag}"),
                ])
                .output()
                .expect("skopeo inspect");
            assert!(
                output.status.success(),
                "skopeo inspect: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    start.elapsed()
}
