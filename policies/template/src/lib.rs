//! A policy of your own, starting from the default translation. See README.md in this folder.
//!
//! Two levels of change:
//! 1. `Definition`: keep the library's translation and change its profile (HTTP in full-proxy mode, the
//!    rule naming scheme). That is all the shipped http-fullproxy policy does.
//! 2. `Guest`: implement the exported functions yourself and delegate what you keep to
//!    `Component<L4Fullnat>` (see the commented example at the bottom).

#[cfg(target_arch = "wasm32")]
mod export {
    use guest::component::Definition;
    use guest::policy_types::PolicyInfo;
    use guest::translate::Profile;

    pub struct MyPolicy;

    impl Definition for MyPolicy {
        fn info() -> PolicyInfo {
            PolicyInfo {
                // Shown by the host at start and after a swap; pick a name operators will recognise.
                name: "my-policy".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "the default translation under another name (edit me)".into(),
            }
        }

        fn profile() -> Profile {
            // Rule names must carry the Octavia ids in a form `guest::keys::parse_rule_name` understands
            // (or recovery from LoxiLB falls back to deterministic ids), and must not contain `:`, `ipvs`
            // or `static`, which LoxiLB treats specially.
            Profile { beyond_l4: guest::translate::l4_only, rule_name: guest::keys::rule_name }
        }
    }

    guest::export_policy!(MyPolicy);

    // Level 2: replace `guest::export_policy!(MyPolicy)` with your own exports, e.g.
    //
    // use guest::component::{Component, L4Fullnat};
    // use guest::octavia::Operation;
    // use guest::policy::Guest;
    // use guest::policy_types::*;
    // type Library = Component<L4Fullnat>;
    // pub struct Mine;
    // impl Guest for Mine {
    //     // A plan: LoxiLB calls (and their undo), mapping changes, statuses. The host executes it exactly.
    //     fn translate(op: Operation) -> Result<Plan, Refusal> { /* your translation */ Library::translate(op) }
    //     fn info() -> PolicyInfo { ... }
    //     guest::delegate_exports!(Library: configure, desired_rules, recover, migrate, owns_rule, operating_statuses, statistics);
    //     // (every function of `interface policy` in wit/since_v0.2.0/policy.wit)
    // }
    // guest::bindings::export!(Mine with_types_in guest::bindings);
}
