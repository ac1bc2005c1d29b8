//! `flux-testkit`: real parts for tests and benchmarks, never a product feature.
//!
//! It owns what the test suites start and generate: fixtures (the sock-shop
//! manifests, copied so tests may edit them) and the Kubernetes API server double
//! ([`kube::ApiServer`]), and generated manifests for benchmarks ([`generate`]).
//! Later: a real registry launcher and git fixtures.
//!
//! ```
//! let dir = flux_testkit::sock_shop_manifests();
//! assert!(dir.join("09-front-end-dep.yaml").exists());
//! ```

use std::path::{Path, PathBuf};

/// The project's root folder (holds the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the workspace root")
        .to_path_buf()
}

/// The shared sock-shop manifests folder (read-only: copy before editing).
///
/// `shared/` sits beside the project root; a git worktree one level deeper finds it
/// one level further up.
pub fn sock_shop_manifests() -> PathBuf {
    let root = workspace_root();
    let beside = root.join("../shared/fixtures/sock-shop/manifests");
    if beside.exists() {
        return beside;
    }
    let above = root.join("../../shared/fixtures/sock-shop/manifests");
    if above.exists() { above } else { beside }
}

pub mod generate;
pub mod kube;
