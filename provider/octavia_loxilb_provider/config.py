"""Every [driver_loxilb] option, registered with oslo.config.

The provider itself reads only transport, socket_path, rpc_topic, rpc_shards and validate_timeout; the
others are the host's. They are all registered here so that oslo-config-generator documents them and
oslo-config-validator accepts a file that sets them. The host reads the same files by oslo.config's
rules and refuses unknown keys, so the names, types and defaults here are a contract with the host
(`host/src/config.rs`); a test compares what both read from one file.
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

# Read by the loxilb-octavia host only.
HOST_OPTS = [
    cfg.ListOpt("api_endpoints", default=["http://127.0.0.1:11111"],
                help="LoxiLB API base URLs (http:// or https://)."),
    cfg.FloatOpt("api_timeout", default=5, min=0,
                 help="Seconds per LoxiLB request (more than 0)."),
    cfg.FloatOpt("api_retry_deadline", default=10, min=0,
                 help="Seconds a LoxiLB call is retried after no answer or HTTP 500/502/503/504; 0 = no "
                      "retry. Below guest_call_timeout; unset, at most a third of it."),
    cfg.StrOpt("api_ca_file", default="",
               help="PEM file of the CA(s) LoxiLB's https:// certificate is checked against; empty: the "
                    "system trust store."),
    cfg.StrOpt("api_client_cert_file", default="",
               help="PEM client certificate (chain) presented to LoxiLB; with api_client_key_file."),
    cfg.StrOpt("api_client_key_file", default="",
               help="PEM private key of api_client_cert_file."),
    cfg.BoolOpt("api_tls_insecure", default=False,
                help="Accept any certificate from LoxiLB (test beds only)."),
    cfg.StrOpt("api_token", default="", secret=True,
               help="LoxiLB's manual token, sent as the Authorization header."),
    cfg.StrOpt("api_token_file", default="",
               help="File holding LoxiLB's manual token (instead of api_token)."),
    cfg.StrOpt("api_username", default="",
               help="User of LoxiLB's user service (loxilb --userservice), logged in with POST /auth/login."),
    cfg.StrOpt("api_password", default="", secret=True,
               help="Password of api_username."),
    cfg.StrOpt("api_password_file", default="",
               help="File holding the password of api_username (instead of api_password)."),
    cfg.StrOpt("nat_mode", default="fullnat",
               choices=["dnat", "onearm", "fullnat", "dsr", "fullproxy"],
               help="LoxiLB NAT mode of the rules (a flavor's nat_mode overrides it)."),
    cfg.BoolOpt("bgp", default=False,
                help="Rules ask LoxiLB to advertise their VIPs over BGP (a flavor's bgp overrides it)."),
    cfg.StrOpt("policy_path", default="",
               help="Translation policy component (.wasm); empty: the built-in l4-fullnat policy."),
    cfg.BoolOpt("enable_persistent_mapping", default=True,
                help="Keep the Octavia/LoxiLB ID mapping on disk."),
    cfg.StrOpt("mapping_storage_path", default="/var/lib/octavia/loxilb-mappings.json",
               help="Mapping snapshot file; its journal segments are written beside it."),
    cfg.FloatOpt("mapping_backup_interval", default=300, min=0,
                 help="Seconds between mapping backups, 0 = none."),
    cfg.IntOpt("mapping_backup_count", default=5, min=1, max=1000,
               help="Mapping backups kept."),
    cfg.StrOpt("recovery_mode", default="hybrid", choices=["storage", "loxilb", "hybrid"],
               help="Where the host rebuilds its mapping from at start."),
    cfg.FloatOpt("reconcile_interval", default=60, min=0,
                 help="Seconds between reconciliation passes, 0 = none."),
    cfg.BoolOpt("remove_orphans", default=False,
                help="Delete LoxiLB rules named by this provider that no Octavia object owns."),
    cfg.StrOpt("admin_socket_path", default="/var/run/octavia/loxilb-admin.sock",
               help="The host's admin socket (swap-policy, metrics)."),
    cfg.IntOpt("guest_memory_limit_mb", default=1024, min=16, max=65536,
               help="Memory cap of the policy sandbox, MiB."),
    cfg.FloatOpt("guest_call_timeout", default=30, min=0,
                 help="Seconds one policy call may run (more than 0)."),
    cfg.FloatOpt("commit_wait_timeout", default=60, min=0,
                 help="Seconds to wait for Octavia to commit an object before applying it (more than 0)."),
    cfg.FloatOpt("stats_interval", default=10, min=0,
                 help="Seconds between operating-status and statistics pushes, 0 = none."),
    cfg.IntOpt("max_pending_operations", default=1000, min=1, max=10000000,
               help="Casts accepted but not yet applied before further ones are refused as overload."),
    cfg.IntOpt("max_request_bytes", default=8388608, min=4096, max=1 << 30,
               help="Largest request the host reads from its Unix socket, in bytes."),
    cfg.ListOpt("allowed_peer_users", default=[],
                help="Users (names or ids) the host's Unix socket serves; empty: the host's user, root "
                     "and octavia."),
    cfg.ListOpt("allowed_peer_groups", default=[],
                help="Primary groups (names or ids) the host's Unix socket serves as well."),
    cfg.StrOpt("http_listen", default="",
               help="address:port serving /metrics, /healthz and /readyz over HTTP; empty: none."),
    cfg.StrOpt("log_format", default="text", choices=["text", "json"],
               help="The host's log lines on stderr: text, or one JSON object a line."),
]

ALL_OPTS = OPTS + HOST_OPTS

# Octavia's own option: registered by octavia-api; the default is only for other processes.
DEFAULT_GET_SOCKET = "/var/run/octavia/get.sock"


def register(conf=None):
    """Register the options; safe to call on every use (oslo.config ignores identical re-registration)."""
    conf = conf or cfg.CONF
    conf.register_opts(ALL_OPTS, group=GROUP)
    return conf[GROUP]


def get_socket_path(conf=None):
    conf = conf or cfg.CONF
    try:
        return conf.driver_agent.get_socket_path
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
        # Registering it here could clash with Octavia's definition (DuplicateOptError).
        return DEFAULT_GET_SOCKET


def list_opts():
    return [(GROUP, ALL_OPTS)]
