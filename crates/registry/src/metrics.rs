//! Counters a daemon can export as metrics: requests by host and status,
//! cache hits and misses. Plain atomics and a small map, no metrics library.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Status recorded for a request that got no HTTP response (timeout,
/// connection refused, TLS failure).
pub const NO_RESPONSE: u16 = 0;

/// Registry requests, by host and HTTP status.
#[derive(Debug, Default)]
pub struct RequestCounters {
    total: AtomicU64,
    by_host_status: Mutex<BTreeMap<(String, u16), u64>>,
}

impl RequestCounters {
    /// Counts one request to `host` answered with `status` ([`NO_RESPONSE`]
    /// when none came).
    pub fn record(&self, host: &str, status: u16) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut map = self
            .by_host_status
            .lock()
            .expect("counter map is never left poisoned: no panics under the lock");
        *map.entry((host.to_string(), status)).or_default() += 1;
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Requests so far to `host`, any status.
    pub fn for_host(&self, host: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((h, _), _)| h == host)
            .map(|(_, n)| n)
            .sum()
    }

    /// A copy of the counts, keyed by (host, status).
    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.by_host_status
            .lock()
            .expect("counter map is never left poisoned: no panics under the lock")
            .clone()
    }
}

/// Cache lookups of manifests and config blobs by digest.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups that had to go to the registry.
    pub misses: AtomicU64,
}

impl CacheCounters {
    /// (hits, misses) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
