//! Builds the components the tests load besides the default policy — the other shipped policies and the
//! test fixtures, the packages `cargo policies` names in .cargo/config.toml — so that `cargo test` needs
//! no step before it. The default policy comes from the host's build script (`LOXILB_BUILTIN_POLICY`).
//!
//! The nested cargo builds into `<target>/policies`, the directory `cargo policies` uses: a stable one,
//! so an unchanged tree is a no-op, and one of its own, because the outer cargo holds the lock of its
//! directory for the whole build (a nested build there would wait forever) and because these packages
//! build the guest library without its `component` feature (built beside `guest`, features would unify).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("tests/ is inside the workspace").to_path_buf();
    // What the components are built from, and no more: each re-run rebuilds this package and relinks every
    // test binary, so a README beside a policy must not trigger one. A new crate needs a line in the
    // `policies` alias, which is watched.
    let mut crates = vec![workspace.join("guest"), workspace.join("sdk")];
    for parent in ["policies", "tests/fixtures"] {
        let dir = workspace.join(parent);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        crates.extend(entries.flatten().map(|e| e.path()).filter(|p| p.join("Cargo.toml").exists()));
    }
    // A path that does not exist would make cargo re-run this script every time.
    for path in crates.iter().flat_map(|dir| ["src", "Cargo.toml", "build.rs", "wit"].map(|i| dir.join(i))).filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for input in ["wit", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let packages = policies_alias_packages(&workspace);
    require_wasm_target();
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target")).join("policies");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // From the workspace, so `.cargo/config.toml` (the component linker, SIMD) applies as to `cargo policies`.
    cargo.current_dir(&workspace).args(["build", "--target", TARGET, "--profile", "guest", "--target-dir"]).arg(&target);
    for p in &packages {
        cargo.args(["-p", p]);
    }
    // What the outer cargo set for this build must not leak into the wasm one (RUSTFLAGS are the host's;
    // under `cargo clippy` the wrapper would lint instead of only building). The jobserver stays shared,
    // which keeps the two builds within the machine's cores.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cargo.env_remove(var);
    }
    // Cargo's stdout is this script's, which cargo reads for directives; its progress (stderr) is shown
    // when the build fails.
    let status = cargo.stdout(Stdio::null()).status().unwrap_or_else(|e| panic!("running cargo to build the test policies: {e}"));
    if !status.success() {
        panic!("building the policies and fixtures ({}, {TARGET}) failed: its errors are above", packages.join(", "));
    }
    let dir = target.join(TARGET).join("guest");
    for p in &packages {
        let wasm = dir.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(wasm.exists(), "{} was not built", wasm.display());
    }
    println!("cargo:rustc-env=LOXILB_TEST_COMPONENTS={}", dir.display());
}

/// The `-p` packages of the `policies` alias: one list for `cargo policies` and for the tests.
fn policies_alias_packages(workspace: &Path) -> Vec<String> {
    let config = workspace.join(".cargo/config.toml");
    let text = std::fs::read_to_string(&config).unwrap_or_else(|e| panic!("reading {}: {e}", config.display()));
    let alias = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("policies").map(str::trim_start).and_then(|l| l.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{} has no `policies` alias naming the packages to build", config.display()));
    let words: Vec<&str> = alias.trim().trim_matches('"').split_whitespace().collect();
    let packages: Vec<String> = words.windows(2).filter(|w| w[0] == "-p").map(|w| w[1].to_string()).collect();
    assert!(!packages.is_empty(), "the `policies` alias in {} names no package (-p)", config.display());
    packages
}

/// Fails with the command to run when the toolchain lacks the wasm target (cargo's own error is a
/// missing `core` crate, which does not say what to do).
fn require_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    let Some(sysroot) = sysroot else { return };
    let lib = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib/rustlib").join(TARGET).join("lib");
    if !lib.is_dir() {
        panic!("the {TARGET} target is not installed for this toolchain ({} is missing): run `rustup target add {TARGET}` (or `make setup`)", lib.display());
    }
}
