//! What a checkout holds: resources, workloads, their containers and images.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use flux_image::ImageRef;

use crate::id::ResourceId;
use crate::policy::Policies;

/// One step from a document's root to a node: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// The value under this key of a mapping. Mostly a field name of the
    /// Kubernetes schema, which needs no copy; a key read from a file (a
    /// HelmRelease's values) is owned.
    Key(Cow<'static, str>),
    /// The item at this index of a sequence.
    Index(usize),
}

impl From<&'static str> for Step {
    fn from(key: &'static str) -> Step {
        Step::Key(Cow::Borrowed(key))
    }
}

impl Step {
    /// A step to the value under a key read from a file.
    pub fn key(key: &str) -> Step {
        Step::Key(Cow::Owned(key.to_owned()))
    }
}

impl From<String> for Step {
    fn from(key: String) -> Step {
        Step::Key(Cow::Owned(key))
    }
}

impl From<usize> for Step {
    fn from(index: usize) -> Step {
        Step::Index(index)
    }
}

/// A path from a document's root to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NodePath(pub Vec<Step>);

impl NodePath {
    /// This path extended by `steps`.
    pub fn join<S: Into<Step>>(&self, steps: impl IntoIterator<Item = S>) -> NodePath {
        let steps = steps.into_iter();
        let mut path = Vec::with_capacity(self.0.len() + steps.size_hint().0);
        path.extend(self.0.iter().cloned());
        path.extend(steps.map(Into::into));
        NodePath(path)
    }
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if n == 0 => write!(f, "{key}")?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Where a resource sits: file, document (0-based) and path to its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as found under the loaded path; shared by the file's
    /// resources.
    pub file: Arc<Path>,
    /// Index of the YAML document in the file.
    pub doc: usize,
    /// Path from the document's root to the resource (empty, or `items[i]` in a List).
    pub root: NodePath,
    /// 1-based line where the resource starts.
    pub line: usize,
    /// Byte range of the resource in its file: from its first key to the
    /// end of its last value.
    pub bytes: Range<usize>,
    /// 0-based column its first key is at (0 for a whole document).
    pub indent: usize,
}

impl Location {
    /// The resource's YAML text in `file` (the text of the file it was read
    /// from): the document's bytes as written, through the end of its last
    /// line. An item of a `List` is given unindented, so that it reads as a
    /// document of its own. None when `file` is not the text it was read from.
    pub fn text_in<'t>(&self, file: &'t str) -> Option<Cow<'t, str>> {
        let written = file.get(self.bytes.clone())?;
        let kept = written.trim_end_matches(['\n', '\r', ' ', '\t']);
        if self.indent > 0 {
            // From the start of the first line: the item's `- ` is cut with
            // the indentation of the lines after it.
            let line = file[..self.bytes.start].rfind('\n').map_or(0, |n| n + 1);
            let first = &file[line..self.bytes.start];
            let item = format!("{}{kept}", " ".repeat(first.len()));
            return Some(Cow::Owned(unindented(&item, first.len())));
        }
        let end = self.bytes.start + kept.len();
        let rest = &file[end..];
        let newline = if rest.starts_with("\r\n") {
            2
        } else {
            usize::from(rest.starts_with('\n'))
        };
        if newline == 0 {
            return Some(Cow::Owned(format!("{kept}\n")));
        }
        Some(Cow::Borrowed(&file[self.bytes.start..end + newline]))
    }
}

/// `text` with its first `indent` columns removed: all of the first line's
/// (a List item's `- `), and the spaces of the others.
fn unindented(text: &str, indent: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let cut = if n == 0 { indent } else { spaces.min(indent) };
        out.push_str(line.get(cut..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// A Kubernetes object found in the files.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Its id.
    pub id: ResourceId,
    /// `apiVersion` as written.
    pub api_version: String,
    /// `kind` as written.
    pub kind: String,
    /// Where it is.
    pub location: Location,
}

/// The kinds of workload whose images Flux manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// batch CronJob (v1 or v1beta1).
    CronJob,
    /// batch/v1 Job.
    Job,
    /// v1 Pod.
    Pod,
    /// A Flux HelmRelease: images in its values.
    HelmRelease,
    /// A `kustomization.yaml` with an `images:` list.
    Kustomization,
}

impl WorkloadKind {
    /// The workload kind of a resource kind, if it is one whose pod template
    /// is read directly.
    pub fn of_pod_kind(kind: &str) -> Option<WorkloadKind> {
        Some(match kind {
            "Deployment" => WorkloadKind::Deployment,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "CronJob" => WorkloadKind::CronJob,
            "Job" => WorkloadKind::Job,
            "Pod" => WorkloadKind::Pod,
            _ => return None,
        })
    }

    /// The path from the resource's root to the pod spec.
    pub fn pod_spec(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &["spec"],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }
}

/// Where a container's image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The `image` of the pod spec's container at this index (of
    /// `initContainers` for an init container). Its path is made when an
    /// edit needs it: a large checkout keeps every container for as long as
    /// it is in use, and a path per container would be a fifth of it.
    Pod(usize),
    /// One scalar holding the whole reference (`image: repo:tag`).
    Whole(NodePath),
    /// HelmRelease values with the reference split over fields (boxed: few
    /// containers have one, and every container is as large as the largest
    /// source).
    Split(Box<SplitFields>),
    /// An entry of a kustomization's `images:` list.
    Kustomize(NodePath),
}

/// The fields a HelmRelease's values split an image over; the tag and
/// registry fields are optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFields {
    /// The field naming the repository (may also carry the tag).
    pub repository: NodePath,
    /// The field holding the tag.
    pub tag: Option<NodePath>,
    /// The field holding the registry host.
    pub registry: Option<NodePath>,
}

/// One container of a workload.
#[derive(Debug, Clone)]
pub struct Container {
    /// The container's name (for HelmReleases: `chart-image`, the values key, or the alias).
    pub name: String,
    /// Its image.
    pub image: ImageRef,
    /// The image as the file spells it (repository as written, tag, digest).
    pub spelling: String,
    /// Whether it is an init container.
    pub init: bool,
    /// Where the image is written.
    pub source: ImageSource,
    /// 1-based line of the image.
    pub line: usize,
    /// Byte range of the scalar the image starts in (the repository field
    /// for split Helm values, the entry for kustomizations).
    pub span: std::ops::Range<usize>,
}

/// A resource whose containers run images Flux can release.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its id.
    pub id: ResourceId,
    /// Its kind.
    pub kind: WorkloadKind,
    /// Where it is.
    pub location: Location,
    /// Its containers, in file order (containers, then init containers).
    pub containers: Vec<Container>,
    /// Its policies.
    pub policies: Policies,
    /// Its annotations, in file order.
    pub annotations: Vec<(String, String)>,
}

impl Workload {
    /// The path from the document's root to where `container`'s image is
    /// written, when one scalar holds it.
    pub fn image_path(&self, container: &Container) -> Option<NodePath> {
        match &container.source {
            ImageSource::Pod(index) => {
                let field = if container.init {
                    "initContainers"
                } else {
                    "containers"
                };
                let mut path = Vec::with_capacity(self.location.root.0.len() + 8);
                path.extend(self.location.root.0.iter().cloned());
                path.extend(self.kind.pod_spec().iter().map(|&key| Step::from(key)));
                path.extend([field.into(), Step::Index(*index), "image".into()]);
                Some(NodePath(path))
            }
            ImageSource::Whole(path) => Some(path.clone()),
            ImageSource::Split(_) | ImageSource::Kustomize(_) => None,
        }
    }

    /// The container with this name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod text_tests {
    use std::path::Path;

    use crate::{Checkout, LoadOptions};

    fn texts(file: &str) -> Vec<String> {
        let checkout = Checkout::from_text(Path::new("f.yaml"), file, LoadOptions::default());
        assert!(checkout.errors.is_empty(), "{:?}", checkout.errors);
        checkout
            .resources
            .iter()
            .map(|r| {
                r.location
                    .text_in(file)
                    .expect("the text read")
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn a_pod_containers_image_path_is_under_its_kinds_pod_spec() {
        let file = "kind: List\napiVersion: v1\nitems:\n- apiVersion: batch/v1\n  kind: CronJob\n  metadata: {name: c, namespace: n}\n  spec:\n    jobTemplate:\n      spec:\n        template:\n          spec:\n            initContainers: [{name: i, image: busybox}]\n            containers: [{name: a, image: nginx}, {name: b, image: redis}]\n";
        let checkout = Checkout::from_text(Path::new("f.yaml"), file, LoadOptions::default());
        let cronjob = &checkout.workloads[0];
        let paths: Vec<String> = cronjob
            .containers
            .iter()
            .map(|c| cronjob.image_path(c).expect("a pod image path").to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "items[0].spec.jobTemplate.spec.template.spec.containers[0].image",
                "items[0].spec.jobTemplate.spec.template.spec.containers[1].image",
                "items[0].spec.jobTemplate.spec.template.spec.initContainers[0].image",
            ]
        );
    }

    #[test]
    fn each_document_is_its_bytes_through_its_last_line() {
        let file = "---\n# a comment\nkind: A\nmetadata: {name: a} # trailing\n\n---\r\nkind: B\r\nmetadata:\r\n  name: b\r\n...\n";
        assert_eq!(
            texts(file),
            [
                "kind: A\nmetadata: {name: a} # trailing\n",
                "kind: B\r\nmetadata:\r\n  name: b\r\n"
            ]
        );
    }

    #[test]
    fn a_last_document_without_a_newline_gets_one() {
        assert_eq!(
            texts("kind: A\nmetadata:\n  name: a"),
            ["kind: A\nmetadata:\n  name: a\n"]
        );
    }

    #[test]
    fn list_items_are_unindented() {
        let file = "kind: List\nitems:\n- kind: A\n  metadata:\n    name: a\n-   kind: B\n    metadata:\n      name: b\n";
        assert_eq!(
            texts(file),
            [
                "kind: A\nmetadata:\n  name: a\n",
                "kind: B\nmetadata:\n  name: b\n"
            ]
        );
    }
}
