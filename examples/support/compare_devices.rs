//! The comparison's "your devices" row: `sealed+devices`, the sealed cookie with a
//! `RedisDenylist` and a `RedisRegistry` on the row's redis-server. Its login also gives the
//! session a subject (the user), so that every token issued is recorded: the write route's
//! re-issue pays one registry write (what a renewal pays), the read route nothing.

use poem::endpoint::BoxEndpoint;
use poem::{Response, handler};
use sealed_session::{Keyring, Session};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The login of this row (and of the theft-resistance rows): the other rows' login, and
/// the subject.
#[handler]
pub fn login(session: &Session) -> poem::Result<&'static str> {
    session.regenerate()?;
    for (k, v) in crate::login_data() {
        session.insert(&k, &v)?;
    }
    session.set_subject("alice@example.com");
    Ok("ok")
}

/// The row's application on the Redis at `url`.
#[cfg(feature = "redis")]
pub async fn app(url: &str, keys: Keyring) -> Result<BoxEndpoint<'static, Response>> {
    use std::sync::Arc;

    use poem::{EndpointExt as _, Route, get, post};
    use sealed_session::SealedSession;
    use sealed_session::denylist::RedisDenylist;
    use sealed_session::devices::{Devices, RedisRegistry};

    let denylist = RedisDenylist::builder(url).build().await?;
    let registry = RedisRegistry::builder(url).build().await?;
    let sessions = SealedSession::sealed(keys)
        .denylist(Arc::new(denylist))
        .devices(Devices::new(Arc::new(registry)));
    Ok(Route::new()
        .at("/login", post(login))
        .at("/read", get(crate::ours_read))
        .at("/write", post(crate::ours_write))
        .at("/logout", post(crate::ours_logout))
        .with(sessions)
        .map_to_response()
        .boxed())
}

#[cfg(not(feature = "redis"))]
pub async fn app(_url: &str, _keys: Keyring) -> Result<BoxEndpoint<'static, Response>> {
    Err("built without the redis feature".into())
}
