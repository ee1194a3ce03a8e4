//! One running policy: a Store with its grants and limits, re-created after the guest traps, loops past
//! its deadline or exhausts its memory. The mapping is the host's (`Grants::mapping`): a new instance
//! reads it through the view like the old one did, so a trap costs the operation in hand and nothing else.
//!
//! The policy is pure: `handle`, `recover`, `reconcile`, `health` and `statistics` are the host carrying
//! out what the policy's plans and answers say (`crate::execute`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Result};
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use super::bindings::loxilb_types::{LbRule, ObservedRule};
use super::bindings::octavia::ObjectStatus;
use super::bindings::octavia::Operation;
use super::bindings::policy_types::{DesiredRule, ListenerStats, Plan, PolicyError, PolicyInfo, Recovery, Refusal, Settings};
use super::bindings::PolicyWorld;
use super::{LoadedPolicy, EPOCH_TICK};
use crate::caps::{Grants, GuestLimits, HostState};
use crate::loxilb::LoxiTransport;
use crate::mapping::Mapping;

/// Compiled components by content digest: loading the same policy twice (restart of an instance, a swap
/// back) does not compile again.
pub fn compile_cached(engine: &Engine, bytes: &[u8], digest: &str) -> Result<Component> {
    static CACHE: OnceLock<Mutex<HashMap<String, Component>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // Held while compiling: threads loading the same policy at once wait for one compilation.
    let mut cache = cache.lock().unwrap();
    if let Some(c) = cache.get(digest) {
        return Ok(c.clone());
    }
    let component = crate::runtime::cache::compile(engine, bytes, digest)?;
    cache.insert(digest.to_string(), component.clone());
    Ok(component)
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub memory_bytes: usize,
    pub call_timeout: Duration,
    /// An instance whose memory a full render (`desired-rules`) grew past this is dropped after it, and the
    /// next call starts a new one: its memory is given back (at 100k mappings ~130 MB of resident memory).
    pub recycle_after_render_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 << 20, call_timeout: Duration::from_secs(30), recycle_after_render_bytes: RECYCLE_AFTER_RENDER_BYTES }
    }
}

/// `Limits::recycle_after_render_bytes` by default: well above what 10k mappings take.
pub const RECYCLE_AFTER_RENDER_BYTES: usize = 64 << 20;

impl Limits {
    /// The most one call's answer may take on the host: three times the policy's memory. The canonical ABI
    /// lets a component point many strings or lists at the same bytes, and the host copies each, so
    /// without a bound a policy could make the host allocate without end. An answer that does not alias
    /// costs the host at most about twice what it takes in the policy's memory (24-byte string and list
    /// headers for 8-byte pointer pairs), so no answer a policy can hold is refused. (wasmtime's own
    /// default, 128 MiB, would refuse a recovery of ~280k mappings that a 1 GiB policy holds easily.)
    pub fn answer_bytes(&self) -> usize {
        self.memory_bytes.saturating_mul(3)
    }
}

struct Live {
    store: Store<HostState>,
    bindings: PolicyWorld,
}

/// A failed guest call: the guest refused (its own error) or the sandbox stopped it (trap, deadline,
/// memory); the latter recycles the instance.
#[derive(Debug)]
pub enum CallError {
    Trapped(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Trapped(m) => write!(f, "policy stopped: {m}"),
        }
    }
}

impl std::error::Error for CallError {}

/// What a sandbox is started with: its policy's grants (the mapping, its log lines' name) and what the host
/// carries the policy's plans out against (LoxiLB, and whether reconciliation removes orphaned rules). The
/// policy's Store holds only the grants ([`Wiring::grants`]).
#[derive(Clone)]
pub struct Wiring {
    pub loxilb: Arc<dyn LoxiTransport>,
    pub mapping: Arc<Mapping>,
    /// Reconciliation deletes rules no Octavia object owns (only those the policy says it made).
    pub remove_orphans: bool,
    /// The load balancers this host acts for on its own (`served.rs`; over AMQP, the shards it consumes).
    pub served: crate::served::Served,
    /// Prefix for the policy's log lines (its name).
    pub log_target: String,
}

impl Wiring {
    /// What the policy's imports may read.
    pub fn grants(&self) -> Grants {
        Grants { mapping: Arc::clone(&self.mapping), log_target: self.log_target.clone() }
    }
}

pub struct Sandbox {
    pub policy: Arc<LoadedPolicy>,
    wiring: Wiring,
    limits: Limits,
    settings: Settings,
    live: Option<Live>,
    pub info: PolicyInfo,
    /// Instances created (1 + re-instantiations after traps).
    pub instances: u32,
    /// Calls walking the whole mapping (desired rules, operating statuses, statistics) this sandbox made
    /// itself; the monitor makes them beside it.
    pub walks: u32,
    /// Shown each batch of mapping changes before the host applies it (`observe_commits`).
    pub(crate) commit_observer: Option<CommitObserver>,
    /// The last `desired-rules` answer, with the mapping generation it was computed from. A policy's
    /// desired rules are a function of the mapping and its settings (fixed for a sandbox; a swap starts
    /// another), so a reconciliation pass over an unchanged mapping does not render every rule again.
    desired: Option<(u64, Arc<Vec<DesiredRule>>)>,
}

/// A read-only call to make on a second instance of the policy, without the sandbox: the calls that walk
/// the whole mapping (desired rules, operating statuses, statistics: 0.2–0.65 s each at 100k mappings)
/// would otherwise hold every operation back (see [`Sandbox::beside`]).
pub struct Beside {
    policy: Arc<LoadedPolicy>,
    wiring: Wiring,
    limits: Limits,
    settings: Settings,
    generation: u64,
}

/// What a call [`Beside`] the operations answered, and which policy and mapping state it read.
pub struct ReadBeside<R> {
    policy: Arc<LoadedPolicy>,
    mapping: Arc<crate::mapping::Mapping>,
    generation: u64,
    pub value: R,
}

impl Beside {
    /// Makes the call on a new instance of the same policy, dropped afterwards with the memory it grew.
    pub fn run<R>(self, call: impl FnOnce(&mut Sandbox) -> Result<R, CallError>) -> Result<ReadBeside<R>, CallError> {
        let mapping = Arc::clone(&self.wiring.mapping);
        let mut sandbox = Sandbox::new(Arc::clone(&self.policy), self.wiring, self.limits, self.settings).map_err(|e| CallError::Trapped(e.to_string()))?;
        let value = call(&mut sandbox)?;
        Ok(ReadBeside { policy: self.policy, mapping, generation: self.generation, value })
    }
}

/// What `Sandbox::observe_commits` takes.
pub type CommitObserver = Box<dyn Fn(&[crate::runtime::bindings::mapping::MappingChange]) + Send + Sync>;

fn trap_text(e: &wasmtime::Error) -> String {
    let root = e.root_cause().to_string();
    // wasmtime's error for an exhausted `set_hostcall_fuel` is a private type: known by its text.
    if root.contains("fuel allocated for hostcalls has been exhausted") {
        return format!("the policy's answer is larger than the host takes (3 × guest_memory_limit_mb; {root})");
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "deadline exceeded (the call ran past guest_call_timeout)".into(),
        Some(wasmtime::Trap::UnreachableCodeReached) => format!("the guest panicked or ran out of memory ({root})"),
        Some(trap) => format!("{trap} ({root})"),
        None => root,
    }
}

impl Sandbox {
    /// Instantiates the policy and configures it. Fails if either fails.
    pub fn new(policy: Arc<LoadedPolicy>, wiring: Wiring, limits: Limits, settings: Settings) -> Result<Sandbox> {
        let mut sandbox = Sandbox {
            policy,
            wiring,
            limits,
            settings,
            live: None,
            info: PolicyInfo { name: String::new(), version: String::new(), description: String::new() },
            instances: 0,
            walks: 0,
            commit_observer: None,
            desired: None,
        };
        sandbox.ensure_live().map_err(|e| anyhow!("{e}"))?;
        if let Some(legacy) = sandbox.wiring.mapping.take_legacy() {
            sandbox.migrate(legacy).map_err(|e| anyhow!("migrating the format 1.0 mapping: {e}"))?;
        }
        Ok(sandbox)
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    fn ensure_live(&mut self) -> Result<&mut Live, CallError> {
        if self.live.is_none() {
            let limits = GuestLimits::new(self.limits.memory_bytes);
            let mut store = Store::new(super::engine(), HostState { grants: self.wiring.grants(), limits });
            store.limiter(|s| &mut s.limits);
            // Lifting a result (and an import's arguments) draws on this per call.
            store.set_hostcall_fuel(self.limits.answer_bytes());
            store.set_epoch_deadline(self.deadline_ticks());
            let bindings = self.policy.pre.instantiate(&mut store).map_err(|e| CallError::Trapped(format!("instantiating: {}", trap_text(&e))))?;
            let guest = bindings.loxilb_octavia_policy();
            let info = guest.call_info(&mut store).map_err(|e| CallError::Trapped(trap_text(&e)))?;
            store.set_epoch_deadline(self.deadline_ticks());
            guest
                .call_configure(&mut store, &self.settings)
                .map_err(|e| CallError::Trapped(format!("configure: {}", trap_text(&e))))?
                .map_err(|e| CallError::Trapped(format!("configure refused: {}", describe(&e))))?;
            self.instances += 1;
            self.info = info;
            self.live = Some(Live { store, bindings });
        }
        Ok(self.live.as_mut().expect("live"))
    }

    fn call<R>(&mut self, f: impl FnOnce(&mut Store<HostState>, &PolicyWorld) -> wasmtime::Result<R>) -> Result<R, CallError> {
        let ticks = self.deadline_ticks();
        let live = self.ensure_live()?;
        live.store.set_epoch_deadline(ticks);
        match f(&mut live.store, &live.bindings) {
            Ok(r) => Ok(r),
            Err(e) => {
                let text = trap_text(&e);
                tracing::error!(policy = %self.info.name, "policy call failed, recycling its instance: {text}");
                self.live = None;
                Err(CallError::Trapped(text))
            }
        }
    }

    /// Whether the policy would take the operation (the provider's synchronous check): its plan, executed
    /// nowhere. The mapping's lacking what the operation refers to is no refusal here: it may be recovered
    /// before the operation is applied. One export serves both, so the component carries the lifting of
    /// `operation` (every variant with whole trees, ~44 KB) once.
    pub fn validate(&mut self, op: &Operation) -> Result<Result<(), PolicyError>, CallError> {
        Ok(match self.translate(op)? {
            Err(Refusal { error: PolicyError::MissingState(_), .. }) | Ok(_) => Ok(()),
            Err(refusal) => Err(refusal.error),
        })
    }

    pub fn translate(&mut self, op: &Operation) -> Result<Result<Plan, Refusal>, CallError> {
        self.call(|s, b| b.loxilb_octavia_policy().call_translate(s, op))
    }

    /// The policy's desired rules for the current mapping; asked again only when the mapping changed.
    pub fn desired_rules(&mut self) -> Result<Arc<Vec<DesiredRule>>, CallError> {
        // Read before the call: a change racing with it gives a newer generation, never a stale answer.
        let generation = self.wiring.mapping.generation();
        if let Some((at, rules)) = &self.desired {
            if *at == generation {
                return Ok(Arc::clone(rules));
            }
        }
        let rules = Arc::new(self.render_desired_rules()?);
        self.walks += 1;
        if self.live.as_ref().is_some_and(|l| l.store.data().limits.grown_to > self.limits.recycle_after_render_bytes) {
            tracing::debug!(policy = %self.info.name, "a full render left the policy's memory large: starting a new instance at the next call");
            self.live = None;
        }
        self.desired = Some((generation, Arc::clone(&rules)));
        Ok(rules)
    }

    /// A read-only call to make beside the operations, over the mapping as it is now.
    pub fn beside(&self) -> Beside {
        let generation = self.wiring.mapping.generation();
        Beside { policy: Arc::clone(&self.policy), wiring: self.wiring.clone(), limits: self.limits.clone(), settings: self.settings.clone(), generation }
    }

    /// Whether what was read beside the operations is what this sandbox would answer now: the same
    /// policy over the same mapping, with no change committed since the read began (it read one state).
    pub fn is_current<R>(&self, read: &ReadBeside<R>) -> bool {
        Arc::ptr_eq(&self.policy, &read.policy) && Arc::ptr_eq(&self.wiring.mapping, &read.mapping) && self.wiring.mapping.generation() == read.generation
    }

    /// `None` when this sandbox knows the current generation's desired rules already, else the render
    /// to make beside the operations.
    pub fn render_job(&self) -> Option<Beside> {
        let generation = self.wiring.mapping.generation();
        self.desired.as_ref().is_none_or(|(at, _)| *at != generation).then(|| self.beside())
    }

    /// Takes desired rules rendered beside the operations if they are current (see `is_current`).
    pub fn offer_desired(&mut self, rendered: ReadBeside<Vec<DesiredRule>>) -> bool {
        let current = self.is_current(&rendered);
        if current {
            self.desired = Some((rendered.generation, Arc::new(rendered.value)));
        }
        current
    }

    /// Asks the policy for its desired rules, whatever was asked before (the policy's own cost, as the
    /// benches measure it and the tests of what an instance keeps between calls need it).
    pub fn render_desired_rules(&mut self) -> Result<Vec<DesiredRule>, CallError> {
        self.call(|s, b| b.loxilb_octavia_policy().call_desired_rules(s))
    }

    pub fn recovery(&mut self, observed: &[LbRule]) -> Result<Recovery, CallError> {
        self.call(|s, b| b.loxilb_octavia_policy().call_recover(s, observed))
    }

    /// Has the policy turn a format 1.0 mapping into its entries, stores them and rewrites the file in the
    /// current format. Every entry it could not place is named in the log.
    fn migrate(&mut self, legacy: Vec<super::bindings::policy_types::LegacyEntry>) -> Result<(), CallError> {
        let total = legacy.len();
        let migration = self.call(|s, b| b.loxilb_octavia_policy().call_migrate(s, &legacy))?;
        for dropped in &migration.dropped {
            tracing::warn!("format 1.0 mapping: dropped {dropped}");
        }
        let migrated = migration.mapping.len();
        tracing::warn!("migrated {migrated} of {total} mappings from format 1.0 (the file is rewritten as {})", crate::mapping::FORMAT_VERSION);
        if let Err(e) = self.wiring.mapping.apply(migration.mapping).and_then(|()| self.wiring.mapping.write_snapshot()) {
            tracing::error!("could not store the migrated mapping (kept in memory): {e}");
        }
        Ok(())
    }

    pub fn owns_rule(&mut self, name: &str) -> Result<bool, CallError> {
        self.call(|s, b| b.loxilb_octavia_policy().call_owns_rule(s, name))
    }

    pub fn operating_statuses(&mut self, observed: &[ObservedRule]) -> Result<Vec<ObjectStatus>, CallError> {
        self.walks += 1;
        self.call(|s, b| b.loxilb_octavia_policy().call_operating_statuses(s, observed))
    }

    pub fn listener_statistics(&mut self, observed: &[ObservedRule]) -> Result<Vec<ListenerStats>, CallError> {
        self.walks += 1;
        self.call(|s, b| b.loxilb_octavia_policy().call_statistics(s, observed))
    }

    /// The mapping this instance reads (and the host changes by executing its plans).
    pub fn mapping(&self) -> &Arc<crate::mapping::Mapping> {
        &self.wiring.mapping
    }

    /// The storage under the mapping (the host makes appended records durable through it).
    pub fn storage(&self) -> &Arc<dyn crate::storage::MappingStore> {
        self.wiring.mapping.storage()
    }

    /// What this instance was started with, so another policy can be started alike (swap, preview).
    pub fn wiring(&self) -> &Wiring {
        &self.wiring
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

pub fn describe(e: &PolicyError) -> String {
    match e {
        PolicyError::Unsupported(m) => format!("unsupported: {m}"),
        PolicyError::Invalid(m) => format!("invalid: {m}"),
        PolicyError::MissingState(m) => format!("missing state: {m}"),
        PolicyError::Conflict(m) => format!("conflict: {m}"),
    }
}
