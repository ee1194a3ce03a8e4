//! The provider socket's limits: connections beyond the pool and its waiting room are refused, the
//! length header and the request size are bounded, a request must arrive whole within its deadline
//! however slowly it trickles, and only allowed peers are served.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::octavia::agent::{read_frame, write_frame};
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::transport::peer::Peers;
use host::transport::unix::{Limits, UnixServer};
use integration_tests::*;
use serde_json::{json, Value};

/// The socket of a server, and the directory holding it (removed when dropped).
fn server(name: &str, limits: Limits) -> (PathBuf, TempDir) {
    let dir = TempDir::new(&format!("loxilb-socket-{name}"));
    let path = dir.join("host.sock");
    let service = Service::new(sandbox(Arc::new(RecordingLoxi::default())), None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    service.start_worker(Vec::new());
    UnixServer::start_with(&path, service, limits).unwrap();
    (path, dir)
}

fn limits() -> Limits {
    Limits { handlers: 2, waiting: 2, max_request_bytes: 4096, request_deadline: Duration::from_secs(2), peers: Peers::default() }
}

fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// The refusal's message, or panics when the reply is not a refusal.
fn refusal(reply: Value) -> String {
    assert_eq!(reply["failure"]["class"], "DriverError", "{reply}");
    reply["failure"]["message"].as_str().unwrap().to_string()
}

fn flavor_keys(stream: &mut UnixStream) -> Value {
    write_frame(stream, &json!({"type": "call", "method": "get_supported_flavor_metadata", "args": {}})).unwrap();
    read_frame(stream).unwrap()
}

#[test]
fn connections_beyond_the_handlers_and_waiting_room_are_refused_at_once() {
    let (path, _dir) = server("connections", limits());
    let started = Instant::now();
    // Idle connections: two are served (and time out), two wait, every further one is refused.
    let mut idle: Vec<UnixStream> = (0..10).map(|_| connect(&path)).collect();
    let messages: Vec<String> = idle.iter_mut().map(|s| refusal(read_frame(s).unwrap())).collect();
    let refused = messages.iter().filter(|m| m.contains("too many connections")).count();
    let late = messages.iter().filter(|m| m.contains("deadline")).count();
    assert!(refused >= 6 && refused + late == 10, "{messages:#?}");
    assert!(started.elapsed() < Duration::from_secs(8), "the waiting ones were not timed out from when they were accepted");
    // Once they are gone, the socket serves again.
    assert!(flavor_keys(&mut connect(&path))["result"]["nat_mode"].is_string());
}

#[test]
fn a_request_trickling_in_gets_one_deadline_not_one_per_read() {
    let (path, _dir) = server("trickle", limits());
    let mut stream = connect(&path);
    let mut writer = stream.try_clone().unwrap();
    let body = serde_json::to_vec(&json!({"type": "call", "method": "get_supported_flavor_metadata", "args": {}, "pad": "x".repeat(200)})).unwrap();
    let frame = [format!("{}\n", body.len()).into_bytes(), body].concat();
    // One byte every 100 ms: each read succeeds well within any per-read timeout; the whole takes 25 s.
    std::thread::spawn(move || {
        for byte in frame {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let message = refusal(read_frame(&mut stream).unwrap());
    assert!(message.contains("deadline"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
}

#[test]
fn length_headers_are_digits_and_bounded_and_requests_are_capped() {
    let (path, _dir) = server("frames", limits());
    // A header that never ends is cut off after 20 digits, not buffered.
    let mut stream = connect(&path);
    stream.write_all("9".repeat(1000).as_bytes()).unwrap();
    let message = refusal(read_frame(&mut stream).unwrap());
    assert!(message.contains("longer than 20 digits"), "{message}");
    for header in ["12a\n", " 12\n", "-5\n", "\n"] {
        let mut stream = connect(&path);
        stream.write_all(header.as_bytes()).unwrap();
        let message = refusal(read_frame(&mut stream).unwrap());
        assert!(message.contains("frame header"), "{header:?}: {message}");
    }
    // A frame above max_request_bytes is refused from its header, before its body is read.
    let mut stream = connect(&path);
    stream.write_all(b"4097\n").unwrap();
    let message = refusal(read_frame(&mut stream).unwrap());
    assert!(message.contains("larger than 4096"), "{message}");
    let mut stream = connect(&path);
    stream.write_all(format!("{}\n", u64::MAX).as_bytes()).unwrap();
    assert!(refusal(read_frame(&mut stream).unwrap()).contains("larger than"));
    // A request within the limit is served.
    assert!(flavor_keys(&mut connect(&path))["result"]["nat_mode"].is_string());
}

#[test]
fn a_member_batch_of_thousands_fits_the_default_request_size() {
    let (path, _dir) = server("batch", Limits { handlers: 2, waiting: 2, ..Limits::default() });
    let lb = "ffffffff-0000-4000-8000-000000000001";
    let members: Vec<Value> = (0..5000)
        .map(|n| {
            let mut m = member(
                &format!("ffffffff-0000-4000-8000-{n:012}"),
                "ffffffff-0000-4000-8000-100000000000",
                &format!("10.{}.{}.{}", n / 65536, n / 256 % 256, n % 256),
                8080,
                1,
            );
            m["name"] = json!(format!("member-{n}"));
            m["project_id"] = json!("0123456789abcdef0123456789abcdef");
            m["subnet_id"] = json!("ffffffff-0000-4000-8000-200000000000");
            m["monitor_address"] = Value::Null;
            m["monitor_port"] = Value::Null;
            m["tags"] = json!([]);
            m
        })
        .collect();
    let args = json!({"loadbalancer_id": lb, "pool_id": "ffffffff-0000-4000-8000-100000000000", "members": members});
    assert!(serde_json::to_vec(&args).unwrap().len() > 1 << 20, "the batch is large");
    let reply = host::transport::unix::request(&path, "call", "validate", json!({"operation": "member_batch_update", "args": args})).unwrap();
    assert!(!matches!(&reply, Err((_, m)) if m.contains("larger than")), "{reply:?}");
}

#[test]
fn peers_that_are_not_allowed_are_refused() {
    let me = host::transport::peer::credentials(&UnixStream::pair().unwrap().0).unwrap();
    let others = Peers { users: vec![me.uid.wrapping_add(4242)], groups: vec![me.gid.wrapping_add(4242)] };
    let (path, _dir) = server("peers", Limits { peers: others, ..limits() });
    // Refused on connecting, before the request is read (so not written here: the host may have hung up).
    let mut stream = connect(&path);
    let message = refusal(read_frame(&mut stream).unwrap());
    assert!(message.contains(&format!("uid {}", me.uid)) && message.contains("allowed_peer_users"), "{message}");
    // Nothing more is read from it.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    // Allowed by group alone.
    let by_group = Peers { users: vec![me.uid.wrapping_add(4242)], groups: vec![me.gid] };
    let (path, _dir) = server("peers-group", Limits { peers: by_group, ..limits() });
    assert!(flavor_keys(&mut connect(&path))["result"]["nat_mode"].is_string());
}
