//! The comparison's SQL store rows: `store-postgres` (a throw-away PostgreSQL on a free
//! loopback port, started by the tests' own helper, one per mode) and `store-sqlite` (a
//! SQLite file in a temporary directory, which both instances of the mode open).

use sealed_session::{Keyring, SealedSession};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[cfg(feature = "postgres")]
#[path = "../../tests/common/postgres.rs"]
mod postgres;

/// A running PostgreSQL (feature `postgres`), stopped on drop.
#[cfg(feature = "postgres")]
pub use postgres::PgServer;

/// Without the `postgres` feature there is never a server.
#[cfg(not(feature = "postgres"))]
pub struct PgServer;

#[cfg(not(feature = "postgres"))]
impl PgServer {
    pub fn url(&self) -> String {
        String::new()
    }
}

/// Why `store-postgres` cannot run here, if it cannot.
pub fn postgres_missing() -> Option<String> {
    #[cfg(feature = "postgres")]
    {
        postgres::find_bindir()
            .is_none()
            .then(|| "skipped: no PostgreSQL (initdb) found".to_owned())
    }
    #[cfg(not(feature = "postgres"))]
    {
        Some("skipped: built without the postgres feature".to_owned())
    }
}

/// Why `store-sqlite` cannot run here, if it cannot.
pub fn sqlite_missing() -> Option<String> {
    (!cfg!(feature = "sqlite")).then(|| "skipped: built without the sqlite feature".to_owned())
}

/// Starts a PostgreSQL for one mode.
pub fn start_postgres() -> Result<PgServer> {
    #[cfg(feature = "postgres")]
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(PgServer::start("the comparison's store-postgres row"))
            .ok_or_else(|| "PostgreSQL could not be started".into())
    }
    #[cfg(not(feature = "postgres"))]
    {
        Err("built without the postgres feature".into())
    }
}

/// The store-backed session on the PostgreSQL at `url`.
pub async fn postgres_session(url: &str, keys: Keyring) -> Result<SealedSession> {
    #[cfg(feature = "postgres")]
    {
        let store = sealed_session::store::PostgresStore::connect(url).await?;
        Ok(SealedSession::server_store(store, keys))
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (url, keys);
        Err("built without the postgres feature".into())
    }
}

/// The store-backed session on the SQLite file at `path`.
pub async fn sqlite_session(path: &str, keys: Keyring) -> Result<SealedSession> {
    #[cfg(feature = "sqlite")]
    {
        let store = sealed_session::store::SqliteStore::open(path).await?;
        Ok(SealedSession::server_store(store, keys))
    }
    #[cfg(not(feature = "sqlite"))]
    {
        let _ = (path, keys);
        Err("built without the sqlite feature".into())
    }
}
