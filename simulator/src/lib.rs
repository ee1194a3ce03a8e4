//! A LoxiLB REST API simulator, for testing clients of LoxiLB where LoxiLB itself (eBPF)
//! cannot run.
//!
//! It reproduces the load-balancer and endpoint paths under `/netlox/v1` as loxilb 64045de
//! implements them (not as its swagger.yml describes them): status codes, both error
//! envelopes, the in-place update rules, and the quirks a client has to live with.
//! README.md lists what it does and does not reproduce.
//!
//! # Layout
//! * [`server`]: HTTP routing, go-openapi's request checks, LoxiLB's REST handlers, and the
//!   [`Simulator`] handle tests drive.
//! * `rules`: the LB rule table, a port of LoxiLB's core semantics (`AddLbRule` & co).
//! * `ephosts`: endpoint hosts, created by `POST /config/endpoint` or referenced by rules.
//! * [`spec`]: validation of bodies against the Swagger 2.0 `definitions`, usable on its own.
//! * `errors`: how each layer renders failures; [`ErrorStyle`] picks the LoxiLB version.
//! * `auth`: LoxiLB's manual token and user-service login ([`Auth`], off unless set).
//! * `traffic`: connections a test drives through rules ([`Flow`]), moving the endpoint counters and
//!   the connection table (`GET /config/conntrack/all`).
//! * `tls`: HTTPS in front of the server, with the test's certificates ([`TlsIdentity`]).
//!
//! ```no_run
//! use loxilb_sim::{ErrorStyle, Simulator};
//! let sim = Simulator::start(ErrorStyle::Coded)?;
//! let base = format!("{}/netlox/v1", sim.url());
//! // ... point the client under test at `base` ...
//! assert!(sim.rules().is_empty());
//! # anyhow::Ok(())
//! ```

mod auth;
mod bgp;
mod ephosts;
mod errors;
mod rules;
pub mod server;
pub mod spec;
mod tls;
mod traffic;

pub use auth::Auth;
pub use errors::ErrorStyle;
pub use server::{Fault, InProcess, RecordedRequest, Simulator};
pub use spec::{default_spec_path, SpecValidator, EMBEDDED_SPEC, EMBEDDED_SPEC_NAME};
pub use tls::TlsIdentity;
pub use traffic::Flow;
