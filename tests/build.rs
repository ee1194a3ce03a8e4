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

include!("../host/nested_wasm_build.rs");

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
    for input in ["wit", "Cargo.toml", "Cargo.lock", ".cargo/config.toml", "host/nested_wasm_build.rs"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let packages = policies_alias_packages(&workspace);
    let target = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target")).join("policies");
    let dir = nested_wasm_build(&workspace, &target, &packages, "the policies and fixtures");
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
