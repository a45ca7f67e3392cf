//! Expiry rules, checked by the server on every open: an absolute lifetime, an idle timeout,
//! and renewal that re-issues a token only once part of the idle window has passed.
//!
//! What counts as activity: any request that presents a valid session moves the idle clock
//! (`last_seen`), but the new `last_seen` only reaches the client when the token is re-issued,
//! that is when the data changed or [`Policy::renew_after`] has passed since the token's
//! `last_seen`. The absolute deadline never moves, except by an explicit per-session max-age.
//!
//! No session outlives [`Policy::max_age`] from its issue time: the deadline a token carries
//! is **capped** (not refused) at `issued_at + max_age` on every open, whatever the codec or
//! store. So a key holder cannot mint a session that lives longer (a deadline of 2^64-1 ms
//! ends like any other), lowering `max_age` takes effect on sessions already issued, and a
//! per-session max-age ([`Session::set_max_age`](crate::Session::set_max_age)) can shorten a
//! session but not extend it past that point.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::OpenError;
use crate::state::SessionState;

/// Expiry policy. Every setter names its default.
///
/// ```
/// use std::time::Duration;
/// use sealed_session::{Policy, SealedSession, Keyring};
///
/// let policy = Policy::new()
///     .max_age(Duration::from_secs(8 * 3600))          // absolute, from sign-in
///     .idle_timeout(Some(Duration::from_secs(30 * 60))) // since the last request
///     .renew_after(Duration::from_secs(5 * 60));        // re-issue at most this often
/// assert_eq!(policy.renewal_interval(), Some(Duration::from_secs(300)));
/// let sessions = SealedSession::sealed(Keyring::generate()?).policy(policy);
/// # let _ = sessions;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) max_age: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    renew_after: Option<Duration>,
    rolling: bool,
    pub(crate) leeway: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_age: Duration::from_secs(24 * 3600),
            idle_timeout: Some(Duration::from_secs(3600)),
            renew_after: None,
            rolling: false,
            leeway: Duration::from_secs(60),
        }
    }
}

/// What [`Policy::check`] found about a session that may be used.
///
/// ```
/// use std::time::Duration;
/// use sealed_session::{Policy, SessionId, SessionState, Timestamp};
///
/// let policy = Policy::new().idle_timeout(Some(Duration::from_secs(600)));
/// let t0 = Timestamp::from_millis(1_764_000_000_000);
/// let state = SessionState::new(SessionId::from_bytes([1; 16]), t0, policy.expires_at(t0));
/// let fresh = policy.check(&state, t0.saturating_add(Duration::from_secs(300)))?;
/// assert!(fresh.renew, "past the renewal interval: re-issue with a new last-seen");
/// assert!(policy.check(&state, t0.saturating_add(Duration::from_secs(601))).is_err());
/// # Ok::<(), sealed_session::OpenError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fresh {
    /// The token should be re-issued (with a new `last_seen`) even if the data did not change.
    pub renew: bool,
}

impl Policy {
    /// The default policy: 24 hours absolute, 1 hour idle, renewal after a quarter of the idle
    /// window, 60 seconds of clock leeway for times in the future.
    pub fn new() -> Self {
        Policy::default()
    }

    /// Absolute lifetime from creation (express-session's `cookie.maxAge`, but enforced on the
    /// server). It also caps every session opened: a token whose own deadline is later than
    /// its issue time plus `max_age` ends at that time ([`Policy::absolute_deadline`]).
    /// Default: 24 hours.
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// Idle timeout: a session unused for this long is refused. `None` disables it.
    /// Default: 1 hour.
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Re-issue an unchanged session's token once this much time has passed since its
    /// `last_seen`, so the idle clock moves without a new token on every response.
    /// Default: a quarter of the idle timeout (never, when there is no idle timeout).
    #[must_use]
    pub fn renew_after(mut self, d: Duration) -> Self {
        self.renew_after = Some(d);
        self
    }

    /// express-session's `rolling`: re-issue the token on every response. Default: false
    /// (renewal follows [`Policy::renew_after`]).
    #[must_use]
    pub fn rolling(mut self, on: bool) -> Self {
        self.rolling = on;
        self
    }

    /// How far in the future a token's issued-at or last-seen may be, for clocks that differ
    /// between servers. Default: 60 seconds.
    #[must_use]
    pub fn leeway(mut self, d: Duration) -> Self {
        self.leeway = d;
        self
    }

    /// Whether every response re-issues the token ([`Policy::rolling`]).
    pub fn is_rolling(&self) -> bool {
        self.rolling
    }

    /// The effective renewal interval: [`Policy::renew_after`], or a quarter of the idle
    /// timeout.
    pub fn renewal_interval(&self) -> Option<Duration> {
        self.renew_after.or(self.idle_timeout.map(|d| d / 4))
    }

    /// The absolute deadline this policy enforces for `state`: the deadline the session
    /// carries, capped at `max_age` after its issue time (so a token cannot outlive
    /// `max_age`, whatever deadline its maker wrote into it).
    ///
    /// ```
    /// use sealed_session::{Policy, SessionId, SessionState, Timestamp};
    /// use std::time::Duration;
    ///
    /// let policy = Policy::new().max_age(Duration::from_secs(3600));
    /// let t0 = Timestamp::from_millis(1_764_000_000_000);
    /// let forever = SessionState::new(SessionId::from_bytes([1; 16]), t0, Timestamp::from_millis(u64::MAX));
    /// assert_eq!(policy.absolute_deadline(&forever), t0.saturating_add(Duration::from_secs(3600)));
    /// ```
    pub fn absolute_deadline(&self, state: &SessionState) -> Timestamp {
        state
            .expires_at()
            .min(state.issued_at().saturating_add(self.max_age))
    }

    /// When the session becomes unusable: the earlier of its absolute deadline (capped, see
    /// [`Policy::absolute_deadline`]) and its idle deadline.
    pub fn deadline(&self, state: &SessionState) -> Timestamp {
        let abs = self.absolute_deadline(state);
        match self.idle_timeout {
            Some(idle) => abs.min(state.last_seen().saturating_add(idle)),
            None => abs,
        }
    }

    /// Checks an opened session at `now`.
    ///
    /// Boundaries: a session is expired from the millisecond of its absolute deadline on
    /// (`now >= min(expires_at, issued_at + max_age)`, [`Policy::absolute_deadline`]), and
    /// idle-expired from `last_seen + idle_timeout` on. An `issued_at` or `last_seen` more
    /// than the leeway in the future is refused ([`OpenError::FromTheFuture`]).
    pub fn check(&self, state: &SessionState, now: Timestamp) -> Result<Fresh, OpenError> {
        let horizon = now.saturating_add(self.leeway);
        for claimed in [state.issued_at(), state.last_seen()] {
            if claimed > horizon {
                return Err(OpenError::FromTheFuture { claimed, now });
            }
        }
        let expired_at = self.absolute_deadline(state);
        if now >= expired_at {
            return Err(OpenError::Expired { expired_at, now });
        }
        if let Some(idle) = self.idle_timeout
            && now >= state.last_seen().saturating_add(idle)
        {
            return Err(OpenError::IdleTimeout {
                last_seen: state.last_seen(),
                now,
            });
        }
        let renew = self.rolling
            || self
                .renewal_interval()
                .is_some_and(|r| now >= state.last_seen().saturating_add(r));
        Ok(Fresh { renew })
    }

    /// The absolute deadline for a session created at `now`.
    pub fn expires_at(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.max_age)
    }
}
