//! What durability of the ID mapping costs, through the real policy component: per-mutation cost at 1k,
//! 10k and 100k mappings (guest translation and JSON encoding, journal append, fdatasync, and the guest's
//! periodic compaction into a new snapshot, amortized), the time to load 100k mappings, and how soon
//! `loxilb-octavia serve` (the release binary) answers over each file and validates a first operation, with
//! its resident memory.
//!
//! Run: `cargo bench -p host --bench storage` (`-- --quick` for 1k and 10k only, `-- --size N` for N only;
//! `LOXILB_BENCH_DIR` picks the disk, default the system temp dir).
//!
//! A mutation is one `member_update` (a weight change): the guest re-renders the listener's rule, POSTs
//! it to a LoxiLB that answers success at once, and journals two records (the member and the listener's
//! programmed rule). It is durable when `sync_to` returns for its records. Three ways of submitting:
//! - serial: handle, then sync, one operation at a time (one fsync per operation);
//! - 8 submitters: eight threads share the sandbox (handle under its lock) and sync outside it, as
//!   eight apply workers would; concurrent syncs share one fdatasync (group commit);
//! - pipelined: one thread applies and hands each outcome to `storage::Durability`, which releases it
//!   (where the host would report it to Octavia) once an fdatasync covers it; every fdatasync covers
//!   whatever was applied while the previous one ran and during its 0.5 ms commit delay.
//!
//! A "not durable" line (the same operations, journaled but never waited for) shows what the policy
//! itself costs, so the difference is what durability adds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host::loxilb::LoxiTransport;
use host::metrics;
use host::runtime::bindings::octavia::Operation;
use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::{Limits, Sandbox, Wiring};
use host::storage::{Durability, FileStore, MappingStore, Snapshot};
use serde_json::{json, Value};

/// Mappings per load balancer tree: the LB, a listener, a pool, four members and a health monitor.
const PER_TREE: usize = 8;
const MEMBERS: usize = 4;

struct Ok200;

impl LoxiTransport for Ok200 {
    fn request(&self, method: &str, _: &str, _: Option<&str>) -> Result<(u16, String), String> {
        Ok((200, if method == "GET" { r#"{"lbAttr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
    }
}

/// The file store, plus a switch that makes the guest compact on its next change and timers for what
/// the host does while loading.
struct Probe {
    store: Arc<FileStore>,
    compact_now: AtomicBool,
    read_ns: AtomicU64,
    replay_ns: AtomicU64,
    snapshot_bytes: AtomicU64,
    /// Time spent in `write_snapshot` (the operation waits for it; the write itself runs after).
    handoff_ns: AtomicU64,
}

impl Probe {
    fn new(store: Arc<FileStore>) -> Arc<Probe> {
        Arc::new(Probe {
            store,
            compact_now: AtomicBool::new(false),
            read_ns: AtomicU64::new(0),
            replay_ns: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            handoff_ns: AtomicU64::new(0),
        })
    }
}

impl MappingStore for Probe {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        let t = Instant::now();
        let r = self.store.read_snapshot();
        self.read_ns.store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        self.snapshot_bytes.store(data.len() as u64, Ordering::Relaxed);
        COMPACTIONS.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let r = self.store.write_snapshot(data);
        self.handoff_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn write_snapshot_with(&self, encode: host::storage::SnapshotEncoder) -> Result<(), String> {
        COMPACTIONS.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let r = self.store.write_snapshot_with(encode);
        self.handoff_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.store.append(record)
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        let t = Instant::now();
        let r = self.store.replay();
        self.replay_ns.store(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
    fn journal_length(&self) -> u32 {
        if self.compact_now.swap(false, Ordering::Relaxed) {
            return u32::MAX;
        }
        self.store.journal_length()
    }
    fn sync(&self) -> Result<(), String> {
        self.store.sync()
    }
    fn snapshot_in_flight(&self) -> bool {
        self.store.snapshot_in_flight()
    }
    fn appended(&self) -> u64 {
        self.store.appended()
    }
    fn sync_to(&self, seq: u64) -> Result<(), String> {
        self.store.sync_to(seq)
    }
}

fn uuid(kind: u32, tree: usize, n: usize) -> String {
    format!("{kind:08x}-{:04x}-4000-8000-{:012x}", n, tree)
}

fn vip(tree: usize) -> String {
    format!("10.{}.{}.{}", 1 + tree / 65_536, tree / 256 % 256, tree % 256)
}

fn member(tree: usize, m: usize, weight: u32) -> Value {
    json!({"member_id": uuid(4, tree, m), "pool_id": uuid(3, tree, 0), "address": format!("192.168.{}.{}", tree % 250, 10 + m),
           "protocol_port": 8080, "weight": weight, "admin_state_up": true, "backup": false})
}

/// One load balancer tree in octavia-lib's `to_dict(recurse=True)` shape.
fn tree(t: usize) -> Operation {
    let (lb, listener, pool) = (uuid(1, t, 0), uuid(2, t, 0), uuid(3, t, 0));
    let members: Vec<Value> = (0..MEMBERS).map(|m| member(t, m, 1)).collect();
    let lb = json!({"loadbalancer_id": lb, "name": format!("bench-{t}"), "vip_address": vip(t), "admin_state_up": true, "pools": [],
        "listeners": [{"listener_id": listener, "loadbalancer_id": lb, "protocol": "TCP", "protocol_port": 80, "admin_state_up": true,
            "connection_limit": -1, "timeout_client_data": 50000, "allowed_cidrs": ["0.0.0.0/0"], "default_pool_id": pool,
            "default_pool": {"pool_id": pool, "loadbalancer_id": lb, "listener_id": listener, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                "admin_state_up": true, "members": members,
                "healthmonitor": {"healthmonitor_id": uuid(5, t, 0), "pool_id": pool, "type": "TCP", "delay": 5, "timeout": 3,
                    "max_retries": 2, "max_retries_down": 3, "admin_state_up": true}}}]});
    host::convert::operation("loadbalancer_create", &json!({"loadbalancer": lb})).expect("tree converts")
}

/// The i-th mutation: every member of every tree in turn changes weight (1 → 2, then back), so every
/// update changes the rendered rule, and concurrent submitters never race on one member.
fn mutation(trees: usize, i: usize) -> Operation {
    let (t, m, round) = (i % trees, i / trees % MEMBERS, i / (trees * MEMBERS));
    let (old, new) = if round % 2 == 0 { (1, 2) } else { (2, 1) };
    let args = json!({"old_member": member(t, m, old), "new_member": {"member_id": uuid(4, t, m), "weight": new}});
    host::convert::operation("member_update", &args).expect("update converts")
}

fn policy() -> Arc<host::runtime::LoadedPolicy> {
    host::runtime::load(&host::runtime::default_policy_path()).expect("the default policy component")
}

fn start(policy: &Arc<host::runtime::LoadedPolicy>, probe: &Arc<Probe>) -> Sandbox {
    let mapping = host::app::load_mapping(Arc::clone(probe) as Arc<dyn MappingStore>).expect("mapping loads");
    let wiring = Wiring { loxilb: Arc::new(Ok200), mapping, remove_orphans: false, served: Default::default(), log_target: "bench".into() };
    // 100k mappings need more than the 256 MiB default: loading and then compacting takes ~320 MiB.
    let limits = Limits { memory_bytes: 1 << 30, call_timeout: Duration::from_secs(600), ..Limits::default() };
    Sandbox::new(Arc::clone(policy), wiring, limits, Settings { nat_mode: "fullnat".into(), bgp: false }).expect("policy starts")
}

fn handle(sandbox: &mut Sandbox, op: &Operation) {
    let outcome = sandbox.handle(op).expect("no trap");
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
}

fn bench_dir(tag: &str) -> PathBuf {
    let base = std::env::var_os("LOXILB_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("loxilb-storage-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).map(|e| e.metadata().unwrap().len()).sum()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Run {
    ops: usize,
    elapsed: Duration,
    fsyncs: u64,
    records: u64,
    compactions: u64,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_op(&self) -> Duration {
        self.elapsed / self.ops as u32
    }
    fn line(&self, label: &str) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        format!(
            "{label:<14} {:>8.1} µs/op   {:>6.0} ops/s   {:>5} ops/fsync   {} compactions in {} ops   latency p50 {:.0} µs, p99 {:.0} µs",
            us(self.per_op()),
            self.ops as f64 / self.elapsed.as_secs_f64(),
            if self.fsyncs == 0 { "-".to_string() } else { format!("{:.1}", self.ops as f64 / self.fsyncs as f64) },
            self.compactions,
            self.ops,
            us(percentile(&l, 0.5)),
            us(percentile(&l, 0.99)),
        )
    }
}

/// Compactions handed to the store (each snapshot is written after the operation that asked for it).
static COMPACTIONS: AtomicU64 = AtomicU64::new(0);

fn counters() -> (u64, u64, u64) {
    (metrics::STORAGE_GROUP_COMMITS.get(), metrics::STORAGE_WRITES.get(), COMPACTIONS.load(Ordering::Relaxed))
}

fn finish(ops: usize, start: Instant, before: (u64, u64, u64), latencies: Vec<Duration>) -> Run {
    let elapsed = start.elapsed();
    let after = counters();
    Run { ops, elapsed, fsyncs: after.0 - before.0, records: after.1 - before.1, compactions: after.2 - before.2, latencies }
}

/// The floor: the same operations, journaled but never waited for (what the policy itself costs).
fn undurable(sandbox: &mut Sandbox, trees: usize, from: usize, ops: usize) -> Run {
    let before = counters();
    let mut latencies = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in from..from + ops {
        let op = mutation(trees, i);
        let t = Instant::now();
        handle(sandbox, &op);
        latencies.push(t.elapsed());
    }
    finish(ops, start, before, latencies)
}

fn serial(sandbox: &mut Sandbox, store: &FileStore, trees: usize, from: usize, ops: usize) -> Run {
    let before = counters();
    let mut latencies = Vec::with_capacity(ops);
    let start = Instant::now();
    for i in from..from + ops {
        let t = Instant::now();
        handle(sandbox, &mutation(trees, i));
        store.sync().unwrap();
        latencies.push(t.elapsed());
    }
    finish(ops, start, before, latencies)
}

fn submitters(sandbox: &Mutex<Sandbox>, store: &FileStore, trees: usize, from: usize, ops: usize, threads: usize) -> Run {
    let before = counters();
    let next = AtomicUsize::new(from);
    let latencies = Mutex::new(Vec::with_capacity(ops));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= from + ops {
                    return;
                }
                let op = mutation(trees, i);
                let t = Instant::now();
                let seq = {
                    let mut sandbox = sandbox.lock().unwrap();
                    handle(&mut sandbox, &op);
                    store.appended()
                };
                store.sync_to(seq).unwrap();
                latencies.lock().unwrap().push(t.elapsed());
            });
        }
    });
    finish(ops, start, before, latencies.into_inner().unwrap())
}

fn pipelined(sandbox: &mut Sandbox, store: &Arc<FileStore>, trees: usize, from: usize, ops: usize) -> Run {
    let before = counters();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(ops)));
    let start = Instant::now();
    {
        let mapping = Arc::clone(sandbox.mapping());
        let durability =
            Durability::start(Arc::clone(store) as Arc<dyn MappingStore>, Durability::DEFAULT_COMMIT_DELAY, Box::new(move || mapping.write_snapshot()));
        for i in from..from + ops {
            let op = mutation(trees, i);
            let t = Instant::now();
            handle(sandbox, &op);
            let latencies = Arc::clone(&latencies);
            durability.after(store.appended(), move |durable| {
                durable.unwrap();
                latencies.lock().unwrap().push(t.elapsed());
            });
        }
        // Dropping it waits for the last outcome to be released.
    }
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    finish(ops, start, before, latencies)
}

/// Raw fdatasync latency of a small append on the bench disk, for context.
fn disk_fsync(dir: &Path) -> (Duration, Duration) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("fsync-probe")).unwrap();
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            f.write_all(&[b'x'; 200]).unwrap();
            let t = Instant::now();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

struct Loaded {
    total: Duration,
    open: Duration,
    read: Duration,
    replay: Duration,
    mappings: u32,
    journal: u32,
    /// The first `desired-rules` after the load: it renders every listener, decoding nearly every object
    /// the load left undecoded (what the first reconciliation or health poll pays).
    first_render: Duration,
}

fn load(policy: &Arc<host::runtime::LoadedPolicy>, path: &Path) -> Loaded {
    let t = Instant::now();
    let store = Arc::new(FileStore::open(path).unwrap());
    let open = t.elapsed();
    let journal = store.journal_length();
    let probe = Probe::new(store);
    let t = Instant::now();
    let mut sandbox = start(policy, &probe);
    let total = open + t.elapsed();
    let t = Instant::now();
    sandbox.desired_rules().expect("rules render");
    let first_render = t.elapsed();
    Loaded {
        total,
        open,
        read: Duration::from_nanos(probe.read_ns.load(Ordering::Relaxed)),
        replay: Duration::from_nanos(probe.replay_ns.load(Ordering::Relaxed)),
        mappings: sandbox.mapping().len() as u32,
        journal,
        first_render,
    }
}

/// Five loads of the same store: the median one, and the fastest and slowest totals. On a VM the first
/// touch of freshly freed memory is sometimes slow (the hypervisor backs it again), so single loads vary.
fn load_five(policy: &Arc<host::runtime::LoadedPolicy>, path: &Path) -> (Loaded, Duration, Duration) {
    let mut loads: Vec<Loaded> = (0..5).map(|_| load(policy, path)).collect();
    loads.sort_by_key(|l| l.total);
    let (min, max) = (loads[0].total, loads[4].total);
    (loads.swap_remove(2), min, max)
}

fn report_load_five(label: &str, (median, min, max): &(Loaded, Duration, Duration)) {
    report_load(&format!("{label}, median of 5 (min {:.1} ms, max {:.1} ms)", min.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3), median);
}

fn report_load(label: &str, l: &Loaded) {
    println!(
        "  load {label}: {:.1} ms for {} mappings + {} journal records (open {:.1} ms, host read+verify snapshot {:.1} ms, host read journal {:.1} ms, host index + policy instance {:.1} ms); then the first desired-rules {:.1} ms",
        l.total.as_secs_f64() * 1e3,
        l.mappings,
        l.journal,
        l.open.as_secs_f64() * 1e3,
        l.read.as_secs_f64() * 1e3,
        l.replay.as_secs_f64() * 1e3,
        (l.total - l.open - l.read - l.replay).as_secs_f64() * 1e3,
        l.first_render.as_secs_f64() * 1e3,
    );
}

/// The same load as the first of a new process, as after a restart: its memory has not been touched
/// before. (On a VM whose balloon reports free memory to the hypervisor, that memory is backed again on
/// first touch; 2 MiB pages more slowly than 4 KiB ones.)
fn first_load_in_a_new_process(path: &Path) {
    print!("  first load in a new process:");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    let exe = std::env::current_exe().expect("the bench's own path");
    let status = std::process::Command::new(exe).arg("--load").arg(path).arg("--first").status().expect("the bench runs again");
    assert!(status.success(), "the load in a new process failed: {status}");
}

/// `loxilb-octavia serve` (the release binary) started over a copy of `path`, against a LoxiLB simulator:
/// how long until its provider socket answers a call, and its resident memory a few seconds later.
fn serve_start(path: &Path) {
    let dir = path.parent().expect("the mapping's directory").join("serve");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("loxilb-mappings.json");
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_file() && name.starts_with("loxilb-mappings.json") && !name.contains("backup") {
            std::fs::copy(entry.path(), dir.join(&name)).unwrap();
        }
    }
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let socket = dir.join("host.sock");
    let config = dir.join("host.conf");
    std::fs::write(
        &config,
        format!(
            "[driver_loxilb]\napi_endpoints = {}\ntransport = unix\nsocket_path = {}\nadmin_socket_path = {}\nmapping_storage_path = {}\n",
            sim.url(),
            socket.display(),
            dir.join("admin.sock").display(),
            mapping.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loxilb-octavia"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("loxilb-octavia starts");
    let answered = loop {
        if host::transport::unix::request(&socket, "call", "get_supported_flavor_metadata", json!({})).is_ok_and(|r| r.is_ok()) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the host did not answer within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    // What an operation arriving right then waits for: the policy (validating it needs the policy and the
    // mapping, as applying it does).
    let args = json!({"old_member": member(0, 0, 1), "new_member": {"member_id": uuid(4, 0, 0), "weight": 3}});
    let validated = host::transport::unix::request(&socket, "call", "validate", json!({"operation": "member_update", "args": args}));
    assert!(validated.as_ref().is_ok_and(|r| r.is_ok()), "the first operation validates: {validated:?}");
    let first_operation = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?").trim_start_matches("VmRSS:").trim().to_string();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "  serve over this file: the provider socket answers {:.0} ms after the start, an operation is validated {:.0} ms after it; resident memory 3 s later {rss}",
        answered.as_secs_f64() * 1e3,
        first_operation.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One compaction, forced on the next mutation: what the operation waited for (the guest's part and the
/// host's hand-off), and the snapshot write that followed off its path.
struct Compaction {
    on_path: Duration,
    handoff: Duration,
    write: Duration,
}

impl Compaction {
    fn run(sandbox: &mut Sandbox, probe: &Probe, op: &Operation) -> Compaction {
        // The compaction is forced; one still written from before would defer it (as in service).
        probe.store.finish_snapshot().expect("the previous snapshot is written");
        let (handoff, written) = (probe.handoff_ns.load(Ordering::Relaxed), metrics::STORAGE_SNAPSHOT_WRITE.total_us());
        let compactions = COMPACTIONS.load(Ordering::Relaxed);
        probe.compact_now.store(true, Ordering::Relaxed);
        let t = Instant::now();
        handle(sandbox, op);
        let on_path = t.elapsed();
        // An operation that changes nothing journals nothing, and nothing is compacted.
        assert_eq!(COMPACTIONS.load(Ordering::Relaxed), compactions + 1, "the operation compacts the mapping");
        probe.store.finish_snapshot().expect("the snapshot is written");
        Compaction {
            on_path,
            handoff: Duration::from_nanos(probe.handoff_ns.load(Ordering::Relaxed) - handoff),
            write: Duration::from_micros(metrics::STORAGE_SNAPSHOT_WRITE.total_us() - written),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{:.0} ms on the operation's path (guest {:.0} ms, host hand-off {:.0} ms), then written in the background in {:.0} ms (seal+write+fsync)",
            self.on_path.as_secs_f64() * 1e3,
            (self.on_path - self.handoff).as_secs_f64() * 1e3,
            self.handoff.as_secs_f64() * 1e3,
            self.write.as_secs_f64() * 1e3
        )
    }
}

/// Journal records between two compactions at `n` mappings, as the policy decides.
fn compaction_period(n: usize) -> usize {
    (1..).find(|&r| host::mapping::compaction_due(r, n)).unwrap() as usize - 1
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `-- --load PATH`: only time loads of an existing store (a copy of an operator's, or one kept by
    // LOXILB_BENCH_KEEP=1).
    if let Some(path) = args.iter().position(|a| a == "--load").and_then(|i| args.get(i + 1)) {
        let policy = policy();
        // `--first`: one load, the first of this process (how a restarted host loads).
        let times = if args.iter().any(|a| a == "--first") { 1 } else { 5 };
        for _ in 0..times {
            report_load(path, &load(&policy, Path::new(path)));
        }
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `-- --size N`: one size only (100000 to look at the largest alone).
    let one = args.iter().position(|a| a == "--size").and_then(|i| args.get(i + 1)).map(|n| n.parse::<usize>().expect("--size takes a number of mappings"));
    let sizes: &[usize] = match &one {
        Some(n) => std::slice::from_ref(n),
        None if quick => &[1_000, 10_000],
        None => &[1_000, 10_000, 100_000],
    };
    let policy = policy();
    let probe_dir = bench_dir("disk");
    let (p50, p99) = disk_fsync(&probe_dir);
    let _ = std::fs::remove_dir_all(&probe_dir);
    println!(
        "mapping storage bench: {} CPUs; disk fdatasync of a 200-byte append: p50 {:.0} µs, p99 {:.0} µs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        us(p50),
        us(p99)
    );
    println!("mutation = member_update through the policy component (2 journal records); durable = sync_to returned for it\n");

    for &n in sizes {
        let trees = n / PER_TREE;
        let dir = bench_dir(&n.to_string());
        let path = dir.join("loxilb-mappings.json");
        let store = Arc::new(FileStore::open(&path).unwrap());
        let probe = Probe::new(Arc::clone(&store));
        let mut sandbox = start(&policy, &probe);
        let t = Instant::now();
        for tree_index in 0..trees {
            handle(&mut sandbox, &tree(tree_index));
        }
        store.sync().unwrap();
        let populated = t.elapsed();

        // One compaction on its own, to see what it costs at this size.
        let compaction = Compaction::run(&mut sandbox, &probe, &mutation(trees, 0));
        let snapshot = std::fs::metadata(&path).unwrap().len();
        println!(
            "{n} mappings ({trees} trees, populated in {:.1} s): snapshot {:.1} MB; one compaction {}; every {} records",
            populated.as_secs_f64(),
            snapshot as f64 / 1e6,
            compaction.describe(),
            compaction_period(n)
        );

        // Right after that compaction the journal is empty, so a window of one compaction period (in
        // operations) ends with exactly one compaction: its cost is amortized as it is in service.
        let records_per_op = 2;
        let period = compaction_period(n) / records_per_op + 1;
        let mut from = 1;
        // A whole period, like the windows below: at 100k mappings the first ~2,000 operations find the
        // policy's kept entries still filling, not yet given up as they are from then on (the steady
        // state, ~50 % dearer per operation).
        let floor_ops = period;
        let f = undurable(&mut sandbox, trees, from, floor_ops);
        from += floor_ops;
        store.sync().unwrap();
        println!("  {}   (no fsync waited for: what the operation costs in the policy and the host)", f.line("not durable"));
        let serial_ops = period.min(2_000);
        Compaction::run(&mut sandbox, &probe, &mutation(trees, from));
        from += 1;
        let s = serial(&mut sandbox, &store, trees, from, serial_ops);
        from += serial_ops;
        assert_eq!(s.records as usize, serial_ops * records_per_op, "every mutation journals two records");
        // The serial window may be shorter than a compaction period: add its share of one.
        let serial_amortized = if s.compactions == 0 { s.per_op() + compaction.on_path / period as u32 } else { s.per_op() };
        println!("  {}   => amortized {:.0} µs/op", s.line("serial"), us(serial_amortized));

        Compaction::run(&mut sandbox, &probe, &mutation(trees, from));
        from += 1;
        let shared = Mutex::new(sandbox);
        let c = submitters(&shared, &store, trees, from, period, 8);
        from += period;
        println!("  {}", c.line("8 submitters"));
        let mut sandbox = shared.into_inner().unwrap();

        Compaction::run(&mut sandbox, &probe, &mutation(trees, from));
        from += 1;
        let p = pipelined(&mut sandbox, &store, trees, from, period);
        from += period;
        println!("  {}", p.line("pipelined"));
        assert_eq!(p.compactions, 1, "a window of one compaction period started right after one ends with one");

        // Load: right after a compaction, and with the journal as long as it gets (one operation short of
        // the next compaction). The window above ends with a compaction, but operations after it journal
        // again, so one more is forced (and waited for) here.
        Compaction::run(&mut sandbox, &probe, &mutation(trees, from));
        from += 1;
        store.sync().unwrap();
        drop(sandbox);
        drop(probe);
        drop(store);
        let just_compacted = load_five(&policy, &path);
        assert!(just_compacted.0.journal <= 2, "a load just after a compaction replays {} journal records", just_compacted.0.journal);
        report_load_five("just compacted", &just_compacted);
        first_load_in_a_new_process(&path);
        {
            let store = Arc::new(FileStore::open(&path).unwrap());
            let probe = Probe::new(Arc::clone(&store));
            let mut sandbox = start(&policy, &probe);
            probe.compact_now.store(true, Ordering::Relaxed);
            handle(&mut sandbox, &mutation(trees, from));
            from += 1;
            let fill = pipelined(&mut sandbox, &store, trees, from, period - 1);
            from += period - 1;
            assert_eq!((fill.compactions, fill.records as usize), (0, 2 * (period - 1)));
        }
        let journal = dir_bytes(&dir, "loxilb-mappings.json.journal");
        report_load_five(&format!("longest journal ({:.1} MB)", journal as f64 / 1e6), &load_five(&policy, &path));
        first_load_in_a_new_process(&path);
        {
            // A compaction as in service after a restart: over a loaded file, after the first
            // reconciliation has read every entry and decoded every object (all within the 1 GiB cap).
            let store = Arc::new(FileStore::open(&path).unwrap());
            let probe = Probe::new(Arc::clone(&store));
            let mut sandbox = start(&policy, &probe);
            sandbox.desired_rules().expect("rules render");
            let compaction = Compaction::run(&mut sandbox, &probe, &mutation(trees, from));
            println!("  one compaction after a load and a full render: {}", compaction.describe());
            // The process's high-water mark (`policy_memory_peak_bytes`): sizes run smallest first, so at
            // each size it is what that size's full render took at most.
            println!("  policy memory at most (a full render included): {:.0} MiB", host::metrics::POLICY_MEMORY_PEAK.get() as f64 / (1 << 20) as f64);
        }
        serve_start(&path);
        println!();
        if std::env::var_os("LOXILB_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
