//! Edits made against a loaded checkout: kept in memory, checked, and
//! written together. A built workload's edit goes to the file of its tree
//! that defines the value and is checked by building the edited tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flux_image::ImageRef;

use crate::checkout::{Checkout, ImageEdits, Refused};
use crate::edit::EditError;
use crate::generate::{self, FluxConfig, GenerateError, Generation};
use crate::id::ResourceId;
use crate::kustomize::{self, ImageTarget, Kustomize};
use crate::policy::{PolicyKey, PolicyUpdate};
use crate::workload::Workload;

/// Edits made against a checkout, kept in memory until written.
#[derive(Debug)]
pub struct Transaction<'c> {
    checkout: &'c Checkout,
    files: BTreeMap<PathBuf, (String, String)>,
    /// The images built containers were set to, by workload and container.
    built_images: BTreeMap<(ResourceId, String), ImageRef>,
}

impl<'c> Transaction<'c> {
    /// A transaction with no edits yet.
    pub fn new(checkout: &'c Checkout) -> Transaction<'c> {
        Transaction {
            checkout,
            files: BTreeMap::new(),
            built_images: BTreeMap::new(),
        }
    }

    /// The checkout the edits are made against.
    pub fn checkout(&self) -> &'c Checkout {
        self.checkout
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<PathBuf, (String, String)> {
        self.files.clone()
    }

    pub(crate) fn restore(&mut self, files: BTreeMap<PathBuf, (String, String)>) {
        self.files = files;
    }

    fn text_of(&mut self, id: &ResourceId) -> Result<(PathBuf, String), EditError> {
        let workload = self
            .checkout
            .workload(id)
            .ok_or_else(|| EditError::Missing(format!("no workload {id}")))?;
        let path = workload.location.file.to_path_buf();
        let text = self.text_at(&path)?;
        Ok((path, text))
    }

    /// The current text of a file: as edited so far, else as on disk.
    fn text_at(&mut self, path: &Path) -> Result<String, EditError> {
        if !self.files.contains_key(path) {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EditError::Missing(format!("{}: {e}", path.display())))?;
            self.files.insert(path.to_path_buf(), (text.clone(), text));
        }
        Ok(self.files[path].1.clone())
    }

    /// Makes an update of a generated workload (updaters, or the patch
    /// file) in a scratch copy of the checkout holding the edits so far,
    /// and keeps every file it changed: nothing on disk changes before
    /// [`Transaction::write`], and a failed update leaves nothing.
    fn generated_edit(
        &mut self,
        n: usize,
        update: impl FnOnce(&FluxConfig, &Path, &Generation) -> Result<bool, GenerateError>,
    ) -> Result<bool, EditError> {
        let (dir, config) = &self.checkout.generated[n];
        let root = config.root.clone();
        let failed = |e: std::io::Error| EditError::Missing(format!("copying the checkout: {e}"));
        let scratch = tempfile::tempdir().map_err(failed)?;
        let copy = scratch.path().canonicalize().map_err(failed)?;
        copy_checkout(&root, &copy).map_err(failed)?;
        let pending: Vec<(PathBuf, String)> = self
            .files
            .iter()
            .filter_map(|(path, (_, now))| Some((relative_in(&root, path)?, now.clone())))
            .collect();
        for (relative, text) in &pending {
            std::fs::write(copy.join(relative), text).map_err(failed)?;
        }
        let moved = |path: &Path| copy.join(path.strip_prefix(&root).unwrap_or(path));
        let in_copy = FluxConfig {
            file: moved(&config.file),
            root: copy.clone(),
            kind: config.kind.clone(),
        };
        let dir_in_copy = moved(&dir.canonicalize().unwrap_or_else(|_| dir.clone()));
        let settings = crate::checkout::generation(&self.checkout.options);
        let shown = |e: GenerateError| {
            let message = e
                .to_string()
                .replace(&copy.display().to_string(), &root.display().to_string());
            EditError::Missing(message)
        };
        let changed = update(&in_copy, &dir_in_copy, &settings).map_err(shown)?;
        for (relative, after) in changed_files(&root, &copy, &self.files).map_err(failed)? {
            let known = self
                .files
                .keys()
                .find(|k| relative_in(&root, k).as_ref() == Some(&relative))
                .cloned();
            let path = known.unwrap_or_else(|| root.join(&relative));
            let before = std::fs::read_to_string(&path).unwrap_or_default();
            let entry = self
                .files
                .entry(path)
                .or_insert_with(|| (before.clone(), before));
            entry.1 = after;
        }
        Ok(changed)
    }

    /// The build root a workload was built by, with the trees.
    fn built(&self, id: &ResourceId) -> Option<(&'c Kustomize, &'c Path, &'c Workload)> {
        let trees = self.checkout.kustomize.as_ref()?;
        let root = trees.root_of(id)?;
        Some((trees, root, self.checkout.workload(id)?))
    }

    /// Rebuilds `root`'s tree with the edits so far and `after` as the
    /// text of `path`, and checks what it builds with `holds`.
    fn check_build(
        &self,
        trees: &Kustomize,
        root: &Path,
        path: &Path,
        after: &str,
        holds: impl FnOnce(&Checkout) -> Result<(), EditError>,
    ) -> Result<(), EditError> {
        let mut edited: BTreeMap<PathBuf, String> = self
            .files
            .iter()
            .map(|(p, (_, now))| (p.clone(), now.clone()))
            .collect();
        edited.insert(path.to_path_buf(), after.to_string());
        let rebuilt = trees.rebuild(root, &edited, &self.checkout.options)?;
        holds(&rebuilt)
    }

    /// The edit of the file that defines a built container's image: its
    /// path, its text before and after.
    fn built_image_edit(
        &mut self,
        target: ImageTarget,
        image: &ImageRef,
    ) -> Result<(PathBuf, String, String), EditError> {
        let options = self.checkout.options.clone();
        let (path, text, after) = match target {
            ImageTarget::Container {
                file,
                id,
                container,
            } => {
                let text = self.text_at(&file)?;
                let after = Checkout::from_text(&file, &text, options)
                    .set_image(&text, &id, &container, image)?;
                (file, text, after)
            }
            ImageTarget::Entry { file, name } => {
                let text = self.text_at(&file)?;
                let checkout = Checkout::from_text(&file, &text, options);
                let id = checkout
                    .workloads
                    .first()
                    .map(|w| w.id.clone())
                    .ok_or_else(|| EditError::Missing(format!("{}: no images", file.display())))?;
                let after = checkout.set_image(&text, &id, &name, image)?;
                (file, text, after)
            }
            ImageTarget::NewEntry { file, name } => {
                let text = self.text_at(&file)?;
                let after = kustomize::add_image_entry(&text, &name, image)?;
                let read = Checkout::from_text(&file, &after, options);
                let holds = read
                    .workloads
                    .first()
                    .and_then(|w| w.containers.iter().rfind(|c| c.name == name))
                    .is_some_and(|c| {
                        c.image.tag() == image.tag() && c.image.digest() == image.digest()
                    });
                if !read.errors.is_empty() || !holds {
                    return Err(EditError::Verify(format!(
                        "{}: the new images entry for {name} does not read back",
                        file.display()
                    )));
                }
                (file, text, after)
            }
        };
        Ok((path, text, after))
    }

    fn keep(&mut self, path: PathBuf, before: &str, after: String) -> bool {
        let changed = before != after;
        if let Some(entry) = self.files.get_mut(&path) {
            entry.1 = after;
        }
        changed
    }

    /// Sets a container's image; returns whether the text changed.
    pub fn set_image(
        &mut self,
        id: &ResourceId,
        container: &str,
        image: &ImageRef,
    ) -> Result<bool, EditError> {
        if let Some(&n) = self.checkout.generated_ids.get(id) {
            return self.generated_edit(n, |config, dir, settings| {
                generate::set_image(config, dir, id, container, image, settings)
            });
        }
        if let Some((trees, root, built)) = self.built(id) {
            let target = trees.image_target(root, built, container)?;
            let (path, text, after) = self.built_image_edit(target, image)?;
            let mut expected = self.built_images.clone();
            expected.insert((id.clone(), container.to_string()), image.clone());
            self.check_build(trees, root, &path, &after, |rebuilt| {
                built_images_hold(self.checkout, root, rebuilt, &expected)
            })?;
            self.built_images = expected;
            return Ok(self.keep(path, &text, after));
        }
        let (path, text) = self.text_of(id)?;
        let after = self.checkout.set_image(&text, id, container, image)?;
        Ok(self.keep(path, &text, after))
    }

    /// Sets the images of containers of many workloads, each workload's all
    /// or nothing, as [`Transaction::set_image`] would one by one, with the
    /// same checks; returns, per workload, whether the text changed or the
    /// container whose edit was refused and why.
    ///
    /// The edits of one file are planned together, made in one pass and
    /// verified once. When they do not verify together, that file's edits
    /// are made one workload at a time, so that only the workloads whose
    /// edits are wrong are refused. Edits of kustomize-built and generated
    /// workloads are made one workload at a time.
    pub fn set_images(&mut self, workloads: &[ImageEdits<'_>]) -> Vec<Result<bool, Refused>> {
        let mut outcomes: Vec<Option<Result<bool, Refused>>> = vec![None; workloads.len()];
        let mut by_file: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
        for (n, edits) in workloads.iter().enumerate() {
            let plain = !self.checkout.generated_ids.contains_key(edits.id)
                && self.built(edits.id).is_none();
            match self.checkout.workload(edits.id) {
                Some(workload) if plain => by_file
                    .entry(workload.location.file.to_path_buf())
                    .or_default()
                    .push(n),
                _ => outcomes[n] = Some(self.set_workload_images(edits)),
            }
        }
        let files: Vec<(PathBuf, Vec<usize>, Option<String>)> = by_file
            .into_iter()
            .map(|(path, members)| {
                let text = self.text_at(&path).ok();
                (path, members, text)
            })
            .collect();
        // Files are planned, edited and verified on their own, so a few at a time.
        let checkout = self.checkout;
        let edited = in_parallel(&files, |(path, members, text)| {
            let text = text.as_deref()?;
            let edits: Vec<ImageEdits<'_>> =
                members.iter().map(|&n| workloads[n].clone()).collect();
            checkout.set_images_in_file(path, text, &edits).ok()
        });
        for ((path, members, text), together) in files.into_iter().zip(edited) {
            match (text, together) {
                (Some(text), Some((after, made))) => {
                    self.keep(path, &text, after);
                    for (&n, outcome) in members.iter().zip(made) {
                        outcomes[n] = Some(outcome);
                    }
                }
                _ => {
                    for &n in &members {
                        outcomes[n] = Some(self.set_workload_images(&workloads[n]));
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every workload has an outcome"))
            .collect()
    }

    /// Sets the images of one workload's containers one by one; on a
    /// refusal, the transaction is left as it was before the first.
    fn set_workload_images(&mut self, edits: &ImageEdits<'_>) -> Result<bool, Refused> {
        let saved = self.snapshot();
        let mut changed = false;
        for &(container, image) in &edits.containers {
            match self.set_image(edits.id, container, image) {
                Ok(made) => changed |= made,
                Err(error) => {
                    self.restore(saved);
                    return Err((container.to_string(), error));
                }
            }
        }
        Ok(changed)
    }

    /// Updates a workload's policies; returns whether the text changed.
    pub fn update_policies(
        &mut self,
        id: &ResourceId,
        update: &PolicyUpdate,
    ) -> Result<bool, EditError> {
        if let Some(&n) = self.checkout.generated_ids.get(id) {
            return self.generated_edit(n, |config, dir, settings| {
                generate::update_policies(config, dir, id, update, settings)
            });
        }
        if let Some((trees, root, built)) = self.built(id) {
            let before = self.files.clone();
            let mut changed = false;
            for (file, in_file, part) in trees.policy_targets(root, built, update)? {
                let text = self.text_at(&file)?;
                let after = Checkout::from_text(&file, &text, self.checkout.options.clone())
                    .update_policies(&text, &in_file, &part)?;
                changed |= self.keep(file, &text, after);
            }
            let (Some(path), true) = (self.files.keys().next().cloned(), changed) else {
                return Ok(changed);
            };
            let after = self.files[&path].1.clone();
            let checked = self.check_build(trees, root, &path, &after, |rebuilt| {
                built_policies_hold(rebuilt, id, update)
            });
            if let Err(error) = checked {
                self.files = before;
                return Err(error);
            }
            return Ok(changed);
        }
        let (path, text) = self.text_of(id)?;
        let after = self.checkout.update_policies(&text, id, update)?;
        Ok(self.keep(path, &text, after))
    }

    /// The files whose text changed: path, text before, text after.
    pub fn changes(&self) -> impl Iterator<Item = (&Path, &str, &str)> {
        self.files
            .iter()
            .filter(|(_, (before, after))| before != after)
            .map(|(path, (before, after))| (path.as_path(), before.as_str(), after.as_str()))
    }

    /// Writes every changed file atomically; returns the paths written.
    pub fn write(self) -> Result<Vec<PathBuf>, std::io::Error> {
        let mut written = Vec::new();
        for (path, before, after) in self.changes() {
            if before != after {
                crate::write::atomically(path, after.as_bytes())?;
                written.push(path.to_path_buf());
            }
        }
        Ok(written)
    }
}

/// `work` done on every item, by a few threads; the results in item order.
fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(n) else { break };
                        done.push((n, work(item)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an edit thread does not panic"))
            .collect()
    });
    done.sort_by_key(|(n, _)| *n);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Every container `root` builds runs what `expected` says, or what it
/// ran before when `expected` does not name it; the same objects are built.
fn built_images_hold(
    checkout: &Checkout,
    root: &Path,
    rebuilt: &Checkout,
    expected: &BTreeMap<(ResourceId, String), ImageRef>,
) -> Result<(), EditError> {
    let trees = checkout
        .kustomize
        .as_ref()
        .expect("a built workload has its trees");
    let ids = |c: &Checkout, from_root: bool| {
        let mut ids: Vec<ResourceId> = c
            .workloads
            .iter()
            .filter(|w| !from_root || trees.root_of(&w.id) == Some(root))
            .map(|w| w.id.clone())
            .collect();
        ids.sort();
        ids
    };
    if ids(checkout, true) != ids(rebuilt, false) {
        return Err(EditError::Verify(format!(
            "the edited tree of {} builds other workloads",
            root.display()
        )));
    }
    for workload in &rebuilt.workloads {
        let known = checkout.workload(&workload.id).expect("the same ids");
        for container in &workload.containers {
            let want = expected
                .get(&(workload.id.clone(), container.name.clone()))
                .or_else(|| known.container(&container.name).map(|c| &c.image));
            if want != Some(&container.image) {
                return Err(EditError::Verify(format!(
                    "after the edit, kustomize builds {} for container {} of {}, not {}",
                    container.image,
                    container.name,
                    workload.id,
                    want.map_or("nothing".to_string(), ToString::to_string)
                )));
            }
        }
    }
    Ok(())
}

/// The rebuilt workload carries the update's annotations and none it removes.
fn built_policies_hold(
    rebuilt: &Checkout,
    id: &ResourceId,
    update: &PolicyUpdate,
) -> Result<(), EditError> {
    let workload = rebuilt.workload(id).ok_or_else(|| {
        EditError::Verify(format!("after the edit, kustomize does not build {id}"))
    })?;
    let value_of = |key: &PolicyKey| {
        key.annotations().into_iter().find_map(|a| {
            workload
                .annotations
                .iter()
                .find(|(k, _)| *k == a)
                .map(|(_, v)| v.clone())
        })
    };
    for (key, value) in &update.add {
        if value_of(key).as_ref() != Some(value) {
            return Err(EditError::Verify(format!(
                "after the edit, kustomize does not build {id} with {}: {value}",
                key.annotations()[0]
            )));
        }
    }
    for key in &update.remove {
        if value_of(key).is_some() {
            return Err(EditError::Verify(format!(
                "after the edit, kustomize still builds {id} with {}",
                key.annotations()[0]
            )));
        }
    }
    Ok(())
}

/// `path` relative to the checkout `root` (canonical), when it is in it.
fn relative_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(_) => path.parent()?.canonicalize().ok()?.join(path.file_name()?),
    };
    real.strip_prefix(root).ok().map(Path::to_path_buf)
}

/// Copies the checkout at `root`, but its `.git`, to `to`.
fn copy_checkout(root: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let from = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &target)?;
        } else if kind.is_dir() {
            if entry.file_name() == ".git" {
                continue;
            }
            std::fs::create_dir(&target)?;
            copy_checkout(&from, &target)?;
        } else {
            std::fs::copy(&from, &target)?;
        }
    }
    Ok(())
}

/// The files of the copy whose text differs from the checkout's as the
/// transaction has it: relative path and new text.
fn changed_files(
    root: &Path,
    copy: &Path,
    pending: &BTreeMap<PathBuf, (String, String)>,
) -> std::io::Result<Vec<(PathBuf, String)>> {
    let now: BTreeMap<PathBuf, &str> = pending
        .iter()
        .filter_map(|(path, (_, text))| Some((relative_in(root, path)?, text.as_str())))
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![copy.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let relative = entry
                .path()
                .strip_prefix(copy)
                .unwrap_or(&entry.path())
                .to_path_buf();
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let current = match now.get(&relative) {
                Some(text) => Some((*text).to_string()),
                None => std::fs::read_to_string(root.join(&relative)).ok(),
            };
            if current.as_deref() != Some(text.as_str()) {
                out.push((relative, text));
            }
        }
    }
    out.sort();
    Ok(out)
}
