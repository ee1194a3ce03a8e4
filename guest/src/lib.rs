//! The default LoxiLB translation policy ("l4-fullnat"), built as a WebAssembly component.
//!
//! Layout:
//! - `bindings`: the generated WIT types and imports (kept private to this crate's glue).
//! - `state`: the ID mapping cache (bidirectional maps + resource metadata) and its indices.
//! - `keys`: LoxiLB keys, service keys and deterministic ids.
//! - `translate`: one Octavia listener (with its pool, members, monitor) → one LoxiLB rule. Pure.
//! - `plan`: one Octavia operation → the LoxiLB calls, mapping changes and statuses. Pure.
//! - `store`: the on-disk snapshot (seed JSON format) and journal records.
//! - `base`: a loaded snapshot read in place (binary search over its sorted lines).
//! - `compact`: a new snapshot merged from the loaded one and the changes since, and the state read back from it.
//! - `execute`: carries out a plan through the host's capabilities, with rollback.
//! - `recovery`: rebuilding the mapping from LoxiLB's rule list, and reconciliation.
//! - `health`: operating statuses and statistics from LoxiLB's rule list.
//! - `caps`: the host capabilities behind a trait, so the policy runs natively in tests and benches.
//!
//! Everything but `caps::Wasm` and the export glue in `component` is plain Rust, so the same crate
//! compiles natively (rlib) for unit tests and the native-vs-guest benchmark.

pub mod bindings {
    wit_bindgen::generate!({
        world: "policy-world",
        path: "../wit/since_v0.1.0",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        pub_export_macro: true,
    });
}

pub(crate) mod base;
pub mod caps;
pub mod compact;
pub mod execute;
pub mod health;
pub mod keys;
pub mod migrate;
pub mod plan;
pub mod recovery;
pub mod state;
pub mod store;
pub mod translate;

#[cfg(target_arch = "wasm32")]
pub mod component;

// The default policy's exports. Other policy crates depend on this one without the `component` feature
// and export their own definition (they are built in a cargo invocation of their own, so features do not
// unify).
#[cfg(all(target_arch = "wasm32", feature = "component"))]
export_policy!(crate::component::L4Fullnat);

pub use bindings::exports::loxilb::octavia::policy;
pub use bindings::loxilb::octavia::{loxilb_types, mapping, octavia, policy_types};

/// The policy's identity, reported through `info`.
pub const POLICY_NAME: &str = "l4-fullnat";
