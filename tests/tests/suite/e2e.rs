//! End to end through the host against the LoxiLB simulator: create → member changes → cascade delete
//! of a load balancer tree leaves LoxiLB's rules and the mapping exactly as expected at each step, and
//! empty at the end; the mapping survives a restart of the host.

use std::sync::Arc;

use host::loxilb::HttpLoxi;
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::FileStore;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "bbbbbbbb-0000-4000-8000-000000000001";
const L1: &str = "bbbbbbbb-0000-4000-8000-000000000011";
const L2: &str = "bbbbbbbb-0000-4000-8000-000000000012";
const P1: &str = "bbbbbbbb-0000-4000-8000-000000000021";
const HM: &str = "bbbbbbbb-0000-4000-8000-000000000031";
const VIP: &str = "10.20.0.10";

fn m(n: u32, weight: u32) -> Value {
    member(&format!("bbbbbbbb-0000-4000-8000-0000000001{n:02}"), P1, &format!("10.20.1.{n}"), 8080, weight)
}

fn tree(members: Vec<Value>) -> Value {
    loadbalancer(
        LB,
        VIP,
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, Some(monitor(HM, P1, "TCP"))))), listener(L2, LB, "UDP", 53, None)],
    )
}

fn endpoints(sim: &loxilb_sim::Simulator) -> Vec<(String, u64)> {
    let rules = sim.rules();
    assert_eq!(rules.len(), 1, "{rules:#?}");
    let mut eps: Vec<(String, u64)> =
        rules[0]["endpoints"].as_array().unwrap().iter().map(|e| (e["endpointIP"].as_str().unwrap().to_string(), e["weight"].as_u64().unwrap())).collect();
    eps.sort();
    eps
}

fn mapping(service: &Service) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = service.sandbox.lock().unwrap().mappings().unwrap().into_iter().map(|e| (e.octavia_id, e.loxilb_key)).collect();
    v.sort();
    v
}

fn expected_mapping(members: &[u32]) -> Vec<(String, String)> {
    let mut v = vec![
        (LB.to_string(), VIP.to_string()),
        (L1.to_string(), format!("{VIP}:80/tcp")),
        (L2.to_string(), format!("{VIP}:53/udp")),
        (P1.to_string(), format!("{VIP}/pool-{P1}")),
        (HM.to_string(), format!("{VIP}/pool-{P1}/monitor")),
    ];
    for n in members {
        v.push((format!("bbbbbbbb-0000-4000-8000-0000000001{n:02}"), format!("{VIP}/pool-{P1}/10.20.1.{n}:8080")));
    }
    v.sort();
    v
}

fn start(sim: &loxilb_sim::Simulator, dir: &std::path::Path) -> (Arc<Service>, Arc<RecordingSink>) {
    let loxi = Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5)));
    let store = Arc::new(FileStore::open(&dir.join("mappings.json")).unwrap());
    let sandbox = sandbox_with(&default_policy(), loxi, store);
    let sink = Arc::new(RecordingSink::default());
    (Service::new(sandbox, None, sink.clone(), std::time::Duration::from_secs(1)), sink)
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loxilb-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn create_update_delete_keeps_loxilb_and_mapping_exact() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("lifecycle");
    let (service, sink) = start(&sim, &dir);

    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1), m(2, 1), m(3, 1)])}));
    let rules = sim.rules();
    assert_eq!(rules.len(), 1, "only the listener with a pool has a rule");
    let s = &rules[0]["serviceArguments"];
    assert_eq!((s["externalIP"].as_str(), s["port"].as_u64(), s["protocol"].as_str()), (Some(VIP), Some(80), Some("tcp")));
    assert_eq!((s["probetype"].as_str(), s["probeport"].as_u64(), s["monitor"].as_bool()), (Some("tcp"), Some(8080), Some(true)));
    assert_eq!(s["name"], format!("octavia_lb-{LB}_listener-{L1}_pool-{P1}"));
    assert_eq!(endpoints(&sim), vec![("10.20.1.1".into(), 1), ("10.20.1.2".into(), 1), ("10.20.1.3".into(), 1)]);
    assert_eq!(mapping(&service), expected_mapping(&[1, 2, 3]));
    let created = sink.documents.lock().unwrap().pop().unwrap();
    assert_eq!(created["loadbalancers"], json!([{"id": LB, "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}]));

    service.apply("member_create", &json!({"member": m(4, 1)}));
    assert_eq!(endpoints(&sim).len(), 4);
    assert_eq!(mapping(&service), expected_mapping(&[1, 2, 3, 4]));

    service.apply("member_update", &json!({"old_member": m(1, 1), "new_member": {"member_id": m(1, 1)["member_id"], "weight": 2}}));
    assert_eq!(sim.rules()[0]["serviceArguments"]["sel"], 2);
    assert_eq!(endpoints(&sim), vec![("10.20.1.1".into(), 40), ("10.20.1.2".into(), 20), ("10.20.1.3".into(), 20), ("10.20.1.4".into(), 20)]);

    service.apply("member_delete", &json!({"member": m(2, 1)}));
    assert_eq!(endpoints(&sim), vec![("10.20.1.1".into(), 50), ("10.20.1.3".into(), 25), ("10.20.1.4".into(), 25)]);
    assert_eq!(mapping(&service), expected_mapping(&[1, 3, 4]));

    service.apply("member_batch_update", &json!({"pool_id": P1, "members": [m(3, 1), m(5, 1)]}));
    assert_eq!(endpoints(&sim), vec![("10.20.1.3".into(), 1), ("10.20.1.5".into(), 1)]);
    assert_eq!(sim.rules()[0]["serviceArguments"].get("sel"), None, "uniform weights go back to round robin (sel 0, omitted)");
    assert_eq!(mapping(&service), expected_mapping(&[3, 5]));
    let batch = sink.documents.lock().unwrap().pop().unwrap();
    let deleted: Vec<&str> =
        batch["members"].as_array().unwrap().iter().filter(|m| m["provisioning_status"] == "DELETED").map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(deleted.len(), 2, "members 1 and 4 were not in the batch: {batch}");

    // The mapping is on disk: a restarted host sees the same.
    drop(service);
    let (service, _) = start(&sim, &dir);
    assert_eq!(mapping(&service), expected_mapping(&[3, 5]));

    service.apply("loadbalancer_delete", &json!({"loadbalancer": tree(vec![m(3, 1), m(5, 1)]), "cascade": true}));
    assert!(sim.rules().is_empty(), "{:#?}", sim.rules());
    assert!(mapping(&service).is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn loxilb_failure_rolls_back_and_reports_error_with_parents_active() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Legacy).unwrap();
    let dir = tempdir("failure");
    let (service, _) = start(&sim, &dir);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1)])}));
    let before = sim.rules();
    // Old LoxiLB answers errors with HTTP 200 and the error in `result`: it must still count as a failure.
    sim.fail_next(1, 200, "rule-hwm error");
    let statuses = service.apply("member_create", &json!({"member": m(2, 1)}));
    let error: Vec<_> = statuses.iter().filter(|s| s.provisioning == Some(host::runtime::bindings::octavia::ProvisioningStatus::Error)).collect();
    assert_eq!(error.len(), 1);
    assert_eq!(error[0].id, m(2, 1)["member_id"].as_str().unwrap());
    assert!(statuses.iter().any(|s| s.id == LB && s.provisioning == Some(host::runtime::bindings::octavia::ProvisioningStatus::Active)));
    assert_eq!(sim.rules(), before, "LoxiLB keeps the rule it had");
    assert_eq!(mapping(&service), expected_mapping(&[1]), "the failed member is not mapped");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reconciliation_restores_rules_lost_in_a_loxilb_restart() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("reconcile");
    let (service, _) = start(&sim, &dir);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1), m(2, 1)])}));
    let before = sim.rules();
    sim.restart();
    assert!(sim.rules().is_empty());
    let report = service.sandbox.lock().unwrap().reconcile().unwrap().unwrap();
    assert_eq!(report.reprogrammed, vec![format!("{VIP}:80/tcp")]);
    assert_eq!(sim.rules(), before);
    let again = service.sandbox.lock().unwrap().reconcile().unwrap().unwrap();
    assert!(again.reprogrammed.is_empty(), "{again:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn discovery_recovers_the_original_octavia_ids() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("discover");
    let (service, _) = start(&sim, &dir);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1)])}));
    drop(service);
    // A host with no mapping file at all (lost disk, or another host taking over).
    let other = tempdir("discover-empty");
    let (fresh, _) = start(&sim, &other);
    assert!(mapping(&fresh).is_empty());
    let report = fresh.sandbox.lock().unwrap().recover(host::execute::RecoveryMode::Loxilb).unwrap().unwrap();
    assert_eq!(report.deterministic, 0);
    let ids: Vec<String> = mapping(&fresh).into_iter().map(|(id, _)| id).collect();
    for id in [LB, L1, P1] {
        assert!(ids.contains(&id.to_string()), "{id} not recovered: {ids:?}");
    }
    // The recovered member stands in under a deterministic id until Octavia names it.
    assert!(ids.iter().any(|id| id.starts_with("member_10.20.1.1_8080_tcp_")), "{ids:?}");
    fresh.apply("member_create", &json!({"member": m(2, 1)}));
    assert_eq!(endpoints(&sim).len(), 2);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}

#[test]
fn an_operation_missing_its_mapping_recovers_before_failing() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("runtime-recovery");
    let (service, _) = start(&sim, &dir);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1)])}));
    drop(service);
    let other = tempdir("runtime-recovery-empty");
    let (fresh, sink) = start(&sim, &other);
    let statuses = fresh.apply("member_create", &json!({"member": m(2, 1), "loadbalancer_id": LB}));
    assert!(
        statuses.iter().all(|s| s.provisioning == Some(host::runtime::bindings::octavia::ProvisioningStatus::Active)),
        "{:?}",
        sink.documents.lock().unwrap()
    );
    assert_eq!(endpoints(&sim).len(), 2, "the member reached LoxiLB after recovery");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(other);
}

#[test]
fn an_operation_handed_to_another_host_meanwhile_is_left_alone() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("not-ours");
    let (service, sink) = start(&sim, &dir);
    let args = json!({"loadbalancer": tree(vec![m(1, 1)])});
    assert!(service.apply_while("loadbalancer_create", &args, false, &|| false).is_none());
    assert!(sim.rules().is_empty() && mapping(&service).is_empty() && sink.documents.lock().unwrap().is_empty());
    assert!(service.apply_while("loadbalancer_create", &args, false, &|| true).is_some_and(|s| !s.is_empty()));
    assert_eq!(sim.rules().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_restart_reports_no_conflict_for_what_the_mapping_holds() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("restart-conflicts");
    let (service, _) = start(&sim, &dir);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree(vec![m(1, 1), m(2, 1)])}));
    drop(service);
    // The host restarts on its own mapping file, LoxiLB still holding the rule (startup recovery, hybrid).
    let (restarted, _) = start(&sim, &dir);
    let report = restarted.sandbox.lock().unwrap().recover(host::execute::RecoveryMode::Hybrid).unwrap().unwrap();
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
    assert_eq!(report.recovered, 0);
    assert_eq!(mapping(&restarted), expected_mapping(&[1, 2]));
    let _ = std::fs::remove_dir_all(dir);
}
