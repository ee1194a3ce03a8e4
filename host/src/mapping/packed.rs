//! An entry as the index holds it: its id shared with the index's maps, and every other text field in
//! one allocation. At 100k mappings, eight separately allocated strings per entry and two more copies of
//! each id cost ~35 MB of resident memory in string headers, allocator overhead and copies.

use std::sync::Arc;

use super::codec::EntryRef;
use crate::runtime::bindings::mapping::{MappingEntry, ResourceType};

pub struct Packed {
    id: Arc<str>,
    /// key, parent, external_ip, protocol, created_at and metadata, back to back.
    text: Box<str>,
    /// Where each of them but the last ends in `text`.
    ends: [u32; 5],
    port: u16,
    kind: ResourceType,
    has_parent: bool,
}

impl Packed {
    pub fn new(e: &EntryRef, id: Arc<str>) -> Packed {
        let parts = [e.key, e.parent.unwrap_or(""), e.external_ip, e.protocol, e.created_at, e.metadata];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 5];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(text.len()).expect("a mapping entry under 4 GiB");
            }
        }
        Packed { id, text: text.into_boxed_str(), ends, port: e.port, kind: e.kind, has_parent: e.parent.is_some() }
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.text.len(), |&e| e as usize);
        &self.text[start..end]
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn key(&self) -> &str {
        self.part(0)
    }

    pub fn parent(&self) -> Option<&str> {
        self.has_parent.then(|| self.part(1))
    }

    pub fn kind(&self) -> ResourceType {
        self.kind
    }

    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            id: &self.id,
            key: self.key(),
            kind: self.kind,
            parent: self.parent(),
            external_ip: self.part(2),
            port: self.port,
            protocol: self.part(3),
            created_at: self.part(4),
            metadata: self.part(5),
        }
    }

    pub fn to_entry(&self) -> MappingEntry {
        self.view().to_owned()
    }
}

/// An entry hashed and compared by its key: the key index holds the entries that own their keys, so no key
/// is copied (at 100k mappings the copies took 15 ms of a load and ~9 MB).
#[derive(Clone)]
pub struct ByKey(pub Arc<Packed>);

impl std::hash::Hash for ByKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that a lookup by `&str` (through `Borrow`) finds it.
        self.0.key().hash(state)
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ByKey {}

impl std::borrow::Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_packed_with_or_without_a_parent_and_empty_fields() {
        for parent in [None, Some("pool-1".to_string()), Some(String::new())] {
            let e = MappingEntry {
                octavia_id: "m-1".into(),
                loxilb_key: "10.0.0.1/pool-1/10.0.1.1:80".into(),
                resource_type: ResourceType::Member,
                parent,
                external_ip: "10.0.0.1".into(),
                port: 80,
                protocol: String::new(),
                created_at: "2026-12-05T00:00:00Z".into(),
                metadata: r#"{"address":"10.0.1.1"}"#.into(),
            };
            assert_eq!(Packed::new(&(&e).into(), Arc::from("m-1")).to_entry(), e);
        }
    }
}
