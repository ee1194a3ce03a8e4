//! Listener statistics end to end: the host, two LoxiLB simulators holding the same rules (a cluster),
//! traffic driven through both, and Octavia's stats socket (a fake driver-agent recording what it gets).
//! What is pushed must be what was driven: bytes in and out, active and total connections, summed over
//! the nodes and kept cumulative across connections that closed between two pushes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host::loxilb::{HttpLoxi, LoxiTransport};
use host::monitor::{Monitor, Upkeep};
use host::octavia::agent::DriverAgent;
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::MemoryStore;
use integration_tests::*;
use loxilb_sim::{ErrorStyle, Flow, Simulator};
use serde_json::{json, Value};

const LB: &str = "eeeeeeee-0000-4000-8000-000000000001";
const L1: &str = "eeeeeeee-0000-4000-8000-000000000011";
const P1: &str = "eeeeeeee-0000-4000-8000-000000000021";
const VIP: &str = "10.50.0.10";

/// Octavia's stats socket: answers 200 and keeps every document.
struct StatsSocket {
    path: PathBuf,
    documents: Arc<Mutex<Vec<Value>>>,
}

impl StatsSocket {
    fn start(name: &str) -> StatsSocket {
        let path = std::env::temp_dir().join(format!("loxilb-stats-{name}-{}.sock", std::process::id()));
        let documents = keeping_documents_at(&path);
        StatsSocket { path, documents }
    }

    /// The listener's counters in the last document, as (bytes_in, bytes_out, active, total).
    fn last(&self, listener: &str) -> (u64, u64, u64, u64) {
        let documents = self.documents.lock().unwrap();
        let document = documents.last().expect("statistics pushed");
        let l = document["listeners"].as_array().unwrap().iter().find(|l| l["id"] == listener).expect("the listener's statistics");
        let n = |k: &str| l[k].as_u64().unwrap();
        (n("bytes_in"), n("bytes_out"), n("active_connections"), n("total_connections"))
    }
}

fn push(monitor: &Monitor, upkeep: &mut Upkeep) {
    std::thread::sleep(Duration::from_millis(5));
    monitor.tick(upkeep);
}

#[test]
fn listener_statistics_carry_what_was_driven_through_every_node() {
    let nodes = [Simulator::start(ErrorStyle::Coded).unwrap(), Simulator::start(ErrorStyle::Coded).unwrap()];
    let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(nodes.iter().map(Simulator::url).collect(), Duration::from_secs(5)));
    let stats = StatsSocket::start("e2e");
    let agent = DriverAgent { status: None, stats: Some(stats.path.clone()), get: None };
    let sandbox = sandbox_with(&default_policy(), Arc::clone(&loxilb), Arc::new(MemoryStore::default()));
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), Duration::from_secs(1));
    let monitor = Monitor {
        service: Arc::clone(&service),
        loxilb,
        agent: Some(agent),
        stats_interval: Duration::from_millis(1),
        reconcile_interval: Duration::from_secs(3600),
    };
    let mut upkeep = Upkeep::default();
    let members = vec![member("m1", P1, "10.50.1.1", 8080, 1), member("m2", P1, "10.50.1.2", 8080, 1)];
    let tree = loadbalancer(LB, VIP, vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    assert!(nodes.iter().all(|n| n.rules().len() == 1), "every node holds the rule");

    push(&monitor, &mut upkeep);
    assert_eq!(stats.last(L1), (0, 0, 0, 0), "no traffic yet");

    // Two connections on node 0, one on node 1.
    let (a, b, c) = (Flow::tcp("192.0.2.1:40001", VIP, 80), Flow::tcp("192.0.2.2:40002", VIP, 80), Flow::tcp("192.0.2.3:40003", VIP, 80));
    for (node, flow, bytes_in, bytes_out) in [(0, &a, 300, 9000), (0, &b, 50, 700), (1, &c, 20, 4000)] {
        nodes[node].open(flow).unwrap();
        nodes[node].carry(flow, bytes_in, bytes_out).unwrap();
    }
    // The default policy programs full NAT: replies go to LoxiLB's source address, named in the action.
    assert!(nodes[0].conntrack().iter().any(|e| e.conntrack_act.starts_with("fsnat-")), "{:?}", nodes[0].conntrack());
    push(&monitor, &mut upkeep);
    assert_eq!(stats.last(L1), (370, 13700, 3, 3));

    // `a` carries more and closes; a fourth connection opens on node 1 and `c` carries more.
    let d = Flow::tcp("192.0.2.4:40004", VIP, 80);
    nodes[0].carry(&a, 10, 1000).unwrap();
    nodes[0].close(&a).unwrap();
    nodes[1].open(&d).unwrap();
    nodes[1].carry(&d, 5, 60).unwrap();
    nodes[1].carry(&c, 1, 40).unwrap();
    // Between the close and the push, `a`'s last 1000 reply bytes were never seen in the table: the
    // documented limit of a table of current connections. Bytes in come from the endpoint counters.
    push(&monitor, &mut upkeep);
    assert_eq!(stats.last(L1), (386, 13700 + 60 + 40, 3, 4));

    // Seen once more before it closes, a connection's reply bytes all count.
    nodes[1].carry(&d, 0, 100).unwrap();
    push(&monitor, &mut upkeep);
    nodes[1].close(&d).unwrap();
    push(&monitor, &mut upkeep);
    assert_eq!(stats.last(L1), (386, 13900, 2, 4));
    // Statistics, operating statuses and the rules a check looks for walk the whole mapping: each was
    // made on an instance of its own, never holding the operations back.
    assert_eq!(service.sandbox.lock().unwrap().walks, 0, "a walk of the mapping was made under the operations' lock");
    let _ = std::fs::remove_file(&stats.path);
}
