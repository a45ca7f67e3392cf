//! The tower adapter: `SealedSession::layer()` on an axum 0.8 router and on a bare tower
//! service, `Session` as an axum extractor, and the engine's own answers (431, 401) through
//! the layer.
#![cfg(feature = "tower")]

mod common {
    pub mod fixtures;
}

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use common::fixtures::keys;
use http::{Request, Response, StatusCode, header};
use sealed_session::{BearerConfig, SealedSession, Secure, Session, SessionError};
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn login(session: Session) -> Result<&'static str, SessionError> {
    session.regenerate()?;
    session.insert("user", "alice")?;
    Ok("ok")
}

async fn user(session: Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "<none>".to_owned()))
}

async fn count(session: Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", &n)?;
    Ok(n.to_string())
}

async fn logout(session: Session) -> Result<&'static str, SessionError> {
    session.destroy()?;
    Ok("bye")
}

fn routes() -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/user", get(user))
        .route("/count", post(count))
        .route("/logout", post(logout))
}

/// Plain-HTTP cookies (`sid`, no `__Host-` prefix), as a test client sends them.
fn app() -> Router {
    routes().layer(SealedSession::sealed(keys()).secure(Secure::Never).layer())
}

async fn send(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> Response<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The `name=value` of the response's session cookie.
fn cookie_of(resp: &Response<Body>) -> String {
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_axum_app_keeps_its_session_in_a_sealed_cookie() {
    let app = app();
    let resp = send(&app, "GET", "/user", None).await;
    assert!(
        resp.headers().get(header::SET_COOKIE).is_none(),
        "nothing stored, no cookie"
    );
    assert_eq!(text(resp).await, "<none>");

    let resp = send(&app, "POST", "/login", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.starts_with("sid=") && set.contains("HttpOnly"), "{set}");
    assert_eq!(
        resp.headers()[header::CACHE_CONTROL],
        "private, no-store",
        "a response carrying a token is not cached"
    );
    let cookie = cookie_of(&resp);

    assert_eq!(
        text(send(&app, "GET", "/user", Some(&cookie)).await).await,
        "alice"
    );
    let resp = send(&app, "POST", "/count", Some(&cookie)).await;
    let cookie = cookie_of(&resp);
    assert_eq!(text(resp).await, "1");
    assert_eq!(
        text(send(&app, "POST", "/count", Some(&cookie)).await).await,
        "2"
    );

    // A tampered cookie is a fresh, empty session.
    let mut tampered = cookie.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        text(send(&app, "GET", "/user", Some(&tampered)).await).await,
        "<none>"
    );

    let resp = send(&app, "POST", "/logout", Some(&cookie)).await;
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set.contains("Max-Age=0"), "the cookie is cleared: {set}");
}

#[tokio::test]
async fn a_handler_without_the_layer_gets_a_clear_500() {
    let resp = send(&routes(), "GET", "/user", None).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text(resp).await.contains("middleware is not installed"));
}

#[tokio::test]
async fn the_engines_own_answers_go_out_through_the_layer() {
    // A `Cookie` header over the limit: 431, the handler does not run.
    let big = format!("other={}", "x".repeat(40 * 1024));
    let resp = send(&app(), "GET", "/user", Some(&big)).await;
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // A refused bearer token: 401 with an RFC 6750 challenge.
    let bearer = routes().layer(
        SealedSession::sealed(keys())
            .bearer(BearerConfig::new())
            .layer(),
    );
    let req = Request::get("/user")
        .header(header::AUTHORIZATION, "Bearer not-a-token")
        .body(Body::empty())
        .unwrap();
    let resp = bearer.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_bare_tower_service_gets_the_session_in_its_request_extensions() {
    let layer = SealedSession::sealed(keys()).secure(Secure::Never).layer();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|req: Request<String>| async move {
            let session = req.extensions().get::<Session>().cloned();
            let body = match session {
                Some(s) => {
                    s.insert("seen", &true)
                        .map_err(|e| e.to_string())
                        .unwrap_or(());
                    "with a session"
                }
                None => "no session",
            };
            Ok::<_, Infallible>(Response::new(body.to_owned()))
        }));
    let resp = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(resp.body(), "with a session");
    assert!(resp.headers().contains_key(header::SET_COOKIE));
    let stats = layer.stats();
    assert_eq!(stats.issued, 1, "{stats:?}");
}

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#[tokio::test]
async fn the_jwk_set_is_a_tower_service_too() {
    use sealed_session::{Jwks, JwtAlgorithm, JwtKeyring};
    let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA).unwrap();
    let app: Router = Router::new().route_service("/.well-known/jwks.json", Jwks::new(&ring));
    let resp = send(&app, "GET", "/.well-known/jwks.json", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/jwk-set+json"
    );
    assert_eq!(resp.headers()[header::CACHE_CONTROL], "public, max-age=300");
    let body: serde_json::Value = serde_json::from_str(&text(resp).await).unwrap();
    assert_eq!(
        body,
        serde_json::from_str::<serde_json::Value>(ring.jwks_json()).unwrap()
    );
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("d").is_none(), "no private part: {body}");
}

/// A service inside the layer that fails after its handler ended the session (a logout
/// followed by a timeout, say): the session is still deleted from the store, as the Poem
/// middleware does when its handler fails.
#[tokio::test]
async fn an_inner_service_error_still_ends_the_sessions_the_handler_ended() {
    use sealed_session::store::MemoryStore;

    let store = MemoryStore::new();
    let layer = SealedSession::server_store(store.clone(), keys())
        .secure(Secure::Never)
        .layer();
    let svc =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|req: Request<String>| async move {
                let session = req.extensions().get::<Session>().cloned();
                let Some(session) = session else {
                    return Err("no session");
                };
                match req.uri().path() {
                    "/login" => {
                        session.regenerate().map_err(|_| "regenerate")?;
                        session.insert("user", "alice").map_err(|_| "insert")?;
                        Ok(Response::new("ok".to_owned()))
                    }
                    _ => {
                        session.destroy().map_err(|_| "destroy")?;
                        Err("the service failed after the logout")
                    }
                }
            }));
    let resp = svc
        .clone()
        .oneshot(Request::get("/login").body(String::new()).unwrap())
        .await
        .unwrap();
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(store.len(), 1, "the login stored its session");

    let failed = svc
        .oneshot(
            Request::get("/logout")
                .header(header::COOKIE, &cookie)
                .body(String::new())
                .unwrap(),
        )
        .await;
    assert_eq!(failed.unwrap_err(), "the service failed after the logout");
    assert_eq!(
        store.len(),
        0,
        "the ended session is deleted though the service failed"
    );
}
