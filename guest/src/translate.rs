//! One Octavia listener, with its load balancer, default pool, members and monitor, rendered as one
//! LoxiLB rule. Pure: no state, no I/O. Every Octavia option LoxiLB cannot honour is refused with an
//! error that names it; nothing is silently dropped or collapsed.

use crate::json::quoted;
use crate::keys;
use crate::loxilb_types::{Endpoint, EndpointProbe, LbRule, ServiceArgs};
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::policy_types::PolicyError;

/// LoxiLB numbers rules from a free list and checks allowed sources with a per-rule bit in a firewall
/// mark, so only rules numbered up to 28 can carry `allowedSources` (`MaxSrcLBMarkerNum`, rules.go); the
/// number is LoxiLB's choice, not the client's.
pub const MAX_SOURCE_CHECKED_RULE: u32 = 28;
/// LoxiLB allows 1..=32 endpoints per rule.
pub const MAX_ENDPOINTS: usize = 32;
/// LoxiLB's ceiling for `inactiveTimeOut` (s); larger values are refused with "service-args error".
pub const MAX_INACTIVE_TIMEOUT_S: u32 = 86_400;
/// LoxiLB's persist selection keeps clients on one endpoint for a fixed 10800 s.
pub const PERSIST_TIMEOUT_S: u32 = 10_800;
/// LoxiLB caps probe retries at 100.
pub const MAX_PROBE_RETRIES: u32 = 100;

/// How a listener is served by LoxiLB: the rule's protocol, and the mode when the listener's protocol
/// fixes one (otherwise the configured NAT mode applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerService {
    pub protocol: &'static str,
    pub mode: Option<u8>,
}

/// What a policy built from this library decides for itself. The library serves L4 listeners (TCP, UDP,
/// SCTP, HTTPS pass-through) and refuses the rest; a policy may serve more (the http-fullproxy policy
/// serves HTTP in LoxiLB's full-proxy mode) and name its rules its own way.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Asked for a listener protocol the library does not serve at L4; `None` refuses the listener.
    pub beyond_l4: fn(&Listener) -> Option<ListenerService>,
    /// Builds the rule name from (lb, listener, pool) ids.
    pub rule_name: fn(&str, &str, &str) -> String,
}

/// The library's own answer for protocols beyond L4: none is served.
pub fn l4_only(_: &Listener) -> Option<ListenerService> {
    None
}

impl Default for Profile {
    fn default() -> Self {
        Profile { beyond_l4: l4_only, rule_name: keys::rule_name }
    }
}

/// Settings handed over by the host.
#[derive(Clone, Debug)]
pub struct Config {
    pub nat_mode: u8,
    /// Rules ask LoxiLB to advertise their VIPs over BGP, unless the load balancer's flavor says.
    pub bgp: bool,
    pub profile: Profile,
}

impl Default for Config {
    fn default() -> Self {
        Config { nat_mode: MODE_FULLNAT, bgp: false, profile: Profile::default() }
    }
}

pub const MODE_DNAT: u8 = 0;
pub const MODE_ONEARM: u8 = 1;
pub const MODE_FULLNAT: u8 = 2;
pub const MODE_DSR: u8 = 3;
pub const MODE_FULLPROXY: u8 = 4;

pub fn nat_mode_from_name(name: &str) -> Result<u8, String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "dnat" | "default" => Ok(MODE_DNAT),
        "onearm" => Ok(MODE_ONEARM),
        "fullnat" => Ok(MODE_FULLNAT),
        "dsr" => Ok(MODE_DSR),
        "fullproxy" => Ok(MODE_FULLPROXY),
        other => Err(format!(
            "nat_mode {} is not one of dnat, onearm, fullnat, dsr, fullproxy (hostonearm needs an unspecified VIP, which Octavia never has)",
            quoted(other)
        )),
    }
}

/// A rendered listener: the rule and, for HTTP(S) monitors, the per-endpoint probes.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub rule: LbRule,
    pub probes: Vec<EndpointProbe>,
}

fn unsupported(msg: impl Into<String>) -> PolicyError {
    PolicyError::Unsupported(msg.into())
}

fn invalid(msg: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(msg.into())
}

/// How LoxiLB serves a listener, or the reason it cannot be served.
pub fn listener_service(listener: &Listener, profile: &Profile) -> Result<ListenerService, PolicyError> {
    let l4 = |protocol| Ok(ListenerService { protocol, mode: None });
    match listener.protocol.as_str() {
        "TCP" => l4("tcp"),
        "UDP" => l4("udp"),
        "SCTP" => l4("sctp"),
        // An HTTPS listener in Octavia is TLS pass-through: plain L4 forwarding of the TCP stream.
        "HTTPS" => l4("tcp"),
        other => match (profile.beyond_l4)(listener) {
            Some(service) => Ok(service),
            None if other == "HTTP" => Err(unsupported(format!(
                "listener {}: protocol HTTP needs an L7 proxy; this policy programs LoxiLB L4 rules only. Use protocol TCP, or swap in the http-fullproxy policy",
                listener.id
            ))),
            None if other == "TERMINATED_HTTPS" => Err(unsupported(format!(
                "listener {}: protocol TERMINATED_HTTPS (TLS termination with Barbican certificates) is not supported by the LoxiLB provider; use HTTPS (pass-through) or TCP",
                listener.id
            ))),
            None => Err(unsupported(format!("listener {}: protocol {other} is not supported by the LoxiLB provider", listener.id))),
        },
    }
}

/// The transport protocol of a listener's LoxiLB key, whatever the policy: UDP and SCTP are themselves,
/// everything else runs over TCP.
pub fn key_protocol(listener: &Listener) -> &'static str {
    match listener.protocol.as_str() {
        "UDP" => "udp",
        "SCTP" => "sctp",
        _ => "tcp",
    }
}

/// Checks of a listener that need nothing but the listener.
pub fn check_listener(listener: &Listener, profile: &Profile) -> Result<(), PolicyError> {
    listener_service(listener, profile)?;
    if listener.protocol_port == 0 {
        return Err(invalid(format!("listener {}: protocol_port must be 1..65535", listener.id)));
    }
    if let Some(limit) = listener.connection_limit {
        if limit != -1 {
            return Err(unsupported(format!(
                "listener {}: connection_limit {limit} is not supported (LoxiLB has no per-listener connection limit); set it to -1",
                listener.id
            )));
        }
    }
    if !listener.insert_headers.is_empty() {
        let names: Vec<&str> = listener.insert_headers.iter().map(|(k, _)| k.as_str()).collect();
        return Err(unsupported(format!("listener {}: insert_headers ({}) need an L7 proxy; LoxiLB forwards at L4", listener.id, names.join(", "))));
    }
    if listener.default_tls_container_ref.is_some() || !listener.sni_container_refs.is_empty() {
        return Err(unsupported(format!("listener {}: TLS certificates are not supported (no TLS termination)", listener.id)));
    }
    if listener.client_authentication.as_deref().is_some_and(|a| a != "NONE") {
        return Err(unsupported(format!("listener {}: client_authentication is not supported (no TLS termination)", listener.id)));
    }
    if !listener.l7policies.is_empty() {
        return Err(unsupported(format!("listener {}: L7 policies are not supported: LoxiLB rules match on VIP, port and protocol only", listener.id)));
    }
    for cidr in &listener.allowed_cidrs {
        if !is_cidr(cidr) {
            return Err(invalid(format!("listener {}: allowed_cidrs entry {} is not an IP prefix", listener.id, quoted(cidr))));
        }
    }
    Ok(())
}

/// Whether `allowed_cidrs` lets every source in: none given, or a prefix of length 0 among them (the list
/// is a union, so one allow-all entry makes the rest moot).
pub fn allows_all_sources(cidrs: &[String]) -> bool {
    cidrs.is_empty() || cidrs.iter().any(|c| c.split_once('/').is_some_and(|(_, len)| len.trim().parse::<u8>() == Ok(0)))
}

/// A source restriction LoxiLB cannot be relied on to hold: it keeps one only on the first
/// `MAX_SOURCE_CHECKED_RULE` rules it numbers, and which number a new rule gets depends on every rule
/// LoxiLB has held (released numbers are reused first), so the provider cannot promise it at validation.
pub fn check_source_restriction(listener: &Listener) -> Result<(), PolicyError> {
    if allows_all_sources(&listener.allowed_cidrs) {
        return Ok(());
    }
    Err(unsupported(format!(
        "listener {}: allowed_cidrs {} cannot be enforced: LoxiLB holds source restrictions only on the first {MAX_SOURCE_CHECKED_RULE} rules it numbers (later rules are refused with rule-allowed-src error), and the rule number is LoxiLB's choice. Leave allowed_cidrs unset or 0.0.0.0/0 (::/0), and filter client addresses in front of the load balancer",
        listener.id,
        listener.allowed_cidrs.join(", ")
    )))
}

fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, len)) => {
            let max = if keys::is_ipv4(ip) {
                32
            } else if keys::is_ipv6(ip) {
                128
            } else {
                return false;
            };
            len.parse::<u8>().is_ok_and(|l| l <= max)
        }
        None => keys::is_ip(s),
    }
}

pub fn check_pool(pool: &Pool, profile: &Profile) -> Result<(), PolicyError> {
    match pool.protocol.as_str() {
        "TCP" | "UDP" | "SCTP" | "HTTPS" | "PROXYV2" => {}
        "HTTP" => {}
        "PROXY" => {
            return Err(unsupported(format!(
                "pool {}: PROXY protocol v1 is not supported; LoxiLB speaks PROXY protocol v2 (use pool protocol PROXYV2)",
                pool.id
            )))
        }
        other => return Err(unsupported(format!("pool {}: protocol {other} is not supported", pool.id))),
    }
    let _ = profile;
    match pool.lb_algorithm.as_str() {
        "ROUND_ROBIN" | "SOURCE_IP_PORT" | "SOURCE_IP" | "LEAST_CONNECTIONS" => {}
        other => return Err(unsupported(format!("pool {}: lb_algorithm {other} is not supported", pool.id))),
    }
    if pool.tls_enabled {
        return Err(unsupported(format!("pool {}: tls_enabled (re-encryption to members) is not supported", pool.id)));
    }
    if let Some(sp) = &pool.session_persistence {
        match sp.kind.as_str() {
            "SOURCE_IP" => {}
            kind @ ("HTTP_COOKIE" | "APP_COOKIE") => {
                return Err(unsupported(format!(
                    "pool {}: session persistence {kind} needs cookies, which LoxiLB's L4 rules cannot see; use SOURCE_IP persistence",
                    pool.id
                )))
            }
            other => return Err(unsupported(format!("pool {}: session persistence {other} is not supported", pool.id))),
        }
        if sp.persistence_timeout.is_some_and(|t| t != PERSIST_TIMEOUT_S) {
            return Err(unsupported(format!(
                "pool {}: persistence_timeout {} is not supported: LoxiLB keeps source-IP persistence for a fixed {PERSIST_TIMEOUT_S} s (leave it unset or set {PERSIST_TIMEOUT_S})",
                pool.id,
                sp.persistence_timeout.unwrap_or_default()
            )));
        }
        if sp.persistence_granularity.is_some() {
            return Err(unsupported(format!("pool {}: persistence_granularity is not supported", pool.id)));
        }
        if !matches!(pool.lb_algorithm.as_str(), "ROUND_ROBIN" | "SOURCE_IP") {
            return Err(unsupported(format!(
                "pool {}: SOURCE_IP session persistence with lb_algorithm {} is not supported: LoxiLB's persistence selects round-robin; use ROUND_ROBIN or SOURCE_IP",
                pool.id, pool.lb_algorithm
            )));
        }
    }
    Ok(())
}

pub fn check_member(member: &Member) -> Result<(), PolicyError> {
    if !keys::is_ip(&member.address) {
        return Err(invalid(format!("member {}: address {} is not an IP address", member.id, quoted(&member.address))));
    }
    if member.protocol_port == 0 {
        return Err(invalid(format!("member {}: protocol_port must be 1..65535", member.id)));
    }
    if member.weight > 256 {
        return Err(invalid(format!("member {}: weight {} is out of range 0..256", member.id, member.weight)));
    }
    if member.backup {
        return Err(unsupported(format!("member {}: backup members are not supported (LoxiLB has no standby endpoints)", member.id)));
    }
    if member.monitor_address.as_deref().is_some_and(|a| a != member.address) || member.monitor_port.is_some_and(|p| p != member.protocol_port) {
        return Err(unsupported(format!(
            "member {}: monitor_address/monitor_port are not supported: LoxiLB probes the endpoint's own address and port",
            member.id
        )));
    }
    Ok(())
}

pub fn check_monitor(hm: &HealthMonitor) -> Result<(), PolicyError> {
    match hm.kind.as_str() {
        "TCP" | "UDP-CONNECT" | "SCTP" | "PING" => {}
        "HTTP" | "HTTPS" => {
            if let Some(method) = hm.http_method.as_deref() {
                if method != "GET" && method != "HEAD" {
                    return Err(unsupported(format!(
                        "health monitor {}: http_method {method} is not supported: LoxiLB's HTTP prober sends HEAD (GET and HEAD are accepted)",
                        hm.id
                    )));
                }
            }
            if let Some(codes) = hm.expected_codes.as_deref() {
                if codes.trim() != "200" {
                    return Err(unsupported(format!(
                        "health monitor {}: expected_codes {} is not supported: LoxiLB's HTTP prober accepts status 200 only",
                        hm.id,
                        quoted(codes)
                    )));
                }
            }
            if hm.domain_name.is_some() {
                return Err(unsupported(format!("health monitor {}: domain_name is not supported (LoxiLB's prober sends no Host header of choice)", hm.id)));
            }
        }
        "TLS-HELLO" => return Err(unsupported(format!("health monitor {}: type TLS-HELLO is not supported; use TCP or HTTPS", hm.id))),
        other => return Err(unsupported(format!("health monitor {}: type {other} is not supported", hm.id))),
    }
    if hm.delay == 0 || hm.delay > MAX_INACTIVE_TIMEOUT_S {
        return Err(invalid(format!("health monitor {}: delay must be 1..{MAX_INACTIVE_TIMEOUT_S} s", hm.id)));
    }
    if hm.max_retries_down == 0 || hm.max_retries_down > MAX_PROBE_RETRIES {
        return Err(invalid(format!("health monitor {}: max_retries_down must be 1..{MAX_PROBE_RETRIES}", hm.id)));
    }
    Ok(())
}

pub fn check_loadbalancer(lb: &Loadbalancer) -> Result<(), PolicyError> {
    if !keys::is_ip(&lb.vip_address) {
        return Err(invalid(format!("load balancer {}: vip_address {} is not an IP address", lb.id, quoted(&lb.vip_address))));
    }
    for (key, value) in &lb.flavor {
        match key.as_str() {
            "nat_mode" => drop(nat_mode_from_name(value.trim_matches('"')).map_err(unsupported)?),
            "bgp" => drop(flag(value).ok_or_else(|| unsupported(format!("load balancer {}: flavor key bgp must be true or false, not {value}", lb.id)))?),
            _ => return Err(unsupported(format!("load balancer {}: flavor key {} is not supported (supported: nat_mode, bgp)", lb.id, quoted(key)))),
        }
    }
    for vip in &lb.additional_vips {
        if !keys::is_ip(vip) {
            return Err(invalid(format!("load balancer {}: additional VIP {} is not an IP address", lb.id, quoted(vip))));
        }
    }
    if lb.additional_vips.len() > 3 {
        return Err(unsupported(format!("load balancer {}: LoxiLB supports at most 3 additional VIPs (SCTP multihoming)", lb.id)));
    }
    Ok(())
}

/// A flavor's boolean, JSON-encoded (`true`) or as a string (`"true"`).
fn flag(value: &str) -> Option<bool> {
    match value.trim_matches('"').to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn bgp(lb: &Loadbalancer, config: &Config) -> bool {
    lb.flavor.iter().find(|(k, _)| k == "bgp").and_then(|(_, v)| flag(v)).unwrap_or(config.bgp)
}

fn nat_mode(lb: &Loadbalancer, config: &Config) -> u8 {
    lb.flavor.iter().find(|(k, _)| k == "nat_mode").and_then(|(_, v)| nat_mode_from_name(v.trim_matches('"')).ok()).unwrap_or(config.nat_mode)
}

/// Octavia's client data timeout (ms) as LoxiLB's inactivity timeout (s), rounded up and capped.
pub fn inactive_timeout(timeout_client_data_ms: Option<u32>) -> u32 {
    match timeout_client_data_ms {
        None | Some(0) => 0,
        Some(ms) => ms.div_ceil(1000).min(MAX_INACTIVE_TIMEOUT_S),
    }
}

/// Weights as LoxiLB percentages (largest-remainder rounding; every endpoint keeps at least 1 %).
pub fn weights_to_percent(weights: &[u32]) -> Vec<u8> {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut shares: Vec<(usize, u64, u64)> = weights.iter().enumerate().map(|(i, &w)| (i, w as u64 * 100 / total, w as u64 * 100 % total)).collect();
    let assigned: u64 = shares.iter().map(|s| s.1).sum();
    // The percents rounding left over go one each to the endpoints with the largest remainders, the first
    // of equal ones. A selection, not a sort: a rule has at most 32 endpoints, and a sort instantiated for
    // this alone took ~7 KB of the component.
    let mut given = vec![false; shares.len()];
    for _ in assigned..100 {
        let largest = (0..shares.len()).filter(|&i| !given[i]).max_by(|&a, &b| shares[a].2.cmp(&shares[b].2).then(b.cmp(&a)));
        let Some(i) = largest else { break };
        given[i] = true;
        shares[i].1 += 1;
    }
    for s in shares.iter_mut() {
        s.1 = s.1.max(1);
    }
    // Raising tiny shares to 1 % may push the sum past 100: take it back from the largest.
    while shares.iter().map(|s| s.1).sum::<u64>() > 100 {
        let largest = shares.iter_mut().max_by_key(|s| s.1).expect("non-empty");
        largest.1 -= 1;
    }
    shares.iter().map(|s| s.1 as u8).collect()
}

/// The rule for one listener, or `None` when it must have no rule (disabled, no pool, no members).
pub fn render(
    lb: &Loadbalancer,
    listener: &Listener,
    pool: Option<&Pool>,
    members: &[&Member],
    monitor: Option<&HealthMonitor>,
    config: &Config,
) -> Result<Option<Rendered>, PolicyError> {
    let served = listener_service(listener, &config.profile)?;
    let protocol = served.protocol;
    let Some(pool) = pool else { return Ok(None) };
    if !lb.admin_state_up || !listener.admin_state_up || !pool.admin_state_up {
        return Ok(None);
    }
    let serving: Vec<&Member> = members.iter().copied().filter(|m| m.admin_state_up && m.weight > 0).collect();
    if serving.is_empty() {
        return Ok(None);
    }
    if serving.len() > MAX_ENDPOINTS {
        return Err(invalid(format!("pool {}: {} enabled members, but a LoxiLB rule holds at most {MAX_ENDPOINTS} endpoints", pool.id, serving.len())));
    }
    let vip_is_v4 = keys::is_ipv4(&lb.vip_address);
    if vip_is_v4 {
        if let Some(m) = serving.iter().find(|m| !keys::is_ipv4(&m.address)) {
            return Err(invalid(format!(
                "member {}: IPv6 address {} behind the IPv4 VIP {} (LoxiLB cannot translate IPv4 to IPv6)",
                m.id, m.address, lb.vip_address
            )));
        }
    }
    let mode = served.mode.unwrap_or_else(|| nat_mode(lb, config));
    let uniform = serving.windows(2).all(|w| w[0].weight == w[1].weight);
    let persistent = pool.session_persistence.as_ref().is_some_and(|sp| sp.kind == "SOURCE_IP");
    let sel = match (pool.lb_algorithm.as_str(), uniform, persistent) {
        (_, false, true) => {
            return Err(unsupported(format!("pool {}: members with different weights cannot be combined with SOURCE_IP session persistence", pool.id)))
        }
        ("ROUND_ROBIN" | "SOURCE_IP", true, true) => 3,
        ("ROUND_ROBIN", true, false) => 0,
        ("ROUND_ROBIN", false, false) => 2,
        ("SOURCE_IP_PORT", true, false) => 1,
        ("SOURCE_IP", true, false) => 3,
        ("LEAST_CONNECTIONS", true, false) => 4,
        (algorithm, false, false) => {
            return Err(unsupported(format!(
                "pool {}: members with different weights need lb_algorithm ROUND_ROBIN (LoxiLB weighs only round-robin); {algorithm} would ignore the weights",
                pool.id
            )))
        }
        (algorithm, _, _) => return Err(unsupported(format!("pool {}: lb_algorithm {algorithm} is not supported", pool.id))),
    };
    if mode == MODE_DSR {
        if sel != 1 {
            return Err(unsupported(format!(
                "pool {}: nat_mode dsr needs lb_algorithm SOURCE_IP_PORT without persistence (LoxiLB allows only hash selection in DSR)",
                pool.id
            )));
        }
        if let Some(m) = serving.iter().find(|m| m.protocol_port != listener.protocol_port) {
            return Err(unsupported(format!(
                "member {}: in dsr mode a member must listen on the listener's port {} (it has {})",
                m.id, listener.protocol_port, m.protocol_port
            )));
        }
    }
    let percents = if sel == 2 { weights_to_percent(&serving.iter().map(|m| m.weight).collect::<Vec<_>>()) } else { Vec::new() };
    let endpoints: Vec<Endpoint> = serving
        .iter()
        .enumerate()
        .map(|(i, m)| Endpoint {
            ip: keys::canonical_ip(&m.address).into_owned(),
            target_port: m.protocol_port,
            weight: if sel == 2 { percents[i] } else { 1 },
        })
        .collect();
    let secondary_ips = if lb.additional_vips.is_empty() {
        Vec::new()
    } else if protocol == "sctp" {
        lb.additional_vips.iter().map(|ip| keys::canonical_ip(ip).into_owned()).collect()
    } else {
        return Err(unsupported(format!(
            "load balancer {}: additional VIPs are supported only for SCTP listeners (LoxiLB multihoming); listener {} is {}",
            lb.id, listener.id, listener.protocol
        )));
    };
    let mut service = ServiceArgs {
        external_ip: keys::canonical_ip(&lb.vip_address).into_owned(),
        port: listener.protocol_port,
        protocol: protocol.to_string(),
        sel,
        mode,
        security: 0,
        monitor: false,
        inactive_timeout: inactive_timeout(listener.timeout_client_data),
        block: 0,
        name: (config.profile.rule_name)(&lb.id, &listener.id, &pool.id),
        probetype: String::new(),
        probeport: 0,
        probereq: String::new(),
        proberesp: String::new(),
        probe_timeout: 0,
        probe_retries: 0,
        proxyprotocolv2: pool.protocol == "PROXYV2",
        bgp: bgp(lb, config),
        host: String::new(),
    };
    if service.proxyprotocolv2 && protocol != "tcp" {
        return Err(unsupported(format!("pool {}: PROXYV2 needs a TCP listener", pool.id)));
    }
    let mut probes = Vec::new();
    if let Some(hm) = monitor.filter(|hm| hm.admin_state_up) {
        service.monitor = true;
        service.probe_timeout = hm.delay;
        service.probe_retries = hm.max_retries_down;
        let l4 = match hm.kind.as_str() {
            "TCP" => Some("tcp"),
            "UDP-CONNECT" => Some("udp"),
            "SCTP" => Some("sctp"),
            _ => None,
        };
        let common_port = serving.iter().all(|m| m.protocol_port == serving[0].protocol_port);
        match (hm.kind.as_str(), l4) {
            ("PING", _) => service.probetype = "ping".into(),
            (_, Some(kind)) if common_port => {
                service.probetype = kind.into();
                service.probeport = serving[0].protocol_port;
            }
            (_, Some(kind)) => probes = endpoint_probes(&serving, protocol, kind, "", hm),
            ("HTTP", None) | ("HTTPS", None) => {
                let kind = if hm.kind == "HTTP" { "http" } else { "https" };
                let path = hm.url_path.as_deref().unwrap_or("/").trim_start_matches('/');
                probes = endpoint_probes(&serving, protocol, kind, path, hm);
            }
            (other, None) => return Err(unsupported(format!("health monitor {}: type {other} is not supported", hm.id))),
        }
    }
    Ok(Some(Rendered { rule: LbRule { service, endpoints, allowed_sources: allowed_sources(&listener.allowed_cidrs), secondary_ips }, probes }))
}

/// `allowedSources` for LoxiLB: nothing when every source is allowed (a list of any length makes LoxiLB
/// check sources, which it can do only on its first rules), else the prefixes as LoxiLB lists them.
fn allowed_sources(cidrs: &[String]) -> Vec<String> {
    if allows_all_sources(cidrs) {
        return Vec::new();
    }
    cidrs.iter().map(|c| keys::canonical_prefix(c)).collect()
}

/// Per-endpoint probes, named with the key LoxiLB gives the endpoint host a rule creates
/// (`<ip>_<rule protocol>_<port>`), so posting them overrides that host's probe options.
fn endpoint_probes(serving: &[&Member], protocol: &str, kind: &str, request: &str, hm: &HealthMonitor) -> Vec<EndpointProbe> {
    serving
        .iter()
        .map(|m| {
            let ip = keys::canonical_ip(&m.address);
            EndpointProbe {
                name: format!("{ip}_{protocol}_{}", m.protocol_port),
                host_name: ip.into_owned(),
                probe_type: kind.to_string(),
                probe_port: m.protocol_port,
                probe_req: request.to_string(),
                probe_resp: String::new(),
                probe_duration: hm.delay,
                inactive_retries: hm.max_retries_down,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_sum_to_at_most_100_and_keep_every_endpoint() {
        assert_eq!(weights_to_percent(&[1, 1, 2]), vec![25, 25, 50]);
        assert_eq!(weights_to_percent(&[80, 20]), vec![80, 20]);
        assert_eq!(weights_to_percent(&[1, 1, 1]), vec![34, 33, 33]);
        let tiny = weights_to_percent(&[256, 256, 256, 1]);
        assert!(tiny.iter().all(|&p| p >= 1));
        assert!(tiny.iter().map(|&p| p as u32).sum::<u32>() <= 100);
    }

    #[test]
    fn the_rounding_left_over_goes_to_the_largest_remainders_the_first_of_equal_ones() {
        // Largest-remainder rounding as a sort states it, beside the selection the policy runs.
        let by_sorting = |weights: &[u32]| -> Vec<u8> {
            let total: u64 = weights.iter().map(|&w| w as u64).sum();
            let mut shares: Vec<(u64, u64)> = weights.iter().map(|&w| (w as u64 * 100 / total, w as u64 * 100 % total)).collect();
            let assigned: u64 = shares.iter().map(|s| s.0).sum();
            let mut order: Vec<usize> = (0..shares.len()).collect();
            order.sort_unstable_by(|&a, &b| shares[b].1.cmp(&shares[a].1).then(a.cmp(&b)));
            order.iter().take((100 - assigned) as usize).for_each(|&i| shares[i].0 += 1);
            shares.iter_mut().for_each(|s| s.0 = s.0.max(1));
            while shares.iter().map(|s| s.0).sum::<u64>() > 100 {
                shares.iter_mut().max_by_key(|s| s.0).expect("non-empty").0 -= 1;
            }
            shares.iter().map(|s| s.0 as u8).collect()
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..5_000 {
            let len = 1 + next(32) as usize;
            let spread = [3, 10, 257][next(3) as usize];
            let weights: Vec<u32> = (0..len).map(|_| 1 + next(spread) as u32).collect();
            assert_eq!(weights_to_percent(&weights), by_sorting(&weights), "{weights:?}");
        }
    }

    #[test]
    fn client_timeout_becomes_seconds_rounded_up_and_capped() {
        assert_eq!(inactive_timeout(None), 0);
        assert_eq!(inactive_timeout(Some(50_000)), 50);
        assert_eq!(inactive_timeout(Some(1_500)), 2);
        assert_eq!(inactive_timeout(Some(u32::MAX)), MAX_INACTIVE_TIMEOUT_S);
    }

    #[test]
    fn nat_modes_parse_and_hostonearm_is_refused() {
        assert_eq!(nat_mode_from_name("FullNAT"), Ok(MODE_FULLNAT));
        assert_eq!(nat_mode_from_name("onearm"), Ok(MODE_ONEARM));
        assert!(nat_mode_from_name("hostonearm").is_err());
    }

    #[test]
    fn cidrs_are_checked() {
        assert!(is_cidr("10.0.0.0/8"));
        assert!(is_cidr("fd00::/64"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("example.com/8"));
    }
}
