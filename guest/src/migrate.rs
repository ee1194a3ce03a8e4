//! Migrating a mapping of format 1.0 (the earlier Python driver, the seed's format) to entries of this
//! policy.
//!
//! 1.0 kept ids, keys and some metadata — `external_ip`, `port`, `protocol`, and per type the attributes
//! the driver chose (a pool's `loadbalancer_id`/`listener_id`/`lb_algorithm`, a member's `pool_id`/
//! `address`/`protocol_port`/`weight`, a monitor's `pool_id`/`type`/`delay`…), either inside
//! `additional_metadata` (the seed's layout) or beside the seed's fields (the driver's). Its keys are not
//! this format's (a load balancer under its first listener's service key, `pool-<id>`, `member-<id>`, a
//! monitor under `null`): every entry is re-keyed from the tree it is placed in. An entry that cannot be
//! placed (no parent in the file, no address) is dropped and named, never silently.

use crate::state::Map;

use crate::json::{quoted, Json as Value};

use crate::keys;
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::policy_types::LegacyEntry;
use crate::state::{Change, Entry, ListenerState, Object};

/// One 1.0 entry's metadata, looked up by attribute name wherever 1.0 writers put it.
struct Old<'a> {
    id: &'a str,
    meta: &'a Value<'a>,
    key: Option<&'a str>,
}

impl<'a> Old<'a> {
    fn attr(&self, name: &str) -> Option<&'a Value<'a>> {
        let found = |v: &'a Value<'a>| v.get(name).filter(|v| !v.is_null());
        self.meta.get("additional_metadata").and_then(found).or_else(|| found(self.meta))
    }

    fn text(&self, name: &str) -> Option<String> {
        match self.attr(name)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn number(&self, name: &str) -> Option<u64> {
        match self.attr(name)? {
            n @ Value::Number(_) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.attr(name).and_then(Value::as_bool).unwrap_or(default)
    }

    fn resource_type(&self) -> String {
        self.meta.get("resource_type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase()
    }

    /// 1.0 wrote ISO strings (the seed) or epoch seconds (the driver).
    fn created_at(&self) -> String {
        match self.meta.get("created_at") {
            Some(Value::String(s)) => s.to_string(),
            Some(n @ Value::Number(_)) => crate::decide::rfc3339(n.seconds_as_millis().unwrap_or(0)),
            _ => String::new(),
        }
    }
}

/// The entries of a 1.0 mapping that can be placed, as changes; and a description of each one dropped
/// (id, type, why).
pub fn v1_0(legacy: &[LegacyEntry]) -> (Vec<Change>, Vec<String>) {
    let parsed: Vec<(&LegacyEntry, Value)> = legacy.iter().map(|e| (e, Value::parse(&e.metadata).unwrap_or(Value::Null))).collect();
    let mut by_type: Map<String, Vec<Old>> = Map::default();
    let mut dropped = Vec::new();
    // In id order, as the host hands them over (`migrate` in policy.wit).
    for (e, meta) in &parsed {
        let old = Old { id: &e.octavia_id, meta, key: e.loxilb_key.as_deref() };
        by_type.entry(old.resource_type()).or_default().push(old);
    }
    let mut take = |t: &str| by_type.remove(t).unwrap_or_default();
    let (lbs, listeners, pools, members, monitors) = (take("loadbalancer"), take("listener"), take("pool"), take("member"), take("healthmonitor"));
    let rest: Vec<Old> = by_type.into_values().flatten().collect();
    let mut placed = Vec::new();
    let mut put = |entry: Entry| placed.push(Change::Put(entry));
    // Parents first: each later type finds its parent (and the VIP) among the entries already placed.
    let mut vips: Map<String, String> = Map::default();
    for old in lbs {
        match loadbalancer(&old) {
            Ok((vip, entry)) => {
                vips.insert(old.id.to_string(), vip);
                put(entry);
            }
            Err(why) => dropped.push(format!("{} (loadbalancer): {why}", old.id)),
        }
    }
    let mut pool_of_listener: Map<String, String> = Map::default();
    let mut lb_of_listener: Map<String, String> = Map::default();
    for old in listeners {
        match listener(&old, &vips) {
            Ok(entry) => {
                if let Object::Listener(l) = entry.object() {
                    if let Some(pool) = &l.listener.default_pool_id {
                        pool_of_listener.insert(pool.clone(), old.id.to_string());
                    }
                    lb_of_listener.insert(old.id.to_string(), l.listener.loadbalancer_id.clone());
                }
                put(entry);
            }
            Err(why) => dropped.push(format!("{} (listener): {why}", old.id)),
        }
    }
    let mut pool_vips: Map<String, String> = Map::default();
    for old in pools {
        match pool(&old, &vips, &pool_of_listener, &lb_of_listener) {
            Ok((vip, entry)) => {
                pool_vips.insert(old.id.to_string(), vip);
                put(entry);
            }
            Err(why) => dropped.push(format!("{} (pool): {why}", old.id)),
        }
    }
    for old in members {
        match member(&old, &pool_vips) {
            Ok(entry) => put(entry),
            Err(why) => dropped.push(format!("{} (member): {why}", old.id)),
        }
    }
    for old in monitors {
        match monitor(&old, &pool_vips) {
            Ok(entry) => put(entry),
            Err(why) => dropped.push(format!("{} (healthmonitor): {why}", old.id)),
        }
    }
    for old in rest {
        dropped.push(format!("{} ({}): not a resource type this format maps", old.id, quoted(&old.resource_type())));
    }
    dropped.sort_unstable();
    (placed, dropped)
}

fn loadbalancer(old: &Old) -> Result<(String, Entry), String> {
    // The driver keyed a load balancer by a listener's service key; the seed by its VIP.
    let from_key = old.key.and_then(|k| keys::parse_service_key(k).map(|(ip, _, _)| ip.to_string()).or_else(|| keys::is_ip(k).then(|| k.to_string())));
    let vip = old.text("external_ip").or_else(|| old.text("vip_address")).or(from_key).ok_or("no VIP (external_ip) and no key to read it from")?;
    if !keys::is_ip(&vip) {
        return Err(format!("VIP {} is not an IP address", quoted(&vip)));
    }
    let lb = Loadbalancer {
        id: old.id.to_string(),
        project_id: old.text("project_id"),
        name: old.text("name"),
        vip_address: vip.clone(),
        additional_vips: Vec::new(),
        admin_state_up: old.flag("admin_state_up", true),
        flavor: Vec::new(),
        listeners: Vec::new(),
        pools: Vec::new(),
    };
    Ok((vip.clone(), Entry::new(keys::loadbalancer_key(&vip), vip, 0, String::new(), old.created_at(), Object::Loadbalancer(lb))))
}

fn listener(old: &Old, vips: &Map<String, String>) -> Result<Entry, String> {
    let lb_id = old.text("lb_id").or_else(|| old.text("loadbalancer_id")).ok_or("no load balancer id (lb_id)")?;
    let vip = vips.get(&lb_id).ok_or_else(|| format!("its load balancer {lb_id} is not in the file"))?;
    let (port, proto) = match old.key.and_then(keys::parse_service_key) {
        Some((_, port, proto)) => (port, proto.to_string()),
        None => (
            old.number("port").or_else(|| old.number("protocol_port")).and_then(|p| u16::try_from(p).ok()).ok_or("no port")?,
            old.text("protocol").unwrap_or_else(|| "tcp".into()).to_ascii_lowercase(),
        ),
    };
    let listener = Listener {
        id: old.id.to_string(),
        loadbalancer_id: lb_id,
        protocol: proto.to_ascii_uppercase(),
        protocol_port: port,
        default_pool_id: old.text("pool_id").or_else(|| old.text("default_pool_id")),
        admin_state_up: old.flag("admin_state_up", true),
        connection_limit: None,
        timeout_client_data: None,
        timeout_member_connect: None,
        timeout_member_data: None,
        allowed_cidrs: Vec::new(),
        insert_headers: Vec::new(),
        default_tls_container_ref: None,
        sni_container_refs: Vec::new(),
        client_authentication: None,
        l7policies: Vec::new(),
    };
    let key = keys::service_key(vip, port, &proto);
    Ok(Entry::new(key, vip.clone(), port, proto, old.created_at(), Object::Listener(ListenerState { listener, programmed: None })))
}

fn pool(
    old: &Old,
    vips: &Map<String, String>,
    pool_of_listener: &Map<String, String>,
    lb_of_listener: &Map<String, String>,
) -> Result<(String, Entry), String> {
    let listener_id = old.text("listener_id").or_else(|| pool_of_listener.get(old.id).cloned());
    let listener_lb = listener_id.as_deref().and_then(|l| lb_of_listener.get(l).cloned());
    let lb_id = old
        .text("loadbalancer_id")
        .or_else(|| old.text("lb_id"))
        .or(listener_lb)
        .ok_or("no load balancer id (loadbalancer_id) and no listener in the file that uses it")?;
    let vip = vips.get(&lb_id).ok_or_else(|| format!("its load balancer {lb_id} is not in the file"))?.clone();
    let protocol = old.text("protocol").unwrap_or_else(|| "TCP".into()).to_ascii_uppercase();
    let pool = Pool {
        id: old.id.to_string(),
        loadbalancer_id: lb_id,
        listener_id,
        protocol: protocol.clone(),
        lb_algorithm: old.text("lb_algorithm").unwrap_or_else(|| "ROUND_ROBIN".into()),
        session_persistence: None,
        tls_enabled: false,
        admin_state_up: old.flag("admin_state_up", true),
        members: Vec::new(),
        healthmonitor: None,
    };
    let entry = Entry::new(keys::pool_key(&vip, old.id), vip.clone(), 0, protocol.to_ascii_lowercase(), old.created_at(), Object::Pool(pool));
    Ok((vip, entry))
}

fn member(old: &Old, pool_vips: &Map<String, String>) -> Result<Entry, String> {
    let pool_id = old.text("pool_id").ok_or("no pool id (pool_id)")?;
    let vip = pool_vips.get(&pool_id).ok_or_else(|| format!("its pool {pool_id} is not in the file"))?;
    let address = old.text("address").or_else(|| old.text("ip_address")).ok_or("no address")?;
    if !keys::is_ip(&address) {
        return Err(format!("address {} is not an IP address", quoted(&address)));
    }
    let port = old.number("protocol_port").or_else(|| old.number("port")).and_then(|p| u16::try_from(p).ok()).ok_or("no port (protocol_port)")?;
    let member = Member {
        id: old.id.to_string(),
        pool_id: pool_id.clone(),
        address: address.clone(),
        protocol_port: port,
        weight: old.number("weight").map_or(1, |w| w.min(256) as u32),
        admin_state_up: old.flag("admin_state_up", true),
        backup: old.flag("backup", false),
        monitor_address: old.text("monitor_address"),
        monitor_port: old.number("monitor_port").and_then(|p| u16::try_from(p).ok()),
    };
    Ok(Entry::new(keys::member_key(vip, &pool_id, &address, port), vip.clone(), port, String::new(), old.created_at(), Object::Member(member)))
}

fn monitor(old: &Old, pool_vips: &Map<String, String>) -> Result<Entry, String> {
    let pool_id = old.text("pool_id").ok_or("no pool id (pool_id)")?;
    let vip = pool_vips.get(&pool_id).ok_or_else(|| format!("its pool {pool_id} is not in the file"))?;
    let seconds = |name: &str, default: u32| old.number(name).map_or(default, |n| n.min(u32::MAX as u64) as u32);
    let monitor = HealthMonitor {
        id: old.id.to_string(),
        pool_id: pool_id.clone(),
        kind: old.text("type").or_else(|| old.text("kind")).ok_or("no monitor type")?.to_ascii_uppercase(),
        delay: seconds("delay", 5),
        timeout: seconds("timeout", 5),
        max_retries: seconds("max_retries", 3),
        max_retries_down: seconds("max_retries_down", 3),
        http_method: old.text("http_method"),
        url_path: old.text("url_path"),
        expected_codes: old.text("expected_codes"),
        http_version: None,
        domain_name: None,
        admin_state_up: old.flag("admin_state_up", true),
    };
    Ok(Entry::new(keys::monitor_key(vip, &pool_id), vip.clone(), 0, String::new(), old.created_at(), Object::Healthmonitor(monitor)))
}
