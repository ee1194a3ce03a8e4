"""The [driver_loxilb] options this package reads.

The host reads the same section of octavia.conf for its own keys and refuses unknown ones, so the
names here are part of the contract with the host: do not add or rename one on this side alone.
"""
from oslo_config import cfg

GROUP = "driver_loxilb"

OPTS = [
    cfg.StrOpt("transport", default="unix",
               choices=[("unix", "one host on this node, reached on socket_path"),
                        ("amqp", "one or more hosts, reached by oslo.messaging over "
                                 "[DEFAULT] transport_url")],
               help="How octavia-api reaches the loxilb-octavia host."),
    cfg.StrOpt("socket_path", default="/var/run/octavia/loxilb-host.sock",
               help="Unix socket of the loxilb-octavia host (transport = unix)."),
    cfg.StrOpt("rpc_topic", default="loxilb_octavia",
               help="oslo.messaging topic the hosts listen on (transport = amqp)."),
    cfg.IntOpt("rpc_shards", default=8, min=1, max=1024,
               help="Number of cast shards; must equal the hosts' value (transport = amqp)."),
    cfg.FloatOpt("validate_timeout", default=10, min=0.1,
               help="Seconds to wait for the host's answer to a synchronous call."),
]

# Octavia's own option: registered by octavia-api; the default is only for other processes.
DEFAULT_GET_SOCKET = "/var/run/octavia/get.sock"


def register(conf=None):
    """Register the options; safe to call on every use (oslo.config ignores identical re-registration)."""
    conf = conf or cfg.CONF
    conf.register_opts(OPTS, group=GROUP)
    return conf[GROUP]


def get_socket_path(conf=None):
    conf = conf or cfg.CONF
    try:
        return conf.driver_agent.get_socket_path
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        # Registering it here could clash with Octavia's definition (DuplicateOptError).
        return DEFAULT_GET_SOCKET


def list_opts():
    return [(GROUP, OPTS)]
