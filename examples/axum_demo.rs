//! The login demo of `examples/demo.rs`, served by axum 0.8 and hyper instead of Poem: the
//! sessions are `SealedSession::layer()` on the router, and handlers take `Session` as an
//! axum extractor. Same options, routes, pages, JSON API, keys, denylist and start-up output
//! as the Poem demo (its documentation applies: `cargo run --example demo -- --help`); the
//! application itself is in `examples/common/demo_app.rs`, shared by both, and this file is
//! only its axum glue.
//!
//! ```text
//! cargo run --example axum_demo --features tower                  # http://127.0.0.1:3000
//! cargo run --example axum_demo --features tower -- --mode jwt    # JSON API with bearer JWTs
//! cargo run --example axum_demo --features redis,tower -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! Log in as `admin` / `letmein`. Sealed mode (the default): `GET /`, `POST /login`,
//! `GET /secureplace`, `POST /logout`, `GET /views`. jwt mode: `GET /`, `POST /api/login`,
//! `GET /api/me`, `POST /api/logout`, `GET /.well-known/jwks.json`.
//!
//! Requests are logged as Poem's `Tracing` middleware does in the Poem demo (a `request` span
//! and a `response` event with the status and duration), by [`trace`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::http::header::WWW_AUTHENTICATE;
use axum::middleware::{Next, from_fn};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use sealed_session::{SealedSession, Session, SessionError};
use tracing::Instrument;

#[path = "common/demo_app.rs"]
mod demo_app;

use demo_app::{App, Login, Program, Reply, Setup};

const PROGRAM: Program = Program {
    name: "axum_demo",
    redis_features: "redis,tower",
};

/// A handler's answer as axum's `Html`, `Redirect` or `Json`.
impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Page(status, html) => (status, Html(html)).into_response(),
            Reply::SeeOther(to) => Redirect::to(to).into_response(),
            Reply::Json {
                status,
                body,
                challenge: Some(challenge),
            } => (status, [(WWW_AUTHENTICATE, challenge)], Json(body)).into_response(),
            Reply::Json {
                status,
                body,
                challenge: None,
            } => (status, Json(body)).into_response(),
        }
    }
}

/// Logs each request as Poem's `Tracing` middleware does: an INFO `request` span (the
/// client's IP address, HTTP version, method, URI) around an INFO `response` event (status,
/// duration).
async fn trace(ConnectInfo(remote): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "request",
        remote_addr = %remote.ip(),
        version = ?req.version(),
        method = %req.method(),
        uri = %req.uri(),
    );
    async move {
        let started = Instant::now();
        let resp = next.run(req).await;
        tracing::info!(status = %resp.status(), duration = ?started.elapsed(), "response");
        resp
    }
    .instrument(span)
    .await
}

// ---------------------------------------------------------------------------------------
// sealed mode: HTML forms, the session in a cookie
// ---------------------------------------------------------------------------------------

/// The sealed-mode application: the HTML routes under `sessions` (see
/// [`demo_app::sealed_sessions`]) as a tower layer.
fn sealed_app(sessions: &SealedSession) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/secureplace", get(secureplace))
        .route("/views", get(views))
        .route("/devices", get(devices))
        .route("/devices/end", post(end_device))
        .route("/session", get(session_page))
        .layer(sessions.layer())
        .layer(from_fn(trace))
}

async fn index(session: Session) -> Result<Reply, SessionError> {
    demo_app::index(&session)
}

/// A body that is not such a form: 400, or 415 without the form content type, as Poem's
/// `Form` answers (axum's own rejection of an undecodable form is a 422).
async fn login(session: Session, form: Result<Form<Login>, FormRejection>) -> Response {
    match form {
        Ok(Form(form)) => demo_app::login(&session, &form).into_response(),
        Err(rejection) => {
            let status = match rejection {
                FormRejection::FailedToDeserializeForm(_)
                | FormRejection::FailedToDeserializeFormBody(_) => StatusCode::BAD_REQUEST,
                _ => rejection.status(),
            };
            (status, rejection.body_text()).into_response()
        }
    }
}

async fn devices(session: Session) -> Result<Reply, SessionError> {
    demo_app::devices::devices_page(&session).await
}

async fn end_device(
    session: Session,
    Form(form): Form<demo_app::devices::EndDevice>,
) -> Result<Reply, SessionError> {
    demo_app::devices::end_device(&session, &form).await
}

/// `GET /session`: the cookie, and what the server reads from it.
async fn session_page(
    session: Session,
    headers: axum::http::HeaderMap,
) -> Result<Reply, SessionError> {
    let cookie = headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok());
    let now = sealed_session::Clock::now(&sealed_session::SystemClock);
    demo_app::session_view::session_page(&session, cookie, now).await
}

async fn secureplace(session: Session) -> Result<Reply, SessionError> {
    demo_app::secureplace(&session)
}

async fn logout(session: Session) -> Result<Reply, SessionError> {
    demo_app::logout(&session)
}

async fn views(session: Session) -> Result<Reply, SessionError> {
    demo_app::views(&session)
}

// ---------------------------------------------------------------------------------------
// jwt mode: a JSON API with bearer JWTs
// ---------------------------------------------------------------------------------------

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt {
    use axum::extract::rejection::JsonRejection;
    use axum::middleware::from_fn;
    use axum::response::Html;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use sealed_session::{Jwks, Session, SessionError};

    use crate::demo_app::Reply;
    use crate::demo_app::jwt::{self as shared, Credentials, JwtApp};

    /// `/`, the API under bearer JWT sessions, and the JWK Set when the key is asymmetric.
    pub fn app(jwt: JwtApp) -> Router {
        let JwtApp {
            sessions,
            home,
            ring,
        } = jwt;
        // Routed by their whole paths, not nested under `/api`: a nested router sees the
        // path without its prefix, and a DPoP proof (`--dpop`) names the whole URI.
        let api = Router::new()
            .route("/api/login", post(login))
            .route("/api/me", get(me))
            .route("/api/logout", post(logout))
            .route("/api/session", get(session_json))
            .layer(sessions.layer());
        let mut router = Router::new()
            .route("/", get(move || async move { Html(home) }))
            .route("/session", get(|| async { shared::session_page() }))
            .merge(api);
        if ring.has_public_keys() {
            router = router.route_service("/.well-known/jwks.json", Jwks::new(&ring));
        }
        router.layer(from_fn(super::trace))
    }

    /// A body that is not `{"username": ..., "password": ...}`: a 400 with a JSON error.
    async fn login(
        session: Session,
        body: Result<Json<Credentials>, JsonRejection>,
    ) -> Result<Reply, SessionError> {
        shared::login(&session, body.ok().map(|Json(c)| c))
    }

    async fn me(session: Session) -> Result<Reply, SessionError> {
        shared::me(&session)
    }

    async fn session_json(session: Session, headers: axum::http::HeaderMap) -> Reply {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        shared::session_json(&session, authorization)
    }

    async fn logout(session: Session) -> Result<Reply, SessionError> {
        shared::logout(&session)
    }
}

// ---------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    let Setup { addr, app, banner } = match demo_app::start(&PROGRAM).await {
        Ok(setup) => setup,
        Err(code) => return code,
    };
    let router = match app {
        App::Sealed(sessions) => sealed_app(&sessions),
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        App::Jwt(jwt) => jwt::app(jwt),
    };

    let listener = match tokio::net::TcpListener::bind(addr.as_str()).await {
        Ok(l) => l,
        Err(e) => return demo_app::cannot_listen(&addr, &e),
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.clone(), |a| a.to_string());
    banner.announce(&local);

    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service).await {
        return demo_app::server_stopped(&e);
    }
    ExitCode::SUCCESS
}
