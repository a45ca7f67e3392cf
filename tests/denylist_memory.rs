//! The in-memory denylist: revocation, expiry, per-subject revocation at its boundary, and
//! concurrent use. Time is a `ManualClock`; nothing sleeps.

mod common {
    pub mod fixtures;
}

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{T0_MS, clock};
use sealed_session::denylist::{Check, Denylist, DenylistError, Health, MemoryDenylist, RevokedBy};
use sealed_session::{Clock, MAX_SUBJECT_LEN, ManualClock, SessionId, Timestamp};

fn setup() -> (ManualClock, MemoryDenylist, Arc<dyn Denylist>) {
    let clock = clock();
    let memory = MemoryDenylist::builder()
        .clock(Arc::new(clock.clone()))
        .subject_ttl(Duration::from_secs(3600))
        .build();
    let dyn_list: Arc<dyn Denylist> = Arc::new(memory.clone());
    (clock, memory, dyn_list)
}

fn id(n: u32) -> SessionId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[15] = 0xa5;
    SessionId::from_bytes(b)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn revoke_refuses_that_session_only() {
    let (clock, memory, list) = setup();
    let now = clock.now();
    let until = now.saturating_add(Duration::from_secs(60));
    assert_eq!(list.check(&id(1), None, now), Check::Allowed);
    block_on(list.revoke(id(1), until)).unwrap();
    assert_eq!(
        list.check(&id(1), None, now),
        Check::Revoked(RevokedBy::Session)
    );
    assert_eq!(
        list.check(&id(1), Some("alice"), now),
        Check::Revoked(RevokedBy::Session)
    );
    assert_eq!(list.check(&id(2), None, now), Check::Allowed);
    assert_eq!(memory.len(), 1);
    let status = list.status();
    assert_eq!(status.health, Health::Healthy);
    assert_eq!(status.revoked_sessions, 1);
    assert_eq!(status.revoked_subjects, 0);
}

#[test]
fn revoking_twice_keeps_the_later_expiry() {
    let (clock, memory, list) = setup();
    let now = clock.now();
    memory.insert(id(1), now.saturating_add(Duration::from_secs(100)));
    memory.insert(id(1), now.saturating_add(Duration::from_secs(10)));
    assert_eq!(memory.len(), 1);
    clock.advance(Duration::from_secs(50));
    assert!(list.check(&id(1), None, now).is_revoked());
}

#[test]
fn entries_expire_at_until_and_are_dropped() {
    let (clock, memory, list) = setup();
    let now = clock.now();
    let until = now.saturating_add(Duration::from_secs(60));
    memory.insert(id(1), until);
    memory.insert(id(2), now.saturating_add(Duration::from_secs(120)));

    // One millisecond before `until`: still revoked. At `until`: the session has expired on
    // its own, and the entry no longer counts.
    clock.set(Timestamp::from_millis(until.as_millis() - 1));
    assert!(list.check(&id(1), None, now).is_revoked());
    clock.set(until);
    assert_eq!(list.check(&id(1), None, now), Check::Allowed);
    assert!(list.check(&id(2), None, now).is_revoked());

    assert_eq!(memory.len(), 2, "expired entries stay until swept");
    assert_eq!(memory.purge_expired(), 1);
    assert_eq!(memory.len(), 1);
    assert!(list.check(&id(2), None, now).is_revoked());
}

#[test]
fn revoking_an_already_expired_session_stores_nothing() {
    let (clock, memory, list) = setup();
    let now = clock.now();
    block_on(list.revoke(id(1), now)).unwrap();
    block_on(list.revoke(id(2), Timestamp::from_millis(T0_MS - 1))).unwrap();
    assert!(memory.is_empty());
}

#[test]
fn memory_is_bounded_by_live_entries_without_explicit_purges() {
    let (clock, memory, _list) = setup();
    // Waves of 10 000 short-lived revocations, each wave expired before the next: without
    // the amortised sweep the table would grow to 200 000 entries.
    for wave in 0..20u32 {
        let now = clock.now();
        for i in 0..10_000u32 {
            memory.insert(
                id(wave * 10_000 + i),
                now.saturating_add(Duration::from_secs(1)),
            );
        }
        clock.advance(Duration::from_secs(2));
    }
    assert!(
        memory.len() <= 2 * 10_000 + 64 * 64,
        "{} entries held for 10 000 live ones",
        memory.len()
    );
}

#[test]
fn subject_revocation_refuses_sessions_issued_strictly_before() {
    let (clock, memory, list) = setup();
    let before = clock.now();
    let earlier = Timestamp::from_millis(before.as_millis() - 1);
    block_on(list.revoke_subject("alice", before)).unwrap();

    assert_eq!(
        list.check(&id(1), Some("alice"), earlier),
        Check::Revoked(RevokedBy::Subject)
    );
    // Issued in the very millisecond of the revocation, or later: allowed (log in again).
    assert_eq!(list.check(&id(1), Some("alice"), before), Check::Allowed);
    assert_eq!(
        list.check(
            &id(1),
            Some("alice"),
            before.saturating_add(Duration::from_millis(1))
        ),
        Check::Allowed
    );
    // Other subjects and subject-less sessions are untouched.
    assert_eq!(list.check(&id(1), Some("bob"), earlier), Check::Allowed);
    assert_eq!(list.check(&id(1), Some("alic"), earlier), Check::Allowed);
    assert_eq!(list.check(&id(1), None, earlier), Check::Allowed);
    assert_eq!(memory.subjects_len(), 1);
}

#[test]
fn a_later_subject_revocation_is_not_shortened_by_an_earlier_one() {
    let (clock, memory, list) = setup();
    let t = clock.now();
    memory
        .insert_subject("alice", t.saturating_add(Duration::from_secs(10)))
        .unwrap();
    memory.insert_subject("alice", t).unwrap();
    let issued = t.saturating_add(Duration::from_secs(5));
    assert!(list.check(&id(1), Some("alice"), issued).is_revoked());
}

#[test]
fn subject_revocations_are_kept_for_the_subject_ttl() {
    let (clock, memory, list) = setup();
    let before = clock.now();
    let issued = Timestamp::from_millis(before.as_millis() - 1000);
    memory.insert_subject("alice", before).unwrap();

    clock.set(Timestamp::from_millis(before.as_millis() + 3_600_000 - 1));
    assert!(list.check(&id(1), Some("alice"), issued).is_revoked());
    clock.set(before.saturating_add(Duration::from_secs(3600)));
    assert_eq!(list.check(&id(1), Some("alice"), issued), Check::Allowed);
    assert_eq!(memory.purge_expired(), 1);
    assert_eq!(memory.subjects_len(), 0);
}

#[test]
fn overlong_subjects_are_refused_with_a_named_error() {
    let (clock, _memory, list) = setup();
    let long = "x".repeat(MAX_SUBJECT_LEN + 1);
    match block_on(list.revoke_subject(&long, clock.now())) {
        Err(DenylistError::SubjectTooLong { len, max }) => {
            assert_eq!((len, max), (MAX_SUBJECT_LEN + 1, MAX_SUBJECT_LEN));
        }
        other => panic!("expected SubjectTooLong, got {other:?}"),
    }
}

#[test]
fn concurrent_revocations_and_checks_agree() {
    let (clock, memory, list) = setup();
    let until = clock.now().saturating_add(Duration::from_secs(600));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let memory = memory.clone();
            let list = list.clone();
            let now = clock.now();
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    let n = t * 1_000_000 + i;
                    memory.insert(id(n), until);
                    // A writer sees its own revocation at once; readers of other ids proceed.
                    assert!(list.check(&id(n), None, now).is_revoked());
                    assert_eq!(list.check(&id(n + 500_000), None, now), Check::Allowed);
                    if i % 1000 == 0 {
                        memory.insert_subject(&format!("user{t}"), now).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(memory.len(), 4 * 5_000);
    assert_eq!(memory.subjects_len(), 4);
    let now = clock.now();
    for t in 0..4u32 {
        for i in (0..5_000u32).step_by(97) {
            assert!(list.check(&id(t * 1_000_000 + i), None, now).is_revoked());
        }
    }
}

#[test]
fn debug_output_shows_sizes_only() {
    let (clock, memory, list) = setup();
    memory.insert(id(1), clock.now().saturating_add(Duration::from_secs(1)));
    block_on(list.revoke_subject("alice", clock.now())).unwrap();
    let s = format!("{memory:?}");
    assert!(s.contains("revoked_sessions: 1"), "{s}");
    assert!(!s.contains(&id(1).to_string()), "no revoked id: {s}");
    assert!(!s.contains("alice"), "no revoked subject: {s}");
}

#[test]
fn check_at_answers_as_of_the_given_time_not_the_denylists_clock() {
    let (clock, _memory, list) = setup();
    let now = clock.now();
    let until = now.saturating_add(Duration::from_secs(60));
    block_on(list.revoke(id(1), until)).unwrap();
    block_on(list.revoke_subject("alice", now)).unwrap();
    let earlier = Timestamp::from_millis(T0_MS - 1000);

    // Before the entry's expiry: revoked, whatever the denylist's own clock says.
    let just_before = Timestamp::from_millis(until.as_millis() - 1);
    assert!(list.check_at(&id(1), None, now, just_before).is_revoked());
    // At and after it: allowed, even though the denylist's clock has not moved.
    assert_eq!(list.check_at(&id(1), None, now, until), Check::Allowed);
    assert!(list.check(&id(1), None, now).is_revoked());

    // The subject revocation lapses after its TTL (an hour here), as of `now` too.
    assert_eq!(
        list.check_at(&id(2), Some("alice"), earlier, now),
        Check::Revoked(RevokedBy::Subject)
    );
    let after_ttl = now.saturating_add(Duration::from_secs(3600));
    assert_eq!(
        list.check_at(&id(2), Some("alice"), earlier, after_ttl),
        Check::Allowed
    );
}

#[test]
fn a_million_revocations_are_all_found_and_purged() {
    let (clock, memory, list) = setup();
    let now = clock.now();
    let id = |n: u64| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
        SessionId::from_bytes(b)
    };
    // Half expire in a minute, half in an hour.
    let soon = now.saturating_add(Duration::from_secs(60));
    let later = now.saturating_add(Duration::from_secs(3600));
    for n in 0..1_000_000u64 {
        memory.insert(id(n), if n % 2 == 0 { soon } else { later });
    }
    assert_eq!(memory.len(), 1_000_000);
    assert!((0..1_000_000u64).all(|n| list.check_at(&id(n), None, now, now).is_revoked()));
    assert!((1_000_000..1_010_000u64).all(|n| list.check_at(&id(n), None, now, now).is_allowed()));

    clock.advance(Duration::from_secs(61));
    assert_eq!(memory.purge_expired(), 500_000);
    let now = clock.now();
    assert!((0..1_000_000u64).all(|n| list.check(&id(n), None, now).is_revoked() == (n % 2 == 1)));
}
