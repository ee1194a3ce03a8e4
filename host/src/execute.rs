//! The host carrying out what a pure policy decides: an operation's plan (LoxiLB calls with undo, then
//! the mapping changes, then the statuses), recovery from LoxiLB's rules, reconciliation by a linear diff
//! of desired against observed rules, and operating statuses and statistics from LoxiLB's counters.
//!
//! The dry-run preview, the conformance checks and the real path all go through these functions: what a
//! policy's plan says is exactly what happens.

use std::sync::Arc;

use crate::runtime::bindings::loxilb_types::{LbRule, LoxilbCall, ObservedRule};
use crate::runtime::bindings::mapping::{MappingChange, MappingEntry};
use crate::runtime::bindings::octavia::{ObjectStatus, Operation};
use crate::runtime::bindings::policy_types::{DesiredRule, Plan, PolicyError};
use crate::runtime::instance::{describe, CallError, Sandbox};
use crate::wire;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq)]
pub enum OpError {
    /// The policy refused it.
    Refused(PolicyError),
    /// LoxiLB refused a call or could not be reached; LoxiLB was put back as far as possible.
    Loxilb(String),
}

impl OpError {
    pub fn describe(&self) -> String {
        match self {
            OpError::Refused(e) => describe(e),
            OpError::Loxilb(m) => format!("LoxiLB: {m}"),
        }
    }

    /// The policy's refusal, if that is what it is.
    pub fn refusal(&self) -> Option<&PolicyError> {
        match self {
            OpError::Refused(e) => Some(e),
            OpError::Loxilb(_) => None,
        }
    }
}

/// What handling an operation did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Statuses to report to Octavia (success or failure ones).
    pub statuses: Vec<ObjectStatus>,
    pub error: Option<OpError>,
    /// LoxiLB calls made, undo included.
    pub calls_made: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// The mapping as stored.
    Storage,
    /// What LoxiLB's rule list holds, added to the mapping (over an empty store: rebuilt from LoxiLB).
    Loxilb,
    /// Stored, with what LoxiLB holds and the mapping lacks added (conflicts reported).
    Hybrid,
}

#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub loaded: u32,
    pub recovered: u32,
    pub deterministic: u32,
    pub conflicts: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct ReconcileReport {
    /// Rules LoxiLB lacked or had different, re-programmed.
    pub reprogrammed: Vec<String>,
    /// Rules no Octavia object owns.
    pub orphans: Vec<String>,
    /// Orphans removed (only with remove_orphans, and only rules this provider named).
    pub removed: Vec<String>,
    pub failures: Vec<String>,
}

/// Runs calls in order; the first failure stops them.
fn run(loxi: &(dyn crate::loxilb::LoxiTransport + 'static), calls: &[LoxilbCall], made: &mut u32) -> Result<(), String> {
    for call in calls {
        *made += 1;
        wire::call(loxi, call)?;
    }
    Ok(())
}

/// Re-programs a rule `loxi` holds otherwise than wanted (`got`, none when it lacks it), counted.
fn repair_rule(loxi: &(dyn crate::loxilb::LoxiTransport + 'static), want: &DesiredRule, got: Option<&LbRule>) -> Result<(), String> {
    let repaired = run(loxi, &crate::drift::repair(want, got), &mut 0);
    match repaired {
        Ok(()) => crate::metrics::RULES_REPAIRED.inc(),
        Err(_) => crate::metrics::RULE_REPAIRS_FAILED.inc(),
    }
    repaired
}

/// An operation translated: refused, or a plan to carry out. `Sandbox::handle` is [`Sandbox::plan`],
/// [`carry_out`] and [`Sandbox::land`] in a row; the service runs the middle one without holding the
/// policy (see `crate::flights`).
pub enum Planned {
    Refused(Outcome),
    Ready(Plan),
}

/// What carrying out a plan's LoxiLB calls did: an error means the undo calls ran too.
pub struct Carried {
    error: Option<String>,
    calls_made: u32,
}

/// One LoxiLB target and its rules as listed.
pub struct Listed {
    target: crate::loxilb::Target,
    rules: Result<Vec<ObservedRule>, String>,
}

/// Every target of `loxi` with its rules as listed now, for [`Sandbox::reassert`].
pub fn list_targets(loxi: &std::sync::Arc<dyn crate::loxilb::LoxiTransport>) -> Vec<Listed> {
    crate::loxilb::targets(loxi).into_iter().map(|target| Listed { rules: wire::observed(target.transport.as_ref()), target }).collect()
}

/// A plan's LoxiLB calls, in order; on a failed one, the undo calls. Touches neither the policy nor
/// the mapping.
pub fn carry_out(loxi: &(dyn crate::loxilb::LoxiTransport + 'static), plan: &Plan) -> Carried {
    let mut calls_made = 0;
    let Err(error) = run(loxi, &plan.calls, &mut calls_made) else { return Carried { error: None, calls_made } };
    let mut undo_failures = Vec::new();
    for call in &plan.undo {
        calls_made += 1;
        if let Err(e) = wire::call(loxi, call) {
            undo_failures.push(e);
        }
    }
    let error =
        if undo_failures.is_empty() { error } else { format!("{error}; rolling back also failed ({}): reconciliation will retry", undo_failures.join("; ")) };
    Carried { error: Some(error), calls_made }
}

impl Sandbox {
    /// Translates an operation and executes the plan: LoxiLB calls; on a failed one the undo calls and the
    /// failure statuses (the mapping unchanged); otherwise the mapping changes and the success statuses.
    pub fn handle(&mut self, op: &Operation) -> Result<Outcome, CallError> {
        match self.plan(op)? {
            Planned::Refused(outcome) => Ok(outcome),
            Planned::Ready(plan) => {
                let carried = carry_out(self.wiring().loxilb.as_ref(), &plan);
                Ok(self.land(plan, carried))
            }
        }
    }

    /// The desired rules of one load balancer's listeners.
    fn desired_rules_of(&mut self, lb_id: &str) -> Result<Vec<DesiredRule>, CallError> {
        let children: std::collections::HashSet<String> = self.mapping().children(lb_id).into_iter().collect();
        Ok(self.desired_rules()?.iter().filter(|d| children.contains(&d.owner)).cloned().collect())
    }

    /// Carries out `delete`, the cascade delete of load balancer `lb_id`, which Octavia no longer has,
    /// except at the rules LoxiLB holds at its VIPs and ports under another name than the policy gives
    /// its own: those were given to another load balancer since this host's mapping of it went stale
    /// (over AMQP, created through another host), and deleting them would stop serving it. They are
    /// adopted instead, as a recovery adopts rules. Those rules' labels, or why LoxiLB was not changed.
    pub fn remove_gone(&mut self, lb_id: &str, delete: &Operation) -> Result<Result<Vec<String>, String>, CallError> {
        let mut plan = match self.plan(delete)? {
            Planned::Ready(plan) => plan,
            Planned::Refused(outcome) => return Ok(Err(outcome.error.map(|e| e.describe()).unwrap_or_default())),
        };
        let own: std::collections::HashMap<String, String> =
            self.desired_rules_of(lb_id)?.into_iter().map(|d| (wire::key_id(&d.rule), d.rule.service.name)).collect();
        let deleting: std::collections::HashSet<String> = plan.calls.iter().filter_map(wire::call_key_id).collect();
        let observed = match wire::observed(self.wiring().loxilb.as_ref()) {
            Ok(observed) => observed,
            Err(e) => return Ok(Err(e)),
        };
        let (spared, others): (std::collections::HashSet<String>, Vec<&ObservedRule>) =
            observed.iter().map(|o| (wire::key_id(&o.rule), o)).filter(|(id, o)| deleting.contains(id) && own.get(id) != Some(&o.rule.service.name)).unzip();
        let kept = |call: &LoxilbCall| wire::call_key_id(call).is_none_or(|id| !spared.contains(&id));
        plan.calls.retain(kept);
        plan.undo.retain(kept);
        let carried = carry_out(self.wiring().loxilb.as_ref(), &plan);
        if let Some(error) = self.land(plan, carried).error {
            return Ok(Err(error.describe()));
        }
        if !others.is_empty() {
            let left: Vec<LbRule> = others.iter().map(|o| o.rule.clone()).collect();
            let found = self.recovery(&left)?;
            self.commit(found.mapping);
        }
        Ok(Ok(others.iter().map(|o| format!("{} ({})", wire::label(&o.rule), o.rule.service.name)).collect()))
    }

    /// The policy's answer to an operation.
    pub fn plan(&mut self, op: &Operation) -> Result<Planned, CallError> {
        Ok(match self.translate(op)? {
            Ok(plan) => Planned::Ready(plan),
            Err(refusal) => {
                tracing::warn!(policy = %self.info.name, "operation refused: {}", describe(&refusal.error));
                Planned::Refused(Outcome { statuses: refusal.statuses, error: Some(OpError::Refused(refusal.error)), calls_made: 0 })
            }
        })
    }

    /// A carried-out plan's end: its mapping changes committed if LoxiLB took every call, and the
    /// statuses that go with how it went.
    pub fn land(&self, plan: Plan, carried: Carried) -> Outcome {
        let Carried { error, calls_made } = carried;
        if let Some(error) = error {
            tracing::error!(policy = %self.info.name, "operation failed: LoxiLB: {error}");
            return Outcome { statuses: plan.failure_statuses, error: Some(OpError::Loxilb(error)), calls_made };
        }
        self.commit(plan.mapping);
        Outcome { statuses: plan.statuses, error: None, calls_made }
    }

    /// Shows `observer` every batch of mapping changes this sandbox commits from now on (an operation's
    /// plan, a recovery's), before the mapping applies it: a test can then hold the store to exactly what
    /// the plans said, journal included, rather than to what the same code read back.
    pub fn observe_commits(&mut self, observer: impl Fn(&[MappingChange]) + Send + Sync + 'static) {
        self.commit_observer = Some(Box::new(observer));
    }

    /// Journals mapping changes. A storage failure does not undo what LoxiLB already carries: it is
    /// logged loudly, and reconciliation or a re-sync repairs it.
    fn commit(&self, changes: Vec<MappingChange>) {
        if let Some(observer) = &self.commit_observer {
            observer(&changes);
        }
        for change in &changes {
            if let MappingChange::Put(e) = change {
                tracing::debug!("mapping put {} → {}", e.octavia_id, e.loxilb_key);
            }
        }
        if let Err(e) = self.mapping().apply(changes) {
            tracing::error!("could not journal a mapping change (kept in memory): {e}");
        }
    }

    /// Recovery at start or on demand. `Storage` is what the host loaded; `Loxilb` and `Hybrid` add what
    /// LoxiLB holds and the mapping lacks (the mapping is never cleared here: runtime recovery calls this
    /// on the serving mapping; a rebuild from LoxiLB alone starts from an empty store).
    pub fn recover(&mut self, mode: RecoveryMode) -> Result<Result<RecoveryReport, String>, CallError> {
        let loaded = self.mapping().len() as u32;
        if mode == RecoveryMode::Storage {
            return Ok(Ok(RecoveryReport { loaded, ..RecoveryReport::default() }));
        }
        let observed = match wire::observed(self.wiring().loxilb.as_ref()) {
            Ok(observed) => observed,
            Err(e) => return Ok(Err(e)),
        };
        let rules: Vec<LbRule> = observed.into_iter().map(|o| o.rule).collect();
        let found = self.recovery(&rules)?;
        for conflict in &found.conflicts {
            tracing::warn!("recovery conflict: {conflict}");
        }
        tracing::info!(
            "recovered {} mappings from {} LoxiLB rules ({} without Octavia ids, {} conflicts)",
            found.recovered,
            rules.len(),
            found.deterministic,
            found.conflicts.len()
        );
        self.commit(found.mapping);
        Ok(Ok(RecoveryReport { loaded, recovered: found.recovered, deterministic: found.deterministic, conflicts: found.conflicts }))
    }

    /// Makes LoxiLB hold the desired rules: missing or different ones are re-programmed; rules nobody owns
    /// are reported, and deleted only with `remove_orphans` and when this provider named them. The mapping
    /// is only read: a swap's reconciliation leaves it as it was.
    pub fn reconcile(&mut self) -> Result<Result<ReconcileReport, String>, CallError> {
        let loxi = self.wiring().loxilb.clone();
        self.reconcile_on(loxi.as_ref(), &[])
    }

    /// `reconcile` against one target: the policy's LoxiLB, or one node of its cluster. `missed_deletes`
    /// names the rules deleted while that node did not answer ([`crate::loxilb::ClusterNode::missed_deletes`]):
    /// those it holds and nothing wants are deleted there, whatever `remove_orphans` says (a node cut off
    /// keeps its rules, and would go on serving deleted load balancers).
    pub fn reconcile_on(
        &mut self,
        loxi: &(dyn crate::loxilb::LoxiTransport + 'static),
        missed_deletes: &[String],
    ) -> Result<Result<ReconcileReport, String>, CallError> {
        match wire::observed(loxi) {
            Ok(observed) => self.reconcile_observed(loxi, &observed, missed_deletes),
            Err(e) => Ok(Err(e)),
        }
    }

    /// `reconcile_on` from rules `loxi` listed already; the list must be no older than the mapping and
    /// the policy (see `Monitor::reconcile_target`), or it would undo what came after it.
    pub fn reconcile_observed(
        &mut self,
        loxi: &(dyn crate::loxilb::LoxiTransport + 'static),
        observed: &[ObservedRule],
        missed_deletes: &[String],
    ) -> Result<Result<ReconcileReport, String>, CallError> {
        let desired = self.served_rules()?;
        let drift = crate::drift::drift(&desired, observed);
        let mut report = ReconcileReport::default();
        for (want, got) in drift.repairs() {
            let label = wire::label(&want.rule);
            match repair_rule(loxi, want, got) {
                Ok(()) => report.reprogrammed.push(label),
                Err(e) => report.failures.push(format!("{label}: {e}")),
            }
        }
        let remove_orphans = self.wiring().remove_orphans;
        // A host serving some shards sees the other hosts' rules, and those of its load balancers it has
        // not read back yet, as wanted by nobody: they are not orphans.
        let judges_orphans = self.wiring().served.everything();
        for o in drift.extra {
            let key = wire::rule_key(&o.rule);
            let label = format!("{} ({})", wire::label(&o.rule), o.rule.service.name);
            let deleted_meanwhile = !missed_deletes.is_empty() && missed_deletes.contains(&wire::rule_path(&o.rule));
            if !deleted_meanwhile && !judges_orphans {
                continue;
            }
            if !deleted_meanwhile {
                report.orphans.push(label.clone());
            }
            if deleted_meanwhile || (remove_orphans && self.owns_rule(&o.rule.service.name)?) {
                match wire::call(loxi, &LoxilbCall::DeleteRule(key)) {
                    Ok(()) => report.removed.push(label),
                    Err(e) => report.failures.push(format!("{label}: {e}")),
                }
            }
        }
        for label in &report.reprogrammed {
            tracing::info!("reconcile: re-programmed {label}");
        }
        for label in &report.orphans {
            tracing::warn!("reconcile: orphan rule {label}");
        }
        Ok(Ok(report))
    }

    /// The desired rules of the load balancers this host acts for (`served.rs`): all of them but over
    /// AMQP, where another host may serve the rest from a newer mapping.
    pub fn served_rules(&mut self) -> Result<Arc<Vec<DesiredRule>>, CallError> {
        let desired = self.desired_rules()?;
        let served = &self.wiring().served;
        if served.everything() {
            return Ok(desired);
        }
        let kept = desired.iter().filter(|d| served.covers(self.mapping(), &d.owner)).cloned().collect();
        Ok(Arc::new(kept))
    }

    /// A failover: every LoxiLB target (each node of a cluster) made to hold this load balancer's rules as
    /// the mapping has them, whatever the mapping says was programmed. An operator fails a load balancer
    /// over when its traffic is wrong; its rules are compared with what each node `listed` and repaired
    /// there at once (a rule missing, or drifted), rather than at the next reconciliation.
    ///
    /// The lists are read before the policy is held ([`list_targets`]), so a slow node holds up no
    /// operation. They cannot be older than anything they are compared for: the wanted rules come from
    /// the mapping now, this load balancer's operations run one after another (this is one of them), and
    /// no other load balancer's rule has a key of this one's. A repair that a reconciliation made in
    /// between is made again (LoxiLB answers "exists").
    ///
    /// Answers the repairs made; an error when no target answered or one refused a repair. A node that did
    /// not answer, or refused, is marked out of date, for the monitor to bring up to date.
    pub fn reassert(&mut self, lb_id: &str, listed: Vec<Listed>) -> Result<Result<Vec<String>, String>, CallError> {
        let wanted = self.desired_rules_of(lb_id)?;
        let identities: std::collections::HashSet<wire::Identity> = wanted.iter().map(|w| wire::identity(&w.rule)).collect();
        let (targets, mut answered, mut repaired, mut failures) = (listed.len(), 0, Vec::new(), Vec::new());
        for Listed { target, rules } in listed {
            let observed = match rules {
                Ok(observed) => observed,
                Err(e) => {
                    tracing::warn!("failover of {lb_id}: {} does not answer ({e}); it is repaired once it does", target.label);
                    if let Some(node) = &target.node {
                        node.out_of_date();
                    }
                    continue;
                }
            };
            answered += 1;
            // Only this load balancer's rules: the others' are reconciliation's to repair.
            let mine: Vec<ObservedRule> = observed.into_iter().filter(|o| identities.contains(&wire::identity(&o.rule))).collect();
            let drift = crate::drift::drift(&wanted, &mine);
            for (want, got) in drift.repairs() {
                let rule = format!("{} {}", target.label, wire::label(&want.rule));
                match repair_rule(target.transport.as_ref(), want, got) {
                    Ok(()) => repaired.push(rule),
                    Err(e) => {
                        failures.push(format!("{rule}: {e}"));
                        if let Some(node) = &target.node {
                            node.out_of_date();
                        }
                    }
                }
            }
        }
        Ok(if answered == 0 {
            Err(format!("none of the {targets} LoxiLB targets answered"))
        } else if !failures.is_empty() {
            Err(failures.join("; "))
        } else {
            Ok(repaired)
        })
    }

    /// The whole mapping, in id order.
    pub fn mappings(&self) -> Result<Vec<MappingEntry>, CallError> {
        Ok(self.mapping().entries())
    }
}
