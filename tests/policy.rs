//! Expiry policy at its exact boundaries, with a hand-driven clock: absolute deadline, idle
//! timeout, clock leeway for times in the future, renewal and rolling.

mod common {
    pub mod fixtures;
}

use std::time::Duration;

use common::fixtures::{T0, clock};
use sealed_session::{
    Algorithm, Clock, Codec, Key, Keyring, OpenError, Policy, SealedCodec, SessionId, SessionState,
    SignedCodec, Timestamp,
};

const MS: Duration = Duration::from_millis(1);
const MIN: Duration = Duration::from_secs(60);

fn at(d: Duration) -> Timestamp {
    T0.saturating_add(d)
}

fn minus_ms(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.as_millis() - 1)
}

/// A session created at T0 under `policy`.
fn session(policy: &Policy) -> SessionState {
    SessionState::new(SessionId::from_bytes([1; 16]), T0, policy.expires_at(T0))
}

#[test]
fn absolute_expiry_is_ok_one_ms_before_and_refused_at_the_deadline() {
    let policy = Policy::new().max_age(60 * MIN).idle_timeout(None);
    let st = session(&policy);
    let deadline = at(60 * MIN);
    assert_eq!(st.expires_at(), deadline);
    assert_eq!(policy.deadline(&st), deadline);
    assert!(policy.check(&st, minus_ms(deadline)).is_ok());
    assert_eq!(
        policy.check(&st, deadline).unwrap_err(),
        OpenError::Expired {
            expired_at: deadline,
            now: deadline
        }
    );
    assert!(matches!(
        policy.check(&st, at(1000 * MIN)),
        Err(OpenError::Expired { .. })
    ));
}

#[test]
fn the_earlier_of_the_token_deadline_and_issue_plus_max_age_rules() {
    // A shorter per-session deadline travels in the token and holds.
    let policy = Policy::new().max_age(120 * MIN).idle_timeout(None);
    let mut st = session(&policy);
    st.set_expires_at(at(30 * MIN));
    assert_eq!(policy.deadline(&st), at(30 * MIN));
    assert!(policy.check(&st, minus_ms(at(30 * MIN))).is_ok());
    assert!(policy.check(&st, at(30 * MIN)).is_err());
    // A longer one (an older, longer policy) is capped by the current max-age.
    let long = Policy::new().max_age(120 * MIN).idle_timeout(None);
    let st = session(&long);
    let short = Policy::new().max_age(10 * MIN).idle_timeout(None);
    assert_eq!(short.deadline(&st), at(10 * MIN));
    assert!(short.check(&st, minus_ms(at(10 * MIN))).is_ok());
    assert_eq!(
        short.check(&st, at(10 * MIN)).unwrap_err(),
        OpenError::Expired {
            expired_at: at(10 * MIN),
            now: at(10 * MIN)
        }
    );
}

/// A key holder seals a session whose deadline is 2^64-1 ms: it still lives no longer than
/// `max_age` from its issue time, whatever the codec.
#[test]
fn a_token_deadline_past_max_age_from_its_issue_time_is_capped() {
    let ring = Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm).unwrap()]).unwrap();
    let policy = Policy::new().max_age(60 * MIN).idle_timeout(None);
    let forever = SessionState::new(
        SessionId::from_bytes([7; 16]),
        T0,
        Timestamp::from_millis(u64::MAX),
    );
    assert_eq!(policy.deadline(&forever), at(60 * MIN));
    for codec in [
        Box::new(SealedCodec::new(ring.clone())) as Box<dyn Codec>,
        Box::new(SignedCodec::new(ring.clone())),
    ] {
        let token = codec.seal(&forever, b"sid").unwrap();
        let (opened, _) = codec
            .open_checked(&token, b"sid", &policy, minus_ms(at(60 * MIN)))
            .unwrap();
        assert_eq!(
            opened.state().expires_at(),
            Timestamp::from_millis(u64::MAX)
        );
        for now in [at(60 * MIN), at(100_000 * MIN)] {
            assert_eq!(
                codec
                    .open_checked(&token, b"sid", &policy, now)
                    .unwrap_err(),
                OpenError::Expired {
                    expired_at: at(60 * MIN),
                    now
                },
                "{}",
                codec.name()
            );
        }
    }
}

#[test]
fn idle_timeout_is_ok_one_ms_before_and_refused_at_last_seen_plus_idle() {
    let policy = Policy::new()
        .max_age(24 * 60 * MIN)
        .idle_timeout(Some(10 * MIN));
    let mut st = session(&policy);
    st.set_last_seen(at(5 * MIN));
    let idle_deadline = at(15 * MIN);
    assert_eq!(policy.deadline(&st), idle_deadline);
    assert!(policy.check(&st, minus_ms(idle_deadline)).is_ok());
    assert_eq!(
        policy.check(&st, idle_deadline).unwrap_err(),
        OpenError::IdleTimeout {
            last_seen: at(5 * MIN),
            now: idle_deadline
        }
    );
}

#[test]
fn the_absolute_deadline_wins_over_a_later_idle_deadline() {
    let policy = Policy::new().max_age(10 * MIN).idle_timeout(Some(60 * MIN));
    let st = session(&policy);
    assert_eq!(policy.deadline(&st), at(10 * MIN));
    assert!(matches!(
        policy.check(&st, at(10 * MIN)),
        Err(OpenError::Expired { .. })
    ));
}

#[test]
fn times_in_the_future_are_allowed_up_to_the_leeway() {
    let policy = Policy::new().leeway(30 * 1000 * MS);
    let now = T0;
    for field in ["issued_at", "last_seen"] {
        let mut st = session(&policy);
        let set = |st: &mut SessionState, t: Timestamp| {
            if field == "issued_at" {
                st.set_issued_at(t)
            } else {
                st.set_last_seen(t)
            }
        };
        let edge = now.saturating_add(Duration::from_secs(30));
        set(&mut st, edge);
        assert!(policy.check(&st, now).is_ok(), "{field}");
        let beyond = edge.saturating_add(MS);
        set(&mut st, beyond);
        assert_eq!(
            policy.check(&st, now).unwrap_err(),
            OpenError::FromTheFuture {
                claimed: beyond,
                now
            },
            "{field}"
        );
    }
}

#[test]
fn renewal_is_due_exactly_at_the_renewal_interval() {
    let policy = Policy::new()
        .idle_timeout(Some(60 * MIN))
        .renew_after(5 * MIN);
    assert_eq!(policy.renewal_interval(), Some(5 * MIN));
    let mut st = session(&policy);
    st.set_last_seen(at(MIN));
    assert!(!policy.check(&st, at(MIN)).unwrap().renew);
    assert!(!policy.check(&st, minus_ms(at(6 * MIN))).unwrap().renew);
    assert!(policy.check(&st, at(6 * MIN)).unwrap().renew);
    assert!(policy.check(&st, at(30 * MIN)).unwrap().renew);
}

#[test]
fn default_renewal_is_a_quarter_of_the_idle_timeout() {
    let policy = Policy::new().idle_timeout(Some(40 * MIN));
    assert_eq!(policy.renewal_interval(), Some(10 * MIN));
    let st = session(&policy);
    assert!(!policy.check(&st, minus_ms(at(10 * MIN))).unwrap().renew);
    assert!(policy.check(&st, at(10 * MIN)).unwrap().renew);

    // The documented defaults.
    let d = Policy::default();
    assert_eq!(
        d,
        Policy::new()
            .max_age(24 * 60 * MIN)
            .idle_timeout(Some(60 * MIN))
            .leeway(Duration::from_secs(60))
            .rolling(false)
    );
    assert_eq!(d.renewal_interval(), Some(15 * MIN));
    assert!(!d.is_rolling());
}

#[test]
fn without_idle_timeout_or_renew_after_an_unchanged_session_is_never_renewed() {
    let policy = Policy::new().max_age(24 * 60 * MIN).idle_timeout(None);
    assert_eq!(policy.renewal_interval(), None);
    let st = session(&policy);
    assert!(
        !policy
            .check(&st, minus_ms(at(24 * 60 * MIN)))
            .unwrap()
            .renew
    );
}

#[test]
fn rolling_always_renews() {
    let policy = Policy::new().rolling(true);
    assert!(policy.is_rolling());
    let st = session(&policy);
    assert!(policy.check(&st, T0).unwrap().renew);
    assert!(policy.check(&st, at(MS)).unwrap().renew);
}

#[test]
fn open_checked_applies_the_policy_with_an_injected_clock() {
    let ring = Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm).unwrap()]).unwrap();
    let policy = Policy::new()
        .max_age(30 * MIN)
        .idle_timeout(Some(10 * MIN))
        .renew_after(2 * MIN);
    let clock = clock();
    for codec in [
        Box::new(SealedCodec::new(ring.clone())) as Box<dyn Codec>,
        Box::new(SignedCodec::new(ring.clone())),
    ] {
        clock.set(T0);
        let st = SessionState::new(
            SessionId::generate().unwrap(),
            clock.now(),
            policy.expires_at(clock.now()),
        );
        let token = codec.seal(&st, b"sid").unwrap();

        let (_, fresh) = codec
            .open_checked(&token, b"sid", &policy, clock.now())
            .unwrap();
        assert!(!fresh.renew);
        clock.advance(2 * MIN);
        let (opened, fresh) = codec
            .open_checked(&token, b"sid", &policy, clock.now())
            .unwrap();
        assert!(fresh.renew);

        // The request was activity: the re-issued token moves last_seen.
        let mut st = opened.into_state();
        st.set_last_seen(clock.now());
        let renewed = codec.seal(&st, b"sid").unwrap();

        clock.advance(10 * MIN - MS); // 12 min - 1 ms after T0
        assert!(matches!(
            codec.open_checked(&token, b"sid", &policy, clock.now()),
            Err(OpenError::IdleTimeout { .. })
        ));
        assert!(
            codec
                .open_checked(&renewed, b"sid", &policy, clock.now())
                .is_ok()
        );

        clock.set(minus_ms(at(30 * MIN)));
        st.set_last_seen(clock.now());
        let last = codec.seal(&st, b"sid").unwrap();
        assert!(
            codec
                .open_checked(&last, b"sid", &policy, clock.now())
                .is_ok()
        );
        clock.advance(MS);
        assert!(matches!(
            codec.open_checked(&last, b"sid", &policy, clock.now()),
            Err(OpenError::Expired { .. })
        ));
        // A bad token is refused for what it is, before any time check.
        assert_eq!(
            codec
                .open_checked(&token, b"other", &policy, clock.now())
                .unwrap_err(),
            OpenError::BadSeal
        );
    }
}

#[test]
fn manual_clock_clones_share_time() {
    let a = clock();
    let b = a.clone();
    a.advance(MIN);
    assert_eq!(b.now(), at(MIN));
    b.set(Timestamp::EPOCH);
    assert_eq!(a.now(), Timestamp::EPOCH);
}

#[test]
fn timestamps_print_as_rfc3339_utc_with_milliseconds() {
    assert_eq!(
        Timestamp::from_millis(1_764_000_000_123).to_string(),
        "2025-11-24T16:00:00.123Z"
    );
    assert_eq!(at(MIN).saturating_since(T0), MIN);
    assert_eq!(T0.saturating_since(at(MIN)), Duration::ZERO);
}
