//! Status documents for the driver-agent, and where they go.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::agent::{DriverAgent, NotReached, Refused};
use crate::runtime::bindings::octavia::{ObjectKind, ObjectStatus, OperatingStatus, ProvisioningStatus};

pub fn collection(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Loadbalancer => "loadbalancers",
        ObjectKind::Listener => "listeners",
        ObjectKind::Pool => "pools",
        ObjectKind::Member => "members",
        ObjectKind::HealthMonitor => "healthmonitors",
        ObjectKind::L7policy => "l7policies",
        ObjectKind::L7rule => "l7rules",
    }
}

pub fn provisioning(p: ProvisioningStatus) -> &'static str {
    match p {
        ProvisioningStatus::Active => "ACTIVE",
        ProvisioningStatus::Deleted => "DELETED",
        ProvisioningStatus::Error => "ERROR",
    }
}

pub fn operating(o: OperatingStatus) -> &'static str {
    match o {
        OperatingStatus::Online => "ONLINE",
        OperatingStatus::Offline => "OFFLINE",
        OperatingStatus::Degraded => "DEGRADED",
        OperatingStatus::Error => "ERROR",
        OperatingStatus::Draining => "DRAINING",
        OperatingStatus::NoMonitor => "NO_MONITOR",
    }
}

/// `{"loadbalancers": [{"id", "provisioning_status", "operating_status"}], "listeners": […], …}`.
pub fn document(statuses: &[ObjectStatus]) -> Value {
    let mut out = Map::new();
    for s in statuses {
        let mut record = Map::new();
        record.insert("id".into(), json!(s.id));
        if let Some(p) = s.provisioning {
            record.insert("provisioning_status".into(), json!(provisioning(p)));
        }
        if let Some(o) = s.operating {
            record.insert("operating_status".into(), json!(operating(o)));
        }
        out.entry(collection(s.kind)).or_insert_with(|| json!([])).as_array_mut().expect("array").push(Value::Object(record));
    }
    Value::Object(out)
}

/// Where status documents go.
pub trait StatusSink: Send + Sync {
    /// Sends `document`; while Octavia cannot take it, for as long as it takes (see `AgentSink`). For the
    /// statuses of operations, which stay in the backlog (and the inbox, or unacknowledged) until then.
    fn report(&self, document: &Value);

    /// `report`, asking `left` what is left to send (`None`: nothing) before each attempt once the document
    /// may have been applied: after an attempt that reached the driver-agent and got no answer (it may have
    /// stopped after applying it and before replying), and from the first attempt when `sent_before` (an
    /// earlier run of the host may have sent it). Octavia may since show a later operation under way; sent
    /// again as it was, the document would set the load balancer ACTIVE in the middle of that operation. Its
    /// caller leaves out what a later report will send (see `Reporter`). An attempt that could not connect
    /// cannot have been applied: the document then goes again whole.
    /// This one, for sinks whose every attempt is taken, asks `left` once when `sent_before`.
    fn report_left(&self, document: &Value, sent_before: bool, left: &dyn Fn() -> Option<Value>) {
        if !sent_before {
            return self.report(document);
        }
        if let Some(rest) = left() {
            self.report(&rest);
        }
    }

    /// `report`, for callers that must go on and send it again later (the monitor's passes): stops once
    /// Octavia has not taken it for `patience`. Whether nothing is left to send.
    fn report_within(&self, document: &Value, _patience: Duration) -> bool {
        self.report(document);
        true
    }

    /// How long the status updates being sent have failed, if they do now (a full backlog says why).
    fn failing_for(&self) -> Option<Duration> {
        None
    }
}

/// Waits between attempts at a status document: from `first`, doubling up to `most`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub most: Duration,
}

impl Backoff {
    fn waits(self) -> impl FnMut() {
        let mut next = self.first;
        move || {
            std::thread::sleep(next);
            next = (next * 2).min(self.most);
        }
    }
}

/// How long `report_within`'s callers in the host wait for Octavia to take a status. They run on the
/// monitor's thread, which also watches LoxiLB: while the driver-agent is down a pass is held this long
/// (or one `SOCKET_TIMEOUT` against a driver-agent that hangs), and a LoxiLB restart is still noticed
/// within seconds. A driver-agent that answers slowly is not affected (an attempt waits for its answer).
pub const PATIENCE: Duration = Duration::from_secs(2);

/// A warning about a status socket that does not answer is repeated this often while it lasts.
const UNANSWERED_WARN_EVERY: Duration = Duration::from_secs(60);

/// Octavia's status socket. A status is never dropped because Octavia could not take it, since an object
/// whose status is lost stays PENDING in Octavia for good (its users can no longer change or delete it):
/// - while the socket does not answer (the driver-agent restarting, or stopped for an upgrade) the
///   document is sent again, waiting longer each time up to `backoff.most`, for as long as it takes. Its
///   operations stay in the backlog and the inbox meanwhile: a full backlog refuses new casts, and a
///   restart applies and reports them again;
/// - the driver-agent answers 500 alike for a record naming an object it no longer has and for a database
///   it could not reach (a restart, a failover, a deadlock), and applies the records before the failed
///   one. While its get socket cannot answer either (the database is down) a refused document is sent
///   again whole; otherwise once more whole if Octavia shows the first record's object (a deadlock or a
///   failover of a moment refuses it too), then record by record, and a record refused again is dropped
///   at once only when the get socket says the object is gone (nothing waits for its status). While the
///   get socket cannot say, the record is sent again; once Octavia has shown the object `refusals` times
///   and refused each, it is given up and logged whole, to be replayed.
pub struct AgentSink {
    pub agent: DriverAgent,
    pub backoff: Backoff,
    pub refusals: u32,
    /// Since when the updates being sent have failed: set at a failure, cleared when one is taken.
    failing_since: Mutex<Option<Instant>>,
}

impl AgentSink {
    /// The production settings: 0.2 s doubling to 10 s; a record refused 8 times while Octavia shows its
    /// object (about 25 s) is given up.
    pub fn new(agent: DriverAgent) -> AgentSink {
        AgentSink::with(agent, Backoff { first: Duration::from_millis(200), most: Duration::from_secs(10) }, 8)
    }

    pub fn with(agent: DriverAgent, backoff: Backoff, refusals: u32) -> AgentSink {
        AgentSink { agent, backoff, refusals, failing_since: Mutex::new(None) }
    }

    fn failing(&self, now: bool) {
        let mut since = self.failing_since.lock().unwrap();
        *since = if now { since.or(Some(Instant::now())) } else { None };
    }

    /// Sends `document` until the driver-agent answers, or `until` passes without an answer. Once it may
    /// have been applied, what is sent is what `left` says is left (see `StatusSink::report_left`).
    fn deliver(&self, document: &Value, until: Option<Instant>, left: Option<Left>) -> Result<(), Undelivered> {
        let mut wait = self.backoff.waits();
        let started = Instant::now();
        let mut warned: Option<Instant> = None;
        let mut document = std::borrow::Cow::Borrowed(document);
        let mut may_be_applied = left.is_some_and(|l| l.sent_before);
        loop {
            if let Some(left) = left.filter(|_| may_be_applied) {
                match (left.left)() {
                    Some(rest) => document = std::borrow::Cow::Owned(rest),
                    None => {
                        tracing::info!("a status update that may have been applied is left to the later reports of its load balancers");
                        return Ok(());
                    }
                }
            }
            match self.agent.update_status(&document) {
                Ok(()) => {
                    self.failing(false);
                    if warned.is_some() {
                        tracing::warn!("Octavia's status socket took the status update after {:.1} s", started.elapsed().as_secs_f64());
                    }
                    return Ok(());
                }
                Err(e) if e.downcast_ref::<Refused>().is_some() => return Err(Undelivered::Refused(e, document.into_owned())),
                Err(e) if until.is_some_and(|until| Instant::now() >= until) => {
                    self.defer(&document, &e);
                    return Err(Undelivered::Unanswered);
                }
                Err(e) => {
                    self.failing(true);
                    crate::metrics::STATUS_UPDATE_RETRIES.inc();
                    if warned.is_none_or(|at| at.elapsed() >= UNANSWERED_WARN_EVERY) {
                        tracing::warn!(
                            "Octavia's status socket has not taken a status update for {:.1} s ({e:#}): sending it again until it does",
                            started.elapsed().as_secs_f64()
                        );
                        warned = Some(Instant::now());
                    }
                    may_be_applied |= e.downcast_ref::<NotReached>().is_none();
                    wait();
                }
            }
        }
    }

    /// A single record the driver-agent refused: dropped if Octavia no longer has its object, else sent
    /// again (see `AgentSink`). `asked` is the get socket's answer about it since the refusal, if one was
    /// read. Whether nothing is left to send.
    fn settle_refused(&self, record: &Value, mut refusal: anyhow::Error, until: Option<Instant>, mut asked: Option<Asked>) -> bool {
        let Some((collection, id)) = first_record(record) else {
            tracing::error!("Octavia refused the status {record}: {refusal:#}");
            return false;
        };
        let mut wait = self.backoff.waits();
        let mut shown = 0;
        loop {
            match asked.take().unwrap_or_else(|| self.agent.get(collection, id)) {
                Ok(None) => {
                    self.failing(false);
                    tracing::info!("Octavia no longer has {collection} {id}: its status {record} is not needed ({refusal:#})");
                    return true;
                }
                // Without a get socket there is no asking: each refusal counts as one of an object shown.
                Ok(Some(_)) => shown += 1,
                Err(_) if self.agent.get.is_none() => shown += 1,
                Err(e) => {
                    tracing::warn!("Octavia refused the status {record} ({refusal:#}) and cannot say whether it has the object ({e:#}): sending it again")
                }
            }
            if shown < self.refusals && until.is_some_and(|until| Instant::now() >= until) {
                self.defer(record, &refusal);
                return false;
            }
            if shown >= self.refusals {
                self.failing(false);
                crate::metrics::STATUS_RECORDS_GIVEN_UP.inc();
                tracing::error!(
                    "status update given up: Octavia refused {record} {} times ({refusal:#}); send it to the driver-agent again once the cause is fixed",
                    shown.max(1)
                );
                return false;
            }
            self.failing(true);
            crate::metrics::STATUS_UPDATE_RETRIES.inc();
            wait();
            match self.deliver(record, until, None) {
                Ok(()) => return true,
                Err(Undelivered::Refused(e, _)) => refusal = e,
                Err(Undelivered::Unanswered) => return false,
            }
        }
    }

    /// Sends `document` (see `AgentSink`); whether nothing is left to send.
    fn send(&self, document: &Value, until: Option<Instant>, left: Option<Left>) -> bool {
        let mut wait = self.backoff.waits();
        let mut sent_again_whole = false;
        // What goes again after a refusal is what was refused: once `left` has cut the document down,
        // the rest is a later report's to send.
        let mut document = std::borrow::Cow::Borrowed(document);
        let (refusal, asked) = loop {
            let refusal = match self.deliver(&document, until, left) {
                Ok(()) => return true,
                Err(Undelivered::Unanswered) => return false,
                Err(Undelivered::Refused(e, refused)) => {
                    document = std::borrow::Cow::Owned(refused);
                    e
                }
            };
            let several = record_count(&document) > 1;
            // A database Octavia cannot reach refuses every record alike, and its get socket cannot answer
            // either: the document goes again whole, not record by record (a request, and a process the
            // driver-agent forks, each). A refusal while Octavia shows the first record's object is as
            // likely a moment's database error (a deadlock, a failover) as a record whose object is gone:
            // the document goes again whole once before it is split.
            let asked = self.ask_about_first(&document);
            let unanswered = matches!(asked, Some(Err(_)));
            let once_more = several && !sent_again_whole && matches!(asked, Some(Ok(Some(_))));
            if !(unanswered || once_more) || until.is_some_and(|until| Instant::now() >= until) {
                break (refusal, asked);
            }
            if unanswered {
                tracing::warn!("Octavia refused the status {document} ({refusal:#}) and its get socket does not answer either: sending it again whole");
            } else {
                sent_again_whole = true;
                tracing::info!("Octavia refused the status {document} ({refusal:#}) and still has its objects: sending it again whole once");
            }
            self.failing(true);
            crate::metrics::STATUS_UPDATE_RETRIES.inc();
            wait();
        };
        if record_count(&document) <= 1 {
            return self.settle_refused(&document, refusal, until, asked);
        }
        let records = single_records(&document);
        tracing::info!("Octavia refused the status {document} ({refusal:#}): sending it record by record");
        let mut settled = true;
        for record in &records {
            settled &= match self.deliver(record, until, None) {
                Ok(()) => true,
                Err(Undelivered::Refused(e, _)) => self.settle_refused(record, e, until, None),
                Err(Undelivered::Unanswered) => false,
            };
        }
        settled
    }

    /// A `report_within` whose patience ran out: its caller sends it again later, so nothing is lost.
    fn defer(&self, document: &Value, cause: &anyhow::Error) {
        crate::metrics::STATUS_UPDATES_DEFERRED.inc();
        tracing::warn!("Octavia did not take {document} in time ({cause:#}): it goes again at the next pass");
    }

    /// Octavia's get socket's answer about the document's first record, when there is a socket to ask.
    fn ask_about_first(&self, document: &Value) -> Option<Asked> {
        let (collection, id) = first_record(document)?;
        self.agent.get.is_some().then(|| self.agent.get(collection, id))
    }
}

/// A `report_left` caller's say in what is sent (see there).
#[derive(Clone, Copy)]
struct Left<'a> {
    sent_before: bool,
    left: &'a dyn Fn() -> Option<Value>,
}

/// What Octavia's get socket answered about an object.
type Asked = anyhow::Result<Option<Value>>;

enum Undelivered {
    /// The driver-agent's refusal, and the document it refused.
    Refused(anyhow::Error, Value),
    Unanswered,
}

impl StatusSink for AgentSink {
    fn failing_for(&self) -> Option<Duration> {
        self.failing_since.lock().unwrap().map(|since| since.elapsed())
    }

    fn report(&self, document: &Value) {
        self.send(document, None, None);
    }

    fn report_left(&self, document: &Value, sent_before: bool, left: &dyn Fn() -> Option<Value>) {
        self.send(document, None, Some(Left { sent_before, left }));
    }

    fn report_within(&self, document: &Value, patience: Duration) -> bool {
        self.send(document, Some(Instant::now() + patience), None)
    }
}

/// The collection and id of a document's first record (its only one, for a record sent alone).
fn first_record(document: &Value) -> Option<(&str, &str)> {
    let (collection, records) = document.as_object()?.iter().next()?;
    Some((collection, records.as_array()?.first()?.get("id")?.as_str()?))
}

/// How many records a status document holds.
fn record_count(document: &Value) -> usize {
    document.as_object().map_or(0, |collections| collections.values().filter_map(Value::as_array).map(Vec::len).sum())
}

/// A status document split into documents of one record each, in its order.
fn single_records(document: &Value) -> Vec<Value> {
    let Some(collections) = document.as_object() else { return Vec::new() };
    collections.iter().flat_map(|(collection, records)| records.as_array().into_iter().flatten().map(move |r| json!({collection.as_str(): [r]}))).collect()
}

/// Keeps documents in memory (no Octavia: demo, tests) and logs them.
#[derive(Default)]
pub struct RecordingSink {
    pub documents: Mutex<Vec<Value>>,
}

impl StatusSink for RecordingSink {
    fn report(&self, document: &Value) {
        tracing::info!("status: {document}");
        self.documents.lock().unwrap().push(document.clone());
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;
    use crate::octavia::agent::{read_frame, write_frame, DriverAgent};
    use crate::octavia::reporter::Reporter;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    const FAST: Backoff = Backoff { first: Duration::from_millis(1), most: Duration::from_millis(4) };

    /// What a socket of the driver-agent answers its `n`th request (from 1), or `None` to hang up without
    /// an answer, as its handlers do when their database fails under them.
    type Answer = Box<dyn Fn(&Value, usize) -> Option<Value> + Send>;

    fn answer_on(listener: UnixListener, answer: Answer) {
        std::thread::spawn(move || {
            for (n, mut stream) in listener.incoming().flatten().enumerate() {
                let request = read_frame(&mut stream).unwrap();
                if let Some(reply) = answer(&request, n + 1) {
                    write_frame(&mut stream, &reply).unwrap();
                }
            }
        });
    }

    /// An operation's status: the object ACTIVE.
    fn active(kind: ObjectKind, id: &str) -> ObjectStatus {
        ObjectStatus { kind, id: id.into(), provisioning: Some(ProvisioningStatus::Active), operating: None }
    }

    /// An empty directory of this test's own.
    fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("status-sink-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Octavia's driver-agent as the sink meets it: its status socket answers with `status`, and records
    /// each document it took (answered 200); its get socket answers with `get`.
    struct Agent {
        agent: DriverAgent,
        taken: Arc<Mutex<Vec<Value>>>,
        dir: PathBuf,
    }

    impl Agent {
        fn start(tag: &str, status: impl Fn(&Value, usize) -> Value + Send + 'static, get: impl Fn(&str, usize) -> Option<Value> + Send + 'static) -> Agent {
            let dir = fresh_dir(tag);
            let taken = Arc::new(Mutex::new(Vec::new()));
            let took = Arc::clone(&taken);
            answer_on(
                UnixListener::bind(dir.join("status.sock")).unwrap(),
                Box::new(move |document, n| {
                    let reply = status(document, n);
                    if reply["status_code"] == 200 {
                        took.lock().unwrap().push(document.clone());
                    }
                    Some(reply)
                }),
            );
            answer_on(UnixListener::bind(dir.join("get.sock")).unwrap(), Box::new(move |query, n| get(query["id"].as_str().unwrap(), n)));
            let agent = DriverAgent { status: Some(dir.join("status.sock")), stats: None, get: Some(dir.join("get.sock")) };
            Agent { agent, taken, dir }
        }

        fn taken(&self) -> Vec<Value> {
            self.taken.lock().unwrap().clone()
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn ok() -> Value {
        json!({"status_code": 200})
    }

    /// The driver-agent's answer when its database failed under the update.
    fn database_failed() -> Value {
        json!({"status_code": 500, "fault_string": "(pymysql.err.OperationalError) (2013, 'Lost connection to MySQL server during query')"})
    }

    /// The get socket's answer for an object Octavia has.
    fn shown(id: &str) -> Option<Value> {
        Some(json!({"id": id, "provisioning_status": "PENDING_UPDATE"}))
    }

    /// An operation of the load balancer accepted and still being applied (its report not yet queued)
    /// proves the document not answered was applied: Octavia admitted that operation only once the load
    /// balancer had left the PENDING state. Nothing of the document goes again; the operation's report
    /// brings the load balancer back. Without such an operation, the document goes again whole.
    #[test]
    fn a_document_not_answered_is_left_to_an_operation_of_its_load_balancer_still_being_applied() {
        use std::sync::mpsc::channel;

        for applying in [true, false] {
            let dir = fresh_dir(&format!("left-to-applying-{applying}"));
            let taken = Arc::new(Mutex::new(Vec::new()));
            let took = Arc::clone(&taken);
            answer_on(
                UnixListener::bind(dir.join("status.sock")).unwrap(),
                Box::new(move |document, n| {
                    // The first attempt is applied, say, but not answered.
                    (n > 1).then(|| {
                        took.lock().unwrap().push(document.clone());
                        ok()
                    })
                }),
            );
            let agent = DriverAgent { status: Some(dir.join("status.sock")), stats: None, get: None };
            let reporter = Reporter::start(Arc::new(AgentSink::with(agent, FAST, 8)), 1);
            reporter.know_pending(move |lb, _| applying && lb == "lb");
            let (done_tx, done) = channel();
            reporter.submit(vec![active(ObjectKind::Loadbalancer, "lb"), active(ObjectKind::Member, "m0")], move || done_tx.send(()).unwrap());
            done.recv_timeout(Duration::from_secs(10)).unwrap();
            let taken = taken.lock().unwrap().clone();
            if applying {
                assert_eq!(taken, Vec::<Value>::new());
            } else {
                assert_eq!(
                    taken,
                    [json!({"members": [{"id": "m0", "provisioning_status": "ACTIVE"}], "loadbalancers": [{"id": "lb", "provisioning_status": "ACTIVE"}]})]
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// One document carries the reports of two load balancers, and the driver-agent stops part-way through
    /// it without answering: it applies each record in a transaction of its own, load balancers last, so
    /// `a` may be ACTIVE while `b` is still PENDING_UPDATE. An operation on `a` accepted meanwhile proves
    /// only `a`'s records applied: `b`'s go again (before, the whole document was left to `a`'s operation,
    /// and `b` stayed PENDING_UPDATE for good).
    #[test]
    fn of_a_document_not_answered_only_the_load_balancers_with_a_later_operation_are_left_to_it() {
        use std::sync::mpsc::channel;

        let dir = fresh_dir("left-per-load-balancer");
        let (first_tx, first) = channel();
        let (go_tx, go) = channel::<()>();
        let (first_tx, go) = (Mutex::new(first_tx), Mutex::new(go));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let took = Arc::clone(&taken);
        answer_on(
            UnixListener::bind(dir.join("status.sock")).unwrap(),
            Box::new(move |document, n| match n {
                // Holds the only sender while the two reports queue, so that they go as one document.
                1 => {
                    first_tx.lock().unwrap().send(()).unwrap();
                    go.lock().unwrap().recv_timeout(Duration::from_secs(10)).unwrap();
                    Some(ok())
                }
                2 => None,
                _ => {
                    took.lock().unwrap().push(document.clone());
                    Some(ok())
                }
            }),
        );
        let agent = DriverAgent { status: Some(dir.join("status.sock")), stats: None, get: None };
        let reporter = Reporter::start(Arc::new(AgentSink::with(agent, FAST, 8)), 1);
        reporter.know_pending(|lb, _| lb == "a");
        let (done_tx, done) = channel();
        for (lb, member) in [("x", "mx"), ("a", "ma"), ("b", "mb")] {
            let done_tx = done_tx.clone();
            reporter.submit(vec![active(ObjectKind::Member, member), active(ObjectKind::Loadbalancer, lb)], move || done_tx.send(()).unwrap());
            if lb == "x" {
                first.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        }
        go_tx.send(()).unwrap();
        for _ in 0..3 {
            done.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(
            taken.lock().unwrap().clone(),
            [json!({"members": [{"id": "mb", "provisioning_status": "ACTIVE"}], "loadbalancers": [{"id": "b", "provisioning_status": "ACTIVE"}]})]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The first report (load balancer `lb`, listener `l`, member `m0`) reaches the driver-agent, which
    /// applies it, say, and stops before answering; a later operation's report (member `m1`, `l`, `lb`) is
    /// queued meanwhile. `answer(n)` answers the status socket's `n`th request from the second on; the get
    /// socket shows every object. Returns each document the status socket received after the first, once
    /// the later report was taken.
    fn after_an_unanswered_report(tag: &str, answer: impl Fn(usize) -> Value + Send + 'static) -> Vec<Value> {
        use std::sync::mpsc::channel;

        let dir = fresh_dir(tag);
        let (first_tx, first) = channel();
        let (go_tx, go) = channel::<()>();
        let (first_tx, go) = (Mutex::new(first_tx), Mutex::new(go));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let saw = Arc::clone(&seen);
        answer_on(
            UnixListener::bind(dir.join("status.sock")).unwrap(),
            Box::new(move |document, n| {
                if n == 1 {
                    first_tx.lock().unwrap().send(()).unwrap();
                    go.lock().unwrap().recv_timeout(Duration::from_secs(10)).unwrap();
                    return None;
                }
                saw.lock().unwrap().push(document.clone());
                Some(answer(n))
            }),
        );
        answer_on(UnixListener::bind(dir.join("get.sock")).unwrap(), Box::new(|query, _| shown(query["id"].as_str().unwrap())));
        let agent = DriverAgent { status: Some(dir.join("status.sock")), stats: None, get: Some(dir.join("get.sock")) };
        let reporter = Reporter::start(Arc::new(AgentSink::with(agent, FAST, 8)), 1);

        reporter.submit(vec![active(ObjectKind::Loadbalancer, "lb"), active(ObjectKind::Listener, "l"), active(ObjectKind::Member, "m0")], || {});
        first.recv_timeout(Duration::from_secs(10)).unwrap();
        let (done_tx, done) = channel();
        reporter.submit(vec![active(ObjectKind::Member, "m1"), active(ObjectKind::Listener, "l"), active(ObjectKind::Loadbalancer, "lb")], move || {
            done_tx.send(()).unwrap()
        });
        go_tx.send(()).unwrap();
        done.recv_timeout(Duration::from_secs(10)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let seen = seen.lock().unwrap().clone();
        seen
    }

    /// What `after_an_unanswered_report` leaves of the first report, and the later one.
    fn only_m0() -> Value {
        json!({"members": [{"id": "m0", "provisioning_status": "ACTIVE"}]})
    }

    fn later_report() -> Value {
        json!({"members": [{"id": "m1", "provisioning_status": "ACTIVE"}], "listeners": [{"id": "l", "provisioning_status": "ACTIVE"}], "loadbalancers": [{"id": "lb", "provisioning_status": "ACTIVE"}]})
    }

    /// A document the driver-agent did not answer may have been applied (it stopped before replying), and
    /// Octavia then lets a later operation on the load balancer in. Sent again whole after that
    /// operation's report was queued, it set the load balancer ACTIVE before the later operation's member
    /// (found by `make reliability`: a load balancer ACTIVE over a member PENDING_CREATE).
    #[test]
    fn a_document_not_answered_goes_again_without_what_a_later_report_of_its_load_balancer_sends() {
        assert_eq!(after_an_unanswered_report("left-to-later", |_| ok()), [only_m0(), later_report()]);
    }

    /// A document cut down to what is left (as above) and then refused goes again as it was cut down: the
    /// whole of it, sent again after the refusal, set the load balancer ACTIVE before the later report's
    /// objects.
    #[test]
    fn a_document_cut_down_and_then_refused_goes_again_cut_down() {
        // A moment's database error refuses the second request.
        let seen = after_an_unanswered_report("cut-down-refused", |n| if n == 2 { database_failed() } else { ok() });
        assert_eq!(seen.last(), Some(&later_report()), "{seen:#?}");
        assert!(seen.len() >= 3, "the cut-down document was not sent again after the refusal: {seen:#?}");
        for resent in &seen[..seen.len() - 1] {
            assert_eq!(*resent, only_m0(), "{seen:#?}");
        }
    }

    /// A document that never reached the driver-agent (nothing listened on its socket: stopped, or
    /// starting) cannot have been applied, whatever else waits on its load balancer: it goes whole once the
    /// driver-agent is back. Found by `make reliability`: a member's report, every attempt refused while the
    /// driver-agent restarted, was left to a create of its load balancer accepted before the member (replayed
    /// after a host restart), and the member stayed PENDING_CREATE.
    #[test]
    fn a_document_that_never_reached_the_driver_agent_goes_whole_once_it_is_back() {
        use std::sync::mpsc::channel;

        let dir = fresh_dir("never-reached");
        let agent = DriverAgent { status: Some(dir.join("status.sock")), stats: None, get: None };
        let reporter = Reporter::start(Arc::new(AgentSink::with(agent, FAST, 8)), 1);
        reporter.know_pending(|lb, _| lb == "lb");
        let (done_tx, done) = channel();
        reporter.submit(vec![active(ObjectKind::Loadbalancer, "lb"), active(ObjectKind::Member, "m1")], move || done_tx.send(()).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let taken = Arc::new(Mutex::new(Vec::new()));
        let took = Arc::clone(&taken);
        answer_on(
            UnixListener::bind(dir.join("status.sock")).unwrap(),
            Box::new(move |document, _| {
                took.lock().unwrap().push(document.clone());
                Some(ok())
            }),
        );
        done.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            taken.lock().unwrap().clone(),
            [json!({"members": [{"id": "m1", "provisioning_status": "ACTIVE"}], "loadbalancers": [{"id": "lb", "provisioning_status": "ACTIVE"}]})]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The report of an operation accepted before a restart, which the run that stopped may have sent:
    /// while an operation of its load balancer accepted since waits, Octavia has taken it (it admitted that
    /// operation only then), and sending it would set the load balancer ACTIVE in the middle of that one.
    /// It goes, alone, only without one: its own operation (ticket 5), which may still be marking its lane
    /// done when the report is first sent, does not count.
    #[test]
    fn a_report_sent_before_a_restart_goes_only_when_no_later_operation_of_its_load_balancer_waits() {
        use std::sync::mpsc::channel;

        // The ticket of the load balancer's operation in the lanes, if one is queued or running.
        for (waiting, later) in [(Some(7), true), (Some(5), false), (None, false)] {
            let agent = Agent::start(&format!("sent-before-{waiting:?}"), |_, _| ok(), |_, _| None);
            let reporter = Reporter::start(Arc::new(AgentSink::with(agent.agent.clone(), FAST, 8)), 1);
            reporter.know_pending(move |lb, after| lb == "lb" && waiting.is_some_and(|t| t > after));
            let (done_tx, done) = channel();
            let done_tx = Mutex::new(done_tx);
            let finished = move || {
                let tx = done_tx.lock().unwrap().clone();
                move || tx.send(()).unwrap()
            };
            reporter.submit_applied(vec![active(ObjectKind::Loadbalancer, "lb"), active(ObjectKind::Listener, "l")], 5, true, finished());
            reporter.submit(vec![active(ObjectKind::Loadbalancer, "other")], finished());
            for _ in 0..2 {
                done.recv_timeout(Duration::from_secs(10)).unwrap();
            }
            let mut taken = agent.taken();
            taken.sort_by_key(|d| d.to_string());
            let mut want = vec![json!({"loadbalancers": [{"id": "other", "provisioning_status": "ACTIVE"}]})];
            if !later {
                want.push(
                    json!({"loadbalancers": [{"id": "lb", "provisioning_status": "ACTIVE"}], "listeners": [{"id": "l", "provisioning_status": "ACTIVE"}]}),
                );
            }
            want.sort_by_key(|d| d.to_string());
            assert_eq!(taken, want, "the load balancer's operation waiting: {waiting:?}");
        }
    }

    #[test]
    fn a_record_naming_an_object_octavia_no_longer_has_is_dropped_at_once_and_the_others_are_sent() {
        let agent = Agent::start(
            "gone",
            |document, _| match document.to_string().contains("gone-listener") {
                true => json!({"status_code": 500, "fault_string": "'NoneType' object has no attribute 'vip'"}),
                false => ok(),
            },
            |id, _| if id == "gone-listener" { Some(json!({})) } else { shown(id) },
        );
        let sink = AgentSink::new(agent.agent.clone());
        let document = json!({
            "loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}],
            "listeners": [{"id": "gone-listener", "provisioning_status": "DELETED"}],
            "pools": [{"id": "pool-1", "provisioning_status": "DELETED"}],
        });
        let started = Instant::now();
        sink.report(&document);
        assert!(started.elapsed() < Duration::from_secs(2), "retried a record Octavia no longer has: {:?}", started.elapsed());
        let taken = agent.taken();
        assert_eq!(taken.len(), 2, "{taken:?}");
        assert!(taken.contains(&json!({"loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}]})));
        assert!(taken.contains(&json!({"pools": [{"id": "pool-1", "provisioning_status": "DELETED"}]})));
    }

    #[test]
    fn a_document_refused_once_while_octavia_shows_its_objects_goes_again_whole_not_record_by_record() {
        // A deadlock in Octavia's database fails one update; the next takes the document whole (one request
        // and one process forked by the driver-agent, not one per record).
        let agent = Agent::start("deadlock", |_, n| if n == 1 { database_failed() } else { ok() }, |id, _| shown(id));
        let sink = AgentSink::with(agent.agent.clone(), FAST, 8);
        let document = json!({
            "loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}],
            "members": [{"id": "member-1", "provisioning_status": "ACTIVE"}, {"id": "member-2", "provisioning_status": "ACTIVE"}],
        });
        sink.report(&document);
        assert_eq!(agent.taken(), vec![document]);
    }

    #[test]
    fn records_refused_while_octavia_still_has_their_objects_are_sent_again_until_taken() {
        // Octavia's database is restarting: three updates fail, then it takes them again.
        let agent = Agent::start("database", |_, n| if n <= 3 { database_failed() } else { ok() }, |id, _| shown(id));
        let sink = AgentSink::with(agent.agent.clone(), FAST, 8);
        let lb = json!({"id": "lb-1", "provisioning_status": "ACTIVE"});
        let member = json!({"id": "member-1", "provisioning_status": "ACTIVE", "operating_status": "NO_MONITOR"});
        sink.report(&json!({"loadbalancers": [lb], "members": [member]}));
        let taken = agent.taken();
        assert!(taken.contains(&json!({"loadbalancers": [lb]})), "{taken:?}");
        assert!(taken.contains(&json!({"members": [member]})), "{taken:?}");
    }

    #[test]
    fn while_octavia_cannot_say_whether_it_has_the_objects_a_refused_document_goes_again_whole() {
        // Its database is down: updates are refused and the get socket hangs up, three times each.
        let agent = Agent::start("whole", |_, n| if n <= 3 { database_failed() } else { ok() }, |id, n| if n <= 3 { None } else { shown(id) });
        let sink = AgentSink::with(agent.agent.clone(), FAST, 8);
        let document = json!({
            "loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}],
            "members": [{"id": "member-1", "provisioning_status": "ACTIVE"}],
        });
        sink.report(&document);
        assert_eq!(agent.taken(), vec![document], "one request, not one per record");
    }

    #[test]
    fn a_refused_record_is_not_given_up_while_octavia_cannot_say_whether_it_has_the_object() {
        // The database is down for twelve updates; the get socket hangs up for ten of its queries, then
        // shows the object (twice: fewer than the refusals that give a record up).
        let agent = Agent::start("unsure", |_, n| if n <= 12 { database_failed() } else { ok() }, |id, n| if n <= 10 { None } else { shown(id) });
        let sink = AgentSink::with(agent.agent.clone(), FAST, 3);
        let record = json!({"members": [{"id": "member-1", "provisioning_status": "ACTIVE"}]});
        sink.report(&record);
        assert_eq!(agent.taken(), vec![record]);
    }

    #[test]
    fn a_record_refused_again_and_again_while_octavia_shows_its_object_is_given_up() {
        let (attempts, questions) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let (counted, asked) = (Arc::clone(&attempts), Arc::clone(&questions));
        let agent = Agent::start(
            "refusing",
            move |_, n| {
                *counted.lock().unwrap() = n;
                database_failed()
            },
            move |id, n| {
                *asked.lock().unwrap() = n;
                shown(id)
            },
        );
        let sink = AgentSink::with(agent.agent.clone(), FAST, 3);
        sink.report(&json!({"members": [{"id": "member-1", "provisioning_status": "ACTIVE"}]}));
        assert!(agent.taken().is_empty());
        assert_eq!(*attempts.lock().unwrap(), 3, "sent once, then again after each of the first two refusals");
        assert_eq!(*questions.lock().unwrap(), 3, "Octavia asked about the object once per refusal");
    }

    #[test]
    fn nothing_is_dropped_while_the_status_socket_does_not_answer() {
        let dir = fresh_dir("unanswered");
        let path = dir.join("status.sock");
        let taken = Arc::new(Mutex::new(Vec::new()));
        let took = Arc::clone(&taken);
        let bind_at = path.clone();
        // The driver-agent comes back after the sink has tried for a while (well over 15 attempts).
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = UnixListener::bind(&bind_at).unwrap();
            answer_on(
                listener,
                Box::new(move |document, _| {
                    took.lock().unwrap().push(document.clone());
                    Some(ok())
                }),
            );
        });
        let sink = AgentSink::with(DriverAgent { status: Some(path), stats: None, get: None }, FAST, 8);
        let document = json!({"loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}]});
        sink.report(&document);
        assert_eq!(*taken.lock().unwrap(), vec![document]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_caller_that_must_go_on_stops_after_its_patience_and_is_told() {
        let dir = fresh_dir("patience");
        let sink = AgentSink::with(DriverAgent { status: Some(dir.join("never.sock")), stats: None, get: None }, FAST, 8);
        let deferred = crate::metrics::STATUS_UPDATES_DEFERRED.get();
        let started = Instant::now();
        let taken = sink.report_within(&json!({"members": [{"id": "member-1", "operating_status": "ONLINE"}]}), Duration::from_millis(50));
        assert!(!taken);
        assert!(started.elapsed() >= Duration::from_millis(50) && started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(sink.failing_for().is_some());
        // Counted as deferred (its caller sends it again), not among the records given up for good.
        assert!(crate::metrics::STATUS_UPDATES_DEFERRED.get() > deferred);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
