//! Manifests, indexes and image configs as the registry serves them, reduced
//! to what the scanner keeps: platforms, config digests, creation times.
//!
//! Four media types carry images: Docker schema 2 and OCI image manifests
//! (one platform, a config blob), Docker manifest lists and OCI indexes (one
//! entry per platform). Docker schema 1 is read for its `created` only.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1, signed; old, read only for its creation time.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema 1, unsigned.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// The `Accept` header for manifest requests: every type we understand.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json;q=0.9, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5, \
application/vnd.docker.distribution.manifest.v1+json;q=0.5";

/// Label preferred over `created` with the use-labels option (OCI annotation key).
pub const LABEL_OCI_CREATED: &str = "org.opencontainers.image.created";
/// Older label with the same meaning (label-schema.org).
pub const LABEL_SCHEMA_BUILD_DATE: &str = "org.label-schema.build-date";

/// An operating system and CPU architecture (with optional variant), as in
/// `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, … when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`, the default wanted platform.
    pub fn linux_amd64() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// Whether an image built for `offered` runs where `self` is wanted: os
    /// and architecture equal, and the variant equal when `self` names one.
    pub fn accepts(&self, offered: &Platform) -> bool {
        self.os == offered.os
            && self.architecture == offered.architecture
            && (self.variant.is_none() || self.variant == offered.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/architecture[/variant], e.g. linux/amd64")]
pub struct PlatformError(pub String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

/// A manifest reduced to what the scanner needs; kept in the cache under its
/// digest, which makes it immutable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Manifest {
    /// One image: its config blob.
    Image {
        /// Digest of the config blob.
        config: String,
    },
    /// A list of images, one per platform.
    Index {
        /// Each entry's manifest digest and platform (absent for entries
        /// such as attestations that name none).
        entries: Vec<IndexEntry>,
    },
    /// Schema 1: the creation time sits in the manifest itself.
    Schema1 {
        /// `created` of the newest history entry.
        created: Option<Timestamp>,
        /// The platform, from the manifest's `architecture`.
        platform: Option<Platform>,
    },
}

/// One entry of an index or manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The entry's manifest digest.
    pub digest: String,
    /// Its platform, when given.
    pub platform: Option<Platform>,
}

/// What is kept of an image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// The config's `created`.
    pub created: Option<Timestamp>,
    /// `org.opencontainers.image.created`, else `org.label-schema.build-date`.
    pub label_created: Option<Timestamp>,
    /// The config's `os`/`architecture`/`variant`, when present.
    pub platform: Option<Platform>,
}

/// A manifest or config body that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The media type is not one we know.
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    /// The body is not the JSON the media type promises.
    #[error("malformed {what}: {message}")]
    Json {
        /// What was being read.
        what: &'static str,
        /// serde_json's message.
        message: String,
    },
}

/// `sha256:<hex>` of `body`.
pub fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    config: Option<RawDescriptor>,
    manifests: Option<Vec<RawDescriptor>>,
    architecture: Option<String>,
    history: Option<Vec<RawHistory>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct RawHistory {
    #[serde(rename = "v1Compatibility")]
    v1_compatibility: String,
}

impl RawPlatform {
    fn into_platform(self) -> Option<Platform> {
        let os = self.os.filter(|s| !s.is_empty() && s != "unknown")?;
        let architecture = self
            .architecture
            .filter(|s| !s.is_empty() && s != "unknown")?;
        Some(Platform {
            os,
            architecture,
            variant: self.variant.filter(|v| !v.is_empty()),
        })
    }
}

/// Reads a manifest body; `content_type` is the response's header, used
/// when the body does not name its media type (OCI makes it optional).
pub fn parse_manifest(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ParseError> {
    let raw: RawManifest = serde_json::from_slice(body).map_err(|e| ParseError::Json {
        what: "manifest",
        message: e.to_string(),
    })?;
    let header_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let media_type = raw.media_type.clone().or(header_type).unwrap_or_default();
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => image_manifest(raw),
        DOCKER_MANIFEST_LIST | OCI_INDEX => Ok(index_manifest(raw)),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Ok(schema1_manifest(raw)),
        // OCI lets mediaType be absent; the shape tells which it is.
        _ if raw.manifests.is_some() => Ok(index_manifest(raw)),
        _ if raw.config.is_some() => image_manifest(raw),
        _ if raw.schema_version == Some(1) => Ok(schema1_manifest(raw)),
        other => Err(ParseError::MediaType(other.to_string())),
    }
}

fn image_manifest(raw: RawManifest) -> Result<Manifest, ParseError> {
    let config = raw.config.ok_or(ParseError::Json {
        what: "image manifest",
        message: "no config descriptor".into(),
    })?;
    Ok(Manifest::Image {
        config: config.digest,
    })
}

fn index_manifest(raw: RawManifest) -> Manifest {
    let entries = raw
        .manifests
        .unwrap_or_default()
        .into_iter()
        .map(|d| IndexEntry {
            digest: d.digest,
            platform: d.platform.and_then(RawPlatform::into_platform),
        })
        .collect();
    Manifest::Index { entries }
}

fn schema1_manifest(raw: RawManifest) -> Manifest {
    let created = raw
        .history
        .as_ref()
        .and_then(|h| h.first())
        .and_then(|h| serde_json::from_str::<RawConfig>(&h.v1_compatibility).ok())
        .and_then(|c| c.created.as_deref().and_then(parse_time));
    let platform = raw.architecture.map(|architecture| Platform {
        os: "linux".into(),
        architecture,
        variant: None,
    });
    Manifest::Schema1 { created, platform }
}

#[derive(Deserialize)]
struct RawConfig {
    created: Option<String>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    config: Option<RawRunConfig>,
}

#[derive(Deserialize)]
struct RawRunConfig {
    #[serde(rename = "Labels")]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Reads an image config blob.
pub fn parse_config(body: &[u8]) -> Result<ImageConfig, ParseError> {
    let raw: RawConfig = serde_json::from_slice(body).map_err(|e| ParseError::Json {
        what: "image config",
        message: e.to_string(),
    })?;
    let labels = raw.config.and_then(|c| c.labels).unwrap_or_default();
    let label_created = [LABEL_OCI_CREATED, LABEL_SCHEMA_BUILD_DATE]
        .iter()
        .find_map(|key| labels.get(*key).and_then(|v| parse_time(v)));
    let platform = RawPlatform {
        os: raw.os,
        architecture: raw.architecture,
        variant: raw.variant,
    }
    .into_platform();
    Ok(ImageConfig {
        created: raw.created.as_deref().and_then(parse_time),
        label_created,
        platform,
    })
}

/// Parses an RFC 3339 time. The zero times that reproducible builds write
/// (`0001-01-01`, the Unix epoch) say nothing about age: they read as unknown.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let time: Timestamp = text.trim().parse().ok()?;
    (time > Timestamp::UNIX_EPOCH).then_some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_manifest_without_media_type_is_recognised_by_shape() {
        let body = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:aa","size":1},"layers":[]}"#;
        assert_eq!(
            parse_manifest(body, Some(OCI_MANIFEST)).unwrap(),
            Manifest::Image {
                config: "sha256:aa".into()
            }
        );
        assert_eq!(
            parse_manifest(body, None).unwrap(),
            Manifest::Image {
                config: "sha256:aa".into()
            }
        );
    }

    #[test]
    fn index_records_every_platform_and_drops_unknown_ones() {
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
          {"digest":"sha256:a","platform":{"os":"linux","architecture":"amd64"}},
          {"digest":"sha256:b","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
          {"digest":"sha256:c","platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let Manifest::Index { entries } = parse_manifest(body, None).unwrap() else {
            panic!("expected an index")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].platform, Some("linux/arm/v7".parse().unwrap()));
        assert_eq!(entries[2].platform, None);
    }

    #[test]
    fn config_gives_created_labels_and_platform() {
        let body = br#"{"created":"2016-11-18T16:00:00Z","os":"linux","architecture":"amd64",
          "config":{"Labels":{"org.label-schema.build-date":"2020-01-02T03:04:05Z"}}}"#;
        let config = parse_config(body).unwrap();
        assert_eq!(
            config.created,
            Some("2016-11-18T16:00:00Z".parse().unwrap())
        );
        assert_eq!(
            config.label_created,
            Some("2020-01-02T03:04:05Z".parse().unwrap())
        );
        assert_eq!(config.platform, Some(Platform::linux_amd64()));
    }

    #[test]
    fn epoch_and_zero_times_read_as_unknown() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert!(parse_time("2024-05-06T07:08:09.123456789Z").is_some());
        assert!(parse_time("2024-05-06T07:08:09+02:00").is_some());
    }

    #[test]
    fn platform_variant_is_only_checked_when_wanted() {
        let any_arm: Platform = "linux/arm".parse().unwrap();
        let v7: Platform = "linux/arm/v7".parse().unwrap();
        assert!(any_arm.accepts(&v7));
        assert!(!v7.accepts(&any_arm));
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn unknown_media_type_is_an_error() {
        let err = parse_manifest(br#"{"mediaType":"text/plain"}"#, None).unwrap_err();
        assert!(err.to_string().contains("text/plain"));
    }
}
