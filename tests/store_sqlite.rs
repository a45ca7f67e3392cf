//! The SQLite store on real database files in a temporary directory (and in memory): the
//! `Store` conformance suite, concurrent requests through the middleware, WAL mode, the
//! table and SQL it documents, sessions kept across a restart and shared by two stores on
//! one file, the sweep, refused table names, and a file that cannot be opened or written.
//! SQLite is compiled into the crate, so nothing is skipped.
#![cfg(feature = "sqlite")]
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
    pub mod lost_updates;
    pub mod registry_conformance;
    pub mod store_conformance;
}
mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::StatusCode;
use common::fixtures::{T0, clock, keys};
use common::store_conformance::{Expiry, conformance};
use http::app::{Adapter, App, Client, RespExt, Routes};
use http::handlers::plain::{count, login_admin, logout, session_id, user};
use sealed_session::store::{SqliteStore, Store, StoreError};
use sealed_session::{ManualClock, SealedSession, SessionId};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};

/// The tower adapter too, when it is built.
fn adapters() -> Vec<Adapter> {
    vec![
        #[cfg(feature = "poem")]
        Adapter::Poem,
        #[cfg(feature = "tower")]
        Adapter::Tower,
    ]
}

/// A directory of its own for each test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "sealed-session-sqlite-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("sessions.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_sqlite_backend(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Backend {
            store: "sqlite",
            ..
        }
    )
}

/// A connection of the test's own to the file, to look at what a store wrote.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

async fn rows(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sealed_sessions")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A store on a manual clock, without the background sweep.
async fn on_clock(path: impl Into<PathBuf>, clock: &ManualClock) -> SqliteStore {
    SqliteStore::builder(path)
        .clock(Arc::new(clock.clone()))
        .sweep_interval(None)
        .build()
        .await
        .unwrap()
}

/// The device registry in the store's file: the registry conformance suite, and its
/// expired rows going with the store's sweep.
async fn device_rows(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sealed_sessions_devices")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn device_registry_conformance_and_sweep() {
    let dir = TempDir::new("devices");
    let clock = clock();
    let store = on_clock(dir.db(), &clock).await;
    let registry = store.device_registry(4).await.unwrap();
    common::registry_conformance::conformance(&*registry, 4, 4).await;
    let mut conn = raw(&dir.db()).await;
    let left = device_rows(&mut conn).await;
    assert!(left > 0);
    clock.advance(Duration::from_secs(10 * 24 * 3600));
    assert!(store.sweep().await.unwrap() >= u64::try_from(left).unwrap());
    assert_eq!(device_rows(&mut conn).await, 0);
}

#[tokio::test]
async fn sqlite_store_conformance_in_memory_and_in_a_file() {
    let clock = clock();
    let store = on_clock(":memory:", &clock).await;
    conformance(&store, Expiry::Manual(&clock)).await;

    let dir = TempDir::new("conformance");
    let clock = common::fixtures::clock();
    let store = on_clock(dir.db(), &clock).await;
    conformance(&store, Expiry::Manual(&clock)).await;
}

#[tokio::test]
async fn in_memory_stores_are_apart() {
    let a = SqliteStore::open(":memory:").await.unwrap();
    let b = SqliteStore::open(":memory:").await.unwrap();
    let id = SessionId::generate().unwrap();
    let far = T0.saturating_add(Duration::from_secs(3600 * 24 * 3650));
    a.save(&id, b"r", far).await.unwrap();
    assert_eq!(b.load(&id).await.unwrap(), None);
    assert_eq!(a.load(&id).await.unwrap().as_deref(), Some(&b"r"[..]));
}

/// Concurrent requests of one session through the middleware (both adapters), on a file
/// with several connections: the `UPDATE ... WHERE record = $2` decides, no update is
/// lost, no logout undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_lose_no_update_in_sqlite() {
    let dir = TempDir::new("lost-updates");
    let store = SqliteStore::open(dir.db()).await.unwrap();
    for on in adapters() {
        common::lost_updates::no_lost_updates(on, &store, 5).await;
    }
}

/// WAL mode, and the documented migration makes the table the store needs:
/// `create_table(false)` fails without it; rows hold the id's text, the record's bytes and
/// the deadline's milliseconds.
#[tokio::test]
async fn the_file_is_in_wal_mode_and_the_table_is_the_documented_one() {
    let dir = TempDir::new("documented");
    let path = dir.db();
    let err = SqliteStore::builder(&path)
        .create_table(false)
        .build()
        .await
        .unwrap_err();
    assert!(is_sqlite_backend(&err), "{err:?}");

    let mut conn = raw(&path).await;
    // As in SqliteStore's documentation.
    sqlx::raw_sql(
        r#"CREATE TABLE IF NOT EXISTS "sealed_sessions" (id TEXT PRIMARY KEY NOT NULL, record BLOB NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS "sealed_sessions_expires_at_idx" ON "sealed_sessions" (expires_at);"#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = SqliteStore::builder(&path)
        .create_table(false)
        .build()
        .await
        .unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.table(), "sealed_sessions");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");

    let id = SessionId::generate().unwrap();
    let deadline = T0.saturating_add(Duration::from_secs(3600 * 24 * 365 * 10));
    store.save(&id, b"\x00rec\xff", deadline).await.unwrap();
    let (text, record, expires_at): (String, Vec<u8>, i64) =
        sqlx::query_as("SELECT id, record, expires_at FROM sealed_sessions")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(text, id.to_string());
    assert_eq!(record, b"\x00rec\xff");
    assert_eq!(expires_at, deadline.as_millis() as i64);
    let kind: String = sqlx::query_scalar("SELECT typeof(record) FROM sealed_sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "blob", "compared byte for byte");

    // build() makes the same table under another name (an SQL keyword, quoted).
    let store = SqliteStore::builder(&path)
        .table("order")
        .build()
        .await
        .unwrap();
    store.save(&id, b"r", deadline).await.unwrap();
    let n: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM "order""#)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_table_name_that_is_not_a_plain_identifier_is_refused() {
    let dir = TempDir::new("bad-names");
    for bad in [
        "sessions; DROP TABLE users",
        "sessions\" (id int); --",
        "",
        "1st",
        "main.sessions",
        "ta ble",
        &"x".repeat(49),
    ] {
        let err = SqliteStore::builder(dir.db())
            .table(bad)
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidTableName { name } if name == bad),
            "{bad:?}: {err:?}"
        );
    }
    assert!(!dir.db().exists(), "refused before the file was opened");
}

#[tokio::test]
async fn a_file_that_cannot_be_opened_fails_the_build_within_the_timeout() {
    let dir = TempDir::new("unopenable");
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = SqliteStore::builder(dir.0.join("no such directory").join("sessions.db"))
        .timeout(timeout)
        .build()
        .await
        .unwrap_err();
    assert!(is_sqlite_backend(&err), "{err:?}");
    assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_expired_rows_and_keeps_live_ones() {
    let dir = TempDir::new("sweep");
    let clock = clock();
    let store = on_clock(dir.db(), &clock).await;
    let mut conn = raw(&dir.db()).await;
    let soon = T0.saturating_add(Duration::from_secs(1));
    let later = T0.saturating_add(Duration::from_secs(3600));
    let mut live = Vec::new();
    for i in 0..5 {
        let id = SessionId::generate().unwrap();
        store
            .save(&id, b"r", if i < 3 { soon } else { later })
            .await
            .unwrap();
        if i >= 3 {
            live.push(id);
        }
    }
    // More than one batch (1000) of expired rows.
    sqlx::query(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2500) \
         INSERT INTO sealed_sessions SELECT 'bulk' || n, x'00', $1 FROM g",
    )
    .bind(T0.as_millis() as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.sweep().await.unwrap(), 2500, "expired at T0");
    assert_eq!(rows(&mut conn).await, 5);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep().await.unwrap(), 3, "expired at their deadline");
    assert_eq!(rows(&mut conn).await, 2);
    for id in &live {
        assert_eq!(store.load(id).await.unwrap().as_deref(), Some(&b"r"[..]));
    }
    assert_eq!(store.sweep().await.unwrap(), 0);
}

/// The background sweep runs at its interval on the store's clock, and stops when the last
/// clone of the store is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_runs_and_stops_with_the_last_clone() {
    let dir = TempDir::new("background-sweep");
    let clock = clock();
    let store = SqliteStore::builder(dir.db())
        .clock(Arc::new(clock.clone()))
        .sweep_interval(Some(Duration::from_millis(20)))
        .build()
        .await
        .unwrap();
    let clone = store.clone();
    let mut conn = raw(&dir.db()).await;
    let id = SessionId::generate().unwrap();
    store
        .save(&id, b"r", T0.saturating_add(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rows(&mut conn).await, 1, "not expired yet");
    clock.advance(Duration::from_secs(1));
    let until_swept = async |conn: &mut SqliteConnection| {
        let start = Instant::now();
        while rows(conn).await > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "not swept");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    until_swept(&mut conn).await;

    drop(store);
    // One clone left: still sweeping.
    sqlx::query("INSERT INTO sealed_sessions VALUES ('a', x'00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    until_swept(&mut conn).await;
    drop(clone);
    sqlx::query("INSERT INTO sealed_sessions VALUES ('b', x'00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rows(&mut conn).await, 1, "still swept");
}

// ---- The middleware in store mode, on SQLite ----

fn routes() -> Routes {
    Routes::new()
        .post("/login", login_admin)
        .get("/user", user)
        .post("/count", count)
        .post("/logout", logout)
        .get("/id", session_id)
}

fn app(on: Adapter, store: &SqliteStore) -> App {
    on.app(
        &routes(),
        SealedSession::server_store(store.clone(), keys())
            .idle_timeout(Some(Duration::from_secs(600))),
    )
}

/// The application stops (its store closed) and starts again on the same file: the
/// browser's session is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_closing_and_reopening_the_file() {
    let dir = TempDir::new("restart");
    for on in adapters() {
        let store = SqliteStore::open(dir.db()).await.unwrap();
        let mut c = Client::new(app(on, &store));
        c.text_ok(true, "/login").await;
        assert_eq!(c.text_ok(true, "/count").await, "1");
        let id = c.text_ok(false, "/id").await;
        store.close().await;
        let err = store
            .load(&SessionId::parse(&id).unwrap())
            .await
            .unwrap_err();
        assert!(is_sqlite_backend(&err), "closed: {err:?}");
        drop(store);

        let store = SqliteStore::open(dir.db()).await.unwrap();
        let mut again = Client::new(app(on, &store));
        again.jar = c.jar.clone();
        assert_eq!(again.text_ok(false, "/user").await, "admin");
        assert_eq!(again.text_ok(false, "/id").await, id);
        assert_eq!(again.text_ok(true, "/count").await, "2");
        store.close().await;
    }
}

/// Stores opened together on one new file (processes starting at once) all start: SQLite
/// refuses the switch to WAL of all but one at once ("busy", without waiting), and the
/// others try again within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_together_on_a_new_file_all_start() {
    let dir = TempDir::new("opened-together");
    for round in 0..20 {
        let path = dir.0.join(format!("race-{round}.db"));
        let (a, b, c, d) = tokio::join!(
            SqliteStore::open(path.clone()),
            SqliteStore::open(path.clone()),
            SqliteStore::open(path.clone()),
            SqliteStore::open(path.clone()),
        );
        for (i, store) in [a, b, c, d].into_iter().enumerate() {
            let store = store.unwrap_or_else(|e| panic!("round {round}, store {i}: {e:?}"));
            store.close().await;
        }
    }
}

/// Two stores on one file, as two processes on one machine: one's writes are the other's
/// reads, and a logout through one ends the session for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_share_sessions() {
    let dir = TempDir::new("two-stores");
    let (store_a, store_b) = tokio::join!(SqliteStore::open(dir.db()), SqliteStore::open(dir.db()));
    let (store_a, store_b) = (store_a.unwrap(), store_b.unwrap());
    let mut conn = raw(&dir.db()).await;
    for on in adapters() {
        let mut a = Client::new(app(on, &store_a));
        let mut b = Client::new(app(on, &store_b));
        a.text_ok(true, "/login").await;
        b.jar = a.jar.clone();
        assert_eq!(b.text_ok(false, "/user").await, "admin");
        assert_eq!(b.text_ok(true, "/count").await, "1");
        a.jar = b.jar.clone();
        assert_eq!(a.text_ok(true, "/count").await, "2");
        let stolen = a.jar.clone();
        a.send(true, "/logout").await.0.assert_status_is_ok();
        assert_eq!(rows(&mut conn).await, 0);
        b.jar = stolen;
        assert_eq!(b.text_ok(false, "/user").await, "<none>");
    }
}

/// Another connection holds the write lock (as another process writing could): writes wait
/// for it no longer than the timeout and are answered 503, never a new session; reads go
/// on (WAL); once it is released, the same session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_locked_file_is_a_503_at_the_timeout_not_a_new_session() {
    let dir = TempDir::new("locked");
    let timeout = Duration::from_millis(300);
    let store = SqliteStore::builder(dir.db())
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let mut locker = raw(&dir.db()).await;
    for on in adapters() {
        let mut c = Client::new(app(on, &store));
        c.text_ok(true, "/login").await;
        assert_eq!(c.text_ok(true, "/count").await, "1");
        let mut newcomer = Client::new(app(on, &store));

        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut locker)
            .await
            .unwrap();
        let start = Instant::now();
        let err = store
            .save(
                &SessionId::generate().unwrap(),
                b"r",
                T0.saturating_add(Duration::from_secs(3600 * 24 * 3650)),
            )
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(is_sqlite_backend(&err), "{err:?}");
        assert!(
            took >= timeout - Duration::from_millis(50) && took < timeout * 3,
            "{took:?}"
        );
        let cookie = c.jar.clone();
        let start = Instant::now();
        let (resp, set) = c.send(true, "/count").await;
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(set.is_empty(), "{on:?}: the cookie is kept: {set:?}");
        assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
        // This one also outlasts the `busy_timeout` of the write refused above, which could
        // otherwise still go through if the lock went within that moment.
        let (resp, set) = newcomer.send(true, "/count").await;
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            set.is_empty(),
            "{on:?}: no cookie for an unsaved session: {set:?}"
        );
        assert_eq!(c.jar.cookies, cookie.cookies);
        assert_eq!(c.text_ok(false, "/user").await, "admin", "reads go on");

        sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
        assert_eq!(
            c.text_ok(true, "/count").await,
            "2",
            "the failed request changed nothing"
        );
    }
}
