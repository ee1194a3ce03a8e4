//! LoxiLB's authentication, as loxilb 64045de answers it (api/restapi/handler/auth.go, go-openapi's
//! security middleware): off by default; a manual token (`--manualtoken`); or the user service
//! (`--userservice`) with `POST /auth/login`. What a client meets:
//! * every request but the login carries `Authorization: <token>`, raw;
//! * manual token: a missing header is filled in with "valid" by LoxiLB's middleware, so a missing or
//!   wrong token is `500 {"code":500,"message":"invalid token"}` (the validator's plain error);
//! * user service: a missing header is `401 {"code":401,"message":"unauthenticated for invalid
//!   credentials"}`, an unknown or expired token `500 {"code":500,"message":"Token not found"}`;
//! * login: a wrong password is `200 {}` (no token), an unknown user `404` "User not found".

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::errors::{self, Reply};

/// How the simulated LoxiLB authenticates requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication (LoxiLB's default).
    #[default]
    Open,
    /// `--manualtoken`: this token, compared with the header as is.
    ManualToken(String),
    /// `--userservice`: these (username, password) pairs log in.
    Users(Vec<(String, String)>),
}

#[derive(Debug, Default)]
pub(crate) struct AuthState {
    pub mode: Auth,
    issued: HashSet<String>,
    pub logins: usize,
}

impl AuthState {
    pub(crate) fn new(mode: Auth) -> AuthState {
        AuthState { mode, ..AuthState::default() }
    }

    /// Tokens LoxiLB no longer knows (expired, or a restart emptied its cache and database).
    pub(crate) fn expire_tokens(&mut self) {
        self.issued.clear();
    }

    /// The answer when authentication decides the request (a login, a refusal); `None` lets it through.
    /// `rest` is the path under `/netlox/v1/`.
    pub(crate) fn check(&mut self, method: &str, rest: &str, authorization: Option<&str>, body: &[u8]) -> Option<Reply> {
        match &self.mode {
            Auth::Open => None,
            Auth::ManualToken(token) => {
                let sent = authorization.filter(|a| !a.is_empty()).unwrap_or("valid");
                (sent != token).then(|| errors::openapi(500, "invalid token"))
            }
            Auth::Users(users) => {
                if method == "POST" && rest == "auth/login" {
                    let users = users.clone();
                    return Some(self.login(&users, body));
                }
                match authorization.filter(|a| !a.is_empty()) {
                    None => Some(errors::openapi(401, "unauthenticated for invalid credentials")),
                    Some(token) if self.issued.contains(token) => None,
                    Some(_) => Some(errors::openapi(500, "Token not found")),
                }
            }
        }
    }

    fn login(&mut self, users: &[(String, String)], body: &[u8]) -> Reply {
        let Ok(user) = serde_json::from_slice::<Value>(body) else {
            return errors::openapi(400, "parsing user body failed");
        };
        let field = |k: &str| user.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (name, password) = (field("username"), field("password"));
        let Some((_, expected)) = users.iter().find(|(u, _)| *u == name) else {
            return errors::coded(404, "User not found");
        };
        if *expected != password {
            return errors::ok_json(json!({}));
        }
        self.logins += 1;
        let token = format!("sim-token-{name}-{}", self.logins);
        self.issued.insert(token.clone());
        errors::ok_json(json!({ "token": token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_token_refusals_are_500s_as_loxilbs_validator_answers() {
        let mut st = AuthState::new(Auth::ManualToken("t".into()));
        assert!(st.check("GET", "config/loadbalancer/all", Some("t"), b"").is_none());
        for sent in [None, Some("x")] {
            let r = st.check("GET", "config/loadbalancer/all", sent, b"").unwrap();
            assert_eq!((r.status, r.json()["message"].as_str()), (500, Some("invalid token")));
        }
    }

    #[test]
    fn the_user_service_logs_in_refuses_a_wrong_password_with_200_and_forgets_expired_tokens() {
        let mut st = AuthState::new(Auth::Users(vec![("admin".into(), "pw".into())]));
        assert_eq!(st.check("GET", "version", None, b"").unwrap().status, 401);
        let wrong = st.check("POST", "auth/login", None, br#"{"username":"admin","password":"no"}"#).unwrap();
        assert_eq!((wrong.status, wrong.json()), (200, json!({})));
        assert_eq!(st.check("POST", "auth/login", None, br#"{"username":"nobody","password":"pw"}"#).unwrap().status, 404);
        let ok = st.check("POST", "auth/login", None, br#"{"username":"admin","password":"pw"}"#).unwrap();
        let token = ok.json()["token"].as_str().unwrap().to_string();
        assert!(st.check("GET", "version", Some(&token), b"").is_none());
        st.expire_tokens();
        assert_eq!(st.check("GET", "version", Some(&token), b"").unwrap().status, 500);
    }
}
