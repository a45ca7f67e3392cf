//! What every device registry must do, run against each (memory, Redis, SQL).
//!
//! Use from a test file with `mod common { pub mod registry_conformance; }`.

#![allow(dead_code)]

use std::time::Duration;

use sealed_session::devices::{DeviceRecord, Registry};
use sealed_session::{SessionId, Timestamp};

/// The time the suite starts at.
const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0.saturating_add(Duration::from_secs(secs))
}

fn id(n: u8, salt: u8) -> SessionId {
    let mut b = [salt; 16];
    b[0] = n;
    SessionId::from_bytes(b)
}

/// An entry of `subject` for session `n`, renewed at `renewed` s, expiring an hour later.
pub fn entry(subject: &str, n: u8, salt: u8, renewed: u64) -> DeviceRecord {
    DeviceRecord {
        id: id(n, salt),
        subject: subject.to_owned(),
        started: T0,
        renewed: at(renewed),
        expires_at: at(renewed + 3600),
        label: format!("Device {n}"),
        ip_prefix: n.is_multiple_of(2).then(|| "192.0.2.0/24".to_owned()),
    }
}

/// The suite. `bound` is the registry's `max_per_subject` (at least 3); `salt` keeps runs
/// against a shared backend apart; subjects are prefixed with it too.
pub async fn conformance(registry: &dyn Registry, bound: usize, salt: u8) {
    assert!(bound >= 3);
    let alice = format!("alice-{salt}");
    let bob = format!("bob-{salt}");
    let now = at(10);

    // Nothing yet.
    assert!(registry.list(&alice, now).await.unwrap().is_empty());

    // Recorded, listed most recently renewed first, whole.
    let a1 = entry(&alice, 1, salt, 1);
    let a2 = entry(&alice, 2, salt, 2);
    registry.record(&a1).await.unwrap();
    registry.record(&a2).await.unwrap();
    let list = registry.list(&alice, now).await.unwrap();
    assert_eq!(list, vec![a2.clone(), a1.clone()]);

    // Subjects are apart.
    let b1 = entry(&bob, 1, salt, 3);
    registry.record(&b1).await.unwrap();
    assert_eq!(registry.list(&bob, now).await.unwrap(), vec![b1.clone()]);
    assert_eq!(registry.list(&alice, now).await.unwrap().len(), 2);

    // The same id again replaces its entry (a renewal).
    let mut a1_renewed = entry(&alice, 1, salt, 5);
    a1_renewed.label = "Renewed".to_owned();
    registry.record(&a1_renewed).await.unwrap();
    let list = registry.list(&alice, now).await.unwrap();
    assert_eq!(list, vec![a1_renewed.clone(), a2.clone()]);

    // Removal: only that entry of that subject; removing what is not there is fine.
    registry.remove(&bob, &a2.id).await.unwrap();
    assert_eq!(registry.list(&alice, now).await.unwrap().len(), 2);
    registry.remove(&alice, &a2.id).await.unwrap();
    registry.remove(&alice, &a2.id).await.unwrap();
    assert_eq!(
        registry.list(&alice, now).await.unwrap(),
        vec![a1_renewed.clone()]
    );

    // Expired entries are not listed.
    let late = a1_renewed.expires_at;
    assert!(registry.list(&alice, late).await.unwrap().is_empty());
    assert_eq!(registry.list(&bob, now).await.unwrap(), vec![b1]);

    // The bound: the most recently renewed `bound` entries stay.
    let carol = format!("carol-{salt}");
    let n = u8::try_from(bound + 3).unwrap();
    for i in 0..n {
        registry
            .record(&entry(&carol, i, salt, 100 + u64::from(i)))
            .await
            .unwrap();
    }
    let list = registry.list(&carol, at(200)).await.unwrap();
    assert_eq!(list.len(), bound, "at most {bound} entries per subject");
    let kept: Vec<u8> = list.iter().map(|r| r.id.as_bytes()[0]).collect();
    let want: Vec<u8> = (3..n).rev().collect();
    assert_eq!(kept, want, "the most recently renewed are kept");

    // An entry recorded after others expired drops them (the registry does not keep
    // what no listing would show): listed as of a time when both were live, only the
    // fresh one is there.
    let dave = format!("dave-{salt}");
    registry.record(&entry(&dave, 1, salt, 0)).await.unwrap();
    let fresh = entry(&dave, 2, salt, 4000);
    registry.record(&fresh).await.unwrap();
    assert_eq!(
        registry.list(&dave, at(4000)).await.unwrap(),
        vec![fresh.clone()]
    );
    assert_eq!(registry.list(&dave, at(0)).await.unwrap(), vec![fresh]);
}
