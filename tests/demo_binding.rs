//! The demo's theft resistance, end to end against the demo binaries: `--device-bound`
//! with the test-only DBSC browser of `tests/common/dbsc_browser.rs` (written from the W3C
//! draft apart from the server), and the flag checks. The npm `dpop` client against
//! `--dpop` is `tests/dpop_interop.rs`.
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]

mod common {
    pub mod dbsc_browser;
    pub mod demo;
    pub mod example;
}

use common::dbsc_browser::{Browser, BrowserClock, RefreshOutcome};
use common::demo::{COOKIE, Demo, TestResult, for_each_demo};

const SECRET: &str = "demo binding test secret, long enough to derive a key";

/// A DBSC browser signs in to the demo with `--device-bound`: it registers a key, the home
/// page says the session is device-bound, a refresh with a proof succeeds, and the session
/// cookie alone (copied without the bound cookie) is refused.
fn a_dbsc_browser_binds_its_demo_session(example: &'static str) -> TestResult {
    let demo = Demo::start(
        example,
        &["--mode", "sealed", "--device-bound"],
        &[("SESSION_SECRET", SECRET)],
    )?;
    demo.wait_for_output("device binding: on")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut b = Browser::new(&demo.url(""), BrowserClock::starting_now());
        let resp = b
            .post_form("/login", &[("username", "admin"), ("password", "letmein")])
            .await;
        assert_eq!(resp.status, 303, "{}", resp.body);
        assert_eq!(b.registrations(), 1, "{:?}", b.log());
        let home = b.get("/").await;
        assert!(
            home.body.contains("id=\"device-bound\">yes"),
            "{}",
            home.body
        );
        let id = b.sessions()[0].id.clone();
        assert_eq!(
            b.refresh_now(&id).await,
            RefreshOutcome::Refreshed,
            "{:?}",
            b.log()
        );
        // The session cookie alone, as a thief would replay it: the login form.
        let stolen = format!("{COOKIE}={}", b.cookie(COOKIE).ok_or("no session cookie")?);
        let resp = b
            .send_raw("GET", "/", vec![("Cookie".to_owned(), stolen)], "")
            .await;
        assert!(resp.body.contains("id=\"login\""), "{}", resp.body);
        Ok(())
    })
}

/// A browser without DBSC signs in to the same demo and stays signed in.
fn a_browser_without_dbsc_keeps_working(example: &'static str) -> TestResult {
    let demo = Demo::start(
        example,
        &["--mode", "store", "--device-bound"],
        &[("SESSION_SECRET", SECRET)],
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut b = Browser::new(&demo.url(""), BrowserClock::starting_now());
        b.supported_algorithms.clear();
        b.post_form("/login", &[("username", "admin"), ("password", "letmein")])
            .await;
        let home = b.get("/").await;
        assert!(
            home.body.contains("id=\"device-bound\">no"),
            "{}",
            home.body
        );
        assert!(home.body.contains("id=\"user\">admin"), "{}", home.body);
        Ok(())
    })
}

for_each_demo! {
    fn a_dbsc_browser_binds_its_demo_session;
    fn a_browser_without_dbsc_keeps_working;
}
