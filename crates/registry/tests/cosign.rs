//! Cosign signatures against the real CNCF distribution registry: made in
//! the test the way the cosign specification lays them out (a simple-signing
//! payload blob, its ECDSA P-256 signature in the layer's annotation, the
//! manifest tagged `sha256-<hex>.sig`), then verified by tag.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use flux_image::Name;
use flux_registry::cosign::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, signature_tag};
use flux_registry::{
    Cache, Client, ClientConfig, Credentials, ScanConfig, Scanner, Signatures, Verdict, VerifyKey,
};
use flux_testkit::registry::{ImageSpec, Registry};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).expect("a valid scalar")
}

fn public_pem(key: &SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM")
}

/// The simple-signing payload cosign signs for `digest`.
fn payload(repository: &str, digest: &str) -> Vec<u8> {
    serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string()
    .into_bytes()
}

/// Pushes a signature manifest under the signature tag of `for_digest`,
/// with one layer: `payload` signed by `key`.
async fn push_signature(
    registry: &Registry,
    repository: &str,
    for_digest: &str,
    payload: &[u8],
    key: &SigningKey,
) {
    let signature: Signature = key.sign(payload);
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let layer = registry.push_blob(repository, payload).await;
    let config_body =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config = registry.push_blob(repository, config_body).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_body.len(),
        },
        "layers": [{
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "digest": layer,
            "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: encoded},
        }],
    });
    let tag = signature_tag(for_digest).expect("sha256 digest");
    registry
        .push_manifest(
            repository,
            &tag,
            OCI_MANIFEST,
            manifest.to_string().as_bytes(),
        )
        .await;
}

fn scanner() -> Scanner {
    let client = ClientConfig {
        backoff: Duration::from_millis(10),
        ..ClientConfig::default()
    };
    Scanner::new(
        Arc::new(Client::new(client, Credentials::none())),
        Arc::new(Cache::in_memory()),
        ScanConfig::default(),
    )
}

fn unsigned_reason(verdict: Option<&Verdict>) -> String {
    match verdict {
        Some(Verdict::Unsigned { reason }) => reason.clone(),
        other => panic!("expected unsigned, got {other:?}"),
    }
}

#[tokio::test]
async fn only_a_signature_by_the_key_over_the_tags_own_digest_counts() {
    let registry = Registry::start();
    let good = registry
        .push_image("app", "1.0.0", &ImageSpec::created("2024-01-01T00:00:00Z"))
        .await;
    let moved = registry
        .push_image("app", "1.1.0", &ImageSpec::created("2024-02-01T00:00:00Z"))
        .await;
    let strangers = registry
        .push_image("app", "1.2.0", &ImageSpec::created("2024-03-01T00:00:00Z"))
        .await;
    registry
        .push_image("app", "1.3.0", &ImageSpec::created("2024-04-01T00:00:00Z"))
        .await;
    let release = signing_key(7);
    let stranger = signing_key(9);
    let repository = registry.image("app");
    push_signature(
        &registry,
        "app",
        &good,
        &payload(&repository, &good),
        &release,
    )
    .await;
    // A real signature, but over another image, put where 1.1.0's goes.
    push_signature(
        &registry,
        "app",
        &moved,
        &payload(&repository, &good),
        &release,
    )
    .await;
    push_signature(
        &registry,
        "app",
        &strangers,
        &payload(&repository, &strangers),
        &stranger,
    )
    .await;

    let scanner = scanner();
    let name: Name = repository.parse().expect("name");
    let info = scanner.poll_repository(&name).await.info;
    let key = VerifyKey::from_pem("release", &public_pem(&release)).expect("key");
    let signatures = Signatures::new(scanner.client().clone());
    let verdicts = signatures
        .verify_tags(&info, std::slice::from_ref(&key))
        .await;

    assert_eq!(
        verdicts.get("1.0.0"),
        Some(&Verdict::Signed {
            key: "release".into()
        })
    );
    let reason = unsigned_reason(verdicts.get("1.1.0"));
    assert!(reason.contains(&format!("is for {good}")), "{reason}");
    let reason = unsigned_reason(verdicts.get("1.2.0"));
    assert!(
        reason.contains("no signature verifies with key release"),
        "{reason}"
    );
    let reason = unsigned_reason(verdicts.get("1.3.0"));
    assert!(
        reason.starts_with("no signature (no tag sha256-"),
        "{reason}"
    );
    // Signature tags are not images to judge.
    assert_eq!(verdicts.len(), 4, "{verdicts:?}");

    // The stranger's key verifies its own signature.
    let theirs = VerifyKey::from_pem("stranger", &public_pem(&stranger)).expect("key");
    let verdict = signatures.verify_tag(&info, "1.2.0", &[key, theirs]).await;
    assert_eq!(
        verdict,
        Verdict::Signed {
            key: "stranger".into()
        }
    );
}

#[tokio::test]
async fn verdicts_of_unchanged_digests_cost_no_request() {
    let registry = Registry::start();
    let digest = registry
        .push_image("app", "1.0.0", &ImageSpec::created("2024-01-01T00:00:00Z"))
        .await;
    let release = signing_key(7);
    let repository = registry.image("app");
    push_signature(
        &registry,
        "app",
        &digest,
        &payload(&repository, &digest),
        &release,
    )
    .await;
    let key = VerifyKey::from_pem("release", &public_pem(&release)).expect("key");
    let scanner = scanner();
    let name: Name = repository.parse().expect("name");
    let signatures = Signatures::new(scanner.client().clone());
    let info = scanner.poll_repository(&name).await.info;
    assert!(
        signatures
            .verify_tag(&info, "1.0.0", std::slice::from_ref(&key))
            .await
            .is_signed()
    );

    let before = scanner.client().counters().total();
    let info = scanner.poll_repository(&name).await.info;
    let verdicts = signatures.verify_tags(&info, &[key]).await;
    assert!(verdicts["1.0.0"].is_signed());
    assert_eq!(
        scanner.client().counters().total() - before,
        1,
        "only the tag listing"
    );
}

#[test]
fn a_key_file_that_is_not_a_p256_public_key_is_refused_by_name() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let file = dir.path().join("release.pub");
    std::fs::write(
        &file,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .expect("write");
    let error = VerifyKey::read(&file).expect_err("not a key");
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
    std::fs::write(&file, public_pem(&signing_key(3))).expect("write");
    assert_eq!(VerifyKey::read(&file).expect("a key").name(), "release");
}
