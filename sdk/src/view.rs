//! The mapping as a policy reads it, and the host's log and clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::mapping::{MappingChange, MappingEntry, ResourceType};

/// Where a policy reads the mapping from.
pub trait Source {
    fn get(&self, id: &str) -> Option<MappingEntry>;
    /// The Octavia id a LoxiLB key belongs to.
    fn owner(&self, key: &str) -> Option<String>;
    /// The ids whose parent is `parent`, in id order.
    fn children(&self, parent: &str) -> Vec<String>;
    /// The ids of every entry of one type, in id order.
    fn ids(&self, kind: ResourceType) -> Vec<String>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The host's mapping, through the `mapping-view` import.
#[cfg(target_arch = "wasm32")]
pub struct HostMapping;

#[cfg(target_arch = "wasm32")]
impl Source for HostMapping {
    fn get(&self, id: &str) -> Option<MappingEntry> {
        crate::bindings::loxilb::octavia::mapping_view::get(id)
    }
    fn owner(&self, key: &str) -> Option<String> {
        crate::bindings::loxilb::octavia::mapping_view::owner(key)
    }
    fn children(&self, parent: &str) -> Vec<String> {
        crate::bindings::loxilb::octavia::mapping_view::children(parent)
    }
    fn ids(&self, kind: ResourceType) -> Vec<String> {
        crate::bindings::loxilb::octavia::mapping_view::ids(kind)
    }
    fn len(&self) -> usize {
        crate::bindings::loxilb::octavia::mapping_view::len() as usize
    }
}

/// A mapping held in memory with the host's rules (a key maps back to the id it was last put under):
/// native tests, and what a policy stages within one call.
#[derive(Default, Clone, Debug)]
pub struct Memory {
    entries: BTreeMap<String, MappingEntry>,
    owners: BTreeMap<String, String>,
    children: BTreeMap<String, BTreeSet<String>>,
}

impl Memory {
    pub fn apply(&mut self, change: MappingChange) {
        match change {
            MappingChange::Put(e) => self.put(e),
            MappingChange::Remove(id) => self.remove(&id),
        }
    }

    pub fn put(&mut self, e: MappingEntry) {
        self.remove(&e.octavia_id);
        self.owners.insert(e.loxilb_key.clone(), e.octavia_id.clone());
        if let Some(parent) = &e.parent {
            self.children.entry(parent.clone()).or_default().insert(e.octavia_id.clone());
        }
        self.entries.insert(e.octavia_id.clone(), e);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.entries.remove(id) else { return };
        if self.owners.get(&old.loxilb_key).is_some_and(|o| o == id) {
            self.owners.remove(&old.loxilb_key);
        }
        if let Some(parent) = &old.parent {
            if let Some(set) = self.children.get_mut(parent) {
                set.remove(id);
                if set.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &MappingEntry> {
        self.entries.values()
    }
}

impl Source for Memory {
    fn get(&self, id: &str) -> Option<MappingEntry> {
        self.entries.get(id).cloned()
    }
    fn owner(&self, key: &str) -> Option<String> {
        self.owners.get(key).cloned()
    }
    fn children(&self, parent: &str) -> Vec<String> {
        self.children.get(parent).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    fn ids(&self, kind: ResourceType) -> Vec<String> {
        self.entries.values().filter(|e| e.resource_type == kind).map(|e| e.octavia_id.clone()).collect()
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(target_arch = "wasm32")]
pub use crate::bindings::loxilb::octavia::log::Level;

/// A line in the host's log, under the policy's name.
#[cfg(target_arch = "wasm32")]
pub fn log(level: Level, message: &str) {
    crate::bindings::loxilb::octavia::log::log(level, message)
}

/// Milliseconds since the Unix epoch, from the host.
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> u64 {
    crate::bindings::loxilb::octavia::clock::now_ms()
}
