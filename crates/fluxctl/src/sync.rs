//! `fluxctl sync`: ask the daemon to fetch git now and wait until the head
//! of its branch is applied.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use flux_api::Client;

use crate::daemon::{self, Connection, short};

/// Arguments of `sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to wait for the revision to be applied: the global `--timeout`.
    #[arg(skip)]
    timeout: Duration,
}

/// Prints each step; exits 1 when the revision is not applied in time.
pub fn run(mut args: Args, connection: &Connection) -> ExitCode {
    args.timeout = connection.timeout;
    daemon::block_on(sync(args, connection))
}

async fn sync(args: Args, connection: &Connection) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    println!("Synchronizing with {}", client.url().trim_end_matches('/'));
    let requested = client.sync().await?;
    let revision = short(&requested.revision).to_string();
    if let Some(unverified) = &requested.unverified {
        eprintln!(
            "fluxctl: the head {} of {} is not applied: {} is not verified: {}",
            short(&unverified.head),
            requested.branch,
            unverified.what,
            unverified.reason
        );
    }
    println!("Revision of {} to apply is {revision}", requested.branch);
    println!("Waiting for {revision} to be applied ...");
    let unread = match until_synced(&client, &requested.revision, args.timeout).await? {
        Synced::Applied(unread) => unread,
        Synced::Pending(pending) => bail!(
            "{revision} was not applied within {}s ({pending} commit(s) pending); \
             the daemon keeps trying, see its log",
            args.timeout.as_secs()
        ),
    };
    if let Some(unverified) = &requested.unverified {
        // The newest verified revision is applied, the head is not: not "Done".
        eprintln!(
            "fluxctl: {revision} applied; the head {} waits for its commits to verify",
            short(&unverified.head)
        );
        return Ok(ExitCode::FAILURE);
    }
    if unread.is_empty() {
        println!("Done.");
        return Ok(ExitCode::SUCCESS);
    }
    // What those files hold was not applied: not "Done".
    for error in &unread {
        eprintln!("fluxctl: {}", error.message);
    }
    eprintln!(
        "fluxctl: {revision} synced, except what the {} file(s) above hold: they could not be read",
        unread.len()
    );
    Ok(ExitCode::FAILURE)
}

/// How waiting for a revision ended.
#[derive(Debug)]
pub enum Synced {
    /// Applied; the files that could not be read at the revision fluxd read last.
    Applied(Vec<flux_api::FileError>),
    /// Not applied in time; this many commits were still pending.
    Pending(usize),
}

/// Polls the daemon until `revision` is applied or `timeout` passes (a
/// spinner on a terminal meanwhile).
pub async fn until_synced(
    client: &Client,
    revision: &str,
    timeout: Duration,
) -> anyhow::Result<Synced> {
    let spinner = daemon::spinner("Waiting for the sync");
    let deadline = Instant::now() + timeout;
    let synced = loop {
        let status = client.sync_status(revision).await?;
        if status.pending.is_empty() {
            break Synced::Applied(status.errors);
        }
        if Instant::now() >= deadline {
            break Synced::Pending(status.pending.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(synced)
}

/// Durations written like `1s`, `30s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text}: give a unit (s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text}: expected a number then s, m or h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("{text}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_read_seconds_minutes_and_hours() {
        assert_eq!(super::parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(super::parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(super::parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(super::parse_duration("5").is_err());
        assert!(super::parse_duration("5d").is_err());
    }
}
