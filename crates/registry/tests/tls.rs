//! The client against the real distribution registry serving TLS with a
//! certificate of a CA made in the test: per-host CAs (`--registry-ca-file`,
//! `certs.d/<host:port>/`), client certificates, and docker's https-first
//! handling of insecure hosts. The registry's certificate names
//! `registry.test`, which the client is told lives at 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flux_image::Name;
use flux_registry::{
    Cache, Client, ClientConfig, Credentials, HostCaFile, RegistryError, ScanConfig, Scanner,
    TlsConfig,
};
use flux_testkit::registry::{ImageSpec, Registry, ServeTls};
use flux_testkit::relay::Relay;
use flux_testkit::tls::TestCa;

const NAME: &str = "registry.test";

fn host(registry: &Registry) -> String {
    format!("{NAME}:{}", registry.port())
}

fn image(host: &str, repository: &str) -> Name {
    format!("{host}/{repository}").parse().expect("valid name")
}

fn config(tls: TlsConfig) -> ClientConfig {
    ClientConfig {
        tls,
        resolve: vec![(NAME.to_string(), SocketAddr::from(([127, 0, 0, 1], 0)))],
        backoff: Duration::from_millis(10),
        ..ClientConfig::default()
    }
}

fn client(tls: TlsConfig) -> Client {
    Client::new(config(tls), Credentials::none())
}

fn scanner(config: ClientConfig) -> Scanner {
    Scanner::new(
        Arc::new(Client::new(config, Credentials::none())),
        Arc::new(Cache::in_memory()),
        ScanConfig::default(),
    )
}

fn certs_dir(dir: &Path) -> TlsConfig {
    TlsConfig {
        certs_dir: Some(dir.to_path_buf()),
        ca_files: Vec::new(),
    }
}

/// A registry serving TLS for `registry.test` under `ca`, holding `team/app:1.0`.
async fn registry_under(ca: &TestCa, client_ca: Option<&TestCa>) -> Registry {
    let certificate = ca.server_certificate(&[NAME]);
    let registry = Registry::start_tls(ServeTls {
        certificate: &certificate,
        client_ca,
    });
    registry
        .push_image(
            "team/app",
            "1.0",
            &ImageSpec::created("2020-01-01T00:00:00Z"),
        )
        .await;
    registry
}

fn certificate_error(result: Result<Vec<String>, RegistryError>) -> String {
    match result {
        Err(error @ RegistryError::Certificate { .. }) => error.to_string(),
        other => panic!("expected a refused certificate, got {other:?}"),
    }
}

#[tokio::test]
async fn a_registry_under_an_unknown_ca_is_refused_naming_the_host_and_where_its_ca_goes() {
    let ca = TestCa::new("team CA");
    let registry = registry_under(&ca, None).await;
    let certs = tempfile::tempdir().unwrap();
    let host = host(&registry);

    let error = certificate_error(
        client(certs_dir(certs.path()))
            .list_tags(&image(&host, "team/app"))
            .await,
    );

    assert!(error.starts_with(&format!("{host}: ")), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    let ca_path = certs.path().join(&host).join("ca.crt");
    assert!(error.contains(&ca_path.display().to_string()), "{error}");
}

#[tokio::test]
async fn a_ca_file_named_for_the_host_is_trusted() {
    let ca = TestCa::new("team CA");
    let registry = registry_under(&ca, None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("team-ca.pem");
    ca.write(&ca_file);
    let host = host(&registry);

    let scanner = scanner(config(TlsConfig {
        certs_dir: None,
        ca_files: vec![HostCaFile {
            host: host.clone(),
            path: ca_file,
        }],
    }));
    let result = scanner.poll_repository(&image(&host, "team/app")).await;

    assert_eq!(result.info.error, None);
    let tag = result.info.tag("1.0").expect("the tag is listed");
    assert_eq!(tag.created, Some("2020-01-01T00:00:00Z".parse().unwrap()));
}

#[tokio::test]
async fn a_ca_in_certs_d_under_host_and_port_is_trusted_as_docker_lays_it_out() {
    let ca = TestCa::new("team CA");
    let registry = registry_under(&ca, None).await;
    let certs = tempfile::tempdir().unwrap();
    let host = host(&registry);

    // Docker's folder for a registry with a port names the port too.
    std::fs::create_dir(certs.path().join(NAME)).unwrap();
    ca.write(&certs.path().join(NAME).join("ca.crt"));
    let without_port = client(certs_dir(certs.path()))
        .list_tags(&image(&host, "team/app"))
        .await;
    assert!(certificate_error(without_port).contains("UnknownIssuer"));

    std::fs::create_dir(certs.path().join(&host)).unwrap();
    ca.write(&certs.path().join(&host).join("ca.crt"));
    let tags = client(certs_dir(certs.path()))
        .list_tags(&image(&host, "team/app"))
        .await
        .expect("the CA in certs.d/<host:port>/ is trusted");
    assert_eq!(tags, ["1.0"]);
}

#[tokio::test]
async fn a_registry_requiring_client_certificates_gets_the_one_in_certs_d() {
    let ca = TestCa::new("team CA");
    let clients = TestCa::new("team client CA");
    let registry = registry_under(&ca, Some(&clients)).await;
    let certs = tempfile::tempdir().unwrap();
    let host = host(&registry);
    let folder = certs.path().join(&host);
    std::fs::create_dir(&folder).unwrap();
    ca.write(&folder.join("ca.crt"));

    let without = certificate_error(
        client(certs_dir(certs.path()))
            .list_tags(&image(&host, "team/app"))
            .await,
    );
    assert!(without.starts_with(&format!("{host}: ")), "{without}");
    let client_cert = folder.join("client.cert");
    assert!(
        without.contains(&client_cert.display().to_string()),
        "{without}"
    );

    clients
        .client_certificate("fluxd")
        .write(&folder.join("client.cert"), &folder.join("client.key"));
    let tags = client(certs_dir(certs.path()))
        .list_tags(&image(&host, "team/app"))
        .await
        .expect("the client certificate is presented");
    assert_eq!(tags, ["1.0"]);
}

#[tokio::test]
async fn a_broken_ca_file_fails_its_host_naming_the_file() {
    let ca = TestCa::new("team CA");
    let registry = registry_under(&ca, None).await;
    let certs = tempfile::tempdir().unwrap();
    let host = host(&registry);
    let folder = certs.path().join(&host);
    std::fs::create_dir(&folder).unwrap();
    let broken = folder.join("ca.crt");
    std::fs::write(
        &broken,
        ca.pem()
            .replace("CERTIFICATE-----\n", "CERTIFICATE-----\n!"),
    )
    .unwrap();

    let error = client(certs_dir(certs.path()))
        .list_tags(&image(&host, "team/app"))
        .await
        .expect_err("a broken CA file is an error");

    assert!(matches!(error, RegistryError::Tls(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{host}: {}: ", broken.display())),
        "{text}"
    );
}

#[tokio::test]
async fn an_insecure_host_is_spoken_to_over_https_without_checking_its_certificate() {
    let ca = TestCa::new("nobody's CA");
    let registry = registry_under(&ca, None).await;
    let names = [
        // Loopback is insecure by default; the certificate does not even
        // name 127.0.0.1.
        image(&registry.host(), "team/app"),
        image(&host(&registry), "team/app"),
    ];
    let scanner = scanner(ClientConfig {
        insecure_hosts: vec![host(&registry)],
        ..config(TlsConfig::default())
    });
    let counters = scanner.client().counters();

    let first = scanner.poll(&names).await;
    assert!(first.iter().all(|r| r.info.error.is_none()), "{first:?}");
    assert_eq!(scanner.client().scheme(&registry.host()), "https");
    assert_eq!(scanner.client().scheme(&host(&registry)), "https");

    let before = counters.total();
    scanner.poll(&names).await;
    assert_eq!(
        counters.total() - before,
        2,
        "one tags request per repository"
    );
}

async fn plain_registry_with(repositories: &[&str]) -> Registry {
    let registry = Registry::start();
    for repository in repositories {
        registry
            .push_image(
                repository,
                "1.0",
                &ImageSpec::created("2020-01-01T00:00:00Z"),
            )
            .await;
    }
    registry
}

#[tokio::test]
async fn a_plain_http_registry_on_loopback_costs_one_https_attempt_in_all() {
    let repositories = ["a", "b", "c", "d"];
    let registry = plain_registry_with(&repositories).await;
    let relay = Relay::start(registry.addr());
    let host = relay.addr().to_string();
    let names: Vec<Name> = repositories.iter().map(|r| image(&host, r)).collect();
    let scanner = scanner(config(TlsConfig::default()));
    let counters = scanner.client().counters();

    // The repositories are polled at once: one of them finds the scheme,
    // the others wait for it.
    let first = scanner.poll(&names).await;
    assert!(first.iter().all(|r| r.info.error.is_none()), "{first:?}");
    assert_eq!(scanner.client().scheme(&host), "http");
    assert_eq!(relay.tls_handshakes(), 1);

    let before = counters.total();
    scanner.poll(&names).await;
    scanner.poll(&names).await;
    assert_eq!(
        counters.total() - before,
        2 * 4,
        "one tags request per repository"
    );
    assert_eq!(relay.tls_handshakes(), 1, "the scheme is remembered");
}

#[tokio::test]
async fn an_insecure_host_that_stops_answering_is_looked_at_afresh() {
    let registry = plain_registry_with(&["app"]).await;
    let relay = Relay::start(registry.addr());
    let host = relay.addr().to_string();
    let app = image(&host, "app");
    let scanner = scanner(ClientConfig {
        retries: 0,
        ..config(TlsConfig::default())
    });
    assert_eq!(scanner.poll_repository(&app).await.info.error, None);
    assert_eq!(scanner.client().scheme(&host), "http");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    relay.point_at(closed);
    let down = scanner.poll_repository(&app).await;
    assert!(down.info.error.is_some(), "nothing answers");
    assert_ne!(
        scanner.client().scheme(&host),
        "http",
        "the scheme is forgotten"
    );

    // It comes back serving TLS.
    let ca = TestCa::new("team CA");
    let tls = registry_under(&ca, None).await;
    tls.push_image("app", "2.0", &ImageSpec::created("2021-01-01T00:00:00Z"))
        .await;
    relay.point_at(tls.addr());
    let back = scanner.poll_repository(&app).await;
    assert_eq!(back.info.error, None);
    assert!(back.info.tag("2.0").is_some());
    assert_eq!(scanner.client().scheme(&host), "https");
}

#[tokio::test]
async fn an_insecure_registry_refusing_a_missing_client_certificate_is_not_taken_for_plain_http() {
    let ca = TestCa::new("nobody's CA");
    let clients = TestCa::new("team client CA");
    let registry = registry_under(&ca, Some(&clients)).await;
    let certs = tempfile::tempdir().unwrap();
    let host = registry.host();

    let without = client(certs_dir(certs.path()))
        .list_tags(&image(&host, "team/app"))
        .await;
    let error = certificate_error(without);
    assert!(error.contains("client certificate"), "{error}");

    let folder = certs.path().join(&host);
    std::fs::create_dir(&folder).unwrap();
    clients
        .client_certificate("fluxd")
        .write(&folder.join("client.cert"), &folder.join("client.key"));
    let client = client(certs_dir(certs.path()));
    let tags = client
        .list_tags(&image(&host, "team/app"))
        .await
        .expect("the client certificate is presented, the server's not checked");
    assert_eq!(tags, ["1.0"]);
    assert_eq!(client.scheme(&host), "https");
}
