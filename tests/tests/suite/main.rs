//! The component and end-to-end tests, linked into one test binary: each binary links wasmtime, the host
//! and the simulator, and a binary per file took gigabytes of disk and minutes of linking. Tests that need
//! their process to themselves (a signal sent to it, a process-wide subscriber or gauge, a child process
//! re-running the binary) stay in binaries of their own beside this directory.

mod accepting;
mod admin;
mod bgp;
mod cluster;
mod commit_wait;
mod component;
mod convergence;
mod durability;
mod e2e;
mod endpoint;
mod failover;
mod hermetic;
mod kept_view;
mod limits;
mod monitor;
mod policy_kit;
mod provider_socket;
mod repair;
mod retry;
mod sources;
mod statistics;
mod swap;
mod sync;
mod tools;
mod vip_conflict;
