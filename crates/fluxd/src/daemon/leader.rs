//! Leader election (`--leader-election`): which of several replicas syncs,
//! runs automation and runs jobs.
//!
//! Every replica tries to take or renew the Lease each retry period (see
//! [`flux_cluster::LeaseLock`]). The one holding it leads; it writes where
//! its API can be reached into the Lease, so followers can hand it the
//! state-changing calls they are sent (see [`crate::forward`]). A leader
//! that cannot renew for the renew deadline stops leading before the lease
//! duration is up, so no follower takes over while it still acts. On a clean
//! shutdown the leader gives the Lease up once its running job is finished.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_cluster::{Held, Holder, LeaseLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StartError;
use crate::config::Config;

/// The Lease annotation holding the leader's API address (`host:port`).
pub const ADDRESS_ANNOTATION: &str = "fluxcd.io/leader-address";

/// This replica's part, as it last saw the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It holds the Lease (or there is no election: it is the only one).
    Leader,
    /// Another replica holds it; `None` while none is known.
    Follower(Option<Leader>),
}

/// The replica holding the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// Its identity on the Lease.
    pub identity: String,
    /// Where its API listens, as it wrote it on the Lease.
    pub address: Option<String>,
}

/// This replica's role, shared by the loops, the job worker and the API.
#[derive(Clone)]
pub struct Leadership {
    role: Arc<watch::Sender<Role>>,
    /// This replica's identity on the Lease (`sole` without an election).
    pub identity: String,
    /// `namespace/name` of the Lease, for messages.
    pub lease: String,
}

impl Leadership {
    /// No election: this replica always leads.
    pub fn sole() -> Leadership {
        Leadership {
            role: Arc::new(watch::channel(Role::Leader).0),
            identity: "sole".into(),
            lease: String::new(),
        }
    }

    /// This replica's role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Waits until this replica leads.
    pub async fn lead(&self) {
        let mut role = self.role.subscribe();
        // The sender lives in `self`, so the channel cannot close meanwhile.
        let _ = role.wait_for(|role| *role == Role::Leader).await;
    }

    fn set(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }
}

/// What a leader keeps on the Lease for the one after it, and takes over
/// from the one before.
pub(super) trait Handover: Send + Sync + 'static {
    /// Annotations the leader writes with each renewal, as they are now.
    fn annotations(&self) -> Vec<(&'static str, String)>;
    /// Resolves when `annotations` may have changed: the leader renews at
    /// once rather than at its next retry.
    fn changed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Told of the Lease as the previous holder left it, on each takeover.
    fn taken(self: Arc<Self>, previous: Holder);
}

/// The election's timing, from the flags.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// A running election: its task, and how to end it.
pub(super) struct Election {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Election {
    /// Stops trying and gives the Lease up if this replica holds it.
    pub(super) async fn resign(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The Lease and this replica's candidacy, as the flags say; the
/// election starts with [`campaign`].
pub(super) async fn candidate(
    config: &Config,
    set_name: &str,
) -> Result<(LeaseLock, Leadership, Timing), StartError> {
    let timing = timing(config).map_err(StartError::LeaderElection)?;
    let client = flux_cluster::Connection::default()
        .client()
        .await
        .map_err(StartError::Cluster)?;
    let namespace = config
        .leader_election_namespace
        .clone()
        .or_else(|| config.k8s_secret_namespace.clone())
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    let name = config
        .leader_election_name
        .clone()
        .unwrap_or_else(|| format!("fluxd-{set_name}"));
    let identity = identity();
    let mut lock = LeaseLock::new(client, &namespace, &name, &identity, timing.lease_duration);
    lock.annotate(ADDRESS_ANNOTATION, address(config));
    let leadership = Leadership {
        role: Arc::new(watch::channel(Role::Follower(None)).0),
        identity,
        lease: lock.lease(),
    };
    Ok((lock, leadership, timing))
}

/// Starts trying to lead, keeping `handover`'s annotations on the Lease
/// while leading.
pub(super) fn campaign(
    lock: LeaseLock,
    leadership: Leadership,
    timing: Timing,
    handover: Arc<dyn Handover>,
) -> Election {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(elect(lock, leadership, timing, handover, stopped));
    Election { stop, task }
}

async fn elect(
    mut lock: LeaseLock,
    leadership: Leadership,
    timing: Timing,
    handover: Arc<dyn Handover>,
    mut stop: watch::Receiver<bool>,
) {
    let lease = leadership.lease.clone();
    let mut renewed: Option<Instant> = None;
    loop {
        let attempt = Instant::now();
        // Only a leader writes them; a replica taking over leaves the
        // previous leader's in place until it has taken them in.
        for (key, value) in handover.annotations() {
            match renewed {
                Some(_) => lock.annotate(key, value),
                None => lock.unannotate(key),
            }
        }
        match lock.try_acquire_or_renew().await {
            Ok(Held::Leading { taken_from }) => {
                if let Some(previous) = taken_from {
                    tracing::info!(%lease, identity = %leadership.identity, previous = previous.identity.as_deref().unwrap_or("none"), "leading: took the Lease");
                    handover.clone().taken(previous);
                }
                renewed = Some(attempt);
                leadership.set(Role::Leader);
            }
            Ok(Held::Following(holder)) => {
                if renewed.take().is_some() {
                    tracing::warn!(%lease, holder = holder.identity.as_deref().unwrap_or("unknown"), "lost the Lease: following");
                }
                leadership.set(Role::Follower(leader_of(holder)));
            }
            Err(error) => {
                tracing::warn!(%lease, %error, "could not take or renew the Lease");
                if renewed.is_some_and(|at| at.elapsed() >= timing.renew_deadline) {
                    tracing::warn!(%lease, deadline = ?timing.renew_deadline, "not renewed within the renew deadline: no longer leading");
                    renewed = None;
                    leadership.set(Role::Follower(None));
                }
            }
        }
        let leading = renewed.is_some();
        tokio::select! {
            () = tokio::time::sleep(timing.retry_period) => {}
            () = handover.changed(), if leading => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    for (key, value) in handover.annotations() {
        lock.annotate(key, value);
    }
    match lock.release().await {
        Ok(true) => tracing::info!(%lease, "gave the Lease up"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%lease, %error, "could not give the Lease up; it expires"),
    }
}

fn leader_of(holder: Holder) -> Option<Leader> {
    let identity = holder.identity?;
    Some(Leader {
        address: holder.annotations.get(ADDRESS_ANNOTATION).cloned(),
        identity,
    })
}

/// The timing flags, checked as client-go checks them.
fn timing(config: &Config) -> Result<Timing, String> {
    let timing = Timing {
        lease_duration: config.leader_election_lease_duration,
        renew_deadline: config.leader_election_renew_deadline,
        retry_period: config.leader_election_retry_period,
    };
    if timing.renew_deadline >= timing.lease_duration {
        return Err(format!(
            "--leader-election-renew-deadline ({:?}) must be shorter than --leader-election-lease-duration ({:?}), or a leader that cannot renew still acts when another takes over",
            timing.renew_deadline, timing.lease_duration
        ));
    }
    if timing.retry_period >= timing.renew_deadline || timing.retry_period.is_zero() {
        return Err(format!(
            "--leader-election-retry-period ({:?}) must be above zero and shorter than --leader-election-renew-deadline ({:?})",
            timing.retry_period, timing.renew_deadline
        ));
    }
    Ok(timing)
}

/// `POD_NAME` or the host name, and a random suffix: two processes never
/// share an identity, even one restarted in the same pod.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "fluxd".into());
    let suffix: u32 = rand::random();
    format!("{base}_{suffix:08x}")
}

/// Where followers reach this replica's API: `POD_IP` with the `--listen`
/// port inside a pod, else the `--listen` address (a host name when it
/// listens on every address).
fn address(config: &Config) -> String {
    let port = config.listen.port();
    if let Some(ip) = std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()) {
        return match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]:{port}"),
            _ => format!("{ip}:{port}"),
        };
    }
    if !config.listen.ip().is_unspecified() {
        return config.listen.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> Config {
        let base = ["fluxd", "--git-url", "file:///tmp/repo.git"];
        Config::try_parse_from(base.iter().chain(args)).expect("the flags parse")
    }

    #[test]
    fn the_defaults_are_client_gos() {
        let timing = timing(&config(&[])).expect("the defaults are consistent");
        assert_eq!(timing.lease_duration, Duration::from_secs(15));
        assert_eq!(timing.renew_deadline, Duration::from_secs(10));
        assert_eq!(timing.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn a_renew_deadline_not_shorter_than_the_lease_is_refused_naming_both_flags() {
        let error =
            timing(&config(&["--leader-election-renew-deadline=15s"])).expect_err("refused");
        assert!(
            error.contains("--leader-election-renew-deadline"),
            "{error}"
        );
        assert!(
            error.contains("--leader-election-lease-duration"),
            "{error}"
        );
        let error = timing(&config(&["--leader-election-retry-period=10s"])).expect_err("refused");
        assert!(error.contains("--leader-election-retry-period"), "{error}");
    }

    #[test]
    fn identities_differ_between_processes_of_one_host() {
        assert_ne!(identity(), identity());
    }

    #[test]
    fn the_address_is_the_listen_address_unless_it_is_every_address() {
        assert_eq!(
            address(&config(&["--listen", "127.0.0.1:3031"])),
            "127.0.0.1:3031"
        );
        let everywhere = address(&config(&["--listen", "0.0.0.0:3030"]));
        assert!(everywhere.ends_with(":3030"), "{everywhere}");
        assert!(!everywhere.starts_with("0.0.0.0"), "{everywhere}");
    }
}
