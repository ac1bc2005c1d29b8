//! A loaded checkout, and the edits made against it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flux_image::{ImageRef, Name};

use crate::edit::{self, Change, EditError};
use crate::error::LoadError;
use crate::generate::{self, FluxConfig, Generation};
use crate::id::ResourceId;
use crate::kustomize::{self, Kustomize};
use crate::load::{self, FileIndex, Found, LoadOptions};
use crate::policy::{PolicyKey, PolicyUpdate};
use crate::spelling;
use crate::workload::{Container, ImageSource, NodePath, Resource, Workload, WorkloadKind};
use crate::yaml::{Spare, Stream};

/// A manifest file of the checkout.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// Its path.
    pub path: PathBuf,
    /// For a `kustomization.yaml` read on its own, the name of its workload (its folder).
    pub kustomization: Option<String>,
    /// For a kustomize build root's kustomization file, what kustomize built:
    /// the objects to sync, which the resources of this file are read from.
    pub built: Option<Arc<str>>,
}

/// Everything the manifests under some paths say: resources, workloads,
/// and the problems found on the way.
#[derive(Debug)]
pub struct Checkout {
    /// The manifest files read, in walk order.
    pub files: Vec<ManifestFile>,
    /// Every resource, in file order.
    pub resources: Vec<Resource>,
    /// Every workload, in file order.
    pub workloads: Vec<Workload>,
    /// Problems: each names a file; everything else was still loaded.
    pub errors: Vec<LoadError>,
    pub(crate) options: LoadOptions,
    /// Every resource id: its index in `resources`, and in `workloads` for
    /// a workload. One map, so that an id is hashed and copied once.
    by_id: HashMap<ResourceId, Indexed>,
    /// The kustomize trees, when the paths hold any.
    pub(crate) kustomize: Option<Kustomize>,
    /// The paths whose manifests a `.flux.yaml`'s generators made: the
    /// folder and its configuration.
    pub(crate) generated: Vec<(PathBuf, FluxConfig)>,
    /// Each generated workload's entry in `generated`.
    pub(crate) generated_ids: HashMap<ResourceId, usize>,
}

/// Where a resource id's resource (and workload, if it is one) are.
#[derive(Debug, Clone, Copy)]
struct Indexed {
    resource: usize,
    workload: Option<usize>,
}

impl Checkout {
    /// Loads the manifests under `paths` (folders or files). Every path
    /// read stays inside the checkout's root ([`LoadOptions::root`], or
    /// each path itself): a path or symlink leading out of it is refused
    /// with an error, as are files past the size and YAML limits, and the
    /// rest still loads. A folder holding a kustomization is built by
    /// kustomize unless another one under `paths` includes it; the files
    /// of kustomize trees are read only through their builds. With
    /// manifest generation on, a path a `.flux.yaml` governs is what its
    /// generators make.
    pub fn load<P: AsRef<Path>>(paths: &[P], options: LoadOptions) -> Checkout {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        let all: Vec<PathBuf> = paths.iter().map(|p| absolute(p.as_ref())).collect();
        let root = options
            .root
            .as_deref()
            .map(absolute)
            .unwrap_or_else(|| common_folder(&all));
        let mut loaded = Vec::new();
        let mut generated = Vec::new();
        for (path, full) in paths.iter().map(AsRef::as_ref).zip(all) {
            match generation_of(&root, &full, &options) {
                Ok(Some(config)) => generated.push((full, config)),
                Ok(None) => {
                    let confined_to = options.root.as_deref().unwrap_or(path);
                    load::walk(path, confined_to, &mut found, &mut errors);
                    loaded.push(full);
                }
                Err(error) => errors.push(LoadError::Generate(error)),
            }
        }
        let mut kustomize = Kustomize::find(&root, &loaded);
        if let Some(trees) = &mut kustomize {
            found.retain(|f| !trees.owns(&f.path));
            errors.append(&mut trees.tree.errors);
        }
        let indexes = read_all(&found, &options);
        let resources = indexes.iter().map(|i| i.resources.len()).sum();
        let workloads = indexes.iter().map(|i| i.workloads.len()).sum();
        let mut checkout = Checkout {
            files: Vec::with_capacity(found.len()),
            resources: Vec::with_capacity(resources),
            workloads: Vec::with_capacity(workloads),
            errors,
            options,
            by_id: HashMap::with_capacity(resources),
            kustomize: None,
            generated: Vec::new(),
            generated_ids: HashMap::new(),
        };
        for (file, index) in found.iter().zip(indexes) {
            if index.refused {
                checkout.errors.extend(index.errors);
                continue;
            }
            checkout.files.push(ManifestFile {
                path: file.path.clone(),
                kustomization: load::is_kustomization(&file.path)
                    .then(|| load::kustomization_name(file)),
                built: None,
            });
            checkout.add(index);
        }
        if let Some(trees) = kustomize {
            checkout.add_builds(&root, trees);
        }
        checkout.add_generated(generated);
        checkout.share_repository_names();
        checkout
    }

    /// Makes the containers that run one repository share its name: a
    /// large checkout runs a few hundred repositories from tens of
    /// thousands of containers.
    fn share_repository_names(&mut self) {
        let mut names: HashSet<Name> = HashSet::new();
        for container in self.workloads.iter_mut().flat_map(|w| &mut w.containers) {
            match names.get(container.image.name()) {
                Some(name) => container.image.share_name(name),
                None => {
                    names.insert(container.image.name().clone());
                }
            }
        }
    }

    /// Runs each `.flux.yaml`'s generators and reads what they made.
    fn add_generated(&mut self, generated: Vec<(PathBuf, FluxConfig)>) {
        let settings = generation(&self.options);
        for (dir, config) in generated {
            let output = match generate::generate(&config, &dir, &settings) {
                Ok(output) => output,
                Err(error) => {
                    self.errors.push(LoadError::Generate(error));
                    continue;
                }
            };
            let index = load::index(&config.file, None, &output, &self.options);
            for workload in &index.workloads {
                self.generated_ids
                    .insert(workload.id.clone(), self.generated.len());
            }
            self.files.push(ManifestFile {
                path: config.file.clone(),
                kustomization: None,
                built: Some(Arc::from(output)),
            });
            self.generated.push((dir, config));
            self.add(index);
        }
    }

    /// Builds every tree's root and reads what it built.
    fn add_builds(&mut self, root: &Path, mut trees: Kustomize) {
        let outputs = build_all(&trees, root, &self.options);
        for (dir, output) in trees.roots.clone().into_iter().zip(outputs) {
            let file = trees.tree.nodes[&dir].file.clone();
            let output = match output {
                Ok(output) => output,
                Err(message) => {
                    self.errors.push(LoadError::Build {
                        path: file,
                        message,
                    });
                    continue;
                }
            };
            let index = load::index(&file, None, &output, &self.options);
            for workload in &index.workloads {
                trees.built.insert(workload.id.clone(), dir.clone());
            }
            self.files.push(ManifestFile {
                path: file,
                kustomization: None,
                built: Some(output),
            });
            self.add(index);
        }
        self.kustomize = Some(trees);
    }

    /// The kustomize build roots under the loaded paths, each with the
    /// folders its tree builds on (which are not synced on their own).
    pub fn builds(&self) -> Vec<(PathBuf, Vec<PathBuf>)> {
        let Some(trees) = &self.kustomize else {
            return Vec::new();
        };
        trees
            .roots
            .iter()
            .map(|root| {
                let includes = trees
                    .tree
                    .closure(root)
                    .iter()
                    .skip(1)
                    .map(|n| n.dir.clone())
                    .collect();
                (root.clone(), includes)
            })
            .collect()
    }

    /// What kustomize built for the build root whose kustomization file is `file`.
    pub fn built_output(&self, file: &Path) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == file)
            .and_then(|f| f.built.as_deref())
    }

    /// Loads one file's text, as if it were the whole checkout.
    pub fn from_text(path: &Path, text: &str, options: LoadOptions) -> Checkout {
        let kustomization = load::is_kustomization(path).then(|| {
            let found = Found {
                path: path.to_path_buf(),
                root: path.parent().unwrap_or(Path::new("")).to_path_buf(),
            };
            load::kustomization_name(&found)
        });
        let index = load::index(path, kustomization.as_deref(), text, &options);
        let mut checkout = Checkout {
            files: vec![ManifestFile {
                path: path.to_path_buf(),
                kustomization,
                built: None,
            }],
            resources: Vec::new(),
            workloads: Vec::new(),
            errors: Vec::new(),
            options,
            by_id: HashMap::new(),
            kustomize: None,
            generated: Vec::new(),
            generated_ids: HashMap::new(),
        };
        checkout.add(index);
        checkout
    }

    fn add(&mut self, index: FileIndex) {
        self.errors.extend(index.errors);
        let mut dropped = Vec::new();
        for resource in index.resources {
            if let Some(first) = self.by_id.get(&resource.id) {
                self.errors.push(LoadError::Duplicate {
                    id: resource.id.clone(),
                    first: self.resources[first.resource].location.file.to_path_buf(),
                    second: resource.location.file.to_path_buf(),
                });
                dropped.push(resource.location.clone());
                continue;
            }
            let indexed = Indexed {
                resource: self.resources.len(),
                workload: None,
            };
            self.by_id.insert(resource.id.clone(), indexed);
            self.resources.push(resource);
        }
        for workload in index.workloads {
            if dropped.contains(&workload.location) {
                continue;
            }
            // Every workload is also a resource of its file, read just before.
            if let Some(indexed) = self.by_id.get_mut(&workload.id) {
                indexed.workload = Some(self.workloads.len());
                self.workloads.push(workload);
            }
        }
    }

    /// The options the checkout was loaded with.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// The workload with this id.
    pub fn workload(&self, id: &ResourceId) -> Option<&Workload> {
        let n = self.by_id.get(id)?.workload?;
        Some(&self.workloads[n])
    }

    fn kustomization_of(&self, path: &Path) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.kustomization.as_deref())
    }

    /// Reads a parsed text as the file `path` of this checkout.
    fn index_of(&self, path: &Path, stream: &Stream<'_>) -> FileIndex {
        load::index_stream(
            path,
            self.kustomization_of(path),
            stream,
            &self.options,
            FileIndex::default(),
        )
    }

    /// The workload as `text` (the current text of its file) has it, with
    /// the parsed text and its index.
    fn current<'t>(&self, text: &'t str, id: &ResourceId) -> Result<Current<'t>, EditError> {
        let known = self
            .workload(id)
            .ok_or_else(|| EditError::Missing(format!("no workload {id}")))?;
        let path = known.location.file.to_path_buf();
        let stream = Stream::parse(text).map_err(EditError::Syntax)?;
        let index = self.index_of(&path, &stream);
        let workload = index
            .workloads
            .iter()
            .find(|w| &w.id == id)
            .cloned()
            .ok_or_else(|| EditError::Missing(format!("no workload {id} in {}", path.display())))?;
        Ok(Current {
            path,
            stream,
            index,
            workload,
        })
    }

    /// Applies `changes`, re-reads the result and checks that it differs by
    /// exactly those changes and still holds the same resources and
    /// containers; `holds` checks the intended value.
    fn edit(
        &self,
        text: &str,
        current: &Current<'_>,
        changes: &[Change],
        holds: impl Fn(&FileIndex) -> Result<(), EditError>,
    ) -> Result<String, EditError> {
        let doc = current.workload.location.doc;
        let edited = edit::apply(text, &current.stream, doc, changes)?;
        let after_stream = edit::reparse(&edited)?;
        edit::verify(&current.stream, &after_stream, doc, changes)?;
        let after = self.index_of(&current.path, &after_stream);
        same_shape(&current.index, &after)?;
        holds(&after)?;
        Ok(edited)
    }

    /// Sets the image of one container in `text`, the current text of the
    /// workload's file, and returns the new text. The repository keeps the
    /// file's spelling; only the tag (or digest) bytes change.
    pub fn set_image(
        &self,
        text: &str,
        id: &ResourceId,
        container: &str,
        image: &ImageRef,
    ) -> Result<String, EditError> {
        let current = self.current(text, id)?;
        let target = current.workload.container(container).ok_or_else(|| {
            EditError::Missing(format!("workload {id} has no container {container}"))
        })?;
        if target.image.name() != image.name() {
            return Err(EditError::Missing(format!(
                "container {container} of {id} runs {}, not {}",
                target.image.name(),
                image.name()
            )));
        }
        if target.image == *image {
            return Ok(text.to_string());
        }
        let changes = image_changes(&current.stream, &current.workload, target, image)?;
        self.edit(text, &current, &changes, |after| {
            let now = after
                .workloads
                .iter()
                .find(|w| w.id == *id)
                .and_then(|w| w.container(container));
            match now {
                Some(c) if c.image == *image => Ok(()),
                _ => Err(EditError::Verify(format!(
                    "container {container} of {id} does not read as {image} after the edit"
                ))),
            }
        })
    }

    /// Applies a policy update to the workload in `text` and returns the new text.
    pub fn update_policies(
        &self,
        text: &str,
        id: &ResourceId,
        update: &PolicyUpdate,
    ) -> Result<String, EditError> {
        let current = self.current(text, id)?;
        for key in update.add.iter().map(|(k, _)| k).chain(&update.remove) {
            if let PolicyKey::Tag(container) = key
                && current.workload.container(container).is_none()
            {
                return Err(EditError::Missing(format!(
                    "workload {id} has no container {container}"
                )));
            }
        }
        let changes = policy_changes(&current, update)?;
        if changes.is_empty() {
            return Ok(text.to_string());
        }
        self.edit(text, &current, &changes, |_| Ok(()))
    }
}

impl Checkout {
    /// Sets the images of containers of many workloads of the file `path`
    /// in `text`, its current text. Every edit is planned on one reading of
    /// the text, all are made in one pass, and the result is read back and
    /// checked once, as strictly as [`Checkout::set_image`] checks one:
    /// every document holds exactly the intended values and nothing else
    /// changed, the file holds the same resources and containers, and each
    /// container reads as its new image.
    ///
    /// Returns the new text and, per workload, whether its text changed, or
    /// the container whose edit is refused and why (that workload's edits
    /// are left out, the others' are made). `Err` when the edits cannot be
    /// checked together (the text does not parse, two edits meet, or the
    /// result does not verify): the caller then makes them one at a time,
    /// which says whose edit is wrong.
    pub(crate) fn set_images_in_file(
        &self,
        path: &Path,
        text: &str,
        workloads: &[ImageEdits<'_>],
    ) -> Result<(String, Vec<Result<bool, Refused>>), EditError> {
        let stream = Stream::parse(text).map_err(EditError::Syntax)?;
        let index = self.index_of(path, &stream);
        let before: HashMap<&ResourceId, &Workload> =
            index.workloads.iter().map(|w| (&w.id, w)).collect();
        let mut outcomes = Vec::with_capacity(workloads.len());
        let mut planned = Vec::new();
        for edits in workloads {
            let first = planned.len();
            let outcome = plan_images(path, text, &stream, &before, edits, &mut planned);
            if outcome.is_err() {
                planned.truncate(first);
            }
            outcomes.push(outcome.map(|()| planned.len() > first));
        }
        if planned.is_empty() {
            return Ok((text.to_string(), outcomes));
        }
        let replacements = planned
            .iter()
            .map(|p| (p.range.clone(), p.replacement.clone()))
            .collect();
        let edited = edit::splice(text, replacements)
            .ok_or_else(|| EditError::Verify("two edits of the file meet".into()))?;
        {
            let after_stream = edit::reparse(&edited)?;
            let changes: Vec<(usize, &[Change])> = planned
                .iter()
                .map(|p| (p.doc, std::slice::from_ref(&p.change)))
                .collect();
            edit::verify_each(&stream, &after_stream, &changes)?;
            let after = self.index_of(path, &after_stream);
            same_shape(&index, &after)?;
            let now: HashMap<&ResourceId, &Workload> =
                after.workloads.iter().map(|w| (&w.id, w)).collect();
            for p in &planned {
                let image = now
                    .get(p.id)
                    .and_then(|w| w.container(p.container))
                    .map(|c| &c.image);
                if image != Some(p.image) {
                    return Err(EditError::Verify(format!(
                        "container {} of {} does not read as {} after the edit",
                        p.container, p.id, p.image
                    )));
                }
            }
        }
        Ok((edited, outcomes))
    }
}

/// The images to give containers of one workload: container name and image.
#[derive(Debug, Clone)]
pub struct ImageEdits<'a> {
    /// The workload.
    pub id: &'a ResourceId,
    /// Each container's new image.
    pub containers: Vec<(&'a str, &'a ImageRef)>,
}

/// Why a workload's edit was refused: the container, and the error.
pub type Refused = (String, EditError);

/// One change of a file planned on its unedited text, and what it is for.
struct Planned<'e> {
    id: &'e ResourceId,
    container: &'e str,
    image: &'e ImageRef,
    doc: usize,
    change: Change,
    range: std::ops::Range<usize>,
    replacement: String,
}

/// Plans the changes that give a workload's containers their images, with
/// the checks [`Checkout::set_image`] makes before editing, onto `planned`.
fn plan_images<'e>(
    path: &Path,
    text: &str,
    stream: &Stream<'_>,
    workloads: &HashMap<&ResourceId, &Workload>,
    edits: &ImageEdits<'e>,
    planned: &mut Vec<Planned<'e>>,
) -> Result<(), Refused> {
    let id = edits.id;
    let Some(workload) = workloads.get(id) else {
        let first = edits.containers.first().map_or("", |(c, _)| *c);
        let missing = format!("no workload {id} in {}", path.display());
        return Err((first.to_string(), EditError::Missing(missing)));
    };
    for &(container, image) in &edits.containers {
        let refused = |e: EditError| (container.to_string(), e);
        let target = workload.container(container).ok_or_else(|| {
            refused(EditError::Missing(format!(
                "workload {id} has no container {container}"
            )))
        })?;
        if target.image.name() != image.name() {
            return Err(refused(EditError::Missing(format!(
                "container {container} of {id} runs {}, not {}",
                target.image.name(),
                image.name()
            ))));
        }
        if target.image == *image {
            continue;
        }
        let doc = workload.location.doc;
        for change in image_changes(stream, workload, target, image).map_err(refused)? {
            let (range, replacement) = edit::plan(text, stream, doc, &change).map_err(refused)?;
            planned.push(Planned {
                id,
                container,
                image,
                doc,
                change,
                range,
                replacement,
            });
        }
    }
    Ok(())
}

/// A workload as the current text of its file has it.
struct Current<'t> {
    path: PathBuf,
    stream: Stream<'t>,
    index: FileIndex,
    workload: Workload,
}

fn read_all(found: &[Found], options: &LoadOptions) -> Vec<FileIndex> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<FileIndex>> = (0..found.len()).map(|_| None).collect();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut buffer = Vec::new();
                    let mut spare = Spare::default();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = found.get(n) else { break };
                        done.push((n, read_one(file, options, &mut buffer, &mut spare)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a loader thread does not panic"))
            .collect::<Vec<_>>()
    });
    for (n, index) in results {
        slots[n] = Some(index);
    }
    slots.into_iter().map(Option::unwrap_or_default).collect()
}

/// The `.flux.yaml` whose generators make the manifests of `path`, when
/// manifest generation is on and one applies (`scanForFiles` reads the
/// path's files).
fn generation_of(
    root: &Path,
    path: &Path,
    options: &LoadOptions,
) -> Result<Option<FluxConfig>, generate::GenerateError> {
    if !options.manifest_generation {
        return Ok(None);
    }
    let config = generate::find(root, path)?;
    Ok(config.filter(|c| !matches!(c.kind, generate::ConfigKind::ScanForFiles)))
}

/// How a checkout loaded with `options` runs its generators and updaters.
pub(crate) fn generation(options: &LoadOptions) -> Generation {
    Generation {
        timeout: options.generation_timeout,
        options: LoadOptions {
            default_namespace: options.default_namespace.clone(),
            ..LoadOptions::default()
        },
        ..Generation::default()
    }
}

/// Builds every root of the trees, a few at a time.
fn build_all(
    trees: &Kustomize,
    root: &Path,
    options: &LoadOptions,
) -> Vec<Result<Arc<str>, String>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let next = AtomicUsize::new(0);
    let cache = options.builds.as_deref();
    let mut results: Vec<(usize, Result<Arc<str>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(dir) = trees.roots.get(n) else { break };
                        done.push((
                            n,
                            kustomize::build(&trees.tree, root, dir, &options.build, cache),
                        ));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a build thread does not panic"))
            .collect()
    });
    results.sort_by_key(|(n, _)| *n);
    results.into_iter().map(|(_, r)| r).collect()
}

fn absolute(path: &Path) -> PathBuf {
    kustomize::normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The deepest folder holding every path (a file's folder, for a file).
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let folder = |p: &PathBuf| {
        if p.is_file() {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            p.clone()
        }
    };
    let mut common = paths.first().map(folder).unwrap_or_default();
    for path in paths.iter().skip(1).map(folder) {
        while !path.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

/// Reads and indexes one file; `buffer` and `spare` are room kept from
/// file to file.
fn read_one(
    file: &Found,
    options: &LoadOptions,
    buffer: &mut Vec<u8>,
    spare: &mut Spare,
) -> FileIndex {
    buffer.clear();
    if let Err(error) = read_within(&file.path, options.max_file_bytes, buffer) {
        return FileIndex {
            refused: matches!(error, LoadError::TooLarge { .. }),
            errors: vec![error],
            ..FileIndex::default()
        };
    }
    let text = match std::str::from_utf8(buffer) {
        Ok(text) => text,
        Err(error) => {
            let mut index = FileIndex::default();
            index.errors.push(LoadError::Invalid {
                path: file.path.clone(),
                line: 1,
                message: format!("not UTF-8: {error}"),
            });
            return index;
        }
    };
    let kustomization = load::is_kustomization(&file.path).then(|| load::kustomization_name(file));
    load::index_reusing(&file.path, kustomization.as_deref(), text, options, spare)
}

/// Reads the file at `path` into `buffer`, refusing one of more than `limit`
/// bytes: by its size before reading, and by reading at most one byte more
/// (a file that grows meanwhile, or a special file with no size).
fn read_within(path: &Path, limit: u64, buffer: &mut Vec<u8>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = |size| LoadError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limit {
        return Err(too_large(size));
    }
    let read = file
        .take(limit.saturating_add(1))
        .read_to_end(buffer)
        .map_err(io)?;
    if read as u64 > limit {
        return Err(too_large(read as u64));
    }
    Ok(())
}

/// The same resources and the same containers, before and after an edit.
fn same_shape(before: &FileIndex, after: &FileIndex) -> Result<(), EditError> {
    fn ids(index: &FileIndex) -> Vec<&ResourceId> {
        index.resources.iter().map(|r| &r.id).collect()
    }
    fn containers(index: &FileIndex) -> Vec<(&ResourceId, Vec<&str>)> {
        index
            .workloads
            .iter()
            .map(|w| {
                (
                    &w.id,
                    w.containers.iter().map(|c| c.name.as_str()).collect(),
                )
            })
            .collect()
    }
    if ids(before) != ids(after) {
        return Err(EditError::Verify(
            "the resources in the file changed".into(),
        ));
    }
    if containers(before) != containers(after) {
        return Err(EditError::Verify(
            "the containers in the file changed".into(),
        ));
    }
    Ok(())
}

fn image_changes(
    stream: &Stream<'_>,
    workload: &Workload,
    target: &Container,
    image: &ImageRef,
) -> Result<Vec<Change>, EditError> {
    match &target.source {
        ImageSource::Pod(_) | ImageSource::Whole(_) => Ok(vec![Change::Set(
            workload
                .image_path(target)
                .expect("a container whose image is one scalar has its path"),
            spelling::respell(&target.spelling, image),
        )]),
        ImageSource::Split(split) => match &split.tag {
            Some(tag_path) => {
                let tag = image
                    .tag()
                    .filter(|_| image.digest().is_none())
                    .ok_or_else(|| EditError::Unsupported {
                        path: tag_path.to_string(),
                        line: target.line,
                        reason: format!("a separate tag field takes a tag, not {image}"),
                    })?;
                Ok(vec![Change::Set(tag_path.clone(), tag.to_string())])
            }
            None => {
                let root = stream.docs[workload.location.doc];
                let written = node_text(stream, root, &split.repository).unwrap_or_default();
                Ok(vec![Change::Set(
                    split.repository.clone(),
                    spelling::respell(&written, image),
                )])
            }
        },
        ImageSource::Kustomize(entry) => Ok(kustomize_changes(stream, workload, entry, image)),
    }
}

fn node_text(stream: &Stream<'_>, root: usize, path: &NodePath) -> Option<String> {
    let mut node = root;
    for step in &path.0 {
        node = match step {
            crate::workload::Step::Key(key) => stream.get(node, key)?,
            crate::workload::Step::Index(i) => *stream.items(node)?.get(*i)?,
        };
    }
    stream.str(node).map(str::to_string)
}

/// Like `kustomize edit set image`: a tag goes in `newTag`, a digest in
/// `digest`; whichever the new image lacks is removed.
fn kustomize_changes(
    stream: &Stream<'_>,
    workload: &Workload,
    entry: &NodePath,
    image: &ImageRef,
) -> Vec<Change> {
    let root = stream.docs[workload.location.doc];
    let has = |key: &str| {
        node_text(stream, root, &entry.join([crate::workload::Step::key(key)])).is_some()
    };
    let mut changes = Vec::new();
    for (key, value) in [("newTag", image.tag()), ("digest", image.digest())] {
        match (value, has(key)) {
            (Some(value), true) => changes.push(Change::Set(entry.join([key]), value.to_string())),
            (Some(value), false) => changes.push(Change::Insert(
                entry.clone(),
                key.to_string(),
                value.to_string(),
            )),
            (None, true) => changes.push(Change::Remove(entry.clone(), key.to_string())),
            (None, false) => {}
        }
    }
    changes
}

fn policy_changes(current: &Current<'_>, update: &PolicyUpdate) -> Result<Vec<Change>, EditError> {
    let workload = &current.workload;
    let metadata = workload.location.root.join(["metadata"]);
    let annotations_path = metadata.join(["annotations"]);
    let stream = &current.stream;
    let root = stream.docs[workload.location.doc];
    let metadata_node = node_at(stream, root, &metadata);
    if metadata_node.is_none_or(|m| stream.entries(m).is_none()) {
        return Err(EditError::Missing(format!(
            "workload {} has no metadata mapping",
            workload.id
        )));
    }
    let annotations_node = node_at(stream, root, &annotations_path);
    let mut present: BTreeMap<String, String> = workload.annotations.iter().cloned().collect();
    let mut changes = Vec::new();
    let mut new_entries = Vec::new();
    for key in &update.remove {
        for spelled in key.annotations() {
            if present.remove(&spelled).is_some() {
                changes.push(Change::Remove(annotations_path.clone(), spelled));
            }
        }
    }
    for (key, value) in &update.add {
        let spelled: Vec<String> = key
            .annotations()
            .into_iter()
            .filter(|k| present.contains_key(k))
            .collect();
        if spelled.is_empty() {
            new_entries.push((key.annotations().remove(0), value.clone()));
            continue;
        }
        for k in spelled {
            if present.get(&k) != Some(value) {
                changes.push(Change::Set(
                    annotations_path.join([crate::workload::Step::key(&k)]),
                    value.clone(),
                ));
            }
        }
    }
    let annotations_is_map = annotations_node.is_some_and(|a| stream.entries(a).is_some());
    if present.is_empty() && annotations_node.is_some() && !changes.is_empty() {
        // Every annotation there is going: remove the whole `annotations:`
        // entry (as Flux v1 did) rather than leave it null, then write the
        // new ones, if any, as a fresh one. Removing entry by entry would
        // leave a null that nothing can be inserted into.
        let mut replaced = vec![Change::Remove(metadata.clone(), "annotations".into())];
        if !new_entries.is_empty() {
            replaced.push(Change::InsertMap(
                metadata,
                "annotations".into(),
                new_entries,
            ));
        }
        return Ok(replaced);
    }
    if new_entries.is_empty() {
        return Ok(changes);
    }
    let empty_map =
        annotations_node.is_some_and(|a| stream.entries(a).is_some_and(|mut e| e.next().is_none()));
    let flow = annotations_node.is_some_and(|a| stream.nodes[a].flow);
    if annotations_is_map && (flow || !empty_map) {
        changes.extend(
            new_entries
                .into_iter()
                .map(|(k, v)| Change::Insert(annotations_path.clone(), k, v)),
        );
        return Ok(changes);
    }
    if annotations_node.is_some() {
        // `annotations:` with nothing (or an empty block) in it: replace the entry.
        changes.push(Change::Remove(metadata.clone(), "annotations".into()));
    }
    changes.push(Change::InsertMap(
        metadata,
        "annotations".into(),
        new_entries,
    ));
    Ok(changes)
}

fn node_at(stream: &Stream<'_>, root: usize, path: &NodePath) -> Option<usize> {
    let mut node = root;
    for step in &path.0 {
        node = match step {
            crate::workload::Step::Key(key) => stream.get(node, key)?,
            crate::workload::Step::Index(i) => *stream.items(node)?.get(*i)?,
        };
    }
    Some(node)
}

impl WorkloadKind {
    /// The kind as the original prints it in ids (lower-case).
    pub fn id_kind(self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }
}
