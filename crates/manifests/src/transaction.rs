//! Edits made against a loaded checkout: kept in memory, checked, and
//! written together. A built workload's edit goes to the file of its tree
//! that defines the value and is checked by building the edited tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flux_image::ImageRef;

use crate::checkout::Checkout;
use crate::edit::EditError;
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
        let path = workload.location.file.clone();
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

    /// Updates a workload's policies; returns whether the text changed.
    pub fn update_policies(
        &mut self,
        id: &ResourceId,
        update: &PolicyUpdate,
    ) -> Result<bool, EditError> {
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

