//! Every LoxiLB node holds every rule (issue 13, item 1): `api_endpoints` is a cluster, each change goes
//! to every node; a node that did not answer is out of date and is brought back to the desired rules at
//! the next liveness check once it answers, and so is one that restarted and lost its rules.

use std::sync::Arc;
use std::time::Duration;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::monitor::{Monitor, Upkeep};
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::MemoryStore;
use integration_tests::*;
use loxilb_sim::{Fault, Simulator};
use serde_json::json;

const LB: &str = "abababab-0000-4000-8000-000000000001";
const L1: &str = "abababab-0000-4000-8000-000000000011";
const P1: &str = "abababab-0000-4000-8000-000000000021";

fn m(n: u32) -> serde_json::Value {
    member(&format!("abababab-0000-4000-8000-0000000001{n:02}"), P1, &format!("10.90.1.{n}"), 8080, 1)
}

#[test]
fn every_node_holds_every_rule_and_a_node_that_missed_changes_or_restarted_converges_at_the_next_check() {
    let (nodes, _, service, monitor) = cluster(3);
    let mut upkeep = Upkeep::default();
    monitor.reconcile();

    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    let created = provisioning_statuses(&[host::octavia::status::document(&service.apply("loadbalancer_create", &json!({"loadbalancer": tree})))]);
    assert!(created.contains(&(format!("loadbalancers/{LB}"), "ACTIVE".into())), "{created:?}");
    for node in &nodes {
        assert_eq!(endpoint_ips(node), ["10.90.1.1"], "every node holds the rule");
    }

    // Node 2 does not answer: the change is taken by the others and succeeds; node 2 is out of date.
    nodes[2].inject_fault(100_000, Fault::Reset);
    let added = provisioning_statuses(&[host::octavia::status::document(&service.apply("member_create", &json!({"member": m(2), "loadbalancer_id": LB})))]);
    assert!(added.iter().all(|(_, s)| s == "ACTIVE"), "{added:?}");
    assert_eq!(endpoint_ips(&nodes[0]), ["10.90.1.1", "10.90.1.2"]);
    assert_eq!(endpoint_ips(&nodes[2]), ["10.90.1.1"]);
    monitor.tick(&mut upkeep);
    assert_eq!(endpoint_ips(&nodes[2]), ["10.90.1.1"], "still down");
    // It comes back empty (a restarted LoxiLB keeps no rules) and answers: the next check, within
    // LIVENESS_PERIOD (2 s), brings it to the desired rules.
    nodes[2].restart();
    nodes[2].inject_fault(0, Fault::Reset);
    monitor.tick(&mut upkeep);
    assert_eq!(endpoint_ips(&nodes[2]), ["10.90.1.1", "10.90.1.2"]);

    // Node 1 restarts and loses every rule, answering all along.
    nodes[1].restart();
    assert!(nodes[1].rules().is_empty());
    monitor.tick(&mut upkeep);
    assert_eq!(endpoint_ips(&nodes[1]), ["10.90.1.1", "10.90.1.2"]);

    // No node answers: the operation fails and nothing is half-applied anywhere.
    for node in &nodes {
        node.inject_fault(100_000, Fault::Reset);
    }
    let failed = provisioning_statuses(&[host::octavia::status::document(&service.apply("member_create", &json!({"member": m(3), "loadbalancer_id": LB})))]);
    assert!(failed.iter().any(|(_, s)| s == "ERROR"), "{failed:?}");
    for node in &nodes {
        node.inject_fault(0, Fault::Reset);
        assert_eq!(endpoint_ips(node), ["10.90.1.1", "10.90.1.2"]);
    }
}

#[test]
fn a_node_that_refuses_a_change_fails_it_and_the_others_are_put_back() {
    let (nodes, _, service) = cluster_service(2);
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    nodes[1].fail_next(1, 400, "rule-allowed-src error");
    let failed = provisioning_statuses(&[host::octavia::status::document(&service.apply("member_create", &json!({"member": m(2), "loadbalancer_id": LB})))]);
    assert!(failed.iter().any(|(_, s)| s == "ERROR"), "{failed:?}");
    for node in &nodes {
        assert_eq!(endpoint_ips(node), ["10.90.1.1"], "LoxiLB serves nothing Octavia shows as ERROR, on any node");
    }
}

/// A LoxiLB cluster of `n` simulators, a service over it and its monitor (statuses rendered on demand).
fn cluster(n: usize) -> (Vec<Simulator>, Arc<dyn LoxiTransport>, Arc<Service>, Monitor) {
    let (nodes, loxilb, service) = cluster_service(n);
    let monitor =
        Monitor { service: Arc::clone(&service), loxilb: Arc::clone(&loxilb), agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::ZERO };
    (nodes, loxilb, service, monitor)
}

#[test]
fn each_node_reports_its_role_version_and_drift() {
    let (nodes, loxilb, service, monitor) = cluster(3);
    nodes[0].set_role("MASTER");
    nodes[1].set_role("BACKUP");
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    monitor.tick(&mut Upkeep::default());
    let states: Vec<_> = loxilb.nodes().iter().map(|n| n.state()).collect();
    assert_eq!(states.iter().map(|s| s.role.as_deref()).collect::<Vec<_>>(), [Some("MASTER"), Some("BACKUP"), Some("NOT_DEFINED")]);
    assert!(states.iter().all(|s| s.version.as_deref() == Some("v0.9.8.5-sim")), "{states:?}");
    let metrics = host::metrics::render();
    assert!(metrics.contains(&format!("loxilb_octavia_loxilb_node_master{{node=\"{}\"}} 1", nodes[0].url())), "{metrics}");
    assert!(metrics.contains(&format!("loxilb_octavia_loxilb_node_master{{node=\"{}\"}} 0", nodes[1].url())), "{metrics}");

    // Node 1 restarted (rules and role forgotten), node 2 is down: `nodes` says so, node by node.
    nodes[1].restart();
    nodes[2].inject_fault(100_000, Fault::Reset);
    let desired = service.sandbox.lock().unwrap().desired_rules().unwrap();
    let reports = host::nodes::reports(&loxilb, Some(&desired));
    let brief: Vec<_> =
        reports.iter().map(|r| (r.unreachable.is_none(), r.role.as_deref(), r.rules, r.drift.map(|d| (d.missing, d.different, d.extra)))).collect();
    assert_eq!(brief, [(true, Some("MASTER"), Some(1), Some((0, 0, 0))), (true, Some("NOT_DEFINED"), Some(0), Some((1, 0, 0))), (false, None, None, None)]);
    assert!(reports[0].healthy() && !reports[1].healthy() && !reports[2].healthy());
    assert!(reports[2].unreachable.as_deref().unwrap().contains("GET /version"), "{:?}", reports[2].unreachable);
}

#[test]
fn operating_statuses_count_a_rule_held_by_any_answering_node_and_error_when_none_holds_it() {
    let (nodes, _loxilb, service, monitor) = cluster(2);
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let statuses = || -> Vec<(String, String)> {
        let doc = host::octavia::status::document(&monitor.operating_statuses().unwrap());
        ["loadbalancers", "listeners"].iter().map(|kind| (kind.to_string(), doc[kind][0]["operating_status"].as_str().unwrap().to_string())).collect()
    };
    let online = vec![("loadbalancers".to_string(), "ONLINE".to_string()), ("listeners".to_string(), "ONLINE".to_string())];
    let error = vec![("loadbalancers".to_string(), "ERROR".to_string()), ("listeners".to_string(), "ERROR".to_string())];
    assert_eq!(statuses(), online);
    // One node lost its rules: the other still holds them, and serves.
    nodes[0].restart();
    monitor.tick(&mut Upkeep::default()); // the survey marks who answers; it also repairs node 0
    nodes[0].restart();
    assert_eq!(statuses(), online);
    // The node that holds them stops answering: no answering node holds the rule.
    nodes[1].inject_fault(100_000, Fault::Reset);
    monitor.loxilb.survey();
    assert_eq!(statuses(), error);
    // No node answers at all.
    nodes[0].inject_fault(100_000, Fault::Reset);
    monitor.loxilb.survey();
    assert_eq!(statuses(), error);
}

#[test]
fn statuses_turn_error_only_once_no_node_has_answered_for_a_statistics_interval() {
    let nodes: Vec<Simulator> = (0..2).map(|_| Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap()).collect();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(nodes.iter().map(|n| n.url()).collect(), Duration::from_secs(2)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let sink = Arc::new(RecordingSink::default());
    let service = Service::new(sandbox, None, sink.clone(), Duration::from_secs(1));
    let interval = Duration::from_millis(300);
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: interval, reconcile_interval: Duration::ZERO };
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let mut upkeep = Upkeep::default();
    let lb_operating = |sink: &RecordingSink| -> Vec<String> {
        let docs = sink.documents.lock().unwrap();
        docs.iter()
            .flat_map(|d| d["loadbalancers"].as_array().cloned().unwrap_or_default())
            .filter_map(|l| l["operating_status"].as_str().map(str::to_string))
            .collect()
    };
    std::thread::sleep(interval);
    monitor.tick(&mut upkeep);
    let before = lb_operating(&sink).len();
    let since = |sink: &RecordingSink| lb_operating(sink)[before..].to_vec();

    for node in &nodes {
        node.inject_fault(100_000, Fault::Reset);
    }
    std::thread::sleep(interval);
    monitor.tick(&mut upkeep);
    assert!(since(&sink).is_empty(), "one failed check flips nothing");
    std::thread::sleep(interval);
    monitor.tick(&mut upkeep);
    assert_eq!(since(&sink), ["ERROR"], "no node has answered for an interval");

    for node in &nodes {
        node.inject_fault(0, Fault::Reset);
    }
    std::thread::sleep(interval);
    monitor.tick(&mut upkeep);
    assert_eq!(since(&sink), ["ERROR", "ONLINE"]);
}

/// Two nodes holding a load balancer's rule, the second cut off (not restarted: it keeps its rules) while
/// the load balancer is deleted, and a liveness check while it is.
fn cut_off_during_a_delete() -> (Vec<Simulator>, Arc<Service>, Monitor, Upkeep) {
    let (nodes, _, service, monitor) = cluster(2);
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    let mut upkeep = Upkeep::default();
    monitor.tick(&mut upkeep);
    nodes[1].inject_fault(100_000, Fault::Reset);
    let deleted =
        provisioning_statuses(&[host::octavia::status::document(&service.apply("loadbalancer_delete", &json!({"loadbalancer": tree, "cascade": true})))]);
    assert!(deleted.contains(&(format!("loadbalancers/{LB}"), "DELETED".into())), "{deleted:?}");
    assert!(nodes[0].rules().is_empty());
    monitor.tick(&mut upkeep);
    assert_eq!(endpoint_ips(&nodes[1]), ["10.90.1.1"], "the node cut off kept it");
    (nodes, service, monitor, upkeep)
}

/// A node that did not answer a delete must not go on serving the deleted load balancer's VIP once it
/// answers again, whatever `remove_orphans` says: the rules the host deleted while it was away are
/// deleted there too.
#[test]
fn a_node_that_missed_a_delete_drops_the_rule_once_it_answers() {
    let (nodes, _, monitor, mut upkeep) = cut_off_during_a_delete();
    nodes[1].inject_fault(0, Fault::Reset);
    monitor.tick(&mut upkeep);
    assert!(nodes[1].rules().is_empty(), "{:?}", nodes[1].rules());
    assert!(!monitor.loxilb.nodes()[1].state().out_of_date);
    assert!(monitor.loxilb.nodes()[1].missed_deletes().is_empty());
}

/// A rule deleted while a node was cut off, then wanted again (another load balancer on the same VIP and
/// port), is the new one there once the node answers: the missed delete does not take it away.
#[test]
fn a_missed_delete_of_a_rule_wanted_again_leaves_the_new_one() {
    let (nodes, service, monitor, mut upkeep) = cut_off_during_a_delete();
    let (lb2, l2, p2) = ("abababab-0000-4000-8000-000000000002", "abababab-0000-4000-8000-000000000012", "abababab-0000-4000-8000-000000000022");
    let again = member("abababab-0000-4000-8000-000000000199", p2, "10.90.1.9", 8080, 1);
    let tree2 = loadbalancer(lb2, "10.90.0.10", vec![listener(l2, lb2, "TCP", 80, Some(pool(p2, lb2, Some(l2), "TCP", vec![again], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree2}));
    assert_eq!(endpoint_ips(&nodes[0]), ["10.90.1.9"]);

    nodes[1].inject_fault(0, Fault::Reset);
    monitor.tick(&mut upkeep);
    assert_eq!(nodes[1].rules(), nodes[0].rules(), "the node holds the new rule, as the other does");
    assert!(monitor.loxilb.nodes()[1].missed_deletes().is_empty());
}

/// The deletes a node missed outlive a restart of the host: they are kept in a file beside the mapping,
/// and the node drops the deleted load balancer's rule once it answers, although the host that deleted it
/// is gone. Kept in memory only, they were lost, and the node went on serving the VIP (its rule an orphan,
/// which `remove_orphans = false` keeps).
#[test]
fn a_delete_a_node_missed_before_a_restart_of_the_host_is_made_there_once_it_answers() {
    let dir = TempDir::new("loxilb-missed-deletes");
    let file = dir.join("mappings.json.missed-deletes");
    let nodes: Vec<Simulator> = (0..2).map(|_| Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap()).collect();
    let connect = || -> Arc<dyn LoxiTransport> { Arc::new(HttpLoxi::new(nodes.iter().map(|n| n.url()).collect(), Duration::from_secs(2))) };

    let loxilb = connect();
    assert_eq!(host::missed_deletes::persist_at(&loxilb, &file).unwrap(), 0);
    let service = service_on(&loxilb);
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    nodes[1].inject_fault(100_000, Fault::Reset);
    service.apply("loadbalancer_delete", &json!({"loadbalancer": tree, "cascade": true}));
    assert!(nodes[0].rules().is_empty());
    drop((service, loxilb));

    // The host starts again (its mapping without the deleted load balancer); the node answers again.
    let loxilb = connect();
    assert_eq!(host::missed_deletes::persist_at(&loxilb, &file).unwrap(), 1, "{}", std::fs::read_to_string(&file).unwrap_or_default());
    let service = service_on(&loxilb);
    let monitor = Monitor { service, loxilb: Arc::clone(&loxilb), agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::ZERO };
    assert_eq!(endpoint_ips(&nodes[1]), ["10.90.1.1"], "the node cut off kept it");
    nodes[1].inject_fault(0, Fault::Reset);
    monitor.tick(&mut Upkeep::default());
    assert!(nodes[1].rules().is_empty(), "{:?}", nodes[1].rules());
    assert!(loxilb.nodes()[1].missed_deletes().is_empty());
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(saved["nodes"].as_object().unwrap().values().all(|paths| paths.as_array().unwrap().is_empty()), "{saved}");
}
