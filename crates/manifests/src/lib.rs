//! `flux-manifests`: what a checkout of Kubernetes manifests says, and
//! byte-exact edits of it.
//!
//! It owns reading a checkout ([`Checkout::load`]): the YAML files under
//! some paths (skipping hidden folders and Helm charts), their resources
//! with ids in the original's `<namespace>:<kind>/<name>` spelling, the
//! workloads among them (Deployment, DaemonSet, StatefulSet, ReplicaSet,
//! CronJob, Job, Pod, HelmRelease), each container's image, and the
//! policies in their annotations; kustomize trees, built by the real
//! kustomize (a subprocess), whose output is what the checkout holds for
//! them, and whose edits go to the layer that defines the value. It owns editing
//! the bytes of a file: a container's image ([`Checkout::set_image`]) and
//! policy annotations ([`Checkout::update_policies`]), changing only the
//! bytes of the edited value, verifying the result by reading it again, and
//! writing atomically ([`Transaction::write`]); and the planning of
//! releases ([`release`]): one image for every container running its
//! repository, or a target per container decided elsewhere (the newest tag
//! a registry scan admits). It does not talk to registries, git or clusters.
//!
//! ```
//! use flux_manifests::{Checkout, LoadOptions, ResourceId};
//! use flux_image::ImageRef;
//!
//! let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web # the site\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: 'docker.io/library/nginx:1.25' # pinned\n";
//! let path = std::path::Path::new("web.yaml");
//! let checkout = Checkout::from_text(path, text, LoadOptions::default());
//! let id: ResourceId = "default:deployment/web".parse()?;
//! assert_eq!(checkout.workload(&id).expect("the workload is loaded").containers[0].image.familiar(), "nginx:1.25");
//!
//! let edited = checkout
//!     .set_image(text, &id, "web", &ImageRef::parse("nginx:1.27")?)?;
//! assert_eq!(edited, text.replace("nginx:1.25'", "nginx:1.27'"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkout;
mod confine;
mod edit;
mod error;
pub mod generate;
mod id;
mod kustomize;
mod load;
pub mod policy;
pub mod release;
mod scalar;
mod spelling;
mod subset;
mod transaction;
mod workload;
mod write;
mod yaml;

pub use checkout::{Checkout, ImageEdits, ManifestFile, Refused};
pub use edit::EditError;
pub use error::LoadError;
pub use id::{CLUSTER, IdError, ResourceId, is_cluster_scoped};
pub use kustomize::{BuildCache, BuildOptions};
pub use load::{DEFAULT_MAX_FILE_BYTES, LoadOptions, parse_file_size};
pub use policy::{Ignore, Policies, PolicyKey, PolicyUpdate, Reverted};
pub use spelling::{respell, split as split_spelling};
pub use transaction::Transaction;
pub use workload::{
    Container, ImageSource, Location, NodePath, Resource, SplitFields, Step, Workload, WorkloadKind,
};
pub use write::atomically as write_atomically;
#[doc(hidden)]
pub use yaml::fast_reader_agrees;
pub use yaml::{SyntaxError, YamlLimits};
