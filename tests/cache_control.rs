//! No session token in a shared cache: a response that carries a new session token (a
//! session `Set-Cookie`, or the bearer refresh header) is sent with
//! `Cache-Control: private, no-store`, whatever the handler set. Every scenario runs on the
//! Poem middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use ::http::header::CACHE_CONTROL;
use common::fixtures::{clock, keys};
use http::app::{Adapter, Reply, Resp, RespExt, Routes, both};
use http::set_cookies;
use sealed_session::{BearerConfig, SealedSession, Secure, Session, SessionError};

/// Signs in, and says the page may be kept by any cache for an hour.
fn public_login(session: &Session) -> Result<Reply, SessionError> {
    session.insert("user", "alice")?;
    let token = session.token()?.unwrap_or_default();
    Ok(Reply::text(token).with_header(CACHE_CONTROL, "public, max-age=3600"))
}

/// Reads the session, and says shared caches may keep the page for a minute.
fn public_page(session: &Session) -> Result<Reply, SessionError> {
    let user = session.get::<String>("user")?.unwrap_or_default();
    Ok(Reply::text(user).with_header(CACHE_CONTROL, "s-maxage=60"))
}

/// Says the page may be cached, and leaves the session alone.
fn public_static(_: &Session) -> Reply {
    Reply::text("static").with_header(CACHE_CONTROL, "public, max-age=60")
}

fn routes() -> Routes {
    Routes::new()
        .post("/login", public_login)
        .get("/page", public_page)
        .get("/static", public_static)
}

fn cache_control(resp: &Resp) -> Vec<String> {
    resp.headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect()
}

async fn a_new_session_cookie_overrides_a_public_cache_control(on: Adapter) {
    let clock = clock();
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .secure(Secure::Never)
            .clock(clock.clone()),
    );
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

async fn a_bearer_refresh_header_overrides_a_public_cache_control(on: Adapter) {
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys()).bearer(BearerConfig::new()),
    );
    let resp = tc.post("/login").send().await;
    resp.assert_status_is_ok();
    assert_eq!(cache_control(&resp), vec!["private, no-store".to_owned()]);
}

both!(
    a_new_session_cookie_overrides_a_public_cache_control,
    a_bearer_refresh_header_overrides_a_public_cache_control,
);
