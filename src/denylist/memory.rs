//! The in-memory denylist, and the replica structure the Redis denylist keeps locally.
//!
//! The sharded map itself is in `table.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::table::Sharded;
use super::{
    BoxFuture, Check, DEFAULT_MAX_REVOKED_SESSIONS, DEFAULT_SUBJECT_TTL, Denylist, DenylistError,
    Health, Revocation, RevokedBy, Status,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::{MAX_SUBJECT_LEN, SessionId};

/// One revoked id: until when it is kept, and, for a session without a subject, when that
/// session was issued (such an entry is covered, and dropped, once the anonymous cut-off
/// passes its issue time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdEntry {
    pub(crate) until: Timestamp,
    /// `Some(issued_at)` for a session without a subject; `None` for one with a subject, or
    /// revoked by id alone ([`Denylist::revoke`]), which a cut-off never covers.
    pub(crate) anonymous: Option<Timestamp>,
}

impl IdEntry {
    fn merge(old: &mut IdEntry, new: IdEntry) {
        old.until = old.until.max(new.until);
        old.anonymous = match (old.anonymous, new.anonymous) {
            (Some(a), Some(b)) => Some(a.max(b)),
            // Either side does not know the session had no subject: never covered by a cut-off.
            _ => None,
        };
    }
}

/// Whose session a revocation ends, as the replica classes it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner<'a> {
    /// Revoked by id alone: kept until `until`, whatever the bound.
    Unknown,
    /// A session without a subject, issued at this time.
    Anonymous(Timestamp),
    /// A session of this subject, issued at this time.
    Subject(&'a str, Timestamp),
}

impl<'a> Owner<'a> {
    pub(crate) fn of(r: &'a Revocation) -> Owner<'a> {
        match r.subject.as_deref() {
            None | Some("") => Owner::Anonymous(r.issued_at),
            Some(s) => Owner::Subject(s, r.issued_at),
        }
    }
}

/// What [`Replica::insert`] did, for a caller that shares it with other processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub(crate) struct Recorded {
    /// The id was added (or its entry extended).
    pub(crate) entry: bool,
    /// The denylist was full: sessions without a subject issued before this time are now
    /// refused (the anonymous cut-off), and the entries it covers were dropped.
    pub(crate) cutoff: Option<Timestamp>,
    /// The denylist was full with revocations of signed-in sessions: instead of an entry,
    /// the subject's sessions issued before this time are now refused.
    pub(crate) subject_before: Option<Timestamp>,
}

/// The revocation tables, without a clock: the in-memory denylist and the local replica of
/// the Redis one.
pub(crate) struct Replica {
    /// Revoked ids and the time until which they are kept.
    ids: Sharded<SessionId, IdEntry>,
    /// Revoked subjects and their "not valid before" time.
    subjects: Sharded<Box<str>, Timestamp>,
    /// The anonymous cut-off (ms): sessions without a subject issued before it are refused.
    /// What revoking the empty subject records; 0 for none.
    anonymous_before: AtomicU64,
    /// The latest issue time (ms) of an anonymous entry held, so that a cut-off covers all.
    newest_anonymous: AtomicU64,
    /// Anonymous entries held (those a cut-off would drop).
    anonymous: AtomicUsize,
    /// Times the bound was reached.
    overflows: AtomicU64,
    /// Ids held after the last whole sweep made because the bound was reached.
    swept_at: AtomicUsize,
    subject_ttl: Duration,
    max_sessions: usize,
}

impl Replica {
    pub(crate) fn new(subject_ttl: Duration, max_sessions: usize) -> Replica {
        Replica {
            ids: Sharded::new(),
            subjects: Sharded::new(),
            anonymous_before: AtomicU64::new(0),
            newest_anonymous: AtomicU64::new(0),
            anonymous: AtomicUsize::new(0),
            overflows: AtomicU64::new(0),
            swept_at: AtomicUsize::new(0),
            subject_ttl,
            max_sessions,
        }
    }

    /// The check: `Allowed` or `Revoked`. `now` is called only when an entry is found, so
    /// the common case (not revoked) costs a look-up and nothing else.
    #[inline]
    pub(crate) fn check(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: impl Fn() -> Timestamp,
    ) -> Check {
        if let Some(entry) = self.ids.get(id)
            && entry.until > now()
        {
            return Check::Revoked(RevokedBy::Session);
        }
        match subject {
            None | Some("") => {
                if issued_at.as_millis() < self.anonymous_before.load(Ordering::Acquire) {
                    return Check::Revoked(RevokedBy::Cutoff);
                }
            }
            Some(subject) => {
                if let Some(before) = self.subjects.get(subject)
                    && issued_at < before
                    && !self.subject_expired(before, now())
                {
                    return Check::Revoked(RevokedBy::Subject);
                }
            }
        }
        Check::Allowed
    }

    fn subject_expired(&self, before: Timestamp, now: Timestamp) -> bool {
        before.saturating_add(self.subject_ttl) <= now
    }

    /// Records a revoked id until `until`, unless that has passed, within the bound on the
    /// number of ids (see [`MemoryDenylistBuilder::max_revoked_sessions`]).
    pub(crate) fn insert(
        &self,
        id: &SessionId,
        until: Timestamp,
        owner: Owner<'_>,
        now: Timestamp,
    ) -> Recorded {
        let mut done = Recorded::default();
        if until <= now {
            return done;
        }
        let anonymous = match owner {
            Owner::Anonymous(issued_at) => {
                if issued_at.as_millis() < self.anonymous_before.load(Ordering::Acquire) {
                    // Already refused by the cut-off.
                    return done;
                }
                Some(issued_at)
            }
            Owner::Unknown | Owner::Subject(..) => None,
        };
        let full = |r: &Replica| {
            // Ids revoked alone are recorded whatever the bound; only the application makes them.
            !matches!(owner, Owner::Unknown)
                && r.ids.len() >= r.max_sessions
                && r.ids.get(id).is_none()
        };
        if full(self) {
            // Expired entries go first (a whole sweep, at most once per sixteenth of the
            // bound added); then, failing closed, the cut-off or the subject.
            let due = self
                .swept_at
                .load(Ordering::Acquire)
                .saturating_add((self.max_sessions / 16).max(1));
            if self.ids.len() >= due {
                self.purge(now);
                self.swept_at.store(self.ids.len(), Ordering::Release);
            }
        }
        if full(self) {
            if anonymous.is_some() || self.anonymous.load(Ordering::Acquire) > 0 {
                let newest = anonymous.map_or(0, Timestamp::as_millis);
                let cutoff = Timestamp::from_millis(
                    now.as_millis()
                        .max(newest)
                        .max(self.newest_anonymous.load(Ordering::Acquire))
                        .saturating_add(1),
                );
                self.overflowed("anonymous", self.max_sessions);
                tracing::warn!(
                    target: "sealed_session",
                    bound = self.max_sessions,
                    "denylist full: every session without a subject issued until now is revoked"
                );
                self.raise_cutoff(cutoff);
                done.cutoff = Some(cutoff);
                if anonymous.is_some() {
                    return done;
                }
            }
            if self.ids.len() >= self.max_sessions
                && let Owner::Subject(subject, issued_at) = owner
            {
                let before = issued_at.saturating_add(Duration::from_millis(1));
                self.overflowed("subject", self.max_sessions);
                tracing::warn!(
                    target: "sealed_session",
                    bound = self.max_sessions,
                    "denylist full of signed-in sessions: the subject's sessions issued until this one are revoked instead"
                );
                self.insert_subject(subject, before, now);
                done.subject_before = Some(before);
                return done;
            }
        }
        let entry = IdEntry { until, anonymous };
        let added = self
            .ids
            .upsert(*id, entry, IdEntry::merge, |e| e.until <= now);
        if let Some(issued_at) = anonymous {
            self.newest_anonymous
                .fetch_max(issued_at.as_millis(), Ordering::AcqRel);
            if added {
                self.anonymous.fetch_add(1, Ordering::AcqRel);
            }
        }
        done.entry = true;
        done
    }

    fn overflowed(&self, kind: &'static str, bound: usize) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::denylist::metrics::denylist_overflow(kind);
        let _ = (kind, bound);
    }

    /// Refuses every session without a subject issued before `cutoff`, and drops the
    /// entries that this covers.
    fn raise_cutoff(&self, cutoff: Timestamp) {
        let ms = cutoff.as_millis();
        if self.anonymous_before.fetch_max(ms, Ordering::AcqRel) >= ms {
            return;
        }
        let dropped = self
            .ids
            .remove_where(|_, e| e.anonymous.is_some_and(|issued| issued < cutoff));
        let _ = self
            .anonymous
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(dropped))
            });
    }

    /// Records a subject revocation, unless its TTL has passed. The empty subject stands for
    /// the sessions without one: revoking it raises the anonymous cut-off.
    pub(crate) fn insert_subject(&self, subject: &str, before: Timestamp, now: Timestamp) {
        if self.subject_expired(before, now) {
            return;
        }
        if subject.is_empty() {
            self.raise_cutoff(before);
            return;
        }
        self.subjects.upsert(
            subject.into(),
            before,
            |old, new| *old = (*old).max(new),
            |b| self.subject_expired(*b, now),
        );
    }

    /// Sweeps expired entries; returns how many were removed.
    pub(crate) fn purge(&self, now: Timestamp) -> usize {
        let mut anonymous = 0;
        let ids = self.ids.remove_where(|_, e| {
            let gone = e.until <= now;
            if gone && e.anonymous.is_some() {
                anonymous += 1;
            }
            gone
        });
        let _ = self
            .anonymous
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(anonymous))
            });
        ids + self
            .subjects
            .remove_where(|_, b| self.subject_expired(*b, now))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn subject_ttl(&self) -> Duration {
        self.subject_ttl
    }

    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.ids.len(), self.subjects.len())
    }

    /// The status's counts: ids, subjects and how often the bound was reached.
    pub(crate) fn status(&self, health: Health) -> Status {
        let (sessions, subjects) = self.sizes();
        let mut status = Status::new(health, sessions, subjects);
        status.overflows = self.overflows.load(Ordering::Relaxed);
        status
    }

    /// Sets the `sealed_session_denylist_entries` gauges to the sizes (feature `metrics`;
    /// nothing without it). Called after each change that callers make, not per entry of
    /// a bulk load.
    #[inline]
    pub(crate) fn publish(&self) {
        #[cfg(feature = "metrics")]
        {
            let (sessions, subjects) = self.sizes();
            crate::denylist::metrics::denylist_entries(sessions, subjects);
        }
    }
}

/// Refuses a subject no token can carry.
pub(crate) fn check_subject(subject: &str) -> Result<(), DenylistError> {
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(DenylistError::SubjectTooLong {
            len: subject.len(),
            max: MAX_SUBJECT_LEN,
        });
    }
    Ok(())
}

/// A denylist in this process's memory: for one process, tests and demos. Revocations do
/// not survive a restart and are not shared (use `RedisDenylist` for that).
///
/// Cheap to clone (an `Arc`); clones share the entries. Never [`Check::Unavailable`].
///
/// ```
/// use sealed_session::denylist::{Check, Denylist as _, MemoryDenylist, RevokedBy};
/// use sealed_session::{SessionId, Timestamp};
///
/// let denylist = MemoryDenylist::new();
/// let id = SessionId::generate()?;
/// let now = Timestamp::from_system_time(std::time::SystemTime::now());
/// denylist.insert(id, now.saturating_add(std::time::Duration::from_secs(60)));
/// assert_eq!(denylist.check(&id, None, now), Check::Revoked(RevokedBy::Session));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MemoryDenylist {
    replica: Arc<Replica>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryDenylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ids, subjects) = self.replica.sizes();
        f.debug_struct("MemoryDenylist")
            .field("revoked_sessions", &ids)
            .field("revoked_subjects", &subjects)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryDenylist {
    fn default() -> Self {
        MemoryDenylist::new()
    }
}

/// Builds a [`MemoryDenylist`].
///
/// ```
/// use std::time::Duration;
/// use sealed_session::denylist::MemoryDenylist;
///
/// let denylist = MemoryDenylist::builder()
///     .max_revoked_sessions(10_000)
///     .subject_ttl(Duration::from_secs(24 * 3600))
///     .build();
/// # let _ = denylist;
/// ```
#[derive(Clone)]
#[must_use]
pub struct MemoryDenylistBuilder {
    clock: Arc<dyn Clock>,
    subject_ttl: Duration,
    max_sessions: usize,
}

impl std::fmt::Debug for MemoryDenylistBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDenylistBuilder")
            .field("subject_ttl", &self.subject_ttl)
            .field("max_revoked_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl MemoryDenylistBuilder {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a per-subject revocation is kept; at least the longest session lifetime.
    /// Default: [`DEFAULT_SUBJECT_TTL`] (30 days).
    pub fn subject_ttl(mut self, ttl: Duration) -> Self {
        self.subject_ttl = ttl;
        self
    }

    /// The most revoked session ids held at once. Default:
    /// [`DEFAULT_MAX_REVOKED_SESSIONS`] (100,000, about 6 MB). What happens when a
    /// revocation finds it full is described in the [module documentation](super#the-bound):
    /// it fails closed, never dropping a revocation.
    pub fn max_revoked_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// The denylist.
    pub fn build(self) -> MemoryDenylist {
        MemoryDenylist {
            replica: Arc::new(Replica::new(self.subject_ttl, self.max_sessions)),
            clock: self.clock,
        }
    }
}

impl MemoryDenylist {
    /// An empty denylist on the system clock, with the default subject TTL.
    pub fn new() -> Self {
        MemoryDenylist::builder().build()
    }

    /// An empty denylist on `clock` (for tests).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryDenylist::builder().clock(Arc::new(clock)).build()
    }

    /// A builder: clock, subject TTL and bound.
    pub fn builder() -> MemoryDenylistBuilder {
        MemoryDenylistBuilder {
            clock: Arc::new(SystemClock),
            subject_ttl: DEFAULT_SUBJECT_TTL,
            max_sessions: DEFAULT_MAX_REVOKED_SESSIONS,
        }
    }

    /// Revokes `id` until `until`, synchronously (what [`Denylist::revoke`] does).
    pub fn insert(&self, id: SessionId, until: Timestamp) {
        let _ = self
            .replica
            .insert(&id, until, Owner::Unknown, self.clock.now());
        self.replica.publish();
    }

    /// Revokes the session that `revocation` describes, synchronously (what
    /// [`Denylist::revoke_session`] does).
    pub fn insert_session(&self, revocation: &Revocation) {
        let owner = Owner::of(revocation);
        let _ = self
            .replica
            .insert(&revocation.id, revocation.until, owner, self.clock.now());
        self.replica.publish();
    }

    /// Revokes every session of `subject` issued before `before`, synchronously (what
    /// [`Denylist::revoke_subject`] does).
    pub fn insert_subject(&self, subject: &str, before: Timestamp) -> Result<(), DenylistError> {
        check_subject(subject)?;
        self.replica
            .insert_subject(subject, before, self.clock.now());
        self.replica.publish();
        Ok(())
    }

    /// Removes every expired entry now (sweeps also happen as entries are added); returns
    /// how many were removed.
    pub fn purge_expired(&self) -> usize {
        let removed = self.replica.purge(self.clock.now());
        self.replica.publish();
        removed
    }

    /// Revoked session ids held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.replica.sizes().0
    }

    /// Whether no session id and no subject is held.
    pub fn is_empty(&self) -> bool {
        self.replica.sizes() == (0, 0)
    }

    /// Per-subject revocations held, expired ones not yet swept included.
    pub fn subjects_len(&self) -> usize {
        self.replica.sizes().1
    }
}

impl Denylist for MemoryDenylist {
    #[inline]
    fn check(&self, id: &SessionId, subject: Option<&str>, issued_at: Timestamp) -> Check {
        self.replica
            .check(id, subject, issued_at, || self.clock.now())
    }

    #[inline]
    fn check_at(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Check {
        self.replica.check(id, subject, issued_at, || now)
    }

    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        self.insert(id, until);
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke_session(&self, revocation: &Revocation) -> BoxFuture<'_, Result<(), DenylistError>> {
        self.insert_session(revocation);
        Box::pin(std::future::ready(Ok(())))
    }

    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let r = self.insert_subject(subject, before);
        Box::pin(std::future::ready(r))
    }

    fn status(&self) -> Status {
        self.replica.status(Health::Healthy)
    }
}
