//! A session written out on demand: its token now (`token`), and, store-backed, the
//! record read again or written before the response (`reload`, `save`).

use super::{Backend, Lifecycle, Session, SessionError};
use crate::state::{SessionId, SessionState};
use crate::store::Loaded;

impl Session {
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
}
