//! Registry flags shared by the offline verbs that scan registries
//! (`list-images`, `release --update-all-images`), the scanner they
//! configure, and one scan of the repositories a verb needs.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use flux_image::{Glob, Name};
use flux_registry::{
    Cache, Client, ClientConfig, Credentials, DOCKER_CERTS_DIR, HostCaFile, HostLimits, Platform,
    RepositoryInfo, ScanConfig, Scanner, TlsConfig,
};

/// How to reach registries.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry host whose certificate is not checked, tried over https
    /// then plain http (localhost and 127.0.0.0/8 always are).
    #[arg(long = "registry-insecure-host", value_name = "HOST")]
    insecure_hosts: Vec<String>,
    /// Per-host certificates in docker's layout: DIR/<host[:port]>/*.crt
    /// are CAs, *.cert with *.key a client certificate.
    #[arg(
        long = "registry-certs-dir",
        value_name = "DIR",
        default_value = DOCKER_CERTS_DIR
    )]
    certs_dir: PathBuf,
    /// CA file (PEM) trusted for one registry host, HOST=FILE; HOST
    /// without a port is every port of it (repeatable).
    #[arg(long = "registry-ca-file", value_name = "HOST=FILE")]
    ca_files: Vec<HostCaFile>,
    /// Requests per second per registry host.
    #[arg(long = "registry-rps", default_value_t = 50.0)]
    rps: f64,
    /// Requests per registry host that may go at once after a lull.
    #[arg(long = "registry-burst", default_value_t = 10)]
    burst: u32,
    /// Image names (globs) whose creation time comes from the
    /// org.opencontainers.image.created or org.label-schema.build-date label.
    #[arg(long = "registry-use-labels", value_name = "GLOB")]
    use_labels: Vec<String>,
    /// Wanted platform, os/arch[/variant]; repeat for a preference list.
    #[arg(
        long = "registry-platform",
        value_name = "PLATFORM",
        default_value = "linux/amd64"
    )]
    platforms: Vec<Platform>,
    /// Docker config with registry credentials [default: $DOCKER_CONFIG/config.json or ~/.docker/config.json].
    #[arg(long = "docker-config", value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Registry cache file [default: $XDG_CACHE_HOME/flux/registry.redb or ~/.cache/flux/registry.redb].
    #[arg(long = "registry-cache", value_name = "FILE")]
    cache: Option<PathBuf>,
    /// Keep the registry cache in memory for this run only.
    #[arg(long = "no-registry-cache", conflicts_with = "cache")]
    no_cache: bool,
    /// Timeout of one registry request, seconds.
    #[arg(long = "registry-timeout", default_value_t = 30)]
    timeout: u64,
}

impl RegistryArgs {
    /// The scanner these flags describe.
    pub fn scanner(&self) -> anyhow::Result<Scanner> {
        let credentials = match self.docker_config_path() {
            Some(path) => Credentials::from_docker_config_file(&path)
                .with_context(|| format!("reading registry credentials from {}", path.display()))?,
            None => Credentials::none(),
        };
        let client = ClientConfig {
            limits: HostLimits {
                rps: if self.rps > 0.0 {
                    self.rps
                } else {
                    f64::INFINITY
                },
                burst: self.burst.max(1),
                ..HostLimits::default()
            },
            insecure_hosts: self.insecure_hosts.clone(),
            tls: TlsConfig {
                certs_dir: Some(self.certs_dir.clone()),
                ca_files: self.ca_files.clone(),
            },
            timeout: Duration::from_secs(self.timeout.max(1)),
            ..ClientConfig::default()
        };
        let cache = match (self.no_cache, self.cache_path()) {
            (false, Some(path)) => Cache::open(&path),
            _ => Cache::in_memory(),
        };
        let scan = ScanConfig {
            platforms: self.platforms.clone(),
            use_labels: self.use_labels.iter().map(|g| Glob::new(g)).collect(),
            // A one-off command re-checks movable tags every run.
            recheck_min: Duration::ZERO,
            ..ScanConfig::default()
        };
        Ok(Scanner::new(
            Arc::new(Client::new(client, credentials)),
            Arc::new(cache),
            scan,
        ))
    }

    /// Polls each repository once (several at a time) and returns what is
    /// known of each; a repository that can't be read carries its error.
    pub fn scan(
        &self,
        names: impl IntoIterator<Item = Name>,
    ) -> anyhow::Result<HashMap<Name, RepositoryInfo>> {
        let names: Vec<Name> = names
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let scanner = self.scanner()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(runtime
            .block_on(scanner.poll(&names))
            .into_iter()
            .map(|r| (r.info.name.clone(), r.info))
            .collect())
    }

    /// The wanted platforms as a user reads them: `linux/amd64 or linux/arm64`.
    pub fn platforms_text(&self) -> String {
        let names: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        names.join(" or ")
    }

    fn docker_config_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.docker_config {
            return Some(path.clone());
        }
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    fn cache_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.cache {
            return Some(path.clone());
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("flux/registry.redb"))
    }
}
