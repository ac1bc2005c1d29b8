//! The JSON shapes fluxd and fluxctl agree on.

use flux_api::{ImageUpdate, JobSpec, ReleaseSpec, Targets};
use serde_json::json;

#[test]
fn a_release_travels_as_tagged_json() {
    let spec = JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec!["sock-shop:deployment/front-end".into()]),
        exclude: vec![],
        update: ImageUpdate::AllLatest,
        force: false,
        dry_run: true,
        message: None,
        user: Some("jane".into()),
        containers: Default::default(),
    });
    let wire = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        wire,
        json!({
            "kind": "release",
            "targets": {"workloads": ["sock-shop:deployment/front-end"]},
            "update": "all_latest",
            "force": false,
            "dry_run": true,
            "user": "jane",
        })
    );
    assert_eq!(serde_json::from_value::<JobSpec>(wire).unwrap(), spec);
}

#[test]
fn an_image_release_names_the_image() {
    let wire = json!({"kind": "release", "targets": "all", "update": {"image": "nginx:1.25"}});
    let JobSpec::Release(spec) = serde_json::from_value(wire).unwrap() else {
        panic!("a release");
    };
    assert_eq!(spec.targets, Targets::All);
    assert_eq!(spec.update, ImageUpdate::Image("nginx:1.25".into()));
    assert!(!spec.force && !spec.dry_run);
}

#[test]
fn job_paths_fill_in_their_parameters() {
    assert_eq!(flux_api::paths::job("42"), "/api/v1/jobs/42");
    assert_eq!(
        flux_api::paths::sync_status("abc123"),
        "/api/v1/sync/abc123"
    );
}

#[test]
fn a_bad_daemon_url_is_refused_up_front() {
    let error = flux_api::Client::new("not a url", None).unwrap_err();
    assert!(error.to_string().contains("not a url"), "{error}");
}

#[test]
fn a_release_of_chosen_containers_lists_them_by_workload() {
    let wire = json!({
        "kind": "release",
        "targets": {"workloads": ["sock-shop:deployment/front-end"]},
        "update": "all_latest",
        "containers": {"sock-shop:deployment/front-end": ["front-end"]},
    });
    let JobSpec::Release(spec) = serde_json::from_value::<JobSpec>(wire.clone()).unwrap() else {
        panic!("a release");
    };
    let chosen = &spec.containers["sock-shop:deployment/front-end"];
    assert!(chosen.contains("front-end"));
    assert_eq!(chosen.len(), 1);
    assert_eq!(
        serde_json::to_value(JobSpec::Release(spec)).unwrap()["containers"],
        wire["containers"]
    );
}

#[test]
fn a_job_from_a_daemon_that_does_not_say_whether_it_has_a_cluster_reads_as_unknown() {
    let wire = json!({
        "id": "1-1",
        "spec": {"kind": "release", "targets": "all", "update": "all_latest"},
        "status": "succeeded",
    });
    let job: flux_api::Job = serde_json::from_value(wire).unwrap();
    assert_eq!(job.cluster, None);
    let mut without = job.clone();
    without.cluster = Some(false);
    let text = serde_json::to_value(&without).unwrap();
    assert_eq!(text["cluster"], json!(false));
    let plain = serde_json::to_value(&job).unwrap();
    assert!(plain.get("cluster").is_none(), "omitted when unknown");
}
