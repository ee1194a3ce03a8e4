//! Background upkeep while serving: operating statuses and listener statistics on an interval,
//! reconciliation on an interval, and at once when LoxiLB comes back after being unreachable or lacks a
//! rule it should hold (it forgets every rule when it restarts, and a restart may fall between two checks).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loxilb_api::Loxilb;

use crate::loxilb::{LoxiTransport, Target};
use crate::octavia::agent::DriverAgent;
use crate::octavia::readback::{self, read_back, Next};
use crate::octavia::status::{document, operating};
use crate::runtime::bindings::loxilb_types::ObservedRule;
use crate::runtime::bindings::octavia::ObjectStatus;
use crate::service::Service;

/// How often LoxiLB's liveness is checked (kube-loxilb checks every 2 s).
pub const LIVENESS_PERIOD: Duration = Duration::from_secs(2);
/// While operations keep changing the mapping, the rules LoxiLB should hold are rendered again at most
/// this often for the loss check (a restart loses the older rules too).
const RENDER_EVERY: Duration = Duration::from_secs(10);
/// How long a node that reconciliation could not bring up to date waits before it is tried again.
const NODE_RETRY: Duration = Duration::from_secs(30);
/// How much of a liveness check's turn the periodic reading back of Octavia's view may take. With a real
/// driver-agent each read is a process it forks (~0.1–0.2 s), so a thousand load balancers take minutes:
/// read in one go, they kept this thread from noticing a LoxiLB restart all that time.
const SYNC_SLICE: Duration = Duration::from_secs(1);

/// The pause after a check that took `took`: checks begin every `LIVENESS_PERIOD`, not that long after
/// the last one ended. A check reading Octavia back takes a second of it, and a full period after that
/// spaced the checks 3 s apart and left the reads a third of the time.
fn pause_after(took: Duration) -> Duration {
    LIVENESS_PERIOD.saturating_sub(took)
}

pub struct Monitor {
    pub service: Arc<Service>,
    pub loxilb: Arc<dyn LoxiTransport>,
    pub agent: Option<DriverAgent>,
    pub stats_interval: Duration,
    pub reconcile_interval: Duration,
}

/// What the monitor remembers from one check to the next.
pub struct Upkeep {
    alive: bool,
    last_stats: Instant,
    last_reconcile: Instant,
    reported: HashMap<String, &'static str>,
    expected: Option<ExpectedRules>,
    /// Rules found missing that the last reconciliation could not bring back: found missing again, they
    /// wait for the next `reconcile_interval` rather than a reconciliation every check.
    unrepaired: HashSet<String>,
    /// When each out-of-date node was last reconciled on its own.
    node_attempts: HashMap<String, Instant>,
    /// Each node's version and role as last logged.
    nodes_seen: HashMap<String, (Option<String>, Option<String>)>,
    /// Since when no node has answered.
    down_since: Option<Instant>,
    /// The periodic reading back of Octavia's view, when one is under way.
    syncing: Option<OctaviaSync>,
    /// `Shards::activations` when last seen (AMQP): a shard that became this host's since has load
    /// balancers to read back before they are served.
    activations: u64,
    adoption_due: bool,
}

/// A reading back of Octavia's view under way: the load balancers left to read (the next last), and when
/// the mapping was listed (an operation applied since is newer than every read).
struct OctaviaSync {
    left: Vec<String>,
    since: crate::epochs::Ticket,
    /// Over AMQP: load balancers read back by the last slice, to be served now.
    newly_served: bool,
    /// Reads made at once: `readback::URGENT` while what is read is not served before (over AMQP, after a
    /// start and when shards are taken over); the periodic sync, of load balancers served already, leaves
    /// the other turns to operations.
    readers: usize,
}

impl Default for Upkeep {
    fn default() -> Upkeep {
        Upkeep {
            alive: true,
            last_stats: Instant::now(),
            last_reconcile: Instant::now(),
            reported: HashMap::new(),
            expected: None,
            unrepaired: HashSet::new(),
            node_attempts: HashMap::new(),
            nodes_seen: HashMap::new(),
            down_since: None,
            syncing: None,
            activations: 0,
            adoption_due: false,
        }
    }
}

/// The names of the rules LoxiLB should hold, as of a state of the mapping.
struct ExpectedRules {
    /// `Epochs::generation` when they were rendered: any operation or sync since may have changed them.
    generation: u64,
    rendered_at: Instant,
    names: HashSet<String>,
}

impl Monitor {
    pub fn start(self) {
        std::thread::Builder::new().name("monitor".into()).spawn(move || self.run()).expect("monitor thread");
    }

    fn run(self) {
        let mut upkeep = Upkeep::default();
        self.surviving("the start's pass", || self.begin(&mut upkeep));
        let mut began = Instant::now();
        loop {
            std::thread::sleep(pause_after(began.elapsed()));
            began = Instant::now();
            self.checked_tick(&mut upkeep);
        }
    }

    /// `tick`, surviving a panic in it (a bug, in a LoxiLB client say): the next check runs as usual.
    /// Before, the monitor's thread ended, and with it reconciliation, the sync from Octavia, health
    /// reports and reprogramming, while operations went on. Whether the check completed.
    pub fn checked_tick(&self, upkeep: &mut Upkeep) -> bool {
        self.surviving("a check", || self.tick(upkeep))
    }

    fn surviving(&self, what: &str, step: impl FnOnce()) -> bool {
        let completed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).is_ok();
        if !completed {
            crate::metrics::MONITOR_PANICS.inc();
            tracing::error!("the monitor's {what} panicked (a bug); the next check runs in {LIVENESS_PERIOD:?}");
        }
        completed
    }

    /// The pass a start owes, made while operations are served already: LoxiLB brought to the mapping at
    /// once, and Octavia's view read back by the checks that follow, a slice each. A host often restarts
    /// with the LoxiLB beside it (a node's reboot), which then holds no rule; with a real driver-agent
    /// every load balancer read back forks a process (~0.1–0.2 s), so reading them all first kept a
    /// thousand load balancers out of LoxiLB for minutes. Programming the mapping first re-serves nothing
    /// Octavia deleted: an object is reported DELETED only after its removal from the mapping is committed,
    /// and while the host is down a delete cannot complete (the provider's cast fails, or waits in
    /// RabbitMQ with the object PENDING_DELETE). That holds for one host: with several AMQP hosts another
    /// completes deletes meanwhile, so over AMQP nothing is served yet (`served.rs`): the shards this host
    /// gets are read back from Octavia first. A mapping rebuilt after journal damage comes from LoxiLB's
    /// own rules.
    pub fn begin(&self, upkeep: &mut Upkeep) {
        self.reconcile_targets();
        upkeep.syncing = self.list_for_sync(false);
        if let Some(sync) = upkeep.syncing.as_mut().filter(|_| self.service.served().shards().is_some()) {
            // Over AMQP nothing is served until read back.
            sync.readers = readback::URGENT;
        }
        if let Some(sync) = &upkeep.syncing {
            tracing::info!("start: LoxiLB brought to the mapping; reading {} load balancers back from Octavia", sync.left.len());
        }
    }

    /// One liveness check, and what is due after it.
    pub fn tick(&self, upkeep: &mut Upkeep) {
        let answer = self.liveness(&mut upkeep.nodes_seen);
        let was_alive = std::mem::replace(&mut upkeep.alive, answer.is_ok());
        if let Err(why) = answer {
            if was_alive {
                tracing::warn!("LoxiLB is unreachable ({why}); checking every {:?}, reconciling when it answers", LIVENESS_PERIOD);
            }
            // No node holds any rule as far as the host can tell, and the operating statuses say so once
            // that has lasted a statistics interval (a check that failed once flips nothing).
            let down_since = *upkeep.down_since.get_or_insert_with(Instant::now);
            let due = upkeep.last_stats.elapsed() >= self.stats_interval;
            if !self.stats_interval.is_zero() && due && down_since.elapsed() >= self.stats_interval {
                self.health(&mut upkeep.reported);
                upkeep.last_stats = Instant::now();
            }
            self.record_nodes();
            return;
        }
        upkeep.down_since = None;
        // LoxiLB brought back to the mapping at once; Octavia's view is read back by the periodic pass.
        if !was_alive {
            tracing::info!("LoxiLB is reachable again: reconciling");
            self.reconcile_targets();
        } else {
            let lost = self.lost_rules(&mut upkeep.expected);
            if !lost.is_subset(&upkeep.unrepaired) {
                tracing::warn!("LoxiLB lacks {} of the rules it should hold (restarted?): reconciling", lost.len());
                self.reconcile_targets();
            }
            upkeep.unrepaired = lost;
            self.bring_nodes_up_to_date(&mut upkeep.node_attempts);
        }
        self.service.reprogram_failed();
        if let Some(shards) = self.service.served().shards() {
            let activations = shards.activations();
            if activations != upkeep.activations {
                upkeep.activations = activations;
                upkeep.adoption_due = true;
            }
        }
        if std::mem::take(&mut upkeep.adoption_due) {
            // Shards that became this host's: their load balancers are read back first (ahead of a sync
            // under way), then served.
            upkeep.expected = None;
            self.recover_taken_over();
            match (upkeep.syncing.as_mut(), self.list_for_sync(true)) {
                (_, None) => self.reconcile_targets(),
                (Some(under_way), Some(more)) => {
                    under_way.left.extend(more.left);
                    under_way.readers = readback::URGENT;
                }
                (None, Some(fresh)) => upkeep.syncing = Some(OctaviaSync { readers: readback::URGENT, ..fresh }),
            }
            if let Some(sync) = &upkeep.syncing {
                tracing::info!("amqp: this host consumes other shards now; {} load balancers to read back from Octavia", sync.left.len());
            }
        }
        if !self.reconcile_interval.is_zero() && upkeep.syncing.is_none() && upkeep.last_reconcile.elapsed() >= self.reconcile_interval {
            upkeep.syncing = self.list_for_sync(false);
            if upkeep.syncing.is_none() {
                self.reconcile_targets();
                upkeep.last_reconcile = Instant::now();
            }
        }
        // A slice of it per check, so that the next check comes within seconds.
        if let Some(sync) = upkeep.syncing.as_mut() {
            if self.sync_some(sync, Some(SYNC_SLICE)) {
                upkeep.syncing = None;
                // Over AMQP the sync may have added load balancers this host serves.
                upkeep.expected = None;
                self.reconcile_targets();
                upkeep.last_reconcile = Instant::now();
            } else if std::mem::take(&mut sync.newly_served) {
                // Over AMQP those read back so far are served now: a thousand take minutes to read.
                upkeep.expected = None;
                self.reconcile_targets();
            }
        }
        if !self.stats_interval.is_zero() && upkeep.last_stats.elapsed() >= self.stats_interval {
            self.health(&mut upkeep.reported);
            self.statistics();
            upkeep.last_stats = Instant::now();
        }
        self.record_nodes();
    }

    /// Whether LoxiLB answers: each node of a cluster asked for its version and role (a change of either
    /// is logged, a version outside the supported range warned about), a single target asked `/version`.
    fn liveness(&self, seen: &mut HashMap<String, (Option<String>, Option<String>)>) -> Result<(), String> {
        let Some(states) = self.loxilb.survey() else { return self.loxilb.reachable().map_err(|e| e.to_string()) };
        for state in states.iter().filter(|s| s.answering) {
            let now = (state.version.clone(), state.role.clone());
            let before = seen.insert(state.base.clone(), now.clone());
            if before.as_ref().map(|b| &b.0) != Some(&now.0) {
                if let Some(version) = &now.0 {
                    let style = loxilb_api::node_info::error_style(version).describe();
                    tracing::info!("LoxiLB node {} runs {version} ({style})", state.base);
                    if let Some(why) = loxilb_api::node_info::unsupported(version) {
                        tracing::warn!("LoxiLB node {}: {why}", state.base);
                    }
                }
            }
            if before.is_some_and(|b| b.1 != now.1) {
                tracing::info!("LoxiLB node {} is now {}", state.base, now.1.as_deref().unwrap_or("without a role"));
            }
        }
        if states.iter().any(|s| s.answering) {
            Ok(())
        } else {
            Err(format!("none of the {} LoxiLB nodes answered", states.len()))
        }
    }

    /// What reconciliation and the loss check compare with the desired rules: each node of the cluster,
    /// or LoxiLB as one target.
    fn targets(&self) -> Vec<Target> {
        crate::loxilb::targets(&self.loxilb)
    }

    /// Nodes that missed a change while the others took it, and answer now: reconciled one by one. A node
    /// whose reconciliation left it out of date is tried again only after `NODE_RETRY` (or once it has
    /// been unreachable in between), not at every check.
    fn bring_nodes_up_to_date(&self, attempts: &mut HashMap<String, Instant>) {
        for target in self.targets() {
            let Some(node) = &target.node else { continue };
            let state = node.state();
            if !state.answering {
                attempts.remove(&target.label);
            }
            if !state.out_of_date || attempts.get(&target.label).is_some_and(|at| at.elapsed() < NODE_RETRY) {
                continue;
            }
            if target.transport.reachable().is_ok() {
                tracing::warn!("LoxiLB node {} missed changes and answers now: bringing it to the desired rules", target.label);
                self.reconcile_target(&target);
                attempts.insert(target.label.clone(), Instant::now());
            }
        }
    }

    fn record_nodes(&self) {
        for node in self.loxilb.nodes() {
            crate::metrics::record_node(&node.state());
        }
    }

    /// The rules the operating statuses look at. A rule counts as held when any answering node lists it;
    /// nodes are asked up-to-date first and the MASTER first among them, and the first node listing a rule
    /// gives its endpoint states (those of the node serving the traffic). When no node answers, no rule
    /// is held, and every programmed listener is ERROR.
    fn held_rules(&self) -> Vec<ObservedRule> {
        let mut targets = self.targets();
        targets.sort_by_key(|t| t.node.as_ref().map(|n| n.state()).map(|s| (!s.answering, s.out_of_date, !s.is_master())));
        let mut held: Vec<ObservedRule> = Vec::new();
        let mut keys = HashSet::new();
        for target in &targets {
            if target.node.as_ref().is_some_and(|n| !n.state().answering) {
                continue;
            }
            match crate::wire::observed(target.transport.as_ref()) {
                Ok(listed) => held.extend(listed.into_iter().filter(|o| keys.insert(crate::wire::key_id(&o.rule)))),
                Err(e) => tracing::debug!("listing {}'s rules for operating statuses: {e}", target.label),
            }
        }
        held
    }

    /// The rules the mapping wants that a node does not list (by name), as `<node> <rule>`. LoxiLB's
    /// `/version` has no uptime or start time, and a restart between two liveness checks is never seen as
    /// down: a rule missing is the sign. Each check compares every node's list with names rendered earlier
    /// (rendering walks the whole mapping: again after a change, but at most every `RENDER_EVERY` unless
    /// none were wanted). Names that may be stale are only a suspicion: it is confirmed with the sandbox
    /// held, names rendered afresh and the node listed again, so that no operation changes either in
    /// between. A node that lost rules is marked out of date.
    fn lost_rules(&self, expected: &mut Option<ExpectedRules>) -> HashSet<String> {
        let generation = self.service.epochs.generation();
        // Over AMQP the shards this host consumes change with no operation: rendered again as often.
        let by_shards = !self.service.served().everything();
        let stale = |e: &ExpectedRules| (e.generation != generation || by_shards) && (e.names.is_empty() || e.rendered_at.elapsed() >= RENDER_EVERY);
        if expected.as_ref().is_none_or(stale) {
            self.service.render_beside_operations();
            *expected = self.expected_rules(&mut self.service.sandbox.lock().unwrap());
        }
        let Some(wanted) = expected.as_ref().filter(|e| !e.names.is_empty()) else { return HashSet::new() };
        let suspects: Vec<Target> = self
            .targets()
            .into_iter()
            .filter(|t| match Self::listed_rule_names(t.transport.as_ref()) {
                Ok(listed) => !wanted.names.is_subset(&listed),
                Err(e) => {
                    tracing::debug!("listing {}'s rules: {e}", t.label);
                    false
                }
            })
            .collect();
        if suspects.is_empty() {
            return HashSet::new();
        }
        self.service.render_beside_operations();
        let mut sandbox = self.service.sandbox.lock().unwrap();
        *expected = self.expected_rules(&mut sandbox);
        let mut lost = HashSet::new();
        for target in &suspects {
            let (Some(fresh), Ok(listed)) = (expected.as_ref(), Self::listed_rule_names(target.transport.as_ref())) else { continue };
            let missing: Vec<&String> = fresh.names.difference(&listed).collect();
            if let (Some(node), false) = (&target.node, missing.is_empty()) {
                node.out_of_date();
            }
            lost.extend(missing.into_iter().map(|name| format!("{} {name}", target.label)));
        }
        lost
    }

    fn expected_rules(&self, sandbox: &mut crate::runtime::instance::Sandbox) -> Option<ExpectedRules> {
        let generation = self.service.epochs.generation();
        match sandbox.served_rules() {
            Ok(rules) => Some(ExpectedRules {
                generation,
                rendered_at: Instant::now(),
                names: rules.iter().map(|r| Self::identity(&r.rule.service.name, r.rule.service.bgp)).collect(),
            }),
            Err(e) => {
                tracing::error!("rendering the desired rules: {e}");
                None
            }
        }
    }

    /// The names of the rules a target lists.
    fn listed_rule_names(target: &(dyn LoxiTransport + 'static)) -> Result<HashSet<String>, loxilb_api::WireError> {
        Ok(target.list_rules()?.iter().filter(|o| !o.rule.service.name.is_empty()).map(|o| Self::identity(&o.rule.service.name, o.rule.service.bgp)).collect())
    }

    /// A rule's name, and whether it was made with `bgp`: a node that lost a rule and got it back from an
    /// in-place update (sent without `bgp`, see the default policy's plan) does not advertise its VIP, and
    /// is repaired as if the rule were missing.
    fn identity(name: &str, bgp: bool) -> String {
        if bgp {
            format!("{name} (bgp)")
        } else {
            name.to_string()
        }
    }

    /// Octavia's view, when its get socket is reachable: every load balancer the mapping holds is read
    /// back and adopted as the desired state (one that Octavia no longer has is removed); a load balancer
    /// with an operation applied since the mapping was listed, or not yet reported, is left to that
    /// operation (its read may predate it).
    pub fn sync_from_octavia(&self) {
        if let Some(mut sync) = self.list_for_sync(false) {
            self.sync_some(&mut sync, None);
        }
    }

    /// The load balancers a sync reads back, when there is a get socket to read them from: over AMQP
    /// only those of the shards this host consumes, and with `unadopted` only those not read back since
    /// their shard became this host's.
    fn list_for_sync(&self, unadopted: bool) -> Option<OctaviaSync> {
        // The ticket is taken with the listing: an operation applied after it is newer than every read.
        // Only the load balancers' ids: listing every entry held operations back ~0.2 s at 100k mappings.
        let (mut lbs, since) = {
            let sandbox = self.service.sandbox.lock().unwrap();
            crate::metrics::MAPPING_ENTRIES.set(sandbox.mapping().len() as u64);
            (sandbox.mapping().ids(crate::runtime::bindings::mapping::ResourceType::Loadbalancer), self.service.epochs.ticket())
        };
        let served = self.service.served();
        if let Some(shards) = served.shards() {
            lbs = if unadopted { shards.to_adopt(lbs) } else { lbs.into_iter().filter(|id| shards.live(id)).collect() };
        } else if unadopted {
            return None;
        }
        if self.agent.as_ref().is_none_or(|a| a.get.is_none()) {
            if let Some(shards) = served.shards() {
                // Nothing to read back from: the mapping is all there is.
                for id in &lbs {
                    if let Some(epoch) = shards.epoch(id) {
                        shards.adopted(id, epoch);
                    }
                }
            }
            return None;
        }
        // Octavia cannot know an id made up for a LoxiLB rule without Octavia ids.
        let left = lbs.into_iter().rev().filter(|id| crate::service::is_octavia_id(id)).collect();
        Some(OctaviaSync { left, since, newly_served: false, readers: 1 })
    }

    /// Over AMQP, before a shard taken over is read back: the load balancers another host created while
    /// it served the shard are in LoxiLB and not in this host's mapping, so neither the read-back nor a
    /// repair would know them until their next operation (a LoxiLB restart meanwhile left them
    /// unserved). The rules LoxiLB holds and the mapping lacks are adopted, as a start adopts them; those
    /// of the shards this host consumes are then read back from Octavia with the rest, which removes any
    /// Octavia no longer has.
    fn recover_taken_over(&self) {
        if !self.service.served().shards().is_some_and(|shards| shards.recovers_from_loxilb()) {
            return;
        }
        let mut sandbox = self.service.sandbox.lock().unwrap();
        match sandbox.recover(crate::execute::RecoveryMode::Loxilb) {
            Ok(Ok(report)) if report.recovered > 0 => {
                tracing::info!("amqp: adopted {} mappings from LoxiLB's rules for the shards taken over", report.recovered)
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("amqp: could not list LoxiLB's rules for the shards taken over: {e}"),
            Err(e) => tracing::warn!("amqp: recovery for the shards taken over failed: {e}"),
        }
    }

    /// Reads back and adopts the load balancers `sync` has left, `sync.readers` at once, for at most
    /// `slice` when given. Whether the sync is over (every one read, or the get socket unavailable).
    fn sync_some(&self, sync: &mut OctaviaSync, slice: Option<Duration>) -> bool {
        let served = self.service.served();
        let (since, newly_served) = (sync.since, std::sync::atomic::AtomicBool::new(false));
        let left = read_back(std::mem::take(&mut sync.left), sync.readers, slice, |id: String| {
            // Over AMQP, the shard's epoch before the read: a read under an earlier one adopts nothing.
            let epoch = match served.shards() {
                Some(shards) => match shards.epoch(&id) {
                    Some(epoch) => Some(epoch),
                    None => return Next::Go,
                },
                None => None,
            };
            let adopted = || {
                if let (Some(shards), Some(epoch)) = (served.shards(), epoch) {
                    shards.adopted(&id, epoch);
                    newly_served.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            };
            match self.service.adopt_as_of(&id, since, true) {
                Ok(crate::service::Adopted::NotInOctavia) => {
                    tracing::warn!("sync: load balancer {id} is in the mapping but not in Octavia");
                    adopted();
                }
                Ok(crate::service::Adopted::Synced | crate::service::Adopted::Removed) => adopted(),
                // An operation of it came or waits: it is read back before that operation is applied. Or
                // its removal failed at LoxiLB: tried again with the load balancers that failed there.
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("sync: get socket unavailable: {e}");
                    return Next::Stop;
                }
            }
            Next::Go
        });
        sync.left = left.items;
        sync.newly_served |= newly_served.into_inner();
        left.stopped || sync.left.is_empty()
    }

    /// Octavia's view adopted, then every target (each node of a cluster) brought to the desired rules.
    pub fn reconcile(&self) {
        self.sync_from_octavia();
        self.reconcile_targets();
    }

    /// Every target (each node of a cluster) brought to the desired rules.
    fn reconcile_targets(&self) {
        for target in self.targets() {
            self.reconcile_target(&target);
        }
    }

    /// One target brought to the desired rules; a node with nothing left to fix is up to date again.
    fn reconcile_target(&self, target: &Target) {
        self.service.render_beside_operations();
        // LoxiLB's list is read outside the policy lock, so operations are not held up by it (2,048 rules
        // take tens of milliseconds to list and decode). It is used only if no operation committed a
        // change and no swap replaced the policy while it was read; otherwise it is read again under the
        // lock (a list older than the mapping would have the pass re-program what came after it).
        let (mapping, policy) = {
            let sandbox = self.service.sandbox.lock().unwrap();
            (Arc::clone(sandbox.mapping()), Arc::clone(&sandbox.policy))
        };
        let generation = mapping.generation();
        // Read before the list: a change or delete the node misses later is not taken as settled by this pass.
        let misses = target.node.as_ref().map_or(0, |node| node.misses());
        let missed = target.node.as_ref().map(|node| node.missed_deletes()).unwrap_or_default();
        let listed = crate::wire::observed(target.transport.as_ref());
        let mut sandbox = self.service.sandbox.lock().unwrap();
        let current = Arc::ptr_eq(sandbox.mapping(), &mapping) && Arc::ptr_eq(&sandbox.policy, &policy) && mapping.generation() == generation;
        let result = match listed {
            Ok(observed) if current => sandbox.reconcile_observed(target.transport.as_ref(), &observed, &missed),
            _ => sandbox.reconcile_on(target.transport.as_ref(), &missed),
        };
        drop(sandbox);
        match result {
            Ok(Ok(report)) => {
                if !report.reprogrammed.is_empty() || !report.orphans.is_empty() || !report.failures.is_empty() {
                    tracing::warn!(
                        "reconcile {}: re-programmed {:?}, orphans {:?}, removed {:?}, failures {:?}",
                        target.label,
                        report.reprogrammed,
                        report.orphans,
                        report.removed,
                        report.failures
                    );
                }
                if let (Some(node), true) = (&target.node, report.failures.is_empty()) {
                    node.forget_missed_deletes(&missed);
                    node.in_sync(misses);
                }
            }
            Ok(Err(e)) => tracing::warn!("reconcile {}: {e}", target.label),
            Err(e) => tracing::error!("reconcile {}: {e}", target.label),
        }
    }

    /// Operating statuses as LoxiLB's nodes show them now (see [`Monitor::held_rules`]).
    pub fn operating_statuses(&self) -> Result<Vec<ObjectStatus>, crate::runtime::instance::CallError> {
        let held = self.held_rules();
        let mut statuses = self.read_beside_operations(|s| s.operating_statuses(&held))?;
        self.keep_served(&mut statuses, |s| &s.id);
        Ok(statuses)
    }

    /// Keeps what concerns the load balancers this host acts for (over AMQP another host reports the
    /// rest, from a newer mapping).
    fn keep_served<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> &str) {
        let served = self.service.served();
        if !served.everything() {
            items.retain(|item| served.covers(self.service.mapping(), id(item)));
        }
    }

    /// A read-only policy call that walks the whole mapping, made on an instance of its own so that
    /// operations are not held back for it; made again under the lock if an operation committed a change
    /// meanwhile (what it read may name an object deleted since).
    fn read_beside_operations<R>(
        &self,
        call: impl Fn(&mut crate::runtime::instance::Sandbox) -> Result<R, crate::runtime::instance::CallError>,
    ) -> Result<R, crate::runtime::instance::CallError> {
        let job = self.service.sandbox.lock().unwrap().beside();
        let read = job.run(&call);
        let mut sandbox = self.service.sandbox.lock().unwrap();
        match read {
            Ok(read) if sandbox.is_current(&read) => Ok(read.value),
            _ => call(&mut sandbox),
        }
    }

    /// Sends only operating statuses that changed since the last report.
    fn health(&self, reported: &mut HashMap<String, &'static str>) {
        let statuses = match self.operating_statuses() {
            Ok(s) => s,
            Err(e) => return tracing::error!("health: {e}"),
        };
        let changed: Vec<ObjectStatus> = statuses
            .into_iter()
            .filter(|s| {
                let now = s.operating.map(operating).unwrap_or("");
                reported.insert(s.id.clone(), now) != Some(now)
            })
            .collect();
        // Held at most `PATIENCE`: this thread also watches LoxiLB. What Octavia did not take is sent
        // again at the next pass.
        if !changed.is_empty() && !self.service.statuses.report_within(&document(&changed), crate::octavia::status::PATIENCE) {
            for status in &changed {
                reported.remove(&status.id);
            }
        }
    }

    fn statistics(&self) {
        let Some(agent) = self.agent.as_ref().filter(|a| a.stats.is_some()) else { return };
        let mut book = self.service.traffic.lock().unwrap();
        // LoxiLB's counters are read, and the policy walks the mapping, without holding operations back.
        let loxilb = Arc::clone(&self.service.sandbox.lock().unwrap().wiring().loxilb);
        let observed = match crate::wire::observed_traffic(loxilb.as_ref(), &mut book) {
            Ok(observed) => observed,
            Err(e) => return crate::warn_limited!("monitor-statistics", "statistics: {e}"),
        };
        let mut stats = match self.read_beside_operations(|s| s.listener_statistics(&observed)) {
            Ok(s) => s,
            Err(e) => return tracing::error!("statistics: {e}"),
        };
        self.keep_served(&mut stats, |s| &s.listener_id);
        if stats.is_empty() {
            return;
        }
        let listeners: Vec<serde_json::Value> = stats
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.listener_id, "active_connections": s.active_connections, "bytes_in": s.bytes_in,
                                   "bytes_out": s.bytes_out, "request_errors": s.request_errors, "total_connections": s.total_connections})
            })
            .collect();
        if let Err(e) = agent.update_stats(&serde_json::json!({"listeners": listeners})) {
            crate::warn_limited!("monitor-statistics-delivery", "statistics not delivered: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_begin_every_period_whatever_they_take() {
        assert_eq!(pause_after(Duration::ZERO), LIVENESS_PERIOD);
        assert_eq!(pause_after(SYNC_SLICE), LIVENESS_PERIOD - SYNC_SLICE);
        assert_eq!(pause_after(LIVENESS_PERIOD * 2), Duration::ZERO, "a check longer than the period is followed by the next at once");
    }
}
