//! Convergence as a property: random sequences of Octavia operations (load balancer, listener, pool and
//! member create/update/delete, member batch updates) through the default policy. After every operation
//! LoxiLB's visible rules equal the policy's desired rules, a reconciliation right after finds nothing
//! to re-program, and the host's mapping — in memory and as read back from its files — equals the mapping
//! changes of the plans it executed, applied in order — against the LoxiLB simulator and against a strict
//! model in which a POST of an existing rule replaces its endpoints exactly. Seeded, so a failure names the
//! seed and step that reproduce it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use host::execute::RecoveryMode;
use host::loxilb::{HttpLoxi, LoxiTransport};
use host::runtime::bindings::loxilb_types::LbRule;
use host::runtime::bindings::mapping::{MappingChange, MappingEntry};
use host::runtime::instance::Sandbox;
use host::storage::{FileStore, MappingStore};
use integration_tests::*;
use serde_json::{json, Value};

#[derive(Clone)]
struct Lb {
    id: String,
    vip: String,
    up: bool,
}

#[derive(Clone)]
struct Listener {
    id: String,
    lb: String,
    protocol: &'static str,
    port: u16,
    pool: Option<String>,
    up: bool,
    timeout: Option<u32>,
}

#[derive(Clone)]
struct Pool {
    id: String,
    lb: String,
    listener: Option<String>,
    algorithm: &'static str,
    up: bool,
    monitor: Option<String>,
}

#[derive(Clone)]
struct Member {
    id: String,
    pool: String,
    address: String,
    port: u16,
    weight: u32,
    up: bool,
}

/// What Octavia holds, and how it renders objects as the provider receives them.
#[derive(Default)]
struct Octavia {
    /// IPv6 addresses, written the long way Octavia accepts and stores as given ("FD00:0:0:0::…").
    ipv6: bool,
    next: u32,
    lbs: Vec<Lb>,
    listeners: Vec<Listener>,
    pools: Vec<Pool>,
    members: Vec<Member>,
}

const ALGORITHMS: [&str; 3] = ["ROUND_ROBIN", "SOURCE_IP_PORT", "LEAST_CONNECTIONS"];

impl Octavia {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("cccccccc-0000-4000-8000-{:012}", self.next)
    }

    fn member_json(m: &Member) -> Value {
        json!({"member_id": m.id, "pool_id": m.pool, "address": m.address, "protocol_port": m.port, "weight": m.weight,
               "admin_state_up": m.up, "backup": false})
    }

    fn pool_json(&self, p: &Pool) -> Value {
        let members: Vec<Value> = self.members.iter().filter(|m| m.pool == p.id).map(Self::member_json).collect();
        let mut v = json!({"pool_id": p.id, "loadbalancer_id": p.lb, "protocol": "TCP", "lb_algorithm": p.algorithm,
                           "admin_state_up": p.up, "members": members});
        if let Some(l) = &p.listener {
            v["listener_id"] = json!(l);
        }
        if let Some(hm) = &p.monitor {
            v["healthmonitor"] = Self::monitor_json(hm, &p.id);
        }
        v
    }

    fn monitor_json(id: &str, pool: &str) -> Value {
        monitor(id, pool, "TCP")
    }

    fn listener_json(&self, l: &Listener) -> Value {
        let mut v = json!({"listener_id": l.id, "loadbalancer_id": l.lb, "protocol": l.protocol, "protocol_port": l.port,
                           "admin_state_up": l.up, "connection_limit": -1});
        if let Some(t) = l.timeout {
            v["timeout_client_data"] = json!(t);
        }
        if let Some(p) = &l.pool {
            v["default_pool_id"] = json!(p);
        }
        v
    }

    fn lb_json(&self, lb: &Lb) -> Value {
        let listeners: Vec<Value> = self.listeners.iter().filter(|l| l.lb == lb.id).map(|l| self.listener_json(l)).collect();
        let pools: Vec<Value> = self.pools.iter().filter(|p| p.lb == lb.id).map(|p| self.pool_json(p)).collect();
        json!({"loadbalancer_id": lb.id, "vip_address": lb.vip, "admin_state_up": lb.up, "listeners": listeners, "pools": pools})
    }

    fn new_member(&mut self, rng: &mut Rng, pool: &str) -> Option<Member> {
        // A small address space, so deleted members' addresses come back (LoxiLB's hidden slots).
        for _ in 0..8 {
            let n = 1 + rng.below(40);
            let address = if self.ipv6 { format!("FD00:0:0:0:0:0:40:{n:04X}") } else { format!("10.40.0.{n}") };
            let port = if rng.chance(80) { 8080 } else { 8081 };
            if !self.members.iter().any(|m| m.pool == pool && m.address == address && m.port == port) {
                let weight = self.weight(rng, pool, &[1, 1, 1, 2, 3, 0]);
                return Some(Member { id: self.id(), pool: pool.to_string(), address, port, weight, up: rng.chance(90) });
            }
        }
        None
    }

    /// Different weights only under ROUND_ROBIN (the policy refuses them with other algorithms).
    fn weight(&self, rng: &mut Rng, pool: &str, choices: &[u32]) -> u32 {
        let round_robin = self.pools.iter().any(|p| p.id == pool && p.algorithm == "ROUND_ROBIN");
        let same = self.members.iter().find(|m| m.pool == pool).map_or(1, |m| m.weight);
        if round_robin {
            choices[rng.below(choices.len())]
        } else {
            same
        }
    }

    fn algorithm(&self, rng: &mut Rng, pool: &str) -> &'static str {
        let mut weights = self.members.iter().filter(|m| m.pool == pool).map(|m| m.weight);
        let first = weights.next();
        if weights.all(|w| Some(w) == first) {
            ALGORITHMS[rng.below(3)]
        } else {
            "ROUND_ROBIN"
        }
    }

    /// One random operation Octavia would accept now, as (provider method, arguments); the model is
    /// updated to the state after it.
    fn step(&mut self, rng: &mut Rng) -> (&'static str, Value) {
        loop {
            if let Some(op) = self.try_step(rng) {
                return op;
            }
        }
    }

    fn try_step(&mut self, rng: &mut Rng) -> Option<(&'static str, Value)> {
        let kind = if self.lbs.is_empty() { 0 } else { rng.below(16) };
        match kind {
            0 => {
                if self.lbs.len() >= 3 {
                    return None;
                }
                let ipv6 = self.ipv6;
                let vip = (1..=3)
                    .map(|n| if ipv6 { format!("FD00:0:0:0:0:0:30:{n:04}") } else { format!("10.30.0.{n}") })
                    .find(|v| !self.lbs.iter().any(|lb| &lb.vip == v))?;
                let lb = Lb { id: self.id(), vip, up: true };
                self.lbs.push(lb.clone());
                if rng.chance(50) {
                    // A whole tree in one create.
                    let (listener, pool) = (self.id(), self.id());
                    self.listeners.push(Listener {
                        id: listener.clone(),
                        lb: lb.id.clone(),
                        protocol: "TCP",
                        port: 80,
                        pool: Some(pool.clone()),
                        up: true,
                        timeout: None,
                    });
                    self.pools.push(Pool { id: pool.clone(), lb: lb.id.clone(), listener: Some(listener), algorithm: "ROUND_ROBIN", up: true, monitor: None });
                    for _ in 0..1 + rng.below(4) {
                        if let Some(m) = self.new_member(rng, &pool) {
                            self.members.push(m);
                        }
                    }
                }
                let lb = self.lb_json(&lb);
                Some(("loadbalancer_create", json!({"loadbalancer": lb})))
            }
            1 => {
                let i = rng.below(self.lbs.len());
                let old = self.lb_json(&self.lbs[i]);
                self.lbs[i].up = !self.lbs[i].up;
                Some((
                    "loadbalancer_update",
                    json!({"old_loadbalancer": old, "new_loadbalancer": {"loadbalancer_id": self.lbs[i].id, "admin_state_up": self.lbs[i].up}}),
                ))
            }
            2 => {
                if !rng.chance(30) {
                    return None;
                }
                let lb = self.lbs.remove(rng.below(self.lbs.len()));
                let mut all = self.lbs.clone();
                all.push(lb.clone());
                let tree = self.lb_json(&lb);
                let pools: Vec<String> = self.pools.iter().filter(|p| p.lb == lb.id).map(|p| p.id.clone()).collect();
                self.members.retain(|m| !pools.contains(&m.pool));
                self.pools.retain(|p| p.lb != lb.id);
                self.listeners.retain(|l| l.lb != lb.id);
                Some(("loadbalancer_delete", json!({"loadbalancer": tree, "cascade": true})))
            }
            3 => {
                let lb = rng.pick(&self.lbs)?.id.clone();
                let (protocol, port) = [("TCP", 80), ("TCP", 443), ("UDP", 53), ("TCP", 8443)][rng.below(4)];
                if self.listeners.iter().any(|l| l.lb == lb && l.port == port && l.protocol == protocol) {
                    return None;
                }
                let l = Listener { id: self.id(), lb, protocol, port, pool: None, up: true, timeout: None };
                self.listeners.push(l.clone());
                Some(("listener_create", json!({"listener": self.listener_json(&l)})))
            }
            4 => {
                let i = rng.below(self.listeners.len().max(1));
                let old = self.listener_json(self.listeners.get(i)?);
                let l = &mut self.listeners[i];
                let new = if rng.chance(50) {
                    l.up = !l.up;
                    json!({"listener_id": l.id, "admin_state_up": l.up})
                } else {
                    l.timeout = Some([30_000, 60_000, 120_000][rng.below(3)]);
                    json!({"listener_id": l.id, "timeout_client_data": l.timeout})
                };
                Some(("listener_update", json!({"old_listener": old, "new_listener": new})))
            }
            5 => {
                if !rng.chance(40) {
                    return None;
                }
                let l = self.listeners.remove(rng.below(self.listeners.len().max(1)).min(self.listeners.len().checked_sub(1)?));
                for p in self.pools.iter_mut().filter(|p| p.listener.as_deref() == Some(&l.id)) {
                    p.listener = None;
                }
                Some(("listener_delete", json!({"listener": self.listener_json(&l)})))
            }
            6 => {
                // A pool becomes the default pool of a listener that has none.
                let free: Vec<usize> = (0..self.listeners.len()).filter(|&i| self.listeners[i].pool.is_none()).collect();
                let i = *rng.pick(&free)?;
                let algorithm = ALGORITHMS[rng.below(3)];
                let pool =
                    Pool { id: self.id(), lb: self.listeners[i].lb.clone(), listener: Some(self.listeners[i].id.clone()), algorithm, up: true, monitor: None };
                self.listeners[i].pool = Some(pool.id.clone());
                self.pools.push(pool.clone());
                for _ in 0..rng.below(3) {
                    if let Some(m) = self.new_member(rng, &pool.id) {
                        self.members.push(m);
                    }
                }
                Some(("pool_create", json!({"pool": self.pool_json(&pool)})))
            }
            7 => {
                let i = rng.below(self.pools.len().max(1));
                let old = self.pool_json(self.pools.get(i)?);
                let new = if rng.chance(70) {
                    let algorithm = self.algorithm(rng, &self.pools[i].id);
                    let p = &mut self.pools[i];
                    p.algorithm = algorithm;
                    json!({"pool_id": p.id, "lb_algorithm": p.algorithm})
                } else {
                    let p = &mut self.pools[i];
                    p.up = !p.up;
                    json!({"pool_id": p.id, "admin_state_up": p.up})
                };
                Some(("pool_update", json!({"old_pool": old, "new_pool": new})))
            }
            8 => {
                if self.pools.is_empty() || !rng.chance(40) {
                    return None;
                }
                let p = self.pools.remove(rng.below(self.pools.len()));
                let args = json!({"pool": self.pool_json(&p)});
                self.members.retain(|m| m.pool != p.id);
                for l in self.listeners.iter_mut().filter(|l| l.pool.as_deref() == Some(&p.id)) {
                    l.pool = None;
                }
                Some(("pool_delete", args))
            }
            9 | 10 => {
                let pool = rng.pick(&self.pools)?.id.clone();
                let m = self.new_member(rng, &pool)?;
                self.members.push(m.clone());
                Some(("member_create", json!({"member": Self::member_json(&m)})))
            }
            11 => {
                let i = rng.below(self.members.len().max(1));
                let old = Self::member_json(self.members.get(i)?);
                let weight = self.weight(rng, &self.members[i].pool.clone(), &[0, 1, 2, 5]);
                let m = &mut self.members[i];
                let new = if rng.chance(70) {
                    m.weight = weight;
                    json!({"member_id": m.id, "weight": m.weight})
                } else {
                    m.up = !m.up;
                    json!({"member_id": m.id, "admin_state_up": m.up})
                };
                Some(("member_update", json!({"old_member": old, "new_member": new})))
            }
            12 => {
                let i = rng.below(self.members.len().max(1));
                self.members.get(i)?;
                let m = self.members.remove(i);
                Some(("member_delete", json!({"member": Self::member_json(&m)})))
            }
            14 => {
                let i = rng.below(self.pools.len().max(1));
                let pool = self.pools.get(i)?.id.clone();
                if self.pools[i].monitor.is_some() {
                    return None;
                }
                let id = self.id();
                self.pools[i].monitor = Some(id.clone());
                Some(("health_monitor_create", json!({"healthmonitor": Self::monitor_json(&id, &pool)})))
            }
            15 => {
                let i = rng.below(self.pools.len().max(1));
                let hm = self.pools.get(i)?.monitor.clone()?;
                self.pools[i].monitor = None;
                Some(("health_monitor_delete", json!({"healthmonitor": Self::monitor_json(&hm, &self.pools[i].id)})))
            }
            _ => {
                // The pool's full new member list: some kept (maybe re-weighted), some new.
                let pool = rng.pick(&self.pools)?.id.clone();
                let mut kept: Vec<Member> = self.members.iter().filter(|m| m.pool == pool && rng.chance(60)).cloned().collect();
                for m in kept.iter_mut() {
                    if rng.chance(30) {
                        m.weight = self.weight(rng, &pool, &[1, 2, 3]);
                    }
                }
                self.members.retain(|m| m.pool != pool);
                self.members.extend(kept);
                for _ in 0..rng.below(4) {
                    if let Some(m) = self.new_member(rng, &pool) {
                        self.members.push(m);
                    }
                }
                let members: Vec<Value> = self.members.iter().filter(|m| m.pool == pool).map(Self::member_json).collect();
                Some(("member_batch_update", json!({"pool_id": pool, "members": members})))
            }
        }
    }
}

/// A rule as far as its traffic goes: key → (name, sel, mode, probe, endpoints with weights, sorted).
type Rules = BTreeMap<String, (String, u64, u64, String, Vec<(String, u64, u64)>)>;

fn visible(listed: &[Value]) -> Rules {
    listed
        .iter()
        .map(|r| {
            let s = &r["serviceArguments"];
            let key = format!("{}:{}/{}", s["externalIP"].as_str().unwrap(), s["port"], s["protocol"].as_str().unwrap());
            let mut eps: Vec<(String, u64, u64)> = r["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (e["endpointIP"].as_str().unwrap().to_string(), e["targetPort"].as_u64().unwrap(), e["weight"].as_u64().unwrap()))
                .collect();
            eps.sort();
            let sel = s.get("sel").and_then(Value::as_u64).unwrap_or(0);
            let mode = s.get("mode").and_then(Value::as_u64).unwrap_or(0);
            let probe = s.get("probetype").and_then(Value::as_str).unwrap_or("").to_string();
            (key, (s["name"].as_str().unwrap_or("").to_string(), sel, mode, probe, eps))
        })
        .collect()
}

fn desired(rules: &[LbRule]) -> Rules {
    rules
        .iter()
        .map(|r| {
            let s = &r.service;
            let mut eps: Vec<(String, u64, u64)> = r.endpoints.iter().map(|e| (e.ip.clone(), e.target_port as u64, e.weight as u64)).collect();
            eps.sort();
            (format!("{}:{}/{}", s.external_ip, s.port, s.protocol), (s.name.clone(), s.sel as u64, s.mode as u64, s.probetype.clone(), eps))
        })
        .collect()
}

/// LoxiLB reduced to the contract the policy relies on: rules keyed by VIP, port, protocol, block and
/// host; a POST of an existing rule replaces its endpoints and compared attributes exactly (409
/// "lbrule-exists" when nothing differs); name and monitor stay as created; a DELETE removes the rule.
#[derive(Default)]
struct StrictLoxi {
    rules: Mutex<BTreeMap<String, Value>>,
}

impl StrictLoxi {
    fn key(ip: &str, port: u64, protocol: &str, block: u64, host: &str) -> String {
        format!("{ip}|{port}|{protocol}|{block}|{host}")
    }

    fn listed(&self) -> Vec<Value> {
        self.rules.lock().unwrap().values().cloned().collect()
    }
}

impl LoxiTransport for StrictLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let ok = || Ok((200, r#"{"result":"Success"}"#.to_string()));
        let mut rules = self.rules.lock().unwrap();
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match (method, path) {
            ("GET", "/config/loadbalancer/all") => Ok((200, json!({"lbAttr": rules.values().collect::<Vec<_>>()}).to_string())),
            ("GET", "/config/endpoint/all") => Ok((200, r#"{"Attr":[]}"#.to_string())),
            ("POST", "/config/loadbalancer") => {
                let body: Value = serde_json::from_str(body.unwrap()).unwrap();
                let s = &body["serviceArguments"];
                let key = Self::key(
                    s["externalIP"].as_str().unwrap(),
                    s["port"].as_u64().unwrap(),
                    s["protocol"].as_str().unwrap(),
                    s["block"].as_u64().unwrap_or(0),
                    s["host"].as_str().unwrap_or(""),
                );
                let mut stored = json!({
                    "serviceArguments": s.clone(),
                    "endpoints": body["endpoints"].as_array().unwrap().iter().map(|e| {
                        let mut e = e.clone();
                        e["state"] = json!("active");
                        e
                    }).collect::<Vec<_>>(),
                    "allowedSources": body.get("allowedSources").cloned().unwrap_or(Value::Null),
                    "secondaryIPs": body.get("secondaryIPs").cloned().unwrap_or(Value::Null),
                });
                if let Some(old) = rules.get(&key) {
                    for kept in ["name", "monitor", "bgp"] {
                        stored["serviceArguments"][kept] = old["serviceArguments"][kept].clone();
                    }
                    if old == &stored {
                        return Ok((409, r#"{"code":409,"result":"lbrule-exists error"}"#.to_string()));
                    }
                }
                rules.insert(key, stored);
                ok()
            }
            ("DELETE", p) if p.starts_with("/config/loadbalancer/externalipaddress/") => {
                let seg: Vec<&str> = p.split('/').collect();
                // /config/loadbalancer/externalipaddress/{ip}/port/{port}/protocol/{proto}
                let block = query.strip_prefix("block=").and_then(|b| b.parse().ok()).unwrap_or(0);
                let key = Self::key(seg[4], seg[6].parse().unwrap(), seg[8], block, "");
                match rules.remove(&key) {
                    Some(_) => ok(),
                    None => Ok((404, r#"{"code":404,"result":"no-rule error"}"#.to_string())),
                }
            }
            ("POST", "/config/endpoint") | ("DELETE", _) => ok(),
            _ => Ok((404, format!(r#"{{"result":"{method} {path} is not in the strict model"}}"#))),
        }
    }
}

/// The mapping as the plans the host executed say it is: every batch of mapping changes it committed,
/// applied in order to an empty mapping, by id.
#[derive(Default)]
struct Planned(BTreeMap<String, MappingEntry>);

impl Planned {
    fn apply(&mut self, changes: &[MappingChange]) {
        for change in changes {
            match change {
                MappingChange::Put(e) => self.0.insert(e.octavia_id.clone(), e.clone()),
                MappingChange::Remove(id) => self.0.remove(id),
            };
        }
    }
}

/// A sandbox over `storage` whose commits also go into `planned`.
fn start(loxilb: &Arc<dyn LoxiTransport>, storage: &Arc<FileStore>, planned: &Arc<Mutex<Planned>>, bgp: bool) -> Sandbox {
    let settings = host::runtime::bindings::policy_types::Settings { bgp, ..settings() };
    let mut sandbox = sandbox_with_settings(&default_policy(), loxilb.clone(), storage.clone(), settings);
    let planned = planned.clone();
    sandbox.observe_commits(move |changes| planned.lock().unwrap().apply(changes));
    sandbox
}

/// The host's mapping equals the plans' mapping changes: its index, and a fresh load of what its files
/// hold (snapshot and journal; written is enough to read them back, so no fsync slows the test).
fn store_matches_plans(sandbox: &Sandbox, storage: &FileStore, planned: &Mutex<Planned>, context: &dyn Fn() -> String) {
    let want: Vec<MappingEntry> = planned.lock().unwrap().0.values().cloned().collect();
    assert_eq!(sandbox.mappings().unwrap(), want, "{}: the host's mapping differs from the plans' mapping changes", context());
    let on_disk = host::storage::read_copy(storage.path()).unwrap();
    assert_eq!(on_disk.damage(), Vec::<String>::new(), "{}: the mapping's files read as damaged", context());
    let reloaded = host::app::load_mapping(Arc::new(on_disk)).unwrap();
    assert_eq!(reloaded.entries(), want, "{}: the mapping read back from its files differs from the plans' mapping changes", context());
}

static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A LoxiLB that advertises VIPs over BGP (the simulator's model of LoxiLB's counting), and a way to
/// change one of its rules behind the host's back.
struct Bgp<'a> {
    advertised: &'a dyn Fn() -> Vec<String>,
    /// Replaces an endpoint of the first rule that has one, by an update that keeps the rule's flags.
    drift: &'a dyn Fn(),
}

/// The addresses a LoxiLB holding exactly `rules` advertises: every VIP (and secondary address) of a rule
/// made with `bgp`.
fn advertised_for(rules: &[LbRule]) -> Vec<String> {
    let ips = rules.iter().filter(|r| r.service.bgp).flat_map(|r| std::iter::once(r.service.external_ip.clone()).chain(r.secondary_ips.iter().cloned()));
    ips.collect::<std::collections::BTreeSet<String>>().into_iter().collect()
}

/// Runs `steps` random operations from `seed`; after each, LoxiLB (as `listed` shows it) holds exactly
/// the desired rules, a reconciliation has nothing to do, and the mapping store holds exactly what the
/// executed plans' mapping changes say. Every seventh step the mapping is snapshotted (the journal then
/// starts again after it); every tenth the host restarts over the same files with hybrid recovery, which
/// must find nothing in LoxiLB that the mapping lacks. With `bgp`, rules are made with `bgp`, LoxiLB
/// advertises exactly their VIPs after each step, and every fifth step a rule drifts and the
/// reconciliation that repairs it leaves them advertised exactly so.
fn converges(seed: u64, steps: usize, ipv6: bool, loxilb: Arc<dyn LoxiTransport>, listed: &dyn Fn() -> Vec<Value>, bgp: Option<Bgp>) {
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("loxilb-convergence-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let storage = Arc::new(FileStore::open(&dir.join("mappings.json")).unwrap());
    let planned = Arc::new(Mutex::new(Planned::default()));
    let mut sandbox = start(&loxilb, &storage, &planned, bgp.is_some());
    let mut rng = Rng(seed);
    let mut octavia = Octavia { ipv6, ..Octavia::default() };
    let mut history = Vec::new();
    for step in 0..steps {
        let (method, args) = octavia.step(&mut rng);
        history.push(method);
        let outcome = sandbox.handle(&op(method, args)).expect("policy runs");
        assert!(outcome.error.is_none(), "seed {seed} step {step} {method} failed: {:?}\nafter {history:?}", outcome.error);
        let want = desired(&sandbox.desired_rules().unwrap().iter().map(|d| d.rule.clone()).collect::<Vec<_>>());
        assert_eq!(visible(&listed()), want, "seed {seed} step {step} ({method}): LoxiLB differs from the desired rules\nafter {history:?}");
        let report = sandbox.reconcile().unwrap().unwrap();
        assert!(
            report.reprogrammed.is_empty() && report.orphans.is_empty() && report.failures.is_empty(),
            "seed {seed} step {step} ({method}): reconciliation right after found work: {report:?}\nafter {history:?}"
        );
        store_matches_plans(&sandbox, &storage, &planned, &|| format!("seed {seed} step {step} ({method})\nafter {history:?}"));
        if let Some(bgp) = &bgp {
            let rules: Vec<LbRule> = sandbox.desired_rules().unwrap().iter().map(|d| d.rule.clone()).collect();
            assert_eq!((bgp.advertised)(), advertised_for(&rules), "seed {seed} step {step} ({method}): advertised VIPs\nafter {history:?}");
            if step % 5 == 4 && !rules.is_empty() {
                (bgp.drift)();
                let report = sandbox.reconcile().unwrap().unwrap();
                assert!(report.failures.is_empty(), "seed {seed} step {step}: repairing a drifted rule: {report:?}");
                assert_eq!(visible(&listed()), want, "seed {seed} step {step}: LoxiLB differs from the desired rules after a repair");
                assert_eq!((bgp.advertised)(), advertised_for(&rules), "seed {seed} step {step}: advertised VIPs after a repair\nafter {history:?}");
            }
        }
        if step % 7 == 6 {
            sandbox.mapping().write_snapshot().unwrap();
        }
        if step % 10 == 9 {
            let before = mappings(&mut sandbox);
            sandbox = start(&loxilb, &storage, &planned, bgp.is_some());
            let report = sandbox.recover(RecoveryMode::Hybrid).unwrap().unwrap();
            assert!(
                report.recovered == 0 && report.conflicts.is_empty(),
                "seed {seed} step {step}: hybrid recovery adopted or disputed what LoxiLB holds: {report:?}\nafter {history:?}"
            );
            assert_eq!(mappings(&mut sandbox), before, "seed {seed} step {step}: the mapping changed over a restart");
            store_matches_plans(&sandbox, &storage, &planned, &|| format!("seed {seed} step {step}: after a restart and hybrid recovery"));
        }
    }
    drop(sandbox);
    drop(storage);
    let _ = std::fs::remove_dir_all(&dir);
}

fn mappings(sandbox: &mut Sandbox) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = sandbox.mappings().unwrap().into_iter().map(|e| (e.octavia_id, e.loxilb_key)).collect();
    v.sort();
    v
}

const SEEDS: [u64; 4] = [0x9e37_79b9_7f4a_7c15, 17, 0xdead_beef, 4242];
/// More seeds on demand: `MANY=300 cargo test -p integration-tests --test suite convergence::random_operations_converge_on_the_simulator`.
const MANY: u64 = 0;
const STEPS: usize = 120;

#[test]
fn random_operations_converge_on_the_simulator() {
    for seed in SEEDS.into_iter().chain(1..=std::env::var("MANY").map_or(MANY, |v| v.parse().unwrap())) {
        let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
        converges(seed, STEPS, false, Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5))), &|| sim.rules(), None);
    }
}

#[test]
fn random_operations_on_ipv6_addresses_written_long_converge_on_the_simulator() {
    for seed in SEEDS {
        let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
        converges(seed, STEPS, true, Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5))), &|| sim.rules(), None);
    }
}

#[test]
fn random_operations_with_bgp_advertise_exactly_the_vips_of_the_rules_and_repairs_do_not_count_them_again() {
    for seed in SEEDS {
        let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
        let drift = || {
            let Some(mut rule) = sim.rules().into_iter().find(|r| r["endpoints"].as_array().is_some_and(|e| !e.is_empty())) else { return };
            rule["endpoints"][0]["endpointIP"] = json!("10.254.254.254");
            rule["serviceArguments"]["bgp"] = json!(false);
            let (status, body) = sim.in_process().exchange("POST", "/netlox/v1/config/loadbalancer", Some(&rule.to_string()));
            assert_eq!(status, 200, "{body}");
        };
        let bgp = Bgp { advertised: &|| sim.advertised(), drift: &drift };
        converges(seed, STEPS, false, Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5))), &|| sim.rules(), Some(bgp));
    }
}

#[test]
fn random_operations_converge_on_a_strict_replace_model() {
    for seed in SEEDS {
        let loxi = Arc::new(StrictLoxi::default());
        converges(seed, STEPS, false, loxi.clone(), &|| loxi.listed(), None);
    }
}
