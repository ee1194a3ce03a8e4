//! Per load balancer: whether a read of Octavia's view is still current when it is about to be applied.
//!
//! The periodic sync and runtime recovery read a load balancer's tree from Octavia's get socket and then
//! make it the desired state. An operation applied in between (say a cascade delete) is newer than that
//! read, and so is one applied but not yet reported: until its statuses reach Octavia, Octavia still shows
//! the objects it deleted. A read taken before either must not be applied, or it undoes the operation.
//!
//! Every change to a load balancer (an operation applied, its statuses reported, a sync) takes a number
//! from one counter; a `Ticket` is that counter's value when a read began. The read is current while
//! nothing changed its load balancer since, and no operation on it is waiting to be reported.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a read of Octavia's view began.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ticket(u64);

struct Lb {
    /// The counter's value at the last change, and when that was.
    changed: u64,
    changed_at: Instant,
    /// Operations applied whose statuses Octavia has not been sent yet.
    unreported: u32,
}

struct Inner {
    counter: u64,
    lbs: HashMap<String, Lb>,
    /// A load balancer no longer tracked counts as changed at this value (the last change forgotten).
    forgotten: u64,
    last_prune: Instant,
}

/// Beyond this many load balancers tracked, those with nothing unreported and unchanged for a while are
/// forgotten (deleted ones would otherwise stay forever).
const PRUNE_ABOVE: usize = 4096;
/// A read older than this (a sync round over very many load balancers) may find its load balancer
/// forgotten; it is then taken as stale, and the next round reads it again.
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct Epochs {
    inner: Mutex<Inner>,
    forget_after: Duration,
}

impl Default for Epochs {
    fn default() -> Epochs {
        Epochs::forgetting_after(FORGET_AFTER)
    }
}

impl Epochs {
    pub fn forgetting_after(forget_after: Duration) -> Epochs {
        let inner = Inner { counter: 0, lbs: HashMap::new(), forgotten: 0, last_prune: Instant::now() };
        Epochs { inner: Mutex::new(inner), forget_after }
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.lock().unwrap().counter)
    }

    /// A number that changes whenever any load balancer changes.
    pub fn generation(&self) -> u64 {
        self.inner.lock().unwrap().counter
    }

    /// An operation on `lb` was applied; its statuses are still to be reported.
    pub fn applied(&self, lb: &str) {
        self.inner.lock().unwrap().change(lb).unreported += 1;
    }

    /// The statuses of an operation `applied` on `lb` reached Octavia (or were given up on).
    pub fn reported(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        let entry = inner.change(lb);
        entry.unreported = entry.unreported.saturating_sub(1);
        inner.prune(self.forget_after);
    }

    /// Something other than an operation changed `lb` (a sync applied a read).
    pub fn touched(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.change(lb);
        inner.prune(self.forget_after);
    }

    /// Whether a read of `lb` that began at `since` may still be applied.
    pub fn current(&self, lb: &str, since: Ticket) -> bool {
        let inner = self.inner.lock().unwrap();
        match inner.lbs.get(lb) {
            Some(state) => state.changed <= since.0 && state.unreported == 0,
            None => inner.forgotten <= since.0,
        }
    }
}

impl Inner {
    fn change(&mut self, lb: &str) -> &mut Lb {
        self.counter += 1;
        let counter = self.counter;
        let entry = self.lbs.entry(lb.to_string()).or_insert(Lb { changed: 0, changed_at: Instant::now(), unreported: 0 });
        entry.changed = counter;
        entry.changed_at = Instant::now();
        entry
    }

    fn prune(&mut self, forget_after: Duration) {
        if self.lbs.len() <= PRUNE_ABOVE || self.last_prune.elapsed() < forget_after / 4 {
            return;
        }
        self.last_prune = Instant::now();
        let mut forgotten = self.forgotten;
        self.lbs.retain(|_, lb| {
            let keep = lb.unreported > 0 || lb.changed_at.elapsed() < forget_after;
            if !keep {
                forgotten = forgotten.max(lb.changed);
            }
            keep
        });
        self.forgotten = forgotten;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_current_until_its_load_balancer_changes() {
        let epochs = Epochs::default();
        let read = epochs.ticket();
        assert!(epochs.current("a", read));
        epochs.applied("b");
        epochs.reported("b");
        assert!(epochs.current("a", read), "another load balancer's operation does not matter");
        assert!(!epochs.current("b", read));
        epochs.touched("a");
        assert!(!epochs.current("a", read));
        assert!(epochs.current("a", epochs.ticket()));
    }

    #[test]
    fn a_read_is_not_current_while_an_operation_is_unreported() {
        let epochs = Epochs::default();
        epochs.applied("a");
        let read = epochs.ticket();
        assert!(!epochs.current("a", read), "Octavia still shows what the operation changed");
        epochs.reported("a");
        assert!(!epochs.current("a", read), "the read may predate the report");
        assert!(epochs.current("a", epochs.ticket()));
    }

    #[test]
    fn forgotten_load_balancers_make_only_older_reads_stale() {
        let epochs = Epochs::forgetting_after(Duration::ZERO);
        let before = epochs.ticket();
        for n in 0..PRUNE_ABOVE {
            epochs.touched(&n.to_string());
        }
        let after = epochs.ticket();
        // Two operations applied, one reported: that load balancer stays tracked, the others go.
        epochs.applied("last");
        epochs.applied("last");
        epochs.reported("last");
        assert_eq!(epochs.inner.lock().unwrap().lbs.keys().collect::<Vec<_>>(), vec!["last"]);
        assert!(!epochs.current("0", before), "a read from before the forgotten change");
        assert!(epochs.current("0", after), "a read from after it");
        assert!(!epochs.current("last", after));
    }

    #[test]
    fn load_balancers_with_unreported_operations_are_not_forgotten() {
        let epochs = Epochs::forgetting_after(Duration::ZERO);
        epochs.applied("busy");
        for n in 0..=PRUNE_ABOVE {
            epochs.touched(&n.to_string());
        }
        assert!(!epochs.current("busy", epochs.ticket()));
    }
}
