//! Load balancers whose last operation failed at LoxiLB (no answer, 5xx, past `api_retry_deadline`).
//!
//! Such an operation is rolled back and reported ERROR: Octavia then shows objects LoxiLB does not
//! serve, and nothing would ever program them (Octavia does not ask again). Once LoxiLB answers, the
//! monitor reads each of these load balancers back from Octavia, programs it as Octavia shows it and
//! reports its objects ACTIVE (`Service::reprogram_failed`). A load balancer that fails again waits
//! longer each time (doubling to `MAX_PAUSE`), so a rule LoxiLB always refuses is not retried every
//! liveness check. The set is kept in a file beside the mapping: a restart must not forget it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The wait after a first failed attempt, and the longest one.
const FIRST_PAUSE: Duration = Duration::from_secs(2);
const MAX_PAUSE: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Reprogram {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Load balancer id → when it may be tried next and how many attempts failed.
    due: BTreeMap<String, Attempts>,
    file: Option<PathBuf>,
}

#[derive(Clone, Copy)]
struct Attempts {
    next: Instant,
    failed: u32,
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    loadbalancers: Vec<String>,
}

impl Reprogram {
    /// Keeps the set in `file` from now on, starting with what it holds. A file that cannot be read is
    /// an error, and is replaced at the next change.
    pub fn persist_at(&self, file: &Path) -> Result<()> {
        let mut inner = self.inner.lock().unwrap();
        inner.file = Some(file.to_path_buf());
        match std::fs::read(file) {
            Ok(bytes) => {
                let saved: Saved = serde_json::from_slice(&bytes).with_context(|| format!("reading {}", file.display()))?;
                anyhow::ensure!(saved.version == 1, "{}: unknown version {}", file.display(), saved.version);
                for lb in saved.loadbalancers {
                    inner.due.entry(lb).or_insert(Attempts { next: Instant::now(), failed: 0 });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
        if !inner.due.is_empty() {
            tracing::warn!("{} load balancer(s) failed at LoxiLB before the restart: programming them when LoxiLB answers", inner.due.len());
        }
        Ok(())
    }

    /// An operation on `lb` failed at LoxiLB.
    pub fn note(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        if inner.due.insert(lb.to_string(), Attempts { next: Instant::now(), failed: 0 }).is_none() {
            inner.save();
        }
    }

    /// `lb` is programmed as Octavia shows it, or Octavia no longer has it.
    pub fn forget(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        if inner.due.remove(lb).is_some() {
            inner.save();
        }
    }

    /// Another attempt on `lb` failed: it waits twice as long as last time.
    pub fn failed_again(&self, lb: &str) {
        if let Some(attempts) = self.inner.lock().unwrap().due.get_mut(lb) {
            attempts.failed = attempts.failed.saturating_add(1);
            let pause = FIRST_PAUSE.saturating_mul(1 << attempts.failed.min(16)).min(MAX_PAUSE);
            attempts.next = Instant::now() + pause;
        }
    }

    /// `lb`, if it is waiting, is tried at the next check (an operator failed it over: its objects in
    /// ERROR should not wait out the pause).
    pub fn hurry(&self, lb: &str) {
        if let Some(attempts) = self.inner.lock().unwrap().due.get_mut(lb) {
            *attempts = Attempts { next: Instant::now(), failed: 0 };
        }
    }

    /// The load balancers whose next attempt is due.
    pub fn due(&self) -> Vec<String> {
        let now = Instant::now();
        self.inner.lock().unwrap().due.iter().filter(|(_, a)| a.next <= now).map(|(lb, _)| lb.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Writes the set so that a crash leaves the old file or the new one. A failure is logged, not
    /// fatal: the set in memory still serves until a restart.
    fn save(&self) {
        let Some(file) = &self.file else { return };
        let saved = Saved { version: 1, loadbalancers: self.due.keys().cloned().collect() };
        let written = serde_json::to_vec(&saved).map_err(std::io::Error::other).and_then(|bytes| crate::storage::write_atomic(file, &bytes));
        if let Err(e) = written {
            crate::metrics::STORAGE_ERRORS.inc();
            tracing::error!("writing {}: {e} (load balancers to program after a LoxiLB failure are kept in memory only)", file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_survives_a_restart_and_forgotten_ones_stay_forgotten() {
        let dir = tempdir();
        let file = dir.join("reprogram.json");
        let before = Reprogram::default();
        before.persist_at(&file).unwrap();
        before.note("lb-1");
        before.note("lb-2");
        before.forget("lb-1");
        let after = Reprogram::default();
        after.persist_at(&file).unwrap();
        assert_eq!(after.due(), ["lb-2"]);
    }

    #[test]
    fn a_failed_attempt_waits_before_the_next() {
        let set = Reprogram::default();
        set.note("lb");
        assert_eq!(set.due(), ["lb"]);
        set.failed_again("lb");
        assert!(set.due().is_empty());
        assert_eq!(set.len(), 1);
        // Noting a new failure makes it due at once again.
        set.note("lb");
        assert_eq!(set.due(), ["lb"]);
    }

    #[test]
    fn hurrying_makes_a_waiting_one_due_and_adds_none() {
        let set = Reprogram::default();
        set.note("lb");
        set.failed_again("lb");
        set.hurry("lb");
        set.hurry("other");
        assert_eq!(set.due(), ["lb"]);
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_set() {
        let dir = tempdir();
        let file = dir.join("reprogram.json");
        std::fs::write(&file, b"{\"version\":1,\"loadb").unwrap();
        assert!(Reprogram::default().persist_at(&file).is_err());
    }

    /// A directory of its own for one test, removed with it (every run of the suite left two behind).
    struct Scratch(PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> Scratch {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("reprogram-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    #[test]
    fn a_test_directory_is_removed_with_what_it_holds() {
        let dir = tempdir();
        let path = dir.to_path_buf();
        Reprogram::default().persist_at(&path.join("reprogram.json")).unwrap();
        drop(dir);
        assert!(!path.exists(), "{} left behind", path.display());
    }
}
