//! The end-to-end comparison: one application (log in, a read-only route, a route that changes
//! the session, log out) served in each session design, driven over loopback HTTP/1.1 by a
//! bounded load generator written here, and measured side by side.
//!
//! ```sh
//! cargo run --release --example compare --all-features   # every mode; rewrites docs/
//! cargo run --release --example compare -- --quick       # a short smoke run, docs untouched
//! cargo run --example compare --all-features -- --quick --out /tmp/cmp   # the full report, elsewhere
//! cargo run --release --example compare -- --modes none,sealed --duration 1
//! ```
//!
//! `--quick` runs every mode very briefly (one round of 0.2 s windows after 0.05 s of
//! warm-up per route, 1,000 sessions for the memory column, 5 revocations, 0.2 s of polling
//! for the second instance): about 15 s for all ten modes even in a debug build, figures
//! that only show that every mode works, not what it costs. `--out DIR` writes the whole
//! report (`DIR/COMPARISON.md` with the same section, `DIR/comparison.svg`, and
//! `DIR/results.json`: per mode its status, `measured`, `skipped` or `failed`, the reason,
//! and its throughput) instead of rewriting `docs/`; `tests/compare_smoke.rs` runs
//! `--quick --out` on a temporary directory.
//!
//! Modes: `none` (no sessions), `none+cookie` (no sessions, but a cookie as long as the
//! sealed one goes back and forth: what its bytes cost), `none+work` (no sessions, but each
//! handler busy-waits 0.5 µs: a yardstick for what a given cost per request does to the
//! ratios here), `sealed` (AES-256-GCM cookie),
//! `sealed-nocache` (the same with the open cache off), `signed` (HMAC cookie),
//! `jwt` (HS256 JWT in `Authorization: Bearer`), `sealed+deny-memory`, `sealed+deny-redis` and
//! `sealed+deny-cluster` (the sealed cookie with a denylist: in memory, on one Redis, on a
//! Redis Cluster of 3 masters and 3 replicas), `sealed+devices` (the Redis denylist and a
//! Redis device registry, the login giving a subject), `sealed+dbsc` (the sealed cookie,
//! device-bound: each request carries the DBSC bound cookie beside it) and `jwt+dpop` (the
//! JWT row, DPoP required: each request carries a fresh ES256 proof, made by the load
//! generator), `store-memory`, `store-redis`,
//! `store-postgres` and `store-sqlite` (the express-session design: signed id cookie, data in
//! a store), and Poem's own `poem-cookie` (CookieSession, private) and `poem-redis`
//! (ServerSession + RedisStorage). The Redis modes start their own `redis-server` (from
//! `PATH`, or `COMPARE_REDIS_SERVER`) on a free loopback port and are listed as skipped, with
//! the reason, when there is none; `store-postgres` starts its own PostgreSQL the same way
//! (`initdb` in a temporary directory; skipped without one), and `store-sqlite` opens a file
//! in a temporary directory. `store-redis`, `store-postgres` and `store-sqlite` also need the
//! crate's `redis`, `postgres` and `sqlite` features.
//!
//! How it measures (also written into docs/COMPARISON.md):
//! - Every server is a child process of this binary (`compare --serve MODE`), on
//!   127.0.0.1, port 0, so its CPU time (`/proc/PID/stat` utime + stime) and its memory
//!   (`VmRSS` in `/proc/PID/status`) are its own, not the load generator's.
//! - The load generator runs in this (parent) process: a fixed number of connections, each
//!   one HTTP/1.1 keep-alive connection (a minimal client: one write per request, answers
//!   parsed with `httparse`) driven by one task that sends the next request when the
//!   previous answer is in (closed loop). Each connection logs in first and
//!   keeps its own session; cookies and bearer tokens the server sends back replace the old
//!   ones, as a browser or an SPA would. Warm-up, then a measured window of fixed length;
//!   only answers that arrive inside the window count.
//! - Every phase is bounded in time; the children exit when this process does (their stdin
//!   closes) and after 20 minutes in any case.
//! - By default the load generator and the servers share every CPU. `--pin` (Linux) puts the
//!   load generator on the first half of the CPUs and the servers and redis-server on the
//!   rest, and checks every thread of every child, as when the load comes from another
//!   machine (the case the targets' reference figures were measured in). A pinned run
//!   writes its own section of docs/BENCHMARKS.md (between `compare-pinned` markers) and
//!   `docs/comparison-pinned.svg`; `results.json` records the
//!   split.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::header::{AUTHORIZATION, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{Method, StatusCode};
use poem::endpoint::BoxEndpoint;
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::session::{
    CookieConfig as PoemCookieConfig, CookieSession, RedisStorage, ServerSession,
    Session as PoemSession,
};
use poem::web::cookie::CookieKey;
use poem::{EndpointExt as _, IntoResponse as _, Response, Route, Server, get, handler, post};
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::store::MemoryStore;
use sealed_session::{BearerConfig, Keyring, SealedSession, Session};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[cfg(feature = "tower")]
#[path = "support/compare_axum.rs"]
mod axum_app;
#[path = "support/compare_binding.rs"]
mod binding;
#[path = "support/compare_cluster.rs"]
mod cluster;
#[path = "support/compare_devices.rs"]
mod devices;
#[path = "support/compare_sql.rs"]
mod sql;
/// The tests' throw-away Redis topologies, for the Redis Cluster row.
#[cfg(feature = "redis")]
mod common {
    #[path = "../../tests/common/redis.rs"]
    pub mod redis;
    #[path = "../../tests/common/redis_topology.rs"]
    pub mod redis_topology;
}

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// The response header our bearer transport puts new tokens in.
const TOKEN_HEADER: &str = "x-session-token";
/// Linux reports `/proc/PID/stat` times in USER_HZ ticks, 100 per second (fixed by the ABI
/// on x86 and arm).
const USER_HZ: f64 = 100.0;
/// A child server exits by itself after this long, whatever happens to its parent.
const SERVER_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// Growth (bytes per live session) under which a server's memory counts as flat.
const FLAT_BYTES_PER_SESSION: f64 = 32.0;
/// The markers of the section a run writes into docs/COMPARISON.md: a pinned run (`--pin`)
/// has a section of its own, after the reference one.
fn markers(pinned: bool) -> (&'static str, &'static str) {
    if pinned {
        (
            "<!-- compare-pinned:begin -->",
            "<!-- compare-pinned:end -->",
        )
    } else {
        ("<!-- compare:begin -->", "<!-- compare:end -->")
    }
}

// ---------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    None,
    NoneCookie,
    NoneWork,
    Sealed,
    SealedNoCache,
    Signed,
    Jwt,
    SealedDenyMemory,
    SealedDenyRedis,
    SealedDenyCluster,
    SealedDevices,
    SealedDbsc,
    JwtDpop,
    StoreMemory,
    StoreRedis,
    StorePostgres,
    StoreSqlite,
    PoemCookie,
    PoemRedis,
    AxumNone,
    AxumSealed,
    AxumTowerSessions,
    AxumCookieStore,
}

const ALL_MODES: [Mode; 23] = [
    Mode::None,
    Mode::NoneCookie,
    Mode::NoneWork,
    Mode::Sealed,
    Mode::SealedNoCache,
    Mode::Signed,
    Mode::Jwt,
    Mode::SealedDenyMemory,
    Mode::SealedDenyRedis,
    Mode::SealedDenyCluster,
    Mode::SealedDevices,
    Mode::SealedDbsc,
    Mode::JwtDpop,
    Mode::StoreMemory,
    Mode::StoreRedis,
    Mode::StorePostgres,
    Mode::StoreSqlite,
    Mode::PoemCookie,
    Mode::PoemRedis,
    Mode::AxumNone,
    Mode::AxumSealed,
    Mode::AxumTowerSessions,
    Mode::AxumCookieStore,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    None,
    Cookie,
    Bearer,
    /// `Authorization: DPoP` with a fresh proof on each request.
    Dpop,
}

impl Mode {
    fn key(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::NoneCookie => "none+cookie",
            Mode::NoneWork => "none+work",
            Mode::Sealed => "sealed",
            Mode::SealedNoCache => "sealed-nocache",
            Mode::Signed => "signed",
            Mode::Jwt => "jwt",
            Mode::SealedDenyMemory => "sealed+deny-memory",
            Mode::SealedDenyRedis => "sealed+deny-redis",
            Mode::SealedDenyCluster => "sealed+deny-cluster",
            Mode::SealedDevices => "sealed+devices",
            Mode::SealedDbsc => "sealed+dbsc",
            Mode::JwtDpop => "jwt+dpop",
            Mode::StoreMemory => "store-memory",
            Mode::StoreRedis => "store-redis",
            Mode::StorePostgres => "store-postgres",
            Mode::StoreSqlite => "store-sqlite",
            Mode::PoemCookie => "poem-cookie",
            Mode::PoemRedis => "poem-redis",
            Mode::AxumNone => "axum-none",
            Mode::AxumSealed => "axum-sealed",
            Mode::AxumTowerSessions => "axum-tower-sessions",
            Mode::AxumCookieStore => "axum-cookie-store",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::None => "no sessions",
            Mode::NoneCookie => "no sessions, a cookie of the same size",
            Mode::NoneWork => "no sessions, 0.5 µs more handler work",
            Mode::Sealed => "sealed cookie (AES-256-GCM)",
            Mode::SealedNoCache => "sealed cookie, open cache off",
            Mode::Signed => "signed cookie (HMAC-SHA256)",
            Mode::Jwt => JWT_LABEL,
            Mode::SealedDenyMemory => "sealed cookie + MemoryDenylist",
            Mode::SealedDenyRedis => "sealed cookie + RedisDenylist",
            Mode::SealedDenyCluster => "sealed cookie + RedisDenylist on Redis Cluster",
            Mode::SealedDevices => "sealed cookie + RedisDenylist + RedisRegistry (your devices)",
            Mode::SealedDbsc => "sealed cookie, device-bound (DBSC bound cookie)",
            Mode::JwtDpop => "JWT bearer (HS256), DPoP-bound (ES256 proof per request)",
            Mode::StoreMemory => "store-backed, memory",
            Mode::StoreRedis => "store-backed, Redis",
            Mode::StorePostgres => "store-backed, PostgreSQL (its CPU not counted)",
            Mode::StoreSqlite => "store-backed, SQLite file (WAL)",
            Mode::PoemCookie => "Poem CookieSession (private)",
            Mode::PoemRedis => "Poem ServerSession + RedisStorage",
            Mode::AxumNone => "axum, no sessions",
            Mode::AxumSealed => "axum + sealed cookie (SealedSession::layer)",
            Mode::AxumTowerSessions => "axum + tower-sessions (MemoryStore)",
            Mode::AxumCookieStore => "axum + tower-sessions-cookie-store (private)",
        }
    }

    fn from_key(s: &str) -> Option<Mode> {
        ALL_MODES.into_iter().find(|m| m.key() == s)
    }

    fn transport(self) -> Transport {
        match self {
            Mode::None | Mode::NoneWork | Mode::AxumNone => Transport::None,
            Mode::Jwt => Transport::Bearer,
            Mode::JwtDpop => Transport::Dpop,
            _ => Transport::Cookie,
        }
    }

    fn uses_redis(self) -> bool {
        matches!(
            self,
            Mode::StoreRedis | Mode::PoemRedis | Mode::SealedDenyRedis | Mode::SealedDevices
        )
    }

    fn is_axum(self) -> bool {
        matches!(
            self,
            Mode::AxumNone | Mode::AxumSealed | Mode::AxumTowerSessions | Mode::AxumCookieStore
        )
    }

    /// Why this mode cannot run in this build or on this machine.
    fn skip_reason(self, redis: &Option<PathBuf>) -> Option<String> {
        if self.is_axum() && !cfg!(feature = "tower") {
            return Some("skipped: built without the tower feature (axum rows)".into());
        }
        if matches!(self, Mode::SealedDbsc | Mode::JwtDpop)
            && !cfg!(any(feature = "jwt", feature = "jwt-rust-crypto"))
        {
            return Some("skipped: built without the jwt feature (DPoP and DBSC)".into());
        }
        if matches!(
            self,
            Mode::StoreRedis
                | Mode::SealedDenyRedis
                | Mode::SealedDenyCluster
                | Mode::SealedDevices
        ) && !cfg!(feature = "redis")
        {
            return Some("skipped: built without the redis feature".into());
        }
        if self.uses_redis() && redis.is_none() {
            return Some("skipped: no redis-server found (PATH or COMPARE_REDIS_SERVER)".into());
        }
        match self {
            Mode::SealedDenyCluster => cluster::missing(),
            Mode::StorePostgres => sql::postgres_missing(),
            Mode::StoreSqlite => sql::sqlite_missing(),
            _ => None,
        }
    }
}

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
const JWT_LABEL: &str = "JWT bearer (HS256)";
#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
const JWT_LABEL: &str = "bearer (sealed token; built without the jwt feature)";

// ---------------------------------------------------------------------------------------
// The application, three times: our Session, Poem's Session, no session
// ---------------------------------------------------------------------------------------

/// About 200 bytes of session data as JSON (the same as benches/middleware.rs).
fn login_data() -> serde_json::Map<String, Value> {
    match serde_json::json!({
        "user": "alice@example.com",
        "roles": ["admin", "editor"],
        "csrf": "Qm9vdHN0cmFwIGEgY3NyZiB0b2tlbiBoZXJl",
        "cart": [101, 202, 303],
        "theme": "dark",
        "views": 1
    }) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn unauthorized() -> poem::Error {
    poem::Error::from_status(poem::http::StatusCode::UNAUTHORIZED)
}

#[handler]
fn ours_login(session: &Session) -> poem::Result<&'static str> {
    session.regenerate()?;
    for (k, v) in login_data() {
        session.insert(&k, &v)?;
    }
    Ok("ok")
}
/// The read route's page: what an application reads on most requests, the signed-in user
/// (name and roles) and a counter, not one string.
fn page(user: &str, roles: &[String], views: u64) -> String {
    format!("{user} ({} roles), {views} views", roles.len())
}
#[handler]
fn ours_read(session: &Session) -> poem::Result<String> {
    let user = session.get::<String>("user")?.ok_or_else(unauthorized)?;
    let roles = session.get::<Vec<String>>("roles")?.unwrap_or_default();
    let views = session.get::<u64>("views")?.unwrap_or(0);
    Ok(page(&user, &roles, views))
}
#[handler]
fn ours_write(session: &Session) -> poem::Result<String> {
    if !session.contains("user")? {
        return Err(unauthorized());
    }
    let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", &n)?;
    Ok(n.to_string())
}
#[handler]
fn ours_logout(session: &Session) -> poem::Result<&'static str> {
    session.destroy()?;
    Ok("bye")
}

#[handler]
fn poem_login(session: &PoemSession) -> &'static str {
    session.clear();
    for (k, v) in login_data() {
        session.set(&k, v);
    }
    session.renew();
    "ok"
}
#[handler]
fn poem_read(session: &PoemSession) -> poem::Result<String> {
    let user = session.get::<String>("user").ok_or_else(unauthorized)?;
    let roles = session.get::<Vec<String>>("roles").unwrap_or_default();
    let views = session.get::<u64>("views").unwrap_or(0);
    Ok(page(&user, &roles, views))
}
#[handler]
fn poem_write(session: &PoemSession) -> poem::Result<String> {
    if session.get::<Value>("user").is_none() {
        return Err(unauthorized());
    }
    let n = session.get::<u64>("views").unwrap_or(0) + 1;
    session.set("views", n);
    Ok(n.to_string())
}
#[handler]
fn poem_logout(session: &PoemSession) -> &'static str {
    session.purge();
    "bye"
}

#[handler]
fn none_login() -> &'static str {
    "ok"
}
/// A cookie as long as the sealed cookie's, for the `none+cookie` row: what carrying the
/// bytes costs, with no session behind them. Made once: the row measures the bytes, not
/// building them.
fn filler_cookie() -> HeaderValue {
    static COOKIE: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
        let text = format!(
            "__Host-sid={}; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Lax",
            "A".repeat(313)
        );
        Box::leak(text.into_boxed_str())
    });
    // Static bytes: a clone is a copy of a pointer, with no count shared between threads.
    HeaderValue::from_static(&COOKIE)
}
/// The answer of the no-session route, made as the other rows' handlers make theirs (a
/// `String` into a response, with its content type), with the filler cookie.
fn with_filler_cookie(body: String) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().append(SET_COOKIE, filler_cookie());
    resp
}
#[handler]
fn filler_login() -> Response {
    with_filler_cookie("ok".to_owned())
}
#[handler]
fn filler_write() -> Response {
    let mut resp = with_filler_cookie(2u64.to_string());
    resp.headers_mut().insert(
        poem::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}
/// Handler work the `none+work` row adds to each request: a yardstick for what a session's
/// cost means in this harness.
const WORK: Duration = Duration::from_nanos(500);
/// Busy-waits [`WORK`] by the clock, as a handler computing for that long would take the
/// CPU (the clock is read about every 25 ns here, so the wait overshoots by about that).
fn busy_work() {
    let start = Instant::now();
    while start.elapsed() < WORK {
        std::hint::spin_loop();
    }
}
/// The page the session rows' read route makes, from data the no-session rows have without
/// a session.
fn sessionless_page() -> String {
    let roles = ["admin".to_owned(), "editor".to_owned()];
    page("alice@example.com", &roles, 1)
}
#[handler]
fn work_read() -> String {
    busy_work();
    sessionless_page()
}
#[handler]
fn work_write() -> String {
    busy_work();
    2u64.to_string()
}
#[handler]
fn none_read() -> String {
    sessionless_page()
}
#[handler]
fn none_write() -> String {
    2u64.to_string()
}

fn routes_ours() -> Route {
    Route::new()
        .at("/login", post(ours_login))
        .at("/read", get(ours_read))
        .at("/write", post(ours_write))
        .at("/logout", post(ours_logout))
}
fn routes_poem() -> Route {
    Route::new()
        .at("/login", post(poem_login))
        .at("/read", get(poem_read))
        .at("/write", post(poem_write))
        .at("/logout", post(poem_logout))
}
fn routes_filler() -> Route {
    Route::new()
        .at("/login", post(filler_login))
        .at("/read", get(none_read))
        .at("/write", post(filler_write))
        .at("/logout", post(none_login))
}
fn routes_work() -> Route {
    Route::new()
        .at("/login", post(none_login))
        .at("/read", get(work_read))
        .at("/write", post(work_write))
        .at("/logout", post(none_login))
}
fn routes_none() -> Route {
    Route::new()
        .at("/login", post(none_login))
        .at("/read", get(none_read))
        .at("/write", post(none_write))
        .at("/logout", post(none_login))
}

/// What a server child gets from its parent (through the environment).
struct ServerEnv {
    /// The sealed-session key ring (`id:base64`).
    keys: String,
    /// 32 random bytes, hex: Poem's cookie key and the JWT HMAC key are derived from it.
    secret: Vec<u8>,
    redis_url: Option<String>,
    /// `sealed+deny-cluster`: the cluster's nodes, comma-separated URLs.
    cluster_urls: Option<String>,
    /// `store-postgres`: the database's URL.
    postgres_url: Option<String>,
    /// `store-sqlite`: the database file, which both instances open.
    sqlite_path: Option<String>,
}

impl ServerEnv {
    fn from_env() -> Result<ServerEnv> {
        let keys = std::env::var("COMPARE_KEYS").map_err(|_| "COMPARE_KEYS is not set")?;
        let secret =
            hex_decode(&std::env::var("COMPARE_SECRET").map_err(|_| "COMPARE_SECRET is not set")?)?;
        Ok(ServerEnv {
            keys,
            secret,
            redis_url: std::env::var("COMPARE_REDIS_URL").ok(),
            cluster_urls: std::env::var("COMPARE_REDIS_CLUSTER").ok(),
            postgres_url: std::env::var("COMPARE_POSTGRES_URL").ok(),
            sqlite_path: std::env::var("COMPARE_SQLITE_PATH").ok(),
        })
    }
}

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
fn bearer_session(env: &ServerEnv, _keys: Keyring) -> Result<SealedSession> {
    use sealed_session::{JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring};
    let key = JwtKey::hmac("k1", JwtAlgorithm::HS256, &env.secret)?;
    let codec = JwtCodec::builder(JwtKeyring::new([key])?)
        .issuer("compare")
        .audience("compare")
        .build()?;
    Ok(SealedSession::with_codec(codec).bearer(BearerConfig::new()))
}
#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
fn bearer_session(_env: &ServerEnv, keys: Keyring) -> Result<SealedSession> {
    Ok(SealedSession::sealed(keys).bearer(BearerConfig::new()))
}

#[cfg(feature = "redis")]
async fn redis_denylist(url: &str) -> Result<Arc<dyn Denylist>> {
    Ok(Arc::new(
        sealed_session::denylist::RedisDenylist::builder(url)
            .build()
            .await?,
    ))
}
#[cfg(feature = "redis")]
async fn redis_store_session(url: &str, keys: Keyring) -> Result<SealedSession> {
    let store = sealed_session::store::RedisStore::connect(url).await?;
    Ok(SealedSession::server_store(store, keys))
}
#[cfg(not(feature = "redis"))]
async fn redis_store_session(_url: &str, _keys: Keyring) -> Result<SealedSession> {
    Err("built without the redis feature".into())
}
#[cfg(not(feature = "redis"))]
async fn redis_denylist(_url: &str) -> Result<Arc<dyn Denylist>> {
    Err("built without the redis feature".into())
}

async fn build_app(mode: Mode, env: &ServerEnv) -> Result<BoxEndpoint<'static, Response>> {
    let keys: Keyring = env.keys.parse()?;
    let redis_url = || {
        env.redis_url
            .clone()
            .ok_or("this mode needs COMPARE_REDIS_URL")
    };
    Ok(match mode {
        Mode::None => routes_none().map_to_response().boxed(),
        Mode::NoneCookie => routes_filler().map_to_response().boxed(),
        Mode::NoneWork => routes_work().map_to_response().boxed(),
        Mode::Sealed => routes_ours()
            .with(SealedSession::sealed(keys))
            .map_to_response()
            .boxed(),
        Mode::SealedNoCache => routes_ours()
            .with(SealedSession::sealed(keys).open_cache(0))
            .map_to_response()
            .boxed(),
        Mode::Signed => routes_ours()
            .with(SealedSession::signed(keys))
            .map_to_response()
            .boxed(),
        Mode::Jwt => routes_ours()
            .with(bearer_session(env, keys)?)
            .map_to_response()
            .boxed(),
        Mode::SealedDenyMemory => routes_ours()
            .with(SealedSession::sealed(keys).denylist(Arc::new(MemoryDenylist::new())))
            .map_to_response()
            .boxed(),
        Mode::SealedDenyRedis => routes_ours()
            .with(SealedSession::sealed(keys).denylist(redis_denylist(&redis_url()?).await?))
            .map_to_response()
            .boxed(),
        Mode::SealedDevices => devices::app(&redis_url()?, keys).await?,
        Mode::SealedDbsc => binding::dbsc_app(keys),
        Mode::JwtDpop => binding::dpop_app(bearer_session(env, keys)?),
        Mode::SealedDenyCluster => {
            let nodes = env
                .cluster_urls
                .as_deref()
                .ok_or("this mode needs COMPARE_REDIS_CLUSTER")?;
            routes_ours()
                .with(SealedSession::sealed(keys).denylist(cluster::denylist(nodes).await?))
                .map_to_response()
                .boxed()
        }
        Mode::StoreMemory => routes_ours()
            .with(SealedSession::server_store(MemoryStore::new(), keys))
            .map_to_response()
            .boxed(),
        Mode::StoreRedis => routes_ours()
            .with(redis_store_session(&redis_url()?, keys).await?)
            .map_to_response()
            .boxed(),
        Mode::StorePostgres => {
            let url = env
                .postgres_url
                .as_deref()
                .ok_or("this mode needs COMPARE_POSTGRES_URL")?;
            routes_ours()
                .with(sql::postgres_session(url, keys).await?)
                .map_to_response()
                .boxed()
        }
        Mode::StoreSqlite => {
            let path = env
                .sqlite_path
                .as_deref()
                .ok_or("this mode needs COMPARE_SQLITE_PATH")?;
            routes_ours()
                .with(sql::sqlite_session(path, keys).await?)
                .map_to_response()
                .boxed()
        }
        Mode::PoemCookie => routes_poem()
            .with(CookieSession::new(PoemCookieConfig::private(
                CookieKey::derive_from(&env.secret),
            )))
            .map_to_response()
            .boxed(),
        Mode::PoemRedis => {
            let client = poem_redis::Client::open(redis_url()?)?;
            let manager = poem_redis::aio::ConnectionManager::new(client).await?;
            routes_poem()
                .with(ServerSession::new(
                    PoemCookieConfig::default().max_age(Some(Duration::from_secs(24 * 3600))),
                    RedisStorage::new(manager),
                ))
                .map_to_response()
                .boxed()
        }
        Mode::AxumNone | Mode::AxumSealed | Mode::AxumTowerSessions | Mode::AxumCookieStore => {
            return Err(format!("{} is served by axum", mode.key()).into());
        }
    })
}

/// `compare --serve MODE`: serve the application on 127.0.0.1, port 0; print `port N`; exit
/// when stdin closes (the parent is gone) or after [`SERVER_LIFETIME`].
fn serve(mode: Mode, threads: usize) -> Result<()> {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(SERVER_LIFETIME);
        std::process::exit(2);
    });
    let env = ServerEnv::from_env()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        #[cfg(feature = "tower")]
        if mode.is_axum() {
            return axum_app::serve(mode, &env).await;
        }
        let app = build_app(mode, &env).await?;
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(SocketAddr::port))
            .ok_or("the listener has no socket address")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "port {port}")?;
        out.flush()?;
        drop(out);
        Server::new_with_acceptor(acceptor).run(app).await?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// `--pin`: the load generator on some CPUs, the servers and redis-server on the others
// ---------------------------------------------------------------------------------------

/// Which CPUs `--pin` gives the load generator and which the servers (and redis-server).
#[derive(Clone, Debug)]
struct Pinning {
    client: Vec<usize>,
    server: Vec<usize>,
}

impl Pinning {
    /// Splits the CPUs this process may run on: the first half (rounded down) for the load
    /// generator, the rest for the servers.
    fn split(allowed: &[usize]) -> Result<Pinning> {
        if allowed.len() < 2 {
            return Err(format!(
                "--pin needs at least 2 CPUs, and this process may run on {}",
                allowed.len()
            )
            .into());
        }
        let (client, server) = allowed.split_at(allowed.len() / 2);
        Ok(Pinning {
            client: client.to_vec(),
            server: server.to_vec(),
        })
    }
}

/// A CPU list as Linux writes it (`0-3,8,10-11`), or as `--pin` prints it.
fn cpu_list(cpus: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while let Some(&first) = cpus.get(i) {
        let mut last = first;
        while cpus.get(i + 1) == Some(&(last + 1)) {
            last += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = if last == first {
            write!(out, "{first}")
        } else {
            write!(out, "{first}-{last}")
        };
        i += 1;
    }
    out
}

fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse()?, b.trim().parse()?);
        if a > b || b >= 4096 {
            return Err(format!("bad CPU range {part:?}").into());
        }
        cpus.extend(a..=b);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// The CPUs a process or thread may run on: `Cpus_allowed_list` in its `status` file
/// (`/proc/PID/status`, `/proc/PID/task/TID/status`).
fn allowed_cpus(status: &Path) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(status)?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| format!("no Cpus_allowed_list in {}", status.display()))?;
    parse_cpu_list(list)
}

/// Restricts the calling thread to `cpus`. Threads and processes it starts afterwards inherit
/// the restriction.
#[cfg(target_os = "linux")]
fn pin_thread(cpus: &[usize]) -> Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array, for which all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} is beyond what sched_setaffinity takes").into());
        }
        // SAFETY: `cpu` is within the set's bits (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the kernel reads `size_of` bytes of `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(format!(
            "sched_setaffinity({}): {}",
            cpu_list(cpus),
            std::io::Error::last_os_error()
        )
        .into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn pin_thread(_cpus: &[usize]) -> Result<()> {
    Err("--pin needs Linux (sched_setaffinity)".into())
}

/// Checks that every thread of child process `pid` (`what`) may run on `cpus` only.
fn check_pinned(pid: u32, cpus: &[usize], what: &str) -> Result<()> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    for task in std::fs::read_dir(&dir)? {
        let task = task?.path();
        let got = match allowed_cpus(&task.join("status")) {
            Ok(got) => got,
            // A thread that ended since the listing runs nowhere.
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if got != cpus {
            return Err(format!(
                "--pin: {what} (pid {pid}, {}) may run on CPUs {}, not only {}",
                task.display(),
                cpu_list(&got),
                cpu_list(cpus)
            )
            .into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Child processes: the servers and redis-server
// ---------------------------------------------------------------------------------------

/// A server child process; killed and reaped on drop.
struct ServerProc {
    child: Child,
    addr: SocketAddr,
}

impl ServerProc {
    fn start(
        mode: Mode,
        run: &RunEnv,
        redis: Option<&RedisServer>,
        sql: &Backend,
    ) -> Result<ServerProc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--serve", mode.key(), "--server-threads"])
            .arg(run.server_threads.to_string())
            .env("COMPARE_KEYS", &run.keys)
            .env("COMPARE_SECRET", hex_encode(&run.secret))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(r) = redis {
            cmd.env(
                "COMPARE_REDIS_URL",
                format!("redis://127.0.0.1:{}/", r.port),
            );
        }
        match sql {
            Backend::None => {}
            Backend::Postgres(server) => {
                cmd.env("COMPARE_POSTGRES_URL", server.url());
            }
            Backend::Sqlite(dir) => {
                cmd.env("COMPARE_SQLITE_PATH", dir.join("sessions.db"));
            }
            Backend::Cluster(cluster) => {
                cmd.env("COMPARE_REDIS_CLUSTER", cluster.urls());
            }
        }
        let mut child = cmd.spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse::<u16>().ok());
        match port {
            Some(port) => Ok(ServerProc {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the {} server did not start (see its error above)",
                    mode.key()
                )
                .into())
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a row needs besides a single redis-server: a PostgreSQL server, the directory of a
/// SQLite file (removed on drop), or a Redis Cluster.
enum Backend {
    None,
    Postgres(sql::PgServer),
    Sqlite(PathBuf),
    Cluster(cluster::Cluster),
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A private redis-server on a free loopback port, no persistence; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

fn find_redis_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COMPARE_REDIS_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl RedisServer {
    fn start(bin: &Path) -> Result<RedisServer> {
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if server.ping().is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server did not answer on port {port}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> Result<()> {
        let mut s = StdTcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        if &buf == b"+PONG\r\n" {
            Ok(())
        } else {
            Err("unexpected answer to PING".into())
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Process CPU time (user + system, all threads, living and exited).
fn proc_cpu(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("bad /proc stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `f[0]` is field 3.
    let ticks: f64 = f.get(11).ok_or("bad /proc stat")?.parse::<f64>()?
        + f.get(12).ok_or("bad /proc stat")?.parse::<f64>()?;
    Ok(Duration::from_secs_f64(ticks / USER_HZ))
}

/// Resident set size, bytes.
fn proc_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}

// ---------------------------------------------------------------------------------------
// The client: one keep-alive connection per task, and a cookie jar / bearer slot
// ---------------------------------------------------------------------------------------

/// A client's session: its cookies (name, value) or its bearer token, and the request header
/// line that carries them, built once per change (as a load generator replaying a recorded
/// header would send it), so that the client's cost does not grow with the mode's state
/// beyond the bytes it sends.
#[derive(Clone, Default)]
struct Jar {
    cookies: Vec<(String, String)>,
    bearer: Option<String>,
    /// DBSC: the `Secure-Session-Registration` of the last answer, if any.
    offer: Option<String>,
    /// The client's key (DBSC registration, DPoP proofs).
    key: Option<Arc<binding::ClientKey>>,
    /// A header line sent once (a DBSC registration's proof).
    extra: Option<String>,
    /// `cookie: ...\r\n` or `authorization: Bearer ...\r\n`, empty for none; valid while
    /// `line_for` is the transport it was built for.
    line: Vec<u8>,
    line_for: Option<Transport>,
}

/// Wire size of a header line: `name: value\r\n`.
fn line_len(name: &str, value_len: usize) -> usize {
    name.len() + 2 + value_len + 2
}

impl Jar {
    /// The session's request header line for transport `t` (empty when there is none).
    fn request_line(&mut self, t: Transport) -> &[u8] {
        if self.line_for != Some(t) {
            self.line.clear();
            match t {
                Transport::Cookie if !self.cookies.is_empty() => {
                    self.line.extend_from_slice(COOKIE.as_str().as_bytes());
                    self.line.extend_from_slice(b": ");
                    for (i, (n, val)) in self.cookies.iter().enumerate() {
                        if i > 0 {
                            self.line.extend_from_slice(b"; ");
                        }
                        self.line.extend_from_slice(n.as_bytes());
                        self.line.push(b'=');
                        self.line.extend_from_slice(val.as_bytes());
                    }
                    self.line.extend_from_slice(b"\r\n");
                }
                Transport::Bearer | Transport::Dpop => {
                    if let Some(tok) = &self.bearer {
                        self.line
                            .extend_from_slice(AUTHORIZATION.as_str().as_bytes());
                        self.line.extend_from_slice(b": Bearer ");
                        self.line.extend_from_slice(tok.as_bytes());
                        self.line.extend_from_slice(b"\r\n");
                    }
                }
                _ => {}
            }
            self.line_for = Some(t);
        }
        &self.line
    }

    /// Takes in the session headers of a response; returns their wire size.
    fn absorb(&mut self, headers: &[httparse::Header<'_>]) -> usize {
        let mut n = 0;
        for h in headers {
            if h.name.eq_ignore_ascii_case(SET_COOKIE.as_str()) {
                n += line_len("set-cookie", h.value.len());
                if let Ok(v) = std::str::from_utf8(h.value) {
                    self.set_cookie(v);
                }
            } else if h.name.eq_ignore_ascii_case("secure-session-registration") {
                self.offer = std::str::from_utf8(h.value).ok().map(str::to_owned);
            } else if h.name.eq_ignore_ascii_case(TOKEN_HEADER) {
                n += line_len(TOKEN_HEADER, h.value.len());
                if let Ok(v) = std::str::from_utf8(h.value) {
                    let tok = self.bearer.get_or_insert_with(String::new);
                    tok.clear();
                    tok.push_str(v);
                    self.line_for = None;
                }
            }
        }
        n
    }

    fn set_cookie(&mut self, header: &str) {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim());
        let removed = value.is_empty()
            || parts.any(|a| {
                let a = a.trim();
                a.get(..8)
                    .is_some_and(|k| k.eq_ignore_ascii_case("max-age="))
                    && a.get(8..).is_some_and(|v| v == "0" || v.starts_with('-'))
            });
        self.line_for = None;
        let at = self.cookies.iter().position(|(n, _)| n == name);
        match (at, removed) {
            (Some(i), false) => {
                let v = &mut self.cookies[i].1;
                v.clear();
                v.push_str(value);
            }
            (Some(i), true) => {
                self.cookies.remove(i);
            }
            (None, false) => self.cookies.push((name.to_owned(), value.to_owned())),
            (None, true) => {}
        }
    }
}

/// One keep-alive HTTP/1.1 connection, written and read directly: the request is formatted
/// into one buffer and written with one call, the answer parsed with `httparse`. A general
/// client (hyper's, which this harness used at first) costs the load generator several
/// times more per request, CPU taken from the servers on a small machine, which pulls every
/// throughput ratio towards 1.
struct Conn {
    stream: tokio::net::TcpStream,
    /// The request being written, reused.
    out: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

struct Answer {
    status: StatusCode,
    /// Wire bytes of session state: the request's Cookie / Authorization line and the
    /// response's Set-Cookie / X-Session-Token lines.
    session_bytes: usize,
}

/// Answers larger than this (head and body) are refused: the application's are tiny.
const MAX_ANSWER: usize = 64 * 1024;

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(1024),
            buf: Vec::with_capacity(4096),
        })
    }

    async fn send(
        &mut self,
        method: &Method,
        path: &str,
        jar: &mut Jar,
        t: Transport,
    ) -> Result<Answer> {
        self.out.clear();
        for part in [
            method.as_str(),
            " ",
            path,
            " HTTP/1.1\r\nhost: 127.0.0.1\r\n",
        ] {
            self.out.extend_from_slice(part.as_bytes());
        }
        let mut session_bytes = 0;
        if t == Transport::Dpop {
            // A fresh proof per request, as the standard asks: made here, by the client.
            let key = jar
                .key
                .get_or_insert_with(|| Arc::new(binding::ClientKey::generate()));
            let proof = key.dpop_proof(method.as_str(), "127.0.0.1", path, jar.bearer.as_deref());
            let start = self.out.len();
            if let Some(tok) = &jar.bearer {
                self.out.extend_from_slice(b"authorization: DPoP ");
                self.out.extend_from_slice(tok.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(b"dpop: ");
            self.out.extend_from_slice(proof.as_bytes());
            self.out.extend_from_slice(b"\r\n");
            session_bytes += self.out.len() - start;
        } else {
            let line = jar.request_line(t);
            session_bytes += line.len();
            self.out.extend_from_slice(line);
        }
        if let Some(extra) = &jar.extra {
            self.out.extend_from_slice(extra.as_bytes());
        }
        if *method == Method::POST {
            self.out.extend_from_slice(b"content-length: 0\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.out).await?;

        // Read until the head is complete, then until the body (Content-Length) is in.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = resp.parse(&self.buf)? {
                let status = StatusCode::from_u16(resp.code.unwrap_or(0))?;
                let mut body = 0usize;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        body = std::str::from_utf8(h.value)?.trim().parse()?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err("chunked answers are not supported by this client".into());
                    }
                }
                let total = head + body;
                if total > MAX_ANSWER {
                    return Err(format!("answer of {total} bytes").into());
                }
                if self.buf.len() >= total {
                    session_bytes += jar.absorb(resp.headers);
                    self.buf.drain(..total);
                    return Ok(Answer {
                        status,
                        session_bytes,
                    });
                }
            }
            if self.buf.len() > MAX_ANSWER {
                return Err("answer too large".into());
            }
            self.buf.reserve(4096);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed by the server".into());
            }
        }
    }

    async fn login(&mut self, t: Transport) -> Result<Jar> {
        let mut jar = Jar::default();
        let a = self.send(&Method::POST, "/login", &mut jar, t).await?;
        if a.status != StatusCode::OK {
            return Err(format!("login answered {}", a.status).into());
        }
        // DBSC: register a key, as a browser that supports it does after a sign-in.
        if let Some(offer) = jar.offer.take() {
            let key = Arc::new(binding::ClientKey::generate());
            let (path, proof) = key
                .registration(&offer)
                .ok_or("a registration offer without path or challenge")?;
            jar.extra = Some(format!("secure-session-response: {proof}\r\n"));
            let a = self.send(&Method::POST, &path, &mut jar, t).await?;
            jar.extra = None;
            jar.key = Some(key);
            if a.status != StatusCode::OK {
                return Err(format!("DBSC registration answered {}", a.status).into());
            }
        }
        Ok(jar)
    }
}

/// `--login ADDR MODE`: logs in as a connection of the load generator does and prints the
/// header line its requests carry (`cookie: ...`), for a client outside this harness.
fn print_login(addr: SocketAddr, mode: Mode) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let line = rt.block_on(async {
        let mut conn = Conn::open(addr).await?;
        let mut jar = conn.login(mode.transport()).await?;
        Ok::<_, Error>(jar.request_line(mode.transport()).to_vec())
    })?;
    let mut out = std::io::stdout().lock();
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The measurements
// ---------------------------------------------------------------------------------------

/// One route under load.
#[derive(Clone, Debug, Default)]
struct Phase {
    errors: u64,
    first_error: Option<String>,
    rps: f64,
    /// Throughput of each round, in round order: every round measures every mode once,
    /// close together in time, so the same round of two modes can be compared.
    round_rps: Vec<f64>,
    cpu_us_per_req: f64,
    /// redis-server's CPU per request, for the Redis modes.
    redis_cpu_us_per_req: Option<f64>,
    /// The load generator's (this process's) CPU per request.
    client_cpu_us_per_req: f64,
    /// Share of one core the server used, averaged over the window.
    server_cores: f64,
    p50_us: f64,
    p99_us: f64,
    session_bytes_per_req: f64,
}

#[derive(Clone, Debug, Default)]
struct Memory {
    sessions: usize,
    server_growth: i64,
    redis_growth: Option<i64>,
}

impl Memory {
    fn total_growth(&self) -> i64 {
        self.server_growth + self.redis_growth.unwrap_or(0)
    }
    fn bytes_per_session(&self) -> f64 {
        self.total_growth() as f64 / self.sessions.max(1) as f64
    }
    fn flat(&self) -> bool {
        self.bytes_per_session() < FLAT_BYTES_PER_SESSION
    }
}

#[derive(Clone, Debug, Default)]
struct Revocation {
    tried: usize,
    logout_p50_us: f64,
    /// Old tokens still accepted by the same instance after logout.
    replay_accepted_here: usize,
    /// On the second instance: (tokens it accepted before the logout, of those: refused
    /// within the wait, slowest time to refusal).
    there: Option<(usize, usize, Duration)>,
}

#[derive(Clone, Debug)]
struct Measured {
    read: Phase,
    write: Phase,
    memory: Memory,
    revocation: Option<Revocation>,
    /// A session made on instance A, read on instance B: its status.
    second_instance: Option<StatusCode>,
}

#[derive(Clone, Debug)]
struct ModeResult {
    mode: Mode,
    outcome: Result<Measured, String>,
}

impl ModeResult {
    fn measured(&self) -> Option<&Measured> {
        self.outcome.as_ref().ok()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)])
}

#[derive(Default)]
struct WorkerStats {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    session_bytes: u64,
    latencies_us: Vec<u32>,
}

impl WorkerStats {
    fn merge(&mut self, other: WorkerStats) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.session_bytes += other.session_bytes;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Closed-loop load on one route: `connections` sessions, warm-up, then the measured window.
async fn load(
    mode: Mode,
    server: &ServerProc,
    redis: Option<u32>,
    method: Method,
    path: &'static str,
    args: &Args,
) -> Result<Window> {
    let t = mode.transport();
    let mut setup = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let addr = server.addr;
        setup.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let jar = conn.login(t).await?;
            Ok::<_, Error>((conn, jar))
        }));
    }
    let mut ready = Vec::with_capacity(setup.len());
    for s in setup {
        ready.push(s.await??);
    }
    let start = Instant::now();
    let win_start = start + args.warmup;
    let win_end = win_start + args.duration;
    let mut workers = Vec::with_capacity(ready.len());
    for (mut conn, mut jar) in ready {
        let method = method.clone();
        workers.push(tokio::spawn(async move {
            let mut st = WorkerStats {
                latencies_us: Vec::with_capacity(4096),
                ..WorkerStats::default()
            };
            loop {
                let sent = Instant::now();
                if sent >= win_end {
                    break;
                }
                let res = conn.send(&method, path, &mut jar, t).await;
                let done = Instant::now();
                let counted = done >= win_start && done <= win_end;
                match res {
                    Ok(a) if a.status == StatusCode::OK => {
                        if counted {
                            st.requests += 1;
                            st.session_bytes += a.session_bytes as u64;
                            let us = done.duration_since(sent).as_micros();
                            st.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                    }
                    Ok(a) => {
                        st.errors += 1;
                        st.first_error
                            .get_or_insert_with(|| format!("{path} answered {}", a.status));
                    }
                    Err(e) => {
                        st.errors += 1;
                        st.first_error.get_or_insert_with(|| e.to_string());
                        break; // the connection is gone; this worker stops
                    }
                }
            }
            st
        }));
    }
    tokio::time::sleep_until(win_start.into()).await;
    let cpu0 = proc_cpu(server.pid())?;
    let redis0 = redis.map(proc_cpu).transpose()?;
    let client0 = proc_cpu(std::process::id())?;
    tokio::time::sleep_until(win_end.into()).await;
    let cpu1 = proc_cpu(server.pid())?;
    let redis1 = redis.map(proc_cpu).transpose()?;
    let client1 = proc_cpu(std::process::id())?;
    let mut all = WorkerStats::default();
    for w in workers {
        all.merge(w.await?);
    }
    Ok(Window {
        stats: all,
        cpu: cpu1.saturating_sub(cpu0).as_secs_f64(),
        client_cpu: client1.saturating_sub(client0).as_secs_f64(),
        redis_cpu: redis0
            .zip(redis1)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
        secs: args.duration.as_secs_f64(),
    })
}

/// One measured window of one route.
#[derive(Default)]
struct Window {
    stats: WorkerStats,
    /// Server CPU seconds in the window.
    cpu: f64,
    /// The load generator's (this process's) CPU seconds in the window.
    client_cpu: f64,
    /// redis-server's CPU seconds in the window, for the Redis modes.
    redis_cpu: Option<f64>,
    secs: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if !v.len().is_multiple_of(2) {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The rounds of one route: median throughput and CPU per request over the windows;
/// latency percentiles and bytes over every request of every window.
fn combine(windows: Vec<Window>) -> Phase {
    let round_rps: Vec<f64> = windows
        .iter()
        .map(|w| w.stats.requests as f64 / w.secs)
        .collect();
    let rps = median(round_rps.clone());
    let cpu_us_per_req = median(
        windows
            .iter()
            .map(|w| w.cpu * 1e6 / w.stats.requests.max(1) as f64)
            .collect(),
    );
    let client_cpu_us_per_req = median(
        windows
            .iter()
            .map(|w| w.client_cpu * 1e6 / w.stats.requests.max(1) as f64)
            .collect(),
    );
    let server_cores = median(windows.iter().map(|w| w.cpu / w.secs).collect());
    let redis_cpu_us_per_req = windows
        .iter()
        .map(|w| {
            w.redis_cpu
                .map(|c| c * 1e6 / w.stats.requests.max(1) as f64)
        })
        .collect::<Option<Vec<f64>>>()
        .map(median);
    let mut all = WorkerStats::default();
    for w in windows {
        all.merge(w.stats);
    }
    all.latencies_us.sort_unstable();
    Phase {
        errors: all.errors,
        first_error: all.first_error,
        rps,
        round_rps,
        cpu_us_per_req,
        redis_cpu_us_per_req,
        client_cpu_us_per_req,
        server_cores,
        p50_us: percentile(&all.latencies_us, 0.50),
        p99_us: percentile(&all.latencies_us, 0.99),
        session_bytes_per_req: all.session_bytes as f64 / all.requests.max(1) as f64,
    }
}

/// Logs in `args.sessions` new sessions (each login without a cookie: a new session that is
/// kept) and reports how the server's memory (and redis-server's) grew.
async fn memory(
    mode: Mode,
    server: &ServerProc,
    redis: Option<u32>,
    args: &Args,
) -> Result<Memory> {
    let t = mode.transport();
    // The connections are open (and have made one session each, not counted) before the
    // first reading, so that their buffers are not counted as session state.
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut conn = Conn::open(server.addr).await?;
        conn.login(t).await?;
        conns.push(conn);
    }
    tokio::time::sleep(args.settle).await;
    let rss0 = proc_rss(server.pid())?;
    let redis0 = redis.map(proc_rss).transpose()?;
    let started = Instant::now();
    let deadline = started + args.fill_limit;
    let next = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (next, made, target) = (next.clone(), made.clone(), args.sessions);
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < target && Instant::now() < deadline {
                conn.login(t).await?;
                made.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(conn)
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    for task in tasks {
        conns.push(task.await??);
    }
    tokio::time::sleep(args.settle).await;
    let rss1 = proc_rss(server.pid())?;
    let redis1 = redis.map(proc_rss).transpose()?;
    drop(conns);
    Ok(Memory {
        sessions: made.load(Ordering::Relaxed),
        server_growth: rss1 as i64 - rss0 as i64,
        redis_growth: redis0.zip(redis1).map(|(a, b)| b as i64 - a as i64),
    })
}

/// Logs in, logs out, and replays the old token: on the same instance, and (polling up to
/// a second) on the second instance.
async fn revocation(mode: Mode, a: &ServerProc, b: &ServerProc, args: &Args) -> Result<Revocation> {
    let t = mode.transport();
    let mut ca = Conn::open(a.addr).await?;
    let mut cb = Conn::open(b.addr).await?;
    let mut r = Revocation {
        tried: args.revocations,
        ..Revocation::default()
    };
    let mut logout_us = Vec::with_capacity(args.revocations);
    let (mut shared, mut refused_there, mut slowest) = (0, 0, Duration::ZERO);
    for i in 0..args.revocations {
        let mut jar = ca.login(t).await?;
        let old = jar.clone();
        let accepted_there = cb
            .send(&Method::GET, "/read", &mut old.clone(), t)
            .await?
            .status
            == StatusCode::OK;
        let sent = Instant::now();
        let out = ca.send(&Method::POST, "/logout", &mut jar, t).await?;
        let logout_done = Instant::now();
        logout_us
            .push(u32::try_from(logout_done.duration_since(sent).as_micros()).unwrap_or(u32::MAX));
        if out.status != StatusCode::OK {
            return Err(format!("logout answered {}", out.status).into());
        }
        if ca
            .send(&Method::GET, "/read", &mut old.clone(), t)
            .await?
            .status
            == StatusCode::OK
        {
            r.replay_accepted_here += 1;
        }
        if accepted_there {
            shared += 1;
            // Poll the second instance: long only for the first few, so that a design that
            // never propagates costs a few seconds, not minutes.
            let wait = if i < 3 {
                args.poll_wait
            } else {
                Duration::ZERO
            };
            loop {
                let st = cb
                    .send(&Method::GET, "/read", &mut old.clone(), t)
                    .await?
                    .status;
                if st != StatusCode::OK {
                    refused_there += 1;
                    slowest = slowest.max(logout_done.elapsed());
                    break;
                }
                if logout_done.elapsed() >= wait {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    logout_us.sort_unstable();
    r.logout_p50_us = percentile(&logout_us, 0.5);
    r.there = Some((shared, refused_there, slowest));
    Ok(r)
}

async fn second_instance(mode: Mode, a: &ServerProc, b: &ServerProc) -> Result<StatusCode> {
    let t = mode.transport();
    let mut ca = Conn::open(a.addr).await?;
    let mut cb = Conn::open(b.addr).await?;
    let mut jar = ca.login(t).await?;
    Ok(cb.send(&Method::GET, "/read", &mut jar, t).await?.status)
}

/// Everything this run's servers share: keys, and how many threads they run.
struct RunEnv {
    keys: String,
    secret: Vec<u8>,
    server_threads: usize,
    redis_bin: Option<PathBuf>,
}

/// The processes of one mode: instance A (measured), instance B (the second instance), and
/// their redis-server.
struct Running {
    mode: Mode,
    a: ServerProc,
    b: ServerProc,
    redis: Option<RedisServer>,
    /// The SQL database or Redis Cluster of a row (dropped after the servers).
    sql: Backend,
    read: Vec<Window>,
    write: Vec<Window>,
}

impl Running {
    /// The Redis process whose CPU and memory the row reports: its redis-server, or the
    /// cluster master that holds the denylist.
    fn redis_pid(&self) -> Option<u32> {
        match &self.sql {
            Backend::Cluster(cluster) => cluster.denylist_master_pid(),
            _ => self.redis.as_ref().map(RedisServer::pid),
        }
    }
}

fn start_mode(mode: Mode, run: &RunEnv, pin: Option<&Pinning>) -> Result<Running> {
    let redis = if mode.uses_redis() {
        let bin = run.redis_bin.as_deref().ok_or("no redis-server")?;
        Some(RedisServer::start(bin)?)
    } else {
        None
    };
    let sql = match mode {
        Mode::StorePostgres => Backend::Postgres(sql::start_postgres()?),
        Mode::SealedDenyCluster => Backend::Cluster(cluster::Cluster::start()?),
        Mode::StoreSqlite => {
            let dir = std::env::temp_dir().join(format!(
                "compare-sqlite-{}-{}",
                std::process::id(),
                hex_encode(&random_bytes(4)?)
            ));
            std::fs::create_dir_all(&dir)?;
            Backend::Sqlite(dir)
        }
        _ => Backend::None,
    };
    let a = ServerProc::start(mode, run, redis.as_ref(), &sql)?;
    let b = ServerProc::start(mode, run, redis.as_ref(), &sql)?;
    if let Some(p) = pin {
        // Started, so every thread they start at start-up is there to check.
        check_pinned(a.pid(), &p.server, "server A")?;
        check_pinned(b.pid(), &p.server, "server B")?;
        if let Some(r) = &redis {
            check_pinned(r.pid(), &p.server, "redis-server")?;
        }
    }
    Ok(Running {
        mode,
        a,
        b,
        redis,
        sql,
        read: Vec::new(),
        write: Vec::new(),
    })
}

/// One round of both routes.
fn round(rt: &tokio::runtime::Runtime, r: &mut Running, args: &Args) -> Result<()> {
    let redis = r.redis_pid();
    let read = rt.block_on(load(r.mode, &r.a, redis, Method::GET, "/read", args))?;
    let write = rt.block_on(load(r.mode, &r.a, redis, Method::POST, "/write", args))?;
    eprintln!(
        "  {:<20} read {:>6.0} req/s {:>5.1} µs CPU ({:>4.1} client); \
         write {:>6.0} req/s {:>5.1} µs CPU ({:>4.1} client)",
        r.mode.key(),
        read.stats.requests as f64 / read.secs,
        read.cpu * 1e6 / read.stats.requests.max(1) as f64,
        read.client_cpu * 1e6 / read.stats.requests.max(1) as f64,
        write.stats.requests as f64 / write.secs,
        write.cpu * 1e6 / write.stats.requests.max(1) as f64,
        write.client_cpu * 1e6 / write.stats.requests.max(1) as f64,
    );
    r.read.push(read);
    r.write.push(write);
    Ok(())
}

/// After the rounds: memory, revocation and the second instance; then the processes end.
fn finish(rt: &tokio::runtime::Runtime, r: Running, args: &Args) -> Result<Measured> {
    let redis_pid = r.redis_pid();
    // `sql` first: bindings drop in reverse order, so the database outlives the servers.
    let Running {
        sql: _sql,
        mode,
        a,
        b,
        redis: _redis,
        read,
        write,
    } = r;
    eprint!("  {:<20} {} sessions: ", mode.key(), args.sessions);
    let memory = rt.block_on(memory(mode, &a, redis_pid, args))?;
    eprint!("{:+.1} MB; ", memory.total_growth() as f64 / 1e6);
    let (revocation, second_instance) =
        if matches!(mode, Mode::None | Mode::NoneCookie | Mode::NoneWork) {
            (None, None)
        } else {
            let r = rt.block_on(revocation(mode, &a, &b, args))?;
            let s = rt.block_on(second_instance(mode, &a, &b))?;
            (Some(r), Some(s))
        };
    eprintln!("revocation and second instance done");
    Ok(Measured {
        read: combine(read),
        write: combine(write),
        memory,
        revocation,
        second_instance,
    })
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Args {
    serve: Option<Mode>,
    modes: Vec<Mode>,
    duration: Duration,
    warmup: Duration,
    rounds: usize,
    connections: usize,
    sessions: usize,
    revocations: usize,
    fill_limit: Duration,
    /// How long the revocation column polls the second instance (for the first few tokens).
    poll_wait: Duration,
    /// Pause before each memory reading, for the server to settle.
    settle: Duration,
    server_threads: usize,
    client_threads: usize,
    /// `--login ADDR MODE`: log in to a server already running, print the session's header.
    login: Option<(SocketAddr, Mode)>,
    /// `--pin`: the load generator's CPUs and the servers'.
    pin: Option<Pinning>,
    quick: bool,
    write_doc: Option<bool>,
    doc: PathBuf,
    chart: PathBuf,
    /// `--out DIR`: where the report goes instead of `docs/`, with `results.json`.
    out: Option<PathBuf>,
}

const USAGE: &str = "\
usage: compare [options]
  --modes a,b,...       modes to run (default: all): none, none+cookie, none+work, sealed,
                        sealed-nocache, signed, jwt, sealed+deny-memory, sealed+deny-redis,
                        sealed+deny-cluster, sealed+devices, sealed+dbsc, jwt+dpop, store-memory,
                        store-redis, store-postgres,
                        store-sqlite, poem-cookie, poem-redis, axum-none, axum-sealed,
                        axum-tower-sessions, axum-cookie-store
  --duration SECS       measured window per route and round (default 1)
  --warmup SECS         warm-up before each window (default 0.5)
  --rounds N            rounds; each round measures every mode once (default 5)
  --connections N       concurrent keep-alive connections (default 32)
  --sessions N          sessions created for the memory column (default 100000)
  --revocations N       log-in/log-out/replay rounds for the revocation column (default 200)
  --login ADDR MODE     log in to MODE's server (`compare --serve MODE`) at ADDR, as a
                        connection of the load generator does (registering a DBSC key when
                        offered), and print the session's request header line (for
                        benches/server_instructions.sh)
  --server-threads N    worker threads of each server (default: number of CPUs)
  --client-threads N    worker threads of the load generator (default: number of CPUs)
  --pin                 (Linux) the load generator on the first half of the CPUs, the
                        servers and redis-server on the rest, as with a load generator on
                        another machine; threads default to each side's CPUs; the report
                        goes in a section of its own (compare-pinned markers) and the
                        chart in comparison-pinned.svg
  --quick               every mode very briefly: 1 round, 0.2 s windows, 0.05 s warm-up,
                        1000 sessions, 5 revocations, 0.2 s polling of the second instance
                        (a smoke run: the figures only show that each mode works)
  --out DIR             write the report to DIR/COMPARISON.md, DIR/comparison.svg and
                        DIR/results.json (per mode: status, reason, req/s) instead of docs/
  --write-doc / --no-doc  rewrite docs/COMPARISON.md's section and docs/comparison.svg
                        (default: after a full run of every mode without --quick, or with --out)
  --doc PATH, --chart PATH  where to write them (default docs/COMPARISON.md, docs/comparison.svg;
                        with --pin docs/BENCHMARKS.md, docs/comparison-pinned.svg)";

fn parse_args() -> Result<Args> {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let mut a = Args {
        serve: None,
        modes: ALL_MODES.to_vec(),
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(500),
        rounds: 5,
        connections: 32,
        sessions: 100_000,
        revocations: 200,
        fill_limit: Duration::from_secs(90),
        poll_wait: Duration::from_secs(1),
        settle: Duration::from_millis(200),
        server_threads: cpus,
        client_threads: cpus,
        login: None,
        pin: None,
        quick: false,
        write_doc: None,
        doc: PathBuf::from("docs/COMPARISON.md"),
        chart: PathBuf::from("docs/comparison.svg"),
        out: None,
    };
    let mut explicit = Vec::new();
    // `--pin` changes the defaults of the options below unless they were given.
    let mut pin = false;
    let mut doc_given = false;
    let (mut server_threads_given, mut client_threads_given, mut chart_given) =
        (false, false, false);
    let mut it = std::env::args().skip(1);
    let secs = |v: Option<String>| -> Result<Duration> {
        let s: f64 = v.ok_or("missing value")?.parse()?;
        if !(0.0..=600.0).contains(&s) {
            return Err("a duration must be between 0 and 600 seconds".into());
        }
        Ok(Duration::from_secs_f64(s))
    };
    let num = |v: Option<String>| -> Result<usize> { Ok(v.ok_or("missing value")?.parse()?) };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => {
                let m = it.next().ok_or("--serve needs a mode")?;
                a.serve = Some(Mode::from_key(&m).ok_or_else(|| format!("unknown mode {m}"))?);
            }
            "--login" => {
                let addr = it.next().ok_or("--login needs an address")?.parse()?;
                let m = it.next().ok_or("--login needs a mode")?;
                let mode = Mode::from_key(&m).ok_or_else(|| format!("unknown mode {m}"))?;
                a.login = Some((addr, mode));
            }
            "--modes" => {
                let list = it.next().ok_or("--modes needs a list")?;
                a.modes = list
                    .split(',')
                    .map(|m| Mode::from_key(m.trim()).ok_or_else(|| format!("unknown mode {m}")))
                    .collect::<Result<_, _>>()?;
            }
            "--duration" => explicit.push(("duration", secs(it.next())?)),
            "--warmup" => explicit.push(("warmup", secs(it.next())?)),
            "--rounds" => a.rounds = num(it.next())?.clamp(1, 20),
            "--connections" => a.connections = num(it.next())?.clamp(1, 1024),
            "--sessions" => a.sessions = num(it.next())?.min(1_000_000),
            "--revocations" => a.revocations = num(it.next())?.clamp(1, 10_000),
            "--server-threads" => {
                a.server_threads = num(it.next())?.clamp(1, 64);
                server_threads_given = true;
            }
            "--client-threads" => {
                a.client_threads = num(it.next())?.clamp(1, 64);
                client_threads_given = true;
            }
            "--pin" => pin = true,
            "--quick" => {
                a.quick = true;
                a.duration = Duration::from_millis(200);
                a.warmup = Duration::from_millis(50);
                a.rounds = 1;
                a.sessions = 1_000;
                a.revocations = 5;
                a.fill_limit = Duration::from_secs(5);
                a.poll_wait = Duration::from_millis(200);
                a.settle = Duration::from_millis(50);
            }
            "--out" => a.out = Some(it.next().ok_or("--out needs a directory")?.into()),
            "--write-doc" => a.write_doc = Some(true),
            "--no-doc" => a.write_doc = Some(false),
            "--doc" => {
                a.doc = it.next().ok_or("--doc needs a path")?.into();
                doc_given = true;
            }
            "--chart" => {
                a.chart = it.next().ok_or("--chart needs a path")?.into();
                chart_given = true;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    for (what, d) in explicit {
        match what {
            "duration" => a.duration = d,
            _ => a.warmup = d,
        }
    }
    if let Some(dir) = &a.out {
        a.doc = dir.join("COMPARISON.md");
        a.chart = dir.join("comparison.svg");
    }
    if pin && !cfg!(target_os = "linux") {
        return Err("--pin needs Linux (sched_setaffinity and /proc)".into());
    }
    if pin {
        let p = Pinning::split(&allowed_cpus(Path::new("/proc/self/status"))?)?;
        if !server_threads_given {
            a.server_threads = p.server.len();
        }
        if !client_threads_given {
            a.client_threads = p.client.len();
        }
        if !chart_given {
            a.chart.set_file_name("comparison-pinned.svg");
        }
        // The pinned runs are for contributors: docs/BENCHMARKS.md, not the shipped page.
        if !doc_given && a.doc == Path::new("docs/COMPARISON.md") {
            a.doc = PathBuf::from("docs/BENCHMARKS.md");
        }
        a.pin = Some(p);
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------
// Reporting: tables, targets, the doc section and the chart
// ---------------------------------------------------------------------------------------

struct Target {
    what: String,
    measured: String,
    pass: Option<bool>,
    /// Set when the ratio of server CPU per request gives the other verdict.
    disagrees: bool,
}

fn find(results: &[ModeResult], mode: Mode) -> Option<&Measured> {
    results
        .iter()
        .find(|r| r.mode == mode)
        .and_then(ModeResult::measured)
}

fn ratio_target(
    results: &[ModeResult],
    what: &str,
    ours: Mode,
    peer: Mode,
    write: bool,
    min: f64,
) -> Target {
    // The route the target is about.
    fn route(m: &Measured, write: bool) -> &Phase {
        if write { &m.write } else { &m.read }
    }
    match (find(results, ours), find(results, peer)) {
        (Some(o), Some(p)) => {
            let (o, p) = (route(o, write), route(p, write));
            let r = o.rps / p.rps;
            let capacity = p.cpu_us_per_req / o.cpu_us_per_req;
            Target {
                what: what.to_owned(),
                measured: format!(
                    "{r:.2}x ({:.0} vs {:.0} req/s); {}; server CPU per request {:.1} vs \
                     {:.1} µs, capacity ratio {capacity:.2}x",
                    o.rps,
                    p.rps,
                    per_round(&o.round_rps, &p.round_rps, min),
                    o.cpu_us_per_req,
                    p.cpu_us_per_req,
                ),
                pass: Some(r >= min),
                disagrees: (r >= min) != (capacity >= min),
            }
        }
        _ => Target {
            what: what.to_owned(),
            measured: format!(
                "not measured ({} or {} did not run)",
                ours.key(),
                peer.key()
            ),
            pass: None,
            disagrees: false,
        },
    }
}

/// A bound on the ratio of server CPU per read request of `ours` to `peer`'s.
fn cpu_target(results: &[ModeResult], what: &str, (ours, peer): (Mode, Mode), max: f64) -> Target {
    match (find(results, ours), find(results, peer)) {
        (Some(o), Some(p)) => {
            let r = o.read.cpu_us_per_req / p.read.cpu_us_per_req;
            Target {
                what: what.to_owned(),
                measured: format!(
                    "{r:.2}x ({:.1} vs {:.1} µs)",
                    o.read.cpu_us_per_req, p.read.cpu_us_per_req
                ),
                pass: Some(r <= max),
                disagrees: false,
            }
        }
        _ => Target {
            what: what.to_owned(),
            measured: "not measured".to_owned(),
            pass: None,
            disagrees: false,
        },
    }
}

/// How the ratio of the same round of two modes varied, and in how many rounds it reached
/// `min`: how far a verdict on the medians can be trusted.
fn per_round(ours: &[f64], peer: &[f64], min: f64) -> String {
    let ratios: Vec<f64> = ours.iter().zip(peer).map(|(o, p)| o / p).collect();
    if ratios.is_empty() {
        return "no rounds".to_owned();
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
    let met = ratios.iter().filter(|r| **r >= min).count();
    format!(
        "rounds {lo:.2}x to {hi:.2}x, {met} of {} at {min}x or more",
        ratios.len()
    )
}

fn targets(results: &[ModeResult]) -> Vec<Target> {
    let mut t = vec![
        ratio_target(
            results,
            "sealed cookie, changing route: >= 1.3x Poem CookieSession",
            Mode::Sealed,
            Mode::PoemCookie,
            true,
            1.3,
        ),
        ratio_target(
            results,
            "sealed cookie, changing route: >= 2.5x store-backed Redis",
            Mode::Sealed,
            Mode::StoreRedis,
            true,
            2.5,
        ),
        ratio_target(
            results,
            "JWT bearer, read-only route: >= 0.85x no-session throughput",
            Mode::Jwt,
            Mode::None,
            false,
            0.85,
        ),
        cpu_target(
            results,
            "JWT bearer, read-only route: server CPU per request <= 1.15x a sealed cookie read's",
            (Mode::Jwt, Mode::Sealed),
            1.15,
        ),
        ratio_target(
            results,
            "JWT bearer, changing route: >= 0.7x no-session throughput",
            Mode::Jwt,
            Mode::None,
            true,
            0.7,
        ),
    ];
    let stateless: Vec<(Mode, &Measured)> = [Mode::Sealed, Mode::Signed, Mode::Jwt]
        .into_iter()
        .filter_map(|m| find(results, m).map(|r| (m, r)))
        .collect();
    t.push(Target {
        what: format!(
            "server memory flat in the number of sessions, stateless modes (< {FLAT_BYTES_PER_SESSION:.0} B per session)"
        ),
        measured: if stateless.is_empty() {
            "not measured".into()
        } else {
            stateless
                .iter()
                .map(|(m, r)| format!("{} {:+.1} B/session", m.key(), r.memory.bytes_per_session()))
                .collect::<Vec<_>>()
                .join(", ")
        },
        pass: (!stateless.is_empty()).then(|| stateless.iter().all(|(_, r)| r.memory.flat())),
        disagrees: false,
    });
    t
}

fn mb(bytes: i64) -> String {
    format!("{:+.1} MB", bytes as f64 / 1e6)
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn throughput_table(results: &[ModeResult]) -> String {
    let base = find(results, Mode::None).map(|m| (m.read.rps, m.write.rps));
    let mut s = String::from(
        "| mode | read req/s | read vs none | read CPU µs/req | read p50 / p99 ms | write req/s | write vs none | write CPU µs/req | write p50 / p99 ms | session bytes/req read / write |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        match &r.outcome {
            Ok(m) => {
                let vs =
                    |x: f64, b: Option<f64>| b.map_or("–".into(), |b| format!("{:.2}x", x / b));
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {} | {} / {} | {:.0} | {} | {} | {} / {} | {:.0} / {:.0} |{}",
                    r.mode.label(),
                    m.read.rps,
                    vs(m.read.rps, base.map(|b| b.0)),
                    cpu_cell(&m.read),
                    ms(m.read.p50_us),
                    ms(m.read.p99_us),
                    m.write.rps,
                    vs(m.write.rps, base.map(|b| b.1)),
                    cpu_cell(&m.write),
                    ms(m.write.p50_us),
                    ms(m.write.p99_us),
                    m.read.session_bytes_per_req,
                    m.write.session_bytes_per_req,
                    errors_note(m),
                );
            }
            Err(why) => {
                let _ = writeln!(s, "| {} | {why} | | | | | | | | |", r.mode.label());
            }
        }
    }
    s
}

fn cpu_cell(p: &Phase) -> String {
    match p.redis_cpu_us_per_req {
        Some(r) => format!("{:.1} (+ {r:.1} redis)", p.cpu_us_per_req),
        None => format!("{:.1}", p.cpu_us_per_req),
    }
}

fn errors_note(m: &Measured) -> String {
    let e = m.read.errors + m.write.errors;
    if e == 0 {
        String::new()
    } else {
        let first = m
            .read
            .first_error
            .as_ref()
            .or(m.write.first_error.as_ref())
            .cloned()
            .unwrap_or_default();
        format!(" {e} errors ({first})")
    }
}

fn state_table(results: &[ModeResult], args: &Args) -> String {
    let mut s = format!(
        "| mode | memory growth, {} sessions | revocation: logout p50 | old token after logout, same instance | old token after logout, second instance | session from A works on B |\n\
         |---|---|---:|---|---|---|\n",
        thousands(args.sessions)
    );
    for r in results {
        let Ok(m) = &r.outcome else {
            let _ = writeln!(
                s,
                "| {} | {} | | | | |",
                r.mode.label(),
                r.outcome.as_ref().err().map_or("", |e| e)
            );
            continue;
        };
        let mem = match m.memory.redis_growth {
            Some(rg) => format!(
                "server {}, redis-server {} ({:.0} B/session)",
                mb(m.memory.server_growth),
                mb(rg),
                m.memory.bytes_per_session()
            ),
            None => format!(
                "{} ({:.0} B/session){}",
                mb(m.memory.server_growth),
                m.memory.bytes_per_session(),
                if m.memory.flat() { ", flat" } else { "" }
            ),
        };
        let mem = if m.memory.sessions < args.sessions {
            format!("{mem}; only {} made in time", m.memory.sessions)
        } else {
            mem
        };
        let (logout, here, there) = match &m.revocation {
            None => ("–".into(), "–".into(), "–".into()),
            Some(rv) => {
                let here = if rv.replay_accepted_here == 0 {
                    "refused at once".to_owned()
                } else {
                    format!(
                        "**still accepted** ({}/{}) until it expires",
                        rv.replay_accepted_here, rv.tried
                    )
                };
                let there = match rv.there {
                    Some((0, _, _)) | None => "– (B never accepted it)".to_owned(),
                    Some((shared, refused, slowest)) if refused == shared => {
                        format!("refused within {:.1} ms", slowest.as_secs_f64() * 1000.0)
                    }
                    Some((shared, refused, _)) => format!(
                        "**still accepted** ({}/{shared}) until it expires",
                        shared - refused
                    ),
                };
                let logout = if rv.replay_accepted_here == 0 {
                    format!("{} ms", ms(rv.logout_p50_us))
                } else {
                    format!("{} ms (nothing revoked)", ms(rv.logout_p50_us))
                };
                (logout, here, there)
            }
        };
        let second = match m.second_instance {
            None => "–".to_owned(),
            Some(StatusCode::OK) => "yes".to_owned(),
            Some(st) => format!("no ({})", st.as_u16()),
        };
        let _ = writeln!(
            s,
            "| {} | {mem} | {logout} | {here} | {there} | {second} |",
            r.mode.label()
        );
    }
    s
}

fn targets_table(targets: &[Target]) -> String {
    let mut s = String::from("| target | measured | result |\n|---|---|---|\n");
    for t in targets {
        let verdict = match (t.pass, t.disagrees) {
            (Some(true), false) => "**pass**",
            (Some(true), true) => "**pass** by throughput, not by server CPU: not robust",
            (Some(false), false) => "**FAIL**",
            (Some(false), true) => "**FAIL** by throughput, pass by server CPU",
            (None, _) => "not measured",
        };
        let _ = writeln!(s, "| {} | {} | {verdict} |", t.what, t.measured);
    }
    s
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
    date: String,
}

/// The machine's CPUs: with `--pin`, those of both sides (this thread may run on fewer).
fn machine_cpus(args: &Args) -> usize {
    match &args.pin {
        Some(p) => p.client.len() + p.server.len(),
        None => std::thread::available_parallelism().map_or(0, usize::from),
    }
}

fn machine(args: &Args) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_owned(), |s| s.trim().to_owned());
    Machine {
        cpus: machine_cpus(args),
        model,
        kernel,
        date: utc_date(),
    }
}

/// Today's date, UTC, as YYYY-MM-DD (civil-from-days, H. Hinnant).
fn utc_date() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `results.json` (with `--out`): one object per mode, for scripts and the smoke test.
fn results_json(results: &[ModeResult], args: &Args) -> Value {
    let modes = results
        .iter()
        .map(|r| match &r.outcome {
            Ok(m) => serde_json::json!({
                "mode": r.mode.key(),
                "label": r.mode.label(),
                "status": "measured",
                "reason": null,
                "read_rps": m.read.rps,
                "write_rps": m.write.rps,
                "errors": m.read.errors + m.write.errors,
                "sessions_made": m.memory.sessions,
            }),
            Err(why) => serde_json::json!({
                "mode": r.mode.key(),
                "label": r.mode.label(),
                "status": if why.starts_with("skipped") { "skipped" } else { "failed" },
                "reason": why,
                "read_rps": null,
                "write_rps": null,
            }),
        })
        .collect::<Vec<_>>();
    let pin = args
        .pin
        .as_ref()
        .map(|p| serde_json::json!({ "client": p.client, "server": p.server }));
    serde_json::json!({ "modes": modes, "pin": pin })
}

/// The command that reproduces this run.
fn command(args: &Args) -> String {
    let features = if cfg!(feature = "redis") && cfg!(feature = "cli") && cfg!(feature = "jwt") {
        " --all-features".to_owned()
    } else if cfg!(feature = "redis") {
        " --features redis".to_owned()
    } else {
        String::new()
    };
    let rest: Vec<String> = std::env::args().skip(1).collect();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let mut cmd = format!("cargo run{profile} --example compare{features}");
    if !rest.is_empty() {
        let _ = write!(cmd, " -- {}", rest.join(" "));
    }
    let _ = args;
    cmd
}

fn section(results: &[ModeResult], targets: &[Target], args: &Args, chart_name: &str) -> String {
    let mach = machine(args);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}\n",
        if args.pin.is_some() {
            "## End-to-end, with the load generator on a CPU of its own (`--pin`)"
        } else {
            "## End-to-end: the same application in every design"
        }
    );
    let _ = writeln!(
        s,
        "Measured on {} by `{}` (examples/compare.rs). Machine: {} CPUs ({}), Linux {}; \
         each server had {} worker thread{}, the load generator (a minimal HTTP/1.1 client) {} \
         thread{} and {} keep-alive \
         connections. Each route of each mode was measured in {} rounds of a {} s window \
         after {} s of warm-up; the rounds visit every mode in turn, and the table gives \
         the median round. {}, and the \
         figures vary from run to run (and with whatever else the machine runs): **compare \
         the ratios within one run, not the absolute figures across runs or machines.**\n",
        mach.date,
        command(args),
        mach.cpus,
        mach.model,
        mach.kernel,
        args.server_threads,
        if args.server_threads == 1 { "" } else { "s" },
        args.client_threads,
        if args.client_threads == 1 { "" } else { "s" },
        args.connections,
        args.rounds,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        match &args.pin {
            Some(p) => format!(
                "With `--pin`, the load generator ran on CPU {} only and the servers and \
                 redis-server on CPU {} only (checked for every thread), as with a load \
                 generator on another machine; other tenants of the host still share both",
                cpu_list(&p.client),
                cpu_list(&p.server)
            ),
            None => "The load generator shares the machine with the servers".to_owned(),
        },
    );
    if args.quick {
        let _ = writeln!(
            s,
            "**This is a `--quick` smoke run**: windows this short, built like this, show that \
             every mode works, not what it costs. Run without `--quick`, with `--release`, for \
             figures.\n"
        );
    }
    let cores: Vec<f64> = results
        .iter()
        .filter_map(ModeResult::measured)
        .flat_map(|m| [m.read.server_cores, m.write.server_cores])
        .collect();
    if !cores.is_empty() {
        let lo = cores.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = cores.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "During the measured windows the server process used between {lo:.2} and {hi:.2} \
             {}; the rest went to {}. Throughput is therefore a \
             property of the whole machine, and the **server CPU per request** column is the \
             cleaner measure of what each design costs the server; the targets' *capacity \
             ratio* is the throughput ratio a CPU-bound server would show (the inverse ratio \
             of CPU per request).\n",
            match &args.pin {
                Some(p) if p.server.len() == 1 => "of the one CPU it was pinned to".to_owned(),
                Some(p) => format!("of the {} CPUs it was pinned to", p.server.len()),
                None => format!("of the machine's {} CPUs", mach.cpus),
            },
            if args.pin.is_some() {
                "the second server instance (idle), redis-server, the kernel's loopback \
                 networking for the servers' sends, and whatever else ran there"
            } else {
                "the load generator, the kernel's loopback networking, redis-server and \
                 whatever else ran"
            }
        );
    }
    let _ = writeln!(
        s,
        "![Throughput per mode, read-only and changing routes]({chart_name})\n"
    );
    let _ = writeln!(s, "### Throughput and cost per request\n");
    s.push_str(&throughput_table(results));
    let _ = writeln!(s, "\n### State, revocation and a second instance\n");
    s.push_str(&state_table(results, args));
    let _ = writeln!(s, "\n### Targets (ratios within this run)\n");
    let _ = writeln!(
        s,
        "The verdict is on the medians of the rounds. *Rounds* gives the ratio of the same \
         round of the two modes (measured close together in time), lowest and highest, and \
         in how many rounds it reached the target: a verdict that some rounds contradict is \
         as much the machine's as the code's.\n"
    );
    s.push_str(&targets_table(targets));
    s.push_str(&analysis(results, targets, args));
    if args.pin.is_some() {
        let _ = writeln!(
            s,
            "\nThe application, the modes, the columns and what the numbers do not show are \
             as in the section written by a run without `--pin`."
        );
    } else {
        s.push_str(DOC_EXPLAIN);
    }
    s
}

/// Why a missed target was missed: the measured per-request CPU of this run, and what a
/// profile of the server showed (perf, on this machine, while writing the harness).
fn analysis(results: &[ModeResult], targets: &[Target], args: &Args) -> String {
    let mut s = String::new();
    let cpu = |m: Mode, write: bool| {
        find(results, m).map(|r| {
            if write {
                r.write.cpu_us_per_req
            } else {
                r.read.cpu_us_per_req
            }
        })
    };
    if let Some(t) = targets.first()
        && (t.pass == Some(false) || t.disagrees)
        && args.pin.is_none()
        && let (Some(base), Some(ours), Some(poem)) = (
            cpu(Mode::None, true),
            cpu(Mode::Sealed, true),
            cpu(Mode::PoemCookie, true),
        )
    {
        // The rest of the machine per request (load generator, loopback, kernel), from the
        // no-session run: all the CPUs over its throughput, less its server's share.
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let rest = find(results, Mode::None)
            .map(|m| cpus * 1e6 / m.write.rps.max(1.0) - m.write.cpu_us_per_req)
            .unwrap_or(0.0);
        let client = find(results, Mode::None).map_or(0.0, |m| m.write.client_cpu_us_per_req);
        let cookie_only = cpu(Mode::NoneCookie, true).map(|c| c - base);
        let _ = write!(
            s,
            "\n**Why the write target against Poem's CookieSession is {}.** On the \
                 changing route the server spends {base:.1} µs per request without sessions, \
                 {ours:.1} µs with the sealed cookie and {poem:.1} µs with Poem's CookieSession: \
                 the sealed session adds {:.1} µs to a write and Poem's {:.1} µs, so the sealed \
                 write path is {:.0}% cheaper than Poem's, and a server with the cores to itself \
                 would answer {:.2}x as many writes. Here the rest of the machine (the load \
                 generator, the loopback, the kernel, on the same {cpus:.0} cores) costs about \
                 {rest:.1} µs per request in every mode ({client:.1} µs of it the load \
                 generator's own process, its system time included), which pulls every \
                 throughput ratio towards 1: 1.3x the throughput needs the sealed server at \
                 or under {:.1} µs per request, a session that adds at most {:.1} µs to a write. {}\n",
            if t.pass == Some(true) {
                "met by throughput only"
            } else {
                "missed"
            },
            ours - base,
            poem - base,
            (1.0 - (ours - base) / (poem - base)) * 100.0,
            poem / ours,
            (rest + poem) / 1.3 - rest,
            (rest + poem) / 1.3 - rest - base,
            match cookie_only {
                Some(c) => format!(
                    "Of what it adds, {c:.1} µs is the cookie's bytes alone (the \
                     `Set-Cookie` and `Cookie` of the same size with no session behind them); \
                     the rest is reading the session, recording the change, re-encoding the \
                     data, sealing (AES-GCM, base64) and building the `Set-Cookie`."
                ),
                None => String::new(),
            },
        );
    }
    if targets.get(1).and_then(|t| t.pass) == Some(false)
        && let (Some(base), Some(ours), Some(store)) = (
            find(results, Mode::None).map(|m| m.write.cpu_us_per_req),
            find(results, Mode::Sealed).map(|m| m.write.cpu_us_per_req),
            find(results, Mode::StoreRedis).map(|m| &m.write),
        )
    {
        let redis = store.redis_cpu_us_per_req.unwrap_or(0.0);
        let total = store.cpu_us_per_req + redis;
        // The most any session could reach: the no-session server's own throughput.
        let ceiling = find(results, Mode::None)
            .map(|m| m.write.rps / store.rps.max(f64::MIN_POSITIVE))
            .unwrap_or(0.0);
        let _ = write!(
            s,
            "\n**Why the write target against the store-backed Redis mode is missed.** A \
             store-backed write costs its server {:.1} µs and redis-server {redis:.1} µs \
             (a GET when the request arrives and a SET when it leaves), {total:.1} µs in all, \
             against {ours:.1} µs for the sealed cookie: {:.2}x by CPU. Even a session that \
             cost nothing (the no-session server, {base:.1} µs) would be only {:.2}x by CPU. \
             Redis on loopback is the best case for a store: its round trips cost CPU but \
             almost no waiting. With Redis across a network, each request also waits two \
             network round trips, which at a fixed number of connections lowers the store's \
             throughput further; this harness does not model that, so the 2.5x target \
             measures the loopback case. {} {}\n",
            store.cpu_us_per_req,
            total / ours,
            total / base,
            if total / base < 2.5 {
                "There it is out of reach: nothing in the sealed path would close it.".to_owned()
            } else {
                format!(
                    "There it needs a sealed write of at most {:.1} µs of server CPU.",
                    total / 2.5
                )
            },
            if ceiling < 2.5 {
                format!(
                    "By throughput the bound is the same: the no-session server itself \
                     answers only {ceiling:.2}x as many writes as the store-backed Redis mode \
                     in this run, so no session design can reach 2.5x here; the target \
                     presumes a store mode as slow as Poem's `ServerSession` with \
                     `RedisStorage` (see its row)."
                )
            } else {
                format!(
                    "By throughput, the no-session server answers {ceiling:.2}x as many \
                     writes as the store-backed Redis mode in this run."
                )
            },
        );
    }
    s
}

const DOC_EXPLAIN: &str = r#"
### The application and the modes

One application, the same in every mode: `POST /login` starts a session (regenerates the id
and stores about 200 bytes of JSON: user, roles, a CSRF token, a cart, a theme, a counter);
`GET /read` reads what an application reads on most requests, the user (name and roles)
and the counter (401 without a user); `POST /write` checks the user and increments
the counter (the session changes on every request); `POST /logout` ends the session
(`destroy()`; Poem's `purge()`). Our modes use `sealed_session::Session`; the Poem peers the
same handlers on `poem::session::Session`; "no sessions" has the routes without middleware
and the client sends no session state.

- **no sessions, a cookie of the same size**: the no-session routes, but `/login` and
  `/write` set a 313-character cookie (the sealed cookie's length) and the client sends it
  back: what the cookie's bytes cost the kernel and hyper, with no session behind them.
- **no sessions, 0.5 µs more handler work**: the no-session routes, each handler
  busy-waiting 0.5 µs by the clock before it answers: what that much work of any kind costs
  a request in this harness, a yardstick for the rows with sessions.
- **sealed cookie**: `SealedSession::sealed(keys)`, AES-256-GCM, defaults (`__Host-sid`),
  which include the open cache (1 MiB): a token that comes back is answered from memory
  instead of being decoded and authenticated again.
- **sealed cookie, open cache off**: the same with `.open_cache(0)`: every request decodes
  and authenticates its token.
- **signed cookie**: `SealedSession::signed(keys)`, HMAC-SHA256, readable payload.
- **JWT bearer**: `SealedSession::with_codec(JwtCodec (HS256)).bearer(BearerConfig::new())`:
  the token in `Authorization: Bearer`, new tokens in `X-Session-Token`.
- **JWT bearer, DPoP-bound**: the same with `.dpop(Dpop::new().required(true))`: the login
  sends a proof and gets a token bound to its key, and every request sends
  `Authorization: DPoP` with a fresh ES256 proof, which the server verifies and records.
  The load generator makes the proofs (its CPU column includes the signing).
- **sealed cookie, device-bound (DBSC)**: `SealedSession::sealed(keys).device_bound(Dbsc::new())`:
  after its login the client registers a key, as a browser that supports DBSC does, and
  every request carries the 10-minute bound cookie beside the session cookie, checked by
  the server (no refresh falls inside a run).
- **sealed cookie + MemoryDenylist / RedisDenylist**: the sealed cookie with revocation,
  `SealedSession::sealed(keys).denylist(..)`: `destroy()` at logout revokes the session id
  (until the session's own deadline) and every request is checked against the denylist
  (a local look-up). `RedisDenylist` shares revocations through Redis and keeps a local
  replica current over pub/sub. The Redis Cluster row runs it on a throw-away cluster of 3
  masters and 3 replicas (`RedisDenylist::cluster`); its Redis columns are the master that
  holds the denylist's slot.
- **store-backed, memory / Redis**: `SealedSession::server_store(store, keys)`: the express-session
  design, a signed session id in the cookie and the session in `MemoryStore` /
  `RedisStore::connect(url)`.
- **Poem CookieSession (private)**: `CookieSession::new(CookieConfig::private(key))`.
- **Poem ServerSession + RedisStorage**: `ServerSession::new(CookieConfig, RedisStorage)` on
  a `redis` 0.32 `ConnectionManager` (Poem 3.1's version); its cookie is a random id,
  unsigned.
- The Redis modes each start a private `redis-server` on a free loopback port, without
  persistence (`--save "" --appendonly no`), shared by that mode's two instances.

### What the columns mean

- **req/s**: answers (all 200) that arrived inside a measured window, divided by its
  length (median of the rounds), with a fixed number of connections each sending its next request as soon as the
  previous answer is in (closed loop). **vs none**: the ratio to the no-session row.
- **CPU µs/req**: the server process's CPU time (user + system, from `/proc/PID/stat`,
  10 ms resolution) over a window, divided by the requests answered in it (median of the
  rounds). The server is a
  child process, so this excludes the load generator. For the Redis modes, "+ N redis" is
  redis-server's own CPU time per request over the same windows (on the same cores).
- **p50 / p99 ms**: latency seen by the client, from sending the request to the end of the
  answer's body, over every request of every round, at that concurrency (so mostly
  queueing: latency ≈ connections / req/s).
- **session bytes/req**: bytes of session state on the wire per request, averaged over the
  window: the request's `Cookie` or `Authorization` header line plus the response's
  `Set-Cookie` or `X-Session-Token` lines (name, value, attributes, CRLF).
- **memory growth**: the resident set size (`VmRSS`) of the server, and of redis-server for
  the Redis modes, before and after logging in that many new sessions (each login without a
  cookie starts a session that stays live), measured after the load phases so that buffers
  are already warm. "Flat" means under 32 bytes per session. The sealed and signed modes
  include their open cache, which keeps the tokens it sees up to its budget (1 MiB by
  default) whatever the number of sessions.
- **revocation: logout p50**: the latency of `POST /logout` on an idle server: what ending a
  session costs: a store delete for the store modes, a denylist entry (and, for Redis, a
  write and a publish) for the denylist modes; for the other stateless modes only clearing
  the cookie (nothing is revoked; with a bearer token, not even that).
- **old token after logout**: the token as it was before the logout, sent again (as an
  attacker who copied it would). "Refused at once": the next request is refused. "Still
  accepted": the token stays valid until its expiry (here 1 h idle, 24 h absolute).
- **second instance**: a second server process of the same mode with the same keys (and the
  same redis-server where there is one), and nothing else shared. "Session from A works on
  B": a session made on A, read on B.

### What the numbers do not show

- **Revocation.** A stateless token cannot be deleted: logging out clears the cookie, but a
  copy of the token (stolen, or simply an old browser tab) stays valid until it expires,
  unless every instance checks a denylist. A store-backed session ends when its record is
  deleted, on every instance that shares the store. This is the main thing the stateless
  design trades for its speed; the denylist rows show what buying it back costs (a
  `MemoryDenylist` protects one process only; a `RedisDenylist` reaches the others through
  pub/sub, so for a short moment after a logout another instance may still accept the
  token). The benchmark revokes a few hundred sessions; a denylist's memory grows with the
  number of revoked, not yet expired, sessions. The "refused within" figure is the slowest
  of a few polls of the second instance, 1 ms apart, after the logout answered.
- **Payload size.** The session here is about 200 bytes. A sealed or signed cookie grows
  with the session and travels on *every* request (upload bandwidth, and header-size limits
  of proxies and servers, commonly 8 KB to 16 KB in total); a store-backed cookie stays a
  fixed ~60 bytes whatever the session holds. The session-bytes column is for this payload
  only.
- **Races between concurrent requests.** Two requests that change the same session at the
  same time each start from the state the client sent; the last response to arrive wins
  and the other change is lost. That holds for cookies, bearer tokens and (without locking)
  for store-backed sessions too. Each connection here has its own session, so the benchmark
  never exercises it.
- **Cookie limits.** Browsers keep at most about 4096 bytes per cookie (and limit cookies per
  domain); a larger sealed session is split into chunks (`max_chunks`, default 4) and past
  that the response is a 500. A store holds sessions of any size.
- **Readable JWTs and signed cookies.** A JWT or a signed cookie is base64, not encryption:
  anyone holding it can read the session data (user, roles, anything stored). Only the sealed
  mode (and Poem's private CookieSession) hide it.
- **Not measured at all**: TLS, a network between client, server and Redis (Redis is on
  loopback here, the best case for the store modes), many cores, large sessions, and a
  browser's behaviour.
"#;

/// Replaces the text between the markers of [`markers`]`(pinned)` (or appends the markers
/// and the text).
fn splice_section(doc: &str, body: &str, pinned: bool) -> String {
    let (begin, end) = markers(pinned);
    let block = format!("{begin}\n{body}{end}");
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{block}{}", &doc[..b], &doc[e + end.len()..])
        }
        _ => {
            let mut out = doc.to_owned();
            if out.is_empty() {
                out.push_str("# Comparison\n\n");
            } else if !out.ends_with("\n\n") {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            out.push_str(&block);
            out.push('\n');
            out
        }
    }
}

fn write_doc(path: &Path, body: &str, pinned: bool) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, splice_section(&old, body, pinned))?;
    Ok(())
}

fn chart(path: &Path, results: &[ModeResult]) -> Result<()> {
    use plotters::prelude::*;

    let rows: Vec<(&str, f64, f64)> = results
        .iter()
        .filter_map(|r| {
            r.measured()
                .map(|m| (r.mode.key(), m.read.rps, m.write.rps))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let top = rows.iter().map(|r| r.1.max(r.2)).fold(1.0, f64::max) * 1.15;
    let n = rows.len();
    let root = SVGBackend::new(path, (1000, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput per mode (requests/s, higher is better; ratios within one run)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
    let names: Vec<String> = rows.iter().map(|r| r.0.to_owned()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("requests per second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let read_color = RGBColor(52, 101, 164);
    let write_color = RGBColor(237, 125, 49);
    let w = 0.38;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64;
            Rectangle::new([(x - w, 0.0), (x, r.1)], read_color.filled())
        }))?
        .label("GET /read (session read only)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], read_color.filled()));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64;
            Rectangle::new([(x, 0.0), (x + w, r.2)], write_color.filled())
        }))?
        .label("POST /write (session changed)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], write_color.filled()));
    chart.draw_series(rows.iter().enumerate().flat_map(|(i, r)| {
        let x = i as f64;
        [
            Text::new(
                format!("{:.0}", r.1),
                (x - w, r.1 + top * 0.035),
                ("sans-serif", 11),
            ),
            Text::new(
                format!("{:.0}", r.2),
                (x + 0.02, r.2 + top * 0.035),
                ("sans-serif", 11),
            ),
        ]
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}

fn drive(args: &Args) -> Result<()> {
    let run = RunEnv {
        keys: Keyring::generate()?.to_ring_string().to_string(),
        secret: random_bytes(32)?,
        server_threads: args.server_threads,
        redis_bin: find_redis_server(),
    };
    // Start every mode's processes, then measure the routes in interleaved rounds (each
    // round visits every mode), so that a slow spell of the machine hits all modes alike.
    // With `--pin`, the processes are started from this thread on the servers' CPUs (they
    // inherit them), and the load generator's threads are made on its own CPUs.
    if let Some(p) = &args.pin {
        pin_thread(&p.server)?;
        eprintln!(
            "pinned: load generator on CPUs {}, servers and redis-server on CPUs {}",
            cpu_list(&p.client),
            cpu_list(&p.server)
        );
    }
    let mut slots: Vec<(Mode, Result<Running, String>)> = Vec::new();
    for &mode in &args.modes {
        let started = match mode.skip_reason(&run.redis_bin) {
            Some(why) => Err(why),
            None => start_mode(mode, &run, args.pin.as_ref()).map_err(|e| format!("failed: {e}")),
        };
        if let Err(why) = &started {
            eprintln!("{}: {why}", mode.key());
        }
        slots.push((mode, started));
    }
    if let Some(p) = &args.pin {
        pin_thread(&p.client)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    for i in 0..args.rounds {
        eprintln!("round {}/{}:", i + 1, args.rounds);
        for (mode, slot) in &mut slots {
            if let Ok(r) = slot
                && let Err(e) = round(&rt, r, args)
            {
                eprintln!("  {}: failed: {e}", mode.key());
                *slot = Err(format!("failed: {e}"));
            }
        }
    }
    eprintln!("state, revocation, second instance:");
    let mut results = Vec::new();
    for (mode, slot) in slots {
        let outcome = slot.and_then(|r| {
            finish(&rt, r, args).map_err(|e| {
                eprintln!("\n  {}: failed: {e}", mode.key());
                format!("failed: {e}")
            })
        });
        results.push(ModeResult { mode, outcome });
    }
    let targets = targets(&results);
    println!("\n{}", throughput_table(&results));
    println!("{}", state_table(&results, args));
    println!("{}", targets_table(&targets));
    let full = !args.quick && args.modes == ALL_MODES;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("results.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&results_json(&results, args))?,
        )?;
        println!("wrote {}", path.display());
    }
    if args.write_doc.unwrap_or(full || args.out.is_some()) {
        let chart_name = args.chart.file_name().map_or("comparison.svg".into(), |n| {
            n.to_string_lossy().into_owned()
        });
        chart(&args.chart, &results)?;
        write_doc(
            &args.doc,
            &section(&results, &targets, args, &chart_name),
            args.pin.is_some(),
        )?;
        println!("wrote {} and {}", args.doc.display(), args.chart.display());
    } else {
        println!("docs not rewritten (a partial or --quick run; --write-doc forces it)");
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if let Some((addr, mode)) = args.login {
        return print_login(addr, mode);
    }
    match args.serve {
        Some(mode) => serve(mode, args.server_threads),
        None => drive(&args),
    }
}
