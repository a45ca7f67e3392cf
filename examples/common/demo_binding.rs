//! The demo's theft resistance: `--dpop` (jwt mode) binds bearer tokens to the client's
//! key (RFC 9449), with proofs remembered in memory, or in Redis with `--redis` so that a
//! proof used on one demo process is refused by the others; `--device-bound` (cookie modes)
//! binds cookie sessions to a key the browser keeps (W3C DBSC).

use super::App;

/// `--device-bound`: the cookie sessions of `app` with DBSC, and the start-up line.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub fn device_bound(app: App) -> Result<(App, String), String> {
    match app {
        App::Sealed(sessions) => Ok((
            App::Sealed(sessions.device_bound(sealed_session::binding::Dbsc::new())),
            "on (W3C DBSC): a browser that supports it registers a key at login              (Secure-Session-Registration); the session then needs a bound cookie of 10              minutes, renewed at POST /dbsc/refresh only with a proof by that key"
                .to_owned(),
        )),
        #[allow(unreachable_patterns)]
        _ => Err("--device-bound applies to cookie sessions".to_owned()),
    }
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
pub fn device_bound(_app: App) -> Result<(App, String), String> {
    Err("--device-bound needs the `jwt` feature (on by default)".to_owned())
}

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
use sealed_session::binding::Dpop;

/// DPoP for `--dpop`, optional (a client without proofs still gets a plain bearer token),
/// and its start-up line.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub async fn make_dpop(redis: Option<&str>) -> Result<(Dpop, String), String> {
    let dpop = Dpop::new();
    let line = "on (RFC 9449): a login that sends a DPoP proof (ES256 or EdDSA) gets a token \
                bound to its key, accepted only as `Authorization: DPoP TOKEN` with a fresh \
                proof per request";
    match redis {
        None => Ok((
            dpop,
            format!("{line}; proofs seen kept in memory (this process)"),
        )),
        Some(url) => redis_replay(dpop, url).await.map(|dpop| {
            (
                dpop,
                format!("{line}; proofs seen kept in Redis (every process)"),
            )
        }),
    }
}

#[cfg(all(feature = "redis", any(feature = "jwt", feature = "jwt-rust-crypto")))]
async fn redis_replay(dpop: Dpop, url: &str) -> Result<Dpop, String> {
    let cache = sealed_session::binding::RedisReplayCache::builder(url)
        .key_prefix("sealed-session-demo:proofs:")
        .build()
        .await
        .map_err(|e| format!("cannot use Redis for DPoP proofs: {e}"))?;
    Ok(dpop.replay_cache(std::sync::Arc::new(cache)))
}

#[cfg(all(
    not(feature = "redis"),
    any(feature = "jwt", feature = "jwt-rust-crypto")
))]
async fn redis_replay(_dpop: Dpop, _url: &str) -> Result<Dpop, String> {
    Err("--redis needs the `redis` feature".to_owned())
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
pub async fn make_dpop(_redis: Option<&str>) -> Result<((), String), String> {
    Err("--dpop needs the `jwt` feature".to_owned())
}
