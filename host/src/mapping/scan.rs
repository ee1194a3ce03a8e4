//! Reads a snapshot laid out exactly as `codec::encode_snapshot` writes it — one mapping per line, fields
//! in a fixed order — by finding quotes and line ends instead of running a JSON parser over every byte.
//! Anything else (files of earlier releases, hand edits, a string with an escape) is `None`, and the
//! caller reads the file with the JSON parser: this is a shortcut for the common case, never a second
//! reader of the format. At 100k mappings the parser took ~190 ms; the scan leaves the time to building
//! the index.

use memchr::{memchr, memchr2, memmem};

use super::codec::{type_of, EntryRef, FORMAT_VERSION};

/// The entries of `document` in the writer's layout, or `None` if it is not in that layout.
pub fn scan_snapshot(document: &[u8]) -> Option<Vec<EntryRef<'_>>> {
    let text = std::str::from_utf8(document).ok()?;
    let rest = text.strip_prefix(&format!("{{\n  \"version\": \"{FORMAT_VERSION}\",\n  \"last_updated\": "))?;
    let (_, rest) = string(rest)?;
    let rest = rest.strip_prefix(",\n")?;
    let (keys, rest) = map(rest, "octavia_to_loxilb")?;
    let rest = rest.strip_prefix(",\n")?;
    // The reverse map holds nothing the forward one does not; the index builds its own.
    let (_, rest) = map(rest, "loxilb_to_octavia")?;
    let rest = rest.strip_prefix(",\n")?;
    let (metadata, rest) = map(rest, "resource_metadata")?;
    if rest != "\n}" {
        return None;
    }
    // Both maps are sorted by id and the writer puts every entry in both, so line i of one is line i of
    // the other. A large snapshot is read in two halves at once (checking each line's metadata is most
    // of the work).
    if keys.len() != metadata.len() {
        return None;
    }
    let half = if metadata.len() >= PARALLEL_FROM { metadata.len() / 2 } else { metadata.len() };
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| entries(&keys[half..], &metadata[half..]));
        (entries(&keys[..half], &metadata[..half]), second.join().ok().flatten())
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

/// Entries from this many on are scanned on two threads.
const PARALLEL_FROM: usize = 8192;

/// The entries of matching lines of the two maps, whose ids must rise strictly (the writer sorts them).
fn entries<'a>(keys: &[&'a str], metadata: &[&'a str]) -> Option<Vec<EntryRef<'a>>> {
    let mut entries: Vec<EntryRef<'a>> = Vec::with_capacity(metadata.len());
    for (key, line) in keys.iter().zip(metadata) {
        let (id, key) = key_line(key)?;
        let entry = metadata_line(line, key)?;
        if entry.id != id || entries.last().is_some_and(|previous| previous.id >= id) {
            return None;
        }
        entries.push(entry);
    }
    Some(entries)
}

/// A JSON string without escapes at the start of `s`, and what follows it.
fn string(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let end = memchr2(b'"', b'\\', body.as_bytes())?;
    (body.as_bytes()[end] == b'"').then(|| (&body[..end], &body[end + 1..]))
}

/// The lines of the map `name` (`  "name": {` … `\n  }`), and what follows it.
fn map<'a>(s: &'a str, name: &str) -> Option<(Vec<&'a str>, &'a str)> {
    let rest = s.strip_prefix("  \"")?.strip_prefix(name)?.strip_prefix("\": {")?;
    if let Some(rest) = rest.strip_prefix('}') {
        return Some((Vec::new(), rest));
    }
    let rest = rest.strip_prefix('\n')?;
    // JSON strings hold no raw line breaks, so the first line that closes the map ends it; every line but
    // the last ends with a comma.
    let end = memmem::find(rest.as_bytes(), b"\n  }")?;
    let mut lines: Vec<&str> = rest[..end].split('\n').collect();
    let last = lines.len() - 1;
    for line in &mut lines[..last] {
        *line = line.strip_suffix(',')?;
    }
    Some((lines, &rest[end + 4..]))
}

/// `"<id>":"<key>"`.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (id, rest) = string(line)?;
    let (key, rest) = string(rest.strip_prefix(':')?)?;
    rest.is_empty().then_some((id, key))
}

/// `"<id>":{"resource_type":"<t>"[,"parent":"<p>"],"external_ip":"<ip>","port":<n>,"protocol":"<q>",
/// "created_at":"<c>","additional_metadata":<metadata>}`.
fn metadata_line<'a>(line: &'a str, key: &'a str) -> Option<EntryRef<'a>> {
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
    serde_json::from_str::<serde::de::IgnoredAny>(metadata).ok()?;
    Some(EntryRef { id, key, kind: type_of(kind)?, parent, external_ip, port, protocol, created_at, metadata })
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode_snapshot, encode_snapshot};
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
            (0..PARALLEL_FROM + 11).map(|i| entry(&format!("m{i:05}"), Some("p"), r#"{"weight":2}"#)).collect(),
        ] {
            let document = encode_snapshot(entries.iter().map(Into::into), "now");
            let scanned: Vec<MappingEntry> = scan_snapshot(&document).expect("the writer's layout").iter().map(EntryRef::to_owned).collect();
            assert_eq!(scanned, parsed(&document), "{}", String::from_utf8_lossy(&document));
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
            assert!(scan_snapshot(&document).is_none(), "{}", String::from_utf8_lossy(&document));
        }
        assert_eq!(parsed(spaced.as_bytes()).len(), 2, "the parser still reads a hand edit");
    }

    #[test]
    fn a_snapshot_read_back_from_the_file_store_is_in_the_layout() {
        use crate::caps::storage::{FileStore, MappingStore};
        let dir = std::env::temp_dir().join(format!("loxilb-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir.join("m.json")).unwrap();
        let entries = [entry("p", None, "{}"), entry("m", Some("p"), r#"{"address":"10.0.1.1"}"#)];
        store.write_snapshot(encode_snapshot(entries.iter().map(Into::into), "now")).unwrap();
        let document = store.read_snapshot().unwrap().expect("a snapshot");
        assert!(document.len() > 100 && scan_snapshot(&document).is_some(), "{}", String::from_utf8_lossy(&document));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
