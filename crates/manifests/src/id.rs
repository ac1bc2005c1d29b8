//! Resource ids in the original's spelling: `<namespace>:<kind>/<name>`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

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
///
/// The three parts are kept in one shared string, spelled as the id is
/// printed: a checkout holds each id several times over (its resource,
/// its workload, its index, the API's view), and a copy is a reference
/// count, not three allocations.
#[derive(Clone, serde::Serialize)]
#[serde(into = "String")]
pub struct ResourceId {
    /// `<namespace>:<kind>/<name>`.
    text: Arc<str>,
    /// Where the kind starts (after the colon).
    kind: u32,
    /// Where the name starts (after the slash).
    name: u32,
}

impl ResourceId {
    /// An id from its parts; the kind is lower-cased.
    pub fn new(namespace: &str, kind: &str, name: &str) -> ResourceId {
        let mut text = String::with_capacity(namespace.len() + kind.len() + name.len() + 2);
        text.push_str(namespace);
        text.push(':');
        let kind_at = text.len();
        text.extend(kind.chars().map(|c| c.to_ascii_lowercase()));
        text.push('/');
        let name_at = text.len();
        text.push_str(name);
        ResourceId {
            text: Arc::from(text),
            kind: offset(kind_at),
            name: offset(name_at),
        }
    }

    /// The namespace, or [`CLUSTER`] for a cluster-scoped resource.
    pub fn namespace(&self) -> &str {
        &self.text[..self.kind as usize - 1]
    }

    /// The lower-case kind.
    pub fn kind(&self) -> &str {
        &self.text[self.kind as usize..self.name as usize - 1]
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.text[self.name as usize..]
    }

    /// The id as printed, `<namespace>:<kind>/<name>`, without a copy.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the resource is cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        self.namespace() == CLUSTER
    }

    fn parts(&self) -> (&str, &str, &str) {
        (self.namespace(), self.kind(), self.name())
    }
}

/// An offset into an id's text: ids are names of Kubernetes objects, far
/// below 4 GiB.
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a resource id is shorter than 4 GiB")
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &ResourceId) -> bool {
        self.kind == other.kind && self.name == other.name && self.text == other.text
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
        self.kind.hash(state);
    }
}

/// Ordered by namespace, then kind, then name.
impl Ord for ResourceId {
    fn cmp(&self, other: &ResourceId) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &ResourceId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceId")
            .field("namespace", &self.namespace())
            .field("kind", &self.kind())
            .field("name", &self.name())
            .finish()
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.text.to_string()
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

    #[test]
    fn ids_order_by_namespace_then_kind_then_name() {
        let ids = |spellings: &[&str]| -> Vec<ResourceId> {
            spellings.iter().map(|s| s.parse().unwrap()).collect()
        };
        let mut sorted = ids(&["a-x:deployment/b", "a:service/a", "a:deployment/z"]);
        sorted.sort();
        assert_eq!(
            sorted,
            ids(&["a:deployment/z", "a:service/a", "a-x:deployment/b"])
        );
    }

    #[test]
    fn parts_come_back_as_given() {
        let id = ResourceId::new("ns", "HelmRelease", "a:b/c");
        assert_eq!(
            (id.namespace(), id.kind(), id.name()),
            ("ns", "helmrelease", "a:b/c")
        );
        assert_eq!(id, id.clone());
        assert_ne!(id, ResourceId::new("ns", "helmrelease", "a:b/d"));
    }
}
