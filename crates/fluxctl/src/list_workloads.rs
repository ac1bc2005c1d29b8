//! `fluxctl list-workloads`: every workload, container and image, with its
//! policies — of a checkout (`--manifests DIR`) or as the daemon knows them
//! (then with the rollout status).

use std::process::ExitCode;

use flux_manifests::Workload;
use serde_json::json;

use crate::daemon::{self, Connection};
use crate::offline::{Manifests, Output};
use crate::table;

/// Arguments of `list-workloads`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: Manifests,
    /// Only workloads in this namespace.
    #[arg(short, long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Workloads in every namespace (the default offline).
    #[arg(short, long)]
    all_namespaces: bool,
    /// Only workloads with a container of this name, and only that container.
    #[arg(short, long)]
    container: Option<String>,
    /// Leave out the header row.
    #[arg(long)]
    no_headers: bool,
    /// Output format.
    #[arg(short, long, visible_alias = "output-format", value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One workload as the table shows it, from either mode.
struct Listed {
    id: String,
    policy: String,
    release: String,
    containers: Vec<Row>,
}

/// A container's row: its name, git's image, and the image the cluster runs
/// when that is another one.
struct Row {
    name: String,
    image: String,
    live: Option<String>,
}

/// Prints the table; exits 1 when a file could not be read or the daemon
/// could not be asked.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    if args.manifests.paths.is_empty() {
        return daemon::block_on(from_daemon(args, connection));
    }
    let (checkout, failed) = args.manifests.load();
    crate::offline::report_builds(&checkout);
    let mut workloads: Vec<&Workload> = checkout
        .workloads
        .iter()
        .filter(|w| {
            args.namespace
                .as_deref()
                .is_none_or(|ns| w.id.namespace() == ns)
        })
        .filter(|w| {
            args.container
                .as_deref()
                .is_none_or(|c| w.container(c).is_some())
        })
        .collect();
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    let shown = |name: &str| args.container.as_deref().is_none_or(|c| c == name);
    let out = match args.output {
        Output::Json => json_listing(&workloads, &shown),
        Output::Text => {
            let listed: Vec<Listed> = workloads
                .iter()
                .map(|w| Listed {
                    id: w.id.to_string(),
                    policy: w.policies.markers().join(","),
                    release: String::new(),
                    containers: w
                        .containers
                        .iter()
                        .map(|c| Row {
                            name: c.name.clone(),
                            image: c.spelling.clone(),
                            live: None,
                        })
                        .collect(),
                })
                .collect();
            text_listing(&listed, &shown, args.no_headers)
        }
    };
    print!("{out}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn from_daemon(args: Args, connection: &Connection) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let mut workloads = client.workloads(args.namespace.as_deref()).await?;
    // Files fluxd could not read: their workloads are listed as last read,
    // and the listing is not complete.
    let unread = client.read_state().await?.errors;
    for error in &unread {
        eprintln!("fluxctl: {}", error.message);
    }
    let status = if unread.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    workloads.retain(|w| {
        args.container
            .as_deref()
            .is_none_or(|c| w.containers.iter().any(|x| x.name == c))
    });
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    let shown = |name: &str| args.container.as_deref().is_none_or(|c| c == name);
    if args.output == Output::Json {
        for workload in &mut workloads {
            workload.containers.retain(|c| shown(&c.name));
        }
        println!("{}", serde_json::to_string_pretty(&workloads)?);
        return Ok(status);
    }
    let listed: Vec<Listed> = workloads
        .iter()
        .map(|w| Listed {
            id: w.id.clone(),
            policy: policy_column(w),
            release: w
                .rollout
                .as_ref()
                .map(|r| rollout_word(r.status).to_string())
                .unwrap_or_default(),
            containers: w
                .containers
                .iter()
                .map(|c| Row {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    live: c.live_image.clone(),
                })
                .collect(),
        })
        .collect();
    print!("{}", text_listing(&listed, &shown, args.no_headers));
    Ok(status)
}

/// The POLICY column: the markers, then what holds an automated workload
/// back: `automated (held at 0.3.12 by a3f9c1e)`, `automated (reverted:
/// 0.3.14 failed its rollout (ProgressDeadlineExceeded))`.
fn policy_column(workload: &flux_api::Workload) -> String {
    let markers = api_markers(&workload.policies).join(",");
    let notes: Vec<String> = workload
        .holds
        .iter()
        .map(flux_api::Hold::summary)
        .chain(workload.policies.reverted.values().map(ToString::to_string))
        .collect();
    if notes.is_empty() {
        return markers;
    }
    format!("{markers} ({})", notes.join("; "))
}

/// The markers of the POLICY column, in the offline order.
fn api_markers(policies: &flux_api::Policies) -> Vec<&'static str> {
    [
        (policies.automated, "automated"),
        (policies.ignore, "ignore"),
        (policies.locked, "locked"),
    ]
    .into_iter()
    .filter_map(|(set, word)| set.then_some(word))
    .collect()
}

fn rollout_word(status: flux_api::RolloutStatus) -> &'static str {
    match status {
        flux_api::RolloutStatus::Ready => "ready",
        flux_api::RolloutStatus::Updating => "updating",
        flux_api::RolloutStatus::Error => "error",
        flux_api::RolloutStatus::Started => "started",
    }
}

fn text_listing(workloads: &[Listed], shown: &dyn Fn(&str) -> bool, no_headers: bool) -> String {
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(
            ["WORKLOAD", "CONTAINER", "IMAGE", "RELEASE", "POLICY"]
                .map(String::from)
                .to_vec(),
        );
    }
    for workload in workloads {
        let policy = workload.policy.clone();
        let containers: Vec<&Row> = workload
            .containers
            .iter()
            .filter(|row| shown(&row.name))
            .collect();
        if containers.is_empty() {
            rows.push(vec![
                workload.id.clone(),
                String::new(),
                String::new(),
                workload.release.clone(),
                policy,
            ]);
            continue;
        }
        for (n, row) in containers.iter().enumerate() {
            let (id, mut release, policy) = if n == 0 {
                (
                    workload.id.clone(),
                    workload.release.clone(),
                    policy.clone(),
                )
            } else {
                (String::new(), String::new(), String::new())
            };
            if let Some(live) = &row.live {
                if !release.is_empty() {
                    release.push(' ');
                }
                release.push_str(&format!("(live: {live})"));
            }
            rows.push(vec![
                id,
                row.name.clone(),
                row.image.clone(),
                release,
                policy,
            ]);
        }
    }
    table::render(&rows)
}

fn json_listing(workloads: &[&Workload], shown: &dyn Fn(&str) -> bool) -> String {
    let list: Vec<_> = workloads
        .iter()
        .map(|w| {
            let containers: Vec<_> = w
                .containers
                .iter()
                .filter(|c| shown(&c.name))
                .map(|c| {
                    json!({
                        "name": c.name,
                        "image": c.spelling,
                        "canonical": c.image.canonical(),
                        "init": c.init,
                        "line": c.line,
                    })
                })
                .collect();
            json!({
                "id": w.id,
                "kind": w.kind,
                "file": &*w.location.file,
                "line": w.location.line,
                "policy": w.policies.markers(),
                "policies": w.policies,
                "containers": containers,
            })
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&list).expect("JSON values always serialise");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_column_says_what_holds_an_automated_workload_back() {
        let mut workload = flux_api::Workload {
            id: "sock-shop:deployment/front-end".into(),
            containers: Vec::new(),
            policies: flux_api::Policies {
                automated: true,
                ..Default::default()
            },
            rollout: None,
            sync_error: None,
            read_error: None,
            holds: Vec::new(),
        };
        assert_eq!(policy_column(&workload), "automated");
        workload.holds.push(flux_api::Hold {
            container: "front-end".into(),
            tag: "0.3.12".into(),
            from: "0.3.13".into(),
            commit: "a3f9c1e0d2".into(),
        });
        assert_eq!(
            policy_column(&workload),
            "automated (held at 0.3.12 by a3f9c1e)"
        );
        workload.holds.clear();
        workload.policies.reverted.insert(
            "front-end".into(),
            flux_api::RevertedTag {
                tag: "0.3.14".into(),
                reason: Some("ProgressDeadlineExceeded".into()),
            },
        );
        assert_eq!(
            policy_column(&workload),
            "automated (reverted: 0.3.14 failed its rollout (ProgressDeadlineExceeded))"
        );
    }
}
