//! The default policy component under wasmtime: what it imports, and the LoxiLB bodies it produces for
//! each Octavia feature, written out in full and checked against LoxiLB's swagger spec.

use std::sync::Arc;

use host::runtime::bindings::policy_types::PolicyError;
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const L1: &str = "aaaaaaaa-0000-4000-8000-000000000011";
const L2: &str = "aaaaaaaa-0000-4000-8000-000000000012";
const P1: &str = "aaaaaaaa-0000-4000-8000-000000000021";
const P2: &str = "aaaaaaaa-0000-4000-8000-000000000022";

fn name(listener: &str, pool: &str) -> String {
    format!("octavia_lb-{LB}_listener-{listener}_pool-{pool}")
}

/// Runs `loadbalancer_create` through `handle` and returns the rule bodies the policy POSTed.
fn create(lb: Value) -> (Vec<Value>, Vec<Request>) {
    let loxi = Arc::new(RecordingLoxi::default());
    let mut sandbox = sandbox(loxi.clone());
    let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": lb}))).expect("no trap");
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let requests = loxi.take();
    let spec = spec();
    let rules = posted_rules(&requests);
    for body in &rules {
        spec.validate("LoadbalanceEntry", body).unwrap_or_else(|e| panic!("invalid LoadbalanceEntry {body}: {e}"));
    }
    (rules, requests)
}

fn refusal(lb: Value) -> PolicyError {
    let mut sandbox = sandbox(Arc::new(RecordingLoxi::default()));
    sandbox.validate(&op("loadbalancer_create", json!({"loadbalancer": lb}))).expect("no trap").expect_err("must be refused")
}

/// The imports of a component that carry functions (type-only interfaces are imports too), by name.
fn function_imports(path: &std::path::Path) -> Vec<String> {
    use wasmtime::component::types::ComponentItem;
    let engine = host::runtime::engine();
    let component = wasmtime_component(engine, &std::fs::read(path).unwrap());
    let mut out = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        assert!(!name.starts_with("wasi:"), "{} imports WASI: {name}", path.display());
        assert!(name.starts_with("loxilb:octavia/"), "{} imports {name}", path.display());
        if let ComponentItem::ComponentInstance(instance) = item.ty {
            if instance.exports(engine).any(|(_, export)| matches!(export.ty, ComponentItem::ComponentFunc(_))) {
                out.push(name.to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_policy_imports_exactly_the_mapping_view_log_and_clock() {
    let want: Vec<String> = ["clock", "log", "mapping-view"].iter().map(|c| format!("loxilb:octavia/{c}@0.2.0")).collect();
    let policies = [default_policy(), integration_tests::built("policy_http_fullproxy"), integration_tests::built("policy_template")];
    for policy in &policies {
        assert_eq!(function_imports(policy), want, "{}", policy.display());
    }
    // A policy that never logs does not import the log: whatever it imports is among the three.
    let minimal = integration_tests::built("policy_minimal");
    let imports = function_imports(&minimal);
    assert!(imports.iter().all(|i| want.contains(i)) && imports.iter().any(|i| i.contains("mapping-view")), "{}: {imports:?}", minimal.display());
}

/// Guards what was won toward issue 12's 300 KB: the default policy was 514,186 bytes while `validate` was
/// an export of its own (a second copy of the canonical-ABI lifting of `operation`, 44 KB) and five more
/// sorts were instantiated; 437,588 bytes then, 420,683 once its JSON reader stopped parsing floats (the
/// standard library's float parser and its tables, 17 KB), and 390,447 since `operation` has a case per
/// object kind instead of one per call (each record's lifting once, not once per call: 30 KB); 383,331 once
/// every map hashes with Fx (a second copy of the map's code and SipHash gone) and messages quote what they
/// were given without `{:?}` (the standard library's debug formatting of strings gone); 376,715
/// with SHA-256's compact implementation in the component (recovery's hashing no slower beyond the noise);
/// 374,154 once keys are split without the standard library's substring searcher; 366,973 once no text is
/// sliced with `&s[..]` (the slicing panic's formatting and Unicode tables gone); 365,365 with unstable sorts
/// only (the policy sorts strings and totally ordered indices: the same order either way); 354,644 once
/// the metadata's readers note the first wrong field and read on, instead of returning from the middle of
/// each struct literal (an early return there drops every field read so far: a clean-up path per field);
/// 353,626 once an address without a colon is taken as it is, unparsed (IPv4 or no address alike).
#[test]
fn the_default_policy_stays_within_its_size_budget() {
    const BUDGET: u64 = 354_000;
    let size = std::fs::metadata(default_policy()).expect("the default policy is built").len();
    assert!(
        size <= BUDGET,
        "the default policy is {size} bytes, over its budget of {BUDGET}: see what grew with a build keeping names (CARGO_PROFILE_GUEST_STRIP=false)"
    );
}

fn wasmtime_component(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::component::Component {
    wasmtime::component::Component::new(engine, bytes).expect("a component")
}

#[test]
fn tcp_load_balancer_with_two_listeners_gets_one_rule_each() {
    let lb = loadbalancer(
        LB,
        "10.0.0.10",
        vec![
            listener(
                L1,
                LB,
                "TCP",
                80,
                Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.0.1.1", 8080, 1), member("m2", P1, "10.0.1.2", 8080, 1)], None)),
            ),
            listener(L2, LB, "TCP", 443, Some(pool(P2, LB, Some(L2), "TCP", vec![member("m3", P2, "10.0.1.3", 8443, 1)], None))),
        ],
    );
    let (rules, _) = create(lb);
    assert_eq!(
        rules,
        vec![
            json!({"serviceArguments": {"externalIP": "10.0.0.10", "port": 80, "protocol": "tcp", "sel": 0, "mode": 2, "security": 0, "bgp": false,
                    "monitor": false, "inactiveTimeOut": 0, "block": 0, "name": name(L1, P1), "oper": 0},
                   "endpoints": [{"endpointIP": "10.0.1.1", "targetPort": 8080, "weight": 1}, {"endpointIP": "10.0.1.2", "targetPort": 8080, "weight": 1}]}),
            json!({"serviceArguments": {"externalIP": "10.0.0.10", "port": 443, "protocol": "tcp", "sel": 0, "mode": 2, "security": 0, "bgp": false,
                    "monitor": false, "inactiveTimeOut": 0, "block": 0, "name": name(L2, P2), "oper": 0},
                   "endpoints": [{"endpointIP": "10.0.1.3", "targetPort": 8443, "weight": 1}]}),
        ]
    );
}

#[test]
fn udp_with_udp_connect_monitor_probes_at_rule_level() {
    let lb = loadbalancer(
        LB,
        "10.0.0.10",
        vec![listener(
            L1,
            LB,
            "UDP",
            53,
            Some(pool(
                P1,
                LB,
                Some(L1),
                "UDP",
                vec![member("m1", P1, "10.0.1.1", 5353, 1), member("m2", P1, "10.0.1.2", 5353, 1)],
                Some(monitor("h1", P1, "UDP-CONNECT")),
            )),
        )],
    );
    let (rules, _) = create(lb);
    assert_eq!(
        rules,
        vec![json!({"serviceArguments": {"externalIP": "10.0.0.10", "port": 53, "protocol": "udp", "sel": 0, "mode": 2, "security": 0, "bgp": false,
                     "monitor": true, "inactiveTimeOut": 0, "block": 0, "name": name(L1, P1), "oper": 0,
                     "probetype": "udp", "probeport": 5353, "probeTimeout": 5, "probeRetries": 3},
                    "endpoints": [{"endpointIP": "10.0.1.1", "targetPort": 5353, "weight": 1}, {"endpointIP": "10.0.1.2", "targetPort": 5353, "weight": 1}]})]
    );
}

#[test]
fn weighted_round_robin_becomes_priority_selection_in_percent() {
    let lb = loadbalancer(
        LB,
        "10.0.0.10",
        vec![listener(
            L1,
            LB,
            "TCP",
            80,
            Some(pool(
                P1,
                LB,
                Some(L1),
                "TCP",
                vec![member("m1", P1, "10.0.1.1", 80, 3), member("m2", P1, "10.0.1.2", 80, 1), member("m3", P1, "10.0.1.3", 80, 0)],
                None,
            )),
        )],
    );
    let (rules, _) = create(lb);
    // Weight 0 drains the member: it takes no new connections, so it is not an endpoint.
    assert_eq!(
        rules,
        vec![json!({"serviceArguments": {"externalIP": "10.0.0.10", "port": 80, "protocol": "tcp", "sel": 2, "mode": 2, "security": 0, "bgp": false,
                     "monitor": false, "inactiveTimeOut": 0, "block": 0, "name": name(L1, P1), "oper": 0},
                    "endpoints": [{"endpointIP": "10.0.1.1", "targetPort": 80, "weight": 75}, {"endpointIP": "10.0.1.2", "targetPort": 80, "weight": 25}]})]
    );
}

#[test]
fn source_ip_persistence_selects_persist() {
    let mut p = pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.0.1.1", 80, 1), member("m2", P1, "10.0.1.2", 80, 1)], None);
    p["session_persistence"] = json!({"type": "SOURCE_IP"});
    let mut l = listener(L1, LB, "TCP", 80, Some(p));
    l["timeout_client_data"] = json!(50000);
    let (rules, _) = create(loadbalancer(LB, "10.0.0.10", vec![l]));
    assert_eq!(
        rules,
        vec![json!({"serviceArguments": {"externalIP": "10.0.0.10", "port": 80, "protocol": "tcp", "sel": 3, "mode": 2, "security": 0, "bgp": false,
                     "monitor": false, "inactiveTimeOut": 50, "block": 0, "name": name(L1, P1), "oper": 0},
                    "endpoints": [{"endpointIP": "10.0.1.1", "targetPort": 80, "weight": 1}, {"endpointIP": "10.0.1.2", "targetPort": 80, "weight": 1}]})]
    );
}

#[test]
fn ipv6_vip_with_tcp_monitor() {
    let lb = loadbalancer(
        LB,
        "2001:db8::10",
        vec![listener(
            L1,
            LB,
            "TCP",
            80,
            Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "2001:db8:1::1", 8080, 1)], Some(monitor("h1", P1, "TCP")))),
        )],
    );
    let (rules, _) = create(lb);
    assert_eq!(
        rules,
        vec![json!({"serviceArguments": {"externalIP": "2001:db8::10", "port": 80, "protocol": "tcp", "sel": 0, "mode": 2, "security": 0, "bgp": false,
                     "monitor": true, "inactiveTimeOut": 0, "block": 0, "name": name(L1, P1), "oper": 0,
                     "probetype": "tcp", "probeport": 8080, "probeTimeout": 5, "probeRetries": 3},
                    "endpoints": [{"endpointIP": "2001:db8:1::1", "targetPort": 8080, "weight": 1}]})]
    );
    let mut sandbox = sandbox(Arc::new(RecordingLoxi::default()));
    sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": loadbalancer(LB, "2001:db8::10", vec![])}))).unwrap();
    let keys: Vec<String> = sandbox.mappings().unwrap().into_iter().map(|m| m.loxilb_key).collect();
    assert_eq!(keys, vec!["2001:db8::10"]);
}

#[test]
fn http_monitor_uses_per_endpoint_probes() {
    let mut hm = monitor("h1", P1, "HTTP");
    hm["url_path"] = json!("/healthz");
    hm["http_method"] = json!("GET");
    hm["expected_codes"] = json!("200");
    let lb = loadbalancer(
        LB,
        "10.0.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.0.1.1", 8080, 1)], Some(hm))))],
    );
    let (rules, requests) = create(lb);
    assert_eq!(rules[0]["serviceArguments"]["monitor"], true);
    assert!(rules[0]["serviceArguments"].get("probetype").is_none());
    let probes: Vec<&Value> = requests.iter().filter(|(m, p, _)| m == "POST" && p == "/config/endpoint").filter_map(|(_, _, b)| b.as_ref()).collect();
    let expected = json!({"hostName": "10.0.1.1", "name": "10.0.1.1_tcp_8080", "probeType": "http", "probePort": 8080, "probeReq": "healthz",
                          "probeResp": "", "probeDuration": 5, "inactiveReTries": 3});
    assert_eq!(probes, vec![&expected]);
    spec().validate("EndPoint", &expected).unwrap();
}

#[test]
fn thirty_three_members_are_refused() {
    let members = (0..33).map(|i| member(&format!("m{i}"), P1, &format!("10.0.1.{}", i + 1), 80, 1)).collect();
    let lb = loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))]);
    match refusal(lb) {
        PolicyError::Invalid(m) => assert!(m.contains("33") && m.contains("32"), "{m}"),
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn cookie_persistence_is_refused_with_an_actionable_message() {
    let mut p = pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.0.1.1", 80, 1)], None);
    p["session_persistence"] = json!({"type": "HTTP_COOKIE"});
    match refusal(loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "TCP", 80, Some(p))])) {
        PolicyError::Unsupported(m) => assert!(m.contains("HTTP_COOKIE") && m.contains("SOURCE_IP"), "{m}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn http_listener_is_refused_by_the_l4_policy() {
    match refusal(loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "HTTP", 80, None)])) {
        PolicyError::Unsupported(m) => assert!(m.contains("HTTP") && m.contains(L1), "{m}"),
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
fn listener_without_pool_programs_nothing() {
    let loxi = Arc::new(RecordingLoxi::default());
    let mut sandbox = sandbox(loxi.clone());
    let create = op("loadbalancer_create", json!({"loadbalancer": loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "UDP", 53, None)])}));
    let plan = sandbox.translate(&create).unwrap().unwrap();
    assert!(plan.calls.is_empty(), "{:?}", plan.calls);
    assert_eq!(plan.mapping.len(), 2);
    let outcome = sandbox.handle(&create).unwrap();
    assert!(outcome.error.is_none());
    assert!(loxi.take().is_empty(), "a listener without a pool must not reach LoxiLB");
    // The pool arrives without members: still nothing; its first member programs the rule.
    let outcome = sandbox.handle(&op("pool_create", json!({"pool": pool(P1, LB, Some(L1), "UDP", vec![], None)}))).unwrap();
    assert!(outcome.error.is_none());
    assert!(loxi.take().is_empty());
    sandbox.handle(&op("member_create", json!({"member": member("m1", P1, "10.0.1.1", 53, 1)}))).unwrap();
    let rules = posted_rules(&loxi.take());
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["serviceArguments"]["protocol"], "udp");
}

#[test]
fn translate_is_pure_and_reports_the_plan() {
    let loxi = Arc::new(RecordingLoxi::default());
    let mut sandbox = sandbox(loxi.clone());
    let lb =
        loadbalancer(LB, "10.0.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.0.1.1", 80, 1)], None)))]);
    let plan = sandbox.translate(&op("loadbalancer_create", json!({"loadbalancer": lb}))).unwrap().unwrap();
    assert_eq!(plan.calls.len(), 1);
    assert_eq!(plan.mapping.len(), 4);
    assert_eq!(plan.statuses.len(), 4);
    assert!(loxi.take().is_empty(), "translate must not call LoxiLB");
    assert!(sandbox.mappings().unwrap().is_empty(), "translate must not change the mapping");
}
