//! LoxiLB over HTTP: one [`Node`] per API base URL, a [`Cluster`] of them (every change to every node),
//! and [`Retrying`] around either. Each node is an [`Exchange`](crate::Exchange) of its own, so the host
//! can also reach one node alone (to bring it up to date). [`Access`] says how every node is reached:
//! TLS ([`TlsFiles`]) and [`Credentials`].

mod auth;
mod cluster;
mod node;
mod observe;
mod resolve;
mod retry;
mod secret;
mod tls;

pub use auth::Credentials;
pub use cluster::{Cluster, MissedDeletesKeeper, NodeState};
pub use node::{Access, Node, KEPT_CONNECTIONS};
pub use observe::{Observer, Quiet, Retried};
pub use retry::{Retry, Retrying};
pub use secret::{redact_userinfo, Secret};
pub use tls::{Tls, TlsFiles};
