//! The raw LoxiLB capability of 0.1.0 policies, carried by loxilb-api's client. A status code is data for
//! the policy; only "no endpoint answered" is an error.

use std::sync::Arc;
use std::time::Duration;

use loxilb_api::{Access, Exchange, Failover, Node, Observer, Reply, Retried, Retrying};

pub use loxilb_api::{Retry, BASE_PATH};

pub trait LoxiTransport: Send + Sync {
    /// One exchange; `path` is relative to `/netlox/v1`.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String>;
}

/// What the policies reach is what the host's own probes reach (tests wrap it to stage failures), so the
/// typed API ([`loxilb_api::Loxilb`]) is offered over the capability itself.
impl Exchange for dyn LoxiTransport {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        self.request(method, path, body).map(|(status, body)| Reply { status, body })
    }
}

/// LoxiLB's API endpoints as one failover group, retried within `api_retry_deadline`.
pub struct HttpLoxi {
    client: Retrying<Failover>,
}

impl HttpLoxi {
    /// Plain access: no credentials, certificates checked against the system's trust store.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        HttpLoxi::with_access(endpoints, &Access { timeout, ..Access::default() })
    }

    /// Every endpoint reached with `access` (TLS, credentials, timeout).
    pub fn with_access(endpoints: Vec<String>, access: &Access) -> Self {
        let observer: Arc<dyn Observer> = Arc::new(Recorder);
        let nodes = endpoints.into_iter().map(|base| Node::with_access(base, access).with_observer(Arc::clone(&observer))).collect();
        HttpLoxi { client: Retrying::new(Failover::new(nodes), Retry::NONE).with_observer(observer) }
    }

    /// Retries transient failures (see [`Retry`]).
    pub fn with_retry(self, retry: Retry) -> Self {
        HttpLoxi { client: self.client.with_retry(retry) }
    }

    /// Requests served.
    pub fn requests(&self) -> usize {
        self.client.requests()
    }

    /// Attempts repeated after a transient failure.
    pub fn retries(&self) -> usize {
        self.client.retries()
    }
}

impl LoxiTransport for HttpLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        self.client.exchange(method, path, body).map(|reply| (reply.status, reply.body))
    }
}

/// The client's attempts as metrics (`loxilb_requests` by node and result) and rate-limited warnings:
/// while LoxiLB is down every liveness check and call fails, and one line a minute says so.
struct Recorder;

impl Observer for Recorder {
    fn answered(&self, node: &str, status: u16) {
        crate::metrics::record_loxilb_request(node, if status >= 500 { "http_5xx" } else { "ok" });
    }

    fn unanswered(&self, node: &str, class: &'static str, method: &str, path: &str, error: &str) {
        crate::metrics::record_loxilb_request(node, class);
        crate::warn_limited!(format!("loxilb-unanswered {node}"), "LoxiLB {node} did not answer {method} {path}: {error}");
    }

    fn retrying(&self, method: &str, path: &str, why: Retried<'_>, pause: Duration) {
        match why {
            Retried::Status(status, body) => {
                crate::warn_limited!("loxilb-retry-status", "LoxiLB answered {method} {path} with HTTP {status} ({body}); retrying in {pause:?}")
            }
            Retried::Unanswered(e) => crate::warn_limited!("loxilb-retry-unanswered", "{e}; retrying {method} {path} in {pause:?}"),
        }
    }
}
