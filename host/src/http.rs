//! The operator's HTTP endpoint (`[driver_loxilb] http_listen`): `/metrics` for Prometheus, `/healthz`
//! (the process answers; each LoxiLB node as last checked) and `/readyz` (it can serve Octavia: 200, else 503, with each check in JSON).
//! Plain HTTP on an address the operator chooses: keep it on loopback or a management network.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::health::{self, Probes};

/// Scrapers and probes send GETs without bodies, a few at a time, and Prometheus keeps its connection
/// from one scrape to the next (every 15–60 s): enough for them, and a bound on what anyone else on the
/// network can hold.
pub const LIMITS: httpd::Limits = httpd::Limits { name: "http", max_body: 64 << 10, max_connections: 64, idle: Some(Duration::from_secs(120)) };

pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    server: httpd::Server,
}

impl HttpServer {
    pub fn start(addr: &str, probes: Probes) -> Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| anyhow!("listening on {addr} (http_listen): {e}"))?;
        let handler = Arc::new(move |request: &httpd::Request| answer(&probes, request));
        let server = httpd::Server::start_with(listener, handler, LIMITS).map_err(|e| anyhow!("listening on {addr} (http_listen): {e}"))?;
        Ok(HttpServer { addr: server.addr(), server })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn answer(probes: &Probes, request: &httpd::Request) -> httpd::Answer {
    let (status, content_type, body) = match (request.method.as_str(), request.url.as_str()) {
        ("GET", "/metrics") => (200, crate::metrics::CONTENT_TYPE, crate::metrics::render()),
        ("GET", "/healthz") => (200, "application/json", probes.liveness().to_string() + "\n"),
        ("GET", "/readyz") => {
            let checks = probes.run();
            let status = if checks.iter().all(|c| c.ok) { 200 } else { 503 };
            (status, "application/json", health::to_json(&checks).to_string() + "\n")
        }
        ("GET", _) => (404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n".to_string()),
        _ => (405, "text/plain; charset=utf-8", "only GET\n".to_string()),
    };
    httpd::Answer::Response { status, headers: vec![("Content-Type", content_type.to_string())], body }
}
