//! octavia-lib's `to_dict(recurse=True)` JSON → the policy's typed WIT records.
//!
//! Updates arrive as (old, new) where `new` holds only the fields the user changed (absent = unchanged,
//! `null` = cleared): the two are overlaid here so the policy always gets whole objects. A listener's
//! nested `default_pool` is flattened into the load balancer's pool list.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

use crate::runtime::bindings::octavia::{
    Action, HealthMonitor, L7policy, L7rule, Listener, Loadbalancer, LoadbalancerAction, Member, MemberBatch, Operation, Pool, SessionPersistence,
};

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| anyhow!("{what} is not a JSON object"))
}

fn id(m: &Map<String, Value>, key: &str, what: &str) -> Result<String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => bail!("{what} has no {key}"),
    }
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

fn string(m: &Map<String, Value>, key: &str, what: &str) -> Result<String> {
    opt_str(m, key).ok_or_else(|| anyhow!("{what} has no {key}"))
}

fn boolean(m: &Map<String, Value>, key: &str, default: bool) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn opt_u32(m: &Map<String, Value>, key: &str, what: &str) -> Result<Option<u32>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| anyhow!("{what}: {key} {v} is not a non-negative integer")),
    }
}

fn u32_or(m: &Map<String, Value>, key: &str, default: u32, what: &str) -> Result<u32> {
    Ok(opt_u32(m, key, what)?.unwrap_or(default))
}

fn port(m: &Map<String, Value>, key: &str, what: &str) -> Result<u16> {
    let n = opt_u32(m, key, what)?.ok_or_else(|| anyhow!("{what} has no {key}"))?;
    u16::try_from(n).map_err(|_| anyhow!("{what}: {key} {n} is not a port"))
}

fn list<'a>(m: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    m.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn strings(m: &Map<String, Value>, key: &str) -> Vec<String> {
    list(m, key).filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// `new` overlaid on `old`: keys present in `new` win, including explicit nulls.
pub fn merge(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = o.clone();
            for (k, v) in n {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

pub fn member(v: &Value, pool_id: Option<&str>) -> Result<Member> {
    let m = obj(v, "member")?;
    let what = "member";
    Ok(Member {
        id: id(m, "member_id", what)?,
        pool_id: opt_str(m, "pool_id").or(pool_id.map(str::to_string)).ok_or_else(|| anyhow!("member has no pool_id"))?,
        address: string(m, "address", what)?,
        protocol_port: port(m, "protocol_port", what)?,
        weight: u32_or(m, "weight", 1, what)?,
        admin_state_up: boolean(m, "admin_state_up", true),
        backup: boolean(m, "backup", false),
        monitor_address: opt_str(m, "monitor_address"),
        monitor_port: opt_u32(m, "monitor_port", what)?.map(|p| p as u16),
    })
}

pub fn health_monitor(v: &Value, pool_id: Option<&str>) -> Result<HealthMonitor> {
    let m = obj(v, "health monitor")?;
    let what = "health monitor";
    Ok(HealthMonitor {
        id: id(m, "healthmonitor_id", what)?,
        pool_id: opt_str(m, "pool_id").or(pool_id.map(str::to_string)).ok_or_else(|| anyhow!("health monitor has no pool_id"))?,
        kind: string(m, "type", what)?,
        delay: u32_or(m, "delay", 5, what)?,
        timeout: u32_or(m, "timeout", 5, what)?,
        max_retries: u32_or(m, "max_retries", 3, what)?,
        max_retries_down: u32_or(m, "max_retries_down", 3, what)?,
        http_method: opt_str(m, "http_method"),
        url_path: opt_str(m, "url_path"),
        expected_codes: opt_str(m, "expected_codes"),
        http_version: m.get("http_version").filter(|v| !v.is_null()).map(|v| v.to_string().trim_matches('"').to_string()),
        domain_name: opt_str(m, "domain_name"),
        admin_state_up: boolean(m, "admin_state_up", true),
    })
}

pub fn pool(v: &Value, listener_id: Option<&str>) -> Result<Pool> {
    let m = obj(v, "pool")?;
    let what = "pool";
    let pool_id = id(m, "pool_id", what)?;
    let session_persistence = match m.get("session_persistence") {
        Some(Value::Object(sp)) => Some(SessionPersistence {
            kind: string(sp, "type", "session_persistence")?,
            cookie_name: opt_str(sp, "cookie_name"),
            persistence_timeout: opt_u32(sp, "persistence_timeout", "session_persistence")?,
            persistence_granularity: opt_str(sp, "persistence_granularity"),
        }),
        _ => None,
    };
    Ok(Pool {
        loadbalancer_id: opt_str(m, "loadbalancer_id").unwrap_or_default(),
        listener_id: opt_str(m, "listener_id").or(listener_id.map(str::to_string)),
        protocol: string(m, "protocol", what)?,
        lb_algorithm: opt_str(m, "lb_algorithm").unwrap_or_else(|| "ROUND_ROBIN".into()),
        session_persistence,
        tls_enabled: boolean(m, "tls_enabled", false),
        admin_state_up: boolean(m, "admin_state_up", true),
        members: list(m, "members").map(|v| member(v, Some(&pool_id))).collect::<Result<_>>()?,
        healthmonitor: match m.get("healthmonitor") {
            Some(v @ Value::Object(_)) => Some(health_monitor(v, Some(&pool_id))?),
            _ => None,
        },
        id: pool_id,
    })
}

pub fn l7rule(v: &Value) -> Result<L7rule> {
    let m = obj(v, "L7 rule")?;
    let what = "L7 rule";
    Ok(L7rule {
        id: id(m, "l7rule_id", what)?,
        l7policy_id: opt_str(m, "l7policy_id").unwrap_or_default(),
        kind: opt_str(m, "type").unwrap_or_default(),
        compare_type: opt_str(m, "compare_type").unwrap_or_default(),
        key: opt_str(m, "key"),
        value: opt_str(m, "value").unwrap_or_default(),
        invert: boolean(m, "invert", false),
        admin_state_up: boolean(m, "admin_state_up", true),
    })
}

pub fn l7policy(v: &Value) -> Result<L7policy> {
    let m = obj(v, "L7 policy")?;
    let what = "L7 policy";
    Ok(L7policy {
        id: id(m, "l7policy_id", what)?,
        listener_id: opt_str(m, "listener_id").unwrap_or_default(),
        action: opt_str(m, "action").unwrap_or_default(),
        position: opt_u32(m, "position", what)?,
        redirect_pool_id: opt_str(m, "redirect_pool_id"),
        redirect_url: opt_str(m, "redirect_url"),
        redirect_prefix: opt_str(m, "redirect_prefix"),
        admin_state_up: boolean(m, "admin_state_up", true),
        rules: list(m, "rules").map(l7rule).collect::<Result<_>>()?,
    })
}

pub fn listener(v: &Value) -> Result<Listener> {
    let m = obj(v, "listener")?;
    let what = "listener";
    let insert_headers = match m.get("insert_headers") {
        Some(Value::Object(h)) => h.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect(),
        _ => Vec::new(),
    };
    Ok(Listener {
        id: id(m, "listener_id", what)?,
        loadbalancer_id: opt_str(m, "loadbalancer_id").unwrap_or_default(),
        protocol: string(m, "protocol", what)?,
        protocol_port: port(m, "protocol_port", what)?,
        default_pool_id: opt_str(m, "default_pool_id")
            .or_else(|| m.get("default_pool").and_then(|p| p.get("pool_id")).and_then(Value::as_str).map(str::to_string)),
        admin_state_up: boolean(m, "admin_state_up", true),
        connection_limit: match m.get("connection_limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| anyhow!("listener: connection_limit {v} is not an integer"))?),
        },
        timeout_client_data: opt_u32(m, "timeout_client_data", what)?,
        timeout_member_connect: opt_u32(m, "timeout_member_connect", what)?,
        timeout_member_data: opt_u32(m, "timeout_member_data", what)?,
        allowed_cidrs: strings(m, "allowed_cidrs"),
        insert_headers,
        default_tls_container_ref: opt_str(m, "default_tls_container_ref"),
        sni_container_refs: strings(m, "sni_container_refs"),
        client_authentication: opt_str(m, "client_authentication"),
        l7policies: list(m, "l7policies").map(l7policy).collect::<Result<_>>()?,
    })
}

pub fn loadbalancer(v: &Value) -> Result<Loadbalancer> {
    let m = obj(v, "load balancer")?;
    let what = "load balancer";
    let lb_id = id(m, "loadbalancer_id", what)?;
    let vip = opt_str(m, "vip_address").or_else(|| m.get("vip").and_then(|v| v.get("vip_address")).and_then(Value::as_str).map(str::to_string));
    let mut listeners = Vec::new();
    let mut pools: Vec<Pool> = Vec::new();
    for p in list(m, "pools") {
        let mut p = pool(p, None)?;
        if p.loadbalancer_id.is_empty() {
            p.loadbalancer_id = lb_id.clone();
        }
        pools.push(p);
    }
    for l in list(m, "listeners") {
        let mut listener = listener(l)?;
        if listener.loadbalancer_id.is_empty() {
            listener.loadbalancer_id = lb_id.clone();
        }
        if let Some(nested @ Value::Object(_)) = l.get("default_pool") {
            let mut p = pool(nested, Some(&listener.id))?;
            if p.loadbalancer_id.is_empty() {
                p.loadbalancer_id = lb_id.clone();
            }
            match pools.iter_mut().find(|known| known.id == p.id) {
                Some(known) => {
                    known.listener_id.get_or_insert(listener.id.clone());
                    if known.members.is_empty() {
                        known.members = p.members;
                    }
                    if known.healthmonitor.is_none() {
                        known.healthmonitor = p.healthmonitor;
                    }
                }
                None => pools.push(p),
            }
        }
        listeners.push(listener);
    }
    let flavor = match m.get("flavor") {
        Some(Value::Object(f)) => f.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect(),
        _ => Vec::new(),
    };
    Ok(Loadbalancer {
        project_id: opt_str(m, "project_id"),
        name: opt_str(m, "name"),
        vip_address: vip.ok_or_else(|| anyhow!("load balancer {lb_id} has no vip_address"))?,
        additional_vips: list(m, "additional_vips").filter_map(|v| v.get("ip_address").and_then(Value::as_str).map(str::to_string)).collect(),
        admin_state_up: boolean(m, "admin_state_up", true),
        flavor,
        listeners,
        pools,
        id: lb_id,
    })
}

fn arg<'a>(args: &'a Value, key: &str, method: &str) -> Result<&'a Value> {
    args.get(key).filter(|v| !v.is_null()).ok_or_else(|| anyhow!("{method}: argument {key} is missing"))
}

fn updated(args: &Value, name: &str, method: &str) -> Result<Value> {
    Ok(merge(arg(args, &format!("old_{name}"), method)?, arg(args, &format!("new_{name}"), method)?))
}

/// The error `operation` fails with for a method name it does not know (the provider maps it onto
/// octavia-lib's `NotImplementedError`, where bad arguments are a `DriverError`).
#[derive(Debug)]
pub struct UnknownMethod(pub String);

impl std::fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown provider method {:?}", self.0)
    }
}

impl std::error::Error for UnknownMethod {}

/// A provider method and its arguments as the operation the policy handles.
pub fn operation(method: &str, args: &Value) -> Result<Operation> {
    let m = method;
    Ok(match method {
        "loadbalancer_create" => Operation::Loadbalancer((LoadbalancerAction::Create, loadbalancer(arg(args, "loadbalancer", m)?)?)),
        "loadbalancer_update" => Operation::Loadbalancer((LoadbalancerAction::Update, loadbalancer(&updated(args, "loadbalancer", m)?)?)),
        "loadbalancer_delete" => {
            let cascade = args.get("cascade").and_then(Value::as_bool).unwrap_or(false);
            let action = if cascade { LoadbalancerAction::DeleteCascade } else { LoadbalancerAction::Delete };
            Operation::Loadbalancer((action, loadbalancer(arg(args, "loadbalancer", m)?)?))
        }
        "loadbalancer_failover" | "loadbalancer_failover_with_flavor" => Operation::LoadbalancerFailover(
            arg(args, "loadbalancer_id", m)?.as_str().ok_or_else(|| anyhow!("{m}: loadbalancer_id is not a string"))?.to_string(),
        ),
        "loadbalancer_sync" => Operation::Loadbalancer((LoadbalancerAction::Sync, loadbalancer(arg(args, "loadbalancer", m)?)?)),
        "listener_create" => Operation::Listener((Action::Create, listener(arg(args, "listener", m)?)?)),
        "listener_update" => Operation::Listener((Action::Update, listener(&updated(args, "listener", m)?)?)),
        "listener_delete" => Operation::Listener((Action::Delete, listener(arg(args, "listener", m)?)?)),
        "pool_create" => Operation::Pool((Action::Create, pool(arg(args, "pool", m)?, None)?)),
        "pool_update" => Operation::Pool((Action::Update, pool(&updated(args, "pool", m)?, None)?)),
        "pool_delete" => Operation::Pool((Action::Delete, pool(arg(args, "pool", m)?, None)?)),
        "member_create" => Operation::Member((Action::Create, member(arg(args, "member", m)?, None)?)),
        "member_update" => Operation::Member((Action::Update, member(&updated(args, "member", m)?, None)?)),
        "member_delete" => Operation::Member((Action::Delete, member(arg(args, "member", m)?, None)?)),
        "member_batch_update" => {
            let pool_id = arg(args, "pool_id", m)?.as_str().ok_or_else(|| anyhow!("{m}: pool_id is not a string"))?.to_string();
            let members = arg(args, "members", m)?.as_array().ok_or_else(|| anyhow!("{m}: members is not a list"))?;
            Operation::MemberBatchUpdate(MemberBatch { members: members.iter().map(|v| member(v, Some(&pool_id))).collect::<Result<_>>()?, pool_id })
        }
        "health_monitor_create" => Operation::HealthMonitor((Action::Create, health_monitor(arg(args, "healthmonitor", m)?, None)?)),
        "health_monitor_update" => Operation::HealthMonitor((Action::Update, health_monitor(&updated(args, "healthmonitor", m)?, None)?)),
        "health_monitor_delete" => Operation::HealthMonitor((Action::Delete, health_monitor(arg(args, "healthmonitor", m)?, None)?)),
        "l7policy_create" => Operation::L7policy((Action::Create, l7policy(arg(args, "l7policy", m)?)?)),
        "l7policy_update" => Operation::L7policy((Action::Update, l7policy(&updated(args, "l7policy", m)?)?)),
        "l7policy_delete" => Operation::L7policy((Action::Delete, l7policy(arg(args, "l7policy", m)?)?)),
        "l7rule_create" => Operation::L7rule((Action::Create, l7rule(arg(args, "l7rule", m)?)?)),
        "l7rule_update" => Operation::L7rule((Action::Update, l7rule(&updated(args, "l7rule", m)?)?)),
        "l7rule_delete" => Operation::L7rule((Action::Delete, l7rule(arg(args, "l7rule", m)?)?)),
        other => return Err(UnknownMethod(other.to_string()).into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_overlays_changed_fields_and_keeps_unset_ones() {
        let args = json!({
            "old_member": {"member_id": "m1", "pool_id": "p1", "address": "10.0.0.5", "protocol_port": 80, "weight": 5, "admin_state_up": true},
            "new_member": {"member_id": "m1", "weight": 7, "monitor_address": null}
        });
        let Operation::Member((Action::Update, m)) = operation("member_update", &args).unwrap() else { panic!() };
        assert_eq!((m.weight, m.address.as_str(), m.protocol_port, m.monitor_address), (7, "10.0.0.5", 80, None));
    }

    #[test]
    fn nested_default_pools_are_flattened_into_the_lb() {
        let lb = json!({"loadbalancer_id": "lb1", "vip_address": "10.0.0.10", "listeners": [
            {"listener_id": "l1", "protocol": "TCP", "protocol_port": 80, "default_pool": {
                "pool_id": "p1", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                "members": [{"member_id": "m1", "address": "10.0.1.1", "protocol_port": 8080}],
                "healthmonitor": {"healthmonitor_id": "h1", "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 2, "max_retries_down": 3}}}]});
        let lb = loadbalancer(&lb).unwrap();
        assert_eq!(lb.pools.len(), 1);
        assert_eq!(lb.pools[0].listener_id.as_deref(), Some("l1"));
        assert_eq!(lb.pools[0].loadbalancer_id, "lb1");
        assert_eq!(lb.pools[0].members[0].pool_id, "p1");
        assert_eq!(lb.listeners[0].default_pool_id.as_deref(), Some("p1"));
        assert_eq!(lb.listeners[0].loadbalancer_id, "lb1");
    }

    #[test]
    fn bad_input_is_named() {
        let err = operation("member_create", &json!({"member": {"member_id": "m", "address": "1.1.1.1", "protocol_port": 70000, "pool_id": "p"}})).unwrap_err();
        assert!(err.to_string().contains("protocol_port"), "{err}");
        assert!(operation("frobnicate", &json!({})).unwrap_err().to_string().contains("frobnicate"));
    }
}
