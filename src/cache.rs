//! The open cache: what recently seen tokens opened to, so that the same token sent again
//! (every request of a page, every API call of a single-page app, the request after a
//! write) skips base64, the AEAD or MAC, and parsing the data.
//!
//! # Why it is safe
//!
//! - Only a token that opened (authenticated, decoded, within the data limits) is kept, or
//!   one this middleware has just sealed. A lookup answers only for the *same bytes*,
//!   compared in constant time ([`constant_time_eq`]), and the same purpose (cookie name):
//!   a token that differs in any byte goes through the codec as before.
//! - What does not depend on the token alone is checked on every request, cached or not:
//!   expiry and idle time ([`Policy::check`](crate::Policy::check), at the request's time)
//!   and revocation (the denylist). A token whose own times bound when it opens (a JWT's
//!   `exp`, `nbf` and `iat`) is answered only within that span
//!   ([`Validity`](crate::codec::Validity)); outside it the codec opens it again, and
//!   refuses it.
//! - A cache belongs to one endpoint, so to one codec, one key ring and one set of limits;
//!   a middleware with other keys has another cache. Codecs whose `open` depends on more
//!   than the token and its own times ([`Codec::open_is_pure`](crate::Codec::open_is_pure))
//!   are not cached.
//! - A device-bound session's bound cookie (DBSC) whose MAC has verified is kept with its
//!   token as a [`VerifiedBound`] (made only there: `DeviceBinding::verify_bound`): its
//!   exact bytes, the DBSC session it verified for, and its expiry; a write's new token
//!   takes it over while the session is still bound as that DBSC session. A later request
//!   sending the same bytes (constant-time comparison) for a session bound as that DBSC
//!   session is accepted if the expiry is still ahead at the request's time, which is what
//!   verifying its MAC again would decide: the MAC is a function of those bytes, that DBSC
//!   session and the endpoint's keys, which do not change. Store-backed sessions (whose
//!   entries hold only an id) verify the MAC on every request.
//! - The slot is picked by a keyed hash (a folded multiply with a per-process random key) of
//!   the token's tail, which holds its authentication tag (random-looking, and different for
//!   every token made). The hash only spreads tokens: a client that made two tokens collide
//!   would learn nothing and could only slow its own look-ups, since a slot holds nothing but
//!   tokens that opened.
//!
//! # What it costs
//!
//! Memory: at most the configured budget (default 1 MiB: a few hundred to a thousand
//! sessions of the usual size), whatever the number of sessions. Entries larger than a
//! sixteenth of the budget are not kept. Eviction is per set of two slots: a new token
//! replaces the older of the two. Plaintext session data stays in memory for as long as its
//! entry does (until evicted, or the middleware is dropped), where without the cache it
//! would be freed at the end of the request; so does a device-bound session's kept bound
//! cookie.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clock::Timestamp;
use crate::codec::Validity;
use crate::state::{SessionId, SessionState};

/// Default memory budget of an endpoint's open cache: 1 MiB.
pub const DEFAULT_OPEN_CACHE_BYTES: usize = 1 << 20;

/// Average entry size the number of slots is planned for.
const PLANNED_ENTRY: usize = 1024;
/// Slots per set.
const WAYS: usize = 2;
/// Bytes of the token's tail (its authentication tag, in base64) that pick its slot.
const TAIL: usize = 32;

/// A session as a token opened to, ready to be handed out again.
#[derive(Clone)]
pub(crate) struct Hit {
    pub(crate) state: SessionState,
    /// Opened with a key that is no longer primary.
    pub(crate) stale_key: bool,
    /// When the token opens by its own times: outside it, the token goes through the codec
    /// again (which refuses it, and says why).
    pub(crate) validity: Validity,
    /// The session's bound cookie that last verified (DBSC), if any.
    pub(crate) bound: Option<VerifiedBound>,
}

/// A bound cookie (DBSC) that verified: kept beside its session's token so that the same
/// cookie sent again is not verified again (see the [module documentation](self)). Made
/// only where its MAC has just verified (`DeviceBinding::verify_bound`).
#[cfg_attr(
    not(any(feature = "jwt", feature = "jwt-rust-crypto")),
    allow(dead_code)
)]
#[derive(Clone, Copy)]
pub(crate) struct VerifiedBound {
    /// The DBSC session it verified for.
    bid: [u8; 16],
    /// The cookie's value, as sent.
    value: [u8; BOUND_LEN],
    /// Its expiry, in seconds since the epoch: it is refused from then on.
    until_secs: u64,
}

/// Length of a bound cookie's value (24 bytes in base64).
pub(crate) const BOUND_LEN: usize = 32;

#[cfg_attr(
    not(any(feature = "jwt", feature = "jwt-rust-crypto")),
    allow(dead_code)
)]
impl VerifiedBound {
    /// The bound cookie `value` of the DBSC session `bid`, valid until `until_secs`. Only for
    /// a cookie whose MAC has just verified: [`VerifiedBound::admits`] answers for it
    /// without the MAC.
    pub(crate) fn verified(value: [u8; BOUND_LEN], bid: [u8; 16], until_secs: u64) -> Self {
        VerifiedBound {
            bid,
            value,
            until_secs,
        }
    }

    /// Whether it verified for the DBSC session `bid`.
    pub(crate) fn is_for(&self, bid: &[u8; 16]) -> bool {
        self.bid == *bid
    }

    /// Whether `value`, sent for the DBSC session `bid` at `now`, is this verified cookie
    /// and has not expired.
    pub(crate) fn admits(&self, value: &[u8], bid: &[u8; 16], now: Timestamp) -> bool {
        self.bid == *bid
            && now.as_secs() < self.until_secs
            && constant_time_eq::constant_time_eq(value, &self.value)
    }
}

struct Slot {
    hash: u64,
    token: Box<[u8]>,
    /// Which of the endpoint's two purposes (cookie names) the token was made for: the one
    /// with the `__Host-`/`__Secure-` prefix, or the plain one.
    secure: bool,
    hit: Hit,
    /// Bytes charged to the budget.
    size: usize,
    /// When inserted (a per-set counter), to evict the older slot.
    age: u64,
}

impl Slot {
    /// Whether this slot keeps a token of session `id` at `hash`.
    fn is_of(&self, hash: u64, id: SessionId) -> bool {
        self.hash == hash && self.hit.state.id() == id
    }

    /// Whether this slot keeps `token` (of hash `hash`) for the purpose `secure` names: the
    /// same bytes, compared in constant time.
    fn holds(&self, token: &[u8], hash: u64, secure: bool) -> bool {
        self.hash == hash
            && self.secure == secure
            && constant_time_eq::constant_time_eq(&self.token, token)
    }
}

#[derive(Default)]
struct Set {
    slots: [Option<Slot>; WAYS],
    clock: u64,
}

/// A counter alone on its pair of cache lines (adjacent-line prefetch pairs them).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// Opened tokens of one endpoint; see the [module documentation](self).
pub(crate) struct OpenCache {
    hasher: foldhash::fast::RandomState,
    sets: Box<[Mutex<Set>]>,
    /// Bytes charged to the budget, written on every write of a session by every thread:
    /// on cache lines of its own, away from the fields every request reads.
    bytes: Padded,
    max_bytes: usize,
    max_entry: usize,
    /// The data limits tokens are checked against before they are kept.
    max_data_len: usize,
    max_depth: usize,
}

impl std::fmt::Debug for OpenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCache")
            .field("sets", &self.sets.len())
            .field("bytes", &self.bytes.0.load(Ordering::Relaxed))
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl OpenCache {
    /// A cache of at most `max_bytes`, or `None` for 0 (no cache). `max_data_len` and
    /// `max_depth` are the endpoint's data limits ([`crate::Limits`]).
    pub(crate) fn new(max_bytes: usize, max_data_len: usize, max_depth: usize) -> Option<Self> {
        if max_bytes == 0 {
            return None;
        }
        let sets = (max_bytes / PLANNED_ENTRY / WAYS)
            .max(1)
            .next_power_of_two();
        Some(OpenCache {
            hasher: foldhash::fast::RandomState::default(),
            sets: (0..sets).map(|_| Mutex::new(Set::default())).collect(),
            bytes: Padded::default(),
            max_bytes,
            max_entry: (max_bytes / 16).max(1),
            max_data_len,
            max_depth,
        })
    }

    /// Where `token` is kept, if it is: pass it to [`OpenCache::get`], [`OpenCache::insert`]
    /// and [`OpenCache::take`].
    pub(crate) fn hash(&self, token: &[u8]) -> u64 {
        let tail = token
            .get(token.len().saturating_sub(TAIL)..)
            .unwrap_or(token);
        let mut h = self.hasher.build_hasher();
        h.write(tail);
        h.write_usize(token.len());
        h.finish()
    }

    fn set(&self, hash: u64) -> Option<&Mutex<Set>> {
        // `sets.len()` is a power of two; foldhash mixes every bit.
        let i = hash as usize & (self.sets.len() - 1);
        self.sets.get(i)
    }

    /// What `token` opened to, if it is kept, for the purpose `secure` names (see
    /// [`Shared::purpose`](crate::session::Shared::purpose)).
    pub(crate) fn get(&self, token: &[u8], hash: u64, secure: bool) -> Option<Hit> {
        let set = self.set(hash)?.lock().ok()?;
        Self::find(&set, token, hash, secure).map(|s| s.hit.clone())
    }

    fn find<'s>(set: &'s Set, token: &[u8], hash: u64, secure: bool) -> Option<&'s Slot> {
        set.slots
            .iter()
            .flatten()
            .find(|s| s.holds(token, hash, secure))
    }

    /// Keeps what `token` opened to. Only for tokens that opened, or that this endpoint just
    /// sealed from `hit.state`. A state outside the data limits is not kept: opening its
    /// token would refuse it. `credit`: bytes [`OpenCache::take`] freed and left to this call
    /// to subtract from the budget, so that a write's new token and the one it replaces
    /// update the budget once.
    pub(crate) fn insert(&self, token: &str, hash: u64, secure: bool, hit: Hit, credit: usize) {
        let Ok(heap) = hit.state.check_data(self.max_data_len, self.max_depth) else {
            self.charge(0, credit);
            return;
        };
        self.insert_checked(token, hash, secure, hit, credit, heap);
    }

    /// Keeps the session id a store-backed session's signed-id `token` verified to (a state
    /// with that id and nothing else: the session itself is loaded from the store on every
    /// request).
    pub(crate) fn insert_id(
        &self,
        token: &str,
        hash: u64,
        secure: bool,
        id: SessionId,
        stale_key: bool,
    ) {
        let never = Timestamp::from_millis(0);
        let hit = Hit {
            state: SessionState::new(id, never, never),
            stale_key,
            validity: Validity::ALWAYS,
            bound: None,
        };
        self.insert_checked(token, hash, secure, hit, 0, 0);
    }

    /// [`OpenCache::insert`] for a state the caller has already checked against this
    /// cache's data limits (the endpoint's, which it was built with): `heap` is what
    /// [`SessionState::check_data`](crate::SessionState) returned.
    pub(crate) fn insert_checked(
        &self,
        token: &str,
        hash: u64,
        secure: bool,
        hit: Hit,
        credit: usize,
        heap: usize,
    ) {
        let size = token.len() + heap + std::mem::size_of::<Slot>();
        if size > self.max_entry {
            self.charge(0, credit);
            return;
        }
        let token = token.as_bytes();
        let Some(Ok(mut set)) = self.set(hash).map(Mutex::lock) else {
            self.charge(0, credit);
            return;
        };
        set.clock = set.clock.wrapping_add(1);
        let age = set.clock;
        // The same token again (a write that changed nothing sealed identical bytes only by
        // chance: nonces differ), else an empty slot, else the older one.
        let way = set
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.holds(token, hash, secure)))
            .or_else(|| set.slots.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let ages = set.slots.iter().map(|s| s.as_ref().map_or(0, |s| s.age));
                ages.enumerate()
                    .min_by_key(|(_, a)| *a)
                    .map_or(0, |(i, _)| i)
            });
        let Some(slot) = set.slots.get_mut(way) else {
            self.charge(0, credit);
            return;
        };
        let old = slot.take();
        let freed = credit + old.as_ref().map_or(0, |o| o.size);
        if self.charge(size, freed) {
            *slot = Some(Slot {
                hash,
                token: token.into(),
                secure,
                hit,
                size,
                age,
            });
        }
        drop(set);
        // The evicted session is freed outside the lock.
        drop(old);
    }

    /// Adds `size` to the budget's count and subtracts `freed`, in one atomic update (every
    /// thread writing sessions updates it); `false`, with only `freed` subtracted, when
    /// `size` would not fit.
    fn charge(&self, size: usize, freed: usize) -> bool {
        let bytes = &self.bytes.0;
        if size < freed {
            bytes.fetch_sub(freed - size, Ordering::Relaxed);
            return true;
        }
        let grow = size - freed;
        if grow == 0 {
            return true;
        }
        let before = bytes.fetch_add(grow, Ordering::Relaxed);
        if before.saturating_add(grow) > self.max_bytes {
            bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Drops the token of [`OpenCache::hash`] `hash` if it belongs to session `id`: a token
    /// that a newer one replaced. The client sends the newer one from now on; keeping the
    /// old would fill the cache with tokens nobody sends and push out those still in use.
    /// Returns the bytes freed, still counted in the budget: the caller passes them to
    /// [`OpenCache::insert`] as its `credit`, which subtracts them.
    #[must_use]
    pub(crate) fn take(&self, hash: u64, id: SessionId) -> usize {
        let Some(Ok(mut set)) = self.set(hash).map(Mutex::lock) else {
            return 0;
        };
        let old = set
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.is_of(hash, id)))
            .and_then(Option::take);
        drop(set);
        // Freed outside the lock.
        old.map_or(0, |o| o.size)
    }

    /// Keeps `bound`, which has just verified, beside the token of session `id` kept at
    /// `hash` (nothing when the token is not kept).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn remember_bound(&self, hash: u64, id: SessionId, bound: VerifiedBound) {
        let Some(Ok(mut set)) = self.set(hash).map(Mutex::lock) else {
            return;
        };
        if let Some(slot) = set.slots.iter_mut().flatten().find(|s| s.is_of(hash, id)) {
            slot.hit.bound = Some(bound);
        }
    }

    /// [`OpenCache::take`], and the budget updated.
    pub(crate) fn remove(&self, hash: u64, id: SessionId) {
        let freed = self.take(hash, id);
        self.charge(0, freed);
    }

    /// Bytes charged to the budget now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn state(user: &str) -> SessionState {
        let now = Timestamp::from_millis(1_700_000_000_000);
        let mut s = SessionState::new(SessionId::from_bytes([7; 16]), now, now);
        s.insert("user", user).expect("insert");
        s
    }

    fn hit(user: &str) -> Hit {
        Hit {
            state: state(user),
            stale_key: false,
            validity: Validity::ALWAYS,
            bound: None,
        }
    }

    fn put(c: &OpenCache, token: &str, secure: bool, hit: Hit) {
        c.insert(token, c.hash(token.as_bytes()), secure, hit, 0);
    }

    fn find(c: &OpenCache, token: &[u8], secure: bool) -> Option<Hit> {
        c.get(token, c.hash(token), secure)
    }

    fn user(h: &Hit) -> Option<String> {
        h.state.get::<String>("user").expect("get")
    }

    #[test]
    fn answers_only_for_the_same_bytes_and_purpose() {
        let c = OpenCache::new(1 << 16, 16 * 1024, 32).expect("cache");
        put(&c, "token-of-alice", false, hit("alice"));
        assert_eq!(
            find(&c, b"token-of-alice", false).as_ref().and_then(user),
            Some("alice".to_owned())
        );
        assert!(find(&c, b"token-of-alicf", false).is_none());
        assert!(find(&c, b"Token-of-alice", false).is_none());
        assert!(find(&c, b"token-of-alice ", false).is_none());
        assert!(find(&c, b"token-of-alic", false).is_none());
        assert!(find(&c, b"token-of-alice", true).is_none());
        assert!(find(&c, b"", false).is_none());
    }

    #[test]
    fn a_replaced_token_is_dropped_for_its_own_session_only() {
        let c = OpenCache::new(1 << 16, 16 * 1024, 32).expect("cache");
        put(&c, "old-token", false, hit("alice"));
        let bytes = c.bytes();
        assert!(bytes > 0);
        // Another session's id: kept.
        c.remove(c.hash(b"old-token"), SessionId::from_bytes([8; 16]));
        assert!(find(&c, b"old-token", false).is_some());
        c.remove(c.hash(b"old-token"), SessionId::from_bytes([7; 16]));
        assert!(find(&c, b"old-token", false).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn a_verified_bound_cookie_admits_its_own_bytes_for_its_session_until_it_expires() {
        let at = |secs: u64| Timestamp::from_millis(secs * 1000);
        let kept = VerifiedBound::verified([b'a'; BOUND_LEN], [1; 16], 1_000);
        assert!(kept.admits(&[b'a'; BOUND_LEN], &[1; 16], at(999)));
        assert!(!kept.admits(&[b'a'; BOUND_LEN], &[1; 16], at(1_000)));
        assert!(!kept.admits(&[b'a'; BOUND_LEN], &[2; 16], at(999)));
        let mut other = [b'a'; BOUND_LEN];
        other[BOUND_LEN - 1] = b'b';
        assert!(!kept.admits(&other, &[1; 16], at(999)));
        assert!(!kept.admits(&[b'a'; BOUND_LEN - 1], &[1; 16], at(999)));
        assert!(!kept.admits(&[b'a'; BOUND_LEN + 1], &[1; 16], at(999)));
        assert!(!kept.admits(b"", &[1; 16], at(999)));
    }

    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    #[test]
    fn a_verified_bound_cookie_is_kept_with_its_sessions_token_only() {
        let c = OpenCache::new(1 << 16, 16 * 1024, 32).expect("cache");
        let kept = VerifiedBound::verified([b'a'; BOUND_LEN], [1; 16], 1_000);
        let (alice, other) = (
            SessionId::from_bytes([7; 16]),
            SessionId::from_bytes([8; 16]),
        );
        let hash = c.hash(b"token-of-alice");
        // Not kept: no token there yet.
        let kept_now = || find(&c, b"token-of-alice", false).and_then(|h| h.bound);
        c.remember_bound(hash, alice, kept);
        put(&c, "token-of-alice", false, hit("alice"));
        assert!(kept_now().is_none());
        // Kept for the session whose token is there, not for another session's id.
        c.remember_bound(hash, other, kept);
        assert!(kept_now().is_none());
        c.remember_bound(hash, alice, kept);
        assert!(kept_now().is_some_and(|b| b.value == kept.value));
        // A token put there again starts with what its hit carries.
        put(&c, "token-of-alice", false, hit("alice"));
        assert!(kept_now().is_none());
    }

    #[test]
    fn zero_bytes_means_no_cache() {
        assert!(OpenCache::new(0, 16 * 1024, 32).is_none());
    }

    #[test]
    fn stays_within_its_budget() {
        let budget = 64 * 1024;
        let c = OpenCache::new(budget, 16 * 1024, 32).expect("cache");
        for i in 0..10_000 {
            put(
                &c,
                &format!("{}-{i:06}", "x".repeat(200)),
                false,
                hit("bob"),
            );
            assert!(c.bytes() <= budget, "{} over {budget}", c.bytes());
        }
        assert!(c.bytes() > budget / 4, "the cache keeps something");
    }

    #[test]
    fn a_write_replacing_its_token_counts_the_budget_exactly() {
        let c = OpenCache::new(1 << 16, 16 * 1024, 32).expect("cache");
        put(&c, "token-1", false, hit("alice"));
        let one = c.bytes();
        // The write takes the old token out, then keeps the new one with the freed bytes as
        // credit: the count is the new entry's size alone.
        let freed = c.take(c.hash(b"token-1"), SessionId::from_bytes([7; 16]));
        assert_eq!(freed, one);
        assert_eq!(
            c.bytes(),
            one,
            "take leaves the count to the insert that follows"
        );
        let h = hit("alice-after-the-write");
        let heap = h.state.check_data(usize::MAX, 32).expect("within");
        let two = "token-two".len() + heap + std::mem::size_of::<Slot>();
        c.insert("token-two", c.hash(b"token-two"), false, h, freed);
        assert_eq!(c.bytes(), two);
        assert!(find(&c, b"token-1", false).is_none());
        assert!(find(&c, b"token-two", false).is_some());
        // A replacement that is not kept (too large here) still frees the old.
        let freed = c.take(c.hash(b"token-two"), SessionId::from_bytes([7; 16]));
        c.insert("token-3", c.hash(b"token-3"), false, hit("x"), 0);
        let three = c.bytes();
        c.insert(
            "token-4",
            c.hash(b"token-4"),
            false,
            Hit {
                state: {
                    let mut s = state("y");
                    s.insert("pad", &"z".repeat(20_000)).expect("insert");
                    s
                },
                stale_key: false,
                validity: Validity::ALWAYS,
                bound: None,
            },
            freed,
        );
        assert_eq!(
            c.bytes(),
            three - freed,
            "the refused entry's credit is still applied"
        );
    }

    #[test]
    fn the_budget_is_charged_once_and_a_refusal_keeps_only_the_credit() {
        let c = OpenCache::new(1 << 16, 16 * 1024, 32).expect("cache");
        let max = 1 << 16;
        assert!(c.charge(100, 0));
        assert_eq!(c.bytes(), 100);
        assert!(
            c.charge(50, 100),
            "a smaller entry in place of a larger one"
        );
        assert_eq!(c.bytes(), 50);
        assert!(c.charge(0, 50));
        assert_eq!(c.bytes(), 0);
        assert!(c.charge(max - 10, 0));
        assert!(!c.charge(20, 0), "over the budget");
        assert_eq!(c.bytes(), max - 10);
        assert!(c.charge(20, 15), "fits once the credit is counted");
        assert_eq!(c.bytes(), max - 5);
        assert!(!c.charge(100, 10));
        assert_eq!(
            c.bytes(),
            max - 15,
            "refused: only the credit is subtracted"
        );
    }

    #[test]
    fn refuses_entries_over_a_sixteenth_of_the_budget() {
        let c = OpenCache::new(16 * 1024, 16 * 1024, 32).expect("cache");
        let big = "t".repeat(2000);
        put(&c, &big, false, hit("carol"));
        assert!(find(&c, big.as_bytes(), false).is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn does_not_keep_data_outside_the_limits() {
        // 20 bytes of data allowed: `{"user":"alice"}` (16) passes, a longer one does not.
        let c = OpenCache::new(1 << 16, 20, 32).expect("cache");
        put(&c, "short", false, hit("alice"));
        put(&c, "long", false, hit("alice-with-a-long-name"));
        assert!(find(&c, b"short", false).is_some());
        assert!(find(&c, b"long", false).is_none());
        // One level of nesting allowed: the data object itself, nothing inside it.
        let c = OpenCache::new(1 << 16, 1024, 1).expect("cache");
        let mut nested = state("alice");
        nested.insert("roles", &["admin"]).expect("insert");
        put(
            &c,
            "nested",
            false,
            Hit {
                state: nested,
                stale_key: false,
                validity: Validity::ALWAYS,
                bound: None,
            },
        );
        put(&c, "flat", false, hit("alice"));
        assert!(find(&c, b"nested", false).is_none());
        assert!(find(&c, b"flat", false).is_some());
    }

    #[test]
    fn a_new_token_replaces_the_older_of_two() {
        // One set of two slots.
        let c = OpenCache::new(1, 16 * 1024, 32).expect("cache");
        let c = OpenCache {
            max_bytes: 1 << 20,
            max_entry: 1 << 16,
            ..c
        };
        put(&c, "a", false, hit("a"));
        put(&c, "b", false, hit("b"));
        put(&c, "c", false, hit("c"));
        assert!(find(&c, b"a", false).is_none());
        assert!(find(&c, b"b", false).is_some());
        assert!(find(&c, b"c", false).is_some());
    }
}
