//! The raw LoxiLB capability of 0.1.0 policies, carried by loxilb-api's client. A status code is data for
//! the policy; only "no endpoint answered" is an error.

use std::sync::Arc;
use std::time::Duration;

use loxilb_api::{Exchange, Failover, Node, Observer, Reply, Retried, Retrying};

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::loxilb::{Host, Response};

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
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        let observer: Arc<dyn Observer> = Arc::new(Recorder);
        let nodes = endpoints.into_iter().map(|base| Node::new(base, timeout).with_observer(Arc::clone(&observer))).collect();
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

impl Host for HostState {
    fn request(&mut self, method: String, path: String, body: Option<String>) -> Result<Response, String> {
        tracing::debug!(policy = %self.grants.log_target, "LoxiLB {method} {path}");
        let (status, body) = self.grants.loxilb.request(&method, &path, body.as_deref())?;
        Ok(Response { status, body })
    }
}

#[cfg(test)]
mod tests {
    use loxilb_api::{EndpointProbe, LbRule, RuleKey};

    /// Until policies hand the host plans (WIT 0.2.0), the default policy sends its own JSON: it must be
    /// the crate's, byte for byte. The two type sets read each other's serde JSON (the same field names).
    #[test]
    fn the_default_policy_sends_what_the_wire_crate_would() {
        let rule: LbRule = serde_json::from_value(serde_json::json!({
            "service": {"external_ip": "2001:db8::10", "port": 443, "protocol": "tcp", "sel": 2, "mode": 4, "security": 1, "monitor": true,
                "inactive_timeout": 30, "block": 2, "name": "octavia_lb-a_listener-b_pool-c", "probetype": "tcp", "probeport": 8443,
                "probereq": "GET / HTTP/1.0\r\n\r\n", "proberesp": "HTTP/1.0 200", "probe_timeout": 5, "probe_retries": 3,
                "proxyprotocolv2": true, "bgp": true, "host": "example.org"},
            "endpoints": [{"ip": "2001:db8::1:1", "target_port": 8443, "weight": 70}],
            "allowed_sources": ["192.0.2.0/24"], "secondary_ips": ["2001:db8::11"]
        }))
        .unwrap();
        let theirs: guest::loxilb_types::LbRule = serde_json::from_value(serde_json::to_value(&rule).unwrap()).unwrap();
        assert_eq!(guest::execute::rule_json(&theirs).to_string(), loxilb_api::rule_json(&rule).to_string());

        let probe = EndpointProbe { host_name: "10.0.1.1".into(), name: "n".into(), probe_type: "http".into(), probe_port: 80, ..EndpointProbe::default() };
        let theirs: guest::loxilb_types::EndpointProbe = serde_json::from_value(serde_json::to_value(&probe).unwrap()).unwrap();
        assert_eq!(guest::execute::probe_json(&theirs), loxilb_api::probe_json(&probe));

        let key = RuleKey { external_ip: "2001:db8::10".into(), port: 443, protocol: "tcp".into(), block: 2, host: "example.org".into() };
        let theirs: guest::loxilb_types::RuleKey = serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
        assert_eq!(guest::execute::delete_rule_path(&theirs), loxilb_api::delete_rule_path(&key));
    }
}
