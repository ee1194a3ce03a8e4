//! Every node of a LoxiLB cluster holds every rule, as kube-loxilb keeps them: each change goes to all
//! nodes at once; a read goes to one node.
//!
//! A change succeeds when at least one node answered and every node that answered took it (an "exists"
//! or "gone" answer counts as taken). A node that refuses it fails the change, so the caller's undo puts
//! every node back. A node that does not answer is marked **out of date**: it missed a change, and stays
//! so until the caller has brought it back to the desired rules ([`Cluster::in_sync`]); a node that
//! restarted (answering, but with its rules lost) is found by the caller comparing its rules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::node::Node;
use crate::api::{Exchange, Reply};
use crate::encode::{Intent, PROBES_PATH, RULES_PATH, VERSION_PATH};
use crate::node_info::{self, CISTATE_PATH};
use crate::outcome::classify;

pub struct Cluster {
    members: Vec<Member>,
}

struct Member {
    node: Node,
    /// Missed a change (or was never brought up to date since the host started).
    stale: AtomicBool,
    /// Its last request got an HTTP answer.
    answering: AtomicBool,
    /// What it said of itself at the last [`Cluster::survey`].
    facts: Mutex<Facts>,
}

/// A node's version and HA role, as it last told them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub version: Option<String>,
    /// The default HA instance's state (MASTER, BACKUP, FAULT, STOP, NOT_DEFINED); `None` when the node
    /// does not say (an answer that is not a cistate list).
    pub role: Option<String>,
}

/// A node as the cluster last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub base: String,
    pub answering: bool,
    pub out_of_date: bool,
    pub version: Option<String>,
    pub role: Option<String>,
}

impl NodeState {
    pub fn is_master(&self) -> bool {
        self.role.as_deref() == Some("MASTER")
    }
}

/// What a change is, from its method and path (the cluster sees only the HTTP request).
fn intent_of(method: &str, path: &str) -> Intent {
    match method {
        "GET" => Intent::Read,
        "DELETE" => Intent::Delete,
        _ if path.starts_with(PROBES_PATH) => Intent::UpsertProbe,
        _ if path.starts_with(RULES_PATH) => Intent::UpsertRule,
        // Other changes (cistate, …) have LoxiLB's plain contract: 200 and "Success".
        _ => Intent::UpsertProbe,
    }
}

impl Cluster {
    /// Nodes start out of date: what they hold is unknown until the caller compared it.
    pub fn new(nodes: Vec<Node>) -> Cluster {
        let member = |node| Member { node, stale: AtomicBool::new(true), answering: AtomicBool::new(true), facts: Mutex::default() };
        Cluster { members: nodes.into_iter().map(member).collect() }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.members.iter().map(|m| &m.node)
    }

    pub fn states(&self) -> Vec<NodeState> {
        (0..self.members.len()).map(|i| self.state(i)).collect()
    }

    /// The node at `index` as last seen (panics on an index out of range).
    pub fn state(&self, index: usize) -> NodeState {
        let m = &self.members[index];
        let facts = m.facts.lock().unwrap().clone();
        NodeState {
            base: m.node.base().to_string(),
            answering: m.answering.load(Ordering::SeqCst),
            out_of_date: m.stale.load(Ordering::SeqCst),
            version: facts.version,
            role: facts.role,
        }
    }

    /// Asks every node at once for its version and HA role (kube-loxilb checks each instance every 2 s):
    /// a node that stopped answering is known without waiting for a change to fail on it. Returns the
    /// nodes' states after it.
    pub fn survey(&self) -> Vec<NodeState> {
        std::thread::scope(|s| {
            for member in &self.members {
                s.spawn(move || {
                    let facts = match Self::ask(member, "GET", VERSION_PATH, None) {
                        Ok(reply) => Facts {
                            version: node_info::version(&reply.body).ok(),
                            role: Self::ask(member, "GET", CISTATE_PATH, None)
                                .ok()
                                .and_then(|r| node_info::roles(&r.body).ok())
                                .and_then(|roles| node_info::node_role(&roles)),
                        },
                        // What it said before it went away is no longer known to hold.
                        Err(_) => Facts::default(),
                    };
                    *member.facts.lock().unwrap() = facts;
                });
            }
        });
        self.states()
    }

    /// The node at `index` holds the desired rules now.
    pub fn in_sync(&self, index: usize) {
        if let Some(m) = self.members.get(index) {
            m.stale.store(false, Ordering::SeqCst);
        }
    }

    /// The node at `index` lacks rules it should hold (it restarted).
    pub fn out_of_date(&self, index: usize) {
        if let Some(m) = self.members.get(index) {
            m.stale.store(true, Ordering::SeqCst);
        }
    }

    /// One exchange with one node, remembering whether it answered.
    fn ask(member: &Member, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        let reply = member.node.exchange(method, path, body);
        member.answering.store(reply.is_ok(), Ordering::SeqCst);
        reply
    }

    fn read(&self, path: &str) -> Result<Reply, String> {
        // Up-to-date nodes first (a node that missed changes would answer with an old view), the MASTER
        // first among them: its endpoint states are those of the node serving the traffic.
        let mut order: Vec<&Member> = self.members.iter().collect();
        order.sort_by_key(|m| (m.stale.load(Ordering::SeqCst), m.facts.lock().unwrap().role.as_deref() != Some("MASTER")));
        let mut errors = Vec::new();
        for member in order {
            match Self::ask(member, "GET", path, None) {
                Ok(reply) => return Ok(reply),
                Err(e) => errors.push(format!("{}: {e}", member.node.base())),
            }
        }
        Err(format!("no LoxiLB node answered ({})", errors.join("; ")))
    }

    fn change(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        let replies: Vec<Result<Reply, String>> = if self.members.len() == 1 {
            vec![Self::ask(&self.members[0], method, path, body)]
        } else {
            std::thread::scope(|s| {
                let asked: Vec<_> = self.members.iter().map(|m| s.spawn(move || Self::ask(m, method, path, body))).collect();
                asked.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the request thread panicked".into()))).collect()
            })
        };
        let intent = intent_of(method, path);
        let mut taken = None;
        let mut errors = Vec::new();
        for (member, reply) in self.members.iter().zip(replies) {
            match reply {
                Ok(reply) if !classify(intent, reply.status, &reply.body).is_ok() => return Ok(reply),
                Ok(reply) => {
                    taken.get_or_insert(reply);
                }
                Err(e) => {
                    member.stale.store(true, Ordering::SeqCst);
                    errors.push(format!("{}: {e}", member.node.base()));
                }
            }
        }
        taken.ok_or_else(|| format!("no LoxiLB node answered ({})", errors.join("; ")))
    }
}

impl Exchange for Cluster {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        if method == "GET" {
            self.read(path)
        } else {
            self.change(method, path, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_known_by_its_path() {
        assert_eq!(intent_of("POST", "/config/loadbalancer"), Intent::UpsertRule);
        assert_eq!(intent_of("POST", "/config/endpoint"), Intent::UpsertProbe);
        assert_eq!(intent_of("DELETE", "/config/loadbalancer/externalipaddress/10.0.0.1/port/80/protocol/tcp"), Intent::Delete);
        assert_eq!(intent_of("GET", "/config/loadbalancer/all"), Intent::Read);
    }
}
