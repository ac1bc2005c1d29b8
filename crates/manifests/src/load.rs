//! Reading files: which files belong to a checkout, and what each holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flux_image::ImageRef;

use crate::error::LoadError;
use crate::id::{self, CLUSTER, ResourceId};
use crate::kustomize::{BuildCache, BuildOptions};
use crate::policy;
use crate::workload::{
    Container, ImageSource, Location, NodePath, Resource, SplitFields, Step, Workload, WorkloadKind,
};
use crate::yaml::{NodeId, Spare, Stream, Unreadable, YamlLimits};

/// The default of [`LoadOptions::max_file_bytes`]: 4 MiB, more than twice
/// the largest object etcd stores by default (1.5 MiB), so a file of
/// several large CRDs still loads.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 20;

/// How a checkout is read: how ids are made for resources that do not say
/// everything, what a file of it may not do, and how
/// kustomize trees are built and `.flux.yaml` commands run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The namespace of namespaced resources that name none.
    pub default_namespace: String,
    /// The checkout's root: no path read may lead out of it (by a symlink
    /// or `..`), and the folder a kustomization may read and where the
    /// other trees sharing a layer are looked for. When `None`, each path
    /// given to [`Checkout::load`] is its own root for the files read, and
    /// kustomize trees may read the paths' deepest common folder.
    ///
    /// [`Checkout::load`]: crate::Checkout::load
    pub root: Option<PathBuf>,
    /// Files larger than this are refused without being read.
    pub max_file_bytes: u64,
    /// Limits on the shape of each file's YAML.
    pub yaml: YamlLimits,
    /// How kustomize runs.
    pub build: BuildOptions,
    /// Builds kept from an earlier load, reused when their inputs are unchanged.
    pub builds: Option<Arc<BuildCache>>,
    /// Run the commands of `.flux.yaml` files (Flux v1's manifest
    /// generation); off, a `.flux.yaml` is ignored, as in Flux v1.
    pub manifest_generation: bool,
    /// The longest one generator or updater may run.
    pub generation_timeout: std::time::Duration,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            default_namespace: "default".to_string(),
            root: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            yaml: YamlLimits::default(),
            build: BuildOptions::default(),
            builds: None,
            manifest_generation: false,
            generation_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Reads a file size limit as flags spell it: bytes, or a number with a
/// `KiB`, `MiB` or `GiB` suffix (`4MiB`).
pub fn parse_file_size(text: &str) -> Result<u64, String> {
    let error = || format!("invalid size {text:?}: write it like 4194304, 512KiB, 4MiB or 1GiB");
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().map_err(|_| error())?;
    let unit: u64 = match text[digits..].trim() {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(error()),
    };
    number.checked_mul(unit).ok_or_else(error)
}

/// A manifest file found by the walk, and the folder it was found under.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub root: PathBuf,
}

/// The file names kustomize reads as a kustomization.
pub(crate) fn is_kustomization(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| crate::kustomize::FILE_NAMES.contains(&n))
}

/// Finds the manifest files under `root`: `*.yaml` and `*.yml`, skipping
/// hidden entries and Helm charts (folders holding `Chart.yaml`). A symlink
/// that leads out of `checkout` (the checkout's root) is refused, and the rest still walked.
pub(crate) fn walk(
    root: &Path,
    checkout: &Path,
    found: &mut Vec<Found>,
    errors: &mut Vec<LoadError>,
) {
    if let Err(error) = crate::confine::inside(checkout, root) {
        errors.push(error);
        return;
    }
    // A chart's templates are not manifests, whether the walk meets the
    // chart below a path or the path is (or is inside) the chart.
    if root.ancestors().any(|a| a.join("Chart.yaml").is_file()) {
        return;
    }
    if root.is_file() {
        found.push(Found {
            path: root.to_path_buf(),
            root: root.parent().unwrap_or(Path::new("")).to_path_buf(),
        });
        return;
    }
    walk_dir(root, root, checkout, found, errors);
}

fn walk_dir(
    root: &Path,
    dir: &Path,
    checkout: &Path,
    found: &mut Vec<Found>,
    errors: &mut Vec<LoadError>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            errors.push(LoadError::Io {
                path: dir.to_path_buf(),
                source,
            });
            return;
        }
    };
    // The entry's own file type costs no extra system call; a symlink is
    // followed only when it stays inside the root (hidden ones are never
    // looked at). One that leads out is refused whatever its name: whether
    // it is a folder would take looking outside.
    let mut refused = Vec::new();
    let mut paths: Vec<(PathBuf, bool)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let dir = match e.file_type() {
                Ok(t) if t.is_symlink() => {
                    if is_hidden(&path) {
                        return None;
                    }
                    match crate::confine::inside(checkout, &path) {
                        Ok(target) => target.is_dir(),
                        Err(error) => {
                            refused.push(error);
                            return None;
                        }
                    }
                }
                Ok(t) => t.is_dir(),
                Err(_) => false,
            };
            Some((path, dir))
        })
        .collect();
    if dir != root
        && paths
            .iter()
            .any(|(p, _)| p.file_name() == Some("Chart.yaml".as_ref()))
    {
        return;
    }
    // Refusals in path order, and none from a chart, which is not read.
    refused.sort_by(|a: &LoadError, b| a.path().cmp(b.path()));
    errors.append(&mut refused);
    paths.sort();
    for (path, is_dir) in paths {
        if is_hidden(&path) {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if is_dir {
            walk_dir(root, &path, checkout, found, errors);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            found.push(Found {
                path,
                root: root.to_path_buf(),
            });
        }
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// What one file holds.
#[derive(Debug, Default)]
pub(crate) struct FileIndex {
    pub resources: Vec<Resource>,
    pub workloads: Vec<Workload>,
    pub errors: Vec<LoadError>,
    /// The file was not read (too large, or past a YAML limit): it is no
    /// manifest file of the checkout, and nothing may read it again.
    pub refused: bool,
}

/// The name of a kustomization workload: its folder relative to the walked root.
pub(crate) fn kustomization_name(found: &Found) -> String {
    let dir = found.path.parent().unwrap_or(Path::new(""));
    let relative = dir.strip_prefix(&found.root).unwrap_or(dir);
    let name = relative.to_string_lossy().replace('\\', "/");
    if name.is_empty() {
        ".".to_string()
    } else {
        name
    }
}

/// Indexes the text of one file.
pub(crate) fn index(
    path: &Path,
    kustomization: Option<&str>,
    text: &str,
    options: &LoadOptions,
) -> FileIndex {
    index_reusing(path, kustomization, text, options, &mut Spare::default())
}

/// Indexes the text of one file, building its tree in `spare`'s room.
pub(crate) fn index_reusing(
    path: &Path,
    kustomization: Option<&str>,
    text: &str,
    options: &LoadOptions,
    spare: &mut Spare,
) -> FileIndex {
    let mut index = FileIndex::default();
    let stream = match Stream::parse_reusing(text, spare, &options.yaml) {
        Ok(stream) => stream,
        Err(Unreadable::Syntax(error)) => {
            index.errors.push(LoadError::Syntax {
                path: path.to_path_buf(),
                line: error.line,
                column: error.column,
                message: error.message,
            });
            return index;
        }
        Err(Unreadable::Limit(error)) => {
            index.errors.push(LoadError::Limit {
                path: path.to_path_buf(),
                line: error.line,
                what: error.what,
            });
            index.refused = true;
            return index;
        }
    };
    let index = index_stream(path, kustomization, &stream, options, index);
    spare.keep(stream);
    index
}

/// Indexes an already parsed file.
pub(crate) fn index_stream(
    path: &Path,
    kustomization: Option<&str>,
    stream: &Stream<'_>,
    options: &LoadOptions,
    mut index: FileIndex,
) -> FileIndex {
    let reader = Reader {
        stream,
        path,
        file: Arc::from(path),
        options,
    };
    for (doc, &root) in stream.docs.iter().enumerate() {
        match kustomization {
            Some(name) => reader.kustomization(doc, root, name, &mut index),
            None => reader.resource(doc, root, NodePath::default(), &mut index),
        }
    }
    index
}

struct Reader<'s, 'a> {
    stream: &'s Stream<'a>,
    path: &'s Path,
    /// `path`, shared by every location in the file.
    file: Arc<Path>,
    options: &'s LoadOptions,
}

impl Reader<'_, '_> {
    fn line(&self, node: NodeId) -> usize {
        self.stream.nodes[node].line
    }

    fn bytes(&self, node: NodeId) -> std::ops::Range<usize> {
        self.stream.nodes[node].span.clone()
    }

    fn invalid(&self, node: NodeId, message: String) -> LoadError {
        LoadError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(node),
            message,
        }
    }

    fn location(&self, doc: usize, node: NodeId, root: &NodePath) -> Location {
        Location {
            file: self.file.clone(),
            doc,
            root: root.clone(),
            line: self.line(node),
            bytes: self.bytes(node),
            indent: self.stream.nodes[node].col,
        }
    }

    fn resource(&self, doc: usize, node: NodeId, root: NodePath, index: &mut FileIndex) {
        let s = self.stream;
        if s.entries(node).is_none() {
            return;
        }
        let Some(kind) = s.get(node, "kind").and_then(|k| s.str(k)) else {
            return;
        };
        if kind.ends_with("List") {
            if let Some(items) = s.get(node, "items").and_then(|i| s.items(i)) {
                for (n, &item) in items.iter().enumerate() {
                    self.resource(
                        doc,
                        item,
                        root.join(["items".into(), Step::Index(n)]),
                        index,
                    );
                }
            }
            return;
        }
        let Some(name) = s
            .get_path(node, &["metadata", "name"])
            .and_then(|n| s.str(n))
        else {
            let error = self.invalid(node, format!("{kind} without metadata.name"));
            index.errors.push(error);
            return;
        };
        let namespace = if id::is_cluster_scoped(kind) {
            CLUSTER
        } else {
            s.get_path(node, &["metadata", "namespace"])
                .and_then(|n| s.str(n))
                .unwrap_or(&self.options.default_namespace)
        };
        let id = ResourceId::new(namespace, kind, name);
        let api_version = s
            .get(node, "apiVersion")
            .and_then(|v| s.str(v))
            .unwrap_or("");
        let location = self.location(doc, node, &root);
        index.resources.push(Resource {
            id: id.clone(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            location: location.clone(),
        });
        let (kind, containers) = if let Some(kind) = WorkloadKind::of_pod_kind(kind) {
            (kind, self.pod_containers(node, kind, &id, index))
        } else if kind == "HelmRelease" && is_helm_release_api(api_version) {
            (
                WorkloadKind::HelmRelease,
                self.helm_containers(node, &root, &id, index),
            )
        } else {
            return;
        };
        let annotations = self.annotations(node);
        let workload = self.workload(id, kind, location, containers, annotations, index);
        index.workloads.push(workload);
    }

    fn workload(
        &self,
        id: ResourceId,
        kind: WorkloadKind,
        location: Location,
        containers: Vec<Container>,
        annotations: Vec<(String, String)>,
        index: &mut FileIndex,
    ) -> Workload {
        let pairs = annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let (policies, invalid) = policy::from_annotations(pairs);
        for bad in invalid {
            index.errors.push(LoadError::Policy {
                path: self.path.to_path_buf(),
                line: location.line,
                workload: Box::new(id.clone()),
                annotation: bad.annotation,
                message: bad.message,
            });
        }
        Workload {
            id,
            kind,
            location,
            containers,
            policies,
            annotations,
        }
    }

    fn annotations(&self, node: NodeId) -> Vec<(String, String)> {
        let s = self.stream;
        let Some(map) = s.get_path(node, &["metadata", "annotations"]) else {
            return Vec::new();
        };
        let Some(entries) = s.entries(map) else {
            return Vec::new();
        };
        entries
            .filter_map(|(k, v)| Some((s.str(k)?.to_string(), s.str(v).unwrap_or("").to_string())))
            .collect()
    }

    fn container(
        &self,
        workload: &ResourceId,
        name: &str,
        spelling: String,
        source: ImageSource,
        at: NodeId,
        index: &mut FileIndex,
    ) -> Option<Container> {
        match ImageRef::parse(&spelling) {
            Ok(image) => Some(Container {
                name: name.to_string(),
                image,
                spelling,
                init: false,
                source,
                line: self.line(at),
                span: self.stream.nodes[at].span.clone(),
            }),
            Err(error) => {
                let message = format!("workload {workload}: container {name}: {error}");
                index.errors.push(self.invalid(at, message));
                None
            }
        }
    }

    fn pod_containers(
        &self,
        node: NodeId,
        kind: WorkloadKind,
        id: &ResourceId,
        index: &mut FileIndex,
    ) -> Vec<Container> {
        let s = self.stream;
        let mut containers = Vec::new();
        let Some(spec) = s.get_path(node, kind.pod_spec()) else {
            return containers;
        };
        for (field, init) in [("containers", false), ("initContainers", true)] {
            let Some(items) = s.get(spec, field).and_then(|c| s.items(c)) else {
                continue;
            };
            for (n, &item) in items.iter().enumerate() {
                let name = s.get(item, "name").and_then(|v| s.str(v)).unwrap_or("");
                let Some(image) = s.get(item, "image") else {
                    let message = format!("workload {id}: container {name:?} has no image");
                    index.errors.push(self.invalid(item, message));
                    continue;
                };
                let spelling = s.str(image).unwrap_or("").to_string();
                let source = ImageSource::Pod(n);
                if let Some(mut c) = self.container(id, name, spelling, source, image, index) {
                    c.init = init;
                    containers.push(c);
                }
            }
        }
        // A checkout keeps every workload's containers for as long as it is
        // in use; growth slack would be a third of a large checkout.
        containers.shrink_to_fit();
        containers
    }

    fn helm_containers(
        &self,
        node: NodeId,
        root: &NodePath,
        id: &ResourceId,
        index: &mut FileIndex,
    ) -> Vec<Container> {
        let s = self.stream;
        let mut containers: Vec<Container> = Vec::new();
        let Some(values) = s.get_path(node, &["spec", "values"]) else {
            return containers;
        };
        let values_path = root.join(["spec", "values"]);
        if let Some(found) = self.helm_image(values, &values_path) {
            containers.extend(self.helm_container(id, "chart-image", found, index));
        }
        for (key, value) in s.entries(values).into_iter().flatten() {
            let Some(key) = s.str(key) else { continue };
            if s.entries(value).is_none() {
                continue;
            }
            if let Some(found) = self.helm_image(value, &values_path.join([Step::key(key)])) {
                containers.extend(self.helm_container(id, key, found, index));
            }
        }
        for (alias, found) in self.helm_mapped(node, values, &values_path, id, index) {
            let container = self.helm_container(id, &alias, found, index);
            let Some(container) = container else { continue };
            match containers.iter_mut().find(|c| c.name == alias) {
                Some(existing) => *existing = container,
                None => containers.push(container),
            }
        }
        // As the original: the chart's own image first, then the others by
        // name, whatever order the values mapping has.
        let named = usize::from(containers.first().is_some_and(|c| c.name == "chart-image"));
        containers[named..].sort_by(|a, b| a.name.cmp(&b.name));
        containers
    }

    /// A container from an image found in the values. One that does not
    /// parse (an upper-case repository) is reported with its line, and the
    /// HelmRelease's other containers are still read; an empty image is no
    /// image at all.
    fn helm_container(
        &self,
        id: &ResourceId,
        name: &str,
        found: HelmImage,
        index: &mut FileIndex,
    ) -> Option<Container> {
        if found.spelling.trim().is_empty() {
            return None;
        }
        self.container(id, name, found.spelling, found.source, found.at, index)
    }

    /// Reads an image out of a values mapping by the original's rules.
    fn helm_image(&self, map: NodeId, path: &NodePath) -> Option<HelmImage> {
        let s = self.stream;
        let image = s.get(map, "image")?;
        if let Some(repository) = s.str(image) {
            let tag = s.get(map, "tag").filter(|&t| s.str(t).is_some());
            let registry = s.get(map, "registry").filter(|&r| s.str(r).is_some());
            let spelling = compose(
                registry.and_then(|r| s.str(r)),
                repository,
                tag.and_then(|t| s.str(t)),
            );
            let source = if tag.is_none() && registry.is_none() {
                ImageSource::Whole(path.join(["image"]))
            } else {
                ImageSource::Split(Box::new(SplitFields {
                    repository: path.join(["image"]),
                    tag: tag.map(|_| path.join(["tag"])),
                    registry: registry.map(|_| path.join(["registry"])),
                }))
            };
            return Some(HelmImage {
                spelling,
                source,
                at: image,
            });
        }
        let repository_node = s.get(image, "repository")?;
        let repository = s.str(repository_node)?;
        let tag = s.get(image, "tag").filter(|&t| s.str(t).is_some());
        let registry = s.get(image, "registry").filter(|&r| s.str(r).is_some());
        let base = path.join(["image"]);
        Some(HelmImage {
            spelling: compose(
                registry.and_then(|r| s.str(r)),
                repository,
                tag.and_then(|t| s.str(t)),
            ),
            source: ImageSource::Split(Box::new(SplitFields {
                repository: base.join(["repository"]),
                tag: tag.map(|_| base.join(["tag"])),
                registry: registry.map(|_| base.join(["registry"])),
            })),
            at: repository_node,
        })
    }

    /// Images named by `repository.fluxcd.io/<alias>` (with optional
    /// `tag.fluxcd.io/<alias>` and `registry.fluxcd.io/<alias>`) annotations.
    fn helm_mapped(
        &self,
        node: NodeId,
        values: NodeId,
        values_path: &NodePath,
        id: &ResourceId,
        index: &mut FileIndex,
    ) -> Vec<(String, HelmImage)> {
        let s = self.stream;
        let annotations = self.annotations(node);
        let lookup = |prefix: &str, alias: &str| {
            annotations
                .iter()
                .find(|(k, _)| k.strip_prefix(prefix) == Some(alias))
                .map(|(k, v)| (k.clone(), v.clone()))
        };
        let mut found = Vec::new();
        for (key, dotted) in &annotations {
            let Some(alias) = key.strip_prefix("repository.fluxcd.io/") else {
                continue;
            };
            let mut resolve = |annotation: &str, dotted: &str| -> Option<(NodeId, NodePath)> {
                let keys: Vec<&str> = dotted.split('.').collect();
                let hit = s.get_path(values, &keys).filter(|&n| s.str(n).is_some());
                if hit.is_none() {
                    let message = format!(
                        "workload {id}: annotation {annotation}: no value at spec.values.{dotted}"
                    );
                    index.errors.push(self.invalid(node, message));
                }
                hit.map(|n| (n, values_path.join(keys.iter().copied().map(Step::key))))
            };
            let Some((repo_node, repo_path)) = resolve(key, dotted) else {
                continue;
            };
            let mut field = |prefix: &str| {
                let (annotation, dotted) = lookup(prefix, alias)?;
                resolve(&annotation, &dotted)
            };
            let tag = field("tag.fluxcd.io/");
            let registry = field("registry.fluxcd.io/");
            let spelling = compose(
                registry.as_ref().and_then(|(n, _)| s.str(*n)),
                s.str(repo_node).unwrap_or(""),
                tag.as_ref().and_then(|(n, _)| s.str(*n)),
            );
            let source = ImageSource::Split(Box::new(SplitFields {
                repository: repo_path,
                tag: tag.map(|(_, p)| p),
                registry: registry.map(|(_, p)| p),
            }));
            found.push((
                alias.to_string(),
                HelmImage {
                    spelling,
                    source,
                    at: repo_node,
                },
            ));
        }
        found
    }

    fn kustomization(&self, doc: usize, root: NodeId, name: &str, index: &mut FileIndex) {
        let s = self.stream;
        let Some(images) = s.get(root, "images") else {
            return;
        };
        let id = ResourceId::new(CLUSTER, "Kustomization", name);
        let location = self.location(doc, root, &NodePath::default());
        index.resources.push(Resource {
            id: id.clone(),
            api_version: s
                .get(root, "apiVersion")
                .and_then(|v| s.str(v))
                .unwrap_or("")
                .to_string(),
            kind: "Kustomization".to_string(),
            location: location.clone(),
        });
        let mut containers = Vec::new();
        for (n, &entry) in s.items(images).unwrap_or(&[]).iter().enumerate() {
            let field = |key: &str| s.get(entry, key).and_then(|v| s.str(v));
            let Some(image_name) = field("name") else {
                let message = format!("{id}: images[{n}] has no name");
                index.errors.push(self.invalid(entry, message));
                continue;
            };
            let mut spelling = field("newName").unwrap_or(image_name).to_string();
            if let Some(tag) = field("newTag") {
                spelling = format!("{spelling}:{tag}");
            }
            if let Some(digest) = field("digest") {
                spelling = format!("{spelling}@{digest}");
            }
            let source = ImageSource::Kustomize(NodePath(vec!["images".into(), Step::Index(n)]));
            containers.extend(self.container(&id, image_name, spelling, source, entry, index));
        }
        let annotations = self.annotations(root);
        let workload = self.workload(
            id,
            WorkloadKind::Kustomization,
            location,
            containers,
            annotations,
            index,
        );
        index.workloads.push(workload);
    }
}

struct HelmImage {
    spelling: String,
    source: ImageSource,
    at: NodeId,
}

fn is_helm_release_api(api_version: &str) -> bool {
    api_version.starts_with("helm.fluxcd.io/") || api_version.starts_with("helm.toolkit.fluxcd.io/")
}

/// Joins split image fields: `registry/repository:tag`. A tag field replaces
/// any tag the repository field carries.
pub(crate) fn compose(registry: Option<&str>, repository: &str, tag: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(registry) = registry.filter(|r| !r.is_empty()) {
        out.push_str(registry.trim_end_matches('/'));
        out.push('/');
    }
    match tag {
        Some(tag) => {
            let (bare, _, _) = crate::spelling::split(repository);
            out.push_str(bare);
            out.push(':');
            out.push_str(tag);
        }
        None => out.push_str(repository),
    }
    out
}
