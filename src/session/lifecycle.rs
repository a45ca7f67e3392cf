//! A session's lifecycle: a new id at login (`regenerate`, `cycle_id`), its end
//! (`destroy`, `logout_everywhere`), and its expiry (`touch`, `set_max_age`).

use std::time::Duration;

use super::{Ended, Inner, Lifecycle, Session, SessionError};
use crate::denylist::Revocation;
use crate::state::{SessionId, SessionState};

impl Session {
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

    /// Ends the current session and starts an empty one under `id`. A regenerated session is
    /// a change to send; a destroyed one sends nothing unless something is stored again.
    /// A regenerated session stays bound to the client's key (DPoP, DBSC): it is the same
    /// client; a destroyed one does not.
    pub(super) fn restart(inner: &mut Inner, id: SessionId, lifecycle: Lifecycle) {
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

    pub(super) fn end_current(inner: &mut Inner) {
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
