//! fluxd's flags, with the original's names; each also reads an environment
//! variable (`--git-url` from `FLUXD_GIT_URL`, and so on).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use flux_registry::Platform;

/// The Flux daemon: keeps a cluster in step with a git repo of manifests,
/// and the images in those manifests in step with their registries.
#[derive(Debug, Clone, Parser)]
#[command(name = "fluxd", version, about)]
pub struct Config {
    /// URL of the git repo of manifests (ssh, https or file).
    #[arg(long, env = "FLUXD_GIT_URL")]
    pub git_url: String,
    /// Branch to sync and commit to.
    #[arg(long, env = "FLUXD_GIT_BRANCH", default_value = "master")]
    pub git_branch: String,
    /// Folder of the repo to read manifests from (repeatable; default: all of it).
    /// Read as git reads paths: `.` is the whole repo, `./dir` and `dir/` are `dir`.
    #[arg(long = "git-path", env = "FLUXD_GIT_PATH", value_delimiter = ',', value_parser = parse_git_path)]
    pub git_paths: Vec<String>,
    /// Manifest files larger than this are refused unread (bytes, or with a
    /// KiB, MiB or GiB suffix).
    #[arg(long, env = "FLUXD_MANIFEST_MAX_FILE_SIZE", default_value = "4MiB", value_parser = flux_manifests::parse_file_size, value_name = "SIZE")]
    pub manifest_max_file_size: u64,
    /// Committer (and author) name.
    #[arg(long, env = "FLUXD_GIT_USER", default_value = "Weave Flux")]
    pub git_user: String,
    /// Committer (and author) email.
    #[arg(long, env = "FLUXD_GIT_EMAIL", default_value = "support@weave.works")]
    pub git_email: String,
    /// Make the user who asked for a change the commit's author.
    #[arg(long, env = "FLUXD_GIT_SET_AUTHOR")]
    pub git_set_author: bool,
    /// Name of the sync tag and of the notes ref.
    #[arg(long, env = "FLUXD_GIT_LABEL", default_value = "flux-sync")]
    pub git_label: String,
    /// Run the commands of `.flux.yaml` files to make a path's manifests
    /// (Flux v1's manifest generation); off, a `.flux.yaml` is ignored.
    #[arg(long, env = "FLUXD_MANIFEST_GENERATION")]
    pub manifest_generation: bool,
    /// The longest one `.flux.yaml` generator or updater may run.
    #[arg(long, env = "FLUXD_MANIFEST_GENERATION_TIMEOUT", default_value = "1m", value_parser = parse_duration)]
    pub manifest_generation_timeout: Duration,
    /// How often to fetch the repo.
    #[arg(long, env = "FLUXD_GIT_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub git_poll_interval: Duration,
    /// Never push: sync only; the sync marker is kept locally.
    #[arg(long, env = "FLUXD_GIT_READONLY")]
    pub git_readonly: bool,
    /// File holding the token for an https git URL (a mounted Secret, say);
    /// read again at every fetch, so a rotated token is picked up.
    #[arg(long, env = "FLUXD_GIT_HTTPS_TOKEN_FILE", value_name = "FILE")]
    pub git_https_token_file: Option<PathBuf>,
    /// User name sent with the token of `--git-https-token-file` when the
    /// git URL names none.
    #[arg(long, env = "FLUXD_GIT_HTTPS_USER", default_value = flux_git::DEFAULT_HTTPS_USER)]
    pub git_https_user: String,
    /// A git credential helper for https git URLs, as git's
    /// `credential.helper` takes it (`store --file=FILE`, `!command`);
    /// asked after the token file and the URL's credentials.
    #[arg(long, env = "FLUXD_GIT_CREDENTIAL_HELPER", value_name = "HELPER")]
    pub git_credential_helper: Option<String>,
    /// Sign commits and the sync tag with this key: an OpenPGP key id of
    /// gpg's keyring (`GNUPGHOME`), or with `--git-signing-format=ssh` an
    /// SSH private key file.
    #[arg(long, env = "FLUXD_GIT_SIGNING_KEY", value_name = "KEY")]
    pub git_signing_key: Option<String>,
    /// What `--git-signing-key` is: `openpgp` or `ssh` (git's `gpg.format`).
    #[arg(long, env = "FLUXD_GIT_SIGNING_FORMAT", value_enum, default_value_t = SigningFormat::Openpgp)]
    pub git_signing_format: SigningFormat,
    /// Apply and build on only commits whose signatures verify (and a sync
    /// tag that does), up to the newest verified one.
    #[arg(long, env = "FLUXD_GIT_VERIFY_SIGNATURES")]
    pub git_verify_signatures: bool,
    /// OpenPGP public keys trusted by `--git-verify-signatures`: files, or
    /// folders whose files are keys (repeatable).
    #[arg(
        long = "git-gpg-key-import",
        env = "FLUXD_GIT_GPG_KEY_IMPORT",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    pub git_gpg_key_import: Vec<PathBuf>,
    /// SSH keys trusted by `--git-verify-signatures`: an allowed signers
    /// file (git's `gpg.ssh.allowedSignersFile`).
    #[arg(long, env = "FLUXD_GIT_VERIFY_ALLOWED_SIGNERS", value_name = "FILE")]
    pub git_verify_allowed_signers: Option<PathBuf>,
    /// Append `[ci skip]` to commit messages.
    #[arg(long, env = "FLUXD_GIT_CI_SKIP")]
    pub git_ci_skip: bool,
    /// How often to apply the repo even when it has not changed.
    #[arg(long, env = "FLUXD_SYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sync_interval: Duration,
    /// Delete cluster objects that fluxd applied and that left the repo.
    #[arg(long, env = "FLUXD_SYNC_GARBAGE_COLLECTION")]
    pub sync_garbage_collection: bool,
    /// Take back fields another field manager changed (`kubectl scale`, an
    /// autoscaler) when they differ from git; `false` leaves them and fails
    /// the object with the API server's conflict. A manifest annotated
    /// `fluxcd.io/force-conflicts: "false"` is never forced.
    #[arg(long, env = "FLUXD_SYNC_FORCE_CONFLICTS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub sync_force_conflicts: bool,
    /// How often automation looks for newer images, besides on new tags.
    #[arg(long, env = "FLUXD_AUTOMATION_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub automation_interval: Duration,
    /// How long automation waits to batch new tags into one commit.
    #[arg(long, env = "FLUXD_AUTOMATION_BATCH_WINDOW", default_value = "1s", value_parser = parse_duration)]
    pub automation_batch_window: Duration,
    /// Revert every automated release whose rollout fails (a workload opts
    /// in alone with `fluxcd.io/rollback-on-failure: "true"`).
    #[arg(long, env = "FLUXD_AUTOMATION_ROLLBACK_ON_FAILURE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub automation_rollback_on_failure: bool,
    /// How long an automated release may take to be ready before its
    /// rollout counts as failed (a workload's `fluxcd.io/rollout-deadline`
    /// says otherwise for it).
    #[arg(long, env = "FLUXD_AUTOMATION_ROLLOUT_DEADLINE", default_value = "10m", value_parser = parse_duration)]
    pub automation_rollout_deadline: Duration,
    /// How often to list the tags of each repository in use.
    #[arg(long, env = "FLUXD_REGISTRY_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub registry_poll_interval: Duration,
    /// Requests per second to one registry host.
    #[arg(long, env = "FLUXD_REGISTRY_RPS", default_value_t = 50.0)]
    pub registry_rps: f64,
    /// Burst of requests allowed to one registry host.
    #[arg(long, env = "FLUXD_REGISTRY_BURST", default_value_t = 125)]
    pub registry_burst: u32,
    /// Scan only images matching these globs (repeatable).
    #[arg(
        long = "registry-include-image",
        env = "FLUXD_REGISTRY_INCLUDE_IMAGE",
        value_delimiter = ','
    )]
    pub registry_include_images: Vec<String>,
    /// Never scan images matching these globs (repeatable).
    #[arg(
        long = "registry-exclude-image",
        env = "FLUXD_REGISTRY_EXCLUDE_IMAGE",
        value_delimiter = ','
    )]
    pub registry_exclude_images: Vec<String>,
    /// Registry hosts whose certificate is not checked, tried over https
    /// then plain http (repeatable).
    #[arg(
        long = "registry-insecure-host",
        env = "FLUXD_REGISTRY_INSECURE_HOST",
        value_delimiter = ','
    )]
    pub registry_insecure_hosts: Vec<String>,
    /// Per-host certificates in docker's layout: `DIR/<host[:port]>/*.crt`
    /// are CAs, `*.cert` with `*.key` a client certificate.
    #[arg(
        long = "registry-certs-dir",
        env = "FLUXD_REGISTRY_CERTS_DIR",
        value_name = "DIR",
        default_value = flux_registry::DOCKER_CERTS_DIR
    )]
    pub registry_certs_dir: PathBuf,
    /// CA files (PEM) trusted for one registry host each, `HOST=FILE`;
    /// `HOST` without a port is every port of it (repeatable).
    #[arg(
        long = "registry-ca-file",
        env = "FLUXD_REGISTRY_CA_FILE",
        value_name = "HOST=FILE",
        value_delimiter = ','
    )]
    pub registry_ca_files: Vec<flux_registry::HostCaFile>,
    /// Platforms whose images are scanned, first preferred (repeatable,
    /// `os/architecture[/variant]`).
    #[arg(
        long = "registry-platform",
        env = "FLUXD_REGISTRY_PLATFORM",
        value_delimiter = ',',
        default_value = "linux/amd64"
    )]
    pub registry_platforms: Vec<Platform>,
    /// Images (globs) whose creation time is read from the
    /// `org.opencontainers.image.created` or `org.label-schema.build-date`
    /// label when they carry one (repeatable).
    #[arg(
        long = "registry-use-labels",
        env = "FLUXD_REGISTRY_USE_LABELS",
        value_delimiter = ','
    )]
    pub registry_use_labels: Vec<String>,
    /// Cosign public keys (PEM, ECDSA P-256): every image automation or
    /// `--update-all-images` picks must carry a signature by one of them
    /// (repeatable). A key is named by its file name without extension,
    /// for `fluxcd.io/verify.<container>` annotations.
    #[arg(
        long = "registry-verify-key",
        env = "FLUXD_REGISTRY_VERIFY_KEY",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub registry_verify_keys: Vec<PathBuf>,
    /// Namespaces fluxd may touch (repeatable; default: all).
    #[arg(
        long = "k8s-allow-namespace",
        env = "FLUXD_K8S_ALLOW_NAMESPACE",
        value_delimiter = ','
    )]
    pub k8s_allow_namespaces: Vec<String>,
    /// Secret holding the deploy key when fluxd has a cluster and an ssh
    /// repo URL; made or filled on first start, read on every start.
    #[arg(
        long = "k8s-secret-name",
        env = "FLUXD_K8S_SECRET_NAME",
        default_value = "flux-git-deploy"
    )]
    pub k8s_secret_name: String,
    /// Namespace of that Secret (default: fluxd's own, from the service
    /// account inside a pod, else the kubeconfig context's, else `default`).
    #[arg(long = "k8s-secret-namespace", env = "FLUXD_K8S_SECRET_NAMESPACE")]
    pub k8s_secret_namespace: Option<String>,
    /// Data key of the private key in that Secret.
    #[arg(
        long = "k8s-secret-data-key",
        env = "FLUXD_K8S_SECRET_DATA_KEY",
        default_value = "identity"
    )]
    pub k8s_secret_data_key: String,
    /// `kubeconfig` to use the cluster of kubeconfig or in-cluster config;
    /// `none` to run without a cluster (workloads read from git, no sync).
    #[arg(long, env = "FLUXD_CLUSTER", value_enum, default_value_t = ClusterMode::Kubeconfig)]
    pub cluster: ClusterMode,
    /// Run as one of several replicas: only the holder of a
    /// `coordination.k8s.io/v1` Lease syncs, runs automation and jobs; the
    /// others serve reads and hand state-changing calls to it. Needs a
    /// cluster.
    #[arg(long, env = "FLUXD_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the Lease (default: `--k8s-secret-namespace`, else
    /// `POD_NAMESPACE`, else fluxd's own as for the deploy key's Secret).
    #[arg(long, env = "FLUXD_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease (default: `fluxd-` and a hash of the git URL,
    /// branch and paths, so two fluxd of different repos never share one).
    #[arg(long, env = "FLUXD_LEADER_ELECTION_NAME")]
    pub leader_election_name: Option<String>,
    /// How long a Lease not renewed stays its holder's; a follower takes it
    /// over once it has seen it unchanged for this long.
    #[arg(long, env = "FLUXD_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,
    /// How long the leader keeps leading while it cannot renew the Lease;
    /// then it stops syncing and running jobs. Shorter than the lease duration.
    #[arg(long, env = "FLUXD_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,
    /// How often every replica tries to take or renew the Lease.
    #[arg(long, env = "FLUXD_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
    /// Address of the HTTP API.
    #[arg(long, env = "FLUXD_LISTEN", default_value = "127.0.0.1:3030")]
    pub listen: SocketAddr,
    /// Address of `/metrics` when it should not share the API's.
    #[arg(long, env = "FLUXD_LISTEN_METRICS")]
    pub listen_metrics: Option<SocketAddr>,
    /// Where the mirror, cache, deploy key and token live.
    #[arg(long, env = "FLUXD_DATA_DIR", default_value = "/var/lib/fluxd")]
    pub data_dir: PathBuf,
    /// File holding the API bearer token; made on first start when absent.
    #[arg(long, env = "FLUXD_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// File holding the secret webhooks must present; made when absent.
    #[arg(long, env = "FLUXD_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Secret (in `--k8s-secret-namespace`'s namespace) holding the API token
    /// (data key `api-token`) and the webhook secret (`webhook-secret`) in
    /// place of files in the data folder: filled on first start, read on every
    /// start. `--api-token-file` and `--webhook-secret-file` still win.
    #[arg(long = "k8s-api-secret-name", env = "FLUXD_K8S_API_SECRET_NAME")]
    pub k8s_api_secret_name: Option<String>,
    /// Generic webhook sent every notification as versioned JSON (repeatable).
    #[arg(
        long = "notify-webhook",
        env = "FLUXD_NOTIFY_WEBHOOK",
        value_name = "URL"
    )]
    pub notify_webhooks: Vec<String>,
    /// File holding the secret that signs `--notify-webhook` bodies
    /// (`X-Signature: sha256=<hex HMAC-SHA256>`); one for every webhook, or
    /// one per webhook in the same order (repeatable).
    #[arg(
        long = "notify-webhook-secret-file",
        env = "FLUXD_NOTIFY_WEBHOOK_SECRET_FILE",
        value_name = "FILE"
    )]
    pub notify_webhook_secret_files: Vec<PathBuf>,
    /// Slack incoming webhook URL (repeatable).
    #[arg(long = "notify-slack", env = "FLUXD_NOTIFY_SLACK", value_name = "URL")]
    pub notify_slack: Vec<String>,
    /// Microsoft Teams incoming webhook URL (repeatable).
    #[arg(long = "notify-teams", env = "FLUXD_NOTIFY_TEAMS", value_name = "URL")]
    pub notify_teams: Vec<String>,
    /// Discord webhook URL (repeatable).
    #[arg(
        long = "notify-discord",
        env = "FLUXD_NOTIFY_DISCORD",
        value_name = "URL"
    )]
    pub notify_discord: Vec<String>,
    /// Kinds of notice the flag-given endpoints get: release, automation,
    /// sync-error, rollout-failed, revert, garbage-collection (default: all).
    #[arg(
        long = "notify-events",
        env = "FLUXD_NOTIFY_EVENTS",
        value_delimiter = ',',
        value_name = "KIND"
    )]
    pub notify_events: Vec<crate::notify::NoticeKind>,
    /// Globs over workload ids (`namespace:kind/name`) the flag-given
    /// endpoints get notices about (repeatable; default: all).
    #[arg(
        long = "notify-workloads",
        env = "FLUXD_NOTIFY_WORKLOADS",
        value_delimiter = ',',
        value_name = "GLOB"
    )]
    pub notify_workloads: Vec<String>,
    /// YAML file of further notification endpoints, each with its own
    /// selection and secret files (a mounted ConfigMap or Secret).
    #[arg(
        long = "notify-config",
        env = "FLUXD_NOTIFY_CONFIG",
        value_name = "FILE"
    )]
    pub notify_config: Option<PathBuf>,
    /// Record Kubernetes Events on the objects fluxd releases, syncs and
    /// collects (and on its own Pod, from `POD_NAME`/`POD_NAMESPACE`).
    #[arg(long = "k8s-events", env = "FLUXD_K8S_EVENTS", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
    pub k8s_events: bool,
    /// Log lines for people (`human`) or for collectors (`json`).
    #[arg(long, env = "FLUXD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// Where fluxd finds its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterMode {
    /// kubeconfig (`KUBECONFIG`) or, inside a pod, the in-cluster config.
    Kubeconfig,
    /// No cluster: nothing is applied; workloads come from git.
    None,
}

/// What `--git-signing-key` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SigningFormat {
    /// An OpenPGP key id (or fingerprint, or email) of gpg's keyring.
    Openpgp,
    /// An SSH private key file.
    Ssh,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// How fluxd signs its commits and sync tags.
    pub fn signing_key(&self) -> Option<flux_git::SigningKey> {
        let key = self.git_signing_key.as_ref()?;
        Some(match self.git_signing_format {
            SigningFormat::Openpgp => flux_git::SigningKey::Gpg(key.clone()),
            SigningFormat::Ssh => flux_git::SigningKey::Ssh(PathBuf::from(key)),
        })
    }

    /// What `--git-verify-signatures` trusts, when it is on.
    pub fn signature_trust(&self) -> Option<flux_git::SignatureTrust> {
        self.git_verify_signatures
            .then(|| flux_git::SignatureTrust {
                gpg_keys: self.git_gpg_key_import.clone(),
                allowed_signers: self.git_verify_allowed_signers.clone(),
            })
    }

    /// The token file: the flag's, or `api-token` in the data dir.
    pub fn token_path(&self) -> PathBuf {
        self.api_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("api-token"))
    }

    /// The webhook secret file: the flag's, or `webhook-secret` in the data dir.
    pub fn webhook_secret_path(&self) -> PathBuf {
        self.webhook_secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("webhook-secret"))
    }
}

/// A `--git-path` in the one spelling every part of fluxd uses: relative
/// to the repo's root, `/`-separated, no `.` parts and no trailing slash;
/// the root itself is `.` (as git spells it in `git log -- .`). A path
/// that is absolute or climbs out with `..` is refused.
pub fn parse_git_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        return Err(format!(
            "{text:?} is absolute: a git path is relative to the repo's root (write it without the leading /)"
        ));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => continue,
            ".." => {
                return Err(format!(
                    "{text:?} leaves the repo: a git path may not contain .."
                ));
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Ok(".".to_string());
    }
    Ok(parts.join("/"))
}

/// Parses durations written like `500ms`, `1s`, `30s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {text:?}: write it like 1s, 30s, 5m or 1h");
    if text.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number * 60),
            "h" => Duration::from_secs(number * 3600),
            _ => return Err(err()),
        };
        total += unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The log filter for a `FLUXD_LOG` value: the Kubernetes client's own
/// request tracing is left out unless the value names it, because fluxd logs
/// every failure it gets back, once, with what it was doing.
pub fn log_filter(spec: &str) -> String {
    if spec.contains("kube") {
        return spec.to_string();
    }
    format!("{spec},kube_client=off")
}

#[cfg(test)]
mod tests {
    #[test]
    fn git_paths_mean_what_git_means() {
        for (written, meant) in [
            (".", "."),
            ("./", "."),
            ("", "."),
            ("dir", "dir"),
            ("dir/", "dir"),
            ("./dir", "dir"),
            ("./dir//sub/./", "dir/sub"),
            (".hidden/x", ".hidden/x"),
        ] {
            assert_eq!(
                super::parse_git_path(written).as_deref(),
                Ok(meant),
                "{written:?}"
            );
        }
        for (written, why) in [
            ("..", "leaves the repo"),
            ("dir/../..", "leaves the repo"),
            ("/etc", "absolute"),
        ] {
            let error = super::parse_git_path(written).unwrap_err();
            assert!(error.contains(why), "{written:?}: {error}");
        }
    }

    use super::*;

    #[test]
    fn durations_read_like_the_original_flags() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "m", "1d", "-1s", "1.5s", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let base = ["fluxd", "--git-url", "file:///tmp/repo.git"];
        Config::try_parse_from(base.iter().chain(args))
    }

    #[test]
    fn conflicts_are_forced_unless_told_otherwise() {
        assert!(parse(&[]).unwrap().sync_force_conflicts);
        assert!(
            parse(&["--sync-force-conflicts"])
                .unwrap()
                .sync_force_conflicts
        );
        assert!(
            !parse(&["--sync-force-conflicts=false"])
                .unwrap()
                .sync_force_conflicts
        );
        assert!(parse(&["--sync-force-conflicts=maybe"]).is_err());
    }

    #[test]
    fn the_kubernetes_clients_own_request_log_is_left_out() {
        assert_eq!(log_filter("info"), "info,kube_client=off");
        assert_eq!(
            log_filter("debug,kube_client=debug"),
            "debug,kube_client=debug"
        );
    }

    #[test]
    fn registry_platforms_default_to_linux_amd64_and_keep_their_order() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.registry_platforms, [Platform::linux_amd64()]);
        let config = parse(&[
            "--registry-platform=linux/arm64/v8",
            "--registry-platform",
            "linux/amd64",
        ])
        .unwrap();
        let platforms: Vec<String> = config
            .registry_platforms
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(platforms, ["linux/arm64/v8", "linux/amd64"]);
    }

    #[test]
    fn a_malformed_platform_is_refused_naming_the_flag() {
        let error = parse(&["--registry-platform=linux"]).unwrap_err();
        assert!(error.to_string().contains("--registry-platform"), "{error}");
    }

    #[test]
    fn registry_use_labels_takes_globs_repeated_or_comma_separated() {
        let config = parse(&[
            "--registry-use-labels=quay.io/team/*,ghcr.io/acme/*",
            "--registry-use-labels",
            "weaveworksdemos/*",
        ])
        .unwrap();
        assert_eq!(
            config.registry_use_labels,
            ["quay.io/team/*", "ghcr.io/acme/*", "weaveworksdemos/*"]
        );
        assert!(parse(&[]).unwrap().registry_use_labels.is_empty());
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let command = Config::command();
        for arg in command.get_arguments() {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "--{} has no environment variable",
                arg.get_id()
            );
        }
    }
}
