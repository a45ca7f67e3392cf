//! The demo's store mode: the express-session design behind the same pages. The cookie holds
//! a signed session id; the session lives in a store, in memory by default or in Redis with
//! `--redis URL` (shared by every demo process given the same URL and keys).

use std::sync::Arc;

use sealed_session::SealedSession;
use sealed_session::devices::{Devices, Registry};
use sealed_session::store::{MemoryStore, Store};

use super::{App, Args, Program, cookie_config, describe_cookie, env_keys};

/// The Redis store's key prefix (connect-redis's `sess:`, under the demo's name).
#[cfg(feature = "redis")]
const REDIS_PREFIX: &str = "sealed-session-demo:sess:";

/// The store-mode application and its start-up lines.
pub async fn build(
    program: &Program,
    args: &Args,
    registry: Arc<dyn Registry>,
) -> Result<(App, Vec<String>), String> {
    let (keys, _) = env_keys()?;
    let cookie = cookie_config(args.secure);
    let cookie_line = describe_cookie(&cookie);
    let (sessions, store_line, store) = match args.redis.as_deref() {
        None => {
            let store = MemoryStore::new();
            let view: Arc<dyn Store> = Arc::new(store.clone());
            (
                SealedSession::server_store(store, keys.clone()),
                "an in-memory store (this process only; lost on restart)".to_owned(),
                view,
            )
        }
        Some(url) => redis_store(program, url, keys.clone()).await?,
    };
    super::session_view::init(super::session_view::SessionView {
        mode: "store",
        keys,
        store: Some(store),
    });
    let lines = vec![
        format!(
            "session mode: store (the express-session design: a signed session id in the \
             cookie, the session in {store_line})"
        ),
        format!("session {cookie_line}; the id signed with HMAC-SHA256"),
    ];
    let sessions = sessions.cookie(cookie).devices(Devices::new(registry));
    Ok((App::Sealed(sessions), lines))
}

/// The sessions on the Redis at `url`, and the store's part of the start-up line.
#[cfg(feature = "redis")]
async fn redis_store(
    _program: &Program,
    url: &str,
    keys: sealed_session::Keyring,
) -> Result<(SealedSession, String, Arc<dyn Store>), String> {
    use super::redact;
    let store = sealed_session::store::RedisStore::builder(url)
        .key_prefix(REDIS_PREFIX)
        .build()
        .await
        .map_err(|e| format!("cannot use Redis at {} for sessions: {e}", redact(url)))?;
    let line = format!(
        "Redis at {} (key prefix {REDIS_PREFIX:?}; shared with every demo process using this \
         Redis and these keys)",
        redact(url)
    );
    let view: Arc<dyn Store> = Arc::new(store.clone());
    Ok((SealedSession::server_store(store, keys), line, view))
}

#[cfg(not(feature = "redis"))]
async fn redis_store(
    program: &Program,
    _url: &str,
    _keys: sealed_session::Keyring,
) -> Result<(SealedSession, String, Arc<dyn Store>), String> {
    Err(format!(
        "--redis needs the `redis` feature, and this demo was built without it; build with \
         `--features {features}`: cargo run --example {name} --features {features} -- --mode store --redis URL",
        name = program.name,
        features = program.redis_features,
    ))
}
