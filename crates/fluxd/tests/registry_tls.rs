//! `fluxd` scanning a registry that serves TLS under a private CA and
//! requires client certificates: the CA given with `--registry-ca-file`,
//! the client certificate found in `--registry-certs-dir`. The registry's
//! certificate names `registry.test`, which fluxd reaches through a
//! `CONNECT` proxy (`HTTPS_PROXY`) that knows where it lives.

use flux_testkit::daemon::{FRONT_END, Fluxd, sock_shop_repo, wait_for};
use flux_testkit::registry::{ImageSpec, Registry, ServeTls};
use flux_testkit::relay::ConnectProxy;
use flux_testkit::tls::TestCa;

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_under_a_private_ca_wanting_client_certificates_is_scanned() {
    let ca = TestCa::new("team CA");
    let clients = TestCa::new("team client CA");
    let certificate = ca.server_certificate(&["registry.test"]);
    let registry = Registry::start_tls(ServeTls {
        certificate: &certificate,
        client_ca: Some(&clients),
    });
    for (tag, created) in [
        ("0.3.12", "2016-11-18T16:00:00Z"),
        ("0.3.13", "2017-01-10T10:00:00Z"),
        ("0.4.0", "2017-03-01T10:00:00Z"),
    ] {
        registry
            .push_image("sock-shop/front-end", tag, &ImageSpec::created(created))
            .await;
    }
    let host = format!("registry.test:{}", registry.port());
    let proxy = ConnectProxy::start(&[(&host, registry.addr())]);

    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("team-ca.pem");
    ca.write(&ca_file);
    let certs = files.path().join("certs.d");
    let folder = certs.join(&host);
    std::fs::create_dir_all(&folder).unwrap();
    clients
        .client_certificate("fluxd")
        .write(&folder.join("client.cert"), &folder.join("client.key"));

    let repo = sock_shop_repo(Some(&format!("{host}/sock-shop/front-end:0.3.12")));
    let include = format!("--registry-include-image={host}/*");
    let ca_flag = format!("--registry-ca-file={host}={}", ca_file.display());
    let certs_flag = format!("--registry-certs-dir={}", certs.display());
    let proxy_url = proxy.url();
    let fluxd = Fluxd::start_with_env(
        fluxd_binary(),
        &repo,
        &[&include, &ca_flag, &certs_flag],
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("https_proxy", &proxy_url),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    )
    .await;
    let client = fluxd.client();

    wait_for("the registry's tags in the view", || async {
        let images = client.images(&[FRONT_END.to_string()], None).await.unwrap();
        images[0].containers[0].available.len() == 3
    })
    .await;
    assert!(proxy.tunnels() > 0, "fluxd went through the proxy");
}
