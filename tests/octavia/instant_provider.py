"""A provider that only reports (`make bench-octavia`'s `instant` provider; never installed anywhere else).

It programs nothing: each load balancer create reports the whole graph ACTIVE, each delete reports it
DELETED, in one status document sent to Octavia's driver-agent right after Octavia commits the request's
transaction (a document sent before the commit would update rows not yet there). No provider that
reports once per request can be faster through Octavia's status socket, so its figures are what Octavia
itself allows such a provider; the bench sets the loxilb provider's beside them.

Octavia loads it by the entry point the bench environment writes (`Environment(instant_provider=True)`).
"""
import threading

from octavia_lib.api.drivers import driver_lib
from octavia_lib.api.drivers import exceptions
from octavia_lib.api.drivers import provider_base
from oslo_config import cfg

# The loxilb provider's own notice of Octavia's commit (SQLAlchemy's after_commit in the request's
# thread); an instance of its own, so its pending reports are apart from the loxilb provider's tickets.
from octavia_loxilb_provider.transport import CommitNotices

_commits = CommitNotices()


def _library():
    conf = cfg.CONF.driver_agent
    return driver_lib.DriverLibrary(status_socket=conf.status_socket_path, stats_socket=conf.stats_socket_path,
                                    get_socket=conf.get_socket_path)


def _report_after_commit(document):
    def ended(how, _tickets):
        if how == "committed":
            threading.Thread(target=_library().update_loadbalancer_status, args=(document,), daemon=True).start()

    _commits.ticket(ended)


def _graph(lb, provisioning, operating):
    """The status document for a load balancer and everything under it."""
    doc = {"loadbalancers": [], "listeners": [], "pools": [], "members": [], "healthmonitors": []}
    seen = set()

    def add(kind, obj_id):
        if obj_id and (kind, obj_id) not in seen:
            seen.add((kind, obj_id))
            doc[kind].append({"id": obj_id, "provisioning_status": provisioning, "operating_status": operating})

    def pool(p):
        add("pools", p.get("pool_id"))
        for m in p.get("members") or []:
            add("members", m.get("member_id"))
        if p.get("healthmonitor"):
            add("healthmonitors", p["healthmonitor"].get("healthmonitor_id"))

    add("loadbalancers", lb.get("loadbalancer_id"))
    for listener in lb.get("listeners") or []:
        add("listeners", listener.get("listener_id"))
        if listener.get("default_pool"):
            pool(listener["default_pool"])
    for p in lb.get("pools") or []:
        pool(p)
    return doc


class InstantProviderDriver(provider_base.ProviderDriver):
    def create_vip_port(self, loadbalancer_id, project_id, vip_dictionary, additional_vip_dicts=None):
        raise exceptions.NotImplementedError(user_fault_string="Octavia allocates the VIP port.",
                                             operator_fault_string="Octavia allocates the VIP port.")

    def loadbalancer_create(self, loadbalancer):
        _report_after_commit(_graph(loadbalancer.to_dict(recurse=True), "ACTIVE", "ONLINE"))

    def loadbalancer_delete(self, loadbalancer, cascade=False):
        _report_after_commit(_graph(loadbalancer.to_dict(recurse=True), "DELETED", "OFFLINE"))
