//! The mapping as the policy reads it: a memoising, read-only view over what the host serves (the
//! `mapping-view` import) or over entries held in memory (native tests, recovery's staging).
//!
//! The host owns the mapping and its storage. An entry's metadata is this policy's own JSON (the seed's
//! `additional_metadata`): the Octavia object, and for listeners the rule last programmed, enough to
//! re-render every rule from the mapping alone.

use std::cell::{OnceCell, UnsafeCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use crate::mapping::{MappingEntry, ResourceType as WitType};
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::translate::Rendered;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    pub fn to_wit(self) -> WitType {
        match self {
            ResourceType::Loadbalancer => WitType::Loadbalancer,
            ResourceType::Listener => WitType::Listener,
            ResourceType::Pool => WitType::Pool,
            ResourceType::Member => WitType::Member,
            ResourceType::Healthmonitor => WitType::Healthmonitor,
        }
    }

    pub fn from_wit(t: WitType) -> Self {
        match t {
            WitType::Loadbalancer => ResourceType::Loadbalancer,
            WitType::Listener => ResourceType::Listener,
            WitType::Pool => ResourceType::Pool,
            WitType::Member => ResourceType::Member,
            WitType::Healthmonitor => ResourceType::Healthmonitor,
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

/// One mapping entry: the seed's `octavia_to_loxilb` value plus its `resource_metadata`. The object is
/// decoded from the metadata when first used.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub external_ip: String,
    pub port: u16,
    pub protocol: String,
    pub created_at: String,
    kind: ResourceType,
    parent: Option<String>,
    metadata: Option<String>,
    object: OnceCell<Box<Object>>,
}

impl Entry {
    pub fn new(key: String, external_ip: String, port: u16, protocol: String, created_at: String, object: Object) -> Entry {
        Entry {
            key,
            external_ip,
            port,
            protocol,
            created_at,
            kind: object.resource_type(),
            parent: object.parent().map(str::to_string),
            metadata: None,
            object: OnceCell::from(Box::new(object)),
        }
    }

    /// An entry as the host serves it; its object stays JSON until first used.
    pub fn from_wit(e: MappingEntry) -> (String, Entry) {
        let entry = Entry {
            key: e.loxilb_key,
            external_ip: e.external_ip,
            port: e.port,
            protocol: e.protocol,
            created_at: e.created_at,
            kind: ResourceType::from_wit(e.resource_type),
            parent: e.parent,
            metadata: Some(e.metadata),
            object: OnceCell::new(),
        };
        (e.octavia_id, entry)
    }

    /// The entry as the host stores it.
    pub fn to_wit(&self, id: &str) -> MappingEntry {
        MappingEntry {
            octavia_id: id.to_string(),
            loxilb_key: self.key.clone(),
            resource_type: self.kind.to_wit(),
            parent: self.parent.clone(),
            external_ip: self.external_ip.clone(),
            port: self.port,
            protocol: self.protocol.clone(),
            created_at: self.created_at.clone(),
            metadata: self.metadata_json(),
        }
    }

    /// The metadata as stored: the object's JSON.
    pub fn metadata_json(&self) -> String {
        match (&self.metadata, self.object.get()) {
            (Some(json), _) => json.clone(),
            (None, Some(object)) => serde_json::to_string(object).expect("an object encodes"),
            (None, None) => unreachable!("an entry holds its object decoded or as JSON"),
        }
    }

    pub fn resource_type(&self) -> ResourceType {
        self.kind
    }

    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The Octavia object. Metadata this policy cannot decode was damaged or written by another policy:
    /// the operation needing the entry fails loudly (the panic names the key, the host logs it).
    pub fn object(&self) -> &Object {
        self.try_object().unwrap_or_else(|e| panic!("mapping entry with key {} cannot be decoded: {e}", self.key))
    }

    pub fn try_object(&self) -> Result<&Object, String> {
        if let Some(object) = self.object.get() {
            return Ok(object);
        }
        let json = self.metadata.as_deref().expect("an entry holds its object decoded or as JSON");
        let object: Object = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if object.resource_type() != self.kind || object.parent() != self.parent.as_deref() {
            return Err(format!(
                "its object is a {} under {:?}, its entry says a {} under {:?}",
                object.resource_type().as_str(),
                object.parent(),
                self.kind.as_str(),
                self.parent
            ));
        }
        Ok(self.object.get_or_init(|| Box::new(object)))
    }

    /// Replaces the object (the stored JSON no longer describes the entry).
    pub fn set_object(&mut self, object: Object) {
        self.kind = object.resource_type();
        self.parent = object.parent().map(str::to_string);
        self.metadata = None;
        self.object = OnceCell::from(Box::new(object));
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key == other.key
            && self.external_ip == other.external_ip
            && self.port == other.port
            && self.protocol == other.protocol
            && self.created_at == other.created_at
            && self.kind == other.kind
            && self.parent == other.parent
            && self.try_object().ok() == other.try_object().ok()
    }
}

pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

/// One change to the mapping, as the plan hands it to the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Put { id: String, entry: Entry },
    Remove { id: String },
}

pub use loxilb_policy_sdk::view::{Memory, Source};

/// Applies a plan's change to an in-memory mapping (tests, recovery's staging).
pub fn apply(memory: &mut Memory, change: Change) {
    memory.apply(match change {
        Change::Put { id, entry } => crate::mapping::MappingChange::Put(entry.to_wit(&id)),
        Change::Remove { id } => crate::mapping::MappingChange::Remove(id),
    })
}

/// An append-only map whose values never move once inserted (each is boxed), so it can hand out
/// references while still taking new entries behind `&self`. A policy call is single-threaded and the
/// memo lives for one call: nothing is ever removed or replaced while a reference is out.
struct Memo<T> {
    map: UnsafeCell<Map<String, Box<T>>>,
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo { map: UnsafeCell::new(Map::default()) }
    }
}

impl<T> Memo<T> {
    fn get_or_insert_with(&self, key: &str, make: impl FnOnce() -> T) -> &T {
        // SAFETY: `make` cannot reach this memo (it only asks the source), values are boxed so a rehash
        // does not move them, and no value is removed or replaced while `self` is borrowed.
        unsafe {
            if let Some(v) = (*self.map.get()).get(key) {
                return &*(v.as_ref() as *const T);
            }
            let value = Box::new(make());
            let at = value.as_ref() as *const T;
            (*self.map.get()).insert(key.to_string(), value);
            &*at
        }
    }
}

/// The mapping as one policy call sees it.
pub struct State<'s> {
    source: &'s dyn Source,
    entries: Memo<Option<Entry>>,
    owners: Memo<Option<String>>,
    children: Memo<Vec<String>>,
}

impl<'s> State<'s> {
    pub fn new(source: &'s dyn Source) -> Self {
        State { source, entries: Memo::default(), owners: Memo::default(), children: Memo::default() }
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get_or_insert_with(id, || self.source.get(id).map(|e| Entry::from_wit(e).1)).as_ref()
    }

    /// The id whose key `key` is (the seed's `loxilb_to_octavia`).
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.owners.get_or_insert_with(key, || self.source.owner(key)).as_deref()
    }

    /// The ids whose parent is `parent`, in id order.
    pub fn children(&self, parent: &str) -> Vec<&str> {
        self.children.get_or_insert_with(parent, || self.source.children(parent)).iter().map(String::as_str).collect()
    }

    /// The ids of every entry of one type, in id order.
    pub fn ids(&self, kind: ResourceType) -> Vec<String> {
        let mut ids = self.source.ids(kind.to_wit());
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A source counting how often it is asked.
    struct Counting<'a> {
        inner: &'a Memory,
        asked: Cell<u32>,
    }

    impl Source for Counting<'_> {
        fn get(&self, id: &str) -> Option<MappingEntry> {
            self.asked.set(self.asked.get() + 1);
            self.inner.get(id)
        }
        fn owner(&self, key: &str) -> Option<String> {
            self.asked.set(self.asked.get() + 1);
            self.inner.owner(key)
        }
        fn children(&self, parent: &str) -> Vec<String> {
            self.asked.set(self.asked.get() + 1);
            self.inner.children(parent)
        }
        fn ids(&self, kind: WitType) -> Vec<String> {
            self.inner.ids(kind)
        }
        fn len(&self) -> usize {
            self.inner.len()
        }
    }

    fn member(id: &str, pool: &str) -> Entry {
        let object: Object = serde_json::from_value(serde_json::json!({"object": "member", "attributes": {"id": id, "pool_id": pool,
            "address": "10.0.1.1", "protocol_port": 80, "weight": 1, "admin_state_up": true, "backup": false, "monitor_address": null,
            "monitor_port": null}}))
        .unwrap();
        Entry::new(format!("member_{id}"), "10.0.0.1".into(), 80, String::new(), "now".into(), object)
    }

    #[test]
    fn a_call_asks_the_host_once_per_id_key_and_parent_and_decodes_what_it_stored() {
        let mut memory = Memory::default();
        for id in ["b", "a"] {
            apply(&mut memory, Change::Put { id: id.into(), entry: member(id, "pool") });
        }
        let source = Counting { inner: &memory, asked: Cell::new(0) };
        let state = State::new(&source);
        for _ in 0..3 {
            assert_eq!(state.children("pool"), vec!["a", "b"]);
            assert_eq!(state.owner("member_a"), Some("a"));
            let entry = state.get("a").expect("mapped");
            assert_eq!(entry, &member("a", "pool"));
            assert!(matches!(entry.object(), Object::Member(m) if m.id == "a"));
            assert!(state.get("missing").is_none());
        }
        assert_eq!(source.asked.get(), 4, "each id, key and parent is asked for once");
    }

    #[test]
    fn a_key_put_under_another_id_maps_back_to_it() {
        let mut memory = Memory::default();
        apply(&mut memory, Change::Put { id: "a".into(), entry: member("a", "pool") });
        let mut taken = member("b", "pool");
        taken.key = "member_a".into();
        apply(&mut memory, Change::Put { id: "b".into(), entry: taken });
        assert_eq!(memory.owner("member_a").as_deref(), Some("b"));
        apply(&mut memory, Change::Remove { id: "a".into() });
        assert_eq!(memory.owner("member_a").as_deref(), Some("b"), "removing the older entry keeps the key's owner");
        assert_eq!(memory.children("pool"), vec!["b"]);
    }
}
