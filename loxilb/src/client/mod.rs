//! LoxiLB over HTTP: one [`Node`] per API base URL, a [`Cluster`] of them (every change to every node),
//! and [`Retrying`] around either. Each node is an [`Exchange`](crate::Exchange) of its own, so the host
//! can also reach one node alone (to bring it up to date).

mod cluster;
mod node;
mod observe;
mod retry;

pub use cluster::{Cluster, NodeState};
pub use node::Node;
pub use observe::{Observer, Quiet, Retried};
pub use retry::{Retry, Retrying};
