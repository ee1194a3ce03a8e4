//! Apply queues of the Unix-socket transport: one FIFO lane per load balancer, served by a bounded pool
//! of worker threads that each take the next load balancer with work and run its head job.
//!
//! A lane is worked on by at most one worker at a time, so one load balancer's operations run one after
//! another in arrival order. A job that blocks (an operation waiting up to `commit_wait_timeout` for
//! Octavia to commit its object) holds only its own lane and one worker: the other lanes go to other
//! workers, started on demand up to the pool's size and ended again after a while without work. Lanes are
//! served in the order they became ready, so a busy load balancer cannot starve a quiet one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a worker without work waits before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(30);

struct State<J> {
    /// Queued jobs of every load balancer that has some, each with its ticket.
    lanes: HashMap<String, VecDeque<(Ticket, J)>>,
    /// Lanes with queued jobs and no worker, in the order they became so.
    ready: VecDeque<String>,
    /// Lanes a worker is running a job of, and that job's ticket.
    busy: HashMap<String, Ticket>,
    /// The ticket of the next job pushed.
    next: Ticket,
    workers: usize,
    /// Workers waiting for work that nobody has woken yet.
    idle: usize,
    /// Wake-ups handed out and not yet taken (a woken worker may not be the one `notify_one` meant).
    wakeups: usize,
}

/// A job's place in the order jobs were pushed, over every lane (the first is 1): a job with a larger
/// ticket was accepted after one with a smaller.
pub type Ticket = u64;

pub struct Lanes<J> {
    state: Mutex<State<J>>,
    work: Condvar,
    max_workers: usize,
    run: Box<dyn Fn(J, Ticket) + Send + Sync>,
}

impl<J: Send + 'static> Lanes<J> {
    /// Lanes whose jobs `run` executes (given each job's ticket), on at most `max_workers` threads at a time.
    pub fn new(max_workers: usize, run: impl Fn(J, Ticket) + Send + Sync + 'static) -> Arc<Lanes<J>> {
        Arc::new(Lanes {
            state: Mutex::new(State { lanes: HashMap::new(), ready: VecDeque::new(), busy: HashMap::new(), next: 1, workers: 0, idle: 0, wakeups: 0 }),
            work: Condvar::new(),
            max_workers: max_workers.max(1),
            run: Box::new(run),
        })
    }

    /// Queues `job` behind the jobs already queued for `lane`.
    pub fn push(self: &Arc<Self>, lane: &str, job: J) {
        let mut state = self.state.lock().unwrap();
        let ticket = state.next;
        state.next += 1;
        let queue = state.lanes.entry(lane.to_string()).or_default();
        queue.push_back((ticket, job));
        // A lane is in `ready` exactly when it has jobs and no worker: it just got its first job.
        if queue.len() == 1 && !state.busy.contains_key(lane) {
            state.ready.push_back(lane.to_string());
            self.wake_or_start(&mut state);
        }
    }

    /// Whether `lane` has a job queued or running that was pushed after the job of `ticket` (0: any job).
    pub fn has_work_after(&self, lane: &str, ticket: Ticket) -> bool {
        let state = self.state.lock().unwrap();
        state.busy.get(lane).is_some_and(|&t| t > ticket) || state.lanes.get(lane).is_some_and(|q| q.iter().any(|(t, _)| *t > ticket))
    }

    /// Jobs queued and not yet started.
    pub fn queued(&self) -> usize {
        self.state.lock().unwrap().lanes.values().map(VecDeque::len).sum()
    }

    /// Worker threads running now (busy or waiting for work).
    pub fn workers(&self) -> usize {
        self.state.lock().unwrap().workers
    }

    fn wake_or_start(self: &Arc<Self>, state: &mut State<J>) {
        if state.idle > 0 {
            state.idle -= 1;
            state.wakeups += 1;
            self.work.notify_one();
        } else if state.workers < self.max_workers {
            state.workers += 1;
            let lanes = Arc::clone(self);
            let n = state.workers;
            // Without a thread the lane would wait for a busy worker: fail loudly rather than stall.
            std::thread::Builder::new().name(format!("apply-{n}")).spawn(move || lanes.serve()).expect("apply worker thread");
        }
        // Otherwise every worker is busy: the lane is served when one finishes its job.
    }

    fn serve(self: Arc<Self>) {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(lane) = state.ready.pop_front() {
                let (ticket, job) = state.lanes.get_mut(&lane).and_then(VecDeque::pop_front).expect("a ready lane has a job");
                state.busy.insert(lane.clone(), ticket);
                drop(state);
                // A job that panics must not take its lane (and every later job of that load balancer) with it.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.run)(job, ticket))).is_err() {
                    tracing::error!("applying an operation of load balancer {lane:?} panicked; going on with the next");
                }
                state = self.state.lock().unwrap();
                state.busy.remove(&lane);
                if state.lanes.get(&lane).is_some_and(|q| !q.is_empty()) {
                    state.ready.push_back(lane);
                } else {
                    state.lanes.remove(&lane);
                }
                continue;
            }
            state.idle += 1;
            loop {
                let (next, timeout) = self.work.wait_timeout(state, IDLE_EXIT).unwrap();
                state = next;
                if state.wakeups > 0 {
                    state.wakeups -= 1;
                    break;
                }
                if timeout.timed_out() {
                    state.idle -= 1;
                    state.workers -= 1;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::Instant;

    /// A job that records its start, then waits for its release (or runs through when `gate` is None).
    type Job = (String, u32, Option<Receiver<()>>);

    fn lanes(max: usize) -> (Arc<Lanes<Job>>, Receiver<(String, u32)>) {
        let (started, log) = channel::<(String, u32)>();
        let started = Mutex::new(started);
        let lanes = Lanes::new(max, move |(lane, n, gate): Job, _| {
            started.lock().unwrap().send((lane, n)).unwrap();
            if let Some(gate) = gate {
                let _ = gate.recv_timeout(Duration::from_secs(20));
            }
        });
        (lanes, log)
    }

    fn gated(lanes: &Arc<Lanes<Job>>, lane: &str, n: u32) -> Sender<()> {
        let (release, gate) = channel();
        lanes.push(lane, (lane.to_string(), n, Some(gate)));
        release
    }

    #[test]
    fn a_blocked_lane_holds_up_only_itself() {
        let (lanes, log) = lanes(4);
        let release_a = gated(&lanes, "a", 1);
        let _more_a = gated(&lanes, "a", 2);
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), ("a".into(), 1));
        lanes.push("b", ("b".into(), 1, None));
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), ("b".into(), 1), "b waited for a's blocked job");
        assert!(log.recv_timeout(Duration::from_millis(100)).is_err(), "a's second job ran before its first finished");
        release_a.send(()).unwrap();
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), ("a".into(), 2));
    }

    #[test]
    fn a_lane_has_work_while_a_job_of_it_is_queued_or_running() {
        let (lanes, log) = lanes(1);
        assert!(!lanes.has_work_after("a", 0));
        let release_a = gated(&lanes, "a", 1);
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), ("a".into(), 1));
        let release_b = gated(&lanes, "b", 1);
        assert!(lanes.has_work_after("a", 0), "running");
        assert!(lanes.has_work_after("b", 0), "queued behind the only worker");
        release_a.send(()).unwrap();
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), ("b".into(), 1));
        release_b.send(()).unwrap();
        let waited = Instant::now();
        while lanes.has_work_after("a", 0) || lanes.has_work_after("b", 0) {
            assert!(waited.elapsed() < Duration::from_secs(10), "the lanes never emptied");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Tickets follow the order jobs were pushed in, over every lane; a job's own ticket, running or not,
    /// is not work after it.
    #[test]
    fn a_lane_has_work_after_a_ticket_only_for_jobs_pushed_later() {
        let (ran, log) = channel::<Ticket>();
        let ran = Mutex::new(ran);
        let (release, gate) = channel::<()>();
        let gate = Mutex::new(gate);
        let lanes = Lanes::new(1, move |_: u32, ticket| {
            ran.lock().unwrap().send(ticket).unwrap();
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(20));
        });
        lanes.push("a", 0);
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        lanes.push("b", 0);
        lanes.push("a", 0);
        assert!(lanes.has_work_after("a", 1), "job 3 is queued behind job 1");
        assert!(!lanes.has_work_after("a", 3));
        assert!(lanes.has_work_after("b", 1) && !lanes.has_work_after("b", 2));
        release.send(()).unwrap();
        let next = log.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(next == 2 || next == 3, "{next}");
        assert!(!lanes.has_work_after("a", 3), "job 3's own ticket is not work after it");
        for _ in 0..2 {
            release.send(()).unwrap();
        }
    }

    #[test]
    fn a_job_that_panics_does_not_stop_its_lane() {
        let (done, log) = channel::<u32>();
        let done = Mutex::new(done);
        let lanes = Lanes::new(1, move |n: u32, _| {
            assert!(n != 1, "job 1 fails");
            done.lock().unwrap().send(n).unwrap();
        });
        for n in 0..3 {
            lanes.push("a", n);
        }
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        assert_eq!(log.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
    }

    #[test]
    fn each_lane_keeps_its_order_and_workers_stay_bounded() {
        let (lanes, log) = lanes(3);
        // Three blocked lanes take every worker: a fourth lane waits, then runs once one is released.
        let releases: Vec<_> = ["x", "y", "z"].iter().map(|l| gated(&lanes, l, 0)).collect();
        for _ in 0..3 {
            log.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        for n in 1..=50 {
            for lane in ["p", "q"] {
                lanes.push(lane, (lane.to_string(), n, None));
            }
        }
        assert!(log.recv_timeout(Duration::from_millis(100)).is_err(), "more than 3 jobs ran at once");
        assert_eq!(lanes.workers(), 3);
        releases[0].send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
        while seen.values().map(Vec::len).sum::<usize>() < 100 {
            let (lane, n) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("every job runs");
            seen.entry(lane).or_default().push(n);
        }
        assert_eq!(seen["p"], (1..=50).collect::<Vec<_>>());
        assert_eq!(seen["q"], (1..=50).collect::<Vec<_>>());
        assert_eq!(lanes.queued(), 0);
        for r in &releases[1..] {
            r.send(()).unwrap();
        }
    }
}
