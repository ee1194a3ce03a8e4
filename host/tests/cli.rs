//! The command line as an operator meets it: every option says what it takes, and the read-only tools
//! fail (exit 1) on a mapping that is not there instead of printing "0 mappings".

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_loxilb-octavia");

#[test]
fn every_config_option_has_help() {
    for command in ["serve", "show-mappings", "validate-mappings", "force-recovery", "metrics", "swap-policy"] {
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
