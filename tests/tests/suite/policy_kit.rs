//! `check-policy`: the conformance scenarios pass on both shipped policies and the kit's template, and
//! fail, by name, on a policy with a planted bug.

use host::conformance;
use integration_tests::*;

#[test]
fn both_shipped_policies_and_the_template_pass_every_scenario() {
    for path in [default_policy(), http_fullproxy_policy(), template_policy()] {
        let report = conformance::check(&path).unwrap();
        println!("{}", report.render());
        assert!(report.passed(), "{}: {}", path.display(), report.render());
        assert!(report.results.len() >= 12, "too few scenarios: {}", report.results.len());
    }
}

#[test]
fn a_planted_bug_fails_exactly_its_scenario_by_name() {
    let report = conformance::check(&fixture("planted_bug")).unwrap();
    let text = report.render();
    println!("{text}");
    assert_eq!(report.failed(), vec!["member-batch-update"], "{text}");
    assert!(text.contains("FAIL  member-batch-update"), "{text}");
    assert_eq!(conformance::cli_check(&fixture("planted_bug")).unwrap(), 1);
    assert_eq!(conformance::cli_check(&default_policy()).unwrap(), 0);
}

#[test]
fn check_policy_refuses_what_is_not_a_policy_for_this_host() {
    let err = conformance::check(&fixture("wit_v0_1")).err().expect("a 0.1.0 policy must be refused").to_string();
    assert!(err.contains("0.2.0") && err.contains("0.1.0"), "{err}");
    let (_dir, paths) = not_components("check");
    for path in paths {
        let err = format!("{:#}", conformance::check(&path).err().expect("not a component"));
        assert!(err.contains("not a loadable component"), "{}: {err}", path.display());
    }
}
