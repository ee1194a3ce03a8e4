//! Sending applied operations' statuses to Octavia without making operations wait for each other.
//!
//! The driver-agent forks a process for every status request, and that process opens its own database
//! session: a request costs 0.15–0.4 s on a 2-CPU machine whether it carries one record or fifty. Sent
//! one at a time from one thread, a burst of operations reaches ACTIVE at the rate of those requests.
//! Here a few sender threads each take every queued report they may send, merge them into one document
//! and send it; the others go to the next free sender meanwhile.
//!
//! One load balancer's reports stay in order: a report is not sent while an earlier one of a load
//! balancer it names is queued before it or being sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::status::{document, StatusSink};
use crate::lanes::Ticket;
use crate::runtime::bindings::octavia::{ObjectKind, ObjectStatus};

/// Sender threads: as many status requests in flight at once.
pub const SENDERS: usize = 4;
/// Records in one merged document at most (a cascade delete alone may carry hundreds).
const MAX_RECORDS: usize = 500;

type Then = Box<dyn FnOnce() + Send>;

struct Report {
    statuses: Vec<ObjectStatus>,
    lbs: Vec<String>,
    /// An earlier run of the host may have sent it (see `StatusSink::report_left`).
    sent_before: bool,
    /// Its operation's place in the apply lanes' order (0: unknown, as if before every operation).
    ticket: Ticket,
    then: Then,
}

#[derive(Default)]
struct Queue {
    reports: VecDeque<Report>,
    /// Load balancers named by a report being sent.
    sending: HashSet<String>,
}

/// Whether a load balancer has an operation the host accepted after the one of a ticket and has not yet
/// applied.
type Pending = Box<dyn Fn(&str, Ticket) -> bool + Send + Sync>;

pub struct Reporter {
    queue: Mutex<Queue>,
    ready: Condvar,
    sink: Arc<dyn StatusSink>,
    /// Operations accepted and not yet applied (see `Reporter::not_superseded`).
    pending: std::sync::OnceLock<Pending>,
}

impl Reporter {
    /// A reporter sending to `sink` from `senders` threads.
    pub fn start(sink: Arc<dyn StatusSink>, senders: usize) -> Arc<Reporter> {
        let reporter = Arc::new(Reporter { queue: Mutex::default(), ready: Condvar::new(), sink, pending: std::sync::OnceLock::new() });
        for n in 0..senders.max(1) {
            let r = Arc::clone(&reporter);
            std::thread::Builder::new().name(format!("status-{n}")).spawn(move || r.serve()).expect("status sender thread");
        }
        reporter
    }

    /// Sends `statuses` (after every earlier report naming one of their load balancers), then runs
    /// `then` on the sender thread. Without statuses `then` runs at once.
    pub fn submit(&self, statuses: Vec<ObjectStatus>, then: impl FnOnce() + Send + 'static) {
        self.submit_applied(statuses, 0, false, then);
    }

    /// `submit`, for the statuses of the operation of `ticket` in the apply lanes. When `sent_before`
    /// (accepted before a restart: the run that stopped may have reported it, and Octavia cannot say it
    /// took it) they go alone, and only what no later operation of their load balancers makes stale (see
    /// `not_superseded`).
    pub fn submit_applied(&self, statuses: Vec<ObjectStatus>, ticket: Ticket, sent_before: bool, then: impl FnOnce() + Send + 'static) {
        if statuses.is_empty() {
            return then();
        }
        let mut lbs: Vec<String> = statuses.iter().filter(|s| s.kind == ObjectKind::Loadbalancer).map(|s| s.id.clone()).collect();
        lbs.dedup();
        self.queue.lock().unwrap().reports.push_back(Report { statuses, lbs, sent_before, ticket, then: Box::new(then) });
        self.ready.notify_one();
    }

    /// Reports queued and not yet being sent.
    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap().reports.len()
    }

    /// Takes every queued report that may be sent now, in order, up to `MAX_RECORDS` records. A report
    /// sent before goes alone: what is left of it is not what is left of the others.
    fn take(queue: &mut Queue) -> Vec<Report> {
        let mut taken = Vec::new();
        let mut records = 0;
        // Load balancers of reports left queued: a later report naming one of them must wait too.
        let mut held: HashSet<String> = HashSet::new();
        let mut i = 0;
        while i < queue.reports.len() {
            let report = &queue.reports[i];
            let blocked = report.lbs.iter().any(|lb| queue.sending.contains(lb) || held.contains(lb));
            if blocked || (!taken.is_empty() && (report.sent_before || records + report.statuses.len() > MAX_RECORDS)) {
                held.extend(report.lbs.iter().cloned());
                i += 1;
                continue;
            }
            let report = queue.reports.remove(i).expect("index in range");
            records += report.statuses.len();
            queue.sending.extend(report.lbs.iter().cloned());
            let alone = report.sent_before;
            taken.push(report);
            if alone {
                break;
            }
        }
        taken
    }

    /// Tells the reporter whether a load balancer has operations accepted after the one of a ticket and not
    /// yet applied (the apply lanes' work). Set once; a reporter without it knows only the reports queued.
    pub fn know_pending(&self, pending: impl Fn(&str, Ticket) -> bool + Send + Sync + 'static) {
        let _ = self.pending.set(Box::new(pending));
    }

    /// What is left to send of a batch's document that may have been applied (sent without an answer, or
    /// sent by an earlier run of the host).
    ///
    /// A report whose load balancer has an operation accepted after it and not yet applied is left out:
    /// Octavia admitted that operation only once the load balancer had left the PENDING state the report
    /// ends, and the driver-agent applies a document's records each in a transaction of its own, load
    /// balancers last, so the report's records were applied; the operation's own report brings the load
    /// balancer back. Only operations accepted after the report's own ticket count (its own operation may
    /// still be marking its lane done). The other reports' load balancers may still be PENDING (the
    /// driver-agent stopped part-way through the document): theirs go again, but for the statuses of
    /// objects a report queued since names too, which are left to that report (it goes after this one;
    /// sent again whole, the document would set the load balancer ACTIVE before that report's objects).
    fn not_superseded(&self, batch: &[Report]) -> Option<serde_json::Value> {
        let superseded = |r: &Report| self.pending.get().is_some_and(|pending| r.lbs.iter().any(|lb| pending(lb, r.ticket)));
        let current: Vec<&Report> = batch.iter().filter(|r| !superseded(r)).collect();
        let lbs: HashSet<&str> = current.iter().flat_map(|r| r.lbs.iter().map(String::as_str)).collect();
        let queue = self.queue.lock().unwrap();
        // Object kinds are few: a linear look among each id's kinds.
        let mut later: HashMap<&str, Vec<ObjectKind>> = HashMap::new();
        for report in queue.reports.iter().filter(|r| r.lbs.iter().any(|lb| lbs.contains(lb.as_str()))) {
            for s in &report.statuses {
                later.entry(s.id.as_str()).or_default().push(s.kind);
            }
        }
        let left: Vec<ObjectStatus> =
            current.iter().flat_map(|r| &r.statuses).filter(|s| !later.get(s.id.as_str()).is_some_and(|kinds| kinds.contains(&s.kind))).cloned().collect();
        (!left.is_empty()).then(|| document(&left))
    }

    fn serve(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap();
                loop {
                    let batch = Self::take(&mut queue);
                    if !batch.is_empty() {
                        // What is left may be for another sender (past `MAX_RECORDS`).
                        if !queue.reports.is_empty() {
                            self.ready.notify_one();
                        }
                        break batch;
                    }
                    queue = self.ready.wait(queue).unwrap();
                }
            };
            let statuses: Vec<ObjectStatus> = batch.iter().flat_map(|r| r.statuses.iter().cloned()).collect();
            crate::metrics::STATUS_DOCUMENTS.inc();
            let sending = std::time::Instant::now();
            let sent_before = batch.iter().any(|r| r.sent_before);
            self.sink.report_left(&document(&statuses), sent_before, &|| self.not_superseded(&batch));
            crate::metrics::STATUS_UPDATE.record(sending.elapsed());
            let mut lbs = Vec::new();
            for report in batch {
                lbs.extend(report.lbs);
                (report.then)();
            }
            // Reports held back behind these are this sender's to take next: waking the idle senders
            // for them woke three threads per document, mostly for nothing.
            let mut queue = self.queue.lock().unwrap();
            for lb in &lbs {
                queue.sending.remove(lb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::octavia::ProvisioningStatus;
    use serde_json::Value;
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::time::Duration;

    fn active(kind: ObjectKind, id: &str) -> ObjectStatus {
        ObjectStatus { kind, id: id.into(), provisioning: Some(ProvisioningStatus::Active), operating: None }
    }

    /// A sink that hands the test each document with a channel to let that request return.
    struct Gate(Mutex<Sender<(Value, Sender<()>)>>);

    impl StatusSink for Gate {
        fn report(&self, document: &Value) {
            let (release, wait) = channel();
            self.0.lock().unwrap().send((document.clone(), release)).unwrap();
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }

    fn gate(senders: usize) -> (Arc<Reporter>, Receiver<(Value, Sender<()>)>) {
        let (tx, rx) = channel();
        (Reporter::start(Arc::new(Gate(Mutex::new(tx))), senders), rx)
    }

    fn ids(document: &Value, collection: &str) -> Vec<String> {
        document[collection].as_array().into_iter().flatten().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn reports_queued_while_others_are_sent_go_out_together_and_in_order_per_load_balancer() {
        let (reporter, seen) = gate(2);
        let (done_tx, done) = channel::<&'static str>();
        let done_tx = Mutex::new(done_tx);
        let finished = move |name: &'static str| {
            let tx = done_tx.lock().unwrap().clone();
            move || tx.send(name).unwrap()
        };
        // a1 is being sent: a2 (same load balancer) must wait for it, b1 and c1 need not.
        reporter.submit(vec![active(ObjectKind::Member, "m-a1"), active(ObjectKind::Loadbalancer, "a")], finished("a1"));
        let (first, release_a1) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(ids(&first, "members"), ["m-a1"]);
        reporter.submit(vec![active(ObjectKind::Member, "m-a2"), active(ObjectKind::Loadbalancer, "a")], finished("a2"));
        reporter.submit(vec![active(ObjectKind::Member, "m-b1"), active(ObjectKind::Loadbalancer, "b")], finished("b1"));
        reporter.submit(vec![active(ObjectKind::Member, "m-c1"), active(ObjectKind::Loadbalancer, "c")], finished("c1"));
        // The other sender takes b1 and c1 (together when both were queued), never a2 while a1 is sent.
        let mut sent: Vec<String> = Vec::new();
        while sent.len() < 2 {
            let (doc, release) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(!ids(&doc, "members").contains(&"m-a2".to_string()), "a2 was sent while a1 was: {doc}");
            sent.extend(ids(&doc, "members"));
            release.send(()).unwrap();
        }
        sent.sort();
        assert_eq!(sent, ["m-b1", "m-c1"]);
        assert!(seen.recv_timeout(Duration::from_millis(100)).is_err(), "a2 was sent while a1 was");
        release_a1.send(()).unwrap();
        let (last, release) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(ids(&last, "members"), ["m-a2"]);
        release.send(()).unwrap();
        let mut order = Vec::new();
        for _ in 0..4 {
            order.push(done.recv_timeout(Duration::from_secs(10)).unwrap());
        }
        let position = |n: &str| order.iter().position(|o| *o == n).unwrap();
        assert!(position("a1") < position("a2"), "{order:?}");
    }

    #[test]
    fn reports_queued_behind_a_busy_sender_share_one_document() {
        let (reporter, seen) = gate(1);
        reporter.submit(vec![active(ObjectKind::Loadbalancer, "a")], || {});
        let (_, release) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        for lb in ["b", "c", "d"] {
            reporter.submit(vec![active(ObjectKind::Member, &format!("m-{lb}")), active(ObjectKind::Loadbalancer, lb)], || {});
        }
        release.send(()).unwrap();
        let (doc, release) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        release.send(()).unwrap();
        assert_eq!(ids(&doc, "loadbalancers"), ["b", "c", "d"], "{doc}");
        assert_eq!(ids(&doc, "members"), ["m-b", "m-c", "m-d"], "{doc}");
    }

    #[test]
    fn a_report_without_statuses_finishes_at_once() {
        let (reporter, _seen) = gate(1);
        let (tx, rx) = channel();
        reporter.submit(Vec::new(), move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(1)).unwrap();
    }
}
