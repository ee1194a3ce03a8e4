//! A value that must not reach a log line, a metric or an error message.

use std::fmt;

/// A token or password. Its `Debug` and `Display` print `***`, so a struct holding one can derive
/// `Debug` and be logged whole; [`Secret::expose`] is the one way to the text, for the wire only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `url` without the `user:password@` part of its authority, for naming a node in logs and metrics.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn userinfo_is_cut_from_urls() {
        assert_eq!(redact_userinfo("https://admin:pw@10.0.0.2:11111"), "https://***@10.0.0.2:11111");
        assert_eq!(redact_userinfo("http://u:p@h:1/x?y=@z"), "http://***@h:1/x?y=@z");
        assert_eq!(redact_userinfo("http://h:1/a@b"), "http://h:1/a@b");
        assert_eq!(redact_userinfo("http://10.0.0.2:11111"), "http://10.0.0.2:11111");
    }
}
