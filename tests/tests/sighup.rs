//! SIGHUP swaps every host in the process to its configured `policy_path` again, and a host whose
//! configured component is broken keeps its policy. (A test binary of its own: the signal reaches the
//! whole process.)

use std::time::{Duration, Instant};

use host::config::Config;
use host::runtime::instance::Limits;
use integration_tests::*;

#[test]
fn sighup_swaps_to_the_configured_policy_and_refuses_a_broken_one() {
    let dir = std::env::temp_dir().join(format!("loxilb-sighup-{}", std::process::id()));
    let broken = test_host(&default_policy(), Limits::default(), settings());
    let config = Config { admin_socket_path: dir.join("broken.sock"), policy_path: Some(fixture("wit_v0_1")), ..Config::default() };
    host::swap::start_admin(&config, broken.service.clone()).unwrap();
    let good = test_host(&default_policy(), Limits::default(), settings());
    let config = Config { admin_socket_path: dir.join("good.sock"), policy_path: Some(http_fullproxy_policy()), ..Config::default() };
    host::swap::start_admin(&config, good.service.clone()).unwrap();

    // SAFETY: the handler start_admin installed only writes to a pipe.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while good.policy_name() != "http-fullproxy" {
        assert!(Instant::now() < deadline, "SIGHUP did not swap the policy");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Hosts are swapped in the order they registered: the broken one has had its turn.
    assert_eq!(broken.policy_name(), "l4-fullnat");
    std::fs::remove_dir_all(&dir).unwrap();
}
