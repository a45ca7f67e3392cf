//! Time: a millisecond [`Timestamp`] and an injectable [`Clock`], so that expiry is tested
//! without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: whole milliseconds since the Unix epoch (UTC), as carried in tokens.
///
/// ```
/// use std::time::Duration;
/// use sealed_session::Timestamp;
///
/// let t = Timestamp::from_millis(1_764_000_000_000);
/// let later = t.saturating_add(Duration::from_secs(60));
/// assert_eq!(later.saturating_since(t), Duration::from_secs(60));
/// assert_eq!(t.saturating_since(later), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (the unit of JWT and proof times).
    pub(crate) const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `secs` seconds after the Unix epoch (the latest time for seconds past it).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// From a [`SystemTime`]; times before the epoch become the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        // Whole milliseconds in `u64` arithmetic (`as_millis` is a `u128`): read on every
        // request.
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| {
                d.as_secs()
                    .saturating_mul(1000)
                    .saturating_add(u64::from(d.subsec_millis()))
            })
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// This time as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This time plus `d`, saturating at the largest timestamp.
    pub fn saturating_add(self, d: Duration) -> Self {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(add))
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, for example `2026-11-25T01:50:53.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

/// A source of the current time. The middleware and policy read time only through this,
/// so tests can move time by hand ([`ManualClock`]).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use sealed_session::{Clock, Timestamp};
///
/// /// A clock a test moves by hand (the crate has one: `ManualClock`).
/// struct Frozen(AtomicU64);
/// impl Clock for Frozen {
///     fn now(&self) -> Timestamp {
///         Timestamp::from_millis(self.0.load(Ordering::Relaxed))
///     }
/// }
/// let clock = Frozen(AtomicU64::new(1_764_000_000_000));
/// assert_eq!(clock.now().as_millis(), 1_764_000_000_000);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
///
/// ```
/// use sealed_session::{Clock, SystemClock};
///
/// assert!(SystemClock.now().as_millis() > 1_700_000_000_000);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use sealed_session::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.now(), Timestamp::from_millis(2_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.as_millis())))
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_add(add))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn from_system_time_is_whole_milliseconds(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let expected = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            if let Some(t) = UNIX_EPOCH.checked_add(d) {
                prop_assert_eq!(Timestamp::from_system_time(t).as_millis(), expected);
            }
        }
    }

    #[test]
    fn before_the_epoch_is_the_epoch() {
        let before = UNIX_EPOCH.checked_sub(Duration::from_millis(5));
        if let Some(t) = before {
            assert_eq!(Timestamp::from_system_time(t), Timestamp::EPOCH);
        }
    }
}
