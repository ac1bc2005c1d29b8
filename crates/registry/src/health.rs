//! Whether a registry host answers, and when to poll it next.
//!
//! Each host is polled on its own clock. A poll of a host (its
//! repositories together, or one repository a notification named) either
//! got an answer from the host, of whatever status, or got none at all:
//! no connection, a timeout, only 5xx. After polls with no answer, the
//! host is polled less often — the poll interval after the first, then
//! twice as long after each further one, up to [`BACKOFF_FACTOR`] times
//! the interval — and it is said once that it became unreachable and once
//! that it answers again, never at every poll.

use std::time::Duration;

/// The longest wait between polls of a host that does not answer, as a
/// multiple of the poll interval.
pub const BACKOFF_FACTOR: u32 = 8;

/// A change in whether a host answers, to be said once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// The first poll with no answer after answers (or at the start).
    Unreachable,
    /// The first answer after polls with none.
    Reachable,
}

/// What the polls of one host showed so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostHealth {
    /// Polls in a row that got no answer.
    silent_polls: u32,
}

impl HostHealth {
    /// A host not polled yet, taken to answer.
    pub fn new() -> HostHealth {
        HostHealth::default()
    }

    /// Records one poll of the host: `answered` when at least one of its
    /// requests got an HTTP answer. Says what changed, when something did.
    pub fn observe(&mut self, answered: bool) -> Option<HealthChange> {
        if answered {
            let was_unreachable = self.is_unreachable();
            self.silent_polls = 0;
            return was_unreachable.then_some(HealthChange::Reachable);
        }
        self.silent_polls = self.silent_polls.saturating_add(1);
        (self.silent_polls == 1).then_some(HealthChange::Unreachable)
    }

    /// Whether the last poll got no answer.
    pub fn is_unreachable(&self) -> bool {
        self.silent_polls > 0
    }

    /// How long after a poll ends the next one starts, for a host polled
    /// every `interval` when it answers: the interval after one silent
    /// poll, doubling with each further one, at most
    /// [`BACKOFF_FACTOR`] × `interval`.
    pub fn wait_after(&self, interval: Duration) -> Duration {
        let doublings = self
            .silent_polls
            .saturating_sub(1)
            .min(BACKOFF_FACTOR.ilog2());
        interval.saturating_mul(1 << doublings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(60);

    #[test]
    fn an_answering_host_is_polled_on_the_interval_and_nothing_is_said() {
        let mut health = HostHealth::new();
        for _ in 0..5 {
            assert_eq!(health.observe(true), None);
            assert_eq!(health.wait_after(INTERVAL), INTERVAL);
        }
        assert!(!health.is_unreachable());
    }

    #[test]
    fn a_silent_host_waits_twice_as_long_after_each_poll_up_to_the_cap() {
        let mut health = HostHealth::new();
        let waits: Vec<u64> = (0..7)
            .map(|_| {
                health.observe(false);
                health.wait_after(INTERVAL).as_secs() / 60
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(
            health.wait_after(INTERVAL),
            INTERVAL * BACKOFF_FACTOR,
            "capped at the factor"
        );
    }

    #[test]
    fn unreachable_is_said_once_when_answers_stop_and_reachable_once_when_they_return() {
        let mut health = HostHealth::new();
        let said: Vec<Option<HealthChange>> = [true, false, false, false, true, true, false, true]
            .into_iter()
            .map(|answered| health.observe(answered))
            .collect();
        assert_eq!(
            said,
            [
                None,
                Some(HealthChange::Unreachable),
                None,
                None,
                Some(HealthChange::Reachable),
                None,
                Some(HealthChange::Unreachable),
                Some(HealthChange::Reachable),
            ]
        );
    }

    #[test]
    fn a_host_silent_from_the_start_is_said_unreachable_once() {
        let mut health = HostHealth::new();
        assert_eq!(health.observe(false), Some(HealthChange::Unreachable));
        assert_eq!(health.observe(false), None);
        assert!(health.is_unreachable());
    }

    #[test]
    fn an_answer_ends_the_backoff() {
        let mut health = HostHealth::new();
        for _ in 0..10 {
            health.observe(false);
        }
        assert_eq!(health.wait_after(INTERVAL), INTERVAL * 8);
        health.observe(true);
        assert_eq!(health.wait_after(INTERVAL), INTERVAL);
    }

    #[test]
    fn long_intervals_do_not_overflow() {
        let mut health = HostHealth::new();
        for _ in 0..100 {
            health.observe(false);
        }
        assert_eq!(health.wait_after(Duration::MAX), Duration::MAX, "saturates");
    }
}
