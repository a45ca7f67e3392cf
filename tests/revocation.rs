//! Revocation through the middleware: logout, regenerate and "log out everywhere" revoke,
//! and a replayed cookie or token is refused like an expired one.
#![cfg(feature = "poem")]

mod common {
    pub mod fixtures;
}
mod http;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{clock, keys};
use http::handlers::{everywhere, login_admin_subject, login_admin_subject_token, logout, user};
use http::{Jar, capture, send};
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{Endpoint, EndpointExt, Route, get, handler, post};
use sealed_session::denylist::{
    BoxFuture, Check, Denylist, DenylistError, Health, MemoryDenylist, Status,
};
use sealed_session::{BearerConfig, Clock, SealedSession, Session, SessionId, Timestamp};

fn routes() -> Route {
    Route::new()
        .at("/login", post(login_admin_subject_token))
        .at("/me", get(user))
        .at("/logout", post(logout))
        .at("/relogin", post(login_admin_subject))
        .at("/everywhere", post(everywhere))
}

fn app(d: Arc<dyn Denylist>) -> impl Endpoint {
    routes().with(SealedSession::sealed(keys()).denylist(d))
}

#[tokio::test(flavor = "current_thread")]
async fn a_cookie_replayed_after_logout_is_refused() {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = TestClient::new(app(d.clone()));
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

#[tokio::test]
async fn regenerate_revokes_the_previous_id() {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = TestClient::new(app(d));
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

#[tokio::test]
async fn logout_everywhere_ends_every_session_of_the_user() {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = TestClient::new(
        routes().with(
            SealedSession::sealed(keys())
                .denylist(d)
                .clock(clock.clone()),
        ),
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

#[tokio::test]
async fn logout_everywhere_without_a_denylist_is_a_clear_error() {
    let tc = TestClient::new(routes().with(SealedSession::sealed(keys())));
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/login").await;
    let (status, body) = send(&tc, &mut jar, true, "/everywhere").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no denylist"), "{body}");
}

#[tokio::test]
async fn a_revoked_bearer_token_gets_a_401() {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = TestClient::new(
        routes().with(
            SealedSession::sealed(keys())
                .bearer(BearerConfig::new())
                .denylist(d),
        ),
    );
    let token = tc
        .post("/login")
        .send()
        .await
        .0
        .into_body()
        .into_string()
        .await
        .unwrap();
    let auth = format!("Bearer {token}");
    tc.get("/me")
        .header("authorization", &auth)
        .send()
        .await
        .assert_text("admin")
        .await;
    tc.post("/logout")
        .header("authorization", &auth)
        .send()
        .await
        .assert_status_is_ok();
    let resp = tc.get("/me").header("authorization", &auth).send().await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = resp
        .0
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

#[tokio::test]
async fn an_unavailable_denylist_is_a_503_and_a_failed_revocation_is_never_reported_as_logout() {
    // Sessions made without a denylist, presented to instances whose denylist is down.
    let plain = TestClient::new(routes().with(SealedSession::sealed(keys())));
    let mut jar = Jar::default();
    send(&plain, &mut jar, true, "/login").await;

    let down = TestClient::new(app(Arc::new(Down)));
    let mut j = jar.clone();
    let (status, _) = send(&down, &mut j, false, "/me").await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "possibly revoked sessions are not accepted"
    );

    let cannot = TestClient::new(app(Arc::new(CannotRecord)));
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

#[handler]
fn shorten_then_logout(session: &Session) -> poem::Result<()> {
    // Shortening the session in the same request must not shorten its revocation: the
    // cookie the client already holds still carries the original deadline.
    session.set_max_age(Duration::from_secs(1));
    session.destroy()?;
    Ok(())
}

#[tokio::test]
async fn a_revocation_lasts_as_long_as_the_token_that_is_out_there() {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = TestClient::new(
        routes()
            .at("/shorten-logout", post(shorten_then_logout))
            .with(
                SealedSession::sealed(keys())
                    .max_age(Duration::from_secs(3600))
                    .idle_timeout(None)
                    .denylist(d)
                    .clock(clock.clone()),
            ),
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

#[handler]
fn relogin_too_big(session: &Session) -> poem::Result<()> {
    session.regenerate()?;
    session.insert("blob", &"x".repeat(4000))?;
    Ok(())
}

#[tokio::test]
async fn the_ended_session_is_revoked_even_when_the_new_one_cannot_be_sealed() {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let codec = sealed_session::SealedCodec::new(keys()).max_token_len(1024);
    let tc = TestClient::new(
        routes()
            .at("/relogin-too-big", post(relogin_too_big))
            .with(SealedSession::with_codec(codec).denylist(d.clone())),
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

#[handler]
fn issue_then_destroy(session: &Session) -> poem::Result<String> {
    session.insert("user", "admin")?;
    let token = session.token()?.unwrap_or_default();
    session.destroy()?;
    Ok(token)
}

#[tokio::test]
async fn a_token_handed_out_then_destroyed_in_the_same_request_is_revoked() {
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::new());
    let tc = TestClient::new(
        routes()
            .at("/issue-destroy", post(issue_then_destroy))
            .with(
                SealedSession::sealed(keys())
                    .bearer(BearerConfig::default())
                    .denylist(d.clone()),
            ),
    );
    let token = tc
        .post("/issue-destroy")
        .send()
        .await
        .0
        .into_body()
        .into_string()
        .await
        .unwrap();
    assert!(!token.is_empty());
    assert_eq!(d.status().revoked_sessions, 1);
    let resp = tc
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::UNAUTHORIZED);
}

/// An endpoint that waits on `gate`, as a slow request would, then runs `then` on the
/// request's session and answers `done`.
fn slow<F, Fut>(
    gate: Arc<tokio::sync::Notify>,
    done: &'static str,
    then: F,
) -> impl Endpoint<Output = String>
where
    F: Fn(Session) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = poem::Result<()>> + Send,
{
    poem::endpoint::make(move |req: poem::Request| {
        let (gate, then) = (gate.clone(), then.clone());
        async move {
            let session = req
                .extensions()
                .get::<Session>()
                .cloned()
                .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))?;
            gate.notified().await;
            then(session).await?;
            Ok::<_, poem::Error>(done.to_owned())
        }
    })
}

/// A password change that waits on `gate` before it logs out everywhere.
fn slow_everywhere(gate: Arc<tokio::sync::Notify>) -> impl Endpoint<Output = String> {
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
#[tokio::test(flavor = "current_thread")]
async fn logout_everywhere_cuts_off_at_the_moment_of_the_call() {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let gate = Arc::new(tokio::sync::Notify::new());
    let app = routes()
        .at("/password", post(slow_everywhere(gate.clone())))
        .with(
            SealedSession::sealed(keys())
                .denylist(d)
                .clock(clock.clone()),
        );
    let tc = TestClient::new(app);
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
#[handler]
async fn everywhere_then_relogin(session: &Session) -> poem::Result<()> {
    session.logout_everywhere().await?;
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(())
}

#[tokio::test]
async fn a_session_started_after_logout_everywhere_in_the_same_request_survives() {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let app = routes()
        .at("/password", post(everywhere_then_relogin))
        .with(
            SealedSession::sealed(keys())
                .denylist(d)
                .clock(clock.clone()),
        );
    let tc = TestClient::new(app);
    let mut here = Jar::default();
    send(&tc, &mut here, true, "/login").await;
    let mut elsewhere = here.clone();
    clock.advance(Duration::from_secs(1));
    send(&tc, &mut here, true, "/password").await;
    assert_eq!(send(&tc, &mut here, false, "/me").await.1, "admin");
    assert_eq!(send(&tc, &mut elsewhere, false, "/me").await.1, "<none>");
}

/// Cycles the session's id (and renews it) after waiting on `gate`.
fn slow_cycle(gate: Arc<tokio::sync::Notify>) -> impl Endpoint<Output = String> {
    slow(gate, "cycled", |session: Session| async move {
        session.cycle_id()?;
        session.touch();
        Ok(())
    })
}

/// A session whose sign-in precedes a subject revocation stays revoked through `cycle_id`
/// and renewal, even when the request that cycles it began before the revocation.
#[tokio::test(flavor = "current_thread")]
async fn cycle_id_and_renewal_do_not_outlive_a_subject_revocation() {
    let clock = clock();
    let memory = MemoryDenylist::with_clock(clock.clone());
    let d: Arc<dyn Denylist> = Arc::new(memory.clone());
    let gate = Arc::new(tokio::sync::Notify::new());
    let app = routes().at("/cycle", post(slow_cycle(gate.clone()))).with(
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone())
            .rolling(true),
    );
    let tc = TestClient::new(app);
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
#[handler]
fn shorten(session: &Session) {
    session.set_max_age(Duration::from_secs(60));
}

/// Two tokens of one id are out there, a long one and one a later request shortened; a
/// logout with the short one revokes the id for as long as the long one could live.
#[tokio::test]
async fn a_revocation_outlives_every_token_of_the_id() {
    let clock = clock();
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let app = routes().at("/shorten", post(shorten)).with(
        SealedSession::sealed(keys())
            .denylist(d)
            .clock(clock.clone())
            .idle_timeout(None),
    );
    let tc = TestClient::new(app);
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
