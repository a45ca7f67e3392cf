//! The SQLite store, like connect-sqlite3 (or connect-session-sequelize on SQLite) for
//! express-session: one row per session in a table of an embedded database file. The
//! design, the SQL and the failure behaviour are documented on [`SqliteStore`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sql::{self, Core, Dialect, OpError, Queries, Sweeper};
use super::{BoxFuture, Store, StoreError, Update};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::SessionId;

const STORE: &str = "sqlite";

/// The table when none is set (the same as `PostgresStore`'s).
const DEFAULT_TABLE: &str = "sealed_sessions";

/// The path that opens a private in-memory database instead of a file.
const IN_MEMORY: &str = ":memory:";

sql::exec_on_pool!(sqlx::Sqlite);

/// Builds a [`SqliteStore`]. Every setter names its default.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::store::SqliteStore;
///
/// let store = SqliteStore::builder("sessions.db").table("web_sessions").build().await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct SqliteStoreBuilder {
    path: PathBuf,
    table: String,
    max_connections: u32,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    sweep_interval: Option<Duration>,
    create_table: bool,
}

impl std::fmt::Debug for SqliteStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStoreBuilder")
            .field("path", &self.path)
            .field("table", &self.table)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("create_table", &self.create_table)
            .finish_non_exhaustive()
    }
}

impl SqliteStoreBuilder {
    /// The table that holds the sessions: a plain SQL identifier (an ASCII letter or `_`,
    /// then ASCII letters, digits or `_`, at most 48 bytes), which the SQL writes in double
    /// quotes. Anything else makes [`build`](Self::build) fail with
    /// [`StoreError::InvalidTableName`]. Default: `sealed_sessions`.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// The most connections the store opens to the file. Reads run side by side (WAL);
    /// writes take turns, as SQLite allows one writer at a time. At least 1; a `:memory:`
    /// database always has exactly 1. Default: 4.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Time limit for opening the file and for each operation (load, save, delete, update,
    /// and each batch of a sweep), waiting for a free connection or for another writer
    /// (SQLite's `busy_timeout`) included; past it the operation fails, and the middleware
    /// answers 503. Default: 2 seconds.
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

    /// How often a background task deletes the expired rows ([`SqliteStore::sweep`]);
    /// `None`: never (expired rows are never returned, they only take space). The task stops
    /// when the last clone of the store is dropped. An interval under 1 ms is taken as 1 ms.
    /// Default: every 10 minutes.
    pub fn sweep_interval(mut self, every: Option<Duration>) -> Self {
        self.sweep_interval = every;
        self
    }

    /// Whether [`build`](Self::build) creates the table and its index when they are missing
    /// (the SQL is in [`SqliteStore`]'s documentation, to run as a migration instead). Either
    /// way `build` fails when the table is not there. Default: `true`.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Opens the file (creating it if missing) in WAL mode on the current Tokio runtime,
    /// creates the table if it is missing and allowed to, checks that it has the store's
    /// columns, and starts the sweep. Fails when the table name is refused, or the file
    /// cannot be opened or written within the timeout, so that a misconfigured deployment
    /// does not start.
    pub async fn build(self) -> Result<SqliteStore, StoreError> {
        let sql = Queries::new(Dialect::Sqlite, &self.table)?;
        let rt = sql::runtime(STORE)?;
        let in_memory = self.path.as_os_str() == IN_MEMORY;
        let options = if in_memory {
            // A database of its own, not shared with other stores of the process.
            SqliteConnectOptions::from_str(IN_MEMORY)
                .map_err(|e| sql::backend(STORE, OpError::Sql("open the database", e)))?
        } else {
            SqliteConnectOptions::new()
                .filename(&self.path)
                .create_if_missing(true)
        }
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(self.timeout);
        let pool = if in_memory {
            // The database lives as long as its one connection: never close it.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(self.max_connections)
        }
        .acquire_timeout(self.timeout);
        let pool = sql::limit(
            STORE,
            self.timeout,
            "open the database",
            connect(pool, options),
        )
        .await?;
        let core = Core {
            exec: pool,
            sql,
            timeout: self.timeout,
            clock: self.clock,
            store: STORE,
            devices: sql::DevicesTable::new(Dialect::Sqlite, &self.table),
        };
        if self.create_table {
            core.create_table().await?;
        }
        core.check_table().await?;
        let core = Arc::new(core);
        let sweeper = self
            .sweep_interval
            .map(|every| Arc::new(sql::spawn_sweeper(core.clone(), every, &rt)));
        Ok(SqliteStore {
            core,
            path: self.path.into(),
            sweep_interval: self.sweep_interval,
            sweeper,
        })
    }
}

/// Opens the pool, trying again while SQLite answers "busy" at once: two processes opening
/// one new file together race to switch it to WAL, and the loser is refused without waiting
/// for `busy_timeout`. The caller bounds the time.
async fn connect(
    pool: SqlitePoolOptions,
    options: SqliteConnectOptions,
) -> Result<SqlitePool, sqlx::Error> {
    loop {
        match pool.clone().connect_with(options.clone()).await {
            Err(sqlx::Error::Database(e)) if is_busy(e.code().as_deref()) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Whether an SQLite result code is `SQLITE_BUSY` or one of its extended codes.
fn is_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// Sessions in an embedded SQLite database file: for one machine that must keep its
/// sessions across a restart, with nothing to install (SQLite is compiled into the crate).
///
/// Several processes on the same machine may share the file: it is opened in WAL mode, so
/// readers do not wait for the writer, and SQLite's locks keep every compare-and-set
/// atomic across processes. Several machines may not, not even through a network file
/// system (WAL needs shared memory, and network file systems break SQLite's locks): use
/// `PostgresStore` or `RedisStore` to share sessions between machines.
///
/// ```no_run
/// use sealed_session::store::SqliteStore;
/// use sealed_session::{Keyring, SealedSession};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteStore::builder("/var/lib/myapp/sessions.db").build().await?;
/// let ring = Keyring::from_secret("a long random secret of at least thirty-two bytes")?;
/// let sessions = SealedSession::server_store(store, ring);
/// # let _ = sessions;
/// # Ok(())
/// # }
/// ```
///
/// The path `:memory:` opens a private in-memory database instead, lost with the store: for
/// tests.
///
/// # Data in SQLite
/// The file is opened with `PRAGMA journal_mode = WAL` (which stays set in the file),
/// `PRAGMA synchronous = NORMAL` (a commit survives the application's crash or restart; a
/// power cut or an OS crash may lose the last ones, never corrupt the file) and
/// `PRAGMA busy_timeout` set to the timeout. One row per session, in the table `sealed_sessions` by default
/// (written `{table}` below, always in double quotes).
/// [`build`](SqliteStoreBuilder::build) creates it, unless told not to
/// ([`create_table(false)`](SqliteStoreBuilder::create_table)); to create it yourself, run:
///
/// ```sql
/// CREATE TABLE IF NOT EXISTS "sealed_sessions" (id TEXT PRIMARY KEY NOT NULL, record BLOB NOT NULL, expires_at INTEGER NOT NULL);
/// CREATE INDEX IF NOT EXISTS "sealed_sessions_expires_at_idx" ON "sealed_sessions" (expires_at);
/// ```
///
/// `id` is the session id in its 22-character base64url form, `record` the record's bytes
/// (the binary layout of `docs/FORMAT.md`), `expires_at` its deadline in milliseconds since
/// the Unix epoch. "Now" is the store's clock, in the same unit. The statements, as run
/// (each alone, so each is its own transaction):
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
/// - sweep ([`sweep`](SqliteStore::sweep), and every `sweep_interval` in the background):
///   `DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE expires_at <= $1 LIMIT
///   1000)` (`$1` now), repeated until it deletes fewer than 1000 rows, so that no batch
///   holds the write lock long.
///
/// Expired rows are never returned, swept or not: the sweep only reclaims space.
///
/// # Failures
/// Every operation is bounded by the timeout (default 2 seconds) and fails with
/// [`StoreError::Backend`] (`store: "sqlite"`) when the file cannot be read or written, or
/// another connection (of this process or another) holds the write lock for longer; the
/// middleware then answers 503 rather than starting a new session. Errors name the
/// operation, never a record.
///
/// A write that timed out may still be carried out: SQLite gives it up at its
/// `busy_timeout` (the same timeout), which can come a little after the store gave up.
///
/// Clones share one connection pool and one sweep.
#[derive(Clone)]
pub struct SqliteStore {
    core: Arc<Core<SqlitePool>>,
    path: Arc<Path>,
    sweep_interval: Option<Duration>,
    /// Aborts the sweep when the last clone is dropped.
    sweeper: Option<Arc<Sweeper>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("table", &self.table())
            .field("timeout", &self.core.timeout)
            .field("sweep_interval", &self.sweep_interval)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// A builder for a store in the file at `path` (created if missing), or in memory for
    /// `:memory:`.
    pub fn builder(path: impl Into<PathBuf>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.into(),
            table: DEFAULT_TABLE.to_owned(),
            max_connections: 4,
            timeout: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            sweep_interval: Some(Duration::from_secs(10 * 60)),
            create_table: true,
        }
    }

    /// A store in the file at `path` with every default:
    /// `SqliteStore::builder(path).build().await`.
    pub async fn open(path: impl Into<PathBuf>) -> Result<SqliteStore, StoreError> {
        SqliteStore::builder(path).build().await
    }

    /// The database file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// A "your devices" [`Registry`](crate::devices::Registry) in this store's file: the
    /// table `{table}_devices`, created if missing, keeping at most `max_per_subject`
    /// sessions per subject (the most recently renewed). Its expired rows go with the
    /// store's sweep. The table, as a migration:
    ///
    /// ```sql
    /// CREATE TABLE IF NOT EXISTS "sealed_sessions_devices" (subject TEXT NOT NULL, id TEXT NOT NULL, entry BLOB NOT NULL, renewed INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (subject, id));
    /// CREATE INDEX IF NOT EXISTS "sealed_sessions_dev_exp_idx" ON "sealed_sessions_devices" (expires_at);
    /// ```
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use sealed_session::devices::Devices;
    /// use sealed_session::store::SqliteStore;
    ///
    /// let store = SqliteStore::open("sessions.db").await?;
    /// let devices = Devices::new(store.device_registry(50).await?);
    /// # let _ = devices;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn device_registry(
        &self,
        max_per_subject: usize,
    ) -> Result<Arc<dyn crate::devices::Registry>, StoreError> {
        let ddl = &self.core.devices.sql;
        for (op, sql) in [
            ("create the devices table", &ddl.create_table),
            ("create the devices table's index", &ddl.create_index),
        ] {
            // A file that may not be written to that way (a migration made the table):
            // the table must be there.
            if let Err(e) = self.core.run(op, sql, &[]).await {
                self.core
                    .run("check the devices table", &ddl.check, &[])
                    .await
                    .map_err(|_| e)?;
            }
        }
        Ok(super::sql_devices::registry(&self.core, max_per_subject))
    }

    /// Closes the store's connections, for a graceful shutdown: stops the sweep, waits for
    /// the operations in flight, then closes every connection of every clone (SQLite then
    /// folds its write-ahead log into the file). Operations after it fail with
    /// [`StoreError::Backend`].
    pub async fn close(&self) {
        if let Some(sweeper) = &self.sweeper {
            sweeper.stop();
        }
        self.core.exec.close().await;
    }
}

impl Store for SqliteStore {
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
