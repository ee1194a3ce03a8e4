//! The mapping on disk: a sealed snapshot plus journal segments, with group commit.
//!
//! Why a crash never loses a record that `sync` returned for, nor leaves an unreadable store:
//! - A snapshot is written to a temporary file, fsynced, renamed over the old one, and the directory is
//!   fsynced: a crash leaves the old or the new file, never a torn one. Its checksum catches any other
//!   damage, and then the newest whole backup is used instead (loudly), never an empty mapping.
//! - A snapshot of generation `g` covers every record of segments before `g`; segment `g` is created
//!   (and the directory fsynced, with the rename) before the snapshot that names it, and the previous
//!   segment is fsynced first. So snapshot `g` + segments `g..` is always the whole history, and so is
//!   any older backup `b` + segments `b..` — segments are deleted only when no kept backup needs them.
//! - Records are appended with `write`, made durable by `sync`'s fdatasync (one for every caller waiting
//!   at that moment); each line carries a CRC. A line torn by a crash has no newline and is cut off at
//!   the next open; a line damaged otherwise fails its CRC and is skipped, and reported as damage.
//! - Damage is told from a short journal (`read_journal`): a segment is created with its header already in
//!   it (never empty on disk), and the segment before it then says `next`; a snapshot needs its own
//!   segment. A crash leaves none of what is reported: the next segment exists before the old one names it.
//! - Records are idempotent (each sets or clears one id), so replaying more of the journal than needed —
//!   after a crash between creating a segment and renaming its snapshot — changes nothing.
//! - A snapshot is written off the caller's path: `write_snapshot` fsyncs the current segment, starts
//!   segment `g` (name fsynced before any record in it is reported durable) and returns; a thread then
//!   writes, fsyncs and renames snapshot `g`. Until that rename the previous snapshot and every segment
//!   after it stay in place (segments are pruned from the snapshot generation actually on disk), so a
//!   crash or a failed write at any point leaves the previous snapshot + segments, the whole history.
//!   Reading the store waits for a write in flight, so a load never pairs a snapshot with the wrong
//!   segments.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::bytes::{FileBytes, Reading};
use super::format::{self, JournalLine, Line};
use super::{MappingStore, Snapshot};
use crate::metrics;

/// A kept backup: a sealed copy of the snapshot of one generation.
pub(super) struct Backup {
    pub path: PathBuf,
    pub generation: u64,
}

pub(super) struct Inner {
    /// The segment records are appended to (generation `cur`), and its length.
    file: File,
    len: u64,
    pub(super) cur: u64,
    /// The generation of the snapshot last read or written: replay starts at its segment.
    pub(super) base: u64,
    /// What that snapshot says about its journal (see `Follows`).
    follows: Follows,
    /// What is wrong with the journal, as the last replay (or count) found it, and a missing segment
    /// `open` had to create again (which a replay cannot see any more).
    damage: Vec<String>,
    lost: Option<String>,
    pub(super) segments: BTreeSet<u64>,
    /// Records in segments `base..=cur`, once known (counting needs a read).
    records: Option<u32>,
    /// Sequence numbers of the last record appended and of the last one known durable.
    appended: u64,
    synced: u64,
    syncing: bool,
    /// After a failed fsync the kernel may have dropped the pages it could not write, and a later fsync
    /// can succeed without them: nothing is reported durable again until a snapshot rewrites it all.
    failed: Option<String>,
    /// The start of a failed write could not be cut off the end of the current segment: nothing more is
    /// written there until it is (the next line would run on from it, and both be lost at the next load).
    torn: bool,
    /// Kept backups, oldest first; generations pinned by a backup being written.
    pub(super) backups: Vec<Backup>,
    pub(super) pins: Vec<u64>,
}

/// The snapshot and journal on disk.
pub struct FileStore {
    pub(super) path: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) name: String,
    pub(super) inner: Mutex<Inner>,
    synced: Condvar,
    /// The snapshot being written, if any. Locked before `inner` where both are held.
    writing: Mutex<Option<Writing>>,
    /// The threads deleting the segments that snapshots settled off an operation's path made obsolete.
    /// Waited for where the caller must see the journal as settled (`finish_snapshot`, `read_snapshot`):
    /// a reader of the directory then finds no segment that is on its way out.
    pruning: Mutex<Vec<std::thread::JoinHandle<()>>>,
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    fail_next_rotation_fsync: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    slow_prune: std::sync::atomic::AtomicBool,
    /// The next `sync_to` fsync waits for a message on this, then fails.
    #[cfg(test)]
    failing_sync: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The next append writes half its bytes, then fails (a disk that filled).
    #[cfg(test)]
    fail_next_append: std::sync::atomic::AtomicBool,
    /// The next cut of a failed write fails too.
    #[cfg(test)]
    fail_next_cut: std::sync::atomic::AtomicBool,
}

/// A snapshot handed to the writer thread: it is in place once the thread returns `Ok`.
struct Writing {
    generation: u64,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Seals and writes snapshot `generation` in place: temporary file, fsync, rename, directory fsync.
fn write_sealed(path: &Path, mut data: Vec<u8>, generation: u64) -> Result<(), String> {
    let start = Instant::now();
    format::check_document(&data)?;
    format::seal_in_place(&mut data, generation)?;
    write_mapping_file(path, &data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    metrics::STORAGE_SNAPSHOT_WRITE.record(start.elapsed());
    Ok(())
}

/// Deletes journal segments `prune` took out of the journal. One that cannot be deleted stays on disk
/// until the next start lists it and prunes it again.
pub(super) fn delete_segments(paths: Vec<PathBuf>) {
    paths.iter().for_each(|path| release_gradually(path));
}

pub fn segment_path(snapshot: &Path, generation: u64) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(format!(".journal.{generation}"));
    PathBuf::from(name)
}

pub(super) fn legacy_journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

fn split(path: &Path) -> Result<(PathBuf, String), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: not a file name", path.display()))?.to_string();
    Ok((dir, name))
}

/// What the directory holds for one snapshot path.
struct Listing {
    segments: BTreeSet<u64>,
    backups: Vec<Backup>,
    temporaries: Vec<PathBuf>,
}

fn list(dir: &Path, name: &str) -> Result<Listing, String> {
    let mut listing = Listing { segments: BTreeSet::new(), backups: Vec::new(), temporaries: Vec::new() };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let segment_prefix = format!("{name}.journal.");
    let backup_prefix = format!("{name}.backup-");
    let temporary_prefix = format!(".{name}");
    for entry in entries.flatten() {
        let Ok(file) = entry.file_name().into_string() else { continue };
        if let Some(g) = file.strip_prefix(&segment_prefix).and_then(|g| g.parse().ok()) {
            listing.segments.insert(g);
        } else if let Some(g) = file.strip_prefix(&backup_prefix).and_then(|rest| rest.rsplit_once("-gen")).and_then(|(_, g)| g.parse().ok()) {
            listing.backups.push(Backup { path: dir.join(&file), generation: g });
        } else if file.starts_with(&temporary_prefix) && file.contains(".tmp.") {
            listing.temporaries.push(dir.join(&file));
        }
    }
    listing.backups.sort_by(|a, b| (a.generation, &a.path).cmp(&(b.generation, &b.path)));
    Ok(listing)
}

fn fsync(file: &File, data_only: bool) -> std::io::Result<()> {
    let start = Instant::now();
    let result = if data_only { file.sync_data() } else { file.sync_all() };
    metrics::STORAGE_FSYNC.record(start.elapsed());
    result
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    fsync(&File::open(dir)?, false)
}

/// Writes `data` to `path` so that a crash leaves either the old or the new file: unique temporary file
/// (mode 0600), `sync`, rename, directory `sync`.
fn replace(path: &Path, data: &[u8], write: Writer, sync: fn(&File) -> std::io::Result<()>) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = temporary_name(path);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        write(&mut f, data)?;
        sync(&f)?;
        fs::rename(&tmp, path)?;
        sync(&File::open(dir)?)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A name beside `path` that no other file has, and that a start removes (`list`, `temporaries`).
fn temporary_name(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".{}.tmp.{}.{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), std::process::id(), unique()))
}

type Writer = fn(&mut File, &[u8]) -> std::io::Result<()>;

fn write_at_once(file: &mut File, data: &[u8]) -> std::io::Result<()> {
    file.write_all(data)
}

/// Writes `data` a slice at a time, each slice on disk before the next is written, and a pause after each.
/// Written at once, a snapshot of 50 MB (100k mappings) was still dirty in the page cache when synced, and
/// the journal's fdatasyncs meanwhile waited behind it (on ext4 a journal commit writes out the data it
/// orders): the operations' durability stalled for tens of milliseconds. Slice by slice, a journal sync
/// waits for one slice at most. Slices written back to back still stalled one journal sync in a few
/// thousand by 10–18 ms (each fdatasync also flushes the disk's write cache, holding whatever the snapshot
/// wrote since the last one); with the pause (~250 MB/s at most, a 50 MB snapshot in ~0.2 s, all off the
/// operations' path) the bench's p99 stayed under 5 ms. The final fsync still makes the whole file and its
/// metadata durable.
fn write_paced(file: &mut File, data: &[u8]) -> std::io::Result<()> {
    const SLICE: usize = 1 << 20;
    let mut offset = 0i64;
    for (i, slice) in data.chunks(SLICE).enumerate() {
        if i > 0 {
            std::thread::sleep(SLICE_PAUSE);
        }
        file.write_all(slice)?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no memory.
            if unsafe { libc::sync_file_range(file.as_raw_fd(), offset, slice.len() as i64, flags) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        offset += slice.len() as i64;
    }
    Ok(())
}

/// The pause between two slices of a mapping file (`write_paced`).
const SLICE_PAUSE: std::time::Duration = std::time::Duration::from_millis(3);

/// Lowers the calling thread's CPU priority (nice 10). The snapshot writer encodes 50 MB at 100k mappings:
/// at the same priority, on two cores, it took turns with the threads that make operations durable.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread; a failure leaves the priority as it was.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
    }
}

/// `replace` for the mapping's own files (snapshots, backups), counted in the storage metrics. The file
/// replaced is not freed by the rename: it keeps a link of its own (a temporary name, which a start
/// removes should a crash leave it) until `release_gradually` frees it, in the writer's thread.
pub(super) fn write_mapping_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let aside = temporary_name(path);
    // Nothing to keep aside for a new file; where links cannot be made, the rename frees the old one.
    let kept_aside = fs::hard_link(path, &aside).is_ok();
    let result = replace(path, data, write_paced, |f| fsync(f, false));
    if kept_aside {
        release_gradually(&aside);
    }
    result?;
    metrics::STORAGE_BYTES.add(data.len() as u64);
    Ok(())
}

/// Deletes a file that may be large a few megabytes at a time. On ext4 mounted with `discard`, the blocks
/// a transaction frees are discarded before its commit completes, and a journal fdatasync waits for that:
/// the 50 MB of a 100k-mapping snapshot, freed at once by the rename that replaced it, held every
/// operation's durability for ~12 ms. Cut down and synced step by step, each commit discards one step. A
/// file with another link (a failed replace left the original in place) is only unlinked.
pub(super) fn release_gradually(path: &Path) {
    const STEP: u64 = 4 << 20;
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        use std::os::unix::fs::MetadataExt;
        if let Some(meta) = file.metadata().ok().filter(|m| m.nlink() == 1) {
            let mut len = meta.len();
            while len > STEP {
                len -= STEP;
                if file.set_len(len).and_then(|()| file.sync_data()).is_err() {
                    break;
                }
            }
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => tracing::warn!("could not delete {}: {e}", path.display()),
        _ => {}
    }
}

/// `replace` for files other than the mapping's.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace(path, data, write_at_once, File::sync_all)
}

/// A number no other temporary file of this process has used.
fn unique() -> u64 {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// The length of the file up to and including its last newline: what a crash mid-append left whole.
fn whole_length(file: &File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 << 10;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn open_segment(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).mode(0o600).open(path)
}

/// Creates segment `generation` holding only its header, so that it is never empty on disk: written
/// aside, fsynced, renamed, directory fsynced (its name is durable before any record in it is reported
/// durable). Returns it open for appending, and its length.
fn create_segment(snapshot: &Path, generation: u64) -> Result<(File, u64), String> {
    let path = segment_path(snapshot, generation);
    let mut header = Vec::new();
    format::frame(&JournalLine::Segment(generation).record(), &mut header);
    replace(&path, &header, write_at_once, |f| fsync(f, true)).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let file = open_segment(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    Ok((file, header.len() as u64))
}

/// The journal generation a sealed snapshot names, read from its last bytes (without hashing it all).
pub(super) fn trailer_generation(file: &File) -> std::io::Result<Option<u64>> {
    Ok(trailer(file)?.map(|(generation, _)| generation))
}

/// The generation a sealed snapshot names and whether its segments carry headers, from its last bytes.
fn trailer(file: &File) -> std::io::Result<Option<(u64, bool)>> {
    let len = file.metadata()?.len();
    let n = len.min(256);
    let mut tail = vec![0u8; n as usize];
    file.read_exact_at(&mut tail, len - n)?;
    Ok(format::trailer_generation(&tail).map(|g| (g, format::trailer_headed(&tail))))
}

fn main_trailer(path: &Path) -> Option<(u64, bool)> {
    trailer(&File::open(path).ok()?).ok().flatten()
}

/// What a snapshot says about the journal that follows it.
#[derive(Clone, Copy)]
pub(super) struct Follows {
    /// The first segment to replay.
    pub base: u64,
    /// Segment `base` must exist: the snapshot was written after it was created (every snapshot with a
    /// generation was); only a new store, or a file of the first releases, has none yet.
    pub required: bool,
    /// Segments from `base` on start with a header (written by this release).
    pub headed: bool,
    /// There is a snapshot at all.
    pub snapshot: bool,
}

impl Follows {
    fn new(base: u64, headed: bool) -> Follows {
        Follows { base, required: headed || base > 0, headed, snapshot: true }
    }

    /// No snapshot yet: segment 0 is the whole history. This release creates it with a header; one of
    /// an earlier release may have none, but an empty one is then an empty mapping, which LoxiLB rebuilds.
    const NO_SNAPSHOT: Follows = Follows { base: 0, required: false, headed: false, snapshot: false };
}

/// The journal records after a snapshot, and what was found wrong with the journal: each an
/// operator-readable sentence naming the file. A damaged journal still yields every record that is whole,
/// but it is not the mapping's history any more: the caller decides (see `app::serving_policy`).
pub(super) struct Journal {
    pub records: Vec<Vec<u8>>,
    pub damage: Vec<String>,
}

/// What a segment's host lines say.
struct SegmentLines {
    empty: bool,
    headed: bool,
    next: Option<u64>,
}

/// The records of one segment, in order. A last line without its newline was torn by a crash mid-append
/// (`sync` never returned for it) and is ignored; a line that fails its CRC is skipped, loudly, and is
/// damage.
fn read_segment(path: &Path, generation: u64, out: &mut Vec<Vec<u8>>, damage: &mut Vec<String>) -> Result<SegmentLines, String> {
    let bytes = super::bytes::read_whole(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let whole = memchr::memrchr(b'\n', &bytes).map_or(0, |i| i + 1);
    if whole < bytes.len() {
        tracing::warn!("{}: ignoring a record torn by a crash at its end ({} bytes)", path.display(), bytes.len() - whole);
    }
    let mut lines = SegmentLines { empty: bytes.is_empty(), headed: false, next: None };
    // memchr finds the line breaks a vector at a time: a replay reads up to an eighth of the mapping's size.
    let mut start = 0;
    for (i, end) in memchr::memchr_iter(b'\n', &bytes[..whole]).enumerate() {
        let line = &bytes[start..end];
        start = end + 1;
        if line.is_empty() {
            continue;
        }
        match format::unframe(line) {
            Line::Record(record) => match JournalLine::parse(record) {
                None => out.push(record.to_vec()),
                Some(JournalLine::Segment(g)) if i == 0 => {
                    lines.headed = true;
                    if g != generation {
                        damage.push(format!("{} starts with the header of journal segment {g}: it is not the segment its name says", path.display()));
                    }
                }
                Some(JournalLine::Segment(_)) => {}
                Some(JournalLine::Next(g)) => lines.next = Some(g),
            },
            Line::Bad(why) => {
                metrics::STORAGE_BAD_RECORDS.inc();
                let message =
                    format!("{} line {}: a journal record fails its check ({why}) and was skipped: the change it recorded is lost", path.display(), i + 1);
                tracing::error!("{message}");
                damage.push(message);
            }
        }
    }
    Ok(lines)
}

/// Segments `follows.base..` as listed in `segments`, and what is wrong with them: a segment missing
/// before the newest one (or segment `base` itself, when the snapshot needs it), a segment without its
/// header where one is due (emptied, or cut at its start), the newest segment saying the journal goes on
/// in one that is not there (the last segment was deleted), and records failing their CRC.
pub(super) fn read_journal(snapshot: &Path, follows: Follows, segments: &BTreeSet<u64>) -> Result<Journal, String> {
    let mut journal = Journal { records: Vec::new(), damage: Vec::new() };
    let last = segments.last().copied().unwrap_or(follows.base).max(follows.base);
    let mut headers_due = follows.headed;
    for g in follows.base..=last {
        let path = segment_path(snapshot, g);
        if !segments.contains(&g) {
            if g < last || follows.required {
                journal.damage.push(format!("journal segment {} is missing: the changes recorded in it are lost", path.display()));
            }
            continue;
        }
        let lines = read_segment(&path, g, &mut journal.records, &mut journal.damage)?;
        if (headers_due || (!follows.snapshot && lines.empty)) && !lines.headed {
            journal
                .damage
                .push(format!("journal segment {} has no header: it was emptied or cut at its start, and the changes recorded in it are lost", path.display()));
        }
        // A segment continued in the next one (or one with a header) was written by this release: so is the next.
        headers_due |= lines.headed || lines.next.is_some();
        if let Some(next) = lines.next.filter(|_| g == last) {
            journal.damage.push(format!(
                "journal segment {} is missing: {} says the journal goes on in it (the last segment was deleted), and the changes recorded in it are lost",
                segment_path(snapshot, next).display(),
                path.display()
            ));
        }
    }
    Ok(journal)
}

/// Which snapshot to load, and from which generation the journal is replayed.
pub(super) enum Resolved {
    /// No snapshot was ever written (a new installation, or not compacted yet).
    Nothing,
    Main {
        document: FileBytes,
        /// Whether its checksum was there and held.
        checked: bool,
        follows: Follows,
    },
    /// The main file is corrupt or missing: the newest whole backup whose journal is complete.
    Backup { document: Vec<u8>, sealed: Vec<u8>, follows: Follows, from: PathBuf, reason: String, main_exists: bool },
}

pub(super) fn resolve(path: &Path, backups: &[Backup], segments: &BTreeSet<u64>, cur: u64, how: Reading) -> Result<Resolved, String> {
    let (reason, main_exists) = match FileBytes::read(path, how) {
        Ok(bytes) => match format::unseal(bytes) {
            Ok(u) => return Ok(Resolved::Main { follows: Follows::new(u.generation, u.headed), document: u.document, checked: u.checked }),
            Err(e) => (format!("corrupt ({e})"), true),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Segment 0 starts from an empty mapping, so with it the journal is the whole history: also
            // while the first snapshot is being written, or after its write failed or a crash cut it off
            // (segment 0 then goes on in 1); a segment missing after it is reported as damage.
            if backups.is_empty() && (segments.is_empty() || segments.contains(&0)) {
                return Ok(Resolved::Nothing);
            }
            ("missing".to_string(), false)
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let mut tried = Vec::new();
    for backup in backups.iter().rev() {
        let sealed = match fs::read(&backup.path) {
            Ok(b) => b,
            Err(e) => {
                tried.push(format!("{}: {e}", backup.path.display()));
                continue;
            }
        };
        match format::unseal(sealed.clone()) {
            Ok(u) => {
                let missing: Vec<u64> = (u.generation..=cur.max(u.generation)).filter(|g| !segments.contains(g)).collect();
                if !missing.is_empty() {
                    tried.push(format!("{}: the journal segments it needs ({missing:?}) are gone", backup.path.display()));
                    continue;
                }
                let follows = Follows::new(u.generation, u.headed);
                return Ok(Resolved::Backup { document: u.document, sealed, follows, from: backup.path.clone(), reason, main_exists });
            }
            Err(e) => tried.push(format!("{}: {e}", backup.path.display())),
        }
    }
    let message = format!(
        "mapping snapshot {} is {reason}, and no usable backup exists ({}): refusing to start with an empty mapping. \
         Put a good copy in its place, or run force-recovery to rebuild it from LoxiLB",
        path.display(),
        if tried.is_empty() { "none kept".to_string() } else { tried.join("; ") }
    );
    tracing::error!("{message}");
    Err(message)
}

/// The snapshot (or the backup a corrupt one falls back to) and its journal records, read without
/// writing anything: for tools that run beside a live host. A compaction between reading the snapshot
/// and its journal can delete a segment under the reader: then it reads again.
pub fn read_copy(path: &Path) -> Result<super::MemoryStore, String> {
    let mut attempt = 0;
    loop {
        match read_copy_once(path) {
            Err(e) if attempt < 3 => {
                tracing::debug!("reading {} again: {e}", path.display());
                attempt += 1;
            }
            // A segment deleted by a compaction, or one started by it, between listing and reading looks
            // like damage: only damage seen on every attempt is.
            Ok(store) if attempt < 3 && !store.damage().is_empty() => attempt += 1,
            result => return result,
        }
    }
}

fn read_copy_once(path: &Path) -> Result<super::MemoryStore, String> {
    let (dir, name) = split(path)?;
    let listing = list(&dir, &name)?;
    let legacy = legacy_journal_path(path);
    let cur = listing.segments.last().copied().unwrap_or(0);
    let store = super::MemoryStore::default();
    // Copied, not mapped: the serving host may release the snapshot while this reads it.
    let follows = match resolve(path, &listing.backups, &listing.segments, cur, Reading::Copy)? {
        Resolved::Nothing => Follows::NO_SNAPSHOT,
        Resolved::Main { document, follows, .. } => {
            store.write_snapshot(document.into_vec())?;
            follows
        }
        Resolved::Backup { document, follows, from, reason, .. } => {
            tracing::error!("mapping snapshot {} is {reason}; reading backup {} instead", path.display(), from.display());
            store.write_snapshot(document)?;
            follows
        }
    };
    // Listed again: a compaction may have started a segment since.
    let segments = list(&dir, &name)?.segments;
    let journal = if segments.is_empty() && legacy.exists() {
        let mut journal = Journal { records: Vec::new(), damage: Vec::new() };
        read_segment(&legacy, 0, &mut journal.records, &mut journal.damage)?;
        journal
    } else {
        read_journal(path, follows, &segments)?
    };
    for r in journal.records {
        store.append(&r)?;
    }
    Ok(store.with_damage(journal.damage))
}

/// Whether anything of the mapping at `path` is on disk: the snapshot, a journal segment (or the first
/// release's journal), or a backup.
pub fn mapping_exists(path: &Path) -> Result<bool, String> {
    let (dir, name) = split(path)?;
    let listing = list(&dir, &name)?;
    Ok(path.exists() || legacy_journal_path(path).exists() || !listing.segments.is_empty() || !listing.backups.is_empty())
}

/// Moves the mapping's files — snapshot, journal segments, backups — into a new directory
/// `<name>.damaged-<UTC time>` beside them, for the operator, and returns it. The next `FileStore::open`
/// starts an empty mapping. No store may be open on `path`.
pub fn quarantine(path: &Path) -> Result<PathBuf, String> {
    let (dir, name) = split(path)?;
    let listing = list(&dir, &name)?;
    let kept = dir.join(format!("{name}.damaged-{}", super::backup::stamp(crate::caps::clock::now_ms())));
    fs::DirBuilder::new().mode(0o700).create(&kept).map_err(|e| format!("creating {}: {e}", kept.display()))?;
    let files = [path.to_path_buf(), legacy_journal_path(path)]
        .into_iter()
        .chain(listing.segments.iter().map(|&g| segment_path(path, g)))
        .chain(listing.backups.into_iter().map(|b| b.path));
    for file in files {
        match fs::rename(&file, kept.join(file.file_name().expect("a file name"))) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(format!("moving {} into {}: {e}", file.display(), kept.display())),
            _ => {}
        }
    }
    fsync_dir(&dir).map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    Ok(kept)
}

impl FileStore {
    pub fn open(path: &Path) -> Result<FileStore, String> {
        let (dir, name) = split(path)?;
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let listing = list(&dir, &name)?;
        for tmp in &listing.temporaries {
            // Left by a crash mid-write (the file it was to replace is whole), or a replaced snapshot not
            // yet released.
            release_gradually(tmp);
        }
        let mut segments = listing.segments;
        let legacy = legacy_journal_path(path);
        if legacy.exists() {
            if segments.contains(&0) {
                tracing::warn!("{}: ignored, {} exists", legacy.display(), segment_path(path, 0).display());
            } else {
                fs::rename(&legacy, segment_path(path, 0)).map_err(|e| format!("renaming {}: {e}", legacy.display()))?;
                fsync_dir(&dir).map_err(|e| format!("fsync {}: {e}", dir.display()))?;
                segments.insert(0);
            }
        }
        let main = main_trailer(path);
        let base = main.map(|(g, _)| g).or(segments.first().copied()).unwrap_or(0);
        let follows = main.map_or(Follows::NO_SNAPSHOT, |(g, headed)| Follows::new(g, headed));
        let cur = segments.last().copied().unwrap_or(0).max(base);
        let segment = segment_path(path, cur);
        let mut lost = None;
        let file = if segments.contains(&cur) {
            open_segment(&segment).map_err(|e| format!("opening {}: {e}", segment.display()))?
        } else {
            if follows.required {
                // Appending needs the segment; the loss must still be told after it is there again.
                lost = Some(format!("journal segment {} is missing (created again, empty): the changes recorded in it are lost", segment.display()));
            }
            segments.insert(cur);
            create_segment(path, cur)?.0
        };
        let len = whole_length(&file).map_err(|e| format!("reading {}: {e}", segment.display()))?;
        if len < file.metadata().map_err(|e| e.to_string())?.len() {
            tracing::warn!("{}: cutting off a record torn by a crash", segment.display());
            file.set_len(len).and_then(|()| fsync(&file, true)).map_err(|e| format!("repairing {}: {e}", segment.display()))?;
        }
        Ok(FileStore {
            path: path.to_path_buf(),
            dir,
            name,
            inner: Mutex::new(Inner {
                file,
                len,
                cur,
                base,
                follows,
                damage: Vec::new(),
                lost,
                segments,
                records: None,
                appended: 0,
                synced: 0,
                syncing: false,
                failed: None,
                torn: false,
                backups: listing.backups,
                pins: Vec::new(),
            }),
            synced: Condvar::new(),
            writing: Mutex::new(None),
            pruning: Mutex::new(Vec::new()),
            #[cfg(test)]
            fail_next_write: Default::default(),
            #[cfg(test)]
            fail_next_rotation_fsync: Default::default(),
            #[cfg(test)]
            slow_prune: Default::default(),
            #[cfg(test)]
            failing_sync: Default::default(),
            #[cfg(test)]
            fail_next_append: Default::default(),
            #[cfg(test)]
            fail_next_cut: Default::default(),
        })
    }

    fn writing(&self) -> MutexGuard<'_, Option<Writing>> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the outcome of the snapshot write in flight, waiting for it if `wait`. Once it is in
    /// place the journal before it is pruned; if it failed, the previous snapshot and every segment since
    /// still hold the history, and the journal counts from that snapshot again (so the mapping compacts
    /// again soon).
    fn settle(&self, writing: &mut Option<Writing>, wait: bool) -> Option<Result<(), String>> {
        let w = writing.take_if(|w| wait || w.thread.is_finished())?;
        let result = w.thread.join().unwrap_or_else(|_| Err("the snapshot writer panicked".into()));
        let mut inner = self.lock();
        let obsolete = match &result {
            Ok(()) => {
                if w.generation >= inner.base {
                    (inner.base, inner.follows) = (w.generation, Follows::new(w.generation, true));
                }
                metrics::STORAGE_SNAPSHOTS.inc();
                self.prune(&mut inner)
            }
            Err(e) => {
                metrics::STORAGE_ERRORS.inc();
                tracing::error!("{e}; the previous snapshot and the journal since it still hold the mapping");
                inner.records = None;
                Vec::new()
            }
        };
        drop(inner);
        // Not on an operation's path (`wait` is false there): a thread of its own deletes them.
        if wait || obsolete.is_empty() {
            delete_segments(obsolete);
        } else {
            #[cfg(test)]
            let slow = self.slow_prune.load(Ordering::SeqCst);
            let spawned = std::thread::Builder::new().name("mapping-prune".into()).spawn(move || {
                #[cfg(test)]
                if slow {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
                delete_segments(obsolete)
            });
            match spawned {
                Ok(thread) => {
                    let mut pruning = self.pruning.lock().unwrap_or_else(|e| e.into_inner());
                    pruning.retain(|t| !t.is_finished());
                    pruning.push(thread);
                }
                Err(e) => tracing::warn!("could not start deleting obsolete journal segments: {e}"),
            }
        }
        Some(result)
    }

    /// Waits for the deletions of obsolete segments started off an operation's path.
    fn wait_for_pruning(&self) {
        let threads = std::mem::take(&mut *self.pruning.lock().unwrap_or_else(|e| e.into_inner()));
        threads.into_iter().for_each(|t| drop(t.join()));
    }

    /// Waits until the snapshot last handed to `write_snapshot` is in place, and says whether it is.
    pub fn finish_snapshot(&self) -> Result<(), String> {
        let mut writing = self.writing();
        let result = self.settle(&mut writing, true).unwrap_or(Ok(()));
        self.wait_for_pruning();
        result
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The journal generation appended to now.
    pub fn generation(&self) -> u64 {
        self.lock().cur
    }

    /// The kept backups, oldest first.
    pub fn backups(&self) -> Vec<PathBuf> {
        self.lock().backups.iter().map(|b| b.path.clone()).collect()
    }

    /// Starts appending to a new segment `generation` (when a snapshot names one beyond the last).
    fn start_segment(&self, inner: &mut Inner, generation: u64) -> Result<(), String> {
        let (file, len) = create_segment(&self.path, generation)?;
        inner.file = file;
        inner.len = len;
        inner.cur = generation;
        inner.segments.insert(generation);
        Ok(())
    }

    /// Takes the segments that neither the snapshot nor any kept (or in-progress) backup needs out of the
    /// journal, for the caller to delete (`delete_segments`) once it has let go of the lock: deleting a
    /// large segment took 1–4 ms, and every append waits for the lock.
    pub(super) fn prune(&self, inner: &mut Inner) -> Vec<PathBuf> {
        let needed = inner.backups.iter().map(|b| b.generation).chain(inner.pins.iter().copied()).fold(inner.base, u64::min);
        let obsolete: Vec<u64> = inner.segments.range(..needed).copied().collect();
        obsolete
            .into_iter()
            .map(|g| {
                inner.segments.remove(&g);
                segment_path(&self.path, g)
            })
            .collect()
    }

    fn count(&self, inner: &mut Inner) -> u32 {
        match inner.records {
            Some(n) => n,
            None => self.scan(inner).map_or(0, |r| r.len() as u32),
        }
    }

    /// Reads the journal since the snapshot, counts it and notes what is wrong with it.
    fn scan(&self, inner: &mut Inner) -> Result<Vec<Vec<u8>>, String> {
        let follows = Follows { base: inner.base, ..inner.follows };
        let journal = read_journal(&self.path, follows, &inner.segments)?;
        inner.damage = inner.lost.iter().cloned().chain(journal.damage).collect();
        inner.records = Some(journal.records.len() as u32);
        metrics::STORAGE_JOURNAL_RECORDS.set(journal.records.len() as u64);
        Ok(journal.records)
    }

    /// The sequence number (see `MappingStore::appended`) up to which records are known durable.
    pub fn durable(&self) -> u64 {
        self.lock().synced
    }

    /// Cuts the current segment back to its last whole line, after a failed write; whether it did.
    fn cut_back(&self, inner: &mut Inner) -> bool {
        #[cfg(test)]
        if self.fail_next_cut.swap(false, Ordering::SeqCst) {
            inner.torn = true;
            return false;
        }
        inner.torn = inner.file.set_len(inner.len).is_err();
        !inner.torn
    }

    fn write_lines(&self, inner: &mut Inner, lines: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_next_append.swap(false, Ordering::SeqCst) {
            inner.file.write_all(&lines[..lines.len() / 2])?;
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        inner.file.write_all(lines)
    }

    /// Appends `records` with one write; a failed write is cut back to where it started, so none is.
    fn write_records<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<(), String> {
        let mut lines = Vec::with_capacity(records.iter().map(|r| r.as_ref().len() + 10).sum());
        for record in records {
            let record = record.as_ref();
            if record.contains(&b'\n') {
                return Err("journal records must be single-line".into());
            }
            format::frame(record, &mut lines);
        }
        let mut inner = self.lock();
        let segment = segment_path(&self.path, inner.cur);
        let written = if inner.torn && !self.cut_back(&mut inner) {
            Err(format!("appending to {}: the end of a failed write is still to be cut off", segment.display()))
        } else {
            self.write_lines(&mut inner, &lines).map_err(|e| format!("appending to {}: {e}", segment.display()))
        };
        if let Err(e) = written {
            metrics::STORAGE_ERRORS.inc();
            // A partial line would swallow the next record: cut it off (if that fails too, before the
            // next write).
            if !inner.torn {
                self.cut_back(&mut inner);
            }
            // The changes stay in memory, and only a snapshot can make them durable: until one has, the
            // operation that made them (its number, past every record written) is not durable.
            inner.appended += 1;
            inner.failed.get_or_insert_with(|| e.clone());
            return Err(e);
        }
        let count = records.len() as u32;
        inner.len += lines.len() as u64;
        inner.appended += count as u64;
        if let Some(n) = inner.records.as_mut() {
            *n += count;
            metrics::STORAGE_JOURNAL_RECORDS.set(*n as u64);
        }
        metrics::STORAGE_WRITES.add(count as u64);
        metrics::STORAGE_BYTES.add(lines.len() as u64);
        Ok(())
    }
}

impl Drop for FileStore {
    /// A snapshot in flight is finished before the store goes away (a restart need not replay its journal).
    fn drop(&mut self) {
        let _ = self.finish_snapshot();
    }
}

impl MappingStore for FileStore {
    fn snapshot_in_flight(&self) -> bool {
        self.writing().as_ref().is_some_and(|w| !w.thread.is_finished())
    }
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        let mut writing = self.writing();
        self.settle(&mut writing, true);
        self.wait_for_pruning();
        let mut inner = self.lock();
        // Mapped: this process owns the files, and its snapshot writer is settled and held off.
        let resolved = resolve(&self.path, &inner.backups, &inner.segments, inner.cur, Reading::MayMap);
        let (document, follows) = match resolved? {
            Resolved::Nothing => (None, Follows::NO_SNAPSHOT),
            Resolved::Main { document, checked, follows } => (Some(Snapshot { document, verified: checked }), follows),
            Resolved::Backup { document, sealed, follows, from, reason, main_exists } => {
                let base = follows.base;
                metrics::STORAGE_FALLBACKS.inc();
                // Put the backup in place of the bad file, so the next start does not fall back again, and
                // keep the bad one for the operator.
                let stamp = super::backup::stamp(crate::caps::clock::now_ms());
                let kept = self.dir.join(format!("{}.corrupt-{stamp}", self.name));
                let kept = if main_exists { fs::rename(&self.path, &kept).ok().map(|()| kept) } else { None };
                let restored = write_mapping_file(&self.path, &sealed);
                tracing::error!(
                    "mapping snapshot {} is {reason}: loaded backup {} (journal generation {base}) and replaying journal segments {base}..={}{}{}",
                    self.path.display(),
                    from.display(),
                    inner.cur.max(base),
                    kept.map(|k| format!("; the bad file is kept as {}", k.display())).unwrap_or_default(),
                    match restored {
                        Ok(()) => format!("; {} now holds the backup", self.path.display()),
                        Err(e) => format!("; could not put the backup in place ({e})"),
                    }
                );
                // A rare path: the load checks every line of it again.
                (Some(Snapshot::unverified(document)), follows)
            }
        };
        let base = follows.base;
        if base > inner.cur {
            if follows.required {
                inner.lost = Some(format!(
                    "journal segment {} is missing (created again, empty): the changes recorded in it are lost",
                    segment_path(&self.path, base).display()
                ));
            }
            self.start_segment(&mut inner, base)?;
        }
        (inner.base, inner.follows) = (base, follows);
        inner.records = None;
        Ok(document)
    }

    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        // A document that would be refused is refused before the journal moves on.
        format::check_document(&data)?;
        self.write_snapshot_with(Box::new(move || data))
    }

    fn write_snapshot_with(&self, encode: super::SnapshotEncoder) -> Result<(), String> {
        let mut writing = self.writing();
        // One write at a time: the next snapshot's journal starts where this one's ends.
        self.settle(&mut writing, true);
        let mut inner = self.lock();
        // A journal fsync under way may fail: it must have said so before this one counts the records
        // durable. (Linux reports a failed writeback to one fsync of a file only, so this one could
        // succeed without the pages that one lost.)
        while inner.syncing {
            inner = self.synced.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
        let next = inner.cur + 1;
        let rotated = (|| {
            // The next segment exists (with its header, its name durable) before this one says the journal
            // goes on in it: a crash in between leaves a segment that is simply not continued.
            let (file, len) = create_segment(&self.path, next)?;
            // The snapshot on disk until the new one is renamed into place (and any backup) replays this
            // segment: it must be whole on disk, its `next` line included.
            let mut marker = Vec::new();
            // The start of a failed write that could not be cut off ends its own (damaged) line: this
            // segment is replayed only until the snapshot is in place.
            if inner.torn && !self.cut_back(&mut inner) {
                marker.push(b'\n');
            }
            format::frame(&JournalLine::Next(next).record(), &mut marker);
            let old = segment_path(&self.path, inner.cur);
            if let Err(e) = inner.file.write_all(&marker) {
                // A partial line would swallow the next record: cut it off.
                self.cut_back(&mut inner);
                return Err(format!("appending to {}: {e}", old.display()));
            }
            #[cfg(test)]
            let synced = if self.fail_next_rotation_fsync.swap(false, Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            } else {
                fsync(&inner.file, true)
            };
            #[cfg(not(test))]
            let synced = fsync(&inner.file, true);
            if let Err(e) = synced {
                // Linux reports a failed writeback once per open file: a later fsync of this segment would
                // succeed without the pages it lost. Its records are durable only through the next snapshot.
                let message = format!("fsync {}: {e}", old.display());
                tracing::error!("{message}");
                inner.failed = Some(message.clone());
                return Err(message);
            }
            Ok::<_, String>((file, len))
        })();
        let (file, len) = rotated.inspect_err(|_| metrics::STORAGE_ERRORS.inc())?;
        inner.file = file;
        inner.len = len;
        inner.torn = false;
        inner.cur = next;
        inner.segments.insert(next);
        inner.records = Some(0);
        metrics::STORAGE_JOURNAL_RECORDS.set(0);
        // After a failed fsync the records before this point are durable only through the snapshot: it is
        // written before returning, and then they are. Those appended meanwhile, to the new segment, are
        // not: they wait for its fsync.
        let repairs = inner.failed.is_some();
        let rotated_at = inner.appended;
        if !repairs {
            inner.synced = rotated_at;
        }
        drop(inner);
        self.synced.notify_all();
        let path = self.path.clone();
        #[cfg(test)]
        let encode: super::SnapshotEncoder = if self.fail_next_write.swap(false, Ordering::SeqCst) { Box::new(|| b"not a document".to_vec()) } else { encode };
        // Encoded by the writer: the records appended from now on go to the new segment, whatever the
        // document's encoding takes.
        let spawned = std::thread::Builder::new().name("mapping-snapshot".into()).spawn(move || {
            background_priority();
            write_sealed(&path, encode(), next)
        });
        let thread = spawned.map_err(|e| {
            metrics::STORAGE_ERRORS.inc();
            self.lock().records = None;
            format!("starting the snapshot writer: {e}")
        })?;
        *writing = Some(Writing { generation: next, thread });
        if repairs {
            self.settle(&mut writing, true).expect("a write is in flight")?;
            let mut inner = self.lock();
            inner.synced = inner.synced.max(rotated_at);
            inner.failed = None;
            drop(inner);
            self.synced.notify_all();
        }
        Ok(())
    }

    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.write_records(std::slice::from_ref(&record))
    }

    fn append_all(&self, records: &[Vec<u8>]) -> Result<(), String> {
        self.write_records(records)
    }

    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        let mut writing = self.writing();
        self.settle(&mut writing, true);
        let mut inner = self.lock();
        self.scan(&mut inner)
    }

    fn journal_length(&self) -> u32 {
        // Asked after every operation: never wait here for a backup that is waiting for the writer.
        match self.writing.try_lock() {
            Ok(mut writing) => drop(self.settle(&mut writing, false)),
            Err(std::sync::TryLockError::Poisoned(e)) => drop(self.settle(&mut e.into_inner(), false)),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        let mut inner = self.lock();
        self.count(&mut inner)
    }

    fn damage(&self) -> Vec<String> {
        let mut inner = self.lock();
        self.count(&mut inner);
        inner.damage.clone()
    }

    fn sync(&self) -> Result<(), String> {
        let target = self.lock().appended;
        self.sync_to(target)
    }

    fn appended(&self) -> u64 {
        self.lock().appended
    }

    fn sync_to(&self, seq: u64) -> Result<(), String> {
        let mut inner = self.lock();
        loop {
            if inner.synced >= seq {
                return Ok(());
            }
            if let Some(e) = &inner.failed {
                return Err(format!("journal not durable since an earlier fsync failed ({e}); the next snapshot repairs it"));
            }
            if !inner.syncing {
                break;
            }
            inner = self.synced.wait(inner).unwrap_or_else(|e| e.into_inner());
        }
        // This caller syncs for everyone who appended before it; the others wait for its result.
        inner.syncing = true;
        let upto = inner.appended;
        let before = inner.synced;
        let file = inner.file.try_clone();
        let generation = inner.cur;
        drop(inner);
        #[cfg(test)]
        let result = match self.failing_sync.lock().unwrap().take() {
            Some(go) => {
                let _ = go.recv();
                Err(std::io::Error::from_raw_os_error(libc::EIO))
            }
            None => file.and_then(|f| fsync(&f, true)),
        };
        #[cfg(not(test))]
        let result = file.and_then(|f| fsync(&f, true));
        let mut inner = self.lock();
        inner.syncing = false;
        // A failure recorded meanwhile (a rotation's fsync) may have taken this file's error report.
        let result = match (&inner.failed, result) {
            (Some(e), Ok(())) => Err(std::io::Error::other(e.clone())),
            (_, result) => result,
        };
        let outcome = match result {
            Ok(()) => {
                inner.synced = inner.synced.max(upto);
                metrics::STORAGE_GROUP_COMMITS.inc();
                metrics::STORAGE_GROUP_COMMIT_RECORDS.add(upto.saturating_sub(before));
                Ok(())
            }
            Err(e) => {
                metrics::STORAGE_ERRORS.inc();
                let message = format!("fsync {}: {e}", segment_path(&self.path, generation).display());
                tracing::error!("{message}");
                inner.failed = Some(message.clone());
                Err(message)
            }
        };
        drop(inner);
        self.synced.notify_all();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!("loxilb-store-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_file_released_gradually_is_gone_but_a_file_with_another_link_is_left_whole() {
        let dir = temp_dir("release");
        fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..(9usize << 20) + 3).map(|i| (i % 251) as u8).collect();
        let (live, aside) = (dir.join("live"), dir.join("aside"));
        fs::write(&live, &data).unwrap();
        fs::hard_link(&live, &aside).unwrap();
        release_gradually(&aside);
        assert!(!aside.exists());
        assert_eq!(fs::read(&live).unwrap(), data, "a file still linked elsewhere is not cut down");
        release_gradually(&live);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        release_gradually(&live);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mapping_file_written_slice_by_slice_is_whole_and_private() {
        let dir = temp_dir("paced");
        let path = dir.join("mappings.json");
        // Two whole slices and a part of a third, with a pause after each of the first two.
        let data: Vec<u8> = (0..(5usize << 19) + 7).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        write_mapping_file(&path, &data).unwrap();
        assert!(started.elapsed() >= 2 * SLICE_PAUSE, "paced: {:?}", started.elapsed());
        assert_eq!(fs::read(&path).unwrap(), data);
        assert_eq!(mode(&path), 0o600);
        write_mapping_file(&path, b"shorter").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"shorter", "replaced, not overwritten in place");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_appended_together_are_all_appended_in_order_or_none_is() {
        let dir = temp_dir("together");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        let records: Vec<Vec<u8>> = (0..1000).map(|i| format!("{{\"r\":{i}}}").into_bytes()).collect();
        store.append_all(&records).unwrap();
        assert_eq!((store.journal_length(), store.appended()), (1000, 1000));
        // A batch with a record that cannot be framed is refused whole.
        let bad = vec![b"{\"ok\":1}".to_vec(), b"two\nlines".to_vec()];
        assert!(store.append_all(&bad).is_err());
        assert_eq!(store.journal_length(), 1000);
        store.sync().unwrap();
        drop(store);
        assert_eq!(FileStore::open(&path).unwrap().replay().unwrap(), records);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn journal_survives_reopen_and_drops_a_torn_tail() {
        let dir = temp_dir("torn");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(segment_path(&path, 0)).unwrap();
        f.write_all(b"{\"torn\":").unwrap();
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.read_snapshot().unwrap(), None);
        assert_eq!(store.replay().unwrap(), vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        store.append(b"{\"c\":3}").unwrap();
        store.write_snapshot(b"{\n  \"x\": 1\n}".to_vec()).unwrap();
        assert_eq!(store.journal_length(), 0);
        assert!(store.replay().unwrap().is_empty());
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\n  \"x\": 1\n}".to_vec());
        assert_eq!(store.generation(), 1);
        // Without backups the old segment is not needed any more.
        assert!(!segment_path(&path, 0).exists());
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&segment_path(&path, 1)), 0o600);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_journal_continues_in_a_new_segment_while_the_snapshot_is_written() {
        let dir = temp_dir("handoff");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        // Appended and synced whether or not the snapshot is in place yet.
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        assert_eq!(store.journal_length(), 1);
        assert_eq!(store.generation(), 1);
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\"v\":1\n}".to_vec());
        assert_eq!(store.replay().unwrap(), vec![b"{\"b\":2}".to_vec()]);
        assert!(!segment_path(&path, 0).exists());
        // Dropping the store finishes a write in flight: the next process finds it in place.
        store.write_snapshot(b"{\"v\":2\n}".to_vec()).unwrap();
        drop(store);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\"v\":2\n}".to_vec());
        assert!(store.replay().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn segments_deleted_off_the_operation_path_are_gone_once_the_snapshot_is_finished() {
        let dir = temp_dir("prune-wait");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.slow_prune.store(true, Ordering::SeqCst);
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        while store.snapshot_in_flight() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // As after an operation: the write is taken in, its obsolete segment deleted by a thread of its own.
        assert_eq!(store.journal_length(), 0);
        store.finish_snapshot().unwrap();
        assert!(!segment_path(&path, 0).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_snapshot_write_that_fails_after_the_hand_off_loses_nothing_and_is_retried() {
        let dir = temp_dir("failed-write");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_write.store(true, Ordering::SeqCst);
        store.write_snapshot(b"{\"v\":2\n}".to_vec()).unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        assert!(store.finish_snapshot().is_err());
        // The journal counts from the snapshot in place again, so the mapping compacts again soon.
        assert_eq!(store.journal_length(), 2);
        drop(store);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\"v\":1\n}".to_vec());
        assert_eq!(store.replay().unwrap(), vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        store.write_snapshot(b"{\"v\":3\n}".to_vec()).unwrap();
        store.finish_snapshot().unwrap();
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\"v\":3\n}".to_vec());
        assert!(store.replay().unwrap().is_empty());
        let segments = list(&dir, "m.json").unwrap().segments;
        assert_eq!(segments.into_iter().collect::<Vec<_>>(), vec![3]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_fsync_while_rotating_leaves_the_journal_not_durable_until_a_snapshot() {
        // The fsync that failed consumed the error: the next fsync of the segment would succeed without
        // the pages the failed one lost, and the records before it were reported durable.
        let dir = temp_dir("rotation-fsync");
        let store = FileStore::open(&dir.join("m.json")).unwrap();
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        store.finish_snapshot().unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_rotation_fsync.store(true, Ordering::SeqCst);
        assert!(store.write_snapshot(b"{\"v\":2\n}".to_vec()).is_err());
        assert!(store.sync().is_err(), "reported durable after the failed fsync");
        store.write_snapshot(b"{\"v\":3\n}".to_vec()).unwrap();
        store.sync().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_appended_while_a_repairing_snapshot_is_written_wait_for_their_own_fsync() {
        let dir = temp_dir("repair-race");
        let store = Arc::new(FileStore::open(&dir.join("m.json")).unwrap());
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        store.finish_snapshot().unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_rotation_fsync.store(true, Ordering::SeqCst);
        assert!(store.write_snapshot(b"{\"v\":2\n}".to_vec()).is_err());
        let before = store.appended();
        // Appended by an operation while the snapshot is encoded: it is in the new segment only.
        let during = Arc::clone(&store);
        let encode = move || {
            during.append(b"{\"b\":2}").unwrap();
            b"{\"v\":3\n}".to_vec()
        };
        store.write_snapshot_with(Box::new(encode)).unwrap();
        assert!(store.appended() > before);
        assert_eq!(store.durable(), before, "a record of the new segment counted durable before its fsync");
        store.sync().unwrap();
        assert_eq!(store.durable(), store.appended());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_reader_beside_the_serving_host_copies_a_large_snapshot_rather_than_mapping_it() {
        // The host releases a replaced snapshot a few megabytes at a time: a reader that mapped it would
        // fault (SIGBUS) on the pages cut off under it.
        let dir = temp_dir("copy-large");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(format!("{{\"pad\":\"{}\"\n}}", "x".repeat(5 << 20)).into_bytes()).unwrap();
        store.finish_snapshot().unwrap();
        let mapped = crate::storage::bytes::mapped_by_this_thread;
        let before = mapped();
        let copy = read_copy(&path).unwrap();
        assert_eq!(mapped(), before, "read_copy mapped the snapshot");
        assert!(copy.read_snapshot().unwrap().is_some_and(|s| s.len() > 5 << 20));
        // The host that owns the files maps it.
        assert!(store.read_snapshot().unwrap().is_some());
        assert_eq!(mapped(), before + 1);
        drop(store);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_rotation_waits_for_a_journal_fsync_under_way_before_it_counts_records_durable() {
        // Linux reports a failed writeback to one fsync of a file only: the rotation's own fsync of the
        // segment could succeed after the one under way lost the pages.
        let dir = temp_dir("sync-rotation");
        let store = Arc::new(FileStore::open(&dir.join("m.json")).unwrap());
        store.append(b"{\"a\":1}").unwrap();
        let seq = store.appended();
        let (go, wait) = std::sync::mpsc::channel();
        *store.failing_sync.lock().unwrap() = Some(wait);
        let syncing = Arc::clone(&store);
        let sync = std::thread::spawn(move || syncing.sync_to(seq));
        while !store.lock().syncing {
            std::thread::yield_now();
        }
        let rotating = Arc::clone(&store);
        let rotation = std::thread::spawn(move || rotating.write_snapshot(b"{\"v\":1\n}".to_vec()));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(store.durable() < seq, "the rotation counted the records durable while an fsync of them was under way");
        go.send(()).unwrap();
        assert!(sync.join().unwrap().is_err());
        // The rotation saw the failure, and its snapshot repairs it.
        rotation.join().unwrap().unwrap();
        assert!(store.durable() >= seq);
        store.sync().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn changes_a_failed_append_kept_in_memory_are_durable_only_once_a_snapshot_holds_them() {
        // Before, the operation's number was that of the last record written: reported durable at once.
        let dir = temp_dir("append-failed");
        let store = FileStore::open(&dir.join("m.json")).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.sync().unwrap();
        store.fail_next_append.store(true, Ordering::SeqCst);
        assert!(store.append(b"{\"b\":2}").is_err());
        let seq = store.appended();
        assert!(store.sync_to(seq).is_err(), "a change no record holds was reported durable");
        store.write_snapshot(b"{\"v\":1\n}".to_vec()).unwrap();
        store.sync_to(seq).unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_start_of_a_failed_append_that_could_not_be_cut_off_is_cut_before_the_next_write() {
        // Before, the next record ran on from the torn bytes: both were one damaged line at the next load.
        let dir = temp_dir("append-torn");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_append.store(true, Ordering::SeqCst);
        store.fail_next_cut.store(true, Ordering::SeqCst);
        assert!(store.append(b"{\"b\":2}").is_err());
        store.append(b"{\"c\":3}").unwrap();
        store.sync().unwrap_err();
        drop(store);
        let reopened = FileStore::open(&path).unwrap();
        assert_eq!(reopened.replay().unwrap(), vec![b"{\"a\":1}".to_vec(), b"{\"c\":3}".to_vec()]);
        assert!(reopened.damage().is_empty(), "{:?}", reopened.damage());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_document_that_cannot_be_sealed_is_refused_before_the_journal_moves_on() {
        let dir = temp_dir("not-a-document");
        let store = FileStore::open(&dir.join("m.json")).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        assert!(store.write_snapshot(b"[1]".to_vec()).unwrap_err().contains("not a JSON object"));
        assert_eq!((store.generation(), store.journal_length()), (0, 1));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn read_copy_sees_what_the_store_holds_and_writes_nothing() {
        let dir = temp_dir("copy");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.write_snapshot(b"{\"v\":1}".to_vec()).unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        store.finish_snapshot().unwrap();
        let listing = |dir: &Path| {
            let mut v: Vec<(String, u64)> =
                fs::read_dir(dir).unwrap().flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())).collect();
            v.sort();
            v
        };
        let before = listing(&dir);
        let copy = read_copy(&path).unwrap();
        assert_eq!(listing(&dir), before);
        assert_eq!(copy.read_snapshot().unwrap(), store.read_snapshot().unwrap());
        assert_eq!(copy.replay().unwrap(), vec![b"{\"b\":2}".to_vec()]);
        assert_eq!(read_copy(&dir.join("none.json")).unwrap().read_snapshot().unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_first_release_journal_becomes_segment_zero() {
        let dir = temp_dir("legacy");
        let path = dir.join("m.json");
        fs::create_dir_all(&dir).unwrap();
        fs::write(legacy_journal_path(&path), b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        let store = FileStore::open(&path).unwrap();
        assert!(!legacy_journal_path(&path).exists());
        assert_eq!(store.replay().unwrap().len(), 2);
        assert_eq!(store.journal_length(), 2);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_line_is_skipped_and_the_rest_replayed() {
        let dir = temp_dir("damaged");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        for i in 0..3 {
            store.append(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        store.sync().unwrap();
        drop(store);
        let seg = segment_path(&path, 0);
        let mut bytes = fs::read(&seg).unwrap();
        // The second record is the segment's third line, after its header.
        let second = memchr::memchr_iter(b'\n', &bytes).nth(1).unwrap() + 3;
        bytes[second] ^= 0x20;
        fs::write(&seg, bytes).unwrap();
        let before = metrics::STORAGE_BAD_RECORDS.get();
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.replay().unwrap(), vec![b"{\"n\":0}".to_vec(), b"{\"n\":2}".to_vec()]);
        assert!(metrics::STORAGE_BAD_RECORDS.get() > before);
        // Skipped, but not silently: the store says what it lost, and so does a read-only copy.
        let damage = store.damage();
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert!(damage[0].contains("m.json.journal.0 line 3") && damage[0].contains("fails its check"), "{damage:?}");
        assert_eq!(read_copy(&path).unwrap().damage(), damage);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn group_commit_shares_fsyncs_between_threads() {
        let dir = temp_dir("group");
        let store = std::sync::Arc::new(FileStore::open(&dir.join("m.json")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store.append(format!("{{\"t\":{t},\"i\":{i}}}").as_bytes()).unwrap();
                        let seq = store.appended();
                        store.sync_to(seq).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.durable(), store.appended());
        assert_eq!(store.replay().unwrap().len(), 400);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_snapshot_naming_a_lost_segment_is_damage_not_an_empty_journal() {
        let dir = temp_dir("gap");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(b"{\"v\":1}".to_vec()).unwrap();
        store.write_snapshot(b"{\"v\":2}".to_vec()).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        drop(store);
        // A stale copy of generation 1 put back by hand, while segment 1 is gone.
        let stale = format::seal(b"{\"v\":1}", 1).unwrap();
        fs::write(&path, stale).unwrap();
        let store = FileStore::open(&path).unwrap();
        store.read_snapshot().unwrap();
        store.replay().unwrap();
        let damage = store.damage();
        assert!(damage.iter().any(|d| d.contains("m.json.journal.1 is missing")), "{damage:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn until_the_first_snapshot_is_in_place_the_journal_from_segment_0_is_the_mapping() {
        // The first snapshot's write fails (or is still in flight, or a crash cuts it off): segment 0 goes
        // on in segment 1, and no snapshot is there to say so.
        let dir = temp_dir("first-snapshot");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_write.store(true, Ordering::SeqCst);
        store.write_snapshot(b"{\"v\":1}".to_vec()).unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        assert!(store.finish_snapshot().is_err());
        let records = vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()];
        let copy = read_copy(&path).expect("a tool beside the host reads the journal");
        assert_eq!((copy.read_snapshot().unwrap(), copy.replay().unwrap(), copy.damage()), (None, records.clone(), vec![]));
        drop(store);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.read_snapshot().expect("the host starts again"), None);
        assert_eq!(store.replay().unwrap(), records);
        assert!(store.damage().is_empty(), "{:?}", store.damage());
        fs::remove_dir_all(dir).unwrap();
    }

    /// A store with snapshot generation 1 written (segment 0 pruned), records in segment 1, then a second
    /// snapshot started whose write fails, so segments 1 and 2 both hold records after snapshot 1.
    fn two_segments_after_a_snapshot(dir: &Path) -> PathBuf {
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(b"{\"v\":1}".to_vec()).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.fail_next_write.store(true, Ordering::SeqCst);
        store.write_snapshot(b"{\"v\":2}".to_vec()).unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        assert!(store.finish_snapshot().is_err());
        drop(store);
        assert_eq!(list(dir, "m.json").unwrap().segments.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        path
    }

    fn damage_after_reopen(path: &Path) -> Vec<String> {
        let store = FileStore::open(path).unwrap();
        store.read_snapshot().unwrap();
        store.replay().unwrap();
        let damage = store.damage();
        assert_eq!(read_copy(path).unwrap().damage().len(), damage.len(), "a read-only copy sees the same");
        damage
    }

    #[test]
    fn an_undamaged_journal_reports_nothing() {
        let dir = temp_dir("undamaged");
        let path = two_segments_after_a_snapshot(&dir);
        assert_eq!(damage_after_reopen(&path), Vec::<String>::new());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_deleted_last_segment_is_seen_in_the_one_before_it() {
        let dir = temp_dir("deleted-last");
        let path = two_segments_after_a_snapshot(&dir);
        fs::remove_file(segment_path(&path, 2)).unwrap();
        let damage = damage_after_reopen(&path);
        assert!(damage.iter().any(|d| d.contains("m.json.journal.2 is missing") && d.contains("last segment was deleted")), "{damage:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_emptied_segment_is_damage_not_an_empty_journal() {
        for emptied in [1, 2] {
            let dir = temp_dir("emptied");
            let path = two_segments_after_a_snapshot(&dir);
            fs::write(segment_path(&path, emptied), b"").unwrap();
            let damage = damage_after_reopen(&path);
            assert!(damage.iter().any(|d| d.contains(&format!("m.json.journal.{emptied} has no header"))), "{damage:?}");
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn the_only_segment_after_a_snapshot_deleted_or_emptied_is_damage() {
        for delete in [true, false] {
            let dir = temp_dir("only-segment");
            let path = dir.join("m.json");
            let store = FileStore::open(&path).unwrap();
            store.write_snapshot(b"{\"v\":1}".to_vec()).unwrap();
            store.append(b"{\"a\":1}").unwrap();
            store.sync().unwrap();
            drop(store);
            if delete {
                fs::remove_file(segment_path(&path, 1)).unwrap();
            } else {
                fs::write(segment_path(&path, 1), b"").unwrap();
            }
            // A read-only copy first: opening the store creates the segment again.
            let copy = read_copy(&path).unwrap().damage();
            assert!(copy.iter().any(|d| d.contains("m.json.journal.1")), "{copy:?}");
            let store = FileStore::open(&path).unwrap();
            store.read_snapshot().unwrap();
            store.replay().unwrap();
            let damage = store.damage();
            assert!(damage.iter().any(|d| d.contains("m.json.journal.1") && d.contains("lost")), "{damage:?}");
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn an_emptied_first_segment_before_any_snapshot_is_damage() {
        let dir = temp_dir("emptied-first");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.sync().unwrap();
        drop(store);
        assert_eq!(damage_after_reopen(&path), Vec::<String>::new());
        fs::write(segment_path(&path, 0), b"").unwrap();
        let damage = damage_after_reopen(&path);
        assert!(damage.iter().any(|d| d.contains("m.json.journal.0 has no header")), "{damage:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn segments_of_earlier_releases_without_headers_are_not_damage() {
        let dir = temp_dir("headerless");
        let path = dir.join("m.json");
        fs::create_dir_all(&dir).unwrap();
        // An earlier release's snapshot (no `journal_headed`) with its empty segment, and one with records.
        let sealed = String::from_utf8(format::seal(b"{\"v\":1}", 3).unwrap()).unwrap().replace("  \"journal_headed\": true,\n", "");
        let body = sealed.split(",\n  \"checksum\"").next().unwrap();
        let old = format!("{body},\n  \"checksum\": \"crc32:{:08x}\"\n}}\n", crc32fast::hash(format!("{body}\n}}").as_bytes()));
        fs::write(&path, old).unwrap();
        fs::write(segment_path(&path, 3), b"").unwrap();
        assert_eq!(damage_after_reopen(&path), Vec::<String>::new());
        let mut line = Vec::new();
        format::frame(b"{\"a\":1}", &mut line);
        fs::write(segment_path(&path, 3), &line).unwrap();
        assert_eq!(damage_after_reopen(&path), Vec::<String>::new());
        fs::remove_dir_all(dir).unwrap();
    }
}
