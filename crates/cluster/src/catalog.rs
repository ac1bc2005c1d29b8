//! Which resource types the cluster serves (from discovery): how a manifest's
//! apiVersion and kind map to a resource path, and whether it is namespaced.

use std::collections::HashMap;

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};

/// A served resource type.
#[derive(Debug, Clone)]
pub(crate) struct ServedType {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// The discovered types of a cluster.
pub(crate) struct Catalog {
    discovery: Discovery,
    /// (apiVersion, kind) → type, for every served version.
    by_kind: HashMap<(String, String), ServedType>,
}

impl Catalog {
    /// Runs discovery.
    pub async fn discover(client: &Client) -> Result<Catalog, kube::Error> {
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut by_kind = HashMap::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, capabilities) in group.versioned_resources(version) {
                    let namespaced = capabilities.scope == Scope::Namespaced;
                    let key = (resource.api_version.clone(), resource.kind.clone());
                    by_kind.entry(key).or_insert(ServedType {
                        resource,
                        namespaced,
                    });
                }
            }
        }
        Ok(Catalog { discovery, by_kind })
    }

    /// The type serving `apiVersion` + `kind`, if any.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<ServedType> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
    }

    /// Types whose objects a sync may have applied and may delete: listable,
    /// patchable and deletable, one (preferred) version per kind.
    pub fn collectable(&self) -> Vec<ServedType> {
        let mut types = Vec::new();
        for group in self.discovery.groups() {
            for (resource, capabilities) in group.recommended_resources() {
                let usable = [verbs::LIST, verbs::PATCH, verbs::DELETE]
                    .iter()
                    .all(|verb| capabilities.supports_operation(verb));
                if usable && resource.kind != "Event" {
                    let namespaced = capabilities.scope == Scope::Namespaced;
                    types.push(ServedType {
                        resource,
                        namespaced,
                    });
                }
            }
        }
        types
    }
}
