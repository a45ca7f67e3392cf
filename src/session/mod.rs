//! The per-request [`Session`] handle that handlers see.

mod devices;
mod inner;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clock::Timestamp;
use crate::denylist::{DenylistError, Revocation};
use crate::error::{DataError, OpenError, SealError};
use crate::state::{SessionId, SessionState};
use crate::store::{Loaded, StoreError};

pub(crate) use inner::{
    Arrival, Backend, DeviceWork, Ended, Inner, Lifecycle, Outcome, Plan, Recorded, Sending, Shared,
};

/// Errors a handler can get from a [`Session`].
///
/// A handler returns it with `?`; the adapters answer it with [`SessionError::status`] and
/// its message:
///
/// ```
/// use sealed_session::{Session, SessionError};
///
/// fn views(session: &Session) -> Result<u64, SessionError> {
///     let n = session.get::<u64>("views")?.unwrap_or(0) + 1; // a wrong type is an error
///     session.insert("views", &n)?;
///     Ok(n)
/// }
/// assert_eq!(SessionError::NoDenylist.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
/// # let _ = views;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handler asked for a `Session`, but the session middleware (or layer) is not
    /// installed on its route. Answered as a 500 with this message.
    #[error(
        "no session: the sealed-session middleware is not installed on this route (add `.with(SealedSession::...)`, or `.layer(SealedSession::...layer())`)"
    )]
    MiddlewareMissing,
    /// Reading or writing a value failed (wrong type, not serializable, corrupt data).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A fresh session id could not be drawn (the OS RNG failed), or the session could not
    /// be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Store-backed sessions: the store failed. Answered as a 503.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Store-backed sessions: `reload` found no such session in the store (it expired or
    /// was destroyed elsewhere).
    #[error("the session is no longer in the store")]
    Gone,
    /// `logout_everywhere` needs a denylist on the middleware.
    #[error("no denylist is configured, so sessions cannot be revoked (add `.denylist(...)`)")]
    NoDenylist,
    /// `logout_everywhere` needs to know the user: call `set_subject` at login.
    #[error("the session has no subject (call `set_subject` at login)")]
    NoSubject,
    /// The denylist could not record a revocation. Answered as a 503.
    #[error(transparent)]
    Denylist(#[from] DenylistError),
    /// Store-backed sessions: `reload` found a record that does not decode.
    #[error("the stored session record is corrupt: {0}")]
    Corrupt(OpenError),
    /// Store-backed sessions: [`Session::save`] found that the session this request loaded is
    /// no longer in the store: another request destroyed or regenerated it (a logout), or
    /// it expired, while this one ran. Nothing was written and the session is now empty, as
    /// after [`Session::destroy`]. Answered as a 409 Conflict.
    #[error(
        "the session was ended elsewhere (logged out, regenerated or expired) during this request"
    )]
    Ended,
    /// [`Session::devices`] and its kin need a registry on the middleware
    /// ([`SealedSession::devices`](crate::SealedSession::devices)).
    #[error("no device registry is configured (add `.devices(...)`)")]
    NoRegistry,
    /// [`Session::end_device`] was given a handle that names none of this user's sessions
    /// (ended already, expired, or another user's). Answered as a 404.
    #[error("no such session among this user's devices")]
    NoSuchDevice,
    /// The device registry failed. Answered as a 503.
    #[error(transparent)]
    Registry(#[from] crate::devices::RegistryError),
}

impl SessionError {
    /// The status a handler's response gets for this error: 503 when the store, the
    /// denylist or the device registry failed, 409 for [`SessionError::Ended`], 404 for
    /// [`SessionError::NoSuchDevice`], 500 otherwise. The Poem and axum
    /// adapters answer with it.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Store(_) | SessionError::Denylist(_) | SessionError::Registry(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SessionError::Ended => StatusCode::CONFLICT,
            SessionError::NoSuchDevice => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The session of the current request: a map of JSON values with typed access, plus its
/// lifecycle (`regenerate`, `destroy`, `touch`, per-session max-age).
///
/// Cheap to clone (an `Arc`); clones share the session. Use it as a handler argument,
/// `&Session` or `Session`:
///
/// ```
/// use poem::handler;
/// use sealed_session::Session;
///
/// #[handler]
/// fn views(session: &Session) -> poem::Result<String> {
///     let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
///     session.insert("views", &n)?;
///     Ok(format!("{n} views"))
/// }
/// ```
///
/// A handler on a route without the middleware gets a 500 naming the problem
/// ([`SessionError::MiddlewareMissing`]), not a panic.
#[derive(Clone, Debug)]
pub struct Session {
    inner: Arc<Mutex<Inner>>,
}

impl Session {
    /// The handle of a request's session.
    pub(crate) fn new(inner: Inner) -> Session {
        Session {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// What the response must carry, now that the handler is done: see [`Inner::plan`].
    pub(crate) fn plan(&self, how: Sending) -> Result<Plan, SealError> {
        self.lock().plan(how)
    }

    /// The sessions this request ended, for when the plan failed.
    pub(crate) fn take_ended(&self) -> Vec<Ended> {
        self.lock().take_ended()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A handler that panicked while holding the lock leaves consistent data behind
        // (every method finishes its update before returning), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn revive(inner: &mut Inner) {
        if inner.lifecycle.is_ended() {
            inner.lifecycle = Lifecycle::Live;
        }
    }

    /// The value under `key`, deserialized into `T`. `Ok(None)` when absent; an error when
    /// present but not a `T`, so a wrong type is never a silent `None`.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("views", &3u64)?;
    /// assert_eq!(session.get::<u64>("views")?, Some(3));
    /// assert_eq!(session.get::<u64>("absent")?, None);
    /// assert!(session.get::<String>("views").is_err(), "a wrong type is an error");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        Ok(self.lock().state.get(key)?)
    }

    /// Stores `value` under `key`. A value that would nest the session data deeper than the
    /// middleware's [`Limits::json_depth`](crate::Limits::json_depth) is refused with
    /// [`DataError::TooDeep`](crate::DataError::TooDeep): such a session would be refused
    /// when it came back.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// session.insert("roles", &["admin", "editor"])?;
    /// assert_eq!(session.get::<Vec<String>>("roles")?.map(|r| r.len()), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        let mut inner = self.lock();
        Session::revive(&mut inner);
        let max_depth = inner.shared.max_depth;
        if let Some(value) = inner.state.change_for(key, value, max_depth)? {
            inner.release_cached();
            inner.state.set(key, value);
            inner.changed = true;
        }
        Ok(())
    }

    /// Removes `key`, returning its value as JSON.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("flash", "saved")?;
    /// assert_eq!(session.remove("flash")?, Some("saved".into()));
    /// assert!(session.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, key: &str) -> Result<Option<Value>, SessionError> {
        let mut inner = self.lock();
        if inner.state.contains(key)? {
            inner.release_cached();
        }
        let old = inner.state.remove(key)?;
        if old.is_some() {
            inner.changed = true;
        }
        Ok(old)
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// assert!(session.contains("user")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.lock().state.contains(key)?)
    }

    /// Removes every value; the session (and its id) goes on.
    ///
    /// Store-backed, the write that follows removes the keys this request had (see
    /// [`Store::update`](crate::store::Store::update)): a key that a concurrent request of the
    /// same session added meanwhile is kept. To end a session, call [`Session::destroy`] or
    /// [`Session::regenerate`], which delete its record, instead.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// session.clear();
    /// assert!(session.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        let mut inner = self.lock();
        if !inner.state.is_empty() {
            inner.state.clear();
            inner.changed = true;
        }
    }

    /// Whether the session holds no values.
    pub fn is_empty(&self) -> bool {
        self.lock().state.is_empty()
    }

    /// The session id (128 random bits).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// let before = session.id();
    /// session.regenerate()?;
    /// assert_ne!(session.id(), before);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> SessionId {
        self.lock().state.id()
    }

    /// True when the request carried no usable session (none, or one that was refused).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let engine = SealedSession::sealed(Keyring::generate()?).secure(Secure::Never).engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// assert!(session.is_new(), "the request brought no session");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_new(&self) -> bool {
        self.lock().is_new
    }

    /// When the session was issued (created or regenerated).
    pub fn issued_at(&self) -> Timestamp {
        self.lock().state.issued_at()
    }

    /// The session's absolute deadline (never later than the policy's `max_age` after
    /// [`Session::issued_at`]).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let engine = SealedSession::sealed(Keyring::generate()?).secure(Secure::Never).engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// assert!(session.expires_at() > session.issued_at());
    /// assert!(session.last_seen() >= session.issued_at());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expires_at(&self) -> Timestamp {
        self.lock().state.expires_at()
    }

    /// The last activity its token recorded: the idle timeout runs from it.
    pub fn last_seen(&self) -> Timestamp {
        self.lock().state.last_seen()
    }

    /// A copy of the whole data, as a JSON object (for display or debugging; read single
    /// values with [`Session::get`]).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let engine = SealedSession::sealed(Keyring::generate()?).secure(Secure::Never).engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// assert_eq!(session.data()["user"], "alice");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn data(&self) -> serde_json::Map<String, Value> {
        let mut inner = self.lock();
        inner.state.data().cloned().unwrap_or_default()
    }

    /// The key the session is bound to, if any: a DPoP key (bearer tokens, see
    /// `binding::Dpop`) or a browser's registered DBSC key (cookies). A
    /// bound session reaches the handler only after its proof was checked.
    pub fn binding(&self) -> Option<crate::Binding> {
        self.lock().state.binding().cloned()
    }

    /// The subject (user id) the session is bound to, used for per-user revocation.
    pub fn subject(&self) -> Option<String> {
        self.lock().state.subject().map(str::to_owned)
    }

    /// Binds the session to a subject (user id), so that revoking every session of that
    /// subject ("log out everywhere") reaches it. Set it at login, after `regenerate`.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.regenerate()?;            // a new id at login, against fixation
    /// session.insert("user", "alice")?;
    /// session.set_subject("alice");     // "log out everywhere" reaches this session
    /// assert_eq!(session.subject().as_deref(), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_subject(&self, subject: impl Into<String>) {
        let subject = subject.into();
        let mut inner = self.lock();
        Session::revive(&mut inner);
        // With "your devices" on, the id's entry under its previous subject goes: that user
        // must not list (or end) the session of another.
        if inner.shared.devices.is_some()
            && let Some(old) = inner.state.subject()
            && !old.is_empty()
            && old != subject
        {
            let entry = (old.to_owned(), inner.state.id());
            inner.forget.push(entry);
        }
        inner.state.set_subject(Some(subject));
        inner.changed = true;
    }

    /// A new session id with empty data and fresh times, as express-session's
    /// `req.session.regenerate()`: call it at login, against session fixation. The old id is
    /// ended (and revoked, when a denylist is configured); its data is dropped. Use
    /// [`Session::cycle_id`] to keep the data.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("cart", &2)?;
    /// let anonymous = session.id();
    /// session.regenerate()?;            // at login: a new id, empty data
    /// assert_ne!(session.id(), anonymous);
    /// assert!(session.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn regenerate(&self) -> Result<(), SessionError> {
        let mut inner = self.lock();
        Session::restart(&mut inner, SessionId::generate()?, Lifecycle::Live);
        Ok(())
    }

    /// A new session id that keeps the data and subject (tower-sessions' `cycle_id`). The old
    /// id is ended like with [`Session::regenerate`].
    ///
    /// The session keeps its issue time (and its deadline): it is the same sign-in under a
    /// new id, so a "log out everywhere" that its sign-in precedes still reaches it.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("cart", &2)?;
    /// let before = session.id();
    /// session.cycle_id()?;              // a new id, the data kept
    /// assert_ne!(session.id(), before);
    /// assert_eq!(session.get::<u64>("cart")?, Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cycle_id(&self) -> Result<(), SessionError> {
        let id = SessionId::generate()?;
        let mut inner = self.lock();
        Session::end_current(&mut inner);
        inner.state.set_id(id);
        inner.exposed = false;
        inner.lifecycle = Lifecycle::Live;
        inner.changed = true;
        Ok(())
    }

    /// Ends the session: its data is dropped, the cookie is cleared (with the Path and Domain
    /// it was set with) and its id is revoked when a denylist is configured. A value stored
    /// afterwards in the same request starts a new session.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// session.destroy()?;               // at logout: revoked, the cookie cleared
    /// assert!(session.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn destroy(&self) -> Result<(), SessionError> {
        let mut inner = self.lock();
        Session::restart(&mut inner, SessionId::generate()?, Lifecycle::Destroyed);
        Ok(())
    }

    /// "Log out everywhere": revokes every session of this session's subject issued before
    /// now (on every instance sharing the denylist), then destroys this one. Use it when a
    /// password changes. Needs a denylist on the middleware and a subject on the session.
    /// To do the same for another user (an administrator's action), call
    /// [`Denylist::revoke_subject`](crate::denylist::Denylist::revoke_subject) on the denylist you gave the middleware.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.set_subject("alice");
    /// block_on(session.logout_everywhere())?; // every session of alice issued before now
    /// assert!(session.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn logout_everywhere(&self) -> Result<(), SessionError> {
        let (denylist, subject, now) = {
            let mut inner = self.lock();
            // The time of this call, not of the request's start: a sign-in that finished
            // while this request ran (say, a slow password change) is issued before it.
            let now = inner.refresh_now();
            (
                inner
                    .shared
                    .denylist
                    .clone()
                    .ok_or(SessionError::NoDenylist)?,
                inner
                    .state
                    .subject()
                    .map(str::to_owned)
                    .ok_or(SessionError::NoSubject)?,
                now,
            )
        };
        // Sessions issued strictly before `now` are refused (this one is destroyed below), so
        // a session regenerated after this call, in this request or the next, is not caught
        // by its own logout.
        denylist.revoke_subject(&subject, now).await?;
        self.destroy()
    }

    /// Marks the session active now and re-issues its token, resetting the idle clock
    /// (express-session's `touch`).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.touch();                  // renew the idle deadline on this response
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn touch(&self) {
        let mut inner = self.lock();
        inner.reissue = true;
    }

    /// Overrides this session's lifetime: it now ends `max_age` from now (express-session's
    /// `req.session.cookie.maxAge = ...`), but never later than the middleware's
    /// [`Policy::max_age`](crate::Policy::max_age) after the session's issue time: a longer
    /// value is clamped to that, since the server would cap it there anyway
    /// ([`Policy::absolute_deadline`](crate::Policy::absolute_deadline)). So it can shorten a
    /// session, not extend it; for long-lived ("remember me") sessions raise the policy's
    /// `max_age` and shorten the others. The cookie's Max-Age follows when cookies are
    /// persistent.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let denylist = std::sync::Arc::new(sealed_session::denylist::MemoryDenylist::new());
    /// # let engine = SealedSession::sealed(Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .denylist(denylist)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// // "Remember me": this session lives 30 days, within the policy's cap.
    /// session.set_max_age(std::time::Duration::from_secs(30 * 24 * 3600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_max_age(&self, max_age: Duration) {
        let mut inner = self.lock();
        Session::revive(&mut inner);
        let cap = inner.state.issued_at().saturating_add(inner.shared.max_age);
        let at = inner.now.saturating_add(max_age).min(cap);
        inner.state.set_expires_at(at);
        inner.changed = true;
    }

    /// The token that carries this session as it stands now, sealed on demand; the same
    /// token goes out with the response unless the session changes again afterwards.
    /// For bearer transports, return it from a login handler:
    ///
    /// ```
    /// # use poem::{handler, web::Json};
    /// # use sealed_session::Session;
    /// #[handler]
    /// fn login(session: &Session) -> poem::Result<Json<serde_json::Value>> {
    ///     session.regenerate()?;
    ///     session.insert("user", "admin")?;
    ///     Ok(Json(serde_json::json!({ "token": session.token()? })))
    /// }
    /// ```
    ///
    /// `None` after [`Session::destroy`].
    pub fn token(&self) -> Result<Option<String>, SessionError> {
        let mut inner = self.lock();
        if inner.lifecycle.is_ended() {
            return Ok(None);
        }
        if let Some(t) = &inner.token
            && !inner.changed
            && !inner.reissue
        {
            return Ok(Some(t.clone()));
        }
        let token = inner.seal_now()?;
        // The handler may send it anywhere: from now on the id is revoked when it ends.
        inner.exposed = true;
        // Sent with the response unless the session changes again.
        if matches!(inner.shared.backend, Backend::Token(_)) {
            inner.token = Some(token.clone());
        }
        Ok(Some(token))
    }

    /// Store-backed sessions: reads the session again from the store, dropping unsaved
    /// changes (express-session's `reload`). Stateless sessions: nothing to reload; `Ok`.
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # use sealed_session::store::MemoryStore;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let engine = SealedSession::server_store(MemoryStore::new(), Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// block_on(session.save())?;
    /// session.insert("user", "bob")?;   // not saved
    /// block_on(session.reload())?;      // back to what the store holds
    /// assert_eq!(session.get::<String>("user")?.as_deref(), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn reload(&self) -> Result<(), SessionError> {
        let (backend, id) = {
            let inner = self.lock();
            (inner.shared.backend.clone(), inner.state.id())
        };
        let Backend::Store { store, .. } = backend else {
            return Ok(());
        };
        let record = store.load(&id).await?.ok_or(SessionError::Gone)?;
        let state = SessionState::decode(&record).map_err(SessionError::Corrupt)?;
        let mut inner = self.lock();
        if inner.state.id() == id {
            let expires_at = state.expires_at();
            inner.state = state;
            inner.changed = false;
            inner.loaded = Some(Loaded {
                record,
                id,
                expires_at,
            });
        }
        Ok(())
    }

    /// Store-backed sessions: writes the session to the store now (express-session's
    /// `save`, for example before a redirect); the middleware still writes at the end of the
    /// request if it changes again. Stateless sessions: the token goes out with the response,
    /// so there is nothing to do; `Ok`.
    ///
    /// After [`Session::destroy`] (and until something is stored again) there is no session
    /// to save: nothing is written.
    ///
    /// A session that came with the request is written only over the record it was loaded
    /// from ([`Store::update`](crate::store::Store::update)). When another request of the
    /// same session wrote it meanwhile, this request's changes (the keys it set or removed)
    /// are applied to what that request wrote, and the session reads the result from then
    /// on. When another request ended it meanwhile (a logout with the same cookie,
    /// `regenerate`, or expiry), it stays ended: nothing is written, this request's session
    /// becomes empty as after `destroy` (a value stored afterwards starts a new session), no
    /// cookie is sent for it, and `save` returns [`SessionError::Ended`] (a 409 Conflict when
    /// the handler returns it).
    ///
    /// ```
    /// # use sealed_session::{Keyring, SealedSession, Secure, engine::RequestHead};
    /// # use sealed_session::store::MemoryStore;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #     }
    /// # }
    /// # let engine = SealedSession::server_store(MemoryStore::new(), Keyring::generate()?)
    /// #     .secure(Secure::Never)
    /// #     .engine();
    /// # let request = http::Request::get("/").body(())?;
    /// # let started = block_on(engine.start(RequestHead::of(&request)))
    /// #     .map_err(|a| a.status().to_string())?;
    /// # let session = started.session();
    /// session.insert("user", "alice")?;
    /// block_on(session.save())?;        // written now, before the response
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn save(&self) -> Result<(), SessionError> {
        let (store, write) = {
            let mut inner = self.lock();
            let Backend::Store { store, .. } = inner.shared.backend.clone() else {
                return Ok(());
            };
            if inner.lifecycle.is_ended() {
                return Ok(());
            }
            let record = inner.record()?;
            (store, inner.store_write(record, true))
        };
        let (id, sent) = (write.state.id(), write.state.clone());
        if let Some(written) = crate::store::write(&*store, write).await? {
            let mut inner = self.lock();
            // Unless the handler moved on to another id while the store answered.
            if inner.state.id() == id {
                // What another request wrote meanwhile, with what this one changed since.
                inner.state = inner.state.merged(&sent, &written.state);
                inner.saved = Some(written.record.clone());
                inner.loaded = Some(Loaded {
                    record: written.record,
                    id,
                    expires_at: written.state.expires_at(),
                });
            }
            return Ok(());
        }
        tracing::info!(target: "sealed_session", "session ended by another request; not saved");
        let fresh = SessionId::generate()?;
        let mut inner = self.lock();
        // Unless the handler moved on to another id while the store answered.
        if inner.state.id() == id {
            Session::restart(&mut inner, fresh, Lifecycle::EndedElsewhere);
        }
        Err(SessionError::Ended)
    }

    /// Ends the current session and starts an empty one under `id`. A regenerated session is
    /// a change to send; a destroyed one sends nothing unless something is stored again.
    /// A regenerated session stays bound to the client's key (DPoP, DBSC): it is the same
    /// client; a destroyed one does not.
    fn restart(inner: &mut Inner, id: SessionId, lifecycle: Lifecycle) {
        Session::end_current(inner);
        // Issued at the time of the call, so that a session started after a "log out
        // everywhere" of this request is not refused by it.
        let now = inner.refresh_now();
        let binding = match lifecycle {
            Lifecycle::Live => inner.state.binding().cloned(),
            _ => None,
        };
        inner.state = SessionState::new(id, now, now.saturating_add(inner.shared.max_age));
        inner.state.set_binding(binding);
        inner.lifecycle = lifecycle;
        inner.changed = lifecycle == Lifecycle::Live;
        inner.reissue = false;
        inner.token = None;
        inner.saved = None;
        inner.exposed = false;
    }

    fn end_current(inner: &mut Inner) {
        if let Some((id, until)) = inner.unconfirmed.take() {
            inner.ended.push(Ended::Unconfirmed(id, until));
        }
        // Ended only when a token of it may be in a client's hands (or, store-backed, when
        // `save` wrote its record): an id whose token was never sent cannot be presented,
        // and revoking it would let any visitor grow the denylist.
        if inner.exposed || inner.saved.is_some() {
            let state = &inner.state;
            // Until the latest deadline any token of the id can carry: the policy caps every
            // token's at its issue time plus `max_age`, whatever this or a concurrent
            // request set with `set_max_age`.
            let until = state.issued_at().saturating_add(inner.shared.max_age);
            let revocation = Revocation::new(
                state.id(),
                until,
                state.issued_at(),
                state.subject().map(str::to_owned),
            );
            inner.ended.push(Ended::Session(revocation));
        }
    }
}
