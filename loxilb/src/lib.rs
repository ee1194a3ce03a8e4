//! The project's LoxiLB wire: what the host sends LoxiLB and how it reads the answers.
//!
//! * [`types`] — LoxiLB's objects as policies plan them (WIT `loxilb-types`) and as LoxiLB lists them;
//! * [`encode`] — request JSON and paths, exactly as LoxiLB's REST API takes them;
//! * [`decode`] — LoxiLB's rule list, typed;
//! * [`conntrack`] — LoxiLB's connection table, typed, and one rule's connections in it;
//! * [`outcome`] — LoxiLB's error contract (old and new error styles);
//! * [`node_info`] — a node's version and HA role;
//! * [`converge`] — whether a listed rule is the one wanted;
//! * [`api`] — the typed [`Loxilb`] API over any [`Exchange`], and [`FakeLoxilb`] for tests;
//! * `client` (feature `client`, default) — HTTP nodes, a cluster of them, retries.
//!
//! Without the `client` feature the crate has no I/O and builds for wasm32.

pub mod api;
#[cfg(feature = "client")]
pub mod client;
pub mod conntrack;
pub mod converge;
pub mod decode;
pub mod encode;
mod fake;
pub mod node_info;
pub mod outcome;
pub mod types;

pub use api::{Exchange, Loxilb, Reply, WireError};
#[cfg(feature = "client")]
pub use client::{
    redact_userinfo, Access, Cluster, Credentials, MissedDeletesKeeper, Node, NodeState, Observer, Retried, Retry, Retrying, Secret, Tls, TlsFiles,
};
pub use conntrack::{connections, conntrack_list, Connection, ConntrackEntry, CONNTRACK_PATH};
pub use converge::{idle_timeout, listed_matches, matches, same_addresses, same_set, Listed};
pub use decode::{observed_rule, rule_list};
pub use encode::{delete_probe_path, delete_rule_path, probe_json, request, rule_json, rule_path, Intent, Request, BASE_PATH};
pub use fake::FakeLoxilb;
pub use outcome::{classify, Outcome};
pub use types::{rule_key, Endpoint, EndpointProbe, LbRule, LoxilbCall, ObservedEndpoint, ObservedRule, RuleKey, ServiceArgs};
