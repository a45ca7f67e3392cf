//! Which sessions this process recorded lately, so that a session whose token is re-issued
//! on every request (its data changes each time, or `rolling`) is written to the registry
//! about once per refresh interval, not once per request.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::state::SessionId;

/// At most this many sessions are remembered; past it the memory is cleared (each session
/// is then recorded once more at its next token), so it stays bounded whatever the traffic.
const MAX_REMEMBERED: usize = 100_000;

/// The sessions recorded by this process within the refresh interval: about 40 bytes
/// each (at most about 4 MB).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    /// Session id → a hash of its subject when recorded, and when.
    seen: Mutex<HashMap<SessionId, (u64, Timestamp)>>,
    /// Keys the subject hashes (a collision would only skip one record).
    hasher: RandomState,
}

impl Recent {
    /// Whether `id` of `subject` is due to be recorded at `now`: not recorded by this
    /// process within `every`, or recorded under another subject. When due, it counts as
    /// recorded from now.
    pub(crate) fn due(
        &self,
        id: SessionId,
        subject: &str,
        now: Timestamp,
        every: Duration,
    ) -> bool {
        if every.is_zero() {
            return true;
        }
        let subject = self.hasher.hash_one(subject);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((s, at)) = seen.get(&id)
            && *s == subject
            && now.saturating_since(*at) < every
            && *at <= now
        {
            return false;
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(id, (subject, now));
        true
    }

    /// Forgets `id` (it ended, or its record failed: the next token records it again).
    pub(crate) fn forget(&self, id: &SessionId) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_due_once_per_interval_and_again_under_another_subject() {
        let recent = Recent::default();
        let id = SessionId::from_bytes([1; 16]);
        let t0 = Timestamp::from_millis(1_000_000);
        let every = Duration::from_secs(300);
        assert!(recent.due(id, "alice", t0, every));
        assert!(!recent.due(
            id,
            "alice",
            t0.saturating_add(Duration::from_secs(299)),
            every
        ));
        assert!(recent.due(id, "bob", t0.saturating_add(Duration::from_secs(1)), every));
        assert!(recent.due(
            id,
            "bob",
            t0.saturating_add(Duration::from_secs(400)),
            every
        ));
        recent.forget(&id);
        assert!(recent.due(
            id,
            "bob",
            t0.saturating_add(Duration::from_secs(401)),
            every
        ));
        assert!(recent.due(id, "bob", t0, Duration::ZERO));
    }
}
