//! Requests as LoxiLB's REST API takes them: JSON bodies with its exact field names, and DELETE paths.
//!
//! The simulator validates bodies strictly against LoxiLB's swagger (misspelt keys are reported), and
//! LoxiLB reads what it does not find as zero: a field is only sent when it means something.

use serde_json::{json, Value};

use crate::types::{EndpointProbe, LbRule, LoxilbCall, RuleKey};

/// LoxiLB's REST base path; every path of this crate is relative to it.
pub const BASE_PATH: &str = "/netlox/v1";
pub const RULES_PATH: &str = "/config/loadbalancer";
pub const RULE_LIST_PATH: &str = "/config/loadbalancer/all";
pub const PROBES_PATH: &str = "/config/endpoint";
/// Answered without authentication, and cheap: the liveness check.
pub const VERSION_PATH: &str = "/version";

/// LoxiLB's JSON for a rule (a `LoadbalanceEntry`).
pub fn rule_json(rule: &LbRule) -> Value {
    let s = &rule.service;
    let mut service = json!({
        "externalIP": s.external_ip, "port": s.port, "protocol": s.protocol, "sel": s.sel, "mode": s.mode,
        "security": s.security, "bgp": s.bgp, "monitor": s.monitor, "inactiveTimeOut": s.inactive_timeout,
        "block": s.block, "name": s.name, "oper": 0,
    });
    let extra = service.as_object_mut().expect("object");
    // LoxiLB refuses a probe port without a probe type.
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
    // Refused on anything but tcp, even when false.
    if s.proxyprotocolv2 {
        extra.insert("proxyprotocolv2".into(), true.into());
    }
    if !s.host.is_empty() {
        extra.insert("host".into(), s.host.clone().into());
    }
    let mut body = json!({
        "serviceArguments": service,
        "endpoints": rule.endpoints.iter().map(|e| json!({"endpointIP": e.ip, "targetPort": e.target_port, "weight": e.weight})).collect::<Vec<_>>(),
    });
    let obj = body.as_object_mut().expect("object");
    if !rule.allowed_sources.is_empty() {
        obj.insert("allowedSources".into(), rule.allowed_sources.iter().map(|p| json!({"prefix": p})).collect());
    }
    // Refused on anything but sctp, even when empty.
    if !rule.secondary_ips.is_empty() {
        obj.insert("secondaryIPs".into(), rule.secondary_ips.iter().map(|ip| json!({"secondaryIP": ip})).collect());
    }
    body
}

/// LoxiLB's JSON for an endpoint probe (an `EndPoint`).
pub fn probe_json(probe: &EndpointProbe) -> Value {
    json!({
        "hostName": probe.host_name, "name": probe.name, "probeType": probe.probe_type, "probePort": probe.probe_port,
        "probeReq": probe.probe_req, "probeResp": probe.probe_resp, "probeDuration": probe.probe_duration,
        "inactiveReTries": probe.inactive_retries,
    })
}

/// The DELETE path of a rule. An IPv6 VIP goes into its segment bare, as loxicmd sends it; `block` must
/// match the rule's, so it is always sent; a rule with a host is only found under `/hosturl/`. A rule made
/// with `bgp` is deleted with `bgp=true` (LoxiLB then withdraws the VIP's route, counting it down); the
/// others without, so that no other rule's advertisement is counted down.
pub fn delete_rule_path(key: &RuleKey) -> String {
    let host = if key.host.is_empty() { String::new() } else { format!("/hosturl/{}", key.host) };
    let bgp = if key.bgp { "&bgp=true" } else { "" };
    format!("{RULES_PATH}{host}/externalipaddress/{}/port/{}/protocol/{}?block={}{bgp}", key.external_ip, key.port, key.protocol, key.block)
}

/// The DELETE path of an endpoint probe: LoxiLB finds it by `name` when given, else by type and port.
pub fn delete_probe_path(p: &EndpointProbe) -> String {
    format!("{PROBES_PATH}/epipaddress/{}?name={}&probe_type={}&probe_port={}", p.host_name, p.name, p.probe_type, p.probe_port)
}

/// What a request means for LoxiLB's answer (see [`crate::outcome::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A GET: only the HTTP status says whether it worked.
    Read,
    /// A POST of a rule: an unchanged re-POST is refused as `lbrule-exists`, which means done.
    UpsertRule,
    /// A POST of a probe (LoxiLB overwrites an existing one).
    UpsertProbe,
    /// A DELETE: what is not there is deleted.
    Delete,
}

/// One HTTP request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    /// Relative to [`BASE_PATH`], with its query.
    pub path: String,
    pub body: Option<String>,
    pub intent: Intent,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request { method: "GET", path: path.to_string(), body: None, intent: Intent::Read }
    }

    /// "METHOD path", for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// The request carrying out `call`.
pub fn request(call: &LoxilbCall) -> Request {
    match call {
        LoxilbCall::UpsertRule(rule) => {
            Request { method: "POST", path: RULES_PATH.into(), body: Some(rule_json(rule).to_string()), intent: Intent::UpsertRule }
        }
        LoxilbCall::DeleteRule(key) => Request { method: "DELETE", path: delete_rule_path(key), body: None, intent: Intent::Delete },
        LoxilbCall::UpsertProbe(p) => Request { method: "POST", path: PROBES_PATH.into(), body: Some(probe_json(p).to_string()), intent: Intent::UpsertProbe },
        LoxilbCall::DeleteProbe(p) => Request { method: "DELETE", path: delete_probe_path(p), body: None, intent: Intent::Delete },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Endpoint, ServiceArgs};

    fn rule() -> LbRule {
        LbRule {
            service: ServiceArgs {
                external_ip: "10.0.0.10".into(),
                port: 80,
                protocol: "tcp".into(),
                sel: 2,
                mode: 2,
                monitor: true,
                inactive_timeout: 30,
                name: "octavia_lb-a_listener-b_pool-c".into(),
                probetype: "tcp".into(),
                probeport: 8080,
                probe_timeout: 5,
                probe_retries: 3,
                ..ServiceArgs::default()
            },
            endpoints: vec![Endpoint { ip: "10.0.1.1".into(), target_port: 8080, weight: 60 }],
            allowed_sources: vec!["192.0.2.0/24".into()],
            secondary_ips: Vec::new(),
        }
    }

    #[test]
    fn a_rule_is_sent_with_loxilbs_field_names_and_only_what_means_something() {
        assert_eq!(
            rule_json(&rule()).to_string(),
            concat!(
                r#"{"allowedSources":[{"prefix":"192.0.2.0/24"}],"endpoints":[{"endpointIP":"10.0.1.1","targetPort":8080,"weight":60}],"#,
                r#""serviceArguments":{"bgp":false,"block":0,"externalIP":"10.0.0.10","inactiveTimeOut":30,"mode":2,"monitor":true,"#,
                r#""name":"octavia_lb-a_listener-b_pool-c","oper":0,"port":80,"probeRetries":3,"probeTimeout":5,"probeport":8080,"#,
                r#""probetype":"tcp","protocol":"tcp","security":0,"sel":2}}"#
            )
        );
        let mut plain = rule();
        plain.service = ServiceArgs { external_ip: "10.0.0.10".into(), port: 80, protocol: "tcp".into(), ..ServiceArgs::default() };
        plain.allowed_sources.clear();
        let text = rule_json(&plain).to_string();
        for absent in ["probe", "allowedSources", "secondaryIPs", "proxyprotocolv2", "host"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        plain.service.proxyprotocolv2 = true;
        plain.service.host = "example.org/api".into();
        plain.secondary_ips = vec!["10.0.0.11".into()];
        let v = rule_json(&plain);
        assert_eq!((v["serviceArguments"]["proxyprotocolv2"].as_bool(), v["serviceArguments"]["host"].as_str()), (Some(true), Some("example.org/api")));
        assert_eq!(v["secondaryIPs"], json!([{"secondaryIP": "10.0.0.11"}]));
    }

    #[test]
    fn a_probe_is_sent_with_loxilbs_field_names() {
        let p = EndpointProbe {
            host_name: "10.0.1.1".into(),
            name: "10.0.1.1_tcp_8080".into(),
            probe_type: "http".into(),
            probe_port: 8080,
            probe_req: "healthz".into(),
            probe_resp: String::new(),
            probe_duration: 10,
            inactive_retries: 3,
        };
        assert_eq!(
            probe_json(&p).to_string(),
            r#"{"hostName":"10.0.1.1","inactiveReTries":3,"name":"10.0.1.1_tcp_8080","probeDuration":10,"probePort":8080,"probeReq":"healthz","probeResp":"","probeType":"http"}"#
        );
        assert_eq!(delete_probe_path(&p), "/config/endpoint/epipaddress/10.0.1.1?name=10.0.1.1_tcp_8080&probe_type=http&probe_port=8080");
    }

    #[test]
    fn delete_paths_carry_ipv6_bare_block_and_hosturl() {
        let mut key = RuleKey { external_ip: "2001:db8::1".into(), port: 80, protocol: "tcp".into(), ..RuleKey::default() };
        assert_eq!(delete_rule_path(&key), "/config/loadbalancer/externalipaddress/2001:db8::1/port/80/protocol/tcp?block=0");
        key.block = 7;
        key.host = "example.org".into();
        assert_eq!(delete_rule_path(&key), "/config/loadbalancer/hosturl/example.org/externalipaddress/2001:db8::1/port/80/protocol/tcp?block=7");
        key.bgp = true;
        assert!(delete_rule_path(&key).ends_with("?block=7&bgp=true"), "a rule made with bgp withdraws its route");
    }

    #[test]
    fn each_call_has_its_method_path_body_and_intent() {
        let r = request(&LoxilbCall::UpsertRule(rule()));
        assert_eq!((r.method, r.path.as_str(), r.intent), ("POST", "/config/loadbalancer", Intent::UpsertRule));
        assert_eq!(r.body.as_deref(), Some(rule_json(&rule()).to_string().as_str()));
        let r = request(&LoxilbCall::DeleteRule(rule().key()));
        assert_eq!((r.method, r.body.as_deref(), r.intent), ("DELETE", None, Intent::Delete));
        assert_eq!(r.label(), "DELETE /config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp?block=0");
        let p = EndpointProbe { host_name: "10.0.1.1".into(), ..EndpointProbe::default() };
        assert_eq!(request(&LoxilbCall::UpsertProbe(p.clone())).intent, Intent::UpsertProbe);
        assert_eq!(request(&LoxilbCall::DeleteProbe(p)).intent, Intent::Delete);
    }
}
