//! fluxd with `--registry-verify-key`: cosign signatures made in the test
//! as the cosign specification lays them out, pushed to the real registry;
//! automation picks only signed tags, the view marks the others unsigned,
//! and releasing an unsigned image needs `--force`.

use base64::Engine as _;
use flux_api::{
    ImageUpdate, JobSpec, JobStatus, PolicyChange, PolicySpec, ReleaseSpec, Signature, Targets,
};
use flux_testkit::daemon::{
    FRONT_END, Fluxd, finished, registry_with_front_end, sock_shop_repo, wait_for,
};
use flux_testkit::git::{BRANCH, BareRepo};
use flux_testkit::registry::Registry;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature as EcdsaSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn fluxd_binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_fluxd"))
}

/// The digest `tag` points at, as the registry serves it.
async fn digest_of(registry: &Registry, repository: &str, tag: &str) -> String {
    let url = format!("http://{}/v2/{repository}/manifests/{tag}", registry.host());
    let response = reqwest::Client::new()
        .head(url)
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .expect("HEAD manifest");
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .expect("a digest header")
        .to_string()
}

/// Signs a payload naming `digest` with `key` and pushes the signature
/// manifest under the `sha256-<hex>.sig` tag of `for_digest`: one
/// simple-signing layer, the signature in the layer's
/// `dev.cosignproject.cosign/signature` annotation.
async fn sign(
    registry: &Registry,
    repository: &str,
    digest: &str,
    for_digest: &str,
    key: &SigningKey,
) {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{repository}", registry.host())},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    })
    .to_string();
    let signature: EcdsaSignature = key.sign(payload.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let layer = registry.push_blob(repository, payload.as_bytes()).await;
    let config_body =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config = registry.push_blob(repository, config_body).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_body.len()},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": layer,
            "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": encoded},
        }],
    });
    let hex = for_digest.strip_prefix("sha256:").expect("sha256 digest");
    registry
        .push_manifest(
            repository,
            &format!("sha256-{hex}.sig"),
            OCI_MANIFEST,
            manifest.to_string().as_bytes(),
        )
        .await;
}

fn release(image: String, force: bool) -> JobSpec {
    JobSpec::Release(ReleaseSpec {
        targets: Targets::Workloads(vec![FRONT_END.into()]),
        exclude: Vec::new(),
        update: ImageUpdate::Image(image),
        force,
        dry_run: false,
        message: None,
        user: None,
        containers: Default::default(),
    })
}

fn manifest_image(repo: &BareRepo) -> String {
    let text = repo.git(&["show", &format!("{BRANCH}:manifests/09-front-end-dep.yaml")]);
    let line = text
        .lines()
        .find(|l| l.contains("image:") && l.contains("front-end"))
        .expect("front-end image line");
    line.split_once("image:")
        .expect("image")
        .1
        .trim()
        .to_string()
}

#[tokio::test]
async fn automation_picks_only_signed_tags_and_an_unsigned_release_needs_force() {
    let registry = registry_with_front_end().await;
    let repository = "sock-shop/front-end";
    let key = SigningKey::from_bytes(&[7u8; 32].into()).expect("a valid scalar");
    let signed = digest_of(&registry, repository, "0.3.13").await;
    sign(&registry, repository, &signed, &signed, &key).await;
    // 0.4.0, the newest, has a signature by the key, but over 0.3.13's image.
    let newest = digest_of(&registry, repository, "0.4.0").await;
    sign(&registry, repository, &signed, &newest, &key).await;
    let keys = tempfile::TempDir::new().expect("temp dir");
    let key_file = keys.path().join("release.pub");
    std::fs::write(
        &key_file,
        key.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("PEM"),
    )
    .expect("key file");

    let image = registry.image(repository);
    let repo = sock_shop_repo(Some(&format!("{image}:0.3.12")));
    let include = format!("--registry-include-image={}/*", registry.host());
    let verify = format!("--registry-verify-key={}", key_file.display());
    let fluxd = Fluxd::start(
        fluxd_binary(),
        &repo,
        &[&include, &verify, "--automation-interval=1h"],
    )
    .await;
    let client = fluxd.client();
    wait_for("the signatures in the view", || async {
        let images = client
            .images(&[FRONT_END.to_string()], None)
            .await
            .expect("images");
        images[0].containers[0]
            .available
            .iter()
            .any(|t| matches!(t.signature, Some(Signature::Signed { .. })))
    })
    .await;
    let images = client
        .images(&[FRONT_END.to_string()], None)
        .await
        .expect("images");
    let available = &images[0].containers[0].available;
    let signature = |tag: &str| {
        available
            .iter()
            .find(|t| t.tag == tag)
            .unwrap_or_else(|| panic!("{tag} listed: {available:?}"))
            .signature
            .clone()
    };
    assert_eq!(
        signature("0.3.13"),
        Some(Signature::Signed {
            key: "release".into()
        })
    );
    match signature("0.4.0") {
        Some(Signature::Unsigned { reason }) => {
            assert!(reason.contains(&format!("is for {signed}")), "{reason}");
        }
        other => panic!("0.4.0 is not signed: {other:?}"),
    }
    assert!(
        !available.iter().any(|t| t.tag.ends_with(".sig")),
        "signature tags are not images: {available:?}"
    );

    let automate = JobSpec::Policy(PolicySpec {
        changes: vec![PolicyChange {
            workload: FRONT_END.into(),
            automated: Some(true),
            ..Default::default()
        }],
        message: None,
        user: None,
    });
    let submitted = client.submit(&automate).await.expect("submitted");
    assert_eq!(
        finished(&client, &submitted.id).await.status,
        JobStatus::Succeeded
    );
    wait_for("automation to release the signed tag", || async {
        manifest_image(&repo) == format!("{image}:0.3.13")
    })
    .await;
    // Never the newer, unsigned one, and "why not?" says so.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(manifest_image(&repo), format!("{image}:0.3.13"));
    wait_for("the explanation to name the unsigned tag", || async {
        let explained = client.explain(FRONT_END).await.expect("fluxd explains");
        explained[0]
            .reasons
            .iter()
            .any(|r| r.kind == flux_api::ReasonKind::Unsigned && r.tag.as_deref() == Some("0.4.0"))
    })
    .await;

    let refused = client
        .submit(&release(format!("{image}:0.4.0"), false))
        .await
        .expect("submitted");
    let job = finished(&client, &refused.id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(
        error.contains("is not signed") && error.contains("--force"),
        "{error}"
    );
    assert_eq!(manifest_image(&repo), format!("{image}:0.3.13"));

    let forced = client
        .submit(&release(format!("{image}:0.4.0"), true))
        .await
        .expect("submitted");
    let job = finished(&client, &forced.id).await;
    assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
    assert_eq!(manifest_image(&repo), format!("{image}:0.4.0"));
}
