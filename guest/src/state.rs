//! The ID mapping cache: Octavia id ⇄ LoxiLB key in both directions, plus each resource's metadata.
//!
//! The metadata keeps the Octavia object itself (the fields translation needs), so the mapping alone is
//! enough to re-render every rule: after a restart, after a LoxiLB restart, and in a freshly swapped
//! policy. Listener metadata also keeps the rule last programmed for it, so an update can be diffed
//! against what LoxiLB holds without asking LoxiLB.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::translate::Rendered;
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Loadbalancer,
    Listener,
    Pool,
    Member,
    Healthmonitor,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Loadbalancer => "loadbalancer",
            ResourceType::Listener => "listener",
            ResourceType::Pool => "pool",
            ResourceType::Member => "member",
            ResourceType::Healthmonitor => "healthmonitor",
        }
    }
}

/// A listener as Octavia last described it, and the rule last programmed for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenerState {
    pub listener: Listener,
    pub programmed: Option<Rendered>,
}

/// The Octavia object behind a mapping entry. Parents do not hold their children: an LB's listeners and
/// pools, and a pool's members and monitor, are entries of their own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", content = "attributes", rename_all = "lowercase")]
pub enum Object {
    Loadbalancer(Loadbalancer),
    Listener(ListenerState),
    Pool(Pool),
    Member(Member),
    Healthmonitor(HealthMonitor),
}

impl Object {
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Object::Loadbalancer(_) => ResourceType::Loadbalancer,
            Object::Listener(_) => ResourceType::Listener,
            Object::Pool(_) => ResourceType::Pool,
            Object::Member(_) => ResourceType::Member,
            Object::Healthmonitor(_) => ResourceType::Healthmonitor,
        }
    }

    /// The Octavia id of the object's parent in the mapping tree.
    pub fn parent(&self) -> Option<&str> {
        match self {
            Object::Loadbalancer(_) => None,
            Object::Listener(l) => Some(&l.listener.loadbalancer_id),
            Object::Pool(p) => Some(&p.loadbalancer_id),
            Object::Member(m) => Some(&m.pool_id),
            Object::Healthmonitor(h) => Some(&h.pool_id),
        }
    }
}

/// One mapping entry: the seed's `octavia_to_loxilb` value plus its `resource_metadata`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub external_ip: String,
    pub port: u16,
    pub protocol: String,
    pub created_at: String,
    pub object: Object,
}

impl Entry {
    pub fn resource_type(&self) -> ResourceType {
        self.object.resource_type()
    }
}

/// The whole mapping, with the indices translation needs.
#[derive(Default, Clone, Debug)]
pub struct State {
    /// Octavia id → entry (the seed's `octavia_to_loxilb` and `resource_metadata`).
    pub entries: HashMap<String, Entry>,
    /// LoxiLB key → Octavia id (the seed's `loxilb_to_octavia`).
    pub reverse: HashMap<String, String>,
    /// Parent id → child ids, ordered so rules render deterministically.
    pub children: HashMap<String, BTreeSet<String>>,
}

/// One change to the mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Put { id: String, entry: Entry },
    Remove { id: String },
}

impl State {
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Put { id, entry } => self.put(id, entry),
            Change::Remove { id } => self.remove(&id),
        }
    }

    pub fn put(&mut self, id: String, entry: Entry) {
        self.remove(&id);
        if let Some(parent) = entry.object.parent() {
            self.children.entry(parent.to_string()).or_default().insert(id.clone());
        }
        self.reverse.insert(entry.key.clone(), id.clone());
        self.entries.insert(id, entry);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.entries.remove(id) else { return };
        if self.reverse.get(&old.key).is_some_and(|owner| owner == id) {
            self.reverse.remove(&old.key);
        }
        if let Some(parent) = old.object.parent() {
            if let Some(set) = self.children.get_mut(parent) {
                set.remove(id);
                if set.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
    }

    /// Consistency problems: both directions disagree, keys malformed, metadata inconsistent.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (id, entry) in &self.entries {
            match self.reverse.get(&entry.key) {
                Some(owner) if owner == id => {}
                Some(owner) => problems.push(format!("{id}: key {} maps back to {owner}", entry.key)),
                None => problems.push(format!("{id}: key {} missing from loxilb_to_octavia", entry.key)),
            }
            if !crate::keys::key_is_well_formed(entry.resource_type().as_str(), &entry.key) {
                problems.push(format!("{id}: malformed {} key {:?}", entry.resource_type().as_str(), entry.key));
            }
            if let Some(parent) = entry.object.parent() {
                if !self.entries.contains_key(parent) {
                    problems.push(format!("{id}: parent {parent} has no mapping"));
                }
            }
        }
        for (key, id) in &self.reverse {
            if self.entries.get(id).is_none_or(|e| &e.key != key) {
                problems.push(format!("{key}: maps to {id}, which does not map back"));
            }
        }
        problems.sort();
        problems
    }
}
