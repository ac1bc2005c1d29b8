//! Hostile requests over a real socket: every webhook receiver checks its
//! secret or signature before it reads the body as JSON, and every receiver
//! and the API refuse a body over the limit with 413 without reading it all.

use std::sync::Arc;

use fluxd::jobs::{Jobs, Outcome};
use fluxd::metrics::Metrics;
use fluxd::server::{API_BODY_LIMIT, Api, Control, HOOK_BODY_LIMIT, Pending, View, router};
use fluxd::webhooks::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const TOKEN: &str = "api-t0ken-91c4";
const SECRET: &str = "hook-s3cret-e2a7";

struct Unwired;

impl Control for Unwired {
    fn sync(&self) -> Pending<'_, flux_api::SyncRequested> {
        Box::pin(async { Err("no git in this test".to_string()) })
    }
    fn sync_status(&self, _: String) -> Pending<'_, flux_api::SyncStatus> {
        Box::pin(async { Err("no git in this test".to_string()) })
    }
    fn plan(&self, _: flux_api::JobSpec) -> Pending<'_, Vec<flux_api::WorkloadResult>> {
        Box::pin(async { Err("no manifests in this test".to_string()) })
    }
    fn identity(&self) -> Option<flux_api::Identity> {
        None
    }
}

struct Served {
    url: String,
    address: std::net::SocketAddr,
    _stop: watch::Sender<bool>,
    _view: watch::Sender<View>,
    _changes: mpsc::UnboundedReceiver<flux_api::Change>,
}

async fn serve() -> Served {
    let (stop, shutdown) = watch::channel(false);
    let jobs = Jobs::start(|_| async { Ok(Outcome::default()) }, shutdown);
    let (view_tx, view) = watch::channel(View::default());
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        cluster: false,
        token: TOKEN.into(),
        webhook_secret: SECRET.into(),
        jobs,
        metrics: Arc::new(Metrics::new()),
        view,
        changes: changes_tx,
        control: Arc::new(Unwired),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Served {
        url: format!("http://{address}"),
        address,
        _stop: stop,
        _view: view_tx,
        _changes: changes,
    }
}

/// How each receiver is addressed: its path, and the headers that prove
/// (or, with `secret` wrong, fail to prove) the sender for `body`.
fn delivery(sender: &str, secret: &str, body: &[u8]) -> (String, Vec<(&'static str, String)>) {
    let signature = sign(secret, body);
    let headers = match sender {
        "registry" | "harbor" => vec![("Authorization", format!("Bearer {secret}"))],
        "dockerhub" | "quay" => return (format!("/hooks/{sender}/{secret}"), Vec::new()),
        "github" | "github-packages" => vec![
            ("X-Hub-Signature-256", format!("sha256={signature}")),
            ("X-GitHub-Event", "push".into()),
        ],
        "generic" => vec![("X-Signature", format!("sha256={signature}"))],
        "gitea" => vec![("X-Gitea-Signature", signature)],
        "gitlab" => vec![("X-Gitlab-Token", secret.to_string())],
        other => panic!("no receiver {other}"),
    };
    (format!("/hooks/{sender}"), headers)
}

const SENDERS: [&str; 9] = [
    "registry",
    "dockerhub",
    "quay",
    "harbor",
    "github-packages",
    "generic",
    "github",
    "gitlab",
    "gitea",
];

async fn post(
    served: &Served,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", served.url))
        .header("Content-Type", "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let answer = request.send().await.expect("fluxd answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("a body"))
}

#[tokio::test]
async fn a_bad_secret_is_refused_before_the_body_is_read_as_json() {
    let served = serve().await;
    let body = b"this is not JSON {{{".to_vec();
    for sender in SENDERS {
        let (path, headers) = delivery(sender, "not-the-secret", &body);
        let (status, text) = post(&served, &path, &headers, body.clone()).await;
        assert_eq!(status, 401, "{sender}: {text}");
        assert!(text.contains("secret or signature"), "{sender}: {text}");

        // With the right secret the same body is read, and is not JSON.
        let (path, headers) = delivery(sender, SECRET, &body);
        let (status, text) = post(&served, &path, &headers, body.clone()).await;
        assert_eq!(status, 400, "{sender}: {text}");
        assert!(text.contains("cannot read"), "{sender}: {text}");
    }
}

/// Sends headers declaring a body of `length` bytes and none of the body,
/// and returns the status line of the answer.
async fn headers_alone(
    served: &Served,
    path: &str,
    headers: &[(&str, String)],
    length: usize,
) -> String {
    let mut stream = tokio::net::TcpStream::connect(served.address)
        .await
        .expect("fluxd listens");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {length}\r\nContent-Type: application/json\r\n",
        served.address
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("headers sent");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let read = stream.read(&mut buffer).await.expect("an answer");
        assert!(read > 0, "fluxd closed the connection without answering");
        answer.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_wrong_token_is_refused_before_any_of_the_body_is_read() {
    let served = serve().await;
    for sender in ["registry", "dockerhub", "quay", "harbor", "gitlab"] {
        let (path, headers) = delivery(sender, "not-the-secret", b"");
        // The body never comes: only an answer given without it returns.
        let answered = headers_alone(&served, &path, &headers, 1000);
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), answered)
            .await
            .unwrap_or_else(|_| panic!("{sender}: no answer while fluxd waits for the body"));
        assert!(status.contains(" 401 "), "{sender}: {status}");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_every_receiver_and_the_api() {
    let served = serve().await;
    let too_large = vec![b' '; HOOK_BODY_LIMIT + 1];
    for sender in SENDERS {
        let (path, headers) = delivery(sender, SECRET, &too_large);
        let (status, text) = post(&served, &path, &headers, too_large.clone()).await;
        assert_eq!(status, 413, "{sender}: {text}");

        // At the limit the body is read (and found to be no payload).
        let at_limit = vec![b' '; HOOK_BODY_LIMIT];
        let (path, headers) = delivery(sender, SECRET, &at_limit);
        let (status, text) = post(&served, &path, &headers, at_limit).await;
        assert_eq!(status, 400, "{sender}: {text}");
    }
    let bearer = [("Authorization", format!("Bearer {TOKEN}"))];
    for path in ["/api/v1/jobs", "/api/v1/notify"] {
        let body = vec![b' '; API_BODY_LIMIT + 1];
        let (status, text) = post(&served, path, &bearer, body).await;
        assert_eq!(status, 413, "{path}: {text}");
        let (status, text) = post(&served, path, &bearer, b"{}".to_vec()).await;
        assert_ne!(status, 413, "{path}: {text}");
    }
}

/// Sends a chunked body that never ends to `path`, and returns the status
/// line of the answer and how much had been sent when it came.
async fn endless_chunked(
    served: &Served,
    path: &str,
    headers: &[(&str, String)],
) -> (String, usize) {
    let stream = tokio::net::TcpStream::connect(served.address)
        .await
        .expect("fluxd listens");
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n",
        served.address
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    let feeding = tokio::spawn(async move {
        writer
            .write_all(head.as_bytes())
            .await
            .expect("headers sent");
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        while writer.write_all(chunk.as_bytes()).await.is_ok() {
            counted.fetch_add(0x10000, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let read = reader.read(&mut buffer).await.expect("an answer");
        assert!(read > 0, "fluxd closed the connection without answering");
        answer.extend_from_slice(&buffer[..read]);
    }
    let sent_then = sent.load(std::sync::atomic::Ordering::Relaxed);
    feeding.abort();
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or_default().to_string(),
        sent_then,
    )
}

#[tokio::test]
async fn a_chunked_body_that_never_ends_is_answered_413_at_the_limit() {
    let served = serve().await;
    // A token in the URL: the body is not needed to check it.
    let (status, sent) = endless_chunked(&served, &format!("/hooks/dockerhub/{SECRET}"), &[]).await;
    assert!(status.contains(" 413 "), "{status}");
    // What was sent is the limit and what the socket buffers hold, never
    // the whole (endless) body.
    assert!(
        sent < 64 * HOOK_BODY_LIMIT,
        "{sent} bytes sent before the answer"
    );

    let bearer = [("Authorization", format!("Bearer {TOKEN}"))];
    let (status, _) = endless_chunked(&served, "/api/v1/notify", &bearer).await;
    assert!(status.contains(" 413 "), "{status}");
}
