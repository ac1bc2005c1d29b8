//! Which resource types the cluster serves (from discovery): how a manifest's
//! apiVersion and kind map to a resource path, and whether it is namespaced.
//!
//! Group versions are asked for in parallel, and one that fails (an aggregated API
//! that is down is common) only takes its own kinds away; the failure is kept so that
//! garbage collection, which must see every kind, can decline to run.

use std::collections::HashMap;

use futures::future::join_all;
use kube::Client;
use kube::discovery::ApiResource;

use crate::describe;

/// A served resource type.
#[derive(Debug, Clone)]
pub(crate) struct ServedType {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// The discovered types of a cluster.
pub(crate) struct Catalog {
    /// (apiVersion, kind) → type, for every served version.
    by_kind: HashMap<(String, String), ServedType>,
    /// Preferred-version types that can be listed, patched and deleted.
    collectable: Vec<ServedType>,
    /// Group versions whose discovery failed, with the reason.
    failed: Vec<String>,
}

struct GroupVersion {
    group: String,
    version: String,
    preferred: bool,
}

impl GroupVersion {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl Catalog {
    /// Runs discovery: the group lists, then every group version at once.
    pub async fn discover(client: &Client) -> Result<Catalog, kube::Error> {
        let (core, groups) =
            futures::try_join!(client.list_core_api_versions(), client.list_api_groups())?;
        let mut versions: Vec<GroupVersion> = core
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| GroupVersion {
                group: String::new(),
                version: v.clone(),
                preferred: i == 0,
            })
            .collect();
        for group in &groups.groups {
            let preferred = group
                .preferred_version
                .as_ref()
                .map(|p| p.group_version.as_str());
            for (i, v) in group.versions.iter().enumerate() {
                versions.push(GroupVersion {
                    group: group.name.clone(),
                    version: v.version.clone(),
                    preferred: preferred.map_or(i == 0, |p| p == v.group_version),
                });
            }
        }
        let lists = join_all(versions.iter().map(|gv| async move {
            let api_version = gv.api_version();
            if gv.group.is_empty() {
                client.list_core_api_resources(&api_version).await
            } else {
                client.list_api_group_resources(&api_version).await
            }
        }))
        .await;
        let mut catalog = Catalog {
            by_kind: HashMap::new(),
            collectable: Vec::new(),
            failed: Vec::new(),
        };
        for (gv, listed) in versions.iter().zip(lists) {
            match listed {
                Ok(list) => catalog.add(gv, &list.resources),
                Err(error) => {
                    catalog
                        .failed
                        .push(format!("{}: {}", gv.api_version(), describe(&error)))
                }
            }
        }
        if !catalog.failed.is_empty() {
            tracing::warn!(failed = ?catalog.failed, "discovery incomplete");
        }
        Ok(catalog)
    }

    fn add(
        &mut self,
        gv: &GroupVersion,
        resources: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource],
    ) {
        for found in resources.iter().filter(|r| !r.name.contains('/')) {
            let served = ServedType {
                resource: ApiResource {
                    group: gv.group.clone(),
                    version: gv.version.clone(),
                    api_version: gv.api_version(),
                    kind: found.kind.clone(),
                    plural: found.name.clone(),
                },
                namespaced: found.namespaced,
            };
            let verbs = |verb: &str| found.verbs.iter().any(|v| v == verb);
            if gv.preferred
                && verbs("list")
                && verbs("patch")
                && verbs("delete")
                && found.kind != "Event"
            {
                self.collectable.push(served.clone());
            }
            self.by_kind
                .entry((gv.api_version(), found.kind.clone()))
                .or_insert(served);
        }
    }

    /// The type serving `apiVersion` + `kind`, if any.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<ServedType> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
            .cloned()
    }

    /// Types whose objects a sync may have applied and may delete: listable,
    /// patchable and deletable, one (preferred) version per group.
    pub fn collectable(&self) -> Vec<ServedType> {
        self.collectable.clone()
    }

    /// Group versions discovery could not read.
    pub fn failed(&self) -> &[String] {
        &self.failed
    }
}
