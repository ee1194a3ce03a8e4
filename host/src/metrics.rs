//! Process-wide metrics, cheap enough to bump on every mapping change (one relaxed atomic add), served
//! as Prometheus/OpenMetrics text by prometheus-client's registry (`/metrics`, `loxilb-octavia metrics`)
//! and as JSON.
//!
//! The plain metrics are statics so any module can update them without plumbing a handle through; a
//! module with metrics of its own registers `&'static` ones with [`register`] once. Metrics with labels
//! (operations by method and result, LoxiLB requests by node) and latency histograms are
//! prometheus-client families, reached through the functions below.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter as FamilyCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge as FamilyGauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};

/// Every metric name starts with this, so a shared Prometheus server can tell them apart.
pub const PREFIX: &str = "loxilb_octavia_";

/// A monotonically increasing count.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter { name, help, value: AtomicU64::new(0) }
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (mappings held, journal length).
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicU64,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge { name, help, value: AtomicU64::new(0) }
    }
    pub fn set(&self, v: u64) {
        self.value.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
    pub fn inc(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets it to `v` if that is more: a high-water mark.
    pub fn raise_to(&self, v: u64) {
        self.value.fetch_max(v, Ordering::Relaxed);
    }
}

/// Records the time since it was made into a [`Timing`] when dropped (whichever way the scope ends).
pub struct Timed(pub &'static Timing, pub std::time::Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        self.0.record(self.1.elapsed());
    }
}

/// Durations of one kind of event: how many, their total, the last and the largest, in microseconds.
/// (A histogram would need buckets chosen per disk; last/max/mean answer "is the disk slow now".)
pub struct Timing {
    pub name: &'static str,
    pub help: &'static str,
    count: AtomicU64,
    total_us: AtomicU64,
    last_us: AtomicU64,
    max_us: AtomicU64,
}

impl Timing {
    pub const fn new(name: &'static str, help: &'static str) -> Timing {
        Timing { name, help, count: AtomicU64::new(0), total_us: AtomicU64::new(0), last_us: AtomicU64::new(0), max_us: AtomicU64::new(0) }
    }
    pub fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.last_us.store(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
    pub fn total_us(&self) -> u64 {
        self.total_us.load(Ordering::Relaxed)
    }
    pub fn last_us(&self) -> u64 {
        self.last_us.load(Ordering::Relaxed)
    }
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Ordering::Relaxed)
    }
}

pub enum Metric {
    Counter(&'static Counter),
    Gauge(&'static Gauge),
    Timing(&'static Timing),
}

// Storage (host/src/storage): what the durability of the mapping costs.
pub static STORAGE_WRITES: Counter = Counter::new("storage_writes_total", "Mapping journal records appended.");
pub static STORAGE_BYTES: Counter = Counter::new("storage_bytes_written_total", "Bytes written to mapping journals, snapshots and backups.");
pub static STORAGE_SNAPSHOTS: Counter = Counter::new("storage_snapshot_writes_total", "Mapping snapshots written (journal compactions).");
pub static STORAGE_SNAPSHOT_WRITE: Timing = Timing::new("storage_snapshot_write", "Time to seal, write and fsync one mapping snapshot.");
pub static STORAGE_FSYNC: Timing = Timing::new("storage_fsync", "fsync/fdatasync calls on mapping files and their directory.");
pub static STORAGE_GROUP_COMMITS: Counter =
    Counter::new("storage_group_commits_total", "Journal syncs, each covering every record appended before it started.");
pub static STORAGE_GROUP_COMMIT_RECORDS: Counter =
    Counter::new("storage_group_commit_records_total", "Journal records made durable by group commits (divide by the commits for the batch size).");
pub static STORAGE_ERRORS: Counter = Counter::new("storage_errors_total", "Failed mapping storage operations.");
pub static STORAGE_REPAIRS: Counter =
    Counter::new("storage_repairs_total", "Attempts to make the journal durable again after a failed fsync (a snapshot each); reports wait meanwhile.");
pub static STORAGE_BACKUPS: Counter = Counter::new("storage_backups_total", "Mapping snapshot backups written.");
pub static STORAGE_FALLBACKS: Counter = Counter::new("storage_fallbacks_total", "Loads that found the main snapshot corrupt or missing and used a backup.");
pub static STORAGE_BAD_RECORDS: Counter =
    Counter::new("storage_journal_bad_records_total", "Journal records skipped on replay because their checksum or framing was wrong.");
pub static STORAGE_JOURNAL_DAMAGE: Counter = Counter::new(
    "storage_journal_damage_total",
    "Starts that found the mapping journal damaged (a segment missing or emptied, a record failing its checksum) and rebuilt the mapping from LoxiLB.",
);
pub static MAPPING_ENTRIES: Gauge = Gauge::new("mapping_entries", "Octavia objects in the ID mapping, as of the last reconciliation pass.");
pub static STORAGE_JOURNAL_RECORDS: Gauge =
    Gauge::new("storage_journal_records", "Journal records since the snapshot the mapping was loaded from or last compacted to.");

// Mapping cache and recovery: updated by the modules that see them.
pub static CACHE_HITS: Counter = Counter::new("mapping_cache_hits_total", "Mapping lookups answered from the cache.");
pub static CACHE_MISSES: Counter = Counter::new("mapping_cache_misses_total", "Mapping lookups that found nothing.");
pub static RECOVERY_ATTEMPTS: Counter = Counter::new("recovery_attempts_total", "Mapping recoveries started (startup, runtime, reconciliation).");
pub static RECOVERY_SUCCESSES: Counter = Counter::new("recovery_successes_total", "Mapping recoveries that succeeded.");
pub static RECOVERY_FAILURES: Counter = Counter::new("recovery_failures_total", "Mapping recoveries that failed.");
pub static MONITOR_PANICS: Counter =
    Counter::new("monitor_panics_total", "Liveness checks (and start passes) of the monitor that panicked, each a bug; the next check runs.");

// The policy sandbox (linear memory never shrinks; a full render's instance is recycled, `runtime::instance`).
pub static POLICY_MEMORY_PEAK: Gauge = Gauge::new(
    "policy_memory_peak_bytes",
    "The most linear memory a policy instance has grown to since the start: how close any came to policy_memory_limit_bytes.",
);
pub static POLICY_MEMORY_LIMIT: Gauge =
    Gauge::new("policy_memory_limit_bytes", "The memory cap of each policy instance (guest_memory_limit_mb); 0 before the policy starts.");
pub static POLICY_MEMORY_REFUSED: Counter =
    Counter::new("policy_memory_refused_total", "Growths of a policy instance's memory refused at the cap: the call traps, and its operation goes to ERROR.");

// Accepting and applying casts (service, inbox, Unix transport).
pub static APPLY_BACKLOG: Gauge = Gauge::new("apply_backlog", "Casts accepted and not yet applied and reported (bounded by max_pending_operations).");
pub static OPERATIONS_IN_FLIGHT: Gauge = Gauge::new(
    "operations_in_flight",
    "Operations making their LoxiLB calls now, the policy free meanwhile: one that stays up is waiting on a LoxiLB that is slow to answer.",
);
pub static CASTS_REFUSED_OVERLOAD: Counter = Counter::new("casts_refused_overload_total", "Casts refused because max_pending_operations were already waiting.");
pub static INBOX_SYNCS: Counter =
    Counter::new("inbox_syncs_total", "fdatasyncs of the inbox: casts accepted at once share one (compare with provider_cast_count).");
pub static INBOX_BAD_RECORDS: Counter =
    Counter::new("inbox_bad_records_total", "Inbox records found damaged on start (their objects are reported ERROR where they can be named).");
pub static PROVIDER_CONNECTIONS_REFUSED: Counter =
    Counter::new("provider_connections_refused_total", "Provider socket connections refused: too many at once, or a peer not allowed.");
pub static STATUS_DOCUMENTS: Counter =
    Counter::new("status_documents_total", "Status documents sent for applied operations (several operations' statuses may share one).");
pub static STATUS_UPDATE: Timing =
    Timing::new("status_update", "Status documents of applied operations: from handing one to the driver-agent to its answer (retries included).");
pub static STATUS_UPDATE_RETRIES: Counter = Counter::new(
    "status_update_retries_total",
    "Status documents or records sent again: the driver-agent did not answer, or refused one for an object Octavia still has.",
);
pub static STATUS_RECORDS_GIVEN_UP: Counter = Counter::new(
    "status_records_given_up_total",
    "Status records given up, each logged whole to be replayed: refused again and again while Octavia still has the object.",
);
pub static STATUS_UPDATES_DEFERRED: Counter = Counter::new(
    "status_updates_deferred_total",
    "Status documents of the monitor (operating statuses, repairs) Octavia did not take within 2 s: sent again at its next pass.",
);
pub static COMMIT_WAIT: Timing =
    Timing::new("commit_wait", "Waits for Octavia's commit of a create or update before applying it (notice or get-socket reads).");
pub static PROVIDER_VALIDATE: Timing = Timing::new(
    "provider_validate",
    "Validate calls of the provider (inside octavia-api's request): from reading the request to the answer, the wait for the policy included.",
);
pub static PROVIDER_VALIDATE_WAIT: Timing =
    Timing::new("provider_validate_wait", "The part of each validate call spent waiting for the policy (busy applying another operation).");
pub static PROVIDER_CAST: Timing =
    Timing::new("provider_cast", "Casts of the provider (inside octavia-api's request): from reading the request to the answer, the inbox's fsync included.");
pub static COMMITS_NOTIFIED: Counter =
    Counter::new("commits_notified_total", "Operations applied on the provider's notice of Octavia's commit, without asking the get socket.");
pub static COMMITS_POLLED: Counter =
    Counter::new("commits_polled_total", "Operations whose commit was awaited by reading Octavia's get socket (no notice, or a rollback notice).");

pub static RULES_REPAIRED: Counter =
    Counter::new("rules_repaired_total", "Rules a LoxiLB node held otherwise than wanted (missing or drifted), re-programmed by reconciliation or a failover.");
pub static RULE_REPAIRS_FAILED: Counter = Counter::new("rule_repairs_failed_total", "Repairs of a rule that LoxiLB refused or did not answer.");

const BUILT_IN: &[Metric] = &[
    Metric::Counter(&STORAGE_WRITES),
    Metric::Counter(&STORAGE_BYTES),
    Metric::Counter(&STORAGE_SNAPSHOTS),
    Metric::Timing(&STORAGE_SNAPSHOT_WRITE),
    Metric::Timing(&STORAGE_FSYNC),
    Metric::Counter(&STORAGE_GROUP_COMMITS),
    Metric::Counter(&STORAGE_GROUP_COMMIT_RECORDS),
    Metric::Counter(&STORAGE_ERRORS),
    Metric::Counter(&STORAGE_REPAIRS),
    Metric::Counter(&STORAGE_BACKUPS),
    Metric::Counter(&STORAGE_FALLBACKS),
    Metric::Counter(&STORAGE_BAD_RECORDS),
    Metric::Counter(&STORAGE_JOURNAL_DAMAGE),
    Metric::Gauge(&STORAGE_JOURNAL_RECORDS),
    Metric::Gauge(&MAPPING_ENTRIES),
    Metric::Counter(&CACHE_HITS),
    Metric::Counter(&CACHE_MISSES),
    Metric::Counter(&RECOVERY_ATTEMPTS),
    Metric::Counter(&RECOVERY_SUCCESSES),
    Metric::Counter(&RECOVERY_FAILURES),
    Metric::Counter(&MONITOR_PANICS),
    Metric::Gauge(&POLICY_MEMORY_PEAK),
    Metric::Gauge(&POLICY_MEMORY_LIMIT),
    Metric::Counter(&POLICY_MEMORY_REFUSED),
    Metric::Gauge(&APPLY_BACKLOG),
    Metric::Gauge(&OPERATIONS_IN_FLIGHT),
    Metric::Counter(&CASTS_REFUSED_OVERLOAD),
    Metric::Counter(&INBOX_BAD_RECORDS),
    Metric::Counter(&INBOX_SYNCS),
    Metric::Counter(&PROVIDER_CONNECTIONS_REFUSED),
    Metric::Counter(&STATUS_DOCUMENTS),
    Metric::Timing(&STATUS_UPDATE),
    Metric::Counter(&STATUS_UPDATE_RETRIES),
    Metric::Counter(&STATUS_RECORDS_GIVEN_UP),
    Metric::Counter(&STATUS_UPDATES_DEFERRED),
    Metric::Timing(&COMMIT_WAIT),
    Metric::Timing(&PROVIDER_VALIDATE),
    Metric::Timing(&PROVIDER_VALIDATE_WAIT),
    Metric::Timing(&PROVIDER_CAST),
    Metric::Counter(&COMMITS_NOTIFIED),
    Metric::Counter(&COMMITS_POLLED),
    Metric::Counter(&RULES_REPAIRED),
    Metric::Counter(&RULE_REPAIRS_FAILED),
];

static REGISTERED: Mutex<Vec<Metric>> = Mutex::new(Vec::new());

/// Adds a metric defined elsewhere to what `render` and `snapshot` show. Registering a name twice
/// keeps the first.
pub fn register(metric: Metric) {
    let mut registered = REGISTERED.lock().unwrap();
    let name = metric_name(&metric);
    if BUILT_IN.iter().chain(registered.iter()).all(|m| metric_name(m) != name) {
        registered.push(metric);
    }
}

fn metric_name(m: &Metric) -> &'static str {
    match m {
        Metric::Counter(c) => c.name,
        Metric::Gauge(g) => g.name,
        Metric::Timing(t) => t.name,
    }
}

fn each(mut f: impl FnMut(&Metric)) {
    BUILT_IN.iter().for_each(&mut f);
    REGISTERED.lock().unwrap().iter().for_each(f);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    method: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeInfoLabels {
    node: String,
    version: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s: an operation waits for Octavia's commit and LoxiLB, a swap compiles a component.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The families, and the registry that serves them with every static metric.
struct Families {
    registry: Registry,
    operations: Family<OperationLabels, FamilyCounter>,
    operation_seconds: Family<MethodLabel, Histogram, fn() -> Histogram>,
    loxilb_requests: Family<NodeLabels, FamilyCounter>,
    swaps: Family<ResultLabel, FamilyCounter>,
    node_up: Family<NodeLabel, FamilyGauge>,
    node_out_of_date: Family<NodeLabel, FamilyGauge>,
    node_master: Family<NodeLabel, FamilyGauge>,
    node_info: Family<NodeInfoLabels, FamilyGauge>,
    /// Each node's current `node_info` labels, so a changed version or role replaces the old series.
    node_info_now: Mutex<HashMap<String, NodeInfoLabels>>,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix(PREFIX.trim_end_matches('_'));
    let operations = Family::<OperationLabels, FamilyCounter>::default();
    let operation_seconds = Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
    let loxilb_requests = Family::<NodeLabels, FamilyCounter>::default();
    let swaps = Family::<ResultLabel, FamilyCounter>::default();
    let (node_up, node_out_of_date) = (Family::<NodeLabel, FamilyGauge>::default(), Family::<NodeLabel, FamilyGauge>::default());
    registry.register("operations", "Octavia operations applied, by provider method and result (ok, error, dropped).", operations.clone());
    registry.register("operation_seconds", "Time from taking an operation off its queue to its statuses being reported.", operation_seconds.clone());
    registry.register("loxilb_requests", "Requests to LoxiLB by node (API base URL) and result (ok, or the error class).", loxilb_requests.clone());
    registry.register("policy_swaps", "Policy swaps by result (ok, refused).", swaps.clone());
    registry.register("loxilb_node_up", "Whether each LoxiLB node (API base URL) answered its last request.", node_up.clone());
    registry.register(
        "loxilb_node_out_of_date",
        "Whether each LoxiLB node missed a change or lost rules and is not yet brought back to the desired rules.",
        node_out_of_date.clone(),
    );
    let (node_master, node_info) = (Family::<NodeLabel, FamilyGauge>::default(), Family::<NodeInfoLabels, FamilyGauge>::default());
    registry.register("loxilb_node_master", "Whether each LoxiLB node's HA role (GET /config/cistate/all) is MASTER.", node_master.clone());
    registry.register("loxilb_node_info", "Each LoxiLB node's version and HA role as it last told them (value 1; empty when unknown).", node_info.clone());
    registry.register_collector(Box::new(StaticMetrics));
    Families {
        registry,
        operations,
        operation_seconds,
        loxilb_requests,
        swaps,
        node_up,
        node_out_of_date,
        node_master,
        node_info,
        node_info_now: Mutex::default(),
    }
});

/// An applied (or dropped) operation: counted by method and result, its duration observed.
pub fn record_operation(method: &str, result: &str, took: Duration) {
    let f = &*FAMILIES;
    f.operations.get_or_create(&OperationLabels { method: method.to_string(), result: result.to_string() }).inc();
    f.operation_seconds.get_or_create(&MethodLabel { method: method.to_string() }).observe(took.as_secs_f64());
}

/// One request to a LoxiLB node, by its outcome (`ok`, or an error class such as `timeout`, `http_500`).
pub fn record_loxilb_request(node: &str, result: &str) {
    FAMILIES.loxilb_requests.get_or_create(&NodeLabels { node: node.to_string(), result: result.to_string() }).inc();
}

/// A LoxiLB node's state as the monitor last saw it.
pub fn record_node(state: &loxilb_api::NodeState) {
    let label = NodeLabel { node: state.base.clone() };
    FAMILIES.node_up.get_or_create(&label).set(state.answering as i64);
    FAMILIES.node_out_of_date.get_or_create(&label).set(state.out_of_date as i64);
    FAMILIES.node_master.get_or_create(&label).set(state.is_master() as i64);
    let info = NodeInfoLabels { node: state.base.clone(), version: state.version.clone().unwrap_or_default(), role: state.role.clone().unwrap_or_default() };
    let previous = FAMILIES.node_info_now.lock().unwrap().insert(state.base.clone(), info.clone());
    if let Some(previous) = previous.filter(|p| *p != info) {
        FAMILIES.node_info.remove(&previous);
    }
    FAMILIES.node_info.get_or_create(&info).set(1);
}

pub fn record_swap(result: &str) {
    FAMILIES.swaps.get_or_create(&ResultLabel { result: result.to_string() }).inc();
}

/// The statics, encoded at each scrape. Counter names keep their `_total` (the encoder adds it back);
/// a timing becomes a `_seconds` counter (the sum), a `_count` counter and `_last_seconds`/`_max_seconds`
/// gauges (a histogram would need buckets chosen per disk; last/max/mean answer "is the disk slow now").
#[derive(Debug)]
struct StaticMetrics;

impl Collector for StaticMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut result = Ok(());
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name.strip_suffix("_total").unwrap_or(name), help, None, c.metric_type())?)
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        each(|m| {
            if result.is_err() {
                return;
            }
            let secs = |us: u64| us as f64 / 1e6;
            result = match m {
                Metric::Counter(c) => counter(&mut encoder, c.name, c.help, c.get() as f64),
                Metric::Gauge(g) => gauge(&mut encoder, g.name, g.help, g.get() as f64),
                Metric::Timing(t) => (|| {
                    counter(&mut encoder, &format!("{}_seconds", t.name), t.help, secs(t.total_us()))?;
                    counter(&mut encoder, &format!("{}_count", t.name), "How many of them.", t.count() as f64)?;
                    gauge(&mut encoder, &format!("{}_last_seconds", t.name), "Duration of the latest one.", secs(t.last_us()))?;
                    gauge(&mut encoder, &format!("{}_max_seconds", t.name), "Longest since the process started.", secs(t.max_us()))
                })(),
            };
        });
        result
    }
}

/// Every metric in the OpenMetrics text format (which Prometheus scrapes; see [`CONTENT_TYPE`]).
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &FAMILIES.registry).expect("writing to a String cannot fail");
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric as JSON: `{"storage_writes_total": 12, "storage_fsync": {"count": …, "total_us": …,
/// "last_us": …, "max_us": …}, …}`.
pub fn snapshot() -> Value {
    let mut out = Map::new();
    each(|m| {
        let (name, value) = match m {
            Metric::Counter(c) => (c.name, json!(c.get())),
            Metric::Gauge(g) => (g.name, json!(g.get())),
            Metric::Timing(t) => (t.name, json!({"count": t.count(), "total_us": t.total_us(), "last_us": t.last_us(), "max_us": t.max_us()})),
        };
        out.insert(name.to_string(), value);
    });
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    static LOCAL: Counter = Counter::new("test_local_total", "A counter registered by a test.");

    #[test]
    fn render_and_snapshot_show_built_in_and_registered_metrics() {
        register(Metric::Counter(&LOCAL));
        register(Metric::Counter(&LOCAL));
        LOCAL.add(3);
        STORAGE_FSYNC.record(Duration::from_micros(1500));
        record_operation("member_create", "ok", Duration::from_millis(3));
        record_loxilb_request("http://10.0.0.2:11111", "timeout");
        let text = render();
        assert!(text.contains("# TYPE loxilb_octavia_test_local counter\nloxilb_octavia_test_local_total 3"), "{text}");
        assert!(text.contains("# TYPE loxilb_octavia_storage_fsync_seconds counter\n"), "{text}");
        assert!(text.contains("loxilb_octavia_operations_total{method=\"member_create\",result=\"ok\"} 1"), "{text}");
        assert!(text.contains("loxilb_octavia_operation_seconds_bucket{le=\"0.004\",method=\"member_create\"} 1"), "{text}");
        assert!(text.contains("loxilb_octavia_loxilb_requests_total{node=\"http://10.0.0.2:11111\",result=\"timeout\"} 1"), "{text}");
        assert_eq!(text.matches("loxilb_octavia_test_local_total 3").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with(PREFIX) && value.parse::<f64>().is_ok(), "{line}");
        }
        let json = snapshot();
        assert_eq!(json["test_local_total"], 3);
        assert!(json["storage_fsync"]["max_us"].as_u64().unwrap() >= 1500);
        assert!(json["storage_fsync"]["count"].as_u64().unwrap() >= 1);
    }
}
