//! Operating statuses and statistics from LoxiLB's rule list.
//!
//! A member is ONLINE when LoxiLB lists its endpoint `active` (only meaningful with a monitor: LoxiLB
//! marks endpoints inactive only for monitored rules), ERROR when `inactive` or missing, OFFLINE when
//! disabled, DRAINING at weight 0, NO_MONITOR without a monitor. Pools, listeners and load balancers
//! roll up the way Octavia's API reference describes: all members ERROR → ERROR, some → DEGRADED.

use std::collections::HashMap;

use crate::caps::Caps;
use crate::execute::Policy;
use crate::loxilb_types::LbRule;
use crate::octavia::{ObjectKind, ObjectStatus, OperatingStatus};
use crate::plan::rule_key;
use crate::policy_types::{ListenerStats, PolicyError};
use crate::recovery::{list_rules, observed_rule};
use crate::state::Object;

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

/// An endpoint as LoxiLB lists it: address, port, state, packets, bytes.
type ObservedEndpoint = (String, u16, String, u64, u64);

impl Policy {
    fn observed(&self, caps: &mut dyn Caps) -> Result<HashMap<String, (LbRule, Vec<ObservedEndpoint>)>, PolicyError> {
        let mut out = HashMap::new();
        for raw in list_rules(caps)? {
            let Some(rule) = observed_rule(&raw) else { continue };
            let endpoints = raw
                .get("endpoints")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
                .map(|e| {
                    let counter = e.get("counter").and_then(|c| c.as_str()).unwrap_or("0:0");
                    let (packets, bytes) = counter.split_once(':').unwrap_or(("0", "0"));
                    (
                        e.get("endpointIP").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
                        e.get("targetPort").and_then(|v| v.as_u64()).unwrap_or(0) as u16,
                        e.get("state").and_then(|v| v.as_str()).unwrap_or("active").to_string(),
                        packets.parse().unwrap_or(0),
                        bytes.parse().unwrap_or(0),
                    )
                })
                .collect();
            out.insert(key_of(&rule), (rule, endpoints));
        }
        Ok(out)
    }

    pub fn health(&self, caps: &mut dyn Caps) -> Result<Vec<ObjectStatus>, PolicyError> {
        let observed = self.observed(caps)?;
        let state = &self.state;
        let status = |kind, id: &str, s| ObjectStatus { kind, id: id.to_string(), provisioning: None, operating: Some(s) };
        let mut out = Vec::new();
        let mut lbs: Vec<&str> = state.iter().filter(|(_, e)| matches!(e.object(), Object::Loadbalancer(_))).map(|(id, _)| id).collect();
        lbs.sort();
        for lb_id in lbs {
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
                            match seen.and_then(|(_, eps)| eps.iter().find(|e| e.0 == crate::keys::canonical_ip(&m.address) && e.1 == m.protocol_port)) {
                                Some(e) if e.2 == "active" => OperatingStatus::Online,
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
            let s = if !lb.admin_state_up {
                OperatingStatus::Offline
            } else if listener_statuses.iter().any(|s| matches!(s, OperatingStatus::Error | OperatingStatus::Degraded)) {
                OperatingStatus::Degraded
            } else {
                OperatingStatus::Online
            };
            out.push(status(ObjectKind::Loadbalancer, lb_id, s));
        }
        Ok(out)
    }

    /// LoxiLB's rule list counts packets and bytes per endpoint: `bytes_in` is their sum over the
    /// listener's rule and `total_connections` is left at 0 (the list has no connection counts).
    pub fn statistics(&self, caps: &mut dyn Caps) -> Result<Vec<ListenerStats>, PolicyError> {
        let observed = self.observed(caps)?;
        let mut out = Vec::new();
        let mut ids: Vec<&str> = self.state.iter().map(|(id, _)| id).collect();
        ids.sort();
        for id in ids {
            let Some(Object::Listener(ls)) = self.state.get(id).map(|e| e.object()) else { continue };
            let Some((_, eps)) = ls.programmed.as_ref().and_then(|p| observed.get(&key_of(&p.rule))) else { continue };
            out.push(ListenerStats {
                listener_id: id.to_string(),
                active_connections: 0,
                bytes_in: eps.iter().map(|e| e.4).sum(),
                bytes_out: 0,
                request_errors: 0,
                total_connections: 0,
            });
        }
        Ok(out)
    }
}
