"""Which load balancer an object belongs to, so that casts can be kept in order per load balancer.

Parents are read from Octavia's driver-agent get socket with a small client of our own:
octavia-lib's DriverLibrary waits minutes for missing sockets in its constructor.
"""
import logging

from octavia_loxilb_provider import config
from octavia_loxilb_provider import transport

LOG = logging.getLogger(__name__)

GET_TIMEOUT = 5  # seconds; octavia-lib's own socket timeout
CACHE_LIMIT = 10000

# (object kind, id) -> load balancer id, per process. An object never moves to another load
# balancer, so entries never go stale; ids of deleted objects are merely dead weight.
_cache = {}


def remember(kind, obj_id, loadbalancer_id):
    if obj_id and loadbalancer_id:
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[(kind, obj_id)] = loadbalancer_id


def loadbalancer_id(kind, obj_id, known=None, child=None):
    """The load balancer of object `kind`/`obj_id` ("listeners", "pools" or "l7policies").

    `known` is the load balancer id when the caller already has it (listener and pool objects carry
    it); it is remembered for later children, and so is `child` (a (kind, id) pair) once resolved.
    """
    try:
        lb_id = known or _lookup(kind, obj_id)
        remember(kind, obj_id, lb_id)
        if child:
            remember(*child, lb_id)
        return lb_id
    except Exception as err:  # anything: a failed lookup must not fail the API request
        # Octavia itself lets only one operation at a time run on a load balancer (it stays
        # PENDING_* until the host reports the outcome), so two casts for one load balancer are
        # hardly ever in flight together: ordering by another id only weakens a corner case.
        LOG.warning("loxilb: could not find the load balancer of %s %s through the driver-agent "
                    "get socket %s (%s); ordering this operation by %s instead",
                    kind, obj_id, config.get_socket_path(), err, obj_id)
        return obj_id


def _lookup(kind, obj_id):
    if (kind, obj_id) in _cache:
        return _cache[(kind, obj_id)]
    obj = transport.unix_request(config.get_socket_path(), {"object": kind, "id": obj_id},
                                 GET_TIMEOUT)
    if not obj:
        raise LookupError("not found")
    if kind == "l7policies":
        lb_id = _lookup("listeners", obj["listener_id"])
    else:
        lb_id = obj["loadbalancer_id"]
    if not lb_id:
        raise LookupError("no loadbalancer_id in the reply")
    remember(kind, obj_id, lb_id)
    return lb_id


def reset():
    _cache.clear()
