//! The Redis store, like connect-redis for express-session: one string key per session,
//! expiring by itself. The design and failure behaviour are documented on [`RedisStore`].

mod conn;

use std::sync::Arc;
use std::time::Duration;

use redis::FromRedisValue;

use self::conn::{Conn, Handle, MasterAuth, Setup, Topology};
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
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::store::RedisStore;
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .key_prefix("sess:")
///     .build()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    topology: Topology,
    prefix: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    wait: Option<Replicas>,
}

/// `WAIT replicas timeout` after every write.
#[derive(Clone, Copy, Debug)]
struct Replicas {
    replicas: u32,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry passwords: not shown.
        f.debug_struct("RedisStoreBuilder")
            .field("topology", &self.topology.kind())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("wait_for_replicas", &self.wait)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    fn new(topology: Topology) -> RedisStoreBuilder {
        RedisStoreBuilder {
            topology,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
            wait: None,
        }
    }

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

    /// After every write (save, update, delete), waits until at least `replicas` replicas
    /// of the master that took it have acknowledged it (Redis's `WAIT replicas timeout`),
    /// for at most `timeout`; fewer acknowledgements make the operation fail (a 503), though
    /// the master did write. This narrows the window in which a failover loses an
    /// acknowledged write (see "Failures" on [`RedisStore`]), at the cost of a round trip
    /// per write, and of failing every write while fewer than `replicas` replicas are up.
    /// The wait counts within the store's [`timeout`](RedisStoreBuilder::timeout), so keep
    /// `timeout` below it. Default: off (`replicas` 0 turns it off).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(Replicas { replicas, timeout });
        self
    }

    /// Sentinel only (ignored otherwise): the username (`None`: Redis's default user) and
    /// password the master and replicas that the Sentinels name require (their
    /// `requirepass`, or an ACL user). The Sentinels' own credentials go in their URLs.
    /// Never shown by `Debug` or in errors. Default: none.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use sealed_session::store::RedisStore;
    ///
    /// let password = std::env::var("REDIS_PASSWORD")?;
    /// let store = RedisStore::sentinel(["redis://10.0.0.1:26379/"], "mymaster")
    ///     .sentinel_master_auth(None, &password)
    ///     .build()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Topology::Sentinel { auth, .. } = &mut self.topology {
            *auth = Some(MasterAuth {
                username: username.map(str::to_owned),
                password: password.to_owned(),
            });
        }
        self
    }

    /// Connects (on the current Tokio runtime), failing when Redis cannot be reached within
    /// the timeout, so that a misconfigured deployment does not start. In a cluster, this
    /// also reads the slots; with Sentinel, it asks the Sentinels for the master and
    /// connects to it.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let conn =
            match tokio::time::timeout(self.timeout, self.topology.connect(self.timeout)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(Setup(what, e))) => return Err(backend(redis_error(what, e, self.timeout))),
                Err(_) => return Err(backend(OpError::TimedOut("connect", self.timeout))),
            };
        Ok(RedisStore {
            conn,
            prefix: self.prefix.into(),
            timeout: self.timeout,
            clock: self.clock,
            wait: self.wait,
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
/// # Topologies
/// - One node: [`RedisStore::builder`] with its URL.
/// - Redis Cluster: [`RedisStore::cluster`] with the URLs of some of its nodes (any one that
///   answers is enough to learn the others and the slots).
/// - Sentinel: [`RedisStore::sentinel`] with the Sentinels' URLs and the master's name; the
///   store writes to whichever node the Sentinels name master.
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
/// Every operation touches that one key, so in a cluster each is sent to the master of the
/// key's slot, and the script (loaded on every master, and again on a newly promoted one)
/// runs there unchanged. Keep `{` and `}` out of the prefix: a hash tag in it would put
/// every session in one slot, so on one master.
///
/// # Failures
/// Every operation is bounded by the timeout (default 2 seconds) and fails with
/// [`StoreError::Backend`] (`store: "redis"`) when Redis cannot be reached, answers an
/// error, or does not answer in time; the middleware then answers 503 rather than starting a
/// new session. Redis's own persistence decides whether sessions survive a Redis restart.
/// - One node: the connection is re-established by the first operation after a failure, so
///   service resumes as soon as Redis is back.
/// - Cluster: while a master is down, operations on the sessions in its slots fail (the
///   others go on); once the cluster has promoted one of its replicas (after
///   `cluster-node-timeout` and an election), the connection learns the new slots and they
///   succeed again. Operations started meanwhile fail at the timeout at the latest.
/// - Sentinel: an operation that fails drops the connection to the master, and the next
///   one asks the Sentinels for the master again (one lookup at a time; after a failed
///   lookup, operations fail at once for 100 ms rather than asking again). So a failover
///   costs the operations between the master's death and the Sentinels' switch (their
///   `down-after-milliseconds`, then an election: seconds), each failing fast or at the
///   timeout; then the first operation finds the new master.
///
/// Either way, a failover costs only the operations attempted while no master serves a
/// session's key, each a 503, and no more than the timeout each. But **Redis replication is
/// asynchronous**: a write the master acknowledged and died before sending to a replica is
/// lost when that replica is promoted. For sessions: a logout can come back (the session
/// it deleted is there again), a login or a change can be lost. To narrow that window,
/// [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas) makes each write wait until
/// replicas acknowledged it (Redis's `WAIT`, which still does not make Redis strongly
/// consistent: a failover can in rare cases pick a replica that missed it).
///
/// Clones share one connection (multiplexed; in a cluster, one per node).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: Arc<str>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    wait: Option<Replicas>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("topology", &self.conn.kind())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store at `url` (for example `redis://127.0.0.1:6379/` or
    /// `rediss://user:password@host/0`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(Topology::Single(url.into()))
    }

    /// A builder for a store in the Redis Cluster that these nodes belong to (one that
    /// answers is enough; list several in case one is down).
    ///
    /// ```no_run
    /// use sealed_session::store::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::cluster([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])
    /// .build()
    /// .await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::new(Topology::Cluster(
            nodes.into_iter().map(Into::into).collect(),
        ))
    }

    /// A builder for a store on the master that these Sentinels know as `master_name`,
    /// following it through failovers (see "Failures" above).
    ///
    /// ```no_run
    /// use sealed_session::store::RedisStore;
    /// use std::time::Duration;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::sentinel(
    ///     [
    ///         "redis://10.0.0.1:26379/",
    ///         "redis://10.0.0.2:26379/",
    ///         "redis://10.0.0.3:26379/",
    ///     ],
    ///     "mymaster",
    /// )
    /// .wait_for_replicas(1, Duration::from_millis(100))
    /// .build()
    /// .await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sentinel<I, S>(sentinels: I, master_name: impl Into<String>) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::new(Topology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master_name.into(),
            auth: None,
        })
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

    /// Runs `request` on session key `key`, then, for a write, `WAIT`s for replicas when
    /// asked to; all bounded by the timeout.
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut handle = match self.conn.ready() {
            Some(handle) => handle,
            // Only after a Sentinel-resolved connection failed: a second timer, then.
            None => match tokio::time::timeout_at(deadline, self.conn.resolve()).await {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) => return Err(backend(redis_error(op, e, self.timeout))),
                Err(_) => return Err(backend(OpError::TimedOut(op, self.timeout))),
            },
        };
        let wait = match request {
            Request::Read(_) => None,
            Request::Write(_) | Request::Script(_) => self.wait,
        };
        let sent = tokio::time::timeout_at(
            deadline,
            send(&mut handle, op, key, request, wait, self.timeout),
        );
        match sent.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e @ OpError::NotReplicated { .. })) => Err(backend(e)),
            Ok(Err(e)) => {
                self.conn.failed(&handle);
                Err(backend(e))
            }
            Err(_) => {
                self.conn.failed(&handle);
                Err(backend(OpError::TimedOut(op, self.timeout)))
            }
        }
    }
}

impl RedisStore {
    /// Runs the read `cmd` on key `key` (for the device registry, which shares this
    /// connection handling).
    pub(crate) async fn read_cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(op, key, Request::Read(cmd)).await
    }

    /// Runs the write `cmd` on key `key` (for the DPoP replay cache).
    pub(crate) async fn write_cmd<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(op, key, Request::Write(cmd)).await
    }

    /// Runs the script `invocation` whose first key is `key`, as a write.
    pub(crate) async fn run_script<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run(op, key, Request::Script(invocation)).await
    }
}

/// One operation's request.
enum Request<'a> {
    Read(&'a redis::Cmd),
    Write(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

async fn send<T: FromRedisValue>(
    handle: &mut Handle,
    op: &'static str,
    key: &str,
    request: Request<'_>,
    wait: Option<Replicas>,
    limit: Duration,
) -> Result<T, OpError> {
    let value = match request {
        Request::Read(cmd) | Request::Write(cmd) => cmd.query_async(handle).await,
        Request::Script(script) => script.invoke_async(handle).await,
    }
    .map_err(|e| redis_error(op, e, limit))?;
    if let Some(Replicas { replicas, timeout }) = wait {
        let acked = handle
            .wait(key, replicas, timeout)
            .await
            .map_err(|e| redis_error("WAIT", e, limit))?;
        if acked < i64::from(replicas) {
            return Err(OpError::NotReplicated {
                op,
                acked,
                wanted: replicas,
            });
        }
    }
    Ok(value)
}

impl Store for RedisStore {
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let key = self.key(id);
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            self.run("GET", &key, Request::Read(&cmd)).await
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
            let key = self.key(id);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(record).arg("PX").arg(ms);
            self.run("SET", &key, Request::Write(&cmd)).await
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
            let key = self.key(id);
            let mut invocation = UPDATE.key(&key);
            invocation
                .arg(expected)
                .arg(record)
                .arg(self.ttl_ms(expires_at));
            let (written, current): (i64, Option<Vec<u8>>) = self
                .run("update", &key, Request::Script(&invocation))
                .await?;
            Ok(match (written, current) {
                (1, _) => Update::Written,
                (_, Some(current)) => Update::Changed(current),
                (_, None) => Update::Gone,
            })
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.key(id);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&key);
            self.run("DEL", &key, Request::Write(&cmd)).await
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
    #[error(
        "Redis {op} was written, but only {acked} of the {wanted} replicas asked for \
         acknowledged it in time"
    )]
    NotReplicated {
        op: &'static str,
        acked: i64,
        wanted: u32,
    },
}

fn backend(error: OpError) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: Box::new(error),
    }
}

/// Redis's error in `op`; a timeout of the client's own is reported as the store's (the
/// limits are the same: whichever fires first, the same error).
fn redis_error(op: &'static str, e: redis::RedisError, limit: Duration) -> OpError {
    if e.is_timeout() {
        OpError::TimedOut(op, limit)
    } else {
        OpError::Redis(op, e)
    }
}
