//! The operator's HTTP endpoint (`[driver_loxilb] http_listen`): `/metrics` for Prometheus, `/healthz`
//! (the process answers; each LoxiLB node as last checked) and `/readyz` (it can serve Octavia: 200, else 503, with each check in JSON).
//! Plain HTTP on an address the operator chooses: keep it on loopback or a management network.

use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

use crate::health::{self, Probes};

pub struct HttpServer {
    pub addr: std::net::SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(addr: &str, probes: Probes) -> Result<HttpServer> {
        let server = tiny_http::Server::http(addr).map_err(|e| anyhow!("listening on {addr} (http_listen): {e}"))?;
        let addr = server.server_addr().to_ip().context("http_listen is not an IP address")?;
        let server = Arc::new(server);
        let thread = {
            let server = Arc::clone(&server);
            std::thread::Builder::new().name("http".into()).spawn(move || serve(&server, &probes))?
        };
        Ok(HttpServer { addr, server, thread: Some(thread) })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, probes: &Probes) {
    for request in server.incoming_requests() {
        let (status, content_type, body) = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => (200, crate::metrics::CONTENT_TYPE, crate::metrics::render()),
            (tiny_http::Method::Get, "/healthz") => (200, "application/json", probes.liveness().to_string() + "\n"),
            (tiny_http::Method::Get, "/readyz") => {
                let checks = probes.run();
                let status = if checks.iter().all(|c| c.ok) { 200 } else { 503 };
                (status, "application/json", health::to_json(&checks).to_string() + "\n")
            }
            (tiny_http::Method::Get, _) => (404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n".to_string()),
            _ => (405, "text/plain; charset=utf-8", "only GET\n".to_string()),
        };
        let header = tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
        let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status).with_header(header));
    }
}
