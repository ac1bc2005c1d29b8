//! Loading a repo of kustomize overlays: fresh `kubectl kustomize` of
//! every overlay (what a script or a tool without a build cache runs) next
//! to `Checkout::load` with fluxd's build cache after one file changed.
//! Prints figures; asserts nothing about time.
//!
//! `cargo bench -p flux-manifests --bench kustomize` (defaults: 20 bases,
//! 5 overlays each; `FLUX_BENCH_BASES`, `FLUX_BENCH_OVERLAYS`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_manifests::{BuildCache, Checkout, LoadOptions};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
}

fn main() {
    let bases = setting("FLUX_BENCH_BASES", 20);
    let per_base = setting("FLUX_BENCH_OVERLAYS", 5);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    let mut overlays = Vec::new();
    for b in 0..bases {
        let base = root.join(format!("bases/app-{b}"));
        write(
            &base.join("deployment.yaml"),
            &deployment(&format!("app-{b}"), &format!("example.com/app-{b}:1.0.0")),
        );
        write(
            &base.join("service.yaml"),
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{b}\nspec:\n  ports:\n  - port: 80\n"
            ),
        );
        write(
            &base.join("kustomization.yaml"),
            "resources:\n- deployment.yaml\n- service.yaml\n",
        );
        for o in 0..per_base {
            let overlay = root.join(format!("overlays/env-{o}/app-{b}"));
            write(
                &overlay.join("kustomization.yaml"),
                &format!(
                    "namespace: env-{o}\nresources:\n- ../../../bases/app-{b}\npatches:\n- path: replicas.yaml\nimages:\n- name: example.com/app-{b}\n  newTag: 1.{o}.0\n"
                ),
            );
            write(
                &overlay.join("replicas.yaml"),
                &format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{b}\nspec:\n  replicas: {}\n",
                    o + 1
                ),
            );
            overlays.push(overlay);
        }
    }
    println!("corpus: {} overlays over {bases} bases", overlays.len());

    let fresh = timed(|| {
        for overlay in &overlays {
            let status = Command::new("kubectl")
                .arg("kustomize")
                .arg(overlay)
                .stdout(Stdio::null())
                .status()
                .expect("kubectl runs");
            assert!(status.success());
        }
    });
    println!(
        "kubectl kustomize of every overlay, one after another: {:.0} ms",
        ms(fresh)
    );

    let cache = Arc::new(BuildCache::default());
    let options = LoadOptions {
        root: Some(root.to_path_buf()),
        builds: Some(cache.clone()),
        ..LoadOptions::default()
    };
    let mut checkout = None;
    let cold = timed(|| checkout = Some(Checkout::load(&[root], options.clone())));
    let checkout = checkout.expect("loaded");
    assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
    assert_eq!(checkout.workloads.len(), overlays.len());
    println!(
        "Checkout::load, cold ({} builds, {} at a time): {:.0} ms",
        cache.runs(),
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8),
        ms(cold)
    );
    let unchanged = timed(|| drop(Checkout::load(&[root], options.clone())));
    println!(
        "Checkout::load, nothing changed ({} builds): {:.1} ms",
        cache.runs() - overlays.len(),
        ms(unchanged)
    );

    let runs = cache.runs();
    write(
        &overlays[0].join("replicas.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-0\nspec:\n  replicas: 9\n",
    );
    let one_overlay = timed(|| drop(Checkout::load(&[root], options.clone())));
    println!(
        "Checkout::load after one overlay file changed ({} build): {:.0} ms",
        cache.runs() - runs,
        ms(one_overlay)
    );
    let runs = cache.runs();
    write(
        &root.join("bases/app-1/service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-1\nspec:\n  ports:\n  - port: 8080\n",
    );
    let one_base = timed(|| drop(Checkout::load(&[root], options.clone())));
    println!(
        "Checkout::load after one base file changed ({} builds): {:.0} ms",
        cache.runs() - runs,
        ms(one_base)
    );
    println!(
        "ratios to the fresh builds: one overlay changed {:.3}x, one base changed {:.3}x, nothing changed {:.4}x, cold {:.2}x",
        one_overlay.as_secs_f64() / fresh.as_secs_f64(),
        one_base.as_secs_f64() / fresh.as_secs_f64(),
        unchanged.as_secs_f64() / fresh.as_secs_f64(),
        cold.as_secs_f64() / fresh.as_secs_f64()
    );
}
