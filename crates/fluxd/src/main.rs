//! `fluxd`: parses its flags, starts the daemon and its HTTP server, and
//! stops cleanly on SIGTERM or Ctrl-C (the running job is finished first).

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use fluxd::config::{ClusterMode, Config, LogFormat};
use fluxd::daemon::{Daemon, Running, SHUTDOWN_GRACE, Secrets};
use tokio::sync::watch;

/// jemalloc gives freed pages back to the system a few seconds after they
/// are freed; glibc's malloc keeps them in per-thread arenas, so a reload
/// of a large checkout on the loader's threads stays resident.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

fn init_logging(format: LogFormat) {
    let spec = std::env::var("FLUXD_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(fluxd::config::log_filter(&spec))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let secrets = secrets(&config).await?;
    let listen = config.listen;
    let listen_metrics = config.listen_metrics;
    let running = Daemon::start(config, secrets).await?;
    let (stop, stopping) = watch::channel(false);
    let api = serve(listen, running.router(), stopping.clone()).await?;
    let metrics = match listen_metrics {
        Some(addr) => {
            let router = fluxd::server::metrics_router(running.api().clone());
            Some(serve(addr, router, stopping).await?)
        }
        None => None,
    };
    shutdown_signal().await;
    tracing::info!("stopping: finishing the running job");
    let _ = stop.send(true);
    stop_daemon(running).await;
    let _ = api.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("stopped");
    Ok(())
}

async fn stop_daemon(running: Running) {
    if tokio::time::timeout(SHUTDOWN_GRACE, running.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "the running job did not finish within {SHUTDOWN_GRACE:?}; abandoning it (nothing half-pushed: a push is all or nothing)"
        );
    }
}

/// The API token and the webhook secret: each from its file flag when given,
/// else from the `--k8s-api-secret-name` Secret when there is one, else from
/// its file in the data folder.
async fn secrets(config: &Config) -> anyhow::Result<Secrets> {
    let in_cluster = match &config.k8s_api_secret_name {
        Some(_) if config.cluster == ClusterMode::None => {
            anyhow::bail!("--k8s-api-secret-name needs a cluster; drop it or --cluster=none")
        }
        Some(name) => {
            let client = flux_cluster::Connection::default().client().await?;
            let namespace = config.k8s_secret_namespace.as_deref();
            Some(fluxd::secret::ClusterSecret::new(client, namespace, name))
        }
        None => None,
    };
    let api_token = match (&config.api_token_file, &in_cluster) {
        (None, Some(kept)) => secret_in(kept, "api-token", "API token").await?,
        _ => secret(&config.token_path(), "API token")?,
    };
    let webhook_secret = match (&config.webhook_secret_file, &in_cluster) {
        (None, Some(kept)) => secret_in(kept, "webhook-secret", "webhook secret").await?,
        _ => secret(&config.webhook_secret_path(), "webhook secret")?,
    };
    Ok(Secrets {
        api_token,
        webhook_secret,
    })
}

async fn secret_in(
    kept: &fluxd::secret::ClusterSecret,
    key: &str,
    what: &str,
) -> anyhow::Result<String> {
    let (value, made) = kept
        .load_or_create(key)
        .await
        .with_context(|| format!("{what} in the Secret's data key {key}"))?;
    if made {
        tracing::info!(secret = %kept, key, "made a new {what}");
    }
    Ok(value)
}

fn secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let (value, made) = fluxd::secret::load_or_create(path)
        .with_context(|| format!("{what} in {}", path.display()))?;
    if made {
        tracing::info!(path = %path.display(), "made a new {what}");
    }
    Ok(value)
}

async fn serve(
    addr: SocketAddr,
    router: axum::Router,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(%addr, "listening");
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%addr, %error, "HTTP server failed");
        }
    }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
