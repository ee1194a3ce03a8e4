//! The mapping as a policy reads it, and the host's log and clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::bindings::loxilb::octavia::mapping_view::{Changes, Lookup, RevisedEntry};
use crate::mapping::{MappingChange, MappingEntry, ResourceType};

/// Where a policy reads the mapping from.
pub trait Source {
    fn get(&self, id: &str) -> Option<MappingEntry>;
    /// The entry of an id with its revision, unless its revision is still `known`. A source without
    /// revisions answers every entry as changed (revision 0), so nothing is ever taken as unchanged.
    fn get_since(&self, id: &str, known: Option<u64>) -> Lookup {
        let _ = known;
        self.get(id).map_or(Lookup::Absent, |entry| Lookup::Changed(RevisedEntry { revision: 0, entry }))
    }
    /// Changes whenever the mapping does, and is never the same for two different contents, so a policy
    /// may keep what it read while it stays the same; `None` for a source without revisions (nothing read
    /// from it may be kept beyond one call).
    fn generation(&self) -> Option<u64> {
        None
    }
    /// What the changes since `generation` touched; `None` when the source does not know (then nothing read
    /// under that generation may be reused without asking again).
    fn changes_since(&self, generation: u64) -> Option<Changes> {
        let _ = generation;
        None
    }
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
    fn get_since(&self, id: &str, known: Option<u64>) -> Lookup {
        crate::bindings::loxilb::octavia::mapping_view::get_since(id, known)
    }
    fn generation(&self) -> Option<u64> {
        Some(crate::bindings::loxilb::octavia::mapping_view::generation())
    }
    fn changes_since(&self, generation: u64) -> Option<Changes> {
        crate::bindings::loxilb::octavia::mapping_view::changes_since(generation)
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

/// Revisions and generations of every `Memory` in this process: as the host's, no number describes two
/// different contents, so what a policy keeps from one memory is never taken for another's.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// A mapping held in memory with the host's rules (a key maps back to the id it was last put under, every
/// put gives a new revision): native tests and benches.
#[derive(Default, Clone, Debug)]
pub struct Memory {
    /// Each entry with its revision.
    entries: BTreeMap<String, (u64, MappingEntry)>,
    owners: BTreeMap<String, String>,
    children: BTreeMap<String, BTreeSet<String>>,
    /// 0 only while nothing was ever put: every empty memory holds the same.
    generation: u64,
    /// The latest changes (the generation each made, the id, its keys and parents before and after),
    /// oldest first, for `changes_since`.
    log: std::collections::VecDeque<(u64, String, Vec<String>, Vec<String>)>,
    /// Every change after this generation is in `log`.
    logged_since: u64,
}

/// How many changes a `Memory` remembers for `changes_since`, as the host does.
const MEMORY_LOG: usize = 512;

impl Memory {
    pub fn apply(&mut self, change: MappingChange) {
        match change {
            MappingChange::Put(e) => self.put(e),
            MappingChange::Remove(id) => self.remove(&id),
        }
    }

    pub fn put(&mut self, e: MappingEntry) {
        let (mut keys, mut parents) = self.unlink(&e.octavia_id).map(|old| (vec![old.loxilb_key], Vec::from_iter(old.parent))).unwrap_or_default();
        keys.push(e.loxilb_key.clone());
        parents.extend(e.parent.clone());
        self.record(e.octavia_id.clone(), keys, parents);
        self.owners.insert(e.loxilb_key.clone(), e.octavia_id.clone());
        if let Some(parent) = &e.parent {
            self.children.entry(parent.clone()).or_default().insert(e.octavia_id.clone());
        }
        self.entries.insert(e.octavia_id.clone(), (self.generation, e));
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(old) = self.unlink(id) {
            self.record(id.to_string(), vec![old.loxilb_key], Vec::from_iter(old.parent));
        }
    }

    /// A new generation, and what its change touched.
    fn record(&mut self, id: String, keys: Vec<String>, parents: Vec<String>) {
        self.generation = NEXT_STAMP.fetch_add(1, Ordering::Relaxed);
        if self.log.len() == MEMORY_LOG {
            self.logged_since = self.log.pop_front().map_or(self.logged_since, |c| c.0);
        }
        self.log.push_back((self.generation, id, keys, parents));
    }

    /// Takes an entry out of every map, handing it back.
    fn unlink(&mut self, id: &str) -> Option<MappingEntry> {
        let (_, old) = self.entries.remove(id)?;
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
        Some(old)
    }

    pub fn entries(&self) -> impl Iterator<Item = &MappingEntry> {
        self.entries.values().map(|(_, e)| e)
    }
}

impl Source for Memory {
    fn get(&self, id: &str) -> Option<MappingEntry> {
        self.entries.get(id).map(|(_, e)| e.clone())
    }
    fn get_since(&self, id: &str, known: Option<u64>) -> Lookup {
        match self.entries.get(id) {
            None => Lookup::Absent,
            Some((revision, _)) if known == Some(*revision) => Lookup::Unchanged,
            Some((revision, entry)) => Lookup::Changed(RevisedEntry { revision: *revision, entry: entry.clone() }),
        }
    }
    fn generation(&self) -> Option<u64> {
        Some(self.generation)
    }
    fn changes_since(&self, generation: u64) -> Option<Changes> {
        let first = self.log.partition_point(|c| c.0 <= generation);
        let known = generation == self.logged_since || first.checked_sub(1).is_some_and(|i| self.log[i].0 == generation);
        if !known || generation > self.generation {
            return None;
        }
        let (mut ids, mut keys, mut parents) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (_, id, k, p) in self.log.range(first..) {
            ids.insert(id.clone());
            keys.extend(k.iter().cloned());
            parents.extend(p.iter().cloned());
        }
        Some(Changes { ids: ids.into_iter().collect(), keys: keys.into_iter().collect(), parents: parents.into_iter().collect() })
    }
    fn owner(&self, key: &str) -> Option<String> {
        self.owners.get(key).cloned()
    }
    fn children(&self, parent: &str) -> Vec<String> {
        self.children.get(parent).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
    fn ids(&self, kind: ResourceType) -> Vec<String> {
        self.entries.values().filter(|(_, e)| e.resource_type == kind).map(|(_, e)| e.octavia_id.clone()).collect()
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

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-25T08:00:00Z`): a policy has no calendar of its own.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_712_345_678_900), "2024-04-05T19:34:38Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
