//! The host's work: provider requests in, policy calls, LoxiLB changes and Octavia statuses out.
//!
//! Calls (validation, flavor metadata) are answered at once. Casts are queued and applied one at a time,
//! in arrival order, so operations on one load balancer are never applied out of order or concurrently.
//! Before applying, the host waits until Octavia has committed the object (the provider is called inside
//! Octavia's transaction, PROVIDER-NOTES "commit race"); after applying it makes the mapping durable and
//! only then reports the statuses.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::commits::{Commits, Notice, NOTICE_WAIT};
use crate::convert;
use crate::epochs::{Epochs, Ticket};
use crate::execute::OpError;
use crate::flights::TakeOff;
use crate::inbox::Appended;
use crate::lanes::Lanes;
use crate::octavia::agent::DriverAgent;
use crate::octavia::readback::{self, read_back, Next};
use crate::octavia::reporter::Reporter;
use crate::octavia::status::StatusSink;
use crate::reprogram::Reprogram;
use crate::runtime::bindings::octavia::{LoadbalancerAction, ObjectKind, ObjectStatus, Operation, ProvisioningStatus};
use crate::runtime::bindings::policy_types::PolicyError;
use crate::runtime::instance::{describe, Sandbox};
use crate::storage::{Durability, MappingStore};
use crate::vips::VipClaims;

/// A refusal the provider turns into an octavia-lib exception of the same class name.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub class: &'static str,
    pub message: String,
}

impl Failure {
    pub fn driver(message: impl Into<String>) -> Failure {
        Failure { class: "DriverError", message: message.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// The refusal of a request whose method or arguments do not convert into an operation.
fn malformed(method: &str, error: &anyhow::Error) -> Failure {
    match error.downcast_ref::<convert::UnknownMethod>() {
        Some(_) => Failure { class: "NotImplementedError", message: format!("the LoxiLB provider does not implement {method:?}") },
        None => Failure::driver(format!("invalid {method} request: {error:#}")),
    }
}

pub fn failure_of(error: &PolicyError) -> Failure {
    match error {
        PolicyError::Unsupported(m) | PolicyError::Invalid(m) => Failure { class: "UnsupportedOptionError", message: m.clone() },
        PolicyError::Conflict(m) => Failure { class: "Conflict", message: m.clone() },
        other => Failure::driver(describe(other)),
    }
}

/// What became of an operation taken off a queue, short of durability and reporting.
enum Taken {
    /// Applied (or dropped with statuses to report): the statuses, and the storage that must make the
    /// operation's journal records durable before they are reported.
    Applied(Vec<ObjectStatus>, Arc<dyn MappingStore>),
    /// Never applied and nothing to report: Octavia rolled its request back.
    Dropped,
    /// Another host took it over while Octavia's commit was awaited: left alone.
    HandedOver,
    /// Its cast was refused after all (its inbox record never became durable; the provider was told).
    Refused,
}

/// Worker threads applying the Unix-socket transport's casts: as many load balancers can wait for
/// Octavia's commit at once before a further one has to wait for a worker.
pub const APPLY_WORKERS: usize = 64;
// Each worker has at most one LoxiLB request in flight, on a connection the client keeps.
const _: () = assert!(APPLY_WORKERS <= loxilb_api::client::KEPT_CONNECTIONS);

/// `max_pending_operations` when the configuration does not say.
pub const DEFAULT_MAX_PENDING: usize = 1000;

/// The apply lane of a cast: its load balancer, so that load balancer's operations stay in order.
fn lane_of(args: &Value) -> String {
    // The provider always names the load balancer; the object's own field is the fallback.
    args.get("loadbalancer_id")
        .or_else(|| args.get("loadbalancer").and_then(|lb| lb.get("loadbalancer_id")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A queued cast: its inbox record (when the inbox is on), method and arguments.
type Job = (Option<Appended>, String, Value);

/// The cast argument naming the provider's notice of Octavia's commit (see `commits.rs`).
pub const COMMIT_TICKET: &str = "commit_ticket";

/// Flavor metadata keys the LoxiLB provider understands.
pub const FLAVOR_KEYS: &[(&str, &str)] = &[
    ("nat_mode", "LoxiLB NAT mode for this load balancer: dnat, onearm, fullnat or dsr"),
    ("bgp", "true: LoxiLB advertises this load balancer's VIP over BGP; false: it does not ([driver_loxilb] bgp otherwise)"),
];

/// Why a flavor profile's value cannot be used, if it cannot (`validate_flavor`, at `flavorprofile create`).
fn flavor_value_problem(key: &str, value: &Value) -> Option<String> {
    match key {
        "nat_mode" if !["dnat", "onearm", "fullnat", "dsr"].contains(&value.as_str().unwrap_or_default()) => {
            Some(format!("flavor nat_mode {value} is not one of dnat, onearm, fullnat, dsr"))
        }
        "bgp" if !matches!(value, Value::Bool(_)) && !matches!(value.as_str(), Some("true" | "false")) => {
            Some(format!("flavor bgp {value} is not true or false"))
        }
        "nat_mode" | "bgp" => None,
        _ => Some(format!("flavor key {key:?} is not supported by the LoxiLB provider (supported: nat_mode, bgp)")),
    }
}

pub struct Service {
    pub sandbox: crate::flights::Policy,
    /// The mapping's storage, which every policy this service runs shares (a swap keeps it). Held here so
    /// that starting the workers does not wait for the policy: the first reconciliation after a start
    /// may hold it for a full render (~0.65 s at 100k mappings).
    storage: Arc<dyn crate::storage::MappingStore>,
    pub agent: Option<DriverAgent>,
    pub statuses: Arc<dyn StatusSink>,
    pub commit_wait: Duration,
    lanes: Mutex<Option<Arc<Lanes<Job>>>>,
    /// Casts accepted and not yet applied and reported, and how many may be (`max_pending_operations`).
    backlog: AtomicUsize,
    max_pending: AtomicUsize,
    /// Where accepted casts wait durably until applied (absent without persistent storage).
    inbox: Option<crate::inbox::Inbox>,
    /// Operations applied (for tests and metrics).
    pub applied: std::sync::atomic::AtomicU64,
    /// The mapping every policy this service runs reads (a swap keeps it).
    mapping: Arc<crate::mapping::Mapping>,
    /// What the host acts for on its own (`served.rs`): fixed at start, shared with every policy's
    /// wiring (a swap keeps it), so reading it waits for no operation.
    served: crate::served::Served,
    /// Orders reads of Octavia's view against the operations applied to each load balancer.
    pub epochs: Epochs,
    /// The provider's notices of Octavia's commits (see `commits.rs`).
    pub commits: Commits,
    /// Load balancers to program once LoxiLB answers (see `reprogram.rs`).
    pub reprogram: Reprogram,
    /// VIPs of creates validated and not applied yet (see `vips.rs`).
    pub vip_claims: VipClaims,
    /// Listener connection counts kept between statistics passes (see `traffic.rs`).
    pub traffic: Mutex<crate::traffic::TrafficBook>,
    /// The status senders (see `reporter.rs`), started with the workers or by the first dropped operation.
    reports: OnceLock<Arc<Reporter>>,
}

impl Service {
    /// The load balancers this host acts for on its own (`served.rs`).
    pub fn served(&self) -> &crate::served::Served {
        &self.served
    }

    /// The mapping every policy this service runs reads.
    pub fn mapping(&self) -> &Arc<crate::mapping::Mapping> {
        &self.mapping
    }

    pub fn new(sandbox: Sandbox, agent: Option<DriverAgent>, statuses: Arc<dyn StatusSink>, commit_wait: Duration) -> Arc<Service> {
        Self::with_inbox(sandbox, agent, statuses, commit_wait, None)
    }

    pub fn with_inbox(
        sandbox: Sandbox,
        agent: Option<DriverAgent>,
        statuses: Arc<dyn StatusSink>,
        commit_wait: Duration,
        inbox: Option<crate::inbox::Inbox>,
    ) -> Arc<Service> {
        Arc::new(Service {
            storage: Arc::clone(sandbox.storage()),
            mapping: Arc::clone(sandbox.mapping()),
            served: sandbox.wiring().served.clone(),
            sandbox: crate::flights::Policy::new(sandbox),
            agent,
            statuses,
            commit_wait,
            lanes: Mutex::new(None),
            backlog: AtomicUsize::new(0),
            max_pending: AtomicUsize::new(DEFAULT_MAX_PENDING),
            inbox,
            applied: Default::default(),
            epochs: Epochs::default(),
            commits: Commits::default(),
            reprogram: Reprogram::default(),
            vip_claims: VipClaims::default(),
            traffic: Mutex::default(),
            reports: OnceLock::new(),
        })
    }

    /// The status senders: several operations' statuses in one document while earlier ones are being
    /// sent, each sent until Octavia takes it (see `reporter.rs`).
    fn reports(&self) -> &Arc<Reporter> {
        self.reports.get_or_init(|| Reporter::start(Arc::clone(&self.statuses), crate::octavia::reporter::SENDERS))
    }

    /// Starts applying queued casts, beginning with `pending` (operations a previous run accepted but
    /// did not apply). Each load balancer's casts go to a lane of their own (see `lanes.rs`), applied in
    /// arrival order, while one waiting for Octavia's commit (up to `commit_wait_timeout` when Octavia
    /// rolled its request back) holds up only its own load balancer.
    pub fn start_worker(self: &Arc<Self>, pending: Vec<crate::inbox::Pending>) {
        let storage = Arc::clone(&self.storage);
        // Outcomes are reported, in order, once an fsync covers them; workers go on with their next
        // operation meanwhile, and operations of every load balancer share each fsync.
        let mapping = Arc::clone(&self.mapping);
        let durability = Arc::new(Durability::start(storage, Durability::DEFAULT_COMMIT_DELAY, Box::new(move || mapping.write_snapshot())));
        let reports = Arc::clone(self.reports());
        let service = Arc::clone(self);
        let lanes = Lanes::new(APPLY_WORKERS, move |job: Job, ticket| service.work(job, ticket, &durability, &reports));
        let weak = Arc::downgrade(&lanes);
        self.reports().know_pending(move |lb, ticket| weak.upgrade().is_some_and(|lanes| lanes.has_work_after(lb, ticket)));
        // Restored operations were accepted already: they count towards the backlog but are never refused.
        self.backlog.fetch_add(pending.len(), Ordering::SeqCst);
        crate::metrics::APPLY_BACKLOG.set(self.backlog.load(Ordering::SeqCst) as u64);
        for (seq, method, mut args) in pending {
            tracing::info!("applying {method} accepted before a restart");
            self.order_by_loadbalancer(&method, &mut args);
            lanes.push(&lane_of(&args), (Some(Appended::restored(seq)), method, args));
        }
        *self.lanes.lock().unwrap() = Some(lanes);
    }

    /// Sets `max_pending_operations`: how many accepted casts may wait to be applied before further
    /// ones are refused.
    pub fn set_max_pending_operations(&self, max: usize) {
        self.max_pending.store(max, Ordering::SeqCst);
    }

    /// Casts accepted and not yet applied and reported.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }

    fn work(self: &Arc<Self>, (inbox_seq, method, args): Job, ticket: crate::lanes::Ticket, durability: &Durability, reports: &Arc<Reporter>) {
        // Applied only once durable, which is checked once Octavia has committed: the provider sends
        // the commit notice only after the cast was answered, hence durable, so the worker neither
        // syncs the inbox itself nor waits for the thread that does. A failed sync refused the cast
        // (the provider was told, and Octavia rolls back).
        let record = inbox_seq.as_ref().zip(self.inbox.as_ref());
        let accepted = || record.map_or(Ok(()), |(appended, inbox)| inbox.durable(appended).map_err(|e| format!("{e:#}")));
        // A refused cast's request was rolled back: no commit will show, so waiting for one would hold
        // its load balancer's lane for `commit_wait_timeout` (or, with the get socket unreachable, until
        // it answers). The wait ends as soon as a failed sync has cut its record off.
        let not_refused = || record.is_none_or(|(appended, inbox)| !inbox.lost(appended));
        let started = Instant::now();
        let (statuses, storage) = match self.apply_in_memory(&method, &args, &not_refused, &accepted) {
            Taken::Applied(statuses, storage) => (statuses, storage),
            Taken::Refused => {
                self.leave_backlog();
                return;
            }
            Taken::Dropped | Taken::HandedOver => {
                log_outcome(&method, &args, &[], started.elapsed());
                self.finished(inbox_seq);
                return;
            }
        };
        // Accepted before a restart: the run that stopped may have reported it.
        let restored = inbox_seq.as_ref().is_some_and(Appended::is_restored);
        let reported_before = restored && self.reported_before(&method, &args);
        let service = Arc::clone(self);
        let reports = Arc::clone(reports);
        durability.after(storage.appended(), move |durable| {
            if let Err(e) = durable {
                // Only when the host stops with the journal still failing: not reported, and left in the
                // inbox to be applied again at the next start.
                tracing::error!("mapping journal not durable after {method} as the host stops: {e}; not reported");
                service.leave_backlog();
                return;
            }
            let sent = (!reported_before).then(|| statuses.clone());
            let done = move || {
                service.reported(&statuses);
                log_outcome(&method, &args, &statuses, started.elapsed());
                service.finished(inbox_seq);
            };
            // Not sent from here: this thread releases every operation's outcome in turn.
            match sent {
                Some(sent) => reports.submit_applied(sent, ticket, restored, done),
                None => done(),
            }
        });
    }

    /// An accepted cast has been applied and reported (or dropped): it leaves the inbox and the backlog.
    fn finished(&self, inbox_seq: Option<Appended>) {
        if let (Some(appended), Some(inbox)) = (inbox_seq, self.inbox.as_ref()) {
            inbox.done(appended.seq);
        }
        self.leave_backlog();
    }

    fn leave_backlog(&self) {
        let left = self.backlog.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        crate::metrics::APPLY_BACKLOG.set(left as u64);
    }

    /// Takes a place in the backlog, or refuses when it is full: past that, latency would grow without
    /// bound (casts arrive faster than LoxiLB can be programmed) and Octavia would show nothing.
    fn enter_backlog(&self) -> Result<(), Failure> {
        let max = self.max_pending.load(Ordering::SeqCst);
        let before = self.backlog.fetch_add(1, Ordering::SeqCst);
        if before >= max {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            crate::metrics::CASTS_REFUSED_OVERLOAD.inc();
            let cause = match self.statuses.failing_for() {
                Some(failing) => format!(
                    ": Octavia's driver-agent has not taken their status updates for {} s (is octavia-driver-agent running, and its database reachable?)",
                    failing.as_secs()
                ),
                None => String::new(),
            };
            return Err(Failure::driver(format!(
                "the LoxiLB provider is overloaded: {before} operations are waiting to be applied and reported (max_pending_operations = {max}){cause}; retry later"
            )));
        }
        crate::metrics::APPLY_BACKLOG.set(before as u64 + 1);
        Ok(())
    }

    /// Accepted operations whose inbox records were found damaged are not applied (their contents cannot
    /// be trusted), but Octavia waits for them: the objects they still name are reported ERROR, and once
    /// Octavia has taken that, the record is marked done so that a later start does not report it again
    /// (by then the objects may have been repaired). Returns at once: the reports wait for the driver-agent
    /// in the background, as the statuses of operations do.
    pub fn report_damaged(self: &Arc<Self>, damaged: &[crate::inbox::Damaged]) {
        for d in damaged {
            let Some((method, args)) = d.operation.as_ref() else { continue };
            let service = Arc::clone(self);
            let seq = d.seq;
            self.report_dropped(method, args, move || {
                if let (Some(seq), Some(inbox)) = (seq, service.inbox.as_ref()) {
                    inbox.done(seq);
                }
            });
        }
    }

    /// Reports the objects an operation that can never be applied names as ERROR (see `dropped.rs`), then
    /// runs `then`. Returns at once: the report is sent until Octavia takes it, after the earlier reports of
    /// its load balancer.
    pub fn report_dropped(&self, method: &str, args: &Value, then: impl FnOnce() + Send + 'static) {
        let statuses = crate::dropped::statuses(method, args);
        if statuses.is_empty() {
            return then();
        }
        self.reports().submit(statuses, then);
    }

    /// A synchronous request from the provider.
    pub fn call(&self, method: &str, args: &Value) -> Result<Value, Failure> {
        match method {
            "validate" => {
                let started = Instant::now();
                let _timed = crate::metrics::Timed(&crate::metrics::PROVIDER_VALIDATE, started);
                let inner = args.get("operation").and_then(Value::as_str).ok_or_else(|| Failure::driver("validate: no operation"))?;
                let op = convert::operation(inner, args.get("args").unwrap_or(&Value::Null)).map_err(|e| malformed(inner, &e))?;
                // Held while claiming: an apply releases a claim under it, once the mapping holds the VIP.
                // Operations in flight are no matter: their VIPs are claimed until they land.
                let waiting = Instant::now();
                let mut sandbox = self.sandbox.lock_beside_flights();
                crate::metrics::PROVIDER_VALIDATE_WAIT.record(waiting.elapsed());
                let mut verdict = sandbox.validate(&op).map_err(|e| Failure::driver(e.to_string()))?;
                if let (Err(PolicyError::Conflict(_)), Some(agent)) = (&verdict, self.agent.as_ref().filter(|_| !self.served.everything())) {
                    // Over AMQP the holder may be another host's load balancer deleted since (`holders.rs`);
                    // Octavia is asked without holding the policy.
                    drop(sandbox);
                    let vips = crate::holders::vips_of(&op, &self.mapping);
                    let gone = crate::holders::gone(&self.mapping, &self.served, agent, &vips);
                    sandbox = self.sandbox.lock_beside_flights();
                    if !gone.is_empty() {
                        crate::holders::forget(&self.mapping, &gone);
                        verdict = sandbox.validate(&op).map_err(|e| Failure::driver(e.to_string()))?;
                    }
                }
                verdict.map_err(|e| failure_of(&e))?;
                if let Operation::Loadbalancer((LoadbalancerAction::Create, lb)) = &op {
                    self.vip_claims.claim(&crate::vips::of(lb), &lb.id).map_err(|vip| Failure {
                        class: "Conflict",
                        message: format!(
                            "load balancer {}: VIP {vip} is being taken by another load balancer created at the same moment on this LoxiLB, which keys its rules by VIP, port and protocol across all projects; choose another vip_address",
                            lb.id
                        ),
                    })?;
                }
                Ok(Value::Null)
            }
            "get_supported_flavor_metadata" => Ok(FLAVOR_KEYS.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>().into()),
            "validate_flavor" => {
                let meta = args.get("flavor_metadata").and_then(Value::as_object).ok_or_else(|| Failure::driver("validate_flavor: no flavor_metadata"))?;
                if let Some(message) = meta.iter().find_map(|(key, value)| flavor_value_problem(key, value)) {
                    return Err(Failure { class: "UnsupportedOptionError", message });
                }
                Ok(Value::Null)
            }
            "get_supported_availability_zone_metadata" => Ok(json!({})),
            "validate_availability_zone" => match args.get("availability_zone_metadata").and_then(Value::as_object) {
                Some(meta) if !meta.is_empty() => Err(Failure {
                    class: "UnsupportedOptionError",
                    message: format!(
                        "availability zone metadata ({}) is not supported by the LoxiLB provider",
                        meta.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                }),
                _ => Ok(Value::Null),
            },
            other => Err(Failure { class: "NotImplementedError", message: format!("the LoxiLB host has no call {other:?}") }),
        }
    }

    /// Accepts a cast: checked, recorded durably, then applied by the worker, in order. A cast that could
    /// never be applied is refused here, while the provider can still fail Octavia's request: once
    /// accepted, its objects would wait in PENDING for a status.
    pub fn cast(&self, method: &str, mut args: Value) -> Result<(), Failure> {
        let _timed = crate::metrics::Timed(&crate::metrics::PROVIDER_CAST, Instant::now());
        convert::operation(method, &args).map_err(|e| malformed(method, &e))?;
        self.order_by_loadbalancer(method, &mut args);
        let appended = {
            // Held while appending and queueing, so the inbox holds each load balancer's casts in their
            // lane's order; not while the record is synced, so casts arriving together share a sync.
            let lanes = self.lanes.lock().unwrap();
            let lanes = lanes.as_ref().ok_or_else(|| Failure::driver("the host is not accepting operations"))?;
            self.enter_backlog()?;
            let appended = match &self.inbox {
                Some(inbox) => match inbox.append(method, &args) {
                    Ok(appended) => Some(appended),
                    Err(e) => {
                        self.leave_backlog();
                        return Err(Failure::driver(format!("the host could not record the operation: {e:#}")));
                    }
                },
                None => None,
            };
            if let Some(ticket) = args.get(COMMIT_TICKET).and_then(Value::as_str) {
                self.commits.expect(ticket);
            }
            let lane = lane_of(&args);
            if method == "loadbalancer_create" {
                self.vip_claims.cast(&lane);
            }
            lanes.push(&lane, (appended, method.to_string(), args));
            appended
        };
        // Answered once durable; its lane's worker waits for that too before applying it.
        if let (Some(appended), Some(inbox)) = (appended, self.inbox.as_ref()) {
            if let Err(e) = inbox.confirm(&appended) {
                return Err(Failure::driver(format!("the host could not record the operation: {e:#}")));
            }
        }
        Ok(())
    }

    /// Makes `loadbalancer_id`, which picks the operation's lane and is the load balancer reported ACTIVE,
    /// name the load balancer. The provider names the pool or listener instead when Octavia's get socket
    /// could not tell it the load balancer (the driver-agent stopped); in a lane of its own the operation
    /// would run beside its load balancer's others, and the report of one accepted before it could set the
    /// load balancer ACTIVE while it is still under way.
    fn order_by_loadbalancer(&self, method: &str, args: &mut Value) {
        let Some(named) = args.get("loadbalancer_id").and_then(Value::as_str) else { return };
        if let Some(lb) = self.mapping.loadbalancer_of(named).filter(|lb| lb != named) {
            tracing::info!("{method}: ordered by load balancer {lb}, which {named} belongs to");
            args["loadbalancer_id"] = Value::String(lb);
        }
    }

    /// A notice from the provider (`committed` or `rolled_back`, args `{"tickets": [...]}`): Octavia's
    /// transaction that made casts with those tickets has ended.
    pub fn notice(&self, method: &str, args: &Value) -> Result<(), Failure> {
        let tickets: Vec<String> = args
            .get("tickets")
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::driver(format!("{method} notice without tickets")))?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        self.commits.notice(method, &tickets).map_err(Failure::driver)
    }

    /// Applies one operation now: wait for Octavia's commit, run the policy, make the mapping durable,
    /// report. Returns once all of that is done (the AMQP transport acknowledges only then).
    pub fn apply(&self, method: &str, args: &Value) -> Vec<ObjectStatus> {
        self.apply_while(method, args, false, &|| true).unwrap_or_default()
    }

    /// `apply`, unless `still_ours` says otherwise once Octavia has committed: a transport whose
    /// delivery was handed to another host meanwhile (its connection dropped) must not apply it too.
    /// `None` when it was left alone that way (the transport must not acknowledge it). A `redelivered`
    /// operation (a host may have stopped between reporting it and acknowledging it) is not reported
    /// again once Octavia shows it reported (`reported_before`).
    pub fn apply_while(&self, method: &str, args: &Value, redelivered: bool, still_ours: &dyn Fn() -> bool) -> Option<Vec<ObjectStatus>> {
        let started = Instant::now();
        let (statuses, storage) = match self.apply_in_memory(method, args, still_ours, &|| Ok(())) {
            Taken::Applied(statuses, storage) => (statuses, storage),
            Taken::Dropped => {
                log_outcome(method, args, &[], started.elapsed());
                return Some(Vec::new());
            }
            Taken::HandedOver | Taken::Refused => return None,
        };
        if let Err(e) = self.make_durable(storage.as_ref(), still_ours) {
            // Not acknowledged: the operation is applied again, by whichever host gets it.
            tracing::error!("mapping journal not durable after {method}: {e}; not reported");
            return None;
        }
        if redelivered && self.reported_before(method, args) {
            self.reported(&statuses);
        } else {
            self.report(&statuses);
        }
        log_outcome(method, args, &statuses, started.elapsed());
        Some(statuses)
    }

    /// Makes every record appended so far durable before anything is reported. After a failed fsync the
    /// journal is durable only through a new snapshot: one is written and the sync tried again, with a
    /// growing pause, for as long as `go_on` says (see `storage/durability.rs`).
    fn make_durable(&self, storage: &dyn crate::storage::MappingStore, go_on: &dyn Fn() -> bool) -> Result<(), String> {
        crate::storage::sync_repairing(storage, storage.appended(), &|| self.mapping.write_snapshot(), |pause| {
            go_on() && {
                std::thread::sleep(pause);
                true
            }
        })
    }

    /// Sends an operation's statuses through the reporter and waits until Octavia took them: a report
    /// sent from here could overtake one of the same load balancer queued before it (the ACTIVE of a
    /// load balancer programmed after failing at LoxiLB, and a cascade delete's DELETED after it undone).
    fn report(&self, statuses: &[ObjectStatus]) {
        if !statuses.is_empty() {
            let (taken, sent) = std::sync::mpsc::channel();
            self.reports().submit(statuses.to_vec(), move || {
                let _ = taken.send(());
            });
            let _ = sent.recv();
        }
        self.reported(statuses);
    }

    /// An applied operation's statuses have been sent.
    fn reported(&self, statuses: &[ObjectStatus]) {
        self.applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for lb in loadbalancers_of(statuses) {
            self.epochs.reported(lb);
        }
    }

    /// Everything but durability and reporting. `accepted` says, once Octavia has committed, whether
    /// the operation was accepted after all (its cast's inbox record is durable).
    fn apply_in_memory(&self, method: &str, args: &Value, still_ours: &dyn Fn() -> bool, accepted: &dyn Fn() -> Result<(), String>) -> Taken {
        let op = convert::operation(method, args);
        let waiting = Instant::now();
        let waited = if op.is_ok() { self.wait_committed(method, args, still_ours) } else { Waited::Committed };
        if op.is_ok() && commit_probe(method, args).is_some() {
            crate::metrics::COMMIT_WAIT.record(waiting.elapsed());
        }
        let taken = match (accepted(), waited) {
            (Err(e), _) => {
                tracing::warn!("not applying {method}: its cast was refused ({e})");
                Some(Taken::Refused)
            }
            (Ok(()), Waited::Committed) => None,
            (Ok(()), Waited::RolledBack(why)) => {
                tracing::error!("not applying {method}: {why}");
                Some(Taken::Dropped)
            }
            (Ok(()), Waited::HandedOver) => {
                tracing::warn!("not applying {method}: it was handed to another host while Octavia's commit was awaited");
                Some(Taken::HandedOver)
            }
        };
        if let Some(taken) = taken {
            if method == "loadbalancer_create" {
                self.vip_claims.release(&lane_of(args));
            }
            return taken;
        }
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                // Accepted earlier (an inbox record from before an upgrade, an AMQP cast): Octavia waits.
                tracing::error!("{method} can never be applied, reporting the objects it names ERROR: {e:#}");
                return Taken::Applied(crate::dropped::statuses(method, args), Arc::clone(&self.storage));
            }
        };
        // A failover compares the load balancer's rules with each LoxiLB node's (`Sandbox::reassert`):
        // the desired rules rendered and the nodes listed before the policy is taken, so that operations
        // wait for neither.
        let listed = matches!(op, Operation::LoadbalancerFailover(_)).then(|| {
            self.render_beside_operations();
            let loxilb = Arc::clone(&self.sandbox.lock_beside_flights().wiring().loxilb);
            crate::execute::list_targets(&loxilb)
        });
        let (mut sandbox, handled) = match self.sandbox.take_off(&op, still_ours) {
            TakeOff::HandedOver => {
                tracing::warn!("not applying {method}: it was handed to another host meanwhile");
                return Taken::HandedOver;
            }
            TakeOff::Flying(flight) => {
                let (sandbox, outcome) = flight.fly();
                (sandbox, Ok(outcome))
            }
            TakeOff::Grounded(sandbox, answer) => (sandbox, answer),
        };
        if let Operation::Loadbalancer((LoadbalancerAction::Create, lb)) = &op {
            self.vip_claims.release(&lb.id);
        }
        if let Ok(outcome) = &handled {
            match outcome.error {
                Some(OpError::Refused(PolicyError::MissingState(_))) => crate::metrics::CACHE_MISSES.inc(),
                _ => crate::metrics::CACHE_HITS.inc(),
            }
        }
        let mut failed_at_loxilb = matches!(&handled, Ok(outcome) if matches!(outcome.error, Some(OpError::Loxilb(_))));
        let mut succeeded = matches!(&handled, Ok(outcome) if outcome.error.is_none());
        let mut statuses = match handled {
            Ok(outcome) => match &outcome.error {
                Some(OpError::Refused(PolicyError::MissingState(what))) => {
                    tracing::warn!("{method}: {what}; recovering the load balancer before failing");
                    match self.recover_for(&mut sandbox, args).and_then(|()| sandbox.handle(&op).map_err(|e| e.to_string())) {
                        Ok(retried) => {
                            failed_at_loxilb = matches!(retried.error, Some(OpError::Loxilb(_)));
                            succeeded = retried.error.is_none();
                            if let Some(error) = &retried.error {
                                tracing::warn!("{method} failed after recovery: {}", error.describe());
                            }
                            retried.statuses
                        }
                        Err(e) => {
                            tracing::warn!("{method}: recovery did not help: {e}");
                            outcome.statuses
                        }
                    }
                }
                Some(error) => {
                    tracing::warn!("{method} failed: {}", error.describe());
                    outcome.statuses
                }
                None => outcome.statuses,
            },
            Err(trap) => {
                tracing::error!("{method} failed: {trap}");
                trap_statuses(&op, args)
            }
        };
        // A failover also makes LoxiLB hold the load balancer's rules as the mapping has them (its plan
        // has no calls: the mapping says they are programmed), which is why an operator asks for one.
        if let (Operation::LoadbalancerFailover(lb_id), true, Some(listed)) = (&op, succeeded, listed) {
            let reasserted = sandbox.reassert(lb_id, listed);
            if matches!(reasserted, Ok(Ok(_))) {
                // Objects an earlier operation left in ERROR while LoxiLB failed are programmed as Octavia
                // shows them at the next check, rather than after that load balancer's pause.
                self.reprogram.hurry(lb_id);
            }
            match reasserted {
                Ok(Ok(repaired)) if repaired.is_empty() => tracing::info!("failover of {lb_id}: LoxiLB holds its rules as the mapping has them"),
                Ok(Ok(repaired)) => tracing::warn!("failover of {lb_id}: re-programmed {repaired:?}"),
                Ok(Err(e)) => {
                    tracing::warn!("failover of {lb_id} failed: LoxiLB: {e}");
                    failed_at_loxilb = true;
                    statuses = crate::dropped::statuses(method, args);
                }
                Err(trap) => {
                    tracing::error!("failover of {lb_id} failed: {trap}");
                    statuses = trap_statuses(&op, args);
                }
            }
        }
        // Octavia set the load balancer PENDING_UPDATE for any change under it: it must hear back.
        if let Some(lb) = args.get("loadbalancer_id").and_then(Value::as_str) {
            if !method.starts_with("loadbalancer_") && !statuses.iter().any(|s| s.kind == ObjectKind::Loadbalancer) {
                statuses.push(ObjectStatus {
                    kind: ObjectKind::Loadbalancer,
                    id: lb.to_string(),
                    provisioning: Some(ProvisioningStatus::Active),
                    operating: None,
                });
            }
        }
        let lb = lane_of(args);
        if failed_at_loxilb && !lb.is_empty() && self.agent.as_ref().is_some_and(|a| a.get.is_some()) {
            self.reprogram.note(&lb);
        }
        // Until `report` sends these statuses, Octavia's view of the load balancer predates this operation.
        for lb in loadbalancers_of(&statuses) {
            self.epochs.applied(lb);
        }
        Taken::Applied(statuses, Arc::clone(sandbox.storage()))
    }

    /// Runtime recovery: the load balancer's whole tree from Octavia's get socket when there is one
    /// (Octavia's view is the desired state), otherwise the rules LoxiLB holds.
    fn recover_for(&self, sandbox: &mut Sandbox, args: &Value) -> Result<(), String> {
        crate::metrics::RECOVERY_ATTEMPTS.inc();
        let result = self.recover_with(sandbox, args);
        match &result {
            Ok(()) => crate::metrics::RECOVERY_SUCCESSES.inc(),
            Err(_) => crate::metrics::RECOVERY_FAILURES.inc(),
        }
        result
    }

    fn recover_with(&self, sandbox: &mut Sandbox, args: &Value) -> Result<(), String> {
        let lb_id = args.get("loadbalancer_id").and_then(Value::as_str);
        if let (Some(agent), Some(lb_id)) = (self.agent.as_ref().filter(|a| a.get.is_some()), lb_id) {
            // The caller holds the sandbox lock, so no operation is applied during the read; but Octavia's
            // view predates one applied earlier whose statuses are not reported yet (it still shows what
            // that operation deleted). LoxiLB holds what this host applied, so recover from it then.
            let since = self.epochs.ticket();
            if let Ok(Some(tree)) = agent.get("loadbalancers", lb_id) {
                if self.epochs.current(lb_id, since) {
                    let adopted = adopt_tree(sandbox, &tree).map(drop);
                    self.epochs.touched(lb_id);
                    return adopted;
                }
                tracing::warn!("recovering load balancer {lb_id}: an operation on it is not reported to Octavia yet, so LoxiLB is newer than Octavia's view");
            }
        }
        match sandbox.recover(crate::execute::RecoveryMode::Loxilb).map_err(|e| e.to_string())? {
            Ok(report) => {
                tracing::warn!("runtime recovery from LoxiLB: {} mappings recovered", report.recovered);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Reads one load balancer back from Octavia's get socket and makes that the desired state: the
    /// mapping follows Octavia's committed view and LoxiLB follows the mapping (the sync's own statuses
    /// are not reported). A load balancer Octavia no longer has is removed from LoxiLB and the mapping.
    /// `Err` when Octavia could not be asked.
    pub fn adopt(&self, lb_id: &str, skip_pending: bool) -> Result<Adopted, String> {
        self.adopt_as_of(lb_id, self.epochs.ticket(), skip_pending)
    }

    /// `adopt`, for a read that counts as beginning at `since`: an operation on the load balancer
    /// applied after `since`, or not yet reported to Octavia, is newer than the read, which is then
    /// dropped (`Adopted::Superseded`). With `skip_pending`, a load balancer with an operation accepted
    /// and not yet applied is left to that operation (`Adopted::Pending`). The periodic sync takes `since`
    /// when it lists the mapping.
    pub fn adopt_as_of(&self, lb_id: &str, since: Ticket, skip_pending: bool) -> Result<Adopted, String> {
        let Some(agent) = self.agent.as_ref().filter(|a| a.get.is_some()) else { return Ok(Adopted::NoGetSocket) };
        let tree = agent.get("loadbalancers", lb_id).map_err(|e| format!("{e:#}"))?;
        let mut sandbox = self.sandbox.lock().unwrap();
        if !self.epochs.current(lb_id, since) {
            return Ok(Adopted::Superseded);
        }
        if skip_pending && self.operation_waiting(lb_id) {
            return Ok(Adopted::Pending);
        }
        let adopted = match &tree {
            Some(tree) => {
                if let Err(e) = adopt_tree(&mut sandbox, tree) {
                    tracing::warn!("adopting load balancer {lb_id} from Octavia: {e}");
                }
                Adopted::Synced
            }
            None => match remove_gone(&mut sandbox, lb_id) {
                Ok(true) => Adopted::Removed,
                Ok(false) => Adopted::NotInOctavia,
                Err(e) => {
                    tracing::warn!("removing load balancer {lb_id}, which Octavia no longer has: {e}; trying again with those that failed at LoxiLB");
                    self.reprogram.note(lb_id);
                    Adopted::RemovalFailed
                }
            },
        };
        self.epochs.touched(lb_id);
        let storage = Arc::clone(sandbox.storage());
        drop(sandbox);
        if let Err(e) = storage.sync() {
            tracing::error!("mapping journal not durable after adopting {lb_id}: {e}");
        }
        Ok(adopted)
    }

    /// Renders the desired rules on an instance of their own when the mapping changed since the last
    /// render, so that a reconciliation pass or a failover holds operations back only for its diff. The
    /// sandbox takes them if no operation committed a change meanwhile; otherwise the pass renders under
    /// the lock, as it must.
    pub fn render_beside_operations(&self) {
        let Some(job) = self.sandbox.lock().unwrap().render_job() else { return };
        match job.run(|s| s.render_desired_rules()) {
            Ok(rendered) => {
                self.sandbox.lock().unwrap().offer_desired(rendered);
            }
            Err(e) => tracing::debug!("rendering the desired rules beside the operations: {e}"),
        }
    }

    /// Programs the load balancers whose operations failed at LoxiLB (see `reprogram.rs`) as Octavia's get
    /// socket shows them now, and reports their objects ACTIVE. One with an operation accepted and not yet
    /// applied, or applied and not yet reported, is left to the next round (that operation may fail too, or
    /// bring it up to date; reported ACTIVE meanwhile, the load balancer would be open to changes while
    /// Octavia still shows that operation's objects PENDING).
    ///
    /// Their objects wait in ERROR, so they are read back several at a time; and for about a second per
    /// round, the rest left due to the next: after a long LoxiLB outage hundreds may be due, each a
    /// process the driver-agent forks and a status document, and the monitor's checks that call this
    /// (a LoxiLB restart noticed within seconds) waited for all of them.
    pub fn reprogram_failed(self: &Arc<Self>) {
        let Some(agent) = self.agent.as_ref().filter(|a| a.get.is_some()) else { return };
        let served = self.served();
        // Over AMQP, one of another host's shards is left to it (or to this host once it consumes it).
        let due: Vec<String> = self.reprogram.due().into_iter().filter(|lb| served.serves(lb)).collect();
        read_back(due, readback::URGENT, Some(REPROGRAM_SLICE), |lb| self.reprogram_one(agent, lb));
    }

    fn reprogram_one(self: &Arc<Self>, agent: &DriverAgent, lb: String) -> Next {
        let since = self.epochs.ticket();
        if !self.epochs.current(&lb, since) {
            // Programmed by an earlier round whose report Octavia has not taken yet (or changed by an
            // operation not reported yet): nothing to read now.
            return Next::Go;
        }
        let tree = match agent.get("loadbalancers", &lb) {
            Ok(tree) => tree,
            Err(e) => {
                tracing::debug!("programming load balancers that failed at LoxiLB: get socket unavailable: {e:#}");
                return Next::Stop;
            }
        };
        let mut sandbox = self.sandbox.lock().unwrap();
        if !self.epochs.current(&lb, since) || self.operation_waiting(&lb) {
            return Next::Go;
        }
        let Some(tree) = tree else {
            let removed = remove_gone(&mut sandbox, &lb);
            self.epochs.touched(&lb);
            match removed {
                Ok(_) => self.reprogram.forget(&lb),
                Err(e) => {
                    tracing::warn!("removing load balancer {lb}, which Octavia no longer has: {e}");
                    self.reprogram.failed_again(&lb);
                }
            }
            return Next::Go;
        };
        let statuses = match adopt_tree(&mut sandbox, &tree) {
            Ok(statuses) => statuses,
            Err(e) => {
                self.reprogram.failed_again(&lb);
                tracing::warn!("load balancer {lb}, which failed at LoxiLB, still cannot be programmed: {e}");
                return Next::Go;
            }
        };
        self.epochs.applied(&lb);
        // Made durable (a crash would otherwise undo what Octavia is told) and handed to the reporter
        // under the policy lock, so that the report of an operation of this load balancer applied after
        // this one goes after it: the reporter keeps a load balancer's reports in order. Sent from here,
        // this ACTIVE could reach Octavia after such an operation's report; after a cascade delete's
        // DELETED, Octavia showed the deleted load balancer ACTIVE again, and nothing served it.
        if let Err(e) = self.make_durable(sandbox.storage().as_ref(), &|| false) {
            tracing::error!("mapping journal not durable after programming {lb}: {e}; programmed again later");
            self.epochs.reported(&lb);
            self.reprogram.failed_again(&lb);
            return Next::Go;
        }
        tracing::info!("load balancer {lb}, which failed at LoxiLB, is programmed as Octavia shows it: reporting its objects ACTIVE");
        let (taken, sent) = std::sync::mpsc::channel();
        let service = Arc::clone(self);
        // Not as an operation's report: that counts an operation applied.
        self.reports().submit(statuses, move || {
            service.epochs.reported(&lb);
            service.reprogram.forget(&lb);
            let _ = taken.send(());
        });
        drop(sandbox);
        // Waited for at most `PATIENCE` (the monitor's thread goes on); the reporter sends it until
        // Octavia takes it, and the load balancer is left out of the rounds until then.
        let _ = sent.recv_timeout(crate::octavia::status::PATIENCE);
        Next::Go
    }

    /// Whether an operation of `lb` was accepted and is still queued or being applied: Octavia shows the
    /// load balancer PENDING until it is reported (the provider casts before Octavia commits, so every
    /// object its get socket shows was cast by then). Its get socket does not say: it leaves provisioning
    /// statuses out of what it answers. Only the Unix-socket transport's operations are seen here; an AMQP
    /// host cannot see those RabbitMQ holds for it.
    fn operation_waiting(&self, lb: &str) -> bool {
        let lanes = self.lanes.lock().unwrap().clone();
        lanes.is_some_and(|lanes| lanes.has_work_after(lb, 0))
    }

    /// Whether Octavia shows that an operation accepted before a restart (or redelivered by RabbitMQ) was
    /// reported then. A host that stops between reporting an operation and marking it done in the inbox
    /// (or acknowledging its AMQP delivery) applies it again when it starts; its statuses sent again would
    /// undo a later operation's PENDING state in Octavia (a load balancer ACTIVE while a member added since
    /// is still being programmed, open to further changes meanwhile).
    ///
    /// Octavia's get socket leaves provisioning statuses out of what it answers, so only a delete shows
    /// as reported: its object is gone. Any other operation is taken as not reported (an object left
    /// PENDING for good is the worse outcome): over the Unix socket the reporter then leaves its statuses
    /// to a later operation of its load balancer still waiting in the lanes (`Reporter::submit_applied`);
    /// over AMQP they are sent again, and the later operation's own report brings the load balancer back.
    fn reported_before(&self, method: &str, args: &Value) -> bool {
        let Some(agent) = self.agent.as_ref().filter(|a| a.get.is_some()) else { return false };
        let Some((collection, id, "PENDING_DELETE")) = pending_state_of(method, args) else { return false };
        let gone = matches!(agent.get(collection, &id), Ok(None));
        if gone {
            tracing::info!("{method} {id}, accepted before the restart, was reported then (Octavia no longer has it): not reporting it again");
        }
        gone
    }

    /// Waits until Octavia's get socket shows what the operation refers to as committed: a created object
    /// exists; an updated one reads back with the new values. Without a get socket there is no Octavia
    /// transaction to wait for. Only answers count towards `commit_wait`: while the get socket cannot be
    /// asked, nothing is known about the commit, so the wait goes on (until `still_ours` turns false).
    fn wait_committed(&self, method: &str, args: &Value, still_ours: &dyn Fn() -> bool) -> Waited {
        let Some(agent) = self.agent.as_ref().filter(|a| a.get.is_some()) else { return Waited::Committed };
        let Some((collection, id, expected)) = commit_probe(method, args) else { return Waited::Committed };
        if let Some(ticket) = args.get(COMMIT_TICKET).and_then(Value::as_str) {
            match self.commits.wait(ticket, NOTICE_WAIT, still_ours) {
                Some(Notice::Committed) => {
                    crate::metrics::COMMITS_NOTIFIED.inc();
                    return Waited::Committed;
                }
                _ if !still_ours() => return Waited::HandedOver,
                Some(Notice::RolledBack) => tracing::info!("Octavia rolled back the request of {method} {id}, says the provider; asking the get socket"),
                Some(Notice::Awaited) => tracing::info!("no notice of Octavia's commit of {method} {id} within {NOTICE_WAIT:?}; asking the get socket"),
                None => {}
            }
        }
        crate::metrics::COMMITS_POLLED.inc();
        let start = Instant::now();
        // Time spent while the get socket could not be asked, and since when it cannot be now.
        let mut unreachable_for = Duration::ZERO;
        let mut unreachable_since: Option<Instant> = None;
        let mut warned_at: Option<Instant> = None;
        loop {
            let asked_at = Instant::now();
            match agent.get(collection, &id) {
                Ok(Some(found)) if expected.iter().all(|(k, v)| found.get(k) == Some(v)) => return Waited::Committed,
                Ok(_) => {
                    if let Some(since) = unreachable_since.take() {
                        unreachable_for += asked_at - since;
                        tracing::info!("Octavia's get socket answers again; {method} waits for its commit");
                    }
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert(asked_at);
                    if warned_at.is_none_or(|at| at.elapsed() >= UNREACHABLE_WARN_EVERY) {
                        tracing::warn!(
                            "Octavia's get socket cannot be asked for {collection}/{id} ({e:#}), for {:?}: {method} waits until it can",
                            since.elapsed()
                        );
                        warned_at = Some(Instant::now());
                    }
                }
            }
            let now = Instant::now();
            let unanswered = unreachable_for + unreachable_since.map_or(Duration::ZERO, |since| now - since);
            let answered = (now - start).saturating_sub(unanswered);
            if answered >= self.commit_wait {
                return Waited::RolledBack(format!(
                    "Octavia did not show {collection}/{id} committed for {:?} of answers (its request was probably rolled back)",
                    self.commit_wait
                ));
            }
            if !still_ours() {
                return Waited::HandedOver;
            }
            std::thread::sleep(if unreachable_since.is_some() { UNREACHABLE_PAUSE } else { commit_poll_pause(answered) });
        }
    }
}

/// One INFO line and the operation metrics for each operation taken off a queue: `ok` when every status
/// it reported is not ERROR, `error` when one is, `not_applied` when it was dropped before the policy ran
/// (Octavia rolled its request back, or another host took it over).
fn log_outcome(method: &str, args: &Value, statuses: &[ObjectStatus], took: Duration) {
    let result = if statuses.is_empty() {
        "not_applied"
    } else if statuses.iter().any(|s| s.provisioning == Some(ProvisioningStatus::Error)) {
        "error"
    } else {
        "ok"
    };
    crate::metrics::record_operation(method, result, took);
    let lb = args.get("loadbalancer_id").and_then(Value::as_str).unwrap_or("-");
    let objects: Vec<String> = statuses.iter().map(|s| format!("{}/{}", crate::octavia::status::collection(s.kind), s.id)).collect();
    tracing::info!(method, loadbalancer = lb, objects = objects.join(","), took_ms = took.as_millis() as u64, result, "operation");
}

/// How `Service::wait_committed` ended.
#[derive(Debug, PartialEq)]
enum Waited {
    Committed,
    /// Octavia answered, and never showed the change committed within `commit_wait_timeout`.
    RolledBack(String),
    /// `still_ours` turned false meanwhile.
    HandedOver,
}

/// The pause between two reads of an object Octavia has not shown committed yet, `answered` into the
/// wait. Octavia commits right after the provider returns, and the get socket is local (one short
/// connection per read): read it every 20 ms at first, then less and less often, for a request that was
/// rolled back is read until `commit_wait_timeout`.
fn commit_poll_pause(answered: Duration) -> Duration {
    const FAST: Duration = Duration::from_millis(20);
    const FAST_FOR: Duration = Duration::from_secs(2);
    const SLOWEST: Duration = Duration::from_millis(500);
    if answered < FAST_FOR {
        FAST
    } else {
        (answered / 8).clamp(FAST, SLOWEST)
    }
}

/// How long one round of programming the load balancers that failed at LoxiLB starts reads for (the
/// monitor's next check waits for it).
const REPROGRAM_SLICE: Duration = Duration::from_secs(1);

/// The pause between two attempts to reach a get socket that cannot be asked.
const UNREACHABLE_PAUSE: Duration = Duration::from_millis(100);
/// How often a wait on an unreachable get socket says so.
const UNREACHABLE_WARN_EVERY: Duration = Duration::from_secs(10);

/// What `Service::adopt` found.
#[derive(Debug, PartialEq)]
pub enum Adopted {
    Synced,
    /// Octavia does not show the load balancer (deleted, or not committed yet), and the mapping has
    /// nothing of it to remove (or an id Octavia cannot know, recovered from an unnamed LoxiLB rule).
    NotInOctavia,
    /// Octavia no longer has the load balancer: it was removed from LoxiLB and the mapping.
    Removed,
    /// Octavia no longer has the load balancer, and removing it failed (LoxiLB did not answer): it is
    /// tried again with the load balancers that failed at LoxiLB (`reprogram_failed`), and not taken as
    /// read back meanwhile.
    RemovalFailed,
    /// An operation on it was applied after the read began, or is not reported yet: the read is stale.
    Superseded,
    /// An operation on it was accepted and is not applied yet; that operation brings it up to date.
    Pending,
    NoGetSocket,
}

/// A load balancer tree as Octavia's get socket renders it, adopted as the desired state.
/// The statuses the adoption would report: the whole tree ACTIVE.
fn adopt_tree(sandbox: &mut Sandbox, tree: &Value) -> Result<Vec<ObjectStatus>, String> {
    let op = convert::operation("loadbalancer_sync", &json!({"loadbalancer": tree})).map_err(|e| format!("{e:#}"))?;
    let outcome = sandbox.handle(&op).map_err(|e| e.to_string())?;
    match outcome.error {
        None => Ok(outcome.statuses),
        Some(e) => Err(e.describe()),
    }
}

/// Removes a mapped load balancer that Octavia no longer has, with everything under it, as a cascade
/// delete would (its statuses are not reported: Octavia has nothing to report them on). `false` when
/// the mapping does not have it, or has it under an id made up for a LoxiLB rule without Octavia ids
/// (Octavia cannot know such an id, so its answer says nothing about that load balancer). Rules at its
/// VIPs and ports that LoxiLB holds for another load balancer are left, and that one adopted
/// (`Sandbox::remove_gone`).
fn remove_gone(sandbox: &mut Sandbox, lb_id: &str) -> Result<bool, String> {
    use crate::runtime::bindings::mapping::ResourceType;
    if !is_octavia_id(lb_id) {
        return Ok(false);
    }
    let Some(entry) = sandbox.mapping().get(lb_id).filter(|e| e.resource_type == ResourceType::Loadbalancer) else { return Ok(false) };
    let args = json!({"loadbalancer": {"loadbalancer_id": lb_id, "vip_address": entry.external_ip}, "cascade": true});
    let op = convert::operation("loadbalancer_delete", &args).map_err(|e| format!("{e:#}"))?;
    let spared = sandbox.remove_gone(lb_id, &op).map_err(|e| e.to_string())??;
    tracing::warn!("load balancer {lb_id} is gone from Octavia: removed it from LoxiLB and the mapping");
    if !spared.is_empty() {
        // Adopted: their load balancer is read back from Octavia with the next sync.
        tracing::warn!(
            "load balancer {lb_id}: left and adopted {spared:?} in LoxiLB, named for another load balancer (its VIP and port were given to it since)"
        );
    }
    Ok(true)
}

/// Octavia's ids are UUIDs (`8-4-4-4-12` hex digits); ids made up for LoxiLB rules without Octavia ids
/// are not.
pub fn is_octavia_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The load balancers a set of statuses reports on.
fn loadbalancers_of(statuses: &[ObjectStatus]) -> impl Iterator<Item = &str> {
    statuses.iter().filter(|s| s.kind == ObjectKind::Loadbalancer).map(|s| s.id.as_str())
}

/// A get-socket collection, an object id, and the field values that must read back.
type CommitProbe = (&'static str, String, Vec<(String, Value)>);

/// The get socket's collection of an object kind as a method names it, the cast's key for the object,
/// and its id field.
fn object_kind(kind: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match kind {
        "loadbalancer" => ("loadbalancers", "loadbalancer", "loadbalancer_id"),
        "listener" => ("listeners", "listener", "listener_id"),
        "pool" => ("pools", "pool", "pool_id"),
        "member" => ("members", "member", "member_id"),
        "health_monitor" => ("healthmonitors", "healthmonitor", "healthmonitor_id"),
        "l7policy" => ("l7policies", "l7policy", "l7policy_id"),
        "l7rule" => ("l7rules", "l7rule", "l7rule_id"),
        _ => return None,
    })
}

/// The object a create, update or delete is about, and the PENDING state Octavia holds it in until the
/// operation is reported.
fn pending_state_of(method: &str, args: &Value) -> Option<(&'static str, String, &'static str)> {
    let (kind, action) = method.rsplit_once('_')?;
    let (collection, name, id_field) = object_kind(kind)?;
    let (pending, object) = match action {
        "create" => ("PENDING_CREATE", args.get(name)),
        "update" => ("PENDING_UPDATE", args.get(format!("new_{name}")).filter(|n| n.get(id_field).is_some()).or_else(|| args.get(format!("old_{name}")))),
        "delete" => ("PENDING_DELETE", args.get(name)),
        _ => return None,
    };
    Some((collection, object?.get(id_field)?.as_str()?.to_string(), pending))
}

/// What to read back from the get socket before applying `method`, and which fields must match.
fn commit_probe(method: &str, args: &Value) -> Option<CommitProbe> {
    if method == "member_batch_update" {
        let first = args.get("members")?.as_array()?.first()?;
        return Some(("members", first.get("member_id")?.as_str()?.to_string(), Vec::new()));
    }
    let (collection, id, _) = pending_state_of(method, args)?;
    if method.ends_with("_create") {
        return Some((collection, id, Vec::new()));
    }
    if method.ends_with("_update") {
        let (_, name, id_field) = object_kind(method.rsplit_once('_')?.0)?;
        let new = args.get(format!("new_{name}"))?.as_object()?;
        let expected = new.iter().filter(|(k, v)| k.as_str() != id_field && !v.is_object() && !v.is_array()).map(|(k, v)| (k.clone(), v.clone())).collect();
        return Some((collection, id, expected));
    }
    None
}

/// Statuses when the policy itself failed (trap, deadline, memory): the object ERROR, its load balancer
/// back to ACTIVE so the user can retry or delete.
fn trap_statuses(op: &Operation, args: &Value) -> Vec<ObjectStatus> {
    let error = |kind, id: &str| ObjectStatus { kind, id: id.to_string(), provisioning: Some(ProvisioningStatus::Error), operating: None };
    let mut out = Vec::new();
    let lb_id = args.get("loadbalancer_id").and_then(Value::as_str).map(str::to_string);
    let object = match op {
        Operation::Loadbalancer((_, lb)) => (ObjectKind::Loadbalancer, lb.id.clone()),
        Operation::LoadbalancerFailover(id) => (ObjectKind::Loadbalancer, id.clone()),
        Operation::Listener((_, l)) => (ObjectKind::Listener, l.id.clone()),
        Operation::Pool((_, p)) => (ObjectKind::Pool, p.id.clone()),
        Operation::Member((_, m)) => (ObjectKind::Member, m.id.clone()),
        Operation::MemberBatchUpdate(b) => (ObjectKind::Pool, b.pool_id.clone()),
        Operation::HealthMonitor((_, h)) => (ObjectKind::HealthMonitor, h.id.clone()),
        Operation::L7policy((_, p)) => (ObjectKind::L7policy, p.id.clone()),
        Operation::L7rule((_, r)) => (ObjectKind::L7rule, r.id.clone()),
    };
    out.push(error(object.0, &object.1));
    if let Some(lb) = lb_id.filter(|lb| *lb != object.1) {
        out.push(ObjectStatus { kind: ObjectKind::Loadbalancer, id: lb, provisioning: Some(ProvisioningStatus::Active), operating: None });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loxilb::LoxiTransport;

    /// A LoxiLB that says yes to everything and holds nothing.
    struct Agreeable;

    impl LoxiTransport for Agreeable {
        fn request(&self, method: &str, _path: &str, _body: Option<&str>) -> Result<(u16, String), String> {
            Ok((200, if method == "GET" { r#"{"lbAttr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
        }
    }

    #[test]
    fn a_cast_its_inbox_could_not_record_does_not_hold_its_lane_waiting_for_a_commit() {
        let policy = crate::runtime::load(&crate::runtime::default_policy_path()).unwrap();
        let mapping = crate::app::load_mapping(Arc::new(crate::storage::MemoryStore::default())).unwrap();
        let wiring = crate::runtime::instance::Wiring {
            loxilb: Arc::new(Agreeable),
            mapping,
            remove_orphans: false,
            served: Default::default(),
            log_target: "test".into(),
        };
        let settings = crate::runtime::bindings::policy_types::Settings { nat_mode: "fullnat".into(), bgp: false };
        let sandbox = Sandbox::new(policy, wiring, crate::runtime::instance::Limits::default(), settings).unwrap();
        let (path, inbox, disk) = crate::inbox::tests::open_on("refused-lane", crate::inbox::tests::Disk::default());
        // A get socket nobody answers: a wait for the commit would go on until it does.
        let agent = DriverAgent { status: None, stats: None, get: Some(std::env::temp_dir().join(format!("no-get-{}.sock", std::process::id()))) };
        let sink = Arc::new(crate::octavia::status::RecordingSink::default());
        let service = Service::with_inbox(sandbox, Some(agent), sink.clone(), Duration::from_secs(60), Some(inbox));
        service.start_worker(Vec::new());
        *disk.sync_fails.lock().unwrap() = true;
        let lb = json!({"loadbalancer_id": "lb-1", "vip_address": "10.0.0.1", "admin_state_up": true, "listeners": [], "pools": []});
        let refused = service.cast("loadbalancer_create", json!({"loadbalancer_id": "lb-1", "loadbalancer": lb, COMMIT_TICKET: "t-1"}));
        assert!(refused.is_err(), "the cast was accepted though its record could not be synced");
        let deadline = Instant::now() + Duration::from_secs(5);
        while service.backlog() > 0 {
            assert!(Instant::now() < deadline, "the refused cast still holds its lane, waiting for a commit that cannot come");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(sink.documents.lock().unwrap().is_empty(), "a refused cast was applied and reported");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_commit_is_read_every_20_ms_at_first_and_at_least_every_half_second() {
        for ms in [0, 10, 500, 1999] {
            assert_eq!(commit_poll_pause(Duration::from_millis(ms)), Duration::from_millis(20), "{ms} ms into the wait");
        }
        let mut last = Duration::ZERO;
        for s in 2..120 {
            let pause = commit_poll_pause(Duration::from_secs(s));
            assert!(pause >= last && pause <= Duration::from_millis(500), "{pause:?} at {s} s");
            last = pause;
        }
    }

    #[test]
    fn flavor_profiles_take_nat_mode_and_bgp_and_name_what_is_wrong() {
        assert_eq!(flavor_value_problem("nat_mode", &json!("dsr")), None);
        assert_eq!(flavor_value_problem("bgp", &json!(true)), None);
        assert_eq!(flavor_value_problem("bgp", &json!("false")), None);
        assert_eq!(flavor_value_problem("bgp", &json!("yes")).unwrap(), "flavor bgp \"yes\" is not true or false");
        assert!(flavor_value_problem("nat_mode", &json!("teleport")).unwrap().contains("not one of dnat"));
        assert!(flavor_value_problem("compute_flavor", &json!("x")).unwrap().contains("(supported: nat_mode, bgp)"));
    }

    #[test]
    fn only_real_octavia_ids_can_be_reported_gone() {
        assert!(is_octavia_id("bbbbbbbb-0000-4000-8000-000000000001"));
        assert!(!is_octavia_id("lb_10.0.0.1_0__0123456789abcdef"));
        assert!(!is_octavia_id("bbbbbbbb-0000-4000-8000-00000000000g"));
    }
}
