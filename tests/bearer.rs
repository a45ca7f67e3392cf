//! The bearer transport: tokens in `Authorization: Bearer`, new tokens in a response header,
//! 401s with RFC 6750 challenges.
#![cfg(feature = "poem")]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use common::fixtures::{clock, keys};
use http::capture;
use http::handlers::count;
use poem::http::{HeaderValue, StatusCode};
use poem::test::TestClient;
use poem::web::Json;
use poem::{Endpoint, EndpointExt, Route, get, handler, post};
use sealed_session::{BearerConfig, ManualClock, SealedSession, Session};

#[handler]
fn login(session: &Session) -> poem::Result<Json<serde_json::Value>> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

#[handler]
fn me(session: &Session) -> poem::Result<Json<serde_json::Value>> {
    Ok(Json(
        serde_json::json!({ "user": session.get::<String>("user")? }),
    ))
}

fn app(clock: &ManualClock) -> impl Endpoint {
    Route::new()
        .at("/login", post(login))
        .at("/me", get(me))
        .at("/count", post(count))
        .with(
            SealedSession::sealed(keys())
                .bearer(BearerConfig::new().max_len(2048))
                .idle_timeout(Some(Duration::from_secs(60)))
                .clock(clock.clone()),
        )
}

async fn token_from_login(tc: &TestClient<impl Endpoint>) -> String {
    let resp = tc.post("/login").send().await;
    resp.assert_status_is_ok();
    let header = resp.0.headers().get("x-session-token").cloned();
    let body: serde_json::Value =
        serde_json::from_str(&resp.0.into_body().into_string().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        header.unwrap().to_str().unwrap(),
        token,
        "the body's token is the one the header carries"
    );
    token
}

#[tokio::test]
async fn login_token_round_trip_and_refresh_header() {
    let clock = clock();
    let tc = TestClient::new(app(&clock));
    // No header: an empty session, no token sent.
    let resp = tc.get("/me").send().await;
    resp.assert_status_is_ok();
    resp.assert_header_is_not_exist("x-session-token");
    resp.assert_json(serde_json::json!({ "user": null })).await;

    let token = token_from_login(&tc).await;
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_header_is_not_exist("x-session-token");
    resp.assert_json(serde_json::json!({ "user": "admin" }))
        .await;

    let resp = tc
        .post("/count")
        .header("authorization", format!("bearer {token}"))
        .send()
        .await;
    let new = resp
        .0
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
    resp.assert_text("2").await;
}

#[tokio::test(flavor = "current_thread")]
async fn bad_tokens_get_a_401_with_an_rfc6750_challenge() {
    let clock = clock();
    let tc = TestClient::new(app(&clock));
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
            .0
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
        .0
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
#[tokio::test(flavor = "current_thread")]
async fn two_authorization_headers_are_refused_not_served_as_the_first() {
    let clock = clock();
    let tc = TestClient::new(app(&clock));
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
            .0
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
        assert!(resp.0.headers().get("x-session-token").is_none());
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
    resp.assert_json(serde_json::json!({ "user": "admin" }))
        .await;
}

#[tokio::test]
async fn another_scheme_is_no_session() {
    let clock = clock();
    let tc = TestClient::new(app(&clock));
    let resp = tc
        .get("/me")
        .header("authorization", "Basic YWRtaW46bGV0bWVpbg==")
        .send()
        .await;
    resp.assert_status_is_ok();
    resp.assert_json(serde_json::json!({ "user": null })).await;
}

/// Found by fuzzing (`fuzz/`, target `authorization_header`): credentials of another scheme
/// that were not ASCII, or longer than the bearer limit, were answered with a 401 before the
/// scheme was read.
#[tokio::test]
async fn other_schemes_are_no_session_whatever_their_bytes_or_length() {
    let clock = clock();
    let tc = TestClient::new(app(&clock));
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
        resp.assert_json(serde_json::json!({ "user": null })).await;
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

#[tokio::test]
async fn a_bearer_token_is_not_a_cookie_token() {
    // The purpose binding differs between the bearer transport ("sid") and the cookie
    // ("__Host-sid"), so a token cannot be moved from one to the other.
    let clock = clock();
    let tc = TestClient::new(app(&clock));
    let token = token_from_login(&tc).await;
    let cookie_app = Route::new()
        .at("/me", get(me))
        .with(SealedSession::sealed(keys()).clock(clock.clone()));
    let resp = TestClient::new(cookie_app)
        .get("/me")
        .header("cookie", format!("__Host-sid={token}"))
        .send()
        .await;
    resp.assert_json(serde_json::json!({ "user": null })).await;
}
