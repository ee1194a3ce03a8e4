//! The operator tools: show-mappings, validate-mappings (non-zero on problems), force-recovery.

use std::sync::Arc;

use host::config::Config;
use host::execute::RecoveryMode;
use host::loxilb::HttpLoxi;
use host::octavia::status::RecordingSink;
use host::service::Service;
use host::storage::{read_copy, FileStore, MappingStore};
use integration_tests::*;
use serde_json::{json, Value};

const LB: &str = "cccccccc-0000-4000-8000-000000000001";
const L1: &str = "cccccccc-0000-4000-8000-000000000011";
const P1: &str = "cccccccc-0000-4000-8000-000000000021";

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loxilb-tools-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(sim: &loxilb_sim::Simulator, dir: &std::path::Path) -> Config {
    Config {
        api_endpoints: vec![sim.url()],
        mapping_storage_path: dir.join("mappings.json"),
        admin_socket_path: dir.join("admin.sock"),
        policy_path: Some(default_policy()),
        ..Config::default()
    }
}

fn create_lb(config: &Config) {
    let loxi = Arc::new(HttpLoxi::new(config.api_endpoints.clone(), std::time::Duration::from_secs(5)));
    let store = Arc::new(FileStore::open(&config.mapping_storage_path).unwrap());
    let sandbox = sandbox_with(&default_policy(), loxi, store.clone());
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), std::time::Duration::from_secs(1));
    let tree = loadbalancer(
        LB,
        "10.30.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.30.1.1", 80, 1)], None)))],
    );
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    // A snapshot as well as the journal, so the file-level checks have something to read.
    let state = read_copy(&config.mapping_storage_path).unwrap();
    assert!(state.journal_length() > 0);
}

#[test]
fn validate_mappings_accepts_a_consistent_mapping_and_refuses_a_broken_one() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("validate");
    let config = config(&sim, &dir);
    create_lb(&config);
    host::tools::validate_mappings(&config).expect("a mapping the host wrote is consistent");
    host::tools::show_mappings(&config, true, &Default::default()).unwrap();

    // Write the mapping's snapshot back (a valid checksum, the earlier driver's format 1.0) with a second
    // load balancer on the same VIP: both migrate, and one key would map back to two ids. (The file's own
    // reverse map is the earlier driver's, which the policy does not use: it is not what is checked.)
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let loaded = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy));
    let entries = loaded.mappings().unwrap();
    let mut forward = serde_json::Map::new();
    let mut reverse = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    for e in &entries {
        forward.insert(e.octavia_id.clone(), json!(e.loxilb_key));
        reverse.insert(e.loxilb_key.clone(), json!(e.octavia_id));
        metadata.insert(e.octavia_id.clone(), json!({"resource_type": host::runtime::resource_type_name(e.resource_type)}));
    }
    forward.insert("somebody-else".into(), json!("10.30.0.10:80/tcp"));
    metadata.insert("somebody-else".into(), json!({"resource_type": "loadbalancer", "external_ip": "10.30.0.10"}));
    let broken = json!({"version": "1.0", "octavia_to_loxilb": forward, "loxilb_to_octavia": reverse, "resource_metadata": metadata});
    let store = FileStore::open(&config.mapping_storage_path).unwrap();
    store.write_snapshot(serde_json::to_string_pretty(&broken).unwrap().into_bytes()).unwrap();
    drop(store);
    let err = host::tools::validate_mappings(&config).expect_err("two ids on one key are a problem");
    assert!(err.to_string().contains("problems"), "{err:#}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn force_recovery_rebuilds_the_mapping_from_loxilb_with_real_ids() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("force");
    create_lb(&config(&sim, &dir));
    let empty = tempdir("force-empty");
    let config = config(&sim, &empty);
    host::tools::force_recovery(&config, RecoveryMode::Loxilb).unwrap();
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let loaded = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy));
    let ids: Vec<String> = loaded.mappings().unwrap().into_iter().map(|e| e.octavia_id).collect();
    for id in [LB, L1, P1] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
    host::tools::validate_mappings(&config).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn operating_status_follows_loxilb_and_statistics_cover_programmed_listeners() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let loxi = Arc::new(HttpLoxi::new(vec![sim.url()], std::time::Duration::from_secs(5)));
    let mut sandbox = sandbox_with(&default_policy(), loxi.clone(), Arc::new(host::storage::MemoryStore::default()));
    let tree = loadbalancer(
        LB,
        "10.30.0.10",
        vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![member("m1", P1, "10.30.1.1", 80, 1)], Some(monitor("h1", P1, "TCP")))))],
    );
    assert!(sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree}))).unwrap().error.is_none());
    // The policy's statuses from what LoxiLB holds, as the monitor asks for them.
    let statuses = |sandbox: &mut host::runtime::instance::Sandbox| -> Value {
        let observed = host::wire::observed(loxi.as_ref()).unwrap();
        host::octavia::status::document(&sandbox.operating_statuses(&observed).unwrap())
    };
    // Cumulative counters per listener, as the monitor reads them (the connection counts kept in a book).
    let statistics = |sandbox: &mut host::runtime::instance::Sandbox| {
        let observed = host::wire::observed_traffic(loxi.as_ref(), &mut Default::default()).unwrap();
        sandbox.listener_statistics(&observed).unwrap()
    };
    let healthy = statuses(&mut sandbox);
    assert_eq!(healthy["members"], json!([{"id": "m1", "operating_status": "ONLINE"}]));
    assert_eq!(healthy["listeners"], json!([{"id": L1, "operating_status": "ONLINE"}]));
    assert_eq!(healthy["loadbalancers"], json!([{"id": LB, "operating_status": "ONLINE"}]));
    let stats = statistics(&mut sandbox);
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].listener_id, L1);

    sim.restart();
    let lost = statuses(&mut sandbox);
    assert_eq!(lost["members"], json!([{"id": "m1", "operating_status": "ERROR"}]));
    assert_eq!(lost["pools"], json!([{"id": P1, "operating_status": "ERROR"}]));
    assert_eq!(lost["listeners"], json!([{"id": L1, "operating_status": "ERROR"}]));
    assert_eq!(lost["loadbalancers"], json!([{"id": LB, "operating_status": "ERROR"}]), "its only listener's rule is gone");
    assert!(statistics(&mut sandbox).is_empty());
}

#[test]
fn an_undecodable_stored_object_fails_validation_and_only_the_operations_that_need_it() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("undecodable");
    let config = config(&sim, &dir);
    create_lb(&config);

    // The same mapping in a new store, the member's stored object damaged behind a valid CRC (as a
    // policy bug or a hand edit would leave it): the load does not decode it, so it still succeeds.
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let damaged = Config { mapping_storage_path: dir.join("damaged.json"), ..config.clone() };
    let store = Arc::new(FileStore::open(&damaged.mapping_storage_path).unwrap());
    if let Some(snapshot) = copy.read_snapshot().unwrap() {
        store.write_snapshot(snapshot.into_vec()).unwrap();
    }
    let mut hits = 0;
    for record in copy.replay().unwrap() {
        let text = String::from_utf8(record).unwrap();
        let text = if text.starts_with(r#"{"put":{"id":"m1","#) {
            hits += 1;
            text.replace(r#""address":"10.30.1.1""#, r#""address":7"#)
        } else {
            text
        };
        store.append(text.as_bytes()).unwrap();
    }
    store.sync().unwrap();
    assert_eq!(hits, 1, "the member was journaled once");

    let (result, log) = capture_logs(|| host::tools::validate_mappings(&damaged));
    let err = result.expect_err("an undecodable object is a problem");
    assert!(err.to_string().contains("1 problems"), "{err:#}");
    assert!(log.contains("policy panicked") && log.contains("cannot be decoded") && log.contains("member.address: expected a string"), "{log}");

    // An operation that needs the member's stored object (a second member re-renders the rule with the
    // first) fails alone; the policy is re-instantiated and serves the rest.
    let mut sandbox = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), store.clone());
    let second = op("member_create", json!({"member": member("m2", P1, "10.30.1.2", 80, 1)}));
    assert!(sandbox.handle(&second).is_err(), "the operation that needs the damaged object traps");
    let other = loadbalancer("dddddddd-0000-4000-8000-000000000001", "10.31.0.10", vec![]);
    let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": other}))).unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    // An update that carries the whole member replaces the damaged entry, and the mapping validates again.
    let update = op("member_update", json!({"old_member": member("m1", P1, "10.30.1.1", 80, 1), "new_member": {"member_id": "m1", "weight": 3}}));
    assert!(sandbox.handle(&update).unwrap().error.is_none());
    store.sync().unwrap();
    drop(sandbox);
    host::tools::validate_mappings(&damaged).expect("repaired");
    let _ = std::fs::remove_dir_all(dir);
}

/// A mapping with a member deleted after the tree was created: the journal's last record removes it.
fn create_lb_and_delete_a_member(config: &Config) {
    let loxi = Arc::new(HttpLoxi::new(config.api_endpoints.clone(), std::time::Duration::from_secs(5)));
    let store = Arc::new(FileStore::open(&config.mapping_storage_path).unwrap());
    let sandbox = sandbox_with(&default_policy(), loxi, store.clone());
    let service = Service::new(sandbox, None, Arc::new(RecordingSink::default()), std::time::Duration::from_secs(1));
    let members = vec![member("m1", P1, "10.30.1.1", 80, 1), member("m2", P1, "10.30.1.2", 80, 1)];
    let tree = loadbalancer(LB, "10.30.0.10", vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", members, None)))]);
    service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    service.apply("member_delete", &json!({"member": member("m2", P1, "10.30.1.2", 80, 1)}));
    store.sync().unwrap();
}

/// The journal with the record removing m2 damaged behind its CRC (one bit flipped, as bit rot would).
fn flip_removal_of_m2(segment: &[u8]) -> Vec<u8> {
    let needle = br#"{"remove":{"id":"m2"}}"#;
    let at = segment.windows(needle.len()).position(|w| w == needle).expect("m2's removal is journaled");
    let mut flipped = segment.to_vec();
    flipped[at + 2] ^= 0x01;
    flipped
}

fn ids(config: &Config) -> Vec<String> {
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let loaded = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy));
    loaded.mappings().unwrap().into_iter().map(|e| e.octavia_id).collect()
}

#[test]
fn validate_mappings_names_a_damaged_journal() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("journal-damage");
    let config = config(&sim, &dir);
    create_lb_and_delete_a_member(&config);
    assert!(!ids(&config).contains(&"m2".to_string()));
    host::tools::validate_mappings(&config).expect("undamaged");
    let segment = host::storage::segment_path(&config.mapping_storage_path, 0);
    let intact = std::fs::read(&segment).unwrap();

    // The record that removed m2 fails its CRC: m2 is back, and validation says why.
    std::fs::write(&segment, flip_removal_of_m2(&intact)).unwrap();
    assert!(ids(&config).contains(&"m2".to_string()), "the skipped removal rolls the mapping back");
    let (result, _) = capture_logs(|| host::tools::validate_mappings(&config));
    let err = result.expect_err("a skipped record is a problem");
    assert!(err.to_string().contains("1 problems"), "{err:#}");
    let (_, problems) = host::tools::mapping_problems(&config).unwrap();
    assert!(problems[0].starts_with("journal: ") && problems[0].contains("mappings.json.journal.0 line") && problems[0].contains("skipped"), "{problems:?}");

    // The segment emptied: the whole history is gone, and validation says which file.
    std::fs::write(&segment, b"").unwrap();
    assert!(host::tools::validate_mappings(&config).is_err());
    let (_, problems) = host::tools::mapping_problems(&config).unwrap();
    assert!(problems.iter().any(|p| p.contains("mappings.json.journal.0 has no header")), "{problems:?}");
    std::fs::write(&segment, &intact).unwrap();
    host::tools::validate_mappings(&config).expect("restored");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_serving_host_rebuilds_a_damaged_journal_from_loxilb_rather_than_serve_it_rolled_back() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("journal-repair");
    let config = config(&sim, &dir);
    create_lb_and_delete_a_member(&config);
    let segment = host::storage::segment_path(&config.mapping_storage_path, 0);
    let bytes = flip_removal_of_m2(&std::fs::read(&segment).unwrap());
    std::fs::write(&segment, &bytes).unwrap();

    // LoxiLB unreachable: the host refuses to start and leaves the files where they are.
    let down = Config { api_endpoints: vec!["http://127.0.0.1:9".into()], api_timeout: std::time::Duration::from_millis(500), ..config.clone() };
    let err = host::app::serving_policy(&down, host::app::loxilb(&down).unwrap()).err().expect("no rebuild without LoxiLB");
    assert!(err.to_string().contains("damaged") && err.to_string().contains("journal.0 line"), "{err:#}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);

    let before = host::metrics::STORAGE_JOURNAL_DAMAGE.get();
    let (_storage, _backups, sandbox) = host::app::serving_policy(&config, host::app::loxilb(&config).unwrap()).unwrap();
    // At least: other tests of this binary may load damaged journals at the same moment.
    assert!(host::metrics::STORAGE_JOURNAL_DAMAGE.get() > before);
    let ids: Vec<String> = sandbox.mappings().unwrap().into_iter().map(|e| e.octavia_id).collect();
    for id in [LB, L1, P1] {
        assert!(ids.contains(&id.to_string()), "{id} missing from {ids:?}");
    }
    // LoxiLB's rule has one endpoint: the deleted member does not come back.
    assert_eq!(ids.iter().filter(|i| i.starts_with("member_")).count(), 1, "{ids:?}");
    assert!(!ids.contains(&"m2".to_string()), "{ids:?}");
    // The damaged files are kept for the operator, and the new journal is whole.
    let kept: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("mappings.json.damaged-")).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(kept[0].path().join("mappings.json.journal.0")).unwrap(), bytes);
    assert!(sandbox.storage().damage().is_empty());
    drop((sandbox, _storage));
    host::tools::validate_mappings(&config).expect("the rebuilt mapping is whole");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_seeds_version_1_0_example_migrates_every_resource_it_holds() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("seed-1-0");
    let config = config(&sim, &dir);
    // The seed's storage format (version 1.0, keys as the earlier driver wrote them: a load balancer under
    // its listener's service key, `pool-<id>`, `member-<id>`, a monitor under null).
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mapping-v1.0-seed-example.json"), &config.mapping_storage_path).unwrap();
    let (entries, log) = capture_logs(|| {
        let copy = read_copy(&config.mapping_storage_path).unwrap();
        sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy)).mappings().unwrap()
    });
    let mut got: Vec<(String, &str, String)> =
        entries.iter().map(|e| (e.octavia_id.clone(), host::runtime::resource_type_name(e.resource_type), e.loxilb_key.clone())).collect();
    got.sort();
    let want = [
        ("hm-web", "healthmonitor", "192.168.1.100/pool-pool-web/monitor"),
        ("lb-12345", "loadbalancer", "192.168.1.100"),
        ("listener-80", "listener", "192.168.1.100:80/tcp"),
        ("member-a", "member", "192.168.1.100/pool-pool-web/10.0.1.5:8080"),
        ("member-b", "member", "192.168.1.100/pool-pool-web/10.0.1.6:8080"),
        ("pool-web", "pool", "192.168.1.100/pool-pool-web"),
    ];
    assert_eq!(got, want.map(|(id, t, key)| (id.to_string(), t, key.to_string())));
    assert!(log.contains("migrated 6 of 6 mappings from format 1.0"), "{log}");
    // The migrated tree is whole: keys parse, parents and children agree, the listener's rule renders
    // with both members and the monitor.
    let (count, problems) = host::tools::mapping_problems(&config).unwrap();
    assert_eq!((count, problems), (6, Vec::<String>::new()));
    let copy = read_copy(&config.mapping_storage_path).unwrap();
    let rules = sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy)).desired_rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].rule.endpoints.len(), 2);
    assert_eq!(rules[0].rule.service.probetype, "tcp");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn show_mappings_filters_by_load_balancer_and_resource_type() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("filter");
    let config = config(&sim, &dir);
    let loxi = Arc::new(HttpLoxi::new(config.api_endpoints.clone(), std::time::Duration::from_secs(5)));
    let store = Arc::new(FileStore::open(&config.mapping_storage_path).unwrap());
    let service =
        Service::new(sandbox_with(&default_policy(), loxi, store.clone()), None, Arc::new(RecordingSink::default()), std::time::Duration::from_secs(1));
    let other = "dddddddd-0000-4000-8000-000000000001";
    for (lb, vip, listener_id, pool_id, member_id, address) in [
        (LB, "10.30.0.10", L1, P1, "m1", "10.30.1.1"),
        (other, "10.31.0.10", "dddddddd-0000-4000-8000-000000000011", "dddddddd-0000-4000-8000-000000000021", "m2", "10.31.1.1"),
    ] {
        let members = vec![member(member_id, pool_id, address, 80, 1)];
        let tree = loadbalancer(lb, vip, vec![listener(listener_id, lb, "TCP", 80, Some(pool(pool_id, lb, Some(listener_id), "TCP", members, None)))]);
        service.apply("loadbalancer_create", &json!({"loadbalancer": tree}));
    }
    store.sync().unwrap();
    let entries = || {
        let copy = read_copy(&config.mapping_storage_path).unwrap();
        sandbox_with(&default_policy(), Arc::new(RecordingLoxi::default()), Arc::new(copy)).mappings().unwrap()
    };
    let selected = |lb: Option<&str>, t: Option<&str>| -> Vec<String> {
        let filter = host::tools::Filter { loadbalancer: lb.map(str::to_string), resource_type: t.map(str::to_string) };
        let mut ids: Vec<String> = host::tools::select(entries(), &filter).unwrap().into_iter().map(|e| e.octavia_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(selected(None, None).len(), 8);
    assert_eq!(
        selected(Some(LB), None),
        [LB, L1, P1, "m1"].map(String::from).to_vec().into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()
    );
    assert_eq!(selected(None, Some("member")), ["m1", "m2"]);
    assert_eq!(selected(Some(other), Some("member")), ["m2"]);
    assert_eq!(selected(None, Some("loadbalancer")), [LB, other]);
    let err = host::tools::select(entries(), &host::tools::Filter { loadbalancer: Some("no-such-lb".into()), resource_type: None }).unwrap_err();
    assert!(err.to_string().contains("load balancer no-such-lb is not in the mapping"), "{err}");
    host::tools::show_mappings(&config, false, &host::tools::Filter { loadbalancer: Some(LB.into()), resource_type: None }).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_read_only_tools_refuse_a_mapping_that_is_not_there() {
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    let dir = tempdir("missing");
    let config = config(&sim, &dir);
    for err in [host::tools::show_mappings(&config, false, &Default::default()).unwrap_err(), host::tools::validate_mappings(&config).unwrap_err()] {
        assert!(err.to_string().contains(&format!("no mapping at {}", config.mapping_storage_path.display())), "{err}");
    }
    // Nothing was created by looking.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // A mapping with a journal but no snapshot yet is there.
    create_lb(&config);
    assert!(!config.mapping_storage_path.exists());
    host::tools::show_mappings(&config, false, &Default::default()).unwrap();
    let off = Config { enable_persistent_mapping: false, ..config.clone() };
    assert!(host::tools::validate_mappings(&off).unwrap_err().to_string().contains("enable_persistent_mapping is false"));
    let _ = std::fs::remove_dir_all(dir);
}
