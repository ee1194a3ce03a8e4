//! `allowed_cidrs` against LoxiLB's limit: only the first 28 rules it numbers can carry `allowedSources`
//! (400 `rule-allowed-src error` beyond, reproduced by the simulator). Allow-all lists send nothing, so any
//! number of load balancers with them is served; a real restriction is refused at validation.

use std::sync::Arc;

use host::loxilb::HttpLoxi;
use host::runtime::bindings::policy_types::PolicyError;
use integration_tests::*;
use serde_json::json;

fn lb(n: u32, cidrs: serde_json::Value) -> serde_json::Value {
    let (lb, l, p) = (format!("dddddddd-0000-4000-8000-{n:012}"), format!("dddddddd-0001-4000-8000-{n:012}"), format!("dddddddd-0002-4000-8000-{n:012}"));
    let mut listener = listener(
        &l,
        &lb,
        "TCP",
        80,
        Some(pool(&p, &lb, Some(&l), "TCP", vec![member(&format!("dddddddd-0003-4000-8000-{n:012}"), &p, "10.60.0.1", 80, 1)], None)),
    );
    listener["allowed_cidrs"] = cidrs;
    loadbalancer(&lb, &format!("10.50.{}.{}", n / 250, n % 250 + 1), vec![listener])
}

#[test]
fn allow_all_sources_serve_past_loxilbs_28th_rule() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let mut sandbox = sandbox(Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5))));
    for n in 0..40 {
        let cidrs = if n % 2 == 0 { json!(["0.0.0.0/0"]) } else { json!(["192.0.2.0/24", "0.0.0.0/0"]) };
        let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": lb(n, cidrs)}))).unwrap();
        assert!(outcome.error.is_none(), "load balancer {n}: {:?}", outcome.error);
    }
    let rules = sim.rules();
    assert_eq!(rules.len(), 40);
    assert!(rules.iter().all(|r| r["allowedSources"].is_null()), "allow-all needs no source check");
    assert_eq!(sandbox.reconcile().unwrap().unwrap().reprogrammed, Vec::<String>::new());
}

#[test]
fn a_source_restriction_is_refused_at_validation_naming_the_limit() {
    let mut sandbox = sandbox(Arc::new(RecordingLoxi::default()));
    let refused = |sandbox: &mut host::runtime::instance::Sandbox, method: &str, args: serde_json::Value| match sandbox.validate(&op(method, args)).unwrap() {
        Err(PolicyError::Unsupported(message)) => message,
        other => panic!("{method}: {other:?}"),
    };
    let message = refused(&mut sandbox, "loadbalancer_create", json!({"loadbalancer": lb(1, json!(["192.0.2.0/24"]))}));
    assert!(message.contains("allowed_cidrs 192.0.2.0/24") && message.contains("first 28 rules") && message.contains("0.0.0.0/0"), "{message}");

    // A listener added to a served load balancer, and an update that restricts an open one.
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": lb(2, json!([]))}))).unwrap().error.is_none());
    let open = &lb(2, json!([]))["listeners"][0];
    let mut restricted = open.clone();
    restricted["allowed_cidrs"] = json!(["fd00::/8"]);
    restricted["listener_id"] = json!("dddddddd-0009-4000-8000-000000000002");
    restricted["protocol_port"] = json!(443);
    restricted.as_object_mut().unwrap().remove("default_pool");
    restricted.as_object_mut().unwrap().remove("default_pool_id");
    assert!(refused(&mut sandbox, "listener_create", json!({"listener": restricted})).contains("fd00::/8"));
    let update = json!({"old_listener": open, "new_listener": {"listener_id": open["listener_id"], "allowed_cidrs": ["10.0.0.0/8", "10.1.0.0/16"]}});
    assert!(refused(&mut sandbox, "listener_update", update).contains("10.0.0.0/8, 10.1.0.0/16"));
    assert!(sandbox
        .validate(&op("listener_update", json!({"old_listener": open, "new_listener": {"listener_id": open["listener_id"], "allowed_cidrs": ["::/0"]}})))
        .unwrap()
        .is_ok());
}
