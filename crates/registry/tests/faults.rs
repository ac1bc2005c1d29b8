//! Fault shapes the local registry cannot produce: token challenges with
//! scopes, 429 with `Retry-After`, short pages with only `Link`, 5xx bursts.
//! Everything else is tested against the real registry.

use std::time::{Duration, Instant};

use flux_image::Name;
use flux_registry::{Client, ClientConfig, Credential, Credentials, HostLimits};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(credentials: Credentials) -> Client {
    Client::new(
        ClientConfig {
            backoff: Duration::from_millis(10),
            ..ClientConfig::default()
        },
        credentials,
    )
}

fn name(server: &MockServer, repository: &str) -> Name {
    let host = server.address().to_string();
    format!("{host}/{repository}").parse().expect("valid name")
}

fn tags(list: &[&str]) -> serde_json::Value {
    serde_json::json!({"name": "x", "tags": list})
}

#[tokio::test]
async fn bearer_challenge_is_answered_with_a_scoped_token_using_credentials() {
    let server = MockServer::start().await;
    let realm = format!("{}/token", server.uri());
    let challenge = format!(
        r#"Bearer realm="{realm}",service="registry.test",scope="repository:team/app:pull""#
    );
    Mock::given(method("GET"))
        .and(path("/v2/team/app/tags/list"))
        .and(header("authorization", "Bearer scoped-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["1.0"])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/team/app/tags/list"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("service", "registry.test"))
        .and(query_param("scope", "repository:team/app:pull"))
        // base64("u:p")
        .and(header("authorization", "Basic dTpw"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"token": "scoped-token", "expires_in": 300})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let mut credentials = Credentials::none();
    credentials.insert(
        &server.address().to_string(),
        Credential {
            username: "u".into(),
            password: "p".into(),
        },
    );
    let client = client(credentials);
    let app = name(&server, "team/app");
    assert_eq!(client.list_tags(&app).await.unwrap(), ["1.0"]);
    let before = client.counters().total();
    assert_eq!(client.list_tags(&app).await.unwrap(), ["1.0"]);
    assert_eq!(
        client.counters().total() - before,
        1,
        "the token is reused: one request, authenticated up front"
    );
}

#[tokio::test]
async fn anonymous_token_is_fetched_without_credentials() {
    let server = MockServer::start().await;
    let challenge = format!(r#"Bearer realm="{}/token",service="svc""#, server.uri());
    Mock::given(method("GET"))
        .and(path("/v2/library/app/tags/list"))
        .and(header("authorization", "Bearer anon"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["a"])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/library/app/tags/list"))
        .respond_with(
            ResponseTemplate::new(401).insert_header("www-authenticate", challenge.as_str()),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/token"))
        .and(query_param("scope", "repository:library/app:pull"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "anon"})),
        )
        .mount(&server)
        .await;
    let client = client(Credentials::none());
    let tags = client
        .list_tags(&name(&server, "library/app"))
        .await
        .unwrap();
    assert_eq!(tags, ["a"]);
    let requests = server.received_requests().await.unwrap();
    let token_request = requests.iter().find(|r| r.url.path() == "/token").unwrap();
    assert!(!token_request.headers.contains_key("authorization"));
}

#[tokio::test]
async fn too_many_requests_waits_retry_after_and_halves_the_rate() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["x"])))
        .with_priority(2)
        .mount(&server)
        .await;
    let client = Client::new(
        ClientConfig {
            limits: HostLimits {
                rps: 20.0,
                ..HostLimits::default()
            },
            ..ClientConfig::default()
        },
        Credentials::none(),
    );
    let start = Instant::now();
    let tags = client.list_tags(&name(&server, "app")).await.unwrap();
    assert_eq!(tags, ["x"]);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let host = server.address().to_string();
    assert_eq!(client.gate(&host).current_rate(), 10.0);
    let counts = client.counters().snapshot();
    assert_eq!(counts.get(&(host.clone(), 429)), Some(&1));
    assert_eq!(counts.get(&(host, 200)), Some(&1));
}

#[tokio::test]
async fn retry_after_beyond_the_limit_fails_fast_with_the_wait() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .mount(&server)
        .await;
    let client = client(Credentials::none());
    let start = Instant::now();
    let error = client.list_tags(&name(&server, "app")).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(error.to_string().contains("rate limited (429)"), "{error}");
    // The host stays paused: the next repository fails fast too, without a request.
    let before = client.counters().total();
    assert!(client.list_tags(&name(&server, "other")).await.is_err());
    assert_eq!(client.counters().total(), before);
}

#[tokio::test]
async fn short_pages_with_only_link_headers_are_followed_and_the_cap_learned() {
    let server = MockServer::start().await;
    // Asked for 1000, it sends 2 per page and a Link, and never an `n`-sized page.
    let pages = [
        (
            None,
            vec!["a", "b"],
            Some("</v2/app/tags/list?last=b&n=2>; rel=\"next\""),
        ),
        (
            Some("b"),
            vec!["c", "d"],
            Some("</v2/app/tags/list?last=d&n=2>; rel=\"next\""),
        ),
        (Some("d"), vec!["e"], None),
    ];
    for (last, list, link) in pages {
        let mut mock = Mock::given(method("GET")).and(path("/v2/app/tags/list"));
        mock = match last {
            Some(last) => mock.and(query_param("last", last)),
            None => mock.and(query_param_is_missing("last")),
        };
        let mut response = ResponseTemplate::new(200).set_body_json(tags(&list));
        if let Some(link) = link {
            response = response.insert_header("link", link);
        }
        mock.respond_with(response).mount(&server).await;
    }
    let client = client(Credentials::none());
    let app = name(&server, "app");
    assert_eq!(
        client.list_tags(&app).await.unwrap(),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(client.counters().total(), 3);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].url.query(), Some("n=1000"));
}

#[tokio::test]
async fn a_full_page_without_link_is_continued_with_last() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .and(query_param_is_missing("last"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["a", "b"])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .and(query_param("last", "b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["c"])))
        .mount(&server)
        .await;
    let client = Client::new(
        ClientConfig {
            page_size: 2,
            ..ClientConfig::default()
        },
        Credentials::none(),
    );
    assert_eq!(
        client.list_tags(&name(&server, "app")).await.unwrap(),
        ["a", "b", "c"]
    );
}

#[tokio::test]
async fn a_burst_of_server_errors_is_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags(&["ok"])))
        .with_priority(2)
        .mount(&server)
        .await;
    let client = client(Credentials::none());
    assert_eq!(
        client.list_tags(&name(&server, "app")).await.unwrap(),
        ["ok"]
    );
    let host = server.address().to_string();
    assert_eq!(client.counters().snapshot().get(&(host, 503)), Some(&3));
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database on fire"))
        .mount(&server)
        .await;
    let client = client(Credentials::none());
    let error = client.list_tags(&name(&server, "app")).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("500") && text.contains("database on fire"),
        "{text}"
    );
    assert_eq!(
        client.counters().total(),
        5,
        "first attempt and four retries"
    );
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/app/tags/list"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let client = Client::new(
        ClientConfig {
            timeout: Duration::from_millis(200),
            retries: 1,
            backoff: Duration::from_millis(10),
            ..ClientConfig::default()
        },
        Credentials::none(),
    );
    let error = client.list_tags(&name(&server, "app")).await.unwrap_err();
    assert!(error.to_string().contains("timed out"), "{error}");
    let host = server.address().to_string();
    assert_eq!(client.counters().snapshot().get(&(host, 0)), Some(&2));
}
