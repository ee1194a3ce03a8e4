//! Builds the default policy into the binary: the `guest` crate for wasm32-unknown-unknown, profile
//! `guest`, as `cargo guest` does, so an installed `loxilb-octavia` runs with no `policy_path` and no
//! file beside it (`runtime::BUILTIN_POLICY`). It builds into `<target>/embedded` (see
//! nested_wasm_build.rs for why a directory of its own). A fresh clone needs only the wasm32 target
//! (`make setup`); the first build of the host compiles the guest's dependencies for it once.

use std::env;
use std::path::PathBuf;

include!("nested_wasm_build.rs");

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("host/ is inside the workspace").to_path_buf();
    // The guest and every crate of the workspace it is built from (a test checks this list against
    // guest/Cargo.toml).
    for input in
        ["guest/src", "guest/Cargo.toml", "sdk/src", "sdk/Cargo.toml", "wit", "Cargo.toml", "Cargo.lock", ".cargo/config.toml", "host/nested_wasm_build.rs"]
    {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target")).join("embedded");
    let dir = nested_wasm_build(&workspace, &target, &["guest".to_string()], "the built-in policy");
    println!("cargo:rustc-env=LOXILB_BUILTIN_POLICY={}", dir.join("guest.wasm").display());
}
