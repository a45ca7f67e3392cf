//! The Redis store against a real `redis-server` started on a free loopback port: the `Store`
//! conformance suite, the keys and TTLs it writes, timeouts, and the middleware in store mode
//! with two instances sharing sessions, outages and recovery.
//!
//! Without `redis-server` on PATH each test prints `SKIPPED: ...` and passes, except under
//! `CI=true`, where it fails.
#![cfg(feature = "poem")]
#![cfg(feature = "redis")]

mod common {
    pub mod fixtures;
    pub mod lost_updates;
    pub mod redis;
    pub mod store_conformance;
}
mod http;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fixtures::{self, T0, clock};
use common::redis::{Proxy, RedisServer};
use common::store_conformance::{Expiry, conformance};
use http::handlers::{count, login_admin, logout, session_id, user};
use http::{Client, SetCookie, body};
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, Route, get, post};
use sealed_session::store::{RedisStore, Store, StoreError};
use sealed_session::{Clock, Keyring, SealedSession, SessionId, Timestamp};

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(url: &str) -> Vec<String> {
    let mut conn = raw(url).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

fn is_redis_backend(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend { store: "redis", .. })
}

/// Concurrent requests of one session through the middleware (both adapters), the store's
/// compare-and-set script deciding: no update is lost, no logout undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_lose_no_update_in_redis() {
    let Some(server) = RedisServer::start("concurrent_requests_lose_no_update_in_redis") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .key_prefix("test:lost:")
        .build()
        .await
        .unwrap();
    common::lost_updates::no_lost_updates(http::app::Adapter::Poem, &store, 5).await;
    #[cfg(feature = "tower")]
    common::lost_updates::no_lost_updates(http::app::Adapter::Tower, &store, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conformance() {
    let Some(server) = RedisServer::start("redis_store_conformance") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .key_prefix("test:conformance:")
        .build()
        .await
        .unwrap();
    conformance(&store, Expiry::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_the_prefix_and_the_id_and_prefixes_separate_stores() {
    let Some(server) = RedisServer::start("key prefix test") else {
        return;
    };
    let url = server.url();
    let default = RedisStore::connect(url.clone()).await.unwrap();
    assert_eq!(default.key_prefix(), "sess:", "connect-redis's default");
    let other = RedisStore::builder(url.clone())
        .key_prefix("app2:s:")
        .build()
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    let far = T0.saturating_add(Duration::from_secs(10 * 365 * 86_400));
    default.save(&id, b"one", far).await.unwrap();
    other.save(&id, b"two", far).await.unwrap();
    assert_eq!(
        keys(&url).await,
        vec![format!("app2:s:{id}"), format!("sess:{id}")]
    );
    let mut conn = raw(&url).await;
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("sess:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, b"one", "the record's bytes, as they are");
    assert_eq!(other.load(&id).await.unwrap().as_deref(), Some(&b"two"[..]));
    default.delete(&id).await.unwrap();
    assert_eq!(keys(&url).await, vec![format!("app2:s:{id}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ttl_is_the_time_left_on_the_stores_clock() {
    let Some(server) = RedisServer::start("TTL test") else {
        return;
    };
    let url = server.url();
    let clock = clock();
    let store = RedisStore::builder(url.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let mut conn = raw(&url).await;
    let id = SessionId::generate().unwrap();
    let pttl = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        let key = store.key(&id);
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .unwrap()
        }
    };

    store
        .save(&id, b"r", T0.saturating_add(Duration::from_secs(60)))
        .await
        .unwrap();
    let ttl = pttl(&mut conn).await;
    assert!((59_000..=60_000).contains(&ttl), "PTTL {ttl}");
    // The clock, not the system's, decides: 50 s later, 10 s are left.
    clock.advance(Duration::from_secs(50));
    store
        .save(&id, b"r", T0.saturating_add(Duration::from_secs(60)))
        .await
        .unwrap();
    let ttl = pttl(&mut conn).await;
    assert!((9_000..=10_000).contains(&ttl), "PTTL {ttl}");
    // update (the compare-and-set script) sets the TTL the same way.
    assert_eq!(
        store
            .update(&id, b"r", b"r", T0.saturating_add(Duration::from_secs(80)))
            .await
            .unwrap(),
        sealed_session::store::Update::Written
    );
    let ttl = pttl(&mut conn).await;
    assert!((29_000..=30_000).contains(&ttl), "PTTL {ttl}");
    // A deadline Redis would refuse as too far is shortened, not an error.
    store
        .save(&id, b"r", Timestamp::from_millis(u64::MAX))
        .await
        .unwrap();
    let ttl = pttl(&mut conn).await;
    let century = 100 * 365 * 86_400 * 1000;
    assert!((century - 1000..=century).contains(&ttl), "PTTL {ttl}");
    // Saving at the deadline deletes the key instead.
    store.save(&id, b"r", clock.now()).await.unwrap();
    assert_eq!(pttl(&mut conn).await, -2, "no such key");
}

#[tokio::test]
async fn unreachable_redis_fails_the_build_within_the_timeout() {
    let port = common::redis::free_port();
    let start = Instant::now();
    let err = RedisStore::builder(format!("redis://127.0.0.1:{port}/"))
        .timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap_err();
    assert!(is_redis_backend(&err), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let err = RedisStore::builder("not a url").build().await.unwrap_err();
    assert!(is_redis_backend(&err), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_fails_each_operation_at_the_timeout() {
    let Some(server) = RedisServer::start("stall test") else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let store = RedisStore::builder(server.url())
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    store
        .save(
            &id,
            b"r",
            T0.saturating_add(Duration::from_secs(3600 * 24 * 3650)),
        )
        .await
        .unwrap();
    // Redis answers no command of any client for 3 seconds.
    let mut conn = raw(&server.url()).await;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("ALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let start = Instant::now();
    let err = store.load(&id).await.unwrap_err();
    let took = start.elapsed();
    assert!(is_redis_backend(&err), "{err:?}");
    assert!(
        took >= timeout - Duration::from_millis(50) && took < timeout * 3,
        "{took:?}"
    );
    let chain = format!("{}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("timed out"), "{chain}");

    // Through the middleware: a 503 at the timeout, not a hang and not a new session.
    let mut c = Client::new(app(store.clone(), fixtures::keys()));
    c.jar.set(
        "__Host-sid",
        &sealed_session::codec::SessionIdCodec::new(fixtures::keys()).sign(&id, b"__Host-sid"),
    );
    let start = Instant::now();
    let (resp, set) = c.send(false, "/user").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
}

// ---- The middleware in store mode, on Redis ----

/// One application instance (on the system clock, as Redis expires keys in real time).
fn app(store: RedisStore, keys: Keyring) -> impl Endpoint {
    Route::new()
        .at("/login", post(login_admin))
        .at("/user", get(user))
        .at("/count", post(count))
        .at("/logout", post(logout))
        .at("/id", get(session_id))
        .with(SealedSession::server_store(store, keys).idle_timeout(Some(Duration::from_secs(600))))
}

/// Repeats a request until it succeeds; panics after `limit`.
async fn until_ok<E: Endpoint>(
    c: &mut Client<E>,
    post: bool,
    uri: &str,
    limit: Duration,
) -> (String, Duration) {
    let start = Instant::now();
    loop {
        let (resp, _) = c.send(post, uri).await;
        if resp.0.status() == StatusCode::OK {
            return (body(resp).await, start.elapsed());
        }
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            start.elapsed() < limit,
            "{uri} still failing after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_and_logout_on_one_ends_it_on_the_other() {
    let Some(server) = RedisServer::start("two instances test") else {
        return;
    };
    let url = server.url();
    // Two instances: separate connections, same Redis, prefix and keys.
    let store_a = RedisStore::builder(url.clone())
        .key_prefix("shop:sess:")
        .build()
        .await
        .unwrap();
    let store_b = RedisStore::builder(url.clone())
        .key_prefix("shop:sess:")
        .build()
        .await
        .unwrap();
    let mut a = Client::new(app(store_a, fixtures::keys()));
    let mut b = Client::new(app(store_b, fixtures::keys()));

    assert_eq!(a.text_ok(false, "/user").await, "<none>");
    assert!(
        keys(&url).await.is_empty(),
        "an empty session is not stored"
    );
    a.text_ok(true, "/login").await;
    let id = a.text_ok(false, "/id").await;
    assert_eq!(
        keys(&url).await,
        vec![format!("shop:sess:{id}")],
        "one key, under the prefix"
    );

    // The browser moves to instance B.
    b.jar = a.jar.clone();
    assert_eq!(b.text_ok(false, "/user").await, "admin");
    assert_eq!(b.text_ok(true, "/count").await, "1");
    a.jar = b.jar.clone();
    assert_eq!(
        a.text_ok(true, "/count").await,
        "2",
        "B's write is seen by A"
    );

    // Logout on A; the cookie, replayed on B, is refused and cleared.
    let stolen = a.jar.clone();
    let (resp, set) = a.send(true, "/logout").await;
    resp.assert_status_is_ok();
    assert!(set[0].is_removal(), "{set:?}");
    assert!(keys(&url).await.is_empty(), "the record is deleted");
    b.jar = stolen;
    let (resp, set) = b.send(false, "/user").await;
    resp.assert_status_is_ok();
    assert_eq!(resp.0.into_body().into_string().await.unwrap(), "<none>");
    assert!(
        set.first().is_some_and(SetCookie::is_removal),
        "the ended session's cookie is cleared: {set:?}"
    );
    // And it does not come back as a session with that id.
    b.text_ok(true, "/count").await;
    assert_ne!(b.text_ok(false, "/id").await, id, "no fixation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_is_a_503_and_service_resumes_after_restart() {
    let Some(mut server) = RedisServer::start("outage test") else {
        return;
    };
    let store = RedisStore::builder(server.url())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let mut c = Client::new(app(store.clone(), fixtures::keys()));
    let mut newcomer = Client::new(app(store, fixtures::keys()));
    c.text_ok(true, "/login").await;
    assert_eq!(c.text_ok(false, "/user").await, "admin");
    let cookie = c.jar.clone();

    server.stop();
    for uri in ["/user", "/count"] {
        let start = Instant::now();
        let (resp, set) = c.send(uri == "/count", uri).await;
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(set.is_empty(), "{uri}: the cookie is kept: {set:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    // A new visitor is not given a session that could not be saved.
    let (resp, set) = newcomer.send(true, "/count").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");
    assert_eq!(c.jar.cookies, cookie.cookies, "nothing was changed");

    // Redis comes back (empty: the test server keeps nothing on disk).
    server.restart();
    let (body, took) = until_ok(&mut c, false, "/user", Duration::from_secs(5)).await;
    eprintln!("served again {took:?} after the restart");
    assert_eq!(body, "<none>", "the session was lost with Redis's data");
    c.text_ok(true, "/login").await;
    assert_eq!(c.text_ok(false, "/user").await, "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_a_503_and_the_session_survives_it() {
    let Some(server) = RedisServer::start("cut-off test") else {
        return;
    };
    let proxy = Proxy::start(server.port()).await;
    let store = RedisStore::builder(proxy.url())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let mut c = Client::new(app(store, fixtures::keys()));
    c.text_ok(true, "/login").await;
    assert_eq!(c.text_ok(true, "/count").await, "1");

    proxy.cut();
    let (resp, set) = c.send(true, "/count").await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(set.is_empty(), "{set:?}");

    proxy.restore().await;
    let (body, took) = until_ok(&mut c, false, "/user", Duration::from_secs(5)).await;
    eprintln!("served again {took:?} after the connection came back");
    assert_eq!(body, "admin", "same cookie, same session");
    assert_eq!(
        c.text_ok(true, "/count").await,
        "2",
        "the failed request changed nothing"
    );
}
