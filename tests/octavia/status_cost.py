"""Benchmark (not a test): what one status document costs Octavia's driver-agent, by how the same
statuses are split into documents (`make bench-octavia-status`).

It creates graphs (load balancer, listener, pool, member) with Octavia's `noop_driver`, so nothing else
reports their statuses, and sends ACTIVE for them straight to the driver-agent's status socket, as the
host does: all in one document, one document per graph one at a time, two at a time and from four
senders (the host's), and four documents of a quarter each from four senders. The driver-agent forks a process
and opens a database session per document, then commits each record on its own; the figures show what
is per document and what is per record, which is what bounds a burst's rate to ACTIVE."""
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conftest import Environment  # noqa: E402
from octavialib import Api, graph  # noqa: E402
# The provider's own framed request: the driver-agent's sockets frame requests and replies the same way.
from octavia_loxilb_provider.transport import unix_request  # noqa: E402

GRAPHS = int(os.environ.get("BENCH_GRAPHS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
SENDERS = 4  # the host's status senders (host/src/octavia/reporter.rs)


def document(graphs):
    doc = {"loadbalancers": [], "listeners": [], "pools": [], "members": []}
    active = {"provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
    for g in graphs:
        doc["loadbalancers"].append({"id": g["id"], **active})
        doc["listeners"] += [{"id": li["id"], **active} for li in g["listeners"]]
        for p in g["pools"]:
            doc["pools"].append({"id": p["id"], **active})
            doc["members"] += [{"id": m["id"], **active} for m in p.get("members", [])]
    return doc


def main():
    env = Environment(reconcile_interval=None, db_parameters=os.environ.get("BENCH_DB_PARAMETERS"))
    failed = True
    try:
        env.up()
        api = Api(env.api_url, "bench-status")
        vips = (f"10.{a}.{b}.1" for a in range(1, 200) for b in range(0, 250))

        def noop_graph():
            return api.create("loadbalancers", graph(api, next(vips), "198.51.100.200", provider="noop_driver"))

        shapes = [  # (name, graphs per document, documents in flight at once)
            (f"1 document of {GRAPHS} graphs", GRAPHS, 1),
            (f"{GRAPHS} documents of 1 graph, 1 at a time", 1, 1),
            (f"{GRAPHS} documents of 1 graph, 2 at a time", 1, 2),
            (f"{GRAPHS} documents of 1 graph, {SENDERS} at a time", 1, SENDERS),
            (f"{SENDERS} documents of {GRAPHS // SENDERS} graphs, {SENDERS} at a time", GRAPHS // SENDERS, SENDERS),
        ]
        print(f"# ACTIVE for {GRAPHS} graphs (4 records each) straight to the driver-agent's status socket; "
              f"[database] connection_parameters {env.db_parameters or 'unset'}; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        for _ in range(ROUNDS):
            for name, per_document, at_once in shapes:
                graphs = [noop_graph() for _ in range(GRAPHS)]
                documents = [document(graphs[i:i + per_document]) for i in range(0, GRAPHS, per_document)]
                t0 = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(at_once) as ex:
                    answers = list(ex.map(lambda d: unix_request(env.agent_sockets[0], d, 60), documents))
                took = time.monotonic() - t0
                wrong = [a for a in answers if a.get("status_code") != 200]
                if wrong:
                    raise AssertionError(f"the driver-agent refused a document: {wrong[0]}")
                print(f"  {name:44s} {took * 1000:7.0f} ms  ({took * 1000 / len(documents):5.0f} ms per document)",
                      flush=True)
        failed = False
    finally:
        env.down(keep=failed)


if __name__ == "__main__":
    main()
