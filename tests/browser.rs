//! The login demo run as a subprocess and driven two ways, each scenario against both of its
//! examples, `examples/demo.rs` (Poem; tests `on_poem::*`) and `examples/axum_demo.rs` (axum
//! through the tower layer, feature `tower`; tests `on_axum::*`):
//!
//! - over plain HTTP (a few lines of HTTP/1.1 on a `TcpStream`), always;
//! - by a real headless Chromium through chromedriver (Debian's `chromium` and
//!   `chromium-driver`), when both are installed. Without them the browser test prints
//!   `SKIPPED: ...` and passes, except under `CI=true`, where it fails.
//!
//! The demo binaries are found next to this test's own binary
//! (`target/<profile>/examples/demo`, for any target dir) and built first with this test's
//! features (a no-op when they are up to date), so `cargo test --test browser` works on its
//! own too: see `tests/common/demo.rs`, shared with `tests/demo_modes.rs` (the jwt mode and
//! revocation).
#![cfg(any(feature = "poem", feature = "tower"))]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use sealed_session::SameSite;

mod common {
    pub mod demo;
    pub mod example;
}

use common::demo::{
    COOKIE, Demo, KillOnDrop, TestResult, demo_binary, for_each_demo, free_port, http,
};
use common::example::find_program;

const SECRET: &str = "browser test secret: not for production, 0123456789abcdef";

for_each_demo! {
    fn routes_over_http;
    fn weak_secret_is_refused_with_exit_code_2;
    fn login_flow_in_headless_chromium;
    fn devices_signed_out_from_a_second_chromium;
    fn device_bound_session_in_a_dbsc_chromium;
    fn the_session_page_in_each_mode_in_chromium;
}

/// The demo `example` in sealed mode (the default), on a free port.
fn start_demo(example: &'static str) -> TestResult<Demo> {
    Demo::start(
        example,
        &["--mode", "sealed"],
        &[("SESSION_SECRET", SECRET)],
    )
}

/// Flips one character in the middle of a cookie value, staying in the base64url alphabet.
fn tamper(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn routes_over_http(example: &'static str) -> TestResult {
    let demo = start_demo(example)?;

    // Anonymous: the login form, and no cookie (nothing stored yet).
    let r = http(&demo, "GET", "/", None, "")?;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("action=\"/login\""), "{}", r.body);
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    let r = http(&demo, "GET", "/secureplace", None, "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));

    // Wrong credentials: 401 with the form and an error, the username escaped, no cookie.
    let r = http(
        &demo,
        "POST",
        "/login",
        None,
        "username=%3Cb%3Eadmin&password=nope",
    )?;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong username or password"), "{}", r.body);
    assert!(r.body.contains("value=\"&lt;b&gt;admin\""), "{}", r.body);
    assert!(!r.body.contains("<b>admin"), "unescaped input: {}", r.body);
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    let r = http(
        &demo,
        "POST",
        "/login",
        None,
        "username=admin&password=letmei",
    )?;
    assert_eq!(r.status, 401);

    // Login: 303 to /secureplace with the session cookie and its secure attributes.
    let r = http(
        &demo,
        "POST",
        "/login",
        None,
        "username=admin&password=letmein",
    )?;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/secureplace"))
    );
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set[0].contains(attr), "{attr} missing in {}", set[0]);
    }
    let cookie = r.session_cookie().ok_or("no session cookie")?;

    let r = http(&demo, "GET", "/secureplace", Some(&cookie), "")?;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<strong id=\"user\">admin</strong>"),
        "{}",
        r.body
    );

    // The visit counter of / and the view counter of /views, carried in the cookie.
    let mut cookie = cookie;
    for n in 1..=3 {
        let r = http(&demo, "GET", "/", Some(&cookie), "")?;
        assert_eq!(r.status, 200);
        assert!(
            r.body.contains(&format!("<span id=\"visits\">{n}</span>")),
            "visit {n}: {}",
            r.body
        );
        cookie = r
            .session_cookie()
            .ok_or("the counter changed but no new cookie")?;
    }
    for n in 1..=2 {
        let r = http(&demo, "GET", "/views", Some(&cookie), "")?;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").is_some_and(|t| t.contains("json")));
        let v: serde_json::Value = serde_json::from_str(&r.body)?;
        assert_eq!(v, serde_json::json!({ "views": n }));
        cookie = r.session_cookie().ok_or("no new cookie")?;
    }
    // /views counts per session: a new visitor starts at 1.
    let r = http(&demo, "GET", "/views", None, "")?;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.body)?,
        serde_json::json!({ "views": 1 })
    );

    // A tampered cookie: treated as no session, and cleared.
    let (name, value) = cookie.split_once('=').ok_or("bad cookie")?;
    let bad = format!("{name}={}", tamper(value));
    let r = http(&demo, "GET", "/secureplace", Some(&bad), "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let cleared = r.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{COOKIE}=")) && c.contains("Max-Age=0")),
        "the bad cookie is not cleared: {cleared:?}"
    );

    // Logout: 303 to / and the cookie cleared.
    let r = http(&demo, "POST", "/logout", Some(&cookie), "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let cleared = r.set_cookies();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with(&format!("{COOKIE}=")) && c.contains("Max-Age=0")),
        "logout does not clear the cookie: {cleared:?}"
    );
    Ok(())
}

fn weak_secret_is_refused_with_exit_code_2(example: &'static str) -> TestResult {
    for (var, value) in [
        ("SESSION_SECRET", "too short"),
        ("SESSION_KEYS", "k1:notbase64!"),
    ] {
        let out = Command::new(demo_binary(example)?)
            .args(["--addr", "127.0.0.1:0"])
            .env_remove("SESSION_SECRET")
            .env_remove("SESSION_KEYS")
            .env(var, value)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(
            stderr.contains(var),
            "the error does not name {var}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = Command::new(demo_binary(example)?)
        .args(["--mode", "nosuch"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------

/// A fresh Chromium profile directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TestResult<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "sealed-session-chromium-{}-{nanos}",
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

/// chromedriver on a free port, killed when dropped.
struct Driver {
    _child: KillOnDrop,
    port: u16,
}

impl Driver {
    fn start(chromedriver: &Path) -> TestResult<Driver> {
        let port = free_port()?;
        let child = KillOnDrop(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(
                    format!("chromedriver did not listen on port {port} within 20 s").into(),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Driver {
            _child: child,
            port,
        })
    }
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> TestResult<Client> {
    connect_with(driver, chromium, profile, &[]).await
}

/// [`connect`] with more command-line arguments for Chromium.
async fn connect_with(
    driver: &Driver,
    chromium: &Path,
    profile: &Path,
    extra: &[&str],
) -> TestResult<Client> {
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .map(str::to_owned)
    .into();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    let serde_json::Value::Object(caps) = caps else {
        return Err("capabilities are not an object".into());
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await?;
    Ok(client)
}

/// Waits until the browser is on `path` (after a redirect or a form submission).
async fn wait_for_path(c: &Client, path: &str) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await?;
        if url.path() == path
            && c.execute("return document.readyState", vec![]).await? == "complete"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("expected to be on {path}, still on {url}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HTTP status of the page the browser shows (Navigation Timing's `responseStatus`).
async fn page_status(c: &Client) -> TestResult<u64> {
    let v = c
        .execute(
            "return performance.getEntriesByType('navigation')[0].responseStatus",
            vec![],
        )
        .await?;
    v.as_u64()
        .ok_or_else(|| format!("no navigation status: {v}").into())
}

async fn text(c: &Client, id: &str) -> TestResult<String> {
    Ok(c.find(Locator::Id(id)).await?.text().await?)
}

async fn session_cookie(c: &Client) -> TestResult<Option<Cookie<'static>>> {
    Ok(c.get_all_cookies()
        .await?
        .into_iter()
        .find(|k| k.name() == COOKIE))
}

async fn log_in(c: &Client, demo: &Demo, username: &str, password: &str) -> TestResult {
    c.goto(&demo.url("/")).await?;
    c.find(Locator::Id("username"))
        .await?
        .send_keys(username)
        .await?;
    c.find(Locator::Id("password"))
        .await?
        .send_keys(password)
        .await?;
    c.find(Locator::Id("login-submit")).await?.click().await?;
    Ok(())
}

async fn assert_logged_out(c: &Client, demo: &Demo) -> TestResult {
    c.goto(&demo.url("/secureplace")).await?;
    wait_for_path(c, "/").await?;
    c.find(Locator::Id("login")).await?;
    assert!(
        c.find_all(Locator::Id("user")).await?.is_empty(),
        "still shown as logged in"
    );
    Ok(())
}

async fn browser_scenario(c: &Client, demo: &Demo) -> TestResult {
    // Anonymous visit: the login form, no cookie.
    c.goto(&demo.url("/")).await?;
    c.find(Locator::Id("login")).await?;
    assert!(session_cookie(c).await?.is_none());

    // Wrong credentials: 401, the form again with an error, still no session.
    log_in(c, demo, "admin", "wrong").await?;
    wait_for_path(c, "/login").await?;
    assert_eq!(page_status(c).await?, 401);
    assert!(
        text(c, "error")
            .await?
            .contains("Wrong username or password")
    );
    c.find(Locator::Id("login")).await?;
    assert!(session_cookie(c).await?.is_none());

    // Login through the form lands on /secureplace.
    log_in(c, demo, "admin", "letmein").await?;
    wait_for_path(c, "/secureplace").await?;
    assert_eq!(page_status(c).await?, 200);
    assert_eq!(text(c, "user").await?, "admin");

    // The browser holds the session cookie (Secure + __Host- on http://127.0.0.1 works in
    // Chromium), and JavaScript cannot see it. A non-HttpOnly probe cookie shows that
    // `document.cookie` does work here, so the check is not vacuous.
    let cookie = session_cookie(c)
        .await?
        .ok_or("no session cookie after login")?;
    // fantoccini sends `"domain": null` when none is set, which chromedriver refuses; for an
    // IP address host Chromium stores a cookie whose domain is exactly the host as host-only,
    // which the `__Host-` prefix requires (checked below: the cookie is accepted and sent).
    let host = demo.addr.ip().to_string();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    let mut probe = Cookie::new("probe", "visible");
    probe.set_path("/");
    probe.set_domain(host.clone());
    // Unset, fantoccini sends SameSite=None, which Chromium refuses without Secure.
    probe.set_same_site(SameSite::Lax);
    c.add_cookie(probe)
        .await
        .map_err(|e| format!("adding the probe cookie: {e}"))?;
    let js = c.execute("return document.cookie", vec![]).await?;
    let js = js.as_str().ok_or("document.cookie is not a string")?;
    assert!(js.contains("probe=visible"), "document.cookie = {js:?}");
    assert!(
        !js.contains("sid"),
        "the session cookie is visible to JavaScript: {js:?}"
    );
    c.delete_cookie("probe").await?;

    // The visit counter rises on each load of /.
    c.goto(&demo.url("/")).await?;
    assert_eq!(text(c, "visits").await?, "1");
    for n in 2..=3 {
        c.refresh().await?;
        assert_eq!(text(c, "visits").await?, n.to_string());
    }
    assert_eq!(text(c, "user").await?, "admin");
    home_page_looks_like_an_application(c, demo).await?;

    // /views counts per session.
    for n in 1..=2 {
        c.goto(&demo.url("/views")).await?;
        let body = c.execute("return document.body.innerText", vec![]).await?;
        let v: serde_json::Value = serde_json::from_str(body.as_str().ok_or("no body text")?)?;
        assert_eq!(v, serde_json::json!({ "views": n }));
    }

    // Replace the session cookie with a tampered one: logged out, and the bad cookie cleared.
    let cookie = session_cookie(c).await?.ok_or("session cookie gone")?;
    let forged = tamper(cookie.value());
    c.delete_cookie(COOKIE).await?;
    let mut bad = Cookie::new(COOKIE, forged.clone());
    bad.set_path("/");
    bad.set_domain(host.clone());
    bad.set_secure(true);
    bad.set_http_only(true);
    bad.set_same_site(SameSite::Lax);
    c.add_cookie(bad)
        .await
        .map_err(|e| format!("adding the tampered cookie: {e}"))?;
    let now = session_cookie(c)
        .await?
        .ok_or("the tampered cookie was not stored")?;
    assert_eq!(now.value(), forged, "the cookie was not replaced");
    assert_logged_out(c, demo).await?;
    assert!(
        session_cookie(c).await?.is_none(),
        "the server did not clear the tampered cookie"
    );

    // Log in again: a fresh session (the counter starts over), then log out.
    log_in(c, demo, "admin", "letmein").await?;
    wait_for_path(c, "/secureplace").await?;
    assert_eq!(text(c, "user").await?, "admin");
    c.goto(&demo.url("/")).await?;
    assert_eq!(text(c, "visits").await?, "1");
    c.find(Locator::Id("logout-submit")).await?.click().await?;
    // The page with the logout button is already on `/`, so the path alone does not show
    // that the answer to the logout has loaded; its login form does (the page before has
    // none).
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("login"))
        .await
        .map_err(|e| format!("no login form after logging out: {e}"))?;
    wait_for_path(c, "/").await?;
    assert!(session_cookie(c).await?.is_none(), "logout left the cookie");
    assert_logged_out(c, demo).await?;
    Ok(())
}

/// "Your devices" with two browsers (two Chromiums, each its own profile and cookies): both
/// sign in; the second lists two devices and signs the first out; the first lands on the
/// login form on its next request; the second signs itself out from the same page.
fn devices_signed_out_from_a_second_chromium(example: &'static str) -> TestResult {
    let Some((chromium, chromedriver)) = browser_programs()? else {
        return Ok(());
    };
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let demo = start_demo(example)?;
    let driver = Driver::start(&chromedriver)?;
    let (profile_a, profile_b) = (TempDir::new()?, TempDir::new()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let a = connect(&driver, &chromium, &profile_a.0).await?;
        let b = match connect(&driver, &chromium, &profile_b.0).await {
            Ok(b) => b,
            Err(e) => {
                let _ = a.close().await;
                return Err(e);
            }
        };
        let result = devices_scenario(&a, &b, &demo).await;
        let _ = a.close().await;
        let _ = b.close().await;
        result
    })
}

async fn devices_scenario(a: &Client, b: &Client, demo: &Demo) -> TestResult {
    for c in [a, b] {
        log_in(c, demo, "admin", "letmein").await?;
        wait_for_path(c, "/secureplace").await?;
        assert_eq!(text(c, "user").await?, "admin");
    }
    b.goto(&demo.url("/devices")).await?;
    let rows = b.find_all(Locator::Css("tr.device")).await?;
    assert_eq!(rows.len(), 2, "two devices listed");
    assert_eq!(
        b.find_all(Locator::Css("em.current")).await?.len(),
        1,
        "one marked as this device"
    );
    b.find(Locator::Css("button.end[data-current='false']"))
        .await?
        .click()
        .await?;
    wait_for_path(b, "/devices").await?;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("devices"))
        .await?;
    assert_eq!(
        b.find_all(Locator::Css("tr.device")).await?.len(),
        1,
        "the other device is gone from the list"
    );

    // The first browser, signed out from the second, lands on the login form.
    assert_logged_out(a, demo).await?;
    // The second is still signed in, and can sign itself out from the list.
    b.goto(&demo.url("/secureplace")).await?;
    assert_eq!(text(b, "user").await?, "admin");
    b.goto(&demo.url("/devices")).await?;
    b.find(Locator::Css("button.end[data-current='true']"))
        .await?
        .click()
        .await?;
    b.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("login"))
        .await
        .map_err(|e| format!("no login form after signing this device out: {e}"))?;
    assert_logged_out(b, demo).await?;
    Ok(())
}

/// Chromium and chromedriver from `PATH`; `None` after saying why the test skips (an error
/// under `CI=true`).
fn browser_programs() -> TestResult<Option<(PathBuf, PathBuf)>> {
    match (find_program("chromium"), find_program("chromedriver")) {
        (Some(chromium), Some(driver)) => Ok(Some((chromium, driver))),
        _ => {
            let msg = "chromium/chromedriver not found in PATH (Debian: apt-get install chromium chromium-driver)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                return Err(format!("{msg}; required under CI=true").into());
            }
            eprintln!("SKIPPED: {msg}");
            println!("SKIPPED: {msg}");
            Ok(None)
        }
    }
}

/// One browser at a time: the Poem and axum runs of the scenario would otherwise start two
/// Chromiums at once, which on a small machine makes the waits above flaky.
static BROWSER: Mutex<()> = Mutex::new(());

fn login_flow_in_headless_chromium(example: &'static str) -> TestResult {
    let Some((chromium, chromedriver)) = browser_programs()? else {
        return Ok(());
    };
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let demo = start_demo(example)?;
    let driver = Driver::start(&chromedriver)?;
    let profile = TempDir::new()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = connect(&driver, &chromium, &profile.0).await?;
        let result = browser_scenario(&client, &demo).await;
        // Close the browser whatever happened; chromedriver and the demo die on drop.
        let _ = client.close().await;
        result
    })
}

/// The flags that turn on Device Bound Session Credentials with software keys in a
/// Chromium build that has them.
const DBSC_FLAGS: [&str; 1] = [
    "--enable-features=DeviceBoundSessions:RequireOriginTrialTokens/false,EnableBoundSessionCredentialsSoftwareKeysForManualTesting",
];

/// The demo with `--device-bound` in a real DBSC browser: `DBSC_BROWSER` names a Chromium
/// build that supports Device Bound Session Credentials on this machine (with
/// `DBSC_CHROMEDRIVER`, or the chromedriver on PATH, of the same version). The browser
/// signs in, registers a key (the home page then says the session is device-bound), and
/// after its bound cookie is deleted it refreshes with a proof before the next page, which
/// is still signed in. Skipped, saying why, without `DBSC_BROWSER`: Debian's Chromium 156 on
/// Linux ignores the registration header even with the flags above, and headless-shell
/// builds have no DBSC, so no browser on CI can run it.
fn device_bound_session_in_a_dbsc_chromium(example: &'static str) -> TestResult {
    let Some(chromium) = std::env::var_os("DBSC_BROWSER").map(PathBuf::from) else {
        let msg = "the real-browser DBSC test: DBSC_BROWSER does not name a Chromium build \
                   with Device Bound Session Credentials (Debian's Chromium 156 on Linux \
                   ignores the registration header; headless-shell builds have no DBSC); \
                   tests/dbsc.rs runs the protocol with a browser written from the draft";
        eprintln!("SKIPPED: {msg}");
        println!("SKIPPED: {msg}");
        return Ok(());
    };
    let chromedriver = match std::env::var_os("DBSC_CHROMEDRIVER") {
        Some(p) => PathBuf::from(p),
        None => find_program("chromedriver").ok_or("DBSC_BROWSER set, but no chromedriver")?,
    };
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let demo = Demo::start(
        example,
        &["--mode", "sealed", "--device-bound"],
        &[("SESSION_SECRET", SECRET)],
    )?;
    let driver = Driver::start(&chromedriver)?;
    let profile = TempDir::new()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let c = connect_with(&driver, &chromium, &profile.0, &DBSC_FLAGS).await?;
        let result = dbsc_scenario(&c, &demo).await;
        let _ = c.close().await;
        result
    })
}

async fn dbsc_scenario(c: &Client, demo: &Demo) -> TestResult {
    log_in(c, demo, "admin", "letmein").await?;
    wait_for_path(c, "/secureplace").await?;
    // Registration runs in the background of the browser: wait until the session is bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.goto(&demo.url("/")).await?;
        if text(c, "device-bound").await?.starts_with("yes") {
            break;
        }
        if Instant::now() > deadline {
            return Err("the browser did not register a DBSC key within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Without its bound cookie, the browser must refresh (with a proof) before the request.
    c.delete_cookie(&format!("{COOKIE}_bound")).await?;
    c.goto(&demo.url("/")).await?;
    assert_eq!(text(c, "user").await?, "admin");
    assert!(text(c, "device-bound").await?.starts_with("yes"));
    Ok(())
}

/// The `/session` page, in Chromium, in each mode: in the cookie modes after a sign-in it
/// lists the session cookie and shows the user in what the server reads (and, in store
/// mode, the store's record); in jwt mode it says where the session is.
fn the_session_page_in_each_mode_in_chromium(example: &'static str) -> TestResult {
    let Some((chromium, chromedriver)) = browser_programs()? else {
        return Ok(());
    };
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let driver = Driver::start(&chromedriver)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let jwt = cfg!(any(feature = "jwt", feature = "jwt-rust-crypto"));
    let modes: &[&str] = if jwt {
        &["sealed", "store", "jwt"]
    } else {
        &["sealed", "store"]
    };
    for &mode in modes {
        let demo = Demo::start(example, &["--mode", mode], &[("SESSION_SECRET", SECRET)])?;
        let profile = TempDir::new()?;
        runtime.block_on(async {
            let c = connect(&driver, &chromium, &profile.0).await?;
            let result = session_page_scenario(&c, &demo, mode).await;
            let _ = c.close().await;
            result
        })?;
    }
    Ok(())
}

async fn session_page_scenario(c: &Client, demo: &Demo, mode: &str) -> TestResult {
    if mode != "jwt" {
        log_in(c, demo, "admin", "letmein").await?;
        wait_for_path(c, "/secureplace").await?;
    }
    c.goto(&demo.url("/session")).await?;
    assert_eq!(text(c, "mode").await?, mode);
    if mode == "jwt" {
        assert!(text(c, "inspect").await?.contains("/api/session"));
        return Ok(());
    }
    let cookies = c.find_all(Locator::Css("#cookies tr.cookie")).await?;
    assert!(!cookies.is_empty(), "{mode}: no cookie listed");
    let data = text(c, "session-data").await?;
    assert!(data.contains("\"user\": \"admin\""), "{mode}: {data}");
    assert!(text(c, "inspect").await?.contains("sealed-session inspect"));
    let record = c.find_all(Locator::Id("store-record")).await?;
    assert_eq!(record.len(), usize::from(mode == "store"), "{mode}");
    Ok(())
}

/// The signed-in home page (the browser is on it) as a user sees it: the bar with the links to every page, the
/// user's name, the visit counter and the session's expiry, styled (the bar is dark), and
/// a screenshot of it (kept under the test's temporary directory) that shows a page, not a
/// blank or an unstyled one.
async fn home_page_looks_like_an_application(c: &Client, demo: &Demo) -> TestResult {
    let links = c.find_all(Locator::Css("#nav a")).await?;
    let mut hrefs = Vec::new();
    for a in &links {
        hrefs.push(a.attr("href").await?.unwrap_or_default());
    }
    assert_eq!(hrefs, ["/", "/secureplace", "/devices", "/session"]);
    assert_eq!(text(c, "user").await?, "admin");
    assert!(text(c, "visits").await?.parse::<u64>().is_ok());
    assert!(text(c, "expires").await?.starts_with("in 23 h"));
    let bar = c
        .execute(
            "return getComputedStyle(document.querySelector('header')).backgroundColor",
            vec![],
        )
        .await?;
    assert_eq!(
        bar.as_str(),
        Some("rgb(29, 39, 51)"),
        "the stylesheet applies"
    );
    let png = c.screenshot().await?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let dim = |at: usize| {
        png.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (w, h) = (dim(16).unwrap_or(0), dim(20).unwrap_or(0));
    assert!(w >= 400 && h >= 300, "{w}x{h}");
    // A blank page compresses to a few hundred bytes; text, a bar and a form do not.
    assert!(png.len() > 8_000, "{} bytes", png.len());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("demo-home-{}.png", demo.addr.port()));
    std::fs::write(&path, &png)?;
    Ok(())
}
