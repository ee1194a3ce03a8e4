//! LoxiLB keys rules by VIP, port and protocol, with no project separation: a VIP or port another load
//! balancer holds is refused when Octavia validates the request (HTTP 409 through octavia-lib's Conflict),
//! with a message that says what to change and does not name the other load balancer, which may belong to
//! another project. Two creates of one VIP validated at the same moment are told apart too: the second is refused.

use host::runtime::instance::Limits;
use integration_tests::*;
use serde_json::{json, Value};

const LB1: &str = "eeeeeeee-0000-4000-8000-000000000001";
const LB2: &str = "eeeeeeee-0000-4000-8000-000000000002";
const VIP: &str = "10.70.0.10";

fn tree(lb: &str, vip: &str, port: u16) -> Value {
    let (l, p) = (format!("{lb}-l{port}"), format!("{lb}-p{port}"));
    loadbalancer(
        lb,
        vip,
        vec![listener(&l, lb, "TCP", port, Some(pool(&p, lb, Some(&l), "TCP", vec![member(&format!("{lb}-m"), &p, "10.70.1.1", 80, 1)], None)))],
    )
}

fn validate(h: &TestHost, method: &str, args: Value) -> Result<Value, host::service::Failure> {
    h.service.call("validate", &json!({"operation": method, "args": args}))
}

#[test]
fn a_vip_another_load_balancer_holds_is_refused_at_validation_without_naming_it() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    let created = host::octavia::status::document(&h.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB1, VIP, 80)})));
    assert_eq!(created["loadbalancers"][0]["provisioning_status"], "ACTIVE", "{created}");

    // The same VIP and listener port, and the same VIP on another port: both are one LoxiLB VIP.
    for port in [80, 8080] {
        let refused = validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB2, VIP, port)})).unwrap_err();
        assert_eq!(refused.class, "Conflict", "{refused}");
        assert!(refused.message.contains(&format!("VIP {VIP} is already in use by another load balancer")), "{refused}");
        assert!(refused.message.contains("vip_address"), "says what to change: {refused}");
        assert!(!refused.message.contains(LB1), "names a load balancer that may be another project's: {refused}");
    }
    assert_eq!(h.sim.rules().len(), 1);
    assert!(validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB2, "10.70.0.11", 80)})).is_ok());
}

#[test]
fn two_listeners_of_one_load_balancer_on_one_loxilb_rule_are_refused_naming_the_other() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    h.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB1, VIP, 443)}));
    // Octavia allows TCP and HTTPS (pass-through) on one port; both are LoxiLB's tcp rule VIP:443.
    let https = listener(&format!("{LB1}-https"), LB1, "HTTPS", 443, None);
    let refused = validate(&h, "listener_create", json!({"listener": https, "loadbalancer_id": LB1})).unwrap_err();
    assert_eq!(refused.class, "Conflict", "{refused}");
    assert!(refused.message.contains(&format!("{VIP}:443/tcp already for listener {LB1}-l443 of this load balancer")), "{refused}");
    assert!(refused.message.contains("protocol_port"), "{refused}");
}

#[test]
fn two_creates_with_one_vip_validated_before_either_is_applied_refuse_the_second() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    // Two projects' requests at the same moment: both validate before either cast is applied.
    assert!(validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB1, VIP, 80)})).is_ok());
    let refused = validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB2, VIP, 80)})).unwrap_err();
    assert_eq!(refused.class, "Conflict", "{refused}");
    assert!(refused.message.contains(&format!("VIP {VIP} is being taken by another load balancer")) && refused.message.contains("vip_address"), "{refused}");
    assert!(!refused.message.contains(LB1), "{refused}");
    // The first one's create is applied; the second stays refused, now by the mapping.
    let created = host::octavia::status::document(&h.service.apply("loadbalancer_create", &json!({"loadbalancer": tree(LB1, VIP, 80)})));
    assert_eq!(created["loadbalancers"][0]["provisioning_status"], "ACTIVE", "{created}");
    assert!(validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB2, VIP, 80)})).unwrap_err().message.contains("already in use"));
    // Deleted, the VIP is free for the other project.
    h.service.apply("loadbalancer_delete", &json!({"loadbalancer": tree(LB1, VIP, 80), "cascade": true, "loadbalancer_id": LB1}));
    assert!(validate(&h, "loadbalancer_create", json!({"loadbalancer": tree(LB2, VIP, 80)})).is_ok());
}
