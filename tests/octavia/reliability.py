"""Reliability run (not a test; `make reliability`): the real Octavia API, driver-agent and MariaDB as in
the e2e suite, the host behind a proxy that injects faults in front of LoxiLB, kill -9 of the host in
the middle of bursts, and malformed messages on the provider socket. It prints the figures the README
quotes and exits 1 when an object was lost or left PENDING.

Per round: a burst of graph creates (load balancer, listener, pool, member) from 4 clients, the host
killed while one of them is PENDING and started again; every create the API accepted must reach ACTIVE
with exactly its rule on LoxiLB, every one it refused must leave nothing; then a member added to each
while octavia-driver-agent is killed (1-3 s, then started again), which must reach ACTIVE once it is
back, and every load balancer cascade-deleted, which must leave LoxiLB without its VIP. Throughout, a
share of LoxiLB requests fail: the connection reset, HTTP 500, or applied and answered after the host's
timeout.

REL_ROUNDS (6), REL_BURST (8), REL_FAULT_PERCENT (5), REL_MALFORMED (12000)."""
import concurrent.futures
import http.server
import json
import os
import random
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import Environment, free_port  # noqa: E402
from octavialib import SETTLE, Api, graph, wait_for  # noqa: E402

ROUNDS = int(os.environ.get("REL_ROUNDS", "6"))
BURST = int(os.environ.get("REL_BURST", "8"))
FAULT_PERCENT = float(os.environ.get("REL_FAULT_PERCENT", "5"))
MALFORMED = int(os.environ.get("REL_MALFORMED", "12000"))
API_TIMEOUT = 1.0  # the host's api_timeout: a "late" fault answers after it


class FaultProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, upstream, port):
        self.upstream = upstream
        self.faults = {"reset": 0, "http_500": 0, "late": 0}
        self.requests = 0
        self.lock = threading.Lock()
        self.rng = random.Random(11)
        super().__init__(("127.0.0.1", port), FaultHandler)

    def pick(self):
        with self.lock:
            self.requests += 1
            if self.rng.random() * 100 >= FAULT_PERCENT:
                return None
            fault = self.rng.choice(list(self.faults))
            self.faults[fault] += 1
            return fault


class FaultHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def forward(self):
        fault = self.server.pick()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if fault == "reset":
            # Nothing applied; the host reads a broken connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if fault == "http_500":
            self.reply(500, b'{"code":500,"message":"injected","result":"injected fault"}')
            return
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as err:
            status, answer = err.code, err.read()
        if fault == "late":
            # Applied by LoxiLB, answered after the host gave up waiting.
            time.sleep(API_TIMEOUT * 1.5)
        self.reply(status, answer)

    def reply(self, status, body):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the host gave up on a late answer

    do_GET = do_POST = do_DELETE = do_PUT = forward


def frame(obj):
    body = json.dumps(obj).encode()
    return str(len(body)).encode() + b"\n" + body


def malformed_messages(rng):
    """(kind, bytes) of what a broken or hostile peer of the provider socket sends."""
    lb = "0badbad0-0000-4000-8000-000000000001"
    kinds = [
        ("random bytes", lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))),
        ("not JSON", lambda: b"12\n{not json!!}"),
        ("length header not digits", lambda: b"1x2\n{}"),
        ("length beyond the limit", lambda: b"99999999999\n{"),
        ("truncated frame", lambda: frame({"type": "cast", "method": "member_create"})[:-5]),
        ("no type", lambda: frame({"method": "loadbalancer_create", "args": {}})),
        ("unknown method", lambda: frame({"type": "cast", "method": "loadbalancer_explode",
                                          "args": {"loadbalancer_id": lb}})),
        ("missing arguments", lambda: frame({"type": "cast", "method": "member_create",
                                             "args": {"loadbalancer_id": lb}})),
        ("wrong argument types", lambda: frame({"type": "cast", "method": "loadbalancer_create",
                                                "args": {"loadbalancer_id": lb, "loadbalancer": [1, 2]}})),
        ("unknown call", lambda: frame({"type": "call", "method": "format_disk", "args": {}})),
    ]
    while True:
        kind, make = rng.choice(kinds)
        yield kind, make()


def send_malformed(path, count):
    rng = random.Random(7)
    tried, answered_ok = {}, 0
    for _, (kind, data) in zip(range(count), malformed_messages(rng)):
        tried[kind] = tried.get(kind, 0) + 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                reply = s.recv(65536)
            except OSError:
                continue
            # Accepted ({"result": ...}) would mean a malformed cast was queued.
            if b'"result"' in reply:
                answered_ok += 1
    return tried, answered_ok


def round_of(env, api, vips, n, stats):
    members = {vip: f"198.51.100.{(n * BURST + i) % 250 + 1}" for i, vip in enumerate(vips)}

    def create(vip):
        body = graph(api, vip, members[vip], member_port=8080)
        return vip, api.request("POST", "/loadbalancers", json={"loadbalancer": body})

    accepted, refused = {}, []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(create, vip) for vip in vips]

        def in_flight():
            return all(f.done() for f in futures) or any(r[0] == "load_balancer" for r in env.pending(api.project))

        wait_for(in_flight, SETTLE, "a load balancer of the burst in PENDING_CREATE", interval=0.02)
        time.sleep(random.Random(n).random() * 0.3)
        env.kill_host()
        stats["kills"] += 1
        time.sleep(0.3)
        env.start_host()
        for future in concurrent.futures.as_completed(futures, timeout=180):
            vip, r = future.result()
            if r.status_code == 201:
                accepted[vip] = r.json()["loadbalancer"]["id"]
            else:
                refused.append(vip)
    stats["accepted"] += len(accepted)
    stats["refused"] += len(refused)

    for vip, lb_id in accepted.items():
        try:
            api.lb_settled(lb_id)
        except AssertionError as err:
            stats["lost"].append(f"load balancer {lb_id} on {vip}: {err}")
            continue
        want = {(80, "tcp"): {(members[vip], 8080): 1}}
        if env.loxilb.endpoints(vip) != want:
            stats["lost"].append(f"LoxiLB on {vip}: {env.loxilb.endpoints(vip)}, want {want}")
    for vip in refused:
        if env.loxilb.rules(vip):
            stats["lost"].append(f"a rule on {vip}, whose create Octavia refused")

    # A member more on each, added while octavia-driver-agent is down (their statuses wait for it), then
    # everything cascade-deleted.
    pools = {lb_id: api.status_tree(lb_id)["loadbalancer"]["listeners"][0]["pools"][0]["id"]
             for lb_id in accepted.values()}
    env.kill_agent()
    for lb_id in accepted.values():
        api.create("members", {"pool_id": pools[lb_id], "address": "203.0.113.9", "protocol_port": 8080})
    time.sleep(1 + random.Random(n).random() * 2)
    env.start_agent()
    stats["agent_restarts"] += 1
    for vip, lb_id in accepted.items():
        try:
            api.lb_settled(lb_id)
        except AssertionError as err:
            stats["lost"].append(f"load balancer {lb_id} after a member add while the driver-agent was down: {err}")
        stats["operations"] += 1
        if (80, "tcp") not in env.loxilb.endpoints(vip) or \
                ("203.0.113.9", 8080) not in env.loxilb.endpoints(vip)[(80, "tcp")]:
            stats["lost"].append(f"the added member on {vip}: {env.loxilb.endpoints(vip)}")
    # The host started in this round: its count is this round's.
    stats["status_retries"] += retries(env)
    for lb_id in accepted.values():
        api.delete("loadbalancers", lb_id, cascade=True)
    for vip, lb_id in accepted.items():
        api.gone("loadbalancers", lb_id)
        stats["operations"] += 1
    wait_for(lambda: not set(vips) & set(env.loxilb.vips()), 20, "LoxiLB to drop the deleted VIPs")
    stats["objects"] += 5 * len(accepted)


def retries(env):
    return int(sum(float(v) for v in env.host_metrics("status_update_retries_total").values()))


def main():
    front_port = free_port()
    env = Environment(reconcile_interval="2", loxilb_front=f"http://127.0.0.1:{front_port}",
                      driver_loxilb={"api_timeout": str(API_TIMEOUT), "api_retry_deadline": "8"})
    proxy = FaultProxy(env.loxilb.url, front_port)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    stats = {"kills": 0, "agent_restarts": 0, "status_retries": 0, "accepted": 0, "refused": 0,
             "operations": 0, "objects": 0, "lost": []}
    failed = True
    started = time.monotonic()
    try:
        env.up()
        api = Api(env.api_url, "reliability")
        octets = iter(range(1, 250))
        for n in range(ROUNDS):
            vips = [f"10.77.{next(octets)}.1" for _ in range(BURST)]
            round_of(env, api, vips, n, stats)
            print(f"round {n + 1}/{ROUNDS}: {stats['accepted']} creates accepted, {stats['refused']} refused "
                  f"while the host was down, {len(stats['lost'])} lost", flush=True)
        tried, accepted_bad = send_malformed(env.host_socket, MALFORMED)
        wait_for(lambda: not env.pending(), SETTLE, "nothing PENDING after the malformed messages")
        pending = env.pending()
        elapsed = time.monotonic() - started

        print(f"\nreliability, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {elapsed:.0f} s")
        print(f"  kill -9 of the host mid-burst, survived:   {stats['kills']}")
        print(f"  creates accepted / refused while down:     {stats['accepted']} / {stats['refused']}")
        print(f"  driver-agent killed and restarted:         {stats['agent_restarts']} "
              f"(status updates sent again: {stats['status_retries']})")
        print(f"  further operations (member add, delete):   {stats['operations']}")
        print(f"  LoxiLB requests through the fault proxy:   {proxy.requests}")
        print(f"  faults injected ({FAULT_PERCENT:g} %):                 "
              f"{sum(proxy.faults.values())} ({', '.join(f'{k} {v}' for k, v in proxy.faults.items())})")
        print(f"  malformed provider-socket messages:        {sum(tried.values())} "
              f"({len(tried)} kinds), accepted: {accepted_bad}")
        print(f"  objects lost:                              {len(stats['lost'])}")
        print(f"  objects left PENDING:                      {len(pending)}")
        for line in stats["lost"][:20]:
            print(f"    lost: {line}")
        failed = bool(stats["lost"]) or bool(pending) or accepted_bad > 0
    finally:
        if failed:
            print(env.logs())
        env.down(keep=failed or bool(os.environ.get("KEEP_LOGS")))
        proxy.shutdown()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
