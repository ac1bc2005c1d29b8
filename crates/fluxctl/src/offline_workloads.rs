//! A minimal reader of workloads in a folder of manifests, for offline
//! verbs (`list-images --manifests`).
//!
//! To be replaced by `flux-manifests`, which owns reading checkouts (with
//! spans, `List` kinds, Helm releases and byte-exact edits). This reader
//! only finds Deployments, DaemonSets, StatefulSets, CronJobs and Jobs, their
//! containers' images and the `fluxcd.io/tag.<container>` policies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Annotation prefixes of tag policies, current and legacy.
const TAG_PREFIXES: [&str; 2] = ["fluxcd.io/tag.", "flux.weave.works/tag."];

/// A workload found in the manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `namespace:kind/name`, kind in lower case, as Flux spells workload ids.
    pub id: String,
    /// Its namespace (`default` when the manifest names none).
    pub namespace: String,
    /// Its containers (init containers first, then containers).
    pub containers: Vec<Container>,
    /// The file it was read from.
    pub file: PathBuf,
}

/// A container of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The container's name.
    pub name: String,
    /// The image as written.
    pub image: String,
    /// The tag policy annotation, when present.
    pub policy: Option<String>,
}

/// Reads every `.yaml`/`.yml` file under `dir`. Files that cannot be read
/// are reported (path and reason) and skipped; the others are still read.
pub fn load(dir: &Path) -> (Vec<Workload>, Vec<String>) {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut workloads = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match read_file(&file) {
            Ok(found) => workloads.extend(found),
            Err(problem) => problems.push(format!("{}: {problem}", file.display())),
        }
    }
    workloads.sort_by(|a, b| a.id.cmp(&b.id));
    (workloads, problems)
}

fn read_file(file: &Path) -> Result<Vec<Workload>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| e.to_string())?;
    Ok(documents
        .iter()
        .filter_map(|doc| workload(doc, file))
        .collect())
}

fn workload(doc: &Value, file: &Path) -> Option<Workload> {
    let kind = doc.get("kind")?.as_str()?;
    let pod_spec = match kind {
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => doc.pointer("/spec/template/spec")?,
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template/spec")?,
        _ => return None,
    };
    let metadata = doc.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let namespace = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let annotations: BTreeMap<String, String> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let containers = ["initContainers", "containers"]
        .iter()
        .filter_map(|key| pod_spec.get(*key).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| {
            let name = c.get("name")?.as_str()?.to_string();
            let image = c.get("image")?.as_str()?.to_string();
            let policy = TAG_PREFIXES
                .iter()
                .find_map(|prefix| annotations.get(&format!("{prefix}{name}")).cloned());
            Some(Container {
                name,
                image,
                policy,
            })
        })
        .collect();
    Some(Workload {
        id: format!("{namespace}:{}/{name}", kind.to_ascii_lowercase()),
        namespace: namespace.to_string(),
        containers,
        file: file.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_shop_workloads_are_found_with_their_images() {
        let (workloads, problems) = load(&flux_testkit::sock_shop_manifests());
        assert!(problems.is_empty(), "{problems:?}");
        let front_end = workloads
            .iter()
            .find(|w| w.id == "sock-shop:deployment/front-end")
            .expect("front-end deployment");
        assert_eq!(front_end.containers.len(), 1);
        assert_eq!(
            front_end.containers[0].image,
            "weaveworksdemos/front-end:0.3.12"
        );
        assert!(workloads.len() >= 10);
    }

    #[test]
    fn kinds_policies_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\n  annotations:\n    fluxcd.io/tag.job: semver:~1\n\
             spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            image: example/job:1.0.0\n\
             ---\nkind: Service\nmetadata: {name: s}\n---\n\
             kind: DaemonSet\nmetadata:\n  name: agent\n  namespace: ops\n  annotations:\n    flux.weave.works/tag.agent: glob:v*\n\
             spec:\n  template:\n    spec:\n      initContainers:\n      - {name: init, image: busybox}\n      containers:\n      - {name: agent, image: example/agent:v1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.yml"), "kind: [unclosed\n").unwrap();
        let (workloads, problems) = load(dir.path());
        let ids: Vec<&str> = workloads.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["default:cronjob/nightly", "ops:daemonset/agent"]);
        assert_eq!(
            workloads[0].containers[0].policy.as_deref(),
            Some("semver:~1")
        );
        let agent = &workloads[1];
        assert_eq!(agent.containers[0].name, "init");
        assert_eq!(agent.containers[0].policy, None);
        assert_eq!(agent.containers[1].policy.as_deref(), Some("glob:v*"));
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("broken.yml"), "{problems:?}");
    }
}
