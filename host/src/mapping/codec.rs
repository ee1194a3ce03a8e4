//! The mapping on disk, in the seed's JSON format (version 1.1): the snapshot document and the journal
//! records, as earlier releases wrote them (the policy wrote them then; the host does now).
//!
//! Snapshot: `{"version", "last_updated", "octavia_to_loxilb", "loxilb_to_octavia",
//! "resource_metadata": {id: {resource_type, parent, external_ip, port, protocol, created_at,
//! additional_metadata}}}`, keys sorted, one mapping per line. Journal record: `{"put":{"id","key",
//! "metadata":{…as in the snapshot…}}}` or `{"remove":{"id"}}`. Snapshots of earlier releases also
//! carry a `children` index (parent → ids); it is ignored, the index is built from each entry's `parent`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::runtime::bindings::mapping::{MappingChange, MappingEntry, ResourceType};
use crate::runtime::bindings::policy_types::LegacyEntry;

pub const FORMAT_VERSION: &str = "1.1";
/// The seed's first format, as the earlier Python driver wrote it.
pub const LEGACY_VERSION: &str = "1.0";

fn type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Loadbalancer => "loadbalancer",
        ResourceType::Listener => "listener",
        ResourceType::Pool => "pool",
        ResourceType::Member => "member",
        ResourceType::Healthmonitor => "healthmonitor",
    }
}

pub fn type_of(name: &str) -> Option<ResourceType> {
    Some(match name {
        "loadbalancer" => ResourceType::Loadbalancer,
        "listener" => ResourceType::Listener,
        "pool" => ResourceType::Pool,
        "member" => ResourceType::Member,
        "healthmonitor" => ResourceType::Healthmonitor,
        _ => return None,
    })
}

/// An entry's fields, wherever they are held.
pub struct EntryRef<'a> {
    pub id: &'a str,
    pub key: &'a str,
    pub kind: ResourceType,
    pub parent: Option<&'a str>,
    pub external_ip: &'a str,
    pub port: u16,
    pub protocol: &'a str,
    pub created_at: &'a str,
    pub metadata: &'a str,
}

impl EntryRef<'_> {
    pub fn to_owned(&self) -> MappingEntry {
        MappingEntry {
            octavia_id: self.id.to_string(),
            loxilb_key: self.key.to_string(),
            resource_type: self.kind,
            parent: self.parent.map(str::to_string),
            external_ip: self.external_ip.to_string(),
            port: self.port,
            protocol: self.protocol.to_string(),
            created_at: self.created_at.to_string(),
            metadata: self.metadata.to_string(),
        }
    }
}

impl<'a> From<&'a MappingEntry> for EntryRef<'a> {
    fn from(e: &'a MappingEntry) -> EntryRef<'a> {
        EntryRef {
            id: &e.octavia_id,
            key: &e.loxilb_key,
            kind: e.resource_type,
            parent: e.parent.as_deref(),
            external_ip: &e.external_ip,
            port: e.port,
            protocol: &e.protocol,
            created_at: &e.created_at,
            metadata: &e.metadata,
        }
    }
}

/// The entry's `resource_metadata` value, the policy's metadata written as it is (byte for byte).
fn metadata(e: &EntryRef) -> String {
    let mut out = Vec::with_capacity(160 + e.metadata.len());
    write_metadata(&mut out, e);
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// An entry's metadata object, written into `out` without a string per field (every journal record and
/// every snapshot line has one; a recovery writes 67k at once).
fn write_metadata(out: &mut Vec<u8>, e: &EntryRef) {
    use std::io::Write;
    out.extend_from_slice(b"{\"resource_type\":\"");
    out.extend_from_slice(type_name(e.kind).as_bytes());
    out.push(b'"');
    if let Some(parent) = e.parent {
        out.extend_from_slice(b",\"parent\":");
        json_string(out, parent);
    }
    out.extend_from_slice(b",\"external_ip\":");
    json_string(out, e.external_ip);
    out.extend_from_slice(b",\"port\":");
    let _ = write!(out, "{}", e.port);
    out.extend_from_slice(b",\"protocol\":");
    json_string(out, e.protocol);
    out.extend_from_slice(b",\"created_at\":");
    json_string(out, e.created_at);
    out.extend_from_slice(b",\"additional_metadata\":");
    // The policy's JSON as it wrote it; anything else is kept as a string.
    if serde_json::from_str::<serde::de::IgnoredAny>(e.metadata).is_ok() {
        out.extend_from_slice(e.metadata.as_bytes());
    } else {
        json_string(out, e.metadata);
    }
    out.push(b'}');
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("a string encodes");
}

#[derive(serde::Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    resource_type: Cow<'a, str>,
    #[serde(default, borrow)]
    parent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    external_ip: Cow<'a, str>,
    #[serde(default)]
    port: u16,
    #[serde(default, borrow)]
    protocol: Cow<'a, str>,
    #[serde(default, borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    additional_metadata: &'a RawValue,
}

impl<'a> Metadata<'a> {
    fn entry<'b>(&'b self, id: &'b str, key: &'b str) -> Result<EntryRef<'b>, String> {
        let kind = type_of(&self.resource_type).ok_or_else(|| format!("{id}: unknown resource_type {:?}", self.resource_type))?;
        Ok(EntryRef {
            id,
            key,
            kind,
            parent: self.parent.as_deref(),
            external_ip: &self.external_ip,
            port: self.port,
            protocol: &self.protocol,
            created_at: &self.created_at,
            metadata: self.additional_metadata.get(),
        })
    }
}

pub fn encode_change(change: &MappingChange) -> Vec<u8> {
    match change {
        MappingChange::Put(e) => {
            let mut out = Vec::with_capacity(200 + e.metadata.len());
            out.extend_from_slice(b"{\"put\":{\"id\":");
            json_string(&mut out, &e.octavia_id);
            out.extend_from_slice(b",\"key\":");
            json_string(&mut out, &e.loxilb_key);
            out.extend_from_slice(b",\"metadata\":");
            write_metadata(&mut out, &e.into());
            out.extend_from_slice(b"}}");
            out
        }
        MappingChange::Remove(id) => {
            let mut out = b"{\"remove\":{\"id\":".to_vec();
            json_string(&mut out, id);
            out.extend_from_slice(b"}}");
            out
        }
    }
}

#[derive(serde::Deserialize)]
struct Put<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    metadata: &'a RawValue,
}

#[derive(serde::Deserialize)]
struct Remove<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record<'a> {
    #[serde(borrow)]
    Put(Put<'a>),
    #[serde(borrow)]
    Remove(Remove<'a>),
}

/// A journal record's change, borrowed from the record.
pub enum ChangeRef<'a> {
    Put(EntryRef<'a>),
    Remove(&'a str),
}

/// Hands the change a journal record holds to `apply`, borrowed from the record (a replay of 12.5k
/// records made ~10 owned strings per record, twice).
pub fn decode_record<R>(record: &[u8], apply: impl FnOnce(ChangeRef) -> R) -> Result<R, String> {
    match serde_json::from_slice::<Record>(record).map_err(|e| e.to_string())? {
        Record::Put(p) => {
            let m: Metadata = serde_json::from_str(p.metadata.get()).map_err(|e| format!("{}: {e}", p.id))?;
            Ok(apply(ChangeRef::Put(m.entry(&p.id, &p.key)?)))
        }
        Record::Remove(r) => Ok(apply(ChangeRef::Remove(&r.id))),
    }
}

#[cfg(test)]
pub fn decode_change(record: &[u8]) -> Result<MappingChange, String> {
    decode_record(record, |change| match change {
        ChangeRef::Put(e) => MappingChange::Put(e.to_owned()),
        ChangeRef::Remove(id) => MappingChange::Remove(id.to_string()),
    })
}

/// A snapshot document as read: one pass over the bytes, every string borrowed from them unless it has
/// escapes, each map as its pairs in file order (no hashing: the file is sorted by id).
#[derive(serde::Deserialize)]
struct Document<'a> {
    #[serde(default)]
    version: Value,
    #[serde(default, borrow, deserialize_with = "pairs")]
    octavia_to_loxilb: Vec<(Cow<'a, str>, &'a RawValue)>,
    #[serde(default, borrow, deserialize_with = "pairs")]
    resource_metadata: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// A JSON object's members in order.
fn pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(Cow<'de, str>, &'de RawValue)>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some((k, v)) = map.next_entry::<Borrowed<'de>, &'de RawValue>()? {
                out.push((k.0, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}

/// A string borrowed from the input when it has no escapes.
#[derive(serde::Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

/// The members by name, sorted; of a name given twice, the last one (as a JSON object reader keeps it).
fn by_name<'a>(mut members: Vec<(Cow<'a, str>, &'a RawValue)>) -> Vec<(Cow<'a, str>, &'a RawValue)> {
    if members.windows(2).all(|w| w[0].0 < w[1].0) {
        return members;
    }
    members.reverse();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|later, earlier| later.0 == earlier.0);
    members
}

/// What a snapshot file holds: its entries are handed to `each` (this format; `reserve` is told how many
/// first), or returned for the policy to migrate (the seed's format 1.0, the earlier Python driver's).
/// (A load indexes a scanned snapshot at once: `Mapping::load`.)
#[cfg(test)]
pub fn decode_snapshot(bytes: &[u8], reserve: impl FnOnce(usize), each: impl FnMut(EntryRef)) -> Result<Option<Vec<LegacyEntry>>, String> {
    if let Some(entries) = super::scan::scan_snapshot(bytes, false) {
        reserve(entries.len());
        entries.into_iter().for_each(each);
        return Ok(None);
    }
    parse_snapshot(bytes, reserve, each)
}

/// What a snapshot file holds, read by the JSON parser: its entries are handed to `each` (this format;
/// `reserve` is told how many first), or returned for the policy to migrate (the seed's format 1.0, the
/// earlier Python driver's). A snapshot in the writer's own layout is read faster by `scan`.
pub fn parse_snapshot(bytes: &[u8], reserve: impl FnOnce(usize), mut each: impl FnMut(EntryRef)) -> Result<Option<Vec<LegacyEntry>>, String> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| format!("snapshot is not a mapping document: {e}"))?;
    match doc.version.as_str() {
        Some(FORMAT_VERSION) => {}
        Some(LEGACY_VERSION) => {
            let keys = by_name(doc.octavia_to_loxilb);
            let key_of = |id: &str| keys.binary_search_by(|(k, _)| (**k).cmp(id)).ok().map(|i| keys[i].1);
            let out: Vec<LegacyEntry> = by_name(doc.resource_metadata)
                .into_iter()
                .map(|(id, meta)| LegacyEntry {
                    loxilb_key: key_of(&id).and_then(|k| serde_json::from_str::<String>(k.get()).ok()),
                    octavia_id: id.into_owned(),
                    metadata: meta.get().to_string(),
                })
                .collect();
            return Ok(Some(out));
        }
        _ => {
            let version = doc.version;
            return Err(format!("snapshot format {version} is neither {FORMAT_VERSION} nor {LEGACY_VERSION}: written by another release?"));
        }
    }
    let metadata = by_name(doc.resource_metadata);
    reserve(metadata.len());
    for (id, key) in by_name(doc.octavia_to_loxilb) {
        let key: Borrowed = serde_json::from_str(key.get()).map_err(|e| format!("{id}: its key: {e}"))?;
        let at = metadata.binary_search_by(|(m, _)| (**m).cmp(&id)).map_err(|_| format!("{id}: no resource_metadata"))?;
        let m: Metadata = serde_json::from_str(metadata[at].1.get()).map_err(|e| format!("{id}: {e}"))?;
        each(m.entry(&id, &key.0)?);
    }
    Ok(None)
}

/// The whole mapping as a snapshot document, keys sorted, one mapping per line (not indented: at 100k
/// mappings an indentation costs more than a megabyte per level).
pub fn encode_snapshot<'a>(entries: impl Iterator<Item = EntryRef<'a>>, now: &str) -> Vec<u8> {
    let by_id: BTreeMap<&str, EntryRef> = entries.map(|e| (e.id, e)).collect();
    let by_key: BTreeMap<&str, &str> = by_id.values().map(|e| (e.key, e.id)).collect();
    let mut out = Vec::new();
    let s = |v: &str| serde_json::to_string(v).expect("a string encodes");
    out.extend_from_slice(format!("{{\n  \"version\": {},\n  \"last_updated\": {},\n", s(FORMAT_VERSION), s(now)).as_bytes());
    let map = |name: &str, lines: Vec<String>, out: &mut Vec<u8>, last: bool| {
        out.extend_from_slice(format!("  \"{name}\": {{").as_bytes());
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(if lines.is_empty() { b"}" } else { b"\n  }" });
        out.extend_from_slice(if last { b"\n" } else { b",\n" });
    };
    map("octavia_to_loxilb", by_id.iter().map(|(id, e)| format!("{}:{}", s(id), s(e.key))).collect(), &mut out, false);
    map("loxilb_to_octavia", by_key.iter().map(|(k, id)| format!("{}:{}", s(k), s(id))).collect(), &mut out, false);
    map("resource_metadata", by_id.iter().map(|(id, e)| format!("{}:{}", s(id), metadata(e))).collect(), &mut out, true);
    out.extend_from_slice(b"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(id: &str) -> MappingEntry {
        MappingEntry {
            octavia_id: id.into(),
            loxilb_key: format!("member_{id}"),
            resource_type: ResourceType::Member,
            parent: Some("pool".into()),
            external_ip: "10.0.0.1".into(),
            port: 80,
            protocol: String::new(),
            created_at: "2026-12-05T00:00:00Z".into(),
            metadata: r#"{"object":"member","attributes":{"id":"m"}}"#.into(),
        }
    }

    #[test]
    fn snapshots_and_records_read_back_as_written() {
        let entries = [member("a"), member("b")];
        let bytes = encode_snapshot(entries.iter().map(EntryRef::from), "now");
        let mut back = Vec::new();
        assert!(decode_snapshot(&bytes, |_| {}, |e| back.push(e.to_owned())).unwrap().is_none(), "read as current");
        back.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
        assert_eq!(back, entries.to_vec());
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["resource_metadata"]["a"]["parent"], json!("pool"));
        assert_eq!(doc["loxilb_to_octavia"]["member_a"], "a");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\n\"a\":\"member_a\",\n\"b\":\"member_b\"\n"), "one unindented line per mapping: {text}");
        // The tree is each entry's `parent`: the load builds the index of children from it, and a second
        // copy indexed by parent would only make the file larger.
        assert_eq!(
            doc.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["last_updated", "loxilb_to_octavia", "octavia_to_loxilb", "resource_metadata", "version"]
        );

        let put = MappingChange::Put(member("a"));
        assert_eq!(decode_change(&encode_change(&put)).unwrap(), put);
        let remove = MappingChange::Remove("a".into());
        assert_eq!(decode_change(&encode_change(&remove)).unwrap(), remove);
        // Escapes: decoded into owned text, not borrowed.
        let mut escaped = member("q\"u\\o");
        escaped.loxilb_key = "k\"ey".into();
        escaped.created_at = "2026-12-05T00:00:00Z\n".into();
        let put = MappingChange::Put(escaped);
        assert_eq!(decode_change(&encode_change(&put)).unwrap(), put);
        let remove = MappingChange::Remove("q\"u\\o".into());
        assert_eq!(decode_change(&encode_change(&remove)).unwrap(), remove);
    }

    #[test]
    fn journal_records_keep_their_text() {
        let mut e = member("m\"1");
        e.protocol = "tcp".into();
        e.metadata = r#"{"a":[1,"\u00e9"]}"#.into();
        assert_eq!(
            String::from_utf8(encode_change(&MappingChange::Put(e.clone()))).unwrap(),
            r#"{"put":{"id":"m\"1","key":"member_m\"1","metadata":{"resource_type":"member","parent":"pool","external_ip":"10.0.0.1","port":80,"protocol":"tcp","created_at":"2026-12-05T00:00:00Z","additional_metadata":{"a":[1,"\u00e9"]}}}}"#
        );
        // Metadata that is not JSON is kept as a string; an entry without a parent has no `parent`.
        (e.metadata, e.parent) = ("not json".into(), None);
        assert!(String::from_utf8(encode_change(&MappingChange::Put(e)))
            .unwrap()
            .ends_with(r#""port":80,"protocol":"tcp","created_at":"2026-12-05T00:00:00Z","additional_metadata":"not json"}}}"#));
        assert_eq!(encode_change(&MappingChange::Remove("a\\b".into())), br#"{"remove":{"id":"a\\b"}}"#);
    }

    #[test]
    fn a_hand_edited_snapshot_reads_as_a_json_reader_would() {
        let meta =
            |ip: &str| format!(r#"{{"resource_type":"loadbalancer","external_ip":"{ip}","port":0,"protocol":"","created_at":"t","additional_metadata":{{}}}}"#);
        // Out of order, escaped, and one id given twice: the last one counts.
        let doc = format!(
            r#"{{"version":"1.1","octavia_to_loxilb":{{"b":"10.0.0.2","a\u0041":"k-old","aA":"10.0.0.1"}},"resource_metadata":{{"aA":{},"b":{}}}}}"#,
            meta("10.0.0.1"),
            meta("10.0.0.2")
        );
        let mut read = Vec::new();
        assert!(decode_snapshot(doc.as_bytes(), |_| {}, |e| read.push(e.to_owned())).unwrap().is_none());
        let keys: Vec<(&str, &str)> = read.iter().map(|e| (e.octavia_id.as_str(), e.loxilb_key.as_str())).collect();
        assert_eq!(keys, [("aA", "10.0.0.1"), ("b", "10.0.0.2")]);

        let missing = r#"{"version":"1.1","octavia_to_loxilb":{"lb":"10.0.0.1"},"resource_metadata":{}}"#;
        let err = decode_snapshot(missing.as_bytes(), |_| {}, |_| {}).expect_err("refused");
        assert_eq!(err, "lb: no resource_metadata");
    }
}
