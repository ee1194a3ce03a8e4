//! The mapping on disk, in the seed's JSON format (version 1.1): the snapshot document and the journal
//! records, as earlier releases wrote them (the policy wrote them then; the host does now).
//!
//! Snapshot: `{"version", "last_updated", "octavia_to_loxilb", "loxilb_to_octavia", "children",
//! "resource_metadata": {id: {resource_type, parent, external_ip, port, protocol, created_at,
//! additional_metadata}}}`, keys sorted, one mapping per line. Journal record: `{"put":{"id","key",
//! "metadata":{…as in the snapshot…}}}` or `{"remove":{"id"}}`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::runtime::bindings::mapping::{MappingChange, MappingEntry, ResourceType};

pub const FORMAT_VERSION: &str = "1.1";

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

fn metadata(e: &MappingEntry) -> Value {
    let additional: Value = serde_json::from_str(&e.metadata).unwrap_or_else(|_| Value::String(e.metadata.clone()));
    let mut m = Map::new();
    m.insert("resource_type".into(), type_name(e.resource_type).into());
    if let Some(parent) = &e.parent {
        m.insert("parent".into(), parent.clone().into());
    }
    m.insert("external_ip".into(), e.external_ip.clone().into());
    m.insert("port".into(), e.port.into());
    m.insert("protocol".into(), e.protocol.clone().into());
    m.insert("created_at".into(), e.created_at.clone().into());
    m.insert("additional_metadata".into(), additional);
    Value::Object(m)
}

fn entry(id: &str, key: &str, metadata: &Value) -> Result<MappingEntry, String> {
    let field = |name: &str| metadata.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = metadata.get("resource_type").and_then(Value::as_str).unwrap_or_default();
    let resource_type = type_of(kind).ok_or_else(|| format!("{id}: unknown resource_type {kind:?}"))?;
    let additional = metadata.get("additional_metadata").ok_or_else(|| format!("{id}: no additional_metadata"))?;
    Ok(MappingEntry {
        octavia_id: id.to_string(),
        loxilb_key: key.to_string(),
        resource_type,
        parent: metadata.get("parent").and_then(Value::as_str).map(str::to_string),
        external_ip: field("external_ip"),
        port: metadata.get("port").and_then(Value::as_u64).unwrap_or(0) as u16,
        protocol: field("protocol"),
        created_at: field("created_at"),
        metadata: additional.to_string(),
    })
}

pub fn encode_change(change: &MappingChange) -> Vec<u8> {
    let record = match change {
        MappingChange::Put(e) => json!({"put": {"id": e.octavia_id, "key": e.loxilb_key, "metadata": metadata(e)}}),
        MappingChange::Remove(id) => json!({"remove": {"id": id}}),
    };
    record.to_string().into_bytes()
}

pub fn decode_change(record: &[u8]) -> Result<MappingChange, String> {
    let v: Value = serde_json::from_slice(record).map_err(|e| e.to_string())?;
    if let Some(put) = v.get("put") {
        let id = put.get("id").and_then(Value::as_str).ok_or("put without id")?;
        let key = put.get("key").and_then(Value::as_str).ok_or("put without key")?;
        let metadata = put.get("metadata").ok_or("put without metadata")?;
        return entry(id, key, metadata).map(MappingChange::Put);
    }
    if let Some(id) = v.get("remove").and_then(|r| r.get("id")).and_then(Value::as_str) {
        return Ok(MappingChange::Remove(id.to_string()));
    }
    Err("neither a put nor a remove".into())
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<(Vec<MappingEntry>, Vec<String>), String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("snapshot is not JSON: {e}"))?;
    let version = doc.get("version").and_then(Value::as_str).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(format!("snapshot format {version:?} is not {FORMAT_VERSION}"));
    }
    let empty = Map::new();
    let keys = doc.get("octavia_to_loxilb").and_then(Value::as_object).unwrap_or(&empty);
    let metadata = doc.get("resource_metadata").and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Vec::with_capacity(keys.len());
    for (id, key) in keys {
        let key = key.as_str().ok_or_else(|| format!("{id}: key is not a string"))?;
        let meta = metadata.get(id).ok_or_else(|| format!("{id}: no resource_metadata"))?;
        out.push(entry(id, key, meta)?);
    }
    Ok((out, Vec::new()))
}

/// The whole mapping as a snapshot document, keys sorted, one mapping per line.
pub fn encode_snapshot<'a>(entries: impl Iterator<Item = &'a MappingEntry>, now: &str) -> Vec<u8> {
    let by_id: BTreeMap<&str, &MappingEntry> = entries.map(|e| (e.octavia_id.as_str(), e)).collect();
    let by_key: BTreeMap<&str, &str> = by_id.values().map(|e| (e.loxilb_key.as_str(), e.octavia_id.as_str())).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in by_id.values() {
        if let Some(p) = &e.parent {
            children.entry(p.as_str()).or_default().push(&e.octavia_id);
        }
    }
    let mut out = Vec::new();
    let s = |v: &str| serde_json::to_string(v).expect("a string encodes");
    out.extend_from_slice(format!("{{\n  \"version\": {},\n  \"last_updated\": {},\n", s(FORMAT_VERSION), s(now)).as_bytes());
    let map = |name: &str, lines: Vec<String>, out: &mut Vec<u8>, last: bool| {
        out.extend_from_slice(format!("  \"{name}\": {{").as_bytes());
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(if lines.is_empty() { b"}" } else { b"\n  }" });
        out.extend_from_slice(if last { b"\n" } else { b",\n" });
    };
    map("octavia_to_loxilb", by_id.iter().map(|(id, e)| format!("{}: {}", s(id), s(&e.loxilb_key))).collect(), &mut out, false);
    map("loxilb_to_octavia", by_key.iter().map(|(k, id)| format!("{}: {}", s(k), s(id))).collect(), &mut out, false);
    map(
        "children",
        children.iter().map(|(p, ids)| format!("{}: {}", s(p), serde_json::to_string(ids).expect("ids encode"))).collect(),
        &mut out,
        false,
    );
    map("resource_metadata", by_id.iter().map(|(id, e)| format!("{}: {}", s(id), metadata(e))).collect(), &mut out, true);
    out.extend_from_slice(b"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bytes = encode_snapshot(entries.iter(), "now");
        let (back, _) = decode_snapshot(&bytes).unwrap();
        assert_eq!(back, entries.to_vec());
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["children"]["pool"], json!(["a", "b"]));
        assert_eq!(doc["loxilb_to_octavia"]["member_a"], "a");

        let put = MappingChange::Put(member("a"));
        assert_eq!(decode_change(&encode_change(&put)).unwrap(), put);
        let remove = MappingChange::Remove("a".into());
        assert_eq!(decode_change(&encode_change(&remove)).unwrap(), remove);
    }
}
