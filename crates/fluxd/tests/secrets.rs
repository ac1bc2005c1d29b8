//! No secret is ever shown: fluxd runs with every kind configured (API
//! token, webhook secret, git HTTPS credentials in the URL and in a token
//! file, registry password, deploy key), goes down failing paths (an
//! unreachable repo, a refused token, bad bearer tokens and webhook
//! signatures, a registry refusing its password), and neither its full log
//! nor any API answer nor `/metrics` holds one of their values.

use std::path::Path;

use flux_testkit::daemon::{Fluxd, sock_shop_repo, wait_for};
use flux_testkit::git::{HttpServer, free_port};
use flux_testkit::registry::Registry;

const URL_TOKEN: &str = "url-tok-5d0e8c2b";
const GIT_TOKEN: &str = "file-tok-a61f03d9";
const WRONG_GIT_TOKEN: &str = "wrong-tok-77c2e4f1";
const REGISTRY_USER: &str = "puller";
const REGISTRY_PASSWORD: &str = "reg-pw-3b9e1c44";

fn fluxd_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// A call: path, headers, body.
type Post = (&'static str, Vec<(&'static str, String)>, &'static str);

/// What a client can see of `fluxd`: every listing, `/metrics`, and the
/// answers to refused and failing calls.
async fn everything_shown(fluxd: &Fluxd) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut shown = Vec::new();
    let keep = |what: String, answer: reqwest::Response| async move {
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        (what, format!("{status} {text}"))
    };
    for path in [
        "/api/v1/workloads",
        "/api/v1/sync",
        "/api/v1/images",
        "/api/v1/jobs",
        "/api/v1/identity",
        "/api/v1/manifests",
        "/api/openapi.json",
        "/metrics",
    ] {
        let answer = http
            .get(format!("{}{path}", fluxd.url))
            .send()
            .await
            .expect("fluxd answers");
        shown.push(keep(format!("GET {path}"), answer).await);
    }
    let posts: [Post; 7] = [
        (
            "/api/v1/sync",
            vec![("Authorization", format!("Bearer {}", fluxd.token))],
            "",
        ),
        (
            "/api/v1/sync",
            vec![("Authorization", "Bearer not-it".into())],
            "",
        ),
        (
            "/api/v1/jobs",
            vec![("Authorization", "Bearer not-it".into())],
            "{}",
        ),
        (
            "/hooks/github",
            vec![("X-Hub-Signature-256", "sha256=00ff".into())],
            "{}",
        ),
        (
            "/hooks/gitlab",
            vec![("X-Gitlab-Token", "not-it".into())],
            "{}",
        ),
        ("/hooks/dockerhub/not-it", Vec::new(), "{}"),
        (
            "/hooks/generic",
            vec![("X-Signature", "zz".into())],
            "not json",
        ),
    ];
    for (path, headers, body) in posts {
        let mut request = http.post(format!("{}{path}", fluxd.url)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.expect("fluxd answers");
        shown.push(keep(format!("POST {path}"), answer).await);
    }
    // The secret in a hook's URL, sent right: it must not be echoed either.
    let secret = webhook_secret(fluxd);
    let answer = http
        .post(format!("{}/hooks/dockerhub/{secret}", fluxd.url))
        .body(r#"{"repository":{"repo_name":"sock-shop/front-end"}}"#)
        .send()
        .await
        .expect("fluxd answers");
    shown.push(keep("POST /hooks/dockerhub/<secret>".into(), answer).await);
    shown
}

fn webhook_secret(fluxd: &Fluxd) -> String {
    std::fs::read_to_string(fluxd.data.path().join("webhook-secret"))
        .expect("fluxd made a webhook secret")
        .trim()
        .to_string()
}

/// Every secret value of `fluxd` that must stay hidden, named.
fn secrets_of(fluxd: &Fluxd) -> Vec<(String, String)> {
    vec![
        ("API token".into(), fluxd.token.clone()),
        ("webhook secret".into(), webhook_secret(fluxd)),
    ]
}

fn assert_hidden(fluxd: &Fluxd, secrets: &[(String, String)], shown: &[(String, String)]) {
    let log = fluxd.log();
    for (name, value) in secrets {
        assert!(!value.is_empty(), "{name} is set");
        assert!(
            !log.contains(value.as_str()),
            "the log shows the {name}:\n{log}"
        );
        for (what, text) in shown {
            assert!(
                !text.contains(value.as_str()),
                "{what} shows the {name}: {text}"
            );
        }
    }
}

async fn wait_for_log(fluxd: &Fluxd, needle: &str) {
    wait_for(&format!("fluxd to log {needle:?}"), || async {
        fluxd.log().contains(needle)
    })
    .await;
}

#[tokio::test]
async fn credentials_in_an_unreachable_urls_never_show() {
    let port = free_port();
    let url = format!("https://bot:{URL_TOKEN}@127.0.0.1:{port}/config.git");
    let fluxd = Fluxd::spawn(fluxd_binary(), &url, None, free_port(), &[], &[]).await;
    wait_for_log(&fluxd, "git refresh failed").await;

    let shown = everything_shown(&fluxd).await;
    let clean = format!("https://127.0.0.1:{port}/config.git");
    let (_, workloads) = &shown[0];
    assert!(
        workloads.contains(&clean),
        "the reason names the repo: {workloads}"
    );
    assert!(fluxd.log().contains(&clean), "{}", fluxd.log());
    let mut secrets = secrets_of(&fluxd);
    secrets.push(("token in the git URL".into(), URL_TOKEN.into()));
    assert_hidden(&fluxd, &secrets, &shown);
    assert_eq!(
        files_holding(fluxd.data.path(), URL_TOKEN),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_token_file_and_registry_password_never_show() {
    let registry = Registry::start_with_basic_auth(REGISTRY_USER, "the-right-one");
    let image = format!("{}/sock-shop/front-end:0.3.12", registry.host());
    let repo = sock_shop_repo(Some(&image));
    let server = HttpServer::serve(&repo, "x-access-token", GIT_TOKEN);

    let secrets_dir = tempfile::tempdir().expect("temp dir");
    let token_file = secrets_dir.path().join("token");
    std::fs::write(&token_file, WRONG_GIT_TOKEN).expect("token written");
    let docker = secrets_dir.path().join("docker");
    std::fs::create_dir_all(&docker).expect("docker config dir");
    let auth = base64_of(&format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .expect("docker config written");

    let token_flag = token_file.to_str().expect("a UTF-8 path");
    let docker_dir = docker.to_str().expect("a UTF-8 path");
    let fluxd = Fluxd::spawn(
        fluxd_binary(),
        &server.url(),
        None,
        free_port(),
        &["--git-https-token-file", token_flag],
        &[("DOCKER_CONFIG", docker_dir)],
    )
    .await;
    wait_for_log(&fluxd, "authentication to").await;
    let refused = everything_shown(&fluxd).await;

    // The rotated token is read at the next fetch: the repo is read, and
    // the registry refuses the password.
    std::fs::write(&token_file, GIT_TOKEN).expect("token rotated");
    fluxd
        .client()
        .sync()
        .await
        .expect("the rotated token fetches");
    let client = fluxd.client();
    wait_for("the manifests to be read", || async {
        client.workloads(None).await.is_ok_and(|w| !w.is_empty())
    })
    .await;
    wait_for_log(&fluxd, "cannot list tags").await;
    let mut shown = everything_shown(&fluxd).await;
    shown.extend(refused);

    let mut secrets = secrets_of(&fluxd);
    secrets.extend([
        ("git token".to_string(), GIT_TOKEN.to_string()),
        ("wrong git token".into(), WRONG_GIT_TOKEN.into()),
        ("registry password".into(), REGISTRY_PASSWORD.into()),
        ("registry auth".into(), auth),
    ]);
    assert_hidden(&fluxd, &secrets, &shown);
    for token in [GIT_TOKEN, WRONG_GIT_TOKEN] {
        assert_eq!(
            files_holding(fluxd.data.path(), token),
            Vec::<String>::new()
        );
    }
}

#[tokio::test]
async fn the_deploy_key_never_shows() {
    let url = format!("ssh://git@127.0.0.1:{}/config.git", free_port());
    let fluxd = Fluxd::spawn(fluxd_binary(), &url, None, free_port(), &[], &[]).await;
    wait_for_log(&fluxd, "git refresh failed").await;
    let shown = everything_shown(&fluxd).await;
    let (_, identity) = &shown[4];
    assert!(identity.contains("ssh-ed25519 "), "{identity}");

    let private = std::fs::read_to_string(fluxd.data.path().join("ssh/identity"))
        .expect("fluxd made a deploy key");
    let mut secrets = secrets_of(&fluxd);
    secrets.extend(
        private
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .map(|line| ("deploy key".to_string(), line.to_string())),
    );
    assert_hidden(&fluxd, &secrets, &shown);
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Files under `dir` (fluxd's log left out: it is checked on its own)
/// whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

const SLACK_TOKEN: &str = "slack-tok-9f3a61c2";
const NOTIFY_SECRET: &str = "notify-secret-4e8d2b07";

#[tokio::test]
async fn notification_urls_and_secrets_never_show() {
    use axum::http::StatusCode;
    // Both endpoints refuse, so fluxd logs each delivery it drops.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("bound");
    let refuse = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
    tokio::spawn(async move { axum::serve(listener, refuse).await });
    let slack = format!("http://{address}/services/T000/B000/{SLACK_TOKEN}");
    let webhook = format!("http://{address}/flux");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("notify-secret");
    std::fs::write(&secret_file, NOTIFY_SECRET).expect("writable");
    let secret_file = secret_file.display().to_string();
    let repo = sock_shop_repo(None);
    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &[
            "--notify-slack",
            &slack,
            "--notify-webhook",
            &webhook,
            "--notify-webhook-secret-file",
            &secret_file,
        ],
    )
    .await;
    let release = flux_api::JobSpec::Release(flux_api::ReleaseSpec {
        targets: flux_api::Targets::Workloads(vec![flux_testkit::daemon::FRONT_END.into()]),
        exclude: Vec::new(),
        update: flux_api::ImageUpdate::Image("weaveworksdemos/front-end:0.4.0".into()),
        force: false,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    });
    let submitted = fluxd.client().submit(&release).await.expect("queued");
    flux_testkit::daemon::finished(&fluxd.client(), &submitted.id).await;
    wait_for("both deliveries dropped", || async {
        fluxd.log().matches("notification dropped").count() >= 2
    })
    .await;

    let shown = everything_shown(&fluxd).await;
    assert!(
        fluxd.log().contains(&format!("slack {address}")),
        "{}",
        fluxd.log()
    );
    let mut secrets = secrets_of(&fluxd);
    secrets.push(("Slack URL's token".into(), SLACK_TOKEN.into()));
    secrets.push(("notification secret".into(), NOTIFY_SECRET.into()));
    assert_hidden(&fluxd, &secrets, &shown);
}
