//! Swap latency with cached components: a host serving 10 load balancers (20 listeners, 80 members)
//! against the LoxiLB simulator swaps between the default and the http-fullproxy policy, and to the policy
//! it already runs. Each swap loads the component (cached: no compilation), runs the conformance
//! scenarios, checks it on a copy of the mapping, starts it, and switches; switching to the other
//! policy also re-programs every rule (new names). Prints the phases and the total per swap.
//!
//! Run: `cargo policies && cargo bench -p host --bench swap` (issue 12's target: total ≤ 30 ms).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::config::Config;
use host::runtime::instance::{Sandbox, Wiring};
use host::service::Service;
use serde_json::{json, Value};

const ROUNDS: usize = 20;

fn http_fullproxy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policies/wasm32-unknown-unknown/guest/policy_http_fullproxy.wasm")
}

fn loadbalancer(i: u32) -> Value {
    let id = |kind: u32, n: u32| format!("b0000000-{kind:04}-4000-8000-{i:06}{n:06}");
    let listeners: Vec<Value> = (1..=2)
        .map(|l| {
            let members: Vec<Value> = (1..=4)
                .map(|m| json!({"member_id": id(3, l * 10 + m), "address": format!("198.51.{i}.{}", l * 10 + m), "protocol_port": 8080, "weight": 1, "admin_state_up": true}))
                .collect();
            json!({"listener_id": id(1, l), "protocol": "TCP", "protocol_port": 80 + l, "admin_state_up": true, "connection_limit": -1,
                   "default_pool": {"pool_id": id(2, l), "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", "admin_state_up": true, "members": members}})
        })
        .collect();
    json!({"loadbalancer_id": id(0, 0), "vip_address": format!("192.0.2.{}", 10 + i), "admin_state_up": true, "listeners": listeners, "pools": []})
}

struct Figures {
    label: &'static str,
    total: Vec<Duration>,
    checked: Vec<Duration>,
    started: Vec<Duration>,
    switched: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(values: &mut [Duration]) -> String {
    values.sort();
    let pick = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!("min {:6.1}  median {:6.1}  p90 {:6.1}  max {:6.1}", ms(values[0]), ms(pick(0.5)), ms(pick(0.9)), ms(values[values.len() - 1]))
}

fn main() -> anyhow::Result<()> {
    let default = host::runtime::default_policy_path();
    let other = http_fullproxy();
    for p in [&default, &other] {
        anyhow::ensure!(p.exists(), "{} is missing: run `cargo policies` first", p.display());
    }
    let sim = loxilb_sim::Simulator::start(loxilb_sim::ErrorStyle::Coded)?;
    let dir = std::env::temp_dir().join(format!("loxilb-swap-bench-{}", std::process::id()));
    let config = Config { api_endpoints: vec![sim.url()], mapping_storage_path: dir.join("mappings.json"), ..Config::default() };
    // The service programs the simulator over HTTP with the host's own client, as it programs LoxiLB; the
    // checks run the candidate against an in-process simulator of their own (`conformance::SimulatorLoxi`).
    let loxilb = host::app::loxilb(&config)?;
    let wiring = Wiring {
        loxilb,
        mapping: host::app::load_mapping(host::app::storage(&config)?)?,
        remove_orphans: false,
        served: Default::default(),
        log_target: "bench".into(),
    };
    let sandbox = Sandbox::new(host::runtime::load(&default)?, wiring, host::app::limits(&config), host::app::settings(&config))?;
    let service = Service::new(sandbox, None, Arc::new(host::octavia::status::RecordingSink::default()), Duration::from_secs(5));
    for i in 0..10 {
        service.apply("loadbalancer_create", &json!({"loadbalancer": loadbalancer(i)}));
    }
    anyhow::ensure!(sim.rules().len() == 20, "expected 20 rules, the simulator has {}", sim.rules().len());

    // Warm-up: both components compiled (or read from the on-disk cache) once.
    host::swap::swap(&service, &other)?;
    host::swap::swap(&service, &default)?;

    let mut runs = [
        Figures { label: "to the other policy (20 rules re-programmed)", total: vec![], checked: vec![], started: vec![], switched: vec![] },
        Figures { label: "to the same policy (no LoxiLB change)", total: vec![], checked: vec![], started: vec![], switched: vec![] },
    ];
    for round in 0..ROUNDS {
        let target = if round % 2 == 0 { &other } else { &default };
        for (figures, path) in runs.iter_mut().zip([target, target]) {
            let started = Instant::now();
            let report = host::swap::swap(&service, path)?;
            figures.total.push(started.elapsed());
            figures.checked.push(report.checked_in);
            figures.started.push(report.started_in);
            figures.switched.push(report.switched_in);
        }
    }
    println!("swap latency, cached components, {ROUNDS} swaps each (ms):");
    for f in runs.iter_mut() {
        println!("{}", f.label);
        println!("  total                        {}", summary(&mut f.total));
        println!("  load + conformance + check   {}", summary(&mut f.checked));
        println!("  start on the real mapping    {}", summary(&mut f.started));
        println!("  switch (lock held)           {}", summary(&mut f.switched));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
