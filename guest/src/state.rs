//! The ID mapping cache: Octavia id ⇄ LoxiLB key in both directions, plus each resource's metadata.
//!
//! The metadata keeps the Octavia object itself (the fields translation needs), so the mapping alone is
//! enough to re-render every rule: after a restart, after a LoxiLB restart, and in a freshly swapped
//! policy. Listener metadata also keeps the rule last programmed for it, so an update can be diffed
//! against what LoxiLB holds without asking LoxiLB.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::Base;
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::translate::Rendered;

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
///
/// An entry read from disk keeps its metadata's bytes and decodes the Octavia object on first use: a
/// load reads only ids, keys, parents and the short seed fields (see `store`), and a compaction writes
/// an untouched entry back byte for byte.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub external_ip: String,
    pub port: u16,
    pub protocol: String,
    pub created_at: String,
    kind: ResourceType,
    parent: Option<String>,
    object: LazyObject,
}

/// The Octavia object, decoded or still as stored. Boxed: an `Object` is several hundred bytes, and
/// the entry table of a 100k mapping would otherwise be most of the policy's memory.
#[derive(Clone, Debug)]
struct LazyObject {
    stored: Option<Stored>,
    decoded: OnceCell<Box<Object>>,
}

/// Where an entry's metadata sits in the bytes it was read from.
#[derive(Clone)]
pub struct Stored {
    pub bytes: Arc<Vec<u8>>,
    /// The whole `resource_metadata` value, as written.
    pub metadata: Range<usize>,
    /// The `additional_metadata` value inside it.
    pub object: Range<usize>,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({:?})", self.metadata)
    }
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
            object: LazyObject { stored: None, decoded: OnceCell::from(Box::new(object)) },
        }
    }

    /// An entry whose object stays in `stored` until it is first used. `kind` and `parent` must be the
    /// stored object's (the store reads them from the same metadata).
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        key: String,
        external_ip: String,
        port: u16,
        protocol: String,
        created_at: String,
        kind: ResourceType,
        parent: Option<String>,
        stored: Stored,
    ) -> Entry {
        Entry { key, external_ip, port, protocol, created_at, kind, parent, object: LazyObject { stored: Some(stored), decoded: OnceCell::new() } }
    }

    pub fn resource_type(&self) -> ResourceType {
        self.kind
    }

    /// The Octavia id of the object's parent in the mapping tree.
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The Octavia object. Stored bytes were checked by the host (checksum or per-record CRC) and
    /// written by this format's encoder, so they decode; if they do not, the file was damaged or edited
    /// by hand, and the operation that needed the entry fails loudly: the panic message, logged by the
    /// component's panic hook, names the key (`validate-mappings` renders every rule to find them).
    pub fn object(&self) -> &Object {
        self.try_object().unwrap_or_else(|e| panic!("mapping entry with key {} cannot be decoded: {e}", self.key))
    }

    pub fn try_object(&self) -> Result<&Object, String> {
        if let Some(object) = self.object.decoded.get() {
            return Ok(object);
        }
        let stored = self.object.stored.as_ref().expect("an entry holds its object decoded or stored");
        let object: Object = serde_json::from_slice(&stored.bytes[stored.object.clone()]).map_err(|e| e.to_string())?;
        if object.resource_type() != self.kind || object.parent() != self.parent.as_deref() {
            return Err(format!(
                "its object is a {} under {:?}, its metadata says a {} under {:?}",
                object.resource_type().as_str(),
                object.parent(),
                self.kind.as_str(),
                self.parent
            ));
        }
        Ok(self.object.decoded.get_or_init(|| Box::new(object)))
    }

    /// Replaces the object (the stored bytes no longer describe the entry).
    pub fn set_object(&mut self, object: Object) {
        self.kind = object.resource_type();
        self.parent = object.parent().map(str::to_string);
        self.object = LazyObject { stored: None, decoded: OnceCell::from(Box::new(object)) };
    }

    /// Whether the object has been decoded (or was never stored).
    pub fn is_decoded(&self) -> bool {
        self.object.decoded.get().is_some()
    }

    /// Remembers where the entry's metadata was just written (its journal record), so a compaction can
    /// copy those bytes instead of encoding the object again.
    pub fn keep_stored(&mut self, stored: Stored) {
        self.object.stored = Some(stored);
    }

    /// Where the metadata's bytes are, while they still describe the entry.
    pub fn stored_at(&self) -> Option<&Stored> {
        self.object.stored.as_ref()
    }

    /// The metadata's bytes as read or last written, while they still describe the entry.
    pub fn stored_metadata(&self) -> Option<&[u8]> {
        self.object.stored.as_ref().map(|s| &s.bytes[s.metadata.clone()])
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

/// The mapping's hash maps. Their keys are Octavia ids and LoxiLB keys from Octavia's own database,
/// not attacker-chosen input, so a fast non-cryptographic hash is safe; SipHash was a fifth of a load.
pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

/// The whole mapping: the snapshot it was loaded from, read in place (`Base`), and what changed since.
/// A state built from scratch, or loaded from a file without the snapshot's indices, has no base.
#[derive(Default, Clone, Debug)]
pub struct State {
    base: Option<Rc<Base>>,
    /// Entries put (Some) or removed (None) since the load.
    changed: Map<String, Option<Entry>>,
    /// Keys given an owner (Some) or freed (None) since the load.
    reverse: Map<String, Option<String>>,
    /// Parent id → the ids in `changed` under it, ordered so rules render deterministically.
    children: Map<String, BTreeSet<String>>,
    len: usize,
}

/// One change to the mapping (journaled as `store` encodes it).
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Put { id: String, entry: Entry },
    Remove { id: String },
}

impl State {
    pub(crate) fn from_base(base: Base) -> State {
        State { len: base.len(), base: Some(Rc::new(base)), ..State::default() }
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.try_get(id).unwrap_or_else(|e| panic!("mapping entry {id} cannot be read: {e}"))
    }

    /// `get`, with an entry the snapshot holds but cannot give (damaged by hand) as an error.
    pub fn try_get(&self, id: &str) -> Result<Option<&Entry>, String> {
        if let Some(changed) = self.changed.get(id) {
            return Ok(changed.as_ref());
        }
        let Some((base, i)) = self.base.as_deref().and_then(|b| Some((b, b.index(id)?))) else { return Ok(None) };
        base.entry(i).map(Some).map_err(str::to_string)
    }

    /// The id whose key `key` is (the seed's `loxilb_to_octavia`).
    pub fn owner(&self, key: &str) -> Option<&str> {
        match self.reverse.get(key) {
            Some(owner) => owner.as_deref(),
            None => self.base.as_deref()?.owner(key),
        }
    }

    /// The ids whose parent is `parent`, in id order.
    pub fn children(&self, parent: &str) -> Vec<&str> {
        let mut ids = match self.base.as_deref() {
            Some(base) => base.children(parent),
            None => Vec::new(),
        };
        ids.retain(|id| !self.changed.contains_key(*id));
        if let Some(set) = self.children.get(parent) {
            let sort = !ids.is_empty();
            ids.extend(set.iter().map(String::as_str));
            if sort {
                ids.sort_unstable();
            }
        }
        ids
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.try_iter().map(|(id, e)| (id, e.unwrap_or_else(|e| panic!("mapping entry {id} cannot be read: {e}"))))
    }

    fn try_iter(&self) -> impl Iterator<Item = (&str, Result<&Entry, &str>)> {
        if let Some(base) = self.base.as_deref() {
            base.read_all();
        }
        let base = self.base.as_deref().into_iter().flat_map(move |b| {
            (0..b.len()).filter_map(move |i| {
                let id = b.id(i);
                (!self.changed.contains_key(id)).then(|| (id, b.entry(i)))
            })
        });
        base.chain(self.changed.iter().filter_map(|(id, e)| Some((id.as_str(), Ok(e.as_ref()?)))))
    }

    /// Every `loxilb_to_octavia` pair, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        let base = self.base.as_deref().into_iter().flat_map(|b| b.keys()).filter(|(k, _)| !self.reverse.contains_key(*k));
        base.chain(self.reverse.iter().filter_map(|(k, id)| Some((k.as_str(), id.as_deref()?))))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for `n` more entries (a load knows how many it will add).
    pub fn reserve(&mut self, n: usize) {
        self.changed.reserve(n);
        self.reverse.reserve(n);
    }

    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Put { id, entry } => self.put(id, entry),
            Change::Remove { id } => self.remove(&id),
        }
    }

    pub fn put(&mut self, id: String, entry: Entry) {
        // Most puts replace an entry with one under the same key and parent (an update, a listener's new
        // rule, a journal replaying them): only the entry changes, and the key is (again) its own.
        if let Some(Some(old)) = self.changed.get_mut(&id) {
            if old.key == entry.key && old.parent() == entry.parent() {
                if self.reverse.get(&entry.key).is_none_or(|owner| owner.as_deref() != Some(&id)) {
                    self.reverse.insert(entry.key.clone(), Some(id.clone()));
                }
                *old = entry;
                return;
            }
        } else if !self.changed.contains_key(&id) {
            // Replacing an entry as loaded under its own key: whoever owned the key, the put gives it to
            // `id`, so what `remove` would find out about it does not matter.
            if let Some(base) = self.base.as_deref() {
                if base.index(&id).is_some_and(|i| base.key(i) == entry.key) {
                    self.len -= 1;
                    self.insert_new(id, entry);
                    return;
                }
            }
        }
        self.remove(&id);
        self.insert_new(id, entry);
    }

    /// `put` for an id known not to be mapped (a load fills an empty state).
    pub fn insert_new(&mut self, id: String, entry: Entry) {
        if let Some(parent) = entry.parent() {
            match self.children.get_mut(parent) {
                Some(set) => {
                    set.insert(id.clone());
                }
                None => {
                    self.children.insert(parent.to_string(), BTreeSet::from([id.clone()]));
                }
            }
        }
        self.reverse.insert(entry.key.clone(), Some(id.clone()));
        self.changed.insert(id, Some(entry));
        self.len += 1;
    }

    pub fn remove(&mut self, id: &str) {
        let base = self.base.as_deref().and_then(|b| Some((b, b.index(id)?)));
        let key = match self.changed.get(id) {
            Some(None) => return,
            Some(Some(old)) => {
                let key = old.key.clone();
                if let Some(set) = old.parent().and_then(|parent| self.children.get_mut(parent)) {
                    set.remove(id);
                    if set.is_empty() {
                        let parent = old.parent().expect("has a set").to_string();
                        self.children.remove(&parent);
                    }
                }
                key
            }
            // Unchanged since the load: only the snapshot's key is needed, not the entry.
            None => match base {
                Some((b, i)) => b.key(i).to_string(),
                None => return,
            },
        };
        let loaded_owner = self.base.as_deref().and_then(|b| b.owner(&key));
        let owner = match self.reverse.get(&key) {
            Some(owner) => owner.as_deref(),
            None => loaded_owner,
        };
        if owner == Some(id) {
            if loaded_owner.is_some() {
                self.reverse.insert(key, None);
            } else {
                self.reverse.remove(&key);
            }
        }
        if base.is_some() {
            self.changed.insert(id.to_string(), None);
        } else {
            self.changed.remove(id);
        }
        self.len -= 1;
    }

    /// The snapshot the state was loaded from, if it is read in place.
    pub(crate) fn base(&self) -> Option<&Base> {
        self.base.as_deref()
    }

    /// The loaded snapshot and the entries put (Some) or removed (None) since: what a compaction carries
    /// over into the state it reads back from the snapshot it writes.
    pub(crate) fn into_parts(self) -> (Option<Rc<Base>>, Map<String, Option<Entry>>) {
        (self.base, self.changed)
    }

    /// The entries put (Some) or removed (None) since the load.
    pub(crate) fn changes(&self) -> impl Iterator<Item = (&str, Option<&Entry>)> {
        self.changed.iter().map(|(id, e)| (id.as_str(), e.as_ref()))
    }

    /// Whether `id` was put or removed since the load.
    pub(crate) fn is_changed(&self, id: &str) -> bool {
        self.changed.contains_key(id)
    }

    /// The entries put since the load.
    pub(crate) fn puts(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.changed.iter().filter_map(|(id, e)| Some((id.as_str(), e.as_ref()?)))
    }

    /// Keys given an owner or freed since the load.
    pub(crate) fn changed_keys(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.reverse.iter().map(|(k, id)| (k.as_str(), id.as_deref()))
    }

    /// Whether `key` was given an owner or freed since the load.
    pub(crate) fn is_key_changed(&self, key: &str) -> bool {
        self.reverse.contains_key(key)
    }

    /// Parent → the ids put since the load under it.
    pub(crate) fn changed_children(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.children.iter().map(|(p, c)| (p.as_str(), c))
    }

    /// Consistency problems: both directions disagree, keys malformed, metadata inconsistent, the
    /// snapshot's `children` index disagreeing with the entries' parents.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (id, entry) in self.try_iter() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(format!("{id}: cannot be read: {e}"));
                    continue;
                }
            };
            match self.owner(&entry.key) {
                Some(owner) if owner == id => {}
                Some(owner) => problems.push(format!("{id}: key {} maps back to {owner}", entry.key)),
                None => problems.push(format!("{id}: key {} missing from loxilb_to_octavia", entry.key)),
            }
            if !crate::keys::key_is_well_formed(entry.resource_type().as_str(), &entry.key) {
                problems.push(format!("{id}: malformed {} key {:?}", entry.resource_type().as_str(), entry.key));
            }
            if let Err(e) = entry.try_object() {
                problems.push(format!("{id}: metadata cannot be decoded: {e}"));
            }
            if let Some(parent) = entry.parent() {
                if !matches!(self.try_get(parent), Ok(Some(_))) {
                    problems.push(format!("{id}: parent {parent} has no mapping"));
                }
                if !self.children(parent).contains(&id) {
                    problems.push(format!("{id}: not listed among the children of {parent}"));
                }
            }
            for child in self.children(id) {
                if !matches!(self.try_get(child), Ok(Some(c)) if c.parent() == Some(id)) {
                    problems.push(format!("{id}: lists {child} as a child, which is not under it"));
                }
            }
        }
        for (key, id) in self.keys() {
            if !matches!(self.try_get(id), Ok(Some(e)) if e.key == key) {
                problems.push(format!("{key}: maps to {id}, which does not map back"));
            }
        }
        problems.sort();
        problems
    }
}
