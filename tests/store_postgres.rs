//! The PostgreSQL store against a real PostgreSQL started in a temporary directory on a free
//! loopback port: the `Store` conformance suite, concurrent requests through the middleware,
//! the table and SQL it documents, the sweep, refused table names, outages and timeouts,
//! and two instances sharing sessions.
//!
//! Without PostgreSQL's `initdb` and `postgres` each test that needs a server prints
//! `SKIPPED: ...` and passes, except under `CI=true`, where it fails.
#![cfg(unix)]
#![cfg(feature = "postgres")]
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
    pub mod lost_updates;
    pub mod postgres;
    pub mod registry_conformance;
    pub mod store_conformance;
}
mod http;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::StatusCode;
use common::fixtures::{T0, clock, keys};
use common::postgres::PgServer;
use common::store_conformance::{Expiry, conformance};
use http::app::{Adapter, App, Client, RespExt, Routes};
use http::handlers::plain::{count, login_admin, logout, session_id, user};
use sealed_session::store::{PostgresStore, Store, StoreError, Update};
use sealed_session::{ManualClock, SealedSession, SessionId};
use sqlx::PgConnection;

/// The tower adapter too, when it is built.
fn adapters() -> Vec<Adapter> {
    vec![
        #[cfg(feature = "poem")]
        Adapter::Poem,
        #[cfg(feature = "tower")]
        Adapter::Tower,
    ]
}

fn is_postgres_backend(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Backend {
            store: "postgres",
            ..
        }
    )
}

/// An error with its sources, as a log line shows it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

async fn rows(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{table}\""))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A store on a manual clock, without the background sweep.
async fn on_clock(server: &PgServer, clock: &ManualClock) -> PostgresStore {
    PostgresStore::builder(server.url())
        .clock(Arc::new(clock.clone()))
        .sweep_interval(None)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conformance() {
    let Some(server) = PgServer::start("postgres_store_conformance").await else {
        return;
    };
    let clock = clock();
    let store = on_clock(&server, &clock).await;
    conformance(&store, Expiry::Manual(&clock)).await;
}

/// The device registry on the store's database: the registry conformance suite, its
/// documented table, and its expired rows going with the store's sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_registry_conformance_table_and_sweep() {
    let Some(server) = PgServer::start("device_registry_conformance_table_and_sweep").await else {
        return;
    };
    let clock = clock();
    let store = on_clock(&server, &clock).await;
    let registry = store.device_registry(4).await.unwrap();
    // Made twice (a second instance starting): the table is there already.
    store.device_registry(4).await.unwrap();
    common::registry_conformance::conformance(&*registry, 4, 3).await;
    let mut conn = server.connect().await;
    let left = rows(&mut conn, "sealed_sessions_devices").await;
    assert!(left > 0);
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_name = 'sealed_sessions_devices' ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["subject", "id", "entry", "renewed", "expires_at"]);
    // Days later every entry has expired: the store's sweep removes them.
    clock.advance(Duration::from_secs(10 * 24 * 3600));
    assert!(store.sweep().await.unwrap() >= u64::try_from(left).unwrap());
    assert_eq!(rows(&mut conn, "sealed_sessions_devices").await, 0);
}

/// A role that may not create tables (the tables made by a migration, as documented) gets
/// its device registry from the existing table; without the table it gets an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registry_on_tables_made_by_a_migration() {
    let Some(server) = PgServer::start("a_device_registry_on_tables_made_by_a_migration").await
    else {
        return;
    };
    let mut admin = server.connect().await;
    for sql in [
        "CREATE TABLE IF NOT EXISTS \"sealed_sessions\" (id TEXT PRIMARY KEY NOT NULL, record BYTEA NOT NULL, expires_at BIGINT NOT NULL)",
        "CREATE ROLE app LOGIN",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON \"sealed_sessions\" TO app",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    let app_url = server.url().replacen("://sealed@", "://app@", 1);
    let store = PostgresStore::builder(&app_url)
        .create_table(false)
        .build()
        .await
        .unwrap();
    let missing = store.device_registry(50).await;
    assert!(
        missing.is_err(),
        "no devices table and no right to make one"
    );
    for sql in [
        "CREATE TABLE IF NOT EXISTS \"sealed_sessions_devices\" (subject TEXT NOT NULL, id TEXT NOT NULL, entry BYTEA NOT NULL, renewed BIGINT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (subject, id))",
        "CREATE INDEX IF NOT EXISTS \"sealed_sessions_dev_exp_idx\" ON \"sealed_sessions_devices\" (expires_at)",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON \"sealed_sessions_devices\" TO app",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    let registry = store.device_registry(4).await.unwrap();
    common::registry_conformance::conformance(&*registry, 4, 6).await;
}

/// Concurrent requests of one session through the middleware (both adapters), the
/// `UPDATE ... WHERE record = $2` deciding: no update is lost, no logout undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_lose_no_update_in_postgres() {
    let Some(server) = PgServer::start("concurrent_requests_lose_no_update_in_postgres").await
    else {
        return;
    };
    let store = PostgresStore::connect(server.url()).await.unwrap();
    for on in adapters() {
        common::lost_updates::no_lost_updates(on, &store, 5).await;
    }
}

/// The documented migration makes the table the store needs; `create_table(false)` fails
/// without it; rows hold the id's text, the record's bytes and the deadline's milliseconds;
/// a table name that is an SQL keyword or has capitals works, being quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_the_documented_one() {
    let Some(server) = PgServer::start("the_table_is_the_documented_one").await else {
        return;
    };
    let err = PostgresStore::builder(server.url())
        .create_table(false)
        .build()
        .await
        .unwrap_err();
    assert!(is_postgres_backend(&err), "{err:?}");
    assert!(chain(&err).contains("check the table"), "{}", chain(&err));

    // As in PostgresStore's documentation.
    let mut conn = server.connect().await;
    sqlx::raw_sql(
        r#"CREATE TABLE IF NOT EXISTS "sealed_sessions" (id TEXT PRIMARY KEY NOT NULL, record BYTEA NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS "sealed_sessions_expires_at_idx" ON "sealed_sessions" (expires_at);"#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = PostgresStore::builder(server.url())
        .create_table(false)
        .build()
        .await
        .unwrap();
    assert_eq!(store.table(), "sealed_sessions");
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

    // build() made the same table and index, under other names, each quoted.
    for table in ["user", "Mixed_Case"] {
        let store = PostgresStore::builder(server.url())
            .table(table)
            .build()
            .await
            .unwrap();
        store.save(&id, b"r", deadline).await.unwrap();
        assert_eq!(rows(&mut conn, table).await, 1, "{table}");
        let index: String = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexname LIKE '%expires_at%'",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(index.contains("(expires_at)"), "{index}");
    }
}

/// Refused by `build` before anything is sent: no server is needed, and none is contacted.
#[tokio::test]
async fn a_table_name_that_is_not_a_plain_identifier_is_refused() {
    let port = common::postgres::free_port();
    for bad in [
        "sessions; DROP TABLE users",
        "sessions\" (id int); --",
        "",
        "1st",
        "a.b",
        "ta ble",
        &"x".repeat(49),
    ] {
        let start = Instant::now();
        let err = PostgresStore::builder(format!("postgres://u@127.0.0.1:{port}/db"))
            .table(bad)
            .timeout(Duration::from_secs(5))
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidTableName { name } if name == bad),
            "{bad:?}: {err:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not connected first"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_the_build_within_the_timeout_naming_no_password() {
    let port = common::postgres::free_port();
    let timeout = Duration::from_millis(300);
    let builder =
        PostgresStore::builder(format!("postgres://app:hunter2@127.0.0.1:{port}/sessions"))
            .timeout(timeout);
    assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
    let start = Instant::now();
    let err = builder.build().await.unwrap_err();
    let took = start.elapsed();
    assert!(is_postgres_backend(&err), "{err:?}");
    assert!(took < timeout * 3, "{took:?}");
    assert!(chain(&err).contains("timed out"), "{}", chain(&err));
    for shown in [chain(&err), format!("{err:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    // A URL that does not parse fails too, and does not show its password either.
    let err = PostgresStore::builder("postgres://app:hunter2@127.0.0.1:notaport/x")
        .build()
        .await
        .unwrap_err();
    assert!(is_postgres_backend(&err), "{err:?}");
    for shown in [chain(&err), format!("{err:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

/// TLS (rustls): `sslmode=require` encrypts the store's connections; `verify-full` refuses
/// a certificate that Mozilla's roots do not vouch for, and accepts it as `sslrootcert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_encrypts_and_verify_full_checks_the_certificate() {
    let Some(server) =
        PgServer::start_tls("tls_encrypts_and_verify_full_checks_the_certificate").await
    else {
        return;
    };
    let store = PostgresStore::connect(format!("{}?sslmode=require", server.url()))
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    let far = T0.saturating_add(Duration::from_secs(3600 * 24 * 3650));
    store.save(&id, b"r", far).await.unwrap();
    let mut conn = server.connect().await;
    let (all, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.datname = 'sessions' AND a.backend_type = 'client backend' \
         AND a.pid <> pg_backend_pid()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        all > 0 && encrypted == all,
        "{encrypted} of {all} encrypted"
    );

    let err = PostgresStore::builder(format!("{}?sslmode=verify-full", server.url()))
        .build()
        .await
        .unwrap_err();
    assert!(is_postgres_backend(&err), "{err:?}");
    let trusted = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(),
        server.cert().display()
    );
    let store = PostgresStore::connect(trusted).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap().as_deref(), Some(&b"r"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_expired_rows_and_keeps_live_ones() {
    let Some(server) = PgServer::start("the_sweep_removes_expired_rows_and_keeps_live_ones").await
    else {
        return;
    };
    let clock = clock();
    let store = on_clock(&server, &clock).await;
    let mut conn = server.connect().await;
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
        "INSERT INTO sealed_sessions SELECT 'bulk' || g, '\\x00', $1 FROM generate_series(1, 2500) g",
    )
    .bind(T0.as_millis() as i64)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.sweep().await.unwrap(), 2500, "expired at T0");
    assert_eq!(rows(&mut conn, "sealed_sessions").await, 5);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.sweep().await.unwrap(), 3, "expired at their deadline");
    assert_eq!(rows(&mut conn, "sealed_sessions").await, 2);
    for id in &live {
        assert_eq!(store.load(id).await.unwrap().as_deref(), Some(&b"r"[..]));
    }
    assert_eq!(store.sweep().await.unwrap(), 0);
}

/// The background sweep runs at its interval on the store's clock, and stops when the last
/// clone of the store is dropped, letting go of its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_runs_and_stops_with_the_last_clone() {
    let Some(server) =
        PgServer::start("the_background_sweep_runs_and_stops_with_the_last_clone").await
    else {
        return;
    };
    let clock = clock();
    let store = PostgresStore::builder(server.url())
        .clock(Arc::new(clock.clone()))
        .sweep_interval(Some(Duration::from_millis(20)))
        .build()
        .await
        .unwrap();
    let clone = store.clone();
    let mut conn = server.connect().await;
    let id = SessionId::generate().unwrap();
    store
        .save(&id, b"r", T0.saturating_add(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rows(&mut conn, "sealed_sessions").await,
        1,
        "not expired yet"
    );
    clock.advance(Duration::from_secs(1));
    let start = Instant::now();
    while rows(&mut conn, "sealed_sessions").await > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "not swept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    drop(store);
    // One clone left: still sweeping.
    sqlx::query("INSERT INTO sealed_sessions VALUES ('a', '\\x00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    let start = Instant::now();
    while rows(&mut conn, "sealed_sessions").await > 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "not swept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(clone);
    // No clone left: the pool's connections close, and nothing sweeps any more.
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'sessions' \
                  AND backend_type = 'client backend' AND pid <> pg_backend_pid()";
    let start = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(others)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{n} connections left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("INSERT INTO sealed_sessions VALUES ('b', '\\x00', 0)")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rows(&mut conn, "sealed_sessions").await, 1, "still swept");
}

// ---- The middleware in store mode, on PostgreSQL ----

fn routes() -> Routes {
    Routes::new()
        .post("/login", login_admin)
        .get("/user", user)
        .post("/count", count)
        .post("/logout", logout)
        .get("/id", session_id)
}

fn app(on: Adapter, store: &PostgresStore) -> App {
    on.app(
        &routes(),
        SealedSession::server_store(store.clone(), keys())
            .idle_timeout(Some(Duration::from_secs(600))),
    )
}

/// Repeats a request until it succeeds (each failure a 503); panics after `limit`.
async fn until_ok(c: &mut Client, post: bool, uri: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let (resp, _) = c.send(post, uri).await;
        if resp.status() == StatusCode::OK {
            return resp.into_body();
        }
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            start.elapsed() < limit,
            "{uri} still failing after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_and_logout_on_one_ends_it_on_the_other() {
    let Some(server) = PgServer::start("two instances test").await else {
        return;
    };
    // Two instances starting together: the table is created once, without a race.
    let (store_a, store_b) = tokio::join!(
        PostgresStore::connect(server.url()),
        PostgresStore::connect(server.url())
    );
    let (store_a, store_b) = (store_a.unwrap(), store_b.unwrap());
    let mut conn = server.connect().await;
    for on in adapters() {
        let mut a = Client::new(app(on, &store_a));
        let mut b = Client::new(app(on, &store_b));
        assert_eq!(a.text_ok(false, "/user").await, "<none>");
        assert_eq!(
            rows(&mut conn, "sealed_sessions").await,
            0,
            "an empty session is not stored"
        );
        a.text_ok(true, "/login").await;
        let id = a.text_ok(false, "/id").await;
        let stored: String = sqlx::query_scalar("SELECT id FROM sealed_sessions")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored, id, "one row, under the session's id");

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
        assert!(set.first().is_some_and(|c| c.is_removal()), "{set:?}");
        assert_eq!(rows(&mut conn, "sealed_sessions").await, 0, "row deleted");
        b.jar = stolen;
        let (resp, set) = b.send(false, "/user").await;
        resp.assert_status_is_ok();
        assert_eq!(resp.into_body(), "<none>");
        assert!(
            set.first().is_some_and(|c| c.is_removal()),
            "the ended session's cookie is cleared: {set:?}"
        );
    }
}

/// PostgreSQL stopped: each request is a 503 within the timeout, not a new session, and the
/// cookie is kept; after the restart the session is there again, as PostgreSQL kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_is_a_503_and_sessions_survive_its_restart() {
    let Some(mut server) = PgServer::start("outage test").await else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::builder(server.url())
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let mut clients = Vec::new();
    for on in adapters() {
        let mut c = Client::new(app(on, &store));
        c.text_ok(true, "/login").await;
        assert_eq!(c.text_ok(true, "/count").await, "1");
        clients.push((on, c, Client::new(app(on, &store))));
    }

    server.stop();
    let err = store
        .load(&SessionId::generate().unwrap())
        .await
        .unwrap_err();
    assert!(is_postgres_backend(&err), "{err:?}");
    for (on, c, newcomer) in &mut clients {
        let cookie = c.jar.clone();
        for uri in ["/user", "/count"] {
            let start = Instant::now();
            let (resp, set) = c.send(uri == "/count", uri).await;
            resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
            assert!(set.is_empty(), "{on:?} {uri}: the cookie is kept: {set:?}");
            assert!(
                start.elapsed() < timeout * 4,
                "{on:?} {:?}",
                start.elapsed()
            );
        }
        // A new visitor is not given a session that could not be saved.
        let (resp, set) = newcomer.send(true, "/count").await;
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(set.is_empty(), "{on:?}: {set:?}");
        assert_eq!(c.jar.cookies, cookie.cookies, "nothing was changed");
    }

    server.restart().await;
    for (on, c, _) in &mut clients {
        let body = until_ok(c, true, "/count", Duration::from_secs(10)).await;
        assert_eq!(body, "2", "{on:?}: same cookie, same session, nothing lost");
        assert_eq!(c.text_ok(false, "/user").await, "admin");
    }
}

/// A transaction holding the session's row: the store's write waits for it no longer than
/// the timeout, answered as a 503, and PostgreSQL gives the statement up too; once the
/// transaction ends, the same session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_fails_the_write_at_the_timeout() {
    let Some(server) = PgServer::start("a_locked_row_fails_the_write_at_the_timeout").await else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let store = PostgresStore::builder(server.url())
        .timeout(timeout)
        .build()
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    let far = T0.saturating_add(Duration::from_secs(3600 * 24 * 3650));
    store.save(&id, b"r", far).await.unwrap();
    let mut probe = server.connect().await;
    for on in adapters() {
        let mut c = Client::new(app(on, &store));
        c.text_ok(true, "/login").await;
        assert_eq!(c.text_ok(true, "/count").await, "1");

        let mut locker = server.connect().await;
        sqlx::raw_sql("BEGIN; SELECT * FROM sealed_sessions FOR UPDATE")
            .execute(&mut locker)
            .await
            .unwrap();
        let start = Instant::now();
        let err = store.update(&id, b"r", b"r2", far).await.unwrap_err();
        let took = start.elapsed();
        assert!(is_postgres_backend(&err), "{err:?}");
        assert!(chain(&err).contains("timed out"), "{}", chain(&err));
        assert!(
            took >= timeout - Duration::from_millis(50) && took < timeout * 3,
            "{took:?}"
        );
        let start = Instant::now();
        let (resp, set) = c.send(true, "/count").await;
        resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        assert!(set.is_empty(), "{on:?}: {set:?}");
        assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
        // Reads do not wait for the lock.
        assert_eq!(c.text_ok(false, "/user").await, "admin");
        // PostgreSQL gives the statements up too (`statement_timeout`), perhaps a little
        // after the store did: until then one could still go through once the lock goes.
        let start = Instant::now();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            )
            .fetch_one(&mut probe)
            .await
            .unwrap();
            if waiting == 0 {
                break;
            }
            assert!(start.elapsed() < timeout * 3, "still waiting: {waiting}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
        assert_eq!(
            c.text_ok(true, "/count").await,
            "2",
            "the failed request changed nothing"
        );
        assert_eq!(
            store.update(&id, b"r", b"r", far).await.unwrap(),
            Update::Written
        );
    }
}
