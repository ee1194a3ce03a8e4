//! Reads a snapshot laid out exactly as `codec::encode_snapshot` writes it — one mapping per line, fields
//! in a fixed order — by finding quotes and line ends instead of running a JSON parser over every byte.
//! Anything else (files of earlier releases, hand edits, a string with an escape) is `None`, and the
//! caller reads the file with the JSON parser: this is a shortcut for the common case, never a second
//! reader of the format. At 100k mappings the parser took ~190 ms; the scan leaves the time to building
//! the index.

use memchr::{memchr, memchr2, memmem};

use super::codec::{type_of, EntryRef, FORMAT_VERSION};

/// The entries of `document` in the writer's layout, or `None` if it is not in that layout. `verified`: the
/// document passed its checksum, so it is what a writer wrote, and the writer wrote each entry's metadata
/// unquoted only when it was one whole JSON value (`codec::write_metadata`); otherwise each line's metadata
/// is checked to be one (a tenth of the scan).
pub fn scan_snapshot(document: &[u8], verified: bool) -> Option<Vec<EntryRef<'_>>> {
    let rest = document.strip_prefix(format!("{{\n  \"version\": \"{FORMAT_VERSION}\",\n  \"last_updated\": ").as_bytes())?;
    let (last_updated, rest) = byte_string(rest)?;
    let rest = rest.strip_prefix(b",\n")?;
    let (keys, rest) = map(rest, "octavia_to_loxilb")?;
    let rest = rest.strip_prefix(b",\n")?;
    // The reverse map holds nothing the forward one does not; the index builds its own.
    let (reverse, rest) = map(rest, "loxilb_to_octavia")?;
    let rest = rest.strip_prefix(b",\n")?;
    // The last map ends the document, so its end is known without searching its ~35 MB (at 100k).
    let metadata = match rest.strip_prefix(b"  \"resource_metadata\": {")? {
        b"}\n}" => &b""[..],
        rest => rest.strip_prefix(b"\n")?.strip_suffix(b"\n  }\n}")?,
    };
    // A verified document is what the writer wrote, which is UTF-8 throughout; the parts read are checked
    // as they are read.
    if !verified && (std::str::from_utf8(last_updated).is_err() || std::str::from_utf8(reverse).is_err()) {
        return None;
    }
    // Both maps are sorted by id and the writer puts every entry in both, so line i of one is line i of
    // the other. A large snapshot is read in two halves at once, split at a line of the metadata and at the
    // line of the same id in the keys.
    let ((keys_first, keys_second), (first, second)) = match halves(keys, metadata) {
        Some(halves) => halves,
        None if metadata.len() < PARALLEL_FROM => ((keys, &b""[..]), (metadata, &b""[..])),
        None => return None,
    };
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| entries(keys_second, second, true, verified));
        (entries(keys_first, first, keys_second.is_empty(), verified), second.join().ok().flatten())
    });
    let (mut first, second) = (first?, second?);
    // Sorted halves, and the second after the first: every id is distinct (the index relies on it).
    if let (Some(last), Some(next)) = (first.last(), second.first()) {
        if last.id >= next.id {
            return None;
        }
    }
    first.extend(second);
    Some(first)
}

/// Metadata from this many bytes on is read in two halves.
const PARALLEL_FROM: usize = 512 << 10;

type Halves<'a> = ((&'a [u8], &'a [u8]), (&'a [u8], &'a [u8]));

/// The keys and the metadata, each cut after the same entry near the middle of the metadata; `None` when
/// the metadata is small or no such cut exists.
fn halves<'a>(keys: &'a [u8], metadata: &'a [u8]) -> Option<Halves<'a>> {
    if metadata.len() < PARALLEL_FROM {
        return None;
    }
    let cut = metadata.len() / 2 + memchr(b'\n', &metadata[metadata.len() / 2..])?;
    let (id, _) = byte_string(&metadata[cut + 1..])?;
    // Keys lines are `"<id>":"<key>"`: the id's line is the only one starting with it.
    let at = memmem::find(keys, &[b"\n\"", id, b"\":"].concat())?;
    Some(((&keys[..at], &keys[at + 1..]), (&metadata[..cut], &metadata[cut + 1..])))
}

/// The entries of matching lines of part of each map, whose ids must rise strictly (the writer sorts them).
/// Every line ends with a comma but the map's last one (`ends_map`: this part holds it).
fn entries<'a>(keys: &'a [u8], metadata: &'a [u8], ends_map: bool, verified: bool) -> Option<Vec<EntryRef<'a>>> {
    let (keys, metadata) = (std::str::from_utf8(keys).ok()?, std::str::from_utf8(metadata).ok()?);
    let mut entries: Vec<EntryRef<'a>> = Vec::with_capacity(metadata.len() / 256);
    let (mut keys, mut metadata) = (Lines::new(keys, ends_map), Lines::new(metadata, ends_map));
    loop {
        let (key, line) = match (keys.next(), metadata.next()) {
            (None, None) => return Some(entries),
            (Some(key), Some(line)) => (key?, line?),
            _ => return None,
        };
        let (id, key) = key_line(key)?;
        let entry = metadata_line(line, key, verified)?;
        if entry.id != id || entries.last().is_some_and(|previous| previous.id >= id) {
            return None;
        }
        entries.push(entry);
    }
}

/// The lines of part of a map, without their commas; an inner `None` is a line without its comma.
struct Lines<'a> {
    rest: Option<&'a str>,
    ends_map: bool,
}

impl<'a> Lines<'a> {
    fn new(part: &'a str, ends_map: bool) -> Self {
        Lines { rest: (!part.is_empty()).then_some(part), ends_map }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Option<&'a str>;

    fn next(&mut self) -> Option<Option<&'a str>> {
        let rest = self.rest?;
        Some(match memchr(b'\n', rest.as_bytes()) {
            Some(end) => {
                self.rest = Some(&rest[end + 1..]);
                rest[..end].strip_suffix(',')
            }
            None => {
                self.rest = None;
                if self.ends_map {
                    Some(rest)
                } else {
                    rest.strip_suffix(',')
                }
            }
        })
    }
}

/// A JSON string without escapes at the start of `s`, and what follows it.
fn string(s: &str) -> Option<(&str, &str)> {
    let (body, _) = byte_string(s.as_bytes())?;
    // Cut at ASCII quotes: both sides are whole UTF-8.
    Some((&s[1..1 + body.len()], &s[2 + body.len()..]))
}

fn byte_string(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = s.strip_prefix(b"\"")?;
    let end = memchr2(b'"', b'\\', body)?;
    (body[end] == b'"').then(|| (&body[..end], &body[end + 1..]))
}

/// The `\n`-separated lines of the map `name` (`  "name": {` … `\n  }`), and what follows it.
fn map<'a>(s: &'a [u8], name: &str) -> Option<(&'a [u8], &'a [u8])> {
    let rest = s.strip_prefix(b"  \"")?.strip_prefix(name.as_bytes())?.strip_prefix(b"\": {")?;
    if let Some(rest) = rest.strip_prefix(b"}") {
        return Some((b"", rest));
    }
    let rest = rest.strip_prefix(b"\n")?;
    // JSON strings hold no raw line breaks, so the first line that closes the map ends it.
    let end = memmem::find(rest, b"\n  }")?;
    Some((&rest[..end], &rest[end + 4..]))
}

/// `"<id>":"<key>"`.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (id, rest) = string(line)?;
    let (key, rest) = string(rest.strip_prefix(':')?)?;
    rest.is_empty().then_some((id, key))
}

/// `"<id>":{"resource_type":"<t>"[,"parent":"<p>"],"external_ip":"<ip>","port":<n>,"protocol":"<q>",
/// "created_at":"<c>","additional_metadata":<metadata>}`.
fn metadata_line<'a>(line: &'a str, key: &'a str, verified: bool) -> Option<EntryRef<'a>> {
    let (id, rest) = string(line)?;
    let (kind, rest) = string(rest.strip_prefix(":{\"resource_type\":")?)?;
    let (parent, rest) = match rest.strip_prefix(",\"parent\":") {
        Some(rest) => string(rest).map(|(p, rest)| (Some(p), rest))?,
        None => (None, rest),
    };
    let (external_ip, rest) = string(rest.strip_prefix(",\"external_ip\":")?)?;
    let rest = rest.strip_prefix(",\"port\":")?;
    let digits = memchr(b',', rest.as_bytes())?;
    let port = rest[..digits].parse().ok().filter(|_| rest.as_bytes()[0].is_ascii_digit())?;
    let (protocol, rest) = string(rest[digits..].strip_prefix(",\"protocol\":")?)?;
    let (created_at, rest) = string(rest.strip_prefix(",\"created_at\":")?)?;
    let metadata = rest.strip_prefix(",\"additional_metadata\":")?.strip_suffix('}')?;
    // The policy's JSON is stored as it wrote it: it must be one whole value on this line.
    if !verified {
        serde_json::from_str::<serde::de::IgnoredAny>(metadata).ok()?;
    }
    Some(EntryRef { id, key, kind: type_of(kind)?, parent, external_ip, port, protocol, created_at, metadata })
}

#[cfg(test)]
mod tests {
    use super::super::codec::{self, decode_snapshot, encode_snapshot};
    use super::*;
    use crate::runtime::bindings::mapping::{MappingEntry, ResourceType};

    fn entry(id: &str, parent: Option<&str>, metadata: &str) -> MappingEntry {
        MappingEntry {
            octavia_id: id.into(),
            loxilb_key: format!("10.0.0.1/pool-p/{id}:80"),
            resource_type: if parent.is_some() { ResourceType::Member } else { ResourceType::Pool },
            parent: parent.map(str::to_string),
            external_ip: "10.0.0.1".into(),
            port: 80,
            protocol: String::new(),
            created_at: "2026-12-05T00:00:00Z".into(),
            metadata: metadata.into(),
        }
    }

    fn parsed(document: &[u8]) -> Vec<MappingEntry> {
        let mut out = Vec::new();
        assert!(decode_snapshot(document, |_| {}, |e| out.push(e.to_owned())).unwrap().is_none());
        out.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
        out
    }

    #[test]
    fn what_the_writer_writes_scans_as_the_json_parser_reads_it() {
        for entries in [
            vec![],
            vec![entry("p", None, r#"{"lb_algorithm":"ROUND_ROBIN"}"#)],
            vec![entry("p", None, "{}"), entry("m1", Some("p"), r#"{"address":"10.0.1.1","tags":["a,\n","}"]}"#), entry("m2", Some("p"), "[1, 2]")],
            // Large enough to be read in two halves.
            (0..PARALLEL_FROM / 64).map(|i| entry(&format!("m{i:05}"), Some("p"), r#"{"weight":2}"#)).collect(),
        ] {
            let document = encode_snapshot(entries.iter().map(Into::into), "now");
            if entries.len() > 3 {
                assert!(document.len() > 2 * PARALLEL_FROM, "two halves");
            }
            for verified in [false, true] {
                let scanned: Vec<MappingEntry> = scan_snapshot(&document, verified).expect("the writer's layout").iter().map(EntryRef::to_owned).collect();
                assert_eq!(scanned, parsed(&document), "{}", String::from_utf8_lossy(&document));
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_the_json_parser() {
        let layout = |entries: &[MappingEntry]| encode_snapshot(entries.iter().map(Into::into), "now");
        // An escape in a string, a policy's metadata over several lines, an earlier release's indented
        // layout with its children index, a hand edit.
        let escaped = layout(&[entry("a\"b", None, "{}")]);
        let multiline = layout(&[entry("p", None, "{\n\"a\": 1\n}")]);
        let written = String::from_utf8(layout(&[entry("p", None, "{}"), entry("m", Some("p"), "{}")])).unwrap();
        let indented = written.replace("\n\"", "\n    \"").replace("\": ", "\":");
        let with_children = written.replace("  \"resource_metadata\"", "  \"children\": {\n\"p\":[\"m\"]\n  },\n  \"resource_metadata\"");
        let spaced = written.replace("\"port\":80", "\"port\": 80");
        // The same id twice (the index built from a scan relies on distinct ids).
        let repeated = written.replace("\"m\":", "\"p\":");
        for document in [escaped, multiline, indented.into_bytes(), with_children.into_bytes(), spaced.clone().into_bytes(), repeated.into_bytes()] {
            for verified in [false, true] {
                assert!(scan_snapshot(&document, verified).is_none(), "{}", String::from_utf8_lossy(&document));
            }
        }
        assert_eq!(parsed(spaced.as_bytes()).len(), 2, "the parser still reads a hand edit");
    }

    #[test]
    fn metadata_is_checked_unless_the_document_passed_its_checksum() {
        // Only a hand edit makes this line (the writer quotes metadata that is not JSON); without a
        // checksum vouching for the file, the parser reads it and refuses it.
        let written = String::from_utf8(encode_snapshot([entry("p", None, "{}")].iter().map(Into::into), "now")).unwrap();
        let edited = written.replace("\"additional_metadata\":{}", "\"additional_metadata\":{,}");
        assert_ne!(edited, written);
        assert!(scan_snapshot(edited.as_bytes(), false).is_none());
        assert!(codec::parse_snapshot(edited.as_bytes(), |_| {}, |_| {}).is_err());
        assert_eq!(scan_snapshot(edited.as_bytes(), true).expect("trusted")[0].metadata, "{,}");
    }

    #[test]
    fn a_snapshot_read_back_from_the_file_store_is_in_the_layout() {
        use crate::storage::{FileStore, MappingStore};
        let dir = std::env::temp_dir().join(format!("loxilb-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir.join("m.json")).unwrap();
        let entries = [entry("p", None, "{}"), entry("m", Some("p"), r#"{"address":"10.0.1.1"}"#)];
        store.write_snapshot(encode_snapshot(entries.iter().map(Into::into), "now")).unwrap();
        let document = store.read_snapshot().unwrap().expect("a snapshot");
        assert!(document.verified, "the file store checked its checksum");
        assert!(document.len() > 100 && scan_snapshot(&document, document.verified).is_some(), "{}", String::from_utf8_lossy(&document));
        let copy = crate::storage::MemoryStore::copy_of(&store).unwrap().read_snapshot().unwrap().expect("a snapshot");
        assert!(!copy.verified, "a copy in memory vouches for nothing");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
