//! `fluxctl list-images`: for each workload container, the image it runs
//! and the tags its repository offers, newest first by the container's
//! policy. Offline: reads the workloads of a checkout (what
//! `list-workloads` reads) and asks the registries. Without `--manifests`:
//! asks the daemon, and renders its answer with the same table.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context as _;
use flux_image::{ImageRef, Name, Policy};
use flux_manifests::{ResourceId, Workload};
use flux_registry::{RepositoryInfo, TagInfo};
use serde::Serialize;

use crate::daemon::{self, Connection};
use crate::offline::{Manifests, Output};
use crate::registry_options::RegistryArgs;
use crate::table;

/// Arguments of `list-images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    manifests: Manifests,
    /// Show only these workloads (`namespace:kind/name`, `kind/name` in --namespace,
    /// `namespace/name`); comma-separated or repeated. `--service`, `--controller` and `-c` are
    /// Flux v1's (deprecated) spellings.
    #[arg(
        short,
        long = "workload",
        value_name = "ID",
        visible_aliases = ["service", "controller"],
        short_alias = 'c',
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// Show only workloads in this namespace (and read `kind/name` ids in it).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Leave out the header row.
    #[arg(long)]
    no_headers: bool,
    /// Tags shown per container; 0 shows all.
    #[arg(short, long, default_value_t = 10)]
    limit: usize,
    /// Output format.
    #[arg(short, long, visible_alias = "output-format", value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Say, per container of the one workload `-w` names, why automation
    /// did or did not move it (asks the daemon).
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// One workload's containers and what their repositories offer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageStatus {
    #[serde(rename = "ID")]
    id: String,
    containers: Vec<ContainerStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerStatus {
    name: String,
    current: ImageDescription,
    available: Vec<ImageDescription>,
    available_error: String,
    #[serde(skip)]
    repository: String,
    #[serde(skip)]
    current_tag: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageDescription {
    #[serde(rename = "ID")]
    id: String,
    digest: String,
    #[serde(serialize_with = "serialize_time")]
    created_at: Option<jiff::Timestamp>,
    #[serde(skip)]
    tag: String,
    #[serde(skip)]
    note: Option<String>,
    /// With cosign keys for the container: whether the image is signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<flux_api::Signature>,
}

fn serialize_time<S: serde::Serializer>(
    t: &Option<jiff::Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_str(""),
    }
}

/// Exit 0 when every repository could be read, 1 otherwise, 2 on bad input.
pub fn run(args: Args, connection: &Connection) -> ExitCode {
    // Bad ids are refused (exit 2) before anything is asked.
    let namespaces = args.manifests.namespaces(args.namespace.as_deref());
    let wanted = match namespaces.parse_all("--workload", &args.workloads) {
        Ok(wanted) => wanted,
        Err(error) => {
            eprintln!("fluxctl: {error}");
            return ExitCode::from(2);
        }
    };
    if args.explain {
        return explain(&args, wanted, connection);
    }
    if args.manifests.paths.is_empty() {
        return daemon::block_on(from_daemon(args, wanted, connection));
    }
    match run_inner(args, wanted) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fluxctl: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `--explain`: one workload, from the daemon (only it knows the rollbacks
/// and reverts in git's history and its registry cache).
fn explain(args: &Args, wanted: Vec<ResourceId>, connection: &Connection) -> ExitCode {
    if !args.manifests.paths.is_empty() {
        eprintln!("fluxctl: --explain asks the daemon; leave out --manifests");
        return ExitCode::from(2);
    }
    let [workload] = &wanted[..] else {
        eprintln!("fluxctl: --explain needs exactly one workload: -w <namespace:kind/name>");
        return ExitCode::from(2);
    };
    let run = crate::explain::run(workload.to_string(), args.output, connection);
    daemon::block_on(run)
}

fn run_inner(args: Args, wanted: Vec<ResourceId>) -> anyhow::Result<ExitCode> {
    let (checkout, load_failed) = args.manifests.load();
    if let Some(missing) = wanted.iter().find(|id| checkout.workload(id).is_none()) {
        eprintln!("fluxctl: no workload {missing}");
        return Ok(ExitCode::FAILURE);
    }
    let mut workloads: Vec<&Workload> = checkout
        .workloads
        .iter()
        .filter(|w| wanted.is_empty() || wanted.contains(&w.id))
        .filter(|w| {
            args.namespace
                .as_deref()
                .is_none_or(|ns| w.id.namespace() == ns)
        })
        .collect();
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    let names = workloads
        .iter()
        .flat_map(|w| &w.containers)
        .map(|c| c.image.name().clone());
    let repositories = args.registry.scan(names)?;
    let platforms = args.registry.platforms_text();
    let statuses: Vec<ImageStatus> = workloads
        .iter()
        .map(|w| image_status(w, &repositories, &platforms))
        .collect();
    let all_read = statuses
        .iter()
        .flat_map(|s| &s.containers)
        .all(|c| c.available_error.is_empty());
    print_statuses(&statuses, &args)?;
    Ok(if all_read && !load_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn from_daemon(
    args: Args,
    wanted: Vec<ResourceId>,
    connection: &Connection,
) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let ids: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let mut answer = client.images(&ids, args.namespace.as_deref()).await?;
    if let Some(missing) = ids.iter().find(|id| answer.iter().all(|w| &&w.id != id)) {
        anyhow::bail!("no workload {missing}");
    }
    answer.sort_by(|a, b| a.id.cmp(&b.id));
    let statuses: Vec<ImageStatus> = answer.iter().map(from_api).collect();
    print_statuses(&statuses, &args)?;
    let all_read = statuses
        .iter()
        .flat_map(|s| &s.containers)
        .all(|c| c.available_error.is_empty());
    Ok(if all_read {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_statuses(statuses: &[ImageStatus], args: &Args) -> anyhow::Result<()> {
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(statuses).context("rendering JSON")?
        ),
        Output::Text => print!("{}", render_table(statuses, args.limit, args.no_headers)),
    }
    Ok(())
}

/// The daemon's answer in the shape the offline mode renders.
fn from_api(workload: &flux_api::WorkloadImages) -> ImageStatus {
    let containers = workload
        .containers
        .iter()
        .map(|c| {
            let available: Vec<ImageDescription> = c
                .available
                .iter()
                .map(|t| ImageDescription {
                    id: format!("{}:{}", c.repository, t.tag),
                    digest: t.digest.clone().unwrap_or_default(),
                    created_at: t.created,
                    tag: t.tag.clone(),
                    note: None,
                    signature: t.signature.clone(),
                })
                .collect();
            let current_tag = (!c.current.starts_with("sha256:")).then(|| c.current.clone());
            let current = available
                .iter()
                .find(|a| Some(&a.tag) == current_tag.as_ref())
                .cloned()
                .unwrap_or_else(|| ImageDescription {
                    id: format!("{}:{}", c.repository, c.current),
                    digest: String::new(),
                    created_at: None,
                    tag: String::new(),
                    note: None,
                    signature: None,
                });
            ContainerStatus {
                name: c.name.clone(),
                current,
                available,
                available_error: c.error.clone().unwrap_or_default(),
                repository: c.repository.clone(),
                current_tag,
            }
        })
        .collect();
    ImageStatus {
        id: workload.id.clone(),
        containers,
    }
}

fn image_status(
    workload: &Workload,
    repositories: &HashMap<Name, RepositoryInfo>,
    platforms: &str,
) -> ImageStatus {
    let containers = workload
        .containers
        .iter()
        .map(|container| {
            container_status(
                &container.name,
                &container.image,
                &container.spelling,
                &workload.policies.tag_policy(&container.name),
                repositories,
                platforms,
            )
        })
        .collect();
    ImageStatus {
        id: workload.id.to_string(),
        containers,
    }
}

fn container_status(
    name: &str,
    image: &ImageRef,
    spelling: &str,
    policy: &Policy,
    repositories: &HashMap<Name, RepositoryInfo>,
    platforms: &str,
) -> ContainerStatus {
    let mut status = ContainerStatus {
        name: name.to_string(),
        current: ImageDescription {
            id: spelling.to_string(),
            digest: image.digest().unwrap_or_default().to_string(),
            created_at: None,
            tag: String::new(),
            note: None,
            signature: None,
        },
        available: Vec::new(),
        available_error: String::new(),
        repository: image.name().familiar(),
        current_tag: image.tag().map(str::to_string),
    };
    let Some(info) = repositories.get(image.name()) else {
        status.available_error = "repository not scanned".into();
        return status;
    };
    if let Some(error) = &info.error {
        status.available_error = error.clone();
        return status;
    }
    let mut tags: Vec<&TagInfo> = info.tags.iter().collect();
    tags.sort_by(|a, b| policy.newer_first(&a.candidate(), &b.candidate()));
    status.available = tags
        .iter()
        .map(|t| describe(image.name(), t, platforms))
        .collect();
    if let Some(current) = status
        .current_tag
        .as_deref()
        .and_then(|tag| status.available.iter().find(|a| a.tag == tag))
    {
        status.current = current.clone();
    }
    status
}

fn describe(name: &Name, tag: &TagInfo, platforms: &str) -> ImageDescription {
    let note = match (&tag.error, tag.platform.is_some()) {
        (Some(error), _) => Some(error.clone()),
        (None, false) if tag.digest.is_some() => Some(format!("(no image for {platforms})")),
        _ => None,
    };
    ImageDescription {
        id: format!("{}:{}", name.familiar(), tag.tag),
        digest: tag
            .image_digest
            .clone()
            .or(tag.digest.clone())
            .unwrap_or_default(),
        created_at: tag.created,
        tag: tag.tag.clone(),
        note,
        signature: None,
    }
}

/// Go's RFC 822 layout, as Flux prints creation times: `18 Nov 16 16:00 UTC`.
fn format_created(time: jiff::Timestamp) -> String {
    time.strftime("%d %b %y %H:%M UTC").to_string()
}

fn render_table(statuses: &[ImageStatus], limit: usize, no_headers: bool) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    if !no_headers {
        rows.push(["WORKLOAD", "CONTAINER", "IMAGE", "CREATED"].map(String::from));
    }
    for status in statuses {
        let mut workload = status.id.clone();
        if status.containers.is_empty() {
            rows.push([
                workload,
                "<no containers>".into(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for container in &status.containers {
            let first = [
                std::mem::take(&mut workload),
                container.name.clone(),
                container.repository.clone(),
                container.available_error.clone(),
            ];
            rows.push(first);
            rows.extend(tag_rows(container, limit));
        }
    }
    table::render(&rows.iter().map(|row| row.to_vec()).collect::<Vec<_>>())
}

/// One row per tag, newest first: `'->` on the running tag, `|` on the
/// tags newer than it, and `: (N image(s) omitted)` for runs past the limit
/// (the running tag is always shown).
fn tag_rows(container: &ContainerStatus, limit: usize) -> Vec<[String; 4]> {
    let running = container.current_tag.as_deref();
    let running_listed = container
        .available
        .iter()
        .any(|a| Some(a.tag.as_str()) == running);
    let mut rows = Vec::new();
    let mut omitted = 0;
    let mut seen_running = false;
    for (index, available) in container.available.iter().enumerate() {
        let is_running = Some(available.tag.as_str()) == running;
        let marker = if is_running {
            seen_running = true;
            "'->"
        } else if running_listed && !seen_running {
            "|  "
        } else {
            "   "
        };
        if limit > 0 && index >= limit && !is_running {
            omitted += 1;
            continue;
        }
        if omitted > 0 {
            rows.push(omission(omitted));
            omitted = 0;
        }
        let created = match (&available.note, available.created_at) {
            (Some(note), _) => note.clone(),
            (None, Some(time)) => format_created(time),
            (None, None) => String::new(),
        };
        // Automation never picks an unsigned tag; say so beside it.
        let unsigned = match &available.signature {
            Some(flux_api::Signature::Unsigned { .. }) => " unsigned",
            _ => "",
        };
        rows.push([
            String::new(),
            String::new(),
            format!("{marker} {}{unsigned}", available.tag),
            created,
        ]);
    }
    if omitted > 0 {
        rows.push(omission(omitted));
    }
    rows
}

fn omission(count: usize) -> [String; 4] {
    [
        String::new(),
        String::new(),
        format!(": ({count} image(s) omitted)"),
        String::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(tag: &str, created: &str) -> ImageDescription {
        ImageDescription {
            id: format!("example/app:{tag}"),
            digest: String::new(),
            created_at: Some(created.parse().unwrap()),
            tag: tag.into(),
            note: None,
            signature: None,
        }
    }

    fn container(current: &str, tags: &[&str]) -> ContainerStatus {
        ContainerStatus {
            name: "app".into(),
            current: available(current, "2016-11-18T16:00:00Z"),
            available: tags
                .iter()
                .map(|t| available(t, "2016-11-18T16:00:00Z"))
                .collect(),
            available_error: String::new(),
            repository: "example/app".into(),
            current_tag: Some(current.into()),
        }
    }

    #[test]
    fn table_marks_running_and_newer_tags() {
        let statuses = [ImageStatus {
            id: "default:deployment/app".into(),
            containers: vec![container("2", &["3", "2", "1"])],
        }];
        let table = render_table(&statuses, 10, false);
        let expected = "\
WORKLOAD                CONTAINER  IMAGE        CREATED
default:deployment/app  app        example/app
                                   |   3        18 Nov 16 16:00 UTC
                                   '-> 2        18 Nov 16 16:00 UTC
                                       1        18 Nov 16 16:00 UTC
";
        assert_eq!(table, expected);
    }

    #[test]
    fn limit_omits_tags_but_keeps_the_running_one() {
        let tags: Vec<String> = (0..8).rev().map(|i| i.to_string()).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let rows = tag_rows(&container("1", &tags), 3);
        let images: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
        assert_eq!(
            images,
            [
                "|   7",
                "|   6",
                "|   5",
                ": (3 image(s) omitted)",
                "'-> 1",
                ": (1 image(s) omitted)"
            ]
        );
        assert_eq!(tag_rows(&container("1", &tags), 0).len(), 8, "0 shows all");
    }

    #[test]
    fn dates_read_like_go_rfc822() {
        assert_eq!(
            format_created("2016-11-18T16:00:59Z".parse().unwrap()),
            "18 Nov 16 16:00 UTC"
        );
    }
}
