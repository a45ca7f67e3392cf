//! Server-side session stores: the classic express-session design, behind the same
//! [`Session`](crate::Session) API, so the two designs can be compared on the same code.
//!
//! In store-backed mode the cookie holds only a signed session id
//! ([`SessionIdCodec`](crate::codec::SessionIdCodec)); the session (metadata and data, in
//! the same binary layout a sealed token carries, see `docs/FORMAT.md`) lives in a
//! [`Store`]. Two come with the crate:
//! - [`MemoryStore`]: one process, with expiry, like express-session's `MemoryStore`;
//! - `RedisStore` (feature `redis`): sessions shared by every instance through Redis, one key
//!   per session (prefix `sess:` by default, as in connect-redis) that Redis expires itself.
//!
//! A `Store` is three async calls, small enough to put Postgres or MongoDB behind, plus
//! [`Store::save_existing`], which has a default but should be overridden by any store that
//! can replace a record only if it exists in one atomic step (for Postgres: an `UPDATE` and
//! its row count):
//!
//! ```
//! use sealed_session::store::{BoxFuture, Store, StoreError};
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
//!     fn save_existing<'a>(&'a self, id: &'a SessionId, record: &'a [u8], expires_at: Timestamp) -> BoxFuture<'a, Result<bool, StoreError>> {
//!         Box::pin(async move {
//!             /* UPDATE sessions SET record = $2, expires_at = $3
//!                WHERE id = $1 AND expires_at > now(): true when it updated one row */
//!             Ok(false)
//!         })
//!     }
//! }
//! ```

mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use memory::MemoryStore;

use std::future::Future;
use std::pin::Pin;

use crate::clock::Timestamp;
use crate::state::SessionId;

/// A boxed, sendable future, as the object-safe store methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
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
}

/// Writes a session's record: with [`Store::save_existing`] when it replaces the record the
/// request loaded (`existing`), so that a session ended meanwhile stays ended, and with
/// [`Store::save`] for a new id. Whether it was written.
pub(crate) async fn write(
    store: &dyn Store,
    id: &SessionId,
    record: &[u8],
    expires_at: Timestamp,
    existing: bool,
) -> Result<bool, StoreError> {
    if existing {
        store.save_existing(id, record, expires_at).await
    } else {
        store.save(id, record, expires_at).await.map(|()| true)
    }
}

/// Where store-backed sessions live. Records are opaque bytes; the store only keeps them
/// until `expires_at` (a store with TTLs should use it; others may filter on load).
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

    /// Replaces the record of session `id`, to be kept until `expires_at`, **only if the store
    /// still holds one** (present and not expired). `Ok(true)` when it was replaced;
    /// `Ok(false)` when there was none, and then nothing is written.
    ///
    /// The middleware writes a session it loaded from the store with this, not with
    /// [`Store::save`]: when another request destroyed or regenerated the session in the
    /// meantime (a logout), the record is gone and must stay gone, instead of being brought
    /// back by a request that loaded it before the delete.
    ///
    /// The default loads, then saves if the load found a record. That is **not atomic**: a
    /// delete between the two is still undone. A store that can check and write in one step
    /// must override it: `MemoryStore` does both under its lock, `RedisStore` uses
    /// `SET ... XX`, and a SQL store can `UPDATE ... WHERE id = $1 AND expires_at > now()`
    /// and return whether a row was updated.
    fn save_existing<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if self.load(id).await?.is_none() {
                return Ok(false);
            }
            self.save(id, record, expires_at).await?;
            Ok(true)
        })
    }
}
