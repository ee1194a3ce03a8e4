//! The mapping on disk, in the seed's JSON format (version 1.1): the snapshot document and the journal
//! records, as earlier releases wrote them (the policy wrote them then; the host does now).
//!
//! Snapshot: `{"version", "last_updated", "octavia_to_loxilb", "loxilb_to_octavia",
//! "resource_metadata": {id: {resource_type, parent, external_ip, port, protocol, created_at,
//! additional_metadata}}}`, keys sorted, one mapping per line. Journal record: `{"put":{"id","key",
//! "metadata":{…as in the snapshot…}}}` or `{"remove":{"id"}}`. Snapshots of earlier releases also
//! carry a `children` index (parent → ids); it is ignored, the index is built from each entry's `parent`.

use std::collections::{BTreeMap, HashMap};

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
    let s = |v: &str| serde_json::to_string(v).expect("a string encodes");
    let parent = e.parent.map(|p| format!(",\"parent\":{}", s(p))).unwrap_or_default();
    let additional = if serde_json::from_str::<serde::de::IgnoredAny>(e.metadata).is_ok() { e.metadata.to_string() } else { s(e.metadata) };
    format!(
        "{{\"resource_type\":\"{}\"{parent},\"external_ip\":{},\"port\":{},\"protocol\":{},\"created_at\":{},\"additional_metadata\":{additional}}}",
        type_name(e.kind),
        s(e.external_ip),
        e.port,
        s(e.protocol),
        s(e.created_at)
    )
}

#[derive(serde::Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    resource_type: &'a str,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    external_ip: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    created_at: String,
    #[serde(borrow)]
    additional_metadata: &'a serde_json::value::RawValue,
}

fn entry(id: &str, key: &str, metadata: &serde_json::value::RawValue) -> Result<MappingEntry, String> {
    let m: Metadata = serde_json::from_str(metadata.get()).map_err(|e| format!("{id}: {e}"))?;
    let resource_type = type_of(m.resource_type).ok_or_else(|| format!("{id}: unknown resource_type {:?}", m.resource_type))?;
    Ok(MappingEntry {
        octavia_id: id.to_string(),
        loxilb_key: key.to_string(),
        resource_type,
        parent: m.parent,
        external_ip: m.external_ip,
        port: m.port,
        protocol: m.protocol,
        created_at: m.created_at,
        metadata: m.additional_metadata.get().to_string(),
    })
}

pub fn encode_change(change: &MappingChange) -> Vec<u8> {
    let s = |v: &str| serde_json::to_string(v).expect("a string encodes");
    match change {
        MappingChange::Put(e) => format!("{{\"put\":{{\"id\":{},\"key\":{},\"metadata\":{}}}}}", s(&e.octavia_id), s(&e.loxilb_key), metadata(&e.into())),
        MappingChange::Remove(id) => format!("{{\"remove\":{{\"id\":{}}}}}", s(id)),
    }
    .into_bytes()
}

#[derive(serde::Deserialize)]
struct Put<'a> {
    id: String,
    key: String,
    #[serde(borrow)]
    metadata: &'a serde_json::value::RawValue,
}

#[derive(serde::Deserialize)]
struct Remove {
    id: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Record<'a> {
    #[serde(borrow)]
    Put(Put<'a>),
    Remove(Remove),
}

pub fn decode_change(record: &[u8]) -> Result<MappingChange, String> {
    match serde_json::from_slice::<Record>(record).map_err(|e| e.to_string())? {
        Record::Put(p) => entry(&p.id, &p.key, p.metadata).map(MappingChange::Put),
        Record::Remove(r) => Ok(MappingChange::Remove(r.id)),
    }
}

#[derive(serde::Deserialize)]
struct Snapshot<'a> {
    #[serde(default)]
    octavia_to_loxilb: HashMap<String, String>,
    #[serde(default, borrow)]
    resource_metadata: HashMap<String, &'a serde_json::value::RawValue>,
}

/// What a snapshot file holds.
pub enum Decoded {
    /// Entries of this format.
    Current(Vec<MappingEntry>),
    /// Entries of the seed's format 1.0 (the earlier Python driver's), for the policy to migrate.
    Legacy(Vec<LegacyEntry>),
}

#[derive(serde::Deserialize)]
struct Version {
    #[serde(default)]
    version: Value,
}

#[derive(serde::Deserialize)]
struct LegacySnapshot<'a> {
    #[serde(default)]
    octavia_to_loxilb: HashMap<String, Value>,
    #[serde(default, borrow)]
    resource_metadata: HashMap<String, &'a serde_json::value::RawValue>,
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<Decoded, String> {
    let version = serde_json::from_slice::<Version>(bytes).map_err(|e| format!("snapshot is not a mapping document: {e}"))?.version;
    match version.as_str() {
        Some(FORMAT_VERSION) => {}
        Some(LEGACY_VERSION) => {
            let doc: LegacySnapshot = serde_json::from_slice(bytes).map_err(|e| format!("format 1.0 snapshot: {e}"))?;
            let mut out: Vec<LegacyEntry> = doc
                .resource_metadata
                .iter()
                .map(|(id, meta)| LegacyEntry {
                    octavia_id: id.clone(),
                    loxilb_key: doc.octavia_to_loxilb.get(id).and_then(Value::as_str).map(str::to_string),
                    metadata: meta.get().to_string(),
                })
                .collect();
            out.sort_by(|a, b| a.octavia_id.cmp(&b.octavia_id));
            return Ok(Decoded::Legacy(out));
        }
        _ => return Err(format!("snapshot format {version} is neither {FORMAT_VERSION} nor {LEGACY_VERSION}: written by another release?")),
    }
    let doc: Snapshot = serde_json::from_slice(bytes).map_err(|e| format!("snapshot is not a mapping document: {e}"))?;
    let mut out = Vec::with_capacity(doc.octavia_to_loxilb.len());
    for (id, key) in &doc.octavia_to_loxilb {
        let meta = doc.resource_metadata.get(id).ok_or_else(|| format!("{id}: no resource_metadata"))?;
        out.push(entry(id, key, meta)?);
    }
    Ok(Decoded::Current(out))
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
        let Decoded::Current(mut back) = decode_snapshot(&bytes).unwrap() else { panic!("not read as current") };
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
    }
}
