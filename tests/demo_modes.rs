//! The login demo's modes and revocation, over plain HTTP against the demo binary run as a
//! subprocess (built with this test's features, see `tests/common/demo.rs`):
//!
//! - `--mode jwt`: login, counting, logout, the revoked token refused with a 401 and an RFC
//!   6750 challenge, the JWK Set, wrong credentials; a key shared through `JWT_KEY_FILE`;
//! - `--mode sealed`: a cookie replayed after logout is refused (the in-memory denylist);
//! - `--redis URL` (feature `redis`, a real `redis-server`): two demo processes share
//!   sessions and revocations; without the feature `--redis` is refused with exit code 2.
//!
//! Every scenario runs against both examples of the demo: `examples/demo.rs` (Poem; tests
//! `on_poem::*`) and `examples/axum_demo.rs` (axum through the tower layer, feature `tower`;
//! tests `on_axum::*`), through `for_each_demo!` (`tests/common/demo.rs`). With both
//! features, two more run them side by side: the same start-up output and usage, and a
//! session made on one is a session on the other.
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod demo;
    pub mod example;
    #[cfg(feature = "redis")]
    pub mod redis;
}

use std::process::Command;
#[cfg(feature = "redis")]
use std::time::{Duration, Instant};

use common::demo::{Demo, TestResult, demo_binary, for_each_demo, http};

const SECRET: &str = "demo modes test secret: not for production, 0123456789abcdef";

for_each_demo! {
    fn the_session_page_shows_the_cookie_and_what_the_server_reads;
    fn sealed_cookie_replayed_after_logout_is_refused;
    fn store_mode_serves_the_same_login_flow_from_a_store;
    #[cfg(feature = "redis")]
    fn store_mode_demos_share_sessions_through_a_redis_store;
    #[cfg(not(feature = "redis"))]
    fn redis_without_the_feature_is_refused_with_exit_code_2;
    #[cfg(feature = "redis")]
    fn unreachable_redis_is_refused_with_exit_code_2;
    #[cfg(feature = "redis")]
    fn two_demos_share_sessions_and_revocations_through_redis;
}

// ---------------------------------------------------------------------------------------
// jwt mode
// ---------------------------------------------------------------------------------------

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt {
    use super::*;
    use common::demo::{Reply, request};

    const JSON: &str = "application/json";

    for_each_demo! {
        fn jwt_session_api_shows_the_token_header_and_what_the_server_reads;
        fn jwt_login_count_logout_and_revoked_token;
        fn jwks_serves_the_kid_of_an_asymmetric_key;
        fn hs256_publishes_no_jwks;
        fn a_shared_key_file_shares_sessions;
        fn jwt_start_up_refusals_exit_with_code_2;
        #[cfg(feature = "redis")]
        fn jwt_demos_share_revocations_through_redis;
    }

    /// `GET /session` explains where a JWT session is; `GET /api/session` shows the
    /// token's header as sent and what the server reads from it.
    fn jwt_session_api_shows_the_token_header_and_what_the_server_reads(
        example: &'static str,
    ) -> TestResult {
        let demo = Demo::start(example, &["--mode", "jwt"], &[])?;
        let page = request(demo.addr, "GET", "/session", &[], None)?;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("id=\"mode\">jwt"), "{}", page.body);
        let token = login(&demo, "admin", "letmein")?.json()?["token"]
            .as_str()
            .ok_or("no token")?
            .to_owned();
        let v = bearer(&demo, "GET", "/api/session", &token)?.json()?;
        assert_eq!(v["client_holds"]["header"]["alg"], "EdDSA", "{v}");
        assert_eq!(v["client_holds"]["token_bytes"], token.len(), "{v}");
        assert_eq!(v["server_reads"]["subject"], "admin", "{v}");
        assert_eq!(v["server_reads"]["data"]["user"], "admin", "{v}");
        assert_eq!(v["server_reads"]["new"], false, "{v}");
        Ok(())
    }

    fn login(demo: &Demo, username: &str, password: &str) -> TestResult<Reply> {
        let body = serde_json::json!({ "username": username, "password": password }).to_string();
        request(demo.addr, "POST", "/api/login", &[], Some((JSON, &body)))
    }

    fn bearer(demo: &Demo, method: &str, path: &str, token: &str) -> TestResult<Reply> {
        let auth = [("Authorization", format!("Bearer {token}"))];
        let body = (method == "POST").then_some((JSON, ""));
        request(demo.addr, method, path, &auth, body)
    }

    fn token_of(r: &Reply) -> TestResult<String> {
        Ok(r.json()?["token"]
            .as_str()
            .ok_or_else(|| format!("no token in {}", r.body))?
            .to_owned())
    }

    fn jwt_login_count_logout_and_revoked_token(example: &'static str) -> TestResult {
        let demo = Demo::start(example, &["--mode", "jwt"], &[])?;
        demo.wait_for_output("session mode: jwt")?;
        demo.wait_for_output("x-session-token")?;
        demo.wait_for_output("revocation: in-memory denylist")?;

        // `GET /` says which mode runs and lists the API routes.
        let r = http(&demo, "GET", "/", None, "")?;
        assert_eq!(r.status, 200);
        for needle in ["jwt", "/api/login", "/api/me", "/api/logout", "jwks.json"] {
            assert!(r.body.contains(needle), "{needle} missing: {}", r.body);
        }

        // Wrong credentials: 401 with a JSON error, no token, and the WWW-Authenticate
        // challenge that every 401 must carry (RFC 9110 section 15.5.2).
        for (u, p) in [("admin", "letmeout"), ("root", "letmein"), ("", "")] {
            let r = login(&demo, u, p)?;
            assert_eq!(r.status, 401, "{u}/{p}: {}", r.body);
            assert!(r.json()?["error"].is_string(), "{}", r.body);
            assert!(r.json()?.get("token").is_none());
            let challenge = r
                .header("www-authenticate")
                .ok_or_else(|| format!("{u}/{p}: a 401 without WWW-Authenticate"))?;
            assert!(
                challenge.starts_with("Bearer realm=\"sealed-session-demo\""),
                "{challenge}"
            );
            assert!(r.header("x-session-token").is_none(), "{:?}", r.headers);
        }
        // Not JSON: 400 with a JSON error.
        let r = request(demo.addr, "POST", "/api/login", &[], Some((JSON, "nope")))?;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.json()?["error"].is_string());

        // Login: a compact JWS.
        let r = login(&demo, "admin", "letmein")?;
        assert_eq!(r.status, 200, "{}", r.body);
        let first = token_of(&r)?;
        assert_eq!(first.split('.').count(), 3, "{first}");

        // /api/me counts; the refreshed token comes back in x-session-token.
        let mut token = first.clone();
        for n in 1..=3 {
            let r = bearer(&demo, "GET", "/api/me", &token)?;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(
                r.json()?,
                serde_json::json!({ "user": "admin", "views": n })
            );
            token = r
                .header("x-session-token")
                .ok_or("no x-session-token after a change")?
                .to_owned();
        }
        // Two Authorization headers: refused (400, invalid_request), not served as the first.
        let auth = [
            ("Authorization", format!("Bearer {token}")),
            ("Authorization", "Bearer garbage".to_owned()),
        ];
        let r = request(demo.addr, "GET", "/api/me", &auth, None)?;
        assert_eq!(r.status, 400, "{}", r.body);
        let challenge = r.header("www-authenticate").ok_or("no WWW-Authenticate")?;
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );

        // Without a token: 401 with a bare Bearer challenge.
        let r = request(demo.addr, "GET", "/api/me", &[], None)?;
        assert_eq!(r.status, 401);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{:?}",
            r.headers
        );

        // Logout ends the session: the same token (and every earlier one of the session)
        // now gets 401 with an RFC 6750 invalid_token challenge.
        let r = bearer(&demo, "POST", "/api/logout", &token)?;
        assert_eq!(r.status, 200, "{}", r.body);
        for (which, t) in [("the last token", &token), ("the login token", &first)] {
            let r = bearer(&demo, "GET", "/api/me", t)?;
            assert_eq!(r.status, 401, "{which} after logout: {}", r.body);
            let challenge = r.header("www-authenticate").ok_or("no WWW-Authenticate")?;
            assert!(
                challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""),
                "{challenge}"
            );
            assert!(challenge.contains("revoked"), "{challenge}");
        }
        let r = bearer(&demo, "POST", "/api/logout", &token)?;
        assert_eq!(r.status, 401, "logout with a revoked token: {}", r.body);

        // A new login works at once, with a fresh counter.
        let token = token_of(&login(&demo, "admin", "letmein")?)?;
        let r = bearer(&demo, "GET", "/api/me", &token)?;
        assert_eq!(
            r.json()?,
            serde_json::json!({ "user": "admin", "views": 1 })
        );
        Ok(())
    }

    fn jwks_serves_the_kid_of_an_asymmetric_key(example: &'static str) -> TestResult {
        let demo = Demo::start(example, &["--mode", "jwt", "--jwt-kid", "demo-k7"], &[])?;
        let r = http(&demo, "GET", "/.well-known/jwks.json", None, "")?;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.header("content-type").is_some_and(|t| t.contains("json")));
        let keys = r.json()?["keys"].as_array().cloned().ok_or("no keys")?;
        assert_eq!(keys.len(), 1, "{}", r.body);
        assert_eq!(keys[0]["kid"], "demo-k7");
        assert_eq!(keys[0]["alg"], "EdDSA");
        assert_eq!(keys[0]["use"], "sig");
        assert!(
            keys[0].get("d").is_none(),
            "private key published: {}",
            r.body
        );
        // The token names that kid.
        let token = token_of(&login(&demo, "admin", "letmein")?)?;
        let header = token.split('.').next().ok_or("no header")?;
        let header = base64_url_decode(header)?;
        assert!(header.contains("\"kid\":\"demo-k7\""), "{header}");
        Ok(())
    }

    fn hs256_publishes_no_jwks(example: &'static str) -> TestResult {
        let demo = Demo::start(example, &["--mode", "jwt", "--jwt-alg", "HS256"], &[])?;
        demo.wait_for_output("no /.well-known/jwks.json")?;
        let r = http(&demo, "GET", "/.well-known/jwks.json", None, "")?;
        assert_eq!(r.status, 404, "{}", r.body);
        let token = token_of(&login(&demo, "admin", "letmein")?)?;
        assert_eq!(bearer(&demo, "GET", "/api/me", &token)?.status, 200);
        Ok(())
    }

    /// Two jwt-mode processes given the same `JWT_KEY_FILE` accept each other's tokens.
    fn a_shared_key_file_shares_sessions(example: &'static str) -> TestResult {
        let pem = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/jwt/eddsa.key.pem"
        );
        let env = [("JWT_KEY_FILE", pem)];
        let a = Demo::start(example, &["--mode", "jwt"], &env)?;
        let b = Demo::start(example, &["--mode", "jwt"], &env)?;
        a.wait_for_output("key from JWT_KEY_FILE")?;
        let token = token_of(&login(&a, "admin", "letmein")?)?;
        let r = bearer(&b, "GET", "/api/me", &token)?;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.json()?,
            serde_json::json!({ "user": "admin", "views": 1 })
        );
        Ok(())
    }

    fn jwt_start_up_refusals_exit_with_code_2(example: &'static str) -> TestResult {
        let bad_pem = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/jwt/es256.key.pem"
        );
        for (args, env, needle) in [
            (&["--mode", "jwt", "--jwt-alg", "none"][..], None, "none"),
            (
                &["--mode", "jwt", "--jwt-alg", "ES256"][..],
                None,
                "JWT_KEY_FILE",
            ),
            (&["--mode", "jwt"][..], Some(bad_pem), "JWT_KEY_FILE"),
            (&["--jwt-alg", "EdDSA"][..], None, "--mode jwt"),
        ] {
            let mut cmd = Command::new(demo_binary(example)?);
            cmd.args(["--addr", "127.0.0.1:0"]).args(args);
            cmd.env_remove("JWT_KEY_FILE");
            if let Some(f) = env {
                cmd.env("JWT_KEY_FILE", f);
            }
            let out = cmd.output()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        Ok(())
    }

    /// jwt mode with `--redis`: two processes with the same `JWT_KEY_FILE` share tokens, and
    /// a logout on A revokes the token on B.
    #[cfg(feature = "redis")]
    fn jwt_demos_share_revocations_through_redis(example: &'static str) -> TestResult {
        let Some(redis) = common::redis::RedisServer::start("jwt_demos_share_revocations") else {
            return Ok(());
        };
        let url = redis.url();
        let pem = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/jwt/eddsa.key.pem"
        );
        let env = [("JWT_KEY_FILE", pem)];
        let a = Demo::start(example, &["--mode", "jwt", "--redis", &url], &env)?;
        let b = Demo::start(example, &["--mode", "jwt", "--redis", &url], &env)?;
        let token = token_of(&login(&a, "admin", "letmein")?)?;
        assert_eq!(bearer(&b, "GET", "/api/me", &token)?.status, 200);
        assert_eq!(bearer(&a, "POST", "/api/logout", &token)?.status, 200);
        let logged_out = Instant::now();
        loop {
            let r = bearer(&b, "GET", "/api/me", &token)?;
            if r.status == 401 {
                assert!(
                    r.header("www-authenticate")
                        .is_some_and(|c| c.contains("revoked")),
                    "{:?}",
                    r.headers
                );
                break;
            }
            assert_eq!(r.status, 200, "{}", r.body);
            let waited = logged_out.elapsed();
            assert!(
                waited < Duration::from_secs(2),
                "B still accepts the token after {waited:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        eprintln!(
            "jwt logout on A reached B within {:?}",
            logged_out.elapsed()
        );
        Ok(())
    }

    fn base64_url_decode(s: &str) -> TestResult<String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s)?;
        Ok(String::from_utf8(bytes)?)
    }
}

// ---------------------------------------------------------------------------------------
// sealed mode: revocation with the in-memory denylist
// ---------------------------------------------------------------------------------------

/// Logs in through the form and returns the session cookie (`name=value`).
fn form_login(demo: &Demo) -> TestResult<String> {
    let r = http(
        demo,
        "POST",
        "/login",
        None,
        "username=admin&password=letmein",
    )?;
    assert_eq!(r.status, 303, "{}", r.body);
    Ok(r.session_cookie().ok_or("no session cookie after login")?)
}

/// Whether `cookie` is a logged-in session on `demo`.
fn logged_in(demo: &Demo, cookie: &str) -> TestResult<bool> {
    let r = http(demo, "GET", "/secureplace", Some(cookie), "")?;
    match r.status {
        200 if r.body.contains("<strong id=\"user\">admin</strong>") => Ok(true),
        303 if r.header("location") == Some("/") => Ok(false),
        s => Err(format!("unexpected /secureplace answer {s}: {}", r.body).into()),
    }
}

fn sealed_cookie_replayed_after_logout_is_refused(example: &'static str) -> TestResult {
    let demo = Demo::start(example, &[], &[("SESSION_SECRET", SECRET)])?;
    demo.wait_for_output("session mode: sealed")?;
    demo.wait_for_output("revocation: in-memory denylist")?;

    let cookie = form_login(&demo)?;
    assert!(logged_in(&demo, &cookie)?);
    // A copy kept aside (what an attacker who stole the cookie would replay).
    let stolen = cookie.clone();
    let r = http(&demo, "POST", "/logout", Some(&cookie), "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert!(r.clears_session_cookie(), "{:?}", r.headers);

    // Replayed after logout: refused (a fresh, anonymous session) and cleared, although the
    // cookie itself is still authentic and unexpired.
    let r = http(&demo, "GET", "/secureplace", Some(&stolen), "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert!(r.clears_session_cookie(), "{:?}", r.headers);
    let r = http(&demo, "GET", "/views", Some(&stolen), "")?;
    assert_eq!(
        r.json()?,
        serde_json::json!({ "views": 1 }),
        "a fresh session"
    );

    // Logging in again works.
    let again = form_login(&demo)?;
    assert!(logged_in(&demo, &again)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// store mode: the express-session design behind the same pages
// ---------------------------------------------------------------------------------------

/// `--mode store`: the same login flow, the cookie a signed session id (short, whatever the
/// session holds), the devices page, and a logout that deletes the session, so that the
/// cookie replayed afterwards is no session.
/// `GET /session` in the cookie modes: the cookie (name, size, key id and algorithm), what
/// the server reads (id, subject, data), the store's record in store mode, and the
/// `sealed-session inspect` command line.
fn the_session_page_shows_the_cookie_and_what_the_server_reads(
    example: &'static str,
) -> TestResult {
    for mode in ["sealed", "store"] {
        let demo = Demo::start(example, &["--mode", mode], &[("SESSION_SECRET", SECRET)])?;
        let anonymous = http(&demo, "GET", "/session", None, "")?;
        assert_eq!(anonymous.status, 200, "{mode}");
        assert!(
            anonymous.body.contains("no cookies"),
            "{mode}: {}",
            anonymous.body
        );
        let cookie = form_login(&demo)?;
        let page = http(&demo, "GET", "/session", Some(&cookie), "")?;
        assert_eq!(page.status, 200, "{mode}");
        let body = &page.body;
        let value_len = cookie.split_once('=').map_or(0, |(_, v)| v.len());
        assert!(body.contains("id=\"mode\">"), "{mode}: {body}");
        assert!(
            body.contains(&format!("{value_len} bytes")),
            "{mode}: {body}"
        );
        let kind = if mode == "store" {
            "session_id"
        } else {
            "sealed"
        };
        assert!(
            body.contains(&format!("kind <code>{kind}</code>")),
            "{mode}: {body}"
        );
        assert!(body.contains("(aes256gcm)"), "{mode}: {body}");
        assert!(
            body.contains("&quot;user&quot;: &quot;admin&quot;"),
            "{mode}: {body}"
        );
        assert!(body.contains("sealed-session inspect"), "{mode}: {body}");
        assert_eq!(
            body.contains("id=\"store-record\""),
            mode == "store",
            "{mode}: {body}"
        );
    }
    Ok(())
}

fn store_mode_serves_the_same_login_flow_from_a_store(example: &'static str) -> TestResult {
    let demo = Demo::start(example, &["--mode", "store"], &[("SESSION_SECRET", SECRET)])?;
    demo.wait_for_output("session mode: store")?;
    demo.wait_for_output("revocation: the store")?;

    let cookie = form_login(&demo)?;
    let value = cookie.split_once('=').map_or("", |(_, v)| v);
    assert!(
        value.len() < 80,
        "a signed id, not the session: {} bytes",
        value.len()
    );
    assert!(logged_in(&demo, &cookie)?);
    for n in 1..=3 {
        let r = http(&demo, "GET", "/views", Some(&cookie), "")?;
        assert_eq!(r.json()?, serde_json::json!({ "views": n }));
        assert!(
            r.set_cookies().is_empty(),
            "the id does not change: {:?}",
            r.headers
        );
    }
    let r = http(&demo, "GET", "/devices", Some(&cookie), "")?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("(this device)"), "{}", r.body);

    let stolen = cookie.clone();
    let r = http(&demo, "POST", "/logout", Some(&cookie), "")?;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert!(!logged_in(&demo, &stolen)?, "the deleted session is gone");
    let again = form_login(&demo)?;
    assert!(logged_in(&demo, &again)?);
    Ok(())
}

/// Two store-mode demos on one Redis store: a session made on A is read on B, and a logout
/// on A ends it on B at once (the record is gone).
#[cfg(feature = "redis")]
fn store_mode_demos_share_sessions_through_a_redis_store(example: &'static str) -> TestResult {
    let Some(redis) = common::redis::RedisServer::start("store-mode demos on Redis") else {
        return Ok(());
    };
    let url = redis.url();
    let env = [("SESSION_SECRET", SECRET)];
    let args = ["--mode", "store", "--redis", url.as_str()];
    let a = Demo::start(example, &args, &env)?;
    let b = Demo::start(example, &args, &env)?;
    b.wait_for_output("the session in Redis")?;
    let cookie = form_login(&a)?;
    assert!(
        logged_in(&b, &cookie)?,
        "A's session is not in the store B reads"
    );
    let r = http(&b, "GET", "/views", Some(&cookie), "")?;
    assert_eq!(r.json()?, serde_json::json!({ "views": 1 }));
    let r = http(&a, "GET", "/views", Some(&cookie), "")?;
    assert_eq!(
        r.json()?,
        serde_json::json!({ "views": 2 }),
        "B's write is A's read"
    );
    let r = http(&a, "POST", "/logout", Some(&cookie), "")?;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        !logged_in(&b, &cookie)?,
        "B still reads the deleted session"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// --redis
// ---------------------------------------------------------------------------------------

#[cfg(not(feature = "redis"))]
fn redis_without_the_feature_is_refused_with_exit_code_2(example: &'static str) -> TestResult {
    let out = Command::new(demo_binary(example)?)
        .args(["--addr", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1/"])
        .env("SESSION_SECRET", SECRET)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--features redis"), "{stderr}");
    Ok(())
}

#[cfg(feature = "redis")]
fn unreachable_redis_is_refused_with_exit_code_2(example: &'static str) -> TestResult {
    // A port nothing listens on (free when asked).
    let port = common::demo::free_port()?;
    let started = Instant::now();
    let out = Command::new(demo_binary(example)?)
        .args(["--addr", "127.0.0.1:0", "--redis"])
        .arg(format!("redis://:hunter2@127.0.0.1:{port}/"))
        .env("SESSION_SECRET", SECRET)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Redis"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is printed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("unreachable Redis refused in {:?}", started.elapsed());
    Ok(())
}

/// Two demo processes on different ports, one Redis, the same `SESSION_SECRET`: a session
/// made on A works on B, and after logout on A, B refuses the replayed cookie.
#[cfg(feature = "redis")]
fn two_demos_share_sessions_and_revocations_through_redis(example: &'static str) -> TestResult {
    let Some(redis) = common::redis::RedisServer::start("two_demos_share_revocations") else {
        return Ok(());
    };
    let url = redis.url();
    let env = [("SESSION_SECRET", SECRET)];
    let a = Demo::start(example, &["--redis", &url], &env)?;
    let b = Demo::start(example, &["--redis", &url], &env)?;
    assert_ne!(a.addr, b.addr);
    b.wait_for_output("revocation: Redis denylist")?;

    let cookie = form_login(&a)?;
    assert!(logged_in(&a, &cookie)?);
    assert!(logged_in(&b, &cookie)?, "A's session does not work on B");

    let r = http(&a, "POST", "/logout", Some(&cookie), "")?;
    assert_eq!(r.status, 303, "{}", r.body);
    let logged_out = Instant::now();
    assert!(!logged_in(&a, &cookie)?, "A accepts its own revoked cookie");

    // B learns of the revocation over Redis pub/sub: poll until it refuses the cookie.
    let bound = Duration::from_secs(2);
    loop {
        if !logged_in(&b, &cookie)? {
            break;
        }
        let waited = logged_out.elapsed();
        assert!(
            waited < bound,
            "B still accepts the cookie {waited:?} after logout on A"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "logout on A reached B within {:?} (polling B over HTTP every ~2 ms)",
        logged_out.elapsed()
    );

    // A new login on B works on A too.
    let again = form_login(&b)?;
    assert!(logged_in(&a, &again)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Both examples at once: one application
// ---------------------------------------------------------------------------------------

/// The Poem and axum demos print the same start-up output (but the port) and the same usage
/// (but the program's name), in both modes.
#[cfg(all(feature = "poem", feature = "tower"))]
#[test]
fn poem_and_axum_demos_print_the_same() -> TestResult {
    use common::demo::{AXUM, POEM};
    let pem = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/jwt/eddsa.key.pem"
    );
    let runs = [
        (&[][..], ("SESSION_SECRET", SECRET)),
        (&["--mode", "jwt"][..], ("JWT_KEY_FILE", pem)),
    ];
    for (args, env) in runs {
        let output = |example| -> TestResult<String> {
            let demo = Demo::start(example, args, &[env])?;
            demo.wait_for_output("log in with")?;
            Ok(demo.output().replace(&demo.addr.to_string(), "ADDR"))
        };
        let (poem, axum) = (output(POEM)?, output(AXUM)?);
        assert!(poem.starts_with("listening on http://ADDR\n"), "{poem}");
        assert_eq!(poem, axum, "{args:?}");
    }
    let usage = |example| -> TestResult<String> {
        let out = Command::new(demo_binary(example)?).arg("--help").output()?;
        assert!(out.status.success());
        Ok(String::from_utf8(out.stdout)?)
    };
    let poem = usage(POEM)?;
    let axum = usage(AXUM)?;
    assert_eq!(
        poem.replacen("usage: demo ", "usage: axum_demo ", 1)
            .replacen(
                "--example demo --features redis",
                "--example axum_demo --features redis,tower",
                1
            ),
        axum
    );
    Ok(())
}

/// Given the same `SESSION_SECRET`, a session made on one demo is a session on the other:
/// the Poem middleware and the tower layer read and write the same cookies.
#[cfg(all(feature = "poem", feature = "tower"))]
#[test]
fn poem_and_axum_demos_share_sessions() -> TestResult {
    use common::demo::{AXUM, POEM};
    let env = [("SESSION_SECRET", SECRET)];
    let poem = Demo::start(POEM, &[], &env)?;
    let axum = Demo::start(AXUM, &[], &env)?;
    let cookie = form_login(&poem)?;
    assert!(logged_in(&axum, &cookie)?, "Poem's session refused by axum");
    let cookie = form_login(&axum)?;
    assert!(logged_in(&poem, &cookie)?, "axum's session refused by Poem");
    // The counter goes on from one to the other.
    let r = http(&poem, "GET", "/views", Some(&cookie), "")?;
    assert_eq!(r.json()?, serde_json::json!({ "views": 1 }));
    let cookie = r.session_cookie().ok_or("no new cookie")?;
    let r = http(&axum, "GET", "/views", Some(&cookie), "")?;
    assert_eq!(r.json()?, serde_json::json!({ "views": 2 }));
    Ok(())
}
