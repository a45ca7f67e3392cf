//! Interoperability with an independent DPoP client: the npm package `dpop` (RFC 9449, by
//! panva; pinned in tests/node/package-lock.json), run by Node.js against the demo with
//! `--mode jwt --dpop`. tests/node/dpop_interop.mjs logs in with a proof, reads twice with
//! `Authorization: DPoP`, and checks that a replayed proof, the bound token sent as a
//! `Bearer` token, and a proof for another method are each refused with a 401.
//!
//! Needs `node` and `npm ci --prefix tests/node` (`.ci/run` does both); without them the
//! test says what it skipped, and under `CI=true` fails.

#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]

mod common {
    pub mod demo;
    pub mod example;
}

use std::path::Path;
use std::process::Command;

use common::demo::{Demo, TestResult, for_each_demo};
use common::example::find_program;

/// `node`, and the script's directory with the package installed; `None` (after saying why)
/// when either is missing outside CI.
fn node() -> TestResult<Option<std::path::PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let missing = match find_program("node") {
        None => Some("`node` is not on PATH".to_owned()),
        Some(_) if !dir.join("node_modules/dpop/package.json").exists() => Some(format!(
            "the npm package `dpop` is not installed: run `npm ci --prefix {}`",
            dir.display()
        )),
        Some(node) => return Ok(Some(node)),
    };
    let why = missing.unwrap_or_default();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return Err(format!("CI=true: {why}").into());
    }
    eprintln!("SKIPPED: the DPoP interop test with the npm package `dpop`: {why}");
    Ok(None)
}

/// Runs the script against `demo` with `alg`; its one line of JSON says which steps held.
fn interop(demo: &Demo, node: &Path, alg: &str) -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/dpop_interop.mjs");
    let out = Command::new(node)
        .arg(script)
        .arg(demo.url(""))
        .arg(alg)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "the script printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    assert_eq!(report["ok"], true, "{alg}: {report:#}");
    assert!(out.status.success(), "{alg}: {report:#}");
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .ok_or("no steps")?
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        ["login", "me", "me_again", "replay", "bearer", "wrong_htm"],
        "{alg}"
    );
    // The replay was refused as a replay, not for another reason.
    let replay = &report["steps"][3]["www_authenticate"];
    assert!(
        replay.as_str().is_some_and(|w| w.contains("used before")),
        "{replay}"
    );
    Ok(())
}

/// The demo with `--dpop` accepts the package's ES256 and Ed25519 proofs and refuses
/// replays, bearer use of a bound token and proofs for another method.
fn npm_dpop_client_is_accepted_and_its_replays_refused(example: &'static str) -> TestResult {
    let Some(node) = node()? else {
        return Ok(());
    };
    let demo = Demo::start(example, &["--mode", "jwt", "--dpop"], &[])?;
    demo.wait_for_output("DPoP: on")?;
    interop(&demo, &node, "ES256")?;
    interop(&demo, &node, "EdDSA")?;
    Ok(())
}

for_each_demo! {
    fn npm_dpop_client_is_accepted_and_its_replays_refused;
}
