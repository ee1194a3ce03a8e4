//! Assembling a host from its configuration: grants, sandbox, service.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::caps::loxilb::{HttpLoxi, LoxiTransport};
use crate::caps::storage::{FileStore, MappingStore, MemoryStore};
use crate::caps::Grants;
use crate::config::Config;
use crate::runtime::bindings::policy_types::Settings;
use crate::runtime::instance::{Limits, Sandbox};

pub fn policy_path(config: &Config) -> PathBuf {
    config.policy_path.clone().unwrap_or_else(crate::runtime::default_policy_path)
}

pub fn storage(config: &Config) -> Result<Arc<dyn MappingStore>> {
    Ok(serving_storage(config)?.0)
}

/// The storage a serving host writes to, and its backup task (keep it alive: dropping it stops backups).
pub fn serving_storage(config: &Config) -> Result<(Arc<dyn MappingStore>, Option<crate::caps::storage::BackupTask>)> {
    if !config.enable_persistent_mapping {
        return Ok((Arc::new(MemoryStore::default()), None));
    }
    let file = Arc::new(FileStore::open(&config.mapping_storage_path).map_err(anyhow::Error::msg)?);
    let backups = crate::caps::storage::start_backups(Arc::clone(&file), config.mapping_backup_interval, config.mapping_backup_count);
    Ok((file, backups))
}

pub fn loxilb(config: &Config) -> Arc<dyn LoxiTransport> {
    Arc::new(HttpLoxi::new(config.api_endpoints.clone(), config.api_timeout).with_retry(crate::caps::loxilb::Retry::within(config.api_retry_deadline)))
}

pub fn settings(config: &Config) -> Settings {
    Settings { nat_mode: config.nat_mode.clone(), remove_orphans: config.remove_orphans }
}

pub fn limits(config: &Config) -> Limits {
    Limits { memory_bytes: (config.guest_memory_limit_mb as usize) << 20, call_timeout: config.guest_call_timeout }
}

/// Loads the configured policy and starts an instance over the configured grants.
pub fn sandbox(config: &Config, loxilb: Arc<dyn LoxiTransport>, storage: Arc<dyn MappingStore>) -> Result<Sandbox> {
    let path = policy_path(config);
    if !path.exists() {
        anyhow::bail!("policy component {} does not exist: build it with `cargo guest`, or set [driver_loxilb] policy_path", path.display());
    }
    let policy = crate::runtime::load(&path)?;
    let grants = Grants { loxilb, storage, log_target: path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string() };
    Sandbox::new(policy, grants, limits(config), settings(config)).with_context(|| format!("starting policy {}", path.display()))
}

/// What the Unix socket accepts, from `max_request_bytes` and `allowed_peer_users` / `allowed_peer_groups`.
pub fn unix_limits(config: &Config) -> crate::transport::unix::Limits {
    let mut peers = crate::transport::peer::Peers::default();
    if let Some(users) = &config.allowed_peer_users {
        peers.users = users.clone();
    }
    peers.groups = config.allowed_peer_groups.clone();
    crate::transport::unix::Limits { max_request_bytes: config.max_request_bytes, peers, ..Default::default() }
}
