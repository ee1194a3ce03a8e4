//! Compiling a component, or reusing a compilation from an earlier start: precompiled artifacts are kept
//! in `LOXILB_COMPONENT_CACHE` (default: the system temp dir) keyed by the component's digest and the
//! wasmtime build, so starting the host or swapping to a known policy does not run Cranelift again.

use std::path::PathBuf;

use anyhow::Result;
use wasmtime::component::Component;
use wasmtime::Engine;

fn cache_dir() -> PathBuf {
    std::env::var_os("LOXILB_COMPONENT_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("loxilb-octavia-cache"))
}

pub fn compile(engine: &Engine, bytes: &[u8], digest: &str) -> Result<Component> {
    // The artifact is only valid for the same wasmtime version and engine settings.
    let hash = engine.precompile_compatibility_hash();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&hash, &mut hasher);
    let key = format!("{digest}-{:016x}.cwasm", std::hash::Hasher::finish(&hasher));
    let path = cache_dir().join(key);
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` below for this very engine configuration
        // (the name carries the compatibility hash) in a directory only this host writes.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!("ignoring unusable component cache {}: {e}", path.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(artifact) = engine.precompile_component(bytes) {
        if std::fs::create_dir_all(cache_dir()).is_ok() {
            let _ = crate::caps::storage::write_atomic(&path, &artifact);
        }
    }
    Ok(component)
}
