//! Load+index of a large checkout next to `cat` of the same files (and the
//! YAML parser's bare event stream, the floor under load+index), and
//! in-place image edits next to `sed -i`. Prints figures; asserts nothing
//! about time.
//!
//! `cargo bench -p flux-manifests --bench checkout` (defaults: 10,000
//! workloads in 2,000 files, 1,000 edits; override with
//! `FLUX_BENCH_WORKLOADS`, `FLUX_BENCH_FILES`, `FLUX_BENCH_EDITS`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flux_manifests::{Checkout, LoadOptions, Transaction};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .expect("at least one run")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let workloads = setting("FLUX_BENCH_WORKLOADS", 10_000);
    let files = setting("FLUX_BENCH_FILES", 2_000);
    let edits = setting("FLUX_BENCH_EDITS", 1_000);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let paths: Vec<PathBuf> =
        flux_testkit::generate::write(dir.path(), workloads, files, 1).expect("files written");
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "corpus: {workloads} workloads in {files} files, {:.1} MiB",
        bytes as f64 / (1024.0 * 1024.0)
    );

    let cat = best_of(9, || {
        let status = Command::new("cat")
            .args(&paths)
            .stdout(Stdio::null())
            .status()
            .expect("cat runs");
        assert!(status.success());
    });
    let mut loaded = 0;
    let mut kept = Vec::new();
    let load = best_of(9, || {
        let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
        assert!(checkout.errors.is_empty(), "{:?}", checkout.errors.first());
        loaded = checkout.workloads.len();
        // Dropped after the clock stops: freeing is not part of loading.
        kept.push(checkout);
    });
    drop(kept);
    assert_eq!(loaded, workloads);
    // The floor under load+index: the YAML parser's event stream alone, one thread.
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("file reads"))
        .collect();
    let events = best_of(5, || {
        let count: usize = texts
            .iter()
            .map(|t| {
                let options = granit_parser::options! { emit_comments: false };
                granit_parser::Parser::new_from_str_with_options(t, options).count()
            })
            .sum();
        assert!(count > 0);
    });
    println!("cat of the files:        {:8.1} ms", ms(cat));
    println!(
        "parser events only:      {:8.1} ms  ({:.1}x cat; granit-parser, one thread, no index)",
        ms(events),
        events.as_secs_f64() / cat.as_secs_f64()
    );
    println!(
        "load+index:              {:8.1} ms  ({:.1}x cat, {:.0} MiB/s, {} workloads)",
        ms(load),
        load.as_secs_f64() / cat.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0) / load.as_secs_f64(),
        loaded
    );

    // Edits: one container in each of `edits` workloads spread over the files.
    let checkout = Checkout::load(&[dir.path()], LoadOptions::default());
    let step = (checkout.workloads.len() / edits.max(1)).max(1);
    let targets: Vec<_> = checkout
        .workloads
        .iter()
        .step_by(step)
        .take(edits)
        .map(|w| {
            let container = &w.containers[0];
            let tag = format!("{}-next", container.image.tag().unwrap_or("latest"));
            (
                w.id.clone(),
                container.name.clone(),
                container.image.with_tag(&tag).expect("valid tag"),
                container.spelling.clone(),
                w.location.file.clone(),
            )
        })
        .collect();
    let start = Instant::now();
    let mut transaction = Transaction::new(&checkout);
    for (id, container, image, _, _) in &targets {
        transaction
            .set_image(id, container, image)
            .expect("edit applies");
    }
    let written = transaction.write().expect("files written");
    let ours = start.elapsed();
    println!(
        "{} in-place image edits: {:8.1} ms  ({:.0} µs per edit, {} files written, each edit verified)",
        targets.len(),
        ms(ours),
        ours.as_secs_f64() * 1e6 / targets.len() as f64,
        written.len()
    );

    // What a CI step would otherwise run: one `sed -i` per edit, unverified
    // (here putting the old tags back).
    let start = Instant::now();
    for (_, _, image, spelling, file) in &targets {
        let edited = flux_manifests::respell(spelling, image);
        let script = format!("s|{edited}|{spelling}|");
        let status = Command::new("sed")
            .arg("-i")
            .arg(script)
            .arg(file)
            .status()
            .expect("sed runs");
        assert!(status.success());
    }
    let sed = start.elapsed();
    println!(
        "same edits with sed -i:  {:8.1} ms  ({:.1}x ours)",
        ms(sed),
        sed.as_secs_f64() / ours.as_secs_f64()
    );
}
