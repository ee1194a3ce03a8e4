//! Process-wide gauges, alone in their test binary: the mapping's size, the policy's memory.

use std::sync::Arc;
use std::time::Duration;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::monitor::Monitor;
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::MemoryStore;
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

#[test]
fn the_policy_memory_is_reported_against_its_cap() {
    let config = host::config::Config::parse(&format!("[driver_loxilb]\nguest_memory_limit_mb = 48\npolicy_path = {}\n", default_policy().display())).unwrap();
    let storage: Arc<dyn host::storage::MappingStore> = Arc::new(MemoryStore::default());
    let sandbox = host::app::sandbox(&config, Arc::new(RecordingLoxi::default()), storage).unwrap();
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let (lb, l1, p1) = ("eeeeeeee-0000-4000-8000-000000000002", "eeeeeeee-0000-4000-8000-000000000012", "eeeeeeee-0000-4000-8000-000000000022");
    let members = vec![member("eeeeeeee-0000-4000-8000-000000000201", p1, "10.42.1.1", 8080, 1)];
    let tree = loadbalancer(lb, "10.42.0.10", vec![listener(l1, lb, "TCP", 80, Some(pool(p1, lb, Some(l1), "TCP", members, None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));

    let (limit, peak) = (host::metrics::POLICY_MEMORY_LIMIT.get(), host::metrics::POLICY_MEMORY_PEAK.get());
    assert_eq!(limit, 48 << 20, "the cap is guest_memory_limit_mb");
    assert!(peak > 0 && peak <= limit, "peak {peak} bytes against a cap of {limit}");
    let text = host::metrics::render();
    assert!(text.contains(&format!("loxilb_octavia_policy_memory_limit_bytes {limit}")), "{text}");
    // The other test's instance may raise the mark meanwhile, never lower it.
    let shown: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("loxilb_octavia_policy_memory_peak_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no policy_memory_peak_bytes in {text}"));
    assert!(shown >= peak as f64 && shown <= limit as f64, "/metrics shows a peak of {shown} bytes, read {peak}");
}
