//! The registry cache: an embedded `redb` file.
//!
//! Manifests and config blobs are kept under their digests, forever (a
//! digest names one content). Per repository, the tags seen and the digest
//! each pointed to at the last poll, with the bookkeeping of re-checks.
//!
//! The file is a cache, never the truth: a missing, corrupt or incompatible
//! file is replaced by an empty one with a log line, and if even that fails
//! (read-only disk, file locked by another process) the cache lives in
//! memory for this run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::manifest::{ImageConfig, Manifest};
use crate::metrics::CacheCounters;

/// Bumped whenever the stored shapes change; an older file is rebuilt.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const MANIFESTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("manifests");
const CONFIGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("configs");
const REPOSITORIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("repositories");

/// What is known of one repository since the last poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryState {
    /// Tags seen at the last successful tags listing.
    pub tags: BTreeMap<String, TagState>,
    /// When the tags were last listed successfully.
    pub listed_at: Option<Timestamp>,
    /// The last poll's error, when it failed.
    pub error: Option<String>,
}

/// What is known of one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagState {
    /// The digest the tag pointed to (index or manifest); `None` when it
    /// could not be resolved.
    pub digest: Option<String>,
    /// Why the tag could not be resolved or described.
    pub error: Option<String>,
    /// Times the tag was seen pointing somewhere new.
    pub moves: u32,
    /// Next re-check (HEAD) for tags that move; `None` for tags that don't.
    pub recheck_at: Option<Timestamp>,
    /// The current re-check interval, seconds; doubles while the tag holds still.
    pub recheck_interval: u64,
    /// When a poll first found the tag (or found it moved); `None` for tags
    /// already there at the first poll, whose arrival was not seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
}

/// One transaction's worth of cache writes.
#[derive(Debug, Default)]
pub struct CacheWrite {
    /// Manifests to keep, by digest.
    pub manifests: Vec<(String, Manifest)>,
    /// Config blobs to keep, by digest.
    pub configs: Vec<(String, ImageConfig)>,
    /// Repository states to replace, by canonical name.
    pub repositories: Vec<(String, RepositoryState)>,
}

impl CacheWrite {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.configs.is_empty() && self.repositories.is_empty()
    }
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    db: Database,
    path: Option<PathBuf>,
    counters: Arc<CacheCounters>,
}

/// Why a file could not be used as it is.
#[derive(Debug, thiserror::Error)]
enum OpenProblem {
    #[error("{0}")]
    Redb(#[from] redb::Error),
    #[error("schema version {found}, this build uses {SCHEMA_VERSION}")]
    Schema { found: u64 },
}

impl Cache {
    /// Opens (or creates) the cache file at `path`; never fails (see the module docs).
    pub fn open(path: &Path) -> Cache {
        let counters = Arc::new(CacheCounters::default());
        match open_file(path) {
            Ok(db) => {
                return Cache {
                    db,
                    path: Some(path.to_path_buf()),
                    counters,
                };
            }
            Err(OpenProblem::Redb(redb::Error::DatabaseAlreadyOpen)) => {
                tracing::warn!(path = %path.display(), "registry cache is in use by another process; using an in-memory cache for this run");
                return Cache::in_memory();
            }
            Err(problem) if path.exists() => {
                tracing::warn!(path = %path.display(), %problem, "registry cache unusable; rebuilding it");
            }
            Err(_) => {}
        }
        if let Err(error) = std::fs::remove_file(path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), %error, "cannot remove the unusable registry cache");
        }
        match open_file(path) {
            Ok(db) => Cache {
                db,
                path: Some(path.to_path_buf()),
                counters,
            },
            Err(problem) => {
                tracing::warn!(path = %path.display(), %problem, "cannot create the registry cache; using an in-memory cache for this run");
                Cache::in_memory()
            }
        }
    }

    /// A cache that lives for this process only.
    pub fn in_memory() -> Cache {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(redb::Error::from)
            .and_then(|db| {
                initialise(&db)?;
                Ok(db)
            })
            .expect("an in-memory database needs no I/O to create");
        Cache {
            db,
            path: None,
            counters: Arc::new(CacheCounters::default()),
        }
    }

    /// The file, or `None` for an in-memory cache.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Hits and misses of manifest and config lookups.
    pub fn counters(&self) -> Arc<CacheCounters> {
        self.counters.clone()
    }

    /// The manifest stored under `digest`.
    pub fn manifest(&self, digest: &str) -> Option<Manifest> {
        self.counted(self.read(MANIFESTS, digest))
    }

    /// The config blob stored under `digest`.
    pub fn config(&self, digest: &str) -> Option<ImageConfig> {
        self.counted(self.read(CONFIGS, digest))
    }

    /// The manifest under `digest`, not counted as a lookup (for reading
    /// back what a poll stored).
    pub fn stored_manifest(&self, digest: &str) -> Option<Manifest> {
        self.read(MANIFESTS, digest)
    }

    /// The config under `digest`, not counted as a lookup.
    pub fn stored_config(&self, digest: &str) -> Option<ImageConfig> {
        self.read(CONFIGS, digest)
    }

    /// The state of a repository, by canonical name.
    pub fn repository(&self, name: &str) -> Option<RepositoryState> {
        self.read(REPOSITORIES, name)
    }

    fn counted<T>(&self, found: Option<T>) -> Option<T> {
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn read<T: DeserializeOwned>(
        &self,
        table: TableDefinition<'_, &str, &[u8]>,
        key: &str,
    ) -> Option<T> {
        let result = (|| -> Result<Option<T>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = match txn.open_table(table) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(value) = table.get(key)? else {
                return Ok(None);
            };
            Ok(serde_json::from_slice(value.value()).ok())
        })();
        result.unwrap_or_else(|error| {
            tracing::warn!(%error, key, "registry cache read failed; treating as a miss");
            None
        })
    }

    /// Writes a batch in one transaction; a failure is logged and the batch
    /// dropped (the next poll fetches again).
    pub fn write(&self, batch: CacheWrite) {
        if batch.is_empty() {
            return;
        }
        if let Err(error) = self.try_write(&batch) {
            tracing::warn!(%error, "registry cache write failed; continuing without it");
        }
    }

    fn try_write(&self, batch: &CacheWrite) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut manifests = txn.open_table(MANIFESTS)?;
            for (digest, manifest) in &batch.manifests {
                manifests.insert(digest.as_str(), encode(manifest).as_slice())?;
            }
            let mut configs = txn.open_table(CONFIGS)?;
            for (digest, config) in &batch.configs {
                configs.insert(digest.as_str(), encode(config).as_slice())?;
            }
            let mut repositories = txn.open_table(REPOSITORIES)?;
            for (name, state) in &batch.repositories {
                repositories.insert(name.as_str(), encode(state).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("cache values are plain data that always serialise")
}

fn open_file(path: &Path) -> Result<Database, OpenProblem> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| OpenProblem::Redb(e.into()))?;
    }
    let db = Database::create(path).map_err(redb::Error::from)?;
    let found = {
        let txn = db.begin_read().map_err(redb::Error::from)?;
        match txn.open_table(META) {
            Ok(table) => table
                .get("schema")
                .map_err(redb::Error::from)?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(redb::Error::from(e).into()),
        }
    };
    match found {
        Some(SCHEMA_VERSION) => Ok(db),
        Some(found) => Err(OpenProblem::Schema { found }),
        None => {
            initialise(&db)?;
            Ok(db)
        }
    }
}

fn initialise(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert("schema", SCHEMA_VERSION)?;
        txn.open_table(MANIFESTS)?;
        txn.open_table(CONFIGS)?;
        txn.open_table(REPOSITORIES)?;
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_write() -> CacheWrite {
        CacheWrite {
            manifests: vec![(
                "sha256:m".into(),
                Manifest::Image {
                    config: "sha256:c".into(),
                },
            )],
            configs: vec![(
                "sha256:c".into(),
                ImageConfig {
                    created: Some("2020-01-01T00:00:00Z".parse().unwrap()),
                    ..ImageConfig::default()
                },
            )],
            repositories: vec![("docker.io/library/a".into(), RepositoryState::default())],
        }
    }

    #[test]
    fn entries_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/registry.redb");
        Cache::open(&path).write(sample_write());
        let cache = Cache::open(&path);
        assert_eq!(cache.path(), Some(path.as_path()));
        assert!(cache.manifest("sha256:m").is_some());
        assert!(cache.config("sha256:c").unwrap().created.is_some());
        assert!(cache.repository("docker.io/library/a").is_some());
        assert!(cache.manifest("sha256:other").is_none());
        assert_eq!(cache.counters().get(), (2, 1));
    }

    #[test]
    fn corrupt_file_is_rebuilt_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        std::fs::write(
            &path,
            b"this is not a redb file, just some text that is long enough",
        )
        .unwrap();
        let cache = Cache::open(&path);
        assert_eq!(cache.path(), Some(path.as_path()));
        assert!(cache.manifest("sha256:m").is_none());
        cache.write(sample_write());
        drop(cache);
        assert!(Cache::open(&path).manifest("sha256:m").is_some());
    }

    #[test]
    fn file_of_another_schema_version_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        {
            let cache = Cache::open(&path);
            cache.write(sample_write());
            let txn = cache.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema", SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let cache = Cache::open(&path);
        assert!(
            cache.manifest("sha256:m").is_none(),
            "old entries were dropped"
        );
        assert!(cache.path().is_some());
    }

    #[test]
    fn file_in_use_falls_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.redb");
        let first = Cache::open(&path);
        first.write(sample_write());
        let second = Cache::open(&path);
        assert_eq!(second.path(), None);
        second.write(sample_write());
        assert!(
            first.manifest("sha256:m").is_some(),
            "the first file was left alone"
        );
    }

    #[test]
    fn unwritable_place_falls_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let cache = Cache::open(&blocker.join("registry.redb"));
        assert_eq!(cache.path(), None);
        cache.write(sample_write());
        assert!(cache.manifest("sha256:m").is_some());
    }
}
