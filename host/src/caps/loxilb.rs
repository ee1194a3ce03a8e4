//! HTTP to the LoxiLB API. A status code is data for the policy; only "no endpoint answered" is an error.
//! Several endpoints are tried in order, starting from the last one that answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::loxilb::{Host, Response};

/// LoxiLB's REST base path.
pub const BASE_PATH: &str = "/netlox/v1";

pub trait LoxiTransport: Send + Sync {
    /// One exchange; `path` is relative to `/netlox/v1`.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String>;
}

pub struct HttpLoxi {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    preferred: AtomicUsize,
    /// Requests served (for metrics and tests).
    pub requests: AtomicUsize,
    last_error: Mutex<Option<String>>,
}

impl HttpLoxi {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        HttpLoxi { endpoints, agent, preferred: AtomicUsize::new(0), requests: AtomicUsize::new(0), last_error: Mutex::new(None) }
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
        let start = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.endpoints.len() {
            let index = (start + i) % self.endpoints.len();
            let base = &self.endpoints[index];
            match self.once(base, method, path, body) {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) => {
                    tracing::warn!("LoxiLB {base} did not answer {method} {path}: {e}");
                    errors.push(format!("{base}: {e}"));
                }
            }
        }
        let message = format!("no LoxiLB endpoint answered ({})", errors.join("; "));
        *self.last_error.lock().unwrap() = Some(message.clone());
        Err(message)
    }
}

impl Host for HostState {
    fn request(&mut self, method: String, path: String, body: Option<String>) -> Result<Response, String> {
        tracing::debug!(policy = %self.grants.log_target, "LoxiLB {method} {path}");
        let (status, body) = self.grants.loxilb.request(&method, &path, body.as_deref())?;
        Ok(Response { status, body })
    }
}
