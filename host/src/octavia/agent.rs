//! A client of Octavia's driver-agent sockets: one request and one reply per connection, each framed as
//! the ASCII decimal byte length, `\n`, then that many bytes of JSON (octavia-lib `driver_lib._send`).

use std::io::{BufRead, BufReader, Read, Write};
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
    let mut reader = BufReader::new(stream);
    let mut header = Vec::new();
    reader.read_until(b'\n', &mut header)?;
    if header.last() != Some(&b'\n') {
        bail!("connection closed before a frame header");
    }
    let len: usize = std::str::from_utf8(&header[..header.len() - 1])?.trim().parse().context("frame header is not a length")?;
    if len > MAX_FRAME {
        bail!("frame of {len} bytes is larger than {MAX_FRAME}");
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).context("connection closed inside a frame")?;
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
        _ => bail!("{what} refused: {}", reply.get("fault_string").and_then(Value::as_str).unwrap_or("no fault string")),
    }
}

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
