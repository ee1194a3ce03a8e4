//! A policy of your own, on the policy SDK alone. See README.md in this folder.
//!
//! Deliberately small and complete: one fullnat rule per listener, with its default pool's enabled
//! members as endpoints. Health monitors, L7 and every option it does not translate are refused by name,
//! so nothing is silently dropped. It is pure: each export reads its arguments and the mapping view and
//! returns what the host is to do.

use loxilb_policy_sdk::loxilb_types::{Endpoint, LbRule, LoxilbCall, RuleKey, ServiceArgs};
use loxilb_policy_sdk::mapping::{MappingChange, MappingEntry, ResourceType};
use loxilb_policy_sdk::octavia::{Action, Listener, Loadbalancer, LoadbalancerAction, Member, ObjectKind, ObjectStatus, Operation, Pool, ProvisioningStatus};
use loxilb_policy_sdk::policy_types::{DesiredRule, Plan, PolicyError};
use loxilb_policy_sdk::view::Source;
use serde::de::DeserializeOwned;

/// Every rule this policy writes is named with this prefix, so it can tell its own (orphan removal).
const RULE_PREFIX: &str = "template_";

fn refuse(what: String) -> PolicyError {
    PolicyError::Unsupported(format!("{what} is not supported by the template policy; swap to the default policy (l4-fullnat) for it"))
}

fn done(kind: ObjectKind, id: &str, provisioning: ProvisioningStatus) -> ObjectStatus {
    ObjectStatus { kind, id: id.to_string(), provisioning: Some(provisioning), operating: None }
}

/// The policy over a mapping source: the host's view in the component, one in memory in tests.
pub struct Template<'s> {
    pub mapping: &'s dyn Source,
    /// RFC 3339 time for new entries.
    pub now: String,
}

impl Template<'_> {
    fn object<T: DeserializeOwned>(&self, id: &str) -> Option<T> {
        serde_json::from_str(&self.mapping.get(id)?.metadata).ok()
    }

    fn entry<T: serde::Serialize>(&self, id: &str, kind: ResourceType, parent: Option<&str>, key: String, object: &T) -> MappingEntry {
        let created_at = self.mapping.get(id).map_or_else(|| self.now.clone(), |e| e.created_at);
        MappingEntry {
            octavia_id: id.to_string(),
            loxilb_key: key,
            resource_type: kind,
            parent: parent.map(str::to_string),
            external_ip: String::new(),
            port: 0,
            protocol: String::new(),
            created_at,
            metadata: serde_json::to_string(object).expect("an Octavia object encodes"),
        }
    }

    /// Refuses what this policy does not translate.
    pub fn validate(&self, op: &Operation) -> Result<(), PolicyError> {
        match op {
            Operation::Loadbalancer((LoadbalancerAction::Create, lb)) if !lb.listeners.is_empty() || !lb.pools.is_empty() => {
                Err(refuse(format!("load balancer {}: creating a whole tree at once", lb.id)))
            }
            Operation::Listener((Action::Create | Action::Update, l)) if !matches!(l.protocol.as_str(), "TCP" | "UDP") => {
                Err(refuse(format!("listener {}: protocol {}", l.id, l.protocol)))
            }
            Operation::Pool((Action::Create | Action::Update, p)) if p.lb_algorithm != "ROUND_ROBIN" || p.session_persistence.is_some() => {
                Err(refuse(format!("pool {}: lb_algorithm {} or session persistence", p.id, p.lb_algorithm)))
            }
            Operation::HealthMonitor((Action::Create | Action::Update, h)) => Err(refuse(format!("health monitor {}", h.id))),
            Operation::L7policy((Action::Create | Action::Update, p)) => Err(refuse(format!("L7 policy {}", p.id))),
            Operation::L7rule((Action::Create | Action::Update, r)) => Err(refuse(format!("L7 rule {}", r.id))),
            Operation::MemberBatchUpdate(b) => Err(refuse(format!("member batch update of pool {}", b.pool_id))),
            _ => Ok(()),
        }
    }

    /// The listener's rule, given the objects as they will be.
    fn rule(lb: &Loadbalancer, listener: &Listener, pool: Option<&Pool>, members: &[Member]) -> Option<LbRule> {
        let pool = pool?;
        let endpoints: Vec<Endpoint> = members
            .iter()
            .filter(|m| m.admin_state_up && m.weight > 0)
            .map(|m| Endpoint { ip: m.address.clone(), target_port: m.protocol_port, weight: 1 })
            .collect();
        if endpoints.is_empty() || !listener.admin_state_up || !lb.admin_state_up {
            return None;
        }
        let service = ServiceArgs {
            external_ip: lb.vip_address.clone(),
            port: listener.protocol_port,
            protocol: listener.protocol.to_ascii_lowercase(),
            sel: 0,
            mode: 2,
            security: 0,
            monitor: false,
            inactive_timeout: 0,
            block: 0,
            name: format!("{RULE_PREFIX}{}_{}_{}", lb.id, listener.id, pool.id),
            probetype: String::new(),
            probeport: 0,
            probereq: String::new(),
            proberesp: String::new(),
            probe_timeout: 0,
            probe_retries: 0,
            proxyprotocolv2: false,
            bgp: false,
            host: String::new(),
        };
        Some(LbRule { service, endpoints, allowed_sources: Vec::new(), secondary_ips: Vec::new() })
    }

    /// The rule of one listener in the current mapping.
    fn current_rule(&self, listener_id: &str) -> Option<LbRule> {
        let listener: Listener = self.object(listener_id)?;
        let lb: Loadbalancer = self.object(&listener.loadbalancer_id)?;
        let pool: Option<Pool> = listener.default_pool_id.as_deref().and_then(|p| self.object(p));
        let members: Vec<Member> = pool.iter().flat_map(|p| self.mapping.children(&p.id)).filter_map(|id| self.object(&id)).collect();
        Self::rule(&lb, &listener, pool.as_ref(), &members)
    }

    fn key(rule: &LbRule) -> RuleKey {
        let s = &rule.service;
        RuleKey { external_ip: s.external_ip.clone(), port: s.port, protocol: s.protocol.clone(), block: s.block, host: s.host.clone(), bgp: s.bgp }
    }

    /// What moves one listener from `old` to `new`, and back.
    fn change(old: Option<LbRule>, new: Option<LbRule>, plan: &mut Plan) {
        if old == new {
            return;
        }
        let program = |from: &Option<LbRule>, to: &Option<LbRule>, calls: &mut Vec<LoxilbCall>| match (from, to) {
            (Some(f), None) => calls.push(LoxilbCall::DeleteRule(Self::key(f))),
            (_, Some(t)) => calls.push(LoxilbCall::UpsertRule(t.clone())),
            (None, None) => {}
        };
        program(&old, &new, &mut plan.calls);
        program(&new, &old, &mut plan.undo);
    }

    /// The listeners whose rule an operation on `id` (a load balancer, listener or pool) can change.
    fn listeners_under(&self, lb_id: &str) -> Vec<String> {
        self.mapping.children(lb_id).into_iter().filter(|id| self.mapping.get(id).is_some_and(|e| e.resource_type == ResourceType::Listener)).collect()
    }

    pub fn translate(&self, op: &Operation) -> Result<Plan, PolicyError> {
        self.validate(op)?;
        let mut plan = Plan { calls: Vec::new(), undo: Vec::new(), mapping: Vec::new(), statuses: Vec::new(), failure_statuses: Vec::new() };
        let missing = |what: &str, id: &str| PolicyError::MissingState(format!("{what} {id} is not in the mapping"));
        // Each arm: the mapping changes, the listeners to re-render, the object's status, its load balancer.
        let (listeners, object, lb_id): (Vec<String>, (ObjectKind, String, ProvisioningStatus), String) = match op {
            Operation::Loadbalancer((LoadbalancerAction::Create | LoadbalancerAction::Update, lb)) => {
                plan.mapping.push(MappingChange::Put(self.entry(&lb.id, ResourceType::Loadbalancer, None, lb.vip_address.clone(), lb)));
                (self.listeners_under(&lb.id), (ObjectKind::Loadbalancer, lb.id.clone(), ProvisioningStatus::Active), String::new())
            }
            Operation::Loadbalancer((LoadbalancerAction::Delete | LoadbalancerAction::DeleteCascade, lb)) => {
                let listeners = self.listeners_under(&lb.id);
                for child in self.mapping.children(&lb.id) {
                    for grandchild in self.mapping.children(&child) {
                        plan.mapping.push(MappingChange::Remove(grandchild));
                    }
                    plan.mapping.push(MappingChange::Remove(child));
                }
                plan.mapping.push(MappingChange::Remove(lb.id.clone()));
                (listeners, (ObjectKind::Loadbalancer, lb.id.clone(), ProvisioningStatus::Deleted), String::new())
            }
            Operation::Listener((action, l)) => {
                let lb: Loadbalancer = self.object(&l.loadbalancer_id).ok_or_else(|| missing("load balancer", &l.loadbalancer_id))?;
                let deleted = *action == Action::Delete;
                plan.mapping.push(if deleted {
                    MappingChange::Remove(l.id.clone())
                } else {
                    let key = format!("{}:{}/{}", lb.vip_address, l.protocol_port, l.protocol.to_ascii_lowercase());
                    MappingChange::Put(self.entry(&l.id, ResourceType::Listener, Some(&l.loadbalancer_id), key, l))
                });
                let state = if deleted { ProvisioningStatus::Deleted } else { ProvisioningStatus::Active };
                (vec![l.id.clone()], (ObjectKind::Listener, l.id.clone(), state), l.loadbalancer_id.clone())
            }
            Operation::Pool((action, p)) => {
                let deleted = *action == Action::Delete;
                if deleted {
                    self.mapping.children(&p.id).into_iter().for_each(|m| plan.mapping.push(MappingChange::Remove(m)));
                    plan.mapping.push(MappingChange::Remove(p.id.clone()));
                } else {
                    plan.mapping.push(MappingChange::Put(self.entry(&p.id, ResourceType::Pool, Some(&p.loadbalancer_id), format!("pool:{}", p.id), p)));
                }
                let state = if deleted { ProvisioningStatus::Deleted } else { ProvisioningStatus::Active };
                (self.listeners_under(&p.loadbalancer_id), (ObjectKind::Pool, p.id.clone(), state), p.loadbalancer_id.clone())
            }
            Operation::Member((action, m)) => {
                let pool: Pool = self.object(&m.pool_id).ok_or_else(|| missing("pool", &m.pool_id))?;
                let deleted = *action == Action::Delete;
                plan.mapping.push(if deleted {
                    MappingChange::Remove(m.id.clone())
                } else {
                    MappingChange::Put(self.entry(&m.id, ResourceType::Member, Some(&m.pool_id), format!("member:{}", m.id), m))
                });
                let state = if deleted { ProvisioningStatus::Deleted } else { ProvisioningStatus::Active };
                (self.listeners_under(&pool.loadbalancer_id), (ObjectKind::Member, m.id.clone(), state), pool.loadbalancer_id)
            }
            Operation::LoadbalancerFailover(id) | Operation::Loadbalancer((LoadbalancerAction::Sync, Loadbalancer { id, .. })) => {
                (self.listeners_under(id), (ObjectKind::Loadbalancer, id.clone(), ProvisioningStatus::Active), String::new())
            }
            other => return Err(refuse(format!("{other:?}"))),
        };
        // The rules as they are, then as they will be (the mapping with this plan's changes applied).
        let mut after = loxilb_policy_sdk::view::Memory::default();
        let touched: Vec<String> = self.mapping_ids_near(&listeners, &lb_id);
        touched.iter().filter_map(|id| self.mapping.get(id)).for_each(|e| after.put(e));
        plan.mapping.iter().cloned().for_each(|c| after.apply(c));
        let future = Template { mapping: &after, now: self.now.clone() };
        let mut all: Vec<String> = listeners;
        all.extend(future.listeners_under(if lb_id.is_empty() { &object.1 } else { &lb_id }));
        all.sort();
        all.dedup();
        for listener in &all {
            Self::change(self.current_rule(listener), future.current_rule(listener), &mut plan);
        }
        let (kind, id, state) = object;
        plan.statuses.push(done(kind, &id, state));
        plan.failure_statuses.push(done(kind, &id, ProvisioningStatus::Error));
        if !lb_id.is_empty() {
            plan.statuses.push(done(ObjectKind::Loadbalancer, &lb_id, ProvisioningStatus::Active));
            plan.failure_statuses.push(done(ObjectKind::Loadbalancer, &lb_id, ProvisioningStatus::Active));
        }
        Ok(plan)
    }

    /// The entries a plan for these listeners of `lb_id` reads: the load balancer's whole tree.
    fn mapping_ids_near(&self, listeners: &[String], lb_id: &str) -> Vec<String> {
        let mut roots: Vec<String> = listeners.iter().filter_map(|l| self.mapping.get(l).and_then(|e| e.parent)).collect();
        if !lb_id.is_empty() {
            roots.push(lb_id.to_string());
        }
        roots.sort();
        roots.dedup();
        let mut out = Vec::new();
        let mut stack = roots;
        while let Some(id) = stack.pop() {
            stack.extend(self.mapping.children(&id));
            out.push(id);
        }
        out
    }

    pub fn desired_rules(&self) -> Vec<DesiredRule> {
        let mut listeners = self.mapping.ids(ResourceType::Listener);
        listeners.sort();
        listeners.into_iter().filter_map(|owner| Some(DesiredRule { rule: self.current_rule(&owner)?, owner, probes: Vec::new() })).collect()
    }
}

/// The component's exports: the host's mapping view and clock around `Template`.
#[cfg(target_arch = "wasm32")]
mod exports {
    use super::*;
    use loxilb_policy_sdk::loxilb_types::ObservedRule;
    use loxilb_policy_sdk::policy_types::{LegacyEntry, ListenerStats, Migration, PolicyInfo, Recovery, Refusal, Settings};
    use loxilb_policy_sdk::view::{now_ms, HostMapping};
    use loxilb_policy_sdk::Guest;

    pub struct Exports;

    fn with<R>(f: impl FnOnce(&Template) -> R) -> R {
        f(&Template { mapping: &HostMapping, now: loxilb_policy_sdk::view::rfc3339(now_ms()) })
    }

    impl Guest for Exports {
        fn info() -> PolicyInfo {
            PolicyInfo {
                // Shown by the host at start and after a swap; pick a name operators will recognise.
                name: "template".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "one fullnat rule per TCP/UDP listener, round robin; monitors and L7 refused (edit me)".into(),
            }
        }
        fn configure(_: Settings) -> Result<(), PolicyError> {
            Ok(())
        }
        fn translate(op: Operation) -> Result<Plan, Refusal> {
            with(|t| {
                t.translate(&op).map_err(|error| {
                    // The refused object goes to ERROR; the host puts its load balancer back to ACTIVE.
                    let statuses = match &op {
                        Operation::Loadbalancer((LoadbalancerAction::Create, lb)) => vec![done(ObjectKind::Loadbalancer, &lb.id, ProvisioningStatus::Error)],
                        Operation::Listener((Action::Create | Action::Update, l)) => vec![done(ObjectKind::Listener, &l.id, ProvisioningStatus::Error)],
                        Operation::Pool((Action::Create | Action::Update, p)) => vec![done(ObjectKind::Pool, &p.id, ProvisioningStatus::Error)],
                        Operation::Member((Action::Create | Action::Update, m)) => vec![done(ObjectKind::Member, &m.id, ProvisioningStatus::Error)],
                        Operation::HealthMonitor((Action::Create | Action::Update, h)) => {
                            vec![done(ObjectKind::HealthMonitor, &h.id, ProvisioningStatus::Error)]
                        }
                        _ => Vec::new(),
                    };
                    Refusal { error, statuses }
                })
            })
        }
        fn desired_rules() -> Vec<DesiredRule> {
            with(|t| t.desired_rules())
        }
        fn recover(_: Vec<LbRule>) -> Recovery {
            // Rule names carry the ids; reading them back is left to you (the default policy's recovery.rs).
            Recovery { mapping: Vec::new(), recovered: 0, deterministic: 0, conflicts: Vec::new() }
        }
        fn migrate(legacy: Vec<LegacyEntry>) -> Migration {
            let dropped = legacy.into_iter().map(|e| format!("{}: the template policy does not migrate format 1.0", e.octavia_id)).collect();
            Migration { mapping: Vec::new(), dropped }
        }
        fn owns_rule(name: String) -> bool {
            name.starts_with(RULE_PREFIX)
        }
        fn operating_statuses(_: Vec<ObservedRule>) -> Vec<ObjectStatus> {
            Vec::new()
        }
        fn statistics(_: Vec<ObservedRule>) -> Vec<ListenerStats> {
            Vec::new()
        }
    }

    loxilb_policy_sdk::export_policy!(Exports);
}

#[cfg(test)]
mod tests {
    use super::*;
    use loxilb_policy_sdk::view::Memory;

    fn parse<T: DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("an Octavia object")
    }

    fn apply(mapping: &mut Memory, op: &Operation) -> Plan {
        let plan = Template { mapping, now: "now".into() }.translate(op).expect("a plan");
        plan.mapping.iter().cloned().for_each(|c| mapping.apply(c));
        plan
    }

    #[test]
    fn a_listener_with_members_gets_one_rule_and_deleting_the_member_removes_it() {
        let mut mapping = Memory::default();
        apply(
            &mut mapping,
            &Operation::Loadbalancer((
                LoadbalancerAction::Create,
                parse(serde_json::json!({"id": "lb", "project_id": null, "name": null,
            "vip_address": "10.0.0.1", "additional_vips": [], "admin_state_up": true, "flavor": [], "listeners": [], "pools": []})),
            )),
        );
        apply(
            &mut mapping,
            &Operation::Listener((
                Action::Create,
                parse(serde_json::json!({"id": "l", "loadbalancer_id": "lb", "protocol": "TCP",
            "protocol_port": 80, "default_pool_id": "p", "admin_state_up": true, "connection_limit": null, "timeout_client_data": null,
            "timeout_member_connect": null, "timeout_member_data": null, "allowed_cidrs": [], "insert_headers": [],
            "default_tls_container_ref": null, "sni_container_refs": [], "client_authentication": null, "l7policies": []})),
            )),
        );
        apply(
            &mut mapping,
            &Operation::Pool((
                Action::Create,
                parse(serde_json::json!({"id": "p", "loadbalancer_id": "lb", "listener_id": "l",
            "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "session_persistence": null, "tls_enabled": false, "admin_state_up": true,
            "members": [], "healthmonitor": null})),
            )),
        );
        let member: Member = parse(serde_json::json!({"id": "m", "pool_id": "p", "address": "10.0.1.1", "protocol_port": 8080,
            "weight": 1, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}));
        let created = apply(&mut mapping, &Operation::Member((Action::Create, member.clone())));
        assert!(matches!(&created.calls[..], [LoxilbCall::UpsertRule(r)] if r.endpoints.len() == 1 && r.service.port == 80), "{:?}", created.calls);
        assert!(matches!(&created.undo[..], [LoxilbCall::DeleteRule(_)]), "{:?}", created.undo);
        assert_eq!(Template { mapping: &mapping, now: String::new() }.desired_rules().len(), 1);

        let deleted = apply(&mut mapping, &Operation::Member((Action::Delete, member)));
        assert!(matches!(&deleted.calls[..], [LoxilbCall::DeleteRule(k)] if k.port == 80), "{:?}", deleted.calls);
        assert!(Template { mapping: &mapping, now: String::new() }.desired_rules().is_empty());
    }

    #[test]
    fn what_it_does_not_translate_is_refused_by_name() {
        let mapping = Memory::default();
        let monitor = Operation::HealthMonitor((
            Action::Create,
            parse(serde_json::json!({"id": "hm", "pool_id": "p", "kind": "TCP", "delay": 5,
            "timeout": 3, "max_retries": 3, "max_retries_down": 3, "http_method": null, "url_path": null, "expected_codes": null,
            "http_version": null, "domain_name": null, "admin_state_up": true})),
        ));
        let err = Template { mapping: &mapping, now: String::new() }.validate(&monitor).unwrap_err();
        assert!(matches!(&err, PolicyError::Unsupported(m) if m.contains("health monitor hm")), "{err:?}");
    }
}
