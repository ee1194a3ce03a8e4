//! Several nodes serving as one: each request goes to the first that answers.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::node::Node;
use crate::api::{Exchange, Reply};

/// Nodes tried in order, starting from the last one that answered (so a node that is down costs one
/// timeout, not one per request).
pub struct Failover {
    nodes: Vec<Node>,
    preferred: AtomicUsize,
}

impl Failover {
    pub fn new(nodes: Vec<Node>) -> Failover {
        Failover { nodes, preferred: AtomicUsize::new(0) }
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

impl Exchange for Failover {
    /// One pass over the nodes; any HTTP answer ends it.
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.nodes.len() {
            let index = (start + i) % self.nodes.len();
            let node = &self.nodes[index];
            match node.exchange(method, path, body) {
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e) => errors.push(format!("{}: {e}", node.base())),
            }
        }
        Err(format!("no LoxiLB endpoint answered ({})", errors.join("; ")))
    }
}
