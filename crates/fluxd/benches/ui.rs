//! The dashboard with a large repo, in headless chromium: 10,000 generated
//! workloads (on a real local registry's repositories) read by the real
//! `fluxd` binary (`--cluster=none`), and the page opened on it.
//!
//! Figures, from the page's own performance timeline (`fluxd:rows` marks
//! the frame after each listing is rendered):
//! - first useful paint: navigation start to the first rows on screen;
//! - a filter keystroke: the key's `keydown` to the filtered rows on
//!   screen, typed through WebDriver, each key once and then erased;
//! - beside them, what the page would cost without paging: fetching and
//!   parsing the unpaged `GET /api/v1/workloads` of every workload, in the
//!   same browser; printed as a ratio to the first paint.
//!
//! Prints figures; asserts nothing about time.
//! `cargo bench -p fluxd --bench ui` (needs docker-registry, git, chromium
//! and chromium-driver); `FLUX_BENCH_WORKLOADS` (10,000), `FLUX_BENCH_ROUNDS` (20).

#[path = "../tests/ui/browser.rs"]
#[allow(dead_code)]
mod browser;

use flux_testkit::daemon::Fluxd;
use flux_testkit::git::BareRepo;
use flux_testkit::registry::{ImageSpec, Registry};
use serde_json::Value;

const REPOSITORIES: usize = 20;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let workloads = setting("FLUX_BENCH_WORKLOADS", 10_000);
    let rounds = setting("FLUX_BENCH_ROUNDS", 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(workloads, rounds));
}

async fn run(workloads: usize, rounds: usize) {
    let registry = Registry::start();
    for r in 0..REPOSITORIES {
        registry
            .push_image(
                &format!("bench/app{r:02}"),
                "1.0.0",
                &ImageSpec::created("2024-01-01T00:00:00Z"),
            )
            .await;
    }
    let images: Vec<String> = (0..REPOSITORIES)
        .map(|r| format!("{}:1.0.0", registry.image(&format!("bench/app{r:02}"))))
        .collect();
    let repo = BareRepo::seeded_with(|work| {
        flux_testkit::generate::write_with_images(
            &work.join("manifests"),
            workloads,
            workloads / 5,
            1,
            &images,
        )
        .expect("the manifests can be written");
    });
    let include = format!("--registry-include-image={}/*", registry.host());
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"));
    let fluxd = Fluxd::start(binary, &repo, &[&include]).await;
    let client = fluxd.client();
    let served = client.workloads(None).await.expect("workloads are served");
    assert_eq!(served.len(), workloads, "every workload is served");

    let browser = browser::Browser::start(1400, 1000).await;
    // A first visit warms the browser's own caches (its process, fonts), as
    // a person's second look at the page would find them.
    open(&browser, &fluxd.url).await;
    let mut paints = Vec::new();
    for _ in 0..rounds.min(10) {
        paints.push(open(&browser, &fluxd.url).await);
    }

    let mut keystrokes = Vec::new();
    let keys = ["a", "p", "p", "0", "1"];
    for round in 0..rounds {
        let key = keys[round % keys.len()];
        keystrokes.push(keystroke(&browser, key).await);
        keystrokes.push(keystroke(&browser, "\u{E003}").await);
    }

    let unpaged = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; const t0 = performance.now(); \
             fetch('api/v1/workloads').then(r => r.json()).then(all => done([performance.now() - t0, all.length]));",
            vec![],
        )
        .await
        .expect("the page fetches every workload");
    let unpaged_ms = unpaged[0].as_f64().unwrap_or_default();
    assert_eq!(unpaged[1].as_u64(), Some(workloads as u64));

    let page_bytes = reqwest::get(format!("{}/api/v1/workloads/page?limit=100", fluxd.url))
        .await
        .expect("a page is served")
        .bytes()
        .await
        .expect("its body")
        .len();
    let all_bytes = reqwest::get(format!("{}/api/v1/workloads", fluxd.url))
        .await
        .expect("the listing is served")
        .bytes()
        .await
        .expect("its body")
        .len();

    println!("dashboard, {workloads} workloads, headless chromium, {rounds} rounds");
    report(
        "first useful paint (navigation to first rows on screen)",
        &mut paints,
    );
    report(
        "filter keystroke (keydown to filtered rows on screen)",
        &mut keystrokes,
    );
    println!(
        "  without paging: fetching and parsing every workload      {unpaged_ms:7.1} ms  ({:.1}x the first paint's p50)",
        unpaged_ms / percentile(&paints, 50)
    );
    println!(
        "  JSON fetched for the first page                          {:7.1} KiB  (the unpaged listing: {:.1} KiB, {:.0}x)",
        page_bytes as f64 / 1024.0,
        all_bytes as f64 / 1024.0,
        all_bytes as f64 / page_bytes as f64
    );
}

/// Opens the page afresh; answers the time from navigation start to its
/// first rows on screen, in ms.
async fn open(browser: &browser::Browser, url: &str) -> f64 {
    browser
        .client
        .goto(&format!("{url}/"))
        .await
        .expect("the page opens");
    browser
        .until(
            "the first rows",
            "return performance.getEntriesByName('fluxd:rows').length > 0;",
        )
        .await;
    let at = browser
        .run("return performance.getEntriesByName('fluxd:rows')[0].startTime;")
        .await;
    at.as_f64().expect("a mark's time is a number")
}

/// Types `key` into the search box; answers the time from its `keydown`
/// to the rows of the filter it makes on screen, in ms.
async fn keystroke(browser: &browser::Browser, key: &str) -> f64 {
    browser
        .run(
            "window.marksBefore = performance.getEntriesByName('fluxd:rows').length; \
             window.wanted = null; \
             document.getElementById('search').addEventListener('keydown', \
               (e) => { window.keyAt = e.timeStamp; }, { once: true }); \
             return true;",
        )
        .await;
    browser.type_into("#search", key).await;
    // The filter's answer is the listing whose search is the box's text now.
    browser
        .until(
            "the filtered rows",
            "const marks = performance.getEntriesByName('fluxd:rows'); \
             return marks.length > window.marksBefore && window.keyAt !== undefined \
                 && marks[marks.length - 1].startTime > window.keyAt;",
        )
        .await;
    let latency: Value = browser
        .run(
            "const marks = performance.getEntriesByName('fluxd:rows'); \
             return marks[marks.length - 1].startTime - window.keyAt;",
        )
        .await;
    latency.as_f64().expect("a number")
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    let index = ((sorted.len() - 1) * p).div_ceil(100);
    sorted[index]
}

fn report(what: &str, figures: &mut [f64]) {
    figures.sort_by(f64::total_cmp);
    println!(
        "  {what:<56} p50 {:6.1} ms  p90 {:6.1} ms  max {:6.1} ms  (n = {})",
        percentile(figures, 50),
        percentile(figures, 90),
        figures[figures.len() - 1],
        figures.len()
    );
}
