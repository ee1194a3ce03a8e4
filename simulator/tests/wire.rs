//! The project's LoxiLB wire (`loxilb-api`) against the simulator: its bodies pass the real spec strictly,
//! and every typed call meets LoxiLB's contract as the simulator reproduces it, in both error styles.

use loxilb_api::{matches, probe_json, rule_json, Endpoint, EndpointProbe, LbRule, Loxilb, LoxilbCall, Node, RuleKey, ServiceArgs, WireError};
use loxilb_sim::{ErrorStyle, Simulator, SpecValidator};

fn service(vip: &str, port: u16, protocol: &str) -> ServiceArgs {
    ServiceArgs { external_ip: vip.into(), port, protocol: protocol.into(), mode: 2, name: format!("octavia_{vip}_{port}"), ..ServiceArgs::default() }
}

fn endpoints(ips: &[&str], port: u16, weight: u8) -> Vec<Endpoint> {
    ips.iter().map(|ip| Endpoint { ip: ip.to_string(), target_port: port, weight }).collect()
}

/// Rules exercising each optional part of the body and of the key.
fn rules() -> Vec<LbRule> {
    let monitored = ServiceArgs {
        sel: 2,
        monitor: true,
        probetype: "tcp".into(),
        probeport: 8080,
        probereq: "ping".into(),
        proberesp: "pong".into(),
        probe_timeout: 10,
        probe_retries: 3,
        inactive_timeout: 30,
        proxyprotocolv2: true,
        ..service("10.0.0.10", 80, "tcp")
    };
    vec![
        LbRule {
            service: monitored,
            endpoints: endpoints(&["10.0.1.1", "10.0.1.2"], 8080, 50),
            allowed_sources: vec!["192.0.2.0/24".into()],
            ..LbRule::default()
        },
        LbRule {
            service: ServiceArgs { block: 7, ..service("2001:db8::10", 443, "udp") },
            endpoints: endpoints(&["2001:db8::1:1"], 8443, 1),
            ..LbRule::default()
        },
        LbRule {
            service: ServiceArgs { mode: 4, host: "example.org".into(), ..service("10.0.0.11", 80, "tcp") },
            endpoints: endpoints(&["10.0.1.3"], 80, 1),
            ..LbRule::default()
        },
        LbRule {
            service: service("10.0.0.12", 38412, "sctp"),
            endpoints: endpoints(&["10.0.1.4"], 38412, 1),
            secondary_ips: vec!["10.0.0.13".into()],
            ..LbRule::default()
        },
    ]
}

fn probe() -> EndpointProbe {
    EndpointProbe {
        host_name: "10.0.1.1".into(),
        name: "10.0.1.1_tcp_8080".into(),
        probe_type: "http".into(),
        probe_port: 8080,
        probe_req: "healthz".into(),
        probe_resp: String::new(),
        probe_duration: 10,
        inactive_retries: 3,
    }
}

#[test]
fn the_wire_crates_bodies_pass_the_real_spec_strictly() {
    let spec = SpecValidator::embedded();
    for rule in rules() {
        spec.validate_strict("LoadbalanceEntry", &rule_json(&rule)).unwrap_or_else(|e| panic!("{e}: {}", rule_json(&rule)));
    }
    spec.validate_strict("EndPoint", &probe_json(&probe())).unwrap();
}

#[test]
fn every_call_meets_the_simulators_contract_in_both_error_styles() {
    for style in [ErrorStyle::Coded, ErrorStyle::Legacy] {
        let sim = Simulator::start(style).unwrap();
        let loxilb = Node::new(sim.url(), std::time::Duration::from_secs(5));
        for rule in rules() {
            loxilb.apply(&LoxilbCall::UpsertRule(rule.clone())).unwrap_or_else(|e| panic!("{style:?}: {e}"));
            // An unchanged re-POST is refused as lbrule-exists (409, or 200 in the legacy style): done.
            loxilb.apply(&LoxilbCall::UpsertRule(rule.clone())).unwrap_or_else(|e| panic!("{style:?} re-POST: {e}"));
        }
        assert_eq!(sim.requests().iter().filter(|r| r.response.contains("lbrule-exists")).count(), rules().len(), "{style:?}");

        let listed = loxilb.list_rules().unwrap();
        assert_eq!(listed.len(), rules().len());
        let held = sim.observed_rules();
        assert!(held.len() == listed.len() && listed.iter().all(|r| held.contains(r)), "the simulator's typed view is the listing's");
        for want in rules() {
            let got = listed.iter().find(|o| o.rule.key() == want.key()).unwrap_or_else(|| panic!("{:?} not listed", want.key()));
            assert!(matches(&want, &got.rule), "{style:?}: {want:?} listed as {:?}", got.rule);
            assert!(got.endpoints.iter().all(|e| e.state == "active"));
        }

        loxilb.apply(&LoxilbCall::UpsertProbe(probe())).unwrap();
        loxilb.apply(&LoxilbCall::UpsertProbe(probe())).unwrap();
        // Still referenced by the rule's endpoint: LoxiLB refuses to delete it.
        assert!(matches!(loxilb.apply(&LoxilbCall::DeleteProbe(probe())), Err(WireError::Refused { .. })), "{style:?}");

        for rule in rules() {
            loxilb.apply(&LoxilbCall::DeleteRule(rule.key())).unwrap_or_else(|e| panic!("{style:?}: {e}"));
            loxilb.apply(&LoxilbCall::DeleteRule(rule.key())).unwrap_or_else(|e| panic!("{style:?} deleting again: {e}"));
        }
        assert!(sim.rules().is_empty());
        loxilb.apply(&LoxilbCall::DeleteProbe(probe())).unwrap();
        loxilb.apply(&LoxilbCall::DeleteProbe(probe())).unwrap();
        assert!(sim.endpoints().is_empty(), "{:?}", sim.endpoints());

        // A refusal carries LoxiLB's raw error in both styles.
        let mut empty = rules().remove(0);
        empty.endpoints.clear();
        match loxilb.apply(&LoxilbCall::UpsertRule(empty)) {
            Err(WireError::Refused { status, result, .. }) => {
                assert_eq!(result, "endpoints-range error");
                assert_eq!(status, if style == ErrorStyle::Legacy { 200 } else { 400 });
            }
            other => panic!("{style:?}: {other:?}"),
        }
        let missing = RuleKey { external_ip: "10.9.9.9".into(), port: 1, protocol: "tcp".into(), ..RuleKey::default() };
        loxilb.apply(&LoxilbCall::DeleteRule(missing)).unwrap();
        loxilb.reachable().unwrap();
    }
}

/// Traffic a test drives moves the endpoint counters and the connection table, and the typed wire reads
/// them back as one connection per client: forward bytes on the endpoint and the forward entry, reply
/// bytes on the reply entry only.
#[test]
fn driven_traffic_moves_the_counters_loxilb_lists() {
    let sim = Simulator::start(ErrorStyle::Coded).unwrap();
    let api = Node::new(sim.url(), std::time::Duration::from_secs(5));
    let rule = LbRule { service: service("10.0.0.10", 80, "tcp"), endpoints: endpoints(&["10.0.1.1", "10.0.1.2"], 8080, 1), ..LbRule::default() };
    api.apply(&LoxilbCall::UpsertRule(rule.clone())).unwrap();
    let (a, b) = (loxilb_sim::Flow::tcp("192.0.2.7:40000", "10.0.0.10", 80), loxilb_sim::Flow::tcp("192.0.2.8:40001", "10.0.0.10", 80));
    sim.open(&a).unwrap();
    sim.open(&b).unwrap();
    sim.carry(&a, 100, 5000).unwrap();
    sim.carry(&b, 40, 700).unwrap();
    sim.carry(&a, 20, 0).unwrap();

    let listed = api.list_rules().unwrap();
    let counters: Vec<(String, u64, u64)> = listed[0].endpoints.iter().map(|e| (e.ip.clone(), e.packets, e.bytes)).collect();
    assert_eq!(counters, [("10.0.1.1".to_string(), 2, 120), ("10.0.1.2".to_string(), 1, 40)]);
    let table = api.list_conntrack().unwrap();
    assert_eq!(table.len(), 4);
    let connections = loxilb_api::connections(&table, &rule.key());
    let seen: Vec<(&str, bool, u64, u64)> = connections.iter().map(|c| (c.client.as_str(), c.active, c.bytes_in, c.bytes_out)).collect();
    assert_eq!(seen, [("192.0.2.7:40000", true, 120, 5000), ("192.0.2.8:40001", true, 40, 700)]);

    sim.close(&a).unwrap();
    assert_eq!(loxilb_api::connections(&api.list_conntrack().unwrap(), &rule.key()).len(), 1);
    assert_eq!(api.list_rules().unwrap()[0].endpoints[0].bytes, 120, "closing keeps the endpoint counter");
    assert!(sim.carry(&a, 1, 1).unwrap_err().to_string().contains("is not open"));
    assert_eq!(sim.open(&loxilb_sim::Flow::tcp("192.0.2.9:1", "10.0.0.99", 80)).unwrap_err().to_string(), "no rule serves 10.0.0.99:80/tcp");
    sim.restart();
    assert!(api.list_conntrack().unwrap().is_empty());
}

/// Full NAT (`mode` 2) and full proxy (`mode` 4) rules show their connections as LoxiLB lists them in those
/// modes, and the typed wire still finds each connection's bytes out (none to tell apart in full proxy).
#[test]
fn full_nat_and_full_proxy_connections_have_their_modes_shapes() {
    let sim = Simulator::start(ErrorStyle::Coded).unwrap();
    let api = Node::new(sim.url(), std::time::Duration::from_secs(5));
    let fullnat =
        LbRule { service: ServiceArgs { mode: 2, ..service("10.0.0.20", 80, "tcp") }, endpoints: endpoints(&["10.0.1.1"], 8080, 1), ..LbRule::default() };
    let proxy =
        LbRule { service: ServiceArgs { mode: 4, ..service("10.0.0.21", 80, "tcp") }, endpoints: endpoints(&["10.0.1.2"], 8080, 1), ..LbRule::default() };
    for rule in [&fullnat, &proxy] {
        api.apply(&LoxilbCall::UpsertRule(rule.clone())).unwrap();
        let flow = loxilb_sim::Flow::tcp("192.0.2.7:40000", &rule.service.external_ip, 80);
        sim.open(&flow).unwrap();
        sim.carry(&flow, 100, 900).unwrap();
    }
    let table = api.list_conntrack().unwrap();
    let acts: Vec<&str> = table.iter().map(|e| e.conntrack_act.as_str()).collect();
    assert_eq!(acts, ["fdnat-198.51.100.1,10.0.1.1:8080:w0", "fsnat-10.0.0.20,192.0.2.7:80:w0", "fp|198.51.100.1:40000->10.0.1.2:8080|tcp"]);
    assert_eq!((table[1].destination_ip.as_str(), table[1].destination_port, table[1].bytes), ("198.51.100.1", 40000, 900));
    assert_eq!(table[2].bytes, 1000, "a full-proxy entry counts both directions");
    let out = |rule: &LbRule| loxilb_api::connections(&table, &rule.key()).iter().map(|c| c.bytes_out).collect::<Vec<_>>();
    assert_eq!((out(&fullnat), out(&proxy)), (vec![900], vec![0]));
    sim.close(&loxilb_sim::Flow::tcp("192.0.2.7:40000", "10.0.0.20", 80)).unwrap();
    assert_eq!(api.list_conntrack().unwrap().len(), 1);
}
