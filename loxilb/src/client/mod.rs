//! LoxiLB over HTTP: one [`Node`] per API base URL, [`Failover`] over a list of them, and [`Retrying`]
//! around either. Each node is an [`Exchange`](crate::Exchange) of its own, so a cluster's nodes can each be
//! a target (retried or not) as well as one failover group. [`Access`] says how every node is reached:
//! TLS ([`TlsFiles`]) and [`Credentials`].

mod auth;
mod failover;
mod node;
mod observe;
mod retry;
mod secret;
mod tls;

pub use auth::Credentials;
pub use failover::Failover;
pub use node::{Access, Node};
pub use observe::{Observer, Quiet, Retried};
pub use retry::{Retry, Retrying};
pub use secret::{redact_userinfo, Secret};
pub use tls::{Tls, TlsFiles};
