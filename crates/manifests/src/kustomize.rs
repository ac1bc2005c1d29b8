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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flux_image::ImageRef;

use crate::checkout::Checkout;
use crate::edit::EditError;
use crate::error::LoadError;
use crate::id::ResourceId;
use crate::load::LoadOptions;
use crate::policy::{PolicyKey, PolicyUpdate};
use crate::workload::Workload;
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

/// How builds run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Longest a build may take.
    pub timeout: Duration,
    /// Most bytes a build may write.
    pub max_output: usize,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            timeout: Duration::from_secs(60),
            max_output: 64 << 20,
        }
    }
}

/// A build kept: the hash of the files it read, and its output.
type Kept = (Vec<u8>, Arc<str>);

/// Builds kept from one load to the next: a tree whose input files did not
/// change is not built again.
#[derive(Debug, Default)]
pub struct BuildCache {
    builds: Mutex<HashMap<PathBuf, Kept>>,
    runs: std::sync::atomic::AtomicUsize,
}

impl BuildCache {
    /// How many times kustomize ran for this cache.
    pub fn runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The kustomize program: `kustomize build`, else `kubectl kustomize`.
fn program() -> Option<(PathBuf, &'static str)> {
    let path = std::env::var_os("PATH")?;
    for (name, verb) in [("kustomize", "build"), ("kubectl", "kustomize")] {
        if let Some(found) = std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        {
            return Some((found, verb));
        }
    }
    None
}

/// Builds the tree at `dir` (in the checkout at `root`), or reuses the
/// cached build when none of the files it reads changed.
pub(crate) fn build(
    tree: &Tree,
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    cache: Option<&BuildCache>,
) -> Result<Arc<str>, String> {
    let refused: Vec<&str> = tree
        .closure(dir)
        .iter()
        .flat_map(|n| n.refused.iter().map(String::as_str))
        .collect();
    if !refused.is_empty() {
        return Err(format!("not built: {}", refused.join("; ")));
    }
    let key = dir.strip_prefix(root).unwrap_or(dir).to_path_buf();
    let Some((program, verb)) = program() else {
        return Err(
            "not built: neither `kustomize` nor `kubectl` is on the PATH to build it".into(),
        );
    };
    let Some(cache) = cache else {
        return run(&program, verb, dir, options).map(Arc::from);
    };
    let hash = inputs_hash(tree, root, dir, &program);
    if let Some((known, output)) = cache.builds.lock().expect("the cache lock").get(&key)
        && *known == hash
    {
        return Ok(output.clone());
    }
    cache
        .runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let output: Arc<str> = Arc::from(run(&program, verb, dir, options)?);
    cache
        .builds
        .lock()
        .expect("the cache lock")
        .insert(key, (hash, output.clone()));
    Ok(output)
}

/// A hash of every file under the folders a tree reads (kustomize's load
/// restrictor keeps a build to those), by path relative to the checkout.
fn inputs_hash(tree: &Tree, root: &Path, dir: &Path, program: &Path) -> Vec<u8> {
    use sha2::Digest as _;
    let mut files = BTreeSet::new();
    for node in tree.closure(dir) {
        collect_files(&node.dir, &mut files);
    }
    let mut hash = sha2::Sha256::new();
    hash.update(program.as_os_str().as_encoded_bytes());
    for file in files {
        hash.update([0]);
        hash.update(
            file.strip_prefix(root)
                .unwrap_or(&file)
                .as_os_str()
                .as_encoded_bytes(),
        );
        hash.update([0]);
        match std::fs::symlink_metadata(&file) {
            Ok(meta) if meta.is_symlink() => {
                if let Ok(target) = std::fs::read_link(&file) {
                    hash.update(target.as_os_str().as_encoded_bytes());
                }
            }
            _ => {
                if let Ok(bytes) = std::fs::read(&file) {
                    hash.update(&bytes);
                }
            }
        }
    }
    hash.finalize().to_vec()
}

fn collect_files(dir: &Path, files: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, files),
            Ok(_) => {
                files.insert(path);
            }
            Err(_) => {}
        }
    }
}

/// Runs one build with an empty environment, a timeout and bounded output.
fn run(program: &Path, verb: &str, dir: &Path, options: &BuildOptions) -> Result<String, String> {
    let mut child = Command::new(program)
        .arg(verb)
        .arg(dir)
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    let limit = options.max_output as u64;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = {
        let overflow = overflow.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = stdout.take(limit + 1).read_to_end(&mut bytes);
            if bytes.len() as u64 > limit {
                overflow.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            read.map(|_| bytes)
        })
    };
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.take(64 << 10).read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + options.timeout;
    let status = loop {
        if overflow.load(std::sync::atomic::Ordering::Relaxed) {
            break Err(format!(
                "not built: kustomize wrote more than {} bytes",
                options.max_output
            ));
        }
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                break Err(format!(
                    "not built: kustomize took longer than {:?}",
                    options.timeout
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("waiting for kustomize: {e}")),
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
    };
    let stdout = out
        .join()
        .expect("the reader does not panic")
        .map_err(|e| format!("reading kustomize's output: {e}"))?;
    let stderr = String::from_utf8_lossy(&err.join().expect("the reader does not panic"))
        .trim()
        .to_string();
    if !status.success() {
        return Err(format!("kustomize: {}", last_lines(&stderr)));
    }
    if stdout.len() as u64 > limit {
        return Err(format!(
            "not built: kustomize wrote more than {} bytes",
            options.max_output
        ));
    }
    String::from_utf8(stdout).map_err(|e| format!("kustomize's output is not UTF-8: {e}"))
}

/// Kustomize's message without klog's `E1201 12:00:00.000 run.go:72]` head.
fn last_lines(stderr: &str) -> String {
    let text = stderr.lines().rev().take(5).collect::<Vec<_>>();
    let joined = text.into_iter().rev().collect::<Vec<_>>().join("\n");
    match joined.split_once("] ") {
        Some((head, rest)) if head.starts_with(['E', 'W', 'I']) && !head.contains('\n') => {
            rest.to_string()
        }
        _ => joined,
    }
}

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
