//! The `loxilb-octavia` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use host::config::{Config, Transport};
use host::execute::RecoveryMode;

#[derive(Parser)]
#[command(name = "loxilb-octavia", version, about = "LoxiLB provider host for OpenStack Octavia")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Storage,
    Loxilb,
    Hybrid,
}

/// Where the configuration is: read by oslo.config's rules, as octavia-api reads the same files.
#[derive(clap::Args)]
struct ConfigFiles {
    /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section. Repeat to layer files:
    /// a later one overrides an earlier one (oslo's --config-file; that spelling is accepted too).
    #[arg(long = "config", visible_alias = "config-file", value_name = "FILE", required = true)]
    config: Vec<PathBuf>,
    /// A directory whose *.conf files are read after the --config files, in name order (oslo's --config-dir).
    #[arg(long, value_name = "DIR")]
    config_dir: Vec<PathBuf>,
}

impl ConfigFiles {
    fn load(&self) -> Result<Config> {
        Config::load_files(&self.config, &self.config_dir)
    }

    /// The configuration, with logging set up as it says (before anything worth logging happens).
    fn load_logged(&self) -> Result<Config> {
        let config = self.load()?;
        host::logging::init(config.debug, config.log_format, false);
        Ok(config)
    }
}

/// The seed's resource types, as `show-mappings --type` takes them.
#[derive(Clone, Copy, ValueEnum)]
enum ResourceKind {
    Loadbalancer,
    Listener,
    Pool,
    Member,
    Healthmonitor,
}

impl ResourceKind {
    fn name(self) -> &'static str {
        match self {
            ResourceKind::Loadbalancer => "loadbalancer",
            ResourceKind::Listener => "listener",
            ResourceKind::Pool => "pool",
            ResourceKind::Member => "member",
            ResourceKind::Healthmonitor => "healthmonitor",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve Octavia operations.
    Serve {
        #[command(flatten)]
        config: ConfigFiles,
    },
    /// Print every [driver_loxilb] value as the host reads it (JSON), defaults included, and the driver-agent
    /// sockets; exits non-zero naming the key when the configuration would not start.
    ShowConfig {
        #[command(flatten)]
        config: ConfigFiles,
    },
    /// Run the end-to-end demonstration (built-in LoxiLB simulator unless --loxilb is given).
    Demo {
        /// A LoxiLB API base URL, e.g. http://10.0.0.2:11111, to run the same scenario against.
        #[arg(long)]
        loxilb: Option<String>,
    },
    /// Print the ID mapping (safe while the host runs).
    ShowMappings {
        #[command(flatten)]
        config: ConfigFiles,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only this load balancer and everything under it (its listeners, pools, members, monitors).
        #[arg(long, value_name = "ID")]
        lb: Option<String>,
        /// Only mappings of this resource type.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        resource_type: Option<ResourceKind>,
    },
    /// Check the ID mapping: both directions agree, metadata present, keys parse. Exits non-zero on problems.
    ValidateMappings {
        #[command(flatten)]
        config: ConfigFiles,
    },
    /// Rebuild the ID mapping from LoxiLB's rules (and the file, in hybrid mode) and persist it. Stop the host first.
    ForceRecovery {
        #[command(flatten)]
        config: ConfigFiles,
        #[arg(long, value_enum, default_value = "hybrid")]
        mode: Mode,
    },
    /// Swap the running host's translation policy for the component at PATH (through its admin socket).
    SwapPolicy {
        path: PathBuf,
        /// Print the LoxiLB changes the swap would make, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The host's configuration file, for [driver_loxilb] admin_socket_path.
        #[arg(long, conflicts_with = "admin_socket")]
        config: Option<PathBuf>,
        /// The host's admin socket (default /var/run/octavia/loxilb-admin.sock).
        #[arg(long)]
        admin_socket: Option<PathBuf>,
    },
    /// Each LoxiLB node of api_endpoints: whether it answers, its version and HA role, and how far its rules
    /// are from the desired ones (safe while the host runs). Exits 1 when a node does not answer or drifts.
    Nodes {
        #[command(flatten)]
        config: ConfigFiles,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance scenarios against the policy component at PATH; exits non-zero on any failure.
    CheckPolicy { path: PathBuf },
    /// Print the running host's metrics (the OpenMetrics text /metrics serves), read through its admin socket.
    Metrics {
        #[command(flatten)]
        config: ConfigFiles,
    },
}

/// An error ends the command as one line naming its causes, outermost first (`Error: configuration from
/// octavia.conf: [driver_loxilb] … must be …`), and exit status 1: what an operator acts on, without the
/// stack trace a `RUST_BACKTRACE` set for debugging would otherwise add to every wrong key.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        host::logging::init(false, host::config::LogFormat::Text, true);
    }
    match cli.command {
        Command::Serve { config } => serve(config.load_logged()?),
        Command::ShowConfig { config } => {
            println!("{}", serde_json::to_string_pretty(&config.load()?.to_json())?);
            Ok(())
        }
        Command::Demo { loxilb } => host::demo::run(loxilb),
        Command::ShowMappings { config, json, lb, resource_type } => {
            let filter = host::tools::Filter { loadbalancer: lb, resource_type: resource_type.map(|t| t.name().to_string()) };
            host::tools::show_mappings(&config.load()?, json, &filter)
        }
        Command::ValidateMappings { config } => host::tools::validate_mappings(&config.load()?),
        Command::ForceRecovery { config, mode } => host::tools::force_recovery(
            &config.load()?,
            match mode {
                Mode::Storage => RecoveryMode::Storage,
                Mode::Loxilb => RecoveryMode::Loxilb,
                Mode::Hybrid => RecoveryMode::Hybrid,
            },
        ),
        Command::SwapPolicy { path, dry_run, config, admin_socket } => {
            std::process::exit(host::swap::cli_swap(&path, dry_run, config.as_deref(), admin_socket.as_deref())?)
        }
        Command::Nodes { config, json } => std::process::exit(host::nodes::cli(&config.load()?, json)?),
        Command::CheckPolicy { path } => std::process::exit(host::conformance::cli_check(&path)?),
        Command::Metrics { config } => {
            let socket = config.load()?.admin_socket_path;
            match host::swap::admin::request(&socket, &serde_json::json!({"command": "metrics"}))? {
                Ok(text) => print!("{text}"),
                Err(why) => anyhow::bail!(why),
            }
            Ok(())
        }
    }
}

fn recovery_mode(name: &str) -> RecoveryMode {
    match name {
        "loxilb" => RecoveryMode::Loxilb,
        "storage" => RecoveryMode::Storage,
        _ => RecoveryMode::Hybrid,
    }
}

fn serve(config: Config) -> Result<()> {
    // Before anything is opened: a second host must not touch the mapping, the inbox or the sockets.
    let _lock = host::app::lock_state(&config)?;
    for note in host::app::not_applied(&config) {
        tracing::warn!("{note}");
    }
    let loxilb = host::app::loxilb(&config)?;
    if config.enable_persistent_mapping {
        let mut path = config.mapping_storage_path.clone().into_os_string();
        path.push(".missed-deletes");
        if let Err(e) = host::missed_deletes::persist_at(&loxilb, std::path::Path::new(&path)) {
            tracing::error!("{e:#}: rules deleted while a LoxiLB node did not answer, before the restart, are left to remove_orphans there");
        }
    }
    let (_storage, _backups, mut sandbox) = host::app::serving_policy(&config, Arc::clone(&loxilb))?;
    // Startup recovery: `init` already loaded the file; LoxiLB fills what it lacks (hybrid) or replaces it.
    if config.recovery_mode != "storage" {
        host::metrics::RECOVERY_ATTEMPTS.inc();
        let result = sandbox.recover(recovery_mode(&config.recovery_mode));
        if matches!(result, Ok(Ok(_))) {
            host::metrics::RECOVERY_SUCCESSES.inc();
        } else {
            host::metrics::RECOVERY_FAILURES.inc();
        }
        match result {
            Ok(Ok(report)) => tracing::info!(
                "startup recovery: {} from storage, {} from LoxiLB ({} deterministic), {} conflicts",
                report.loaded,
                report.recovered,
                report.deterministic,
                report.conflicts.len()
            ),
            Ok(Err(e)) => tracing::warn!("startup recovery from LoxiLB failed (continuing with storage): {e}"),
            Err(e) => anyhow::bail!("startup recovery: {e}"),
        }
    }
    let agent = host::octavia::agent::DriverAgent { status: config.status_socket.clone(), stats: config.stats_socket.clone(), get: config.get_socket.clone() };
    let sink: Arc<dyn host::octavia::status::StatusSink> = if agent.status.is_some() {
        Arc::new(host::octavia::status::AgentSink::new(agent.clone()))
    } else {
        Arc::new(host::octavia::status::RecordingSink::default())
    };
    let (inbox, pending, damaged) = if config.enable_persistent_mapping {
        let mut path = config.mapping_storage_path.clone().into_os_string();
        path.push(".inbox");
        let opened = host::inbox::Inbox::open(std::path::Path::new(&path))?;
        (Some(opened.inbox), opened.pending, opened.damaged)
    } else {
        (None, Vec::new(), Vec::new())
    };
    let service = host::service::Service::with_inbox(sandbox, Some(agent.clone()), sink, config.commit_wait_timeout, inbox);
    if config.enable_persistent_mapping {
        let mut path = config.mapping_storage_path.clone().into_os_string();
        path.push(".reprogram");
        if let Err(e) = service.reprogram.persist_at(std::path::Path::new(&path)) {
            tracing::error!("{e:#}: load balancers that failed at LoxiLB before the restart stay as Octavia shows them");
        }
    }
    let agent_for_probes = agent.clone();
    service.set_max_pending_operations(config.max_pending_operations);
    service.report_damaged(&damaged);
    let monitor = host::monitor::Monitor {
        service: Arc::clone(&service),
        loxilb,
        agent: Some(agent),
        stats_interval: config.stats_interval,
        reconcile_interval: config.reconcile_interval,
    };
    let probes = host::health::Probes {
        service: Arc::clone(&service),
        loxilb: Arc::clone(&monitor.loxilb),
        agent: agent_for_probes,
        mapping_path: config.enable_persistent_mapping.then(|| config.mapping_storage_path.clone()),
    };
    monitor.start();
    let _http = match &config.http_listen {
        Some(addr) => {
            let server = host::http::HttpServer::start(addr, probes)?;
            tracing::info!("metrics and health on http://{}", server.addr);
            Some(server)
        }
        None => None,
    };
    let admin = host::swap::start_admin(&config, Arc::clone(&service))?;
    tracing::info!("admin socket on {}", admin.path.display());
    match config.transport {
        Transport::Unix => {
            service.start_worker(pending);
            let server = host::transport::unix::UnixServer::start_with(&config.socket_path, Arc::clone(&service), host::app::unix_limits(&config))?;
            tracing::info!("serving on {}", server.path.display());
        }
        Transport::Amqp => {
            // Casts a Unix-socket run accepted but did not apply still get applied.
            service.start_worker(pending);
            let server = host::transport::amqp::start(&config, Arc::clone(&service))?;
            let t = &server.topology;
            tracing::info!("serving topic {} ({} shards) on exchange {} at {}", t.topic, t.shards.len(), t.exchange, server.brokers.join(", "));
        }
    }
    host::shutdown::serve_until_terminated(&service)
}
