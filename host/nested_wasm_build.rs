// A cargo build of wasm components nested in the outer one, shared by host/build.rs (the built-in policy)
// and tests/build.rs (the other policies and the fixtures), which `include!` it.
//
// The nested cargo uses a target directory of its own: the outer cargo holds the lock of its own
// directory for the whole build, and a nested build into it would wait for it forever.

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// `cargo build --target wasm32-unknown-unknown --profile guest --target-dir <target_dir> -p <package>…`,
/// from the workspace so `.cargo/config.toml` (the component linker, SIMD) applies as to `cargo guest`.
/// Panics with what to do when it fails; returns the directory the components are in.
fn nested_wasm_build(workspace: &std::path::Path, target_dir: &std::path::Path, packages: &[String], what: &str) -> std::path::PathBuf {
    require_wasm_target();
    let mut cargo = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(workspace).args(["build", "--target", WASM_TARGET, "--profile", "guest", "--target-dir"]).arg(target_dir);
    for p in packages {
        cargo.args(["-p", p]);
    }
    // What the outer cargo set for the host build must not leak into the wasm one (RUSTFLAGS are the
    // host's; under `cargo clippy` the wrapper would lint instead of only building). The jobserver stays
    // shared, which keeps the two builds within the machine's cores.
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
    // Cargo's stdout is the build script's, which cargo reads for directives; its progress (stderr) is
    // shown when the build fails.
    let status = cargo.stdout(std::process::Stdio::null()).status().unwrap_or_else(|e| panic!("running cargo to build {what}: {e}"));
    if !status.success() {
        panic!("building {what} ({}, {WASM_TARGET}) failed: its errors are above", packages.join(", "));
    }
    let dir = target_dir.join(WASM_TARGET).join("guest");
    for p in packages {
        let wasm = dir.join(format!("{}.wasm", p.replace('-', "_")));
        assert!(wasm.exists(), "{} was not built", wasm.display());
    }
    dir
}

/// Fails with the command to run when the toolchain lacks the wasm target (cargo's own error is a
/// missing `core` crate, which does not say what to do).
fn require_wasm_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = std::process::Command::new(&rustc).args(["--print", "sysroot"]).output().ok().filter(|o| o.status.success());
    let Some(sysroot) = sysroot else { return };
    let lib = std::path::PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("lib/rustlib").join(WASM_TARGET).join("lib");
    if !lib.is_dir() {
        panic!(
            "the {WASM_TARGET} target is not installed for this toolchain ({} is missing): run `rustup target add {WASM_TARGET}` (or `make setup`)",
            lib.display()
        );
    }
}
