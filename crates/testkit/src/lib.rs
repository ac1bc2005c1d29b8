//! `flux-testkit`: real parts for tests and benchmarks, never a product feature.
//!
//! It owns what the test suites start and generate: fixtures (the sock-shop
//! manifests, copied so tests may edit them) and a real OCI registry
//! ([`registry::Registry`]) with synthetic images pushed through its API.
//! Later: git fixtures and a Kubernetes API server double.
//!
//! ```
//! let dir = flux_testkit::sock_shop_manifests();
//! assert!(dir.join("09-front-end-dep.yaml").exists());
//! ```

pub mod registry;

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
/// The `shared` folder sits beside the checkout, or beside a folder of
/// worktrees that holds it: the nearest ancestor that has it wins.
pub fn sock_shop_manifests() -> PathBuf {
    let relative = Path::new("shared/fixtures/sock-shop/manifests");
    let root = workspace_root();
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.is_dir())
        .unwrap_or_else(|| root.join("..").join(relative))
}
