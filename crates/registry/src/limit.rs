//! Per-host politeness: a token bucket whose rate halves on every 429 and
//! creeps back after a quiet period, a pause for `Retry-After`, and a cap on
//! requests in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How hard one registry host may be pressed.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLimits {
    /// Requests per second, sustained (`--registry-rps`); infinite for none.
    pub rps: f64,
    /// Requests that may go at once after a lull (`--registry-burst`).
    pub burst: u32,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// The rate never drops below this after 429s.
    pub min_rps: f64,
    /// After this long without a 429, the rate grows by half again, up to `rps`.
    pub quiet_period: Duration,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            rps: 50.0,
            burst: 10,
            concurrency: 8,
            min_rps: 0.1,
            quiet_period: Duration::from_secs(30),
        }
    }
}

/// The gate every request to one host passes.
#[derive(Debug)]
pub struct HostGate {
    limits: HostLimits,
    bucket: Mutex<Bucket>,
    in_flight: Arc<Semaphore>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    last_throttle: Option<Instant>,
}

impl HostGate {
    /// A gate with full bucket.
    pub fn new(limits: HostLimits) -> HostGate {
        let bucket = Bucket {
            tokens: f64::from(limits.burst.max(1)),
            rate: limits.rps,
            refilled: Instant::now(),
            paused_until: None,
            last_throttle: None,
        };
        HostGate {
            in_flight: Arc::new(Semaphore::new(limits.concurrency.max(1))),
            bucket: Mutex::new(bucket),
            limits,
        }
    }

    /// Waits for a token and a concurrency slot; the slot is held until the
    /// returned permit drops.
    pub async fn enter(&self) -> OwnedSemaphorePermit {
        loop {
            let wait = self.take_token();
            match wait {
                None => break,
                Some(delay) => tokio::time::sleep(delay).await,
            }
        }
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Takes a token, or says how long to wait for one.
    fn take_token(&self) -> Option<Duration> {
        let mut bucket = self.lock();
        let now = Instant::now();
        if let Some(until) = bucket.paused_until {
            if until > now {
                return Some(until - now);
            }
            bucket.paused_until = None;
        }
        self.recover(&mut bucket, now);
        if bucket.rate.is_infinite() {
            return None;
        }
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        let capacity = f64::from(self.limits.burst.max(1));
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return None;
        }
        let missing = 1.0 - bucket.tokens;
        Some(Duration::from_secs_f64(missing / bucket.rate).max(Duration::from_millis(1)))
    }

    /// Grows a throttled rate back by half per quiet period.
    fn recover(&self, bucket: &mut Bucket, now: Instant) {
        let Some(last) = bucket.last_throttle else {
            return;
        };
        if now.duration_since(last) < self.limits.quiet_period {
            return;
        }
        bucket.rate = (bucket.rate * 1.5).min(self.limits.rps);
        if bucket.rate >= self.limits.rps {
            bucket.last_throttle = None;
        } else {
            bucket.last_throttle = Some(now);
        }
    }

    /// A 429 came back: pause for `retry_after` (or a second) and halve the rate.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let mut bucket = self.lock();
        let now = Instant::now();
        let pause = retry_after.unwrap_or(Duration::from_secs(1));
        bucket.paused_until = Some(now + pause);
        let current = if bucket.rate.is_infinite() {
            // An unlimited host that throttles us gets a finite rate from now on.
            100.0
        } else {
            bucket.rate
        };
        bucket.rate = (current / 2.0).max(self.limits.min_rps);
        bucket.tokens = 0.0;
        bucket.refilled = now + pause;
        bucket.last_throttle = Some(now);
    }

    /// How long requests are paused for by a `Retry-After`, if they are.
    pub fn paused_for(&self) -> Option<Duration> {
        let bucket = self.lock();
        let now = Instant::now();
        bucket.paused_until.filter(|u| *u > now).map(|u| u - now)
    }

    /// The rate in force now, requests per second.
    pub fn current_rate(&self) -> f64 {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .expect("bucket is never left poisoned: no panics under the lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rps: f64, burst: u32) -> HostLimits {
        HostLimits {
            rps,
            burst,
            concurrency: 4,
            min_rps: 0.5,
            quiet_period: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_goes_at_once_then_the_rate_holds() {
        let gate = HostGate::new(limits(10.0, 5));
        let start = Instant::now();
        for _ in 0..15 {
            drop(gate.enter().await);
        }
        let elapsed = start.elapsed();
        // 5 at once, the next 10 at 10 per second.
        assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(1100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_pauses_for_retry_after_and_halves_the_rate() {
        let gate = HostGate::new(limits(10.0, 1));
        drop(gate.enter().await);
        gate.throttled(Some(Duration::from_secs(3)));
        assert_eq!(gate.current_rate(), 5.0);
        let start = Instant::now();
        drop(gate.enter().await);
        assert!(start.elapsed() >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_recovers_gradually_after_quiet_periods() {
        let gate = HostGate::new(limits(10.0, 1));
        gate.throttled(Some(Duration::ZERO));
        gate.throttled(Some(Duration::ZERO));
        assert_eq!(gate.current_rate(), 2.5);
        tokio::time::advance(Duration::from_secs(11)).await;
        drop(gate.enter().await);
        assert_eq!(gate.current_rate(), 3.75);
        tokio::time::advance(Duration::from_secs(11)).await;
        drop(gate.enter().await);
        assert!((gate.current_rate() - 5.625).abs() < 1e-9);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(11)).await;
            drop(gate.enter().await);
        }
        assert_eq!(gate.current_rate(), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let gate = HostGate::new(HostLimits {
            concurrency: 2,
            rps: f64::INFINITY,
            ..HostLimits::default()
        });
        let a = gate.enter().await;
        let _b = gate.enter().await;
        let third = tokio::time::timeout(Duration::from_secs(1), gate.enter()).await;
        assert!(
            third.is_err(),
            "a third request entered while two were in flight"
        );
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(1), gate.enter()).await;
        assert!(third.is_ok());
    }
}
