"""The two ways to reach the loxilb-octavia host (docs/host-protocol.md).

Both expose `call(method, args)` (synchronous, returns the host's result) and `cast(method, args)`,
and raise octavia-lib exceptions only: the host's refusals mapped by class name, and DriverError,
worded for an operator, when the host cannot be reached.
"""
import hashlib
import json
import logging
import socket
import threading
import uuid

from octavia_lib.api.drivers import exceptions
from oslo_config import cfg

try:  # Octavia's API process has it; elsewhere casts carry no commit ticket
    from sqlalchemy import event as _sa_event
    from sqlalchemy.orm import Session as _SaSession
    SQLALCHEMY = True
except ImportError:
    SQLALCHEMY = False

from octavia_loxilb_provider import config

LOG = logging.getLogger(__name__)

NAMESPACE = "loxilb_provider"
VERSION = "1.0"

# Connection retries for oslo.messaging; its default (None) retries forever, and an API request
# must not hang while RabbitMQ is down.
AMQP_RETRY = 1
RABBIT_HINT = "is RabbitMQ reachable at [DEFAULT] transport_url?"
# Seconds a commit notice may take (it is sent after Octavia's commit, before its answer).
NOTICE_TIMEOUT = 1

# octavia-lib before 3.8 (Octavia 2024.1 and 2024.2 pin 3.5.0 and 3.6.0) has no Conflict, and
# those Octavia releases would not map it to HTTP 409 anyway.
CONFLICT = getattr(exceptions, "Conflict", None)

FAILURES = {cls.__name__: cls for cls in (
    exceptions.UnsupportedOptionError,
    exceptions.NotImplementedError,
    exceptions.DriverError,
    exceptions.NotFound,
    CONFLICT,
) if cls is not None}


def failure(class_name, message):
    """The octavia-lib exception for a refusal the host named `class_name`."""
    cls = FAILURES.get(class_name)
    if cls is None and class_name == "Conflict":
        # Without Conflict, "not supported" (HTTP 501 with the message) is what tells the user to
        # change the request; DriverError (500) would read as a fault of the service.
        cls = exceptions.UnsupportedOptionError
    elif cls is None:
        cls, message = exceptions.DriverError, f"{class_name}: {message}"
    return cls(user_fault_string=message, operator_fault_string=message)


def unreachable(where, err, hint="is it running?"):
    msg = f"the loxilb-octavia host did not answer on {where}: {hint} ({err})"
    return exceptions.DriverError(user_fault_string=msg, operator_fault_string=msg)


def shard(loadbalancer_id, shards):
    """Cast shard of a load balancer; the host computes the same (host-protocol.md)."""
    digest = hashlib.sha256(loadbalancer_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % shards


def unix_request(path, payload, timeout):
    """One request and one reply over a fresh connection, framed `<len>\\n<json>` both ways.

    The same framing as Octavia's driver-agent sockets, so it also serves the get socket.
    """
    body = json.dumps(payload, default=str).encode("utf-8")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"%d\n" % len(body) + body)
        with sock.makefile("rb") as reply:
            header = reply.readline(32)
            if not header.endswith(b"\n"):
                raise ConnectionError("connection closed before a reply")
            size = int(header)
            data = reply.read(size)
    if len(data) != size:
        raise ConnectionError(f"reply cut short ({len(data)} of {size} bytes)")
    return json.loads(data)


# Casts whose objects the host must see committed before it applies them (creates and updates;
# deletes are locked by Octavia until it commits). See commit notices below.
def _awaits_commit(method):
    return method.endswith("_create") or method.endswith("_update")


class CommitNotices:
    """Tells the host when Octavia's transaction around a cast commits (docs/host-protocol.md).

    Octavia calls the provider inside its database transaction and commits in the same thread right
    after the provider returns. Each create or update cast over the Unix socket carries a
    `commit_ticket`; the outermost commit (or rollback) of a SQLAlchemy session in the thread that
    made the cast sends the ticket to the host, which then applies the operation without reading
    Octavia's get socket (a forked driver-agent process per read). Without SQLAlchemy, or when a
    notice is lost, the host reads the get socket as before; a notice never fails Octavia's request.
    """

    def __init__(self):
        self._local = threading.local()
        self._listening = False
        self._lock = threading.Lock()

    def ticket(self, send):
        """A ticket for a cast made now in this thread; `send(method, args)` delivers its notice.
        One API request makes one cast: a ticket left over from an earlier request of this thread
        (it neither committed nor rolled back) is dropped, so no later commit vouches for it (the
        host reads the get socket for that one)."""
        with self._lock:
            if not self._listening:
                _sa_event.listen(_SaSession, "after_commit", self._committed)
                _sa_event.listen(_SaSession, "after_rollback", self._rolled_back)
                self._listening = True
        ticket = uuid.uuid4().hex
        self._local.pending = (send, [ticket])
        return ticket

    def _end(self, session, method):
        pending = getattr(self._local, "pending", None)
        # A savepoint ending inside the transaction is not Octavia's commit.
        if not pending or session.in_nested_transaction():
            return
        self._local.pending = None
        send, tickets = pending
        try:
            send(method, {"tickets": tickets})
        except Exception as err:  # never fail Octavia's request: the host falls back to reading
            LOG.debug("loxilb: commit notice %s not delivered (%s)", method, err)

    def _committed(self, session):
        self._end(session, "committed")

    def _rolled_back(self, session):
        self._end(session, "rolled_back")


NOTICES = CommitNotices()


class UnixTransport:
    def __init__(self, opts):
        self._opts = opts

    def _notify(self, method, args):
        # Short: Octavia's request waits for it, after its commit.
        unix_request(self._opts.socket_path, {"type": "notice", "method": method, "args": args},
                     NOTICE_TIMEOUT)

    def _send(self, kind, method, args):
        path = self._opts.socket_path
        try:
            reply = unix_request(path, {"type": kind, "method": method, "args": args},
                                 self._opts.validate_timeout)
        except (OSError, ValueError) as err:  # socket errors, timeouts, bad framing or JSON
            raise unreachable(f"unix socket {path}", err) from err
        refused = reply.get("failure") if isinstance(reply, dict) else None
        if refused:
            raise failure(refused.get("class"), refused.get("message", ""))
        return reply.get("result") if isinstance(reply, dict) else None

    def call(self, method, args):
        return self._send("call", method, args)

    def cast(self, method, args):
        if SQLALCHEMY and _awaits_commit(method):
            args = dict(args, commit_ticket=NOTICES.ticket(self._notify))
        self._send("cast", method, args)


def _within(seconds, func, *args, **kwargs):
    """func(*args, **kwargs), or TimeoutError after `seconds`.

    oslo.messaging creates its reply queue on the first call of a process and, while RabbitMQ is
    down, retries that forever whatever `retry` says; an API request must not wait with it. The
    abandoned thread is a daemon, finishes once RabbitMQ is back, and its late reply is dropped.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = func(*args, **kwargs)
        except Exception as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, name="loxilb-rpc-call", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no answer from oslo.messaging within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class AmqpTransport:
    def __init__(self, conf, opts):
        import oslo_messaging as messaging  # only needed, and only imported, with transport = amqp

        self._messaging = messaging
        self._opts = opts
        self._transport = messaging.get_rpc_transport(conf)
        target = messaging.Target(topic=opts.rpc_topic, namespace=NAMESPACE, version=VERSION)
        self._client = messaging.get_rpc_client(self._transport, target)
        self._where = f"topic {opts.rpc_topic} (exchange {conf.control_exchange})"

    def call(self, method, args):
        timeout = self._opts.validate_timeout
        cctxt = self._client.prepare(timeout=timeout, retry=AMQP_RETRY)
        try:
            return _within(timeout + 2, cctxt.call, {}, method, **args)
        except self._messaging.RemoteError as err:
            raise failure(err.exc_type, err.value) from err
        except NotImplementedError as err:
            # The builtin: oslo rebuilds a failure sent with module "builtins" as the builtin class,
            # with the remote traceback appended to the message.
            raise failure("NotImplementedError", str(err).split("\n")[0]) from err
        except self._messaging.MessagingTimeout as err:
            raise unreachable(f"{self._where} within {timeout:g} s", err) from err
        except Exception as err:  # kombu/oslo connection errors, or _within's TimeoutError
            raise unreachable(self._where, err, RABBIT_HINT) from err

    def cast(self, method, args):
        server = f"shard-{shard(args['loadbalancer_id'], self._opts.rpc_shards)}"
        cctxt = self._client.prepare(server=server, retry=AMQP_RETRY)
        try:
            cctxt.cast({}, method, **args)
        except Exception as err:  # kombu/oslo connection errors
            raise unreachable(self._where, err, RABBIT_HINT) from err

    def cleanup(self):
        self._transport.cleanup()


# One transport per process: Octavia builds a new driver object for every API request.
_lock = threading.Lock()
_host = None


def host():
    global _host
    if _host is None:
        with _lock:
            if _host is None:
                opts = config.register()
                if opts.transport == "amqp":
                    _host = AmqpTransport(cfg.CONF, opts)
                else:
                    _host = UnixTransport(opts)
    return _host


def reset():
    """Forget the cached transport (tests, or after the configuration changed)."""
    global _host
    with _lock:
        if _host is not None and hasattr(_host, "cleanup"):
            _host.cleanup()
        _host = None
