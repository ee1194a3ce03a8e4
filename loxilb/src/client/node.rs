//! One LoxiLB API base URL, one attempt per request.

use std::sync::Arc;
use std::time::Duration;

use super::observe::{Observer, Quiet};
use crate::api::{Exchange, Reply};
use crate::encode::BASE_PATH;

/// A LoxiLB node's API, e.g. `http://10.0.0.2:11111`. Connections are kept alive between requests.
pub struct Node {
    base: String,
    agent: ureq::Agent,
    observer: Arc<dyn Observer>,
}

impl Node {
    /// `timeout` bounds a whole exchange (connect, send, answer).
    pub fn new(base: impl Into<String>, timeout: Duration) -> Node {
        // Statuses are LoxiLB's answers, which the caller reads (its errors come with 4xx/5xx).
        let agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        Node { base: base.into(), agent, observer: Arc::new(Quiet) }
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Node {
        self.observer = observer;
        self
    }

    /// The base URL, which names the node in metrics and messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn send(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, ureq::Error> {
        let url = format!("{}{BASE_PATH}{path}", self.base);
        let mut response = match method {
            "POST" => self.agent.post(&url).header("Content-Type", "application/json").send(body.unwrap_or("")),
            "PUT" => self.agent.put(&url).header("Content-Type", "application/json").send(body.unwrap_or("")),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        }?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Ok(Reply { status, body })
    }
}

impl Exchange for Node {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        match self.send(method, path, body) {
            Ok(reply) => {
                self.observer.answered(&self.base, reply.status);
                Ok(reply)
            }
            Err(e) => {
                let error = e.to_string();
                self.observer.unanswered(&self.base, error_class(&e), method, path, &error);
                Err(error)
            }
        }
    }
}

/// A request without an HTTP answer, by cause.
fn error_class(e: &ureq::Error) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "timeout",
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        ureq::Error::Io(_) => "io",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "tls",
        _ => "error",
    }
}
