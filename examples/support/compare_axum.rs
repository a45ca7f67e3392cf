//! The comparison harness's application on axum 0.8 (feature `tower`): the same four routes
//! as the Poem rows, with no sessions, with this crate's tower layer, and with
//! tower-sessions (its `MemoryStore`, the peer the tower ecosystem offers), so that the axum
//! rows compare the designs on the same framework; and with tower-sessions-cookie-store
//! (private cookies), the tower ecosystem's whole-session-in-a-cookie peer.

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::{Mode, Result, ServerEnv, login_data, page, sessionless_page};

type Answer = std::result::Result<String, Response>;

fn refused(status: StatusCode) -> Response {
    status.into_response()
}

/// Our handlers, on the axum extractor.
mod ours {
    use super::*;
    use sealed_session::Session;

    fn failed(e: sealed_session::SessionError) -> Response {
        e.into_response()
    }

    pub async fn login(s: Session) -> Answer {
        s.regenerate().map_err(failed)?;
        for (k, v) in login_data() {
            s.insert(&k, &v).map_err(failed)?;
        }
        Ok("ok".to_owned())
    }
    pub async fn read(s: Session) -> Answer {
        let user = s
            .get::<String>("user")
            .map_err(failed)?
            .ok_or_else(|| refused(StatusCode::UNAUTHORIZED))?;
        let roles = s
            .get::<Vec<String>>("roles")
            .map_err(failed)?
            .unwrap_or_default();
        let views = s.get::<u64>("views").map_err(failed)?.unwrap_or(0);
        Ok(page(&user, &roles, views))
    }
    pub async fn write(s: Session) -> Answer {
        if !s.contains("user").map_err(failed)? {
            return Err(refused(StatusCode::UNAUTHORIZED));
        }
        let n = s.get::<u64>("views").map_err(failed)?.unwrap_or(0) + 1;
        s.insert("views", &n).map_err(failed)?;
        Ok(n.to_string())
    }
    pub async fn logout(s: Session) -> Answer {
        s.destroy().map_err(failed)?;
        Ok("bye".to_owned())
    }
}

/// The same handlers on tower-sessions.
mod peer {
    use super::*;
    use tower_sessions::Session;

    fn failed(_: tower_sessions::session::Error) -> Response {
        refused(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub async fn login(s: Session) -> Answer {
        s.cycle_id().await.map_err(failed)?;
        for (k, v) in login_data() {
            s.insert(&k, v).await.map_err(failed)?;
        }
        Ok("ok".to_owned())
    }
    pub async fn read(s: Session) -> Answer {
        let user = s
            .get::<String>("user")
            .await
            .map_err(failed)?
            .ok_or_else(|| refused(StatusCode::UNAUTHORIZED))?;
        let roles = s
            .get::<Vec<String>>("roles")
            .await
            .map_err(failed)?
            .unwrap_or_default();
        let views = s.get::<u64>("views").await.map_err(failed)?.unwrap_or(0);
        Ok(page(&user, &roles, views))
    }
    pub async fn write(s: Session) -> Answer {
        if s.get::<Value>("user").await.map_err(failed)?.is_none() {
            return Err(refused(StatusCode::UNAUTHORIZED));
        }
        let n = s.get::<u64>("views").await.map_err(failed)?.unwrap_or(0) + 1;
        s.insert("views", n).await.map_err(failed)?;
        Ok(n.to_string())
    }
    pub async fn logout(s: Session) -> Answer {
        s.flush().await.map_err(failed)?;
        Ok("bye".to_owned())
    }

    /// The four routes, for either tower-sessions layer.
    pub fn routes() -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/logout", post(logout))
    }
}

async fn none_login() -> &'static str {
    "ok"
}
async fn none_read() -> String {
    sessionless_page()
}
async fn none_write() -> String {
    2u64.to_string()
}

/// The application of an axum `mode`.
fn app(mode: Mode, env: &ServerEnv) -> Result<Router> {
    let keys: sealed_session::Keyring = env.keys.parse()?;
    Ok(match mode {
        Mode::AxumNone => Router::new()
            .route("/login", post(none_login))
            .route("/read", get(none_read))
            .route("/write", post(none_write))
            .route("/logout", post(none_login)),
        Mode::AxumSealed => Router::new()
            .route("/login", post(ours::login))
            .route("/read", get(ours::read))
            .route("/write", post(ours::write))
            .route("/logout", post(ours::logout))
            .layer(sealed_session::SealedSession::sealed(keys).layer()),
        Mode::AxumTowerSessions => {
            use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer};
            // As close to the sealed rows' defaults as it allows: Secure, HttpOnly,
            // SameSite=Lax, an hour of inactivity.
            let layer = SessionManagerLayer::new(MemoryStore::default())
                .with_secure(true)
                .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)));
            peer::routes().layer(layer)
        }
        Mode::AxumCookieStore => {
            use tower_sessions_cookie_store::{
                CookieSessionConfig, CookieSessionManagerLayer, Expiry, Key, SameSite,
            };
            // The whole session in an encrypted cookie, as the sealed rows: the closest peer.
            let config = CookieSessionConfig::default()
                .with_secure(true)
                .with_same_site(SameSite::Lax)
                .with_expiry(Expiry::OnInactivity(time::Duration::hours(1)));
            peer::routes().layer(
                CookieSessionManagerLayer::private(Key::derive_from(&env.secret))
                    .with_config(config),
            )
        }
        other => return Err(format!("{} is not an axum mode", other.key()).into()),
    })
}

/// Serves an axum `mode` on 127.0.0.1, port 0, on the caller's runtime; prints `port N`.
pub async fn serve(mode: Mode, env: &ServerEnv) -> Result<()> {
    use std::io::Write as _;
    let app = app(mode, env)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let port = listener.local_addr()?.port();
    let mut out = std::io::stdout().lock();
    writeln!(out, "port {port}")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, app).await?;
    Ok(())
}
