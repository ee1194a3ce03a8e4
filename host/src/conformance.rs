//! The policy kit's conformance scenarios: behaviour any correct policy must have, whatever its naming or
//! NAT choices. Each scenario starts the policy on an empty `MemoryStore` against the LoxiLB simulator
//! (LoxiLB's semantics, and a record of every request), drives it with Octavia operations as the provider
//! sends them, and checks LoxiLB, the statuses and the mapping.
//!
//! `check-policy PATH` prints one line per scenario; `swap-policy` runs the same scenarios as its
//! self-check and refuses a component that fails any.

mod scenarios;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use loxilb_sim::{ErrorStyle, Simulator, SpecValidator};
use serde_json::Value;

use crate::octavia::status::provisioning;
use crate::runtime::bindings::octavia::{ObjectKind, ObjectStatus, ProvisioningStatus};
use crate::runtime::bindings::policy_types::{PolicyError, Settings};
use crate::runtime::instance::{Limits, Sandbox, Wiring};
use crate::runtime::LoadedPolicy;
use crate::storage::MemoryStore;

/// The settings every scenario runs under, whatever the host is configured with: the scenarios check a
/// policy's behaviour, and a NAT mode with stricter rules (dsr) would refuse some of their pools.
pub fn settings() -> Settings {
    Settings { nat_mode: "fullnat".into(), bgp: false }
}

/// LoxiLB's swagger definitions (the simulator's embedded copy unless `LOXILB_SWAGGER` names another).
pub(crate) fn spec() -> &'static SpecValidator {
    static SPEC: OnceLock<SpecValidator> = OnceLock::new();
    SPEC.get_or_init(|| SpecValidator::load_default().unwrap_or_else(|_| SpecValidator::embedded()))
}

pub struct ScenarioResult {
    pub name: &'static str,
    pub about: &'static str,
    pub failure: Option<String>,
    pub elapsed: Duration,
}

pub struct Report {
    /// `name version` as the policy reports it.
    pub policy: String,
    pub results: Vec<ScenarioResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.failure.is_none())
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.results.iter().filter(|r| r.failure.is_some()).map(|r| r.name).collect()
    }

    pub fn render(&self) -> String {
        let mut out = format!("conformance of policy {}:\n", self.policy);
        for r in &self.results {
            match &r.failure {
                None => out.push_str(&format!("  pass  {:<26} {}\n", r.name, r.about)),
                Some(why) => out.push_str(&format!("  FAIL  {:<26} {}\n        {}\n", r.name, r.about, why)),
            }
        }
        let failed = self.failed();
        out.push_str(&match failed.len() {
            0 => format!("{} scenarios passed\n", self.results.len()),
            n => format!("{n} of {} scenarios failed: {}\n", self.results.len(), failed.join(", ")),
        });
        out
    }
}

/// Runs every scenario against a loaded policy. `Err` only when the harness itself cannot run.
pub fn run(policy: &Arc<LoadedPolicy>, limits: &Limits) -> Result<Report> {
    let sim = Simulator::start_with("127.0.0.1:0", ErrorStyle::Coded, spec().clone()).context("starting the LoxiLB simulator for the scenarios")?;
    let mut name = String::new();
    let mut results = Vec::new();
    for (scenario, about, body) in scenarios::ALL {
        let started = Instant::now();
        let failure = match Lab::new(&sim, policy, limits) {
            Ok(mut lab) => {
                if name.is_empty() {
                    name = format!("{} {}", lab.sandbox.info.name, lab.sandbox.info.version);
                }
                body(&mut lab).err().map(|e| format!("{e:#}"))
            }
            Err(e) => Some(format!("{e:#}")),
        };
        results.push(ScenarioResult { name: scenario, about, failure, elapsed: started.elapsed() });
    }
    Ok(Report { policy: if name.is_empty() { policy.path.display().to_string() } else { name }, results })
}

/// Loads a component (refusing one this host cannot run) and runs the scenarios with default limits.
pub fn check(path: &Path) -> Result<Report> {
    let policy = crate::runtime::load(path)?;
    run(&policy, &Limits::default())
}

/// `check-policy PATH`: prints pass/fail per scenario; the exit code is 0 only if all passed.
pub fn cli_check(path: &Path) -> Result<i32> {
    let report = check(path)?;
    print!("{}", report.render());
    Ok(if report.passed() { 0 } else { 1 })
}

/// The in-process simulator as the policy's LoxiLB, answering without HTTP: scenarios and previews check
/// the policy's plans, not the host's HTTP client (tested on its own against the simulator's server), and
/// a loopback connection per request was most of a swap's check (15 scenarios in ~22 ms, ~9 ms without).
/// Real LoxiLB is reached with `HttpLoxi`, never this.
pub struct SimulatorLoxi {
    sim: loxilb_sim::InProcess,
}

impl SimulatorLoxi {
    pub fn to(sim: &Simulator) -> SimulatorLoxi {
        SimulatorLoxi { sim: sim.in_process() }
    }
}

impl crate::loxilb::LoxiTransport for SimulatorLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        Ok(self.sim.exchange(method, &format!("{}{path}", crate::loxilb::BASE_PATH), body))
    }
}

/// One scenario's world: the policy on a fresh store, the simulator emptied, and a cursor into the
/// simulator's request log so every request the policy makes is checked once.
pub(crate) struct Lab<'a> {
    sim: &'a Simulator,
    policy: &'a Arc<LoadedPolicy>,
    limits: &'a Limits,
    store: Arc<MemoryStore>,
    pub sandbox: Sandbox,
    checked: usize,
}

impl<'a> Lab<'a> {
    fn new(sim: &'a Simulator, policy: &'a Arc<LoadedPolicy>, limits: &'a Limits) -> Result<Lab<'a>> {
        sim.restart();
        sim.clear_requests();
        let store = Arc::new(MemoryStore::default());
        let sandbox = Self::start(sim, policy, limits, &store)?;
        Ok(Lab { sim, policy, limits, store, sandbox, checked: 0 })
    }

    fn start(sim: &Simulator, policy: &Arc<LoadedPolicy>, limits: &Limits, store: &Arc<MemoryStore>) -> Result<Sandbox> {
        // Loaded from the store each time: a restart reads the mapping back as a host restart would.
        let mapping = crate::app::load_mapping(store.clone())?;
        let wiring =
            Wiring { loxilb: Arc::new(SimulatorLoxi::to(sim)), mapping, remove_orphans: false, served: Default::default(), log_target: "conformance".into() };
        Sandbox::new(Arc::clone(policy), wiring, limits.clone(), settings()).context("starting the policy")
    }

    /// A new instance over the same store, as after a host restart or a swap.
    pub fn restart_policy(&mut self) -> Result<()> {
        self.sandbox = Self::start(self.sim, self.policy, self.limits, &self.store)?;
        Ok(())
    }

    /// Hands one provider call to `handle`; a trap fails the scenario.
    pub fn apply(&mut self, method: &str, args: Value) -> Result<Vec<ObjectStatus>> {
        let op = crate::convert::operation(method, &args).with_context(|| format!("scenario input for {method}"))?;
        let outcome = self.sandbox.handle(&op).map_err(|e| anyhow!("{method}: {e}"))?;
        self.check_requests().with_context(|| format!("during {method}"))?;
        if let Some(error) = &outcome.error {
            tracing::debug!("{method} refused: {}", error.describe());
        }
        Ok(outcome.statuses)
    }

    /// `validate` for one provider call; a trap fails the scenario.
    pub fn validate(&mut self, method: &str, args: &Value) -> Result<Result<(), PolicyError>> {
        let op = crate::convert::operation(method, args).with_context(|| format!("scenario input for {method}"))?;
        let answer = self.sandbox.validate(&op).map_err(|e| anyhow!("validate {method}: {e}"))?;
        ensure!(self.sim.requests().len() == self.checked, "validate {method} called LoxiLB; validation must not have side effects");
        Ok(answer)
    }

    pub fn reconcile(&mut self) -> Result<()> {
        let report = self.sandbox.reconcile().map_err(|e| anyhow!("reconcile: {e}"))?.map_err(|e| anyhow!("reconcile: {e}"))?;
        self.check_requests().context("during reconcile")?;
        ensure!(report.failures.is_empty(), "reconcile failed: {}", report.failures.join("; "));
        Ok(())
    }

    /// What every request must be: a rule body LoxiLB's spec accepts, with 1..=32 endpoints and a name
    /// LoxiLB does not treat specially.
    fn check_requests(&mut self) -> Result<()> {
        let requests = self.sim.requests();
        for r in &requests[self.checked.min(requests.len())..] {
            if r.method != "POST" || r.path != "/netlox/v1/config/loadbalancer" {
                continue;
            }
            let body = r.json().ok_or_else(|| anyhow!("POST /config/loadbalancer body is not JSON: {}", r.body))?;
            spec().validate_strict("LoadbalanceEntry", &body).map_err(|e| anyhow!("not a valid LoadbalanceEntry ({e}): {body}"))?;
            let endpoints = body["endpoints"].as_array().map_or(0, Vec::len);
            ensure!((1..=32).contains(&endpoints), "a rule with {endpoints} endpoints (LoxiLB takes 1..32): {body}");
            let name = body["serviceArguments"]["name"].as_str().unwrap_or_default();
            for word in [":", "ipvs", "static"] {
                ensure!(!name.contains(word), "rule name {name:?} contains {word:?}, which LoxiLB treats specially");
            }
        }
        self.checked = requests.len();
        Ok(())
    }

    /// Requests that changed LoxiLB since the scenario started.
    pub fn mutations(&self) -> usize {
        self.sim.requests().iter().filter(|r| r.method != "GET").count()
    }

    pub fn rules(&self) -> Vec<Value> {
        self.sim.rules()
    }

    pub fn rule(&self, vip: &str, port: u16, protocol: &str) -> Option<Value> {
        self.sim.rules().into_iter().find(|r| {
            let s = &r["serviceArguments"];
            s["externalIP"] == vip && s["port"] == port && s["protocol"] == protocol
        })
    }

    /// LoxiLB restarted without saved configuration: every rule gone.
    pub fn sim_restart(&self) {
        self.sim.restart();
    }

    /// Endpoint probes the policy posted and has not deleted, by name. (LoxiLB also creates endpoint
    /// hosts of its own for rules in some modes; those are not the policy's.)
    pub fn posted_probes(&self) -> BTreeSet<String> {
        let mut live = BTreeSet::new();
        for r in self.sim.requests() {
            match (r.method.as_str(), r.path.as_str()) {
                ("POST", "/netlox/v1/config/endpoint") if r.status == 200 => {
                    live.insert(r.json().and_then(|b| b["name"].as_str().map(str::to_string)).unwrap_or_default());
                }
                ("DELETE", p) if p.starts_with("/netlox/v1/config/endpoint/") => {
                    for pair in r.query.split('&') {
                        if let Some(name) = pair.strip_prefix("name=") {
                            live.remove(name);
                        }
                    }
                }
                _ => {}
            }
        }
        live
    }

    pub fn mapped_ids(&mut self) -> Result<BTreeSet<String>> {
        Ok(self.sandbox.mappings().map_err(|e| anyhow!("mappings: {e}"))?.into_iter().map(|m| m.octavia_id).collect())
    }

    pub fn expect_mapped(&mut self, ids: &[&str]) -> Result<()> {
        let mapped = self.mapped_ids()?;
        let missing: Vec<&str> = ids.iter().copied().filter(|id| !mapped.contains(*id)).collect();
        ensure!(missing.is_empty(), "the mapping lacks {}", missing.join(", "));
        Ok(())
    }

    pub fn expect_unmapped(&mut self, ids: &[&str]) -> Result<()> {
        let mapped = self.mapped_ids()?;
        let left: Vec<&str> = ids.iter().copied().filter(|id| mapped.contains(*id)).collect();
        ensure!(left.is_empty(), "the mapping still holds {}", left.join(", "));
        Ok(())
    }

    /// LoxiLB holds exactly the rules the policy says it wants (`desired-rules`), with their endpoints.
    pub fn expect_in_sync(&mut self) -> Result<()> {
        let desired = self.sandbox.desired_rules().map_err(|e| anyhow!("desired-rules: {e}"))?;
        let want: BTreeSet<(String, Vec<(String, u16)>)> = desired
            .iter()
            .map(|r| {
                let mut eps: Vec<(String, u16)> = r.rule.endpoints.iter().map(|e| (e.ip.clone(), e.target_port)).collect();
                eps.sort();
                (format!("{}:{}/{}", r.rule.service.external_ip, r.rule.service.port, r.rule.service.protocol), eps)
            })
            .collect();
        let have: BTreeSet<(String, Vec<(String, u16)>)> = self
            .rules()
            .iter()
            .map(|r| {
                let s = &r["serviceArguments"];
                (format!("{}:{}/{}", s["externalIP"].as_str().unwrap_or_default(), s["port"], s["protocol"].as_str().unwrap_or_default()), endpoints(r))
            })
            .collect();
        ensure!(want == have, "LoxiLB holds {have:?}, but desired-rules says {want:?}");
        Ok(())
    }
}

/// A rule's endpoints as (ip, port), sorted.
pub(crate) fn endpoints(rule: &Value) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = rule["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["endpointIP"].as_str().unwrap_or_default().to_string(), e["targetPort"].as_u64().unwrap_or(0) as u16))
        .collect();
    v.sort();
    v
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Loadbalancer => "load balancer",
        ObjectKind::Listener => "listener",
        ObjectKind::Pool => "pool",
        ObjectKind::Member => "member",
        ObjectKind::HealthMonitor => "health monitor",
        ObjectKind::L7policy => "L7 policy",
        ObjectKind::L7rule => "L7 rule",
    }
}

/// The operated object and its parents must leave PENDING: each listed object has the given
/// provisioning status in what the policy reported.
pub(crate) fn expect_statuses(statuses: &[ObjectStatus], want: &[(ObjectKind, &str, ProvisioningStatus)]) -> Result<()> {
    for (kind, id, status) in want {
        let got = statuses.iter().rev().find(|s| s.kind == *kind && s.id == *id).and_then(|s| s.provisioning);
        match got {
            Some(p) if p == *status => {}
            Some(p) => bail!("{} {id} reported {}, expected {}", kind_name(*kind), provisioning(p), provisioning(*status)),
            None => bail!("{} {id} got no provisioning status (Octavia would leave it PENDING), expected {}", kind_name(*kind), provisioning(*status)),
        }
    }
    Ok(())
}
