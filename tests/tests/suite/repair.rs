//! Reconciliation repairing a rule LoxiLB holds otherwise than wanted, where LoxiLB does not apply an
//! in-place update (API notes, §6): the repair deletes and creates the rule instead of leaving it as it
//! was at every pass.

use std::sync::Arc;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::runtime::bindings::loxilb_types::LoxilbCall;
use host::runtime::bindings::policy_types::DesiredRule;
use integration_tests::*;
use serde_json::json;

const LB: &str = "cececece-0000-4000-8000-000000000001";
const L1: &str = "cececece-0000-4000-8000-000000000011";
const P1: &str = "cececece-0000-4000-8000-000000000021";

/// A simulator, and the rule the default policy wants for a `protocol` load balancer with one member
/// (LoxiLB holds it as wanted).
fn wanted_rule(protocol: &str) -> (loxilb_sim::Simulator, Arc<dyn LoxiTransport>, DesiredRule) {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5)));
    let mut sandbox = sandbox(Arc::clone(&loxilb));
    let m = member("cececece-0000-4000-8000-000000000031", P1, "10.61.1.1", 8080, 1);
    let tree = loadbalancer(LB, "10.61.0.10", vec![listener(L1, LB, protocol, 80, Some(pool(P1, LB, Some(L1), protocol, vec![m], None)))]);
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree}))).unwrap().error.is_none());
    let want = sandbox.desired_rules().unwrap()[0].clone();
    (sim, loxilb, want)
}

/// Reconciliation's repair of the one rule LoxiLB holds, against `want`.
fn repair(loxilb: &Arc<dyn LoxiTransport>, want: &DesiredRule) -> Result<(), String> {
    let observed = host::wire::observed(loxilb.as_ref()).unwrap();
    let drift = host::drift::drift(std::slice::from_ref(want), &observed);
    assert_eq!(drift.different.len(), 1, "the rule differs");
    host::drift::repair(want, Some(drift.different[0].1)).iter().try_for_each(|call| host::wire::call(loxilb.as_ref(), call))
}

/// A rule LoxiLB holds with other source prefixes (as a policy of one's own may send them, on LoxiLB's
/// first rules): LoxiLB compares a list of as many prefixes inverted and drops the change as
/// `lbrule-exists`, so an in-place repair changed nothing, at every pass.
#[test]
fn a_rule_with_other_source_prefixes_is_deleted_and_created() {
    let (sim, loxilb, mut want) = wanted_rule("TCP");
    let mut held = want.rule.clone();
    held.allowed_sources = vec!["198.51.100.0/24".into()];
    host::wire::call(loxilb.as_ref(), &LoxilbCall::UpsertRule(held)).unwrap();
    assert_eq!(sim.rules()[0]["allowedSources"], json!([{"prefix": "198.51.100.0/24"}]));

    want.rule.allowed_sources = vec!["192.0.2.0/24".into()];
    repair(&loxilb, &want).unwrap();
    assert_eq!(sim.rules()[0]["allowedSources"], json!([{"prefix": "192.0.2.0/24"}]));
}

/// An SCTP rule LoxiLB holds with other secondary addresses: it serves addresses Octavia does not show.
/// The listing's comparison overlooked them, and LoxiLB refuses any update that changes them (500
/// `secIP modify error`), so an in-place repair would fail at every pass.
#[test]
fn a_rule_with_other_secondary_addresses_is_deleted_and_created() {
    let (sim, loxilb, want) = wanted_rule("SCTP");
    host::wire::call(loxilb.as_ref(), &LoxilbCall::DeleteRule(host::wire::rule_key(&want.rule))).unwrap();
    let mut held = want.rule.clone();
    held.secondary_ips = vec!["10.61.0.11".into()];
    host::wire::call(loxilb.as_ref(), &LoxilbCall::UpsertRule(held)).unwrap();
    assert_eq!(sim.rules()[0]["secondaryIPs"], json!([{"secondaryIP": "10.61.0.11"}]));

    repair(&loxilb, &want).unwrap();
    assert!(sim.rules()[0]["secondaryIPs"].is_null(), "{}", sim.rules()[0]);
    assert_eq!(endpoint_ips(&sim), ["10.61.1.1"]);
}

/// A rule LoxiLB holds with another idle timeout (a LoxiLB that restored an old configuration): the
/// listing's comparison overlooked it, and LoxiLB applies a timeout only along with a change it compares,
/// so an in-place repair would meet `lbrule-exists` and change nothing. A timeout of 0 is LoxiLB's
/// default, which its list shows as 240 s for TCP: that is no drift.
#[test]
fn a_rule_with_another_idle_timeout_is_deleted_and_created() {
    let (sim, loxilb, want) = wanted_rule("TCP");
    assert_eq!(want.rule.service.inactive_timeout, 0);
    assert_eq!(sim.rules()[0]["serviceArguments"]["inactiveTimeOut"], json!(240));
    let observed = host::wire::observed(loxilb.as_ref()).unwrap();
    assert!(host::drift::drift(std::slice::from_ref(&want), &observed).different.is_empty(), "LoxiLB's default read as a drift");

    host::wire::call(loxilb.as_ref(), &LoxilbCall::DeleteRule(host::wire::rule_key(&want.rule))).unwrap();
    let mut held = want.rule.clone();
    held.service.inactive_timeout = 30;
    host::wire::call(loxilb.as_ref(), &LoxilbCall::UpsertRule(held)).unwrap();
    assert_eq!(sim.rules()[0]["serviceArguments"]["inactiveTimeOut"], json!(30));

    repair(&loxilb, &want).unwrap();
    assert_eq!(sim.rules()[0]["serviceArguments"]["inactiveTimeOut"], json!(240), "{}", sim.rules()[0]);
    assert_eq!(endpoint_ips(&sim), ["10.61.1.1"]);
}
