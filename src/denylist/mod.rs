//! Revocation for stateless sessions: a denylist of revoked session ids and per-subject
//! "not valid before" times, checked on every request without a network round trip.
//!
//! A sealed or signed token cannot be deleted from the client, so logging it out means
//! remembering that it is no longer valid until it would have expired anyway. A [`Denylist`]
//! holds exactly that:
//!
//! - **revoked ids**: [`Denylist::revoke`] adds a session id, kept until `until` (the time the
//!   session expires on its own; after that the expiry policy refuses it and the entry is
//!   dropped), so memory is bounded by the number of revoked-and-unexpired sessions;
//! - **revoked subjects**: [`Denylist::revoke_subject`] refuses every session of a subject
//!   (user id) issued *strictly before* a time ("log out everywhere", "password changed"); the
//!   entry is kept for the subject TTL, which must be at least the longest session lifetime.
//!
//! [`Denylist::check`], called on every request, is local, synchronous and allocation-free:
//! a look-up in memory. Two implementations:
//!
//! - [`MemoryDenylist`]: one process.
//! - `RedisDenylist` (feature `redis`): many processes share revocations through Redis; each
//!   keeps a local replica current over pub/sub, so a check never waits for the network.
//!
//! # The bound
//!
//! Any visitor can get a cookie and log it out, so the number of revoked ids is bounded per
//! instance ([`MemoryDenylistBuilder::max_revoked_sessions`], default
//! [`DEFAULT_MAX_REVOKED_SESSIONS`]); an id whose token never reached a client is never
//! revoked. When a revocation finds the bound reached (after expired entries are swept), the
//! denylist fails closed, and says so (one `warn` line per event, the
//! `sealed_session_denylist_overflows_total` counter and [`Status::overflows`]):
//!
//! - **Sessions without a subject** (the session never got one through
//!   [`Session::set_subject`](crate::Session::set_subject)): the anonymous cut-off rises to
//!   now. Every session without a subject issued until now is refused from then on (treated
//!   like an expired one: a fresh session for cookies, a 401 for bearer tokens), and the
//!   entries this covers are dropped. An application that never calls `set_subject` keeps
//!   its revocations: under such a flood its users are signed out, not left signed in.
//! - **Sessions with a subject**, when the ids left are all theirs: instead of an entry, the
//!   subject's sessions issued until the one revoked are refused, as a
//!   [`Denylist::revoke_subject`] would (the user is signed out of older sessions too).
//! - Ids revoked alone ([`Denylist::revoke`], which does not say whose session it was) are
//!   always recorded, past the bound if need be: only the application calls it.
//!
//! The cut-off is recorded as a revocation of the empty subject, which stands for the
//! sessions without one (so the Redis denylist shares it like any subject revocation).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sealed_session::denylist::{Check, Denylist, MemoryDenylist, RevokedBy};
//! use sealed_session::{Clock, ManualClock, SessionId, Timestamp};
//!
//! let clock = ManualClock::new(Timestamp::from_millis(1_764_000_000_000));
//! let memory = MemoryDenylist::builder().clock(Arc::new(clock.clone())).build();
//! let denylist: Arc<dyn Denylist> = Arc::new(memory.clone());
//!
//! let id = SessionId::from_bytes([7; 16]);
//! let issued_at = clock.now();
//! let expires_at = issued_at.saturating_add(Duration::from_secs(3600));
//! assert_eq!(denylist.check(&id, Some("alice"), issued_at), Check::Allowed);
//!
//! // `revoke` is async (the Redis denylist awaits Redis); the memory one also has a sync twin.
//! memory.insert(id, expires_at);
//! assert_eq!(denylist.check(&id, Some("alice"), issued_at), Check::Revoked(RevokedBy::Session));
//!
//! // "Log out everywhere": alice's sessions issued before now are refused, later ones not.
//! clock.advance(Duration::from_secs(10));
//! memory.insert_subject("alice", clock.now())?;
//! let other = SessionId::from_bytes([8; 16]);
//! assert!(denylist.check(&other, Some("alice"), issued_at).is_revoked());
//! assert!(denylist.check(&other, Some("alice"), clock.now()).is_allowed());
//! # Ok::<(), sealed_session::denylist::DenylistError>(())
//! ```

mod memory;
pub(crate) mod metrics;
#[cfg(feature = "redis")]
mod redis;
mod table;

#[cfg(feature = "redis")]
pub use self::redis::{RedisDenylist, RedisDenylistBuilder, StartMode};
pub use memory::{MemoryDenylist, MemoryDenylistBuilder};

pub use crate::store::BoxFuture;

use std::time::Duration;

use crate::clock::Timestamp;
use crate::state::SessionId;

/// How many revoked session ids a denylist holds by default before it fails closed (see
/// [the bound](self#the-bound)): 100,000, about 6 MB of memory per instance.
pub const DEFAULT_MAX_REVOKED_SESSIONS: usize = 100_000;

/// How long a per-subject revocation is kept by default: 30 days. It must be at least the
/// longest lifetime a session can have (the policy's `max_age`, or a longer per-session one).
pub const DEFAULT_SUBJECT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The answer of [`Denylist::check`] for one request.
///
/// ```
/// use sealed_session::denylist::{Check, Denylist, MemoryDenylist};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// let id = SessionId::from_bytes([1; 16]);
/// let far = Timestamp::from_millis(u64::MAX / 2);
/// denylist.insert(id, far);
/// let issued = Timestamp::from_millis(0);
/// assert!(matches!(denylist.check(&id, None, issued), Check::Revoked(_)));
/// assert!(matches!(denylist.check(&SessionId::from_bytes([2; 16]), None, issued), Check::Allowed));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Check {
    /// Not revoked (as far as a replica within its staleness bound knows).
    Allowed,
    /// Revoked: treat the session like an expired one.
    Revoked(RevokedBy),
    /// The denylist cannot vouch for the session: its replica is staler than the configured
    /// bound (the backend has been unreachable too long), so a revocation may have been
    /// missed. The middleware answers 503 rather than accept a possibly revoked session.
    Unavailable,
}

impl Check {
    /// Whether the session may proceed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Check::Allowed)
    }

    /// Whether the session was revoked.
    pub fn is_revoked(self) -> bool {
        matches!(self, Check::Revoked(_))
    }

    /// A short, stable label for logs and metrics: `"allowed"`, `"revoked_session"`,
    /// `"revoked_subject"` or `"unavailable"`.
    pub fn reason(self) -> &'static str {
        match self {
            Check::Allowed => "allowed",
            Check::Revoked(RevokedBy::Session) => "revoked_session",
            Check::Revoked(RevokedBy::Subject) => "revoked_subject",
            Check::Revoked(RevokedBy::Cutoff) => "revoked_cutoff",
            Check::Unavailable => "unavailable",
        }
    }
}

/// Which entry revoked a session.
///
/// ```
/// use sealed_session::denylist::{Check, Denylist, MemoryDenylist, RevokedBy};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// let id = SessionId::from_bytes([3; 16]);
/// denylist.insert(id, Timestamp::from_millis(u64::MAX / 2));
/// let check = denylist.check(&id, None, Timestamp::from_millis(0));
/// assert!(matches!(check, Check::Revoked(RevokedBy::Session)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokedBy {
    /// Its session id was revoked ([`Denylist::revoke`]).
    Session,
    /// Its subject was revoked after the session was issued ([`Denylist::revoke_subject`]).
    Subject,
    /// It has no subject and was issued before the anonymous cut-off: the denylist reached
    /// [its bound](self#the-bound), or the application revoked the empty subject.
    Cutoff,
}

/// One session to revoke, as the middleware describes it to [`Denylist::revoke_session`]:
/// its id, until when to keep the entry, and whose session it was, so that a full denylist
/// can fail closed (see [the bound](self#the-bound)).
///
/// ```
/// use sealed_session::denylist::{Denylist, MemoryDenylist, Revocation};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// let id = SessionId::from_bytes([5; 16]);
/// let until = Timestamp::from_millis(u64::MAX / 2);
/// denylist.insert_session(&Revocation::new(id, until, Timestamp::from_millis(0), None));
/// assert!(denylist.check(&id, None, Timestamp::from_millis(0)).is_revoked());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// The session id.
    pub id: SessionId,
    /// Until when to keep the entry: the latest deadline any token of the id can carry.
    pub until: Timestamp,
    /// When the session was issued.
    pub issued_at: Timestamp,
    /// Its subject; `None` (or the empty string) for a session without one.
    pub subject: Option<String>,
}

impl Revocation {
    /// The revocation of session `id` of `subject`, issued at `issued_at`, kept until `until`.
    ///
    /// ```
    /// use sealed_session::denylist::{Check, Denylist as _, MemoryDenylist, Revocation};
    /// use sealed_session::{SessionId, Timestamp};
    ///
    /// let denylist = MemoryDenylist::new();
    /// let now = Timestamp::from_system_time(std::time::SystemTime::now());
    /// let until = now.saturating_add(std::time::Duration::from_secs(60));
    /// let id = SessionId::generate()?;
    /// denylist.insert_session(&Revocation::new(id, until, now, Some("alice".into())));
    /// assert!(denylist.check(&id, Some("alice"), now).is_revoked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        id: SessionId,
        until: Timestamp,
        issued_at: Timestamp,
        subject: Option<String>,
    ) -> Revocation {
        Revocation {
            id,
            until,
            issued_at,
            subject,
        }
    }
}

/// How far the denylist can be trusted right now, for logs, metrics and health endpoints.
///
/// ```
/// use sealed_session::denylist::{Denylist, Health, MemoryDenylist};
///
/// let status = MemoryDenylist::new().status();
/// assert!(matches!(status.health, Health::Healthy));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In sync: the in-memory denylist always; the Redis one while connected and subscribed.
    Healthy,
    /// The backend is unreachable; checks are answered from the local replica, last known
    /// to be in sync `stale_for` ago, which is still within the bound.
    Degraded {
        /// Time since the replica was last known to be in sync.
        stale_for: Duration,
        /// The configured bound past which checks answer [`Check::Unavailable`].
        bound: Duration,
    },
    /// Past the staleness bound, or never synchronised: checks of sessions that are not
    /// known to be revoked answer [`Check::Unavailable`].
    Unavailable {
        /// Time since the replica was last in sync; `None` when it never was.
        stale_for: Option<Duration>,
    },
}

impl Health {
    /// A short, stable label for logs and metrics: `"healthy"`, `"degraded"` or
    /// `"unavailable"`.
    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded { .. } => "degraded",
            Health::Unavailable { .. } => "unavailable",
        }
    }
}

/// A snapshot of a denylist's state, from [`Denylist::status`].
///
/// ```
/// use sealed_session::denylist::{Denylist, MemoryDenylist};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// denylist.insert(SessionId::from_bytes([4; 16]), Timestamp::from_millis(u64::MAX / 2));
/// assert_eq!(denylist.status().revoked_sessions, 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Whether checks can be trusted.
    pub health: Health,
    /// Revoked session ids held in memory (expired ones not yet swept included).
    pub revoked_sessions: usize,
    /// Per-subject revocations held in memory (expired ones not yet swept included).
    pub revoked_subjects: usize,
    /// How often a revocation found the denylist full and it failed closed (see
    /// [the bound](self#the-bound)).
    pub overflows: u64,
}

impl Status {
    /// A status, for implementations of [`Denylist`] outside this crate.
    pub fn new(health: Health, revoked_sessions: usize, revoked_subjects: usize) -> Status {
        Status {
            health,
            revoked_sessions,
            revoked_subjects,
            overflows: 0,
        }
    }
}

/// Why a revocation (or building a denylist) failed.
///
/// A failed revocation was **not** recorded where other processes can see it: tell the user
/// the logout failed rather than pretend it happened.
///
/// ```
/// use sealed_session::SessionError;
/// use sealed_session::denylist::DenylistError;
///
/// // A revocation that could not be recorded turns the response into a 503.
/// fn status_of(e: DenylistError) -> http::StatusCode {
///     SessionError::from(e).status()
/// }
/// # let _ = status_of;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DenylistError {
    /// The backend refused or failed the operation (connection lost, error reply).
    #[error("denylist backend {backend} failed to {op}")]
    Backend {
        /// Which backend (for example `"redis"`).
        backend: &'static str,
        /// What was being done (for example `"record a revocation"`).
        op: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend did not answer in time.
    #[error("denylist backend {backend} did not {op} within {timeout:?}")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// The configured time limit.
        timeout: Duration,
    },
    /// The subject is longer than a token can carry, so no session can have it.
    #[error("subject is {len} bytes, over the limit of {max}")]
    SubjectTooLong {
        /// Length of the subject.
        len: usize,
        /// Longest subject allowed.
        max: usize,
    },
    /// The staleness bound is not longer than twice the heartbeat interval plus the command
    /// timeout, so a healthy replica could be taken for a stale one between heartbeats.
    #[error(
        "staleness bound {stale_after:?} must be more than twice the heartbeat interval {heartbeat:?} plus the timeout {timeout:?}"
    )]
    StaleBoundTooShort {
        /// The configured staleness bound.
        stale_after: Duration,
        /// The configured heartbeat interval.
        heartbeat: Duration,
        /// The configured command timeout.
        timeout: Duration,
    },
}

/// Revoked sessions, checked on every request.
///
/// Object-safe: the middleware holds an `Arc<dyn Denylist>`. `check` is synchronous and
/// cheap (a hash look-up in memory, no allocation, no I/O); `revoke` and `revoke_subject`
/// may talk to a backend and return an error when it could not record the revocation.
///
/// Times are the clock's [`Timestamp`]s (milliseconds since the epoch); an implementation
/// reads "now" from its own [`Clock`](crate::Clock).
///
/// ```
/// use std::sync::Arc;
/// use sealed_session::denylist::{Denylist, MemoryDenylist};
/// use sealed_session::{Clock, Keyring, SealedSession, SystemClock, Timestamp};
///
/// # block_on(async {
/// let denylist = Arc::new(MemoryDenylist::new());
/// let sessions = SealedSession::sealed(Keyring::generate()?).denylist(denylist.clone());
/// // An administrator signs a user out everywhere: sessions issued before now are refused.
/// let now = SystemClock.now();
/// denylist.revoke_subject("alice", now).await?;
/// let issued = Timestamp::from_millis(now.as_millis() - 1000);
/// let id = sealed_session::SessionId::generate()?;
/// assert!(denylist.check(&id, Some("alice"), issued).is_revoked());
/// # let _ = sessions;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
/// #     }
/// # }
/// ```
pub trait Denylist: Send + Sync + 'static {
    /// Whether the session `id` of `subject`, issued at `issued_at`, may proceed.
    ///
    /// Revoked when the id was revoked (and its `until` has not passed), or when the subject
    /// was revoked with a `before` strictly later than `issued_at`. A session issued in the
    /// very millisecond of a subject revocation stays valid, so a user can log in again at
    /// once after "log out everywhere".
    fn check(&self, id: &SessionId, subject: Option<&str>, issued_at: Timestamp) -> Check;

    /// [`check`](Denylist::check) as of `now`, a time the caller has already read: the
    /// middleware passes the request's time, so the check itself reads no clock. (A clock
    /// read is cheap, but it orders the CPU's loads: read right after a look-up that missed
    /// the cache, it waits for that miss to complete.)
    ///
    /// The default ignores `now` and calls `check`; both built-in denylists answer as of
    /// `now`.
    fn check_at(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Check {
        let _ = now;
        self.check(id, subject, issued_at)
    }

    /// A revocation of session `id` that this process holds but could not yet record in
    /// a shared backend (Redis was unreachable), with its `until`; `None` when there is
    /// none. Such a session is refused here but may still be accepted by other processes.
    ///
    /// The middleware uses it so that a retried logout is not answered as done: when a
    /// request brings a token refused for such a pending revocation and the handler ends the
    /// session again (`destroy`, `regenerate`), the revocation is written again, and the
    /// request gets a 503 while the backend stays unreachable. The default is `None` (a
    /// denylist with nothing shared, such as [`MemoryDenylist`]).
    fn pending(&self, id: &SessionId) -> Option<Timestamp> {
        let _ = id;
        None
    }

    /// Revokes session `id`, remembered until `until` (pass the session's expiry: after it the
    /// session is refused anyway). An `until` already past is a no-op.
    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>>;

    /// Revokes the session `revocation` describes: what the middleware calls when a session
    /// ends ([`Session::destroy`](crate::Session::destroy), `regenerate`, `cycle_id`).
    /// Knowing whose session it was lets a full denylist fail closed instead of growing
    /// (see [the bound](self#the-bound)). The default revokes the id alone
    /// ([`Denylist::revoke`]).
    fn revoke_session(&self, revocation: &Revocation) -> BoxFuture<'_, Result<(), DenylistError>> {
        self.revoke(revocation.id, revocation.until)
    }

    /// Revokes every session of `subject` issued strictly before `before` (usually now). The
    /// empty subject stands for the sessions without one.
    /// Kept for the subject TTL (see the implementation's builder). A later call with an
    /// earlier `before` does not shorten an existing revocation.
    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>>;

    /// The current health and size, for logs, metrics and health endpoints.
    fn status(&self) -> Status;
}
