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

/// When a read of Octavia's view began.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ticket(u64);

#[derive(Default)]
struct Lb {
    /// The counter's value at the last change.
    changed: u64,
    /// Operations applied whose statuses Octavia has not been sent yet.
    unreported: u32,
}

#[derive(Default)]
struct Inner {
    counter: u64,
    lbs: HashMap<String, Lb>,
    /// Load balancers forgotten when pruning count as changed at this value.
    pruned_at: u64,
}

/// Load balancers with nothing unreported are forgotten once there are more than this many.
const PRUNE_ABOVE: usize = 4096;

#[derive(Default)]
pub struct Epochs {
    inner: Mutex<Inner>,
}

impl Epochs {
    pub fn ticket(&self) -> Ticket {
        Ticket(self.inner.lock().unwrap().counter)
    }

    /// A number that changes whenever any load balancer changes.
    pub fn generation(&self) -> u64 {
        self.inner.lock().unwrap().counter
    }

    /// An operation on `lb` was applied; its statuses are still to be reported.
    pub fn applied(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        let counter = inner.counter;
        let entry = inner.lbs.entry(lb.to_string()).or_default();
        entry.changed = counter;
        entry.unreported += 1;
    }

    /// The statuses of an operation `applied` on `lb` reached Octavia (or were given up on).
    pub fn reported(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        let counter = inner.counter;
        let entry = inner.lbs.entry(lb.to_string()).or_default();
        entry.changed = counter;
        entry.unreported = entry.unreported.saturating_sub(1);
        if inner.lbs.len() > PRUNE_ABOVE {
            inner.lbs.retain(|_, lb| lb.unreported > 0);
            inner.pruned_at = counter;
        }
    }

    /// Something other than an operation changed `lb` (a sync applied a read).
    pub fn touched(&self, lb: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.counter += 1;
        let counter = inner.counter;
        inner.lbs.entry(lb.to_string()).or_default().changed = counter;
    }

    /// Whether a read of `lb` that began at `since` may still be applied.
    pub fn current(&self, lb: &str, since: Ticket) -> bool {
        let inner = self.inner.lock().unwrap();
        match inner.lbs.get(lb) {
            Some(state) => state.changed <= since.0 && state.unreported == 0,
            None => inner.pruned_at <= since.0,
        }
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
    fn forgetting_load_balancers_makes_older_reads_stale() {
        let epochs = Epochs::default();
        let read = epochs.ticket();
        for n in 0..=PRUNE_ABOVE {
            epochs.applied(&n.to_string());
            epochs.reported(&n.to_string());
        }
        assert!(epochs.inner.lock().unwrap().lbs.len() <= PRUNE_ABOVE);
        assert!(!epochs.current("0", read));
        assert!(epochs.current("0", epochs.ticket()));
    }
}
