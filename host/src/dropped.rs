//! Statuses for an operation the host accepted but can never apply (its arguments no longer convert,
//! e.g. after an upgrade, or its inbox record is damaged). Octavia set the objects it names PENDING_* and
//! waits for a status: without one they stay PENDING forever and the user can neither retry nor delete.
//! The arguments cannot be trusted to convert, so the ids are read best effort from the object keys
//! octavia-lib's `to_dict` uses.

use serde_json::Value;

use crate::runtime::bindings::octavia::{ObjectKind, ObjectStatus, ProvisioningStatus};

/// Argument keys that hold an Octavia object (also as `old_<key>` / `new_<key>`), and its id field.
const OBJECT_KEYS: &[(&str, ObjectKind, &str)] = &[
    ("loadbalancer", ObjectKind::Loadbalancer, "loadbalancer_id"),
    ("listener", ObjectKind::Listener, "listener_id"),
    ("pool", ObjectKind::Pool, "pool_id"),
    ("member", ObjectKind::Member, "member_id"),
    ("healthmonitor", ObjectKind::HealthMonitor, "healthmonitor_id"),
    ("l7policy", ObjectKind::L7policy, "l7policy_id"),
    ("l7rule", ObjectKind::L7rule, "l7rule_id"),
];

/// ERROR for every object the arguments name, and the load balancer back to ACTIVE (ERROR when the
/// operation was on the load balancer itself), so the user can retry or delete.
pub fn statuses(method: &str, args: &Value) -> Vec<ObjectStatus> {
    let mut out: Vec<ObjectStatus> = Vec::new();
    let mut push = |kind: ObjectKind, id: Option<&str>, provisioning: ProvisioningStatus| {
        let Some(id) = id.filter(|id| !id.is_empty()) else { return };
        if !out.iter().any(|s| s.kind == kind && s.id == id) {
            out.push(ObjectStatus { kind, id: id.to_string(), provisioning: Some(provisioning), operating: None });
        }
    };
    let on_loadbalancer = method.starts_with("loadbalancer_");
    for (key, kind, id_field) in OBJECT_KEYS {
        if *kind == ObjectKind::Loadbalancer && !on_loadbalancer {
            continue;
        }
        for name in [key.to_string(), format!("old_{key}"), format!("new_{key}")] {
            push(*kind, args.get(&name).and_then(|o| o.get(id_field)).and_then(Value::as_str), ProvisioningStatus::Error);
        }
    }
    // member_batch_update: the pool and each member it names.
    if let Some(members) = args.get("members").and_then(Value::as_array) {
        push(ObjectKind::Pool, args.get("pool_id").and_then(Value::as_str), ProvisioningStatus::Error);
        for m in members {
            push(ObjectKind::Member, m.get("member_id").and_then(Value::as_str), ProvisioningStatus::Error);
        }
    }
    let lb = args.get("loadbalancer_id").and_then(Value::as_str);
    push(ObjectKind::Loadbalancer, lb, if on_loadbalancer { ProvisioningStatus::Error } else { ProvisioningStatus::Active });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(statuses: &[ObjectStatus]) -> Vec<(String, &'static str)> {
        statuses.iter().map(|s| (format!("{}/{}", crate::octavia::status::collection(s.kind), s.id), crate::octavia::status::provisioning(s.provisioning.unwrap()))).collect()
    }

    #[test]
    fn objects_named_by_the_arguments_go_to_error_and_the_load_balancer_back_to_active() {
        let update = json!({"loadbalancer_id": "lb", "old_member": {"member_id": "m1", "weight": 1}, "new_member": {"weight": "heavy"}});
        assert_eq!(named(&statuses("member_update", &update)), vec![("members/m1".into(), "ERROR"), ("loadbalancers/lb".into(), "ACTIVE")]);
        let batch = json!({"loadbalancer_id": "lb", "pool_id": "p", "members": [{"member_id": "a"}, {"member_id": "b"}, {"address": "no id"}]});
        assert_eq!(
            named(&statuses("member_batch_update", &batch)),
            vec![("pools/p".into(), "ERROR"), ("members/a".into(), "ERROR"), ("members/b".into(), "ERROR"), ("loadbalancers/lb".into(), "ACTIVE")]
        );
        // An operation on the load balancer itself leaves it in ERROR, named once.
        let lb = json!({"loadbalancer_id": "lb", "loadbalancer": {"loadbalancer_id": "lb", "vip_address": 7}});
        assert_eq!(named(&statuses("loadbalancer_create", &lb)), vec![("loadbalancers/lb".into(), "ERROR")]);
        assert_eq!(named(&statuses("loadbalancer_failover", &json!({"loadbalancer_id": "lb"}))), vec![("loadbalancers/lb".into(), "ERROR")]);
        // Unknown methods still name what they carry; nothing named, nothing reported.
        assert_eq!(named(&statuses("pool_frobnicate", &json!({"loadbalancer_id": "lb", "pool": {"pool_id": "p"}}))).len(), 2);
        assert!(statuses("member_create", &json!({"member": "not an object"})).is_empty());
    }
}
