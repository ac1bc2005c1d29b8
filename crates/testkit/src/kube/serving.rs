//! How the double is reached: plain http with no credentials (what most tests and
//! their kubeconfig use), or as a pod reaches the real API server: https under a
//! CA the client is given, and a bearer token it must present.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{KeyedCertificate, TestCa};

/// What a client must bring to reach a double.
///
/// ```
/// use flux_testkit::kube::{ApiServer, Serving};
/// use flux_testkit::tls::TestCa;
/// let ca = TestCa::new("cluster CA");
/// let server = ApiServer::start_serving(Serving::default().tls(&ca).token("s3cret"));
/// assert!(server.url().starts_with("https://127.0.0.1:"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// The server certificate and the CA that signed it (plain http when none).
    pub(super) tls: Option<Tls>,
    /// Answer `401 Unauthorized` to a request without `Authorization: Bearer <token>`.
    pub(super) bearer_token: Option<String>,
}

/// A server certificate for the loopback address and the CA clients check it with.
#[derive(Debug, Clone)]
pub(super) struct Tls {
    pub(super) certificate: KeyedCertificate,
    pub(super) ca_pem: String,
}

impl Serving {
    /// Serves https with a certificate `ca` signs for `127.0.0.1`.
    pub fn tls(mut self, ca: &TestCa) -> Self {
        self.tls = Some(Tls {
            certificate: ca.server_certificate(&["127.0.0.1"]),
            ca_pem: ca.pem().to_string(),
        });
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request, as a service
    /// account's token is presented.
    pub fn token(mut self, token: &str) -> Self {
        self.bearer_token = Some(token.to_string());
        self
    }
}

/// Serves `router` on `listener`, over TLS when `tls` is given.
pub(super) async fn serve(listener: tokio::net::TcpListener, router: Router, tls: Option<Tls>) {
    let Some(tls) = tls else {
        let _ = axum::serve(listener, router).await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&tls.certificate)));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // A client that gives up mid-handshake is its own business.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn server_config(tls: &KeyedCertificate) -> rustls::ServerConfig {
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the test certificate is PEM");
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("the test key is PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the test certificate and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Whether `authorization` (the header's value) carries `token`, as the real API
/// server's bearer token authenticator asks.
pub(super) fn authorized(expected: Option<&str>, authorization: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == expected)
}
