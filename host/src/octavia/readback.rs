//! Reading load balancers back from Octavia's get socket several at a time, within a slice of time.
//!
//! The driver-agent forks a process for every read (~0.1–0.2 s), so one read at a time brings back a few
//! load balancers a second. Where they wait for the read (unserved over AMQP, or in ERROR after failing at
//! LoxiLB), they are read `URGENT` at a time; one of `GET_CONCURRENCY`'s turns is left to operations,
//! which over AMQP read the get socket for every commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::agent::GET_CONCURRENCY;

/// Reads at once for load balancers that wait for them.
pub const URGENT: usize = GET_CONCURRENCY - 1;

/// What to do after one load balancer was read back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    Go,
    /// The get socket cannot be asked: no further read is started.
    Stop,
}

/// What a round of reads left.
#[derive(Debug, PartialEq)]
pub struct Left<T> {
    /// The items no read was started for, in their order.
    pub items: Vec<T>,
    /// Whether a read answered `Next::Stop`.
    pub stopped: bool,
}

/// Calls `read` on items taken from the end of `items`, from `readers` threads at once (the caller's
/// among them), until none is left, one answers `Next::Stop`, or `slice` has passed since the start (no
/// further read is started then; those under way finish).
pub fn read_back<T: Send>(items: Vec<T>, readers: usize, slice: Option<Duration>, read: impl Fn(T) -> Next + Sync) -> Left<T> {
    let started = Instant::now();
    let (left, stopped) = (Mutex::new(items), AtomicBool::new(false));
    let reader = || loop {
        if stopped.load(Ordering::Relaxed) || slice.is_some_and(|slice| started.elapsed() >= slice) {
            return;
        }
        let Some(item) = left.lock().unwrap().pop() else { return };
        if read(item) == Next::Stop {
            stopped.store(true, Ordering::Relaxed);
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..readers {
            scope.spawn(reader);
        }
        reader();
    });
    Left { items: left.into_inner().unwrap(), stopped: stopped.into_inner() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Each read takes `pause`, counting the most under way at once.
    fn reads(pause: Duration) -> (AtomicUsize, AtomicUsize, impl Fn(&AtomicUsize, &AtomicUsize) -> Next) {
        let read = move |now: &AtomicUsize, most: &AtomicUsize| {
            most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            std::thread::sleep(pause);
            now.fetch_sub(1, Ordering::SeqCst);
            Next::Go
        };
        (AtomicUsize::new(0), AtomicUsize::new(0), read)
    }

    #[test]
    fn every_item_is_read_once_by_at_most_the_readers_asked_for() {
        let (now, most, read) = reads(Duration::from_millis(20));
        let seen = Mutex::new(Vec::new());
        let left = read_back((0..12).collect(), URGENT, None, |n: u32| {
            seen.lock().unwrap().push(n);
            read(&now, &most)
        });
        assert_eq!(left, Left { items: vec![], stopped: false });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..12).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), URGENT);
    }

    #[test]
    fn one_reader_reads_from_the_end_one_at_a_time() {
        let (now, most, read) = reads(Duration::ZERO);
        let seen = Mutex::new(Vec::new());
        read_back(vec!["a", "b", "c"], 1, None, |id| {
            seen.lock().unwrap().push(id);
            read(&now, &most)
        });
        assert_eq!(seen.into_inner().unwrap(), ["c", "b", "a"]);
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_read_starts_after_a_stop_or_past_the_slice() {
        let left = read_back(vec![1, 2, 3, 4], 1, None, |n| if n == 3 { Next::Stop } else { Next::Go });
        assert_eq!(left, Left { items: vec![1, 2], stopped: true });
        let (now, most, read) = reads(Duration::from_millis(30));
        let left = read_back((0..100).collect::<Vec<u32>>(), 2, Some(Duration::from_millis(50)), |_| read(&now, &most));
        assert!(!left.stopped);
        assert!((94..=99).contains(&left.items.len()), "{} items left", left.items.len());
        assert_eq!(left.items, (0..left.items.len() as u32).collect::<Vec<_>>(), "the items left keep their order");
    }
}
