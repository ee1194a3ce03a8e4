//! Reporting after durability without waiting for it: the thread that applies operations hands each
//! outcome here with the journal position it reached, and goes on with the next operation while the disk
//! flushes. Outcomes are released in order once an fdatasync covers them, and each fdatasync covers
//! everything handed in while the previous one ran, so one serial applier gets group commit too.
//!
//! The applier wakes the durability thread only when it is idle: on a small VM a cross-CPU wake-up
//! costs as much as 20 µs, which per operation would double the cost of a mutation.
//!
//! A failed fsync is repaired, not passed on: after one, the journal is durable only through a new
//! snapshot (the kernel may have dropped the pages it could not write), so the thread has one written and
//! tries again, with a growing pause, until the records are durable. Outcomes wait meanwhile: an
//! operation reported to Octavia and then lost in a crash would be undone at the next start (a deleted
//! load balancer served again), while one not reported yet is applied again from the inbox.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::MappingStore;

type Then = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Writes a snapshot of the whole mapping (`Mapping::write_snapshot`).
pub type Repair = Box<dyn Fn() -> Result<(), String> + Send>;

/// The pauses between attempts to make the journal durable again.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Queue {
    items: VecDeque<(u64, Then)>,
    /// The durability thread is parked on the condvar (and must be woken).
    idle: bool,
    closed: bool,
}

pub struct Durability {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Durability {
    pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_micros(500);

    /// `commit_delay` is how long to let outcomes gather before each fdatasync. Every fdatasync costs
    /// CPU (filesystem journal, block layer, interrupts) that slows the applier on a 2-CPU machine:
    /// 0.5 ms lets ~10 operations share one instead of ~3, for a quarter less per operation, and
    /// delays reports to Octavia by as much, which nobody can notice.
    pub fn start(store: Arc<dyn MappingStore>, commit_delay: Duration, repair: Repair) -> Durability {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let shared = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("mapping-durability".into())
            .spawn(move || {
                let (lock, wake) = &*shared;
                loop {
                    {
                        let mut q = lock.lock().unwrap();
                        while q.items.is_empty() && !q.closed {
                            q.idle = true;
                            q = wake.wait(q).unwrap();
                        }
                        q.idle = false;
                        if q.items.is_empty() {
                            return;
                        }
                    }
                    if !commit_delay.is_zero() {
                        std::thread::sleep(commit_delay);
                    }
                    let batch: Vec<(u64, Then)> = lock.lock().unwrap().items.drain(..).collect();
                    // One fsync for the whole batch: it covers the last position, hence all before it.
                    let last = batch.last().map_or(0, |(seq, _)| *seq);
                    let result = sync_repairing(store.as_ref(), last, &repair, |pause| {
                        // Woken early only to stop: the outcomes then go out with the error.
                        let q = lock.lock().unwrap();
                        !q.closed && !wake.wait_timeout(q, pause).unwrap().0.closed
                    });
                    for (_, then) in batch {
                        then(result.clone());
                    }
                }
            })
            .expect("durability thread");
        Durability { queue, thread: Some(thread) }
    }

    /// Runs `then` (on the durability thread) once every record appended up to `seq` (from
    /// `MappingStore::appended`) is durable, or with the error that kept it from being so when the
    /// thread was stopped. Callbacks run in the order they were handed in.
    pub fn after(&self, seq: u64, then: impl FnOnce(Result<(), String>) + Send + 'static) {
        let (lock, wake) = &*self.queue;
        let mut q = lock.lock().unwrap();
        q.items.push_back((seq, Box::new(then)));
        if q.idle {
            q.idle = false;
            wake.notify_one();
        }
    }
}

/// Makes the records appended up to `seq` durable, whatever it takes: after a failed fsync the journal
/// is durable only through a new snapshot, so `repair` writes one and the sync is tried again. Between
/// attempts `wait` is handed a pause (growing from 50 ms to 5 s) and says whether to go on; the last error
/// otherwise.
pub fn sync_repairing(
    store: &dyn MappingStore,
    seq: u64,
    repair: &dyn Fn() -> Result<(), String>,
    mut wait: impl FnMut(Duration) -> bool,
) -> Result<(), String> {
    let Err(failed) = store.sync_to(seq) else { return Ok(()) };
    tracing::error!("mapping journal not durable ({failed}): writing a snapshot to repair it; reports wait");
    // Until a snapshot is in place the journal stays not durable: each attempt writes one, then syncs.
    let mut pause = FIRST_RETRY;
    loop {
        crate::metrics::STORAGE_REPAIRS.inc();
        let Err(e) = repair().and_then(|()| store.sync_to(seq)) else { return Ok(()) };
        tracing::error!("the repairing snapshot failed: {e}; trying again in {pause:?}");
        if !wait(pause) {
            return Err(e);
        }
        pause = (pause * 2).min(LAST_RETRY);
    }
}

impl Drop for Durability {
    /// Waits until every outcome handed in has been released.
    fn drop(&mut self) {
        let (lock, wake) = &*self.queue;
        lock.lock().unwrap().closed = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FileStore;

    #[test]
    fn outcomes_are_released_in_order_after_their_records_are_durable() {
        let dir = std::env::temp_dir().join(format!("loxilb-durability-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(FileStore::open(&dir.join("m.json")).unwrap());
        let durability = Durability::start(store.clone(), Durability::DEFAULT_COMMIT_DELAY, Box::new(|| Ok(())));
        let released = Arc::new(Mutex::new(Vec::new()));
        for i in 0..200u64 {
            store.append(format!("{{\"i\":{i}}}").as_bytes()).unwrap();
            let seq = store.appended();
            let (released, store) = (Arc::clone(&released), Arc::clone(&store));
            durability.after(seq, move |result| {
                result.unwrap();
                assert!(store.durable() >= seq, "released before its record was durable");
                released.lock().unwrap().push(i);
            });
            if i % 50 == 0 {
                // Let it go idle now and then, so waking it is exercised too.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        drop(durability);
        assert_eq!(*released.lock().unwrap(), (0..200).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
