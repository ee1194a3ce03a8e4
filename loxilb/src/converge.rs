//! Whether LoxiLB holds a rule as wanted, judged from its list.

use crate::types::LbRule;

/// What LoxiLB's list shows of a rule, borrowed: all that [`matches`] compares. The host builds it from its
/// own (WIT) rule types too, so a reconciliation pass compares 2,048 rules without copying any.
pub struct Listed<'a> {
    pub name: &'a str,
    pub sel: u8,
    pub mode: u8,
    pub monitor: bool,
    pub bgp: bool,
    pub probetype: &'a str,
    pub probeport: u16,
    pub proxyprotocolv2: bool,
    /// Seconds of idleness before a connection is dropped; 0 for LoxiLB's default (see [`idle_timeout`]).
    pub inactive_timeout: u32,
    pub protocol: &'a str,
    /// Address, target port and weight of each endpoint, in any order.
    pub endpoints: Vec<(&'a str, u16, u8)>,
    pub allowed_sources: &'a [String],
    pub secondary_ips: &'a [String],
}

/// The [`Listed`] view of a rule of any type shaped as [`LbRule`] is (the host's WIT bindings are): one
/// place says which of a rule's fields its listing shows.
#[macro_export]
macro_rules! listed {
    ($rule:expr) => {{
        let rule = $rule;
        let s = &rule.service;
        $crate::Listed {
            name: &s.name,
            sel: s.sel,
            mode: s.mode,
            monitor: s.monitor,
            bgp: s.bgp,
            probetype: &s.probetype,
            probeport: s.probeport,
            proxyprotocolv2: s.proxyprotocolv2,
            inactive_timeout: s.inactive_timeout,
            protocol: &s.protocol,
            endpoints: rule.endpoints.iter().map(|e| (e.ip.as_str(), e.target_port, e.weight)).collect(),
            allowed_sources: &rule.allowed_sources,
            secondary_ips: &rule.secondary_ips,
        }
    }};
}

impl<'a> From<&'a LbRule> for Listed<'a> {
    fn from(r: &'a LbRule) -> Self {
        listed!(r)
    }
}

/// Whether `got` (as LoxiLB lists it) is the rule `want`. Only what the list shows is compared; endpoint
/// order is LoxiLB's own, and a weight only matters under sel 2 (priority), where it is a share.
pub fn matches(want: &LbRule, got: &LbRule) -> bool {
    listed_matches(Listed::from(want), Listed::from(got))
}

/// [`matches`] over borrowed views.
pub fn listed_matches(want: Listed<'_>, got: Listed<'_>) -> bool {
    want.name == got.name
        && want.sel == got.sel
        && want.mode == got.mode
        && want.monitor == got.monitor
        && want.bgp == got.bgp
        && want.probetype == got.probetype
        && want.probeport == got.probeport
        && want.proxyprotocolv2 == got.proxyprotocolv2
        && idle_timeout(want.inactive_timeout, want.protocol) == idle_timeout(got.inactive_timeout, got.protocol)
        && want.endpoints.len() == got.endpoints.len()
        && same_set(want.allowed_sources, got.allowed_sources)
        && same_addresses(want.secondary_ips, got.secondary_ips)
        && endpoints(want.endpoints, want.sel) == endpoints(got.endpoints, got.sel)
}

/// The idle timeout LoxiLB applies for `inactive_timeout`, which is what its list shows: 0 stands for its
/// default, 240 s for tcp and sctp and 20 s for the other protocols (`LbDefaultInactiveTimeout` and
/// `LbDefaultInactiveNSTimeout`, set by `AddLbRule` in loxinet/rules.go).
pub fn idle_timeout(inactive_timeout: u32, protocol: &str) -> u32 {
    match (inactive_timeout, protocol) {
        (0, "tcp" | "sctp") => 240,
        (0, _) => 20,
        (t, _) => t,
    }
}

/// The same addresses in any order, however written (LoxiLB lists secondary addresses sorted, in Go's
/// form).
pub fn same_addresses(a: &[String], b: &[String]) -> bool {
    fn parsed(v: &[String]) -> Vec<Option<std::net::IpAddr>> {
        let mut ips: Vec<Option<std::net::IpAddr>> = v.iter().map(|ip| ip.parse().ok()).collect();
        ips.sort_unstable();
        ips
    }
    a == b || (a.len() == b.len() && parsed(a) == parsed(b))
}

/// Endpoints in one order, weights only where they matter (sel 2).
fn endpoints(mut l: Vec<(&str, u16, u8)>, sel: u8) -> Vec<(&str, u16, u8)> {
    if sel != 2 {
        l.iter_mut().for_each(|e| e.2 = 0);
    }
    l.sort_unstable();
    l
}

/// The same prefixes in any order (nearly always both empty, or equal as listed).
pub fn same_set(a: &[String], b: &[String]) -> bool {
    if a == b {
        return true;
    }
    fn sorted(v: &[String]) -> Vec<&str> {
        let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
    a.len() == b.len() && sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Endpoint, ServiceArgs};

    fn rule(sel: u8, endpoints: &[(&str, u16, u8)]) -> LbRule {
        LbRule {
            service: ServiceArgs { external_ip: "10.0.0.1".into(), port: 80, protocol: "tcp".into(), sel, name: "r".into(), ..ServiceArgs::default() },
            endpoints: endpoints.iter().map(|&(ip, target_port, weight)| Endpoint { ip: ip.into(), target_port, weight }).collect(),
            allowed_sources: vec!["10.0.0.0/8".into(), "192.0.2.0/24".into()],
            secondary_ips: Vec::new(),
        }
    }

    #[test]
    fn order_and_unlisted_fields_do_not_matter_but_what_loxilb_shows_does() {
        let want = rule(0, &[("10.0.1.1", 80, 1), ("10.0.1.2", 80, 1)]);
        let mut got = rule(0, &[("10.0.1.2", 80, 9), ("10.0.1.1", 80, 1)]);
        got.allowed_sources.reverse();
        got.service.probereq = "not listed".into();
        assert!(matches(&want, &got), "order, weights outside sel 2 and unlisted fields");
        let (mut six, mut six_long) = (want.clone(), want.clone());
        six.secondary_ips = vec!["2001:db8::2".into(), "2001:db8::1".into()];
        six_long.secondary_ips = vec!["2001:0db8:0000::1".into(), "2001:db8::2".into()];
        assert!(matches(&six, &six_long), "secondary addresses in any order, however written");

        assert!(!matches(&rule(2, &[("10.0.1.1", 80, 60)]), &rule(2, &[("10.0.1.1", 80, 40)])), "weights under sel 2");
        assert!(!matches(&want, &rule(0, &[("10.0.1.1", 80, 1)])), "a missing endpoint");
        let changes: [fn(&mut LbRule); 9] = [
            |g| g.service.name = "other".into(),
            |g| g.service.bgp = true,
            |g| g.service.mode = 4,
            |g| g.service.monitor = true,
            |g| g.service.probetype = "ping".into(),
            |g| g.service.probeport = 1,
            |g| g.service.proxyprotocolv2 = true,
            |g| g.allowed_sources.truncate(1),
            |g| g.secondary_ips = vec!["10.0.0.2".into()],
        ];
        for change in changes {
            let mut got = want.clone();
            change(&mut got);
            assert!(!matches(&want, &got), "{got:?}");
        }
    }
}
