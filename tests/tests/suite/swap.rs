//! Swapping the running policy: under a load of concurrent operations, to broken components, and the
//! dry-run preview compared with what the real swap then does in the LoxiLB simulator.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use host::runtime::bindings::policy_types::Settings;
use host::runtime::instance::Limits;
use host::swap::{self, preview};
use integration_tests::*;
use serde_json::{json, Value};

fn lb_id(i: u32) -> String {
    format!("5a000000-0000-4000-8000-{:012}", i)
}
fn listener_id(i: u32, n: u32) -> String {
    format!("5a000000-0001-4000-8000-{:06}{:06}", i, n)
}
fn pool_id(i: u32, n: u32) -> String {
    format!("5a000000-0002-4000-8000-{:06}{:06}", i, n)
}
fn member_id(i: u32, m: u32) -> String {
    format!("5a000000-0003-4000-8000-{:06}{:06}", i, m)
}
fn vip(i: u32) -> String {
    format!("192.0.2.{}", 10 + i)
}

fn member_of(i: u32, m: u32) -> Value {
    member(&member_id(i, m), &pool_id(i, 1), &format!("198.51.{i}.{m}"), 8080, 1)
}

/// Load balancer `i`: a TCP listener on 80 whose pool holds members 1..=n.
fn tcp_lb(i: u32, n: u32) -> Value {
    let members = (1..=n).map(|m| member_of(i, m)).collect();
    loadbalancer(
        &lb_id(i),
        &vip(i),
        vec![listener(&listener_id(i, 1), &lb_id(i), "TCP", 80, Some(pool(&pool_id(i, 1), &lb_id(i), Some(&listener_id(i, 1)), "TCP", members, None)))],
    )
}

fn endpoint_ips(rule: &Value) -> BTreeSet<String> {
    rule["endpoints"].as_array().into_iter().flatten().map(|e| e["endpointIP"].as_str().unwrap().to_string()).collect()
}

fn name_of(rule: &Value) -> String {
    rule["serviceArguments"]["name"].as_str().unwrap_or_default().to_string()
}

#[test]
fn swap_under_concurrent_operations_fails_and_loses_nothing() {
    const LBS: u32 = 3;
    let storage = Arc::new(WriterRecordingStore::default());
    let h = test_host_on(&default_policy(), Limits::default(), settings(), false, storage.clone());
    for i in 0..LBS {
        h.service.cast("loadbalancer_create", json!({"loadbalancer": tcp_lb(i, 1)})).unwrap();
    }
    h.wait_applied(LBS as u64);

    // Each sender keeps adding and removing members of its own load balancer, validating first as the
    // provider does, until a while after the swap; it returns the members it left and its cast count.
    let swapped = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..LBS)
        .map(|i| {
            let (service, swapped) = (Arc::clone(&h.service), Arc::clone(&swapped));
            std::thread::spawn(move || {
                let mut present: BTreeSet<u32> = [1].into();
                let (mut casts, mut after_swap, mut m) = (0u64, 0, 1);
                // Ending with members left: a pool without members has no rule, and the check below
                // looks at the rule each load balancer is left with.
                while after_swap < 15 || present.is_empty() {
                    m = m % 20 + 1;
                    let method = if present.contains(&m) { "member_delete" } else { "member_create" };
                    let args = json!({"member": member_of(i, m), "loadbalancer_id": lb_id(i)});
                    service.call("validate", &json!({"operation": method, "args": args})).unwrap_or_else(|f| panic!("validate {method}: {f}"));
                    service.cast(method, args).unwrap();
                    if !present.remove(&m) {
                        present.insert(m);
                    }
                    casts += 1;
                    if swapped.load(Ordering::SeqCst) {
                        after_swap += 1;
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
                (present, casts)
            })
        })
        .collect();

    h.wait_applied(LBS as u64 + 10);
    let report = swap::swap(&h.service, &http_fullproxy_policy()).expect("the swap is accepted");
    swapped.store(true, Ordering::SeqCst);
    println!("{}", report.render());
    assert!(report.from.starts_with("l4-fullnat") && report.to.starts_with("http-fullproxy"), "{}", report.render());
    let applied_at_swap = h.service.applied.load(Ordering::SeqCst);

    // And back to the default policy while the senders still run: two swaps between the shipped policies.
    let back = swap::swap(&h.service, &default_policy()).expect("the swap back is accepted");
    assert!(back.to.starts_with("l4-fullnat"), "{}", back.render());
    let again = swap::swap(&h.service, &http_fullproxy_policy()).expect("the swap is accepted again");
    assert!(again.to.starts_with("http-fullproxy"), "{}", again.render());

    let results: Vec<(BTreeSet<u32>, u64)> = senders.into_iter().map(|s| s.join().expect("sender")).collect();
    // The mapping is the host's: swaps neither hand it over nor rewrite it (operations, on the service's
    // workers, did all the writing).
    let writers = storage.writers.lock().unwrap().clone();
    assert!(!writers.is_empty());
    assert!(!writers.contains(&std::thread::current().id()), "a swap wrote to the mapping's storage");
    let total = LBS as u64 + results.iter().map(|(_, c)| c).sum::<u64>();
    h.wait_applied(total);
    assert!(applied_at_swap < total, "every operation was applied before the swap; the test did not swap under load");

    let documents = h.sink.documents.lock().unwrap().clone();
    let errors: Vec<(String, String)> = provisioning_statuses(&documents).into_iter().filter(|(_, p)| p != "ACTIVE" && p != "DELETED").collect();
    assert!(errors.is_empty(), "operations failed around the swap: {errors:?}");
    for (i, (present, _)) in results.iter().enumerate() {
        let i = i as u32;
        let rules = h.rules_on(&vip(i));
        assert_eq!(rules.len(), 1, "load balancer {i}: {rules:?}");
        let want: BTreeSet<String> = present.iter().map(|m| format!("198.51.{i}.{m}")).collect();
        assert_eq!(endpoint_ips(&rules[0]), want, "load balancer {i} lost or kept members across the swap");
        assert!(name_of(&rules[0]).starts_with("octavia-l7_"), "rule not renamed by the new policy: {}", name_of(&rules[0]));
    }

    // What only the new policy does: an HTTP listener served by LoxiLB's full proxy.
    let http = listener(&listener_id(0, 2), &lb_id(0), "HTTP", 8080, None);
    h.service.cast("listener_create", json!({"listener": http, "loadbalancer_id": lb_id(0)})).unwrap();
    let web = pool(
        &pool_id(0, 2),
        &lb_id(0),
        Some(&listener_id(0, 2)),
        "HTTP",
        vec![member("5a000000-0003-4000-8000-999999999999", &pool_id(0, 2), "198.51.0.99", 80, 1)],
        None,
    );
    h.service.cast("pool_create", json!({"pool": web, "loadbalancer_id": lb_id(0)})).unwrap();
    h.wait_applied(total + 2);
    let rule = h.rules_on(&vip(0)).into_iter().find(|r| r["serviceArguments"]["port"] == 8080).expect("the HTTP listener has a rule");
    assert_eq!(rule["serviceArguments"]["mode"], 4, "HTTP is not in full-proxy mode: {rule}");
    assert_eq!(name_of(&rule), format!("octavia-l7_{}_{}_{}", lb_id(0), listener_id(0, 2), pool_id(0, 2)));
}

#[test]
fn a_broken_component_is_refused_with_its_reason_and_the_old_policy_keeps_serving() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    let statuses = h.service.apply("loadbalancer_create", &json!({"loadbalancer": tcp_lb(1, 2)}));
    assert!(statuses.iter().all(|s| s.provisioning != Some(host::runtime::bindings::octavia::ProvisioningStatus::Error)));

    let mut cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (fixture("wit_v0_1"), vec!["loxilb:octavia@0.2.0", "loxilb:octavia@0.1.0"]),
        (fixture("bad_selfcheck"), vec!["desired-rules"]),
        (fixture("planted_bug"), vec!["conformance", "member-batch-update"]),
        (fixture("misbehave"), vec!["conformance", "owns-rule"]),
        (PathBuf::from("/nonexistent/policy.wasm"), vec!["reading policy"]),
    ];
    let (_dir, files) = not_components("swap");
    cases.extend(files.into_iter().map(|p| (p, vec!["not a loadable component"])));
    let refused_before = host::metrics::render().lines().find(|l| l.starts_with("loxilb_octavia_policy_swaps_total{result=\"refused\"}")).map(str::to_string);
    let count = cases.len();
    for (path, reasons) in cases {
        let requests = h.sim.requests().len();
        let error = format!("{:#}", swap::swap(&h.service, &path).err().unwrap_or_else(|| panic!("{} was accepted", path.display())));
        for reason in reasons {
            assert!(error.contains(reason), "{}: {error:?} does not name {reason:?}", path.display());
        }
        assert!(error.contains("refused"), "{error}");
        assert!(preview::preview(&h.service, &path).is_err(), "{} previewed", path.display());
        assert_eq!(h.policy_name(), "l4-fullnat", "{} replaced the policy", path.display());
        assert_eq!(h.sim.requests().len(), requests, "refusing {} touched LoxiLB", path.display());
    }
    let refused = |line: Option<String>| line.and_then(|l| l.rsplit_once(' ').map(|(_, n)| n.parse::<u64>().unwrap())).unwrap_or(0);
    let refused_after = host::metrics::render().lines().find(|l| l.starts_with("loxilb_octavia_policy_swaps_total{result=\"refused\"}")).map(str::to_string);
    assert!(refused(refused_after) >= refused(refused_before) + count as u64, "each refused swap is counted");

    let statuses = h.service.apply("member_create", &json!({"member": member_of(1, 3), "loadbalancer_id": lb_id(1)}));
    let document = host::octavia::status::document(&statuses);
    assert_eq!(document["members"][0]["provisioning_status"], "ACTIVE", "{document}");
    let rules = h.rules_on(&vip(1));
    assert_eq!(endpoint_ips(&rules[0]).len(), 3);
    assert!(name_of(&rules[0]).starts_with("octavia_lb-"), "{}", name_of(&rules[0]));
}

fn mapping(h: &TestHost) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = h.service.sandbox.lock().unwrap().mappings().unwrap().into_iter().map(|m| (m.octavia_id, m.loxilb_key)).collect();
    entries.sort();
    entries
}

/// Runs a preview, then the real swap, and checks the preview listed exactly the simulator's changes.
fn swap_as_previewed(h: &TestHost, to: &std::path::Path) -> preview::Preview {
    let requests = h.sim.requests().len();
    let preview = preview::preview(&h.service, to).expect("preview");
    println!("{}", preview.render());
    assert_eq!(h.sim.requests().len(), requests, "the preview touched LoxiLB");
    let before = h.sim.rules();
    let mapped = mapping(h);
    h.sim.clear_requests();
    swap::swap(&h.service, to).expect("swap");
    assert_eq!(mapping(h), mapped, "the mapping changed across the swap");
    assert_eq!(preview::mutations(&h.sim), preview.calls, "the swap made other LoxiLB calls than previewed");
    assert_eq!(preview::diff(&before, &h.sim.rules()), preview.changes, "the swap changed other rules than previewed");
    preview
}

#[test]
fn dry_run_lists_exactly_the_changes_the_swap_then_makes() {
    let h = test_host_with(&default_policy(), Limits::default(), Settings { nat_mode: "fullnat".into(), bgp: false }, true);
    let mut monitored = tcp_lb(1, 2);
    monitored["listeners"][0]["default_pool"]["healthmonitor"] = monitor("5a000000-0004-4000-8000-000000000001", &pool_id(1, 1), "TCP");
    for (method, args) in [("loadbalancer_create", json!({"loadbalancer": monitored})), ("loadbalancer_create", json!({"loadbalancer": tcp_lb(2, 3)}))] {
        let document = host::octavia::status::document(&h.service.apply(method, &args));
        assert_eq!(document["loadbalancers"][0]["provisioning_status"], "ACTIVE", "{document}");
    }

    // The default policy's rules take the new naming scheme: each is changed, none added or removed.
    let first = swap_as_previewed(&h, &http_fullproxy_policy());
    assert_eq!(first.changes.len(), 2, "{}", first.render());
    for change in &first.changes {
        let preview::RuleChange::Changed { fields, .. } = change else { panic!("{change:?}") };
        let name = fields.iter().find(|f| f.field == "serviceArguments.name").expect("the name changes");
        assert!(name.to.as_str().unwrap().starts_with("octavia-l7_"), "{name:?}");
    }
    assert!(first.render().contains("serviceArguments.name"), "{}", first.render());

    // An HTTP listener only the new policy serves: swapping back removes its rule (remove_orphans).
    h.service.apply("listener_create", &json!({"listener": listener(&listener_id(2, 2), &lb_id(2), "HTTP", 8080, None), "loadbalancer_id": lb_id(2)}));
    let web = pool(
        &pool_id(2, 2),
        &lb_id(2),
        Some(&listener_id(2, 2)),
        "HTTP",
        vec![member("5a000000-0003-4000-8000-888888888888", &pool_id(2, 2), "198.51.2.88", 80, 1)],
        None,
    );
    h.service.apply("pool_create", &json!({"pool": web, "loadbalancer_id": lb_id(2)}));
    assert_eq!(h.rules_on(&vip(2)).len(), 2);
    let back = swap_as_previewed(&h, &default_policy());
    assert!(back.changes.iter().any(|c| matches!(c, preview::RuleChange::Removed { key, .. } if key == "192.0.2.12:8080/tcp")), "{}", back.render());
    assert_eq!(h.rules_on(&vip(2)).len(), 1);

    // Swapping to the policy already running changes nothing.
    let same = swap_as_previewed(&h, &default_policy());
    assert!(same.changes.is_empty() && same.calls.is_empty(), "{}", same.render());
}

#[test]
fn operations_between_the_new_instance_start_and_the_switch_are_carried_over() {
    let h = test_host(&default_policy(), Limits::default(), settings());
    h.service.apply("loadbalancer_create", &json!({"loadbalancer": tcp_lb(1, 1)}));
    let prepared = swap::prepare(&h.service, &http_fullproxy_policy()).expect("checked and started");
    // The new instance has loaded the mapping; the old policy still serves and journals this member.
    let document = host::octavia::status::document(&h.service.apply("member_create", &json!({"member": member_of(1, 2), "loadbalancer_id": lb_id(1)})));
    assert_eq!(document["members"][0]["provisioning_status"], "ACTIVE", "{document}");
    assert_eq!(h.policy_name(), "l4-fullnat");
    prepared.switch(&h.service).expect("switched");
    assert_eq!(h.policy_name(), "http-fullproxy");
    assert!(mapping(&h).iter().any(|(id, _)| *id == member_id(1, 2)), "the member created before the switch is not in the new mapping");
    let rules = h.rules_on(&vip(1));
    assert_eq!(endpoint_ips(&rules[0]), ["198.51.1.1", "198.51.1.2"].map(String::from).into(), "the new policy's reconcile dropped the member");
}
