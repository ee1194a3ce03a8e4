"""The host reaches RabbitMQ over TLS as oslo.messaging does: `?ssl=1` in transport_url and the
[oslo_messaging_rabbit] ssl keys. A TLS front the test starts itself (a private CA it generates, with
client certificates required) stands before the machine's RabbitMQ; the provider talks to RabbitMQ
directly, so every operation the host applies crossed the TLS connection."""
import os
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from octavia_loxilb_provider import driver

from bridgelib import wait_for
from conftest import Host
from test_amqp_bridge import loadbalancer


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)
    return os.path.join(directory, f"{name}.pem")


def issue(directory, ca, name, san):
    """A certificate for `name` signed by `ca`; returns (cert, key) paths."""
    with open(os.path.join(directory, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName = {san}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory)
    return os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")


class TlsFront:
    """Terminates TLS (client certificate required) and forwards to RabbitMQ on 127.0.0.1:5672."""

    def __init__(self, cert, key, client_ca):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.load_verify_locations(client_ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.failures = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            tls = self.context.wrap_socket(conn, server_side=True)
            tls.settimeout(None)
            self.handshakes += 1
        except (ssl.SSLError, OSError) as e:
            self.failures.append(str(e))
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", 5672), timeout=10)
        upstream.settimeout(None)
        try:
            while not self.closed:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 1)[0]
                for side in ready:
                    data = side.recv(65536)
                    if not data:
                        return
                    (upstream if side is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            tls.close()
            upstream.close()

    def close(self):
        self.closed = True
        self.listener.close()


@pytest.fixture
def pki(tmp_path):
    d = str(tmp_path)
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    server = issue(d, "ca", "rabbit", "DNS:localhost,IP:127.0.0.1")
    client = issue(d, "ca", "host", "DNS:loxilb-octavia")
    return {"dir": d, "ca": os.path.join(d, "ca.pem"), "other_ca": os.path.join(d, "other-ca.pem"),
            "server": server, "client": client}


@pytest.fixture
def front(pki):
    f = TlsFront(*pki["server"], pki["ca"])
    yield f
    f.close()


def start_tls_host(bridge, name, url, rabbit_section):
    path = bridge.conf(name)
    with open(path) as f:
        text = f.read()
    text = "\n".join(f"transport_url = {url}" if line.startswith("transport_url") else line
                     for line in text.splitlines())
    with open(path, "w") as f:
        f.write(text + "\n[oslo_messaging_rabbit]\n" + "".join(f"{k} = {v}\n" for k, v in rabbit_section.items()))
    host = Host(name, path, f"{bridge.work_dir}/{name}.log")
    bridge.hosts.append(host)
    return host


def test_the_host_applies_operations_over_tls_with_a_client_certificate(bridge, octavia, sim, pki, front):
    cert, key = pki["client"]
    # ssl=1 in the URL, the files in the section: oslo reads both, the URL's query overriding by name.
    start_tls_host(bridge, "tls", f"rabbit://guest:guest@localhost:{front.port}/?ssl=1",
                   {"ssl_ca_file": pki["ca"], "ssl_cert_file": cert, "ssl_key_file": key})
    bridge.wait_consumers(1)
    assert front.handshakes >= 1 and front.failures == []
    drv = driver.LoxiLBProviderDriver()
    lb = loadbalancer("192.0.2.41", ["10.0.41.1"])
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1)
    assert sim.endpoints("192.0.2.41") == {"10.0.41.1": 1}


def test_a_broker_certificate_from_another_ca_is_refused_with_a_clear_error(bridge, pki, front):
    cert, key = pki["client"]
    host = start_tls_host(bridge, "wrong-ca", f"rabbit://guest:guest@localhost:{front.port}/",
                          {"ssl": "true", "ssl_ca_file": pki["other_ca"], "ssl_cert_file": cert,
                           "ssl_key_file": key})
    wait_for(lambda: "certificate" in host.log().lower() or "UnknownIssuer" in host.log(), 30,
             "the host to report the broker's certificate")
    time.sleep(1)
    assert bridge.queues.consumers(bridge.topic) == 0
    assert host.proc.poll() is None, "an unreachable broker is retried, not fatal"


def test_a_missing_ca_file_stops_the_start_naming_it(bridge, pki):
    host = start_tls_host(bridge, "no-ca", "rabbit://guest:guest@localhost:5672/?ssl=1&ssl_ca_file=/nonexistent/ca.pem", {})
    assert host.proc.wait(30) != 0
    assert "ssl_ca_file /nonexistent/ca.pem" in host.log()
