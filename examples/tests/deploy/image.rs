//! The image: built with `--locked`, by a Rust that builds every package
//! of the lock file, from a context without build output or `.git`.

use super::*;

fn dockerfile() -> String {
    std::fs::read_to_string(format!("{DEPLOY}/Dockerfile")).unwrap()
}

/// `1.88` as `(1, 88)`.
fn version(text: &str) -> (u64, u64) {
    let mut parts = text.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap_or(0))
}

#[test]
fn the_image_builds_the_locked_versions() {
    let dockerfile = dockerfile();
    let build = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build");
    assert!(build.contains("--locked"), "{build}");
}

#[test]
fn the_images_rust_builds_every_package_of_the_lock_file() {
    let dockerfile = dockerfile();
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("a rust build stage");
    let rust = version(image.split('-').next().unwrap());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", "x86_64-unknown-linux-gnu"])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (needed, package) = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].as_str()?)))
        .max()
        .unwrap();
    assert!(
        rust >= needed,
        "rust:{image} is older than {package}'s rust-version {needed:?}"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_and_git() {
    let ignore =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.dockerignore")).unwrap();
    let lines: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target/", ".git/"] {
        assert!(lines.contains(&needed), "{needed}");
    }
    // The library's docs include README.md and docs/: they stay.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("docs") || l.starts_with("README"))
    );
}
