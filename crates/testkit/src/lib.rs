//! `flux-testkit`: real parts for tests and benchmarks, never a product feature.
//!
//! It owns what the test suites start and generate: fixtures (the sock-shop
//! manifests, copied so tests may edit them), generated manifests ([`generate`]),
//! git fixtures ([`git`]: seeded bare repositories, an isolated git environment,
//! a real `sshd` on loopback, `git http-backend` behind Basic auth), a real OCI registry ([`registry::Registry`]) with
//! synthetic images pushed through its API (over TLS with certificates of a
//! test CA, [`tls::TestCa`]), loopback relays and a `CONNECT` proxy
//! ([`relay`]), registry hosts that hang or refuse ([`unreachable`]), and
//! the Kubernetes API server double
//! ([`kube::ApiServer`]), and a running `fluxd` on a seeded repo ([`daemon::Fluxd`]).
//!
//! ```
//! let dir = flux_testkit::sock_shop_manifests();
//! assert!(dir.join("09-front-end-dep.yaml").exists());
//! ```

pub mod daemon;
pub mod generate;
pub mod git;
mod git_http;
pub mod kube;
pub mod registry;
pub mod relay;
pub mod tls;
pub mod unreachable;

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
    shared_fixtures().join("sock-shop/manifests")
}

/// The shared fixtures folder: `shared/fixtures` beside the project (or
/// beside one of its parent folders, for worktrees kept deeper).
pub fn shared_fixtures() -> PathBuf {
    let root = workspace_root();
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/fixtures"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join("../shared/fixtures"))
}

/// A temporary copy of the sock-shop manifests that a test may edit.
pub fn sock_shop_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder can be made");
    copy_dir(&sock_shop_manifests(), dir.path()).expect("the fixtures can be copied");
    dir
}

/// Copies the files of `from` (recursively) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
