//! VIPs claimed by load balancer creates that were validated and are not applied yet.
//!
//! LoxiLB keys rules by VIP, port and protocol across all projects, so the policy refuses a VIP another
//! load balancer holds in the mapping. Two creates with one VIP validated at the same time (two projects
//! with overlapping subnets) would both pass that check — neither is in the mapping yet — and the second
//! would go to ERROR once applied. A create's VIP is therefore claimed when it validates and released
//! when it is applied (the mapping then answers for it); a claim whose cast never comes (Octavia rolled
//! the request back) lapses after `UNCAST_TTL`. Claims are per host: several hosts behind RabbitMQ share
//! the mapping's check only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a validated create's claim lasts without its cast. The provider casts right after the
/// validation returns, inside the same API request.
pub const UNCAST_TTL: Duration = Duration::from_secs(30);

pub struct VipClaims {
    claims: Mutex<HashMap<String, Claim>>,
    ttl: Duration,
}

struct Claim {
    loadbalancer: String,
    /// `None` once the cast is accepted: held until it is applied, however long its commit takes.
    lapses: Option<Instant>,
}

impl Default for VipClaims {
    fn default() -> VipClaims {
        VipClaims::lapsing_after(UNCAST_TTL)
    }
}

/// One spelling per address (IPv6 has several).
pub fn canonical(vip: &str) -> String {
    vip.parse::<IpAddr>().map_or_else(|_| vip.to_string(), |ip| ip.to_string())
}

/// A load balancer's VIPs: its own and its additional ones.
pub fn of(lb: &crate::runtime::bindings::octavia::Loadbalancer) -> Vec<String> {
    std::iter::once(&lb.vip_address).chain(&lb.additional_vips).cloned().collect()
}

impl VipClaims {
    pub fn lapsing_after(ttl: Duration) -> VipClaims {
        VipClaims { claims: Mutex::new(HashMap::new()), ttl }
    }

    /// Claims every one of `vips` for `loadbalancer`, or none: `Err` names one another load balancer's
    /// create holds.
    pub fn claim(&self, vips: &[String], loadbalancer: &str) -> Result<(), String> {
        let mut claims = self.claims.lock().unwrap();
        let now = Instant::now();
        claims.retain(|_, c| c.lapses.is_none_or(|at| at > now));
        if let Some(held) = vips.iter().find(|vip| claims.get(&canonical(vip)).is_some_and(|c| c.loadbalancer != loadbalancer)) {
            return Err(held.clone());
        }
        for vip in vips {
            claims.insert(canonical(vip), Claim { loadbalancer: loadbalancer.to_string(), lapses: Some(now + self.ttl) });
        }
        Ok(())
    }

    /// The create of `loadbalancer` was accepted: its claim lasts until it is applied.
    pub fn cast(&self, loadbalancer: &str) {
        for claim in self.claims.lock().unwrap().values_mut().filter(|c| c.loadbalancer == loadbalancer) {
            claim.lapses = None;
        }
    }

    /// The create of `loadbalancer` was applied (or failed): the mapping answers for its VIP now.
    pub fn release(&self, loadbalancer: &str) {
        self.claims.lock().unwrap().retain(|_, c| c.loadbalancer != loadbalancer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vips(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_vip_is_held_for_its_load_balancer_until_released() {
        let claims = VipClaims::default();
        assert!(claims.claim(&vips(&["10.0.0.1"]), "lb-a").is_ok());
        assert!(claims.claim(&vips(&["10.0.0.1"]), "lb-a").is_ok(), "validated again: the same claim");
        assert_eq!(claims.claim(&vips(&["10.0.0.2", "10.0.0.1"]), "lb-b"), Err("10.0.0.1".into()));
        assert!(claims.claim(&vips(&["10.0.0.2"]), "lb-c").is_ok(), "a refused claim takes none of its VIPs");
        claims.release("lb-a");
        assert!(claims.claim(&vips(&["10.0.0.1"]), "lb-b").is_ok());
    }

    #[test]
    fn ipv6_spellings_of_one_address_are_one_vip() {
        let claims = VipClaims::default();
        claims.claim(&vips(&["2001:db8::1"]), "lb-a").unwrap();
        assert!(claims.claim(&vips(&["2001:0db8:0000::0001"]), "lb-b").is_err());
    }

    #[test]
    fn a_claim_without_a_cast_lapses_and_one_with_a_cast_does_not() {
        let claims = VipClaims::lapsing_after(Duration::from_millis(50));
        claims.claim(&vips(&["10.0.0.1"]), "lb-a").unwrap();
        claims.claim(&vips(&["10.0.0.2"]), "lb-c").unwrap();
        claims.cast("lb-c");
        std::thread::sleep(Duration::from_millis(80));
        assert!(claims.claim(&vips(&["10.0.0.1"]), "lb-b").is_ok(), "lb-a's request was rolled back: no cast came");
        assert!(claims.claim(&vips(&["10.0.0.2"]), "lb-b").is_err(), "lb-c's cast waits for its commit");
    }
}
