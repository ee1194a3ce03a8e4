//! An entry's metadata (the seed's `additional_metadata`): this policy's JSON for the Octavia object
//! behind it.
//!
//! Written compact: the object's fields under their Octavia names, leaving out what the entry already
//! says (the object's own id and its parent's; a load balancer's VIP, a listener's or pool's protocol, a
//! listener's or member's port, a programmed rule's VIP, port and protocol, when they are the entry's)
//! and every field at its default (absent options, empty
//! lists, zero numbers in rules, `admin_state_up: true`, `weight: 1`…); a listener carries the rule last
//! programmed for it under `programmed`, its endpoints as `[ip, port, weight]`, its name left out when it
//! is the one `keys::rule_name` gives the listener. A member is ~50 bytes where
//! the full object was ~230, a listener ~0.5 KB where it was ~1.5 KB: the snapshot, the journal and every
//! read of the mapping shrink with it.
//!
//! Read: that form, and the one earlier releases wrote (`{"object": <type>, "attributes": <every field>}`,
//! endpoints as objects), so a mapping written before loads unchanged and is rewritten compact entry by
//! entry as objects change.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::json::{push_i64, push_string, push_u64, Json};
use crate::keys;
use crate::loxilb_types::{Endpoint, EndpointProbe, LbRule, ServiceArgs};
use crate::octavia::{HealthMonitor, L7policy, L7rule, Listener, Loadbalancer, Member, Pool, SessionPersistence};
use crate::state::{ListenerState, Object, ResourceType};
use crate::translate::Rendered;

/// Octavia's default for a health monitor's `max_retries_down`.
const OCTAVIA_MAX_RETRIES_DOWN: u32 = 3;

/// What an entry says of its object, which its metadata therefore leaves out: the object's own id, its
/// parent's, and the entry's seed fields.
#[derive(Clone, Copy)]
pub struct Implied<'a> {
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub external_ip: &'a str,
    pub port: u16,
    pub protocol: &'a str,
}

/// The metadata of `object`, which the entry `implied` describes.
pub fn encode(object: &Object, implied: Implied) -> String {
    let mut out = String::with_capacity(128);
    let o = &mut Obj::open(&mut out);
    match object {
        Object::Loadbalancer(lb) => loadbalancer(o, lb, Some(implied)),
        Object::Listener(ls) => {
            listener(o, &ls.listener, Some(implied));
            if let Some(programmed) = &ls.programmed {
                let mut p = Obj::open(o.key("programmed"));
                rendered(&mut p, programmed, Some((&ls.listener, implied)));
                p.close();
            }
        }
        Object::Pool(p) => pool(o, p, Some(implied)),
        Object::Member(m) => member(o, m, Some(implied)),
        Object::Healthmonitor(h) => monitor(o, h, false),
    }
    o.close();
    out
}

/// The object behind an entry of type `kind` from its metadata, in either form (see the module's comment).
pub fn decode(text: &str, kind: ResourceType, implied: Implied) -> Result<Object, String> {
    let json = Json::parse(text)?;
    let (kind, attributes, implied) = match json.get("object") {
        // The earlier form: every field is there, the type is named.
        Some(named) => {
            let kind = match named.as_str() {
                Some("loadbalancer") => ResourceType::Loadbalancer,
                Some("listener") => ResourceType::Listener,
                Some("pool") => ResourceType::Pool,
                Some("member") => ResourceType::Member,
                Some("healthmonitor") => ResourceType::Healthmonitor,
                _ => return Err(format!("unknown object type {}", named.as_str().map_or_else(|| "(not a string)".into(), crate::json::quoted))),
            };
            (kind, json.get("attributes").ok_or("no attributes")?, None)
        }
        None => (kind, &json, Some(implied)),
    };
    let f = Fields::of(attributes, kind.as_str())?;
    Ok(match kind {
        ResourceType::Loadbalancer => Object::Loadbalancer(read_loadbalancer(&f, implied)?),
        ResourceType::Listener => {
            let (listener, programmed) = match f.field("listener") {
                // Earlier form: `{"listener": {...}, "programmed": {...}}`.
                Some(l) => (read_listener(&Fields::of(l, "listener")?, implied)?, f.field("programmed")),
                None => (read_listener(&f, implied)?, f.field("programmed")),
            };
            let programmed = programmed.map(|p| read_rendered(&Fields::of(p, "programmed")?, implied.map(|i| (&listener, i)))).transpose()?;
            Object::Listener(ListenerState { listener, programmed })
        }
        ResourceType::Pool => Object::Pool(read_pool(&f, implied)?),
        ResourceType::Member => Object::Member(read_member(&f, implied)?),
        ResourceType::Healthmonitor => Object::Healthmonitor(read_monitor(&f, implied)?),
    })
}

/// An object being written: members are added with `key` and the helpers, which leave out defaults.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    /// Starts the member `name`; its value is to be written to what this returns.
    fn key(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_string(self.out, name);
        self.out.push(':');
        self.out
    }

    fn close(&mut self) {
        self.out.push('}');
    }

    fn string(&mut self, name: &str, value: &str) {
        push_string(self.key(name), value);
    }

    /// A string left out when empty.
    fn text(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.string(name, value);
        }
    }

    fn opt_string(&mut self, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.string(name, v);
        }
    }

    fn number(&mut self, name: &str, value: impl Into<i64>) {
        push_i64(self.key(name), value.into());
    }

    fn opt_number(&mut self, name: &str, value: Option<impl Into<i64>>) {
        if let Some(v) = value {
            self.number(name, v);
        }
    }

    /// A number left out when it is `default`.
    fn number_unless(&mut self, name: &str, value: u64, default: u64) {
        if value != default {
            push_u64(self.key(name), value);
        }
    }

    /// A flag left out when it is `default`.
    fn flag(&mut self, name: &str, value: bool, default: bool) {
        if value != default {
            self.key(name).push_str(if value { "true" } else { "false" });
        }
    }

    fn strings(&mut self, name: &str, values: &[String]) {
        if !values.is_empty() {
            let out = self.key(name);
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, v);
            }
            out.push(']');
        }
    }

    fn pairs(&mut self, name: &str, values: &[(String, String)]) {
        if !values.is_empty() {
            let out = self.key(name);
            out.push('[');
            for (i, (a, b)) in values.iter().enumerate() {
                out.push_str(if i > 0 { ",[" } else { "[" });
                push_string(out, a);
                out.push(',');
                push_string(out, b);
                out.push(']');
            }
            out.push(']');
        }
    }

    /// A list of objects, each written by `write`; left out when empty.
    fn objects<T>(&mut self, name: &str, values: &[T], write: impl Fn(&mut Obj, &T)) {
        if !values.is_empty() {
            let out = self.key(name);
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut o = Obj::open(out);
                write(&mut o, v);
                o.close();
            }
            out.push(']');
        }
    }

    fn object<T>(&mut self, name: &str, value: &Option<T>, write: impl Fn(&mut Obj, &T)) {
        if let Some(v) = value {
            let mut o = Obj::open(self.key(name));
            write(&mut o, v);
            o.close();
        }
    }

    /// A string left out when it is what the entry implies.
    fn string_unless(&mut self, name: &str, value: &str, implied: Option<&str>) {
        if implied != Some(value) {
            self.string(name, value);
        }
    }

    /// An object's own id and its parent's id, unless the entry implies them (`implied`).
    fn ids(&mut self, implied: bool, id: &str, parent_name: &str, parent: &str) {
        if !implied {
            self.string("id", id);
            self.string(parent_name, parent);
        }
    }
}

impl Implied<'_> {
    /// Octavia's name of the entry's protocol (entries hold it lower-cased, as LoxiLB's rules do).
    fn octavia_protocol(&self) -> String {
        self.protocol.to_ascii_uppercase()
    }
}

/// A load balancer; `implied`: its entry, when it is stored on its own.
fn loadbalancer(o: &mut Obj, lb: &Loadbalancer, implied: Option<Implied>) {
    if implied.is_none() {
        o.string("id", &lb.id);
    }
    o.opt_string("project_id", &lb.project_id);
    o.opt_string("name", &lb.name);
    o.string_unless("vip_address", &lb.vip_address, implied.map(|i| i.external_ip));
    o.strings("additional_vips", &lb.additional_vips);
    o.flag("admin_state_up", lb.admin_state_up, true);
    o.pairs("flavor", &lb.flavor);
    o.objects("listeners", &lb.listeners, |o, l| listener(o, l, None));
    o.objects("pools", &lb.pools, |o, p| pool(o, p, None));
}

/// A listener; `implied`: the entry of a listener stored on its own (not nested in a load balancer).
fn listener(o: &mut Obj, l: &Listener, implied: Option<Implied>) {
    o.ids(implied.is_some(), &l.id, "loadbalancer_id", &l.loadbalancer_id);
    o.string_unless("protocol", &l.protocol, implied.map(|i| i.octavia_protocol()).as_deref());
    o.number_unless("protocol_port", l.protocol_port.into(), implied.map_or(u64::MAX, |i| i.port.into()));
    o.opt_string("default_pool_id", &l.default_pool_id);
    o.flag("admin_state_up", l.admin_state_up, true);
    o.opt_number("connection_limit", l.connection_limit);
    o.opt_number("timeout_client_data", l.timeout_client_data);
    o.opt_number("timeout_member_connect", l.timeout_member_connect);
    o.opt_number("timeout_member_data", l.timeout_member_data);
    o.strings("allowed_cidrs", &l.allowed_cidrs);
    o.pairs("insert_headers", &l.insert_headers);
    o.opt_string("default_tls_container_ref", &l.default_tls_container_ref);
    o.strings("sni_container_refs", &l.sni_container_refs);
    o.opt_string("client_authentication", &l.client_authentication);
    o.objects("l7policies", &l.l7policies, l7policy);
}

fn l7policy(o: &mut Obj, p: &L7policy) {
    o.ids(false, &p.id, "listener_id", &p.listener_id);
    o.string("action", &p.action);
    o.opt_number("position", p.position);
    o.opt_string("redirect_pool_id", &p.redirect_pool_id);
    o.opt_string("redirect_url", &p.redirect_url);
    o.opt_string("redirect_prefix", &p.redirect_prefix);
    o.flag("admin_state_up", p.admin_state_up, true);
    o.objects("rules", &p.rules, l7rule);
}

fn l7rule(o: &mut Obj, r: &L7rule) {
    o.ids(false, &r.id, "l7policy_id", &r.l7policy_id);
    o.string("kind", &r.kind);
    o.string("compare_type", &r.compare_type);
    o.opt_string("key", &r.key);
    o.string("value", &r.value);
    o.flag("invert", r.invert, false);
    o.flag("admin_state_up", r.admin_state_up, true);
}

/// A pool; `implied`: its entry, when it is stored on its own.
fn pool(o: &mut Obj, p: &Pool, implied: Option<Implied>) {
    o.ids(implied.is_some(), &p.id, "loadbalancer_id", &p.loadbalancer_id);
    o.opt_string("listener_id", &p.listener_id);
    o.string_unless("protocol", &p.protocol, implied.map(|i| i.octavia_protocol()).as_deref());
    o.string("lb_algorithm", &p.lb_algorithm);
    o.object("session_persistence", &p.session_persistence, |o, s: &SessionPersistence| {
        o.string("kind", &s.kind);
        o.opt_string("cookie_name", &s.cookie_name);
        o.opt_number("persistence_timeout", s.persistence_timeout);
        o.opt_string("persistence_granularity", &s.persistence_granularity);
    });
    o.flag("tls_enabled", p.tls_enabled, false);
    o.flag("admin_state_up", p.admin_state_up, true);
    o.objects("members", &p.members, |o, m| member(o, m, None));
    o.object("healthmonitor", &p.healthmonitor, |o, h| monitor(o, h, true));
}

/// A member; `implied`: the entry of a member stored on its own (not nested in a pool).
fn member(o: &mut Obj, m: &Member, implied: Option<Implied>) {
    o.ids(implied.is_some(), &m.id, "pool_id", &m.pool_id);
    o.string("address", &m.address);
    o.number_unless("protocol_port", m.protocol_port.into(), implied.map_or(u64::MAX, |i| i.port.into()));
    o.number_unless("weight", m.weight.into(), 1);
    o.flag("admin_state_up", m.admin_state_up, true);
    o.flag("backup", m.backup, false);
    o.opt_string("monitor_address", &m.monitor_address);
    o.opt_number("monitor_port", m.monitor_port);
}

fn monitor(o: &mut Obj, h: &HealthMonitor, nested: bool) {
    o.ids(!nested, &h.id, "pool_id", &h.pool_id);
    o.string("kind", &h.kind);
    o.number("delay", h.delay);
    o.number("timeout", h.timeout);
    o.number("max_retries", h.max_retries);
    o.number_unless("max_retries_down", h.max_retries_down.into(), OCTAVIA_MAX_RETRIES_DOWN.into());
    o.opt_string("http_method", &h.http_method);
    o.opt_string("url_path", &h.url_path);
    o.opt_string("expected_codes", &h.expected_codes);
    o.opt_string("http_version", &h.http_version);
    o.opt_string("domain_name", &h.domain_name);
    o.flag("admin_state_up", h.admin_state_up, true);
}

/// The name a listener's rule has unless its metadata says otherwise.
fn implied_rule_name(l: &Listener) -> Option<String> {
    l.default_pool_id.as_deref().map(|pool| keys::rule_name(&l.loadbalancer_id, &l.id, pool))
}

/// The rule programmed for a listener; `of`: the listener and its entry, which imply the rule's VIP, port,
/// protocol and name.
fn rendered(o: &mut Obj, r: &Rendered, of: Option<(&Listener, Implied)>) {
    let s = &r.rule.service;
    let mut service = Obj::open(o.key("service"));
    match of {
        Some((_, implied)) => {
            if s.external_ip != implied.external_ip {
                service.string("external_ip", &s.external_ip);
            }
            service.number_unless("port", s.port.into(), implied.port.into());
            if s.protocol != implied.protocol {
                service.string("protocol", &s.protocol);
            }
        }
        None => {
            service.text("external_ip", &s.external_ip);
            service.number_unless("port", s.port.into(), 0);
            service.text("protocol", &s.protocol);
        }
    }
    service.number_unless("sel", s.sel.into(), 0);
    service.number_unless("mode", s.mode.into(), 0);
    service.number_unless("security", s.security.into(), 0);
    service.flag("monitor", s.monitor, false);
    service.number_unless("inactive_timeout", s.inactive_timeout.into(), 0);
    service.number_unless("block", s.block.into(), 0);
    match of.map(|(l, _)| implied_rule_name(l)) {
        Some(implied) if implied.as_deref() == Some(s.name.as_str()) => {}
        Some(_) => service.string("name", &s.name),
        None => service.text("name", &s.name),
    }
    service.text("probetype", &s.probetype);
    service.number_unless("probeport", s.probeport.into(), 0);
    service.text("probereq", &s.probereq);
    service.text("proberesp", &s.proberesp);
    service.number_unless("probe_timeout", s.probe_timeout.into(), 0);
    service.number_unless("probe_retries", s.probe_retries.into(), 0);
    service.flag("proxyprotocolv2", s.proxyprotocolv2, false);
    service.flag("bgp", s.bgp, false);
    service.text("host", &s.host);
    service.close();
    if !r.rule.endpoints.is_empty() {
        let out = o.key("endpoints");
        out.push('[');
        for (i, e) in r.rule.endpoints.iter().enumerate() {
            out.push_str(if i > 0 { ",[" } else { "[" });
            push_string(out, &e.ip);
            out.push(',');
            push_u64(out, e.target_port.into());
            out.push(',');
            push_u64(out, e.weight.into());
            out.push(']');
        }
        out.push(']');
    }
    o.strings("allowed_sources", &r.rule.allowed_sources);
    o.strings("secondary_ips", &r.rule.secondary_ips);
    o.objects("probes", &r.probes, |o, p| {
        o.text("host_name", &p.host_name);
        o.text("name", &p.name);
        o.text("probe_type", &p.probe_type);
        o.number_unless("probe_port", p.probe_port.into(), 0);
        o.text("probe_req", &p.probe_req);
        o.text("probe_resp", &p.probe_resp);
        o.number_unless("probe_duration", p.probe_duration.into(), 0);
        o.number_unless("inactive_retries", p.inactive_retries.into(), 0);
    });
}

/// The members of an object being read; a missing member or `null` takes the field's default.
struct Fields<'a> {
    members: &'a [(Cow<'a, str>, Json<'a>)],
    what: &'static str,
    /// The first field found wrong. Reading goes on past it and [`Fields::done`] answers it: an early
    /// return from the middle of a struct literal drops every field read before it, one clean-up path per
    /// field, which was a fifth of this module's code in the policy.
    error: RefCell<Option<String>>,
}

impl<'a> Fields<'a> {
    fn of(json: &'a Json<'a>, what: &'static str) -> Result<Fields<'a>, String> {
        match json {
            Json::Object(members) => Ok(Fields { members, what, error: RefCell::new(None) }),
            _ => Err(format!("{what}: not an object")),
        }
    }

    /// `value`, unless a field read for it was wrong.
    fn done<T>(&self, value: T) -> Result<T, String> {
        self.error.take().map_or(Ok(value), Err)
    }

    fn fail(&self, message: String) {
        self.error.borrow_mut().get_or_insert(message);
    }

    fn field(&self, name: &str) -> Option<&'a Json<'a>> {
        self.members.iter().find(|(k, _)| k == name).map(|(_, v)| v).filter(|v| !v.is_null())
    }

    fn wrong(&self, name: &str, expected: &str) {
        self.fail(format!("{}.{name}: expected {expected}", self.what));
    }

    fn missing(&self, name: &str) {
        self.fail(format!("{}.{name}: missing", self.what));
    }

    fn string(&self, name: &str) -> String {
        self.opt_string(name).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    fn text(&self, name: &str) -> String {
        self.opt_string(name).unwrap_or_default()
    }

    fn opt_string(&self, name: &str) -> Option<String> {
        let v = self.field(name)?;
        let s = v.as_str().map(str::to_string);
        if s.is_none() {
            self.wrong(name, "a string");
        }
        s
    }

    /// An id the entry implies when the metadata leaves it out.
    fn id(&self, name: &str, implied: Option<&str>) -> String {
        self.implied_string(name, implied.map(str::to_string))
    }

    fn opt_number<T: TryFrom<i64>>(&self, name: &str) -> Option<T> {
        let v = self.field(name)?;
        let n = v.as_i64().and_then(|n| T::try_from(n).ok());
        if n.is_none() {
            self.wrong(name, "an integer in range");
        }
        n
    }

    fn number<T: TryFrom<i64>>(&self, name: &str, default: T) -> T {
        self.opt_number(name).unwrap_or(default)
    }

    fn required_number<T: TryFrom<i64> + Default>(&self, name: &str) -> T {
        self.implied_number(name, None)
    }

    /// A string the entry implies when the metadata leaves it out.
    fn implied_string(&self, name: &str, implied: Option<String>) -> String {
        self.opt_string(name).or(implied).unwrap_or_else(|| {
            self.missing(name);
            String::new()
        })
    }

    /// A number the entry implies when the metadata leaves it out.
    fn implied_number<T: TryFrom<i64> + Default>(&self, name: &str, implied: Option<T>) -> T {
        self.opt_number(name).or(implied).unwrap_or_else(|| {
            self.missing(name);
            T::default()
        })
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        let Some(v) = self.field(name) else { return default };
        v.as_bool().unwrap_or_else(|| {
            self.wrong(name, "true or false");
            default
        })
    }

    fn list<T>(&self, name: &str, read: impl Fn(&'a Json<'a>) -> Result<T, String>) -> Vec<T> {
        let Some(v) = self.field(name) else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.wrong(name, "a list");
            return Vec::new();
        };
        items.iter().filter_map(|item| read(item).map_err(|e| self.fail(e)).ok()).collect()
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.list(name, |v| v.as_str().map(str::to_string).ok_or_else(|| format!("{}.{name}: expected strings", self.what)))
    }

    fn pairs(&self, name: &str) -> Vec<(String, String)> {
        self.list(name, |v| match v.as_array() {
            Some([Json::String(a), Json::String(b)]) => Ok((a.to_string(), b.to_string())),
            _ => Err(format!("{}.{name}: expected pairs of strings", self.what)),
        })
    }

    fn object<T>(&self, name: &'static str, read: impl Fn(&Fields) -> Result<T, String>) -> Option<T> {
        let v = self.field(name)?;
        Fields::of(v, name).and_then(|fields| read(&fields)).map_err(|e| self.fail(e)).ok()
    }
}

fn read_loadbalancer(f: &Fields, implied: Option<Implied>) -> Result<Loadbalancer, String> {
    f.done(Loadbalancer {
        id: f.id("id", implied.map(|i| i.id)),
        project_id: f.opt_string("project_id"),
        name: f.opt_string("name"),
        vip_address: f.implied_string("vip_address", implied.map(|i| i.external_ip.to_string())),
        additional_vips: f.strings("additional_vips"),
        admin_state_up: f.flag("admin_state_up", true),
        flavor: f.pairs("flavor"),
        listeners: f.list("listeners", |v| read_listener(&Fields::of(v, "listener")?, None)),
        pools: f.list("pools", |v| read_pool(&Fields::of(v, "pool")?, None)),
    })
}

fn read_listener(f: &Fields, implied: Option<Implied>) -> Result<Listener, String> {
    f.done(Listener {
        id: f.id("id", implied.map(|i| i.id)),
        loadbalancer_id: f.id("loadbalancer_id", implied.and_then(|i| i.parent)),
        protocol: f.implied_string("protocol", implied.map(|i| i.octavia_protocol())),
        protocol_port: f.implied_number("protocol_port", implied.map(|i| i.port)),
        default_pool_id: f.opt_string("default_pool_id"),
        admin_state_up: f.flag("admin_state_up", true),
        connection_limit: f.opt_number("connection_limit"),
        timeout_client_data: f.opt_number("timeout_client_data"),
        timeout_member_connect: f.opt_number("timeout_member_connect"),
        timeout_member_data: f.opt_number("timeout_member_data"),
        allowed_cidrs: f.strings("allowed_cidrs"),
        insert_headers: f.pairs("insert_headers"),
        default_tls_container_ref: f.opt_string("default_tls_container_ref"),
        sni_container_refs: f.strings("sni_container_refs"),
        client_authentication: f.opt_string("client_authentication"),
        l7policies: f.list("l7policies", |v| read_l7policy(&Fields::of(v, "l7policy")?)),
    })
}

fn read_l7policy(f: &Fields) -> Result<L7policy, String> {
    f.done(L7policy {
        id: f.string("id"),
        listener_id: f.string("listener_id"),
        action: f.string("action"),
        position: f.opt_number("position"),
        redirect_pool_id: f.opt_string("redirect_pool_id"),
        redirect_url: f.opt_string("redirect_url"),
        redirect_prefix: f.opt_string("redirect_prefix"),
        admin_state_up: f.flag("admin_state_up", true),
        rules: f.list("rules", |v| read_l7rule(&Fields::of(v, "l7rule")?)),
    })
}

fn read_l7rule(f: &Fields) -> Result<L7rule, String> {
    f.done(L7rule {
        id: f.string("id"),
        l7policy_id: f.string("l7policy_id"),
        kind: f.string("kind"),
        compare_type: f.string("compare_type"),
        key: f.opt_string("key"),
        value: f.string("value"),
        invert: f.flag("invert", false),
        admin_state_up: f.flag("admin_state_up", true),
    })
}

fn read_pool(f: &Fields, implied: Option<Implied>) -> Result<Pool, String> {
    f.done(Pool {
        id: f.id("id", implied.map(|i| i.id)),
        loadbalancer_id: f.id("loadbalancer_id", implied.and_then(|i| i.parent)),
        listener_id: f.opt_string("listener_id"),
        protocol: f.implied_string("protocol", implied.map(|i| i.octavia_protocol())),
        lb_algorithm: f.string("lb_algorithm"),
        session_persistence: f.object("session_persistence", |s| {
            s.done(SessionPersistence {
                kind: s.string("kind"),
                cookie_name: s.opt_string("cookie_name"),
                persistence_timeout: s.opt_number("persistence_timeout"),
                persistence_granularity: s.opt_string("persistence_granularity"),
            })
        }),
        tls_enabled: f.flag("tls_enabled", false),
        admin_state_up: f.flag("admin_state_up", true),
        members: f.list("members", |v| read_member(&Fields::of(v, "member")?, None)),
        healthmonitor: f.object("healthmonitor", |h| read_monitor(h, None)),
    })
}

fn read_member(f: &Fields, implied: Option<Implied>) -> Result<Member, String> {
    f.done(Member {
        id: f.id("id", implied.map(|i| i.id)),
        pool_id: f.id("pool_id", implied.and_then(|i| i.parent)),
        address: f.string("address"),
        protocol_port: f.implied_number("protocol_port", implied.map(|i| i.port)),
        weight: f.number("weight", 1),
        admin_state_up: f.flag("admin_state_up", true),
        backup: f.flag("backup", false),
        monitor_address: f.opt_string("monitor_address"),
        monitor_port: f.opt_number("monitor_port"),
    })
}

fn read_monitor(f: &Fields, implied: Option<Implied>) -> Result<HealthMonitor, String> {
    f.done(HealthMonitor {
        id: f.id("id", implied.map(|i| i.id)),
        pool_id: f.id("pool_id", implied.and_then(|i| i.parent)),
        kind: f.string("kind"),
        delay: f.required_number("delay"),
        timeout: f.required_number("timeout"),
        max_retries: f.required_number("max_retries"),
        max_retries_down: f.number("max_retries_down", OCTAVIA_MAX_RETRIES_DOWN),
        http_method: f.opt_string("http_method"),
        url_path: f.opt_string("url_path"),
        expected_codes: f.opt_string("expected_codes"),
        http_version: f.opt_string("http_version"),
        domain_name: f.opt_string("domain_name"),
        admin_state_up: f.flag("admin_state_up", true),
    })
}

fn read_rendered(f: &Fields, of: Option<(&Listener, Implied)>) -> Result<Rendered, String> {
    // The earlier form nests the rule: `{"rule": {...}, "probes": [...]}`.
    let rule_fields;
    let rule = match f.field("rule") {
        Some(r) => {
            rule_fields = Fields::of(r, "rule")?;
            &rule_fields
        }
        None => f,
    };
    let service = rule.object("service", |s| {
        let implied = of.map(|(_, i)| i);
        s.done(ServiceArgs {
            external_ip: s.opt_string("external_ip").unwrap_or_else(|| implied.map_or("", |i| i.external_ip).to_string()),
            port: s.number("port", implied.map_or(0, |i| i.port)),
            protocol: s.opt_string("protocol").unwrap_or_else(|| implied.map_or("", |i| i.protocol).to_string()),
            sel: s.number("sel", 0),
            mode: s.number("mode", 0),
            security: s.number("security", 0),
            monitor: s.flag("monitor", false),
            inactive_timeout: s.number("inactive_timeout", 0),
            block: s.number("block", 0),
            name: match s.opt_string("name") {
                Some(name) => name,
                None => of.and_then(|(l, _)| implied_rule_name(l)).unwrap_or_default(),
            },
            probetype: s.text("probetype"),
            probeport: s.number("probeport", 0),
            probereq: s.text("probereq"),
            proberesp: s.text("proberesp"),
            probe_timeout: s.number("probe_timeout", 0),
            probe_retries: s.number("probe_retries", 0),
            proxyprotocolv2: s.flag("proxyprotocolv2", false),
            bgp: s.flag("bgp", false),
            host: s.text("host"),
        })
    });
    let endpoint = |v: &Json| -> Result<Endpoint, String> {
        let in_range = |v: &Json, max: i64| v.as_i64().filter(|n| (0..=max).contains(n));
        match v {
            Json::Array(parts) => match parts.as_slice() {
                [Json::String(ip), port, weight] => Ok(Endpoint {
                    ip: ip.to_string(),
                    target_port: in_range(port, u16::MAX.into()).ok_or("endpoints: a bad port")? as u16,
                    weight: in_range(weight, u8::MAX.into()).ok_or("endpoints: a bad weight")? as u8,
                }),
                _ => Err("endpoints: expected [ip, port, weight]".to_string()),
            },
            other => {
                let e = Fields::of(other, "endpoint")?;
                e.done(Endpoint { ip: e.string("ip"), target_port: e.required_number("target_port"), weight: e.number("weight", 0) })
            }
        }
    };
    let (endpoints, allowed_sources, secondary_ips) = (rule.list("endpoints", endpoint), rule.strings("allowed_sources"), rule.strings("secondary_ips"));
    rule.done(())?;
    let service = service.ok_or("programmed: no service")?;
    f.done(Rendered {
        rule: LbRule { service, endpoints, allowed_sources, secondary_ips },
        probes: f.list("probes", |v| {
            let p = Fields::of(v, "probe")?;
            p.done(EndpointProbe {
                host_name: p.text("host_name"),
                name: p.text("name"),
                probe_type: p.text("probe_type"),
                probe_port: p.number("probe_port", 0),
                probe_req: p.text("probe_req"),
                probe_resp: p.text("probe_resp"),
                probe_duration: p.number("probe_duration", 0),
                inactive_retries: p.number("inactive_retries", 0),
            })
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(weight: u32, admin: bool) -> Member {
        serde_json::from_value(json!({"id": "m1", "pool_id": "p1", "address": "10.0.1.1", "protocol_port": 8080, "weight": weight,
            "admin_state_up": admin, "backup": false, "monitor_address": null, "monitor_port": null}))
        .unwrap()
    }

    fn listener() -> Listener {
        serde_json::from_value(json!({"id": "l1", "loadbalancer_id": "lb1", "protocol": "TCP", "protocol_port": 80, "default_pool_id": "p1",
            "admin_state_up": true, "connection_limit": -1, "timeout_client_data": 50000, "timeout_member_connect": null,
            "timeout_member_data": null, "allowed_cidrs": ["10.0.0.0/8"], "insert_headers": [["X-Forwarded-For", "true"]],
            "default_tls_container_ref": null, "sni_container_refs": [], "client_authentication": null,
            "l7policies": [{"id": "p", "listener_id": "l1", "action": "REJECT", "position": 1, "redirect_pool_id": null, "redirect_url": null,
                "redirect_prefix": null, "admin_state_up": false, "rules": [{"id": "r", "l7policy_id": "p", "kind": "PATH", "compare_type": "EQUAL_TO",
                "key": null, "value": "/x \"quoted\"", "invert": true, "admin_state_up": true}]}]}))
        .unwrap()
    }

    fn rendered() -> Rendered {
        let r = json!({
            "rule": {"service": {"external_ip": "10.0.0.10", "port": 80, "protocol": "tcp", "sel": 0, "mode": 2, "security": 0, "monitor": true,
                "inactive_timeout": 50, "block": 0, "name": "octavia_l1_lb1", "probetype": "tcp", "probeport": 8080, "probereq": "", "proberesp": "",
                "probe_timeout": 3, "probe_retries": 2, "proxyprotocolv2": false, "bgp": true, "host": ""},
                "endpoints": [{"ip": "10.0.1.1", "target_port": 8080, "weight": 1}, {"ip": "10.0.1.2", "target_port": 8081, "weight": 0}],
                "allowed_sources": ["10.0.0.0/8"], "secondary_ips": []},
            "probes": [{"host_name": "10.0.1.1", "name": "hm", "probe_type": "http", "probe_port": 8080, "probe_req": "GET /", "probe_resp": "200",
                "probe_duration": 5, "inactive_retries": 3}]});
        Rendered { rule: serde_json::from_value(r["rule"].clone()).unwrap(), probes: serde_json::from_value(r["probes"].clone()).unwrap() }
    }

    fn objects() -> Vec<(Object, Implied<'static>)> {
        let pool: Pool = serde_json::from_value(json!({"id": "p1", "loadbalancer_id": "lb1", "listener_id": "l1", "protocol": "TCP",
            "lb_algorithm": "SOURCE_IP", "session_persistence": {"kind": "SOURCE_IP", "cookie_name": null, "persistence_timeout": 60,
            "persistence_granularity": null}, "tls_enabled": false, "admin_state_up": true, "members": [], "healthmonitor": null}))
        .unwrap();
        let monitor: HealthMonitor = serde_json::from_value(json!({"id": "h1", "pool_id": "p1", "kind": "HTTP", "delay": 5, "timeout": 3,
            "max_retries": 2, "max_retries_down": 3, "http_method": "GET", "url_path": "/", "expected_codes": "200", "http_version": null,
            "domain_name": null, "admin_state_up": true}))
        .unwrap();
        let mut nested_pool = pool.clone();
        nested_pool.members = vec![member(1, true)];
        nested_pool.healthmonitor = Some(monitor.clone());
        let lb: Loadbalancer = serde_json::from_value(json!({"id": "lb1", "project_id": "proj", "name": null, "vip_address": "10.0.0.10",
            "additional_vips": ["fd00::10"], "admin_state_up": false, "flavor": [["nat_mode", "dsr"]], "listeners": [], "pools": []}))
        .unwrap();
        let mut tree = lb.clone();
        tree.listeners = vec![listener()];
        tree.pools = vec![nested_pool];
        let entry = |id, parent, port, protocol| Implied { id, parent, external_ip: "10.0.0.10", port, protocol };
        let listener_entry = entry("l1", Some("lb1"), 80, "tcp");
        // The rule as this policy names it, and on another port than the listener's entry says.
        let mut canonical = rendered();
        canonical.rule.service.name = keys::rule_name("lb1", "l1", "p1");
        let mut moved = rendered();
        moved.rule.service.port = 8443;
        moved.rule.service.external_ip = String::new();
        vec![
            (Object::Loadbalancer(lb), entry("lb1", None, 0, "")),
            (Object::Loadbalancer(tree), entry("lb1", None, 0, "")),
            (Object::Listener(ListenerState { listener: listener(), programmed: Some(rendered()) }), listener_entry),
            (Object::Listener(ListenerState { listener: listener(), programmed: Some(canonical) }), listener_entry),
            (Object::Listener(ListenerState { listener: listener(), programmed: Some(moved) }), listener_entry),
            (Object::Listener(ListenerState { listener: listener(), programmed: None }), entry("l1", Some("lb1"), 0, "")),
            (Object::Pool(pool), entry("p1", Some("lb1"), 0, "tcp")),
            (Object::Member(member(1, true)), entry("m1", Some("p1"), 8080, "")),
            (Object::Member(member(0, false)), entry("m1", Some("p1"), 80, "")),
            (Object::Healthmonitor(monitor), entry("h1", Some("p1"), 0, "")),
        ]
    }

    #[test]
    fn a_field_found_wrong_is_named_first_whatever_is_wrong_after_it() {
        let implied = Implied { id: "m1", parent: Some("p1"), external_ip: "", port: 8080, protocol: "tcp" };
        let read = |text: &str| decode(text, ResourceType::Member, implied);
        assert_eq!(read(r#"{"address": 5, "weight": "heavy"}"#).unwrap_err(), "member.address: expected a string");
        assert_eq!(read(r#"{"address": "10.0.1.1", "weight": "heavy", "backup": 1}"#).unwrap_err(), "member.weight: expected an integer in range");
        assert_eq!(read(r#"{"weight": 2}"#).unwrap_err(), "member.address: missing");
        let listener = Implied { id: "l1", parent: Some("lb1"), external_ip: "10.0.0.10", port: 80, protocol: "tcp" };
        let nested = decode(r#"{"allowed_cidrs": ["10.0.0.0/8", 7], "l7policies": [{"id": "p"}]}"#, ResourceType::Listener, listener);
        assert_eq!(nested.unwrap_err(), "listener.allowed_cidrs: expected strings");
        assert!(read(r#"{"address": "10.0.1.1", "weight": 2}"#).is_ok());
    }

    #[test]
    fn every_object_reads_back_as_written() {
        for (object, implied) in objects() {
            let text = encode(&object, implied);
            assert_eq!(decode(&text, object.resource_type(), implied).as_ref(), Ok(&object), "{text}");
            assert!(!text.contains(&format!("\"id\":\"{}\"", implied.id)), "the entry's own id is left out: {text}");
        }
    }

    /// What releases before the compact form wrote: serde's shape of every field, the type named.
    fn earlier_form(object: &Object) -> String {
        let (name, attributes) = match object {
            Object::Loadbalancer(lb) => ("loadbalancer", serde_json::to_value(lb).unwrap()),
            Object::Listener(ls) => {
                let programmed = ls.programmed.as_ref().map(|r| json!({"rule": r.rule, "probes": r.probes}));
                ("listener", json!({"listener": ls.listener, "programmed": programmed}))
            }
            Object::Pool(p) => ("pool", serde_json::to_value(p).unwrap()),
            Object::Member(m) => ("member", serde_json::to_value(m).unwrap()),
            Object::Healthmonitor(h) => ("healthmonitor", serde_json::to_value(h).unwrap()),
        };
        json!({"object": name, "attributes": attributes}).to_string()
    }

    #[test]
    fn metadata_written_by_earlier_releases_still_reads() {
        for (object, implied) in objects() {
            let text = earlier_form(&object);
            assert_eq!(decode(&text, object.resource_type(), implied).as_ref(), Ok(&object), "{text}");
        }
    }

    #[test]
    fn the_compact_form_is_a_fraction_of_the_earlier_one() {
        let (objects, entry) = (objects(), |i: usize| objects()[i].1);
        assert_eq!(encode(&objects[7].0, entry(7)), r#"{"address":"10.0.1.1"}"#, "the member's port is its entry's");
        assert_eq!(
            encode(&objects[0].0, entry(0)),
            r#"{"project_id":"proj","additional_vips":["fd00::10"],"admin_state_up":false,"flavor":[["nat_mode","dsr"]]}"#,
            "the VIP is the entry's"
        );
        assert!(encode(&objects[6].0, entry(6)).starts_with(r#"{"listener_id":"l1","lb_algorithm":"SOURCE_IP""#), "the protocol is the entry's");
        assert_eq!(encode(&objects[8].0, entry(8)), r#"{"address":"10.0.1.1","protocol_port":8080,"weight":0,"admin_state_up":false}"#);
        let canonical = encode(&objects[3].0, entry(3));
        assert!(!canonical.contains("octavia_lb-"), "the rule's name is the one the listener implies: {canonical}");
        // A listener as most are: no L7 policies, a TCP monitor (no per-endpoint probes).
        let mut plain = listener();
        plain.l7policies.clear();
        let mut rule = rendered();
        rule.probes.clear();
        rule.rule.service.name = keys::rule_name("lb1", "l1", "p1");
        let l = Object::Listener(ListenerState { listener: plain, programmed: Some(rule) });
        let (compact, earlier) = (encode(&l, entry(3)).len(), earlier_form(&l).len());
        assert!(compact * 2 < earlier, "listener: {compact} bytes compact, {earlier} before: {}", encode(&l, entry(3)));
    }

    #[test]
    fn damaged_metadata_is_an_error_naming_the_field() {
        let member_of = Implied { id: "m1", parent: Some("p1"), external_ip: "10.0.0.10", port: 80, protocol: "" };
        for (text, says) in [
            (r#"{"protocol_port":80}"#, "member.address: missing"),
            (r#"{"address":"10.0.1.1","protocol_port":70000}"#, "member.protocol_port: expected an integer in range"),
            (r#"{"address":1,"protocol_port":80}"#, "member.address: expected a string"),
            (r#"{"address":"a","protocol_port":80,"backup":"no"}"#, "member.backup: expected true or false"),
            (r#"{"object":"gateway","attributes":{}}"#, "unknown object type"),
            ("not json", "unexpected character"),
        ] {
            let error = decode(text, ResourceType::Member, member_of).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        let endpoints = r#"{"protocol":"TCP","protocol_port":80,"programmed":{"service":{},"endpoints":[["10.0.1.1",80,300]]}}"#;
        let error = decode(endpoints, ResourceType::Listener, Implied { id: "l1", parent: Some("lb1"), ..member_of }).unwrap_err();
        assert!(error.contains("bad weight"), "{error}");
    }
}
