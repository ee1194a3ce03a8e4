//! The simulator over real HTTP (ureq), against the real LoxiLB swagger.yml.

use loxilb_sim::{default_spec_path, ErrorStyle, Simulator, SpecValidator, EMBEDDED_SPEC_NAME};
use serde_json::{json, Value};

struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, content_type: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            ("POST", Some(b)) => {
                let mut req = self.agent.post(&url);
                if let Some(ct) = content_type {
                    req = req.header("Content-Type", ct);
                }
                req.send(b)
            }
            ("POST", None) => self.agent.post(&url).send_empty(),
            ("PUT", _) => self.agent.put(&url).send_empty(),
            _ => unreachable!("{method}"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
        (status, json)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some("application/json"), Some(&body.to_string()))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, None)
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None, None)
    }

    fn lb_all(&self) -> Vec<Value> {
        let (status, body) = self.get("/config/loadbalancer/all");
        assert_eq!(status, 200);
        body["lbAttr"].as_array().expect("lbAttr is an array").clone()
    }
}

fn start(style: ErrorStyle) -> (Simulator, Client) {
    let sim = Simulator::start_on("127.0.0.1:0", style, None).expect("simulator starts");
    let expected = default_spec_path().unwrap_or_else(|| EMBEDDED_SPEC_NAME.into());
    assert_eq!(sim.spec_source(), Some(expected));
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let client = Client { agent, base: format!("{}/netlox/v1", sim.url()) };
    (sim, client)
}

fn lb(vip: &str, port: u16, eps: &[(&str, u16)]) -> Value {
    json!({
        "serviceArguments": {"externalIP": vip, "port": port, "protocol": "tcp", "name": "octavia-l1"},
        "endpoints": eps.iter().map(|(ip, p)| json!({"endpointIP": ip, "targetPort": p, "weight": 1})).collect::<Vec<_>>(),
    })
}

fn success() -> Value {
    json!({"result": "Success"})
}

fn endpoint_ips(rule: &Value) -> Vec<String> {
    rule["endpoints"].as_array().map(|a| a.iter().map(|e| format!("{}:{}", e["endpointIP"].as_str().unwrap(), e["targetPort"])).collect()).unwrap_or_default()
}

#[test]
fn simulator_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Simulator>();
}

/// Without swagger.yml the built-in structure still rejects what go-swagger would.
#[test]
fn builtin_checks_without_spec_file() {
    let sim = Simulator::start_with("127.0.0.1:0", ErrorStyle::Coded, SpecValidator::builtin()).unwrap();
    assert_eq!(sim.spec_source(), None);
    let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let c = Client { agent, base: format!("{}/netlox/v1", sim.url()) };
    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["serviceArguments"]["mode"] = json!(7);
    assert_eq!(c.post("/config/loadbalancer", &body).1["code"], 606);
    body["serviceArguments"].as_object_mut().unwrap().remove("mode");
    assert_eq!(c.post("/config/loadbalancer", &body), (200, success()));
    assert_eq!(c.post("/config/endpoint", &json!({"probeType": "tcp"})).1["message"], "hostName in body is required");
}

/// Create, then list: the GET shape omits zero fields, reports effective defaults and hides
/// what the handler does not return.
#[test]
fn create_and_list() {
    let (sim, c) = start(ErrorStyle::Coded);
    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 8080)]);
    body["serviceArguments"]["probereq"] = json!("x");
    body["serviceArguments"]["privateIP"] = json!("192.168.0.10");
    assert_eq!(c.post("/config/loadbalancer", &body), (200, success()));

    let all = c.lb_all();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0],
        json!({
            "serviceArguments": {"externalIP": "10.0.0.10", "port": 80, "protocol": "tcp",
                                 "name": "octavia-l1", "inactiveTimeOut": 240},
            "endpoints": [{"endpointIP": "10.0.1.5", "targetPort": 8080, "weight": 1,
                           "state": "active", "counter": "0:0"}],
            "secondaryIPs": null,
            "allowedSources": null,
        })
    );
    assert_eq!(sim.rules(), all);
    // The GET shape is itself a valid LoadbalanceEntry.
    SpecValidator::load_default().unwrap().validate("LoadbalanceEntry", &all[0]).unwrap();
}

/// Re-POSTing an identical rule is a 409 that changes nothing; fields the core never updates
/// (name, bgp, monitor) do not count as a change.
#[test]
fn unchanged_repost_is_409() {
    let (sim, c) = start(ErrorStyle::Coded);
    let body = lb("10.0.0.10", 80, &[("10.0.1.5", 8080)]);
    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);
    let (status, err) = c.post("/config/loadbalancer", &body);
    assert_eq!(status, 409);
    assert_eq!(
        err,
        json!({"code": 409, "fields": null, "result": "lbrule-exists error",
               "message": "Resource conflict: Resource already exists OR dependency not found"})
    );

    let mut renamed = body.clone();
    renamed["serviceArguments"]["name"] = json!("other");
    renamed["serviceArguments"]["bgp"] = json!(true);
    assert_eq!(c.post("/config/loadbalancer", &renamed).0, 409);
    assert_eq!(sim.rules()[0]["serviceArguments"]["name"], "octavia-l1");

    // A weight change is a change.
    let mut weighted = body.clone();
    weighted["endpoints"][0]["weight"] = json!(5);
    assert_eq!(c.post("/config/loadbalancer", &weighted), (200, success()));
    assert_eq!(sim.rules()[0]["endpoints"][0]["weight"], 5);

    // Security cannot change in place.
    let mut secure = weighted.clone();
    secure["serviceArguments"]["security"] = json!(1);
    secure["endpoints"][0]["weight"] = json!(6);
    let (status, err) = c.post("/config/loadbalancer", &secure);
    assert_eq!(status, 409);
    assert_eq!(err["result"], "lbrule-exist error: cant modify rule security mode");
}

/// oper 0 replaces the endpoint set, oper 1 attaches, oper 2 detaches and deletes the rule
/// with its last endpoint.
#[test]
fn replace_attach_detach() {
    let (sim, c) = start(ErrorStyle::Coded);
    let post = |eps: &[(&str, u16)], oper: i64| {
        let mut b = lb("10.0.0.10", 80, eps);
        b["serviceArguments"]["oper"] = json!(oper);
        c.post("/config/loadbalancer", &b)
    };
    assert_eq!(post(&[("10.0.1.5", 80), ("10.0.1.6", 80)], 0).0, 200);
    assert_eq!(post(&[("10.0.1.7", 80)], 1).0, 200);
    assert_eq!(endpoint_ips(&sim.rules()[0]), ["10.0.1.5:80", "10.0.1.6:80", "10.0.1.7:80"]);
    // Attaching what is already there changes nothing.
    assert_eq!(post(&[("10.0.1.7", 80)], 1).1["result"], "lbrule-exists error");

    assert_eq!(post(&[("10.0.1.5", 80)], 2).0, 200);
    assert_eq!(endpoint_ips(&sim.rules()[0]), ["10.0.1.6:80", "10.0.1.7:80"]);
    assert_eq!(post(&[("10.0.1.6", 80), ("10.0.1.7", 80)], 2), (200, success()));
    assert!(c.lb_all().is_empty(), "detaching the last endpoints deletes the rule");

    let (status, err) = post(&[("10.0.1.6", 80)], 2);
    assert_eq!((status, err["result"].as_str()), (404, Some("lbrule not-exists error")));

    // Replace: 10.0.1.5 goes, 10.0.1.8 comes, 10.0.1.6 stays.
    assert_eq!(post(&[("10.0.1.5", 80), ("10.0.1.6", 80)], 0).0, 200);
    assert_eq!(post(&[("10.0.1.6", 80), ("10.0.1.8", 80)], 0).0, 200);
    assert_eq!(endpoint_ips(&c.lb_all()[0]), ["10.0.1.6:80", "10.0.1.8:80"]);
}

/// All delete variants; a missing rule is 404 "no-rule error"; by-name and all always succeed.
#[test]
fn deletes() {
    let (sim, c) = start(ErrorStyle::Coded);
    let (status, err) = c.delete("/config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp");
    assert_eq!((status, err["result"].as_str(), err["message"].as_str()), (404, Some("no-rule error"), Some("Resource not found")));

    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 80)])).0, 200);
    let mut blocked = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    blocked["serviceArguments"]["block"] = json!(7);
    assert_eq!(c.post("/config/loadbalancer", &blocked).0, 200, "block is part of the identity");
    let mut range = lb("10.0.0.10", 1000, &[("10.0.1.5", 0)]);
    range["serviceArguments"]["portMax"] = json!(1010);
    assert_eq!(c.post("/config/loadbalancer", &range).0, 200);
    let mut hosted = lb("10.0.0.10", 443, &[("10.0.1.5", 80)]);
    hosted["serviceArguments"]["host"] = json!("example.com");
    assert_eq!(c.post("/config/loadbalancer", &hosted).0, 200);
    assert_eq!(sim.rules().len(), 4);

    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp?block=7"), (200, success()));
    assert_eq!(c.delete("/config/loadbalancer/hosturl/any/externalipaddress/10.0.0.10/port/80/protocol/tcp?bgp=false").0, 200);
    // A range rule is only reachable through a portmax path with its exact portMax.
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/10.0.0.10/port/1000/protocol/tcp").0, 404);
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/10.0.0.10/port/1000/portmax/1010/protocol/tcp").0, 200);
    assert_eq!(c.delete("/config/loadbalancer/hosturl/example.com/externalipaddress/10.0.0.10/port/443/portmax/0/protocol/tcp").0, 200);
    assert!(sim.rules().is_empty());

    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 80)])).0, 200);
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.11", 80, &[("10.0.1.5", 80)])).0, 200);
    assert_eq!(c.delete("/config/loadbalancer/name/nobody"), (200, success()));
    assert_eq!(sim.rules().len(), 2);
    assert_eq!(c.delete("/config/loadbalancer/name/octavia-l1"), (200, success()));
    assert!(sim.rules().is_empty());
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 80)])).0, 200);
    assert_eq!(c.delete("/config/loadbalancer/all"), (200, success()));
    assert!(c.lb_all().is_empty());
}

/// IPv6 VIPs travel raw (or percent-encoded) in the path segment and are compared as addresses.
#[test]
fn ipv6_vip_delete_path() {
    let (sim, c) = start(ErrorStyle::Coded);
    let body = lb("2001:db8::0001", 80, &[("2001:db8:1::5", 80), ("10.0.1.5", 80)]);
    assert_eq!(c.post("/config/loadbalancer", &body), (200, success()), "IPv6 VIP may have IPv4 endpoints (NAT64)");
    assert_eq!(sim.rules()[0]["serviceArguments"]["externalIP"], "2001:db8::1");
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/2001:db8::1/port/80/protocol/tcp"), (200, success()));

    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/2001%3Adb8%3A%3A1/port/80/protocol/tcp").0, 200);
    assert!(sim.rules().is_empty());
    let r = sim.requests();
    assert!(r.iter().any(|q| q.method == "DELETE" && q.path.ends_with("/2001:db8::1/port/80/protocol/tcp")));

    let (status, err) = c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("2001:db8:1::5", 80)]));
    assert_eq!((status, err["result"].as_str()), (400, Some("malformed-service nat46 error")));
}

/// Endpoint count limits: 0 and 33 are "endpoints-range error" (400), 32 is fine.
#[test]
fn endpoint_count_limits() {
    let (sim, c) = start(ErrorStyle::Coded);
    let ips: Vec<String> = (1..=33).map(|i| format!("10.0.1.{i}")).collect();
    let eps = |n: usize| ips[..n].iter().map(|ip| (ip.as_str(), 80)).collect::<Vec<_>>();

    let (status, err) = c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &eps(33)));
    assert_eq!((status, err["result"].as_str()), (400, Some("endpoints-range error")));
    assert_eq!(err["message"], "Malformed arguments for API call");
    let (status, err) = c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &eps(0)));
    assert_eq!((status, err["result"].as_str()), (400, Some("endpoints-range error")));
    assert!(sim.rules().is_empty());
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &eps(32))).0, 200);
    assert_eq!(sim.rules()[0]["endpoints"].as_array().unwrap().len(), 32);
}

/// go-openapi's own failures: 422 for schema violations, 400 for bad JSON and wrong types,
/// 415 for a non-JSON content type, 404/405 for routing.
#[test]
fn schema_and_transport_errors() {
    let (sim, c) = start(ErrorStyle::Coded);
    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["serviceArguments"].as_object_mut().unwrap().remove("externalIP");
    let (status, err) = c.post("/config/loadbalancer", &body);
    assert_eq!(status, 422);
    assert_eq!(err, json!({"code": 602, "message": "serviceArguments.serviceArguments.externalIP in body is required"}));

    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["endpoints"][0].as_object_mut().unwrap().remove("weight");
    assert_eq!(c.post("/config/loadbalancer", &body).1["message"], "endpoints.0.weight in body is required");

    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["serviceArguments"]["sel"] = json!(9);
    let (status, err) = c.post("/config/loadbalancer", &body);
    assert_eq!((status, err["code"].as_i64()), (422, Some(606)));
    assert_eq!(err["message"], "serviceArguments.serviceArguments.sel in body should be one of [0 1 2 3 4 5 6]");

    assert_eq!(c.post("/config/loadbalancer", &json!({"endpoints": []})).1["code"], 602);
    assert_eq!(c.call("POST", "/config/loadbalancer", None, None), (422, json!({"code": 602, "message": "attr in body is required"})));

    let (status, err) = c.call("POST", "/config/loadbalancer", Some("application/json"), Some("{\"serviceArguments\":"));
    assert_eq!((status, err["code"].as_i64()), (400, Some(400)));
    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["serviceArguments"]["port"] = json!("80");
    let (status, err) = c.post("/config/loadbalancer", &body);
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("cannot unmarshal string into Go struct field"), "{err}");

    let (status, err) = c.call("POST", "/config/loadbalancer", Some("text/plain"), Some(&lb("10.0.0.10", 80, &[("10.0.1.5", 80)]).to_string()));
    assert_eq!((status, err["code"].as_i64()), (415, Some(415)));

    assert_eq!(c.get("/config/nothing").0, 404);
    assert_eq!(c.call("PUT", "/config/loadbalancer", None, None).0, 405);
    assert!(sim.rules().is_empty(), "no rejected request may leave state behind");

    // Keys match case-insensitively, like Go's encoding/json (kube-loxilb sends "BGP").
    let mut body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    body["serviceArguments"]["BGP"] = json!(true);
    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);
    assert_eq!(sim.rules()[0]["serviceArguments"]["bgp"], true);
}

/// Core argument checks and their status classes.
#[test]
fn core_argument_errors() {
    let (sim, c) = start(ErrorStyle::Coded);
    let with = |k: &str, v: Value| {
        let mut b = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
        b["serviceArguments"][k] = v;
        b
    };
    let expect = |body: Value, status: u16, result: &str| {
        let (s, e) = c.post("/config/loadbalancer", &body);
        assert_eq!((s, e["result"].as_str()), (status, Some(result)), "{body}");
    };
    expect(with("protocol", json!("")), 400, "malformed-proto error");
    expect(with("probetype", json!("http")), 400, "malformed-service-ptype error");
    expect(with("probetype", json!("tcp")), 400, "malformed-service-pport error");
    expect(with("probeport", json!(80)), 400, "malformed-service-pport error");
    expect(with("inactiveTimeOut", json!(86401)), 400, "service-args error");
    let mut ppv2_udp = with("proxyprotocolv2", json!(true));
    ppv2_udp["serviceArguments"]["protocol"] = json!("udp");
    expect(ppv2_udp, 500, "proxy-proto-v2 not tcp service error");
    assert!(sim.rules().is_empty());

    // DSR without hash selection: answered by the handler as a 200 in every version.
    assert_eq!(c.post("/config/loadbalancer", &with("mode", json!(3))), (200, json!({"result": "Error: Only Hash Selection criteria allowed for DSR mode"})));
    assert!(sim.rules().is_empty());

    // A probe type other than none forces monitor on.
    let mut probed = with("probetype", json!("tcp"));
    probed["serviceArguments"]["probeport"] = json!(8080);
    assert_eq!(c.post("/config/loadbalancer", &probed).0, 200);
    let sa = &sim.rules()[0]["serviceArguments"];
    assert_eq!((sa["monitor"].as_bool(), sa["probetype"].as_str(), sa["probeport"].as_i64()), (Some(true), Some("tcp"), Some(8080)));
}

/// Legacy (<= v0.9.8.4): handler errors are 200 + result; schema 422s stay; no protocol/probetype enum.
#[test]
fn legacy_error_style() {
    let (sim, c) = start(ErrorStyle::Legacy);
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp"), (200, json!({"result": "no-rule error"})));
    let body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);
    assert_eq!(c.post("/config/loadbalancer", &body), (200, json!({"result": "lbrule-exists error"})));

    let mut http = lb("10.0.0.11", 80, &[("10.0.1.5", 80)]);
    http["serviceArguments"]["probetype"] = json!("http");
    assert_eq!(c.post("/config/loadbalancer", &http), (200, json!({"result": "malformed-service-ptype error"})));

    let mut missing = body.clone();
    missing["serviceArguments"].as_object_mut().unwrap().remove("port");
    assert_eq!(c.post("/config/loadbalancer", &missing).0, 422);

    // Without the protocol enum, the core's own "none" protocol is reachable.
    let mut none = lb("10.0.0.12", 0, &[("10.0.1.5", 0)]);
    none["serviceArguments"]["protocol"] = json!("none");
    assert_eq!(c.post("/config/loadbalancer", &none), (200, success()));
    assert!(sim.rules().iter().any(|r| r["serviceArguments"]["protocol"] == "none"));

    sim.set_error_style(ErrorStyle::Coded);
    assert_eq!(sim.error_style(), ErrorStyle::Coded);
    none["serviceArguments"]["externalIP"] = json!("10.0.0.13");
    let (status, err) = c.post("/config/loadbalancer", &none);
    assert_eq!((status, err["code"].as_i64()), (422, Some(606)), "the >= v0.9.8.5 schema has the protocol enum");
    let (status, err) = c.post("/config/loadbalancer", &http);
    assert_eq!((status, err["result"].as_str()), (400, Some("malformed-service-ptype error")));
}

/// A restart forgets everything but keeps the URL.
#[test]
fn restart_empties_state() {
    let (sim, c) = start(ErrorStyle::Coded);
    let url = sim.url();
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 80)])).0, 200);
    assert_eq!(c.post("/config/endpoint", &json!({"hostName": "10.0.1.9", "probeType": "ping"})).0, 200);
    assert_eq!(sim.endpoints().len(), 2, "the rule's endpoint host plus the posted one");
    sim.restart();
    assert_eq!(sim.url(), url);
    assert!(c.lb_all().is_empty());
    assert_eq!(c.get("/config/endpoint/all"), (200, json!({"Attr": []})));
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 80)])), (200, success()));
}

/// Endpoint hosts: upsert by key, rule-owned hosts cannot be deleted, 404 when missing.
#[test]
fn endpoint_hosts() {
    let (sim, c) = start(ErrorStyle::Coded);
    let ep = json!({"hostName": "10.0.1.5", "probeType": "http", "probePort": 8080, "probeReq": "healthz",
                    "probeDuration": 10, "inactiveReTries": 3});
    assert_eq!(c.post("/config/endpoint", &ep), (200, success()));
    assert_eq!(c.post("/config/endpoint", &ep), (200, success()), "re-POST is an upsert");
    let (status, all) = c.get("/config/endpoint/all");
    assert_eq!(status, 200);
    assert_eq!(
        all,
        json!({"Attr": [{"hostName": "10.0.1.5", "name": "10.0.1.5_http_8080", "probeType": "http", "probePort": 8080,
                         "probeReq": "healthz", "probeDuration": 10, "inactiveReTries": 3, "currState": "ok"}]})
    );

    let mut bad = ep.clone();
    bad["hostName"] = json!("10.0.1.0/24");
    assert_eq!(c.post("/config/endpoint", &bad).1["result"], "host-parse error");
    bad["hostName"] = json!("10.0.1.5");
    bad["inactiveReTries"] = json!(101);
    assert_eq!(c.post("/config/endpoint", &bad).0, 400);
    assert_eq!(c.post("/config/endpoint", &json!({"probeType": "tcp"})).0, 422);

    assert_eq!(c.delete("/config/endpoint/epipaddress/10.0.1.5?probe_type=http&probe_port=8080"), (200, success()));
    let (status, err) = c.delete("/config/endpoint/epipaddress/10.0.1.5?probe_type=http&probe_port=8080");
    assert_eq!((status, err["result"].as_str()), (404, Some("host-notfound error")));

    // Rule endpoints reference hosts keyed <ip>_<proto>_<port>; those refuse deletion.
    assert_eq!(c.post("/config/loadbalancer", &lb("10.0.0.10", 80, &[("10.0.1.5", 8080)])).0, 200);
    assert_eq!(sim.endpoints()[0]["name"], "10.0.1.5_tcp_8080");
    let (status, err) = c.delete("/config/endpoint/epipaddress/10.0.1.5?name=10.0.1.5_tcp_8080");
    assert_eq!((status, err["result"].as_str()), (409, Some("LB Rule-referred")));
    // Posting under that name attaches an HTTP check to the rule's host.
    assert_eq!(c.post("/config/endpoint", &json!({"hostName": "10.0.1.5", "name": "10.0.1.5_tcp_8080", "probeType": "http", "probePort": 8080})).0, 200);
    assert_eq!(sim.endpoints()[0]["probeType"], "http");
    assert_eq!(c.delete("/config/loadbalancer/all").0, 200);
    assert!(sim.endpoints().is_empty(), "the host goes with its last rule");
}

/// Injected failures, the request log and /version.
#[test]
fn test_hooks_and_version() {
    let (sim, c) = start(ErrorStyle::Coded);
    assert_eq!(c.get("/version"), (200, json!({"version": "v0.9.8.5-sim", "buildInfo": "loxilb-sim"})));
    sim.fail_next(2, 503, "not-ready");
    let body = lb("10.0.0.10", 80, &[("10.0.1.5", 80)]);
    let (status, err) = c.post("/config/loadbalancer", &body);
    assert_eq!((status, err["message"].as_str(), err["result"].as_str()), (503, Some("Maintenance mode"), Some("not-ready")));
    assert_eq!(c.get("/config/loadbalancer/all").0, 503);
    assert!(sim.rules().is_empty(), "an injected failure applies nothing");
    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);

    let log = sim.requests();
    assert_eq!(log.len(), 4);
    assert_eq!((log[1].method.as_str(), log[1].path.as_str(), log[1].status), ("POST", "/netlox/v1/config/loadbalancer", 503));
    assert_eq!(log[3].json(), Some(body));
    assert_eq!(log[3].response_json(), Some(success()));
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

/// secondaryIPs are kept for sctp only (the handler drops them otherwise) and cannot change in place.
#[test]
fn sctp_secondary_ips() {
    let (sim, c) = start(ErrorStyle::Coded);
    let mut body = lb("10.0.0.10", 38412, &[("10.0.1.5", 38412)]);
    body["serviceArguments"]["protocol"] = json!("sctp");
    body["secondaryIPs"] = json!([{"secondaryIP": "10.0.0.12"}, {"secondaryIP": "10.0.0.11"}]);
    assert_eq!(c.post("/config/loadbalancer", &body).0, 200);
    assert_eq!(sim.rules()[0]["secondaryIPs"], json!([{"secondaryIP": "10.0.0.11"}, {"secondaryIP": "10.0.0.12"}]));
    body["secondaryIPs"] = json!([{"secondaryIP": "10.0.0.13"}]);
    assert_eq!(
        c.post("/config/loadbalancer", &body),
        (500, json!({"code": 500, "fields": null, "message": "secIP modify error", "result": "secIP modify error"}))
    );

    let mut tcp = lb("10.0.0.20", 80, &[("10.0.1.5", 80)]);
    tcp["secondaryIPs"] = json!([{"secondaryIP": "10.0.0.21"}]);
    assert_eq!(c.post("/config/loadbalancer", &tcp).0, 200);
    let rules = sim.rules();
    let tcp_rule = rules.iter().find(|r| r["serviceArguments"]["externalIP"] == "10.0.0.20").unwrap();
    assert_eq!(tcp_rule["secondaryIPs"], Value::Null);
}

/// The 2049th rule is refused with 403 "rule-hwm error".
#[test]
fn rule_capacity() {
    let (sim, c) = start(ErrorStyle::Coded);
    for i in 0..2048u32 {
        let vip = format!("10.1.{}.{}", i / 256, i % 256);
        assert_eq!(c.post("/config/loadbalancer", &lb(&vip, 80, &[("10.0.1.5", 80)])).0, 200, "{vip}");
    }
    let (status, err) = c.post("/config/loadbalancer", &lb("10.2.0.0", 80, &[("10.0.1.5", 80)]));
    assert_eq!((status, err["result"].as_str(), err["message"].as_str()), (403, Some("rule-hwm error"), Some("Capacity insufficient")));
    assert_eq!(sim.rules().len(), 2048);
    assert_eq!(c.delete("/config/loadbalancer/externalipaddress/10.1.0.0/port/80/protocol/tcp").0, 200);
    assert_eq!(c.post("/config/loadbalancer", &lb("10.2.0.0", 80, &[("10.0.1.5", 80)])).0, 200);
}

/// HA roles as keepalived's notify script and kube-loxilb's --setRoles set them, and as a restart forgets them.
#[test]
fn cistate_lists_and_sets_roles() {
    let (sim, c) = start(ErrorStyle::Coded);
    let default = json!({"Attr": [{"instance": "llb-inst0", "state": "NOT_DEFINED", "vip": "0.0.0.0", "sync": null}]});
    assert_eq!(c.get("/config/cistate/all"), (200, default.clone()));
    assert_eq!(c.post("/config/cistate", &json!({"instance": "llb-inst0", "state": "MASTER", "vip": "0.0.0.0"})).0, 200);
    assert_eq!(c.get("/config/cistate/all").1["Attr"][0]["state"], "MASTER");
    let (status, err) = c.post("/config/cistate", &json!({"instance": "llb-inst0", "state": "LEADER", "vip": "0.0.0.0"}));
    assert_eq!((status, err["result"].as_str()), (400, Some("invalid cluster-state")));
    sim.restart();
    assert_eq!(c.get("/config/cistate/all"), (200, default));
    let (legacy, c) = start(ErrorStyle::Legacy);
    assert_eq!(c.get("/version").1["version"], "v0.9.8.4-sim");
    drop(legacy);
}

/// The in-process handle answers every request as the HTTP server does (status, body, state) and records it in
/// the same log; only the connection is missing.
#[test]
fn in_process_answers_as_http_does() {
    let (over_http, c) = start(ErrorStyle::Coded);
    let (in_process, _) = start(ErrorStyle::Coded);
    let direct = in_process.in_process();
    let call = |method: &str, path: &str, body: Option<&Value>| -> ((u16, Value), (u16, Value)) {
        let text = body.map(Value::to_string);
        let http = c.call(method, path, body.map(|_| "application/json"), text.as_deref());
        let (status, answer) = direct.exchange(method, &format!("/netlox/v1{path}"), text.as_deref());
        (http, (status, serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"))))
    };
    let rule = lb("10.0.0.10", 80, &[("10.0.1.5", 80), ("10.0.1.6", 80)]);
    let mut bad = rule.clone();
    bad["serviceArguments"]["port"] = json!("eighty");
    let exchanges: [(&str, &str, Option<&Value>); 7] = [
        ("POST", "/config/loadbalancer", Some(&rule)),
        ("POST", "/config/loadbalancer", Some(&rule)),
        ("POST", "/config/loadbalancer", Some(&bad)),
        ("GET", "/config/loadbalancer/all", None),
        ("DELETE", "/config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp", None),
        ("DELETE", "/config/loadbalancer/externalipaddress/10.0.0.10/port/80/protocol/tcp", None),
        ("GET", "/config/nothing", None),
    ];
    for (method, path, body) in &exchanges {
        let (http, direct) = call(method, path, *body);
        assert_eq!(http, direct, "{method} {path}");
    }
    assert!(over_http.rules().is_empty() && in_process.rules().is_empty());
    let seen = |sim: &Simulator| sim.requests().into_iter().map(|r| (r.json(), r.method, r.path, r.query, r.status)).collect::<Vec<_>>();
    assert_eq!(seen(&in_process), seen(&over_http));
    assert_eq!(in_process.requests().len(), exchanges.len());

    in_process.fail_next(1, 503, "not-ready");
    assert_eq!(direct.exchange("GET", "/netlox/v1/config/loadbalancer/all", None).0, 503, "an injected answer applies in-process too");
}
