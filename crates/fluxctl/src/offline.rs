//! Working on a checkout instead of a daemon: the `--manifests` flags every
//! offline verb shares, and loading with diagnostics on standard error.

use std::path::{Path, PathBuf};

use flux_manifests::{Checkout, LoadOptions, Transaction};

use crate::workload_id::Namespaces;

/// Where the manifests are.
#[derive(Debug, Clone, clap::Args)]
pub struct Manifests {
    /// A folder (or file) of manifests to work on directly, without a daemon; may be repeated.
    /// Without it, the verb asks the daemon at --url.
    #[arg(long = "manifests", value_name = "DIR")]
    pub paths: Vec<PathBuf>,
    /// The namespace of resources that name none, and of workload ids given as `<kind>/<name>`
    /// without --namespace.
    #[arg(
        long,
        value_name = "NS",
        default_value = "default",
        env = "FLUX_DEFAULT_NAMESPACE"
    )]
    pub default_namespace: String,
    /// Run the commands of `.flux.yaml` files to make a path's manifests, as fluxd
    /// --manifest-generation does; off, a `.flux.yaml` is ignored.
    #[arg(long)]
    pub manifest_generation: bool,
}

impl Manifests {
    /// Loads the checkout and reports every load problem on standard error;
    /// returns whether there were any.
    pub fn load(&self) -> (Checkout, bool) {
        let options = LoadOptions {
            default_namespace: self.default_namespace.clone(),
            root: self.paths.first().and_then(|p| work_tree(p)),
            manifest_generation: self.manifest_generation,
            ..LoadOptions::default()
        };
        let checkout = Checkout::load(&self.paths, options);
        for error in &checkout.errors {
            eprintln!("fluxctl: {error}");
        }
        let failed = !checkout.errors.is_empty();
        (checkout, failed)
    }
}

/// The git work tree holding `path`: what a kustomization there may read
/// (an overlay's base is usually beside it, not under it).
fn work_tree(path: &Path) -> Option<PathBuf> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let top = String::from_utf8(output.stdout).ok()?;
    Some(PathBuf::from(top.trim_end_matches('\n')))
}

/// Says which folders kustomize built and which it built them from, so
/// that a base missing from a listing is explained.
pub fn report_builds(checkout: &Checkout) {
    let here = std::env::current_dir().unwrap_or_default();
    let show = |p: &Path| p.strip_prefix(&here).unwrap_or(p).display().to_string();
    for (root, includes) in checkout.builds() {
        let mut line = format!("fluxctl: built {} with kustomize", show(&root));
        if !includes.is_empty() {
            let parts: Vec<String> = includes.iter().map(|p| show(p)).collect();
            line.push_str(&format!(
                " (from {}, not synced on its own)",
                parts.join(", ")
            ));
        }
        eprintln!("{line}");
    }
}

impl Manifests {
    /// Where ids that name no namespace are: `namespace` (a verb's
    /// `--namespace`) when given, else the default namespace.
    pub fn namespaces<'a>(&'a self, namespace: Option<&'a str>) -> Namespaces<'a> {
        Namespaces {
            given: namespace,
            default: &self.default_namespace,
        }
    }
}

/// Output formats of listings (`-o`, also spelled `--output-format` as in Flux v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Text,
    /// JSON.
    Json,
}

/// Writes the transaction's files, naming each on standard error; false
/// when writing failed.
pub fn write(transaction: Transaction<'_>) -> bool {
    match transaction.write() {
        Ok(written) => {
            for path in written {
                eprintln!("fluxctl: wrote {}", path.display());
            }
            true
        }
        Err(error) => {
            eprintln!("fluxctl: writing: {error}");
            false
        }
    }
}
