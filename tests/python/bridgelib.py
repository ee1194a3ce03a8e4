"""Constants and helpers shared by the bridge tests and their fixtures (a module of its own: test
files cannot import `conftest` reliably when several test folders each have one)."""
import os
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HOST_BIN = os.environ.get("LOXILB_OCTAVIA_BIN", os.path.join(REPO, "target/debug/loxilb-octavia"))
SIM_BIN = os.environ.get("LOXILB_SIM_BIN", os.path.join(REPO, "target/debug/loxilb-sim"))
POLICY = os.environ.get("LOXILB_POLICY",
                        os.path.join(REPO, "target/wasm32-unknown-unknown/guest/guest.wasm"))
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"
SHARDS = 8

PENDING = ("PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE")


def wait_for(predicate, timeout, what):
    """Polls until predicate() is truthy and returns its value; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
