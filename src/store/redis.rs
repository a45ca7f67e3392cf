//! The Redis store, like connect-redis for express-session: one string key per session,
//! expiring by itself. The design and failure behaviour are documented on [`RedisStore`].

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, IntoConnectionInfo};

use super::{BoxFuture, Store, StoreError, Update};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::SessionId;

const STORE: &str = "redis";

/// The key prefix when none is set, as in connect-redis.
const DEFAULT_KEY_PREFIX: &str = "sess:";

/// [`Store::update`] in one atomic step: `{1, nil}` when the key held the expected record
/// (now replaced, or deleted for a TTL of 0), else `{0, current}` (`current` nil when the
/// key is absent).
static UPDATE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return {0, current} end
if ARGV[3] == '0' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return {1, false}
",
    )
});

/// The longest time-to-live given to Redis: 100 years. Longer deadlines (there is no
/// meaningful one) are shortened to this, so that Redis never refuses the expiry as too far.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Builds a [`RedisStore`]. Every setter names its default.
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Prefix of the Redis keys: a session is kept at `prefix` followed by its id's
    /// 22-character base64url form. Default: `sess:`, as in
    /// connect-redis. Instances that share sessions use the same prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time limit for connecting and for each operation (load, save, delete); past it the
    /// operation fails, and the middleware answers 503. Default: 2 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The clock that turns a record's `expires_at` into a time-to-live. Default:
    /// [`SystemClock`]. Give it the middleware's clock when that is not the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Connects (on the current Tokio runtime), failing when Redis cannot be reached within
    /// the timeout, so that a misconfigured deployment does not start.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| backend(OpError::Redis("parse the Redis URL", e)))?;
        let client = redis::Client::open(info)
            .map_err(|e| backend(OpError::Redis("open a Redis client", e)))?;
        let config = ConnectionManagerConfig::new()
            // One connection attempt per reconnection, started by the next operation after a
            // failure: during an outage operations fail at once (a 503) instead of queueing
            // behind retries, and the first operation after Redis returns reconnects.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            // Every operation is already bounded by `limit` (the same time): a response
            // timeout in the client too would be a second timer per operation, registered
            // and cancelled for nothing (about 700 instructions an operation, see
            // `bash benches/instructions.sh store`).
            .set_response_timeout(None);
        let conn = limit(
            self.timeout,
            "connect to Redis",
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        Ok(RedisStore {
            conn,
            prefix: self.prefix.into(),
            timeout: self.timeout,
            clock: self.clock,
        })
    }
}

/// Sessions in Redis, shared by every instance that uses the same Redis and key prefix.
///
/// ```no_run
/// use sealed_session::store::RedisStore;
/// use sealed_session::{Keyring, SealedSession};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .key_prefix("myapp:sess:")
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
/// # Data in Redis
/// Session `id` is the string key `{prefix}{id}` (for example `sess:q3V0Rk…`, the id in its
/// 22-character base64url form), holding the record's bytes:
/// - load: `GET key`;
/// - save: `SET key record PX ttl`, the milliseconds from now (by the store's clock) until
///   the record's `expires_at`, so Redis drops it at its deadline (TTLs are capped at 100
///   years); a record whose deadline has already passed is deleted instead;
/// - compare-and-set ([`Store::update`]): a Lua script (`EVALSHA`, so one atomic step) that
///   `GET`s the key and, only when it holds the expected record, `SET`s the new one with its
///   `PX` (or `DEL`s it when the deadline has passed); otherwise it answers what the key
///   holds (nil when absent: deleted or expired);
/// - delete: `DEL key`.
///
/// # Failures
/// Every operation is bounded by the timeout (default 2 seconds) and fails with
/// [`StoreError::Backend`] (`store: "redis"`) when Redis cannot be reached, answers an
/// error, or does not answer in time; the middleware then answers 503 rather than starting a
/// new session. The connection is re-established by the first operation after a failure, so
/// service resumes as soon as Redis is back. Redis's own persistence decides whether
/// sessions survive a Redis restart.
///
/// Clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store at `url` (for example `redis://127.0.0.1:6379/` or
    /// `rediss://user:password@host/0`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
        }
    }

    /// A store at `url` with every default: `RedisStore::builder(url).build().await`.
    pub async fn connect(url: impl Into<String>) -> Result<RedisStore, StoreError> {
        RedisStore::builder(url).build().await
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of session `id`.
    pub fn key(&self, id: &SessionId) -> String {
        // Appended straight after the prefix: `format!` would go through the formatting
        // machinery, once per store operation.
        let mut key = String::with_capacity(self.prefix.len() + crate::state::id::TEXT_LEN);
        key.push_str(&self.prefix);
        id.push_to(&mut key);
        key
    }

    /// The time-to-live, in milliseconds, of a record kept until `expires_at`: 0 when that
    /// has passed, at most [`MAX_TTL`].
    fn ttl_ms(&self, expires_at: Timestamp) -> u64 {
        let ttl = expires_at.saturating_since(self.clock.now()).min(MAX_TTL);
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        limit(self.timeout, op, cmd.query_async(&mut conn)).await
    }
}

impl Store for RedisStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.key(id));
            self.query("GET", cmd).await
        })
    }

    fn save<'a>(
        &'a self,
        id: &'a SessionId,
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let ms = self.ttl_ms(expires_at);
            if ms == 0 {
                // Already expired: what it replaces must not outlive it either.
                return self.delete(id).await;
            }
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(id)).arg(record).arg("PX").arg(ms);
            self.query("SET", cmd).await
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a SessionId,
        expected: &'a [u8],
        record: &'a [u8],
        expires_at: Timestamp,
    ) -> BoxFuture<'a, Result<Update, StoreError>> {
        Box::pin(async move {
            let mut invocation = UPDATE.key(self.key(id));
            invocation
                .arg(expected)
                .arg(record)
                .arg(self.ttl_ms(expires_at));
            let mut conn = self.conn.clone();
            let (written, current): (i64, Option<Vec<u8>>) =
                limit(self.timeout, "update", invocation.invoke_async(&mut conn)).await?;
            Ok(match (written, current) {
                (1, _) => Update::Written,
                (_, Some(current)) => Update::Changed(current),
                (_, None) => Update::Gone,
            })
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(id));
            self.query("DEL", cmd).await
        })
    }
}

/// What went wrong in one Redis operation: the `source` of [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error("Redis {0} failed")]
    Redis(&'static str, #[source] redis::RedisError),
    #[error("Redis {0} timed out after {1:?}")]
    TimedOut(&'static str, Duration),
}

fn backend(error: OpError) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: Box::new(error),
    }
}

async fn limit<T>(
    timeout: Duration,
    op: &'static str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        // The connection's own limits are the same: whichever fires first, the same error.
        Ok(Err(e)) if e.is_timeout() => Err(backend(OpError::TimedOut(op, timeout))),
        Ok(Err(e)) => Err(backend(OpError::Redis(op, e))),
        Err(_) => Err(backend(OpError::TimedOut(op, timeout))),
    }
}
