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
        Operation::LoadbalancerCreate(lb) | Operation::LoadbalancerUpdate(lb) | Operation::LoadbalancerSync(lb) => out.push(error(K::Loadbalancer, &lb.id)),
        Operation::LoadbalancerDelete(d) => out.push(error(K::Loadbalancer, &d.loadbalancer.id)),
        Operation::LoadbalancerFailover(id) => out.push(error(K::Loadbalancer, id)),
        Operation::ListenerCreate(l) | Operation::ListenerUpdate(l) | Operation::ListenerDelete(l) => {
            out.push(error(K::Listener, &l.id));
            out.push(active(K::Loadbalancer, &l.loadbalancer_id));
        }
        Operation::PoolCreate(p) | Operation::PoolUpdate(p) | Operation::PoolDelete(p) => {
            out.push(error(K::Pool, &p.id));
            if let Some(l) = &p.listener_id {
                out.push(active(K::Listener, l));
            }
            out.push(active(K::Loadbalancer, &p.loadbalancer_id));
        }
        Operation::MemberCreate(m) | Operation::MemberUpdate(m) | Operation::MemberDelete(m) => {
            out.push(error(K::Member, &m.id));
            out.push(active(K::Pool, &m.pool_id));
            out.extend(lb_of_pool(&m.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::MemberBatchUpdate(b) => {
            out.extend(b.members.iter().map(|m| error(K::Member, &m.id)));
            out.push(active(K::Pool, &b.pool_id));
            out.extend(lb_of_pool(&b.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::HealthMonitorCreate(h) | Operation::HealthMonitorUpdate(h) | Operation::HealthMonitorDelete(h) => {
            out.push(error(K::HealthMonitor, &h.id));
            out.push(active(K::Pool, &h.pool_id));
            out.extend(lb_of_pool(&h.pool_id).map(|lb| active(K::Loadbalancer, &lb)));
        }
        Operation::L7policyCreate(p) | Operation::L7policyUpdate(p) | Operation::L7policyDelete(p) => {
            out.push(error(K::L7policy, &p.id));
            out.push(active(K::Listener, &p.listener_id));
        }
        Operation::L7ruleCreate(r) | Operation::L7ruleUpdate(r) | Operation::L7ruleDelete(r) => {
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

/// Milliseconds since the epoch as RFC 3339 UTC (the guest has no clock or calendar of its own).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_712_345_678_900), "2024-04-05T19:34:38Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
