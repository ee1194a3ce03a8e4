//! The "http-fullproxy" policy: the default policy's translation, except that HTTP listeners are served
//! by LoxiLB's full-proxy mode (mode 4) instead of being refused, and rules are named
//! `octavia-l7_<lb>_<listener>_<pool>` so an operator can tell which policy programmed a rule.
//!
//! Everything else (TCP, UDP, SCTP, HTTPS pass-through, monitors, the ID mapping and its storage format)
//! is the library's, so swapping between this policy and the default one keeps the mapping as it is.

#[cfg(target_arch = "wasm32")]
mod export {
    use guest::component::Definition;
    use guest::policy_types::PolicyInfo;
    use guest::translate::Profile;

    pub struct HttpFullproxy;

    impl Definition for HttpFullproxy {
        fn info() -> PolicyInfo {
            PolicyInfo {
                name: "http-fullproxy".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "HTTP listeners in LoxiLB full-proxy mode, L4 listeners as the default policy; rules named octavia-l7_<lb>_<listener>_<pool>"
                    .into(),
            }
        }

        fn profile() -> Profile {
            Profile { http_fullproxy: true, rule_name: guest::keys::l7_rule_name }
        }
    }

    guest::export_policy!(HttpFullproxy);
}
