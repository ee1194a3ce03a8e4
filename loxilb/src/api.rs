//! LoxiLB as the host uses it: typed calls over any HTTP exchange.
//!
//! [`Exchange`] is one request to one LoxiLB API (a node, a failover list of nodes, a retrying client, a
//! test's stand-in); [`Loxilb`] is the typed API every exchange gets, with LoxiLB's error contract applied.

use std::fmt;

use crate::conntrack::{self, ConntrackEntry, CONNTRACK_PATH};
use crate::decode;
use crate::encode::{self, Request, RULE_LIST_PATH, VERSION_PATH};
use crate::outcome::{classify, Outcome};
use crate::types::{LoxilbCall, ObservedRule};

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// One request to a LoxiLB API.
pub trait Exchange {
    /// Sends `method path` (relative to `/netlox/v1`) with a JSON body. An answer of any status is `Ok`;
    /// `Err` says why none arrived.
    fn exchange(&self, method: &str, path: &str, body: Option<&str>) -> Result<Reply, String>;
}

/// Why a typed call failed. Each carries the request ("METHOD path") it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// No answer (refused, reset, timed out, on every node tried).
    Unanswered { request: String, reason: String },
    /// LoxiLB answered and did not do it.
    Refused { request: String, status: u16, result: String },
    /// LoxiLB answered 200 with something this crate cannot read.
    Malformed { request: String, reason: String },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Unanswered { request, reason } | WireError::Malformed { request, reason } => write!(f, "{request}: {reason}"),
            WireError::Refused { request, status, result } => write!(f, "{request}: HTTP {status}: {result}"),
        }
    }
}

impl std::error::Error for WireError {}

/// LoxiLB's API, typed.
pub trait Loxilb {
    /// Carries out one call; done already (an unchanged rule re-posted, a delete of what is gone) is done.
    fn apply(&self, call: &LoxilbCall) -> Result<(), WireError>;
    /// Every rule LoxiLB holds, as it lists them.
    fn list_rules(&self) -> Result<Vec<ObservedRule>, WireError>;
    /// Every connection LoxiLB tracks, one entry per direction (see [`conntrack`]).
    fn list_conntrack(&self) -> Result<Vec<ConntrackEntry>, WireError>;
    /// Whether LoxiLB answers (`GET /version`, which needs no token and touches no state).
    fn reachable(&self) -> Result<(), WireError>;
}

/// Sends `request` and applies LoxiLB's error contract to the answer.
pub fn send<E: Exchange + ?Sized>(exchange: &E, request: &Request) -> Result<(Outcome, Reply), WireError> {
    let reply = exchange
        .exchange(request.method, &request.path, request.body.as_deref())
        .map_err(|reason| WireError::Unanswered { request: request.label(), reason })?;
    match classify(request.intent, reply.status, &reply.body) {
        Outcome::Refused { status, result } => Err(WireError::Refused { request: request.label(), status, result }),
        outcome => Ok((outcome, reply)),
    }
}

impl<E: Exchange + ?Sized> Loxilb for E {
    fn apply(&self, call: &LoxilbCall) -> Result<(), WireError> {
        send(self, &encode::request(call)).map(drop)
    }

    fn list_rules(&self) -> Result<Vec<ObservedRule>, WireError> {
        let request = Request::get(RULE_LIST_PATH);
        let (_, reply) = send(self, &request)?;
        decode::rule_list(&reply.body).map_err(|reason| WireError::Malformed { request: request.label(), reason })
    }

    fn list_conntrack(&self) -> Result<Vec<ConntrackEntry>, WireError> {
        let request = Request::get(CONNTRACK_PATH);
        let (_, reply) = send(self, &request)?;
        conntrack::conntrack_list(&reply.body).map_err(|reason| WireError::Malformed { request: request.label(), reason })
    }

    fn reachable(&self) -> Result<(), WireError> {
        send(self, &Request::get(VERSION_PATH)).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RuleKey;
    use std::sync::Mutex;

    /// Answers from a script, and records what it was asked.
    struct Scripted {
        answers: Mutex<Vec<Result<Reply, String>>>,
        asked: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<(u16, &str), &str>>) -> Scripted {
            let answers = answers.into_iter().rev().map(|a| a.map(|(status, body)| Reply { status, body: body.into() }).map_err(str::to_string)).collect();
            Scripted { answers: Mutex::new(answers), asked: Mutex::new(Vec::new()) }
        }
    }

    impl Exchange for Scripted {
        fn exchange(&self, method: &str, path: &str, _: Option<&str>) -> Result<Reply, String> {
            self.asked.lock().unwrap().push(format!("{method} {path}"));
            self.answers.lock().unwrap().pop().expect("an answer left")
        }
    }

    #[test]
    fn typed_calls_apply_the_contract_and_name_the_request_in_errors() {
        let key = RuleKey { external_ip: "10.0.0.1".into(), port: 80, protocol: "tcp".into(), ..RuleKey::default() };
        let api = Scripted::new(vec![
            Ok((404, r#"{"code":404,"result":"no-rule error"}"#)),
            Ok((200, r#"{"result":"malformed-service error"}"#)),
            Err("connection refused"),
        ]);
        api.apply(&LoxilbCall::DeleteRule(key.clone())).unwrap();
        let refused = api.apply(&LoxilbCall::DeleteRule(key.clone())).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "DELETE /config/loadbalancer/externalipaddress/10.0.0.1/port/80/protocol/tcp?block=0: HTTP 200: malformed-service error"
        );
        assert!(matches!(api.apply(&LoxilbCall::DeleteRule(key)), Err(WireError::Unanswered { .. })));
    }

    #[test]
    fn listing_and_reachability_read_their_answers() {
        let api = Scripted::new(vec![
            Ok((200, r#"{"lbAttr":[{"serviceArguments":{"externalIP":"10.0.0.1","port":80,"protocol":"tcp"},"endpoints":null}]}"#)),
            Ok((200, "<html>")),
            Ok((200, r#"{"version":"0.9.8"}"#)),
            Ok((503, r#"{"code":503,"result":"not-ready"}"#)),
        ]);
        assert_eq!(api.list_rules().unwrap()[0].rule.service.external_ip, "10.0.0.1");
        assert!(matches!(api.list_rules(), Err(WireError::Malformed { .. })));
        api.reachable().unwrap();
        assert_eq!(api.reachable().unwrap_err().to_string(), "GET /version: HTTP 503: not-ready");
        assert_eq!(*api.asked.lock().unwrap(), ["GET /config/loadbalancer/all", "GET /config/loadbalancer/all", "GET /version", "GET /version"]);
    }
}
