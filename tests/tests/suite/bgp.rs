//! VIPs that reach LoxiLB over BGP (issue 13, item 5): rules carry `bgp` by `[driver_loxilb] bgp` or the
//! flavor key `bgp`, deletes withdraw the route, and in-place updates do not count it up again (LoxiLB
//! would then keep advertising a deleted load balancer's VIP).

use std::sync::Arc;

use host::loxilb::LoxiTransport;
use host::monitor::{Monitor, Upkeep};
use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::Limits;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "b9b9b9b9-0000-4000-8000-000000000001";
const LB2: &str = "b9b9b9b9-0000-4000-8000-000000000002";
const L1: &str = "b9b9b9b9-0000-4000-8000-000000000011";
const L2: &str = "b9b9b9b9-0000-4000-8000-000000000012";
const P1: &str = "b9b9b9b9-0000-4000-8000-000000000021";
const P2: &str = "b9b9b9b9-0000-4000-8000-000000000022";

fn tree(lb: &str, vip: &str, l: &str, p: &str, member_ip: &str) -> Value {
    let m = member(&format!("{p}-m"), p, member_ip, 8080, 1);
    loadbalancer(lb, vip, vec![listener(l, lb, "TCP", 80, Some(pool(p, lb, Some(l), "TCP", vec![m], None)))])
}

fn bgp_flags(host: &TestHost) -> Vec<(String, bool)> {
    host.sim.rules().iter().map(|r| (r["serviceArguments"]["externalIP"].as_str().unwrap().to_string(), r["serviceArguments"]["bgp"] == true)).collect()
}

#[test]
fn bgp_by_config_advertises_the_vip_until_the_load_balancer_is_deleted_whatever_was_updated() {
    let host = test_host(&default_policy(), Limits::default(), Settings { nat_mode: "fullnat".into(), bgp: true });
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB, "10.70.0.10", L1, P1, "10.70.1.1")}));
    assert_eq!(bgp_flags(&host), [("10.70.0.10".to_string(), true)]);
    assert_eq!(host.sim.advertised(), ["10.70.0.10"]);

    // Member changes update the rule in place: LoxiLB keeps its bgp flag, and the advertisement is counted once.
    host.sim.clear_requests();
    let added = member("b9b9b9b9-0000-4000-8000-000000000031", P1, "10.70.1.2", 8080, 1);
    host.service.apply("member_create", &json!({"member": added, "loadbalancer_id": LB}));
    let posted: Vec<Value> =
        host.sim.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/config/loadbalancer")).filter_map(|r| r.json()).collect();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["serviceArguments"]["bgp"], json!(false), "an in-place update is sent without bgp");
    assert_eq!(bgp_flags(&host), [("10.70.0.10".to_string(), true)]);
    assert_eq!(endpoint_ips(&host.sim), ["10.70.1.1", "10.70.1.2"]);

    // LoxiLB restarts: reconciliation re-creates the rule with bgp, and the VIP is advertised again.
    host.sim.restart();
    assert!(host.sim.advertised().is_empty());
    monitor_of(&host).tick(&mut Upkeep::default());
    assert_eq!(host.sim.advertised(), ["10.70.0.10"]);

    host.sim.clear_requests();
    let lb = tree(LB, "10.70.0.10", L1, P1, "10.70.1.1");
    host.service.apply("loadbalancer_delete", &json!({"loadbalancer": lb, "cascade": true}));
    assert!(host.sim.rules().is_empty());
    let deletes: Vec<String> = host.sim.requests().iter().filter(|r| r.method == "DELETE").map(|r| r.query.clone()).collect();
    assert_eq!(deletes, ["block=0&bgp=true"]);
    assert!(host.sim.advertised().is_empty(), "the deleted load balancer's VIP is withdrawn");
}

/// The monitor of `host`, reconciling at every tick.
fn monitor_of(host: &TestHost) -> Monitor {
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(host::loxilb::HttpLoxi::new(vec![host.sim.url()], std::time::Duration::from_secs(5)));
    Monitor {
        service: Arc::clone(&host.service),
        loxilb,
        agent: None,
        stats_interval: std::time::Duration::ZERO,
        reconcile_interval: std::time::Duration::ZERO,
    }
}

#[test]
fn a_rule_reconciliation_repairs_in_place_is_not_advertised_once_more() {
    let host = test_host(&default_policy(), Limits::default(), Settings { nat_mode: "fullnat".into(), bgp: true });
    let lb = tree(LB, "10.72.0.10", L1, P1, "10.72.1.1");
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": lb}));
    assert_eq!(host.sim.advertised(), ["10.72.0.10"]);

    // The rule drifts on LoxiLB (its endpoint replaced behind the host's back, by an update that keeps
    // the rule's bgp flag and its one advertisement).
    let mut drifted = host.sim.rules()[0].clone();
    drifted["endpoints"][0]["endpointIP"] = json!("10.72.1.9");
    drifted["serviceArguments"]["bgp"] = json!(false);
    let monitor = monitor_of(&host);
    let (status, body) = monitor.loxilb.request("POST", "/config/loadbalancer", Some(&drifted.to_string())).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(endpoint_ips(&host.sim), ["10.72.1.9"]);

    host.sim.clear_requests();
    monitor.reconcile();
    let posted: Vec<Value> =
        host.sim.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/config/loadbalancer")).filter_map(|r| r.json()).collect();
    assert_eq!(posted.len(), 1, "the drifted rule is repaired in place: {posted:?}");
    assert_eq!(posted[0]["serviceArguments"]["bgp"], json!(false), "an in-place repair is sent without bgp");
    assert_eq!(endpoint_ips(&host.sim), ["10.72.1.1"]);
    assert_eq!(bgp_flags(&host), [("10.72.0.10".to_string(), true)]);

    host.service.apply("loadbalancer_delete", &json!({"loadbalancer": lb, "cascade": true}));
    assert!(host.sim.rules().is_empty());
    assert!(host.sim.advertised().is_empty(), "the deleted load balancer's VIP is withdrawn");
}

#[test]
fn the_flavor_chooses_bgp_per_load_balancer_and_a_bad_value_is_refused() {
    let host = test_host(&default_policy(), Limits::default(), settings());
    let mut with_bgp = tree(LB, "10.71.0.10", L1, P1, "10.71.1.1");
    with_bgp["flavor"] = json!({"bgp": true});
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": with_bgp}));
    host.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB2, "10.71.0.20", L2, P2, "10.71.1.2")}));
    let mut flags = bgp_flags(&host);
    flags.sort();
    assert_eq!(flags, [("10.71.0.10".to_string(), true), ("10.71.0.20".to_string(), false)]);
    assert_eq!(host.sim.advertised(), ["10.71.0.10"]);

    let mut bad =
        tree("b9b9b9b9-0000-4000-8000-000000000003", "10.71.0.30", "b9b9b9b9-0000-4000-8000-000000000013", "b9b9b9b9-0000-4000-8000-000000000023", "10.71.1.3");
    bad["flavor"] = json!({"bgp": "sometimes"});
    let refused = host.service.sandbox.lock().unwrap().validate(&op("loadbalancer_create", json!({"loadbalancer": bad}))).unwrap().unwrap_err();
    let text = format!("{refused:?}");
    assert!(text.contains("Unsupported") && text.contains("bgp must be true or false"), "{text}");
}
