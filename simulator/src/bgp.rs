//! The VIP routes LoxiLB advertises over BGP for rules made with `bgp`, as `loxinet/apiclient.go` and
//! `gobgpclient.go` count them: every successful `POST /config/loadbalancer` with `bgp` (a create *or* an
//! in-place update) counts the VIP and its secondary IPs up; every delete with `?bgp=true` counts them
//! down (whether or not the rule existed); a route is advertised while its count is above zero. A restart
//! forgets them all. The simulator models a LoxiLB started with `--bgp` and a connected peer.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct Routes {
    counts: BTreeMap<String, u32>,
}

impl Routes {
    pub fn add(&mut self, ips: &[String]) {
        for ip in ips {
            *self.counts.entry(ip.clone()).or_default() += 1;
        }
    }

    pub fn del(&mut self, ips: &[String]) {
        for ip in ips {
            if let Some(n) = self.counts.get_mut(ip) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The routes advertised now, in address order.
    pub fn advertised(&self) -> Vec<String> {
        self.counts.iter().filter(|(_, n)| **n > 0).map(|(ip, _)| ip.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_counts_up_again_and_one_delete_does_not_withdraw_then() {
        let mut routes = Routes::default();
        let vip = vec!["10.0.0.1".to_string()];
        routes.add(&vip);
        routes.del(&vip);
        assert!(routes.advertised().is_empty());
        routes.add(&vip);
        routes.add(&vip); // an in-place update with bgp
        routes.del(&vip);
        assert_eq!(routes.advertised(), vip);
        routes.del(&vip);
        routes.del(&vip); // never below zero
        routes.add(&vip);
        assert_eq!(routes.advertised(), vip);
    }
}
