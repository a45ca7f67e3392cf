//! The seeds' express-session login demo, on stateless sessions: in sealed mode the whole
//! session lives in one encrypted cookie; in jwt mode it is a signed JWT bearer token for
//! single-page apps. Nothing is stored on the server but the revocation list (the denylist).
//! `--mode store` runs the same pages on the express-session design instead: a signed
//! session id in the cookie, the session in a store (in memory, or Redis with `--redis`).
//!
//! ```text
//! cargo run --example demo                          # http://127.0.0.1:3000
//! cargo run --example demo -- --addr 0.0.0.0:8080
//! SESSION_SECRET="$(head -c 48 /dev/urandom | base64)" cargo run --example demo
//! SESSION_KEYS="k2:BASE64,k1:BASE64" cargo run --example demo   # newest key first
//! cargo run --example demo -- --mode jwt            # JSON API with bearer JWTs (EdDSA)
//! cargo run --example demo -- --mode store          # the express-session design
//! cargo run --example demo --features redis -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! Log in as `admin` / `letmein`. Routes of `--mode sealed` (the default) and `--mode store`:
//!
//! - `GET /`: the login form, or the user's name, a visit counter and a logout button;
//! - `POST /login`: checks the form, regenerates the session, 303 to `/secureplace`;
//! - `GET /secureplace`: only for logged-in users, others are sent back to `/`;
//! - `POST /logout`: destroys (and revokes) the session, 303 to `/`;
//! - `GET /views`: `{"views": n}`, counted per session;
//! - `GET /devices`: the user's sessions ("your devices"), each with a sign-out button;
//! - `POST /devices/end`: signs one of them out (`device` = its handle);
//! - `GET /session`: the cookie the browser holds (name, size, format version, key id and
//!   algorithm) beside what the server reads from it (id, times, data; in store mode the
//!   store's record), and the `sealed-session inspect` command that decodes it.
//!
//! Routes of `--mode jwt` (JSON; the token travels in `Authorization: Bearer TOKEN`):
//!
//! - `GET /`: says which mode runs and lists the API routes;
//! - `POST /api/login` with `{"username": ..., "password": ...}`: `{"token": ...}`, or 401
//!   with `WWW-Authenticate: Bearer realm="sealed-session-demo"` (400 for a body that is not
//!   such JSON);
//! - `GET /api/me`: `{"user": ..., "views": n}`, counting; each answer carries the refreshed
//!   token in the `x-session-token` response header (use it for the next request);
//! - `POST /api/logout`: ends (and revokes) the session: the token then gets a 401;
//! - `GET /session` says where a JWT session is; `GET /api/session` answers with the
//!   token's readable header and what the server reads from it;
//! - `GET /.well-known/jwks.json`: the public keys as a JWK Set (asymmetric keys only).
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:3000`; port 0 picks a free one, and the
//! address printed at start is the real one), `--mode sealed|jwt|store`, `--dpop` (jwt mode), `--device-bound` (sealed and store modes),
//! `--cookie-secure always|auto` (default `always`, see [`demo_app::cookie_config`]), `--redis URL`
//! (share revocations through Redis, feature `redis`), `--jwt-alg ALG` and `--jwt-kid KID`
//! (jwt mode). See [`demo_app::usage`].
//!
//! Revocation: logging out calls `Session::destroy`, which revokes the session id through
//! the denylist, so a cookie or token replayed after logout is refused. By default the
//! denylist is in this process's memory; with `--redis URL` it is a `RedisDenylist`, so
//! several demo processes (on different ports, given the same `SESSION_KEYS` or
//! `SESSION_SECRET`, or in jwt mode the same `JWT_KEY_FILE`) share sessions, which they do
//! statelessly anyway, and revocations. Redis unreachable at start: a message and exit code 2.
//!
//! Keys, sealed mode: `SESSION_KEYS` (a key ring, see `Keyring`'s docs), else a key derived
//! from `SESSION_SECRET` (at least 32 bytes, through HKDF), else a random key made at start,
//! with a warning: sessions then do not survive a restart. Keys, jwt mode: `JWT_KEY_FILE` (a
//! PKCS#8 PEM private key for the asymmetric algorithms, the base64 secret for `HS*`), else a
//! key generated at start (EdDSA and `HS*` only), with the same warning. Invalid keys or a
//! weak secret end the program with a message and exit code 2. Logs: `RUST_LOG` (default
//! `info,sealed_session=debug`, which shows each refused cookie or token and why).
//!
//! The application (options, keys, denylist, pages, what each route does with the session) is
//! in `examples/common/demo_app.rs`, shared with `examples/axum_demo.rs`, which serves the same
//! through axum 0.8 and `SealedSession::layer`; this file is its Poem glue.

use std::process::ExitCode;

use poem::http::header::WWW_AUTHENTICATE;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Tracing;
use poem::web::{Form, Html, Json, Redirect};
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, endpoint::BoxEndpoint, get, handler, post,
};
use sealed_session::{SealedSession, Session};

#[path = "common/demo_app.rs"]
mod demo_app;

use demo_app::{App, Login, Program, Reply, Setup};

const PROGRAM: Program = Program {
    name: "demo",
    redis_features: "redis",
};

/// A handler's answer as Poem's `Html`, `Redirect` or `Json`.
impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Page(status, html) => Html(html).with_status(status).into_response(),
            Reply::SeeOther(to) => Redirect::see_other(to).into_response(),
            Reply::Json {
                status,
                body,
                challenge,
            } => {
                let resp = Json(body).with_status(status).into_response();
                match challenge {
                    Some(c) => resp.with_header(WWW_AUTHENTICATE, c).into_response(),
                    None => resp,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// sealed mode: HTML forms, the session in a cookie
// ---------------------------------------------------------------------------------------

/// The HTML routes of the sealed (cookie) mode.
fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/login", post(login))
        .at("/logout", post(logout))
        .at("/secureplace", get(secureplace))
        .at("/views", get(views))
        .at("/devices", get(devices))
        .at("/devices/end", post(end_device))
        .at("/session", get(session_page))
}

/// The sealed-mode application under `sessions` (see [`demo_app::sealed_sessions`]).
fn sealed_app(sessions: SealedSession) -> BoxEndpoint<'static> {
    routes()
        .with(sessions)
        .with(Tracing)
        .map_to_response()
        .boxed()
}

#[handler]
fn index(session: &Session) -> poem::Result<Reply> {
    Ok(demo_app::index(session)?)
}

/// A body that is not such a form: Poem's 400 (415 without the form content type).
#[handler]
fn login(session: &Session, Form(form): Form<Login>) -> poem::Result<Reply> {
    Ok(demo_app::login(session, &form)?)
}

#[handler]
fn secureplace(session: &Session) -> poem::Result<Reply> {
    Ok(demo_app::secureplace(session)?)
}

#[handler]
fn logout(session: &Session) -> poem::Result<Reply> {
    Ok(demo_app::logout(session)?)
}

#[handler]
fn views(session: &Session) -> poem::Result<Reply> {
    Ok(demo_app::views(session)?)
}

#[handler]
async fn devices(session: &Session) -> poem::Result<Reply> {
    Ok(demo_app::devices::devices_page(session).await?)
}

#[handler]
async fn end_device(
    session: &Session,
    Form(form): Form<demo_app::devices::EndDevice>,
) -> poem::Result<Reply> {
    Ok(demo_app::devices::end_device(session, &form).await?)
}

/// `GET /session`: the cookie, and what the server reads from it.
#[handler]
async fn session_page(session: &Session, req: &poem::Request) -> poem::Result<Reply> {
    let cookie = req
        .headers()
        .get(poem::http::header::COOKIE)
        .and_then(|v| v.to_str().ok());
    let now = sealed_session::Clock::now(&sealed_session::SystemClock);
    Ok(demo_app::session_view::session_page(session, cookie, now).await?)
}

// ---------------------------------------------------------------------------------------
// jwt mode: a JSON API with bearer JWTs
// ---------------------------------------------------------------------------------------

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt {
    use poem::endpoint::{BoxEndpoint, make_sync};
    use poem::middleware::Tracing;
    use poem::web::{Html, Json};
    use poem::{EndpointExt, Route, get, handler, post};
    use sealed_session::{Jwks, Session};

    use crate::demo_app::Reply;
    use crate::demo_app::jwt::{self as shared, Credentials, JwtApp};

    /// `/`, the API under bearer JWT sessions, and the JWK Set when the key is asymmetric.
    pub fn app(jwt: JwtApp) -> BoxEndpoint<'static> {
        let JwtApp {
            sessions,
            home,
            ring,
        } = jwt;
        let api = Route::new()
            .at("/login", post(login))
            .at("/me", get(me))
            .at("/logout", post(logout))
            .at("/session", get(session_json))
            .with(sessions);
        let home = Html(home);
        let mut route = Route::new()
            .at("/", get(make_sync(move |_| home.clone())))
            .at("/session", get(make_sync(|_| shared::session_page())))
            .nest("/api", api);
        if ring.has_public_keys() {
            route = route.at("/.well-known/jwks.json", get(Jwks::new(&ring)));
        }
        route.with(Tracing).map_to_response().boxed()
    }

    /// A body that is not `{"username": ..., "password": ...}`: a 400 with a JSON error.
    #[handler]
    fn login(session: &Session, body: poem::Result<Json<Credentials>>) -> poem::Result<Reply> {
        Ok(shared::login(session, body.ok().map(|Json(c)| c))?)
    }

    #[handler]
    fn me(session: &Session) -> poem::Result<Reply> {
        Ok(shared::me(session)?)
    }

    #[handler]
    fn session_json(session: &Session, req: &poem::Request) -> Reply {
        let authorization = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        shared::session_json(session, authorization)
    }

    #[handler]
    fn logout(session: &Session) -> poem::Result<Reply> {
        Ok(shared::logout(session)?)
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
    let endpoint = match app {
        App::Sealed(sessions) => sealed_app(sessions),
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        App::Jwt(jwt) => jwt::app(jwt),
    };

    let acceptor = match TcpListener::bind(addr.as_str()).into_acceptor().await {
        Ok(a) => a,
        Err(e) => return demo_app::cannot_listen(&addr, &e),
    };
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .map_or_else(|| addr.clone(), |a| a.to_string());
    banner.announce(&local);

    if let Err(e) = Server::new_with_acceptor(acceptor).run(endpoint).await {
        return demo_app::server_stopped(&e);
    }
    ExitCode::SUCCESS
}
