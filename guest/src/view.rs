//! The host's imports: the mapping view, the log and the clock.

use crate::bindings::loxilb::octavia::mapping_view;
use crate::mapping::MappingEntry;
use crate::state::{ResourceType, Source};

/// The mapping as the host serves it.
pub struct HostMapping;

impl Source for HostMapping {
    fn get(&self, id: &str) -> Option<MappingEntry> {
        mapping_view::get(id)
    }
    fn owner(&self, key: &str) -> Option<String> {
        mapping_view::owner(key)
    }
    fn children(&self, parent: &str) -> Vec<String> {
        mapping_view::children(parent)
    }
    fn ids(&self, kind: ResourceType) -> Vec<String> {
        mapping_view::ids(kind.to_wit())
    }
    fn len(&self) -> usize {
        mapping_view::len() as usize
    }
}

pub use crate::bindings::loxilb::octavia::log::Level;

pub fn log(level: Level, message: &str) {
    crate::bindings::loxilb::octavia::log::log(level, message)
}

pub fn now_ms() -> u64 {
    crate::bindings::loxilb::octavia::clock::now_ms()
}
