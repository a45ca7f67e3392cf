//! Handlers that several test applications share, each exactly as every one of them had
//! it. A handler that stores other keys or values than these stays in its own test file.
//!
//! Each is written once, framework-neutral, in [`plain`] (for [`super::app`]'s routes,
//! on either adapter); the Poem handlers of the same names wrap them, for the suites that
//! mount Poem routes themselves.
#![allow(dead_code)]

#[cfg(feature = "poem")]
use poem::handler;
#[cfg(feature = "poem")]
use poem::web::Path;
#[cfg(feature = "poem")]
use sealed_session::Session;

/// The handlers, as plain functions of the session (and of the path, for those that read
/// it).
pub mod plain {
    use std::time::Duration;

    use sealed_session::{Session, SessionError};

    use crate::http::app::Req;

    /// Answers "ok" and leaves the session alone.
    pub fn noop(_: &Session) -> &'static str {
        "ok"
    }

    /// The session's `user`, or `<none>`.
    pub fn user(session: &Session) -> Result<String, SessionError> {
        Ok(session
            .get::<String>("user")?
            .unwrap_or_else(|| "<none>".to_owned()))
    }

    /// Adds one to the counter `n` (0 when absent) and answers the new value.
    pub fn count(session: &Session) -> Result<String, SessionError> {
        let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
        session.insert("n", &n)?;
        Ok(n.to_string())
    }

    /// The session's id.
    pub fn session_id(session: &Session) -> String {
        session.id().to_string()
    }

    /// Stores `key` = `val`.
    pub fn store_key(session: &Session, key: &str, val: &str) -> Result<(), SessionError> {
        session.insert(key, &val)
    }

    /// [`store_key`] from the path `/:key/:val` (any two parameter names, in that order).
    pub fn set_key(req: &Req) -> Result<(), SessionError> {
        let (key, val): (String, String) = (req.param_at(0), req.param_at(1));
        store_key(&req.session, &key, &val)
    }

    /// Marks the session touched.
    pub fn touch(session: &Session) {
        session.touch();
    }

    /// Sets this session's max age to `secs`.
    pub fn set_max_age(session: &Session, secs: u64) {
        session.set_max_age(Duration::from_secs(secs));
    }

    /// [`set_max_age`] from the path `/:secs` (any one parameter name).
    pub fn max_age(req: &Req) {
        set_max_age(&req.session, req.param_at(0));
    }

    /// A login: a new id, then `user` = `admin`.
    pub fn login_admin(session: &Session) -> Result<(), SessionError> {
        session.regenerate()?;
        session.insert("user", "admin")?;
        Ok(())
    }

    /// [`login_admin`], with `admin` as the session's subject too.
    pub fn login_admin_subject(session: &Session) -> Result<(), SessionError> {
        session.regenerate()?;
        session.insert("user", "admin")?;
        session.set_subject("admin");
        Ok(())
    }

    /// [`login_admin_subject`], answering the new token.
    pub fn login_admin_subject_token(session: &Session) -> Result<String, SessionError> {
        session.regenerate()?;
        session.insert("user", "admin")?;
        session.set_subject("admin");
        Ok(session.token()?.unwrap_or_default())
    }

    /// Destroys the session.
    pub fn logout(session: &Session) -> Result<(), SessionError> {
        session.destroy()
    }

    /// Ends every session of the session's subject.
    pub async fn everywhere(session: Session) -> Result<(), SessionError> {
        session.logout_everywhere().await
    }
}

/// Answers "ok" and leaves the session alone.
#[cfg(feature = "poem")]
#[handler]
pub fn noop() -> &'static str {
    "ok"
}

/// The session's `user`, or `<none>`.
#[cfg(feature = "poem")]
#[handler]
pub fn user(session: &Session) -> poem::Result<String> {
    Ok(plain::user(session)?)
}

/// Adds one to the counter `n` (0 when absent) and answers the new value.
#[cfg(feature = "poem")]
#[handler]
pub fn count(session: &Session) -> poem::Result<String> {
    Ok(plain::count(session)?)
}

/// The session's id.
#[cfg(feature = "poem")]
#[handler]
pub fn session_id(session: &Session) -> String {
    plain::session_id(session)
}

/// Stores `key` = `val` from the path `/:key/:val`.
#[cfg(feature = "poem")]
#[handler]
pub fn set_key(session: &Session, Path((key, val)): Path<(String, String)>) -> poem::Result<()> {
    Ok(plain::store_key(session, &key, &val)?)
}

/// Marks the session touched.
#[cfg(feature = "poem")]
#[handler]
pub fn touch(session: &Session) {
    plain::touch(session);
}

/// Sets this session's max age to `secs` from the path.
#[cfg(feature = "poem")]
#[handler]
pub fn max_age(session: &Session, Path(secs): Path<u64>) {
    plain::set_max_age(session, secs);
}

/// A login: a new id, then `user` = `admin`.
#[cfg(feature = "poem")]
#[handler]
pub fn login_admin(session: &Session) -> poem::Result<()> {
    Ok(plain::login_admin(session)?)
}

/// [`login_admin`], with `admin` as the session's subject too.
#[cfg(feature = "poem")]
#[handler]
pub fn login_admin_subject(session: &Session) -> poem::Result<()> {
    Ok(plain::login_admin_subject(session)?)
}

/// [`login_admin_subject`], answering the new token.
#[cfg(feature = "poem")]
#[handler]
pub fn login_admin_subject_token(session: &Session) -> poem::Result<String> {
    Ok(plain::login_admin_subject_token(session)?)
}

/// Destroys the session.
#[cfg(feature = "poem")]
#[handler]
pub fn logout(session: &Session) -> poem::Result<()> {
    Ok(plain::logout(session)?)
}

/// Ends every session of the session's subject.
#[cfg(feature = "poem")]
#[handler]
pub async fn everywhere(session: &Session) -> poem::Result<()> {
    Ok(plain::everywhere(session.clone()).await?)
}
