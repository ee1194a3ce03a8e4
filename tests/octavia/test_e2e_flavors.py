"""Flavors through the real API: a flavor profile for the loxilb provider is checked by the host
(`validate_flavor`) when it is created, and a load balancer of that flavor reaches LoxiLB with it — here
the `bgp` key, which makes LoxiLB advertise the VIP (issue 13, "VIPs that reach LoxiLB")."""
import json

TCP80 = (80, "tcp")


def test_bgp_flavor_reaches_the_rules_and_a_bad_value_is_refused(api, loxilb):
    bad = api.request("POST", "/flavorprofiles", json={"flavorprofile": {
        "name": f"bad-{api.project}", "provider_name": "loxilb", "flavor_data": json.dumps({"bgp": "maybe"})}})
    assert bad.status_code in (400, 501), bad.text
    assert "bgp" in bad.text and "true or false" in bad.text, bad.text

    profile = api.request("POST", "/flavorprofiles", 201, json={"flavorprofile": {
        "name": f"bgp-{api.project}", "provider_name": "loxilb", "flavor_data": json.dumps({"bgp": True})}}
    ).json()["flavorprofile"]
    flavor = api.request("POST", "/flavors", 201, json={"flavor": {
        "name": f"bgp-{api.project}", "flavor_profile_id": profile["id"], "enabled": True}}).json()["flavor"]

    with_bgp, without = api.vip4(), api.vip4()
    for vip, extra in ((with_bgp, {"flavor_id": flavor["id"]}), (without, {})):
        lb = api.loadbalancer(vip, **extra)
        api.lb_settled(lb["id"])
        listener = api.create("listeners", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80})
        api.lb_settled(lb["id"])
        pool = api.create("pools", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"})
        api.lb_settled(lb["id"])
        api.create("members", {"pool_id": pool["id"], "address": "198.51.100.71", "protocol_port": 80})
        api.lb_settled(lb["id"])
    assert loxilb.rules(with_bgp)[TCP80]["serviceArguments"].get("bgp") is True
    assert not loxilb.rules(without)[TCP80]["serviceArguments"].get("bgp")

    for lb_id in list(api.lbs):
        api.delete("loadbalancers", lb_id, cascade=True)
        api.gone("loadbalancers", lb_id)
    api.request("DELETE", f"/flavors/{flavor['id']}", 204)
    api.request("DELETE", f"/flavorprofiles/{profile['id']}", 204)
    api.assert_clean()
