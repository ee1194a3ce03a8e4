//! What a LoxiLB node says about itself: its version (`GET /version`) and its HA role
//! (`GET /config/cistate/all`), and what its version means for the wire.
//!
//! Versions: LoxiLB up to 0.9.8.4 answers every error as HTTP 200 with `{"result": "<error>"}`; from
//! 0.9.8.5 (commit ed3f10f9, 2025-09-11) errors carry HTTP status codes. [`crate::outcome`] reads both
//! styles whatever the version, so the version is informative: it is shown per node and a version outside
//! [`SUPPORTED`] is warned about, not refused.

use serde_json::Value;

pub const CISTATE_PATH: &str = "/config/cistate/all";

/// The oldest and the newest (major, minor, patch) this release was checked against: every 0.9.x from
/// 0.9.7 (API paths and rule schemas unchanged since) through the 0.9.8 series.
pub const SUPPORTED: ((u32, u32, u32), (u32, u32, u32)) = ((0, 9, 7), (0, 9, 8));

/// LoxiLB's version text, e.g. `v0.9.8.5`, `0.9.8-dev` (source builds), `0.9.7`.
pub fn version(body: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the /version answer is not JSON: {e}"))?;
    match v.get("version").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => Ok(text.to_string()),
        _ => Err("the /version answer names no version".into()),
    }
}

/// The numbers of a version text: `v0.9.8.5` → [0, 9, 8, 5], `0.9.8-dev` → [0, 9, 8].
pub fn numbers(text: &str) -> Option<Vec<u32>> {
    let core = text.trim().trim_start_matches(['v', 'V']);
    let core = core.split(['-', '+', ' ']).next().unwrap_or("");
    let numbers: Option<Vec<u32>> = core.split('.').map(|n| n.parse().ok()).collect();
    numbers.filter(|n| n.len() >= 2)
}

/// How a node of this version answers errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// HTTP 200 and `{"result": "<error>"}` (up to 0.9.8.4).
    ResultIn200,
    /// 4xx/5xx with `{"code", "result"}` (0.9.8.5 on).
    StatusCodes,
    /// A development build of 0.9.8 or an unreadable version: either style may come.
    Either,
}

impl ErrorStyle {
    pub fn describe(self) -> &'static str {
        match self {
            ErrorStyle::ResultIn200 => "errors as HTTP 200 + result",
            ErrorStyle::StatusCodes => "errors as HTTP status codes",
            ErrorStyle::Either => "error style unknown (both read)",
        }
    }
}

pub fn error_style(text: &str) -> ErrorStyle {
    let Some(n) = numbers(text) else { return ErrorStyle::Either };
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    let (major, minor, patch, build) = (at(0), at(1), at(2), at(3));
    if (major, minor, patch) < (0, 9, 8) {
        return ErrorStyle::ResultIn200;
    }
    if (major, minor, patch) > (0, 9, 8) {
        return ErrorStyle::StatusCodes;
    }
    // 0.9.8 itself: only a fourth number tells (`0.9.8-dev` is any commit of the series).
    match n.len() {
        4.. if build >= 5 => ErrorStyle::StatusCodes,
        4.. => ErrorStyle::ResultIn200,
        _ => ErrorStyle::Either,
    }
}

/// Why a version is outside [`SUPPORTED`], if it is.
pub fn unsupported(text: &str) -> Option<String> {
    let Some(n) = numbers(text) else { return Some(format!("LoxiLB version {text:?} cannot be read")) };
    let triple = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    let ((a, b, c), (x, y, z)) = SUPPORTED;
    if triple < (a, b, c) {
        Some(format!("LoxiLB {text} is older than {a}.{b}.{c}, the oldest this release supports"))
    } else if (triple.0, triple.1) > (x, y) || ((triple.0, triple.1) == (x, y) && triple.2 > z) {
        Some(format!("LoxiLB {text} is newer than the {x}.{y}.{z} series this release was checked against"))
    } else {
        None
    }
}

/// One HA instance as `GET /config/cistate/all` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub instance: String,
    /// MASTER, BACKUP, FAULT, STOP or NOT_DEFINED (no HA).
    pub state: String,
    pub vip: String,
}

/// The instances a node lists (`{"Attr": [{instance, state, vip, sync}]}`).
pub fn roles(body: &str) -> Result<Vec<Role>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("the cistate answer is not JSON: {e}"))?;
    let Some(attr) = v.get("Attr") else { return Err("the cistate answer has no Attr".into()) };
    let Some(items) = attr.as_array() else { return Ok(Vec::new()) };
    let text = |i: &Value, k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Ok(items.iter().map(|i| Role { instance: text(i, "instance"), state: text(i, "state"), vip: text(i, "vip") }).collect())
}

/// The instance LoxiLB uses unless told otherwise (`cmn.CIDefault`): the one rules are advertised for.
pub const DEFAULT_INSTANCE: &str = "llb-inst0";

/// The node's role: the default instance's state (the first instance's if it lists no default).
pub fn node_role(roles: &[Role]) -> Option<String> {
    roles.iter().find(|r| r.instance == DEFAULT_INSTANCE).or(roles.first()).map(|r| r.state.clone()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_and_tell_the_error_style() {
        assert_eq!(version(r#"{"version":"v0.9.8.5","buildInfo":"x"}"#).unwrap(), "v0.9.8.5");
        assert!(version(r#"{"buildInfo":"x"}"#).is_err());
        assert!(version("<html>").is_err());
        assert_eq!(numbers("0.9.8-dev"), Some(vec![0, 9, 8]));
        assert_eq!(error_style("v0.9.8.5"), ErrorStyle::StatusCodes);
        assert_eq!(error_style("v0.9.8.4"), ErrorStyle::ResultIn200);
        assert_eq!(error_style("0.9.7"), ErrorStyle::ResultIn200);
        assert_eq!(error_style("0.9.8-dev"), ErrorStyle::Either);
        assert_eq!(error_style("0.9.9"), ErrorStyle::StatusCodes);
        assert_eq!(error_style("nightly"), ErrorStyle::Either);
    }

    #[test]
    fn versions_outside_the_supported_range_are_named() {
        assert_eq!(unsupported("v0.9.8.5"), None);
        assert_eq!(unsupported("0.9.7"), None);
        assert_eq!(unsupported("0.9.8-sim"), None);
        assert!(unsupported("0.9.6").unwrap().contains("older than 0.9.7"));
        assert!(unsupported("0.10.0").unwrap().contains("newer than the 0.9.8 series"));
        assert!(unsupported("nightly").unwrap().contains("cannot be read"));
    }

    #[test]
    fn roles_come_from_the_default_instance() {
        let listed = roles(r#"{"Attr":[{"instance":"other","state":"BACKUP","vip":"0.0.0.0","sync":null},{"instance":"llb-inst0","state":"MASTER","vip":"0.0.0.0","sync":null}]}"#).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(node_role(&listed).as_deref(), Some("MASTER"));
        assert_eq!(node_role(&roles(r#"{"Attr":[{"instance":"x","state":"BACKUP"}]}"#).unwrap()).as_deref(), Some("BACKUP"));
        assert_eq!(node_role(&roles(r#"{"Attr":null}"#).unwrap()), None);
        assert!(roles(r#"{"result":"x"}"#).is_err());
    }
}
