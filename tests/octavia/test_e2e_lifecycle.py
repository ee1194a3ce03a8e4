"""Every object kind's lifecycle through the real Octavia API: after each step Octavia's statuses (the
load balancer and everything under it ACTIVE, nothing PENDING) and LoxiLB's rules."""
from octavialib import after_delete, walk

TCP80 = (80, "tcp")
UDP53 = (53, "udp")


def rule(loxilb, vip, key):
    rules = loxilb.rules(vip)
    assert key in rules, f"no LoxiLB rule {key} on {vip}: {rules}"
    return rules[key]


def expect(condition, shown):
    assert condition, shown


def test_every_kind_create_update_delete(api, loxilb):
    vip = api.vip4()
    lb = api.loadbalancer(vip, name="lifecycle")
    api.lb_settled(lb["id"])
    # A listener without a pool, or a pool without members, has no rule: never a placeholder.
    assert loxilb.rules(vip) == {}

    listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80})
    api.lb_settled(lb["id"])
    assert loxilb.rules(vip) == {}

    pool = api.create("pools", {"listener_id": listener["id"], "protocol": "TCP",
                                "lb_algorithm": "ROUND_ROBIN"})
    api.lb_settled(lb["id"])
    assert loxilb.rules(vip) == {}

    a = api.create("members", {"pool_id": pool["id"], "address": "198.51.100.11", "protocol_port": 8080})
    api.lb_settled(lb["id"])
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.11", 8080): 1}}
    name = rule(loxilb, vip, TCP80)["serviceArguments"]["name"]
    assert name == f"octavia_lb-{lb['id']}_listener-{listener['id']}_pool-{pool['id']}"

    b = api.create("members", {"pool_id": pool["id"], "address": "198.51.100.12", "protocol_port": 8080})
    api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(vip)[TCP80]) == {("198.51.100.11", 8080), ("198.51.100.12", 8080)}

    hm = api.create("healthmonitors", {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3,
                                       "max_retries": 3, "max_retries_down": 2})
    api.lb_settled(lb["id"])
    args = rule(loxilb, vip, TCP80)["serviceArguments"]
    assert (args.get("probetype"), args.get("probeport"), args.get("monitor")) == ("tcp", 8080, True), args

    # LoxiLB's rule list does not show the probe period and retries: the update must leave the rule
    # probing, and the monitor ACTIVE.
    api.update("healthmonitors", hm["id"], {"delay": 7, "max_retries_down": 4})
    api.lb_settled(lb["id"])
    assert api.get("healthmonitors", hm["id"])["delay"] == 7
    assert rule(loxilb, vip, TCP80)["serviceArguments"].get("probetype") == "tcp"

    api.update("pools", pool["id"], {"lb_algorithm": "SOURCE_IP_PORT"})
    api.lb_settled(lb["id"])
    assert rule(loxilb, vip, TCP80)["serviceArguments"].get("sel", 0) == 1

    api.update("pools", pool["id"], {"lb_algorithm": "ROUND_ROBIN"})
    api.lb_settled(lb["id"])
    assert rule(loxilb, vip, TCP80)["serviceArguments"].get("sel", 0) == 0

    # Different weights: LoxiLB's weighted selection, weights as percentages.
    api.update("members", b["id"], {"weight": 3}, parent=pool["id"])
    api.lb_settled(lb["id"])
    assert rule(loxilb, vip, TCP80)["serviceArguments"].get("sel", 0) == 2
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.11", 8080): 25, ("198.51.100.12", 8080): 75}}

    # Allow-all sources are LoxiLB's default: nothing is sent for them (a restriction is refused, see
    # test_e2e_refusals: LoxiLB holds source restrictions on its first 28 rules only).
    api.update("listeners", listener["id"], {"allowed_cidrs": ["0.0.0.0/0"],
                                             "timeout_client_data": 120000})
    api.lb_settled(lb["id"])
    r = rule(loxilb, vip, TCP80)
    assert not r.get("allowedSources"), r
    assert r["serviceArguments"]["inactiveTimeOut"] == 120, r

    api.update("loadbalancers", lb["id"], {"name": "renamed", "description": "e2e"})
    api.lb_settled(lb["id"])
    assert set(loxilb.rules(vip)) == {TCP80}

    # A disabled load balancer has no rule; enabling it programs the rule again.
    api.update("loadbalancers", lb["id"], {"admin_state_up": False})
    api.lb_settled(lb["id"])
    assert loxilb.rules(vip) == {}
    api.update("loadbalancers", lb["id"], {"admin_state_up": True})
    api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(vip)[TCP80]) == {("198.51.100.11", 8080), ("198.51.100.12", 8080)}

    api.delete("members", a["id"], parent=pool["id"])
    api.gone("members", a["id"], parent=pool["id"])
    api.lb_settled(lb["id"])
    after_delete(lambda: expect(set(loxilb.endpoints(vip)[TCP80]) == {("198.51.100.12", 8080)},
                                loxilb.rules(vip)))

    api.delete("healthmonitors", hm["id"])
    api.gone("healthmonitors", hm["id"])
    api.lb_settled(lb["id"])
    after_delete(lambda: expect("probetype" not in rule(loxilb, vip, TCP80)["serviceArguments"],
                                loxilb.rules(vip)))

    api.delete("pools", pool["id"])
    api.gone("pools", pool["id"])
    api.lb_settled(lb["id"])
    after_delete(lambda: expect(loxilb.rules(vip) == {}, loxilb.rules(vip)))

    api.delete("listeners", listener["id"])
    api.gone("listeners", listener["id"])
    api.lb_settled(lb["id"])

    api.delete("loadbalancers", lb["id"])
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_two_listeners(api, loxilb):
    vip = api.vip4()
    lb = api.loadbalancer(vip)
    api.lb_settled(lb["id"])
    pools = {}
    for proto, port in (("TCP", 80), ("UDP", 53)):
        listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": proto,
                                            "protocol_port": port})
        api.lb_settled(lb["id"])
        pool = api.create("pools", {"listener_id": listener["id"], "protocol": proto,
                                    "lb_algorithm": "ROUND_ROBIN"})
        api.lb_settled(lb["id"])
        api.create("members", {"pool_id": pool["id"], "address": "198.51.100.21", "protocol_port": port})
        api.lb_settled(lb["id"])
        pools[port] = (listener, pool)
    # Two independent rules on one VIP.
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.21", 80): 1},
                                     UDP53: {("198.51.100.21", 53): 1}}

    # A member on one listener's pool leaves the other rule alone.
    listener53, pool53 = pools[53]
    api.create("members", {"pool_id": pool53["id"], "address": "198.51.100.22", "protocol_port": 53})
    api.lb_settled(lb["id"])
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.21", 80): 1},
                                     UDP53: {("198.51.100.21", 53): 1, ("198.51.100.22", 53): 1}}

    # Disabling one listener removes its rule only.
    api.update("listeners", listener53["id"], {"admin_state_up": False})
    api.lb_settled(lb["id"])
    assert set(loxilb.rules(vip)) == {TCP80}
    api.update("listeners", listener53["id"], {"admin_state_up": True})
    api.lb_settled(lb["id"])
    assert set(loxilb.rules(vip)) == {TCP80, UDP53}

    # Deleting the TCP listener and its pool leaves the UDP rule.
    listener80, pool80 = pools[80]
    api.delete("pools", pool80["id"])
    api.lb_settled(lb["id"])
    api.delete("listeners", listener80["id"])
    api.gone("listeners", listener80["id"])
    api.lb_settled(lb["id"])
    assert set(loxilb.rules(vip)) == {UDP53}

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_ipv6(api, loxilb):
    vip = api.vip6()
    lb = api.loadbalancer(vip)
    api.lb_settled(lb["id"])
    listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 443})
    api.lb_settled(lb["id"])
    pool = api.create("pools", {"listener_id": listener["id"], "protocol": "TCP",
                                "lb_algorithm": "SOURCE_IP"})
    api.lb_settled(lb["id"])
    for host in ("2001:db8:1::11", "2001:db8:1::12"):
        api.create("members", {"pool_id": pool["id"], "address": host, "protocol_port": 8443})
        api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(vip)[(443, "tcp")]) == {("2001:db8:1::11", 8443), ("2001:db8:1::12", 8443)}
    assert rule(loxilb, vip, (443, "tcp"))["serviceArguments"].get("sel", 0) == 3

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_member_batch_update(api, loxilb):
    vip = api.vip4()
    lb = api.loadbalancer(vip)
    api.lb_settled(lb["id"])
    listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80})
    api.lb_settled(lb["id"])
    pool = api.create("pools", {"listener_id": listener["id"], "protocol": "TCP",
                                "lb_algorithm": "ROUND_ROBIN"})
    api.lb_settled(lb["id"])
    for n in (31, 32, 33):
        api.create("members", {"pool_id": pool["id"], "address": f"198.51.100.{n}", "protocol_port": 80})
        api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(vip)[TCP80]) == {(f"198.51.100.{n}", 80) for n in (31, 32, 33)}

    # Keep .32 (new weight), drop .31 and .33, add .34 and .35: one request.
    api.batch_members(pool["id"], [
        {"address": "198.51.100.32", "protocol_port": 80, "weight": 1},
        {"address": "198.51.100.34", "protocol_port": 80},
        {"address": "198.51.100.35", "protocol_port": 80, "admin_state_up": False},
    ])
    api.lb_settled(lb["id"])
    members = {m["address"]: m for m in api.members(pool["id"])}
    assert set(members) == {"198.51.100.32", "198.51.100.34", "198.51.100.35"}
    assert all(m["provisioning_status"] == "ACTIVE" for m in members.values()), members
    # A disabled member has no endpoint.
    assert set(loxilb.endpoints(vip)[TCP80]) == {("198.51.100.32", 80), ("198.51.100.34", 80)}

    # An empty batch removes every member: no enabled member, no rule.
    api.batch_members(pool["id"], [])
    api.lb_settled(lb["id"])
    assert api.members(pool["id"]) == []
    after_delete(lambda: expect(loxilb.rules(vip) == {}, loxilb.rules(vip)))

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_operating_statuses(api, loxilb):
    """What `openstack loadbalancer status show` shows: the operating statuses the provider reports, as
    Octavia's driver-agent stored them — a monitored member serving ONLINE, a member of weight 0
    DRAINING, a disabled one OFFLINE, members of a pool without a monitor NO_MONITOR."""
    vip = api.vip4()
    lb = api.loadbalancer(vip, listeners=[
        {"protocol": "TCP", "protocol_port": 80,
         "default_pool": {"name": "statuses", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                          "members": [{"address": "198.51.100.51", "protocol_port": 80},
                                      {"address": "198.51.100.52", "protocol_port": 80, "weight": 0}],
                          "healthmonitor": {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}}},
    ])
    tree = api.lb_settled(lb["id"])

    def operating():
        tree = api.status_tree(lb["id"])["loadbalancer"]
        return {o.get("address") or kind: o.get("operating_status") for kind, o in walk(tree)
                if kind != "health_monitor"}

    assert operating() == {"loadbalancer": "ONLINE", "listener": "ONLINE", "pool": "ONLINE",
                           "198.51.100.51": "ONLINE", "198.51.100.52": "DRAINING"}, operating()
    pool_id = next(o["id"] for kind, o in walk(tree) if kind == "pool")
    member = next(o for kind, o in walk(tree) if kind == "member" and o.get("address") == "198.51.100.51")
    api.update("members", member["id"], {"admin_state_up": False}, parent=pool_id)
    api.lb_settled(lb["id"])
    assert operating()["198.51.100.51"] == "OFFLINE", operating()

    hm = next(o for kind, o in walk(tree) if kind == "health_monitor")
    api.delete("healthmonitors", hm["id"])
    api.lb_settled(lb["id"])
    shown = operating()
    assert (shown["198.51.100.51"], shown["198.51.100.52"]) == ("OFFLINE", "DRAINING"), shown
    api.update("members", member["id"], {"admin_state_up": True}, parent=pool_id)
    api.lb_settled(lb["id"])
    assert operating()["198.51.100.51"] == "NO_MONITOR", operating()

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_cascade_delete(api, loxilb):
    """A whole tree (two listeners, pools, members, a monitor) created in one request (Octavia's graph
    create), failed over, then one cascade delete: every object gone, no rule left."""
    vip = api.vip4()
    member = lambda n, port: {"address": f"198.51.100.{n}", "protocol_port": port}  # noqa: E731
    lb = api.loadbalancer(vip, listeners=[
        {"protocol": "TCP", "protocol_port": 80,
         "default_pool": {"name": "tcp", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                          "members": [member(41, 80), member(42, 80)],
                          "healthmonitor": {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}}},
        {"protocol": "UDP", "protocol_port": 53,
         "default_pool": {"name": "udp", "protocol": "UDP", "lb_algorithm": "SOURCE_IP_PORT",
                          "members": [member(43, 53)]}},
    ])
    tree = api.lb_settled(lb["id"])
    assert len([o for kind, o in walk(tree) if kind == "member"]) == 3
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.41", 80): 1, ("198.51.100.42", 80): 1},
                                     UDP53: {("198.51.100.43", 53): 1}}

    # A failover through the API (the provider compares the load balancer's rules with what LoxiLB lists
    # and repairs them; a drift's repair is tested in tests/tests/suite/failover.rs, since this
    # environment reconciles every 0.2 s anyway): back to ACTIVE, the rules as they were.
    api.request("PUT", f"/loadbalancers/{lb['id']}/failover", expect=202)
    api.lb_settled(lb["id"])
    assert loxilb.endpoints(vip) == {TCP80: {("198.51.100.41", 80): 1, ("198.51.100.42", 80): 1},
                                     UDP53: {("198.51.100.43", 53): 1}}

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    for kind, o in walk(tree):
        if kind in ("listener", "pool"):
            assert api.get(kind + "s", o["id"]) is None, f"{kind} {o['id']} outlived its cascade delete"
    api.assert_clean()
