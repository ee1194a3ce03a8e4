//! Accepting casts (Unix-socket transport): a cast that can never be applied is refused before it is
//! accepted, one accepted earlier that no longer converts still gets statuses, one load balancer waiting
//! for Octavia's commit does not delay another, and the backlog is bounded.

use std::collections::HashSet;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host::octavia::agent::{read_frame, write_frame, DriverAgent};
use host::octavia::status::{AgentSink, Backoff, RecordingSink};
use host::service::Service;
use integration_tests::*;
use serde_json::{json, Value};

fn tempdir(name: &str) -> TempDir {
    TempDir::new(&format!("loxilb-accepting-{name}"))
}

/// Octavia's get socket, showing only the objects marked committed (`{}` is "not found"), as Octavia's does:
/// without their provisioning status.
struct GetSocket {
    path: PathBuf,
    committed: Arc<Mutex<HashSet<String>>>,
}

impl GetSocket {
    fn start(dir: &Path) -> GetSocket {
        let path = dir.join("get.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let committed: Arc<Mutex<HashSet<String>>> = Arc::default();
        let shown = Arc::clone(&committed);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let Ok(request) = read_frame(&mut stream) else { continue };
                let id = request["id"].as_str().unwrap_or_default().to_string();
                let answer = if shown.lock().unwrap().contains(&id) { json!({"id": id}) } else { json!({}) };
                let _ = write_frame(&mut stream, &answer);
            }
        });
        GetSocket { path, committed }
    }

    fn commit(&self, id: &str) {
        self.committed.lock().unwrap().insert(id.to_string());
    }
}

fn service(get: Option<&GetSocket>, inbox: Option<host::inbox::Inbox>) -> (Arc<Service>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let agent = get.map(|g| DriverAgent { status: None, stats: None, get: Some(g.path.clone()) });
    let service = Service::with_inbox(sandbox(Arc::new(RecordingLoxi::default())), agent, sink.clone(), Duration::from_secs(30), inbox);
    (service, sink)
}

fn lb_id(n: u32) -> String {
    format!("cccccccc-0000-4000-8000-{n:012}")
}

fn lb_create(n: u32) -> Value {
    let id = lb_id(n);
    json!({"loadbalancer_id": id, "loadbalancer": loadbalancer(&id, &format!("10.30.{}.{}", n / 250, n % 250 + 1), vec![])})
}

#[test]
fn casts_that_cannot_be_applied_are_refused_before_they_are_accepted() {
    let dir = tempdir("shape");
    let host::inbox::Opened { inbox, pending, .. } = host::inbox::Inbox::open(&dir.join("inbox")).unwrap();
    assert!(pending.is_empty());
    let (service, _sink) = service(None, Some(inbox));
    service.start_worker(Vec::new());
    let unknown = service.cast("member_frobnicate", json!({"loadbalancer_id": lb_id(1), "member": member("m", "p", "10.0.0.1", 80, 1)})).unwrap_err();
    assert_eq!(unknown.class, "NotImplementedError", "{unknown}");
    assert!(unknown.message.contains("member_frobnicate"), "{unknown}");
    let missing = service.cast("member_create", json!({"loadbalancer_id": lb_id(1)})).unwrap_err();
    assert_eq!(missing.class, "DriverError", "{missing}");
    assert!(missing.message.contains("member_create") && missing.message.contains("member is missing"), "{missing}");
    let good = service.cast("listener_create", json!({"loadbalancer_id": lb_id(1), "listener": listener("l", &lb_id(1), "TCP", 80, None)}));
    assert!(good.is_ok(), "{good:?}");
    let mut out_of_range = listener("l2", &lb_id(1), "TCP", 80, None);
    out_of_range["protocol_port"] = json!(70000);
    let bad = service.cast("listener_create", json!({"loadbalancer_id": lb_id(1), "listener": out_of_range})).unwrap_err();
    assert!(bad.message.contains("protocol_port"), "{bad}");
    // Only the well-formed cast was recorded.
    let recorded = std::fs::read_to_string(dir.join("inbox")).unwrap();
    assert_eq!(recorded.matches("\"method\"").count(), 1, "{recorded}");
    // The provider validates first: the same refusal classes.
    let validate = service.call("validate", &json!({"operation": "member_frobnicate", "args": {}})).unwrap_err();
    assert_eq!(validate.class, "NotImplementedError");
}

#[test]
fn an_accepted_cast_that_no_longer_converts_reports_its_objects_error() {
    let dir = tempdir("dropped");
    // A record an earlier release accepted, in a shape this one cannot convert (the weight is a word).
    let record = json!({"seq": 0, "method": "member_update", "args": {
        "loadbalancer_id": lb_id(2),
        "old_member": member("dddddddd-0000-4000-8000-000000000001", "p", "10.0.0.1", 80, 1),
        "new_member": {"weight": "heavy"}}});
    std::fs::write(dir.join("inbox"), format!("{record}\n")).unwrap();
    let host::inbox::Opened { inbox, pending, .. } = host::inbox::Inbox::open(&dir.join("inbox")).unwrap();
    assert_eq!(pending.len(), 1);
    let (service, sink) = service(None, Some(inbox));
    service.start_worker(pending);
    assert!(wait_status(&sink, "members/dddddddd-0000-4000-8000-000000000001", "ERROR", Duration::from_secs(20)), "{:?}", sink.documents.lock().unwrap());
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(2)), "ACTIVE", Duration::from_secs(1)));
    // And it leaves the inbox: a restart does not drop it a second time.
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.backlog() > 0 {
        assert!(Instant::now() < deadline, "the dropped cast stays in the backlog");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pending = host::inbox::Inbox::open(&dir.join("inbox")).unwrap().pending;
    assert!(pending.is_empty(), "{pending:?}");
}

/// An inbox holding one accepted `member_create` of `member_id` on load balancer `lb`, its record damaged
/// by bit rot in the member's address: the CRC fails, the ids still read.
fn inbox_with_a_damaged_create(dir: &Path, member_id: &str, lb: u32) -> host::inbox::Opened {
    let args = json!({"loadbalancer_id": lb_id(lb), "member": member(member_id, "p", "10.0.0.1", 80, 1)});
    let mut line = Vec::new();
    host::storage::format::frame(json!({"seq": 0, "method": "member_create", "args": args}).to_string().as_bytes(), &mut line);
    let flip = line.windows(8).position(|w| w == b"10.0.0.1").unwrap();
    line[flip] = b'2';
    std::fs::write(dir.join("inbox"), &line).unwrap();
    let opened = host::inbox::Inbox::open(&dir.join("inbox")).unwrap();
    assert!(opened.pending.is_empty(), "a damaged record is not applied: {:?}", opened.pending);
    assert_eq!(opened.damaged.len(), 1, "{:?}", opened.damaged);
    opened
}

/// A service whose statuses go to `agent` as in production (sent until taken), backing off 5–20 ms.
fn reporting_to(agent: DriverAgent, inbox: Option<host::inbox::Inbox>) -> Arc<Service> {
    let sink = Arc::new(AgentSink::with(agent.clone(), Backoff { first: Duration::from_millis(5), most: Duration::from_millis(20) }, 8));
    Service::with_inbox(sandbox(Arc::new(RecordingLoxi::default())), Some(agent), sink, Duration::from_secs(30), inbox)
}

#[test]
fn a_damaged_inbox_record_reports_the_objects_it_names_error_and_the_host_starts() {
    let dir = tempdir("damaged");
    let member_id = "dddddddd-0000-4000-8000-000000000002";
    let host::inbox::Opened { inbox, damaged, .. } = inbox_with_a_damaged_create(&dir, member_id, 4);
    let (service, sink) = service(None, Some(inbox));
    service.report_damaged(&damaged);
    assert!(wait_status(&sink, &format!("members/{member_id}"), "ERROR", Duration::from_secs(1)), "{:?}", sink.documents.lock().unwrap());
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(4)), "ACTIVE", Duration::from_secs(1)));
}

#[test]
fn a_damaged_inbox_record_is_reported_once_the_driver_agent_is_back_without_holding_the_start() {
    // After a power loss, the host and octavia-driver-agent start together: the damaged record's ERROR
    // waits for the driver-agent in the background (the start went on), reaches it, and is then settled,
    // so a later start does not report it again (its objects may have been repaired by then).
    let dir = tempdir("damaged-agent-down");
    let member_id = "dddddddd-0000-4000-8000-000000000003";
    let host::inbox::Opened { inbox, damaged, .. } = inbox_with_a_damaged_create(&dir, member_id, 5);
    let status = dir.join("status.sock");
    let service = reporting_to(DriverAgent { status: Some(status.clone()), stats: None, get: None }, Some(inbox));
    let started = Instant::now();
    service.report_damaged(&damaged);
    assert!(started.elapsed() < Duration::from_secs(2), "the start waited {:?} for the driver-agent", started.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.statuses.failing_for().is_none() {
        assert!(Instant::now() < deadline, "the report was never attempted");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Sent until taken, as operations' statuses are (`AgentSink::report`; its own tests hold it past any
    // patience): a few attempts fail first.
    std::thread::sleep(Duration::from_millis(300));
    let taken = keeping_documents_at(&status);
    let reported = || taken.lock().unwrap().iter().map(Value::to_string).collect::<String>();
    while !(reported().contains(member_id) && reported().contains("ERROR")) {
        assert!(Instant::now() < deadline, "not reported: {}", reported());
        std::thread::sleep(Duration::from_millis(10));
    }
    while !host::inbox::Inbox::open(&dir.join("inbox")).unwrap().damaged.is_empty() {
        assert!(Instant::now() < deadline, "a later start would report it again");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_synchronous_apply_that_cannot_convert_reports_error_too() {
    // The AMQP transport applies deliveries synchronously: the same statuses, and they are reported.
    let (service, sink) = service(None, None);
    let args = json!({"loadbalancer_id": lb_id(3), "pool_id": "eeeeeeee-0000-4000-8000-000000000001", "members": [{"member_id": "eeeeeeee-0000-4000-8000-000000000002"}]});
    let statuses = service.apply("member_batch_update", &args);
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    assert!(wait_status(&sink, "members/eeeeeeee-0000-4000-8000-000000000002", "ERROR", Duration::from_secs(1)));
    assert!(wait_status(&sink, "pools/eeeeeeee-0000-4000-8000-000000000001", "ERROR", Duration::from_secs(1)));
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(3)), "ACTIVE", Duration::from_secs(1)));
}

#[test]
fn load_balancers_waiting_for_octavia_do_not_delay_another() {
    let dir = tempdir("lanes");
    let get = GetSocket::start(&dir);
    let (service, sink) = service(Some(&get), None);
    service.start_worker(Vec::new());
    // Twenty load balancers (more than any fixed set of queues) whose create Octavia never commits,
    // one of them with more casts behind it.
    for n in 100..120 {
        service.cast("loadbalancer_create", lb_create(n)).unwrap();
    }
    for _ in 0..3 {
        service
            .cast(
                "loadbalancer_update",
                json!({"loadbalancer_id": lb_id(100), "old_loadbalancer": lb_create(100)["loadbalancer"], "new_loadbalancer": {"name": "x"}}),
            )
            .unwrap();
    }
    get.commit(&lb_id(7));
    let started = Instant::now();
    service.cast("loadbalancer_create", lb_create(7)).unwrap();
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(7)), "ACTIVE", Duration::from_secs(10)), "another load balancer's create was held up");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The waiting ones are still waiting, in order: committing the first lets its queue go on.
    get.commit(&lb_id(100));
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(100)), "ACTIVE", Duration::from_secs(10)));
}

#[test]
fn a_full_backlog_refuses_casts_until_it_drains() {
    let dir = tempdir("backlog");
    let get = GetSocket::start(&dir);
    let (service, sink) = service(Some(&get), None);
    service.set_max_pending_operations(3);
    service.start_worker(Vec::new());
    for n in 200..203 {
        service.cast("loadbalancer_create", lb_create(n)).unwrap();
    }
    assert_eq!(service.backlog(), 3);
    let refused = service.cast("loadbalancer_create", lb_create(203)).unwrap_err();
    assert_eq!(refused.class, "DriverError");
    assert!(refused.message.contains("overloaded") && refused.message.contains("retry later"), "{refused}");
    assert!(host::metrics::render().contains("# TYPE loxilb_octavia_apply_backlog gauge"));
    for n in 200..203 {
        get.commit(&lb_id(n));
    }
    for n in 200..203 {
        assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(n)), "ACTIVE", Duration::from_secs(10)));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.backlog() > 0 {
        assert!(Instant::now() < deadline, "backlog stays at {}", service.backlog());
        std::thread::sleep(Duration::from_millis(10));
    }
    get.commit(&lb_id(203));
    service.cast("loadbalancer_create", lb_create(203)).unwrap();
    assert!(wait_status(&sink, &format!("loadbalancers/{}", lb_id(203)), "ACTIVE", Duration::from_secs(10)));
}

#[test]
fn while_octavia_takes_no_statuses_they_are_kept_and_a_full_backlog_says_why() {
    let dir = tempdir("agent-down");
    let get = GetSocket::start(&dir);
    let status = dir.join("status.sock");
    let service = reporting_to(DriverAgent { status: Some(status.clone()), stats: None, get: Some(get.path.clone()) }, None);
    service.set_max_pending_operations(2);
    service.start_worker(Vec::new());
    // octavia-driver-agent is stopped: the two creates are applied, and their statuses wait.
    for n in 300..302 {
        get.commit(&lb_id(n));
        service.cast("loadbalancer_create", lb_create(n)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.statuses.failing_for().is_none() {
        assert!(Instant::now() < deadline, "the status updates never failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = service.cast("loadbalancer_create", lb_create(302)).unwrap_err();
    assert!(refused.message.contains("overloaded") && refused.message.contains("driver-agent has not taken their status updates"), "{refused}");
    // It comes back: both load balancers are reported, and the backlog drains.
    let taken = keeping_documents_at(&status);
    while service.backlog() > 0 {
        assert!(Instant::now() < deadline + Duration::from_secs(10), "backlog stays at {}", service.backlog());
        std::thread::sleep(Duration::from_millis(10));
    }
    let reported = taken.lock().unwrap().iter().map(Value::to_string).collect::<String>();
    for n in 300..302 {
        assert!(reported.contains(&lb_id(n)), "{} not reported: {reported}", lb_id(n));
    }
    assert_eq!(service.statuses.failing_for(), None);
}

#[test]
fn validate_calls_and_casts_are_timed_for_the_operator() {
    let (service, _sink) = service(None, None);
    let before = (host::metrics::PROVIDER_VALIDATE.count(), host::metrics::PROVIDER_VALIDATE_WAIT.count(), host::metrics::PROVIDER_CAST.count());
    service.call("validate", &json!({"operation": "loadbalancer_create", "args": lb_create(7)})).unwrap();
    let _ = service.call("validate", &json!({"operation": "member_frobnicate", "args": {}}));
    service.start_worker(Vec::new());
    service.cast("loadbalancer_create", lb_create(7)).unwrap();
    let after = (host::metrics::PROVIDER_VALIDATE.count(), host::metrics::PROVIDER_VALIDATE_WAIT.count(), host::metrics::PROVIDER_CAST.count());
    // A refused validate is timed too; only one reached the policy.
    assert!(after.0 >= before.0 + 2 && after.1 > before.1 && after.2 > before.2, "{before:?} → {after:?}");
    let text = host::metrics::render();
    for name in ["provider_validate_count", "provider_validate_wait_seconds", "provider_cast_max_seconds"] {
        assert!(text.contains(&format!("loxilb_octavia_{name}")), "{name} missing from /metrics");
    }
}

#[test]
fn workers_start_while_the_policy_is_busy() {
    // The first reconciliation after a start may hold the policy for a full render (~0.65 s at 100k
    // mappings); starting the workers, and so serving the provider socket, must not wait for it.
    let (service, _sink) = service(None, None);
    let busy = service.sandbox.lock().unwrap();
    let (done, started) = std::sync::mpsc::channel();
    let starting = Arc::clone(&service);
    std::thread::spawn(move || {
        starting.start_worker(Vec::new());
        done.send(()).unwrap();
    });
    let waited = started.recv_timeout(Duration::from_secs(5));
    drop(busy);
    assert!(waited.is_ok(), "start_worker waited for the policy");
}

#[test]
fn casts_arriving_together_share_the_inbox_sync() {
    let dir = tempdir("group-commit");
    let host::inbox::Opened { inbox, .. } = host::inbox::Inbox::open(&dir.join("inbox")).unwrap();
    let (service, _sink) = service(None, Some(inbox));
    service.start_worker(Vec::new());
    let casts = 48;
    let start = Arc::new(std::sync::Barrier::new(casts));
    let syncs_before = host::metrics::INBOX_SYNCS.get();
    let threads: Vec<_> = (0..casts as u32)
        .map(|n| {
            let (service, start) = (Arc::clone(&service), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                service.cast("loadbalancer_create", lb_create(300 + n))
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("accepted");
    }
    // Each cast was answered once durable; casts made at once did not each wait for a sync of their own
    // (other tests' syncs in this process only add to the count).
    let syncs = host::metrics::INBOX_SYNCS.get() - syncs_before;
    assert!(syncs < casts as u64, "{casts} casts at once made {syncs} inbox syncs");
    let recorded = std::fs::read_to_string(dir.join("inbox")).unwrap();
    assert_eq!(recorded.lines().filter(|l| l.contains("\"seq\"")).count(), casts, "every accepted cast is in the inbox");
}

/// A service whose get socket answers for an id what `shows` says, as Octavia's does: an object without
/// its provisioning status, or nothing.
fn service_where_octavia_shows(name: &str, shows: impl Fn(&str) -> Option<Value> + Send + Sync + 'static) -> (Arc<Service>, Arc<RecordingSink>, FakeGetSocket) {
    let get = FakeGetSocket::start(name, move |_, id| Ok(shows(id)));
    let sink = Arc::new(RecordingSink::default());
    let service = Service::new(sandbox(Arc::new(RecordingLoxi::default())), Some(get.agent()), sink.clone(), Duration::from_secs(30));
    (service, sink, get)
}

/// How many statuses of `id` the documents hold.
fn statuses_of(sink: &RecordingSink, id: &str) -> usize {
    provisioning_statuses(&sink.documents.lock().unwrap()).iter().filter(|(object, _)| object.ends_with(id)).count()
}

#[test]
fn an_operation_reported_before_a_restart_is_left_to_a_later_one_of_its_load_balancer() {
    // A host that stops between reporting an operation and marking it done in its inbox applies it again
    // when it starts. Octavia had moved on: it admitted an update of the load balancer, which this host
    // accepted too, behind the create. Reported again, the create set the load balancer ACTIVE while the
    // update was still pending (as `make reliability` saw, over a member PENDING_CREATE), open to further
    // changes meanwhile. Octavia's get socket cannot tell (it leaves provisioning statuses out); the update
    // waiting in the load balancer's lane does.
    let (moved_on, alone) = (lb_id(41), lb_id(42));
    let renamed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shows = {
        let (moved_on, alone, renamed) = (moved_on.clone(), alone.clone(), Arc::clone(&renamed));
        move |id: &str| {
            let committed = id == moved_on && renamed.load(std::sync::atomic::Ordering::SeqCst);
            (id == moved_on || id == alone).then(|| if committed { json!({"id": id, "name": "x"}) } else { json!({"id": id}) })
        }
    };
    let (service, sink, _get) = service_where_octavia_shows("reported-before", shows);
    let update = json!({"loadbalancer_id": moved_on, "old_loadbalancer": lb_create(41)["loadbalancer"], "new_loadbalancer": {"name": "x"}});
    service.start_worker(vec![
        (1, "loadbalancer_create".into(), lb_create(41)),
        (2, "loadbalancer_create".into(), lb_create(42)),
        (3, "loadbalancer_update".into(), update),
    ]);
    assert!(wait_status(&sink, &format!("loadbalancers/{alone}"), "ACTIVE", Duration::from_secs(5)), "{:?}", sink.documents.lock().unwrap());
    // While the update waits for its commit to show, nothing of the load balancer is reported.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(statuses_of(&sink, &moved_on), 0, "{:?}", sink.documents.lock().unwrap());
    renamed.store(true, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.backlog() > 0 {
        assert!(Instant::now() < deadline, "the restored operations were not applied");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Applied again all the same (LoxiLB and the mapping hold what it made), and reported once: by the update.
    assert!(service.sandbox.lock().unwrap().mapping().get(&moved_on).is_some());
    assert_eq!(statuses_of(&sink, &moved_on), 1, "{:?}", sink.documents.lock().unwrap());
}

#[test]
fn a_redelivered_delete_octavia_no_longer_shows_is_not_reported_again() {
    // RabbitMQ redelivers what a host took and did not acknowledge: it may have reported it first. Of a
    // delete, Octavia shows so: the object is gone. Of anything else its get socket cannot say (it leaves
    // provisioning statuses out), and the operation is reported again: an object left PENDING for good is
    // the worse outcome.
    const LB: &str = "cccccccc-0000-4000-8000-000000000050";
    const POOL: &str = "cccccccc-0000-4000-8000-000000000051";
    const LISTENER: &str = "cccccccc-0000-4000-8000-000000000052";
    let id = |n: u32| format!("cccccccc-0000-4000-8000-00000000006{n}");
    let m = |n: u32| member(&id(n), POOL, &format!("10.30.9.{n}"), 8080, 1);
    let gone = id(1);
    let (service, sink, _get) = service_where_octavia_shows("redelivered", move |asked| (asked != gone).then(|| json!({"id": asked})));
    let tree = loadbalancer(LB, "10.30.9.100", vec![listener(LISTENER, LB, "TCP", 80, Some(pool(POOL, LB, Some(LISTENER), "TCP", vec![m(1), m(2)], None)))]);
    assert!(!service.apply("loadbalancer_create", &json!({"loadbalancer": tree})).is_empty());
    let before = sink.documents.lock().unwrap().len();
    for n in [1, 2] {
        assert!(service.apply_while("member_delete", &json!({"member": m(n)}), true, &|| true).is_some_and(|s| !s.is_empty()));
    }
    let documents = sink.documents.lock().unwrap()[before..].to_vec();
    let statuses = provisioning_statuses(&documents);
    assert!(!statuses.iter().any(|(object, _)| object.ends_with(&id(1))), "{documents:?}");
    assert!(statuses.contains(&(format!("members/{}", id(2)), "DELETED".to_string())), "{documents:?}");
}
