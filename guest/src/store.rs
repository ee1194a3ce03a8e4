//! The persisted mapping: a snapshot in the seed's JSON format and a journal of changes since it.
//!
//! Snapshot (version 1.1; the host appends `journal_generation` and a checksum when it writes the file).
//! Keys are sorted, and each top-level key and each mapping is on a line of its own:
//! ```json
//! { "version": "1.1", "last_updated": "2026-11-25T08:00:00Z",
//!   "octavia_to_loxilb": { "<id>": "<key>" }, "loxilb_to_octavia": { "<key>": "<id>" },
//!   "children": { "<parent id>": ["<child id>", …] },
//!   "resource_metadata": { "<id>": {"resource_type":"member","parent":"<pool id>","external_ip":"10.0.0.10",
//!       "port":8080,"protocol":"","created_at":"…","additional_metadata":{"object":"member","attributes":{…}}} } }
//! ```
//! `additional_metadata` holds the Octavia object (and, for listeners, the rule last programmed), enough
//! to re-render every rule from the file alone. `parent` and the `children` map are not seed fields
//! (readers of the seed's format ignore them): `parent` names an entry's place in the tree without its
//! object being decoded, and `children` is the same relation indexed by parent, so a load need not
//! read every entry to find a pool's members.
//!
//! Loading reads this layout in place (`base`): every map is sorted, so the file is its own index, and a
//! load only finds where the maps are; an entry is read when first asked for, its object decoded when
//! first used, and an entry nobody changed is copied by the next compaction as the same bytes. A file
//! without the `children` map (written before it existed) is read line by line instead, and any other
//! layout (a hand edit, another writer) takes the general JSON path, which decodes everything.
//!
//! Journal: one JSON record per change, `{"put":{"id":…,"key":…,"metadata":{…}}}` (the metadata as in the
//! snapshot, so it too is decoded lazily and copied into the next snapshot) or `{"remove":{"id":…}}`;
//! records of the earlier `{"put":{"id":…,"entry":{…}}}` shape still replay. Replaying the whole journal
//! over the snapshot it follows yields the current mapping; replaying it twice yields the same (each record
//! sets or clears one id), so a crash between writing a snapshot and starting its journal loses nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::Base;
use crate::state::{Change, Entry, Object, ResourceType, State, Stored};

pub const FORMAT_VERSION: &str = "1.1";

#[derive(Serialize, Deserialize)]
struct Metadata {
    resource_type: ResourceType,
    #[serde(default)]
    external_ip: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    created_at: serde_json::Value,
    #[serde(default)]
    additional_metadata: serde_json::Value,
}

/// A mapping's metadata as this policy writes it. `parent` is not one of the seed's fields: it comes
/// second so a load can index the tree without decoding `additional_metadata` (readers of the seed's
/// format ignore it).
#[derive(Serialize)]
struct MetadataOut<'a> {
    resource_type: ResourceType,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    external_ip: &'a str,
    port: u16,
    protocol: &'a str,
    created_at: &'a str,
    additional_metadata: &'a Object,
}

/// A mapping's metadata decoded whole (any key order, `parent` or not).
#[derive(Deserialize)]
struct MetadataV1_1 {
    external_ip: String,
    port: u16,
    protocol: String,
    #[serde(default)]
    created_at: String,
    additional_metadata: Object,
}

#[derive(Deserialize)]
struct SnapshotIn {
    version: serde_json::Value,
    /// Values stay JSON until the version is known: 1.0 files hold `null` keys (health monitors) and
    /// resource types this format has no entry for.
    #[serde(default)]
    octavia_to_loxilb: HashMap<String, serde_json::Value>,
    #[serde(default)]
    resource_metadata: HashMap<String, serde_json::Value>,
}

pub(crate) fn json_string(out: &mut Vec<u8>, s: &str) {
    // Ids and keys never need escaping; copying them is a tenth of the cost of serde's escaper.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    }
}

/// An entry's metadata: the bytes it was read from while they still describe it, else encoded.
pub(crate) fn write_metadata(out: &mut Vec<u8>, e: &Entry) {
    if let Some(stored) = e.stored_metadata() {
        out.extend_from_slice(stored);
        return;
    }
    let metadata = MetadataOut {
        resource_type: e.resource_type(),
        parent: e.parent(),
        external_ip: &e.external_ip,
        port: e.port,
        protocol: &e.protocol,
        created_at: &e.created_at,
        additional_metadata: e.object(),
    };
    serde_json::to_writer(&mut *out, &metadata).expect("metadata serialises");
}

/// One top-level map, a member per line: `  "name": {\n    "k": v,\n    …\n  }` (`{}` when empty).
fn write_map<T>(out: &mut Vec<u8>, name: &str, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.extend_from_slice(b"  \"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\": {");
    for (i, it) in items.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
        item(out, it);
    }
    out.extend_from_slice(if items.is_empty() { b"}" } else { b"\n  }" });
}

/// Where an entry of a new snapshot comes from.
enum Source<'a> {
    /// Unchanged since the load: the loaded snapshot's `i`th entry, copied as read.
    Base(usize),
    Put(&'a Entry),
}

/// Two disjoint sequences, each in name order, as one.
fn merge<'a, T>(a: impl Iterator<Item = (&'a str, T)>, b: impl Iterator<Item = (&'a str, T)>) -> Vec<(&'a str, T)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut out = Vec::new();
    loop {
        let from_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => bytewise(x.0, y.0).is_lt(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        out.extend(if from_a { a.next() } else { b.next() });
    }
}

/// The `children` map: each parent's children, from the loaded snapshot's map (less the children changed
/// since) and from the entries put since, in parent order.
fn children_map(state: &State) -> Vec<(&str, Vec<&str>)> {
    let mut put: Vec<(&str, &std::collections::BTreeSet<String>)> = state.changed_children().collect();
    put.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    let loaded = state.base().into_iter().flat_map(|b| b.all_children());
    let (mut loaded, mut put) = (loaded.peekable(), put.into_iter().peekable());
    let mut out = Vec::new();
    loop {
        let order = match (loaded.peek(), put.peek()) {
            (Some(x), Some(y)) => bytewise(x.0, y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return out,
        };
        let (parent, mut ids) = match order.is_gt() {
            true => (put.peek().expect("peeked").0, Vec::new()),
            false => loaded.next().expect("peeked"),
        };
        ids.retain(|id| !state.is_changed(id));
        if order.is_ge() {
            let sort = !ids.is_empty();
            ids.extend(put.next().expect("peeked").1.iter().map(String::as_str));
            if sort {
                ids.sort_unstable();
            }
        }
        if !ids.is_empty() {
            out.push((parent, ids));
        }
    }
}

/// The snapshot document. Keys are sorted, and each top-level key and each mapping is on a line of its
/// own, compact inside: `grep <id>` shows a whole mapping, and a load reads the maps in place (see
/// `base`). An entry unchanged since the load, or journaled since, is copied as read or journaled.
///
/// This writes entry by entry; a compaction merges the changes into the loaded lines instead (`compact`),
/// byte for byte the same, and falls back to this when the loaded lines cannot be trusted for a merge.
pub fn encode_snapshot(state: &State, now: &str) -> Vec<u8> {
    let base = state.base();
    let mut puts: Vec<(&str, Source)> = state.puts().map(|(id, e)| (id, Source::Put(e))).collect();
    puts.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    let unchanged = base.into_iter().flat_map(|b| (0..b.len()).map(move |i| (b.id(i), Source::Base(i)))).filter(|(id, _)| !state.is_changed(id));
    let by_id = merge(unchanged, puts.into_iter());
    let mut keys: Vec<(&str, &str)> = state.changed_keys().filter_map(|(k, id)| Some((k, id?))).collect();
    keys.sort_unstable_by(|a, b| bytewise(a.0, b.0));
    let unchanged = base.into_iter().flat_map(|b| b.keys()).filter(|(k, _)| !state.is_key_changed(k));
    let by_key = merge(unchanged, keys.into_iter());
    let children = children_map(state);
    let mut out = start_document(state.len(), now);
    write_map(&mut out, "octavia_to_loxilb", &by_id, |out, (id, source)| {
        json_string(out, id);
        out.extend_from_slice(b": ");
        json_string(
            out,
            match source {
                Source::Base(i) => base.expect("a base entry has a base").key(*i),
                Source::Put(e) => &e.key,
            },
        );
    });
    out.extend_from_slice(b",\n");
    write_map(&mut out, "loxilb_to_octavia", &by_key, |out, (key, id)| {
        json_string(out, key);
        out.extend_from_slice(b": ");
        json_string(out, id);
    });
    out.extend_from_slice(b",\n");
    write_map(&mut out, "children", &children, |out, (parent, ids)| {
        json_string(out, parent);
        out.extend_from_slice(b": [");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_string(out, id);
        }
        out.push(b']');
    });
    out.extend_from_slice(b",\n");
    // The loaded snapshot's metadata lines are in id order too: one pass copies the unchanged ones.
    let mut loaded = base.into_iter().flat_map(|b| b.metadata_lines()).peekable();
    write_map(&mut out, "resource_metadata", &by_id, |out, (id, source)| {
        json_string(out, id);
        out.extend_from_slice(b": ");
        match source {
            Source::Put(e) => write_metadata(out, e),
            Source::Base(_) => {
                while loaded.next_if(|(name, _)| bytewise(name, id).is_lt()).is_some() {}
                match loaded.next_if(|(name, _)| name == id) {
                    Some((_, value)) => out.extend_from_slice(&base.expect("a base entry has a base").bytes()[value]),
                    None => write_metadata(out, state.get(id).expect("listed")),
                }
            }
        }
    });
    end_document(&mut out, state.len());
    out
}

/// A new document's buffer with its first lines (`{`, `version`, `last_updated`) written. Sized from the
/// last snapshot read or written, per entry when known (a growing mapping outgrows the last size): growing
/// by doubling would need twice the final size at once, and at 100k mappings that is a good part of the
/// sandbox's memory.
pub(crate) fn start_document(entries: usize, now: &str) -> Vec<u8> {
    let (bytes, of) = SIZE_HINT.with(|h| h.get());
    let estimate = bytes.checked_div(of).map_or(bytes.max(entries * 1000), |per_entry| per_entry * entries.max(of));
    let mut out = Vec::with_capacity(estimate + estimate / 32 + 4096);
    out.extend_from_slice(b"{\n  \"version\": ");
    json_string(&mut out, FORMAT_VERSION);
    out.extend_from_slice(b",\n  \"last_updated\": ");
    json_string(&mut out, now);
    out.extend_from_slice(b",\n");
    out
}

pub(crate) fn end_document(out: &mut Vec<u8>, entries: usize) {
    out.extend_from_slice(b"\n}");
    SIZE_HINT.with(|h| h.set((out.len(), entries)));
}

/// `a.cmp(b)`, eight bytes at a time: in WebAssembly `str` comparison is a byte loop (memcmp), and sorting
/// 100k UUIDs that share their first 24 characters spent most of a compaction there.
pub(crate) fn bytewise(a: &str, b: &str) -> std::cmp::Ordering {
    bytewise_bytes(a.as_bytes(), b.as_bytes())
}

pub(crate) fn bytewise_bytes(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    for (p, q) in (&mut x).zip(&mut y) {
        let (p, q) = (u64::from_be_bytes(p.try_into().unwrap()), u64::from_be_bytes(q.try_into().unwrap()));
        if p != q {
            return p.cmp(&q);
        }
    }
    let done = a.len().min(b.len()) / 8 * 8;
    a[done..].cmp(&b[done..])
}

thread_local! {
    /// The size of the last snapshot decoded or encoded, and how many entries it held (0: not known).
    static SIZE_HINT: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Reads the JSON string starting at `at` (just after its opening quote) if it has no escapes: the
/// ids, keys and short fields this policy writes never do; anything else takes the general path.
pub(crate) fn plain_string(b: &[u8], at: usize) -> Option<(&str, usize)> {
    // A plain loop: these strings are short, and memchr's set-up costs more than it saves on them.
    let len = b.get(at..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
    if b[at + len] != b'"' {
        return None;
    }
    Some((std::str::from_utf8(&b[at..at + len]).ok()?, at + len + 1))
}

pub(crate) fn expect(b: &[u8], at: usize, literal: &[u8]) -> Option<usize> {
    b.get(at..)?.starts_with(literal).then_some(at + literal.len())
}

/// What a load reads of a mapping's metadata, written as `MetadataOut` writes it.
pub(crate) struct Head<'a> {
    kind: ResourceType,
    pub(crate) parent: Option<&'a str>,
    external_ip: &'a str,
    port: u16,
    protocol: &'a str,
    created_at: &'a str,
    /// Where `additional_metadata`'s value starts.
    object: usize,
}

pub(crate) fn scan_head(b: &[u8]) -> Option<Head<'_>> {
    let at = expect(b, 0, br#"{"resource_type":""#)?;
    let (kind, at) = plain_string(b, at)?;
    let kind = match kind {
        "loadbalancer" => ResourceType::Loadbalancer,
        "listener" => ResourceType::Listener,
        "pool" => ResourceType::Pool,
        "member" => ResourceType::Member,
        "healthmonitor" => ResourceType::Healthmonitor,
        _ => return None,
    };
    let (parent, at) = match expect(b, at, br#","parent":""#) {
        Some(at) => {
            let (parent, at) = plain_string(b, at)?;
            (Some(parent), at)
        }
        // Every object but a load balancer has a parent; without the key, decode the whole metadata.
        None if kind == ResourceType::Loadbalancer => (None, at),
        None => return None,
    };
    let (external_ip, at) = plain_string(b, expect(b, at, br#","external_ip":""#)?)?;
    let at = expect(b, at, br#","port":"#)?;
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    let port = std::str::from_utf8(&b[at..at + digits]).ok()?.parse().ok()?;
    let (protocol, at) = plain_string(b, expect(b, at + digits, br#","protocol":""#)?)?;
    let (created_at, at) = plain_string(b, expect(b, at, br#","created_at":""#)?)?;
    let object = expect(b, at, br#","additional_metadata":"#)?;
    (b.last() == Some(&b'}')).then_some(Head { kind, parent, external_ip, port, protocol, created_at, object })
}

/// The entry for a mapping whose metadata is `bytes[metadata]`: its object left undecoded when the
/// metadata is laid out as this policy writes it, else decoded whole.
pub(crate) fn entry_from_metadata(bytes: &Arc<Vec<u8>>, metadata: Range<usize>, id: &str, key: String) -> Result<Entry, String> {
    let b = &bytes[metadata.clone()];
    if let Some(h) = scan_head(b) {
        let stored = Stored { bytes: Arc::clone(bytes), object: metadata.start + h.object..metadata.end - 1, metadata };
        return Ok(Entry::stored(key, h.external_ip.into(), h.port, h.protocol.into(), h.created_at.into(), h.kind, h.parent.map(str::to_string), stored));
    }
    let m: MetadataV1_1 = serde_json::from_slice(b).map_err(|e| format!("{id}: bad metadata: {e}"))?;
    Ok(Entry::new(key, m.external_ip, m.port, m.protocol, m.created_at, m.additional_metadata))
}

/// The document's lines, without their line breaks.
struct Lines<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Lines<'a> {
    /// The next line and where it starts.
    fn next(&mut self) -> Option<(usize, &'a [u8])> {
        let start = self.at;
        if start >= self.bytes.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &self.bytes[start..]).map_or(self.bytes.len(), |n| start + n);
        self.at = end + 1;
        Some((start, &self.bytes[start..end]))
    }

    /// The members of a map opened by `  "name": {` (returns None for any other line); each is handed
    /// to `member` with its start and without its trailing comma.
    fn map(&mut self, name: &str, mut member: impl FnMut(usize, &'a [u8]) -> Option<()>) -> Option<()> {
        let (_, open) = self.next()?;
        let head = open.strip_prefix(b"  \"")?.strip_prefix(name.as_bytes())?.strip_prefix(b"\": {")?;
        match head {
            b"}" | b"}," => return Some(()),
            b"" => {}
            _ => return None,
        }
        loop {
            let (start, line) = self.next()?;
            if line == b"  }" || line == b"  }," {
                return Some(());
            }
            member(start + 4, line.strip_prefix(b"    ")?.strip_suffix(b",").unwrap_or(line.strip_prefix(b"    ")?))?;
        }
    }
}

/// Where the maps start in a document laid out as `encode_snapshot` writes it (after the lines of `{`,
/// `version` and `last_updated`); None for any other layout.
fn header(bytes: &[u8]) -> Option<usize> {
    let mut lines = Lines { bytes, at: 0 };
    (lines.next()?.1 == b"{").then_some(())?;
    (lines.next()?.1 == format!("  \"version\": \"{FORMAT_VERSION}\",").as_bytes()).then_some(())?;
    lines.next()?.1.starts_with(b"  \"last_updated\": ").then_some(())?;
    Some(lines.at)
}

/// The load of a document laid out as `encode_snapshot` wrote it before the `children` map existed (or
/// whose ids are out of order, a hand edit): one pass over its lines, keys paired with metadata by
/// position (both maps are in id order), `loxilb_to_octavia` rebuilt from the other, and each object
/// left undecoded until used. None when the layout differs: the general path then reads it.
fn decode_lined(bytes: &Arc<Vec<u8>>, at: usize) -> Option<Result<State, String>> {
    let mut lines = Lines { bytes, at };
    let mut keys: Vec<(&str, &str)> = Vec::new();
    lines.map("octavia_to_loxilb", |_, line| {
        let (id, at) = plain_string(line, 1)?;
        let (key, at) = plain_string(line, expect(line, at, b": \"")?)?;
        // In strictly increasing order, as written: no id twice (a hand edit could repeat one).
        (at == line.len() && keys.last().is_none_or(|(last, _)| bytewise(last, id).is_lt())).then(|| keys.push((id, key)))
    })?;
    lines.map("loxilb_to_octavia", |_, _| Some(()))?;
    let before = lines.at;
    if lines.map("children", |_, _| Some(())).is_none() {
        lines.at = before;
    }
    let mut state = State::default();
    state.reserve(keys.len());
    let mut failure = None;
    let mut next = 0;
    lines.map("resource_metadata", |start, line| {
        let (id, at) = plain_string(line, 1)?;
        let value = expect(line, at, b": ")?;
        let (key_id, key) = *keys.get(next)?;
        next += 1;
        (key_id == id).then_some(())?;
        match entry_from_metadata(bytes, start + value..start + line.len(), id, key.to_string()) {
            // Unique: they match the other map's ids one by one, which are strictly increasing.
            Ok(entry) => state.insert_new(id.to_string(), entry),
            Err(e) => failure = Some(e),
        }
        Some(())
    })?;
    (lines.next()?.1 == b"}" && lines.next().is_none() && next == keys.len()).then_some(())?;
    Some(match failure {
        Some(e) => Err(e),
        None => Ok(state),
    })
}

/// Parses a snapshot of any supported version, migrating older ones. Returns the state and notes about
/// what migration did.
pub fn decode_snapshot(bytes: Vec<u8>) -> Result<(State, Vec<String>), String> {
    SIZE_HINT.with(|h| h.set((bytes.len(), 0)));
    let bytes = Arc::new(bytes);
    if let Some(state) = rebased(Arc::clone(&bytes)) {
        return Ok((state, Vec::new()));
    }
    if let Some(decoded) = header(&bytes).and_then(|at| decode_lined(&bytes, at)) {
        return decoded.map(|state| (state, Vec::new()));
    }
    decode_any(&bytes)
}

/// The state read in place from a snapshot laid out as `encode_snapshot` writes it (a load, or the
/// document a compaction just wrote); `None` for any other layout, names that need escaping included.
pub(crate) fn rebased(bytes: Arc<Vec<u8>>) -> Option<State> {
    let at = header(&bytes)?;
    Base::open(bytes, at).map(State::from_base)
}

fn decode_any(bytes: &[u8]) -> Result<(State, Vec<String>), String> {
    let snap: SnapshotIn = serde_json::from_slice(bytes).map_err(|e| format!("mapping snapshot is not valid JSON: {e}"))?;
    let version = match &snap.version {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(format!("mapping snapshot has no usable version ({other})")),
    };
    let (major, minor) = parse_version(&version).ok_or_else(|| format!("mapping snapshot version {version:?} is not MAJOR.MINOR"))?;
    let (max_major, max_minor) = parse_version(FORMAT_VERSION).expect("own version");
    if (major, minor) > (max_major, max_minor) {
        return Err(format!(
            "mapping snapshot version {version} is newer than this policy understands ({FORMAT_VERSION}); refusing to load it rather than lose what it holds"
        ));
    }
    let mut state = State::default();
    let mut notes = Vec::new();
    if (major, minor) == (1, 1) {
        for (id, meta) in snap.resource_metadata {
            let meta: Metadata = serde_json::from_value(meta).map_err(|e| format!("{id}: bad resource_metadata: {e}"))?;
            let key = snap.octavia_to_loxilb.get(&id).and_then(|k| k.as_str()).map(str::to_string).ok_or_else(|| format!("{id}: metadata without a key"))?;
            let object: Object = serde_json::from_value(meta.additional_metadata).map_err(|e| format!("{id}: bad additional_metadata: {e}"))?;
            let created_at = meta.created_at.as_str().unwrap_or_default().to_string();
            state.put(id, Entry::new(key, meta.external_ip, meta.port, meta.protocol, created_at, object));
        }
    } else {
        let total = snap.resource_metadata.len();
        let dropped = crate::migrate::v1_0(&snap.octavia_to_loxilb, &snap.resource_metadata, &mut state);
        notes.push(format!(
            "migrated {} of {total} mappings from format {version} to {FORMAT_VERSION}{}; the Octavia attributes {version} did not store take defaults: re-sync them from Octavia",
            state.len(),
            if dropped.is_empty() { String::new() } else { format!(" ({} dropped, named below)", dropped.len()) }
        ));
        notes.extend(dropped.into_iter().map(|d| format!("not migrated from format {version}: {d}")));
    }
    Ok((state, notes))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A journal record, `{"put":{"id":…,"key":…,"metadata":{…}}}` (the metadata as in the snapshot) or
/// `{"remove":{"id":…}}`, and where a put's metadata sits in it.
fn encode_record(change: &Change) -> (Vec<u8>, Option<Range<usize>>) {
    let mut out = Vec::with_capacity(1024);
    match change {
        Change::Put { id, entry } => {
            out.extend_from_slice(br#"{"put":{"id":"#);
            json_string(&mut out, id);
            out.extend_from_slice(br#","key":"#);
            json_string(&mut out, &entry.key);
            out.extend_from_slice(br#","metadata":"#);
            let start = out.len();
            write_metadata(&mut out, entry);
            let metadata = start..out.len();
            out.extend_from_slice(b"}}");
            (out, Some(metadata))
        }
        Change::Remove { id } => {
            out.extend_from_slice(br#"{"remove":{"id":"#);
            json_string(&mut out, id);
            out.extend_from_slice(b"}}");
            (out, None)
        }
    }
}

/// Encodes a change as its journal record; a put's entry keeps the record's metadata bytes, so the next
/// compaction copies them instead of encoding its object again.
pub fn journal_change(mut change: Change) -> (Arc<Vec<u8>>, Change) {
    let (record, metadata) = encode_record(&change);
    let record = Arc::new(record);
    if let (Change::Put { entry, .. }, Some(metadata)) = (&mut change, metadata) {
        if let Some(head) = scan_head(&record[metadata.clone()]) {
            let object = metadata.start + head.object..metadata.end - 1;
            entry.keep_stored(Stored { bytes: Arc::clone(&record), metadata, object });
        }
    }
    (record, change)
}

/// A journal record of either shape: this version's (`key` and `metadata`) when the fast path could not
/// read it, or earlier versions' (the entry's fields and object inline, under `entry`). Decoded one at a time and taken apart at once, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordIn {
    Put {
        id: String,
        #[serde(default)]
        key: Option<String>,
        #[serde(default)]
        metadata: Option<MetadataV1_1>,
        #[serde(default)]
        entry: Option<EntryV1_1>,
    },
    Remove {
        id: String,
    },
}

#[derive(Deserialize)]
struct EntryV1_1 {
    key: String,
    external_ip: String,
    port: u16,
    protocol: String,
    created_at: String,
    object: Object,
}

pub fn decode_change(bytes: Vec<u8>) -> Result<Change, String> {
    // The record as `journal_change` writes it: the object stays undecoded until used.
    let bytes = Arc::new(bytes);
    let fast = || -> Option<(String, String, Range<usize>)> {
        let at = expect(&bytes, 0, br#"{"put":{"id":""#)?;
        let (id, at) = plain_string(&bytes, at)?;
        let (key, at) = plain_string(&bytes, expect(&bytes, at, br#","key":""#)?)?;
        let at = expect(&bytes, at, br#","metadata":"#)?;
        bytes.ends_with(b"}}").then(|| (id.to_string(), key.to_string(), at..bytes.len() - 2))
    };
    if let Some((id, key, metadata)) = fast() {
        if let Ok(entry) = entry_from_metadata(&bytes, metadata, &id, key) {
            return Ok(Change::Put { id, entry });
        }
    }
    match serde_json::from_slice::<RecordIn>(&bytes).map_err(|e| format!("journal record is not valid: {e}"))? {
        RecordIn::Remove { id } => Ok(Change::Remove { id }),
        RecordIn::Put { id, key: Some(key), metadata: Some(m), .. } => {
            Ok(Change::Put { id, entry: Entry::new(key, m.external_ip, m.port, m.protocol, m.created_at, m.additional_metadata) })
        }
        RecordIn::Put { id, entry: Some(e), .. } => Ok(Change::Put { id, entry: Entry::new(e.key, e.external_ip, e.port, e.protocol, e.created_at, e.object) }),
        RecordIn::Put { id, .. } => Err(format!("journal record for {id} has neither key and metadata nor an entry")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::octavia::Loadbalancer;

    pub(crate) fn lb(id: &str, vip: &str) -> Entry {
        Entry::new(
            vip.into(),
            vip.into(),
            0,
            String::new(),
            "2026-01-01T00:00:00Z".into(),
            Object::Loadbalancer(Loadbalancer {
                id: id.into(),
                name: None,
                vip_address: vip.into(),
                additional_vips: vec![],
                admin_state_up: true,
                flavor: vec![],
                listeners: vec![],
                pools: vec![],
            }),
        )
    }

    #[test]
    fn snapshot_round_trips_with_seed_keys() {
        let mut state = State::default();
        state.put("lb-1".into(), lb("lb-1", "10.0.0.1"));
        let bytes = encode_snapshot(&state, "2026-11-25T00:00:00Z");
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for key in ["octavia_to_loxilb", "loxilb_to_octavia", "resource_metadata", "version", "last_updated"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["resource_metadata"]["lb-1"]["resource_type"], "loadbalancer");
        let (back, notes) = decode_snapshot(bytes.clone()).unwrap();
        assert!(notes.is_empty());
        assert_eq!(back.get("lb-1"), state.get("lb-1"));
        assert_eq!(back.owner("10.0.0.1"), Some("lb-1"));
    }

    #[test]
    fn each_mapping_is_one_line_of_the_document() {
        let mut state = State::default();
        state.put("lb-1".into(), lb("lb-1", "10.0.0.1"));
        state.put("lb-2".into(), lb("lb-2", "10.0.0.2"));
        let text = String::from_utf8(encode_snapshot(&state, "2026-11-25T00:00:00Z")).unwrap();
        assert!(text.starts_with("{\n  \"version\": \"1.1\",\n  \"last_updated\""), "{text}");
        let line = text.lines().find(|l| l.starts_with("    \"lb-2\": {")).expect("lb-2's metadata on one line");
        assert!(line.contains("\"vip_address\":\"10.0.0.2\""), "{line}");
        assert!(text.lines().any(|l| l == "    \"10.0.0.1\": \"lb-1\","), "{text}");
        assert!(text.ends_with("\n  }\n}"), "{text}");
        let empty = String::from_utf8(encode_snapshot(&State::default(), "t")).unwrap();
        assert!(empty.contains("\"octavia_to_loxilb\": {},"), "{empty}");
        serde_json::from_str::<serde_json::Value>(&empty).unwrap();
    }

    #[test]
    fn hand_edited_files_take_the_general_path() {
        // created_at as a number and the version as a number: not what this policy writes, still loaded.
        let doc = br#"{"version": 1.1, "octavia_to_loxilb": {"lb-1": "10.0.0.1"}, "resource_metadata": {"lb-1": {"resource_type": "loadbalancer",
            "external_ip": "10.0.0.1", "created_at": 5, "additional_metadata": {"object": "loadbalancer", "attributes": {"id": "lb-1", "name": null,
            "vip_address": "10.0.0.1", "additional_vips": [], "admin_state_up": true, "flavor": [], "listeners": [], "pools": []}}}}}"#;
        let (state, notes) = decode_snapshot(doc.to_vec()).unwrap();
        assert!(notes.is_empty());
        assert_eq!(state.get("lb-1").unwrap().key, "10.0.0.1");
        let err =
            decode_snapshot(br#"{"version": "1.1", "octavia_to_loxilb": {}, "resource_metadata": {"x": {"resource_type": "pool"}}}"#.to_vec()).unwrap_err();
        assert!(err.contains("x"), "{err}");
    }

    #[test]
    fn newer_versions_are_refused_by_name() {
        let err = decode_snapshot(br#"{"version": "2.0", "octavia_to_loxilb": {}}"#.to_vec()).err().unwrap();
        assert!(err.contains("2.0") && err.contains(FORMAT_VERSION), "{err}");
    }

    #[test]
    fn version_1_0_files_migrate() {
        let old = br#"{"octavia_to_loxilb": {"lb-12345": "192.168.1.100:80/tcp", "ls-1": "192.168.1.100:80/tcp"},
            "loxilb_to_octavia": {"192.168.1.100:80/tcp": "ls-1"},
            "resource_metadata": {
              "lb-12345": {"resource_type": "loadbalancer", "external_ip": "192.168.1.100", "port": 80, "protocol": "tcp", "created_at": 1712345678.9},
              "ls-1": {"resource_type": "listener", "created_at": "2023-01-01T00:00:00Z", "additional_metadata": {"lb_id": "lb-12345", "pool_id": "p-1"}}},
            "version": "1.0", "last_saved": 1712345679.1}"#;
        let (state, notes) = decode_snapshot(old.to_vec()).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(state.get("lb-12345").unwrap().key, "192.168.1.100");
        assert_eq!(state.get("lb-12345").unwrap().created_at, "2024-04-05T19:34:38Z");
        let listener = state.get("ls-1").unwrap();
        assert_eq!(listener.key, "192.168.1.100:80/tcp");
        assert!(state.problems().is_empty(), "{:?}", state.problems());
    }

    #[test]
    fn version_1_0_pools_members_and_monitors_migrate_and_what_cannot_be_placed_is_named() {
        // Attributes beside the seed's fields (the earlier driver) as well as in additional_metadata.
        let old = br#"{"version": "1.0",
            "octavia_to_loxilb": {"lb": "10.0.0.1:80/tcp", "p": "pool-p", "m": "member-m", "hm": null,
                                  "orphan": "member-orphan", "nowhere": "member-nowhere", "l7": "l7-1"},
            "resource_metadata": {
              "lb": {"resource_type": "loadbalancer", "created_at": 1712345678.9},
              "p": {"resource_type": "pool", "loadbalancer_id": "lb", "protocol": "UDP", "lb_algorithm": "SOURCE_IP"},
              "m": {"resource_type": "member", "pool_id": "p", "address": "fd00::5", "protocol_port": "53", "weight": 3},
              "hm": {"resource_type": "healthmonitor", "additional_metadata": {"pool_id": "p", "type": "udp-connect"}},
              "orphan": {"resource_type": "member", "pool_id": "gone", "address": "10.0.1.1", "protocol_port": 80},
              "nowhere": {"resource_type": "member", "pool_id": "p", "protocol_port": 80},
              "l7": {"resource_type": "l7policy"}}}"#;
        let (state, notes) = decode_snapshot(old.to_vec()).unwrap();
        let key = |id: &str| state.get(id).map(|e| e.key.clone());
        assert_eq!(key("lb").as_deref(), Some("10.0.0.1"));
        assert_eq!(key("p").as_deref(), Some("10.0.0.1/pool-p"));
        assert_eq!(key("m").as_deref(), Some("10.0.0.1/pool-p/fd00::5:53"));
        assert_eq!(key("hm").as_deref(), Some("10.0.0.1/pool-p/monitor"));
        match state.get("m").unwrap().object() {
            Object::Member(m) => assert_eq!((m.weight, m.protocol_port), (3, 53)),
            other => panic!("{other:?}"),
        }
        match state.get("hm").unwrap().object() {
            Object::Healthmonitor(h) => assert_eq!(h.kind, "UDP-CONNECT"),
            other => panic!("{other:?}"),
        }
        assert!(state.problems().is_empty(), "{:?}", state.problems());
        assert_eq!(
            notes,
            [
                "migrated 4 of 7 mappings from format 1.0 to 1.1 (3 dropped, named below); the Octavia attributes 1.0 did not store take defaults: re-sync them from Octavia",
                "not migrated from format 1.0: l7 (\"l7policy\"): not a resource type this format maps",
                "not migrated from format 1.0: nowhere (member): no address",
                "not migrated from format 1.0: orphan (member): its pool gone is not in the file",
            ]
        );
    }

    #[test]
    fn bytewise_orders_as_str_does() {
        let words = ["", "a", "ab", "abcdefgh", "abcdefgh0", "abcdefgi", "abcdefgh01234567", "abcdefgh01234568", "b", "00000004-0000-4000-8000-000000000001"];
        for a in words {
            for b in words {
                assert_eq!(bytewise(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn strings_that_need_escaping_are_escaped() {
        let mut out = Vec::new();
        json_string(&mut out, "a\"b\\c\n");
        json_string(&mut out, "10.0.0.1:80/tcp");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\n""10.0.0.1:80/tcp""#);
    }

    #[test]
    fn journal_records_round_trip() {
        let put = Change::Put { id: "lb-1".into(), entry: lb("lb-1", "fd00::1") };
        assert_eq!(decode_change(journal_change(put.clone()).0.to_vec()).unwrap(), put);
        let rm = Change::Remove { id: "lb-1".into() };
        assert_eq!(decode_change(journal_change(rm.clone()).0.to_vec()).unwrap(), rm);
    }

    /// A policy's storage in memory, and LoxiLB answering success.
    #[derive(Default)]
    pub(crate) struct Disk {
        snapshot: Option<Vec<u8>>,
        journal: Vec<Vec<u8>>,
    }

    impl crate::caps::Caps for Disk {
        fn request(&mut self, method: &str, _: &str, _: Option<&str>) -> Result<crate::caps::HttpResponse, String> {
            let body = if method == "GET" { r#"{"lbAttr":[]}"# } else { r#"{"result":"Success"}"# };
            Ok(crate::caps::HttpResponse { status: 200, body: body.into() })
        }
        fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, String> {
            Ok(self.snapshot.clone())
        }
        fn write_snapshot(&mut self, data: &[u8]) -> Result<(), String> {
            self.snapshot = Some(data.to_vec());
            self.journal.clear();
            Ok(())
        }
        fn append_journal(&mut self, record: &[u8]) -> Result<(), String> {
            self.journal.push(record.to_vec());
            Ok(())
        }
        fn replay_journal(&mut self) -> Result<Vec<Vec<u8>>, String> {
            Ok(self.journal.clone())
        }
        fn journal_length(&mut self) -> u32 {
            self.journal.len() as u32
        }
        fn log(&mut self, _: crate::caps::Level, _: &str) {}
        fn now_ms(&mut self) -> u64 {
            1_764_000_000_000
        }
    }

    /// A TCP load balancer with a listener, a pool of two members and a health monitor.
    pub(crate) fn tree_operation() -> crate::octavia::Operation {
        let member = |n: u32| {
            serde_json::json!({"id": format!("m{n}"), "pool_id": "p", "address": format!("10.0.1.{n}"), "protocol_port": 8080, "weight": n,
                "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null})
        };
        serde_json::from_value(serde_json::json!({"LoadbalancerCreate": {
            "id": "lb", "name": "web", "vip_address": "10.0.0.1", "additional_vips": [], "admin_state_up": true, "flavor": [],
            "listeners": [{"id": "l", "loadbalancer_id": "lb", "protocol": "TCP", "protocol_port": 80, "default_pool_id": "p",
                "admin_state_up": true, "connection_limit": null, "timeout_client_data": 50000, "timeout_member_connect": null,
                "timeout_member_data": null, "allowed_cidrs": [], "insert_headers": [], "default_tls_container_ref": null,
                "sni_container_refs": [], "client_authentication": null, "l7policies": []}],
            "pools": [{"id": "p", "loadbalancer_id": "lb", "listener_id": "l", "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN",
                "session_persistence": null, "tls_enabled": false, "admin_state_up": true,
                "healthmonitor": {"id": "hm", "pool_id": "p", "kind": "TCP", "delay": 5, "timeout": 3, "max_retries": 2, "max_retries_down": 3,
                    "http_method": null, "url_path": null, "expected_codes": null, "http_version": null, "domain_name": null, "admin_state_up": true},
                "members": [member(1), member(2)]}]
        }}))
        .expect("operation")
    }

    /// A policy that has created the tree, and the disk it wrote to.
    pub(crate) fn populated() -> (crate::execute::Policy, Disk) {
        let mut policy = crate::execute::Policy::new(crate::translate::Config::default());
        let mut disk = Disk::default();
        let handled = policy.handle(&mut disk, &tree_operation());
        assert!(handled.error.is_none(), "{:?}", handled.error.map(|e| crate::execute::describe(&e)));
        assert_eq!(policy.state.len(), 6);
        (policy, disk)
    }

    pub(crate) fn same_state(a: &State, b: &State) {
        let mut ids: Vec<&str> = a.iter().map(|(id, _)| id).collect();
        ids.sort();
        let mut other: Vec<&str> = b.iter().map(|(id, _)| id).collect();
        other.sort();
        assert_eq!(ids, other);
        for id in ids {
            assert_eq!(a.get(id), b.get(id), "{id}");
            assert_eq!(a.children(id), b.children(id), "children of {id}");
        }
        let (mut keys, mut other): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
        keys.sort();
        other.sort();
        assert_eq!(keys, other);
    }

    #[test]
    fn a_written_snapshot_loads_without_decoding_objects_and_writes_back_byte_for_byte() {
        let (policy, _) = populated();
        let bytes = encode_snapshot(&policy.state, "2026-11-25T00:00:00Z");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""p": {"resource_type":"pool","parent":"lb","external_ip":"10.0.0.1""#), "{text}");
        let (loaded, notes) = decode_snapshot(bytes.clone()).unwrap();
        assert!(notes.is_empty());
        assert!(loaded.iter().all(|(_, e)| e.stored_metadata().is_some() && !e.is_decoded()), "every object left undecoded");
        assert_eq!(loaded.children("p").len(), 3, "members and monitor indexed from `parent` alone");
        assert_eq!(encode_snapshot(&loaded, "2026-11-25T00:00:00Z"), bytes, "untouched entries are copied back as read");
        same_state(&policy.state, &loaded);
        assert!(loaded.iter().all(|(_, e)| e.is_decoded()));
        assert!(loaded.problems().is_empty(), "{:?}", loaded.problems());
    }

    #[test]
    fn a_compaction_reads_the_mapping_back_in_place_from_what_it_wrote() {
        let (mut policy, mut disk) = populated();
        let (mut steady, mut steady_disk) = populated();
        policy.snapshot(&mut disk);
        let base = policy.state.base().expect("read in place");
        assert_eq!(Some(base.bytes().as_slice()), disk.snapshot.as_deref());
        assert_eq!(policy.state.puts().count(), 0, "nothing changed since the snapshot");
        same_state(&steady.state, &policy.state);
        let update: crate::octavia::Operation = serde_json::from_value(serde_json::json!({"MemberUpdate": {"id": "m1", "pool_id": "p",
            "address": "10.0.1.1", "protocol_port": 8080, "weight": 9, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}}))
        .unwrap();
        assert!(policy.handle(&mut disk, &update).error.is_none());
        assert!(steady.handle(&mut steady_disk, &update).error.is_none());
        same_state(&steady.state, &policy.state);
        assert_eq!(steady.desired(), policy.desired());
        assert_eq!(policy.state.puts().count(), 2, "the member and its listener");
        assert_eq!(encode_snapshot(&policy.state, "t"), encode_snapshot(&steady.state, "t"));
    }

    #[test]
    fn journal_records_replay_lazily_and_earlier_record_shapes_still_replay() {
        let (mut policy, mut disk) = populated();
        policy.snapshot(&mut disk);
        let update: crate::octavia::Operation = serde_json::from_value(serde_json::json!({"MemberUpdate": {"id": "m2", "pool_id": "p",
            "address": "10.0.1.2", "protocol_port": 8080, "weight": 7, "admin_state_up": true, "backup": false, "monitor_address": null, "monitor_port": null}}))
        .unwrap();
        assert!(policy.handle(&mut disk, &update).error.is_none());
        assert_eq!(disk.journal.len(), 2, "the member and its listener's programmed rule");
        assert!(policy.state.get("m2").unwrap().stored_metadata().is_some(), "a journaled entry keeps its encoding for the next compaction");

        let change = decode_change(disk.journal[0].clone()).unwrap();
        let Change::Put { entry, .. } = &change else { panic!("a put") };
        assert!(!entry.is_decoded());
        let mut reloaded = crate::execute::Policy::new(crate::translate::Config::default());
        reloaded.load(&mut disk).unwrap();
        same_state(&policy.state, &reloaded.state);

        // As the first releases journaled a put: the entry's fields and object inline.
        let e = policy.state.get("m2").unwrap();
        let legacy = serde_json::json!({"put": {"id": "m2", "entry": {"key": e.key, "external_ip": e.external_ip, "port": e.port,
            "protocol": e.protocol, "created_at": e.created_at, "object": e.object()}}});
        assert_eq!(decode_change(serde_json::to_vec(&legacy).unwrap()).unwrap(), Change::Put { id: "m2".into(), entry: e.clone() });
    }

    #[test]
    fn lines_without_parent_decode_whole_and_gain_it_when_written() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        // As snapshots were written before `parent` (and the `children` map) existed.
        let older = without_children_map(&text).replace(r#""parent":"p","#, "").replace(r#""parent":"lb","#, "");
        assert!(!older.contains("\"parent\""));
        let (loaded, _) = decode_snapshot(older.into_bytes()).unwrap();
        assert!(loaded.get("m1").unwrap().is_decoded(), "a member line without its parent is decoded whole");
        assert!(!loaded.get("lb").unwrap().is_decoded(), "a load balancer has no parent to miss");
        same_state(&policy.state, &loaded);
        assert_eq!(String::from_utf8(encode_snapshot(&loaded, "t")).unwrap(), text);
    }

    #[test]
    fn an_undecodable_object_is_reported_by_validation_not_fatal_to_the_load() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        let damaged = text.replace(r#""weight":2"#, r#""weight":"heavy""#);
        assert_ne!(damaged, text);
        let (loaded, _) = decode_snapshot(damaged.into_bytes()).unwrap();
        assert!(loaded.get("m2").unwrap().try_object().unwrap_err().contains("invalid type"));
        let problems = loaded.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("m2: metadata cannot be decoded"), "{problems:?}");
        // Metadata that names another type or parent than its object is caught on decoding too.
        let moved = text.replace(r#""m1": {"resource_type":"member","parent":"p""#, r#""m1": {"resource_type":"member","parent":"lb""#);
        let (loaded, _) = decode_snapshot(moved.into_bytes()).unwrap();
        assert!(loaded.get("m1").unwrap().try_object().unwrap_err().contains("its metadata says a member under Some(\"lb\")"));
    }

    #[test]
    fn repeated_or_unordered_ids_take_the_general_path() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        // Swap two lines of octavia_to_loxilb: still valid JSON, no longer in id order.
        let lines: Vec<&str> = text.lines().collect();
        let first = lines.iter().position(|l| l.starts_with("    \"hm\": ")).unwrap();
        let mut swapped: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        swapped.swap(first, first + 1);
        let (a, b) = (swapped[first].trim_end_matches(',').to_string(), swapped[first + 1].trim_end_matches(',').to_string());
        swapped[first] = format!("{a},");
        swapped[first + 1] = format!("{b},");
        let (loaded, _) = decode_snapshot(swapped.join("\n").into_bytes()).unwrap();
        assert!(loaded.iter().all(|(_, e)| e.is_decoded()), "read by the general path");
        same_state(&policy.state, &loaded);
    }

    /// `entry` moved under `parent` with key `key` (its object's parent field rewritten to match).
    pub(crate) fn moved(entry: &Entry, parent_field: &str, parent: &str, key: &str) -> Entry {
        let mut object = serde_json::to_value(entry.object()).unwrap();
        object["attributes"][parent_field] = parent.into();
        Entry::new(key.into(), entry.external_ip.clone(), entry.port, entry.protocol.clone(), entry.created_at.clone(), serde_json::from_value(object).unwrap())
    }

    /// The mapping's rules stated plainly, to check `State` against: a put makes the key its entry's, a
    /// remove frees the key only if the entry owned it, and children are the entries naming a parent.
    #[derive(Default)]
    pub(crate) struct Model {
        pub(crate) entries: std::collections::BTreeMap<String, Entry>,
        pub(crate) owners: std::collections::BTreeMap<String, String>,
    }

    impl Model {
        pub(crate) fn of(state: &State) -> Model {
            let entries = state.iter().map(|(id, e)| (id.to_string(), e.clone())).collect();
            let owners = state.keys().map(|(k, id)| (k.to_string(), id.to_string())).collect();
            Model { entries, owners }
        }

        pub(crate) fn apply(&mut self, change: &Change) {
            let id = match change {
                Change::Put { id, .. } | Change::Remove { id } => id,
            };
            if let Some(old) = self.entries.remove(id) {
                if self.owners.get(&old.key) == Some(id) {
                    self.owners.remove(&old.key);
                }
            }
            if let Change::Put { id, entry } = change {
                self.owners.insert(entry.key.clone(), id.clone());
                self.entries.insert(id.clone(), entry.clone());
            }
        }

        pub(crate) fn check(&self, state: &State, step: usize) {
            let entries: std::collections::BTreeMap<String, Entry> = state.iter().map(|(id, e)| (id.to_string(), e.clone())).collect();
            assert_eq!(entries, self.entries, "entries after step {step}");
            let owners: std::collections::BTreeMap<String, String> = state.keys().map(|(k, id)| (k.to_string(), id.to_string())).collect();
            assert_eq!(owners, self.owners, "owners after step {step}");
            for id in self.entries.keys() {
                let children: Vec<&str> = self.entries.iter().filter(|(_, e)| e.parent() == Some(id)).map(|(c, _)| c.as_str()).collect();
                assert_eq!(state.children(id), children, "children of {id} after step {step}");
            }
            assert_eq!(state.len(), self.entries.len());
        }
    }

    #[test]
    fn changes_over_a_loaded_snapshot_read_as_the_same_mapping_built_from_scratch() {
        let (policy, _) = populated();
        let mut scratch = policy.state.clone();
        let (mut loaded, _) = decode_snapshot(encode_snapshot(&scratch, "t")).unwrap();
        assert!(loaded.base().is_some(), "read in place");
        let mut model = Model::of(&scratch);
        let get = |id: &str| scratch.get(id).unwrap().clone();
        let (m1, m2, hm, pool) = (get("m1"), get("m2"), get("hm"), get("p"));
        let put = |id: &str, entry: Entry| Change::Put { id: id.into(), entry };
        let remove = |id: &str| Change::Remove { id: id.into() };
        let hm_moved = moved(&hm, "pool_id", "p2", &hm.key);
        let steps = [
            put("m3", moved(&m1, "id", "m3", &crate::keys::member_key("10.0.0.1", "p", "10.0.1.3", 8080))),
            remove("m1"),
            put("m2", moved(&m2, "pool_id", "p", &crate::keys::member_key("10.0.0.1", "p", "10.0.1.9", 8080))),
            put("p2", moved(&pool, "id", "p2", &crate::keys::pool_key("10.0.0.1", "p2"))),
            put("hm", hm_moved.clone()),
            put("m1", m1.clone()),
            // Another id takes a key the snapshot gave to `hm`; `hm` put again under it takes it back.
            put("m4", moved(&m1, "id", "m4", &hm.key)),
            put("hm", hm_moved.clone()),
            put("m4", moved(&m1, "id", "m4", &hm.key)),
            // `hm` goes: the key stays with `m4`.
            remove("hm"),
            remove("nothing"),
            remove("m1"),
            put("m2", m2.clone()),
        ];
        for (n, step) in steps.iter().enumerate() {
            scratch.apply(step.clone());
            loaded.apply(step.clone());
            model.apply(step);
            model.check(&scratch, n);
            model.check(&loaded, n);
            assert_eq!(scratch.problems(), loaded.problems(), "after step {n}");
        }
        assert_eq!(loaded.owner(&hm.key), Some("m4"));
        assert_eq!(loaded.children("p"), ["m2", "m3", "m4"]);
        assert!(loaded.children("p2").is_empty());
        let written = encode_snapshot(&loaded, "t");
        assert_eq!(written, encode_snapshot(&scratch, "t"), "a compaction merges the snapshot and the changes as a full encoding would");
        let (again, _) = decode_snapshot(written).unwrap();
        model.check(&again, steps.len());
    }

    #[test]
    fn lookups_find_every_line_of_a_larger_snapshot_and_nothing_else() {
        let mut state = State::default();
        for n in 0..300 {
            state.put(format!("lb-{n:04}"), lb(&format!("lb-{n:04}"), &format!("10.0.{}.{}", n / 200, n % 200)));
        }
        let (loaded, _) = decode_snapshot(encode_snapshot(&state, "t")).unwrap();
        assert!(loaded.base().is_some());
        for n in 0..300 {
            let id = format!("lb-{n:04}");
            assert_eq!(loaded.get(&id), state.get(&id), "{id}");
            assert_eq!(loaded.owner(&format!("10.0.{}.{}", n / 200, n % 200)), Some(id.as_str()));
        }
        for missing in ["lb-", "lb-0000a", "lb-0150x", "lb-9999", "a", "z", "lb-0001\": \"10.0.0.1"] {
            assert!(loaded.get(missing).is_none(), "{missing}");
            assert!(loaded.owner(missing).is_none(), "{missing}");
        }
        assert_eq!(loaded.len(), 300);
    }

    fn without_children_map(text: &str) -> String {
        let start = text.find("  \"children\": {").unwrap();
        let end = start + text[start..].find("\n  },\n").unwrap() + "\n  },\n".len();
        format!("{}{}", &text[..start], &text[end..])
    }

    #[test]
    fn a_snapshot_written_before_the_children_map_loads_and_gains_it() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        let (loaded, _) = decode_snapshot(without_children_map(&text).into_bytes()).unwrap();
        assert!(loaded.base().is_none(), "read line by line");
        same_state(&policy.state, &loaded);
        assert_eq!(String::from_utf8(encode_snapshot(&loaded, "t")).unwrap(), text);
    }

    /// The document with two adjacent lines of its `resource_metadata` map swapped (commas kept valid).
    fn swap_metadata_lines(text: &str, first_id: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let at = lines.iter().position(|l| l.starts_with(&format!("    \"{first_id}\": {{"))).unwrap();
        lines.swap(at, at + 1);
        let (a, b) = (lines[at].trim_end_matches(',').to_string(), lines[at + 1].trim_end_matches(',').to_string());
        let last = lines[at + 2] == "  }";
        lines[at] = format!("{a},");
        lines[at + 1] = if last { b } else { format!("{b},") };
        lines.join("\n")
    }

    #[test]
    fn metadata_lines_moved_by_hand_are_still_found() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        let edited = swap_metadata_lines(&text, "m1");
        assert_ne!(edited, text);
        let (loaded, _) = decode_snapshot(edited.into_bytes()).unwrap();
        assert!(loaded.base().is_some());
        same_state(&policy.state, &loaded);
        assert!(loaded.problems().is_empty(), "{:?}", loaded.problems());
    }

    #[test]
    fn index_lines_edited_out_of_the_written_layout_are_read_another_way() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        for (from, to) in [
            ("\n    \"10.0.0.1\": \"lb\",", "\n    \"10.0.0.1\" : \"lb\","),
            ("\n    \"10.0.0.1:80/tcp\": \"l\"\n", "\n    \"10.0.0.1:80/tcp\": \"\\u006c\"\n"),
            ("\n    \"p\": [\"hm\",\"m1\",\"m2\"]", "\n    \"p\": [\"hm\", \"m1\",\"m2\"]"),
        ] {
            assert!(text.contains(from), "{from}");
            let (loaded, _) = decode_snapshot(text.replace(from, to).into_bytes()).unwrap();
            assert!(loaded.base().is_none(), "{to}: not read in place");
            same_state(&policy.state, &loaded);
        }
    }

    #[test]
    fn a_children_map_that_disagrees_with_the_parents_is_reported() {
        let (policy, _) = populated();
        let text = String::from_utf8(encode_snapshot(&policy.state, "t")).unwrap();
        let edited = text.replace(r#""p": ["hm","m1","m2"]"#, r#""p": ["hm","m2"]"#);
        assert_ne!(edited, text);
        let (loaded, _) = decode_snapshot(edited.into_bytes()).unwrap();
        assert_eq!(loaded.problems(), ["m1: not listed among the children of p"]);
        let stray = text.replace(r#""p": ["hm","m1","m2"]"#, r#""p": ["hm","l","m1","m2"]"#);
        let (loaded, _) = decode_snapshot(stray.into_bytes()).unwrap();
        assert_eq!(loaded.problems(), ["p: lists l as a child, which is not under it"]);
    }

    #[test]
    fn reloads_and_compactions_amid_changes_keep_the_mapping_and_its_rules() {
        // One policy works on as operations arrive; the other reloads from its disk and compacts along
        // the way, so it works on snapshots read in place, journals over them, and merges of the two.
        let (mut steady, mut steady_disk) = populated();
        let (mut reloaded, mut disk) = populated();
        let mut seed = 7u64;
        let mut present: std::collections::BTreeSet<u32> = [1, 2].into();
        for step in 0..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let n = (seed >> 33) as u32 % 12 + 1;
            let kind = if present.contains(&n) { "MemberDelete" } else { "MemberCreate" };
            let op: crate::octavia::Operation = serde_json::from_value(serde_json::json!({kind: {"id": format!("m{n}"), "pool_id": "p",
                "address": format!("10.0.1.{n}"), "protocol_port": 8080, "weight": n, "admin_state_up": true, "backup": false,
                "monitor_address": null, "monitor_port": null}}))
            .unwrap();
            if !present.remove(&n) {
                present.insert(n);
            }
            assert!(steady.handle(&mut steady_disk, &op).error.is_none());
            assert!(reloaded.handle(&mut disk, &op).error.is_none(), "step {step}");
            match (seed >> 40) % 10 {
                0 => reloaded.snapshot(&mut disk),
                1 | 2 => {
                    reloaded = crate::execute::Policy::new(crate::translate::Config::default());
                    reloaded.load(&mut disk).unwrap();
                }
                _ => {}
            }
            same_state(&steady.state, &reloaded.state);
            assert_eq!(steady.desired(), reloaded.desired(), "step {step}");
        }
        assert_eq!(reloaded.state.children("p").len(), present.len() + 1, "the members left and the monitor");
    }
}
