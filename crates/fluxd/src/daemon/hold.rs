//! A person's rollback is respected: when a commit fluxd did not make moved
//! an automated container to an older tag, automation leaves it there until
//! a tag newer than the one rolled back from appears. Found in git history
//! at every new head, so it holds across restarts with an empty data folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use flux_manifests::{Checkout, LoadOptions, ResourceId};
use flux_registry::Restraint;

use super::Inner;

/// How many commits of a file are looked at for the last change of each
/// automated container's image: enough for any recent rollback, few enough
/// that a long history costs nothing.
const HISTORY: usize = 20;

/// A person's commit that moved a container from one tag to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Moved {
    pub workload: ResourceId,
    pub container: String,
    /// The tag it moved to (and runs).
    pub tag: String,
    /// The tag it moved from.
    pub from: String,
    pub commit: String,
}

/// What the image and automation of each container were at one commit.
type Seen = HashMap<(ResourceId, String), (Option<String>, bool)>;

impl Inner {
    /// For each automated container, the last commit (up to `head`) that
    /// changed its image, when a person made it: a move to another tag.
    /// Whether that move was a rollback is decided against the registry's
    /// ordering when automation plans ([`Inner::restraint`]).
    pub(super) async fn moves_by_people(
        &self,
        head: &str,
        checkout: &Checkout,
        root: &Path,
    ) -> Vec<Moved> {
        let mut by_file: BTreeMap<PathBuf, Vec<(ResourceId, String)>> = BTreeMap::new();
        for workload in checkout.workloads.iter().filter(|w| w.policies.automated) {
            let Ok(file) = workload.location.file.strip_prefix(root) else {
                continue;
            };
            let containers = workload.containers.iter();
            by_file
                .entry(file.to_path_buf())
                .or_default()
                .extend(containers.map(|c| (workload.id.clone(), c.name.clone())));
        }
        let mut moves = Vec::new();
        for (file, containers) in by_file {
            match self.last_moves(head, &file, containers).await {
                Ok(found) => moves.extend(found),
                Err(error) => {
                    tracing::warn!(file = %file.display(), %error, "reading the history of a manifest failed");
                }
            }
        }
        moves
    }

    /// Walks back the history of one file until each container's image was
    /// last changed; answers with the changes people made.
    async fn last_moves(
        &self,
        head: &str,
        file: &Path,
        mut open: Vec<(ResourceId, String)>,
    ) -> Result<Vec<Moved>, flux_git::GitError> {
        let path = file.to_string_lossy();
        let mut moves = Vec::new();
        for commit in self.repo.file_history(head, &path, HISTORY).await? {
            if open.is_empty() {
                break;
            }
            let after = self.seen_at(&commit.id, file).await?;
            let before = match &commit.parent {
                Some(parent) => self.seen_at(parent, file).await?,
                None => Seen::new(),
            };
            let mut decided = Vec::new();
            for key in &open {
                let (Some((tag, automated)), earlier) = (after.get(key), before.get(key)) else {
                    continue;
                };
                let (from, was_automated) = earlier.cloned().unwrap_or((None, false));
                if *automated && !was_automated {
                    // Automating it (`fluxctl automate`) says what runs is
                    // to be automated from here on.
                    decided.push(key.clone());
                    continue;
                }
                if *tag == from {
                    continue;
                }
                decided.push(key.clone());
                if let (Some(tag), Some(from)) = (tag, from)
                    && !self.repo.made(&commit).await?
                {
                    moves.push(Moved {
                        workload: key.0.clone(),
                        container: key.1.clone(),
                        tag: tag.clone(),
                        from,
                        commit: commit.id.clone(),
                    });
                }
            }
            open.retain(|key| !decided.contains(key));
        }
        Ok(moves)
    }

    /// Each container's tag and its workload's automation in `file` at `revision`.
    async fn seen_at(&self, revision: &str, file: &Path) -> Result<Seen, flux_git::GitError> {
        let Some(text) = self.repo.file_at(revision, &file.to_string_lossy()).await? else {
            return Ok(Seen::new());
        };
        let checkout = Checkout::from_text(file, &text, LoadOptions::default());
        Ok(checkout
            .workloads
            .iter()
            .flat_map(|w| {
                w.containers.iter().map(|c| {
                    let key = (w.id.clone(), c.name.clone());
                    let tag = c.image.tag().map(str::to_string);
                    (key, (tag, w.policies.automated))
                })
            })
            .collect())
    }

    /// What keeps automation from a container's newest admitted tag: its
    /// reverted tag, and a person's rollback it still runs (a move to a tag
    /// older than the one it came from, by the container's policy).
    pub(super) fn restraint(
        &self,
        checkout: &Checkout,
        moves: &[Moved],
        id: &ResourceId,
        container: &str,
    ) -> Restraint {
        let Some(workload) = checkout.workloads.iter().find(|w| w.id == *id) else {
            return Restraint::default();
        };
        let mut restraint = Restraint {
            reverted: workload
                .policies
                .reverted
                .get(container)
                .map(|r| r.tag.clone())
                .into_iter()
                .collect(),
            ..Restraint::default()
        };
        // Any move a person made and the container still runs holds it
        // below the tag it came from: after a move to a newer tag that
        // asks nothing more than its policy already does, and when the
        // registry cannot yet tell which was newer, the person is right.
        restraint.held_below = moved_running(workload, moves, container).map(|m| m.from.clone());
        restraint.unsigned = self.unsigned_tags(workload, container);
        restraint
    }

    /// The tags of a container's repository that its cosign keys do not
    /// (yet) verify; none when its images need no signature.
    fn unsigned_tags(
        &self,
        workload: &flux_manifests::Workload,
        container: &str,
    ) -> std::collections::BTreeSet<String> {
        let Some(image) = workload.container(container).map(|c| &c.image) else {
            return Default::default();
        };
        let Ok(Some(keys)) = self.container_keys(&workload.policies, container) else {
            return Default::default();
        };
        let Some(info) = self.cached(image.name()) else {
            return Default::default();
        };
        let eligible = self.eligible(Some(&keys), Some(&info));
        info.tags
            .iter()
            .map(|t| t.tag.clone())
            .filter(|tag| !eligible(tag))
            .collect()
    }

    /// The person's rollback `container` of `workload` runs, if any: a move
    /// to a tag older, by its policy, than the one it came from.
    pub(super) fn rollback<'m>(
        &self,
        workload: &flux_manifests::Workload,
        moves: &'m [Moved],
        container: &str,
    ) -> Option<&'m Moved> {
        let running = workload.container(container)?;
        let moved = moved_running(workload, moves, container)?;
        let policy = workload.policies.tag_policy(container);
        let info = self.cached(running.image.name());
        flux_registry::is_older(&policy, info.as_ref(), &moved.tag, &moved.from).then_some(moved)
    }

    /// The holds the API shows on each workload.
    pub(super) fn holds(
        &self,
        checkout: &Checkout,
        moves: &[Moved],
    ) -> Vec<(String, flux_api::Hold)> {
        checkout
            .workloads
            .iter()
            .filter(|w| w.policies.automated)
            .flat_map(|w| {
                w.containers.iter().filter_map(move |c| {
                    let moved = self.rollback(w, moves, &c.name)?;
                    let hold = flux_api::Hold {
                        container: c.name.clone(),
                        tag: moved.tag.clone(),
                        from: moved.from.clone(),
                        commit: moved.commit.clone(),
                    };
                    Some((w.id.to_string(), hold))
                })
            })
            .collect()
    }
}

/// The last move a person made of `container`, while it still runs the tag
/// moved to.
fn moved_running<'m>(
    workload: &flux_manifests::Workload,
    moves: &'m [Moved],
    container: &str,
) -> Option<&'m Moved> {
    let running = workload.container(container)?;
    moves
        .iter()
        .find(|m| m.workload == workload.id && m.container == container)
        .filter(|m| running.image.tag() == Some(m.tag.as_str()))
}
