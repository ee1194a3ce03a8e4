//! The policy at run time: the mapping in memory, loaded from storage, changed only by carrying out a
//! plan through the host's capabilities.

use crate::caps::{Caps, Level};
use crate::compact;
use crate::loxilb_types::{EndpointProbe, LbRule, LoxilbCall, RuleKey};
use crate::octavia::{ObjectStatus, Operation};
use crate::plan::{self, Plan};
use crate::policy_types::{PolicyError, RecoveryReport};
use crate::state::{Change, State};
use crate::store;
use crate::translate::Config;

/// The journal is folded into a new snapshot once it holds more records than this or than an eighth of
/// the mapping's entries, whichever is larger. A start after a crash replays at most that many records,
/// and replaying one costs about six times loading a mapping from the snapshot (~2.8 µs against ~0.47 µs
/// at 100k), so the bound keeps the longest load under twice the snapshot's. Compacting that often is
/// affordable because a compaction copies the unchanged lines in runs and the host writes the file off
/// the operation's path (see `compact` and the host's storage).
pub const MIN_COMPACTION_RECORDS: u32 = 4096;

pub fn compaction_due(journal_records: u32, mappings: usize) -> bool {
    journal_records > MIN_COMPACTION_RECORDS.max(mappings as u32 / 8)
}

pub struct Policy {
    pub state: State,
    pub config: Config,
}

/// What `handle` reports.
pub struct Handled {
    pub statuses: Vec<ObjectStatus>,
    pub error: Option<PolicyError>,
    pub calls_made: u32,
}

impl Policy {
    pub fn new(config: Config) -> Self {
        Policy { state: State::default(), config }
    }

    /// Loads the mapping: snapshot, then every journal record after it.
    pub fn load(&mut self, caps: &mut dyn Caps) -> Result<RecoveryReport, PolicyError> {
        let mut state = State::default();
        if let Some(bytes) = caps.read_snapshot().map_err(PolicyError::Storage)? {
            let (loaded, notes) = store::decode_snapshot(bytes).map_err(PolicyError::Storage)?;
            for note in notes {
                caps.log(Level::Warning, &note);
            }
            state = loaded;
        }
        let records = caps.replay_journal().map_err(PolicyError::Storage)?;
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            match store::decode_change(record) {
                Ok(change) => state.apply(change),
                // A torn last record is what a crash mid-append leaves: everything before it is whole.
                Err(e) if i + 1 == count => caps.log(Level::Warning, &format!("ignoring torn last journal record: {e}")),
                Err(e) => return Err(PolicyError::Storage(format!("journal record {i}: {e}"))),
            }
        }
        let loaded = state.len() as u32;
        self.state = state;
        caps.log(Level::Info, &format!("mapping loaded: {loaded} entries ({count} journal records)"));
        Ok(RecoveryReport { loaded, recovered: 0, deterministic: 0, conflicts: Vec::new() })
    }

    pub fn plan(&self, caps: &mut dyn Caps, op: &Operation) -> Result<Plan, PolicyError> {
        let now = rfc3339(caps.now_ms());
        plan::plan(&self.state, op, &self.config, &now)
    }

    /// Translates, calls LoxiLB, and commits the mapping. On a failed call every listener the plan touched
    /// is put back to its old rule, the mapping is left as it was, and the failure statuses are returned.
    pub fn handle(&mut self, caps: &mut dyn Caps, op: &Operation) -> Handled {
        let plan = match self.plan(caps, op) {
            Ok(plan) => plan,
            Err(error) => {
                caps.log(Level::Warning, &format!("operation refused: {}", describe(&error)));
                return Handled { statuses: refusal_statuses(&self.state, op, &self.config), error: Some(error), calls_made: 0 };
            }
        };
        let mut calls_made = 0;
        for call in &plan.calls {
            calls_made += 1;
            if let Err(error) = call_loxilb(caps, call) {
                let mut rollback = Vec::new();
                for change in plan.listeners.iter().rev() {
                    plan::diff(change.new.as_ref(), change.old.as_ref(), &mut rollback);
                }
                let mut rollback_failures = Vec::new();
                for undo in &rollback {
                    calls_made += 1;
                    if let Err(e) = call_loxilb(caps, undo) {
                        rollback_failures.push(describe(&e));
                    }
                }
                let error = if rollback_failures.is_empty() {
                    error
                } else {
                    PolicyError::Loxilb(format!("{}; rolling back also failed ({}): reconciliation will retry", describe(&error), rollback_failures.join("; ")))
                };
                caps.log(Level::Error, &format!("operation failed: {}", describe(&error)));
                return Handled { statuses: plan.failure_statuses, error: Some(error), calls_made };
            }
        }
        self.commit(caps, plan.changes);
        Handled { statuses: plan.statuses, error: None, calls_made }
    }

    /// Applies mapping changes in memory and journals them. A storage failure does not undo an
    /// operation LoxiLB already carries: it is logged loudly, and reconciliation or a re-sync repairs it.
    pub fn commit(&mut self, caps: &mut dyn Caps, changes: Vec<Change>) {
        for change in changes {
            let (record, change) = store::journal_change(change);
            // The record's start is enough to follow the mapping (an entry's metadata runs to ~1 kB).
            caps.log(Level::Debug, &format!("mapping {}", String::from_utf8_lossy(&record[..record.len().min(160)])));
            if let Err(e) = caps.append_journal(&record) {
                caps.log(Level::Error, &format!("could not journal a mapping change (kept in memory): {e}"));
            }
            self.state.apply(change);
        }
        let journal = caps.journal_length();
        if compaction_due(journal, self.state.len()) {
            self.snapshot(caps);
        }
    }

    pub fn snapshot(&mut self, caps: &mut dyn Caps) {
        let now = rfc3339(caps.now_ms());
        let compacted = compact::compact(std::mem::take(&mut self.state), &now);
        if let Err(e) = caps.write_snapshot(&compacted.bytes) {
            caps.log(Level::Error, &format!("could not write the mapping snapshot: {e}"));
        }
        // The same mapping, now read in place from what was just written (see `compact`).
        self.state = compacted.state;
    }
}

/// When a plan cannot be made the object goes to ERROR and its parents back to ACTIVE, so the load
/// balancer stays usable.
fn refusal_statuses(state: &State, op: &Operation, config: &Config) -> Vec<ObjectStatus> {
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
        PolicyError::Loxilb(m) => format!("LoxiLB: {m}"),
        PolicyError::Storage(m) => format!("storage: {m}"),
    }
}

/// LoxiLB's JSON for a rule (field names exactly as its API expects).
pub fn rule_json(rule: &LbRule) -> serde_json::Value {
    let s = &rule.service;
    let mut service = serde_json::json!({
        "externalIP": s.external_ip, "port": s.port, "protocol": s.protocol, "sel": s.sel, "mode": s.mode,
        "security": s.security, "bgp": s.bgp, "monitor": s.monitor, "inactiveTimeOut": s.inactive_timeout,
        "block": s.block, "name": s.name, "oper": 0,
    });
    let extra = service.as_object_mut().expect("object");
    if !s.probetype.is_empty() {
        extra.insert("probetype".into(), s.probetype.clone().into());
        extra.insert("probeport".into(), s.probeport.into());
    }
    if !s.probereq.is_empty() {
        extra.insert("probereq".into(), s.probereq.clone().into());
    }
    if !s.proberesp.is_empty() {
        extra.insert("proberesp".into(), s.proberesp.clone().into());
    }
    if s.monitor {
        extra.insert("probeTimeout".into(), s.probe_timeout.into());
        extra.insert("probeRetries".into(), s.probe_retries.into());
    }
    if s.proxyprotocolv2 {
        extra.insert("proxyprotocolv2".into(), true.into());
    }
    if !s.host.is_empty() {
        extra.insert("host".into(), s.host.clone().into());
    }
    let mut body = serde_json::json!({
        "serviceArguments": service,
        "endpoints": rule.endpoints.iter().map(|e| serde_json::json!({"endpointIP": e.ip, "targetPort": e.target_port, "weight": e.weight})).collect::<Vec<_>>(),
    });
    let obj = body.as_object_mut().expect("object");
    if !rule.allowed_sources.is_empty() {
        obj.insert("allowedSources".into(), rule.allowed_sources.iter().map(|p| serde_json::json!({"prefix": p})).collect());
    }
    if !rule.secondary_ips.is_empty() {
        obj.insert("secondaryIPs".into(), rule.secondary_ips.iter().map(|ip| serde_json::json!({"secondaryIP": ip})).collect());
    }
    body
}

pub fn probe_json(probe: &EndpointProbe) -> serde_json::Value {
    serde_json::json!({
        "hostName": probe.host_name, "name": probe.name, "probeType": probe.probe_type, "probePort": probe.probe_port,
        "probeReq": probe.probe_req, "probeResp": probe.probe_resp, "probeDuration": probe.probe_duration,
        "inactiveReTries": probe.inactive_retries,
    })
}

pub fn delete_rule_path(key: &RuleKey) -> String {
    let host = if key.host.is_empty() { String::new() } else { format!("/hosturl/{}", key.host) };
    format!("/config/loadbalancer{host}/externalipaddress/{}/port/{}/protocol/{}?block={}", key.external_ip, key.port, key.protocol, key.block)
}

/// LoxiLB's `result` text, present in both its old (200 + result) and new (coded) error styles.
fn result_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("result").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Carries out one call with LoxiLB's real contract: success is HTTP 200 *and* `result == "Success"`
/// (LoxiLB ≤ 0.9.8.4 answers errors with 200); an unchanged re-POST ("lbrule-exists") is a no-op; a
/// missing rule or endpoint on delete is already deleted.
pub fn call_loxilb(caps: &mut dyn Caps, call: &LoxilbCall) -> Result<(), PolicyError> {
    let (method, path, body, missing_ok, exists_ok) = match call {
        LoxilbCall::UpsertRule(rule) => ("POST", "/config/loadbalancer".to_string(), Some(rule_json(rule).to_string()), false, true),
        LoxilbCall::DeleteRule(key) => ("DELETE", delete_rule_path(key), None, true, false),
        LoxilbCall::UpsertProbe(p) => ("POST", "/config/endpoint".to_string(), Some(probe_json(p).to_string()), false, false),
        LoxilbCall::DeleteProbe(p) => (
            "DELETE",
            format!("/config/endpoint/epipaddress/{}?name={}&probe_type={}&probe_port={}", p.host_name, p.name, p.probe_type, p.probe_port),
            None,
            true,
            false,
        ),
    };
    let response = caps.request(method, &path, body.as_deref()).map_err(|e| PolicyError::Loxilb(format!("{method} {path}: {e}")))?;
    let result = result_text(&response.body);
    if response.status == 200 && result == "Success" {
        return Ok(());
    }
    let lower = result.to_ascii_lowercase();
    if exists_ok && lower.contains("lbrule-exists") {
        return Ok(());
    }
    if missing_ok && (response.status == 404 || lower.contains("no-rule") || lower.contains("not-exists") || lower.contains("notfound")) {
        return Ok(());
    }
    Err(PolicyError::Loxilb(format!("{method} {path}: HTTP {}: {result}", response.status)))
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

    #[test]
    fn delete_paths_carry_ipv6_bare_and_block() {
        let key = RuleKey { external_ip: "2001:db8::1".into(), port: 80, protocol: "tcp".into(), block: 0, host: String::new() };
        assert_eq!(delete_rule_path(&key), "/config/loadbalancer/externalipaddress/2001:db8::1/port/80/protocol/tcp?block=0");
    }
}
