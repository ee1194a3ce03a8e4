//! LoxiLB's objects as the project plans them: the records of WIT `loxilb-types`, field for field, so the
//! host converts between them and the bindgen types without losing anything. Serde names are the Rust
//! field names, as the guest's bindgen types serialize, so the two read each other's JSON.

use serde::{Deserialize, Serialize};

/// `serviceArguments` of a `LoadbalanceEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceArgs {
    pub external_ip: String,
    pub port: u16,
    /// tcp, udp or sctp.
    pub protocol: String,
    /// 0 rr, 1 hash, 2 priority (weighted), 3 persist, 4 least connections.
    pub sel: u8,
    /// 0 dnat, 1 onearm, 2 fullnat, 3 dsr, 4 fullproxy, 5 hostonearm.
    pub mode: u8,
    /// 0 plain, 1 TLS termination, 2 end-to-end TLS.
    pub security: u8,
    pub monitor: bool,
    /// Seconds; 0 means LoxiLB's default.
    pub inactive_timeout: u32,
    pub block: u32,
    pub name: String,
    /// Rule-level probe: "", tcp, udp, sctp, ping or none.
    pub probetype: String,
    pub probeport: u16,
    pub probereq: String,
    pub proberesp: String,
    /// Probe period in seconds (LoxiLB calls it a timeout).
    pub probe_timeout: u32,
    /// Consecutive failures before an endpoint is inactive.
    pub probe_retries: u32,
    pub proxyprotocolv2: bool,
    pub bgp: bool,
    /// L7 host/path for fullproxy rules; part of the rule's identity.
    pub host: String,
}

/// One backend of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: String,
    pub target_port: u16,
    /// Percent under sel 2; otherwise LoxiLB ignores it.
    pub weight: u8,
}

/// A whole `LoadbalanceEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LbRule {
    pub service: ServiceArgs,
    pub endpoints: Vec<Endpoint>,
    pub allowed_sources: Vec<String>,
    pub secondary_ips: Vec<String>,
}

/// What identifies a rule in LoxiLB (its name is not part of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleKey {
    pub external_ip: String,
    pub port: u16,
    pub protocol: String,
    pub block: u32,
    pub host: String,
    /// Not part of the identity: the rule was made with `bgp`, so its delete withdraws the VIP's route.
    pub bgp: bool,
}

/// A per-endpoint probe (`POST /config/endpoint`), used for HTTP/HTTPS monitors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointProbe {
    pub host_name: String,
    pub name: String,
    pub probe_type: String,
    pub probe_port: u16,
    pub probe_req: String,
    pub probe_resp: String,
    pub probe_duration: u32,
    pub inactive_retries: u32,
}

/// One change asked of LoxiLB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoxilbCall {
    /// POST /config/loadbalancer (create, or in-place update of the rule with the same key).
    UpsertRule(LbRule),
    /// DELETE /config/loadbalancer/…; a missing rule counts as deleted.
    DeleteRule(RuleKey),
    /// POST /config/endpoint.
    UpsertProbe(EndpointProbe),
    /// DELETE /config/endpoint/epipaddress/{host-name}?name=…; a missing probe counts as deleted.
    DeleteProbe(EndpointProbe),
}

/// An endpoint as LoxiLB lists it under a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservedEndpoint {
    pub ip: String,
    pub target_port: u16,
    pub weight: u8,
    /// `active` or `inactive` (LoxiLB marks endpoints inactive only for monitored rules).
    pub state: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A rule as LoxiLB lists it (`GET /config/loadbalancer/all`): the rule as far as the list shows it (the
/// fields LoxiLB does not list are zero), and its endpoints' states and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservedRule {
    pub rule: LbRule,
    pub endpoints: Vec<ObservedEndpoint>,
}

pub fn rule_key(rule: &LbRule) -> RuleKey {
    let s = &rule.service;
    RuleKey { external_ip: s.external_ip.clone(), port: s.port, protocol: s.protocol.clone(), block: s.block, host: s.host.clone(), bgp: s.bgp }
}

impl LbRule {
    pub fn key(&self) -> RuleKey {
        rule_key(self)
    }
}
