//! What the dashboard is served and asks of the API, over a real socket:
//! the page and its assets (built in, loading nothing from elsewhere), the
//! paged listing, and the stream of changes, which ends when fluxd stops.

use std::sync::Arc;
use std::time::Duration;

use flux_api::{Container, JobSpec, PolicyChange, PolicySpec, Workload, WorkloadPage};
use fluxd::jobs::{Jobs, Outcome};
use fluxd::metrics::Metrics;
use fluxd::server::{Api, Control, Pending, View, router};
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "t0ken";

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
    view: watch::Sender<View>,
    stop: watch::Sender<bool>,
}

fn workload(id: &str, image: &str) -> Workload {
    Workload {
        id: id.into(),
        containers: vec![Container {
            name: "app".into(),
            image: image.into(),
            live_image: None,
        }],
        policies: Default::default(),
        rollout: None,
        sync_error: None,
        read_error: None,
        holds: Vec::new(),
    }
}

fn view_of(workloads: Vec<Workload>) -> View {
    View {
        workloads: workloads.into(),
        images: Default::default(),
        read: Ok(flux_api::ReadState {
            revision: "c0ffee1".into(),
            errors: Vec::new(),
            unverified: None,
            synced: None,
            commit_url: None,
        }),
    }
}

async fn start(workloads: Vec<Workload>) -> Daemon {
    let (stop, shutdown) = watch::channel(false);
    let jobs = Jobs::start(|_| async { Ok(Outcome::default()) }, shutdown);
    let (view_tx, view) = watch::channel(view_of(workloads));
    let (changes, _) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        cluster: false,
        token: TOKEN.into(),
        webhook_secret: "h00k".into(),
        jobs: jobs.clone(),
        metrics: Arc::new(Metrics::new()),
        view,
        changes,
        control: Arc::new(Unwired),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Daemon {
        url,
        jobs,
        view: view_tx,
        stop,
    }
}

/// Reads the stream until it has sent a whole `event`; answers what was
/// read.
async fn read_until(stream: &mut reqwest::Response, event: &str) -> String {
    let wanted = format!("event: {event}\n");
    let whole = |text: &str| {
        text.find(&wanted)
            .is_some_and(|at| text[at..].contains("\n\n"))
    };
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !whole(&text) {
            let chunk = stream.chunk().await.unwrap().expect("the stream goes on");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream did not send {event:?}: {text}"));
    text
}

#[tokio::test]
async fn the_stream_names_the_workloads_that_changed_tells_of_jobs_and_ends_when_fluxd_stops() {
    let daemon = start(vec![
        workload("sock-shop:deployment/front-end", "front-end:0.3.12"),
        workload("sock-shop:deployment/carts", "carts:0.4.8"),
    ])
    .await;
    let mut stream = reqwest::get(format!("{}/api/v1/stream", daemon.url))
        .await
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    read_until(&mut stream, "hello").await;

    daemon.view.send_modify(|view| {
        view.workloads = vec![
            workload("sock-shop:deployment/front-end", "front-end:0.3.13"),
            workload("sock-shop:deployment/carts", "carts:0.4.8"),
        ]
        .into();
    });
    let said = read_until(&mut stream, "workloads").await;
    assert!(
        said.contains(r#""changed":["sock-shop:deployment/front-end"]"#),
        "only front-end changed: {said}"
    );
    assert!(said.contains(r#""revision":"c0ffee1""#), "{said}");

    // A view sent again unchanged is no event: the next one is the job's.
    daemon.view.send_modify(|_| {});
    daemon.jobs.submit(
        JobSpec::Policy(PolicySpec {
            changes: vec![PolicyChange {
                workload: "sock-shop:deployment/carts".into(),
                automated: Some(true),
                ..Default::default()
            }],
            message: None,
            user: None,
        }),
        None,
    );
    let said = read_until(&mut stream, "jobs").await;
    assert!(!said.contains("event: workloads"), "{said}");

    daemon.stop.send_replace(true);
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends once fluxd stops");
}

#[tokio::test]
async fn the_paged_listing_filters_and_pages_while_the_unpaged_one_answers_as_before() {
    let workloads: Vec<Workload> = (0..250)
        .map(|n| workload(&format!("ns{}:deployment/app{n:03}", n % 2), "org/app:1"))
        .collect();
    let daemon = start(workloads.clone()).await;
    let page: WorkloadPage = reqwest::get(format!(
        "{}/api/v1/workloads/page?namespace=ns1&q=APP1&offset=10&limit=5",
        daemon.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // ns1 holds the odd ones; app100 to app199 are 50 of them.
    assert_eq!(page.total, 50);
    assert_eq!(page.offset, 10);
    let ids: Vec<&str> = page.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ns1:deployment/app121",
            "ns1:deployment/app123",
            "ns1:deployment/app125",
            "ns1:deployment/app127",
            "ns1:deployment/app129"
        ]
    );
    assert_eq!(page.namespaces, ["ns0", "ns1"]);

    let first: WorkloadPage = reqwest::get(format!("{}/api/v1/workloads/page", daemon.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((first.total, first.workloads.len()), (250, 100));

    let all: Vec<Workload> = reqwest::get(format!("{}/api/v1/workloads", daemon.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all, workloads);
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary_and_load_nothing_from_elsewhere() {
    let daemon = start(Vec::new()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut texts = Vec::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/assets/app.js", "text/javascript"),
        ("/ui/assets/style.css", "text/css"),
    ] {
        let answer = http
            .get(format!("{}{path}", daemon.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        let content_type = answer.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let policy = answer.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        texts.push(answer.text().await.unwrap());
    }
    for text in &texts {
        // Relative URLs only: a path prefix or a port-forward keeps working.
        for absolute in [
            "http://",
            "https://",
            "src=\"/",
            "href=\"/",
            "fetch(\"/",
            "\"/api/",
        ] {
            assert!(!text.contains(absolute), "an asset names {absolute}");
        }
    }
    assert!(texts[0].contains(r#"src="ui/assets/app.js""#));
    for (path, location) in [("/ui", "./"), ("/ui/", "../")] {
        let answer = http
            .get(format!("{}{path}", daemon.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 302, "{path}");
        assert_eq!(answer.headers()["location"], location, "{path}");
    }
}
