//! The HTTP client against local servers: retries within the deadline, the latch while nothing answers,
//! failover between nodes, and what the observer is told.

#![cfg(feature = "client")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loxilb_api::{Cluster, Exchange, LbRule, Loxilb, LoxilbCall, Node, Observer, Retried, Retry, Retrying, ServiceArgs, WireError};

/// A LoxiLB answering from a script (the last answer repeats), recording "METHOD url" of each request.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    server: httpd::Server,
}

impl Server {
    fn start(script: &[(u16, &str)]) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Vec<(u16, String)> = script.iter().map(|(s, b)| (*s, b.to_string())).collect();
        let recorded = Arc::clone(&seen);
        let server = serving(move |request| {
            let mut seen = recorded.lock().unwrap();
            let (status, body) = &script[seen.len().min(script.len() - 1)];
            seen.push(format!("{} {}", request.method, request.url));
            httpd::Answer::Response { status: *status, headers: Vec::new(), body: body.clone() }
        });
        Server { url: format!("http://{}", server.addr()), seen, server }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// A server on a loopback port, answering with `answer` (a thread per connection, as LoxiLB's Go server).
fn serving(answer: impl Fn(&httpd::Request) -> httpd::Answer + Send + Sync + 'static) -> httpd::Server {
    httpd::Server::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(answer)).unwrap()
}

/// A base URL nothing listens on: every request is refused at once.
fn refusing_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

const SUCCESS: &str = r#"{"result":"Success"}"#;

fn upsert() -> LoxilbCall {
    LoxilbCall::UpsertRule(LbRule {
        service: ServiceArgs { external_ip: "10.0.0.1".into(), port: 80, protocol: "tcp".into(), ..ServiceArgs::default() },
        ..LbRule::default()
    })
}

fn node(url: &str) -> Node {
    Node::new(url, Duration::from_secs(2))
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Observer for Recorder {
    fn answered(&self, node: &str, status: u16) {
        self.0.lock().unwrap().push(format!("answered {node} {status}"));
    }
    fn unanswered(&self, node: &str, class: &'static str, method: &str, path: &str, _: &str) {
        self.0.lock().unwrap().push(format!("unanswered {node} {class} {method} {path}"));
    }
    fn retrying(&self, method: &str, path: &str, why: Retried<'_>, _: Duration) {
        let why = match why {
            Retried::Status(status, body) => format!("{status} {body}"),
            Retried::Unanswered(_) => "unanswered".into(),
        };
        self.0.lock().unwrap().push(format!("retrying {method} {path} after {why}"));
    }
}

#[test]
fn a_500_then_200_is_retried_and_the_post_succeeds() {
    let server = Server::start(&[(500, r#"{"code":500,"result":"transient"}"#), (200, SUCCESS)]);
    let recorder = Arc::new(Recorder::default());
    let observer: Arc<dyn Observer> = recorder.clone();
    let client = Retrying::new(node(&server.url).with_observer(Arc::clone(&observer)), Retry::within(Duration::from_secs(3))).with_observer(observer);
    client.apply(&upsert()).unwrap();
    assert_eq!(server.seen(), ["POST /netlox/v1/config/loadbalancer", "POST /netlox/v1/config/loadbalancer"]);
    assert_eq!((client.requests(), client.retries()), (1, 1));
    let base = &server.url;
    assert_eq!(
        *recorder.0.lock().unwrap(),
        [
            format!("answered {base} 500"),
            r#"retrying POST /config/loadbalancer after 500 {"code":500,"result":"transient"}"#.to_string(),
            format!("answered {base} 200")
        ]
    );
}

#[test]
fn a_refusal_that_is_not_transient_is_not_retried() {
    let server = Server::start(&[(400, r#"{"code":400,"result":"endpoints-range error"}"#), (200, SUCCESS)]);
    let client = Retrying::new(node(&server.url), Retry::within(Duration::from_secs(3)));
    let e = client.apply(&upsert()).unwrap_err();
    assert_eq!(e, WireError::Refused { request: "POST /config/loadbalancer".into(), status: 400, result: "endpoints-range error".into() });
    assert_eq!((server.seen().len(), client.retries()), (1, 0));
}

#[test]
fn a_loxilb_answering_503_is_retried_until_the_deadline_and_no_longer() {
    let server = Server::start(&[(503, r#"{"code":503,"result":"not-ready"}"#)]);
    let client = Retrying::new(node(&server.url), Retry::within(Duration::from_millis(700)));
    let started = Instant::now();
    let e = client.apply(&upsert()).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, WireError::Refused { status: 503, .. }), "{e}");
    // Pauses of 50–100 and 100–200 ms fit in any case; no attempt starts past the deadline.
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(1000), "{took:?}");
    assert!(server.seen().len() >= 3 && client.retries() >= 2, "{:?}", server.seen());
    // An answer, even 503, is not "unreachable": the next request is retried again.
    let before = client.retries();
    assert!(client.apply(&upsert()).is_err());
    assert!(client.retries() > before);
}

#[test]
fn after_a_deadline_without_any_answer_requests_are_tried_once_until_one_is_answered() {
    let client = Retrying::new(node(&refusing_url()), Retry::within(Duration::from_millis(500)));
    let started = Instant::now();
    let e = client.reachable().unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(800) && client.retries() >= 2, "{took:?}");
    assert!(matches!(&e, WireError::Unanswered { reason, .. } if reason.contains("attempts in")), "{e}");
    let retried = client.retries();
    let started = Instant::now();
    assert!(client.reachable().is_err());
    assert!(started.elapsed() < Duration::from_millis(200) && client.retries() == retried, "tried once");
}

#[test]
fn without_retries_one_attempt_is_made() {
    let server = Server::start(&[(500, "{}"), (200, SUCCESS)]);
    let client = Retrying::new(node(&server.url), Retry::NONE);
    assert!(matches!(client.apply(&upsert()), Err(WireError::Refused { status: 500, .. })));
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_cluster_reads_from_a_node_that_answers_and_says_when_none_does() {
    let server = Server::start(&[(200, r#"{"version":"0.9.8"}"#)]);
    let down = refusing_url();
    let recorder = Arc::new(Recorder::default());
    let observer: Arc<dyn Observer> = recorder.clone();
    let cluster = Cluster::new(vec![node(&down).with_observer(Arc::clone(&observer)), node(&server.url).with_observer(observer)]);
    cluster.reachable().unwrap();
    let log = recorder.0.lock().unwrap().clone();
    assert_eq!(log, [format!("unanswered {down} refused GET /version"), format!("answered {} 200", server.url)]);
    let states = cluster.states();
    assert!(!states[0].answering && states[1].answering, "{states:?}");

    let nobody = Cluster::new(vec![node(&down), node(&refusing_url())]);
    let e = nobody.exchange("GET", "/version", None).unwrap_err();
    assert!(e.starts_with("no LoxiLB node answered (") && e.contains(&down), "{e}");
}

#[test]
fn a_change_a_node_misses_while_a_pass_brings_it_up_to_date_keeps_it_out_of_date() {
    let server = Server::start(&[(200, SUCCESS)]);
    let down = refusing_url();
    let cluster = Cluster::new(vec![node(&server.url), node(&down)]);
    assert!(cluster.states().iter().all(|s| s.out_of_date), "what nodes hold is unknown at the start");
    for index in 0..2 {
        cluster.in_sync(index, cluster.misses(index));
    }
    assert!(cluster.states().iter().all(|s| !s.out_of_date));

    // A pass over the second node reads its misses, lists it and repairs it; meanwhile a change fails there.
    let as_of = cluster.misses(1);
    let LoxilbCall::UpsertRule(rule) = upsert() else { unreachable!() };
    Loxilb::apply(&cluster, &LoxilbCall::UpsertRule(rule)).unwrap();
    cluster.in_sync(1, as_of);
    let states = cluster.states();
    assert!(!states[0].out_of_date && states[1].out_of_date, "the pass settled only what it saw: {states:?}");

    // An older pass ending late settles nothing newer either; the next one does.
    cluster.out_of_date(1);
    cluster.in_sync(1, as_of);
    assert!(cluster.states()[1].out_of_date);
    cluster.in_sync(1, cluster.misses(1));
    assert!(!cluster.states()[1].out_of_date);
}

#[test]
fn deletes_and_lists_go_out_as_loxilb_takes_them() {
    let server = Server::start(&[(404, r#"{"code":404,"result":"no-rule error"}"#), (200, r#"{"lbAttr":[]}"#)]);
    let client = node(&server.url);
    let LoxilbCall::UpsertRule(rule) = upsert() else { unreachable!() };
    client.apply(&LoxilbCall::DeleteRule(rule.key())).unwrap();
    assert!(client.list_rules().unwrap().is_empty());
    assert_eq!(
        server.seen(),
        ["DELETE /netlox/v1/config/loadbalancer/externalipaddress/10.0.0.1/port/80/protocol/tcp?block=0", "GET /netlox/v1/config/loadbalancer/all"]
    );
}

#[test]
fn concurrent_requests_keep_their_connections_for_the_next_ones() {
    // Operations on different load balancers reach a node at once, one request per apply worker.
    // ureq kept 3 connections per host: every request beyond them connected anew (with TLS, a handshake).
    const AT_ONCE: usize = 16;
    let server = serving(|_| {
        std::thread::sleep(Duration::from_millis(30));
        httpd::Answer::Response { status: 200, headers: Vec::new(), body: SUCCESS.to_string() }
    });
    let client = Arc::new(node(&format!("http://{}", server.addr())));
    let LoxilbCall::UpsertRule(rule) = upsert() else { unreachable!() };
    for _ in 0..4 {
        let workers: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (client, key) = (Arc::clone(&client), rule.key());
                std::thread::spawn(move || client.apply(&LoxilbCall::DeleteRule(key)).unwrap())
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
    }
    let connections = server.accepted();
    assert!(connections <= AT_ONCE, "{} requests, {AT_ONCE} at a time, took {connections} connections", 4 * AT_ONCE);
}
