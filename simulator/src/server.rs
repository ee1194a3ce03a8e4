//! The HTTP side: routing under `/netlox/v1`, go-openapi's checks (content type, parameter
//! binding, body schema), LoxiLB's REST handlers (field casts and the DSR quirk), and the
//! test-facing [`Simulator`] handle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::anyhow;
use loxilb_api::{ObservedRule, BASE_PATH};
use serde_json::{json, Value};

use crate::auth::{Auth, AuthState};
use crate::ephosts::EpOpts;
use crate::errors::{self, ErrorStyle, Reply};
use crate::rules::{Core, EndpointArg, LbRuleMod, ServiceArg};
use crate::spec::{default_spec_path, IssueKind, Options, SpecValidator};
use crate::tls::{Front, TlsIdentity};
use crate::traffic::{Conntrack, Flow};

/// The version each error style is LoxiLB's (the style changed with 0.9.8.5).
fn version(style: ErrorStyle) -> &'static str {
    match style {
        ErrorStyle::Coded => "v0.9.8.5-sim",
        ErrorStyle::Legacy => "v0.9.8.4-sim",
    }
}
/// LoxiLB's HA states (`POST /config/cistate`), `cmn.CI*StateString`.
const HA_STATES: &[&str] = &["MASTER", "BACKUP", "FAULT", "STOP", "NOT_DEFINED"];
/// The HA instance LoxiLB creates at start (`cmn.CIDefault`), in no HA state until told one.
fn default_roles() -> Vec<HaInstance> {
    vec![HaInstance { instance: "llb-inst0".into(), state: "NOT_DEFINED".into(), vip: "0.0.0.0".into() }]
}

/// One HA instance as `GET /config/cistate/all` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HaInstance {
    instance: String,
    state: String,
    vip: String,
}
const BUILD_INFO: &str = "loxilb-sim";
/// LoxiLB <= v0.9.8.4 shipped the LoadbalanceEntry schema without these two enums.
const LEGACY_UNCHECKED_ENUMS: &[&str] = &["serviceArguments.protocol", "serviceArguments.probetype"];

/// One request as the simulator saw it, with the status it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path as sent, still percent-encoded, without the query string.
    pub path: String,
    /// Raw query string without `?`; empty when there was none.
    pub query: String,
    pub body: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    pub status: u16,
    pub response: String,
}

impl RecordedRequest {
    /// The request body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The response body parsed as JSON.
    pub fn response_json(&self) -> Option<Value> {
        serde_json::from_str(&self.response).ok()
    }
}

#[derive(Debug, Clone)]
struct Injection {
    remaining: usize,
    status: u16,
    result: String,
}

/// A transport fault injected into the next requests (`Simulator::inject_fault`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// The connection breaks before an answer: nothing is applied, the client reads a malformed reply.
    Reset,
    /// The request is applied, and answered only after this long (a client with a shorter timeout gives
    /// up while LoxiLB has done the work). Only its connection waits: others are answered meanwhile.
    Late(std::time::Duration),
}

struct State {
    core: Core,
    /// Connections driven by the test (`Simulator::open` & co).
    conntrack: Conntrack,
    style: ErrorStyle,
    log: Vec<RecordedRequest>,
    inject: Option<Injection>,
    faults: Option<(usize, Fault)>,
    auth: AuthState,
    roles: Vec<HaInstance>,
    routes: crate::bgp::Routes,
}

struct Shared {
    state: Mutex<State>,
    spec: SpecValidator,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not take the simulator down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A LoxiLB REST API on a loopback port, alive until dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    server: httpd::Server,
    addr: SocketAddr,
    /// The HTTPS listener in front, when started with TLS (dropped first: it relays to `server`).
    front: Option<Front>,
}

impl Simulator {
    /// Starts on `127.0.0.1:<free port>` with the spec from [`default_spec_path`] when set, else the
    /// embedded one.
    pub fn start(style: ErrorStyle) -> anyhow::Result<Simulator> {
        Self::start_on("127.0.0.1:0", style, None)
    }

    /// Starts on `addr`. `spec` overrides [`default_spec_path`]; a spec that is named (either
    /// way) but cannot be loaded is an error rather than a silent downgrade.
    pub fn start_on(addr: &str, style: ErrorStyle, spec: Option<&Path>) -> anyhow::Result<Simulator> {
        let spec_path: Option<PathBuf> = spec.map(Path::to_path_buf).or_else(default_spec_path);
        let spec = match &spec_path {
            Some(p) => SpecValidator::load(p)?,
            None => SpecValidator::embedded(),
        };
        Self::start_with(addr, style, spec)
    }

    /// Starts on `addr` validating bodies with `spec` (e.g. [`SpecValidator::builtin`]).
    pub fn start_with(addr: &str, style: ErrorStyle, spec: SpecValidator) -> anyhow::Result<Simulator> {
        Self::start_full(addr, style, spec, None)
    }

    /// Starts on `127.0.0.1:<free port>` serving HTTPS with `identity` (see [`TlsIdentity`]); the plain
    /// HTTP server behind it listens on a loopback port of its own. [`Simulator::url`] is `https://…`.
    pub fn start_tls(style: ErrorStyle, identity: &TlsIdentity) -> anyhow::Result<Simulator> {
        Self::start_tls_on("127.0.0.1:0", style, None, identity)
    }

    /// [`Simulator::start_tls`] on `addr`, with `spec` as in [`Simulator::start_on`].
    pub fn start_tls_on(addr: &str, style: ErrorStyle, spec: Option<&Path>, identity: &TlsIdentity) -> anyhow::Result<Simulator> {
        let spec = match spec.map(Path::to_path_buf).or_else(default_spec_path) {
            Some(p) => SpecValidator::load(&p)?,
            None => SpecValidator::embedded(),
        };
        Self::start_full(addr, style, spec, Some(identity))
    }

    fn start_full(addr: &str, style: ErrorStyle, spec: SpecValidator, tls: Option<&TlsIdentity>) -> anyhow::Result<Simulator> {
        let tls = tls.map(crate::tls::server_config).transpose()?;
        let (addr, front_addr) = if tls.is_some() { ("127.0.0.1:0", Some(addr)) } else { (addr, None) };
        for def in ["LoadbalanceEntry", "EndPoint"] {
            if !spec.has_definition(def) {
                return Err(anyhow!("spec has no definition `{def}`"));
            }
        }
        let listener = std::net::TcpListener::bind(addr).map_err(|e| anyhow!("binding {addr}: {e}"))?;
        no_delay(&listener);
        let state = State {
            core: Core::default(),
            conntrack: Conntrack::default(),
            style,
            log: Vec::new(),
            inject: None,
            faults: None,
            auth: AuthState::default(),
            roles: default_roles(),
            routes: Default::default(),
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), spec });
        let handler = {
            let shared = Arc::clone(&shared);
            Arc::new(move |request: &httpd::Request| answer(&shared, request))
        };
        let server = httpd::Server::start(listener, handler).map_err(|e| anyhow!("serving {addr}: {e}"))?;
        let addr = server.addr();
        let front = match (tls, front_addr) {
            (Some(config), Some(front_addr)) => Some(Front::start(front_addr, addr, config)?),
            _ => None,
        };
        Ok(Simulator { shared, server, addr, front })
    }

    /// TCP connections accepted so far (through the TLS front, one per connection it relays).
    pub fn connections(&self) -> usize {
        self.server.accepted()
    }

    /// `http://127.0.0.1:<port>` (`https://` when started with TLS), without the `/netlox/v1` base path.
    pub fn url(&self) -> String {
        match &self.front {
            Some(front) => format!("https://{}", front.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Authenticates requests from now on as LoxiLB does in `mode` (see [`Auth`]); tokens issued before
    /// are forgotten.
    pub fn set_auth(&self, mode: Auth) {
        self.shared.lock().auth = AuthState::new(mode);
    }

    /// Forgets every token the user service issued, as their expiry or a LoxiLB restart does: the next
    /// request with one is refused.
    pub fn expire_tokens(&self) {
        self.shared.lock().auth.expire_tokens();
    }

    /// Successful logins so far.
    pub fn logins(&self) -> usize {
        self.shared.lock().auth.logins
    }

    /// The spec file in use; `None` when only the built-in checks run.
    pub fn spec_source(&self) -> Option<PathBuf> {
        self.shared.spec.source().map(Path::to_path_buf)
    }

    /// Stored rules in the `GET /config/loadbalancer/all` item shape, sorted by rule identity.
    pub fn rules(&self) -> Vec<Value> {
        let mut rules = self.shared.lock().core.rules_json();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        rules.into_iter().map(|(_, v)| v).collect()
    }

    /// Stored rules as the project's LoxiLB wire (`loxilb-api`) reads `GET /config/loadbalancer/all`,
    /// sorted by rule identity.
    pub fn observed_rules(&self) -> Vec<ObservedRule> {
        self.rules().iter().filter_map(loxilb_api::observed_rule).collect()
    }

    /// Endpoint hosts in the `GET /config/endpoint/all` item shape, sorted by name.
    pub fn endpoints(&self) -> Vec<Value> {
        let mut eps = self.shared.lock().core.eps.to_json();
        eps.sort_by(|a, b| a.0.cmp(&b.0));
        eps.into_iter().map(|(_, v)| v).collect()
    }

    /// Forgets every rule and endpoint host, as a LoxiLB restart without saved config does.
    /// The URL, error style, request log and pending injected failures are kept.
    pub fn restart(&self) {
        let mut st = self.shared.lock();
        st.core.reset();
        st.roles = default_roles();
        st.routes = Default::default();
        st.conntrack = Conntrack::default();
    }

    /// The VIPs advertised over BGP now (see `bgp.rs`: LoxiLB's counting, quirks included).
    pub fn advertised(&self) -> Vec<String> {
        self.shared.lock().routes.advertised()
    }

    /// Sets the default HA instance's state, as keepalived's notify script does with
    /// `POST /config/cistate`.
    pub fn set_role(&self, state: &str) {
        let mut st = self.shared.lock();
        if let Some(i) = st.roles.iter_mut().find(|i| i.instance == "llb-inst0") {
            i.state = state.to_string();
        }
    }

    /// Opens a client connection through the rule serving `flow`'s VIP:PORT: the next of its endpoints
    /// (round robin) takes it, and `GET /config/conntrack/all` lists it both ways (see `traffic`).
    pub fn open(&self, flow: &Flow) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        let st = &mut *st;
        st.conntrack.open(&st.core, flow).map_err(anyhow::Error::msg)
    }

    /// Carries `bytes_in` client→VIP and `bytes_out` back over open `flow`: the connection's entries and
    /// its endpoint's counter move.
    pub fn carry(&self, flow: &Flow, bytes_in: u64, bytes_out: u64) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        let st = &mut *st;
        st.conntrack.carry(&mut st.core, flow, bytes_in, bytes_out).map_err(anyhow::Error::msg)
    }

    /// Closes `flow`: it leaves the connection table (endpoint counters keep what it carried).
    pub fn close(&self, flow: &Flow) -> anyhow::Result<()> {
        self.shared.lock().conntrack.close(flow).map_err(anyhow::Error::msg)
    }

    /// The connection table as `GET /config/conntrack/all` lists it.
    pub fn conntrack(&self) -> Vec<loxilb_api::ConntrackEntry> {
        self.shared.lock().conntrack.entries().to_vec()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    pub fn error_style(&self) -> ErrorStyle {
        self.shared.lock().style
    }

    pub fn set_error_style(&self, style: ErrorStyle) {
        self.shared.lock().style = style;
    }

    /// The next `n` requests (any path, any method) are answered with `status` and, without
    /// touching state, `{"result": result}` when `status` is 200, else the coded error body
    /// `{"code":status,"fields":null,"message":..,"result":result}`. Replaces any earlier
    /// injection; `n = 0` cancels.
    pub fn fail_next(&self, n: usize, status: u16, result: &str) {
        self.shared.lock().inject = (n > 0).then(|| Injection { remaining: n, status, result: result.to_string() });
    }
}

impl Simulator {
    /// The next `n` requests (any path, any method) meet `fault`. Replaces any earlier fault; `n = 0`
    /// cancels. Independent of `fail_next`, which a faulted request does not reach when it is a reset.
    pub fn inject_fault(&self, n: usize, fault: Fault) {
        self.shared.lock().faults = (n > 0).then_some((n, fault));
    }
}

/// The simulator's API answered in-process: the same routing, checks, state and request log as over HTTP,
/// without a connection per request. For harnesses that run a policy against the simulator many times
/// (conformance scenarios, swap previews), where loopback connections were most of the time. Transport
/// faults (`Simulator::inject_fault`) do not apply here; `fail_next` does.
#[derive(Clone)]
pub struct InProcess {
    shared: Arc<Shared>,
}

impl InProcess {
    /// One exchange: `url` is the path with its query (`/netlox/v1/…`), as a client would send it; a POST's
    /// body is sent as JSON. Returns the status and the body.
    pub fn exchange(&self, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
        let body = body.unwrap_or("").as_bytes();
        let content_type = (method == "POST").then_some("application/json");
        let reply = handle(&self.shared, method, url, content_type, None, body);
        record(&self.shared, method.to_string(), url, body, None, &reply);
        (reply.status, reply.body)
    }
}

impl Simulator {
    /// A handle answering requests in-process ([`InProcess`]), alive as long as it is, independently of
    /// this server.
    pub fn in_process(&self) -> InProcess {
        InProcess { shared: Arc::clone(&self.shared) }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.front.take();
        self.server.unblock();
    }
}

/// One request answered, on its connection's thread: the state is locked for each step, so requests
/// on different connections are applied one at a time.
fn answer(shared: &Shared, req: &httpd::Request) -> httpd::Answer {
    let authorization = req.header("Authorization").map(str::to_string);
    let fault = {
        let mut st = shared.lock();
        let fault = st.faults.map(|(_, f)| f);
        st.faults = match st.faults {
            Some((n, f)) if n > 1 => Some((n - 1, f)),
            _ => None,
        };
        fault
    };
    if fault == Some(Fault::Reset) {
        // No status line a client can parse, then the connection goes away.
        return httpd::Answer::Raw(b"\x00RESET\r\n\r\n".to_vec());
    }
    let reply = handle(shared, &req.method, &req.url, req.header("Content-Type"), authorization.as_deref(), &req.body);
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(allow) = &reply.allow {
        headers.push(("Allow", allow.clone()));
    }
    record(shared, req.method.clone(), &req.url, &req.body, authorization, &reply);
    if let Some(Fault::Late(delay)) = fault {
        std::thread::sleep(delay);
    }
    httpd::Answer::Response { status: reply.status, headers, body: format!("{}\n", reply.body) }
}

fn record(shared: &Shared, method: String, url: &str, body: &[u8], authorization: Option<String>, reply: &Reply) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    shared.lock().log.push(RecordedRequest {
        method,
        path: path.to_string(),
        query: query.to_string(),
        body: String::from_utf8_lossy(body).into_owned(),
        authorization,
        status: reply.status,
        response: reply.body.clone(),
    });
}

#[derive(Debug)]
enum Route {
    Version,
    Conntrack,
    LbPost,
    LbAll,
    LbByName(String),
    LbRule { host: Option<String>, ip: String, port: String, port_max: Option<String>, proto: String },
    EpPost,
    EpAll,
    EpByIp(String),
    CiStateAll,
    CiStatePost,
}

impl Route {
    fn allowed(&self) -> &'static [&'static str] {
        match self {
            Route::Version | Route::Conntrack | Route::EpAll | Route::CiStateAll => &["GET"],
            Route::LbPost | Route::EpPost | Route::CiStatePost => &["POST"],
            Route::LbAll => &["DELETE", "GET"],
            Route::LbByName(_) | Route::LbRule { .. } | Route::EpByIp(_) => &["DELETE"],
        }
    }
}

fn route(segs: &[String]) -> Option<Route> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let own = |x: &str| x.to_string();
    Some(match s.as_slice() {
        ["version"] => Route::Version,
        ["config", "conntrack", "all"] => Route::Conntrack,
        ["config", "loadbalancer"] => Route::LbPost,
        ["config", "loadbalancer", "all"] => Route::LbAll,
        ["config", "loadbalancer", "name", name] => Route::LbByName(own(name)),
        ["config", "loadbalancer", "externalipaddress", ip, "port", port, "protocol", proto] => {
            Route::LbRule { host: None, ip: own(ip), port: own(port), port_max: None, proto: own(proto) }
        }
        ["config", "loadbalancer", "externalipaddress", ip, "port", port, "portmax", pmax, "protocol", proto] => {
            Route::LbRule { host: None, ip: own(ip), port: own(port), port_max: Some(own(pmax)), proto: own(proto) }
        }
        ["config", "loadbalancer", "hosturl", host, "externalipaddress", ip, "port", port, "protocol", proto] => {
            Route::LbRule { host: Some(own(host)), ip: own(ip), port: own(port), port_max: None, proto: own(proto) }
        }
        ["config", "loadbalancer", "hosturl", host, "externalipaddress", ip, "port", port, "portmax", pmax, "protocol", proto] => {
            Route::LbRule { host: Some(own(host)), ip: own(ip), port: own(port), port_max: Some(own(pmax)), proto: own(proto) }
        }
        ["config", "endpoint"] => Route::EpPost,
        ["config", "endpoint", "all"] => Route::EpAll,
        ["config", "endpoint", "epipaddress", ip] => Route::EpByIp(own(ip)),
        ["config", "cistate", "all"] => Route::CiStateAll,
        ["config", "cistate"] => Route::CiStatePost,
        _ => return None,
    })
}

fn handle(shared: &Shared, method: &str, url: &str, content_type: Option<&str>, authorization: Option<&str>, body: &[u8]) -> Reply {
    let mut st = shared.lock();
    if let Some(inj) = st.inject.as_mut() {
        inj.remaining -= 1;
        let (status, result) = (inj.status, inj.result.clone());
        if inj.remaining == 0 {
            st.inject = None;
        }
        return if status == 200 { errors::result_only(&result) } else { errors::coded(status, &result) };
    }

    let (raw_path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let not_found = || errors::openapi(404, &format!("path {raw_path} was not found"));
    let Some(rest) = raw_path.strip_prefix(BASE_PATH).and_then(|r| r.strip_prefix('/')) else {
        return not_found();
    };
    if rest == "auth/login" {
        if let Some(reply) = st.auth.check(method, rest, authorization, body) {
            return reply;
        }
    }
    // Split before decoding so an encoded '/' stays inside its segment, as go-openapi does.
    let segs: Vec<String> = rest.split('/').map(|s| pct_decode(s, false)).collect();
    let Some(route) = route(&segs) else {
        return not_found();
    };
    // go-openapi authenticates after routing: an unknown path is 404 whatever the credentials.
    if let Some(reply) = st.auth.check(method, rest, authorization, body) {
        return reply;
    }
    if !route.allowed().contains(&method) {
        return errors::method_not_allowed(method, route.allowed());
    }
    if let Some(reply) = check_content_type(content_type, body) {
        return reply;
    }
    let query = parse_query(raw_query);
    let style = st.style;
    // Through a plain reference, so the rule table and the connection table are borrowed apart.
    let st = &mut *st;
    let core = &mut st.core;

    match route {
        Route::Version => errors::ok_json(json!({ "version": version(style), "buildInfo": BUILD_INFO })),
        Route::CiStateAll => {
            let attr: Vec<Value> = st.roles.iter().map(|i| json!({"instance": i.instance, "state": i.state, "vip": i.vip, "sync": null})).collect();
            errors::ok_json(json!({ "Attr": attr }))
        }
        Route::CiStatePost => {
            let attr: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let text = |k: &str| attr.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (instance, state) = (text("instance"), text("state"));
            if !HA_STATES.contains(&state.as_str()) {
                return errors::core_error(style, "invalid cluster-state");
            }
            let instance = if instance.is_empty() { "llb-inst0".to_string() } else { instance };
            let vip = Some(text("vip")).filter(|v| !v.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            match st.roles.iter_mut().find(|i| i.instance == instance) {
                Some(i) => (i.state, i.vip) = (state, vip),
                None => st.roles.push(HaInstance { instance, state, vip }),
            }
            errors::success()
        }
        Route::Conntrack => errors::ok_json(loxilb_api::conntrack::conntrack_json(st.conntrack.entries())),
        Route::LbAll if method == "GET" => errors::Reply::encoded(200, core.listing_text()),
        Route::LbAll => {
            core.delete_all();
            errors::success()
        }
        Route::LbByName(name) => {
            core.delete_by_name(&name);
            errors::success()
        }
        Route::LbRule { host, ip, port, port_max, proto } => {
            let port = match path_number("port", &port) {
                Ok(p) => p as u16,
                Err(r) => return r,
            };
            let port_max = match port_max.map(|p| path_number("portmax", &p)).transpose() {
                Ok(p) => p.unwrap_or(0.0) as u16,
                Err(r) => return r,
            };
            let block = match query_number(&query, "block") {
                Ok(b) => b.unwrap_or(0.0) as u32,
                Err(r) => return r,
            };
            let host = host.filter(|h| h != "any").unwrap_or_default();
            let withdraw = query.iter().rev().find(|(k, _)| k == "bgp").is_some_and(|(_, v)| v == "true");
            let mut ips = if withdraw { core.secondary_ips(&ip, port, &proto, block) } else { Vec::new() };
            let deleted = core.delete_lb_rule(&ip, port, port_max, &proto, block, &host);
            if withdraw {
                ips.push(ip.clone());
                st.routes.del(&ips);
            }
            match deleted {
                Ok(()) => errors::success(),
                Err(e) => errors::core_error(style, &e),
            }
        }
        Route::LbPost => {
            let opts = Options { skip_enums: if style == ErrorStyle::Legacy { LEGACY_UNCHECKED_ENUMS } else { &[] }, ..Options::default() };
            let v = match decode_body(&shared.spec, "LoadbalanceEntry", body, opts) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let m = match lb_rule_mod(&v) {
                Ok(m) => m,
                Err(r) => return r,
            };
            if m.serv.mode == 3 && m.serv.sel != 1 {
                // handler/loadbalancer.go answers this one itself, as a 200, in every version.
                return errors::result_only("Error: Only Hash Selection criteria allowed for DSR mode");
            }
            match core.add_lb_rule(&m) {
                Ok(()) => {
                    if m.serv.bgp {
                        let ips: Vec<String> = std::iter::once(m.serv.serv_ip.clone()).chain(m.sec_ips.iter().cloned()).collect();
                        st.routes.add(&ips);
                    }
                    errors::success()
                }
                Err(e) => errors::core_error(style, &e),
            }
        }
        Route::EpPost => {
            let v = match decode_body(&shared.spec, "EndPoint", body, Options::default()) {
                Ok(v) => v,
                Err(r) => return r,
            };
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let i = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
            let opts = EpOpts {
                probe_type: s("probeType"),
                probe_port: i("probePort") as u16,
                probe_req: s("probeReq"),
                probe_resp: s("probeResp"),
                probe_duration: i("probeDuration") as u32,
                inactive_tries: i("inactiveReTries"),
                probe_activated: false,
            };
            match core.eps.add(true, &s("hostName"), &s("name"), opts) {
                Ok(()) => errors::success(),
                Err(e) => errors::core_error(style, &e),
            }
        }
        Route::EpAll => {
            let all: Vec<Value> = core.eps.to_json().into_iter().map(|(_, v)| v).collect();
            errors::ok_json(json!({ "Attr": all }))
        }
        Route::EpByIp(ip) => {
            let probe_port = match query_number(&query, "probe_port") {
                Ok(p) => p.unwrap_or(0.0) as u16,
                Err(r) => return r,
            };
            let q = |k: &str| query.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            match core.eps.delete(true, &q("name"), &ip, &q("probe_type"), probe_port) {
                Ok(()) => errors::success(),
                Err(e) => errors::core_error(style, &e),
            }
        }
    }
}

/// go-openapi checks the media type of any request that has a body; a missing header counts
/// as `application/octet-stream`.
fn check_content_type(content_type: Option<&str>, body: &[u8]) -> Option<Reply> {
    if body.is_empty() {
        return None;
    }
    let raw = content_type.unwrap_or("application/octet-stream");
    let media = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    (media != "application/json").then(|| errors::openapi(415, &format!("unsupported media type {raw:?}, only [application/json] are allowed")))
}

/// Binds the `attr` body parameter the way go-openapi does: decode (400 on syntax or type
/// errors, 422 on an empty body), then validate the model (422, first error only).
fn decode_body(spec: &SpecValidator, def: &str, body: &[u8], opts: Options) -> Result<Value, Reply> {
    // Go's json.Decoder reads one value and ignores whatever follows it.
    let value = match serde_json::Deserializer::from_slice(body).into_iter::<Value>().next() {
        None => return Err(errors::openapi(602, "attr in body is required")),
        Some(Err(e)) if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) => return Err(errors::openapi(602, "attr in body is required")),
        Some(Err(e)) => return Err(parse_error(&e.to_string())),
        Some(Ok(v)) => v,
    };
    let value = spec.canonicalize(def, &value);
    let issues = spec.check(def, &value, opts).map_err(|e| errors::openapi(500, &e))?;
    if let Some(t) = issues.iter().find(|i| i.kind == IssueKind::Type && !i.go_message.is_empty()) {
        return Err(parse_error(&t.go_message));
    }
    match issues.iter().find(|i| matches!(i.kind, IssueKind::Required | IssueKind::Enum)) {
        Some(i) if i.kind == IssueKind::Required => Err(errors::openapi(602, &i.go_message)),
        Some(i) => Err(errors::openapi(606, &i.go_message)),
        None => Ok(value),
    }
}

fn parse_error(reason: &str) -> Reply {
    errors::openapi(400, &format!("parsing attr body from \"\" failed, because {reason}"))
}

/// The LB handler's copy into `cmn.LbRuleMod`, with Go's integer conversions (a port of 65616
/// becomes 80, a weight of 257 becomes 1). A `null` list item crashes the real handler.
fn lb_rule_mod(v: &Value) -> Result<LbRuleMod, Reply> {
    let sa = &v["serviceArguments"];
    let s = |k: &str| sa.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let i = |k: &str| sa.get(k).and_then(Value::as_i64).unwrap_or(0);
    let b = |k: &str| sa.get(k).and_then(Value::as_bool).unwrap_or(false);
    let serv = ServiceArg {
        serv_ip: s("externalIP"),
        private_ip: s("privateIP"),
        port: i("port") as u16,
        port_max: i("portMax") as u16,
        proto: s("protocol"),
        block: i("block") as u32,
        sel: i("sel"),
        bgp: b("bgp"),
        monitor: b("monitor"),
        mode: i("mode") as i32,
        security: i("security") as i32,
        inactive_timeout: i("inactiveTimeOut") as i32 as u32,
        managed: b("managed"),
        probe_type: s("probetype"),
        probe_port: i("probeport") as u16,
        probe_req: s("probereq"),
        probe_resp: s("proberesp"),
        probe_timeout: i("probeTimeout") as u32,
        probe_retries: i("probeRetries"),
        name: s("name"),
        oper: i("oper") as i32,
        host: s("host"),
        proxy_protocol_v2: b("proxyprotocolv2"),
        egress: b("egress"),
    };
    let items = |k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    let panic = || errors::openapi(500, "simulated: loxilb's LB handler dereferences a null list item and panics");
    let field = |item: &Value, k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_string();

    let mut m = LbRuleMod { serv, ..LbRuleMod::default() };
    // The handler passes secondary IPs on only for sctp; for other protocols they vanish.
    if m.serv.proto == "sctp" {
        for item in items("secondaryIPs") {
            if item.is_null() {
                return Err(panic());
            }
            m.sec_ips.push(field(&item, "secondaryIP"));
        }
    }
    for item in items("allowedSources") {
        if item.is_null() {
            return Err(panic());
        }
        m.src_ips.push(field(&item, "prefix"));
    }
    for item in items("endpoints") {
        if item.is_null() {
            return Err(panic());
        }
        let n = |k: &str| item.get(k).and_then(Value::as_i64).unwrap_or(0);
        m.eps.push(EndpointArg { ip: field(&item, "endpointIP"), port: n("targetPort") as u16, weight: n("weight") as u8 });
    }
    Ok(m)
}

/// A `type: number` path parameter (go-openapi binds it with ParseFloat).
fn path_number(name: &str, raw: &str) -> Result<f64, Reply> {
    raw.parse::<f64>().map_err(|_| errors::openapi(601, &format!("{name} in path must be of type float64: {raw:?}")))
}

/// A `type: number` query parameter: the last occurrence counts, empty means unset.
fn query_number(query: &[(String, String)], name: &str) -> Result<Option<f64>, Reply> {
    match query.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v.parse::<f64>().map(Some).map_err(|_| errors::openapi(601, &format!("{name} in query must be of type float64: {v:?}"))),
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k, true), pct_decode(v, true))
        })
        .collect()
}

fn pct_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// LoxiLB's Go server answers without Nagle's delay; the accepted sockets would otherwise hold a large
/// response's last segment for the client's delayed ACK (~40 ms a request). Linux hands TCP_NODELAY
/// from the listening socket to the sockets it accepts.
fn no_delay(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a pointer to a c_int of the size given.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(pct_decode("2001%3Adb8%3A%3A1", false), "2001:db8::1");
        assert_eq!(pct_decode("a+b%2", true), "a b%2");
        assert_eq!(pct_decode("%zz", false), "%zz");
    }

    #[test]
    fn routes_ipv6_raw_in_path() {
        let segs: Vec<String> = "config/loadbalancer/externalipaddress/2001:db8::1/port/80/protocol/tcp".split('/').map(String::from).collect();
        match route(&segs) {
            Some(Route::LbRule { ip, port, proto, host: None, port_max: None }) => {
                assert_eq!((ip.as_str(), port.as_str(), proto.as_str()), ("2001:db8::1", "80", "tcp"))
            }
            other => panic!("{other:?}"),
        }
    }
}
