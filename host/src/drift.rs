//! How far a LoxiLB target is from the desired rules: the linear diff reconciliation repairs and
//! `loxilb-octavia nodes` reports.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState as FoldHasher;

use crate::runtime::bindings::loxilb_types::{LbRule, LoxilbCall, ObservedRule};
use crate::runtime::bindings::policy_types::DesiredRule;
use crate::wire;

#[derive(Default)]
pub struct Drift<'a> {
    /// Wanted and not listed.
    pub missing: Vec<&'a DesiredRule>,
    /// Listed under the wanted key, but not as wanted: the rule wanted, and the one listed.
    pub different: Vec<(&'a DesiredRule, &'a LbRule)>,
    /// Listed and not wanted (orphans, as far as this mapping knows).
    pub extra: Vec<&'a ObservedRule>,
}

impl<'a> Drift<'a> {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.different.is_empty() && self.extra.is_empty()
    }

    /// Each rule to re-program, with the one LoxiLB lists under its key (none when it lacks it).
    pub fn repairs(&self) -> impl Iterator<Item = (&'a DesiredRule, Option<&'a LbRule>)> + '_ {
        self.missing.iter().map(|want| (*want, None)).chain(self.different.iter().map(|(want, got)| (*want, Some(*got))))
    }
}

/// Desired against observed rules, by rule key, in one pass over each.
pub fn drift<'a>(desired: &'a [DesiredRule], observed: &'a [ObservedRule]) -> Drift<'a> {
    let by_key: HashMap<wire::Identity, &LbRule, FoldHasher> = observed.iter().map(|o| (wire::identity(&o.rule), &o.rule)).collect();
    let mut drift = Drift::default();
    let mut wanted = HashSet::with_capacity_and_hasher(desired.len(), FoldHasher::default());
    for want in desired {
        let id = wire::identity(&want.rule);
        match by_key.get(&id) {
            None => drift.missing.push(want),
            Some(got) if !wire::matches(&want.rule, got) => drift.different.push((want, got)),
            Some(_) => {}
        }
        wanted.insert(id);
    }
    drift.extra = observed.iter().filter(|o| !wanted.contains(&wire::identity(&o.rule))).collect();
    drift
}

/// The calls that turn the rule LoxiLB lists (`got`, none when it lacks it) into the wanted one.
///
/// An in-place update is sent without `bgp`: LoxiLB keeps an existing rule's BGP flag on an update (and
/// `got` has the wanted one, or it would be deleted first), but counts every successful POST with `bgp`
/// as one more advertisement of the VIP, which the load balancer's single delete then never counts back
/// to zero: LoxiLB would go on attracting a deleted load balancer's traffic. A delete is of the rule
/// LoxiLB holds (its `bgp`, not the wanted one, says what to withdraw).
pub fn repair(want: &DesiredRule, got: Option<&LbRule>) -> Vec<LoxilbCall> {
    let mut calls = Vec::with_capacity(2 + want.probes.len());
    match got {
        Some(got) if updatable_in_place(got, &want.rule) => {
            let mut rule = want.rule.clone();
            rule.service.bgp = false;
            calls.push(LoxilbCall::UpsertRule(rule));
        }
        Some(got) => {
            calls.push(LoxilbCall::DeleteRule(wire::rule_key(got)));
            calls.push(LoxilbCall::UpsertRule(want.rule.clone()));
        }
        None => calls.push(LoxilbCall::UpsertRule(want.rule.clone())),
    }
    calls.extend(want.probes.iter().cloned().map(LoxilbCall::UpsertProbe));
    calls
}

/// Whether LoxiLB can turn `got` into `want` in place. It keeps the name, the monitor flag and the BGP
/// flag of an existing rule on an update (`AddLbRule` updates neither), and refuses to switch a rule into
/// or out of fullproxy mode: those need the rule deleted first. Source prefixes and secondary addresses
/// too: LoxiLB compares a list of as many prefixes as the rule holds inverted (API notes, §6), so other
/// prefixes of that number meet "lbrule-exists" and nothing changes, and it refuses any update changing
/// the secondary addresses (500 "secIP modify error"). An idle timeout too: LoxiLB applies one only along
/// with a change it compares, so a rule differing in nothing else meets "lbrule-exists".
pub fn updatable_in_place(got: &LbRule, want: &LbRule) -> bool {
    let fullproxy = |r: &LbRule| r.service.mode == wire::MODE_FULLPROXY;
    got.service.name == want.service.name
        && got.service.monitor == want.service.monitor
        && got.service.bgp == want.service.bgp
        && fullproxy(got) == fullproxy(want)
        && loxilb_api::same_set(&got.allowed_sources, &want.allowed_sources)
        && loxilb_api::same_addresses(&got.secondary_ips, &want.secondary_ips)
        && loxilb_api::idle_timeout(got.service.inactive_timeout, &got.service.protocol)
            == loxilb_api::idle_timeout(want.service.inactive_timeout, &want.service.protocol)
}
