//! fluxd's resident memory with a large repo and a warm registry cache:
//! 10,000 generated workloads whose images come from a real local registry
//! holding 100 repositories x 10 tags (1,000 images), read from a bare git
//! repo by the real `fluxd` binary (`--cluster=none`).
//!
//! VmRSS and VmHWM come from `/proc/<pid>/status`: once every workload is
//! served and every image's creation time is cached, then again after a
//! second registry poll and a `list-images` of every workload. They are
//! printed next to the size of the manifests on disk, the registry's own
//! resident memory while it serves the same images, and the original
//! Flux's Helm chart figures (fluxd requests 64 MiB; its image cache,
//! memcached, is given 512 MB). Fails loudly when fluxd dies.
//!
//! Every container runs its repository's newest tag, so automation has
//! nothing to commit and the figures are of a daemon at rest.
//!
//! `cargo bench -p fluxd --bench memory`; sizes from
//! `FLUX_BENCH_WORKLOADS` (10,000), `FLUX_BENCH_FILES` (2,000),
//! `FLUX_BENCH_REPOSITORIES` (100) and `FLUX_BENCH_TAGS` (10);
//! `FLUX_BENCH_FLUXD` measures another fluxd binary (e.g. an older build).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flux_api::WorkloadImages;
use flux_testkit::daemon::Fluxd;
use flux_testkit::git::BareRepo;
use flux_testkit::registry::{ImageSpec, Registry};
use futures::StreamExt as _;

/// How often the registry is polled: the second poll comes this long after the first.
const REGISTRY_POLL: &str = "20s";
const MIB: f64 = 1024.0 * 1024.0;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let workloads = setting("FLUX_BENCH_WORKLOADS", 10_000);
    let files = setting("FLUX_BENCH_FILES", 2_000);
    let repositories = setting("FLUX_BENCH_REPOSITORIES", 100);
    let tags = setting("FLUX_BENCH_TAGS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    let registry = Registry::start();
    let setup = Instant::now();
    runtime.block_on(populate(&registry, repositories, tags));
    println!(
        "setup: pushed {repositories} repositories x {tags} tags ({} images) in {:.1?}",
        repositories * tags,
        setup.elapsed()
    );
    let images: Vec<String> = (0..repositories)
        .map(|r| format!("{}:{}", registry.image(&repository(r)), tag(tags - 1)))
        .collect();
    let mut manifest_bytes = 0;
    let repo = BareRepo::seeded_with(|work| {
        let paths = flux_testkit::generate::write_with_images(
            &work.join("manifests"),
            workloads,
            files,
            1,
            &images,
        )
        .expect("the manifests can be written");
        manifest_bytes = paths
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum::<u64>();
    });
    println!(
        "corpus: {workloads} workloads in {files} files, {:.1} MiB of manifests",
        manifest_bytes as f64 / MIB
    );

    let mut fluxd = Daemon::start(&runtime, &repo);
    let client = fluxd.0.client();
    let started = Instant::now();
    runtime.block_on(fluxd.wait("every workload to be served", || async {
        client
            .workloads(None)
            .await
            .is_ok_and(|w| w.len() == workloads)
    }));
    let served = started.elapsed();
    runtime.block_on(fluxd.wait("every image to be cached", || async {
        client
            .images(&[], None)
            .await
            .is_ok_and(|images| all_cached(&images, tags))
    }));
    let cached = started.elapsed();
    println!(
        "fluxd: {workloads} workloads served after {served:.1?}, all images cached after {cached:.1?}"
    );
    // Let the scan's last writes and the view's recomputation finish.
    std::thread::sleep(Duration::from_secs(2));
    let first = fluxd.memory();

    let url = fluxd.0.url.clone();
    let requests = runtime.block_on(registry_requests(&url));
    runtime.block_on(fluxd.wait("the second registry poll", || async {
        registry_requests(&url).await >= requests + repositories as u64
    }));
    std::thread::sleep(Duration::from_secs(2));
    let listed = runtime.block_on(async {
        let images = client.images(&[], None).await.expect("list-images answers");
        let workloads = client
            .workloads(None)
            .await
            .expect("list-workloads answers");
        (images.len(), workloads.len())
    });
    assert_eq!(listed, (workloads, workloads), "every workload is listed");
    let second = fluxd.memory();
    fluxd.assert_alive();
    let registry_rss = Memory::of(registry.pid()).rss;

    println!();
    println!(
        "fluxd resident memory, {workloads} workloads, {} cached images:",
        repositories * tags
    );
    println!(
        "  after the first scan                      VmRSS {:6.1} MiB   VmHWM {:6.1} MiB   (anonymous {:.1}, files {:.1})",
        first.rss as f64 / MIB,
        first.hwm as f64 / MIB,
        first.anon as f64 / MIB,
        first.file as f64 / MIB
    );
    println!(
        "  after a second poll and list-images       VmRSS {:6.1} MiB   VmHWM {:6.1} MiB   (anonymous {:.1}, files {:.1})",
        second.rss as f64 / MIB,
        second.hwm as f64 / MIB,
        second.anon as f64 / MIB,
        second.file as f64 / MIB
    );
    println!("  goal                                      VmRSS <= 40 MiB   VmHWM <= 48 MiB");
    println!("compared with:");
    println!(
        "  the manifests on disk                     {:6.1} MiB   (fluxd RSS / manifests {:.1}x)",
        manifest_bytes as f64 / MIB,
        second.rss as f64 / manifest_bytes as f64
    );
    println!(
        "  the registry serving these images (Go)    {:6.1} MiB   (fluxd / registry {:.2}x)",
        registry_rss as f64 / MIB,
        second.rss as f64 / registry_rss.max(1) as f64
    );
    println!(
        "  original Flux's Helm chart: fluxd requests 64 MiB, plus memcached for its image cache (512 MB)"
    );
    println!(
        "  ratio fluxd RSS / 64 MiB                  {:6.2}",
        second.rss as f64 / (64.0 * MIB)
    );
}

fn repository(index: usize) -> String {
    format!("bench/app{index:03}")
}

fn tag(index: usize) -> String {
    format!("1.{index}.0")
}

/// Pushes `tags` tags of each repository; later tags are newer.
async fn populate(registry: &Registry, repositories: usize, tags: usize) {
    let work: Vec<(usize, usize)> = (0..repositories)
        .flat_map(|r| (0..tags).map(move |t| (r, t)))
        .collect();
    futures::stream::iter(work)
        .map(|(r, t)| async move {
            let created = jiff::Timestamp::from_second(1_500_000_000 + (r * 1000 + t) as i64 * 60)
                .expect("a valid time")
                .to_string();
            registry
                .push_image(&repository(r), &tag(t), &ImageSpec::created(&created))
                .await;
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// True when every container's repository lists `tags` tags, each with a
/// creation time.
fn all_cached(images: &[WorkloadImages], tags: usize) -> bool {
    !images.is_empty()
        && images.iter().flat_map(|w| &w.containers).all(|c| {
            c.error.is_none()
                && c.available.len() == tags
                && c.available.iter().all(|t| t.created.is_some())
        })
}

/// The `flux_registry_requests_total` counters, summed.
async fn registry_requests(url: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("{url}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("flux_registry_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy)]
struct Memory {
    rss: u64,
    hwm: u64,
    /// Of `rss`: the heap, stacks and other private memory.
    anon: u64,
    /// Of `rss`: mapped files, mostly the binary's own code.
    file: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
                * 1024
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

/// The `fluxd` under measure (the tests' fixture, killed when dropped).
struct Daemon(Fluxd);

impl Daemon {
    fn start(runtime: &tokio::runtime::Runtime, repo: &BareRepo) -> Daemon {
        let binary = std::env::var_os("FLUX_BENCH_FLUXD")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fluxd")), PathBuf::from);
        println!("fluxd: {}", binary.display());
        let extra = ["--registry-poll-interval", REGISTRY_POLL];
        Daemon(runtime.block_on(Fluxd::start(&binary, repo, &extra)))
    }

    /// Polls `done` every 250 ms; panics after five minutes, or at once
    /// when fluxd exits, with the end of its log.
    async fn wait<F, Fut>(&mut self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !done().await {
            self.assert_alive();
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.0.child.try_wait() {
            let log = self.0.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("fluxd died ({status}); its log ends:\n{}", tail.join("\n"));
        }
    }

    fn memory(&mut self) -> Memory {
        self.assert_alive();
        Memory::of(self.0.child.id())
    }
}
