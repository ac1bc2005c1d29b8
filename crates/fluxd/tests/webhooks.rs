//! Webhook deliveries as each sender makes them: the change they announce,
//! and refusal when the secret or signature is wrong.

use flux_api::Change;
use fluxd::webhooks::{Delivery, Sender, WebhookError, receive, sign};
use serde_json::json;

const SECRET: &str = "0123456789abcdef";

fn image(name: &str) -> Change {
    Change::Image {
        name: name.to_string(),
    }
}

fn deliver(
    sender: Sender,
    headers: Vec<(&str, &str)>,
    url_secret: Option<&str>,
    body: &serde_json::Value,
) -> Result<Vec<Change>, WebhookError> {
    let body = serde_json::to_vec(body).unwrap();
    receive(
        sender,
        SECRET,
        &Delivery {
            headers,
            url_secret,
        },
        &body,
    )
}

fn signed(
    sender: Sender,
    header: &str,
    prefix: &str,
    extra: Vec<(&str, &str)>,
    body: &serde_json::Value,
) -> Result<Vec<Change>, WebhookError> {
    let bytes = serde_json::to_vec(body).unwrap();
    let signature = format!("{prefix}{}", sign(SECRET, &bytes));
    let mut headers = vec![(header, signature.as_str())];
    headers.extend(extra);
    receive(
        sender,
        SECRET,
        &Delivery {
            headers,
            url_secret: None,
        },
        &bytes,
    )
}

fn registry_push(host: &str, repository: &str, tag: Option<&str>) -> serde_json::Value {
    let mut target = json!({
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "repository": repository,
    });
    if let Some(tag) = tag {
        target["tag"] = json!(tag);
    }
    json!({"events": [{"id": "1", "action": "push", "target": target, "request": {"host": host, "method": "PUT"}}]})
}

#[test]
fn registry_push_of_a_tag_names_the_repository_at_its_host() {
    let bearer = format!("Bearer {SECRET}");
    let body = registry_push("127.0.0.1:5000", "sock-shop/front-end", Some("0.3.13"));
    let changes = deliver(
        Sender::Registry,
        vec![("Authorization", &bearer)],
        None,
        &body,
    )
    .unwrap();
    assert_eq!(changes, [image("127.0.0.1:5000/sock-shop/front-end")]);
}

#[test]
fn registry_pushes_of_blobs_or_digests_alone_announce_nothing() {
    let bearer = format!("Bearer {SECRET}");
    let body = registry_push("127.0.0.1:5000", "sock-shop/front-end", None);
    assert_eq!(
        deliver(
            Sender::Registry,
            vec![("Authorization", &bearer)],
            None,
            &body
        )
        .unwrap(),
        []
    );
}

#[test]
fn registry_without_the_bearer_secret_is_refused() {
    let body = registry_push("127.0.0.1:5000", "a/b", Some("1"));
    let wrong = deliver(
        Sender::Registry,
        vec![("Authorization", "Bearer nope")],
        None,
        &body,
    );
    assert_eq!(wrong, Err(WebhookError::Unauthenticated));
    assert_eq!(
        deliver(Sender::Registry, vec![], None, &body),
        Err(WebhookError::Unauthenticated)
    );
}

#[test]
fn docker_hub_and_quay_prove_themselves_with_the_url_secret() {
    let hub = json!({"push_data": {"tag": "0.3.13"}, "repository": {"repo_name": "weaveworksdemos/front-end"}});
    assert_eq!(
        deliver(Sender::DockerHub, vec![], Some(SECRET), &hub).unwrap(),
        [image("weaveworksdemos/front-end")]
    );
    assert_eq!(
        deliver(Sender::DockerHub, vec![], Some("guess"), &hub),
        Err(WebhookError::Unauthenticated)
    );
    let quay = json!({"docker_url": "quay.io/acme/api", "updated_tags": ["v2"]});
    assert_eq!(
        deliver(Sender::Quay, vec![], Some(SECRET), &quay).unwrap(),
        [image("quay.io/acme/api")]
    );
}

#[test]
fn harbor_names_each_pushed_resource_once() {
    let body = json!({"type": "PUSH_ARTIFACT", "event_data": {"resources": [
        {"tag": "v1", "resource_url": "harbor.example.com/library/nginx:v1"},
        {"tag": "v1-alpine", "resource_url": "harbor.example.com/library/nginx:v1-alpine"},
    ]}});
    let changes = deliver(Sender::Harbor, vec![("Authorization", SECRET)], None, &body).unwrap();
    assert_eq!(changes, [image("harbor.example.com/library/nginx")]);
}

#[test]
fn github_packages_are_signed_with_hmac() {
    let body = json!({"action": "published", "package": {"package_type": "container",
        "package_version": {"package_url": "ghcr.io/acme/api:1.2.0"}}});
    let changes = signed(
        Sender::GithubPackages,
        "X-Hub-Signature-256",
        "sha256=",
        vec![("X-GitHub-Event", "package")],
        &body,
    )
    .unwrap();
    assert_eq!(changes, [image("ghcr.io/acme/api")]);
    let forged = deliver(
        Sender::GithubPackages,
        vec![("X-Hub-Signature-256", "sha256=00")],
        None,
        &body,
    );
    assert_eq!(forged, Err(WebhookError::Unauthenticated));
}

#[test]
fn the_generic_receiver_takes_an_image_or_a_name() {
    let by_image = signed(
        Sender::Generic,
        "X-Signature",
        "sha256=",
        vec![],
        &json!({"image": "nginx:1.25"}),
    )
    .unwrap();
    assert_eq!(by_image, [image("nginx")]);
    let by_name = signed(
        Sender::Generic,
        "X-Signature",
        "",
        vec![],
        &json!({"name": "quay.io/a/b"}),
    )
    .unwrap();
    assert_eq!(by_name, [image("quay.io/a/b")]);
    let neither = signed(
        Sender::Generic,
        "X-Signature",
        "",
        vec![],
        &json!({"tag": "1"}),
    );
    assert!(matches!(neither, Err(WebhookError::Payload { .. })));
}

#[test]
fn a_signature_over_other_bytes_is_refused() {
    let body = serde_json::to_vec(&json!({"image": "nginx:1.25"})).unwrap();
    let signature = sign(SECRET, b"{\"image\": \"nginx:9\"}");
    let delivery = Delivery {
        headers: vec![("X-Signature", &signature)],
        url_secret: None,
    };
    assert_eq!(
        receive(Sender::Generic, SECRET, &delivery, &body),
        Err(WebhookError::Unauthenticated)
    );
}

#[test]
fn git_pushes_trigger_a_fetch_of_the_branch() {
    let push = json!({"ref": "refs/heads/main", "repository": {"clone_url": "https://example.com/a/b.git"}});
    let git = |branch: &str| Change::Git {
        branch: Some(branch.to_string()),
    };
    let github = signed(
        Sender::Github,
        "X-Hub-Signature-256",
        "sha256=",
        vec![("X-GitHub-Event", "push")],
        &push,
    )
    .unwrap();
    assert_eq!(github, [git("main")]);
    let gitea = signed(
        Sender::Gitea,
        "X-Gitea-Signature",
        "",
        vec![("X-Gitea-Event", "push")],
        &push,
    )
    .unwrap();
    assert_eq!(gitea, [git("main")]);
    let gitlab = deliver(
        Sender::Gitlab,
        vec![("X-Gitlab-Token", SECRET), ("X-Gitlab-Event", "Push Hook")],
        None,
        &push,
    )
    .unwrap();
    assert_eq!(gitlab, [git("main")]);
    let wrong = deliver(Sender::Gitlab, vec![("X-Gitlab-Token", "x")], None, &push);
    assert_eq!(wrong, Err(WebhookError::Unauthenticated));
}

#[test]
fn git_pings_announce_nothing() {
    let ping = signed(
        Sender::Github,
        "X-Hub-Signature-256",
        "sha256=",
        vec![("X-GitHub-Event", "ping")],
        &json!({"zen": "hi"}),
    )
    .unwrap();
    assert_eq!(ping, []);
}

#[test]
fn senders_are_served_by_path_name() {
    assert_eq!(Sender::from_path("registry"), Some(Sender::Registry));
    assert_eq!(
        Sender::from_path("github-packages"),
        Some(Sender::GithubPackages)
    );
    assert_eq!(Sender::from_path("bitbucket"), None);
}
