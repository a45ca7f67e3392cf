//! Store-backed sessions (the express-session design): the `Store` conformance suite, run
//! for every store, and the middleware's behaviour in store mode (on the Poem middleware and
//! on the tower layer: see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
    pub mod lost_updates;
    pub mod store_conformance;
}
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{T0, clock, ring};
use common::store_conformance::{Expiry, conformance};
use http::app::{Adapter, App, Client, RespExt, Routes, both};
use http::handlers::plain::{count, login_admin, logout, session_id, user};
use sealed_session::codec::SessionIdCodec;
use sealed_session::store::{BoxFuture, MemoryStore, Store, StoreError, Update};
use sealed_session::{
    Keyring, ManualClock, OpenError, SealedSession, Session, SessionError, SessionId, Timestamp,
};

const NAME: &str = "__Host-sid";

#[tokio::test]
async fn memory_store_conformance() {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    conformance(&store, Expiry::Manual(&clock)).await;
}

/// A store that implements only the three required methods, so that `update` is the trait's
/// default (load, compare, then save).
struct Minimal(MemoryStore);
impl Store for Minimal {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.0.load(id)
    }
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.save(id, record, expires_at)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.delete(id)
    }
}

#[tokio::test]
async fn the_default_update_passes_the_conformance_suite() {
    let clock = clock();
    let store = Minimal(MemoryStore::with_clock(clock.clone()));
    conformance(&store, Expiry::Manual(&clock)).await;
}

#[tokio::test]
async fn memory_store_sweeps_expired_records() {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    for _ in 0..100 {
        let id = SessionId::generate().unwrap();
        store
            .save(&id, b"x", T0.saturating_add(Duration::from_secs(1)))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 100);
    clock.advance(Duration::from_secs(1));
    store.sweep();
    assert!(store.is_empty(), "memory is bounded by live sessions");
}

#[test]
fn signed_ids_verify_rotate_and_refuse_forgeries() {
    let old = SessionIdCodec::new(ring("k1", 1));
    let id = SessionId::generate().unwrap();
    let token = old.sign(&id, NAME.as_bytes());
    assert_eq!(old.verify(&token, NAME.as_bytes()), Ok((id, false)));
    assert_eq!(old.verify(&token, b"other"), Err(OpenError::BadSeal));
    // Rotation: a ring whose primary is new still verifies the old key's ids, asking to re-sign.
    let k1 = ring("k1", 1).keys().next().unwrap().clone();
    let k2 = ring("k2", 2).keys().next().unwrap().clone();
    let rotated = SessionIdCodec::new(Keyring::new([k2.clone(), k1]).unwrap());
    assert_eq!(rotated.verify(&token, NAME.as_bytes()), Ok((id, true)));
    let only_new = SessionIdCodec::new(Keyring::new([k2]).unwrap());
    assert!(matches!(
        only_new.verify(&token, NAME.as_bytes()),
        Err(OpenError::UnknownKeyId(_))
    ));
    // Any single-character change is refused.
    for i in 0..token.len() {
        let mut t = token.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        if t != token {
            assert!(old.verify(&t, NAME.as_bytes()).is_err(), "position {i}");
        }
    }
    assert!(old.verify("", NAME.as_bytes()).is_err());
    assert!(old.verify(&"A".repeat(5000), NAME.as_bytes()).is_err());
}

async fn save_then_reload(session: Session) -> Result<String, SessionError> {
    session.insert("saved", "yes")?;
    session.save().await?;
    session.insert("unsaved", "yes")?;
    session.reload().await?;
    Ok(format!(
        "{:?} {:?}",
        session.get::<String>("saved")?,
        session.get::<String>("unsaved")?
    ))
}
async fn count_and_save(session: Session) -> Result<(), SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", &n)?;
    session.save().await?;
    Ok(())
}
async fn destroy_then_save(session: Session) -> Result<(), SessionError> {
    session.destroy()?;
    session.save().await?;
    Ok(())
}

fn app(on: Adapter, store: impl Store, keys: Keyring, clock: &ManualClock) -> App {
    let routes = Routes::new()
        .post("/login", login_admin)
        .get("/user", user)
        .post("/count", count)
        .post("/logout", logout)
        .post("/save-reload", save_then_reload)
        .post("/count-and-save", count_and_save)
        .post("/destroy-save", destroy_then_save)
        .get("/id", session_id);
    on.app(
        &routes,
        SealedSession::server_store(store, keys)
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(600))),
    )
}

async fn store_mode_login_counts_and_logout_deletes_the_record(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    let (_, set) = c.send(false, "/user").await;
    assert!(
        set.is_empty() && store.is_empty(),
        "saveUninitialized=false: nothing stored"
    );
    let (_, set) = c.send(true, "/login").await;
    assert_eq!(set.len(), 1);
    assert!(
        set[0].value.len() < 80,
        "the cookie holds only a signed id: {}",
        set[0].value
    );
    assert_eq!(store.len(), 1);
    assert_eq!(c.text(false, "/user").await, "admin");
    // Changing the data writes the store but does not re-send the unchanged cookie.
    let (resp, set) = c.send(true, "/count").await;
    resp.assert_status_is_ok();
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(c.text(true, "/count").await, "2");
    let (_, set) = c.send(true, "/logout").await;
    assert!(set[0].is_removal());
    assert!(store.is_empty(), "destroy deletes the record");
}

async fn regenerate_deletes_the_old_record_and_unknown_ids_are_never_adopted(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let keys = ring("k1", 1);
    let mut c = Client::new(app(on, store.clone(), keys.clone(), &clock));
    c.send(true, "/count").await;
    let first = c.text(false, "/id").await;
    c.send(true, "/login").await;
    assert_eq!(store.len(), 1, "the pre-login record is gone");
    assert_ne!(c.text(false, "/id").await, first);

    // An attacker plants a validly signed id that the store does not hold (for example one
    // from before a logout): the server starts a session with a fresh id, never that one.
    let planted = SessionId::generate().unwrap();
    let mut v = Client::new(app(on, store.clone(), keys.clone(), &clock));
    v.jar.set(
        NAME,
        &SessionIdCodec::new(keys).sign(&planted, NAME.as_bytes()),
    );
    let (_, set) = v.send(true, "/count").await;
    assert_eq!(set.len(), 1, "{set:?}");
    let now_id = v.text(false, "/id").await;
    assert_ne!(now_id, planted.to_string(), "no fixation");
}

async fn store_mode_save_reload_and_expiry(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    c.send(true, "/login").await;
    assert_eq!(
        c.text(true, "/save-reload").await,
        "Some(\"yes\") None",
        "reload drops what was not saved"
    );
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        c.text(false, "/user").await,
        "<none>",
        "idle timeout enforced"
    );
}

async fn two_instances_share_sessions_through_one_store(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut a = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    a.send(true, "/login").await;
    let mut b = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    b.jar = a.jar.clone();
    assert_eq!(b.text(false, "/user").await, "admin");
    // With a separate store, the second instance knows nothing of it.
    let mut lone = Client::new(app(
        on,
        MemoryStore::with_clock(clock.clone()),
        ring("k1", 1),
        &clock,
    ));
    lone.jar = a.jar.clone();
    let (resp, set) = lone.send(false, "/user").await;
    assert_eq!(resp.into_body(), "<none>");
    assert!(set[0].is_removal(), "the unknown id's cookie is cleared");
}

async fn a_stale_signing_key_re_signs_the_cookie(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut a = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    a.send(true, "/login").await;
    let k1 = ring("k1", 1).keys().next().unwrap().clone();
    let k2 = ring("k2", 2).keys().next().unwrap().clone();
    let mut b = Client::new(app(
        on,
        store.clone(),
        Keyring::new([k2, k1]).unwrap(),
        &clock,
    ));
    b.jar = a.jar.clone();
    let (resp, set) = b.send(false, "/user").await;
    resp.assert_status_is_ok();
    assert_eq!(set.len(), 1, "re-signed under the primary key");
    assert_ne!(set[0].value, a.jar.get(NAME).unwrap());
}

async fn a_failing_store_is_a_503_not_a_new_session(on: Adapter) {
    struct Down;
    impl Store for Down {
        fn load<'a>(
            &'a self,
            _: &'a SessionId,
        ) -> sealed_session::store::BoxFuture<
            'a,
            Result<Option<Vec<u8>>, sealed_session::store::StoreError>,
        > {
            Box::pin(async {
                Err(sealed_session::store::StoreError::Backend {
                    store: "down",
                    source: "connection refused".into(),
                })
            })
        }
        fn save<'a>(
            &'a self,
            _: &'a SessionId,
            _: &'a [u8],
            _: Timestamp,
        ) -> sealed_session::store::BoxFuture<'a, Result<(), sealed_session::store::StoreError>>
        {
            Box::pin(async {
                Err(sealed_session::store::StoreError::Backend {
                    store: "down",
                    source: "connection refused".into(),
                })
            })
        }
        fn delete<'a>(
            &'a self,
            _: &'a SessionId,
        ) -> sealed_session::store::BoxFuture<'a, Result<(), sealed_session::store::StoreError>>
        {
            Box::pin(async { Ok(()) })
        }
    }
    let keys = ring("k1", 1);
    let tc = on.app(
        &Routes::new().post("/count", count),
        SealedSession::server_store(Down, keys.clone()),
    );
    let resp = tc.post("/count").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "no cookie for an unsaved session"
    );
    let signed = SessionIdCodec::new(keys).sign(&SessionId::generate().unwrap(), NAME.as_bytes());
    let resp = tc
        .post("/count")
        .header("cookie", format!("{NAME}={signed}"))
        .send()
        .await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
}

/// A `MemoryStore` that counts the writes it is asked for.
#[derive(Clone)]
struct Counting {
    inner: MemoryStore,
    saves: Arc<AtomicUsize>,
}
impl Counting {
    fn new(clock: &ManualClock) -> Self {
        Counting {
            inner: MemoryStore::with_clock(clock.clone()),
            saves: Arc::default(),
        }
    }
    fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }
}
impl Store for Counting {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.inner.load(id)
    }
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(id, record, expires_at)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(id)
    }
}

async fn a_session_saved_mid_request_is_not_written_again_unless_it_changes(on: Adapter) {
    let clock = clock();
    let store = Counting::new(&clock);
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    c.send(true, "/login").await;
    let before = store.saves();
    let (resp, set) = c.send(true, "/count-and-save").await;
    resp.assert_status_is_ok();
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(
        store.saves() - before,
        1,
        "save() wrote it; the end of the request has nothing new to write"
    );
    // Changed again after the save: written again at the end.
    let before = store.saves();
    assert_eq!(c.text(true, "/save-reload").await, "Some(\"yes\") None");
    assert_eq!(store.saves() - before, 1, "reload left it as saved");
    assert_eq!(c.text(true, "/count").await, "2");
}

async fn a_new_session_saved_then_reloaded_keeps_its_cookie(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    let (resp, set) = c.send(true, "/save-reload").await;
    resp.assert_status_is_ok();
    assert_eq!(store.len(), 1, "save() stored it");
    assert_eq!(set.len(), 1, "so the browser must get its cookie: {set:?}");
    assert_eq!(c.text(true, "/save-reload").await, "Some(\"yes\") None");
    assert_eq!(store.len(), 1, "the same session, not a new one");
}

async fn save_after_destroy_stores_nothing(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    c.send(true, "/login").await;
    assert_eq!(store.len(), 1);
    let (resp, set) = c.send(true, "/destroy-save").await;
    resp.assert_status_is_ok();
    assert!(set[0].is_removal(), "{set:?}");
    assert!(store.is_empty(), "no record for the destroyed session");
}

/// The open cache keeps the ids that signed cookies verified to; the record is still loaded
/// from the store on every request, and only the exact bytes are answered from the cache.
async fn a_verified_id_is_kept_for_its_exact_cookie_and_the_record_still_decides(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    c.send(true, "/login").await;
    let cookie = c.jar.get(NAME).unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(c.text(false, "/user").await, "admin");
    }
    // Every one-character change of the cached cookie is refused: a fresh session.
    for i in 0..cookie.len() {
        let mut forged = cookie.clone().into_bytes();
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = format!("{NAME}={}", String::from_utf8(forged).unwrap());
        let resp = c.send_with(false, "/user", Some(forged)).await;
        assert_eq!(resp.into_body(), "<none>", "character {i} changed");
    }
    // Under the other cookie name (no `__Host-` prefix) it is another purpose: refused.
    let resp = c
        .send_with(false, "/user", Some(format!("sid={cookie}")))
        .await;
    assert_eq!(resp.into_body(), "<none>");
    // Once the record is gone, the cookie whose id is still kept opens nothing.
    let (_, set) = c.send(true, "/logout").await;
    assert!(set[0].is_removal());
    let resp = c
        .send_with(false, "/user", Some(format!("{NAME}={cookie}")))
        .await;
    assert_eq!(resp.into_body(), "<none>");
}

async fn concurrent_requests_lose_no_update_in_the_memory_store(on: Adapter) {
    common::lost_updates::no_lost_updates(on, &MemoryStore::new(), 5).await;
}

/// A record whose deadline is past what the policy allows now (its `max_age` was lowered
/// since it was written) is capped when opened. A concurrent write that changes only the
/// data must not take that cap for a change of its own and undo another request's shorter
/// `set_max_age`: the merge's base is the session as it was opened, capped.
async fn a_capped_deadline_is_no_change_of_the_request(on: Adapter) {
    use tokio::sync::Barrier;
    let store = MemoryStore::new();
    let long = on.app(
        &Routes::new().post("/login", login_admin),
        SealedSession::server_store(store.clone(), ring("k", 1))
            .max_age(Duration::from_secs(10 * 3600)),
    );
    for round in 0..8 {
        let barrier = Arc::new(Barrier::new(2));
        let (b1, b2) = (barrier.clone(), barrier.clone());
        let routes = Routes::new()
            .post("/shorten", move |r: http::app::Req| {
                let b = b1.clone();
                async move {
                    b.wait().await;
                    r.session.set_max_age(Duration::from_secs(600));
                    Ok::<_, SessionError>("ok")
                }
            })
            .post("/set", move |r: http::app::Req| {
                let b = b2.clone();
                async move {
                    b.wait().await;
                    r.session.insert("k", "v")?;
                    Ok::<_, SessionError>("ok")
                }
            })
            .get("/expires", |s: &Session| {
                Ok::<_, SessionError>(s.expires_at().as_millis().to_string())
            });
        let short = on.app(
            &routes,
            SealedSession::server_store(store.clone(), ring("k", 1))
                .max_age(Duration::from_secs(3600)),
        );
        let mut c = Client::new(long.clone());
        c.send(true, "/login").await;
        let cookie = c.jar.header();
        let d = Client::new(short.clone());
        // The last to reach the barrier goes on first, in the same poll: so the second of the
        // join writes first. Both orders, in turn.
        let (shortened, set) = if round % 2 == 0 {
            let (set, shortened) = tokio::join!(
                d.send_with(true, "/set", cookie.clone()),
                d.send_with(true, "/shorten", cookie.clone()),
            );
            (shortened, set)
        } else {
            tokio::join!(
                d.send_with(true, "/shorten", cookie.clone()),
                d.send_with(true, "/set", cookie.clone()),
            )
        };
        shortened.assert_status_is_ok();
        set.assert_status_is_ok();
        let at: u64 = d
            .send_with(false, "/expires", cookie.clone())
            .await
            .into_body()
            .parse()
            .unwrap();
        let now = sealed_session::Clock::now(&sealed_session::SystemClock).as_millis();
        assert!(
            at <= now + 600 * 1000,
            "round {round}: the shorter max_age was undone: {}s left",
            (at - now) / 1000
        );
    }
}

/// A store in which another writer always got there first: each `update` finds the record
/// changed (to what it holds) and writes nothing.
#[derive(Clone)]
struct AlwaysChanged(MemoryStore, Arc<AtomicUsize>);
impl Store for AlwaysChanged {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.0.load(id)
    }
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.save(id, record, expires_at)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.delete(id)
    }
    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        _: &'a [u8],
        _: &'a [u8],
        _: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Ok(match self.0.load(id).await? {
                Some(current) => Update::Changed(current),
                None => Update::Gone,
            })
        })
    }
}

async fn a_write_that_keeps_losing_the_race_is_a_bounded_503(on: Adapter) {
    let clock = clock();
    let store = AlwaysChanged(MemoryStore::with_clock(clock.clone()), Arc::default());
    let mut c = Client::new(app(on, store.clone(), ring("k1", 1), &clock));
    assert_eq!(c.text_ok(true, "/count").await, "1");
    let id = c.text_ok(false, "/id").await;
    let (resp, set) = c.send(true, "/count").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(
        store.1.load(Ordering::SeqCst),
        8,
        "tried a bounded number of times"
    );
    // The session is still there, under its id: a lost race is not a logout.
    assert_eq!(c.text_ok(false, "/id").await, id);
}

/// A store whose compare-and-set answers that the record changed to bytes that are no
/// session's (corrupt, or another store's data under the key).
#[derive(Clone)]
struct ChangedToGarbage(MemoryStore);
impl Store for ChangedToGarbage {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        self.0.load(id)
    }
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.save(id, record, expires_at)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.0.delete(id)
    }
    fn update<'a>(
        &'a self,
        _: &'a SessionId,
        _: &'a [u8],
        _: &'a [u8],
        _: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(async { Ok(Update::Changed(b"\x01not a session record".to_vec())) })
    }
}

async fn a_store_record_that_is_no_session_ends_it_without_a_500(on: Adapter) {
    let clock = clock();
    let store = ChangedToGarbage(MemoryStore::with_clock(clock.clone()));
    let mut c = Client::new(app(on, store, ring("k1", 1), &clock));
    assert_eq!(c.text_ok(true, "/count").await, "1");
    // The write finds garbage where the session was: the session is over, as if another
    // request had ended it; the handler's answer goes out, with no cookie for the dead id.
    let (resp, set) = c.send(true, "/count").await;
    resp.assert_status_is_ok();
    assert!(set.is_empty(), "{set:?}");
}

both!(
    a_capped_deadline_is_no_change_of_the_request,
    a_store_record_that_is_no_session_ends_it_without_a_500,
    concurrent_requests_lose_no_update_in_the_memory_store,
    a_write_that_keeps_losing_the_race_is_a_bounded_503,
    store_mode_login_counts_and_logout_deletes_the_record,
    regenerate_deletes_the_old_record_and_unknown_ids_are_never_adopted,
    store_mode_save_reload_and_expiry,
    two_instances_share_sessions_through_one_store,
    a_stale_signing_key_re_signs_the_cookie,
    a_failing_store_is_a_503_not_a_new_session,
    a_session_saved_mid_request_is_not_written_again_unless_it_changes,
    a_new_session_saved_then_reloaded_keeps_its_cookie,
    save_after_destroy_stores_nothing,
    a_verified_id_is_kept_for_its_exact_cookie_and_the_record_still_decides,
);
