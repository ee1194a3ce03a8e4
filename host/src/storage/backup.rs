//! Backups of the snapshot, taken every `mapping_backup_interval` seconds, `mapping_backup_count` kept.
//!
//! A backup is a byte copy of the sealed snapshot; it names the journal generation it covers, and the
//! store keeps every journal segment from the oldest kept backup's generation on. So any backup plus the
//! journal after it is the whole current mapping, and a corrupt main file costs nothing but a log line.
//! The snapshot is copied only when it changed since the newest backup: rotating out older backups for
//! identical copies would shorten the history kept for nothing.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::file::{trailer_generation, write_mapping_file, Backup, FileStore};
use super::format;
use crate::metrics;

/// UTC time as `20261125T080000.123Z`: sorts as it reads, and is a valid file name everywhere.
pub fn stamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (H. Hinnant), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

impl FileStore {
    /// Copies the current snapshot to a new backup, unless the newest backup already holds it, and keeps
    /// the newest `keep`. Returns the new backup's path, or `None` when there was nothing new to copy.
    /// A corrupt snapshot is not copied (it would rotate out a good backup): that is an error.
    pub fn backup(&self, keep: usize) -> Result<Option<PathBuf>, String> {
        // The newest snapshot is the one worth keeping; if its write failed, the one before still is.
        let _ = self.finish_snapshot();
        let (file, generation) = {
            let mut inner = self.lock();
            // Opened under the lock: the descriptor keeps this generation's file even if a compaction
            // renames a new one into place while it is copied.
            let file = match File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("opening {}: {e}", self.path.display())),
            };
            let named = trailer_generation(&file).map_err(|e| format!("reading {}: {e}", self.path.display()))?;
            // A file without a trailer (the earlier driver's) is followed by the journal from `base`.
            let generation = named.unwrap_or(inner.base);
            if inner.backups.last().is_some_and(|b| b.generation == generation) {
                return Ok(None);
            }
            // Until the backup is in the list, its segments must not be pruned by a compaction.
            inner.pins.push(generation);
            (file, generation)
        };
        let result = (|| {
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes).map_err(|e| format!("reading {}: {e}", self.path.display()))?;
            let named = format::check(&bytes).map_err(|e| format!("not backing up {}: {e}", self.path.display()))?;
            if named != generation && named != 0 {
                return Err(format!("{} changed while it was read", self.path.display()));
            }
            let path = self.dir.join(format!("{}.backup-{}-gen{generation}", self.name, stamp(crate::caps::clock::now_ms())));
            write_mapping_file(&path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(path)
        })();
        let mut inner = self.lock();
        if let Some(i) = inner.pins.iter().position(|&g| g == generation) {
            inner.pins.swap_remove(i);
        }
        let path = result.inspect_err(|_| metrics::STORAGE_ERRORS.inc())?;
        inner.backups.push(Backup { path: path.clone(), generation });
        inner.backups.sort_by(|a, b| (a.generation, &a.path).cmp(&(b.generation, &b.path)));
        let excess = inner.backups.len().saturating_sub(keep.max(1));
        let old: Vec<Backup> = inner.backups.drain(..excess).collect();
        let obsolete = self.prune(&mut inner);
        metrics::STORAGE_BACKUPS.inc();
        tracing::info!("mapping backup {} written (journal generation {generation}, {} kept)", path.display(), inner.backups.len());
        // Deleted once the lock is let go: appends wait for it, and a backup is as large as a snapshot.
        drop(inner);
        old.iter().for_each(|old| super::file::release_gradually(&old.path));
        super::file::delete_segments(obsolete);
        Ok(Some(path))
    }
}

/// The backup thread; dropping it stops the thread (keep it for as long as the host serves).
pub struct BackupTask {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for BackupTask {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Backs the snapshot up now and then every `interval`, keeping `keep` backups. `None` when `interval`
/// is zero (`mapping_backup_interval = 0` turns backups off).
pub fn start_backups(store: Arc<FileStore>, interval: Duration, keep: usize) -> Option<BackupTask> {
    if interval.is_zero() {
        return None;
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("mapping-backup".into())
        .spawn(move || loop {
            match store.backup(keep) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::debug!("mapping snapshot unchanged since the last backup"),
                Err(e) => tracing::error!("mapping backup failed: {e}"),
            }
            let (lock, cv) = &*flag;
            let stopped = cv.wait_timeout_while(lock.lock().unwrap(), interval, |stop| !*stop).unwrap().0;
            if *stopped {
                return;
            }
        })
        .expect("backup thread");
    Some(BackupTask { stop, thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{segment_path, MappingStore};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("loxilb-backup-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stamps_sort_as_they_read() {
        assert_eq!(stamp(0), "19700101T000000.000Z");
        assert_eq!(stamp(1_712_345_678_901), "20240405T193438.901Z");
        assert_eq!(stamp(951_782_400_000), "20000229T000000.000Z");
    }

    /// A mapping document as the host writes it: one key per id.
    fn doc(ids: &[&str]) -> Vec<u8> {
        let map: serde_json::Map<String, serde_json::Value> = ids.iter().map(|id| (id.to_string(), serde_json::json!("k"))).collect();
        serde_json::to_vec_pretty(&serde_json::json!({"version": "1.1", "octavia_to_loxilb": map})).unwrap()
    }

    #[test]
    fn backups_rotate_and_keep_the_journal_they_need() {
        let dir = temp_dir("rotate");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.backup(2).unwrap(), None, "nothing to back up yet");
        let mut made = Vec::new();
        for i in 0..4 {
            store.append(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
            store.write_snapshot(doc(&[&format!("id-{i}")])).unwrap();
            made.push(store.backup(2).unwrap().expect("a new snapshot is backed up"));
            assert_eq!(store.backup(2).unwrap(), None, "an unchanged snapshot is not copied again");
        }
        assert_eq!(store.backups(), made[2..].to_vec());
        assert!(!made[0].exists() && !made[1].exists());
        for b in &made[2..] {
            assert_eq!(fs::metadata(b).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The oldest kept backup is generation 3: segments 3 and 4 stay, older ones go.
        store.append(b"{\"n\":9}").unwrap();
        store.sync().unwrap();
        assert!(!segment_path(&path, 2).exists());
        assert!(segment_path(&path, 3).exists() && segment_path(&path, 4).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_snapshot_falls_back_to_the_newest_whole_backup_and_its_journal() {
        let dir = temp_dir("fallback");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(doc(&["a"])).unwrap();
        store.append(b"{\"after\":1}").unwrap();
        let backup = store.backup(3).unwrap().unwrap();
        store.append(b"{\"after\":2}").unwrap();
        store.write_snapshot(doc(&["a", "b"])).unwrap();
        store.append(b"{\"after\":3}").unwrap();
        store.sync().unwrap();
        drop(store);

        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        fs::write(&path, &bytes).unwrap();

        let store = FileStore::open(&path).unwrap();
        let before = metrics::STORAGE_FALLBACKS.get();
        let snapshot = store.read_snapshot().unwrap().expect("the backup, not nothing");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&snapshot).unwrap(), serde_json::from_slice::<serde_json::Value>(&doc(&["a"])).unwrap());
        assert_eq!(store.replay().unwrap(), vec![b"{\"after\":1}".to_vec(), b"{\"after\":2}".to_vec(), b"{\"after\":3}".to_vec()]);
        assert_eq!(store.journal_length(), 3);
        assert_eq!(metrics::STORAGE_FALLBACKS.get(), before + 1);
        // The bad file is kept aside and the backup put in its place: the next start is clean.
        let kept: Vec<_> = fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".corrupt-")).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(fs::read(&path).unwrap(), fs::read(&backup).unwrap());
        drop(store);
        let store = FileStore::open(&path).unwrap();
        store.read_snapshot().unwrap().unwrap();
        assert_eq!(store.replay().unwrap().len(), 3);
        assert_eq!(metrics::STORAGE_FALLBACKS.get(), before + 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn without_a_usable_backup_a_corrupt_or_missing_snapshot_is_an_error() {
        let dir = temp_dir("nobackup");
        let path = dir.join("m.json");
        let store = FileStore::open(&path).unwrap();
        store.write_snapshot(doc(&["a"])).unwrap();
        drop(store);
        fs::write(&path, b"{\"version\": \"1.1\", \"octavia_to_lox").unwrap();
        let err = FileStore::open(&path).unwrap().read_snapshot().unwrap_err();
        assert!(err.contains("m.json") && err.contains("corrupt") && err.contains("no usable backup"), "{err}");
        fs::remove_file(&path).unwrap();
        let err = FileStore::open(&path).unwrap().read_snapshot().unwrap_err();
        assert!(err.contains("missing"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_backup_thread_backs_up_at_start_and_stops_when_dropped() {
        let dir = temp_dir("thread");
        let store = Arc::new(FileStore::open(&dir.join("m.json")).unwrap());
        store.write_snapshot(doc(&["a"])).unwrap();
        let task = start_backups(Arc::clone(&store), Duration::from_secs(3600), 2).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.backups().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no backup at start");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(task);
        assert!(start_backups(store, Duration::ZERO, 2).is_none());
        fs::remove_dir_all(dir).unwrap();
    }
}
