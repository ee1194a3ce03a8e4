//! What the client reports as it goes, for metrics and logs kept by its user.

use std::time::Duration;

/// Why a request is sent again.
#[derive(Debug, Clone, Copy)]
pub enum Retried<'a> {
    /// LoxiLB answered with a status that says "not now" (and this body).
    Status(u16, &'a str),
    /// No node answered (the reason).
    Unanswered(&'a str),
}

/// Told of every attempt's end and every retry. Calls come from the requesting thread, between attempts:
/// keep them short.
pub trait Observer: Send + Sync {
    /// `node` (its base URL) answered with `status`.
    fn answered(&self, node: &str, status: u16) {
        let _ = (node, status);
    }

    /// `node` gave no answer to `method path`; `class` is `timeout`, `refused`, `io`, `tls` or `error`.
    fn unanswered(&self, node: &str, class: &'static str, method: &str, path: &str, error: &str) {
        let _ = (node, class, method, path, error);
    }

    /// `method path` is sent again after `pause`.
    fn retrying(&self, method: &str, path: &str, why: Retried<'_>, pause: Duration) {
        let _ = (method, path, why, pause);
    }
}

/// Reports nothing.
pub struct Quiet;

impl Observer for Quiet {}
