//! Status documents for the driver-agent, and where they go.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::agent::DriverAgent;
use crate::runtime::bindings::octavia::{ObjectKind, ObjectStatus, OperatingStatus, ProvisioningStatus};

pub fn collection(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Loadbalancer => "loadbalancers",
        ObjectKind::Listener => "listeners",
        ObjectKind::Pool => "pools",
        ObjectKind::Member => "members",
        ObjectKind::HealthMonitor => "healthmonitors",
        ObjectKind::L7policy => "l7policies",
        ObjectKind::L7rule => "l7rules",
    }
}

pub fn provisioning(p: ProvisioningStatus) -> &'static str {
    match p {
        ProvisioningStatus::Active => "ACTIVE",
        ProvisioningStatus::Deleted => "DELETED",
        ProvisioningStatus::Error => "ERROR",
    }
}

pub fn operating(o: OperatingStatus) -> &'static str {
    match o {
        OperatingStatus::Online => "ONLINE",
        OperatingStatus::Offline => "OFFLINE",
        OperatingStatus::Degraded => "DEGRADED",
        OperatingStatus::Error => "ERROR",
        OperatingStatus::Draining => "DRAINING",
        OperatingStatus::NoMonitor => "NO_MONITOR",
    }
}

/// `{"loadbalancers": [{"id", "provisioning_status", "operating_status"}], "listeners": […], …}`.
pub fn document(statuses: &[ObjectStatus]) -> Value {
    let mut out = Map::new();
    for s in statuses {
        let mut record = Map::new();
        record.insert("id".into(), json!(s.id));
        if let Some(p) = s.provisioning {
            record.insert("provisioning_status".into(), json!(provisioning(p)));
        }
        if let Some(o) = s.operating {
            record.insert("operating_status".into(), json!(operating(o)));
        }
        out.entry(collection(s.kind)).or_insert_with(|| json!([])).as_array_mut().expect("array").push(Value::Object(record));
    }
    Value::Object(out)
}

/// Where status documents go.
pub trait StatusSink: Send + Sync {
    fn report(&self, document: &Value);
}

/// Octavia's status socket, retried with backoff (the agent may be restarting); a document that still
/// cannot be delivered is logged with its content so an operator can replay it.
pub struct AgentSink {
    pub agent: DriverAgent,
    pub attempts: u32,
}

impl StatusSink for AgentSink {
    fn report(&self, document: &Value) {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=self.attempts {
            match self.agent.update_status(document) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!("status update attempt {attempt}/{} failed: {e:#}", self.attempts);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::error!("status update lost after {} attempts: {document}", self.attempts);
    }
}

/// Keeps documents in memory (no Octavia: demo, tests) and logs them.
#[derive(Default)]
pub struct RecordingSink {
    pub documents: Mutex<Vec<Value>>,
}

impl StatusSink for RecordingSink {
    fn report(&self, document: &Value) {
        tracing::info!("status: {document}");
        self.documents.lock().unwrap().push(document.clone());
    }
}
