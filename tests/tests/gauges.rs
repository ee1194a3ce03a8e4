//! The mapping's size is a metric (alone in its test binary: the gauge is process-wide).

use std::sync::Arc;
use std::time::Duration;

use host::caps::loxilb::{HttpLoxi, LoxiTransport};
use host::caps::storage::MemoryStore;
use host::monitor::Monitor;
use host::octavia::status::RecordingSink;
use host::service::Service;
use integration_tests::*;
use serde_json::json;

#[test]
fn a_reconciliation_pass_reports_how_many_objects_the_mapping_holds() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(5)));
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor = Monitor { service: Arc::clone(&service), loxilb, agent: None, stats_interval: Duration::ZERO, reconcile_interval: Duration::ZERO };
    let (lb, l1, p1) = ("eeeeeeee-0000-4000-8000-000000000001", "eeeeeeee-0000-4000-8000-000000000011", "eeeeeeee-0000-4000-8000-000000000021");
    let members = vec![
        member("eeeeeeee-0000-4000-8000-000000000101", p1, "10.41.1.1", 8080, 1),
        member("eeeeeeee-0000-4000-8000-000000000102", p1, "10.41.1.2", 8080, 1),
    ];
    let tree = loadbalancer(lb, "10.41.0.10", vec![listener(l1, lb, "TCP", 80, Some(pool(p1, lb, Some(l1), "TCP", members, None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    monitor.reconcile();
    assert_eq!(host::metrics::MAPPING_ENTRIES.get(), 5, "a load balancer, a listener, a pool and two members");
    assert!(host::metrics::render().contains("loxilb_octavia_mapping_entries 5"));
}
