//! The read-only view of the mapping a policy imports.

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::mapping_view::{Changes, Host, Lookup};
use crate::runtime::bindings::mapping::{MappingEntry, ResourceType};

impl Host for HostState {
    fn get(&mut self, octavia_id: String) -> Option<MappingEntry> {
        self.grants.mapping.get(&octavia_id)
    }
    fn get_since(&mut self, octavia_id: String, known_revision: Option<u64>) -> Lookup {
        self.grants.mapping.get_since(&octavia_id, known_revision)
    }
    fn generation(&mut self) -> u64 {
        self.grants.mapping.generation()
    }
    fn changes_since(&mut self, generation: u64) -> Option<Changes> {
        self.grants.mapping.changes_since(generation)
    }
    fn owner(&mut self, loxilb_key: String) -> Option<String> {
        self.grants.mapping.owner(&loxilb_key)
    }
    fn children(&mut self, parent_id: String) -> Vec<String> {
        self.grants.mapping.children(&parent_id)
    }
    fn ids(&mut self, kind: ResourceType) -> Vec<String> {
        self.grants.mapping.ids(kind)
    }
    fn len(&mut self) -> u32 {
        self.grants.mapping.len() as u32
    }
}
