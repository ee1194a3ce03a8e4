//! The Unix-socket transport's durable inbox. A cast is answered as soon as it is accepted, and Octavia
//! then waits for its status: an accepted operation must survive a host crash, or its objects would stay
//! PENDING forever. Each cast is appended and fsynced before the provider gets its answer; applying it
//! appends a `done` mark; on start every operation without its mark is applied again (applying is
//! idempotent, so one that was applied but not marked does no harm).
//!
//! Casts accepted at once share their fdatasync (group commit): one accepting thread syncs, outside the
//! lock that orders appends, everything appended so far, and the others wait for a sync that covers
//! their record. A failed sync cuts every record it did not make durable back off the file, and each of
//! their casts is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::storage::format::{self, Line};

/// Once every accepted operation is done and the file is larger than this, it starts over empty.
const COMPACT_BYTES: u64 = 1 << 20;

/// Where the inbox's lines go: the file, or in tests one that fails on demand (a full disk).
trait Sink: Send {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    fn sync(&mut self) -> std::io::Result<()>;
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
    /// Syncs the same file without the sink (so without the lock that orders appends).
    fn syncer(&self) -> std::io::Result<Syncer>;
    /// The file's length.
    fn size(&self) -> std::io::Result<u64>;
}

type Syncer = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

impl Sink for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
    fn syncer(&self) -> std::io::Result<Syncer> {
        let file = self.try_clone()?;
        Ok(Box::new(move || file.sync_data()))
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

struct State {
    file: Box<dyn Sink>,
    /// Bytes of whole lines in the file.
    len: u64,
    /// Bytes ever appended by this process (neither a compaction nor a cut lowers it): where records
    /// end, for knowing which a sync covered.
    appended: u64,
    /// A failed write left bytes after `len` that could not be cut off: the next line starts on a new
    /// line of its own, so the leftover is one damaged line rather than the start of the next record.
    torn: bool,
    next: u64,
    pending: usize,
}

impl State {
    /// Appends one framed line, made durable when `sync`. A failed write or sync is cut back off, so
    /// the file holds whole lines only: a partial line would swallow the record after it.
    fn append(&mut self, record: &Value, sync: bool) -> std::io::Result<()> {
        let mut line = Vec::new();
        if self.torn {
            line.push(b'\n');
        }
        format::frame(&serde_json::to_vec(record).expect("JSON values serialize"), &mut line);
        let written = self.file.append(&line).and_then(|()| if sync { self.file.sync() } else { Ok(()) });
        match written {
            Ok(()) => {
                let before = self.len;
                self.len += line.len() as u64;
                if self.torn {
                    // The leftover before this line is in the file too: count it as appended with the
                    // line, so that a failed sync later cuts it off with the line rather than leaving it
                    // at the end, unterminated, to swallow the next record.
                    self.len = self.file.size().unwrap_or(self.len);
                }
                self.appended += self.len - before;
                self.torn = false;
                Ok(())
            }
            Err(e) => {
                // With `torn` set the file's length is unknown past `len`; a leading newline isolates it.
                self.torn = self.file.truncate(self.len).is_err() || self.torn;
                Err(e)
            }
        }
    }
}

pub struct Inbox {
    path: PathBuf,
    state: Mutex<State>,
    syncer: Syncer,
    durable: Mutex<Durable>,
    synced_more: Condvar,
}

/// The group commit's progress.
struct Durable {
    /// Everything appended up to here (in `State::appended`'s count) is on disk, or was cut off.
    synced: u64,
    /// A thread is syncing; the others wait for it.
    syncing: bool,
    /// What failed syncs cut off, as (from, to] in `State::appended`'s count.
    lost: Vec<(u64, u64)>,
}

/// An accepted operation not yet applied.
pub type Pending = (u64, String, Value);

/// An operation's record as appended: its sequence number, and where it ends (for `Inbox::durable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    end: u64,
}

impl Appended {
    /// A record read back on opening: on disk already.
    pub fn restored(seq: u64) -> Appended {
        Appended { seq, end: 0 }
    }

    /// Whether it was read back on opening (accepted before a restart), not appended since.
    pub fn is_restored(&self) -> bool {
        self.end == 0
    }
}

/// A line found damaged on opening (bit rot, a write cut short by a crash or a full disk before this
/// release cut failed writes back).
#[derive(Debug)]
pub struct Damaged {
    /// 1-based line number in the inbox file.
    pub line: usize,
    pub why: String,
    /// The method and arguments, when what is left still reads as an accepted operation: its objects
    /// can be reported ERROR (it is not applied: its contents cannot be trusted).
    pub operation: Option<(String, Value)>,
    /// Its sequence number, when that still reads: `Inbox::done` with it once the objects are reported,
    /// and a later start finds nothing waiting for it.
    pub seq: Option<u64>,
}

/// What opening the inbox found.
pub struct Opened {
    pub inbox: Inbox,
    /// Accepted and never marked done, in order.
    pub pending: Vec<Pending>,
    pub damaged: Vec<Damaged>,
}

/// A record line's content as an accepted operation: its sequence number (if readable), method, args.
fn accepted(record: &Value) -> Option<(Option<u64>, String, Value)> {
    let method = record.get("method")?.as_str()?.to_string();
    Some((record.get("seq").and_then(Value::as_u64), method, record.get("args").cloned().unwrap_or(Value::Null)))
}

impl Inbox {
    /// Opens (or creates) the inbox: the operations accepted but never marked done, in order, and the
    /// lines found damaged (logged and counted; the rest is read on).
    pub fn open(path: &Path) -> Result<Opened> {
        Self::open_over(path, |file| Box::new(file))
    }

    fn open_over(path: &Path, sink: impl FnOnce(File) -> Box<dyn Sink>) -> Result<Opened> {
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut ops: BTreeMap<u64, (String, Value)> = BTreeMap::new();
        let mut done = BTreeSet::new();
        // Sequence numbers of the operation records that read whole.
        let mut sound = BTreeSet::new();
        let mut damaged: Vec<Damaged> = Vec::new();
        let mut next = 0;
        // A last line without its newline was torn by a crash before the provider got its answer.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!("{}: ignoring an operation torn by a crash at its end ({} bytes; never acknowledged)", path.display(), text.len() - complete);
        }
        for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
            let record = match format::unframe(line) {
                Line::Record(bytes) => serde_json::from_slice::<Value>(bytes).map_err(|e| format!("not JSON: {e}")),
                Line::Bad(why) => Err(why),
            };
            let record = match record {
                Ok(record) => record,
                Err(why) => {
                    // What is left may still name the operation's objects, even if it cannot be trusted.
                    let body = if line.len() >= 9 && line[line.len() - 9] == b'\t' { &line[..line.len() - 9] } else { line };
                    let operation = serde_json::from_slice::<Value>(body).ok().as_ref().and_then(accepted);
                    let (seq, operation) = match operation {
                        Some((seq, method, args)) => (seq, Some((method, args))),
                        None => (None, None),
                    };
                    damaged.push(Damaged { line: i + 1, why, operation, seq });
                    continue;
                }
            };
            if let Some(seq) = record.get("done").and_then(Value::as_u64) {
                ops.remove(&seq);
                done.insert(seq);
            } else if let Some((Some(seq), method, args)) = accepted(&record) {
                sound.insert(seq);
                ops.insert(seq, (method, args));
                next = next.max(seq.saturating_add(1));
            } else {
                damaged.push(Damaged { line: i + 1, why: "neither an operation nor a done mark".into(), operation: None, seq: None });
            }
        }
        // A failed write that could not be cut back leaves the start of its line, and the next record takes
        // its sequence number: a damaged record whose number a later record (sound or not) holds was never
        // accepted, and nothing waits for it. What is left has numbers of its own, for its done mark.
        let mut later = sound;
        damaged.reverse();
        damaged.retain(|d| {
            let Some(seq) = d.seq else { return true };
            let reused = !later.insert(seq);
            if reused {
                tracing::info!(
                    "{} line {}: the start of a write that failed (its sequence number {seq} was used again); never accepted",
                    path.display(),
                    d.line
                );
            }
            !reused
        });
        damaged.reverse();
        next = damaged.iter().filter_map(|d| d.seq).fold(next, |next, seq| next.max(seq.saturating_add(1)));
        // A damaged operation whose done mark survived was applied, or its objects reported ERROR since:
        // nothing is waiting for it.
        let damaged: Vec<Damaged> = damaged.into_iter().filter(|d| !d.seq.is_some_and(|s| done.contains(&s))).collect();
        for d in &damaged {
            crate::metrics::INBOX_BAD_RECORDS.inc();
            let named = d.operation.as_ref().map_or("nothing can be named".to_string(), |(m, _)| format!("a {m}: its objects are reported ERROR"));
            tracing::error!("{} line {}: damaged record skipped ({}); {named}", path.display(), d.line, d.why);
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path).with_context(|| format!("opening {}", path.display()))?;
        file.set_len(complete as u64)?;
        let pending: Vec<Pending> = ops.into_iter().map(|(seq, (m, a))| (seq, m, a)).collect();
        let file = sink(file);
        let syncer = file.syncer().with_context(|| format!("opening {} for syncing", path.display()))?;
        // Damaged operations are pending too until reported (`done` with their sequence number): the file
        // is not emptied before.
        let reported_later = damaged.iter().filter(|d| d.seq.is_some()).count();
        let state = State { file, len: complete as u64, appended: 0, torn: false, next, pending: pending.len() + reported_later };
        let durable = Mutex::new(Durable { synced: 0, syncing: false, lost: Vec::new() });
        let inbox = Inbox { path: path.to_path_buf(), state: Mutex::new(state), syncer, durable, synced_more: Condvar::new() };
        Ok(Opened { inbox, pending, damaged })
    }

    /// Records an operation durably; returns its sequence number. On failure nothing of it stays.
    pub fn accept(&self, method: &str, args: &Value) -> Result<u64> {
        let appended = self.append(method, args)?;
        self.confirm(&appended)?;
        Ok(appended.seq)
    }

    /// Appends an operation's record without waiting for it to be durable: `durable` does. Appends are
    /// ordered, so a caller that queues the operation while appending keeps the two orders the same.
    pub fn append(&self, method: &str, args: &Value) -> Result<Appended> {
        let mut state = self.state.lock().unwrap();
        let seq = state.next;
        state.append(&json!({"seq": seq, "method": method, "args": args}), false).with_context(|| format!("appending to {}", self.path.display()))?;
        state.next += 1;
        state.pending += 1;
        Ok(Appended { seq, end: state.appended })
    }

    /// Waits until the record is durable (syncing when no other thread is). An error means a failed
    /// sync cut it off: it was never accepted.
    pub fn durable(&self, appended: &Appended) -> Result<()> {
        self.sync_through(appended.end).with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Whether a failed sync cut the record off (its cast was refused). Never waits: a record not yet
    /// synced is not lost (yet).
    pub fn lost(&self, appended: &Appended) -> bool {
        let end = appended.end;
        self.durable.lock().unwrap().lost.iter().any(|&(from, to)| from < end && end <= to)
    }

    /// `durable`, for the one that answers the cast: a record a failed sync cut off is no longer
    /// pending (the cast is refused).
    pub fn confirm(&self, appended: &Appended) -> Result<()> {
        let durable = self.durable(appended);
        if durable.is_err() {
            let mut state = self.state.lock().unwrap();
            state.pending = state.pending.saturating_sub(1);
        }
        durable
    }

    /// Waits until a sync covers what was appended up to `end`, syncing itself when no other thread is.
    fn sync_through(&self, end: u64) -> std::io::Result<()> {
        let mut durable = self.durable.lock().unwrap();
        loop {
            if durable.lost.iter().any(|&(from, to)| from < end && end <= to) {
                return Err(std::io::Error::other("a failed sync cut the record off"));
            }
            if durable.synced >= end {
                return Ok(());
            }
            if durable.syncing {
                durable = self.synced_more.wait(durable).unwrap();
                continue;
            }
            durable.syncing = true;
            let synced = durable.synced;
            drop(durable);
            // While `syncing` is set no other thread syncs or cuts, and no compaction runs (this
            // thread's record is pending).
            let target = self.state.lock().unwrap().appended;
            crate::metrics::INBOX_SYNCS.inc();
            let outcome = (self.syncer)();
            // Everything appended since the last sync is cut off, what was appended meanwhile too.
            let cut = outcome.as_ref().err().map(|_| {
                let mut state = self.state.lock().unwrap();
                let unsynced = state.appended - synced;
                let keep = state.len.saturating_sub(unsynced);
                state.torn = state.file.truncate(keep).is_err() || state.torn;
                state.len = keep;
                state.appended
            });
            durable = self.durable.lock().unwrap();
            durable.syncing = false;
            match cut {
                None => durable.synced = durable.synced.max(target),
                Some(to) => {
                    durable.lost.push((synced, to));
                    durable.synced = to;
                }
            }
            self.synced_more.notify_all();
            outcome?;
        }
    }

    /// Marks an operation applied. Not fsynced: losing the mark only means applying it once more.
    pub fn done(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        if let Err(e) = state.append(&json!({"done": seq}), false) {
            tracing::warn!("inbox {}: could not mark {seq} done: {e}", self.path.display());
        }
        state.pending = state.pending.saturating_sub(1);
        if state.pending == 0 && state.len > COMPACT_BYTES {
            match state.file.truncate(0) {
                Ok(()) => {
                    state.len = 0;
                    // Nothing is waiting for a sync (nothing is pending), and the file is empty.
                    let appended = state.appended;
                    self.durable.lock().unwrap().synced = appended;
                    if let Err(e) = state.file.sync() {
                        tracing::warn!("inbox {}: compacted but not synced: {e}", self.path.display());
                    }
                }
                Err(e) => tracing::warn!("inbox {}: could not compact: {e}", self.path.display()),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("loxilb-inbox-{tag}-{}-{}", std::process::id(), crate::caps::clock::now_ms()))
    }

    #[test]
    fn accepted_operations_without_done_marks_come_back_in_order() {
        let path = temp_path("order");
        let Opened { inbox, pending, .. } = Inbox::open(&path).unwrap();
        assert!(pending.is_empty());
        let a = inbox.accept("member_create", &json!({"n": 1})).unwrap();
        let b = inbox.accept("member_create", &json!({"n": 2})).unwrap();
        let c = inbox.accept("member_delete", &json!({"n": 3})).unwrap();
        inbox.done(b);
        drop(inbox);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\": 9, \"meth").unwrap();
        let Opened { inbox, pending, damaged } = Inbox::open(&path).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(pending[1].1, "member_delete");
        assert!(damaged.is_empty(), "a torn tail was never acknowledged: {damaged:?}");
        assert_eq!(inbox.accept("x", &Value::Null).unwrap(), c + 1, "sequence numbers continue");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn records_carry_a_crc_and_lines_written_before_them_still_read() {
        let path = temp_path("crc");
        // The layout of earlier releases: plain JSON lines.
        std::fs::write(&path, "{\"seq\":0,\"method\":\"member_create\",\"args\":{}}\n{\"seq\":1,\"method\":\"pool_create\",\"args\":{}}\n{\"done\":0}\n")
            .unwrap();
        let Opened { inbox, pending, damaged } = Inbox::open(&path).unwrap();
        assert_eq!(pending, vec![(1, "pool_create".to_string(), json!({}))]);
        assert!(damaged.is_empty());
        inbox.accept("member_delete", &json!({"n": 1})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap().as_bytes();
        assert_eq!(format::unframe(last), Line::Record(&last[..last.len() - 9]), "{text}");
        assert_ne!(last[last.len() - 9], b'}', "the new record is framed with a CRC");
        std::fs::remove_file(path).unwrap();
    }

    /// A record as one inbox line.
    fn line(record: Value) -> Vec<u8> {
        let mut out = Vec::new();
        format::frame(&serde_json::to_vec(&record).unwrap(), &mut out);
        out
    }

    #[test]
    fn damaged_records_are_reported_and_the_rest_is_read() {
        let path = temp_path("damaged");
        let member = json!({"loadbalancer_id": "lb", "member": {"member_id": "m1", "pool_id": "p"}});
        let mut file = line(json!({"seq": 0, "method": "pool_create", "args": {}}));
        // Bit rot in a record: its CRC fails, but it still names its objects.
        let mut rotten = line(json!({"seq": 1, "method": "member_create", "args": member}));
        let at = rotten.windows(4).position(|w| w == b"pool").unwrap();
        rotten[at] = b'P';
        file.extend(rotten);
        file.extend(b"\0\0\0\0 garbage \xff\n");
        // Damaged, but its done mark survived: it was applied, nothing waits for it.
        let mut applied = line(json!({"seq": 2, "method": "member_delete", "args": member}));
        applied[3] ^= 0x20;
        file.extend(applied);
        file.extend(line(json!({"done": 2})));
        file.extend(line(json!({"unexpected": true})));
        file.extend(line(json!({"seq": 3, "method": "pool_delete", "args": {}})));
        file.extend(b"{\"seq\": 4, \"met");
        std::fs::write(&path, &file).unwrap();
        let before = crate::metrics::INBOX_BAD_RECORDS.get();
        let Opened { pending, damaged, .. } = Inbox::open(&path).expect("a damaged inbox still opens");
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(damaged.iter().map(|d| d.line).collect::<Vec<_>>(), vec![2, 3, 6], "{damaged:?}");
        assert!(damaged[0].why.contains("CRC"), "{damaged:?}");
        let (method, args) = damaged[0].operation.as_ref().unwrap();
        assert_eq!((method.as_str(), &args["member"]["member_id"]), ("member_create", &json!("m1")));
        assert!(damaged[1].operation.is_none() && damaged[2].operation.is_none());
        assert!(crate::metrics::INBOX_BAD_RECORDS.get() >= before + 3);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_damaged_record_is_settled_by_its_done_mark_and_one_whose_number_came_again_was_never_accepted() {
        let path = temp_path("settled");
        let rotten = |record: Value| {
            let mut out = line(record);
            let at = out.windows(6).position(|w| w == b"create").unwrap();
            out[at] = b'C';
            out
        };
        let member = json!({"loadbalancer_id": "lb", "member": {"member_id": "m1", "pool_id": "p"}});
        let mut file = line(json!({"seq": 0, "method": "pool_create", "args": {}}));
        file.extend(rotten(json!({"seq": 5, "method": "member_create", "args": member})));
        // A write that failed and could not be cut back, then the record that took its number.
        file.extend(rotten(json!({"seq": 1, "method": "member_create", "args": member})));
        file.extend(line(json!({"seq": 1, "method": "pool_create", "args": {}})));
        std::fs::write(&path, &file).unwrap();
        let Opened { inbox, pending, damaged } = Inbox::open(&path).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(damaged.iter().map(|d| (d.line, d.seq)).collect::<Vec<_>>(), vec![(2, Some(5))], "{damaged:?}");
        // New records are numbered past the damaged one, whose done mark must settle it alone.
        assert_eq!(inbox.accept("member_update", &json!({})).unwrap(), 6);
        inbox.done(5);
        let Opened { pending, damaged, .. } = Inbox::open(&path).unwrap();
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 6]);
        std::fs::remove_file(path).unwrap();
    }

    /// A file on a disk that fills up: writes stop after `budget` bytes, syncs and truncations fail
    /// while told to.
    #[derive(Clone, Default)]
    pub(crate) struct Disk {
        budget: Arc<Mutex<Option<usize>>>,
        pub(crate) sync_fails: Arc<Mutex<bool>>,
        truncate_fails: Arc<Mutex<bool>>,
        sync_takes: Arc<Mutex<std::time::Duration>>,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct FullDisk(File, Disk);

    /// An inbox on a `FullDisk`, and the handle that controls the disk.
    pub(crate) fn open_on(tag: &str, disk: Disk) -> (PathBuf, Inbox, Disk) {
        let path = temp_path(tag);
        let control = disk.clone();
        let Opened { inbox, .. } = Inbox::open_over(&path, move |f| Box::new(FullDisk(f, disk))).unwrap();
        (path, inbox, control)
    }

    impl Sink for FullDisk {
        fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
            match *self.1.budget.lock().unwrap() {
                Some(n) if n < bytes.len() => {
                    self.0.write_all(&bytes[..n])?;
                    Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
                }
                _ => self.0.write_all(bytes),
            }
        }
        fn sync(&mut self) -> std::io::Result<()> {
            if *self.1.sync_fails.lock().unwrap() {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            self.0.sync_data()
        }
        fn truncate(&mut self, len: u64) -> std::io::Result<()> {
            if *self.1.truncate_fails.lock().unwrap() {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            self.0.set_len(len)
        }
        fn syncer(&self) -> std::io::Result<Syncer> {
            let (file, disk) = (self.0.try_clone()?, self.1.clone());
            Ok(Box::new(move || {
                disk.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(*disk.sync_takes.lock().unwrap());
                if *disk.sync_fails.lock().unwrap() {
                    return Err(std::io::Error::from_raw_os_error(libc::EIO));
                }
                file.sync_data()
            }))
        }
        fn size(&self) -> std::io::Result<u64> {
            self.0.size()
        }
    }

    #[test]
    fn a_failed_write_is_cut_back_and_loses_nothing() {
        let (path, inbox, control) = open_on("full", Disk::default());
        let a = inbox.accept("member_create", &json!({"n": 1})).unwrap();
        *control.budget.lock().unwrap() = Some(10);
        assert!(inbox.accept("member_create", &json!({"n": 2})).is_err());
        *control.budget.lock().unwrap() = None;
        *control.sync_fails.lock().unwrap() = true;
        assert!(inbox.accept("member_create", &json!({"n": 3})).is_err(), "an unsynced record is not accepted");
        *control.sync_fails.lock().unwrap() = false;
        let b = inbox.accept("member_update", &json!({"n": 4})).unwrap();
        // A done mark cut short must not swallow the record after it either.
        *control.budget.lock().unwrap() = Some(3);
        inbox.done(a);
        *control.budget.lock().unwrap() = None;
        let c = inbox.accept("member_delete", &json!({"n": 5})).unwrap();
        let Opened { pending, damaged, .. } = Inbox::open(&path).expect("the host starts");
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(pending.iter().map(|p| (p.0, p.2["n"].as_u64().unwrap())).collect::<Vec<_>>(), vec![(a, 1), (b, 4), (c, 5)]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_write_that_cannot_be_cut_back_costs_only_itself() {
        let (path, inbox, control) = open_on("uncut", Disk::default());
        *control.budget.lock().unwrap() = Some(12);
        *control.truncate_fails.lock().unwrap() = true;
        assert!(inbox.accept("member_create", &json!({"n": 1})).is_err());
        *control.budget.lock().unwrap() = None;
        let b = inbox.accept("member_create", &json!({"n": 2})).unwrap();
        // The truncation works again, a sync fails: what is cut off is that record, not the end of b.
        *control.truncate_fails.lock().unwrap() = false;
        *control.sync_fails.lock().unwrap() = true;
        assert!(inbox.accept("member_create", &json!({"n": 3})).is_err());
        *control.sync_fails.lock().unwrap() = false;
        let d = inbox.accept("member_create", &json!({"n": 4})).unwrap();
        let Opened { pending, damaged, .. } = Inbox::open(&path).expect("the host starts");
        assert_eq!(pending.iter().map(|p| (p.0, p.2["n"].as_u64().unwrap())).collect::<Vec<_>>(), vec![(b, 2), (d, 4)]);
        assert_eq!(damaged.len(), 1, "the leftover is one damaged line of its own: {damaged:?}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_leftover_that_could_not_be_cut_is_cut_with_the_unsynced_record_after_it() {
        // The leftover of a write that could not be cut back, then a record whose sync fails: the cut went
        // back only over the records it counted, left the leftover at the end with no newline, and the next
        // accepted record was written onto it (damaged on reading, never applied nor reported).
        let (path, inbox, control) = open_on("uncut-unsynced", Disk::default());
        *control.budget.lock().unwrap() = Some(12);
        *control.truncate_fails.lock().unwrap() = true;
        assert!(inbox.accept("member_create", &json!({"n": 1})).is_err());
        *control.budget.lock().unwrap() = None;
        *control.truncate_fails.lock().unwrap() = false;
        *control.sync_fails.lock().unwrap() = true;
        assert!(inbox.accept("member_create", &json!({"n": 2})).is_err());
        *control.sync_fails.lock().unwrap() = false;
        let d = inbox.accept("member_create", &json!({"n": 3})).unwrap();
        let Opened { pending, damaged, .. } = Inbox::open(&path).expect("the host starts");
        assert_eq!(pending.iter().map(|p| (p.0, p.2["n"].as_u64().unwrap())).collect::<Vec<_>>(), vec![(d, 3)], "{damaged:?}");
        assert!(damaged.is_empty(), "{damaged:?}");
        std::fs::remove_file(path).unwrap();
    }

    /// Casts accepted at once: each waits for its record's sync, and a sync covers every record appended
    /// before it started.
    fn accept_at_once(inbox: &Arc<Inbox>, n: u64) -> Vec<Result<u64>> {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let inbox = Arc::clone(inbox);
                std::thread::spawn(move || inbox.accept("member_update", &json!({"n": i})))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    #[test]
    fn casts_accepted_at_once_share_their_syncs() {
        let (path, inbox, control) = open_on("group", Disk { sync_takes: Arc::new(Mutex::new(std::time::Duration::from_millis(30))), ..Disk::default() });
        let inbox = Arc::new(inbox);
        let accepted: Vec<u64> = accept_at_once(&inbox, 16).into_iter().map(Result::unwrap).collect();
        let syncs = control.syncs.load(std::sync::atomic::Ordering::SeqCst);
        assert!(syncs < 16, "16 casts at once made {syncs} syncs");
        let Opened { pending, .. } = Inbox::open(&path).unwrap();
        let mut on_disk: Vec<u64> = pending.iter().map(|p| p.0).collect();
        let mut accepted = accepted;
        accepted.sort_unstable();
        on_disk.sort_unstable();
        assert_eq!(on_disk, accepted);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_record_a_failed_sync_cut_off_stays_refused_after_later_syncs() {
        let (path, inbox, control) = open_on("cut-stays", Disk::default());
        *control.sync_fails.lock().unwrap() = true;
        let cut = inbox.append("member_create", &json!({"n": 1})).unwrap();
        assert!(inbox.confirm(&cut).is_err());
        *control.sync_fails.lock().unwrap() = false;
        // A later, longer record ends past where the cut one did, and is synced.
        let later = inbox.append("member_create", &json!({"n": 2, "pad": "x".repeat(200)})).unwrap();
        inbox.durable(&later).unwrap();
        // The lane's worker asks about the cut record only now: it must not be applied.
        assert!(inbox.durable(&cut).is_err(), "a cut record looked durable once a later sync passed its end");
        let Opened { pending, .. } = Inbox::open(&path).unwrap();
        assert_eq!(pending.iter().map(|p| p.0).collect::<Vec<_>>(), vec![later.seq]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_failed_shared_sync_refuses_every_cast_it_did_not_make_durable() {
        let (path, inbox, control) = open_on("group-fails", Disk { sync_takes: Arc::new(Mutex::new(std::time::Duration::from_millis(20))), ..Disk::default() });
        let inbox = Arc::new(inbox);
        let before = inbox.accept("pool_create", &json!({"n": 100})).unwrap();
        *control.sync_fails.lock().unwrap() = true;
        let outcomes = accept_at_once(&inbox, 8);
        assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
        *control.sync_fails.lock().unwrap() = false;
        let after = inbox.accept("pool_delete", &json!({"n": 200})).unwrap();
        inbox.done(before);
        let Opened { pending, damaged, .. } = Inbox::open(&path).unwrap();
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(pending.iter().map(|p| (p.0, p.2["n"].as_u64().unwrap())).collect::<Vec<_>>(), vec![(after, 200)]);
        std::fs::remove_file(path).unwrap();
    }
}
