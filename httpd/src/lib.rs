//! A small HTTP/1.1 server: a thread per connection, kept open between requests and answering them in
//! turn, as LoxiLB's Go server keeps a goroutine per connection. The host's operator endpoint
//! (`/metrics`, `/healthz`, `/readyz`) and the LoxiLB simulator answer with it; a handler gets each
//! request whole (head and body) on its connection's thread.
//!
//! tiny_http served both before. Its thread pool queued a connection accepted while another was being
//! handed to an idle thread, until some thread finished its connection: with clients that keep their
//! connections (Prometheus, the host's LoxiLB client), requests waited out the client's timeout with no
//! answer.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request head beyond this is refused.
const MAX_HEAD: usize = 64 << 10;

/// What a server allows its clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Its threads are named after it (`<name>-accept`, `<name>-conn`).
    pub name: &'static str,
    /// A request body beyond this is answered 413 and its connection closed.
    pub max_body: usize,
    /// Connections served at once; a further one is answered 503 and closed.
    pub max_connections: usize,
    /// How long a connection may stay silent, between requests or inside one, before it is closed.
    pub idle: Option<Duration>,
}

impl Default for Limits {
    /// As a LoxiLB's API would take them: bodies of a few kilobytes, as many clients as come.
    fn default() -> Limits {
        Limits { name: "httpd", max_body: 16 << 20, max_connections: usize::MAX, idle: None }
    }
}

/// One request.
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What a connection sends back.
pub enum Answer {
    Response {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// These bytes, then the connection goes away (a reset as a client sees it).
    Raw(Vec<u8>),
}

impl Request {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What answers each request, on the thread of its connection.
pub type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

/// The listening side: accepts connections until stopped.
pub struct Server {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    /// Every open connection by its number, shut down on `unblock` as a process's exit closes its sockets.
    connections: Arc<Mutex<HashMap<usize, TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    acceptor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Server {
    pub fn start(listener: TcpListener, handler: Arc<Handler>) -> std::io::Result<Server> {
        Server::start_with(listener, handler, Limits::default())
    }

    pub fn start_with(listener: TcpListener, handler: Arc<Handler>, limits: Limits) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(HashMap::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let (stopped, connections, accepted) = (Arc::clone(&stopped), Arc::clone(&connections), Arc::clone(&accepted));
            std::thread::Builder::new().name(format!("{}-accept", limits.name)).spawn(move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let number = accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_read_timeout(limits.idle);
                    {
                        let mut open = connections.lock().unwrap();
                        if open.len() >= limits.max_connections {
                            drop(open);
                            // The accept loop goes on at once: only what has arrived is taken off.
                            let _ = refuse(&mut stream, 503, "too many connections", Duration::ZERO);
                            continue;
                        }
                        if let Ok(kept) = stream.try_clone() {
                            open.insert(number, kept);
                        }
                    }
                    let (handler, open, max_body) = (Arc::clone(&handler), Arc::clone(&connections), limits.max_body);
                    let spawned = std::thread::Builder::new().name(format!("{}-conn", limits.name)).spawn(move || {
                        serve_connection(stream, &*handler, max_body);
                        open.lock().unwrap().remove(&number);
                    });
                    if spawned.is_err() {
                        connections.lock().unwrap().remove(&number);
                    }
                }
            })?
        };
        Ok(Server { addr, stopped, connections, accepted, acceptor: Mutex::new(Some(acceptor)) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Stops accepting, closes the listening socket (a client is then refused, as by a LoxiLB that is
    /// down) and every connection.
    pub fn unblock(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // The accept loop wakes for this connection, sees `stopped` and ends, dropping the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.lock().unwrap().take() {
            let _ = acceptor.join();
        }
        for (_, connection) in self.connections.lock().unwrap().drain() {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

/// Reads requests off one connection, one at a time, until the client closes it or asks to.
fn serve_connection(stream: TcpStream, handler: &Handler, max_body: usize) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let (request, keep_alive) = match read_request(&mut reader, max_body) {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err((status, why)) => {
                let _ = refuse(&mut writer, status, &why, Duration::from_secs(1));
                return;
            }
        };
        match handler(&request) {
            Answer::Raw(bytes) => {
                let _ = writer.write_all(&bytes);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Answer::Response { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                if !keep_alive {
                    head.push_str("Connection: close\r\n");
                }
                head.push_str("\r\n");
                let mut whole = head.into_bytes();
                whole.extend_from_slice(body.as_bytes());
                if writer.write_all(&whole).is_err() || !keep_alive {
                    return;
                }
            }
        }
    }
}

/// An answer that closes its connection. What the client sent and nobody read is taken off first (for
/// up to `linger`, or only what has arrived when that is zero): closing a socket with unread data resets
/// the connection, and the client may lose the answer.
fn refuse(stream: &mut TcpStream, status: u16, why: &str, linger: Duration) -> std::io::Result<()> {
    let body = format!("{why}\n");
    write!(stream, "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", reason(status), body.len())?;
    stream.shutdown(Shutdown::Write)?;
    if linger.is_zero() {
        stream.set_nonblocking(true)?;
    } else {
        stream.set_read_timeout(Some(linger))?;
    }
    let mut unread = [0; 8192];
    let mut left = 16usize << 20;
    while left > 0 {
        match stream.read(&mut unread) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

/// One request off `reader`, and whether the connection stays open after it; `None` when the client
/// closed the connection between requests. What cannot be read is the status to answer and why.
fn read_request(reader: &mut BufReader<TcpStream>, max_body: usize) -> Result<Option<(Request, bool)>, (u16, String)> {
    let bad = |why: String| (400, why);
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = match reader.read_until(b'\n', &mut head) {
            Ok(read) => read,
            // Silent past `idle` between requests: closed without a word, as Go's server does.
            Err(e) if head.is_empty() && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(bad(format!("reading the request: {e}"))),
        };
        if read == 0 {
            return if head.is_empty() { Ok(None) } else { Err(bad("connection closed inside the request head".into())) };
        }
        if head.len() > MAX_HEAD {
            return Err((431, "request head too large".into()));
        }
        // A blank line (after at least the request line) ends the head.
        let line = &head[before..];
        if (line == b"\r\n" || line == b"\n") && before > 0 {
            break;
        }
        if before == 0 && (line == b"\r\n" || line == b"\n") {
            // Stray line breaks between requests are allowed (RFC 9112 §2.2).
            head.clear();
        }
    }
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete request head".into())),
        Err(e) => return Err(bad(format!("bad request head: {e}"))),
    }
    let method = parsed.method.unwrap_or_default().to_string();
    let url = parsed.path.unwrap_or_default().to_string();
    let http_1_0 = parsed.version == Some(0);
    let headers: Vec<(String, String)> = parsed.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string())).collect();
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match find("connection") {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => !http_1_0,
    };
    // curl asks before sending a body over 1 KiB, and waits a second for this answer (Go's server gives it).
    if find("expect").is_some_and(|e| e == "100-continue") {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|e| bad(format!("answering 100-continue: {e}")))?;
    }
    let body = if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(reader, max_body)?
    } else {
        let length = match find("content-length") {
            Some(length) => length.parse::<usize>().map_err(|_| bad(format!("bad Content-Length {length:?}")))?,
            None => 0,
        };
        if length > max_body {
            return Err((413, format!("request body over {max_body} bytes")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|e| bad(format!("reading the body: {e}")))?;
        body
    };
    Ok(Some((Request { method, url, headers, body }, keep_alive)))
}

/// A chunked body (RFC 9112 §7.1), trailers skipped.
fn read_chunked(reader: &mut BufReader<TcpStream>, max_body: usize) -> Result<Vec<u8>, (u16, String)> {
    let bad = |why: String| (400, why);
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| bad(format!("reading a chunk: {e}")))?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad(format!("bad chunk size {size:?}")))?;
        if body.len().saturating_add(size) > max_body {
            return Err((413, format!("request body over {max_body} bytes")));
        }
        if size == 0 {
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).map_err(|e| bad(format!("reading the trailers: {e}")))? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|e| bad(format!("reading a chunk: {e}")))?;
        let mut end = [0; 2];
        reader.read_exact(&mut end).map_err(|e| bad(format!("reading a chunk: {e}")))?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering each request with its method, URL and body, as the handler saw them.
    fn echo() -> Server {
        let handler = |r: &Request| Answer::Response {
            status: 200,
            headers: vec![("Content-Type", "text/plain".into())],
            body: format!("{} {} {}", r.method, r.url, String::from_utf8_lossy(&r.body)),
        };
        Server::start(TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(handler)).unwrap()
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    fn exchange(server: &Server, raw: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn requests_on_one_connection_are_answered_in_turn_and_the_last_closes_it_when_asked() {
        let server = echo();
        let answer = exchange(&server, "POST /a?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert_eq!(
            answer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\nPOST /a?x=1 abc\
             HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\nGET /b "
        );
        assert_eq!(server.accepted(), 1);
    }

    #[test]
    fn http_1_0_closes_after_its_answer_and_chunked_bodies_arrive_whole() {
        let server = echo();
        assert!(exchange(&server, "GET / HTTP/1.0\r\n\r\n").contains("Connection: close\r\n\r\nGET / "));
        let chunked = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
        assert!(exchange(&server, chunked).ends_with("\r\n\r\nPOST /c abcde"), "{}", exchange(&server, chunked));
    }

    #[test]
    fn a_client_that_expects_100_continue_is_told_to_send_its_body() {
        let server = echo();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        stream.write_all(b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
        let mut go_on = [0; 25];
        stream.read_exact(&mut go_on).unwrap();
        assert_eq!(&go_on, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"ok").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nPOST /e ok"), "{answer}");
    }

    #[test]
    fn a_request_that_does_not_parse_is_answered_400_and_its_connection_closed() {
        let server = echo();
        let answer = exchange(&server, "NOT HTTP\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n") && answer.contains("Connection: close"), "{answer}");
        assert!(exchange(&server, "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn connections_their_clients_keep_are_answered_whenever_they_send() {
        // LoxiLB's Go server serves every connection on a goroutine of its own. tiny_http, which served
        // the simulator before, queued a connection accepted while another was being handed to an idle
        // thread until some connection closed: requests on it went unanswered until the client's timeout.
        let server = echo();
        let mut kept: Vec<BufReader<TcpStream>> = (0..32)
            .map(|_| {
                let stream = TcpStream::connect(server.addr()).unwrap();
                stream.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
                BufReader::new(stream)
            })
            .collect();
        for round in 0..20 {
            std::thread::scope(|s| {
                for (n, client) in kept.iter_mut().enumerate() {
                    s.spawn(move || {
                        let path = format!("/{round}/{n}");
                        write!(client.get_mut(), "GET {path} HTTP/1.1\r\n\r\n").unwrap();
                        let mut head = String::new();
                        while !head.ends_with("\r\n\r\n") {
                            assert!(client.read_line(&mut head).unwrap_or(0) > 0, "round {round}: no answer on connection {n}");
                        }
                        let length: usize = head.split("Content-Length: ").nth(1).and_then(|l| l.split("\r\n").next()).unwrap().parse().unwrap();
                        let mut body = vec![0; length];
                        client.read_exact(&mut body).unwrap();
                        assert_eq!(String::from_utf8(body).unwrap(), format!("GET {path} "));
                    });
                }
            });
        }
        assert_eq!(server.accepted(), 32);
    }

    #[test]
    fn a_body_over_the_limit_is_refused_413_before_it_is_read() {
        let handler = |_: &Request| Answer::Response { status: 200, headers: Vec::new(), body: String::new() };
        let limits = Limits { max_body: 10, ..Limits::default() };
        let server = Server::start_with(TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(handler), limits).unwrap();
        let answer = exchange(&server, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 413 Content Too Large\r\n") && answer.contains("over 10 bytes"), "{answer}");
        let chunked = exchange(&server, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n");
        assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
        assert!(exchange(&server, "POST / HTTP/1.1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789").starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn connections_beyond_the_limit_are_answered_503_and_one_that_stays_silent_is_closed() {
        let limits = Limits { max_connections: 2, idle: Some(std::time::Duration::from_millis(300)), ..Limits::default() };
        let handler = |r: &Request| Answer::Response { status: 200, headers: Vec::new(), body: r.url.clone() };
        let server = Server::start_with(TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(handler), limits).unwrap();
        let kept: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(server.addr()).unwrap()).collect();
        // Counted once accepted: wait until both are.
        while server.accepted() < 2 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let refused = exchange(&server, "GET /third HTTP/1.1\r\n\r\n");
        assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n") && refused.contains("too many connections"), "{refused}");
        // The kept ones say nothing: they are closed after the idle time, and make room.
        for mut silent in kept {
            silent.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut rest = Vec::new();
            silent.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty(), "a silent connection was answered {:?}", String::from_utf8_lossy(&rest));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(exchange(&server, "GET /fourth HTTP/1.1\r\nConnection: close\r\n\r\n").ends_with("\r\n\r\n/fourth"));
    }

    #[test]
    fn unblock_refuses_new_connections_and_closes_the_kept_ones() {
        let server = echo();
        let mut kept = TcpStream::connect(server.addr()).unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut first = [0; 17];
        kept.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");
        server.unblock();
        assert!(TcpStream::connect(server.addr()).is_err(), "a connection was accepted after unblock");
        kept.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        kept.read_to_end(&mut rest).unwrap();
        assert!(String::from_utf8_lossy(&rest).ends_with("GET / "), "the kept connection was not closed after its answer");
    }
}
