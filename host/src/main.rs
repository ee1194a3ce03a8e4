//! The `loxilb-octavia` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use host::config::{Config, Transport};
use host::runtime::bindings::policy_types::RecoveryMode;

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
    /// Serve Octavia operations with the configuration in FILE (octavia.conf, or any file with [driver_loxilb]).
    Serve {
        /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the end-to-end demonstration (built-in LoxiLB simulator unless --loxilb is given).
    Demo {
        /// A LoxiLB API base URL, e.g. http://10.0.0.2:11111, to run the same scenario against.
        #[arg(long)]
        loxilb: Option<String>,
    },
    /// Print the ID mapping (safe while the host runs).
    ShowMappings {
        /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section.
        #[arg(long)]
        config: PathBuf,
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
        /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section.
        #[arg(long)]
        config: PathBuf,
    },
    /// Rebuild the ID mapping from LoxiLB's rules (and the file, in hybrid mode) and persist it. Stop the host first.
    ForceRecovery {
        /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section.
        #[arg(long)]
        config: PathBuf,
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
    /// Run the conformance scenarios against the policy component at PATH; exits non-zero on any failure.
    CheckPolicy { path: PathBuf },
    /// Print the running host's metrics (Prometheus text format), read through its admin socket.
    Metrics {
        /// The configuration file: octavia.conf, or any file with a [driver_loxilb] section.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LOXILB_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(Config::load(&config)?),
        Command::Demo { loxilb } => host::demo::run(loxilb),
        Command::ShowMappings { config, json, lb, resource_type } => {
            let filter = host::tools::Filter { loadbalancer: lb, resource_type: resource_type.map(|t| t.name().to_string()) };
            host::tools::show_mappings(&Config::load(&config)?, json, &filter)
        }
        Command::ValidateMappings { config } => host::tools::validate_mappings(&Config::load(&config)?),
        Command::ForceRecovery { config, mode } => host::tools::force_recovery(
            &Config::load(&config)?,
            match mode {
                Mode::Storage => RecoveryMode::Storage,
                Mode::Loxilb => RecoveryMode::Loxilb,
                Mode::Hybrid => RecoveryMode::Hybrid,
            },
        ),
        Command::SwapPolicy { path, dry_run, config, admin_socket } => {
            std::process::exit(host::swap::cli_swap(&path, dry_run, config.as_deref(), admin_socket.as_deref())?)
        }
        Command::CheckPolicy { path } => std::process::exit(host::conformance::cli_check(&path)?),
        Command::Metrics { config } => {
            let socket = Config::load(&config)?.admin_socket_path;
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
    let loxilb = host::app::loxilb(&config);
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
            Ok(Ok(report)) => tracing::warn!(
                "startup recovery: {} from storage, {} from LoxiLB ({} deterministic), {} conflicts",
                report.loaded,
                report.recovered,
                report.deterministic,
                report.conflicts.len()
            ),
            Ok(Err(e)) => tracing::warn!("startup recovery from LoxiLB failed (continuing with storage): {}", host::runtime::instance::describe(&e)),
            Err(e) => anyhow::bail!("startup recovery: {e}"),
        }
    }
    let agent = host::octavia::agent::DriverAgent { status: config.status_socket.clone(), stats: config.stats_socket.clone(), get: config.get_socket.clone() };
    let sink: Arc<dyn host::octavia::status::StatusSink> = if agent.status.is_some() {
        Arc::new(host::octavia::status::AgentSink { agent: agent.clone(), attempts: 15 })
    } else {
        Arc::new(host::octavia::status::RecordingSink::default())
    };
    let (inbox, pending) = if config.enable_persistent_mapping {
        let mut path = config.mapping_storage_path.clone().into_os_string();
        path.push(".inbox");
        let (inbox, pending) = host::inbox::Inbox::open(std::path::Path::new(&path))?;
        (Some(inbox), pending)
    } else {
        (None, Vec::new())
    };
    let service = host::service::Service::with_inbox(sandbox, Some(agent.clone()), sink, config.commit_wait_timeout, inbox);
    let monitor = host::monitor::Monitor {
        service: Arc::clone(&service),
        loxilb,
        agent: Some(agent),
        stats_interval: config.stats_interval,
        reconcile_interval: config.reconcile_interval,
    };
    monitor.reconcile();
    monitor.start();
    let admin = host::swap::start_admin(&config, Arc::clone(&service))?;
    tracing::warn!("admin socket on {}", admin.path.display());
    match config.transport {
        Transport::Unix => {
            service.start_worker(pending);
            let server = host::transport::unix::UnixServer::start(&config.socket_path, Arc::clone(&service))?;
            tracing::warn!("serving on {}", server.path.display());
        }
        Transport::Amqp => {
            // Casts a Unix-socket run accepted but did not apply still get applied.
            service.start_worker(pending);
            let server = host::transport::amqp::start(&config, Arc::clone(&service))?;
            let t = &server.topology;
            tracing::warn!("serving topic {} ({} shards) on exchange {} at {}", t.topic, t.shards.len(), t.exchange, server.brokers.join(", "));
        }
    }
    loop {
        std::thread::park();
    }
}
