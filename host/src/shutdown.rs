//! A graceful stop on SIGTERM (systemd's `stop`) or SIGINT: the operation in hand finishes, the mapping
//! journal is synced, and the process exits 0. Nothing accepted is lost by stopping at that point: casts
//! accepted but not applied stay in the inbox and are applied at the next start, and the AMQP transport's
//! unacknowledged deliveries go back to RabbitMQ for another host.

use std::sync::PoisonError;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::service::Service;

/// Blocks until SIGTERM or SIGINT, then stops as described above. Does not return.
pub fn serve_until_terminated(service: &Service) -> Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("installing the SIGTERM/SIGINT handlers")?;
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
    tracing::warn!("{name}: stopping after the operation in hand");
    // Taken once the operations in flight have landed and held until exit: no further operation starts.
    let sandbox = service.sandbox.lock().unwrap_or_else(PoisonError::into_inner);
    let code = match sandbox.storage().sync() {
        Ok(()) => {
            tracing::warn!("mapping journal synced; stopped");
            0
        }
        Err(e) => {
            tracing::error!("mapping journal could not be synced while stopping: {e}");
            1
        }
    };
    std::process::exit(code)
}
