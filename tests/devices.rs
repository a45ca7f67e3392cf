//! "Your devices" through the middleware: a user's sessions are listed (labelled, the current
//! one marked), one or all others are ended and refused on their next request, a user cannot
//! end another's session, and a request that only reads its session does no registry work.
//! Every scenario runs on the Poem middleware and on the tower layer; the memory registry
//! also runs the registry conformance suite.
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
    #[cfg(feature = "redis")]
    pub mod redis;
    pub mod registry_conformance;
}
mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::http::StatusCode;
use ::http::header::{COOKIE, USER_AGENT};
use common::fixtures::{clock, keys};
use http::Jar;
use http::app::{Adapter, App, Json, Req, Routes, both};
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::devices::{
    BoxFuture, DeviceHandle, DeviceRecord, Devices, MemoryRegistry, Registry, RegistryError,
};
use sealed_session::store::MemoryStore;
use sealed_session::{SealedSession, Session, SessionError, SessionId, Timestamp};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/// A registry that counts the calls made to it.
#[derive(Default)]
struct Counting {
    inner: MemoryRegistry,
    records: AtomicUsize,
    lists: AtomicUsize,
    removes: AtomicUsize,
}

impl Counting {
    fn calls(&self) -> (usize, usize, usize) {
        (
            self.records.load(Ordering::SeqCst),
            self.lists.load(Ordering::SeqCst),
            self.removes.load(Ordering::SeqCst),
        )
    }
}

impl Registry for Counting {
    fn record<'a>(&'a self, r: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.records.fetch_add(1, Ordering::SeqCst);
        self.inner.record(r)
    }
    fn list<'a>(
        &'a self,
        subject: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(subject, now)
    }
    fn remove<'a>(
        &'a self,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        self.removes.fetch_add(1, Ordering::SeqCst);
        self.inner.remove(subject, id)
    }
}

async fn login(req: Req) -> Result<(), SessionError> {
    let user: String = req.param_at(0);
    req.session.regenerate()?;
    req.session.insert("user", &user)?;
    req.session.set_subject(user);
    Ok(())
}

fn me(session: &Session) -> Result<String, SessionError> {
    Ok(session
        .get::<String>("user")?
        .unwrap_or_else(|| "<none>".to_owned()))
}

async fn devices(session: Session) -> Result<Json, SessionError> {
    let list = session.devices().await?;
    Ok(Json(serde_json::Value::Array(
        list.into_iter()
            .map(|d| {
                serde_json::json!({
                    "handle": d.handle.to_string(),
                    "current": d.current,
                    "label": d.label,
                    "ip": d.ip_prefix,
                    "started": d.started.as_millis(),
                    "renewed": d.renewed.as_millis(),
                    "expires_at": d.expires_at.as_millis(),
                })
            })
            .collect(),
    )))
}

async fn end(req: Req) -> Result<(), SessionError> {
    let handle: String = req.param_at(0);
    let handle = DeviceHandle::parse(&handle).ok_or(SessionError::NoSuchDevice)?;
    req.session.end_device(&handle).await
}

async fn end_others(session: Session) -> Result<String, SessionError> {
    Ok(session.end_other_devices().await?.to_string())
}

async fn everywhere(session: Session) -> Result<(), SessionError> {
    session.logout_everywhere().await
}

fn count(session: &Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", &n)?;
    Ok(n.to_string())
}

fn logout(session: &Session) -> Result<(), SessionError> {
    session.destroy()
}

fn id(session: &Session) -> String {
    session.id().to_string()
}

fn cycle(session: &Session) -> Result<(), SessionError> {
    session.cycle_id()
}

async fn become_user(req: Req) -> Result<(), SessionError> {
    let user: String = req.param_at(0);
    req.session.set_subject(user);
    Ok(())
}

fn routes() -> Routes {
    Routes::new()
        .post("/login/:user", login)
        .get("/me", me)
        .get("/devices", devices)
        .post("/end/:handle", end)
        .post("/end-others", end_others)
        .post("/everywhere", everywhere)
        .post("/count", count)
        .post("/logout", logout)
        .get("/id", id)
        .post("/cycle", cycle)
        .post("/become/:user", become_user)
}

/// One browser: its cookie jar and its `User-Agent`.
struct Browser {
    jar: Jar,
    agent: &'static str,
}

impl Browser {
    fn new(agent: &'static str) -> Browser {
        Browser {
            jar: Jar::default(),
            agent,
        }
    }

    async fn send(&mut self, app: &App, post: bool, uri: &str) -> (StatusCode, String) {
        self.send_from(app, post, uri, None).await
    }

    async fn send_from(
        &mut self,
        app: &App,
        post: bool,
        uri: &str,
        forwarded_for: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = if post { app.post(uri) } else { app.get(uri) };
        req = req.header(USER_AGENT, self.agent);
        if let Some(c) = self.jar.header() {
            req = req.header(COOKIE, c);
        }
        if let Some(ip) = forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        let resp = req.send().await;
        self.jar.absorb(&resp);
        (resp.status(), resp.into_body())
    }

    async fn devices(&mut self, app: &App) -> Vec<serde_json::Value> {
        let (status, body) = self.send(app, false, "/devices").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
    }
}

fn sealed(registry: Arc<dyn Registry>, denylist: Arc<dyn Denylist>) -> SealedSession {
    SealedSession::sealed(keys())
        .denylist(denylist)
        .devices(Devices::new(registry))
}

fn handle_of(list: &[serde_json::Value], label: &str) -> String {
    list.iter()
        .find(|d| d["label"] == label)
        .and_then(|d| d["handle"].as_str())
        .unwrap_or_else(|| panic!("no {label} in {list:?}"))
        .to_owned()
}

async fn lists_the_users_sessions_labelled_with_the_current_one_marked(on: Adapter) {
    let clock = clock();
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let (mut laptop, mut desktop, mut bobs) = (
        Browser::new(FIREFOX),
        Browser::new(CHROME),
        Browser::new(SAFARI),
    );
    laptop.send(&app, true, "/login/alice").await;
    clock.advance(Duration::from_secs(1));
    desktop.send(&app, true, "/login/alice").await;
    bobs.send(&app, true, "/login/bob").await;

    let list = laptop.devices(&app).await;
    assert_eq!(list.len(), 2, "{list:?}");
    // Most recently renewed first: the desktop signed in last.
    assert_eq!(list[0]["label"], "Chrome on Windows");
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["label"], "Firefox on Linux");
    assert_eq!(list[1]["current"], true);
    assert_eq!(
        list[1]["ip"],
        serde_json::Value::Null,
        "IP prefixes are off"
    );
    // No session id shows.
    let id = laptop.send(&app, false, "/me").await;
    assert_eq!(id.1, "alice");
    let list_bob = bobs.devices(&app).await;
    assert_eq!(list_bob.len(), 1);
    assert_eq!(list_bob[0]["label"], "Safari on iOS");
    assert_eq!(list_bob[0]["current"], true);
}

async fn an_ended_session_is_refused_on_its_next_request(on: Adapter) {
    let app = on.app(
        &routes(),
        sealed(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryDenylist::new()),
        ),
    );
    let (mut laptop, mut desktop) = (Browser::new(FIREFOX), Browser::new(CHROME));
    laptop.send(&app, true, "/login/alice").await;
    desktop.send(&app, true, "/login/alice").await;
    let stolen = desktop.jar.clone();
    let chrome = handle_of(&laptop.devices(&app).await, "Chrome on Windows");

    let (status, body) = laptop.send(&app, true, &format!("/end/{chrome}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(desktop.send(&app, false, "/me").await.1, "<none>");
    let mut replay = Browser {
        jar: stolen,
        agent: CHROME,
    };
    assert_eq!(replay.send(&app, false, "/me").await.1, "<none>");
    assert_eq!(laptop.send(&app, false, "/me").await.1, "alice");
    let list = laptop.devices(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);

    // Ending it again: it is no device of hers any more.
    let (status, _) = laptop.send(&app, true, &format!("/end/{chrome}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn ending_the_others_keeps_this_one(on: Adapter) {
    let app = on.app(
        &routes(),
        sealed(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryDenylist::new()),
        ),
    );
    let mut browsers = [
        Browser::new(FIREFOX),
        Browser::new(CHROME),
        Browser::new(SAFARI),
    ];
    for b in &mut browsers {
        b.send(&app, true, "/login/alice").await;
    }
    let [first, others @ ..] = &mut browsers;
    assert_eq!(first.send(&app, true, "/end-others").await.1, "2");
    for b in others {
        assert_eq!(b.send(&app, false, "/me").await.1, "<none>");
    }
    assert_eq!(first.send(&app, false, "/me").await.1, "alice");
    assert_eq!(first.devices(&app).await.len(), 1);
}

async fn a_user_cannot_end_another_users_session(on: Adapter) {
    let app = on.app(
        &routes(),
        sealed(
            Arc::new(MemoryRegistry::new()),
            Arc::new(MemoryDenylist::new()),
        ),
    );
    let (mut alice, mut bob) = (Browser::new(FIREFOX), Browser::new(CHROME));
    alice.send(&app, true, "/login/alice").await;
    bob.send(&app, true, "/login/bob").await;
    let alices = handle_of(&alice.devices(&app).await, "Firefox on Linux");
    let (status, _) = bob.send(&app, true, &format!("/end/{alices}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(alice.send(&app, false, "/me").await.1, "alice");
    // A handle that is not one at all.
    let (status, _) = bob.send(&app, true, "/end/not-a-handle").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(bob.send(&app, false, "/me").await.1, "bob");
}

async fn a_read_does_no_registry_work(on: Adapter) {
    let registry = Arc::new(Counting::default());
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .denylist(Arc::new(MemoryDenylist::new()))
            .devices(Devices::new(registry.clone()).refresh_every(Duration::ZERO)),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    assert_eq!(registry.calls(), (1, 0, 0), "a login records");
    for _ in 0..20 {
        assert_eq!(b.send(&app, false, "/me").await.1, "alice");
    }
    assert_eq!(registry.calls(), (1, 0, 0), "reads do nothing");
    b.send(&app, true, "/count").await;
    assert_eq!(registry.calls(), (2, 0, 0), "a re-issue records");
    b.send(&app, true, "/logout").await;
    assert_eq!(registry.calls(), (2, 0, 1), "a logout removes");
    // An anonymous visitor's session is never recorded.
    let mut anon = Browser::new(CHROME);
    anon.send(&app, true, "/count").await;
    anon.send(&app, true, "/count").await;
    assert_eq!(registry.calls(), (2, 0, 1));
    assert!(registry.inner.is_empty());
}

async fn renewal_records_again(on: Adapter) {
    let clock = clock();
    let registry = Arc::new(Counting::default());
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .max_age(Duration::from_secs(8 * 3600))
            .idle_timeout(Some(Duration::from_secs(3600)))
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .devices(Devices::new(registry.clone())),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    let before = registry
        .inner
        .list("alice", clock_now(&clock))
        .await
        .unwrap();
    // Past the renewal point (a quarter of the idle timeout): the read re-issues, which
    // records (the refresh interval, 5 minutes, has passed too).
    clock.advance(Duration::from_secs(40 * 60));
    assert_eq!(b.send(&app, false, "/me").await.1, "alice");
    assert_eq!(registry.calls().0, 2, "the renewal recorded the session");
    let after = registry
        .inner
        .list("alice", clock_now(&clock))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].renewed > before[0].renewed);
    assert!(after[0].expires_at > before[0].expires_at);
    assert_eq!(after[0].started, before[0].started);
}

fn clock_now(clock: &sealed_session::ManualClock) -> Timestamp {
    use sealed_session::Clock as _;
    clock.now()
}

async fn log_out_everywhere_empties_the_list(on: Adapter) {
    let clock = clock();
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let (mut a, mut b) = (Browser::new(FIREFOX), Browser::new(CHROME));
    a.send(&app, true, "/login/alice").await;
    b.send(&app, true, "/login/alice").await;
    clock.advance(Duration::from_secs(1));
    a.send(&app, true, "/everywhere").await;
    clock.advance(Duration::from_secs(1));
    a.send(&app, true, "/login/alice").await;
    let list = a.devices(&app).await;
    assert_eq!(
        list.len(),
        1,
        "the sessions cut off are not listed: {list:?}"
    );
    assert_eq!(list[0]["current"], true);
}

async fn ip_prefixes_when_turned_on(on: Adapter) {
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .trust_proxy(true)
            .denylist(Arc::new(MemoryDenylist::new()))
            .devices(Devices::new(Arc::new(MemoryRegistry::new())).ip_prefix(true)),
    );
    let mut b = Browser::new(FIREFOX);
    b.send_from(&app, true, "/login/alice", Some("203.0.113.77"))
        .await;
    let list = b.devices(&app).await;
    assert_eq!(list[0]["ip"], "203.0.113.0/24");
}

async fn a_session_not_listed_yet_is_recorded_by_the_listing(on: Adapter) {
    let registry = Arc::new(MemoryRegistry::new());
    let app = on.app(
        &routes(),
        sealed(registry.clone(), Arc::new(MemoryDenylist::new())),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    // As if it had signed in before the registry was turned on.
    let id = registry
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap()[0]
        .id;
    registry.remove("alice", &id).await.unwrap();
    assert!(b.devices(&app).await.is_empty());
    let list = b.devices(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
}

async fn store_backed_sessions_are_ended_in_the_store(on: Adapter) {
    let store = MemoryStore::new();
    let app = on.app(
        &routes(),
        SealedSession::server_store(store.clone(), keys())
            .devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let (mut a, mut b) = (Browser::new(FIREFOX), Browser::new(CHROME));
    a.send(&app, true, "/login/alice").await;
    b.send(&app, true, "/login/alice").await;
    assert_eq!(store.len(), 2);
    let chrome = handle_of(&a.devices(&app).await, "Chrome on Windows");
    let (status, body) = a.send(&app, true, &format!("/end/{chrome}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(store.len(), 1, "deleted from the store");
    assert_eq!(b.send(&app, false, "/me").await.1, "<none>");
    assert_eq!(a.send(&app, false, "/me").await.1, "alice");
}

async fn missing_pieces_are_clear_errors(on: Adapter) {
    // No registry.
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys()).denylist(Arc::new(MemoryDenylist::new())),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    let (status, body) = b.send(&app, false, "/devices").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no device registry"), "{body}");

    // No denylist: listing works, ending another session cannot.
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys()).devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let (mut a, mut c) = (Browser::new(FIREFOX), Browser::new(CHROME));
    a.send(&app, true, "/login/alice").await;
    c.send(&app, true, "/login/alice").await;
    let chrome = handle_of(&a.devices(&app).await, "Chrome on Windows");
    let (status, body) = a.send(&app, true, &format!("/end/{chrome}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no denylist"), "{body}");

    // No subject.
    let mut anon = Browser::new(SAFARI);
    anon.send(&app, true, "/count").await;
    let (status, body) = anon.send(&app, false, "/devices").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("no subject"), "{body}");
}

async fn a_token_reissued_on_every_request_is_recorded_once_per_refresh_interval(on: Adapter) {
    let clock = clock();
    let registry = Arc::new(Counting::default());
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .devices(Devices::new(registry.clone())),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    for _ in 0..10 {
        clock.advance(Duration::from_secs(20));
        b.send(&app, true, "/count").await;
    }
    assert_eq!(
        registry.calls().0,
        1,
        "200 s of changes: within the 5-minute interval"
    );
    clock.advance(Duration::from_secs(120));
    b.send(&app, true, "/count").await;
    assert_eq!(registry.calls().0, 2, "past it: recorded again");
    let list = b.devices(&app).await;
    let renewed = list[0]["renewed"].as_u64().unwrap();
    assert_eq!(renewed, clock_now(&clock).as_millis());
    // Listed with the session's deadline (the idle timeout, an hour, from the last record);
    // the entry itself is kept the interval longer, so that a session in use is never
    // dropped between two records.
    let expires = list[0]["expires_at"].as_u64().unwrap();
    assert_eq!(expires, renewed + 3600 * 1000);
    let kept = registry
        .inner
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(kept[0].expires_at.as_millis(), expires + 300 * 1000);
}

async fn store_sessions_in_use_stay_listed_past_the_idle_timeout(on: Adapter) {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let app = on.app(
        &routes(),
        SealedSession::server_store(store, keys())
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(3600)))
            .devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let (mut a, mut b) = (Browser::new(FIREFOX), Browser::new(CHROME));
    a.send(&app, true, "/login/alice").await;
    b.send(&app, true, "/login/alice").await;
    // Three hours of use, a change every 10 minutes (no new cookie: the store keeps it).
    for _ in 0..18 {
        clock.advance(Duration::from_secs(600));
        a.send(&app, true, "/count").await;
        b.send(&app, true, "/count").await;
    }
    assert_eq!(a.send(&app, false, "/me").await.1, "alice");
    let list = a.devices(&app).await;
    assert_eq!(list.len(), 2, "both still listed: {list:?}");
    assert_eq!(a.send(&app, true, "/end-others").await.1, "1");
    assert_eq!(b.send(&app, false, "/me").await.1, "<none>");
}

async fn a_new_id_replaces_the_old_entry(on: Adapter) {
    let registry = Arc::new(MemoryRegistry::new());
    let app = on.app(
        &routes(),
        sealed(registry.clone(), Arc::new(MemoryDenylist::new())),
    );
    let mut b = Browser::new(FIREFOX);
    b.send(&app, true, "/login/alice").await;
    let before = b.send(&app, false, "/id").await.1;
    b.send(&app, true, "/cycle").await;
    let after = b.send(&app, false, "/id").await.1;
    assert_ne!(before, after);
    let ids: Vec<String> = registry
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(ids, [after]);
}

async fn a_session_that_changes_subject_leaves_the_former_users_list(on: Adapter) {
    let registry = Arc::new(MemoryRegistry::new());
    let app = on.app(
        &routes(),
        sealed(registry.clone(), Arc::new(MemoryDenylist::new())),
    );
    let (mut shared, mut alice) = (Browser::new(FIREFOX), Browser::new(CHROME));
    alice.send(&app, true, "/login/alice").await;
    shared.send(&app, true, "/login/alice").await;
    // The same session becomes bob's without a new id (an application that skips
    // `regenerate`): alice must not see it, or end bob's session.
    shared.send(&app, true, "/become/bob").await;
    let list = alice.devices(&app).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(shared.devices(&app).await.len(), 1, "bob's list has it");
}

async fn ending_the_others_reaches_sessions_the_registry_does_not_list(on: Adapter) {
    let clock = clock();
    let registry = Arc::new(MemoryRegistry::new());
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .devices(Devices::new(registry.clone())),
    );
    let (mut a, mut hidden) = (Browser::new(FIREFOX), Browser::new(CHROME));
    hidden.send(&app, true, "/login/alice").await;
    clock.advance(Duration::from_secs(1));
    a.send(&app, true, "/login/alice").await;
    // Its entry lost (past the bound, a failed record, or older than the registry).
    let list = registry
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap();
    let lost = list
        .iter()
        .find(|r| r.label == "Chrome on Windows")
        .unwrap()
        .id;
    registry.remove("alice", &lost).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let (status, body) = a.send(&app, true, "/end-others").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "0"));
    assert_eq!(hidden.send(&app, false, "/me").await.1, "<none>");
    assert_eq!(
        a.send(&app, false, "/me").await.1,
        "alice",
        "this one goes on"
    );
    let list = a.devices(&app).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["current"], true);
    // After "log out everywhere" the old entries stay until they expire, refused: ending
    // the others again ends none of them a second time.
    let mut c = Browser::new(SAFARI);
    c.send(&app, true, "/login/alice").await;
    clock.advance(Duration::from_secs(1));
    a.send(&app, true, "/everywhere").await;
    clock.advance(Duration::from_secs(1));
    a.send(&app, true, "/login/alice").await;
    assert_eq!(a.send(&app, true, "/end-others").await.1, "0");
}

async fn forwarded_for_counts_only_behind_a_trusted_proxy(on: Adapter) {
    for (trust, want) in [
        (false, serde_json::Value::Null),
        (true, "198.51.100.0/24".into()),
    ] {
        let app = on.app(
            &routes(),
            SealedSession::sealed(keys())
                .trust_proxy(trust)
                .denylist(Arc::new(MemoryDenylist::new()))
                .devices(Devices::new(Arc::new(MemoryRegistry::new())).ip_prefix(true)),
        );
        let mut b = Browser::new(FIREFOX);
        // The client claims 203.0.113.77; the proxy appended the address it saw.
        b.send_from(
            &app,
            true,
            "/login/alice",
            Some("203.0.113.77, 198.51.100.9"),
        )
        .await;
        assert_eq!(b.devices(&app).await[0]["ip"], want, "trust_proxy {trust}");
    }
}

async fn bearer_sessions_are_listed_and_ended(on: Adapter) {
    let app = on.app(
        &routes(),
        SealedSession::sealed(keys())
            .bearer(sealed_session::BearerConfig::new())
            .denylist(Arc::new(MemoryDenylist::new()))
            .devices(Devices::new(Arc::new(MemoryRegistry::new()))),
    );
    let login = |agent: &'static str| {
        let app = app.clone();
        async move {
            let resp = app
                .post("/login/alice")
                .header(USER_AGENT, agent)
                .send()
                .await;
            let token = resp
                .headers()
                .get("x-session-token")
                .or_else(|| resp.headers().get("authorization"))
                .map(|v| v.to_str().unwrap().to_owned());
            token.expect("a token header")
        }
    };
    let (cli, phone) = (login(FIREFOX).await, login(SAFARI).await);
    let get = |token: &str, uri: &str| {
        app.get(uri)
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let list: Vec<serde_json::Value> =
        serde_json::from_str(get(&cli, "/devices").await.body()).unwrap();
    assert_eq!(list.len(), 2);
    let phone_handle = handle_of(&list, "Safari on iOS");
    let resp = app
        .post(format!("/end/{phone_handle}"))
        .header("authorization", format!("Bearer {cli}"))
        .send()
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.body());
    assert_eq!(get(&phone, "/me").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&cli, "/me").await.body(), "alice");
}

/// A registry that always fails: sessions still work, listing is a 503.
struct Broken;

impl Registry for Broken {
    fn record<'a>(&'a self, _: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async { Err(broken()) })
    }
    fn list<'a>(
        &'a self,
        _: &'a str,
        _: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>> {
        Box::pin(async { Err(broken()) })
    }
    fn remove<'a>(
        &'a self,
        _: &'a str,
        _: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async { Err(broken()) })
    }
}

fn broken() -> RegistryError {
    RegistryError::Backend {
        backend: "test",
        op: "do anything",
        source: "down".into(),
    }
}

async fn a_failing_registry_does_not_break_sessions(on: Adapter) {
    let app = on.app(
        &routes(),
        sealed(Arc::new(Broken), Arc::new(MemoryDenylist::new())),
    );
    let mut b = Browser::new(FIREFOX);
    let (status, _) = b.send(&app, true, "/login/alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.send(&app, false, "/me").await.1, "alice");
    let (status, _) = b.send(&app, false, "/devices").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = b.send(&app, true, "/logout").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the logout is the revocation, not the list"
    );
    assert_eq!(b.send(&app, false, "/me").await.1, "<none>");
}

both!(
    lists_the_users_sessions_labelled_with_the_current_one_marked,
    an_ended_session_is_refused_on_its_next_request,
    ending_the_others_keeps_this_one,
    a_user_cannot_end_another_users_session,
    a_read_does_no_registry_work,
    renewal_records_again,
    log_out_everywhere_empties_the_list,
    ip_prefixes_when_turned_on,
    a_session_not_listed_yet_is_recorded_by_the_listing,
    store_backed_sessions_are_ended_in_the_store,
    missing_pieces_are_clear_errors,
    a_failing_registry_does_not_break_sessions,
    a_token_reissued_on_every_request_is_recorded_once_per_refresh_interval,
    store_sessions_in_use_stay_listed_past_the_idle_timeout,
    a_new_id_replaces_the_old_entry,
    a_session_that_changes_subject_leaves_the_former_users_list,
    ending_the_others_reaches_sessions_the_registry_does_not_list,
    forwarded_for_counts_only_behind_a_trusted_proxy,
    bearer_sessions_are_listed_and_ended,
);

#[tokio::test]
async fn memory_registry_conformance() {
    let registry = MemoryRegistry::new().max_per_subject(4);
    common::registry_conformance::conformance(&registry, 4, 1).await;
}

#[tokio::test]
async fn memory_registry_forgets_expired_subjects() {
    let registry = MemoryRegistry::new();
    for i in 0..3u8 {
        let r = common::registry_conformance::entry(&format!("user{i}"), 1, 9, 0);
        registry.record(&r).await.unwrap();
    }
    assert_eq!(registry.len(), 3);
    // 1,024 records later, long after they expired: swept.
    for i in 0..1030u32 {
        let mut r = common::registry_conformance::entry("busy", 1, 9, 100_000);
        r.id = SessionId::from_bytes([(i % 200) as u8; 16]);
        registry.record(&r).await.unwrap();
    }
    assert!(registry.len() <= 50, "{} entries", registry.len());
}

/// The Redis registry against a real Redis: the conformance suite, and two instances that
/// share it (with a `RedisDenylist`): a session signed in on one is listed and ended on the
/// other, and refused by the first at once.
#[cfg(feature = "redis")]
mod on_redis {
    use super::*;
    use crate::common::redis::RedisServer;
    use crate::http::app::both;
    use sealed_session::denylist::RedisDenylist;
    use sealed_session::devices::RedisRegistry;

    async fn registry(url: &str) -> RedisRegistry {
        RedisRegistry::builder(url)
            .key_prefix("devtest:")
            .max_per_subject(4)
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap()
    }

    async fn denylist(url: &str) -> Arc<dyn Denylist> {
        Arc::new(
            RedisDenylist::builder(url)
                .key_prefix("devtest:denylist:")
                .heartbeat(Duration::from_millis(50))
                .stale_after(Duration::from_secs(10))
                .timeout(Duration::from_millis(500))
                .build()
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn redis_registry_conformance() {
        let Some(redis) = RedisServer::start("the Redis device registry") else {
            return;
        };
        let r = registry(&redis.url()).await;
        crate::common::registry_conformance::conformance(&r, 4, 2).await;
        // The keys expire with their latest entry.
        let mut conn = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // An entry that does not read (another version's, or written by hand) is left out
        // of the list, not an error.
        let good = crate::common::registry_conformance::entry("mallory", 1, 7, 0);
        r.record(&good).await.unwrap();
        let _: () = redis::cmd("HSET")
            .arg("devtest:{bWFsbG9yeQ}:h")
            .arg("garbage")
            .arg(&b"\xff{not json"[..])
            .query_async(&mut conn)
            .await
            .unwrap();
        let held: usize = redis::cmd("HLEN")
            .arg("devtest:{bWFsbG9yeQ}:h")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(held, 2, "the garbage sits beside the entry");
        let listed = r.list("mallory", Timestamp::from_millis(0)).await.unwrap();
        assert_eq!(listed, vec![good]);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("devtest:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(!keys.is_empty());
        for k in keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{k} has no expiry ({ttl})");
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_typed_error_without_secrets() {
        let url = "redis://user:hunter2@127.0.0.1:1/";
        let err = RedisRegistry::builder(url)
            .timeout(Duration::from_millis(200))
            .build()
            .await
            .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("redis"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    async fn two_instances_share_the_list_and_the_ending(on: Adapter) {
        let Some(redis) = RedisServer::start("two instances sharing devices") else {
            return;
        };
        let url = redis.url();
        let instance = |d: Arc<dyn Denylist>, r: RedisRegistry| {
            on.app(
                &routes(),
                SealedSession::sealed(keys())
                    .denylist(d)
                    .devices(Devices::new(Arc::new(r))),
            )
        };
        let a = instance(denylist(&url).await, registry(&url).await);
        let b = instance(denylist(&url).await, registry(&url).await);
        let (mut laptop, mut phone) = (Browser::new(FIREFOX), Browser::new(SAFARI));
        laptop.send(&a, true, "/login/alice").await;
        phone.send(&b, true, "/login/alice").await;
        // Listed from either instance.
        let list = laptop.devices(&b).await;
        assert_eq!(list.len(), 2, "{list:?}");
        let phone_handle = handle_of(&list, "Safari on iOS");
        // Ended from B, by the laptop: A refuses the phone's cookie at once (its replica
        // learned the revocation over pub/sub; a few ms at most).
        let (status, body) = laptop.send(&b, true, &format!("/end/{phone_handle}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut probe = Browser {
                jar: phone.jar.clone(),
                agent: SAFARI,
            };
            if probe.send(&a, false, "/me").await.1 == "<none>" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "A still accepts the phone"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(laptop.send(&a, false, "/me").await.1, "alice");
        assert_eq!(laptop.devices(&a).await.len(), 1);
    }

    both!(two_instances_share_the_list_and_the_ending);
}

/// The peer address an adapter hands the engine (the Poem middleware does, from the
/// connection) is what the IP prefix is made of; `X-Forwarded-For` is not read without
/// `trust_proxy`.
#[tokio::test]
async fn the_peer_address_given_to_the_engine_is_kept_as_a_prefix() {
    let registry = Arc::new(MemoryRegistry::new());
    let engine = SealedSession::sealed(keys())
        .secure(sealed_session::Secure::Never)
        .devices(Devices::new(registry.clone()).ip_prefix(true))
        .engine();
    let mut headers = ::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    let mut started = engine.start(head(&headers)).await.unwrap();
    assert!(started.wants_peer_ip());
    started.set_peer_ip("2001:db8:7:8::1".parse().unwrap());
    started.session().set_subject("alice");
    let mut response = ::http::HeaderMap::new();
    engine.finish(&started, &mut response).await.unwrap();
    let list = registry
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(list[0].ip_prefix.as_deref(), Some("2001:db8:7::/48"));

    // IP prefixes off: nothing is kept, and the engine asks for no address.
    let engine = SealedSession::sealed(keys())
        .secure(sealed_session::Secure::Never)
        .devices(Devices::new(registry.clone()))
        .engine();
    let started = engine.start(head(&headers)).await.unwrap();
    assert!(!started.wants_peer_ip());
}

/// Behind a trusted proxy that adds an `X-Forwarded-For` line of its own, the address it
/// saw is the last one of the last line, whatever the client wrote in its own line.
#[tokio::test]
async fn the_proxys_own_forwarded_for_line_counts() {
    let registry = Arc::new(MemoryRegistry::new());
    let engine = SealedSession::sealed(keys())
        .secure(sealed_session::Secure::Never)
        .trust_proxy(true)
        .devices(Devices::new(registry.clone()).ip_prefix(true))
        .engine();
    let mut headers = ::http::HeaderMap::new();
    headers.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
    headers.append("x-forwarded-for", "198.51.100.9".parse().unwrap());
    let started = engine.start(head(&headers)).await.unwrap();
    started.session().set_subject("alice");
    let mut response = ::http::HeaderMap::new();
    engine.finish(&started, &mut response).await.unwrap();
    let list = registry
        .list("alice", Timestamp::from_millis(0))
        .await
        .unwrap();
    assert_eq!(list[0].ip_prefix.as_deref(), Some("198.51.100.0/24"));
}

/// A GET of `/` with `headers`, for the engine.
fn head(headers: &::http::HeaderMap) -> sealed_session::engine::RequestHead<'_> {
    static GET: ::http::Method = ::http::Method::GET;
    static URI: std::sync::LazyLock<::http::Uri> =
        std::sync::LazyLock::new(|| ::http::Uri::from_static("/"));
    sealed_session::engine::RequestHead::new(&GET, &URI, headers)
}
