//! One host per mapping: a second `serve`, or a `force-recovery`, on the mapping a host is serving exits
//! non-zero naming the running host's pid (the binary itself, as an operator runs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loxilb-octavia");

fn config(dir: &Path, name: &str, admin: &str) -> PathBuf {
    let policy = host::runtime::BUILTIN_POLICY_FILE;
    let path = dir.join(name);
    let text = format!(
        "[driver_loxilb]\napi_endpoints = http://127.0.0.1:9\napi_timeout = 1\npolicy_path = {policy}\nmapping_storage_path = {}\n\
         socket_path = {}\nadmin_socket_path = {}\nreconcile_interval = 0\nstats_interval = 3600\n",
        dir.join("state/mappings.json").display(),
        dir.join("host.sock").display(),
        dir.join(admin).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary to its end (bounded: each of these refuses at once).
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_host_or_a_recovery_on_a_served_mapping_is_refused_naming_the_running_host() {
    let dir = std::env::temp_dir().join(format!("loxilb-state-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = config(&dir, "octavia.conf", "admin.sock");
    let first =
        Serving(Command::new(BIN).args(["serve", "--config"]).arg(&conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let pid = first.0.id();
    let lock = dir.join("state/mappings.json.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&lock).ok().as_deref() != Some(&format!("{pid}\n")) {
        assert!(Instant::now() < deadline, "the first host did not take the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let second = run(&["serve", "--config", conf.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(stderr.contains(&format!("pid {pid}")) && stderr.contains("mappings.json.lock"), "{stderr}");

    // Another configuration for the same mapping (its own admin socket): the lock still refuses it.
    let other = config(&dir, "other.conf", "other-admin.sock");
    let recovery = run(&["force-recovery", "--config", other.to_str().unwrap(), "--mode", "loxilb"]);
    let stderr = String::from_utf8_lossy(&recovery.stderr);
    assert!(!recovery.status.success());
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");

    drop(first);
    // The kernel released the lock with the process.
    let _lock = host::storage::StateLock::acquire(&dir.join("state/mappings.json")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
