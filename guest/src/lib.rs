//! The default LoxiLB translation policy ("l4-fullnat"), built as a WebAssembly component.
//!
//! A policy is pure (WIT `loxilb:octavia@0.2.0`): it reads the host's mapping through a read-only view
//! and returns plans; the host owns the mapping store and the LoxiLB wire and executes the plans.
//!
//! Layout:
//! - `bindings`: the generated WIT types, imports and exports.
//! - `state`: the mapping as one call sees it (memoised view; in-memory entries for tests and staging).
//! - `keys`: LoxiLB keys, service keys and deterministic ids.
//! - `translate`: one Octavia listener (with its pool, members, monitor) → one LoxiLB rule.
//! - `plan`: one Octavia operation → the LoxiLB calls, their undo, mapping changes and statuses.
//! - `decide`: plans and refusals, with the statuses a refusal reports.
//! - `recovery`: mapping entries for LoxiLB rules the mapping lacks, and the rules the mapping wants.
//! - `health`: operating statuses and statistics from LoxiLB's rule list.
//! - `view`: the host's imports (mapping view, log, clock); `component`: the export glue.
//!
//! Everything but `view` and `component` is plain Rust, so the same crate compiles natively (rlib) for
//! unit tests and the native-vs-guest benchmark.

pub mod bindings {
    wit_bindgen::generate!({
        world: "policy-world",
        path: "../wit/since_v0.2.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        pub_export_macro: true,
    });
}

pub mod decide;
pub mod health;
pub mod keys;
pub mod plan;
pub mod recovery;
pub mod state;
pub mod translate;

#[cfg(target_arch = "wasm32")]
pub mod component;
#[cfg(target_arch = "wasm32")]
pub mod view;

// The default policy's exports. Other policy crates depend on this one without the `component` feature
// and export their own definition (they are built in a cargo invocation of their own, so features do not
// unify).
#[cfg(all(target_arch = "wasm32", feature = "component"))]
export_policy!(crate::component::L4Fullnat);

pub use bindings::exports::loxilb::octavia::policy;
pub use bindings::loxilb::octavia::{loxilb_types, mapping, octavia, policy_types};

/// The policy's identity, reported through `info`.
pub const POLICY_NAME: &str = "l4-fullnat";
