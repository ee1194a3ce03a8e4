//! A policy instance keeps what it decoded from the mapping between calls (`guest/src/state.rs`, `Kept`),
//! checked against the host's revisions. These tests change the mapping behind an instance's back in
//! every way the host can — another instance's plan (as after a swap), the host writing entries itself
//! (as a recovery does), a plan that fails, a trap — and check the instance's next answer is the one a
//! fresh instance gives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use host::loxilb::LoxiTransport;
use host::mapping::Mapping;
use host::runtime::bindings::mapping::MappingChange;
use host::runtime::bindings::policy_types::DesiredRule;
use host::runtime::instance::{Limits, Sandbox, Wiring};
use host::storage::MemoryStore;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "bbbbbbbb-0000-4000-8000-000000000001";
const L1: &str = "bbbbbbbb-0000-4000-8000-000000000011";
const P1: &str = "bbbbbbbb-0000-4000-8000-000000000021";
const M1: &str = "bbbbbbbb-0000-4000-8000-000000000031";
const M2: &str = "bbbbbbbb-0000-4000-8000-000000000032";

/// A LoxiLB that answers success, or a server error to every change while `failing` is set.
#[derive(Default)]
struct Switchable {
    failing: AtomicBool,
}

impl LoxiTransport for Switchable {
    fn request(&self, method: &str, _: &str, _: Option<&str>) -> Result<(u16, String), String> {
        if method != "GET" && self.failing.load(Ordering::SeqCst) {
            return Ok((500, r#"{"result":"internal error"}"#.into()));
        }
        Ok((200, if method == "GET" { r#"{"lbAttr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
    }
}

/// A policy instance over `mapping` (two of them share it as the old and new instance of a swap do).
fn instance(policy: &std::path::Path, mapping: &Arc<Mapping>, loxilb: Arc<dyn LoxiTransport>) -> Sandbox {
    let wiring = Wiring { loxilb, mapping: Arc::clone(mapping), remove_orphans: false, served: Default::default(), log_target: "test".into() };
    Sandbox::new(host::runtime::load(policy).expect("policy loads"), wiring, Limits::default(), settings()).expect("policy starts")
}

fn tree() -> Value {
    let members = vec![member(M1, P1, "10.0.1.1", 8080, 1), member(M2, P1, "10.0.1.2", 8080, 1)];
    loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))])
}

/// An instance that has read (and kept) the whole tree, over a mapping holding it.
fn started(loxilb: Arc<dyn LoxiTransport>) -> (Arc<Mapping>, Sandbox) {
    let mapping = host::app::load_mapping(Arc::new(MemoryStore::default())).expect("mapping");
    let mut sandbox = instance(&default_policy(), &mapping, loxilb);
    let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).expect("no trap");
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(endpoints(&sandbox.render_desired_rules().expect("no trap")), vec!["10.0.1.1", "10.0.1.2"]);
    (mapping, sandbox)
}

/// What a fresh instance says the rules are.
fn fresh_desired(mapping: &Arc<Mapping>) -> Vec<DesiredRule> {
    instance(&default_policy(), mapping, Arc::new(Switchable::default())).render_desired_rules().expect("no trap")
}

fn endpoints(rules: &[DesiredRule]) -> Vec<String> {
    let mut ips: Vec<String> = rules.iter().flat_map(|r| r.rule.endpoints.iter().map(|e| e.ip.clone())).collect();
    ips.sort();
    ips
}

/// Rewrites one attribute of an entry's object in its metadata, as the host would store a new version.
fn rewritten(mapping: &Mapping, id: &str, attribute: &str, value: Value) -> MappingChange {
    let mut entry = mapping.get(id).expect("mapped");
    let mut metadata: Value = serde_json::from_str(&entry.metadata).expect("the policy's JSON");
    metadata[attribute] = value;
    entry.metadata = metadata.to_string();
    MappingChange::Put(entry)
}

#[test]
fn another_instances_committed_plan_is_seen_by_the_next_call() {
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(Switchable::default());
    let (mapping, mut old) = started(Arc::clone(&loxilb));
    // The swapped-in policy (here the other shipped one) disables a member the old instance has kept.
    let mut new = instance(&http_fullproxy_policy(), &mapping, loxilb);
    let disable = op(
        "member_update",
        json!({"old_member": member(M2, P1, "10.0.1.2", 8080, 1),
        "new_member": {"member_id": M2, "pool_id": P1, "address": "10.0.1.2", "protocol_port": 8080, "weight": 1, "admin_state_up": false}}),
    );
    assert!(new.handle(&disable).expect("no trap").error.is_none());
    let rules = old.render_desired_rules().expect("no trap");
    assert_eq!(endpoints(&rules), vec!["10.0.1.1"]);
    assert_eq!(rules, fresh_desired(&mapping));
}

#[test]
fn entries_the_host_rewrites_itself_are_seen_by_the_next_call() {
    let (mapping, mut sandbox) = started(Arc::new(Switchable::default()));
    // Same id, new metadata (as a recovery or a hand-repaired file puts it), nothing else in the entry changed.
    mapping.apply(vec![rewritten(&mapping, M1, "address", json!("10.0.1.9"))]).unwrap();
    let rules = sandbox.render_desired_rules().expect("no trap");
    assert_eq!(endpoints(&rules), vec!["10.0.1.2", "10.0.1.9"]);
    assert_eq!(rules, fresh_desired(&mapping));
    // A removal, then the mapping emptied entry by entry.
    mapping.apply(vec![MappingChange::Remove(M2.into())]).unwrap();
    assert_eq!(endpoints(&sandbox.render_desired_rules().expect("no trap")), vec!["10.0.1.9"]);
    mapping.apply(mapping.entries().into_iter().map(|e| MappingChange::Remove(e.octavia_id)).collect()).unwrap();
    assert!(sandbox.render_desired_rules().expect("no trap").is_empty());
}

#[test]
fn a_plan_that_fails_leaves_the_next_call_reading_the_mapping_as_it_was() {
    let loxilb = Arc::new(Switchable::default());
    let (mapping, mut sandbox) = started(loxilb.clone());
    let before = sandbox.render_desired_rules().expect("no trap");
    loxilb.failing.store(true, Ordering::SeqCst);
    let update = op(
        "member_update",
        json!({"old_member": member(M1, P1, "10.0.1.1", 8080, 1),
        "new_member": {"member_id": M1, "pool_id": P1, "address": "10.0.1.1", "protocol_port": 8080, "weight": 1, "admin_state_up": false}}),
    );
    assert!(sandbox.handle(&update).expect("no trap").error.is_some(), "LoxiLB refused the change");
    assert_eq!(sandbox.render_desired_rules().expect("no trap"), before);
    assert_eq!(before, fresh_desired(&mapping));
    // The same update once LoxiLB takes it.
    loxilb.failing.store(false, Ordering::SeqCst);
    assert!(sandbox.handle(&update).expect("no trap").error.is_none());
    assert_eq!(endpoints(&sandbox.render_desired_rules().expect("no trap")), vec!["10.0.1.2"]);
}

#[test]
fn after_a_trap_the_new_instance_reads_the_entries_as_they_are_now() {
    let (mapping, mut sandbox) = started(Arc::new(Switchable::default()));
    let good = mapping.get(M1).expect("mapped");
    let mut damaged = good.clone();
    damaged.metadata = "not the policy's JSON".into();
    mapping.apply(vec![MappingChange::Put(damaged)]).unwrap();
    assert!(sandbox.render_desired_rules().is_err(), "undecodable metadata traps the policy");
    mapping.apply(vec![MappingChange::Put(good), rewritten(&mapping, M2, "address", json!("10.0.1.7"))]).unwrap();
    let rules = sandbox.render_desired_rules().expect("the re-instantiated policy");
    assert_eq!(endpoints(&rules), vec!["10.0.1.1", "10.0.1.7"]);
    assert_eq!(rules, fresh_desired(&mapping));
}

#[test]
fn desired_rules_are_asked_again_only_when_the_mapping_changed() {
    let (mapping, mut sandbox) = started(Arc::new(Switchable::default()));
    let first = sandbox.desired_rules().expect("no trap");
    // The same answer, not asked again: a reconciliation pass over an unchanged mapping renders nothing.
    assert!(Arc::ptr_eq(&first, &sandbox.desired_rules().expect("no trap")));
    mapping.apply(vec![rewritten(&mapping, M1, "address", json!("10.0.1.9"))]).unwrap();
    let after = sandbox.desired_rules().expect("no trap");
    assert!(!Arc::ptr_eq(&first, &after));
    assert_eq!(endpoints(&after), vec!["10.0.1.2", "10.0.1.9"]);
    // An operation's plan changes the mapping too.
    let disable = op(
        "member_update",
        json!({"old_member": member(M2, P1, "10.0.1.2", 8080, 1),
        "new_member": {"member_id": M2, "pool_id": P1, "address": "10.0.1.2", "protocol_port": 8080, "weight": 1, "admin_state_up": false}}),
    );
    assert!(sandbox.handle(&disable).expect("no trap").error.is_none());
    assert_eq!(endpoints(&sandbox.desired_rules().expect("no trap")), vec!["10.0.1.9"]);
}

#[test]
fn an_instance_a_full_render_left_large_is_replaced_and_the_next_answers_are_the_same() {
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(Switchable::default());
    let (mapping, _) = started(Arc::clone(&loxilb));
    let wiring = Wiring { loxilb, mapping: Arc::clone(&mapping), remove_orphans: false, served: Default::default(), log_target: "test".into() };
    let policy = host::runtime::load(&default_policy()).expect("policy loads");
    // Any memory counts as large here; by default only what a full render of ~100k mappings leaves.
    let small = Limits { recycle_after_render_bytes: 0, ..Limits::default() };
    let mut sandbox = Sandbox::new(Arc::clone(&policy), wiring.clone(), small, settings()).expect("policy starts");
    let rules = sandbox.desired_rules().expect("no trap");
    let disable = op(
        "member_update",
        json!({"old_member": member(M2, P1, "10.0.1.2", 8080, 1),
        "new_member": {"member_id": M2, "pool_id": P1, "address": "10.0.1.2", "protocol_port": 8080, "weight": 1, "admin_state_up": false}}),
    );
    assert!(sandbox.handle(&disable).expect("no trap").error.is_none());
    assert_eq!(sandbox.instances, 2, "the next call started a new instance");
    assert_ne!(sandbox.desired_rules().expect("no trap"), rules);
    assert_eq!(*sandbox.desired_rules().expect("no trap"), fresh_desired(&mapping));

    let mut kept = Sandbox::new(policy, wiring, Limits::default(), settings()).expect("policy starts");
    kept.desired_rules().expect("no trap");
    kept.render_desired_rules().expect("no trap");
    assert_eq!(kept.instances, 1, "a small instance is kept");
}
