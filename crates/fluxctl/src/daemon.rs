//! Working against a running `fluxd`: the `--url` / `--token` and
//! port-forwarding options every verb shares, waiting for jobs, and printing what they did.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use flux_api::{Client, ClientError, Job, JobSpec, JobStatus, ResultStatus, WorkloadResult};

use crate::port_forward;
use crate::results::{self, Row};

/// Where the daemon is and how to prove who we are: the global flags of
/// Flux v1's fluxctl. Without `--url`, fluxd is found in the cluster of the
/// kubeconfig and reached through a port-forward.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// The daemon's API; without it, fluxctl port-forwards to fluxd's pod.
    #[arg(short = 'u', long, global = true, env = "FLUX_URL")]
    pub url: Option<String>,
    /// The API token (the daemon's `--api-token-file`), needed by verbs that change something.
    #[arg(
        short = 't',
        long,
        global = true,
        env = "FLUX_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// How long to wait for a commit to be applied, a rollout or a sync (`30s`, `5m`).
    #[arg(
        id = "global_timeout",
        long = "timeout",
        global = true,
        value_name = "DURATION",
        default_value = "60s",
        value_parser = crate::sync::parse_duration
    )]
    pub timeout: Duration,
    /// The kubeconfig context to port-forward through [default: the current one].
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace of fluxd's pod to port-forward to [default: default].
    #[arg(long, global = true, env = "FLUX_FORWARD_NAMESPACE", value_name = "NS")]
    pub k8s_fwd_ns: Option<String>,
    /// The labels of fluxd's pod to port-forward to [default: app=flux].
    #[arg(
        long,
        global = true,
        env = "FLUX_FORWARD_LABELS",
        value_name = "KEY=VALUE,..."
    )]
    pub k8s_fwd_labels: Option<String>,
}

impl Connection {
    /// A client of the daemon: at `--url`, else through a port-forward to
    /// fluxd's pod, which lasts as long as the runtime.
    pub async fn client(&self) -> anyhow::Result<Client> {
        if self.url.is_some() {
            return self.client_at_url();
        }
        let forward = port_forward::start(&self.lookup()).await?;
        let token = self.token.clone().or(forward.token.clone());
        Ok(Client::new(&forward.url(), token)?)
    }

    /// A client of the daemon at `--url`; the port-forwarding flags are
    /// ignored, and said to be.
    pub fn client_at_url(&self) -> anyhow::Result<Client> {
        let url = self
            .url
            .as_deref()
            .context("no --url (or FLUX_URL) is given")?;
        let forwarding: Vec<&str> = [
            (self.context.is_some(), "--context"),
            (self.k8s_fwd_ns.is_some(), "--k8s-fwd-ns"),
            (self.k8s_fwd_labels.is_some(), "--k8s-fwd-labels"),
        ]
        .into_iter()
        .filter_map(|(given, flag)| given.then_some(flag))
        .collect();
        if !forwarding.is_empty() {
            let flags = forwarding.join(", ");
            eprintln!("fluxctl: --url is given, so {flags} are ignored");
        }
        Ok(Client::new(url, self.token.clone())?)
    }

    fn lookup(&self) -> port_forward::Lookup {
        port_forward::Lookup {
            context: self.context.clone(),
            namespace: self
                .k8s_fwd_ns
                .clone()
                .unwrap_or_else(|| port_forward::DEFAULT_NAMESPACE.into()),
            labels: self
                .k8s_fwd_labels
                .clone()
                .unwrap_or_else(|| port_forward::DEFAULT_LABELS.into()),
        }
    }
}

/// Runs `work` on a fresh runtime; an error is printed and exits 1.
pub fn block_on<F>(work: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fluxctl: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fluxctl: {}", explain(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error for a person: an unreachable daemon with the root cause only
/// (the transport repeats the URL at each level), anything else with its
/// whole chain.
fn explain(error: &anyhow::Error) -> String {
    if let Some(ClientError::Unreachable { url, source }) = error.downcast_ref::<ClientError>() {
        let mut cause: &dyn std::error::Error = source;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        return format!("cannot reach fluxd at {url}: {cause}");
    }
    format!("{error:#}")
}

/// Submits a job and waits for it to finish, with a spinner on a terminal.
pub async fn submit_and_wait(client: &Client, spec: &JobSpec) -> anyhow::Result<Job> {
    let submitted = client.submit(spec).await?;
    let spinner = spinner("Waiting for the job");
    let mut job = client.job(&submitted.id).await?;
    while matches!(job.status, JobStatus::Queued | JobStatus::Running) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = client
            .job(&submitted.id)
            .await
            .with_context(|| format!("job {}", submitted.id))?;
    }
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    Ok(job)
}

/// A spinner on standard error, only when it is a terminal (never in logs).
pub fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    Some(bar)
}

/// Prints a finished job: the result table and the commit pushed; exits 1
/// when the job or a workload failed.
pub fn report(job: &Job, verbosity: u8, json: bool) -> ExitCode {
    if json {
        let text = serde_json::to_string_pretty(job).expect("jobs always serialise");
        println!("{text}");
    } else {
        print!("{}", render_results(&job.result, verbosity));
        if let Some(commit) = &job.commit {
            println!("Commit pushed:\t{}", short(commit));
        }
        if let Some(applied) = &job.applied {
            println!("Commit applied:\t{}", short(applied));
        }
    }
    if failed(job) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether the job or one of its workloads failed; the job's error is
/// told on standard error.
pub fn failed(job: &Job) -> bool {
    if let Some(error) = &job.error {
        eprintln!("fluxctl: job {} failed: {error}", job.id);
    }
    job.status == JobStatus::Failed || job.result.iter().any(|r| r.status == ResultStatus::Failed)
}

/// The `WORKLOAD STATUS UPDATES` table of results the daemon reported.
pub fn render_results(result: &[WorkloadResult], verbosity: u8) -> String {
    let rows: Vec<Row> = result
        .iter()
        .map(|r| Row {
            id: r.workload.clone(),
            status: status_word(r.status),
            level: match r.status {
                ResultStatus::Success | ResultStatus::Failed => 0,
                ResultStatus::Skipped => 1,
                ResultStatus::Ignored => 2,
            },
            lines: r
                .updates
                .iter()
                .map(|u| format!("{}: {} -> {}", u.container, u.current, tag_of(&u.target)))
                .chain(r.error.clone())
                .collect(),
        })
        .collect();
    results::render_rows(&rows, verbosity)
}

fn status_word(status: ResultStatus) -> String {
    match status {
        ResultStatus::Success => "success",
        ResultStatus::Failed => "failed",
        ResultStatus::Skipped => "skipped",
        ResultStatus::Ignored => "ignored",
    }
    .to_string()
}

/// The tag (or digest) of an image reference, as the offline table shows it.
fn tag_of(image: &str) -> &str {
    if let Some((_, digest)) = image.split_once('@') {
        return digest;
    }
    let last_part = image.rsplit('/').next().unwrap_or(image);
    match last_part.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

/// The first seven characters of a commit id, as git shows them.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_of_reads_tags_digests_and_registry_ports() {
        assert_eq!(super::tag_of("localhost:5000/a/b:1.2"), "1.2");
        assert_eq!(super::tag_of("localhost:5000/a/b"), "latest");
        assert_eq!(super::tag_of("a/b@sha256:00"), "sha256:00");
    }
}
