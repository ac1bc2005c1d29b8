//! `fluxctl list-workloads --manifests DIR`: every workload, container and
//! image in a checkout, with its policies.

use std::process::ExitCode;

use flux_manifests::Workload;
use serde_json::json;

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
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Prints the table; exits 1 when a file could not be read.
pub fn run(args: Args) -> ExitCode {
    let (checkout, failed) = args.manifests.load();
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
        Output::Text => text_listing(&workloads, &shown, args.no_headers),
    };
    print!("{out}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn text_listing(workloads: &[&Workload], shown: &dyn Fn(&str) -> bool, no_headers: bool) -> String {
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(
            ["WORKLOAD", "CONTAINER", "IMAGE", "RELEASE", "POLICY"]
                .map(String::from)
                .to_vec(),
        );
    }
    for workload in workloads {
        let policy = workload.policies.markers().join(",");
        let containers: Vec<_> = workload
            .containers
            .iter()
            .filter(|c| shown(&c.name))
            .collect();
        if containers.is_empty() {
            rows.push(vec![
                workload.id.to_string(),
                String::new(),
                String::new(),
                String::new(),
                policy,
            ]);
            continue;
        }
        for (n, container) in containers.iter().enumerate() {
            let (id, policy) = if n == 0 {
                (workload.id.to_string(), policy.clone())
            } else {
                (String::new(), String::new())
            };
            rows.push(vec![
                id,
                container.name.clone(),
                container.spelling.clone(),
                String::new(),
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
                "file": w.location.file,
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
