//! Sending again a request that got no answer it can act on, within a deadline.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::observe::{Observer, Quiet, Retried};
use crate::api::{Exchange, Reply};

/// When to send a request again: after a transport failure (refused, reset, timed out — on every node) or
/// HTTP 500/502/503/504. Every request this project makes is safe to repeat, POSTs included: GETs and
/// DELETEs are idempotent (a delete of what is gone is done), and a re-POST of a rule LoxiLB already holds
/// as sent is answered `lbrule-exists`, which is done too — so a POST that LoxiLB applied although its
/// answer was lost is found done by the retry. A probe's re-POST overwrites it with the same.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    /// Time from the first attempt after which no new attempt starts; zero means one attempt.
    pub deadline: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Retry {
    pub const NONE: Retry = Retry { deadline: Duration::ZERO, first_delay: Duration::ZERO, max_delay: Duration::ZERO };

    pub fn within(deadline: Duration) -> Retry {
        Retry { deadline, first_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) }
    }

    /// The pause before attempt `n + 1` (n ≥ 1): exponential, capped, with "equal jitter" (half fixed,
    /// half random) so hosts that failed together do not retry in step.
    pub fn delay(&self, n: u32, entropy: u64) -> Duration {
        let exp = self.first_delay.saturating_mul(1 << n.saturating_sub(1).min(16)).min(self.max_delay);
        let half = exp / 2;
        let jitter = if half.is_zero() { Duration::ZERO } else { Duration::from_nanos(entropy % half.as_nanos().max(1) as u64) };
        half + jitter
    }
}

/// HTTP statuses that say "LoxiLB could not do it now" rather than "this request is wrong".
fn transient(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// An exchange whose requests are retried per [`Retry`].
pub struct Retrying<E> {
    inner: E,
    retry: Retry,
    observer: Arc<dyn Observer>,
    /// Set when a request ran out of its retries without any answer; until an answer comes again requests
    /// get one attempt, so that an operation of many requests does not spend a deadline on each while
    /// LoxiLB is down.
    unreachable: AtomicBool,
    requests: AtomicUsize,
    retries: AtomicUsize,
}

impl<E: Exchange> Retrying<E> {
    pub fn new(inner: E, retry: Retry) -> Retrying<E> {
        Retrying { inner, retry, observer: Arc::new(Quiet), unreachable: AtomicBool::new(false), requests: AtomicUsize::new(0), retries: AtomicUsize::new(0) }
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// Requests served.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Attempts repeated after a transient failure.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }
}

impl<E: Exchange> Exchange for Retrying<E> {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let retrying = !self.retry.deadline.is_zero() && !self.unreachable.load(Ordering::Relaxed);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = self.inner.exchange(method, path, body);
            if outcome.is_ok() {
                self.unreachable.store(false, Ordering::Relaxed);
            }
            let again = match &outcome {
                Ok(reply) => transient(reply.status),
                Err(_) => true,
            };
            let pause = self.retry.delay(attempts, entropy());
            if !again || !retrying || started.elapsed() + pause >= self.retry.deadline {
                return outcome.map_err(|message| {
                    if retrying {
                        self.unreachable.store(true, Ordering::Relaxed);
                    }
                    if attempts > 1 {
                        format!("{message}, {attempts} attempts in {:.1} s", started.elapsed().as_secs_f64())
                    } else {
                        message
                    }
                });
            }
            let why = match &outcome {
                Ok(reply) => Retried::Status(reply.status, reply.body.trim()),
                Err(e) => Retried::Unanswered(e),
            };
            self.observer.retrying(method, path, why, pause);
            self.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(pause);
        }
    }
}

/// Jitter only needs to differ between hosts and calls, not to be unpredictable.
fn entropy() -> u64 {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64);
    let n = CALLS.fetch_add(1, Ordering::Relaxed) as u64;
    (nanos ^ (std::process::id() as u64) << 32 ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_in_their_upper_half() {
        let r = Retry::within(Duration::from_secs(10));
        for (n, full) in [(1, 100), (2, 200), (3, 400), (5, 1600), (6, 2000), (40, 2000)] {
            for entropy in [0, 1, u64::MAX / 3, u64::MAX] {
                let d = r.delay(n, entropy).as_millis() as u64;
                assert!(d >= full / 2 && d < full.max(1), "attempt {n}: {d} ms not in [{}, {full})", full / 2);
            }
        }
        assert_eq!(Retry::NONE.delay(3, 7), Duration::ZERO);
    }
}
