//! The host against Octavia's get socket (scripted) and the LoxiLB simulator: a read of Octavia's view
//! never undoes a later operation; a load balancer Octavia no longer has leaves LoxiLB; an operation waits
//! for its commit while the get socket cannot be asked, and is applied soon after the commit shows; what
//! failed while LoxiLB was down is programmed as Octavia shows it once LoxiLB answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::monitor::Monitor;
use host::octavia::status::{RecordingSink, StatusSink};
use host::service::Service;
use host::storage::MemoryStore;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "cccccccc-0000-4000-8000-000000000001";
const L1: &str = "cccccccc-0000-4000-8000-000000000011";
const P1: &str = "cccccccc-0000-4000-8000-000000000021";
const M1: &str = "cccccccc-0000-4000-8000-000000000101";
const M2: &str = "cccccccc-0000-4000-8000-000000000102";
const VIP: &str = "10.30.0.10";

fn tree(members: &[(&str, &str)]) -> Value {
    let members = members.iter().map(|(id, ip)| member(id, P1, ip, 8080, 1)).collect();
    loadbalancer(LB, VIP, vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))])
}

/// Octavia's committed rows, as its get socket serves them.
#[derive(Default)]
struct Octavia {
    rows: Mutex<HashMap<(String, String), Value>>,
    /// The get socket closes connections without answering (the driver-agent is down).
    down: std::sync::atomic::AtomicBool,
    /// Runs once, inside the next read of a load balancer, after the row was read and before it is sent.
    during_next_read: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Octavia {
    /// Commits a load balancer tree: the load balancer, its listeners, pools and members.
    fn commit(&self, tree: &Value) {
        let mut rows = self.rows.lock().unwrap();
        rows.retain(|_, _| false);
        rows.insert(("loadbalancers".into(), tree["loadbalancer_id"].as_str().unwrap().into()), tree.clone());
        for l in tree["listeners"].as_array().unwrap() {
            rows.insert(("listeners".into(), l["listener_id"].as_str().unwrap().into()), l.clone());
            let p = &l["default_pool"];
            rows.insert(("pools".into(), p["pool_id"].as_str().unwrap().into()), p.clone());
            for m in p["members"].as_array().unwrap() {
                rows.insert(("members".into(), m["member_id"].as_str().unwrap().into()), m.clone());
            }
        }
    }

    fn delete_all(&self) {
        self.rows.lock().unwrap().clear();
    }

    fn answer(&self, object: &str, id: &str) -> GetAnswer {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(());
        }
        let row = self.rows.lock().unwrap().get(&(object.to_string(), id.to_string())).cloned();
        if object == "loadbalancers" {
            let hook = self.during_next_read.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        Ok(row)
    }
}

/// Status reports, with a hook run inside the next one (before the statuses reach Octavia).
#[derive(Default)]
struct HookSink {
    recorded: RecordingSink,
    during_next_report: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl StatusSink for HookSink {
    fn report(&self, document: &Value) {
        let hook = self.during_next_report.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.recorded.report(document);
    }
}

struct Host {
    sim: loxilb_sim::Simulator,
    octavia: Arc<Octavia>,
    get: FakeGetSocket,
    service: Arc<Service>,
    sink: Arc<HookSink>,
    loxilb: Arc<dyn LoxiTransport>,
}

impl Host {
    fn start(name: &str, commit_wait: Duration) -> Host {
        let octavia = Arc::new(Octavia::default());
        let answering = Arc::clone(&octavia);
        let get = FakeGetSocket::start(name, move |object, id| answering.answer(object, id));
        let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
        let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
        let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
        let sink = Arc::new(HookSink::default());
        let service = Service::new(sandbox, Some(get.agent()), sink.clone(), commit_wait);
        Host { sim, octavia, get, service, sink, loxilb }
    }

    fn monitor(&self) -> Monitor {
        Monitor {
            service: Arc::clone(&self.service),
            loxilb: Arc::clone(&self.loxilb),
            agent: Some(self.get.agent()),
            stats_interval: Duration::ZERO,
            reconcile_interval: Duration::ZERO,
        }
    }

    fn mapped_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.service.sandbox.lock().unwrap().mappings().unwrap().into_iter().map(|e| e.octavia_id).collect();
        ids.sort();
        ids
    }

    fn endpoints(&self) -> Vec<String> {
        endpoint_ips(&self.sim)
    }

    /// Creates the load balancer tree as Octavia does: committed, then cast.
    fn create(&self, tree: &Value) {
        self.octavia.commit(tree);
        let statuses = self.service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
        assert!(!statuses.is_empty() && self.sim.rules().len() == 1, "created: {statuses:?}");
    }
}

#[test]
fn a_sync_that_read_octavia_before_a_cascade_delete_does_not_bring_the_load_balancer_back() {
    let host = Host::start("race-delete", Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1")]);
    host.create(&tree);
    // The sync reads the load balancer; before the read is applied, the user's cascade delete is.
    let (service, octavia, deleted) = (Arc::clone(&host.service), Arc::clone(&host.octavia), tree.clone());
    *host.octavia.during_next_read.lock().unwrap() = Some(Box::new(move || {
        service.apply("loadbalancer_delete", &json!({"loadbalancer": deleted, "cascade": true, "loadbalancer_id": LB}));
        octavia.delete_all();
    }));
    let monitor = host.monitor();
    monitor.sync_from_octavia();
    assert!(host.octavia.during_next_read.lock().unwrap().is_none(), "the sync read the load balancer");
    assert!(host.sim.rules().is_empty(), "LoxiLB serves a deleted VIP again: {:?}", host.sim.rules());
    assert!(host.mapped_ids().is_empty(), "{:?}", host.mapped_ids());
    monitor.reconcile();
    assert!(host.sim.rules().is_empty() && host.mapped_ids().is_empty());
}

#[test]
fn a_sync_while_a_delete_is_not_reported_yet_does_not_bring_the_member_back() {
    let host = Host::start("race-unreported", Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]);
    host.create(&tree);
    // Applied, but its statuses are not in Octavia yet: Octavia still shows the member when the sync reads.
    let monitor = Arc::new(host.monitor());
    let syncing = Arc::clone(&monitor);
    *host.sink.during_next_report.lock().unwrap() = Some(Box::new(move || syncing.sync_from_octavia()));
    let m2 = member(M2, P1, "10.30.1.2", 8080, 1);
    host.service.apply("member_delete", &json!({"member": m2, "loadbalancer_id": LB}));
    assert!(host.sink.during_next_report.lock().unwrap().is_none(), "the sync ran inside the report");
    assert_eq!(host.endpoints(), vec!["10.30.1.1"]);
    assert!(!host.mapped_ids().contains(&M2.to_string()));
    // Once Octavia has the statuses, a sync reads the tree without the member: nothing changes.
    host.octavia.commit(&self::tree(&[(M1, "10.30.1.1")]));
    monitor.sync_from_octavia();
    assert_eq!(host.endpoints(), vec!["10.30.1.1"]);
}

#[test]
fn a_load_balancer_octavia_no_longer_has_leaves_loxilb_and_the_mapping() {
    let host = Host::start("gone", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    let monitor = host.monitor();
    host.octavia.delete_all();
    // Octavia cannot be asked: that says nothing about the load balancer.
    host.octavia.down.store(true, std::sync::atomic::Ordering::SeqCst);
    monitor.sync_from_octavia();
    assert_eq!(host.sim.rules().len(), 1, "removed while Octavia could not be asked");
    assert_eq!(host.mapped_ids().len(), 4);
    // Octavia says it is gone (the host missed the delete).
    host.octavia.down.store(false, std::sync::atomic::Ordering::SeqCst);
    monitor.sync_from_octavia();
    assert!(host.sim.rules().is_empty(), "{:?}", host.sim.rules());
    assert!(host.mapped_ids().is_empty(), "{:?}", host.mapped_ids());
}

#[test]
fn an_operation_waits_for_its_commit_while_the_get_socket_cannot_be_asked() {
    let commit_wait = Duration::from_millis(300);
    let host = Host::start("down", commit_wait);
    host.octavia.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let tree = tree(&[(M1, "10.30.1.1")]);
    let started = Instant::now();
    let service = Arc::clone(&host.service);
    let create = json!({"loadbalancer": tree.clone()});
    let applying = std::thread::spawn(move || service.apply("loadbalancer_create", &create));
    // Down for more than twice commit_wait_timeout, and asked meanwhile; then up with the commit.
    while host.get.requests() < 3 || started.elapsed() < commit_wait * 2 {
        assert!(!applying.is_finished(), "gave up after {:?} while Octavia could not be asked", started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    host.octavia.commit(&tree);
    host.octavia.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let statuses = applying.join().unwrap();
    assert!(!statuses.is_empty(), "the operation was dropped");
    assert_eq!(host.sim.rules().len(), 1);
}

#[test]
fn an_operation_octavia_answers_never_committed_is_dropped_after_commit_wait() {
    let host = Host::start("rolled-back", Duration::from_millis(300));
    let started = Instant::now();
    let (statuses, logs) = capture_logs(|| host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(&[(M1, "10.30.1.1")])})));
    assert!(statuses.is_empty() && host.sim.rules().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert!(logs.contains("rolled back"), "{logs}");
}

#[test]
fn an_operation_is_applied_soon_after_its_commit_becomes_visible() {
    let host = Host::start("prompt", Duration::from_secs(10));
    let tree = tree(&[(M1, "10.30.1.1")]);
    let service = Arc::clone(&host.service);
    let create = json!({"loadbalancer": tree.clone()});
    let applying = std::thread::spawn(move || {
        let statuses = service.apply("loadbalancer_create", &create);
        (statuses, Instant::now())
    });
    // Octavia commits a while after the cast (its transaction goes on after the provider returns).
    while host.get.requests() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(400));
    host.octavia.commit(&tree);
    let visible = Instant::now();
    let (statuses, applied) = applying.join().unwrap();
    assert!(!statuses.is_empty());
    // The host's own work (policy, LoxiLB, report) takes a few ms; the rest is the wait noticing.
    let lag = applied - visible;
    assert!(lag < Duration::from_millis(150), "applied {lag:?} after the commit became visible");
}

#[test]
fn runtime_recovery_while_a_delete_is_not_reported_yet_does_not_bring_the_member_back() {
    let host = Host::start("recover-unreported", Duration::from_secs(5));
    host.octavia.commit(&tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]));
    assert_eq!(host.service.adopt(LB, false), Ok(host::service::Adopted::Synced));
    assert_eq!(host.endpoints(), vec!["10.30.1.1", "10.30.1.2"]);
    // Another host created a second listener and pool meanwhile: this one's mapping lacks them.
    const L2: &str = "cccccccc-0000-4000-8000-000000000012";
    const P2: &str = "cccccccc-0000-4000-8000-000000000022";
    const M3: &str = "cccccccc-0000-4000-8000-000000000103";
    let m3 = member(M3, P2, "10.30.2.1", 8080, 1);
    let mut grown = tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]);
    grown["listeners"].as_array_mut().unwrap().push(listener(L2, LB, "TCP", 81, Some(pool(P2, LB, Some(L2), "TCP", vec![m3.clone()], None))));
    host.octavia.commit(&grown);
    // A member of that pool arrives while the delete of M2 is applied but not reported: Octavia still
    // shows M2 when the host recovers the load balancer to find the pool.
    let service = Arc::clone(&host.service);
    let creating = Arc::new(Mutex::new(None));
    let thread = Arc::clone(&creating);
    *host.sink.during_next_report.lock().unwrap() = Some(Box::new(move || {
        // Applied during the delete's report; its own report goes after that one (the reporter keeps a
        // load balancer's reports in order), so it is not waited for here.
        let (applying, before) = (Arc::clone(&service), service.epochs.generation());
        *thread.lock().unwrap() = Some(std::thread::spawn(move || applying.apply("member_create", &json!({"member": m3, "loadbalancer_id": LB}))));
        let deadline = Instant::now() + Duration::from_secs(5);
        while service.epochs.generation() == before {
            assert!(Instant::now() < deadline, "the member create was not applied");
            std::thread::sleep(Duration::from_millis(5));
        }
    }));
    host.service.apply("member_delete", &json!({"member": member(M2, P1, "10.30.1.2", 8080, 1), "loadbalancer_id": LB}));
    assert!(host.sink.during_next_report.lock().unwrap().is_none(), "the member create ran inside the report");
    creating.lock().unwrap().take().expect("the member create was started").join().unwrap();
    assert!(!host.endpoints().contains(&"10.30.1.2".to_string()), "recovery brought the deleted member back: {:?}", host.endpoints());
    assert!(!host.mapped_ids().contains(&M2.to_string()));
}

#[test]
fn a_load_balancer_recovered_from_a_rule_without_octavia_ids_is_left_alone() {
    let host = Host::start("made-up-ids", Duration::from_secs(5));
    let rule = json!({"serviceArguments": {"externalIP": "10.30.9.9", "port": 80, "protocol": "tcp", "sel": 0, "mode": 2, "name": "web"},
                      "endpoints": [{"endpointIP": "10.30.9.1", "targetPort": 8080, "weight": 1}]});
    let (status, body) = host.loxilb.request("POST", "/config/loadbalancer", Some(&rule.to_string())).unwrap();
    assert_eq!(status, 200, "{body}");
    let report = host.service.sandbox.lock().unwrap().recover(host::execute::RecoveryMode::Loxilb).unwrap().unwrap();
    assert_eq!(report.deterministic, 1);
    let mapped = host.mapped_ids();
    host.monitor().sync_from_octavia();
    assert_eq!(host.get.requests(), 0, "Octavia was asked about an id it cannot know");
    assert_eq!(host.mapped_ids(), mapped);
    assert_eq!(host.sim.rules().len(), 1);
}

#[test]
fn runtime_recovery_from_loxilb_adds_to_the_mapping_and_never_clears_it() {
    let host = Host::start("recovery-keeps", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    let mapped = host.mapped_ids();
    assert!(mapped.contains(&M1.to_string()), "{mapped:?}");
    // LoxiLB restarted and lost every rule: recovery from it finds nothing to add and must drop nothing.
    host.sim.restart();
    let report = host.service.sandbox.lock().unwrap().recover(host::execute::RecoveryMode::Loxilb).unwrap().unwrap();
    assert_eq!(report.recovered, 0);
    assert_eq!(host.mapped_ids(), mapped);
}

/// The provisioning statuses reported since `from` (an index into the recorded documents).
fn reported_since(host: &Host, from: usize) -> Vec<(String, String)> {
    provisioning_statuses(&host.sink.recorded.documents.lock().unwrap()[from..])
}

fn recorded(host: &Host) -> usize {
    host.sink.recorded.documents.lock().unwrap().len()
}

#[test]
fn a_load_balancer_created_while_loxilb_was_down_is_programmed_and_reported_active_once_it_answers() {
    let host = Host::start("reprogram-lb", Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1")]);
    host.octavia.commit(&tree);
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    let failed = host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    assert!(provisioning_statuses(&[host::octavia::status::document(&failed)]).contains(&(format!("loadbalancers/{LB}"), "ERROR".into())));
    let monitor = host.monitor();
    let mut upkeep = host::monitor::Upkeep::default();
    monitor.tick(&mut upkeep);
    assert!(host.sim.rules().is_empty() && host.mapped_ids().is_empty(), "LoxiLB is still down");

    let before = recorded(&host);
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    monitor.tick(&mut upkeep);
    assert_eq!(host.endpoints(), ["10.30.1.1"], "programmed as Octavia shows it");
    assert_eq!(host.mapped_ids().len(), 4);
    let reported = reported_since(&host, before);
    for id in [LB, L1, P1, M1] {
        assert!(reported.iter().any(|(o, s)| o.ends_with(id) && s == "ACTIVE"), "{id} not reported ACTIVE: {reported:?}");
    }
    assert!(host.service.reprogram.is_empty());
    // Done once: the next check has nothing more to program or report.
    let before = recorded(&host);
    monitor.tick(&mut upkeep);
    assert_eq!(recorded(&host), before);
}

#[test]
fn a_member_added_while_loxilb_was_down_is_programmed_once_it_answers_and_a_deleted_load_balancer_is_not() {
    let host = Host::start("reprogram-member", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    let with_m2 = tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]);
    host.octavia.commit(&with_m2);
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    let m2 = member(M2, P1, "10.30.1.2", 8080, 1);
    let failed = host.service.apply("member_create", &json!({"member": m2, "loadbalancer_id": LB}));
    assert!(provisioning_statuses(&[host::octavia::status::document(&failed)]).contains(&(format!("members/{M2}"), "ERROR".into())));
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    assert_eq!(host.endpoints(), ["10.30.1.1"], "nothing half-applied");

    let before = recorded(&host);
    let monitor = host.monitor();
    monitor.tick(&mut host::monitor::Upkeep::default());
    assert_eq!(host.endpoints(), ["10.30.1.1", "10.30.1.2"]);
    assert!(reported_since(&host, before).contains(&(format!("members/{M2}"), "ACTIVE".into())));

    // A load balancer Octavia deleted before LoxiLB answered again is not brought back.
    let other = Host::start("reprogram-deleted", Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1")]);
    other.octavia.commit(&tree);
    other.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    other.service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    other.octavia.delete_all();
    other.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    other.monitor().tick(&mut host::monitor::Upkeep::default());
    assert!(other.sim.rules().is_empty() && other.mapped_ids().is_empty());
    assert!(other.service.reprogram.is_empty());
}

#[test]
fn a_load_balancer_octavia_no_longer_has_is_removed_at_the_next_check_when_loxilb_failed_its_removal() {
    // The removal used to be forgotten until the next sync (`reconcile_interval`, a minute by default),
    // the load balancer served meanwhile.
    let host = Host::start("removal-failed", Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1")]);
    host.octavia.commit(&tree);
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    assert_eq!(host.sim.rules().len(), 1);
    host.octavia.delete_all();
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    assert_eq!(host.service.adopt(LB, false), Ok(host::service::Adopted::RemovalFailed));
    assert_eq!(host.sim.rules().len(), 1);
    // The next attempt fails too: it is kept for another.
    host.service.reprogram_failed();
    assert!(!host.service.reprogram.is_empty(), "a failed removal was forgotten");
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    host.service.reprogram.hurry(LB);
    host.monitor().tick(&mut host::monitor::Upkeep::default());
    assert!(host.sim.rules().is_empty() && host.mapped_ids().is_empty(), "still served: {:?}", host.sim.rules());
    assert!(host.service.reprogram.is_empty());
}

#[test]
fn a_load_balancer_that_failed_at_loxilb_is_not_reported_active_while_an_operation_of_it_waits() {
    // Octavia's get socket leaves provisioning statuses out of what it answers: only the host's own lanes
    // show an operation of the load balancer accepted and not yet applied. Reported ACTIVE meanwhile, the
    // load balancer was open to further changes while Octavia showed that operation's member PENDING.
    const M3: &str = "cccccccc-0000-4000-8000-000000000103";
    let host = Host::start("reprogram-waiting", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    host.octavia.commit(&tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]));
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    host.service.apply("member_create", &json!({"member": member(M2, P1, "10.30.1.2", 8080, 1), "loadbalancer_id": LB}));
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    assert!(!host.service.reprogram.is_empty());

    host.service.start_worker(Vec::new());
    host.service.cast("member_create", json!({"member": member(M3, P1, "10.30.1.3", 8080, 1), "loadbalancer_id": LB})).unwrap();
    let before = recorded(&host);
    host.service.reprogram_failed();
    assert_eq!(reported_since(&host, before), Vec::<(String, String)>::new(), "reported while the member's operation waits for its commit");
    assert!(!host.service.reprogram.is_empty(), "left to a later round");

    host.octavia.commit(&tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2"), (M3, "10.30.1.3")]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.service.backlog() > 0 {
        assert!(Instant::now() < deadline, "the member's operation was not applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    host.service.reprogram_failed();
    assert_eq!(host.endpoints(), ["10.30.1.1", "10.30.1.2", "10.30.1.3"]);
    assert!(host.service.reprogram.is_empty());
}

/// What failed at LoxiLB is programmed once it answers, and its objects reported ACTIVE. A cascade
/// delete applied meanwhile (by `delete`, given the service and the deleted tree) was reported DELETED
/// while that report was still on its way: Octavia took DELETED, then ACTIVE, and showed the deleted load
/// balancer ACTIVE again, served by nothing.
fn a_delete_as_the_reprogramming_is_reported_is_reported_after_it(name: &str, delete: impl Fn(&Arc<Service>, Value) + Send + 'static) {
    let host = Host::start(name, Duration::from_secs(5));
    let tree = tree(&[(M1, "10.30.1.1")]);
    host.octavia.commit(&tree);
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    assert!(!host.service.reprogram.is_empty());
    host.service.start_worker(Vec::new());

    let lb_status = |documents: &[Value]| -> Vec<String> {
        provisioning_statuses(documents).into_iter().filter(|(o, _)| *o == format!("loadbalancers/{LB}")).map(|(_, s)| s).collect()
    };
    let (service, octavia, sink) = (Arc::clone(&host.service), Arc::clone(&host.octavia), Arc::clone(&host.sink));
    let deleting = Arc::new(Mutex::new(None));
    let thread = Arc::clone(&deleting);
    // The user deletes the load balancer while its ACTIVE is on its way to Octavia.
    *host.sink.during_next_report.lock().unwrap() = Some(Box::new(move || {
        octavia.delete_all();
        *thread.lock().unwrap() = Some(std::thread::spawn(move || delete(&service, tree)));
        // Until the delete's DELETED reached Octavia, or 2 s: it must wait for this report.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !lb_status(&sink.recorded.documents.lock().unwrap()).contains(&"DELETED".to_string()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }));
    let before = recorded(&host);
    host.service.reprogram_failed();
    let delete = deleting.lock().unwrap().take().expect("the delete was started as the load balancer was reported");
    delete.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.service.backlog() > 0 {
        assert!(Instant::now() < deadline, "the delete was not applied and reported");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(host.sim.rules().is_empty() && host.mapped_ids().is_empty(), "still served: {:?}", host.sim.rules());
    let reported = lb_status(&host.sink.recorded.documents.lock().unwrap()[before..]);
    assert_eq!(reported, ["ACTIVE", "DELETED"], "the load balancer's statuses as Octavia took them");
}

#[test]
fn a_load_balancer_deleted_over_the_unix_socket_as_its_reprogramming_is_reported_is_not_shown_active_after_its_delete() {
    a_delete_as_the_reprogramming_is_reported_is_reported_after_it("reprogram-then-cast", |service, tree| {
        service.cast("loadbalancer_delete", json!({"loadbalancer": tree, "cascade": true, "loadbalancer_id": LB})).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while service.backlog() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn a_load_balancer_deleted_over_amqp_as_its_reprogramming_is_reported_is_not_shown_active_after_its_delete() {
    // The AMQP transport applies and reports an operation before acknowledging it (`Service::apply_while`).
    a_delete_as_the_reprogramming_is_reported_is_reported_after_it("reprogram-then-amqp", |service, tree| {
        service.apply("loadbalancer_delete", &json!({"loadbalancer": tree, "cascade": true, "loadbalancer_id": LB}));
    });
}

#[test]
fn the_sync_leaves_a_load_balancer_to_an_operation_of_it_still_waiting() {
    // The get socket shows a member whose create the host accepted and has not applied yet (Octavia
    // committed it): the operation, not the sync, brings the load balancer up to date.
    let host = Host::start("sync-waiting", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    host.service.start_worker(Vec::new());
    host.service.cast("member_create", json!({"member": member(M2, P1, "10.30.1.2", 8080, 1), "loadbalancer_id": LB})).unwrap();
    assert_eq!(host.service.adopt(LB, true), Ok(host::service::Adopted::Pending));
    host.octavia.commit(&tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.service.backlog() > 0 {
        assert!(Instant::now() < deadline, "the member's operation was not applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(host.service.adopt(LB, true), Ok(host::service::Adopted::Synced));
    assert_eq!(host.endpoints(), ["10.30.1.1", "10.30.1.2"]);
}

#[test]
fn a_failover_programs_what_failed_at_loxilb_at_the_next_check_rather_than_after_its_pause() {
    let host = Host::start("reprogram-failover", Duration::from_secs(5));
    host.create(&tree(&[(M1, "10.30.1.1")]));
    host.octavia.commit(&tree(&[(M1, "10.30.1.1"), (M2, "10.30.1.2")]));
    host.sim.inject_fault(100_000, loxilb_sim::Fault::Reset);
    let m2 = member(M2, P1, "10.30.1.2", 8080, 1);
    host.service.apply("member_create", &json!({"member": m2, "loadbalancer_id": LB}));
    host.sim.inject_fault(0, loxilb_sim::Fault::Reset);
    // An attempt failed already: the next waits (4 s).
    host.service.reprogram.failed_again(LB);
    let monitor = host.monitor();
    let mut upkeep = host::monitor::Upkeep::default();
    monitor.tick(&mut upkeep);
    assert_eq!(host.endpoints(), ["10.30.1.1"], "the member that failed waits for its next attempt");

    let failed_over = host.service.apply("loadbalancer_failover", &json!({"loadbalancer_id": LB}));
    assert_eq!(provisioning_statuses(&[host::octavia::status::document(&failed_over)]), [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
    let before = recorded(&host);
    monitor.tick(&mut upkeep);
    assert_eq!(host.endpoints(), ["10.30.1.1", "10.30.1.2"]);
    assert!(reported_since(&host, before).contains(&(format!("members/{M2}"), "ACTIVE".into())));
    assert!(host.service.reprogram.is_empty());
}
