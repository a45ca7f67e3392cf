//! Handlers that several test applications share, each exactly as every one of them had
//! it. A handler that stores other keys or values than these stays in its own test file.
#![allow(dead_code)]

use std::time::Duration;

use poem::handler;
use poem::web::Path;
use sealed_session::Session;

/// Answers "ok" and leaves the session alone.
#[handler]
pub fn noop() -> &'static str {
    "ok"
}

/// The session's `user`, or `<none>`.
#[handler]
pub fn user(session: &Session) -> poem::Result<String> {
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "<none>".to_owned()))
}

/// Adds one to the counter `n` (0 when absent) and answers the new value.
#[handler]
pub fn count(session: &Session) -> poem::Result<String> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", &n)?;
    Ok(n.to_string())
}

/// The session's id.
#[handler]
pub fn session_id(session: &Session) -> String {
    session.id().to_string()
}

/// Stores `key` = `val` from the path `/:key/:val`.
#[handler]
pub fn set_key(session: &Session, Path((key, val)): Path<(String, String)>) -> poem::Result<()> {
    session.insert(&key, &val)?;
    Ok(())
}

/// Marks the session touched.
#[handler]
pub fn touch(session: &Session) {
    session.touch();
}

/// Sets this session's max age to `secs` from the path.
#[handler]
pub fn max_age(session: &Session, Path(secs): Path<u64>) {
    session.set_max_age(Duration::from_secs(secs));
}

/// A login: a new id, then `user` = `admin`.
#[handler]
pub fn login_admin(session: &Session) -> poem::Result<()> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    Ok(())
}

/// [`login_admin`], with `admin` as the session's subject too.
#[handler]
pub fn login_admin_subject(session: &Session) -> poem::Result<()> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(())
}

/// [`login_admin_subject`], answering the new token.
#[handler]
pub fn login_admin_subject_token(session: &Session) -> poem::Result<String> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(session.token()?.unwrap_or_default())
}

/// Destroys the session.
#[handler]
pub fn logout(session: &Session) -> poem::Result<()> {
    session.destroy()?;
    Ok(())
}

/// Ends every session of the session's subject.
#[handler]
pub async fn everywhere(session: &Session) -> poem::Result<()> {
    session.logout_everywhere().await?;
    Ok(())
}
