//! A plan's typed LoxiLB calls onto the wire (`loxilb-api`, the one place that speaks LoxiLB's JSON,
//! paths and error contract), and LoxiLB's rule list back into the contract's types.
//!
//! The contract's types (generated from the WIT) and the wire crate's mirror each other field for field;
//! the conversions here are the only seam between them.

use loxilb_api as api;
use loxilb_api::Loxilb;

use crate::loxilb::LoxiTransport;
use crate::runtime::bindings::loxilb_types::{Endpoint, EndpointProbe, LbRule, LoxilbCall, ObservedEndpoint, ObservedRule, RuleKey, RuleTraffic, ServiceArgs};
use crate::traffic::{NodeView, Traffic, TrafficBook};

/// Carries out one call (success, "already there" and "already gone" all count as done).
pub fn call(loxi: &(dyn LoxiTransport + 'static), call: &LoxilbCall) -> Result<(), String> {
    loxi.apply(&to_wire(call)).map_err(|e| e.to_string())
}

/// The rules LoxiLB holds, with their endpoints' states and counters.
pub fn observed(loxi: &(dyn LoxiTransport + 'static)) -> Result<Vec<ObservedRule>, String> {
    Ok(loxi.list_rules().map_err(|e| e.to_string())?.into_iter().map(|o| observed_from_wire(o, Traffic::default())).collect())
}

/// The rules with their traffic, for statistics: each node's rule list and connection table (one of each
/// per node), summed over the nodes and kept cumulative in `book` (see [`crate::traffic`]). An error only
/// when no node gave its rule list.
pub fn observed_traffic(loxi: &(dyn LoxiTransport + 'static), book: &mut TrafficBook) -> Result<Vec<ObservedRule>, String> {
    let nodes = loxi.nodes();
    let targets: Vec<&dyn LoxiTransport> = if nodes.is_empty() { vec![loxi] } else { nodes.iter().map(|n| n as &dyn LoxiTransport).collect() };
    let mut errors = Vec::new();
    let views: Vec<Option<NodeView>> = targets
        .into_iter()
        .map(|node| {
            let rules = node.list_rules().map_err(|e| errors.push(e.to_string())).ok()?;
            let conntrack = node
                .list_conntrack()
                .map_err(|e| crate::warn_limited!("statistics-conntrack", "LoxiLB connection table unread, connections not counted: {e}"))
                .ok();
            Some(NodeView { rules, conntrack })
        })
        .collect();
    if views.iter().all(Option::is_none) {
        return Err(errors.join("; "));
    }
    Ok(book.pass(views).into_iter().map(|(o, t)| observed_from_wire(o, t)).collect())
}

/// Whether LoxiLB holds what is wanted for a rule, as far as its list shows.
pub fn matches(want: &LbRule, got: &LbRule) -> bool {
    api::listed_matches(listed(want), listed(got))
}

fn listed(r: &LbRule) -> api::Listed<'_> {
    api::listed!(r)
}

/// A rule as the logs name it: `VIP:port/protocol`.
pub fn label(rule: &LbRule) -> String {
    let s = &rule.service;
    format!("{}:{}/{}", s.external_ip, s.port, s.protocol)
}

/// The path naming a rule in LoxiLB's API (its DELETE's, without the BGP flag).
pub fn rule_path(rule: &LbRule) -> String {
    api::rule_path(&key_to_wire(&rule_key(rule)))
}

pub fn rule_key(rule: &LbRule) -> RuleKey {
    let s = &rule.service;
    RuleKey { external_ip: s.external_ip.clone(), port: s.port, protocol: s.protocol.clone(), block: s.block, host: s.host.clone(), bgp: s.bgp }
}

/// What identifies a rule in LoxiLB's table (`RuleKey` without the BGP flag), borrowed from the rule.
pub type Identity<'a> = (&'a str, u16, &'a str, u32, &'a str);

pub fn identity(rule: &LbRule) -> Identity<'_> {
    let s = &rule.service;
    (&s.external_ip, s.port, &s.protocol, s.block, &s.host)
}

/// A rule's identity as one string, for indexing rules that outlive the borrow.
pub fn key_id(rule: &LbRule) -> String {
    identity_text(identity(rule))
}

/// `key_id` of the rule a key names.
pub fn key_id_of(key: &RuleKey) -> String {
    identity_text((&key.external_ip, key.port, &key.protocol, key.block, &key.host))
}

fn identity_text((ip, port, protocol, block, host): Identity<'_>) -> String {
    format!("{ip}|{port}|{protocol}|{block}|{host}")
}

/// The identity, as `key_id` writes it, of the rule a call changes.
pub fn call_key_id(call: &LoxilbCall) -> Option<String> {
    match call {
        LoxilbCall::UpsertRule(rule) => Some(key_id(rule)),
        LoxilbCall::DeleteRule(key) => Some(key_id_of(key)),
        LoxilbCall::UpsertProbe(_) | LoxilbCall::DeleteProbe(_) => None,
    }
}

/// LoxiLB's full-proxy mode: a rule cannot be switched into or out of it in place.
pub const MODE_FULLPROXY: u8 = 4;

fn to_wire(call: &LoxilbCall) -> api::LoxilbCall {
    match call {
        LoxilbCall::UpsertRule(r) => api::LoxilbCall::UpsertRule(rule_to_wire(r)),
        LoxilbCall::DeleteRule(k) => api::LoxilbCall::DeleteRule(key_to_wire(k)),
        LoxilbCall::UpsertProbe(p) => api::LoxilbCall::UpsertProbe(probe_to_wire(p)),
        LoxilbCall::DeleteProbe(p) => api::LoxilbCall::DeleteProbe(probe_to_wire(p)),
    }
}

fn key_to_wire(k: &RuleKey) -> api::RuleKey {
    api::RuleKey { external_ip: k.external_ip.clone(), port: k.port, protocol: k.protocol.clone(), block: k.block, host: k.host.clone(), bgp: k.bgp }
}

fn probe_to_wire(p: &EndpointProbe) -> api::EndpointProbe {
    api::EndpointProbe {
        host_name: p.host_name.clone(),
        name: p.name.clone(),
        probe_type: p.probe_type.clone(),
        probe_port: p.probe_port,
        probe_req: p.probe_req.clone(),
        probe_resp: p.probe_resp.clone(),
        probe_duration: p.probe_duration,
        inactive_retries: p.inactive_retries,
    }
}

fn rule_to_wire(r: &LbRule) -> api::LbRule {
    let s = &r.service;
    api::LbRule {
        service: api::ServiceArgs {
            external_ip: s.external_ip.clone(),
            port: s.port,
            protocol: s.protocol.clone(),
            sel: s.sel,
            mode: s.mode,
            security: s.security,
            monitor: s.monitor,
            inactive_timeout: s.inactive_timeout,
            block: s.block,
            name: s.name.clone(),
            probetype: s.probetype.clone(),
            probeport: s.probeport,
            probereq: s.probereq.clone(),
            proberesp: s.proberesp.clone(),
            probe_timeout: s.probe_timeout,
            probe_retries: s.probe_retries,
            proxyprotocolv2: s.proxyprotocolv2,
            bgp: s.bgp,
            host: s.host.clone(),
        },
        endpoints: r.endpoints.iter().map(|e| api::Endpoint { ip: e.ip.clone(), target_port: e.target_port, weight: e.weight }).collect(),
        allowed_sources: r.allowed_sources.clone(),
        secondary_ips: r.secondary_ips.clone(),
    }
}

fn rule_from_wire(r: api::LbRule) -> LbRule {
    let s = r.service;
    LbRule {
        service: ServiceArgs {
            external_ip: s.external_ip,
            port: s.port,
            protocol: s.protocol,
            sel: s.sel,
            mode: s.mode,
            security: s.security,
            monitor: s.monitor,
            inactive_timeout: s.inactive_timeout,
            block: s.block,
            name: s.name,
            probetype: s.probetype,
            probeport: s.probeport,
            probereq: s.probereq,
            proberesp: s.proberesp,
            probe_timeout: s.probe_timeout,
            probe_retries: s.probe_retries,
            proxyprotocolv2: s.proxyprotocolv2,
            bgp: s.bgp,
            host: s.host,
        },
        endpoints: r.endpoints.into_iter().map(|e| Endpoint { ip: e.ip, target_port: e.target_port, weight: e.weight }).collect(),
        allowed_sources: r.allowed_sources,
        secondary_ips: r.secondary_ips,
    }
}

fn observed_from_wire(o: api::ObservedRule, t: Traffic) -> ObservedRule {
    ObservedRule {
        traffic: RuleTraffic { bytes_out: t.bytes_out, active_connections: t.active_connections, total_connections: t.total_connections },
        rule: rule_from_wire(o.rule),
        endpoints: o
            .endpoints
            .into_iter()
            .map(|e| ObservedEndpoint { ip: e.ip, target_port: e.target_port, weight: e.weight, state: e.state, packets: e.packets, bytes: e.bytes })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_crosses_to_the_wire_and_back_unchanged() {
        let rule = LbRule {
            service: ServiceArgs {
                external_ip: "2001:db8::10".into(),
                port: 443,
                protocol: "tcp".into(),
                sel: 2,
                mode: 4,
                security: 1,
                monitor: true,
                inactive_timeout: 30,
                block: 2,
                name: "octavia_lb-a_listener-b_pool-c".into(),
                probetype: "tcp".into(),
                probeport: 8443,
                probereq: "GET /".into(),
                proberesp: "200".into(),
                probe_timeout: 5,
                probe_retries: 3,
                proxyprotocolv2: true,
                bgp: true,
                host: "example.org".into(),
            },
            endpoints: vec![Endpoint { ip: "2001:db8::1:1".into(), target_port: 8443, weight: 70 }],
            allowed_sources: vec!["192.0.2.0/24".into()],
            secondary_ips: vec!["2001:db8::11".into()],
        };
        assert_eq!(rule_from_wire(rule_to_wire(&rule)), rule);
        assert!(matches(&rule, &rule));
        let key = rule_key(&rule);
        assert_eq!(key_to_wire(&key), api::rule_key(&rule_to_wire(&rule)));
    }
}
