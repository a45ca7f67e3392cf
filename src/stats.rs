//! What the middleware did: refusals by reason, tokens issued and re-issued, revocations.
//!
//! Two ways out, from the same call sites:
//!
//! - [`Stats`], a snapshot from [`SealedSession::stats`](crate::SealedSession::stats),
//!   always available, counted in process with relaxed atomics;
//! - with the `metrics` feature, the [`metrics`](https://docs.rs/metrics) facade, for any
//!   exporter (Prometheus, StatsD, ...) the application installs. The names:
//!
//! | metric | kind | labels | counts |
//! |---|---|---|---|
//! | `sealed_session_refusals_total` | counter | `reason` ([`OpenError::reason`]) | tokens (and `Cookie` headers) refused |
//! | `sealed_session_issued_total` | counter | | first tokens of new sessions |
//! | `sealed_session_reissues_total` | counter | | new tokens for sessions that arrived valid (changed, renewed, re-keyed) |
//! | `sealed_session_revocations_total` | counter | `kind` = `session` or `subject` | revocations recorded through the middleware |
//! | `sealed_session_denylist_overflows_total` | counter | `kind` = `anonymous` or `subject` | revocations that found the denylist full, which then failed closed ([the bound](crate::denylist#the-bound)) |
//! | `sealed_session_denylist_entries` | gauge | `kind` = `session` or `subject` | entries a denylist holds (expired ones not yet swept included) |
//! | `sealed_session_denylist_staleness_seconds` | gauge | | time since the Redis replica was last known current (`+Inf` before its first load) |
//!
//! [`describe_metrics`] (with the feature) gives each its description for exporters that
//! show one.
//!
//! # Cost
//!
//! Counts happen where tokens are opened, made, refused or revoked: one relaxed atomic
//! add each. With the `metrics`
//! feature each count also goes through the installed recorder (a registry look-up per
//! count for most recorders): that cost is the feature's, and off by default.
//!
//! # Refusal log lines
//!
//! Every refusal is counted, but a flood of forged tokens must not become a flood of log
//! lines: each middleware writes at most one `session token refused` event per reason per
//! [`REFUSAL_LOG_INTERVAL`] (one second). The event after a quiet spell carries
//! `suppressed`, the number of refusals of that reason left out since the previous event of
//! that reason (0 when none were). The counts of [`Stats`] and the metrics stay exact, and
//! the request's span still names the reason of each refused request.
// Without the `metrics` feature there is no `describe_metrics`: the link leads to the
// crate's features list.
#![cfg_attr(
    not(feature = "metrics"),
    doc = "",
    doc = "[`describe_metrics`]: crate#features"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing::Span;

use crate::clock::Timestamp;
use crate::denylist::{BoxFuture, Check, Denylist, DenylistError, Status};
use crate::error::OpenError;
use crate::state::SessionId;

/// `sealed_session_refusals_total{reason}`: tokens (and `Cookie` headers) refused.
pub const REFUSALS_TOTAL: &str = "sealed_session_refusals_total";
/// `sealed_session_issued_total`: first tokens of new sessions.
pub const ISSUED_TOTAL: &str = "sealed_session_issued_total";
/// `sealed_session_reissues_total`: new tokens for sessions that arrived valid.
pub const REISSUES_TOTAL: &str = "sealed_session_reissues_total";
/// `sealed_session_revocations_total{kind}`: revocations recorded through the middleware.
pub const REVOCATIONS_TOTAL: &str = "sealed_session_revocations_total";
pub use crate::denylist::metrics::{
    DENYLIST_ENTRIES, DENYLIST_OVERFLOWS_TOTAL, DENYLIST_STALENESS_SECONDS,
};

/// Every refusal reason ([`OpenError::reason`]), in the order [`Stats::refusals`] lists them.
pub const REASONS: [&str; 17] = [
    "malformed",
    "unsupported_version",
    "unknown_key_id",
    "bad_seal",
    "expired",
    "idle_timeout",
    "from_the_future",
    "too_large",
    "revoked",
    "claim_mismatch",
    "not_found",
    "cookie_header_too_large",
    "too_many_chunks",
    "data_too_large",
    "data_too_deep",
    "duplicate_authorization",
    "bad_proof",
];

/// The shortest time between two refusal log lines of one reason, per middleware; the
/// refusals in between are counted, and the next line says how many it left out.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Lets through one log line per [`REFUSAL_LOG_INTERVAL`], counting the others.
#[derive(Default)]
struct LogGate {
    /// Milliseconds since [`now_ms`]'s start before which no line is written.
    next: AtomicU64,
    /// Lines left out since the last one written.
    suppressed: AtomicU64,
}

impl LogGate {
    /// Whether to write a line at `now` (milliseconds, from [`now_ms`]); if so, how many were
    /// left out since the last one. Of threads racing for one slot, one wins.
    fn admit(&self, now: u64) -> Option<u64> {
        let next = self.next.load(Ordering::Relaxed);
        let interval = u64::try_from(REFUSAL_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Milliseconds on a monotonic clock, from the first call in the process.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(elapsed).unwrap_or(u64::MAX)
}

/// Which kind of revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// One session id.
    Session,
    /// Every session of a subject.
    Subject,
}

impl Revocation {
    fn label(self) -> &'static str {
        match self {
            Revocation::Session => "session",
            Revocation::Subject => "subject",
        }
    }
}

/// The counters of one middleware, shared by its clones and endpoints.
#[derive(Default)]
pub(crate) struct Counters {
    refusals: [AtomicU64; REASONS.len()],
    opened: AtomicU64,
    opened_cached: AtomicU64,
    issued: AtomicU64,
    reissued: AtomicU64,
    revoked_sessions: AtomicU64,
    revoked_subjects: AtomicU64,
    /// One log gate per reason of [`REASONS`].
    refusal_logs: [LogGate; REASONS.len()],
}

impl Counters {
    /// Counts a token that arrived valid: answered by the open cache, or opened.
    #[inline]
    pub(crate) fn opened(&self, cached: bool) {
        if cached {
            self.opened_cached.fetch_add(1, Ordering::Relaxed);
        } else {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refusal and names its reason on the request's span, and logs it (at a level
    /// by reason, never the token) unless a line of that reason was written less than
    /// [`REFUSAL_LOG_INTERVAL`] ago.
    pub(crate) fn refused(&self, e: &OpenError, span: &Span) {
        let reason = e.reason();
        let index = e.reason_index();
        if let Some(suppressed) = self.refusal_logs.get(index).and_then(|g| g.admit(now_ms())) {
            match e {
                OpenError::Expired { .. } | OpenError::IdleTimeout { .. } | OpenError::Revoked => {
                    tracing::debug!(target: "sealed_session", parent: span, reason, error = %e, suppressed, "session token refused");
                }
                // Over a configured limit: worth knowing (a limit set too low, or a client
                // misbehaving), not an alarm.
                OpenError::TooLarge { .. }
                | OpenError::CookieHeaderTooLarge { .. }
                | OpenError::TooManyChunks { .. }
                | OpenError::DataTooLarge { .. }
                | OpenError::DataTooDeep { .. } => {
                    tracing::info!(target: "sealed_session", parent: span, reason, error = %e, suppressed, "session token refused");
                }
                _ => {
                    tracing::warn!(target: "sealed_session", parent: span, reason, error = %e, suppressed, "session token refused");
                }
            }
        }
        if !span.is_disabled() {
            span.record("reason", reason);
        }
        if let Some(n) = self.refusals.get(index) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "metrics")]
        ::metrics::counter!(REFUSALS_TOTAL, "reason" => reason).increment(1);
    }

    /// Counts a token (or store record) sent for a session: its first, or a re-issue.
    #[inline]
    pub(crate) fn sent(&self, new: bool, span: &Span) {
        if new {
            self.issued.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "sealed_session", parent: span, "session issued");
            #[cfg(feature = "metrics")]
            ::metrics::counter!(ISSUED_TOTAL).increment(1);
        } else {
            self.reissued.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "sealed_session", parent: span, "session re-issued");
            #[cfg(feature = "metrics")]
            ::metrics::counter!(REISSUES_TOTAL).increment(1);
        }
    }

    fn revoked(&self, kind: Revocation) {
        match kind {
            Revocation::Session => &self.revoked_sessions,
            Revocation::Subject => &self.revoked_subjects,
        }
        .fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "sealed_session", kind = kind.label(), "session revoked");
        #[cfg(feature = "metrics")]
        ::metrics::counter!(REVOCATIONS_TOTAL, "kind" => kind.label()).increment(1);
    }

    /// A snapshot, with the denylist's status when there is one.
    pub(crate) fn snapshot(&self, denylist: Option<&dyn Denylist>) -> Stats {
        Stats {
            refusals: REASONS
                .iter()
                .zip(&self.refusals)
                .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
                .collect(),
            opened: self.opened.load(Ordering::Relaxed),
            opened_cached: self.opened_cached.load(Ordering::Relaxed),
            issued: self.issued.load(Ordering::Relaxed),
            reissues: self.reissued.load(Ordering::Relaxed),
            revoked_sessions: self.revoked_sessions.load(Ordering::Relaxed),
            revoked_subjects: self.revoked_subjects.load(Ordering::Relaxed),
            denylist: denylist.map(Denylist::status),
        }
    }
}

/// What one middleware (and its clones, and the endpoints they made) has done since it was
/// built: a snapshot from [`SealedSession::stats`](crate::SealedSession::stats) or
/// [`Engine::stats`](crate::engine::Engine::stats) (which the Poem endpoint and the tower
/// layer also offer).
///
/// Counts are read with relaxed loads, one counter after another: exact once the requests
/// being counted have finished, and never torn, but a snapshot taken under load may mix
/// moments a few nanoseconds apart. See the [module documentation](self) for what each
/// counts and what counting costs.
///
/// ```
/// use sealed_session::{Keyring, SealedSession};
///
/// let sessions = SealedSession::sealed(Keyring::generate()?);
/// // Keep a clone: clones share the counters with the middleware made from any of them.
/// let stats = sessions.stats();
/// assert_eq!(stats.refused("bad_seal"), 0);
/// assert_eq!(stats.issued, 0);
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Refusals by reason ([`OpenError::reason`]), every reason of [`REASONS`] in that
    /// order, zeros included.
    pub refusals: Vec<(&'static str, u64)>,
    /// Tokens that the codec decoded and authenticated and that had not expired
    /// (store-backed: session ids verified and found in the store). The revocation check
    /// comes after: a revoked token counts here and under `revoked` in `refusals`.
    pub opened: u64,
    /// Tokens answered by the open cache instead (the same bytes opened before; see
    /// [`SealedSession::open_cache`](crate::SealedSession::open_cache)), likewise.
    /// `opened_cached / (opened + opened_cached)` is its hit rate.
    pub opened_cached: u64,
    /// First tokens (or store records) sent for new sessions.
    pub issued: u64,
    /// New tokens (or store records) sent for sessions that arrived valid: changed,
    /// renewed, re-keyed or touched.
    pub reissues: u64,
    /// Session ids revoked through the middleware (`destroy`, `regenerate`, `cycle_id`
    /// with a denylist).
    pub revoked_sessions: u64,
    /// Subjects revoked through the middleware (`Session::logout_everywhere`). A
    /// [`Denylist::revoke_subject`] called directly on the denylist is not counted here.
    pub revoked_subjects: u64,
    /// The denylist's health and size, when the middleware has one.
    pub denylist: Option<Status>,
}

impl Stats {
    /// Refusals for `reason` (a label of [`REASONS`]); 0 for an unknown label.
    pub fn refused(&self, reason: &str) -> u64 {
        self.refusals
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Refusals of every reason together.
    pub fn refusals_total(&self) -> u64 {
        self.refusals
            .iter()
            .fold(0u64, |t, (_, n)| t.wrapping_add(*n))
    }
}

/// The middleware's denylist as handed to sessions and used for revocations: the
/// application's, counting what is revoked through it. Checks go to the application's
/// denylist directly.
pub(crate) struct Counted {
    pub(crate) inner: Arc<dyn Denylist>,
    pub(crate) counters: Arc<Counters>,
}

impl Denylist for Counted {
    fn check(&self, id: &SessionId, subject: Option<&str>, issued_at: Timestamp) -> Check {
        self.inner.check(id, subject, issued_at)
    }

    fn check_at(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Check {
        self.inner.check_at(id, subject, issued_at, now)
    }

    fn pending(&self, id: &SessionId) -> Option<Timestamp> {
        self.inner.pending(id)
    }

    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Box::pin(async move {
            self.inner.revoke(id, until).await?;
            self.counters.revoked(Revocation::Session);
            Ok(())
        })
    }

    fn revoke_session(
        &self,
        revocation: &crate::denylist::Revocation,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let fut = self.inner.revoke_session(revocation);
        Box::pin(async move {
            fut.await?;
            self.counters.revoked(Revocation::Session);
            Ok(())
        })
    }

    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let fut = self.inner.revoke_subject(subject, before);
        Box::pin(async move {
            fut.await?;
            self.counters.revoked(Revocation::Subject);
            Ok(())
        })
    }

    fn status(&self) -> Status {
        self.inner.status()
    }
}

/// Registers a description (and unit) of every metric with the installed recorder, for
/// exporters that show them. Call it once after installing the recorder; counting works
/// without it.
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use ::metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        REFUSALS_TOTAL,
        Unit::Count,
        "Session tokens (and Cookie headers) refused, by reason."
    );
    describe_counter!(
        ISSUED_TOTAL,
        Unit::Count,
        "First tokens (or store records) sent for new sessions."
    );
    describe_counter!(
        REISSUES_TOTAL,
        Unit::Count,
        "New tokens (or store records) sent for sessions that arrived valid."
    );
    describe_counter!(
        REVOCATIONS_TOTAL,
        Unit::Count,
        "Revocations recorded through the middleware, by kind (session or subject)."
    );
    describe_counter!(
        DENYLIST_OVERFLOWS_TOTAL,
        Unit::Count,
        "Revocations that found the denylist full, which then failed closed, by kind (anonymous or subject)."
    );
    describe_gauge!(
        DENYLIST_ENTRIES,
        Unit::Count,
        "Entries the denylist holds, by kind (session or subject), expired ones not yet swept included."
    );
    describe_gauge!(
        DENYLIST_STALENESS_SECONDS,
        Unit::Seconds,
        "Time since the Redis denylist replica was last known current; +Inf before its first load."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_listed_in_index_order() {
        let t = Timestamp::from_millis(0);
        let all = [
            OpenError::Malformed("x"),
            OpenError::UnsupportedVersion {
                found: 0,
                supported: 1,
            },
            OpenError::UnknownKeyId("k".into()),
            OpenError::BadSeal,
            OpenError::Expired {
                expired_at: t,
                now: t,
            },
            OpenError::IdleTimeout {
                last_seen: t,
                now: t,
            },
            OpenError::FromTheFuture { claimed: t, now: t },
            OpenError::TooLarge { len: 1, max: 0 },
            OpenError::Revoked,
            OpenError::ClaimMismatch { claim: "iss" },
            OpenError::NotFound,
            OpenError::CookieHeaderTooLarge { len: 1, max: 0 },
            OpenError::TooManyChunks { chunks: 1, max: 0 },
            OpenError::DataTooLarge { len: 1, max: 0 },
            OpenError::DataTooDeep { max: 0 },
            OpenError::DuplicateAuthorization { count: 2 },
            OpenError::BadProof,
        ];
        assert_eq!(all.len(), REASONS.len());
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.reason_index(), i);
            assert_eq!(REASONS.get(i), Some(&e.reason()));
        }
    }

    #[test]
    fn a_gate_lets_one_line_through_per_interval_and_counts_the_rest() {
        let g = LogGate::default();
        assert_eq!(g.admit(0), Some(0));
        for t in [0, 1, 500, 999] {
            assert_eq!(g.admit(t), None, "{t}");
        }
        assert_eq!(g.admit(1000), Some(4));
        assert_eq!(g.admit(1500), None);
        // After a quiet spell, the next line comes at once and left nothing out.
        assert_eq!(g.admit(60_000), Some(1));
        assert_eq!(g.admit(61_000), Some(0));
        // The clock's far end does not wrap around.
        assert_eq!(g.admit(u64::MAX - 1), Some(0));
        assert_eq!(g.admit(u64::MAX - 1), None);
    }

    #[test]
    fn refusals_are_all_counted_while_their_lines_are_gated_by_reason() {
        let c = Counters::default();
        for _ in 0..100 {
            c.refused(&OpenError::BadSeal, &Span::none());
            c.refused(&OpenError::Malformed("x"), &Span::none());
        }
        let s = c.snapshot(None);
        assert_eq!((s.refused("bad_seal"), s.refused("malformed")), (100, 100));
        assert_eq!(s.refusals_total(), 200);
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = Arc::new(Counters::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.sent(false, &Span::none());
                    }
                    c.sent(true, &Span::none());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.snapshot(None);
        assert_eq!((s.reissues, s.issued), (4000, 4));
        assert_eq!(s.refusals_total(), 0);
    }
}
