//! Every node of a LoxiLB cluster holds every rule, as kube-loxilb keeps them: each change goes to all
//! nodes at once; a read goes to one node.
//!
//! A change succeeds when at least one node answered and every node that answered took it (an "exists"
//! or "gone" answer counts as taken). A node that refuses it fails the change, so the caller's undo puts
//! every node back. A node that does not answer is marked **out of date**: it missed a change, and stays
//! so until the caller has brought it back to the desired rules ([`Cluster::in_sync`]); a node that
//! restarted (answering, but with its rules lost) is found by the caller comparing its rules.
//!
//! Being out of date is a count of misses, not a flag: a pass that brings a node up to date reads the
//! count before it lists the node ([`Cluster::misses`]) and settles only those ([`Cluster::in_sync`]), so a
//! change the node misses while the pass runs keeps it out of date.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::node::Node;
use crate::api::{Exchange, Reply};
use crate::encode::{Intent, PROBES_PATH, RULES_PATH, VERSION_PATH};
use crate::node_info::{self, CISTATE_PATH};
use crate::outcome::classify;

pub struct Cluster {
    members: Vec<Arc<Member>>,
    /// Ask the other nodes of a change while the caller asks the first; none with one node.
    askers: Option<Askers>,
    /// Told every node's missed deletes whenever a node's set changes (see [`Cluster::keep_missed_deletes`]).
    keeper: Mutex<Option<MissedDeletesKeeper>>,
}

/// Where the missed deletes go each time they change: every node's base URL and rule paths.
pub type MissedDeletesKeeper = Box<dyn Fn(&[(String, Vec<String>)]) + Send + Sync>;

/// How many changes may reach the other nodes at once (the host applies up to eight at a time).
const ASKERS_PER_NODE: usize = 8;

/// Threads kept for asking nodes: a change to a cluster started a thread per node, as many per second
/// as changes, each costing more than the request it carried.
struct Askers {
    jobs: Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Askers {
    fn start(threads: usize) -> Askers {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue: Arc<Mutex<Receiver<Job>>> = Arc::clone(&queue);
            let spawned = std::thread::Builder::new().name(format!("loxilb-ask-{n}")).spawn(move || loop {
                let job = queue.lock().unwrap().recv();
                match job {
                    Ok(job) => job(),
                    // The cluster is gone.
                    Err(_) => return,
                }
            });
            // Without a thread the jobs wait for the others; with none at all `run` asks in place.
            if spawned.is_err() && n == 0 {
                return Askers { jobs: channel().0 };
            }
        }
        Askers { jobs }
    }

    /// Runs `job` on an asker, or here when none is left.
    fn run(&self, job: Job) {
        if let Err(unsent) = self.jobs.send(job) {
            (unsent.0)();
        }
    }
}

struct Member {
    node: Node,
    /// Changes it missed, counting one for the start of the host (what it holds is unknown until compared).
    misses: AtomicU64,
    /// `misses` as of the start of the last pass that brought it to the desired rules: it is out of date
    /// while it missed more than that.
    settled: AtomicU64,
    /// Its last request got an HTTP answer.
    answering: AtomicBool,
    /// What it said of itself at the last [`Cluster::survey`].
    facts: Mutex<Facts>,
    /// Rules deleted while it did not answer, as [`crate::encode::rule_path`] names them: a node cut off
    /// keeps its rules, and those would outlive their load balancers there (see [`Cluster::missed_deletes`]).
    missed_deletes: Mutex<BTreeSet<String>>,
}

impl Member {
    fn missed(&self) {
        self.misses.fetch_add(1, Ordering::SeqCst);
    }

    fn out_of_date(&self) -> bool {
        self.misses.load(Ordering::SeqCst) > self.settled.load(Ordering::SeqCst)
    }
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

/// The rule a DELETE path names, as [`crate::encode::rule_path`] writes it (the path without its BGP flag).
fn rule_of(delete_path: &str) -> String {
    delete_path.split_once("&bgp=").map_or(delete_path, |(path, _)| path).to_string()
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
        let member = |node| {
            Arc::new(Member {
                node,
                misses: AtomicU64::new(1),
                settled: AtomicU64::new(0),
                answering: AtomicBool::new(true),
                facts: Mutex::default(),
                missed_deletes: Mutex::default(),
            })
        };
        let members: Vec<Arc<Member>> = nodes.into_iter().map(member).collect();
        let askers = (members.len() > 1).then(|| Askers::start((members.len() - 1) * ASKERS_PER_NODE));
        Cluster { members, askers, keeper: Mutex::new(None) }
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
            out_of_date: m.out_of_date(),
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

    /// How many changes the node at `index` has missed: read by a pass before it lists the node, and
    /// handed to [`Cluster::in_sync`] once the pass brought the node to the desired rules.
    pub fn misses(&self, index: usize) -> u64 {
        self.members.get(index).map_or(0, |m| m.misses.load(Ordering::SeqCst))
    }

    /// The node at `index` holds the desired rules as of its `misses` count then: it is up to date unless
    /// it missed a change since (while the pass ran).
    pub fn in_sync(&self, index: usize, misses: u64) {
        if let Some(m) = self.members.get(index) {
            m.settled.fetch_max(misses, Ordering::SeqCst);
        }
    }

    /// The rules deleted while the node at `index` did not answer, as [`crate::encode::rule_path`] names
    /// them: whoever brings the node up to date deletes those it still holds and nothing wants, then
    /// [`Cluster::forget_missed_deletes`] them.
    pub fn missed_deletes(&self, index: usize) -> Vec<String> {
        self.members.get(index).map(|m| m.missed_deletes.lock().unwrap().iter().cloned().collect()).unwrap_or_default()
    }

    /// `paths` are settled on the node at `index`: deleted there, or wanted again.
    pub fn forget_missed_deletes(&self, index: usize, paths: &[String]) {
        if let Some(m) = self.members.get(index) {
            let mut changed = false;
            {
                let mut missed = m.missed_deletes.lock().unwrap();
                for path in paths {
                    changed |= missed.remove(path);
                }
            }
            if changed {
                self.missed_deletes_changed();
            }
        }
    }

    /// Deletes the node at `index` missed before the caller's restart (what a [`MissedDeletesKeeper`] was given).
    pub fn restore_missed_deletes(&self, index: usize, paths: impl IntoIterator<Item = String>) {
        if let Some(m) = self.members.get(index) {
            m.missed_deletes.lock().unwrap().extend(paths);
            m.missed();
        }
    }

    /// Hands every node's missed deletes to `keeper` each time they change, so that they can outlive the
    /// process (a node cut off keeps the rules; forgotten at a restart, they would outlive their load
    /// balancers there). Calls are in the order of the changes, one at a time, each with the state after
    /// its change.
    pub fn keep_missed_deletes(&self, keeper: MissedDeletesKeeper) {
        *self.keeper.lock().unwrap() = Some(keeper);
    }

    fn missed_deletes_changed(&self) {
        let keeper = self.keeper.lock().unwrap();
        if let Some(keep) = keeper.as_ref() {
            let all: Vec<(String, Vec<String>)> =
                self.members.iter().map(|m| (m.node.base().to_string(), m.missed_deletes.lock().unwrap().iter().cloned().collect())).collect();
            keep(&all);
        }
    }

    /// The node at `index` lacks rules it should hold (it restarted).
    pub fn out_of_date(&self, index: usize) {
        if let Some(m) = self.members.get(index) {
            m.missed();
        }
    }

    /// Every node's answer to a change, in the members' order: the first asked here, the others at once
    /// by the askers.
    fn ask_all(&self, method: &str, path: &str, body: Option<&str>) -> Vec<Result<Reply, String>> {
        let Some(askers) = &self.askers else {
            return self.members.iter().map(|m| Self::ask(m, method, path, body)).collect();
        };
        let (answers, answered) = channel();
        for (i, member) in self.members.iter().enumerate().skip(1) {
            let (member, answers) = (Arc::clone(member), answers.clone());
            let (method, path, body) = (method.to_string(), path.to_string(), body.map(str::to_string));
            askers.run(Box::new(move || {
                let _ = answers.send((i, Self::ask(&member, &method, &path, body.as_deref())));
            }));
        }
        drop(answers);
        let mut replies: Vec<Result<Reply, String>> = vec![Self::ask(&self.members[0], method, path, body)];
        replies.extend((1..self.members.len()).map(|_| Err("the request thread panicked".to_string())));
        // An asker that panicked drops its sender unsent: its node keeps the error above.
        for (i, reply) in answered {
            replies[i] = reply;
        }
        replies
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
        let mut order: Vec<&Member> = self.members.iter().map(|m| &**m).collect();
        order.sort_by_key(|m| (m.out_of_date(), m.facts.lock().unwrap().role.as_deref() != Some("MASTER")));
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
        let replies = self.ask_all(method, path, body);
        let intent = intent_of(method, path);
        let mut taken = None;
        let mut errors = Vec::new();
        let deleted_rule = (intent == Intent::Delete && path.starts_with(RULES_PATH)).then(|| rule_of(path));
        let mut missed_changed = false;
        let mut outcome = None;
        for (member, reply) in self.members.iter().zip(replies) {
            match reply {
                Ok(reply) if !classify(intent, reply.status, &reply.body).is_ok() => {
                    outcome = Some(Ok(reply));
                    break;
                }
                Ok(reply) => {
                    if let Some(rule) = &deleted_rule {
                        missed_changed |= member.missed_deletes.lock().unwrap().remove(rule);
                    }
                    taken.get_or_insert(reply);
                }
                Err(e) => {
                    member.missed();
                    if let Some(rule) = &deleted_rule {
                        missed_changed |= member.missed_deletes.lock().unwrap().insert(rule.clone());
                    }
                    errors.push(format!("{}: {e}", member.node.base()));
                }
            }
        }
        if missed_changed {
            self.missed_deletes_changed();
        }
        outcome.unwrap_or_else(|| taken.ok_or_else(|| format!("no LoxiLB node answered ({})", errors.join("; "))))
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

    /// What runs `jobs` jobs: the thread of each, by id and name.
    fn run_jobs(askers: &Askers, jobs: usize) -> Vec<(std::thread::ThreadId, Option<String>)> {
        let (done, finished) = channel();
        for _ in 0..jobs {
            let done = done.clone();
            askers.run(Box::new(move || {
                let me = std::thread::current();
                let _ = done.send((me.id(), me.name().map(str::to_string)));
            }));
        }
        drop(done);
        finished.iter().collect()
    }

    #[test]
    fn the_other_nodes_are_asked_from_kept_threads_not_one_started_per_change() {
        let askers = Askers::start(2);
        let ran = run_jobs(&askers, 200);
        assert_eq!(ran.len(), 200);
        let threads: std::collections::HashSet<_> = ran.iter().map(|(id, _)| *id).collect();
        assert!(threads.len() <= 2, "200 jobs ran on {} threads", threads.len());
        assert!(ran.iter().all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("loxilb-ask-"))));
    }

    #[test]
    fn without_askers_a_job_runs_in_place() {
        let askers = Askers { jobs: channel().0 };
        let ran = run_jobs(&askers, 3);
        assert!(ran.iter().all(|(id, _)| *id == std::thread::current().id()));
    }
}
