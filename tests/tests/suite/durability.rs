//! An operation is reported to Octavia only once the mapping records it changed are durable. After a
//! failed fsync the journal is durable only through a new snapshot: the host writes one and tries again
//! until the records are durable, and only then reports. Reported and lost in a crash, an operation would
//! be undone at the next start (a deleted load balancer served again) with Octavia showing it done.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::{MappingStore, MemoryStore, Snapshot};
use integration_tests::*;
use serde_json::{json, Value};

/// A store whose fsyncs fail once `broken`, and go on failing until a snapshot is written (as the file
/// store's do: the kernel may have dropped the pages it could not write); snapshots fail while `full`.
#[derive(Default)]
struct FailingDisk {
    inner: MemoryStore,
    broken: AtomicBool,
    full: AtomicBool,
    snapshots: AtomicUsize,
}

impl MappingStore for FailingDisk {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        self.inner.read_snapshot()
    }
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        if self.full.load(Ordering::SeqCst) {
            return Err("no space left on device".into());
        }
        self.inner.write_snapshot(data)?;
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        self.broken.store(false, Ordering::SeqCst);
        Ok(())
    }
    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.inner.append(record)
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        self.inner.replay()
    }
    fn journal_length(&self) -> u32 {
        self.inner.journal_length()
    }
    fn sync(&self) -> Result<(), String> {
        if self.broken.load(Ordering::SeqCst) {
            return Err("fsync: Input/output error".into());
        }
        Ok(())
    }
}

fn service_on(disk: &Arc<FailingDisk>) -> (Arc<Service>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let sandbox = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::clone(disk) as Arc<dyn MappingStore>);
    (Service::new(sandbox, None, sink.clone(), Duration::from_secs(1)), sink)
}

const LB: &str = "eeeeeeee-0000-4000-8000-000000000001";

fn lb_create() -> Value {
    json!({"loadbalancer_id": LB, "loadbalancer": loadbalancer(LB, "10.50.0.1", vec![])})
}

/// A broken disk that stays full for a while, then has room again.
fn broken_and_full() -> Arc<FailingDisk> {
    let disk = Arc::new(FailingDisk::default());
    disk.broken.store(true, Ordering::SeqCst);
    disk.full.store(true, Ordering::SeqCst);
    disk
}

#[test]
fn a_cast_is_reported_only_once_a_snapshot_has_made_its_records_durable_after_a_failed_fsync() {
    let disk = broken_and_full();
    let (service, sink) = service_on(&disk);
    service.start_worker(Vec::new());
    service.cast("loadbalancer_create", lb_create()).unwrap();
    let object = format!("loadbalancers/{LB}");
    assert!(!wait_status(&sink, &object, "ACTIVE", Duration::from_millis(600)), "reported while its records were not durable");
    assert_eq!(service.backlog(), 1, "the operation is not finished while it is not durable");
    disk.full.store(false, Ordering::SeqCst);
    assert!(wait_status(&sink, &object, "ACTIVE", Duration::from_secs(10)), "not reported once durable");
    assert_eq!(disk.snapshots.load(Ordering::SeqCst), 1, "the repair writes one snapshot");
}

#[test]
fn an_operation_applied_at_once_returns_only_once_durable_and_not_at_all_once_no_longer_ours() {
    // The AMQP transport acknowledges an operation when `apply_while` returns it applied.
    let disk = broken_and_full();
    let (service, sink) = service_on(&disk);
    let ours = Arc::new(AtomicBool::new(true));
    let (applier, still) = (Arc::clone(&service), Arc::clone(&ours));
    let applied = std::thread::spawn(move || applier.apply_while("loadbalancer_create", &lb_create(), false, &|| still.load(Ordering::SeqCst)));
    std::thread::sleep(Duration::from_millis(400));
    assert!(!applied.is_finished(), "returned (to be acknowledged) while not durable");
    // The session is lost: the operation is left unacknowledged, for whichever host gets it next.
    ours.store(false, Ordering::SeqCst);
    assert_eq!(applied.join().unwrap(), None);
    assert!(sink.documents.lock().unwrap().is_empty(), "reported: {:?}", sink.documents.lock().unwrap());

    disk.full.store(false, Ordering::SeqCst);
    disk.broken.store(true, Ordering::SeqCst);
    let statuses = service.apply("loadbalancer_create", &lb_create());
    assert!(!statuses.is_empty());
    assert!(wait_status(&sink, &format!("loadbalancers/{LB}"), "ACTIVE", Duration::from_secs(1)));
}
