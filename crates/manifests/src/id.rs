//! Resource ids in the original's spelling: `<namespace>:<kind>/<name>`.

use std::fmt;
use std::str::FromStr;

/// The namespace part of a cluster-scoped resource's id.
pub const CLUSTER: &str = "<cluster>";

/// Kinds that live outside any namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "apiservice",
    "certificatesigningrequest",
    "clusterissuer",
    "clusterrole",
    "clusterrolebinding",
    "componentstatus",
    "csidriver",
    "csinode",
    "customresourcedefinition",
    "flowschema",
    "ingressclass",
    "kustomization",
    "mutatingwebhookconfiguration",
    "namespace",
    "node",
    "persistentvolume",
    "podsecuritypolicy",
    "priorityclass",
    "prioritylevelconfiguration",
    "runtimeclass",
    "storageclass",
    "validatingadmissionpolicy",
    "validatingadmissionpolicybinding",
    "validatingwebhookconfiguration",
    "volumeattachment",
];

/// Whether a kind (any case) is cluster-scoped.
pub fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind.to_ascii_lowercase().as_str())
}

/// A resource's id: namespace (or [`CLUSTER`]), lower-case kind, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub struct ResourceId {
    namespace: String,
    kind: String,
    name: String,
}

impl ResourceId {
    /// An id from its parts; the kind is lower-cased.
    pub fn new(namespace: &str, kind: &str, name: &str) -> ResourceId {
        ResourceId {
            namespace: namespace.to_string(),
            kind: kind.to_ascii_lowercase(),
            name: name.to_string(),
        }
    }

    /// The namespace, or [`CLUSTER`] for a cluster-scoped resource.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The lower-case kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the resource is cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        self.namespace == CLUSTER
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.namespace, self.kind, self.name)
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.to_string()
    }
}

/// An id that does not read as `<namespace>:<kind>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resource id {id:?}: expected <namespace>:<kind>/<name>")]
pub struct IdError {
    /// The text given.
    pub id: String,
}

impl FromStr for ResourceId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<ResourceId, IdError> {
        let invalid = || IdError { id: s.to_string() };
        let (namespace, rest) = s.split_once(':').ok_or_else(invalid)?;
        let (kind, name) = rest.split_once('/').ok_or_else(invalid)?;
        if namespace.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(invalid());
        }
        Ok(ResourceId::new(namespace, kind, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_print_in_the_original_spelling() {
        let id: ResourceId = "sock-shop:Deployment/front-end".parse().unwrap();
        assert_eq!(id.to_string(), "sock-shop:deployment/front-end");
        let id: ResourceId = "<cluster>:kustomization/overlays/prod".parse().unwrap();
        assert_eq!(id.name(), "overlays/prod");
        assert!(id.is_cluster_scoped());
    }

    #[test]
    fn ids_without_kind_or_namespace_are_refused() {
        for bad in [
            "front-end",
            "sock-shop/front-end",
            ":deployment/x",
            "ns:/x",
            "ns:deployment/",
        ] {
            assert!(bad.parse::<ResourceId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_scoped_kinds_are_known_in_any_case() {
        assert!(is_cluster_scoped("ClusterRoleBinding"));
        assert!(is_cluster_scoped("Namespace"));
        assert!(!is_cluster_scoped("Deployment"));
    }
}
