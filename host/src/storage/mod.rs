//! Durable storage of the host's mapping: a snapshot and a journal of records since it.
//!
//! On disk, for `mapping_storage_path = /var/lib/octavia/loxilb-mappings.json`:
//!
//! | file | what |
//! |---|---|
//! | `loxilb-mappings.json` | the snapshot: the mapping document (the seed's format) plus `journal_generation` and a CRC-32 `checksum` as its last keys |
//! | `loxilb-mappings.json.journal.<g>` | journal segment `g`: a header line, then one record per line, each with a CRC, and a `next` line once the journal moved on to `g+1`; the snapshot of generation `g` is followed by segments `g`, `g+1`, … |
//! | `loxilb-mappings.json.backup-<UTC time>-gen<g>` | a copy of an earlier snapshot (generation `g`); segments from `g` on are kept while it is |
//! | `loxilb-mappings.json.corrupt-<UTC time>` | a snapshot found corrupt, kept for the operator when a backup replaced it |
//! | `loxilb-mappings.json.lock` | locked (`flock`) by the process serving the mapping, and holding its pid |
//! | `loxilb-mappings.json.damaged-<UTC time>/` | every file above, moved aside when a serving host found the journal damaged and rebuilt the mapping from LoxiLB |
//!
//! Every file is mode 0600. See `file.rs` for the crash-safety argument and `backup.rs` for rotation.

mod backup;
mod bytes;
mod durability;
mod file;
pub mod format;
mod lock;

pub use backup::{stamp, start_backups, BackupTask};
pub use bytes::FileBytes;
pub use durability::{sync_repairing, Durability};
pub use file::{mapping_exists, quarantine, read_copy, segment_path, write_atomic, FileStore};
pub use lock::{lock_path, StateLock};

use std::sync::Mutex;

/// Makes a snapshot document when the store is ready for it (see [`MappingStore::write_snapshot_with`]).
pub type SnapshotEncoder = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// A snapshot document as a store read it.
pub struct Snapshot {
    pub document: FileBytes,
    /// Whether its checksum was there and held: the document is then byte for byte what a host's writer
    /// wrote, and a load need not check again what the writer checked (`scan::scan_snapshot`).
    pub verified: bool,
}

impl Snapshot {
    pub fn unverified(document: Vec<u8>) -> Snapshot {
        Snapshot { document: document.into(), verified: false }
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.document.into_vec()
    }
}

impl std::ops::Deref for Snapshot {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.document
    }
}

/// Two snapshots are equal when their documents are.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self[..] == other[..]
    }
}

impl PartialEq<Vec<u8>> for Snapshot {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self[..] == other[..]
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({:?}, verified: {})", String::from_utf8_lossy(self), self.verified)
    }
}

pub trait MappingStore: Send + Sync {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String>;
    /// Replaces the snapshot and starts a new, empty journal. A store may return once the new journal has
    /// started and write the snapshot after: until it is in place, the previous snapshot and the journal
    /// since it remain the history (and are what a load reads).
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String>;
    /// `write_snapshot` of the document `encode` makes. The new journal starts now; a store may run
    /// `encode` later, off the caller's path (a large mapping takes tens of milliseconds to encode, which
    /// an operation must not wait for).
    fn write_snapshot_with(&self, encode: SnapshotEncoder) -> Result<(), String> {
        self.write_snapshot(encode())
    }
    /// Whether a snapshot handed to `write_snapshot_with` is still being written: the next one would
    /// wait for it, so a compaction that can wait does.
    fn snapshot_in_flight(&self) -> bool {
        false
    }
    fn append(&self, record: &[u8]) -> Result<(), String>;
    /// Appends `records` in order: all of them, or (in a store that can) none when one fails. A store may
    /// write them at once: a recovery adopts tens of thousands of entries in one change.
    fn append_all(&self, records: &[Vec<u8>]) -> Result<(), String> {
        records.iter().try_for_each(|r| self.append(r))
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String>;
    fn journal_length(&self) -> u32;
    /// Makes every record appended so far durable.
    fn sync(&self) -> Result<(), String>;
    /// What is wrong with the journal since the snapshot (a segment missing or emptied, a record failing
    /// its checksum), each naming the file: the mapping read from it may have lost changes.
    fn damage(&self) -> Vec<String> {
        Vec::new()
    }
    /// A number that grows with every append: pass it to `sync_to` later to wait for exactly the records
    /// appended up to now (a caller that reports asynchronously need not wait for later ones).
    fn appended(&self) -> u64 {
        0
    }
    /// Makes the records appended up to `appended() == seq` durable, sharing one fsync with every other
    /// caller waiting at the same time.
    fn sync_to(&self, seq: u64) -> Result<(), String> {
        let _ = seq;
        self.sync()
    }
}

/// The snapshot and the journal records since it.
type Contents = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// A store that lives and dies with the process (persistence disabled, previews, conformance checks).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Contents>,
    /// The damage of the store this is a copy of.
    damage: Vec<String>,
}

impl MemoryStore {
    /// A copy of another store's current contents (a preview must not write to the real one).
    pub fn copy_of(other: &dyn MappingStore) -> Result<MemoryStore, String> {
        Ok(MemoryStore { inner: Mutex::new((other.read_snapshot()?.map(Snapshot::into_vec), other.replay()?)), damage: other.damage() })
    }

    pub(crate) fn with_damage(mut self, damage: Vec<String>) -> MemoryStore {
        self.damage = damage;
        self
    }
}

impl MappingStore for MemoryStore {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        Ok(self.inner.lock().unwrap().0.clone().map(Snapshot::unverified))
    }
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap();
        inner.0 = Some(data);
        inner.1.clear();
        Ok(())
    }
    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.inner.lock().unwrap().1.push(record.to_vec());
        Ok(())
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.inner.lock().unwrap().1.clone())
    }
    fn journal_length(&self) -> u32 {
        self.inner.lock().unwrap().1.len() as u32
    }
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
    fn damage(&self) -> Vec<String> {
        self.damage.clone()
    }
}

/// The single journal file of the first release; `FileStore::open` renames it to segment 0.
#[deprecated(note = "the journal is segmented now: read the files with storage::read_copy")]
pub fn journal_path(snapshot: &std::path::Path) -> std::path::PathBuf {
    file::legacy_journal_path(snapshot)
}

/// The snapshot document without the host's trailer, after checking its checksum (for tools that read
/// the file directly).
pub fn unseal(file: &[u8]) -> Result<Vec<u8>, String> {
    format::unseal(file.to_vec()).map(|u| u.document)
}
