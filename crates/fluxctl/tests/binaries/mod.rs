//! The binaries under test: `fluxctl` as built for these tests, `fluxd`
//! beside it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `fluxd` built next to `fluxctl` (`cargo test --workspace` builds
/// both; with `-p fluxctl` alone, `cargo build -p fluxd` first).
pub fn fluxd() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_fluxctl")).with_file_name("fluxd");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p fluxd`",
        path.display()
    );
    path
}

/// Runs fluxctl with `args`, free of the caller's FLUX_* variables.
pub fn fluxctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env_remove("FLUX_URL")
        .env_remove("FLUX_TOKEN")
        .env_remove("FLUX_USER")
        .output()
        .expect("fluxctl runs")
}

/// What a run printed on standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a run printed on standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
