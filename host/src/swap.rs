//! Replacing the running policy without stopping the host.
//!
//! A candidate is loaded (compiled, or taken from the component cache, and its WIT version checked),
//! passes the conformance scenarios, and is started on a copy of the current mapping, where `init` must
//! load it, `mappings` must list every object the current policy maps and `desired-rules` must answer.
//! Only then is it started on the real mapping and LoxiLB, outside the lock, and switched in under the
//! service's sandbox lock, which it takes only once no operation is in flight (`crate::flights`): the
//! ones in flight land on the old policy and the next one is translated by the new; none is refused or
//! lost. Under the lock the new instance first reloads the mapping from storage (picking up what the old
//! one journalled since `init`), then takes over, and its `reconcile` brings LoxiLB in line with the new
//! policy: exactly the calls that `--dry-run` ([`preview`]) lists.
//!
//! A candidate failing any step is refused with the reason, and the old policy keeps serving.

pub mod admin;
pub mod preview;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::conformance;
use crate::execute::ReconcileReport;
use crate::loxilb::LoxiTransport;
use crate::runtime::instance::{Sandbox, Wiring};
use crate::runtime::LoadedPolicy;
use crate::service::Service;
use crate::storage::MemoryStore;

pub use admin::{cli_swap, start_admin, Admin};

/// One swap (or preview) at a time: two would each check against a mapping the other is replacing.
static SWAPS: Mutex<()> = Mutex::new(());

/// A LoxiLB for checks and previews: records what the policy asks, answers as an empty LoxiLB, and
/// touches nothing.
#[derive(Default)]
pub struct OfflineLoxi {
    pub requests: Mutex<Vec<(String, String)>>,
}

impl LoxiTransport for OfflineLoxi {
    fn request(&self, method: &str, path: &str, _body: Option<&str>) -> Result<(u16, String), String> {
        self.requests.lock().unwrap().push((method.to_string(), path.to_string()));
        Ok((200, if method == "GET" { r#"{"lbAttr":[],"Attr":[]}"#.into() } else { r#"{"result":"Success"}"#.into() }))
    }
}

/// A candidate that passed every check, ready to be switched in.
pub struct Checked {
    pub policy: Arc<LoadedPolicy>,
    pub conformance: conformance::Report,
    /// Objects in the mapping the candidate loaded (the same the current policy maps).
    pub mapped: usize,
    pub elapsed: Duration,
}

fn name_of(sandbox: &Sandbox) -> String {
    format!("{} {}", sandbox.info.name, sandbox.info.version)
}

/// Loads and checks a candidate against the service's current mapping, without touching the real
/// storage or LoxiLB. `Err` is the refusal, with its reason.
pub fn check(service: &Service, path: &Path) -> Result<Checked> {
    let started = Instant::now();
    let policy = crate::runtime::load(path).map_err(|e| anyhow!("refused {}: {e:#}", path.display()))?;
    let (copy, current, limits, settings) = {
        let sandbox = service.sandbox.lock().unwrap();
        let copy = MemoryStore::copy_of(sandbox.storage().as_ref()).map_err(|e| anyhow!("reading the current mapping: {e}"))?;
        // A current policy that cannot list its mapping is no reason to keep it: skip that comparison.
        let current: Option<BTreeSet<String>> = match sandbox.mappings() {
            Ok(entries) => Some(entries.into_iter().map(|m| m.octavia_id).collect()),
            Err(e) => {
                tracing::warn!("the current policy cannot list its mapping ({e}); not comparing the candidate's");
                None
            }
        };
        (copy, current, sandbox.limits().clone(), sandbox.settings().clone())
    };
    let refuse = |why: String| anyhow!("refused {}: {why}", path.display());

    let report = conformance::run(&policy, &limits).context("running the conformance scenarios")?;
    if !report.passed() {
        let failed: Vec<String> = report.results.iter().filter_map(|r| r.failure.as_ref().map(|why| format!("{} ({why})", r.name))).collect();
        return Err(refuse(format!("conformance scenarios failed: {}", failed.join("; "))));
    }

    let mapping = crate::app::load_mapping(Arc::new(copy)).map_err(|e| refuse(format!("{e:#}")))?;
    let wiring =
        Wiring { loxilb: Arc::new(OfflineLoxi::default()), mapping, remove_orphans: false, served: Default::default(), log_target: "swap-check".into() };
    let mut probe =
        Sandbox::new(Arc::clone(&policy), wiring, limits, settings).map_err(|e| refuse(format!("it cannot start on the current mapping: {e:#}")))?;
    let mapped: BTreeSet<String> =
        probe.mappings().map_err(|e| refuse(format!("`mappings` failed on the current mapping: {e}")))?.into_iter().map(|m| m.octavia_id).collect();
    let current = current.unwrap_or_default();
    let missing: Vec<&String> = current.difference(&mapped).collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
        return Err(refuse(format!(
            "it lost {} of the {} mapped objects when loading the mapping ({}{})",
            missing.len(),
            current.len(),
            shown.join(", "),
            if missing.len() > shown.len() { ", …" } else { "" }
        )));
    }
    let rules = probe.desired_rules().map_err(|e| refuse(format!("`desired-rules` failed on the current mapping: {e}")))?;
    let mut keys = BTreeSet::new();
    for rule in rules.iter() {
        let s = &rule.rule.service;
        let key = format!("{}:{}/{} block {} host {:?}", s.external_ip, s.port, s.protocol, s.block, s.host);
        if !(1..=32).contains(&rule.rule.endpoints.len()) {
            return Err(refuse(format!("it wants rule {key} with {} endpoints (LoxiLB takes 1..32)", rule.rule.endpoints.len())));
        }
        if !keys.insert(key.clone()) {
            return Err(refuse(format!("it wants two rules with the same LoxiLB key {key}")));
        }
    }
    Ok(Checked { policy, conformance: report, mapped: mapped.len(), elapsed: started.elapsed() })
}

pub struct SwapReport {
    pub from: String,
    pub to: String,
    pub path: PathBuf,
    pub wit_version: String,
    pub digest: String,
    pub mapped: usize,
    pub scenarios: usize,
    /// What the new policy's reconcile did to LoxiLB; `Err` if it could not run (the next
    /// reconciliation pass retries).
    pub reconcile: Result<ReconcileReport, String>,
    /// Loading and checking, outside the lock.
    pub checked_in: Duration,
    /// Starting the real instance, outside the lock.
    pub started_in: Duration,
    /// Under the lock: reload, switch, reconcile.
    pub switched_in: Duration,
}

impl SwapReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "swapped {} for {} ({}, WIT {}, sha256 {})\n  {} conformance scenarios passed; {} mapped objects carried over\n  checked in {:.1} ms, started in {:.1} ms, switched in {:.1} ms\n",
            self.from,
            self.to,
            self.path.display(),
            self.wit_version,
            &self.digest[..12.min(self.digest.len())],
            self.scenarios,
            self.mapped,
            ms(self.checked_in),
            ms(self.started_in),
            ms(self.switched_in),
        );
        match &self.reconcile {
            Ok(r) => {
                out.push_str(&format!(
                    "  reconcile: {} rules re-programmed, {} removed, {} left in place\n",
                    r.reprogrammed.len(),
                    r.removed.len(),
                    r.orphans.len().saturating_sub(r.removed.len())
                ));
                for failure in &r.failures {
                    out.push_str(&format!("  reconcile failure: {failure}\n"));
                }
            }
            Err(e) => out.push_str(&format!("  reconcile did not run ({e}); the next reconciliation pass retries\n")),
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A checked candidate, started on the real mapping and LoxiLB and waiting to be switched in. It holds the
/// swap lock: no other swap or preview runs until it is switched or dropped.
pub struct Prepared {
    checked: Checked,
    fresh: Sandbox,
    path: PathBuf,
    started_in: Duration,
    _one: MutexGuard<'static, ()>,
}

/// Checks the component at `path` and starts it on the service's mapping and LoxiLB, outside the lock:
/// the service keeps serving on the current policy meanwhile.
pub fn prepare(service: &Service, path: &Path) -> Result<Prepared> {
    let one = SWAPS.lock().unwrap_or_else(|e| e.into_inner());
    let checked = check(service, path)?;
    let started = Instant::now();
    let (wiring, limits, settings) = {
        let sandbox = service.sandbox.lock().unwrap();
        (sandbox.wiring().clone(), sandbox.limits().clone(), sandbox.settings().clone())
    };
    let fresh = Sandbox::new(Arc::clone(&checked.policy), wiring, limits, settings)
        .map_err(|e| anyhow!("refused {}: it cannot start on the real mapping: {e:#}", path.display()))?;
    Ok(Prepared { checked, fresh, path: path.to_path_buf(), started_in: started.elapsed(), _one: one })
}

impl Prepared {
    /// Switches the service to the prepared policy and reconciles LoxiLB with it.
    pub fn switch(self, service: &Service) -> Result<SwapReport> {
        let Prepared { checked, fresh, path, started_in, _one } = self;
        let switching = Instant::now();
        let mut current = service.sandbox.lock().unwrap();
        // The mapping is the host's and shared by both instances: nothing to hand over or reload.
        let from = name_of(&current);
        let old = std::mem::replace(&mut *current, fresh);
        let reconcile = match current.reconcile() {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.to_string()),
        };
        let to = name_of(&current);
        let storage = Arc::clone(current.storage());
        drop(current);
        let switched_in = switching.elapsed();
        drop(old);
        if let Err(e) = storage.sync() {
            tracing::error!("mapping journal not durable after the swap's reconcile: {e}");
        }
        let report = SwapReport {
            from,
            to,
            wit_version: checked.policy.wit_version.clone(),
            digest: checked.policy.digest.clone(),
            path,
            mapped: checked.mapped,
            scenarios: checked.conformance.results.len(),
            reconcile,
            checked_in: checked.elapsed,
            started_in,
            switched_in,
        };
        tracing::warn!("{}", report.render().trim_end());
        Ok(report)
    }
}

/// Checks the component at `path` and, if it passes, switches the service to it.
pub fn swap(service: &Service, path: &Path) -> Result<SwapReport> {
    let result = prepare(service, path).and_then(|prepared| prepared.switch(service));
    crate::metrics::record_swap(if result.is_ok() { "ok" } else { "refused" });
    result
}
