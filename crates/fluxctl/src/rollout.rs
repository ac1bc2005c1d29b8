//! `fluxctl release --watch`: after the commit is applied, follow the
//! released workloads' rollouts until each is ready, in the original's
//! `WORKLOAD CONTAINER IMAGE RELEASE REPLICAS` table.

use std::time::{Duration, Instant};

use flux_api::{Client, RolloutStatus, Workload};

use crate::table;

/// How often the workloads are asked about while watching.
const POLL: Duration = Duration::from_secs(1);

/// Where the released workloads' rollouts stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every released workload with a rollout is ready.
    Ready,
    /// Some are still rolling out.
    Rolling,
    /// These failed, each with the daemon's messages.
    Failed(Vec<(String, Vec<String>)>),
    /// The daemon reports no rollout for any of them: it has no cluster.
    NoRollout,
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// A final progress other than [`Progress::Rolling`].
    Ended(Progress),
    /// Still rolling out when the time was up.
    TimedOut,
}

/// The released workloads as the daemon lists them, in the order given.
pub fn released<'w>(ids: &[String], workloads: &'w [Workload]) -> Vec<&'w Workload> {
    ids.iter()
        .filter_map(|id| workloads.iter().find(|w| &w.id == id))
        .collect()
}

/// Judges the rollouts of the released workloads. A workload without a
/// rollout (a CronJob, or one the cluster does not run) has nothing to
/// wait for; when none has one, the daemon has no cluster.
pub fn progress(released: &[&Workload]) -> Progress {
    let rolling: Vec<_> = released
        .iter()
        .filter_map(|w| w.rollout.as_ref().map(|r| (w, r)))
        .collect();
    if rolling.is_empty() {
        return Progress::NoRollout;
    }
    let failed: Vec<(String, Vec<String>)> = rolling
        .iter()
        .filter(|(_, r)| r.status == RolloutStatus::Error)
        .map(|(w, r)| (w.id.clone(), r.messages.clone()))
        .collect();
    if !failed.is_empty() {
        return Progress::Failed(failed);
    }
    // Ready means running git's spec: a live image other than git's is a
    // spec the cluster has not taken yet, whatever its replicas say.
    let runs_git = |w: &Workload| w.containers.iter().all(|c| c.live_image.is_none());
    if rolling
        .iter()
        .all(|(w, r)| r.status == RolloutStatus::Ready && runs_git(w))
    {
        return Progress::Ready;
    }
    Progress::Rolling
}

/// The watch table: the first container on the workload's row with the
/// rollout's status and `updated/desired` replicas (with `-v`, how many are
/// ready too), further containers on rows of their own.
pub fn render(released: &[&Workload], verbosity: u8) -> String {
    let mut rows = vec![
        ["WORKLOAD", "CONTAINER", "IMAGE", "RELEASE", "REPLICAS"]
            .map(String::from)
            .to_vec(),
    ];
    for workload in released {
        let (release, replicas) = match &workload.rollout {
            Some(rollout) => {
                let mut replicas = format!("{}/{}", rollout.updated, rollout.desired);
                if verbosity > 0 {
                    replicas.push_str(&format!(" ({} ready)", rollout.ready));
                }
                (status_word(rollout.status).to_string(), replicas)
            }
            None => (String::new(), String::new()),
        };
        let mut containers = workload.containers.iter();
        let (name, image) = containers
            .next()
            .map(|c| (c.name.clone(), c.image.clone()))
            .unwrap_or_default();
        rows.push(vec![workload.id.clone(), name, image, release, replicas]);
        for container in containers {
            rows.push(vec![
                String::new(),
                container.name.clone(),
                container.image.clone(),
                String::new(),
                String::new(),
            ]);
        }
    }
    table::render(&rows)
}

fn status_word(status: RolloutStatus) -> &'static str {
    match status {
        RolloutStatus::Ready => "ready",
        RolloutStatus::Updating => "updating",
        RolloutStatus::Started => "started",
        RolloutStatus::Error => "error",
    }
}

/// Polls the daemon's workloads until the released ones are ready, one
/// failed, none has a rollout, or `timeout` passes. `show` gets each table
/// that differs from the one before (nothing is repeated in logs).
pub async fn watch(
    client: &Client,
    ids: &[String],
    timeout: Duration,
    verbosity: u8,
    mut show: impl FnMut(&str),
) -> anyhow::Result<Watched> {
    let deadline = Instant::now() + timeout;
    let mut shown = String::new();
    loop {
        let workloads = client.workloads(None).await?;
        let released = released(ids, &workloads);
        let progress = progress(&released);
        if progress != Progress::NoRollout {
            let table = render(&released, verbosity);
            if table != shown {
                show(&table);
                shown = table;
            }
        }
        if progress != Progress::Rolling {
            return Ok(Watched::Ended(progress));
        }
        if Instant::now() >= deadline {
            return Ok(Watched::TimedOut);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use flux_api::{Container, Rollout, RolloutStatus, Workload};

    use super::Progress;

    fn workload(id: &str, containers: &[(&str, &str)], rollout: Option<Rollout>) -> Workload {
        Workload {
            id: id.into(),
            containers: containers
                .iter()
                .map(|(name, image)| Container {
                    name: name.to_string(),
                    image: image.to_string(),
                    live_image: None,
                })
                .collect(),
            policies: Default::default(),
            rollout,
            sync_error: None,
            read_error: None,
            holds: Vec::new(),
        }
    }

    fn rollout(status: RolloutStatus, updated: i32, desired: i32, ready: i32) -> Option<Rollout> {
        Some(Rollout {
            status,
            desired,
            updated,
            ready,
            messages: Vec::new(),
        })
    }

    #[test]
    fn the_table_puts_the_first_container_on_the_workload_row_and_others_below() {
        let front_end = workload(
            "sock-shop:deployment/front-end",
            &[
                ("front-end", "weaveworksdemos/front-end:0.4.0"),
                ("proxy", "envoyproxy/envoy:v1.30"),
            ],
            rollout(RolloutStatus::Updating, 1, 3, 2),
        );
        let table = super::render(&[&front_end], 0);
        assert_eq!(
            table,
            "WORKLOAD                        CONTAINER  IMAGE                            RELEASE   REPLICAS\n\
             sock-shop:deployment/front-end  front-end  weaveworksdemos/front-end:0.4.0  updating  1/3\n\
             \x20                               proxy      envoyproxy/envoy:v1.30\n"
        );
        let verbose = super::render(&[&front_end], 1);
        assert!(verbose.contains("updating  1/3 (2 ready)\n"), "{verbose}");
    }

    #[test]
    fn a_workload_without_containers_or_rollout_keeps_its_row() {
        let cron = workload("sock-shop:cronjob/report", &[], None);
        assert_eq!(
            super::render(&[&cron], 0),
            "WORKLOAD                  CONTAINER  IMAGE  RELEASE  REPLICAS\nsock-shop:cronjob/report\n"
        );
    }

    #[test]
    fn progress_is_ready_only_when_every_rollout_is() {
        let a = workload(
            "ns:deployment/a",
            &[],
            rollout(RolloutStatus::Ready, 2, 2, 2),
        );
        let b = workload(
            "ns:deployment/b",
            &[],
            rollout(RolloutStatus::Updating, 1, 2, 1),
        );
        let cron = workload("ns:cronjob/c", &[], None);
        assert_eq!(super::progress(&[&a, &b]), Progress::Rolling);
        assert_eq!(super::progress(&[&a, &cron]), Progress::Ready);
        assert_eq!(super::progress(&[&cron]), Progress::NoRollout);
        assert_eq!(super::progress(&[]), Progress::NoRollout);
    }

    #[test]
    fn a_ready_rollout_of_another_image_than_gits_is_not_ready() {
        let mut carts = workload(
            "sock-shop:deployment/carts",
            &[("carts", "weaveworksdemos/carts:0.4.10")],
            rollout(RolloutStatus::Ready, 2, 2, 2),
        );
        carts.containers[0].live_image = Some("weaveworksdemos/carts:0.4.8".into());
        assert_eq!(super::progress(&[&carts]), Progress::Rolling);
        carts.containers[0].live_image = None;
        assert_eq!(super::progress(&[&carts]), Progress::Ready);
    }

    #[test]
    fn an_error_rollout_fails_with_its_messages() {
        let mut failed = rollout(RolloutStatus::Error, 0, 2, 0).expect("a rollout");
        failed.messages = vec!["ProgressDeadlineExceeded".into()];
        let a = workload("ns:deployment/a", &[], Some(failed));
        let b = workload(
            "ns:deployment/b",
            &[],
            rollout(RolloutStatus::Updating, 1, 2, 1),
        );
        assert_eq!(
            super::progress(&[&a, &b]),
            Progress::Failed(vec![(
                "ns:deployment/a".into(),
                vec!["ProgressDeadlineExceeded".into()]
            )])
        );
    }

    #[test]
    fn released_workloads_are_found_in_the_order_given() {
        let a = workload("ns:deployment/a", &[], None);
        let b = workload("ns:deployment/b", &[], None);
        let listed = [a, b];
        let ids = [
            "ns:deployment/b".to_string(),
            "ns:deployment/zz".to_string(),
        ];
        let found = super::released(&ids, &listed);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "ns:deployment/b");
    }
}
