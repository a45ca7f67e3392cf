//! The connection behind a [`RedisStore`](super::RedisStore), one per topology: a single
//! node, a Redis Cluster, or the master a set of Sentinels names.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError,
    RedisFuture, Value,
};

/// After a failed lookup of the master, the next one waits this long: operations in between
/// fail at once instead of asking the Sentinels again, so an outage never turns into a
/// stream of lookups.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(100);

/// Where the store's Redis is, as the builder was told.
#[derive(Clone)]
pub(super) enum Topology {
    /// One node (or a proxy in front of several).
    Single(String),
    /// A Redis Cluster, reached through any of these nodes.
    Cluster(Vec<String>),
    /// The master Sentinels name `master`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        /// The master's (and replicas') credentials, when they require them.
        auth: Option<MasterAuth>,
    },
}

/// The username (`None`: Redis's default user) and password of the servers Sentinels name.
/// Never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct MasterAuth {
    pub(crate) username: Option<String>,
    pub(crate) password: String,
}

impl MasterAuth {
    /// `info` with these credentials.
    pub(crate) fn apply(&self, info: RedisConnectionInfo) -> RedisConnectionInfo {
        let info = info.set_password(&self.password);
        match &self.username {
            Some(user) => info.set_username(user),
            None => info,
        }
    }
}

impl Topology {
    /// The topology's kind, for `Debug` (URLs may carry passwords: never shown).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Topology::Single(_) => "single",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }

    /// Connects; the caller bounds the time. `timeout` bounds each connection attempt the
    /// clients make on their own later (reconnections).
    pub(super) async fn connect(&self, timeout: Duration) -> Result<Conn, Setup> {
        match self {
            Topology::Single(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| Setup("parse the Redis URL", e))?;
                let client =
                    redis::Client::open(info).map_err(|e| Setup("open a Redis client", e))?;
                let config = ConnectionManagerConfig::new()
                    // One connection attempt per reconnection, started by the next operation
                    // after a failure: during an outage operations fail at once (a 503) instead
                    // of queueing behind retries, and the first operation after Redis returns
                    // reconnects.
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(timeout))
                    // Every operation is already bounded by the store's timeout: a response
                    // timeout in the client too would be a second timer per operation,
                    // registered and cancelled for nothing (about 700 instructions an
                    // operation, see `bash benches/instructions.sh store`).
                    .set_response_timeout(None);
                let conn = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(|e| Setup("connect to Redis", e))?;
                Ok(Conn::Single(conn))
            }
            Topology::Cluster(urls) => {
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    // The cluster client retries (MOVED, a node down) by itself, with backoff;
                    // the store's timeout bounds the whole operation, retries included.
                    .connection_timeout(timeout)
                    .build()
                    .map_err(|e| Setup("open a Redis Cluster client", e))?;
                let conn = client
                    .get_async_connection()
                    .await
                    .map_err(|e| Setup("connect to the Redis Cluster", e))?;
                Ok(Conn::Cluster(conn))
            }
            Topology::Sentinel {
                sentinels,
                master,
                auth,
            } => {
                let node = auth.as_ref().map(|a| {
                    SentinelNodeConnectionInfo::default()
                        .set_redis_connection_info(a.apply(RedisConnectionInfo::default()))
                });
                let client = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    node,
                    SentinelServerType::Master,
                )
                .map_err(|e| Setup("open a Redis Sentinel client", e))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(None);
                let sentinel = Arc::new(SentinelMaster {
                    client: tokio::sync::Mutex::new(Resolver {
                        client,
                        retry_after: None,
                        generation: 0,
                    }),
                    current: Mutex::new(None),
                    config,
                });
                sentinel
                    .resolve_if_stale()
                    .await
                    .map_err(|e| Setup("reach the master through Redis Sentinel", e))?;
                Ok(Conn::Sentinel(sentinel))
            }
        }
    }
}

/// A failed step of connecting: what was being done, and Redis's error.
pub(super) struct Setup(pub(super) &'static str, pub(super) RedisError);

/// The store's connection. Clones share it.
#[derive(Clone)]
pub(super) enum Conn {
    /// Reconnects by itself, on the operation after a failure.
    Single(ConnectionManager),
    /// Follows the cluster's slots, failovers included, by itself.
    Cluster(ClusterConnection),
    /// A connection to the current master, replaced after a failure (see [`SentinelMaster`]).
    Sentinel(Arc<SentinelMaster>),
}

impl Conn {
    /// The topology's kind, for `Debug`.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Conn::Single(_) => "single",
            Conn::Cluster(_) => "cluster",
            Conn::Sentinel(_) => "sentinel",
        }
    }

    /// A handle ready for an operation, without waiting: `None` when a Sentinel-resolved
    /// connection must first be (re-)established with [`Conn::resolve`].
    pub(super) fn ready(&self) -> Option<Handle> {
        match self {
            Conn::Single(c) => Some(Handle::Single(c.clone())),
            Conn::Cluster(c) => Some(Handle::Cluster(c.clone())),
            Conn::Sentinel(s) => s.current(),
        }
    }

    /// Asks the Sentinels for the master and connects to it (once for all the operations
    /// waiting), unless a lookup failed less than [`RESOLVE_BACKOFF`] ago.
    pub(super) async fn resolve(&self) -> Result<Handle, RedisError> {
        match self {
            Conn::Sentinel(s) => s.resolve_if_stale().await,
            // Never asked: these are always ready.
            Conn::Single(_) | Conn::Cluster(_) => self
                .ready()
                .ok_or_else(|| RedisError::from((redis::ErrorKind::Client, "no Redis connection"))),
        }
    }

    /// An operation on `handle` failed (an error or the timeout): a Sentinel-resolved
    /// connection is dropped, so that the next operation looks the master up again (the
    /// old one may be dead, or demoted to a replica that refuses writes).
    pub(super) fn failed(&self, handle: &Handle) {
        if let (Conn::Sentinel(s), Handle::Node { generation, .. }) = (self, handle) {
            s.forget(*generation);
        }
    }
}

/// The master named by Sentinels. The redis crate's Sentinel client looks the master up
/// only when asked for a connection, and a multiplexed connection never reconnects: after a
/// failover the old connection fails for good. So the store drops it on the first failure,
/// and the next operation asks the Sentinels again.
pub(super) struct SentinelMaster {
    /// The lookups, one at a time.
    client: tokio::sync::Mutex<Resolver>,
    /// The current master's connection, numbered so that a failure on an old one does not
    /// drop its replacement.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    config: AsyncConnectionConfig,
}

struct Resolver {
    client: SentinelClient,
    /// When the last lookup failed: none before this.
    retry_after: Option<Instant>,
    /// The number of the last connection made.
    generation: u64,
}

impl SentinelMaster {
    fn current(&self) -> Option<Handle> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|(generation, conn)| Handle::Node {
            generation: *generation,
            conn: conn.clone(),
        })
    }

    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    /// Looks the master up and connects to it, unless another operation did while this
    /// one waited, or a lookup failed less than [`RESOLVE_BACKOFF`] ago.
    async fn resolve_if_stale(&self) -> Result<Handle, RedisError> {
        let mut resolver = self.client.lock().await;
        if let Some(handle) = self.current() {
            return Ok(handle);
        }
        if resolver.retry_after.is_some_and(|t| Instant::now() < t) {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "the Redis master could not be found through Sentinel a moment ago",
            )));
        }
        // Set before the lookup: a lookup cut short by the operation's timeout counts as
        // failed too.
        resolver.retry_after = Some(Instant::now() + RESOLVE_BACKOFF);
        let client = resolver.client.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        resolver.retry_after = None;
        resolver.generation = resolver.generation.wrapping_add(1);
        let generation = resolver.generation;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((generation, conn.clone()));
        Ok(Handle::Node { generation, conn })
    }
}

/// One operation's connection.
pub(super) enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A connection to the master Sentinels named, the `generation`-th one.
    Node {
        generation: u64,
        conn: MultiplexedConnection,
    },
}

impl Handle {
    /// `WAIT replicas ms` on the node that holds `key` (in a cluster, `WAIT` alone would go
    /// to every master): how many replicas acknowledged this connection's writes.
    pub(super) async fn wait(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<i64, RedisError> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        match self {
            Handle::Cluster(c) => {
                let route = Route::with_key(key.as_bytes(), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
            Handle::Single(_) | Handle::Node { .. } => cmd.query_async(self).await,
        }
    }
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
            Handle::Node { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Node { conn, .. } => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
            Handle::Node { conn, .. } => conn.get_db(),
        }
    }
}
