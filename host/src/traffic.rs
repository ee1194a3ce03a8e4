//! Listener traffic over every LoxiLB node: what the statistics pass reads, and the cumulative counts the
//! host keeps because LoxiLB's connection table shows only current connections.
//!
//! Each pass reads, from each node, its rule list (`GET /config/loadbalancer/all`: per-endpoint
//! `counter` "packets:bytes", cumulative since the rule was created on that node, counting what the rule
//! sent to the endpoint) and its connection table (`GET /config/conntrack/all`, see
//! `loxilb_api::conntrack`). Traffic may land on any node of a cluster, so everything is summed over the
//! nodes:
//!
//! * `bytes_in`: the endpoint counters, summed;
//! * `bytes_out`: the reply-direction bytes of each connection, kept per connection while it is in the
//!   table and added to a running total when it leaves it;
//! * `active_connections`: the connections in the tables now, not closing or closed;
//! * `total_connections`: the distinct connections (client `ip:port` on a rule, per node) seen so far.
//!
//! Limits, all from sampling a table of current connections: a connection opened and closed between two
//! passes is never seen (it counts in `bytes_in` only); the reply bytes a connection carries after its last
//! sighting are lost; a client reusing its `ip:port` on the same rule between two passes is one
//! connection. A node that does not answer keeps its last counts (so cumulative counters do not dip while
//! it is away) and contributes no active connections. A node that lists a rule no longer (deleted, or the
//! node restarted) drops that rule's counts on that node: cumulative counters can go down then, as
//! LoxiLB's own do. The counts live in the host's memory: a host restart starts them again.

use std::collections::HashMap;

use loxilb_api::{connections, Connection, ConntrackEntry, ObservedRule, RuleKey};

/// What one node answered in a pass.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    pub rules: Vec<ObservedRule>,
    /// `None` when the rule list came and the connection table did not.
    pub conntrack: Option<Vec<ConntrackEntry>>,
}

/// Connection counters of one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_out: u64,
    pub active_connections: u64,
    pub total_connections: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.bytes_out += o.bytes_out;
        self.active_connections += o.active_connections;
        self.total_connections += o.total_connections;
    }
}

/// One rule's connections on one node.
#[derive(Debug, Default)]
struct RuleBook {
    /// Reply bytes of each connection in the table at the last sighting, by client.
    live: HashMap<String, u64>,
    active: u64,
    /// Connections that left the table, and the reply bytes they had carried.
    gone: u64,
    gone_bytes_out: u64,
}

impl RuleBook {
    fn update(&mut self, now: &[Connection]) {
        let mut live = HashMap::with_capacity(now.len());
        for c in now {
            match self.live.remove(&c.client) {
                // A counter that went back is a new connection on a reused client port.
                Some(before) if before > c.bytes_out => {
                    self.gone += 1;
                    self.gone_bytes_out += before;
                }
                _ => {}
            }
            live.insert(c.client.clone(), c.bytes_out);
        }
        self.gone += self.live.len() as u64;
        self.gone_bytes_out += self.live.values().sum::<u64>();
        self.live = live;
        self.active = now.iter().filter(|c| c.active).count() as u64;
    }

    fn traffic(&self, answering: bool) -> Traffic {
        Traffic {
            bytes_out: self.gone_bytes_out + self.live.values().sum::<u64>(),
            active_connections: if answering { self.active } else { 0 },
            total_connections: self.gone + self.live.len() as u64,
        }
    }
}

/// The cumulative counts, by node (its place in `api_endpoints`) and rule.
#[derive(Debug, Default)]
pub struct TrafficBook {
    books: HashMap<(usize, RuleKey), RuleBook>,
    /// Each node's last answer, standing in for it while it does not answer.
    last: HashMap<usize, NodeView>,
}

impl TrafficBook {
    /// One statistics pass: `views[i]` is node i's answer (`None`: it did not answer). Gives every rule
    /// an answering node lists, with endpoint counters summed over the nodes and the rule's traffic.
    pub fn pass(&mut self, views: Vec<Option<NodeView>>) -> Vec<(ObservedRule, Traffic)> {
        let mut answering = vec![false; views.len()];
        for (node, view) in views.into_iter().enumerate() {
            let Some(view) = view else { continue };
            answering[node] = true;
            self.books.retain(|(n, key), _| *n != node || view.rules.iter().any(|r| r.rule.key() == *key));
            if let Some(table) = &view.conntrack {
                for rule in &view.rules {
                    self.books.entry((node, rule.rule.key())).or_default().update(&connections(table, &rule.rule.key()));
                }
            }
            self.last.insert(node, view);
        }
        // Rules as the answering nodes list them, first node first; counters from every node known.
        let mut out: Vec<(ObservedRule, Traffic)> = Vec::new();
        let mut index: HashMap<RuleKey, usize> = HashMap::new();
        for node in (0..answering.len()).filter(|n| answering[*n]) {
            for rule in &self.last[&node].rules {
                if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(rule.rule.key()) {
                    slot.insert(out.len());
                    let mut zeroed = rule.clone();
                    zeroed.endpoints.iter_mut().for_each(|e| (e.packets, e.bytes) = (0, 0));
                    out.push((zeroed, Traffic::default()));
                }
            }
        }
        for (node, view) in &self.last {
            for rule in &view.rules {
                let key = rule.rule.key();
                let Some(&at) = index.get(&key) else { continue };
                let (sum, traffic) = &mut out[at];
                for e in &rule.endpoints {
                    if let Some(s) = sum.endpoints.iter_mut().find(|s| s.ip == e.ip && s.target_port == e.target_port) {
                        s.packets += e.packets;
                        s.bytes += e.bytes;
                    }
                }
                if let Some(book) = self.books.get(&(*node, key)) {
                    *traffic += book.traffic(answering.get(*node).copied().unwrap_or(false));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loxilb_api::{LbRule, ObservedEndpoint, ServiceArgs};

    fn rule(counters: &[(&str, u64)]) -> ObservedRule {
        ObservedRule {
            rule: LbRule {
                service: ServiceArgs { external_ip: "10.0.0.1".into(), port: 80, protocol: "tcp".into(), ..ServiceArgs::default() },
                ..LbRule::default()
            },
            endpoints: counters
                .iter()
                .map(|(ip, bytes)| ObservedEndpoint { ip: ip.to_string(), target_port: 8080, bytes: *bytes, packets: 1, ..ObservedEndpoint::default() })
                .collect(),
        }
    }

    /// A connection from `client` to 10.0.0.1:80 with `out` reply bytes, both directions.
    fn conn(client: u16, state: &str, out: u64) -> Vec<ConntrackEntry> {
        let e = |sip: &str, sport, dip: &str, dport, act: &str, bytes| ConntrackEntry {
            source_ip: sip.into(),
            source_port: sport,
            destination_ip: dip.into(),
            destination_port: dport,
            protocol: "tcp".into(),
            conntrack_state: state.into(),
            conntrack_act: act.into(),
            bytes,
            ..ConntrackEntry::default()
        };
        vec![e("192.0.2.7", client, "10.0.0.1", 80, "dnat-172.16.0.5:8080:w0", 10), e("172.16.0.5", 8080, "192.0.2.7", client, "snat-10.0.0.1:80:w0", out)]
    }

    fn view(counters: &[(&str, u64)], table: Vec<Vec<ConntrackEntry>>) -> Option<NodeView> {
        Some(NodeView { rules: vec![rule(counters)], conntrack: Some(table.concat()) })
    }

    fn totals(out: &[(ObservedRule, Traffic)]) -> (u64, Traffic) {
        assert_eq!(out.len(), 1);
        (out[0].0.endpoints.iter().map(|e| e.bytes).sum(), out[0].1)
    }

    fn traffic(bytes_out: u64, active_connections: u64, total_connections: u64) -> Traffic {
        Traffic { bytes_out, active_connections, total_connections }
    }

    #[test]
    fn nodes_are_summed_and_connections_that_leave_stay_counted() {
        let mut book = TrafficBook::default();
        let out = book.pass(vec![view(&[("172.16.0.5", 100)], vec![conn(1, "est", 500)]), view(&[("172.16.0.5", 30)], vec![conn(2, "est", 70)])]);
        assert_eq!(totals(&out), (130, traffic(570, 2, 2)));
        // Node 0's connection closes and a new one opens; node 1's grows and is closing.
        let out = book.pass(vec![view(&[("172.16.0.5", 150)], vec![conn(3, "est", 5)]), view(&[("172.16.0.5", 40)], vec![conn(2, "fini", 90)])]);
        assert_eq!(totals(&out), (190, traffic(595, 1, 3)));
    }

    #[test]
    fn a_silent_node_keeps_its_counts_and_a_reused_port_is_a_new_connection() {
        let mut book = TrafficBook::default();
        book.pass(vec![view(&[("172.16.0.5", 100)], vec![conn(1, "est", 500)]), view(&[("172.16.0.5", 30)], vec![conn(2, "est", 70)])]);
        let out = book.pass(vec![view(&[("172.16.0.5", 100)], vec![conn(1, "est", 20)]), None]);
        assert_eq!(totals(&out), (130, traffic(590, 1, 3)));
    }

    #[test]
    fn a_rule_a_node_no_longer_lists_drops_its_counts_there() {
        let mut book = TrafficBook::default();
        book.pass(vec![view(&[("172.16.0.5", 100)], vec![conn(1, "est", 500)]), view(&[("172.16.0.5", 30)], vec![conn(2, "est", 70)])]);
        let out = book.pass(vec![view(&[("172.16.0.5", 100)], vec![conn(1, "est", 500)]), Some(NodeView { rules: vec![], conntrack: Some(vec![]) })]);
        assert_eq!(totals(&out), (100, traffic(500, 1, 1)));
        assert!(book.pass(vec![None, None]).is_empty(), "no node answering, no rule listed");
    }
}
