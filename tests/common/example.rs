//! Builds and finds an example binary (`examples/NAME.rs`) for tests that run it as a
//! subprocess: `tests/common/demo.rs` (the login demo) and `tests/compare_smoke.rs` (the
//! comparison harness).
//!
//! The binary is found next to the test's own binary (`target/<profile>/examples/NAME`, for
//! any target dir). `cargo test` builds examples, and [`example_binary`] runs
//! `cargo build --example NAME` first anyway (a no-op when it is up to date) with the **same
//! features as the test crate** (`--no-default-features --features <those enabled here>`), so
//! `cargo test --all-features` tests an all-features example and does not rebuild it with
//! other features, and `cargo test --test NAME` works on its own too.
//!
//! Use from a test file with `mod common { pub mod example; }`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// `target/<profile>/examples/NAME`, from this test's path `target/<profile>/deps/TEST-HASH`.
pub fn example_path(name: &str) -> TestResult<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory from the test binary's path")?;
    Ok(profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}

/// Every package feature but `default`, with whether this test crate was compiled with it.
/// `known_features_are_the_manifests` (in `tests/compare_smoke.rs`) keeps it in step with
/// `Cargo.toml`: a feature missing here would make [`example_binary`] rebuild the crate and
/// the example a second time, with other features.
pub const FEATURES: [(&str, bool); 11] = [
    ("poem", cfg!(feature = "poem")),
    ("tower", cfg!(feature = "tower")),
    ("aws-lc", cfg!(feature = "aws-lc")),
    ("jwt", cfg!(feature = "jwt")),
    ("jwt-rust-crypto", cfg!(feature = "jwt-rust-crypto")),
    ("redis", cfg!(feature = "redis")),
    ("postgres", cfg!(feature = "postgres")),
    ("sqlite", cfg!(feature = "sqlite")),
    ("cli", cfg!(feature = "cli")),
    ("metrics", cfg!(feature = "metrics")),
    ("test-vectors", cfg!(feature = "test-vectors")),
];

/// The package features this test crate was compiled with, to build examples with the same.
pub fn enabled_features() -> Vec<&'static str> {
    FEATURES
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
}

/// The names in `Cargo.toml`'s `[features]` table, but `default`.
pub fn manifest_features() -> TestResult<Vec<String>> {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))?;
    let mut lines = manifest.lines().map(str::trim);
    if !lines.any(|line| line == "[features]") {
        return Err("Cargo.toml has no [features] table".into());
    }
    Ok(lines
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|name| !name.is_empty() && name != "default")
        .collect())
}

/// Builds example `name` (a no-op when up to date) into this test's target dir and profile,
/// with this test crate's features, and returns its path. Once per example and test process.
pub fn example_binary(name: &'static str) -> TestResult<PathBuf> {
    static BUILT: OnceLock<Mutex<HashMap<&'static str, Result<PathBuf, String>>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(name)
        .or_insert_with(|| build(name).map_err(|e| e.to_string()))
        .clone()
        .map_err(Into::into)
}

fn build(name: &str) -> TestResult<PathBuf> {
    let path = example_path(name)?;
    let profile_dir = path
        .parent()
        .and_then(Path::parent)
        .ok_or("bad example path")?;
    let target_dir = profile_dir.parent().ok_or("bad example path")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(p) => p.to_owned(),
        None => return Err("bad example path".into()),
    };
    let features = enabled_features().join(",");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--profile",
            &profile,
            "--no-default-features",
            "--features",
            &features,
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        // Building failed or cargo is missing: use the binary `cargo test` built, if any.
        Ok(_) | Err(_) if path.is_file() => {
            eprintln!(
                "warning: `cargo build --example {name} --features {features}` failed; \
                 testing the existing, possibly stale, {}",
                path.display()
            );
        }
        Ok(s) => return Err(format!("`cargo build --example {name}` failed: {s}").into()),
        Err(e) => return Err(format!("cannot run cargo to build the {name} example: {e}").into()),
    }
    if !path.is_file() {
        return Err(format!("{name} binary not found at {}", path.display()).into());
    }
    Ok(path)
}

/// The first `name` on `PATH` that is a file.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
