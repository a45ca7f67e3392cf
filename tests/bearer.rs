//! The bearer transport: tokens in `Authorization: Bearer`, new tokens in a response header,
//! 401s with RFC 6750 challenges. Every scenario runs on the Poem middleware and on the
//! tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use ::http::{HeaderValue, StatusCode};
use common::fixtures::{clock, keys};
use http::app::{Adapter, App, Json, RespExt, Routes, both};
use http::capture;
use http::handlers::plain::count;
use sealed_session::{BearerConfig, ManualClock, SealedSession, Session, SessionError};

fn login(session: &Session) -> Result<Json, SessionError> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

fn me(session: &Session) -> Result<Json, SessionError> {
    Ok(Json(
        serde_json::json!({ "user": session.get::<String>("user")? }),
    ))
}

fn app(on: Adapter, clock: &ManualClock) -> App {
    on.app(
        &Routes::new()
            .post("/login", login)
            .get("/me", me)
            .post("/count", count),
        SealedSession::sealed(keys())
            .bearer(BearerConfig::new().max_len(2048))
            .idle_timeout(Some(Duration::from_secs(60)))
            .clock(clock.clone()),
    )
}

async fn token_from_login(tc: &App) -> String {
    let resp = tc.post("/login").send().await;
    resp.assert_status_is_ok();
    let header = resp.headers().get("x-session-token").cloned();
    let body: serde_json::Value = serde_json::from_str(resp.body()).unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        header.unwrap().to_str().unwrap(),
        token,
        "the body's token is the one the header carries"
    );
    token
}

async fn login_token_round_trip_and_refresh_header(on: Adapter) {
    let clock = clock();
    let tc = app(on, &clock);
    // No header: an empty session, no token sent.
    let resp = tc.get("/me").send().await;
    resp.assert_status_is_ok();
    resp.assert_header_is_not_exist("x-session-token");
    resp.assert_json(serde_json::json!({ "user": null }));

    let token = token_from_login(&tc).await;
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_header_is_not_exist("x-session-token");
    resp.assert_json(serde_json::json!({ "user": "admin" }));

    let resp = tc
        .post("/count")
        .header("authorization", format!("bearer {token}"))
        .send()
        .await;
    let new = resp
        .headers()
        .get("x-session-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, token, "a changed session sends a new token");
    let resp = tc
        .post("/count")
        .header("authorization", format!("Bearer {new}"))
        .send()
        .await;
    resp.assert_text("2");
}

async fn bad_tokens_get_a_401_with_an_rfc6750_challenge(on: Adapter) {
    let clock = clock();
    let tc = app(on, &clock);
    let token = token_from_login(&tc).await;
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (t, reason) in [
        (tampered.as_str(), "bad_seal"),
        ("garbage!", "malformed"),
        (&"A".repeat(3000), "too_large"),
    ] {
        let (cap, _g) = capture();
        let resp = tc
            .get("/me")
            .header("authorization", format!("Bearer {t}"))
            .send()
            .await;
        resp.assert_status(StatusCode::UNAUTHORIZED);
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
        assert_eq!(cap.reasons(), vec![reason.to_owned()]);
    }
    // Expired by idleness.
    clock.advance(Duration::from_secs(60));
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(challenge.contains("idle"), "{challenge}");
}

/// Two `Authorization` headers are ambiguous (the field takes one value, RFC 9110): the
/// request is refused with RFC 6750's `invalid_request` before its handler, never served as
/// the first (or any) one of them.
async fn two_authorization_headers_are_refused_not_served_as_the_first(on: Adapter) {
    let clock = clock();
    let tc = app(on, &clock);
    let token = token_from_login(&tc).await;
    let bearer = format!("Bearer {token}");
    let basic = "Basic YWRtaW46bGV0bWVpbg==";
    for (first, second) in [
        (bearer.as_str(), "Bearer garbage"),
        ("Bearer garbage", bearer.as_str()),
        (bearer.as_str(), bearer.as_str()),
        (basic, bearer.as_str()),
        (bearer.as_str(), basic),
        (basic, basic),
    ] {
        let (cap, _g) = capture();
        let resp = tc
            .get("/me")
            .header("authorization", first)
            .header("authorization", second)
            .send()
            .await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_request\", error_description=\""),
            "{challenge}"
        );
        assert!(!challenge.contains(&token), "{challenge}");
        assert!(resp.headers().get("x-session-token").is_none());
        // One log line per reason per second: after the first, the refusal is counted, and
        // its line held back.
        let reasons = cap.reasons();
        assert!(
            reasons.iter().all(|r| r == "duplicate_authorization") && reasons.len() <= 1,
            "{reasons:?}"
        );
    }
    // The same token in one header is served.
    let resp = tc.get("/me").header("authorization", bearer).send().await;
    resp.assert_status_is_ok();
    resp.assert_json(serde_json::json!({ "user": "admin" }));
}

async fn another_scheme_is_no_session(on: Adapter) {
    let clock = clock();
    let tc = app(on, &clock);
    let resp = tc
        .get("/me")
        .header("authorization", "Basic YWRtaW46bGV0bWVpbg==")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_json(serde_json::json!({ "user": null }));
}

/// Found by fuzzing (`fuzz/`, target `authorization_header`): credentials of another scheme
/// that were not ASCII, or longer than the bearer limit, were answered with a 401 before the
/// scheme was read.
async fn other_schemes_are_no_session_whatever_their_bytes_or_length(on: Adapter) {
    let clock = clock();
    let tc = app(on, &clock);
    let long = format!("Basic {}", "A".repeat(4000));
    for value in [
        &b"Basic \xb9\xff"[..],
        b"\xb9",
        b"ApiKey caf\xc3\xa9",
        long.as_bytes(),
    ] {
        let resp = tc
            .get("/me")
            .header("authorization", HeaderValue::from_bytes(value).unwrap())
            .send()
            .await;
        resp.assert_status_is_ok();
        resp.assert_json(serde_json::json!({ "user": null }));
    }
    // A bearer token is still refused when it is not ASCII or too long.
    let long = format!("Bearer {}", "A".repeat(4000));
    for value in [&b"Bearer caf\xc3\xa9"[..], long.as_bytes()] {
        let resp = tc
            .get("/me")
            .header("authorization", HeaderValue::from_bytes(value).unwrap())
            .send()
            .await;
        resp.assert_status(StatusCode::UNAUTHORIZED);
    }
}

async fn a_bearer_token_is_not_a_cookie_token(on: Adapter) {
    // The purpose binding differs between the bearer transport ("sid") and the cookie
    // ("__Host-sid"), so a token cannot be moved from one to the other.
    let clock = clock();
    let tc = app(on, &clock);
    let token = token_from_login(&tc).await;
    let cookie_app = on.app(
        &Routes::new().get("/me", me),
        SealedSession::sealed(keys()).clock(clock.clone()),
    );
    let resp = cookie_app
        .get("/me")
        .header("cookie", format!("__Host-sid={token}"))
        .send()
        .await;
    resp.assert_json(serde_json::json!({ "user": null }));
}

both!(
    login_token_round_trip_and_refresh_header,
    bad_tokens_get_a_401_with_an_rfc6750_challenge,
    two_authorization_headers_are_refused_not_served_as_the_first,
    another_scheme_is_no_session,
    other_schemes_are_no_session_whatever_their_bytes_or_length,
    a_bearer_token_is_not_a_cookie_token,
);
