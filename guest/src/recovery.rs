//! Rebuilding the mapping from LoxiLB's rules, and the rules the mapping wants.
//!
//! Rule names carry the Octavia ids (`keys::rule_name`), so a discovered rule maps back to its real load
//! balancer, listener and pool. Endpoints carry no ids: their members get deterministic ids, which an
//! operation naming the real member replaces (see `keys::is_deterministic_id`).

use crate::keys;
use crate::loxilb_types::LbRule;
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::plan;
use crate::state::{Change, Entry, ListenerState, Map, Object, ResourceType, State};
use crate::translate::{Config, Rendered};

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
                project_id: None,
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

/// What recovery found: the changes adopting LoxiLB's rules the mapping lacks, and what it noticed.
#[derive(Debug, Default)]
pub struct Recovered {
    pub changes: Vec<Change>,
    pub recovered: u32,
    pub deterministic: u32,
    pub conflicts: Vec<String>,
}

/// What a recovery adopted so far, by id (its key and kind) and by key (its id): kept natively, so each
/// adopted entry is encoded once, when the changes are returned.
#[derive(Default)]
struct Staged {
    ids: Map<String, (String, ResourceType)>,
    keys: Map<String, String>,
}

/// Entries the mapping lacks are added (with the real ids the rule names carry); an id or key the
/// mapping already holds differently is reported, not overwritten.
pub fn recover(state: &State, observed: &[LbRule], now: &str) -> Recovered {
    let mut out = Recovered::default();
    let mut staged = Staged::default();
    // Into an empty mapping (a start after the mapping was lost) the host is asked nothing per object: at
    // LoxiLB's largest table that was 135k view calls answering "none".
    let mapped = if state.is_empty() { None } else { Some(state) };
    let objects: usize = observed.iter().map(|r| 4 + r.endpoints.len()).sum();
    staged.ids.reserve(objects);
    staged.keys.reserve(objects);
    out.changes.reserve(objects);
    for rule in observed {
        let (objects, deterministic) = objects_of_rule(rule, now);
        if deterministic {
            out.deterministic += 1;
        }
        for (id, entry) in objects {
            let current = mapped.and_then(|m| m.get(&id)).map(|e| e.key.as_str()).or_else(|| staged.ids.get(&id).map(|(key, _)| key.as_str()));
            match current {
                Some(key) if key == entry.key => {}
                Some(key) => out.conflicts.push(format!("{id}: mapping has key {key}, LoxiLB rule {} says {}", rule.service.name, entry.key)),
                None => match mapped.and_then(|m| m.owner(&entry.key)).map(str::to_string).or_else(|| staged.keys.get(&entry.key).cloned()) {
                    // Endpoints never carry ids, and rules do not always: such an object found under a
                    // made-up id is the one the mapping holds at the same key under its real id.
                    Some(owner) if keys::is_deterministic_id(&id) && kind_of(mapped, &staged, &owner) == Some(entry.resource_type()) => {}
                    Some(owner) => out.conflicts.push(format!("{}: LoxiLB says {id}, mapping says {owner}", entry.key)),
                    None => {
                        staged.ids.insert(id.clone(), (entry.key.clone(), entry.resource_type()));
                        staged.keys.insert(entry.key.clone(), id.clone());
                        out.changes.push(Change::Put(entry));
                        out.recovered += 1;
                    }
                },
            }
        }
    }
    out
}

/// The kind of object the mapping (or what recovery staged) holds as `id`.
fn kind_of(mapped: Option<&State>, staged: &Staged, id: &str) -> Option<ResourceType> {
    mapped.and_then(|m| m.get(id)).map(|e| e.resource_type()).or_else(|| staged.ids.get(id).map(|(_, kind)| *kind))
}

/// The rule every listener in the mapping should have now, in listener id order.
pub fn desired(state: &State, config: &Config) -> Vec<(String, Option<Rendered>)> {
    state
        .ids(ResourceType::Listener)
        .into_iter()
        .map(|id| {
            let rendered = plan::render_listener(state, &id, config).unwrap_or(None);
            (id, rendered)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Memory;
    use crate::translate::{ListenerService, Profile, MODE_FULLPROXY};

    /// A profile serving HTTP in full-proxy mode, as the http-fullproxy policy's does.
    fn fullproxy() -> Profile {
        let http = |l: &crate::octavia::Listener| (l.protocol == "HTTP").then_some(ListenerService { protocol: "tcp", mode: Some(MODE_FULLPROXY) });
        Profile { beyond_l4: http, ..Profile::default() }
    }

    /// An HTTP listener, which the full-proxy profile serves in mode 4.
    fn http_loadbalancer() -> crate::octavia::Operation {
        let lb = serde_json::from_value(serde_json::json!({
            "id": "lb", "project_id": null, "name": null, "vip_address": "10.0.0.1", "additional_vips": [], "admin_state_up": true, "flavor": [],
            "listeners": [{"id": "l", "loadbalancer_id": "lb", "protocol": "HTTP", "protocol_port": 80, "default_pool_id": "p",
                "admin_state_up": true, "connection_limit": null, "timeout_client_data": null, "timeout_member_connect": null,
                "timeout_member_data": null, "allowed_cidrs": [], "insert_headers": [], "default_tls_container_ref": null,
                "sni_container_refs": [], "client_authentication": null, "l7policies": []}],
            "pools": [{"id": "p", "loadbalancer_id": "lb", "listener_id": "l", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
                "session_persistence": null, "tls_enabled": false, "admin_state_up": true, "healthmonitor": null,
                "members": [{"id": "m", "pool_id": "p", "address": "10.0.1.1", "protocol_port": 8080, "weight": 1,
                    "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}]}]
        }))
        .expect("load balancer");
        crate::octavia::Operation::Loadbalancer((crate::octavia::LoadbalancerAction::Create, lb))
    }

    #[test]
    fn recovering_what_the_mapping_already_holds_reports_no_conflict() {
        let config = Config { profile: fullproxy(), ..Config::default() };
        let mut mapping = Memory::default();
        let planned = plan::plan(&State::new(&mapping), &http_loadbalancer(), &config, "now").expect("a plan");
        planned.changes.into_iter().for_each(|c| crate::state::apply(&mut mapping, c));
        let state = State::new(&mapping);
        let rule = desired(&state, &config).remove(0).1.expect("a rule").rule;

        // The rule names the real ids; its endpoint stands for member "m" under a made-up id.
        let found = recover(&state, std::slice::from_ref(&rule), "now");
        assert!(found.conflicts.is_empty(), "{:?}", found.conflicts);
        assert_eq!((found.recovered, found.changes.len()), (0, 0));

        // A rule naming another load balancer on the same VIP is one.
        let mut other = rule;
        other.service.name = "octavia_lb-lb2_listener-l_pool-p".into();
        let found = recover(&state, &[other], "now");
        assert!(found.conflicts.iter().any(|c| c.contains("LoxiLB says lb2")), "{:?}", found.conflicts);
    }

    #[test]
    fn rules_the_mapping_lacks_are_adopted_under_the_ids_their_names_carry() {
        let config = Config::default();
        let mut source = Memory::default();
        let planned = plan::plan(&State::new(&source), &http_loadbalancer(), &Config { profile: fullproxy(), ..config.clone() }, "now").expect("plan");
        planned.changes.into_iter().for_each(|c| crate::state::apply(&mut source, c));
        let rule = desired(&State::new(&source), &Config { profile: fullproxy(), ..config }).remove(0).1.expect("rule").rule;

        let empty = Memory::default();
        let found = recover(&State::new(&empty), &[rule], "now");
        let ids: Vec<&str> = found
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Put(entry) => Some(entry.id()),
                _ => None,
            })
            .collect();
        for id in ["lb", "l", "p"] {
            assert!(ids.contains(&id), "{id} not adopted: {ids:?}");
        }
        assert_eq!(found.recovered as usize, found.changes.len());

        // Into an empty mapping the host is asked nothing per object (only whether it is empty).
        let counting = crate::state::tests::Counting { inner: &empty, asked: std::cell::Cell::new(0), changes: true };
        let again = recover(
            &State::new(&counting),
            &[desired(&State::new(&source), &Config { profile: fullproxy(), ..Config::default() }).remove(0).1.expect("rule").rule],
            "now",
        );
        assert_eq!((again.recovered, counting.asked.get()), (found.recovered, 0));
    }
}
