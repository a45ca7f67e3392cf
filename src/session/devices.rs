//! "Your devices" on the handler's [`Session`]: list the current user's sessions, end one,
//! end all but this one. See [`crate::devices`].

use std::sync::Arc;

use super::{Backend, Session, SessionError};
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
    /// are left out. When the current session is not listed yet (it was signed in before
    /// the registry was turned on), this response re-issues its token, which records it.
    ///
    /// Needs a registry on the middleware ([`SessionError::NoRegistry`]) and a subject on
    /// the session ([`SessionError::NoSubject`]).
    ///
    /// ```
    /// use poem::{handler, web::Html};
    /// use sealed_session::Session;
    ///
    /// #[handler]
    /// async fn devices(session: &Session) -> poem::Result<Html<String>> {
    ///     let mut page = String::from("<ul>");
    ///     for d in session.devices().await? {
    ///         let you = if d.current { " (this device)" } else { "" };
    ///         page += &format!("<li>{}{you} <button name=device value={}>sign out</button>", d.label, d.handle);
    ///     }
    ///     Ok(Html(page + "</ul>"))
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
                expires_at: r.expires_at,
                label: r.label,
                ip_prefix: r.ip_prefix,
            });
        }
        if !current_listed {
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

    /// Ends every session of the current user but this one, as [`Session::end_device`]
    /// does each; how many it ended.
    pub async fn end_other_devices(&self) -> Result<usize, SessionError> {
        let cx = self.device_context()?;
        let records = cx.devices.registry.list(&cx.subject, cx.now).await?;
        let mut ended = 0;
        for r in records.iter().filter(|r| r.id != cx.current) {
            cx.end(r).await?;
            ended += 1;
        }
        Ok(ended)
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

impl Context {
    /// Whether the denylist refuses the session of `r` (ended elsewhere, or by "log out
    /// everywhere"): it is no device any more.
    fn refused(&self, r: &DeviceRecord) -> bool {
        self.denylist.as_ref().is_some_and(|d| {
            d.check_at(&r.id, Some(&r.subject), r.started, self.now)
                .is_revoked()
        })
    }

    /// Ends the session of `r` (another than the current one) and forgets it.
    async fn end(&self, r: &DeviceRecord) -> Result<(), SessionError> {
        match &self.backend {
            Backend::Token(_) => {
                let denylist = self.denylist.as_ref().ok_or(SessionError::NoDenylist)?;
                // Until the latest deadline any token of the id can carry.
                let until = r.started.saturating_add(self.max_age);
                let revocation = Revocation::new(r.id, until, r.started, Some(r.subject.clone()));
                denylist.revoke_session(&revocation).await?;
            }
            Backend::Store { store, .. } => store.delete(&r.id).await?,
        }
        self.devices.registry.remove(&r.subject, &r.id).await?;
        Ok(())
    }
}
