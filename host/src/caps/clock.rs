//! Wall-clock time for the policy (it has no clock of its own without WASI).

use std::time::{SystemTime, UNIX_EPOCH};

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::clock::Host;

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Host for HostState {
    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}
