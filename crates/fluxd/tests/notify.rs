//! Notifications reach real HTTP receivers: generic webhooks get the
//! versioned body and its signature, chat endpoints their message shapes,
//! failures are retried, dead endpoints cost only their own retries, and
//! every outcome is counted in `/metrics`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fluxd::metrics::{Format, Metrics};
use fluxd::notify::deliver::{
    DELIVERY_HEADER, Deliverer, EVENT_HEADER, Endpoint, EndpointKind, Outcome, Retry,
    SIGNATURE_HEADER,
};
use fluxd::notify::message::WebRepo;
use fluxd::notify::select::Selection;
use fluxd::notify::{ImageChange, Notice, NoticeKind, Publisher};
use hmac::{Hmac, Mac};
use serde_json::Value;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Log {
    /// Statuses to answer, first first; 200 once they run out.
    script: Vec<u16>,
    received: Vec<Received>,
}

/// A local HTTP receiver that answers from a script and keeps every request.
struct Receiver {
    address: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let log = Arc::new(Mutex::new(Log {
            script: script.to_vec(),
            received: Vec::new(),
        }));
        let router = Router::new().fallback(receive).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let address = listener.local_addr().expect("a bound address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { address, log }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/T000/B000/XXXX", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.log
            .lock()
            .expect("the log is not poisoned")
            .received
            .clone()
    }

    /// Waits until `count` requests arrived; the machine may be loaded.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..600 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{count} requests never arrived: {:?}", self.received());
    }
}

async fn receive(
    State(log): State<Arc<Mutex<Log>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut log = log.lock().expect("the log is not poisoned");
    log.received.push(Received { headers, body });
    let status = if log.script.is_empty() {
        200
    } else {
        log.script.remove(0)
    };
    StatusCode::from_u16(status).expect("a valid status")
}

/// Retries without waiting long: the test is about the count, not the time.
fn quick() -> Retry {
    Retry {
        attempts: 3,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(30),
    }
}

fn endpoint(kind: EndpointKind, url: String, secret: Option<&str>) -> Endpoint {
    Endpoint {
        kind,
        url,
        secret: secret.map(str::to_string),
        selection: Selection::default(),
    }
}

fn release() -> Notice {
    Notice::new(NoticeKind::Release, "Released default:deployment/front-end")
        .change(ImageChange {
            workload: "default:deployment/front-end".into(),
            container: "front-end".into(),
            from: "weaveworksdemos/front-end:0.3.12".into(),
            to: "weaveworksdemos/front-end:0.3.13".into(),
        })
        .commit("1a2b3c4d5e6f70000000000000000000deadbeef")
}

fn github() -> Option<WebRepo> {
    WebRepo::of_git_url("git@github.com:weaveworks/flux-get-started.git")
}

const COMMIT_PAGE: &str = "https://github.com/weaveworks/flux-get-started/commit/1a2b3c4d5e6f70000000000000000000deadbeef";

/// Checks an HMAC-SHA256 hex signature the way a receiver would.
fn verifies(secret: &str, body: &[u8], hex_mac: &str) -> bool {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::decode(hex_mac).is_ok_and(|given| mac.verify_slice(&given).is_ok())
}

fn count(metrics: &Metrics, endpoint: &str, result: &str) -> u64 {
    metrics
        .notifications
        .get_or_create(&fluxd::metrics::NotificationLabels::new(endpoint, result))
        .get()
}

#[tokio::test]
async fn a_webhook_gets_the_versioned_body_signed_with_the_shared_secret() {
    let receiver = Receiver::start(&[]).await;
    let metrics = Metrics::new();
    let deliverer = Deliverer::new(
        endpoint(EndpointKind::Webhook, receiver.url(), Some("s3cret")),
        quick(),
        github(),
        metrics.notifications.clone(),
    );

    let outcome = deliverer.deliver(&release()).await;

    assert_eq!(outcome, Outcome::Delivered(1));
    let got = receiver.wait_for(1).await.remove(0);
    let signature = got.header(SIGNATURE_HEADER).to_string();
    assert!(signature.starts_with("sha256="), "{signature}");
    let hex_mac = signature
        .strip_prefix("sha256=")
        .expect("a sha256= signature");
    assert!(verifies("s3cret", &got.body, hex_mac), "{signature}");
    assert!(
        !verifies("other", &got.body, hex_mac),
        "another secret does not verify"
    );
    assert_eq!(got.header(EVENT_HEADER), "release");
    let body = got.json();
    assert_eq!(body["version"], 1);
    assert_eq!(body["kind"], "release");
    assert_eq!(body["summary"], "Released default:deployment/front-end");
    assert_eq!(body["changes"][0]["to"], "weaveworksdemos/front-end:0.3.13");
    assert_eq!(body["objects"][0]["kind"], "Deployment");
    assert_eq!(body["commit"]["url"], COMMIT_PAGE);
    assert_eq!(count(&metrics, "webhook", "delivered"), 1);
}

#[tokio::test]
async fn a_webhook_without_a_secret_is_sent_unsigned() {
    let receiver = Receiver::start(&[]).await;
    let deliverer = Deliverer::new(
        endpoint(EndpointKind::Webhook, receiver.url(), None),
        quick(),
        None,
        Metrics::new().notifications.clone(),
    );

    deliverer.deliver(&release()).await;

    let got = receiver.wait_for(1).await.remove(0);
    assert!(got.headers.get(SIGNATURE_HEADER).is_none());
    assert_eq!(got.json()["commit"]["url"], Value::Null);
}

#[tokio::test]
async fn an_answer_500_is_retried_with_the_same_delivery_id_until_200() {
    let receiver = Receiver::start(&[500]).await;
    let metrics = Metrics::new();
    let deliverer = Deliverer::new(
        endpoint(EndpointKind::Webhook, receiver.url(), Some("s3cret")),
        quick(),
        None,
        metrics.notifications.clone(),
    );

    let outcome = deliverer.deliver(&release()).await;

    assert_eq!(outcome, Outcome::Delivered(2));
    let got = receiver.wait_for(2).await;
    assert_eq!(
        got[0].header(DELIVERY_HEADER),
        got[1].header(DELIVERY_HEADER)
    );
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(count(&metrics, "webhook", "retried"), 1);
    assert_eq!(count(&metrics, "webhook", "delivered"), 1);
}

#[tokio::test]
async fn an_endpoint_failing_every_time_is_dropped_after_the_bound_and_counted() {
    let receiver = Receiver::start(&[503, 503, 503, 503]).await;
    let metrics = Metrics::new();
    let deliverer = Deliverer::new(
        endpoint(EndpointKind::Slack, receiver.url(), None),
        quick(),
        None,
        metrics.notifications.clone(),
    );

    let outcome = deliverer.deliver(&release()).await;

    assert_eq!(
        outcome,
        Outcome::Dropped(3, "answered 503 Service Unavailable".into())
    );
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(count(&metrics, "slack", "dropped"), 1);
    assert_eq!(count(&metrics, "slack", "retried"), 2);
}

#[tokio::test]
async fn a_refusal_that_retrying_cannot_fix_is_dropped_at_once() {
    let receiver = Receiver::start(&[404]).await;
    let deliverer = Deliverer::new(
        endpoint(EndpointKind::Discord, receiver.url(), None),
        quick(),
        None,
        Metrics::new().notifications.clone(),
    );

    let outcome = deliverer.deliver(&release()).await;

    assert_eq!(
        outcome,
        Outcome::Dropped(1, "answered 404 Not Found".into())
    );
}

#[tokio::test]
async fn chat_endpoints_get_their_own_shapes_with_the_commit_link() {
    let metrics = Metrics::new();
    let cases = [
        (
            EndpointKind::Slack,
            "text",
            format!("<{COMMIT_PAGE}|1a2b3c4>"),
        ),
        (
            EndpointKind::Teams,
            "text",
            format!("[1a2b3c4]({COMMIT_PAGE})"),
        ),
        (
            EndpointKind::Discord,
            "content",
            format!("[1a2b3c4](<{COMMIT_PAGE}>)"),
        ),
    ];
    for (kind, field, link) in cases {
        let receiver = Receiver::start(&[]).await;
        let deliverer = Deliverer::new(
            endpoint(kind, receiver.url(), None),
            quick(),
            github(),
            metrics.notifications.clone(),
        );
        deliverer.deliver(&release()).await;
        let body = receiver.wait_for(1).await.remove(0).json();
        let text = body[field]
            .as_str()
            .unwrap_or_else(|| panic!("{kind:?}: {body}"));
        assert!(text.contains(&link), "{kind:?}: {text}");
        assert!(
            text.contains("weaveworksdemos/front-end:0.3.12 → weaveworksdemos/front-end:0.3.13"),
            "{kind:?}: {text}"
        );
    }
    let receiver = Receiver::start(&[]).await;
    Deliverer::new(
        endpoint(EndpointKind::Teams, receiver.url(), None),
        quick(),
        None,
        metrics.notifications.clone(),
    )
    .deliver(&release())
    .await;
    let card = receiver.wait_for(1).await.remove(0).json();
    assert_eq!(card["@type"], "MessageCard");
    assert_eq!(card["title"], "fluxd: release");
}

#[tokio::test]
async fn a_dead_endpoint_costs_only_its_own_retries() {
    // A port nothing listens on: every attempt fails to connect.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("an address")
    };
    let live = Receiver::start(&[]).await;
    let metrics = Metrics::new();
    let publisher = Publisher::default();
    let slow = Retry {
        attempts: 3,
        first_backoff: Duration::from_secs(3600),
        ..quick()
    };
    let endpoints = vec![
        endpoint(EndpointKind::Webhook, format!("http://{dead}/"), None),
        endpoint(EndpointKind::Slack, live.url(), None),
    ];
    let _tasks = fluxd::notify::start(
        &publisher,
        None,
        endpoints,
        slow,
        None,
        &metrics.notifications,
    );

    publisher.publish(release());
    publisher.publish(Notice::new(NoticeKind::Automation, "Automated front-end"));

    // The dead webhook waits an hour before its second attempt; Slack gets both meanwhile.
    let got = live.wait_for(2).await;
    assert!(
        got[1].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Automated")
    );
    assert_eq!(count(&metrics, "slack", "delivered"), 2);
    assert_eq!(count(&metrics, "webhook", "delivered"), 0);
}

#[tokio::test]
async fn notices_arrive_in_order_even_when_one_is_retried() {
    let receiver = Receiver::start(&[500, 502]).await;
    let publisher = Publisher::default();
    let metrics = Metrics::new();
    let endpoints = vec![endpoint(EndpointKind::Webhook, receiver.url(), None)];
    let _tasks = fluxd::notify::start(
        &publisher,
        None,
        endpoints,
        quick(),
        None,
        &metrics.notifications,
    );

    for n in 0..5 {
        publisher.publish(Notice::new(NoticeKind::Release, format!("release {n}")));
    }

    let got = receiver.wait_for(7).await;
    let delivered: Vec<String> = got
        .iter()
        .map(|r| r.json()["summary"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        delivered,
        [
            "release 0",
            "release 0",
            "release 0",
            "release 1",
            "release 2",
            "release 3",
            "release 4"
        ]
    );
}

#[tokio::test]
async fn an_endpoint_gets_only_the_kinds_and_workloads_it_selects() {
    let receiver = Receiver::start(&[]).await;
    let publisher = Publisher::default();
    let metrics = Metrics::new();
    let selective = Endpoint {
        selection: Selection {
            kinds: [NoticeKind::Release].into(),
            workloads: vec!["default:deployment/front-*".into()],
        },
        ..endpoint(EndpointKind::Webhook, receiver.url(), None)
    };
    let _tasks = fluxd::notify::start(
        &publisher,
        None,
        vec![selective],
        quick(),
        None,
        &metrics.notifications,
    );
    let carts = fluxd::notify::ObjectRef::workload("default:deployment/carts").expect("a workload");

    publisher.publish(Notice::new(NoticeKind::Release, "carts").about(carts));
    publisher.publish(Notice::new(NoticeKind::Automation, "automation").about(
        fluxd::notify::ObjectRef::workload("default:deployment/front-end").expect("a workload"),
    ));
    publisher.publish(release());

    let got = receiver.wait_for(1).await;
    // The last was published after the others: once it is in, they were passed over.
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json()["summary"],
        "Released default:deployment/front-end"
    );
}

#[tokio::test]
async fn the_counts_pass_promtool() {
    let receiver = Receiver::start(&[500]).await;
    let metrics = Metrics::new();
    Deliverer::new(
        endpoint(EndpointKind::Webhook, receiver.url(), None),
        quick(),
        None,
        metrics.notifications.clone(),
    )
    .deliver(&release())
    .await;

    let text = metrics.render(Format::Prometheus);
    assert!(
        text.contains(r#"flux_notifications_total{endpoint="webhook",result="retried"} 1"#),
        "{text}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads the metrics");
    let output = promtool.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
