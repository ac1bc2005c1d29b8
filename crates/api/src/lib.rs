//! `flux-api`: the HTTP API between `fluxd` and `fluxctl`.
//!
//! It owns the wire types (workloads, images, jobs, sync, identity), the
//! versioned paths they travel on, and [`Client`], which `fluxctl` uses. It
//! does not serve anything (the daemon owns its handlers) and holds no
//! domain logic: images travel as strings, in the canonical or familiar form
//! the daemon chose.
//!
//! ```no_run
//! # async fn run() -> Result<(), flux_api::ClientError> {
//! let client = flux_api::Client::new("http://127.0.0.1:3030", Some("secret".into()))?;
//! for workload in client.workloads(Some("sock-shop")).await? {
//!     println!("{} has {} container(s)", workload.id, workload.containers.len());
//! }
//! # Ok(()) }
//! ```

mod client;
pub mod paths;
mod types;

pub use client::{Client, ClientError};
pub use types::*;
