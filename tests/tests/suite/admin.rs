//! The admin socket and the `swap-policy` command line: owner-only, previews without swapping, swaps,
//! refuses with the host's reason and a non-zero exit code.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use host::config::Config;
use host::runtime::instance::Limits;
use host::swap::admin::request;
use integration_tests::*;
use serde_json::json;

#[test]
fn the_admin_socket_is_private_and_previews_swaps_and_refuses() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    let dir = std::env::temp_dir().join(format!("loxilb-admin-{}", std::process::id()));
    let config = Config { admin_socket_path: dir.join("admin.sock"), policy_path: Some(default_policy()), ..Config::default() };
    let admin = host::swap::start_admin(&config, h.service.clone()).unwrap();
    let meta = std::fs::metadata(&admin.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "the admin socket is reachable by others");
    let lb = loadbalancer(
        "22222222-0000-4000-8000-000000000001",
        "192.0.2.50",
        vec![listener(
            "22222222-0001-4000-8000-000000000001",
            "22222222-0000-4000-8000-000000000001",
            "TCP",
            80,
            Some(pool(
                "22222222-0002-4000-8000-000000000001",
                "22222222-0000-4000-8000-000000000001",
                Some("22222222-0001-4000-8000-000000000001"),
                "TCP",
                vec![member("22222222-0003-4000-8000-000000000001", "22222222-0002-4000-8000-000000000001", "198.51.100.50", 80, 1)],
                None,
            )),
        )],
    );
    h.service.apply("loadbalancer_create", &json!({"loadbalancer": lb}));
    let rules = h.sim.rules();

    assert_eq!(host::swap::cli_swap(&http_fullproxy_policy(), true, None, Some(&admin.path)).unwrap(), 0);
    assert_eq!(h.policy_name(), "l4-fullnat", "a dry run swapped");
    assert_eq!(h.sim.rules(), rules, "a dry run changed LoxiLB");

    assert_eq!(host::swap::cli_swap(&fixture("wit_v0_1"), false, None, Some(&admin.path)).unwrap(), 1);
    assert_eq!(h.policy_name(), "l4-fullnat");

    let swapped = request(&admin.path, &json!({"command": "swap-policy", "path": http_fullproxy_policy(), "dry_run": false})).unwrap().unwrap();
    assert!(swapped.contains("swapped l4-fullnat 0.1.0 for http-fullproxy 0.1.0"), "{swapped}");
    assert_eq!(h.policy_name(), "http-fullproxy");
    let info = request(&admin.path, &json!({"command": "policy-info"})).unwrap().unwrap();
    assert!(info.contains("http-fullproxy") && info.contains("policy_http_fullproxy.wasm"), "{info}");
    let refused = request(&admin.path, &json!({"command": "frobnicate"})).unwrap().unwrap_err();
    assert!(refused.contains("unknown admin command"), "{refused}");

    // The command line finds the socket through the host's configuration file too.
    let file = dir.join("octavia.conf");
    std::fs::write(&file, format!("[driver_loxilb]\nadmin_socket_path = {}\n", admin.path.display())).unwrap();
    assert_eq!(host::swap::cli_swap(&default_policy(), false, Some(&file), None).unwrap(), 0);
    assert_eq!(h.policy_name(), "l4-fullnat");
    std::fs::remove_dir_all(&dir).unwrap();
}
