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

/// Keys under which an object holds the children Octavia creates (or cascade-deletes) with it.
const CHILD_KEYS: &[(&str, ObjectKind)] = &[
    ("listeners", ObjectKind::Listener),
    ("pools", ObjectKind::Pool),
    ("default_pool", ObjectKind::Pool),
    ("members", ObjectKind::Member),
    ("healthmonitor", ObjectKind::HealthMonitor),
    ("l7policies", ObjectKind::L7policy),
    ("l7rules", ObjectKind::L7rule),
];

fn id_field(kind: ObjectKind) -> &'static str {
    OBJECT_KEYS.iter().find(|(_, k, _)| *k == kind).map_or("id", |(_, _, field)| field)
}

/// ERROR for every object the arguments name, and the load balancer back to ACTIVE (ERROR when the
/// operation was on the load balancer itself), so the user can retry or delete. A create also names the
/// children it carries (a single-call load balancer create sets its whole tree PENDING_CREATE), as does a
/// cascade delete; an update names only its object (the old object's children are not pending).
pub fn statuses(method: &str, args: &Value) -> Vec<ObjectStatus> {
    let mut out: Vec<ObjectStatus> = Vec::new();
    let mut push = |kind: ObjectKind, id: Option<&str>, provisioning: ProvisioningStatus| {
        let Some(id) = id.filter(|id| !id.is_empty()) else { return };
        if !out.iter().any(|s| s.kind == kind && s.id == id) {
            out.push(ObjectStatus { kind, id: id.to_string(), provisioning: Some(provisioning), operating: None });
        }
    };
    let on_loadbalancer = method.starts_with("loadbalancer_");
    let with_children = method.ends_with("_create") || (method == "loadbalancer_delete" && args.get("cascade").and_then(Value::as_bool) == Some(true));
    for (key, kind, _) in OBJECT_KEYS {
        if *kind == ObjectKind::Loadbalancer && !on_loadbalancer {
            continue;
        }
        if let Some(object) = args.get(*key) {
            name_tree(*kind, object, with_children, &mut push);
        }
        for name in [format!("old_{key}"), format!("new_{key}")] {
            if let Some(object) = args.get(&name) {
                name_tree(*kind, object, false, &mut push);
            }
        }
    }
    // member_batch_update: the pool and each member it names.
    if let Some(members) = args.get("members").and_then(Value::as_array) {
        push(ObjectKind::Pool, args.get("pool_id").and_then(Value::as_str), ProvisioningStatus::Error);
        for m in members {
            name_tree(ObjectKind::Member, m, false, &mut push);
        }
    }
    let lb = args.get("loadbalancer_id").and_then(Value::as_str);
    push(ObjectKind::Loadbalancer, lb, if on_loadbalancer { ProvisioningStatus::Error } else { ProvisioningStatus::Active });
    out
}

/// Names `object` (of `kind`) ERROR, and with `children` every object nested under it.
fn name_tree(kind: ObjectKind, object: &Value, children: bool, push: &mut impl FnMut(ObjectKind, Option<&str>, ProvisioningStatus)) {
    push(kind, object.get(id_field(kind)).and_then(Value::as_str), ProvisioningStatus::Error);
    if !children {
        return;
    }
    for (key, child_kind) in CHILD_KEYS {
        match object.get(*key) {
            Some(Value::Array(items)) => items.iter().for_each(|item| name_tree(*child_kind, item, true, push)),
            Some(item @ Value::Object(_)) => name_tree(*child_kind, item, true, push),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn named(statuses: &[ObjectStatus]) -> Vec<(String, &'static str)> {
        statuses
            .iter()
            .map(|s| (format!("{}/{}", crate::octavia::status::collection(s.kind), s.id), crate::octavia::status::provisioning(s.provisioning.unwrap())))
            .collect()
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
        // A create names the tree it carries; an update only its object.
        let tree = json!({"loadbalancer_id": "lb", "loadbalancer": {"loadbalancer_id": "lb", "listeners": [{"listener_id": "l", "default_pool": {
            "pool_id": "p", "members": [{"member_id": "m", "pool_id": "p"}], "healthmonitor": {"healthmonitor_id": "h", "pool_id": "p"}}}],
            "pools": [{"pool_id": "p"}]}});
        let created = named(&statuses("loadbalancer_create", &tree));
        assert_eq!(created.len(), 5, "{created:?}");
        assert!(created.iter().all(|(_, s)| *s == "ERROR") && created.contains(&("healthmonitors/h".into(), "ERROR")));
        let update = json!({"loadbalancer_id": "lb", "old_loadbalancer": tree["loadbalancer"], "new_loadbalancer": {"name": 5}});
        assert_eq!(named(&statuses("loadbalancer_update", &update)), vec![("loadbalancers/lb".into(), "ERROR")]);
        let cascade = json!({"loadbalancer_id": "lb", "loadbalancer": tree["loadbalancer"], "cascade": true});
        assert_eq!(named(&statuses("loadbalancer_delete", &cascade)).len(), 5);
        // Unknown methods still name what they carry; nothing named, nothing reported.
        assert_eq!(named(&statuses("pool_frobnicate", &json!({"loadbalancer_id": "lb", "pool": {"pool_id": "p"}}))).len(), 2);
        assert!(statuses("member_create", &json!({"member": "not an object"})).is_empty());
    }
}
