//! Cosign image signatures, keyed ECDSA P-256, found by tag.
//!
//! What is verified, following the cosign signature specification:
//!
//! - The signatures of an image whose tag points at digest
//!   `sha256:<hex>` are the manifest tagged `sha256-<hex>.sig` in the same
//!   repository (an OCI image manifest).
//! - Each of its layers with media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json` is one signature:
//!   the layer blob is the signed payload, and the layer's annotation
//!   `dev.cosignproject.cosign/signature` holds the signature, base64 of
//!   an ASN.1 DER ECDSA signature over the SHA-256 of the payload bytes.
//! - The payload is simple-signing JSON:
//!   `{"critical": {"identity": {"docker-reference": …}, "image":
//!   {"docker-manifest-digest": "sha256:<hex>"}, "type": "cosign container
//!   image signature"}, "optional": …}`. `type` must be that string and
//!   `docker-manifest-digest` must be the digest the tag points at (the
//!   index digest for a multi-platform tag); the identity and the
//!   optional claims are not used. Key names are compared without regard
//!   to case, as cosign's own reader does.
//!
//! A tag is signed when one layer verifies with one of the keys given.
//! Fetched signature manifests and payloads are kept by digest, and
//! verdicts by (image digest, signature digest, key): a poll that finds no
//! new digest costs no request here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use flux_image::Name;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::client::{Client, DocumentKind, RegistryError};
use crate::scan::RepositoryInfo;

/// The layer annotation that carries the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of a cosign image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The tag cosign stores the signatures of `digest` under
/// (`sha256:<hex>` → `sha256-<hex>.sig`); `None` for a digest of another form.
pub fn signature_tag(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256-{hex}.sig"))
}

/// Whether `tag` is one cosign keeps its objects under (signatures,
/// attestations, SBOMs: `sha256-<hex>.<kind>`), not an image to run.
pub fn is_cosign_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let Some((hex, kind)) = rest.split_once('.') else {
        return false;
    };
    hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(kind, "sig" | "att" | "sbom")
}

/// A public key signatures are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKey {
    name: String,
    key: VerifyingKey,
    id: String,
}

/// A verification key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read the verification key {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Not a PEM `PUBLIC KEY` of an ECDSA P-256 key.
    #[error("{what} is not a PEM ECDSA P-256 public key (cosign.pub): {reason}")]
    Parse {
        /// The file, or the annotation.
        what: String,
        /// Why.
        reason: String,
    },
    /// An annotation names a key that was not given with
    /// `--registry-verify-key`.
    #[error("no verification key named {name:?} (--registry-verify-key gives: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

impl VerifyKey {
    /// A key from PEM text (`-----BEGIN PUBLIC KEY-----`, as `cosign
    /// generate-key-pair` writes `cosign.pub`).
    pub fn from_pem(name: impl Into<String>, pem: &str) -> Result<VerifyKey, KeyError> {
        let name = name.into();
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| KeyError::Parse {
            what: name.clone(),
            reason: e.to_string(),
        })?;
        let point = key.to_encoded_point(true);
        let id = hex::encode(Sha256::digest(point.as_bytes()));
        Ok(VerifyKey { name, key, id })
    }

    /// A key from a file; its name is the file name without its extension
    /// (`/etc/flux/release.pub` is `release`).
    pub fn read(path: &Path) -> Result<VerifyKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        VerifyKey::from_pem(name, &pem).map_err(|error| match error {
            KeyError::Parse { reason, .. } => KeyError::Parse {
                what: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` (DER, or the fixed 64-byte form) over `payload` is this key's.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        if let Ok(der) = DerSignature::try_from(signature) {
            return self.key.verify(payload, &der).is_ok();
        }
        Signature::from_slice(signature).is_ok_and(|fixed| self.key.verify(payload, &fixed).is_ok())
    }
}

/// The keys a `fluxcd.io/verify.<container>` annotation asks for: an
/// inline PEM public key, or the names (comma separated) of keys given with
/// `--registry-verify-key`, or `*` for any of them.
pub fn keys_for_annotation(
    value: &str,
    configured: &[VerifyKey],
) -> Result<Vec<VerifyKey>, KeyError> {
    let value = value.trim();
    if value.starts_with("-----BEGIN") {
        return Ok(vec![VerifyKey::from_pem("inline", value)?]);
    }
    if value == "*" {
        return Ok(configured.to_vec());
    }
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            configured
                .iter()
                .find(|key| key.name == name)
                .cloned()
                .ok_or_else(|| KeyError::Unknown {
                    name: name.to_string(),
                    known: known_names(configured),
                })
        })
        .collect()
}

fn known_names(configured: &[VerifyKey]) -> String {
    if configured.is_empty() {
        return "none".into();
    }
    configured
        .iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a tag's image is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Verdict {
    /// A signature verified with this key.
    Signed {
        /// The key's name.
        key: String,
    },
    /// No signature verified.
    Unsigned {
        /// Why: no signature tag, a signature over another digest, no key matched.
        reason: String,
    },
}

impl Verdict {
    /// Whether the tag may be chosen.
    pub fn is_signed(&self) -> bool {
        matches!(self, Verdict::Signed { .. })
    }

    fn unsigned(reason: impl Into<String>) -> Verdict {
        Verdict::Unsigned {
            reason: reason.into(),
        }
    }
}

/// One signature layer: the payload and its base64 signature.
#[derive(Debug, Clone)]
struct SignatureLayer {
    payload: Vec<u8>,
    signature: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    layers: Vec<RawLayer>,
}

#[derive(Deserialize)]
struct RawLayer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Verifies cosign signatures of tags, keeping what it fetched by digest.
#[derive(Debug)]
pub struct Signatures {
    client: Arc<Client>,
    fetched: Mutex<HashMap<String, Arc<Vec<SignatureLayer>>>>,
    verdicts: Mutex<HashMap<(String, String, String), Verdict>>,
}

impl Signatures {
    /// Signatures read through this client.
    pub fn new(client: Arc<Client>) -> Signatures {
        Signatures {
            client,
            fetched: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict for every image tag of the repository (signature and
    /// other cosign tags left out) whose digest is known.
    pub async fn verify_tags(
        &self,
        info: &RepositoryInfo,
        keys: &[VerifyKey],
    ) -> BTreeMap<String, Verdict> {
        let mut verdicts = BTreeMap::new();
        for tag in &info.tags {
            if is_cosign_tag(&tag.tag) || tag.digest.is_none() {
                continue;
            }
            let verdict = self.verify_tag(info, &tag.tag, keys).await;
            verdicts.insert(tag.tag.clone(), verdict);
        }
        verdicts
    }

    /// Whether `tag` of the repository has a signature that verifies with
    /// one of `keys`. Uses the tags and digests the scanner found: the
    /// signature tag's digest says whether anything is to be fetched.
    pub async fn verify_tag(
        &self,
        info: &RepositoryInfo,
        tag: &str,
        keys: &[VerifyKey],
    ) -> Verdict {
        let (digest, sig_digest) = match locate(info, tag, keys) {
            Ok(found) => found,
            Err(verdict) => return verdict,
        };
        if let Some(known) = self.cached(&digest, &sig_digest, keys) {
            return known;
        }
        let layers = match self.layers(&info.name, &sig_digest).await {
            Ok(layers) => layers,
            // Not kept: the next poll tries again.
            Err(error) => return Verdict::unsigned(format!("signature unreadable: {error}")),
        };
        let mut verdicts = self.verdicts.lock().expect("verdicts never poisoned");
        let judged: Vec<Verdict> = keys
            .iter()
            .map(|key| {
                let verdict = judge(&layers, &digest, key);
                let at = (digest.clone(), sig_digest.clone(), key.id.clone());
                verdicts.insert(at, verdict.clone());
                verdict
            })
            .collect();
        judged
            .iter()
            .find(|v| v.is_signed())
            .or(judged.first())
            .cloned()
            .unwrap_or_else(|| Verdict::unsigned("no verification key"))
    }

    /// The verdict for `tag` from what is known already, without a
    /// request; `None` while its signature has not been verified with
    /// every key (see [`Signatures::verify_tag`]).
    pub fn known(&self, info: &RepositoryInfo, tag: &str, keys: &[VerifyKey]) -> Option<Verdict> {
        match locate(info, tag, keys) {
            Ok((digest, sig_digest)) => self.cached(&digest, &sig_digest, keys),
            Err(verdict) => Some(verdict),
        }
    }

    /// A key's signed verdict if any key has one; an unsigned one when
    /// every key was judged.
    fn cached(&self, digest: &str, sig_digest: &str, keys: &[VerifyKey]) -> Option<Verdict> {
        let verdicts = self.verdicts.lock().expect("verdicts never poisoned");
        let judged: Vec<Option<&Verdict>> = keys
            .iter()
            .map(|key| verdicts.get(&(digest.to_string(), sig_digest.to_string(), key.id.clone())))
            .collect();
        if let Some(signed) = judged.iter().flatten().find(|v| v.is_signed()) {
            return Some((*signed).clone());
        }
        if judged.iter().all(Option::is_some) {
            return judged.first().copied().flatten().cloned();
        }
        None
    }

    /// The signature layers of the signature manifest `digest`, fetched once.
    async fn layers(
        &self,
        name: &Name,
        digest: &str,
    ) -> Result<Arc<Vec<SignatureLayer>>, RegistryError> {
        if let Some(layers) = self
            .fetched
            .lock()
            .expect("fetched never poisoned")
            .get(digest)
        {
            return Ok(layers.clone());
        }
        let body = self
            .client
            .get_by_digest(name, digest, DocumentKind::Manifest)
            .await?;
        let manifest: RawManifest =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Parse {
                what: format!("signature manifest {}@{digest}", name.path()),
                source: crate::manifest::ParseError::Json {
                    what: "signature manifest",
                    message: e.to_string(),
                },
            })?;
        let mut layers = Vec::new();
        for layer in manifest.layers {
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                continue;
            }
            let payload = self
                .client
                .get_by_digest(name, &layer.digest, DocumentKind::Blob)
                .await?;
            layers.push(SignatureLayer {
                payload,
                signature: layer.annotations.get(SIGNATURE_ANNOTATION).cloned(),
            });
        }
        let layers = Arc::new(layers);
        self.fetched
            .lock()
            .expect("fetched never poisoned")
            .insert(digest.to_string(), layers.clone());
        Ok(layers)
    }
}

/// The tag's digest and its signature manifest's digest, from the tags
/// the scanner found; or the verdict when there is nothing to fetch.
fn locate(
    info: &RepositoryInfo,
    tag: &str,
    keys: &[VerifyKey],
) -> Result<(String, String), Verdict> {
    let Some(digest) = info.tag(tag).and_then(|t| t.digest.clone()) else {
        return Err(Verdict::unsigned("the tag's digest is not known yet"));
    };
    let Some(sig_tag) = signature_tag(&digest) else {
        return Err(Verdict::unsigned(format!("digest {digest} is not sha256")));
    };
    let Some(sig) = info.tag(&sig_tag) else {
        return Err(Verdict::unsigned(format!(
            "no signature (no tag {sig_tag})"
        )));
    };
    let Some(sig_digest) = sig.digest.clone() else {
        let why = sig.error.as_deref().unwrap_or("not resolved yet");
        return Err(Verdict::unsigned(format!(
            "signature tag {sig_tag} unreadable: {why}"
        )));
    };
    if keys.is_empty() {
        return Err(Verdict::unsigned("no verification key"));
    }
    Ok((digest, sig_digest))
}

/// The verdict of one key over the layers of a signature manifest.
fn judge(layers: &[SignatureLayer], digest: &str, key: &VerifyKey) -> Verdict {
    if layers.is_empty() {
        return Verdict::unsigned("the signature manifest has no simple-signing layer");
    }
    let mut reason = String::new();
    for layer in layers {
        match check_layer(layer, digest, key) {
            Ok(()) => {
                return Verdict::Signed {
                    key: key.name.clone(),
                };
            }
            // A signature of this key over another image says the most.
            Err(why) if reason.is_empty() || why.starts_with("the signature is for") => {
                reason = why;
            }
            Err(_) => {}
        }
    }
    Verdict::Unsigned { reason }
}

fn check_layer(layer: &SignatureLayer, digest: &str, key: &VerifyKey) -> Result<(), String> {
    let Some(encoded) = &layer.signature else {
        return Err(format!("a signature layer has no {SIGNATURE_ANNOTATION}"));
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the signature is not base64: {e}"))?;
    if !key.verifies(&layer.payload, &signature) {
        return Err(format!("no signature verifies with key {}", key.name));
    }
    // Only a payload the key signed is worth reading.
    let signed = signed_digest(&layer.payload)?;
    if signed != digest {
        return Err(format!("the signature is for {signed}, not {digest}"));
    }
    Ok(())
}

/// `critical.image.docker-manifest-digest` of a simple-signing payload,
/// after checking `critical.type`.
fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed payload is not JSON: {e}"))?;
    let critical = field(&value, "critical").ok_or("the signed payload has no critical section")?;
    let kind = field(critical, "type").and_then(|v| v.as_str());
    if kind != Some(SIGNATURE_TYPE) {
        return Err(format!(
            "the signed payload's critical.type is {kind:?}, not {SIGNATURE_TYPE:?}"
        ));
    }
    field(critical, "image")
        .and_then(|image| field(image, "docker-manifest-digest"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the signed payload names no critical.image.docker-manifest-digest".into())
}

/// A JSON object's field, its name matched without regard to case.
fn field<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_tag_follows_the_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let tag = signature_tag(&digest).expect("sha256");
        assert_eq!(tag, format!("sha256-{}.sig", "ab".repeat(32)));
        assert!(is_cosign_tag(&tag));
        assert!(!is_cosign_tag("1.2.3"));
        assert!(!is_cosign_tag("sha256-short.sig"));
        assert_eq!(signature_tag("sha512:00"), None);
    }

    #[test]
    fn payload_keys_are_read_without_regard_to_case() {
        let payload = br#"{"Critical":{"Image":{"Docker-manifest-digest":"sha256:1"},"Type":"cosign container image signature"}}"#;
        assert_eq!(signed_digest(payload).as_deref(), Ok("sha256:1"));
        let other = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:1"},"type":"something else"}}"#;
        assert!(signed_digest(other).is_err());
    }

    #[test]
    fn an_annotation_naming_an_unknown_key_says_which_there_are() {
        let error = keys_for_annotation("release", &[]).expect_err("none configured");
        assert!(error.to_string().contains("\"release\""), "{error}");
        assert!(error.to_string().contains("none"), "{error}");
    }
}
