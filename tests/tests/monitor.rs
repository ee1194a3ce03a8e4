//! The monitor against the LoxiLB simulator: a LoxiLB restart that falls between two liveness checks (so
//! LoxiLB is never seen down) is repaired at the next check, not at the next reconciliation interval.

use std::sync::Arc;
use std::time::Duration;

use host::caps::loxilb::{HttpLoxi, LoxiTransport};
use host::caps::storage::MemoryStore;
use host::monitor::{Monitor, Upkeep};
use host::octavia::status::RecordingSink;
use host::service::Service;
use integration_tests::*;
use serde_json::json;

const LB: &str = "dddddddd-0000-4000-8000-000000000001";
const L1: &str = "dddddddd-0000-4000-8000-000000000011";
const P1: &str = "dddddddd-0000-4000-8000-000000000021";
const M1: &str = "dddddddd-0000-4000-8000-000000000101";

fn posts(sim: &loxilb_sim::Simulator) -> usize {
    sim.requests().iter().filter(|r| r.method == "POST").count()
}

#[test]
fn a_loxilb_restart_between_two_liveness_checks_is_repaired_at_the_next_check() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::from_secs(3600) };
    let mut upkeep = Upkeep::default();
    monitor.tick(&mut upkeep);

    let members = vec![member(M1, P1, "10.40.1.1", 8080, 1)];
    let tree = loadbalancer(LB, "10.40.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))]);
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
