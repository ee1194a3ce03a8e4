//! One LoxiLB API base URL, one attempt per request.

use std::sync::Arc;
use std::time::Duration;

use super::auth::{Credentials, Session};
use super::observe::{Observer, Quiet};
use super::resolve::LiteralFirst;
use super::secret::redact_userinfo;
use super::tls::Tls;
use crate::api::{Exchange, Reply};
use crate::encode::BASE_PATH;

/// Idle connections kept per node: as many as the host's apply workers, each with at most one request
/// in flight.
pub const KEPT_CONNECTIONS: usize = 64;

/// How the client reaches every node: per-request timeout, TLS and credentials.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Bounds a whole exchange (connect, send, answer); zero means the default of 5 s.
    pub timeout: Duration,
    pub tls: Tls,
    pub credentials: Credentials,
}

/// A LoxiLB node's API, e.g. `http://10.0.0.2:11111`. Connections are kept alive between requests.
pub struct Node {
    /// The base URL requests go to.
    url: String,
    /// `url` as messages and metrics show it (without any userinfo).
    base: String,
    agent: ureq::Agent,
    session: Session,
    /// What LoxiLB's certificate is checked against, for messages.
    trust: String,
    observer: Arc<dyn Observer>,
}

impl Node {
    /// Plain access: no credentials, certificates checked against the system's trust store.
    pub fn new(base: impl Into<String>, timeout: Duration) -> Node {
        Node::with_access(base, &Access { timeout, ..Access::default() })
    }

    pub fn with_access(base: impl Into<String>, access: &Access) -> Node {
        let timeout = if access.timeout.is_zero() { Duration::from_secs(5) } else { access.timeout };
        // Statuses are LoxiLB's answers, which the caller reads (its errors come with 4xx/5xx). A
        // connection is kept for every request that may be in flight at once (ureq keeps 3 per host by
        // default): operations on different load balancers reach a node concurrently, and each request
        // beyond the kept ones paid a new TCP connection, and with TLS a handshake.
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(access.tls.config.clone())
            .max_idle_connections(KEPT_CONNECTIONS)
            .max_idle_connections_per_host(KEPT_CONNECTIONS)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            LiteralFirst::<ureq::unversioned::resolver::DefaultResolver>::default(),
        );
        let base = base.into();
        Node {
            base: redact_userinfo(&base),
            url: base,
            agent,
            session: Session::new(access.credentials.clone()),
            trust: access.tls.trust.clone(),
            observer: Arc::new(Quiet),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Node {
        self.observer = observer;
        self
    }

    /// The base URL, which names the node in metrics and messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn send(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Result<Reply, ureq::Error> {
        fn authorized<B>(request: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
            match token {
                Some(token) => request.header("Authorization", token),
                None => request,
            }
        }
        let url = format!("{}{BASE_PATH}{path}", self.url);
        let json = |r: ureq::RequestBuilder<ureq::typestate::WithBody>| authorized(r, token).header("Content-Type", "application/json");
        let mut response = match method {
            "POST" => json(self.agent.post(&url)).send(body.unwrap_or("")),
            "PUT" => json(self.agent.put(&url)).send(body.unwrap_or("")),
            "DELETE" => authorized(self.agent.delete(&url), token).call(),
            _ => authorized(self.agent.get(&url), token).call(),
        }?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Ok(Reply { status, body })
    }

    /// Why no answer came, with what to check when it is the TLS handshake.
    fn describe(&self, e: &ureq::Error) -> String {
        match error_class(e) {
            "tls" => format!(
                "TLS with LoxiLB failed: {e} (LoxiLB's certificate is checked against {}; set api_ca_file to the CA that signed it, and api_client_cert_file with api_client_key_file if LoxiLB asks for a client certificate)",
                self.trust
            ),
            _ => e.to_string(),
        }
    }
}

impl Exchange for Node {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        let outcome = self.session.exchange(|token| self.send(method, path, body, token), |login| self.send("POST", "/auth/login", Some(login), None));
        match outcome {
            Ok(reply) => {
                self.observer.answered(&self.base, reply.status);
                Ok(reply)
            }
            Err(e) => {
                let error = self.describe(&e);
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
        // ureq hands rustls's handshake errors (a certificate refused either way) on as I/O errors.
        ureq::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) => "tls",
        ureq::Error::Io(_) => "io",
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "tls",
        _ => "error",
    }
}
