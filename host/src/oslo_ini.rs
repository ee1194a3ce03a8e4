//! octavia.conf read by oslo.config's rules, so the host and the provider (which octavia-api reads with
//! oslo.config) can never see different values in one file. The rules, from `oslo_config/iniparser.py`
//! and `cfg.py`:
//! - a comment is a whole line starting with `#` or `;`: a `#` after a value is part of the value;
//! - `key = value` or `key: value` (whichever separator comes first); the value is stripped, and one pair
//!   of matching surrounding quotes (`"…"` or `'…'`) is removed;
//! - a line starting with a space or tab continues the previous value (joined with `\n`); a blank line
//!   ends it;
//! - section names other than `DEFAULT` are case-insensitive; a section may appear several times (its
//!   keys merge), and a key set twice keeps its last value;
//! - of several files, the last one that sets a key wins;
//! - `$name` / `${name}` is replaced by option `name` of the same section, else of `[DEFAULT]`, and
//!   `${section.name}` by that section's option; `$$` and `\$` are a literal `$`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// One file's sections: normalised section name → key → every value it was given, in order.
type Sections = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// How deep `$` references may nest before the value is taken as circular.
const MAX_SUBSTITUTION_DEPTH: usize = 32;

#[derive(Debug, Default)]
pub struct OsloConfig {
    /// Parsed files, the last given first (it takes precedence, as in oslo.config).
    files: Vec<(PathBuf, Sections)>,
}

fn normalize_section(name: &str) -> String {
    if name == "DEFAULT" {
        name.to_string()
    } else {
        name.to_ascii_lowercase()
    }
}

/// Parses one file's text by iniparser's rules; errors name the file and line as oslo.config does.
fn parse(text: &str, origin: &Path) -> Result<Sections> {
    let mut sections = Sections::new();
    let mut section: Option<String> = None;
    let mut pending: Option<(String, Vec<String>)> = None;
    let at = |lineno: usize, what: &str, line: &str| anyhow!("{}: at line {lineno}, {what}: {line:?}", origin.display());
    let flush = |sections: &mut Sections, section: &Option<String>, pending: &mut Option<(String, Vec<String>)>, lineno: usize| -> Result<()> {
        if let Some((key, value)) = pending.take() {
            let section = section.as_ref().ok_or_else(|| anyhow!("{}: at line {lineno}, section must be started before assignment", origin.display()))?;
            sections.entry(section.clone()).or_default().entry(key).or_default().push(value.join("\n"));
        }
        Ok(())
    };
    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            flush(&mut sections, &section, &mut pending, lineno)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match pending.as_mut() {
                Some((_, value)) => value.push(line.trim_start().to_string()),
                None => return Err(at(lineno, "unexpected continuation line", line)),
            }
            continue;
        }
        flush(&mut sections, &section, &mut pending, lineno)?;
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(at(lineno, "invalid section (must end with ])", line));
            }
            if line.len() <= 2 {
                return Err(at(lineno, "empty section name", line));
            }
            let name = normalize_section(&line[1..line.len() - 1]);
            sections.entry(name.clone()).or_default();
            section = Some(name);
        } else if line.starts_with(['#', ';']) {
            continue;
        } else {
            let (colon, equal) = (line.find(':'), line.find('='));
            let split = match (equal, colon) {
                (None, None) => return Err(at(lineno, "no ':' or '=' found in assignment", line)),
                (Some(e), Some(c)) => e.min(c),
                (Some(i), None) | (None, Some(i)) => i,
            };
            let key = line[..split].trim();
            if key.is_empty() {
                return Err(at(lineno, "key cannot be empty", line));
            }
            let mut value = line[split + 1..].trim();
            let quoted = value.len() >= 2 && (value.starts_with('"') || value.starts_with('\'')) && value.ends_with(&value[..1]);
            // iniparser strips a lone quote character too (`value[0] == value[-1]` on one character).
            if quoted || value == "\"" || value == "'" {
                value = if value.len() >= 2 { &value[1..value.len() - 1] } else { "" };
            }
            pending = Some((key.to_string(), vec![value.to_string()]));
        }
    }
    flush(&mut sections, &section, &mut pending, text.lines().count())?;
    Ok(sections)
}

impl OsloConfig {
    /// Reads the files in order (later ones override earlier ones) and then each directory's `*.conf`
    /// files in name order, as `--config-file` and `--config-dir` do.
    pub fn load(files: &[PathBuf], dirs: &[PathBuf]) -> Result<OsloConfig> {
        let mut all: Vec<PathBuf> = files.to_vec();
        for dir in dirs {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading config directory {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf") && p.is_file())
                .collect();
            found.sort();
            all.extend(found);
        }
        let mut config = OsloConfig::default();
        for path in all {
            if path.is_dir() {
                bail!("{} is a directory: give it as --config-dir", path.display());
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            config.push(&path, &text)?;
        }
        Ok(config)
    }

    pub fn from_text(text: &str) -> Result<OsloConfig> {
        let mut config = OsloConfig::default();
        config.push(Path::new("<text>"), text)?;
        Ok(config)
    }

    fn push(&mut self, path: &Path, text: &str) -> Result<()> {
        let sections = parse(text, path)?;
        self.files.insert(0, (path.to_path_buf(), sections));
        Ok(())
    }

    /// Whether any file has the section (even empty).
    pub fn has_section(&self, section: &str) -> bool {
        let section = normalize_section(section);
        self.files.iter().any(|(_, s)| s.contains_key(&section))
    }

    /// Every key set in the section by any file, sorted.
    pub fn keys(&self, section: &str) -> Vec<String> {
        let section = normalize_section(section);
        let mut keys: Vec<String> = self.files.iter().filter_map(|(_, s)| s.get(&section)).flat_map(|k| k.keys().cloned()).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The value as written (no substitution): the last one of the last file that sets it.
    pub fn raw(&self, section: &str, key: &str) -> Option<&str> {
        let section = normalize_section(section);
        self.files.iter().find_map(|(_, s)| s.get(&section)?.get(key)?.last().map(String::as_str))
    }

    /// The value with `$` references substituted; `None` when no file sets it.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>> {
        self.resolve(section, key, 0)
    }

    fn resolve(&self, section: &str, key: &str, depth: usize) -> Result<Option<String>> {
        let Some(raw) = self.raw(section, key) else { return Ok(None) };
        if depth > MAX_SUBSTITUTION_DEPTH {
            bail!("[{section}] {key}: `$` references nest too deep (circular?)");
        }
        self.substitute(raw, section, depth).with_context(|| format!("[{section}] {key} = {raw:?}")).map(Some)
    }

    /// Python's `string.Template.safe_substitute` with oslo's identifier pattern `[_a-z][._a-z0-9]*`
    /// (case-insensitive): what is not a well-formed reference stays as written.
    fn substitute(&self, value: &str, section: &str, depth: usize) -> Result<String> {
        if !value.contains('$') {
            return Ok(value.to_string());
        }
        let value = value.replace("\\$", "$$");
        let bytes = value.as_bytes();
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = value[i..].find('$').map_or(bytes.len(), |n| i + n);
                out.push_str(&value[i..next]);
                i = next;
                continue;
            }
            let rest = &value[i + 1..];
            if rest.starts_with('$') {
                out.push('$');
                i += 2;
                continue;
            }
            let (name, consumed) = match rest.strip_prefix('{') {
                Some(inner) => match identifier(inner) {
                    Some(n) if inner[n.len()..].starts_with('}') => (n, n.len() + 2),
                    _ => ("", 0),
                },
                None => match identifier(rest) {
                    Some(n) => (n, n.len()),
                    None => ("", 0),
                },
            };
            if name.is_empty() {
                out.push('$');
                i += 1;
                continue;
            }
            out.push_str(&self.reference(name, section, depth)?);
            i += 1 + consumed;
        }
        Ok(out)
    }

    /// `section.key`, else `key` in the same section, else in `[DEFAULT]` (oslo's `StrSubWrapper`).
    fn reference(&self, name: &str, section: &str, depth: usize) -> Result<String> {
        if let Some((group, key)) = name.split_once('.') {
            if let Some(v) = self.resolve(group, key, depth + 1)? {
                return Ok(v);
            }
        }
        if let Some(v) = self.resolve(section, name, depth + 1)? {
            return Ok(v);
        }
        if let Some(v) = self.resolve("DEFAULT", name, depth + 1)? {
            return Ok(v);
        }
        bail!("${name} refers to an option no file sets (the host cannot know Octavia's defaults: set it, or write $$ for a literal $)")
    }
}

/// The longest identifier at the start of `s` by oslo's pattern, if there is one.
fn identifier(s: &str) -> Option<&str> {
    let first = s.bytes().next()?;
    if !(first == b'_' || first.is_ascii_alphabetic()) {
        return None;
    }
    let len = s.bytes().take_while(|b| *b == b'_' || *b == b'.' || b.is_ascii_alphanumeric()).count();
    Some(&s[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, section: &str, key: &str) -> Option<String> {
        OsloConfig::from_text(text).unwrap().get(section, key).unwrap()
    }

    #[test]
    fn a_hash_after_a_value_is_part_of_the_value() {
        let text = "[DEFAULT]\ntransport_url = rabbit://a:b@h:5672/   # only for amqp\n# a comment\n; another\n";
        assert_eq!(get(text, "DEFAULT", "transport_url").as_deref(), Some("rabbit://a:b@h:5672/   # only for amqp"));
    }

    #[test]
    fn quotes_separators_and_continuations() {
        let text = "[x]\na = \"quoted value\"\nb: 'single'\nc = \"unbalanced'\nd: x=y\ng = a:b\ne=first\n  second\n\tthird\n\nf = \"\n";
        assert_eq!(get(text, "x", "a").as_deref(), Some("quoted value"));
        assert_eq!(get(text, "x", "b").as_deref(), Some("single"));
        assert_eq!(get(text, "x", "c").as_deref(), Some("\"unbalanced'"));
        // The first separator wins.
        assert_eq!(OsloConfig::from_text(text).unwrap().raw("x", "d"), Some("x=y"));
        assert_eq!(OsloConfig::from_text(text).unwrap().raw("x", "g"), Some("a:b"));
        assert_eq!(get(text, "x", "e").as_deref(), Some("first\nsecond\nthird"));
        assert_eq!(get(text, "x", "f").as_deref(), Some(""));
    }

    #[test]
    fn sections_merge_case_insensitively_and_the_last_value_wins() {
        let text = "[Driver_LoxiLB]\na = 1\nb = 1\n[other]\n[driver_loxilb]\na = 2\na = 3\n";
        let c = OsloConfig::from_text(text).unwrap();
        assert_eq!(c.raw("driver_loxilb", "a"), Some("3"));
        assert_eq!(c.raw("driver_loxilb", "b"), Some("1"));
        assert_eq!(c.keys("driver_loxilb"), vec!["a", "b"]);
        assert!(c.has_section("other") && !c.has_section("missing"));
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let dir = std::env::temp_dir().join(format!("oslo-ini-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("a.conf"), "[s]\nk = a\nonly_a = 1\n").unwrap();
        std::fs::write(dir.join("b.conf"), "[s]\nk = b\n").unwrap();
        std::fs::write(dir.join("conf.d/z.conf"), "[s]\nk = dir\n").unwrap();
        let c = OsloConfig::load(&[dir.join("a.conf"), dir.join("b.conf")], &[]).unwrap();
        assert_eq!((c.raw("s", "k"), c.raw("s", "only_a")), (Some("b"), Some("1")));
        let c = OsloConfig::load(&[dir.join("a.conf")], &[dir.join("conf.d")]).unwrap();
        assert_eq!(c.raw("s", "k"), Some("dir"));
        let err = OsloConfig::load(&[dir.join("conf.d")], &[]).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dollar_references_resolve_like_oslo() {
        let text = "[DEFAULT]\nstate = /var/lib/octavia\n[s]\nbase = /srv\na = $base/x\nb = ${state}/y\nc = ${DEFAULT.state}/z\nd = cost $$5 \\$6\ne = $ alone, $1, ${bad\n";
        assert_eq!(get(text, "s", "a").as_deref(), Some("/srv/x"));
        assert_eq!(get(text, "s", "b").as_deref(), Some("/var/lib/octavia/y"));
        assert_eq!(get(text, "s", "c").as_deref(), Some("/var/lib/octavia/z"));
        assert_eq!(get(text, "s", "d").as_deref(), Some("cost $5 $6"));
        assert_eq!(get(text, "s", "e").as_deref(), Some("$ alone, $1, ${bad"));
        let err = OsloConfig::from_text("[s]\na = $nowhere\n").unwrap().get("s", "a").unwrap_err();
        assert!(format!("{err:#}").contains("$nowhere"), "{err:#}");
        let err = OsloConfig::from_text("[s]\na = $b\nb = $a\n").unwrap().get("s", "a").unwrap_err();
        assert!(format!("{err:#}").contains("circular"), "{err:#}");
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (text, what) in [
            ("[s]\njust words\n", "no ':' or '='"),
            ("[s\n", "must end with ]"),
            ("  indented\n", "unexpected continuation"),
            ("k = v\n", "section must be started"),
            ("[s]\n= v\n", "key cannot be empty"),
        ] {
            let err = OsloConfig::from_text(text).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("line"), "{text:?}: {err}");
        }
    }
}
