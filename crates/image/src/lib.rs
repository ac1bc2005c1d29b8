//! `flux-image`: the names of container images and the rules for choosing
//! among their tags.
//!
//! It owns image references ([`ImageRef`], [`Name`]): parsing by the
//! distribution reference grammar, Docker's normalisation (`nginx` is
//! `docker.io/library/nginx`), canonical and familiar renderings, and the
//! registry host to call. It owns tag policies ([`Policy`]: glob, semver with
//! Masterminds' range syntax, regex) and the newest-first ordering of
//! candidate tags. It does no I/O: registries, manifests and clusters live in
//! the crates above it.
//!
//! ```
//! use flux_image::{ImageRef, Policy};
//!
//! let image = ImageRef::parse("weaveworksdemos/front-end:0.3.12")?;
//! assert_eq!(image.canonical(), "docker.io/weaveworksdemos/front-end:0.3.12");
//!
//! let policy: Policy = "semver:~0.3".parse()?;
//! assert!(policy.admits(image.tag().expect("the reference has a tag")));
//! assert!(!policy.admits("latest"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod policy;
pub mod reference;
pub mod semver;

pub use policy::{Candidate, Glob, Policy, PolicyError, Rejection, Verdict};
pub use reference::{ImageRef, Name, Problem, RefError};
