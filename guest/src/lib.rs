//! The default LoxiLB translation policy ("l4-fullnat"), built as a WebAssembly component.
//!
//! A policy is pure (WIT `loxilb:octavia@0.2.0`): it reads the host's mapping through a read-only view
//! and returns plans; the host owns the mapping store and the LoxiLB wire and executes the plans.
//!
//! Layout:
//! - `state`: the mapping as one call sees it (memoised view; in-memory entries for native tests and benches).
//! - `metadata`: an entry's metadata, this policy's compact JSON for its Octavia object (`json`: the JSON).
//! - `keys`: LoxiLB keys, service keys and deterministic ids.
//! - `translate`: one Octavia listener (with its pool, members, monitor) → one LoxiLB rule.
//! - `plan`: one Octavia operation → the LoxiLB calls, their undo, mapping changes and statuses.
//! - `decide`: plans and refusals, with the statuses a refusal reports.
//! - `recovery`: mapping entries for LoxiLB rules the mapping lacks, and the rules the mapping wants.
//! - `migrate`: a seed format 1.0 mapping (the earlier Python driver's) as this policy's entries.
//! - `health`: operating statuses and statistics from LoxiLB's rule list.
//! - `component`: the export glue, and `Definition` for policies built from this library.
//!
//! The contract's types, the mapping view, log and clock come from the policy SDK (`sdk/`).
//!
//! Everything but `view` and `component` is plain Rust, so the same crate compiles natively (rlib) for
//! unit tests and the native-vs-guest benchmark.

pub use loxilb_policy_sdk::bindings;

pub mod decide;
pub mod health;
pub mod json;
pub mod keys;
pub mod metadata;
pub mod migrate;
pub mod plan;
pub mod recovery;
pub mod state;
pub mod translate;

#[cfg(target_arch = "wasm32")]
pub mod component;

// The default policy's exports. Other policy crates depend on this one without the `component` feature
// and export their own definition (they are built in a cargo invocation of their own, so features do not
// unify).
#[cfg(all(target_arch = "wasm32", feature = "component"))]
export_policy!(crate::component::L4Fullnat);

pub use loxilb_policy_sdk::bindings::exports::loxilb::octavia::policy;
pub use loxilb_policy_sdk::{loxilb_types, mapping, octavia, policy_types};

/// The policy's identity, reported through `info`.
pub const POLICY_NAME: &str = "l4-fullnat";
