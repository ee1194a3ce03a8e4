"""Shared fixtures: a fake loxilb-octavia host and a fake driver-agent get socket, both serving
the `<len>\\n<json>` framing on Unix sockets, and a real oslo.config loaded from an octavia.conf."""
import json
import shutil
import socketserver
import tempfile
import threading

import pytest
from oslo_config import cfg

from octavia_loxilb_provider import resolve
from octavia_loxilb_provider import transport

# octavia-api registers this one (octavia/common/config.py); the tests play octavia-api.
cfg.CONF.register_opts([cfg.StrOpt("get_socket_path", default="/var/run/octavia/get.sock")],
                       group="driver_agent")


class FramedServer:
    """Serves one framed request per connection; `answer(request)` returns the reply, or None to
    close without replying. Every decoded request is kept in `requests`, in order."""

    def __init__(self, path, answer):
        self.path = path
        self.answer = answer
        self.requests = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                size = int(self.rfile.readline())
                request = json.loads(self.rfile.read(size))
                outer.requests.append(request)
                reply = outer.answer(request)
                if reply is not None:
                    body = json.dumps(reply).encode()
                    self.wfile.write(b"%d\n" % len(body) + body)

        self._server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def host_answer(request):
    """What a host that accepts everything answers."""
    return {"result": None}


@pytest.fixture
def sock_dir():
    # Short path: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path can be longer.
    path = tempfile.mkdtemp(prefix="lxp", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def octavia_conf(sock_dir):
    """load(sections) writes an octavia.conf and loads it into the global cfg.CONF, as octavia-api
    does; the package's caches are dropped after each test."""

    def load(sections):
        text = ""
        for group, values in sections.items():
            text += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        path = f"{sock_dir}/octavia.conf"
        with open(path, "w") as f:
            f.write(text)
        cfg.CONF(args=[], project="octavia", default_config_files=[path])

    yield load
    transport.reset()
    resolve.reset()
    cfg.CONF.reset()


@pytest.fixture
def fake_host(sock_dir):
    server = FramedServer(f"{sock_dir}/host.sock", host_answer)
    yield server
    server.close()


@pytest.fixture
def fake_get(sock_dir):
    """The driver-agent get socket; fill `objects[(kind, id)]` with what it should return."""
    objects = {}
    server = FramedServer(f"{sock_dir}/get.sock",
                          lambda req: objects.get((req["object"], req["id"]), {}))
    server.objects = objects
    yield server
    server.close()


@pytest.fixture
def unix_conf(octavia_conf, fake_host, fake_get):
    """Default (unix) transport pointed at the fake host and the fake get socket."""
    octavia_conf({
        "driver_loxilb": {"socket_path": fake_host.path, "validate_timeout": 2},
        "driver_agent": {"get_socket_path": fake_get.path},
    })
