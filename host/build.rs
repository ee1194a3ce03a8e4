//! Builds the default policy into the binary: the `guest` crate for wasm32-unknown-unknown, profile
//! `guest`, as `cargo guest` does, so an installed `loxilb-octavia` runs with no `policy_path` and no
//! file beside it (`runtime::BUILTIN_POLICY`).
//!
//! The nested cargo uses a target directory of its own (`<target>/embedded`): the outer cargo holds the
//! lock of its own directory for the whole build, and a nested build into it would wait for it forever.
//! A fresh clone needs only the wasm32 target (`make setup`); the first build of the host compiles the
//! guest's dependencies for it once.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("host/ is inside the workspace").to_path_buf();
    for input in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    require_wasm_target();
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target")).join("embedded");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // From the workspace, so `.cargo/config.toml` (the component linker, SIMD) applies as to `cargo guest`.
    cargo.current_dir(&workspace).args(["build", "-p", "guest", "--target", "wasm32-unknown-unknown", "--profile", "guest", "--target-dir"]).arg(&target);
    // What the outer cargo set for this host build must not leak into the wasm one (the jobserver may:
    // sharing it keeps the two builds within the machine's cores).
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
    let status = cargo.stdout(Stdio::null()).status().unwrap_or_else(|e| panic!("running cargo to build the built-in policy: {e}"));
    if !status.success() {
        panic!(
            "building the built-in policy (guest, wasm32-unknown-unknown) failed: its errors are above. \
             A fresh machine needs the target first: `rustup target add wasm32-unknown-unknown` (make setup)"
        );
    }
    let wasm = target.join("wasm32-unknown-unknown/guest/guest.wasm");
    assert!(wasm.exists(), "{} was not built", wasm.display());
    println!("cargo:rustc-env=LOXILB_BUILTIN_POLICY={}", wasm.display());
}

/// Fails with the command to run when the toolchain lacks the wasm target (cargo's own error is a
/// missing `core` crate, which does not say what to do). tests/build.rs has the same check.
fn require_wasm_target() {
    const TARGET: &str = "wasm32-unknown-unknown";
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    let Some(sysroot) = sysroot else { return };
    let lib = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib/rustlib").join(TARGET).join("lib");
    if !lib.is_dir() {
        panic!("the {TARGET} target is not installed for this toolchain ({} is missing): run `rustup target add {TARGET}` (or `make setup`)", lib.display());
    }
}
