"""What the policy refuses reaches the user as HTTP 501 from the real API, and nothing changes: Octavia
rolls its transaction back (no new object, statuses back to ACTIVE, the old values kept) and LoxiLB's
rules stay as they were."""
import pytest

TCP80 = (80, "tcp")


@pytest.fixture
def tree(api, loxilb):
    """A load balancer with a TCP listener, a pool and a member, ACTIVE, with its rule."""
    vip = api.vip4()
    lb = api.loadbalancer(vip)
    api.lb_settled(lb["id"])
    listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80})
    api.lb_settled(lb["id"])
    pool = api.create("pools", {"listener_id": listener["id"], "protocol": "TCP",
                                "lb_algorithm": "ROUND_ROBIN"})
    api.lb_settled(lb["id"])
    member = api.create("members", {"pool_id": pool["id"], "address": "198.51.100.51", "protocol_port": 80})
    api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(vip)[TCP80]) == {("198.51.100.51", 80)}
    return dict(vip=vip, lb=lb, listener=listener, pool=pool, member=member)


def counts(env, project):
    return {table: env.query(f"SELECT COUNT(*) FROM {table} WHERE project_id = %s", project)[0][0]
            for table in ("listener", "pool", "member", "health_monitor", "l7policy")}


def refused(api, loxilb, tree, method, *args, **kwargs):
    """Runs one request that must be refused with 501; asserts nothing changed."""
    before_rules = loxilb.rules(tree["vip"])
    before_rows = counts(api.env, api.project)
    r = method(*args, expect=501, **kwargs)
    fault = r.json().get("faultstring", "")
    assert "loxilb" in fault.lower() or "not supported" in fault.lower(), fault
    api.lb_settled(tree["lb"]["id"])
    assert counts(api.env, api.project) == before_rows
    assert api.env.pending(api.project) == []
    assert loxilb.rules(tree["vip"]) == before_rules
    return fault


def test_refused_creates(api, loxilb, tree):
    lb, listener, pool = tree["lb"], tree["listener"], tree["pool"]
    # HTTP is the http-fullproxy policy's; the default policy refuses it.
    refused(api, loxilb, tree, api.create, "listeners",
            {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 8080})
    refused(api, loxilb, tree, api.create, "listeners",
            {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 81, "connection_limit": 100})
    refused(api, loxilb, tree, api.create, "pools",
            {"loadbalancer_id": lb["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
             "session_persistence": {"type": "APP_COOKIE", "cookie_name": "c"}})
    refused(api, loxilb, tree, api.create, "members",
            {"pool_id": pool["id"], "address": "198.51.100.52", "protocol_port": 80, "backup": True})
    refused(api, loxilb, tree, api.create, "healthmonitors",
            {"pool_id": pool["id"], "type": "TLS-HELLO", "delay": 5, "timeout": 3, "max_retries": 3})
    refused(api, loxilb, tree, api.create, "l7policies",
            {"listener_id": listener["id"], "action": "REJECT"})

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_refused_updates(api, loxilb, tree):
    lb, listener, pool, member = tree["lb"], tree["listener"], tree["pool"], tree["member"]
    refused(api, loxilb, tree, api.update, "members", member["id"], {"backup": True}, parent=pool["id"])
    assert api.get("members", member["id"], parent=pool["id"])["backup"] is False
    refused(api, loxilb, tree, api.update, "pools", pool["id"],
            {"session_persistence": {"type": "HTTP_COOKIE"}})
    assert api.get("pools", pool["id"])["session_persistence"] is None
    refused(api, loxilb, tree, api.update, "listeners", listener["id"], {"connection_limit": 5})
    assert api.get("listeners", listener["id"])["connection_limit"] == -1
    fault = refused(api, loxilb, tree, api.update, "listeners", listener["id"], {"allowed_cidrs": ["10.0.0.0/8"]})
    assert "28 rules" in fault, fault
    assert api.get("listeners", listener["id"])["allowed_cidrs"] in (None, [])
    # Different weights need ROUND_ROBIN: refused on a SOURCE_IP pool.
    api.update("pools", pool["id"], {"lb_algorithm": "SOURCE_IP"})
    api.lb_settled(lb["id"])
    api.create("members", {"pool_id": pool["id"], "address": "198.51.100.53", "protocol_port": 80})
    api.lb_settled(lb["id"])
    refused(api, loxilb, tree, api.update, "members", member["id"], {"weight": 5}, parent=pool["id"])
    assert api.get("members", member["id"], parent=pool["id"])["weight"] == 1

    # Still usable after the refusals.
    api.update("members", member["id"], {"admin_state_up": False}, parent=pool["id"])
    api.lb_settled(lb["id"])
    assert set(loxilb.endpoints(tree["vip"])[TCP80]) == {("198.51.100.53", 80)}

    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()
