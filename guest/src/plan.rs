//! One Octavia operation → the LoxiLB calls, mapping changes and statuses it implies. Pure: the current
//! mapping is read, never written; `execute` applies the result.
//!
//! The operation is first applied to an overlay of the mapping (the desired state after it). Then every
//! listener the operation can affect is rendered against that overlay and diffed against the rule last
//! programmed for it: unchanged → no call; endpoints or probe settings → in-place re-POST; identity or
//! attributes LoxiLB does not update in place (name, bgp, monitor, mode, security, allowed sources…) →
//! delete + create.

use std::collections::BTreeSet;

use crate::keys;
use crate::loxilb_types::{LbRule, LoxilbCall, RuleKey};
use crate::octavia::{
    Action, HealthMonitor, Listener, Loadbalancer, LoadbalancerAction, Member, MemberBatch, ObjectKind, ObjectStatus, OperatingStatus, Operation, Pool,
    ProvisioningStatus,
};
use crate::policy_types::PolicyError;
use crate::state::{Change, Entry, ListenerState, Map, Object, State};
use crate::translate::{self, Config, Rendered};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub calls: Vec<LoxilbCall>,
    /// The calls that put every listener the plan touches back to its old rule, should one of `calls`
    /// fail: LoxiLB then holds what the mapping (unchanged) says. Computed with `calls`: keeping each
    /// listener's old and new rule to compute it later copied both rules for every operation.
    pub undo: Vec<LoxilbCall>,
    pub changes: Vec<Change>,
    pub statuses: Vec<ObjectStatus>,
    pub failure_statuses: Vec<ObjectStatus>,
}

/// The mapping as it will be once the operation is applied.
struct Overlay<'a> {
    state: &'a State<'a>,
    changed: Map<String, Option<Entry>>,
    order: Vec<String>,
    /// Keys of the entries put in this overlay → their ids (checked against `get` on use).
    keys: Map<String, String>,
}

impl<'a> Overlay<'a> {
    /// An overlay for an operation putting about `objects` entries (sized once: growing the maps entry by
    /// entry rehashed them four times for a tree).
    fn new(state: &'a State<'a>, objects: usize) -> Self {
        Overlay {
            state,
            changed: Map::with_capacity_and_hasher(objects, Default::default()),
            order: Vec::with_capacity(objects),
            keys: Map::with_capacity_and_hasher(objects, Default::default()),
        }
    }

    fn get(&self, id: &str) -> Option<&Entry> {
        match self.changed.get(id) {
            Some(changed) => changed.as_ref(),
            None => self.state.get(id),
        }
    }

    fn set(&mut self, id: &str, entry: Option<Entry>) {
        if let Some(e) = &entry {
            self.keys.insert(e.key.clone(), id.to_string());
        }
        if self.changed.insert(id.to_string(), entry).is_none() {
            self.order.push(id.to_string());
        }
    }

    fn remove(&mut self, id: &str) {
        if self.get(id).is_some() {
            self.set(id, None);
        }
    }

    /// Ids whose parent is `parent`, in id order. The state's set is already ordered; only the few
    /// children this operation put are inserted in place.
    fn children(&self, parent: &str) -> Vec<&str> {
        let mut ids = self.state.children(parent);
        ids.retain(|id| !self.changed.contains_key(*id));
        for (id, entry) in &self.changed {
            if entry.as_ref().and_then(|e| e.parent()) == Some(parent) {
                let at = ids.partition_point(|other| *other < id.as_str());
                ids.insert(at, id);
            }
        }
        ids
    }

    /// The id owning `key` after the operation, if any.
    fn owner_of(&self, key: &str) -> Option<String> {
        [self.keys.get(key).map(String::as_str), self.state.owner(key)]
            .into_iter()
            .flatten()
            .find(|id| self.get(id).is_some_and(|e| e.key == key))
            .map(str::to_string)
    }

    /// Records the rule now programmed for a listener, without recomputing its key.
    fn set_programmed(&mut self, listener_id: &str, programmed: Option<Rendered>) {
        let entry = match self.changed.get_mut(listener_id) {
            Some(Some(entry)) => entry,
            Some(None) => return,
            None => {
                // Copy the state's entry without the rule it is about to replace.
                let Some(e) = self.state.get(listener_id) else { return };
                let Object::Listener(ls) = e.object() else { return };
                let object = Object::Listener(ListenerState { listener: ls.listener.clone(), programmed });
                let entry = Entry::new(e.key.clone(), e.external_ip.clone(), e.port, e.protocol.clone(), e.created_at.clone(), object);
                return self.set(listener_id, Some(entry));
            }
        };
        if let Object::Listener(ls) = entry.object() {
            let listener = ls.listener.clone();
            entry.set_object(Object::Listener(ListenerState { listener, programmed }));
        }
    }

    fn loadbalancer(&self, id: &str) -> Option<&Loadbalancer> {
        match self.get(id)?.object() {
            Object::Loadbalancer(lb) => Some(lb),
            _ => None,
        }
    }

    fn listener(&self, id: &str) -> Option<&ListenerState> {
        match self.get(id)?.object() {
            Object::Listener(l) => Some(l),
            _ => None,
        }
    }

    fn pool(&self, id: &str) -> Option<&Pool> {
        match self.get(id)?.object() {
            Object::Pool(p) => Some(p),
            _ => None,
        }
    }

    fn members(&self, pool_id: &str) -> Vec<&Member> {
        self.children(pool_id)
            .into_iter()
            .filter_map(|id| match self.get(id)?.object() {
                Object::Member(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn monitor(&self, pool_id: &str) -> Option<&HealthMonitor> {
        self.children(pool_id).into_iter().find_map(|id| match self.get(id)?.object() {
            Object::Healthmonitor(h) => Some(h),
            _ => None,
        })
    }

    fn listeners_of_lb(&self, lb_id: &str) -> Vec<String> {
        self.children(lb_id).into_iter().filter(|id| self.listener(id).is_some()).map(str::to_string).collect()
    }

    fn listeners_of_pool(&self, pool_id: &str) -> Vec<String> {
        let Some(pool) = self.pool(pool_id) else { return Vec::new() };
        self.listeners_of_lb(&pool.loadbalancer_id)
            .into_iter()
            .filter(|id| self.listener(id).is_some_and(|l| l.listener.default_pool_id.as_deref() == Some(pool_id)))
            .collect()
    }

    fn vip_of_lb(&self, lb_id: &str) -> Result<String, PolicyError> {
        self.loadbalancer(lb_id)
            .map(|lb| lb.vip_address.clone())
            .ok_or_else(|| PolicyError::MissingState(format!("load balancer {lb_id} is not in the mapping")))
    }

    fn pool_or_missing(&self, pool_id: &str) -> Result<&Pool, PolicyError> {
        self.pool(pool_id).ok_or_else(|| PolicyError::MissingState(format!("pool {pool_id} is not in the mapping")))
    }

    /// Puts an object under its key, keeping the original creation time; refuses a key another object owns.
    fn put(&mut self, id: &str, object: Object, now: &str) -> Result<(), PolicyError> {
        let (key, external_ip, port, protocol) = self.key_of(id, &object)?;
        if let Some(owner) = self.owner_of(&key) {
            // A placeholder recovered from LoxiLB gives way to the real object it stood for.
            if owner != id && keys::is_deterministic_id(&owner) {
                self.remove(&owner);
            } else if owner != id {
                return Err(self.key_taken(id, &object, &key, &owner));
            }
        }
        let created_at = self.get(id).map(|e| e.created_at.clone()).unwrap_or_else(|| now.to_string());
        self.set(id, Some(Entry::new(key, external_ip, port, protocol, created_at, object)));
        Ok(())
    }

    /// Why an object cannot have a key another object holds, in terms the user can act on. LoxiLB keys
    /// rules by VIP, port and protocol with no notion of projects, so a VIP or a port held by another load
    /// balancer is refused; that load balancer is named only when it belongs to the same project (another
    /// project's ids are not the user's to see). A listener of the same load balancer is named.
    fn key_taken(&self, id: &str, object: &Object, key: &str, owner: &str) -> PolicyError {
        let lb_of = |listener_id: &str| self.listener(listener_id).map(|l| l.listener.loadbalancer_id.clone());
        let project_of = |lb_id: &str| self.loadbalancer(lb_id).and_then(|lb| lb.project_id.clone());
        // " (load balancer <id> of your project)" when `other_lb` belongs to the project `mine`.
        let named = |mine: Option<String>, other_lb: Option<String>| match (mine, other_lb) {
            (Some(mine), Some(other)) if project_of(&other).as_deref() == Some(mine.as_str()) => format!(" (load balancer {other} of your project)"),
            _ => String::new(),
        };
        PolicyError::Conflict(match object {
            Object::Loadbalancer(lb) => format!(
                "load balancer {id}: VIP {} is already in use by another load balancer{} on this LoxiLB, which keys its rules by VIP, port and protocol across all projects; choose another vip_address",
                lb.vip_address,
                named(lb.project_id.clone(), Some(owner.to_string()))
            ),
            Object::Listener(l) if lb_of(owner).as_deref() == Some(l.listener.loadbalancer_id.as_str()) => format!(
                "listener {id}: LoxiLB serves {key} already for listener {owner} of this load balancer (one rule per VIP, port and protocol; TCP and HTTPS listeners are both tcp); choose another protocol_port",
            ),
            Object::Listener(l) => format!(
                "listener {id}: {key} is already served by another load balancer{} on this LoxiLB, which keys its rules by VIP, port and protocol across all projects; choose another protocol_port or VIP",
                named(project_of(&l.listener.loadbalancer_id), lb_of(owner))
            ),
            other => format!("{} {id} would use LoxiLB key {key}, which {owner} already owns", other.resource_type().as_str()),
        })
    }

    /// The key and the seed's metadata fields (external_ip = the VIP; port/protocol = the object's own).
    fn key_of(&self, id: &str, object: &Object) -> Result<(String, String, u16, String), PolicyError> {
        Ok(match object {
            Object::Loadbalancer(lb) => (keys::loadbalancer_key(&lb.vip_address), lb.vip_address.clone(), 0, String::new()),
            Object::Listener(l) => {
                let vip = self.vip_of_lb(&l.listener.loadbalancer_id)?;
                let proto = translate::key_protocol(&l.listener);
                (keys::service_key(&vip, l.listener.protocol_port, proto), vip, l.listener.protocol_port, proto.to_string())
            }
            Object::Pool(p) => {
                let vip = self.vip_of_lb(&p.loadbalancer_id)?;
                (keys::pool_key(&vip, id), vip, 0, p.protocol.to_ascii_lowercase())
            }
            Object::Member(m) => {
                let pool = self.pool_or_missing(&m.pool_id)?;
                let vip = self.vip_of_lb(&pool.loadbalancer_id)?;
                (keys::member_key(&vip, &m.pool_id, &m.address, m.protocol_port), vip, m.protocol_port, String::new())
            }
            Object::Healthmonitor(h) => {
                let pool = self.pool_or_missing(&h.pool_id)?;
                let vip = self.vip_of_lb(&pool.loadbalancer_id)?;
                (keys::monitor_key(&vip, &h.pool_id), vip, 0, String::new())
            }
        })
    }

    fn remove_subtree(&mut self, id: &str) {
        let children: Vec<String> = self.children(id).into_iter().map(str::to_string).collect();
        for child in children {
            self.remove_subtree(&child);
        }
        self.remove(id);
    }

    /// Renders one listener against the overlay.
    fn render(&self, listener_id: &str, config: &Config) -> Result<Option<Rendered>, PolicyError> {
        let Some(ls) = self.listener(listener_id) else { return Ok(None) };
        let listener = &ls.listener;
        let lb = self
            .loadbalancer(&listener.loadbalancer_id)
            .ok_or_else(|| PolicyError::MissingState(format!("load balancer {} is not in the mapping", listener.loadbalancer_id)))?;
        let pool = listener.default_pool_id.as_deref().and_then(|id| self.pool(id));
        let (members, monitor) = match pool {
            Some(p) => (self.members(&p.id), self.monitor(&p.id)),
            None => (Vec::new(), None),
        };
        translate::render(lb, listener, pool, &members, monitor, config)
    }
}

/// The load balancer without its children (they are entries of their own); cloning only what is kept.
fn strip_lb(lb: &Loadbalancer) -> Loadbalancer {
    Loadbalancer {
        id: lb.id.clone(),
        project_id: lb.project_id.clone(),
        name: lb.name.clone(),
        vip_address: lb.vip_address.clone(),
        additional_vips: lb.additional_vips.clone(),
        admin_state_up: lb.admin_state_up,
        flavor: lb.flavor.clone(),
        listeners: Vec::new(),
        pools: Vec::new(),
    }
}

fn strip_pool(pool: &Pool) -> Pool {
    Pool {
        id: pool.id.clone(),
        loadbalancer_id: pool.loadbalancer_id.clone(),
        listener_id: pool.listener_id.clone(),
        protocol: pool.protocol.clone(),
        lb_algorithm: pool.lb_algorithm.clone(),
        session_persistence: pool.session_persistence.clone(),
        tls_enabled: pool.tls_enabled,
        admin_state_up: pool.admin_state_up,
        members: Vec::new(),
        healthmonitor: None,
    }
}

fn listener_object(listener: &Listener, programmed: Option<Rendered>) -> Object {
    let listener = Listener {
        id: listener.id.clone(),
        loadbalancer_id: listener.loadbalancer_id.clone(),
        protocol: listener.protocol.clone(),
        protocol_port: listener.protocol_port,
        default_pool_id: listener.default_pool_id.clone(),
        admin_state_up: listener.admin_state_up,
        connection_limit: listener.connection_limit,
        timeout_client_data: listener.timeout_client_data,
        timeout_member_connect: listener.timeout_member_connect,
        timeout_member_data: listener.timeout_member_data,
        allowed_cidrs: listener.allowed_cidrs.clone(),
        insert_headers: listener.insert_headers.clone(),
        default_tls_container_ref: listener.default_tls_container_ref.clone(),
        sni_container_refs: listener.sni_container_refs.clone(),
        client_authentication: listener.client_authentication.clone(),
        l7policies: Vec::new(),
    };
    Object::Listener(ListenerState { listener, programmed })
}

/// The fields of a rule that make its `RuleKey`, borrowed: one list for `rule_key` and `same_key`.
fn key_fields(rule: &LbRule) -> (&str, u16, &str, u32, &str, bool) {
    let s = &rule.service;
    (&s.external_ip, s.port, &s.protocol, s.block, &s.host, s.bgp)
}

pub fn rule_key(rule: &LbRule) -> RuleKey {
    let (external_ip, port, protocol, block, host, bgp) = key_fields(rule);
    RuleKey { external_ip: external_ip.to_string(), port, protocol: protocol.to_string(), block, host: host.to_string(), bgp }
}

/// Whether two rules have the same `rule_key`, compared in place (building both keys copied six strings
/// for every update).
fn same_key(a: &LbRule, b: &LbRule) -> bool {
    key_fields(a) == key_fields(b)
}

/// Changes LoxiLB applies only by deleting and re-creating the rule.
fn needs_recreate(old: &Rendered, new: &Rendered) -> bool {
    let (o, n) = (&old.rule.service, &new.rule.service);
    // LoxiLB applies the timeouts and probe period/retries only along with a change it compares
    // (endpoints, selection, probe kind…); alone they meet "lbrule-exists" and are dropped.
    let compared = old.rule.endpoints != new.rule.endpoints
        || o.sel != n.sel
        || o.probetype != n.probetype
        || o.probeport != n.probeport
        || o.probereq != n.probereq
        || o.proberesp != n.proberesp
        || o.proxyprotocolv2 != n.proxyprotocolv2;
    let uncompared = o.inactive_timeout != n.inactive_timeout || o.probe_timeout != n.probe_timeout || o.probe_retries != n.probe_retries;
    (uncompared && !compared)
        || o.name != n.name
        || o.bgp != n.bgp
        || o.monitor != n.monitor
        || o.security != n.security
        || o.mode != n.mode
        || old.rule.secondary_ips != new.rule.secondary_ips
        // LoxiLB's allowedSources comparison is inverted (API notes §6): never rely on an in-place update.
        || old.rule.allowed_sources != new.rule.allowed_sources
        || old.probes.is_empty() != new.probes.is_empty()
        || old.probes.first().map(|p| &p.probe_type) != new.probes.first().map(|p| &p.probe_type)
}

fn program(new: &Rendered, calls: &mut Vec<LoxilbCall>) {
    calls.push(LoxilbCall::UpsertRule(new.rule.clone()));
    calls.extend(new.probes.iter().cloned().map(LoxilbCall::UpsertProbe));
}

/// An in-place update of a rule LoxiLB holds, sent without `bgp`: LoxiLB keeps the rule's BGP flag on an
/// update, but counts every successful POST with `bgp` as one more advertisement of the VIP, which the
/// single delete then never counts back to zero (the route would outlive the rule).
fn update_in_place(new: &Rendered, calls: &mut Vec<LoxilbCall>) {
    let mut rule = new.rule.clone();
    rule.service.bgp = false;
    calls.push(LoxilbCall::UpsertRule(rule));
    calls.extend(new.probes.iter().cloned().map(LoxilbCall::UpsertProbe));
}

/// The calls that take LoxiLB from `old` to `new` for one listener.
pub fn diff(old: Option<&Rendered>, new: Option<&Rendered>, calls: &mut Vec<LoxilbCall>) {
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => program(n, calls),
        (Some(o), None) => calls.push(LoxilbCall::DeleteRule(rule_key(&o.rule))),
        (Some(o), Some(n)) if o == n => {}
        (Some(o), Some(n)) => {
            if !same_key(&o.rule, &n.rule) || needs_recreate(o, n) {
                calls.push(LoxilbCall::DeleteRule(rule_key(&o.rule)));
                program(n, calls);
            } else {
                update_in_place(n, calls);
            }
        }
    }
}

fn status(kind: ObjectKind, id: &str, provisioning: Option<ProvisioningStatus>, operating: Option<OperatingStatus>) -> ObjectStatus {
    ObjectStatus { kind, id: id.to_string(), provisioning, operating }
}

fn admin_operating(up: bool) -> OperatingStatus {
    if up {
        OperatingStatus::Online
    } else {
        OperatingStatus::Offline
    }
}

fn member_operating(member: &Member, monitored: bool) -> OperatingStatus {
    if !member.admin_state_up {
        OperatingStatus::Offline
    } else if member.weight == 0 {
        OperatingStatus::Draining
    } else if monitored {
        OperatingStatus::Online
    } else {
        OperatingStatus::NoMonitor
    }
}

/// Statuses for "this object changed; its parents go back to ACTIVE".
struct Statuses<'o, 'a> {
    ov: &'o Overlay<'a>,
    ok: Vec<ObjectStatus>,
    failed: Vec<ObjectStatus>,
}

impl<'o, 'a> Statuses<'o, 'a> {
    fn new(ov: &'o Overlay<'a>) -> Self {
        Statuses { ov, ok: Vec::new(), failed: Vec::new() }
    }

    fn object(&mut self, kind: ObjectKind, id: &str, ok: ProvisioningStatus, operating: Option<OperatingStatus>) {
        self.ok.push(status(kind, id, Some(ok), operating));
        self.failed.push(status(kind, id, Some(ProvisioningStatus::Error), None));
    }

    /// The object's parents (pool, its listeners, the LB) back to ACTIVE whether the operation succeeds or not.
    fn parents_of_pool(&mut self, pool_id: &str, lb_id: &str) {
        if self.ov.pool(pool_id).is_some() || self.ov.state.get(pool_id).is_some() {
            self.parent(ObjectKind::Pool, pool_id);
        }
        let mut listeners = self.ov.listeners_of_pool(pool_id);
        if let Some(Object::Pool(old)) = self.ov.state.get(pool_id).map(|e| e.object()) {
            listeners.extend(old.listener_id.iter().cloned());
        }
        listeners.sort_unstable();
        listeners.dedup();
        for l in listeners {
            self.parent(ObjectKind::Listener, &l);
        }
        self.parent(ObjectKind::Loadbalancer, lb_id);
    }

    fn parent(&mut self, kind: ObjectKind, id: &str) {
        let s = status(kind, id, Some(ProvisioningStatus::Active), None);
        self.ok.push(s.clone());
        self.failed.push(s);
    }
}

fn lb_of_pool(ov: &Overlay, pool_id: &str) -> Result<String, PolicyError> {
    if let Some(p) = ov.pool(pool_id) {
        return Ok(p.loadbalancer_id.clone());
    }
    match ov.state.get(pool_id).map(|e| e.object()) {
        Some(Object::Pool(p)) => Ok(p.loadbalancer_id.clone()),
        _ => Err(PolicyError::MissingState(format!("pool {pool_id} is not in the mapping"))),
    }
}

/// Computes the plan for one operation against the current mapping.
pub fn plan(state: &State, op: &Operation, config: &Config, now: &str) -> Result<Plan, PolicyError> {
    crate::plan::validate_objects(op, config)?;
    let mut ov = Overlay::new(state, objects(op));
    let mut affected: Vec<String> = Vec::new();

    match op {
        Operation::Loadbalancer((action @ (LoadbalancerAction::Create | LoadbalancerAction::Sync), lb)) => {
            if *action == LoadbalancerAction::Sync {
                affected.extend(ov.listeners_of_lb(&lb.id));
                ov.remove_subtree(&lb.id);
            }
            ov.put(&lb.id, Object::Loadbalancer(strip_lb(lb)), now)?;
            for pool in &lb.pools {
                put_pool_tree(&mut ov, pool, now)?;
            }
            for listener in &lb.listeners {
                let programmed = state.get(&listener.id).and_then(|e| match e.object() {
                    Object::Listener(l) => l.programmed.clone(),
                    _ => None,
                });
                ov.put(&listener.id, listener_object(listener, programmed), now)?;
                affected.push(listener.id.clone());
            }
        }
        Operation::Loadbalancer((LoadbalancerAction::Update, lb)) => {
            ov.vip_of_lb(&lb.id)?;
            ov.put(&lb.id, Object::Loadbalancer(strip_lb(lb)), now)?;
            affected.extend(ov.listeners_of_lb(&lb.id));
        }
        Operation::Loadbalancer((LoadbalancerAction::Delete | LoadbalancerAction::DeleteCascade, lb)) => {
            affected.extend(ov.listeners_of_lb(&lb.id));
            ov.remove_subtree(&lb.id);
        }
        Operation::LoadbalancerFailover(id) => {
            ov.vip_of_lb(id)?;
            affected.extend(ov.listeners_of_lb(id));
        }
        Operation::Listener((action @ (Action::Create | Action::Update), l)) => {
            if *action == Action::Update && ov.listener(&l.id).is_none() {
                return Err(PolicyError::MissingState(format!("listener {} is not in the mapping", l.id)));
            }
            let programmed = ov.listener(&l.id).and_then(|s| s.programmed.clone());
            ov.put(&l.id, listener_object(l, programmed), now)?;
            affected.push(l.id.clone());
        }
        Operation::Listener((Action::Delete, l)) => {
            affected.push(l.id.clone());
            ov.remove(&l.id);
        }
        Operation::Pool((action @ (Action::Create | Action::Update), p)) => {
            if *action == Action::Update {
                ov.pool_or_missing(&p.id)?;
                ov.put(&p.id, Object::Pool(strip_pool(p)), now)?;
            } else {
                put_pool_tree(&mut ov, p, now)?;
            }
            // A pool created for a listener becomes that listener's default pool.
            if let Some(listener_id) = &p.listener_id {
                if let Some(ls) = ov.listener(listener_id).cloned() {
                    if ls.listener.default_pool_id.as_deref() != Some(&p.id) {
                        let listener = Listener { default_pool_id: Some(p.id.clone()), ..ls.listener };
                        ov.put(listener_id, listener_object(&listener, ls.programmed), now)?;
                    }
                }
            }
            affected.extend(ov.listeners_of_pool(&p.id));
        }
        Operation::Pool((Action::Delete, p)) => {
            let users = ov.listeners_of_pool(&p.id);
            for listener_id in &users {
                if let Some(ls) = ov.listener(listener_id).cloned() {
                    let listener = Listener { default_pool_id: None, ..ls.listener };
                    ov.put(listener_id, listener_object(&listener, ls.programmed), now)?;
                }
            }
            affected.extend(users);
            ov.remove_subtree(&p.id);
        }
        Operation::Member((action @ (Action::Create | Action::Update), m)) => {
            ov.pool_or_missing(&m.pool_id)?;
            if *action == Action::Update && ov.get(&m.id).is_none() {
                return Err(PolicyError::MissingState(format!("member {} is not in the mapping", m.id)));
            }
            ov.put(&m.id, Object::Member(m.clone()), now)?;
            affected.extend(ov.listeners_of_pool(&m.pool_id));
        }
        Operation::Member((Action::Delete, m)) => {
            ov.remove(&m.id);
            affected.extend(ov.listeners_of_pool(&m.pool_id));
        }
        Operation::MemberBatchUpdate(batch) => {
            ov.pool_or_missing(&batch.pool_id)?;
            let dropped: Vec<String> = ov
                .children(&batch.pool_id)
                .into_iter()
                .filter(|id| ov.get(id).is_some_and(|e| matches!(e.object(), Object::Member(_))) && !lists(batch, id))
                .map(str::to_string)
                .collect();
            for id in dropped {
                ov.remove(&id);
            }
            for m in &batch.members {
                ov.put(&m.id, Object::Member(in_pool(m, &batch.pool_id)), now)?;
            }
            affected.extend(ov.listeners_of_pool(&batch.pool_id));
        }
        Operation::HealthMonitor((Action::Create | Action::Update, h)) => {
            ov.pool_or_missing(&h.pool_id)?;
            ov.put(&h.id, Object::Healthmonitor(h.clone()), now)?;
            affected.extend(ov.listeners_of_pool(&h.pool_id));
        }
        Operation::HealthMonitor((Action::Delete, h)) => {
            ov.remove(&h.id);
            affected.extend(ov.listeners_of_pool(&h.pool_id));
        }
        Operation::L7policy(_) | Operation::L7rule(_) => {}
    }

    affected.sort_unstable();
    affected.dedup();
    let mut plan = Plan::default();
    let mut rendered: Vec<(String, Option<Rendered>)> = Vec::with_capacity(affected.len());
    for listener_id in &affected {
        rendered.push((listener_id.clone(), ov.render(listener_id, config)?));
    }
    // Undone last listener first: each listener's calls put back, in reverse order of the listeners.
    let mut undo_by_listener = Vec::with_capacity(rendered.len());
    for (listener_id, new) in rendered {
        let old = state.get(&listener_id).and_then(|e| match e.object() {
            Object::Listener(l) => l.programmed.as_ref(),
            _ => None,
        });
        if old == new.as_ref() {
            continue;
        }
        diff(old, new.as_ref(), &mut plan.calls);
        let mut undo = Vec::new();
        diff(new.as_ref(), old, &mut undo);
        undo_by_listener.push(undo);
        if ov.listener(&listener_id).is_some_and(|ls| ls.programmed != new) {
            ov.set_programmed(&listener_id, new);
        }
    }
    plan.undo = undo_by_listener.into_iter().rev().flatten().collect();
    build_statuses(&ov, op, &mut plan)?;
    let Overlay { mut changed, order, .. } = ov;
    plan.changes = order
        .into_iter()
        .filter_map(|id| match changed.remove(&id).flatten() {
            Some(entry) => (state.get(&id) != Some(&entry)).then_some(Change::Put(entry)),
            None => state.get(&id).is_some().then_some(Change::Remove { id }),
        })
        .collect();
    Ok(plan)
}

/// How many objects an operation carries (a tree's whole count, otherwise one and its parent).
fn objects(op: &Operation) -> usize {
    match op {
        Operation::Loadbalancer((LoadbalancerAction::Create | LoadbalancerAction::Sync, lb)) => {
            1 + lb.listeners.len() + lb.pools.iter().map(|p| 1 + p.members.len() + usize::from(p.healthmonitor.is_some())).sum::<usize>()
        }
        Operation::Pool((Action::Create | Action::Update, p)) => 2 + p.members.len() + usize::from(p.healthmonitor.is_some()),
        Operation::MemberBatchUpdate(batch) => 2 + batch.members.len(),
        _ => 2,
    }
}

/// A member of a tree, under the id of the pool it is nested in. Field by field: `..m.clone()`
/// copied the old pool id only to drop it, for every member of a tree.
fn in_pool(m: &Member, pool_id: &str) -> Member {
    Member {
        id: m.id.clone(),
        pool_id: pool_id.to_string(),
        address: m.address.clone(),
        protocol_port: m.protocol_port,
        weight: m.weight,
        admin_state_up: m.admin_state_up,
        backup: m.backup,
        monitor_address: m.monitor_address.clone(),
        monitor_port: m.monitor_port,
    }
}

fn put_pool_tree(ov: &mut Overlay, pool: &Pool, now: &str) -> Result<(), PolicyError> {
    ov.put(&pool.id, Object::Pool(strip_pool(pool)), now)?;
    for m in &pool.members {
        ov.put(&m.id, Object::Member(in_pool(m, &pool.id)), now)?;
    }
    if let Some(h) = &pool.healthmonitor {
        ov.put(&h.id, Object::Healthmonitor(HealthMonitor { pool_id: pool.id.clone(), ..h.clone() }), now)?;
    }
    Ok(())
}

/// The statuses of Octavia's lifecycle table (PROVIDER-NOTES §5) for this operation.
fn build_statuses(ov: &Overlay, op: &Operation, plan: &mut Plan) -> Result<(), PolicyError> {
    use ObjectKind as K;
    use ProvisioningStatus::{Active, Deleted};
    let mut st = Statuses::new(ov);
    match op {
        Operation::Loadbalancer((LoadbalancerAction::Create | LoadbalancerAction::Sync, lb)) => {
            let mut tree = Vec::new();
            tree.push(status(K::Loadbalancer, &lb.id, Some(Active), Some(admin_operating(lb.admin_state_up))));
            for l in &lb.listeners {
                tree.push(status(K::Listener, &l.id, Some(Active), Some(admin_operating(l.admin_state_up))));
            }
            for p in &lb.pools {
                tree.push(status(K::Pool, &p.id, Some(Active), Some(admin_operating(p.admin_state_up))));
                let monitored = p.healthmonitor.as_ref().is_some_and(|h| h.admin_state_up);
                for m in &p.members {
                    tree.push(status(K::Member, &m.id, Some(Active), Some(member_operating(m, monitored))));
                }
                if let Some(h) = &p.healthmonitor {
                    tree.push(status(K::HealthMonitor, &h.id, Some(Active), Some(admin_operating(h.admin_state_up))));
                }
            }
            st.failed = tree.iter().map(|s| status(s.kind, &s.id, Some(ProvisioningStatus::Error), Some(OperatingStatus::Error))).collect();
            st.ok = tree;
        }
        Operation::Loadbalancer((LoadbalancerAction::Update, lb)) => st.object(K::Loadbalancer, &lb.id, Active, Some(admin_operating(lb.admin_state_up))),
        Operation::LoadbalancerFailover(id) => st.object(K::Loadbalancer, id, Active, None),
        Operation::Loadbalancer((action @ (LoadbalancerAction::Delete | LoadbalancerAction::DeleteCascade), lb)) => {
            if *action == LoadbalancerAction::DeleteCascade {
                let mut seen = BTreeSet::new();
                for l in &lb.listeners {
                    deleted_l7(&mut st, &l.l7policies);
                    push_deleted(&mut st, K::Listener, &l.id, &mut seen);
                }
                for p in &lb.pools {
                    for m in &p.members {
                        push_deleted(&mut st, K::Member, &m.id, &mut seen);
                    }
                    if let Some(h) = &p.healthmonitor {
                        push_deleted(&mut st, K::HealthMonitor, &h.id, &mut seen);
                    }
                    push_deleted(&mut st, K::Pool, &p.id, &mut seen);
                }
                // Children the mapping knows but Octavia's object did not list go too.
                for id in descendants(ov.state, &lb.id) {
                    let kind = match ov.state.get(&id).map(|e| e.object()) {
                        Some(Object::Listener(_)) => K::Listener,
                        Some(Object::Pool(_)) => K::Pool,
                        Some(Object::Member(_)) => K::Member,
                        Some(Object::Healthmonitor(_)) => K::HealthMonitor,
                        _ => continue,
                    };
                    push_deleted(&mut st, kind, &id, &mut seen);
                }
            }
            st.ok.push(status(K::Loadbalancer, &lb.id, Some(Deleted), Some(OperatingStatus::Offline)));
            st.failed.push(status(K::Loadbalancer, &lb.id, Some(ProvisioningStatus::Error), None));
        }
        Operation::Listener((Action::Create | Action::Update, l)) => {
            st.object(K::Listener, &l.id, Active, Some(admin_operating(l.admin_state_up)));
            st.parent(K::Loadbalancer, &l.loadbalancer_id);
        }
        Operation::Listener((Action::Delete, l)) => {
            deleted_l7(&mut st, &l.l7policies);
            st.object(K::Listener, &l.id, Deleted, Some(OperatingStatus::Offline));
            st.parent(K::Loadbalancer, &l.loadbalancer_id);
        }
        Operation::Pool((action @ (Action::Create | Action::Update), p)) => {
            st.object(K::Pool, &p.id, Active, Some(admin_operating(p.admin_state_up)));
            let monitored = ov.monitor(&p.id).is_some_and(|h| h.admin_state_up);
            if *action == Action::Create {
                for m in &p.members {
                    st.object(K::Member, &m.id, Active, Some(member_operating(m, monitored)));
                }
                if let Some(h) = &p.healthmonitor {
                    st.object(K::HealthMonitor, &h.id, Active, Some(admin_operating(h.admin_state_up)));
                }
            }
            for l in ov.listeners_of_pool(&p.id) {
                st.parent(K::Listener, &l);
            }
            st.parent(K::Loadbalancer, &p.loadbalancer_id);
        }
        Operation::Pool((Action::Delete, p)) => {
            let mut seen = BTreeSet::new();
            for m in &p.members {
                push_deleted(&mut st, K::Member, &m.id, &mut seen);
            }
            for id in ov.state.children(&p.id) {
                if let Some(Object::Member(_)) = ov.state.get(id).map(|e| e.object()) {
                    push_deleted(&mut st, K::Member, id, &mut seen);
                }
            }
            if let Some(h) = p.healthmonitor.as_ref().map(|h| h.id.clone()).or_else(|| state_monitor(ov.state, &p.id)) {
                push_deleted(&mut st, K::HealthMonitor, &h, &mut seen);
            }
            st.object(K::Pool, &p.id, Deleted, Some(OperatingStatus::Offline));
            let mut listeners: Vec<String> = p.listener_id.iter().cloned().collect();
            listeners.extend(ov.listeners_of_lb(&p.loadbalancer_id).into_iter().filter(|l| {
                ov.state.get(l).is_some_and(|e| matches!(e.object(), Object::Listener(s) if s.listener.default_pool_id.as_deref() == Some(&p.id)))
            }));
            listeners.sort_unstable();
            listeners.dedup();
            for l in listeners {
                st.parent(K::Listener, &l);
            }
            st.parent(K::Loadbalancer, &p.loadbalancer_id);
        }
        Operation::Member((Action::Create | Action::Update, m)) => {
            let monitored = ov.monitor(&m.pool_id).is_some_and(|h| h.admin_state_up);
            st.object(K::Member, &m.id, Active, Some(member_operating(m, monitored)));
            let lb = lb_of_pool(ov, &m.pool_id)?;
            st.parents_of_pool(&m.pool_id, &lb);
        }
        Operation::Member((Action::Delete, m)) => {
            st.object(K::Member, &m.id, Deleted, Some(OperatingStatus::Offline));
            // Deleting what is already gone still answers DELETED; the host adds the load balancer.
            if let Ok(lb) = lb_of_pool(ov, &m.pool_id) {
                st.parents_of_pool(&m.pool_id, &lb);
            }
        }
        Operation::MemberBatchUpdate(batch) => {
            let monitored = ov.monitor(&batch.pool_id).is_some_and(|h| h.admin_state_up);
            for m in &batch.members {
                st.object(K::Member, &m.id, Active, Some(member_operating(m, monitored)));
            }
            for id in ov.state.children(&batch.pool_id) {
                if matches!(ov.state.get(id).map(|e| e.object()), Some(Object::Member(_))) && !lists(batch, id) {
                    st.object(K::Member, id, Deleted, Some(OperatingStatus::Offline));
                }
            }
            let lb = lb_of_pool(ov, &batch.pool_id)?;
            st.parents_of_pool(&batch.pool_id, &lb);
        }
        Operation::HealthMonitor((Action::Create | Action::Update, h)) => {
            st.object(K::HealthMonitor, &h.id, Active, Some(admin_operating(h.admin_state_up)));
            let lb = lb_of_pool(ov, &h.pool_id)?;
            st.parents_of_pool(&h.pool_id, &lb);
        }
        Operation::HealthMonitor((Action::Delete, h)) => {
            st.object(K::HealthMonitor, &h.id, Deleted, Some(OperatingStatus::Offline));
            for m in ov.members(&h.pool_id) {
                if m.admin_state_up && m.weight > 0 {
                    st.ok.push(status(K::Member, &m.id, None, Some(OperatingStatus::NoMonitor)));
                }
            }
            if let Ok(lb) = lb_of_pool(ov, &h.pool_id) {
                st.parents_of_pool(&h.pool_id, &lb);
            }
        }
        Operation::L7policy((Action::Delete, p)) => {
            for r in &p.rules {
                st.object(K::L7rule, &r.id, Deleted, None);
            }
            st.object(K::L7policy, &p.id, Deleted, None);
            st.parent(K::Listener, &p.listener_id);
            if let Some(l) = ov.listener(&p.listener_id) {
                st.parent(K::Loadbalancer, &l.listener.loadbalancer_id.clone());
            }
        }
        Operation::L7rule((Action::Delete, r)) => {
            st.object(K::L7rule, &r.id, Deleted, None);
            st.parent(K::L7policy, &r.l7policy_id);
        }
        Operation::L7policy((Action::Create | Action::Update, p)) => {
            return Err(PolicyError::Unsupported(format!(
                "L7 policy {}: L7 policies are not supported: LoxiLB rules match on VIP, port and protocol only",
                p.id
            )))
        }
        Operation::L7rule((Action::Create | Action::Update, r)) => {
            return Err(PolicyError::Unsupported(format!("L7 rule {}: L7 rules are not supported: LoxiLB rules match on VIP, port and protocol only", r.id)))
        }
    }
    plan.statuses = st.ok;
    plan.failure_statuses = st.failed;
    Ok(())
}

fn state_monitor(state: &State, pool_id: &str) -> Option<String> {
    state.children(pool_id).into_iter().find(|id| matches!(state.get(id).map(|e| e.object()), Some(Object::Healthmonitor(_)))).map(str::to_string)
}

fn descendants(state: &State, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for child in state.children(id) {
        out.extend(descendants(state, child));
        out.push(child.to_string());
    }
    out
}

/// Whether a batch update lists member `id`. A scan: a pool's members are few (a rule holds at most 32
/// endpoints), and a set collected for this alone instantiated a sort and a tree builder in the component.
fn lists(batch: &MemberBatch, id: &str) -> bool {
    batch.members.iter().any(|m| m.id == id)
}

fn push_deleted(st: &mut Statuses, kind: ObjectKind, id: &str, seen: &mut BTreeSet<String>) {
    if seen.insert(id.to_string()) {
        st.ok.push(status(kind, id, Some(ProvisioningStatus::Deleted), None));
    }
}

fn deleted_l7(st: &mut Statuses, policies: &[crate::octavia::L7policy]) {
    for p in policies {
        for r in &p.rules {
            st.ok.push(status(ObjectKind::L7rule, &r.id, Some(ProvisioningStatus::Deleted), None));
        }
        st.ok.push(status(ObjectKind::L7policy, &p.id, Some(ProvisioningStatus::Deleted), None));
    }
}

/// Renders one listener of the current mapping (no operation applied).
pub fn render_listener(state: &State, listener_id: &str, config: &Config) -> Result<Option<Rendered>, PolicyError> {
    Overlay::new(state, 0).render(listener_id, config)
}

/// Checks of every object the operation carries that need no mapping: what `validate` answers when the
/// policy lacks the parents.
pub fn validate_objects(op: &Operation, config: &Config) -> Result<(), PolicyError> {
    let profile = &config.profile;
    let check_pool_tree = |p: &Pool| -> Result<(), PolicyError> {
        translate::check_pool(p, profile)?;
        p.members.iter().try_for_each(translate::check_member)?;
        p.healthmonitor.as_ref().map_or(Ok(()), translate::check_monitor)
    };
    match op {
        Operation::Loadbalancer((action @ (LoadbalancerAction::Create | LoadbalancerAction::Update | LoadbalancerAction::Sync), lb)) => {
            translate::check_loadbalancer(lb)?;
            for l in &lb.listeners {
                translate::check_listener(l, profile)?;
                // Only what a user asks for now is refused: a tree read back from Octavia (sync, update)
                // may carry restrictions programmed before this check existed, which keep being rendered.
                if *action == LoadbalancerAction::Create {
                    translate::check_source_restriction(l)?;
                }
            }
            lb.pools.iter().try_for_each(check_pool_tree)
        }
        Operation::Listener((Action::Create | Action::Update, l)) => {
            translate::check_listener(l, profile)?;
            translate::check_source_restriction(l)
        }
        Operation::Pool((Action::Create | Action::Update, p)) => check_pool_tree(p),
        Operation::Member((Action::Create | Action::Update, m)) => translate::check_member(m),
        Operation::MemberBatchUpdate(b) => b.members.iter().try_for_each(translate::check_member),
        Operation::HealthMonitor((Action::Create | Action::Update, h)) => translate::check_monitor(h),
        Operation::L7policy((Action::Create | Action::Update, p)) => Err(PolicyError::Unsupported(format!(
            "L7 policy {} ({}): L7 policies are not supported: LoxiLB rules match on VIP, port and protocol only",
            p.id, p.action
        ))),
        Operation::L7rule((Action::Create | Action::Update, r)) => Err(PolicyError::Unsupported(format!(
            "L7 rule {} ({} {}): L7 rules are not supported: LoxiLB rules match on VIP, port and protocol only",
            r.id, r.kind, r.compare_type
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Memory;

    fn lb(id: &str, project: &str, vip: &str) -> Loadbalancer {
        serde_json::from_value(serde_json::json!({
            "id": id, "project_id": project, "name": null, "vip_address": vip, "additional_vips": [], "admin_state_up": true,
            "flavor": [], "listeners": [], "pools": []
        }))
        .expect("a load balancer")
    }

    fn listener(id: &str, lb: &str, port: u16) -> Listener {
        serde_json::from_value(serde_json::json!({
            "id": id, "loadbalancer_id": lb, "protocol": "TCP", "protocol_port": port, "default_pool_id": null, "admin_state_up": true,
            "connection_limit": null, "timeout_client_data": null, "timeout_member_connect": null, "timeout_member_data": null,
            "allowed_cidrs": [], "insert_headers": [], "default_tls_container_ref": null, "sni_container_refs": [],
            "client_authentication": null, "l7policies": []
        }))
        .expect("a listener")
    }

    fn applied(mapping: &mut Memory, op: &Operation) -> Plan {
        let plan = plan(&State::new(mapping), op, &Config::default(), "now").expect("a plan");
        plan.changes.iter().cloned().for_each(|c| crate::state::apply(mapping, c));
        plan
    }

    fn conflict(mapping: &Memory, op: &Operation) -> String {
        match plan(&State::new(mapping), op, &Config::default(), "now") {
            Err(PolicyError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_vip_held_by_another_load_balancer_is_named_only_within_the_same_project() {
        let mut mapping = Memory::default();
        applied(&mut mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, lb("lb-a", "project-1", "10.0.0.1"))));

        let same = conflict(&mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, lb("lb-b", "project-1", "10.0.0.1"))));
        assert!(same.contains("lb-a") && same.contains("your project") && same.contains("vip_address"), "{same}");
        let other = conflict(&mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, lb("lb-c", "project-2", "10.0.0.1"))));
        assert!(!other.contains("lb-a") && other.contains("another load balancer"), "{other}");
    }

    #[test]
    fn a_port_held_by_another_load_balancer_is_named_only_within_the_same_project() {
        let mut mapping = Memory::default();
        applied(&mut mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, lb("lb-a", "project-1", "10.0.0.1"))));
        applied(&mut mapping, &Operation::Listener((Action::Create, listener("l-a", "lb-a", 80))));
        // Another load balancer whose VIP is the same address written differently, in each project.
        for (id, project, named) in [("lb-b", "project-1", true), ("lb-c", "project-2", false)] {
            let mut with_b = mapping.clone();
            // Inserted directly: its own VIP key differs (an additional VIP in real life), its listener's does not.
            let entry = crate::state::Entry::new(
                format!("lb_{id}"),
                "10.0.0.1".into(),
                0,
                String::new(),
                "now".into(),
                Object::Loadbalancer(lb(id, project, "10.0.0.1")),
            );
            crate::state::apply(&mut with_b, Change::Put(entry));
            let message = conflict(&with_b, &Operation::Listener((Action::Create, listener("l-b", id, 80))));
            assert_eq!(message.contains("lb-a"), named, "{message}");
            assert!(message.contains("protocol_port"), "{message}");
        }
    }

    /// Load balancer `lb` with listeners of these ids and ports, all on pool `pool` of one member.
    fn tree_on_one_pool(listeners: &[(&str, u16)]) -> Loadbalancer {
        let mut tree = lb("lb", "p", "10.0.0.1");
        tree.listeners = listeners.iter().map(|(id, port)| Listener { default_pool_id: Some("pool".into()), ..listener(id, "lb", *port) }).collect();
        tree.pools = vec![serde_json::from_value(serde_json::json!({
            "id": "pool", "loadbalancer_id": "lb", "listener_id": listeners[0].0, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
            "session_persistence": null, "tls_enabled": false, "admin_state_up": true, "healthmonitor": null,
            "members": [{"id": "m1", "pool_id": "pool", "address": "10.0.1.1", "protocol_port": 8080, "weight": 1, "admin_state_up": true,
                         "backup": false, "monitor_address": null, "monitor_port": null}]
        }))
        .unwrap()];
        tree
    }

    fn second_member() -> Operation {
        Operation::Member((
            Action::Create,
            serde_json::from_value(serde_json::json!({"id": "m2", "pool_id": "pool", "address": "10.0.1.2",
            "protocol_port": 8080, "weight": 1, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}))
            .unwrap(),
        ))
    }

    /// The host's questions for member updates each right after the previous one's commit, in a pool of `n`
    /// members, with the entries kept between calls as in the component.
    fn questions_per_committed_update(n: usize) -> u32 {
        let mut mapping = Memory::default();
        applied(&mut mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, tree_on_one_pool(&[("l", 80)]))));
        let member = |i: usize, weight: u32| -> Member {
            serde_json::from_value(serde_json::json!({"id": format!("m{i}"), "pool_id": "pool", "address": format!("10.0.{}.{}", i / 200, i % 200 + 1),
                "protocol_port": 8080, "weight": weight, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}))
            .unwrap()
        };
        for i in 2..=n {
            applied(&mut mapping, &Operation::Member((Action::Create, member(i, 1))));
        }
        let mut kept = crate::state::Kept::default();
        let mut asked = 0;
        for weight in 2..5 {
            let source = crate::state::tests::Counting { inner: &mapping, asked: std::cell::Cell::new(0), changes: true };
            let plan =
                plan(&State::keeping(&source, &mut kept), &Operation::Member((Action::Update, member(n / 2, weight))), &Config::default(), "now").unwrap();
            asked = source.asked.get();
            plan.changes.into_iter().for_each(|c| crate::state::apply(&mut mapping, c));
        }
        asked
    }

    #[test]
    fn after_a_commit_an_update_asks_the_host_about_what_changed_not_about_every_member() {
        let (small, large) = (questions_per_committed_update(4), questions_per_committed_update(32));
        assert_eq!(small, large, "the questions do not grow with the pool");
        assert!(large <= 6, "{large} questions");
    }

    #[test]
    fn undo_puts_back_the_rule_a_failed_update_replaced() {
        let mut mapping = Memory::default();
        let created = applied(&mut mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, tree_on_one_pool(&[("l", 80)]))));
        let LoxilbCall::UpsertRule(old_rule) = &created.calls[0] else { panic!("{:?}", created.calls) };

        let update = plan(&State::new(&mapping), &second_member(), &Config::default(), "now").unwrap();
        assert_eq!(update.calls.len(), 1);
        assert_eq!(update.undo, vec![LoxilbCall::UpsertRule(old_rule.clone())]);
    }

    #[test]
    fn undo_puts_back_every_listener_a_change_touched_the_last_listener_first() {
        let mut mapping = Memory::default();
        let created = applied(&mut mapping, &Operation::Loadbalancer((LoadbalancerAction::Create, tree_on_one_pool(&[("l1", 80), ("l2", 81)]))));
        assert_eq!(created.calls.len(), 2, "{:?}", created.calls);
        assert!(created.undo.iter().all(|c| matches!(c, LoxilbCall::DeleteRule(_))) && created.undo.len() == 2);

        let update = plan(&State::new(&mapping), &second_member(), &Config::default(), "now").unwrap();
        let port = |c: &LoxilbCall| match c {
            LoxilbCall::UpsertRule(r) => (r.service.port, r.endpoints.len()),
            other => panic!("{other:?}"),
        };
        assert_eq!(update.calls.iter().map(port).collect::<Vec<_>>(), [(80, 2), (81, 2)]);
        assert_eq!(update.undo.iter().map(port).collect::<Vec<_>>(), [(81, 1), (80, 1)]);
    }

    #[test]
    fn a_rule_is_recreated_when_any_part_of_its_key_changes_and_updated_in_place_otherwise() {
        let rule: LbRule = serde_json::from_value(serde_json::json!({
            "service": {"external_ip": "10.0.0.1", "port": 80, "protocol": "tcp", "sel": 0, "mode": 2, "security": 0, "monitor": false,
                        "inactive_timeout": 0, "block": 0, "name": "n", "probetype": "", "probeport": 0, "probereq": "", "proberesp": "",
                        "probe_timeout": 0, "probe_retries": 0, "proxyprotocolv2": false, "bgp": false, "host": ""},
            "endpoints": [{"ip": "10.0.1.1", "target_port": 8080, "weight": 1}], "allowed_sources": [], "secondary_ips": []
        }))
        .unwrap();
        let old = Rendered { rule, probes: Vec::new() };
        let changed = |f: &dyn Fn(&mut LbRule)| {
            let mut new = old.clone();
            f(&mut new.rule);
            let mut calls = Vec::new();
            diff(Some(&old), Some(&new), &mut calls);
            calls
        };
        let recreated: [&dyn Fn(&mut LbRule); 6] = [
            &|r| r.service.external_ip = "10.0.0.2".into(),
            &|r| r.service.port = 81,
            &|r| r.service.protocol = "udp".into(),
            &|r| r.service.block = 1,
            &|r| r.service.host = "a.example".into(),
            &|r| r.service.bgp = true,
        ];
        for change in recreated {
            let calls = changed(change);
            assert!(matches!(calls.as_slice(), [LoxilbCall::DeleteRule(k), LoxilbCall::UpsertRule(_)] if *k == rule_key(&old.rule)), "{calls:?}");
        }
        let calls = changed(&|r| r.endpoints[0].target_port = 8081);
        assert!(matches!(calls.as_slice(), [LoxilbCall::UpsertRule(r)] if r.endpoints[0].target_port == 8081), "{calls:?}");
    }
}
