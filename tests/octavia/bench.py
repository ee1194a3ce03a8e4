"""Benchmark (not a test) through the real Octavia API, in the environment the e2e suite builds
(`make bench-octavia`): per-step latency to ACTIVE and a burst's rate with the loxilb provider, beside
Octavia's own `noop_driver` provider in the same run, and beside the `instant` provider
(tests/octavia/instant_provider.py: it only reports, one status document per request right after Octavia
commits, so its figures are the most Octavia's status path allows a provider that reports per request).

The noop driver never reports a status (its objects stay PENDING_CREATE), so what it measures is the
API's own cost: the request's round trip and the burst's accepted creates per second. For loxilb both
the round trip (validation by the host and the cast happen inside it) and the time to ACTIVE are shown."""
import concurrent.futures
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import Environment  # noqa: E402
from octavialib import PENDING, Api, graph, wait_for  # noqa: E402

STEPS = int(os.environ.get("BENCH_STEPS", "10"))   # trees created step by step, per provider
BURST = int(os.environ.get("BENCH_BURST", "16"))   # graph creates in the burst
THREADS = 4
POLL = 0.01


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def fmt(values):
    if not values:
        return "-"
    return f"median {statistics.median(values) * 1000:7.1f} ms  p99 {pct(values, 99) * 1000:7.1f} ms  (n={len(values)})"


class Timed(Api):
    def timed_post(self, kind, body):
        t0 = time.monotonic()
        obj = self.create(kind, body)
        return obj, t0, time.monotonic() - t0

    def until(self, lb_id, t0, gone=False):
        """Seconds from t0 until the load balancer is ACTIVE (or gone)."""
        def done():
            lb = self.get("loadbalancers", lb_id)
            return lb is None if gone else (lb and lb["provisioning_status"] not in PENDING)

        wait_for(done, 120, f"load balancer {lb_id} to settle", interval=POLL)
        return time.monotonic() - t0


def steps_loxilb(env, api, vips):
    rtt = {k: [] for k in ("loadbalancer", "listener", "pool", "member")}
    active = {k: [] for k in (*rtt, "cascade delete")}
    for n in range(STEPS):
        lb, t0, d = api.timed_post("loadbalancers", {"vip_subnet_id": api.subnet, "vip_address": next(vips),
                                                      "project_id": api.project, "provider": "loxilb"})
        rtt["loadbalancer"].append(d)
        active["loadbalancer"].append(api.until(lb["id"], t0))
        li, t0, d = api.timed_post("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP",
                                                 "protocol_port": 80, "project_id": api.project})
        rtt["listener"].append(d)
        active["listener"].append(api.until(lb["id"], t0))
        pool, t0, d = api.timed_post("pools", {"listener_id": li["id"], "protocol": "TCP",
                                               "lb_algorithm": "ROUND_ROBIN", "project_id": api.project})
        rtt["pool"].append(d)
        active["pool"].append(api.until(lb["id"], t0))
        _, t0, d = api.timed_post("members", {"pool_id": pool["id"], "address": f"198.51.100.{n + 1}",
                                              "protocol_port": 80, "project_id": api.project})
        rtt["member"].append(d)
        active["member"].append(api.until(lb["id"], t0))
        t0 = time.monotonic()
        api.delete("loadbalancers", lb["id"], cascade=True)
        active["cascade delete"].append(api.until(lb["id"], t0, gone=True))
    return rtt, active


def steps_noop(api, vips):
    rtt = []
    for _ in range(STEPS):
        _, _, d = api.timed_post("loadbalancers", {"vip_subnet_id": api.subnet, "vip_address": next(vips),
                                                    "project_id": api.project, "provider": "noop_driver"})
        rtt.append(d)
    return rtt


def steps_instant(api, vips):
    """The `instant` provider's load balancer create to ACTIVE, and the cascade delete of a graph like
    the loxilb trees' (load balancer, listener, pool, member) until it is gone: Octavia's own floor under
    the loxilb steps of the same name."""
    active = {"loadbalancer": [], "cascade delete": []}
    for n in range(STEPS):
        lb, t0, _ = api.timed_post("loadbalancers", {"vip_subnet_id": api.subnet, "vip_address": next(vips),
                                                      "project_id": api.project, "provider": "instant"})
        active["loadbalancer"].append(api.until(lb["id"], t0))
        api.delete("loadbalancers", lb["id"], cascade=True)
        api.until(lb["id"], time.monotonic(), gone=True)
        lb = api.create("loadbalancers", graph(api, next(vips), f"198.51.100.{n + 1}", provider="instant"))
        api.until(lb["id"], time.monotonic())
        t0 = time.monotonic()
        api.delete("loadbalancers", lb["id"], cascade=True)
        active["cascade delete"].append(api.until(lb["id"], t0, gone=True))
    return active


def burst(api, vips, provider):
    """BURST graph creates (LB, listener, pool, member) from THREADS clients. Returns (seconds until
    every create was answered, seconds until every load balancer was ACTIVE or None)."""
    batch = [next(vips) for _ in range(BURST)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
        lbs = list(ex.map(lambda vip: api.create("loadbalancers", graph(api, vip, "198.51.100.200",
                                                                        provider=provider))["id"], batch))
    answered = time.monotonic() - t0
    if provider == "noop_driver":
        return answered, None
    for lb_id in lbs:
        try:
            api.until(lb_id, t0)
        except BaseException as err:  # pytest's Failed: report the figure as missing, not a traceback
            print(f"burst: {err}")
            return answered, None
    settled = time.monotonic() - t0
    for lb_id in lbs:
        api.delete("loadbalancers", lb_id, cascade=True)
    for lb_id in lbs:
        api.until(lb_id, time.monotonic(), gone=True)
    return answered, settled


def main():
    # BENCH_RECONCILE: the host's reconcile_interval; unset, the production default (60 s).
    # BENCH_DB_PARAMETERS: oslo.db connection_parameters for Octavia (e.g. ssl_disabled=1); unset, none.
    env = Environment(reconcile_interval=os.environ.get("BENCH_RECONCILE"),
                      db_parameters=os.environ.get("BENCH_DB_PARAMETERS"), instant_provider=True)
    failed = True
    try:
        env.up()
        vips = (f"10.{a}.{b}.1" for a in range(1, 200) for b in range(0, 250))
        lox = Timed(env.api_url, "bench-loxilb")
        noop = Timed(env.api_url, "bench-noop")
        instant = Timed(env.api_url, "bench-instant")
        print(f"# {STEPS} trees step by step, burst of {BURST} graph creates from {THREADS} clients; "
              f"reconcile_interval {env.reconcile_interval or 'default (60 s)'}; "
              f"[database] connection_parameters {env.db_parameters or 'unset'}; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        rtt, active = steps_loxilb(env, lox, vips)
        noop_rtt = steps_noop(noop, vips)
        instant_steps = steps_instant(instant, vips)
        lox_burst = burst(lox, vips, "loxilb")
        noop_burst = burst(noop, vips, "noop_driver")
        instant_burst = burst(instant, vips, "instant")

        print("\nper step, loxilb (request round trip | to ACTIVE, or gone for the delete):")
        for step in active:
            print(f"  {step:15s} {fmt(rtt.get(step, [])):48s} | {fmt(active[step])}")
        print("per step, instant (reports only; to ACTIVE, or gone for the delete):")
        for step, values in instant_steps.items():
            print(f"  {step:15s} {'':48s} | {fmt(values)}")
        print(f"\nloadbalancer create round trip, noop_driver: {fmt(noop_rtt)}")
        print(f"  ratio loxilb/noop (median round trip): "
              f"{statistics.median(rtt['loadbalancer']) / statistics.median(noop_rtt):.2f}x")
        print(f"  ratio loxilb to ACTIVE / noop round trip (median): "
              f"{statistics.median(active['loadbalancer']) / statistics.median(noop_rtt):.2f}x")
        objects = 4 * BURST  # a load balancer, a listener, a pool and a member each
        to_active = f"{objects / lox_burst[1]:.1f}" if lox_burst[1] else "(not all ACTIVE)"
        print(f"\nburst: loxilb {to_active} objects/s to ACTIVE "
              f"({objects / lox_burst[0]:.1f} objects/s accepted), "
              f"noop_driver {objects / noop_burst[0]:.1f} objects/s accepted")
        if lox_burst[1]:
            print(f"  ratio loxilb to ACTIVE / noop accepted (time): {lox_burst[1] / noop_burst[0]:.2f}x")
        if instant_burst[1]:
            # What Octavia allows a provider that programs nothing and reports each graph in one status
            # document right after Octavia's commit (instant_provider.py).
            against = f", loxilb against it {instant_burst[1] / lox_burst[1]:.2f}" if lox_burst[1] else ""
            print(f"  instant (reports only) {objects / instant_burst[1]:.1f} objects/s to ACTIVE "
                  f"({objects / instant_burst[0]:.1f} accepted): against noop accepted "
                  f"{noop_burst[0] / instant_burst[1]:.2f}{against}")
        for key, value in env.host_metrics("commits_notified_total", "commits_polled_total",
                                           "status_documents_total", "status_update",
                                           "commit_wait", "provider_validate",
                                           "provider_cast").items():
            print(f"  host metric {key} {value}")
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        left = env.loxilb.vips()
        if left:  # a bench is not a test: say so, the e2e suite checks it
            print(f"\nnote: {len(left)} VIPs of deleted load balancers still have LoxiLB rules "
                  f"(issue 11 item 1)")
        failed = False
    finally:
        if failed:
            print(env.logs())
        env.down(keep=failed or bool(os.environ.get("KEEP_LOGS")))


if __name__ == "__main__":
    main()
