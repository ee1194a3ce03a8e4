//! LoxiLB's load-balancer rule table: a port of `AddLbRule`, `DeleteLbRule`, `GetLBRule` and
//! `getLBConsolidatedEPs` (`pkg/loxinet/rules.go` at loxilb 64045de) without the datapath.
//!
//! Checks run in upstream's order, so a body with several problems gets the same error.
//! Errors are upstream's raw strings; `errors.rs` turns them into responses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use serde_json::Value;

use crate::ephosts::{make_ep_key, EpHosts, EpOpts, PROBE_NONE, PROBE_PING, PROBE_SCTP, PROBE_TCP, PROBE_UDP};

const MAX_LB_RULES: u64 = 2 * 1024;
const MAX_LB_ENDPOINTS: usize = 32;
const MAX_INACTIVE_TIMEOUT: u32 = 24 * 3600;
const DEFAULT_INACTIVE_TIMEOUT: u32 = 4 * 60;
const DEFAULT_INACTIVE_NS_TIMEOUT: u32 = 20;
/// Rules numbered above this cannot carry allowedSources (the source-check mark is a bitmask).
const MAX_SRC_LB_MARKER: u64 = 28;
const DEFAULT_PROBE_RETRIES: i64 = 2;
const DEFAULT_PROBE_DURATION: u32 = 60;

pub(crate) const OPER_ADD: i32 = 0;
pub(crate) const OPER_DETACH: i32 = 2;

const SEL_N3: i64 = 6;
const MODE_ONEARM: i32 = 1;
const MODE_FULLNAT: i32 = 2;
const MODE_DSR: i32 = 3;
const MODE_FULLPROXY: i32 = 4;
const MODE_HOSTONEARM: i32 = 5;

/// `cmn.LbServiceArg` as the REST handler fills it (after its integer casts).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceArg {
    pub serv_ip: String,
    pub private_ip: String,
    pub port: u16,
    pub port_max: u16,
    pub proto: String,
    pub block: u32,
    pub sel: i64,
    pub bgp: bool,
    pub monitor: bool,
    pub mode: i32,
    pub security: i32,
    pub inactive_timeout: u32,
    pub managed: bool,
    pub probe_type: String,
    pub probe_port: u16,
    pub probe_req: String,
    pub probe_resp: String,
    pub probe_timeout: u32,
    pub probe_retries: i64,
    pub name: String,
    pub oper: i32,
    pub host: String,
    pub proxy_protocol_v2: bool,
    pub egress: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct EndpointArg {
    pub ip: String,
    pub port: u16,
    pub weight: u8,
}

/// `cmn.LbRuleMod`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LbRuleMod {
    pub serv: ServiceArg,
    pub sec_ips: Vec<String>,
    pub src_ips: Vec<String>,
    pub eps: Vec<EndpointArg>,
}

/// Identity of a rule: upstream's `ruleKey()` reduced to the tuples an LB rule sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RuleKey {
    vip: IpAddr,
    proto: u8,
    port_min: u16,
    port_max: u16,
    block: u32,
    host: String,
}

/// One endpoint slot (`ruleLBEp`). Slots removed by a replace stay as `inactive` so that hash
/// selection keeps its order; they are hidden from GET.
#[derive(Debug, Clone)]
struct Slot {
    ip: IpAddr,
    port: u16,
    weight: u8,
    inactive: bool,
    chk: bool,
    ep_created: bool,
    /// Packets and bytes the rule sent to this endpoint (client→VIP, what LoxiLB's NAT map counts per
    /// endpoint); moved only by simulated traffic ([`Core::count`]).
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Probe {
    ptype: String,
    port: u16,
    req: String,
    resp: String,
    retries: i64,
    timeout: u32,
}

#[derive(Debug, Clone)]
struct Rule {
    num: u64,
    key: RuleKey,
    name: String,
    managed: bool,
    bgp: bool,
    monitor: bool,
    sel: i64,
    mode: i32,
    security: i32,
    egress: bool,
    ppv2: bool,
    probe: Probe,
    inactive_timeout: u32,
    sec_ips: Vec<IpAddr>,
    /// Normalised prefixes (`net.IPNet.String()`).
    sources: Vec<String>,
    slots: Vec<Slot>,
}

/// How a rule's mode shows its connections in LoxiLB's table (`convDPCt2GoObjFixup`, `goProxyEntCollector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NatShape {
    /// Destination NAT (default and DSR modes): `dnat-EP:PORT` forward, `snat-VIP:PORT` back to the client.
    Dnat,
    /// Source and destination NAT (one-arm, full NAT): `fdnat-SRC,EP:PORT` forward, `fsnat-VIP,CLIENT:PORT`
    /// back to LoxiLB's source address and the client's port.
    Full,
    /// Full proxy: one entry per connection, `fp|…`, its bytes both directions together.
    Proxy,
}

/// The LB rule table plus the endpoint hosts it references.
#[derive(Debug)]
pub(crate) struct Core {
    rules: HashMap<RuleKey, Rule>,
    marker: Marker,
    pub eps: EpHosts,
}

impl Default for Core {
    fn default() -> Self {
        Core { rules: HashMap::new(), marker: Marker::new(1, MAX_LB_RULES), eps: EpHosts::default() }
    }
}

fn proto_number(proto: &str) -> Option<u8> {
    match proto {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "sctp" => Some(132),
        "none" => Some(0),
        _ => None,
    }
}

fn proto_name(num: u8) -> &'static str {
    match num {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        132 => "sctp",
        _ => "none",
    }
}

/// loxilib decides the family by counting colons, not by parsing.
fn is_v4_str(s: &str) -> bool {
    s.matches(':').count() < 2
}

/// `net.ParseCIDR(ip + "/32" or "/128")` as AddLbRule/DeleteLbRule build the VIP.
fn parse_service_ip(s: &str) -> Option<IpAddr> {
    if is_v4_str(s) {
        s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    }
}

/// `net.ParseIP`, with Go's equality: an IPv4-mapped IPv6 address is the IPv4 address.
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// `net.IP.String()`.
pub(crate) fn go_ip_string(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    }
}

/// `tk.IPtonl`: the last four bytes read little-endian. Upstream sorts endpoints and secondary
/// IPs by it, so e.g. `10.0.1.1` comes before `10.0.0.2`.
fn iptonl(ip: &IpAddr) -> u32 {
    let b = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    u32::from_le_bytes(b)
}

/// `net.ParseCIDR(prefix)` → `IPNet.String()`, i.e. the masked network.
fn normalise_prefix(prefix: &str) -> Option<String> {
    let (addr, len) = prefix.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u32 = len.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            Some(format!("{}/{len}", Ipv4Addr::from(u32::from(a) & mask)))
        }
        IpAddr::V6(a) if len <= 128 => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            let net = Ipv6Addr::from(u128::from(a) & mask);
            Some(format!("{}/{len}", go_ip_string(&IpAddr::V6(net))))
        }
        _ => None,
    }
}

impl Core {
    pub fn reset(&mut self) {
        *self = Core::default();
    }

    #[cfg(test)]
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// `AddLbRule`: create, or update an existing rule in place.
    pub fn add_lb_rule(&mut self, m: &LbRuleMod) -> Result<(), String> {
        let mut serv = m.serv.clone();

        let vip = parse_service_ip(&serv.serv_ip).ok_or("malformed-service error")?;
        if !serv.private_ip.is_empty() && parse_ip(&serv.private_ip).is_none() {
            return Err("malformed-service privateIP error".into());
        }

        if serv.inactive_timeout > MAX_INACTIVE_TIMEOUT {
            return Err("service-args error".into());
        } else if serv.inactive_timeout == 0 {
            serv.inactive_timeout = if serv.proto == "tcp" || serv.proto == "sctp" { DEFAULT_INACTIVE_TIMEOUT } else { DEFAULT_INACTIVE_NS_TIMEOUT };
        }

        let l4_probe = [PROBE_SCTP, PROBE_TCP, PROBE_UDP].contains(&serv.probe_type.as_str());
        if !serv.probe_type.is_empty() {
            if !l4_probe && serv.probe_type != PROBE_PING && serv.probe_type != PROBE_NONE {
                return Err("malformed-service-ptype error".into());
            }
            if l4_probe && serv.probe_port == 0 {
                return Err("malformed-service-pport error".into());
            }
            if (serv.probe_type == PROBE_NONE || serv.probe_type == PROBE_PING) && serv.probe_port != 0 {
                return Err("malformed-service-pport error".into());
            }
            if serv.probe_type != PROBE_NONE {
                serv.monitor = true;
            }
        } else if serv.probe_port != 0 {
            return Err("malformed-service-pport error".into());
        }

        if m.eps.is_empty() || m.eps.len() > MAX_LB_ENDPOINTS {
            return Err("endpoints-range error".into());
        }
        if serv.proto == "icmp" && serv.port != 0 {
            return Err("malformed-service error".into());
        }
        if serv.proxy_protocol_v2 && serv.proto != "tcp" {
            return Err("proxy-proto-v2 not tcp service error".into());
        }
        let proto = proto_number(&serv.proto).ok_or("malformed-proto error")?;
        if serv.proto != "sctp" && !m.sec_ips.is_empty() {
            return Err("secondaryIP-args error".into());
        }
        if serv.proto != "udp" && serv.sel == SEL_N3 {
            return Err("non-udp-n3-args error".into());
        }
        if m.sec_ips.len() > 3 {
            return Err("secondaryIP-args len error".into());
        }
        if serv.port_max != 0 && serv.port_max < serv.port {
            return Err("serv-port-args range error".into());
        }

        let mut sec_ips = Vec::new();
        for s in &m.sec_ips {
            let ip = parse_ip(s).ok_or("malformed-secIP error")?;
            if is_v4_str(&serv.serv_ip) && !is_v4_str(s) {
                return Err("malformed-secIP nat46 error".into());
            }
            sec_ips.push(ip);
        }
        sec_ips.sort_by_key(iptonl);

        if serv.mode == MODE_HOSTONEARM && !vip.is_unspecified() {
            return Err("hostarm-args error".into());
        }

        let activate_probe = matches!(serv.mode, MODE_ONEARM | MODE_FULLNAT | MODE_HOSTONEARM) || serv.monitor;

        let mut new_slots = Vec::with_capacity(m.eps.len());
        for ep in &m.eps {
            let ip = parse_ip(&ep.ip).ok_or("malformed-lbep error")?;
            if is_v4_str(&serv.serv_ip) && !is_v4_str(&ep.ip) {
                return Err("malformed-service nat46 error".into());
            }
            if serv.proto == "icmp" && ep.port != 0 {
                return Err("malformed-service error".into());
            }
            if serv.mode == MODE_DSR && ep.port != serv.port {
                return Err("malformed-service dsr-port error".into());
            }
            new_slots.push(Slot { ip, port: ep.port, weight: ep.weight, inactive: false, chk: false, ep_created: false, packets: 0, bytes: 0 });
        }
        new_slots.sort_by_key(|s| iptonl(&s.ip));

        let key = RuleKey {
            vip,
            proto,
            port_min: serv.port,
            port_max: if serv.port_max != 0 { serv.port_max } else { serv.port },
            block: serv.block,
            host: serv.host.clone(),
        };

        if self.rules.contains_key(&key) {
            self.update_rule(&key, &serv, sec_ips, &m.src_ips, new_slots, activate_probe)
        } else if serv.oper == OPER_DETACH {
            Err("lbrule not-exists error".into())
        } else {
            self.create_rule(key, &serv, sec_ips, &m.src_ips, new_slots, activate_probe)
        }
    }

    fn create_rule(
        &mut self,
        key: RuleKey,
        serv: &ServiceArg,
        sec_ips: Vec<IpAddr>,
        src_ips: &[String],
        slots: Vec<Slot>,
        activate_probe: bool,
    ) -> Result<(), String> {
        let num = self.marker.get().ok_or("rule-hwm error")?;
        let mut sources = Vec::new();
        for p in src_ips {
            match normalise_prefix(p) {
                Some(n) if num <= MAX_SRC_LB_MARKER => sources.push(n),
                _ => {
                    self.marker.release(num);
                    return Err("rule-allowed-src error".into());
                }
            }
        }
        let mut rule = Rule {
            num,
            key: key.clone(),
            name: serv.name.clone(),
            managed: serv.managed,
            bgp: serv.bgp,
            monitor: serv.monitor,
            sel: serv.sel,
            mode: serv.mode,
            security: serv.security,
            egress: serv.egress,
            ppv2: serv.proxy_protocol_v2,
            probe: Probe {
                ptype: serv.probe_type.clone(),
                port: serv.probe_port,
                req: serv.probe_req.clone(),
                resp: serv.probe_resp.clone(),
                retries: serv.probe_retries,
                timeout: serv.probe_timeout,
            },
            inactive_timeout: serv.inactive_timeout,
            sec_ips,
            sources,
            slots,
        };
        let mut slots = std::mem::take(&mut rule.slots);
        mod_nat_ep_host(&mut self.eps, &rule, &mut slots, true, activate_probe);
        rule.slots = slots;
        self.rules.insert(key, rule);
        Ok(())
    }

    fn update_rule(
        &mut self,
        key: &RuleKey,
        serv: &ServiceArg,
        sec_ips: Vec<IpAddr>,
        src_ips: &[String],
        mut new_slots: Vec<Slot>,
        activate_probe: bool,
    ) -> Result<(), String> {
        let rule = &self.rules[key];
        if rule.sec_ips != sec_ips {
            return Err("secIP modify error".into());
        }
        // Worked on a copy: upstream mutates the live slots even when it then refuses the
        // update, which nothing observable depends on.
        let mut old = rule.slots.clone();
        let (mut changed, mut ret, mut del) = consolidate(&mut old, &mut new_slots, serv.oper);

        let probe = Probe {
            ptype: serv.probe_type.clone(),
            port: serv.probe_port,
            req: serv.probe_req.clone(),
            resp: serv.probe_resp.clone(),
            retries: serv.probe_retries,
            timeout: serv.probe_timeout,
        };
        if rule.probe.ptype != probe.ptype
            || rule.probe.port != probe.port
            || rule.probe.req != probe.req
            || rule.probe.resp != probe.resp
            || rule.sel != serv.sel
            || rule.mode != serv.mode
            || rule.ppv2 != serv.proxy_protocol_v2
        {
            changed = true;
        }
        // Upstream compares allowedSources inverted (rules.go:1735-1751): with as many prefixes as the rule
        // holds, different ones count as no change (and meet "lbrule-exists"), the same ones as a change.
        // Here only a different number is a change: different prefixes are dropped as upstream drops them,
        // so a client cannot rely on changing them in place (it must delete and create the rule), and the
        // same ones are no change, as intended, so it cannot rely on the bug re-applying them either.
        if src_ips.len() != rule.sources.len() {
            changed = true;
        }

        if !changed {
            return Err("lbrule-exists error".into());
        }
        if rule.security != serv.security {
            return Err("lbrule-exist error: cant modify rule security mode".into());
        }
        if rule.egress != serv.egress {
            return Err("lbrule-exist error: cant modify rule egress mode".into());
        }
        if ret.is_empty() {
            return self.delete_key(key);
        }
        if (rule.mode == MODE_FULLPROXY) != (serv.mode == MODE_FULLPROXY) {
            return Err("lbrule-exist error: cant modify fullproxy rule mode".into());
        }
        if ret.len() > MAX_LB_ENDPOINTS {
            // Too many slots accumulated: upstream resets to exactly the requested list.
            del = old;
            ret = new_slots;
        }
        let mut sources = Vec::new();
        for w in wanted_in_request_order(src_ips) {
            match w {
                Some(n) if rule.num <= MAX_SRC_LB_MARKER => sources.push(n),
                _ => return Err("rule-allowed-src error".into()),
            }
        }

        let rule = self.rules.get_mut(key).expect("checked above");
        rule.probe = probe;
        rule.ppv2 = serv.proxy_protocol_v2;
        rule.sel = serv.sel;
        rule.mode = serv.mode;
        rule.inactive_timeout = serv.inactive_timeout;
        rule.sources = sources;
        // name, bgp, managed and monitor are deliberately left alone, as upstream does.
        let snapshot = rule.clone();
        mod_nat_ep_host(&mut self.eps, &snapshot, &mut del, false, activate_probe);
        mod_nat_ep_host(&mut self.eps, &snapshot, &mut ret, true, activate_probe);
        self.rules.get_mut(key).expect("still there").slots = ret;
        Ok(())
    }

    /// `DeleteLbRule` for the REST delete paths.
    pub fn delete_lb_rule(&mut self, ip: &str, port: u16, port_max: u16, proto: &str, block: u32, host: &str) -> Result<(), String> {
        let vip = parse_service_ip(ip).ok_or("malformed-service error")?;
        if port_max != 0 && port_max < port {
            return Err("serv-port-args range error".into());
        }
        let proto = proto_number(proto).ok_or("malformed-proto error")?;
        let key = RuleKey { vip, proto, port_min: port, port_max: if port_max != 0 { port_max } else { port }, block, host: host.to_string() };
        self.delete_key(&key)
    }

    fn delete_key(&mut self, key: &RuleKey) -> Result<(), String> {
        let Some(mut rule) = self.rules.remove(key) else {
            return Err("no-rule error".into());
        };
        self.marker.release(rule.num);
        let mut slots = std::mem::take(&mut rule.slots);
        mod_nat_ep_host(&mut self.eps, &rule, &mut slots, false, false);
        Ok(())
    }

    /// The secondary IPs of the rule at `ip:port/proto` (`GetLBRuleSecIPs`); none when there is no such rule.
    pub fn secondary_ips(&self, ip: &str, port: u16, proto: &str, block: u32) -> Vec<String> {
        let (Some(vip), Some(proto)) = (parse_service_ip(ip), proto_number(proto)) else { return Vec::new() };
        let rule = self.rules.iter().find(|(k, _)| k.vip == vip && k.proto == proto && k.port_min == port && k.block == block);
        rule.map(|(_, r)| r.sec_ips.iter().map(go_ip_string).collect()).unwrap_or_default()
    }

    /// `DELETE /config/loadbalancer/name/{name}`: every rule with that name; never fails.
    pub fn delete_by_name(&mut self, name: &str) {
        let keys: Vec<RuleKey> = self.rules.values().filter(|r| r.name == name).map(|r| r.key.clone()).collect();
        for k in keys {
            let _ = self.delete_key(&k);
        }
    }

    pub fn delete_all(&mut self) {
        let keys: Vec<RuleKey> = self.rules.keys().cloned().collect();
        for k in keys {
            let _ = self.delete_key(&k);
        }
    }

    /// The rule serving `vip:port/proto` (any block and host): the endpoint its `n`th connection goes to
    /// (round robin over the listed endpoints: the simulator does not model selection algorithms), and
    /// how its mode shapes the connection table.
    pub fn endpoint_for(&self, vip: &str, port: u16, proto: &str, n: usize) -> Result<(IpAddr, u16, NatShape), String> {
        let rule = self.rule_serving(vip, port, proto)?;
        let active: Vec<&Slot> = rule.slots.iter().filter(|s| !s.inactive).collect();
        if active.is_empty() {
            return Err(format!("the rule for {vip}:{port}/{proto} has no endpoint"));
        }
        let slot = active[n % active.len()];
        let shape = match rule.mode {
            MODE_ONEARM | MODE_FULLNAT | MODE_HOSTONEARM => NatShape::Full,
            MODE_FULLPROXY => NatShape::Proxy,
            _ => NatShape::Dnat,
        };
        Ok((slot.ip, slot.port, shape))
    }

    /// Adds traffic sent to endpoint `ep` by the rule serving `vip:port/proto` to that endpoint's counter.
    pub fn count(&mut self, vip: &str, port: u16, proto: &str, ep: (IpAddr, u16), packets: u64, bytes: u64) -> Result<(), String> {
        let key = self.rule_serving(vip, port, proto)?.key.clone();
        let rule = self.rules.get_mut(&key).expect("found just above");
        let slot = rule
            .slots
            .iter_mut()
            .find(|s| !s.inactive && s.ip == ep.0 && s.port == ep.1)
            .ok_or_else(|| format!("{}:{} is no endpoint of {vip}:{port}/{proto}", ep.0, ep.1))?;
        slot.packets += packets;
        slot.bytes += bytes;
        Ok(())
    }

    fn rule_serving(&self, vip: &str, port: u16, proto: &str) -> Result<&Rule, String> {
        let ip = parse_ip(vip).ok_or_else(|| format!("{vip:?} is not an IP address"))?;
        let num = proto_number(proto).ok_or_else(|| format!("{proto:?} is not a protocol LoxiLB balances"))?;
        self.rules
            .values()
            .find(|r| r.key.vip == ip && r.key.proto == num && (r.key.port_min..=r.key.port_max).contains(&port))
            .ok_or_else(|| format!("no rule serves {vip}:{port}/{proto}"))
    }

    /// Rules in the `GET /config/loadbalancer/all` shape, in hash order.
    pub fn rules_json(&self) -> Vec<(RuleKey, Value)> {
        self.rules.iter().map(|(k, r)| (k.clone(), serde_json::to_value(RuleModel::of(r)).expect("a rule encodes"))).collect()
    }

    /// The body of `GET /config/loadbalancer/all`, encoded straight from the rules, in hash order.
    pub fn listing_text(&self) -> String {
        #[derive(Serialize)]
        struct Listing<'a> {
            #[serde(rename = "lbAttr")]
            lb_attr: Vec<RuleModel<'a>>,
        }
        let listing = Listing { lb_attr: self.rules.values().map(RuleModel::of).collect() };
        serde_json::to_string(&listing).expect("a listing encodes")
    }
}

fn wanted_in_request_order(src_ips: &[String]) -> Vec<Option<String>> {
    src_ips.iter().map(|p| normalise_prefix(p)).collect()
}

/// `getLBConsolidatedEPs`, kept literal (including its quirks) because its result decides
/// between 200 and 409 for a re-POST:
/// * replace (oper 0) marks missing slots inactive; an already-inactive slot that is still
///   missing counts as a change again, so once a rule has one, identical re-POSTs succeed;
/// * attach (oper 1) releases the endpoint hosts of the slots it was not given;
/// * detach (oper 2) of endpoints the rule does not have changes nothing.
fn consolidate(old: &mut [Slot], new: &mut [Slot], oper: i32) -> (bool, Vec<Slot>, Vec<Slot>) {
    let mut changed = false;
    let mut found = false;
    for e in old.iter_mut() {
        if let Some(n) = new.iter_mut().find(|n| n.ip == e.ip && n.port == e.port) {
            if e.inactive && oper != OPER_DETACH {
                changed = true;
                e.inactive = false;
            }
            if e.weight != n.weight {
                changed = true;
                e.weight = n.weight;
            }
            e.chk = true;
            n.chk = true;
            found = true;
        }
    }

    if oper == OPER_DETACH {
        if !found {
            return (false, old.to_vec(), Vec::new());
        }
        let (mut ret, mut del) = (Vec::new(), Vec::new());
        for e in old.iter_mut() {
            if e.chk {
                e.chk = false;
                del.push(e.clone());
            } else {
                ret.push(e.clone());
            }
        }
        return (true, ret, del);
    }

    let del: Vec<Slot> = old.iter().filter(|e| !e.chk && !e.inactive).cloned().collect();
    let mut ret = old.to_vec();
    for n in new.iter_mut() {
        if !n.chk {
            changed = true;
            n.chk = true;
            ret.push(n.clone());
        }
    }
    for e in ret.iter_mut() {
        if !e.chk && oper == OPER_ADD {
            changed = true;
            e.inactive = true;
        }
        e.chk = false;
    }
    (changed, ret, del)
}

/// `modNatEpHost`: take (add) or drop (delete) the endpoint-host reference of each slot.
/// The host key follows the rule protocol, the probe options follow the rule's probetype.
fn mod_nat_ep_host(eps: &mut EpHosts, rule: &Rule, slots: &mut [Slot], add: bool, live_check: bool) {
    let mut opts = EpOpts {
        inactive_tries: if rule.probe.retries == 0 { DEFAULT_PROBE_RETRIES } else { rule.probe.retries },
        probe_duration: if rule.probe.timeout == 0 { DEFAULT_PROBE_DURATION } else { rule.probe.timeout },
        probe_activated: live_check,
        ..EpOpts::default()
    };
    for slot in slots.iter_mut() {
        let (ptype, pport) = match rule.key.proto {
            6 => (PROBE_TCP, slot.port),
            17 => (PROBE_UDP, slot.port),
            132 => (PROBE_SCTP, slot.port),
            _ => (PROBE_PING, 0),
        };
        if rule.probe.ptype.is_empty() {
            opts.probe_type = ptype.into();
            opts.probe_port = pport;
        } else {
            opts.probe_type = rule.probe.ptype.clone();
            opts.probe_port = rule.probe.port;
            opts.probe_req = rule.probe.req.clone();
            opts.probe_resp = rule.probe.resp.clone();
        }
        let host = go_ip_string(&slot.ip);
        let key = make_ep_key(&host, ptype, pport);
        if add {
            if !slot.inactive && !slot.ep_created {
                // Upstream only logs a refused host (e.g. probeRetries > 100); the rule stays.
                if eps.add(false, &host, &key, opts.clone()).is_ok() {
                    slot.ep_created = true;
                }
            } else if slot.inactive {
                slot.ep_created = false;
            }
        } else if slot.ep_created && eps.delete(false, &key, &host, &opts.probe_type, opts.probe_port).is_ok() {
            slot.ep_created = false;
        }
    }
}

/// `GetLBRule` + the REST handler's model conversion (omitempty everywhere except externalIP/port and the
/// endpoint triple; null lists stay null). Typed and borrowed, so a listing of 2,048 rules is encoded
/// without building a JSON tree per rule; fields are declared in the byte order the tree's sorted maps
/// gave, so the text is the same (`listing_text_is_the_trees_text`).
#[derive(Serialize)]
struct RuleModel<'a> {
    #[serde(rename = "allowedSources")]
    allowed_sources: Option<Vec<Prefix<'a>>>,
    endpoints: Option<Vec<EndpointModel>>,
    #[serde(rename = "secondaryIPs")]
    secondary_ips: Option<Vec<SecondaryIp>>,
    #[serde(rename = "serviceArguments")]
    service: ServiceModel<'a>,
}

#[derive(Serialize)]
struct Prefix<'a> {
    prefix: &'a str,
}

#[derive(Serialize)]
struct SecondaryIp {
    #[serde(rename = "secondaryIP")]
    ip: GoIp,
}

#[derive(Serialize)]
struct EndpointModel {
    counter: Counter,
    #[serde(rename = "endpointIP")]
    ip: GoIp,
    state: &'static str,
    #[serde(rename = "targetPort")]
    port: u16,
    weight: u8,
}

#[derive(Serialize)]
struct ServiceModel<'a> {
    #[serde(skip_serializing_if = "is_false")]
    bgp: bool,
    #[serde(skip_serializing_if = "is_zero")]
    block: u32,
    #[serde(skip_serializing_if = "is_false")]
    egress: bool,
    #[serde(rename = "externalIP")]
    external_ip: GoIp,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    #[serde(rename = "inactiveTimeOut", skip_serializing_if = "is_zero")]
    inactive_timeout: u32,
    #[serde(skip_serializing_if = "is_false")]
    managed: bool,
    #[serde(skip_serializing_if = "is_zero")]
    mode: i32,
    #[serde(skip_serializing_if = "is_false")]
    monitor: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    port: u16,
    #[serde(rename = "portMax", skip_serializing_if = "is_zero")]
    port_max: u16,
    #[serde(skip_serializing_if = "is_zero")]
    probeport: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    probetype: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    protocol: &'static str,
    #[serde(skip_serializing_if = "is_false")]
    proxyprotocolv2: bool,
    #[serde(skip_serializing_if = "is_zero")]
    security: i32,
    #[serde(skip_serializing_if = "is_zero")]
    sel: i64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// An address as Go prints it (an IPv4-mapped IPv6 address in dotted form), encoded without an owned string.
struct GoIp(IpAddr);

impl Serialize for GoIp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => s.collect_str(&v4),
                None => s.collect_str(&v6),
            },
            v4 => s.collect_str(&v4),
        }
    }
}

/// An endpoint's `packets:bytes` counter.
struct Counter(u64, u64);

impl Serialize for Counter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}:{}", self.0, self.1))
    }
}

impl<'a> RuleModel<'a> {
    fn of(r: &'a Rule) -> Self {
        let endpoints: Vec<EndpointModel> = r
            .slots
            .iter()
            .filter(|s| !s.inactive)
            .map(|s| EndpointModel { counter: Counter(s.packets, s.bytes), ip: GoIp(s.ip), state: "active", port: s.port, weight: s.weight })
            .collect();
        let some = |v: Vec<_>| (!v.is_empty()).then_some(v);
        RuleModel {
            allowed_sources: some(r.sources.iter().map(|p| Prefix { prefix: p }).collect()),
            endpoints: (!endpoints.is_empty()).then_some(endpoints),
            secondary_ips: (!r.sec_ips.is_empty()).then(|| r.sec_ips.iter().map(|ip| SecondaryIp { ip: GoIp(*ip) }).collect()),
            service: ServiceModel {
                bgp: r.bgp,
                block: r.key.block,
                egress: r.egress,
                external_ip: GoIp(r.key.vip),
                host: &r.key.host,
                inactive_timeout: r.inactive_timeout,
                managed: r.managed,
                mode: r.mode,
                monitor: r.monitor,
                name: &r.name,
                port: r.key.port_min,
                port_max: if r.key.port_max == r.key.port_min { 0 } else { r.key.port_max },
                probeport: r.probe.port,
                probetype: &r.probe.ptype,
                protocol: proto_name(r.key.proto),
                proxyprotocolv2: r.ppv2,
                security: r.security,
                sel: r.sel,
            },
        }
    }
}

/// `utils.Marker`: rule numbers come from a free list, released numbers are reused first.
/// Ported because the number decides whether allowedSources are accepted.
#[derive(Debug)]
struct Marker {
    begin: u64,
    end: u64,
    start: u64,
    cap: u64,
    markers: Vec<u64>,
}

impl Marker {
    fn new(begin: u64, len: u64) -> Self {
        let mut markers: Vec<u64> = (1..=len).collect();
        markers[len as usize - 1] = u64::MAX;
        Marker { begin, end: len - 1, start: 0, cap: len, markers }
    }

    fn get(&mut self) -> Option<u64> {
        if self.cap == 0 || self.start == u64::MAX {
            return None;
        }
        self.cap -= 1;
        let rid = self.start;
        self.start = self.markers[rid as usize];
        self.markers[rid as usize] = u64::MAX;
        Some(rid + self.begin)
    }

    fn release(&mut self, id: u64) {
        if id < self.begin || id >= self.begin + self.markers.len() as u64 {
            return;
        }
        let rid = id - self.begin;
        self.markers[rid as usize] = self.start;
        self.start = rid;
        self.cap += 1;
        if self.start == u64::MAX {
            self.start = self.end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(ip: &str, port: u16) -> EndpointArg {
        EndpointArg { ip: ip.into(), port, weight: 1 }
    }

    fn tcp_rule(vip: &str, port: u16, eps: Vec<EndpointArg>) -> LbRuleMod {
        LbRuleMod { serv: ServiceArg { serv_ip: vip.into(), port, proto: "tcp".into(), ..ServiceArg::default() }, eps, ..LbRuleMod::default() }
    }

    fn visible(core: &Core) -> Vec<String> {
        let (_, r) = core.rules_json().pop().unwrap();
        r["endpoints"].as_array().map(|a| a.iter().map(|e| format!("{}:{}", e["endpointIP"].as_str().unwrap(), e["targetPort"])).collect()).unwrap_or_default()
    }

    #[test]
    fn listing_text_is_the_trees_text() {
        // Every field set (none omitted) and every field at its zero (all omissible ones omitted, lists null).
        let slot = |ip: &str, inactive| Slot { ip: ip.parse().unwrap(), port: 8080, weight: 3, inactive, chk: false, ep_created: true, packets: 7, bytes: 900 };
        let key = |vip: &str, host: &str, port_max, block| RuleKey { vip: vip.parse().unwrap(), proto: 6, port_min: 80, port_max, block, host: host.into() };
        let full = Rule {
            num: 1,
            key: key("::ffff:10.0.0.10", "a.example", 90, 2),
            name: "rule".into(),
            managed: true,
            bgp: true,
            monitor: true,
            sel: 1,
            mode: 2,
            security: 1,
            egress: true,
            ppv2: true,
            probe: Probe { ptype: "tcp".into(), port: 8080, req: String::new(), resp: String::new(), retries: 2, timeout: 5 },
            inactive_timeout: 30,
            sec_ips: vec!["10.0.0.11".parse().unwrap()],
            sources: vec!["192.0.2.0/24".into()],
            slots: vec![slot("10.0.1.1", false), slot("fd00::1", false), slot("10.0.1.2", true)],
        };
        let zero = Rule {
            num: 2,
            key: key("fd00::10", "", 80, 0),
            name: String::new(),
            managed: false,
            bgp: false,
            monitor: false,
            sel: 0,
            mode: 0,
            security: 0,
            egress: false,
            ppv2: false,
            probe: Probe::default(),
            inactive_timeout: 0,
            sec_ips: vec![],
            sources: vec![],
            slots: vec![],
        };
        let mut c = Core::default();
        for r in [full, zero] {
            c.rules.insert(r.key.clone(), r);
        }
        let tree: Vec<Value> = c.rules_json().into_iter().map(|(_, v)| v).collect();
        assert_eq!(c.listing_text(), json!({ "lbAttr": tree }).to_string());

        let full = tree.iter().find(|r| r["serviceArguments"]["name"] == "rule").unwrap();
        let mut fields: Vec<&str> = full["serviceArguments"].as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        let every =
            "bgp block egress externalIP host inactiveTimeOut managed mode monitor name port portMax probeport probetype protocol proxyprotocolv2 security sel";
        assert_eq!(fields.join(" "), every);
        assert_eq!(full["serviceArguments"]["externalIP"], "10.0.0.10", "an IPv4-mapped address prints as Go prints it");
        assert_eq!(
            full["endpoints"],
            json!([{"counter": "7:900", "endpointIP": "10.0.1.1", "state": "active", "targetPort": 8080, "weight": 3},
                   {"counter": "7:900", "endpointIP": "fd00::1", "state": "active", "targetPort": 8080, "weight": 3}]),
            "inactive slots are hidden"
        );
        assert_eq!((&full["secondaryIPs"], &full["allowedSources"]), (&json!([{"secondaryIP": "10.0.0.11"}]), &json!([{"prefix": "192.0.2.0/24"}])));
        let zero = tree.iter().find(|r| r["serviceArguments"]["externalIP"] == "fd00::10").unwrap();
        assert_eq!(
            *zero,
            json!({"allowedSources": null, "endpoints": null, "secondaryIPs": null,
                                 "serviceArguments": {"externalIP": "fd00::10", "port": 80, "protocol": "tcp"}})
        );
    }

    #[test]
    fn endpoints_are_sorted_by_iptonl() {
        let mut c = Core::default();
        c.add_lb_rule(&tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.2", 80), ep("10.0.1.1", 80)])).unwrap();
        assert_eq!(visible(&c), ["10.0.1.1:80", "10.0.0.2:80"]);
    }

    #[test]
    fn replace_leaves_hidden_slot_that_defeats_409_and_detach_delete() {
        let mut c = Core::default();
        c.add_lb_rule(&tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 80), ep("10.0.0.2", 80)])).unwrap();
        let one = tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 80)]);
        c.add_lb_rule(&one).unwrap();
        assert_eq!(visible(&c), ["10.0.0.1:80"]);
        // The hidden inactive slot counts as a change every time.
        c.add_lb_rule(&one).unwrap();
        // Detaching the last visible endpoint keeps the rule (the hidden slot remains).
        let mut detach = one.clone();
        detach.serv.oper = OPER_DETACH;
        c.add_lb_rule(&detach).unwrap();
        assert_eq!(c.rule_count(), 1);
        assert!(visible(&c).is_empty());
    }

    #[test]
    fn unchanged_repost_is_rejected_before_security_check() {
        let mut c = Core::default();
        let r = tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 80)]);
        c.add_lb_rule(&r).unwrap();
        let mut sec = r.clone();
        sec.serv.security = 1;
        assert_eq!(c.add_lb_rule(&sec).unwrap_err(), "lbrule-exists error");
        sec.eps[0].weight = 5;
        assert_eq!(c.add_lb_rule(&sec).unwrap_err(), "lbrule-exist error: cant modify rule security mode");
    }

    #[test]
    fn allowed_sources_change_only_by_number_and_stop_at_rule_29() {
        let mut c = Core::default();
        let mut r = tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 80)]);
        r.src_ips = vec!["192.0.2.7/24".into()];
        c.add_lb_rule(&r).unwrap();
        assert_eq!(c.rules_json()[0].1["allowedSources"], json!([{"prefix": "192.0.2.0/24"}]));
        // As many prefixes as the rule holds are no change, the same ones or others (upstream drops
        // others as unchanged too); another number is.
        assert_eq!(c.add_lb_rule(&r).unwrap_err(), "lbrule-exists error");
        r.src_ips = vec!["198.51.100.0/24".into()];
        assert_eq!(c.add_lb_rule(&r).unwrap_err(), "lbrule-exists error");
        assert_eq!(c.rules_json()[0].1["allowedSources"], json!([{"prefix": "192.0.2.0/24"}]));
        r.src_ips = vec!["198.51.100.0/24".into(), "203.0.113.0/24".into()];
        c.add_lb_rule(&r).unwrap();
        assert_eq!(c.rules_json()[0].1["allowedSources"], json!([{"prefix": "198.51.100.0/24"}, {"prefix": "203.0.113.0/24"}]));

        for port in 1..=27 {
            c.add_lb_rule(&tcp_rule("10.0.0.10", port, vec![ep("10.0.0.1", 80)])).unwrap();
        }
        let mut r29 = tcp_rule("10.0.0.10", 1000, vec![ep("10.0.0.1", 80)]);
        r29.src_ips = vec!["10.0.0.0/8".into()];
        assert_eq!(c.add_lb_rule(&r29).unwrap_err(), "rule-allowed-src error");
        // The failed create gave its number back.
        r29.src_ips.clear();
        c.add_lb_rule(&r29).unwrap();
        assert_eq!(c.rule_count(), 29);
    }

    #[test]
    fn ep_hosts_follow_rule_references() {
        let mut c = Core::default();
        c.add_lb_rule(&tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 8080)])).unwrap();
        c.add_lb_rule(&tcp_rule("10.0.0.11", 80, vec![ep("10.0.0.1", 8080)])).unwrap();
        let hosts = c.eps.to_json();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].0, "10.0.0.1_tcp_8080");
        assert_eq!(hosts[0].1["probeType"], "none");
        assert_eq!(c.eps.delete(true, "10.0.0.1_tcp_8080", "", "", 0).unwrap_err(), "LB Rule-referred");
        c.delete_all();
        assert!(c.eps.to_json().is_empty());
    }

    #[test]
    fn attach_releases_hosts_of_unlisted_endpoints_like_upstream() {
        let mut c = Core::default();
        c.add_lb_rule(&tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.1", 80), ep("10.0.0.2", 80)])).unwrap();
        let mut attach = tcp_rule("10.0.0.10", 80, vec![ep("10.0.0.3", 80)]);
        attach.serv.oper = 1;
        c.add_lb_rule(&attach).unwrap();
        assert_eq!(visible(&c).len(), 3);
        let hosts: Vec<String> = c.eps.to_json().into_iter().map(|(k, _)| k).collect();
        assert_eq!(hosts, ["10.0.0.3_tcp_80"]);
        c.delete_all();
        assert!(c.eps.to_json().is_empty());
    }

    #[test]
    fn marker_reuses_released_numbers_first() {
        let mut m = Marker::new(1, 4);
        assert_eq!((m.get(), m.get(), m.get()), (Some(1), Some(2), Some(3)));
        m.release(2);
        assert_eq!(m.get(), Some(2));
        assert_eq!(m.get(), Some(4));
        assert_eq!(m.get(), None);
    }

    #[test]
    fn prefixes_normalise_like_go() {
        assert_eq!(normalise_prefix("10.1.2.3/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(normalise_prefix("2001:db8::1/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(normalise_prefix("10.0.0.0/33"), None);
        assert_eq!(normalise_prefix("10.0.0.0"), None);
    }
}
