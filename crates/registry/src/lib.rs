//! `flux-registry`: what the registries behind the images in use hold.
//!
//! It owns the OCI distribution client ([`Client`]: `/v2/` ping, bearer and
//! basic auth, docker and Kubernetes credentials, tags with pagination,
//! manifests and config blobs), the certificates each host is spoken to
//! with ([`tls`]), platform selection and creation times
//! ([`manifest`]), per-host rate limits ([`limit`]), the embedded cache
//! ([`Cache`]), the polling [`Scanner`] with its new-tag events, whether a
//! host answers and when to poll it next ([`HostHealth`]), and the
//! planning of `release --update-all-images` ([`plan_update_all`]), and
//! cosign signature verification ([`cosign`]). It does
//! not read or edit manifests, nor talk to clusters.
//!
//! ```no_run
//! use std::sync::Arc;
//! use flux_registry::{Cache, Client, ClientConfig, Credentials, ScanConfig, Scanner};
//!
//! # async fn example() -> Result<(), flux_image::RefError> {
//! let client = Arc::new(Client::new(ClientConfig::default(), Credentials::none()));
//! let cache = Arc::new(Cache::open(std::path::Path::new("/var/lib/flux/registry.redb")));
//! let scanner = Scanner::new(client, cache, ScanConfig::default());
//! let name = "weaveworksdemos/front-end".parse()?;
//! let result = scanner.poll_repository(&name).await;
//! for tag in &result.info.tags {
//!     println!("{} {:?}", tag.tag, tag.created);
//! }
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod cache;
pub mod client;
pub mod cosign;
pub mod health;
pub mod limit;
pub mod manifest;
pub mod metrics;
pub mod plan;
pub mod restraint;
pub mod scan;
pub mod tls;

pub use auth::{Credential, CredentialError, Credentials};
pub use cache::Cache;
pub use client::{Client, ClientConfig, DocumentKind, RegistryError};
pub use cosign::{KeyError, Signatures, Verdict, VerifyKey};
pub use health::{HealthChange, HostHealth};
pub use limit::HostLimits;
pub use manifest::Platform;
pub use metrics::{CacheCounters, RequestCounters};
pub use plan::{
    ContainerImage, PlannedUpdate, newest_admitted, newest_admitted_where, plan_update_all,
};
pub use restraint::{Explanation, PassedOver, Restraint, explain, is_older, newest_allowed};
pub use scan::{NewTag, PollResult, RepositoryInfo, ScanConfig, Scanner, TagInfo};
pub use tls::{DOCKER_CERTS_DIR, HostCaFile, TlsConfig, TlsError};
