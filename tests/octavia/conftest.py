"""The real-Octavia end-to-end environment, built once per session: a fresh MariaDB database with
Octavia's schema, the LoxiLB simulator, the real `octavia-driver-agent`, `loxilb-octavia serve` and the
real Octavia API (its WSGI application under gunicorn, with this checkout's provider installed in the
same venv), all reading one octavia.conf. Everything is torn down at the end, even on failure.

Run it with the venv's interpreter (`make test-octavia` builds `.venv-octavia`)."""
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pymysql
import pytest
import requests

from octavialib import HOST_BIN, PENDING, POLICY, SIM_BIN, Api, LoxiLB, after_delete, wait_for

VENV_BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))
DB = dict(host="127.0.0.1", port=3306, user="root", password="")
# Octavia's tables that carry a provisioning status.
STATUS_TABLES = ("load_balancer", "listener", "pool", "member", "health_monitor", "l7policy", "l7rule")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connects(path):
    """True when a Unix socket accepts connections (a stale file left by a killed process does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def agent_answers(path, request):
    """True when a driver-agent socket answers `request`. Never just connect and close: the agent's
    forked handler reads its length header byte by byte and does not notice the end of the
    connection, so it would spin at 100% CPU for as long as the agent runs (3 such processes, one per
    socket, used to take most of this 2-CPU machine from every test and bench of a session)."""
    body = json.dumps(request).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"%d\n" % len(body) + body)
            with s.makefile("rb") as reply:
                size = int(reply.readline(32))
                return len(reply.read(size)) == size
    except (OSError, ValueError):
        return False


# A request each driver-agent socket answers without changing anything.
AGENT_PROBES = ({}, {"listeners": []}, {"object": "loadbalancers", "id": "readiness-probe"})


def mariadb_up():
    try:
        pymysql.connect(connect_timeout=2, **DB).close()
        return True
    except pymysql.err.OperationalError:
        return False


def ensure_mariadb():
    """This machine kind runs MariaDB; start it when it is down (as the machine's own script does)."""
    if not mariadb_up():
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background",
                        "--exec", "/usr/sbin/mariadbd"], check=False, timeout=30)
        wait_for(mariadb_up, 60, "MariaDB to accept connections on 127.0.0.1:3306")


class Proc:
    """A service process in its own process group, logging to a file in the work directory."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def check(self):
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def kill(self):
        # The whole group: the driver-agent's listeners and gunicorn's workers are children.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()

    def tail(self, chars=4000):
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode(errors="replace")


class Environment:
    # The suite's delete race needs reconciliation running while deletes land; the bench measures
    # with the production default (60 s) instead, since every pass reads each load balancer's tree
    # from the get socket (a forked driver-agent process each) and takes CPU from what is measured.
    def __init__(self, reconcile_interval="0.2", loxilb_front=None, driver_loxilb=None,
                 db_parameters=None, instant_provider=False):
        self.reconcile_interval = reconcile_interval
        # The bench's `instant` provider beside loxilb and noop_driver (instant_provider.py).
        self.instant_provider = instant_provider
        # oslo.db's [database] connection_parameters for every Octavia process (benches only: see the
        # README's Troubleshooting, on what a status document costs the driver-agent).
        self.db_parameters = db_parameters
        # What the host is told LoxiLB's URL is (a fault-injecting proxy in front of the simulator), and
        # further [driver_loxilb] keys.
        self.loxilb_front = loxilb_front
        self.driver_loxilb = driver_loxilb or {}
        # Short: AF_UNIX paths are limited to 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="oe", dir="/tmp")
        self.db_name = f"octavia_e2e_{uuid.uuid4().hex[:12]}"
        self.procs = {}
        self.sim_port = free_port()
        self.api_port = free_port()
        self.host_http_port = free_port()
        self.loxilb = LoxiLB(f"http://127.0.0.1:{self.sim_port}")
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.conf = os.path.join(self.dir, "octavia.conf")
        self.host_socket = os.path.join(self.dir, "host.sock")
        self.agent_sockets = [os.path.join(self.dir, f"{n}.sock") for n in ("status", "stats", "get")]

    def write_conf(self):
        d = self.dir
        sections = {
            "DEFAULT": {"debug": "false"},
            "database": {"connection": f"mysql+pymysql://root@127.0.0.1:3306/{self.db_name}"},
            "api_settings": {"bind_host": "127.0.0.1", "bind_port": self.api_port,
                             "auth_strategy": "noauth",
                             "enabled_provider_drivers":
                                 "loxilb:LoxiLB provider,noop_driver:The no-op driver"
                                 + (",instant:Reports only" if self.instant_provider else ""),
                             "default_provider_driver": "loxilb"},
            # The API asks its network driver about subnets and allocates the VIP port through it.
            "controller_worker": {"network_driver": "network_noop_driver"},
            "driver_agent": {"status_socket_path": self.agent_sockets[0],
                             "stats_socket_path": self.agent_sockets[1],
                             "get_socket_path": self.agent_sockets[2],
                             "enabled_provider_agents": ""},
            "driver_loxilb": {"api_endpoints": self.loxilb_front or self.loxilb.url,
                              "transport": "unix",
                              "socket_path": self.host_socket,
                              "admin_socket_path": f"{d}/admin.sock",
                              "mapping_storage_path": f"{d}/mappings.json",
                              "validate_timeout": "10",
                              # The host's /metrics (the bench prints some of them).
                              "http_listen": f"127.0.0.1:{self.host_http_port}"},
        }
        if self.reconcile_interval is not None:
            sections["driver_loxilb"]["reconcile_interval"] = self.reconcile_interval
        if self.db_parameters:
            sections["database"]["connection_parameters"] = self.db_parameters
        sections["driver_loxilb"].update(self.driver_loxilb)
        with open(self.conf, "w") as f:
            for group, values in sections.items():
                f.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n")

    def create_database(self):
        ensure_mariadb()
        with pymysql.connect(**DB) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.db_name} CHARACTER SET utf8mb4")
        out = subprocess.run([os.path.join(VENV_BIN, "octavia-db-manage"), "--config-file", self.conf,
                              "upgrade", "head"], capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            pytest.fail(f"octavia-db-manage upgrade head failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")

    def drop_database(self):
        with pymysql.connect(**DB) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {self.db_name}")

    def query(self, sql, *args):
        with pymysql.connect(database=self.db_name, **DB) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def pending(self, project=None):
        """[(table, id, status)] of every object Octavia's database holds in PENDING_*."""
        out = []
        for table in STATUS_TABLES:
            sql = f"SELECT id, provisioning_status FROM {table} WHERE provisioning_status IN %s"
            args = [PENDING]
            if project:
                sql += " AND project_id = %s"
                args.append(project)
            out += [(table, *row) for row in self.query(sql, *args)]
        return out

    def start(self, name, argv, env=None):
        self.procs[name] = Proc(name, argv, self.dir, env)
        return self.procs[name]

    def start_host(self):
        env = dict(os.environ, LOXILB_LOG=os.environ.get("LOXILB_LOG", "info"), LOXILB_POLICY=POLICY)
        host = self.start("host", [HOST_BIN, "serve", "--config", self.conf], env)

        def ready():
            host.check()
            return connects(self.host_socket)

        wait_for(ready, 30, f"loxilb-octavia serving on {self.host_socket}")

    def kill_host(self):
        """kill -9 of the host alone (its log stays, the next host appends to it)."""
        host = self.procs.pop("host")
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait(10)
        host._log.close()

    def up(self):
        self.write_conf()
        self.create_database()
        sim = self.start("loxilb-sim", [SIM_BIN, "--listen", f"127.0.0.1:{self.sim_port}"])
        # The two Python services import for seconds: they start together.
        self.start_agent(wait=False)
        api_env = dict(os.environ, OCTAVIA_E2E_CONF=self.conf)
        if self.instant_provider:
            api_env["PYTHONPATH"] = os.pathsep.join([self.register_instant_provider(), HERE])
        # gunicorn closes an idle keep-alive connection after 2 s by default, and the client reusing it at
        # that moment gets a reset (a test that waited 2 s between two requests failed so): longer than any
        # wait of the suite.
        api = self.start("octavia-api", [
            os.path.join(VENV_BIN, "gunicorn"), "--chdir", HERE, "--bind", f"127.0.0.1:{self.api_port}",
            "--workers", "2", "--threads", "4", "--timeout", "120", "--keep-alive", "75", "octavia_wsgi:application"], api_env)

        def answers(proc, url):
            proc.check()
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(lambda: answers(sim, f"{self.loxilb.url}/netlox/v1/config/loadbalancer/all"), 20,
                 f"loxilb-sim on port {self.sim_port}")

        self.wait_agent()
        self.start_host()
        wait_for(lambda: answers(api, f"{self.api_url}/"), 90, f"octavia-api (gunicorn) on {self.api_url}")

    def start_agent(self, wait=True):
        self.start("driver-agent", [os.path.join(VENV_BIN, "octavia-driver-agent"), "--config-file", self.conf])
        if wait:
            self.wait_agent()

    def wait_agent(self):
        agent = self.procs["driver-agent"]

        def agent_ready():
            agent.check()
            return all(agent_answers(p, probe) for p, probe in zip(self.agent_sockets, AGENT_PROBES))

        wait_for(agent_ready, 90, f"octavia-driver-agent's sockets {self.agent_sockets}")

    def kill_agent(self):
        """kill -9 of octavia-driver-agent and its listeners (its socket files stay, answering nothing)."""
        self.procs.pop("driver-agent").kill()

    def register_instant_provider(self):
        """A directory with the entry point Octavia finds the `instant` provider by (stevedore reads
        installed distributions' metadata): nothing is installed into the venv."""
        where = os.path.join(self.dir, "providers")
        dist = os.path.join(where, "octavia_bench_instant-0.dist-info")
        os.makedirs(dist, exist_ok=True)
        with open(os.path.join(dist, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: octavia-bench-instant\nVersion: 0\n")
        with open(os.path.join(dist, "entry_points.txt"), "w") as f:
            f.write("[octavia.api.drivers]\ninstant = instant_provider:InstantProviderDriver\n")
        return where

    def host_metrics(self, *names):
        """{name: value} of the host's /metrics lines whose metric name ends with one of `names`."""
        text = requests.get(f"http://127.0.0.1:{self.host_http_port}/metrics", timeout=5).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and " " in line:
                key, value = line.rsplit(" ", 1)
                if any(n in key.split("{")[0] for n in names):
                    out[key] = value
        return out

    def logs(self, chars=4000):
        return "\n".join(f"--- {name} (pid {p.pid}), {p.log_path}\n{p.tail(chars)}"
                         for name, p in self.procs.items())

    def down(self, keep):
        for p in reversed(list(self.procs.values())):
            p.kill()
        self.procs.clear()
        try:
            self.drop_database()
        except pymysql.err.MySQLError as err:  # cleanup only: say so, do not hide the run's result
            print(f"could not drop database {self.db_name}: {err}")
        if keep:
            print(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def env(request):
    for path, how in [(HOST_BIN, "cargo build -p host -p loxilb-sim"),
                      (SIM_BIN, "cargo build -p host -p loxilb-sim"), (POLICY, "cargo guest")]:
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: run `{how}` first")
    e = Environment()
    try:
        e.up()
        yield e
    except BaseException:
        print(e.logs())
        raise
    finally:
        failed = request.session.testsfailed > 0
        if failed:
            print(e.logs())
        e.down(keep=failed)


_vips = itertools.count(10)


class Tenant(Api):
    """One test's project: its load balancers and VIPs, so a test's end state is checked on its own."""

    def __init__(self, env, name):
        # Octavia limits project ids to 36 characters.
        super().__init__(env.api_url, f"e2e-{name[5:27]}-{uuid.uuid4().hex[:8]}")
        self.env = env
        self.vips = []
        self.lbs = []

    def vip4(self):
        vip = f"192.0.2.{next(_vips)}"
        self.vips.append(vip)
        return vip

    def vip6(self):
        vip = f"2001:db8::{next(_vips):x}"
        self.vips.append(vip)
        return vip

    def loadbalancer(self, vip=None, **body):
        """Creates a load balancer on a fresh VIP (or `vip`) and waits until it is ACTIVE."""
        body = {"vip_subnet_id": self.subnet, "vip_address": vip or self.vip4(),
                "project_id": self.project, **body}
        lb = self.create("loadbalancers", body)
        self.lbs.append(lb["id"])
        return lb

    def assert_clean(self, timeout=10):
        """The end state of a test: nothing of its project PENDING in Octavia's database, no load
        balancer left, and LoxiLB without a rule on any of its VIPs."""
        pending = self.env.pending(self.project)
        assert not pending, f"objects left PENDING_*: {pending}"
        left = [row[0] for row in self.env.query(
            "SELECT id FROM load_balancer WHERE project_id = %s AND provisioning_status != 'DELETED'",
            self.project)]
        assert not left, f"load balancers left: {left}"
        after_delete(lambda: wait_for(
            lambda: not set(self.vips) & set(self.env.loxilb.vips()), timeout,
            lambda: f"LoxiLB to have no rule on {self.vips} (has {self.env.loxilb.vips()})"))

    def cleanup(self):
        """After the test, pass or fail: cascade-deletes what it left (best effort, bounded)."""
        for lb_id in self.lbs:
            try:
                lb = self.get("loadbalancers", lb_id)
                if lb is None:
                    continue
                if lb["provisioning_status"] in PENDING:
                    wait_for(lambda: (self.get("loadbalancers", lb_id) or {}).get(
                        "provisioning_status") not in PENDING, 30, f"load balancer {lb_id} to settle")
                self.delete("loadbalancers", lb_id, cascade=True, expect=None)
                self.gone("loadbalancers", lb_id)
            except BaseException as err:  # report, go on with the others
                print(f"cleanup of load balancer {lb_id}: {err}")


@pytest.fixture
def api(env, request):
    tenant = Tenant(env, request.node.name)
    yield tenant
    tenant.cleanup()


@pytest.fixture
def loxilb(env):
    return env.loxilb
