//! Background upkeep while serving: operating statuses and listener statistics on an interval,
//! reconciliation on an interval and as soon as LoxiLB comes back after being unreachable (it forgets
//! every rule when it restarts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::loxilb::LoxiTransport;
use crate::octavia::agent::DriverAgent;
use crate::octavia::status::{document, operating};
use crate::runtime::bindings::octavia::ObjectStatus;
use crate::runtime::instance::describe;
use crate::service::Service;

/// How often LoxiLB's liveness is checked (kube-loxilb checks every 2 s).
pub const LIVENESS_PERIOD: Duration = Duration::from_secs(2);

pub struct Monitor {
    pub service: Arc<Service>,
    pub loxilb: Arc<dyn LoxiTransport>,
    pub agent: Option<DriverAgent>,
    pub stats_interval: Duration,
    pub reconcile_interval: Duration,
}

impl Monitor {
    pub fn start(self) {
        std::thread::Builder::new().name("monitor".into()).spawn(move || self.run()).expect("monitor thread");
    }

    fn run(self) {
        let mut alive = true;
        let mut last_stats = Instant::now();
        let mut last_reconcile = Instant::now();
        let mut reported: HashMap<String, &'static str> = HashMap::new();
        loop {
            std::thread::sleep(LIVENESS_PERIOD);
            let up = self.loxilb.request("GET", "/version", None).is_ok_and(|(status, _)| status == 200);
            if up && !alive {
                tracing::warn!("LoxiLB is reachable again: reconciling");
                self.reconcile();
                last_reconcile = Instant::now();
            }
            alive = up;
            if !up {
                continue;
            }
            if !self.reconcile_interval.is_zero() && last_reconcile.elapsed() >= self.reconcile_interval {
                self.reconcile();
                last_reconcile = Instant::now();
            }
            if !self.stats_interval.is_zero() && last_stats.elapsed() >= self.stats_interval {
                self.health(&mut reported);
                self.statistics();
                last_stats = Instant::now();
            }
        }
    }

    /// Octavia's view, when its get socket is reachable: every load balancer the mapping holds is read
    /// back and adopted as the desired state (one that Octavia no longer has is removed); a load balancer
    /// with an operation applied since the mapping was listed, or not yet reported, is left to that
    /// operation (its read may predate it).
    pub fn sync_from_octavia(&self) {
        if self.agent.as_ref().is_none_or(|a| a.get.is_none()) {
            return;
        }
        // The ticket is taken with the listing: an operation applied after it is newer than every read.
        let (listed, since) = {
            let mut sandbox = self.service.sandbox.lock().unwrap();
            (sandbox.mappings(), self.service.epochs.ticket())
        };
        let lbs: Vec<String> = match listed {
            Ok(entries) => entries
                .into_iter()
                .filter(|e| e.resource_type == crate::runtime::bindings::mapping::ResourceType::Loadbalancer)
                .map(|e| e.octavia_id)
                .collect(),
            Err(e) => return tracing::error!("sync: {e}"),
        };
        for id in lbs {
            match self.service.adopt_as_of(&id, since, true) {
                Ok(crate::service::Adopted::NotInOctavia) => tracing::warn!("sync: load balancer {id} is in the mapping but not in Octavia"),
                Ok(_) => {}
                Err(e) => return tracing::debug!("sync: get socket unavailable: {e}"),
            }
        }
    }

    pub fn reconcile(&self) {
        self.sync_from_octavia();
        match self.service.sandbox.lock().unwrap().reconcile() {
            Ok(Ok(report)) => {
                if !report.reprogrammed.is_empty() || !report.orphans.is_empty() || !report.failures.is_empty() {
                    tracing::warn!(
                        "reconcile: re-programmed {:?}, orphans {:?}, removed {:?}, failures {:?}",
                        report.reprogrammed,
                        report.orphans,
                        report.removed,
                        report.failures
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!("reconcile: {}", describe(&e)),
            Err(e) => tracing::error!("reconcile: {e}"),
        }
    }

    /// Sends only operating statuses that changed since the last report.
    fn health(&self, reported: &mut HashMap<String, &'static str>) {
        let statuses = match self.service.sandbox.lock().unwrap().health() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return tracing::warn!("health: {}", describe(&e)),
            Err(e) => return tracing::error!("health: {e}"),
        };
        let changed: Vec<ObjectStatus> = statuses
            .into_iter()
            .filter(|s| {
                let now = s.operating.map(operating).unwrap_or("");
                reported.insert(s.id.clone(), now) != Some(now)
            })
            .collect();
        if !changed.is_empty() {
            self.service.statuses.report(&document(&changed));
        }
    }

    fn statistics(&self) {
        let Some(agent) = self.agent.as_ref().filter(|a| a.stats.is_some()) else { return };
        let stats = match self.service.sandbox.lock().unwrap().statistics() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return tracing::warn!("statistics: {}", describe(&e)),
            Err(e) => return tracing::error!("statistics: {e}"),
        };
        if stats.is_empty() {
            return;
        }
        let listeners: Vec<serde_json::Value> = stats
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.listener_id, "active_connections": s.active_connections, "bytes_in": s.bytes_in,
                                   "bytes_out": s.bytes_out, "request_errors": s.request_errors, "total_connections": s.total_connections})
            })
            .collect();
        if let Err(e) = agent.update_stats(&serde_json::json!({"listeners": listeners})) {
            tracing::warn!("statistics not delivered: {e:#}");
        }
    }
}
