//! Kustomize trees: which folders are built, the build itself (by the real
//! `kustomize`, or `kubectl kustomize`), the reuse of a build whose inputs
//! did not change, and, for an edit of a built workload, the file that
//! defines its image or annotation.
//!
//! A folder holding a kustomization is a build root when no other
//! kustomization under the loaded paths includes it; the files of a tree
//! are never read as plain manifests. What a kustomization names is read
//! here only to know which files it reads (to confine them to the checkout
//! and to hash them) and which layer sets an image; what a tree builds is
//! always kustomize's answer.

mod build;
mod target;
mod tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub(crate) use build::build;
use build::collect_files;
pub use build::{BuildCache, BuildOptions};
pub(crate) use target::{ImageTarget, add_image_entry};
pub(crate) use tree::{Chain, FILE_NAMES, Tree, file_in, normalize};

use crate::checkout::Checkout;
use crate::edit::EditError;
use crate::id::ResourceId;
use crate::load::LoadOptions;

/// The kustomize trees of a loaded checkout.
#[derive(Debug, Default)]
pub(crate) struct Kustomize {
    /// The checkout's root folder.
    root: PathBuf,
    /// Every kustomization of the checkout, and the ones they include.
    pub tree: Tree,
    /// The build roots under the loaded paths, which the checkout holds the builds of.
    pub roots: Vec<PathBuf>,
    /// The build roots of the whole checkout: who else a shared layer's edit would change.
    all_roots: Vec<PathBuf>,
    /// Each built workload's build root.
    pub built: HashMap<ResourceId, PathBuf>,
}

impl Kustomize {
    /// Finds the kustomize trees under `paths` (absolute, normalised), in
    /// the checkout at `root`; None when there is none.
    pub fn find(root: &Path, paths: &[PathBuf]) -> Option<Kustomize> {
        let mut loaded = Vec::new();
        for path in paths {
            kustomization_dirs(path, &mut loaded);
        }
        if loaded.is_empty() {
            return None;
        }
        let mut everywhere = Vec::new();
        kustomization_dirs(root, &mut everywhere);
        let tree = Tree::read(root, loaded.iter().chain(&everywhere).cloned());
        let roots = tree.roots(&loaded);
        let all_roots = tree.roots(&everywhere);
        Some(Kustomize {
            root: root.to_path_buf(),
            tree,
            roots,
            all_roots,
            built: HashMap::new(),
        })
    }

    /// Whether a file found by the walk belongs to a tree (any folder
    /// above it holds a kustomization), so is not a manifest of its own.
    pub fn owns(&self, file: &Path) -> bool {
        let file = normalize(&std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()));
        file.ancestors()
            .skip(1)
            .any(|dir| self.tree.nodes.contains_key(dir))
    }
}

impl Kustomize {
    /// Builds `root`'s tree as the texts of `edited` leave it, in a scratch
    /// copy of the folders it reads, and reads what it built: an edit is
    /// checked by what kustomize makes of it.
    pub fn rebuild(
        &self,
        root: &Path,
        edited: &BTreeMap<PathBuf, String>,
        options: &LoadOptions,
    ) -> Result<Checkout, EditError> {
        let failed = |e: std::io::Error| {
            EditError::Verify(format!("copying the tree of {}: {e}", root.display()))
        };
        let scratch = tempfile::tempdir().map_err(failed)?;
        for node in self.tree.closure(root) {
            copy_tree(&node.dir, &self.root, scratch.path()).map_err(failed)?;
        }
        for (path, text) in edited {
            let Ok(relative) = path.strip_prefix(&self.root) else {
                continue;
            };
            let to = scratch.path().join(relative);
            if to.is_file() {
                std::fs::write(&to, text).map_err(failed)?;
            }
        }
        let relative = root.strip_prefix(&self.root).unwrap_or(root);
        let dir = scratch.path().join(relative);
        let tree = Tree::read(scratch.path(), [dir.clone()]);
        let output = build(&tree, scratch.path(), &dir, &options.build, None).map_err(|e| {
            EditError::Verify(format!(
                "the edited tree of {} does not build: {e}",
                root.display()
            ))
        })?;
        Ok(Checkout::from_text(
            &dir.join("built.yaml"),
            &output,
            options.clone(),
        ))
    }
}

/// Copies the files under `dir` to the same place under `to` as they are under `root`.
fn copy_tree(dir: &Path, root: &Path, to: &Path) -> std::io::Result<()> {
    let mut files = BTreeSet::new();
    collect_files(dir, &mut files);
    for file in files {
        let Ok(relative) = file.strip_prefix(root) else {
            continue;
        };
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::symlink_metadata(&file)?.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&file)?, &target)?;
        } else {
            std::fs::copy(&file, &target)?;
        }
    }
    Ok(())
}

/// The folders under `dir` holding a kustomization, skipping hidden folders
/// and Helm charts, as the manifest walk does.
fn kustomization_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() || dir.join("Chart.yaml").is_file() {
        return;
    }
    if file_in(dir).is_some() {
        out.push(dir.to_path_buf());
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        kustomization_dirs(&dir, out);
    }
}
