//! The deploy key: an ed25519 SSH key generated on first start, kept 0600
//! in the data folder, shown by `identity` so the user can grant it access,
//! and used for every SSH transport through `GIT_SSH_COMMAND`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::command::{RunError, execute};
use crate::error::GitError;

/// File name of the private key inside the data folder (`.pub` beside it).
pub const KEY_FILE: &str = "identity";

/// An SSH key pair on disk.
#[derive(Debug, Clone)]
pub struct DeployKey {
    private: PathBuf,
}

/// What `fluxctl identity` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The public key line (`ssh-ed25519 AAAA… comment`), to paste into the
    /// git host's deploy keys.
    pub public_key: String,
    /// The fingerprint alone, e.g. `SHA256:…`.
    pub fingerprint: String,
    /// The whole line `ssh-keygen -l` prints: bits, fingerprint, comment, type.
    pub fingerprint_line: String,
}

impl DeployKey {
    /// The key in `dir`, generated (ed25519, no passphrase) if absent.
    /// Permissions are set to 0600 either way.
    pub async fn ensure(dir: &Path, comment: &str) -> Result<Self, GitError> {
        let private = dir.join(KEY_FILE);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| GitError::io(dir, e))?;
        if !tokio::fs::try_exists(&private)
            .await
            .map_err(|e| GitError::io(&private, e))?
        {
            generate(&private, comment).await?;
        }
        restrict(&private).await?;
        Ok(Self { private })
    }

    /// A key pair that already exists at `private` (and `private.pub`).
    pub fn at(private: impl Into<PathBuf>) -> Self {
        Self {
            private: private.into(),
        }
    }

    /// The private key file.
    pub fn private_key(&self) -> &Path {
        &self.private
    }

    /// The public key file.
    pub fn public_key(&self) -> PathBuf {
        let mut name = self.private.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    }

    /// SSH options that use this key and trust the hosts in `known_hosts`.
    pub fn ssh_options(&self, known_hosts: impl Into<PathBuf>) -> SshOptions {
        SshOptions {
            key: self.private.clone(),
            known_hosts: known_hosts.into(),
            config_file: None,
        }
    }

    /// The public key and its fingerprint.
    pub async fn identity(&self) -> Result<Identity, GitError> {
        let public = self.public_key();
        let public_key = tokio::fs::read_to_string(&public)
            .await
            .map_err(|e| GitError::io(&public, e))?
            .trim()
            .to_string();
        let args: Vec<OsString> = vec!["-l".into(), "-f".into(), public.clone().into()];
        let mut command = Command::new("ssh-keygen");
        command.args(&args);
        let printed = execute(command, "ssh-keygen", &args, None)
            .await
            .map_err(GitError::from)?;
        let fingerprint_line = printed.stdout.trim().to_string();
        let fingerprint = fingerprint_line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| GitError::Output {
                program: "ssh-keygen -l".into(),
                detail: format!("no fingerprint in {fingerprint_line:?}"),
            })?
            .to_string();
        Ok(Identity {
            public_key,
            fingerprint,
            fingerprint_line,
        })
    }
}

async fn generate(private: &Path, comment: &str) -> Result<(), GitError> {
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-t".into(),
        "ed25519".into(),
        "-N".into(),
        "".into(),
        "-C".into(),
        comment.into(),
        "-f".into(),
        private.as_os_str().to_owned(),
    ];
    let mut command = Command::new("ssh-keygen");
    command.args(&args);
    execute(command, "ssh-keygen", &args, None)
        .await
        .map_err(|e| match e {
            RunError::Failed(f) => f.into_error(),
            RunError::Other(e) => e,
        })?;
    Ok(())
}

async fn restrict(private: &Path) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(private, std::fs::Permissions::from_mode(0o600))
        .await
        .map_err(|e| GitError::io(private, e))
}

/// How SSH is run for git: the deploy key only, host keys checked against
/// a known_hosts file, never a prompt.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The private key to offer.
    pub key: PathBuf,
    /// The known_hosts file that must hold the server's host key.
    pub known_hosts: PathBuf,
    /// An ssh_config file to read instead of the user's (`-F`); `None`
    /// keeps ssh's defaults (the user's `~/.ssh/config` applies).
    pub config_file: Option<PathBuf>,
}

impl SshOptions {
    /// The `GIT_SSH_COMMAND` value (git runs it through the shell, so every
    /// path is quoted).
    pub fn command(&self) -> String {
        let mut parts = vec!["ssh".to_string()];
        if let Some(config) = &self.config_file {
            parts.push(format!("-F {}", shell_quote(config)));
        }
        parts.push(format!("-i {}", shell_quote(&self.key)));
        parts.push("-o IdentitiesOnly=yes".into());
        parts.push("-o StrictHostKeyChecking=yes".into());
        parts.push(format!(
            "-o UserKnownHostsFile={}",
            shell_quote(&self.known_hosts)
        ));
        parts.push("-o BatchMode=yes".into());
        parts.join(" ")
    }
}

fn shell_quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_command_quotes_paths_and_pins_the_key() {
        let options = SshOptions {
            key: "/data/it's/identity".into(),
            known_hosts: "/data/known_hosts".into(),
            config_file: Some("/dev/null".into()),
        };
        assert_eq!(
            options.command(),
            "ssh -F '/dev/null' -i '/data/it'\\''s/identity' -o IdentitiesOnly=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile='/data/known_hosts' -o BatchMode=yes"
        );
    }
}
