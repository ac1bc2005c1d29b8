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
