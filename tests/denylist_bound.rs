//! Nobody can inflate the denylist: an id whose token never reached a client is never
//! revoked, and a flood of anonymous "get a cookie, log it out" cycles leaves the denylist
//! within its bound, failing closed (every logged-out session stays refused). The HTTP
//! scenarios run on the Poem middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::sync::Arc;
use std::time::Duration;

use common::fixtures::{clock, keys};
use http::Jar;
use http::app::{Adapter, Routes, both, send};
use http::handlers::plain::{count, login_admin_subject, logout, user};
use sealed_session::denylist::{
    Check, DEFAULT_MAX_REVOKED_SESSIONS, Denylist, MemoryDenylist, Revocation, RevokedBy,
};
use sealed_session::{Clock, ManualClock, SealedSession, Secure, Session, SessionError, SessionId};

/// Stores a value and destroys the session in the same request: its token never left.
fn store_then_destroy(session: &Session) -> Result<(), SessionError> {
    session.insert("n", &1)?;
    session.destroy()?;
    Ok(())
}

/// Regenerates, then destroys: the regenerated id's token never left either.
fn regenerate_then_destroy(session: &Session) -> Result<(), SessionError> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.destroy()?;
    Ok(())
}

fn routes() -> Routes {
    Routes::new()
        .get("/count", count)
        .get("/me", user)
        .post("/login", login_admin_subject)
        .post("/logout", logout)
        .post("/store-then-destroy", store_then_destroy)
        .post("/regenerate-then-destroy", regenerate_then_destroy)
}

async fn an_id_whose_token_was_never_sent_is_not_revoked(on: Adapter) {
    let denylist = MemoryDenylist::new();
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .secure(Secure::Never)
            .denylist(Arc::new(denylist.clone())),
    );
    // A visitor with no cookie.
    let mut jar = Jar::default();
    send(&tc, &mut jar, true, "/store-then-destroy").await;
    assert_eq!(denylist.len(), 0, "a new session ended in its own request");
    // A visitor with a cookie: its session is revoked, the regenerated one is not.
    send(&tc, &mut jar, false, "/count").await;
    send(&tc, &mut jar, true, "/regenerate-then-destroy").await;
    assert_eq!(denylist.len(), 1, "only the id the client held");
}

/// 10,000 anonymous visitors each get a cookie and log it out. The denylist stays within its
/// bound, every replayed cookie is still refused, and a signed-in user's logout still
/// revokes at once.
async fn ten_thousand_anonymous_logouts_stay_within_the_bound(on: Adapter) {
    const BOUND: usize = 1_000;
    let clock = clock();
    let denylist = MemoryDenylist::builder()
        .clock(Arc::new(clock.clone()))
        .max_revoked_sessions(BOUND)
        .build();
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .secure(Secure::Never)
            .clock(clock.clone())
            .denylist(Arc::new(denylist.clone())),
    );
    // A signed-in user, before the flood.
    let mut alice = Jar::default();
    send(&tc, &mut alice, true, "/login").await;
    assert_eq!(send(&tc, &mut alice, false, "/me").await.1, "admin");

    let mut replays = Vec::new();
    let mut largest = 0;
    for i in 0..10_000u32 {
        let mut jar = Jar::default();
        assert_eq!(send(&tc, &mut jar, false, "/count").await.1, "1");
        if i % 1_000 == 0 {
            replays.push(jar.clone());
        }
        send(&tc, &mut jar, true, "/logout").await;
        largest = largest.max(denylist.len());
        if i % 100 == 0 {
            clock.advance(Duration::from_millis(1));
        }
    }
    assert!(largest <= BOUND, "{largest} entries, bound {BOUND}");
    let status = denylist.status();
    assert!(status.revoked_sessions <= BOUND);
    assert!(status.overflows >= 5, "{} overflows", status.overflows);
    // Failing closed: every logged-out session is still refused (a fresh one answers "1").
    for mut jar in replays {
        assert_eq!(send(&tc, &mut jar, false, "/count").await.1, "1");
    }
    // The signed-in user is untouched by the flood, and a logout still revokes at once.
    assert_eq!(send(&tc, &mut alice, false, "/me").await.1, "admin");
    let stolen = alice.clone();
    send(&tc, &mut alice, true, "/logout").await;
    let mut thief = stolen;
    assert_eq!(send(&tc, &mut thief, false, "/me").await.1, "<none>");
}

both!(
    an_id_whose_token_was_never_sent_is_not_revoked,
    ten_thousand_anonymous_logouts_stay_within_the_bound,
);

#[test]
fn the_default_bound_is_documented_and_applied() {
    assert_eq!(DEFAULT_MAX_REVOKED_SESSIONS, 100_000);
    let clock = ManualClock::new(sealed_session::Timestamp::from_millis(1_000_000));
    let denylist = MemoryDenylist::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    let now = clock.now();
    let until = now.saturating_add(Duration::from_secs(3600));
    for i in 0..(DEFAULT_MAX_REVOKED_SESSIONS as u128 + 10) {
        let id = SessionId::from_bytes(i.to_le_bytes());
        denylist.insert_session(&Revocation::new(id, until, now, None));
    }
    assert!(denylist.len() <= DEFAULT_MAX_REVOKED_SESSIONS);
    assert_eq!(denylist.status().overflows, 1);
}

/// When the ids held are all signed-in sessions', a further one falls back to revoking its
/// subject's sessions issued until it: the user is signed out of older sessions too, and
/// nothing is accepted that was revoked.
#[test]
fn a_full_denylist_of_signed_in_sessions_falls_back_to_the_subject() {
    let clock = ManualClock::new(sealed_session::Timestamp::from_millis(1_000_000));
    let denylist = MemoryDenylist::builder()
        .clock(Arc::new(clock.clone()))
        .max_revoked_sessions(2)
        .build();
    let t0 = clock.now();
    let until = t0.saturating_add(Duration::from_secs(3600));
    let id = |n: u8| SessionId::from_bytes([n; 16]);
    let revoke = |n: u8, subject: &str, issued| {
        denylist.insert_session(&Revocation::new(
            id(n),
            until,
            issued,
            Some(subject.to_owned()),
        ));
    };
    revoke(1, "alice", t0);
    revoke(2, "bob", t0);
    assert_eq!(denylist.status().overflows, 0);
    let issued = t0.saturating_add(Duration::from_millis(5));
    clock.advance(Duration::from_millis(10));
    revoke(3, "carol", issued);
    assert_eq!(denylist.len(), 2, "no entry past the bound");
    assert_eq!(denylist.subjects_len(), 1);
    assert_eq!(denylist.status().overflows, 1);
    // carol's revoked session, and her older ones, are refused; a later one is not.
    assert_eq!(
        denylist.check(&id(3), Some("carol"), issued),
        Check::Revoked(RevokedBy::Subject)
    );
    assert!(denylist.check(&id(9), Some("carol"), t0).is_revoked());
    let later = clock.now();
    assert!(denylist.check(&id(9), Some("carol"), later).is_allowed());
    // The earlier entries hold.
    assert!(denylist.check(&id(1), Some("alice"), t0).is_revoked());
}

/// A full denylist with anonymous entries drops them for the anonymous cut-off, then has
/// room for a signed-in session's entry.
#[test]
fn a_cutoff_makes_room_for_signed_in_sessions() {
    let clock = ManualClock::new(sealed_session::Timestamp::from_millis(1_000_000));
    let denylist = MemoryDenylist::builder()
        .clock(Arc::new(clock.clone()))
        .max_revoked_sessions(3)
        .build();
    let t0 = clock.now();
    let until = t0.saturating_add(Duration::from_secs(3600));
    for n in 1..=3u8 {
        let r = Revocation::new(SessionId::from_bytes([n; 16]), until, t0, None);
        denylist.insert_session(&r);
    }
    clock.advance(Duration::from_millis(10));
    let alice = SessionId::from_bytes([7; 16]);
    denylist.insert_session(&Revocation::new(alice, until, t0, Some("alice".into())));
    assert_eq!(
        denylist.len(),
        1,
        "the anonymous entries went for the cut-off"
    );
    assert!(denylist.check(&alice, Some("alice"), t0).is_revoked());
    // Every session without a subject issued until now is refused; later ones are not.
    let other = SessionId::from_bytes([8; 16]);
    assert_eq!(
        denylist.check(&other, None, clock.now()),
        Check::Revoked(RevokedBy::Cutoff)
    );
    let later = clock.now().saturating_add(Duration::from_millis(1));
    assert!(denylist.check(&other, None, later).is_allowed());
    // A session with a subject is not touched by the cut-off.
    assert!(denylist.check(&other, Some("bob"), t0).is_allowed());
}
