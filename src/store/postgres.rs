//! The PostgreSQL store, like connect-pg-simple for express-session: one row per session in
//! one table, expired rows swept periodically. The design, the SQL and the failure behaviour
//! are documented on [`PostgresStore`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::{self, Core, Dialect, OpError, Queries, Sweeper};
use super::{BoxFuture, Store, StoreError, Update};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::SessionId;

const STORE: &str = "postgres";

/// The table when none is set: not connect-pg-simple's `session`, whose columns differ, so
/// that an application moving from it keeps its old table apart.
const DEFAULT_TABLE: &str = "sealed_sessions";

/// The advisory lock held while the table is created, so that instances starting together
/// do not race in `CREATE TABLE IF NOT EXISTS` (which can then fail on PostgreSQL's catalog
/// constraints). Any fixed number serves: the bytes of "SEALEDSS".
const CREATE_LOCK: i64 = 0x5345_414C_4544_5353;

sql::exec_on_pool!(sqlx::Postgres);

/// Builds a [`PostgresStore`]. Every setter names its default.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::store::PostgresStore;
///
/// let store = PostgresStore::builder("postgres://app@localhost/app")
///     .table("web_sessions")
///     .build()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct PostgresStoreBuilder {
    url: String,
    table: String,
    max_connections: u32,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    sweep_interval: Option<Duration>,
    create_table: bool,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        f.debug_struct("PostgresStoreBuilder")
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("create_table", &self.create_table)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// The table that holds the sessions: a plain SQL identifier (an ASCII letter or `_`,
    /// then ASCII letters, digits or `_`, at most 48 bytes), which the SQL writes in double
    /// quotes, so case counts. Anything else makes [`build`](Self::build) fail with
    /// [`StoreError::InvalidTableName`]. To use another schema than the first of the
    /// `search_path`, set that in the URL (`?options=-c%20search_path%3Dmyschema`). Instances
    /// that share sessions use the same table. Default: `sealed_sessions`.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// The most connections the store opens to PostgreSQL; operations beyond that wait for
    /// one (within the timeout). At least 1. Default: 10.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Time limit for connecting and for each operation (load, save, delete, update, and
    /// each batch of a sweep), waiting for a free connection included; past it the operation
    /// fails, and the middleware answers 503. It is also the connections'
    /// `statement_timeout`, so that the server gives a statement up (and its row locks)
    /// about when the store does. Default: 2 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The clock that decides which rows have expired (in loads, compare-and-sets and
    /// sweeps). Default: [`SystemClock`]. Give it the middleware's clock when that is not the
    /// system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How often a background task deletes the expired rows ([`PostgresStore::sweep`]);
    /// `None`: never (sweep yourself, or not at all: expired rows are never returned, they
    /// only take space). The task stops when the last clone of the store is dropped. Several
    /// instances sweeping the same table do not get in each other's way. An interval under
    /// 1 ms is taken as 1 ms. Default: every 10 minutes.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Whether [`build`](Self::build) creates the table and its index when they are missing
    /// (the SQL is in [`PostgresStore`]'s documentation, to run as a migration instead).
    /// With `false`, the database user needs no right to create tables. Either way `build`
    /// fails when the table is not there. Default: `true`.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Connects (on the current Tokio runtime), creates the table if it is missing and
    /// allowed to, checks that it has the store's columns, and starts the sweep. Fails when
    /// the table name is refused, or PostgreSQL cannot be reached within the timeout or
    /// answers an error, so that a misconfigured deployment does not start.
    pub async fn build(self) -> Result<PostgresStore, StoreError> {
        let sql = Queries::new(Dialect::Postgres, &self.table)?;
        let rt = sql::runtime(STORE)?;
        let statement_timeout = self.timeout.as_millis().max(1);
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| sql::backend(STORE, OpError::Sql("parse the PostgreSQL URL", e)))?
            .options([("statement_timeout", format!("{statement_timeout}ms"))]);
        let pool = sql::limit(
            STORE,
            self.timeout,
            "connect to PostgreSQL",
            PgPoolOptions::new()
                .max_connections(self.max_connections)
                .acquire_timeout(self.timeout)
                .connect_with(options),
        )
        .await?;
        let core = Core {
            exec: pool,
            sql,
            timeout: self.timeout,
            clock: self.clock,
            store: STORE,
            devices: sql::DevicesTable::new(Dialect::Postgres, &self.table),
        };
        if self.create_table {
            sql::limit(
                STORE,
                self.timeout,
                "create the table",
                create_table(
                    &core.exec,
                    &[&core.sql.create_table, &core.sql.create_index],
                ),
            )
            .await?;
        }
        core.check_table().await?;
        let core = Arc::new(core);
        let sweeper = self
            .sweep_interval
            .map(|every| Arc::new(sql::spawn_sweeper(core.clone(), every, &rt)));
        Ok(PostgresStore {
            core,
            sweep_interval: self.sweep_interval,
            sweeper,
        })
    }
}

/// A table and its index (`ddl`), created under an advisory lock in one transaction.
async fn create_table(pool: &PgPool, ddl: &[&str]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_LOCK)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    for ddl in ddl {
        sqlx::query(ddl).persistent(false).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Sessions in a PostgreSQL table, shared by every instance that uses the same database and
/// table; they survive a restart of the application (and of PostgreSQL, as its data does).
///
/// ```no_run
/// use sealed_session::store::PostgresStore;
/// use sealed_session::{Keyring, SealedSession};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::builder("postgres://app:secret@db.internal/app?sslmode=verify-full")
///     .table("web_sessions")
///     .timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// let ring = Keyring::from_secret("a long random secret of at least thirty-two bytes")?;
/// let sessions = SealedSession::server_store(store, ring);
/// # let _ = sessions;
/// # Ok(())
/// # }
/// ```
///
/// The URL is libpq's (`postgres://user:password@host:port/database?sslmode=...`, as sqlx
/// reads it). TLS is rustls: `sslmode=require` encrypts, `verify-full` also checks the
/// server's certificate against Mozilla's roots or `sslrootcert`; the default, `prefer`,
/// uses TLS when the server offers it, unverified. Through a connection pooler such as
/// PgBouncer, the pooler must accept the `options` startup parameter (which carries the
/// `statement_timeout`, below) and, in transaction mode, prepared statements (PgBouncer
/// 1.21 and later, with `max_prepared_statements`).
///
/// # Data in PostgreSQL
/// One row per session, in the table `sealed_sessions` by default (written `{table}` below,
/// always in double quotes). [`build`](PostgresStoreBuilder::build) creates it, in one
/// transaction under an advisory lock so that instances starting together do not race,
/// unless told not to ([`create_table(false)`](PostgresStoreBuilder::create_table)); to
/// create it yourself, as a migration, run (with your table's name):
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "sealed_sessions" (id TEXT PRIMARY KEY NOT NULL, record BYTEA NOT NULL, expires_at BIGINT NOT NULL);
/// CREATE INDEX IF NOT EXISTS "sealed_sessions_expires_at_idx" ON "sealed_sessions" (expires_at);
/// ```
///
/// `id` is the session id in its 22-character base64url form, `record` the record's bytes
/// (the binary layout of `docs/FORMAT.md`), `expires_at` its deadline in milliseconds since
/// the Unix epoch. "Now" is the store's clock, in the same unit. The statements, as run:
/// - load: `SELECT record FROM {table} WHERE id = $1 AND expires_at > $2` (`$2` now);
/// - save: `INSERT INTO {table} (id, record, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id)
///   DO UPDATE SET record = excluded.record, expires_at = excluded.expires_at`; a record
///   whose deadline has already passed is deleted instead (as by delete);
/// - compare-and-set ([`Store::update`]): `UPDATE {table} SET record = $3, expires_at = $4
///   WHERE id = $1 AND record = $2 AND expires_at > $5` (`$2` the record expected, `$3` the
///   new one, `$4` its deadline, `$5` now), one atomic statement: a row updated is
///   `Written`. When the new deadline has already passed, `DELETE FROM {table} WHERE id = $1
///   AND record = $2 AND expires_at > $3` (`$3` now) instead. When neither changed a row,
///   the load's `SELECT` tells `Changed` (with the record it returns) from `Gone` (no row);
/// - delete: `DELETE FROM {table} WHERE id = $1`;
/// - sweep ([`sweep`](PostgresStore::sweep), and every `sweep_interval` in the background):
///   `DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE expires_at <= $1 LIMIT
///   1000 FOR UPDATE SKIP LOCKED)` (`$1` now), repeated until it deletes fewer than 1000
///   rows; rows that another transaction holds are left to the next sweep.
///
/// Expired rows are never returned, swept or not: the sweep only reclaims space.
///
/// # Failures
/// Every operation is bounded by the timeout (default 2 seconds) and fails with
/// [`StoreError::Backend`] (`store: "postgres"`) when PostgreSQL cannot be reached, answers an
/// error, or does not answer in time; the middleware then answers 503 rather than starting a
/// new session. While the server is unreachable an operation keeps trying to connect until
/// its time is up. Connections are checked before use and replaced when broken, so service
/// resumes as soon as PostgreSQL is back, with the sessions it kept. Errors name the
/// operation, never the URL's password or a record.
///
/// As with any database, a write that timed out may still be carried out: the server gives
/// the statement up at its `statement_timeout` (the same timeout), which can come a little
/// after the store gave up.
///
/// Clones share one connection pool and one sweep.
#[derive(Clone)]
pub struct PostgresStore {
    core: Arc<Core<PgPool>>,
    sweep_interval: Option<Duration>,
    /// Aborts the sweep when the last clone is dropped.
    sweeper: Option<Arc<Sweeper>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table())
            .field("timeout", &self.core.timeout)
            .field("sweep_interval", &self.sweep_interval)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A builder for a store at `url` (for example
    /// `postgres://app:password@127.0.0.1:5432/app`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 10,
            timeout: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            sweep_interval: Some(Duration::from_secs(10 * 60)),
            create_table: true,
        }
    }

    /// A store at `url` with every default: `PostgresStore::builder(url).build().await`.
    pub async fn connect(url: impl Into<String>) -> Result<PostgresStore, StoreError> {
        PostgresStore::builder(url).build().await
    }

    /// The table's name, as given (unquoted).
    pub fn table(&self) -> &str {
        &self.core.sql.table
    }

    /// Deletes the rows expired by the store's clock now, answering how many. The
    /// background sweep calls the same.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        self.core.sweep().await
    }

    /// A "your devices" [`Registry`](crate::devices::Registry) on this store's database and
    /// pool: the table `{table}_devices`, created (under the same advisory lock) if missing
    /// and allowed (otherwise it must exist: a role that may not create tables uses a
    /// migration),
    /// keeping at most `max_per_subject` sessions per subject (the most recently renewed;
    /// [`DEFAULT_MAX_PER_SUBJECT`](crate::devices::DEFAULT_MAX_PER_SUBJECT) is 50). Its
    /// expired rows go with the store's sweep. The table, as a migration:
    ///
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS "sealed_sessions_devices" (subject TEXT NOT NULL, id TEXT NOT NULL, entry BYTEA NOT NULL, renewed BIGINT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (subject, id));
    /// CREATE INDEX IF NOT EXISTS "sealed_sessions_dev_exp_idx" ON "sealed_sessions_devices" (expires_at);
    /// ```
    ///
    /// A record is an upsert of the session's row (`entry` is the entry as JSON) and one
    /// `DELETE` of the subject's rows that expired or fall past the bound; a list one
    /// `SELECT`; a removal one `DELETE`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use sealed_session::devices::Devices;
    /// use sealed_session::store::PostgresStore;
    /// use sealed_session::{Keyring, SealedSession};
    ///
    /// let store = PostgresStore::connect("postgres://app:secret@db.internal/app").await?;
    /// let devices = Devices::new(store.device_registry(50).await?);
    /// let ring = Keyring::from_secret("a long random secret of at least thirty-two bytes")?;
    /// let sessions = SealedSession::server_store(store, ring).devices(devices);
    /// # let _ = sessions;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn device_registry(
        &self,
        max_per_subject: usize,
    ) -> Result<Arc<dyn crate::devices::Registry>, StoreError> {
        let ddl = &self.core.devices.sql;
        let created = sql::limit(
            STORE,
            self.core.timeout,
            "create the devices table",
            create_table(&self.core.exec, &[&ddl.create_table, &ddl.create_index]),
        )
        .await;
        // A role that may not create tables (a migration made it): the table must be there.
        if let Err(e) = created {
            self.core
                .run("check the devices table", &ddl.check, &[])
                .await
                .map_err(|_| e)?;
        }
        Ok(super::sql_devices::registry(&self.core, max_per_subject))
    }

    /// Closes the store's connections, for a graceful shutdown: stops the sweep, waits for
    /// the operations in flight, then closes every connection of every clone. Operations
    /// after it fail with [`StoreError::Backend`].
    pub async fn close(&self) {
        if let Some(sweeper) = &self.sweeper {
            sweeper.stop();
        }
        self.core.exec.close().await;
    }
}

impl Store for PostgresStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(self.core.load(id))
    }

    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.core.save(id, record, expires_at))
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.core.delete(id))
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        expected: &'a [u8],
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(self.core.update(id, expected, record, expires_at))
    }
}
