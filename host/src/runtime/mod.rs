//! The policy sandbox: one wasmtime Engine, components checked for the WIT version this host speaks,
//! and instances bounded in memory and time.

pub mod bindings;
pub mod cache;
pub mod instance;
mod memory;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use wasmtime::component::{types::ComponentItem, Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::caps::HostState;
use bindings::{PolicyWorld, PolicyWorldPre};

/// The WIT package a policy must export, and the versions of it this host accepts: `0.2.x`
/// (semver-compatible with `0.2.0`, which this host was built against). 0.1 policies carried their own
/// storage and LoxiLB calls and are refused, naming both versions.
pub const WIT_PACKAGE: &str = "loxilb:octavia";
pub const WIT_VERSION: &str = "0.2.0";
/// How often the epoch advances; a call's deadline is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine. Epoch interruption bounds every call; the ticker thread starts with it.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // One memory per module: `guest_memory_limit_mb` caps each memory (see `caps::GuestLimits`).
        config.wasm_multi_memory(false);
        // Copy-on-write data images need wasmtime's own memories; the policy's data segments are small.
        config.with_host_memory(Arc::new(memory::HugePageMemories)).memory_init_cow(false);
        // `perf` names the policy's functions (from /tmp/perf-<pid>.map) when asked for.
        if std::env::var_os("LOXILB_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).expect("wasmtime engine");
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                ticker.increment_epoch();
            })
            .expect("epoch ticker");
        engine
    })
}

/// The version of `loxilb:octavia/policy` a component exports, or why it is not a policy at all.
pub fn exported_version(engine: &Engine, component: &Component) -> Result<String> {
    let ty = component.component_type();
    let mut names = Vec::new();
    for (name, item) in ty.exports(engine) {
        if let (Some(rest), ComponentItem::ComponentInstance(_)) = (name.strip_prefix(&format!("{WIT_PACKAGE}/policy@")), &item.ty) {
            return Ok(rest.to_string());
        }
        names.push(name.to_string());
    }
    bail!("not a LoxiLB policy: it exports no {WIT_PACKAGE}/policy interface (exports: {})", if names.is_empty() { "none".into() } else { names.join(", ") })
}

/// Whether a policy's WIT version is one this host speaks.
pub fn check_version(version: &str) -> Result<()> {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.split(['-', '+']).next()?.parse().ok()?))
    };
    let (want, got) = (parse(WIT_VERSION).expect("own version"), parse(version));
    let compatible = got.is_some_and(|(major, minor, _)| if want.0 == 0 { major == 0 && minor == want.1 } else { major == want.0 });
    if !compatible {
        bail!("policy speaks {WIT_PACKAGE}@{version}, but this host speaks {WIT_PACKAGE}@{WIT_VERSION} (accepts {}.{}.x)", want.0, want.1);
    }
    Ok(())
}

/// A compiled, version-checked policy, ready to instantiate any number of times.
pub struct LoadedPolicy {
    pub path: PathBuf,
    pub wit_version: String,
    pub pre: PolicyWorldPre<HostState>,
    /// SHA-256 of the component file (tells two builds apart in logs and previews).
    pub digest: String,
}

fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    PolicyWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// The default policy (`l4-fullnat`, the `guest` crate), built into this binary by `build.rs`.
pub static BUILTIN_POLICY: &[u8] = include_bytes!(env!("LOXILB_BUILTIN_POLICY"));

/// The file `BUILTIN_POLICY` was built as (in the build tree): tests and benches that need the default
/// policy as a file get the one matching the sources, with no `cargo guest` before them.
pub const BUILTIN_POLICY_FILE: &str = env!("LOXILB_BUILTIN_POLICY");

/// The name that stands for `BUILTIN_POLICY` wherever a policy path is taken (`policy_path`, `swap-policy`,
/// `check-policy`): no file is read for it.
pub const BUILTIN_POLICY_NAME: &str = "builtin:l4-fullnat";

/// Compiles a component (or loads its cached compilation) and checks that it is a policy this host can run.
pub fn load(path: &Path) -> Result<Arc<LoadedPolicy>> {
    let engine = engine();
    let bytes = if path == Path::new(BUILTIN_POLICY_NAME) {
        BUILTIN_POLICY.to_vec()
    } else {
        std::fs::read(path).with_context(|| format!("reading policy {}", path.display()))?
    };
    let digest: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes)).iter().map(|b| format!("{b:02x}")).collect();
    let component =
        crate::runtime::instance::compile_cached(engine, &bytes, &digest).map_err(|e| anyhow!("{} is not a loadable component: {e:#}", path.display()))?;
    let wit_version = exported_version(engine, &component)?;
    check_version(&wit_version)?;
    let instance_pre = linker(engine)?
        .instantiate_pre(&component)
        .map_err(|e| anyhow!("{} cannot run in this host (it imports something not granted): {e:#}", path.display()))?;
    let pre = PolicyWorldPre::new(instance_pre)?;
    Ok(Arc::new(LoadedPolicy { path: path.to_path_buf(), wit_version, pre, digest }))
}

/// The seed's name of a resource type (`loadbalancer`, `listener`, `pool`, `member`, `healthmonitor`).
pub fn resource_type_name(t: bindings::mapping::ResourceType) -> &'static str {
    use bindings::mapping::ResourceType as T;
    match t {
        T::Loadbalancer => "loadbalancer",
        T::Listener => "listener",
        T::Pool => "pool",
        T::Member => "member",
        T::Healthmonitor => "healthmonitor",
    }
}

/// The policy a host runs when `policy_path` is not set: `LOXILB_POLICY` if set (development), else the
/// built-in one.
pub fn configured_default_policy() -> PathBuf {
    std::env::var_os("LOXILB_POLICY").map_or_else(|| PathBuf::from(BUILTIN_POLICY_NAME), PathBuf::from)
}

/// The default policy's file, for tests and benches that need one: `LOXILB_POLICY`, then the file the
/// built-in policy was built as, then beside the binary.
pub fn default_policy_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LOXILB_POLICY") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(BUILTIN_POLICY_FILE);
    if built.exists() {
        return built;
    }
    std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("policies/guest.wasm"))).unwrap_or(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_within_0_2_are_accepted_and_others_named() {
        assert!(check_version("0.2.0").is_ok());
        assert!(check_version("0.2.7").is_ok());
        let err = check_version("0.1.0").unwrap_err().to_string();
        assert!(err.contains("0.2.0") && err.contains("0.1.0"), "{err}");
        assert!(check_version("1.0.0").is_err());
    }

    /// The built-in policy is rebuilt when what it is built from changes: the guest crate and every
    /// workspace crate it depends on by path (an SDK change once left the embedded policy stale).
    #[test]
    fn the_build_script_watches_every_crate_the_builtin_policy_is_built_from() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let (script, workspace, guest) = (read("host/build.rs"), read("Cargo.toml"), read("guest/Cargo.toml"));
        let dependencies = guest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
        let mut crates = vec!["guest".to_string()];
        for name in dependencies.lines().filter_map(|l| l.split(['.', ' ', '=']).next()).filter(|n| !n.is_empty()) {
            let declared = workspace.lines().find(|l| l.starts_with(&format!("{name} =")));
            if let Some(path) = declared.and_then(|l| l.split("path = \"").nth(1)).and_then(|p| p.split('"').next()) {
                crates.push(path.to_string());
            }
        }
        assert!(crates.contains(&"sdk".to_string()), "{crates:?}");
        for dir in crates {
            for input in [format!("\"{dir}/src\""), format!("\"{dir}/Cargo.toml\"")] {
                assert!(script.contains(&input), "host/build.rs does not watch {input}");
            }
        }
    }
}
