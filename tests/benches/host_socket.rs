//! The host alone, as Octavia's API would drive it over the Unix socket (issue 11, "Benchmarks"):
//! `loxilb-octavia serve` (the release binary) programming the LoxiLB simulator, with a fake
//! driver-agent whose status socket answers at once. CLIENTS threads each own a load balancer (a TCP
//! listener, a pool and four members) and, closed loop, update one member's weight after another the
//! way the provider does: a cast carrying a commit ticket, then the notice that Octavia committed (and,
//! with BENCH_VALIDATE=1, the `validate` call before the cast). An operation's latency runs from the
//! cast until its member's status reaches the status socket.
//!
//! Run: `make bench-host` (builds the release binary, then `cargo bench -p integration-tests --bench
//! host_socket`). BENCH_CLIENTS (8), BENCH_SECONDS (10, after 2 s of warm-up), BENCH_VALIDATE (0), BENCH_NODES (1),
//! LOXILB_OCTAVIA_BIN (target/release/loxilb-octavia).
//!
//! Printed: operations per second, cast→status p50/p99/max, LoxiLB requests per operation (all of
//! them, and the changing ones), get-socket reads, status documents, and the host's CPU time per
//! operation (from /proc), with the load average before and after.

use std::collections::HashMap;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use host::octavia::agent::{read_frame, write_frame};
use host::transport::unix::request;
use integration_tests::{listener, loadbalancer, member, pool};
use serde_json::{json, Value};

const MEMBERS: usize = 4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How many statuses each object has been reported with, and condvars to wait for the next: one per
/// slot of ids, so a status wakes the client waiting for it rather than every client (with one condvar the
/// harness's own wake-ups took CPU from the host it measures).
struct Reported {
    counts: Mutex<HashMap<String, u64>>,
    changed: Vec<Condvar>,
    documents: AtomicUsize,
}

impl Default for Reported {
    fn default() -> Reported {
        Reported { counts: Mutex::default(), changed: (0..64).map(|_| Condvar::new()).collect(), documents: AtomicUsize::new(0) }
    }
}

impl Reported {
    fn slot(&self, id: &str) -> &Condvar {
        let hash = id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        &self.changed[hash % self.changed.len()]
    }

    fn count(&self, id: &str) -> u64 {
        self.counts.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    /// Counts a status document's records and wakes whoever waits for them.
    fn record(&self, document: &Value) {
        self.documents.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<&str> = document
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|r| r.as_array().into_iter().flatten())
            .filter_map(|r| r["id"].as_str())
            .collect();
        let mut counts = self.counts.lock().unwrap();
        for id in &ids {
            *counts.entry(id.to_string()).or_default() += 1;
        }
        drop(counts);
        for id in ids {
            self.slot(id).notify_all();
        }
    }

    /// Waits until `id` has been reported more than `seen` times.
    fn wait_past(&self, id: &str, seen: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let changed = self.slot(id);
        let mut counts = self.counts.lock().unwrap();
        while counts.get(id).copied().unwrap_or(0) <= seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            counts = changed.wait_timeout(counts, left).unwrap().0;
        }
        true
    }
}

/// One framed request, one framed reply per connection, answered by `answer` on a few threads (the host
/// sends statuses from four; a thread per connection cost the harness a thread start per document).
fn serve_agent_socket(path: &Path, answer: impl Fn(Value) -> Value + Send + Sync + 'static) {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind a fake driver-agent socket");
    let answer = Arc::new(answer);
    for _ in 0..4 {
        let (listener, answer) = (listener.try_clone().expect("share the listener"), Arc::clone(&answer));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Ok(request) = read_frame(&mut stream) {
                    let _ = write_frame(&mut stream, &answer(request));
                }
            }
        });
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of /proc/PID/stat; after the name, state is index 0, so they are 11 and 12.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

struct Host {
    child: Child,
    dir: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lb_id(c: usize) -> String {
    format!("beefbeef-0000-4000-8000-{c:012}")
}

fn member_id(c: usize, m: usize) -> String {
    format!("beefbeef-0000-4000-9000-{:012}", c * 100 + m)
}

fn pool_id(c: usize) -> String {
    format!("beefbeef-0000-4000-a000-{c:012}")
}

fn member_of(c: usize, m: usize, weight: u32) -> Value {
    member(&member_id(c, m), &pool_id(c), &format!("10.60.{c}.{}", m + 1), 8080, weight)
}

/// The provider's way: validate (optionally), cast with a commit ticket, then the commit notice.
fn send(socket: &Path, method: &str, mut args: Value, ticket: &str, validate: bool) {
    if validate {
        let answer = request(socket, "call", "validate", json!({"operation": method, "args": args})).expect("validate");
        assert_eq!(answer, Ok(Value::Null), "validate refused {method}");
    }
    args["commit_ticket"] = json!(ticket);
    let answer = request(socket, "cast", method, args).expect("cast");
    assert_eq!(answer, Ok(Value::Null), "cast refused {method}");
    let answer = request(socket, "notice", "committed", json!({"tickets": [ticket]})).expect("notice");
    assert_eq!(answer, Ok(Value::Null), "notice refused");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let clients: usize = env_or("BENCH_CLIENTS", 8);
    let seconds: f64 = env_or("BENCH_SECONDS", 10.0);
    let validate = env_or("BENCH_VALIDATE", 0u8) == 1;
    // A LoxiLB cluster of this many simulators (every change goes to each).
    let nodes: usize = env_or("BENCH_NODES", 1usize).max(1);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var("LOXILB_OCTAVIA_BIN").map(PathBuf::from).unwrap_or_else(|_| repo.join("target/release/loxilb-octavia"));
    assert!(bin.exists(), "{} is missing: `cargo build --release -p host` (make bench-host does)", bin.display());

    let sims: Vec<loxilb_sim::Simulator> = (0..nodes).map(|_| loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).expect("simulator")).collect();
    let sim = &sims[0];
    let dir = std::env::temp_dir().join(format!("loxilb-bench-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let reported = Arc::new(Reported::default());
    let gets = Arc::new(AtomicUsize::new(0));
    {
        let reported = Arc::clone(&reported);
        serve_agent_socket(&dir.join("status.sock"), move |document| {
            reported.record(&document);
            json!({"status_code": 200})
        });
    }
    serve_agent_socket(&dir.join("stats.sock"), |_| json!({"status_code": 200}));
    {
        let gets = Arc::clone(&gets);
        // Every operation is noticed: a read here means the host fell back to asking.
        serve_agent_socket(&dir.join("get.sock"), move |_| {
            gets.fetch_add(1, Ordering::Relaxed);
            json!({})
        });
    }
    let conf = dir.join("octavia.conf");
    std::fs::write(
        &conf,
        format!(
            "[driver_agent]\nstatus_socket_path = {d}/status.sock\nstats_socket_path = {d}/stats.sock\nget_socket_path = {d}/get.sock\n\n\
             [driver_loxilb]\napi_endpoints = {url}\ntransport = unix\nsocket_path = {d}/host.sock\nadmin_socket_path = {d}/admin.sock\n\
             mapping_storage_path = {d}/mappings.json\n",
            d = dir.display(),
            url = sims.iter().map(|s| s.url()).collect::<Vec<_>>().join(",")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("host.log")).unwrap();
    let child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start loxilb-octavia serve");
    let host = Host { child, dir: dir.clone() };
    let socket = dir.join("host.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the host did not start serving: {}", std::fs::read_to_string(dir.join("host.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }

    // One load balancer per client, created as Octavia would (a graph create).
    for c in 0..clients {
        let members = (0..MEMBERS).map(|m| member_of(c, m, 1)).collect();
        let lb = lb_id(c);
        let p = pool(&pool_id(c), &lb, Some(&format!("beefbeef-0000-4000-b000-{c:012}")), "TCP", members, None);
        let l = listener(&format!("beefbeef-0000-4000-b000-{c:012}"), &lb, "TCP", 80, Some(p));
        let seen = reported.count(&lb);
        send(
            &socket,
            "loadbalancer_create",
            json!({"loadbalancer_id": lb, "loadbalancer": loadbalancer(&lb, &format!("10.50.0.{}", c + 1), vec![l])}),
            &format!("setup-{c}"),
            validate,
        );
        assert!(reported.wait_past(&lb, seen, Duration::from_secs(30)), "load balancer {c} was not reported");
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut threads = Vec::new();
    for c in 0..clients {
        let (socket, reported, measuring, stop, latencies) =
            (socket.clone(), Arc::clone(&reported), Arc::clone(&measuring), Arc::clone(&stop), Arc::clone(&latencies));
        threads.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let m = (n as usize) % MEMBERS;
                let weight = 1 + (n % 7) as u32;
                let id = member_id(c, m);
                let args = json!({"loadbalancer_id": lb_id(c), "old_member": member_of(c, m, 1), "new_member": {"member_id": id, "weight": weight}});
                let seen = reported.count(&id);
                let started = Instant::now();
                send(&socket, "member_update", args, &format!("{c}-{n}"), validate);
                assert!(reported.wait_past(&id, seen, Duration::from_secs(60)), "member_update {c}-{n} was not reported");
                if measuring.load(Ordering::Relaxed) {
                    mine.push(started.elapsed());
                }
                n += 1;
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let load_before = loadavg();
    sims.iter().for_each(|s| s.clear_requests());
    let (gets_before, documents_before) = (gets.load(Ordering::Relaxed), reported.documents.load(Ordering::Relaxed));
    let cpu_before = cpu_seconds(host.child.id());
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(host.child.id()) - cpu_before;
    let loxilb = sim.requests();
    let (gets_during, documents) = (gets.load(Ordering::Relaxed) - gets_before, reported.documents.load(Ordering::Relaxed) - documents_before);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    let ops = latencies.len();
    let changing = loxilb.iter().filter(|r| r.method != "GET").count();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "host_socket: {clients} clients, {nodes} LoxiLB node(s), member_update (cast + commit notice{}), {:.1} s measured",
        if validate { " after validate" } else { "" },
        elapsed.as_secs_f64()
    );
    println!("  {:.0} ops/s ({ops} operations)", ops as f64 / elapsed.as_secs_f64());
    println!(
        "  cast -> status: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "  LoxiLB requests per operation (to the first node): {:.3} ({} changing: {:.3})",
        loxilb.len() as f64 / ops.max(1) as f64,
        changing,
        changing as f64 / ops.max(1) as f64
    );
    println!("  status documents: {documents} ({:.2} operations each); get-socket reads: {gets_during}", ops as f64 / documents.max(1) as f64);
    println!("  host CPU: {:.3} ms per operation ({:.2} CPUs)", cpu * 1000.0 / ops.max(1) as f64, cpu / elapsed.as_secs_f64());
    println!("  load average before/after: {load_before} / {}", loadavg());
}
