//! Whether LoxiLB holds a rule as wanted, judged from its list.

use crate::types::LbRule;

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Whether `got` (as LoxiLB lists it) is the rule `want`. Only what the list shows is compared; endpoint
/// order is LoxiLB's own, and a weight only matters under sel 2 (priority), where it is a share.
pub fn matches(want: &LbRule, got: &LbRule) -> bool {
    let (w, g) = (&want.service, &got.service);
    let endpoints = |r: &LbRule| {
        let mut v: Vec<(String, u16, u8)> = r.endpoints.iter().map(|e| (e.ip.clone(), e.target_port, if r.service.sel == 2 { e.weight } else { 0 })).collect();
        v.sort();
        v
    };
    w.name == g.name
        && w.sel == g.sel
        && w.mode == g.mode
        && w.monitor == g.monitor
        && w.bgp == g.bgp
        && w.probetype == g.probetype
        && w.probeport == g.probeport
        && w.proxyprotocolv2 == g.proxyprotocolv2
        && endpoints(want) == endpoints(got)
        && sorted(&want.allowed_sources) == sorted(&got.allowed_sources)
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

        assert!(!matches(&rule(2, &[("10.0.1.1", 80, 60)]), &rule(2, &[("10.0.1.1", 80, 40)])), "weights under sel 2");
        assert!(!matches(&want, &rule(0, &[("10.0.1.1", 80, 1)])), "a missing endpoint");
        let changes: [fn(&mut LbRule); 8] = [
            |g| g.service.name = "other".into(),
            |g| g.service.bgp = true,
            |g| g.service.mode = 4,
            |g| g.service.monitor = true,
            |g| g.service.probetype = "ping".into(),
            |g| g.service.probeport = 1,
            |g| g.service.proxyprotocolv2 = true,
            |g| g.allowed_sources.truncate(1),
        ];
        for change in changes {
            let mut got = want.clone();
            change(&mut got);
            assert!(!matches(&want, &got), "{got:?}");
        }
    }
}
