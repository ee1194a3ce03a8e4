//! Process-wide counters, cheap enough to bump on every mapping change (one relaxed atomic add), rendered
//! on demand as Prometheus text or as JSON.
//!
//! The built-in metrics are statics so any module can update them without plumbing a handle through;
//! a module with metrics of its own registers `&'static` ones with [`register`] once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

// Storage (host/src/caps/storage): what the durability of the mapping costs.
pub static STORAGE_WRITES: Counter = Counter::new("storage_writes_total", "Mapping journal records appended.");
pub static STORAGE_BYTES: Counter = Counter::new("storage_bytes_written_total", "Bytes written to mapping journals, snapshots and backups.");
pub static STORAGE_SNAPSHOTS: Counter = Counter::new("storage_snapshot_writes_total", "Mapping snapshots written (journal compactions).");
pub static STORAGE_SNAPSHOT_WRITE: Timing = Timing::new("storage_snapshot_write", "Time to seal, write and fsync one mapping snapshot.");
pub static STORAGE_FSYNC: Timing = Timing::new("storage_fsync", "fsync/fdatasync calls on mapping files and their directory.");
pub static STORAGE_GROUP_COMMITS: Counter = Counter::new("storage_group_commits_total", "Journal syncs, each covering every record appended before it started.");
pub static STORAGE_GROUP_COMMIT_RECORDS: Counter = Counter::new("storage_group_commit_records_total", "Journal records made durable by group commits (divide by the commits for the batch size).");
pub static STORAGE_ERRORS: Counter = Counter::new("storage_errors_total", "Failed mapping storage operations.");
pub static STORAGE_BACKUPS: Counter = Counter::new("storage_backups_total", "Mapping snapshot backups written.");
pub static STORAGE_FALLBACKS: Counter = Counter::new("storage_fallbacks_total", "Loads that found the main snapshot corrupt or missing and used a backup.");
pub static STORAGE_BAD_RECORDS: Counter = Counter::new("storage_journal_bad_records_total", "Journal records skipped on replay because their checksum or framing was wrong.");
pub static STORAGE_JOURNAL_DAMAGE: Counter = Counter::new("storage_journal_damage_total", "Starts that found the mapping journal damaged (a segment missing or emptied, a record failing its checksum) and rebuilt the mapping from LoxiLB.");
pub static STORAGE_JOURNAL_RECORDS: Gauge = Gauge::new("storage_journal_records", "Journal records since the snapshot the mapping was loaded from or last compacted to.");

// Mapping cache and recovery: updated by the modules that see them.
pub static CACHE_HITS: Counter = Counter::new("mapping_cache_hits_total", "Mapping lookups answered from the cache.");
pub static CACHE_MISSES: Counter = Counter::new("mapping_cache_misses_total", "Mapping lookups that found nothing.");
pub static RECOVERY_ATTEMPTS: Counter = Counter::new("recovery_attempts_total", "Mapping recoveries started (startup, runtime, reconciliation).");
pub static RECOVERY_SUCCESSES: Counter = Counter::new("recovery_successes_total", "Mapping recoveries that succeeded.");
pub static RECOVERY_FAILURES: Counter = Counter::new("recovery_failures_total", "Mapping recoveries that failed.");

const BUILT_IN: &[Metric] = &[
    Metric::Counter(&STORAGE_WRITES),
    Metric::Counter(&STORAGE_BYTES),
    Metric::Counter(&STORAGE_SNAPSHOTS),
    Metric::Timing(&STORAGE_SNAPSHOT_WRITE),
    Metric::Timing(&STORAGE_FSYNC),
    Metric::Counter(&STORAGE_GROUP_COMMITS),
    Metric::Counter(&STORAGE_GROUP_COMMIT_RECORDS),
    Metric::Counter(&STORAGE_ERRORS),
    Metric::Counter(&STORAGE_BACKUPS),
    Metric::Counter(&STORAGE_FALLBACKS),
    Metric::Counter(&STORAGE_BAD_RECORDS),
    Metric::Counter(&STORAGE_JOURNAL_DAMAGE),
    Metric::Gauge(&STORAGE_JOURNAL_RECORDS),
    Metric::Counter(&CACHE_HITS),
    Metric::Counter(&CACHE_MISSES),
    Metric::Counter(&RECOVERY_ATTEMPTS),
    Metric::Counter(&RECOVERY_SUCCESSES),
    Metric::Counter(&RECOVERY_FAILURES),
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

/// Prometheus text exposition format (version 0.0.4). Timings become a `_seconds` summary without
/// quantiles (`_sum`, `_count`) plus `_last_seconds` and `_max_seconds` gauges.
pub fn render() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let secs = |us: u64| us as f64 / 1e6;
    each(|m| match m {
        Metric::Counter(c) => {
            let _ = write!(out, "# HELP {PREFIX}{0} {1}\n# TYPE {PREFIX}{0} counter\n{PREFIX}{0} {2}\n", c.name, c.help, c.get());
        }
        Metric::Gauge(g) => {
            let _ = write!(out, "# HELP {PREFIX}{0} {1}\n# TYPE {PREFIX}{0} gauge\n{PREFIX}{0} {2}\n", g.name, g.help, g.get());
        }
        Metric::Timing(t) => {
            let _ = write!(
                out,
                "# HELP {PREFIX}{0}_seconds {1}\n# TYPE {PREFIX}{0}_seconds summary\n{PREFIX}{0}_seconds_sum {2}\n{PREFIX}{0}_seconds_count {3}\n\
                 # HELP {PREFIX}{0}_last_seconds Duration of the latest one.\n# TYPE {PREFIX}{0}_last_seconds gauge\n{PREFIX}{0}_last_seconds {4}\n\
                 # HELP {PREFIX}{0}_max_seconds Longest since the process started.\n# TYPE {PREFIX}{0}_max_seconds gauge\n{PREFIX}{0}_max_seconds {5}\n",
                t.name,
                t.help,
                secs(t.total_us()),
                t.count(),
                secs(t.last_us()),
                secs(t.max_us()),
            );
        }
    });
    out
}

/// Every metric as JSON: `{"storage_writes_total": 12, "storage_fsync": {"count": …, "total_us": …,
/// "last_us": …, "max_us": …}, …}`.
pub fn snapshot() -> Value {
    let mut out = Map::new();
    each(|m| {
        let (name, value) = match m {
            Metric::Counter(c) => (c.name, json!(c.get())),
            Metric::Gauge(g) => (g.name, json!(g.get())),
            Metric::Timing(t) => (
                t.name,
                json!({"count": t.count(), "total_us": t.total_us(), "last_us": t.last_us(), "max_us": t.max_us()}),
            ),
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
        let text = render();
        assert!(text.contains("# TYPE loxilb_octavia_test_local_total counter\nloxilb_octavia_test_local_total 3\n"), "{text}");
        assert!(text.contains("# TYPE loxilb_octavia_storage_fsync_seconds summary\n"), "{text}");
        assert_eq!(text.matches("loxilb_octavia_test_local_total 3").count(), 1);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.starts_with(PREFIX) && value.parse::<f64>().is_ok(), "{line}");
        }
        let json = snapshot();
        assert_eq!(json["test_local_total"], 3);
        assert!(json["storage_fsync"]["max_us"].as_u64().unwrap() >= 1500);
        assert!(json["storage_fsync"]["count"].as_u64().unwrap() >= 1);
    }
}
