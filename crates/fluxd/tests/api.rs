//! The HTTP API over a real socket, through the client fluxctl uses: the
//! token guards every state-changing call, jobs are queued and readable,
//! webhooks become changes, and the OpenAPI document lists exactly the
//! operations served.

use std::sync::Arc;
use std::time::Duration;

use flux_api::{Change, Client, ClientError, JobSpec, JobStatus, PolicyChange, PolicySpec};
use fluxd::jobs::{Jobs, Outcome};
use fluxd::metrics::Metrics;
use fluxd::server::{Api, Control, Pending, View, router};
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "t0ken";
const HOOK_SECRET: &str = "h00k";

/// The daemon side the API asks directly; these tests don't reach it.
struct Unwired;

impl Control for Unwired {
    fn sync(&self) -> Pending<'_, flux_api::SyncRequested> {
        Box::pin(async { Err("no git in this test".to_string()) })
    }
    fn sync_status(&self, _: String) -> Pending<'_, flux_api::SyncStatus> {
        Box::pin(async { Err("no git in this test".to_string()) })
    }
    fn plan(&self, _: JobSpec) -> Pending<'_, Vec<flux_api::WorkloadResult>> {
        Box::pin(async { Err("no manifests in this test".to_string()) })
    }
    fn identity(&self) -> Option<flux_api::Identity> {
        None
    }
}

struct Daemon {
    url: String,
    jobs: Jobs,
    changes: mpsc::UnboundedReceiver<Change>,
    _view: watch::Sender<View>,
    _stop: watch::Sender<bool>,
}

async fn start() -> Daemon {
    start_with(View {
        workloads: vec![flux_api::Workload {
            id: "sock-shop:deployment/front-end".into(),
            containers: vec![flux_api::Container {
                name: "front-end".into(),
                image: "weaveworksdemos/front-end:0.3.12".into(),
                live_image: None,
            }],
            policies: Default::default(),
            rollout: None,
            sync_error: None,
            read_error: None,
            holds: Vec::new(),
        }]
        .into(),
        images: Default::default(),
        read: Ok(flux_api::ReadState {
            unverified: None,
            synced: None,
            commit_url: None,
            revision: "c0ffee1".into(),
            errors: Vec::new(),
        }),
    })
    .await
}

async fn start_with(view: View) -> Daemon {
    let (stop, shutdown) = watch::channel(false);
    let jobs = Jobs::start(
        |_| async {
            Ok(Outcome {
                commit: Some("1234567".into()),
                ..Outcome::default()
            })
        },
        shutdown,
    );
    let (view_tx, view) = watch::channel(view);
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        cluster: false,
        token: TOKEN.into(),
        webhook_secret: HOOK_SECRET.into(),
        jobs: jobs.clone(),
        metrics: Arc::new(Metrics::new()),
        view,
        changes: changes_tx,
        control: Arc::new(Unwired),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Daemon {
        url,
        jobs,
        changes,
        _view: view_tx,
        _stop: stop,
    }
}

fn automate(workload: &str) -> JobSpec {
    JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: workload.into(),
            automated: Some(true),
            ..Default::default()
        }],
        message: None,
        user: None,
    })
}

#[tokio::test]
async fn without_the_token_state_changing_calls_are_refused_and_change_nothing() {
    let daemon = start().await;
    for token in [None, Some("wrong".to_string())] {
        let client = Client::new(&daemon.url, token).unwrap();
        let refused = client
            .submit(&automate("sock-shop:deployment/front-end"))
            .await;
        assert!(
            matches!(refused, Err(ClientError::Unauthorized)),
            "{refused:?}"
        );
        assert!(matches!(
            client.notify(&Change::Git { branch: None }).await,
            Err(ClientError::Unauthorized)
        ));
        assert!(matches!(
            client.sync().await,
            Err(ClientError::Unauthorized)
        ));
    }
    assert_eq!(daemon.jobs.queued(), 0);
    // Reading needs no token.
    let anonymous = Client::new(&daemon.url, None).unwrap();
    assert_eq!(
        anonymous.workloads(Some("sock-shop")).await.unwrap().len(),
        1
    );
    assert_eq!(anonymous.workloads(Some("default")).await.unwrap().len(), 0);
}

#[tokio::test]
async fn before_git_is_read_every_listing_says_why() {
    let why = "fluxd has not read the git repo file:///nowhere.git yet: repository not found";
    let daemon = start_with(View {
        read: Err(why.into()),
        ..View::default()
    })
    .await;
    let client = Client::new(&daemon.url, None).unwrap();
    let refused = [
        client.workloads(None).await.map(|_| ()),
        client.images(&[], None).await.map(|_| ()),
        client.manifests().await.map(|_| ()),
        client.read_state().await.map(|_| ()),
    ];
    for answer in refused {
        match answer {
            Err(ClientError::Status {
                status, message, ..
            }) => {
                assert_eq!((status, message.as_str()), (503, why));
            }
            other => panic!("expected a 503 saying why, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_submitted_job_can_be_followed_to_its_commit() {
    let daemon = start().await;
    let client = Client::new(&daemon.url, Some(TOKEN.into())).unwrap();
    let submitted = client
        .submit(&automate("sock-shop:deployment/front-end"))
        .await
        .unwrap();
    let job = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let job = client.job(&submitted.id).await.unwrap();
            if job.status == JobStatus::Succeeded {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(job.commit.as_deref(), Some("1234567"));
    assert_eq!(
        job.cluster,
        Some(false),
        "the job says no cluster applies it"
    );
    let listed = client.jobs().await.unwrap();
    assert_eq!(listed.iter().map(|j| &j.id).collect::<Vec<_>>(), [&job.id]);
    assert!(matches!(
        client.job("nope").await,
        Err(ClientError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn automation_jobs_are_not_taken_from_clients() {
    let daemon = start().await;
    let client = Client::new(&daemon.url, Some(TOKEN.into())).unwrap();
    let spec = JobSpec::Automation(flux_api::AutomationSpec {
        workloads: vec!["sock-shop:deployment/front-end".into()],
        first_seen: None,
    });
    let refused = client.submit(&spec).await;
    assert!(
        matches!(refused, Err(ClientError::Status { status: 422, .. })),
        "{refused:?}"
    );
    assert_eq!(daemon.jobs.queued(), 0);
    assert!(client.jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn notify_and_webhooks_become_changes() {
    let mut daemon = start().await;
    let client = Client::new(&daemon.url, Some(TOKEN.into())).unwrap();
    client
        .notify(&Change::Image {
            name: "weaveworksdemos/front-end".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        daemon.changes.recv().await,
        Some(Change::Image {
            name: "weaveworksdemos/front-end".into()
        })
    );

    let http = reqwest::Client::new();
    let hub = serde_json::json!({"repository": {"repo_name": "weaveworksdemos/front-end"}});
    let refused = http
        .post(format!("{}/hooks/dockerhub/wrong", daemon.url))
        .json(&hub)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = http
        .post(format!("{}/hooks/dockerhub/{HOOK_SECRET}", daemon.url))
        .json(&hub)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert_eq!(
        daemon.changes.recv().await,
        Some(Change::Image {
            name: "weaveworksdemos/front-end".into()
        })
    );
    let unknown = http
        .post(format!("{}/hooks/bitbucket", daemon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_openapi_document_lists_every_api_operation_and_only_those() {
    let daemon = start().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", daemon.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().unwrap().keys();
            methods.map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    operations.sort_by_key(|operation| {
        let (method, path) = operation.split_once(' ').unwrap();
        (path.to_string(), method.to_string())
    });
    assert_eq!(
        operations,
        [
            "GET /api/v1/explain",
            "GET /api/v1/identity",
            "POST /api/v1/identity",
            "GET /api/v1/images",
            "GET /api/v1/jobs",
            "POST /api/v1/jobs",
            "GET /api/v1/jobs/{id}",
            "GET /api/v1/manifests",
            "POST /api/v1/notify",
            "GET /api/v1/policy/check",
            "POST /api/v1/release/preview",
            "GET /api/v1/stream",
            "GET /api/v1/sync",
            "POST /api/v1/sync",
            "GET /api/v1/sync/{rev}",
            "GET /api/v1/version",
            "GET /api/v1/workloads",
            "GET /api/v1/workloads/page",
        ]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn every_operation_in_the_openapi_document_is_served_with_the_security_it_declares() {
    let daemon = start().await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = reqwest::get(format!("{}/api/openapi.json", daemon.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // Path parameters get a value no job or revision has.
            let url = format!("{}{}", daemon.url, path.replace(['{', '}'], "_"));
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            // Without a token: a guarded operation refuses with 401 before
            // reading the body; any other answers for itself.
            let answer = http.request(method.clone(), &url).send().await.unwrap();
            let status = answer.status().as_u16();
            // An event stream does not end: its headers are the answer.
            let streams = answer
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = match streams {
                true => "(an event stream)".to_string(),
                false => answer.text().await.unwrap(),
            };
            let guarded = operation.get("security").is_some();
            assert_ne!(status, 405, "{method} {path} is not routed for {method}");
            // The router's own 404 for an unknown path has no body; the
            // handlers' 404s say what was not found.
            assert!(
                status != 404 || !body.is_empty(),
                "{method} {path} is not routed"
            );
            assert_eq!(
                status == 401,
                guarded,
                "{method} {path}: {status} {body}, security declared: {guarded}"
            );
            let documented = operation["responses"]
                .as_object()
                .unwrap()
                .contains_key(&status.to_string());
            assert!(
                documented,
                "{method} {path} answered {status}, not among its documented responses"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_served_in_the_text_format() {
    let daemon = start().await;
    let text = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("flux_job_queue_length 0"), "{text}");
}
