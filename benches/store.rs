//! The express-session design over Redis against its peer, Poem's `ServerSession` with
//! `RedisStorage`, in one run: one read (a user object and a counter) and one write (the
//! counter incremented) of a ~200-byte session, with the same handlers on each side.
//!
//! Needs a `redis-server`: `SS_REDIS_URL=redis://127.0.0.1:PORT/ cargo bench --bench store
//! --features redis`. `bash benches/instructions.sh store` starts one on a free loopback port
//! and counts instructions per request under valgrind (callgrind), which the machine's load
//! cannot move.
//!
//! Requests are handed straight to the endpoint (no HTTP sockets); the Redis round trips are
//! real, over loopback, so a row is everything the middleware, its store client and the
//! handler do for one request.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use poem::http::header::{COOKIE, SET_COOKIE};
use poem::session::{
    CookieConfig as PoemCookieConfig, RedisStorage, ServerSession, Session as PoemSession,
};
use poem::{Endpoint, EndpointExt, Request, Route, get, handler};
use sealed_session::store::RedisStore;
use sealed_session::{Keyring, SealedSession, Session};
use serde::{Deserialize, Serialize};

/// The user object the session carries.
#[derive(Serialize, Deserialize)]
struct User {
    name: String,
    email: String,
    roles: Vec<String>,
}

fn user() -> User {
    User {
        name: "Alice".to_owned(),
        email: "alice@example.com".to_owned(),
        roles: vec!["admin".to_owned(), "editor".to_owned()],
    }
}

/// The rest of a ~200-byte session.
const CSRF: &str = "Qm9vdHN0cmFwIGEgY3NyZiB0b2tlbiBoZXJl";

#[handler]
fn ours_seed(session: &Session) -> poem::Result<()> {
    session.insert("user", &user())?;
    session.insert("views", &0u64)?;
    session.insert("csrf", &CSRF)?;
    session.insert("theme", &"dark")?;
    Ok(())
}
#[handler]
fn ours_read(session: &Session) -> poem::Result<String> {
    let user = session.get::<User>("user")?.map(|u| u.name);
    let views = session.get::<u64>("views")?.unwrap_or(0);
    Ok(format!("{user:?} {views}"))
}
#[handler]
fn ours_write(session: &Session) -> poem::Result<String> {
    let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", &n)?;
    Ok(n.to_string())
}

#[handler]
fn poem_seed(session: &PoemSession) {
    session.set("user", user());
    session.set("views", 0u64);
    session.set("csrf", CSRF);
    session.set("theme", "dark");
}
#[handler]
fn poem_read(session: &PoemSession) -> String {
    let user = session.get::<User>("user").map(|u| u.name);
    let views = session.get::<u64>("views").unwrap_or(0);
    format!("{user:?} {views}")
}
#[handler]
fn poem_write(session: &PoemSession) -> String {
    let n = session.get::<u64>("views").unwrap_or(0) + 1;
    session.set("views", n);
    n.to_string()
}

fn routes_ours() -> Route {
    Route::new()
        .at("/read", get(ours_read))
        .at("/write", get(ours_write))
        .at("/seed", get(ours_seed))
}
fn routes_poem() -> Route {
    Route::new()
        .at("/read", get(poem_read))
        .at("/write", get(poem_write))
        .at("/seed", get(poem_seed))
}

type App = Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>;

/// The two peers, each with the cookie of a seeded session.
struct Apps {
    ours: App,
    ours_cookie: String,
    poem: App,
    poem_cookie: String,
}

async fn cookie_of(ep: &App) -> String {
    let resp = ep
        .call(Request::builder().uri_str("/seed").finish())
        .await
        .expect("seed answers");
    let v = resp.headers().get(SET_COOKIE).expect("seed sets a cookie");
    let v = v.to_str().expect("ascii");
    v.split(';').next().expect("name=value").to_owned()
}

async fn apps(url: &str) -> Apps {
    let keys = Keyring::from_secret("bench secret bench secret bench secret!!").expect("key");
    let store = RedisStore::builder(url)
        .key_prefix("bench:ours:")
        .build()
        .await
        .expect("connect to Redis");
    let ours: App = Box::new(poem::endpoint::ToDynEndpoint(
        routes_ours()
            .with(SealedSession::server_store(store, keys))
            .map_to_response(),
    ));
    // As examples/compare.rs sets up its `poem-redis` mode.
    let client = poem_redis::Client::open(url).expect("Redis URL");
    let manager = poem_redis::aio::ConnectionManager::new(client)
        .await
        .expect("connect to Redis");
    let poem: App = Box::new(poem::endpoint::ToDynEndpoint(
        routes_poem()
            .with(ServerSession::new(
                PoemCookieConfig::default().max_age(Some(Duration::from_secs(24 * 3600))),
                RedisStorage::new(manager),
            ))
            .map_to_response(),
    ));
    let ours_cookie = cookie_of(&ours).await;
    let poem_cookie = cookie_of(&poem).await;
    Apps {
        ours,
        ours_cookie,
        poem,
        poem_cookie,
    }
}

async fn call(ep: &App, path: &str, cookie: &str) {
    let req = Request::builder()
        .uri_str(path)
        .header(COOKIE, cookie)
        .finish();
    let resp = ep.call(req).await.expect("an answer");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    black_box(resp);
}

impl Apps {
    fn pick(&self, variant: &str) -> (&App, &str) {
        match variant {
            "sealed_session_store" => (&self.ours, &self.ours_cookie),
            "poem_server_session" => (&self.poem, &self.poem_cookie),
            other => panic!("unknown variant {other}"),
        }
    }
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("SS_REDIS_URL") else {
        eprintln!(
            "store bench skipped: set SS_REDIS_URL (or run `bash benches/instructions.sh store`)"
        );
        return;
    };
    // `SS_THREADS=N`: a multi-threaded runtime with N workers, as a server runs, where the
    // Redis connection's task may run on another worker than the request's.
    let rt = match std::env::var("SS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("runtime");
    let apps = rt.block_on(apps(&url));

    // `SS_COUNT=<variant>/<read|write>`: that one case `SS_COUNT_ITERS` times, then exit, for
    // benches/instructions.sh.
    if let Ok(case) = std::env::var("SS_COUNT") {
        let iters: usize = std::env::var("SS_COUNT_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let (variant, op) = case.split_once('/').expect("variant/op");
        let (ep, cookie) = apps.pick(variant);
        let path = format!("/{op}");
        rt.block_on(async {
            for _ in 0..iters {
                call(ep, &path, cookie).await;
            }
        });
        std::process::exit(0);
    }

    let mut g = c.benchmark_group("store");
    for variant in ["sealed_session_store", "poem_server_session"] {
        for op in ["read", "write"] {
            let (ep, cookie) = apps.pick(variant);
            let path = format!("/{op}");
            g.bench_function(format!("{variant}/{op}"), |b| {
                b.to_async(&rt).iter(|| call(ep, &path, cookie))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
