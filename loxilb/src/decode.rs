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

/// A rule list's body, typed; items without `serviceArguments` are left out. Read straight into the
/// list's shape ([`listing`]) rather than through a JSON tree: a list of 2,048 rules of 30 endpoints is
/// 6 MB, read at every reconciliation and status poll. The result is [`observed_rule`]'s for each item.
pub fn rule_list(body: &str) -> Result<Vec<ObservedRule>, String> {
    let listed: listing::Body = serde_json::from_str(body).map_err(|e| {
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_err() {
            format!("rule list is not JSON: {e}")
        } else {
            format!("rule list is not LoxiLB's: {e}")
        }
    })?;
    Ok(listed.lb_attr.unwrap_or_default().into_iter().filter_map(listing::Item::observed).collect())
}

/// `GET /config/loadbalancer/all` as LoxiLB's Go types serialize it: every field optional (omitempty),
/// lists possibly `null`, strings borrowed from the body where they need no unescaping.
mod listing {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::Number;

    use super::counter;
    use crate::types::{Endpoint, LbRule, ObservedEndpoint, ObservedRule, ServiceArgs};

    type Text<'a> = Option<Cow<'a, str>>;

    fn text(t: Text<'_>) -> String {
        t.map(Cow::into_owned).unwrap_or_default()
    }

    /// A number as `Value::as_u64` reads it: anything but a non-negative integer is 0.
    fn num(n: Option<Number>) -> u64 {
        n.and_then(|n| n.as_u64()).unwrap_or(0)
    }

    #[derive(Deserialize)]
    pub struct Body<'a> {
        #[serde(rename = "lbAttr", borrow, default)]
        pub lb_attr: Option<Vec<Item<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct Item<'a> {
        #[serde(rename = "serviceArguments", borrow, default)]
        service: Option<Service<'a>>,
        #[serde(borrow, default)]
        endpoints: Option<Vec<Ep<'a>>>,
        #[serde(rename = "secondaryIPs", borrow, default)]
        secondary_ips: Option<Vec<SecondaryIp<'a>>>,
        #[serde(rename = "allowedSources", borrow, default)]
        allowed_sources: Option<Vec<AllowedSource<'a>>>,
    }

    #[derive(Deserialize)]
    struct Service<'a> {
        #[serde(rename = "externalIP", borrow, default)]
        external_ip: Text<'a>,
        #[serde(default)]
        port: Option<Number>,
        #[serde(borrow, default)]
        protocol: Text<'a>,
        #[serde(default)]
        sel: Option<Number>,
        #[serde(default)]
        mode: Option<Number>,
        #[serde(default)]
        security: Option<Number>,
        #[serde(default)]
        monitor: Option<bool>,
        #[serde(rename = "inactiveTimeOut", default)]
        inactive_timeout: Option<Number>,
        #[serde(default)]
        block: Option<Number>,
        #[serde(borrow, default)]
        name: Text<'a>,
        #[serde(borrow, default)]
        probetype: Text<'a>,
        #[serde(default)]
        probeport: Option<Number>,
        #[serde(default)]
        proxyprotocolv2: Option<bool>,
        #[serde(default)]
        bgp: Option<bool>,
        #[serde(borrow, default)]
        host: Text<'a>,
    }

    #[derive(Deserialize)]
    struct Ep<'a> {
        #[serde(rename = "endpointIP", borrow, default)]
        ip: Text<'a>,
        #[serde(rename = "targetPort", default)]
        target_port: Option<Number>,
        #[serde(default)]
        weight: Option<Number>,
        #[serde(borrow, default)]
        state: Text<'a>,
        #[serde(borrow, default)]
        counter: Text<'a>,
    }

    #[derive(Deserialize)]
    struct SecondaryIp<'a> {
        #[serde(rename = "secondaryIP", borrow, default)]
        ip: Text<'a>,
    }

    #[derive(Deserialize)]
    struct AllowedSource<'a> {
        #[serde(borrow, default)]
        prefix: Text<'a>,
    }

    impl Item<'_> {
        pub fn observed(self) -> Option<ObservedRule> {
            let s = self.service?;
            let service = ServiceArgs {
                external_ip: text(s.external_ip),
                port: num(s.port) as u16,
                protocol: text(s.protocol),
                sel: num(s.sel) as u8,
                mode: num(s.mode) as u8,
                security: num(s.security) as u8,
                monitor: s.monitor.unwrap_or(false),
                inactive_timeout: num(s.inactive_timeout) as u32,
                block: num(s.block) as u32,
                name: text(s.name),
                probetype: text(s.probetype),
                probeport: num(s.probeport) as u16,
                proxyprotocolv2: s.proxyprotocolv2.unwrap_or(false),
                bgp: s.bgp.unwrap_or(false),
                host: text(s.host),
                ..ServiceArgs::default()
            };
            let endpoints: Vec<ObservedEndpoint> = self
                .endpoints
                .unwrap_or_default()
                .into_iter()
                .map(|e| {
                    let (packets, bytes) = counter(e.counter.as_deref().unwrap_or("0:0"));
                    ObservedEndpoint {
                        ip: text(e.ip),
                        target_port: num(e.target_port) as u16,
                        weight: num(e.weight) as u8,
                        // A list without states (older LoxiLB, or a rule never probed) has every endpoint serving.
                        state: e.state.map(Cow::into_owned).unwrap_or_else(|| "active".into()),
                        packets,
                        bytes,
                    }
                })
                .collect();
            let rule = LbRule {
                service,
                endpoints: endpoints.iter().map(|e| Endpoint { ip: e.ip.clone(), target_port: e.target_port, weight: e.weight }).collect(),
                allowed_sources: self.allowed_sources.unwrap_or_default().into_iter().map(|a| text(a.prefix)).collect(),
                secondary_ips: self.secondary_ips.unwrap_or_default().into_iter().map(|s| text(s.ip)).collect(),
            };
            Some(ObservedRule { rule, endpoints })
        }
    }
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
    fn the_typed_reading_is_the_tree_reading_item_for_item() {
        let by_tree: Vec<ObservedRule> = rule_list_items(LISTING).unwrap().iter().filter_map(observed_rule).collect();
        assert_eq!(rule_list(LISTING).unwrap(), by_tree);
        let escaped = r#"{"lbAttr":[{"serviceArguments":{"externalIP":"10.0.0.1","port":80,"protocol":"tcp","name":"a\"b\u00e9"},"endpoints":[{"endpointIP":"10.0.1.1","targetPort":-1,"weight":1.5}]}]}"#;
        let by_tree: Vec<ObservedRule> = rule_list_items(escaped).unwrap().iter().filter_map(observed_rule).collect();
        assert_eq!(rule_list(escaped).unwrap(), by_tree, "escapes, negative and fractional numbers read alike");
        assert_eq!(by_tree[0].rule.service.name, "a\"b\u{e9}");
    }

    #[test]
    fn a_listing_that_is_not_json_is_an_error_and_one_without_lbattr_is_empty() {
        assert!(rule_list("<html>").unwrap_err().contains("not JSON"));
        assert!(rule_list(r#"{"lbAttr":null}"#).unwrap().is_empty());
        assert!(rule_list("{}").unwrap().is_empty());
        assert!(rule_list(r#"{"lbAttr":[{"serviceArguments":{"port":"eighty"}}]}"#).unwrap_err().contains("not LoxiLB's"));
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
