//! LoxiLB keys of every resource type, the service key, and deterministic ids.
//!
//! Every key is unique in `loxilb_to_octavia`, so the reverse map is a true inverse even when one load
//! balancer has several listeners (the seed's example maps an LB straight to `ip:port/proto`, which
//! collides as soon as a second listener appears):
//!
//! | resource | key | example |
//! |---|---|---|
//! | listener | service key `{vip}:{port}/{protocol}` (the LoxiLB rule it owns) | `10.0.0.10:80/tcp`, `fd00::10:443/tcp` |
//! | load balancer | `{vip}` | `10.0.0.10` |
//! | pool | `{vip}/pool-{pool_id}` | `10.0.0.10/pool-5c3…` |
//! | member | `{vip}/pool-{pool_id}/{address}:{port}` | `10.0.0.10/pool-5c3…/10.0.1.5:8080` |
//! | health monitor | `{vip}/pool-{pool_id}/monitor` | `10.0.0.10/pool-5c3…/monitor` |
//!
//! IPv6 addresses are written bare; parsing splits on the *last* `/` and the *last* `:`.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// An address as LoxiLB writes it back (Go's `net.IP.String()`: RFC 5952 for IPv6, an IPv4-mapped address
/// as IPv4). Octavia stores addresses as the user wrote them (`FD00:0::0A`); keys and rules use this form,
/// so what the policy asks for, what LoxiLB lists and what recovery reads back compare equal. Text that is
/// not an address is returned as it is (validation refuses it elsewhere).
pub fn canonical_ip(s: &str) -> Cow<'_, str> {
    // Without a colon the text is IPv4 or no address, and is its own answer either way: not parsing it
    // was 4 % of translating a tree.
    if !s.contains(':') {
        return Cow::Borrowed(s);
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => Cow::Owned(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        }),
        // An IPv4 address parses only from its canonical form (four decimal octets, no leading zeros),
        // so the text is it, borrowed: formatting or copying it again was a tenth of a translation.
        Ok(std::net::IpAddr::V4(_)) | Err(_) => Cow::Borrowed(s),
    }
}

/// A source prefix as LoxiLB stores and lists it (Go's `IPNet.String()`: the network, `192.0.2.7/24` →
/// `192.0.2.0/24`); a bare address is its host prefix. Text that is not a prefix is returned as it is.
pub fn canonical_prefix(s: &str) -> String {
    let (addr, len) = match s.split_once('/') {
        Some((addr, len)) => (addr, len.parse::<u8>().ok()),
        None => (s, None),
    };
    match (addr.parse::<std::net::IpAddr>(), len) {
        (Ok(std::net::IpAddr::V4(a)), len) if len.is_none_or(|l| l <= 32) => {
            let len = len.unwrap_or(32);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        (Ok(std::net::IpAddr::V6(a)), len) if len.is_none_or(|l| l <= 128) => {
            let len = len.unwrap_or(128);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            format!("{}/{len}", canonical_ip(&std::net::Ipv6Addr::from(u128::from(a) & mask).to_string()))
        }
        _ => s.to_string(),
    }
}

/// `parts` joined, in one allocation of the right size (`format!` cost more than the copying in keys
/// made for every object of a plan).
fn joined(parts: &[&str], port: Option<u16>) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 6);
    for part in parts {
        key.push_str(part);
    }
    if let Some(port) = port {
        key.push(':');
        crate::json::push_u64(&mut key, port.into());
    }
    key
}

pub fn service_key(external_ip: &str, port: u16, protocol: &str) -> String {
    let mut key = joined(&[&canonical_ip(external_ip)], Some(port));
    key.push('/');
    key.push_str(protocol);
    key
}

/// Splits `{ip}:{port}/{protocol}`; `None` when it is not a valid service key.
pub fn parse_service_key(key: &str) -> Option<(&str, u16, &str)> {
    let (addr, protocol) = key.rsplit_once('/')?;
    let (ip, port) = addr.rsplit_once(':')?;
    if !is_ip(ip) || protocol.is_empty() || !protocol.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    Some((ip, port.parse().ok()?, protocol))
}

pub fn loadbalancer_key(vip: &str) -> String {
    canonical_ip(vip).into_owned()
}

pub fn pool_key(vip: &str, pool_id: &str) -> String {
    joined(&[&canonical_ip(vip), "/pool-", pool_id], None)
}

pub fn member_key(vip: &str, pool_id: &str, address: &str, port: u16) -> String {
    joined(&[&canonical_ip(vip), "/pool-", pool_id, "/", &canonical_ip(address)], Some(port))
}

pub fn monitor_key(vip: &str, pool_id: &str) -> String {
    joined(&[&canonical_ip(vip), "/pool-", pool_id, "/monitor"], None)
}

/// `s` split around the first `separator`: `str::split_once` with a string pattern, without the substring
/// searcher it brings into the component (2 KB) for separators this short.
fn split_around<'a>(s: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let at = s.as_bytes().windows(separator.len()).position(|w| w == separator.as_bytes())?;
    // `separator` starts with an ASCII byte, so `at` and the end of the match are character boundaries
    // (`get`, not `&s[..]`: see `json::Parser::number`).
    Some((s.get(..at)?, s.get(at + separator.len()..)?))
}

/// Checks that a key has the shape its resource type requires (used by `validate-mappings`).
pub fn key_is_well_formed(resource_type: &str, key: &str) -> bool {
    match resource_type {
        "listener" => parse_service_key(key).is_some(),
        "loadbalancer" => is_ip(key),
        "pool" => split_around(key, "/pool-").is_some_and(|(vip, id)| is_ip(vip) && !id.is_empty() && !id.contains('/')),
        "healthmonitor" => key.strip_suffix("/monitor").and_then(|rest| split_around(rest, "/pool-")).is_some_and(|(vip, id)| is_ip(vip) && !id.is_empty()),
        "member" => split_around(key, "/pool-").is_some_and(|(vip, rest)| {
            is_ip(vip) && rest.split_once('/').is_some_and(|(_, ep)| ep.rsplit_once(':').is_some_and(|(ip, port)| is_ip(ip) && port.parse::<u16>().is_ok()))
        }),
        _ => false,
    }
}

pub fn is_ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

pub fn is_ipv6(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok()
}

pub fn is_ip(s: &str) -> bool {
    is_ipv4(s) || is_ipv6(s)
}

/// Prefix of a deterministic id per resource type.
pub fn type_prefix(resource_type: &str) -> &'static str {
    match resource_type {
        "loadbalancer" => "lb",
        "listener" => "listener",
        "pool" => "pool",
        "member" => "member",
        "healthmonitor" => "hm",
        _ => "obj",
    }
}

/// The deterministic id of a resource recovered without a usable Octavia id:
/// `{prefix}_{ip}_{port}_{protocol}_{hash}`, where `hash` is the first 16 hex digits of
/// SHA-256 over the UTF-8 canonical string `{resource_type}|external_ip={ip}|port={port}|protocol={protocol}`
/// (ip and protocol lower-cased and trimmed), followed by `|{extra}` when `extra` is not empty (members
/// add their listener's service key, so equal endpoints behind two listeners stay distinct).
pub fn deterministic_id(resource_type: &str, ip: &str, port: u16, protocol: &str, extra: &str) -> String {
    use std::fmt::Write;
    // Recovery makes one per endpoint (65k at LoxiLB's largest table): one buffer for the hashed text, one
    // for the id, and nothing lowercased that already is.
    fn lower(s: &str) -> std::borrow::Cow<'_, str> {
        let s = s.trim();
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            s.to_ascii_lowercase().into()
        } else {
            s.into()
        }
    }
    let (ip, protocol) = (lower(ip), lower(protocol));
    let mut canonical = String::with_capacity(64 + ip.len() + extra.len());
    let _ = write!(canonical, "{resource_type}|external_ip={ip}|port={port}|protocol={protocol}");
    if !extra.is_empty() {
        canonical.push('|');
        canonical.push_str(extra);
    }
    let digest = Sha256::digest(canonical.as_bytes());
    let prefix = type_prefix(resource_type);
    let mut id = String::with_capacity(prefix.len() + ip.len() + protocol.len() + 26);
    let _ = write!(id, "{prefix}_{ip}_{port}_{protocol}_");
    for b in &digest[..8] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// Whether an id was made by `deterministic_id` (Octavia's own ids are UUIDs and never contain `_`).
pub fn is_deterministic_id(id: &str) -> bool {
    ["lb_", "listener_", "pool_", "member_", "hm_"].iter().any(|p| id.starts_with(p)) && id.split('_').count() == 5
}

/// The LoxiLB rule name carrying the Octavia ids, so discovered rules map back to real ids:
/// `octavia_lb-{lb}_listener-{listener}_pool-{pool}`. LoxiLB reads `:` in a name as an HA instance and
/// skips VIP installation for names containing `ipvs` or `static`, so ids with those are hashed instead.
pub fn rule_name(lb_id: &str, listener_id: &str, pool_id: &str) -> String {
    if id_is_safe(lb_id) && id_is_safe(listener_id) && id_is_safe(pool_id) {
        joined(&["octavia_lb-", lb_id, "_listener-", listener_id, "_pool-", pool_id], None)
    } else {
        let digest = Sha256::digest(format!("{lb_id}|{listener_id}|{pool_id}").as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("octavia_h-{hash}")
    }
}

/// Prefix of the rule names `l7_rule_name` writes.
pub const L7_PREFIX: &str = "octavia-l7_";

/// The http-fullproxy policy's naming scheme, `octavia-l7_{lb}_{listener}_{pool}`: a rule an operator can
/// tell apart from the default policy's at a glance, with the same restrictions (no `:`, `ipvs` or
/// `static`; unsafe ids hashed). Octavia's ids never contain `_`, so `_` separates them unambiguously.
pub fn l7_rule_name(lb_id: &str, listener_id: &str, pool_id: &str) -> String {
    if [lb_id, listener_id, pool_id].iter().all(|id| id_is_safe(id)) {
        joined(&[L7_PREFIX, lb_id, "_", listener_id, "_", pool_id], None)
    } else {
        let digest = Sha256::digest(format!("{lb_id}|{listener_id}|{pool_id}").as_bytes());
        let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{L7_PREFIX}h-{hash}")
    }
}

fn id_is_safe(id: &str) -> bool {
    // One pass: building a substring searcher for each word cost more than the id's own check, twice for
    // each of three ids in every rule name.
    let b = id.as_bytes();
    !b.is_empty()
        && b.iter().enumerate().all(|(i, &c)| {
            (c.is_ascii_alphanumeric() || c == b'-') && !(c == b'i' && b[i..].starts_with(b"ipvs")) && !(c == b's' && b[i..].starts_with(b"static"))
        })
}

/// The ids in a rule name written by `rule_name` or `l7_rule_name`: (lb, listener, pool). Recovery
/// understands both schemes, so a mapping rebuilt from LoxiLB keeps real ids across a policy swap.
pub fn parse_rule_name(name: &str) -> Option<(&str, &str, &str)> {
    if let Some(rest) = name.strip_prefix(L7_PREFIX) {
        let mut parts = rest.split('_');
        let (lb, listener, pool) = (parts.next()?, parts.next()?, parts.next()?);
        return (parts.next().is_none() && [lb, listener, pool].iter().all(|id| id_is_safe(id))).then_some((lb, listener, pool));
    }
    let rest = name.strip_prefix("octavia_lb-")?;
    let (lb, rest) = split_around(rest, "_listener-")?;
    let (listener, pool) = split_around(rest, "_pool-")?;
    (!lb.is_empty() && !listener.is_empty() && !pool.is_empty()).then_some((lb, listener, pool))
}

/// Whether a LoxiLB rule was named by one of this library's schemes (reconciliation removes only those).
pub fn is_provider_rule_name(name: &str) -> bool {
    name.starts_with("octavia_") || name.starts_with(L7_PREFIX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_around_splits_where_split_once_does() {
        for (s, sep) in [("10.0.0.1/pool-p/10.0.0.2:80", "/pool-"), ("é/pool-/pool-x", "/pool-"), ("/pool-", "/pool-"), ("10.0.0.1", "/pool-"), ("", "_pool-")]
        {
            assert_eq!(super::split_around(s, sep), s.split_once(sep), "{s} around {sep}");
        }
    }

    #[test]
    fn prefixes_are_written_as_loxilb_lists_them() {
        assert_eq!(canonical_prefix("192.0.2.7/24"), "192.0.2.0/24");
        assert_eq!(canonical_prefix("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(canonical_prefix("FD00::1/16"), "fd00::/16");
        assert_eq!(canonical_prefix("0.0.0.0/0"), "0.0.0.0/0");
    }

    #[test]
    fn addresses_are_written_as_loxilb_lists_them() {
        assert_eq!(canonical_ip("FD00:0:0:0:0:0:40:000A"), "fd00::40:a");
        assert_eq!(canonical_ip("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(canonical_ip("10.0.0.1"), "10.0.0.1");
        assert_eq!(canonical_ip("fd00::zz"), "fd00::zz", "text that is not an address comes back as it is");
        assert_eq!(canonical_ip("lb.example"), "lb.example");
        // Whatever IPv4 text parses is already what formatting the address gives.
        for text in ["0.0.0.0", "255.255.255.255", "10.0.10.100", "010.0.0.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.04", "256.1.1.1"] {
            let formatted = text.parse::<std::net::Ipv4Addr>().map_or(text.to_string(), |a| a.to_string());
            assert_eq!(canonical_ip(text), formatted, "{text}");
        }
        for octet in 0..=255u32 {
            let text = format!("{octet}.{}.0.{}", 255 - octet, octet / 3);
            assert_eq!(canonical_ip(&text), text.parse::<std::net::Ipv4Addr>().unwrap().to_string());
        }
        assert_eq!(member_key("FD00::0010", "p", "FD00:0::5", 80), "fd00::10/pool-p/fd00::5:80");
        assert_eq!(member_key("10.0.0.10", "p", "10.0.1.5", 8080), "10.0.0.10/pool-p/10.0.1.5:8080");
        assert_eq!(pool_key("FD00::0010", "p"), "fd00::10/pool-p");
        assert_eq!(monitor_key("10.0.0.10", "p"), "10.0.0.10/pool-p/monitor");
        assert_eq!(service_key("FD00::10", 80, "tcp"), "fd00::10:80/tcp");
    }

    use super::*;

    #[test]
    fn service_key_round_trips_ipv4_and_ipv6() {
        assert_eq!(service_key("192.168.1.100", 80, "tcp"), "192.168.1.100:80/tcp");
        assert_eq!(parse_service_key("192.168.1.100:80/tcp"), Some(("192.168.1.100", 80, "tcp")));
        let v6 = service_key("fd00::1", 443, "udp");
        assert_eq!(v6, "fd00::1:443/udp");
        assert_eq!(parse_service_key(&v6), Some(("fd00::1", 443, "udp")));
        assert_eq!(parse_service_key("2001:db8::a:b:8080/sctp"), Some(("2001:db8::a:b", 8080, "sctp")));
    }

    #[test]
    fn malformed_service_keys_are_rejected() {
        for bad in ["", "192.168.1.100:80", "192.168.1.100/tcp", "host:80/tcp", "1.2.3.4:99999/tcp", "1.2.3.4:80/"] {
            assert_eq!(parse_service_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn deterministic_id_follows_documented_recipe() {
        let id = deterministic_id("loadbalancer", "192.168.1.100", 80, "TCP ", "");
        let digest = Sha256::digest(b"loadbalancer|external_ip=192.168.1.100|port=80|protocol=tcp");
        let expected_hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(id, format!("lb_192.168.1.100_80_tcp_{expected_hash}"));
        assert_ne!(id, deterministic_id("loadbalancer", "192.168.1.101", 80, "tcp", ""));
        assert_ne!(deterministic_id("member", "10.0.0.5", 80, "tcp", "1.1.1.1:80/tcp"), deterministic_id("member", "10.0.0.5", 80, "tcp", "1.1.1.1:81/tcp"));
    }

    #[test]
    fn rule_names_carry_ids_and_avoid_loxilb_special_words() {
        let name = rule_name("a1", "b2", "c3");
        assert_eq!(name, "octavia_lb-a1_listener-b2_pool-c3");
        assert_eq!(parse_rule_name(&name), Some(("a1", "b2", "c3")));
        let hashed = rule_name("lb-static", "x", "y");
        assert!(hashed.starts_with("octavia_h-") && !hashed.contains("static"));
        for (ids, safe) in
            [(["a", "xipvs", "c"], false), (["a", "b", "static"], false), (["ipvsx", "b", "c"], false), (["a", "ipv", "stati"], true), (["", "b", "c"], false)]
        {
            assert_eq!(rule_name(ids[0], ids[1], ids[2]).starts_with("octavia_lb-"), safe, "{ids:?}");
        }
        assert!(!rule_name("a:b", "x", "y").contains(':'));
        assert_eq!(parse_rule_name(&hashed), None);
    }

    #[test]
    fn l7_rule_names_carry_ids_and_both_schemes_parse() {
        let lb = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000001";
        let name = l7_rule_name(lb, "b2", "c3");
        assert_eq!(name, format!("octavia-l7_{lb}_b2_c3"));
        assert_eq!(parse_rule_name(&name), Some((lb, "b2", "c3")));
        assert_eq!(parse_rule_name(&rule_name(lb, "b2", "c3")), Some((lb, "b2", "c3")));
        let hashed = l7_rule_name("lb:static", "x", "y");
        assert!(hashed.starts_with("octavia-l7_h-") && !hashed.contains("static") && !hashed.contains(':'));
        assert_eq!(parse_rule_name(&hashed), None);
        assert_eq!(parse_rule_name("octavia-l7_a_b_c_d"), None);
        assert!(is_provider_rule_name(&name) && is_provider_rule_name(&rule_name("a", "b", "c")));
        assert!(!is_provider_rule_name("k8s-svc"));
    }

    #[test]
    fn keys_of_every_type_are_well_formed() {
        assert!(key_is_well_formed("loadbalancer", &loadbalancer_key("fd00::1")));
        assert!(key_is_well_formed("listener", &service_key("fd00::1", 80, "tcp")));
        assert!(key_is_well_formed("pool", &pool_key("10.0.0.1", "p1")));
        assert!(key_is_well_formed("member", &member_key("fd00::1", "p1", "fd00::5", 8080)));
        assert!(key_is_well_formed("healthmonitor", &monitor_key("10.0.0.1", "p1")));
        assert!(!key_is_well_formed("member", "10.0.0.1/pool-p1/nonsense"));
        assert!(!key_is_well_formed("loadbalancer", "not-an-ip"));
    }
}
