//! How far a LoxiLB target is from the desired rules: the linear diff reconciliation repairs and
//! `loxilb-octavia nodes` reports.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState as FoldHasher;

use crate::runtime::bindings::loxilb_types::{LbRule, ObservedRule};
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

impl Drift<'_> {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.different.is_empty() && self.extra.is_empty()
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

/// Whether LoxiLB can turn `got` into `want` in place. It keeps the name, the monitor flag and the BGP
/// flag of an existing rule on an update (`AddLbRule` updates neither), and refuses to switch a rule into
/// or out of fullproxy mode: those need the rule deleted first.
pub fn updatable_in_place(got: &LbRule, want: &LbRule) -> bool {
    let fullproxy = |r: &LbRule| r.service.mode == wire::MODE_FULLPROXY;
    got.service.name == want.service.name
        && got.service.monitor == want.service.monitor
        && got.service.bgp == want.service.bgp
        && fullproxy(got) == fullproxy(want)
}
