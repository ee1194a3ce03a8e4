"""The amqp bridge end to end: octavia-lib data models → the real provider driver → the real
oslo.messaging client → RabbitMQ → `loxilb-octavia serve` (transport = amqp) → the LoxiLB simulator,
with statuses reported to a fake Octavia driver-agent (PROVIDER-NOTES §3-§5)."""
import collections
import subprocess
import time
import uuid

import oslo_messaging
import pytest
from octavia_lib.api.drivers import data_models as dm
from octavia_lib.api.drivers import exceptions

from octavia_loxilb_provider import driver
from octavia_loxilb_provider import transport

from bridgelib import wait_for

PROJECT = "e3cd678b11784734bc366148aa37580e"


def uid():
    return str(uuid.uuid4())


def member(pool_id, address, weight=1):
    return dm.Member(member_id=uid(), pool_id=pool_id, address=address, protocol_port=8080,
                     weight=weight, admin_state_up=True, backup=False, project_id=PROJECT,
                     monitor_address=None, monitor_port=None, name="")


def loadbalancer(vip, addresses):
    """A load balancer graph as Octavia passes it on create: one TCP listener on port 80 whose default
    pool (ROUND_ROBIN, no health monitor) has a member per address."""
    lb_id, listener_id, pool_id = uid(), uid(), uid()
    pool = dm.Pool(pool_id=pool_id, loadbalancer_id=lb_id, listener_id=listener_id, protocol="TCP",
                   lb_algorithm="ROUND_ROBIN", admin_state_up=True, session_persistence=None,
                   project_id=PROJECT, name="pool",
                   members=[member(pool_id, a) for a in addresses])
    listener = dm.Listener(listener_id=listener_id, loadbalancer_id=lb_id, protocol="TCP",
                           protocol_port=80, admin_state_up=True, connection_limit=-1,
                           default_pool_id=pool_id, default_pool=pool, timeout_client_data=50000,
                           timeout_member_connect=5000, timeout_member_data=50000,
                           timeout_tcp_inspect=0, project_id=PROJECT, name="listener")
    return dm.LoadBalancer(loadbalancer_id=lb_id, name="lb", vip_address=vip,
                           vip_network_id=uid(), vip_subnet_id=uid(), vip_port_id=uid(),
                           admin_state_up=True, project_id=PROJECT, flavor={},
                           listeners=[listener], pools=[pool])


def parts(lb):
    listener, pool = lb.listeners[0], lb.pools[0]
    return listener, pool


def keys(lb):
    listener, pool = parts(lb)
    return ([("loadbalancers", lb.loadbalancer_id), ("listeners", listener.listener_id),
             ("pools", pool.pool_id)] + [("members", m.member_id) for m in pool.members])


def parent_keys(lb):
    """The parents Octavia sets PENDING_UPDATE for a member operation."""
    listener, pool = parts(lb)
    return [("pools", pool.pool_id), ("listeners", listener.listener_id),
            ("loadbalancers", lb.loadbalancer_id)]


def summary(document):
    """{(collection, id): (provisioning, operating)} of a status document."""
    return {(collection, r["id"]): (r.get("provisioning_status"), r.get("operating_status"))
            for collection, records in document.items() for r in records}


def provisioning(document):
    return {key: p for key, (p, _op) in summary(document).items()}


def test_lifecycle_create_update_batch_cascade_delete(bridge, octavia, sim):
    bridge.start_hosts("a")
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.10"
    lb = loadbalancer(vip, ["10.0.0.1", "10.0.0.2"])
    listener, pool = parts(lb)
    m1, m2 = pool.members
    lb_key, listener_key, pool_key = keys(lb)[:3]

    # create: the whole graph PENDING_CREATE, then ACTIVE with operating statuses (no monitor).
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    [created] = octavia.wait_documents(1)
    assert summary(created) == {
        lb_key: ("ACTIVE", "ONLINE"), listener_key: ("ACTIVE", "ONLINE"), pool_key: ("ACTIVE", "ONLINE"),
        ("members", m1.member_id): ("ACTIVE", "NO_MONITOR"),
        ("members", m2.member_id): ("ACTIVE", "NO_MONITOR")}
    assert sim.endpoints(vip) == {"10.0.0.1": 1, "10.0.0.2": 1}
    [rule] = sim.rules()[vip]
    assert rule["serviceArguments"]["port"] == 80
    assert rule["serviceArguments"]["inactiveTimeOut"] == 50

    # listener update: listener and LB PENDING_UPDATE, then ACTIVE.
    octavia.set_pending("PENDING_UPDATE", listener_key, lb_key)
    drv.listener_update(listener, dm.Listener(listener_id=listener.listener_id,
                                              name="web"))
    listener.name = "web"
    octavia.commit(lb)
    updated = octavia.wait_documents(2)[1]
    assert provisioning(updated) == {listener_key: "ACTIVE", lb_key: "ACTIVE"}

    # member update: member, pool, listener, LB; weights 3:1 reach LoxiLB as shares.
    octavia.set_pending("PENDING_UPDATE", *parent_keys(lb))
    drv.member_update(m1, dm.Member(member_id=m1.member_id, pool_id=pool.pool_id, weight=3))
    octavia.set_pending("PENDING_UPDATE", ("members", m1.member_id))  # written after the call
    m1.weight = 3
    octavia.commit(lb)
    member_updated = octavia.wait_documents(3)[2]
    assert provisioning(member_updated) == {
        ("members", m1.member_id): "ACTIVE", pool_key: "ACTIVE", listener_key: "ACTIVE",
        lb_key: "ACTIVE"}
    assert sim.endpoints(vip) == {"10.0.0.1": 75, "10.0.0.2": 25}

    # batch update: m1 kept, m3 new, m2 not listed → DELETED.
    m3 = member(pool.pool_id, "10.0.0.3")
    octavia.set_pending("PENDING_UPDATE", *parent_keys(lb), ("members", m1.member_id))
    octavia.set_pending("PENDING_CREATE", ("members", m3.member_id))
    octavia.set_pending("PENDING_DELETE", ("members", m2.member_id))
    drv.member_batch_update(pool.pool_id, [m1, m3])
    pool.members.append(m3)  # m2's row stays until the driver reports it DELETED
    octavia.commit(lb)
    batch = octavia.wait_documents(4)[3]
    assert provisioning(batch) == {
        ("members", m1.member_id): "ACTIVE", ("members", m3.member_id): "ACTIVE",
        ("members", m2.member_id): "DELETED", pool_key: "ACTIVE", listener_key: "ACTIVE",
        lb_key: "ACTIVE"}
    assert sim.endpoints(vip) == {"10.0.0.1": 75, "10.0.0.3": 25}

    # cascade delete: every object DELETED, LoxiLB empty.
    pool.members.remove(m2)
    octavia.set_pending("PENDING_DELETE", lb_key)
    drv.loadbalancer_delete(lb, cascade=True)
    deleted = octavia.wait_documents(5)[4]
    assert provisioning(deleted) == {key: "DELETED" for key in keys(lb)}
    assert sim.rules() == {}

    assert octavia.pending() == {}, "objects left PENDING"
    assert len(octavia.documents()) == 5, octavia.documents()


def test_listener_timeout_update_reaches_loxilb(bridge, octavia, sim):
    bridge.start_hosts("a")
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.14"
    lb = loadbalancer(vip, ["10.0.4.1"])
    listener, _pool = parts(lb)
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1)
    assert sim.rules()[vip][0]["serviceArguments"]["inactiveTimeOut"] == 50
    drv.listener_update(listener, dm.Listener(listener_id=listener.listener_id,
                                              timeout_client_data=30000))
    listener.timeout_client_data = 30000
    octavia.commit(lb)
    octavia.wait_documents(2)
    assert sim.rules()[vip][0]["serviceArguments"]["inactiveTimeOut"] == 30


def test_refusals_come_back_as_octavia_lib_exceptions(bridge, octavia, sim):
    bridge.start_hosts("a")
    drv = driver.LoxiLBProviderDriver()
    lb = loadbalancer("192.0.2.11", ["10.0.1.1"])
    lb.pools[0].session_persistence = {"type": "HTTP_COOKIE", "cookie_name": "sid"}
    with pytest.raises(exceptions.UnsupportedOptionError) as info:
        drv.loadbalancer_create(lb)
    assert "persistence" in info.value.user_fault_string.lower()
    with pytest.raises(exceptions.UnsupportedOptionError):
        drv.validate_flavor({"nat_mode": "teleport"})
    assert drv.get_supported_flavor_metadata().keys() == {"nat_mode", "bgp"}
    # Unknown to the endpoint: oslo's NoSuchMethod comes back, named, as a DriverError.
    with pytest.raises(exceptions.DriverError, match="NoSuchMethod"):
        transport.host().call("pool_create", {})
    # A newer minor version than the host's 1.0: UnsupportedVersion, as oslo's dispatcher says it.
    newer = transport.host()._client.prepare(version="1.1", timeout=5)
    with pytest.raises(oslo_messaging.RemoteError) as info:
        newer.call({}, "get_supported_flavor_metadata")
    assert info.value.exc_type == "UnsupportedVersion"
    time.sleep(0.3)
    assert octavia.documents() == [] and sim.rules() == {}


def test_casts_the_host_cannot_apply_leave_nothing_pending(bridge, octavia, sim):
    bridge.start_hosts("a")
    host = transport.host()
    # A cast bypassing validation, with arguments that do not convert (no VIP address).
    broken = loadbalancer("192.0.2.13", ["10.0.1.3"])
    octavia.set_pending("PENDING_CREATE", *keys(broken))
    args = driver._dict(broken)
    del args["vip_address"]
    host.cast("loadbalancer_create", {"loadbalancer": args, "loadbalancer_id": broken.loadbalancer_id})
    [first] = octavia.wait_documents(1, timeout=20)
    assert provisioning(first)[("loadbalancers", broken.loadbalancer_id)] == "ERROR"
    assert octavia.pending() == {}, "the tree the create carried stays PENDING"
    # A cast for an RPC version the host does not serve: no reply to refuse it with, so a status.
    newer = loadbalancer("192.0.2.14", ["10.0.1.4"])
    octavia.set_pending("PENDING_CREATE", *keys(newer))
    shard = transport.shard(newer.loadbalancer_id, host._opts.rpc_shards)
    host._client.prepare(server=f"shard-{shard}", version="1.1").cast(
        {}, "loadbalancer_create", loadbalancer=driver._dict(newer), loadbalancer_id=newer.loadbalancer_id)
    second = octavia.wait_documents(2, timeout=20)[1]
    assert provisioning(second)[("loadbalancers", newer.loadbalancer_id)] == "ERROR"
    assert octavia.pending() == {} and sim.rules() == {}


def test_commit_race_status_only_after_octavia_shows_the_object(bridge, octavia, sim):
    bridge.start_hosts("a")
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.12"
    lb = loadbalancer(vip, ["10.0.2.1"])
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    drv.loadbalancer_create(lb)
    visible_at = time.monotonic() + 1.5  # no later than the rows actually show
    octavia.commit(lb, hide_for=1.5)
    time.sleep(1.0)
    assert sim.rules() == {}, "applied before Octavia committed the load balancer"
    assert octavia.documents() == []
    octavia.wait_documents(1, timeout=20)
    assert octavia.statuses[0][2] >= visible_at
    assert sim.endpoints(vip) == {"10.0.2.1": 1}

    # An update is applied only once the new value reads back, not on the old committed row.
    _listener, pool = parts(lb)
    [m1] = pool.members
    octavia.set_pending("PENDING_UPDATE", *parent_keys(lb))
    drv.member_update(m1, dm.Member(member_id=m1.member_id, pool_id=pool.pool_id, admin_state_up=False))
    time.sleep(1.0)
    assert len(octavia.documents()) == 1 and sim.endpoints(vip) == {"10.0.2.1": 1}
    m1.admin_state_up = False
    committed_at = time.monotonic()
    octavia.commit(lb)
    second = octavia.wait_documents(2)[1]
    assert octavia.statuses[1][2] >= committed_at
    assert provisioning(second)[("members", m1.member_id)] == "ACTIVE"
    assert sim.endpoints(vip) == {}, "a disabled member still serves"
    assert octavia.pending() == {}


def rabbit_connections_of(pid):
    """Broker-side ids (Erlang pids, what close_connection takes) of the connections the host
    process `pid` holds; the host names its connections `loxilb-octavia:<pid>:<hostname>`."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [line.split("\t")[0] for line in out.splitlines() if f"loxilb-octavia:{pid}:" in line]


def reset_tcp_sessions_of(pid):
    """Aborts the host's TCP sessions to RabbitMQ (`ss -K`: the kernel resets them)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "dport", "=", ":5672"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    ports = [line.split()[2].rsplit(":", 1)[1] for line in out.splitlines() if f"pid={pid}," in line]
    assert ports, f"no TCP session of pid {pid} to port 5672:\n{out}"
    for port in ports:
        subprocess.run(["ss", "-K", "sport", "=", f":{port}", "dport", "=", ":5672"],
                       capture_output=True, timeout=10, check=True)


def close_from_management(pid):
    [conn] = wait_for(lambda: rabbit_connections_of(pid), 10, "the host's connection")
    subprocess.run(["rabbitmqctl", "-q", "close_connection", conn, "closed by the test"],
                   check=True, timeout=30)


@pytest.mark.parametrize("drop", [close_from_management, reset_tcp_sessions_of],
                         ids=["closed-from-management", "tcp-reset"])
def test_broker_connection_dropped_host_reconnects_and_loses_nothing(bridge, octavia, sim, drop):
    [host] = bridge.start_hosts("a")
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.13"
    lb = loadbalancer(vip, ["10.0.3.1"])
    octavia.set_pending("PENDING_CREATE", *keys(lb))
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1)
    _listener, pool = parts(lb)

    # An operation in hand when the connection goes: the host is still waiting for its commit.
    first = member(pool.pool_id, "10.0.3.2")
    octavia.set_pending("PENDING_CREATE", ("members", first.member_id))
    drv.member_create(first)
    pool.members.append(first)
    octavia.commit(lb, hide_for=4, hide={("members", first.member_id)})
    [before] = rabbit_connections_of(host.pid)
    drop(host.pid)

    # Operations accepted while the host is away.
    later = [member(pool.pool_id, f"10.0.3.{n}") for n in (3, 4)]
    for m in later:
        octavia.set_pending("PENDING_CREATE", ("members", m.member_id))
        drv.member_create(m)
        pool.members.append(m)
        octavia.commit(lb)

    wait_for(lambda: [c for c in rabbit_connections_of(host.pid) if c != before], 30,
             "the host to reconnect")
    expected = {"10.0.3.1": 1, "10.0.3.2": 1, "10.0.3.3": 1, "10.0.3.4": 1}
    wait_for(lambda: sim.endpoints(vip) == expected, 30, f"LoxiLB endpoints {expected}")
    wait_for(lambda: not octavia.pending(), 30, "no object left PENDING")
    order = [m_id for doc in octavia.documents()[1:] for (coll, m_id) in provisioning(doc)
             if coll == "members"]
    collapsed = [m for i, m in enumerate(order) if i == 0 or order[i - 1] != m]
    assert collapsed == [first.member_id] + [m.member_id for m in later]
    assert host.proc.poll() is None


def test_a_host_taking_a_shard_back_starts_from_octavias_view(bridge, octavia, sim):
    """A host that was standby while another applied operations must not apply the next one on its
    own, stale, mapping."""
    [host_a] = bridge.start_hosts("a")
    [host_b] = bridge.start_hosts("b")  # subscribed second: standby on every shard
    drv = driver.LoxiLBProviderDriver()
    vip = "192.0.2.15"
    lb = loadbalancer(vip, ["10.0.5.1"])
    _listener, pool = parts(lb)
    [m1] = pool.members
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1)
    assert {pid for pid, _doc, _t in octavia.statuses} == {host_a.pid}

    # a loses its connection: b becomes the active consumer; a comes back as standby.
    [before] = rabbit_connections_of(host_a.pid)
    close_from_management(host_a.pid)
    wait_for(lambda: [c for c in rabbit_connections_of(host_a.pid) if c != before], 30,
             "a to reconnect")
    bridge.wait_consumers(2)
    m2 = member(pool.pool_id, "10.0.5.2")
    drv.member_create(m2)
    pool.members.append(m2)
    octavia.commit(lb)
    drv.member_delete(m1)
    pool.members.remove(m1)
    octavia.commit(lb)
    octavia.wait_documents(3)
    assert {pid for pid, _doc, _t in octavia.statuses[1:]} == {host_b.pid}
    assert sim.endpoints(vip) == {"10.0.5.2": 1}

    # b dies: a takes the shard back, its own mapping still says m1.
    host_b.kill()
    m3 = member(pool.pool_id, "10.0.5.3")
    drv.member_create(m3)
    pool.members.append(m3)
    octavia.commit(lb)
    fourth = octavia.wait_documents(4)[3]
    assert octavia.statuses[3][0] == host_a.pid
    assert provisioning(fourth)[("members", m3.member_id)] == "ACTIVE"
    assert sim.endpoints(vip) == {"10.0.5.2": 1, "10.0.5.3": 1}


def created_through_a_with_b_standing_by(bridge, octavia, sim, vip, member_ip):
    """Hosts a and b (b standby on every shard), and a load balancer created through a."""
    [host_a] = bridge.start_hosts("a")
    [host_b] = bridge.start_hosts("b")
    drv = driver.LoxiLBProviderDriver()
    lb = loadbalancer(vip, [member_ip])
    drv.loadbalancer_create(lb)
    octavia.commit(lb)
    octavia.wait_documents(1)
    assert {pid for pid, _doc, _t in octavia.statuses} == {host_a.pid}
    assert sim.endpoints(vip) == {member_ip: 1}
    return host_a, host_b, drv, lb


def deleted_through_b(drv, lb, octavia, sim, host_b):
    """The load balancer cascade-deleted, the second status document b's, and LoxiLB empty."""
    octavia.set_pending("PENDING_DELETE", *keys(lb))
    drv.loadbalancer_delete(lb, cascade=True)
    deleted = octavia.wait_documents(2)[1]
    assert octavia.statuses[1][0] == host_b.pid
    assert provisioning(deleted) == {key: "DELETED" for key in keys(lb)}
    assert sim.rules() == {}


def test_a_host_that_lost_a_shard_does_not_bring_back_what_the_serving_host_deleted(bridge, octavia,
                                                                                     sim):
    """Each host keeps a mapping of its own and checks LoxiLB against it every 2 s. One that no longer
    consumes a load balancer's shard holds a stale mapping of it: repairing LoxiLB from it would serve a
    load balancer again that the serving host deleted."""
    vip = "192.0.2.16"
    host_a, host_b, drv, lb = created_through_a_with_b_standing_by(bridge, octavia, sim, vip, "10.0.6.1")

    # a loses its connection: b becomes the active consumer and deletes the load balancer.
    [before] = rabbit_connections_of(host_a.pid)
    close_from_management(host_a.pid)
    wait_for(lambda: [c for c in rabbit_connections_of(host_a.pid) if c != before], 30,
             "a to reconnect")
    bridge.wait_consumers(2)
    deleted_through_b(drv, lb, octavia, sim, host_b)

    # a's mapping still holds it; a's checks (every 2 s) must leave LoxiLB alone.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert sim.rules() == {}, "a host that no longer consumes the shard re-served a deleted LB"
        time.sleep(0.2)
    assert host_a.proc.poll() is None and host_b.proc.poll() is None


def test_a_load_balancer_another_host_created_is_served_by_the_host_that_takes_its_shard_over(
        bridge, octavia, sim):
    """b, standby, never sees the load balancer a creates. When a dies, b takes its shards over: it must
    adopt what LoxiLB holds for them, or a LoxiLB restart loses the load balancer until its next
    operation, and a delete through b answers DELETED with the load balancer still served."""
    vip = "192.0.2.17"
    host_a, host_b, drv, lb = created_through_a_with_b_standing_by(bridge, octavia, sim, vip, "10.0.7.1")

    host_a.proc.kill()
    host_a.proc.wait(5)
    # b's probes reach it once the broker gave it a's shards; it adopts, then reads back from Octavia.
    wait_for(lambda: "consumes other shards now" in host_b.log(), 30, "b to take the shards over")
    time.sleep(3)  # a check or two (every 2 s) to read the load balancer back
    sim.restart()
    assert sim.rules() == {}
    wait_for(lambda: sim.endpoints(vip) == {"10.0.7.1": 1}, 20,
             "b to bring back the rule of the load balancer a created")

    # Deleted through b, it is gone from LoxiLB.
    deleted_through_b(drv, lb, octavia, sim, host_b)
    assert host_b.proc.poll() is None


# Per load balancer, after its create: (action, member index, weight). Any two operations swapped
# either fails (an update or delete before the create) or changes LoxiLB's end state.
SEQUENCE = [("create", 1, 1), ("create", 2, 1), ("delete", 1, None), ("create", 3, 1),
            ("update", 2, 5), ("create", 4, 1), ("delete", 3, None), ("update", 4, 2),
            ("create", 5, 1)]
LBS = 20
OPS = LBS * (1 + len(SEQUENCE))  # 200


class Scenario:
    """20 load balancers, each created then changed by SEQUENCE, driven through the provider."""

    def __init__(self, octavia):
        self.octavia = octavia
        self.drv = driver.LoxiLBProviderDriver()
        self.lbs = [loadbalancer(f"192.0.2.{100 + i}", [f"10.1.{i}.100"]) for i in range(LBS)]
        self.members = [{} for _ in range(LBS)]
        self.expected = collections.defaultdict(list)  # lb id -> [(member id or None, provisioning)]
        self.lb_of_member = {}  # a host merges the reports of several load balancers into one document

    def op(self, i, step, hide_for=0.0):
        """Operation `step` of load balancer i; with hide_for, its member's row commits late."""
        lb = self.lbs[i]
        _listener, pool = parts(lb)
        if step == 0:
            self.octavia.set_pending("PENDING_CREATE", *keys(lb))
            self.drv.loadbalancer_create(lb)
            self.octavia.commit(lb)
            self.lb_of_member[pool.members[0].member_id] = lb.loadbalancer_id
            self.expected[lb.loadbalancer_id].append((pool.members[0].member_id, "ACTIVE"))
            return
        action, n, weight = SEQUENCE[step - 1]
        self.octavia.set_pending("PENDING_UPDATE", *parent_keys(lb))
        if action == "create":
            m = self.members[i][n] = member(pool.pool_id, f"10.1.{i}.{n}", weight)
            self.lb_of_member[m.member_id] = lb.loadbalancer_id
            self.octavia.set_pending("PENDING_CREATE", ("members", m.member_id))
            self.drv.member_create(m)
            pool.members.append(m)
        elif action == "update":
            m = self.members[i][n]
            self.drv.member_update(m, dm.Member(member_id=m.member_id, pool_id=pool.pool_id,
                                                weight=weight))
            self.octavia.set_pending("PENDING_UPDATE", ("members", m.member_id))
            m.weight = weight
        else:
            m = self.members[i][n]
            self.octavia.set_pending("PENDING_DELETE", ("members", m.member_id))
            self.drv.member_delete(m)
            pool.members.remove(m)  # its row stays until the host reports it DELETED
        self.octavia.commit(lb, hide_for=hide_for, hide={("members", m.member_id)})
        self.expected[lb.loadbalancer_id].append(
            (m.member_id, "DELETED" if action == "delete" else "ACTIVE"))
        return m

    def observed(self):
        """Per load balancer, the (member, provisioning) of each status document naming it, in arrival
        order, with an immediate repeat (an operation redelivered after a kill) counted once. A
        document may carry the reports of several load balancers (the host's status senders merge
        what is ready together)."""
        seen = collections.defaultdict(list)
        for document in self.octavia.documents():
            members = collections.defaultdict(list)
            for r in document.get("members", []):
                members[self.lb_of_member.get(r["id"])].append((r["id"], r["provisioning_status"]))
            for lb_id in [r["id"] for r in document.get("loadbalancers", [])]:
                entry = members[lb_id][0] if len(members[lb_id]) == 1 else (None, None)
                sequence = seen[lb_id]
                if not sequence or sequence[-1] != entry:
                    sequence.append(entry)
        return seen

    def done(self):
        seen = self.observed()
        return all(len(seen[lb.loadbalancer_id]) >= len(self.expected[lb.loadbalancer_id])
                   for lb in self.lbs)


def test_two_hosts_apply_every_operation_in_order_through_a_kill(bridge, octavia, sim):
    host_a, host_b = bridge.start_hosts("a", "b")
    scenario = Scenario(octavia)
    steps = [(i, step) for step in range(1 + len(SEQUENCE)) for i in range(LBS)]
    assert len(steps) == OPS == 200

    for i, step in steps[:OPS // 2]:
        scenario.op(i, step)
    # Kill the host that is applying (with single-active-consumer, the first to subscribe to a
    # shard), while it holds an operation it has not acked: one whose commit shows up late.
    wait_for(lambda: len(octavia.statuses) >= LBS, 20, "the creates' statuses")
    senders = collections.Counter(pid for pid, _doc, _t in octavia.statuses)
    victim = max((host_a, host_b), key=lambda h: senders[h.pid])
    survivor = host_b if victim is host_a else host_a
    victims_lbs = {r["id"] for pid, doc, _t in octavia.statuses
                   if pid == victim.pid for r in doc.get("loadbalancers", [])}
    remaining = steps[OPS // 2:]
    held = next((i, step) for i, step in remaining
                if scenario.lbs[i].loadbalancer_id in victims_lbs)
    remaining.remove(held)
    assert SEQUENCE[held[1] - 1][0] == "update"  # waits for its commit, unlike a delete
    held_member = scenario.op(*held, hide_for=1.5)
    time.sleep(0.5)
    victim.kill()
    killed_at = time.monotonic()
    for i, step in remaining:
        scenario.op(i, step)

    wait_for(scenario.done, 60, "every operation's status")
    seen = scenario.observed()
    for lb in scenario.lbs:
        assert seen[lb.loadbalancer_id] == scenario.expected[lb.loadbalancer_id], (
            lb.loadbalancer_id, seen[lb.loadbalancer_id], scenario.expected[lb.loadbalancer_id])
    errors = [d for d in octavia.documents() if "ERROR" in str(d)]
    assert errors == []
    assert octavia.pending() == {}

    # The survivor applied everything after the kill, including the victim's shards.
    after = [(pid, doc) for pid, doc, t in octavia.statuses if t > killed_at]
    assert {pid for pid, _doc in after} == {survivor.pid}
    assert victims_lbs <= {r["id"] for _pid, doc in after for r in doc.get("loadbalancers", [])}
    held_reports = [pid for pid, doc, _t in octavia.statuses
                    if ("members", held_member.member_id) in summary(doc)]
    assert held_reports[-1] == survivor.pid, "the operation in hand at the kill was not redelivered"
    for i, lb in enumerate(scenario.lbs):
        endpoints = sim.endpoints(lb.vip_address)
        assert set(endpoints) == {f"10.1.{i}.100", f"10.1.{i}.2", f"10.1.{i}.4", f"10.1.{i}.5"}
        # Weights 1, 5, 2, 1 as LoxiLB shares.
        assert endpoints[f"10.1.{i}.2"] > endpoints[f"10.1.{i}.4"] > endpoints[f"10.1.{i}.5"]
        assert endpoints[f"10.1.{i}.100"] == endpoints[f"10.1.{i}.5"]
    assert bridge.queues.consumers(f"{bridge.topic}.shard-0") == 1
