//! Compiling a component, or reusing a compilation from an earlier start: precompiled artifacts are kept
//! in a directory of this host's own (see `cache_dir`) keyed by the component's digest and the wasmtime
//! build, so starting the host or swapping to a known policy does not run Cranelift again.
//!
//! An artifact is native code the host maps and runs as it is: whoever can write it runs code as the host.
//! So the directory must be ours alone — owned by this process's effective user, writable by nobody else
//! (created mode 0700) — and so must each artifact (a regular file, not a link, owned by us, not group- or
//! world-writable), checked on the open file it is read from. Anything else is not loaded and nothing is
//! written there: the host says so loudly and compiles instead (slower start, same policy).

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Result;
use wasmtime::component::Component;
use wasmtime::Engine;

/// `LOXILB_COMPONENT_CACHE`, else systemd's `$CACHE_DIRECTORY` (the unit's `CacheDirectory=`; its first
/// entry), else `$XDG_CACHE_HOME/loxilb-octavia`, else `$HOME/.cache/loxilb-octavia`, else
/// `/var/cache/loxilb-octavia`.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("LOXILB_COMPONENT_CACHE")
        .or_else(|| var("CACHE_DIRECTORY").and_then(|d| d.to_str()?.split(':').next().map(PathBuf::from)))
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("loxilb-octavia")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/loxilb-octavia")))
        .unwrap_or_else(|| PathBuf::from("/var/cache/loxilb-octavia"))
}

pub fn compile(engine: &Engine, bytes: &[u8], digest: &str) -> Result<Component> {
    compile_in(&cache_dir(), engine, bytes, digest)
}

/// Why a file or directory with this owner and mode is not ours alone, if it is not.
fn untrusted(meta: &fs::Metadata) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Some(format!("owned by uid {}, not this host's uid {euid}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!("mode {:o} lets group or others write it", meta.mode() & 0o7777));
    }
    None
}

/// Creates the cache directory (mode 0700) if needed, and says whether it may be used.
pub fn trusted_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let meta = fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory (a symbolic link is not accepted)".into());
    }
    untrusted(&meta).map_or(Ok(()), Err)
}

/// The artifact's bytes if it exists and is ours alone (checked on the open file, so it cannot be swapped
/// between check and read); `Ok(None)` if there is none.
pub fn trusted_artifact(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it (a symbolic link is not accepted): {e}")),
    };
    let meta = File::metadata(&file).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if let Some(why) = untrusted(&meta) {
        return Err(why);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(Some(bytes))
}

/// `compile` with the cache in `dir`.
pub fn compile_in(dir: &Path, engine: &Engine, bytes: &[u8], digest: &str) -> Result<Component> {
    Ok(load_or_compile(dir, engine, bytes, digest)?.0)
}

/// The component, and whether it came from the cache.
fn load_or_compile(dir: &Path, engine: &Engine, bytes: &[u8], digest: &str) -> Result<(Component, bool)> {
    // The artifact is only valid for the same wasmtime version and engine settings.
    let hash = engine.precompile_compatibility_hash();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&hash, &mut hasher);
    let key = format!("{digest}-{:016x}.cwasm", std::hash::Hasher::finish(&hasher));
    let path = dir.join(key);
    let usable = match trusted_dir(dir) {
        Ok(()) => true,
        Err(why) => {
            tracing::error!("component cache {} is not used: {why}; compiling the policy instead (make it a directory of this user, mode 0700, or set LOXILB_COMPONENT_CACHE)", dir.display());
            false
        }
    };
    if usable {
        match trusted_artifact(&path) {
            Ok(Some(artifact)) => {
                // SAFETY: the artifact was written by `precompile_component` below for this very engine
                // configuration (its name carries the compatibility hash), and only this user can have
                // written it: the directory and the file were checked to be ours alone.
                match unsafe { Component::deserialize(engine, &artifact) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => tracing::warn!("ignoring unusable component cache {}: {e}", path.display()),
                }
            }
            Ok(None) => {}
            Err(why) => tracing::error!("refusing cached component {}: {why}; compiling the policy instead (remove the file)", path.display()),
        }
    }
    let component = Component::new(engine, bytes)?;
    if usable {
        if let Ok(artifact) = engine.precompile_component(bytes) {
            let _ = crate::storage::write_atomic(&path, &artifact);
        }
    }
    Ok((component, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest component: the preamble of an empty one.
    const EMPTY_COMPONENT: &[u8] = &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loxilb-cache-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn artifacts(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()).unwrap_or_default()
    }

    const NOBODY: u32 = 65534;

    #[test]
    fn the_cache_is_created_ours_alone_and_reused() {
        let dir = temp_dir("own").join("nested");
        let engine = crate::runtime::engine();
        assert!(!load_or_compile(&dir, engine, EMPTY_COMPONENT, "d1").unwrap().1);
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let written = artifacts(&dir);
        assert_eq!(written.len(), 1);
        assert_eq!(fs::metadata(&written[0]).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(trusted_artifact(&written[0]).unwrap().is_some());
        assert!(load_or_compile(&dir, engine, EMPTY_COMPONENT, "d1").unwrap().1, "the second load uses the cache");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn an_artifact_another_user_planted_or_could_rewrite_is_not_loaded() {
        let dir = temp_dir("planted");
        let engine = crate::runtime::engine();
        compile_in(&dir, engine, EMPTY_COMPONENT, "d2").unwrap();
        let artifact = artifacts(&dir).pop().unwrap();
        // Another owner (tests run as root, which may chown; another user could only have planted it).
        std::os::unix::fs::chown(&artifact, Some(NOBODY), Some(NOBODY)).unwrap();
        let err = trusted_artifact(&artifact).unwrap_err();
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
        assert!(!load_or_compile(&dir, engine, EMPTY_COMPONENT, "d2").unwrap().1, "compiled, not loaded");
        std::os::unix::fs::chown(&artifact, Some(unsafe { libc::geteuid() }), None).unwrap();
        // Ours, but writable by others.
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(trusted_artifact(&artifact).unwrap_err().contains("mode 666"));
        assert!(!load_or_compile(&dir, engine, EMPTY_COMPONENT, "d2").unwrap().1);
        // A link to a file elsewhere.
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link.cwasm");
        std::os::unix::fs::symlink(&artifact, &link).unwrap();
        assert!(trusted_artifact(&link).is_err());
        // A refused artifact is compiled around, not loaded, and left for the operator to see.
        fs::set_permissions(&artifact, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(fs::metadata(&artifact).unwrap().permissions().mode() & 0o777, 0o666);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_or_own_is_neither_read_nor_written() {
        let engine = crate::runtime::engine();
        for (mode, owner) in [(0o777, None), (0o700, Some(NOBODY))] {
            let dir = temp_dir("loose");
            fs::create_dir_all(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
            }
            assert!(trusted_dir(&dir).is_err());
            assert!(!load_or_compile(&dir, engine, EMPTY_COMPONENT, "d3").unwrap().1);
            assert!(artifacts(&dir).is_empty(), "nothing written into an untrusted cache");
            fs::remove_dir_all(dir).unwrap();
        }
    }
}
