//! Recording updates: by the updaters of `commandUpdated`, or in the patch
//! file of `patchUpdated`; either way checked by generating again.

use std::path::{Component, Path, PathBuf};

use flux_image::ImageRef;

use super::{
    Command, ConfigKind, FluxConfig, GenerateError, Generation, PATCH_MAX_BYTES, Role, Updater,
    generate, generated, inside, patch, read_bounded, run_command,
};
use crate::Checkout;
use crate::id::ResourceId;
use crate::policy::PolicyUpdate;
use crate::workload::{Workload, WorkloadKind};

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
    let scope = Scope::new(config, dir, settings)?;
    let change = patch::Change::Image(container, image);
    match &config.kind {
        ConfigKind::ScanForFiles => Err(scope.scan_for_files()),
        ConfigKind::PatchUpdated {
            generators,
            patch_file,
        } => update_patch(&scope, generators, patch_file, id, &change),
        ConfigKind::CommandUpdated {
            generators,
            updaters,
        } => run_image_updaters(&scope, generators, updaters, id, container, image),
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
    let scope = Scope::new(config, dir, settings)?;
    let change = patch::Change::Policies(update);
    match &config.kind {
        ConfigKind::ScanForFiles => Err(scope.scan_for_files()),
        ConfigKind::PatchUpdated {
            generators,
            patch_file,
        } => update_patch(&scope, generators, patch_file, id, &change),
        ConfigKind::CommandUpdated {
            generators,
            updaters,
        } => run_policy_updaters(&scope, generators, updaters, id, update),
    }
}

/// What every update works in: the configuration, the `--git-path`
/// folder (resolved inside the checkout) and the settings.
struct Scope<'a> {
    config: &'a FluxConfig,
    dir: PathBuf,
    settings: &'a Generation,
}

impl<'a> Scope<'a> {
    fn new(
        config: &'a FluxConfig,
        dir: &Path,
        settings: &'a Generation,
    ) -> Result<Scope<'a>, GenerateError> {
        Ok(Scope {
            config,
            dir: inside(&config.root, dir, dir)?,
            settings,
        })
    }

    fn scan_for_files(&self) -> GenerateError {
        GenerateError::ScanForFiles {
            file: self.config.file.clone(),
        }
    }

    fn refused(&self, message: String) -> GenerateError {
        GenerateError::Refused {
            file: self.config.file.clone(),
            message,
        }
    }

    /// The generators' output, loaded.
    fn generate(&self, generators: &[Command]) -> Result<(String, Checkout), GenerateError> {
        let text = generated(self.config, generators, &self.dir, self.settings)?;
        let checkout = load(self.config, &text, self.settings);
        Ok((text, checkout))
    }

    fn run(
        &self,
        command: &Command,
        role: Role,
        env: &[(&str, String)],
    ) -> Result<(), GenerateError> {
        run_command(self.config, command, role, &self.dir, env, self.settings).map(drop)
    }

    /// Generates again after the updaters ran, and checks `change` holds.
    fn check_updaters(
        &self,
        generators: &[Command],
        id: &ResourceId,
        change: &patch::Change<'_>,
        updaters: &str,
    ) -> Result<(), GenerateError> {
        let (_, checkout) = self.generate(generators)?;
        check(&checkout, id, change).map_err(|message| GenerateError::Verify {
            file: self.config.file.clone(),
            message: format!(
                "{message} after the {updaters} updaters ran; the files they changed are left as they are"
            ),
        })
    }
}

fn run_image_updaters(
    scope: &Scope<'_>,
    generators: &[Command],
    updaters: &[Updater],
    id: &ResourceId,
    container: &str,
    image: &ImageRef,
) -> Result<bool, GenerateError> {
    let (_, checkout) = scope.generate(generators)?;
    let current = workload(scope.config, &checkout, id, Some(container))?;
    let running = &current
        .container(container)
        .expect("the container was checked")
        .image;
    if running == image {
        return Ok(false);
    }
    same_repository(scope, id, container, running, image)?;
    let Some(tag) = image.tag().filter(|_| image.digest().is_none()) else {
        return Err(scope.refused(format!(
            "{image}: containerImage updaters are given a tag (FLUX_TAG), not a digest"
        )));
    };
    let commands: Vec<&Command> = updaters
        .iter()
        .filter_map(|u| u.container_image.as_ref())
        .collect();
    if commands.is_empty() {
        return Err(scope.refused("no containerImage updater to set an image with".into()));
    }
    let mut env = workload_env(id);
    env.push(("FLUX_CONTAINER", container.to_string()));
    env.push(("FLUX_IMG", image.name().familiar()));
    env.push(("FLUX_TAG", tag.to_string()));
    for command in commands {
        scope.run(command, Role::ImageUpdater, &env)?;
    }
    let change = patch::Change::Image(container, image);
    scope.check_updaters(generators, id, &change, "containerImage")?;
    Ok(true)
}

fn run_policy_updaters(
    scope: &Scope<'_>,
    generators: &[Command],
    updaters: &[Updater],
    id: &ResourceId,
    update: &PolicyUpdate,
) -> Result<bool, GenerateError> {
    let (_, checkout) = scope.generate(generators)?;
    let current = workload(scope.config, &checkout, id, None)?;
    check_tag_containers(scope.config, current, update)?;
    let changes = policy_changes(current, update);
    if changes.is_empty() {
        return Ok(false);
    }
    let commands: Vec<&Command> = updaters.iter().filter_map(|u| u.policy.as_ref()).collect();
    if commands.is_empty() {
        return Err(scope.refused("no policy updater to change policies with".into()));
    }
    for (policy, value) in changes {
        let mut env = workload_env(id);
        env.push(("FLUX_POLICY", policy));
        // v1: an unset (or empty) value means "remove the policy".
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            env.push(("FLUX_POLICY_VALUE", value));
        }
        for command in &commands {
            scope.run(command, Role::PolicyUpdater, &env)?;
        }
    }
    scope.check_updaters(generators, id, &patch::Change::Policies(update), "policy")?;
    Ok(true)
}

/// A release keeps the repository: only the tag (or digest) moves.
fn same_repository(
    scope: &Scope<'_>,
    id: &ResourceId,
    container: &str,
    running: &ImageRef,
    image: &ImageRef,
) -> Result<(), GenerateError> {
    if running.name() == image.name() {
        return Ok(());
    }
    Err(scope.refused(format!(
        "container {container} of {id} runs {}, not {}",
        running.name().familiar(),
        image.name().familiar()
    )))
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
pub(super) struct PatchFile {
    path: PathBuf,
    /// Its text; empty when it does not exist yet.
    pub(super) text: String,
    exists: bool,
}

impl PatchFile {
    /// The patch file named by `relative` from the `--git-path` folder
    /// `dir`; it may not exist yet, but its folder must.
    pub(super) fn open(
        config: &FluxConfig,
        dir: &Path,
        relative: &Path,
    ) -> Result<PatchFile, GenerateError> {
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
    pub(super) fn apply(
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
    scope: &Scope<'_>,
    generators: &[Command],
    patch_file: &Path,
    id: &ResourceId,
    change: &patch::Change<'_>,
) -> Result<bool, GenerateError> {
    let (config, settings) = (scope.config, scope.settings);
    let (generated, unpatched) = scope.generate(generators)?;
    let file = PatchFile::open(config, &scope.dir, patch_file)?;
    let patched = file.apply(config, &generated, &file.text, settings)?;
    let patched = load(config, &patched, settings);
    let container = match change {
        patch::Change::Image(container, _) => Some(*container),
        patch::Change::Policies(_) => None,
    };
    let current = workload(config, &patched, id, container)?;
    if check(&patched, id, change).is_ok() {
        return Ok(false);
    }
    match change {
        patch::Change::Policies(update) => check_tag_containers(config, current, update)?,
        // A patch sets images in a pod template; a HelmRelease's are in
        // its values, which a patch does not reach.
        patch::Change::Image(..)
            if matches!(
                current.kind,
                WorkloadKind::HelmRelease | WorkloadKind::Kustomization
            ) =>
        {
            return Err(scope.refused(format!(
                "{id}: patchUpdated records the images of pod workloads only; use commandUpdated for a {:?}",
                current.kind
            )));
        }
        patch::Change::Image(container, image) => {
            let running = &current
                .container(container)
                .expect("the container was checked")
                .image;
            same_repository(scope, id, container, running, image)?;
        }
    }
    let text = edited_patch(scope, &file, &generated, &unpatched, current, id, change)?;
    file.write(Some(&text))?;
    // Generate again: the generators may read the patch file themselves
    // (a kustomization listing it, say), and what is checked is what a
    // sync would apply.
    let checked = generate(config, &scope.dir, settings).and_then(|after| {
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
/// anew (or appended, when there is none). `unpatched` is the generators'
/// output, `generated`, loaded; `patched` the workload with the patch file
/// applied.
fn edited_patch(
    scope: &Scope<'_>,
    file: &PatchFile,
    generated: &str,
    unpatched: &Checkout,
    patched: &Workload,
    id: &ResourceId,
    change: &patch::Change<'_>,
) -> Result<String, GenerateError> {
    let (config, settings) = (scope.config, scope.settings);
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
    let resource = unpatched
        .resources
        .iter()
        .find(|r| &r.id == id)
        .expect("a generated workload is a generated resource");
    let unpatched = workload(config, unpatched, id, None)?;
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
