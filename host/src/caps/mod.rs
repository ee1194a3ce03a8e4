//! The capabilities the host grants a policy — the read-only mapping view, a log and a clock — one
//! module each, and the per-Store state that carries them. Nothing else is linked: no WASI, no
//! filesystem, network or LoxiLB of the guest's own (the host's LoxiLB client and mapping storage are
//! `crate::loxilb` and `crate::storage`, which execute what a policy plans).

pub mod clock;
pub mod log;
pub mod mapping_view;

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

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

/// Tables per policy instance, and elements per table. A component has a few tables of at most some
/// thousands of functions; their elements are host memory, which the memory cap does not count.
const MAX_TABLES: usize = 16;
const MAX_TABLE_ELEMENTS: usize = 1 << 16;

impl GuestLimits {
    /// The limits of a policy instance whose memory may grow to `memory_bytes`: one memory (the cap
    /// applies to each memory, so a second would double what the policy may hold; the engine also refuses
    /// modules declaring several), tables of bounded size, and the few core instances a component has.
    pub fn new(memory_bytes: usize) -> GuestLimits {
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).memories(1).tables(MAX_TABLES).table_elements(MAX_TABLE_ELEMENTS).instances(4).build();
        GuestLimits { limits, grown_to: 0 }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store};

    fn module(text: &str) -> wasmtime::Result<Module> {
        Module::new(crate::runtime::engine(), wat::parse_str(text).expect("valid text"))
    }

    fn store() -> Store<GuestLimits> {
        let mut store = Store::new(crate::runtime::engine(), GuestLimits::new(16 << 20));
        store.limiter(|limits| limits);
        store.set_epoch_deadline(1000);
        store
    }

    #[test]
    fn a_policy_instance_has_one_memory() {
        // The memory cap applies to each memory: a policy with several could hold as many times its cap.
        assert!(module("(module (memory 1) (memory 1))").is_err(), "a module declaring two memories is refused");
        let one = module("(module (memory 1))").unwrap();
        let mut store = store();
        Instance::new(&mut store, &one, &[]).unwrap();
        assert!(Instance::new(&mut store, &one, &[]).is_err(), "a second memory in the instance's store is refused");
    }

    #[test]
    fn a_table_grows_only_within_its_bound() {
        // Table elements are host memory outside the cap: growing one by 2^31 took ~16 GiB of the host.
        let grower =
            module(r#"(module (table 0 funcref) (func (export "grow") (param i32) (result i32) (table.grow (ref.null func) (local.get 0))))"#).unwrap();
        let mut store = store();
        let instance = Instance::new(&mut store, &grower, &[]).unwrap();
        let grow = instance.get_typed_func::<i32, i32>(&mut store, "grow").unwrap();
        assert_eq!(grow.call(&mut store, 1000).unwrap(), 0, "a table of a thousand functions grows");
        assert_eq!(grow.call(&mut store, 1 << 20).unwrap(), -1, "a million more is refused");
    }
}
