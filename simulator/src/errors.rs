//! How LoxiLB turns failures into HTTP responses.
//!
//! Three producers exist in the real server and they disagree on shape:
//! * go-openapi (routing, content type, parameter binding, schema validation):
//!   `{"code":<n>,"message":".."}` with status `n`, or 422 when `n >= 600`;
//! * LoxiLB's handlers (everything the core rejects): shape depends on the version,
//!   see [`ErrorStyle`];
//! * the DSR quirk in the LB handler, which reports an error as `200 {"result":"Error: .."}`.

use serde_json::{json, Value};

/// Which LoxiLB release's error envelope the simulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStyle {
    /// loxilb >= v0.9.8.5: HTTP status = class of the error,
    /// body `{"code":409,"fields":null,"message":"<canned>","result":"<raw error>"}`.
    #[default]
    Coded,
    /// loxilb <= v0.9.8.4: every handler error is `200 {"result":"<raw error>"}`, and the
    /// LoadbalanceEntry schema has no `protocol`/`probetype` enums yet.
    Legacy,
}

/// A response ready to be written: status, JSON body (encoded) and (for 405) an `Allow` header.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub allow: Option<String>,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Self::encoded(status, body.to_string())
    }

    /// A body already encoded: large listings are written straight from their typed shape.
    pub(crate) fn encoded(status: u16, body: String) -> Self {
        Reply { status, body, allow: None }
    }

    #[cfg(test)]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("replies are JSON")
    }
}

pub(crate) fn success() -> Reply {
    result_only("Success")
}

/// `200 {"result": text}`: success, legacy errors and the DSR quirk all look like this.
pub(crate) fn result_only(text: &str) -> Reply {
    Reply::new(200, json!({ "result": text }))
}

pub(crate) fn ok_json(body: Value) -> Reply {
    Reply::new(200, body)
}

/// An error raised by LoxiLB's core (`loxinet`), rendered the way the handler of the chosen
/// version renders it.
pub(crate) fn core_error(style: ErrorStyle, raw: &str) -> Reply {
    match style {
        ErrorStyle::Legacy => result_only(raw),
        ErrorStyle::Coded => coded(classify(raw), raw),
    }
}

/// The body `handler/common.go` builds; `fields` has no omitempty upstream, so it is always
/// there, while `details`/`sub-code` are always empty and therefore omitted.
pub(crate) fn coded(status: u16, raw: &str) -> Reply {
    Reply::new(
        status,
        json!({
            "code": status,
            "fields": null,
            "message": canned_message(status, raw),
            "result": raw,
        }),
    )
}

/// go-openapi's `errorAsJSON`: validation codes (>= 600) are served as 422.
pub(crate) fn openapi(code: u32, message: &str) -> Reply {
    let status = if code >= 600 { 422 } else { code as u16 };
    Reply::new(status, json!({ "code": code, "message": message }))
}

pub(crate) fn method_not_allowed(method: &str, allowed: &[&str]) -> Reply {
    let mut r = openapi(405, &format!("method {method} is not allowed, but [{}] are", allowed.join(",")));
    r.allow = Some(allowed.join(","));
    r
}

fn canned_message(status: u16, raw: &str) -> String {
    match status {
        404 => "Resource not found".into(),
        401 => "Invalid authentication credentials".into(),
        409 => "Resource conflict: Resource already exists OR dependency not found".into(),
        400 => "Malformed arguments for API call".into(),
        403 => "Capacity insufficient".into(),
        503 => "Maintenance mode".into(),
        // For 500 (and anything injected by a test) upstream repeats the raw error.
        _ => raw.into(),
    }
}

// Substring tables of `handler/common.go` (ResultErrorResponseErrorMessage) at loxilb 64045de,
// kept complete and in order because the first matching class wins and some needles
// ("no-master") appear in two classes. Needles with capitals never match upstream either
// (the haystack is lower-cased); they are kept so the tables can be diffed against the source.
#[rustfmt::skip]
const NOT_FOUND: &[&str] = &[
    "not-exists", " not exists", "not found", "no such", "not such",
    "no neigh found", "no-nh error", "no ulcl", "ephost-notfound",
    "host-notfound", "no-zone error", "no loxi-eni found", "no-master",
    "no bfd session", "my discriminator not found", "no-portimap", "no-portomap", "no-port error",
    "no such fdb", "no such route", "no such port", "no such mirror",
    "no such allowed src prefix", "no such policer", "not found interface",
    "no such ifa", "no such addrs", "vlan not created", "vlan not yet created",
    "phy port not created", "no-realport", "no realport", "no-user error", "no-rule error",
    "file not found",
];
#[rustfmt::skip]
const UNAUTHORIZED: &[&str] = &[
    "invalid token", "token is expired", "token not fou",
    "invalid refresh token", "invalid token format", "authentication failed",
    "user not found",
];
#[rustfmt::skip]
const CONFLICT: &[&str] = &[
    "lbrule-exist error", "lbrule-exists error", "fwrule-exists", "sess-exists",
    "mirr-exists", "pol-exists", "prop-exists", "zone exists", "existing zone",
    "already created", " existing ", " exists",
    "vlan has ports configured", "port exists", "vlan tag port exists",
    "vlan untag port exists", "same fdb", "rt exists", "nh exists",
    "username already exists", "lb rule-referred", "cant modify",
    "ep-host add failed as cluster node", "vlan bridge already added",
];
#[rustfmt::skip]
const BAD_REQUEST: &[&str] = &[
    "malformed", "parse error", "invalid parameters", "invalid ",
    "mask format is wrong", "not ipv4 address", "proto error", "malformed-proto",
    "malformed service proto", "unknown work type", "unknown log level", "unknown ep-host-state",
    "host-args unknown probe", "unknown probe port", "vxlan can not be tagged",
    "range", "overflow", "fwmark", "rule-mark error", "rule-snat error",
    "rule-allowed-src error", "service-args error", "non-udp-n3-args error",
    "secondaryip-args", "serv-port-args range", "endpoints-range",
    "source address malformed", "address malformed", "remoteip address malformed",
    "ip address parse error", "myip address parse error",
    "malformed-service", "malformed-secip", "malformed-lbep", "malformed-rule",
    "invalid gws", "zone number err", "zone is not set", "vlan zone err",
    "invalid vlanid", "fdb attr error", "fdb v6 dst unsupported",
    "host-args error", "hostarm-args error",
    "password must ", "password must not ", "password must be at least",
    "Cors URL cannot be empty", "wildcard '*' is not allowed",
    "Failed to add Cors", "Failed to delete Cors", "filename is required", "file is empty",
    "no configuration file provided", "invalid json format",
];
#[rustfmt::skip]
const FORBIDDEN: &[&str] = &[
    "capacity", " hwm", "ulhwm", "dlhwm", "nh-hwm", "rule-hwm",
    "need-realdev", "loxilb bgp mode is disabled", "running in bgp only mode",
];
#[rustfmt::skip]
const UNAVAILABLE: &[&str] = &[
    "not-ready", "timeout", "unexpected http response", "maintenance", "no-master",
    "netrpc call timeout",
];

/// HTTP status the >= v0.9.8.5 handler picks for a raw core error.
pub(crate) fn classify(raw: &str) -> u16 {
    let m = raw.to_lowercase();
    let hit = |needles: &[&str]| needles.iter().any(|n| !n.is_empty() && m.contains(n));
    if hit(NOT_FOUND) {
        404
    } else if hit(UNAUTHORIZED) {
        401
    } else if hit(CONFLICT) {
        409
    } else if hit(BAD_REQUEST) {
        400
    } else if hit(FORBIDDEN) {
        403
    } else if hit(UNAVAILABLE) {
        503
    } else {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_api_notes() {
        assert_eq!(classify("no-rule error"), 404);
        assert_eq!(classify("lbrule not-exists error"), 404);
        assert_eq!(classify("host-notfound error"), 404);
        assert_eq!(classify("lbrule-exists error"), 409);
        assert_eq!(classify("lbrule-exist error: cant modify rule security mode"), 409);
        assert_eq!(classify("LB Rule-referred"), 409);
        assert_eq!(classify("endpoints-range error"), 400);
        assert_eq!(classify("malformed-service-ptype error"), 400);
        assert_eq!(classify("secondaryIP-args error"), 400);
        assert_eq!(classify("host-parse error"), 400);
        assert_eq!(classify("rule-hwm error"), 403);
        // No needle matches these two, so upstream falls through to 500.
        assert_eq!(classify("proxy-proto-v2 not tcp service error"), 500);
        assert_eq!(classify("secIP modify error"), 500);
    }

    #[test]
    fn coded_body_carries_raw_error_and_null_fields() {
        let r = core_error(ErrorStyle::Coded, "lbrule-exists error");
        assert_eq!(r.status, 409);
        assert_eq!(r.json()["fields"], Value::Null);
        assert!(r.json().as_object().unwrap().contains_key("fields"));
        assert_eq!(r.json()["result"], "lbrule-exists error");

        let r = core_error(ErrorStyle::Coded, "secIP modify error");
        assert_eq!((r.status, r.json()["message"].as_str()), (500, Some("secIP modify error")));

        let r = core_error(ErrorStyle::Legacy, "no-rule error");
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"result": "no-rule error"}));
    }

    #[test]
    fn openapi_validation_codes_are_served_as_422() {
        assert_eq!(openapi(602, "x").status, 422);
        assert_eq!(openapi(400, "x").status, 400);
    }
}
