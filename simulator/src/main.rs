//! `loxilb-sim`: serve the simulator until killed.

use std::path::PathBuf;

use clap::Parser;
use loxilb_sim::{ErrorStyle, Simulator};

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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let style = if args.legacy_errors { ErrorStyle::Legacy } else { ErrorStyle::Coded };
    let sim = Simulator::start_on(&args.listen, style, args.spec.as_deref())?;
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
