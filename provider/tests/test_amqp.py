"""The amqp transport against the real RabbitMQ on 127.0.0.1:5672, with the real oslo.messaging
client on the driver side and raw kombu on the host side: what the Rust host will see on the wire,
and how its raw replies come back to the driver."""
import json
import socket
import threading
import time
import uuid

import kombu
import oslo_messaging
import pytest
from octavia_lib.api.drivers import data_models as dm
from octavia_lib.api.drivers import exceptions

from octavia_loxilb_provider import driver as driver_mod
from octavia_loxilb_provider import transport

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
EXCHANGE = kombu.Exchange("octavia", type="topic", durable=False, auto_delete=False)
SHARDS = 8
LB = "3f2b4a9e-5c1d-4e8f-9a7b-2c6d0e1f4a5b"  # shard 6 of 8
POOL = "b2f5d8e3-1c4a-4d6b-9f0e-2a3b4c5d6e7f"

# What octavia/common/config.py does when octavia-api imports it.
oslo_messaging.set_transport_defaults(control_exchange="octavia")


@pytest.fixture(scope="module")
def broker():
    conn = kombu.Connection(BROKER, connect_timeout=3)
    try:
        conn.ensure_connection(max_retries=1)
    except Exception as err:
        pytest.skip(f"RabbitMQ is not reachable on 127.0.0.1:5672 as guest/guest ({err}); "
                    "start it with `rabbitmq-server -detached`")
    yield conn
    conn.release()


def queue(name):
    return kombu.Queue(name, EXCHANGE, routing_key=name, durable=False, auto_delete=False)


class Responder:
    """A raw host: consumes the shared topic queue and answers each call with answer(inner)."""

    def __init__(self, topic, answer):
        self.answer = answer
        self.received = []
        self._stop = threading.Event()
        self._conn = kombu.Connection(BROKER)
        self._queue = queue(topic)(self._conn.channel())
        self._queue.declare()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        producer = kombu.Producer(self._conn.channel())
        with kombu.Consumer(self._conn, [self._queue], on_message=self._on_message):
            self._producer = producer
            while not self._stop.is_set():
                try:
                    self._conn.drain_events(timeout=0.1)
                except socket.timeout:
                    pass

    def _on_message(self, message):
        message.ack()
        inner = json.loads(json.loads(message.body)["oslo.message"])
        self.received.append(inner)
        result, failure = self.answer(inner)
        reply = {"result": result, "failure": failure, "ending": True, "_msg_id": inner["_msg_id"]}
        self._producer.publish(
            json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(reply)}),
            exchange="", routing_key=inner["_reply_q"], content_type="application/json",
            content_encoding="utf-8", delivery_mode=2)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._conn.release()


@pytest.fixture
def amqp(broker, octavia_conf):
    """transport = amqp on a topic of its own; returns (topic, responder factory)."""
    topic = f"loxilb_octavia_test_{uuid.uuid4().hex[:12]}"
    octavia_conf({
        "DEFAULT": {"transport_url": "rabbit://guest:guest@127.0.0.1:5672/"},
        "driver_loxilb": {"transport": "amqp", "rpc_topic": topic, "rpc_shards": SHARDS,
                          "validate_timeout": 5},
    })
    channel = broker.channel()
    shard_queues = [queue(f"{topic}.shard-{n}")(channel) for n in range(SHARDS)]
    for q in shard_queues:
        q.declare()
    responders = []

    def respond(answer):
        responders.append(Responder(topic, answer))
        return responders[-1]

    yield topic, shard_queues, respond

    for r in responders:
        r.close()
    # oslo's reply queue would expire on its own after 30 min; its name is private to oslo.
    driver = getattr(getattr(transport._host, "_transport", None), "_driver", None)
    reply_queues = {getattr(driver, "_reply_q", None)} - {None}
    transport.reset()  # closes oslo's connections before its reply queue goes
    for name in [topic, *reply_queues]:
        kombu.Queue(name)(channel).delete()
    for q in shard_queues:
        q.delete()
    channel.close()


def accept(inner):
    return None, None


def pool():
    return dm.Pool(pool_id=POOL, loadbalancer_id=LB, protocol="TCP", lb_algorithm="ROUND_ROBIN",
                   admin_state_up=True, members=[])


def get(q, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = q.get(no_ack=True)
        if message is not None:
            return message
        time.sleep(0.05)
    return None


def test_validate_call_then_cast_to_the_load_balancers_shard(amqp):
    topic, shard_queues, respond = amqp
    host = respond(accept)

    driver_mod.LoxiLBProviderDriver().pool_create(pool())

    args = {"pool": pool().to_dict(recurse=True, render_unsets=False), "loadbalancer_id": LB}
    [validate] = host.received
    assert validate["method"] == "validate"
    assert validate["args"] == {"operation": "pool_create", "args": args}
    assert (validate["namespace"], validate["version"]) == ("loxilb_provider", "1.0")

    n = transport.shard(LB, SHARDS)
    message = get(shard_queues[n])
    assert message is not None, f"no cast on {topic}.shard-{n}"
    assert message.delivery_info["exchange"] == "octavia"
    assert message.delivery_info["routing_key"] == f"{topic}.shard-{n}"
    assert message.content_type == "application/json"
    envelope = json.loads(message.body)
    assert envelope["oslo.version"] == "2.0"
    inner = json.loads(envelope["oslo.message"])
    assert inner["method"] == "pool_create"
    assert inner["args"] == args
    assert (inner["namespace"], inner["version"]) == ("loxilb_provider", "1.0")
    assert "_msg_id" not in inner  # a cast: the host must not answer
    assert all(q.get(no_ack=True) is None for q in shard_queues)  # exactly one message


def test_refusal_arrives_as_unsupported_option_error(amqp):
    topic, shard_queues, respond = amqp
    msg = "L7 policies are not supported by the loxilb provider"
    respond(lambda inner: (None, json.dumps({
        "class": "UnsupportedOptionError", "module": "octavia_lib.api.drivers.exceptions",
        "message": msg, "tb": [], "args": [], "kwargs": {}})))

    with pytest.raises(exceptions.UnsupportedOptionError) as info:
        driver_mod.LoxiLBProviderDriver().l7policy_create(dm.L7Policy(
            l7policy_id="e5c8a1b6", listener_id="a1e4c7d2", action="REJECT"))
    assert info.value.user_fault_string == msg
    assert info.value.operator_fault_string == msg
    time.sleep(0.2)
    assert all(q.get(no_ack=True) is None for q in shard_queues)  # no cast


def test_calls_return_the_hosts_result(amqp):
    topic, shard_queues, respond = amqp
    respond(lambda inner: ({"nat_mode": "fullnat or default"}, None))
    assert driver_mod.LoxiLBProviderDriver().get_supported_flavor_metadata() == {
        "nat_mode": "fullnat or default"}


def test_no_host_is_an_actionable_driver_error(amqp, octavia_conf):
    topic, shard_queues, respond = amqp
    octavia_conf({
        "DEFAULT": {"transport_url": "rabbit://guest:guest@127.0.0.1:5672/"},
        "driver_loxilb": {"transport": "amqp", "rpc_topic": topic, "validate_timeout": 1},
    })
    with pytest.raises(exceptions.DriverError) as info:
        driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    assert f"topic {topic} (exchange octavia) within 1 s" in info.value.user_fault_string
    assert "is it running?" in info.value.user_fault_string


def test_rabbitmq_down_fails_fast(octavia_conf):
    # Needs no broker: nothing listens on port 1.
    octavia_conf({
        "DEFAULT": {"transport_url": "rabbit://guest:guest@127.0.0.1:1/"},
        "driver_loxilb": {"transport": "amqp", "validate_timeout": 1},
    })
    drv = driver_mod.LoxiLBProviderDriver()
    started = time.monotonic()
    with pytest.raises(exceptions.DriverError, match="is RabbitMQ reachable"):
        drv.loadbalancer_failover(LB)
    assert time.monotonic() - started < 5
    started = time.monotonic()
    with pytest.raises(exceptions.DriverError, match="is RabbitMQ reachable"):
        transport.host().cast("loadbalancer_failover", {"loadbalancer_id": LB})
    assert time.monotonic() - started < 5
    # Abandon it: oslo's cleanup would wait for the reply-queue setup still retrying in its thread.
    transport._host = None


def test_not_implemented_sent_as_builtin_still_maps(amqp):
    topic, shard_queues, respond = amqp
    respond(lambda inner: (None, json.dumps({
        "class": "NotImplementedError", "module": "builtins", "message": "no failover in LoxiLB",
        "tb": ["(remote)\n"], "args": ["no failover in LoxiLB"], "kwargs": {}})))
    with pytest.raises(exceptions.NotImplementedError) as info:
        driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    assert info.value.user_fault_string == "no failover in LoxiLB"
