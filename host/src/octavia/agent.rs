//! A client of Octavia's driver-agent sockets: one request and one reply per connection, each framed as
//! the ASCII decimal byte length, `\n`, then that many bytes of JSON (octavia-lib `driver_lib._send`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// octavia-lib gives the agent 5 s per socket operation.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// Get-socket reads in flight at once, from the whole process. The driver-agent forks a process per
/// read that opens its own database session (0.3-0.4 s of CPU on a 2-CPU machine): dozens of load
/// balancers waiting for their commit at once (after a restart, casts restored from the inbox have no
/// commit notice) would otherwise keep up to 50 such processes running (the agent's limit), each slower
/// the more there are, and every status update and API request with them.
pub const GET_CONCURRENCY: usize = 4;

static GET_TURNS: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// One of the `GET_CONCURRENCY` turns, given back when dropped.
struct GetTurn;

impl GetTurn {
    fn take() -> GetTurn {
        let (count, freed) = &GET_TURNS;
        let mut count = count.lock().unwrap();
        while *count >= GET_CONCURRENCY {
            count = freed.wait(count).unwrap();
        }
        *count += 1;
        GetTurn
    }
}

impl Drop for GetTurn {
    fn drop(&mut self) {
        let (count, freed) = &GET_TURNS;
        *count.lock().unwrap() -= 1;
        freed.notify_one();
    }
}

/// Frames larger than this are refused rather than allocated.
pub const MAX_FRAME: usize = 64 << 20;

/// Writes one frame with one write (header and body together: two writes woke the reader twice).
pub fn write_frame(stream: &mut impl Write, value: &Value) -> Result<()> {
    let body = serde_json::to_vec(value)?;
    let mut frame = Vec::with_capacity(body.len() + MAX_HEADER_DIGITS + 1);
    frame.extend_from_slice(body.len().to_string().as_bytes());
    frame.push(b'\n');
    frame.extend_from_slice(&body);
    stream.write_all(&frame)?;
    stream.flush()?;
    Ok(())
}

pub fn read_frame(stream: &mut impl Read) -> Result<Value> {
    read_frame_within(stream, MAX_FRAME)
}

/// Digits in a frame's length header: 20 hold any `u64`; a longer header is refused, not buffered.
const MAX_HEADER_DIGITS: usize = 20;

/// Reads one frame of at most `max` bytes. Memory follows the bytes that actually arrive, so a header
/// announcing a large frame costs nothing until its bytes are sent. Reads are buffered (a small frame
/// arrives in one, where the header alone took a read per digit): a connection carries one frame each
/// way, so nothing read past the frame belongs to another.
pub fn read_frame_within(stream: &mut impl Read, max: usize) -> Result<Value> {
    let mut stream = std::io::BufReader::with_capacity(16 << 10, stream);
    let mut header = Vec::with_capacity(MAX_HEADER_DIGITS);
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte)? == 0 {
            bail!("connection closed before a frame header");
        }
        match byte[0] {
            b'\n' if !header.is_empty() => break,
            b'0'..=b'9' if header.len() < MAX_HEADER_DIGITS => header.push(byte[0]),
            b'0'..=b'9' => bail!("frame header is longer than {MAX_HEADER_DIGITS} digits"),
            other => bail!("frame header is not a length: byte {other:#04x} where a digit or newline belongs"),
        }
    }
    let len: u64 = std::str::from_utf8(&header)?.parse().context("frame header is not a length")?;
    if len > max as u64 {
        bail!("frame of {len} bytes is larger than {max}");
    }
    let mut body = Vec::with_capacity((len as usize).min(64 << 10));
    (&mut stream).take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        bail!("connection closed inside a frame ({} of {len} bytes)", body.len());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// One request, one reply.
pub fn exchange(path: &Path, request: &Value, timeout: Duration) -> Result<Value> {
    let mut stream = UnixStream::connect(path).map_err(|e| NotReached(format!("connecting to {}: {e}", path.display())))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write_frame(&mut stream, request)?;
    read_frame(&mut stream)
}

fn update(path: Option<&Path>, document: &Value, what: &str) -> Result<()> {
    let path = path.ok_or_else(|| anyhow!("no socket configured for {what}"))?;
    let reply = exchange(path, document, SOCKET_TIMEOUT)?;
    match reply.get("status_code").and_then(Value::as_u64) {
        Some(200) => Ok(()),
        _ => Err(Refused(format!("{what} refused: {}", reply.get("fault_string").and_then(Value::as_str).unwrap_or("no fault string"))).into()),
    }
}

/// The driver-agent answered and said no (for example: an object of the document is gone). Sending the
/// same document again cannot help, unlike a socket that did not answer.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The request never reached the driver-agent: its socket could not be connected to (the driver-agent is
/// stopped or starting). Unlike a request that was sent and not answered, it cannot have been applied.
#[derive(Debug)]
pub struct NotReached(pub String);

impl std::fmt::Display for NotReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotReached {}

#[derive(Clone, Debug)]
pub struct DriverAgent {
    pub status: Option<PathBuf>,
    pub stats: Option<PathBuf>,
    pub get: Option<PathBuf>,
}

impl DriverAgent {
    /// Sends a status document; the agent answers `{"status_code": 200}` or 500 with a fault string.
    pub fn update_status(&self, status: &Value) -> Result<()> {
        update(self.status.as_deref(), status, "status update")
    }

    /// Sends listener statistics (absolute counters); answered like a status update.
    pub fn update_stats(&self, stats: &Value) -> Result<()> {
        update(self.stats.as_deref(), stats, "statistics")
    }

    /// The committed object (`object` is `loadbalancers`, `listeners`, `pools`, `members`, …), or `None`.
    /// At most `GET_CONCURRENCY` reads are in flight at once (see there); a read waits for its turn.
    pub fn get(&self, object: &str, id: &str) -> Result<Option<Value>> {
        let path = self.get.as_ref().ok_or_else(|| anyhow!("no get socket configured"))?;
        let _turn = GetTurn::take();
        let reply = exchange(path, &serde_json::json!({"object": object, "id": id}), SOCKET_TIMEOUT)?;
        Ok(match reply {
            Value::Object(ref m) if m.is_empty() => None,
            Value::Null => None,
            other => Some(other),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts the calls a frame takes on the stream, which are system calls on a socket.
    #[derive(Default)]
    struct Calls {
        data: std::io::Cursor<Vec<u8>>,
        reads: usize,
        writes: usize,
    }
    impl Read for Calls {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.reads += 1;
            self.data.read(buf)
        }
    }
    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.writes += 1;
            self.data.get_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_small_frame_is_written_and_read_in_one_call_each() {
        let request = serde_json::json!({"type": "cast", "method": "member_update", "args": {"weight": 4, "id": "x".repeat(500)}});
        let mut wire = Calls::default();
        write_frame(&mut wire, &request).unwrap();
        assert_eq!(wire.writes, 1);
        assert_eq!(read_frame(&mut wire).unwrap(), request);
        assert_eq!(wire.reads, 1, "the header's digits and the body came in one read");
    }

    #[test]
    fn no_more_than_a_few_get_socket_reads_are_in_flight_at_once() {
        let dir = std::env::temp_dir().join(format!("agent-get-turns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("get.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (Arc::clone(&now), Arc::clone(&most));
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let (n, m) = (Arc::clone(&n), Arc::clone(&m));
                std::thread::spawn(move || {
                    let Ok(_) = read_frame(&mut stream) else { return };
                    m.fetch_max(n.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    n.fetch_sub(1, Ordering::SeqCst);
                    let _ = write_frame(&mut stream, &serde_json::json!({}));
                });
            }
        });
        let agent = DriverAgent { status: None, stats: None, get: Some(path) };
        let readers: Vec<_> = (0..16)
            .map(|i| {
                let agent = agent.clone();
                std::thread::spawn(move || agent.get("members", &format!("m{i}")).unwrap())
            })
            .collect();
        for r in readers {
            assert_eq!(r.join().unwrap(), None);
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=GET_CONCURRENCY).contains(&most), "{most} reads in flight at once");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
