//! Operator tools over the mapping: `show-mappings`, `validate-mappings`, `force-recovery`.
//!
//! The read-only tools work on a copy of the mapping files, so they are safe while the host runs.

use std::sync::Arc;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::config::Config;
use crate::execute::RecoveryMode;
use crate::loxilb::LoxiTransport;
use crate::runtime::bindings::mapping::MappingEntry;
use crate::storage::{read_copy, MappingStore};

/// LoxiLB is off limits for read-only tools.
struct NoLoxi;

impl LoxiTransport for NoLoxi {
    fn request(&self, method: &str, path: &str, _: Option<&str>) -> Result<(u16, String), String> {
        Err(format!("read-only tool: {method} {path} not sent"))
    }
}

/// A sandbox over a copy of the mapping, with LoxiLB out of reach. A mapping that is not there at all is
/// an error, not an empty mapping: the tools would otherwise report "0 mappings" for a wrong path.
pub fn read_only_sandbox(config: &Config) -> Result<crate::runtime::instance::Sandbox> {
    if !config.enable_persistent_mapping {
        bail!("enable_persistent_mapping is false: this configuration keeps no mapping on disk to read");
    }
    if !crate::storage::mapping_exists(&config.mapping_storage_path).map_err(anyhow::Error::msg)? {
        bail!(
            "no mapping at {}: neither the snapshot nor a journal segment or backup of it exists (is mapping_storage_path right, and has a host run with it?)",
            config.mapping_storage_path.display()
        );
    }
    let storage: Arc<dyn MappingStore> = Arc::new(read_copy(&config.mapping_storage_path).map_err(anyhow::Error::msg)?);
    crate::app::sandbox(config, Arc::new(NoLoxi), storage)
}

fn mappings(config: &Config) -> Result<Vec<MappingEntry>> {
    let sandbox = read_only_sandbox(config)?;
    for damage in sandbox.storage().damage() {
        eprintln!("warning: the mapping below may have lost changes: {damage}");
    }
    sandbox.mappings().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Which mappings `show-mappings` prints.
#[derive(Default)]
pub struct Filter {
    /// A load balancer's id: it and everything under it (the entries on its VIP, which its key is).
    pub loadbalancer: Option<String>,
    /// A resource type's seed name (`loadbalancer`, `listener`, `pool`, `member`, `healthmonitor`).
    pub resource_type: Option<String>,
}

/// The entries `filter` selects; naming a load balancer the mapping lacks is an error.
pub fn select(entries: Vec<MappingEntry>, filter: &Filter) -> Result<Vec<MappingEntry>> {
    let vip = match &filter.loadbalancer {
        Some(id) => Some(
            entries
                .iter()
                .find(|e| &e.octavia_id == id && crate::runtime::resource_type_name(e.resource_type) == "loadbalancer")
                .map(|e| e.loxilb_key.clone())
                .ok_or_else(|| anyhow::anyhow!("load balancer {id} is not in the mapping"))?,
        ),
        None => None,
    };
    Ok(entries
        .into_iter()
        .filter(|e| vip.as_ref().is_none_or(|vip| &e.external_ip == vip))
        .filter(|e| filter.resource_type.as_deref().is_none_or(|t| crate::runtime::resource_type_name(e.resource_type) == t))
        .collect())
}

pub fn show_mappings(config: &Config, json: bool, filter: &Filter) -> Result<()> {
    let entries = select(mappings(config)?, filter)?;
    if json {
        let rows: Vec<Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({"octavia_id": e.octavia_id, "loxilb_key": e.loxilb_key, "resource_type": crate::runtime::resource_type_name(e.resource_type),
                                   "external_ip": e.external_ip, "port": e.port, "protocol": e.protocol, "created_at": e.created_at})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<14} {:<40} LOXILB KEY", "TYPE", "OCTAVIA ID");
        for e in &entries {
            println!("{:<14} {:<40} {}", crate::runtime::resource_type_name(e.resource_type), e.octavia_id, e.loxilb_key);
        }
        println!("{} mappings in {}", entries.len(), config.mapping_storage_path.display());
    }
    Ok(())
}

/// Problems in a mapping: both directions must agree, every entry needs metadata, keys must parse.
pub fn problems(entries: &[MappingEntry], snapshot: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut owners: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for e in entries {
        if let Some(other) = owners.insert(&e.loxilb_key, &e.octavia_id) {
            out.push(format!("key {} maps back to both {other} and {}", e.loxilb_key, e.octavia_id));
        }
        if !key_parses(crate::runtime::resource_type_name(e.resource_type), &e.loxilb_key) {
            out.push(format!("{}: malformed {} key {:?}", e.octavia_id, crate::runtime::resource_type_name(e.resource_type), e.loxilb_key));
        }
    }
    // A file of format 1.0 keys entries its own way (a listener's key shared with its load balancer, null
    // for monitors): its maps are what the policy migrates, not what it serves, so only the entries count.
    let snapshot = snapshot.filter(|snap| snap.get("version").and_then(Value::as_str) != Some("1.0"));
    if let Some(snap) = snapshot {
        let forward = snap.get("octavia_to_loxilb").and_then(Value::as_object);
        let reverse = snap.get("loxilb_to_octavia").and_then(Value::as_object);
        let metadata = snap.get("resource_metadata").and_then(Value::as_object);
        match (forward, reverse, metadata) {
            (Some(f), Some(r), Some(m)) => {
                for (id, key) in f {
                    let key = key.as_str().unwrap_or_default();
                    if r.get(key).and_then(Value::as_str) != Some(id.as_str()) {
                        out.push(format!("snapshot: {id} → {key}, but loxilb_to_octavia[{key}] is {:?}", r.get(key)));
                    }
                    if !m.contains_key(id) {
                        out.push(format!("snapshot: {id} has no resource_metadata"));
                    }
                }
                for (key, id) in r {
                    if f.get(id.as_str().unwrap_or_default()).and_then(Value::as_str) != Some(key.as_str()) {
                        out.push(format!("snapshot: loxilb_to_octavia[{key}] = {id}, which does not map back"));
                    }
                }
                // Snapshots of earlier releases carry a `children` index, which their policies read.
                if let Some(children) = snap.get("children").and_then(Value::as_object) {
                    children_problems(children, m, &mut out);
                }
            }
            _ => out.push("snapshot: octavia_to_loxilb, loxilb_to_octavia or resource_metadata is missing".into()),
        }
    }
    out.sort();
    out
}

/// The snapshot's `children` index against each entry's `parent`, both ways.
fn children_problems(children: &serde_json::Map<String, Value>, metadata: &serde_json::Map<String, Value>, out: &mut Vec<String>) {
    let parent_of = |id: &str| metadata.get(id).and_then(|m| m.get("parent")).and_then(Value::as_str);
    for id in metadata.keys() {
        let Some(parent) = parent_of(id) else { continue };
        let listed = children.get(parent).and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c.as_str() == Some(id.as_str())));
        if !listed {
            out.push(format!("snapshot: {id} is under {parent}, but children[{parent}] does not list it"));
        }
    }
    for (parent, listed) in children {
        for child in listed.as_array().into_iter().flatten() {
            let child = child.as_str().unwrap_or_default();
            if parent_of(child) != Some(parent.as_str()) {
                out.push(format!("snapshot: children[{parent}] lists {child}, which is not under it"));
            }
        }
    }
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// The key scheme of README "ID mapping".
pub fn key_parses(resource_type: &str, key: &str) -> bool {
    let service = |k: &str| {
        k.rsplit_once('/')
            .and_then(|(addr, proto)| addr.rsplit_once(':').map(|(ip, port)| is_ip(ip) && port.parse::<u16>().is_ok() && !proto.is_empty()))
            .unwrap_or(false)
    };
    let pool = |k: &str| k.split_once("/pool-").is_some_and(|(vip, id)| is_ip(vip) && !id.is_empty());
    match resource_type {
        "loadbalancer" => is_ip(key),
        "listener" => service(key),
        "pool" => pool(key) && !key.split_once("/pool-").unwrap().1.contains('/'),
        "healthmonitor" => key.strip_suffix("/monitor").is_some_and(pool),
        "member" => {
            key.rsplit_once('/').is_some_and(|(p, ep)| pool(p) && ep.rsplit_once(':').is_some_and(|(ip, port)| is_ip(ip) && port.parse::<u16>().is_ok()))
        }
        _ => false,
    }
}

pub fn validate_mappings(config: &Config) -> Result<()> {
    let (count, problems) = mapping_problems(config)?;
    for p in &problems {
        println!("problem: {p}");
    }
    if !problems.is_empty() {
        bail!("{} problems in {} mappings", problems.len(), count);
    }
    println!("{count} mappings consistent");
    Ok(())
}

/// What `validate-mappings` checks: the number of mappings, and every problem found.
pub fn mapping_problems(config: &Config) -> Result<(usize, Vec<String>)> {
    let mut sandbox = read_only_sandbox(config)?;
    let entries = sandbox.mappings().map_err(|e| anyhow::anyhow!("{e}"))?;
    let snapshot = match sandbox.storage().read_snapshot().map_err(anyhow::Error::msg)? {
        Some(bytes) => Some(serde_json::from_slice::<Value>(&bytes)?),
        None => None,
    };
    let mut problems = problems(&entries, snapshot.as_ref());
    // A damaged journal still loads what is whole, so the rest can agree with itself: it is lost changes.
    problems.extend(sandbox.storage().damage().into_iter().map(|d| format!("journal: {d}")));
    // The policy decodes the Octavia objects stored with each mapping only when it needs them; rendering
    // every rule needs nearly all of them. An object it cannot decode stops it (the log names the entry).
    if let Err(e) = sandbox.desired_rules() {
        problems.push(format!("the policy cannot render the mapping's rules ({e}); its log above names the entry it could not decode"));
    }
    Ok((entries.len(), problems))
}

/// Rebuilds the mapping from LoxiLB (and the file, in hybrid mode) and persists it. The host must not
/// be running on the same files.
pub fn force_recovery(config: &Config, mode: RecoveryMode) -> Result<()> {
    if std::os::unix::net::UnixStream::connect(&config.admin_socket_path).is_ok() {
        bail!("a host is running (its admin socket {} answers): stop it first", config.admin_socket_path.display());
    }
    // A host serving the same mapping under another admin socket is caught by the mapping's lock.
    let _lock = crate::app::lock_state(config)?;
    let storage = crate::app::storage(config)?;
    let mut sandbox = crate::app::sandbox(config, crate::app::loxilb(config)?, Arc::clone(&storage))?;
    let report = sandbox.recover(mode).map_err(|e| anyhow::anyhow!("{e}"))?.map_err(anyhow::Error::msg)?;
    storage.sync().map_err(anyhow::Error::msg)?;
    println!(
        "recovered {} mappings ({} with deterministic ids); {} loaded from storage; {} conflicts",
        report.recovered,
        report.deterministic,
        report.loaded,
        report.conflicts.len()
    );
    for c in &report.conflicts {
        println!("conflict: {c}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_keys_parse() {
        assert!(key_parses("listener", "fd00::1:80/tcp"));
        assert!(key_parses("member", "10.0.0.1/pool-p1/fd00::5:8080"));
        assert!(key_parses("healthmonitor", "10.0.0.1/pool-p1/monitor"));
        assert!(!key_parses("pool", "10.0.0.1/pool-p1/monitor"));
        assert!(!key_parses("listener", "10.0.0.1:80"));
    }

    #[test]
    fn disagreeing_directions_are_problems() {
        let snap = serde_json::json!({"octavia_to_loxilb": {"a": "10.0.0.1"}, "loxilb_to_octavia": {"10.0.0.1": "b"}, "resource_metadata": {}});
        let p = problems(&[], Some(&snap));
        assert!(p.iter().any(|p| p.contains("does not map back")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("no resource_metadata")), "{p:?}");
    }

    #[test]
    fn a_children_index_that_disagrees_with_the_parents_is_a_problem() {
        let snap = |children: Value| {
            serde_json::json!({"octavia_to_loxilb": {"m1": "k1", "m2": "k2", "p": "kp"}, "loxilb_to_octavia": {"k1": "m1", "k2": "m2", "kp": "p"},
                "children": children,
                "resource_metadata": {"m1": {"parent": "p"}, "m2": {"parent": "p"}, "p": {}}})
        };
        assert!(problems(&[], Some(&snap(serde_json::json!({"p": ["m1", "m2"]})))).is_empty());
        assert_eq!(
            problems(&[], Some(&snap(serde_json::json!({"p": ["m1", "p"]})))),
            ["snapshot: children[p] lists p, which is not under it", "snapshot: m2 is under p, but children[p] does not list it"]
        );
    }
}
