//! An in-memory LoxiLB with the contract of the real one as far as the typed API sees it, for tests of
//! what drives LoxiLB (not of LoxiLB: the simulator reproduces its quirks).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::api::{Loxilb, WireError};
use crate::decode::observed_rule;
use crate::encode::{self, rule_json};
use crate::types::{EndpointProbe, LbRule, LoxilbCall, ObservedRule, RuleKey};

#[derive(Default)]
struct State {
    rules: BTreeMap<RuleKey, LbRule>,
    /// By (host name, name), LoxiLB's key when a name is given.
    probes: BTreeMap<(String, String), EndpointProbe>,
    calls: Vec<LoxilbCall>,
    down: bool,
}

/// Upserts replace by key, deletes of what is missing succeed, the list shows what LoxiLB's would (every
/// endpoint active, no traffic). While down, every call goes unanswered and nothing changes.
#[derive(Default)]
pub struct FakeLoxilb {
    state: Mutex<State>,
}

impl FakeLoxilb {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules held, by key.
    pub fn rules(&self) -> Vec<LbRule> {
        self.lock().rules.values().cloned().collect()
    }

    pub fn probes(&self) -> Vec<EndpointProbe> {
        self.lock().probes.values().cloned().collect()
    }

    /// Every call applied (not those made while down), in order.
    pub fn calls(&self) -> Vec<LoxilbCall> {
        self.lock().calls.clone()
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Forgets every rule and probe, as LoxiLB does when it restarts.
    pub fn restart(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.probes.clear();
    }

    fn up(&self, request: String) -> Result<MutexGuard<'_, State>, WireError> {
        let state = self.lock();
        if state.down {
            return Err(WireError::Unanswered { request, reason: "connection refused (fake LoxiLB is down)".into() });
        }
        Ok(state)
    }
}

impl Loxilb for FakeLoxilb {
    fn apply(&self, call: &LoxilbCall) -> Result<(), WireError> {
        let mut state = self.up(encode::request(call).label())?;
        state.calls.push(call.clone());
        match call {
            LoxilbCall::UpsertRule(rule) => drop(state.rules.insert(rule.key(), rule.clone())),
            LoxilbCall::DeleteRule(key) => drop(state.rules.remove(key)),
            LoxilbCall::UpsertProbe(p) => drop(state.probes.insert((p.host_name.clone(), p.name.clone()), p.clone())),
            LoxilbCall::DeleteProbe(p) => drop(state.probes.remove(&(p.host_name.clone(), p.name.clone()))),
        }
        Ok(())
    }

    fn list_rules(&self) -> Result<Vec<ObservedRule>, WireError> {
        let state = self.up(format!("GET {}", encode::RULE_LIST_PATH))?;
        // Through the wire's own encoding and decoding, so the list drops what LoxiLB's drops.
        Ok(state.rules.values().filter_map(|r| observed_rule(&rule_json(r))).collect())
    }

    fn list_conntrack(&self) -> Result<Vec<crate::conntrack::ConntrackEntry>, WireError> {
        // No traffic passes through the fake.
        self.up(format!("GET {}", crate::conntrack::CONNTRACK_PATH)).map(|_| Vec::new())
    }

    fn reachable(&self) -> Result<(), WireError> {
        self.up(format!("GET {}", encode::VERSION_PATH)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Endpoint, ServiceArgs};

    fn rule(port: u16, endpoint: &str) -> LbRule {
        LbRule {
            service: ServiceArgs {
                external_ip: "10.0.0.1".into(),
                port,
                protocol: "tcp".into(),
                name: "r".into(),
                probereq: "x".into(),
                ..ServiceArgs::default()
            },
            endpoints: vec![Endpoint { ip: endpoint.into(), target_port: 80, weight: 1 }],
            ..LbRule::default()
        }
    }

    #[test]
    fn upserts_replace_by_key_and_deleting_what_is_missing_succeeds() {
        let fake = FakeLoxilb::default();
        fake.apply(&LoxilbCall::UpsertRule(rule(80, "10.0.1.1"))).unwrap();
        fake.apply(&LoxilbCall::UpsertRule(rule(80, "10.0.1.2"))).unwrap();
        fake.apply(&LoxilbCall::UpsertRule(rule(81, "10.0.1.1"))).unwrap();
        assert_eq!(fake.rules(), [rule(80, "10.0.1.2"), rule(81, "10.0.1.1")]);

        let listed = fake.list_rules().unwrap();
        assert_eq!(listed[0].endpoints[0].state, "active");
        assert_eq!(listed[0].rule.service.probereq, "", "LoxiLB does not list it");

        fake.apply(&LoxilbCall::DeleteRule(rule(80, "").key())).unwrap();
        fake.apply(&LoxilbCall::DeleteRule(rule(80, "").key())).unwrap();
        assert_eq!(fake.rules(), [rule(81, "10.0.1.1")]);

        let probe = EndpointProbe { host_name: "10.0.1.1".into(), name: "10.0.1.1_tcp_80".into(), probe_type: "http".into(), ..EndpointProbe::default() };
        fake.apply(&LoxilbCall::UpsertProbe(probe.clone())).unwrap();
        fake.apply(&LoxilbCall::UpsertProbe(EndpointProbe { probe_type: "https".into(), ..probe.clone() })).unwrap();
        assert_eq!(fake.probes().len(), 1);
        fake.apply(&LoxilbCall::DeleteProbe(probe.clone())).unwrap();
        fake.apply(&LoxilbCall::DeleteProbe(probe)).unwrap();
        assert!(fake.probes().is_empty());
        assert_eq!(fake.calls().len(), 9);
    }

    #[test]
    fn down_answers_nothing_and_changes_nothing() {
        let fake = FakeLoxilb::default();
        fake.set_down(true);
        assert!(matches!(fake.apply(&LoxilbCall::UpsertRule(rule(80, "10.0.1.1"))), Err(WireError::Unanswered { .. })));
        assert!(fake.list_rules().is_err() && fake.reachable().is_err());
        fake.set_down(false);
        fake.reachable().unwrap();
        assert!(fake.rules().is_empty() && fake.calls().is_empty());
        fake.apply(&LoxilbCall::UpsertRule(rule(80, "10.0.1.1"))).unwrap();
        fake.restart();
        assert!(fake.list_rules().unwrap().is_empty());
    }
}
