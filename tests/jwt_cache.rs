//! The open cache with bearer JWTs: a token that verified once is answered from the cache
//! when the same bytes come back, and the checks that depend on the time or on server state
//! still run on every request: the token's own `exp`, `nbf` and `iat`, the policy's expiry
//! and idle timeout, and revocation. Every HTTP scenario runs on the Poem middleware and on
//! the tower layer (see `http::app`).
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{T0, T0_MS};
use http::app::{Adapter, App, Json, RespExt, Routes, both};
use sealed_session::{
    BearerConfig, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, ManualClock, MemoryDenylist,
    SealedSession, Session, SessionError, Timestamp,
};

const MIN: Duration = Duration::from_secs(60);

fn login(session: &Session) -> Result<Json, SessionError> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

fn me(session: &Session) -> Result<String, SessionError> {
    Ok(session.get::<String>("user")?.unwrap_or_default())
}

fn bump(session: &Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", &n)?;
    Ok(n.to_string())
}

fn logout(session: &Session) -> Result<(), SessionError> {
    session.destroy()?;
    Ok(())
}

fn ring() -> JwtKeyring {
    let key = JwtKey::hmac(
        "k1",
        JwtAlgorithm::HS256,
        b"jwt-cache test secret, 32 bytes+",
    )
    .unwrap();
    JwtKeyring::new([key]).unwrap()
}

fn codec() -> JwtCodec {
    JwtCodec::builder(ring())
        .issuer("demo")
        .audience("api")
        .build()
        .unwrap()
}

/// Bearer JWT sessions with an idle timeout of `idle`, on `clock`.
fn mw(clock: &ManualClock, idle: Duration) -> SealedSession {
    SealedSession::jwt(codec())
        .idle_timeout(Some(idle))
        .clock(clock.clone())
        .bearer(BearerConfig::new())
}

fn app(on: Adapter, mw: SealedSession) -> App {
    on.app(
        &Routes::new()
            .post("/login", login)
            .get("/me", me)
            .post("/bump", bump)
            .post("/logout", logout),
        mw,
    )
}

async fn token_of(tc: &App) -> String {
    let v: serde_json::Value = serde_json::from_str(tc.post("/login").send().await.body()).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The status and body of `GET /me` with `token`.
async fn me_with(tc: &App, token: &str) -> (StatusCode, String) {
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    let status = resp.status();
    (status, resp.into_body())
}

async fn a_token_that_comes_back_is_verified_once(on: Adapter) {
    let clock = ManualClock::new(T0);
    let mw = mw(&clock, 60 * MIN);
    let tc = app(on, mw.clone());
    let token = token_of(&tc).await;
    for _ in 0..3 {
        assert_eq!(me_with(&tc, &token).await, (StatusCode::OK, "admin".into()));
    }
    // The token the login made was kept when it was sealed: nothing was verified again.
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (0, 3), "{stats:?}");

    // Made by another instance with the same keys: verified on its first request only.
    let other = app(on, mw.clone());
    let elsewhere = token_of(&app(on, self::mw(&clock, 60 * MIN))).await;
    for _ in 0..3 {
        assert_eq!(me_with(&other, &elsewhere).await.0, StatusCode::OK);
    }
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 5), "{stats:?}");
}

async fn no_changed_byte_is_answered_from_the_cache(on: Adapter) {
    let clock = ManualClock::new(T0);
    let mw = mw(&clock, 60 * MIN);
    let tc = app(on, mw.clone());
    let token = token_of(&tc).await;
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    let bytes = token.as_bytes();
    for i in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let mut forged = bytes.to_vec();
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            me_with(&tc, &forged).await.0,
            StatusCode::UNAUTHORIZED,
            "byte {i} changed"
        );
    }
    for longer in [format!("{token}A"), format!("{token}.")] {
        assert_eq!(me_with(&tc, &longer).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
}

async fn a_cached_token_past_its_own_exp_is_refused(on: Adapter) {
    // The token is made where sessions idle out after 5 minutes, so its `exp` is 5 minutes
    // after its `iat`; it is read where they idle out after an hour, so the policy alone
    // would take it: only the token's own `exp` (plus the 60 s leeway) ends it.
    let clock = ManualClock::new(T0);
    let token = token_of(&app(on, mw(&clock, 5 * MIN))).await;
    let reader = mw(&clock, 60 * MIN);
    let tc = app(on, reader.clone());
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    clock.advance(6 * MIN - Duration::from_millis(1));
    assert_eq!(
        me_with(&tc, &token).await.0,
        StatusCode::OK,
        "within the leeway"
    );
    let stats = reader.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 1), "{stats:?}");
    clock.advance(Duration::from_millis(1));
    let (status, _) = me_with(&tc, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "exp + leeway has passed");
    let stats = reader.stats();
    assert_eq!(
        stats.opened_cached, 1,
        "not answered from the cache: {stats:?}"
    );
    assert!(
        stats.refused("idle_timeout") + stats.refused("expired") == 1,
        "{stats:?}"
    );
}

async fn a_cached_token_is_refused_when_the_clock_goes_back_before_its_iat(on: Adapter) {
    let clock = ManualClock::new(T0);
    let mw = mw(&clock, 60 * MIN);
    let tc = app(on, mw.clone());
    let token = token_of(&tc).await;
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    // A minute back is within the leeway; more is a token from the future.
    clock.set(Timestamp::from_millis(T0_MS - 60_000));
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    clock.set(Timestamp::from_millis(T0_MS - 61_000));
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(mw.stats().refused("from_the_future"), 1);
}

async fn idle_timeout_and_revocation_are_checked_on_every_cached_answer(on: Adapter) {
    let clock = ManualClock::new(T0);
    let denylist = std::sync::Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let mw = mw(&clock, 10 * MIN).denylist(denylist);
    let tc = app(on, mw.clone());

    // Idle: the policy refuses it, cached or not.
    let token = token_of(&tc).await;
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    clock.advance(10 * MIN);
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::UNAUTHORIZED);

    // Revoked: refused at once, though its bytes are in the cache.
    let token = token_of(&tc).await;
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    let resp = tc
        .post("/logout")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::UNAUTHORIZED);
    let stats = mw.stats();
    assert_eq!(stats.refused("revoked"), 1, "{stats:?}");
}

async fn a_refreshed_token_is_answered_from_the_cache_and_the_old_one_still_verifies(on: Adapter) {
    let clock = ManualClock::new(T0);
    let mw = mw(&clock, 60 * MIN);
    let tc = app(on, mw.clone());
    let token = token_of(&tc).await;
    let resp = tc
        .post("/bump")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let next = resp.headers()["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(next, token);
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (0, 1), "{stats:?}");
    // The new token was kept when sealed; the replaced one left the cache but is still a
    // valid token (stateless) until it expires.
    assert_eq!(me_with(&tc, &next).await.0, StatusCode::OK);
    assert_eq!(me_with(&tc, &token).await.0, StatusCode::OK);
    let stats = mw.stats();
    assert_eq!((stats.opened, stats.opened_cached), (1, 2), "{stats:?}");
}

both!(
    a_token_that_comes_back_is_verified_once,
    no_changed_byte_is_answered_from_the_cache,
    a_cached_token_past_its_own_exp_is_refused,
    a_cached_token_is_refused_when_the_clock_goes_back_before_its_iat,
    idle_timeout_and_revocation_are_checked_on_every_cached_answer,
    a_refreshed_token_is_answered_from_the_cache_and_the_old_one_still_verifies,
);

#[test]
fn a_sealed_token_opens_with_the_validity_its_codec_announced() {
    use sealed_session::codec::{Codec, Validity};
    use sealed_session::{SessionId, SessionState};

    for (leeway, idle, not_before) in [
        (MIN, Some(60 * MIN), false),
        (Duration::ZERO, Some(5 * MIN), true),
        (Duration::from_secs(5), None, true),
    ] {
        let clock = ManualClock::new(T0);
        let codec = codec()
            .leeway(leeway)
            .idle_timeout(idle)
            .not_before(not_before)
            .clock(clock.clone());
        let mut state = SessionState::new(
            SessionId::from_bytes([3; 16]),
            T0,
            T0.saturating_add(24 * 60 * MIN),
        );
        // Milliseconds that the token's whole seconds round away.
        state.set_last_seen(Timestamp::from_millis(T0_MS + 1_234));
        let token = codec.seal(&state, b"").unwrap();
        clock.set(Timestamp::from_millis(T0_MS + 2_000));
        let opened = codec.open(&token, b"").unwrap();
        let announced = codec.sealed_validity(&state);
        assert_eq!(opened.validity(), announced);
        assert_ne!(announced, Validity::ALWAYS);
        // The codec refuses the token exactly outside it.
        for at in [
            announced.from.as_millis() - 1,
            announced.from.as_millis(),
            announced.until.as_millis() - 1,
            announced.until.as_millis(),
        ] {
            clock.set(Timestamp::from_millis(at));
            let opens = codec.open(&token, b"").is_ok();
            assert_eq!(
                opens,
                announced.contains(Timestamp::from_millis(at)),
                "{leeway:?} {idle:?} at {at}"
            );
        }
    }
}
