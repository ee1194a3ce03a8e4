//! The index of a whole snapshot, built at once and on two threads: a restarted host answers nothing until
//! its mapping is indexed, and at 100k mappings one entry at a time (`Index::put`) took ~55 ms. The result is
//! the index those puts build, in id order (`a_bulk_index_is_the_index_of_the_same_puts`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::codec::EntryRef;
use super::packed::{ByKey, Packed};
use super::roster::Roster;
use super::{next_stamp, Index, Map, Set, Stored};
use crate::runtime::bindings::mapping::MappingChange;

/// From this many entries on, the work is split over two threads.
pub(super) const PARALLEL_FROM: usize = 8192;

/// The index of `entries`, whose ids must rise strictly (a scan of the writer's layout, which sorts by id).
pub(super) fn build(entries: &[EntryRef]) -> Index {
    let stamp = next_stamp();
    let packed = pack(entries);
    std::thread::scope(|s| {
        let children = s.spawn(|| children(entries, &packed));
        let mut index = entries_and_owners(&packed, stamp);
        index.children = children.join().expect("indexing children does not panic");
        index
    })
}

/// The index of a large batch of puts into an empty index (a recovery into an empty mapping), built at
/// once; `None` unless it is exactly what the puts one by one would build: only puts, distinct ids and
/// distinct keys (else a later put would override an earlier one, which the puts' order decides).
pub(super) fn build_from_puts(changes: &[MappingChange]) -> Option<Index> {
    if changes.len() < PARALLEL_FROM {
        return None;
    }
    let mut entries = changes
        .iter()
        .map(|c| match c {
            MappingChange::Put(e) => Some(EntryRef::from(e)),
            MappingChange::Remove(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    entries.sort_unstable_by(|a, b| a.id.cmp(b.id));
    if entries.windows(2).any(|w| w[0].id == w[1].id) {
        return None;
    }
    let index = build(&entries);
    (index.owners.len() == entries.len()).then_some(index)
}

/// Each entry packed with its id, the two halves of a large snapshot at once.
fn pack(entries: &[EntryRef]) -> Vec<Arc<Packed>> {
    let one = |part: &[EntryRef]| part.iter().map(|e| Arc::new(Packed::new(e, Arc::from(e.id)))).collect::<Vec<_>>();
    if entries.len() < PARALLEL_FROM {
        return one(entries);
    }
    let (first, second) = entries.split_at(entries.len() / 2);
    std::thread::scope(|s| {
        let second = s.spawn(|| one(second));
        let mut packed = one(first);
        packed.extend(second.join().expect("packing does not panic"));
        packed
    })
}

fn entries_and_owners(packed: &[Arc<Packed>], stamp: u64) -> Index {
    let mut entries = Map::with_capacity_and_hasher(packed.len(), Default::default());
    let mut owners = Set::with_capacity_and_hasher(packed.len(), Default::default());
    for (slot, entry) in (0..).zip(packed) {
        // In id order, as `Index::put` would take them: of entries sharing a key (a damaged file), the last.
        owners.replace(ByKey(Arc::clone(entry)));
        entries.insert(Arc::clone(entry.id()), Stored { revision: stamp, entry: Arc::clone(entry), slot });
    }
    Index::new(entries, Roster::of(packed), owners, Map::default(), stamp)
}

/// Children by parent. Unlike `Index::put`, which keys a parent's children by the parent's own id (its text
/// held once), each parent here gets a copy of its id: at 100k mappings, finding 25k parents among the
/// entries took this thread ~9 ms longer than the other one's whole work, and the copies take ~1.5 MB.
fn children(entries: &[EntryRef], packed: &[Arc<Packed>]) -> Map<Arc<str>, BTreeSet<Arc<str>>> {
    let mut children: Map<Arc<str>, BTreeSet<Arc<str>>> = Map::default();
    for (e, p) in entries.iter().zip(packed) {
        let Some(parent) = e.parent else { continue };
        let id = Arc::clone(p.id());
        match children.get_mut(parent) {
            Some(set) => {
                set.insert(id);
            }
            None => {
                children.insert(Arc::from(parent), BTreeSet::from([id]));
            }
        }
    }
    children
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::mapping::{MappingEntry, ResourceType};

    /// Trees of a load balancer, a pool and members (some under a pool that is not mapped, two under one
    /// key), in id order.
    fn mapping(trees: usize) -> Vec<MappingEntry> {
        let entry = |id: String, kind, parent: Option<String>, key: String| MappingEntry {
            octavia_id: id,
            loxilb_key: key,
            resource_type: kind,
            parent,
            external_ip: "10.0.0.1".into(),
            port: 80,
            protocol: "tcp".into(),
            created_at: "2026-12-05T00:00:00Z".into(),
            metadata: "{}".into(),
        };
        let mut all = Vec::new();
        for t in 0..trees {
            all.push(entry(format!("lb{t:05}"), ResourceType::Loadbalancer, None, format!("lb-key-{t}")));
            all.push(entry(format!("pool{t:05}"), ResourceType::Pool, Some(format!("lb{t:05}")), format!("pool-key-{t}")));
            for m in 0..3 {
                let pool = if t % 7 == 0 { format!("gone{t:05}") } else { format!("pool{t:05}") };
                // Tree 1's last two members under one key (a damaged file): the later id owns it.
                let key = if t == 1 && m == 2 { format!("member-key-{t}-1") } else { format!("member-key-{t}-{m}") };
                all.push(entry(format!("member{t:05}-{m}"), ResourceType::Member, Some(pool), key));
            }
        }
        all.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
        all
    }

    #[test]
    fn a_bulk_index_is_the_index_of_the_same_puts() {
        for trees in [3, PARALLEL_FROM / 4] {
            let entries = mapping(trees);
            let refs: Vec<EntryRef> = entries.iter().map(Into::into).collect();
            let mut one_by_one = Index::default();
            entries.iter().for_each(|e| one_by_one.put(e.into()));
            let bulk = build(&refs);

            assert_eq!(bulk.entries.len(), one_by_one.entries.len());
            for (id, stored) in &one_by_one.entries {
                assert_eq!(bulk.entries[id].entry.to_entry(), stored.entry.to_entry());
            }
            assert_eq!(bulk.owners.len(), one_by_one.owners.len());
            for owner in &one_by_one.owners {
                assert_eq!(bulk.owners.get(owner.0.key()).map(|o| o.0.id()), Some(owner.0.id()));
            }
            assert_eq!(bulk.children, one_by_one.children);
            // An unmapped parent's children are indexed too.
            assert!(bulk.children.contains_key("gone00000") && !bulk.entries.contains_key("gone00000"));
            assert!(bulk.entries.values().all(|s| s.revision == bulk.generation));
            assert_eq!(&**bulk.owners.get("member-key-1-1").unwrap().0.id(), "member00001-2");
        }
    }

    #[test]
    fn a_large_batch_of_puts_is_indexed_at_once_only_when_their_order_cannot_matter() {
        let mut entries = mapping(PARALLEL_FROM / 4);
        entries.retain(|e| e.octavia_id != "member00001-2"); // no shared key
        let puts = |entries: &[MappingEntry]| entries.iter().rev().cloned().map(MappingChange::Put).collect::<Vec<_>>();
        let built = build_from_puts(&puts(&entries)).expect("distinct ids and keys, in any order");
        let mut one_by_one = Index::default();
        entries.iter().for_each(|e| one_by_one.put(e.into()));
        assert_eq!(built.children, one_by_one.children);
        assert_eq!(built.entries.len(), one_by_one.entries.len());

        let mut same_id = puts(&entries);
        same_id.push(same_id[0].clone());
        let mut shared_key = entries.clone();
        shared_key[1].loxilb_key = shared_key[0].loxilb_key.clone();
        let mut with_remove = puts(&entries);
        with_remove.push(MappingChange::Remove("lb00001".into()));
        for changes in [same_id, puts(&shared_key), with_remove, puts(&entries[..PARALLEL_FROM - 1])] {
            assert!(build_from_puts(&changes).is_none());
        }
    }
}
