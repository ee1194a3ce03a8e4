//! The mapping store under crashes and damage:
//! - a child process writing journal records, snapshots and backups through `FileStore` is killed with
//!   SIGKILL at random moments, 30 times over the same files; after every kill the store opens, its
//!   snapshot is whole, and it holds every record the child saw `sync()` return for, in order (also when
//!   the kill lands while a snapshot is still being written behind newer records);
//! - a corrupt snapshot falls back to the newest backup plus the journal since it, with an ERROR that
//!   names both files, through the real policy component;
//! - a version 1.0 file (the earlier Python driver's) loads through the component and is rewritten as 1.1.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host::runtime::instance::Sandbox;
use host::storage::{FileStore, MappingStore, Snapshot};
use integration_tests::*;
use serde_json::{json, Value};

const CHILD_DIR: &str = "LOXILB_STORAGE_CRASH_CHILD";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loxilb-storage-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the store holds, checked: the snapshot covers records `0..=upto`, and the journal continues
/// with `upto + 1, upto + 2, …` without a gap. Returns the last record number (or -1).
fn recovered(path: &Path) -> Result<i64, String> {
    let store = FileStore::open(path)?;
    let upto = match store.read_snapshot()? {
        Some(bytes) => {
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("snapshot is not JSON: {e}"))?;
            let upto = doc["upto"].as_i64().ok_or_else(|| format!("snapshot without upto: {}", &String::from_utf8_lossy(&bytes)[..80]))?;
            let padding = doc["padding"].as_str().unwrap_or_default();
            if padding.len() != padding_len(upto) || !padding.bytes().all(|b| b == b'x') {
                return Err(format!("snapshot {upto} is not whole"));
            }
            upto
        }
        None => -1,
    };
    let mut last = upto;
    for record in store.replay()? {
        let doc: Value = serde_json::from_slice(&record).map_err(|e| format!("record is not JSON: {e}"))?;
        let n = doc["n"].as_i64().ok_or("record without n")?;
        if n != last + 1 {
            return Err(format!("record {n} follows {last} (snapshot upto {upto})"));
        }
        last = n;
    }
    // A crash is not damage: no state it leaves may be mistaken for a lost or emptied segment.
    let damage = store.damage();
    if !damage.is_empty() {
        return Err(format!("a crash left what reads as journal damage: {damage:?}"));
    }
    Ok(last)
}

/// Snapshots of varying size (up to 400 kB), so kills land inside their writes too.
fn padding_len(upto: i64) -> usize {
    (upto as usize * 7919) % 400_000
}

/// The child: continues the sequence from what the store holds, forever. Every `sync` that returns is
/// announced on stdout; a snapshot is written about every 60 records, a backup about every third.
fn child(dir: &Path) {
    let path = dir.join("m.json");
    let mut next = recovered(&path).expect("the child starts from a readable store") + 1;
    let store = FileStore::open(&path).unwrap();
    store.read_snapshot().unwrap();
    store.replay().unwrap();
    let mut out = std::io::stdout().lock();
    loop {
        for _ in 0..1 + next % 7 {
            store.append(json!({"n": next, "pad": "y".repeat((next % 300) as usize)}).to_string().as_bytes()).unwrap();
            next += 1;
        }
        store.sync().unwrap();
        // Says whether the last snapshot handed over is still being written (behind these records).
        writeln!(out, "synced {}{}", next - 1, if store.snapshot_in_flight() { " writing" } else { "" }).unwrap();
        out.flush().unwrap();
        if next % 60 < 7 {
            let upto = next - 1;
            let snapshot = json!({"upto": upto, "padding": "x".repeat(padding_len(upto))}).to_string();
            writeln!(out, "snapshot").unwrap();
            out.flush().unwrap();
            store.write_snapshot(snapshot.into_bytes()).unwrap();
            if next % 180 < 7 {
                store.backup(3).unwrap();
            }
        }
    }
}

#[test]
fn crash_child_entry() {
    // Runs only as the child of the test below (the test binary re-executed).
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
    }
}

#[test]
fn kill_9_at_random_moments_never_leaves_an_unreadable_store_or_loses_a_synced_record() {
    let dir = temp_dir("crash");
    let path = dir.join("m.json");
    let seed = std::env::var("LOXILB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("seed {seed} (LOXILB_CRASH_SEED reproduces the kill times)");
    let mut rng = Rng(seed);
    let mut synced_total = -1i64;
    let mut mid_write = 0;
    let mut behind_write = 0;
    for round in 0..30 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_entry", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let synced = Arc::new(Mutex::new(-1i64));
        let started = Arc::new(AtomicBool::new(false));
        let snapshotting = Arc::new(AtomicBool::new(false));
        let in_snapshot = Arc::new(AtomicBool::new(false));
        let writing = Arc::new(AtomicBool::new(false));
        let reader = {
            let (synced, started, snapshotting, in_snapshot, writing) =
                (Arc::clone(&synced), Arc::clone(&started), Arc::clone(&snapshotting), Arc::clone(&in_snapshot), Arc::clone(&writing));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.strip_prefix("synced ") {
                        let (n, in_flight) = rest.split_once(' ').map_or((rest, false), |(n, w)| (n, w == "writing"));
                        *synced.lock().unwrap() = n.parse().expect("a record number");
                        started.store(true, Ordering::Relaxed);
                        in_snapshot.store(false, Ordering::Relaxed);
                        writing.store(in_flight, Ordering::Relaxed);
                    } else if line == "snapshot" {
                        snapshotting.store(true, Ordering::Relaxed);
                        in_snapshot.store(true, Ordering::Relaxed);
                    }
                }
            })
        };
        // Kill only once it is writing: on even rounds at any moment, on odd ones while a
        // snapshot is being sealed and written (a small part of the time, and the riskiest).
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = if round % 2 == 0 { &started } else { &snapshotting };
        while !ready.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "round {round}: the child never got there");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(if round % 2 == 0 { rng.below(120_000) as u64 } else { rng.below(20_000) as u64 }));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let synced = *synced.lock().unwrap();
        // The last thing the child said was that a snapshot (and maybe a backup) was starting.
        if in_snapshot.load(Ordering::Relaxed) {
            mid_write += 1;
        }
        if writing.load(Ordering::Relaxed) {
            behind_write += 1;
        }
        let last = recovered(&path).unwrap_or_else(|e| panic!("round {round} (seed {seed}): unreadable store after kill -9: {e}"));
        assert!(last >= synced, "round {round} (seed {seed}): record {synced} was synced but the store ends at {last}");
        assert!(last >= synced_total, "round {round}: went backwards from {synced_total} to {last}");
        synced_total = last;
    }
    assert!(synced_total > 100, "the children wrote too little to test anything ({synced_total})");
    let generation = FileStore::open(&path).unwrap().generation();
    println!(
        "{} records in {generation} generations; {mid_write} of 30 kills landed inside write_snapshot or backup, {behind_write} while records were being synced behind a snapshot still being written",
        synced_total + 1
    );
    let files: Vec<String> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!files.iter().any(|f| f.contains(".tmp.")), "temporary files left after the last open: {files:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Asks the policy to compact on its next change (it does so on its own when the journal grows past the
/// mapping's size, which would take thousands of operations here).
struct Compacting {
    store: Arc<FileStore>,
    now: AtomicBool,
}

impl MappingStore for Compacting {
    fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
        self.store.read_snapshot()
    }
    fn write_snapshot(&self, data: Vec<u8>) -> Result<(), String> {
        self.store.write_snapshot(data)
    }
    fn append(&self, record: &[u8]) -> Result<(), String> {
        self.store.append(record)
    }
    fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
        self.store.replay()
    }
    fn journal_length(&self) -> u32 {
        if self.now.swap(false, Ordering::Relaxed) {
            u32::MAX
        } else {
            self.store.journal_length()
        }
    }
    fn sync(&self) -> Result<(), String> {
        self.store.sync()
    }
}

fn open_policy(path: &Path) -> (Arc<Compacting>, Result<Sandbox, String>) {
    let store = Arc::new(Compacting { store: Arc::new(FileStore::open(path).unwrap()), now: AtomicBool::new(false) });
    let policy = host::runtime::load(&default_policy()).expect("policy loads");
    let sandbox = host::app::load_mapping(Arc::clone(&store) as Arc<dyn MappingStore>).map_err(|e| format!("{e:#}")).and_then(|mapping| {
        let wiring = host::runtime::instance::Wiring {
            loxilb: Arc::new(RecordingLoxi::default()),
            mapping,
            remove_orphans: false,
            served: Default::default(),
            log_target: "test".into(),
        };
        Sandbox::new(policy, wiring, host::runtime::instance::Limits::default(), settings()).map_err(|e| format!("{e:#}"))
    });
    (store, sandbox)
}

fn lb_tree(n: u32) -> Value {
    let id = |kind: u32| format!("5e7a{kind:04x}-0000-4000-8000-{n:012x}");
    let (lb, l, p) = (id(1), id(2), id(3));
    loadbalancer(
        &lb,
        &format!("198.51.100.{n}"),
        vec![listener(&l, &lb, "TCP", 80, Some(pool(&p, &lb, Some(&l), "TCP", vec![member(&id(4), &p, "10.9.0.1", 80, 1)], None)))],
    )
}

fn create(sandbox: &mut Sandbox, n: u32) {
    let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": lb_tree(n)}))).expect("no trap");
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
}

fn ids(sandbox: &mut Sandbox) -> Vec<String> {
    let mut ids: Vec<String> = sandbox.mappings().unwrap().into_iter().map(|m| m.octavia_id).collect();
    ids.sort();
    ids
}

#[test]
fn a_corrupt_snapshot_loads_the_newest_backup_and_the_journal_since_it_loudly() {
    let dir = temp_dir("corrupt");
    let path = dir.join("loxilb-mappings.json");
    let expected = {
        let (store, sandbox) = open_policy(&path);
        let mut sandbox = sandbox.unwrap();
        store.now.store(true, Ordering::Relaxed);
        create(&mut sandbox, 1);
        let backup = store.store.backup(3).unwrap().expect("a backup of generation 1");
        assert!(backup.to_string_lossy().ends_with("-gen1"), "{}", backup.display());
        create(&mut sandbox, 2);
        store.now.store(true, Ordering::Relaxed);
        create(&mut sandbox, 3);
        create(&mut sandbox, 4);
        store.sync().unwrap();
        assert_eq!(store.store.generation(), 2);
        ids(&mut sandbox)
    };
    assert_eq!(expected.len(), 16);

    // Bit rot in the middle of the main file.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();

    let fallbacks = host::metrics::STORAGE_FALLBACKS.get();
    let ((_store, sandbox), text) = capture_logs(|| open_policy(&path));
    let mut sandbox = sandbox.expect("the backup and journal load");
    assert_eq!(ids(&mut sandbox), expected, "backup (LB 1) + journal segments 1 and 2 (LBs 2-4)");
    let line = text.lines().find(|l| l.contains("ERROR") && l.contains("loxilb-mappings.json is corrupt")).unwrap_or_else(|| panic!("no ERROR line: {text}"));
    assert!(line.contains("checksum mismatch") && line.contains("loxilb-mappings.json.backup-") && line.contains("-gen1"), "{line}");
    assert_eq!(host::metrics::STORAGE_FALLBACKS.get(), fallbacks + 1);
    assert!(std::fs::read_dir(&dir).unwrap().flatten().any(|e| e.file_name().to_string_lossy().contains(".corrupt-")), "the bad file is kept");
    drop(sandbox);

    // With the backup gone too, the policy refuses to start rather than start empty.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains(".backup-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let err = open_policy(&path).1.err().expect("no silent empty start");
    assert!(err.contains("no usable backup") && err.contains("loxilb-mappings.json"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_version_1_0_file_loads_through_the_policy_and_is_rewritten_as_1_1() {
    let dir = temp_dir("v1-0");
    let path = dir.join("loxilb-mappings.json");
    // As the earlier Python driver wrote it: no checksum, epoch-seconds timestamps, listener metadata
    // pointing at its load balancer.
    std::fs::write(
        &path,
        r#"{
    "octavia_to_loxilb": {"lb-12345": "192.168.1.100:80/tcp", "ls-1": "192.168.1.100:80/tcp"},
    "loxilb_to_octavia": {"192.168.1.100:80/tcp": "ls-1"},
    "resource_metadata": {
        "lb-12345": {"resource_type": "loadbalancer", "external_ip": "192.168.1.100", "port": 80, "protocol": "tcp", "created_at": 1712345678.9},
        "ls-1": {"resource_type": "listener", "created_at": "2023-01-01T00:00:00Z", "additional_metadata": {"lb_id": "lb-12345", "pool_id": "p-1"}}
    },
    "version": "1.0",
    "last_saved": 1712345679.1
}"#,
    )
    .unwrap();
    let (store, sandbox) = open_policy(&path);
    let mut sandbox = sandbox.expect("a 1.0 file loads");
    let entries = sandbox.mappings().unwrap();
    let keys: Vec<(String, String)> = entries.iter().map(|m| (m.octavia_id.clone(), m.loxilb_key.clone())).collect();
    assert_eq!(keys, vec![("lb-12345".to_string(), "192.168.1.100".to_string()), ("ls-1".to_string(), "192.168.1.100:80/tcp".to_string())]);

    // The next compaction writes the current format, sealed.
    store.now.store(true, Ordering::Relaxed);
    create(&mut sandbox, 7);
    store.sync().unwrap();
    store.store.finish_snapshot().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], "1.1");
    assert!(doc["checksum"].as_str().unwrap().starts_with("crc32:"));
    assert_eq!(doc["octavia_to_loxilb"]["lb-12345"], "192.168.1.100");
    assert_eq!(doc["loxilb_to_octavia"]["192.168.1.100:80/tcp"], "ls-1");
    drop(sandbox);
    let (_, sandbox) = open_policy(&path);
    assert_eq!(sandbox.unwrap().mappings().unwrap().len(), 2 + 4);

    // A file from a newer release is refused by name, not half-read.
    std::fs::write(&path, r#"{"version": "2.0", "octavia_to_loxilb": {}}"#).unwrap();
    let err = open_policy(&path).1.err().expect("refused");
    assert!(err.contains("2.0"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
