//! Reconciliation and recovery at scale (issue 12's targets: reconcile 2,048 matching rules ≤ 10 ms and
//! linear beyond; recover 100k mappings from a LoxiLB listing ≤ 1 s). A policy populates the LoxiLB
//! simulator with trees of one load balancer, listener and pool and `m` members (3 + m mappings, 1 rule
//! each; LoxiLB holds at most 2,048 rules of at most 32 endpoints, so at most ~71k mappings); then it
//! times:
//! - a reconciliation pass finding nothing to do, whole (LoxiLB's list over HTTP included), over an unchanged
//!   mapping (the policy's last desired rules are reused) and after a change, and its parts:
//!   listing and decoding the rules, rendering the desired rules in the policy, the diff;
//! - recovery of the whole mapping from the listing into an empty file store, until its journal is synced
//!   (the rules' names carry the ids).
//!
//! Run: `cargo bench -p host --bench reconcile` (`BENCH_SIZES=2048x2,2048x30`: rules x members each).

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::execute::RecoveryMode;
use host::loxilb::{HttpLoxi, LoxiTransport};
use host::runtime::bindings::mapping::MappingChange;
use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::{Limits, Sandbox, Wiring};
use host::storage::{FileStore, MappingStore, MemoryStore};
use serde_json::json;

fn sandbox(loxilb: Arc<dyn LoxiTransport>) -> Sandbox {
    sandbox_on(loxilb, Arc::new(MemoryStore::default()))
}

fn sandbox_on(loxilb: Arc<dyn LoxiTransport>, store: Arc<dyn MappingStore>) -> Sandbox {
    let policy = host::runtime::load(&host::runtime::default_policy_path()).expect("the default policy component");
    let mapping = host::app::load_mapping(store).unwrap();
    let wiring = Wiring { loxilb, mapping, remove_orphans: false, served: Default::default(), log_target: "bench".into() };
    Sandbox::new(policy, wiring, Limits::default(), Settings { nat_mode: "fullnat".into(), bgp: false }).unwrap()
}

fn tree(i: u32, members: u32) -> host::runtime::bindings::octavia::Operation {
    let id = |kind: u32| format!("c0000000-{kind:04}-4000-8000-{i:012}");
    let (a, b) = (i / 250, i % 250);
    // Member m of tree i: 10.<100+m>.<i/250>.<i%250+1>.
    let members: Vec<_> = (1..=members)
        .map(|m| json!({"member_id": id(100 + m), "address": format!("10.{}.{a}.{}", 100 + m, b + 1), "protocol_port": 8080, "weight": 1, "admin_state_up": true}))
        .collect();
    let lb = json!({"loadbalancer_id": id(0), "vip_address": format!("10.99.{a}.{}", b + 1), "admin_state_up": true, "pools": [],
                    "listeners": [{"listener_id": id(1), "protocol": "TCP", "protocol_port": 80, "admin_state_up": true, "connection_limit": -1,
                                   "default_pool": {"pool_id": id(9), "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true, "members": members}}]});
    host::convert::operation("loadbalancer_create", &json!({"loadbalancer": lb})).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let sizes = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "2048x2,2048x30".into());
    for size in sizes.split(',') {
        let (rules, members) = size.trim().split_once('x').expect("RULESxMEMBERS");
        let (rules, members): (u32, u32) = (rules.parse().expect("a number of rules"), members.parse().expect("a number of members"));
        let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
        let loxilb: Arc<dyn LoxiTransport> = Arc::new(HttpLoxi::new(vec![sim.url()], Duration::from_secs(30)));
        let mut serving = sandbox(Arc::clone(&loxilb));
        let t = Instant::now();
        for i in 0..rules {
            let outcome = serving.handle(&tree(i, members)).unwrap();
            assert!(outcome.error.is_none(), "{:?}", outcome.error);
        }
        let mappings = serving.mappings().unwrap().len();
        println!("{rules} rules of {members} endpoints, {mappings} mappings (populated in {:.1} s):", t.elapsed().as_secs_f64());

        // Passes over an unchanged mapping reuse the policy's last desired rules; after any change (here one
        // entry stored again as it was) the policy renders them all again.
        let pass = |serving: &mut Sandbox, changed: bool| {
            if changed {
                let entry = serving.mapping().entries().swap_remove(0);
                serving.mapping().apply(vec![MappingChange::Put(entry)]).unwrap();
            }
            let t = Instant::now();
            let report = serving.reconcile().unwrap().unwrap();
            assert!(report.reprogrammed.is_empty() && report.orphans.is_empty(), "nothing to do");
            t.elapsed()
        };
        let after_change = median((0..5).map(|_| pass(&mut serving, true)).collect());
        let unchanged = median((0..5).map(|_| pass(&mut serving, false)).collect());
        let (_, body) = loxilb.request("GET", "/config/loadbalancer/all", None).unwrap();
        let decoded = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(loxilb_api::rule_list(&body).unwrap());
                    t.elapsed()
                })
                .collect(),
        );
        let (mut listed, mut desired, mut diffed) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            let observed = host::wire::observed(loxilb.as_ref()).unwrap();
            listed.push(t.elapsed());
            let t = Instant::now();
            let wanted = serving.render_desired_rules().unwrap();
            desired.push(t.elapsed());
            let t = Instant::now();
            assert!(host::drift::drift(&wanted, &observed).is_empty());
            diffed.push(t.elapsed());
        }
        println!(
            "  reconcile, nothing to do: {:.1} ms over an unchanged mapping, {:.1} ms after a change (list+decode over HTTP {:.1} ms of which decoding the {:.1} MB list {:.1} ms, desired rules in the policy {:.1} ms, diff {:.2} ms)",
            ms(unchanged),
            ms(after_change),
            ms(median(listed)),
            body.len() as f64 / 1e6,
            ms(decoded),
            ms(median(desired)),
            ms(median(diffed))
        );

        let recovered = median(
            (0..3)
                .map(|run| {
                    // Into an empty file store, as `serve` and `force-recovery` recover: done when the journal
                    // holding every adopted entry is synced (the snapshot is then written in the background).
                    let dir = std::env::temp_dir().join(format!("loxilb-reconcile-bench-{}-{run}", std::process::id()));
                    let _ = std::fs::remove_dir_all(&dir);
                    let store = Arc::new(FileStore::open(&dir.join("loxilb-mappings.json")).unwrap());
                    let mut fresh = sandbox_on(Arc::clone(&loxilb), Arc::clone(&store) as Arc<dyn MappingStore>);
                    let t = Instant::now();
                    let report = fresh.recover(RecoveryMode::Loxilb).unwrap().unwrap();
                    store.sync().unwrap();
                    let took = t.elapsed();
                    assert_eq!(report.recovered as usize, mappings, "every mapping recovered");
                    drop((fresh, store));
                    let _ = std::fs::remove_dir_all(&dir);
                    took
                })
                .collect(),
        );
        let observed: Vec<_> = host::wire::observed(loxilb.as_ref()).unwrap().into_iter().map(|o| o.rule).collect();
        let planned = median(
            (0..3)
                .map(|_| {
                    let mut fresh = sandbox(Arc::clone(&loxilb));
                    let t = Instant::now();
                    std::hint::black_box(fresh.recovery(&observed).unwrap());
                    t.elapsed()
                })
                .collect(),
        );
        println!(
            "  recovery of {mappings} mappings from the listing into an empty file store, journal synced: {:.1} ms (the policy's recover {:.1} ms)",
            ms(recovered),
            ms(planned)
        );
    }
}
