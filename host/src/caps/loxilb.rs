//! HTTP to the LoxiLB API. A status code is data for the policy; only "no endpoint answered" is an error.
//! Several endpoints are tried in order, starting from the last one that answered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// LoxiLB's REST base path.
pub const BASE_PATH: &str = "/netlox/v1";

pub trait LoxiTransport: Send + Sync {
    /// One exchange; `path` is relative to `/netlox/v1`.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String>;
}

/// Retrying a LoxiLB call that did not get an answer it can act on: a transport failure (refused, reset,
/// timed out) on every endpoint, or HTTP 500/502/503/504. Every call the policies make is safe to repeat:
/// GETs and DELETEs are idempotent (a delete of what is gone is success to the policy), and a re-POST of a
/// rule LoxiLB already holds as sent is answered 409 `lbrule-exists`, which the policy takes as done — so
/// a POST that LoxiLB applied although its answer was lost is found done by the retry.
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
    fn delay(&self, n: u32, entropy: u64) -> Duration {
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

pub struct HttpLoxi {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    preferred: AtomicUsize,
    retry: Retry,
    /// Set when a call ran out of its retries without any endpoint answering; until an endpoint answers
    /// again, calls get one attempt, so an operation with many calls does not spend a deadline on each
    /// (and outrun `guest_call_timeout`) while LoxiLB is down.
    unreachable: AtomicBool,
    /// Requests served (for metrics and tests).
    pub requests: AtomicUsize,
    /// Attempts repeated after a transient failure (for metrics and tests).
    pub retries: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl HttpLoxi {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        HttpLoxi {
            endpoints,
            agent,
            preferred: AtomicUsize::new(0),
            retry: Retry::NONE,
            unreachable: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Retries transient failures (see [`Retry`]).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// One attempt over the endpoints in order, starting from the last one that answered.
    fn attempt(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.endpoints.len() {
            let index = (start + i) % self.endpoints.len();
            let base = &self.endpoints[index];
            match self.once(base, method, path, body) {
                Ok(reply) => {
                    crate::metrics::record_loxilb_request(base, if reply.0 >= 500 { "http_5xx" } else { "ok" });
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) => {
                    crate::metrics::record_loxilb_request(base, error_class(&e));
                    // While LoxiLB is down every liveness check and call fails: one line a minute says so.
                    crate::warn_limited!(format!("loxilb-unanswered {base}"), "LoxiLB {base} did not answer {method} {path}: {e}");
                    errors.push(format!("{base}: {e}"));
                }
            }
        }
        Err(format!("no LoxiLB endpoint answered ({})", errors.join("; ")))
    }

    fn once(&self, base: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), ureq::Error> {
        let url = format!("{base}{BASE_PATH}{path}");
        let mut response = match (method, body) {
            ("POST", body) => self.agent.post(&url).header("Content-Type", "application/json").send(body.unwrap_or("")),
            ("PUT", body) => self.agent.put(&url).header("Content-Type", "application/json").send(body.unwrap_or("")),
            ("DELETE", _) => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        }?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        Ok((status, text))
    }
}

impl LoxiTransport for HttpLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let retrying = !self.retry.deadline.is_zero() && !self.unreachable.load(Ordering::Relaxed);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = self.attempt(method, path, body);
            if outcome.is_ok() {
                self.unreachable.store(false, Ordering::Relaxed);
            }
            let again = match &outcome {
                Ok((status, _)) => transient(*status),
                Err(_) => true,
            };
            let pause = self.retry.delay(attempts, entropy());
            if !again || !retrying || started.elapsed() + pause >= self.retry.deadline {
                if let Err(message) = &outcome {
                    if retrying {
                        self.unreachable.store(true, Ordering::Relaxed);
                    }
                    let message =
                        if attempts > 1 { format!("{message}, {attempts} attempts in {:.1} s", started.elapsed().as_secs_f64()) } else { message.clone() };
                    *self.last_error.lock().unwrap() = Some(message.clone());
                    return Err(message);
                }
                return outcome;
            }
            match &outcome {
                Ok((status, reply)) => {
                    crate::warn_limited!("loxilb-retry-status", "LoxiLB answered {method} {path} with HTTP {status} ({}); retrying in {pause:?}", reply.trim())
                }
                Err(e) => crate::warn_limited!("loxilb-retry-unanswered", "{e}; retrying {method} {path} in {pause:?}"),
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(pause);
        }
    }
}

/// The `result` label of a LoxiLB request that got no HTTP answer.
fn error_class(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        ureq::Error::Io(_) => "io",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "tls",
        _ => "error",
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
