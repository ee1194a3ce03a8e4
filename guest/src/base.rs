//! A snapshot read in place: the mapping as loaded, answering lookups from the snapshot's own bytes.
//!
//! Every map of the snapshot is written sorted, one member per line (see `store`), so it is its own
//! index: an id, a key or a parent is found by binary search over the lines of its map. A load therefore
//! only finds where each map starts and notes where the `octavia_to_loxilb` lines are; an entry is read
//! (key, seed fields, parent) the first time something asks for it, and its Octavia object later still,
//! when it is first used. Nothing here changes: `State` keeps what changed since the load beside it.
//!
//! Where the other maps' lines start is found when a compaction first needs it (one pass over their
//! bytes), and a base a compaction wrote knows it from the start: lookups then search those offsets.

use std::cell::OnceCell;
use std::cmp::Ordering;
use std::ops::Range;
use std::sync::Arc;

use crate::state::Entry;
use crate::store::{bytewise, bytewise_bytes, entry_from_metadata, expect, plain_string, scan_head};

/// Where a map member line's name starts: `    "<name>": <value>`.
const INDENT: usize = 5;

pub struct Base {
    bytes: Arc<Vec<u8>>,
    /// Where each `octavia_to_loxilb` line starts, in id order, and the map's member lines.
    ids: Vec<u32>,
    id_lines: Range<usize>,
    /// Each id's entry, once read.
    entries: Vec<EntryCell>,
    /// Set once every entry has been read.
    all_read: OnceCell<()>,
    /// The member lines of `loxilb_to_octavia`, `children` and `resource_metadata`, and where each of
    /// their lines starts (found when a compaction first needs them: a load does not).
    reverse: Lines,
    children: Lines,
    metadata: Lines,
}

/// An id's entry once read (or why it cannot be).
pub type EntryCell = OnceCell<Result<Box<Entry>, String>>;

/// A map's member lines, and where each starts once known.
pub struct Lines {
    pub lines: Range<usize>,
    starts: OnceCell<Vec<u32>>,
}

impl Lines {
    pub fn new(lines: Range<usize>, starts: Option<Vec<u32>>) -> Lines {
        Lines { lines, starts: starts.map(OnceCell::from).unwrap_or_default() }
    }

    fn starts(&self, bytes: &[u8]) -> &[u32] {
        self.starts.get_or_init(|| {
            let lines = self.lines.clone();
            if lines.is_empty() {
                return Vec::new();
            }
            std::iter::once(lines.start as u32).chain(memchr::memchr_iter(b'\n', &bytes[lines.clone()]).map(|n| (lines.start + n + 1) as u32)).collect()
        })
    }
}

/// Which map of a snapshot.
#[derive(Clone, Copy)]
pub enum Section {
    Ids,
    Keys,
    Children,
    Metadata,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base({} entries in {} bytes)", self.ids.len(), self.bytes.len())
    }
}

/// The name of the member line starting at `start`, and where the line ends.
fn member(bytes: &[u8], start: usize) -> Option<(&str, usize)> {
    let (name, at) = plain_string(bytes, start + INDENT)?;
    let at = expect(bytes, at, b": ")?;
    let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |n| at + n);
    Some((name, end))
}

/// The value of the member line starting at `start`.
pub fn member_value(bytes: &[u8], start: usize) -> Option<Range<usize>> {
    let (name, end) = member(bytes, start)?;
    Some(value(bytes, start, name, end))
}

/// The value of the member line starting at `start`, if it is named `name`.
fn value_if_named(bytes: &[u8], start: usize, name: &str) -> Option<Range<usize>> {
    let (found, end) = member(bytes, start).filter(|(found, _)| *found == name)?;
    Some(value(bytes, start, found, end))
}

/// The value of the member line starting at `start`, named `name` and ending at `end`, without the
/// comma that follows all but a map's last member.
fn value(bytes: &[u8], start: usize, name: &str, end: usize) -> Range<usize> {
    start + INDENT + name.len() + 3..if bytes[end - 1] == b',' { end - 1 } else { end }
}

/// How the name of the member line starting at `start` orders against `name`, read in place: a search
/// compares a line or two per step and needs neither the line's end nor the name as `str`.
fn cmp_name(bytes: &[u8], start: usize, name: &str) -> Ordering {
    let (at, name) = (start + INDENT, name.as_bytes());
    let found = &bytes[at.min(bytes.len())..(at + name.len()).min(bytes.len())];
    // The first difference, eight bytes at a time (in WebAssembly a byte-wise compare is a loop).
    let mut i = 0;
    let word = |b: &[u8], i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().expect("eight bytes"));
    while i + 8 <= found.len() && word(found, i) == word(name, i) {
        i += 8;
    }
    while i < found.len() && found[i] == name[i] {
        i += 1;
    }
    match found.get(i) {
        // The found name ends first (its closing quote): it is a prefix of `name`.
        Some(b'"') => Ordering::Less,
        Some(&c) => c.cmp(&name[i]),
        None if found.len() < name.len() => Ordering::Less,
        None if bytes.get(at + name.len()) == Some(&b'"') => Ordering::Equal,
        None => Ordering::Greater,
    }
}

/// The line of `lines` (sorted member lines, each ending in a line break but the last) whose name is
/// `name`, as the range of its value (without a trailing comma). A binary search over bytes: the line
/// around a midpoint is found by scanning back to the previous line break.
fn find(bytes: &[u8], lines: &Range<usize>, name: &str) -> Option<Range<usize>> {
    if !is_plain(name) {
        return None;
    }
    let (mut lo, mut hi) = (lines.start, lines.end);
    let end_of = |start: usize| memchr::memchr(b'\n', &bytes[start..lines.end]).map_or(lines.end, |n| start + n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = memchr::memrchr(b'\n', &bytes[lo..mid]).map_or(lo, |n| lo + n + 1);
        match cmp_name(bytes, start, name) {
            Ordering::Less => lo = end_of(start) + 1,
            Ordering::Greater => hi = start,
            Ordering::Equal => return Some(value(bytes, start, name, end_of(start))),
        }
    }
    None
}

/// The index of the first line at or after `from` (of lines starting at `starts`, sorted by name) whose
/// name is not before `name`, or `starts.len()`: where a member named `name` is, or would go. Gallops
/// from `from` first: a compaction seeks its changes in order, often a few lines apart.
pub fn seek(bytes: &[u8], starts: &[u32], from: usize, name: &str) -> usize {
    let before = |i: usize| cmp_name(bytes, starts[i] as usize, name).is_lt();
    let (mut lo, mut step) = (from, 1);
    let hi = loop {
        let probe = from + step - 1;
        if probe >= starts.len() {
            break starts.len();
        }
        if !before(probe) {
            break probe;
        }
        lo = probe + 1;
        step *= 2;
    };
    lo + starts[lo..hi].partition_point(|&s| cmp_name(bytes, s as usize, name).is_lt())
}

/// Whether the member line starting at `start` is named `name`.
pub fn is_named(bytes: &[u8], start: usize, name: &str) -> bool {
    cmp_name(bytes, start, name) == Ordering::Equal
}

/// Whether `name` could be a member's name as written (the maps of a base hold only plain ones): a name
/// with a quote in it could otherwise match a name and the start of its value.
pub fn is_plain(name: &str) -> bool {
    !name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20)
}

/// The length of the plain JSON string (no escapes or control characters) `bytes` starts with, quotes
/// included.
fn quoted(bytes: &[u8]) -> Option<usize> {
    let rest = bytes.strip_prefix(b"\"")?;
    let len = rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    (rest[len] == b'"').then_some(len + 2)
}

/// Whether every line of `lines` is a member, `    "<plain name>": <value>` (then a comma but on the last
/// line), that `member` accepts, given where the line starts, the name and the value. Checked a byte at a
/// time, the text's UTF-8 once for all lines.
fn lines_read<'a>(bytes: &'a [u8], lines: &Range<usize>, mut member: impl FnMut(usize, &'a [u8], &'a [u8]) -> bool) -> Option<()> {
    std::str::from_utf8(&bytes[lines.clone()]).ok()?;
    let mut at = lines.start;
    while at < lines.end {
        let end = memchr::memchr(b'\n', &bytes[at..lines.end]).map_or(lines.end, |n| at + n);
        let line = &bytes[at..end];
        let line = if end == lines.end { line } else { line.strip_suffix(b",")? };
        let name = line.strip_prefix(b"    ")?;
        let quoted_name = quoted(name)?;
        let value = name[quoted_name..].strip_prefix(b": ")?;
        member(at, &name[1..quoted_name - 1], value).then_some(())?;
        at = end + 1;
    }
    Some(())
}

/// The member lines of `lines` in order, as (name, value range).
fn members<'a>(bytes: &'a [u8], lines: &Range<usize>) -> impl Iterator<Item = (&'a str, Range<usize>)> + 'a {
    let mut at = lines.start;
    let stop = lines.end;
    std::iter::from_fn(move || {
        if at >= stop {
            return None;
        }
        let (name, end) = member(bytes, at)?;
        let line = at;
        at = end + 1;
        Some((name, value(bytes, line, name, end)))
    })
}

/// The ids of a `children` value, `["<id>","<id>"]`.
pub fn id_list(bytes: &[u8], value: Range<usize>) -> Option<Vec<&str>> {
    let b = &bytes[..value.end];
    let mut at = expect(b, value.start, b"[")?;
    let mut ids = Vec::new();
    if b.get(at) == Some(&b']') {
        return Some(ids);
    }
    loop {
        let (id, next) = plain_string(b, expect(b, at, b"\"")?)?;
        ids.push(id);
        match b.get(next) {
            Some(b',') => at = next + 1,
            Some(b']') if next + 1 == value.end => return Some(ids),
            _ => return None,
        }
    }
}

impl Base {
    /// Reads the maps of a snapshot laid out as `store::encode_snapshot` writes it, from the line after
    /// `last_updated`. None when the layout differs (the caller then reads the document another way).
    pub fn open(bytes: Arc<Vec<u8>>, mut at: usize) -> Option<Base> {
        u32::try_from(bytes.len()).ok()?;
        let b: &[u8] = &bytes;
        let id_lines = map(b, &mut at, "octavia_to_loxilb")?;
        let mut ids = Vec::new();
        let mut last: Option<&[u8]> = None;
        // Ids in strictly increasing order, as written (a hand edit could repeat or reorder them), and
        // without escapes, so the byte order the searches use is the ids' order.
        lines_read(b, &id_lines, |start, id, key| {
            let ordered = last.is_none_or(|last| bytewise_bytes(last, id).is_lt());
            last = Some(id);
            ids.push(start as u32);
            ordered && quoted(key) == Some(key.len())
        })?;
        let reverse = map(b, &mut at, "loxilb_to_octavia")?;
        let children = map(b, &mut at, "children")?;
        // Every line of these two must read as a member (a plain name, then a plain id or a list of them),
        // so searches and the next compaction see all of them, in strictly increasing name order, as the
        // searches and a compaction's merge assume.
        let mut last: Option<&[u8]> = None;
        lines_read(b, &reverse, |_, key, id| {
            let ok = last.is_none_or(|last| bytewise_bytes(last, key).is_lt());
            last = Some(key);
            ok && quoted(id) == Some(id.len())
        })?;
        let mut last: Option<&[u8]> = None;
        lines_read(b, &children, |_, parent, value| {
            if !last.is_none_or(|last| bytewise_bytes(last, parent).is_lt()) {
                return false;
            }
            last = Some(parent);
            let Some(mut list) = value.strip_prefix(b"[").and_then(|v| v.strip_suffix(b"]")) else { return false };
            while let Some(end) = quoted(list) {
                list = &list[end..];
                match list.first() {
                    None => return true,
                    Some(b',') => list = &list[1..],
                    Some(_) => return false,
                }
            }
            list.is_empty()
        })?;
        let metadata = last_map(b, at, "resource_metadata")?;
        let entries = std::iter::repeat_with(OnceCell::new).take(ids.len()).collect();
        let (reverse, children, metadata) = (Lines::new(reverse, None), Lines::new(children, None), Lines::new(metadata, None));
        Some(Base { bytes, ids, id_lines, entries, all_read: OnceCell::new(), reverse, children, metadata })
    }

    /// A base over bytes a compaction just wrote, whose maps' lines it knows, with the entries it had
    /// already read.
    pub fn written(bytes: Arc<Vec<u8>>, ids: Lines, reverse: Lines, children: Lines, metadata: Lines, entries: Vec<EntryCell>) -> Base {
        let (id_lines, ids) = (ids.lines, ids.starts.into_inner().expect("the id lines' starts"));
        debug_assert_eq!(ids.len(), entries.len());
        Base { bytes, ids, id_lines, entries, all_read: OnceCell::new(), reverse, children, metadata }
    }

    /// A map's member lines, and where each of them starts.
    pub fn section(&self, section: Section) -> (Range<usize>, &[u32]) {
        match section {
            Section::Ids => (self.id_lines.clone(), &self.ids),
            Section::Keys => (self.reverse.lines.clone(), self.reverse.starts(&self.bytes)),
            Section::Children => (self.children.lines.clone(), self.children.starts(&self.bytes)),
            Section::Metadata => (self.metadata.lines.clone(), self.metadata.starts(&self.bytes)),
        }
    }

    /// The entries read so far, by id index (for a compaction to carry them over).
    pub fn into_entries(self) -> Vec<EntryCell> {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn bytes(&self) -> &Arc<Vec<u8>> {
        &self.bytes
    }

    pub fn id(&self, i: usize) -> &str {
        member(&self.bytes, self.ids[i] as usize).expect("checked when opened").0
    }

    pub fn key(&self, i: usize) -> &str {
        let start = self.ids[i] as usize + INDENT + self.id(i).len() + 4;
        plain_string(&self.bytes, start).expect("checked when opened").0
    }

    pub fn index(&self, id: &str) -> Option<usize> {
        if !is_plain(id) {
            return None;
        }
        self.ids.binary_search_by(|&line| cmp_name(&self.bytes, line as usize, id)).ok()
    }

    /// The entry of the `i`th id, read on first use.
    pub fn entry(&self, i: usize) -> Result<&Entry, &str> {
        let entry = self.entries[i].get_or_init(|| {
            let id = self.id(i);
            let metadata = self.metadata_line(i, id).or_else(|| self.metadata_of(id)).ok_or_else(|| format!("{id}: no resource_metadata"))?;
            entry_from_metadata(&self.bytes, metadata, id, self.key(i).to_string()).map(Box::new)
        });
        entry.as_deref().map_err(String::as_str)
    }

    /// Reads every entry not read yet in one pass over the metadata lines (they are in id order too):
    /// what a walk over the whole mapping needs, instead of a search per entry.
    pub fn read_all(&self) {
        self.all_read.get_or_init(|| {
            if self.entries.iter().all(|cell| cell.get().is_some()) {
                return;
            }
            let mut lines = self.metadata_lines().peekable();
            for (i, cell) in self.entries.iter().enumerate() {
                let id = self.id(i);
                while lines.next_if(|(name, _)| bytewise(name, id).is_lt()).is_some() {}
                if let Some((_, value)) = lines.next_if(|(name, _)| *name == id) {
                    if cell.get().is_none() {
                        let _ = cell.set(entry_from_metadata(&self.bytes, value, id, self.key(i).to_string()).map(Box::new));
                    }
                }
            }
        });
    }

    /// The parent the `i`th id's metadata names, read without reading the whole entry.
    pub fn parent(&self, i: usize) -> Result<Option<&str>, &str> {
        if let Some(entry) = self.entries[i].get() {
            return entry.as_deref().map(Entry::parent).map_err(String::as_str);
        }
        let head = self.metadata_line(i, self.id(i)).and_then(|value| scan_head(&self.bytes[value]));
        match head {
            Some(head) => Ok(head.parent),
            None => self.entry(i).map(Entry::parent),
        }
    }

    /// The value of the member named `name` in `lines`: by the index of its lines' starts once known
    /// (fewer steps, no scanning back for a line's start), else by searching the bytes.
    fn lookup(&self, lines: &Lines, name: &str) -> Option<Range<usize>> {
        let Some(starts) = lines.starts.get() else { return find(&self.bytes, &lines.lines, name) };
        if !is_plain(name) {
            return None;
        }
        let i = seek(&self.bytes, starts, 0, name);
        value_if_named(&self.bytes, *starts.get(i)? as usize, name)
    }

    /// The metadata of the `i`th id, `id`, from the `i`th metadata line, if where the lines start is
    /// known (a compaction wrote them, or has looked) and that line is `id`'s.
    fn metadata_line(&self, i: usize, id: &str) -> Option<Range<usize>> {
        let starts = self.metadata.starts.get().filter(|starts| starts.len() == self.ids.len())?;
        value_if_named(&self.bytes, starts[i] as usize, id)
    }

    fn metadata_of(&self, id: &str) -> Option<Range<usize>> {
        // Written in id order; a hand edit that moved a line is still found, slowly.
        self.lookup(&self.metadata, id).or_else(|| members(&self.bytes, &self.metadata.lines).find(|(name, _)| *name == id).map(|(_, v)| v))
    }

    /// The `resource_metadata` lines in file order, as (id, value range).
    pub fn metadata_lines(&self) -> impl Iterator<Item = (&str, Range<usize>)> + '_ {
        members(&self.bytes, &self.metadata.lines)
    }

    /// The id `loxilb_to_octavia` names for `key`.
    pub fn owner(&self, key: &str) -> Option<&str> {
        let value = self.lookup(&self.reverse, key)?;
        plain_string(&self.bytes, value.start + 1).map(|(id, _)| id)
    }

    /// The `loxilb_to_octavia` pairs in key order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        members(&self.bytes, &self.reverse.lines).filter_map(|(key, value)| Some((key, plain_string(&self.bytes, value.start + 1)?.0)))
    }

    /// The ids the `children` map lists under `parent`, in id order.
    pub fn children(&self, parent: &str) -> Vec<&str> {
        self.lookup(&self.children, parent).and_then(|value| id_list(&self.bytes, value)).unwrap_or_default()
    }

    /// The `children` map in parent order.
    pub fn all_children(&self) -> impl Iterator<Item = (&str, Vec<&str>)> + '_ {
        members(&self.bytes, &self.children.lines).map(|(parent, value)| (parent, id_list(&self.bytes, value).unwrap_or_default()))
    }
}

/// The member lines of the map opened by the line at `at` (`  "name": {`, or `  "name": {},` when empty);
/// moves `at` past the map and its closing line.
fn map(b: &[u8], at: &mut usize, name: &str) -> Option<Range<usize>> {
    let open = expect(b, expect(b, expect(b, *at, b"  \"")?, name.as_bytes())?, b"\": {")?;
    if let Some(next) = expect(b, open, b"},\n") {
        *at = next;
        return Some(next..next);
    }
    let start = expect(b, open, b"\n")?;
    let close = memchr::memmem::find(&b[start..], b"\n  },\n")? + start;
    *at = close + 6;
    Some(start..close)
}

/// The member lines of the document's last map, which must end it: `  "name": {\n…\n  }\n}`.
fn last_map(b: &[u8], at: usize, name: &str) -> Option<Range<usize>> {
    let open = expect(b, expect(b, expect(b, at, b"  \"")?, name.as_bytes())?, b"\": {")?;
    if b.len() == open + 3 && &b[open..] == b"}\n}" {
        return Some(open..open);
    }
    let start = expect(b, open, b"\n")?;
    let close = b.len().checked_sub(6)?;
    (close >= start && &b[close..] == b"\n  }\n}").then_some(start..close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_in_place_as_strings_do() {
        let names = ["", "a", "ab", "abc", "abcdefgh", "abcdefghi", "abcdefgz", "b", "lb-0001", "lb-00010", "lb-0002"];
        for found in names {
            let line = format!("    \"{found}\": 1\n");
            for name in names {
                assert_eq!(cmp_name(line.as_bytes(), 0, name), found.cmp(name), "{found:?} against {name:?}");
            }
            // The document may end inside the name (a truncated last line).
            let cut = &line.as_bytes()[..INDENT + found.len()];
            assert_ne!(cmp_name(cut, 0, found), Ordering::Equal);
        }
    }
}
