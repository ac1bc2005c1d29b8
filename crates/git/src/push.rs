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
const RACES: [&str; 9] = [
    "non-fast-forward",
    "fetch first",
    "stale info",
    "failed to lock",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "atomic push failed",
    // The server's ref transaction found the branch moved under its lock
    // ("cannot lock ref …: is at X but expected Y").
    "atomic transaction failed",
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

/// Full-jitter backoff: a random wait up to 5 ms × 2^(attempt-1), at most
/// 20 ms. The jitter keeps two writers that collided from colliding again.
/// The ceiling stays low on purpose: the writer we lost to may be busy with
/// more commits, and its pause between them ([`polite_pause`]) is our turn;
/// a loser that sleeps longer than that pause loses every round.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(random() % (backoff_ceiling_ms(attempt) + 1))
}

fn backoff_ceiling_ms(attempt: u32) -> u64 {
    (5u64 << attempt.saturating_sub(1).min(5)).min(20)
}

/// How soon after our own push a next write counts as back-to-back (the
/// next job of a queue starts within milliseconds).
pub(crate) const POLITE_WINDOW: Duration = Duration::from_millis(100);

/// A random pause of up to 150 ms between back-to-back writes: longer than it
/// takes a writer that lost a race to notice and redo its change, on most
/// draws.
pub(crate) fn polite_pause() -> Duration {
    Duration::from_millis(random() % 151)
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
    fn ref_moved_under_the_servers_lock_is_a_race() {
        let stdout = "To file:///r.git\n!\tabc:refs/heads/main\t[remote rejected] (atomic transaction failed)\nDone\n";
        let stderr =
            "remote: error: cannot lock ref 'refs/heads/main': is at e3c7 but expected 0b86";
        assert!(matches!(
            read_push(stdout, stderr),
            Some(PushOutcome::Conflict { .. })
        ));
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
            let ceiling = backoff_ceiling_ms(attempt);
            assert!(ceiling <= 20);
            assert!(ceiling >= backoff_ceiling_ms(attempt.saturating_sub(1)));
            assert!(backoff(attempt) <= Duration::from_millis(ceiling));
        }
    }
}
