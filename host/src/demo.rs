//! `loxilb-octavia demo`: the whole path on one machine. A provider-side client sends the Octavia
//! operations over the Unix-socket transport exactly as the Python provider would; the host runs the
//! policy, programs LoxiLB (the built-in simulator, or a real LoxiLB with `--loxilb URL`) and reports
//! statuses; the demo prints LoxiLB's rules and the mapping after each step and checks them.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::config::Config;
use crate::loxilb::LoxiTransport;
use crate::octavia::status::RecordingSink;
use crate::service::Service;
use crate::transport::unix::{request, UnixServer};

pub const LB: &str = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000001";
pub const LISTENER_TCP: &str = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000002";
pub const LISTENER_UDP: &str = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000003";
pub const POOL: &str = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000004";
pub const MONITOR: &str = "0f5b2c8e-1d4a-4c55-9a0e-5d1f00000005";
pub const VIP: &str = "192.0.2.10";

pub fn member_id(n: u32) -> String {
    format!("0f5b2c8e-1d4a-4c55-9a0e-5d1f000001{n:02}")
}

pub fn member(n: u32, weight: u32) -> Value {
    json!({"member_id": member_id(n), "pool_id": POOL, "address": format!("198.51.100.{}", 10 + n), "protocol_port": 8080,
           "weight": weight, "admin_state_up": true, "backup": false})
}

/// The sample tree: a load balancer with two listeners (TCP 80 with a pool of three members and a TCP
/// monitor; UDP 53 without a pool yet), as octavia-lib's `to_dict(recurse=True)` renders it.
pub fn sample_loadbalancer() -> Value {
    json!({
        "loadbalancer_id": LB, "name": "demo", "vip_address": VIP, "admin_state_up": true, "project_id": "demo",
        "listeners": [
            {"listener_id": LISTENER_TCP, "loadbalancer_id": LB, "protocol": "TCP", "protocol_port": 80, "admin_state_up": true,
             "connection_limit": -1, "timeout_client_data": 50000, "allowed_cidrs": ["0.0.0.0/0"], "default_pool_id": POOL,
             "default_pool": {"pool_id": POOL, "loadbalancer_id": LB, "listener_id": LISTENER_TCP, "protocol": "TCP",
                              "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true,
                              "members": [member(1, 1), member(2, 1), member(3, 1)],
                              "healthmonitor": {"healthmonitor_id": MONITOR, "pool_id": POOL, "type": "TCP", "delay": 5,
                                                "timeout": 3, "max_retries": 2, "max_retries_down": 3, "admin_state_up": true}}},
            {"listener_id": LISTENER_UDP, "loadbalancer_id": LB, "protocol": "UDP", "protocol_port": 53, "admin_state_up": true}
        ],
        "pools": []
    })
}

fn wait_applied(service: &Service, count: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.applied.load(Ordering::Relaxed) < count {
        ensure!(Instant::now() < deadline, "the host did not apply operation {count} within 30 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Validate, then cast, as the provider does for every mutating call (it adds the load balancer's id).
fn send(socket: &Path, method: &str, mut args: Value) -> Result<()> {
    args["loadbalancer_id"] = json!(LB);
    if let Err((class, message)) = request(socket, "call", "validate", json!({"operation": method, "args": args.clone()}))? {
        bail!("{method} refused: {class}: {message}");
    }
    if let Err((class, message)) = request(socket, "cast", method, args)? {
        bail!("{method} not accepted: {class}: {message}");
    }
    Ok(())
}

fn rules(loxilb: &dyn LoxiTransport) -> Result<Vec<Value>> {
    let (status, body) = loxilb.request("GET", "/config/loadbalancer/all", None).map_err(anyhow::Error::msg)?;
    ensure!(status == 200, "GET /config/loadbalancer/all answered {status}: {body}");
    let list: Value = serde_json::from_str(&body)?;
    let mut rules = list.get("lbAttr").and_then(Value::as_array).cloned().unwrap_or_default();
    rules.retain(|r| r["serviceArguments"]["externalIP"] == VIP);
    rules.sort_by_key(|r| r["serviceArguments"]["port"].as_u64());
    Ok(rules)
}

fn show(title: &str, service: &Service, loxilb: &dyn LoxiTransport, sink: &RecordingSink) -> Result<Vec<Value>> {
    println!("\n== {title}");
    for doc in sink.documents.lock().unwrap().drain(..) {
        println!("status reported to Octavia: {doc}");
    }
    let rules = rules(loxilb)?;
    println!("LoxiLB rules ({}):", rules.len());
    for r in &rules {
        println!("{}", serde_json::to_string_pretty(r)?);
    }
    let mappings = service.sandbox.lock().unwrap().mappings().map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("mappings ({}):", mappings.len());
    for m in &mappings {
        println!("  {:<14} {} -> {}", crate::runtime::resource_type_name(m.resource_type), m.octavia_id, m.loxilb_key);
    }
    Ok(rules)
}

fn endpoints(rule: &Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = rule["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["endpointIP"].as_str().unwrap_or_default().to_string(), e["weight"].as_u64().unwrap_or(0)))
        .collect();
    v.sort();
    v
}

pub fn run(loxilb_url: Option<String>) -> Result<()> {
    let simulator = match &loxilb_url {
        Some(_) => None,
        None => Some(loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).context("starting the LoxiLB simulator")?),
    };
    let url = loxilb_url.clone().unwrap_or_else(|| simulator.as_ref().expect("simulator").url());
    let dir = std::env::temp_dir().join(format!("loxilb-octavia-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config =
        Config { api_endpoints: vec![url.clone()], mapping_storage_path: dir.join("mappings.json"), socket_path: dir.join("host.sock"), ..Config::default() };
    println!("LoxiLB API: {url}{}", if simulator.is_some() { " (built-in simulator)" } else { "" });
    println!("policy: {}", crate::app::policy_path(&config).display());
    println!("mapping file: {}", config.mapping_storage_path.display());

    let loxilb = crate::app::loxilb(&config)?;
    let storage = crate::app::storage(&config)?;
    let sandbox = crate::app::sandbox(&config, Arc::clone(&loxilb), storage)?;
    println!("policy {} {} (WIT {}@{})", sandbox.info.name, sandbox.info.version, crate::runtime::WIT_PACKAGE, sandbox.policy.wit_version);
    let sink = Arc::new(RecordingSink::default());
    let service = Service::new(sandbox, None, sink.clone(), config.commit_wait_timeout);
    service.start_worker(Vec::new());
    let server = UnixServer::start(&config.socket_path, Arc::clone(&service))?;
    println!("host listening on {}", server.path.display());

    // An option LoxiLB cannot honour is refused up front, as Octavia would show it to the user.
    let mut cookie = sample_loadbalancer();
    cookie["listeners"][0]["default_pool"]["session_persistence"] = json!({"type": "HTTP_COOKIE", "cookie_name": "sid"});
    match request(&server.path, "call", "validate", json!({"operation": "loadbalancer_create", "args": {"loadbalancer": cookie}}))? {
        Err((class, message)) => println!("\n== refused up front: {class}: {message}"),
        Ok(_) => bail!("cookie persistence was not refused"),
    }

    send(&server.path, "loadbalancer_create", json!({"loadbalancer": sample_loadbalancer()}))?;
    wait_applied(&service, 1)?;
    let created = show("after loadbalancer_create (2 listeners, 3 members, TCP monitor)", &service, loxilb.as_ref(), &sink)?;
    ensure!(created.len() == 1, "expected one rule (the UDP listener has no pool), found {}", created.len());
    ensure!(endpoints(&created[0]).len() == 3, "expected 3 endpoints, found {:?}", endpoints(&created[0]));
    ensure!(created[0]["serviceArguments"]["probetype"] == "tcp", "the TCP monitor is not on the rule");

    send(&server.path, "member_batch_update", json!({"pool_id": POOL, "members": [member(1, 3), member(2, 1), member(4, 1)]}))?;
    wait_applied(&service, 2)?;
    let updated = show("after member_batch_update (member 3 out, member 4 in, weights 3:1:1)", &service, loxilb.as_ref(), &sink)?;
    let eps = endpoints(&updated[0]);
    ensure!(
        eps == vec![("198.51.100.11".into(), 60), ("198.51.100.12".into(), 20), ("198.51.100.14".into(), 20)],
        "unexpected endpoints after the batch update: {eps:?}"
    );
    ensure!(updated[0]["serviceArguments"]["sel"] == 2, "weighted members should select priority (sel 2)");

    let mut lb = sample_loadbalancer();
    lb["listeners"][0]["default_pool"]["members"] = json!([member(1, 3), member(2, 1), member(4, 1)]);
    send(&server.path, "loadbalancer_delete", json!({"loadbalancer": lb, "cascade": true}))?;
    wait_applied(&service, 3)?;
    let deleted = show("after loadbalancer_delete (cascade)", &service, loxilb.as_ref(), &sink)?;
    ensure!(deleted.is_empty(), "rules left after the cascade delete: {}", deleted.len());
    ensure!(service.sandbox.lock().unwrap().mappings().map_err(|e| anyhow::anyhow!("{e}"))?.is_empty(), "mappings left after delete");

    let _ = std::fs::remove_dir_all(&dir);
    println!("\ndemo passed");
    Ok(())
}
