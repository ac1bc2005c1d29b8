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
    /// Folders (or files) of the repo to read, as fluxd's --git-path (comma-separated or
    /// repeated): of the --manifests folder, which is then the repo's root that no path read may
    /// leave, or of the --git-url clone [default: the whole repo].
    #[arg(long = "git-path", value_name = "PATH", value_delimiter = ',')]
    pub git_paths: Vec<PathBuf>,
    /// Manifest files larger than this are refused unread (bytes, or with a KiB, MiB or GiB
    /// suffix).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "4MiB",
        value_parser = flux_manifests::parse_file_size,
        env = "FLUX_MANIFEST_MAX_FILE_SIZE"
    )]
    pub manifest_max_file_size: u64,
}

impl Manifests {
    /// Loads the checkout and reports every load problem on standard error;
    /// returns whether there were any.
    pub fn load(&self) -> (Checkout, bool) {
        let mut options = LoadOptions {
            default_namespace: self.default_namespace.clone(),
            max_file_bytes: self.manifest_max_file_size,
            manifest_generation: self.manifest_generation,
            ..LoadOptions::default()
        };
        let checkout = match (self.paths.as_slice(), self.git_paths.is_empty()) {
            (_, true) => {
                options.root = self.paths.first().and_then(|p| work_tree(p));
                Checkout::load(&self.paths, options)
            }
            ([root], false) => {
                let paths: Vec<PathBuf> = self.git_paths.iter().map(|p| root.join(p)).collect();
                options.root = Some(root.clone());
                Checkout::load(&paths, options)
            }
            _ => {
                eprintln!("fluxctl: --git-path takes one --manifests folder: the repo's root");
                return (Checkout::load::<PathBuf>(&[], options), true);
            }
        };
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
