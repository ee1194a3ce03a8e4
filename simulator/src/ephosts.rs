//! LoxiLB's endpoint hosts (`epMap` in `pkg/loxinet/rules.go`): health-probe targets that are
//! created either through `POST /config/endpoint` or implicitly, reference-counted, by every
//! active LB rule endpoint.
//!
//! No probe ever runs here, so every host stays `currState: "ok"`.

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::{Map, Value};

pub(crate) const PROBE_PING: &str = "ping";
pub(crate) const PROBE_TCP: &str = "tcp";
pub(crate) const PROBE_UDP: &str = "udp";
pub(crate) const PROBE_SCTP: &str = "sctp";
pub(crate) const PROBE_HTTP: &str = "http";
pub(crate) const PROBE_HTTPS: &str = "https";
pub(crate) const PROBE_NONE: &str = "none";

const MAX_INACTIVE_TRIES: i64 = 100;
const MAX_PROBE_DURATION: u32 = 24 * 3600;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpOpts {
    pub probe_type: String,
    pub probe_port: u16,
    pub probe_req: String,
    pub probe_resp: String,
    pub probe_duration: u32,
    pub inactive_tries: i64,
    pub probe_activated: bool,
}

#[derive(Debug, Clone)]
struct EpHost {
    host_name: String,
    opts: EpOpts,
    rule_count: i64,
}

#[derive(Debug, Default)]
pub(crate) struct EpHosts {
    map: HashMap<String, EpHost>,
}

pub(crate) fn make_ep_key(host: &str, probe_type: &str, probe_port: u16) -> String {
    format!("{host}_{probe_type}_{probe_port}")
}

fn validate(host: &str, opts: &EpOpts) -> Result<(), String> {
    if host.parse::<IpAddr>().is_err() {
        return Err("host-parse error".into());
    }
    if opts.inactive_tries > MAX_INACTIVE_TRIES || opts.probe_duration > MAX_PROBE_DURATION {
        return Err("host-args error".into());
    }
    let t = opts.probe_type.as_str();
    if ![PROBE_PING, PROBE_TCP, PROBE_UDP, PROBE_SCTP, PROBE_HTTP, PROBE_HTTPS, PROBE_NONE].contains(&t) {
        return Err("host-args unknown probe type".into());
    }
    if [PROBE_TCP, PROBE_UDP, PROBE_SCTP].contains(&t) && opts.probe_port == 0 {
        return Err("host-args unknown probe port".into());
    }
    Ok(())
}

impl EpHosts {
    /// `AddEPHost`. `api` distinguishes a REST call (upsert of the probe options, no reference)
    /// from an LB rule taking a reference (options of an existing host are left alone).
    pub fn add(&mut self, api: bool, host: &str, name: &str, mut opts: EpOpts) -> Result<(), String> {
        if api && opts.probe_type != PROBE_NONE {
            opts.probe_activated = true;
        }
        validate(host, &opts)?;
        let key = if name.is_empty() { make_ep_key(host, &opts.probe_type, opts.probe_port) } else { name.to_string() };
        if let Some(ep) = self.map.get_mut(&key) {
            if api {
                ep.opts = opts;
            } else {
                ep.rule_count += 1;
            }
            return Ok(());
        }
        let rule_count = if api { 0 } else { 1 };
        self.map.insert(key, EpHost { host_name: host.to_string(), opts, rule_count });
        Ok(())
    }

    /// `DeleteEPHost`: a rule dropping its reference, or a REST delete, which is refused while
    /// any rule still refers to the host.
    pub fn delete(&mut self, api: bool, name: &str, host: &str, probe_type: &str, probe_port: u16) -> Result<(), String> {
        let key = if name.is_empty() { make_ep_key(host, probe_type, probe_port) } else { name.to_string() };
        let Some(ep) = self.map.get_mut(&key) else {
            return Err("host-notfound error".into());
        };
        if !api {
            ep.rule_count -= 1;
        }
        if ep.rule_count > 0 {
            return Err("LB Rule-referred".into());
        }
        self.map.remove(&key);
        Ok(())
    }

    /// Entries in the `GET /config/endpoint/all` shape (`EndPointGetEntry`, all omitempty),
    /// in hash order like upstream's map walk.
    pub fn to_json(&self) -> Vec<(String, Value)> {
        self.map
            .iter()
            .map(|(key, ep)| {
                let mut m = Map::new();
                let mut put = |k: &str, v: Value| {
                    let empty = matches!(&v, Value::String(s) if s.is_empty()) || matches!(&v, Value::Number(n) if n.as_i64() == Some(0));
                    if !empty {
                        m.insert(k.to_string(), v);
                    }
                };
                let (ptype, duration, tries) = if ep.opts.probe_activated {
                    (ep.opts.probe_type.as_str(), ep.opts.probe_duration, ep.opts.inactive_tries)
                } else {
                    // Upstream reports an unprobed host as "none" and leaves timing unset.
                    (PROBE_NONE, 0, 0)
                };
                put("hostName", ep.host_name.clone().into());
                put("name", key.clone().into());
                put("probeType", ptype.into());
                put("probeDuration", duration.into());
                put("inactiveReTries", tries.into());
                put("probeReq", ep.opts.probe_req.clone().into());
                put("probeResp", ep.opts.probe_resp.clone().into());
                put("probePort", ep.opts.probe_port.into());
                if ptype == PROBE_PING {
                    // time.Duration zero values printed with %v.
                    for k in ["minDelay", "avgDelay", "maxDelay"] {
                        put(k, "0s".into());
                    }
                }
                put("currState", "ok".into());
                (key.clone(), Value::Object(m))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> EpOpts {
        EpOpts { probe_type: PROBE_TCP.into(), probe_port: port, ..EpOpts::default() }
    }

    #[test]
    fn rule_references_block_rest_delete_until_released() {
        let mut h = EpHosts::default();
        h.add(false, "10.0.0.1", "10.0.0.1_tcp_80", tcp(80)).unwrap();
        h.add(false, "10.0.0.1", "10.0.0.1_tcp_80", tcp(80)).unwrap();
        assert_eq!(h.delete(true, "10.0.0.1_tcp_80", "", "", 0).unwrap_err(), "LB Rule-referred");
        assert_eq!(h.delete(false, "10.0.0.1_tcp_80", "", "", 0).unwrap_err(), "LB Rule-referred");
        h.delete(false, "10.0.0.1_tcp_80", "", "", 0).unwrap();
        assert_eq!(h.delete(true, "", "10.0.0.1", "tcp", 80).unwrap_err(), "host-notfound error");
    }

    #[test]
    fn rest_add_upserts_options_under_derived_key() {
        let mut h = EpHosts::default();
        h.add(true, "10.0.0.1", "", tcp(80)).unwrap();
        let mut o = tcp(80);
        o.probe_req = "healthz".into();
        h.add(true, "10.0.0.1", "", o).unwrap();
        let all = h.to_json();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "10.0.0.1_tcp_80");
        assert_eq!(all[0].1["probeReq"], "healthz");
        assert_eq!(all[0].1["currState"], "ok");
    }

    #[test]
    fn option_limits() {
        let mut h = EpHosts::default();
        assert_eq!(h.add(true, "host", "", tcp(80)).unwrap_err(), "host-parse error");
        assert_eq!(h.add(true, "10.0.0.1", "", tcp(0)).unwrap_err(), "host-args unknown probe port");
        let o = EpOpts { inactive_tries: 101, ..tcp(1) };
        assert_eq!(h.add(true, "10.0.0.1", "", o).unwrap_err(), "host-args error");
        let o = EpOpts { probe_type: "icmp".into(), ..EpOpts::default() };
        assert_eq!(h.add(true, "10.0.0.1", "", o).unwrap_err(), "host-args unknown probe type");
    }
}
