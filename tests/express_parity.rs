//! Store-backed sessions (`SealedSession::server_store`) against express-session, option by option
//! and method by method: each test pins down one row of `docs/EXPRESS.md`, where we behave
//! as express-session does and where we differ (and why). On `MemoryStore`, through a probe
//! that counts what the middleware asks of the store; the Redis store runs the same
//! middleware code and is tested in `tests/store_redis.rs`. Every scenario runs on the Poem
//! middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{T0, clock, ring};
use http::app::{Adapter, App, Client, Resp, RespExt, Routes, both};
use http::handlers::plain::{
    count, login_admin, logout, max_age, noop, session_id, set_key, touch, user,
};
use sealed_session::codec::SessionIdCodec;
use sealed_session::store::{BoxFuture, MemoryStore, Store, StoreError, Update};
use sealed_session::{
    Keyring, ManualClock, SealedSession, Session, SessionError, SessionId, Timestamp,
};
use tokio::sync::{Barrier, Notify};

const NAME: &str = "__Host-sid";
const FAR: Timestamp = Timestamp::from_millis(u64::MAX / 2);

// ---- A store that counts, can fail, and can forget about expiry ----

#[derive(Clone, Default)]
struct Probe {
    inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    saves: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
    /// The `expires_at` of the last save.
    last_expiry: Arc<Mutex<Option<Timestamp>>>,
    fail_load: Arc<AtomicBool>,
    fail_save: Arc<AtomicBool>,
    fail_delete: Arc<AtomicBool>,
    /// Keep every record for ever, as a store without TTLs might.
    ignore_expiry: bool,
}

impl Probe {
    fn new(clock: &ManualClock) -> Probe {
        Probe {
            inner: MemoryStore::with_clock(clock.clone()),
            ..Probe::default()
        }
    }
    fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }
    fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn last_expiry(&self) -> Timestamp {
        self.last_expiry.lock().unwrap().unwrap()
    }
    async fn holds(&self, id: &str) -> bool {
        let id = SessionId::parse(id).unwrap();
        self.inner.load(&id).await.unwrap().is_some()
    }
}

fn down() -> StoreError {
    StoreError::Backend {
        store: "probe",
        source: "connection refused".into(),
    }
}

impl Store for Probe {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        if self.fail_load.load(Ordering::SeqCst) {
            return Box::pin(async { Err(down()) });
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id)
    }
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.fail_save.load(Ordering::SeqCst) {
            return Box::pin(async { Err(down()) });
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.last_expiry.lock().unwrap() = Some(expires_at);
        let keep_until = if self.ignore_expiry { FAR } else { expires_at };
        self.inner.save(id, record, keep_until)
    }
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        if self.fail_delete.load(Ordering::SeqCst) {
            return Box::pin(async { Err(down()) });
        }
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(id)
    }
    /// Counted as a save; `MemoryStore`'s atomic version underneath.
    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        expected: &'a [u8],
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        if self.fail_save.load(Ordering::SeqCst) {
            return Box::pin(async { Err(down()) });
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.last_expiry.lock().unwrap() = Some(expires_at);
        let keep_until = if self.ignore_expiry { FAR } else { expires_at };
        self.inner.update(id, expected, record, keep_until)
    }
}

// ---- The application ----

fn regenerate_only(session: &Session) -> Result<(), SessionError> {
    session.regenerate()?;
    Ok(())
}
fn destroy_then_insert(session: &Session) -> Result<(), SessionError> {
    session.destroy()?;
    session.insert("after", "destroy")?;
    Ok(())
}
async fn save_mid_request(session: Session, store: Probe) -> Result<String, SessionError> {
    session.insert("saved", "yes")?;
    session.save().await?;
    // Still inside the handler: is it in the store already?
    Ok(store.holds(&session.id().to_string()).await.to_string())
}
async fn reload(session: Session) -> Result<String, SessionError> {
    session.insert("user", "mallory")?;
    session.reload().await?;
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "<none>".to_owned()))
}
/// The store goes down during the request, then the handler reloads.
async fn reload_in_outage(session: Session, store: Probe) -> Result<String, SessionError> {
    store.fail_load.store(true, Ordering::SeqCst);
    let res = session.reload().await;
    store.fail_load.store(false, Ordering::SeqCst);
    res?;
    Ok("reloaded".to_owned())
}
/// Reads the counter, waits until a second request has read it too, then increments it.
async fn count_together(session: Session, barrier: Arc<Barrier>) -> Result<(), SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    barrier.wait().await;
    session.insert("n", &n)?;
    Ok(())
}
/// A read-only request that says when it has its session, then waits to be let go.
async fn slow_read(session: Session, gates: Arc<(Notify, Notify)>) -> Result<(), SessionError> {
    session.get::<u64>("n")?;
    gates.0.notify_one();
    gates.1.notified().await;
    Ok(())
}

/// Counts, but waits between loading the session and changing it: it says when it has its
/// session, then waits to be let go.
async fn slow_count(
    session: Session,
    gates: Arc<(Notify, Notify)>,
) -> Result<String, SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    gates.0.notify_one();
    gates.1.notified().await;
    session.insert("n", &n)?;
    Ok(n.to_string())
}
/// `slow_count`, then `save()` before answering.
async fn slow_count_save(
    session: Session,
    gates: Arc<(Notify, Notify)>,
) -> Result<String, SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    gates.0.notify_one();
    gates.1.notified().await;
    session.insert("n", &n)?;
    session.save().await?;
    Ok(n.to_string())
}

/// A pair of gates for the slow handlers.
fn gates() -> Arc<(Notify, Notify)> {
    Arc::new((Notify::new(), Notify::new()))
}

/// The routes, their handlers given `store` (the probe they look at, which need not be the
/// session's), `gates` and a barrier of their own.
fn routes(store: &Probe, gates: &Arc<(Notify, Notify)>) -> Routes {
    let barrier = Arc::new(Barrier::new(2));
    let (s1, s2) = (store.clone(), store.clone());
    let (g1, g2, g3) = (gates.clone(), gates.clone(), gates.clone());
    Routes::new()
        .get("/noop", noop)
        .get("/user", user)
        .post("/login", login_admin)
        .post("/set/:k/:v", set_key)
        .post("/count", count)
        .post("/regenerate-only", regenerate_only)
        .post("/logout", logout)
        .post("/destroy-insert", destroy_then_insert)
        .post("/touch", touch)
        .post("/save", move |s: Session| save_mid_request(s, s1.clone()))
        .post("/reload", reload)
        .post("/reload-in-outage", move |s: Session| {
            reload_in_outage(s, s2.clone())
        })
        .get("/id", session_id)
        .post("/max-age/:secs", max_age)
        .post("/count-together", move |s: Session| {
            count_together(s, barrier.clone())
        })
        .get("/slow-read", move |s: Session| slow_read(s, g1.clone()))
        .post("/slow-count", move |s: Session| slow_count(s, g2.clone()))
        .post("/slow-count-save", move |s: Session| {
            slow_count_save(s, g3.clone())
        })
}

/// The store-backed middleware on `store`, on `clock`, 10-minute idle timeout (renewal after
/// 150 s), configured further by `f`.
fn app(
    on: Adapter,
    store: &Probe,
    clock: &ManualClock,
    f: impl FnOnce(SealedSession) -> SealedSession,
) -> App {
    let mw = SealedSession::server_store(store.clone(), ring("k1", 1))
        .clock(clock.clone())
        .idle_timeout(Some(Duration::from_secs(600)));
    on.app(&routes(store, &gates()), f(mw))
}

// ---- saveUninitialized ----

async fn save_uninitialized_false_neither_stores_nor_sets_a_cookie_for_an_untouched_session(
    on: Adapter,
) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    for (post_, uri) in [(false, "/noop"), (false, "/user"), (true, "/touch")] {
        let (resp, set) = c.send(post_, uri).await;
        resp.assert_status_is_ok();
        assert!(set.is_empty(), "{uri}: {set:?}");
    }
    assert_eq!(store.saves(), 0, "nothing written");
    assert_eq!(store.len(), 0);
    // The first change stores the session and sets the cookie.
    let (_, set) = c.send(true, "/set/a/1").await;
    assert_eq!(set.len(), 1);
    assert_eq!((store.saves(), store.len()), (1, 1));
}

async fn save_uninitialized_true_stores_every_new_session_and_sets_its_cookie(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m.save_uninitialized(true)));
    let (_, set) = c.send(false, "/noop").await;
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!((store.saves(), store.len()), (1, 1));
    let id = c.text_ok(false, "/id").await;
    assert!(store.holds(&id).await, "the cookie's id is the stored one");
    // From then on it is an ordinary session: unchanged, nothing written or sent.
    let (_, set) = c.send(false, "/noop").await;
    assert!(set.is_empty());
    assert_eq!(store.saves(), 1);
    // Every visitor without a cookie costs a record.
    for _ in 0..3 {
        Client::new(app(on, &store, &clock, |m| m.save_uninitialized(true)))
            .send(false, "/noop")
            .await;
    }
    assert_eq!(store.len(), 4);
}

// ---- resave: none; writes only on change or renewal ----

async fn an_unchanged_session_is_written_only_when_renewal_is_due(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let written = store.saves();
    assert_eq!(
        store.last_expiry(),
        T0.saturating_add(Duration::from_secs(600)),
        "the store keeps it until the idle deadline"
    );
    // Reads within the renewal interval (a quarter of the idle timeout): no write, no cookie.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(49));
        let (resp, set) = c.send(false, "/user").await;
        resp.assert_status_is_ok();
        assert!(set.is_empty(), "{set:?}");
    }
    assert_eq!(store.saves(), written, "resave=false: nothing written");
    // Past 150 s since the last write: one write moves the idle deadline; the
    // browser-session cookie is not re-sent (its id did not change).
    clock.advance(Duration::from_secs(4));
    let (_, set) = c.send(false, "/user").await;
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(store.saves(), written + 1);
    let renewed_at = T0.saturating_add(Duration::from_secs(151));
    assert_eq!(
        store.last_expiry(),
        renewed_at.saturating_add(Duration::from_secs(600))
    );
    let (_, _) = c.send(false, "/user").await;
    assert_eq!(store.saves(), written + 1, "once per renewal interval");
    // 599 s after the renewal the session is alive; from 600 s on it has expired.
    clock.set(renewed_at.saturating_add(Duration::from_secs(599)));
    assert_eq!(c.text_ok(false, "/user").await, "admin");
    clock.advance(Duration::from_secs(600));
    assert_eq!(c.text_ok(false, "/user").await, "<none>");
}

// ---- rolling ----

async fn rolling_re_sets_the_cookie_and_rewrites_the_record_on_every_response(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m.rolling(true)));
    let (_, set) = c.send(false, "/noop").await;
    assert!(set.is_empty(), "an untouched new session: still nothing");
    c.send(true, "/login").await;
    let cookie = c.jar.get(NAME).unwrap().to_owned();
    let written = store.saves();
    for i in 1..=3 {
        clock.advance(Duration::from_secs(1));
        let (_, set) = c.send(false, "/user").await;
        assert_eq!(set.len(), 1, "rolling: a Set-Cookie on every response");
        assert_eq!(set[0].value, cookie, "the same signed id");
        assert_eq!(store.saves(), written + i, "and a store write");
    }
}

async fn a_persistent_cookie_is_re_sent_with_max_age_whenever_the_session_is_written(on: Adapter) {
    // express-session with cookie.maxAge: the cookie is set again when the session changed.
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m.persistent(true)));
    let (_, set) = c.send(true, "/login").await;
    assert_eq!(set[0].attr("Max-Age"), Some("600"));
    clock.advance(Duration::from_secs(10));
    let (_, set) = c.send(false, "/user").await;
    assert!(set.is_empty(), "unchanged, not due: not re-sent");
    let (_, set) = c.send(true, "/count").await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].attr("Max-Age"), Some("600"), "counted from now");
    // A renewal write (150 s later, nothing changed) re-sends it too.
    clock.advance(Duration::from_secs(150));
    let written = store.saves();
    let (_, set) = c.send(false, "/user").await;
    assert_eq!(store.saves(), written + 1);
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0].attr("Max-Age"), Some("600"));
}

// ---- regenerate, destroy, reload, save, touch, id, cookie.maxAge ----

async fn regenerate_gives_a_new_id_deletes_the_old_record_and_sets_a_new_cookie(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/set/cart/3").await;
    let old_id = c.text_ok(false, "/id").await;
    let old_cookie = c.jar.clone();
    let (_, set) = c.send(true, "/regenerate-only").await;
    assert_eq!(set.len(), 1, "the new id's cookie, even with no data");
    let new_id = c.text_ok(false, "/id").await;
    assert_ne!(new_id, old_id);
    assert!(!store.holds(&old_id).await, "the old record is deleted");
    assert!(store.holds(&new_id).await, "the new, empty one is stored");
    assert_eq!(store.len(), 1);
    // The old cookie, replayed, is a session no more.
    let mut replay = Client::new(app(on, &store, &clock, |m| m));
    replay.jar = old_cookie;
    let (resp, set) = replay.send(false, "/user").await;
    assert_eq!(resp.into_body(), "<none>");
    assert!(set[0].is_removal(), "and is cleared: {set:?}");
}

async fn destroy_deletes_the_record_and_clears_the_cookie(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let id = c.text_ok(false, "/id").await;
    let (resp, set) = c.send(true, "/logout").await;
    resp.assert_status_is_ok();
    assert_eq!(set.len(), 1);
    assert!(set[0].is_removal() && set[0].name == NAME, "{set:?}");
    assert_eq!(set[0].attr("Path"), Some("/"));
    assert!(!store.holds(&id).await);
    assert_eq!(store.len(), 0);
    // A value stored after destroy() in the same request starts a new session.
    c.send(true, "/login").await;
    let before = c.text_ok(false, "/id").await;
    let (_, set) = c.send(true, "/destroy-insert").await;
    assert_eq!(set.len(), 1);
    assert!(!set[0].is_removal(), "{set:?}");
    let after = c.text_ok(false, "/id").await;
    assert_ne!(after, before);
    assert!(!store.holds(&before).await && store.holds(&after).await);
    assert_eq!(
        c.text_ok(false, "/user").await,
        "<none>",
        "empty but for `after`"
    );
}

async fn reload_discards_unsaved_changes_and_fails_for_a_session_not_in_the_store(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    assert_eq!(
        c.text_ok(true, "/reload").await,
        "admin",
        "mallory was not saved"
    );
    assert_eq!(c.text_ok(false, "/user").await, "admin");
    // A new session was never stored: reload() is an error (`SessionError::Gone`, a 500).
    let mut n = Client::new(app(on, &store, &clock, |m| m));
    let (resp, set) = n.send(true, "/reload").await;
    resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    // What the failed handler changed is still written, as with every handler that fails
    // (express-session, too, saves at `res.end` whatever the status).
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(n.text_ok(false, "/user").await, "mallory");
}

async fn save_persists_mid_request_and_the_end_of_the_request_does_not_write_again(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let written = store.saves();
    assert_eq!(
        c.text_ok(true, "/save").await,
        "true",
        "in the store before the response"
    );
    assert_eq!(store.saves(), written + 1);
    // A new session saved mid-request gets its cookie.
    let mut n = Client::new(app(on, &store, &clock, |m| m));
    let (resp, set) = n.send(true, "/save").await;
    resp.assert_status_is_ok();
    assert_eq!(set.len(), 1);
    assert!(store.holds(&n.text_ok(false, "/id").await).await);
}

async fn touch_rewrites_the_record_and_resets_the_idle_clock(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let written = store.saves();
    clock.advance(Duration::from_secs(100));
    let (_, set) = c.send(true, "/touch").await;
    assert!(set.is_empty(), "the cookie did not change: {set:?}");
    assert_eq!(store.saves(), written + 1);
    let touched = T0.saturating_add(Duration::from_secs(100));
    assert_eq!(
        store.last_expiry(),
        touched.saturating_add(Duration::from_secs(600))
    );
    clock.set(touched.saturating_add(Duration::from_secs(599)));
    assert_eq!(
        c.text_ok(false, "/user").await,
        "admin",
        "600 s from the touch"
    );
}

async fn the_session_id_is_the_store_key_and_stays_until_regenerated(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    let unsaved = c.text_ok(false, "/id").await;
    assert_eq!(unsaved.len(), 22, "128 bits, base64url");
    assert_ne!(
        c.text_ok(false, "/id").await,
        unsaved,
        "an id that was never stored is not kept"
    );
    c.send(true, "/set/a/1").await;
    let id = c.text_ok(false, "/id").await;
    assert!(store.holds(&id).await);
    c.send(true, "/count").await;
    assert_eq!(c.text_ok(false, "/id").await, id, "changes keep the id");
}

async fn set_max_age_shortens_this_sessions_life_in_the_store_and_on_the_server(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    c.send(true, "/max-age/30").await;
    assert_eq!(
        store.last_expiry(),
        T0.saturating_add(Duration::from_secs(30))
    );
    clock.advance(Duration::from_secs(29));
    assert_eq!(c.text_ok(false, "/user").await, "admin");
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.text_ok(false, "/user").await, "<none>");
}

// ---- Ids from the client, signatures, keys ----

async fn unknown_and_forged_ids_get_a_new_id_and_their_cookie_is_cleared(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let keys = ring("k1", 1);
    // Validly signed, but not in the store (expired, destroyed, or planted).
    let planted = SessionId::generate().unwrap();
    let signed = SessionIdCodec::new(keys.clone()).sign(&planted, NAME.as_bytes());
    // Forged: signed with another key.
    let forged = SessionIdCodec::new(ring("k1", 2)).sign(&planted, NAME.as_bytes());
    for cookie in [signed, forged, "s%3Aexpress-style.sig".to_owned()] {
        let mut c = Client::new(app(on, &store, &clock, |m| m));
        c.jar.set(NAME, &cookie);
        let (resp, set) = c.send(false, "/user").await;
        assert_eq!(resp.into_body(), "<none>");
        assert!(set.len() == 1 && set[0].is_removal(), "cleared: {set:?}");
        c.jar.set(NAME, &cookie);
        let (_, set) = c.send(true, "/count").await;
        assert!(set.len() == 1 && !set[0].is_removal(), "{set:?}");
        let id = c.text_ok(false, "/id").await;
        assert_ne!(id, planted.to_string(), "never adopted");
        assert!(store.holds(&id).await);
    }
    assert!(!store.holds(&planted.to_string()).await);
}

async fn a_cookie_signed_with_an_older_key_is_re_signed_and_its_record_rewritten(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let old = c.jar.get(NAME).unwrap().to_owned();
    // The same application after a key rotation: a new primary key, the old one kept.
    let k1 = ring("k1", 1).keys().next().unwrap().clone();
    let k2 = ring("k2", 2).keys().next().unwrap().clone();
    let rotated = Keyring::new([k2, k1]).unwrap();
    let ep = on.app(
        &routes(&store, &gates()),
        SealedSession::server_store(store.clone(), rotated)
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(600))),
    );
    let mut r = Client::new(ep);
    r.jar = c.jar.clone();
    let written = store.saves();
    let (resp, set) = r.send(false, "/user").await;
    assert_eq!(resp.into_body(), "admin");
    assert_eq!(set.len(), 1, "re-signed at once: {set:?}");
    assert_ne!(set[0].value, old);
    assert_eq!(store.saves(), written + 1, "and the record rewritten");
    let (_, set) = r.send(false, "/user").await;
    assert!(set.is_empty(), "then an ordinary session again");
}

async fn stateless_reload_and_save_do_nothing(on: Adapter) {
    let ep = on.app(
        &routes(&Probe::default(), &gates()),
        SealedSession::sealed(ring("k1", 1)),
    );
    let mut c = Client::new(ep);
    c.send(true, "/login").await;
    // reload() has nothing to read: the unsaved change stays.
    assert_eq!(c.text_ok(true, "/reload").await, "mallory");
    // save() writes nowhere (the probe store is not the session's): false.
    assert_eq!(c.text_ok(true, "/save").await, "false");
    assert_eq!(c.text_ok(false, "/user").await, "mallory");
}

// ---- Expiry ----

async fn expiry_is_enforced_by_the_server_even_when_the_store_keeps_the_record(on: Adapter) {
    let clock = clock();
    let mut store = Probe::new(&clock);
    store.ignore_expiry = true;
    let mut c = Client::new(app(on, &store, &clock, |m| {
        m.max_age(Duration::from_secs(1000)).rolling(true)
    }));
    c.send(true, "/login").await;
    let id = c.text_ok(false, "/id").await;
    // Idle: 600 s without a request.
    clock.advance(Duration::from_secs(600));
    assert!(store.holds(&id).await, "the store still has it");
    assert_eq!(c.text_ok(false, "/user").await, "<none>", "idle timeout");
    // Absolute: active every 100 s (rolling), but 1000 s after login it ends.
    c.send(true, "/login").await;
    for _ in 0..9 {
        clock.advance(Duration::from_secs(100));
        assert_eq!(c.text_ok(false, "/user").await, "admin");
    }
    clock.advance(Duration::from_secs(100));
    assert_eq!(c.text_ok(false, "/user").await, "<none>", "max_age");
}

// ---- Cookie attributes and paths ----

async fn the_secure_cookie_is_sent_over_plain_http_and_the_session_ignores_the_path(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    // A plain-HTTP request (the test client's): express-session would not set a secure cookie.
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    let (_, set) = c.send(true, "/login").await;
    assert!(set[0].has_flag("Secure") && set[0].has_flag("HttpOnly"));
    assert_eq!(set[0].attr("SameSite"), Some("Lax"));
    assert!(set[0].attr("Max-Age").is_none(), "a browser-session cookie");
    // Path=/app, yet the session works on /login, where the middleware is installed:
    // express-session would skip a request outside cookie.path.
    let mut p = Client::new(app(on, &store, &clock, |m| m.path("/app").name("s")));
    let (resp, set) = p.send(true, "/login").await;
    resp.assert_status_is_ok();
    assert_eq!(set[0].name, "s");
    assert_eq!(set[0].attr("Path"), Some("/app"));
}

// ---- Races between concurrent requests ----

async fn concurrent_changes_the_last_write_wins(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    assert_eq!(c.text_ok(true, "/count").await, "1");
    let cookie = c.jar.header();
    // Two requests each read n = 1 before either writes: both write 2.
    let (a, b) = tokio::join!(
        c.send_with(true, "/count-together", cookie.clone()),
        c.send_with(true, "/count-together", cookie.clone()),
    );
    a.assert_status_is_ok();
    b.assert_status_is_ok();
    assert_eq!(
        c.text_ok(true, "/count").await,
        "3",
        "one increment was lost"
    );
}

async fn a_renewal_write_keeps_a_concurrent_change(on: Adapter) {
    // A read-only request that renews the session writes it over the record it loaded only
    // if that is still there; here another request changed it meanwhile, so the renewal is
    // applied to that request's record instead. See docs/EXPRESS.md, "Concurrent requests".
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    assert_eq!(c.text_ok(true, "/count").await, "1");
    let cookie = c.jar.header();
    clock.advance(Duration::from_secs(151)); // renewal due
    let gates = gates();
    let tc = on.app(
        &routes(&store, &gates),
        SealedSession::server_store(store.clone(), ring("k1", 1))
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(600))),
    );
    let cookie = cookie.unwrap();
    let (slow, fast) = tokio::join!(
        tc.get("/slow-read").header("cookie", cookie.clone()).send(),
        async {
            gates.0.notified().await; // the slow request has loaded n = 1
            let resp = tc
                .post("/count")
                .header("cookie", cookie.clone())
                .send()
                .await;
            gates.1.notify_one(); // n = 2 is written
            resp
        }
    );
    slow.assert_status_is_ok();
    fast.assert_status_is_ok();
    assert_eq!(fast.into_body(), "2", "the change was made");
    // The slow request ended last and renewed the record the fast one wrote: n = 2 is kept
    // (with express-session's whole-record writes, n = 1 would be back).
    assert_eq!(c.text_ok(true, "/count").await, "3", "the change was kept");
}

/// The app of [`app`] with its own pair of gates, for [`interleave`].
fn gated(on: Adapter, store: &Probe, clock: &ManualClock) -> (App, Arc<(Notify, Notify)>) {
    let gates = gates();
    let app = on.app(
        &routes(store, &gates),
        SealedSession::server_store(store.clone(), ring("k1", 1))
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(600))),
    );
    (app, gates)
}

/// Two requests with the same cookie: `slow` (a gated handler) loads its session and waits;
/// `fast` runs from start to end meanwhile; then `slow` goes on and ends last.
async fn interleave(
    tc: &App,
    gates: &(Notify, Notify),
    cookie: &str,
    (slow_post, slow): (bool, &str),
    fast: &str,
) -> (Resp, Resp) {
    let slow_req = if slow_post {
        tc.post(slow)
    } else {
        tc.get(slow)
    };
    tokio::join!(slow_req.header("cookie", cookie).send(), async {
        gates.0.notified().await; // `slow` has loaded the session
        let resp = tc.post(fast).header("cookie", cookie).send().await;
        gates.1.notify_one();
        resp
    })
}

async fn a_request_in_flight_cannot_bring_back_a_destroyed_session(on: Adapter) {
    // express-session's race: a request that loaded the session before a logout writes it
    // back afterwards, logged in. Here its write only replaces a record that still exists.
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let id = c.text_ok(false, "/id").await;
    let old = c.jar.header().unwrap();
    let (tc, gates) = gated(on, &store, &clock);
    let (cap, _g) = http::capture();
    let (slow, fast) = interleave(&tc, &gates, &old, (true, "/slow-count"), "/logout").await;
    fast.assert_status_is_ok();
    assert!(http::set_cookies(&fast)[0].is_removal());
    slow.assert_status_is_ok();
    assert!(
        http::set_cookies(&slow).is_empty(),
        "the late request sends no cookie: {:?}",
        http::set_cookies(&slow)
    );
    assert_eq!(slow.into_body(), "1");
    assert!(!store.holds(&id).await, "the record stays deleted");
    assert_eq!(store.len(), 0);
    let ended: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::INFO)
        .filter(|e| e.fields.get("message").is_some_and(|m| m.contains("ended")))
        .collect();
    assert_eq!(ended.len(), 1, "one info event: {ended:?}");
    assert!(
        !format!("{ended:?}").contains(&id),
        "no session id in the log: {ended:?}"
    );
    // The late request's span says what happened, not that a session was re-issued.
    let outcomes: Vec<_> = cap
        .spans()
        .into_iter()
        .filter(|s| s.name == "sealed_session")
        .filter_map(|s| s.fields.get("outcome").cloned())
        .collect();
    assert!(
        outcomes.iter().any(|o| o == "ended_elsewhere"),
        "outcomes: {outcomes:?}"
    );
    assert!(
        !outcomes.iter().any(|o| o == "reissued"),
        "outcomes: {outcomes:?}"
    );
    let replay = c.send_with(false, "/user", Some(old)).await;
    assert_eq!(
        replay.into_body(),
        "<none>",
        "the old cookie opens no session"
    );
}

async fn a_request_in_flight_cannot_bring_back_a_regenerated_session(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/count").await;
    let old_id = c.text_ok(false, "/id").await;
    let old = c.jar.header().unwrap();
    let (tc, gates) = gated(on, &store, &clock);
    let (slow, fast) = interleave(&tc, &gates, &old, (true, "/slow-count"), "/login").await;
    fast.assert_status_is_ok();
    slow.assert_status_is_ok();
    // The login's new cookie is the browser's last word: the late request neither sets the
    // old id again nor clears the cookie (which would log the user out of the new session).
    c.jar.absorb(&fast);
    assert!(
        http::set_cookies(&slow).is_empty(),
        "{:?}",
        http::set_cookies(&slow)
    );
    assert_eq!(c.text_ok(false, "/user").await, "admin");
    let new_id = c.text_ok(false, "/id").await;
    assert!(!store.holds(&old_id).await, "the old record stays deleted");
    assert!(store.holds(&new_id).await);
    assert_eq!(store.len(), 1);
    let replay = c.send_with(false, "/user", Some(old)).await;
    assert_eq!(replay.into_body(), "<none>");
}

async fn a_renewal_in_flight_cannot_bring_back_a_destroyed_session(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let old = c.jar.header().unwrap();
    clock.advance(Duration::from_secs(151)); // renewal due: an unchanged session is written
    let (tc, gates) = gated(on, &store, &clock);
    let (slow, fast) = interleave(&tc, &gates, &old, (false, "/slow-read"), "/logout").await;
    fast.assert_status_is_ok();
    slow.assert_status_is_ok();
    assert!(http::set_cookies(&slow).is_empty());
    assert_eq!(store.len(), 0, "the renewal did not write the record back");
    let replay = c.send_with(false, "/user", Some(old)).await;
    assert_eq!(replay.into_body(), "<none>");
}

async fn save_after_a_concurrent_logout_is_a_409_and_stores_nothing(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let old = c.jar.header().unwrap();
    let (tc, gates) = gated(on, &store, &clock);
    let (slow, fast) = interleave(&tc, &gates, &old, (true, "/slow-count-save"), "/logout").await;
    fast.assert_status_is_ok();
    // `save()` returned `SessionError::Ended`, which the handler passed on.
    slow.assert_status(StatusCode::CONFLICT);
    assert!(http::set_cookies(&slow).is_empty());
    assert_eq!(store.len(), 0);
    let replay = c.send_with(false, "/user", Some(old)).await;
    assert_eq!(replay.into_body(), "<none>");
}

// ---- Errors ----

async fn a_failing_store_is_a_503_for_save_and_destroy_and_nothing_is_reported_done(on: Adapter) {
    let clock = clock();
    let store = Probe::new(&clock);
    let mut c = Client::new(app(on, &store, &clock, |m| m));
    c.send(true, "/login").await;
    let before = c.jar.clone();
    store.fail_save.store(true, Ordering::SeqCst);
    // save() in the handler fails: the handler's error is a 503.
    let (resp, set) = c.send(true, "/save").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    // The end-of-request write fails: a 503 instead of the handler's answer.
    let (resp, set) = c.send(true, "/count").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    store.fail_save.store(false, Ordering::SeqCst);
    assert_eq!(c.text_ok(true, "/count").await, "1", "nothing was counted");
    // A logout whose delete fails: a 503, the cookie and the record stay.
    store.fail_delete.store(true, Ordering::SeqCst);
    let deletes = store.deletes();
    let (resp, set) = c.send(true, "/logout").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "not cleared: {set:?}");
    assert_eq!(store.deletes(), deletes);
    assert_eq!(c.jar.cookies, before.cookies);
    assert_eq!(c.text_ok(false, "/user").await, "admin", "still logged in");
    store.fail_delete.store(false, Ordering::SeqCst);
    // reload() when the store fails: the handler's error is a 503.
    let (resp, set) = c.send(true, "/reload-in-outage").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    let (resp, set) = c.send(true, "/logout").await;
    resp.assert_status_is_ok();
    assert!(set[0].is_removal());
}

#[tokio::test]
async fn memory_store_sweeps_expired_records_every_1024_saves() {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let soon = T0.saturating_add(Duration::from_secs(1));
    for _ in 0..1000 {
        store
            .save(&SessionId::generate().unwrap(), b"x", soon)
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    for _ in 0..23 {
        store
            .save(&SessionId::generate().unwrap(), b"x", FAR)
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 1023, "expired, not yet swept");
    store
        .save(&SessionId::generate().unwrap(), b"x", FAR)
        .await
        .unwrap();
    assert_eq!(store.len(), 24, "the 1024th save swept the expired ones");
}

both!(
    save_uninitialized_false_neither_stores_nor_sets_a_cookie_for_an_untouched_session,
    save_uninitialized_true_stores_every_new_session_and_sets_its_cookie,
    an_unchanged_session_is_written_only_when_renewal_is_due,
    rolling_re_sets_the_cookie_and_rewrites_the_record_on_every_response,
    a_persistent_cookie_is_re_sent_with_max_age_whenever_the_session_is_written,
    regenerate_gives_a_new_id_deletes_the_old_record_and_sets_a_new_cookie,
    destroy_deletes_the_record_and_clears_the_cookie,
    reload_discards_unsaved_changes_and_fails_for_a_session_not_in_the_store,
    save_persists_mid_request_and_the_end_of_the_request_does_not_write_again,
    touch_rewrites_the_record_and_resets_the_idle_clock,
    the_session_id_is_the_store_key_and_stays_until_regenerated,
    set_max_age_shortens_this_sessions_life_in_the_store_and_on_the_server,
    unknown_and_forged_ids_get_a_new_id_and_their_cookie_is_cleared,
    a_cookie_signed_with_an_older_key_is_re_signed_and_its_record_rewritten,
    stateless_reload_and_save_do_nothing,
    expiry_is_enforced_by_the_server_even_when_the_store_keeps_the_record,
    the_secure_cookie_is_sent_over_plain_http_and_the_session_ignores_the_path,
    concurrent_changes_the_last_write_wins,
    a_renewal_write_keeps_a_concurrent_change,
    a_request_in_flight_cannot_bring_back_a_destroyed_session,
    a_request_in_flight_cannot_bring_back_a_regenerated_session,
    a_renewal_in_flight_cannot_bring_back_a_destroyed_session,
    save_after_a_concurrent_logout_is_a_409_and_stores_nothing,
    a_failing_store_is_a_503_for_save_and_destroy_and_nothing_is_reported_done,
);
