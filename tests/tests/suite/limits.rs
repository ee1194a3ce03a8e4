//! The sandbox's limits, in obeyed/violated pairs: a policy that traps, loops forever or allocates without
//! end fails only the operation in hand (Octavia sees ERROR, the fault is logged), the host starts a new
//! instance, and the next operation succeeds with the mapping intact.

use std::time::{Duration, Instant};

use host::runtime::instance::Limits;
use integration_tests::*;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_millis(1500);

fn limits() -> Limits {
    Limits { memory_bytes: 48 << 20, call_timeout: DEADLINE, ..Limits::default() }
}

/// A load balancer the misbehave fixture obeys, or misbehaves on when `name` is a command.
fn named_lb(n: u32, name: &str) -> Value {
    let id = format!("11111111-0000-4000-8000-{n:012}");
    let listener_id = format!("11111111-0001-4000-8000-{n:012}");
    let pool_id = format!("11111111-0002-4000-8000-{n:012}");
    let members = vec![member(&format!("11111111-0003-4000-8000-{n:012}"), &pool_id, "198.51.100.7", 8080, 1)];
    let mut lb = loadbalancer(
        &id,
        &format!("192.0.2.{n}"),
        vec![listener(&listener_id, &id, "TCP", 80, Some(pool(&pool_id, &id, Some(&listener_id), "TCP", members, None)))],
    );
    lb["name"] = json!(name);
    lb
}

/// Applies one load balancer create on this thread, returning its status and what the host logged.
fn create(h: &TestHost, n: u32, name: &str) -> (String, String, Duration) {
    let started = Instant::now();
    let (statuses, text) = capture_logs(|| h.service.apply("loadbalancer_create", &json!({"loadbalancer": named_lb(n, name)})));
    let elapsed = started.elapsed();
    let document = host::octavia::status::document(&statuses);
    let status = document["loadbalancers"][0]["provisioning_status"].as_str().unwrap_or("none").to_string();
    (status, text, elapsed)
}

fn instances(h: &TestHost) -> u32 {
    h.service.sandbox.lock().unwrap().instances
}

/// Obeyed: a normal operation. Violated: the same operation with `command`. Then obeyed again, on a
/// new instance that still knows the first load balancer.
fn survives(command: &str, fault: &str) {
    survives_within(limits(), command, fault)
}

fn survives_within(limits: Limits, command: &str, fault: &str) {
    let h = test_host(&fixture("misbehave"), limits, settings());
    let (status, _, _) = create(&h, 1, "fine");
    assert_eq!(status, "ACTIVE", "the obeyed operation failed");
    let before = instances(&h);

    let (status, log, elapsed) = create(&h, 2, command);
    assert_eq!(status, "ERROR", "{command}: Octavia must see ERROR");
    assert!(log.contains(fault), "{command}: the fault is not logged as {fault:?}: {log}");
    assert!(elapsed < DEADLINE + Duration::from_secs(10), "{command}: stopped only after {elapsed:?}");
    assert!(h.rules_on("192.0.2.2").is_empty(), "{command}: the failed operation left a rule");

    let (status, _, _) = create(&h, 3, "fine again");
    assert_eq!(status, "ACTIVE", "{command}: the operation after the fault failed");
    assert_eq!(instances(&h), before + 1, "{command}: the host did not start exactly one new instance");
    let mappings = h.service.sandbox.lock().unwrap().mappings().unwrap();
    assert!(mappings.iter().any(|m| m.octavia_id == "11111111-0000-4000-8000-000000000001"), "{command}: the new instance lost the mapping");
    assert_eq!(h.rules_on("192.0.2.1").len(), 1);
    assert_eq!(h.rules_on("192.0.2.3").len(), 1);
}

#[test]
fn a_trapping_policy_fails_only_the_operation_in_hand() {
    survives("panic", "panicked");
}

#[test]
fn a_runaway_loop_is_stopped_at_the_deadline() {
    survives("spin", "deadline exceeded");
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap() {
    let refused = host::metrics::POLICY_MEMORY_REFUSED.get();
    survives("alloc", "ran out of memory");
    assert!(host::metrics::POLICY_MEMORY_REFUSED.get() > refused, "the refused growth is not counted");
    // The bomb grows a mebibyte at a time up to the 48 MiB cap: the high-water mark saw it come close.
    assert!(host::metrics::POLICY_MEMORY_PEAK.get() >= 40 << 20, "peak {} bytes", host::metrics::POLICY_MEMORY_PEAK.get());
}

/// A hundred status ids pointing at one mebibyte of the policy's memory would make the host copy 100 MiB
/// (wasmtime's default bound, 128 MiB, lets them through); the host takes at most three times the
/// policy's cap of one answer, here 3 × 16 MiB.
#[test]
fn an_answer_aliasing_its_memory_is_refused_past_three_times_the_cap() {
    survives_within(Limits { memory_bytes: 16 << 20, ..limits() }, "alias", "larger than the host takes");
}

#[test]
fn the_memory_cap_and_deadline_come_from_the_configuration() {
    let config = host::config::Config::parse("[driver_loxilb]\nguest_memory_limit_mb = 48\nguest_call_timeout = 1.5\n").unwrap();
    let limits = host::app::limits(&config);
    assert_eq!((limits.memory_bytes, limits.call_timeout), (48 << 20, DEADLINE));
}
