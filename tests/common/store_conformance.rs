//! The behaviour every `Store` must have, run against each store by its own test file.
//!
//! Use from a test file with `mod common { pub mod store_conformance; }`.

#![allow(dead_code)]

use std::time::Duration;

use sealed_session::store::{Store, Update};
use sealed_session::{Clock, ManualClock, SessionId, SystemClock, Timestamp};

/// How the suite checks expiry.
pub enum Expiry<'a> {
    /// Not at all.
    Skip,
    /// On this clock, which the store also reads: moved by hand, no waiting.
    Manual(&'a ManualClock),
    /// In real time (for stores whose backend expires records on its own clock, as Redis
    /// does): a record saved to expire in 200 ms is there, then gone after the deadline.
    Real,
}

/// The behaviour every `Store` must have.
pub async fn conformance(store: &dyn Store, expiry: Expiry<'_>) {
    let a = SessionId::generate().unwrap();
    let b = SessionId::generate().unwrap();
    let far = Timestamp::from_millis(u64::MAX / 2);
    assert_eq!(store.load(&a).await.unwrap(), None, "absent");
    store.save(&a, b"record-a", far).await.unwrap();
    store.save(&b, b"record-b", far).await.unwrap();
    assert_eq!(
        store.load(&a).await.unwrap().as_deref(),
        Some(&b"record-a"[..])
    );
    store.save(&a, b"record-a2", far).await.unwrap();
    assert_eq!(
        store.load(&a).await.unwrap().as_deref(),
        Some(&b"record-a2"[..]),
        "replaced"
    );
    store.delete(&a).await.unwrap();
    assert_eq!(store.load(&a).await.unwrap(), None, "deleted");
    store.delete(&a).await.unwrap();
    assert_eq!(
        store.load(&b).await.unwrap().as_deref(),
        Some(&b"record-b"[..]),
        "others intact"
    );
    // Records are bytes, not text.
    let binary: Vec<u8> = (0..=255).collect();
    store.save(&a, &binary, far).await.unwrap();
    assert_eq!(
        store.load(&a).await.unwrap().as_deref(),
        Some(&binary[..]),
        "binary"
    );
    // Saving with a deadline already past leaves nothing, not even the record it replaces.
    let past = Timestamp::from_millis(1);
    store.save(&a, b"expired", past).await.unwrap();
    assert_eq!(store.load(&a).await.unwrap(), None, "saved already expired");

    // update: a compare-and-set that replaces only the expected record, never creates one.
    let e = SessionId::generate().unwrap();
    assert_eq!(
        store
            .update(&e, b"record-e", b"revived", far)
            .await
            .unwrap(),
        Update::Gone,
        "absent: gone"
    );
    assert_eq!(
        store.load(&e).await.unwrap(),
        None,
        "absent: nothing created"
    );
    store.save(&e, b"record-e", far).await.unwrap();
    assert_eq!(
        store
            .update(&e, b"record-e", b"record-e2", far)
            .await
            .unwrap(),
        Update::Written,
        "expected: written"
    );
    assert_eq!(
        store.load(&e).await.unwrap().as_deref(),
        Some(&b"record-e2"[..]),
        "expected: replaced"
    );
    // A concurrent request's write: the record is no longer the one loaded.
    assert_eq!(
        store.update(&e, b"record-e", b"stale", far).await.unwrap(),
        Update::Changed(b"record-e2".to_vec()),
        "another record: changed, with what is there"
    );
    assert_eq!(
        store.load(&e).await.unwrap().as_deref(),
        Some(&b"record-e2"[..]),
        "another record: not overwritten"
    );
    // A prefix of the record held, or the record with a byte more, is another record.
    for other in [&b"record-e"[..], b"record-e2x", b"", b"record-e3"] {
        assert!(
            matches!(
                store.update(&e, other, b"stale", far).await.unwrap(),
                Update::Changed(_)
            ),
            "{other:?} is not the record held"
        );
    }
    // The logout race: a delete, then a write of the record loaded before it.
    store.delete(&e).await.unwrap();
    assert_eq!(
        store
            .update(&e, b"record-e2", b"record-e3", far)
            .await
            .unwrap(),
        Update::Gone,
        "deleted: gone"
    );
    assert_eq!(store.load(&e).await.unwrap(), None, "deleted: not revived");
    assert_eq!(
        store.load(&b).await.unwrap().as_deref(),
        Some(&b"record-b"[..]),
        "others intact"
    );
    // Binary records compare byte for byte.
    store.save(&e, &binary, far).await.unwrap();
    let mut flipped = binary.clone();
    flipped[200] ^= 1;
    assert!(matches!(
        store.update(&e, &flipped, b"x", far).await.unwrap(),
        Update::Changed(current) if current == binary
    ));
    assert_eq!(
        store.update(&e, &binary, &flipped, far).await.unwrap(),
        Update::Written
    );
    // Replacing with a deadline already past leaves nothing.
    assert_eq!(
        store.update(&e, &flipped, b"expired", past).await.unwrap(),
        Update::Written
    );
    assert_eq!(
        store.load(&e).await.unwrap(),
        None,
        "replaced, already expired"
    );

    match expiry {
        Expiry::Skip => {}
        Expiry::Manual(clock) => {
            let c = SessionId::generate().unwrap();
            let d = SessionId::generate().unwrap();
            let in_10s = clock.now().saturating_add(Duration::from_secs(10));
            store.save(&c, b"short", in_10s).await.unwrap();
            store.save(&d, b"short", in_10s).await.unwrap();
            let in_20s = clock.now().saturating_add(Duration::from_secs(20));
            assert_eq!(
                store.update(&d, b"short", b"longer", in_20s).await.unwrap(),
                Update::Written
            );
            clock.advance(Duration::from_secs(9));
            assert!(store.load(&c).await.unwrap().is_some());
            clock.advance(Duration::from_secs(1));
            assert_eq!(
                store.load(&c).await.unwrap(),
                None,
                "expired at its deadline"
            );
            assert_eq!(
                store
                    .update(&c, b"short", b"revived", in_20s)
                    .await
                    .unwrap(),
                Update::Gone,
                "expired: gone"
            );
            assert_eq!(store.load(&c).await.unwrap(), None, "expired: not revived");
            assert_eq!(
                store.load(&d).await.unwrap().as_deref(),
                Some(&b"longer"[..]),
                "update moved the deadline"
            );
            clock.advance(Duration::from_secs(10));
            assert_eq!(
                store.load(&d).await.unwrap(),
                None,
                "expired at its new deadline"
            );
        }
        Expiry::Real => {
            let c = SessionId::generate().unwrap();
            let d = SessionId::generate().unwrap();
            let deadline = SystemClock.now().saturating_add(Duration::from_millis(200));
            store.save(&c, b"short", deadline).await.unwrap();
            store.save(&d, b"short", deadline).await.unwrap();
            let later = SystemClock.now().saturating_add(Duration::from_secs(60));
            assert_eq!(
                store.update(&d, b"short", b"longer", later).await.unwrap(),
                Update::Written
            );
            assert!(
                store.load(&c).await.unwrap().is_some(),
                "present before its deadline"
            );
            let left = deadline.saturating_since(SystemClock.now());
            tokio::time::sleep(left + Duration::from_millis(20)).await;
            assert_eq!(
                store.load(&c).await.unwrap(),
                None,
                "expired at its deadline"
            );
            assert_eq!(
                store.update(&c, b"short", b"revived", later).await.unwrap(),
                Update::Gone,
                "expired: gone"
            );
            assert_eq!(store.load(&c).await.unwrap(), None, "expired: not revived");
            assert_eq!(
                store.load(&d).await.unwrap().as_deref(),
                Some(&b"longer"[..]),
                "update moved the deadline"
            );
            store.delete(&d).await.unwrap();
        }
    }
}
