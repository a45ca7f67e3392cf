//! "Your devices" on the handler's [`Session`]: list the current user's sessions, end one,
//! end all but this one. See [`crate::devices`].

use std::sync::Arc;

use super::{Backend, Lifecycle, Session, SessionError};
use crate::clock::Timestamp;
use crate::denylist::{Denylist, Revocation};
use crate::devices::{Device, DeviceHandle, DeviceRecord, Devices};
use crate::state::SessionId;

/// What the device calls read from the session, under its lock once.
struct Context {
    devices: Arc<Devices>,
    backend: Backend,
    denylist: Option<Arc<dyn Denylist>>,
    subject: String,
    current: SessionId,
    now: Timestamp,
    max_age: std::time::Duration,
}

impl Session {
    /// The sessions of the current user (the session's subject), most recently renewed
    /// first, with the current one marked: for a "your devices" page. Sessions that have
    /// expired, or that the denylist refuses (ended, or cut off by "log out everywhere"),
    /// are left out. When the current session is not listed (it was signed in before the
    /// registry was turned on, or its record failed), this response writes it (its token
    /// re-issued, or its record saved), which records it.
    ///
    /// Needs a registry on the middleware ([`SessionError::NoRegistry`]) and a subject on
    /// the session ([`SessionError::NoSubject`]).
    ///
    /// ```
    /// use poem::{handler, web::Json};
    /// use sealed_session::Session;
    ///
    /// #[handler]
    /// async fn devices(session: &Session) -> poem::Result<Json<serde_json::Value>> {
    ///     let list: Vec<_> = session
    ///         .devices()
    ///         .await?
    ///         .into_iter()
    ///         .map(|d| serde_json::json!({
    ///             "device": d.handle.as_str(), // for the sign-out form
    ///             "label": d.label,            // escape it if you put it in HTML
    ///             "this_device": d.current,
    ///             "last_renewed_ms": d.renewed.as_millis(),
    ///         }))
    ///         .collect();
    ///     Ok(Json(serde_json::Value::Array(list)))
    /// }
    /// ```
    pub async fn devices(&self) -> Result<Vec<Device>, SessionError> {
        let cx = self.device_context()?;
        let records = cx.devices.registry.list(&cx.subject, cx.now).await?;
        let mut listed = Vec::with_capacity(records.len());
        let mut current_listed = false;
        for r in records {
            if cx.refused(&r) {
                continue;
            }
            let current = r.id == cx.current;
            current_listed |= current;
            listed.push(Device {
                handle: DeviceHandle::of(&r.id),
                current,
                started: r.started,
                renewed: r.renewed,
                // The entry is kept a refresh interval past the session's deadline.
                expires_at: Timestamp::from_millis(
                    r.expires_at
                        .as_millis()
                        .saturating_sub(duration_ms(cx.devices.refresh_every)),
                ),
                label: r.label,
                ip_prefix: r.ip_prefix,
            });
        }
        if !current_listed {
            // Recorded lately by this process or not, it is not there: record it again.
            cx.devices.recent.forget(&cx.current);
            self.touch();
        }
        Ok(listed)
    }

    /// Ends the session of the current user that `handle` names (from
    /// [`Session::devices`]): revoked through the middleware's denylist at once (on every
    /// instance that shares it) or, store-backed, deleted from the store; and removed from
    /// the list. Ending the current session is [`Session::destroy`].
    ///
    /// A handle that names none of this user's live sessions (another user's, one already
    /// ended) is [`SessionError::NoSuchDevice`] (a 404): a user can end only their own
    /// sessions. In the stateless modes this needs a denylist ([`SessionError::NoDenylist`]).
    ///
    /// ```
    /// use poem::{handler, web::Form};
    /// use sealed_session::Session;
    /// use sealed_session::devices::DeviceHandle;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct SignOut { device: String }
    ///
    /// #[handler]
    /// async fn sign_out(session: &Session, Form(form): Form<SignOut>) -> poem::Result<&'static str> {
    ///     let handle = DeviceHandle::parse(&form.device)
    ///         .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::BAD_REQUEST))?;
    ///     session.end_device(&handle).await?;
    ///     Ok("signed out")
    /// }
    /// ```
    pub async fn end_device(&self, handle: &DeviceHandle) -> Result<(), SessionError> {
        let cx = self.device_context()?;
        let records = cx.devices.registry.list(&cx.subject, cx.now).await?;
        let record = records
            .into_iter()
            .find(|r| DeviceHandle::of(&r.id) == *handle && !cx.refused(r))
            .ok_or(SessionError::NoSuchDevice)?;
        if record.id == cx.current {
            return self.destroy();
        }
        cx.end(&record).await
    }

    /// Ends every session of the current user but this one; how many listed sessions it
    /// ended.
    ///
    /// In the stateless modes (which need a denylist, [`SessionError::NoDenylist`]) this is
    /// "log out everywhere else": every session of the subject issued before now is
    /// revoked, listed or not (one past the registry's bound, one whose record failed, one
    /// signed in before the registry was turned on), and this session goes on under a new
    /// id issued now, with its data. Store-backed, each listed session is deleted from the
    /// store: a session the registry does not list (past its bound, or whose record
    /// failed) is not reached, so after a compromise prefer regenerating every session of
    /// the user in your own store.
    ///
    /// ```
    /// use sealed_session::{Session, SessionError};
    ///
    /// /// "Sign out everywhere else", after a password change.
    /// async fn password_changed(session: &Session) -> Result<String, SessionError> {
    ///     let ended = session.end_other_devices().await?;
    ///     Ok(format!("signed out of {ended} other devices"))
    /// }
    /// # let _ = password_changed;
    /// ```
    pub async fn end_other_devices(&self) -> Result<usize, SessionError> {
        let cx = self.device_context()?;
        let records = cx.devices.registry.list(&cx.subject, cx.now).await?;
        let others: Vec<&DeviceRecord> = records
            .iter()
            .filter(|r| r.id != cx.current && !cx.refused(r))
            .collect();
        match &cx.backend {
            Backend::Token(_) => {
                let denylist = cx.denylist.as_ref().ok_or(SessionError::NoDenylist)?;
                denylist.revoke_subject(&cx.subject, cx.now).await?;
                // The listed ones by id too: one issued in this very millisecond is not
                // before the cut-off.
                for r in &others {
                    denylist.revoke_session(&cx.revocation(r)).await?;
                }
                self.reissue_from(cx.now)?;
            }
            Backend::Store { store, .. } => {
                for r in &others {
                    store.delete(&r.id).await?;
                }
            }
        }
        for r in &others {
            cx.forget(r).await;
        }
        Ok(others.len())
    }

    /// This session under a new id issued at `at` (after a subject revocation at `at`, which
    /// it survives), with its data, subject and deadline; the old id ends.
    fn reissue_from(&self, at: Timestamp) -> Result<(), SessionError> {
        let id = SessionId::generate()?;
        let mut inner = self.lock();
        Session::end_current(&mut inner);
        inner.state.set_id(id);
        inner.state.set_issued_at(at);
        inner.exposed = false;
        inner.lifecycle = Lifecycle::Live;
        inner.changed = true;
        Ok(())
    }

    fn device_context(&self) -> Result<Context, SessionError> {
        let mut inner = self.lock();
        let now = inner.refresh_now();
        let shared = &inner.shared;
        Ok(Context {
            devices: shared.devices.clone().ok_or(SessionError::NoRegistry)?,
            backend: shared.backend.clone(),
            denylist: shared.denylist.clone(),
            subject: inner
                .state
                .subject()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(SessionError::NoSubject)?,
            current: inner.state.id(),
            now,
            max_age: shared.max_age,
        })
    }
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Context {
    /// Whether the denylist refuses the session of `r` (ended elsewhere, or by "log out
    /// everywhere"): it is no device any more.
    fn refused(&self, r: &DeviceRecord) -> bool {
        self.denylist.as_ref().is_some_and(|d| {
            d.check_at(&r.id, Some(&r.subject), r.started, self.now)
                .is_revoked()
        })
    }

    /// The revocation of the session of `r`: until the latest deadline any token of its id
    /// can carry.
    fn revocation(&self, r: &DeviceRecord) -> Revocation {
        let until = r.started.saturating_add(self.max_age);
        Revocation::new(r.id, until, r.started, Some(r.subject.clone()))
    }

    /// Ends the session of `r` (another than the current one) and forgets it.
    async fn end(&self, r: &DeviceRecord) -> Result<(), SessionError> {
        match &self.backend {
            Backend::Token(_) => {
                let denylist = self.denylist.as_ref().ok_or(SessionError::NoDenylist)?;
                denylist.revoke_session(&self.revocation(r)).await?;
            }
            Backend::Store { store, .. } => store.delete(&r.id).await?,
        }
        self.forget(r).await;
        Ok(())
    }

    /// Removes the entry of an ended session. A failure is logged: the session is ended
    /// (and, with a denylist, left out of lists); the entry goes when it expires.
    async fn forget(&self, r: &DeviceRecord) {
        self.devices.recent.forget(&r.id);
        if let Err(e) = self.devices.registry.remove(&r.subject, &r.id).await {
            tracing::warn!(target: "sealed_session", error = %e, "ended session not removed from the device registry");
        }
    }
}
