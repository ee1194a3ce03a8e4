//! The host's LoxiLB transport, carried by loxilb-api's client: every configured node as one cluster, and
//! each node on its own for reconciliation. A status code is data for the caller; only "no endpoint
//! answered" is an error.

use std::sync::Arc;
use std::time::Duration;

use loxilb_api::{Access, Cluster, Exchange, MissedDeletesKeeper, Node, NodeState, Observer, Reply, Retried, Retrying};

pub use loxilb_api::{Retry, BASE_PATH};

pub trait LoxiTransport: Send + Sync {
    /// One exchange; `path` is relative to `/netlox/v1`.
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String>;

    /// Each node of a LoxiLB cluster as a target of its own (reconciled one by one); empty for a
    /// transport that is a single target.
    fn nodes(&self) -> Vec<ClusterNode> {
        Vec::new()
    }

    /// Asks each node of a cluster for its version and role; `None` for a transport that is a single
    /// target (it has no nodes to survey).
    fn survey(&self) -> Option<Vec<NodeState>> {
        None
    }

    /// Hands every node's missed deletes to `keeper` each time they change (see
    /// [`loxilb_api::Cluster::keep_missed_deletes`]); `false` for a transport that is a single target.
    fn keep_missed_deletes(&self, keeper: MissedDeletesKeeper) -> bool {
        let _ = keeper;
        false
    }
}

/// What the policies reach is what the host's own probes reach (tests wrap it to stage failures), so the
/// typed API ([`loxilb_api::Loxilb`]) is offered over the capability itself.
impl Exchange for dyn LoxiTransport {
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String> {
        self.request(method, path, body).map(|(status, body)| Reply { status, body })
    }
}

/// LoxiLB's API endpoints as one cluster (every change to every node, see [`Cluster`]), retried within
/// `api_retry_deadline`.
pub struct HttpLoxi {
    client: Arc<Retrying<Cluster>>,
}

impl HttpLoxi {
    /// Plain access: no credentials, certificates checked against the system's trust store.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Self {
        HttpLoxi::with_access(endpoints, &Access { timeout, ..Access::default() })
    }

    /// Every endpoint reached with `access` (TLS, credentials, timeout).
    pub fn with_access(endpoints: Vec<String>, access: &Access) -> Self {
        let observer: Arc<dyn Observer> = Arc::new(Recorder);
        let nodes = endpoints.into_iter().map(|base| Node::with_access(base, access).with_observer(Arc::clone(&observer))).collect();
        HttpLoxi { client: Arc::new(Retrying::new(Cluster::new(nodes), Retry::NONE).with_observer(observer)) }
    }

    /// Retries transient failures (see [`Retry`]).
    pub fn with_retry(self, retry: Retry) -> Self {
        let client = Arc::into_inner(self.client).expect("configured before it is shared");
        HttpLoxi { client: Arc::new(client.with_retry(retry)) }
    }

    /// Each node's reachability and whether it missed changes.
    pub fn node_states(&self) -> Vec<NodeState> {
        self.client.inner().states()
    }

    /// Requests served.
    pub fn requests(&self) -> usize {
        self.client.requests()
    }

    /// Attempts repeated after a transient failure.
    pub fn retries(&self) -> usize {
        self.client.retries()
    }
}

impl LoxiTransport for HttpLoxi {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        self.client.exchange(method, path, body).map(|reply| (reply.status, reply.body))
    }

    fn nodes(&self) -> Vec<ClusterNode> {
        (0..self.client.inner().states().len()).map(|index| ClusterNode { client: Arc::clone(&self.client), index }).collect()
    }

    fn survey(&self) -> Option<Vec<NodeState>> {
        Some(self.client.inner().survey())
    }

    fn keep_missed_deletes(&self, keeper: MissedDeletesKeeper) -> bool {
        self.client.inner().keep_missed_deletes(keeper);
        true
    }
}

/// What reconciliation and a failover work on: LoxiLB as one target, or one node of its cluster.
pub struct Target {
    /// The node's API base URL, or "LoxiLB".
    pub label: String,
    pub transport: Arc<dyn LoxiTransport>,
    pub node: Option<Arc<ClusterNode>>,
}

/// Each node of `loxi`'s cluster as a target, or `loxi` itself when it is a single target.
pub fn targets(loxi: &Arc<dyn LoxiTransport>) -> Vec<Target> {
    let nodes = loxi.nodes();
    if nodes.is_empty() {
        return vec![Target { label: "LoxiLB".into(), transport: Arc::clone(loxi), node: None }];
    }
    nodes
        .into_iter()
        .map(|node| {
            let node = Arc::new(node);
            Target { label: node.state().base, transport: Arc::clone(&node) as Arc<dyn LoxiTransport>, node: Some(node) }
        })
        .collect()
}

/// One node of the cluster, reached directly (no retries: what fails is tried again at the next check).
pub struct ClusterNode {
    client: Arc<Retrying<Cluster>>,
    index: usize,
}

impl ClusterNode {
    pub fn state(&self) -> NodeState {
        self.client.inner().state(self.index)
    }

    /// The changes it has missed so far ([`loxilb_api::Cluster::misses`]): read before a pass lists it.
    pub fn misses(&self) -> u64 {
        self.client.inner().misses(self.index)
    }

    /// It holds the desired rules as of `misses` ([`ClusterNode::misses`] when the pass began).
    pub fn in_sync(&self, misses: u64) {
        self.client.inner().in_sync(self.index, misses);
    }

    /// It lacks rules it should hold.
    pub fn out_of_date(&self) {
        self.client.inner().out_of_date(self.index);
    }

    /// The rules deleted while it did not answer ([`loxilb_api::Cluster::missed_deletes`]).
    pub fn missed_deletes(&self) -> Vec<String> {
        self.client.inner().missed_deletes(self.index)
    }

    /// `paths` (of [`ClusterNode::missed_deletes`]) are settled on it.
    pub fn forget_missed_deletes(&self, paths: &[String]) {
        self.client.inner().forget_missed_deletes(self.index, paths);
    }

    /// Deletes it missed before a restart of the host (it is then out of date until reconciled).
    pub fn restore_missed_deletes(&self, paths: Vec<String>) {
        self.client.inner().restore_missed_deletes(self.index, paths);
    }
}

impl LoxiTransport for ClusterNode {
    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let node = self.client.inner().nodes().nth(self.index).expect("a node of the cluster");
        node.exchange(method, path, body).map(|reply| (reply.status, reply.body))
    }
}

/// The client's attempts as metrics (`loxilb_requests` by node and result) and rate-limited warnings:
/// while LoxiLB is down every liveness check and call fails, and one line a minute says so.
struct Recorder;

impl Observer for Recorder {
    fn answered(&self, node: &str, status: u16) {
        crate::metrics::record_loxilb_request(node, if status >= 500 { "http_5xx" } else { "ok" });
    }

    fn unanswered(&self, node: &str, class: &'static str, method: &str, path: &str, error: &str) {
        crate::metrics::record_loxilb_request(node, class);
        crate::warn_limited!(format!("loxilb-unanswered {node}"), "LoxiLB {node} did not answer {method} {path}: {error}");
    }

    fn retrying(&self, method: &str, path: &str, why: Retried<'_>, pause: Duration) {
        match why {
            Retried::Status(status, body) => {
                crate::warn_limited!("loxilb-retry-status", "LoxiLB answered {method} {path} with HTTP {status} ({body}); retrying in {pause:?}")
            }
            Retried::Unanswered(e) => crate::warn_limited!("loxilb-retry-unanswered", "{e}; retrying {method} {path} in {pause:?}"),
        }
    }
}
