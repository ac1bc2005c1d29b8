//! Manifest generation as Flux v1 did it: a `.flux.yaml` file in (or above)
//! a `--git-path` folder says which commands make that path's manifests,
//! and how updates of images and policies are recorded.
//!
//! This module owns:
//!
//! - reading `.flux.yaml` version 1 ([`ConfigKind`]): `scanForFiles: {}`,
//!   `commandUpdated` (generators and updaters) and `patchUpdated`
//!   (generators and a patch file); a mistake is an error naming the file
//!   and line;
//! - finding the `.flux.yaml` that applies to a `--git-path` folder
//!   ([`find`]): the one in the folder or the nearest above it, up to the
//!   checkout's root and never above;
//! - running the commands ([`generate`]) with `sh -c`, in the `--git-path`
//!   folder, with a timeout, bounded output and an empty environment but
//!   the variables documented below;
//! - recording updates ([`set_image`], [`update_policies`]): by running the
//!   updaters (`commandUpdated`) or by editing the patch file byte-exactly
//!   (`patchUpdated`), and checking, by generating again, that the workload
//!   now says what was asked.
//!
//! Deciding whether generation is enabled, and loading the generated text
//! as the path's manifests ([`crate::Checkout::from_text`]), are the
//! caller's.
//!
//! # The environment of commands
//!
//! Every command gets only:
//!
//! - `PATH`: [`Generation::path`], fluxd's own `PATH` by default;
//! - `HOME`: a new empty temporary folder, removed after the command; so
//!   nothing fluxd keeps under its own home (kube config, registry
//!   credentials, SSH keys) is the command's;
//! - for updaters, Flux v1's variables: `FLUX_WORKLOAD` (the workload's id,
//!   `<namespace>:<kind>/<name>`) and its parts `FLUX_WL_NS`,
//!   `FLUX_WL_KIND`, `FLUX_WL_NAME`; for `containerImage` updaters
//!   `FLUX_CONTAINER`, `FLUX_IMG` (the repository, as in `nginx` or
//!   `quay.io/org/app`) and `FLUX_TAG`; for `policy` updaters `FLUX_POLICY`
//!   (the annotation without its `fluxcd.io/` prefix: `automated`,
//!   `locked`, `tag.<container>`, …) and `FLUX_POLICY_VALUE`, which is unset
//!   when the policy is to be removed.
//!
//! Nothing else of fluxd's environment reaches a command: not the API
//! token, the deploy key's path, nor a `KUBERNETES_*` variable.
//!
//! # Example
//!
//! ```
//! use flux_manifests::generate::{self, ConfigKind, Generation};
//!
//! let repo = tempfile::tempdir()?;
//! std::fs::create_dir(repo.path().join("staging"))?;
//! std::fs::write(
//!     repo.path().join(".flux.yaml"),
//!     "version: 1\ncommandUpdated:\n  generators:\n  - command: cat *.yaml\n",
//! )?;
//! std::fs::write(
//!     repo.path().join("staging/web.yaml"),
//!     "kind: Deployment\nmetadata:\n  name: web\n",
//! )?;
//!
//! // The .flux.yaml above the --git-path folder `staging` applies to it...
//! let staging = repo.path().join("staging");
//! let config = generate::find(repo.path(), &staging)?.expect("a .flux.yaml above staging");
//! assert!(matches!(config.kind, ConfigKind::CommandUpdated { .. }));
//!
//! // ...and its generators run in that folder.
//! let manifests = generate::generate(&config, &staging, &Generation::default())?;
//! assert_eq!(manifests, "---\nkind: Deployment\nmetadata:\n  name: web\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::LoadOptions;

mod config;
mod error;
mod patch;
mod run;
mod update;

pub use config::{Command, ConfigKind, Updater};
pub use error::{GenerateError, Role};
pub use update::{set_image, update_policies};

/// The name of the file that configures generation.
pub const CONFIG_FILE: &str = ".flux.yaml";

/// A `.flux.yaml` larger than this is refused unread: the format holds a
/// few commands.
const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// A patch file larger than this is refused unread: it holds a few lines
/// per workload.
pub(super) const PATCH_MAX_BYTES: u64 = 16 << 20;

/// A `.flux.yaml` found for a `--git-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxConfig {
    /// The `.flux.yaml` file (in the `--git-path` folder or above it).
    pub file: PathBuf,
    /// The checkout's root: no file the configuration names is read or
    /// written outside it.
    pub root: PathBuf,
    /// What it says.
    pub kind: ConfigKind,
}

/// How commands are run.
#[derive(Debug, Clone)]
pub struct Generation {
    /// How long one command may run (a command's own `timeout:` overrides
    /// it). Flux v1's default, and this one: a minute.
    pub timeout: Duration,
    /// The most a command may print on stdout; past it, it is killed and
    /// the generation fails.
    pub max_output_bytes: usize,
    /// How much of the end of a failed command's stderr its error shows.
    pub max_stderr_bytes: usize,
    /// The `PATH` commands get.
    pub path: OsString,
    /// How ids of generated objects are made.
    pub options: LoadOptions,
}

impl Default for Generation {
    /// A minute per command, 64 MiB of output, the last 4 KiB of stderr,
    /// and this process's `PATH`.
    fn default() -> Generation {
        Generation {
            timeout: Duration::from_secs(60),
            max_output_bytes: 64 << 20,
            max_stderr_bytes: 4 << 10,
            path: std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            options: LoadOptions::default(),
        }
    }
}

/// The `.flux.yaml` that applies to the `--git-path` `path` (a folder, or
/// a `.flux.yaml` file itself), relative to `checkout_root` or absolute
/// inside it: the one in `path` or the nearest above it, looking no higher
/// than `checkout_root`. `None` when there is none (the path's YAML files
/// are read) — and, as in Flux v1, when `path` is a file other than a
/// `.flux.yaml`. A `.flux.yaml` in a folder below `path` does not apply
/// to it.
///
/// `path` and the file found must resolve inside the root; a symlink
/// leaving it is refused, naming the link.
pub fn find(checkout_root: &Path, path: &Path) -> Result<Option<FluxConfig>, GenerateError> {
    let root = canonical(checkout_root)?;
    let target = inside(&root, &checkout_root.join(path), path)?;
    if target.is_file() {
        if target.file_name().is_some_and(|n| n == CONFIG_FILE) {
            return read_config(&root, &target, &target).map(Some);
        }
        return Ok(None);
    }
    let mut dir = target.as_path();
    loop {
        let candidate = dir.join(CONFIG_FILE);
        if candidate.symlink_metadata().is_ok() {
            let file = inside(&root, &candidate, &candidate)?;
            return read_config(&root, &candidate, &file).map(Some);
        }
        if dir == root {
            return Ok(None);
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return Ok(None),
        }
    }
}

/// Reads the `.flux.yaml` at `named` (resolved as `file`).
fn read_config(root: &Path, named: &Path, file: &Path) -> Result<FluxConfig, GenerateError> {
    let text = read_bounded(file, CONFIG_MAX_BYTES).map_err(|source| GenerateError::Io {
        path: named.to_path_buf(),
        source,
    })?;
    let kind = config::parse(named, &text)?;
    Ok(FluxConfig {
        file: named.to_path_buf(),
        root: root.to_path_buf(),
        kind,
    })
}

pub(super) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::other(format!("not UTF-8: {e}")))
}

fn canonical(path: &Path) -> Result<PathBuf, GenerateError> {
    path.canonicalize().map_err(|source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `path` resolved, when that is inside `root` (canonical); `named` is how
/// errors name it.
pub(super) fn inside(root: &Path, path: &Path, named: &Path) -> Result<PathBuf, GenerateError> {
    let resolved = canonical(path)?;
    if !resolved.starts_with(root) {
        return Err(GenerateError::Outside {
            path: named.to_path_buf(),
            message: format!("resolves outside the checkout {}; refused", root.display()),
        });
    }
    Ok(resolved)
}

/// The manifests `config` makes for the `--git-path` folder `dir`: every
/// generator's stdout, in order, each document stream after a `---` line
/// (as Flux v1 joined them); for `patchUpdated`, with the patch file
/// applied. The first generator that fails fails the whole path.
///
/// The caller loads the text with [`Checkout::from_text`](crate::Checkout::from_text); this module does
/// so with `config.file` as the path, so that the objects' locations (and
/// errors about them) name the `.flux.yaml` they came from.
///
/// A patch for a workload the generators no longer make is an error naming
/// the patch's line (as in Flux v1): the patch must be removed by hand,
/// rather than an image or policy fluxd recorded being silently dropped.
pub fn generate(
    config: &FluxConfig,
    dir: &Path,
    settings: &Generation,
) -> Result<String, GenerateError> {
    let dir = inside(&config.root, dir, dir)?;
    match &config.kind {
        ConfigKind::ScanForFiles => Err(GenerateError::ScanForFiles {
            file: config.file.clone(),
        }),
        ConfigKind::CommandUpdated { generators, .. } => {
            generated(config, generators, &dir, settings)
        }
        ConfigKind::PatchUpdated {
            generators,
            patch_file,
        } => {
            let generated = generated(config, generators, &dir, settings)?;
            let patch = update::PatchFile::open(config, &dir, patch_file)?;
            patch.apply(config, &generated, &patch.text, settings)
        }
    }
}

/// The generators' output joined.
pub(super) fn generated(
    config: &FluxConfig,
    generators: &[Command],
    dir: &Path,
    settings: &Generation,
) -> Result<String, GenerateError> {
    let mut out = String::new();
    for generator in generators {
        let stdout = run_command(config, generator, Role::Generator, dir, &[], settings)?;
        let text = String::from_utf8(stdout).map_err(|e| GenerateError::Output {
            file: config.file.clone(),
            line: 1,
            column: 1,
            message: format!("generator `{}` printed {e}", generator.command),
        })?;
        out.push_str(if out.is_empty() || out.ends_with('\n') {
            "---\n"
        } else {
            "\n---\n"
        });
        out.push_str(&text);
    }
    if let Err(e) = crate::yaml::Stream::parse(&out) {
        return Err(GenerateError::Output {
            file: config.file.clone(),
            line: e.line,
            column: e.column,
            message: e.message,
        });
    }
    Ok(out)
}

pub(super) fn run_command(
    config: &FluxConfig,
    command: &Command,
    role: Role,
    dir: &Path,
    env: &[(&str, String)],
    settings: &Generation,
) -> Result<Vec<u8>, GenerateError> {
    let timeout = command.timeout.unwrap_or(settings.timeout);
    let file = config.file.clone();
    let line = command.line;
    let text = command.command.clone();
    run::run(&command.command, timeout, dir, env, settings).map_err(|failure| match failure {
        run::Failure::Spawn(source) => GenerateError::Spawn {
            file,
            line,
            role,
            command: text,
            source,
        },
        run::Failure::Exit { status, stderr } => GenerateError::Failed {
            file,
            line,
            role,
            command: text,
            status,
            stderr,
        },
        run::Failure::Timeout { timeout, stderr } => GenerateError::Timeout {
            file,
            line,
            role,
            command: text,
            timeout,
            stderr,
        },
        run::Failure::TooMuchOutput { limit, stderr } => GenerateError::TooMuchOutput {
            file,
            line,
            role,
            command: text,
            limit,
            stderr,
        },
    })
}
