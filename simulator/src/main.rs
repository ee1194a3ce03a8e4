//! `loxilb-sim`: serve the simulator until killed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use loxilb_sim::{Auth, ErrorStyle, Simulator, TlsIdentity};

#[derive(Parser)]
#[command(version, about = "Simulated LoxiLB REST API (load balancers and endpoints)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:11111")]
    listen: String,
    /// Answer handler errors like loxilb <= v0.9.8.4 (HTTP 200 with {"result": "<error>"}).
    #[arg(long)]
    legacy_errors: bool,
    /// LoxiLB swagger.yml; default: $LOXILB_SWAGGER, else the copy compiled in (loxilb 64045de).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-cert: require client certificates signed by this PEM CA.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Require LoxiLB's manual token (loxilb --manualtoken).
    #[arg(long, conflicts_with = "user")]
    manual_token: Option<String>,
    /// A user of LoxiLB's user service, NAME:PASSWORD (loxilb --userservice); repeatable.
    #[arg(long)]
    user: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let style = if args.legacy_errors { ErrorStyle::Legacy } else { ErrorStyle::Coded };
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| p.display().to_string());
    let sim = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let identity = TlsIdentity { cert_pem: read(cert)?, key_pem: read(key)?, client_ca_pem: args.tls_client_ca.as_ref().map(read).transpose()? };
            Simulator::start_tls_on(&args.listen, style, args.spec.as_deref(), &identity)?
        }
        _ => Simulator::start_on(&args.listen, style, args.spec.as_deref())?,
    };
    if let Some(token) = args.manual_token {
        sim.set_auth(Auth::ManualToken(token));
    } else if !args.user.is_empty() {
        let users = args
            .user
            .iter()
            .map(|u| u.split_once(':').map(|(n, p)| (n.to_string(), p.to_string())).context("--user takes NAME:PASSWORD"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        sim.set_auth(Auth::Users(users));
    }
    match sim.spec_source() {
        Some(p) => eprintln!("loxilb-sim: validating bodies against {}", p.display()),
        None => eprintln!("loxilb-sim: built-in body checks only"),
    }
    eprintln!("loxilb-sim: API base {}/netlox/v1", sim.url());
    println!("{}", sim.url());
    loop {
        std::thread::park();
    }
}
