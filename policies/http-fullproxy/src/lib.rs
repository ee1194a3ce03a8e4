//! The "http-fullproxy" policy: the default policy's translation, except that HTTP listeners are served
//! by LoxiLB's full-proxy mode (mode 4) instead of being refused, and rules are named
//! `octavia-l7_<lb>_<listener>_<pool>` so an operator can tell which policy programmed a rule.
//!
//! The HTTP branch is this crate's: the library serves L4 listeners and asks the profile's `beyond_l4`
//! for any other protocol.
//!
//! Everything else (TCP, UDP, SCTP, HTTPS pass-through, monitors, the ID mapping and its storage format)
//! is the library's, so swapping between this policy and the default one keeps the mapping as it is.

use guest::octavia::Listener;
use guest::translate::{ListenerService, MODE_FULLPROXY};

/// HTTP listeners are proxied by LoxiLB (mode 4, whatever `nat_mode` says); other protocols beyond L4
/// (TERMINATED_HTTPS needs certificates LoxiLB is not given) stay refused.
pub fn http_in_fullproxy(listener: &Listener) -> Option<ListenerService> {
    (listener.protocol == "HTTP").then_some(ListenerService { protocol: "tcp", mode: Some(MODE_FULLPROXY) })
}

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
            Profile { beyond_l4: super::http_in_fullproxy, rule_name: guest::keys::l7_rule_name }
        }
    }

    guest::export_policy!(HttpFullproxy);
}

#[cfg(test)]
mod tests {
    use guest::translate::{self, Profile};

    fn listener(protocol: &str) -> guest::octavia::Listener {
        serde_json::from_value(serde_json::json!({"id": "l", "loadbalancer_id": "lb", "protocol": protocol, "protocol_port": 80,
            "default_pool_id": "p", "admin_state_up": true, "connection_limit": null, "timeout_client_data": null,
            "timeout_member_connect": null, "timeout_member_data": null, "allowed_cidrs": [], "insert_headers": [],
            "default_tls_container_ref": null, "sni_container_refs": [], "client_authentication": null, "l7policies": []}))
        .expect("a listener")
    }

    #[test]
    fn http_is_proxied_in_mode_4_and_the_rest_is_left_to_the_library() {
        let profile = Profile { beyond_l4: super::http_in_fullproxy, rule_name: guest::keys::l7_rule_name };
        let served = translate::listener_service(&listener("HTTP"), &profile).expect("HTTP is served");
        assert_eq!((served.protocol, served.mode), ("tcp", Some(translate::MODE_FULLPROXY)));
        // L4 listeners keep the configured NAT mode; the library's refusals stand.
        assert_eq!(translate::listener_service(&listener("TCP"), &profile).expect("TCP is served").mode, None);
        let refused = translate::listener_service(&listener("TERMINATED_HTTPS"), &profile).expect_err("TLS termination is refused");
        assert!(format!("{refused:?}").contains("TERMINATED_HTTPS"), "{refused:?}");
        // The default policy refuses HTTP and names this one.
        let refused = translate::listener_service(&listener("HTTP"), &Profile::default()).expect_err("L4 only");
        assert!(format!("{refused:?}").contains("http-fullproxy"), "{refused:?}");
    }
}
