//! The mapping as the policy reads it: a memoising, read-only view over what the host serves (the
//! `mapping-view` import) or over entries held in memory (native tests and benches). A policy
//! instance keeps what it read between calls (`Kept`), checked against the host's revisions.
//!
//! The host owns the mapping and its storage. An entry's metadata is this policy's own JSON (the seed's
//! `additional_metadata`): the Octavia object, and for listeners the rule last programmed, enough to
//! re-render every rule from the mapping alone.

use std::cell::{Cell, OnceCell, UnsafeCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::mapping::{MappingEntry, ResourceType as WitType};
use crate::octavia::{HealthMonitor, Listener, Loadbalancer, Member, Pool};
use crate::translate::Rendered;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerState {
    pub listener: Listener,
    pub programmed: Option<Rendered>,
}

/// The Octavia object behind a mapping entry. Parents do not hold their children: an LB's listeners and
/// pools, and a pool's members and monitor, are entries of their own.
#[derive(Clone, Debug, PartialEq)]
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

    pub fn id(&self) -> &str {
        match self {
            Object::Loadbalancer(lb) => &lb.id,
            Object::Listener(l) => &l.listener.id,
            Object::Pool(p) => &p.id,
            Object::Member(m) => &m.id,
            Object::Healthmonitor(h) => &h.id,
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
    /// The Octavia id (the metadata leaves it out).
    id: String,
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
            id: object.id().to_string(),
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
            id: e.octavia_id.clone(),
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

    /// The entry as the host stores it. By value: a plan's entries are handed over once, and copying
    /// their strings cost 6 % of translating a tree.
    pub fn into_wit(self) -> MappingEntry {
        let metadata = match self.metadata {
            Some(json) => json,
            None => self.metadata_json(),
        };
        MappingEntry {
            octavia_id: self.id,
            loxilb_key: self.key,
            resource_type: self.kind.to_wit(),
            parent: self.parent,
            external_ip: self.external_ip,
            port: self.port,
            protocol: self.protocol,
            created_at: self.created_at,
            metadata,
        }
    }

    /// The metadata as stored: the object's JSON (`metadata`).
    pub fn metadata_json(&self) -> String {
        match (&self.metadata, self.object.get()) {
            (Some(json), _) => json.clone(),
            (None, Some(object)) => crate::metadata::encode(object, self.implied()),
            (None, None) => unreachable!("an entry holds its object decoded or as JSON"),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// What this entry says of its object (its metadata leaves that out).
    fn implied(&self) -> crate::metadata::Implied<'_> {
        crate::metadata::Implied { id: &self.id, parent: self.parent.as_deref(), external_ip: &self.external_ip, port: self.port, protocol: &self.protocol }
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
        let object = crate::metadata::decode(json, self.kind, self.implied())?;
        if object.resource_type() != self.kind || object.id() != self.id || object.parent() != self.parent.as_deref() {
            return Err(format!(
                "its object is the {} {} under {}, its entry says the {} {} under {}",
                object.resource_type().as_str(),
                object.id(),
                object.parent().unwrap_or("no parent"),
                self.kind.as_str(),
                self.id,
                self.parent.as_deref().unwrap_or("no parent")
            ));
        }
        Ok(self.object.get_or_init(|| Box::new(object)))
    }

    /// Replaces the object (the stored JSON no longer describes the entry).
    pub fn set_object(&mut self, object: Object) {
        self.id = object.id().to_string();
        self.kind = object.resource_type();
        self.parent = object.parent().map(str::to_string);
        self.metadata = None;
        self.object = OnceCell::from(Box::new(object));
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.id == other.id
            && self.key == other.key
            && self.external_ip == other.external_ip
            && self.port == other.port
            && self.protocol == other.protocol
            && self.created_at == other.created_at
            && self.kind == other.kind
            && self.parent == other.parent
            && self.try_object().ok() == other.try_object().ok()
    }
}

/// The policy's hash map, everywhere in it. On wasm32-unknown-unknown the standard library's `RandomState`
/// has no entropy to seed SipHash (its keys are constants), so SipHash would resist nothing here and only
/// cost time and a second copy of the map's code.
pub type Map<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

/// One change to the mapping, as the plan hands it to the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Creates or replaces the entry of the entry's own id.
    Put(Entry),
    Remove {
        id: String,
    },
}

pub use loxilb_policy_sdk::view::{Lookup, Memory, Source};

/// Applies a plan's change to an in-memory mapping (native tests and benches).
pub fn apply(memory: &mut Memory, change: Change) {
    memory.apply(match change {
        Change::Put(entry) => crate::mapping::MappingChange::Put(entry.into_wit()),
        Change::Remove { id } => crate::mapping::MappingChange::Remove(id),
    })
}

/// A map handing out references to its values behind `&self`, as a policy call reads the mapping: each
/// value is boxed, so a rehash does not move it. A value is replaced only before any reference to it was
/// handed out in the current call (`State::get` checks that by the slot's epoch), and the whole map is
/// cleared only between calls, when no `State` borrows it.
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
        self.refresh(key, |kept| match kept {
            Some(_) => None,
            None => Some(make()),
        })
    }

    /// The value of `key`: the kept one when `fresh` returns `None`, else the one it returns. `fresh` must
    /// not reach this memo (it only asks the source), and must return a value for a key it finds nothing
    /// under.
    fn refresh(&self, key: &str, fresh: impl FnOnce(Option<&T>) -> Option<T>) -> &T {
        // SAFETY: values are boxed and never freed while a reference to them is out (see the type's
        // comment); `fresh` cannot reach the map, so no borrow of it overlaps the insertion.
        unsafe {
            let kept = (*self.map.get()).get(key).map(|v| v.as_ref() as *const T);
            match fresh(kept.map(|p| &*p)) {
                None => &*kept.expect("fresh returns a value for a key it found nothing under"),
                Some(value) => {
                    let value = Box::new(value);
                    let at = value.as_ref() as *const T;
                    (*self.map.get()).insert(key.to_string(), value);
                    &*at
                }
            }
        }
    }

    fn len(&mut self) -> usize {
        self.map.get_mut().len()
    }

    fn clear(&mut self) {
        self.map.get_mut().clear()
    }

    fn remove(&mut self, key: &str) {
        self.map.get_mut().remove(key);
    }

    /// Empties the memo, handing back what it held.
    fn take(&mut self) -> Map<String, Box<T>> {
        std::mem::take(self.map.get_mut())
    }
}

/// One entry as this instance last read it, and the epoch it was last checked against the host in.
struct Slot {
    checked: Cell<u64>,
    /// None while the id has no entry.
    revision: Option<u64>,
    entry: Option<Entry>,
}

/// At most this many entries are kept from one call to the next: a call that read more (desired rules over
/// the whole mapping) leaves them for the next call to drop, so a policy's memory does not grow with the
/// mapping between calls.
pub const KEPT_ENTRIES: usize = 16_384;

/// Entries dropped (when the kept ones are given up) per call. Dropping 16k decoded entries at once took
/// one operation ~20 ms at 100k mappings; spread out, it costs each of the next calls a few µs.
const RETIRED_PER_CALL: usize = 256;

/// What a policy instance keeps between its calls, so it decodes an entry's metadata once per revision
/// instead of once per call: every entry it read, under the revision it had (its object decoded once
/// used), and the owners and children it asked for, while the mapping's generation stays the same.
///
/// Nothing stale can be used. In a new generation, what the changes since the kept one touched is dropped
/// (`changes-since`: their entries, the owners of their keys, the children of their parents) and the rest
/// is still the host's answer; when the host cannot say what changed, the owners and children are dropped
/// and an entry is used only once the host says its revision is still the one kept (`get-since`). The
/// host never gives a revision or generation twice, so a recovery's new mapping cannot be mistaken for the
/// old one; a plan's own changes are never kept (only the host's answers are), so a plan the host did not
/// commit leaves no trace; a new instance (a swap, a trap) starts with nothing.
#[derive(Default)]
pub struct Kept {
    /// The generation the owners and children were read under; `None`: nothing may be reused.
    generation: Option<u64>,
    /// Bumped with every new generation: a slot checked in this epoch is the host's current entry.
    epoch: u64,
    entries: Memo<Slot>,
    owners: Memo<Option<String>>,
    children: Memo<Vec<String>>,
    /// Entries given up, dropped a few per call (never read again).
    retired: Option<std::collections::hash_map::IntoIter<String, Box<Slot>>>,
}

impl Kept {
    /// Readies what was kept for a call over `source`, whose generation is now `generation`.
    fn begin(&mut self, source: &dyn Source, generation: Option<u64>) {
        if generation.is_none() || generation != self.generation {
            match self.generation.filter(|_| generation.is_some()).and_then(|kept| source.changes_since(kept)) {
                Some(changes) => {
                    changes.ids.iter().for_each(|id| self.entries.remove(id));
                    changes.keys.iter().for_each(|key| self.owners.remove(key));
                    changes.parents.iter().for_each(|parent| self.children.remove(parent));
                }
                None => {
                    self.owners.clear();
                    self.children.clear();
                    self.epoch += 1;
                }
            }
        }
        if generation.is_none() || self.entries.len() > KEPT_ENTRIES {
            // Whatever was still retired is dropped now (it takes ~8k calls to fill the memo again).
            self.retired = Some(self.entries.take().into_iter());
        }
        if let Some(retired) = &mut self.retired {
            if retired.by_ref().take(RETIRED_PER_CALL).count() < RETIRED_PER_CALL {
                self.retired = None;
            }
        }
        self.generation = generation;
    }
}

enum Held<'s> {
    Own(Box<Kept>),
    Borrowed(&'s mut Kept),
}

impl Held<'_> {
    fn kept(&self) -> &Kept {
        match self {
            Held::Own(kept) => kept,
            Held::Borrowed(kept) => kept,
        }
    }
}

/// The mapping as one policy call sees it.
pub struct State<'s> {
    source: &'s dyn Source,
    held: Held<'s>,
}

impl<'s> State<'s> {
    /// A view keeping nothing beyond itself.
    pub fn new(source: &'s dyn Source) -> Self {
        let mut kept = Box::<Kept>::default();
        kept.begin(source, source.generation());
        State { source, held: Held::Own(kept) }
    }

    /// A view reusing what earlier calls over the same source kept in `kept` (a policy instance keeps one
    /// for the host's mapping). `kept` must only ever be used with one source: one source's generation only
    /// grows, so a change committed while a call ran shows as a new generation to the next call.
    pub fn keeping(source: &'s dyn Source, kept: &'s mut Kept) -> Self {
        kept.begin(source, source.generation());
        State { source, held: Held::Borrowed(kept) }
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        let kept = self.held.kept();
        let epoch = kept.epoch;
        let slot = kept.entries.refresh(id, |slot| {
            if slot.is_some_and(|s| s.checked.get() == epoch) {
                return None;
            }
            match self.source.get_since(id, slot.and_then(|s| s.revision)) {
                Lookup::Unchanged => {
                    slot.expect("the host answers unchanged only to a known revision").checked.set(epoch);
                    None
                }
                Lookup::Absent => Some(Slot { checked: Cell::new(epoch), revision: None, entry: None }),
                Lookup::Changed(revised) => {
                    Some(Slot { checked: Cell::new(epoch), revision: Some(revised.revision), entry: Some(Entry::from_wit(revised.entry).1) })
                }
            }
        });
        slot.entry.as_ref()
    }

    /// The id whose key `key` is (the seed's `loxilb_to_octavia`).
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.held.kept().owners.get_or_insert_with(key, || self.source.owner(key)).as_deref()
    }

    /// The ids whose parent is `parent`, in id order.
    pub fn children(&self, parent: &str) -> Vec<&str> {
        self.held.kept().children.get_or_insert_with(parent, || self.source.children(parent)).iter().map(String::as_str).collect()
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
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn kept_entries_past_the_cap_are_dropped_a_few_per_call() {
        let mut kept = Kept::default();
        for i in 0..=KEPT_ENTRIES {
            kept.entries.get_or_insert_with(&format!("e{i}"), || Slot { checked: Cell::new(0), revision: None, entry: None });
        }
        let retired = |k: &Kept| k.retired.as_ref().map_or(0, |r| r.len());
        let memory = Memory::default();
        kept.begin(&memory, Some(1));
        assert_eq!((kept.entries.len(), retired(&kept)), (0, KEPT_ENTRIES + 1 - RETIRED_PER_CALL), "given up, not all dropped at once");
        kept.begin(&memory, Some(1));
        assert_eq!(retired(&kept), KEPT_ENTRIES + 1 - 2 * RETIRED_PER_CALL);
        let mut calls = 2;
        while kept.retired.is_some() {
            kept.begin(&memory, Some(1));
            calls += 1;
        }
        assert_eq!(calls, (KEPT_ENTRIES + 1).div_ceil(RETIRED_PER_CALL));
    }

    /// A source counting how often it is asked.
    pub(crate) struct Counting<'a> {
        pub inner: &'a Memory,
        pub asked: Cell<u32>,
        /// Whether it says what changed since a generation (the host does).
        pub changes: bool,
    }

    impl Source for Counting<'_> {
        fn get(&self, id: &str) -> Option<MappingEntry> {
            self.asked.set(self.asked.get() + 1);
            self.inner.get(id)
        }
        fn get_since(&self, id: &str, known: Option<u64>) -> Lookup {
            self.asked.set(self.asked.get() + 1);
            self.inner.get_since(id, known)
        }
        fn generation(&self) -> Option<u64> {
            self.inner.generation()
        }
        fn changes_since(&self, generation: u64) -> Option<loxilb_policy_sdk::view::Changes> {
            self.inner.changes_since(generation).filter(|_| self.changes)
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
        let object = Object::Member(
            serde_json::from_value(serde_json::json!({"id": id, "pool_id": pool,
            "address": "10.0.1.1", "protocol_port": 80, "weight": 1, "admin_state_up": true, "backup": false, "monitor_address": null,
            "monitor_port": null}))
            .unwrap(),
        );
        Entry::new(format!("member_{id}"), "10.0.0.1".into(), 80, String::new(), "now".into(), object)
    }

    #[test]
    fn a_call_asks_the_host_once_per_id_key_and_parent_and_decodes_what_it_stored() {
        let mut memory = Memory::default();
        for id in ["b", "a"] {
            apply(&mut memory, Change::Put(member(id, "pool")));
        }
        let source = Counting { inner: &memory, asked: Cell::new(0), changes: true };
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

    fn weight(state: &State, id: &str) -> u32 {
        match state.get(id).expect("mapped").object() {
            Object::Member(m) => m.weight,
            other => panic!("not a member: {other:?}"),
        }
    }

    fn weighted(id: &str, weight: u32) -> Entry {
        let mut entry = member(id, "pool");
        let Object::Member(mut m) = entry.object().clone() else { unreachable!() };
        m.weight = weight;
        entry.set_object(Object::Member(m));
        entry
    }

    #[test]
    fn a_kept_entry_is_decoded_once_per_revision_and_a_new_put_of_its_id_is_seen_by_the_next_call() {
        let mut memory = Memory::default();
        apply(&mut memory, Change::Put(weighted("a", 1)));
        let mut kept = Kept::default();
        let decoded = |memory: &Memory, kept: &mut Kept| {
            let source = Counting { inner: memory, asked: Cell::new(0), changes: true };
            let state = State::keeping(&source, kept);
            let at = state.get("a").expect("mapped").object() as *const Object as usize;
            (weight(&state, "a"), at, source.asked.get())
        };
        let (w, first, asked) = decoded(&memory, &mut kept);
        assert_eq!((w, asked), (1, 1));
        let (w, again, asked) = decoded(&memory, &mut kept);
        assert_eq!((w, again, asked), (1, first, 0), "same generation: nothing asked, nothing decoded again");

        // Another entry changes: the host says which, so the kept one is neither asked for nor decoded again.
        apply(&mut memory, Change::Put(weighted("b", 7)));
        let (w, again, asked) = decoded(&memory, &mut kept);
        assert_eq!((w, again, asked), (1, first, 0));

        // The same id put again with new metadata: the next call sees the new object.
        apply(&mut memory, Change::Put(weighted("a", 5)));
        assert_eq!(decoded(&memory, &mut kept).0, 5);
        apply(&mut memory, Change::Remove { id: "a".into() });
        let source = Counting { inner: &memory, asked: Cell::new(0), changes: true };
        assert!(State::keeping(&source, &mut kept).get("a").is_none(), "a removed entry is gone at the next call");
    }

    #[test]
    fn kept_children_and_owners_are_asked_again_once_the_mapping_changed() {
        let mut memory = Memory::default();
        apply(&mut memory, Change::Put(member("a", "pool")));
        let mut kept = Kept::default();
        let read = |memory: &Memory, kept: &mut Kept| {
            let state = State::keeping(memory, kept);
            (state.children("pool").iter().map(|s| s.to_string()).collect::<Vec<_>>(), state.owner("member_b").map(str::to_string))
        };
        assert_eq!(read(&memory, &mut kept), (vec!["a".to_string()], None));
        apply(&mut memory, Change::Put(member("b", "pool")));
        assert_eq!(read(&memory, &mut kept), (vec!["a".to_string(), "b".to_string()], Some("b".to_string())));
    }

    #[test]
    fn what_a_change_did_not_touch_is_not_asked_again_and_what_it_touched_is() {
        let mut memory = Memory::default();
        for (id, pool) in [("a", "pool"), ("b", "pool"), ("c", "other")] {
            apply(&mut memory, Change::Put(member(id, pool)));
        }
        let mut kept = Kept::default();
        let read = |memory: &Memory, kept: &mut Kept| {
            let source = Counting { inner: memory, asked: Cell::new(0), changes: true };
            let state = State::keeping(&source, kept);
            let children = |p| state.children(p).iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let seen = (children("pool"), children("other"), state.owner("member_c").map(str::to_string), state.get("a").is_some(), state.get("c").is_some());
            (seen, source.asked.get())
        };
        let (_, asked) = read(&memory, &mut kept);
        assert_eq!(asked, 5);
        // c moves to "pool" under a new key: its entry, both its keys and both its parents are asked again;
        // a, and b's key, are not.
        let mut moved = member("c", "pool");
        moved.key = "member_c2".into();
        apply(&mut memory, Change::Put(moved));
        let (seen, asked) = read(&memory, &mut kept);
        assert_eq!(seen, (vec!["a".to_string(), "b".into(), "c".into()], vec![], None, true, true));
        assert_eq!(asked, 4, "pool, other, member_c and c; not a");
        // A source that cannot say what changed: every kept entry is checked again, children and owners asked.
        apply(&mut memory, Change::Put(member("d", "elsewhere")));
        let source = Counting { inner: &memory, asked: Cell::new(0), changes: false };
        let state = State::keeping(&source, &mut kept);
        assert!(state.get("a").is_some());
        assert_eq!(state.children("other"), Vec::<&str>::new());
        assert_eq!(source.asked.get(), 2);
    }

    #[test]
    fn a_source_without_revisions_is_read_again_at_every_call() {
        struct Unrevised<'a>(&'a Memory);
        impl Source for Unrevised<'_> {
            fn get(&self, id: &str) -> Option<MappingEntry> {
                self.0.get(id)
            }
            fn owner(&self, key: &str) -> Option<String> {
                self.0.owner(key)
            }
            fn children(&self, parent: &str) -> Vec<String> {
                self.0.children(parent)
            }
            fn ids(&self, kind: WitType) -> Vec<String> {
                self.0.ids(kind)
            }
            fn len(&self) -> usize {
                self.0.len()
            }
        }
        let mut memory = Memory::default();
        apply(&mut memory, Change::Put(weighted("a", 1)));
        let mut kept = Kept::default();
        assert_eq!(weight(&State::keeping(&Unrevised(&memory), &mut kept), "a"), 1);
        apply(&mut memory, Change::Put(weighted("a", 2)));
        assert_eq!(weight(&State::keeping(&Unrevised(&memory), &mut kept), "a"), 2);
    }

    #[test]
    fn a_key_put_under_another_id_maps_back_to_it() {
        let mut memory = Memory::default();
        apply(&mut memory, Change::Put(member("a", "pool")));
        let mut taken = member("b", "pool");
        taken.key = "member_a".into();
        apply(&mut memory, Change::Put(taken));
        assert_eq!(memory.owner("member_a").as_deref(), Some("b"));
        apply(&mut memory, Change::Remove { id: "a".into() });
        assert_eq!(memory.owner("member_a").as_deref(), Some("b"), "removing the older entry keeps the key's owner");
        assert_eq!(memory.children("pool"), vec!["b"]);
    }
}
