//! Server-side session stores: the classic express-session design, behind the same
//! [`Session`](crate::Session) API, so the two designs can be compared on the same code.
//!
//! In store-backed mode the cookie holds only a signed session id
//! ([`SessionIdCodec`](crate::codec::SessionIdCodec)); the session (metadata and data, in
//! the same binary layout a sealed token carries, see `docs/FORMAT.md`) lives in a
//! [`Store`]. These come with the crate:
//! - [`MemoryStore`]: one process, with expiry, like express-session's `MemoryStore`;
//! - `RedisStore` (feature `redis`): sessions shared by every instance through Redis, one key
//!   per session (prefix `sess:` by default, as in connect-redis) that Redis expires itself;
//! - `PostgresStore` (feature `postgres`): sessions shared by every instance through one
//!   PostgreSQL table, one row per session, expired rows swept periodically (as
//!   connect-pg-simple does);
//! - `SqliteStore` (feature `sqlite`): sessions in an embedded SQLite file, for one machine
//!   that must keep them across a restart with nothing to install.
//!
//! A `Store` is three async calls, small enough to put Postgres or MongoDB behind, plus
//! [`Store::update`], a compare-and-set, which has a default but should be overridden by any
//! store that can replace a record only if it still holds the expected bytes, in one atomic
//! step (for Postgres: an `UPDATE ... WHERE record = $expected` and its row count). With it
//! the middleware loses no update between concurrent requests of one session: see
//! [`Store::update`].
//!
//! ```
//! use sealed_session::store::{BoxFuture, Store, StoreError, Update};
//! use sealed_session::{SessionId, Timestamp};
//!
//! struct Postgres; // a connection pool in real code
//!
//! impl Store for Postgres {
//!     fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
//!         Box::pin(async move { /* SELECT record FROM sessions WHERE id = $1 AND expires_at > now() */ Ok(None) })
//!     }
//!     fn save<'a>(&'a self, id: &'a SessionId, record: &'a [u8], expires_at: Timestamp) -> BoxFuture<'a, Result<(), StoreError>> {
//!         Box::pin(async move { /* INSERT ... ON CONFLICT (id) DO UPDATE */ Ok(()) })
//!     }
//!     fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
//!         Box::pin(async move { /* DELETE FROM sessions WHERE id = $1 */ Ok(()) })
//!     }
//!     fn update<'a>(&'a self, id: &'a SessionId, expected: &'a [u8], record: &'a [u8], expires_at: Timestamp) -> BoxFuture<'a, Result<Update, StoreError>> {
//!         Box::pin(async move {
//!             /* UPDATE sessions SET record = $3, expires_at = $4
//!                WHERE id = $1 AND record = $2 AND expires_at > now();
//!                one row: Written; none: SELECT the record again, Changed(it) or Gone */
//!             Ok(Update::Gone)
//!         })
//!     }
//! }
//! ```

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql_devices;
#[cfg(feature = "sqlite")]
mod sqlite;
mod write;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteStore, SqliteStoreBuilder};
pub use memory::MemoryStore;
pub(crate) use write::{Loaded, Write, deadline, write};

use std::future::Future;
use std::pin::Pin;

use crate::clock::Timestamp;
use crate::state::SessionId;

/// A boxed, sendable future, as the object-safe store methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
///
/// ```
/// use sealed_session::SessionError;
/// use sealed_session::store::StoreError;
///
/// // A handler's `session.save().await?` with a store down answers a 503.
/// fn status_of(e: StoreError) -> http::StatusCode {
///     SessionError::from(e).status()
/// }
/// # let _ = status_of;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's backend failed or could not be reached.
    #[error("session store {store} failed")]
    Backend {
        /// Which store (for example `"redis"`).
        store: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Other requests of the same session changed its record on every one of `attempts`
    /// tries to write it (see [`Store::update`]); nothing was written.
    #[error("the session changed in the store on each of {attempts} attempts to write it")]
    Contended {
        /// How many writes were tried.
        attempts: u32,
    },
    /// The record of a session could not be made.
    #[error("the session's record could not be made")]
    Record(#[from] crate::error::SealError),
    /// A SQL store's builder was given a table name that is not a plain SQL identifier (an
    /// ASCII letter or `_`, then ASCII letters, digits or `_`, at most 48 bytes in all). The
    /// name is written into the store's SQL, so anything else is refused before the database
    /// is contacted, rather than risk SQL injection.
    #[error(
        "{name:?} is not a plain SQL table name (an ASCII letter or `_`, then ASCII letters, \
         digits or `_`, at most 48 bytes)"
    )]
    InvalidTableName {
        /// The name refused.
        name: String,
    },
}

/// What [`Store::update`] did.
///
/// See [`Store`] for an example.
///
/// ```
/// use sealed_session::store::Update;
/// let gone = Update::Gone; // the session was deleted or expired meanwhile
/// assert!(matches!(gone, Update::Gone));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The store held the expected record; it holds the new one now (or nothing, when the
    /// new one's deadline had already passed).
    Written,
    /// The store holds no record of the session (deleted, or expired): nothing was written.
    Gone,
    /// The store holds another record than the expected one (another request wrote it since
    /// it was loaded): nothing was written, and this is the record it holds.
    Changed(Vec<u8>),
}

/// Where store-backed sessions live. Records are opaque bytes; the store only keeps them
/// until `expires_at` (a store with TTLs should use it; others may filter on load).
///
/// ```
/// use sealed_session::store::{MemoryStore, Store, Update};
/// use sealed_session::{SessionId, Timestamp};
///
/// # block_on(async {
/// let store = MemoryStore::new();
/// let id = SessionId::generate()?;
/// let until = Timestamp::from_millis(u64::MAX / 2);
/// store.save(&id, b"first", until).await?;
/// assert_eq!(store.load(&id).await?.as_deref(), Some(&b"first"[..]));
/// // A compare-and-set: written only over the record this request loaded.
/// assert!(matches!(store.update(&id, b"first", b"second", until).await?, Update::Written));
/// assert!(matches!(store.update(&id, b"first", b"third", until).await?, Update::Changed(_)));
/// store.delete(&id).await?;
/// assert!(store.load(&id).await?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
/// #     }
/// # }
/// ```
pub trait Store: Send + Sync + 'static {
    /// The record of session `id`, or `None` when there is none (or it expired).
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;

    /// Creates or replaces the record of session `id`, to be kept until `expires_at`.
    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes session `id` (no error when absent).
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Replaces the record of session `id` with `record`, to be kept until `expires_at`,
    /// **only if the store still holds `expected`** (present, not expired, and byte for
    /// byte the same): a compare-and-set.
    ///
    /// The middleware writes a session it loaded from the store with this, `expected`
    /// being the record it loaded:
    /// - [`Update::Gone`]: another request ended the session meanwhile (a logout, or
    ///   `regenerate`), or it expired. It stays ended; nothing is written back.
    /// - [`Update::Changed`]: another request of the same session wrote it meanwhile. The
    ///   middleware applies this request's own changes (the keys it set or removed) to the
    ///   record the store now holds and tries again with that as `expected`, so that two
    ///   concurrent requests that change different keys both keep their change.
    ///
    /// `Changed(current)` only has to be a record the store held after the failed compare
    /// (a SQL store reads it in a second statement, so it may already be stale, or even equal
    /// to `expected`): the middleware merges into it and tries again. An error does not say
    /// that nothing was written: a write whose answer timed out may still land.
    ///
    /// The default loads, compares, then saves. That is **not atomic**: a write between the
    /// load and the save is lost, and a delete there is undone. A store that can compare
    /// and write in one step must override it: `MemoryStore` does both under its lock,
    /// `RedisStore` in a Lua script, and a SQL store can `UPDATE ... WHERE id = $1 AND
    /// record = $2 AND expires_at > now()` and look at the row count.
    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        expected: &'a [u8],
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(async move {
            match self.load(id).await? {
                None => Ok(Update::Gone),
                Some(current) if current != expected => Ok(Update::Changed(current)),
                Some(_) => self
                    .save(id, record, expires_at)
                    .await
                    .map(|()| Update::Written),
            }
        })
    }
}
