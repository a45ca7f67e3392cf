//! Revocation through the middleware: logout, regenerate and "log out everywhere" revoke,
//! and a replayed cookie or token is refused like an expired one.

mod http;

use std::sync::Arc;
use std::time::Duration;

use http::handlers::{everywhere, login_admin_subject, logout, user};
use http::{Jar, capture, send};
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{Endpoint, EndpointExt, Route, get, handler, post};
use sealed_session::denylist::{
    BoxFuture, Check, Denylist, DenylistError, Health, MemoryDenylist, Status,
};
use sealed_session::{
    BearerConfig, Keyring, ManualClock, SealedSession, Session, SessionId, Timestamp,
};

#[handler]
fn login(session: &Session) -> poem::Result<String> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(session.token()?.unwrap_or_default())
}

fn routes() -> Route {
    Route::new()
        .at("/login", post(login))
        .at("/me", get(user))
        .at("/logout", post(logout))
        .at("/relogin", post(login_admin_subject))
        .at("/everywhere", post(everywhere))
}

fn keys() -> Keyring {
    Keyring::from_secret("revocation tests secret, long enough!!!").unwrap()
}

fn app(d: Arc<dyn Denylist>) -> impl Endpoint {
    routes().with(SealedSession::new(keys()).denylist(d))
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
    let clock = ManualClock::new(Timestamp::from_millis(1_764_000_000_000));
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc =
        TestClient::new(routes().with(SealedSession::new(keys()).denylist(d).clock(clock.clone())));
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
    let tc = TestClient::new(routes().with(SealedSession::new(keys())));
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
            SealedSession::new(keys())
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
    let plain = TestClient::new(routes().with(SealedSession::new(keys())));
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
    let clock = ManualClock::new(Timestamp::from_millis(1_764_000_000_000));
    let d: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let tc = TestClient::new(
        routes()
            .at("/shorten-logout", post(shorten_then_logout))
            .with(
                SealedSession::new(keys())
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
                SealedSession::new(keys())
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
