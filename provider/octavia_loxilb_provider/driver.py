"""The provider driver octavia-api loads: it forwards every call to the loxilb-octavia host.

Each mutating call is first validated synchronously by the host (so a refusal reaches the user as
an API error and Octavia rolls back), then cast with the same arguments. Nothing is decided here.
"""
from octavia_lib.api.drivers import data_models
from octavia_lib.api.drivers import exceptions
from octavia_lib.api.drivers import provider_base

from octavia_loxilb_provider import resolve
from octavia_loxilb_provider import transport


def _dict(obj):
    # render_unsets=False keeps "unchanged" (absent) apart from "cleared" (null) in updates.
    return obj.to_dict(recurse=True, render_unsets=False)


def _attr(*objs, name):
    """The first set value of `name` among objs (for updates: old, then new)."""
    for obj in objs:
        value = getattr(obj, name, None)
        if value is not None and not isinstance(value, data_models.UnsetType):
            return value
    return None


def _list(obj, name):
    value = getattr(obj, name, None)
    return value if isinstance(value, list) else []


def _remember_tree(loadbalancer):
    """A graph create's listeners, pools and L7 policies belong to its load balancer: remembered, their
    later operations in this process need no get-socket lookup, and are ordered by their load balancer
    even while the driver-agent cannot be asked (over AMQP the load balancer picks the shard queue)."""
    lb_id = loadbalancer.loadbalancer_id
    pools = list(_list(loadbalancer, "pools"))
    for listener in _list(loadbalancer, "listeners"):
        resolve.remember("listeners", _attr(listener, name="listener_id"), lb_id)
        default_pool = _attr(listener, name="default_pool")
        if default_pool is not None:
            pools.append(default_pool)
        for policy in _list(listener, "l7policies"):
            resolve.remember("l7policies", _attr(policy, name="l7policy_id"), lb_id)
    for pool in pools:
        resolve.remember("pools", _attr(pool, name="pool_id"), lb_id)


def _forward(method, loadbalancer_id, **args):
    args["loadbalancer_id"] = loadbalancer_id
    host = transport.host()
    host.call("validate", {"operation": method, "args": args})
    host.cast(method, args)


class LoxiLBProviderDriver(provider_base.ProviderDriver):
    # No __init__: Octavia builds a driver object for every API request, so anything costly
    # (transports, lookups) is created on first use and cached per process.

    def create_vip_port(self, loadbalancer_id, project_id, vip_dictionary,
                        additional_vip_dicts=None):
        # The host does not manage Neutron ports: this makes Octavia allocate the VIP port
        # itself (and own it, so it is released when the load balancer is deleted).
        raise exceptions.NotImplementedError(
            user_fault_string="The loxilb provider lets Octavia create the VIP port.",
            operator_fault_string="The loxilb provider lets Octavia create the VIP port.")

    # Load balancers

    def loadbalancer_create(self, loadbalancer):
        _forward("loadbalancer_create", loadbalancer.loadbalancer_id,
                 loadbalancer=_dict(loadbalancer))
        _remember_tree(loadbalancer)

    def loadbalancer_update(self, old_loadbalancer, new_loadbalancer):
        _forward("loadbalancer_update",
                 _attr(old_loadbalancer, new_loadbalancer, name="loadbalancer_id"),
                 old_loadbalancer=_dict(old_loadbalancer),
                 new_loadbalancer=_dict(new_loadbalancer))

    def loadbalancer_delete(self, loadbalancer, cascade=False):
        _forward("loadbalancer_delete", loadbalancer.loadbalancer_id,
                 loadbalancer=_dict(loadbalancer), cascade=cascade)

    def loadbalancer_failover(self, loadbalancer_id):
        _forward("loadbalancer_failover", loadbalancer_id)

    def loadbalancer_failover_with_flavor(self, loadbalancer_id, flavor_id):
        # octavia-lib 3.12 only; no Octavia release calls it yet. A LoxiLB load balancer has no
        # appliance of its own to rebuild with another flavor, so this is a plain failover.
        self.loadbalancer_failover(loadbalancer_id)

    # Listeners

    def _listener_lb(self, *listeners):
        return resolve.loadbalancer_id("listeners", _attr(*listeners, name="listener_id"),
                                       known=_attr(*listeners, name="loadbalancer_id"))

    def listener_create(self, listener):
        _forward("listener_create", self._listener_lb(listener), listener=_dict(listener))

    def listener_update(self, old_listener, new_listener):
        _forward("listener_update", self._listener_lb(old_listener, new_listener),
                 old_listener=_dict(old_listener), new_listener=_dict(new_listener))

    def listener_delete(self, listener):
        _forward("listener_delete", self._listener_lb(listener), listener=_dict(listener))

    # Pools

    def _pool_lb(self, *pools):
        return resolve.loadbalancer_id("pools", _attr(*pools, name="pool_id"),
                                       known=_attr(*pools, name="loadbalancer_id"))

    def pool_create(self, pool):
        _forward("pool_create", self._pool_lb(pool), pool=_dict(pool))

    def pool_update(self, old_pool, new_pool):
        _forward("pool_update", self._pool_lb(old_pool, new_pool),
                 old_pool=_dict(old_pool), new_pool=_dict(new_pool))

    def pool_delete(self, pool):
        _forward("pool_delete", self._pool_lb(pool), pool=_dict(pool))

    # Members

    def _member_lb(self, *members):
        return resolve.loadbalancer_id("pools", _attr(*members, name="pool_id"))

    def member_create(self, member):
        _forward("member_create", self._member_lb(member), member=_dict(member))

    def member_update(self, old_member, new_member):
        _forward("member_update", self._member_lb(old_member, new_member),
                 old_member=_dict(old_member), new_member=_dict(new_member))

    def member_delete(self, member):
        _forward("member_delete", self._member_lb(member), member=_dict(member))

    def member_batch_update(self, pool_id, members):
        _forward("member_batch_update", resolve.loadbalancer_id("pools", pool_id),
                 pool_id=pool_id, members=[_dict(m) for m in members])

    # Health monitors

    def _hm_lb(self, *healthmonitors):
        return resolve.loadbalancer_id("pools", _attr(*healthmonitors, name="pool_id"))

    def health_monitor_create(self, healthmonitor):
        _forward("health_monitor_create", self._hm_lb(healthmonitor),
                 healthmonitor=_dict(healthmonitor))

    def health_monitor_update(self, old_healthmonitor, new_healthmonitor):
        _forward("health_monitor_update", self._hm_lb(old_healthmonitor, new_healthmonitor),
                 old_healthmonitor=_dict(old_healthmonitor),
                 new_healthmonitor=_dict(new_healthmonitor))

    def health_monitor_delete(self, healthmonitor):
        _forward("health_monitor_delete", self._hm_lb(healthmonitor),
                 healthmonitor=_dict(healthmonitor))

    # L7 policies and rules: whether they are supported is the host's answer to `validate`.

    def _l7policy_lb(self, *policies):
        return resolve.loadbalancer_id("listeners", _attr(*policies, name="listener_id"),
                                       child=("l7policies", _attr(*policies, name="l7policy_id")))

    def l7policy_create(self, l7policy):
        _forward("l7policy_create", self._l7policy_lb(l7policy), l7policy=_dict(l7policy))

    def l7policy_update(self, old_l7policy, new_l7policy):
        _forward("l7policy_update", self._l7policy_lb(old_l7policy, new_l7policy),
                 old_l7policy=_dict(old_l7policy), new_l7policy=_dict(new_l7policy))

    def l7policy_delete(self, l7policy):
        _forward("l7policy_delete", self._l7policy_lb(l7policy), l7policy=_dict(l7policy))

    def _l7rule_lb(self, *rules):
        return resolve.loadbalancer_id("l7policies", _attr(*rules, name="l7policy_id"))

    def l7rule_create(self, l7rule):
        _forward("l7rule_create", self._l7rule_lb(l7rule), l7rule=_dict(l7rule))

    def l7rule_update(self, old_l7rule, new_l7rule):
        _forward("l7rule_update", self._l7rule_lb(old_l7rule, new_l7rule),
                 old_l7rule=_dict(old_l7rule), new_l7rule=_dict(new_l7rule))

    def l7rule_delete(self, l7rule):
        _forward("l7rule_delete", self._l7rule_lb(l7rule), l7rule=_dict(l7rule))

    # Flavors and availability zones: synchronous calls, answered by the host.

    def get_supported_flavor_metadata(self):
        return transport.host().call("get_supported_flavor_metadata", {})

    def validate_flavor(self, flavor_metadata):
        transport.host().call("validate_flavor", {"flavor_metadata": flavor_metadata})

    def get_supported_availability_zone_metadata(self):
        return transport.host().call("get_supported_availability_zone_metadata", {})

    def validate_availability_zone(self, availability_zone_metadata):
        transport.host().call("validate_availability_zone",
                              {"availability_zone_metadata": availability_zone_metadata})
