"""Benchmark (not a test): the earlier Python drivers' translators beside this project's policy, in one
run (`make bench-peers`).

The same load balancer tree as `host/benches/translate.rs` (1 listener, 1 pool, 10 members, TCP
monitor) goes through:
- `octavia-loxilb-driver` 1.0.3 (the driver the seed documents): `ResourceMapper.loadbalancer_to_loxilb`;
- `octavia-loxilb-driver` 1.1.0 (its rewrite): `lb_to_loxilb_service_from_dict`, the dict translator
  its sub-drivers call;
- this project's default policy: `cargo bench -p host --bench translate` (through the component, and the
  same crate natively).

Not the same work: each peer returns one LoxiLB rule as a dict; the policy returns a whole plan (the
rule, its undo, 14 mapping entries with their metadata, statuses on success and on failure) across the
sandbox boundary. Both peers answer a member update by translating the listener's whole rule again, so
their member update costs what their tree does."""
import json
import os
import re
import subprocess
import sys
import timeit
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(ROOT, ".venv-peers")
VERSIONS = ("1.0.3", "1.1.0")
ITERATIONS = int(os.environ.get("BENCH_ITERATIONS", "20000"))


def tree():
    """The tree as octavia-lib's `to_dict` gives it, with `id` beside each `<kind>_id` (1.0.3 reads
    either)."""
    members = [{"id": f"member-{i:02}-0000-4000-8000-000000000000",
                "member_id": f"member-{i:02}-0000-4000-8000-000000000000",
                "pool_id": "pool-0000-0000-4000-8000-000000000000",
                "address": f"10.0.1.{i}", "protocol_port": 8080, "weight": 1, "admin_state_up": True,
                "backup": False} for i in range(1, 11)]
    monitor = {"id": "hm-00000-0000-4000-8000-000000000000", "healthmonitor_id": "hm-00000-0000-4000-8000-000000000000",
               "pool_id": "pool-0000-0000-4000-8000-000000000000", "type": "TCP", "delay": 5, "timeout": 3,
               "max_retries": 2, "max_retries_down": 3, "admin_state_up": True}
    pool = {"id": "pool-0000-0000-4000-8000-000000000000", "pool_id": "pool-0000-0000-4000-8000-000000000000",
            "loadbalancer_id": "lb-00000000-0000-4000-8000-000000000000",
            "listener_id": "listener-0000-4000-8000-000000000000", "protocol": "TCP",
            "lb_algorithm": "ROUND_ROBIN", "admin_state_up": True, "members": members, "healthmonitor": monitor,
            "session_persistence": None}
    listener = {"id": "listener-0000-4000-8000-000000000000", "listener_id": "listener-0000-4000-8000-000000000000",
                "loadbalancer_id": "lb-00000000-0000-4000-8000-000000000000", "protocol": "TCP",
                "protocol_port": 80, "admin_state_up": True, "connection_limit": -1,
                "timeout_client_data": 50000, "default_pool_id": pool["id"], "default_pool": pool}
    lb = {"id": "lb-00000000-0000-4000-8000-000000000000", "loadbalancer_id": "lb-00000000-0000-4000-8000-000000000000",
          "vip_address": "10.0.0.10", "admin_state_up": True, "listeners": [listener], "pools": [pool]}
    return lb, listener, pool


def translator(version):
    """A function (lb, listener, pool) -> LoxiLB rule dict, from the peer of that version."""
    if version == "1.0.3":
        from octavia_loxilb_driver.resource_mapping.mapper import ResourceMapper
        config = types.SimpleNamespace(id_mapping_persistence_enabled=False, default_algorithm="ROUND_ROBIN")
        mapper = ResourceMapper(config)
        return mapper.loadbalancer_to_loxilb
    from octavia_loxilb_driver.schema.translators.octavia_to_loxilb import lb_to_loxilb_service_from_dict
    return lambda lb, listener, pool: lb_to_loxilb_service_from_dict(lb, listener, pool, nat_mode="fullnat")


def peer(version):
    """In a process whose path holds that version only: µs per translation, as JSON on stdout."""
    translate = translator(version)
    lb, listener, pool = tree()
    rule = translate(lb, listener, pool)
    endpoints = rule.get("endpoints") or []
    assert len(endpoints) == 10, f"{version} translated {len(endpoints)} endpoints of 10: {rule}"
    translate(lb, listener, pool)
    best = min(timeit.repeat(lambda: translate(lb, listener, pool), number=ITERATIONS // 5, repeat=5))
    print(json.dumps({"version": version, "us": best / (ITERATIONS // 5) * 1e6}))


def run_peer(version):
    env = dict(os.environ, PYTHONPATH=os.path.join(VENV, f"driver-{version}"))
    done = subprocess.run([sys.executable, __file__, "--peer", version], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"octavia-loxilb-driver {version} could not be timed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["us"]


def ours():
    """((tree through the component, natively), (mean update through the component, natively)) in µs."""
    done = subprocess.run(["cargo", "bench", "-q", "-p", "host", "--bench", "translate"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    line = re.compile(r"^\s*(.+?)\s+guest\s+([\d.]+) µs/op\s+native\s+([\d.]+) µs/op", re.M)
    rows = {name.strip(): (float(g), float(n)) for name, g, n in line.findall(done.stdout)}
    return rows["loadbalancer_create (tree)"], rows["mean of the updates"]


def main():
    if sys.argv[1:2] == ["--peer"]:
        return peer(sys.argv[2])
    import platform
    print(f"# translate one tree (1 listener, 1 pool, 10 members, TCP monitor); {platform.python_implementation()} "
          f"{platform.python_version()}; {os.cpu_count()} CPUs; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    peers = {v: run_peer(v) for v in VERSIONS}
    (tree_guest, tree_native), (update_guest, update_native) = ours()
    rows = [("octavia-loxilb-driver 1.0.3 (ResourceMapper)", peers["1.0.3"], peers["1.0.3"]),
            ("octavia-loxilb-driver 1.1.0 (dict translator)", peers["1.1.0"], peers["1.1.0"]),
            ("this policy, through the component", tree_guest, update_guest),
            ("this policy, natively", tree_native, update_native)]
    print(f"\n{'':48s} {'tree':>10s} {'member update':>15s}")
    for name, tree_us, update_us in rows:
        print(f"{name:48s} {tree_us:7.1f} µs {update_us:12.1f} µs")


if __name__ == "__main__":
    main()
