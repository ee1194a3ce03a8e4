//! Durable storage of the policy's mapping: a snapshot file and a journal of records since it.
//!
//! - The snapshot is written to a unique temporary file, fsynced, renamed over the old one, and the
//!   directory is fsynced: a crash leaves the old or the new file, never a torn or empty one. The host
//!   appends a SHA-256 checksum as the last JSON key, so corruption is detected on load.
//! - Journal records are appended without waiting for the disk; `sync` makes everything appended so far
//!   durable with one fdatasync shared by every operation waiting at that moment (group commit). The host
//!   calls it before it reports an operation's outcome to Octavia.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use sha2::{Digest, Sha256};

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::storage::Host;

pub trait MappingStore: Send + Sync {
    fn read_snapshot(&self) -> Result<Option<Vec<u8>>, String>;
    fn write_snapshot(&self, data: &[u8]) -> Result<(), String>;
    fn append(&self, record: &[u8]) -> Result<(), String>;
    fn replay(&self) -> Result<Vec<Vec<u8>>, String>;
    fn journal_length(&self) -> u32;
    /// Makes every record appended so far durable.
    fn sync(&self) -> Result<(), String>;
}

/// A store that lives and dies with the process (persistence disabled, previews, conformance checks).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<(Option<Vec<u8>>, Vec<Vec<u8>>)>,
}

impl MemoryStore {
    /// A copy of another store's current contents (a preview must not write to the real one).
    pub fn copy_of(other: &dyn MappingStore) -> Result<MemoryStore, String> {
        Ok(MemoryStore { inner: Mutex::new((other.read_snapshot()?, other.replay()?)) })
    }
}

impl MappingStore for MemoryStore {
    fn read_snapshot(&self) -> Result<Option<Vec<u8>>, String> {
        Ok(self.inner.lock().unwrap().0.clone())
    }
    fn write_snapshot(&self, data: &[u8]) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap();
        inner.0 = Some(data.to_vec());
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
}

const CHECKSUM_MARK: &str = ",\n  \"checksum\": \"sha256:";

/// Adds the checksum as the document's last key: `{…,\n  "checksum": "sha256:<hex>"\n}`. The hash covers
/// the document as it reads back without that key.
pub fn seal(data: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "snapshot is not UTF-8".to_string())?;
    let body = text.trim_end().strip_suffix('}').ok_or("snapshot is not a JSON object")?.trim_end();
    let canonical = format!("{body}\n}}");
    let hash = hex(&Sha256::digest(canonical.as_bytes()));
    Ok(format!("{body}{CHECKSUM_MARK}{hash}\"\n}}\n").into_bytes())
}

/// Checks and removes the checksum. A document without one (hand-written, or from the earlier driver)
/// is returned as it is; a wrong one is an error.
pub fn unseal(file: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(file).map_err(|_| "not UTF-8".to_string())?;
    let Some(at) = text.rfind(CHECKSUM_MARK) else { return Ok(file.to_vec()) };
    let body = &text[..at];
    let rest = &text[at + CHECKSUM_MARK.len()..];
    let expected = rest.split('"').next().unwrap_or("");
    let canonical = format!("{body}\n}}");
    let actual = hex(&Sha256::digest(canonical.as_bytes()));
    if actual != expected {
        return Err(format!("checksum mismatch (file says {expected}, content hashes to {actual})"));
    }
    Ok(canonical.into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `path` so that a crash leaves either the old or the new file: unique temp file,
/// fsync, rename, directory fsync. Mode 0600: the mapping is operator data.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("mapping"),
        std::process::id(),
        crate::caps::clock::now_ms()
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

struct Journal {
    file: File,
    records: u32,
    /// Sequence number of the last record appended, and of the last one made durable.
    appended: u64,
    synced: u64,
    syncing: bool,
}

/// The snapshot and journal on disk.
pub struct FileStore {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Mutex<Journal>,
    synced: Condvar,
}

impl FileStore {
    pub fn open(path: &Path) -> Result<FileStore, String> {
        let journal_path = journal_path(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&journal_path)
            .map_err(|e| format!("opening {}: {e}", journal_path.display()))?;
        let records = count_records(&journal_path)?;
        drop_torn_tail(&file).map_err(|e| format!("repairing {}: {e}", journal_path.display()))?;
        Ok(FileStore {
            path: path.to_path_buf(),
            journal_path,
            journal: Mutex::new(Journal { file, records, appended: 0, synced: 0, syncing: false }),
            synced: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn journal_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

fn read_journal(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(|e| format!("reading {}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    // Records are single-line JSON; a last line without its newline was torn by a crash mid-append.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(bytes[..complete].split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// Cuts a record torn by a crash mid-append, so the next record starts on a line of its own.
fn drop_torn_tail(file: &File) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    (&*file).read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete < bytes.len() {
        file.set_len(complete as u64)?;
        file.sync_data()?;
    }
    Ok(())
}

fn count_records(path: &Path) -> Result<u32, String> {
    Ok(read_journal(path)?.len() as u32)
}

impl MappingStore for FileStore {
    fn read_snapshot(&self) -> Result<Option<Vec<u8>>, String> {
        match fs::read(&self.path) {
            Ok(bytes) => unseal(&bytes).map(Some).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", self.path.display())),
        }
    }

    fn write_snapshot(&self, data: &[u8]) -> Result<(), String> {
        let sealed = seal(data)?;
        let mut journal = self.journal.lock().unwrap();
        write_atomic(&self.path, &sealed).map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        // The snapshot now holds everything the journal did: start an empty one. A crash before this
        // replays the old journal over the new snapshot, which changes nothing (records are idempotent).
        write_atomic(&self.journal_path, b"").map_err(|e| format!("resetting {}: {e}", self.journal_path.display()))?;
        journal.file = OpenOptions::new()
            .append(true)
            .read(true)
            .open(&self.journal_path)
            .map_err(|e| format!("reopening {}: {e}", self.journal_path.display()))?;
        journal.records = 0;
        journal.synced = journal.appended;
        Ok(())
    }

    fn append(&self, record: &[u8]) -> Result<(), String> {
        if record.contains(&b'\n') {
            return Err("journal records must be single-line".into());
        }
        let mut journal = self.journal.lock().unwrap();
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record);
        line.push(b'\n');
        journal.file.write_all(&line).map_err(|e| format!("appending to {}: {e}", self.journal_path.display()))?;
        journal.records += 1;
        journal.appended += 1;
        Ok(())
    }

    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        let _journal = self.journal.lock().unwrap();
        read_journal(&self.journal_path)
    }

    fn journal_length(&self) -> u32 {
        self.journal.lock().unwrap().records
    }

    fn sync(&self) -> Result<(), String> {
        let mut journal = self.journal.lock().unwrap();
        let target = journal.appended;
        loop {
            if journal.synced >= target {
                return Ok(());
            }
            if !journal.syncing {
                break;
            }
            journal = self.synced.wait(journal).unwrap();
        }
        // This caller syncs for everyone who appended before it; others wait for the result.
        journal.syncing = true;
        let upto = journal.appended;
        let file = journal.file.try_clone().map_err(|e| e.to_string());
        drop(journal);
        let result = file.and_then(|f| f.sync_data().map_err(|e| format!("fsync {}: {e}", self.journal_path.display())));
        let mut journal = self.journal.lock().unwrap();
        journal.syncing = false;
        if result.is_ok() {
            journal.synced = journal.synced.max(upto);
        }
        self.synced.notify_all();
        result
    }
}

impl Host for HostState {
    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.grants.storage.read_snapshot()
    }
    fn write_snapshot(&mut self, data: Vec<u8>) -> Result<(), String> {
        self.grants.storage.write_snapshot(&data)
    }
    fn append_journal(&mut self, record: Vec<u8>) -> Result<(), String> {
        self.grants.storage.append(&record)
    }
    fn replay_journal(&mut self) -> Result<Vec<Vec<u8>>, String> {
        self.grants.storage.replay()
    }
    fn journal_length(&mut self) -> u32 {
        self.grants.storage.journal_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_corruption() {
        let doc = b"{\n  \"version\": \"1.1\",\n  \"octavia_to_loxilb\": {}\n}";
        let sealed = seal(doc).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["checksum"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(unseal(&sealed).unwrap(), doc.to_vec());
        let corrupt = text.replace("1.1", "1.2");
        assert!(unseal(corrupt.as_bytes()).unwrap_err().contains("checksum mismatch"));
    }

    #[test]
    fn journal_survives_reopen_and_drops_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("loxilb-store-{}-{}", std::process::id(), crate::caps::clock::now_ms()));
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.append(b"{\"a\":1}").unwrap();
        store.append(b"{\"b\":2}").unwrap();
        store.sync().unwrap();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(journal_path(&path)).unwrap();
        f.write_all(b"{\"torn\":").unwrap();
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.replay().unwrap(), vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        store.write_snapshot(b"{\n  \"x\": 1\n}").unwrap();
        assert_eq!(store.journal_length(), 0);
        assert!(store.replay().unwrap().is_empty());
        assert_eq!(store.read_snapshot().unwrap().unwrap(), b"{\n  \"x\": 1\n}".to_vec());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(dir).unwrap();
    }
}
