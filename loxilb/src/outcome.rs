//! LoxiLB's error contract, read off an answer.
//!
//! LoxiLB ≤ 0.9.8.4 answers every handler error with HTTP 200 and `{"result":"<error>"}`; later releases
//! answer with the error's class as the status and the same `result` (API-NOTES §2). A change is done only
//! on 200 *and* `result == "Success"`, and the error text is `result` in both styles.

use crate::encode::Intent;

/// What LoxiLB's answer means for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done now.
    Done,
    /// An upsert LoxiLB already holds as sent (an unchanged re-POST: `lbrule-exists`).
    AlreadyDone,
    /// A delete of what LoxiLB does not hold.
    AlreadyGone,
    /// Refused: the HTTP status and LoxiLB's `result` text (the body's start when it has none).
    Refused { status: u16, result: String },
}

impl Outcome {
    /// Whether LoxiLB now holds what was asked.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Refused { .. })
    }
}

/// LoxiLB's `result` text, present in both its old (200 + result) and new (coded) error styles.
pub fn result_text(body: &str) -> String {
    // Read as just that field (every answer to a change is read for it), not as a whole `Value`.
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Answer>(body) {
        Ok(Answer { result: Some(result) }) => result.into_owned(),
        _ => body.trim().chars().take(200).collect(),
    }
}

/// How LoxiLB's answer (`status`, `body`) to a request of `intent` is to be taken.
pub fn classify(intent: Intent, status: u16, body: &str) -> Outcome {
    if intent == Intent::Read {
        // Lists and /version carry no `result`.
        return if status == 200 { Outcome::Done } else { Outcome::Refused { status, result: result_text(body) } };
    }
    let result = result_text(body);
    if status == 200 && result == "Success" {
        return Outcome::Done;
    }
    let lower = result.to_ascii_lowercase();
    // Not "exist": `lbrule-exist error: cant modify …` is a refusal (kube-loxilb swallows it).
    if intent == Intent::UpsertRule && lower.contains("lbrule-exists") {
        return Outcome::AlreadyDone;
    }
    if intent == Intent::Delete && (status == 404 || ["no-rule", "not-exists", "notfound"].iter().any(|n| lower.contains(n))) {
        return Outcome::AlreadyGone;
    }
    Outcome::Refused { status, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{"result":"Success"}"#;

    #[test]
    fn the_result_text_is_the_result_field_or_else_the_body() {
        assert_eq!(result_text(r#"{"code":400,"fields":[1],"message":"m","result":"lbrule-exists error"}"#), "lbrule-exists error");
        assert_eq!(result_text(r#" {"result":"tab\tand \"quote\""} "#), "tab\tand \"quote\"");
        for body in [r#"{"result":5}"#, r#"{"result":null}"#, r#"{"message":"m"}"#, "[1,2]", "404 page not found\n"] {
            assert_eq!(result_text(body), body.trim(), "{body}");
        }
        assert_eq!(result_text(&"x".repeat(300)).len(), 200, "a body that is not JSON is cut to 200 characters");
    }

    fn coded(status: u16, raw: &str) -> (u16, String) {
        (status, format!(r#"{{"code":{status},"fields":null,"message":"canned","result":"{raw}"}}"#))
    }

    fn legacy(raw: &str) -> (u16, String) {
        (200, format!(r#"{{"result":"{raw}"}}"#))
    }

    #[test]
    fn success_is_200_and_result_success() {
        assert_eq!(classify(Intent::UpsertRule, 200, SUCCESS), Outcome::Done);
        assert_eq!(classify(Intent::Delete, 200, SUCCESS), Outcome::Done);
        // A 2xx without the result is not success: LoxiLB always says it.
        assert!(!classify(Intent::UpsertProbe, 204, "").is_ok());
        assert!(!classify(Intent::UpsertRule, 200, "{}").is_ok());
    }

    #[test]
    fn old_style_errors_answered_with_200_are_refusals_with_their_result() {
        for (intent, raw) in [(Intent::UpsertRule, "malformed-service-ptype error"), (Intent::UpsertProbe, "host-parse error")] {
            let (status, body) = legacy(raw);
            assert_eq!(classify(intent, status, &body), Outcome::Refused { status: 200, result: raw.into() });
        }
        // The DSR quirk of every version.
        let (status, body) = legacy("Error: Only Hash Selection criteria allowed for DSR mode");
        assert!(!classify(Intent::UpsertRule, status, &body).is_ok());
    }

    #[test]
    fn new_style_errors_carry_the_raw_result_not_the_canned_message() {
        let (status, body) = coded(400, "endpoints-range error");
        assert_eq!(classify(Intent::UpsertRule, status, &body), Outcome::Refused { status: 400, result: "endpoints-range error".into() });
        // go-openapi's own errors have no result: the body stands for it.
        assert_eq!(
            classify(Intent::UpsertRule, 422, r#"{"code":602,"message":"serviceArguments.port in body is required"}"#),
            Outcome::Refused { status: 422, result: r#"{"code":602,"message":"serviceArguments.port in body is required"}"#.into() }
        );
    }

    #[test]
    fn an_unchanged_rule_repost_is_already_done_in_both_styles_but_a_cant_modify_is_not() {
        for (status, body) in [coded(409, "lbrule-exists error"), legacy("lbrule-exists error")] {
            assert_eq!(classify(Intent::UpsertRule, status, &body), Outcome::AlreadyDone);
            assert!(!classify(Intent::Delete, status, &body).is_ok());
        }
        let (status, body) = coded(409, "lbrule-exist error: cant modify rule security mode");
        assert!(!classify(Intent::UpsertRule, status, &body).is_ok());
    }

    #[test]
    fn deleting_what_is_missing_is_already_gone_in_both_styles() {
        for (status, body) in [
            coded(404, "no-rule error"),
            legacy("no-rule error"),
            coded(404, "host-notfound error"),
            legacy("lbrule not-exists error"),
            (404, "not json".into()),
        ] {
            assert_eq!(classify(Intent::Delete, status, &body), Outcome::AlreadyGone, "{status} {body}");
        }
        let (status, body) = legacy("no-rule error");
        assert!(!classify(Intent::UpsertRule, status, &body).is_ok(), "only a delete may find nothing");
        let (status, body) = coded(409, "LB Rule-referred");
        assert!(!classify(Intent::Delete, status, &body).is_ok());
    }

    #[test]
    fn reads_go_by_status() {
        assert_eq!(classify(Intent::Read, 200, r#"{"lbAttr":[]}"#), Outcome::Done);
        assert_eq!(classify(Intent::Read, 503, r#"{"code":503,"result":"not-ready"}"#), Outcome::Refused { status: 503, result: "not-ready".into() });
    }
}
