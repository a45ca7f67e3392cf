//! The per-request [`Session`] handle that handlers see.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{FromRequest, Request, RequestBody};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cache::{Hit, OpenCache};
use crate::clock::{Clock, Timestamp};
use crate::codec::{Codec, SessionIdCodec};
use crate::denylist::{Denylist, DenylistError, Revocation};
use crate::error::{DataError, OpenError, SealError};
use crate::state::{SessionId, SessionState};
use crate::stats::STRIPES;
use crate::store::{Store, StoreError};

/// Errors a handler can get from a [`Session`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handler asked for a `Session`, but the session middleware is not installed on its
    /// route. Answered as a 500 with this message.
    #[error(
        "no session: the sealed-session middleware is not installed on this route (add `.with(SealedSession::...)`)"
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
}

impl ResponseError for SessionError {
    fn status(&self) -> StatusCode {
        match self {
            SessionError::Store(_) | SessionError::Denylist(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Ended => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Where the session lives: in the token (stateless) or in a store (the token is an id).
#[derive(Clone)]
pub(crate) enum Backend {
    /// The whole session travels in the token.
    Token(Arc<dyn Codec>),
    /// The token is a signed id; the session lives in the store.
    Store {
        ids: SessionIdCodec,
        store: Arc<dyn Store>,
    },
}

/// What happened to the session during the request; read by the middleware afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Opened from a token, or new.
    #[default]
    Live,
    /// `destroy()` was called and nothing was stored since.
    Destroyed,
    /// Store-backed: `save()` found the loaded session gone from the store (ended by another
    /// request), and nothing was stored since. Like `Destroyed`, but the cookie is left
    /// alone: a removal could erase the new cookie a concurrent `regenerate` just set.
    EndedElsewhere,
}

impl Lifecycle {
    /// Destroyed, here or elsewhere: there is no session to save or send.
    pub(crate) fn is_ended(self) -> bool {
        matches!(self, Lifecycle::Destroyed | Lifecycle::EndedElsewhere)
    }
}

pub(crate) struct Inner {
    pub(crate) state: SessionState,
    /// No token came with the request (or it was refused): a new session.
    pub(crate) is_new: bool,
    /// Data or metadata changed: a new token must go out.
    pub(crate) changed: bool,
    /// Re-issue even if unchanged (touch, renewal, stale key).
    pub(crate) reissue: bool,
    pub(crate) lifecycle: Lifecycle,
    /// Sessions this request ended (by `destroy`, `regenerate` or `cycle_id`), for
    /// revocation.
    pub(crate) ended: Vec<Ended>,
    /// A token of the current id may be in a client's hands: the request arrived with one,
    /// or [`Session::token`] handed one to the handler. Only such an id is revoked when it
    /// ends: nobody can present a token that was never sent.
    pub(crate) exposed: bool,
    /// The latest deadline any token of the current id carries: the one that arrived, or one
    /// sealed during this request. Revoking the id lasts until then, even if the handler
    /// shortened the session (`set_max_age`) before ending it.
    pub(crate) issued_until: Timestamp,
    /// A refused token's session whose revocation is not yet recorded in the shared
    /// denylist (see [`Denylist::pending`]): ended again, with its `until`, if this request
    /// ends the session, so that a retried logout is not reported as done.
    pub(crate) unconfirmed: Option<(SessionId, Timestamp)>,
    /// A token made during the handler by [`Session::token`], to be sent unless the session
    /// changes again.
    pub(crate) token: Option<String>,
    pub(crate) now: Timestamp,
    /// What every session of the endpoint shares (one reference count per request).
    pub(crate) shared: Arc<Shared>,
    /// The request came over HTTPS (for the cookie name, see [`Inner::purpose`]).
    pub(crate) secure: bool,
    /// The token was made with a key that is no longer primary.
    pub(crate) stale_key: bool,
    /// Store-backed: the record [`Session::save`] wrote during this request, so that the
    /// middleware does not write the same bytes again (express-session's `savedHash`).
    pub(crate) saved: Option<Vec<u8>>,
    /// The id the request arrived with, when its session opened (not new). Store-backed: the
    /// id whose record was loaded from the store.
    pub(crate) loaded: Option<SessionId>,
    /// Where the open cache keeps the token the request arrived with, and its session id:
    /// that entry is dropped when a new token replaces it.
    pub(crate) cached_as: Option<(u64, SessionId)>,
}

/// A session a request ended, to revoke (token modes) or delete (store mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// A session whose token may be in a client's hands.
    Session(Revocation),
    /// A refused token's session whose revocation is not yet recorded in the shared
    /// denylist ([`Denylist::pending`]), with its `until`: recorded again, by id.
    Unconfirmed(SessionId, Timestamp),
}

impl Ended {
    /// The ended session's id.
    pub(crate) fn id(&self) -> SessionId {
        match self {
            Ended::Session(r) => r.id,
            Ended::Unconfirmed(id, _) => *id,
        }
    }
}

/// What the sessions of one endpoint share: how their tokens are made, kept and revoked.
///
/// Every session holds a reference, taken and dropped on every request. The endpoint keeps
/// one copy per thread stripe ([`crate::stats::stripe`]), each aligned to its own cache
/// lines, so that threads serving requests in parallel do not pass one reference count (and
/// the fields beside it, which every request reads) back and forth between their cores.
#[derive(Clone)]
#[repr(align(128))]
pub(crate) struct Shared {
    pub(crate) backend: Backend,
    pub(crate) denylist: Option<Arc<dyn Denylist>>,
    /// The cookie name (and token purpose) without and with the Secure-only prefix.
    pub(crate) purposes: [Arc<str>; 2],
    /// The open cache: a token sealed here is kept in it, so that its next use (the
    /// client's next request) is not decoded again.
    pub(crate) cache: Option<Arc<OpenCache>>,
    pub(crate) max_age: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    /// The middleware's clock: lifecycle calls ([`Session::regenerate`],
    /// [`Session::logout_everywhere`]) read the time of the call from it.
    pub(crate) clock: Arc<dyn Clock>,
    /// The data's nesting bound ([`Limits::json_depth`](crate::Limits::json_depth)): a value
    /// that would pass it is refused by `insert`, not sent and refused on its way back.
    pub(crate) max_depth: usize,
}

/// One copy of [`Shared`] per thread stripe, each in its own allocation.
pub(crate) struct Striped {
    first: Arc<Shared>,
    rest: Box<[Arc<Shared>]>,
}

impl From<Shared> for Striped {
    fn from(shared: Shared) -> Striped {
        Striped {
            rest: (1..STRIPES).map(|_| Arc::new(shared.clone())).collect(),
            first: Arc::new(shared),
        }
    }
}

impl Striped {
    /// This thread's copy.
    pub(crate) fn here(&self) -> &Arc<Shared> {
        match crate::stats::stripe() {
            0 => &self.first,
            i => self.rest.get(i - 1).unwrap_or(&self.first),
        }
    }
}

impl Shared {
    /// The token purpose (cookie name) for a request that did or did not come over HTTPS.
    pub(crate) fn purpose(&self, secure: bool) -> &Arc<str> {
        let [plain, prefixed] = &self.purposes;
        if secure { prefixed } else { plain }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.state.id())
            .field("is_new", &self.is_new)
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

/// What a request's session arrived as, beside its state (which the opening writes into the
/// session in place, see [`Session::build`]).
pub(crate) struct Arrival {
    /// No token came, or it was refused: a new session.
    pub(crate) is_new: bool,
    /// Send a new token even if the handler changes nothing (renewal due, or a stale key).
    pub(crate) reissue: bool,
    /// The token was made with a key that is no longer primary.
    pub(crate) stale_key: bool,
    /// A token came but was refused.
    pub(crate) refused: Option<OpenError>,
    /// The refused token's session was revoked here but the revocation is not yet recorded
    /// in the shared denylist: its id and `until`, ended again if the handler ends the
    /// session, so that a retried logout reports the truth.
    pub(crate) unconfirmed: Option<(SessionId, Timestamp)>,
    /// Where the open cache keeps the token that opened, with its session id: dropped from
    /// the cache when this request replaces the token.
    pub(crate) cached_as: Option<(u64, SessionId)>,
}

impl Inner {
    /// The state of a session not yet opened: an all-zero id, never sent, because every way
    /// of opening a request's session overwrites it before [`Inner::begin`].
    pub(crate) fn unopened(now: Timestamp) -> SessionState {
        SessionState::new(SessionId::from_bytes([0; 16]), now, now)
    }

    /// A session that [`Inner::begin`] has yet to ready, for a new allocation.
    pub(crate) fn blank(shared: &Arc<Shared>, now: Timestamp) -> Inner {
        Inner {
            state: Inner::unopened(now),
            is_new: true,
            changed: false,
            reissue: false,
            lifecycle: Lifecycle::Live,
            ended: Vec::new(),
            exposed: false,
            issued_until: now,
            unconfirmed: None,
            token: None,
            now,
            shared: Arc::clone(shared),
            secure: false,
            stale_key: false,
            saved: None,
            loaded: None,
            cached_as: None,
        }
    }

    /// Readies the session for a request, in place: every field but the state, which the
    /// opening has written, is set from `arrival` or to its start value, so nothing of the
    /// allocation's previous request is left (the pattern names every field, so a new one
    /// cannot be forgotten here). The endpoint's shared parts are kept when they are the
    /// same, without touching their count.
    pub(crate) fn begin(
        &mut self,
        shared: &Arc<Shared>,
        now: Timestamp,
        secure: bool,
        arrival: &Arrival,
    ) {
        let Inner {
            state,
            is_new,
            changed,
            reissue,
            lifecycle,
            ended,
            exposed,
            issued_until,
            unconfirmed,
            token,
            now: at,
            shared: mine,
            secure: over_https,
            stale_key,
            saved,
            loaded,
            cached_as,
        } = self;
        *is_new = arrival.is_new;
        *changed = false;
        *reissue = arrival.reissue;
        *lifecycle = Lifecycle::Live;
        ended.clear();
        *exposed = !arrival.is_new;
        *issued_until = state.expires_at();
        *unconfirmed = arrival.unconfirmed;
        *token = None;
        *at = now;
        if !Arc::ptr_eq(mine, shared) {
            *mine = Arc::clone(shared);
        }
        *over_https = secure;
        *stale_key = arrival.stale_key;
        *saved = None;
        *loaded = (!arrival.is_new).then(|| state.id());
        *cached_as = arrival.cached_as;
    }
}

impl Inner {
    /// Makes the token for the state as of now (moving `last_seen`). Stateless: seals the
    /// state and clears the change flags. Store-backed: signs the id (the store write
    /// happens at the end of the request, or on `save`).
    pub(crate) fn seal_now(&mut self) -> Result<String, SealError> {
        self.state.set_last_seen(self.now);
        let shared = &*self.shared;
        let purpose = shared.purpose(self.secure);
        match &shared.backend {
            Backend::Token(codec) => {
                let token = codec.seal(&self.state, purpose.as_bytes())?;
                if let Some(cache) = &shared.cache {
                    let hit = Hit {
                        state: self.state.clone(),
                        stale_key: false,
                    };
                    // The client sends the new token from now on: the one it replaces goes,
                    // and the budget is updated once for both.
                    let freed = self
                        .cached_as
                        .take()
                        .map_or(0, |(hash, id)| cache.take(hash, id));
                    cache.insert(
                        &token,
                        cache.hash(token.as_bytes()),
                        self.secure,
                        hit,
                        freed,
                    );
                }
                self.issued_until = self.issued_until.max(self.state.expires_at());
                self.changed = false;
                self.reissue = false;
                Ok(token)
            }
            Backend::Store { ids, .. } => Ok(ids.sign(&self.state.id(), purpose.as_bytes())),
        }
    }

    /// Drops the open cache's entry for the token the request arrived with, before the data
    /// changes: a new token will replace that one, and the entry shares the data with this
    /// session, so keeping it would make the change copy the data.
    pub(crate) fn release_cached(&mut self) {
        if let (Some(cache), Some((hash, id))) = (&self.shared.cache, self.cached_as.take()) {
            cache.remove(hash, id);
        }
    }

    /// Moves the request's time on to the clock's now (never back), and returns it: for the
    /// lifecycle calls, which take effect at the time they are made.
    pub(crate) fn refresh_now(&mut self) -> Timestamp {
        self.now = self.now.max(self.shared.clock.now());
        self.now
    }

    /// When the session becomes unusable: the earlier of its deadline and its idle deadline.
    pub(crate) fn deadline(&self) -> Timestamp {
        let abs = self.state.expires_at();
        match self.shared.idle_timeout {
            Some(idle) => abs.min(self.state.last_seen().saturating_add(idle)),
            None => abs,
        }
    }

    /// Store-backed: whether a write of the current state replaces the record this request
    /// loaded (same id: not new, not regenerated, cycled or destroyed since). Such a write
    /// uses [`Store::save_existing`], so that a session another request ended in the meantime
    /// is not written back.
    pub(crate) fn replaces_loaded(&self) -> bool {
        self.loaded == Some(self.state.id())
    }

    /// The store record of the state as of now.
    pub(crate) fn record(&mut self) -> Result<Vec<u8>, SealError> {
        self.state.set_last_seen(self.now);
        let mut out = Vec::with_capacity(self.state.encoded_len_hint());
        self.state.encode_into(&mut out)?;
        Ok(out)
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

thread_local! {
    /// This thread's spare session allocation: see [`Session::recycle`].
    static SPARE: std::cell::Cell<Option<Arc<Mutex<Inner>>>> = const { std::cell::Cell::new(None) };
}

impl Session {
    /// A session in this thread's spare allocation (see [`Session::recycle`]) when there is
    /// one, else in a new one holding `blank()`; `fill` readies it for the request in place
    /// (an `Inner` is about 270 bytes, and the state a request opens is written straight
    /// into it rather than moved there through the steps that open it). What `fill` leaves
    /// of the previous request is its to overwrite: see [`Inner::begin`].
    pub(crate) fn build<R>(
        blank: impl FnOnce() -> Inner,
        fill: impl FnOnce(&mut Inner) -> R,
    ) -> (Session, R) {
        // `try_with`: no spare (and no panic) while the thread's locals are being destroyed.
        if let Some(mut spare) = SPARE.try_with(std::cell::Cell::take).ok().flatten()
            && let Some(slot) = Arc::get_mut(&mut spare)
        {
            slot.clear_poison();
            let r = fill(slot.get_mut().unwrap_or_else(PoisonError::into_inner));
            return (Session { inner: spare }, r);
        }
        let mut inner = blank();
        let r = fill(&mut inner);
        let session = Session {
            inner: Arc::new(Mutex::new(inner)),
        };
        (session, r)
    }

    /// Keeps the session's allocation for the next request on this thread, when nothing
    /// else holds the session any more (a handler may keep a clone): no allocation and
    /// free per request, and memory that is still in the cache. What the session held
    /// (its data, and a reference to its endpoint's shared parts, keys included) stays
    /// until that next request, or until the thread ends: an endpoint dropped while the
    /// process goes on is freed only then.
    pub(crate) fn recycle(mut self) {
        if Arc::get_mut(&mut self.inner).is_some() {
            let spare = Some(self.inner);
            // While the thread's locals are being destroyed the session is just dropped.
            let _ = SPARE.try_with(|s| s.set(spare));
        }
    }

    /// Where the session's allocation is, to tell reuse apart.
    #[cfg(test)]
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.inner).addr()
    }

    /// Where this thread's spare allocation is, if it has one.
    #[cfg(test)]
    pub(crate) fn spare_addr() -> Option<usize> {
        let spare = SPARE.take();
        let addr = spare.as_ref().map(|s| Arc::as_ptr(s).addr());
        SPARE.set(spare);
        addr
    }

    /// Whether a panic left the session's lock poisoned.
    #[cfg(test)]
    pub(crate) fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
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
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        Ok(self.lock().state.get(key)?)
    }

    /// Stores `value` under `key`. A value that would nest the session data deeper than the
    /// middleware's [`Limits::json_depth`](crate::Limits::json_depth) is refused with
    /// [`DataError::TooDeep`](crate::DataError::TooDeep): such a session would be refused
    /// when it came back.
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
    pub fn contains(&self, key: &str) -> Result<bool, SessionError> {
        Ok(self.lock().state.contains(key)?)
    }

    /// Removes every value; the session (and its id) goes on.
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
    pub fn id(&self) -> SessionId {
        self.lock().state.id()
    }

    /// True when the request carried no usable session (none, or one that was refused).
    pub fn is_new(&self) -> bool {
        self.lock().is_new
    }

    /// When the session was issued (created or regenerated).
    pub fn issued_at(&self) -> Timestamp {
        self.lock().state.issued_at()
    }

    /// The session's absolute deadline (never later than the policy's `max_age` after
    /// [`Session::issued_at`]).
    pub fn expires_at(&self) -> Timestamp {
        self.lock().state.expires_at()
    }

    /// The subject (user id) the session is bound to, used for per-user revocation.
    pub fn subject(&self) -> Option<String> {
        self.lock().state.subject().map(str::to_owned)
    }

    /// Binds the session to a subject (user id), so that revoking every session of that
    /// subject ("log out everywhere") reaches it. Set it at login, after `regenerate`.
    pub fn set_subject(&self, subject: impl Into<String>) {
        let mut inner = self.lock();
        Session::revive(&mut inner);
        inner.state.set_subject(Some(subject.into()));
        inner.changed = true;
    }

    /// A new session id with empty data and fresh times, as express-session's
    /// `req.session.regenerate()`: call it at login, against session fixation. The old id is
    /// ended (and revoked, when a denylist is configured); its data is dropped. Use
    /// [`Session::cycle_id`] to keep the data.
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
    pub fn cycle_id(&self) -> Result<(), SessionError> {
        let id = SessionId::generate()?;
        let mut inner = self.lock();
        Session::end_current(&mut inner);
        inner.state.set_id(id);
        inner.issued_until = inner.state.expires_at();
        inner.exposed = false;
        inner.lifecycle = Lifecycle::Live;
        inner.changed = true;
        Ok(())
    }

    /// Ends the session: its data is dropped, the cookie is cleared (with the Path and Domain
    /// it was set with) and its id is revoked when a denylist is configured. A value stored
    /// afterwards in the same request starts a new session.
    pub fn destroy(&self) -> Result<(), SessionError> {
        let mut inner = self.lock();
        Session::restart(&mut inner, SessionId::generate()?, Lifecycle::Destroyed);
        Ok(())
    }

    /// "Log out everywhere": revokes every session of this session's subject issued before
    /// now (on every instance sharing the denylist), then destroys this one. Use it when a
    /// password changes. Needs a denylist on the middleware and a subject on the session.
    /// To do the same for another user (an administrator's action), call
    /// [`Denylist::revoke_subject`] on the denylist you gave the middleware.
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
            inner.state = state;
            inner.changed = false;
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
    /// A session that came with the request is written only if the store still holds it
    /// ([`Store::save_existing`]). When another request ended it meanwhile (a logout with the
    /// same cookie, `regenerate`, or expiry), it stays ended: nothing is written, this
    /// request's session becomes empty as after `destroy` (a value stored afterwards starts a
    /// new session), no cookie is sent for it, and `save` returns [`SessionError::Ended`]
    /// (a 409 Conflict when the handler returns it).
    pub async fn save(&self) -> Result<(), SessionError> {
        let (store, id, record, deadline, existing) = {
            let mut inner = self.lock();
            let Backend::Store { store, .. } = inner.shared.backend.clone() else {
                return Ok(());
            };
            if inner.lifecycle.is_ended() {
                return Ok(());
            }
            let record = inner.record()?;
            let existing = inner.replaces_loaded();
            (store, inner.state.id(), record, inner.deadline(), existing)
        };
        if crate::store::write(&*store, &id, &record, deadline, existing).await? {
            self.lock().saved = Some(record);
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
    fn restart(inner: &mut Inner, id: SessionId, lifecycle: Lifecycle) {
        Session::end_current(inner);
        // Issued at the time of the call, so that a session started after a "log out
        // everywhere" of this request is not refused by it.
        let now = inner.refresh_now();
        inner.state = SessionState::new(id, now, now.saturating_add(inner.shared.max_age));
        inner.issued_until = inner.state.expires_at();
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
            // Until the latest deadline any token of the id can carry: a policy caps every
            // token's at its issue time plus `max_age`, whatever a concurrent request set.
            let until = state
                .expires_at()
                .max(inner.issued_until)
                .max(state.issued_at().saturating_add(inner.shared.max_age));
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

impl<'a> FromRequest<'a> for &'a Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        req.extensions()
            .get::<Session>()
            .ok_or_else(|| SessionError::MiddlewareMissing.into())
    }
}

impl<'a> FromRequest<'a> for Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        req.extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| SessionError::MiddlewareMissing.into())
    }
}
