"""The single-node default: octavia-lib data models → the real provider driver → the Unix socket →
`loxilb-octavia serve` (transport = unix) → the LoxiLB simulator, statuses to a fake driver-agent.
An accepted operation survives a crash of the host before it was applied (the durable inbox)."""
import json
import signal
import socket
import subprocess
import urllib.error
import urllib.request
import time

import pytest
from oslo_config import cfg

from octavia_loxilb_provider import driver, resolve, transport

from bridgelib import HOST_BIN, wait_for
from conftest import Host
from test_amqp_bridge import keys, loadbalancer, provisioning


@pytest.fixture
def stats_interval():
    return 0  # no operating-status pushes between the lifecycle documents these tests count


@pytest.fixture
def extra_conf():
    return ""  # further [driver_loxilb] lines, for tests that parametrize it


@pytest.fixture
def unix_host(sim, octavia, sock_dir, work_dir, stats_interval, extra_conf):
    socket_path = f"{sock_dir}/host.sock"
    conf = f"{work_dir}/host.conf"
    with open(conf, "w") as f:
        f.write(f"[driver_agent]\nstatus_socket_path = {octavia.status_path}\nstats_socket_path = {octavia.stats_path}\n"
                f"get_socket_path = {octavia.get_path}\n"
                f"[driver_loxilb]\ntransport = unix\nsocket_path = {socket_path}\napi_endpoints = {sim.url}\n"
                f"mapping_storage_path = {work_dir}/mappings.json\nadmin_socket_path = {sock_dir}/admin.sock\n"
                f"commit_wait_timeout = 30\nstats_interval = {stats_interval}\n{extra_conf}")
    api_conf = f"{work_dir}/octavia-api.conf"
    with open(api_conf, "w") as f:
        f.write(f"[driver_agent]\nget_socket_path = {octavia.get_path}\n"
                f"[driver_loxilb]\ntransport = unix\nsocket_path = {socket_path}\nvalidate_timeout = 10\n")
    cfg.CONF(args=[], project="octavia", default_config_files=[api_conf])
    hosts = []

    def start():
        host = Host(f"unix-{len(hosts)}", conf, f"{work_dir}/host-{len(hosts)}.log")
        hosts.append(host)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                transport.unix_request(socket_path, {"type": "call", "method": "get_supported_flavor_metadata", "args": {}}, 1)
                return host
            except Exception:
                time.sleep(0.1)
        pytest.fail(f"the host did not listen on {socket_path}:\n{host.log()}")

    yield start
    transport.reset()
    resolve.reset()
    cfg.CONF.reset()
    for host in hosts:
        host.kill()


def test_accepted_operation_survives_a_host_crash(unix_host, octavia, sim):
    host = unix_host()
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.30"
    lb = loadbalancer(vip, ["10.0.9.1", "10.0.9.2"])
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    drv.loadbalancer_create(lb)  # accepted: the provider returned
    # Octavia's transaction commits late; the host is killed while it waits to apply.
    octavia.commit(lb, hide_for=3.0)
    time.sleep(0.5)
    host.kill()
    assert sim.rules() == {} and octavia.documents() == []
    unix_host()
    [created] = octavia.wait_documents(1, timeout=30)
    assert set(provisioning(created).values()) == {"ACTIVE"}
    assert set(provisioning(created)) == set(keys(lb))
    assert sim.endpoints(vip) == {"10.0.9.1": 1, "10.0.9.2": 1}
    assert octavia.pending() == {}


def test_a_restart_serves_before_reading_back_every_load_balancer(unix_host, octavia, sim):
    # After a start the host reads every mapped load balancer back from Octavia's get socket (where the
    # real driver-agent forks a process per read): that pass runs while operations are served.
    host = unix_host()
    drv = driver.LoxiLBProviderDriver()
    lbs = [loadbalancer(f"192.0.2.{50 + i}", [f"10.0.9.{50 + i}"]) for i in range(3)]
    for lb in lbs:
        octavia.set_pending("PENDING_CREATE", *keys(lb))
        drv.loadbalancer_create(lb)
        octavia.commit(lb)
    wait_for(lambda: octavia.pending() == {}, 15, "the load balancers to be ACTIVE")
    host.kill()
    octavia.get_delay = 2.0
    started = time.monotonic()
    unix_host()
    took = time.monotonic() - started
    assert took < 4, f"the provider socket answered {took:.1f} s after the start: it waited for the read-back"
    assert all(sim.endpoints(f"192.0.2.{50 + i}") == {f"10.0.9.{50 + i}": 1} for i in range(3))


def test_a_late_commit_holds_up_only_its_own_load_balancer(unix_host, octavia, sim):
    unix_host()
    drv = driver.LoxiLBProviderDriver()
    slow = loadbalancer("192.0.2.31", ["10.0.9.11"])
    # Each load balancer has an apply queue of its own (host/src/lanes.rs): any two will do.
    fast = loadbalancer("192.0.2.32", ["10.0.9.12"])
    octavia.set_pending("PENDING_CREATE", *keys(slow), *keys(fast))
    drv.loadbalancer_create(slow)
    octavia.commit(slow, hide_for=4.0)
    drv.loadbalancer_create(fast)
    octavia.commit(fast)
    [first] = octavia.wait_documents(1, timeout=10)
    assert ("loadbalancers", fast.loadbalancer_id) in provisioning(first), "the fast load balancer waited for the slow one"
    assert sim.endpoints("192.0.2.32") == {"10.0.9.12": 1} and sim.endpoints("192.0.2.31") == {}
    second = octavia.wait_documents(2, timeout=15)[1]
    assert ("loadbalancers", slow.loadbalancer_id) in provisioning(second)
    assert octavia.pending() == {}


@pytest.mark.parametrize("stats_interval", [1])
def test_operating_status_and_statistics_are_pushed(unix_host, octavia, sim, stats_interval):
    unix_host()
    drv = driver.LoxiLBProviderDriver()
    lb = loadbalancer("192.0.2.33", ["10.0.9.21"])
    listener, _pool = lb.listeners[0], lb.pools[0]
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1, timeout=10)
    # The host then pushes operating statuses (no provisioning status) and listener counters.
    wait_for(lambda: any("provisioning_status" not in r for doc in octavia.documents(1)
                         for records in doc.values() for r in records), 15, "an operating-status push")
    health = [r for doc in octavia.documents(1) for r in doc.get("loadbalancers", [])]
    assert {"id": lb.loadbalancer_id, "operating_status": "ONLINE"} in health
    wait_for(lambda: octavia.stats, 15, "a statistics push")
    [record] = [r for doc in octavia.stats for r in doc["listeners"]][:1]
    assert record["id"] == listener.listener_id
    assert set(record) == {"id", "active_connections", "bytes_in", "bytes_out", "request_errors", "total_connections"}


def create_and_wait(octavia, vip, members):
    """A load balancer created through the provider, committed, and its first statuses reported."""
    lb = loadbalancer(vip, members)
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    driver.LoxiLBProviderDriver().loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1, timeout=10)
    return lb


def test_sigterm_finishes_syncs_and_exits_cleanly(unix_host, octavia, sim):
    host = unix_host()
    create_and_wait(octavia, "192.0.2.34", ["10.0.9.31"])
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(15) == 0, host.log()
    assert "mapping journal synced; stopped" in host.log()
    # Started again, it holds the mapping and has nothing left to apply.
    unix_host()
    assert sim.endpoints("192.0.2.34") == {"10.0.9.31": 1}
    assert octavia.pending() == {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTTP_PORT = free_port()


@pytest.mark.parametrize("extra_conf", [f"http_listen = 127.0.0.1:{HTTP_PORT}\n"])
def test_metrics_health_and_readiness_over_http(unix_host, octavia, sim, extra_conf, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    host = unix_host()
    create_and_wait(octavia, "192.0.2.35", ["10.0.9.41"])
    base = f"http://127.0.0.1:{HTTP_PORT}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
        assert r.status == 200
        health = json.load(r)
    assert health["status"] == "ok", health
    assert [n["node"] for n in health["loxilb_nodes"]] == [sim.url], health
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as r:
        ready = json.load(r)
    assert ready["ready"] is True, ready
    assert {"policy", "storage", "loxilb", "octavia_get_socket", "octavia_status_socket"} <= set(ready["checks"])
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    assert "loxilb_octavia_storage_writes_total" in text
    assert 'loxilb_octavia_operations_total{method="loadbalancer_create",result="ok"} 1' in text
    # One INFO line per applied operation, with its ids, duration and result.
    [line] = [l for l in host.log().splitlines() if "operation" in l and "method=\"loadbalancer_create\"" in l]
    assert " INFO " in line and "result=\"ok\"" in line and "took_ms=" in line, line
    assert text.rstrip().endswith("# EOF")
    # LoxiLB gone: not ready, and the answer says why.
    sim.stop()
    try:
        urllib.request.urlopen(f"{base}/readyz", timeout=30)
        pytest.fail("ready while LoxiLB is down")
    except urllib.error.HTTPError as e:
        assert e.code == 503
        assert json.load(e)["checks"]["loxilb"]["ok"] is False
    # stderr is a file here, NO_COLOR unset: no colour escapes.
    assert "\x1b[" not in host.log()


def test_a_second_host_on_the_same_mapping_exits_naming_the_first(unix_host, work_dir):
    first = unix_host()
    second = Host("unix-second", f"{work_dir}/host.conf", f"{work_dir}/host-second.log")
    assert second.proc.wait(30) != 0, second.log()
    assert f"pid {first.pid}" in second.log(), second.log()
    # force-recovery would rewrite the mapping under the running host: refused the same way.
    done = subprocess.run([HOST_BIN, "force-recovery", "--config", f"{work_dir}/host.conf"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert f"pid {first.pid}" in done.stderr or "a host is running" in done.stderr, done.stderr
    assert first.proc.poll() is None
    first_log = first.log()
    assert "serving on" in first_log, first_log
