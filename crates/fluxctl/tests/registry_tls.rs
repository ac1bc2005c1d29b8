//! `fluxctl list-images --manifests` against the real registry serving TLS
//! under a CA made in the test, for the name `registry.test`. The binary
//! reaches that name through a `CONNECT` proxy given as `HTTPS_PROXY`, so
//! TLS (SNI, the certificate check) runs end to end for the name, with no
//! DNS or `/etc/hosts` entry; `SSL_CERT_FILE` is set for the child only.

use std::path::Path;
use std::process::Command;

use flux_testkit::registry::{ImageSpec, Registry, ServeTls};
use flux_testkit::relay::ConnectProxy;
use flux_testkit::tls::TestCa;

/// A TLS registry for `registry.test` holding `team/web:1.0.0`, the proxy
/// that reaches it, and a checkout whose deployment runs that image.
struct Setup {
    ca: TestCa,
    host: String,
    proxy: ConnectProxy,
    dir: tempfile::TempDir,
    _registry: Registry,
}

impl Setup {
    async fn new() -> Setup {
        let ca = TestCa::new("team CA");
        let certificate = ca.server_certificate(&["registry.test"]);
        let registry = Registry::start_tls(ServeTls {
            certificate: &certificate,
            client_ca: None,
        });
        registry
            .push_image(
                "team/web",
                "1.0.0",
                &ImageSpec::created("2016-11-18T16:00:00Z"),
            )
            .await;
        let host = format!("registry.test:{}", registry.port());
        let proxy = ConnectProxy::start(&[(&host, registry.addr())]);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("manifests")).unwrap();
        std::fs::write(
            dir.path().join("manifests/app.yaml"),
            format!(
                "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: team
spec:
  template:
    spec:
      containers:
      - name: web
        image: {host}/team/web:1.0.0
"
            ),
        )
        .unwrap();
        Setup {
            ca,
            host,
            proxy,
            dir,
            _registry: registry,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `fluxctl list-images` on the checkout with `args` and `vars`.
    fn list_images(&self, args: &[&str], vars: &[(&str, &Path)]) -> (i32, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .args(["list-images", "--manifests"])
            .arg(self.path("manifests"))
            .arg("--no-registry-cache")
            .args(args)
            .env("HOME", "/nonexistent")
            .env("HTTPS_PROXY", self.proxy.url())
            .env("https_proxy", self.proxy.url())
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .envs(vars.iter().copied())
            .output()
            .expect("run fluxctl");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn assert_listed(result: (i32, String, String)) {
    let (code, stdout, stderr) = result;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let running = stdout
        .lines()
        .find(|l| l.contains("'-> 1.0.0"))
        .unwrap_or_else(|| panic!("the running tag is listed: {stdout}"));
    assert!(running.ends_with("18 Nov 16 16:00 UTC"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_ca_is_refused_and_says_where_the_ca_goes() {
    let setup = Setup::new().await;

    let (code, stdout, stderr) = setup.list_images(&[], &[]);

    assert_eq!(code, 1, "{stdout}{stderr}");
    let host = &setup.host;
    assert!(stdout.contains(&format!("{host}: ")), "{stdout}");
    assert!(stdout.contains("UnknownIssuer"), "{stdout}");
    assert!(
        stdout.contains(&format!("/etc/docker/certs.d/{host}/ca.crt")),
        "the default certs folder is named: {stdout}"
    );
    assert!(setup.proxy.tunnels() > 0, "fluxctl went through the proxy");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_cert_file_is_trusted() {
    let setup = Setup::new().await;
    let bundle = setup.path("bundle.pem");
    setup.ca.write(&bundle);

    assert_listed(setup.list_images(&[], &[("SSL_CERT_FILE", &bundle)]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_ssl_cert_file_is_an_error_naming_it() {
    let setup = Setup::new().await;
    let missing = setup.path("no-such-bundle.pem");

    let (code, stdout, _) = setup.list_images(&[], &[("SSL_CERT_FILE", &missing)]);

    assert_eq!(code, 1, "{stdout}");
    let named = format!("SSL_CERT_FILE={}", missing.display());
    assert!(stdout.contains(&named), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_flag_for_the_host_is_trusted() {
    let setup = Setup::new().await;
    let ca_file = setup.path("team-ca.pem");
    setup.ca.write(&ca_file);
    let flag = format!("--registry-ca-file={}={}", setup.host, ca_file.display());

    assert_listed(setup.list_images(&[&flag], &[]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_in_the_certs_dir_flag_is_trusted() {
    let setup = Setup::new().await;
    let certs = setup.path("certs.d");
    std::fs::create_dir_all(certs.join(&setup.host)).unwrap();
    setup.ca.write(&certs.join(&setup.host).join("ca.crt"));
    let flag = format!("--registry-certs-dir={}", certs.display());

    assert_listed(setup.list_images(&[&flag], &[]));
}
