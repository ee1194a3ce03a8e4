//! What the file layer adds to the mapping document on disk: a trailer on snapshots (journal generation and
//! checksum, as the document's last two JSON keys, so the file stays the seed's readable JSON) and a CRC
//! on every journal line.
//!
//! The snapshot checksum is CRC-32 (`crc32:<8 hex>`): it is there to catch torn writes and bit rot, not
//! tampering (whoever can write the file can rewrite any hash in it), and at 80 MB it costs ~8 ms where
//! SHA-256 cost ~65 ms of a load. Files sealed with `sha256:` by earlier releases are still verified.

use sha2::{Digest, Sha256};

const CHECKSUM_KEY: &str = "\"checksum\": \"";
const GENERATION_KEY: &str = "\"journal_generation\": ";
/// Written before the generation by hosts whose journal segments start with a header (see
/// `JournalLine`): a reader may then call a segment without one damaged rather than old.
const HEADED_KEY: &str = "\"journal_headed\": true";

/// The checksum algorithms a trailer may name; new files get the first.
#[derive(Clone, Copy)]
enum Algorithm {
    Crc32,
    Sha256,
}

impl Algorithm {
    fn prefix(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32:",
            Algorithm::Sha256 => "sha256:",
        }
    }

    fn from_value(value: &str) -> Option<(Algorithm, &str)> {
        [Algorithm::Crc32, Algorithm::Sha256].into_iter().find_map(|a| value.strip_prefix(a.prefix()).map(|digest| (a, digest)))
    }

    /// The digest of `parts` in sequence, as lowercase hex.
    fn digest(self, parts: &[&[u8]]) -> String {
        match self {
            Algorithm::Crc32 => {
                let mut hasher = crc32fast::Hasher::new();
                parts.iter().for_each(|p| hasher.update(p));
                format!("{:08x}", hasher.finalize())
            }
            Algorithm::Sha256 => {
                let mut hasher = Sha256::new();
                parts.iter().for_each(|p| hasher.update(p));
                hex(&hasher.finalize())
            }
        }
    }
}

/// A snapshot as read back: the mapping document without the trailer, and the journal generation it
/// covers (0 for files written before generations existed, or by hand).
#[derive(Debug, PartialEq)]
pub struct Unsealed<D = Vec<u8>> {
    pub document: D,
    pub generation: u64,
    /// Whether the journal segments from `generation` on start with a header (files of earlier releases:
    /// not).
    pub headed: bool,
    /// Whether the file carried a checksum (files of the earlier driver and hand-written ones do not).
    pub checked: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The document up to (not including) its closing brace, and whether it has members, so keys can be
/// appended after it.
fn open_body(data: &[u8]) -> Result<(&[u8], bool), String> {
    let body = trim_end(trim_end(data).strip_suffix(b"}").ok_or("snapshot is not a JSON object")?);
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("snapshot is not a JSON object".into());
    }
    Ok((body, body.last() != Some(&b'{')))
}

/// Appends `"journal_generation": N` and then the checksum as the document's last keys:
/// `{…,\n  "journal_generation": 7,\n  "checksum": "crc32:<hex>"\n}`. The checksum covers the document as
/// it reads back without the checksum key, generation included, so a flipped generation is caught too.
pub fn seal(data: &[u8], generation: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(data.len() + 100);
    out.extend_from_slice(data);
    seal_in_place(&mut out, generation)?;
    Ok(out)
}

/// `seal` without copying the document (a snapshot of 100k mappings is ~90 MB).
pub fn seal_in_place(data: &mut Vec<u8>, generation: u64) -> Result<(), String> {
    let (body, has_members) = open_body(data)?;
    let body = body.len();
    data.truncate(body);
    let separator = if has_members { "," } else { "" };
    let generation = format!("{separator}\n  {HEADED_KEY},\n  {GENERATION_KEY}{generation}");
    let algorithm = Algorithm::Crc32;
    let digest = algorithm.digest(&[data, generation.as_bytes(), b"\n}"]);
    data.extend_from_slice(generation.as_bytes());
    data.extend_from_slice(format!(",\n  {CHECKSUM_KEY}{}{digest}\"\n}}\n", algorithm.prefix()).as_bytes());
    Ok(())
}

/// Whether `seal` can seal `data` (it must be a JSON object), checked without copying it.
pub fn check_document(data: &[u8]) -> Result<(), String> {
    open_body(data).map(|_| ())
}

/// Checks and removes the trailer. A document without a checksum (the earlier driver's, or edited by
/// hand) must at least be well-formed JSON; a wrong checksum is an error.
pub fn unseal<D: Document>(mut file: D) -> Result<Unsealed<D>, String> {
    match inspect(&file)? {
        Some(Trailer { end, generation, headed }) => {
            file.close_at(end);
            Ok(Unsealed { document: file, generation, headed, checked: true })
        }
        None => Ok(Unsealed { document: file, generation: 0, headed: false, checked: false }),
    }
}

/// Bytes a sealed file can be cut down to its document in place (a read file, or a mapped one).
pub trait Document: std::ops::Deref<Target = [u8]> {
    /// Ends the bytes at `end` with the document's closing brace (where the trailer began).
    fn close_at(&mut self, end: usize);
}

impl Document for Vec<u8> {
    fn close_at(&mut self, end: usize) {
        self.truncate(end);
        self.extend_from_slice(b"\n}");
    }
}

impl Document for super::bytes::FileBytes {
    fn close_at(&mut self, end: usize) {
        super::bytes::FileBytes::close_at(self, end)
    }
}

/// Checks a file as `unseal` does, without copying it: the generation it names (0 without a trailer).
pub fn check(file: &[u8]) -> Result<u64, String> {
    Ok(inspect(file)?.map_or(0, |t| t.generation))
}

/// What a sealed file's trailer says: where the mapping document ends (before its closing brace), the
/// generation, and whether its journal segments carry headers.
struct Trailer {
    end: usize,
    generation: u64,
    headed: bool,
}

/// For a sealed file: its trailer, checked. Works on bytes and looks for the trailer only near the end: validating 80 MB as UTF-8 first would
/// add a tenth to the load time, and the mapping's JSON parser checks the text anyway.
fn inspect(file: &[u8]) -> Result<Option<Trailer>, String> {
    let Some(at) = rfind_near_end(file, CHECKSUM_KEY.as_bytes()) else {
        // Checked only here: a sealed file is known whole from its hash, and parsing 100k entries twice
        // would double the load time.
        serde_json::from_slice::<serde::de::IgnoredAny>(file).map_err(|e| format!("no checksum and not valid JSON: {e}"))?;
        return Ok(None);
    };
    let value = file[at + CHECKSUM_KEY.len()..].split(|&b| b == b'"').next().unwrap_or_default();
    let value = String::from_utf8_lossy(value);
    let (algorithm, expected) =
        Algorithm::from_value(&value).ok_or_else(|| format!("checksum {value:?} names no algorithm this host knows (crc32, sha256)"))?;
    let head = trim_end(&file[..at]);
    let body = trim_end(head.strip_suffix(b",").unwrap_or(head));
    let actual = algorithm.digest(&[body, b"\n}"]);
    if actual != expected {
        let prefix = algorithm.prefix();
        return Err(format!("checksum mismatch (file says {prefix}{expected}, content hashes to {prefix}{actual})"));
    }
    let generation = rfind_near_end(body, GENERATION_KEY.as_bytes()).and_then(|g| {
        let digits = &body[g + GENERATION_KEY.len()..];
        let n = std::str::from_utf8(digits).ok().filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?.parse::<u64>().ok()?;
        let before = trim_end(&body[..g]);
        let before = trim_end(before.strip_suffix(b",").unwrap_or(before));
        let (before, headed) = match before.strip_suffix(HEADED_KEY.as_bytes()) {
            Some(rest) => (trim_end(rest), true),
            None => (before, false),
        };
        Some(Trailer { end: trim_end(before.strip_suffix(b",").unwrap_or(before)).len(), generation: n, headed })
    });
    Ok(Some(generation.unwrap_or(Trailer { end: body.len(), generation: 0, headed: false })))
}

/// The trailer is the last ~150 bytes; a key this far from the end would be the document's, not the trailer's.
fn rfind_near_end(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let from = haystack.len().saturating_sub(512);
    haystack[from..].windows(needle.len()).rposition(|w| w == needle).map(|i| from + i)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1)]
}

/// Reads the journal generation from a sealed file's last bytes, without hashing the whole file.
pub fn trailer_generation(tail: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(tail);
    let at = text.rfind(GENERATION_KEY)?;
    let digits: String = text[at + GENERATION_KEY.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether a sealed file's last bytes say its journal segments carry headers.
pub fn trailer_headed(tail: &[u8]) -> bool {
    tail.windows(HEADED_KEY.len()).any(|w| w == HEADED_KEY.as_bytes())
}

/// One journal line: the record, a tab, its CRC-32 in hex, a newline. A record is single-line JSON, in
/// which a raw tab cannot occur, so the tab unambiguously starts the trailer.
pub fn frame(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record);
    out.extend_from_slice(format!("\t{:08x}\n", crc32fast::hash(record)).as_bytes());
}

/// The host's own lines in a journal segment, framed like records but never handed to the mapping's codec (whose
/// records are `{"put":…}` or `{"remove":…}`). A header starts every segment this release creates, so an
/// emptied segment is told from one with no records yet; a segment that was left for the next one ends
/// with `next`, so the deletion of the last segment is seen in the one before it.
#[derive(Debug, PartialEq)]
pub enum JournalLine {
    Segment(u64),
    Next(u64),
}

const JOURNAL_KEY: &[u8] = b"{\"journal\":";

impl JournalLine {
    pub fn record(&self) -> Vec<u8> {
        match self {
            JournalLine::Segment(g) => format!("{{\"journal\":{{\"segment\":{g}}}}}"),
            JournalLine::Next(g) => format!("{{\"journal\":{{\"next\":{g}}}}}"),
        }
        .into_bytes()
    }

    /// The host's line a record is, if it is one.
    pub fn parse(record: &[u8]) -> Option<JournalLine> {
        if !record.starts_with(JOURNAL_KEY) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(record).ok()?;
        let line = value.get("journal")?;
        if let Some(g) = line.get("segment").and_then(serde_json::Value::as_u64) {
            return Some(JournalLine::Segment(g));
        }
        line.get("next").and_then(serde_json::Value::as_u64).map(JournalLine::Next)
    }
}

/// What one journal line (without its newline) holds.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    Record(&'a [u8]),
    /// Wrong checksum, or no trailer and not JSON: garbage from a crash or bit rot.
    Bad(String),
}

pub fn unframe(line: &[u8]) -> Line<'_> {
    if line.len() >= 9 && line[line.len() - 9] == b'\t' {
        let (record, trailer) = line.split_at(line.len() - 9);
        let Some(expected) = std::str::from_utf8(&trailer[1..]).ok().and_then(|h| u32::from_str_radix(h, 16).ok()) else {
            return Line::Bad("unreadable checksum".into());
        };
        let actual = crc32fast::hash(record);
        return if actual == expected { Line::Record(record) } else { Line::Bad(format!("CRC {actual:08x} where the line says {expected:08x}")) };
    }
    // Journals written before records carried a CRC: accept a line that is whole JSON.
    match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        Ok(_) => Line::Record(line),
        Err(_) => Line::Bad("no checksum and not JSON".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_corruption() {
        let doc = b"{\n  \"version\": \"1.1\",\n  \"octavia_to_loxilb\": {}\n}";
        let sealed = seal(doc, 7).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(json["checksum"].as_str().unwrap().starts_with("crc32:"));
        assert_eq!(json["journal_generation"], 7);
        assert_eq!(trailer_generation(&sealed[sealed.len().saturating_sub(120)..]), Some(7));
        let back = unseal(sealed.clone()).unwrap();
        assert_eq!(back, Unsealed { document: doc.to_vec(), generation: 7, headed: true, checked: true });
        assert!(unseal(text.replace("1.1", "1.2").into_bytes()).unwrap_err().contains("checksum mismatch"));
        assert!(unseal(text.replace("\": 7,", "\": 8,").into_bytes()).unwrap_err().contains("checksum mismatch"));
        // Compact documents and empty objects seal too.
        let compact = seal(br#"{"version":"1.1"}"#, 1).unwrap();
        assert_eq!(unseal(compact).unwrap().document, b"{\"version\":\"1.1\"\n}".to_vec());
        let empty = seal(b"{}", 2).unwrap();
        serde_json::from_slice::<serde_json::Value>(&empty).unwrap();
        assert_eq!(unseal(empty).unwrap().generation, 2);
    }

    #[test]
    fn files_sealed_before_generations_and_unsealed_files_still_load() {
        // The layout the first host release wrote: checksum only, hashing `body\n}`.
        let body = "{\n  \"version\": \"1.1\"";
        let hash = hex(&Sha256::digest(format!("{body}\n}}").as_bytes()));
        let old = format!("{body},\n  \"checksum\": \"sha256:{hash}\"\n}}\n");
        let back = unseal(old.into_bytes()).unwrap();
        assert_eq!((back.generation, back.headed, back.checked), (0, false, true));
        assert_eq!(back.document, format!("{body}\n}}").into_bytes());
        // Sealed with SHA-256 (releases before the CRC), generation included.
        let body = "{\n  \"version\": \"1.1\",\n  \"journal_generation\": 4";
        let hash = hex(&Sha256::digest(format!("{body}\n}}").as_bytes()));
        let sha = format!("{body},\n  \"checksum\": \"sha256:{hash}\"\n}}\n");
        assert_eq!((unseal(sha.clone().into_bytes()).unwrap().generation, unseal(sha.clone().into_bytes()).unwrap().headed), (4, false));
        assert!(unseal(sha.replace("1.1", "1.2").into_bytes()).unwrap_err().contains("checksum mismatch (file says sha256:"));
        assert!(unseal(sha.replace("sha256:", "md5:").into_bytes()).unwrap_err().contains("names no algorithm"));
        let legacy = br#"{"version": "1.0", "octavia_to_loxilb": {}}"#.to_vec();
        assert_eq!(unseal(legacy.clone()).unwrap(), Unsealed { document: legacy, generation: 0, headed: false, checked: false });
        assert!(unseal(br#"{"version": "1.0", "octavia_to_lo"#.to_vec()).unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn journal_lines_carry_a_crc() {
        let mut out = Vec::new();
        frame(br#"{"remove":{"id":"a"}}"#, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        assert_eq!(unframe(line), Line::Record(br#"{"remove":{"id":"a"}}"#));
        let mut flipped = line.to_vec();
        flipped[5] ^= 1;
        assert!(matches!(unframe(&flipped), Line::Bad(_)));
        assert!(matches!(unframe(b"\0\0\0\0{\"x\":1}"), Line::Bad(_)));
        assert_eq!(unframe(br#"{"x":1}"#), Line::Record(br#"{"x":1}"#));
    }
}
