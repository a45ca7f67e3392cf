//! The per-request [`Session`] handle that handlers see.

mod devices;
mod inner;
mod lifecycle;
mod persist;

use std::sync::{Arc, Mutex, MutexGuard};

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::clock::Timestamp;
use crate::denylist::DenylistError;
use crate::error::{DataError, OpenError, SealError};
use crate::state::SessionId;
use crate::store::StoreError;

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
}
