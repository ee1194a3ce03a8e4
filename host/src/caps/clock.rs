//! Wall-clock time for the policy (it has no clock of its own without WASI).

use std::time::{SystemTime, UNIX_EPOCH};

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::clock::Host;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// UTC time as RFC 3339 (`2026-11-25T08:00:00Z`), from the backup stamp's calendar arithmetic.
pub fn rfc3339(ms: u64) -> String {
    let s = crate::storage::stamp(ms);
    format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15])
}

impl Host for HostState {
    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}
