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
/// Frames larger than this are refused rather than allocated.
pub const MAX_FRAME: usize = 64 << 20;

pub fn write_frame(stream: &mut impl Write, value: &Value) -> Result<()> {
    let body = serde_json::to_vec(value)?;
    stream.write_all(format!("{}\n", body.len()).as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    Ok(())
}

pub fn read_frame(stream: &mut impl Read) -> Result<Value> {
    read_frame_within(stream, MAX_FRAME)
}

/// Digits in a frame's length header: 20 hold any `u64`; a longer header is refused, not buffered.
const MAX_HEADER_DIGITS: usize = 20;

/// Reads one frame of at most `max` bytes. Memory follows the bytes that actually arrive, so a header
/// announcing a large frame costs nothing until its bytes are sent.
pub fn read_frame_within(stream: &mut impl Read, max: usize) -> Result<Value> {
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
    stream.take(len).read_to_end(&mut body)?;
    if body.len() as u64 != len {
        bail!("connection closed inside a frame ({} of {len} bytes)", body.len());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// One request, one reply.
pub fn exchange(path: &Path, request: &Value, timeout: Duration) -> Result<Value> {
    let mut stream = UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
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
    pub fn get(&self, object: &str, id: &str) -> Result<Option<Value>> {
        let path = self.get.as_ref().ok_or_else(|| anyhow!("no get socket configured"))?;
        let reply = exchange(path, &serde_json::json!({"object": object, "id": id}), SOCKET_TIMEOUT)?;
        Ok(match reply {
            Value::Object(ref m) if m.is_empty() => None,
            Value::Null => None,
            other => Some(other),
        })
    }
}
