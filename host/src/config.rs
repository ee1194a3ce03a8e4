//! The host's configuration: octavia.conf's `[driver_loxilb]` section, plus the few Octavia settings the
//! host shares (`[DEFAULT] transport_url`, `control_exchange`, `[driver_agent]` socket paths), so one file
//! serves octavia-api and the host. The files are read by oslo.config's rules (`oslo_ini`), so the host
//! sees exactly the values octavia-api and the provider see. Unknown `[driver_loxilb]` keys and bad values
//! are refused at start with a message naming the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use loxilb_api::Secret;

use crate::oslo_ini::OsloConfig;

/// Which transport brings operations from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Amqp,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object a line (for journald/ELK pipelines that parse fields).
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// LoxiLB API base URLs (`http://host:11111`), tried in order; the host fails over on transport errors.
    pub api_endpoints: Vec<String>,
    pub api_timeout: Duration,
    /// How long a LoxiLB call that met a transient failure (no answer, HTTP 5xx) is retried; 0 = never.
    pub api_retry_deadline: Duration,
    /// TLS to LoxiLB and its credentials (files are read when the client is built, see `access`).
    pub api_access: ApiAccess,
    pub nat_mode: String,
    /// Rules ask LoxiLB to advertise their VIPs over BGP (a flavor's `bgp` overrides it).
    pub bgp: bool,
    /// The policy component; empty means the default policy built next to the binary.
    pub policy_path: Option<PathBuf>,
    pub enable_persistent_mapping: bool,
    pub mapping_storage_path: PathBuf,
    /// Seconds between backups of the mapping snapshot; 0 disables backups.
    pub mapping_backup_interval: Duration,
    pub mapping_backup_count: usize,
    /// storage, loxilb or hybrid.
    pub recovery_mode: String,
    pub reconcile_interval: Duration,
    pub remove_orphans: bool,
    pub transport: Transport,
    pub socket_path: PathBuf,
    pub rpc_topic: String,
    pub rpc_shards: u32,
    pub validate_timeout: Duration,
    pub admin_socket_path: PathBuf,
    pub guest_memory_limit_mb: u64,
    pub guest_call_timeout: Duration,
    pub commit_wait_timeout: Duration,
    pub stats_interval: Duration,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: nowhere.
    pub http_listen: Option<String>,
    /// `[DEFAULT] debug`: log at debug level.
    pub debug: bool,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Casts accepted and not yet applied before further ones are refused as overload.
    pub max_pending_operations: usize,
    /// Largest request the Unix socket reads.
    pub max_request_bytes: usize,
    /// Users (ids) allowed on the Unix socket; `None`: the host's own user, root and `octavia`.
    pub allowed_peer_users: Option<Vec<u32>>,
    /// Primary groups (ids) allowed on the Unix socket.
    pub allowed_peer_groups: Vec<u32>,
    /// `[DEFAULT] transport_url` (oslo.messaging).
    pub transport_url: Option<String>,
    /// `[oslo_messaging_rabbit]` TLS keys (the `transport_url` query may override them).
    pub rabbit_tls: crate::transport::amqp_tls::RabbitTlsOptions,
    /// `[DEFAULT] control_exchange`; Octavia's default is `octavia`.
    pub control_exchange: String,
    /// `[driver_agent]` sockets; absent ones mean "no Octavia here" (demo, tests).
    pub status_socket: Option<PathBuf>,
    pub stats_socket: Option<PathBuf>,
    pub get_socket: Option<PathBuf>,
}

/// The `[driver_loxilb]` keys of TLS to LoxiLB and authentication with it. Secrets are [`Secret`]s, so
/// this (and [`Config`]) can be printed with `{:?}` without showing them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiAccess {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub tls_insecure: bool,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

impl ApiAccess {
    /// Combinations that cannot mean what the operator wants, refused at start.
    fn check(&self) -> Result<()> {
        let set = |b: bool, key: &'static str| b.then_some(key);
        let pairs = [
            (set(self.token.is_some(), "api_token"), set(self.token_file.is_some(), "api_token_file")),
            (set(self.password.is_some(), "api_password"), set(self.password_file.is_some(), "api_password_file")),
        ];
        for (a, b) in pairs {
            if let (Some(a), Some(b)) = (a, b) {
                bail!("[driver_loxilb] {a} and {b} are both set: set one");
            }
        }
        let token = self.token.is_some() || self.token_file.is_some();
        let password = self.password.is_some() || self.password_file.is_some();
        if token && (self.username.is_some() || password) {
            bail!("[driver_loxilb] a token (api_token, api_token_file) and a login (api_username, api_password) are both set: LoxiLB runs one scheme, set that one");
        }
        if self.username.is_some() != password {
            bail!("[driver_loxilb] a login needs api_username and api_password (or api_password_file) together");
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            bail!("[driver_loxilb] api_client_cert_file and api_client_key_file go together (a client certificate needs both)");
        }
        if self.tls_insecure && self.ca_file.is_some() {
            bail!("[driver_loxilb] api_tls_insecure = true turns off the certificate check that api_ca_file is for: set one");
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_endpoints: vec!["http://127.0.0.1:11111".into()],
            api_timeout: Duration::from_secs(5),
            api_retry_deadline: Duration::from_secs(10),
            api_access: ApiAccess::default(),
            nat_mode: "fullnat".into(),
            bgp: false,
            policy_path: None,
            enable_persistent_mapping: true,
            mapping_storage_path: "/var/lib/octavia/loxilb-mappings.json".into(),
            mapping_backup_interval: Duration::from_secs(300),
            mapping_backup_count: 5,
            recovery_mode: "hybrid".into(),
            reconcile_interval: Duration::from_secs(60),
            remove_orphans: false,
            transport: Transport::Unix,
            socket_path: "/var/run/octavia/loxilb-host.sock".into(),
            rpc_topic: "loxilb_octavia".into(),
            rpc_shards: 8,
            validate_timeout: Duration::from_secs(10),
            admin_socket_path: "/var/run/octavia/loxilb-admin.sock".into(),
            guest_memory_limit_mb: 1024,
            guest_call_timeout: Duration::from_secs(30),
            commit_wait_timeout: Duration::from_secs(60),
            stats_interval: Duration::from_secs(10),
            http_listen: None,
            debug: false,
            log_format: LogFormat::Text,
            max_pending_operations: crate::service::DEFAULT_MAX_PENDING,
            max_request_bytes: crate::transport::unix::DEFAULT_MAX_REQUEST_BYTES,
            allowed_peer_users: None,
            allowed_peer_groups: Vec::new(),
            transport_url: None,
            rabbit_tls: Default::default(),
            control_exchange: "octavia".into(),
            status_socket: None,
            stats_socket: None,
            get_socket: None,
        }
    }
}

/// Every `[driver_loxilb]` key, with a one-line description (the README's table lists them; `show-config`
/// prints their values).
pub const KEYS: &[(&str, &str)] = &[
    ("api_endpoints", "comma-separated LoxiLB API base URLs, e.g. http://10.0.0.2:11111"),
    ("api_timeout", "seconds per LoxiLB request (default 5)"),
    ("api_retry_deadline", "seconds a LoxiLB call is retried after no answer or HTTP 5xx, 0 = no retry (default 10; below guest_call_timeout)"),
    ("api_ca_file", "PEM file of the CA(s) LoxiLB's https certificate is checked against; empty = the system trust store (default)"),
    ("api_client_cert_file", "PEM client certificate (chain) for LoxiLB, with api_client_key_file; empty = none (default)"),
    ("api_client_key_file", "PEM private key of api_client_cert_file"),
    ("api_tls_insecure", "accept any certificate from LoxiLB, for test beds only (default false)"),
    ("api_token", "LoxiLB's manual token, sent as the Authorization header; empty = none (default)"),
    ("api_token_file", "file holding LoxiLB's manual token (instead of api_token)"),
    ("api_username", "user of LoxiLB's user service (loxilb --userservice), logged in with POST /auth/login"),
    ("api_password", "password of api_username"),
    ("api_password_file", "file holding the password of api_username (instead of api_password)"),
    ("nat_mode", "dnat, onearm, fullnat (default) or dsr"),
    ("bgp", "rules ask LoxiLB to advertise their VIPs over BGP (default false; a flavor's bgp overrides it)"),
    ("policy_path", "translation policy component (.wasm); default: the built-in l4-fullnat policy"),
    ("enable_persistent_mapping", "keep the ID mapping on disk (default true)"),
    ("mapping_storage_path", "mapping snapshot file (default /var/lib/octavia/loxilb-mappings.json)"),
    ("mapping_backup_interval", "seconds between mapping backups, 0 = none (default 300)"),
    ("mapping_backup_count", "backups kept (default 5)"),
    ("recovery_mode", "startup recovery: storage, loxilb or hybrid (default hybrid)"),
    ("reconcile_interval", "seconds between reconciliation passes, 0 = none (default 60)"),
    ("remove_orphans", "delete LoxiLB rules named by this provider that no Octavia object owns (default false)"),
    ("transport", "unix (default) or amqp"),
    ("socket_path", "Unix socket the provider talks to (default /var/run/octavia/loxilb-host.sock)"),
    ("rpc_topic", "oslo.messaging topic (default loxilb_octavia)"),
    ("rpc_shards", "cast shards; equal on provider and host (default 8)"),
    ("validate_timeout", "seconds the provider waits for validation (default 10)"),
    ("admin_socket_path", "admin socket for swap-policy (default /var/run/octavia/loxilb-admin.sock)"),
    ("guest_memory_limit_mb", "memory cap of each policy instance (default 1024; a full render takes about 1.2 KiB per mapping)"),
    ("guest_call_timeout", "seconds one policy call may run (default 30)"),
    ("commit_wait_timeout", "seconds to wait for Octavia to commit an object before applying it (default 60)"),
    ("stats_interval", "seconds between listener statistics pushes (default 10)"),
    ("http_listen", "address:port serving /metrics, /healthz and /readyz over HTTP; empty = none (default)"),
    ("log_format", "text (default) or json log lines on stderr"),
    ("max_pending_operations", "casts accepted but not yet applied before further ones are refused as overload (default 1000)"),
    ("max_request_bytes", "largest request read from the Unix socket, in bytes (default 8388608)"),
    ("allowed_peer_users", "users (names or ids) allowed on the Unix socket (default: the host's user, root and octavia)"),
    ("allowed_peer_groups", "primary groups (names or ids) allowed on the Unix socket (default: none)"),
];

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("[driver_loxilb] {key} = {v:?}: expected true or false"),
    }
}

fn path_or_none(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn parse_secs(key: &str, v: &str) -> Result<Duration> {
    let secs: f64 = v.trim().parse().map_err(|_| anyhow!("[driver_loxilb] {key} = {v:?}: expected a number of seconds"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        bail!("[driver_loxilb] {key} = {v:?}: out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Seconds that must be more than zero: a zero timeout would fail every request (or wait for nothing).
fn parse_timeout(key: &str, v: &str) -> Result<Duration> {
    let secs = parse_secs(key, v)?;
    if secs.is_zero() {
        bail!("[driver_loxilb] {key} = {v:?}: must be more than 0 seconds");
    }
    Ok(secs)
}

/// Octavia's own defaults for the driver-agent sockets (octavia `common/config.py`, octavia-lib).
pub const OCTAVIA_STATUS_SOCKET: &str = "/var/run/octavia/status.sock";
pub const OCTAVIA_STATS_SOCKET: &str = "/var/run/octavia/stats.sock";
pub const OCTAVIA_GET_SOCKET: &str = "/var/run/octavia/get.sock";

fn parse_uint(key: &str, v: &str, min: u64, max: u64) -> Result<u64> {
    let n: u64 = v.trim().parse().map_err(|_| anyhow!("[driver_loxilb] {key} = {v:?}: expected a whole number"))?;
    if !(min..=max).contains(&n) {
        bail!("[driver_loxilb] {key} = {v:?}: must be {min}..{max}");
    }
    Ok(n)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        Config::load_files(&[path.to_path_buf()], &[])
    }

    /// Several files and config directories, as oslo services take `--config-file` and `--config-dir`:
    /// a later file overrides an earlier one.
    pub fn load_files(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Config> {
        let names = files.iter().chain(dirs).map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let ini = OsloConfig::load(files, dirs)?;
        Config::from_oslo(&ini).with_context(|| format!("configuration from {names}"))
    }

    pub fn parse(text: &str) -> Result<Config> {
        Config::from_oslo(&OsloConfig::from_text(text)?)
    }

    fn from_oslo(ini: &OsloConfig) -> Result<Config> {
        let mut c = Config::default();
        if !ini.has_section("driver_loxilb") {
            bail!("no [driver_loxilb] section: is this the octavia.conf the LoxiLB provider is configured in?");
        }
        let mut retry_deadline_set = false;
        {
            for key in ini.keys("driver_loxilb") {
                let value = ini.get("driver_loxilb", &key)?.unwrap_or_default();
                let (key, v) = (key.as_str(), value.trim());
                match key {
                    "api_endpoints" => {
                        c.api_endpoints = v.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
                        if c.api_endpoints.is_empty() {
                            bail!("[driver_loxilb] api_endpoints is empty: give at least one LoxiLB URL");
                        }
                        for e in &c.api_endpoints {
                            let shown = loxilb_api::redact_userinfo(e);
                            if !(e.starts_with("http://") || e.starts_with("https://")) {
                                bail!("[driver_loxilb] api_endpoints: {shown:?} is not an http:// or https:// URL");
                            }
                            if shown != *e {
                                bail!("[driver_loxilb] api_endpoints: {shown:?} has a user and password in it, which LoxiLB does not take there: set api_username and api_password (or api_password_file) for its login, or api_token for its manual token");
                            }
                        }
                    }
                    "api_timeout" => c.api_timeout = parse_timeout(key, v)?,
                    "api_ca_file" => c.api_access.ca_file = path_or_none(v),
                    "api_client_cert_file" => c.api_access.client_cert_file = path_or_none(v),
                    "api_client_key_file" => c.api_access.client_key_file = path_or_none(v),
                    "api_tls_insecure" => c.api_access.tls_insecure = parse_bool(key, v)?,
                    "api_token" => c.api_access.token = (!v.is_empty()).then(|| Secret::new(v)),
                    "api_token_file" => c.api_access.token_file = path_or_none(v),
                    "api_username" => c.api_access.username = (!v.is_empty()).then(|| v.to_string()),
                    "api_password" => c.api_access.password = (!v.is_empty()).then(|| Secret::new(v)),
                    "api_password_file" => c.api_access.password_file = path_or_none(v),
                    "api_retry_deadline" => {
                        c.api_retry_deadline = parse_secs(key, v)?;
                        retry_deadline_set = true;
                    }
                    "nat_mode" => {
                        let mode = v.to_ascii_lowercase();
                        if !["dnat", "onearm", "fullnat", "dsr", "fullproxy"].contains(&mode.as_str()) {
                            bail!("[driver_loxilb] nat_mode = {v:?}: expected dnat, onearm, fullnat, dsr or fullproxy");
                        }
                        c.nat_mode = mode;
                    }
                    "policy_path" => c.policy_path = (!v.is_empty()).then(|| PathBuf::from(v)),
                    "enable_persistent_mapping" => c.enable_persistent_mapping = parse_bool(key, v)?,
                    "mapping_storage_path" => {
                        if v.is_empty() {
                            bail!("[driver_loxilb] mapping_storage_path is empty");
                        }
                        if Path::new(v).is_dir() {
                            bail!("[driver_loxilb] mapping_storage_path = {v:?} is a directory: name the snapshot file (e.g. {v}/loxilb-mappings.json)");
                        }
                        c.mapping_storage_path = v.into()
                    }
                    "mapping_backup_interval" => c.mapping_backup_interval = parse_secs(key, v)?,
                    "mapping_backup_count" => c.mapping_backup_count = parse_uint(key, v, 1, 1000)? as usize,
                    "recovery_mode" => {
                        if !["storage", "loxilb", "hybrid"].contains(&v) {
                            bail!("[driver_loxilb] recovery_mode = {v:?}: expected storage, loxilb or hybrid");
                        }
                        c.recovery_mode = v.into();
                    }
                    "reconcile_interval" => c.reconcile_interval = parse_secs(key, v)?,
                    "remove_orphans" => c.remove_orphans = parse_bool(key, v)?,
                    "bgp" => c.bgp = parse_bool(key, v)?,
                    "transport" => {
                        c.transport = match v {
                            "unix" => Transport::Unix,
                            "amqp" => Transport::Amqp,
                            _ => bail!("[driver_loxilb] transport = {v:?}: expected unix or amqp"),
                        }
                    }
                    "socket_path" => c.socket_path = v.into(),
                    "rpc_topic" => {
                        if v.is_empty() || v.contains(char::is_whitespace) {
                            bail!("[driver_loxilb] rpc_topic = {v:?}: expected a name without spaces");
                        }
                        c.rpc_topic = v.into()
                    }
                    "rpc_shards" => c.rpc_shards = parse_uint(key, v, 1, 1024)? as u32,
                    "validate_timeout" => {
                        c.validate_timeout = parse_secs(key, v)?;
                        if c.validate_timeout < Duration::from_millis(100) {
                            bail!("[driver_loxilb] validate_timeout = {v:?}: must be at least 0.1 s");
                        }
                    }
                    "admin_socket_path" => c.admin_socket_path = v.into(),
                    "guest_memory_limit_mb" => c.guest_memory_limit_mb = parse_uint(key, v, 16, 65_536)?,
                    "guest_call_timeout" => c.guest_call_timeout = parse_timeout(key, v)?,
                    "commit_wait_timeout" => c.commit_wait_timeout = parse_timeout(key, v)?,
                    "stats_interval" => c.stats_interval = parse_secs(key, v)?,
                    "http_listen" => {
                        if !v.is_empty() && v.parse::<std::net::SocketAddr>().is_err() {
                            bail!("[driver_loxilb] http_listen = {v:?}: expected an IP address and port, e.g. 127.0.0.1:9545");
                        }
                        c.http_listen = (!v.is_empty()).then(|| v.to_string());
                    }
                    "log_format" => {
                        c.log_format = match v {
                            "text" => LogFormat::Text,
                            "json" => LogFormat::Json,
                            _ => bail!("[driver_loxilb] log_format = {v:?}: expected text or json"),
                        }
                    }
                    "max_pending_operations" => c.max_pending_operations = parse_uint(key, v, 1, 10_000_000)? as usize,
                    "max_request_bytes" => c.max_request_bytes = parse_uint(key, v, 4096, 1 << 30)? as usize,
                    "allowed_peer_users" => c.allowed_peer_users = Some(crate::transport::peer::parse_users(key, v)?),
                    "allowed_peer_groups" => c.allowed_peer_groups = crate::transport::peer::parse_groups(key, v)?,
                    other => {
                        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                        bail!("[driver_loxilb] unknown key {other:?}; known keys: {}", known.join(", "))
                    }
                }
            }
        }
        if let Some(url) = ini.get("DEFAULT", "transport_url")? {
            c.transport_url = Some(url.trim().to_string());
        }
        let rabbit = |key: &str| ini.get("oslo_messaging_rabbit", key);
        if let Some(ssl) = rabbit("ssl")? {
            c.rabbit_tls.ssl = parse_bool("ssl", &ssl).map_err(|_| anyhow!("[oslo_messaging_rabbit] ssl = {ssl:?}: expected true or false"))?;
        }
        for (key, field) in [
            ("ssl_ca_file", &mut c.rabbit_tls.ssl_ca_file),
            ("ssl_cert_file", &mut c.rabbit_tls.ssl_cert_file),
            ("ssl_key_file", &mut c.rabbit_tls.ssl_key_file),
            ("ssl_version", &mut c.rabbit_tls.ssl_version),
        ] {
            if let Some(v) = rabbit(key)? {
                *field = v.trim().to_string();
            }
        }
        if let Some(debug) = ini.get("DEFAULT", "debug")? {
            c.debug = parse_bool("debug", &debug).map_err(|_| anyhow!("[DEFAULT] debug = {debug:?}: expected true or false"))?;
        }
        if let Some(exchange) = ini.get("DEFAULT", "control_exchange")? {
            c.control_exchange = exchange.trim().to_string();
        }
        // Octavia's defaults when unset, as octavia-api and the driver-agent use them; an empty value
        // turns a socket off (no Octavia on this machine: demos and tests).
        let socket = |key: &str, default: &str| -> Result<Option<PathBuf>> {
            let value = ini.get("driver_agent", key)?.unwrap_or_else(|| default.to_string());
            Ok((!value.trim().is_empty()).then(|| PathBuf::from(value.trim())))
        };
        c.status_socket = socket("status_socket_path", OCTAVIA_STATUS_SOCKET)?;
        c.stats_socket = socket("stats_socket_path", OCTAVIA_STATS_SOCKET)?;
        c.get_socket = socket("get_socket_path", OCTAVIA_GET_SOCKET)?;
        if c.api_retry_deadline >= c.guest_call_timeout && !retry_deadline_set {
            // Only a lowered guest_call_timeout: the default deadline follows it.
            c.api_retry_deadline = c.guest_call_timeout / 3;
        } else if c.api_retry_deadline >= c.guest_call_timeout {
            bail!(
                "[driver_loxilb] api_retry_deadline ({:?}) must be below guest_call_timeout ({:?}): a policy call retrying that long would be cut off",
                c.api_retry_deadline,
                c.guest_call_timeout
            );
        }
        c.api_access.check()?;
        if c.transport == Transport::Amqp && c.transport_url.is_none() {
            bail!("[driver_loxilb] transport = amqp needs [DEFAULT] transport_url (rabbit://user:pass@host:5672/)");
        }
        Ok(c)
    }
}

impl Config {
    /// Every `[driver_loxilb]` key with the value in force (defaults included), typed as oslo.config types
    /// the provider's options (seconds as numbers), plus the driver-agent sockets: `show-config` prints it,
    /// and the parity test compares it with what oslo.config reads from the same files.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let path = |p: &Path| p.display().to_string();
        let socket = |p: &Option<PathBuf>| p.as_deref().map(path);
        let file = |p: &Option<PathBuf>| p.as_deref().map(path).unwrap_or_default();
        // Set secrets show as ***, unset ones as empty (oslo's default), so show-config can be pasted.
        let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.to_string()).unwrap_or_default();
        let a = &self.api_access;
        json!({
            "driver_loxilb": {
                "api_endpoints": self.api_endpoints,
                "api_timeout": self.api_timeout.as_secs_f64(),
                "api_retry_deadline": self.api_retry_deadline.as_secs_f64(),
                "api_ca_file": file(&a.ca_file),
                "api_client_cert_file": file(&a.client_cert_file),
                "api_client_key_file": file(&a.client_key_file),
                "api_tls_insecure": a.tls_insecure,
                "api_token": secret(&a.token),
                "api_token_file": file(&a.token_file),
                "api_username": a.username.clone().unwrap_or_default(),
                "api_password": secret(&a.password),
                "api_password_file": file(&a.password_file),
                "nat_mode": self.nat_mode,
                "bgp": self.bgp,
                "policy_path": self.policy_path.as_deref().map(path).unwrap_or_default(),
                "enable_persistent_mapping": self.enable_persistent_mapping,
                "mapping_storage_path": path(&self.mapping_storage_path),
                "mapping_backup_interval": self.mapping_backup_interval.as_secs_f64(),
                "mapping_backup_count": self.mapping_backup_count,
                "recovery_mode": self.recovery_mode,
                "reconcile_interval": self.reconcile_interval.as_secs_f64(),
                "remove_orphans": self.remove_orphans,
                "transport": match self.transport { Transport::Unix => "unix", Transport::Amqp => "amqp" },
                "socket_path": path(&self.socket_path),
                "rpc_topic": self.rpc_topic,
                "rpc_shards": self.rpc_shards,
                "validate_timeout": self.validate_timeout.as_secs_f64(),
                "admin_socket_path": path(&self.admin_socket_path),
                "guest_memory_limit_mb": self.guest_memory_limit_mb,
                "guest_call_timeout": self.guest_call_timeout.as_secs_f64(),
                "commit_wait_timeout": self.commit_wait_timeout.as_secs_f64(),
                "stats_interval": self.stats_interval.as_secs_f64(),
                "max_pending_operations": self.max_pending_operations,
                "max_request_bytes": self.max_request_bytes,
                // Names are resolved to ids when read: ids are what is enforced, so ids are shown.
                "allowed_peer_users": self.allowed_peer_users.iter().flatten().map(u32::to_string).collect::<Vec<_>>(),
                "allowed_peer_groups": self.allowed_peer_groups.iter().map(u32::to_string).collect::<Vec<_>>(),
                "http_listen": self.http_listen.clone().unwrap_or_default(),
                "log_format": match self.log_format { LogFormat::Text => "text", LogFormat::Json => "json" },
            },
            "DEFAULT": {"transport_url": self.transport_url, "control_exchange": self.control_exchange, "debug": self.debug},
            "driver_agent": {
                "status_socket_path": socket(&self.status_socket),
                "stats_socket_path": socket(&self.stats_socket),
                "get_socket_path": socket(&self.get_socket),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_deadline_is_read_and_kept_below_the_guest_call_timeout() {
        assert_eq!(Config::parse("[driver_loxilb]\n").unwrap().api_retry_deadline, Duration::from_secs(10));
        assert_eq!(Config::parse("[driver_loxilb]\napi_retry_deadline = 2.5\n").unwrap().api_retry_deadline, Duration::from_millis(2500));
        assert_eq!(Config::parse("[driver_loxilb]\napi_retry_deadline = 0\n").unwrap().api_retry_deadline, Duration::ZERO);
        let lowered = Config::parse("[driver_loxilb]\nguest_call_timeout = 6\n").unwrap();
        assert_eq!(lowered.api_retry_deadline, Duration::from_secs(2), "the default follows a lower guest_call_timeout");
        let err = Config::parse("[driver_loxilb]\napi_retry_deadline = 40\n").unwrap_err().to_string();
        assert!(err.contains("api_retry_deadline") && err.contains("guest_call_timeout"), "{err}");
    }

    #[test]
    fn reads_octavia_conf_sections() {
        let c = Config::parse(
            "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n[driver_agent]\nget_socket_path = /run/get.sock\n\
             [api_settings]\nenabled_provider_drivers = loxilb:'LoxiLB'\n\
             [driver_loxilb]\napi_endpoints = http://a:11111, http://b:11111/\nnat_mode = onearm\ntransport = amqp\nrpc_shards = 4\n",
        )
        .unwrap();
        assert_eq!(c.api_endpoints, vec!["http://a:11111", "http://b:11111"]);
        assert_eq!(c.nat_mode, "onearm");
        assert_eq!(c.transport, Transport::Amqp);
        assert_eq!(c.rpc_shards, 4);
        assert_eq!(c.get_socket.as_deref(), Some(Path::new("/run/get.sock")));
        assert_eq!(c.transport_url.as_deref(), Some("rabbit://guest:guest@127.0.0.1:5672/"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Config::parse("[driver_loxilb]\napi_endpoint = http://a\n").unwrap_err().to_string();
        assert!(err.contains("api_endpoint") && err.contains("unknown"), "{err}");
        let err = Config::parse("[driver_loxilb]\napi_timeout = soon\n").unwrap_err().to_string();
        assert!(err.contains("api_timeout"), "{err}");
        let err = Config::parse("[driver_loxilb]\nenable_persistent_mapping = maybe\n").unwrap_err().to_string();
        assert!(err.contains("enable_persistent_mapping"), "{err}");
        let err = Config::parse("[driver_loxilb]\nnat_mode = hostonearm\n").unwrap_err().to_string();
        assert!(err.contains("nat_mode"), "{err}");
        let err = Config::parse("[driver_loxilb]\napi_endpoints = 10.0.0.1:11111\n").unwrap_err().to_string();
        assert!(err.contains("api_endpoints"), "{err}");
        let err = Config::parse("[driver_loxilb]\nmax_pending_operations = 0\n").unwrap_err().to_string();
        assert!(err.contains("max_pending_operations"), "{err}");
        let err = Config::parse("[driver_loxilb]\nmax_request_bytes = 100\n").unwrap_err().to_string();
        assert!(err.contains("max_request_bytes"), "{err}");
        let err = Config::parse("[driver_loxilb]\nallowed_peer_users = no-such-user-here\n").unwrap_err().to_string();
        assert!(err.contains("allowed_peer_users") && err.contains("no-such-user-here"), "{err}");
    }

    #[test]
    fn a_file_without_the_section_zero_timeouts_and_a_directory_are_refused() {
        let err = Config::parse("[DEFAULT]\ndebug = true\n").unwrap_err().to_string();
        assert!(err.contains("no [driver_loxilb] section"), "{err}");
        for key in ["api_timeout", "guest_call_timeout", "commit_wait_timeout"] {
            let err = Config::parse(&format!("[driver_loxilb]\n{key} = 0\n")).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("more than 0"), "{err}");
        }
        let dir = std::env::temp_dir();
        let err = Config::parse(&format!("[driver_loxilb]\nmapping_storage_path = {}\n", dir.display())).unwrap_err().to_string();
        assert!(err.contains("mapping_storage_path") && err.contains("is a directory"), "{err}");
    }

    #[test]
    fn driver_agent_sockets_default_to_octavias_and_an_empty_value_turns_one_off() {
        let c = Config::parse("[driver_loxilb]\n").unwrap();
        assert_eq!(c.status_socket.as_deref(), Some(Path::new(OCTAVIA_STATUS_SOCKET)));
        assert_eq!(c.stats_socket.as_deref(), Some(Path::new(OCTAVIA_STATS_SOCKET)));
        assert_eq!(c.get_socket.as_deref(), Some(Path::new(OCTAVIA_GET_SOCKET)));
        let c = Config::parse("[driver_agent]\nget_socket_path =\n[driver_loxilb]\n").unwrap();
        assert_eq!(c.get_socket, None);
        assert_eq!(c.status_socket.as_deref(), Some(Path::new(OCTAVIA_STATUS_SOCKET)));
    }

    #[test]
    fn values_follow_oslo_rules() {
        let c = Config::parse(
            "[DEFAULT]\ntransport_url = rabbit://u:p@h:5672/ # not a comment for oslo\nstate = /srv/octavia\n\
             [driver_loxilb]\nmapping_storage_path = $state/map.json\nnat_mode = \"onearm\"\n# api_timeout = 0\n",
        )
        .unwrap();
        assert_eq!(c.transport_url.as_deref(), Some("rabbit://u:p@h:5672/ # not a comment for oslo"));
        assert_eq!(c.mapping_storage_path, Path::new("/srv/octavia/map.json"));
        assert_eq!(c.nat_mode, "onearm");
    }

    #[test]
    fn show_config_lists_every_documented_key() {
        let shown = Config::default().to_json();
        let mut shown: Vec<&str> = shown["driver_loxilb"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        shown.sort();
        keys.sort();
        assert_eq!(shown, keys);
    }

    #[test]
    fn access_keys_are_read_checked_together_and_secrets_never_shown() {
        let c = Config::parse(
            "[driver_loxilb]\napi_endpoints = https://a:11111\napi_ca_file = /etc/loxilb/ca.pem\napi_client_cert_file = /c.pem\n\
             api_client_key_file = /k.pem\napi_username = admin\napi_password = s3cr3t-pw\n",
        )
        .unwrap();
        assert_eq!(c.api_access.ca_file.as_deref(), Some(Path::new("/etc/loxilb/ca.pem")));
        assert_eq!(c.api_access.username.as_deref(), Some("admin"));
        assert_eq!(c.api_access.password.as_ref().map(Secret::expose), Some("s3cr3t-pw"));
        assert!(!format!("{c:?}").contains("s3cr3t-pw"), "Debug shows no secret");
        let shown = c.to_json().to_string();
        assert!(!shown.contains("s3cr3t-pw") && shown.contains(r#""api_password":"***""#), "{shown}");
        let token = Config::parse("[driver_loxilb]\napi_token = t0k3n-value\n").unwrap();
        assert!(!format!("{token:?}").contains("t0k3n-value") && !token.to_json().to_string().contains("t0k3n-value"));
        for (text, keys) in [
            ("api_token = a\napi_token_file = /t", &["api_token", "api_token_file"][..]),
            ("api_token = a\napi_username = u\napi_password = p", &["api_token", "api_username"]),
            ("api_username = u", &["api_username", "api_password"]),
            ("api_client_cert_file = /c.pem", &["api_client_cert_file", "api_client_key_file"]),
            ("api_tls_insecure = true\napi_ca_file = /ca.pem", &["api_tls_insecure", "api_ca_file"]),
        ] {
            let err = Config::parse(&format!("[driver_loxilb]\n{text}\n")).unwrap_err().to_string();
            assert!(keys.iter().all(|k| err.contains(k)), "{text}: {err}");
        }
        let err = Config::parse("[driver_loxilb]\napi_endpoints = http://admin:s3cr3t-pw@10.0.0.2:11111\n").unwrap_err().to_string();
        assert!(err.contains("api_username") && err.contains("***@10.0.0.2") && !err.contains("s3cr3t-pw"), "{err}");
    }

    #[test]
    fn every_documented_key_is_accepted() {
        for (key, _) in KEYS {
            let value = match *key {
                "api_endpoints" => "http://x:1",
                "nat_mode" => "dsr",
                "transport" => "unix",
                "recovery_mode" => "loxilb",
                "enable_persistent_mapping" | "remove_orphans" | "api_tls_insecure" | "bgp" => "false",
                // Alone, half a login or half a client certificate is refused: see the access test.
                "api_username" | "api_password" | "api_password_file" | "api_client_cert_file" | "api_client_key_file" => continue,
                "policy_path" | "mapping_storage_path" | "socket_path" | "admin_socket_path" | "rpc_topic" => "x",
                "guest_memory_limit_mb" => "64",
                "http_listen" => "127.0.0.1:0",
                "log_format" => "json",
                "max_request_bytes" => "65536",
                "allowed_peer_users" | "allowed_peer_groups" => "root, 4242",
                _ => "3",
            };
            Config::parse(&format!("[driver_loxilb]\n{key} = {value}\n")).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
