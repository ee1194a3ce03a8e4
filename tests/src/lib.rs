//! Shared pieces of the integration tests: where the built components are, a recording LoxiLB, Octavia
//! objects as octavia-lib's `to_dict(recurse=True)` renders them, and sandboxes over them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use host::caps::loxilb::LoxiTransport;
use host::caps::storage::{MappingStore, MemoryStore};
use host::caps::Grants;
use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::{Limits, Sandbox};
use serde_json::{json, Value};

/// The default policy component, as `cargo guest` builds it.
pub fn default_policy() -> PathBuf {
    let path = host::runtime::default_policy_path();
    assert!(path.exists(), "{} is missing: run `cargo guest` before the tests", path.display());
    path
}

/// Any component built into the guest profile's output folder (`cargo guest`, `cargo policies`).
pub fn component(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-unknown-unknown/guest").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run `cargo guest` and `cargo policies` before the tests", path.display());
    path
}

/// A LoxiLB that records every request and answers success (an empty list for GETs).
#[derive(Default)]
pub struct RecordingLoxi {
    pub requests: Mutex<Vec<(String, String, Option<Value>)>>,
}

impl RecordingLoxi {
    pub fn take(&self) -> Vec<(String, String, Option<Value>)> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl LoxiTransport for RecordingLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let body = body.map(|b| serde_json::from_str(b).expect("policies send JSON"));
        self.requests.lock().unwrap().push((method.to_string(), path.to_string(), body));
        Ok((200, if method == "GET" { r#"{"lbAttr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
    }
}

pub fn settings() -> Settings {
    Settings { nat_mode: "fullnat".into(), remove_orphans: false }
}

pub fn sandbox_with(path: &std::path::Path, loxilb: Arc<dyn LoxiTransport>, storage: Arc<dyn MappingStore>) -> Sandbox {
    let policy = host::runtime::load(path).expect("policy loads");
    let grants = Grants { loxilb, storage, log_target: "test".into() };
    Sandbox::new(policy, grants, Limits::default(), settings()).expect("policy starts")
}

pub fn sandbox(loxilb: Arc<dyn LoxiTransport>) -> Sandbox {
    sandbox_with(&default_policy(), loxilb, Arc::new(MemoryStore::default()))
}

pub fn member(id: &str, pool: &str, address: &str, port: u16, weight: u32) -> Value {
    json!({"member_id": id, "pool_id": pool, "address": address, "protocol_port": port, "weight": weight, "admin_state_up": true, "backup": false})
}

pub fn monitor(id: &str, pool: &str, kind: &str) -> Value {
    json!({"healthmonitor_id": id, "pool_id": pool, "type": kind, "delay": 5, "timeout": 3, "max_retries": 2, "max_retries_down": 3, "admin_state_up": true})
}

pub fn pool(id: &str, lb: &str, listener: Option<&str>, protocol: &str, members: Vec<Value>, hm: Option<Value>) -> Value {
    let mut p = json!({"pool_id": id, "loadbalancer_id": lb, "protocol": protocol, "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true, "members": members});
    if let Some(l) = listener {
        p["listener_id"] = json!(l);
    }
    if let Some(hm) = hm {
        p["healthmonitor"] = hm;
    }
    p
}

pub fn listener(id: &str, lb: &str, protocol: &str, port: u16, pool: Option<Value>) -> Value {
    let mut l = json!({"listener_id": id, "loadbalancer_id": lb, "protocol": protocol, "protocol_port": port, "admin_state_up": true, "connection_limit": -1});
    if let Some(p) = pool {
        l["default_pool_id"] = p["pool_id"].clone();
        l["default_pool"] = p;
    }
    l
}

pub fn loadbalancer(id: &str, vip: &str, listeners: Vec<Value>) -> Value {
    json!({"loadbalancer_id": id, "vip_address": vip, "admin_state_up": true, "listeners": listeners, "pools": []})
}

/// A provider call as the policy's operation.
pub fn op(method: &str, args: Value) -> host::runtime::bindings::octavia::Operation {
    host::convert::operation(method, &args).unwrap_or_else(|e| panic!("{method}: {e:#}"))
}

/// The bodies of the rule POSTs among recorded requests.
pub fn posted_rules(requests: &[(String, String, Option<Value>)]) -> Vec<Value> {
    requests.iter().filter(|(m, p, _)| m == "POST" && p == "/config/loadbalancer").filter_map(|(_, _, b)| b.clone()).collect()
}

pub fn spec() -> loxilb_sim::SpecValidator {
    loxilb_sim::SpecValidator::load_default().expect("LoxiLB swagger spec (../shared/reference/loxilb/swagger.yml or LOXILB_SWAGGER)")
}
