"""Fixtures for the end-to-end tests of the amqp bridge: RabbitMQ on 127.0.0.1:5672, the LoxiLB
simulator and `loxilb-octavia serve` as real processes, a fake Octavia (its driver-agent sockets and
the rows they read and write), and the real provider driver configured as octavia-api would be."""
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid

import kombu
import oslo_messaging
import pytest
from oslo_config import cfg

from octavia_loxilb_provider import resolve
from octavia_loxilb_provider import transport

from bridgelib import (BROKER, HOST_BIN, PENDING, POLICY, SHARDS, SIM_BIN, TRANSPORT_URL,
                       wait_for)

# What octavia/common/config.py does when octavia-api imports it, and the option it registers.
oslo_messaging.set_transport_defaults(control_exchange="octavia")
cfg.CONF.register_opts([cfg.StrOpt("get_socket_path", default="/var/run/octavia/get.sock")],
                       group="driver_agent")


@pytest.fixture(scope="session", autouse=True)
def built():
    """The binaries and the policy these tests run; they are built, not skipped."""
    for path, how in [(HOST_BIN, "cargo build -p host -p loxilb-sim"),
                      (SIM_BIN, "cargo build -p host -p loxilb-sim"),
                      (POLICY, "cargo guest")]:
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: run `{how}` first")


# --- RabbitMQ ---------------------------------------------------------------------------------

def _broker_up():
    try:
        with kombu.Connection(BROKER, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def broker():
    """A reachable RabbitMQ; started (`rabbitmq-server -detached`) when it is down, never skipped."""
    if not _broker_up():
        subprocess.run(["rabbitmq-server", "-detached"], check=False, timeout=30)
        wait_for(_broker_up, 90, "RabbitMQ to accept connections on 127.0.0.1:5672")
    conn = kombu.Connection(BROKER)
    yield conn
    conn.release()


class Queues:
    """Passive looks at queues (a 404 closes the channel, so each look gets a fresh one)."""

    def __init__(self, conn):
        self.conn = conn

    def consumers(self, name):
        try:
            with self.conn.channel() as channel:
                return channel.queue_declare(queue=name, passive=True).consumer_count
        except Exception:
            return 0

    def delete(self, *names):
        for name in names:
            try:
                with self.conn.channel() as channel:
                    channel.queue_delete(queue=name)
            except Exception as err:  # cleanup only: say so, do not fail the test for it
                print(f"could not delete queue {name}: {err}")


# --- LoxiLB simulator ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Simulator:
    def __init__(self, log_dir):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(os.path.join(log_dir, "loxilb-sim.log"), "wb")
        self.proc = subprocess.Popen([SIM_BIN, "--listen", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        wait_for(self._answers, 20, f"loxilb-sim on port {port}")

    def _answers(self):
        try:
            self.rules()
            return True
        except OSError:
            return False

    def rules(self):
        """LoxiLB's rules, keyed by VIP: {vip: [rule, ...]}."""
        with urllib.request.urlopen(f"{self.url}/netlox/v1/config/loadbalancer/all", timeout=5) as r:
            body = json.load(r)
        out = {}
        for rule in body.get("lbAttr") or []:
            out.setdefault(rule["serviceArguments"]["externalIP"], []).append(rule)
        return out

    def endpoints(self, vip):
        """{endpoint ip: weight} of the one rule on `vip` ({} when there is none)."""
        rules = self.rules().get(vip, [])
        assert len(rules) <= 1, f"more than one rule on {vip}: {rules}"
        return {e["endpointIP"]: e["weight"] for r in rules for e in r.get("endpoints") or []}

    def restart(self):
        """Stops LoxiLB and starts it again on the same port, with no rules (as LoxiLB restarts)."""
        self.proc.kill()
        self.proc.wait(5)
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen([SIM_BIN, "--listen", f"127.0.0.1:{port}"],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        wait_for(self._answers, 20, f"loxilb-sim again on port {port}")

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)
        self._log.close()


@pytest.fixture
def sim(work_dir):
    s = Simulator(work_dir)
    yield s
    s.stop()


# --- the fake Octavia: driver-agent sockets and the rows behind them -----------------------------

def peer_pid(sock):
    pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                          struct.calcsize("3i")))
    return pid


class FramedServer:
    """A driver-agent socket: one `<len>\\n<json>` request and reply per connection (PROVIDER-NOTES §3).
    `answer(request, pid)` gives the reply; pid is the sending process's."""

    def __init__(self, path, answer):
        self.path = path
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                size = int(self.rfile.readline(32))
                request = json.loads(self.rfile.read(size))
                body = json.dumps(answer(request, peer_pid(self.request))).encode()
                self.wfile.write(b"%d\n" % len(body) + body)

        self._server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def sa_commit():
    """Commits an empty SQLAlchemy session in this thread, as octavia-api's transaction ends."""
    if not transport.SQLALCHEMY:
        return
    import sqlalchemy
    from sqlalchemy import orm
    with orm.Session(sqlalchemy.create_engine("sqlite://")) as session:
        session.execute(sqlalchemy.text("select 1"))
        session.commit()


class FakeOctavia:
    """What the host sees of Octavia: the status, stats and get sockets of the driver-agent, over the
    rows a test commits. Status updates are recorded in arrival order (with the sender's pid) and
    written to the rows, as the driver-agent does."""

    def __init__(self, sock_dir):
        self.lock = threading.Lock()
        self.rows = {}            # (collection, id) -> dict, as the get socket returns it
        self.hidden_until = {}    # (collection, id) -> monotonic time before which get answers {}
        self.provisioning = {}    # (collection, id) -> provisioning status column
        self.statuses = []        # (pid, document, monotonic time), in arrival order
        self.stats = []
        self.get_delay = 0.0      # seconds each get-socket answer takes (a busy driver-agent)
        self.status_path = f"{sock_dir}/status.sock"
        self.stats_path = f"{sock_dir}/stats.sock"
        self.get_path = f"{sock_dir}/get.sock"
        self._servers = [FramedServer(self.status_path, self._on_status),
                         FramedServer(self.stats_path, self._on_stats),
                         FramedServer(self.get_path, self._on_get)]

    def _on_status(self, document, pid):
        with self.lock:
            self.statuses.append((pid, document, time.monotonic()))
            for collection, records in document.items():
                for record in records:
                    self._write_status(collection, record)
        return {"status_code": 200}

    def _write_status(self, collection, record):
        key = (collection, record["id"])
        status = record.get("provisioning_status")
        if status == "DELETED":
            # Children rows go with their parents (ORM cascade); the LB row is soft-deleted.
            self.rows.pop(key, None)
            self.provisioning[key] = "DELETED"
        elif status:
            self.provisioning[key] = status

    def _on_stats(self, document, pid):
        with self.lock:
            self.stats.append(document)
        return {"status_code": 200}

    def _on_get(self, request, pid):
        time.sleep(self.get_delay)
        key = (request.get("object"), request.get("id"))
        with self.lock:
            if time.monotonic() < self.hidden_until.get(key, 0):
                return {}
            return self.rows.get(key, {})

    def commit(self, lb, hide_for=0.0, hide=None):
        """Commits the rows of a load balancer graph (data models), as the API's transaction does
        after the driver returned. With hide_for, readers see the rows (or only the keys in `hide`)
        that many seconds later: a transaction that commits late."""
        rows = graph_rows(lb)
        with self.lock:
            until = time.monotonic() + hide_for
            for key, row in rows.items():
                if hide_for and (hide is None or key in hide):
                    self.hidden_until[key] = until
                self.rows[key] = row
        if not hide_for:
            # octavia-api's session commits in the thread that made the cast: the provider's commit
            # notice goes out now. A late commit sends none from here (the host falls back to reading).
            sa_commit()

    def set_pending(self, status, *keys):
        with self.lock:
            for key in keys:
                self.provisioning[key] = status

    def pending(self):
        with self.lock:
            return {k: v for k, v in self.provisioning.items() if v in PENDING}

    def documents(self, since=0):
        with self.lock:
            return [doc for _pid, doc, _t in self.statuses[since:]]

    def wait_documents(self, count, timeout=20):
        """The first `count` status documents, once they have arrived."""
        wait_for(lambda: len(self.statuses) >= count, timeout,
                 f"{count} status documents (have {len(self.statuses)}: {self.documents()})")
        return self.documents()[:count]

    def close(self):
        for s in self._servers:
            s.close()


def graph_rows(lb):
    """Every row the get socket serves for a load balancer graph, rendered as driver_get does
    (`to_dict(recurse=True, render_unsets=True)`)."""
    render = lambda obj: obj.to_dict(recurse=True, render_unsets=True)  # noqa: E731
    rows = {("loadbalancers", lb.loadbalancer_id): render(lb)}
    for listener in lb.listeners or []:
        rows[("listeners", listener.listener_id)] = render(listener)
    for pool in lb.pools or []:
        rows[("pools", pool.pool_id)] = render(pool)
        for member in pool.members or []:
            rows[("members", member.member_id)] = render(member)
    return rows


@pytest.fixture
def sock_dir():
    # Short: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="lxa", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def work_dir(tmp_path):
    return str(tmp_path)


@pytest.fixture
def octavia(sock_dir):
    fake = FakeOctavia(sock_dir)
    yield fake
    fake.close()


# --- loxilb-octavia hosts -------------------------------------------------------------------------

class Host:
    def __init__(self, name, conf_path, log_path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, LOXILB_LOG=os.environ.get("LOXILB_LOG", "info"), LOXILB_POLICY=POLICY)
        self.proc = subprocess.Popen([HOST_BIN, "serve", "--config", conf_path],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self):
        return self.proc.pid

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)
        self._log.close()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Bridge:
    """One test's topic: hosts serving it, and the provider driver configured for it."""

    def __init__(self, broker, sim, octavia, sock_dir, work_dir):
        self.topic = f"loxilb_octavia_it_{uuid.uuid4().hex[:10]}"
        self.queues = Queues(broker)
        self.sim = sim
        self.octavia = octavia
        self.sock_dir = sock_dir
        self.work_dir = work_dir
        self.hosts = []

    def shard_queues(self):
        return [f"{self.topic}.shard-{n}" for n in range(SHARDS)]

    def conf(self, name):
        sections = {
            "DEFAULT": {"transport_url": TRANSPORT_URL},
            "driver_agent": {"status_socket_path": self.octavia.status_path,
                             "stats_socket_path": self.octavia.stats_path,
                             "get_socket_path": self.octavia.get_path},
            "driver_loxilb": {"transport": "amqp", "rpc_topic": self.topic, "rpc_shards": SHARDS,
                              "api_endpoints": self.sim.url, "validate_timeout": 10,
                              "commit_wait_timeout": 20,
                              # Operating-status pushes would interleave with the lifecycle documents
                              # these tests count; test_unix_bridge covers them.
                              "stats_interval": 0,
                              "mapping_storage_path": f"{self.work_dir}/{name}-mappings.json",
                              "socket_path": f"{self.sock_dir}/{name}.sock",
                              "admin_socket_path": f"{self.sock_dir}/{name}-admin.sock"},
        }
        path = f"{self.work_dir}/{name}.conf"
        with open(path, "w") as f:
            for group, values in sections.items():
                f.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
        return path

    def start_hosts(self, *names):
        """Starts hosts at once and waits until each consumes the topic and every shard queue."""
        started = [Host(n, self.conf(n), f"{self.work_dir}/{n}.log") for n in names]
        self.hosts.extend(started)
        self.wait_consumers(len(self.hosts))
        return started

    def wait_consumers(self, count, timeout=30):
        def ready():
            for host in self.hosts:
                if host.proc.poll() is not None:
                    pytest.fail(f"host {host.name} exited ({host.proc.returncode}):\n{host.log()}")
            return all(self.queues.consumers(q) >= count
                       for q in [self.topic, *self.shard_queues()])
        wait_for(ready, timeout, f"{count} consumers on {self.topic} and its shard queues")

    def configure_provider(self):
        """The octavia.conf octavia-api would load, pointing the provider at this topic."""
        path = f"{self.work_dir}/octavia-api.conf"
        with open(path, "w") as f:
            f.write(f"[DEFAULT]\ntransport_url = {TRANSPORT_URL}\n"
                    f"[driver_agent]\nget_socket_path = {self.octavia.get_path}\n"
                    f"[driver_loxilb]\ntransport = amqp\nrpc_topic = {self.topic}\n"
                    f"rpc_shards = {SHARDS}\nvalidate_timeout = 10\n")
        cfg.CONF(args=[], project="octavia", default_config_files=[path])

    def logs(self):
        return "\n".join(f"--- {h.name} (pid {h.pid})\n{h.log()[-6000:]}" for h in self.hosts)

    def close(self):
        transport.reset()
        resolve.reset()
        cfg.CONF.reset()
        for host in self.hosts:
            host.kill()
        self.queues.delete(self.topic, *self.shard_queues())


@pytest.fixture
def bridge(request, broker, sim, octavia, sock_dir, work_dir):
    b = Bridge(broker, sim, octavia, sock_dir, work_dir)
    b.configure_provider()
    yield b
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(b.logs())
    b.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
