//! What a kustomization names: the folders it builds on, the files it
//! reads, its `images:` and name transformations; read only to confine and
//! hash a tree's inputs and to find the layer that sets a value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::error::LoadError;
use crate::yaml::{NodeId, Stream};

/// The file names kustomize reads as a folder's kustomization, in its order.
pub(crate) const FILE_NAMES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file of a folder, if it has one.
pub(crate) fn file_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// One `images:` entry of a kustomization.
#[derive(Debug, Clone)]
pub(crate) struct ImageEntry {
    /// The image name it matches, as written in manifests.
    pub name: String,
    /// `newName`.
    pub new_name: Option<String>,
    /// `newTag`.
    pub new_tag: Option<String>,
    /// `digest`.
    pub digest: Option<String>,
}

/// What one kustomization reads and sets, as far as this crate needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    /// Its folder.
    pub dir: PathBuf,
    /// Its kustomization file.
    pub file: PathBuf,
    /// Folders it builds on (`resources`, `bases`, `components` naming folders).
    pub includes: Vec<PathBuf>,
    /// Manifest files it lists in `resources`.
    pub resources: Vec<PathBuf>,
    /// Patch files (`patches[].path`, `patchesStrategicMerge`).
    pub patches: Vec<PathBuf>,
    /// Its `images:` entries.
    pub images: Vec<ImageEntry>,
    /// `namePrefix` and `nameSuffix`.
    pub name_prefix: String,
    /// See `name_prefix`.
    pub name_suffix: String,
    /// The keys of `commonAnnotations`.
    pub common_annotations: Vec<String>,
    /// Why it may not be built: a path leaving the checkout, a remote resource.
    pub refused: Vec<String>,
}

/// The kustomizations of a checkout and the ones they include.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Every kustomization read, by folder.
    pub nodes: BTreeMap<PathBuf, Node>,
    /// Kustomization files that could not be read.
    pub errors: Vec<LoadError>,
}

impl Tree {
    /// Reads the kustomizations of `dirs` and every one they include,
    /// refusing paths that leave `root`.
    pub fn read(root: &Path, dirs: impl IntoIterator<Item = PathBuf>) -> Tree {
        let mut tree = Tree::default();
        let mut pending: Vec<PathBuf> = dirs.into_iter().collect();
        while let Some(dir) = pending.pop() {
            if tree.nodes.contains_key(&dir) {
                continue;
            }
            let Some(file) = file_in(&dir) else {
                continue;
            };
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(source) => {
                    tree.errors.push(LoadError::Io { path: file, source });
                    continue;
                }
            };
            match read_node(root, &dir, &file, &text) {
                Ok(node) => {
                    pending.extend(node.includes.iter().cloned());
                    tree.nodes.insert(dir, node);
                }
                Err(error) => tree.errors.push(*error),
            }
        }
        tree
    }

    /// The folders `dir` builds on, itself first, each once, depth first.
    pub fn closure(&self, dir: &Path) -> Vec<&Node> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        self.visit(dir, &mut seen, &mut out);
        out
    }

    fn visit<'t>(&'t self, dir: &Path, seen: &mut BTreeSet<PathBuf>, out: &mut Vec<&'t Node>) {
        if !seen.insert(dir.to_path_buf()) {
            return;
        }
        let Some(node) = self.nodes.get(dir) else {
            return;
        };
        out.push(node);
        for include in &node.includes {
            self.visit(include, seen, out);
        }
    }

    /// The folders among `dirs` that no other folder among them includes.
    pub fn roots(&self, dirs: &[PathBuf]) -> Vec<PathBuf> {
        let mut included = BTreeSet::new();
        for dir in dirs {
            for node in self.closure(dir).into_iter().skip(1) {
                included.insert(node.dir.clone());
            }
        }
        dirs.iter()
            .filter(|dir| !included.contains(*dir))
            .cloned()
            .collect()
    }

    /// Every path from `root` to each folder it builds on, with the name
    /// prefix and suffix the layers above that folder (and it) add.
    pub fn chains(&self, root: &Path) -> Vec<Chain> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.walk_chains(root, &mut path, &mut out);
        out
    }

    fn walk_chains(&self, dir: &Path, path: &mut Vec<PathBuf>, out: &mut Vec<Chain>) {
        if path.iter().any(|p| p == dir) {
            return;
        }
        let Some(node) = self.nodes.get(dir) else {
            return;
        };
        path.push(dir.to_path_buf());
        out.push(Chain { dirs: path.clone() });
        for include in &node.includes {
            self.walk_chains(include, path, out);
        }
        path.pop();
    }

    /// The kustomization that lists `file` as a resource or patch.
    pub fn owner_of(&self, file: &Path) -> Option<&Node> {
        self.nodes
            .values()
            .find(|n| n.resources.iter().chain(&n.patches).any(|f| f == file) || n.file == file)
    }
}

/// The layers from a build root down to one folder it builds on: root first.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    /// The folders, root first.
    pub dirs: Vec<PathBuf>,
}

impl Chain {
    /// The name kustomize gives, at the root, an object named `name` in
    /// the last folder: every layer's prefix and suffix around it.
    pub fn built_name(&self, tree: &Tree, name: &str) -> String {
        let layers: Vec<&Node> = self.dirs.iter().filter_map(|d| tree.nodes.get(d)).collect();
        let prefix: String = layers.iter().map(|n| n.name_prefix.as_str()).collect();
        let suffix: String = layers
            .iter()
            .rev()
            .map(|n| n.name_suffix.as_str())
            .collect();
        format!("{prefix}{name}{suffix}")
    }
}

/// Reads one kustomization file.
fn read_node(root: &Path, dir: &Path, file: &Path, text: &str) -> Result<Node, Box<LoadError>> {
    let stream = Stream::parse(text)
        .map_err(|error| LoadError::Syntax {
            path: file.to_path_buf(),
            line: error.line,
            column: error.column,
            message: error.message,
        })
        .map_err(Box::new)?;
    let mut node = Node {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        ..Node::default()
    };
    let Some(&top) = stream.docs.first() else {
        return Ok(node);
    };
    let reader = NodeReader {
        stream: &stream,
        root,
        dir,
        file,
    };
    for key in ["resources", "bases", "components"] {
        for (entry, line) in reader.strings(top, key) {
            match reader.local(&entry, line, key) {
                Ok(path) if path.is_dir() => node.includes.push(path),
                Ok(path) => node.resources.push(path),
                Err(why) => node.refused.push(why),
            }
        }
    }
    for (entry, line) in reader.strings(top, "patchesStrategicMerge") {
        if entry.contains('\n') {
            continue;
        }
        reader.keep_file(&entry, line, "patchesStrategicMerge", &mut node, true);
    }
    for key in ["patches", "patchesJson6902", "replacements"] {
        for item in reader.items(top, key) {
            let Some(value) = stream.get(item, "path") else {
                continue;
            };
            if let Some(entry) = stream.str(value) {
                let line = stream.nodes[value].line;
                reader.keep_file(entry, line, key, &mut node, key == "patches");
            }
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        for item in reader.items(top, key) {
            for field in ["files", "envs"] {
                for (entry, line) in reader.strings(item, field) {
                    let path = entry.rsplit_once('=').map_or(entry.as_str(), |(_, p)| p);
                    reader.keep_file(path, line, key, &mut node, false);
                }
            }
            if let Some((entry, line)) = reader.string(item, "env") {
                reader.keep_file(&entry, line, key, &mut node, false);
            }
        }
    }
    for key in [
        "crds",
        "configurations",
        "generators",
        "transformers",
        "validators",
    ] {
        for (entry, line) in reader.strings(top, key) {
            if !entry.contains('\n') {
                reader.keep_file(&entry, line, key, &mut node, false);
            }
        }
    }
    if let Some(openapi) = stream.get(top, "openapi")
        && let Some((entry, line)) = reader.string(openapi, "path")
    {
        reader.keep_file(&entry, line, "openapi", &mut node, false);
    }
    for item in reader.items(top, "images") {
        let field = |key: &str| {
            stream
                .get(item, key)
                .and_then(|v| stream.str(v))
                .map(str::to_string)
        };
        node.images.push(ImageEntry {
            name: field("name").unwrap_or_default(),
            new_name: field("newName"),
            new_tag: field("newTag"),
            digest: field("digest"),
        });
    }
    node.name_prefix = reader.string(top, "namePrefix").unwrap_or_default().0;
    node.name_suffix = reader.string(top, "nameSuffix").unwrap_or_default().0;
    if let Some(map) = stream.get(top, "commonAnnotations")
        && let Some(entries) = stream.entries(map)
    {
        node.common_annotations = entries
            .filter_map(|(k, _)| stream.str(k).map(str::to_string))
            .collect();
    }
    Ok(node)
}

struct NodeReader<'s, 'a> {
    stream: &'s Stream<'a>,
    root: &'s Path,
    dir: &'s Path,
    file: &'s Path,
}

impl NodeReader<'_, '_> {
    fn string(&self, map: NodeId, key: &str) -> Option<(String, usize)> {
        let value = self.stream.get(map, key)?;
        let text = self.stream.str(value)?;
        Some((text.to_string(), self.stream.nodes[value].line))
    }

    fn strings(&self, map: NodeId, key: &str) -> Vec<(String, usize)> {
        self.items(map, key)
            .into_iter()
            .filter_map(|item| {
                let text = self.stream.str(item)?;
                Some((text.to_string(), self.stream.nodes[item].line))
            })
            .collect()
    }

    fn items(&self, map: NodeId, key: &str) -> Vec<NodeId> {
        self.stream
            .get(map, key)
            .and_then(|list| self.stream.items(list))
            .map(<[NodeId]>::to_vec)
            .unwrap_or_default()
    }

    /// A path the kustomization names, when it is in the checkout.
    fn local(&self, entry: &str, line: usize, key: &str) -> Result<PathBuf, String> {
        let at = format!("{}:{line}: {key}: {entry}", self.file.display());
        let path = normalize(&self.dir.join(entry));
        if !path.starts_with(self.root) {
            return Err(format!("{at}: points outside the checkout"));
        }
        if crate::confine::inside(self.root, &path).is_err() {
            return Err(format!("{at}: a symlink that leads outside the checkout"));
        }
        if std::fs::symlink_metadata(&path).is_err() {
            // Anything kustomize cannot find on disk it would fetch as a
            // remote target; a config repo's build reads only the repo.
            return Err(format!(
                "{at}: no such file or folder in the checkout (remote resources are not fetched)"
            ));
        }
        Ok(path)
    }

    fn keep_file(&self, entry: &str, line: usize, key: &str, node: &mut Node, patch: bool) {
        match self.local(entry, line, key) {
            Ok(path) if patch => node.patches.push(path),
            Ok(_) => {}
            Err(why) => node.refused.push(why),
        }
    }
}

/// `path` with `.` and `..` resolved without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
