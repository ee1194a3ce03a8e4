//! LoxiLB's wire as the host speaks it: a plan's typed calls as HTTP and JSON, LoxiLB's error contract,
//! and its rule list read back as typed rules.

use serde_json::Value;

use crate::caps::loxilb::LoxiTransport;
use crate::runtime::bindings::loxilb_types::{Endpoint, EndpointProbe, LbRule, LoxilbCall, ObservedEndpoint, ObservedRule, RuleKey, ServiceArgs};

/// LoxiLB's JSON for a rule (field names exactly as its API expects).
pub fn rule_json(rule: &LbRule) -> serde_json::Value {
    let s = &rule.service;
    let mut service = serde_json::json!({
        "externalIP": s.external_ip, "port": s.port, "protocol": s.protocol, "sel": s.sel, "mode": s.mode,
        "security": s.security, "bgp": s.bgp, "monitor": s.monitor, "inactiveTimeOut": s.inactive_timeout,
        "block": s.block, "name": s.name, "oper": 0,
    });
    let extra = service.as_object_mut().expect("object");
    if !s.probetype.is_empty() {
        extra.insert("probetype".into(), s.probetype.clone().into());
        extra.insert("probeport".into(), s.probeport.into());
    }
    if !s.probereq.is_empty() {
        extra.insert("probereq".into(), s.probereq.clone().into());
    }
    if !s.proberesp.is_empty() {
        extra.insert("proberesp".into(), s.proberesp.clone().into());
    }
    if s.monitor {
        extra.insert("probeTimeout".into(), s.probe_timeout.into());
        extra.insert("probeRetries".into(), s.probe_retries.into());
    }
    if s.proxyprotocolv2 {
        extra.insert("proxyprotocolv2".into(), true.into());
    }
    if !s.host.is_empty() {
        extra.insert("host".into(), s.host.clone().into());
    }
    let mut body = serde_json::json!({
        "serviceArguments": service,
        "endpoints": rule.endpoints.iter().map(|e| serde_json::json!({"endpointIP": e.ip, "targetPort": e.target_port, "weight": e.weight})).collect::<Vec<_>>(),
    });
    let obj = body.as_object_mut().expect("object");
    if !rule.allowed_sources.is_empty() {
        obj.insert("allowedSources".into(), rule.allowed_sources.iter().map(|p| serde_json::json!({"prefix": p})).collect());
    }
    if !rule.secondary_ips.is_empty() {
        obj.insert("secondaryIPs".into(), rule.secondary_ips.iter().map(|ip| serde_json::json!({"secondaryIP": ip})).collect());
    }
    body
}

pub fn probe_json(probe: &EndpointProbe) -> serde_json::Value {
    serde_json::json!({
        "hostName": probe.host_name, "name": probe.name, "probeType": probe.probe_type, "probePort": probe.probe_port,
        "probeReq": probe.probe_req, "probeResp": probe.probe_resp, "probeDuration": probe.probe_duration,
        "inactiveReTries": probe.inactive_retries,
    })
}

pub fn delete_rule_path(key: &RuleKey) -> String {
    let host = if key.host.is_empty() { String::new() } else { format!("/hosturl/{}", key.host) };
    format!("/config/loadbalancer{host}/externalipaddress/{}/port/{}/protocol/{}?block={}", key.external_ip, key.port, key.protocol, key.block)
}

/// LoxiLB's `result` text, present in both its old (200 + result) and new (coded) error styles.
fn result_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("result").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Carries out one call with LoxiLB's real contract: success is HTTP 200 *and* `result == "Success"`
/// (LoxiLB ≤ 0.9.8.4 answers errors with 200); an unchanged re-POST ("lbrule-exists") is a no-op; a
/// missing rule or endpoint on delete is already deleted.
pub fn call(loxi: &dyn LoxiTransport, call: &LoxilbCall) -> Result<(), String> {
    let (method, path, body, missing_ok, exists_ok) = match call {
        LoxilbCall::UpsertRule(rule) => ("POST", "/config/loadbalancer".to_string(), Some(rule_json(rule).to_string()), false, true),
        LoxilbCall::DeleteRule(key) => ("DELETE", delete_rule_path(key), None, true, false),
        LoxilbCall::UpsertProbe(p) => ("POST", "/config/endpoint".to_string(), Some(probe_json(p).to_string()), false, false),
        LoxilbCall::DeleteProbe(p) => (
            "DELETE",
            format!("/config/endpoint/epipaddress/{}?name={}&probe_type={}&probe_port={}", p.host_name, p.name, p.probe_type, p.probe_port),
            None,
            true,
            false,
        ),
    };
    let (status, body) = loxi.request(method, &path, body.as_deref()).map_err(|e| format!("{method} {path}: {e}"))?;
    let result = result_text(&body);
    if status == 200 && result == "Success" {
        return Ok(());
    }
    let lower = result.to_ascii_lowercase();
    if exists_ok && lower.contains("lbrule-exists") {
        return Ok(());
    }
    if missing_ok && (status == 404 || lower.contains("no-rule") || lower.contains("not-exists") || lower.contains("notfound")) {
        return Ok(());
    }
    Err(format!("{method} {path}: HTTP {status}: {result}"))
}

/// LoxiLB's rule list (`GET /config/loadbalancer/all`, key `lbAttr`).
pub fn list_rules(loxi: &dyn LoxiTransport) -> Result<Vec<Value>, String> {
    let (status, body) = loxi.request("GET", "/config/loadbalancer/all", None).map_err(|e| format!("GET /config/loadbalancer/all: {e}"))?;
    if status != 200 {
        return Err(format!("GET /config/loadbalancer/all: HTTP {status}: {body}"));
    }
    let body: Value = serde_json::from_str(&body).map_err(|e| format!("rule list is not JSON: {e}"))?;
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
pub fn matches(want: &LbRule, got: &LbRule) -> bool {
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

pub fn key_id(k: &RuleKey) -> String {
    format!("{}|{}|{}|{}|{}", k.external_ip, k.port, k.protocol, k.block, k.host)
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// The rules LoxiLB holds, with their endpoints' states and counters.
pub fn observed(loxi: &dyn LoxiTransport) -> Result<Vec<ObservedRule>, String> {
    Ok(list_rules(loxi)?
        .iter()
        .filter_map(|raw| {
            let rule = observed_rule(raw)?;
            let endpoints = raw
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| {
                    let counter = e.get("counter").and_then(Value::as_str).unwrap_or("0:0");
                    let (packets, bytes) = counter.split_once(':').unwrap_or(("0", "0"));
                    ObservedEndpoint {
                        ip: str_field(e, "endpointIP").to_string(),
                        target_port: num_field(e, "targetPort") as u16,
                        weight: num_field(e, "weight") as u8,
                        state: e.get("state").and_then(Value::as_str).unwrap_or("active").to_string(),
                        packets: packets.parse().unwrap_or(0),
                        bytes: bytes.parse().unwrap_or(0),
                    }
                })
                .collect();
            Some(ObservedRule { rule, endpoints })
        })
        .collect())
}

pub fn rule_key(rule: &LbRule) -> RuleKey {
    RuleKey {
        external_ip: rule.service.external_ip.clone(),
        port: rule.service.port,
        protocol: rule.service.protocol.clone(),
        block: rule.service.block,
        host: rule.service.host.clone(),
    }
}

/// LoxiLB's full-proxy mode: a rule cannot be switched into or out of it in place.
pub const MODE_FULLPROXY: u8 = 4;
