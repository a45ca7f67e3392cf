//! Revocation through the middleware: logout, regenerate and "log out everywhere" revoke,
//! and a replayed cookie or token is refused like an expired one. Every scenario runs on the
//! Poem middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{clock, keys};
use http::app::{Adapter, App, RespExt, Routes, both, send};
use http::handlers::plain::{
    everywhere, login_admin_subject, login_admin_subject_token, logout, user,
};
use http::{Jar, capture};
use sealed_session::denylist::{
    BoxFuture, Check, Denylist, DenylistError, Health, MemoryDenylist, Status,
};
use sealed_session::{
    BearerConfig, Clock, SealedSession, Session, SessionError, SessionId, Timestamp,
};

fn routes() -> Routes {
    Routes::new()
        .post("/login", login_admin_subject_token)
        .get("/me", user)
        .post("/logout", logout)
        .post("/relogin", login_admin_subject)
        .post("/everywhere", everywhere)
}

fn app(on: Adapter, d: Arc<dyn Denylist>) -> App {
    on.app(&routes(), SealedSession::sealed(keys()).denylist(d))
}

async fn a_cookie_replayed_after_logout_is_refused(on: Adapter) {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = app(on, d.clone());
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let stolen = jar.clone();
    assert_eq!(send(&tc, &mut jar, false, "/me").await.1, "admin");
    send(&tc, &mut jar, true, "/logout").await;
    assert_eq!(d.status().revoked_sessions, 1);
    // The attacker kept a copy of the cookie: it is refused and cleared, one event says why.
    let mut replay = stolen.clone();
    let (cap, _g) = capture();
    assert_eq!(send(&tc, &mut replay, false, "/me").await.1, "<none>");
    assert_eq!(cap.reasons(), vec!["revoked".to_owned()]);
    assert!(replay.header().is_none(), "the revoked cookie is cleared");
}

async fn regenerate_revokes_the_previous_id(on: Adapter) {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = app(on, d);
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let before = jar.clone();
    send(&tc, &mut jar, true, "/relogin").await;
    assert_eq!(send(&tc, &mut jar, false, "/me").await.1, "admin");
    let mut old = before;
    assert_eq!(
        send(&tc, &mut old, false, "/me").await.1,
        "<none>",
        "the pre-regenerate cookie is dead"
    );
}

async fn logout_everywhere_ends_every_session_of_the_user(on: Adapter) {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone()),
    );
    let (mut laptop, mut phone) = (Jar::default(), Jar::default());
    send(&tc, &mut laptop, true, "/login").await;
    send(&tc, &mut phone, true, "/login").await;
    clock.advance(Duration::from_secs(1));
    let (status, _) = send(&tc, &mut laptop, true, "/everywhere").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(send(&tc, &mut phone, false, "/me").await.1, "<none>");
    assert_eq!(send(&tc, &mut laptop, false, "/me").await.1, "<none>");
    // Logging in again afterwards works, even within the same millisecond.
    send(&tc, &mut phone, true, "/login").await;
    assert_eq!(send(&tc, &mut phone, false, "/me").await.1, "admin");
}

async fn logout_everywhere_without_a_denylist_is_a_clear_error(on: Adapter) {
    let tc = on.app(&routes(), SealedSession::sealed(keys()));
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let (status, body) = send(&tc, &mut jar, true, "/everywhere").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no denylist"), "{body}");
}

async fn a_revoked_bearer_token_gets_a_401(on: Adapter) {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .bearer(BearerConfig::new())
            .denylist(d),
    );
    let token = tc.post("/login").send().await.into_body();
    let auth = format!("Bearer {token}");
    tc.get("/me")
        .header("authorization", &auth)
        .send()
        .await
        .assert_text("admin");
    tc.post("/logout")
        .header("authorization", &auth)
        .send()
        .await
        .assert_status_is_ok();
    let resp = tc.get("/me").header("authorization", &auth).send().await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        challenge.contains("invalid_token") && challenge.contains("revoked"),
        "{challenge}"
    );
}

/// A denylist whose backend is down: checks say Unavailable, revocations fail.
struct Down;
impl Denylist for Down {
    fn check(&self, _: &SessionId, _: Option<&str>, _: Timestamp) -> Check {
        Check::Unavailable
    }
    fn revoke(&self, _: SessionId, _: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Box::pin(async {
            Err(DenylistError::Backend {
                backend: "down",
                op: "record a revocation",
                source: "connection refused".into(),
            })
        })
    }
    fn revoke_subject(&self, _: &str, _: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Box::pin(async {
            Err(DenylistError::Backend {
                backend: "down",
                op: "record a revocation",
                source: "connection refused".into(),
            })
        })
    }
    fn status(&self) -> Status {
        Status::new(Health::Unavailable { stale_for: None }, 0, 0)
    }
}

/// Allows every session but cannot record revocations.
struct CannotRecord;
impl Denylist for CannotRecord {
    fn check(&self, _: &SessionId, _: Option<&str>, _: Timestamp) -> Check {
        Check::Allowed
    }
    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Down.revoke(id, until)
    }
    fn revoke_subject(&self, s: &str, b: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Down.revoke_subject(s, b)
    }
    fn status(&self) -> Status {
        Status::new(Health::Healthy, 0, 0)
    }
}

async fn an_unavailable_denylist_is_a_503_and_a_failed_revocation_is_never_reported_as_logout(
    on: Adapter,
) {
    // Sessions made without a denylist, presented to instances whose denylist is down.
    let plain = on.app(&routes(), SealedSession::sealed(keys()));
    let mut jar = Jar::default();
    send(&plain, &mut jar, true, "/login").await;

    let down = app(on, Arc::new(Down));
    let mut j = jar.clone();
    let (status, _) = send(&down, &mut j, false, "/me").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "possibly revoked sessions are not accepted"
    );

    let cannot = app(on, Arc::new(CannotRecord));
    let mut j = jar.clone();
    let (status, body) = send(&cannot, &mut j, true, "/logout").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("not recorded"), "{body}");
    assert_eq!(
        j.cookies, jar.cookies,
        "the cookie stays, so the user can try again"
    );
    let mut j = jar.clone();
    let (status, _) = send(&cannot, &mut j, true, "/everywhere").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

fn shorten_then_logout(session: &Session) -> Result<(), SessionError> {
    // Shortening the session in the same request must not shorten its revocation: the
    // cookie the client already holds still carries the original deadline.
    session.set_max_age(Duration::from_secs(1));
    session.destroy()?;
    Ok(())
}

async fn a_revocation_lasts_as_long_as_the_token_that_is_out_there(on: Adapter) {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = on.app(
        &routes().post("/shorten-logout", shorten_then_logout),
        SealedSession::sealed(keys())
            .max_age(Duration::from_secs(3600))
            .idle_timeout(None)
            .denylist(d)
            .clock(clock.clone()),
    );
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let stolen = jar.clone();
    send(&tc, &mut jar, true, "/shorten-logout").await;
    // Well past the shortened lifetime, well within the original one.
    clock.advance(Duration::from_secs(600));
    let mut replay = stolen.clone();
    assert_eq!(send(&tc, &mut replay, false, "/me").await.1, "<none>");
}

fn relogin_too_big(session: &Session) -> Result<(), SessionError> {
    session.regenerate()?;
    session.insert("blob", &"x".repeat(4000))?;
    Ok(())
}

async fn the_ended_session_is_revoked_even_when_the_new_one_cannot_be_sealed(on: Adapter) {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let codec = sealed_session::SealedCodec::new(keys()).max_token_len(1024);
    let tc = on.app(
        &routes().post("/relogin-too-big", relogin_too_big),
        SealedSession::with_codec(codec).denylist(d.clone()),
    );
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let before = jar.clone();
    let (status, body) = send(&tc, &mut jar, true, "/relogin-too-big").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(d.status().revoked_sessions, 1);
    let mut replay = before.clone();
    assert_eq!(send(&tc, &mut replay, false, "/me").await.1, "<none>");
}

fn issue_then_destroy(session: &Session) -> Result<String, SessionError> {
    session.insert("user", "admin")?;
    let token = session.token()?.unwrap_or_default();
    session.destroy()?;
    Ok(token)
}

async fn a_token_handed_out_then_destroyed_in_the_same_request_is_revoked(on: Adapter) {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = on.app(
        &routes().post("/issue-destroy", issue_then_destroy),
        SealedSession::sealed(keys())
            .bearer(BearerConfig::default())
            .denylist(d.clone()),
    );
    let token = tc.post("/issue-destroy").send().await.into_body();
    assert!(!token.is_empty());
    assert_eq!(d.status().revoked_sessions, 1);
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// The answer of a [`slow`] handler.
type Slow = Pin<Box<dyn Future<Output = Result<&'static str, SessionError>> + Send>>;

/// A handler that waits on `gate`, as a slow request would, then runs `then` on the
/// request's session and answers `done`.
fn slow<F, Fut>(
    gate: Arc<tokio::sync::Notify>,
    done: &'static str,
    then: F,
) -> impl Fn(Session) -> Slow + Send + Sync + 'static
where
    F: Fn(Session) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), SessionError>> + Send + 'static,
{
    move |session: Session| {
        let (gate, then) = (gate.clone(), then.clone());
        Box::pin(async move {
            gate.notified().await;
            then(session).await?;
            Ok(done)
        })
    }
}

/// A password change that waits on `gate` before it logs out everywhere.
fn slow_everywhere(gate: Arc<tokio::sync::Notify>) -> impl Fn(Session) -> Slow + Send + Sync {
    slow(
        gate,
        "logged out everywhere",
        |session: Session| async move {
            session.logout_everywhere().await?;
            Ok(())
        },
    )
}

/// A thief's login that begins after a slow password change began, and finishes before it
/// logs out everywhere, is cut off too: the cut-off is the time of the call, not of the
/// request's start.
async fn logout_everywhere_cuts_off_at_the_moment_of_the_call(on: Adapter) {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let gate = Arc::new(tokio::sync::Notify::new());
    let tc = on.app(
        &routes().post("/password", slow_everywhere(gate.clone())),
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone()),
    );
    let mut alice = Jar::default();
    send(&tc, &mut alice, true, "/login").await;
    let mut thief = Jar::default();
    let change = async {
        let mut jar = alice.clone();
        send(&tc, &mut jar, true, "/password").await
    };
    let steal = async {
        // The password change has begun (polled first) and waits; the thief logs in.
        clock.advance(Duration::from_secs(1));
        send(&tc, &mut thief, true, "/login").await;
        assert_eq!(send(&tc, &mut thief, false, "/me").await.1, "admin");
        clock.advance(Duration::from_secs(1));
        gate.notify_one();
    };
    let ((status, _), ()) = tokio::join!(change, steal);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(&tc, &mut thief, false, "/me").await.1,
        "<none>",
        "the thief's session began before the call"
    );
    // A login after the call is not caught by it.
    clock.advance(Duration::from_millis(1));
    let mut again = Jar::default();
    send(&tc, &mut again, true, "/login").await;
    assert_eq!(send(&tc, &mut again, false, "/me").await.1, "admin");
}

/// Logs out everywhere, then signs the current user in again in the same request ("change
/// password, stay signed in here").
async fn everywhere_then_relogin(session: Session) -> Result<(), SessionError> {
    session.logout_everywhere().await?;
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(())
}

async fn a_session_started_after_logout_everywhere_in_the_same_request_survives(on: Adapter) {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = on.app(
        &routes().post("/password", everywhere_then_relogin),
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone()),
    );
    let mut here = Jar::default();
    send(&tc, &mut here, true, "/login").await;
    let mut elsewhere = here.clone();
    clock.advance(Duration::from_secs(1));
    send(&tc, &mut here, true, "/password").await;
    assert_eq!(send(&tc, &mut here, false, "/me").await.1, "admin");
    assert_eq!(send(&tc, &mut elsewhere, false, "/me").await.1, "<none>");
}

/// Cycles the session's id (and renews it) after waiting on `gate`.
fn slow_cycle(gate: Arc<tokio::sync::Notify>) -> impl Fn(Session) -> Slow + Send + Sync {
    slow(gate, "cycled", |session: Session| async move {
        session.cycle_id()?;
        session.touch();
        Ok(())
    })
}

/// A session whose sign-in precedes a subject revocation stays revoked through `cycle_id`
/// and renewal, even when the request that cycles it began before the revocation.
async fn cycle_id_and_renewal_do_not_outlive_a_subject_revocation(on: Adapter) {
    let clock = clock();
    let memory = MemoryDenylist::with_clock(clock.clone());
    let d: Arc<dyn Denylist> = Arc::new(memory.clone());
    let gate = Arc::new(tokio::sync::Notify::new());
    let tc = on.app(
        &routes().post("/cycle", slow_cycle(gate.clone())),
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone())
            .rolling(true),
    );
    let mut alice = Jar::default();
    send(&tc, &mut alice, true, "/login").await;
    clock.advance(Duration::from_secs(1));
    let cycle = async { send(&tc, &mut alice, true, "/cycle").await };
    let revoke = async {
        clock.advance(Duration::from_secs(1));
        memory.insert_subject("admin", clock.now()).unwrap();
        clock.advance(Duration::from_secs(1));
        gate.notify_one();
    };
    let ((status, body), ()) = tokio::join!(cycle, revoke);
    assert_eq!((status, body.as_str()), (StatusCode::OK, "cycled"));
    assert_eq!(
        send(&tc, &mut alice, false, "/me").await.1,
        "<none>",
        "the cycled and renewed token still carries the original sign-in"
    );
}

/// Shortens the session to a minute.
fn shorten(session: &Session) {
    session.set_max_age(Duration::from_secs(60));
}

/// Two tokens of one id are out there, a long one and one a later request shortened; a
/// logout with the short one revokes the id for as long as the long one could live.
async fn a_revocation_outlives_every_token_of_the_id(on: Adapter) {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = on.app(
        &routes().post("/shorten", shorten),
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone())
            .idle_timeout(None),
    );
    let mut long = Jar::default();
    send(&tc, &mut long, true, "/login").await;
    let mut short = long.clone();
    send(&tc, &mut short, true, "/shorten").await;
    send(&tc, &mut short, true, "/logout").await;
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        send(&tc, &mut long, false, "/me").await.1,
        "<none>",
        "the long token outlives the short one's deadline, not its revocation"
    );
}

both!(
    a_cookie_replayed_after_logout_is_refused,
    regenerate_revokes_the_previous_id,
    logout_everywhere_ends_every_session_of_the_user,
    logout_everywhere_without_a_denylist_is_a_clear_error,
    a_revoked_bearer_token_gets_a_401,
    an_unavailable_denylist_is_a_503_and_a_failed_revocation_is_never_reported_as_logout,
    a_revocation_lasts_as_long_as_the_token_that_is_out_there,
    the_ended_session_is_revoked_even_when_the_new_one_cannot_be_sealed,
    a_token_handed_out_then_destroyed_in_the_same_request_is_revoked,
    logout_everywhere_cuts_off_at_the_moment_of_the_call,
    a_session_started_after_logout_everywhere_in_the_same_request_survives,
    cycle_id_and_renewal_do_not_outlive_a_subject_revocation,
    a_revocation_outlives_every_token_of_the_id,
);
