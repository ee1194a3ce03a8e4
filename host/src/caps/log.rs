//! The policy's log lines, emitted through the host's tracing subscriber under the policy's name.

use super::HostState;
use crate::runtime::bindings::loxilb::octavia::log::{Host, Level};

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let target = &self.grants.log_target;
        match level {
            Level::Debug => tracing::debug!(policy = %target, "{message}"),
            Level::Info => tracing::info!(policy = %target, "{message}"),
            Level::Warning => tracing::warn!(policy = %target, "{message}"),
            Level::Error => tracing::error!(policy = %target, "{message}"),
        }
    }
}
