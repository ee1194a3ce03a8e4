"""The host killed (kill -9) in the middle of a burst of creates through the real API; octavia-driver-agent
stopped while a tree is created; and the delete race: a whole tree created and at once cascade-deleted,
again and again, while the host reconciles every 0.2 s."""
import concurrent.futures
import time

from octavialib import PENDING, SETTLE, after_delete, graph, wait_for, walk

TCP80 = (80, "tcp")


def test_kill9_host_in_a_burst(api, loxilb, env):
    count = 12
    vips = [api.vip4() for _ in range(count)]
    member = {vip: f"198.51.100.{60 + n}" for n, vip in enumerate(vips)}

    def create(vip):
        body = graph(api, vip, member[vip], member_port=8080)
        return vip, api.request("POST", "/loadbalancers", json={"loadbalancer": body})

    accepted, refused = {}, []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(create, vip) for vip in vips]

        # Kill the host once it holds accepted operations it has not reported yet. The burst's requests
        # may all be answered between two looks while their load balancers are still PENDING (statuses
        # take a driver-agent round trip): those count, so the database is asked first, and often.
        def in_flight():
            pending = [row for row in env.pending(api.project) if row[0] == "load_balancer"]
            if not pending and all(f.done() for f in futures):
                return ["the burst ended first"]
            return pending

        pending_at_kill = wait_for(in_flight, SETTLE, "a load balancer of the burst in PENDING_CREATE", interval=0.02)
        env.kill_host()
        time.sleep(0.5)  # requests of the burst meet no host meanwhile
        env.start_host()

        for future in concurrent.futures.as_completed(futures, timeout=120):
            vip, r = future.result()
            if r.status_code == 201:
                accepted[vip] = r.json()["loadbalancer"]["id"]
            else:
                # The provider could not reach the host: the API refused and rolled back.
                assert r.status_code == 500, f"create on {vip}: {r.status_code} {r.text[:400]}"
                refused.append(vip)
    api.lbs.extend(accepted.values())
    assert pending_at_kill != ["the burst ended first"], \
        f"no load balancer of the burst was seen PENDING_CREATE: {accepted}, refused {refused}"
    assert accepted, "no create of the burst was accepted"

    for vip, lb_id in accepted.items():
        tree = api.lb_settled(lb_id)
        assert len(list(walk(tree))) == 4, tree
        assert loxilb.endpoints(vip) == {TCP80: {(member[vip], 8080): 1}}, f"rules on {vip} (lb {lb_id})"
    for vip in refused:
        assert loxilb.rules(vip) == {}, f"a rule on {vip}, whose create Octavia refused"
    rows = env.query("SELECT vip.ip_address FROM load_balancer JOIN vip ON vip.load_balancer_id = "
                     "load_balancer.id WHERE project_id = %s", api.project)
    assert sorted(r[0] for r in rows) == sorted(accepted), "Octavia kept a load balancer it refused"

    for lb_id in accepted.values():
        api.delete("loadbalancers", lb_id, cascade=True)
    for lb_id in accepted.values():
        api.gone("loadbalancers", lb_id)
    api.assert_clean()


def test_statuses_wait_for_a_stopped_driver_agent(api, loxilb, env):
    """octavia-driver-agent killed, then a tree created: LoxiLB serves it, Octavia shows it PENDING_CREATE
    while the host sends its statuses again and again, and once the agent is back it is ACTIVE: no status
    was dropped. (The host keeps trying for as long as it takes; the unit tests cover outages longer than
    a test can wait.)"""
    env.kill_agent()
    try:
        vip, member = api.vip4(), "198.51.100.99"
        lb = api.create("loadbalancers", graph(api, vip, member, member_port=8080))
        api.lbs.append(lb["id"])
        wait_for(lambda: loxilb.endpoints(vip) == {TCP80: {(member, 8080): 1}}, SETTLE, f"LoxiLB to serve {vip}")
        time.sleep(2)  # the host meets no status socket, again and again
        assert api.get("loadbalancers", lb["id"])["provisioning_status"] == "PENDING_CREATE"
    finally:
        env.start_agent()
    tree = api.lb_settled(lb["id"])
    assert len(list(walk(tree))) == 4, tree
    retries = env.host_metrics("status_update_retries_total")
    assert any(float(v) > 0 for v in retries.values()), retries
    api.delete("loadbalancers", lb["id"], cascade=True)
    api.gone("loadbalancers", lb["id"])
    api.assert_clean()


def test_delete_race(api, loxilb, env):
    """LB + listener + pool + member, then a cascade delete as soon as Octavia allows it (ACTIVE), 12
    times, with reconciliation every 0.2 s (octavia.conf): LoxiLB must end empty and stay so."""
    for n in range(12):
        vip = api.vip4()
        lb = api.create("loadbalancers", graph(api, vip, f"198.51.100.{80 + n}", member_port=8080))
        api.lbs.append(lb["id"])
        seen = {}

        def active():
            seen["lb"] = api.get("loadbalancers", lb["id"])
            return seen["lb"]["provisioning_status"] not in PENDING

        # Polled fast: the delete should land right after the create is reported.
        wait_for(active, SETTLE, lambda: f"load balancer {lb['id']} to leave PENDING_* (last seen: "
                                         f"{seen['lb']['provisioning_status']})", interval=0.02)
        assert seen["lb"]["provisioning_status"] == "ACTIVE", seen["lb"]
        api.delete("loadbalancers", lb["id"], cascade=True)
        api.gone("loadbalancers", lb["id"])

    # Several reconciliation passes later nothing may have come back.
    api.assert_clean()
    time.sleep(1.0)

    def empty():
        assert not set(api.vips) & set(loxilb.vips()), f"rules came back: {loxilb.all()}"

    after_delete(empty)
    assert env.pending() == []
