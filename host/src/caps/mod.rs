//! The capabilities the host grants a policy, one module each, and the per-Store state that carries
//! them. Nothing else is linked: no WASI, no clock or filesystem of the guest's own.

pub mod clock;
pub mod log;
pub mod loxilb;
pub mod storage;

use std::sync::Arc;

use wasmtime::StoreLimits;

use self::loxilb::LoxiTransport;
use self::storage::MappingStore;

/// What one policy instance may reach.
#[derive(Clone)]
pub struct Grants {
    pub loxilb: Arc<dyn LoxiTransport>,
    pub storage: Arc<dyn MappingStore>,
    /// Prefix for the policy's log lines (its name).
    pub log_target: String,
}

/// Per-Store data: the grants plus the sandbox's memory limiter.
pub struct HostState {
    pub grants: Grants,
    pub limits: StoreLimits,
}

// Interfaces that only declare types still appear as (empty) imports of the world.
impl crate::runtime::bindings::octavia::Host for HostState {}
impl crate::runtime::bindings::loxilb_types::Host for HostState {}
impl crate::runtime::bindings::mapping::Host for HostState {}
impl crate::runtime::bindings::policy_types::Host for HostState {}
