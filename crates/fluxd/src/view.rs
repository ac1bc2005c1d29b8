//! What the API shows, made from what git says (a loaded checkout) and what
//! the registries hold (the scanner's cache).

mod workloads;

pub(crate) use workloads::same_image;
use workloads::workload;
pub use workloads::{ClusterFacts, PageQuery, Workloads};

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use flux_api::{
    ChangedLine, ContainerImages, FileError, Manifest, PolicyCheck, ResultStatus, TagInfo,
    Workload, WorkloadImages, WorkloadResult,
};
use flux_image::{Name, Policy};
use flux_manifests::{Checkout, LoadError, ResourceId};
use flux_registry::RepositoryInfo;
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// The problems of a checkout read at `root`, each naming its file relative
/// to the repository's root.
pub fn file_errors(checkout: &Checkout, root: &Path) -> Vec<FileError> {
    let prefix = format!("{}/", root.display());
    checkout
        .errors
        .iter()
        .map(|error| {
            let path = error.path();
            let (line, column) = match error {
                LoadError::Syntax { line, column, .. } => (Some(*line), Some(*column)),
                LoadError::Policy { line, .. }
                | LoadError::Invalid { line, .. }
                | LoadError::Limit { line, .. } => (Some(*line), None),
                LoadError::Io { .. }
                | LoadError::Duplicate { .. }
                | LoadError::Outside { .. }
                | LoadError::TooLarge { .. }
                | LoadError::Build { .. }
                | LoadError::Generate(_) => (None, None),
            };
            FileError {
                file: relative(path, root),
                line,
                column,
                message: error.to_string().replace(&prefix, ""),
            }
        })
        .collect()
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// A workload of a file that could not be read, as the file last held it.
#[derive(Debug, Clone)]
pub struct Carried {
    /// The file, relative to the repository's root.
    pub file: String,
    /// The workload as last read, with the file's error.
    pub workload: Workload,
}

/// What was read before: the checkout, where it was read, and what it
/// carried itself.
pub struct Before<'a> {
    /// The checkout read last.
    pub checkout: &'a Checkout,
    /// Where it was read.
    pub root: &'a Path,
    /// Workloads it carried from files it could not read either.
    pub carried: &'a [Carried],
}

/// The workloads that a file which cannot be read now held when it last
/// could be, and that the new checkout no longer has: a broken file must
/// not make its workloads vanish from the listing (they still run).
pub fn carried(errors: &[FileError], now: &Checkout, before: Option<Before<'_>>) -> Vec<Carried> {
    let Some(before) = before else {
        return Vec::new();
    };
    let listed: HashSet<&str> = now.workloads.iter().map(|w| w.id.as_str()).collect();
    let mut carried: Vec<Carried> = Vec::new();
    for error in errors {
        let held = before
            .checkout
            .workloads
            .iter()
            .filter(|w| relative(&w.location.file, before.root) == error.file)
            .map(workload)
            .chain(
                before
                    .carried
                    .iter()
                    .filter(|c| c.file == error.file)
                    .map(|c| c.workload.clone()),
            );
        for mut workload in held {
            let already = carried.iter().any(|c| c.workload.id == workload.id);
            if listed.contains(workload.id.as_str()) || already {
                continue;
            }
            workload.read_error = Some(error.message.clone());
            carried.push(Carried {
                file: error.file.clone(),
                workload,
            });
        }
    }
    carried
}

/// The images of a checkout's workloads, as the API shows them.
///
/// The tags a policy admits from a repository are kept once per
/// (repository, policy) and shared by every container that runs it: with
/// thousands of workloads on a few hundred repositories, copies per
/// container would be most of the daemon's memory.
///
/// Cloning is cheap (one shared list), so an answer can be written from a
/// clone, piece by piece, while the daemon moves on to a newer view.
#[derive(Debug, Clone, Default)]
pub struct Images {
    workloads: Arc<Vec<WorkloadEntry>>,
}

#[derive(Debug, Clone)]
struct WorkloadEntry {
    id: ResourceId,
    containers: Vec<ContainerEntry>,
}

#[derive(Debug, Clone)]
struct ContainerEntry {
    name: String,
    // Shared by every container spelling the same text: 10,000 containers
    // run a few hundred repositories, tags and policies.
    repository: Arc<str>,
    current: Arc<str>,
    policy: Arc<str>,
    available: Arc<Available>,
    /// The repository as the scanner last listed it, shared by every
    /// container of the repository: what another policy would admit.
    scanned: Arc<Option<RepositoryInfo>>,
}

/// What a policy admits from a repository, or why it is not known.
#[derive(Debug, Default)]
struct Available {
    tags: Vec<TagInfo>,
    error: Option<String>,
}

impl Images {
    /// How many workloads there are.
    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    /// True when there are no workloads.
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// Whether `other` is this very list (a clone of it), not one made again.
    pub fn same(&self, other: &Images) -> bool {
        Arc::ptr_eq(&self.workloads, &other.workloads)
    }

    /// The workloads whose id `keep` accepts, in the API's shape.
    pub fn to_wire(&self, keep: impl Fn(&str) -> bool) -> Vec<WorkloadImages> {
        self.workloads
            .iter()
            .filter(|w| keep(w.id.as_str()))
            .map(WorkloadEntry::to_wire)
            .collect()
    }

    /// What `policy` would admit from the repository of a workload's
    /// container, as the scanner last listed it: `None` when there is no
    /// such container, `Err` when its repository has not been scanned.
    pub fn check_policy(
        &self,
        workload: &str,
        container: &str,
        policy: &Policy,
    ) -> Option<Result<PolicyCheck, String>> {
        let entry = self
            .workloads
            .iter()
            .find(|w| w.id.as_str() == workload)?
            .containers
            .iter()
            .find(|c| c.name == container)?;
        let Some(info) = entry.scanned.as_ref() else {
            return Some(Err(format!(
                "{} has not been scanned yet",
                entry.repository
            )));
        };
        let verdict = policy.judge(info.candidates());
        Some(Ok(PolicyCheck {
            policy: policy.to_string(),
            refused: verdict.rejected.len(),
            admitted: verdict
                .admitted
                .into_iter()
                .map(|candidate| TagInfo {
                    // What the container's own listing found; a tag its
                    // present policy does not admit was not checked.
                    signature: entry
                        .available
                        .tags
                        .iter()
                        .find(|t| t.tag == candidate.tag)
                        .and_then(|t| t.signature.clone()),
                    digest: info.tag(&candidate.tag).and_then(|t| t.digest.clone()),
                    tag: candidate.tag,
                    created: candidate.created,
                })
                .collect(),
        }))
    }

    /// The workloads whose id `keep` accepts, as the JSON of
    /// `Vec<WorkloadImages>` in pieces (see [`json_pieces`]).
    pub fn json_pieces<K>(&self, keep: K) -> JsonPieces<impl Iterator<Item = Shared> + use<K>>
    where
        K: Fn(&str) -> bool,
    {
        let kept = self.workloads.clone();
        let workloads = self.workloads.clone();
        let selected = (0..kept.len()).filter(move |&index| keep(kept[index].id.as_str()));
        json_pieces(selected.map(move |index| Shared {
            workloads: workloads.clone(),
            index,
        }))
    }
}

/// One workload's images, serialized from the listing it shares.
#[derive(Debug)]
pub struct Shared {
    workloads: Arc<Vec<WorkloadEntry>>,
    index: usize,
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.workloads[self.index].serialize(serializer)
    }
}

/// Bytes after which a piece of JSON is handed on.
pub const JSON_PIECE: usize = 64 * 1024;

/// `items` as the JSON of an array in pieces of about [`JSON_PIECE`]
/// bytes, each written when it is asked for: a large answer never sits in
/// memory whole.
pub fn json_pieces<I>(items: I) -> JsonPieces<I::IntoIter>
where
    I: IntoIterator,
    I::Item: Serialize,
{
    JsonPieces {
        items: items.into_iter(),
        state: Piece::First,
    }
}

/// The JSON of an array, piece by piece (see [`json_pieces`]).
#[derive(Debug)]
pub struct JsonPieces<I> {
    items: I,
    state: Piece,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    First,
    Later,
    Done,
}

impl<I> Iterator for JsonPieces<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    type Item = serde_json::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == Piece::Done {
            return None;
        }
        let mut piece = Vec::with_capacity(JSON_PIECE + JSON_PIECE / 4);
        if self.state == Piece::First {
            piece.push(b'[');
        }
        while piece.len() < JSON_PIECE {
            let Some(item) = self.items.next() else {
                piece.push(b']');
                self.state = Piece::Done;
                return Some(Ok(piece));
            };
            if self.state == Piece::Later {
                piece.push(b',');
            }
            self.state = Piece::Later;
            if let Err(error) = serde_json::to_writer(&mut piece, &item) {
                self.state = Piece::Done;
                return Some(Err(error));
            }
        }
        Some(Ok(piece))
    }
}

impl WorkloadEntry {
    fn to_wire(&self) -> WorkloadImages {
        WorkloadImages {
            id: self.id.to_string(),
            containers: self
                .containers
                .iter()
                .map(|c| ContainerImages {
                    name: c.name.clone(),
                    repository: c.repository.to_string(),
                    current: c.current.to_string(),
                    policy: c.policy.to_string(),
                    available: c.available.tags.clone(),
                    error: c.available.error.clone(),
                })
                .collect(),
        }
    }
}

/// The same JSON as [`WorkloadImages`].
impl Serialize for WorkloadEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("WorkloadImages", 2)?;
        s.serialize_field("id", self.id.as_str())?;
        s.serialize_field("containers", &self.containers)?;
        s.end()
    }
}

/// The same JSON as [`ContainerImages`].
impl Serialize for ContainerEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let error = self.available.error.as_ref();
        let mut s =
            serializer.serialize_struct("ContainerImages", 5 + usize::from(error.is_some()))?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("repository", &*self.repository)?;
        s.serialize_field("current", &*self.current)?;
        s.serialize_field("policy", &*self.policy)?;
        s.serialize_field("available", &self.available.tags)?;
        if let Some(error) = error {
            s.serialize_field("error", error)?;
        }
        s.end()
    }
}

/// The images of a checkout's workloads, with the tags each container's
/// policy admits, newest first; `repository` looks a repository up in the
/// scanner's cache (no network), once per repository.
pub fn images(
    checkout: &Checkout,
    repository: impl Fn(&Name) -> Option<RepositoryInfo>,
    signature: impl Fn(
        &flux_manifests::Policies,
        &flux_manifests::Container,
        &RepositoryInfo,
        &str,
    ) -> Option<flux_api::Signature>,
) -> Images {
    let mut infos: HashMap<String, Arc<Option<RepositoryInfo>>> = HashMap::new();
    // Containers whose images need the same signatures share one list.
    let mut admitted: HashMap<(String, String, Option<String>), Arc<Available>> = HashMap::new();
    let mut texts = Texts::default();
    let workloads = checkout
        .workloads
        .iter()
        .map(|w| WorkloadEntry {
            id: w.id.clone(),
            containers: w
                .containers
                .iter()
                .map(|c| {
                    let name = c.image.name();
                    let policy = w.policies.tag_policy(&c.name);
                    let canonical = name.canonical();
                    let scanned = infos
                        .entry(canonical.clone())
                        .or_insert_with(|| Arc::new(repository(name)))
                        .clone();
                    let verify = w.policies.verify.get(&c.name).cloned();
                    let available = admitted
                        .entry((canonical, policy.to_string(), verify))
                        .or_insert_with(|| {
                            let signed = |info: &RepositoryInfo, tag: &str| {
                                signature(&w.policies, c, info, tag)
                            };
                            Arc::new(available(&policy, scanned.as_ref().as_ref(), signed))
                        })
                        .clone();
                    ContainerEntry {
                        name: c.name.clone(),
                        repository: texts.shared(&name.familiar()),
                        current: texts
                            .shared(c.image.tag().or(c.image.digest()).unwrap_or("latest")),
                        policy: texts.shared(&policy.to_string()),
                        available,
                        scanned,
                    }
                })
                .collect(),
        })
        .collect();
    Images {
        workloads: Arc::new(workloads),
    }
}

/// One copy of each text the listing repeats.
#[derive(Default)]
struct Texts(HashSet<Arc<str>>);

impl Texts {
    fn shared(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.0.insert(shared.clone());
        shared
    }
}

fn available(
    policy: &Policy,
    info: Option<&RepositoryInfo>,
    signature: impl Fn(&RepositoryInfo, &str) -> Option<flux_api::Signature>,
) -> Available {
    let Some(info) = info else {
        return Available {
            tags: Vec::new(),
            error: Some("not scanned yet".to_string()),
        };
    };
    let tags = policy
        .judge(info.candidates())
        .admitted
        .into_iter()
        .filter(|candidate| !flux_registry::cosign::is_cosign_tag(&candidate.tag))
        .map(|candidate| TagInfo {
            signature: signature(info, &candidate.tag),
            digest: info.tag(&candidate.tag).and_then(|t| t.digest.clone()),
            tag: candidate.tag,
            created: candidate.created,
        })
        .collect();
    Available {
        tags,
        error: info.error.clone(),
    }
}

/// The manifest lines a planned release rewrites: for each container it
/// updates, the line of the workload's document that spells the current
/// image, and that line with the target in its place. An update whose
/// image is not spelled whole on one line (a chart's values split into
/// repository and tag) has no line here.
pub fn changed_lines(plan: &[WorkloadResult], manifests: &[Manifest]) -> Vec<ChangedLine> {
    let mut lines = Vec::new();
    for result in plan.iter().filter(|r| r.status == ResultStatus::Success) {
        let Some(manifest) = manifests.iter().find(|m| m.id == result.workload) else {
            continue;
        };
        for update in &result.updates {
            let found = manifest
                .text
                .lines()
                .enumerate()
                .find(|(_, line)| spells_image(line, &update.current));
            let Some((index, line)) = found else {
                continue;
            };
            lines.push(ChangedLine {
                workload: result.workload.clone(),
                container: update.container.clone(),
                file: manifest.file.clone(),
                line: index + 1,
                before: line.to_string(),
                after: line.replacen(&update.current, &update.target, 1),
            });
        }
    }
    lines
}

/// Whether `line` holds `image` as a whole value, not as the start of a
/// longer one (`front-end:0.3.1` in `front-end:0.3.12`).
fn spells_image(line: &str, image: &str) -> bool {
    line.match_indices(image).any(|(at, _)| {
        let after = line[at + image.len()..].chars().next();
        after.is_none_or(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_manifests::LoadOptions;
    use flux_registry::TagInfo as ScannedTag;
    use jiff::Timestamp;

    const FRONT_END: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: front-end\n  namespace: sock-shop\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.front-end: semver:~0.3\nspec:\n  template:\n    spec:\n      containers:\n      - name: front-end\n        image: weaveworksdemos/front-end:0.3.12\n";

    fn checkout() -> Checkout {
        Checkout::from_text(
            std::path::Path::new("front-end.yaml"),
            FRONT_END,
            LoadOptions::default(),
        )
    }

    fn scanned(tag: &str, second: i64) -> ScannedTag {
        ScannedTag {
            tag: tag.into(),
            digest: Some(format!("sha256:{tag}")),
            created: Some(Timestamp::from_second(1_700_000_000 + second).unwrap()),
            platforms: vec![],
            platform: Some("linux/amd64".parse().unwrap()),
            image_digest: None,
            error: None,
            first_seen: None,
        }
    }

    #[test]
    fn workloads_show_images_as_spelled_and_their_policies() {
        let listed = Workloads::read(Arc::new(checkout()), Vec::new());
        let workloads: Vec<Workload> = listed.iter().collect();
        assert_eq!((listed.len(), workloads.len()), (1, 1));
        let w = &workloads[0];
        assert_eq!(w.id, "sock-shop:deployment/front-end");
        assert_eq!(w.containers[0].image, "weaveworksdemos/front-end:0.3.12");
        assert!(w.policies.automated && !w.policies.locked);
        assert_eq!(w.policies.tags["front-end"], "semver:~0.3");
    }

    #[test]
    fn images_list_what_the_policy_admits_newest_first() {
        let checkout = checkout();
        let name = checkout.workloads[0].containers[0].image.name().clone();
        let info = RepositoryInfo {
            name: name.clone(),
            tags: vec![
                scanned("0.3.12", 0),
                scanned("0.3.13", 10),
                scanned("0.4.0", 20),
                scanned("latest", 30),
            ],
            error: None,
            listed_at: None,
        };
        let images = images(
            &checkout,
            |n| (n == &name).then(|| info.clone()),
            |_, _, _, _| None,
        )
        .to_wire(|_| true);
        let container = &images[0].containers[0];
        assert_eq!(container.current, "0.3.12");
        assert_eq!(container.policy, "semver:~0.3");
        let tags: Vec<&str> = container.available.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["0.3.13", "0.3.12"]);
        assert_eq!(
            container.available[0].digest.as_deref(),
            Some("sha256:0.3.13")
        );
    }

    #[test]
    fn the_json_in_pieces_reads_back_as_the_api_shape() {
        let text = FRONT_END.replace("name: front-end\n  namespace", "name: NAME\n  namespace");
        let many: String = (0..400)
            .map(|n| format!("---\n{}", text.replace("NAME", &format!("front-end-{n}"))))
            .collect();
        let checkout = Checkout::from_text(
            std::path::Path::new("many.yaml"),
            &many,
            LoadOptions::default(),
        );
        assert_eq!(checkout.workloads.len(), 400);
        let images = images(&checkout, |_| None, |_, _, _, _| None);
        let keep = |id: &str| !id.ends_with("-7");
        let pieces: Vec<Vec<u8>> = images.json_pieces(keep).map(|p| p.unwrap()).collect();
        assert!(pieces.len() > 1, "400 workloads make more than one piece");
        let json: Vec<u8> = pieces.concat();
        let read: Vec<WorkloadImages> = serde_json::from_slice(&json).unwrap();
        assert_eq!(read, images.to_wire(keep));
        assert_eq!(read.len(), 399);
        let none: Vec<u8> = images
            .json_pieces(|_| false)
            .flat_map(|p| p.unwrap())
            .collect();
        assert_eq!(none, b"[]");
    }

    #[test]
    fn a_file_that_breaks_keeps_its_workloads_listed_with_the_error() {
        let root = std::path::Path::new("/checkout-1");
        let good = Checkout::from_text(
            &root.join("front-end.yaml"),
            FRONT_END,
            LoadOptions::default(),
        );
        let broken_root = std::path::Path::new("/checkout-2");
        let broken = Checkout::from_text(
            &broken_root.join("front-end.yaml"),
            &format!("{FRONT_END}  broken: [\n"),
            LoadOptions::default(),
        );
        assert!(
            broken.workloads.is_empty(),
            "the broken file yields nothing"
        );
        let errors = file_errors(&broken, broken_root);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].file, "front-end.yaml");
        assert!(
            errors[0].line.is_some() && errors[0].column.is_some(),
            "{errors:?}"
        );
        assert!(
            errors[0].message.starts_with("front-end.yaml:"),
            "{}",
            errors[0].message
        );
        let before = Before {
            checkout: &good,
            root,
            carried: &[],
        };
        let kept = carried(&errors, &broken, Some(before));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].workload.id, "sock-shop:deployment/front-end");
        assert_eq!(
            kept[0].workload.read_error.as_deref(),
            Some(errors[0].message.as_str())
        );
        // Still broken at the next revision: still carried.
        let again = Before {
            checkout: &broken,
            root: broken_root,
            carried: &kept,
        };
        let still = carried(&errors, &broken, Some(again));
        assert_eq!(still.len(), 1);
        // Mended: nothing is carried.
        let before = Before {
            checkout: &broken,
            root: broken_root,
            carried: &still,
        };
        assert!(carried(&[], &good, Some(before)).is_empty());
    }

    #[test]
    fn an_unscanned_repository_says_so() {
        let images = images(&checkout(), |_| None, |_, _, _, _| None).to_wire(|_| true);
        assert_eq!(
            images[0].containers[0].error.as_deref(),
            Some("not scanned yet")
        );
    }

    fn released(workload: &str, current: &str, target: &str) -> WorkloadResult {
        WorkloadResult {
            workload: workload.into(),
            status: ResultStatus::Success,
            error: None,
            updates: vec![flux_api::ContainerUpdate {
                container: "front-end".into(),
                current: current.into(),
                target: target.into(),
            }],
        }
    }

    #[test]
    fn the_changed_lines_are_the_ones_spelling_the_current_image_whole() {
        let text = "kind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n      - image: weaveworksdemos/front-end:0.3.120\n      containers:\n      - name: front-end\n        image: \"weaveworksdemos/front-end:0.3.12\" # pinned\n";
        let manifests = [Manifest {
            id: "sock-shop:deployment/front-end".into(),
            kind: "Deployment".into(),
            file: "manifests/front-end.yaml".into(),
            text: text.into(),
        }];
        let plan = [
            released(
                "sock-shop:deployment/front-end",
                "weaveworksdemos/front-end:0.3.12",
                "weaveworksdemos/front-end:0.3.13",
            ),
            released("sock-shop:deployment/gone", "a:1", "a:2"),
        ];
        let lines = changed_lines(&plan, &manifests);
        assert_eq!(
            lines,
            [ChangedLine {
                workload: "sock-shop:deployment/front-end".into(),
                container: "front-end".into(),
                file: "manifests/front-end.yaml".into(),
                line: 9,
                before: "        image: \"weaveworksdemos/front-end:0.3.12\" # pinned".into(),
                after: "        image: \"weaveworksdemos/front-end:0.3.13\" # pinned".into(),
            }]
        );
        let mut skipped = plan[0].clone();
        skipped.status = ResultStatus::Skipped;
        assert!(changed_lines(&[skipped], &manifests).is_empty());
    }
}
