//! The capabilities the host grants a policy — the read-only mapping view, a log and a clock — one
//! module each, and the per-Store state that carries them. Nothing else is linked: no WASI, no
//! filesystem, network or LoxiLB of the guest's own (the host's LoxiLB client and mapping storage are
//! `crate::loxilb` and `crate::storage`, which execute what a policy plans).

pub mod clock;
pub mod log;
pub mod mapping_view;

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits};

use crate::mapping::Mapping;

/// What a policy instance's imports read: the mapping (read-only, through `mapping-view`) and the name its
/// log lines carry. The Store holds nothing else, so no import can reach LoxiLB or the mapping's storage;
/// what the host carries a plan out against is `runtime::instance::Wiring`'s.
#[derive(Clone)]
pub struct Grants {
    pub mapping: Arc<Mapping>,
    /// Prefix for the policy's log lines (its name).
    pub log_target: String,
}

/// Per-Store data: the grants plus the sandbox's memory limiter.
pub struct HostState {
    pub grants: Grants,
    pub limits: GuestLimits,
}

/// The sandbox's limits, remembering how far the instance's memory grew: linear memory never shrinks,
/// so the host recycles an instance a full render left large (`Sandbox::desired_rules`).
pub struct GuestLimits {
    pub limits: StoreLimits,
    pub grown_to: usize,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.grown_to = self.grown_to.max(desired);
            crate::metrics::POLICY_MEMORY_PEAK.raise_to(desired as u64);
        } else {
            crate::metrics::POLICY_MEMORY_REFUSED.inc();
        }
        Ok(allowed)
    }
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }
    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }
    fn instances(&self) -> usize {
        self.limits.instances()
    }
    fn tables(&self) -> usize {
        self.limits.tables()
    }
    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

// Interfaces that only declare types still appear as (empty) imports of the world.
impl crate::runtime::bindings::octavia::Host for HostState {}
impl crate::runtime::bindings::loxilb_types::Host for HostState {}
impl crate::runtime::bindings::mapping::Host for HostState {}
impl crate::runtime::bindings::policy_types::Host for HostState {}
