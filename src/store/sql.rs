//! What the SQL stores (`PostgresStore` and `SqliteStore`) share: the check of the table
//! name, the SQL they run (one text for both databases but for the column types and the
//! sweep's row locks), what each [`Store`](super::Store) operation means in it, the time
//! limit on every operation, and the background sweep of expired rows.
//!
//! Each store is a [`Core`] over its sqlx pool; the pool runs SQL through [`Exec`], so the
//! semantics are written once, here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::sql_devices::DeviceQueries;
use super::{BoxFuture, StoreError, Update};
use crate::clock::{Clock, Timestamp};
use crate::state::SessionId;

/// The longest table name: its index, `{table}_expires_at_idx`, must fit PostgreSQL's
/// 63-byte identifiers (longer ones would be cut short silently).
const MAX_TABLE_LEN: usize = 48;

/// Rows removed by one `DELETE` of a sweep: a sweep is a series of these, each under the
/// operation's time limit and holding its locks only that long, until one removes fewer.
pub(super) const SWEEP_BATCH: u64 = 1000;

/// The shortest interval between two background sweeps (a zero interval would spin).
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(1);

/// Which database the SQL is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dialect {
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "sqlite")]
    Sqlite,
}

/// The SQL a store runs, made once from its table name.
#[derive(Debug)]
pub(super) struct Queries {
    /// The table's name, as given (the SQL quotes it).
    pub(super) table: Box<str>,
    pub(super) create_table: Box<str>,
    pub(super) create_index: Box<str>,
    /// Fails unless the table exists with the store's columns.
    check: Box<str>,
    /// `$1` id, `$2` now.
    load: Box<str>,
    /// `$1` id, `$2` record, `$3` expires_at.
    save: Box<str>,
    /// `$1` id.
    delete: Box<str>,
    /// `$1` id, `$2` expected, `$3` record, `$4` expires_at, `$5` now.
    update: Box<str>,
    /// `$1` id, `$2` expected, `$3` now.
    delete_expected: Box<str>,
    /// `$1` now.
    sweep: Box<str>,
}

impl Queries {
    /// The SQL for `table`, refused unless it is a plain identifier.
    pub(super) fn new(dialect: Dialect, table: &str) -> Result<Queries, StoreError> {
        check_table_name(table)?;
        let t = format!("\"{table}\"");
        let (bytes, int, skip_locked) = match dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => ("BYTEA", "BIGINT", " FOR UPDATE SKIP LOCKED"),
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => ("BLOB", "INTEGER", ""),
        };
        Ok(Queries {
            table: table.into(),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY NOT NULL, \
                 record {bytes} NOT NULL, expires_at {int} NOT NULL)"
            )
            .into(),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_expires_at_idx\" ON {t} (expires_at)"
            )
            .into(),
            check: format!("SELECT id, record, expires_at FROM {t} LIMIT 0").into(),
            load: format!("SELECT record FROM {t} WHERE id = $1 AND expires_at > $2").into(),
            save: format!(
                "INSERT INTO {t} (id, record, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE \
                 SET record = excluded.record, expires_at = excluded.expires_at"
            )
            .into(),
            delete: format!("DELETE FROM {t} WHERE id = $1").into(),
            update: format!(
                "UPDATE {t} SET record = $3, expires_at = $4 \
                 WHERE id = $1 AND record = $2 AND expires_at > $5"
            )
            .into(),
            delete_expected: format!(
                "DELETE FROM {t} WHERE id = $1 AND record = $2 AND expires_at > $3"
            )
            .into(),
            sweep: format!(
                "DELETE FROM {t} WHERE id IN \
                 (SELECT id FROM {t} WHERE expires_at <= $1 LIMIT {SWEEP_BATCH}{skip_locked})"
            )
            .into(),
        })
    }
}

/// An ASCII letter or `_`, then ASCII letters, digits or `_`; 1 to [`MAX_TABLE_LEN`] bytes.
fn check_table_name(name: &str) -> Result<(), StoreError> {
    let mut bytes = name.bytes();
    let plain = name.len() <= MAX_TABLE_LEN
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        Ok(())
    } else {
        Err(StoreError::InvalidTableName {
            name: name.to_owned(),
        })
    }
}

/// A bind parameter.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Int(i64),
}

/// Runs one SQL statement on a pool (implemented for each sqlx pool by [`exec_on_pool!`]).
pub(super) trait Exec: Send + Sync + 'static {
    /// Runs `sql` with `args`; the number of rows it changed.
    fn execute<'a>(
        &'a self,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>>;

    /// Runs `sql` with `args`; the first column, as bytes, of the first row, if any.
    fn fetch_bytes<'a>(
        &'a self,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, sqlx::Error>>;

    /// Runs `sql` with `args`; the first column, as bytes, of every row.
    fn fetch_all_bytes<'a>(
        &'a self,
        sql: &'a str,
        args: &'a [Arg<'a>],
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>, sqlx::Error>>;
}

/// `impl Exec for sqlx::Pool<$db>`: the same code for each database, whose query results
/// share no trait for `rows_affected`. Expanded in each store's module.
macro_rules! exec_on_pool {
    ($db:ty) => {
        /// `sql` with `args` bound, in order, to `$1`, `$2`, ...
        fn query<'q>(
            sql: &'q str,
            args: &[$crate::store::sql::Arg<'q>],
        ) -> ::sqlx::query::Query<'q, $db, <$db as ::sqlx::Database>::Arguments<'q>> {
            let mut query = ::sqlx::query::<$db>(sql);
            for arg in args {
                query = match *arg {
                    $crate::store::sql::Arg::Text(v) => query.bind(v),
                    $crate::store::sql::Arg::Bytes(v) => query.bind(v),
                    $crate::store::sql::Arg::Int(v) => query.bind(v),
                };
            }
            query
        }

        impl $crate::store::sql::Exec for ::sqlx::Pool<$db> {
            fn execute<'a>(
                &'a self,
                sql: &'a str,
                args: &'a [$crate::store::sql::Arg<'a>],
            ) -> $crate::store::BoxFuture<'a, Result<u64, ::sqlx::Error>> {
                Box::pin(async move { Ok(query(sql, args).execute(self).await?.rows_affected()) })
            }

            fn fetch_bytes<'a>(
                &'a self,
                sql: &'a str,
                args: &'a [$crate::store::sql::Arg<'a>],
            ) -> $crate::store::BoxFuture<'a, Result<Option<Vec<u8>>, ::sqlx::Error>> {
                Box::pin(async move {
                    match query(sql, args).fetch_optional(self).await? {
                        Some(row) => ::sqlx::Row::try_get::<Vec<u8>, usize>(&row, 0).map(Some),
                        None => Ok(None),
                    }
                })
            }

            fn fetch_all_bytes<'a>(
                &'a self,
                sql: &'a str,
                args: &'a [$crate::store::sql::Arg<'a>],
            ) -> $crate::store::BoxFuture<'a, Result<Vec<Vec<u8>>, ::sqlx::Error>> {
                Box::pin(async move {
                    query(sql, args)
                        .fetch_all(self)
                        .await?
                        .iter()
                        .map(|row| ::sqlx::Row::try_get::<Vec<u8>, usize>(row, 0))
                        .collect()
                })
            }
        }
    };
}
pub(super) use exec_on_pool;

/// What went wrong in one SQL store operation: the `source` of [`StoreError::Backend`].
/// It names the operation and carries sqlx's error, which for these statements shows
/// neither the URL's password nor a bound value (a record or an id).
#[derive(Debug, thiserror::Error)]
pub(super) enum OpError {
    #[error("{0} failed")]
    Sql(&'static str, #[source] sqlx::Error),
    #[error("{0} timed out after {1:?}")]
    TimedOut(&'static str, Duration),
    #[error("the store must be built on a Tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

pub(super) fn backend(store: &'static str, error: OpError) -> StoreError {
    StoreError::Backend {
        store,
        source: Box::new(error),
    }
}

/// The current Tokio runtime, which sqlx and the sweep need (sqlx would panic without one).
pub(super) fn runtime(store: &'static str) -> Result<tokio::runtime::Handle, StoreError> {
    tokio::runtime::Handle::try_current().map_err(|e| backend(store, OpError::NoRuntime(e)))
}

/// `fut`, failed with a [`StoreError::Backend`] when it fails or takes longer than `timeout`.
pub(super) async fn limit<T>(
    store: &'static str,
    timeout: Duration,
    op: &'static str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        // The database's own limits are the same: whichever fires first, the same error.
        Ok(Err(e)) if is_timeout(&e) => Err(backend(store, OpError::TimedOut(op, timeout))),
        Ok(Err(e)) => Err(backend(store, OpError::Sql(op, e))),
        Err(_) => Err(backend(store, OpError::TimedOut(op, timeout))),
    }
}

/// Whether `e` is one of the limits the stores set to their timeout: the pool's wait for a
/// connection, PostgreSQL's `statement_timeout` (SQLSTATE 57014, `query_canceled`), or
/// SQLite's `busy_timeout` (`SQLITE_BUSY`, 5).
fn is_timeout(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c == "57014" || c == "5"),
        _ => false,
    }
}

/// A timestamp as the `BIGINT` milliseconds stored (past `i64::MAX`, some 292 million years
/// from 1970, the largest).
pub(super) fn millis(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// A store's pool and SQL, and the operations of [`Store`](super::Store) on them.
pub(super) struct Core<E> {
    pub(super) exec: E,
    pub(super) sql: Queries,
    pub(super) timeout: Duration,
    pub(super) clock: Arc<dyn Clock>,
    /// `"postgres"` or `"sqlite"`, for [`StoreError::Backend`].
    pub(super) store: &'static str,
    /// The device registry's table, swept with the sessions' once a registry is made.
    pub(super) devices: DevicesTable,
}

/// The devices table's SQL, and whether a registry uses it.
#[derive(Debug)]
pub(super) struct DevicesTable {
    pub(super) sql: DeviceQueries,
    pub(super) in_use: AtomicBool,
}

impl DevicesTable {
    pub(super) fn new(dialect: Dialect, table: &str) -> DevicesTable {
        DevicesTable {
            sql: DeviceQueries::new(dialect, table),
            in_use: AtomicBool::new(false),
        }
    }
}

impl<E: Exec> Core<E> {
    pub(super) async fn run(
        &self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        limit(self.store, self.timeout, op, self.exec.execute(sql, args)).await
    }

    /// Runs `sql`; the first column of every row.
    pub(super) async fn fetch_all(
        &self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        limit(
            self.store,
            self.timeout,
            op,
            self.exec.fetch_all_bytes(sql, args),
        )
        .await
    }

    async fn fetch(
        &self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        limit(
            self.store,
            self.timeout,
            op,
            self.exec.fetch_bytes(sql, args),
        )
        .await
    }

    /// Creates the table and its index if missing, one statement after the other (for
    /// SQLite, where each takes the database's write lock).
    #[cfg(feature = "sqlite")]
    pub(super) async fn create_table(&self) -> Result<(), StoreError> {
        self.run("create the table", &self.sql.create_table, &[])
            .await?;
        self.run("create the table's index", &self.sql.create_index, &[])
            .await?;
        Ok(())
    }

    /// Fails unless the table exists with the store's columns, so that a deployment whose
    /// migration did not run fails at start rather than on its first request.
    pub(super) async fn check_table(&self) -> Result<(), StoreError> {
        self.run("check the table", &self.sql.check, &[])
            .await
            .map(drop)
    }

    pub(super) async fn load(&self, id: &SessionId) -> Result<Option<Vec<u8>>, StoreError> {
        let id = text(id);
        let now = millis(self.clock.now());
        self.fetch("load", &self.sql.load, &[Arg::Text(&id), Arg::Int(now)])
            .await
    }

    pub(super) async fn save(
        &self,
        id: &SessionId,
        record: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        if expires_at <= self.clock.now() {
            // Already expired: what it replaces must not outlive it either.
            return self.delete(id).await;
        }
        let id = text(id);
        let args = [
            Arg::Text(&id),
            Arg::Bytes(record),
            Arg::Int(millis(expires_at)),
        ];
        self.run("save", &self.sql.save, &args).await.map(drop)
    }

    pub(super) async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let id = text(id);
        self.run("delete", &self.sql.delete, &[Arg::Text(&id)])
            .await
            .map(drop)
    }

    /// The compare-and-set: one `UPDATE` (or, for a deadline already past, one `DELETE`)
    /// that writes only where the row holds `expected` and has not expired, so the decision
    /// is the database's, atomic. When it changed no row, one `SELECT` says why: no live row
    /// (`Gone`) or another record (`Changed`).
    pub(super) async fn update(
        &self,
        id: &SessionId,
        expected: &[u8],
        record: &[u8],
        expires_at: Timestamp,
    ) -> Result<Update, StoreError> {
        let now = self.clock.now();
        let id = text(id);
        let written = if expires_at <= now {
            let args = [Arg::Text(&id), Arg::Bytes(expected), Arg::Int(millis(now))];
            self.run("update", &self.sql.delete_expected, &args).await?
        } else {
            let args = [
                Arg::Text(&id),
                Arg::Bytes(expected),
                Arg::Bytes(record),
                Arg::Int(millis(expires_at)),
                Arg::Int(millis(now)),
            ];
            self.run("update", &self.sql.update, &args).await?
        };
        if written > 0 {
            return Ok(Update::Written);
        }
        let args = [Arg::Text(&id), Arg::Int(millis(now))];
        Ok(match self.fetch("update", &self.sql.load, &args).await? {
            Some(current) => Update::Changed(current),
            None => Update::Gone,
        })
    }

    /// Deletes every row expired by the store's clock, [`SWEEP_BATCH`] at a time, from the
    /// sessions' table and, once a device registry uses it, the devices table; how many.
    pub(super) async fn sweep(&self) -> Result<u64, StoreError> {
        let now = millis(self.clock.now());
        let mut removed = self.sweep_table(&self.sql.sweep, now).await?;
        if self.devices.in_use.load(Ordering::Acquire) {
            let devices = self.sweep_table(&self.devices.sql.sweep, now).await?;
            removed = removed.saturating_add(devices);
        }
        Ok(removed)
    }

    async fn sweep_table(&self, sql: &str, now: i64) -> Result<u64, StoreError> {
        let mut removed = 0u64;
        loop {
            let n = self.run("sweep", sql, &[Arg::Int(now)]).await?;
            removed = removed.saturating_add(n);
            if n < SWEEP_BATCH {
                return Ok(removed);
            }
        }
    }
}

/// The id's 22-character base64url form, the `id` column.
pub(super) fn text(id: &SessionId) -> String {
    let mut s = String::with_capacity(crate::state::id::TEXT_LEN);
    id.push_to(&mut s);
    s
}

/// The background sweep: aborted when dropped. Each store holds it in an `Arc` that its
/// clones share, so it stops with the last clone (and with it the task's hold on the pool).
#[derive(Debug)]
pub(super) struct Sweeper(tokio::task::AbortHandle);

impl Sweeper {
    /// Stops the sweep (at once if it is waiting, else at its next `await`).
    pub(super) fn stop(&self) {
        self.0.abort();
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts sweeping `core` every `every` (the first sweep one interval from now) on `rt`.
/// A failed sweep is logged and tried again at the next interval.
pub(super) fn spawn_sweeper<E: Exec>(
    core: Arc<Core<E>>,
    every: Duration,
    rt: &tokio::runtime::Handle,
) -> Sweeper {
    let every = every.max(MIN_SWEEP_INTERVAL);
    let task = rt.spawn(async move {
        let start = tokio::time::Instant::now() + every;
        let mut ticks = tokio::time::interval_at(start, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match core.sweep().await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(
                    target: "sealed_session",
                    store = core.store,
                    table = &*core.sql.table,
                    removed,
                    "swept expired sessions"
                ),
                Err(e) => tracing::warn!(
                    target: "sealed_session",
                    store = core.store,
                    table = &*core.sql.table,
                    error = %ErrorChain(&e),
                    "sweeping expired sessions failed; tried again at the next interval"
                ),
            }
        }
    });
    Sweeper(task.abort_handle())
}

/// Shows an error with its sources, for log lines.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_are_table_names() {
        for ok in [
            "sessions",
            "_s",
            "S",
            "My_Sessions2",
            &"a".repeat(MAX_TABLE_LEN),
        ] {
            assert!(check_table_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let too_long = "a".repeat(MAX_TABLE_LEN + 1);
        for bad in [
            "",
            "1sessions",
            "sessions; DROP TABLE users",
            "sessions--",
            "a-b",
            "a b",
            "\"quoted\"",
            "public.sessions",
            "sessi\u{f6}ns",
            "s\0",
            &too_long,
        ] {
            assert!(
                matches!(
                    check_table_name(bad),
                    Err(StoreError::InvalidTableName { name }) if name == bad
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    #[cfg(all(feature = "postgres", feature = "sqlite"))]
    fn the_sql_quotes_the_table_and_only_postgres_skips_locked_rows() {
        let pg = Queries::new(Dialect::Postgres, "user").unwrap();
        assert_eq!(
            &*pg.update,
            "UPDATE \"user\" SET record = $3, expires_at = $4 \
             WHERE id = $1 AND record = $2 AND expires_at > $5"
        );
        assert!(
            pg.sweep.ends_with("LIMIT 1000 FOR UPDATE SKIP LOCKED)"),
            "{}",
            pg.sweep
        );
        assert!(
            pg.create_table
                .contains("record BYTEA NOT NULL, expires_at BIGINT")
        );
        let lite = Queries::new(Dialect::Sqlite, "user").unwrap();
        assert!(lite.sweep.ends_with("LIMIT 1000)"), "{}", lite.sweep);
        assert!(
            lite.create_table
                .contains("record BLOB NOT NULL, expires_at INTEGER")
        );
    }

    #[test]
    fn deadlines_past_the_largest_bigint_are_the_largest_bigint() {
        assert_eq!(millis(Timestamp::from_millis(42)), 42);
        assert_eq!(millis(Timestamp::from_millis(u64::MAX)), i64::MAX);
    }
}
