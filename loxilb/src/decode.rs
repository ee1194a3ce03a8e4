//! LoxiLB's rule list (`GET /config/loadbalancer/all`, key `lbAttr`) in typed form.
//!
//! LoxiLB omits zero fields (Go's omitempty), lists `null` for empty lists, and never lists probereq,
//! proberesp, probeTimeout or probeRetries: what is missing reads as zero.

use serde_json::Value;

use crate::types::{Endpoint, LbRule, ObservedEndpoint, ObservedRule, ServiceArgs};

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num_field(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn bool_field(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// `"<packets>:<bytes>"`; anything else counts nothing.
fn counter(text: &str) -> (u64, u64) {
    let (packets, bytes) = text.split_once(':').unwrap_or(("0", "0"));
    (packets.parse().unwrap_or(0), bytes.parse().unwrap_or(0))
}

fn observed_endpoint(e: &Value) -> ObservedEndpoint {
    let (packets, bytes) = counter(e.get("counter").and_then(Value::as_str).unwrap_or("0:0"));
    ObservedEndpoint {
        ip: str_field(e, "endpointIP").to_string(),
        target_port: num_field(e, "targetPort") as u16,
        weight: num_field(e, "weight") as u8,
        // A list without states (older LoxiLB, or a rule never probed) has every endpoint serving.
        state: e.get("state").and_then(Value::as_str).unwrap_or("active").to_string(),
        packets,
        bytes,
    }
}

/// One `lbAttr` item; `None` when it has no `serviceArguments`.
pub fn observed_rule(rule: &Value) -> Option<ObservedRule> {
    let s = rule.get("serviceArguments")?;
    let service = ServiceArgs {
        external_ip: str_field(s, "externalIP").to_string(),
        port: num_field(s, "port") as u16,
        protocol: str_field(s, "protocol").to_string(),
        sel: num_field(s, "sel") as u8,
        mode: num_field(s, "mode") as u8,
        security: num_field(s, "security") as u8,
        monitor: bool_field(s, "monitor"),
        inactive_timeout: num_field(s, "inactiveTimeOut") as u32,
        block: num_field(s, "block") as u32,
        name: str_field(s, "name").to_string(),
        probetype: str_field(s, "probetype").to_string(),
        probeport: num_field(s, "probeport") as u16,
        probereq: String::new(),
        proberesp: String::new(),
        probe_timeout: 0,
        probe_retries: 0,
        proxyprotocolv2: bool_field(s, "proxyprotocolv2"),
        bgp: bool_field(s, "bgp"),
        host: str_field(s, "host").to_string(),
    };
    let endpoints: Vec<ObservedEndpoint> = rule.get("endpoints").and_then(Value::as_array).into_iter().flatten().map(observed_endpoint).collect();
    let list = |key: &str, field: &str| -> Vec<String> {
        rule.get(key).and_then(Value::as_array).into_iter().flatten().map(|v| str_field(v, field).to_string()).collect()
    };
    let rule = LbRule {
        service,
        endpoints: endpoints.iter().map(|e| Endpoint { ip: e.ip.clone(), target_port: e.target_port, weight: e.weight }).collect(),
        allowed_sources: list("allowedSources", "prefix"),
        secondary_ips: list("secondaryIPs", "secondaryIP"),
    };
    Some(ObservedRule { rule, endpoints })
}

/// The `lbAttr` items of a rule list's body, as they are.
pub fn rule_list_items(body: &str) -> Result<Vec<Value>, String> {
    let body: Value = serde_json::from_str(body).map_err(|e| format!("rule list is not JSON: {e}"))?;
    Ok(body.get("lbAttr").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// A rule list's body, typed; items without `serviceArguments` are left out.
pub fn rule_list(body: &str) -> Result<Vec<ObservedRule>, String> {
    Ok(rule_list_items(body)?.iter().filter_map(observed_rule).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::rule_json;

    /// The shape of API-NOTES §3.2 and LoxiLB's cicd `lbconfig.txt`: omitempty fields, `null` lists,
    /// states and counters, fields LoxiLB adds that the project does not use.
    const LISTING: &str = r#"{"lbAttr":[
        {"serviceArguments":{"externalIP":"2001:db8::10","port":443,"protocol":"tcp","sel":2,"mode":2,"inactiveTimeOut":240,
            "monitor":true,"managed":true,"probetype":"tcp","probeport":8443,"name":"octavia_lb-a_listener-b_pool-c","block":3,
            "host":"example.org","proxyprotocolv2":true,"bgp":true,"snat":false},
         "endpoints":[{"endpointIP":"2001:db8::1:1","targetPort":8443,"weight":70,"state":"active","counter":"12:3456"},
                      {"endpointIP":"10.0.1.2","targetPort":8443,"weight":30,"state":"inactive","counter":"0:0"}],
         "secondaryIPs":null,"allowedSources":[{"prefix":"192.0.2.0/24"}]},
        {"serviceArguments":{"externalIP":"10.0.0.20","port":53,"protocol":"udp","inactiveTimeOut":20},
         "endpoints":[{"endpointIP":"10.0.2.1","targetPort":53,"weight":1}],"secondaryIPs":null,"allowedSources":null},
        {"endpoints":null}
    ]}"#;

    #[test]
    fn a_listing_decodes_into_rules_with_endpoint_states_and_counters() {
        let rules = rule_list(LISTING).unwrap();
        assert_eq!(rules.len(), 2, "an item without serviceArguments is left out");
        let (first, s) = (&rules[0], &rules[0].rule.service);
        assert_eq!((s.external_ip.as_str(), s.port, s.protocol.as_str(), s.block, s.host.as_str()), ("2001:db8::10", 443, "tcp", 3, "example.org"));
        assert_eq!((s.sel, s.mode, s.monitor, s.inactive_timeout, s.proxyprotocolv2, s.bgp), (2, 2, true, 240, true, true));
        assert_eq!((s.probetype.as_str(), s.probeport, s.name.as_str()), ("tcp", 8443, "octavia_lb-a_listener-b_pool-c"));
        assert_eq!(first.rule.allowed_sources, ["192.0.2.0/24"]);
        assert!(first.rule.secondary_ips.is_empty());
        assert_eq!(
            first.endpoints[0],
            ObservedEndpoint { ip: "2001:db8::1:1".into(), target_port: 8443, weight: 70, state: "active".into(), packets: 12, bytes: 3456 }
        );
        assert_eq!(first.endpoints[1].state, "inactive");
        assert_eq!(first.rule.endpoints[1], Endpoint { ip: "10.0.1.2".into(), target_port: 8443, weight: 30 });

        let (second, s) = (&rules[1], &rules[1].rule.service);
        assert_eq!((s.sel, s.mode, s.block, s.monitor, s.name.as_str()), (0, 0, 0, false, ""), "omitted fields read as zero");
        assert_eq!((second.endpoints[0].state.as_str(), second.endpoints[0].packets), ("active", 0), "no state: serving; no counter: nothing");
        assert!(second.rule.allowed_sources.is_empty());
    }

    #[test]
    fn a_listing_that_is_not_json_is_an_error_and_one_without_lbattr_is_empty() {
        assert!(rule_list("<html>").unwrap_err().contains("not JSON"));
        assert!(rule_list(r#"{"lbAttr":null}"#).unwrap().is_empty());
        assert!(rule_list("{}").unwrap().is_empty());
    }

    #[test]
    fn what_is_sent_reads_back_except_what_loxilb_does_not_list() {
        let mut rule = rule_list(LISTING).unwrap().remove(0).rule;
        rule.service.probereq = "ping".into();
        rule.service.probe_timeout = 5;
        let back = observed_rule(&rule_json(&rule)).unwrap().rule;
        assert_eq!((back.service.probereq.as_str(), back.service.probe_timeout), ("", 0));
        rule.service.probereq.clear();
        rule.service.probe_timeout = 0;
        assert_eq!(back, rule);
    }
}
