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
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flux_image::ImageRef;

use crate::id::ResourceId;
use crate::policy::PolicyUpdate;
use crate::workload::Workload;
use crate::{Checkout, LoadOptions};

mod config;
mod patch;
mod run;

pub use config::{Command, ConfigKind, Updater};

/// The name of the file that configures generation.
pub const CONFIG_FILE: &str = ".flux.yaml";

/// A `.flux.yaml` larger than this is refused unread: the format holds a
/// few commands.
const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// A patch file larger than this is refused unread: it holds a few lines
/// per workload.
const PATCH_MAX_BYTES: u64 = 16 << 20;

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

/// Which command of a `.flux.yaml` an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A generator.
    Generator,
    /// A `containerImage` updater.
    ImageUpdater,
    /// A `policy` updater.
    PolicyUpdater,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Generator => "generator",
            Role::ImageUpdater => "containerImage updater",
            Role::PolicyUpdater => "policy updater",
        })
    }
}

/// What went wrong finding, reading or running a `.flux.yaml`. Each names
/// the file (and line) the user can act on.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A path that resolves outside the checkout (through `..` or a
    /// symlink); it is not read.
    #[error("{}: {message}", path.display())]
    Outside {
        /// The path as given (or the link).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The `.flux.yaml` is not valid.
    #[error("{}:{line}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The `.flux.yaml` says `scanForFiles`: nothing is generated, the
    /// path's YAML files are read.
    #[error("{}: scanForFiles: the path's YAML files are read, nothing is generated", file.display())]
    ScanForFiles {
        /// The file.
        file: PathBuf,
    },
    /// A command could not be started.
    #[error("{}:{line}: {role} `{command}` could not be started: {source}", file.display())]
    Spawn {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited unsuccessfully.
    #[error("{}:{line}: {role} `{command}` failed ({status}){}", file.display(), stderr_note(.stderr))]
    Failed {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command ran past its timeout and was killed.
    #[error("{}:{line}: {role} `{command}` did not finish in {}s and was killed{}", file.display(), timeout.as_secs_f64(), stderr_note(.stderr))]
    Timeout {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// The timeout.
        timeout: Duration,
        /// The end of its stderr.
        stderr: String,
    },
    /// A command printed more than [`Generation::max_output_bytes`] and was
    /// killed.
    #[error("{}:{line}: {role} `{command}` printed more than {limit} bytes and was killed{}", file.display(), stderr_note(.stderr))]
    TooMuchOutput {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// The command's line in it.
        line: usize,
        /// Which command.
        role: Role,
        /// The command.
        command: String,
        /// The bound.
        limit: usize,
        /// The end of its stderr.
        stderr: String,
    },
    /// The generators' output is not UTF-8 YAML.
    #[error("{}: the generators' output is not YAML: line {line}, column {column} of the output: {message}", file.display())]
    Output {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// 1-based line in the output.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The patch file is not valid, or does not apply.
    #[error("{}:{line}: {message}", path.display())]
    Patch {
        /// The patch file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The update cannot be made with this configuration (no updater of
    /// that kind, no such workload or container in the generated output).
    #[error("{}: {message}", file.display())]
    Refused {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// After the update, the generated workload does not say what was
    /// asked.
    #[error("{}: {message}", file.display())]
    Verify {
        /// The `.flux.yaml`.
        file: PathBuf,
        /// What it says instead, and what was left as it was.
        message: String,
    },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{stderr}")
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

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
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
fn inside(root: &Path, path: &Path, named: &Path) -> Result<PathBuf, GenerateError> {
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
/// The caller loads the text with [`Checkout::from_text`]; this module does
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
            let patch = PatchFile::open(config, &dir, patch_file)?;
            patch.apply(config, &generated, &patch.text, settings)
        }
    }
}

/// The generators' output joined.
fn generated(
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

fn run_command(
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

/// The generated text loaded as a checkout; its objects' locations name
/// the `.flux.yaml`.
fn load(config: &FluxConfig, text: &str, settings: &Generation) -> Checkout {
    Checkout::from_text(&config.file, text, settings.options.clone())
}

/// The workload `id` in `checkout`, which must have `container` when one
/// is named.
fn workload<'c>(
    config: &FluxConfig,
    checkout: &'c Checkout,
    id: &ResourceId,
    container: Option<&str>,
) -> Result<&'c Workload, GenerateError> {
    let refused = |message: String| GenerateError::Refused {
        file: config.file.clone(),
        message,
    };
    let workload = checkout
        .workload(id)
        .ok_or_else(|| refused(format!("the generators make no workload {id}")))?;
    if let Some(container) = container
        && workload.container(container).is_none()
    {
        return Err(refused(format!(
            "the generated workload {id} has no container {container}"
        )));
    }
    Ok(workload)
}

/// Sets the image of one container of the generated workload `id`;
/// returns whether anything changed (false when it already runs `image`).
///
/// `commandUpdated`: runs every `containerImage` updater in order with
/// `FLUX_WORKLOAD`, `FLUX_CONTAINER`, `FLUX_IMG` and `FLUX_TAG`, then
/// generates again and checks the container runs `image`; when it does
/// not, the error says so and the files the updaters changed are as they
/// left them (the caller's checkout is where to undo them). `patchUpdated`:
/// records the image in the patch file (see [`update_policies`]).
pub fn set_image(
    config: &FluxConfig,
    dir: &Path,
    id: &ResourceId,
    container: &str,
    image: &ImageRef,
    settings: &Generation,
) -> Result<bool, GenerateError> {
    let dir = inside(&config.root, dir, dir)?;
    let change = patch::Change::Image(container, image);
    match &config.kind {
        ConfigKind::ScanForFiles => Err(GenerateError::ScanForFiles {
            file: config.file.clone(),
        }),
        ConfigKind::PatchUpdated {
            generators,
            patch_file,
        } => update_patch(config, generators, patch_file, &dir, id, &change, settings),
        ConfigKind::CommandUpdated {
            generators,
            updaters,
        } => {
            let before = generated(config, generators, &dir, settings)?;
            let checkout = load(config, &before, settings);
            let current = workload(config, &checkout, id, Some(container))?;
            let running = &current
                .container(container)
                .expect("the container was checked")
                .image;
            if running == image {
                return Ok(false);
            }
            if running.name() != image.name() {
                return Err(GenerateError::Refused {
                    file: config.file.clone(),
                    message: format!(
                        "container {container} of {id} runs {}, not {}",
                        running.name().familiar(),
                        image.name().familiar()
                    ),
                });
            }
            let Some(tag) = image.tag().filter(|_| image.digest().is_none()) else {
                return Err(GenerateError::Refused {
                    file: config.file.clone(),
                    message: format!(
                        "{image}: containerImage updaters are given a tag (FLUX_TAG), not a digest"
                    ),
                });
            };
            let commands: Vec<&Command> = updaters
                .iter()
                .filter_map(|u| u.container_image.as_ref())
                .collect();
            if commands.is_empty() {
                return Err(GenerateError::Refused {
                    file: config.file.clone(),
                    message: "no containerImage updater to set an image with".into(),
                });
            }
            let mut env = workload_env(id);
            env.push(("FLUX_CONTAINER", container.to_string()));
            env.push(("FLUX_IMG", image.name().familiar()));
            env.push(("FLUX_TAG", tag.to_string()));
            for command in commands {
                run_command(config, command, Role::ImageUpdater, &dir, &env, settings)?;
            }
            let after = generated(config, generators, &dir, settings)?;
            let checkout = load(config, &after, settings);
            check(&checkout, id, &change).map_err(|message| GenerateError::Verify {
                file: config.file.clone(),
                message: format!(
                    "{message} after the containerImage updaters ran; the files they changed are left as they are"
                ),
            })?;
            Ok(true)
        }
    }
}

/// Applies a policy update to the generated workload `id`; returns whether
/// anything changed (false when every policy already reads as asked).
///
/// `commandUpdated`: runs every `policy` updater once per policy that
/// changes, with `FLUX_WORKLOAD`, `FLUX_POLICY` and, unless the policy is
/// removed, `FLUX_POLICY_VALUE`; then generates again and checks, as
/// [`set_image`] does. `patchUpdated`: edits the workload's document of the
/// patch file byte-exactly (as [`Checkout::update_policies`] edits a
/// manifest), or appends one for it; when that document cannot take the
/// change in place (it has no entry for the container, say) it is written
/// anew. The file is written atomically, the manifests are generated again,
/// and when the workload does not then say what was asked the patch file
/// is put back as it was and the error says so. Removing a policy that the
/// generators themselves set writes it as `null` in the patch.
pub fn update_policies(
    config: &FluxConfig,
    dir: &Path,
    id: &ResourceId,
    update: &PolicyUpdate,
    settings: &Generation,
) -> Result<bool, GenerateError> {
    let dir = inside(&config.root, dir, dir)?;
    let change = patch::Change::Policies(update);
    match &config.kind {
        ConfigKind::ScanForFiles => Err(GenerateError::ScanForFiles {
            file: config.file.clone(),
        }),
        ConfigKind::PatchUpdated {
            generators,
            patch_file,
        } => update_patch(config, generators, patch_file, &dir, id, &change, settings),
        ConfigKind::CommandUpdated {
            generators,
            updaters,
        } => {
            let before = generated(config, generators, &dir, settings)?;
            let checkout = load(config, &before, settings);
            let current = workload(config, &checkout, id, None)?;
            check_tag_containers(config, current, update)?;
            let changes = policy_changes(current, update);
            if changes.is_empty() {
                return Ok(false);
            }
            let commands: Vec<&Command> =
                updaters.iter().filter_map(|u| u.policy.as_ref()).collect();
            if commands.is_empty() {
                return Err(GenerateError::Refused {
                    file: config.file.clone(),
                    message: "no policy updater to change policies with".into(),
                });
            }
            for (policy, value) in changes {
                let mut env = workload_env(id);
                env.push(("FLUX_POLICY", policy));
                // v1: an unset (or empty) value means "remove the policy".
                if let Some(value) = value.filter(|v| !v.is_empty()) {
                    env.push(("FLUX_POLICY_VALUE", value));
                }
                for command in &commands {
                    run_command(config, command, Role::PolicyUpdater, &dir, &env, settings)?;
                }
            }
            let after = generated(config, generators, &dir, settings)?;
            let checkout = load(config, &after, settings);
            check(&checkout, id, &change).map_err(|message| GenerateError::Verify {
                file: config.file.clone(),
                message: format!(
                    "{message} after the policy updaters ran; the files they changed are left as they are"
                ),
            })?;
            Ok(true)
        }
    }
}

/// `FLUX_WORKLOAD` and its parts.
fn workload_env(id: &ResourceId) -> Vec<(&'static str, String)> {
    vec![
        ("FLUX_WORKLOAD", id.to_string()),
        ("FLUX_WL_NS", id.namespace().to_string()),
        ("FLUX_WL_KIND", id.kind().to_string()),
        ("FLUX_WL_NAME", id.name().to_string()),
    ]
}

fn check_tag_containers(
    config: &FluxConfig,
    workload: &Workload,
    update: &PolicyUpdate,
) -> Result<(), GenerateError> {
    let keys = update.add.iter().map(|(k, _)| k).chain(&update.remove);
    for key in keys {
        if let crate::PolicyKey::Tag(container) = key
            && workload.container(container).is_none()
        {
            return Err(GenerateError::Refused {
                file: config.file.clone(),
                message: format!(
                    "the generated workload {} has no container {container}",
                    workload.id
                ),
            });
        }
    }
    Ok(())
}

/// The policies `update` changes on `workload`: `FLUX_POLICY` and the new
/// value (`None` to remove), removals first.
fn policy_changes(workload: &Workload, update: &PolicyUpdate) -> Vec<(String, Option<String>)> {
    let value_of = |key: &crate::PolicyKey| {
        let spellings = key.annotations();
        workload
            .annotations
            .iter()
            .find(|(k, _)| spellings.contains(k))
            .map(|(_, v)| v.clone())
    };
    let removed = update
        .remove
        .iter()
        .filter(|key| value_of(key).is_some())
        .map(|key| (key.suffix(), None));
    let added = update
        .add
        .iter()
        .filter(|(key, value)| value_of(key).as_ref() != Some(value))
        .map(|(key, value)| (key.suffix(), Some(value.clone())));
    removed.chain(added).collect()
}

/// Whether the workload `id` in `checkout` says what `change` asked; the
/// message says what it says instead.
fn check(checkout: &Checkout, id: &ResourceId, change: &patch::Change<'_>) -> Result<(), String> {
    let Some(workload) = checkout.workload(id) else {
        return Err(format!("the generators no longer make {id}"));
    };
    match change {
        patch::Change::Image(container, image) => match workload.container(container) {
            Some(c) if c.image == **image => Ok(()),
            Some(c) => Err(format!(
                "container {container} of {id} still runs {}, not {}",
                c.image.familiar(),
                image.familiar()
            )),
            None => Err(format!("{id} no longer has a container {container}")),
        },
        patch::Change::Policies(update) => {
            let leftover = policy_changes(workload, update);
            match leftover.first() {
                None => Ok(()),
                Some((policy, Some(value))) => Err(format!(
                    "{id} does not read {}{policy}: {value:?}",
                    crate::policy::PREFIX
                )),
                Some((policy, None)) => {
                    Err(format!("{id} still has {}{policy}", crate::policy::PREFIX))
                }
            }
        }
    }
}

/// A `patchUpdated` patch file and its current text.
struct PatchFile {
    path: PathBuf,
    /// Its text; empty when it does not exist yet.
    text: String,
    exists: bool,
}

impl PatchFile {
    /// The patch file named by `relative` from the `--git-path` folder
    /// `dir`; it may not exist yet, but its folder must.
    fn open(config: &FluxConfig, dir: &Path, relative: &Path) -> Result<PatchFile, GenerateError> {
        let path = normalized(&dir.join(relative));
        let folder = path.parent().unwrap_or(dir);
        let folder = inside(&config.root, folder, folder).map_err(|e| match e {
            GenerateError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                GenerateError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("the folder of the patchFile does not exist"),
                }
            }
            other => other,
        })?;
        let path = folder.join(path.file_name().unwrap_or_default());
        if path.symlink_metadata().is_err() {
            return Ok(PatchFile {
                path,
                text: String::new(),
                exists: false,
            });
        }
        let resolved = inside(&config.root, &path, &path)?;
        let text =
            read_bounded(&resolved, PATCH_MAX_BYTES).map_err(|source| GenerateError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(PatchFile {
            path,
            text,
            exists: true,
        })
    }

    /// `generated` with the patch `text` applied.
    fn apply(
        &self,
        config: &FluxConfig,
        generated: &str,
        text: &str,
        settings: &Generation,
    ) -> Result<String, GenerateError> {
        let docs = patch::read(&self.path, text, &settings.options)?;
        patch::apply(
            generated,
            &config.file,
            &self.path,
            &docs,
            &settings.options,
        )
    }

    /// Writes `text` (atomically), or, for `None`, puts back what was
    /// there before (removing a file that did not exist).
    fn write(&self, text: Option<&str>) -> Result<(), GenerateError> {
        let io = |source| GenerateError::Io {
            path: self.path.clone(),
            source,
        };
        match text {
            Some(text) => crate::write::atomically(&self.path, text.as_bytes()).map_err(io),
            None if self.exists => {
                crate::write::atomically(&self.path, self.text.as_bytes()).map_err(io)
            }
            None => std::fs::remove_file(&self.path).map_err(io),
        }
    }
}

/// `path` with `.` and `a/..` folded, lexically (symlinks are checked
/// after, by resolving).
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Records `change` of `id` in the patch file, checked by generating again.
fn update_patch(
    config: &FluxConfig,
    generators: &[Command],
    patch_file: &Path,
    dir: &Path,
    id: &ResourceId,
    change: &patch::Change<'_>,
    settings: &Generation,
) -> Result<bool, GenerateError> {
    let generated = generated(config, generators, dir, settings)?;
    let file = PatchFile::open(config, dir, patch_file)?;
    let patched = file.apply(config, &generated, &file.text, settings)?;
    let patched_checkout = load(config, &patched, settings);
    let container = match change {
        patch::Change::Image(container, _) => Some(*container),
        patch::Change::Policies(_) => None,
    };
    let current = workload(config, &patched_checkout, id, container)?;
    if let patch::Change::Policies(update) = change {
        check_tag_containers(config, current, update)?;
    }
    if check(&patched_checkout, id, change).is_ok() {
        return Ok(false);
    }
    if let patch::Change::Image(container, image) = change {
        let running = &current
            .container(container)
            .expect("the container was checked")
            .image;
        if running.name() != image.name() {
            return Err(GenerateError::Refused {
                file: config.file.clone(),
                message: format!(
                    "container {container} of {id} runs {}, not {}",
                    running.name().familiar(),
                    image.name().familiar()
                ),
            });
        }
    }
    let unpatched_checkout = load(config, &generated, settings);
    let unpatched = workload(config, &unpatched_checkout, id, container)?;
    let text = edited_patch(
        config, &file, &generated, current, unpatched, id, change, settings,
    )?;
    file.write(Some(&text))?;
    // Generate again: the generators may read the patch file themselves
    // (a kustomization listing it, say), and what is checked is what a
    // sync would apply.
    let checked = generate(config, dir, settings).and_then(|after| {
        let checkout = load(config, &after, settings);
        check(&checkout, id, change).map_err(|message| GenerateError::Verify {
            file: config.file.clone(),
            message: format!(
                "{message} once the patch is recorded; {} is left as it was",
                file.path.display()
            ),
        })
    });
    if let Err(error) = checked {
        file.write(None)?;
        return Err(error);
    }
    Ok(true)
}

/// The patch file's text with `change` recorded for `id`: edited in place
/// when the workload's document can take it, else that document written
/// anew (or appended, when there is none).
#[allow(clippy::too_many_arguments)]
fn edited_patch(
    config: &FluxConfig,
    file: &PatchFile,
    generated: &str,
    patched: &Workload,
    unpatched: &Workload,
    id: &ResourceId,
    change: &patch::Change<'_>,
    settings: &Generation,
) -> Result<String, GenerateError> {
    let holds = |text: &str| {
        let after = file.apply(config, generated, text, settings).ok()?;
        let checkout = load(config, &after, settings);
        check(&checkout, id, change).ok()
    };
    let docs = patch::read(&file.path, &file.text, &settings.options)?;
    let existing = docs.iter().find(|d| &d.id == id);
    let patch_checkout = Checkout::from_text(&file.path, &file.text, settings.options.clone());
    if existing.is_some() {
        let in_place = match change {
            patch::Change::Image(container, image) => {
                patch_checkout.set_image(&file.text, id, container, image)
            }
            patch::Change::Policies(update) => {
                patch_checkout.update_policies(&file.text, id, update)
            }
        };
        if let Ok(text) = in_place
            && holds(&text).is_some()
        {
            return Ok(text);
        }
    }
    let generated_checkout = load(config, generated, settings);
    let resource = generated_checkout
        .resources
        .iter()
        .find(|r| &r.id == id)
        .expect("a generated workload is a generated resource");
    let doc = patch::changed_doc(existing, patched, unpatched, resource, change);
    let rendered = patch::render(&doc, patched.kind);
    let bytes = existing.and_then(|_| {
        patch_checkout
            .resources
            .iter()
            .find(|r| &r.id == id)
            .map(|r| r.location.bytes.clone())
    });
    let text = patch::splice(&file.text, bytes, &rendered);
    if holds(&text).is_none() {
        return Err(GenerateError::Verify {
            file: config.file.clone(),
            message: format!(
                "the patch for {id} would not apply as asked; {} is left as it was",
                file.path.display()
            ),
        });
    }
    Ok(text)
}
