//! Load+index of a large checkout next to `cat` of the same files (and the
//! YAML parser's bare event stream, the floor under load+index), and
//! in-place image edits next to a ruamel.yaml round trip (when `python3`
//! imports it) and `sed -i`; ours is timed whole and in its two parts (the
//! edits made and verified in memory, the files replaced). Prints figures;
//! asserts nothing about time.
//!
//! `cargo bench -p flux-manifests --bench checkout` (defaults: 10,000
//! workloads in 2,000 files; 1,000 edits, one in each workload of another
//! 100 files; override with `FLUX_BENCH_WORKLOADS`, `FLUX_BENCH_FILES`,
//! `FLUX_BENCH_EDITS`, `FLUX_BENCH_EDIT_FILES`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flux_image::ImageRef;
use flux_manifests::release::{
    self, ContainerTarget, ContainerTargets, ReleaseSpec, Status, Targets, Update,
};
use flux_manifests::{Checkout, LoadOptions, NodePath, ResourceId, Step, Transaction};

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

    edit_bench(edits, setting("FLUX_BENCH_EDIT_FILES", 100));
}

/// One container's edit, and what the peers need to make it.
struct Target {
    id: ResourceId,
    container: String,
    image: ImageRef,
    /// The image as the file spells it now.
    spelling: String,
    file: PathBuf,
    doc: usize,
    path: NodePath,
}

/// The first container of every workload of `checkout`, moved to a new tag.
fn targets(checkout: &Checkout) -> Vec<Target> {
    checkout
        .workloads
        .iter()
        .filter_map(|w| {
            let container = w.containers.first()?;
            let path = w.image_path(container)?;
            let tag = format!("{}-next", container.image.tag().unwrap_or("latest"));
            Some(Target {
                id: w.id.clone(),
                container: container.name.clone(),
                image: container.image.with_tag(&tag).expect("valid tag"),
                spelling: container.spelling.clone(),
                file: w.location.file.to_path_buf(),
                doc: w.location.doc,
                path: path.clone(),
            })
        })
        .collect()
}

/// Edits one container of each of `edits` workloads in `files` files: as
/// fluxd's jobs and `fluxctl release` make them (planned by the release
/// rules, made and verified in one transaction, written), next to the same
/// edits made by a ruamel.yaml round trip of each file (the original Flux's
/// way), and by one `sed -i` each.
fn edit_bench(edits: usize, files: usize) {
    let ours_dir = tempfile::tempdir().expect("a temporary folder");
    let peer_dir = tempfile::tempdir().expect("a temporary folder");
    flux_testkit::generate::write(ours_dir.path(), edits, files, 2).expect("files written");
    flux_testkit::generate::write(peer_dir.path(), edits, files, 2).expect("files written");
    let before = texts(ours_dir.path());

    let checkout = Checkout::load(&[ours_dir.path()], LoadOptions::default());
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors.first());
    let targets = targets(&checkout);
    let mut per_container = ContainerTargets::new();
    for t in &targets {
        per_container
            .entry(t.id.clone())
            .or_default()
            .insert(t.container.clone(), ContainerTarget::Image(t.image.clone()));
    }
    let spec = ReleaseSpec {
        targets: Targets::All,
        excludes: Vec::new(),
        update: Update::PerContainer(per_container),
        containers: Vec::new(),
        force: true,
    };
    // Best of five, each on the files as generated; the edits made and
    // verified in memory, and the files replaced, timed apart too.
    let mut ours = Duration::MAX;
    let mut in_memory = Duration::MAX;
    let mut replacing = Duration::MAX;
    let mut written = Vec::new();
    for _ in 0..5 {
        flux_testkit::generate::write(ours_dir.path(), edits, files, 2).expect("files written");
        let checkout = Checkout::load(&[ours_dir.path()], LoadOptions::default());
        let start = Instant::now();
        let mut transaction = Transaction::new(&checkout);
        let results = release::execute(&mut transaction, &spec);
        let made = start.elapsed();
        written = transaction.write().expect("files written");
        ours = ours.min(start.elapsed());
        in_memory = in_memory.min(made);
        replacing = replacing.min(start.elapsed() - made);
        let made = results
            .iter()
            .filter(|r| r.status == Status::Success)
            .count();
        assert_eq!(made, targets.len(), "every edit is made");
    }
    let ours_lines = collateral(&before, &texts(ours_dir.path()));
    println!(
        "{} image edits in {} files: {:8.1} ms  ({:.0} µs per edit, {} files written, verified; {} lines changed)",
        targets.len(),
        written.len(),
        ms(ours),
        ours.as_secs_f64() * 1e6 / targets.len() as f64,
        written.len(),
        ours_lines
    );
    println!(
        "  of which made and verified in memory {:.1} ms, the files replaced {:.1} ms (best of five each)",
        ms(in_memory),
        ms(replacing)
    );

    if std::env::var_os("FLUX_BENCH_NO_PEERS").is_some() {
        return;
    }
    ruamel_round_trip(peer_dir.path(), &targets, &before, ours);

    // What a CI step would otherwise run: one `sed -i` per edit, unverified
    // (here putting the old tags back).
    let start = Instant::now();
    for t in &targets {
        let edited = flux_manifests::respell(&t.spelling, &t.image);
        let script = format!("s|{edited}|{}|", t.spelling);
        let status = Command::new("sed")
            .arg("-i")
            .arg(script)
            .arg(&t.file)
            .status()
            .expect("sed runs");
        assert!(status.success());
    }
    let sed = start.elapsed();
    println!(
        "same edits, one sed -i each:      {:8.1} ms  (ours {:.3}x)",
        ms(sed),
        ours.as_secs_f64() / sed.as_secs_f64()
    );
}

/// The same edits by ruamel.yaml's round trip of each file, when `python3`
/// can import it; skipped with a message otherwise.
fn ruamel_round_trip(
    dir: &Path,
    ours: &[Target],
    before: &BTreeMap<PathBuf, String>,
    took: Duration,
) {
    let imports = Command::new("python3")
        .args(["-c", "import ruamel.yaml"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !imports {
        println!(
            "ruamel.yaml round trip: skipped, python3 cannot import ruamel.yaml (pip install ruamel.yaml)"
        );
        return;
    }
    let checkout = Checkout::load(&[dir], LoadOptions::default());
    let targets = targets(&checkout);
    assert_eq!(targets.len(), ours.len(), "the same corpus");
    let mut by_file: BTreeMap<&Path, Vec<serde_json::Value>> = BTreeMap::new();
    for t in &targets {
        let steps: Vec<serde_json::Value> = t
            .path
            .0
            .iter()
            .map(|step| match step {
                Step::Key(key) => serde_json::Value::from(key.as_ref()),
                Step::Index(index) => serde_json::Value::from(*index),
            })
            .collect();
        by_file.entry(&t.file).or_default().push(serde_json::json!({
            "doc": t.doc,
            "path": steps,
            "value": flux_manifests::respell(&t.spelling, &t.image),
        }));
    }
    let plan: Vec<serde_json::Value> = by_file
        .into_iter()
        .map(|(file, edits)| serde_json::json!({"file": file, "edits": edits}))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ruamel_round_trip.py");
    let start = Instant::now();
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        let mut stdin = child.stdin.take().expect("a pipe");
        serde_json::to_writer(&mut stdin, &plan).expect("the plan is written");
    }
    let output = child.wait_with_output().expect("python3 finishes");
    let whole = start.elapsed();
    assert!(output.status.success(), "the round trip runs");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the script reports JSON");
    let inside = Duration::from_secs_f64(report["seconds"].as_f64().expect("seconds"));
    let failed = report["failed"].as_array().map_or(0, Vec::len);
    if let Some(first) = report["failed"].get(0) {
        println!("ruamel.yaml could not round-trip {failed} files, the first: {first}");
    }
    // The peer's files have their own paths; compare them by name.
    let renamed: BTreeMap<PathBuf, String> = texts(dir)
        .into_iter()
        .map(|(path, text)| (path.file_name().map(PathBuf::from).unwrap_or(path), text))
        .collect();
    let named: BTreeMap<PathBuf, String> = before
        .iter()
        .map(|(path, text)| {
            let name = path.file_name().map(PathBuf::from).unwrap_or(path.clone());
            (name, text.clone())
        })
        .collect();
    println!(
        "same edits, ruamel.yaml round trip: {:8.1} ms  (ours {:.3}x; {:.1} ms without python's start; {} lines changed)",
        ms(whole),
        took.as_secs_f64() / whole.as_secs_f64(),
        ms(inside),
        collateral(&named, &renamed)
    );
}

/// Every file's text under `dir`.
fn texts(dir: &Path) -> BTreeMap<PathBuf, String> {
    std::fs::read_dir(dir)
        .expect("the folder reads")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("the file reads");
            (path, text)
        })
        .collect()
}

/// How many lines of the files after are not lines of the same file before
/// (each line of before matching at most one after).
fn collateral(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) -> usize {
    after
        .iter()
        .map(|(path, text)| {
            let mut old: HashMap<&str, usize> = HashMap::new();
            for line in before.get(path).map_or("", String::as_str).lines() {
                *old.entry(line).or_default() += 1;
            }
            text.lines()
                .filter(|line| match old.get_mut(line) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .count()
        })
        .sum()
}
