//! Warnings that would repeat at every retry (LoxiLB down: every liveness check and every call) are
//! logged once per period per key, with how many were held back since.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of repeated warning is logged.
pub const PERIOD: Duration = Duration::from_secs(60);

static LAST: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// `Some(held back since the last one logged)` when a warning under `key` is due now, `None` while it
/// is held back.
pub fn due(key: &str, period: Duration) -> Option<u64> {
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = last.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match map.get_mut(key) {
        Some((at, held)) if now.duration_since(*at) < period => {
            *held += 1;
            None
        }
        Some((at, held)) => {
            let n = std::mem::take(held);
            *at = now;
            Some(n)
        }
        None => {
            map.insert(key.to_string(), (now, 0));
            Some(0)
        }
    }
}

/// `tracing::warn!` at most once per [`PERIOD`] per key; the line says how many were held back.
#[macro_export]
macro_rules! warn_limited {
    ($key:expr, $($arg:tt)+) => {
        if let Some(held) = $crate::ratelimit::due(&$key, $crate::ratelimit::PERIOD) {
            if held == 0 {
                tracing::warn!($($arg)+);
            } else {
                tracing::warn!("{} ({held} more like it in the last {:?})", format_args!($($arg)+), $crate::ratelimit::PERIOD);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_due_once_per_period_and_counts_what_it_held_back() {
        let key = "ratelimit-test";
        assert_eq!(due(key, Duration::from_millis(200)), Some(0));
        assert_eq!(due(key, Duration::from_millis(200)), None);
        assert_eq!(due(key, Duration::from_millis(200)), None);
        assert_eq!(due("another-key", Duration::from_millis(200)), Some(0));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(due(key, Duration::from_millis(200)), Some(2));
    }
}
