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
                // The agent refuses a whole document when one of its objects is gone (a cascade delete
                // Octavia already finished): the others still need their statuses, one by one.
                Err(e) if e.downcast_ref::<crate::octavia::agent::Refused>().is_some() => {
                    let records = single_records(document);
                    if records.len() <= 1 {
                        tracing::warn!("Octavia refused the status {document}: {e:#}");
                    } else {
                        records.iter().for_each(|one| self.report(one));
                    }
                    return;
                }
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

/// A status document split into documents of one record each, in its order.
fn single_records(document: &Value) -> Vec<Value> {
    let Some(collections) = document.as_object() else { return Vec::new() };
    collections.iter().flat_map(|(collection, records)| records.as_array().into_iter().flatten().map(move |r| json!({collection.as_str(): [r]}))).collect()
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

#[cfg(test)]
mod sink_tests {
    use super::*;
    use crate::octavia::agent::{read_frame, write_frame, DriverAgent};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    /// A status socket that refuses any document naming `gone`, as Octavia's driver-agent does for an
    /// object it no longer has, and records what it accepted.
    fn agent_refusing(gone: &'static str) -> (DriverAgent, Arc<Mutex<Vec<Value>>>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("status-sink-{}-{gone}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let doc = read_frame(&mut stream).unwrap();
                let reply = if doc.to_string().contains(gone) {
                    json!({"status_code": 500, "fault_string": format!("Listener {gone} not found"), "status": "Listener not found"})
                } else {
                    seen.lock().unwrap().push(doc);
                    json!({"status_code": 200})
                };
                write_frame(&mut stream, &reply).unwrap();
            }
        });
        (DriverAgent { status: Some(path), stats: None, get: None }, accepted, dir)
    }

    #[test]
    fn a_refused_document_is_sent_again_record_by_record_without_the_retries() {
        let (agent, accepted, dir) = agent_refusing("gone-listener");
        let sink = AgentSink { agent, attempts: 15 };
        let document = json!({
            "loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}],
            "listeners": [{"id": "gone-listener", "provisioning_status": "DELETED"}],
            "pools": [{"id": "pool-1", "provisioning_status": "DELETED"}],
        });
        let started = std::time::Instant::now();
        sink.report(&document);
        assert!(started.elapsed() < Duration::from_secs(2), "retried a refusal: {:?}", started.elapsed());
        let accepted = accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 2, "{accepted:?}");
        assert!(accepted.contains(&json!({"loadbalancers": [{"id": "lb-1", "provisioning_status": "ACTIVE"}]})));
        assert!(accepted.contains(&json!({"pools": [{"id": "pool-1", "provisioning_status": "DELETED"}]})));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
