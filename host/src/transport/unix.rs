//! The Unix-socket transport: one request and one reply per connection, framed like the driver-agent
//! sockets. Casts are answered once queued; calls once answered.
//!
//! Whatever connects is bounded: a fixed pool of handler threads serves connections, a bounded number
//! wait for one, and further ones are refused at once; a request must arrive whole within a deadline
//! (not per read: a sender trickling a byte at a time gets no longer), its length header is digits only
//! and its size capped; and only allowed peers (SO_PEERCRED, see `peer.rs`) are served.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, TrySendError};
use serde_json::{json, Value};

use crate::octavia::agent::{read_frame_within, write_frame};
use crate::service::{Failure, Service};
use crate::transport::peer::{credentials, Peers};

/// `max_request_bytes` when the configuration does not say: a member batch of ~10,000 members fits.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 << 20;

/// What the socket accepts from its peers.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once (one handler thread each).
    pub handlers: usize,
    /// Connections accepted and waiting for a handler; beyond these a connection is refused at once.
    pub waiting: usize,
    /// Largest request body (`max_request_bytes`).
    pub max_request_bytes: usize,
    /// Time from accepting a connection to having read its whole request.
    pub request_deadline: Duration,
    pub peers: Peers,
}

impl Default for Limits {
    fn default() -> Limits {
        // The provider sends its request at once and waits validate_timeout (10 s) for the answer.
        Limits { handlers: 16, waiting: 64, max_request_bytes: DEFAULT_MAX_REQUEST_BYTES, request_deadline: Duration::from_secs(10), peers: Peers::default() }
    }
}

pub struct UnixServer {
    pub path: PathBuf,
}

fn reply(result: Result<Value, Failure>) -> Value {
    match result {
        Ok(v) => json!({"result": v}),
        Err(f) => json!({"failure": {"class": f.class, "message": f.message}}),
    }
}

/// Reads from a stream until a deadline for the whole request: each read may wait only for what is left.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request did not arrive within its deadline"));
        }
        self.stream.set_read_timeout(Some(left))?;
        match (&mut &*self.stream).read(buf) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the request did not arrive within its deadline"))
            }
            other => other,
        }
    }
}

/// Answers a refused connection without reading its request; the answer fits the socket buffer, so
/// this does not block the thread accepting connections.
fn refuse(mut stream: UnixStream, message: String) {
    crate::metrics::PROVIDER_CONNECTIONS_REFUSED.inc();
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = write_frame(&mut stream, &reply(Err(Failure::driver(message))));
}

fn serve_one(service: &Service, stream: UnixStream, accepted: Instant, limits: &Limits) -> Result<()> {
    let until = accepted + limits.request_deadline;
    let read = read_frame_within(&mut Deadline { stream: &stream, until }, limits.max_request_bytes);
    let mut stream = stream;
    stream.set_write_timeout(Some(limits.request_deadline))?;
    let request = match read {
        Ok(request) => request,
        Err(e) => {
            // Tell the provider why (it raises it as a DriverError) rather than just hanging up.
            let _ = write_frame(&mut stream, &reply(Err(Failure::driver(format!("refused a malformed or late request: {e:#}")))));
            return Err(e);
        }
    };
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let args = request.get("args").cloned().unwrap_or(Value::Null);
    let answer = match request.get("type").and_then(Value::as_str) {
        Some("call") => reply(service.call(&method, &args)),
        Some("cast") => reply(service.cast(&method, args).map(|()| Value::Null)),
        Some("notice") => reply(service.notice(&method, &args).map(|()| Value::Null)),
        other => reply(Err(Failure::driver(format!("request type {other:?} is not call, cast or notice")))),
    };
    write_frame(&mut stream, &answer)
}

fn handle(service: Arc<Service>, connections: Receiver<(UnixStream, Instant)>, limits: Arc<Limits>) {
    // Handlers wait on the queue side by side (not one holding a lock over `recv` while the others queue on
    // the lock): a connection wakes one handler, not a second one to take the lock over.
    loop {
        let Ok((stream, accepted)) = connections.recv() else { return };
        if let Err(e) = serve_one(&service, stream, accepted, &limits) {
            tracing::warn!("provider connection: {e:#}");
        }
    }
}

impl UnixServer {
    /// Binds the socket (replacing a stale one) with mode 0660 and serves it within the default limits.
    pub fn start(path: &Path, service: Arc<Service>) -> Result<UnixServer> {
        Self::start_with(path, service, Limits::default())
    }

    pub fn start_with(path: &Path, service: Arc<Service>, limits: Limits) -> Result<UnixServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        let limits = Arc::new(limits);
        let (queue, connections) = bounded::<(UnixStream, Instant)>(limits.waiting);
        for n in 0..limits.handlers.max(1) {
            let (service, connections, limits) = (Arc::clone(&service), connections.clone(), Arc::clone(&limits));
            std::thread::Builder::new().name(format!("provider-{n}")).spawn(move || handle(service, connections, limits))?;
        }
        std::thread::Builder::new().name("unix-transport".into()).spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors, typically: let connections drain rather than spin.
                        tracing::warn!("accepting a provider connection: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                match credentials(&stream) {
                    Ok(peer) if limits.peers.allows(&peer) => {}
                    Ok(peer) => {
                        tracing::warn!(
                            "refused a provider connection from pid {} uid {} gid {}: not in allowed_peer_users/allowed_peer_groups",
                            peer.pid,
                            peer.uid,
                            peer.gid
                        );
                        refuse(
                            stream,
                            format!("uid {} gid {} may not use the LoxiLB host's socket (allowed_peer_users, allowed_peer_groups)", peer.uid, peer.gid),
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("refused a provider connection: its credentials are unreadable: {e}");
                        refuse(stream, format!("the LoxiLB host could not read the peer's credentials: {e}"));
                        continue;
                    }
                }
                match queue.try_send((stream, Instant::now())) {
                    Ok(()) => {}
                    Err(TrySendError::Full((stream, _))) => {
                        tracing::warn!("refused a provider connection: {} served and {} waiting already", limits.handlers, limits.waiting);
                        refuse(stream, "the LoxiLB provider is overloaded: too many connections to its host; retry later".into());
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        })?;
        Ok(UnixServer { path: path.to_path_buf() })
    }
}

/// The provider's side of the socket (the demo and tests use it as the Python provider would).
pub fn request(path: &Path, kind: &str, method: &str, args: Value) -> Result<Result<Value, (String, String)>> {
    let reply = crate::octavia::agent::exchange(path, &json!({"type": kind, "method": method, "args": args}), Duration::from_secs(30))?;
    Ok(match reply.get("failure") {
        Some(f) => Err((
            f.get("class").and_then(Value::as_str).unwrap_or_default().to_string(),
            f.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        )),
        None => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
    })
}
