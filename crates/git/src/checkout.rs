//! Working checkouts: one per job, a `git worktree` of the bare mirror (it
//! shares the mirror's objects, so making one costs only the files),
//! removed when the job is done.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::command::Git;
use crate::error::GitError;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A working tree at one revision of the branch. Removed by [`Checkout::remove`]
/// or, failing that, when dropped (the mirror forgets it at its next refresh).
#[derive(Debug)]
pub struct Checkout {
    dir: PathBuf,
    mirror: PathBuf,
    revision: String,
    git: Git,
    removed: bool,
}

impl Checkout {
    /// Makes a worktree of `mirror` at `revision` under `parent`.
    pub(crate) async fn create(
        git: &Git,
        mirror: &Path,
        parent: &Path,
        owner: &str,
        revision: &str,
    ) -> Result<Self, GitError> {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| GitError::io(parent, e))?;
        let name = format!("job-{owner}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = parent.join(name);
        git.ok(
            mirror,
            [
                "worktree".as_ref(),
                "add".as_ref(),
                "-q".as_ref(),
                "--detach".as_ref(),
                dir.as_os_str(),
                revision.as_ref(),
            ],
        )
        .await?;
        Ok(Self {
            dir,
            mirror: mirror.to_path_buf(),
            revision: revision.to_string(),
            git: git.clone(),
            removed: false,
        })
    }

    /// The folder holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The revision (commit id, or ref) the checkout was made or last reset at.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub(crate) fn git(&self) -> &Git {
        &self.git
    }

    /// Makes the checkout the tree at `revision` again, as a new one would
    /// be: edits, commits, untracked and ignored files are dropped.
    pub async fn reset_to(&mut self, revision: &str) -> Result<(), GitError> {
        self.git
            .ok(&self.dir, ["reset", "-q", "--hard", revision])
            .await?;
        self.git.ok(&self.dir, ["clean", "-q", "-ffdx"]).await?;
        self.revision = revision.to_string();
        Ok(())
    }

    /// Removes the files and the mirror's record of this worktree.
    pub async fn remove(mut self) -> Result<(), GitError> {
        self.removed = true;
        self.git
            .ok(
                &self.mirror,
                [
                    "worktree".as_ref(),
                    "remove".as_ref(),
                    "--force".as_ref(),
                    "--force".as_ref(),
                    self.dir.as_os_str(),
                ],
            )
            .await?;
        Ok(())
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if !self.removed {
            // Drop cannot wait for git; the worktree record is pruned at the
            // mirror's next refresh.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
