//! The command line as an operator meets it: every option says what it takes, and the read-only tools
//! fail (exit 1) on a mapping that is not there instead of printing "0 mappings".

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_loxilb-octavia");

#[test]
fn every_config_option_has_help() {
    for command in ["serve", "show-mappings", "validate-mappings", "force-recovery", "metrics", "swap-policy", "nodes"] {
        let out = Command::new(BIN).args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help.lines().find(|l| l.trim_start().starts_with("--config")).unwrap_or_else(|| panic!("{command}: {help}"));
        assert!(line.contains("configuration file"), "{command}: {line:?}");
    }
}

#[test]
fn read_only_tools_on_a_missing_mapping_exit_non_zero_saying_so() {
    let dir = std::env::temp_dir().join(format!("loxilb-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("nowhere/mappings.json");
    let conf = dir.join("octavia.conf");
    std::fs::write(&conf, format!("[driver_loxilb]\nmapping_storage_path = {}\n", mapping.display())).unwrap();
    for command in ["show-mappings", "validate-mappings"] {
        let out = Command::new(BIN).args([command, "--config", conf.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(&format!("no mapping at {}", mapping.display())), "{command}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("0 mappings"));
    }
    assert!(!dir.join("nowhere").exists(), "looking created nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_demo_runs_on_the_built_in_policy_with_no_policy_file_anywhere() {
    // An installed binary: alone in a directory of its own, no policy_path, no guest.wasm beside it.
    let dir = std::env::temp_dir().join(format!("loxilb-installed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let installed = dir.join("loxilb-octavia");
    std::fs::copy(BIN, &installed).unwrap();
    let out = Command::new(&installed).arg("demo").current_dir(&dir).env_remove("LOXILB_POLICY").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("policy: builtin:l4-fullnat") && stdout.contains("policy l4-fullnat"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nodes_lists_each_node_and_exits_1_when_one_does_not_answer() {
    let dir = std::env::temp_dir().join(format!("loxilb-cli-nodes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded).unwrap();
    sim.set_role("MASTER");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // closed again at once
    let conf = dir.join("octavia.conf");
    let write = |endpoints: &str| {
        std::fs::write(&conf, format!("[driver_loxilb]\nenable_persistent_mapping = false\napi_endpoints = {endpoints}\napi_timeout = 2\n")).unwrap()
    };
    write(&sim.url());
    let out = Command::new(BIN).args(["nodes", "--config", conf.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("NODE") && stdout.contains("MASTER") && stdout.contains("v0.9.8.5-sim"), "{stdout}");
    assert!(stdout.contains("drift not compared: enable_persistent_mapping is false"), "{stdout}");

    write(&format!("{},http://{dead}", sim.url()));
    let out = Command::new(BIN).args(["nodes", "--json", "--config", conf.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers: Vec<bool> = report["nodes"].as_array().unwrap().iter().map(|n| n["answers"].as_bool().unwrap()).collect();
    assert_eq!(answers, [true, false], "{report}");
    assert_eq!(report["nodes"][0]["error_style"], "errors as HTTP status codes");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn perf_names_the_policys_functions_only_when_asked() {
    let dir = std::env::temp_dir().join(format!("loxilb-perfmap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for asked in [true, false] {
        let mut command = Command::new(BIN);
        command.arg("demo").current_dir(&dir).env("LOXILB_COMPONENT_CACHE", dir.join("cache")).env_remove("LOXILB_PERFMAP");
        if asked {
            command.env("LOXILB_PERFMAP", "1");
        }
        let child = command.stdout(std::process::Stdio::null()).spawn().unwrap();
        let map = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = std::fs::read_to_string(&map).unwrap_or_default();
        let _ = std::fs::remove_file(&map);
        assert_eq!(text.contains("wasm[0]::function["), asked, "{asked}: {}", map.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
