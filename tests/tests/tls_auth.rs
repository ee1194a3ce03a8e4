//! TLS to LoxiLB and LoxiLB's authentication, through the host's LoxiLB client as `serve` builds it from
//! `[driver_loxilb]`: a private CA and a client certificate, a certificate from another CA, the explicit
//! insecure key, the manual token, the user-service login (a wrong password, a token LoxiLB forgot), and
//! no secret in any log line. Everything on loopback, against the simulator.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use host::config::Config;
use host::loxilb::LoxiTransport;
use host::storage::MemoryStore;
use integration_tests::pki::Pki;
use integration_tests::*;
use loxilb_sim::{Auth, ErrorStyle, Simulator};
use serde_json::{json, Value};

const LB: &str = "eeeeeeee-0000-4000-8000-000000000001";
const L1: &str = "eeeeeeee-0000-4000-8000-000000000011";
const P1: &str = "eeeeeeee-0000-4000-8000-000000000021";
const VIP: &str = "10.83.0.10";
const LIST: &str = "/config/loadbalancer/all";

fn tree() -> Value {
    let m = member("eeeeeeee-0000-4000-8000-000000000101", P1, "10.83.1.1", 8080, 1);
    loadbalancer(LB, VIP, vec![listener(L1, LB, "TCP", 80, Some(pool(P1, LB, Some(L1), "TCP", vec![m], None)))])
}

/// `[driver_loxilb]` for one LoxiLB at `url`, plus `extra` lines. Retries are short: what these tests
/// meet is not transient.
fn config(url: &str, extra: &str) -> Config {
    Config::parse(&format!("[driver_loxilb]\napi_endpoints = {url}\napi_timeout = 3\napi_retry_deadline = 0.3\n{extra}\n")).unwrap_or_else(|e| panic!("{e:#}"))
}

fn client(config: &Config) -> Arc<dyn LoxiTransport> {
    host::app::loxilb(config).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A load balancer created through the policy and the host's client: `Err` is the operation's error.
fn create_lb(config: &Config) -> Result<(), String> {
    let mut sandbox = sandbox_with(&default_policy(), client(config), Arc::new(MemoryStore::default()));
    let outcome = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap();
    outcome.error.map_or(Ok(()), |e| Err(e.describe()))
}

fn holds_the_vip(sim: &Simulator) -> bool {
    sim.rules().iter().any(|r| r["serviceArguments"]["externalIP"] == VIP)
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[test]
fn https_with_a_private_ca_and_a_client_certificate_carries_an_operation() {
    let _logs = logs();
    let pki = Pki::new("mtls");
    let sim = Simulator::start_tls(ErrorStyle::Coded, &pki.server(true)).unwrap();
    assert!(sim.url().starts_with("https://"));
    let tls = format!("api_ca_file = {}\napi_client_cert_file = {}\napi_client_key_file = {}", path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    create_lb(&config(&sim.url(), &tls)).unwrap();
    assert!(holds_the_vip(&sim), "the rule reached LoxiLB over TLS");

    // LoxiLB asks for a client certificate: without one there is no answer.
    let err = client(&config(&sim.url(), &format!("api_ca_file = {}", path(&pki.ca)))).request("GET", LIST, None).unwrap_err();
    assert!(err.contains("no LoxiLB node answered"), "{err}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let _logs = logs();
    let pki = Pki::new("served");
    let other = Pki::new("other");
    let sim = Simulator::start_tls(ErrorStyle::Coded, &pki.server(false)).unwrap();
    let err = client(&config(&sim.url(), &format!("api_ca_file = {}", path(&other.ca)))).request("GET", LIST, None).unwrap_err();
    assert!(err.contains("TLS with LoxiLB failed") && err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains(&format!("the CA file {}", path(&other.ca))) && err.contains("set api_ca_file"),
        "the message says what was checked and what to set: {err}"
    );
    // The default: the system's trust store, which does not hold a private CA.
    let err = client(&config(&sim.url(), "")).request("GET", LIST, None).unwrap_err();
    assert!(err.contains("UnknownIssuer") && err.contains("api_ca_file"), "{err}");
    let err = create_lb(&config(&sim.url(), &format!("api_ca_file = {}", path(&other.ca)))).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "the operation's error says why: {err}");
    assert!(!holds_the_vip(&sim));
    // A CA file that is missing stops the start, naming it.
    let missing = host::app::loxilb(&config(&sim.url(), "api_ca_file = /nonexistent/ca.pem")).err().expect("refused");
    assert!(format!("{missing:#}").contains("/nonexistent/ca.pem"), "{missing:#}");
}

#[test]
fn api_tls_insecure_skips_the_certificate_check() {
    let _logs = logs();
    let pki = Pki::new("insecure");
    let sim = Simulator::start_tls(ErrorStyle::Coded, &pki.server(false)).unwrap();
    create_lb(&config(&sim.url(), "api_tls_insecure = true")).unwrap();
    assert!(holds_the_vip(&sim));
}

#[test]
fn the_manual_token_goes_raw_in_authorization_and_a_missing_or_wrong_one_is_named() {
    let _logs = logs();
    const TOKEN: &str = "manual-token-7f3a9c";
    let sim = Simulator::start(ErrorStyle::Coded).unwrap();
    sim.set_auth(Auth::ManualToken(TOKEN.into()));
    let dir = std::env::temp_dir().join(format!("loxilb-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();

    create_lb(&config(&sim.url(), &format!("api_token_file = {}", path(&file)))).unwrap();
    assert!(holds_the_vip(&sim));
    let sent: Vec<Option<String>> = sim.requests().into_iter().map(|r| r.authorization).collect();
    assert!(!sent.is_empty() && sent.iter().all(|a| a.as_deref() == Some(TOKEN)), "the raw token, no Bearer: {sent:?}");

    let (status, body) = client(&config(&sim.url(), "")).request("GET", LIST, None).unwrap();
    assert_eq!(status, 401, "LoxiLB's 500 \"invalid token\" is a refusal, not a transient failure: {body}");
    assert!(body.contains("none is configured") && body.contains("api_token"), "{body}");
    let (status, body) = client(&config(&sim.url(), "api_token = not-the-token")).request("GET", LIST, None).unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("refused the configured token"), "{body}");
    let err = create_lb(&config(&sim.url(), "api_token = not-the-token")).unwrap_err();
    assert!(err.contains("refused the configured token"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_login_gives_the_token_used_until_loxilb_refuses_it_and_a_wrong_password_is_named() {
    let _logs = logs();
    const PASSWORD: &str = "login-pw-41b2e8";
    let sim = Simulator::start(ErrorStyle::Coded).unwrap();
    sim.set_auth(Auth::Users(vec![("admin".into(), PASSWORD.into())]));
    let good = config(&sim.url(), &format!("api_username = admin\napi_password = {PASSWORD}"));
    let loxi = client(&good);
    let mut sandbox = sandbox_with(&default_policy(), Arc::clone(&loxi), Arc::new(MemoryStore::default()));
    let created = sandbox.handle(&op("loadbalancer_create", json!({"loadbalancer": tree()}))).unwrap();
    assert!(created.error.is_none(), "{:?}", created.error);
    assert!(holds_the_vip(&sim));
    let requests = sim.requests();
    assert_eq!(sim.logins(), 1, "one login serves every request: {}", requests.len());
    assert_eq!(requests[0].path, "/netlox/v1/auth/login");
    assert_eq!(requests[0].json().unwrap(), json!({"username": "admin", "password": PASSWORD}));
    assert!(requests[1..].iter().all(|r| r.authorization.as_deref() == Some("sim-token-admin-1")), "{requests:?}");

    // LoxiLB forgot the token (expiry, restart): it answers 500 "Token not found"; one new login.
    sim.expire_tokens();
    assert_eq!(loxi.request("GET", LIST, None).unwrap().0, 200);
    assert_eq!(sim.logins(), 2);
    // A 401 mid-session: one new login too.
    sim.fail_next(1, 401, "unauthenticated for invalid credentials");
    assert_eq!(loxi.request("GET", LIST, None).unwrap().0, 200);
    assert_eq!(sim.logins(), 3);
    let removed = sandbox.handle(&op("loadbalancer_delete", json!({"loadbalancer": tree(), "cascade": true}))).unwrap();
    assert!(removed.error.is_none(), "{:?}", removed.error);
    assert_eq!(sim.logins(), 3);

    // LoxiLB answers a wrong password with 200 and no token.
    let wrong = config(&sim.url(), "api_username = admin\napi_password = not-the-password");
    let (status, body) = client(&wrong).request("GET", LIST, None).unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("wrong username or password") && body.contains("\\\"admin\\\""), "{body}");
    let err = create_lb(&wrong).unwrap_err();
    assert!(err.contains("wrong username or password"), "{err}");
    let (_, body) = client(&config(&sim.url(), "api_username = nobody\napi_password = x")).request("GET", LIST, None).unwrap();
    assert!(body.contains("User not found"), "{body}");
}

#[test]
fn no_secret_reaches_a_log_line() {
    let logs = logs();
    const TOKEN: &str = "log-token-93d1f0";
    const PASSWORD: &str = "log-pw-5c77aa";
    const USERINFO_PW: &str = "userinfo-pw-0b9e41";
    let sim = Simulator::start(ErrorStyle::Coded).unwrap();

    // A password in api_endpoints is refused, and the refusal does not repeat it.
    let err = Config::parse(&format!("[driver_loxilb]\napi_endpoints = http://admin:{USERINFO_PW}@127.0.0.1:9\n")).unwrap_err();
    tracing::error!("{err:#}");
    assert!(format!("{err:#}").contains("api_username"), "{err:#}");

    sim.set_auth(Auth::Users(vec![("admin".into(), PASSWORD.into())]));
    let good = config(&sim.url(), &format!("api_username = admin\napi_password = {PASSWORD}"));
    tracing::info!("configuration: {good:?}; shown: {}", good.to_json());
    create_lb(&good).unwrap();
    sim.expire_tokens();
    assert_eq!(client(&good).request("GET", LIST, None).unwrap().0, 200);
    let wrong = config(&sim.url(), "api_username = admin\napi_password = log-pw-wrong-1");
    assert!(create_lb(&wrong).is_err());

    sim.set_auth(Auth::ManualToken(TOKEN.into()));
    let token = config(&sim.url(), &format!("api_token = {TOKEN}"));
    tracing::info!("configuration: {token:?}; shown: {}", token.to_json());
    assert_eq!(client(&token).request("GET", LIST, None).unwrap().0, 200);
    // A node that does not answer: the host warns, naming it.
    let down = config(&format!("http://127.0.0.1:9,{}", sim.url()), &format!("api_token = {TOKEN}"));
    let _ = client(&down).request("GET", LIST, None);

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("did not answer"), "the host's warnings were captured:\n{text}");
    for secret in [TOKEN, PASSWORD, USERINFO_PW, "log-pw-wrong-1"] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} logged:\n{}", lines.join("\n"));
    }
}

/// Every log line of this test binary, at every level, `log` records (ureq, rustls) included.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&logs));
        // Everything of the host, its LoxiLB client, TLS and HTTP; the compiler's trace output (megabytes a
        // policy) is left out.
        let filter = tracing_subscriber::EnvFilter::new(
            "info,host=trace,loxilb_api=trace,loxilb_sim=trace,ureq=trace,ureq_proto=trace,rustls=trace,tls_auth=trace,test=trace",
        );
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(move || sink.clone()).try_init().expect("the only subscriber");
        logs
    }))
}
