//! Reading `git push --porcelain` and pacing retries.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How a push that git ran to the end turned out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// Every ref was updated.
    Pushed,
    /// Someone else moved a ref first (or held its lock): fetch and retry.
    Conflict { reason: String, stderr: String },
    /// Refused for a reason a retry will not fix (hook, protection).
    Rejected { reason: String, stderr: String },
}

/// Rejections that mean "another writer got there first".
const RACES: [&str; 8] = [
    "non-fast-forward",
    "fetch first",
    "stale info",
    "failed to lock",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "atomic push failed",
];

/// Reads the porcelain report of a failed push: `<flag>\t<from>:<to>\t<summary>`
/// lines, `!` marking a rejected ref. `None` when there is no report (the
/// push failed before talking refs: network, authentication).
pub(crate) fn read_push(stdout: &str, stderr: &str) -> Option<PushOutcome> {
    let rejected: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('!'))
        .filter_map(|line| line.split('\t').nth(2))
        .collect();
    if rejected.is_empty() {
        return None;
    }
    let is_race = |summary: &&str| RACES.iter().any(|race| summary.contains(race));
    // With --atomic the refs that were fine report "atomic push failed";
    // the real reason is on another line.
    let decisive = rejected
        .iter()
        .find(|s| !s.contains("atomic push failed"))
        .or(rejected.first())
        .copied()
        .unwrap_or_default();
    let reason = decisive.to_string();
    let stderr = stderr.to_string();
    if rejected.iter().all(is_race) {
        Some(PushOutcome::Conflict { reason, stderr })
    } else {
        let reason = rejected
            .iter()
            .find(|s| !is_race(s))
            .map_or(reason, |s| s.to_string());
        Some(PushOutcome::Rejected { reason, stderr })
    }
}

/// Full-jitter exponential backoff: a random wait up to 25 ms × 2^(attempt-1),
/// at most one second, so two writers that collided do not collide again.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = (25u64 << attempt.saturating_sub(1).min(6)).min(1000);
    Duration::from_millis(random() % (ceiling_ms + 1))
}

/// A random token for names that must not collide (throwaway tags).
pub(crate) fn unique_token() -> String {
    format!("{:016x}", random())
}

fn random() -> u64 {
    // RandomState is seeded from the OS per instance: enough for jitter.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_fast_forward_is_a_race() {
        let stdout =
            "To file:///r.git\n!\tabc:refs/heads/main\t[rejected] (non-fast-forward)\nDone\n";
        assert!(matches!(
            read_push(stdout, ""),
            Some(PushOutcome::Conflict { .. })
        ));
        let fetch_first = "!\tabc:refs/heads/main\t[rejected] (fetch first)\n";
        assert!(matches!(
            read_push(fetch_first, ""),
            Some(PushOutcome::Conflict { .. })
        ));
    }

    #[test]
    fn hook_rejection_is_not_a_race_even_in_an_atomic_push() {
        let stdout = "!\tabc:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n\
                      !\trefs/notes/flux:refs/notes/flux\t[rejected] (atomic push failed)\n";
        assert_eq!(
            read_push(stdout, "hook said no"),
            Some(PushOutcome::Rejected {
                reason: "[remote rejected] (pre-receive hook declined)".into(),
                stderr: "hook said no".into()
            })
        );
    }

    #[test]
    fn no_report_means_the_push_never_reached_the_refs() {
        assert_eq!(read_push("", "fatal: Could not read from remote"), None);
        assert_eq!(
            read_push("To x\n=\tHEAD:refs/heads/main\t[up to date]\n", ""),
            None
        );
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..20 {
            let ceiling = (25u64 << (attempt - 1).min(6)).min(1000);
            assert!(backoff(attempt) <= Duration::from_millis(ceiling));
        }
    }
}
