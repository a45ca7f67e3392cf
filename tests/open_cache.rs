//! The open cache (`SealedSession::open_cache`): a token that comes back is answered from
//! memory, but only for exactly the bytes that opened, under the same cookie name, with
//! expiry, idle time, revocation, key rotation and the data limits checked as without it.
//! Every scenario runs on the Poem middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{T0, clock, key, ring};
use http::app::{Adapter, App, Client, Req, RespExt, Routes, both};
use http::handlers::plain::{count, logout, user};
use sealed_session::{
    Clock, Codec, Keyring, Limits, MemoryDenylist, SealedCodec, SealedSession, Secure, Session,
    SessionError, SessionId, SessionState, SystemClock,
};
use serde_json::{Value, json};

const NAME: &str = "__Host-sid";

fn login(session: &Session) -> Result<(), SessionError> {
    session.insert("user", "alice")?;
    Ok(())
}

/// Sets `key` to the JSON value `case` names (see [`value`]), or removes it for `remove`.
fn put(req: &Req) -> Result<(), SessionError> {
    let (session, key, case): (_, String, String) =
        (&req.session, req.param("key"), req.param("case"));
    match value(&case) {
        Some(v) => session.insert(&key, &v)?,
        None => {
            session.remove(&key)?;
        }
    }
    Ok(())
}

/// The values of `keys` (comma-separated), as JSON.
fn dump(req: &Req) -> Result<String, SessionError> {
    let (session, keys): (_, String) = (&req.session, req.param("keys"));
    let mut out = serde_json::Map::new();
    for k in keys.split(',') {
        out.insert(
            k.to_owned(),
            session.get::<Value>(k)?.unwrap_or(Value::Null),
        );
    }
    Ok(Value::Object(out).to_string())
}

fn value(case: &str) -> Option<Value> {
    Some(match case {
        "text" => json!("plain text"),
        "escapes" => json!("quote \" backslash \\ newline \n tab \t nul \u{0}"),
        "unicode" => json!("ünïcödé ✓ 🦀"),
        "nested" => json!({"a": [1, {"b": [true, null, {"c": "deep"}]}], "d": {}}),
        "number" => json!(-12.5e3),
        "big" => json!(u64::MAX),
        "array" => json!([1, "two", [3], {"four": 4}]),
        "empty" => json!({}),
        _ => return None,
    })
}

fn routes() -> Routes {
    Routes::new()
        .post("/login", login)
        .get("/whoami", user)
        .post("/bump", count)
        .post("/logout", logout)
        .post("/put/:key/:case", put)
        .get("/dump/:keys", dump)
}

fn keys() -> Keyring {
    ring("k1", 7)
}

fn app(on: Adapter, mw: SealedSession) -> App {
    on.app(&routes(), mw)
}

/// The session cookie's value as the client holds it.
fn token(c: &Client) -> String {
    c.jar.get(NAME).expect("a session cookie").to_owned()
}

async fn a_token_that_comes_back_is_answered_from_the_cache(on: Adapter) {
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    for _ in 0..3 {
        assert_eq!(c.text(false, "/whoami").await, "alice");
    }
    let stats = mw.stats();
    // The token the login sealed was kept as it was sealed: no request decoded it.
    assert_eq!(stats.opened, 0, "{stats:?}");
    assert_eq!(stats.opened_cached, 3, "{stats:?}");

    // Off: every request decodes its token.
    let mw = SealedSession::sealed(keys()).open_cache(0);
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    for _ in 0..3 {
        assert_eq!(c.text(false, "/whoami").await, "alice");
    }
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (3, 0), "{stats:?}");
}

async fn a_replaced_token_leaves_the_cache_but_still_opens(on: Adapter) {
    // A stateless token stays valid until it expires (without a denylist): replacing it
    // only frees its place in the cache for tokens still in use.
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let first = Some(format!("{NAME}={}", token(&c)));
    assert_eq!(c.text(true, "/bump").await, "1");
    assert_eq!(c.text(false, "/whoami").await, "alice");
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (0, 2), "{stats:?}");
    let resp = c.send_with(false, "/whoami", first).await;
    assert_eq!(resp.into_body(), "alice");
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 2), "{stats:?}");
}

async fn storing_the_value_a_key_holds_keeps_the_token_in_the_cache(on: Adapter) {
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let sealed = token(&c);
    // The same value again: no change, no new token, and the token stays in the cache.
    c.send(true, "/login").await;
    assert_eq!(token(&c), sealed);
    assert_eq!(c.text(false, "/whoami").await, "alice");
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (0, 2), "{stats:?}");
}

/// A change lets go of the token's cache entry before it changes the data (the entry shares
/// it with the request). The old token, sent again, opens to the data it was sealed with.
async fn a_change_leaves_the_replaced_token_s_data_as_it_was(on: Adapter) {
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let old = Some(format!("{NAME}={}", token(&c)));
    c.send(true, "/put/user/text").await;
    assert_eq!(c.text(false, "/whoami").await, "plain text");
    let resp = c.send_with(false, "/whoami", old).await;
    assert_eq!(resp.into_body(), "alice");
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 2), "{stats:?}");
}

async fn a_token_opened_once_is_answered_from_the_cache_after(on: Adapter) {
    // Sealed by another instance (same keys): the first request decodes it, later ones not.
    let mut issuer = Client::new(app(on, SealedSession::sealed(keys())));
    issuer.send(true, "/login").await;
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.jar = issuer.jar.clone();
    for _ in 0..3 {
        assert_eq!(c.text(false, "/whoami").await, "alice");
    }
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 2), "{stats:?}");
}

async fn every_write_is_read_back_from_the_cache_as_a_fresh_open_would_read_it(on: Adapter) {
    let cached = SealedSession::sealed(keys());
    let uncached = SealedSession::sealed(keys()).open_cache(0);
    let mut a = Client::new(app(on, cached.clone()));
    let mut b = Client::new(app(on, uncached));
    let steps = [
        "text", "escapes", "unicode", "nested", "number", "big", "array", "empty", "remove",
    ];
    let names = ["k", "quote\"d", "ünï", "x"];
    let dump_uri = format!("/dump/{}", urlencode(&names.join(",")));
    for (i, case) in steps.iter().cycle().take(40).enumerate() {
        let k = names[i % names.len()];
        let uri = format!("/put/{}/{case}", urlencode(k));
        a.send(true, &uri).await.0.assert_status_is_ok();
        b.send(true, &uri).await.0.assert_status_is_ok();
        let from_cache = a.text(false, &dump_uri).await;
        let decoded = b.text(false, &dump_uri).await;
        assert_eq!(from_cache, decoded, "after step {i} ({k} = {case})");
    }
    let stats = cached.stats();
    assert_eq!(
        stats.opened, 0,
        "every token came back from the cache: {stats:?}"
    );
    // And the tokens themselves open to the same data anywhere.
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    c.jar = a.jar.clone();
    assert_eq!(
        c.text(false, &dump_uri).await,
        b.text(false, &dump_uri).await
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b',' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn no_changed_byte_is_answered_from_the_cache(on: Adapter) {
    let mw = SealedSession::sealed(keys());
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let good = token(&c);
    assert_eq!(c.text(false, "/whoami").await, "alice");
    let cookie = |t: &str| Some(format!("{NAME}={t}"));
    let mut tried = 0;
    for i in 0..good.len() {
        for replacement in ['A', 'b', '-', '_'] {
            let mut forged: Vec<char> = good.chars().collect();
            if forged[i] == replacement {
                continue;
            }
            forged[i] = replacement;
            let forged: String = forged.into_iter().collect();
            let resp = c.send_with(false, "/whoami", cookie(&forged)).await;
            assert_eq!(
                resp.into_body(),
                "<none>",
                "byte {i} changed to {replacement}"
            );
            tried += 1;
        }
    }
    for forged in [
        &good[..good.len() - 1],
        &format!("{good}A"),
        &format!("A{good}"),
        &good[1..],
        "",
    ] {
        let resp = c.send_with(false, "/whoami", cookie(forged)).await;
        assert_eq!(resp.into_body(), "<none>", "{forged}");
    }
    // The genuine token still works, from the cache.
    let resp = c.send_with(false, "/whoami", cookie(&good)).await;
    assert_eq!(resp.into_body(), "alice");
    let stats = mw.stats();
    assert!(stats.refusals_total() >= tried, "{stats:?}");
    assert_eq!(stats.opened_cached, 2, "{stats:?}");
}

async fn a_token_made_for_one_cookie_name_is_not_accepted_under_another(on: Adapter) {
    // `Secure::Auto`: over HTTPS the cookie is `__Host-sid`, over HTTP `sid`; each name is
    // the token's purpose, and the cache answers only for the purpose a token opened for.
    let mw = SealedSession::sealed(keys())
        .secure(Secure::Auto)
        .trust_proxy(true);
    let c = Client::new(app(on, mw.clone()));
    let resp = c
        .app
        .post("/login")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    let set = http::set_cookies(&resp);
    let https_token = set
        .iter()
        .find(|s| s.name == NAME)
        .expect("an HTTPS session cookie")
        .value
        .clone();
    let https = |path: &'static str, cookie: String| {
        c.app
            .get(path)
            .header("x-forwarded-proto", "https")
            .header("cookie", cookie)
            .send()
    };
    // Answered from the cache under its own name.
    let resp = https("/whoami", format!("{NAME}={https_token}")).await;
    assert_eq!(resp.into_body(), "alice");
    // The same bytes under the HTTP name: refused, cache or not.
    let resp = c
        .send_with(false, "/whoami", Some(format!("sid={https_token}")))
        .await;
    assert_eq!(resp.into_body(), "<none>");
    assert_eq!(mw.stats().refused("bad_seal"), 1, "{:?}", mw.stats());
}

async fn expiry_and_idle_time_are_checked_on_every_cached_answer(on: Adapter) {
    let clock = clock();
    let mw = SealedSession::sealed(keys())
        .clock(clock.clone())
        .idle_timeout(Some(Duration::from_secs(30 * 60)))
        .max_age(Duration::from_secs(3600));
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let login_token = Some(format!("{NAME}={}", token(&c)));

    clock.advance(Duration::from_secs(29 * 60));
    let resp = c.send_with(false, "/whoami", login_token.clone()).await;
    assert_eq!(resp.into_body(), "alice", "within the idle timeout");
    clock.advance(Duration::from_secs(2 * 60));
    let resp = c.send_with(false, "/whoami", login_token.clone()).await;
    assert_eq!(resp.into_body(), "<none>", "idle for 31 minutes");
    assert_eq!(mw.stats().refused("idle_timeout"), 1);

    // Kept active, the session still ends at its absolute deadline.
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(11 * 60));
        c.send(true, "/bump").await.0.assert_status_is_ok();
        assert_eq!(c.text(false, "/whoami").await, "alice");
    }
    clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(c.text(false, "/whoami").await, "<none>", "past max_age");
    assert_eq!(mw.stats().refused("expired"), 1);
    assert!(mw.stats().opened_cached >= 5);
}

async fn a_revoked_token_is_refused_though_it_is_cached(on: Adapter) {
    let denylist = Arc::new(MemoryDenylist::new());
    let mw = SealedSession::sealed(keys()).denylist(denylist);
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    let copy = Some(format!("{NAME}={}", token(&c)));
    assert_eq!(c.text(false, "/whoami").await, "alice");
    c.send(true, "/logout").await.0.assert_status_is_ok();
    let resp = c.send_with(false, "/whoami", copy).await;
    assert_eq!(resp.into_body(), "<none>");
    let stats = mw.stats();
    assert_eq!(stats.refused("revoked"), 1, "{stats:?}");
    assert!(stats.opened_cached >= 2, "{stats:?}");
}

async fn a_token_under_a_retired_key_is_re_issued_each_time_it_comes_from_the_cache(on: Adapter) {
    // A token sealed under k1, to a middleware whose primary key is now k2.
    let old = SealedCodec::new(keys());
    let now = SystemClock.now();
    let mut state = SessionState::new(
        SessionId::generate().unwrap(),
        now,
        now.saturating_add(Duration::from_secs(3600)),
    );
    state.insert("user", "alice").unwrap();
    let t = old.seal(&state, NAME.as_bytes()).unwrap();
    let ring = Keyring::new([key("k2", 8), key("k1", 7)]).unwrap();
    let mw = SealedSession::sealed(ring);
    let c = Client::new(app(on, mw.clone()));
    for _ in 0..3 {
        let resp = c
            .send_with(false, "/whoami", Some(format!("{NAME}={t}")))
            .await;
        let set = http::set_cookies(&resp);
        assert_eq!(resp.into_body(), "alice");
        assert_eq!(set.len(), 1, "re-issued under the primary key: {set:?}");
        assert!(set[0].value.starts_with(&k2_prefix()), "{set:?}");
    }
    // Each answer replaced the token, so the cache dropped it: the client is expected to
    // send the new one. Sent again anyway, it is decoded again.
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (3, 0), "{stats:?}");
}

/// How a token sealed under key id `k2` begins (version, kind, key id length and id).
fn k2_prefix() -> String {
    let codec = SealedCodec::new(ring("k2", 8));
    let state = SessionState::new(SessionId::from_bytes([0; 16]), T0, T0);
    let t = codec.seal(&state, b"x").unwrap();
    t[..4].to_owned()
}

async fn a_cache_belongs_to_one_middleware_and_its_keys(on: Adapter) {
    let mut a = Client::new(app(on, SealedSession::sealed(keys())));
    a.send(true, "/login").await;
    assert_eq!(a.text(false, "/whoami").await, "alice");
    let other = ring("k1", 9);
    let mut b = Client::new(app(on, SealedSession::sealed(other)));
    b.jar = a.jar.clone();
    assert_eq!(b.text(false, "/whoami").await, "<none>");
}

async fn data_over_this_middlewares_limit_is_refused_even_just_after_it_was_sealed(on: Adapter) {
    // The handler may store what the limit refuses on the way back (the data limit is
    // checked when a token arrives); the cache must not accept what opening would refuse.
    let mw = SealedSession::sealed(keys()).limits(Limits::default().data_len(40));
    let mut c = Client::new(app(on, mw.clone()));
    c.send(true, "/login").await;
    assert_eq!(c.text(false, "/whoami").await, "alice");
    c.send(true, "/put/long/escapes")
        .await
        .0
        .assert_status_is_ok();
    assert_eq!(c.text(false, "/whoami").await, "<none>");
    assert_eq!(mw.stats().refused("data_too_large"), 1, "{:?}", mw.stats());
}

both!(
    a_token_that_comes_back_is_answered_from_the_cache,
    a_replaced_token_leaves_the_cache_but_still_opens,
    storing_the_value_a_key_holds_keeps_the_token_in_the_cache,
    a_change_leaves_the_replaced_token_s_data_as_it_was,
    a_token_opened_once_is_answered_from_the_cache_after,
    every_write_is_read_back_from_the_cache_as_a_fresh_open_would_read_it,
    no_changed_byte_is_answered_from_the_cache,
    a_token_made_for_one_cookie_name_is_not_accepted_under_another,
    expiry_and_idle_time_are_checked_on_every_cached_answer,
    a_revoked_token_is_refused_though_it_is_cached,
    a_token_under_a_retired_key_is_re_issued_each_time_it_comes_from_the_cache,
    a_cache_belongs_to_one_middleware_and_its_keys,
    data_over_this_middlewares_limit_is_refused_even_just_after_it_was_sealed,
);
