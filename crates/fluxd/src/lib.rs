//! `fluxd`: the Flux daemon.
//!
//! It owns the daemon's configuration, its loops (git fetch and sync,
//! registry scan and automation, the job queue), its HTTP API and webhook
//! receivers, and its metrics; [`daemon::Daemon`] wires them together (the
//! `fluxd` binary only parses flags, serves HTTP and waits for SIGTERM). What
//! it acts on lives in the libraries below it: manifests, registry, git,
//! cluster. It serves a dashboard ([`ui`]) at `/`. With a cluster it keeps its deploy key in a Secret
//! ([`identity`]) and answers the kubelet's probes (`/healthz`, `/readyz`).
//! What it did reaches people through [`notify`]: Kubernetes Events and
//! Slack, Teams, Discord and generic webhook notifications, off the path of
//! every job and sync.
//!
//! ```
//! use fluxd::webhooks::{receive, sign, Delivery, Sender};
//! let body = br#"{"image": "weaveworksdemos/front-end:0.3.13"}"#;
//! let signature = format!("sha256={}", sign("s3cret", body));
//! let delivery = Delivery { headers: vec![("X-Signature", &signature)], url_secret: None };
//! let changes = receive(Sender::Generic, "s3cret", &delivery, body)?;
//! assert_eq!(changes.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod daemon;
pub mod forward;
pub mod identity;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod secret;
pub mod selection;
pub mod server;
pub mod ui;
pub mod view;
pub mod webhooks;
