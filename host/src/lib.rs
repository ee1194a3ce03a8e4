//! The `loxilb-octavia` host.
//!
//! Layout:
//! - `config`: octavia.conf's `[driver_loxilb]` section (and the Octavia settings the host shares).
//! - `access`: the TLS and credential keys read into the LoxiLB client's access (files, secrets).
//! - `runtime`: the wasmtime sandbox: engine, component loading and version checks, instances with limits.
//! - `caps`: the capabilities granted to a policy, one module each (the mapping view, log, clock).
//! - `mapping`: the ID mapping the host owns (index, seed-format codec) over `storage`: the durable store
//!   (snapshot, journal with group commit, backups).
//! - `execute`: carrying out a plan (LoxiLB calls with undo, mapping changes, statuses), recovery,
//!   reconciliation; `wire`: a plan's typed calls onto LoxiLB's wire; `loxilb`: the host's LoxiLB client
//!   (every node of a cluster, retries, TLS and tokens).
//! - `convert`: octavia-lib JSON → the policy's typed records.
//! - `service`: provider requests → policy → LoxiLB → statuses, in order; `inbox`: accepted casts, durably;
//!   `lanes`: one apply queue per load balancer; `dropped`: statuses of operations that can never be applied;
//!   `flights`: the shared policy, with operations' LoxiLB calls made while it is free.
//! - `commits`: the provider's notices of Octavia's commits (no get-socket reads while waiting for them).
//! - `epochs`: whether a read of Octavia's view is still current for its load balancer (sync, recovery).
//! - `octavia`: the driver-agent sockets, status documents and their senders (`reporter`).
//! - `transport`: how provider requests arrive (Unix socket; oslo.messaging over RabbitMQ).
//! - `served`: which load balancers this host acts for on its own (over AMQP, its shards').
//! - `monitor`: operating statuses, statistics and reconciliation while serving; `traffic`: listener
//!   traffic summed over LoxiLB nodes, with the connection counts kept between passes.
//! - `drift`: desired against observed rules (reconciliation, `nodes`); `nodes`: each LoxiLB node's state.
//! - `tools`: `show-mappings`, `validate-mappings`, `force-recovery`.
//! - `conformance`: the policy kit's conformance scenarios (`check-policy`, and the self-check before a swap).
//! - `swap`: hot-swapping the policy: checks, `--dry-run` preview, admin socket, SIGHUP.
//! - `app`: assembling those from a configuration; `demo`: the end-to-end demonstration.
//! - `memory`: the process's allocator.

pub mod access;
pub mod app;
pub mod caps;
pub mod commits;
pub mod config;
pub mod conformance;
pub mod convert;
pub mod demo;
pub mod drift;
pub mod dropped;
pub mod epochs;
pub mod execute;
pub mod flights;
pub mod health;
pub mod holders;
pub mod http;
pub mod inbox;
pub mod lanes;
pub mod logging;
pub mod loxilb;
pub mod mapping;
pub mod memory;
pub mod metrics;
pub mod missed_deletes;
pub mod monitor;
pub mod nodes;
pub mod octavia;
pub mod oslo_ini;
pub mod ratelimit;
pub mod reprogram;
pub mod runtime;
pub mod served;
pub mod service;
pub mod shutdown;
pub mod storage;
pub mod swap;
pub mod tools;
pub mod traffic;
pub mod transport;
pub mod vips;
pub mod wire;
