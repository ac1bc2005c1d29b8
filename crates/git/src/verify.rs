//! Signature verification (`--git-verify-signatures`): which commits on the
//! branch may be applied and built on.
//!
//! The trusted keys live in a keyring of our own in the data folder, made
//! afresh when a [`Repo`](crate::Repo) first verifies: a `gnupg` home with
//! the imported OpenPGP public keys (given full owner trust: importing a key
//! is trusting it) and an `allowed_signers` file for SSH signatures (the
//! user's file, plus fluxd's own key). fluxd's own signing key is added to
//! either, so the commits and sync tags it makes verify.
//!
//! A commit verifies when git reports a good signature whose key is trusted
//! fully (`gpg.minTrustLevel=fully`): an SSH key not in the allowed signers
//! file, or an OpenPGP key we have not imported, does not verify.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::command::{RunError, execute};
use crate::error::GitError;
use crate::repo::SigningKey;

/// What signatures are trusted, for `--git-verify-signatures`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureTrust {
    /// OpenPGP public key files, or folders whose files (not recursively;
    /// names starting with `.` skipped, symbolic links followed) are keys
    /// (`--git-gpg-key-import`).
    pub gpg_keys: Vec<PathBuf>,
    /// An SSH allowed signers file, in the format of `ssh-keygen -Y verify`
    /// and git's `gpg.ssh.allowedSignersFile`
    /// (`--git-verify-allowed-signers`). Read when the keyring is made.
    pub allowed_signers: Option<PathBuf>,
}

/// The outcome of verifying the branch from the sync marker to its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// The branch head checked.
    pub head: String,
    /// The newest commit that may be applied: it and every commit between
    /// the sync marker and it verify. The marker's own commit when nothing
    /// newer does; `None` when there is no marker and the first commit does
    /// not verify, or the marker itself does not.
    pub verified: Option<String>,
    /// The first commit (or the sync tag) that does not verify, and why;
    /// `None` when the head verifies.
    pub refused: Option<Unverified>,
}

impl SignatureCheck {
    /// Whether the head itself may be applied.
    pub fn head_verified(&self) -> bool {
        self.refused.is_none()
    }
}

/// A commit (or the sync tag) whose signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The commit id, or `tag <name>` for the sync tag.
    pub what: String,
    /// Why, in words the user can act on.
    pub reason: String,
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not verified: {}", self.what, self.reason)
    }
}

/// The keyring made in the data folder.
#[derive(Debug, Clone)]
pub(crate) struct Keyring {
    gnupg_home: PathBuf,
    allowed_signers: PathBuf,
}

impl Keyring {
    /// Makes the keyring afresh under `dir` (keys removed from the
    /// configuration are no longer trusted after a restart).
    pub(crate) async fn make(
        dir: &Path,
        trust: &SignatureTrust,
        signing: Option<&SigningKey>,
        signer_email: &str,
        env: &[(OsString, OsString)],
    ) -> Result<Self, GitError> {
        let gnupg_home = dir.join("gnupg");
        if gnupg_home.exists() {
            tokio::fs::remove_dir_all(&gnupg_home)
                .await
                .map_err(|e| GitError::io(&gnupg_home, e))?;
        }
        tokio::fs::create_dir_all(&gnupg_home)
            .await
            .map_err(|e| GitError::io(&gnupg_home, e))?;
        // gpg refuses (warns about) a home others can read.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        tokio::fs::set_permissions(&gnupg_home, private)
            .await
            .map_err(|e| GitError::io(&gnupg_home, e))?;
        let keyring = Self {
            gnupg_home,
            allowed_signers: dir.join("allowed_signers"),
        };
        for file in key_files(&trust.gpg_keys).await? {
            let text = tokio::fs::read(&file)
                .await
                .map_err(|e| GitError::io(&file, e))?;
            keyring
                .import(&text)
                .await
                .map_err(|error| GitError::Trust {
                    what: file.display().to_string(),
                    reason: error.to_string(),
                })?;
        }
        if let Some(SigningKey::Gpg(id)) = signing {
            let exported = gpg(env, ["--batch", "--armor", "--export", id.as_str()], None).await?;
            if !exported.contains("BEGIN PGP PUBLIC KEY BLOCK") {
                return Err(GitError::Trust {
                    what: format!("signing key {id}"),
                    reason: "gpg has no such key to export (--git-signing-key)".into(),
                });
            }
            keyring.import(exported.as_bytes()).await?;
        }
        keyring.trust_every_key().await?;
        keyring
            .write_allowed_signers(trust, signing, signer_email)
            .await?;
        Ok(keyring)
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        vec![("GNUPGHOME".into(), self.gnupg_home.clone().into())]
    }

    /// The `-c` options and environment for a verifying git run.
    pub(crate) fn git_args(&self) -> Vec<OsString> {
        let mut allowed = OsString::from("gpg.ssh.allowedSignersFile=");
        allowed.push(self.allowed_signers.as_os_str());
        vec![
            "-c".into(),
            allowed,
            "-c".into(),
            "gpg.minTrustLevel=fully".into(),
        ]
    }

    pub(crate) fn git_env(&self) -> Vec<(OsString, OsString)> {
        self.env()
    }

    async fn import(&self, armored_or_binary: &[u8]) -> Result<(), GitError> {
        gpg(
            &self.env(),
            ["--batch", "--import"],
            Some(armored_or_binary),
        )
        .await?;
        Ok(())
    }

    /// Every key in our keyring was put there to be trusted: owner trust
    /// "ultimate", so its signatures count as fully trusted.
    async fn trust_every_key(&self) -> Result<(), GitError> {
        let listed = gpg(
            &self.env(),
            ["--batch", "--with-colons", "--list-keys"],
            None,
        )
        .await?;
        let ownertrust: String = primary_fingerprints(&listed)
            .into_iter()
            .map(|fingerprint| format!("{fingerprint}:6:\n"))
            .collect();
        if ownertrust.is_empty() {
            return Ok(());
        }
        gpg(
            &self.env(),
            ["--batch", "--import-ownertrust"],
            Some(ownertrust.as_bytes()),
        )
        .await?;
        Ok(())
    }

    async fn write_allowed_signers(
        &self,
        trust: &SignatureTrust,
        signing: Option<&SigningKey>,
        signer_email: &str,
    ) -> Result<(), GitError> {
        let mut text = String::new();
        if let Some(file) = &trust.allowed_signers {
            text = tokio::fs::read_to_string(file)
                .await
                .map_err(|e| GitError::io(file, e))?;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
        }
        if let Some(SigningKey::Ssh(key)) = signing {
            let public = ssh_public_key(key).await?;
            text.push_str(&format!("{signer_email} {public}\n"));
        }
        tokio::fs::write(&self.allowed_signers, text)
            .await
            .map_err(|e| GitError::io(&self.allowed_signers, e))
    }
}

/// The files named directly, and the files in the folders named.
async fn key_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, GitError> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = tokio::fs::metadata(path)
            .await
            .map_err(|e| GitError::io(path, e))?;
        if !metadata.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut entries = tokio::fs::read_dir(path)
            .await
            .map_err(|e| GitError::io(path, e))?;
        let mut inside = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| GitError::io(path, e))?
        {
            // A mounted ConfigMap or Secret keeps its data in `..data`
            // folders next to links to the files: the links are the keys.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let file = entry.path();
            if tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file()) {
                inside.push(file);
            }
        }
        inside.sort();
        files.extend(inside);
    }
    Ok(files)
}

/// The fingerprints of primary keys in `gpg --with-colons` output (each
/// `fpr` record right after a `pub` record).
fn primary_fingerprints(listed: &str) -> Vec<String> {
    let mut fingerprints = Vec::new();
    let mut after_primary = false;
    for line in listed.lines() {
        let mut fields = line.split(':');
        match fields.next() {
            Some("pub") => after_primary = true,
            Some("fpr") if after_primary => {
                if let Some(fingerprint) = fields.nth(8).filter(|f| !f.is_empty()) {
                    fingerprints.push(fingerprint.to_string());
                }
                after_primary = false;
            }
            _ => {}
        }
    }
    fingerprints
}

async fn gpg<const N: usize>(
    env: &[(OsString, OsString)],
    args: [&str; N],
    input: Option<&[u8]>,
) -> Result<String, GitError> {
    let mut command = Command::new("gpg");
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C")
        .kill_on_drop(true);
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    command.args(&args);
    Ok(execute(command, "gpg", &args, input).await?.stdout)
}

async fn ssh_public_key(private: &Path) -> Result<String, GitError> {
    let mut command = Command::new("ssh-keygen");
    command.kill_on_drop(true);
    let args: Vec<OsString> = vec!["-y".into(), "-f".into(), private.as_os_str().to_owned()];
    command.args(&args);
    let printed = execute(command, "ssh-keygen", &args, None)
        .await
        .map_err(GitError::from)?;
    Ok(printed.stdout.trim().to_string())
}

/// One commit as `git log` reports its signature.
#[derive(Debug)]
pub(crate) struct Signed {
    pub id: String,
    /// `%G?`: G, B, U, X, Y, R, E or N.
    pub status: char,
    /// `%GT`: undefined, never, marginal, fully, ultimate.
    pub trust: String,
    /// `%GK`: the key (id or fingerprint) that signed.
    pub key: String,
}

/// The `git log` format that [`read_signatures`] reads.
pub(crate) const SIGNATURE_FORMAT: &str = "--format=%H%x1f%G?%x1f%GT%x1f%GK%x00";

/// Reads `git log -z`-like output in [`SIGNATURE_FORMAT`].
pub(crate) fn read_signatures(printed: &str) -> Vec<Signed> {
    printed
        .split('\0')
        .map(|record| record.trim_matches('\n'))
        .filter(|record| !record.is_empty())
        .filter_map(|record| {
            let mut fields = record.split('\x1f');
            let id = fields.next()?.to_string();
            let status = fields.next()?.chars().next().unwrap_or('N');
            let trust = fields.next().unwrap_or_default().to_string();
            let key = fields.next().unwrap_or_default().to_string();
            Some(Signed {
                id,
                status,
                trust,
                key,
            })
        })
        .collect()
}

impl Signed {
    /// Why this commit does not verify; `None` when it does.
    pub(crate) fn refusal(&self) -> Option<String> {
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!(" {}", self.key)
        };
        match self.status {
            'G' if matches!(self.trust.as_str(), "fully" | "ultimate") => None,
            'G' | 'U' => Some(format!(
                "signed by a key{key} that is not trusted (not imported with --git-gpg-key-import, or not in the allowed signers file)"
            )),
            'N' => Some("not signed".into()),
            'B' => Some(format!("bad signature by{key}")),
            'E' => Some(format!(
                "signed by a key{key} fluxd does not have (import it with --git-gpg-key-import)"
            )),
            'X' => Some(format!("the signature by{key} has expired")),
            'Y' => Some(format!("signed by an expired key{key}")),
            'R' => Some(format!("signed by a revoked key{key}")),
            other => Some(format!("signature status {other} from git")),
        }
    }
}

/// Commits known to verify, so a refresh with an unchanged head asks gpg
/// (or ssh-keygen) about nothing.
#[derive(Debug, Default)]
pub(crate) struct VerifiedCommits(HashSet<String>);

impl VerifiedCommits {
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    pub(crate) fn insert(&mut self, id: String) {
        self.0.insert(id);
    }
}

/// Why `git verify-tag` refused the sync tag.
pub(crate) fn tag_refusal(error: RunError) -> Result<String, GitError> {
    match error {
        RunError::Failed(failure) => {
            let said = failure.stderr.trim();
            if said.is_empty() || said.contains("no signature found") {
                return Ok("not signed".into());
            }
            if said.contains("No principal matched") {
                return Ok("signed by an SSH key not in the allowed signers file".into());
            }
            if said.contains("No public key") {
                return Ok(
                    "signed by a key fluxd does not have (import it with --git-gpg-key-import)"
                        .into(),
                );
            }
            Ok(format!(
                "its signature does not verify: {}",
                said.lines().last().unwrap_or(said)
            ))
        }
        RunError::Other(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_primary_fingerprints_are_trusted() {
        let listed = "tru::1:1\npub:u:255:22:AAAA:1::::::scSC::::::23::0:\nfpr:::::::::PRIMARY1:\nuid:u::::1::X::A <a@x>::::::::::0:\nsub:u:255:18:BBBB:1::::::e::::::23:\nfpr:::::::::SUBKEY1:\n";
        assert_eq!(primary_fingerprints(listed), vec!["PRIMARY1".to_string()]);
    }

    #[test]
    fn a_good_signature_verifies_only_when_its_key_is_trusted() {
        let signed = |status, trust: &str| Signed {
            id: "c".into(),
            status,
            trust: trust.into(),
            key: "K".into(),
        };
        assert_eq!(signed('G', "ultimate").refusal(), None);
        assert_eq!(signed('G', "fully").refusal(), None);
        assert!(signed('G', "undefined").refusal().is_some());
        assert!(signed('U', "undefined").refusal().is_some());
        assert_eq!(
            signed('N', "undefined").refusal().as_deref(),
            Some("not signed")
        );
    }
}
