//! The operator's HTTP endpoint (`http_listen`: `/metrics`, `/healthz`, `/readyz`) while its clients keep
//! their connections, as Prometheus does.

use std::sync::Arc;
use std::time::Duration;

use host::health::Probes;
use host::http::HttpServer;
use host::octavia::agent::DriverAgent;
use integration_tests::*;

/// The endpoint of `h`'s service, on a loopback port, without a driver-agent.
fn endpoint(h: &TestHost) -> HttpServer {
    let loxilb: Arc<dyn host::loxilb::LoxiTransport> = Arc::new(host::loxilb::HttpLoxi::new(vec![h.sim.url()], Duration::from_secs(5)));
    let probes = Probes { service: Arc::clone(&h.service), loxilb, agent: DriverAgent { status: None, stats: None, get: None }, mapping_path: None };
    HttpServer::start("127.0.0.1:0", probes).unwrap()
}

#[test]
fn every_client_is_answered_while_others_keep_their_connections() {
    // tiny_http, which served the endpoint before, queued a connection accepted while another was being
    // handed to an idle thread until some connection closed: with scrapers keeping theirs, a probe went
    // unanswered until its timeout.
    let h = test_host(&default_policy(), Default::default(), settings());
    let server = endpoint(&h);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(64)
        .max_idle_connections_per_host(64)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    for round in 0..20 {
        let clients: Vec<_> = ["/metrics", "/healthz"]
            .iter()
            .cycle()
            .take(32)
            .map(|path| {
                let (agent, url) = (agent.clone(), format!("http://{}{path}", server.addr));
                std::thread::spawn(move || {
                    // Read to the end, so that the connection can be used again.
                    let mut answer = agent.get(&url).call().map_err(|e| e.to_string())?;
                    answer.body_mut().read_to_string().map_err(|e| e.to_string())?;
                    Ok::<u16, String>(answer.status().as_u16())
                })
            })
            .collect();
        for client in clients {
            assert_eq!(client.join().unwrap(), Ok(200), "round {round}");
        }
    }
}

#[test]
fn the_endpoint_answers_what_it_serves_and_refuses_the_rest() {
    let h = test_host(&default_policy(), Default::default(), settings());
    let server = endpoint(&h);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str| {
        let mut answer = agent.get(&format!("http://{}{path}", server.addr)).call().unwrap();
        let content_type = answer.headers().get("Content-Type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (answer.status().as_u16(), content_type, answer.body_mut().read_to_string().unwrap())
    };
    let (status, content_type, body) = get("/metrics");
    assert_eq!((status, content_type.as_str()), (200, host::metrics::CONTENT_TYPE));
    assert!(body.contains("loxilb_octavia_"), "{body}");
    let (status, content_type, body) = get("/healthz");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "ok");
    let (status, _, body) = get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["checks"]["loxilb"]["ok"], true);
    // LoxiLB gone: not ready, saying why.
    drop(h.sim);
    let (status, _, body) = get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["checks"]["loxilb"]["ok"], false);
    assert_eq!(get("/nothing").0, 404);
    let answer = agent.post(&format!("http://{}/metrics", server.addr)).send_empty().unwrap();
    assert_eq!(answer.status().as_u16(), 405);
}

#[test]
fn connections_past_the_endpoint_s_limit_are_refused_and_bodies_are_bounded() {
    use std::io::{Read, Write};
    let h = test_host(&default_policy(), Default::default(), settings());
    let server = endpoint(&h);
    let send = |raw: &[u8]| {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(raw).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let body = vec![b'x'; host::http::LIMITS.max_body + 1];
    let mut post = format!("GET /healthz HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    post.extend_from_slice(&body);
    assert!(send(&post).starts_with("HTTP/1.1 413"), "a body over the limit was read");
    // Idle connections anyone on the network holds open.
    let held: Vec<std::net::TcpStream> = (0..host::http::LIMITS.max_connections).map(|_| std::net::TcpStream::connect(server.addr).unwrap()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let answer = send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
        if answer.starts_with("HTTP/1.1 503") || std::time::Instant::now() > deadline {
            break answer;
        }
    };
    assert!(refused.contains("too many connections"), "{refused}");
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !send(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200") {
        assert!(std::time::Instant::now() < deadline, "the endpoint did not serve again once the idle connections went");
        std::thread::sleep(Duration::from_millis(20));
    }
}
