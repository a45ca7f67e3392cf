//! What a request's session holds beside its data, how it is sealed, and what the
//! middleware sends once the handler is done (the [`Plan`]). The lifecycle methods of
//! [`Session`](super::Session) change it; the middleware reads it through [`Inner::plan`].

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Hit, OpenCache, VerifiedBound};
use crate::clock::{Clock, Timestamp};
use crate::codec::{Codec, SessionIdCodec};
use crate::denylist::{Denylist, Revocation};
use crate::devices::{Devices, MAX_SUBJECT_LEN};
use crate::error::{OpenError, SealError};
use crate::state::{Binding, SessionId, SessionState};
use crate::store::{Loaded, Store, Write};

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
    pub(super) state: SessionState,
    /// No token came with the request (or it was refused): a new session.
    pub(super) is_new: bool,
    /// Data or metadata changed: a new token must go out.
    pub(super) changed: bool,
    /// Re-issue even if unchanged (touch, renewal, stale key).
    pub(super) reissue: bool,
    pub(super) lifecycle: Lifecycle,
    /// Sessions this request ended (by `destroy`, `regenerate` or `cycle_id`), for
    /// revocation.
    pub(super) ended: Vec<Ended>,
    /// A token of the current id may be in a client's hands: the request arrived with one,
    /// or [`Session::token`] handed one to the handler. Only such an id is revoked when it
    /// ends: nobody can present a token that was never sent.
    pub(super) exposed: bool,
    /// A refused token's session whose revocation is not yet recorded in the shared
    /// denylist (see [`Denylist::pending`]): ended again, with its `until`, if this request
    /// ends the session, so that a retried logout is not reported as done.
    pub(super) unconfirmed: Option<(SessionId, Timestamp)>,
    /// A token made during the handler by [`Session::token`], to be sent unless the session
    /// changes again.
    pub(super) token: Option<String>,
    pub(super) now: Timestamp,
    /// What every session of the endpoint shares (one reference count per request).
    pub(super) shared: Arc<Shared>,
    /// The request came over HTTPS (for the cookie name, see [`Inner::purpose`]).
    pub(super) secure: bool,
    /// The token was made with a key that is no longer primary.
    pub(super) stale_key: bool,
    /// Store-backed: the record [`Session::save`] wrote during this request, so that the
    /// middleware does not write the same bytes again (express-session's `savedHash`).
    pub(super) saved: Option<Vec<u8>>,
    /// Store-backed: the record the request loaded from the store (or [`Session::save`] last
    /// wrote) and its session, which a write of the same id must find in the store, so that
    /// no concurrent request's update is lost (see `crate::store::write`).
    pub(super) loaded: Option<Loaded>,
    /// Where the open cache keeps the token the request arrived with, and its session id:
    /// that entry is dropped when a new token replaces it.
    pub(super) cached_as: Option<(u64, SessionId)>,
    /// The bound cookie that verified for this session (DBSC), kept with its new token.
    pub(super) bound: Option<VerifiedBound>,
    /// See [`Arrival::stands_in`].
    stands_in: bool,
    /// Device registry entries to remove: this id under a subject it no longer has.
    pub(super) forget: Vec<(String, SessionId)>,
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
/// Every session holds a reference.
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
    /// "Your devices": where sessions with a subject are listed.
    pub(crate) devices: Option<Arc<Devices>>,
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
    /// Store-backed: the record the session was loaded from.
    pub(crate) loaded_record: Option<Vec<u8>>,
    /// Device-bound (DBSC): the bound cookie that verified for this session, kept with its
    /// token in the open cache (and with the token that replaces it).
    pub(crate) bound: Option<VerifiedBound>,
    /// Device-bound (DBSC): this new, empty session stands in for a bound one whose bound
    /// cookie did not come; `save_uninitialized` does not write it over that one's cookie.
    pub(crate) stands_in: bool,
}

impl Inner {
    /// The session of a request that arrived as `arrival`, with `state` (opened, or new).
    pub(crate) fn new(
        shared: Arc<Shared>,
        state: SessionState,
        now: Timestamp,
        secure: bool,
        arrival: Arrival,
    ) -> Inner {
        Inner {
            loaded: arrival.loaded_record.map(|record| Loaded {
                record,
                id: state.id(),
                expires_at: state.expires_at(),
            }),
            state,
            is_new: arrival.is_new,
            changed: false,
            reissue: arrival.reissue,
            lifecycle: Lifecycle::Live,
            ended: Vec::new(),
            exposed: !arrival.is_new,
            unconfirmed: arrival.unconfirmed,
            token: None,
            now,
            shared,
            secure,
            stale_key: arrival.stale_key,
            saved: None,
            cached_as: arrival.cached_as,
            bound: arrival.bound,
            stands_in: arrival.stands_in,
            forget: Vec::new(),
        }
    }
}

impl Inner {
    /// Makes the token for the state as of now (moving `last_seen`). Stateless: seals the
    /// state and clears the change flags. Store-backed: signs the id (the store write
    /// happens at the end of the request, or on `save`).
    pub(super) fn seal_now(&mut self) -> Result<String, SealError> {
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
                        validity: codec.sealed_validity(&self.state),
                        // Passed on while the session is still bound as the DBSC session
                        // it verified for (not after `destroy`, say).
                        bound: self.bound.filter(|b| {
                            matches!(self.state.binding(), Some(Binding::Device(key)) if b.is_for(key.id()))
                        }),
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
    pub(super) fn release_cached(&mut self) {
        if let (Some(cache), Some((hash, id))) = (&self.shared.cache, self.cached_as.take()) {
            cache.remove(hash, id);
        }
    }

    /// Moves the request's time on to the clock's now (never back), and returns it: for the
    /// lifecycle calls, which take effect at the time they are made.
    pub(super) fn refresh_now(&mut self) -> Timestamp {
        self.now = self.now.max(self.shared.clock.now());
        self.now
    }

    /// When the session becomes unusable: the earlier of its deadline and its idle deadline.
    pub(super) fn deadline(&self) -> Timestamp {
        crate::store::deadline(&self.state, self.shared.idle_timeout)
    }

    /// Store-backed: the write of the current state as `record`. When it replaces the record
    /// this request loaded (same id: not new, not regenerated, cycled or destroyed since), it
    /// carries what was loaded, and is written only over that (see `crate::store::write`).
    /// `keep`: whether the session goes on after this write (`Session::save`), so that what
    /// was loaded stays for a later write if this one fails; the end of the request moves it
    /// into the write instead of copying it.
    pub(super) fn store_write(&mut self, record: Vec<u8>, keep: bool) -> Write {
        let id = self.state.id();
        let loaded = if keep {
            self.loaded.clone()
        } else {
            self.loaded.take()
        };
        Write {
            state: self.state.clone(),
            record,
            idle_timeout: self.shared.idle_timeout,
            loaded: loaded.filter(|l| l.id == id),
        }
    }

    /// The store record of the state as of now (`last_seen` never moves back: a concurrent
    /// request merged in by `save` may have seen the session later).
    pub(super) fn record(&mut self) -> Result<Vec<u8>, SealError> {
        self.state
            .set_last_seen(self.now.max(self.state.last_seen()));
        let mut out = Vec::with_capacity(self.state.encoded_len_hint());
        self.state.encode_into(&mut out)?;
        Ok(out)
    }
}

/// What the middleware does with the response's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing: the client keeps what it has.
    Nothing,
    /// Send the new token.
    Write,
    /// Clear the client's cookie.
    Clear,
}

/// How the request came, and the middleware's settings the plan depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sending {
    /// The request carried session cookies (even ones that did not open).
    pub(crate) had_cookie: bool,
    /// The token travels in a header, not a cookie.
    pub(crate) bearer: bool,
    /// A token came but was refused.
    pub(crate) refused: bool,
    /// express-session's `saveUninitialized`.
    pub(crate) save_uninitialized: bool,
    /// A new token on every response.
    pub(crate) rolling: bool,
    /// The cookie carries a Max-Age (and so must be re-sent as the session's deadline nears).
    pub(crate) persistent: bool,
}

/// What to do after the handler, decided under the session lock.
pub(crate) struct Plan {
    pub(crate) outcome: Outcome,
    /// The token to send (a sealed token, or a signed id), when one must be sent.
    pub(crate) token: Option<String>,
    /// Store-backed: the record to write.
    pub(crate) record: Option<Write>,
    /// Sessions this request ended (destroy, regenerate, cycle_id).
    pub(crate) ended: Vec<Ended>,
    /// Cookie Max-Age, for persistent cookies.
    pub(crate) max_age: Duration,
    /// Whether the session was new when the request came.
    pub(crate) is_new: bool,
    /// With "your devices" on, when there is any: the registry's work (boxed: most
    /// requests have none, and every request's plan is moved around).
    pub(crate) devices: Option<Box<DeviceWork>>,
}

/// What the device registry is to be told at the end of a request.
#[derive(Default)]
pub(crate) struct DeviceWork {
    /// The session to record, when it is written, has a subject and is due.
    pub(crate) recorded: Option<Recorded>,
    /// Entries to remove: an id under a subject it no longer has.
    pub(crate) forget: Vec<(String, SessionId)>,
}

/// A session whose token goes out, as the device registry records it.
pub(crate) struct Recorded {
    pub(crate) id: SessionId,
    pub(crate) subject: String,
    pub(crate) started: Timestamp,
    pub(crate) renewed: Timestamp,
    pub(crate) expires_at: Timestamp,
}

impl Inner {
    /// What the response must carry, now that the handler is done; the token is sealed (or
    /// the store record encoded) here. On error the sessions the request ended stay in the
    /// session, for [`Inner::take_ended`]: they are still revoked.
    pub(crate) fn plan(&mut self, how: Sending) -> Result<Plan, SealError> {
        let is_new = self.is_new;
        let outcome = match self.lifecycle {
            Lifecycle::Destroyed if !is_new || how.refused || how.had_cookie => Outcome::Clear,
            Lifecycle::Destroyed => Outcome::Nothing,
            // `save` found it ended by another request: that request answered for it.
            Lifecycle::EndedElsewhere => Outcome::Nothing,
            Lifecycle::Live if self.changed || self.token.is_some() => Outcome::Write,
            Lifecycle::Live if is_new && how.save_uninitialized && !self.stands_in => {
                Outcome::Write
            }
            // `save` stored a new session during the request: the browser needs its cookie.
            Lifecycle::Live if is_new && self.saved.is_some() => Outcome::Write,
            Lifecycle::Live if !is_new && self.reissue => Outcome::Write,
            Lifecycle::Live if how.refused => Outcome::Clear,
            Lifecycle::Live => Outcome::Nothing,
        };
        let mut plan = Plan {
            outcome,
            token: None,
            record: None,
            ended: Vec::new(),
            max_age: Duration::ZERO,
            is_new,
            devices: (!self.forget.is_empty()).then(|| {
                Box::new(DeviceWork {
                    recorded: None,
                    forget: std::mem::take(&mut self.forget),
                })
            }),
        };
        if outcome != Outcome::Write {
            plan.ended = self.take_ended();
            return Ok(plan);
        }
        match &self.shared.backend {
            Backend::Token(_) => {
                plan.token = Some(match &self.token {
                    Some(t) if !self.changed && !self.reissue => t.clone(),
                    _ => self.seal_now()?,
                });
            }
            Backend::Store { .. } => {
                let record = self.record()?;
                // What `save` already wrote is not written again.
                if self.saved.as_deref() != Some(record.as_slice()) {
                    plan.record = Some(self.store_write(record, false));
                }
                // The cookie only changes with the id or the signing key; re-send it then,
                // and when its Max-Age or `rolling` asks for it.
                let cookie_due = is_new
                    || !self.ended.is_empty()
                    || self.stale_key
                    || how.rolling
                    || how.persistent
                    || self.token.is_some()
                    || how.bearer && self.changed;
                if cookie_due {
                    plan.token = Some(self.seal_now()?);
                }
            }
        }
        plan.max_age = self.deadline().saturating_since(self.now);
        plan.ended = self.take_ended();
        // Recorded when due: this process has not recorded it within the refresh interval
        // (checked here, so that a write that is not due costs one look-up, no copy).
        if let Some(devices) = &self.shared.devices
            && let Some(subject) = self
                .state
                .subject()
                .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN)
            && devices
                .recent
                .due(self.state.id(), subject, self.now, devices.refresh_every)
        {
            let recorded = Recorded {
                id: self.state.id(),
                subject: subject.to_owned(),
                started: self.state.issued_at(),
                renewed: self.now,
                expires_at: self.deadline(),
            };
            plan.devices.get_or_insert_default().recorded = Some(recorded);
        }
        Ok(plan)
    }

    /// The sessions this request ended, taken out.
    pub(crate) fn take_ended(&mut self) -> Vec<Ended> {
        std::mem::take(&mut self.ended)
    }
}
