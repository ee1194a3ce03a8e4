//! Notices of Octavia's commits from the provider, so that an operation need not ask the get socket.
//!
//! Octavia calls the provider inside its database transaction and commits right after the provider
//! returns; a status sent before that commit is lost (PROVIDER-NOTES, "the commit race"). Reading the
//! get socket until the object shows committed works everywhere, but every read forks a driver-agent
//! process that opens its own database session: 0.15–0.4 s on a 2-CPU machine, as much as the status
//! update itself. The provider runs in Octavia's API process: it gives each create or update cast a
//! `commit_ticket` and, once the API's transaction commits (SQLAlchemy's `after_commit`, in the thread
//! that made the cast), sends `{"type": "notice", "method": "committed", "args": {"tickets": [...]}}`
//! (`rolled_back` when it rolls back instead). An operation whose notice says committed is applied at
//! once; without a notice within `NOTICE_WAIT` (an older provider, a restart in between, the AMQP
//! transport), or after a rollback notice, the get socket is asked as before, so a lost or wrong
//! rollback notice never drops an operation.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long an operation with a ticket waits for its notice before asking the get socket. Octavia
/// commits milliseconds after the provider returns; this covers a loaded API process.
pub const NOTICE_WAIT: Duration = Duration::from_secs(5);
/// Tickets kept beyond this count are dropped once older than `FORGET_AFTER` (notices nobody waits for).
const PRUNE_ABOVE: usize = 4096;
const FORGET_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Notice {
    /// The cast was accepted; no notice yet.
    Awaited,
    Committed,
    RolledBack,
}

struct Ticket {
    notice: Notice,
    at: Instant,
    /// What its waiter, if one waits, is woken by: each waiter is woken by its own notice only (with one
    /// condition for all, every notice woke every waiting apply lane, seven of eight of them for nothing).
    waiter: Option<Arc<Condvar>>,
}

#[derive(Default)]
pub struct Commits {
    tickets: Mutex<HashMap<String, Ticket>>,
}

impl Commits {
    /// A cast carrying `ticket` was accepted: its notice is awaited.
    pub fn expect(&self, ticket: &str) {
        let mut tickets = self.tickets.lock().unwrap();
        Self::prune(&mut tickets);
        tickets.entry(ticket.to_string()).or_insert(Ticket { notice: Notice::Awaited, at: Instant::now(), waiter: None });
    }

    /// The provider's notice for `tickets` (`committed` or `rolled_back`).
    pub fn notice(&self, method: &str, tickets: &[String]) -> Result<(), String> {
        let notice = match method {
            "committed" => Notice::Committed,
            "rolled_back" => Notice::RolledBack,
            other => return Err(format!("unknown notice {other:?} (committed or rolled_back)")),
        };
        let mut known = self.tickets.lock().unwrap();
        Self::prune(&mut known);
        for ticket in tickets {
            let entry = known.entry(ticket.clone()).or_insert(Ticket { notice, at: Instant::now(), waiter: None });
            (entry.notice, entry.at) = (notice, Instant::now());
            if let Some(waiter) = &entry.waiter {
                waiter.notify_one();
            }
        }
        Ok(())
    }

    /// Waits up to `within` for the notice of an accepted cast's ticket and forgets the ticket. `None`
    /// when no cast with that ticket was accepted by this process (an operation restored from the
    /// inbox after a restart: its notice went to the previous process), or when `still_ours` turned
    /// false.
    pub fn wait(&self, ticket: &str, within: Duration, still_ours: &dyn Fn() -> bool) -> Option<Notice> {
        let deadline = Instant::now() + within;
        let woken = Arc::new(Condvar::new());
        let mut tickets = self.tickets.lock().unwrap();
        loop {
            let entry = tickets.get_mut(ticket)?;
            if entry.notice != Notice::Awaited {
                let notice = entry.notice;
                tickets.remove(ticket);
                return Some(notice);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !still_ours() {
                tickets.remove(ticket);
                return Some(Notice::Awaited);
            }
            entry.waiter = Some(Arc::clone(&woken));
            // Woken by its notice; `still_ours` is looked at again at least every 100 ms.
            tickets = woken.wait_timeout(tickets, left.min(Duration::from_millis(100))).unwrap().0;
        }
    }

    fn prune(tickets: &mut HashMap<String, Ticket>) {
        if tickets.len() > PRUNE_ABOVE {
            tickets.retain(|_, t| t.at.elapsed() < FORGET_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_notice_wakes_its_waiter_and_unknown_tickets_are_not_waited_for() {
        let commits = Arc::new(Commits::default());
        assert_eq!(commits.wait("never-cast", Duration::from_secs(5), &|| true), None);
        commits.expect("t1");
        let notifier = Arc::clone(&commits);
        let started = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            notifier.notice("committed", &["t1".to_string()]).unwrap();
        });
        assert_eq!(commits.wait("t1", Duration::from_secs(5), &|| true), Some(Notice::Committed));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(commits.wait("t1", Duration::from_secs(5), &|| true), None, "a ticket is forgotten once waited for");
        commits.expect("t2");
        assert_eq!(commits.wait("t2", Duration::from_millis(50), &|| true), Some(Notice::Awaited), "no notice: the wait times out");
        commits.expect("t3");
        commits.notice("rolled_back", &["t3".to_string()]).unwrap();
        assert_eq!(commits.wait("t3", Duration::from_secs(5), &|| true), Some(Notice::RolledBack));
        assert!(commits.notice("maybe", &[]).is_err());
    }

    #[test]
    fn a_waiter_is_woken_by_its_own_notice_not_by_others() {
        let commits = Arc::new(Commits::default());
        commits.expect("mine");
        let looks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (waiter, counted) = (Arc::clone(&commits), Arc::clone(&looks));
        let started = Instant::now();
        let waiting =
            std::thread::spawn(move || waiter.wait("mine", Duration::from_secs(5), &|| counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < usize::MAX));
        while looks.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for n in 0..20 {
            let other = format!("other-{n}");
            commits.expect(&other);
            commits.notice("committed", &[other]).unwrap();
            // Time for a waiter woken by it to look.
            std::thread::sleep(Duration::from_millis(3));
        }
        commits.notice("committed", &["mine".to_string()]).unwrap();
        assert_eq!(waiting.join().unwrap(), Some(Notice::Committed));
        // Woken once by its notice, and by the 100 ms re-check while it lasted; never by the 20 others.
        let rechecks = started.elapsed().as_millis() as usize / 100;
        assert!(looks.load(std::sync::atomic::Ordering::SeqCst) <= 1 + rechecks, "looked {} times", looks.load(std::sync::atomic::Ordering::SeqCst));
    }
}
