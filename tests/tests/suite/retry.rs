//! Transient LoxiLB failures — one 500, a reset connection, an answer later than `api_timeout` — are
//! retried within `api_retry_deadline`, so the operation succeeds and LoxiLB holds exactly what the
//! mapping says; LoxiLB staying down fails the operation within the deadline, and the calls after it do
//! not wait a deadline each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::loxilb::{HttpLoxi, Retry};
use host::runtime::instance::Sandbox;
use host::storage::MemoryStore;
use integration_tests::*;
use loxilb_sim::{Fault, Simulator};
use serde_json::{json, Value};

const LB: &str = "ffffffff-0000-4000-8000-000000000001";
const L1: &str = "ffffffff-0000-4000-8000-000000000011";
const P1: &str = "ffffffff-0000-4000-8000-000000000021";
const VIP: &str = "10.80.0.10";

fn m(n: u32) -> Value {
    member(&format!("ffffffff-0000-4000-8000-0000000001{n:02}"), P1, &format!("10.80.1.{n}"), 8080, 1)
}

fn tree() -> Value {
    loadbalancer(LB, VIP, vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m(1)], None)))])
}

fn start(sim: &Simulator, timeout: Duration, retry: Retry) -> (Sandbox, Arc<HttpLoxi>) {
    let loxi = Arc::new(HttpLoxi::new(vec![sim.url()], timeout).with_retry(retry));
    (sandbox_with(&default_policy(), loxi.clone(), Arc::new(MemoryStore::default())), loxi)
}

/// LoxiLB holds what the policy wants, and a reconciliation finds nothing to do.
fn in_step(sandbox: &mut Sandbox) {
    let report = sandbox.reconcile().unwrap().unwrap();
    assert!(report.reprogrammed.is_empty() && report.failures.is_empty() && report.orphans.is_empty(), "{report:?}");
}

#[test]
fn a_single_500_or_reset_is_retried_and_the_operation_succeeds() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let (mut sandbox, loxi) = start(&sim, Duration::from_secs(2), Retry::within(Duration::from_secs(3)));
    sim.inject_fault(1, Fault::Reset);
    let created = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap();
    assert!(created.error.is_none(), "{:?}", created.error);

    sim.fail_next(1, 500, "transient datapath error");
    let added = sandbox.handle(&op("member_create", json!({"member": m(2)}))).unwrap();
    assert!(added.error.is_none(), "{:?}", added.error);
    assert_eq!(endpoint_ips(&sim), ["10.80.1.1", "10.80.1.2"]);
    assert_eq!(loxi.retries(), 2);
    in_step(&mut sandbox);
}

#[test]
fn a_post_loxilb_answers_after_the_timeout_is_found_applied_by_the_retry() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let (mut sandbox, _) = start(&sim, Duration::from_millis(400), Retry::within(Duration::from_secs(3)));
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap().error.is_none());
    sim.clear_requests();
    // LoxiLB applies the member's POST, then answers after the client gave up.
    sim.inject_fault(1, Fault::Late(Duration::from_millis(700)));
    let added = sandbox.handle(&op("member_create", json!({"member": m(2)}))).unwrap();
    assert!(added.error.is_none(), "{:?}", added.error);
    let posts: Vec<u16> = sim.requests().iter().filter(|r| r.method == "POST").map(|r| r.status).collect();
    assert_eq!(posts, [200, 409], "the retry met the rule already applied");
    assert_eq!(endpoint_ips(&sim), ["10.80.1.1", "10.80.1.2"]);
    in_step(&mut sandbox);
}

#[test]
fn loxilb_down_past_the_deadline_fails_within_it_and_later_calls_do_not_wait_again() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let (mut sandbox, _) = start(&sim, Duration::from_secs(2), Retry::within(Duration::from_millis(800)));
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap().error.is_none());
    let before = sim.rules();

    sim.fail_next(1000, 503, "not-ready");
    let started = Instant::now();
    let failed = sandbox.handle(&op("member_create", json!({"member": m(2)}))).unwrap();
    let took = started.elapsed();
    assert!(failed.error.is_some());
    // One call retried to its deadline (an answer, even 503, is not "unreachable"), then the rollback's.
    assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(3), "{took:?}");

    sim.fail_next(0, 0, "");
    sim.inject_fault(1000, Fault::Reset);
    let started = Instant::now();
    assert!(sandbox.handle(&op("member_create", json!({"member": m(3)}))).unwrap().error.is_some());
    assert!(sandbox.handle(&op("member_create", json!({"member": m(4)}))).unwrap().error.is_some());
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2000), "after one deadline without any answer, calls are tried once: {took:?}");

    sim.inject_fault(0, Fault::Reset);
    assert_eq!(sim.rules(), before, "nothing half-applied");
    assert!(sandbox.handle(&op("member_create", json!({"member": m(5)}))).unwrap().error.is_none(), "LoxiLB answers again: retries resume");
    assert_eq!(endpoint_ips(&sim), ["10.80.1.1", "10.80.1.5"]);
    in_step(&mut sandbox);
}

#[test]
fn without_retries_a_post_applied_after_its_timeout_is_rolled_back_not_left_serving() {
    let sim = Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let (mut sandbox, _) = start(&sim, Duration::from_millis(300), Retry::NONE);
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap().error.is_none());
    // The member's POST times out for the host but LoxiLB applies it; the operation fails (ERROR to
    // Octavia) and its rollback, served after the late POST, puts the rule back as the mapping has it.
    sim.inject_fault(1, Fault::Late(Duration::from_millis(600)));
    let failed = sandbox.handle(&op("member_create", json!({"member": m(2)}))).unwrap();
    assert!(failed.error.is_some());
    assert_eq!(endpoint_ips(&sim), ["10.80.1.1"], "LoxiLB serves nothing Octavia shows as ERROR");
    in_step(&mut sandbox);
}
