//! The Unix-socket transport's durable inbox. A cast is answered as soon as it is accepted, and Octavia
//! then waits for its status: an accepted operation must survive a host crash, or its objects would stay
//! PENDING forever. Each cast is appended and fsynced before the provider gets its answer; applying it
//! appends a `done` mark; on start every operation without its mark is applied again (applying is
//! idempotent, so one that was applied but not marked does no harm).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// Once every accepted operation is done and the file is larger than this, it starts over empty.
const COMPACT_BYTES: u64 = 1 << 20;

struct State {
    file: File,
    next: u64,
    pending: usize,
}

pub struct Inbox {
    path: PathBuf,
    state: Mutex<State>,
}

/// An accepted operation not yet applied.
pub type Pending = (u64, String, Value);

impl Inbox {
    /// Opens (or creates) the inbox and returns the operations accepted but never marked done, in order.
    pub fn open(path: &Path) -> Result<(Inbox, Vec<Pending>)> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut ops: BTreeMap<u64, (String, Value)> = BTreeMap::new();
        let mut next = 0;
        // A last line without its newline was torn by a crash before the provider got its answer.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for line in text[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let record: Value = serde_json::from_slice(line).with_context(|| format!("{}: unreadable record", path.display()))?;
            if let Some(seq) = record.get("done").and_then(Value::as_u64) {
                ops.remove(&seq);
            } else if let (Some(seq), Some(method)) = (record.get("seq").and_then(Value::as_u64), record.get("method").and_then(Value::as_str)) {
                ops.insert(seq, (method.to_string(), record.get("args").cloned().unwrap_or(Value::Null)));
                next = next.max(seq + 1);
            }
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).with_context(|| format!("opening {}", path.display()))?;
        file.set_len(complete as u64)?;
        let pending: Vec<Pending> = ops.into_iter().map(|(seq, (m, a))| (seq, m, a)).collect();
        let inbox = Inbox { path: path.to_path_buf(), state: Mutex::new(State { file, next, pending: pending.len() }) };
        Ok((inbox, pending))
    }

    /// Records an operation durably; returns its sequence number.
    pub fn accept(&self, method: &str, args: &Value) -> Result<u64> {
        let mut state = self.state.lock().unwrap();
        let seq = state.next;
        let mut line = serde_json::to_vec(&json!({"seq": seq, "method": method, "args": args}))?;
        line.push(b'\n');
        state.file.write_all(&line)?;
        state.file.sync_data()?;
        state.next += 1;
        state.pending += 1;
        Ok(seq)
    }

    /// Marks an operation applied. Not fsynced: losing the mark only means applying it once more.
    pub fn done(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        let mut line = serde_json::to_vec(&json!({"done": seq})).expect("json");
        line.push(b'\n');
        if let Err(e) = state.file.write_all(&line) {
            tracing::warn!("inbox {}: could not mark {seq} done: {e}", self.path.display());
        }
        state.pending = state.pending.saturating_sub(1);
        let size = state.file.metadata().map(|m| m.len()).unwrap_or(0);
        if state.pending == 0 && size > COMPACT_BYTES {
            if let Err(e) = state.file.set_len(0).and_then(|_| state.file.sync_data()) {
                tracing::warn!("inbox {}: could not compact: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_operations_without_done_marks_come_back_in_order() {
        let path = std::env::temp_dir().join(format!("loxilb-inbox-{}-{}", std::process::id(), crate::caps::clock::now_ms()));
        let (inbox, pending) = Inbox::open(&path).unwrap();
        assert!(pending.is_empty());
        let a = inbox.accept("member_create", &json!({"n": 1})).unwrap();
        let b = inbox.accept("member_create", &json!({"n": 2})).unwrap();
        let c = inbox.accept("member_delete", &json!({"n": 3})).unwrap();
        inbox.done(b);
        drop(inbox);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\": 9, \"meth").unwrap();
        let (inbox, pending) = Inbox::open(&path).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(pending[1].1, "member_delete");
        assert_eq!(inbox.accept("x", &Value::Null).unwrap(), c + 1, "sequence numbers continue");
        std::fs::remove_file(path).unwrap();
    }
}
