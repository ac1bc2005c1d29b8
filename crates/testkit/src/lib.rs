//! `flux-testkit`: real parts for tests and benchmarks, never a product feature.
//!
//! It owns what the test suites start and generate: fixtures (the sock-shop
//! manifests, copied so tests may edit them) and git fixtures ([`git`]: seeded
//! bare repositories, an isolated git environment, a real `sshd` on loopback).
//! Later: a real registry launcher, a Kubernetes API server double and
//! fixture generators.
//!
//! ```
//! let dir = flux_testkit::sock_shop_manifests();
//! assert!(dir.join("09-front-end-dep.yaml").exists());
//! ```

pub mod git;

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
pub fn sock_shop_manifests() -> PathBuf {
    workspace_root().join("../shared/fixtures/sock-shop/manifests")
}
