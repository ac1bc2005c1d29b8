//! What a sync takes as input: manifests (one Kubernetes object each, with the file it
//! came from) and their resource ids.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

/// The namespace part of the id of a cluster-scoped object.
pub const CLUSTER_SCOPE: &str = "<cluster>";

/// Annotation that keeps a manifest out of syncs (`true` or `sync_only`).
pub const IGNORE_ANNOTATION: &str = "fluxcd.io/ignore";
/// The same, under the legacy prefix.
pub const LEGACY_IGNORE_ANNOTATION: &str = "flux.weave.works/ignore";
/// Annotation by which a manifest opts out of forced ownership (`"false"`): its
/// fields owned by another manager (`kubectl scale`, an autoscaler) are not
/// taken back, and a different value there fails the object with a conflict.
pub const FORCE_CONFLICTS_ANNOTATION: &str = "fluxcd.io/force-conflicts";

/// `<namespace>:<kind>/<name>` as in Flux (`sock-shop:deployment/carts`); the kind is
/// lower-case and cluster-scoped objects have the namespace `<cluster>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    namespace: Option<String>,
    kind: String,
    name: String,
}

impl ResourceId {
    /// An id; `None` as the namespace means cluster-scoped (or not yet known).
    pub fn new(namespace: Option<&str>, kind: &str, name: &str) -> Self {
        ResourceId {
            namespace: namespace
                .filter(|ns| *ns != CLUSTER_SCOPE)
                .map(str::to_string),
            kind: kind.to_ascii_lowercase(),
            name: name.to_string(),
        }
    }

    /// The namespace, `None` for cluster-scoped objects.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The kind, lower-case.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same object in another namespace (or cluster-scoped with `None`).
    pub fn with_namespace(&self, namespace: Option<&str>) -> Self {
        ResourceId::new(namespace, &self.kind, &self.name)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let namespace = self.namespace.as_deref().unwrap_or(CLUSTER_SCOPE);
        write!(f, "{namespace}:{}/{}", self.kind, self.name)
    }
}

/// Serialised as its text form, `<namespace>:<kind>/<name>`.
impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from its text form.
impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for ResourceId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (namespace, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("resource id {text:?} is not <namespace>:<kind>/<name>"))?;
        let (kind, name) = rest
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !namespace.is_empty())
            .ok_or_else(|| format!("resource id {text:?} is not <namespace>:<kind>/<name>"))?;
        Ok(ResourceId::new(Some(namespace), kind, name))
    }
}

/// Whether a manifest (or a live object) asks to be left alone by syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum IgnorePolicy {
    /// Synced as usual.
    #[default]
    No,
    /// `fluxcd.io/ignore: "true"`: never applied nor collected.
    Always,
    /// `fluxcd.io/ignore: sync_only`: not applied nor collected, still released into.
    SyncOnly,
}

impl IgnorePolicy {
    /// The policy an object's annotations state.
    pub fn of(object: &Value) -> Self {
        let annotations = &object["metadata"]["annotations"];
        let value = annotations[IGNORE_ANNOTATION]
            .as_str()
            .or_else(|| annotations[LEGACY_IGNORE_ANNOTATION].as_str());
        match value {
            Some("true") => IgnorePolicy::Always,
            Some("sync_only") => IgnorePolicy::SyncOnly,
            _ => IgnorePolicy::No,
        }
    }

    /// Whether syncs skip the object.
    pub fn skips_sync(self) -> bool {
        self != IgnorePolicy::No
    }
}

/// A manifest that could not be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ManifestError {
    /// The file (or other origin) the manifest came from.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

/// One Kubernetes object to sync, as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Its id; the namespace is the one written in the manifest (`None` when absent:
    /// the sync fills in the default namespace for namespaced kinds).
    pub id: ResourceId,
    /// Where it came from (a file path), for messages.
    pub source: String,
    /// The parsed document.
    pub object: Value,
    /// What its `fluxcd.io/ignore` annotation says.
    pub ignore: IgnorePolicy,
}

impl Manifest {
    /// A manifest from one parsed object; it must have `apiVersion`, `kind` and a name.
    pub fn from_object(source: &str, object: Value) -> Result<Manifest, ManifestError> {
        let error = |message: String| ManifestError {
            file: source.to_string(),
            line: None,
            message,
        };
        if !object.is_object() {
            return Err(error("the document is not a mapping".into()));
        }
        let kind = object["kind"].as_str().filter(|k| !k.is_empty());
        let kind = kind.ok_or_else(|| error("the document has no kind".into()))?;
        if object["apiVersion"].as_str().is_none_or(str::is_empty) {
            return Err(error(format!("the {kind} has no apiVersion")));
        }
        let name = object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty());
        let name = name.ok_or_else(|| error(format!("the {kind} has no metadata.name")))?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty());
        Ok(Manifest {
            id: ResourceId::new(namespace, kind, name),
            source: source.to_string(),
            ignore: IgnorePolicy::of(&object),
            object,
        })
    }

    /// Every object of a YAML (or JSON) text, `---`-separated documents and `kind: List`
    /// expanded; empty documents are skipped.
    ///
    /// A text past the parser's budget (nesting, documents, aliases: see
    /// [`budget`]) is refused, whatever its size: fluxd passes only files
    /// its manifest reader took, which has the same limits, but nothing
    /// here relies on that.
    pub fn from_yaml(source: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
        let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, budget())
            .map_err(|e| ManifestError {
                file: source.to_string(),
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            })?;
        let mut manifests = Vec::new();
        for document in documents.into_iter().filter(|d| !d.is_null()) {
            if document["kind"] == "List" && document["items"].is_array() {
                for item in document["items"].as_array().into_iter().flatten() {
                    manifests.push(Manifest::from_object(source, item.clone())?);
                }
                continue;
            }
            manifests.push(Manifest::from_object(source, document)?);
        }
        Ok(manifests)
    }
}

/// The parser's limits on one text. Its defaults already bound depth (64),
/// documents (1,024) and alias replays; they are spelled out because they
/// are what keeps a hostile file from costing unbounded memory, and an
/// alias bomb is cut short sooner (a manifest has no use for a hundred
/// thousand replayed nodes).
pub fn budget() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_documents: 1_024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 200_000,
        },
    }
}

/// The manifests of a checkout and the files that could not be read.
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    /// Every object read.
    pub manifests: Vec<Manifest>,
    /// Every file that failed, with its reason; the other files are still read.
    pub errors: Vec<ManifestError>,
}

impl ManifestSet {
    /// Reads every `.yaml`, `.yml` and `.json` file under `dir`, in path order.
    pub fn load_dir(dir: &Path) -> ManifestSet {
        let mut set = ManifestSet::default();
        let mut files: Vec<_> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(|entry| match entry {
                Ok(entry) => Some(entry),
                Err(error) => {
                    set.errors.push(ManifestError {
                        file: dir.display().to_string(),
                        line: None,
                        message: error.to_string(),
                    });
                    None
                }
            })
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        set.extend(read_all(&files));
        set
    }

    /// Parses files already read, `(source, text)` each, in their order: a
    /// caller can keep the texts (a few bytes per object) between syncs
    /// rather than the parsed objects (a hundred times more).
    pub fn parse(files: &[(String, String)]) -> ManifestSet {
        let mut set = ManifestSet::default();
        set.extend(in_parallel(files, |(source, text)| {
            let parsed = Manifest::from_yaml(source, text).map_err(Ok);
            (source.clone(), parsed)
        }));
        set
    }

    fn extend(&mut self, read: Vec<(String, FileResult)>) {
        let set = self;
        for (source, read) in read {
            match read {
                Ok(manifests) => set.manifests.extend(manifests),
                Err(error) => set
                    .errors
                    .push(error.unwrap_or_else(|message| ManifestError {
                        file: source,
                        line: None,
                        message,
                    })),
            }
        }
    }
}

type FileResult = Result<Vec<Manifest>, Result<ManifestError, String>>;

/// Reads and parses files on every core, keeping their order.
fn read_all(files: &[PathBuf]) -> Vec<(String, FileResult)> {
    in_parallel(files, |file| read_one(file))
}

/// `work` on every item, spread over every core, answers in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(work).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("parsing a manifest does not panic"))
            .collect()
    })
}

fn read_one(file: &Path) -> (String, FileResult) {
    let source = file.display().to_string();
    let result = match std::fs::read_to_string(file) {
        Ok(text) => Manifest::from_yaml(&source, &text).map_err(Ok),
        Err(error) => Err(Err(error.to_string())),
    };
    (source, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_id_reads_and_prints_the_flux_form() {
        let id: ResourceId = "sock-shop:Deployment/carts".parse().unwrap();
        assert_eq!(id.to_string(), "sock-shop:deployment/carts");
        let cluster: ResourceId = "<cluster>:namespace/sock-shop".parse().unwrap();
        assert_eq!(cluster.namespace(), None);
        assert_eq!(cluster.to_string(), "<cluster>:namespace/sock-shop");
        assert!("carts".parse::<ResourceId>().is_err());
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            "sock-shop:deployment/carts"
        );
    }

    #[test]
    fn multi_document_yaml_gives_one_manifest_per_object() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: a\n  \
                    annotations:\n    fluxcd.io/ignore: sync_only\n";
        let manifests = Manifest::from_yaml("x.yaml", text).unwrap();
        assert_eq!(manifests.len(), 2);
        assert_eq!(manifests[1].id.to_string(), "a:configmap/c");
        assert_eq!(manifests[1].ignore, IgnorePolicy::SyncOnly);
        assert_eq!(manifests[0].ignore, IgnorePolicy::No);
    }

    #[test]
    fn hostile_texts_are_refused_within_the_budget() {
        let laughs = flux_testkit::hostile::alias_bomb();
        let deep = flux_testkit::hostile::deep(10_000);
        let many = flux_testkit::hostile::documents(100_000);
        for (name, text, why) in [
            ("bomb.yaml", &laughs, "alias replay limit exceeded"),
            ("deep.yaml", &deep, "recursion limit exceeded"),
            ("many.yaml", &many, "Documents { documents: 1025 }"),
        ] {
            let error = Manifest::from_yaml(name, text).expect_err(name).to_string();
            assert!(error.starts_with(name) && error.contains(why), "{error}");
        }
        let kept = flux_testkit::hostile::good_manifests();
        assert_eq!(Manifest::from_yaml("good.yaml", &kept).unwrap().len(), 2);
    }

    #[test]
    fn broken_yaml_names_the_file_and_line() {
        let error = Manifest::from_yaml("bad.yaml", "apiVersion: v1\nkind: [\n").unwrap_err();
        assert_eq!(error.file, "bad.yaml");
        assert!(error.line.is_some(), "{error}");
        assert!(error.to_string().starts_with("bad.yaml:"));
    }

    #[test]
    fn parsing_kept_texts_names_a_broken_file_and_keeps_the_others() {
        let files = [
            (
                "a.yaml".to_string(),
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n".to_string(),
            ),
            (
                "bad.yaml".to_string(),
                "apiVersion: v1\nkind: [\n".to_string(),
            ),
            (
                "c.yaml".to_string(),
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n".to_string(),
            ),
        ];
        let set = ManifestSet::parse(&files);
        let names: Vec<&str> = set.manifests.iter().map(|m| m.id.name()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(set.errors.len(), 1);
        assert_eq!(set.errors[0].file, "bad.yaml");
        assert!(set.errors[0].line.is_some());
    }

    #[test]
    fn a_duplicate_key_is_refused_never_read_as_its_first_value() {
        // flux-manifests refuses this file too; the sync must not apply
        // either `data`.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: first}\ndata: {k: second}\n";
        let error = Manifest::from_yaml("twice.yaml", text).unwrap_err();
        assert_eq!(error.line, Some(5), "{error}");
        assert!(error.message.contains("duplicate"), "{error}");
        let nested = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n";
        let error = Manifest::from_yaml("nested.yaml", nested).unwrap_err();
        assert_eq!(error.line, Some(5), "{error}");
    }

    #[test]
    fn manifest_without_a_name_is_refused() {
        let error = Manifest::from_yaml("x.yaml", "apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(error.message.contains("metadata.name"), "{error}");
    }

    #[test]
    fn list_documents_are_expanded() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n\
                    - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
        let manifests = Manifest::from_yaml("l.yaml", text).unwrap();
        assert_eq!(manifests.len(), 2);
    }
}
