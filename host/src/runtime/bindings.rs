//! The host side of the WIT package `loxilb:octavia@0.2.0`.

wasmtime::component::bindgen!({
    world: "policy-world",
    path: "../wit/since_v0.2.0",
    additional_derives: [PartialEq],
});

pub use exports::loxilb::octavia::policy;
pub use loxilb::octavia::{loxilb_types, mapping, octavia, policy_types};
