//! Which resource types the cluster serves (from discovery): how a manifest's
//! apiVersion and kind map to a resource path, and whether it is namespaced.

use kube::Client;
use kube::core::GroupVersionKind;
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
}

impl Catalog {
    /// Runs discovery.
    pub async fn discover(client: &Client) -> Result<Catalog, kube::Error> {
        let discovery = Discovery::new(client.clone()).run().await?;
        Ok(Catalog { discovery })
    }

    /// The type serving `apiVersion` + `kind`, if any.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<ServedType> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = self.discovery.resolve_gvk(&gvk)?;
        Some(ServedType {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        })
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
