//! Every entry of the index in pages that a snapshot shares instead of copying.
//!
//! A compaction encodes its snapshot off the operation's path, from the entries as of its journal
//! record, taken under the index's lock. Taken as one `Arc` per entry, that cost the operation 2.5–4.1 ms
//! at 100k mappings (each clone a cache miss on its entry: most of a compaction's cost on the path, and
//! what set the durable p99). Taken as pages it clones ~400 pointers; a change then copies its page only
//! while a snapshot still holds it.

use std::sync::Arc;

use super::packed::Packed;

/// Entries a page holds: a page copied for a change while a snapshot is written is ~2 KB.
const PAGE: usize = 256;

type Page = Vec<Option<Arc<Packed>>>;

#[derive(Clone, Default)]
pub(super) struct Roster {
    pages: Vec<Arc<Page>>,
    /// Slots emptied by removals, filled again first.
    free: Vec<u32>,
}

/// The entries as they were when taken, whatever changes after.
pub(super) struct Taken(Vec<Arc<Page>>);

impl Roster {
    /// A roster of `entries`, in slots 0, 1, 2… in their order.
    pub fn of(entries: &[Arc<Packed>]) -> Roster {
        Roster { pages: entries.chunks(PAGE).map(|chunk| Arc::new(chunk.iter().cloned().map(Some).collect())).collect(), free: Vec::new() }
    }

    /// Places an entry, answering its slot.
    pub fn add(&mut self, entry: Arc<Packed>) -> u32 {
        if let Some(slot) = self.free.pop() {
            *self.slot(slot) = Some(entry);
            return slot;
        }
        if self.pages.last().is_none_or(|page| page.len() == PAGE) {
            self.pages.push(Arc::new(Vec::with_capacity(PAGE)));
        }
        let last = self.pages.len() - 1;
        let page = Arc::make_mut(&mut self.pages[last]);
        page.push(Some(entry));
        u32::try_from(last * PAGE + page.len() - 1).expect("fewer than 4 billion entries")
    }

    pub fn remove(&mut self, slot: u32) {
        *self.slot(slot) = None;
        self.free.push(slot);
    }

    fn slot(&mut self, slot: u32) -> &mut Option<Arc<Packed>> {
        let slot = slot as usize;
        &mut Arc::make_mut(&mut self.pages[slot / PAGE])[slot % PAGE]
    }

    pub fn take(&self) -> Taken {
        Taken(self.pages.clone())
    }
}

impl Taken {
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Packed>> {
        self.0.iter().flat_map(|page| page.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::codec::EntryRef;
    use crate::runtime::bindings::mapping::ResourceType;

    fn packed(id: &str, metadata: &str) -> Arc<Packed> {
        let e = EntryRef {
            id,
            key: id,
            kind: ResourceType::Member,
            parent: None,
            external_ip: "10.0.0.1",
            port: 80,
            protocol: "tcp",
            created_at: "2026-12-06T00:00:00Z",
            metadata,
        };
        Arc::new(Packed::new(&e, Arc::from(id)))
    }

    fn listed(taken: &Taken) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = taken.entries().map(|e| (e.id().to_string(), e.view().metadata.to_string())).collect();
        all.sort();
        all
    }

    #[test]
    fn what_was_taken_stays_as_it_was_while_the_roster_changes() {
        let first: Vec<Arc<Packed>> = (0..600).map(|i| packed(&format!("m-{i:03}"), "{}")).collect();
        let mut roster = Roster::of(&first);
        let before = roster.take();
        let as_taken = listed(&before);
        // A change in every page, a removal, a slot filled again and a page added.
        for slot in [0, 300, 599] {
            roster.remove(slot);
            assert_eq!(roster.add(packed(&format!("m-{slot:03}"), r#"{"weight":2}"#)), slot, "a freed slot is filled again first");
        }
        roster.remove(10);
        let added = roster.add(packed("m-new", "{}"));
        assert_eq!(added, 10);
        let grown = roster.add(packed("m-grown", "{}"));
        assert_eq!(grown, 600);
        assert_eq!(listed(&before), as_taken, "a change reached what a snapshot had taken");
        let after = listed(&roster.take());
        assert_eq!(after.len(), 601);
        assert!(after.contains(&("m-300".into(), r#"{"weight":2}"#.into())) && !after.iter().any(|(id, _)| id == "m-010"));
        assert!(after.iter().any(|(id, _)| id == "m-new") && after.iter().any(|(id, _)| id == "m-grown"));
    }
}
