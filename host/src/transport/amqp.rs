//! oslo.messaging RPC over RabbitMQ: the host's side of the amqp transport (docs/host-protocol.md), byte
//! for byte as oslo.messaging's rabbit driver (`oslo_messaging/_drivers/impl_rabbit.py`, `amqpdriver.py`) does.
//!
//! - Calls arrive on the shared topic queue `<rpc_topic>`, declared exactly as oslo's own server would, so
//!   either can declare it first. They are acked on receipt as oslo does (a call carries a broker-side
//!   expiry and its caller times out; redelivering one would only answer a caller that is gone).
//! - Casts arrive on `<rpc_topic>.shard-<n>`: our own durable queues with single-active-consumer. Each is
//!   consumed with prefetch 1 and acked only after `Service::apply` returned, so per shard one host applies
//!   one operation at a time, in order, and a dead host's unacked operation goes back to the head of its
//!   queue for the consumer that takes over (at-least-once; applying is idempotent).
//! - The connection is supervised: any failure tears the session down, waits for the operation in hand
//!   to finish, and reconnects with backoff, trying the brokers of `transport_url` in turn.
//!
//! lapin is async; it runs on a single-threaded tokio runtime on a thread of its own, and every `Service`
//! method (blocking: policy calls, LoxiLB requests, driver-agent sockets) runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::served::{Shards, PROBE_EVERY, QUIET_LIMIT};
use crate::service::{Failure, Service};

/// The provider's `Target(namespace=..., version=...)`.
pub const NAMESPACE: &str = "loxilb_provider";
pub const VERSION: &str = "1.0";

/// Synchronous methods (docs/host-protocol.md "Calls"); anything else called is `NoSuchMethod`.
pub const CALLS: &[&str] =
    &["validate", "get_supported_flavor_metadata", "validate_flavor", "get_supported_availability_zone_metadata", "validate_availability_zone"];

/// The provider maps these class names onto octavia-lib's exceptions; the module only has to be one the
/// caller does not rebuild (anything but `builtins`), so the caller sees `RemoteError(exc_type, value)`.
const FAILURE_MODULE: &str = "octavia_lib.api.drivers.exceptions";
const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// The exchange and queue names this host uses.
#[derive(Clone, Debug)]
pub struct Topology {
    pub exchange: String,
    pub topic: String,
    pub shards: Vec<String>,
}

impl Topology {
    pub fn new(config: &Config) -> Topology {
        Topology {
            exchange: config.control_exchange.clone(),
            topic: config.rpc_topic.clone(),
            shards: (0..config.rpc_shards).map(|n| format!("{}.shard-{n}", config.rpc_topic)).collect(),
        }
    }
}

/// A running amqp transport; it lives as long as the process.
pub struct AmqpServer {
    /// The brokers tried in turn, as `user@host:port/vhost` (no password).
    pub brokers: Vec<String>,
    pub topology: Topology,
}

/// Starts the transport. Only a bad `transport_url` fails here: an unreachable broker is retried in the
/// background, so the host comes up before RabbitMQ does.
pub fn start(config: &Config, service: Arc<Service>) -> Result<AmqpServer> {
    let url = config.transport_url.as_deref().ok_or_else(|| anyhow!("transport = amqp needs [DEFAULT] transport_url"))?;
    let mut brokers = brokers(url)?;
    let tls = config.rabbit_tls.overridden_by(&query(url)?)?.load()?;
    if tls.is_some() {
        for broker in &mut brokers {
            broker.scheme = AMQPScheme::AMQPS;
        }
    }
    let topology = Topology::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the amqp runtime")?;
    let server = AmqpServer { brokers: brokers.iter().map(describe_uri).collect(), topology: topology.clone() };
    // The service's own (the monitor acts only for the shards this host consumes); one of its own for
    // a service built without.
    let shards = service.served().shards().cloned().unwrap_or_else(|| Arc::new(Shards::new(config.rpc_shards)));
    let ctx = Arc::new(Ctx { service, topology, brokers, tls, shards });
    std::thread::Builder::new().name("amqp".into()).spawn(move || runtime.block_on(supervise(ctx)))?;
    Ok(server)
}

struct Ctx {
    service: Arc<Service>,
    topology: Topology,
    brokers: Vec<AMQPUri>,
    /// TLS settings (`amqps`), from `[oslo_messaging_rabbit]` and the URL's query.
    tls: Option<lapin::tcp::OwnedTLSConfig>,
    /// Which shard queues this host is the active consumer of, and what it read back since.
    shards: Arc<Shards>,
}

// ---------------------------------------------------------------------------------------------------------
// transport_url

/// The `key=value` pairs of a `transport_url`'s query, percent-decoded; the TLS ones
/// (`amqp_tls::QUERY_KEYS`) are honoured, any other is reported as ignored.
pub fn query(url: &str) -> Result<Vec<(String, String)>> {
    let Some((_, query)) = url.split_once('?') else { return Ok(Vec::new()) };
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (percent_decode(key)?, percent_decode(&value.replace('+', " "))?);
        if !super::amqp_tls::QUERY_KEYS.contains(&key.as_str()) {
            tracing::warn!("transport_url option {key:?} is ignored by the loxilb-octavia host");
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The brokers of an oslo `transport_url`: `rabbit://user:pass@host:port[,user:pass@host:port...]/vhost[?...]`.
/// An empty vhost means `/`, as kombu reads it. The query is read by [`query`].
pub fn brokers(url: &str) -> Result<Vec<AMQPUri>> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| anyhow!("transport_url {}: expected rabbit://user:pass@host:5672/", redact(url)))?;
    if !matches!(scheme, "rabbit" | "amqp" | "kombu") {
        bail!("transport_url scheme {scheme:?}: only rabbit:// is supported");
    }
    let (rest, _query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let vhost = percent_decode(vhost)?;
    let vhost = if vhost.is_empty() { "/".to_string() } else { vhost };
    let mut out = Vec::new();
    for entry in hosts.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        out.push(broker(entry, &vhost).with_context(|| format!("transport_url {}", redact(url)))?);
    }
    if out.is_empty() {
        bail!("transport_url {} names no host", redact(url));
    }
    Ok(out)
}

fn broker(entry: &str, vhost: &str) -> Result<AMQPUri> {
    let (userinfo, hostport) = match entry.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, entry),
    };
    let (username, password) = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (percent_decode(user)?, percent_decode(pass)?)
        }
        // kombu's defaults when the URL names none.
        None => ("guest".to_string(), "guest".to_string()),
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(AMQPUri {
        scheme: AMQPScheme::AMQP,
        authority: AMQPAuthority { userinfo: AMQPUserInfo { username, password }, host, port },
        vhost: vhost.to_string(),
        query: AMQPQueryString { connection_timeout: Some(CONNECT_TIMEOUT_MS), ..Default::default() },
    })
}

fn split_host_port(hostport: &str) -> Result<(String, u16)> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| anyhow!("unclosed [ in host {hostport:?}"))?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        bail!("empty host in {hostport:?}");
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| anyhow!("port {p:?} is not a number"))?,
        None => 5672,
    };
    Ok((host.to_string(), port))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| anyhow!("bad %-escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| anyhow!("bad %-escape in {s:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("%-escapes in {s:?} are not UTF-8"))
}

/// The URL without its passwords, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<unparsable>".into() };
    let (hosts, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|h| match h.rsplit_once('@') {
            Some((u, host)) => format!("{}:***@{host}", u.split(':').next().unwrap_or_default()),
            None => h.to_string(),
        })
        .collect();
    format!("{scheme}://{}{tail}", hosts.join(","))
}

fn describe_uri(uri: &AMQPUri) -> String {
    let a = &uri.authority;
    format!("{}@{}:{}/{}", a.userinfo.username, a.host, a.port, uri.vhost)
}

// ---------------------------------------------------------------------------------------------------------
// Messages

/// An oslo request: envelope 2.0 (`oslo.message` holds JSON as a string) or a bare 1.0 object.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub args: Value,
    pub namespace: Option<String>,
    pub version: Option<String>,
    /// Present on calls only.
    pub msg_id: Option<String>,
    pub reply_q: Option<String>,
    /// The caller's `call_monitor_timeout`; heartbeats are sent only when it is set.
    pub monitor: Option<f64>,
}

impl Request {
    pub fn decode(body: &[u8]) -> Result<Request> {
        let outer: Value = serde_json::from_slice(body).context("not JSON (is kombu_compression set? the host does not support it)")?;
        let enveloped: Option<Value> = match outer.get("oslo.message") {
            Some(Value::String(s)) => Some(serde_json::from_str(s).context("oslo.message is not JSON")?),
            Some(_) => bail!("oslo.message is not a string"),
            None => None,
        };
        let inner = enveloped.unwrap_or(outer);
        let text = |key: &str| inner.get(key).and_then(Value::as_str).map(str::to_string);
        Ok(Request {
            method: text("method").ok_or_else(|| anyhow!("no method"))?,
            args: inner.get("args").cloned().unwrap_or_else(|| json!({})),
            namespace: text("namespace"),
            version: text("version"),
            msg_id: text("_msg_id"),
            reply_q: text("_reply_q"),
            monitor: inner.get("_timeout").and_then(Value::as_f64),
        })
    }

    /// oslo's dispatcher rule (WIRE-NOTES §6): same namespace, same major version, requested minor not
    /// above ours; a missing version means 1.0.
    pub fn endpoint_matches(&self) -> bool {
        let requested = self.version.as_deref().unwrap_or("1.0");
        self.namespace.as_deref() == Some(NAMESPACE) && version_compatible(VERSION, requested)
    }

    /// Why this endpoint will not run the request, as oslo's dispatcher words it.
    pub fn refusal(&self, known: &[&str]) -> Option<RemoteFailure> {
        if !self.endpoint_matches() {
            let version = self.version.as_deref().unwrap_or("1.0");
            return Some(RemoteFailure::dispatcher(
                "UnsupportedVersion",
                format!("Endpoint does not support RPC version {version}. Attempted method: {}", self.method),
            ));
        }
        if !known.contains(&self.method.as_str()) {
            return Some(RemoteFailure::dispatcher("NoSuchMethod", format!("Endpoint does not support RPC method {}", self.method)));
        }
        None
    }
}

fn version_compatible(ours: &str, requested: &str) -> bool {
    let parse = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|p| p.parse().ok()).collect() };
    let (Some(ours), Some(req)) = (parse(ours), parse(requested)) else { return false };
    let part = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    part(&ours, 0) == part(&req, 0) && (part(&req, 1), part(&req, 2)) <= (part(&ours, 1), part(&ours, 2))
}

/// A failure as oslo serializes it (WIRE-NOTES §5.3).
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteFailure {
    pub class: String,
    pub module: &'static str,
    pub message: String,
}

impl RemoteFailure {
    fn dispatcher(class: &str, message: String) -> RemoteFailure {
        RemoteFailure { class: class.into(), module: DISPATCHER_MODULE, message }
    }

    /// The `failure` field: a JSON *string*, never an object (an object makes the caller's json.loads fail).
    pub fn encode(&self) -> String {
        json!({
            "class": self.class,
            "module": self.module,
            "message": self.message,
            "tb": [],
            "args": [self.message],
            "kwargs": {},
        })
        .to_string()
    }
}

impl From<Failure> for RemoteFailure {
    fn from(f: Failure) -> RemoteFailure {
        RemoteFailure { class: f.class.into(), module: FAILURE_MODULE, message: f.message }
    }
}

/// The body of a reply: envelope 2.0 around `{result, failure, ending, _msg_id}`.
pub fn reply_body(msg_id: &str, outcome: Option<&Result<Value, RemoteFailure>>) -> Vec<u8> {
    let inner = match outcome {
        Some(Ok(result)) => json!({"result": result, "failure": null, "ending": true, "_msg_id": msg_id}),
        Some(Err(failure)) => json!({"result": null, "failure": failure.encode(), "ending": true, "_msg_id": msg_id}),
        // A call-monitor heartbeat.
        None => json!({"result": null, "failure": null, "ending": false, "_msg_id": msg_id}),
    };
    serde_json::to_vec(&json!({"oslo.version": "2.0", "oslo.message": inner.to_string()})).expect("JSON")
}

/// The properties oslo puts on replies; without `content_type` the caller rejects the reply and times out.
fn reply_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default())
}

/// How often to heartbeat a call whose caller monitors it: every `_timeout / 2` s, and never below 1 s
/// (oslo's dispatcher sends none then).
fn heartbeat_interval(monitor: Option<f64>) -> Option<Duration> {
    let half = monitor? / 2.0;
    (half >= 1.0 && half.is_finite()).then(|| Duration::from_secs_f64(half))
}

// ---------------------------------------------------------------------------------------------------------
// Sessions

async fn supervise(ctx: Arc<Ctx>) {
    let mut delay = FIRST_RETRY;
    for attempt in 0usize.. {
        let uri = &ctx.brokers[attempt % ctx.brokers.len()];
        match session(&ctx, uri).await {
            // It was serving until the connection went: come back promptly.
            Ok(()) => delay = FIRST_RETRY,
            Err(e) => tracing::warn!("amqp: cannot serve through {}: {e:#}; retrying in {delay:?}", describe_uri(uri)),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(LAST_RETRY);
    }
}

fn connection_properties() -> ConnectionProperties {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // oslo names its connections `<argv0>:<pid>:<uuid>`; ours let an operator (or a test) find the
    // connection of one host process with `rabbitmqctl list_connections client_properties`.
    ConnectionProperties::default().with_connection_name(format!("loxilb-octavia:{}:{}", std::process::id(), host.trim()).into())
}

/// One connection: declare and consume until something fails, then drain. Errors only when it never got
/// to consuming (broker down, refused declarations).
async fn session(ctx: &Arc<Ctx>, uri: &AMQPUri) -> Result<()> {
    let conn = match &ctx.tls {
        Some(tls) => {
            let runtime = lapin::runtime::default_runtime().context("the amqp runtime")?;
            Connection::connect_uri_with_config(uri.clone(), connection_properties(), tls.clone(), runtime).await.context("connecting over TLS")?
        }
        None => Connection::connect_uri(uri.clone(), connection_properties()).await.context("connecting")?,
    };
    let topology = &ctx.topology;
    declare(&conn, topology).await?;

    let replies = conn.create_channel().await?;
    // Confirms tell us when a mandatory reply was returned (its caller is gone).
    replies.confirm_select(ConfirmSelectOptions::default()).await?;

    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<String>();
    let (stop_tx, stop_rx) = watch::channel(false);

    let calls_channel = conn.create_channel().await?;
    let calls = calls_channel.basic_consume(topology.topic.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
    let mut tasks = vec![tokio::spawn(consume_calls(calls, Arc::clone(ctx), replies.clone(), stop_rx.clone(), fail_tx.clone()))];

    let casts_channel = conn.create_channel().await?;
    // Per consumer (global = false): each shard has at most one operation in hand.
    casts_channel.basic_qos(1, BasicQosOptions { global: false }).await?;
    for (index, shard) in topology.shards.iter().enumerate() {
        let consumer = casts_channel.basic_consume(shard.as_str().into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
        let worker = CastWorker { ctx: Arc::clone(ctx), replies: replies.clone(), index };
        tasks.push(tokio::spawn(worker.run(consumer, stop_rx.clone(), fail_tx.clone())));
    }
    let probes = conn.create_channel().await?;
    tasks.push(tokio::spawn(probe(probes, topology.shards.clone(), stop_rx.clone(), fail_tx.clone())));
    tracing::warn!(
        "amqp: connected to {}; calls on {}, casts on {} shard queues, exchange {}",
        describe_uri(uri),
        topology.topic,
        topology.shards.len(),
        topology.exchange
    );

    let reason = fail_rx.recv().await.unwrap_or_else(|| "all consumers stopped".into());
    tracing::warn!("amqp: lost {}: {reason}; reconnecting once the operation in hand is done", describe_uri(uri));
    let _ = stop_tx.send(true);
    // The operation in hand finishes before the connection closes and before a new session may take its
    // shard: on a live connection its ack still lands (no redelivery); on a dead one the ack fails and
    // the broker has already requeued it. Either way no two applies of one shard overlap in this process.
    for task in tasks {
        let _ = task.await;
    }
    // Another host may consume the shards by now: none is this host's until its deliveries resume.
    ctx.shards.forget();
    // Closing hands back anything else unacked; a dead connection just errors here.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "reconnecting".into())).await;
    Ok(())
}

/// Declares the exchange and queues (WIRE-NOTES §3). The shared ones may already exist with the
/// operator's oslo options (durable or quorum queues): a refused declaration is then checked passively
/// and the existing entity used. Each declaration gets a fresh channel after a refusal, since a 406
/// closes the channel.
async fn declare(conn: &Connection, t: &Topology) -> Result<()> {
    let exchange = t.exchange.as_str();
    let ch = conn.create_channel().await?;
    let plain = ExchangeDeclareOptions { durable: false, auto_delete: false, ..Default::default() };
    if let Err(e) = ch.exchange_declare(exchange.into(), ExchangeKind::Topic, plain, FieldTable::default()).await {
        let ch = conn.create_channel().await?;
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        ch.exchange_declare(exchange.into(), ExchangeKind::Topic, passive, FieldTable::default())
            .await
            .with_context(|| format!("declaring exchange {exchange}: {e}"))?;
        tracing::warn!("amqp: exchange {exchange} exists with other flags ({e}); using it");
    }

    let ch = conn.create_channel().await?;
    let shared = QueueDeclareOptions { durable: false, auto_delete: false, exclusive: false, ..Default::default() };
    if let Err(e) = ch.queue_declare(t.topic.as_str().into(), shared, FieldTable::default()).await {
        let ch = conn.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        ch.queue_declare(t.topic.as_str().into(), passive, FieldTable::default()).await.with_context(|| format!("declaring queue {}: {e}", t.topic))?;
        tracing::warn!("amqp: queue {} exists with other flags ({e}); using it", t.topic);
    }

    let ch = conn.create_channel().await?;
    ch.queue_bind(t.topic.as_str().into(), exchange.into(), t.topic.as_str().into(), QueueBindOptions::default(), FieldTable::default()).await?;
    let mut single_active = FieldTable::default();
    single_active.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    for shard in &t.shards {
        ch.queue_declare(shard.as_str().into(), durable, single_active.clone())
            .await
            .with_context(|| format!("declaring shard queue {shard} (durable, x-single-active-consumer)"))?;
        ch.queue_bind(shard.as_str().into(), exchange.into(), shard.as_str().into(), QueueBindOptions::default(), FieldTable::default()).await?;
    }
    let _ = ch.close(200, "declared".into()).await;
    Ok(())
}

/// The next delivery, or `None` once the session stops.
async fn next(consumer: &mut Consumer, stop: &mut watch::Receiver<bool>, fail: &mpsc::UnboundedSender<String>) -> Option<lapin::message::Delivery> {
    let queue = consumer.queue();
    let queue = queue.as_str();
    tokio::select! {
        // Once stopping, take nothing more: the broker has given what is queued to another consumer.
        biased;
        _ = stop.changed() => None,
        delivery = consumer.next() => match delivery {
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                let _ = fail.send(format!("consuming {queue}: {e}"));
                None
            }
            None => {
                let _ = fail.send(format!("the broker cancelled our consumer of {queue}"));
                None
            }
        },
    }
}

async fn consume_calls(mut consumer: Consumer, ctx: Arc<Ctx>, replies: Channel, mut stop: watch::Receiver<bool>, fail: mpsc::UnboundedSender<String>) {
    while let Some(delivery) = next(&mut consumer, &mut stop, &fail).await {
        if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
            let _ = fail.send(format!("acking a call: {e}"));
            return;
        }
        match Request::decode(&delivery.data) {
            Ok(request) if request.msg_id.is_some() => {
                tokio::spawn(answer(Arc::clone(&ctx), replies.clone(), request));
            }
            Ok(request) => {
                tracing::error!("amqp: dropping cast {} sent to the shared topic {}: casts go to the shard queues", request.method, ctx.topology.topic)
            }
            Err(e) => tracing::error!("amqp: dropping a message on {}: {e:#}", ctx.topology.topic),
        }
    }
}

/// Runs a call and publishes its reply, with call-monitor heartbeats while it runs.
async fn answer(ctx: Arc<Ctx>, replies: Channel, request: Request) {
    let (Some(msg_id), Some(reply_q)) = (request.msg_id.clone(), request.reply_q.clone()) else {
        tracing::error!("amqp: call {} without _reply_q: cannot answer", request.method);
        return;
    };
    let outcome = match request.refusal(CALLS) {
        Some(refused) => Err(refused),
        None => run_call(&ctx, &replies, &request, &msg_id, &reply_q).await,
    };
    publish(&replies, &reply_q, reply_body(&msg_id, Some(&outcome))).await;
}

async fn run_call(ctx: &Ctx, replies: &Channel, request: &Request, msg_id: &str, reply_q: &str) -> Result<Value, RemoteFailure> {
    let service = Arc::clone(&ctx.service);
    let (method, args) = (request.method.clone(), request.args.clone());
    let mut job = tokio::task::spawn_blocking(move || service.call(&method, &args));
    let joined = match heartbeat_interval(request.monitor) {
        None => job.await,
        Some(every) => loop {
            match tokio::time::timeout(every, &mut job).await {
                Ok(joined) => break joined,
                Err(_) => publish(replies, reply_q, reply_body(msg_id, None)).await,
            }
        },
    };
    match joined {
        Ok(result) => result.map_err(RemoteFailure::from),
        Err(e) => Err(Failure::driver(format!("the host failed while answering {}: {e}", request.method)).into()),
    }
}

/// Publishes to the default exchange with the reply queue as routing key, mandatory, as oslo does.
async fn publish(channel: &Channel, reply_q: &str, body: Vec<u8>) {
    let options = BasicPublishOptions { mandatory: true, immediate: false };
    let sent = async { channel.basic_publish("".into(), reply_q.into(), options, &body, reply_properties()).await?.await };
    match sent.await {
        Ok(confirmation) if confirmation.is_nack() => tracing::warn!("amqp: the broker refused a reply to {reply_q}"),
        Ok(confirmation) => {
            if confirmation.take_message().is_some() {
                tracing::warn!("amqp: reply queue {reply_q} does not exist: its caller has gone");
            }
        }
        Err(e) => tracing::warn!("amqp: reply to {reply_q} not sent: {e}"),
    }
}

/// The `type` of a probe message (see `served.rs`): it carries nothing, its delivery is the news.
const PROBE_TYPE: &str = "loxilb-octavia.probe";

/// Publishes a probe to every shard queue each `PROBE_EVERY`, straight to the queue (the default
/// exchange), transient, and expiring unread after `QUIET_LIMIT` so that no backlog builds while no
/// host consumes.
async fn probe(channel: Channel, shards: Vec<String>, mut stop: watch::Receiver<bool>, fail: mpsc::UnboundedSender<String>) {
    let properties = BasicProperties::default().with_type(PROBE_TYPE.into()).with_delivery_mode(1).with_expiration(QUIET_LIMIT.as_millis().to_string().into());
    loop {
        for shard in &shards {
            let sent = channel.basic_publish("".into(), shard.as_str().into(), BasicPublishOptions::default(), b"", properties.clone()).await;
            if let Err(e) = sent {
                let _ = fail.send(format!("probing {shard}: {e}"));
                return;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

fn is_probe(delivery: &lapin::message::Delivery) -> bool {
    delivery.properties.kind().as_ref().is_some_and(|kind| kind.as_str() == PROBE_TYPE)
}

/// Applies the casts of one shard queue, one at a time.
struct CastWorker {
    ctx: Arc<Ctx>,
    replies: Channel,
    /// The shard's place in `Topology::shards`.
    index: usize,
}

impl CastWorker {
    async fn run(self, mut consumer: Consumer, mut stop: watch::Receiver<bool>, fail: mpsc::UnboundedSender<String>) {
        let queue = consumer.queue().as_str().to_string();
        let shards = &self.ctx.shards;
        while let Some(delivery) = next(&mut consumer, &mut stop, &fail).await {
            shards.delivered(self.index);
            if !is_probe(&delivery) {
                shards.holding(self.index, true);
                let handled = self.handle(&delivery.data, delivery.redelivered, &stop).await;
                shards.holding(self.index, false);
                if let Err(e) = handled {
                    // Not acked: the broker gives the operation to the next active consumer.
                    let _ = fail.send(format!("{queue}: {e:#}"));
                    return;
                }
            }
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                let _ = fail.send(format!("acking on {queue}: {e}"));
                return;
            }
        }
    }

    /// Applies one delivery. Errors only when the operation may not have been applied and must be
    /// redelivered; a message that can never be applied is logged and dropped.
    async fn handle(&self, body: &[u8], redelivered: bool, lost: &watch::Receiver<bool>) -> Result<()> {
        let request = match Request::decode(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("amqp: dropping an undecodable operation: {e:#}");
                return Ok(());
            }
        };
        if request.msg_id.is_some() {
            tokio::spawn(answer(Arc::clone(&self.ctx), self.replies.clone(), request));
            return Ok(());
        }
        if !request.endpoint_matches() {
            tracing::error!("amqp: dropping {}: namespace {:?} version {:?} is not {NAMESPACE} {VERSION}", request.method, request.namespace, request.version);
            // A cast has no reply to refuse it with, and Octavia waits for a status: the objects it names go to
            // ERROR. The delivery is acknowledged once Octavia has taken that (the status senders send it
            // until it does), as an applied operation's is.
            let (reported, taken) = tokio::sync::oneshot::channel();
            self.ctx.service.report_dropped(&request.method, &request.args, move || {
                let _ = reported.send(());
            });
            return taken.await.map_err(|_| anyhow!("the status senders stopped before reporting {}", request.method));
        }
        if let Some(lb) = request.args.get("loadbalancer_id").and_then(Value::as_str) {
            self.adopt(lb).await?;
        }
        let service = Arc::clone(&self.ctx.service);
        let Request { method, args, .. } = request;
        // Once the session is lost the broker has requeued this delivery for another host: if that is
        // noticed while Octavia's commit is awaited, leave the operation to it.
        let lost = lost.clone();
        let applied = tokio::task::spawn_blocking(move || service.apply_while(&method, &args, redelivered, &|| !*lost.borrow()).is_some())
            .await
            .map_err(|e| anyhow!("applying panicked: {e}"))?;
        if !applied {
            // Not acknowledged: closing the connection hands it back to the broker.
            bail!("session lost before the operation was applied");
        }
        Ok(())
    }

    /// The first time this session sees a load balancer, its mapping may be stale: another host applied
    /// its operations while this one was not the shard's active consumer (it was standby, or its
    /// connection dropped meanwhile). A stale mapping raises no error (unlike a missing one, which
    /// `Service::apply` recovers from), it just renders the wrong rule. Octavia's committed view, read
    /// through the get socket, is the truth to start from, so sync the load balancer to it before
    /// applying; the sync's statuses are not reported (the operation's own are). An LB Octavia does not
    /// show yet is being created by this very operation: there is nothing to adopt.
    async fn adopt(&self, lb_id: &str) -> Result<()> {
        let shards = &self.ctx.shards;
        let computed = crate::served::shard_of(lb_id, shards.count());
        if computed != self.index {
            crate::warn_limited!(
                "amqp-shard-mismatch",
                "amqp: load balancer {lb_id} came on shard queue {}, but its shard is {computed}: rpc_shards differs between the provider and this host",
                self.index
            );
        }
        // Live (this shard's operation is in hand) unless the provider computes shards otherwise.
        let epoch = shards.epoch(lb_id);
        if epoch.is_some() && shards.serves(lb_id) {
            return Ok(());
        }
        let service = Arc::clone(&self.ctx.service);
        let id = lb_id.to_string();
        let adopted = tokio::task::spawn_blocking(move || sync_from_octavia(&service, &id)).await.map_err(|e| anyhow!("adopting {lb_id} panicked: {e}"))?;
        if let (true, Some(epoch)) = (adopted, epoch) {
            shards.adopted(lb_id, epoch);
        }
        Ok(())
    }
}

/// Syncs one load balancer to what Octavia's get socket shows; false when it could not ask (retry later).
fn sync_from_octavia(service: &Service, lb_id: &str) -> bool {
    match service.adopt(lb_id, false) {
        // This host changed the load balancer while the read was under way, or Octavia no longer has it
        // and LoxiLB did not take its removal: read it again next time.
        Ok(crate::service::Adopted::Superseded | crate::service::Adopted::RemovalFailed) => false,
        Ok(adopted) => {
            if adopted == crate::service::Adopted::Synced {
                tracing::info!("amqp: adopted load balancer {lb_id} from Octavia's view");
            }
            true
        }
        Err(e) => {
            tracing::warn!("amqp: cannot read load balancer {lb_id} from Octavia to adopt it: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_urls_become_brokers() {
        let b = brokers("rabbit://octavia:p%40ss@rabbit-a:5673,guest:guest@[::1]/").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].authority.userinfo.username.as_str(), b[0].authority.userinfo.password.as_str()), ("octavia", "p@ss"));
        assert_eq!((b[0].authority.host.as_str(), b[0].authority.port), ("rabbit-a", 5673));
        assert_eq!((b[1].authority.host.as_str(), b[1].authority.port), ("::1", 5672));
        assert_eq!(b[0].vhost, "/", "an empty vhost is kombu's default vhost");
        assert_eq!(brokers("rabbit://u:p@h:5672/openstack").unwrap()[0].vhost, "openstack");
        assert_eq!(brokers("rabbit://h").unwrap()[0].authority.userinfo.username, "guest");
        assert!(brokers("http://h/").is_err());
        assert!(brokers("rabbit:///").is_err());
        assert!(brokers("rabbit://u:p@h:port/").is_err());
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        let err = brokers("rabbit://octavia:secret@h:x/").unwrap_err();
        assert!(!format!("{err:#}").contains("secret"), "{err:#}");
        assert_eq!(redact("rabbit://a:s1@h1:1,b:s2@h2/v"), "rabbit://a:***@h1:1,b:***@h2/v");
    }

    #[test]
    fn requests_decode_from_the_captured_envelope() {
        // WIRE-NOTES §4.2, the call captured from the real oslo client.
        let body = br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"echo\", \"args\": {\"lb_id\": \"lb-1\", \"n\": 3}, \"namespace\": \"loxilb_provider\", \"version\": \"1.0\", \"_msg_id\": \"00ef553250b844fd9bb03c94772cdd14\", \"_reply_q\": \"reply_443d2354fa7e4ef1b1721a4e2aa90ac3\", \"_timeout\": 4, \"_unique_id\": \"01f0a41bd593414ebe194846b01f77ac\"}"}"#;
        let r = Request::decode(body).unwrap();
        assert_eq!(r.method, "echo");
        assert_eq!(r.args, json!({"lb_id": "lb-1", "n": 3}));
        assert_eq!(r.msg_id.as_deref(), Some("00ef553250b844fd9bb03c94772cdd14"));
        assert_eq!(r.reply_q.as_deref(), Some("reply_443d2354fa7e4ef1b1721a4e2aa90ac3"));
        assert_eq!(heartbeat_interval(r.monitor), Some(Duration::from_secs(2)));
        let bare = Request::decode(br#"{"method": "pool_create", "args": {}, "_timeout": null}"#).unwrap();
        assert_eq!((bare.msg_id, bare.monitor), (None, None));
        assert!(Request::decode(b"\x78\x9c").is_err());
    }

    fn request(namespace: Option<&str>, version: Option<&str>, method: &str) -> Request {
        Request {
            method: method.into(),
            args: json!({}),
            namespace: namespace.map(Into::into),
            version: version.map(Into::into),
            msg_id: Some("m".into()),
            reply_q: Some("r".into()),
            monitor: None,
        }
    }

    #[test]
    fn dispatch_follows_oslo() {
        assert_eq!(request(Some(NAMESPACE), Some("1.0"), "validate").refusal(CALLS), None);
        assert_eq!(request(Some(NAMESPACE), None, "validate").refusal(CALLS), None);
        let v11 = request(Some(NAMESPACE), Some("1.1"), "validate").refusal(CALLS).unwrap();
        assert_eq!((v11.class.as_str(), v11.module), ("UnsupportedVersion", DISPATCHER_MODULE));
        assert_eq!(v11.message, "Endpoint does not support RPC version 1.1. Attempted method: validate");
        assert_eq!(request(None, Some("1.0"), "validate").refusal(CALLS).unwrap().class, "UnsupportedVersion");
        assert_eq!(request(Some(NAMESPACE), Some("2.0"), "validate").refusal(CALLS).unwrap().class, "UnsupportedVersion");
        let nsm = request(Some(NAMESPACE), Some("1.0"), "pool_create").refusal(CALLS).unwrap();
        assert_eq!((nsm.class.as_str(), nsm.message.as_str()), ("NoSuchMethod", "Endpoint does not support RPC method pool_create"));
    }

    #[test]
    fn replies_are_envelopes_with_a_string_failure() {
        let ok: Value = serde_json::from_slice(&reply_body("id1", Some(&Ok(json!({"k": 1}))))).unwrap();
        assert_eq!(ok["oslo.version"], "2.0");
        let inner: Value = serde_json::from_str(ok["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"result": {"k": 1}, "failure": null, "ending": true, "_msg_id": "id1"}));

        let refused = RemoteFailure::from(Failure { class: "UnsupportedOptionError", message: "no L7".into() });
        let err: Value = serde_json::from_slice(&reply_body("id2", Some(&Err(refused)))).unwrap();
        let inner: Value = serde_json::from_str(err["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!((inner["ending"].clone(), inner["result"].clone()), (json!(true), Value::Null));
        let failure: Value = serde_json::from_str(inner["failure"].as_str().expect("failure is a string")).unwrap();
        assert_eq!(
            failure,
            json!({"class": "UnsupportedOptionError", "module": FAILURE_MODULE, "message": "no L7", "tb": [], "args": ["no L7"], "kwargs": {}})
        );

        let beat: Value = serde_json::from_slice(&reply_body("id3", None)).unwrap();
        let inner: Value = serde_json::from_str(beat["oslo.message"].as_str().unwrap()).unwrap();
        assert_eq!(inner, json!({"result": null, "failure": null, "ending": false, "_msg_id": "id3"}));
    }

    #[test]
    fn heartbeats_only_for_monitored_calls() {
        assert_eq!(heartbeat_interval(None), None);
        assert_eq!(heartbeat_interval(Some(1.0)), None, "below 1 s oslo sends none");
        assert_eq!(heartbeat_interval(Some(3.0)), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn topology_names() {
        let config = Config { rpc_topic: "t".into(), rpc_shards: 3, ..Config::default() };
        let t = Topology::new(&config);
        assert_eq!(t.exchange, "octavia");
        assert_eq!(t.shards, vec!["t.shard-0", "t.shard-1", "t.shard-2"]);
    }
}
