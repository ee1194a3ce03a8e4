//! Assembling a host from its configuration: wiring, sandbox, service.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::execute::RecoveryMode;
use crate::loxilb::{HttpLoxi, LoxiTransport};
use crate::runtime::bindings::policy_types::Settings;
use crate::runtime::instance::{Limits, Sandbox, Wiring};
use crate::storage::{FileStore, MappingStore, MemoryStore};

pub fn policy_path(config: &Config) -> PathBuf {
    config.policy_path.clone().unwrap_or_else(crate::runtime::configured_default_policy)
}

/// The lock that makes this process the only one serving (or recovering) the configured mapping; hold
/// it for as long as the process uses the mapping. Refused, naming the holder's pid, while another holds it.
pub fn lock_state(config: &Config) -> Result<crate::storage::StateLock> {
    crate::storage::StateLock::acquire(&config.mapping_storage_path).map_err(anyhow::Error::msg)
}

pub fn storage(config: &Config) -> Result<Arc<dyn MappingStore>> {
    Ok(serving_storage(config)?.0)
}

/// The storage a serving host writes to, and its backup task (keep it alive: dropping it stops backups).
pub fn serving_storage(config: &Config) -> Result<(Arc<dyn MappingStore>, Option<crate::storage::BackupTask>)> {
    if !config.enable_persistent_mapping {
        return Ok((Arc::new(MemoryStore::default()), None));
    }
    let file = Arc::new(FileStore::open(&config.mapping_storage_path).map_err(anyhow::Error::msg)?);
    let backups = crate::storage::start_backups(Arc::clone(&file), config.mapping_backup_interval, config.mapping_backup_count);
    Ok((file, backups))
}

/// The storage a serving host writes to, its backup task, and the policy started over it. A journal
/// found damaged (`MappingStore::damage`: a segment missing or emptied, a record failing its checksum) is
/// not served, since the mapping it yields is rolled back and reconciliation would program it: the
/// problems are logged and counted (`storage_journal_damage_total`), the files are moved aside
/// (`quarantine`) and the mapping is rebuilt from LoxiLB's rules alone. If LoxiLB cannot be read, the
/// host refuses to start and the files stay in place.
pub fn serving_policy(config: &Config, loxilb: Arc<dyn LoxiTransport>) -> Result<(Arc<dyn MappingStore>, Option<crate::storage::BackupTask>, Sandbox)> {
    let (storage, backups) = serving_storage(config)?;
    let policy = sandbox(config, Arc::clone(&loxilb), Arc::clone(&storage))?;
    let damage = storage.damage();
    if damage.is_empty() {
        return Ok((storage, backups, policy));
    }
    crate::metrics::STORAGE_JOURNAL_DAMAGE.inc();
    for problem in &damage {
        tracing::error!("mapping journal damaged: {problem}");
    }
    let path = &config.mapping_storage_path;
    let refuse = |why: String| {
        anyhow::anyhow!(
            "the mapping journal of {} is damaged ({}), and {why}: restore the files, or run force-recovery --mode loxilb once LoxiLB answers",
            path.display(),
            damage.join("; ")
        )
    };
    match loxilb.request("GET", "/config/loadbalancer/all", None) {
        Ok((200, _)) => {}
        Ok((status, body)) => return Err(refuse(format!("LoxiLB cannot rebuild it (HTTP {status}: {body})"))),
        Err(e) => return Err(refuse(format!("LoxiLB cannot rebuild it ({e})"))),
    }
    drop((policy, backups, storage));
    let kept = crate::storage::quarantine(path).map_err(refuse)?;
    tracing::error!("mapping files moved to {}; rebuilding the mapping from LoxiLB's rules", kept.display());
    let (storage, backups) = serving_storage(config)?;
    let mut sandbox = sandbox(config, loxilb, Arc::clone(&storage))?;
    crate::metrics::RECOVERY_ATTEMPTS.inc();
    match sandbox.recover(RecoveryMode::Loxilb) {
        Ok(Ok(report)) => {
            crate::metrics::RECOVERY_SUCCESSES.inc();
            tracing::error!(
                "mapping rebuilt from LoxiLB after journal damage: {} mappings ({} deterministic), {} conflicts; the damaged files are in {}",
                report.recovered,
                report.deterministic,
                report.conflicts.len(),
                kept.display()
            );
        }
        Ok(Err(e)) => {
            crate::metrics::RECOVERY_FAILURES.inc();
            bail!("rebuilding the mapping from LoxiLB after journal damage failed: {} (the damaged files are in {})", e, kept.display());
        }
        Err(e) => {
            crate::metrics::RECOVERY_FAILURES.inc();
            bail!("rebuilding the mapping from LoxiLB after journal damage failed: {e} (the damaged files are in {})", kept.display());
        }
    }
    storage.sync().map_err(anyhow::Error::msg)?;
    Ok((storage, backups, sandbox))
}

/// The configured LoxiLB client; fails when a TLS or secret file cannot be read.
pub fn loxilb(config: &Config) -> Result<Arc<dyn LoxiTransport>> {
    let access = crate::access::access(config)?;
    Ok(Arc::new(HttpLoxi::with_access(config.api_endpoints.clone(), &access).with_retry(crate::loxilb::Retry::within(config.api_retry_deadline))))
}

pub fn settings(config: &Config) -> Settings {
    Settings { nat_mode: config.nat_mode.clone(), bgp: config.bgp }
}

pub fn limits(config: &Config) -> Limits {
    Limits { memory_bytes: (config.guest_memory_limit_mb as usize) << 20, call_timeout: config.guest_call_timeout, ..Limits::default() }
}

/// The load balancers the host acts for on its own: over AMQP, those of the shards it consumes
/// (`served.rs`).
pub fn served(config: &Config) -> crate::served::Served {
    match config.transport {
        crate::config::Transport::Unix => crate::served::Served::Everything,
        crate::config::Transport::Amqp => {
            let shards = crate::served::Shards::new(config.rpc_shards);
            crate::served::Served::Shards(Arc::new(if config.recovery_mode == "storage" { shards.without_recovery() } else { shards }))
        }
    }
}

/// Settings the host takes and does not apply in this configuration, said at start (not refused: a
/// configuration written for the Unix socket keeps working over AMQP).
pub fn not_applied(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if config.remove_orphans && config.transport == crate::config::Transport::Amqp {
        notes.push(
            "[driver_loxilb] remove_orphans = true is not applied with transport = amqp: another host's rules, and those of load balancers \
             this host has not seen, look like orphans to it (README, \"Several hosts (RabbitMQ)\")"
                .to_string(),
        );
    }
    notes
}

/// Loads the configured policy and starts an instance over the configured grants.
pub fn sandbox(config: &Config, loxilb: Arc<dyn LoxiTransport>, storage: Arc<dyn MappingStore>) -> Result<Sandbox> {
    let path = policy_path(config);
    if !path.exists() && path != std::path::Path::new(crate::runtime::BUILTIN_POLICY_NAME) {
        anyhow::bail!("policy component {} does not exist: build it with `cargo guest`, or set [driver_loxilb] policy_path", path.display());
    }
    let policy = crate::runtime::load(&path)?;
    // The built-in policy logs as the file it is built from (guest.wasm) would.
    let log_target = if path == std::path::Path::new(crate::runtime::BUILTIN_POLICY_NAME) { Some("guest") } else { path.file_stem().and_then(|s| s.to_str()) };
    let mapping = load_mapping(storage)?;
    let wiring =
        Wiring { loxilb, mapping, remove_orphans: config.remove_orphans, served: served(config), log_target: log_target.unwrap_or("policy").to_string() };
    let limits = limits(config);
    crate::metrics::POLICY_MEMORY_LIMIT.set(limits.memory_bytes as u64);
    Sandbox::new(policy, wiring, limits, settings(config)).with_context(|| format!("starting policy {}", path.display()))
}

/// The mapping the storage holds, ready to serve.
pub fn load_mapping(storage: Arc<dyn MappingStore>) -> Result<Arc<crate::mapping::Mapping>> {
    let (mapping, loaded) = crate::mapping::Mapping::load(storage).map_err(|e| anyhow::anyhow!("loading the mapping: {e}"))?;
    for note in &loaded.notes {
        tracing::warn!("{note}");
    }
    tracing::info!("mapping loaded: {} entries ({} journal records)", loaded.entries, loaded.journal_records);
    crate::metrics::MAPPING_ENTRIES.set(loaded.entries as u64);
    Ok(Arc::new(mapping))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Transport;

    #[test]
    fn remove_orphans_over_amqp_is_said_to_be_not_applied() {
        let config = |transport, remove_orphans| Config { transport, remove_orphans, ..Config::default() };
        assert!(not_applied(&config(Transport::Unix, true)).is_empty());
        assert!(not_applied(&config(Transport::Amqp, false)).is_empty());
        let notes = not_applied(&config(Transport::Amqp, true));
        assert!(notes.len() == 1 && notes[0].contains("remove_orphans") && notes[0].contains("amqp"), "{notes:?}");
    }
}
