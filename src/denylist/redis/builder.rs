//! [`RedisDenylistBuilder`]: the options of a [`RedisDenylist`], each naming its default,
//! and its start (connect, first load, background task).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use tokio::sync::Notify;

use super::RedisDenylist;
use super::cluster::ClusterNodes;
use super::commands::{Keys, backend, has_hash_tag};
use super::link::{Link, Source};
use super::state::{NEVER, Shared};
use super::sync::Syncer;
use super::task::{AbortOnDrop, ErrorChain, Task};
use crate::clock::{Clock, SystemClock};
use crate::denylist::memory::Replica;
use crate::denylist::{DEFAULT_MAX_REVOKED_SESSIONS, DEFAULT_SUBJECT_TTL, DenylistError};

/// What to do when Redis cannot be reached while the denylist is being built.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::denylist::{RedisDenylist, StartMode};
///
/// let denylist = RedisDenylist::builder("redis://127.0.0.1:6379/")
///     .start_mode(StartMode::RetryInBackground)
///     .build()
///     .await?;
/// # let _ = denylist;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// Fail [`RedisDenylistBuilder::build`] with the connection error, so a misconfigured
    /// deployment does not start. The default.
    #[default]
    RequireRedis,
    /// Start anyway and keep retrying in the background. Until the first successful load,
    /// checks answer [`Check::Unavailable`](crate::denylist::Check::Unavailable) (and the
    /// middleware 503) for sessions not known to be revoked.
    RetryInBackground,
}

/// Builds a [`RedisDenylist`]. Every setter names its default.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::denylist::RedisDenylist;
///
/// let denylist = RedisDenylist::builder("redis://127.0.0.1:6379/")
///     .key_prefix("myapp:denylist:")
///     .build()
///     .await?;
/// # let _ = denylist;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisDenylistBuilder {
    target: Target,
    prefix: String,
    clock: Arc<dyn Clock>,
    subject_ttl: Duration,
    max_sessions: usize,
    start: StartMode,
    stale_after: Duration,
    heartbeat: Duration,
    resync_every: Duration,
    log_len: usize,
    reload_every: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    timeout: Duration,
}

/// Where the denylist's Redis is.
#[derive(Clone)]
enum Target {
    /// One node (or a proxy in front of several).
    Single(String),
    /// A Redis Cluster, reached through any of these nodes.
    Cluster(Vec<String>),
    /// The master these Sentinels know by `master`.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
        /// The username (`None`: the default user) and password of the servers they name.
        auth: Option<(Option<String>, String)>,
    },
}

impl std::fmt::Debug for RedisDenylistBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        let topology = match &self.target {
            Target::Single(_) => "single",
            Target::Cluster(_) => "cluster",
            Target::Sentinel { .. } => "sentinel",
        };
        f.debug_struct("RedisDenylistBuilder")
            .field("topology", &topology)
            .field("prefix", &self.prefix)
            .field("subject_ttl", &self.subject_ttl)
            .field("max_revoked_sessions", &self.max_sessions)
            .field("start", &self.start)
            .field("stale_after", &self.stale_after)
            .field("heartbeat", &self.heartbeat)
            .field("resync_every", &self.resync_every)
            .field("log_len", &self.log_len)
            .field("reload_every", &self.reload_every)
            .field("backoff", &(self.backoff_min, self.backoff_max))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisDenylistBuilder {
    /// Prefix of the Redis keys and channel. Default: `sealed-session:denylist:`. Processes
    /// that share revocations use the same prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The clock for expiry and staleness. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a per-subject revocation is kept; at least the longest session lifetime.
    /// Default: 30 days ([`DEFAULT_SUBJECT_TTL`]). Give every process the same value: each
    /// trims Redis by its own.
    pub fn subject_ttl(mut self, ttl: Duration) -> Self {
        self.subject_ttl = ttl;
        self
    }

    /// The most revoked session ids this process's replica holds at once. Default:
    /// [`DEFAULT_MAX_REVOKED_SESSIONS`] (100,000). When a revocation finds it full, the
    /// denylist fails closed as [the bound](crate::denylist#the-bound) says, and shares that through
    /// Redis: a cut-off or subject revocation reaches every instance.
    pub fn max_revoked_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// What to do when Redis is unreachable at start. Default: [`StartMode::RequireRedis`].
    pub fn start_mode(mut self, mode: StartMode) -> Self {
        self.start = mode;
        self
    }

    /// How long the replica may go without being confirmed current before checks answer
    /// [`Check::Unavailable`](crate::denylist::Check::Unavailable). Default: 30 seconds: long
    /// enough to ride out a Redis restart or fail-over, short enough that a revocation made
    /// elsewhere meanwhile is not ignored for long. Must be more than twice the heartbeat plus
    /// the timeout.
    pub fn stale_after(mut self, bound: Duration) -> Self {
        self.stale_after = bound;
        self
    }

    /// How often the connection is confirmed alive with a `PING`. Default: 1 second.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How often the replica catches up with Redis, healing any missed message. Default: 5
    /// minutes (it also catches up after every reconnection). A catch-up reads the revocation
    /// log from where the last one ended, so it costs what was revoked since, not the size
    /// of the denylist; see [`RedisDenylistBuilder::log_len`].
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.resync_every = every;
        self
    }

    /// About how many revocations the log (`{prefix}log`, a Redis stream) keeps for replicas
    /// to catch up from. A replica that comes back after more revocations than that (a long
    /// outage) re-loads the whole denylist instead, as it does at start. Default: 100,000
    /// (a few MB in Redis). Give every process the same value: each trims the log by its
    /// own.
    pub fn log_len(mut self, entries: usize) -> Self {
        self.log_len = entries.max(1);
        self
    }

    /// How often, at the most, the replica loads the whole denylist again instead of
    /// catching up from the log: the next synchronisation after this long since the last
    /// whole load (at start, say) is a whole load. It heals what no log entry carries, such
    /// as a revocation an instance of an older version of this crate made while this one
    /// was disconnected. Default: 6 hours (at a million revocations, about 1.2 s of Redis
    /// CPU per instance each time).
    pub fn reload_every(mut self, every: Duration) -> Self {
        self.reload_every = every;
        self
    }

    /// Sentinel only (ignored otherwise): the username (`None`: Redis's default user) and
    /// password the master and replicas that the Sentinels name require (their
    /// `requirepass`, or an ACL user). The Sentinels' own credentials go in their URLs.
    /// Never shown by `Debug` or in errors. Default: none.
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Target::Sentinel { auth, .. } = &mut self.target {
            *auth = Some((username.map(str::to_owned), password.to_owned()));
        }
        self
    }

    /// Delay between reconnection attempts: starts at `min`, doubles up to `max`.
    /// Default: 100 ms to 5 seconds.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Time limit for connecting and for each command, revocations included. Default:
    /// 2 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Connects, loads the replica and starts the background task (on the current Tokio
    /// runtime). With [`StartMode::RequireRedis`], fails when Redis cannot be reached or
    /// loaded.
    pub async fn build(self) -> Result<RedisDenylist, DenylistError> {
        if self.stale_after
            <= self
                .heartbeat
                .saturating_mul(2)
                .saturating_add(self.timeout)
        {
            return Err(DenylistError::StaleBoundTooShort {
                stale_after: self.stale_after,
                heartbeat: self.heartbeat,
                timeout: self.timeout,
            });
        }
        let shared = Arc::new(Shared {
            replica: Replica::new(self.subject_ttl, self.max_sessions),
            clock: self.clock.clone(),
            fresh_at: AtomicU64::new(NEVER),
            stale_after: self.stale_after,
            connected: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            wake: Notify::new(),
            pending: std::sync::Mutex::new(Vec::new()),
        });
        let config = ConnectionManagerConfig::new()
            // One attempt per reconnection: the background task owns the backoff, so a
            // revocation during an outage fails at once instead of waiting on retries.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let (link, wait) = match &self.target {
            Target::Single(url) => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| backend("parse the Redis URL", e))?;
                // RESP3, so that one connection carries both the subscription and the commands.
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let info = info.set_redis_settings(settings);
                let client =
                    redis::Client::open(info).map_err(|e| backend("open a Redis client", e))?;
                let link = Link::single(client, config, shared.clone(), self.timeout)?;
                (link, None)
            }
            Target::Sentinel {
                sentinels,
                master,
                auth,
            } => {
                // RESP3 to the master too, for the same reason.
                let mut info = RedisConnectionInfo::default().set_protocol(ProtocolVersion::RESP3);
                if let Some((user, password)) = auth {
                    info = info.set_password(password);
                    if let Some(user) = user {
                        info = info.set_username(user);
                    }
                }
                let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                let client = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|e| backend("open a Redis Sentinel client", e))?;
                let source = Source::Sentinel(client);
                let link = Link::following(source, config, shared.clone(), self.timeout);
                if let Err(e) = link.refresh(link.generation()).await
                    && self.start == StartMode::RequireRedis
                {
                    return Err(e);
                }
                // Half the command timeout, so the whole pipeline fits in it.
                (link, Some(self.timeout / 2))
            }
            Target::Cluster(urls) => {
                let key = Keys::new(&self.prefix, self.log_len, None, true).ids;
                if !has_hash_tag(&key) {
                    return Err(DenylistError::Backend {
                        backend: "redis",
                        op: "place the denylist's keys in one Redis Cluster slot",
                        source: "the key prefix gives no hash tag (an empty prefix, or one \
                                 starting with `}`): choose another"
                            .into(),
                    });
                }
                let source = Source::Cluster(ClusterNodes::new(urls, key)?);
                let link = Link::following(source, config, shared.clone(), self.timeout);
                if let Err(e) = link.refresh(link.generation()).await
                    && self.start == StartMode::RequireRedis
                {
                    return Err(e);
                }
                // As with Sentinels: a failover promotes a replica, which must have it.
                (link, Some(self.timeout / 2))
            }
        };
        let link = Arc::new(link);

        let cluster = matches!(self.target, Target::Cluster(_));
        let keys = Keys::new(&self.prefix, self.log_len, wait, cluster);
        let mut sync = Syncer {
            shared: shared.clone(),
            link: link.clone(),
            keys: keys.clone(),
            timeout: self.timeout,
            log_pos: None,
            reload_every: self.reload_every,
            loaded_at: None,
        };
        let started = match sync.sync().await {
            Ok(report) => {
                tracing::info!(
                    revoked_sessions = report.sizes.0,
                    revoked_subjects = report.sizes.1,
                    "denylist: connected to Redis, replica loaded"
                );
                true
            }
            Err(e) if self.start == StartMode::RequireRedis => return Err(e),
            Err(e) => {
                tracing::warn!(
                    error = %ErrorChain(&e),
                    "denylist: Redis unreachable at start; retrying in the background, checks answer Unavailable until loaded"
                );
                false
            }
        };
        let task = Task {
            sync,
            heartbeat: self.heartbeat,
            resync_every: self.resync_every,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        };
        let handle = tokio::spawn(task.run(started));
        Ok(RedisDenylist {
            shared,
            link,
            keys,
            timeout: self.timeout,
            task: AbortOnDrop(handle),
        })
    }
}

impl RedisDenylist {
    /// A builder for the Redis server at `url` (`redis://[user:password@]host:port/[db]`).
    pub fn builder(url: impl Into<String>) -> RedisDenylistBuilder {
        RedisDenylistBuilder::new(Target::Single(url.into()))
    }

    /// A builder for the master that these Sentinels know as `master_name`, following it
    /// through failovers; every setting of [`RedisDenylist::builder`] applies.
    ///
    /// The Sentinels are asked for the master at start, whenever the connection is lost,
    /// and whenever a revocation is refused with `READONLY` (the master was demoted) or no
    /// replica acknowledged it (perhaps a master a failover left behind); when
    /// they name another master, the denylist connects to it and resynchronises its replica
    /// (catching up from the revocation log), as after any reconnection.
    ///
    /// Redis replicates asynchronously, so a write the old master acknowledged may never
    /// reach the replica promoted in its place. In this mode, a revocation therefore also
    /// waits (`WAIT 1`, for at most half the [`timeout`](RedisDenylistBuilder::timeout)) for
    /// at least one replica to acknowledge it, and fails with an error when none did (the
    /// middleware answers 503: the logout is not reported done, and this process still
    /// writes it again at its next reconnection). A revocation reported as recorded thus
    /// survives a failover; the price is one replica round trip per revocation, and
    /// revocations fail while no replica is up.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), sealed_session::denylist::DenylistError> {
    /// use sealed_session::denylist::RedisDenylist;
    ///
    /// let denylist = RedisDenylist::sentinel(
    ///     [
    ///         "redis://10.0.0.1:26379/",
    ///         "redis://10.0.0.2:26379/",
    ///         "redis://10.0.0.3:26379/",
    ///     ],
    ///     "mymaster",
    /// )
    /// .key_prefix("myapp:denylist:")
    /// .build()
    /// .await?;
    /// # let _ = denylist;
    /// # Ok(()) }
    /// ```
    pub fn sentinel<I, S>(sentinels: I, master_name: impl Into<String>) -> RedisDenylistBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisDenylistBuilder::new(Target::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master_name.into(),
            auth: None,
        })
    }

    /// A builder for a Redis Cluster reached through any of `nodes`
    /// (`redis://[user:password@]host:port/`, `rediss://` for TLS); every setting of
    /// [`RedisDenylist::builder`] applies.
    ///
    /// Every key of the denylist carries one hash tag (a prefix without one is wrapped in
    /// braces: `{sealed-session:denylist:}ids`), so a single master holds them all: the
    /// denylist connects to that master directly, and runs there exactly as on a single
    /// node: one transaction per revocation, the subscription, and a heartbeat (an
    /// `EXISTS` of its key, which a node that no longer serves the slot answers with
    /// `MOVED`) on one connection. The revocation announcement is a plain `PUBLISH`, which
    /// the cluster also carries to its other nodes; revocations are rare (a logout), so
    /// that costs little. The denylist is small (see [the bound](crate::denylist#the-bound)),
    /// so one slot holds it comfortably.
    ///
    /// The nodes are asked (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`, in the order given) which
    /// master serves the slot at start, whenever the connection is lost, and whenever a
    /// revocation is refused with `MOVED`, `CLUSTERDOWN` or `READONLY` or no replica
    /// acknowledged it; when it moved (a failover, or the slot migrated), the denylist
    /// connects to the new master and resynchronises, as after any reconnection. As with
    /// [Sentinels](RedisDenylist::sentinel), each revocation waits for a replica to
    /// acknowledge it (`WAIT 1`), so one reported as recorded survives a failover that
    /// promotes that replica (with one replica per master, any failover). The master is
    /// reached with the credentials and TLS settings of the node that named it; each node
    /// asked gets an equal share of the [`timeout`](RedisDenylistBuilder::timeout), and the
    /// one that answered last is asked first. An ACL user needs, besides what
    /// [`RedisDenylist`] lists, `EXISTS` and `WAIT` on the master and `CLUSTER` (`KEYSLOT`,
    /// `SLOTS`) on the nodes named. While a slot migrates (resharding), `ASK` and `TRYAGAIN`
    /// answers make heartbeats and revocations fail until it is done.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), sealed_session::denylist::DenylistError> {
    /// use sealed_session::denylist::RedisDenylist;
    ///
    /// let denylist = RedisDenylist::cluster([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])
    /// .key_prefix("myapp:denylist:")
    /// .build()
    /// .await?;
    /// # let _ = denylist;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisDenylistBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisDenylistBuilder::new(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }
}

impl RedisDenylistBuilder {
    fn new(target: Target) -> RedisDenylistBuilder {
        RedisDenylistBuilder {
            target,
            prefix: "sealed-session:denylist:".to_owned(),
            clock: Arc::new(SystemClock),
            subject_ttl: DEFAULT_SUBJECT_TTL,
            max_sessions: DEFAULT_MAX_REVOKED_SESSIONS,
            start: StartMode::RequireRedis,
            stale_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            resync_every: Duration::from_secs(300),
            log_len: 100_000,
            reload_every: Duration::from_secs(6 * 3600),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }
}
