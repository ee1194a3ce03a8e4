//! The rule deletes each LoxiLB node of a cluster missed, kept in a file beside the mapping
//! (`<mapping_storage_path>.missed-deletes`).
//!
//! A node that does not answer a delete keeps the rule (it is cut off, not restarted). Once it answers,
//! reconciliation deletes there the rules deleted meanwhile, whatever `remove_orphans` says (see
//! `loxilb_api::Cluster::missed_deletes`). Known in memory only, they were forgotten by a restart of the
//! host meanwhile, and the node went on serving the deleted load balancers: their rules were taken for
//! orphans, which `remove_orphans = false` (the default) keeps.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::loxilb::LoxiTransport;

/// The file's contents: each node's API base URL and the rule paths deleted while it did not answer.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    nodes: BTreeMap<String, Vec<String>>,
}

/// Gives `loxi`'s nodes (matched by API base URL) the missed deletes `file` holds, and keeps the file up to
/// date from now on. Returns how many were restored. A file that cannot be read is an error (it is
/// replaced at the next change); deletes of a node no longer configured are dropped with a warning.
pub fn persist_at(loxi: &Arc<dyn LoxiTransport>, file: &Path) -> Result<usize> {
    let saved = match std::fs::read(file) {
        Ok(bytes) => {
            let saved: Saved = serde_json::from_slice(&bytes).with_context(|| format!("reading {}", file.display()))?;
            anyhow::ensure!(saved.version == 1, "{}: unknown version {}", file.display(), saved.version);
            saved.nodes
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let target = file.to_path_buf();
    if !loxi.keep_missed_deletes(Box::new(move |nodes| save(&target, nodes))) {
        return Ok(0);
    }
    let mut restored = 0;
    let mut left = saved;
    for node in loxi.nodes() {
        if let Some(paths) = left.remove(&node.state().base).filter(|p| !p.is_empty()) {
            restored += paths.len();
            tracing::warn!("LoxiLB node {} missed {} rule delete(s) before the restart: deleting them there once it answers", node.state().base, paths.len());
            node.restore_missed_deletes(paths);
        }
    }
    for (base, paths) in left.iter().filter(|(_, p)| !p.is_empty()) {
        tracing::warn!("{}: node {base} is no longer in api_endpoints; its {} missed rule delete(s) are dropped", file.display(), paths.len());
    }
    Ok(restored)
}

/// Writes every node's missed deletes so that a crash leaves the old file or the new one. A failure is
/// logged, not fatal: they are still known in memory until a restart.
fn save(file: &Path, nodes: &[(String, Vec<String>)]) {
    let saved = Saved { version: 1, nodes: nodes.iter().cloned().collect() };
    let written = serde_json::to_vec(&saved).map_err(std::io::Error::other).and_then(|bytes| crate::storage::write_atomic(file, &bytes));
    if let Err(e) = written {
        crate::metrics::STORAGE_ERRORS.inc();
        tracing::error!("writing {}: {e} (rule deletes a LoxiLB node missed are kept in memory only)", file.display());
    }
}
