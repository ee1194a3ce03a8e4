//! `openstack loadbalancer failover`: an operator fails a load balancer over when its traffic is wrong.
//! Its rules are compared with what each LoxiLB node lists and repaired there at once (missing or
//! drifted), the other load balancers' left to reconciliation; it fails only when no node answers or one
//! refuses a repair.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::octavia::status::document;
use host::service::Service;
use integration_tests::*;
use loxilb_sim::{Fault, Simulator};
use serde_json::{json, Value};

const LB: &str = "fa11fa11-0000-4000-8000-000000000001";
const LB2: &str = "fa11fa11-0000-4000-8000-000000000002";

fn tree(lb: &str, n: u8) -> Value {
    let (l, p) = (format!("fa11fa11-0000-4000-8000-0000000000{n}1"), format!("fa11fa11-0000-4000-8000-0000000000{n}2"));
    let members = (1..=2).map(|i| member(&format!("fa11fa11-0000-4000-8000-000000000{n}{i}0"), &p, &format!("10.95.{n}.{i}"), 8080, 1)).collect();
    loadbalancer(lb, &format!("10.95.0.{n}"), vec![listener(&l, lb, "TCP", 80, Some(pool(&p, lb, Some(&l), "TCP", members, None)))])
}

fn endpoints_of(node: &Simulator, vip: &str) -> Vec<String> {
    let mut ips: Vec<String> = node
        .rules()
        .iter()
        .filter(|r| r["serviceArguments"]["externalIP"] == vip)
        .flat_map(|r| r["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["endpointIP"].as_str().unwrap_or_default().to_string())
        .collect();
    ips.sort();
    ips
}

fn failover(service: &Service, lb: &str) -> Vec<(String, String)> {
    provisioning_statuses(&[document(&service.apply("loadbalancer_failover", &json!({"loadbalancer_id": lb})))])
}

#[test]
fn a_failover_repairs_the_load_balancers_rules_on_every_node_at_once() {
    let (nodes, loxilb, service) = cluster_service(2);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB, 1)}));
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB2, 2)}));

    // Node 0's rule of LB drifts (an endpoint replaced behind the host's back); node 1 restarts and
    // loses every rule.
    let mut drifted = nodes[0].rules().into_iter().find(|r| r["serviceArguments"]["externalIP"] == "10.95.0.1").unwrap();
    drifted["endpoints"][1]["endpointIP"] = json!("10.95.1.9");
    let (status, body) = nodes[0].in_process().exchange("POST", "/netlox/v1/config/loadbalancer", Some(&drifted.to_string()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(endpoints_of(&nodes[0], "10.95.0.1"), ["10.95.1.1", "10.95.1.9"]);
    nodes[1].restart();

    let repaired = host::metrics::RULES_REPAIRED.get();
    let statuses = failover(&service, LB);
    assert_eq!(statuses, [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
    assert!(host::metrics::RULES_REPAIRED.get() >= repaired + 2, "a repair on each node is counted");
    for node in &nodes {
        assert_eq!(endpoints_of(node, "10.95.0.1"), ["10.95.1.1", "10.95.1.2"], "{}", node.url());
    }
    assert_eq!(endpoints_of(&nodes[1], "10.95.0.2"), Vec::<String>::new(), "another load balancer's rules are reconciliation's");

    // Nothing to repair: the nodes are only listed.
    for node in &nodes {
        node.clear_requests();
    }
    assert_eq!(failover(&service, LB), [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
    for node in &nodes {
        assert!(node.requests().iter().all(|r| r.method == "GET"), "{:?}", node.requests().iter().map(|r| (&r.method, &r.path)).collect::<Vec<_>>());
    }

    // A node that does not answer is left out (and marked out of date for the monitor); the failover holds
    // on the others.
    nodes[1].restart();
    nodes[1].inject_fault(100_000, Fault::Reset);
    assert_eq!(failover(&service, LB), [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
    assert!(loxilb.nodes()[1].state().out_of_date);
    assert_eq!(endpoints_of(&nodes[0], "10.95.0.1"), ["10.95.1.1", "10.95.1.2"]);

    // No node answers: the failover fails.
    nodes[0].inject_fault(100_000, Fault::Reset);
    assert_eq!(failover(&service, LB), [(format!("loadbalancers/{LB}"), "ERROR".to_string())]);
}

/// LoxiLB as one target (no nodes of its own) that refuses the next POST.
struct RefusingOnePost {
    inner: Arc<dyn LoxiTransport>,
    refuse: AtomicBool,
}

impl LoxiTransport for RefusingOnePost {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        if method == "POST" && self.refuse.swap(false, Ordering::SeqCst) {
            return Ok((400, r#"{"code":400,"fields":null,"message":"rule-add error","result":"rule-add error"}"#.into()));
        }
        self.inner.request(method, path, body)
    }
}

#[test]
fn a_failover_loxilb_refuses_a_repair_of_fails_and_succeeds_when_tried_again() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let refusing = Arc::new(RefusingOnePost { inner: Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(2))), refuse: AtomicBool::new(false) });
    let service = service_on(&(Arc::clone(&refusing) as Arc<dyn LoxiTransport>));
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB, 1)}));
    sim.restart();
    refusing.refuse.store(true, Ordering::SeqCst);
    let failed = host::metrics::RULE_REPAIRS_FAILED.get();
    assert_eq!(failover(&service, LB), [(format!("loadbalancers/{LB}"), "ERROR".to_string())]);
    assert!(host::metrics::RULE_REPAIRS_FAILED.get() > failed, "the refused repair is counted");
    assert!(sim.rules().is_empty());
    assert_eq!(failover(&service, LB), [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
    assert_eq!(endpoints_of(&sim, "10.95.0.1"), ["10.95.1.1", "10.95.1.2"]);
}

/// The nodes are listed before the policy is held: a node slow to list its rules holds up the failover
/// alone, not another load balancer's operations.
#[test]
fn a_node_slow_to_list_its_rules_holds_up_no_other_operation() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let service = service_on(&(Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(10))) as Arc<dyn LoxiTransport>));
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB, 1)}));
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB2, 2)}));

    sim.clear_requests();
    sim.inject_fault(1, Fault::Late(Duration::from_secs(3)));
    let failing_over = {
        let service = Arc::clone(&service);
        std::thread::spawn(move || failover(&service, LB))
    };
    let listing = std::time::Instant::now();
    while !sim.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/config/loadbalancer/all")) {
        assert!(listing.elapsed() < Duration::from_secs(5), "the failover never listed the rules");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    let added = member("fa11fa11-0000-4000-8000-000000000230", "fa11fa11-0000-4000-8000-000000000022", "10.95.2.3", 8080, 1);
    let statuses = provisioning_statuses(&[document(&service.apply("member_create", &json!({"member": added, "loadbalancer_id": LB2})))]);
    let took = started.elapsed();
    assert!(statuses.iter().all(|(_, s)| s == "ACTIVE"), "{statuses:?}");
    assert!(took < Duration::from_millis(1500), "another load balancer's operation waited {took:?} for the failover's listing");
    assert_eq!(failing_over.join().unwrap(), [(format!("loadbalancers/{LB}"), "ACTIVE".to_string())]);
}
