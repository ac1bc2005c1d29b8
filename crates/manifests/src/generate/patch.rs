//! The patch file of a `patchUpdated` configuration: per workload, what
//! fluxd set on top of what the generators make.
//!
//! Each document names a workload (`apiVersion`, `kind`, `metadata.name`,
//! `metadata.namespace`) and holds only container images, by container
//! name, and `metadata.annotations` for policies, in the shape of the
//! strategic merge patches Flux v1 wrote, so a v1 patch file reads as is:
//!
//! ```yaml
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata:
//!   name: web
//!   namespace: prod
//!   annotations:
//!     fluxcd.io/automated: "true"
//! spec:
//!   template:
//!     spec:
//!       containers:
//!       - name: web
//!         image: nginx:1.26
//! ```
//!
//! An annotation set to `null` removes that annotation from the generated
//! object (how a policy the generators set is removed). v1's
//! `$setElementOrder/…` directives are accepted and have no effect. Any
//! other content is refused with its line: the file is fluxd's, and a patch
//! it would not apply in full must not be half-applied.

use std::ops::Range;
use std::path::Path;

use flux_image::ImageRef;

use super::GenerateError;
use crate::id::{CLUSTER, ResourceId, is_cluster_scoped};
use crate::policy::{PolicyKey, PolicyUpdate};
use crate::workload::{Workload, WorkloadKind};
use crate::yaml::{NodeId, Stream};
use crate::{Checkout, LoadOptions};

/// One document of the patch file.
#[derive(Debug, Clone)]
pub(crate) struct PatchDoc {
    pub id: ResourceId,
    /// 1-based line of the document.
    pub line: usize,
    pub api_version: String,
    pub kind: String,
    /// Container name, whether it is an init container, image, and line.
    pub images: Vec<PatchImage>,
    /// Annotation key, value (`None` for `null`: remove it), line.
    pub annotations: Vec<(String, Option<String>, usize)>,
}

/// One container image a patch sets.
#[derive(Debug, Clone)]
pub(crate) struct PatchImage {
    pub container: String,
    pub init: bool,
    pub image: ImageRef,
    pub line: usize,
}

/// Reads every document of a patch file's `text`.
pub(crate) fn read(
    path: &Path,
    text: &str,
    options: &LoadOptions,
) -> Result<Vec<PatchDoc>, GenerateError> {
    let stream = Stream::parse(text).map_err(|e| GenerateError::Patch {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    let reader = Reader {
        path,
        stream: &stream,
    };
    let mut docs: Vec<PatchDoc> = Vec::new();
    for &root in &stream.docs {
        if stream.entries(root).is_none() && stream.str(root).is_none() {
            continue; // an empty document
        }
        let doc = reader.doc(root, options)?;
        if let Some(first) = docs.iter().find(|d| d.id == doc.id) {
            return Err(reader.error(
                doc.line,
                format!(
                    "a second patch for {} (the first at line {})",
                    doc.id, first.line
                ),
            ));
        }
        docs.push(doc);
    }
    Ok(docs)
}

struct Reader<'s, 'a> {
    path: &'s Path,
    stream: &'s Stream<'a>,
}

impl Reader<'_, '_> {
    fn error(&self, line: usize, message: impl Into<String>) -> GenerateError {
        GenerateError::Patch {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn line(&self, node: NodeId) -> usize {
        self.stream.nodes[node].line
    }

    fn not_applied(&self, key: NodeId, name: &str) -> GenerateError {
        self.error(
            self.line(key),
            format!(
                "{name:?}: a patch file holds only container images and annotations; remove this"
            ),
        )
    }

    fn entries(&self, node: NodeId, what: &str) -> Result<Vec<(NodeId, NodeId)>, GenerateError> {
        self.stream
            .entries(node)
            .map(Iterator::collect)
            .ok_or_else(|| self.error(self.line(node), format!("{what} must be a mapping")))
    }

    fn key(&self, node: NodeId) -> Result<&str, GenerateError> {
        self.stream
            .str(node)
            .ok_or_else(|| self.error(self.line(node), "a key that is not a string"))
    }

    fn string(&self, node: NodeId, what: &str) -> Result<String, GenerateError> {
        self.stream
            .str(node)
            .map(str::to_string)
            .ok_or_else(|| self.error(self.line(node), format!("{what} must be a string")))
    }

    fn doc(&self, root: NodeId, options: &LoadOptions) -> Result<PatchDoc, GenerateError> {
        let line = self.line(root);
        let mut api_version = None;
        let mut kind = None;
        let mut name = None;
        let mut namespace = None;
        let mut annotations = Vec::new();
        let mut spec = None;
        for (key, value) in self.entries(root, "a patch")? {
            match self.key(key)? {
                "apiVersion" => api_version = Some(self.string(value, "apiVersion")?),
                "kind" => kind = Some(self.string(value, "kind")?),
                "metadata" => {
                    for (k, v) in self.entries(value, "metadata")? {
                        match self.key(k)? {
                            "name" => name = Some(self.string(v, "metadata.name")?),
                            "namespace" => namespace = Some(self.string(v, "metadata.namespace")?),
                            "annotations" => annotations = self.annotations(v)?,
                            other => return Err(self.not_applied(k, other)),
                        }
                    }
                }
                "spec" => spec = Some(value),
                other => return Err(self.not_applied(key, other)),
            }
        }
        let (Some(kind), Some(name)) = (kind, name) else {
            return Err(self.error(line, "a patch without kind and metadata.name"));
        };
        let namespace = if is_cluster_scoped(&kind) {
            CLUSTER.to_string()
        } else {
            namespace.unwrap_or_else(|| options.default_namespace.clone())
        };
        let id = ResourceId::new(&namespace, &kind, &name);
        let images = match spec {
            None => Vec::new(),
            Some(spec) => {
                let pod_kind = WorkloadKind::of_pod_kind(&kind).ok_or_else(|| {
                    self.error(
                        self.line(spec),
                        format!("{id}: images are patched on pod workloads only, not a {kind}"),
                    )
                })?;
                self.images(spec, &pod_kind.pod_spec()[1..])?
            }
        };
        Ok(PatchDoc {
            id,
            line,
            api_version: api_version.unwrap_or_default(),
            kind,
            images,
            annotations,
        })
    }

    fn annotations(
        &self,
        node: NodeId,
    ) -> Result<Vec<(String, Option<String>, usize)>, GenerateError> {
        let mut annotations = Vec::new();
        for (k, v) in self.entries(node, "metadata.annotations")? {
            let key = self.key(k)?.to_string();
            if PolicyKey::from_annotation(&key).is_none() {
                return Err(self.not_applied(k, &key));
            }
            let value = match self.stream.str(v) {
                Some(value) => Some(value.to_string()),
                None if self.stream.entries(v).is_none() && self.stream.items(v).is_none() => None,
                None => return Err(self.error(self.line(v), format!("{key} must be a string"))),
            };
            annotations.push((key, value, self.line(k)));
        }
        Ok(annotations)
    }

    /// The containers under `spec`, down `path` (the rest of the pod spec's
    /// path after `spec`).
    fn images(&self, spec: NodeId, path: &[&str]) -> Result<Vec<PatchImage>, GenerateError> {
        let Some((step, rest)) = path.split_first() else {
            return self.pod_spec(spec);
        };
        let mut images = Vec::new();
        for (k, v) in self.entries(spec, "spec")? {
            match self.key(k)? {
                key if key == *step => images = self.images(v, rest)?,
                other => return Err(self.not_applied(k, other)),
            }
        }
        Ok(images)
    }

    fn pod_spec(&self, node: NodeId) -> Result<Vec<PatchImage>, GenerateError> {
        let mut images = Vec::new();
        for (k, v) in self.entries(node, "the pod spec")? {
            let init = match self.key(k)? {
                "containers" => false,
                "initContainers" => true,
                "$setElementOrder/containers" | "$setElementOrder/initContainers" => continue,
                other => return Err(self.not_applied(k, other)),
            };
            let items = self
                .stream
                .items(v)
                .ok_or_else(|| self.error(self.line(v), "containers must be a list"))?;
            for &item in items {
                images.push(self.container(item, init)?);
            }
        }
        Ok(images)
    }

    fn container(&self, item: NodeId, init: bool) -> Result<PatchImage, GenerateError> {
        let mut name = None;
        let mut image = None;
        for (k, v) in self.entries(item, "a container")? {
            match self.key(k)? {
                "name" => name = Some(self.string(v, "a container's name")?),
                "image" => image = Some((self.string(v, "image")?, self.line(v))),
                other => return Err(self.not_applied(k, other)),
            }
        }
        let (Some(container), Some((image, line))) = (name, image) else {
            return Err(self.error(self.line(item), "a container without name and image"));
        };
        let image = ImageRef::parse(&image).map_err(|e| self.error(line, e.to_string()))?;
        Ok(PatchImage {
            container,
            init,
            image,
            line,
        })
    }
}

/// The generated text with every patch applied, by the byte-exact edits of
/// [`Checkout`]: the generators' text is kept but for the patched values.
pub(crate) fn apply(
    generated: &str,
    generated_path: &Path,
    patch_path: &Path,
    docs: &[PatchDoc],
    options: &LoadOptions,
) -> Result<String, GenerateError> {
    let checkout = Checkout::from_text(generated_path, generated, options.clone());
    let mut text = generated.to_string();
    for doc in docs {
        let error = |line: usize, message: String| GenerateError::Patch {
            path: patch_path.to_path_buf(),
            line,
            message: format!("{}: {message}", doc.id),
        };
        if checkout.workload(&doc.id).is_none() {
            return Err(error(
                doc.line,
                "the generators no longer make this workload; remove its patch".into(),
            ));
        }
        for patch in &doc.images {
            text = checkout
                .set_image(&text, &doc.id, &patch.container, &patch.image)
                .map_err(|e| error(patch.line, e.to_string()))?;
        }
        let mut update = PolicyUpdate::default();
        for (key, value, _) in &doc.annotations {
            let Some(policy) = PolicyKey::from_annotation(key) else {
                continue;
            };
            match value {
                Some(value) => update.add.push((policy, value.clone())),
                None => update.remove.push(policy),
            }
        }
        if !update.is_empty() {
            text = checkout
                .update_policies(&text, &doc.id, &update)
                .map_err(|e| error(doc.line, e.to_string()))?;
        }
    }
    Ok(text)
}

/// What an update sets.
#[derive(Debug, Clone)]
pub(crate) enum Change<'c> {
    /// A container's image.
    Image(&'c str, &'c ImageRef),
    /// Policies.
    Policies(&'c PolicyUpdate),
}

/// The patch document for `id` as `doc` (its current patch, if any) with
/// `change` made: images by container, annotations for the policies. A
/// policy removed that `generated` (the unpatched workload) carries is
/// written as `null`, so that the patch removes it.
pub(crate) fn changed_doc(
    doc: Option<&PatchDoc>,
    patched: &Workload,
    generated: &Workload,
    resource: &crate::Resource,
    change: &Change<'_>,
) -> PatchDoc {
    let mut doc = doc.cloned().unwrap_or_else(|| PatchDoc {
        id: patched.id.clone(),
        line: 0,
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
        images: Vec::new(),
        annotations: Vec::new(),
    });
    match change {
        Change::Image(container, image) => {
            let init = patched.container(container).is_some_and(|c| c.init);
            match doc.images.iter_mut().find(|i| i.container == *container) {
                Some(patch) => patch.image = (*image).clone(),
                None => doc.images.push(PatchImage {
                    container: container.to_string(),
                    init,
                    image: (*image).clone(),
                    line: 0,
                }),
            }
        }
        Change::Policies(update) => {
            for key in &update.remove {
                let spellings = key.annotations();
                doc.annotations.retain(|(k, _, _)| !spellings.contains(k));
                for (k, _) in &generated.annotations {
                    if spellings.contains(k) {
                        doc.annotations.push((k.clone(), None, 0));
                    }
                }
            }
            for (key, value) in &update.add {
                let spellings = key.annotations();
                let mut set = false;
                for (k, v, _) in &mut doc.annotations {
                    if spellings.contains(k) {
                        *v = Some(value.clone());
                        set = true;
                    }
                }
                if !set {
                    doc.annotations
                        .push((spellings[0].clone(), Some(value.clone()), 0));
                }
            }
        }
    }
    doc
}

/// A patch document written out, with no `---` and a final newline.
pub(crate) fn render(doc: &PatchDoc, kind: WorkloadKind) -> String {
    let mut out = String::new();
    if !doc.api_version.is_empty() {
        out.push_str(&format!("apiVersion: {}\n", scalar(&doc.api_version)));
    }
    out.push_str(&format!("kind: {}\n", scalar(&doc.kind)));
    out.push_str("metadata:\n");
    out.push_str(&format!("  name: {}\n", scalar(doc.id.name())));
    if !doc.id.is_cluster_scoped() {
        out.push_str(&format!("  namespace: {}\n", scalar(doc.id.namespace())));
    }
    if !doc.annotations.is_empty() {
        out.push_str("  annotations:\n");
        for (key, value, _) in &doc.annotations {
            let value = value.as_deref().map_or("null".to_string(), quoted);
            out.push_str(&format!("    {}: {value}\n", scalar(key)));
        }
    }
    if doc.images.is_empty() {
        return out;
    }
    let mut indent = String::new();
    for step in kind.pod_spec() {
        out.push_str(&format!("{indent}{step}:\n"));
        indent.push_str("  ");
    }
    for (list, init) in [("containers", false), ("initContainers", true)] {
        let images: Vec<_> = doc.images.iter().filter(|i| i.init == init).collect();
        if images.is_empty() {
            continue;
        }
        out.push_str(&format!("{indent}{list}:\n"));
        for image in images {
            out.push_str(&format!("{indent}- name: {}\n", scalar(&image.container)));
            out.push_str(&format!(
                "{indent}  image: {}\n",
                scalar(&image.image.familiar())
            ));
        }
    }
    out
}

/// `text` as a plain scalar when it reads back as the same string, else
/// double-quoted.
fn scalar(text: &str) -> String {
    let plain = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':' | '@'))
        && !text.ends_with(':')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_string()
    } else {
        quoted(text)
    }
}

/// `text` double-quoted, with YAML's escapes.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` with the document at `bytes` replaced by `rendered`, or, with no
/// range, `rendered` appended as a new document.
pub(crate) fn splice(text: &str, bytes: Option<Range<usize>>, rendered: &str) -> String {
    match bytes {
        Some(bytes) => {
            // The range may run past the last value into the line breaks
            // after it; those stay.
            let written = text.get(bytes.clone()).unwrap_or_default();
            let end = bytes.start + written.trim_end().len();
            let rendered = rendered.trim_end_matches('\n');
            format!("{}{rendered}{}", &text[..bytes.start], &text[end..])
        }
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
            out.push_str(rendered);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_would_read_otherwise_are_quoted() {
        assert_eq!(scalar("nginx:1.26"), "nginx:1.26");
        assert_eq!(scalar("fluxcd.io/tag.web"), "fluxcd.io/tag.web");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("1.26"), "\"1.26\"");
        assert_eq!(scalar("semver:~1"), "\"semver:~1\"");
        assert_eq!(quoted("a \"b\"\n"), "\"a \\\"b\\\"\\n\"");
    }
}
