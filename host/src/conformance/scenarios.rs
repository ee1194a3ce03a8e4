//! The scenarios. Each drives the policy through the provider calls Octavia makes for one feature and
//! checks what must hold for any policy: LoxiLB ends up with the rules the Octavia objects call for, no
//! object is left PENDING, parents go back to ACTIVE, deletes leave nothing behind, and what LoxiLB
//! cannot do is refused as `unsupported` before anything is programmed. Names, NAT modes and selection
//! algorithms are the policy's business and are not checked.

use anyhow::{bail, ensure, Result};
use serde_json::{json, Value};

use super::{endpoints, expect_statuses, Lab};
use crate::runtime::bindings::octavia::ObjectKind as K;
use crate::runtime::bindings::octavia::ProvisioningStatus::{Active, Deleted, Error};
use crate::runtime::bindings::policy_types::PolicyError;

type Scenario = fn(&mut Lab) -> Result<()>;

pub(super) const ALL: &[(&str, &str, Scenario)] = &[
    ("loadbalancer-create", "a whole tree: listeners, pool, members, monitor", loadbalancer_create),
    ("loadbalancer-update", "admin down removes the rules, admin up restores them", loadbalancer_update),
    ("loadbalancer-delete", "a cascade delete leaves no rule and no mapping", loadbalancer_delete),
    ("listener-lifecycle", "create, disable, enable, delete a listener", listener_lifecycle),
    ("pool-lifecycle", "create, update, delete a pool", pool_lifecycle),
    ("member-lifecycle", "create, disable, delete members; no members, no rule", member_lifecycle),
    ("member-batch-update", "the batch is the pool's complete new member set", member_batch_update),
    ("health-monitor", "a monitor is programmed, and gone after its delete", health_monitor),
    ("ipv6-vip", "an IPv6 VIP with IPv6 members, created and deleted", ipv6_vip),
    ("endpoint-limit", "32 members fit one rule; the 33rd is refused", endpoint_limit),
    ("cookie-persistence", "HTTP_COOKIE persistence is refused as unsupported", cookie_persistence),
    ("l7-policy", "L7 policies are refused as unsupported", l7_policy),
    ("http-listener", "HTTP is served with a valid rule or refused as unsupported", http_listener),
    ("restart", "a new instance over the same storage has the same mapping", restart),
    ("reconcile", "rules LoxiLB lost are re-programmed; a second pass changes nothing", reconcile),
    ("owns-rule", "the rules it makes are its own, rules other tools made are not", owns_rule),
];

const VIP: &str = "203.0.113.10";
const VIP6: &str = "2001:db8::10";

/// Octavia-shaped ids (UUIDs) that name what they stand for: lb, listener, pool, member, monitor, L7.
fn id(kind: u16, n: u16) -> String {
    format!("c0c0a000-{kind:04x}-4000-8000-{n:012x}")
}
fn lb_id() -> String {
    id(1, 1)
}
fn listener_id(n: u16) -> String {
    id(2, n)
}
fn pool_id(n: u16) -> String {
    id(3, n)
}
fn member_id(n: u16) -> String {
    id(4, n)
}
fn monitor_id(n: u16) -> String {
    id(5, n)
}

fn member_ip(n: u16) -> String {
    format!("198.51.100.{}", n + 10)
}

fn member(n: u16, pool: u16) -> Value {
    json!({"member_id": member_id(n), "pool_id": pool_id(pool), "address": member_ip(n), "protocol_port": 8080,
           "weight": 1, "admin_state_up": true, "backup": false})
}

fn members(range: std::ops::RangeInclusive<u16>, pool: u16) -> Vec<Value> {
    range.map(|n| member(n, pool)).collect()
}

fn monitor(n: u16, pool: u16) -> Value {
    json!({"healthmonitor_id": monitor_id(n), "pool_id": pool_id(pool), "type": "TCP", "delay": 5, "timeout": 3,
           "max_retries": 2, "max_retries_down": 3, "admin_state_up": true})
}

fn pool(n: u16, listener: Option<u16>, protocol: &str, members: Vec<Value>, hm: Option<Value>) -> Value {
    let mut p = json!({"pool_id": pool_id(n), "loadbalancer_id": lb_id(), "protocol": protocol, "lb_algorithm": "ROUND_ROBIN",
                       "admin_state_up": true, "members": members});
    if let Some(l) = listener {
        p["listener_id"] = json!(listener_id(l));
    }
    if let Some(hm) = hm {
        p["healthmonitor"] = hm;
    }
    p
}

fn listener(n: u16, protocol: &str, port: u16, pool: Option<Value>) -> Value {
    let mut l = json!({"listener_id": listener_id(n), "loadbalancer_id": lb_id(), "protocol": protocol, "protocol_port": port,
                       "admin_state_up": true, "connection_limit": -1});
    if let Some(p) = pool {
        l["default_pool_id"] = p["pool_id"].clone();
        l["default_pool"] = p;
    }
    l
}

fn loadbalancer(vip: &str, listeners: Vec<Value>) -> Value {
    json!({"loadbalancer_id": lb_id(), "vip_address": vip, "admin_state_up": true, "listeners": listeners, "pools": []})
}

/// A load balancer with one TCP listener on port 80 whose pool holds `n` members.
fn simple(n: u16) -> Value {
    loadbalancer(VIP, vec![listener(1, "TCP", 80, Some(pool(1, Some(1), "TCP", members(1..=n, 1), None)))])
}

fn create(lab: &mut Lab, lb: &Value) -> Result<()> {
    let statuses = lab.apply("loadbalancer_create", json!({"loadbalancer": lb}))?;
    expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Active)])
}

fn expect_endpoints(lab: &Lab, vip: &str, port: u16, want: &[u16]) -> Result<()> {
    let Some(rule) = lab.rule(vip, port, "tcp") else { bail!("LoxiLB has no rule for {vip}:{port}/tcp") };
    let mut expected: Vec<(String, u16)> = want.iter().map(|&n| (member_ip(n), 8080)).collect();
    if vip == VIP6 {
        expected = want.iter().map(|&n| (format!("2001:db8:1::{n}"), 8080)).collect();
    }
    expected.sort();
    let got = endpoints(&rule);
    ensure!(got == expected, "rule {vip}:{port}/tcp has endpoints {got:?}, expected {expected:?}");
    Ok(())
}

fn expect_no_rule(lab: &Lab, vip: &str, port: u16) -> Result<()> {
    ensure!(lab.rule(vip, port, "tcp").is_none(), "LoxiLB still has a rule for {vip}:{port}/tcp");
    Ok(())
}

fn expect_unsupported(answer: Result<(), PolicyError>, what: &str) -> Result<()> {
    match answer {
        Err(PolicyError::Unsupported(_)) => Ok(()),
        Ok(()) => bail!("{what} was accepted; it must be refused as unsupported"),
        Err(other) => bail!("{what} was refused, but as {other:?} instead of unsupported"),
    }
}

/// A monitor is on a rule (LoxiLB's rule probe) or on its endpoints (probes the policy posted).
fn monitored(lab: &Lab, vip: &str, port: u16) -> bool {
    lab.rule(vip, port, "tcp").is_some_and(|r| r["serviceArguments"]["monitor"] == true) || !lab.posted_probes().is_empty()
}

fn loadbalancer_create(lab: &mut Lab) -> Result<()> {
    let tree = pool(1, Some(1), "TCP", members(1..=3, 1), Some(monitor(1, 1)));
    let lb = loadbalancer(VIP, vec![listener(1, "TCP", 80, Some(tree)), listener(2, "UDP", 53, None)]);
    let statuses = lab.apply("loadbalancer_create", json!({"loadbalancer": lb}))?;
    let (lb, l1, l2, p1, hm) = (lb_id(), listener_id(1), listener_id(2), pool_id(1), monitor_id(1));
    let (m1, m2, m3) = (member_id(1), member_id(2), member_id(3));
    expect_statuses(
        &statuses,
        &[
            (K::Loadbalancer, &lb, Active),
            (K::Listener, &l1, Active),
            (K::Listener, &l2, Active),
            (K::Pool, &p1, Active),
            (K::Member, &m1, Active),
            (K::Member, &m2, Active),
            (K::Member, &m3, Active),
            (K::HealthMonitor, &hm, Active),
        ],
    )?;
    ensure!(lab.rules().len() == 1, "expected one rule (the UDP listener has no pool), LoxiLB has {}", lab.rules().len());
    expect_endpoints(lab, VIP, 80, &[1, 2, 3])?;
    ensure!(monitored(lab, VIP, 80), "the TCP health monitor is programmed neither on the rule nor on its endpoints");
    lab.expect_mapped(&[&lb, &l1, &l2, &p1, &m1, &m2, &m3, &hm])?;
    lab.expect_in_sync()
}

fn loadbalancer_update(lab: &mut Lab) -> Result<()> {
    let lb = simple(2);
    create(lab, &lb)?;
    let statuses =
        lab.apply("loadbalancer_update", json!({"old_loadbalancer": lb, "new_loadbalancer": {"loadbalancer_id": lb_id(), "admin_state_up": false}}))?;
    expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Active)])?;
    expect_no_rule(lab, VIP, 80).map_err(|e| e.context("after disabling the load balancer"))?;
    let disabled = json!({"loadbalancer_id": lb_id(), "vip_address": VIP, "admin_state_up": false, "listeners": [], "pools": []});
    let statuses =
        lab.apply("loadbalancer_update", json!({"old_loadbalancer": disabled, "new_loadbalancer": {"loadbalancer_id": lb_id(), "admin_state_up": true}}))?;
    expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    lab.expect_in_sync()
}

fn loadbalancer_delete(lab: &mut Lab) -> Result<()> {
    let lb = loadbalancer(
        VIP,
        vec![
            listener(1, "TCP", 80, Some(pool(1, Some(1), "TCP", members(1..=2, 1), Some(monitor(1, 1))))),
            listener(2, "TCP", 443, Some(pool(2, Some(2), "TCP", members(3..=4, 2), None))),
        ],
    );
    create(lab, &lb)?;
    ensure!(lab.rules().len() == 2, "expected two rules after create, LoxiLB has {}", lab.rules().len());
    let statuses = lab.apply("loadbalancer_delete", json!({"loadbalancer": lb, "cascade": true}))?;
    let ids = [lb_id(), listener_id(1), listener_id(2), pool_id(1), pool_id(2), member_id(1), member_id(4), monitor_id(1)];
    expect_statuses(
        &statuses,
        &[
            (K::Loadbalancer, &ids[0], Deleted),
            (K::Listener, &ids[1], Deleted),
            (K::Listener, &ids[2], Deleted),
            (K::Pool, &ids[3], Deleted),
            (K::Pool, &ids[4], Deleted),
        ],
    )?;
    ensure!(lab.rules().is_empty(), "rules left after the cascade delete: {:?}", lab.rules());
    ensure!(lab.posted_probes().is_empty(), "endpoint probes left after the cascade delete: {:?}", lab.posted_probes());
    lab.expect_unmapped(&ids.iter().map(String::as_str).collect::<Vec<_>>())
}

fn listener_lifecycle(lab: &mut Lab) -> Result<()> {
    create(lab, &loadbalancer(VIP, Vec::new()))?;
    let bare = listener(1, "TCP", 8080, None);
    let statuses = lab.apply("listener_create", json!({"listener": bare}))?;
    expect_statuses(&statuses, &[(K::Listener, &listener_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    ensure!(lab.rules().is_empty(), "a listener without a pool got a rule");
    let statuses = lab.apply("pool_create", json!({"pool": pool(1, Some(1), "TCP", members(1..=2, 1), None)}))?;
    expect_statuses(&statuses, &[(K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 8080, &[1, 2])?;
    let mut with_pool = bare.clone();
    with_pool["default_pool_id"] = json!(pool_id(1));
    let statuses =
        lab.apply("listener_update", json!({"old_listener": with_pool, "new_listener": {"listener_id": listener_id(1), "admin_state_up": false}}))?;
    expect_statuses(&statuses, &[(K::Listener, &listener_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_no_rule(lab, VIP, 8080).map_err(|e| e.context("after disabling the listener"))?;
    let mut disabled = with_pool.clone();
    disabled["admin_state_up"] = json!(false);
    let statuses = lab.apply(
        "listener_update",
        json!({"old_listener": disabled, "new_listener": {"listener_id": listener_id(1), "admin_state_up": true, "timeout_client_data": 30000}}),
    )?;
    expect_statuses(&statuses, &[(K::Listener, &listener_id(1), Active)])?;
    expect_endpoints(lab, VIP, 8080, &[1, 2])?;
    let statuses = lab.apply("listener_delete", json!({"listener": with_pool}))?;
    expect_statuses(&statuses, &[(K::Listener, &listener_id(1), Deleted), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_no_rule(lab, VIP, 8080)?;
    lab.expect_unmapped(&[&listener_id(1)])?;
    lab.expect_in_sync()
}

fn pool_lifecycle(lab: &mut Lab) -> Result<()> {
    create(lab, &loadbalancer(VIP, vec![listener(1, "TCP", 80, None)]))?;
    let p = pool(1, Some(1), "TCP", members(1..=2, 1), None);
    let statuses = lab.apply("pool_create", json!({"pool": p}))?;
    expect_statuses(&statuses, &[(K::Pool, &pool_id(1), Active), (K::Listener, &listener_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    let statuses = lab.apply("pool_update", json!({"old_pool": p, "new_pool": {"pool_id": pool_id(1), "lb_algorithm": "SOURCE_IP_PORT"}}))?;
    expect_statuses(&statuses, &[(K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1, 2]).map_err(|e| e.context("after changing the algorithm"))?;
    let statuses = lab.apply("pool_delete", json!({"pool": p}))?;
    expect_statuses(&statuses, &[(K::Pool, &pool_id(1), Deleted), (K::Listener, &listener_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_no_rule(lab, VIP, 80)?;
    lab.expect_unmapped(&[&pool_id(1), &member_id(1), &member_id(2)])?;
    lab.expect_in_sync()
}

fn member_lifecycle(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(1))?;
    let statuses = lab.apply("member_create", json!({"member": member(2, 1)}))?;
    expect_statuses(&statuses, &[(K::Member, &member_id(2), Active), (K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    let statuses = lab.apply("member_update", json!({"old_member": member(2, 1), "new_member": {"member_id": member_id(2), "admin_state_up": false}}))?;
    expect_statuses(&statuses, &[(K::Member, &member_id(2), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1]).map_err(|e| e.context("after disabling member 2"))?;
    let statuses = lab.apply("member_delete", json!({"member": member(1, 1)}))?;
    expect_statuses(&statuses, &[(K::Member, &member_id(1), Deleted), (K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    expect_no_rule(lab, VIP, 80).map_err(|e| e.context("with no enabled member left"))?;
    lab.expect_unmapped(&[&member_id(1)])?;
    lab.expect_mapped(&[&member_id(2)])?;
    lab.expect_in_sync()
}

fn member_batch_update(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(3))?;
    let batch = vec![member(1, 1), member(4, 1), member(5, 1)];
    let statuses = lab.apply("member_batch_update", json!({"pool_id": pool_id(1), "members": batch, "loadbalancer_id": lb_id()}))?;
    expect_statuses(
        &statuses,
        &[
            (K::Member, &member_id(4), Active),
            (K::Member, &member_id(5), Active),
            (K::Member, &member_id(2), Deleted),
            (K::Member, &member_id(3), Deleted),
            (K::Pool, &pool_id(1), Active),
            (K::Loadbalancer, &lb_id(), Active),
        ],
    )?;
    expect_endpoints(lab, VIP, 80, &[1, 4, 5])?;
    lab.expect_mapped(&[&member_id(4), &member_id(5)])?;
    lab.expect_unmapped(&[&member_id(2), &member_id(3)])?;
    lab.expect_in_sync()
}

fn health_monitor(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(2))?;
    ensure!(!monitored(lab, VIP, 80), "the rule is monitored before any health monitor exists");
    let statuses = lab.apply("health_monitor_create", json!({"healthmonitor": monitor(1, 1)}))?;
    expect_statuses(&statuses, &[(K::HealthMonitor, &monitor_id(1), Active), (K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    ensure!(monitored(lab, VIP, 80), "the health monitor is programmed neither on the rule nor on its endpoints");
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    let statuses = lab.apply("health_monitor_delete", json!({"healthmonitor": monitor(1, 1)}))?;
    expect_statuses(&statuses, &[(K::HealthMonitor, &monitor_id(1), Deleted), (K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    ensure!(!monitored(lab, VIP, 80), "the rule is still monitored after the monitor's delete (LoxiLB keeps `monitor` on an in-place update)");
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    lab.expect_unmapped(&[&monitor_id(1)])?;
    lab.expect_in_sync()
}

fn ipv6_vip(lab: &mut Lab) -> Result<()> {
    let v6 = |n: u16| json!({"member_id": member_id(n), "pool_id": pool_id(1), "address": format!("2001:db8:1::{n}"), "protocol_port": 8080, "weight": 1, "admin_state_up": true});
    let lb = loadbalancer(VIP6, vec![listener(1, "TCP", 443, Some(pool(1, Some(1), "TCP", vec![v6(1), v6(2)], None)))]);
    create(lab, &lb)?;
    expect_endpoints(lab, VIP6, 443, &[1, 2])?;
    lab.expect_in_sync()?;
    let statuses = lab.apply("loadbalancer_delete", json!({"loadbalancer": lb, "cascade": true}))?;
    expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Deleted)])?;
    ensure!(lab.rules().is_empty(), "rules left after deleting the IPv6 load balancer: {:?}", lab.rules());
    lab.expect_unmapped(&[&lb_id(), &listener_id(1), &pool_id(1)])
}

fn endpoint_limit(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(32))?;
    expect_endpoints(lab, VIP, 80, &(1..=32).collect::<Vec<_>>())?;
    let extra = json!({"member": member(33, 1)});
    let answer = lab.validate("member_create", &extra)?;
    ensure!(answer.is_err(), "a 33rd member was accepted; a LoxiLB rule holds at most 32 endpoints");
    let before = lab.mutations();
    let statuses = lab.apply("member_create", extra)?;
    expect_statuses(&statuses, &[(K::Member, &member_id(33), Error), (K::Pool, &pool_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    ensure!(lab.mutations() == before, "the refused member changed LoxiLB");
    expect_endpoints(lab, VIP, 80, &(1..=32).collect::<Vec<_>>())
}

fn cookie_persistence(lab: &mut Lab) -> Result<()> {
    create(lab, &loadbalancer(VIP, vec![listener(1, "TCP", 80, None)]))?;
    let mut p = pool(1, Some(1), "TCP", members(1..=2, 1), None);
    p["session_persistence"] = json!({"type": "HTTP_COOKIE", "cookie_name": "sid"});
    expect_unsupported(lab.validate("pool_create", &json!({"pool": p}))?, "HTTP_COOKIE session persistence")?;
    let before = lab.mutations();
    let statuses = lab.apply("pool_create", json!({"pool": p}))?;
    expect_statuses(&statuses, &[(K::Pool, &pool_id(1), Error), (K::Listener, &listener_id(1), Active), (K::Loadbalancer, &lb_id(), Active)])?;
    ensure!(lab.mutations() == before, "the refused pool changed LoxiLB");
    expect_no_rule(lab, VIP, 80)
}

fn l7_policy(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(2))?;
    let policy = json!({"l7policy_id": id(6, 1), "listener_id": listener_id(1), "action": "REJECT", "position": 1, "admin_state_up": true, "rules": []});
    expect_unsupported(lab.validate("l7policy_create", &json!({"l7policy": policy}))?, "an L7 policy")?;
    let before = lab.mutations();
    let statuses = lab.apply("l7policy_create", json!({"l7policy": policy}))?;
    expect_statuses(&statuses, &[(K::L7policy, &id(6, 1), Error), (K::Listener, &listener_id(1), Active)])?;
    ensure!(lab.mutations() == before, "the refused L7 policy changed LoxiLB");
    expect_endpoints(lab, VIP, 80, &[1, 2])
}

fn http_listener(lab: &mut Lab) -> Result<()> {
    let lb = loadbalancer(VIP, vec![listener(1, "HTTP", 80, Some(pool(1, Some(1), "HTTP", members(1..=2, 1), None)))]);
    let args = json!({"loadbalancer": lb});
    match lab.validate("loadbalancer_create", &args)? {
        Ok(()) => {
            let statuses = lab.apply("loadbalancer_create", args)?;
            expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Active), (K::Listener, &listener_id(1), Active)])?;
            expect_endpoints(lab, VIP, 80, &[1, 2])?;
            lab.expect_in_sync()
        }
        refused => {
            expect_unsupported(refused, "an HTTP listener the policy does not serve")?;
            let statuses = lab.apply("loadbalancer_create", args)?;
            expect_statuses(&statuses, &[(K::Loadbalancer, &lb_id(), Error)])?;
            ensure!(lab.mutations() == 0, "the refused load balancer changed LoxiLB");
            Ok(())
        }
    }
}

fn restart(lab: &mut Lab) -> Result<()> {
    create(lab, &simple(2))?;
    let before = lab.mapped_ids()?;
    let rules = lab.sandbox.desired_rules().map_err(|e| anyhow::anyhow!("desired-rules: {e}"))?;
    lab.restart_policy()?;
    let after = lab.mapped_ids()?;
    ensure!(before == after, "the new instance maps {after:?}, the old one mapped {before:?}");
    let again = lab.sandbox.desired_rules().map_err(|e| anyhow::anyhow!("desired-rules: {e}"))?;
    // The generated records have no PartialEq; their Debug text shows every field.
    ensure!(format!("{rules:?}") == format!("{again:?}"), "the new instance wants other rules than the old one did");
    let statuses = lab.apply("member_create", json!({"member": member(3, 1)}))?;
    expect_statuses(&statuses, &[(K::Member, &member_id(3), Active)])?;
    expect_endpoints(lab, VIP, 80, &[1, 2, 3]).map_err(|e| e.context("a member added after the restart"))?;
    lab.expect_in_sync()
}

fn reconcile(lab: &mut Lab) -> Result<()> {
    create(
        lab,
        &loadbalancer(
            VIP,
            vec![
                listener(1, "TCP", 80, Some(pool(1, Some(1), "TCP", members(1..=2, 1), None))),
                listener(2, "UDP", 53, Some(pool(2, Some(2), "UDP", members(3..=3, 2), None))),
            ],
        ),
    )?;
    let before = lab.rules();
    lab.reconcile()?;
    ensure!(lab.rules() == before, "reconcile changed rules LoxiLB already held as wanted");
    lab.sim_restart();
    lab.reconcile()?;
    let after = lab.rules();
    ensure!(after.len() == before.len(), "after a LoxiLB restart, reconcile restored {} of {} rules", after.len(), before.len());
    expect_endpoints(lab, VIP, 80, &[1, 2])?;
    let mutations = lab.mutations();
    lab.reconcile()?;
    ensure!(lab.mutations() == mutations, "a second reconcile with nothing to repair changed LoxiLB");
    lab.expect_in_sync()
}

/// Reconciliation asks `owns-rule` of every rule no object wants (with `remove_orphans`, the rules it says
/// yes to are deleted): it must answer for any name, without trapping, and say no to other tools' rules.
fn owns_rule(lab: &mut Lab) -> Result<()> {
    create(lab, &loadbalancer(VIP, vec![listener(1, "TCP", 80, Some(pool(1, Some(1), "TCP", members(1..=2, 1), None)))]))?;
    let rules = lab.sandbox.desired_rules().map_err(|e| anyhow::anyhow!("desired-rules: {e}"))?;
    for rule in rules.iter() {
        let name = &rule.rule.service.name;
        let owns = lab.sandbox.owns_rule(name).map_err(|e| anyhow::anyhow!("owns-rule {name:?}: {e}"))?;
        ensure!(owns, "owns-rule does not recognise {name:?}, a rule it wants, as its own");
    }
    for foreign in ["", "kube-system_coredns_udp", "default_nginx-ingress", "ovn-lb-7"] {
        let owns = lab.sandbox.owns_rule(foreign).map_err(|e| anyhow::anyhow!("owns-rule {foreign:?}: {e}"))?;
        ensure!(!owns, "owns-rule claims {foreign:?}, a rule another tool could have made: remove_orphans would delete it");
    }
    Ok(())
}
