//! Every LoxiLB node holds every rule (issue 13, item 1): `api_endpoints` is a cluster, each change goes
//! to every node; a node that did not answer is out of date and is brought back to the desired rules at
//! the next liveness check once it answers, and so is one that restarted and lost its rules.

use std::sync::Arc;
use std::time::Duration;

use host::caps::loxilb::{HttpLoxi, LoxiTransport};
use host::caps::storage::MemoryStore;
use host::monitor::{Monitor, Upkeep};
use host::octavia::status::RecordingSink;
use host::service::Service;
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
    let nodes: Vec<Simulator> = (0..3).map(|_| Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap()).collect();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(nodes.iter().map(|n| n.url()).collect(), Duration::from_secs(2)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor =
        Monitor { service: Arc::clone(&service), loxilb: Arc::clone(&loxilb), agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::ZERO };
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
    // It answers again: the next check brings it to the desired rules.
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
    let nodes: Vec<Simulator> = (0..2).map(|_| Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap()).collect();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(nodes.iter().map(|n| n.url()).collect(), Duration::from_secs(2)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let tree = loadbalancer(LB, "10.90.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    nodes[1].fail_next(1, 400, "rule-allowed-src error");
    let failed = provisioning_statuses(&[host::octavia::status::document(&service.apply("member_create", &json!({"member": m(2), "loadbalancer_id": LB})))]);
    assert!(failed.iter().any(|(_, s)| s == "ERROR"), "{failed:?}");
    for node in &nodes {
        assert_eq!(endpoint_ips(node), ["10.90.1.1"], "LoxiLB serves nothing Octavia shows as ERROR, on any node");
    }
}
