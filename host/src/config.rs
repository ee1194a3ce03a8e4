//! The host's configuration: octavia.conf's `[driver_loxilb]` section, plus the few Octavia settings the
//! host shares (`[DEFAULT] transport_url`, `control_exchange`, `[driver_agent]` socket paths), so one file
//! serves octavia-api and the host. Unknown `[driver_loxilb]` keys and bad values are refused at start
//! with a message naming the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ini::{Ini, ParseOption};

/// Which transport brings operations from the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Amqp,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// LoxiLB API base URLs (`http://host:11111`), tried in order; the host fails over on transport errors.
    pub api_endpoints: Vec<String>,
    pub api_timeout: Duration,
    /// How long a LoxiLB call that met a transient failure (no answer, HTTP 5xx) is retried; 0 = never.
    pub api_retry_deadline: Duration,
    pub nat_mode: String,
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
    /// `[DEFAULT] transport_url` (oslo.messaging).
    pub transport_url: Option<String>,
    /// `[DEFAULT] control_exchange`; Octavia's default is `octavia`.
    pub control_exchange: String,
    /// `[driver_agent]` sockets; absent ones mean "no Octavia here" (demo, tests).
    pub status_socket: Option<PathBuf>,
    pub stats_socket: Option<PathBuf>,
    pub get_socket: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_endpoints: vec!["http://127.0.0.1:11111".into()],
            api_timeout: Duration::from_secs(5),
            api_retry_deadline: Duration::from_secs(10),
            nat_mode: "fullnat".into(),
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
            transport_url: None,
            control_exchange: "octavia".into(),
            status_socket: None,
            stats_socket: None,
            get_socket: None,
        }
    }
}

/// Every `[driver_loxilb]` key, with a one-line description (README and `--help` list them).
pub const KEYS: &[(&str, &str)] = &[
    ("api_endpoints", "comma-separated LoxiLB API base URLs, e.g. http://10.0.0.2:11111"),
    ("api_timeout", "seconds per LoxiLB request (default 5)"),
    ("api_retry_deadline", "seconds a LoxiLB call is retried after no answer or HTTP 5xx, 0 = no retry (default 10; below guest_call_timeout)"),
    ("nat_mode", "dnat, onearm, fullnat (default) or dsr"),
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
    ("guest_memory_limit_mb", "memory cap of the policy sandbox (default 1024; about 3 KiB per mapping)"),
    ("guest_call_timeout", "seconds one policy call may run (default 30)"),
    ("commit_wait_timeout", "seconds to wait for Octavia to commit an object before applying it (default 60)"),
    ("stats_interval", "seconds between listener statistics pushes (default 10)"),
];

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("[driver_loxilb] {key} = {v:?}: expected true or false"),
    }
}

fn parse_secs(key: &str, v: &str) -> Result<Duration> {
    let secs: f64 = v.trim().parse().map_err(|_| anyhow!("[driver_loxilb] {key} = {v:?}: expected a number of seconds"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        bail!("[driver_loxilb] {key} = {v:?}: out of range");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_uint(key: &str, v: &str, min: u64, max: u64) -> Result<u64> {
    let n: u64 = v.trim().parse().map_err(|_| anyhow!("[driver_loxilb] {key} = {v:?}: expected a whole number"))?;
    if !(min..=max).contains(&n) {
        bail!("[driver_loxilb] {key} = {v:?}: must be {min}..{max}");
    }
    Ok(n)
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let opt = ParseOption { enabled_quote: false, enabled_escape: false, ..Default::default() };
        let ini = Ini::load_from_file_opt(path, opt).with_context(|| format!("reading {}", path.display()))?;
        Config::from_ini(&ini)
    }

    pub fn parse(text: &str) -> Result<Config> {
        let opt = ParseOption { enabled_quote: false, enabled_escape: false, ..Default::default() };
        let ini = Ini::load_from_str_opt(text, opt)?;
        Config::from_ini(&ini)
    }

    fn from_ini(ini: &Ini) -> Result<Config> {
        let mut c = Config::default();
        let mut retry_deadline_set = false;
        if let Some(section) = ini.section(Some("driver_loxilb")) {
            for (key, value) in section.iter() {
                let v = value.trim();
                match key {
                    "api_endpoints" => {
                        c.api_endpoints = v.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
                        if c.api_endpoints.is_empty() {
                            bail!("[driver_loxilb] api_endpoints is empty: give at least one LoxiLB URL");
                        }
                        for e in &c.api_endpoints {
                            if !(e.starts_with("http://") || e.starts_with("https://")) {
                                bail!("[driver_loxilb] api_endpoints: {e:?} is not an http:// or https:// URL");
                            }
                        }
                    }
                    "api_timeout" => c.api_timeout = parse_secs(key, v)?,
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
                    "guest_call_timeout" => c.guest_call_timeout = parse_secs(key, v)?,
                    "commit_wait_timeout" => c.commit_wait_timeout = parse_secs(key, v)?,
                    "stats_interval" => c.stats_interval = parse_secs(key, v)?,
                    other => {
                        let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                        bail!("[driver_loxilb] unknown key {other:?}; known keys: {}", known.join(", "))
                    }
                }
            }
        }
        if let Some(default) = ini.section(Some("DEFAULT")).or_else(|| ini.section(None::<String>)) {
            if let Some(url) = default.get("transport_url") {
                c.transport_url = Some(url.trim().to_string());
            }
            if let Some(exchange) = default.get("control_exchange") {
                c.control_exchange = exchange.trim().to_string();
            }
        }
        if let Some(agent) = ini.section(Some("driver_agent")) {
            c.status_socket = agent.get("status_socket_path").map(|p| p.trim().into());
            c.stats_socket = agent.get("stats_socket_path").map(|p| p.trim().into());
            c.get_socket = agent.get("get_socket_path").map(|p| p.trim().into());
        }
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
        if c.transport == Transport::Amqp && c.transport_url.is_none() {
            bail!("[driver_loxilb] transport = amqp needs [DEFAULT] transport_url (rabbit://user:pass@host:5672/)");
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_deadline_is_read_and_kept_below_the_guest_call_timeout() {
        assert_eq!(Config::parse("").unwrap().api_retry_deadline, Duration::from_secs(10));
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
    }

    #[test]
    fn every_documented_key_is_accepted() {
        for (key, _) in KEYS {
            let value = match *key {
                "api_endpoints" => "http://x:1",
                "nat_mode" => "dsr",
                "transport" => "unix",
                "recovery_mode" => "loxilb",
                "enable_persistent_mapping" | "remove_orphans" => "false",
                "policy_path" | "mapping_storage_path" | "socket_path" | "admin_socket_path" | "rpc_topic" => "x",
                "guest_memory_limit_mb" => "64",
                _ => "3",
            };
            Config::parse(&format!("[driver_loxilb]\n{key} = {value}\n")).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
}
