//! `swap-policy --dry-run`: the LoxiLB changes a swap would make, computed without touching LoxiLB.
//!
//! A swap applies a policy change through the new policy's `reconcile` against a LoxiLB that holds what
//! the current policy wants. The preview reproduces exactly that in the LoxiLB simulator: the current
//! policy (on one copy of the mapping) programs its desired rules into an empty simulator, then the
//! candidate (on another copy) reconciles against it. The simulator's requests are the calls the swap
//! will make, and its rule table before and after gives the rules added, changed field by field, and
//! removed, keyed as LoxiLB keys rules (VIP, port, protocol, block, host).
//!
//! The preview assumes LoxiLB holds what the current policy wants, as reconciliation keeps it; drift the
//! real reconcile would repair on the way is not a consequence of the policy change and is not listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use loxilb_sim::{ErrorStyle, Simulator};
use serde_json::Value;

use super::{check, name_of, SWAPS};
use crate::runtime::instance::{Sandbox, Wiring};
use crate::service::Service;
use crate::storage::MemoryStore;

#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RuleChange {
    Added { key: String, rule: Value },
    Changed { key: String, fields: Vec<FieldChange> },
    Removed { key: String, rule: Value },
}

/// One request the swap will send to LoxiLB.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    /// Path below `/netlox/v1`, with its query.
    pub path: String,
    pub body: Option<Value>,
}

pub struct Preview {
    pub from: String,
    pub to: String,
    pub path: PathBuf,
    pub loadbalancers: usize,
    pub scenarios: usize,
    pub changes: Vec<RuleChange>,
    pub calls: Vec<Call>,
    /// Rules the candidate no longer wants but leaves in LoxiLB (`remove_orphans` is off).
    pub left_in_place: Vec<String>,
    /// Rules the current policy itself could not program, or the candidate could not reconcile.
    pub failures: Vec<String>,
}

/// LoxiLB's identity of a rule, as text.
pub fn rule_key(rule: &Value) -> String {
    let s = &rule["serviceArguments"];
    let mut key = format!("{}:{}/{}", s["externalIP"].as_str().unwrap_or_default(), s["port"], s["protocol"].as_str().unwrap_or_default());
    if s["block"].as_u64().unwrap_or(0) != 0 {
        key.push_str(&format!(" block {}", s["block"]));
    }
    if let Some(host) = s["host"].as_str().filter(|h| !h.is_empty()) {
        key.push_str(&format!(" host {host}"));
    }
    key
}

/// A listed rule as field → value, lists in a stable order, run-time counters left out.
fn fields(rule: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    if let Some(service) = rule["serviceArguments"].as_object() {
        for (k, v) in service {
            out.insert(format!("serviceArguments.{k}"), v.clone());
        }
    }
    let sorted = |key: &str, show: &dyn Fn(&Value) -> String| -> Value {
        let mut items: Vec<String> = rule[key].as_array().into_iter().flatten().map(show).collect();
        items.sort();
        Value::from(items)
    };
    out.insert(
        "endpoints".into(),
        sorted("endpoints", &|e| format!("{}:{} weight {}", e["endpointIP"].as_str().unwrap_or_default(), e["targetPort"], e["weight"])),
    );
    out.insert("allowedSources".into(), sorted("allowedSources", &|p| p["prefix"].as_str().unwrap_or_default().to_string()));
    out.insert("secondaryIPs".into(), sorted("secondaryIPs", &|p| p["secondaryIP"].as_str().unwrap_or_default().to_string()));
    out
}

/// The rule-level difference between two LoxiLB rule lists.
pub fn diff(before: &[Value], after: &[Value]) -> Vec<RuleChange> {
    let index = |rules: &[Value]| rules.iter().map(|r| (rule_key(r), r.clone())).collect::<BTreeMap<String, Value>>();
    let (old, new) = (index(before), index(after));
    let mut out = Vec::new();
    for (key, rule) in &old {
        match new.get(key) {
            None => out.push(RuleChange::Removed { key: key.clone(), rule: rule.clone() }),
            Some(next) => {
                let (a, b) = (fields(rule), fields(next));
                let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
                names.sort();
                names.dedup();
                let changed: Vec<FieldChange> = names
                    .into_iter()
                    .filter(|n| a.get(*n) != b.get(*n))
                    .map(|n| FieldChange { field: n.clone(), from: a.get(n).cloned().unwrap_or(Value::Null), to: b.get(n).cloned().unwrap_or(Value::Null) })
                    .collect();
                if !changed.is_empty() {
                    out.push(RuleChange::Changed { key: key.clone(), fields: changed });
                }
            }
        }
    }
    for (key, rule) in &new {
        if !old.contains_key(key) {
            out.push(RuleChange::Added { key: key.clone(), rule: rule.clone() });
        }
    }
    out
}

/// The requests that changed the simulator's state, as the swap will send them.
pub fn mutations(sim: &Simulator) -> Vec<Call> {
    sim.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| {
            let path = r.path.strip_prefix(crate::loxilb::BASE_PATH).unwrap_or(&r.path).to_string();
            let path = if r.query.is_empty() { path } else { format!("{path}?{}", r.query) };
            Call { method: r.method.clone(), body: r.json(), path }
        })
        .collect()
}

/// Checks the candidate as a swap would, then computes what swapping to it would change in LoxiLB.
pub fn preview(service: &Service, path: &Path) -> Result<Preview> {
    let _one = SWAPS.lock().unwrap_or_else(|e| e.into_inner());
    let checked = check(service, path)?;
    let (current_policy, seed_store, candidate_store, limits, settings, loadbalancers, remove_orphans, served) = {
        let sandbox = service.sandbox.lock().unwrap();
        let storage = Arc::clone(sandbox.storage());
        let copy = || MemoryStore::copy_of(storage.as_ref()).map_err(|e| anyhow!("reading the current mapping: {e}"));
        let loadbalancers = sandbox.mapping().ids(crate::runtime::bindings::mapping::ResourceType::Loadbalancer).len();
        (
            Arc::clone(&sandbox.policy),
            copy()?,
            copy()?,
            sandbox.limits().clone(),
            sandbox.settings().clone(),
            loadbalancers,
            sandbox.wiring().remove_orphans,
            sandbox.wiring().served.clone(),
        )
    };
    let sim =
        Simulator::start_with("127.0.0.1:0", ErrorStyle::Coded, crate::conformance::spec().clone()).context("starting the LoxiLB simulator for the preview")?;
    let loxilb = Arc::new(crate::conformance::SimulatorLoxi::to(&sim));
    let wiring = |storage: MemoryStore| -> Result<Wiring> {
        let mapping = crate::app::load_mapping(Arc::new(storage))?;
        Ok(Wiring { loxilb: loxilb.clone(), mapping, remove_orphans, served: served.clone(), log_target: "preview".into() })
    };

    let mut failures = Vec::new();
    let mut current =
        Sandbox::new(current_policy, wiring(seed_store)?, limits.clone(), settings.clone()).context("starting the current policy on a copy of the mapping")?;
    match current.reconcile() {
        Ok(Ok(report)) => failures.extend(report.failures.into_iter().map(|f| format!("current policy: {f}"))),
        Ok(Err(e)) => failures.push(format!("current policy: {e}")),
        Err(e) => failures.push(format!("current policy: {e}")),
    }
    let before = sim.rules();
    sim.clear_requests();

    let mut candidate =
        Sandbox::new(Arc::clone(&checked.policy), wiring(candidate_store)?, limits, settings).context("starting the candidate on a copy of the mapping")?;
    let mut left_in_place = Vec::new();
    match candidate.reconcile() {
        Ok(Ok(report)) => {
            left_in_place = report.orphans.iter().filter(|o| !report.removed.contains(o)).cloned().collect();
            failures.extend(report.failures.into_iter().map(|f| format!("candidate: {f}")));
        }
        Ok(Err(e)) => failures.push(format!("candidate: {e}")),
        Err(e) => failures.push(format!("candidate: {e}")),
    }
    Ok(Preview {
        from: name_of(&current),
        to: name_of(&candidate),
        path: path.to_path_buf(),
        loadbalancers,
        scenarios: checked.conformance.results.len(),
        changes: diff(&before, &sim.rules()),
        calls: mutations(&sim),
        left_in_place,
        failures,
    })
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

impl Preview {
    pub fn render(&self) -> String {
        let count = |f: fn(&RuleChange) -> bool| self.changes.iter().filter(|c| f(c)).count();
        let mut out = format!(
            "dry run: swapping {} for {} ({}) over {} load balancers; {} conformance scenarios passed\n",
            self.from,
            self.to,
            self.path.display(),
            self.loadbalancers,
            self.scenarios
        );
        out.push_str(&format!(
            "LoxiLB rules: {} added, {} changed, {} removed\n",
            count(|c| matches!(c, RuleChange::Added { .. })),
            count(|c| matches!(c, RuleChange::Changed { .. })),
            count(|c| matches!(c, RuleChange::Removed { .. }))
        ));
        for change in &self.changes {
            match change {
                RuleChange::Added { key, rule } => out.push_str(&format!("  + {key}  {}\n", rule)),
                RuleChange::Removed { key, .. } => out.push_str(&format!("  - {key}\n")),
                RuleChange::Changed { key, fields } => {
                    out.push_str(&format!("  ~ {key}\n"));
                    for f in fields {
                        out.push_str(&format!("      {}: {} -> {}\n", f.field, show(&f.from), show(&f.to)));
                    }
                }
            }
        }
        for rule in &self.left_in_place {
            out.push_str(&format!("  = {rule}: no longer wanted, left in place (remove_orphans is off)\n"));
        }
        out.push_str(&format!("LoxiLB calls the swap will make: {}\n", self.calls.len()));
        for call in &self.calls {
            match &call.body {
                Some(body) => out.push_str(&format!("  {} {} {}\n", call.method, call.path, body)),
                None => out.push_str(&format!("  {} {}\n", call.method, call.path)),
            }
        }
        for failure in &self.failures {
            out.push_str(&format!("  failure: {failure}\n"));
        }
        if self.changes.is_empty() && self.calls.is_empty() {
            out.push_str("no LoxiLB changes\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(port: u16, name: &str, endpoints: &[(&str, u64)]) -> Value {
        let eps: Vec<Value> =
            endpoints.iter().map(|(ip, w)| json!({"endpointIP": ip, "targetPort": 80, "weight": w, "state": "active", "counter": "7:99"})).collect();
        json!({"serviceArguments": {"externalIP": "10.0.0.1", "port": port, "protocol": "tcp", "name": name}, "endpoints": eps, "secondaryIPs": null, "allowedSources": null})
    }

    #[test]
    fn diff_is_keyed_by_rule_identity_and_names_each_changed_field() {
        let before = vec![rule(80, "a", &[("10.1.0.1", 1), ("10.1.0.2", 1)]), rule(81, "b", &[("10.1.0.3", 1)])];
        let after = vec![rule(80, "a2", &[("10.1.0.2", 1), ("10.1.0.1", 1)]), rule(82, "c", &[("10.1.0.4", 1)])];
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(
            changes[0],
            RuleChange::Changed {
                key: "10.0.0.1:80/tcp".into(),
                fields: vec![FieldChange { field: "serviceArguments.name".into(), from: json!("a"), to: json!("a2") }]
            },
            "endpoint order and counters are not changes"
        );
        assert!(matches!(&changes[1], RuleChange::Removed { key, .. } if key == "10.0.0.1:81/tcp"));
        assert!(matches!(&changes[2], RuleChange::Added { key, .. } if key == "10.0.0.1:82/tcp"));
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn rule_keys_carry_block_and_host_only_when_set() {
        let mut r = rule(80, "a", &[]);
        assert_eq!(rule_key(&r), "10.0.0.1:80/tcp");
        r["serviceArguments"]["block"] = json!(2);
        r["serviceArguments"]["host"] = json!("example.org");
        assert_eq!(rule_key(&r), "10.0.0.1:80/tcp block 2 host example.org");
    }
}
