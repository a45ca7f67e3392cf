//! The in-memory denylist, and the replica structure the Redis denylist keeps locally.
//!
//! The tables themselves, sharded and concurrent, are in `table.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::table::{self, Ids, Keyed, Sharded, SubjectTable};
use super::{
    BoxFuture, Check, DEFAULT_SUBJECT_TTL, Denylist, DenylistError, Health, RevokedBy, Status,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::{MAX_SUBJECT_LEN, SessionId};

/// The revocation tables, without a clock: the in-memory denylist and the local replica of
/// the Redis one.
pub(crate) struct Replica {
    /// Revoked ids and the time until which they are kept.
    ids: Sharded<Ids>,
    /// Revoked subjects and their "not valid before" time.
    subjects: Sharded<SubjectTable>,
    subject_ttl: Duration,
}

impl Replica {
    pub(crate) fn new(subject_ttl: Duration) -> Replica {
        let keys = Keyed::random();
        Replica {
            ids: Sharded::new(keys, table::ids),
            subjects: Sharded::new(keys, table::subjects),
            subject_ttl,
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
        if let Some(until) = self.ids.get(id)
            && until > now()
        {
            return Check::Revoked(RevokedBy::Session);
        }
        if let Some(subject) = subject
            && let Some(before) = self.subjects.get(subject)
            && issued_at < before
            && !self.subject_expired(before, now())
        {
            return Check::Revoked(RevokedBy::Subject);
        }
        Check::Allowed
    }

    fn subject_expired(&self, before: Timestamp, now: Timestamp) -> bool {
        before.saturating_add(self.subject_ttl) <= now
    }

    /// Records a revoked id until `until`, unless that has passed.
    pub(crate) fn insert(&self, id: &SessionId, until: Timestamp, now: Timestamp) {
        if until <= now {
            return;
        }
        self.ids.upsert_max(id, until, |t| t <= now);
    }

    /// Records a subject revocation, unless its TTL has passed.
    pub(crate) fn insert_subject(&self, subject: &str, before: Timestamp, now: Timestamp) {
        if self.subject_expired(before, now) {
            return;
        }
        self.subjects
            .upsert_max(subject, before, |b| self.subject_expired(b, now));
    }

    /// Sweeps expired entries; returns how many were removed.
    pub(crate) fn purge(&self, now: Timestamp) -> usize {
        self.ids.purge(|t| t <= now) + self.subjects.purge(|b| self.subject_expired(b, now))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn subject_ttl(&self) -> Duration {
        self.subject_ttl
    }

    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.ids.len(), self.subjects.len())
    }

    /// Sets the `sealed_session_denylist_entries` gauges to the sizes (feature `metrics`;
    /// nothing without it). Called after each change that callers make, not per entry of
    /// a bulk load.
    #[inline]
    pub(crate) fn publish(&self) {
        #[cfg(feature = "metrics")]
        {
            let (sessions, subjects) = self.sizes();
            crate::stats::denylist_entries(sessions, subjects);
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
#[derive(Clone)]
#[must_use]
pub struct MemoryDenylistBuilder {
    clock: Arc<dyn Clock>,
    subject_ttl: Duration,
}

impl std::fmt::Debug for MemoryDenylistBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDenylistBuilder")
            .field("subject_ttl", &self.subject_ttl)
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

    /// The denylist.
    pub fn build(self) -> MemoryDenylist {
        MemoryDenylist {
            replica: Arc::new(Replica::new(self.subject_ttl)),
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

    /// A builder: clock and subject TTL.
    pub fn builder() -> MemoryDenylistBuilder {
        MemoryDenylistBuilder {
            clock: Arc::new(SystemClock),
            subject_ttl: DEFAULT_SUBJECT_TTL,
        }
    }

    /// Revokes `id` until `until`, synchronously (what [`Denylist::revoke`] does).
    pub fn insert(&self, id: SessionId, until: Timestamp) {
        self.replica.insert(&id, until, self.clock.now());
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

    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let r = self.insert_subject(subject, before);
        Box::pin(std::future::ready(r))
    }

    fn status(&self) -> Status {
        let (revoked_sessions, revoked_subjects) = self.replica.sizes();
        Status {
            health: Health::Healthy,
            revoked_sessions,
            revoked_subjects,
        }
    }
}
