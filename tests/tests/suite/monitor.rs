//! The monitor against the LoxiLB simulator: a LoxiLB restart that falls between two liveness checks (so
//! LoxiLB is never seen down) is repaired at the next check, not at the next reconciliation interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::monitor::{Monitor, Upkeep};
use host::octavia::agent::DriverAgent;
use host::octavia::status::{RecordingSink, StatusSink};
use host::service::Service;
use host::storage::MemoryStore;
use integration_tests::*;
use serde_json::json;

const LB: &str = "dddddddd-0000-4000-8000-000000000001";
const L1: &str = "dddddddd-0000-4000-8000-000000000011";
const P1: &str = "dddddddd-0000-4000-8000-000000000021";
const M1: &str = "dddddddd-0000-4000-8000-000000000101";

/// The simulator, the host's transport to it, and a service running the default policy over it.
fn on_simulator() -> (loxilb_sim::Simulator, Arc<dyn LoxiTransport>, Arc<Service>) {
    on_simulator_with(None, Arc::new(RecordingSink::default()), Duration::from_secs(1))
}

/// `on_simulator`, the service reading Octavia through `agent` and reporting to `statuses`.
fn on_simulator_with(
    agent: Option<DriverAgent>,
    statuses: Arc<dyn StatusSink>,
    commit_wait: Duration,
) -> (loxilb_sim::Simulator, Arc<dyn LoxiTransport>, Arc<Service>) {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, agent, statuses, commit_wait);
    (sim, loxilb, service)
}

/// A load balancer with one listener, its pool and one member.
fn one_member_tree() -> serde_json::Value {
    let members = vec![member(M1, P1, "10.40.1.1", 8080, 1)];
    loadbalancer(LB, "10.40.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))])
}

fn posts(sim: &loxilb_sim::Simulator) -> usize {
    sim.requests().iter().filter(|r| r.method == "POST").count()
}

#[test]
fn a_loxilb_restart_between_two_liveness_checks_is_repaired_at_the_next_check() {
    let (sim, loxilb, service) = on_simulator();
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    let mut upkeep = Upkeep::default();
    monitor.tick(&mut upkeep);

    let tree = one_member_tree();
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let rules = sim.rules();
    assert_eq!(rules.len(), 1);

    // LoxiLB holds everything: checks change nothing.
    sim.clear_requests();
    monitor.tick(&mut upkeep);
    monitor.tick(&mut upkeep);
    assert_eq!(posts(&sim), 0, "{:?}", sim.requests());

    // Restarted between two checks: /version answered both times, every rule gone.
    sim.restart();
    monitor.tick(&mut upkeep);
    assert_eq!(sim.rules(), rules, "the next check re-programmed the lost rule");
    sim.clear_requests();
    monitor.tick(&mut upkeep);
    assert_eq!(posts(&sim), 0, "{:?}", sim.requests());
}

/// LoxiLB as the policy reaches it, refusing every change while `refuse` is set.
struct Refusing {
    inner: Arc<dyn LoxiTransport>,
    refuse: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
}

impl LoxiTransport for Refusing {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        if method != "GET" && self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Ok((500, r#"{"code":500,"message":"refused","result":"refused"}"#.into()));
        }
        self.inner.request(method, path, body)
    }
}

/// A service whose policy and monitor both reach LoxiLB through `loxilb`, without Octavia's sockets; the
/// monitor checks liveness and lost rules only (no statistics, a reconciliation pass an hour away).
fn monitored_over(loxilb: Arc<dyn LoxiTransport>) -> (Arc<Service>, Monitor) {
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    (service, monitor)
}

/// LoxiLB as the policy reaches it, with a client that panics on every change while `panic` is set (a bug).
struct PanickingOnChange {
    inner: Arc<dyn LoxiTransport>,
    panic: std::sync::atomic::AtomicBool,
}

impl LoxiTransport for PanickingOnChange {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        assert!(method == "GET" || !self.panic.load(std::sync::atomic::Ordering::SeqCst), "a bug in the LoxiLB client");
        self.inner.request(method, path, body)
    }
}

#[test]
fn a_check_that_panics_with_the_policy_held_leaves_the_monitor_and_the_policy_usable() {
    // A bug that panicked in a check ended the monitor's thread (no more reconciliation, sync or health
    // reports while operations went on); with the policy held, it also poisoned the policy for every
    // later reconciliation and swap.
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb = Arc::new(PanickingOnChange {
        inner: Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5))),
        panic: std::sync::atomic::AtomicBool::new(false),
    });
    let (service, monitor) = monitored_over(loxilb.clone());
    let mut upkeep = Upkeep::default();
    assert!(monitor.checked_tick(&mut upkeep));
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    let rules = sim.rules();

    // LoxiLB restarts; repairing it, the client panics while the policy is held.
    sim.restart();
    loxilb.panic.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!monitor.checked_tick(&mut upkeep), "the check did not panic");
    assert!(service.sandbox.lock().is_ok(), "the policy stays usable");
    loxilb.panic.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(monitor.checked_tick(&mut upkeep));
    assert_eq!(sim.rules(), rules, "the next check repaired LoxiLB");
}

#[test]
fn a_rule_reconciliation_cannot_bring_back_is_not_retried_at_every_check() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    let policy_side = Arc::new(Refusing { inner: Arc::clone(&loxilb), refuse: false.into(), refused: 0.into() });
    // Reconciliation writes through the monitor's transport (each node of it): that one refuses.
    let _ = loxilb;
    let (service, monitor) = monitored_over(policy_side.clone());
    let mut upkeep = Upkeep::default();
    let tree = one_member_tree();
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    monitor.tick(&mut upkeep);

    sim.restart();
    policy_side.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    monitor.tick(&mut upkeep);
    let tried = policy_side.refused.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried > 0, "the loss was noticed and a reconciliation tried");
    monitor.tick(&mut upkeep);
    monitor.tick(&mut upkeep);
    assert_eq!(policy_side.refused.load(std::sync::atomic::Ordering::SeqCst), tried, "retried at every check");
    assert!(sim.rules().is_empty());
}

/// LoxiLB as the monitor reaches it: each rule listing taken while the host is free to apply operations
/// has one applied in the middle of it (a host under a steady flow of operations).
struct Busy {
    inner: Arc<dyn LoxiTransport>,
    service: std::sync::OnceLock<Arc<Service>>,
    weight: std::sync::atomic::AtomicU32,
    applied: std::sync::atomic::AtomicUsize,
}

const LB2: &str = "dddddddd-0000-4000-8000-000000000002";
const L2: &str = "dddddddd-0000-4000-8000-000000000012";
const P2: &str = "dddddddd-0000-4000-8000-000000000022";
const M2: &str = "dddddddd-0000-4000-8000-000000000102";

impl LoxiTransport for Busy {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let answer = self.inner.request(method, path, body);
        let service = self.service.get().expect("service set");
        // Held by the monitor itself: an operation could not be applied now (and would wait).
        let free = service.sandbox.try_lock().is_ok();
        if path == "/config/loadbalancer/all" && free {
            let old = self.weight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let member = |weight| member(M2, P2, "10.40.2.1", 8080, weight);
            service.apply("member_update", &json!({"old_member": member(old), "new_member": member(old + 1), "loadbalancer_id": LB2}));
            self.applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        answer
    }
}

#[test]
fn a_loxilb_restart_is_noticed_while_operations_keep_changing_the_mapping() {
    let (sim, loxilb, service) = on_simulator();
    let busy = Arc::new(Busy { inner: loxilb, service: Default::default(), weight: 1.into(), applied: 0.into() });
    let monitor = Monitor {
        service: Arc::clone(&service),
        loxilb: busy.clone(),
        agent: None,
        stats_interval: Duration::ZERO,
        reconcile_interval: Duration::from_secs(3600),
    };
    let one = loadbalancer(
        LB,
        "10.40.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member(M1, P1, "10.40.1.1", 8080, 1)], None)))],
    );
    let two = loadbalancer(
        LB2,
        "10.40.0.20",
        vec![listener(L2, LB2, "TCP", 80, Some(pool(P2, LB2, Some(L2), "TCP", vec![member(M2, P2, "10.40.2.1", 8080, 1)], None)))],
    );
    service.apply("loadbalancer_create", &json!({"loadbalancer": one}));
    service.apply("loadbalancer_create", &json!({"loadbalancer": two}));
    busy.service.set(Arc::clone(&service)).ok().unwrap();
    let mut upkeep = Upkeep::default();
    monitor.tick(&mut upkeep);
    let before = busy.applied.load(std::sync::atomic::Ordering::SeqCst);

    // Restarted; the other load balancer's operation re-programs its own rule, not this one's.
    sim.restart();
    monitor.tick(&mut upkeep);
    assert!(busy.applied.load(std::sync::atomic::Ordering::SeqCst) > before, "an operation was applied during the check");
    let vips: Vec<String> = sim.rules().iter().map(|r| r["serviceArguments"]["externalIP"].as_str().unwrap().to_string()).collect();
    assert!(vips.contains(&"10.40.0.10".to_string()), "the lost rule is back: {vips:?}");
}

#[test]
fn loxilb_down_is_one_warning_not_one_per_check() {
    // A port nothing listens on: every liveness check is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![format!("http://127.0.0.1:{port}")], Duration::from_secs(1)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor = Monitor { service, loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    let mut upkeep = Upkeep::default();
    let ((), log) = capture_logs(|| {
        for _ in 0..10 {
            monitor.tick(&mut upkeep);
        }
    });
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.iter().any(|l| l.contains("LoxiLB is unreachable")), "{log}");
    assert!(warnings.len() <= 2, "ten checks of a LoxiLB that is down logged {} warnings:\n{log}", warnings.len());
}

/// LoxiLB whose rule list arrives `delay` after LoxiLB answered (so it may be older than what happened
/// meanwhile); every other request goes straight through.
struct SlowListing {
    inner: Arc<dyn LoxiTransport>,
    delay: Duration,
}

impl LoxiTransport for SlowListing {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let reply = self.inner.request(method, path, body);
        if method == "GET" && path.starts_with("/config/loadbalancer/all") {
            std::thread::sleep(self.delay);
        }
        reply
    }
}

#[test]
fn a_slow_rule_list_does_not_hold_up_operations_and_a_change_meanwhile_is_not_undone() {
    let (sim, loxilb, service) = on_simulator();
    let slow: Arc<dyn LoxiTransport> = Arc::new(SlowListing { inner: loxilb, delay: Duration::from_secs(2) });
    let monitor =
        Monitor { service: Arc::clone(&service), loxilb: slow, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    let tree = loadbalancer(
        LB,
        "10.41.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member(M1, P1, "10.41.1.1", 8080, 1)], None)))],
    );
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));

    sim.clear_requests();
    std::thread::scope(|s| {
        let pass = s.spawn(|| monitor.reconcile());
        std::thread::sleep(Duration::from_millis(300));
        // The pass is reading LoxiLB's list (2 s): an operation goes through meanwhile.
        let started = std::time::Instant::now();
        let statuses = service.apply("member_create", &json!({"member": member("dddddddd-0000-4000-8000-000000000102", P1, "10.41.1.2", 8080, 1)}));
        assert!(started.elapsed() < Duration::from_secs(1), "the operation waited {:?} for the reconciliation", started.elapsed());
        assert_eq!(host::octavia::status::document(&statuses)["members"][0]["provisioning_status"], "ACTIVE");
        let by_operation = posts(&sim);
        pass.join().unwrap();
        // The list read before the member was added is not acted on (it would re-program the rule): the
        // pass read it again.
        assert_eq!(posts(&sim), by_operation, "the pass re-programmed from a list older than the operation: {:?}", sim.requests());
    });
    let endpoints: Vec<String> = sim.rules()[0]["endpoints"].as_array().unwrap().iter().map(|e| e["endpointIP"].as_str().unwrap().to_string()).collect();
    assert_eq!(endpoints, vec!["10.41.1.1", "10.41.1.2"]);
    sim.clear_requests();
    monitor.reconcile();
    assert_eq!(posts(&sim), 0, "LoxiLB holds the desired rules: {:?}", sim.requests());
}

#[test]
fn reconciliation_renders_beside_the_operations_and_holds_them_back_only_for_the_diff() {
    let (sim, loxilb, service) = on_simulator();
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    let tree = one_member_tree();
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let rules = sim.rules();

    // LoxiLB lost the rule: the pass repairs it from rules rendered on an instance of their own, so the
    // serving sandbox (what operations wait for) never rendered the whole mapping.
    sim.restart();
    monitor.reconcile();
    assert_eq!(sim.rules(), rules, "the pass re-programmed the lost rule");
    assert_eq!(service.sandbox.lock().unwrap().walks, 0, "the serving sandbox rendered under the operations' lock");
}

#[test]
fn rules_rendered_beside_an_operation_that_committed_meanwhile_are_not_taken() {
    let (_sim, _, service) = on_simulator();
    let tree = one_member_tree();

    let job = service.sandbox.lock().unwrap().render_job().expect("nothing rendered yet");
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let rendered = job.run(|s| s.render_desired_rules()).expect("renders");
    let mut sandbox = service.sandbox.lock().unwrap();
    assert!(!sandbox.offer_desired(rendered), "rules rendered before the create were taken as current");
    assert_eq!(sandbox.desired_rules().unwrap().len(), 1, "the create's rule is desired");

    // Rendered with nothing committed meanwhile: taken, and not rendered again.
    let job = sandbox.render_job();
    assert!(job.is_none(), "the current generation's rules are known");
    drop(sandbox);
    service.apply("member_update", &json!({"old_member": member(M1, P1, "10.40.1.1", 8080, 1), "new_member": {"member_id": M1, "weight": 5}}));
    let job = service.sandbox.lock().unwrap().render_job().expect("the update changed the mapping");
    let rendered = job.run(|s| s.render_desired_rules()).expect("renders");
    let mut sandbox = service.sandbox.lock().unwrap();
    let walks = sandbox.walks;
    assert!(sandbox.offer_desired(rendered));
    let desired = sandbox.desired_rules().unwrap();
    assert_eq!(sandbox.walks, walks, "the offered rules were rendered again");
    assert_eq!(*desired, sandbox.render_desired_rules().unwrap(), "the offered rules are the update's");
}

/// Octavia's status socket as the monitor meets it: records what each pass sent, and takes nothing while
/// `down` is set (the sink gave up after its patience).
#[derive(Default)]
struct StatusSocket {
    sent: std::sync::Mutex<Vec<serde_json::Value>>,
    down: std::sync::atomic::AtomicBool,
}

impl host::octavia::status::StatusSink for StatusSocket {
    fn report(&self, document: &serde_json::Value) {
        self.sent.lock().unwrap().push(document.clone());
    }

    fn report_within(&self, document: &serde_json::Value, _patience: Duration) -> bool {
        self.report(document);
        !self.down.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn operating_statuses_octavia_did_not_take_are_sent_again_at_the_next_pass() {
    let status = Arc::new(StatusSocket::default());
    let (_sim, loxilb, service) = on_simulator_with(None, status.clone(), Duration::from_secs(1));
    let stats_interval = Duration::from_millis(5);
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval, reconcile_interval: Duration::from_secs(3600) };
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    let mut upkeep = Upkeep::default();
    let mut pass = |down: bool| {
        status.down.store(down, std::sync::atomic::Ordering::SeqCst);
        status.sent.lock().unwrap().clear();
        std::thread::sleep(stats_interval * 2);
        monitor.tick(&mut upkeep);
        status.sent.lock().unwrap().iter().map(|d| d.to_string()).collect::<Vec<_>>()
    };
    let first = pass(true);
    assert!(first.iter().any(|d| d.contains(M1) && d.contains("operating_status")), "{first:?}");
    assert_eq!(pass(false), first, "what Octavia did not take is sent again");
    assert_eq!(pass(false), Vec::<String>::new(), "what it took is not");
}

#[test]
fn while_the_driver_agent_is_down_a_loxilb_restart_is_still_repaired_within_seconds() {
    // Both down together (a control-plane node rebooting): the operating statuses of a pass cannot be
    // delivered, and must not hold the thread that watches LoxiLB for long.
    let dir = TempDir::new("loxilb-monitor-agent-down");
    let status = dir.join("status.sock");
    let taken = keeping_documents_at(&status);
    let agent = DriverAgent { status: Some(status.clone()), stats: None, get: None };
    let (sim, loxilb, service) = on_simulator_with(None, Arc::new(host::octavia::status::AgentSink::new(agent)), Duration::from_secs(1));
    let stats_interval = Duration::from_millis(5);
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval, reconcile_interval: Duration::from_secs(3600) };
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    assert_eq!(taken.lock().unwrap().len(), 1, "the create was reported");
    // octavia-driver-agent stops (its socket goes with it).
    std::fs::remove_file(&status).unwrap();
    let rules = sim.rules();
    let mut upkeep = Upkeep::default();
    let deferred = host::metrics::STATUS_UPDATES_DEFERRED.get();
    std::thread::sleep(stats_interval * 2);
    let pass = std::time::Instant::now();
    monitor.tick(&mut upkeep);
    let held = pass.elapsed();
    assert!(host::metrics::STATUS_UPDATES_DEFERRED.get() > deferred, "the pass sent no operating statuses");
    // The next liveness check is LIVENESS_PERIOD after this pass: together, "within seconds".
    assert!(held < Duration::from_secs(5), "a pass held the LoxiLB watch {held:?} for the driver-agent");
    sim.restart();
    monitor.tick(&mut upkeep);
    assert_eq!(sim.rules(), rules, "the next check re-programmed the lost rule");
}

/// `count` load balancers of one listener, pool and member each, by id, as Octavia's get socket shows them.
fn one_member_trees(count: usize) -> HashMap<String, serde_json::Value> {
    (0..count)
        .map(|n| {
            let (lb, l, p, m) = (
                format!("eeeeeeee-0000-4000-8000-{n:012}"),
                format!("eeeeeeee-0001-4000-8000-{n:012}"),
                format!("eeeeeeee-0002-4000-8000-{n:012}"),
                format!("eeeeeeee-0003-4000-8000-{n:012}"),
            );
            let members = vec![member(&m, &p, &format!("10.40.1.{}", n + 1), 8080, 1)];
            (
                lb.clone(),
                loadbalancer(&lb, &format!("10.40.0.{}", n + 1), vec![listener(&l, &lb, "TCP", 80, Some(pool(&p, &lb, Some(&l), "TCP", members, None)))]),
            )
        })
        .collect()
}

/// A get socket showing the load balancers `trees` holds when asked, and nothing else, each read taking
/// 0.2 s: with a real driver-agent each read is a process it forks, and reading back a thousand takes
/// minutes.
fn slow_get_socket(name: &str, trees: &Arc<Mutex<HashMap<String, serde_json::Value>>>) -> FakeGetSocket {
    watched_get_socket(name, trees, &Arc::default())
}

/// How many reads a get socket has under way, and the most it had at once since `reset`; while `quick`,
/// it answers at once.
#[derive(Default)]
struct Reads {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    quick: std::sync::atomic::AtomicBool,
}

impl Reads {
    fn most(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn reset(&self) {
        self.most.store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `slow_get_socket`, counting its reads under way in `reads`.
fn watched_get_socket(name: &str, trees: &Arc<Mutex<HashMap<String, serde_json::Value>>>, reads: &Arc<Reads>) -> FakeGetSocket {
    use std::sync::atomic::Ordering::SeqCst;
    let (rows, reads) = (Arc::clone(trees), Arc::clone(reads));
    FakeGetSocket::start(name, move |object, id| {
        reads.most.fetch_max(reads.now.fetch_add(1, SeqCst) + 1, SeqCst);
        if !reads.quick.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        reads.now.fetch_sub(1, SeqCst);
        Ok(if object == "loadbalancers" { rows.lock().unwrap().get(id).cloned() } else { None })
    })
}

#[test]
fn a_loxilb_restart_is_repaired_within_seconds_while_octavia_is_read_back_slowly() {
    // The same thread watches LoxiLB: here 24 reads of 0.2 s each.
    let trees = one_member_trees(24);
    let under_way = Arc::new(Reads::default());
    let get = watched_get_socket("slow-sync", &Arc::new(Mutex::new(trees.clone())), &under_way);
    let (sim, loxilb, service) = on_simulator_with(Some(get.agent()), Arc::new(RecordingSink::default()), Duration::from_secs(5));
    for tree in trees.values() {
        service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    }
    let rules = sim.rules();
    assert_eq!(rules.len(), trees.len());
    let reconcile_interval = Duration::from_millis(1);
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: Some(get.agent()), stats_interval: Duration::ZERO, reconcile_interval };
    let mut upkeep = Upkeep::default();
    // The creates asked the get socket for their commits; the sync's reads are counted from here.
    let before = get.requests();
    let reads = || get.requests() - before;
    under_way.reset();
    std::thread::sleep(reconcile_interval * 2);
    let check = std::time::Instant::now();
    monitor.tick(&mut upkeep);
    let held = check.elapsed();
    assert!(reads() > 0 && reads() < trees.len(), "the check read back {} load balancers in one go", reads());
    // Load balancers served already are read back one at a time: the other reads the driver-agent takes
    // at once are left to operations' commits.
    assert_eq!(under_way.most(), 1, "the periodic reading back made reads at once");
    assert!(held < Duration::from_millis(2500), "a check held the LoxiLB watch {held:?} for Octavia's reads");
    // LoxiLB restarts while the reading back goes on: the next check repairs it.
    sim.restart();
    monitor.tick(&mut upkeep);
    assert_eq!(sim.rules(), rules, "the next check re-programmed the lost rules");
    // And the reading back goes on to the end.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reads() < trees.len() {
        assert!(std::time::Instant::now() < deadline, "the sync stopped after {} reads", reads());
        monitor.tick(&mut upkeep);
    }
    assert_eq!(sim.rules(), rules);
}

#[test]
fn load_balancers_that_failed_while_loxilb_was_down_are_programmed_several_at_a_time_without_holding_up_the_checks() {
    // Each is read back from Octavia (a forked process with a real driver-agent) and reported: after a
    // long outage hundreds may wait in ERROR. One at a time and all in one check, the check that should
    // notice a LoxiLB restart within seconds waited for all of them. Here 30 reads of 0.2 s each.
    const LBS: usize = 30;
    let trees = one_member_trees(LBS);
    let under_way = Arc::new(Reads::default());
    let get = watched_get_socket("reprogram-many", &Arc::new(Mutex::new(trees.clone())), &under_way);
    let (sim, loxilb, service) = on_simulator_with(Some(get.agent()), Arc::new(RecordingSink::default()), Duration::from_secs(5));
    under_way.quick.store(true, std::sync::atomic::Ordering::SeqCst);
    sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    for tree in trees.values() {
        service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    }
    assert_eq!(service.reprogram.len(), LBS);
    sim.inject_fault(0, loxilb_sim::Fault::Reset);
    under_way.quick.store(false, std::sync::atomic::Ordering::SeqCst);
    under_way.reset();

    let monitor =
        Monitor { service: Arc::clone(&service), loxilb, agent: Some(get.agent()), stats_interval: Duration::ZERO, reconcile_interval: Duration::ZERO };
    let mut upkeep = Upkeep::default();
    let check = std::time::Instant::now();
    monitor.tick(&mut upkeep);
    let held = check.elapsed();
    let programmed = sim.rules().len();
    assert!(programmed > 0 && programmed < LBS, "one check programmed {programmed} of {LBS}");
    assert!(held < Duration::from_millis(2500), "a check held the LoxiLB watch {held:?} to program what failed");
    assert_eq!(under_way.most(), host::octavia::readback::URGENT, "reads at once while what failed at LoxiLB was read back");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !service.reprogram.is_empty() {
        assert!(std::time::Instant::now() < deadline, "{} of {LBS} still to program", service.reprogram.len());
        monitor.tick(&mut upkeep);
    }
    assert_eq!(sim.rules().len(), LBS);
}

#[test]
fn a_start_beside_a_restarted_loxilb_programs_every_rule_before_octavia_is_read_back() {
    // A node's reboot restarts the host with the LoxiLB beside it, which then holds no rule. The start
    // read every load balancer back from Octavia before LoxiLB was brought to the mapping, so the last
    // one read stayed out of LoxiLB until then: here 24 reads of 0.2 s each, minutes for a thousand.
    let trees = Arc::new(Mutex::new(one_member_trees(25)));
    let get = slow_get_socket("slow-start", &trees);
    let (sim, loxilb, service) = on_simulator_with(Some(get.agent()), Arc::new(RecordingSink::default()), Duration::from_secs(5));
    let created: Vec<serde_json::Value> = trees.lock().unwrap().values().cloned().collect();
    for tree in created {
        service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    }
    let rules = sim.rules();
    assert_eq!(rules.len(), 25);
    // One of them Octavia no longer shows (a mapping restored from a backup, say): the reading back
    // removes it.
    let gone = "eeeeeeee-0000-4000-8000-000000000024";
    trees.lock().unwrap().remove(gone);
    sim.restart();
    assert!(sim.rules().is_empty());
    let monitor = Monitor {
        service: Arc::clone(&service),
        loxilb,
        agent: Some(get.agent()),
        stats_interval: Duration::ZERO,
        reconcile_interval: Duration::from_secs(3600),
    };
    let mut upkeep = Upkeep::default();
    let before = get.requests();
    let reads = || get.requests() - before;
    let start = std::time::Instant::now();
    monitor.begin(&mut upkeep);
    let took = start.elapsed();
    assert_eq!(sim.rules(), rules, "the start brought LoxiLB to the mapping");
    assert!(took < Duration::from_millis(2500), "the start held LoxiLB's rules back {took:?} for Octavia's reads ({} reads)", reads());
    // Octavia's view is still read back, a slice per check, and what it no longer shows is removed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reads() < 25 {
        assert!(std::time::Instant::now() < deadline, "the sync stopped after {} reads", reads());
        monitor.tick(&mut upkeep);
    }
    let mut held = rules.clone();
    held.retain(|rule| rule["serviceArguments"]["externalIP"] != "10.40.0.25");
    assert_eq!(held.len(), 24);
    assert_eq!(sim.rules(), held, "the load balancer Octavia no longer shows was removed");
    assert!(service.sandbox.lock().unwrap().mapping().get(gone).is_none());
}

/// Over AMQP each host keeps a mapping of its own, and another host may serve a load balancer's shard
/// from a newer one: a host repairs LoxiLB only for the shards it is the active consumer of.
/// The simulator, and a service over it acting for the shards of `shards` this host consumes (AMQP).
fn on_shards(shards: &Arc<host::served::Shards>, agent: Option<DriverAgent>) -> (loxilb_sim::Simulator, Arc<Service>, Monitor) {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    let wiring = host::runtime::instance::Wiring {
        loxilb: Arc::clone(&loxilb),
        mapping: host::app::load_mapping(Arc::new(MemoryStore::default())).unwrap(),
        remove_orphans: false,
        served: host::served::Served::Shards(Arc::clone(shards)),
        log_target: "test".into(),
    };
    let limits = host::runtime::instance::Limits::default();
    let sandbox = host::runtime::instance::Sandbox::new(host::runtime::load(&default_policy()).unwrap(), wiring, limits, settings()).unwrap();
    let service = Service::new(sandbox, agent.clone(), Arc::new(RecordingSink::default()), Duration::from_secs(5));
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    (sim, service, monitor)
}

/// Another host's service on the same LoxiLB, with a mapping of its own.
fn another_host_on(sim: &loxilb_sim::Simulator) -> Arc<Service> {
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    Service::new(sandbox_with(&default_policy(), loxilb, Arc::new(MemoryStore::default())), None, Arc::new(RecordingSink::default()), Duration::from_secs(1))
}

#[test]
fn over_amqp_a_lost_rule_is_repaired_only_by_the_active_consumer_of_its_shard() {
    use host::served::{shard_of, Shards};
    let shards = Arc::new(Shards::new(8));
    let (sim, service, monitor) = on_shards(&shards, None);
    let mut upkeep = Upkeep::default();

    // The create came on its shard: this host is its active consumer.
    let shard = shard_of(LB, 8);
    shards.delivered(shard);
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    let rules = sim.rules();
    assert_eq!(rules.len(), 1);
    monitor.tick(&mut upkeep);
    sim.restart();
    monitor.tick(&mut upkeep);
    assert_eq!(sim.rules(), rules, "the active consumer repairs a lost rule");
    monitor.tick(&mut upkeep);

    // The session is lost and another host takes the shard: this host's mapping may be stale now.
    shards.forget();
    sim.restart();
    for _ in 0..3 {
        monitor.tick(&mut upkeep);
    }
    assert!(sim.rules().is_empty(), "a host that does not consume the shard re-programmed {:?}", sim.rules());

    // Its deliveries resume: with no get socket to read it back from, the mapping is all there is.
    shards.delivered(shard);
    monitor.tick(&mut upkeep);
    monitor.tick(&mut upkeep);
    assert_eq!(sim.rules(), rules, "the shard's load balancers are served again");
}

#[test]
fn over_amqp_the_load_balancers_of_a_shard_taken_over_are_served_as_they_are_read_back() {
    // With a real driver-agent each read is a process it forks: a thousand load balancers take minutes,
    // and a LoxiLB that restarted meanwhile lacked every rule until the last was read. Here 30 reads of
    // 0.2 s each, a 1 s slice of them per check.
    const LBS: usize = 30;
    let trees = Arc::new(Mutex::new(one_member_trees(LBS)));
    let under_way = Arc::new(Reads::default());
    let get = watched_get_socket("slow-takeover", &trees, &under_way);
    let shards = Arc::new(host::served::Shards::new(8));
    let (sim, service, monitor) = on_shards(&shards, Some(get.agent()));
    let created: Vec<serde_json::Value> = trees.lock().unwrap().values().cloned().collect();
    under_way.quick.store(true, std::sync::atomic::Ordering::SeqCst);
    for tree in created {
        service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    }
    under_way.quick.store(false, std::sync::atomic::Ordering::SeqCst);
    let rules = sim.rules();
    assert_eq!(rules.len(), LBS);
    sim.restart();
    // Probes keep every shard this host's.
    let live = || (0..8).for_each(|i| shards.delivered(i));
    let mut upkeep = Upkeep::default();
    under_way.reset();
    live();
    monitor.tick(&mut upkeep);
    let served = sim.rules().len();
    assert!(served > 0 && served < LBS, "after one check {served} of {LBS} rules are back");
    // Unserved until read, they are read several at a time (one at a time, ~0.15 s each with a real
    // driver-agent, a thousand were out of LoxiLB for minutes), leaving a read to operations.
    assert_eq!(under_way.most(), host::octavia::agent::GET_CONCURRENCY - 1, "reads at once while the shards taken over were read back");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.rules().len() < LBS {
        assert!(std::time::Instant::now() < deadline, "{} of {LBS} rules back", sim.rules().len());
        live();
        monitor.tick(&mut upkeep);
    }
    assert_eq!(sim.rules(), rules);
}

#[test]
fn over_amqp_a_load_balancer_another_host_created_is_served_after_its_shard_is_taken_over() {
    use host::served::{shard_of, Shards};
    let tree = one_member_tree();
    let row = tree.clone();
    let get = FakeGetSocket::start("takeover-adopts", move |object, id| Ok((object == "loadbalancers" && id == LB).then(|| row.clone())));
    let shards = Arc::new(Shards::new(8));
    let (sim, service, monitor) = on_shards(&shards, Some(get.agent()));

    // Another host served the shard and created the load balancer: this host's mapping never saw it.
    let other = another_host_on(&sim);
    other.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let rules = sim.rules();
    assert_eq!(rules.len(), 1);
    assert!(service.mapping().get(LB).is_none());

    // That host is gone; the shard's deliveries come here now, and then LoxiLB restarts.
    let shard = shard_of(LB, 8);
    let mut upkeep = Upkeep::default();
    shards.delivered(shard);
    monitor.tick(&mut upkeep);
    assert!(service.mapping().get(LB).is_some(), "the load balancer LoxiLB serves for the shard taken over is not adopted");
    sim.restart();
    for _ in 0..3 {
        shards.delivered(shard);
        monitor.tick(&mut upkeep);
    }
    assert_eq!(sim.rules(), rules, "the load balancer is not served again after LoxiLB's restart");

    // Deleted through this host, it is gone from LoxiLB (a delete of a load balancer the mapping lacks
    // has nothing to remove: it answered DELETED and LoxiLB went on serving it).
    service.apply("loadbalancer_delete", &json!({"loadbalancer": one_member_tree(), "cascade": true}));
    assert!(sim.rules().is_empty(), "a deleted load balancer is still served: {:?}", sim.rules());
}

#[test]
fn over_amqp_a_load_balancer_gone_from_octavia_leaves_the_rule_its_vip_and_port_were_given_to() {
    use host::served::Shards;
    const REUSER: &str = "dddddddd-0000-4000-8000-000000000002";
    let (listener_id, pool_id, member_id) =
        ("dddddddd-0000-4000-8000-000000000012", "dddddddd-0000-4000-8000-000000000022", "dddddddd-0000-4000-8000-000000000102");
    let members = vec![member(member_id, pool_id, "10.40.1.2", 8080, 1)];
    let reuser = loadbalancer(
        REUSER,
        "10.40.0.10",
        vec![listener(listener_id, REUSER, "TCP", 80, Some(pool(pool_id, REUSER, Some(listener_id), "TCP", members, None)))],
    );
    let octavia = Arc::new(Mutex::new(HashMap::from([(LB.to_string(), one_member_tree())])));
    let get = slow_get_socket("vip-reused", &octavia);
    let shards = Arc::new(Shards::new(8));
    let (sim, service, monitor) = on_shards(&shards, Some(get.agent()));
    let every_shard = || (0..8).for_each(|i| shards.delivered(i));

    // This host serves LB; its session is lost, and another host deletes LB and gives its VIP and port
    // to a new load balancer.
    every_shard();
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    assert_eq!(sim.rules().len(), 1);
    shards.forget();
    let other = another_host_on(&sim);
    // It took the shards over: it adopted what LoxiLB holds.
    other.sandbox.lock().unwrap().recover(host::execute::RecoveryMode::Loxilb).unwrap().unwrap();
    octavia.lock().unwrap().clear();
    other.apply("loadbalancer_delete", &json!({"loadbalancer": one_member_tree(), "cascade": true}));
    assert!(sim.rules().is_empty());
    octavia.lock().unwrap().insert(REUSER.to_string(), reuser.clone());
    other.apply("loadbalancer_create", &json!({"loadbalancer": reuser}));
    let rules = sim.rules();
    let named_for_reuser =
        |rules: &[serde_json::Value]| rules.len() == 1 && rules[0]["serviceArguments"]["name"].as_str().is_some_and(|name| name.contains(REUSER));
    assert!(named_for_reuser(&rules), "{rules:?}");

    // The shards come back to this host: LB is gone from Octavia, and the rule on its VIP and port is
    // the other load balancer's.
    let mut upkeep = Upkeep::default();
    for _ in 0..3 {
        every_shard();
        monitor.tick(&mut upkeep);
    }
    assert!(service.mapping().get(LB).is_none(), "the load balancer Octavia no longer has is still mapped");
    assert_eq!(sim.rules(), rules, "removing the load balancer Octavia no longer has took the rule of the one its VIP and port were given to");
    assert!(service.mapping().get(REUSER).is_some(), "the load balancer holding the VIP and port is not adopted");
}

#[test]
fn over_amqp_a_vip_held_here_by_another_hosts_load_balancer_octavia_deleted_is_not_refused() {
    use host::served::Shards;
    let octavia = Arc::new(Mutex::new(HashMap::from([(LB.to_string(), one_member_tree())])));
    let get = slow_get_socket("stale-holder", &octavia);
    let shards = Arc::new(Shards::new(8));
    let (sim, service, _monitor) = on_shards(&shards, Some(get.agent()));
    (0..8).for_each(|i| shards.delivered(i));
    service.apply("loadbalancer_create", &json!({"loadbalancer": one_member_tree()}));
    // Another host serves it from now on; this host's mapping of it ages.
    shards.forget();
    const REUSER: &str = "dddddddd-0000-4000-8000-000000000003";
    let reuser = loadbalancer(REUSER, "10.40.0.10", vec![]);
    let validate = || service.call("validate", &json!({"operation": "loadbalancer_create", "args": {"loadbalancer": reuser}}));
    let refused = validate().expect_err("a VIP a load balancer Octavia has holds");
    assert_eq!(refused.class, "Conflict", "{}", refused.message);
    assert!(service.mapping().get(LB).is_some());

    // Deleted through the other host: the VIP may be given again, whichever host answers.
    octavia.lock().unwrap().clear();
    assert_eq!(validate().map_err(|f| f.message), Ok(serde_json::Value::Null));
    assert!(service.mapping().get(LB).is_none(), "the load balancer Octavia no longer has is still mapped here");
    assert_eq!(sim.rules().len(), 1, "LoxiLB is the serving host's to change");
}
