//! The `loxilb-octavia` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

use host::config::Config;

#[derive(Parser)]
#[command(name = "loxilb-octavia", version, about = "LoxiLB provider host for OpenStack Octavia")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Octavia operations with the configuration in FILE (octavia.conf or a file with [driver_loxilb]).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the end-to-end demonstration (built-in LoxiLB simulator unless --loxilb is given).
    Demo {
        /// A LoxiLB API base URL, e.g. http://10.0.0.2:11111, to run the same scenario against.
        #[arg(long)]
        loxilb: Option<String>,
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
    }
}

fn serve(config: Config) -> Result<()> {
    let loxilb = host::app::loxilb(&config);
    let storage = host::app::storage(&config)?;
    let sandbox = host::app::sandbox(&config, loxilb, storage)?;
    let agent = host::octavia::agent::DriverAgent { status: config.status_socket.clone(), stats: config.stats_socket.clone(), get: config.get_socket.clone() };
    let sink: Arc<dyn host::octavia::status::StatusSink> = if agent.status.is_some() {
        Arc::new(host::octavia::status::AgentSink { agent: agent.clone(), attempts: 15 })
    } else {
        Arc::new(host::octavia::status::RecordingSink::default())
    };
    let service = host::service::Service::new(sandbox, Some(agent), sink, config.commit_wait_timeout);
    service.start_worker();
    let server = host::transport::unix::UnixServer::start(&config.socket_path, service)?;
    tracing::warn!("serving on {}", server.path.display());
    loop {
        std::thread::park();
    }
}
