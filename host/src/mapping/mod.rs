//! The ID mapping, owned by the host: an in-memory index (id → entry, key → owner, parent → children)
//! over durable storage (snapshot + journal, `storage`). Policies read it through the
//! `mapping-view` import and change it only through the plans the host executes; a policy swap leaves it
//! untouched.

mod bulk;
mod codec;
mod packed;
mod roster;
mod scan;

pub use codec::FORMAT_VERSION;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use self::packed::{ByKey, Packed};
use self::roster::Roster;
use crate::runtime::bindings::loxilb::octavia::mapping_view::{Changes, Lookup, RevisedEntry};
use crate::runtime::bindings::mapping::{MappingChange, MappingEntry, ResourceType};
use crate::runtime::bindings::policy_types::LegacyEntry;
use crate::storage::MappingStore;

/// The journal is folded into a new snapshot once it holds more records than this or than an eighth of
/// the mapping's entries, whichever is larger: a restart replays at most that many records.
pub const MIN_COMPACTION_RECORDS: u32 = 4096;

pub fn compaction_due(journal_records: u32, mappings: usize) -> bool {
    journal_records > MIN_COMPACTION_RECORDS.max(mappings as u32 / 8)
}

/// Revisions and generations come from one counter for the whole process: a policy instance may keep
/// decoded objects under them, so no number may ever describe two different contents — not even after a
/// recovery replaces the mapping with a new one.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

fn next_stamp() -> u64 {
    NEXT_STAMP.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone)]
struct Stored {
    revision: u64,
    entry: Arc<Packed>,
    /// Where the roster holds the entry.
    slot: u32,
}

/// How many of the latest changes the index remembers for `changes_since`: a policy instance whose last
/// call was this many changes ago reads everything afresh. The operations' instances are at most a few
/// changes behind; a change holds the entry before and after it by `Arc`, so at most this many replaced
/// entries stay alive for the log.
const CHANGE_LOG: usize = 512;

/// One put or removal, as `changes_since` reports it.
#[derive(Clone)]
struct Touched {
    /// The generation this change made.
    generation: u64,
    before: Option<Arc<Packed>>,
    after: Option<Arc<Packed>>,
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<T> = HashSet<T, foldhash::fast::RandomState>;

/// Ids are `Arc<str>`s shared by the entry and every map naming it.
#[derive(Clone)]
struct Index {
    /// Each entry with its revision (new at every put of it).
    entries: Map<Arc<str>, Stored>,
    /// The same entries, as a snapshot takes them.
    roster: Roster,
    /// Each key with the entry that owns it.
    owners: Set<ByKey>,
    children: Map<Arc<str>, BTreeSet<Arc<str>>>,
    /// New at every change (and for every new index), so the view's answers are all the same while it is.
    generation: u64,
    /// The latest changes, oldest first.
    log: VecDeque<Touched>,
    /// Every change after this generation is in `log`.
    logged_since: u64,
}

impl Default for Index {
    fn default() -> Self {
        Index::new(Map::default(), Roster::default(), Set::default(), Map::default(), next_stamp())
    }
}

impl Index {
    fn new(entries: Map<Arc<str>, Stored>, roster: Roster, owners: Set<ByKey>, children: Map<Arc<str>, BTreeSet<Arc<str>>>, generation: u64) -> Index {
        Index { entries, roster, owners, children, generation, log: VecDeque::new(), logged_since: generation }
    }

    /// Room for `n` more entries (a load knows how many it reads: no rehash on the way).
    fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
        self.owners.reserve(n);
        self.children.reserve(n / 2);
    }

    fn put(&mut self, e: codec::EntryRef) {
        let before = self.unlink(e.id);
        let id: Arc<str> = Arc::from(e.id);
        let entry = Arc::new(Packed::new(&e, Arc::clone(&id)));
        // The key now maps back to this id. An entry that held it keeps it in its own direction: plans never
        // do that (the policy refuses a taken key), so it only comes from a damaged or hand-made file, and
        // the validator reports it rather than the store dropping an entry.
        self.owners.replace(ByKey(Arc::clone(&entry)));
        if let Some(parent) = e.parent {
            match self.children.get_mut(parent) {
                Some(set) => {
                    set.insert(Arc::clone(&id));
                }
                None => {
                    // The parent's own id when it is mapped, so the text is held once.
                    let parent = self.entries.get_key_value(parent).map_or_else(|| Arc::from(parent), |(k, _)| Arc::clone(k));
                    self.children.insert(parent, BTreeSet::from([Arc::clone(&id)]));
                }
            }
        }
        self.generation = next_stamp();
        self.record(Touched { generation: self.generation, before, after: Some(Arc::clone(&entry)) });
        let slot = self.roster.add(Arc::clone(&entry));
        self.entries.insert(id, Stored { revision: self.generation, entry, slot });
    }

    fn remove(&mut self, id: &str) {
        if let Some(before) = self.unlink(id) {
            self.generation = next_stamp();
            self.record(Touched { generation: self.generation, before: Some(before), after: None });
        }
    }

    /// Takes an entry out of every map, handing it back.
    fn unlink(&mut self, id: &str) -> Option<Arc<Packed>> {
        let Stored { entry: old, slot, .. } = self.entries.remove(id)?;
        self.roster.remove(slot);
        if self.owners.get(old.key()).is_some_and(|o| &**o.0.id() == id) {
            self.owners.remove(old.key());
        }
        if let Some(parent) = old.parent() {
            if let Some(set) = self.children.get_mut(parent) {
                set.remove(id);
                if set.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
        Some(old)
    }

    fn record(&mut self, change: Touched) {
        if self.log.len() == CHANGE_LOG {
            if let Some(oldest) = self.log.pop_front() {
                self.logged_since = oldest.generation;
            }
        }
        self.log.push_back(change);
    }

    /// What the changes since `generation` touched, if the log holds all of them. A generation this index
    /// never had (another index's, one a recovery replaced) is not answered: it is older than the log, or
    /// none of the log's.
    fn changes_since(&self, generation: u64) -> Option<Changes> {
        if generation < self.logged_since || generation > self.generation {
            return None;
        }
        let first = self.log.partition_point(|c| c.generation <= generation);
        // `generation` must be one this index had: the start of the log or the result of a change in it.
        if generation != self.logged_since && self.log.get(first.wrapping_sub(1)).is_none_or(|c| c.generation != generation) {
            return None;
        }
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut parents = BTreeSet::new();
        for change in self.log.range(first..) {
            for entry in change.before.iter().chain(&change.after) {
                ids.insert(&**entry.id());
                keys.insert(entry.key());
                parents.extend(entry.parent());
            }
        }
        let owned = |set: BTreeSet<&str>| set.into_iter().map(str::to_string).collect();
        Some(Changes { ids: owned(ids), keys: owned(keys), parents: owned(parents) })
    }

    fn apply(&mut self, change: MappingChange) {
        self.apply_ref(match &change {
            MappingChange::Put(e) => codec::ChangeRef::Put(e.into()),
            MappingChange::Remove(id) => codec::ChangeRef::Remove(id),
        })
    }

    fn apply_ref(&mut self, change: codec::ChangeRef) {
        match change {
            codec::ChangeRef::Put(e) => self.put(e),
            codec::ChangeRef::Remove(id) => self.remove(id),
        }
    }
}

/// What loading found.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub entries: usize,
    pub journal_records: usize,
    /// Notes worth a warning (a torn last record, a migrated format).
    pub notes: Vec<String>,
}

pub struct Mapping {
    index: RwLock<Index>,
    storage: Arc<dyn MappingStore>,
    /// A format 1.0 file's entries, until the first policy instance migrates them.
    legacy: std::sync::Mutex<Option<Vec<LegacyEntry>>>,
}

impl Mapping {
    /// The mapping the storage holds: its snapshot, then every journal record after it.
    pub fn load(storage: Arc<dyn MappingStore>) -> Result<(Mapping, Loaded), String> {
        let mut index = Index::default();
        let mut loaded = Loaded::default();
        let mut legacy = None;
        if let Some(snapshot) = storage.read_snapshot()? {
            match scan::scan_snapshot(&snapshot, snapshot.verified) {
                Some(entries) => index = bulk::build(&entries),
                None => {
                    let loading = std::cell::RefCell::new(index);
                    legacy = codec::parse_snapshot(&snapshot, |n| loading.borrow_mut().reserve(n), |e| loading.borrow_mut().put(e))?;
                    index = loading.into_inner();
                }
            }
        }
        let records = storage.replay()?;
        let count = records.len();
        for (i, record) in records.into_iter().enumerate() {
            match codec::decode_record(&record, |change| index.apply_ref(change)) {
                Ok(()) => {}
                // A torn last record is what a crash mid-append leaves: everything before it is whole.
                Err(e) if i + 1 == count => loaded.notes.push(format!("ignoring torn last journal record: {e}")),
                Err(e) => return Err(format!("journal record {i}: {e}")),
            }
        }
        loaded.entries = index.entries.len();
        loaded.journal_records = count;
        Ok((Mapping { index: RwLock::new(index), storage, legacy: std::sync::Mutex::new(legacy) }, loaded))
    }

    /// An empty mapping over `storage`, whatever it held (recovery from LoxiLB alone).
    pub fn empty(storage: Arc<dyn MappingStore>) -> Mapping {
        Mapping { index: RwLock::new(Index::default()), storage, legacy: std::sync::Mutex::new(None) }
    }

    /// A format 1.0 file's entries, once: the first policy instance migrates them.
    pub fn take_legacy(&self) -> Option<Vec<LegacyEntry>> {
        self.legacy.lock().unwrap().take()
    }

    /// Writes the whole mapping as a new snapshot now (after a migration: the file is then this format).
    pub fn write_snapshot(&self) -> Result<(), String> {
        let index = self.index.read().unwrap();
        self.storage
            .write_snapshot(codec::encode_snapshot(index.entries.values().map(|s| s.entry.view()), &crate::caps::clock::rfc3339(crate::caps::clock::now_ms())))
    }

    pub fn storage(&self) -> &Arc<dyn MappingStore> {
        &self.storage
    }

    pub fn get(&self, id: &str) -> Option<MappingEntry> {
        self.index.read().unwrap().entries.get(id).map(|s| s.entry.to_entry())
    }

    /// The entry of an id with its revision, unless its revision is still `known`.
    pub fn get_since(&self, id: &str, known: Option<u64>) -> Lookup {
        let index = self.index.read().unwrap();
        match index.entries.get(id) {
            None => Lookup::Absent,
            Some(stored) if known == Some(stored.revision) => Lookup::Unchanged,
            Some(stored) => Lookup::Changed(RevisedEntry { revision: stored.revision, entry: stored.entry.to_entry() }),
        }
    }

    /// Changes whenever the mapping does; never the same for two different contents in this process.
    pub fn generation(&self) -> u64 {
        self.index.read().unwrap().generation
    }

    /// What the changes committed since `generation` touched; `None` when that is no longer known.
    pub fn changes_since(&self, generation: u64) -> Option<Changes> {
        self.index.read().unwrap().changes_since(generation)
    }

    pub fn owner(&self, key: &str) -> Option<String> {
        self.index.read().unwrap().owners.get(key).map(|o| o.0.id().to_string())
    }

    /// The load balancer an entry belongs to: itself, or the first load balancer up its parents. `None`
    /// for an id the mapping does not hold, or one whose parents lead to no load balancer.
    pub fn loadbalancer_of(&self, id: &str) -> Option<String> {
        let index = self.index.read().unwrap();
        let mut entry = index.entries.get(id)?;
        // Trees are a few levels deep; the bound only guards against a damaged file's cycle.
        for _ in 0..16 {
            if entry.entry.kind() == ResourceType::Loadbalancer {
                return Some(entry.entry.id().to_string());
            }
            entry = index.entries.get(entry.entry.parent()?)?;
        }
        None
    }

    pub fn children(&self, parent: &str) -> Vec<String> {
        self.index.read().unwrap().children.get(parent).map(|s| s.iter().map(|id| id.to_string()).collect()).unwrap_or_default()
    }

    pub fn ids(&self, kind: ResourceType) -> Vec<String> {
        let mut ids: Vec<String> = self.index.read().unwrap().entries.values().filter(|s| s.entry.kind() == kind).map(|s| s.entry.id().to_string()).collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.index.read().unwrap().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in id order.
    pub fn entries(&self) -> Vec<MappingEntry> {
        let mut all: Vec<MappingEntry> = self.index.read().unwrap().entries.values().map(|s| s.entry.to_entry()).collect();
        all.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
        all
    }

    /// Journals and applies changes. A storage failure does not undo an operation LoxiLB already carries:
    /// the change is kept in memory and the error returned (the caller logs it loudly; reconciliation or a
    /// re-sync repairs the file).
    pub fn apply(&self, changes: Vec<MappingChange>) -> Result<(), String> {
        if changes.is_empty() {
            return Ok(());
        }
        // Encoded before the lock, appended with one write (a recovery's tens of thousands of entries took a
        // write each); on failure the changes are still served from memory, and the next snapshot holds them.
        let records: Vec<Vec<u8>> = changes.iter().map(codec::encode_change).collect();
        let mut index = self.index.write().unwrap();
        let failed = self.storage.append_all(&records).err();
        match index.entries.is_empty().then(|| bulk::build_from_puts(&changes)).flatten() {
            Some(built) => *index = built,
            None => {
                index.reserve(changes.len());
                for change in changes {
                    index.apply(change);
                }
            }
        }
        crate::metrics::MAPPING_ENTRIES.set(index.entries.len() as u64);
        // A compaction due while the previous snapshot is still being written waits for a later change:
        // starting it now would hold this operation until that write ends (half a second at 100k).
        if compaction_due(self.storage.journal_length(), index.entries.len()) && !self.storage.snapshot_in_flight() {
            // The entries as of this record, taken under the lock (their roster's pages); the store encodes
            // them once the next segment has started, off this operation's path.
            let taken = index.roster.take();
            let now = crate::caps::clock::rfc3339(crate::caps::clock::now_ms());
            if let Err(e) = self.storage.write_snapshot_with(Box::new(move || codec::encode_snapshot(taken.entries().map(|e| e.view()), &now))) {
                tracing::error!("could not write the mapping snapshot: {e}");
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Consistency problems: both directions disagree, parents missing, children lists wrong.
    pub fn problems(&self) -> Vec<String> {
        let index = self.index.read().unwrap();
        let mut problems = Vec::new();
        for (id, Stored { entry: e, .. }) in &index.entries {
            if index.owners.get(e.key()).map(|o| &**o.0.id()) != Some(&**id) {
                problems.push(format!("{id}: key {} does not map back to it", e.key()));
            }
            if let Some(parent) = e.parent() {
                if !index.entries.contains_key(parent) {
                    problems.push(format!("{id}: parent {parent} has no mapping"));
                }
            }
        }
        problems.sort();
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStore, Snapshot};

    fn entry(id: &str, key: &str, parent: Option<&str>) -> MappingEntry {
        MappingEntry {
            octavia_id: id.into(),
            loxilb_key: key.into(),
            resource_type: if parent.is_some() { ResourceType::Member } else { ResourceType::Loadbalancer },
            parent: parent.map(str::to_string),
            external_ip: "10.0.0.1".into(),
            port: 0,
            protocol: String::new(),
            created_at: "now".into(),
            metadata: r#"{"opaque":true}"#.into(),
        }
    }

    /// A memory store whose snapshot writes stay "in flight" until released, counting them.
    #[derive(Default)]
    struct SlowSnapshots {
        inner: MemoryStore,
        in_flight: std::sync::atomic::AtomicBool,
        written: std::sync::atomic::AtomicUsize,
    }

    impl MappingStore for SlowSnapshots {
        fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
            self.inner.read_snapshot()
        }
        fn write_snapshot(&self, document: Vec<u8>) -> Result<(), String> {
            self.written.fetch_add(1, Ordering::SeqCst);
            self.in_flight.store(true, Ordering::SeqCst);
            self.inner.write_snapshot(document)
        }
        fn snapshot_in_flight(&self) -> bool {
            self.in_flight.load(Ordering::SeqCst)
        }
        fn append(&self, record: &[u8]) -> Result<(), String> {
            self.inner.append(record)
        }
        fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
            self.inner.replay()
        }
        fn journal_length(&self) -> u32 {
            self.inner.journal_length()
        }
        fn sync(&self) -> Result<(), String> {
            self.inner.sync()
        }
        fn damage(&self) -> Vec<String> {
            self.inner.damage()
        }
    }

    #[test]
    fn a_compaction_due_while_a_snapshot_is_written_waits_for_a_later_change() {
        let storage = Arc::new(SlowSnapshots::default());
        let (mapping, _) = Mapping::load(storage.clone() as Arc<dyn MappingStore>).unwrap();
        let put = |i: u32| mapping.apply(vec![MappingChange::Put(entry(&format!("m{i}"), &format!("k{i}"), None))]).unwrap();
        let mut i = 0;
        while storage.written.load(Ordering::SeqCst) == 0 {
            put(i);
            i += 1;
        }
        // The first snapshot is still being written: the compactions due meanwhile are not started.
        for _ in 0..3 * MIN_COMPACTION_RECORDS {
            put(i);
            i += 1;
        }
        assert_eq!(storage.written.load(Ordering::SeqCst), 1);
        assert!(compaction_due(storage.journal_length(), mapping.len()));
        // Once it is in place, the next change compacts.
        storage.in_flight.store(false, Ordering::SeqCst);
        put(i);
        assert_eq!(storage.written.load(Ordering::SeqCst), 2);
        assert_eq!(mapping.len(), i as usize + 1);
    }

    #[test]
    fn changes_are_journalled_and_read_back_by_the_next_load() {
        let storage: Arc<dyn MappingStore> = Arc::new(MemoryStore::default());
        let (mapping, _) = Mapping::load(Arc::clone(&storage)).unwrap();
        mapping
            .apply(vec![
                MappingChange::Put(entry("lb", "10.0.0.1", None)),
                MappingChange::Put(entry("m1", "k1", Some("lb"))),
                MappingChange::Put(entry("m2", "k2", Some("lb"))),
                MappingChange::Remove("m1".into()),
            ])
            .unwrap();
        mapping.write_snapshot().unwrap();
        mapping.apply(vec![MappingChange::Put(entry("m3", "k3", Some("lb")))]).unwrap();

        let (again, loaded) = Mapping::load(storage).unwrap();
        assert_eq!((loaded.entries, loaded.journal_records), (3, 1));
        assert_eq!(again.entries(), mapping.entries());
        assert_eq!(again.children("lb"), vec!["m2", "m3"]);
        assert_eq!(again.owner("k3").as_deref(), Some("m3"));
        assert_eq!(again.get("m2").unwrap().metadata, r#"{"opaque":true}"#, "metadata is kept byte for byte");
        assert!(again.problems().is_empty());
    }

    /// A store that starts the new journal when asked for a snapshot and keeps the encoder for later, as
    /// the file store's writer thread runs it.
    #[derive(Default)]
    struct Deferring {
        journal: std::sync::Mutex<Vec<Vec<u8>>>,
        encoder: std::sync::Mutex<Option<crate::storage::SnapshotEncoder>>,
    }

    impl MappingStore for Deferring {
        fn read_snapshot(&self) -> Result<Option<Snapshot>, String> {
            Ok(None)
        }
        fn write_snapshot(&self, _: Vec<u8>) -> Result<(), String> {
            panic!("compaction must not encode on the operation's path")
        }
        fn write_snapshot_with(&self, encode: crate::storage::SnapshotEncoder) -> Result<(), String> {
            self.journal.lock().unwrap().clear();
            *self.encoder.lock().unwrap() = Some(encode);
            Ok(())
        }
        fn append(&self, record: &[u8]) -> Result<(), String> {
            self.journal.lock().unwrap().push(record.to_vec());
            Ok(())
        }
        fn replay(&self) -> Result<Vec<Vec<u8>>, String> {
            Ok(self.journal.lock().unwrap().clone())
        }
        fn journal_length(&self) -> u32 {
            self.journal.lock().unwrap().len() as u32
        }
        fn sync(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_compaction_encodes_later_what_the_mapping_held_when_it_was_due() {
        let store = Arc::new(Deferring::default());
        let (mapping, _) = Mapping::load(Arc::clone(&store) as Arc<dyn MappingStore>).unwrap();
        let mut n = 0;
        while store.encoder.lock().unwrap().is_none() {
            mapping.apply(vec![MappingChange::Put(entry(&format!("m{n}"), &format!("k{n}"), None))]).unwrap();
            n += 1;
        }
        assert_eq!(n, MIN_COMPACTION_RECORDS as usize + 1);
        // Changed after the compaction was due and before its document was encoded.
        mapping.apply(vec![MappingChange::Remove("m0".into()), MappingChange::Put(entry("late", "k-late", None))]).unwrap();
        let document = (store.encoder.lock().unwrap().take().unwrap())();
        let snapshot = MemoryStore::default();
        snapshot.write_snapshot(document).unwrap();
        for record in store.replay().unwrap() {
            snapshot.append(&record).unwrap();
        }
        let (reloaded, loaded) = Mapping::load(Arc::new(snapshot)).unwrap();
        assert_eq!(loaded.journal_records, 2, "the late changes are the new journal's");
        assert_eq!(reloaded.entries(), mapping.entries());
        assert!(reloaded.get("m0").is_none() && reloaded.get("late").is_some());
    }

    #[test]
    fn a_put_gives_a_new_revision_and_a_new_generation_never_reused_by_another_mapping() {
        let (mapping, _) = Mapping::load(Arc::new(MemoryStore::default())).unwrap();
        let empty = mapping.generation();
        mapping.apply(vec![MappingChange::Put(entry("lb", "10.0.0.1", None))]).unwrap();
        let Lookup::Changed(first) = mapping.get_since("lb", None) else { panic!("an entry") };
        assert_ne!(mapping.generation(), empty);
        assert_eq!(mapping.get_since("lb", Some(first.revision)), Lookup::Unchanged);

        let mut same_id = entry("lb", "10.0.0.1", None);
        same_id.metadata = r#"{"opaque":false}"#.into();
        let before = mapping.generation();
        mapping.apply(vec![MappingChange::Put(same_id.clone())]).unwrap();
        assert_ne!(mapping.generation(), before);
        let Lookup::Changed(second) = mapping.get_since("lb", Some(first.revision)) else { panic!("the new put is seen") };
        assert!(second.revision > first.revision && second.entry == same_id);

        let before = mapping.generation();
        mapping.apply(vec![MappingChange::Remove("lb".into())]).unwrap();
        assert_ne!(mapping.generation(), before);
        assert_eq!(mapping.get_since("lb", Some(first.revision)), Lookup::Absent);

        // A recovery's new mapping: the same puts never hand out a number a policy may still hold.
        let again = Mapping::empty(Arc::new(MemoryStore::default()));
        again.apply(vec![MappingChange::Put(entry("lb", "10.0.0.1", None))]).unwrap();
        let Lookup::Changed(other) = again.get_since("lb", Some(first.revision)) else { panic!("not the old revision") };
        assert!(other.revision > first.revision && again.generation() > mapping.generation());
    }

    #[test]
    fn changes_since_a_generation_name_every_id_key_and_parent_they_touched() {
        let (mapping, _) = Mapping::load(Arc::new(MemoryStore::default())).unwrap();
        mapping.apply(vec![MappingChange::Put(entry("lb", "10.0.0.1", None)), MappingChange::Put(entry("m1", "k1", Some("lb")))]).unwrap();
        let start = mapping.generation();
        assert_eq!(mapping.changes_since(start).map(|c| c.ids), Some(vec![]), "nothing since the current generation");
        // A stamp between two of this mapping's generations, but another mapping's.
        let other = Mapping::load(Arc::new(MemoryStore::default())).unwrap().0;
        other.apply(vec![MappingChange::Put(entry("x", "y", None))]).unwrap();
        mapping.apply(vec![MappingChange::Put(entry("pool", "p", Some("lb")))]).unwrap();
        let middle = mapping.generation();
        // A member moves to another parent under a new key, the load balancer is removed, a member is added.
        mapping
            .apply(vec![
                MappingChange::Put(entry("m1", "k1-new", Some("pool"))),
                MappingChange::Remove("lb".into()),
                MappingChange::Put(entry("m2", "k2", Some("pool"))),
            ])
            .unwrap();
        let changes = mapping.changes_since(start).expect("the log holds every change since");
        assert_eq!(changes.ids, ["lb", "m1", "m2", "pool"]);
        assert_eq!(changes.keys, ["10.0.0.1", "k1", "k1-new", "k2", "p"]);
        assert_eq!(changes.parents, ["lb", "pool"]);
        let later = mapping.changes_since(middle).unwrap();
        assert_eq!(
            (later.ids, later.keys),
            (vec!["lb".to_string(), "m1".into(), "m2".into()], vec!["10.0.0.1".to_string(), "k1".into(), "k1-new".into(), "k2".into()])
        );
        // Generations this index never had, or has forgotten, are not answered.
        assert!(start < other.generation() && other.generation() < middle);
        assert!(mapping.changes_since(other.generation()).is_none(), "another mapping's generation");
        other.apply(vec![MappingChange::Put(entry("z", "w", None))]).unwrap();
        assert!(mapping.changes_since(other.generation()).is_none(), "a generation later than this mapping's");
        for i in 0..CHANGE_LOG {
            mapping.apply(vec![MappingChange::Put(entry(&format!("n{i}"), &format!("kn{i}"), None))]).unwrap();
        }
        assert!(mapping.changes_since(start).is_none(), "older than the log");
        assert!(mapping.changes_since(mapping.generation()).is_some());
    }

    #[test]
    fn a_mapping_built_anew_answers_no_changes_since_the_one_it_replaced() {
        let (mapping, _) = Mapping::load(Arc::new(MemoryStore::default())).unwrap();
        let empty = mapping.generation();
        // A large batch of puts into an empty index (a recovery) builds a new one at once.
        let puts = (0..bulk::PARALLEL_FROM).map(|i| MappingChange::Put(entry(&format!("m{i:05}"), &format!("k{i}"), None))).collect();
        mapping.apply(puts).unwrap();
        assert!(mapping.changes_since(empty).is_none());
        let built = mapping.generation();
        mapping.apply(vec![MappingChange::Remove("m00000".into())]).unwrap();
        assert_eq!(mapping.changes_since(built).unwrap().ids, ["m00000"]);
    }

    #[test]
    fn a_key_under_two_ids_keeps_both_entries_and_is_a_problem() {
        let (mapping, _) = Mapping::load(Arc::new(MemoryStore::default())).unwrap();
        mapping.apply(vec![MappingChange::Put(entry("a", "same", None)), MappingChange::Put(entry("b", "same", None))]).unwrap();
        assert_eq!(mapping.len(), 2, "no entry is dropped silently");
        assert_eq!(mapping.problems(), vec!["a: key same does not map back to it".to_string()]);
    }

    #[test]
    fn a_format_1_0_file_is_handed_over_for_migration_and_a_newer_one_refused() {
        let storage = MemoryStore::default();
        storage
            .write_snapshot(
                br#"{"version": "1.0", "octavia_to_loxilb": {"lb": "10.0.0.1:80/tcp"}, "resource_metadata": {"lb": {"resource_type": "loadbalancer"}}}"#
                    .to_vec(),
            )
            .unwrap();
        let (mapping, _) = Mapping::load(Arc::new(storage)).unwrap();
        let legacy = mapping.take_legacy().expect("1.0 entries");
        assert_eq!((legacy[0].octavia_id.as_str(), legacy[0].loxilb_key.as_deref()), ("lb", Some("10.0.0.1:80/tcp")));
        assert!(mapping.take_legacy().is_none(), "migrated once");

        let storage = MemoryStore::default();
        storage.write_snapshot(br#"{"version": "2.0"}"#.to_vec()).unwrap();
        let err = Mapping::load(Arc::new(storage)).err().expect("refused");
        assert!(err.contains("2.0"), "{err}");
    }

    /// `migrate` in policy.wit: the policy places a 1.0 file's entries in the order they come.
    #[test]
    fn a_format_1_0_files_entries_are_handed_over_in_id_order_each_id_once() {
        let storage = MemoryStore::default();
        let document = r#"{"version": "1.0", "octavia_to_loxilb": {"m2": "k2", "lb": "k0", "m1": "k1"},
            "resource_metadata": {"m2": {"n": 1}, "lb": {"n": 2}, "m1": {"n": 3}, "m2": {"n": 4}}}"#;
        storage.write_snapshot(document.as_bytes().to_vec()).unwrap();
        let (mapping, _) = Mapping::load(Arc::new(storage)).unwrap();
        let legacy = mapping.take_legacy().expect("1.0 entries");
        let ids: Vec<&str> = legacy.iter().map(|e| e.octavia_id.as_str()).collect();
        assert_eq!(ids, ["lb", "m1", "m2"]);
        assert_eq!(legacy[2].metadata, r#"{"n": 4}"#, "of a repeated id, the last (as a JSON reader takes it)");
    }
}
