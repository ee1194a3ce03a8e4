//! Operating statuses and statistics from LoxiLB's rule list, as the host observed it.
//!
//! A member is ONLINE when LoxiLB lists its endpoint `active` (only meaningful with a monitor: LoxiLB
//! marks endpoints inactive only for monitored rules), ERROR when `inactive` or missing, OFFLINE when
//! disabled, DRAINING at weight 0, NO_MONITOR without a monitor. Pools, listeners and load balancers
//! roll up the way Octavia's API reference describes: all members ERROR → ERROR, some → DEGRADED; a
//! listener whose rule no answering LoxiLB node lists is ERROR, and so is a load balancer whose every
//! listener is.

use crate::state::Map;

use crate::loxilb_types::{LbRule, ObservedEndpoint, ObservedRule};
use crate::octavia::{ObjectKind, ObjectStatus, OperatingStatus};
use crate::plan::rule_key;
use crate::policy_types::ListenerStats;
use crate::state::{Object, ResourceType, State};

fn key_of(rule: &LbRule) -> String {
    let k = rule_key(rule);
    format!("{}|{}|{}|{}|{}", k.external_ip, k.port, k.protocol, k.block, k.host)
}

fn roll_up(children: &[OperatingStatus]) -> OperatingStatus {
    use OperatingStatus::*;
    let errors = children.iter().filter(|s| matches!(s, Error)).count();
    if !children.is_empty() && errors == children.len() {
        Error
    } else if errors > 0 || children.iter().any(|s| matches!(s, Degraded)) {
        Degraded
    } else {
        Online
    }
}

/// LoxiLB's rules by key.
fn by_key(observed: &[ObservedRule]) -> Map<String, &ObservedRule> {
    observed.iter().map(|o| (key_of(&o.rule), o)).collect()
}

pub fn operating_statuses(state: &State, observed: &[ObservedRule]) -> Vec<ObjectStatus> {
    let observed = by_key(observed);
    let status = |kind, id: &str, s| ObjectStatus { kind, id: id.to_string(), provisioning: None, operating: Some(s) };
    let mut out = Vec::new();
    for lb_id in state.ids(ResourceType::Loadbalancer) {
        let lb_id = lb_id.as_str();
        let Some(Object::Loadbalancer(lb)) = state.get(lb_id).map(|e| e.object()) else { continue };
        let mut listener_statuses = Vec::new();
        for child in state.children(lb_id) {
            let Some(Object::Listener(ls)) = state.get(child).map(|e| e.object()) else { continue };
            let listener = &ls.listener;
            let seen = ls.programmed.as_ref().and_then(|p| observed.get(&key_of(&p.rule)));
            let pool = listener.default_pool_id.as_deref().and_then(|id| match state.get(id).map(|e| e.object()) {
                Some(Object::Pool(p)) => Some(p),
                _ => None,
            });
            let mut pool_status = None;
            if let Some(pool) = pool {
                let kids: Vec<&Object> = state.children(&pool.id).into_iter().filter_map(|id| state.get(id).map(|e| e.object())).collect();
                let monitored = kids.iter().any(|o| matches!(o, Object::Healthmonitor(h) if h.admin_state_up));
                let mut member_statuses = Vec::new();
                for kid in &kids {
                    let Object::Member(m) = kid else { continue };
                    let s = if !m.admin_state_up {
                        OperatingStatus::Offline
                    } else if m.weight == 0 {
                        OperatingStatus::Draining
                    } else if !monitored {
                        OperatingStatus::NoMonitor
                    } else {
                        match seen.and_then(|o| {
                            o.endpoints.iter().find(|e: &&ObservedEndpoint| e.ip == crate::keys::canonical_ip(&m.address) && e.target_port == m.protocol_port)
                        }) {
                            Some(e) if e.state == "active" => OperatingStatus::Online,
                            _ => OperatingStatus::Error,
                        }
                    };
                    if matches!(s, OperatingStatus::Online | OperatingStatus::Error) {
                        member_statuses.push(s);
                    }
                    out.push(status(ObjectKind::Member, &m.id, s));
                }
                let s = if !pool.admin_state_up { OperatingStatus::Offline } else { roll_up(&member_statuses) };
                out.push(status(ObjectKind::Pool, &pool.id, s));
                pool_status = Some(s);
            }
            let s = if !listener.admin_state_up || !lb.admin_state_up {
                OperatingStatus::Offline
            } else if ls.programmed.is_some() && seen.is_none() {
                // LoxiLB lost the rule (restart): reconciliation will re-program it.
                OperatingStatus::Error
            } else {
                match pool_status {
                    Some(OperatingStatus::Error) => OperatingStatus::Error,
                    Some(OperatingStatus::Degraded) => OperatingStatus::Degraded,
                    _ => OperatingStatus::Online,
                }
            };
            out.push(status(ObjectKind::Listener, &listener.id, s));
            listener_statuses.push(s);
        }
        // Every listener ERROR (no answering LoxiLB node holds any of its rules, or every backend is down)
        // is the load balancer ERROR; some is DEGRADED.
        let s = if !lb.admin_state_up { OperatingStatus::Offline } else { roll_up(&listener_statuses) };
        out.push(status(ObjectKind::Loadbalancer, lb_id, s));
    }
    out
}

/// A listener's counters from its rule as the host observed it over every LoxiLB node that answered:
/// `bytes_in` is the sum of the endpoint counters (what the rule sent to its endpoints, cumulative);
/// `bytes_out` and the connection counts are the rule's `traffic`, which the host measures from LoxiLB's
/// connection table and keeps cumulative (this policy is pure: it keeps nothing between calls).
/// `request_errors` stays 0: LoxiLB counts no request errors per rule.
pub fn statistics(state: &State, observed: &[ObservedRule]) -> Vec<ListenerStats> {
    let observed = by_key(observed);
    let mut out = Vec::new();
    for id in state.ids(ResourceType::Listener) {
        let Some(Object::Listener(ls)) = state.get(&id).map(|e| e.object()) else { continue };
        let Some(seen) = ls.programmed.as_ref().and_then(|p| observed.get(&key_of(&p.rule))) else { continue };
        out.push(ListenerStats {
            listener_id: id.clone(),
            active_connections: seen.traffic.active_connections,
            bytes_in: seen.endpoints.iter().map(|e| e.bytes).sum(),
            bytes_out: seen.traffic.bytes_out,
            request_errors: 0,
            total_connections: seen.traffic.total_connections,
        });
    }
    out
}
