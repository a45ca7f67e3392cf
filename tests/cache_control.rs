//! No session token in a shared cache: a response that carries a new session token (a
//! session `Set-Cookie`, or the bearer refresh header) is sent with
//! `Cache-Control: private, no-store`, whatever the handler set.
#![cfg(feature = "poem")]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use common::fixtures::{clock, keys};
use http::set_cookies;
use poem::http::header::CACHE_CONTROL;
use poem::test::TestClient;
use poem::web::WithHeader;
use poem::{EndpointExt, IntoResponse, Route, get, handler, post};
use sealed_session::{BearerConfig, SealedSession, Secure, Session};

/// Signs in, and says the page may be kept by any cache for an hour.
#[handler]
fn public_login(session: &Session) -> poem::Result<WithHeader<String>> {
    session.insert("user", "alice")?;
    let token = session.token()?.unwrap_or_default();
    Ok(token.with_header(CACHE_CONTROL, "public, max-age=3600"))
}

/// Reads the session, and says shared caches may keep the page for a minute.
#[handler]
fn public_page(session: &Session) -> poem::Result<WithHeader<String>> {
    let user = session.get::<String>("user")?.unwrap_or_default();
    Ok(user.with_header(CACHE_CONTROL, "s-maxage=60"))
}

/// Says the page may be cached, and leaves the session alone.
#[handler]
fn public_static() -> WithHeader<&'static str> {
    "static".with_header(CACHE_CONTROL, "public, max-age=60")
}

fn routes() -> Route {
    Route::new()
        .at("/login", post(public_login))
        .at("/page", get(public_page))
        .at("/static", get(public_static))
}

fn cache_control(resp: &poem::test::TestResponse) -> Vec<String> {
    resp.0
        .headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_session_cookie_overrides_a_public_cache_control() {
    let clock = clock();
    let app = routes().with(
        SealedSession::sealed(keys())
            .secure(Secure::Never)
            .clock(clock.clone()),
    );
    let tc = TestClient::new(app);
    let resp = tc.post("/login").send().await;
    resp.assert_status_is_ok();
    assert_eq!(set_cookies(&resp).len(), 1);
    assert_eq!(cache_control(&resp), vec!["private, no-store".to_owned()]);
    let cookie = set_cookies(&resp).remove(0);
    let cookie = format!("{}={}", cookie.name, cookie.value);

    // A read that sends no new token keeps the handler's header.
    let resp = tc.get("/page").header("cookie", &cookie).send().await;
    assert!(set_cookies(&resp).is_empty());
    assert_eq!(cache_control(&resp), vec!["s-maxage=60".to_owned()]);

    // Renewal, behind the handler's back, on a route it says shared caches may keep.
    clock.advance(Duration::from_secs(20 * 60));
    let resp = tc.get("/page").header("cookie", &cookie).send().await;
    assert_eq!(set_cookies(&resp).len(), 1, "the session was renewed");
    assert_eq!(cache_control(&resp), vec!["private, no-store".to_owned()]);

    // A route that touches no session is left alone.
    let resp = tc.get("/static").send().await;
    assert_eq!(cache_control(&resp), vec!["public, max-age=60".to_owned()]);
}

#[tokio::test]
async fn a_bearer_refresh_header_overrides_a_public_cache_control() {
    let app = routes().with(SealedSession::sealed(keys()).bearer(BearerConfig::new()));
    let tc = TestClient::new(app);
    let resp = tc.post("/login").send().await;
    resp.assert_status_is_ok();
    assert_eq!(cache_control(&resp), vec!["private, no-store".to_owned()]);
}
