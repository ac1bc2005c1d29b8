//! Where an edit of a built workload goes: the layer of its tree that sets
//! the image or annotation, or the build root's own `images:` when that
//! layer is shared with other trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flux_image::ImageRef;

use super::{Chain, Kustomize};
use crate::checkout::Checkout;
use crate::edit::EditError;
use crate::id::ResourceId;
use crate::load::LoadOptions;
use crate::policy::{PolicyKey, PolicyUpdate};
use crate::workload::Workload;
use crate::yaml::Stream;

/// Where an edit of a built workload's container image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageTarget {
    /// A container of a manifest or patch file: the workload as that file
    /// reads it, and the container's name.
    Container {
        /// The file.
        file: PathBuf,
        /// The workload's id as the file alone reads it.
        id: ResourceId,
        /// The container.
        container: String,
    },
    /// An `images:` entry of a kustomization, by the name it matches.
    Entry {
        /// The kustomization file.
        file: PathBuf,
        /// The entry's `name`.
        name: String,
    },
    /// An `images:` entry to add to the build root's kustomization, when
    /// the layer setting the image is shared with other build roots.
    NewEntry {
        /// The build root's kustomization file.
        file: PathBuf,
        /// The image name the entry matches.
        name: String,
    },
}

/// A built object's source: the manifest it comes from and the layers
/// from the build root down to it.
struct Source {
    file: PathBuf,
    workload: Workload,
    chain: Chain,
}

impl Kustomize {
    /// The build root a built workload comes from.
    pub fn root_of(&self, id: &ResourceId) -> Option<&Path> {
        self.built.get(id).map(PathBuf::as_path)
    }

    /// The build roots of the whole checkout whose trees include `dir`.
    fn sharers(&self, dir: &Path) -> Vec<&Path> {
        self.all_roots
            .iter()
            .filter(|root| self.tree.closure(root).iter().any(|n| n.dir == dir))
            .map(PathBuf::as_path)
            .collect()
    }

    fn shared(&self, dir: &Path, root: &Path) -> bool {
        self.sharers(dir).iter().any(|r| *r != root)
    }

    /// The manifest a built workload comes from.
    fn source(&self, root: &Path, built: &Workload) -> Result<Source, EditError> {
        let mut found = Vec::new();
        for chain in self.tree.chains(root) {
            let Some(node) = chain.dirs.last().and_then(|d| self.tree.nodes.get(d)) else {
                continue;
            };
            for file in &node.resources {
                for workload in read_workloads(file)? {
                    if workload.kind == built.kind
                        && chain.built_name(&self.tree, workload.id.name()) == built.id.name()
                    {
                        found.push(Source {
                            file: file.clone(),
                            workload,
                            chain: chain.clone(),
                        });
                    }
                }
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(EditError::Missing(format!(
                "{}: no manifest in the tree of {} builds it",
                built.id,
                root.display()
            ))),
            _ => Err(EditError::Missing(format!(
                "{}: several manifests in the tree of {} could build it",
                built.id,
                root.display()
            ))),
        }
    }

    /// The patches of one layer that apply to `source`.
    fn patches_of(
        &self,
        dir: &Path,
        source: &Source,
    ) -> Result<Vec<(PathBuf, Workload)>, EditError> {
        let Some(node) = self.tree.nodes.get(dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for file in &node.patches {
            for patch in read_workloads(file)? {
                if patch.kind == source.workload.kind
                    && patch.id.name() == source.workload.id.name()
                {
                    out.push((file.clone(), patch));
                }
            }
        }
        Ok(out)
    }

    /// Which file sets the image `built` runs in `container`.
    pub fn image_target(
        &self,
        root: &Path,
        built: &Workload,
        container: &str,
    ) -> Result<ImageTarget, EditError> {
        let running = built.container(container).ok_or_else(|| {
            EditError::Missing(format!("{} has no container {container}", built.id))
        })?;
        let source = self.source(root, built)?;
        let mut spelling = None;
        let mut definer = None;
        let mut layer_of_definer = source.chain.dirs.last().cloned().unwrap_or_default();
        if let Some(c) = source.workload.container(container) {
            spelling = Some(c.spelling.clone());
            definer = Some(ImageTarget::Container {
                file: source.file.clone(),
                id: source.workload.id.clone(),
                container: container.to_string(),
            });
        }
        for dir in source.chain.dirs.iter().rev() {
            for (file, patch) in self.patches_of(dir, &source)? {
                if let Some(c) = patch.container(container) {
                    spelling = Some(c.spelling.clone());
                    definer = Some(ImageTarget::Container {
                        file,
                        id: patch.id.clone(),
                        container: container.to_string(),
                    });
                    layer_of_definer = dir.clone();
                }
            }
            let node = &self.tree.nodes[dir];
            let Some(current) = spelling.clone() else {
                continue;
            };
            // Kustomize applies the entries in order, each to the image as
            // the ones before it left it.
            let mut current = current;
            for entry in &node.images {
                let (name, tag, digest) = crate::spelling::split(&current);
                if entry.name != name {
                    continue;
                }
                let mut next = entry.new_name.clone().unwrap_or_else(|| name.to_string());
                match (&entry.new_tag, &entry.digest, tag, digest) {
                    (_, Some(d), _, _) => next = format!("{next}@{d}"),
                    (Some(t), None, _, _) => next = format!("{next}:{t}"),
                    (None, None, _, Some(d)) => next = format!("{next}@{d}"),
                    (None, None, Some(t), None) => next = format!("{next}:{t}"),
                    (None, None, None, None) => {}
                }
                current = next;
                definer = Some(ImageTarget::Entry {
                    file: node.file.clone(),
                    name: entry.name.clone(),
                });
                layer_of_definer = dir.clone();
            }
            spelling = Some(current);
        }
        let (Some(spelling), Some(definer)) = (spelling, definer) else {
            return Err(EditError::Missing(format!(
                "{}: no file in the tree of {} sets the image of container {container}",
                built.id,
                root.display()
            )));
        };
        let computed = ImageRef::parse(&spelling).ok();
        if computed.as_ref() != Some(&running.image) {
            return Err(EditError::Unsupported {
                path: root.display().to_string(),
                line: running.line,
                reason: format!(
                    "cannot tell which file sets the image of container {container} of {}: \
                     kustomize builds {}, the tree's manifests and `images:` read as {spelling}",
                    built.id, running.image
                ),
            });
        }
        if !self.shared(&layer_of_definer, root) {
            return Ok(definer);
        }
        // The layer is built by other roots too: set the image in this
        // root's own `images:`, as `kustomize edit set image` there would.
        let written = crate::spelling::split(&spelling).0.to_string();
        let root_file = self.tree.nodes[root].file.clone();
        let name = match &definer {
            ImageTarget::Entry { name, .. } => name.clone(),
            _ => written,
        };
        Ok(ImageTarget::NewEntry {
            file: root_file,
            name,
        })
    }

    /// Where each policy change of a built workload is written: the file,
    /// the workload as that file reads it, and the part of the update.
    pub fn policy_targets(
        &self,
        root: &Path,
        built: &Workload,
        update: &PolicyUpdate,
    ) -> Result<Vec<(PathBuf, ResourceId, PolicyUpdate)>, EditError> {
        let source = self.source(root, built)?;
        let mut layers: Vec<(PathBuf, Option<(PathBuf, Workload)>)> = Vec::new();
        for dir in &source.chain.dirs {
            for patch in self.patches_of(dir, &source)? {
                layers.push((dir.clone(), Some(patch)));
            }
        }
        let has = |annotations: &[(String, String)], key: &PolicyKey| {
            key.annotations()
                .iter()
                .any(|a| annotations.iter().any(|(k, _)| k == a))
        };
        let mut targets: BTreeMap<PathBuf, (ResourceId, PolicyUpdate)> = BTreeMap::new();
        let keys = update
            .add
            .iter()
            .map(|(k, v)| (k, Some(v)))
            .chain(update.remove.iter().map(|k| (k, None)));
        for (key, value) in keys {
            let common = source.chain.dirs.iter().find(|d| {
                let node = &self.tree.nodes[*d];
                key.annotations()
                    .iter()
                    .any(|a| node.common_annotations.contains(a))
            });
            if let Some(dir) = common {
                return Err(EditError::Missing(format!(
                    "{}: {} comes from commonAnnotations in {}, which sets it on every object \
                     there; change it in that file",
                    built.id,
                    key.annotations()[0],
                    self.tree.nodes[dir].file.display()
                )));
            }
            let patch_with = layers
                .iter()
                .filter_map(|(_, p)| p.as_ref())
                .find(|(_, p)| has(&p.annotations, key));
            let (file, id) = if let Some((file, patch)) = patch_with {
                (file.clone(), patch.id.clone())
            } else if has(&source.workload.annotations, key) || value.is_none() {
                (source.file.clone(), source.workload.id.clone())
            } else if let Some((_, Some((file, patch)))) = layers.first() {
                (file.clone(), patch.id.clone())
            } else {
                (source.file.clone(), source.workload.id.clone())
            };
            let layer = self
                .tree
                .owner_of(&file)
                .map(|n| n.dir.clone())
                .unwrap_or_default();
            if value.is_some() && !has(&built.annotations, key) && self.shared(&layer, root) {
                return Err(EditError::Missing(format!(
                    "{}: setting {} would change every build of {} (it is shared with {}); \
                     add a patch of {} to {} and set it there",
                    built.id,
                    key.annotations()[0],
                    file.display(),
                    self.sharers(&layer)
                        .iter()
                        .filter(|r| **r != root)
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    built.id.name(),
                    self.tree.nodes[root].file.display()
                )));
            }
            let part = &mut targets
                .entry(file)
                .or_insert_with(|| (id, PolicyUpdate::default()))
                .1;
            match value {
                Some(v) => part.add.push((key.clone(), v.clone())),
                None => part.remove.push(key.clone()),
            }
        }
        Ok(targets
            .into_iter()
            .map(|(file, (id, update))| (file, id, update))
            .collect())
    }
}

/// The workloads a file reads as, on its own.
fn read_workloads(file: &Path) -> Result<Vec<Workload>, EditError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| EditError::Missing(format!("{}: {e}", file.display())))?;
    Ok(Checkout::from_text(file, &text, LoadOptions::default()).workloads)
}

/// Adds `- name: <name>` with the image's tag or digest to the `images:`
/// of a kustomization's text (making the list when there is none), as
/// `kustomize edit set image` would.
pub(crate) fn add_image_entry(
    text: &str,
    name: &str,
    image: &ImageRef,
) -> Result<String, EditError> {
    let value = match (image.digest(), image.tag()) {
        (Some(digest), _) => format!("digest: {digest}"),
        (None, Some(tag)) => format!("newTag: \"{tag}\""),
        (None, None) => return Err(EditError::Missing(format!("{image} has no tag or digest"))),
    };
    let stream = Stream::parse(text).map_err(EditError::Syntax)?;
    if stream.docs.len() > 1 {
        return Err(EditError::Missing(
            "a kustomization file holds one document".into(),
        ));
    }
    let images = stream
        .docs
        .first()
        .and_then(|&top| stream.get(top, "images"));
    let Some(images) = images else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("images:\n- name: {name}\n  {value}\n"));
        return Ok(out);
    };
    let items = stream.items(images).unwrap_or(&[]);
    let (Some(&first), Some(&last)) = (items.first(), items.last()) else {
        return Err(EditError::Missing(
            "the kustomization's `images:` is not a list of entries".into(),
        ));
    };
    if stream.nodes[images].flow {
        return Err(EditError::Missing(
            "the kustomization's `images:` is a flow list; write it as a block list".into(),
        ));
    }
    let first_line_start = text[..stream.nodes[first].span.start]
        .rfind('\n')
        .map_or(0, |n| n + 1);
    let dash = text[first_line_start..stream.nodes[first].span.start]
        .find('-')
        .ok_or_else(|| EditError::Missing("cannot find the `-` of an images entry".into()))?;
    let indent = " ".repeat(dash);
    let item_indent = " ".repeat(stream.nodes[first].col);
    let end = stream.nodes[last].span.end;
    let line_end = text[end..].find('\n').map_or(text.len(), |n| end + n);
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..line_end]);
    out.push_str(&format!("\n{indent}- name: {name}\n{item_indent}{value}"));
    out.push_str(&text[line_end..]);
    Ok(out)
}
