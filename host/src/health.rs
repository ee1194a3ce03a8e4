//! Readiness: what must hold for the host to serve Octavia, each checked afresh when asked (`/readyz`).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, TryLockError};

use loxilb_api::Loxilb;
use serde_json::{json, Value};

use crate::loxilb::LoxiTransport;
use crate::octavia::agent::DriverAgent;
use crate::service::Service;

pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Everything a readiness answer looks at.
pub struct Probes {
    pub service: Arc<Service>,
    pub loxilb: Arc<dyn LoxiTransport>,
    pub agent: DriverAgent,
    /// The mapping snapshot's path when the mapping is persistent.
    pub mapping_path: Option<PathBuf>,
}

impl Probes {
    /// Liveness with each LoxiLB node as the monitor last saw it (no request is made: it answers even
    /// while every node hangs).
    pub fn liveness(&self) -> Value {
        let nodes: Vec<Value> = self
            .loxilb
            .nodes()
            .iter()
            .map(|n| {
                let s = n.state();
                json!({"node": s.base, "answering": s.answering, "out_of_date": s.out_of_date, "role": s.role, "version": s.version})
            })
            .collect();
        json!({"status": "ok", "loxilb_nodes": nodes})
    }

    pub fn run(&self) -> Vec<Check> {
        let mut checks = vec![self.policy(), self.storage(), self.loxilb()];
        checks.extend(self.octavia());
        checks
    }

    fn policy(&self) -> Check {
        let (ok, detail) = match self.service.sandbox.try_lock() {
            Ok(_) => (true, "loaded".to_string()),
            Err(TryLockError::WouldBlock) => (true, "loaded, busy with an operation".to_string()),
            Err(TryLockError::Poisoned(_)) => (false, "a thread panicked holding the policy".to_string()),
        };
        Check { name: "policy", ok, detail }
    }

    /// Writable where the journal grows: a probe file created, synced and removed beside the snapshot.
    fn storage(&self) -> Check {
        let Some(path) = &self.mapping_path else { return Check { name: "storage", ok: true, detail: "in memory".into() } };
        let mut probe = path.clone().into_os_string();
        probe.push(".ready-probe");
        let probe = PathBuf::from(probe);
        let result = std::fs::File::create(&probe).and_then(|f| f.sync_all()).and_then(|()| std::fs::remove_file(&probe));
        match result {
            Ok(()) => Check { name: "storage", ok: true, detail: format!("{} writable", dir_of(path).display()) },
            Err(e) => Check { name: "storage", ok: false, detail: format!("{} not writable: {e}", dir_of(path).display()) },
        }
    }

    fn loxilb(&self) -> Check {
        match self.loxilb.reachable() {
            Ok(()) => Check { name: "loxilb", ok: true, detail: "answers".into() },
            Err(e) => Check { name: "loxilb", ok: false, detail: e.to_string() },
        }
    }

    /// The get socket answers a real (harmless) query; the status and stats sockets, which only take
    /// updates, must exist as sockets.
    fn octavia(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        if self.agent.get.is_some() {
            let (ok, detail) = match self.agent.get("loadbalancers", "00000000-0000-0000-0000-000000000000") {
                Ok(_) => (true, "answers".to_string()),
                Err(e) => (false, format!("{e:#}")),
            };
            checks.push(Check { name: "octavia_get_socket", ok, detail });
        }
        for (name, path) in [("octavia_status_socket", &self.agent.status), ("octavia_stats_socket", &self.agent.stats)] {
            if let Some(path) = path {
                let (ok, detail) = match std::fs::metadata(path) {
                    Ok(m) if m.file_type().is_socket() => (true, format!("{} present", path.display())),
                    Ok(_) => (false, format!("{} is not a socket", path.display())),
                    Err(e) => (false, format!("{}: {e}", path.display())),
                };
                checks.push(Check { name, ok, detail });
            }
        }
        checks
    }
}

fn dir_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `{"ready": bool, "checks": {name: {"ok": bool, "detail": …}}}`.
pub fn to_json(checks: &[Check]) -> Value {
    let detail: serde_json::Map<String, Value> = checks.iter().map(|c| (c.name.to_string(), json!({"ok": c.ok, "detail": c.detail}))).collect();
    json!({"ready": checks.iter().all(|c| c.ok), "checks": detail})
}
