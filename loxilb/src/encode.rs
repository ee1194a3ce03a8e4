//! Requests as LoxiLB's REST API takes them: JSON bodies with its exact field names, and DELETE paths.
//!
//! The simulator validates bodies strictly against LoxiLB's swagger (misspelt keys are reported), and
//! LoxiLB reads what it does not find as zero: a field is only sent when it means something.

use serde::Serialize;
use serde_json::{json, Value};

use crate::types::{EndpointProbe, LbRule, LoxilbCall, RuleKey};

/// LoxiLB's REST base path; every path of this crate is relative to it.
pub const BASE_PATH: &str = "/netlox/v1";
pub const RULES_PATH: &str = "/config/loadbalancer";
pub const RULE_LIST_PATH: &str = "/config/loadbalancer/all";
pub const PROBES_PATH: &str = "/config/endpoint";
/// Answered without authentication, and cheap: the liveness check.
pub const VERSION_PATH: &str = "/version";

/// A rule's body as LoxiLB takes it, borrowed from the rule and serialized straight to text: the request of
/// every changed rule is built from it (a `Value` built first, then printed, was a quarter of an operation's
/// cost in the host). Fields in the order `serde_json`'s map sorts them, so the text is the same either way.
#[derive(Serialize)]
struct RuleBody<'a> {
    #[serde(rename = "allowedSources", skip_serializing_if = "Vec::is_empty")]
    allowed_sources: Vec<Prefix<'a>>,
    endpoints: Vec<EndpointBody<'a>>,
    #[serde(rename = "secondaryIPs", skip_serializing_if = "Vec::is_empty")]
    secondary_ips: Vec<SecondaryIp<'a>>,
    #[serde(rename = "serviceArguments")]
    service: ServiceBody<'a>,
}

#[derive(Serialize)]
struct Prefix<'a> {
    prefix: &'a str,
}

#[derive(Serialize)]
struct SecondaryIp<'a> {
    #[serde(rename = "secondaryIP")]
    secondary_ip: &'a str,
}

#[derive(Serialize)]
struct EndpointBody<'a> {
    #[serde(rename = "endpointIP")]
    ip: &'a str,
    #[serde(rename = "targetPort")]
    target_port: u16,
    weight: u8,
}

/// `serviceArguments`. LoxiLB reads what is absent as zero; the optional fields are sent only when they
/// mean something (see each).
#[derive(Serialize)]
struct ServiceBody<'a> {
    bgp: bool,
    block: u32,
    #[serde(rename = "externalIP")]
    external_ip: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    #[serde(rename = "inactiveTimeOut")]
    inactive_timeout: u32,
    mode: u8,
    monitor: bool,
    name: &'a str,
    oper: u8,
    port: u16,
    /// With `monitor` only.
    #[serde(rename = "probeRetries", skip_serializing_if = "Option::is_none")]
    probe_retries: Option<u32>,
    #[serde(rename = "probeTimeout", skip_serializing_if = "Option::is_none")]
    probe_timeout: Option<u32>,
    /// With a probe type only: LoxiLB refuses a probe port without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    probeport: Option<u16>,
    #[serde(skip_serializing_if = "str::is_empty")]
    probereq: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    proberesp: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    probetype: &'a str,
    protocol: &'a str,
    /// Refused on anything but tcp, even when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    proxyprotocolv2: bool,
    security: u8,
    sel: u8,
}

impl<'a> RuleBody<'a> {
    fn of(rule: &'a LbRule) -> RuleBody<'a> {
        let s = &rule.service;
        RuleBody {
            allowed_sources: rule.allowed_sources.iter().map(|p| Prefix { prefix: p }).collect(),
            endpoints: rule.endpoints.iter().map(|e| EndpointBody { ip: &e.ip, target_port: e.target_port, weight: e.weight }).collect(),
            // Refused on anything but sctp, even when empty.
            secondary_ips: rule.secondary_ips.iter().map(|ip| SecondaryIp { secondary_ip: ip }).collect(),
            service: ServiceBody {
                bgp: s.bgp,
                block: s.block,
                external_ip: &s.external_ip,
                host: &s.host,
                inactive_timeout: s.inactive_timeout,
                mode: s.mode,
                monitor: s.monitor,
                name: &s.name,
                oper: 0,
                port: s.port,
                probe_retries: s.monitor.then_some(s.probe_retries),
                probe_timeout: s.monitor.then_some(s.probe_timeout),
                probeport: (!s.probetype.is_empty()).then_some(s.probeport),
                probereq: &s.probereq,
                proberesp: &s.proberesp,
                probetype: &s.probetype,
                protocol: &s.protocol,
                proxyprotocolv2: s.proxyprotocolv2,
                security: s.security,
                sel: s.sel,
            },
        }
    }
}

/// LoxiLB's JSON for a rule (a `LoadbalanceEntry`).
pub fn rule_json(rule: &LbRule) -> Value {
    serde_json::to_value(RuleBody::of(rule)).expect("a rule serializes")
}

/// [`rule_json`] as the text sent.
fn rule_text(rule: &LbRule) -> String {
    serde_json::to_string(&RuleBody::of(rule)).expect("a rule serializes")
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
    let bgp = if key.bgp { "&bgp=true" } else { "" };
    format!("{}{bgp}", rule_path(key))
}

/// The path naming a rule: its DELETE's, without the BGP flag (which says what else the delete does).
pub fn rule_path(key: &RuleKey) -> String {
    let host = if key.host.is_empty() { String::new() } else { format!("/hosturl/{}", key.host) };
    format!("{RULES_PATH}{host}/externalipaddress/{}/port/{}/protocol/{}?block={}", key.external_ip, key.port, key.protocol, key.block)
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
        LoxilbCall::UpsertRule(rule) => Request { method: "POST", path: RULES_PATH.into(), body: Some(rule_text(rule)), intent: Intent::UpsertRule },
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
        // The text sent is rule_json's, whichever optional fields a rule has.
        let mut full = rule();
        full.service.host = "example.org/api".into();
        full.service.proxyprotocolv2 = true;
        full.service.probereq = "GET /".into();
        full.service.proberesp = "ok \"quoted\"".into();
        full.secondary_ips = vec!["10.0.0.11".into(), "10.0.0.12".into()];
        full.endpoints.push(Endpoint { ip: "2001:db8::1".into(), target_port: 443, weight: 40 });
        let mut bare = rule();
        bare.service.monitor = false;
        bare.service.probetype.clear();
        bare.allowed_sources.clear();
        bare.endpoints.clear();
        for rule in [rule(), full, bare] {
            let body = request(&LoxilbCall::UpsertRule(rule.clone())).body;
            assert_eq!(body.as_deref(), Some(rule_json(&rule).to_string().as_str()));
        }
        let r = request(&LoxilbCall::DeleteRule(rule().key()));
        assert_eq!((r.method, r.body.as_deref(), r.intent), ("DELETE", None, Intent::Delete));
        assert_eq!(r.label(), "DELETE /config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp?block=0");
        let p = EndpointProbe { host_name: "10.0.1.1".into(), ..EndpointProbe::default() };
        assert_eq!(request(&LoxilbCall::UpsertProbe(p.clone())).intent, Intent::UpsertProbe);
        assert_eq!(request(&LoxilbCall::DeleteProbe(p)).intent, Intent::Delete);
    }
}
