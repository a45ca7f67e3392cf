//! The denylist's own metrics (feature `metrics`), named in [`crate::stats`]: here so that
//! the denylist reports them without depending on the middleware's statistics.

/// `sealed_session_denylist_overflows_total{kind}`: revocations that found the denylist full.
pub const DENYLIST_OVERFLOWS_TOTAL: &str = "sealed_session_denylist_overflows_total";
/// `sealed_session_denylist_entries{kind}`: entries a denylist holds.
pub const DENYLIST_ENTRIES: &str = "sealed_session_denylist_entries";
/// `sealed_session_denylist_staleness_seconds`: age of the Redis replica's last confirmation.
pub const DENYLIST_STALENESS_SECONDS: &str = "sealed_session_denylist_staleness_seconds";

/// Sets the denylist size gauges (`metrics` feature).
#[cfg(feature = "metrics")]
pub(super) fn denylist_entries(sessions: usize, subjects: usize) {
    // Exact below 2^53 entries.
    ::metrics::gauge!(DENYLIST_ENTRIES, "kind" => "session").set(sessions as f64);
    ::metrics::gauge!(DENYLIST_ENTRIES, "kind" => "subject").set(subjects as f64);
}

/// Counts a revocation that found the denylist full (`metrics` feature).
#[cfg(feature = "metrics")]
pub(super) fn denylist_overflow(kind: &'static str) {
    ::metrics::counter!(DENYLIST_OVERFLOWS_TOTAL, "kind" => kind).increment(1);
}

/// Sets the replica staleness gauge (`metrics` feature): `None` before the first load.
#[cfg(all(feature = "metrics", feature = "redis"))]
pub(super) fn denylist_staleness(stale_for: Option<std::time::Duration>) {
    ::metrics::gauge!(DENYLIST_STALENESS_SECONDS)
        .set(stale_for.map_or(f64::INFINITY, |d| d.as_secs_f64()));
}
