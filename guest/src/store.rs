//! The persisted mapping: a snapshot in the seed's JSON format and a journal of changes since it.
//!
//! Snapshot (version 1.1; the host appends `journal_generation` and a checksum when it writes the file).
//! Keys are sorted, and each top-level key and each mapping is on a line of its own:
//! ```json
//! { "version": "1.1", "last_updated": "2026-11-25T08:00:00Z",
//!   "octavia_to_loxilb": { "<id>": "<key>" }, "loxilb_to_octavia": { "<key>": "<id>" },
//!   "resource_metadata": { "<id>": { "resource_type": "listener", "external_ip": "10.0.0.10", "port": 80,
//!       "protocol": "tcp", "created_at": "…", "additional_metadata": { "object": "listener", "attributes": {…} } } } }
//! ```
//! `additional_metadata` holds the Octavia object (and, for listeners, the rule last programmed), enough
//! to re-render every rule from the file alone.
//!
//! Journal: one JSON record per change, `{"put": {"id": …, "entry": {…}}}` or `{"remove": {"id": …}}`.
//! Replaying the whole journal over the snapshot it follows yields the current mapping; replaying it
//! twice yields the same (each record sets or clears one id), so a crash between writing a snapshot and
//! starting its journal loses nothing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::state::{Change, Entry, ListenerState, Object, ResourceType, State};

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

#[derive(Serialize)]
struct SnapshotOut<'a> {
    version: &'static str,
    last_updated: &'a str,
    octavia_to_loxilb: SortedMap<'a, &'a str>,
    loxilb_to_octavia: SortedMap<'a, &'a str>,
    resource_metadata: SortedMap<'a, MetadataOut<'a>>,
}

/// A JSON object from pairs already sorted by key (sorted once, instead of building a `BTreeMap` per map).
struct SortedMap<'a, V>(Vec<(&'a str, V)>);

impl<V: Serialize> Serialize for SortedMap<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(Serialize)]
struct MetadataOut<'a> {
    resource_type: ResourceType,
    external_ip: &'a str,
    port: u16,
    protocol: &'a str,
    created_at: &'a str,
    additional_metadata: &'a Object,
}

#[derive(Deserialize)]
struct SnapshotIn {
    version: serde_json::Value,
    #[serde(default)]
    octavia_to_loxilb: HashMap<String, String>,
    #[serde(default)]
    resource_metadata: HashMap<String, Metadata>,
}

pub fn encode_snapshot(state: &State, now: &str) -> Vec<u8> {
    let mut by_id: Vec<(&str, &Entry)> = state.entries.iter().map(|(id, e)| (id.as_str(), e)).collect();
    by_id.sort_unstable_by_key(|(id, _)| *id);
    let mut by_key: Vec<(&str, &str)> = state.reverse.iter().map(|(k, id)| (k.as_str(), id.as_str())).collect();
    by_key.sort_unstable_by_key(|(k, _)| *k);
    let out = SnapshotOut {
        version: FORMAT_VERSION,
        last_updated: now,
        octavia_to_loxilb: SortedMap(by_id.iter().map(|(id, e)| (*id, e.key.as_str())).collect()),
        loxilb_to_octavia: SortedMap(by_key),
        resource_metadata: SortedMap(
            by_id
                .iter()
                .map(|(id, e)| {
                    let metadata = MetadataOut {
                        resource_type: e.resource_type(),
                        external_ip: &e.external_ip,
                        port: e.port,
                        protocol: &e.protocol,
                        created_at: &e.created_at,
                        additional_metadata: &e.object,
                    };
                    (*id, metadata)
                })
                .collect(),
        ),
    };
    // Sized from the last snapshot read or written: growing by doubling would need twice the final size
    // at once, and at 100k mappings that alone is more than a 256 MiB sandbox has.
    let hint = SIZE_HINT.with(|h| h.get());
    let mut bytes = Vec::with_capacity(if hint > 0 { hint + hint / 32 + 4096 } else { state.len() * 800 + 4096 });
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, OneEntryPerLine::default());
    out.serialize(&mut ser).expect("mapping serialises");
    SIZE_HINT.with(|h| h.set(bytes.len()));
    bytes
}

thread_local! {
    /// The size of the last snapshot decoded or encoded.
    static SIZE_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Top-level keys and each mapping on a line of their own, compact inside: `grep <id>` shows a whole
/// mapping, and the file is a third smaller and parses faster than fully indented JSON (which puts
/// every field of every Octavia object on its own line).
#[derive(Default)]
struct OneEntryPerLine {
    depth: usize,
    has_value: bool,
}

impl OneEntryPerLine {
    /// Objects at these depths (the document, and the three maps) are laid out one member per line.
    const LINED: usize = 2;

    fn newline<W: ?Sized + std::io::Write>(w: &mut W, depth: usize) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for OneEntryPerLine {
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        if self.depth < Self::LINED && self.has_value {
            Self::newline(w, self.depth)?;
        }
        self.has_value = true;
        w.write_all(b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.depth <= Self::LINED {
            Self::newline(w, self.depth)?;
        }
        Ok(())
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.depth <= Self::LINED { b": " } else { b":" })
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// A 1.1 snapshot, typed all the way down: no `serde_json::Value` in between, and `loxilb_to_octavia`
/// (the inverse of `octavia_to_loxilb`, rebuilt by `State::put`) skipped unparsed.
#[derive(Deserialize)]
struct SnapshotV1_1 {
    version: String,
    #[serde(default)]
    octavia_to_loxilb: HashMap<String, String>,
    #[serde(default, deserialize_with = "entries")]
    resource_metadata: Vec<(String, MetadataV1_1)>,
}

#[derive(Deserialize)]
struct MetadataV1_1 {
    external_ip: String,
    port: u16,
    protocol: String,
    #[serde(default)]
    created_at: String,
    additional_metadata: Object,
}

/// A JSON object as a list of its members, without hashing them into a map first.
fn entries<'de, D: serde::Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<Vec<(String, V)>, D::Error> {
    struct Entries<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(entry) = map.next_entry()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Entries(std::marker::PhantomData))
}

/// Parses a snapshot of any supported version, migrating older ones. Returns the state and notes about
/// what migration did.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(State, Vec<String>), String> {
    SIZE_HINT.with(|h| h.set(bytes.len()));
    // What this policy writes takes the typed path; anything else (older versions, hand edits, damage)
    // the general one, which also words the errors.
    if let Ok(snap) = serde_json::from_slice::<SnapshotV1_1>(bytes) {
        if snap.version == FORMAT_VERSION {
            let mut keys = snap.octavia_to_loxilb;
            let mut state = State::default();
            state.entries.reserve(snap.resource_metadata.len());
            state.reverse.reserve(snap.resource_metadata.len());
            for (id, meta) in snap.resource_metadata {
                let key = keys.remove(&id).ok_or_else(|| format!("{id}: metadata without a key"))?;
                let MetadataV1_1 { external_ip, port, protocol, created_at, additional_metadata: object } = meta;
                state.put(id, Entry { key, external_ip, port, protocol, created_at, object });
            }
            return Ok((state, Vec::new()));
        }
    }
    decode_any(bytes)
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
            let key = snap.octavia_to_loxilb.get(&id).cloned().ok_or_else(|| format!("{id}: metadata without a key"))?;
            let object: Object = serde_json::from_value(meta.additional_metadata).map_err(|e| format!("{id}: bad additional_metadata: {e}"))?;
            let created_at = meta.created_at.as_str().unwrap_or_default().to_string();
            state.put(id, Entry { key, external_ip: meta.external_ip, port: meta.port, protocol: meta.protocol, created_at, object });
        }
    } else {
        let migrated = migrate_v1_0(snap.octavia_to_loxilb, snap.resource_metadata, &mut state);
        notes.push(format!(
            "migrated {migrated} mappings from format {version} to {FORMAT_VERSION}; their Octavia attributes were not stored in {version}: re-sync them from Octavia"
        ));
    }
    Ok((state, notes))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Version 1.0 (the earlier driver) kept ids, keys and a few metadata fields but not the Octavia objects.
/// Load balancers and listeners are rebuilt from what it kept (VIP, port, protocol, parent ids) so their
/// rules can be found and re-synced; entries that cannot be placed are reported and skipped.
fn migrate_v1_0(keys: HashMap<String, String>, metadata: HashMap<String, Metadata>, state: &mut State) -> usize {
    use crate::octavia::{Listener, Loadbalancer};
    let mut migrated = 0;
    let mut listeners = Vec::new();
    for (id, meta) in &metadata {
        let created_at = match &meta.created_at {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => crate::execute::rfc3339((n.as_f64().unwrap_or(0.0) * 1000.0) as u64),
            _ => String::new(),
        };
        let extra = &meta.additional_metadata;
        match meta.resource_type {
            ResourceType::Loadbalancer => {
                let vip = if meta.external_ip.is_empty() {
                    keys.get(id).and_then(|k| crate::keys::parse_service_key(k)).map(|(ip, _, _)| ip.to_string()).unwrap_or_default()
                } else {
                    meta.external_ip.clone()
                };
                if !crate::keys::is_ip(&vip) {
                    continue;
                }
                let lb = Loadbalancer {
                    id: id.clone(),
                    name: None,
                    vip_address: vip.clone(),
                    additional_vips: Vec::new(),
                    admin_state_up: true,
                    flavor: Vec::new(),
                    listeners: Vec::new(),
                    pools: Vec::new(),
                };
                state.put(
                    id.clone(),
                    Entry {
                        key: crate::keys::loadbalancer_key(&vip),
                        external_ip: vip,
                        port: 0,
                        protocol: String::new(),
                        created_at,
                        object: Object::Loadbalancer(lb),
                    },
                );
                migrated += 1;
            }
            ResourceType::Listener => listeners.push((id.clone(), meta, created_at, extra)),
            _ => {}
        }
    }
    for (id, meta, created_at, extra) in listeners {
        let lb_id = extra.get("lb_id").or_else(|| extra.get("loadbalancer_id")).and_then(|v| v.as_str());
        let (Some(lb_id), Some(key)) = (lb_id, keys.get(&id)) else { continue };
        let Some((vip, port, proto)) = crate::keys::parse_service_key(key) else { continue };
        if state.get(lb_id).is_none() {
            continue;
        }
        let listener = Listener {
            id: id.clone(),
            loadbalancer_id: lb_id.to_string(),
            protocol: proto.to_ascii_uppercase(),
            protocol_port: port,
            default_pool_id: extra.get("pool_id").and_then(|v| v.as_str()).map(str::to_string),
            admin_state_up: true,
            connection_limit: None,
            timeout_client_data: None,
            timeout_member_connect: None,
            timeout_member_data: None,
            allowed_cidrs: Vec::new(),
            insert_headers: Vec::new(),
            default_tls_container_ref: None,
            sni_container_refs: Vec::new(),
            client_authentication: None,
            l7policies: Vec::new(),
        };
        state.put(
            id,
            Entry {
                key: key.clone(),
                external_ip: vip.to_string(),
                port,
                protocol: proto.to_string(),
                created_at,
                object: Object::Listener(ListenerState { listener, programmed: None }),
            },
        );
        let _ = meta;
        migrated += 1;
    }
    migrated
}

pub fn encode_change(change: &Change) -> Vec<u8> {
    serde_json::to_vec(change).expect("change serialises")
}

pub fn decode_change(bytes: &[u8]) -> Result<Change, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("journal record is not valid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::octavia::Loadbalancer;

    fn lb(id: &str, vip: &str) -> Entry {
        Entry {
            key: vip.into(),
            external_ip: vip.into(),
            port: 0,
            protocol: String::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            object: Object::Loadbalancer(Loadbalancer {
                id: id.into(),
                name: None,
                vip_address: vip.into(),
                additional_vips: vec![],
                admin_state_up: true,
                flavor: vec![],
                listeners: vec![],
                pools: vec![],
            }),
        }
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
        let (back, notes) = decode_snapshot(&bytes).unwrap();
        assert!(notes.is_empty());
        assert_eq!(back.get("lb-1"), state.get("lb-1"));
        assert_eq!(back.reverse.get("10.0.0.1").map(String::as_str), Some("lb-1"));
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
        let (state, notes) = decode_snapshot(doc).unwrap();
        assert!(notes.is_empty());
        assert_eq!(state.get("lb-1").unwrap().key, "10.0.0.1");
        let err = decode_snapshot(br#"{"version": "1.1", "octavia_to_loxilb": {}, "resource_metadata": {"x": {"resource_type": "pool"}}}"#).unwrap_err();
        assert!(err.contains("x"), "{err}");
    }

    #[test]
    fn newer_versions_are_refused_by_name() {
        let err = decode_snapshot(br#"{"version": "2.0", "octavia_to_loxilb": {}}"#).err().unwrap();
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
        let (state, notes) = decode_snapshot(old).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(state.get("lb-12345").unwrap().key, "192.168.1.100");
        assert_eq!(state.get("lb-12345").unwrap().created_at, "2024-04-05T19:34:38Z");
        let listener = state.get("ls-1").unwrap();
        assert_eq!(listener.key, "192.168.1.100:80/tcp");
        assert!(state.problems().is_empty(), "{:?}", state.problems());
    }

    #[test]
    fn journal_records_round_trip() {
        let put = Change::Put { id: "lb-1".into(), entry: lb("lb-1", "fd00::1") };
        assert_eq!(decode_change(&encode_change(&put)).unwrap(), put);
        let rm = Change::Remove { id: "lb-1".into() };
        assert_eq!(decode_change(&encode_change(&rm)).unwrap(), rm);
    }
}
