//! Talking to Octavia: the driver-agent sockets (status, stats, get) and the status documents sent there.

pub mod agent;
pub mod readback;
pub mod reporter;
pub mod status;
