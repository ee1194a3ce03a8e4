//! Over AMQP a host's mapping of the load balancers other hosts serve is as old as its last look at
//! them (`served.rs`): one deleted through another host since still holds its VIP here, and this host
//! reads it back only once it consumes its shard. Any host answers the provider's validation, and the
//! policy refuses a VIP another mapped load balancer holds. So before such a refusal stands, the holders
//! this host does not act for are read back from Octavia, and those Octavia no longer has are forgotten
//! here (their rules were the serving host's to remove). Octavia not answering forgets nothing.

use crate::mapping::Mapping;
use crate::octavia::agent::DriverAgent;
use crate::runtime::bindings::mapping::{MappingChange, ResourceType};
use crate::runtime::bindings::octavia::{LoadbalancerAction, Operation};
use crate::served::Served;
use crate::vips::canonical;

/// The VIPs an operation may be refused for: a created load balancer's, or the load balancer's a
/// listener goes on.
pub fn vips_of(op: &Operation, mapping: &Mapping) -> Vec<String> {
    match op {
        Operation::Loadbalancer((LoadbalancerAction::Create, lb)) => crate::vips::of(lb),
        Operation::Listener((_, listener)) => mapping.get(&listener.loadbalancer_id).map(|lb| vec![lb.external_ip]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The mapped load balancers holding one of `vips` that this host does not act for and Octavia no longer
/// has (asked through its get socket; one it cannot be asked about is not among them).
pub fn gone(mapping: &Mapping, served: &Served, agent: &DriverAgent, vips: &[String]) -> Vec<String> {
    let wanted: std::collections::HashSet<String> = vips.iter().map(|v| canonical(v)).collect();
    let holds = |ip: &str| wanted.contains(&canonical(ip));
    mapping
        .ids(ResourceType::Loadbalancer)
        .into_iter()
        .filter(|id| !served.serves(id) && mapping.get(id).is_some_and(|e| holds(&e.external_ip)))
        .filter(|id| match agent.get("loadbalancers", id) {
            Ok(found) => found.is_none(),
            Err(e) => {
                tracing::debug!("load balancer {id} holds a VIP asked for; Octavia cannot say whether it still has it: {e:#}");
                false
            }
        })
        .collect()
}

/// Forgets load balancers `gone` found, with everything under them; the caller holds the policy, as
/// for any change to the mapping.
pub fn forget(mapping: &Mapping, gone: &[String]) {
    for id in gone {
        let mut tree = vec![id.clone()];
        let mut next = 0;
        while next < tree.len() {
            tree.extend(mapping.children(&tree[next]));
            next += 1;
        }
        tracing::warn!("load balancer {id}, another host's, is gone from Octavia: forgotten here, so its VIP may be given again");
        if let Err(e) = mapping.apply(tree.into_iter().rev().map(MappingChange::Remove).collect()) {
            tracing::error!("could not journal forgetting load balancer {id} (kept in memory): {e}");
        }
    }
}
