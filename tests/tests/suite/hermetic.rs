//! The repository builds, demos and passes its tests from a plain clone: nothing it tracks may reach
//! outside the checkout (the reference material developers read beside it is not there in a user's clone),
//! and its tests leave nothing behind in the system's temporary directory.

use std::path::Path;
use std::process::Command;

/// Tracked files that hold code, build or CI text (prose and vendored data may cite where things came from).
fn is_code(path: &str) -> bool {
    let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or("");
    matches!(name, "Makefile" | "run" | "config.toml") || [".rs", ".py", ".toml", ".sh", ".cfg", ".ini"].iter().any(|ext| name.ends_with(ext))
}

#[test]
fn no_tracked_code_reads_outside_the_checkout() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let listed = Command::new("git").arg("-C").arg(&root).args(["ls-files", "-z"]).output();
    let Some(listed) = listed.ok().filter(|o| o.status.success()) else {
        eprintln!("not a git checkout: nothing to check");
        return;
    };
    // Spelled in two pieces so this file does not flag itself.
    let outside = ["../", "shared/"].concat();
    let beside = ["shared/", "reference"].concat();
    let mut offenders = Vec::new();
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        if !is_code(&path) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&path)) else { continue };
        for (n, line) in text.lines().enumerate() {
            if line.contains(&outside) || line.contains(&beside) {
                offenders.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "tracked code reaches outside the checkout:\n{}", offenders.join("\n"));
}

#[test]
fn a_tests_temporary_directory_is_removed_with_it() {
    let dir = integration_tests::TempDir::new("loxilb-tempdir-check");
    std::fs::write(dir.join("file"), b"x").unwrap();
    let path = dir.to_path_buf();
    assert!(path.join("file").exists());
    drop(dir);
    assert!(!path.exists(), "{} is left behind", path.display());
}
