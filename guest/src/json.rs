//! The little JSON this policy reads and writes: its own metadata and the 1.0 files it migrates. Written
//! here rather than taken from serde_json so the component carries no generic (de)serialisation code:
//! it was a third of the component, and a metadata entry is decoded field by field anyway.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A parsed JSON value, borrowing from the text it was parsed from: names, numbers and strings without
/// escapes are slices of it (allocating each was most of decoding an entry's metadata). Numbers keep their
/// text (1.0 files carry floats and integers alike); objects keep their members in file order (they are
/// small: a lookup is a scan).
#[derive(Clone, Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// Nesting deeper than this is refused: metadata is a few levels deep, and a hostile file must not
/// exhaust the stack.
const MAX_DEPTH: usize = 64;

impl<'a> Json<'a> {
    pub fn parse(text: &'a str) -> Result<Json<'a>, String> {
        let mut p = Parser { text, bytes: text.as_bytes(), at: 0 };
        let value = p.value(0)?;
        p.skip_ws();
        if p.at != p.bytes.len() {
            return Err(format!("trailing characters at byte {}", p.at));
        }
        Ok(value)
    }

    /// The member `name` of an object (`None` for other values too).
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A non-negative integer (no fraction, no exponent).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// A number of seconds as whole milliseconds, rounded down: negative ones are 0, ones too large
    /// for a `u64` saturate. Worked out on the number's decimal digits: a float parse would bring the
    /// standard library's float parser and its tables (17 KB) into every policy, for one field of 1.0
    /// files (`created_at` as epoch seconds).
    pub fn seconds_as_millis(&self) -> Option<u64> {
        let Json::Number(text) = self else { return None };
        if text.starts_with('-') {
            return Some(0);
        }
        let (mantissa, exponent) = text.split_once(['e', 'E']).unwrap_or((text, "0"));
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        // The value is digits × 10^shift, with shift counted for milliseconds.
        let exponent: i64 = exponent.strip_prefix('+').unwrap_or(exponent).parse().ok()?;
        let shift = exponent.saturating_add(3).saturating_sub(fraction.len() as i64);
        let mut millis: u64 = 0;
        let digits = whole.bytes().chain(fraction.bytes());
        let kept = (whole.len() + fraction.len()) as i64 + shift.min(0);
        for (i, digit) in digits.enumerate() {
            if i as i64 >= kept {
                break;
            }
            millis = millis.saturating_mul(10).saturating_add(u64::from(digit - b'0'));
        }
        for _ in 0..shift.clamp(0, 40) {
            millis = millis.saturating_mul(10);
        }
        Some(millis)
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// JSON's number grammar (`-`, digits, an optional fraction and exponent), leading zeros allowed as
/// they always were here.
fn is_number(text: &str) -> bool {
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let s = text.as_bytes();
    let mut at = usize::from(s.first() == Some(&b'-'));
    let whole = digits(&s[at..]);
    if whole == 0 {
        return false;
    }
    at += whole;
    if s.get(at) == Some(&b'.') {
        let fraction = digits(&s[at + 1..]);
        if fraction == 0 {
            return false;
        }
        at += 1 + fraction;
    }
    if matches!(s.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(s.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits(&s[at..]);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == s.len()
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.at..].starts_with(literal.as_bytes()) {
            self.at += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.skip_ws();
        match self.bytes.get(self.at) {
            None => Err(self.error("unexpected end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(Json::Null),
            _ if self.eat("true") => Ok(Json::Bool(true)),
            _ if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.at += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.error("expected a member name"));
            }
            let name = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return Err(self.error("expected ':'"));
            }
            members.push((name, self.value(depth + 1)?));
            self.skip_ws();
            if self.eat("}") {
                return Ok(Json::Object(members));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat("]") {
                return Ok(Json::Array(items));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ']'"));
            }
        }
    }

    fn number(&mut self) -> Result<Json<'a>, String> {
        let start = self.at;
        while matches!(self.bytes.get(self.at), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.at += 1;
        }
        // The policy slices text with `get` where the bounds are character boundaries by construction (ASCII
        // bytes here): `&text[..]` would bring the standard library's slicing panic into the component, and
        // with it the debug formatting of characters and ranges and its Unicode tables (~7 KB).
        let text = self.text.get(start..self.at).unwrap_or_default();
        if !is_number(text) {
            return Err(format!("bad number {} at byte {start}", quoted(text)));
        }
        Ok(Json::Number(text))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.bytes.get(self.at..self.at + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u escape"))?;
        let code = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let run = self.at;
            while !matches!(self.bytes.get(self.at), None | Some(b'"' | b'\\' | 0..=0x1f)) {
                self.at += 1;
            }
            // The run starts after and stops at ASCII bytes, so it is whole characters of the input: a slice
            // of it, not bytes to validate as UTF-8 again.
            let text: &'a str = self.text;
            let run = text.get(run..self.at).unwrap_or_default();
            match self.bytes.get(self.at) {
                // No escape before the end: the string is a slice of the input.
                Some(b'"') if out.is_empty() => {
                    self.at += 1;
                    return Ok(Cow::Borrowed(run));
                }
                Some(b'"') => {
                    out.push_str(run);
                    self.at += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    out.push_str(run);
                    self.at += 1;
                    let escape = *self.bytes.get(self.at).ok_or_else(|| self.error("unexpected end"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code) && self.eat("\\u") {
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.error("unpaired surrogate"));
                                }
                                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                            }
                            out.push(char::from_u32(code).ok_or_else(|| self.error("unpaired surrogate"))?);
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }
}

/// Appends `n` in decimal. `write!` goes through the formatting machinery, which cost more than the
/// digits in keys and metadata written for every object of a plan.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[start..].iter().for_each(|&d| out.push(char::from(d)));
}

/// Appends `n` in decimal, with its sign.
pub fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_u64(out, n.unsigned_abs());
}

/// Whether any byte of `bytes` is a control character, `"` or `\` (bytes of multi-byte characters are
/// not: their high bit is set).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte: below `n` (for n <= 0x80), or zero. Exact as a whole: no byte is flagged that is not so.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let word_needs = |w: u64| below(w, 0x20) | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in words.by_ref() {
        if word_needs(u64::from_le_bytes(chunk.try_into().expect("eight bytes"))) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `s` in double quotes, escaped as JSON escapes it: how the policy's messages quote what it was given
/// (`{:?}` would do much the same and bring the standard library's Unicode tables into the component).
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

/// Appends `s` as a JSON string.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    // Ids, keys and addresses never need escaping: checked eight bytes at a time, they are copied whole.
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(run..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_writes_and_round_trips_strings() {
        let text = r#" {"a": [1, -2.5e3, true, false, null], "b": {"c": "x\"y\\z\n\u00e9\ud83d\ude00"}, "d": {}} "#;
        let parsed = Json::parse(text).unwrap();
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.get("a").unwrap().as_array().unwrap()[0].as_u64(), Some(1));
        assert_eq!(parsed.get("a").unwrap().as_array().unwrap()[1].as_i64(), None);
        let c = parsed.get("b").unwrap().get("c").unwrap().as_str().unwrap();
        assert_eq!(c, expected["b"]["c"].as_str().unwrap());
        let mut out = String::new();
        push_string(&mut out, c);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), c);
        let mut control = String::new();
        push_string(&mut control, "\u{1}\t");
        assert_eq!(control, r#""\u0001\t""#);
    }

    #[test]
    fn messages_quote_what_they_were_given_so_it_reads_apart_from_the_words_around_it() {
        assert_eq!(quoted("10.0.0.x"), r#""10.0.0.x""#);
        // A quote, a newline or a control character cannot end the quote early or break the message's line.
        assert_eq!(quoted("a\"b\n\u{1}"), r#""a\"b\n\u0001""#);
        assert_eq!(Json::parse("1.").unwrap_err(), r#"bad number "1." at byte 0"#);
    }

    #[test]
    fn numbers_follow_json_s_grammar() {
        for good in ["0", "-1", "007", "1.5", "-2.5e3", "1E+9", "1e-2", "12345678901234567890"] {
            assert!(Json::parse(good).is_ok(), "{good}");
        }
        for bad in ["-", "1.", ".5", "+1", "1e", "1e+", "1.2.3", "--1", "1-2", "1ee2", "1.e5"] {
            assert!(Json::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_become_milliseconds_rounded_down_as_a_float_would_give_them() {
        for text in ["1712345678.9", "1712345678", "1712345678.123456", "0.0004", "1.7123456789e9", "17e-1", "0", "5e2", "123.4567e1"] {
            let float: f64 = text.parse().unwrap();
            let millis = Json::parse(text).unwrap().seconds_as_millis();
            assert_eq!(millis, Some((float * 1000.0) as u64), "{text}");
        }
        assert_eq!(Json::parse("-5.5").unwrap().seconds_as_millis(), Some(0));
        assert_eq!(Json::parse("1e300").unwrap().seconds_as_millis(), Some(u64::MAX));
        assert_eq!(Json::parse("1e-300").unwrap().seconds_as_millis(), Some(0));
        assert_eq!(Json::parse("\"1\"").unwrap().seconds_as_millis(), None);
    }

    #[test]
    fn every_character_that_needs_escaping_is_escaped_at_every_position() {
        let specials = ['"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}'];
        let plain = ['a', ' ', '~', '\u{7f}', 'é', '😀'];
        for len in 0..20 {
            for at in 0..=len {
                for c in specials.iter().chain(&plain) {
                    let text: String = (0..len).map(|i| if i == at { *c } else { 'x' }).collect();
                    let mut out = String::new();
                    push_string(&mut out, &text);
                    assert_eq!(out, serde_json::to_string(&text).unwrap(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn names_and_strings_without_escapes_are_slices_of_the_input() {
        let text = r#"{"plain": "10.0.0.1", "esc\u0061ped": "a\"b", "": ""}"#;
        let Json::Object(members) = Json::parse(text).unwrap() else { panic!("an object") };
        let borrowed = |c: &Cow<str>| matches!(c, Cow::Borrowed(_));
        let shape: Vec<(&str, bool, bool)> = members
            .iter()
            .map(|(name, value)| match value {
                Json::String(v) => (name.as_ref(), borrowed(name), borrowed(v)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(shape, [("plain", true, true), ("escaped", false, false), ("", true, true)]);
        assert_eq!(members[1].1, Json::String("a\"b".into()));
    }

    #[test]
    fn numbers_keep_their_text_integers_and_floats_alike() {
        for good in ["0", "-7", "8080", "123456789012345678901234567890", "1.5", "-2.5e3", "1E+2"] {
            assert_eq!(Json::parse(good), Ok(Json::Number(good)), "{good}");
        }
        for bad in ["-", "--1", "1-2", "1.2.3", "e5", "-e"] {
            assert!(Json::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"unterminated", "1 2", "nul", "\"\\ud800\"", "-", "{\"a\":1,}"] {
            assert!(Json::parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(Json::parse(&deep).unwrap_err().contains("too deep"));
    }

    #[test]
    fn integers_are_written_as_display_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 65535, 4_294_967_295, u64::MAX] {
            let mut out = String::from("x");
            super::push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
        for n in [0, -1, 7, -65535, i64::MIN, i64::MAX] {
            let mut out = String::new();
            super::push_i64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }
}
