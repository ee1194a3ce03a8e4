//! LoxiLB's connection table (`GET /config/conntrack/all`), typed, and what it says about one rule's
//! connections.
//!
//! What loxilb 64045de serves (`api/restapi/handler/conntrack.go`, `pkg/loxinet/dpebpf_linux.go`
//! `DpTableGet` and `convDPCt2GoObjFixup`): `{"ctAttr": [entry, ...]}`, one entry per direction of each
//! tracked connection, Go `omitempty` on every field (a zero count or port is absent):
//!
//! | field             | meaning                                                                 |
//! |-------------------|-------------------------------------------------------------------------|
//! | `sourceIP`/`sourcePort`, `destinationIP`/`destinationPort` | the direction's tuple, before NAT |
//! | `protocol`        | `tcp`, `udp`, `sctp`, `icmp`, `icmp6` or the protocol number             |
//! | `conntrackState`  | `est`, `sync-sent`, `closed`, `fini`, `udp-est`, … (per protocol)        |
//! | `conntrackAct`    | the NAT done: `dnat-EP:PORT:wN` client→VIP, `snat-VIP:PORT:wN` back; `hdnat`/`hsnat` (hairpin), `fdnat-`/`fsnat-` (full NAT), `fp|…` (full proxy) |
//! | `packets`/`bytes` | that direction's counters (datapath + cached), since the entry exists   |
//! | `ident`, `servName` | datapath identity, and the rule's `name` (`-` when unknown)          |
//!
//! So a connection through rule VIP:PORT shows as a *forward* entry (destination VIP:PORT, the client as
//! source; its bytes are the client→VIP direction) and a *reply* entry (its bytes are the way back,
//! `pb` of the reverse entry in loxilb-ebpf's `dp_ct_*_sm`): action `snat-VIP:PORT:…` and destination the
//! client, or in full NAT `fsnat-VIP,CLIENT:PORT:…` with LoxiLB's source address and the client's port as
//! destination. A full-proxy (`fp|…`) connection has only the forward entry and its bytes count both
//! directions together: there is no reply direction to read.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::RuleKey;

/// `GET` path (relative to `/netlox/v1`).
pub const CONNTRACK_PATH: &str = "/config/conntrack/all";

/// One direction of one connection, as LoxiLB lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackEntry {
    #[serde(rename = "sourceIP", skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
    #[serde(skip_serializing_if = "is_zero16")]
    pub source_port: u16,
    #[serde(rename = "destinationIP", skip_serializing_if = "String::is_empty")]
    pub destination_ip: String,
    #[serde(skip_serializing_if = "is_zero16")]
    pub destination_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub conntrack_state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub conntrack_act: String,
    #[serde(skip_serializing_if = "is_zero64")]
    pub packets: u64,
    #[serde(skip_serializing_if = "is_zero64")]
    pub bytes: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ident: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serv_name: String,
}

fn is_zero16(v: &u16) -> bool {
    *v == 0
}

fn is_zero64(v: &u64) -> bool {
    *v == 0
}

#[derive(Deserialize)]
struct Listing {
    #[serde(rename = "ctAttr")]
    ct_attr: Option<Vec<ConntrackEntry>>,
}

/// Reads a `GET /config/conntrack/all` answer (`ctAttr` null or empty: no connections).
pub fn conntrack_list(body: &str) -> Result<Vec<ConntrackEntry>, String> {
    let listing: Listing = serde_json::from_str(body).map_err(|e| format!("not a conntrack list ({e})"))?;
    Ok(listing.ct_attr.unwrap_or_default())
}

/// The answer LoxiLB gives for `entries` (what the simulator serves).
pub fn conntrack_json(entries: &[ConntrackEntry]) -> serde_json::Value {
    serde_json::json!({ "ctAttr": entries })
}

/// States after which a connection carries no more traffic; any other state counts as active (a TCP
/// handshake under way included, as HAProxy counts a connection from its accept).
const ENDED_STATES: &[&str] = &["closed", "closed-wait", "fini", "h/e", "err", "abort", "shut", "shut-ack", "shut-complete"];

/// One client connection through a rule, as one node's table shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// The client's `ip:port` (with the protocol, what tells connections apart on one rule).
    pub client: String,
    /// Not in an ended state.
    pub active: bool,
    /// Bytes from client to VIP (the forward entry).
    pub bytes_in: u64,
    /// Bytes back from the endpoint to the client (the reply entry; 0 in full-proxy mode, see the module doc).
    pub bytes_out: u64,
}

fn same_ip(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// What a reply entry's action says: the rule's VIP and port, and the client's address when the action
/// names it. `snat-VIP:PORT:wN` and `hsnat-…` (the entry goes to the client itself); `fsnat-VIP,CLIENT:PORT:wN`
/// in full NAT, where the entry goes to LoxiLB's own source address and keeps the client's port. IPv6
/// addresses hold colons, so the port and weight are taken from the right.
fn reply_service(act: &str) -> Option<(&str, u16, Option<&str>)> {
    let (rest, full) = match act.strip_prefix("fsnat-") {
        Some(rest) => (rest, true),
        None => (act.strip_prefix("snat-").or_else(|| act.strip_prefix("hsnat-"))?, false),
    };
    let (rest, weight) = rest.rsplit_once(':')?;
    weight.strip_prefix('w')?;
    let (ips, port) = rest.rsplit_once(':')?;
    let port = port.parse().ok()?;
    if full {
        let (vip, client) = ips.split_once(',')?;
        Some((vip, port, Some(client)))
    } else {
        Some((ips, port, None))
    }
}

/// The connections through rule `key` in one node's table, in client order. The forward entry (to VIP:PORT)
/// makes a connection; the reply entry back to the same client adds its bytes out.
pub fn connections(entries: &[ConntrackEntry], key: &RuleKey) -> Vec<Connection> {
    let proto = |e: &ConntrackEntry| e.protocol.eq_ignore_ascii_case(&key.protocol);
    let mut by_client: HashMap<String, Connection> = HashMap::new();
    for e in entries.iter().filter(|e| proto(e) && e.destination_port == key.port && same_ip(&e.destination_ip, &key.external_ip)) {
        let client = client_id(&e.source_ip, e.source_port);
        let active = !ENDED_STATES.contains(&e.conntrack_state.as_str());
        by_client.insert(client.clone(), Connection { client, active, bytes_in: e.bytes, bytes_out: 0 });
    }
    for e in entries.iter().filter(|e| proto(e)) {
        let Some((vip, port, client_ip)) = reply_service(&e.conntrack_act) else { continue };
        if port != key.port || !same_ip(vip, &key.external_ip) {
            continue;
        }
        if let Some(c) = by_client.get_mut(&client_id(client_ip.unwrap_or(&e.destination_ip), e.destination_port)) {
            c.bytes_out += e.bytes;
        }
    }
    let mut out: Vec<Connection> = by_client.into_values().collect();
    out.sort_by(|a, b| a.client.cmp(&b.client));
    out
}

/// A client as `ip:port`, the address in canonical form (LoxiLB prints Go's form, an action may differ).
fn client_id(ip: &str, port: u16) -> String {
    let ip = ip.parse::<IpAddr>().map(|ip| ip.to_string()).unwrap_or_else(|_| ip.to_string());
    format!("{ip}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two connections to 10.0.0.1:80 as loxilb lists them (one direction per entry, zeros omitted), one
    /// closing, and traffic of another rule.
    const LISTING: &str = r#"{"ctAttr":[
        {"destinationIP":"10.0.0.1","destinationPort":80,"sourceIP":"192.0.2.7","sourcePort":40000,"protocol":"tcp",
         "conntrackState":"est","conntrackAct":"dnat-172.16.0.5:8080:w0","packets":10,"bytes":1200,"ident":"0:0","servName":"web"},
        {"destinationIP":"192.0.2.7","destinationPort":40000,"sourceIP":"172.16.0.5","sourcePort":8080,"protocol":"tcp",
         "conntrackState":"est","conntrackAct":"snat-10.0.0.1:80:w0","packets":8,"bytes":64000,"ident":"0:0","servName":"web"},
        {"destinationIP":"10.0.0.1","destinationPort":80,"sourceIP":"192.0.2.8","sourcePort":40001,"protocol":"tcp",
         "conntrackState":"fini","conntrackAct":"dnat-172.16.0.6:8080:w0","packets":3,"bytes":180},
        {"destinationIP":"10.0.0.2","destinationPort":80,"sourceIP":"192.0.2.9","sourcePort":40002,"protocol":"tcp",
         "conntrackState":"est","conntrackAct":"dnat-172.16.0.7:8080:w0","packets":1,"bytes":60}
    ]}"#;

    fn key(vip: &str, port: u16) -> RuleKey {
        RuleKey { external_ip: vip.into(), port, protocol: "tcp".into(), ..RuleKey::default() }
    }

    #[test]
    fn a_listing_decodes_with_absent_zeros() {
        let entries = conntrack_list(LISTING).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[1].conntrack_act, "snat-10.0.0.1:80:w0");
        assert_eq!(entries[2].ident, "");
        assert_eq!(conntrack_list(r#"{"ctAttr":null}"#).unwrap(), vec![]);
        assert_eq!(conntrack_list(&conntrack_json(&entries).to_string()).unwrap(), entries);
    }

    #[test]
    fn bad_listings_say_what_is_wrong() {
        let e = conntrack_list(r#"{"ctAttr":[{"bytes":"many"}]}"#).unwrap_err();
        assert!(e.starts_with("not a conntrack list (invalid type: string \"many\", expected u64"), "{e}");
        assert!(conntrack_list("<html>").unwrap_err().starts_with("not a conntrack list"));
    }

    #[test]
    fn a_rules_connections_join_both_directions() {
        let entries = conntrack_list(LISTING).unwrap();
        assert_eq!(
            connections(&entries, &key("10.0.0.1", 80)),
            [
                Connection { client: "192.0.2.7:40000".into(), active: true, bytes_in: 1200, bytes_out: 64000 },
                Connection { client: "192.0.2.8:40001".into(), active: false, bytes_in: 180, bytes_out: 0 },
            ]
        );
        assert!(connections(&entries, &key("10.0.0.1", 443)).is_empty());
        assert_eq!(connections(&entries, &key("10.0.0.2", 80)).len(), 1);
    }

    /// Full NAT (LoxiLB's `fullnat` mode, the default policy's): the forward action names LoxiLB's source
    /// address and the endpoint; the reply entry goes to that source address with the client's port, and
    /// its action names the VIP and the client (`dp_ct_proto_xfk_init` in loxilb-ebpf).
    #[test]
    fn full_nat_replies_are_joined_by_the_client_their_action_names() {
        let entries = conntrack_list(
            r#"{"ctAttr":[
            {"destinationIP":"10.0.0.1","destinationPort":80,"sourceIP":"192.0.2.7","sourcePort":40000,"protocol":"tcp",
             "conntrackState":"est","conntrackAct":"fdnat-172.16.0.1,172.16.0.5:8080:w0","bytes":1200},
            {"destinationIP":"172.16.0.1","destinationPort":40000,"sourceIP":"172.16.0.5","sourcePort":8080,"protocol":"tcp",
             "conntrackState":"est","conntrackAct":"fsnat-10.0.0.1,192.0.2.7:80:w0","bytes":64000},
            {"destinationIP":"172.16.0.1","destinationPort":40001,"sourceIP":"172.16.0.5","sourcePort":8080,"protocol":"tcp",
             "conntrackState":"est","conntrackAct":"fsnat-10.0.0.1,192.0.2.7:80:w0","bytes":5}
        ]}"#,
        )
        .unwrap();
        assert_eq!(
            connections(&entries, &key("10.0.0.1", 80)),
            [Connection { client: "192.0.2.7:40000".into(), active: true, bytes_in: 1200, bytes_out: 64000 }]
        );
    }

    #[test]
    fn ipv6_reply_actions_are_read_from_the_right() {
        assert_eq!(reply_service("snat-2001:db8::10:443:w1"), Some(("2001:db8::10", 443, None)));
        assert_eq!(reply_service("hsnat-10.0.0.1:80:w0"), Some(("10.0.0.1", 80, None)));
        assert_eq!(reply_service("fsnat-2001:db8::10,2001:db8::7:443:w0"), Some(("2001:db8::10", 443, Some("2001:db8::7"))));
        assert_eq!(reply_service("dnat-10.0.0.1:80:w0"), None);
        assert_eq!(reply_service("fp|192.0.2.7:40000->10.0.0.1:80|tcp"), None);
    }
}
