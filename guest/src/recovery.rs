//! Rebuilding the mapping from LoxiLB, and reconciling LoxiLB with the mapping.
//!
//! Rule names carry the Octavia ids (`keys::rule_name`), so a discovered rule maps back to its real load
//! balancer, listener and pool. Endpoints carry no ids: their members get deterministic ids, which an
//! operation naming the real member replaces (see `keys::is_deterministic_id`).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::caps::{Caps, Level};
use crate::execute::{call_loxilb, describe, Policy};
use crate::keys;
use crate::loxilb_types::{Endpoint, LbRule, LoxilbCall, ServiceArgs};
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::plan::{self, rule_key};
use crate::policy_types::{PolicyError, ReconcileReport, RecoveryReport};
use crate::state::{Change, Entry, ListenerState, Object, State};
use crate::translate::Rendered;

/// LoxiLB's rule list (`GET /config/loadbalancer/all`, key `lbAttr`).
pub fn list_rules(caps: &mut dyn Caps) -> Result<Vec<Value>, PolicyError> {
    let response = caps.request("GET", "/config/loadbalancer/all", None).map_err(|e| PolicyError::Loxilb(format!("GET /config/loadbalancer/all: {e}")))?;
    if response.status != 200 {
        return Err(PolicyError::Loxilb(format!("GET /config/loadbalancer/all: HTTP {}: {}", response.status, response.body)));
    }
    let body: Value = serde_json::from_str(&response.body).map_err(|e| PolicyError::Loxilb(format!("rule list is not JSON: {e}")))?;
    Ok(body.get("lbAttr").and_then(Value::as_array).cloned().unwrap_or_default())
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_field(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A rule as LoxiLB lists it, in the policy's typed form (fields the list omits are zero).
pub fn observed_rule(rule: &Value) -> Option<LbRule> {
    let s = rule.get("serviceArguments")?;
    let service = ServiceArgs {
        external_ip: str_field(s, "externalIP").to_string(),
        port: num_field(s, "port") as u16,
        protocol: str_field(s, "protocol").to_string(),
        sel: num_field(s, "sel") as u8,
        mode: num_field(s, "mode") as u8,
        security: num_field(s, "security") as u8,
        monitor: s.get("monitor").and_then(Value::as_bool).unwrap_or(false),
        inactive_timeout: num_field(s, "inactiveTimeOut") as u32,
        block: num_field(s, "block") as u32,
        name: str_field(s, "name").to_string(),
        probetype: str_field(s, "probetype").to_string(),
        probeport: num_field(s, "probeport") as u16,
        probereq: String::new(),
        proberesp: String::new(),
        probe_timeout: 0,
        probe_retries: 0,
        proxyprotocolv2: s.get("proxyprotocolv2").and_then(Value::as_bool).unwrap_or(false),
        bgp: s.get("bgp").and_then(Value::as_bool).unwrap_or(false),
        host: str_field(s, "host").to_string(),
    };
    let endpoints = rule
        .get("endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Endpoint { ip: str_field(e, "endpointIP").to_string(), target_port: num_field(e, "targetPort") as u16, weight: num_field(e, "weight") as u8 })
        .collect();
    let list = |key: &str, field: &str| -> Vec<String> {
        rule.get(key).and_then(Value::as_array).into_iter().flatten().map(|v| str_field(v, field).to_string()).collect()
    };
    Some(LbRule { service, endpoints, allowed_sources: list("allowedSources", "prefix"), secondary_ips: list("secondaryIPs", "secondaryIP") })
}

/// Whether LoxiLB holds what the policy wants for a rule (as far as its list shows).
fn matches(want: &LbRule, got: &LbRule) -> bool {
    let (w, g) = (&want.service, &got.service);
    let ep = |r: &LbRule| {
        let mut v: Vec<(String, u16, u8)> = r.endpoints.iter().map(|e| (e.ip.clone(), e.target_port, if r.service.sel == 2 { e.weight } else { 0 })).collect();
        v.sort();
        v
    };
    w.name == g.name
        && w.sel == g.sel
        && w.mode == g.mode
        && w.monitor == g.monitor
        && w.probetype == g.probetype
        && w.probeport == g.probeport
        && w.proxyprotocolv2 == g.proxyprotocolv2
        && ep(want) == ep(got)
        && sorted(&want.allowed_sources) == sorted(&got.allowed_sources)
}

fn key_id(k: &crate::loxilb_types::RuleKey) -> String {
    format!("{}|{}|{}|{}|{}", k.external_ip, k.port, k.protocol, k.block, k.host)
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn protocol_name(loxi: &str) -> String {
    loxi.to_ascii_uppercase()
}

fn algorithm_of(sel: u8) -> &'static str {
    match sel {
        1 => "SOURCE_IP_PORT",
        3 => "SOURCE_IP",
        4 => "LEAST_CONNECTIONS",
        _ => "ROUND_ROBIN",
    }
}

/// The Octavia objects a discovered rule stands for, with real ids where its name carries them.
fn objects_of_rule(rule: &LbRule, now: &str) -> (Vec<(String, Entry)>, bool) {
    let s = &rule.service;
    let service_key = keys::service_key(&s.external_ip, s.port, &s.protocol);
    let (lb_id, listener_id, pool_id, deterministic) = match keys::parse_rule_name(&s.name) {
        Some((lb, listener, pool)) => (lb.to_string(), listener.to_string(), pool.to_string(), false),
        None => (
            keys::deterministic_id("loadbalancer", &s.external_ip, 0, "", ""),
            keys::deterministic_id("listener", &s.external_ip, s.port, &s.protocol, ""),
            keys::deterministic_id("pool", &s.external_ip, s.port, &s.protocol, ""),
            true,
        ),
    };
    let vip = s.external_ip.clone();
    let entry = |key: String, port: u16, protocol: &str, object: Object| Entry::new(key, vip.clone(), port, protocol.to_string(), now.to_string(), object);
    let mut out = Vec::new();
    out.push((
        lb_id.clone(),
        entry(
            keys::loadbalancer_key(&vip),
            0,
            "",
            Object::Loadbalancer(Loadbalancer {
                id: lb_id.clone(),
                name: None,
                vip_address: vip.clone(),
                additional_vips: rule.secondary_ips.clone(),
                admin_state_up: true,
                flavor: Vec::new(),
                listeners: Vec::new(),
                pools: Vec::new(),
            }),
        ),
    ));
    let listener = Listener {
        id: listener_id.clone(),
        loadbalancer_id: lb_id.clone(),
        protocol: protocol_name(&s.protocol),
        protocol_port: s.port,
        default_pool_id: Some(pool_id.clone()),
        admin_state_up: true,
        connection_limit: None,
        timeout_client_data: (s.inactive_timeout > 0).then_some(s.inactive_timeout * 1000),
        timeout_member_connect: None,
        timeout_member_data: None,
        allowed_cidrs: rule.allowed_sources.clone(),
        insert_headers: Vec::new(),
        default_tls_container_ref: None,
        sni_container_refs: Vec::new(),
        client_authentication: None,
        l7policies: Vec::new(),
    };
    let programmed = Rendered { rule: rule.clone(), probes: Vec::new() };
    out.push((
        listener_id.clone(),
        entry(service_key.clone(), s.port, &s.protocol, Object::Listener(ListenerState { listener, programmed: Some(programmed) })),
    ));
    out.push((
        pool_id.clone(),
        entry(
            keys::pool_key(&vip, &pool_id),
            0,
            &s.protocol,
            Object::Pool(Pool {
                id: pool_id.clone(),
                loadbalancer_id: lb_id.clone(),
                listener_id: Some(listener_id.clone()),
                protocol: if s.proxyprotocolv2 { "PROXYV2".into() } else { protocol_name(&s.protocol) },
                lb_algorithm: algorithm_of(s.sel).to_string(),
                session_persistence: None,
                tls_enabled: false,
                admin_state_up: true,
                members: Vec::new(),
                healthmonitor: None,
            }),
        ),
    ));
    for ep in &rule.endpoints {
        let id = keys::deterministic_id("member", &ep.ip, ep.target_port, &s.protocol, &service_key);
        out.push((
            id.clone(),
            entry(
                keys::member_key(&vip, &pool_id, &ep.ip, ep.target_port),
                ep.target_port,
                "",
                Object::Member(Member {
                    id,
                    pool_id: pool_id.clone(),
                    address: ep.ip.clone(),
                    protocol_port: ep.target_port,
                    weight: if s.sel == 2 { ep.weight as u32 } else { 1 },
                    admin_state_up: true,
                    backup: false,
                    monitor_address: None,
                    monitor_port: None,
                }),
            ),
        ));
    }
    if s.monitor && !s.probetype.is_empty() && s.probetype != "none" {
        let id = keys::deterministic_id("healthmonitor", &vip, s.port, &s.protocol, "");
        let kind = match s.probetype.as_str() {
            "udp" => "UDP-CONNECT",
            "sctp" => "SCTP",
            "ping" => "PING",
            _ => "TCP",
        };
        out.push((
            id.clone(),
            entry(
                keys::monitor_key(&vip, &pool_id),
                0,
                "",
                Object::Healthmonitor(HealthMonitor {
                    id,
                    pool_id: pool_id.clone(),
                    kind: kind.to_string(),
                    // LoxiLB's list omits the probe period and retries; these are its defaults.
                    delay: 60,
                    timeout: 1,
                    max_retries: 1,
                    max_retries_down: 2,
                    http_method: None,
                    url_path: None,
                    expected_codes: None,
                    http_version: None,
                    domain_name: None,
                    admin_state_up: true,
                }),
            ),
        ));
    }
    (out, deterministic)
}

impl Policy {
    /// Fills the mapping from LoxiLB's rules: entries the mapping lacks are added (with the real ids the
    /// rule names carry); an id or key the mapping already holds differently is reported, not overwritten.
    pub fn recover_from_loxilb(&mut self, caps: &mut dyn Caps) -> Result<RecoveryReport, PolicyError> {
        let rules = list_rules(caps)?;
        let now = crate::execute::rfc3339(caps.now_ms());
        let mut changes = Vec::new();
        let mut report = RecoveryReport { loaded: self.state.len() as u32, recovered: 0, deterministic: 0, conflicts: Vec::new() };
        let mut staged = State::default();
        for raw in &rules {
            let Some(rule) = observed_rule(raw) else { continue };
            let (objects, deterministic) = objects_of_rule(&rule, &now);
            if deterministic {
                report.deterministic += 1;
            }
            for (id, entry) in objects {
                let current = self.state.get(&id).or_else(|| staged.get(&id));
                match current {
                    Some(existing) if existing.key == entry.key => {}
                    Some(existing) => {
                        report.conflicts.push(format!("{id}: mapping has key {}, LoxiLB rule {} says {}", existing.key, rule.service.name, entry.key))
                    }
                    None => match self.state.owner(&entry.key).or_else(|| staged.owner(&entry.key)) {
                        // Endpoints never carry ids, and rules do not always: such an object found under a
                        // made-up id is the one the mapping holds at the same key under its real id.
                        Some(owner) if keys::is_deterministic_id(&id) && self.is_same_kind(owner, &staged, &entry) => {}
                        Some(owner) => report.conflicts.push(format!("{}: LoxiLB says {id}, mapping says {owner}", entry.key)),
                        None => {
                            staged.put(id.clone(), entry.clone());
                            changes.push(Change::Put { id, entry });
                            report.recovered += 1;
                        }
                    },
                }
            }
        }
        for conflict in &report.conflicts {
            caps.log(Level::Warning, &format!("recovery conflict: {conflict}"));
        }
        caps.log(
            Level::Info,
            &format!(
                "recovered {} mappings from {} LoxiLB rules ({} without Octavia ids, {} conflicts)",
                report.recovered,
                rules.len(),
                report.deterministic,
                report.conflicts.len()
            ),
        );
        self.commit(caps, changes);
        Ok(report)
    }

    /// Whether the mapping (or what recovery staged) holds `id` as the same kind of object as `entry`.
    fn is_same_kind(&self, id: &str, staged: &State, entry: &Entry) -> bool {
        self.state.get(id).or_else(|| staged.get(id)).is_some_and(|known| known.resource_type() == entry.resource_type())
    }

    /// The rule every listener in the mapping should have now.
    pub fn desired(&self) -> Vec<(String, Option<Rendered>)> {
        let mut listeners: Vec<&str> = self.state.iter().filter(|(_, e)| matches!(e.object(), Object::Listener(_))).map(|(id, _)| id).collect();
        listeners.sort();
        listeners.into_iter().map(|id| (id.to_string(), plan::render_listener(&self.state, id, &self.config).unwrap_or(None))).collect()
    }

    /// Makes LoxiLB hold the desired rules: missing or different ones are re-programmed; rules nobody owns
    /// are reported, and deleted only when `remove_orphans` is set and they carry this provider's names.
    pub fn reconcile(&mut self, caps: &mut dyn Caps) -> Result<ReconcileReport, PolicyError> {
        let observed: Vec<LbRule> = list_rules(caps)?.iter().filter_map(observed_rule).collect();
        let mut report = ReconcileReport { reprogrammed: Vec::new(), orphans: Vec::new(), removed: Vec::new(), failures: Vec::new() };
        let mut wanted_keys = HashSet::new();
        let mut changes = Vec::new();
        for (listener_id, desired) in self.desired() {
            let Some(want) = desired else { continue };
            let key = rule_key(&want.rule);
            wanted_keys.insert(key_id(&key));
            let got = observed.iter().find(|r| rule_key(r) == key);
            if got.is_some_and(|g| matches(&want.rule, g)) {
                continue;
            }
            let mut calls = Vec::new();
            // LoxiLB keeps name and monitor on an in-place update and refuses to switch a rule into or out of
            // fullproxy mode: those need the rule deleted first.
            let fullproxy = |s: &ServiceArgs| s.mode == crate::translate::MODE_FULLPROXY;
            if got.is_some_and(|g| {
                g.service.name != want.rule.service.name
                    || g.service.monitor != want.rule.service.monitor
                    || fullproxy(&g.service) != fullproxy(&want.rule.service)
            }) {
                calls.push(LoxilbCall::DeleteRule(key.clone()));
            }
            calls.push(LoxilbCall::UpsertRule(want.rule.clone()));
            calls.extend(want.probes.iter().cloned().map(LoxilbCall::UpsertProbe));
            let label = keys::service_key(&key.external_ip, key.port, &key.protocol);
            match calls.iter().try_for_each(|c| call_loxilb(caps, c)) {
                Ok(()) => {
                    report.reprogrammed.push(label);
                    if let Some(entry) = self.state.get(&listener_id) {
                        if let Object::Listener(ls) = entry.object() {
                            if ls.programmed.as_ref() != Some(&want) {
                                let object = Object::Listener(ListenerState { listener: ls.listener.clone(), programmed: Some(want.clone()) });
                                let mut entry = entry.clone();
                                entry.set_object(object);
                                changes.push(Change::Put { id: listener_id.clone(), entry });
                            }
                        }
                    }
                }
                Err(e) => report.failures.push(format!("{label}: {}", describe(&e))),
            }
        }
        for rule in &observed {
            let key = rule_key(rule);
            if wanted_keys.contains(&key_id(&key)) {
                continue;
            }
            let label = format!("{} ({})", keys::service_key(&key.external_ip, key.port, &key.protocol), rule.service.name);
            report.orphans.push(label.clone());
            if self.config.remove_orphans && keys::is_provider_rule_name(&rule.service.name) {
                match call_loxilb(caps, &LoxilbCall::DeleteRule(key)) {
                    Ok(()) => report.removed.push(label),
                    Err(e) => report.failures.push(format!("{label}: {}", describe(&e))),
                }
            }
        }
        self.commit(caps, changes);
        for label in &report.reprogrammed {
            caps.log(Level::Info, &format!("reconcile: re-programmed {label}"));
        }
        for label in &report.orphans {
            caps.log(Level::Warning, &format!("reconcile: orphan rule {label}"));
        }
        Ok(report)
    }
}

/// Summary of mapping entries by type (for logs and tools).
pub fn census(state: &State) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for (_, e) in state.iter() {
        *out.entry(e.resource_type().as_str()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::HttpResponse;
    use crate::translate::{Config, Profile};

    /// LoxiLB as far as reconcile sees it: a fixed rule list, and a record of every change asked for.
    struct Loxi {
        listed: Vec<Value>,
        calls: Vec<String>,
    }

    impl Caps for Loxi {
        fn request(&mut self, method: &str, path: &str, _: Option<&str>) -> Result<HttpResponse, String> {
            if method == "GET" {
                return Ok(HttpResponse { status: 200, body: serde_json::json!({"lbAttr": self.listed}).to_string() });
            }
            self.calls.push(format!("{method} {}", path.split('/').take(3).collect::<Vec<_>>().join("/")));
            Ok(HttpResponse { status: 200, body: r#"{"result":"Success"}"#.into() })
        }
        fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
        fn write_snapshot(&mut self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn append_journal(&mut self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn replay_journal(&mut self) -> Result<Vec<Vec<u8>>, String> {
            Ok(Vec::new())
        }
        fn journal_length(&mut self) -> u32 {
            0
        }
        fn log(&mut self, _: Level, _: &str) {}
        fn now_ms(&mut self) -> u64 {
            0
        }
    }

    /// An HTTP listener, which the full-proxy profile serves in mode 4.
    fn http_loadbalancer() -> crate::octavia::Operation {
        serde_json::from_value(serde_json::json!({"LoadbalancerCreate": {
            "id": "lb", "name": null, "vip_address": "10.0.0.1", "additional_vips": [], "admin_state_up": true, "flavor": [],
            "listeners": [{"id": "l", "loadbalancer_id": "lb", "protocol": "HTTP", "protocol_port": 80, "default_pool_id": "p",
                "admin_state_up": true, "connection_limit": null, "timeout_client_data": null, "timeout_member_connect": null,
                "timeout_member_data": null, "allowed_cidrs": [], "insert_headers": [], "default_tls_container_ref": null,
                "sni_container_refs": [], "client_authentication": null, "l7policies": []}],
            "pools": [{"id": "p", "loadbalancer_id": "lb", "listener_id": "l", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                "session_persistence": null, "tls_enabled": false, "admin_state_up": true, "healthmonitor": null,
                "members": [{"id": "m", "pool_id": "p", "address": "10.0.1.1", "protocol_port": 8080, "weight": 1,
                    "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}]}]
        }}))
        .expect("operation")
    }

    #[test]
    fn recovering_what_the_mapping_already_holds_reports_no_conflict() {
        let mut policy = Policy::new(Config { profile: Profile { http_fullproxy: true, ..Profile::default() }, ..Config::default() });
        let mut loxi = Loxi { listed: Vec::new(), calls: Vec::new() };
        assert!(policy.handle(&mut loxi, &http_loadbalancer()).error.is_none());
        let rule = crate::execute::rule_json(&policy.desired().remove(0).1.expect("a rule").rule);
        let before = policy.state.len();

        // The rule names the real ids; its endpoint stands for member "m" under a made-up id.
        let mut loxi = Loxi { listed: vec![rule.clone()], calls: Vec::new() };
        let report = policy.recover_from_loxilb(&mut loxi).unwrap();
        assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
        assert_eq!((report.recovered, policy.state.len()), (0, before));

        // A rule naming another load balancer on the same VIP is one.
        let mut other = rule;
        other["serviceArguments"]["name"] = "octavia_lb-lb2_listener-l_pool-p".into();
        let mut loxi = Loxi { listed: vec![other], calls: Vec::new() };
        let report = policy.recover_from_loxilb(&mut loxi).unwrap();
        assert!(report.conflicts.iter().any(|c| c.contains("LoxiLB says lb2")), "{:?}", report.conflicts);
    }

    #[test]
    fn a_rule_switching_into_or_out_of_fullproxy_is_deleted_before_it_is_posted() {
        let config = Config { profile: Profile { http_fullproxy: true, ..Profile::default() }, ..Config::default() };
        let mut policy = Policy::new(config);
        let mut loxi = Loxi { listed: Vec::new(), calls: Vec::new() };
        assert!(policy.handle(&mut loxi, &http_loadbalancer()).error.is_none());
        let wanted = policy.desired().remove(0).1.expect("a rule").rule;
        assert_eq!(wanted.service.mode, crate::translate::MODE_FULLPROXY);

        // Same key and name, but LoxiLB holds it in fullnat: an in-place POST would be refused.
        let mut listed = crate::execute::rule_json(&wanted);
        listed["serviceArguments"]["mode"] = 2.into();
        let mut loxi = Loxi { listed: vec![listed], calls: Vec::new() };
        policy.reconcile(&mut loxi).unwrap();
        assert_eq!(loxi.calls, vec!["DELETE /config/loadbalancer", "POST /config/loadbalancer"]);

        // Only the endpoints differ: updated in place.
        let mut listed = crate::execute::rule_json(&wanted);
        listed["endpoints"][0]["targetPort"] = 9090.into();
        let mut loxi = Loxi { listed: vec![listed], calls: Vec::new() };
        policy.reconcile(&mut loxi).unwrap();
        assert_eq!(loxi.calls, vec!["POST /config/loadbalancer"]);
    }
}
