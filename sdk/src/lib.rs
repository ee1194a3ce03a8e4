//! The policy SDK: everything a LoxiLB translation policy needs from the project, and nothing else.
//!
//! - The contract's types, generated from `wit/since_v0.2.0` (`loxilb:octavia@0.2.0`): Octavia's objects
//!   ([`octavia`]), LoxiLB's rules and calls ([`loxilb_types`]), the mapping ([`mapping`]), plans and
//!   answers ([`policy_types`]), and the exports a policy implements ([`Guest`]).
//! - [`view`]: the mapping as a policy reads it (the host's, through the `mapping-view` import, or one in
//!   memory for native tests), log and clock.
//! - [`export_policy!`]: exports a type implementing [`Guest`] as the component's policy.
//!
//! A policy is pure: it imports the mapping view, the log and the clock, nothing else, and everything it
//! wants done it returns as a plan, which the host executes exactly.

pub mod bindings {
    wit_bindgen::generate!({
        world: "policy-world",
        path: "../wit/since_v0.2.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        pub_export_macro: true,
        default_bindings_module: "loxilb_policy_sdk::bindings",
    });
}

// Runtime support for the wasm32 component (installed there only); tested natively.
#[cfg_attr(not(all(target_arch = "wasm32", feature = "allocator")), allow(dead_code))]
mod allocator;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod compare;
pub mod view;

pub use bindings::exports::loxilb::octavia::policy::Guest;
pub use bindings::loxilb::octavia::{loxilb_types, mapping, octavia, policy_types};

/// Exports a policy: `loxilb_policy_sdk::export_policy!(MyPolicy);` in a `cdylib` crate built for wasm32,
/// where `MyPolicy` implements [`Guest`].
#[macro_export]
macro_rules! export_policy {
    ($policy:ident) => {
        $crate::bindings::export!($policy with_types_in $crate::bindings);
    };
}
