//! Shared pieces of the integration tests: where the built components are, a recording LoxiLB, Octavia
//! objects as octavia-lib's `to_dict(recurse=True)` renders them, and sandboxes over them.

pub mod pki;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use host::loxilb::LoxiTransport;
use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::{Limits, Sandbox, Wiring};
use host::storage::{MappingStore, MemoryStore, Snapshot};
use serde_json::{json, Value};

/// The default policy component: the file the host's build script built into the binary (or
/// `LOXILB_POLICY`).
pub fn default_policy() -> PathBuf {
    let path = host::runtime::default_policy_path();
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// One request a policy made: method, path, JSON body.
pub type Request = (String, String, Option<Value>);

/// A LoxiLB that records every request and answers success (an empty list for GETs).
#[derive(Default)]
pub struct RecordingLoxi {
    pub requests: Mutex<Vec<Request>>,
}

impl RecordingLoxi {
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl LoxiTransport for RecordingLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let body = body.map(|b| serde_json::from_str(b).expect("policies send JSON"));
        self.requests.lock().unwrap().push((method.to_string(), path.to_string(), body));
        Ok((200, if method == "GET" { r#"{"lbAttr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
    }
}

pub fn settings() -> Settings {
    Settings { nat_mode: "fullnat".into(), bgp: false }
}

pub fn sandbox_with(path: &std::path::Path, loxilb: Arc<dyn LoxiTransport>, storage: Arc<dyn MappingStore>) -> Sandbox {
    sandbox_with_settings(path, loxilb, storage, settings())
}

/// `sandbox_with`, the policy configured with `settings`.
pub fn sandbox_with_settings(path: &std::path::Path, loxilb: Arc<dyn LoxiTransport>, storage: Arc<dyn MappingStore>, settings: Settings) -> Sandbox {
    let policy = host::runtime::load(path).expect("policy loads");
    let mapping = host::app::load_mapping(storage).expect("mapping loads");
    let wiring = Wiring { loxilb, mapping, remove_orphans: false, served: Default::default(), log_target: "test".into() };
    Sandbox::new(policy, wiring, Limits::default(), settings).expect("policy starts")
}

/// A service over the default policy programming `loxilb`, with no driver-agent (statuses recorded).
pub fn service_on(loxilb: &Arc<dyn LoxiTransport>) -> Arc<host::service::Service> {
    let sandbox = sandbox_with(&default_policy(), Arc::clone(loxilb), Arc::new(MemoryStore::default()));
    host::service::Service::new(sandbox, None, Arc::new(host::octavia::status::RecordingSink::default()), std::time::Duration::from_secs(1))
}

/// `n` simulators as one LoxiLB cluster (every change goes to each), and a service programming it.
pub fn cluster_service(n: usize) -> (Vec<loxilb_sim::Simulator>, Arc<dyn LoxiTransport>, Arc<host::service::Service>) {
    let nodes: Vec<loxilb_sim::Simulator> = (0..n).map(|_| loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap()).collect();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(host::loxilb::HttpLoxi::new(nodes.iter().map(|n| n.url()).collect(), std::time::Duration::from_secs(2)));
    let service = service_on(&loxilb);
    (nodes, loxilb, service)
}

pub fn sandbox(loxilb: Arc<dyn LoxiTransport>) -> Sandbox {
    sandbox_with(&default_policy(), loxilb, Arc::new(MemoryStore::default()))
}

pub fn member(id: &str, pool: &str, address: &str, port: u16, weight: u32) -> Value {
    json!({"member_id": id, "pool_id": pool, "address": address, "protocol_port": port, "weight": weight, "admin_state_up": true, "backup": false})
}

pub fn monitor(id: &str, pool: &str, kind: &str) -> Value {
    json!({"healthmonitor_id": id, "pool_id": pool, "type": kind, "delay": 5, "timeout": 3, "max_retries": 2, "max_retries_down": 3, "admin_state_up": true})
}

pub fn pool(id: &str, lb: &str, listener: Option<&str>, protocol: &str, members: Vec<Value>, hm: Option<Value>) -> Value {
    let mut p = json!({"pool_id": id, "loadbalancer_id": lb, "protocol": protocol, "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true, "members": members});
    if let Some(l) = listener {
        p["listener_id"] = json!(l);
    }
    if let Some(hm) = hm {
        p["healthmonitor"] = hm;
    }
    p
}

pub fn listener(id: &str, lb: &str, protocol: &str, port: u16, pool: Option<Value>) -> Value {
    let mut l = json!({"listener_id": id, "loadbalancer_id": lb, "protocol": protocol, "protocol_port": port, "admin_state_up": true, "connection_limit": -1});
    if let Some(p) = pool {
        l["default_pool_id"] = p["pool_id"].clone();
        l["default_pool"] = p;
    }
    l
}

pub fn loadbalancer(id: &str, vip: &str, listeners: Vec<Value>) -> Value {
    json!({"loadbalancer_id": id, "vip_address": vip, "admin_state_up": true, "listeners": listeners, "pools": []})
}

/// A provider call as the policy's operation.
pub fn op(method: &str, args: Value) -> host::runtime::bindings::octavia::Operation {
    host::convert::operation(method, &args).unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

/// The bodies of the rule POSTs among recorded requests.
pub fn posted_rules(requests: &[Request]) -> Vec<Value> {
    requests.iter().filter(|(m, p, _)| m == "POST" && p == "/config/loadbalancer").filter_map(|(_, _, b)| b.clone()).collect()
}

pub fn spec() -> loxilb_sim::SpecValidator {
    loxilb_sim::SpecValidator::load_default().expect("LoxiLB swagger spec named by LOXILB_SWAGGER")
}

/// Where this package's build script (build.rs) built the other policies and the test fixtures: the
/// target dir `cargo policies` uses (one of its own: see .cargo/config.toml).
pub fn policies_dir() -> PathBuf {
    PathBuf::from(env!("LOXILB_TEST_COMPONENTS"))
}

/// A component the build script builds, by crate name with `-` as `_` (`policy_http_fullproxy`,
/// `fixture_misbehave`, …).
pub fn built(name: &str) -> PathBuf {
    let path = policies_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: is {name} among the packages of the `policies` alias (.cargo/config.toml)?", path.display());
    path
}

/// The second shipped policy: HTTP in full-proxy mode, rules named `octavia-l7_<lb>_<listener>_<pool>`.
pub fn http_fullproxy_policy() -> PathBuf {
    built("policy_http_fullproxy")
}

/// The policy kit's template, built as it ships.
pub fn template_policy() -> PathBuf {
    built("policy_template")
}

/// A directory of its own under the system's temporary directory, empty at first and removed when
/// dropped, unless the test is failing (then it is kept to look at).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<tag>-<pid>`.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A test fixture from tests/fixtures/<name> (`misbehave`, `bad_selfcheck`, `planted_bug`, `wit_v0_1`).
pub fn fixture(name: &str) -> PathBuf {
    built(&format!("fixture_{name}"))
}

/// Files that are not components: a core wasm module (valid wasm, no component) and plain text, in a
/// directory that lasts as long as the returned one.
pub fn not_components(tag: &str) -> (TempDir, Vec<PathBuf>) {
    let dir = TempDir::new(&format!("loxilb-not-components-{tag}"));
    let module = dir.join("core-module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let text = dir.join("policy.wasm");
    std::fs::write(&text, b"this is not a WebAssembly component\n").unwrap();
    (dir, vec![module, text])
}

/// A host as `serve` assembles it, minus the transports: a service over `policy`, programming the LoxiLB
/// simulator, with statuses recorded instead of sent to Octavia.
pub struct TestHost {
    pub sim: loxilb_sim::Simulator,
    pub service: Arc<host::service::Service>,
    pub sink: Arc<host::octavia::status::RecordingSink>,
}

pub fn test_host(policy: &std::path::Path, limits: Limits, settings: Settings) -> TestHost {
    test_host_with(policy, limits, settings, false)
}

/// `test_host`, with reconciliation deleting the rules no Octavia object owns when `remove_orphans`.
pub fn test_host_with(policy: &std::path::Path, limits: Limits, settings: Settings, remove_orphans: bool) -> TestHost {
    test_host_on(policy, limits, settings, remove_orphans, Arc::new(MemoryStore::default()))
}

/// `test_host_with`, keeping the mapping in `storage`.
pub fn test_host_on(policy: &std::path::Path, limits: Limits, settings: Settings, remove_orphans: bool, storage: Arc<dyn MappingStore>) -> TestHost {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).expect("simulator");
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(host::loxilb::HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5)));
    let mapping = host::app::load_mapping(storage).expect("mapping loads");
    let wiring = Wiring { loxilb, mapping, remove_orphans, served: Default::default(), log_target: "test".into() };
    let sandbox = Sandbox::new(host::runtime::load(policy).expect("policy loads"), wiring, limits, settings).expect("policy starts");
    let sink = Arc::new(host::octavia::status::RecordingSink::default());
    let service = host::service::Service::new(sandbox, None, sink.clone(), std::time::Duration::from_secs(5));
    service.start_worker(Vec::new());
    TestHost { sim, service, sink }
}

impl TestHost {
    pub fn policy_name(&self) -> String {
        self.service.sandbox.lock().unwrap().info.name.clone()
    }

    /// Waits until the worker has applied `count` casts in all.
    pub fn wait_applied(&self, count: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while self.service.applied.load(std::sync::atomic::Ordering::SeqCst) < count {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {count} operations applied",
                self.service.applied.load(std::sync::atomic::Ordering::SeqCst)
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The simulator's rules on one VIP.
    pub fn rules_on(&self, vip: &str) -> Vec<Value> {
        self.sim.rules().into_iter().filter(|r| r["serviceArguments"]["externalIP"] == vip).collect()
    }
}

/// The endpoint addresses of every rule a simulator holds, sorted.
pub fn endpoint_ips(sim: &loxilb_sim::Simulator) -> Vec<String> {
    let mut ips: Vec<String> = sim
        .rules()
        .iter()
        .flat_map(|r| r["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["endpointIP"].as_str().unwrap_or_default().to_string())
        .collect();
    ips.sort();
    ips
}

/// Provisioning statuses of one kind (`loadbalancers`, `members`, …) across recorded status documents.
pub fn provisioning_statuses(documents: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for doc in documents {
        for (collection, records) in doc.as_object().into_iter().flatten() {
            for r in records.as_array().into_iter().flatten() {
                if let Some(p) = r["provisioning_status"].as_str() {
                    out.push((format!("{collection}/{}", r["id"].as_str().unwrap_or_default()), p.to_string()));
                }
            }
        }
    }
    out
}

/// Waits (bounded) until `sink` has recorded the provisioning `status` for `object`
/// (`loadbalancers/<id>`).
pub fn wait_status(sink: &host::octavia::status::RecordingSink, object: &str, status: &str, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if provisioning_statuses(&sink.documents.lock().unwrap()).iter().any(|(o, s)| o == object && s == status) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// xorshift64*: small, seeded, reproducible from a printed seed; enough to pick operations and times.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Runs `f` with this thread's log lines captured, and returns its result and the text logged.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

/// What Octavia's get socket answers for one request: the object, `None` for `{}` (not found or not
/// committed yet), or `Err` to close the connection without a reply (the agent is down or cannot answer).
pub type GetAnswer = Result<Option<Value>, ()>;

/// A driver-agent status or stats socket at `path`: answers every document 200 and keeps it.
pub fn keeping_documents_at(path: &std::path::Path) -> Arc<Mutex<Vec<Value>>> {
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).expect("bind the fake driver-agent socket");
    let documents: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&documents);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(document) = host::octavia::agent::read_frame(&mut stream) else { continue };
            kept.lock().unwrap().push(document);
            let _ = host::octavia::agent::write_frame(&mut stream, &json!({"status_code": 200}));
        }
    });
    documents
}

/// Octavia's get socket, scripted by a test: every request `{"object", "id"}` is answered by `answer`,
/// each connection on its own thread (an answer may itself apply an operation through the host).
pub struct FakeGetSocket {
    pub path: PathBuf,
    /// Requests received so far, answered or not.
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeGetSocket {
    pub fn start(name: &str, answer: impl Fn(&str, &str) -> GetAnswer + Send + Sync + 'static) -> FakeGetSocket {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let path = std::env::temp_dir().join(format!("loxilb-get-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the fake get socket");
        let (requests, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let answer = Arc::new(answer);
        let (counted, stopped) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let (answer, counted) = (Arc::clone(&answer), Arc::clone(&counted));
                std::thread::spawn(move || {
                    let Ok(request) = host::octavia::agent::read_frame(&mut stream) else { return };
                    let (object, id) = (request["object"].as_str().unwrap_or_default(), request["id"].as_str().unwrap_or_default());
                    let reply = answer(object, id);
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(found) = reply {
                        let _ = host::octavia::agent::write_frame(&mut stream, &found.unwrap_or_else(|| json!({})));
                    }
                });
            }
        });
        FakeGetSocket { path, requests, stop }
    }

    /// A driver-agent client of this get socket only.
    pub fn agent(&self) -> host::octavia::agent::DriverAgent {
        host::octavia::agent::DriverAgent { status: None, stats: None, get: Some(self.path.clone()) }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FakeGetSocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A mapping store that remembers which thread wrote each record or snapshot: a swap runs on the caller's
/// thread and operations on the service's workers, so a write from the caller's thread is the swap's.
#[derive(Default)]
pub struct WriterRecordingStore {
    inner: MemoryStore,
    pub writers: Mutex<Vec<std::thread::ThreadId>>,
}

impl MappingStore for WriterRecordingStore {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        self.inner.read_snapshot()
    }
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        self.writers.lock().unwrap().push(std::thread::current().id());
        self.inner.write_snapshot(data)
    }
    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.writers.lock().unwrap().push(std::thread::current().id());
        self.inner.append(record)
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        self.inner.replay()
    }
    fn journal_length(&self) -> u32 {
        self.inner.journal_length()
    }
    fn sync(&self) -> Result<(), String> {
        self.inner.sync()
    }
}
