//! A compaction: the mapping written as a new snapshot, and the state read back in place from it.
//!
//! Every map of a snapshot is sorted with one member per line, so the new snapshot is the loaded one
//! with the lines of what changed since replaced, removed or inserted: the runs of lines between them are
//! copied as they are, and the cost is a search per change plus copying bytes, not a step per entry. The
//! state then continues over the bytes just written (what the next compaction copies from, and what a
//! restart loads) with nothing changed since, keeping every entry it had read or decoded, repointed at
//! its line in the new bytes.
//!
//! A loaded file whose metadata lines a merge cannot trust (edited by hand: lines missing, added or moved
//! around a changed entry), or names that need escaping, are written by `store::encode_snapshot`'s
//! entry-by-entry merge instead, and the state is read back from that as a load would.

use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use crate::base::{self, Base, Lines, Section};
use crate::state::{Entry, State, Stored};
use crate::store::{self, bytewise};

pub struct Compacted {
    pub bytes: Arc<Vec<u8>>,
    pub state: State,
}

/// Writes the new snapshot of `state` and returns it with the state read back from it.
pub fn compact(state: State, now: &str) -> Compacted {
    match merge(&state, now) {
        Ok((bytes, merged)) => carry_over(state, Arc::new(bytes), merged),
        Err(Untrusted) => {
            let bytes = Arc::new(store::encode_snapshot(&state, now));
            let len = state.len();
            let state = store::rebased(Arc::clone(&bytes)).filter(|s| s.len() == len).unwrap_or(state);
            Compacted { bytes, state }
        }
    }
}

/// The loaded lines cannot be merged as they lie.
struct Untrusted;

/// A map's lines in the loaded snapshot: where they are and where each starts.
struct Old<'a> {
    lines: Range<usize>,
    starts: &'a [u32],
}

/// One map as a merge wrote it.
struct Merged {
    lines: Range<usize>,
    /// Where each written line starts.
    starts: Vec<u32>,
    /// Per written line: the loaded line it copies, or the change it writes.
    from: Vec<Source>,
    /// Per change: where in the loaded lines it goes (the index of the first line not before it), and
    /// whether that line is its own.
    seeks: Vec<(u32, bool)>,
}

#[derive(Clone, Copy)]
enum Source {
    Old(u32),
    Change(u32),
}

/// Writes one top-level map: the loaded lines `old` of `src` (sorted by name) with `changes` (sorted by
/// name) applied, copying the runs of lines between changes as they are. `line` writes a change's value
/// given where its loaded line starts, if it had one, and says whether there is a line at all (a removal
/// has none). `expect_seeks`, if given, is where each change must go: a map whose order a load did not
/// check is trusted only as far as that.
fn merge_map<T>(
    out: &mut Vec<u8>,
    name: &str,
    src: &[u8],
    old: Old,
    changes: &[(&str, T)],
    expect_seeks: Option<&[(u32, bool)]>,
    mut line: impl FnMut(&mut Vec<u8>, &T, Option<usize>) -> Result<bool, Untrusted>,
) -> Result<Merged, Untrusted> {
    out.extend_from_slice(b"  \"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": {");
    let n = old.starts.len();
    let mut map = Merged {
        lines: 0..0,
        starts: Vec::with_capacity(n + changes.len()),
        from: Vec::with_capacity(n + changes.len()),
        seeks: Vec::with_capacity(changes.len()),
    };
    let begin_line = |out: &mut Vec<u8>, map: &Merged| out.extend_from_slice(if map.starts.is_empty() { b"\n" } else { b",\n" });
    // Lines `run` of the loaded map, copied whole but for the separator after the last of them.
    let copy = |out: &mut Vec<u8>, map: &mut Merged, run: Range<usize>| {
        if run.is_empty() {
            return;
        }
        begin_line(out, map);
        let (start, end) = (old.starts[run.start] as usize, if run.end == n { old.lines.end } else { old.starts[run.end] as usize - 2 });
        let to = out.len();
        for i in run {
            map.starts.push((old.starts[i] as usize - start + to) as u32);
            map.from.push(Source::Old(i as u32));
        }
        out.extend_from_slice(&src[start..end]);
    };
    let mut cursor = 0;
    for (i, (member, change)) in changes.iter().enumerate() {
        let at = base::seek(src, old.starts, cursor, member);
        copy(out, &mut map, cursor..at);
        let found = at < n && base::is_named(src, old.starts[at] as usize, member);
        if expect_seeks.is_some_and(|expected| expected[i] != (at as u32, found)) {
            return Err(Untrusted);
        }
        map.seeks.push((at as u32, found));
        cursor = if found { at + 1 } else { at };
        let mark = out.len();
        begin_line(out, &map);
        let start = out.len();
        out.extend_from_slice(b"    ");
        store::json_string(out, member);
        out.extend_from_slice(b": ");
        if line(out, change, found.then(|| old.starts[at] as usize))? {
            map.starts.push(start as u32);
            map.from.push(Source::Change(i as u32));
        } else {
            out.truncate(mark);
        }
    }
    copy(out, &mut map, cursor..n);
    match map.starts.first() {
        Some(&start) => {
            map.lines = start as usize..out.len();
            out.extend_from_slice(b"\n  }");
        }
        None => {
            map.lines = out.len()..out.len();
            out.extend_from_slice(b"}");
        }
    }
    Ok(map)
}

/// What `merge` wrote, for `carry_over`.
struct Written {
    /// The changed ids, in the order of the changes.
    ids: Vec<String>,
    id_map: Merged,
    reverse: Merged,
    children: Merged,
    metadata: Merged,
}

fn merge(state: &State, now: &str) -> Result<(Vec<u8>, Written), Untrusted> {
    let base = state.base();
    let src: &[u8] = base.map_or(&[], |b| b.bytes());
    let old = |section| match base {
        Some(b) => {
            let (lines, starts) = b.section(section);
            Old { lines, starts }
        }
        None => Old { lines: 0..0, starts: &[] },
    };
    // The metadata lines are not checked by a load: one per id, or they cannot follow the ids' runs.
    if old(Section::Metadata).starts.len() != old(Section::Ids).starts.len() {
        return Err(Untrusted);
    }

    let mut ids: Vec<(&str, Option<&Entry>)> = state.changes().collect();
    ids.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    let mut keys: Vec<(&str, Option<&str>)> = state.changed_keys().collect();
    keys.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    // What is written must read back in place: names and ids without escapes (here; the parents below,
    // and a parent's children are loaded or changed ids).
    let plain = ids.iter().all(|(id, e)| base::is_plain(id) && e.is_none_or(|e| base::is_plain(&e.key)))
        && keys.iter().all(|(key, id)| base::is_plain(key) && id.is_none_or(base::is_plain));
    if !plain {
        return Err(Untrusted);
    }

    let mut out = store::start_document(state.len(), now);
    let id_map =
        merge_map(&mut out, "octavia_to_loxilb", src, old(Section::Ids), &ids, None, |out, e, _| Ok(e.map(|e| store::json_string(out, &e.key)).is_some()))?;
    out.extend_from_slice(b",\n");
    let reverse =
        merge_map(&mut out, "loxilb_to_octavia", src, old(Section::Keys), &keys, None, |out, id, _| Ok(id.map(|id| store::json_string(out, id)).is_some()))?;
    out.extend_from_slice(b",\n");
    // The parents whose children changed: those of the entries put since the load (with those
    // entries), and the loaded parents of the entries changed since.
    let mut parents: crate::state::Map<&str, Option<&BTreeSet<String>>> = state.changed_children().map(|(parent, put)| (parent, Some(put))).collect();
    if let Some(base) = base {
        for &(at, _) in id_map.seeks.iter().filter(|(_, found)| *found) {
            if let Some(parent) = base.parent(at as usize).map_err(|_| Untrusted)? {
                parents.entry(parent).or_insert(None);
            }
        }
    }
    let mut parents: Vec<(&str, Option<&BTreeSet<String>>)> = parents.into_iter().collect();
    parents.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    if !parents.iter().all(|(parent, _)| base::is_plain(parent)) {
        return Err(Untrusted);
    }
    // A parent's children: its loaded ones less those changed since, and those put since.
    let children = merge_map(&mut out, "children", src, old(Section::Children), &parents, None, |out, put, loaded| {
        let mut ids = match loaded {
            Some(start) => base::member_value(src, start).and_then(|value| base::id_list(src, value)).ok_or(Untrusted)?,
            None => Vec::new(),
        };
        ids.retain(|id| !state.is_changed(id));
        if let Some(put) = put {
            let sort = !ids.is_empty();
            ids.extend(put.iter().map(String::as_str));
            if sort {
                ids.sort_unstable_by(|a, b| bytewise(a, b));
            }
        }
        if ids.is_empty() {
            return Ok(false);
        }
        out.push(b'[');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            store::json_string(out, id);
        }
        out.push(b']');
        Ok(true)
    })?;
    out.extend_from_slice(b",\n");
    // Their order not checked by a load, the metadata lines must take every change where the ids took
    // it: then both maps have their lines in the same order, and so do the maps written.
    let metadata = merge_map(&mut out, "resource_metadata", src, old(Section::Metadata), &ids, Some(&id_map.seeks), |out, e, _| {
        Ok(e.map(|e| store::write_metadata(out, e)).is_some())
    })?;
    store::end_document(&mut out, state.len());
    let written = Written { ids: ids.iter().map(|(id, _)| id.to_string()).collect(), id_map, reverse, children, metadata };
    Ok((out, written))
}

/// The state over the snapshot just written: nothing changed since, every entry read before kept.
fn carry_over(state: State, bytes: Arc<Vec<u8>>, written: Written) -> Compacted {
    let (base, mut changed) = state.into_parts();
    let (old_metadata_end, old_metadata) = base.as_deref().map_or((0, Vec::new()), |b| {
        let (lines, starts) = b.section(Section::Metadata);
        (lines.end, starts.to_vec())
    });
    // Where an old entry's stored metadata lies within its line (the one with its index), if it does: a
    // line moved by hand was found elsewhere, and such an entry is read again from the new bytes.
    let offset_in_line = |i: usize, stored: &Stored| {
        let line_end = old_metadata.get(i + 1).map_or(old_metadata_end, |&next| next as usize);
        let offset = stored.metadata.start.checked_sub(old_metadata[i] as usize)?;
        (stored.metadata.end <= line_end).then_some(offset)
    };
    // Only this state holds its base (a compaction never runs beside a plan); if another did, its
    // entries are read again as needed.
    let (old_bytes, mut old_entries) = match base.map(Rc::try_unwrap) {
        Some(Ok(base)) => {
            let bytes = Arc::clone(base.bytes());
            (Some(bytes), base.into_entries())
        }
        _ => (None, Vec::new()),
    };
    // An entry's stored metadata, moved to metadata line `line` of the new bytes, `offset` bytes into it.
    let moved = |stored: &Stored, line: usize, offset: usize| {
        let to = written.metadata.starts[line] as usize + offset;
        Stored {
            bytes: Arc::clone(&bytes),
            metadata: to..to + stored.metadata.len(),
            object: to + (stored.object.start - stored.metadata.start)..to + (stored.object.end - stored.metadata.start),
        }
    };
    let mut entries = Vec::with_capacity(written.id_map.from.len());
    // The id and metadata maps were written with the same lines in the same order (see `merge`).
    for (line, source) in written.id_map.from.iter().enumerate() {
        let cell = match *source {
            Source::Old(i) => {
                let i = i as usize;
                match old_entries.get_mut(i).and_then(OnceCell::take) {
                    // Read from the old bytes: its line was copied, at the same place in it.
                    Some(Ok(mut entry)) if entry.stored_at().is_some_and(|s| old_bytes.as_ref().is_some_and(|b| Arc::ptr_eq(&s.bytes, b))) => {
                        let stored = entry.stored_at().expect("checked");
                        let stored = offset_in_line(i, stored).map(|offset| moved(stored, line, offset));
                        stored.map(|stored| {
                            entry.keep_stored(stored);
                            OnceCell::from(Ok(entry))
                        })
                    }
                    // Encoded by an earlier compaction and not stored since: its object is decoded.
                    Some(Ok(entry)) if entry.stored_at().is_none() => Some(OnceCell::from(Ok(entry))),
                    _ => None,
                }
                .unwrap_or_default()
            }
            Source::Change(change) => {
                let id = &written.ids[change as usize];
                let mut entry = changed.remove(id).flatten().expect("a written id line is a put");
                if let Some(stored) = entry.stored_at() {
                    // Written from its stored bytes after `    "<id>": `.
                    let stored = moved(stored, line, id.len() + 8);
                    entry.keep_stored(stored);
                }
                OnceCell::from(Ok(Box::new(entry)))
            }
        };
        entries.push(cell);
    }
    let lines = |map: Merged| Lines::new(map.lines, Some(map.starts));
    let base = Base::written(Arc::clone(&bytes), lines(written.id_map), lines(written.reverse), lines(written.children), lines(written.metadata), entries);
    Compacted { bytes, state: State::from_base(base) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Change;
    use crate::store::tests::{lb, moved, populated, Model};

    /// Where a base's maps and their lines are, to compare a compaction's with a load's.
    fn layout_of(base: &Base) -> Vec<(Range<usize>, Vec<u32>)> {
        [Section::Ids, Section::Keys, Section::Children, Section::Metadata]
            .into_iter()
            .map(|section| {
                let (lines, starts) = base.section(section);
                (if lines.is_empty() { 0..0 } else { lines }, starts.to_vec())
            })
            .collect()
    }

    /// Compacts `state` and checks the result against the entry-by-entry encoding, a fresh load of the
    /// bytes, and the model; entries decoded before stay decoded, pointed at the new bytes.
    fn compact_and_check(state: State, model: &Model, step: usize) -> State {
        let expected = store::encode_snapshot(&state, "t");
        let decoded: Vec<String> = state.iter().filter(|(_, e)| e.is_decoded()).map(|(id, _)| id.to_string()).collect();
        let compacted = compact(state, "t");
        assert_eq!(String::from_utf8_lossy(&compacted.bytes), String::from_utf8_lossy(&expected), "step {step}");
        let state = compacted.state;
        let base = state.base().expect("read back in place");
        assert!(Arc::ptr_eq(base.bytes(), &compacted.bytes));
        assert_eq!(state.changes().count(), 0, "nothing changed since the snapshot");
        let (loaded, _) = store::decode_snapshot(expected).unwrap();
        assert_eq!(layout_of(base), layout_of(loaded.base().unwrap()), "step {step}");
        model.check(&state, step);
        // Lookups by the lines' starts the compaction computed.
        for (key, id) in &model.owners {
            assert_eq!(state.owner(key), Some(id.as_str()), "step {step}");
        }
        for id in model.entries.keys() {
            assert_eq!(state.get(id), model.entries.get(id), "step {step}");
        }
        for missing in ["", "10.0.9", "10.0.9.", "m0", "m999", "p", "p9", "zz"] {
            assert_eq!(state.owner(missing), None, "{missing}");
            assert!(missing == "p" || state.get(missing).is_none(), "{missing}");
        }
        for (id, entry) in state.iter() {
            if let Some(stored) = entry.stored_at() {
                assert!(Arc::ptr_eq(&stored.bytes, &compacted.bytes), "{id} still points at older bytes");
            }
        }
        for id in &decoded {
            assert!(state.get(id).unwrap().is_decoded(), "step {step}: {id} was decoded before the compaction");
        }
        state
    }

    #[test]
    fn merging_changes_into_the_loaded_lines_writes_what_a_full_encoding_writes_and_reads_back_the_same() {
        let (policy, _) = populated();
        let (member, pool) = (policy.state.get("m1").unwrap().clone(), policy.state.get("p").unwrap().clone());
        let mut state = policy.state.clone();
        let mut model = Model::of(&state);
        let mut seed = 11u64;
        for step in 0..1500 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (n, p) = ((seed >> 33) % 80, (seed >> 45) % 5);
            let change = match (seed >> 20) % 8 {
                0..=2 => {
                    // A member put under one of five pools, sometimes under a key another member holds.
                    let key = if (seed >> 50).is_multiple_of(7) { format!("10.0.9.{}", (n + 1) % 80) } else { format!("10.0.9.{n}") };
                    let entry = moved(&moved(&member, "id", &format!("m{n:02}"), &key), "pool_id", &format!("p{p}"), &key);
                    Change::Put { id: format!("m{n:02}"), entry }
                }
                3 => Change::Put { id: format!("p{p}"), entry: moved(&pool, "id", &format!("p{p}"), &format!("10.0.0.1/p{p}")) },
                4 => Change::Put { id: format!("lb{n:02}"), entry: lb(&format!("lb{n:02}"), &format!("10.1.0.{n}")) },
                _ => Change::Remove { id: [format!("m{n:02}"), format!("p{p}"), format!("lb{n:02}")][(seed >> 40) as usize % 3].clone() },
            };
            state.apply(change.clone());
            model.apply(&change);
            // Some entries read and decoded, as operations leave them.
            if let Some(entry) = state.get(&format!("m{:02}", (n + 3) % 80)) {
                entry.object();
            }
            match (seed >> 55) % 40 {
                0..=2 => state = compact_and_check(state, &model, step),
                3 => state = store::decode_snapshot(store::encode_snapshot(&state, "t")).unwrap().0,
                _ => {}
            }
        }
        compact_and_check(state, &model, 1500);
    }

    #[test]
    fn a_mapping_built_from_scratch_is_written_whole() {
        let (policy, _) = populated();
        let model = Model::of(&policy.state);
        assert!(policy.state.base().is_none());
        compact_and_check(policy.state, &model, 0);
        compact_and_check(State::default(), &Model::of(&State::default()), 0);
    }

    #[test]
    fn metadata_lines_moved_by_hand_are_written_entry_by_entry() {
        let (policy, _) = populated();
        let text = String::from_utf8(store::encode_snapshot(&policy.state, "t")).unwrap();
        let m1 = text.lines().find(|l| l.starts_with("    \"m1\": {")).unwrap().trim_end_matches(',').to_string();
        let m2 = text.lines().find(|l| l.starts_with("    \"m2\": {")).unwrap().trim_end_matches(',').to_string();
        let swapped = text.replacen(&m1, "@@", 1).replacen(&m2, &m1, 1).replacen("@@", &m2, 1);
        let (mut state, _) = store::decode_snapshot(swapped.clone().into_bytes()).unwrap();
        assert!(state.base().is_some(), "read in place (metadata lines are not checked by a load)");
        let mut model = Model::of(&state);
        let entry = moved(state.get("m1").unwrap(), "id", "m1", "10.0.9.1");
        let change = Change::Put { id: "m1".into(), entry };
        state.apply(change.clone());
        model.apply(&change);
        let compacted = compact(state, "t");
        let (expected, _) = store::decode_snapshot(compacted.bytes.to_vec()).unwrap();
        model.check(&expected, 0);
        model.check(&compacted.state, 0);
        let text = String::from_utf8(compacted.bytes.to_vec()).unwrap();
        assert_eq!(text.matches("\n    \"m1\": {").count(), 1, "one metadata line for m1:\n{text}");

        // Changes elsewhere merge, copying the moved lines as they are; the entries read from them
        // before are read again from the new bytes, not taken from where their old line was.
        let (mut state, _) = store::decode_snapshot(swapped.into_bytes()).unwrap();
        let (m1, m2) = (state.get("m1").unwrap().clone(), state.get("m2").unwrap().clone());
        assert!(m1.object() != m2.object());
        let mut model = Model::of(&state);
        let change = Change::Put { id: "m3".into(), entry: moved(&m1, "id", "m3", "10.0.9.3") };
        state.apply(change.clone());
        model.apply(&change);
        let compacted = compact(state, "t");
        model.check(&compacted.state, 1);
        assert_eq!(compacted.state.get("m1"), Some(&m1));
        assert_eq!(compacted.state.get("m2"), Some(&m2));
        let (reloaded, _) = store::decode_snapshot(compacted.bytes.to_vec()).unwrap();
        model.check(&reloaded, 1);
    }

    #[test]
    fn an_entry_whose_metadata_line_was_moved_by_hand_is_read_again_after_a_merge() {
        // Forty load balancers; the metadata lines of two of them swapped by hand, and a change between
        // them that the merge can still place (found by trying, as a search over misordered lines
        // lands where it lands). The merge copies the moved lines as they are; the entries read from
        // them must not be pointed at their neighbours' bytes.
        let mut state = State::default();
        for n in 0..40 {
            state.put(format!("lb{n:02}"), lb(&format!("lb{n:02}"), &format!("10.3.0.{n}")));
        }
        let text = String::from_utf8(store::encode_snapshot(&state, "t")).unwrap();
        let metadata_line = |text: &str, id: &str| {
            text.lines().find(|l| l.starts_with(&format!("    \"{id}\": {{\"resource_type\""))).unwrap().trim_end_matches(',').to_string()
        };
        let mut merged_around_a_moved_line = 0;
        for (a, b, c) in [(3, 30, 20), (5, 25, 10), (2, 37, 19), (8, 16, 12), (1, 38, 21)] {
            let (la, lb_) = (metadata_line(&text, &format!("lb{a:02}")), metadata_line(&text, &format!("lb{b:02}")));
            let swapped = text.replacen(&la, "@@", 1).replacen(&lb_, &la, 1).replacen("@@", &lb_, 1);
            let (mut loaded, _) = store::decode_snapshot(swapped.into_bytes()).unwrap();
            let read: Vec<Entry> = [a, b].iter().map(|n| loaded.get(&format!("lb{n:02}")).unwrap().clone()).collect();
            assert!(read.iter().all(|e| !e.is_decoded()));
            let mut model = Model::of(&loaded);
            let change = Change::Put { id: format!("lb{c:02}"), entry: lb(&format!("lb{c:02}"), &format!("10.144.0.{c}")) };
            loaded.apply(change.clone());
            model.apply(&change);
            let compacted = compact(loaded, "t");
            let written = String::from_utf8(compacted.bytes.to_vec()).unwrap();
            if written.find(&la).unwrap() > written.find(&lb_).unwrap() {
                merged_around_a_moved_line += 1;
            }
            for (n, before) in [a, b].iter().zip(&read) {
                let after = compacted.state.get(&format!("lb{n:02}")).unwrap();
                assert_eq!(after.try_object(), before.try_object(), "lb{n:02} after swapping {a} and {b}, changing {c}");
            }
            model.check(&compacted.state, 0);
        }
        assert!(merged_around_a_moved_line > 0, "no case took the merge");
    }

    #[test]
    fn names_that_need_escaping_are_written_entry_by_entry_and_nothing_is_lost() {
        let (policy, _) = populated();
        let (mut state, _) = store::decode_snapshot(store::encode_snapshot(&policy.state, "t")).unwrap();
        let mut model = Model::of(&state);
        for change in [Change::Put { id: "lb\"quoted".into(), entry: lb("lb\"quoted", "10.2.0.1") }, Change::Remove { id: "m2".into() }] {
            state.apply(change.clone());
            model.apply(&change);
        }
        let compacted = compact(state, "t");
        model.check(&compacted.state, 0);
        let (reloaded, _) = store::decode_snapshot(compacted.bytes.to_vec()).unwrap();
        model.check(&reloaded, 0);
    }
}
