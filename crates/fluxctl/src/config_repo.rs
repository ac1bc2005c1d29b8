//! `--git-url`: working on the config repository itself, with neither a
//! checkout nor a daemon, as the last step of a CI pipeline. The repository
//! is cloned into a temporary folder, edited by the same code as
//! `--manifests`, committed once in Flux's message form and pushed through
//! `flux-git`, which fetches, edits again on the new head and retries when
//! another writer pushed first.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use flux_git::{CommitMessage, CommitSpec, GitError, Pushed, Repo, RepoConfig, SshOptions};
use flux_manifests::release::WorkloadResult;
use flux_manifests::{Checkout, LoadOptions, Transaction};

use crate::ci;
use crate::offline::Manifests;

/// Where the config repository is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct GitArgs {
    /// The config repository to clone (into a temporary folder), edit, commit and push to,
    /// instead of editing --manifests or asking a daemon.
    #[arg(long, value_name = "URL", conflicts_with = "paths")]
    pub git_url: Option<String>,
    /// The branch to edit (with --git-url).
    #[arg(long, value_name = "BRANCH", default_value = "master")]
    pub git_branch: String,
    /// The SSH private key to clone and push with (a deploy key with write access).
    #[arg(long, value_name = "FILE", requires = "git_url")]
    pub git_ssh_key: Option<PathBuf>,
    /// The known_hosts file holding the git server's host key [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE", requires = "git_ssh_key")]
    pub git_known_hosts: Option<PathBuf>,
    /// An HTTPS token to clone and push with (sent as the password of user x-access-token, or of
    /// the user the URL names). Kept in a file only fluxctl can read while it runs, never in the
    /// URL; prefer the environment variable to the flag, which other users can see.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FLUX_GIT_TOKEN",
        hide_env_values = true,
        requires = "git_url"
    )]
    pub git_token: Option<String>,
}

impl GitArgs {
    /// Whether the verb works on a repository given by URL.
    pub fn given(&self) -> bool {
        self.git_url.is_some()
    }
}

/// What the edit did: each workload's result, whether a file could not be
/// read, and the commit, when one was pushed.
#[derive(Debug)]
pub struct Edited {
    /// The results of the last edit (the one pushed, when there were retries).
    pub results: Vec<WorkloadResult>,
    /// A manifest could not be read (reported on standard error).
    pub unreadable: bool,
    /// The commit on the branch; `None` when nothing changed, or on a dry run.
    pub pushed: Option<Pushed>,
}

/// How a verb changes the manifests: its results, after recording its edits
/// in the transaction.
pub type Change<'a> =
    dyn FnMut(&Checkout, &mut Transaction<'_>) -> anyhow::Result<Vec<WorkloadResult>> + 'a;

/// What to commit: Flux's message for the verb, `-m` at its head, who asked.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The message.
    pub message: CommitMessage,
    /// `--user`; without it, the author of the commit the CI built.
    pub user: Option<String>,
}

/// Clones the repository, makes the change and (unless `dry_run`) commits
/// and pushes it; the clone is removed afterwards. The commit message ends
/// with the CI run that made it, when there is one.
pub async fn edit_and_push(
    git: &GitArgs,
    manifests: &Manifests,
    dry_run: bool,
    commit: Commit,
    change: &mut Change<'_>,
) -> anyhow::Result<Edited> {
    let data = tempfile::Builder::new()
        .prefix("fluxctl-git-")
        .tempdir()
        .context("making a temporary folder for the clone")?;
    let run = ci::Run::from_env();
    let user = commit.user.clone().or(run.author.clone());
    let paths = manifests
        .git_paths
        .iter()
        .map(|p| {
            parse_git_path(&p.to_string_lossy())
                .map_err(|e| anyhow::anyhow!("--git-path {}: {e}", p.display()))
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let repo = Repo::new(repo_config(git, &paths, data.path(), user.is_some())?);
    let mut last: Option<(Vec<WorkloadResult>, Vec<String>)> = None;
    let mut round = |dir: &Path, write: bool| -> anyhow::Result<bool> {
        let options = LoadOptions {
            default_namespace: manifests.default_namespace.clone(),
            root: Some(dir.to_path_buf()),
            max_file_bytes: manifests.manifest_max_file_size,
            manifest_generation: manifests.manifest_generation,
            ..LoadOptions::default()
        };
        let checkout = load(dir, &paths, &git.git_branch, options)?;
        let mut transaction = Transaction::new(&checkout);
        let results = change(&checkout, &mut transaction)?;
        let changed = transaction.changes().next().is_some();
        if changed && write {
            transaction
                .write()
                .context("writing the edited manifests")?;
        }
        let errors = checkout
            .errors
            .iter()
            .map(|error| in_repo(dir, &error.to_string()))
            .collect();
        last = Some((results, errors));
        Ok(changed)
    };
    let pushed = if dry_run {
        repo.fetch().await?;
        let checkout = repo.checkout().await?;
        round(checkout.dir(), false)?;
        None
    } else {
        let message = with_run(&commit.message, &run);
        let outcome = repo
            .commit_and_push(|dir| {
                if !round(dir, true)? {
                    return Ok::<_, anyhow::Error>(None);
                }
                let spec = CommitSpec::new(message.clone());
                Ok(Some(match &user {
                    Some(user) => spec.author(user.clone()),
                    None => spec,
                }))
            })
            .await;
        match outcome {
            Ok(pushed) => Some(pushed),
            Err(GitError::NothingToCommit) => None,
            // Someone else pushed the same change first: it is there.
            Err(GitError::NoLongerApplies { source: None, .. }) => None,
            Err(error) => return Err(error.into()),
        }
    };
    let (results, errors) = last.unwrap_or_default();
    for error in &errors {
        eprintln!("fluxctl: {error}");
    }
    Ok(Edited {
        results,
        unreadable: !errors.is_empty(),
        pushed,
    })
}

fn repo_config(
    git: &GitArgs,
    paths: &[String],
    data: &Path,
    set_author: bool,
) -> anyhow::Result<RepoConfig> {
    let url = git.git_url.as_deref().context("--git-url is missing")?;
    let mut config = RepoConfig::new(url, &git.git_branch, data.join("git"));
    config.paths = paths.to_vec();
    config.set_author = set_author;
    config.shallow = true;
    if let Some(token) = git.git_token.as_deref().filter(|t| !t.trim().is_empty()) {
        config.https_token_file = Some(token_file(data, token)?);
    }
    if let Some(key) = &git.git_ssh_key {
        if !key.is_file() {
            bail!("--git-ssh-key {}: no such file", key.display());
        }
        let known_hosts = match &git.git_known_hosts {
            Some(file) => file.clone(),
            None => std::env::home_dir()
                .context("--git-known-hosts is needed: there is no home folder")?
                .join(".ssh/known_hosts"),
        };
        config.ssh = Some(SshOptions {
            key: key.clone(),
            known_hosts,
            config_file: None,
        });
    }
    Ok(config)
}

/// Writes the token to a file in `data` that only we can read, for git's
/// credential helper to read when asked.
fn token_file(data: &Path, token: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data.join("https-token");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .context("writing the --git-token to a temporary file")?;
    writeln!(file, "{}", token.trim()).context("writing the --git-token to a temporary file")?;
    Ok(path)
}

/// The manifests of the checkout in `dir`: every `--git-path` below it, or
/// all of it. A path the branch does not have is an error.
fn load(
    dir: &Path,
    paths: &[String],
    branch: &str,
    options: LoadOptions,
) -> anyhow::Result<Checkout> {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        paths.iter().map(|path| dir.join(path)).collect()
    };
    for (root, path) in roots.iter().zip(paths) {
        if !root.exists() {
            bail!("--git-path {path}: branch {branch} has no such folder or file");
        }
    }
    Ok(Checkout::load(&roots, options))
}

/// A message about a file of the clone, with the path relative to the
/// repository rather than to the temporary folder.
fn in_repo(dir: &Path, message: &str) -> String {
    message.replace(&format!("{}/", dir.display()), "")
}

/// The message, then the paragraph naming the CI run.
fn with_run(message: &CommitMessage, run: &ci::Run) -> CommitMessage {
    match run.paragraph() {
        Some(paragraph) => CommitMessage::plain(format!("{}\n\n{paragraph}", message.as_str())),
        None => message.clone(),
    }
}

/// A `--git-path` as fluxd spells it: relative to the repository's root,
/// `/`-separated, no `.` parts; the root is `.`. Absolute paths and `..`
/// are refused.
pub fn parse_git_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        return Err(format!(
            "{text:?} is absolute: a git path is relative to the repository's root"
        ));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "{text:?} leaves the repository: no .. in a git path"
                ));
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Ok(".".into());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_are_relative_to_the_root() {
        assert_eq!(parse_git_path("./manifests/").as_deref(), Ok("manifests"));
        assert_eq!(parse_git_path(".").as_deref(), Ok("."));
        assert!(parse_git_path("/etc").is_err());
        assert!(parse_git_path("a/../../b").is_err());
    }

    #[test]
    fn the_ci_run_ends_the_message() {
        let run = ci::Run {
            link: Some("https://ci.example.com/7".into()),
            commit: Some("abc".into()),
            author: None,
        };
        let message = CommitMessage::release("app:2", &["default:deployment/app"]);
        assert_eq!(
            with_run(&message, &run).as_str(),
            "Release app:2 to default:deployment/app\n\n\
             Pipeline: https://ci.example.com/7\nBuilt from: abc"
        );
        assert_eq!(with_run(&message, &ci::Run::default()), message);
    }
}
