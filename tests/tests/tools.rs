//! The operator tools: show-mappings, validate-mappings (non-zero on problems), force-recovery.

use std::sync::Arc;

use host::caps::loxilb::HttpLoxi;
use host::caps::storage::{read_copy, FileStore, MappingStore};
use host::config::Config;
use host::octavia::status::RecordingSink;
use host::runtime::bindings::policy_types::RecoveryMode;
use host::service::Service;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "cccccccc-0000-4000-8000-000000000001";
const L1: &str = "cccccccc-0000-4000-8000-000000000011";
const P1: &str = "cccccccc-0000-4000-8000-000000000021";

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loxilb-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(sim: &loxilb_sim::Simulator, dir: &std::path::Path) -> Config {
    Config {
        api_endpoints: vec![sim.url()],
        mapping_storage_path: dir.join("mappings.json"),
        admin_socket_path: dir.join("admin.sock"),
        policy_path: Some(default_policy()),
        ..Config::default()
    }
}

fn create_lb(config: &Config) {
    let loxi = Arc::new(HttpLoxi::new(config.api_endpoints.clone(), std::time::Duration::from_secs(5)));
    let store = Arc::new(FileStore::open(&config.mapping_storage_path).unwrap());
    let sandbox = sandbox_with(&default_policy(), loxi, store.clone());
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), std::time::Duration::from_secs(1));
    let tree = loadbalancer(LB, "10.30.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.30.1.1", 80, 1)], None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    // A snapshot as well as the journal, so the file-level checks have something to read.
    let state = read_copy(&config.mapping_storage_path).unwrap();
    assert!(state.journal_length() > 0);
}

#[test]
fn validate_mappings_accepts_a_consistent_mapping_and_refuses_a_broken_one() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("validate");
    let config = config(&sim, &dir);
    create_lb(&config);
    host::tools::validate_mappings(&config).expect("a mapping the host wrote is consistent");
    host::tools::show_mappings(&config, true).unwrap();

    // Write the mapping's snapshot back with a reverse entry that no longer agrees (checksum still valid).
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let mut loaded = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy));
    let entries = loaded.mappings().unwrap();
    let mut forward = serde_json::Map::new();
    let mut reverse = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    for e in &entries {
        forward.insert(e.octavia_id.clone(), json!(e.loxilb_key));
        reverse.insert(e.loxilb_key.clone(), json!(e.octavia_id));
        metadata.insert(e.octavia_id.clone(), json!({"resource_type": host::runtime::resource_type_name(e.resource_type)}));
    }
    reverse.insert("10.30.0.10:80/tcp".into(), json!("somebody-else"));
    let broken = json!({"version": "1.0", "octavia_to_loxilb": forward, "loxilb_to_octavia": reverse, "resource_metadata": metadata});
    let store = FileStore::open(&config.mapping_storage_path).unwrap();
    store.write_snapshot(serde_json::to_string_pretty(&broken).unwrap().as_bytes()).unwrap();
    drop(store);
    let err = host::tools::validate_mappings(&config).expect_err("a disagreeing reverse map is a problem");
    assert!(err.to_string().contains("problems"), "{err:#}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn force_recovery_rebuilds_the_mapping_from_loxilb_with_real_ids() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("force");
    create_lb(&config(&sim, &dir));
    let empty = tempdir("force-empty");
    let config = config(&sim, &empty);
    host::tools::force_recovery(&config, RecoveryMode::Loxilb).unwrap();
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let mut loaded = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy));
    let ids: Vec<String> = loaded.mappings().unwrap().into_iter().map(|e| e.octavia_id).collect();
    for id in [LB, L1, P1] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    host::tools::validate_mappings(&config).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn operating_status_follows_loxilb_and_statistics_cover_programmed_listeners() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxi = Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5)));
    let mut sandbox = sandbox_with(&default_policy(), loxi, Arc::new(host::caps::storage::MemoryStore::default()));
    let tree = loadbalancer(
        LB,
        "10.30.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.30.1.1", 80, 1)], Some(monitor("h1", P1, "TCP")))))],
    );
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree}))).unwrap().error.is_none());
    let statuses = |sandbox: &mut host::runtime::instance::Sandbox| -> Value {
        host::octavia::status::document(&sandbox.health().unwrap().unwrap())
    };
    let healthy = statuses(&mut sandbox);
    assert_eq!(healthy["members"], json!([{"id": "m1", "operating_status": "ONLINE"}]));
    assert_eq!(healthy["listeners"], json!([{"id": L1, "operating_status": "ONLINE"}]));
    assert_eq!(healthy["loadbalancers"], json!([{"id": LB, "operating_status": "ONLINE"}]));
    let stats = sandbox.statistics().unwrap().unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].listener_id, L1);

    sim.restart();
    let lost = statuses(&mut sandbox);
    assert_eq!(lost["members"], json!([{"id": "m1", "operating_status": "ERROR"}]));
    assert_eq!(lost["pools"], json!([{"id": P1, "operating_status": "ERROR"}]));
    assert_eq!(lost["listeners"], json!([{"id": L1, "operating_status": "ERROR"}]));
    assert_eq!(lost["loadbalancers"], json!([{"id": LB, "operating_status": "DEGRADED"}]));
    assert!(sandbox.statistics().unwrap().unwrap().is_empty());
}
