//! `fluxctl identity`: the daemon's public deploy key, to add to the git host.

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use flux_api::ClientError;

use crate::daemon::{self, Connection};

/// Arguments of `identity`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the key's fingerprint instead of the key.
    #[arg(short = 'l', long)]
    fingerprint: bool,
    /// Replace the daemon's deploy key with a new one first (needs --token); add the new key
    /// to the git host.
    #[arg(short = 'r', long)]
    regenerate: bool,
    /// Print the fingerprint and ssh-keygen's picture of the key (implies -l).
    #[arg(short = 'v', long)]
    visual: bool,
}

/// Prints the key (or its fingerprint); exits 1 when the daemon has none.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    daemon::block_on(async move {
        let client = connection.client().await?;
        let answer = if args.regenerate {
            client.regenerate_identity().await
        } else {
            client.identity().await
        };
        let identity = match answer {
            Ok(identity) => identity,
            Err(ClientError::Status {
                status: 404,
                message,
                ..
            }) => bail!("the daemon has no deploy key: {message}"),
            Err(error) => return Err(error.into()),
        };
        if args.visual {
            println!("{}", identity.fingerprint);
            print!("{}", randomart(&identity.public_key)?);
        } else if args.fingerprint {
            println!("{}", identity.fingerprint);
        } else {
            println!("{}", identity.public_key);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// ssh-keygen's randomart of a public key: the picture below the
/// fingerprint line `ssh-keygen -lv` prints.
fn randomart(public_key: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("a folder for the public key")?;
    let path = dir.path().join("identity.pub");
    std::fs::write(&path, format!("{public_key}\n")).context("writing the public key")?;
    let output = Command::new("ssh-keygen")
        .arg("-lv")
        .arg("-f")
        .arg(&path)
        .output()
        .context("running ssh-keygen (from openssh-client) for the picture")?;
    if !output.status.success() {
        bail!(
            "ssh-keygen -lv: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .skip(1)
        .map(|line| format!("{line}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_picture_is_ssh_keygens_randomart_without_its_fingerprint_line() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fluxd", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let art = super::randomart(public.trim()).unwrap();
        let lines: Vec<&str> = art.lines().collect();
        assert!(lines[0].starts_with("+--[ED25519 256]--+"), "{art}");
        assert!(
            lines.last().unwrap().starts_with("+----[SHA256]-----+"),
            "{art}"
        );
        assert!(!art.contains("SHA256:"), "{art}");
    }
}
