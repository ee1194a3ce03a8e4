//! Validation of JSON bodies against the `definitions` of LoxiLB's Swagger 2.0 spec.
//!
//! Only the subset the spec uses is implemented: `type` (object, array, string, integer,
//! number, boolean), `format` (integer widths), `required`, `properties`, `items`, `enum`,
//! `$ref: '#/definitions/X'` and `allOf`. Semantics follow go-swagger's generated models rather
//! than JSON Schema where the two differ, because that is what a body really meets:
//! * `null` counts as absent (Go decodes it to a nil pointer / zero value);
//! * an optional enum field holding its zero value (`""`, `0`) is not checked (`swag.IsZero`);
//! * integer `format`s are Go types, so a value outside `uint16` etc. is a type error.
//!
//! The spec LoxiLB ships is vendored at `simulator/spec/swagger.yml` (see `simulator/spec/SOURCE.md`) and
//! compiled in: tests and the simulator validate against it with nothing outside the repository.
//! `$LOXILB_SWAGGER` or `--spec` names another one (a newer LoxiLB's) instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde_json::{json, Map, Value};

/// LoxiLB's swagger.yml at the commit `simulator/spec/SOURCE.md` names, compiled in.
pub const EMBEDDED_SPEC: &str = include_str!("../spec/swagger.yml");

/// What the spec in use was read from.
pub const EMBEDDED_SPEC_NAME: &str = "embedded LoxiLB swagger.yml (loxilb 64045de)";

/// A spec file named by `$LOXILB_SWAGGER` (returned even if the file is missing, so a wrong
/// setting fails loudly); `None` means the embedded spec.
pub fn default_spec_path() -> Option<PathBuf> {
    std::env::var_os("LOXILB_SWAGGER").filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// The definitions of a Swagger 2.0 document, ready to validate bodies against.
#[derive(Debug, Clone)]
pub struct SpecValidator {
    defs: Map<String, Value>,
    source: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssueKind {
    /// Go's JSON decoder would reject the value (served by go-openapi as a 400 parse error).
    Type,
    /// go-swagger `Required` (code 602).
    Required,
    /// go-swagger `EnumFail` (code 606).
    Enum,
    /// Key the definition does not declare (only reported by `validate_strict`).
    Unknown,
}

#[derive(Debug, Clone)]
pub(crate) struct Issue {
    pub kind: IssueKind,
    /// Readable message with the plain dotted path (`endpoints.0.weight in body is required`).
    pub message: String,
    /// The message LoxiLB itself would send (go-swagger naming, or Go's decoder error text).
    pub go_message: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    pub deny_unknown: bool,
    /// Reject `null` array items. The public validator does, because LoxiLB's handler
    /// dereferences them and crashes; the server reports that crash itself.
    pub reject_null_items: bool,
    /// Plain paths whose `enum` is not checked (loxilb <= v0.9.8.4 had no protocol/probetype enum).
    pub skip_enums: &'static [&'static str],
}

/// Where the walker is, in the three naming schemes it has to report in.
#[derive(Clone, Default)]
struct Pos {
    /// Plain dotted path: `serviceArguments.port`, `endpoints.0.weight`.
    path: String,
    /// Prefix go-swagger puts before a child's name in validation messages.
    go_prefix: String,
    /// Go type currently being decoded into and the field path within the top struct.
    go_struct: String,
    go_field: String,
}

impl SpecValidator {
    /// Reads a Swagger 2.0 YAML (or JSON) file and keeps its `definitions`.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).with_context(|| format!("reading LoxiLB spec {}", path.display()))?;
        let mut v = Self::from_yaml_str(&text).with_context(|| format!("parsing LoxiLB spec {}", path.display()))?;
        v.source = Some(path.to_path_buf());
        Ok(v)
    }

    pub fn from_yaml_str(text: &str) -> anyhow::Result<Self> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
        let defs = doc.get("definitions").ok_or_else(|| anyhow!("spec has no `definitions`"))?;
        match yaml_to_json(defs) {
            Value::Object(defs) => Ok(SpecValidator { defs, source: None }),
            _ => Err(anyhow!("`definitions` is not a mapping")),
        }
    }

    /// The file named by [`default_spec_path`] when set, else the embedded spec.
    pub fn load_default() -> anyhow::Result<Self> {
        match default_spec_path() {
            Some(path) => Self::load(path),
            None => Ok(Self::embedded()),
        }
    }

    /// The spec compiled into this crate ([`EMBEDDED_SPEC`]).
    pub fn embedded() -> Self {
        let mut v = Self::from_yaml_str(EMBEDDED_SPEC).expect("the embedded swagger.yml parses");
        v.source = Some(PathBuf::from(EMBEDDED_SPEC_NAME));
        v
    }

    /// A hand-written copy of the `LoadbalanceEntry` and `EndPoint` structure (names, types,
    /// required keys, enums) of loxilb 64045de, for when the spec file is unavailable.
    pub fn builtin() -> Self {
        let defs = match builtin_definitions() {
            Value::Object(m) => m,
            _ => unreachable!("builtin definitions are an object"),
        };
        SpecValidator { defs, source: None }
    }

    /// The file the definitions came from; `None` for [`SpecValidator::builtin`].
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn has_definition(&self, name: &str) -> bool {
        self.defs.contains_key(name)
    }

    /// Checks `value` against `#/definitions/<definition>` with the semantics LoxiLB applies.
    /// Keys must be spelt exactly as in the spec; undeclared keys are ignored, as LoxiLB does.
    /// On failure every problem found is listed, separated by `; `.
    pub fn validate(&self, definition: &str, value: &Value) -> Result<(), String> {
        self.report(definition, value, Options { reject_null_items: true, ..Options::default() })
    }

    /// Like [`SpecValidator::validate`], but a key the definition does not declare is an error
    /// too, which catches misspellings (`probeType` instead of `probetype`) that LoxiLB would
    /// silently ignore.
    pub fn validate_strict(&self, definition: &str, value: &Value) -> Result<(), String> {
        let opts = Options { deny_unknown: true, reject_null_items: true, ..Options::default() };
        self.report(definition, value, opts)
    }

    fn report(&self, definition: &str, value: &Value, opts: Options) -> Result<(), String> {
        let issues = self.check(definition, value, opts)?;
        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues.iter().map(|i| i.message.as_str()).collect::<Vec<_>>().join("; "))
        }
    }

    /// All problems in the order go-swagger would meet them (alphabetical by property, array
    /// items in order), so the first one is the one LoxiLB reports.
    pub(crate) fn check(&self, definition: &str, value: &Value, opts: Options) -> Result<Vec<Issue>, String> {
        let schema = self.defs.get(definition).ok_or_else(|| format!("unknown definition `{definition}`"))?;
        let mut issues = Vec::new();
        if !value.is_object() && !value.is_null() {
            let msg = format!("body must be of type object: {}", short(value));
            let go = format!("json: cannot unmarshal {} into Go value of type models.{definition}", json_kind(value));
            issues.push(Issue { kind: IssueKind::Type, message: msg, go_message: go });
            return Ok(issues);
        }
        let pos = Pos { go_struct: definition.to_string(), ..Pos::default() };
        self.walk_object(schema, value, &pos, opts, &mut issues);
        Ok(issues)
    }

    /// Renames keys to the spelling the definition uses, matching case-insensitively the way
    /// Go's `encoding/json` does (exact match first), and drops keys it would ignore.
    pub(crate) fn canonicalize(&self, definition: &str, value: &Value) -> Value {
        match self.defs.get(definition) {
            Some(schema) => self.canon(schema, value),
            None => value.clone(),
        }
    }

    fn canon(&self, schema: &Value, value: &Value) -> Value {
        let schema = self.resolve(schema);
        match value {
            Value::Object(obj) if schema_type(schema) == Some("object") => {
                let (props, _) = self.flatten(schema);
                let mut out = Map::new();
                for (key, v) in obj {
                    let target = if props.contains_key(key.as_str()) {
                        Some(key.as_str())
                    } else {
                        let lower = key.to_lowercase();
                        props.keys().copied().find(|p| p.to_lowercase() == lower)
                    };
                    if let Some(name) = target {
                        // An exact key beats a case-folded one whatever the order.
                        if name != key && obj.contains_key(name) {
                            continue;
                        }
                        out.insert(name.to_string(), self.canon(props[name], v));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) if schema.get("items").is_some() => Value::Array(items.iter().map(|i| self.canon(&schema["items"], i)).collect()),
            other => other.clone(),
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut s = schema;
        // Bounded so a self-referencing $ref cannot loop forever.
        for _ in 0..16 {
            match s.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/definitions/")) {
                Some(name) => match self.defs.get(name) {
                    Some(target) => s = target,
                    None => return s,
                },
                None => return s,
            }
        }
        s
    }

    /// Properties and required names of an object schema, with `allOf` parts merged in.
    fn flatten<'a>(&'a self, schema: &'a Value) -> (BTreeMap<&'a str, &'a Value>, BTreeSet<&'a str>) {
        let schema = self.resolve(schema);
        let mut props = BTreeMap::new();
        let mut required = BTreeSet::new();
        if let Some(p) = schema.get("properties").and_then(Value::as_object) {
            props.extend(p.iter().map(|(k, v)| (k.as_str(), v)));
        }
        if let Some(r) = schema.get("required").and_then(Value::as_array) {
            required.extend(r.iter().filter_map(Value::as_str));
        }
        for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            let (p, r) = self.flatten(part);
            props.extend(p);
            required.extend(r);
        }
        (props, required)
    }

    fn walk_object(&self, schema: &Value, value: &Value, pos: &Pos, opts: Options, out: &mut Vec<Issue>) {
        let (props, required) = self.flatten(schema);
        let obj = value.as_object();
        let names: BTreeSet<&str> = props.keys().copied().chain(required.iter().copied()).collect();
        for name in names {
            let path = join(&pos.path, name);
            let present = obj.and_then(|o| o.get(name)).filter(|v| !v.is_null());
            match (present, props.get(name)) {
                (None, _) if required.contains(name) => {
                    let go_name = format!("{}{}", pos.go_prefix, name);
                    out.push(Issue {
                        kind: IssueKind::Required,
                        message: format!("{path} in body is required"),
                        go_message: format!("{go_name} in body is required"),
                    });
                }
                (Some(v), Some(prop)) => {
                    let child = Pos { path, go_prefix: pos.go_prefix.clone(), go_struct: pos.go_struct.clone(), go_field: join(&pos.go_field, name) };
                    self.walk_value(prop, v, name, &child, opts, out);
                }
                _ => {}
            }
        }
        if opts.deny_unknown {
            for key in obj.into_iter().flat_map(|o| o.keys()) {
                if !props.contains_key(key.as_str()) {
                    let path = join(&pos.path, key);
                    out.push(Issue {
                        kind: IssueKind::Unknown,
                        message: format!("{path} in body is not a property of the definition"),
                        go_message: String::new(),
                    });
                }
            }
        }
    }

    /// `pos` already names `value`; `name` is its key in the parent object (for Go naming).
    fn walk_value(&self, schema: &Value, value: &Value, name: &str, pos: &Pos, opts: Options, out: &mut Vec<Issue>) {
        let is_ref = schema.get("$ref").is_some();
        let resolved = self.resolve(schema);
        let ty = schema_type(resolved);
        let go_type = self.go_type(schema, pos, name);
        let type_issue = |expected: &str, out: &mut Vec<Issue>| {
            out.push(Issue {
                kind: IssueKind::Type,
                message: format!("{} in body must be of type {expected}: {}", pos.path, short(value)),
                go_message: format!("json: cannot unmarshal {} into Go struct field {}.{} of type {go_type}", json_kind(value), pos.go_struct, pos.go_field),
            })
        };
        match ty {
            Some("object") => {
                if !value.is_object() {
                    return type_issue("object", out);
                }
                let child = Pos {
                    path: pos.path.clone(),
                    // go-swagger names an inline object's fields with its own property name and
                    // then prefixes the parent's name again (ValidateName), doubling it; a $ref'd
                    // model uses bare names and gets a single prefix.
                    go_prefix: if is_ref { format!("{}{}.", pos.go_prefix, name) } else { format!("{}{name}.{name}.", pos.go_prefix) },
                    go_struct: go_type.trim_start_matches("models.").to_string(),
                    go_field: pos.go_field.clone(),
                };
                self.walk_object(resolved, value, &child, opts, out);
            }
            Some("array") => {
                let Some(items) = value.as_array() else {
                    return type_issue("array", out);
                };
                let item_schema = resolved.get("items").unwrap_or(&Value::Null);
                let item_go = self.go_item_type(item_schema, pos, name);
                for (i, item) in items.iter().enumerate() {
                    let child = Pos {
                        path: format!("{}.{i}", pos.path),
                        go_prefix: format!("{}{name}.{i}.", pos.go_prefix),
                        go_struct: item_go.trim_start_matches("models.").to_string(),
                        go_field: pos.go_field.clone(),
                    };
                    if item.is_null() {
                        if opts.reject_null_items {
                            out.push(Issue { kind: IssueKind::Type, message: format!("{} in body must not be null", child.path), go_message: String::new() });
                        }
                        continue;
                    }
                    let item_ty = schema_type(self.resolve(item_schema));
                    if item_ty == Some("object") {
                        if !item.is_object() {
                            out.push(Issue {
                                kind: IssueKind::Type,
                                message: format!("{} in body must be of type object: {}", child.path, short(item)),
                                go_message: format!(
                                    "json: cannot unmarshal {} into Go struct field {}.{} of type {item_go}",
                                    json_kind(item),
                                    pos.go_struct,
                                    pos.go_field
                                ),
                            });
                            continue;
                        }
                        // $ref'd and inline item models both use bare names, prefixed `<prop>.<i>.`.
                        self.walk_object(self.resolve(item_schema), item, &child, opts, out);
                    } else if !item_schema.is_null() {
                        self.walk_value(item_schema, item, name, &Pos { go_prefix: pos.go_prefix.clone(), ..child }, opts, out);
                    }
                }
            }
            Some("string") if !value.is_string() => type_issue("string", out),
            Some("boolean") if !value.is_boolean() => type_issue("boolean", out),
            Some("number") if !value.is_number() => type_issue("number", out),
            Some("integer") => {
                let fmt = resolved.get("format").and_then(Value::as_str).unwrap_or("int64");
                if !integer_fits(value, fmt) {
                    return type_issue(&format!("integer ({fmt})"), out);
                }
            }
            _ => {}
        }
        self.check_enum(resolved, value, pos, opts, out);
    }

    fn check_enum(&self, schema: &Value, value: &Value, pos: &Pos, opts: Options, out: &mut Vec<Issue>) {
        let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
            return;
        };
        if is_zero(value) || opts.skip_enums.contains(&pos.path.as_str()) {
            return;
        }
        if allowed.iter().any(|a| same_value(a, value)) {
            return;
        }
        let list = allowed.iter().map(go_fmt).collect::<Vec<_>>().join(" ");
        let go_name = format!("{}{}", pos.go_prefix, pos.path.rsplit('.').next().unwrap_or(""));
        out.push(Issue {
            kind: IssueKind::Enum,
            message: format!("{} in body should be one of [{list}]", pos.path),
            go_message: format!("{go_name} in body should be one of [{list}]"),
        });
    }

    /// The Go type go-swagger generates for property `name` (used in decoder messages).
    fn go_type(&self, schema: &Value, pos: &Pos, name: &str) -> String {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            return format!("models.{}", r.trim_start_matches("#/definitions/"));
        }
        match schema_type(schema) {
            Some("object") => format!("models.{}{}", pos.go_struct, capitalize(name)),
            Some("array") => format!("[]*{}", self.go_item_type(schema.get("items").unwrap_or(&Value::Null), pos, name)),
            Some("integer") => schema.get("format").and_then(Value::as_str).unwrap_or("int64").to_string(),
            Some("number") => match schema.get("format").and_then(Value::as_str) {
                Some("float") => "float32".into(),
                _ => "float64".into(),
            },
            Some("boolean") => "bool".into(),
            Some("string") => "string".into(),
            _ => "interface {}".into(),
        }
    }

    fn go_item_type(&self, items: &Value, pos: &Pos, name: &str) -> String {
        if let Some(r) = items.get("$ref").and_then(Value::as_str) {
            return format!("models.{}", r.trim_start_matches("#/definitions/"));
        }
        match schema_type(items) {
            Some("object") => format!("models.{}{}Items0", pos.go_struct, capitalize(name)),
            _ => self.go_type(items, pos, name),
        }
    }
}

fn schema_type(schema: &Value) -> Option<&str> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        return Some(t);
    }
    // go-swagger generates a struct for an untyped schema with properties (the LB endpoint
    // items have no `type: object`), so Go decoding treats it as one.
    if schema.get("properties").is_some() || schema.get("required").is_some() || schema.get("allOf").is_some() {
        Some("object")
    } else if schema.get("items").is_some() {
        Some("array")
    } else {
        None
    }
}

fn integer_fits(value: &Value, format: &str) -> bool {
    let Some(n) = value.as_number() else {
        return false;
    };
    let (lo, hi): (i128, i128) = match format {
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint64" => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let v: Option<i128> = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    matches!(v, Some(v) if v >= lo && v <= hi)
}

/// go-swagger skips enum validation of optional fields holding their Go zero value.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Go's `%v` of an enum value: strings unquoted.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) => format!("number {n}"),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                n.as_f64().map(|f| json!(f)).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(seq) => Value::Array(seq.iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                // Response codes (`200:`) are integer keys in YAML; JSON keys are strings.
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(&t.value),
    }
}

/// Structure of the two bodies the simulator accepts, transcribed from swagger.yml at loxilb
/// 64045de (descriptions dropped). Used only when the spec file is unavailable.
fn builtin_definitions() -> Value {
    let int = |format: &str| json!({"type": "integer", "format": format});
    json!({
        "LoadbalanceEntry": {
            "type": "object",
            "required": ["serviceArguments", "endpoints"],
            "properties": {
                "serviceArguments": {
                    "type": "object",
                    "required": ["externalIP", "port"],
                    "properties": {
                        "externalIP": {"type": "string"},
                        "privateIP": {"type": "string"},
                        "port": {"type": "integer"},
                        "portMax": {"type": "integer"},
                        "protocol": {"type": "string", "enum": ["tcp", "udp", "sctp", "icmp"]},
                        "sel": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5, 6]},
                        "bgp": {"type": "boolean"},
                        "monitor": {"type": "boolean"},
                        "probetype": {"type": "string", "enum": ["tcp", "udp", "sctp", "http", "https", "ping", "none"]},
                        "probeport": int("uint16"),
                        "probereq": {"type": "string"},
                        "proberesp": {"type": "string"},
                        "managed": {"type": "boolean"},
                        "mode": {"type": "integer", "format": "int32", "enum": [0, 1, 2, 3, 4, 5]},
                        "security": {"type": "integer", "format": "int32", "enum": [0, 1, 2]},
                        "block": int("uint32"),
                        "inactiveTimeOut": int("int32"),
                        "probeTimeout": int("uint32"),
                        "probeRetries": int("int32"),
                        "name": {"type": "string"},
                        "snat": {"type": "boolean"},
                        "oper": {"type": "integer", "format": "int32", "enum": [0, 1, 2]},
                        "host": {"type": "string"},
                        "proxyprotocolv2": {"type": "boolean"},
                        "egress": {"type": "boolean"}
                    }
                },
                "endpoints": {
                    "type": "array",
                    "items": {
                        "required": ["endpointIP", "weight", "targetPort"],
                        "properties": {
                            "endpointIP": {"type": "string"},
                            "weight": {"type": "integer"},
                            "targetPort": {"type": "integer"},
                            "state": {"type": "string"},
                            "counter": {"type": "string"}
                        }
                    }
                },
                "secondaryIPs": {
                    "type": "array",
                    "items": {"properties": {"secondaryIP": {"type": "string"}}}
                },
                "allowedSources": {
                    "type": "array",
                    "items": {"properties": {"prefix": {"type": "string"}}}
                }
            }
        },
        "EndPoint": {
            "type": "object",
            "required": ["hostName"],
            "properties": {
                "hostName": {"type": "string"},
                "name": {"type": "string"},
                "inactiveReTries": {"type": "integer"},
                "probeType": {"type": "string", "enum": ["tcp", "udp", "sctp", "ping", "http", "https", "none"]},
                "probeReq": {"type": "string"},
                "probeResp": {"type": "string"},
                "probeDuration": {"type": "integer"},
                "probePort": {"type": "integer"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> SpecValidator {
        SpecValidator::embedded()
    }

    fn lb() -> Value {
        json!({
            "serviceArguments": {"externalIP": "10.0.0.10", "port": 80, "protocol": "tcp"},
            "endpoints": [{"endpointIP": "10.0.1.5", "targetPort": 8080, "weight": 1}]
        })
    }

    fn first(v: &SpecValidator, def: &str, body: &Value) -> Issue {
        v.check(def, body, Options::default()).unwrap().into_iter().next().expect("an issue")
    }

    #[test]
    fn real_spec_accepts_minimal_lb_and_endpoint() {
        let v = real();
        assert!(v.source().is_some());
        v.validate("LoadbalanceEntry", &lb()).unwrap();
        v.validate_strict("LoadbalanceEntry", &lb()).unwrap();
        v.validate("EndPoint", &json!({"hostName": "10.0.1.5", "probeType": "http", "probePort": 80})).unwrap();
    }

    #[test]
    fn required_enum_and_type_errors_are_named_by_path() {
        for v in [real(), SpecValidator::builtin()] {
            let mut body = lb();
            body["serviceArguments"].as_object_mut().unwrap().remove("externalIP");
            assert_eq!(v.validate("LoadbalanceEntry", &body).unwrap_err(), "serviceArguments.externalIP in body is required");

            let mut body = lb();
            body["endpoints"][0].as_object_mut().unwrap().remove("weight");
            body["serviceArguments"]["protocol"] = json!("http");
            let err = v.validate("LoadbalanceEntry", &body).unwrap_err();
            assert!(err.contains("endpoints.0.weight in body is required"), "{err}");
            assert!(err.contains("serviceArguments.protocol in body should be one of [tcp udp sctp icmp]"), "{err}");

            let mut body = lb();
            body["serviceArguments"]["probeport"] = json!(70000);
            let err = v.validate("LoadbalanceEntry", &body).unwrap_err();
            assert!(err.starts_with("serviceArguments.probeport in body must be of type integer (uint16)"), "{err}");
        }
    }

    #[test]
    fn zero_values_of_optional_enums_pass_like_go_swagger() {
        let v = real();
        let mut body = lb();
        body["serviceArguments"]["protocol"] = json!("");
        body["serviceArguments"]["probetype"] = json!("");
        v.validate("LoadbalanceEntry", &body).unwrap();
    }

    #[test]
    fn null_is_absent_and_empty_array_is_present() {
        let v = real();
        let mut body = lb();
        body["endpoints"] = json!(null);
        assert_eq!(v.validate("LoadbalanceEntry", &body).unwrap_err(), "endpoints in body is required");
        body["endpoints"] = json!([]);
        v.validate("LoadbalanceEntry", &body).unwrap();
    }

    #[test]
    fn strict_mode_reports_misspelt_keys() {
        let v = real();
        let mut body = lb();
        body["serviceArguments"]["probeType"] = json!("tcp");
        v.validate("LoadbalanceEntry", &body).unwrap();
        let err = v.validate_strict("LoadbalanceEntry", &body).unwrap_err();
        assert!(err.contains("serviceArguments.probeType"), "{err}");
    }

    #[test]
    fn go_messages_follow_go_swagger_and_encoding_json() {
        let v = real();
        let mut body = lb();
        body["serviceArguments"].as_object_mut().unwrap().remove("port");
        let i = first(&v, "LoadbalanceEntry", &body);
        assert_eq!(i.kind, IssueKind::Required);
        assert_eq!(i.go_message, "serviceArguments.serviceArguments.port in body is required");

        let mut body = lb();
        body["endpoints"][0].as_object_mut().unwrap().remove("endpointIP");
        assert_eq!(first(&v, "LoadbalanceEntry", &body).go_message, "endpoints.0.endpointIP in body is required");

        let mut body = lb();
        body["serviceArguments"]["port"] = json!("80");
        let i = first(&v, "LoadbalanceEntry", &body);
        assert_eq!(i.kind, IssueKind::Type);
        assert_eq!(i.go_message, "json: cannot unmarshal string into Go struct field LoadbalanceEntryServiceArguments.serviceArguments.port of type int64");
    }

    #[test]
    fn canonicalize_matches_keys_case_insensitively() {
        let v = real();
        let body = json!({"ServiceArguments": {"externalIP": "1.2.3.4", "Port": 1, "BGP": true, "junk": 1},
                          "endpoints": [{"EndpointIP": "10.0.0.1", "targetport": 1, "weight": 1}]});
        let c = v.canonicalize("LoadbalanceEntry", &body);
        assert_eq!(c["serviceArguments"]["bgp"], json!(true));
        assert_eq!(c["serviceArguments"]["port"], json!(1));
        assert!(c["serviceArguments"].get("junk").is_none());
        assert_eq!(c["endpoints"][0]["endpointIP"], json!("10.0.0.1"));
        v.validate("LoadbalanceEntry", &c).unwrap();
    }

    #[test]
    fn builtin_matches_real_spec_shape() {
        // The fallback must not drift from the file: same properties and required keys.
        let (real, builtin) = (real(), SpecValidator::builtin());
        for def in ["LoadbalanceEntry", "EndPoint"] {
            let (rp, rr) = real.flatten(&real.defs[def]);
            let (bp, br) = builtin.flatten(&builtin.defs[def]);
            assert_eq!(rp.keys().collect::<Vec<_>>(), bp.keys().collect::<Vec<_>>(), "{def}");
            assert_eq!(rr, br, "{def}");
        }
        let (rp, _) = real.flatten(&real.defs["LoadbalanceEntry"]);
        let (bp, _) = builtin.flatten(&builtin.defs["LoadbalanceEntry"]);
        let (rsa, rsr) = real.flatten(rp["serviceArguments"]);
        let (bsa, bsr) = builtin.flatten(bp["serviceArguments"]);
        assert_eq!(rsr, bsr);
        for (k, rv) in rsa {
            let bv = bsa[k];
            assert_eq!(rv.get("type"), bv.get("type"), "{k}");
            assert_eq!(rv.get("format"), bv.get("format"), "{k}");
            assert_eq!(rv.get("enum"), bv.get("enum"), "{k}");
        }
    }
}
