//! The comparison harness (`examples/compare.rs`) as a smoke test: `compare --quick --out DIR`
//! runs every mode briefly and must produce the whole report (markdown, chart, results) in
//! `DIR`, with a measured row for every mode, and leave `docs/` alone.
//!
//! The Redis modes need `redis-server`: where it is on `PATH` (or `COMPARE_REDIS_SERVER`
//! names it) they must be measured, and under `CI=true` it must be there; elsewhere they may
//! be listed as skipped, with the reason.
#![cfg(feature = "poem")]

mod common {
    pub mod example;
}

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::example::{FEATURES, TestResult, example_binary, find_program, manifest_features};
use serde_json::Value;

/// Every mode of the harness, by key: a mode dropped from the run is a failure.
const MODES: [&str; 23] = [
    "none",
    "none+cookie",
    "none+work",
    "sealed",
    "sealed-nocache",
    "signed",
    "jwt",
    "sealed+deny-memory",
    "sealed+deny-redis",
    "sealed+deny-cluster",
    "sealed+devices",
    "sealed+dbsc",
    "jwt+dpop",
    "store-memory",
    "store-redis",
    "store-postgres",
    "store-sqlite",
    "poem-cookie",
    "poem-redis",
    "axum-none",
    "axum-sealed",
    "axum-tower-sessions",
    "axum-cookie-store",
];
const REDIS_MODES: [&str; 5] = [
    "sealed+deny-redis",
    "sealed+deny-cluster",
    "sealed+devices",
    "store-redis",
    "poem-redis",
];
/// Modes that also need the crate's `redis` feature.
const REDIS_FEATURE_MODES: [&str; 4] = [
    "sealed+deny-redis",
    "sealed+deny-cluster",
    "sealed+devices",
    "store-redis",
];
/// The run is killed past this; a quick run takes about 15 s in a debug build on 2 cores.
const LIMIT: Duration = Duration::from_secs(240);

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TestResult<TempDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "sealed-session-compare-smoke-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// The committed report, to check that a run with `--out` does not touch it.
fn committed_docs() -> TestResult<(Vec<u8>, Vec<u8>)> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    Ok((
        std::fs::read(docs.join("COMPARISON.md"))?,
        std::fs::read(docs.join("comparison.svg"))?,
    ))
}

/// What a run of the harness left: its exit status and output.
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `compare ARGS --out DIR` (`prefix`, if given, runs it: `taskset -c 0` say), in `DIR`,
/// killed past [`LIMIT`].
fn run_compare_with(prefix: &[&str], bin: &Path, args: &[&str], out: &TempDir) -> TestResult<Run> {
    let started = Instant::now();
    let mut cmd = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(args)
        .arg("--out")
        .arg(&out.0)
        // Anything written relative to the working directory would land here, not in docs/.
        .current_dir(&out.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = read_all(child.stdout.take().ok_or("no stdout")?);
    let stderr = read_all(child.stderr.take().ok_or("no stderr")?);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("compare {args:?} still running after {LIMIT:?}; killed").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().map_err(|_| "stdout reader panicked")?;
    let stderr = stderr.join().map_err(|_| "stderr reader panicked")?;
    eprintln!(
        "compare {args:?} took {:.1?}\n--- its progress:\n{stderr}",
        started.elapsed()
    );
    Ok(Run {
        status,
        stdout,
        stderr,
    })
}

/// Runs `compare ARGS --out DIR`, which must succeed, and returns its `results.json`.
fn run_results(bin: &Path, args: &[&str], out: &TempDir) -> TestResult<Value> {
    let run = run_compare_with(&[], bin, args, out)?;
    assert!(
        run.status.success(),
        "compare {args:?} failed ({}):\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(
        out.0.join("results.json"),
    )?)?)
}

/// The harness is built with the test's own features; a feature the helper does not know
/// would be dropped, and the crate built twice (a second full debug build, which once filled
/// CI's disk).
#[test]
fn known_features_are_the_manifests() -> TestResult {
    let mut known: Vec<&str> = FEATURES.iter().map(|(name, _)| *name).collect();
    let mut manifest = manifest_features()?;
    known.sort_unstable();
    manifest.sort_unstable();
    assert_eq!(
        known, manifest,
        "tests/common/example.rs FEATURES against Cargo.toml"
    );
    Ok(())
}

#[test]
fn quick_run_measures_every_mode_and_writes_the_whole_report() -> TestResult {
    let bin = example_binary("compare")?;
    let out = TempDir::new()?;
    let docs_before = committed_docs()?;
    // As the harness looks for it: `COMPARE_REDIS_SERVER`, else `PATH`.
    let redis_available = match std::env::var_os("COMPARE_REDIS_SERVER") {
        Some(p) => Path::new(&p).is_file(),
        None => find_program("redis-server").is_some(),
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        redis_available || !ci,
        "CI=true but no redis-server on PATH: the Redis modes must be measured in CI"
    );

    // results.json: every mode, measured with traffic, or (Redis modes only) skipped.
    let results = run_results(&bin, &["--quick"], &out)?;
    let modes = results["modes"].as_array().ok_or("no `modes` array")?;
    let keys: Vec<&str> = modes.iter().filter_map(|m| m["mode"].as_str()).collect();
    assert_eq!(keys, MODES, "every mode, in order");
    let report = std::fs::read_to_string(out.0.join("COMPARISON.md"))?;
    let svg = std::fs::read_to_string(out.0.join("comparison.svg"))?;
    for m in modes {
        let key = m["mode"].as_str().unwrap_or_default();
        let label = m["label"].as_str().ok_or("no label")?;
        let status = m["status"].as_str().ok_or("no status")?;
        let reason = m["reason"].as_str().unwrap_or_default();
        let needs_redis = REDIS_MODES.contains(&key);
        let feature_missing = REDIS_FEATURE_MODES.contains(&key) && !cfg!(feature = "redis");
        match status {
            "measured" => {
                for route in ["read_rps", "write_rps"] {
                    let rps = m[route].as_f64().ok_or("no req/s")?;
                    assert!(rps > 0.0, "{key}: {route} = {rps}");
                }
                assert_eq!(m["errors"].as_u64(), Some(0), "{key}: {m}");
                assert!(
                    m["sessions_made"].as_u64().is_some_and(|n| n > 0),
                    "{key}: no sessions made for the memory column: {m}"
                );
                assert!(svg.contains(key), "{key}: not in the chart");
            }
            // The DPoP and DBSC rows need a JWT feature (their proofs).
            "skipped" if key == "sealed+dbsc" || key == "jwt+dpop" => {
                let jwt = cfg!(any(feature = "jwt", feature = "jwt-rust-crypto"));
                assert!(!jwt, "{key} skipped ({reason}) with a jwt feature on");
                assert!(reason.contains("jwt"), "{key}: {reason:?}");
                assert!(
                    report.contains(reason),
                    "{key}: the report must give the reason"
                );
            }
            // The SQL rows need their features, and PostgreSQL's `initdb` (which CI installs).
            "skipped" if key == "store-postgres" || key == "store-sqlite" => {
                let feature = match key {
                    "store-postgres" => cfg!(feature = "postgres"),
                    _ => cfg!(feature = "sqlite"),
                };
                assert!(
                    !feature || (key == "store-postgres" && !ci),
                    "{key} skipped ({reason}) though it can run here"
                );
                assert!(
                    report.contains(reason),
                    "{key}: the report must give the reason"
                );
            }
            "skipped" if key.starts_with("axum") => {
                let tower = cfg!(feature = "tower");
                assert!(!tower, "{key} skipped ({reason}) with tower on");
                assert!(
                    report.contains(reason),
                    "{key}: the report must give the reason"
                );
            }
            "skipped" => {
                assert!(
                    needs_redis && (!redis_available || feature_missing),
                    "{key} skipped ({reason}) though it can run here"
                );
                assert!(
                    reason.contains("redis"),
                    "{key}: the reason must say what is missing: {reason:?}"
                );
                assert!(
                    report.contains(reason),
                    "{key}: the report must give the reason"
                );
            }
            other => panic!("{key}: {other}: {reason}"),
        }
        // A row in both tables of the report.
        let row = format!("| {label} |");
        assert!(
            report.matches(&row).count() >= 2,
            "{key}: no row {row:?} in both tables of the report"
        );
    }

    // The report is the full section, between its markers, and the chart is an SVG.
    let begin = report
        .find("<!-- compare:begin -->")
        .ok_or("no begin marker")?;
    let end = report.find("<!-- compare:end -->").ok_or("no end marker")?;
    assert!(begin < end);
    for part in [
        "### Throughput and cost per request",
        "### State, revocation and a second instance",
        "### Targets (ratios within this run)",
        "### What the columns mean",
        "--quick",
    ] {
        assert!(report.contains(part), "the report lacks {part:?}");
    }
    assert!(svg.trim_start().starts_with("<svg"), "not an SVG");
    assert!(svg.trim_end().ends_with("</svg>"), "a truncated SVG");

    assert!(
        committed_docs()? == docs_before,
        "a run with --out must leave docs/ as it was"
    );
    Ok(())
}

/// The CPUs this test may run on, from `/proc/self/status` (Linux).
fn allowed_cpus() -> TestResult<Vec<u64>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or("no Cpus_allowed_list")?;
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        cpus.extend(a.parse::<u64>()?..=b.parse::<u64>()?);
    }
    Ok(cpus)
}

/// `--pin`: the load generator and the servers on CPUs of their own, which the harness
/// checks for every thread of every child (a thread left on the wrong CPUs fails the run);
/// and a clear refusal where there are not two CPUs to split.
#[test]
fn pinned_run_splits_the_cpus() -> TestResult {
    if !cfg!(target_os = "linux") {
        eprintln!("SKIPPED pinned_run_splits_the_cpus: --pin needs Linux");
        return Ok(());
    }
    let cpus = allowed_cpus()?;
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if cpus.len() < 2 {
        assert!(
            !ci,
            "CI=true but this test may run on one CPU only: --pin is untested"
        );
        eprintln!("SKIPPED pinned_run_splits_the_cpus: one CPU only ({cpus:?})");
        return Ok(());
    }
    let bin = example_binary("compare")?;
    let out = TempDir::new()?;
    let results = run_results(&bin, &["--quick", "--pin", "--modes", "none,sealed"], &out)?;
    let side = |name: &str| -> TestResult<Vec<u64>> {
        let list = results["pin"][name]
            .as_array()
            .ok_or("no pin in results.json")?;
        Ok(list.iter().filter_map(Value::as_u64).collect())
    };
    let (client, server) = (side("client")?, side("server")?);
    assert!(
        !client.is_empty() && !server.is_empty(),
        "{client:?} {server:?}"
    );
    assert!(
        client.iter().all(|c| !server.contains(c)),
        "the two sides share CPUs: {client:?} {server:?}"
    );
    let mut both = [client, server].concat();
    both.sort_unstable();
    assert_eq!(
        both, cpus,
        "the split covers exactly the CPUs the run may use"
    );
    for m in results["modes"].as_array().ok_or("no modes")? {
        assert_eq!(m["status"], "measured", "{m}");
        assert_eq!(m["errors"].as_u64(), Some(0), "{m}");
    }
    // Its own section and chart, so that it never overwrites the reference run's.
    let report = std::fs::read_to_string(out.0.join("COMPARISON.md"))?;
    assert!(
        report.contains("With `--pin`, the load generator ran on CPU"),
        "the report must say the run was pinned"
    );
    assert!(
        report.contains("<!-- compare-pinned:begin -->")
            && report.contains("<!-- compare-pinned:end -->")
            && !report.contains("<!-- compare:begin -->"),
        "a pinned run writes between its own markers"
    );
    let svg = std::fs::read_to_string(out.0.join("comparison-pinned.svg"))?;
    assert!(svg.trim_start().starts_with("<svg"), "not an SVG");
    assert!(
        report.contains("](comparison-pinned.svg)"),
        "the section shows its own chart"
    );
    assert!(
        !out.0.join("comparison.svg").exists(),
        "a pinned run leaves the reference chart alone"
    );

    // On one CPU there is nothing to split: refused, with the reason.
    match find_program("taskset") {
        Some(taskset) => {
            let one = cpus.first().map(u64::to_string).unwrap_or_default();
            let taskset = taskset.to_string_lossy().into_owned();
            let out = TempDir::new()?;
            let run = run_compare_with(&[&taskset, "-c", &one], &bin, &["--quick", "--pin"], &out)?;
            assert!(!run.status.success(), "--pin on one CPU must fail");
            assert!(
                run.stderr.contains("--pin needs at least 2 CPUs"),
                "the refusal must say why: {}",
                run.stderr
            );
        }
        None => {
            assert!(
                !ci,
                "CI=true but no taskset (util-linux) to test --pin on one CPU"
            );
            eprintln!("SKIPPED the one-CPU refusal of --pin: no taskset on PATH");
        }
    }
    Ok(())
}
