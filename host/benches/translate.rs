//! Translation cost: one load balancer tree (1 listener, 1 pool, 10 members, TCP monitor) turned into a
//! plan, through the policy component (typed WIT records across the sandbox boundary, the mapping read
//! through the view import) and natively (the same guest crate linked into this binary, over an in-memory
//! mapping). Prints µs/op and their ratio.
//!
//! Run: `cargo bench -p host --bench translate`

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::{Limits, Sandbox, Wiring};
use host::storage::MemoryStore;
use serde_json::{json, Value};

struct NoLoxi;

impl host::loxilb::LoxiTransport for NoLoxi {
    fn request(&self, _: &str, _: &str, _: Option<&str>) -> Result<(u16, String), String> {
        Ok((200, r#"{"result":"Success"}"#.into()))
    }
}

/// The tree in octavia-lib's `to_dict` shape (what the host receives).
fn octavia_tree() -> Value {
    let members: Vec<Value> = (1..=10)
        .map(|i| json!({"member_id": format!("member-{i:02}-0000-4000-8000-000000000000"), "address": format!("10.0.1.{i}"), "protocol_port": 8080, "weight": 1, "admin_state_up": true}))
        .collect();
    json!({"loadbalancer_id": "lb-00000000-0000-4000-8000-000000000000", "vip_address": "10.0.0.10", "admin_state_up": true,
           "listeners": [{"listener_id": "listener-0000-4000-8000-000000000000", "protocol": "TCP", "protocol_port": 80, "admin_state_up": true,
                          "connection_limit": -1, "timeout_client_data": 50000,
                          "default_pool": {"pool_id": "pool-0000-0000-4000-8000-000000000000", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                                           "admin_state_up": true, "members": members,
                                           "healthmonitor": {"healthmonitor_id": "hm-00000-0000-4000-8000-000000000000", "type": "TCP", "delay": 5,
                                                             "timeout": 3, "max_retries": 2, "max_retries_down": 3, "admin_state_up": true}}}]})
}

/// The same tree as the guest crate's own types (its serde shape mirrors the WIT records).
fn native_tree(op: &host::runtime::bindings::octavia::Operation) -> guest::octavia::Operation {
    let host::runtime::bindings::octavia::Operation::Loadbalancer((host::runtime::bindings::octavia::LoadbalancerAction::Create, lb)) = op else {
        unreachable!()
    };
    let pools: Vec<Value> = lb
        .pools
        .iter()
        .map(|p| {
            let hm = p.healthmonitor.as_ref().map(|h| {
                json!({"id": h.id, "pool_id": h.pool_id, "kind": h.kind, "delay": h.delay, "timeout": h.timeout, "max_retries": h.max_retries,
                       "max_retries_down": h.max_retries_down, "http_method": null, "url_path": null, "expected_codes": null, "http_version": null,
                       "domain_name": null, "admin_state_up": h.admin_state_up})
            });
            json!({"id": p.id, "loadbalancer_id": p.loadbalancer_id, "listener_id": p.listener_id, "protocol": p.protocol, "lb_algorithm": p.lb_algorithm,
                   "session_persistence": null, "tls_enabled": false, "admin_state_up": true, "healthmonitor": hm,
                   "members": p.members.iter().map(|m| json!({"id": m.id, "pool_id": m.pool_id, "address": m.address, "protocol_port": m.protocol_port,
                       "weight": m.weight, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null})).collect::<Vec<_>>()})
        })
        .collect();
    let listeners: Vec<Value> = lb
        .listeners
        .iter()
        .map(|l| {
            json!({"id": l.id, "loadbalancer_id": l.loadbalancer_id, "protocol": l.protocol, "protocol_port": l.protocol_port,
                   "default_pool_id": l.default_pool_id, "admin_state_up": true, "connection_limit": l.connection_limit,
                   "timeout_client_data": l.timeout_client_data, "timeout_member_connect": null, "timeout_member_data": null,
                   "allowed_cidrs": [], "insert_headers": [], "default_tls_container_ref": null, "sni_container_refs": [],
                   "client_authentication": null, "l7policies": []})
        })
        .collect();
    let lb = json!({"id": lb.id, "project_id": null, "name": null, "vip_address": lb.vip_address, "additional_vips": [], "admin_state_up": true, "flavor": [],
                    "listeners": listeners, "pools": pools});
    guest::octavia::Operation::Loadbalancer((guest::octavia::LoadbalancerAction::Create, serde_json::from_value(lb).expect("guest types")))
}

fn per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn main() {
    let op = host::convert::operation("loadbalancer_create", &json!({"loadbalancer": octavia_tree()})).unwrap();
    let path = host::runtime::default_policy_path();
    let policy = host::runtime::load(&path).expect("the default policy component");
    let mapping = host::app::load_mapping(Arc::new(MemoryStore::default())).unwrap();
    let wiring = Wiring { loxilb: Arc::new(NoLoxi), mapping, remove_orphans: false, served: Default::default(), log_target: "bench".into() };
    let mut sandbox = Sandbox::new(policy, wiring, Limits::default(), Settings { nat_mode: "fullnat".into(), bgp: false }).unwrap();
    let plan = sandbox.translate(&op).unwrap().unwrap();
    assert_eq!(plan.calls.len(), 1);
    assert_eq!(plan.mapping.len(), 14);

    let native_op = native_tree(&op);
    let empty = guest::state::Memory::default();
    let state = guest::state::State::new(&empty);
    let config = guest::translate::Config::default();
    let native_plan = guest::plan::plan(&state, &native_op, &config, "2026-01-01T00:00:00Z").unwrap();
    assert_eq!(native_plan.calls.len(), 1);
    assert_eq!(native_plan.changes.len(), 14);

    let n = 20_000;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let report = |label: &str, in_guest: Duration, native: Duration| {
        println!("  {label:<28} guest {:>7.2} µs/op   native {:>7.2} µs/op   ratio {:>5.2}x", us(in_guest), us(native), us(in_guest) / us(native));
    };
    println!("translate, one load balancer tree (1 listener, 1 pool, 10 members, TCP monitor), {n} iterations each:");
    let in_guest = per_op(n, || {
        std::hint::black_box(sandbox.translate(std::hint::black_box(&op)).unwrap().unwrap());
    });
    let native = per_op(n, || {
        std::hint::black_box(guest::plan::plan(&state, std::hint::black_box(&native_op), &config, "2026-01-01T00:00:00Z").unwrap());
    });
    report("loadbalancer_create (tree)", in_guest, native);

    // The operations that follow on that tree: the tree is in the policy's mapping, one object crosses.
    assert!(sandbox.handle(&op).unwrap().error.is_none());
    let mut mapped = guest::state::Memory::default();
    for change in native_plan.changes {
        guest::state::apply(&mut mapped, change);
    }
    let member = json!({"member_id": "member-03-0000-4000-8000-000000000000", "pool_id": "pool-0000-0000-4000-8000-000000000000",
                        "address": "10.0.1.3", "protocol_port": 8080, "weight": 1, "admin_state_up": true});
    let monitor = json!({"healthmonitor_id": "hm-00000-0000-4000-8000-000000000000", "pool_id": "pool-0000-0000-4000-8000-000000000000",
                         "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2, "max_retries_down": 3, "admin_state_up": true});
    let ops = [
        ("member_update (weight)", "member", member.clone(), json!({"weight": 4})),
        ("member_update (disable)", "member", member, json!({"admin_state_up": false})),
        ("health_monitor_update", "healthmonitor", monitor, json!({"delay": 10})),
    ];
    let mut sum = (Duration::ZERO, Duration::ZERO);
    for (label, name, old, change) in ops {
        let mut new = old.clone();
        for (k, v) in change.as_object().unwrap() {
            new[k] = v.clone();
        }
        let method = if name == "member" { "member_update" } else { "health_monitor_update" };
        let wit_op = host::convert::operation(method, &json!({format!("old_{name}"): old, format!("new_{name}"): new})).unwrap();
        let native_op = match &wit_op {
            host::runtime::bindings::octavia::Operation::Member((host::runtime::bindings::octavia::Action::Update, m)) => guest::octavia::Operation::Member((
                guest::octavia::Action::Update,
                serde_json::from_value(json!({"id": m.id, "pool_id": m.pool_id, "address": m.address, "protocol_port": m.protocol_port, "weight": m.weight,
                    "admin_state_up": m.admin_state_up, "backup": false, "monitor_address": null, "monitor_port": null}))
                .unwrap(),
            )),
            host::runtime::bindings::octavia::Operation::HealthMonitor((host::runtime::bindings::octavia::Action::Update, h)) => {
                guest::octavia::Operation::HealthMonitor((
                    guest::octavia::Action::Update,
                    serde_json::from_value(
                        json!({"id": h.id, "pool_id": h.pool_id, "kind": h.kind, "delay": h.delay, "timeout": h.timeout, "max_retries": h.max_retries,
                    "max_retries_down": h.max_retries_down, "http_method": null, "url_path": null, "expected_codes": null, "http_version": null,
                    "domain_name": null, "admin_state_up": true}),
                    )
                    .unwrap(),
                ))
            }
            _ => unreachable!(),
        };
        let plan = sandbox.translate(&wit_op).unwrap().unwrap();
        assert_eq!(plan.calls.len(), if label.contains("monitor") { 2 } else { 1 }, "{label}: {:?}", plan.calls);
        let in_guest = per_op(n, || {
            std::hint::black_box(sandbox.translate(std::hint::black_box(&wit_op)).unwrap().unwrap());
        });
        // Each call gets a view of its own keeping what earlier calls decoded, as in the guest.
        let mut kept = guest::state::Kept::default();
        let native = per_op(n, || {
            let state = guest::state::State::keeping(&mapped, &mut kept);
            std::hint::black_box(guest::plan::plan(&state, std::hint::black_box(&native_op), &config, "2026-01-01T00:00:00Z").unwrap());
        });
        report(label, in_guest, native);
        sum = (sum.0 + in_guest, sum.1 + native);
        if label == "member_update (weight)" {
            breakdown(&mut sandbox, &wit_op, n);
        }
    }
    report("mean of the updates", sum.0 / 3, sum.1 / 3);
}

/// Where a guest `member_update` goes, part by part: the updates above repeat over a mapping that does not
/// change, so every entry the policy kept is reused; here the mapping changes before each call, as when
/// each operation is committed.
fn breakdown(sandbox: &mut Sandbox, op: &host::runtime::bindings::octavia::Operation, n: u32) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let host::runtime::bindings::octavia::Operation::Member((host::runtime::bindings::octavia::Action::Update, member)) = op else { unreachable!() };
    let mapping = Arc::clone(sandbox.mapping());
    let entry = mapping.get(&member.id).expect("the member is mapped");
    let call = per_op(n, || {
        std::hint::black_box(sandbox.owns_rule(std::hint::black_box("x")).unwrap());
    });
    // The same entry put again: a new revision (and generation), so the policy asks what changed and
    // decodes this entry again.
    let put = || mapping.apply(vec![host::runtime::bindings::mapping::MappingChange::Put(entry.clone())]).unwrap();
    let commit = per_op(n, put);
    let after_commit = per_op(n, || {
        put();
        std::hint::black_box(sandbox.translate(std::hint::black_box(op)).unwrap().unwrap());
    });
    println!(
        "    guest parts: an empty call {:.2} µs, \
         translate after a commit of the member's entry {:.2} µs (the host's commit alone {:.2} µs)",
        us(call),
        us(after_commit - commit),
        us(commit)
    );
}
