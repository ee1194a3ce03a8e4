//! The policy's exports as plain Rust over a mapping `State`: everything a call returns is computed from
//! its arguments and the mapping; the host executes it.

use crate::octavia::{ObjectStatus, Operation};
use crate::plan::{self, Plan};
use crate::policy_types::PolicyError;
use crate::state::State;
use crate::translate::Config;

/// An operation the policy refuses, with the statuses to report.
#[derive(Debug)]
pub struct Refused {
    pub error: PolicyError,
    pub statuses: Vec<ObjectStatus>,
}

/// Plans an operation; a refusal carries the statuses Octavia gets for it.
pub fn plan_or_refuse(state: &State, op: &Operation, config: &Config, now_ms: u64) -> Result<Plan, Refused> {
    plan::plan(state, op, config, &rfc3339(now_ms)).map_err(|error| Refused { statuses: refusal_statuses(state, op, config), error })
}

/// When a plan cannot be made the object goes to ERROR and its parents back to ACTIVE, so the load
/// balancer stays usable.
pub fn refusal_statuses(state: &State, op: &Operation, config: &Config) -> Vec<ObjectStatus> {
    use crate::octavia::{ObjectKind as K, ProvisioningStatus as P};
    let error =
        |kind, id: &str| ObjectStatus { kind, id: id.to_string(), provisioning: Some(P::Error), operating: Some(crate::octavia::OperatingStatus::Error) };
    let active = |kind, id: &str| ObjectStatus { kind, id: id.to_string(), provisioning: Some(P::Active), operating: None };
    let _ = config;
    let lb_of_pool = |pool_id: &str| match state.get(pool_id).map(|e| e.object()) {
        Some(crate::state::Object::Pool(p)) => Some(p.loadbalancer_id.clone()),
        _ => None,
    };
    let mut out = Vec::new();
    match op {
        Operation::Loadbalancer((_, lb)) => out.push(error(K::Loadbalancer, &lb.id)),
        Operation::LoadbalancerFailover(id) => out.push(error(K::Loadbalancer, id)),
        Operation::Listener((_, l)) => {
            out.push(error(K::Listener, &l.id));
            out.push(active(K::Loadbalancer, &l.loadbalancer_id));
        }
        Operation::Pool((_, p)) => {
            out.push(error(K::Pool, &p.id));
            if let Some(l) = &p.listener_id {
                out.push(active(K::Listener, l));
            }
            out.push(active(K::Loadbalancer, &p.loadbalancer_id));
        }
        Operation::Member((_, m)) => {
            out.push(error(K::Member, &m.id));
            out.push(active(K::Pool, &m.pool_id));
            out.extend(lb_of_pool(&m.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::MemberBatchUpdate(b) => {
            out.extend(b.members.iter().map(|m| error(K::Member, &m.id)));
            out.push(active(K::Pool, &b.pool_id));
            out.extend(lb_of_pool(&b.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::HealthMonitor((_, h)) => {
            out.push(error(K::HealthMonitor, &h.id));
            out.push(active(K::Pool, &h.pool_id));
            out.extend(lb_of_pool(&h.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::L7policy((_, p)) => {
            out.push(error(K::L7policy, &p.id));
            out.push(active(K::Listener, &p.listener_id));
        }
        Operation::L7rule((_, r)) => {
            out.push(error(K::L7rule, &r.id));
            out.push(active(K::L7policy, &r.l7policy_id));
        }
    }
    out
}

pub fn describe(error: &PolicyError) -> String {
    match error {
        PolicyError::Unsupported(m) => format!("unsupported: {m}"),
        PolicyError::Invalid(m) => format!("invalid: {m}"),
        PolicyError::MissingState(m) => format!("missing state: {m}"),
        PolicyError::Conflict(m) => format!("conflict: {m}"),
    }
}

pub use loxilb_policy_sdk::view::rfc3339;
