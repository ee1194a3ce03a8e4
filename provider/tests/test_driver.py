"""The driver against a fake host on a Unix socket: what it sends, in which order, and how it
turns the host's answers into octavia-lib exceptions."""
import builtins
import inspect
import json
import logging
import socket
import time

import pytest
from octavia_lib.api.drivers import data_models as dm
from octavia_lib.api.drivers import exceptions
from octavia_lib.api.drivers import provider_base

from octavia_loxilb_provider import driver as driver_mod
from octavia_loxilb_provider import resolve
from octavia_loxilb_provider import transport

LB = "3f2b4a9e-5c1d-4e8f-9a7b-2c6d0e1f4a5b"
LISTENER = "a1e4c7d2-0b3f-4c5a-8e9d-1f2a3b4c5d6e"
POOL = "b2f5d8e3-1c4a-4d6b-9f0e-2a3b4c5d6e7f"
MEMBER = "c3a6e9f4-2d5b-4e7c-8a1f-3b4c5d6e7f80"
MEMBER2 = "c3a6e9f4-2d5b-4e7c-8a1f-3b4c5d6e7f81"
HM = "d4b7f0a5-3e6c-4f8d-9b2a-4c5d6e7f8091"
POLICY = "e5c8a1b6-4f7d-4a9e-8c3b-5d6e7f8091a2"
RULE = "f6d9b2c7-5a8e-4b0f-9d4c-6e7f8091a2b3"


def member(member_id=MEMBER, **kw):
    return dm.Member(member_id=member_id, pool_id=POOL, address="192.0.2.10", protocol_port=8080,
                     weight=1, admin_state_up=True, backup=False, project_id="p", **kw)


def healthmonitor():
    return dm.HealthMonitor(healthmonitor_id=HM, pool_id=POOL, type="TCP", delay=5, timeout=3,
                            max_retries=3, max_retries_down=3, admin_state_up=True)


def pool():
    return dm.Pool(pool_id=POOL, loadbalancer_id=LB, listener_id=LISTENER, protocol="TCP",
                   lb_algorithm="ROUND_ROBIN", admin_state_up=True, members=[member()],
                   healthmonitor=healthmonitor(), session_persistence=None)


def l7rule():
    return dm.L7Rule(l7rule_id=RULE, l7policy_id=POLICY, type="PATH", compare_type="STARTS_WITH",
                     value="/api", invert=False, admin_state_up=True)


def l7policy():
    return dm.L7Policy(l7policy_id=POLICY, listener_id=LISTENER, action="REJECT", position=1,
                       admin_state_up=True, rules=[l7rule()])


def listener():
    return dm.Listener(listener_id=LISTENER, loadbalancer_id=LB, protocol="TCP", protocol_port=80,
                       admin_state_up=True, default_pool_id=POOL, default_pool=pool(),
                       allowed_cidrs=["198.51.100.0/24"], l7policies=[], connection_limit=-1)


# vip_sg_ids came with octavia-lib 3.8 (Octavia 2025.1); the provider forwards whatever fields the
# installed octavia-lib has.
HAS_VIP_SG_IDS = "vip_sg_ids" in inspect.signature(dm.LoadBalancer.__init__).parameters


def loadbalancer():
    extra = {"vip_sg_ids": ["sg-1"]} if HAS_VIP_SG_IDS else {}
    return dm.LoadBalancer(loadbalancer_id=LB, name="lb1", vip_address="203.0.113.5",
                           vip_port_id="port-1", admin_state_up=True,
                           listeners=[listener()], pools=[pool()], flavor={}, project_id="p", **extra)


def d(obj):
    return obj.to_dict(recurse=True, render_unsets=False)


# Every mutating ProviderDriver method: (name, how to call it, the cast it must produce).
CASES = [
    ("loadbalancer_create", lambda drv: drv.loadbalancer_create(loadbalancer()),
     "loadbalancer_create", {"loadbalancer": d(loadbalancer())}),
    ("loadbalancer_update",
     lambda drv: drv.loadbalancer_update(loadbalancer(), dm.LoadBalancer(
         loadbalancer_id=LB, name="renamed", description=None)),
     "loadbalancer_update",
     {"old_loadbalancer": d(loadbalancer()),
      # Unset fields are absent, an explicit None (the user cleared it) stays.
      "new_loadbalancer": {"loadbalancer_id": LB, "name": "renamed", "description": None}}),
    ("loadbalancer_delete", lambda drv: drv.loadbalancer_delete(loadbalancer(), cascade=True),
     "loadbalancer_delete", {"loadbalancer": d(loadbalancer()), "cascade": True}),
    ("loadbalancer_failover", lambda drv: drv.loadbalancer_failover(LB),
     "loadbalancer_failover", {}),
    ("loadbalancer_failover_with_flavor",
     lambda drv: drv.loadbalancer_failover_with_flavor(LB, "flavor-1"),
     "loadbalancer_failover", {}),
    ("listener_create", lambda drv: drv.listener_create(listener()),
     "listener_create", {"listener": d(listener())}),
    ("listener_update",
     lambda drv: drv.listener_update(listener(), dm.Listener(listener_id=LISTENER,
                                                             connection_limit=100)),
     "listener_update",
     {"old_listener": d(listener()),
      "new_listener": {"listener_id": LISTENER, "connection_limit": 100}}),
    ("listener_delete", lambda drv: drv.listener_delete(listener()),
     "listener_delete", {"listener": d(listener())}),
    ("pool_create", lambda drv: drv.pool_create(pool()), "pool_create", {"pool": d(pool())}),
    ("pool_update",
     lambda drv: drv.pool_update(pool(), dm.Pool(pool_id=POOL, lb_algorithm="SOURCE_IP",
                                                  session_persistence=None)),
     "pool_update",
     {"old_pool": d(pool()),
      "new_pool": {"pool_id": POOL, "lb_algorithm": "SOURCE_IP", "session_persistence": None}}),
    ("pool_delete", lambda drv: drv.pool_delete(pool()), "pool_delete", {"pool": d(pool())}),
    ("member_create", lambda drv: drv.member_create(member()),
     "member_create", {"member": d(member())}),
    ("member_update",
     lambda drv: drv.member_update(member(), dm.Member(member_id=MEMBER, weight=0)),
     "member_update",
     {"old_member": d(member()), "new_member": {"member_id": MEMBER, "weight": 0}}),
    ("member_delete", lambda drv: drv.member_delete(member()),
     "member_delete", {"member": d(member())}),
    ("member_batch_update",
     lambda drv: drv.member_batch_update(POOL, [member(), member(MEMBER2, name="two")]),
     "member_batch_update",
     {"pool_id": POOL, "members": [d(member()), d(member(MEMBER2, name="two"))]}),
    ("health_monitor_create", lambda drv: drv.health_monitor_create(healthmonitor()),
     "health_monitor_create", {"healthmonitor": d(healthmonitor())}),
    ("health_monitor_update",
     lambda drv: drv.health_monitor_update(healthmonitor(),
                                           dm.HealthMonitor(healthmonitor_id=HM, delay=10)),
     "health_monitor_update",
     {"old_healthmonitor": d(healthmonitor()),
      "new_healthmonitor": {"healthmonitor_id": HM, "delay": 10}}),
    ("health_monitor_delete", lambda drv: drv.health_monitor_delete(healthmonitor()),
     "health_monitor_delete", {"healthmonitor": d(healthmonitor())}),
    ("l7policy_create", lambda drv: drv.l7policy_create(l7policy()),
     "l7policy_create", {"l7policy": d(l7policy())}),
    ("l7policy_update",
     lambda drv: drv.l7policy_update(l7policy(), dm.L7Policy(l7policy_id=POLICY, position=2)),
     "l7policy_update",
     {"old_l7policy": d(l7policy()), "new_l7policy": {"l7policy_id": POLICY, "position": 2}}),
    ("l7policy_delete", lambda drv: drv.l7policy_delete(l7policy()),
     "l7policy_delete", {"l7policy": d(l7policy())}),
    ("l7rule_create", lambda drv: drv.l7rule_create(l7rule()),
     "l7rule_create", {"l7rule": d(l7rule())}),
    ("l7rule_update",
     lambda drv: drv.l7rule_update(l7rule(), dm.L7Rule(l7rule_id=RULE, invert=True)),
     "l7rule_update",
     {"old_l7rule": d(l7rule()), "new_l7rule": {"l7rule_id": RULE, "invert": True}}),
    ("l7rule_delete", lambda drv: drv.l7rule_delete(l7rule()),
     "l7rule_delete", {"l7rule": d(l7rule())}),
]

SYNC = {"create_vip_port", "get_supported_flavor_metadata", "validate_flavor",
        "get_supported_availability_zone_metadata", "validate_availability_zone"}


def provider_methods():
    return {name for name, _ in inspect.getmembers(provider_base.ProviderDriver, inspect.isfunction)
            if not name.startswith("_")}


def agent_db(fake_get):
    fake_get.objects.update({
        ("pools", POOL): {"pool_id": POOL, "loadbalancer_id": LB},
        ("listeners", LISTENER): {"listener_id": LISTENER, "loadbalancer_id": LB},
        ("l7policies", POLICY): {"l7policy_id": POLICY, "listener_id": LISTENER},
    })


def test_every_provider_method_is_implemented_and_tested():
    ours = driver_mod.LoxiLBProviderDriver.__dict__
    assert {m for m in provider_methods() if m not in ours} == set()
    assert provider_methods() - SYNC <= {case[0] for case in CASES}


@pytest.mark.parametrize("name,invoke,method,args", CASES, ids=[c[0] for c in CASES])
def test_validate_then_cast_with_the_same_args(unix_conf, fake_host, fake_get, name, invoke,
                                               method, args):
    agent_db(fake_get)
    invoke(driver_mod.LoxiLBProviderDriver())

    expected = json.loads(json.dumps(dict(args, loadbalancer_id=LB)))
    cast = fake_host.requests[1]
    # Creates and updates carry a commit ticket (with SQLAlchemy importable: test_commit_notices.py).
    ticket = cast["args"].pop("commit_ticket", None)
    assert (ticket is not None) == (transport.SQLALCHEMY and transport._awaits_commit(method))
    assert fake_host.requests == [
        {"type": "call", "method": "validate", "args": {"operation": method, "args": expected}},
        {"type": "cast", "method": method, "args": expected},
    ]


def test_nested_objects_and_lists_are_forwarded(unix_conf, fake_host):
    driver_mod.LoxiLBProviderDriver().loadbalancer_create(loadbalancer())
    sent = fake_host.requests[1]["args"]["loadbalancer"]
    assert sent.get("vip_sg_ids") == (["sg-1"] if HAS_VIP_SG_IDS else None)
    assert sent["flavor"] == {}
    assert sent["listeners"][0]["allowed_cidrs"] == ["198.51.100.0/24"]
    assert sent["pools"][0]["members"][0]["address"] == "192.0.2.10"
    assert sent["pools"][0]["healthmonitor"]["healthmonitor_id"] == HM
    assert "description" not in sent  # Unset
    assert sent["pools"][0]["session_persistence"] is None  # set to None


def refuse(class_name, message):
    def answer(request):
        if request["method"] == "validate":
            return {"failure": {"class": class_name, "message": message}}
        return {"result": None}
    return answer


@pytest.mark.parametrize("class_name,cls", sorted(transport.FAILURES.items()))
def test_refusal_raises_the_octavia_lib_exception_and_sends_no_cast(unix_conf, fake_host,
                                                                    class_name, cls):
    msg = "L7 policies are not supported by the loxilb provider (l7policy.action=REJECT)"
    fake_host.answer = refuse(class_name, msg)
    with pytest.raises(cls) as info:
        driver_mod.LoxiLBProviderDriver().pool_create(pool())
    assert info.value.user_fault_string == msg
    assert info.value.operator_fault_string == msg
    assert [r["type"] for r in fake_host.requests] == ["call"]


def test_a_conflict_without_octavia_lib_conflict_is_unsupported_with_the_message(unix_conf, fake_host,
                                                                                monkeypatch):
    # octavia-lib < 3.8 (Octavia 2024.1/2024.2) has no Conflict exception.
    monkeypatch.setattr(transport, "FAILURES", {k: v for k, v in transport.FAILURES.items() if k != "Conflict"})
    msg = "VIP 203.0.113.5 port 80/tcp is already used by load balancer lb-2 of this project"
    fake_host.answer = refuse("Conflict", msg)
    with pytest.raises(exceptions.UnsupportedOptionError) as info:
        driver_mod.LoxiLBProviderDriver().pool_create(pool())
    assert info.value.user_fault_string == msg


def test_not_implemented_is_octavia_libs_not_the_builtin(unix_conf, fake_host):
    fake_host.answer = refuse("NotImplementedError", "no")
    with pytest.raises(exceptions.NotImplementedError) as info:
        driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    assert not isinstance(info.value, builtins.NotImplementedError)


def test_unknown_refusal_class_is_a_driver_error(unix_conf, fake_host):
    fake_host.answer = refuse("PolicyTrap", "the policy crashed")
    with pytest.raises(exceptions.DriverError) as info:
        driver_mod.LoxiLBProviderDriver().pool_create(pool())
    assert info.value.user_fault_string == "PolicyTrap: the policy crashed"


def test_refused_cast_raises(unix_conf, fake_host):
    fake_host.answer = lambda req: ({"failure": {"class": "DriverError", "message": "disk full"}}
                                    if req["type"] == "cast" else {"result": None})
    with pytest.raises(exceptions.DriverError, match="disk full"):
        driver_mod.LoxiLBProviderDriver().pool_create(pool())


def test_host_down_is_an_actionable_driver_error(octavia_conf, sock_dir):
    missing = f"{sock_dir}/nobody.sock"
    octavia_conf({"driver_loxilb": {"socket_path": missing}})
    with pytest.raises(exceptions.DriverError) as info:
        driver_mod.LoxiLBProviderDriver().loadbalancer_create(loadbalancer())
    assert missing in info.value.user_fault_string
    assert "is it running?" in info.value.user_fault_string
    assert info.value.operator_fault_string == info.value.user_fault_string


@pytest.mark.parametrize("answer", [lambda req: None, lambda req: time.sleep(3)],
                         ids=["closes-without-reply", "hangs"])
def test_host_that_does_not_answer_is_a_driver_error(octavia_conf, fake_host, answer):
    octavia_conf({"driver_loxilb": {"socket_path": fake_host.path, "validate_timeout": 1}})
    fake_host.answer = answer
    started = time.monotonic()
    with pytest.raises(exceptions.DriverError, match="is it running"):
        driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    assert time.monotonic() - started < 2.5


def test_init_does_no_io(monkeypatch):
    def no_io(*args, **kwargs):
        raise AssertionError("I/O in __init__")
    monkeypatch.setattr(socket, "socket", no_io)
    monkeypatch.setattr(transport, "host", no_io)
    monkeypatch.setattr(transport, "unix_request", no_io)
    for _ in range(3):
        driver_mod.LoxiLBProviderDriver()
    assert transport._host is None


def test_transport_is_created_once_per_process(unix_conf, fake_host):
    driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    first = transport._host
    driver_mod.LoxiLBProviderDriver().loadbalancer_failover(LB)
    assert isinstance(first, transport.UnixTransport) and transport._host is first


def test_create_vip_port_lets_octavia_create_the_port(unix_conf, fake_host):
    with pytest.raises(exceptions.NotImplementedError):
        driver_mod.LoxiLBProviderDriver().create_vip_port(LB, "p", {"vip_subnet_id": "s"}, [])
    assert fake_host.requests == []


def test_flavor_and_az_calls_are_answered_by_the_host(unix_conf, fake_host):
    answers = {"get_supported_flavor_metadata": {"nat_mode": "fullnat or default"},
               "get_supported_availability_zone_metadata": {"zone": "LoxiLB zone"}}
    fake_host.answer = lambda req: {"result": answers.get(req["method"])}
    drv = driver_mod.LoxiLBProviderDriver()
    assert drv.get_supported_flavor_metadata() == answers["get_supported_flavor_metadata"]
    assert drv.get_supported_availability_zone_metadata() == answers[
        "get_supported_availability_zone_metadata"]
    assert drv.validate_flavor({"nat_mode": "fullnat"}) is None
    assert drv.validate_availability_zone({"zone": "a"}) is None
    assert fake_host.requests == [
        {"type": "call", "method": "get_supported_flavor_metadata", "args": {}},
        {"type": "call", "method": "get_supported_availability_zone_metadata", "args": {}},
        {"type": "call", "method": "validate_flavor",
         "args": {"flavor_metadata": {"nat_mode": "fullnat"}}},
        {"type": "call", "method": "validate_availability_zone",
         "args": {"availability_zone_metadata": {"zone": "a"}}},
    ]


def test_flavor_refusal(unix_conf, fake_host):
    fake_host.answer = lambda req: {"failure": {"class": "UnsupportedOptionError",
                                                "message": "unknown flavor key 'x'"}}
    with pytest.raises(exceptions.UnsupportedOptionError, match="unknown flavor key"):
        driver_mod.LoxiLBProviderDriver().validate_flavor({"x": 1})


# Load balancer resolution through the driver-agent get socket

def cast_lb(fake_host):
    return [r["args"]["loadbalancer_id"] for r in fake_host.requests if r["type"] == "cast"]


def test_member_pool_is_looked_up_once(unix_conf, fake_host, fake_get):
    agent_db(fake_get)
    drv = driver_mod.LoxiLBProviderDriver()
    drv.member_create(member())
    drv.health_monitor_create(healthmonitor())
    drv.member_delete(member())
    assert fake_get.requests == [{"object": "pools", "id": POOL}]
    assert cast_lb(fake_host) == [LB, LB, LB]


def test_l7rule_goes_through_its_policy_and_listener(unix_conf, fake_host, fake_get):
    agent_db(fake_get)
    drv = driver_mod.LoxiLBProviderDriver()
    drv.l7rule_create(l7rule())
    drv.l7rule_delete(l7rule())
    drv.l7policy_create(l7policy())
    assert fake_get.requests == [{"object": "l7policies", "id": POLICY},
                                 {"object": "listeners", "id": LISTENER}]
    assert cast_lb(fake_host) == [LB, LB, LB]


def test_objects_that_carry_their_lb_need_no_lookup(unix_conf, fake_host, fake_get):
    drv = driver_mod.LoxiLBProviderDriver()
    drv.pool_create(pool())
    drv.member_create(member())
    drv.listener_create(listener())
    drv.l7policy_create(l7policy())
    drv.l7rule_create(l7rule())
    assert fake_get.requests == []
    assert cast_lb(fake_host) == [LB] * 5


def test_failed_lookup_warns_and_orders_by_the_id_it_has(octavia_conf, fake_host, sock_dir,
                                                         caplog):
    octavia_conf({"driver_loxilb": {"socket_path": fake_host.path},
                  "driver_agent": {"get_socket_path": f"{sock_dir}/no-agent.sock"}})
    with caplog.at_level(logging.WARNING, logger=resolve.__name__):
        driver_mod.LoxiLBProviderDriver().member_create(member())
    assert cast_lb(fake_host) == [POOL]
    assert POOL in caplog.text and "no-agent.sock" in caplog.text
    assert resolve._cache == {}  # a failure is not remembered


def test_a_graph_creates_children_are_ordered_by_its_load_balancer_without_a_lookup(
        octavia_conf, fake_host, sock_dir):
    # The driver-agent is down: only what the graph create carried can name the load balancer.
    octavia_conf({"driver_loxilb": {"socket_path": fake_host.path},
                  "driver_agent": {"get_socket_path": f"{sock_dir}/no-agent.sock"}})
    graph = loadbalancer()
    graph.listeners[0].l7policies = [l7policy()]
    drv = driver_mod.LoxiLBProviderDriver()
    drv.loadbalancer_create(graph)
    drv.member_create(member(MEMBER2))
    drv.l7rule_create(l7rule())
    drv.health_monitor_create(healthmonitor())
    assert cast_lb(fake_host) == [LB, LB, LB, LB]


def test_a_refused_graph_create_remembers_nothing(unix_conf, fake_host):
    fake_host.answer = refuse("UnsupportedOptionError", "no")
    with pytest.raises(exceptions.UnsupportedOptionError):
        driver_mod.LoxiLBProviderDriver().loadbalancer_create(loadbalancer())
    assert resolve._cache == {}


def test_unknown_object_falls_back_too(unix_conf, fake_host, fake_get, caplog):
    driver_mod.LoxiLBProviderDriver().member_create(member())  # the get socket answers {}
    assert cast_lb(fake_host) == [POOL]
    assert "not found" in caplog.text


def test_shard_vectors():
    # Fixed vectors: the host must compute the same shard for the same id.
    assert transport.shard("lb-1", 8) == 6  # sha256 prefix 07e7b0ee
    assert transport.shard("00000000-0000-0000-0000-000000000000", 8) == 4  # 12b9377c
    assert transport.shard(LB, 8) == 6  # f964bece
    assert transport.shard(LB, 3) == 1
    assert transport.shard(LB, 1) == 0
    assert {transport.shard(f"lb-{i}", 8) for i in range(200)} == set(range(8))


def test_a_policy_whose_listener_was_not_found_is_not_remembered(unix_conf, fake_host, fake_get):
    drv = driver_mod.LoxiLBProviderDriver()
    drv.l7policy_create(l7policy())  # the get socket knows nothing yet
    agent_db(fake_get)
    drv.l7rule_create(l7rule())
    assert cast_lb(fake_host) == [LISTENER, LB]
