//! Authentication as LoxiLB does it: every request carries `Authorization: <token>` (the raw token, no
//! `Bearer`), where the token is either configured (LoxiLB's manual token) or obtained from LoxiLB's user
//! service (`POST /auth/login` with a username and password), and obtained again when LoxiLB no longer
//! takes it.
//!
//! LoxiLB's answers to a bad token are not all 401: a missing header is 401, but a token its validator
//! rejects is served by go-openapi as that validator's plain error, HTTP 500 with `message` "invalid
//! token" (manual token) or "Token not found" (user service). Both are taken as refusals here and
//! reported as 401 with a message saying what to fix, so that they are not retried as transient 500s.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::secret::Secret;
use crate::api::Reply;

/// What the client authenticates with.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Credentials {
    #[default]
    None,
    /// LoxiLB's manual token, sent as is.
    Token(Secret),
    /// A user of LoxiLB's user service (loxilb `--userservice`).
    Login { username: String, password: Secret },
}

/// One node's authentication: the credentials and, for a login, the token it gave.
pub(crate) struct Session {
    credentials: Credentials,
    token: Mutex<Option<Secret>>,
}

impl Session {
    pub(crate) fn new(credentials: Credentials) -> Session {
        Session { credentials, token: Mutex::new(None) }
    }

    /// One request through `send` (given the `Authorization` value, if any), logging in through `login`
    /// (given the login body) first when there is no token yet, and once more when LoxiLB refuses the
    /// token it gave (expired, or forgotten by a restart).
    pub(crate) fn exchange<E>(&self, send: impl Fn(Option<&str>) -> Result<Reply, E>, login: impl Fn(&str) -> Result<Reply, E>) -> Result<Reply, E> {
        let token = match &self.credentials {
            Credentials::None => return Ok(self.explain(send(None)?)),
            Credentials::Token(token) => return Ok(self.explain(send(Some(token.expose()))?)),
            Credentials::Login { .. } => self.current(),
        };
        let (token, fresh) = match token {
            Some(token) => (token, false),
            None => match self.log_in(None, &login)? {
                Ok(token) => (token, true),
                Err(refusal) => return Ok(refusal),
            },
        };
        let reply = send(Some(token.expose()))?;
        if fresh || !token_refused(&reply) {
            return Ok(self.explain(reply));
        }
        match self.log_in(Some(&token), &login)? {
            Ok(token) => Ok(self.explain(send(Some(token.expose()))?)),
            Err(refusal) => Ok(refusal),
        }
    }

    fn current(&self) -> Option<Secret> {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new token, unless another request already replaced `stale` (requests that meet an expired token
    /// together log in once). The lock is held across the login for that reason.
    fn log_in<E>(&self, stale: Option<&Secret>, login: &impl Fn(&str) -> Result<Reply, E>) -> Result<Result<Secret, Reply>, E> {
        let Credentials::Login { username, password } = &self.credentials else {
            return Ok(Err(refusal("no login is configured".into())));
        };
        let mut held = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(current) = held.as_ref() {
            if Some(current) != stale {
                return Ok(Ok(current.clone()));
            }
        }
        *held = None;
        let reply = login(&json!({"username": username, "password": password.expose()}).to_string())?;
        Ok(match login_token(&reply, username) {
            Ok(token) => {
                *held = Some(token.clone());
                Ok(token)
            }
            Err(reason) => Err(refusal(reason)),
        })
    }

    /// An answer refusing the credentials, with what to fix in place of LoxiLB's terse message.
    fn explain(&self, reply: Reply) -> Reply {
        if !token_refused(&reply) {
            return reply;
        }
        let what = match &self.credentials {
            Credentials::None => {
                "LoxiLB requires authentication and none is configured: set api_token (or api_token_file), or api_username and api_password (or api_password_file)".to_string()
            }
            Credentials::Token(_) => "LoxiLB refused the configured token (api_token or api_token_file): it must equal LoxiLB's manual token".to_string(),
            Credentials::Login { username, .. } => format!("LoxiLB refused the token of a new login as user {username:?}"),
        };
        refusal(format!("{what} (LoxiLB answered HTTP {}: {})", reply.status, said(&reply.body)))
    }
}

/// Whether LoxiLB refused a request for its credentials (see the module's note on the 500s).
pub(crate) fn token_refused(reply: &Reply) -> bool {
    if reply.status == 401 {
        return true;
    }
    // Every reply passes here, rule listings of megabytes among them: only a 500 is read.
    if reply.status != 500 {
        return false;
    }
    let Ok(body) = serde_json::from_str::<Value>(&reply.body) else { return false };
    let message = body.get("message").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
    body.get("result").is_none() && (message == "invalid token" || message == "token not found")
}

/// The token of a login's answer, or why there is none.
fn login_token(reply: &Reply, username: &str) -> Result<Secret, String> {
    let body: Option<Value> = serde_json::from_str(&reply.body).ok();
    let token = body.as_ref().and_then(|b| b.get("token")).and_then(Value::as_str).unwrap_or_default();
    match reply.status {
        // LoxiLB answers a wrong password with 200 and no token.
        200 if token.is_empty() => {
            Err(format!("LoxiLB refused the login as user {username:?}: wrong username or password (POST /auth/login answered 200 without a token)"))
        }
        200 => Ok(Secret::new(token)),
        404 | 405 if !said(&reply.body).to_ascii_lowercase().contains("user not found") => Err(format!(
            "LoxiLB has no user service to log in to (POST /auth/login answered HTTP {}): start loxilb with --userservice, or use its manual token (api_token)",
            reply.status
        )),
        status => Err(format!("LoxiLB refused the login as user {username:?} (HTTP {status}: {})", said(&reply.body))),
    }
}

/// LoxiLB's words in an error body: its `result`, else go-openapi's `message`, else the body's start.
fn said(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_string);
    field("result").or_else(|| field("message")).unwrap_or_else(|| body.trim().chars().take(200).collect())
}

/// The answer the client gives for a refused authentication: 401, as LoxiLB answers a request without
/// credentials, with `result` saying why (the error text LoxiLB's contract reads).
fn refusal(reason: String) -> Reply {
    Reply { status: 401, body: json!({"code": 401, "message": "unauthenticated", "result": reason}).to_string() }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply { status, body: body.into() }
    }

    const OK: &str = r#"{"result":"Success"}"#;

    #[test]
    fn a_manual_token_is_sent_as_is_and_its_refusal_is_explained() {
        let session = Session::new(Credentials::Token(Secret::new("t0k")));
        let sent = RefCell::new(Vec::new());
        let send = |auth: Option<&str>| -> Result<Reply, ()> {
            sent.borrow_mut().push(auth.map(str::to_string));
            Ok(reply(500, r#"{"code":500,"message":"invalid token"}"#))
        };
        let out = session.exchange(send, |_| -> Result<Reply, ()> { panic!("no login with a token") }).unwrap();
        assert_eq!(sent.borrow().as_slice(), [Some("t0k".to_string())]);
        assert_eq!(out.status, 401);
        assert!(out.body.contains("refused the configured token") && out.body.contains("invalid token") && !out.body.contains("t0k"), "{}", out.body);
    }

    #[test]
    fn a_login_happens_once_and_again_only_when_the_token_is_refused() {
        let session = Session::new(Credentials::Login { username: "admin".into(), password: Secret::new("pw") });
        let logins = RefCell::new(0);
        let login = |body: &str| -> Result<Reply, ()> {
            assert_eq!(serde_json::from_str::<Value>(body).unwrap(), json!({"username": "admin", "password": "pw"}));
            *logins.borrow_mut() += 1;
            Ok(reply(200, &format!(r#"{{"token":"tok{}"}}"#, logins.borrow())))
        };
        let valid = RefCell::new("tok1".to_string());
        let send = |auth: Option<&str>| -> Result<Reply, ()> {
            Ok(if auth == Some(valid.borrow().as_str()) { reply(200, OK) } else { reply(500, r#"{"code":500,"message":"Token not found"}"#) })
        };
        assert_eq!(session.exchange(send, login).unwrap().status, 200);
        assert_eq!(session.exchange(send, login).unwrap().status, 200);
        assert_eq!(*logins.borrow(), 1);
        *valid.borrow_mut() = "tok2".into();
        assert_eq!(session.exchange(send, login).unwrap().status, 200, "a refused token leads to one new login");
        assert_eq!(*logins.borrow(), 2);
    }

    #[test]
    fn a_wrong_password_answered_200_without_a_token_is_a_clear_refusal() {
        let session = Session::new(Credentials::Login { username: "admin".into(), password: Secret::new("s3cr3t-pw") });
        let out = session.exchange(|_| -> Result<Reply, ()> { panic!("nothing sent without a token") }, |_| Ok(reply(200, "{}"))).unwrap();
        assert_eq!(out.status, 401);
        assert!(out.body.contains("wrong username or password") && !out.body.contains("s3cr3t-pw"), "{}", out.body);
        let out = session
            .exchange(|_| -> Result<Reply, ()> { unreachable!() }, |_| Ok(reply(404, r#"{"code":404,"message":"path /netlox/v1/auth/login was not found"}"#)))
            .unwrap();
        assert!(out.body.contains("--userservice"), "{}", out.body);
    }

    #[test]
    fn only_credential_refusals_count_as_such() {
        assert!(token_refused(&reply(401, r#"{"code":401,"message":"unauthenticated for invalid credentials"}"#)));
        assert!(token_refused(&reply(500, r#"{"code":500,"message":"invalid token"}"#)));
        assert!(!token_refused(&reply(500, r#"{"code":500,"message":"canned","result":"invalid token"}"#)));
        assert!(!token_refused(&reply(500, r#"{"code":500,"result":"datapath error"}"#)));
        let none = Session::new(Credentials::None);
        let out = none.explain(reply(401, r#"{"code":401,"message":"unauthenticated for invalid credentials"}"#));
        assert!(out.body.contains("api_token") && out.body.contains("api_username"), "{}", out.body);
    }
}
