//! The Redis denylist: revocations shared by many processes, checked against a local replica.
//! The design and failure behaviour are documented on [`RedisDenylist`].

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::memory::{Owner, Replica, check_subject};
use super::{
    BoxFuture, Check, DEFAULT_MAX_REVOKED_SESSIONS, DEFAULT_SUBJECT_TTL, Denylist, DenylistError,
    Health, Revocation, Status,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::state::SessionId;

const BACKEND: &str = "redis";
/// Entries asked for per `ZSCAN` page.
const SCAN_PAGE: usize = 1000;

/// What to do when Redis cannot be reached while the denylist is being built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// Fail [`RedisDenylistBuilder::build`] with the connection error, so a misconfigured
    /// deployment does not start. The default.
    #[default]
    RequireRedis,
    /// Start anyway and keep retrying in the background. Until the first successful load,
    /// checks answer [`Check::Unavailable`] (and the middleware 503) for sessions not known to
    /// be revoked.
    RetryInBackground,
}

/// Builds a [`RedisDenylist`]. Every setter names its default.
#[derive(Clone)]
#[must_use]
pub struct RedisDenylistBuilder {
    url: String,
    prefix: String,
    clock: Arc<dyn Clock>,
    subject_ttl: Duration,
    max_sessions: usize,
    start: StartMode,
    stale_after: Duration,
    heartbeat: Duration,
    resync_every: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for RedisDenylistBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: not shown.
        f.debug_struct("RedisDenylistBuilder")
            .field("prefix", &self.prefix)
            .field("subject_ttl", &self.subject_ttl)
            .field("max_revoked_sessions", &self.max_sessions)
            .field("start", &self.start)
            .field("stale_after", &self.stale_after)
            .field("heartbeat", &self.heartbeat)
            .field("resync_every", &self.resync_every)
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
    /// denylist fails closed as [the bound](super#the-bound) says, and shares that through
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
    /// [`Check::Unavailable`]. Default: 30 seconds: long enough to ride out a Redis restart or
    /// fail-over, short enough that a revocation made elsewhere meanwhile is not ignored for
    /// long. Must be more than twice the heartbeat plus the timeout.
    pub fn stale_after(mut self, bound: Duration) -> Self {
        self.stale_after = bound;
        self
    }

    /// How often the connection is confirmed alive with a `PING`. Default: 1 second.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How often the whole replica is re-loaded from Redis, healing any missed message.
    /// Default: 5 minutes (it is also re-loaded after every reconnection).
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.resync_every = every;
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
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| backend("parse the Redis URL", e))?;
        // RESP3, so that one connection carries both the subscription and the commands.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| backend("open a Redis client", e))?;

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
        let sink = shared.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |info: PushInfo| -> Result<(), Infallible> {
                sink.on_push(info);
                Ok(())
            })
            // One attempt per reconnection: the background task owns the backoff, so a
            // revocation during an outage fails at once instead of waiting on retries.
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| backend("configure the Redis connection", e))?;

        let keys = Keys::new(&self.prefix);
        let mut sync = Syncer {
            shared: shared.clone(),
            conn: manager.clone(),
            keys: keys.clone(),
            timeout: self.timeout,
        };
        let started = match sync.sync().await {
            Ok(counts) => {
                tracing::info!(
                    revoked_sessions = counts.0,
                    revoked_subjects = counts.1,
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
            conn: manager,
            keys,
            timeout: self.timeout,
            task: AbortOnDrop(handle),
        })
    }
}

/// A denylist shared by many processes through Redis, each answering checks from a local
/// replica kept current over pub/sub.
///
/// # Data in Redis
///
/// Under a key prefix (default `sealed-session:denylist:`):
///
/// - `{prefix}ids`: a sorted set of revoked session ids (22-character base64url), scored by
///   the time in milliseconds until which they are kept;
/// - `{prefix}anonymous`: revoked sessions without a subject, as `<id> <until>` members
///   scored by the session's issue time, so that the anonymous cut-off (see
///   [the bound](super#the-bound)) removes what it covers in one command;
/// - `{prefix}subjects`: a sorted set of revoked subjects, scored by their "not valid before"
///   time in milliseconds (a sorted set rather than a hash, so that old entries are trimmed by
///   score in one command); the empty subject is the anonymous cut-off;
/// - `{prefix}events`: the pub/sub channel announcing each revocation, as `r <id> <until>`,
///   `a <id> <until> <issued_at>` or `s <before> <subject>`.
///
/// Every revocation is one pipeline: a `MULTI`/`EXEC` of `ZADD … GT` (never shortens an
/// entry) and a `ZREMRANGEBYSCORE` trimming expired entries, then the `PUBLISH`. Redis 6.2 or
/// later.
///
/// # The replica
///
/// Each process keeps the tables in memory and answers [`Denylist::check`] from them, with no
/// network round trip. One RESP3 connection (the `redis` crate's `ConnectionManager`) carries
/// both commands and the subscription, so a message published before a heartbeat's `PING`
/// arrives before its `PONG`. A background task:
///
/// - at start, subscribes and then loads both sets (`ZSCAN`, in pages), so nothing published
///   in between is lost;
/// - applies each pub/sub message as it arrives;
/// - sends a `PING` every heartbeat; each answer proves the replica was current when it was
///   sent;
/// - re-loads everything periodically and after every reconnection, so a missed message heals;
/// - on a lost connection, retries with exponential backoff.
///
/// Loading merges into the replica (revocations only ever grow until they expire), so a
/// message applied during a load is never undone.
///
/// # Failure behaviour
///
/// - **Redis unreachable at start**: [`StartMode::RequireRedis`] (default) makes
///   [`RedisDenylistBuilder::build`] fail; [`StartMode::RetryInBackground`] starts anyway
///   and keeps retrying, and until the first load succeeds every check that is not known to be
///   revoked answers [`Check::Unavailable`].
/// - **Redis lost while running**: checks keep being answered from the replica (status
///   [`Health::Degraded`]); past the staleness bound (default 30 s) they answer
///   [`Check::Unavailable`] (the middleware answers 503) rather than accept a session that may
///   have been revoked elsewhere. Revocations fail with an error meanwhile.
/// - **The background task stops** (its Tokio runtime dropped, or starved): every check
///   compares the time of the replica's last confirmation (heartbeat or load) with the
///   request's time, so past the same bound checks answer [`Check::Unavailable`] too.
/// - One `tracing` line per change of state: connected, lost, stale, resynchronised.
/// - **Redis restarted empty**: running replicas keep what they hold (loads only add), but a
///   process started afterwards does not know earlier revocations. Run Redis with persistence
///   (AOF) and a `maxmemory-policy` that never evicts these keys (`noeviction` or a
///   `volatile-*` policy: the keys carry no TTL).
///
/// Built with [`RedisDenylist::builder`] inside a Tokio runtime; its background task stops
/// when it is dropped (or at [`RedisDenylist::shutdown`]).
///
/// ```no_run
/// # async fn f() -> Result<(), sealed_session::denylist::DenylistError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sealed_session::denylist::{Denylist, RedisDenylist, StartMode};
///
/// let denylist: Arc<dyn Denylist> = Arc::new(
///     RedisDenylist::builder("redis://127.0.0.1:6379/")
///         .key_prefix("myapp:denylist:")
///         .subject_ttl(Duration::from_secs(7 * 24 * 3600)) // >= the longest session lifetime
///         .stale_after(Duration::from_secs(30))
///         .start_mode(StartMode::RequireRedis)
///         .build()
///         .await?,
/// );
/// # Ok(()) }
/// ```
pub struct RedisDenylist {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
    task: AbortOnDrop,
}

impl std::fmt::Debug for RedisDenylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDenylist")
            .field("prefix", &self.keys.prefix)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl RedisDenylist {
    /// A builder for the Redis server at `url` (`redis://[user:password@]host:port/[db]`).
    pub fn builder(url: impl Into<String>) -> RedisDenylistBuilder {
        RedisDenylistBuilder {
            url: url.into(),
            prefix: "sealed-session:denylist:".to_owned(),
            clock: Arc::new(SystemClock),
            subject_ttl: DEFAULT_SUBJECT_TTL,
            max_sessions: DEFAULT_MAX_REVOKED_SESSIONS,
            start: StartMode::RequireRedis,
            stale_after: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            resync_every: Duration::from_secs(300),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
        }
    }

    /// Stops the background task. The replica stops being updated, so checks answer
    /// [`Check::Unavailable`] once it is past the staleness bound. Dropping the denylist
    /// does the same.
    pub fn shutdown(&self) {
        self.task.0.abort();
        self.shared.connected.store(false, Ordering::Release);
    }

    /// The check, with "now" from `now` (called only when an entry is found).
    #[inline]
    fn check_with(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: impl Fn() -> Timestamp,
    ) -> Check {
        let shared = &*self.shared;
        let answer = shared.replica.check(id, subject, issued_at, &now);
        // The replica's age is checked on every request, connected or not: if the
        // background task stops (its runtime dropped or starved), nothing else would notice,
        // and checks would answer from a frozen replica for ever. Heartbeats, messages and
        // loads mark it fresh (on this denylist's clock, which `now` comes from).
        if answer == Check::Allowed
            && shared
                .stale_for(now())
                .is_none_or(|s| s > shared.stale_after)
        {
            return Check::Unavailable;
        }
        answer
    }

    fn horizon(&self, now: Timestamp) -> u64 {
        horizon(&self.shared, now)
    }

    async fn write(&self, op: &'static str, pipe: redis::Pipeline) -> Result<(), DenylistError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(backend(op, e)),
            Err(_) => Err(DenylistError::Timeout {
                backend: BACKEND,
                op,
                timeout: self.timeout,
            }),
        }
    }
}

impl Denylist for RedisDenylist {
    #[inline]
    fn check(&self, id: &SessionId, subject: Option<&str>, issued_at: Timestamp) -> Check {
        let clock = &*self.shared.clock;
        self.check_with(id, subject, issued_at, || clock.now())
    }

    #[inline]
    fn check_at(
        &self,
        id: &SessionId,
        subject: Option<&str>,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Check {
        self.check_with(id, subject, issued_at, || now)
    }

    fn pending(&self, id: &SessionId) -> Option<Timestamp> {
        self.shared.pending_session(id)
    }

    /// Records the revocation in Redis (and announces it), then in the local replica.
    ///
    /// On error the id is still added to this process's replica, so this process refuses
    /// the session, but other processes may not know: report the logout as failed.
    fn revoke(&self, id: SessionId, until: Timestamp) -> BoxFuture<'_, Result<(), DenylistError>> {
        Box::pin(async move {
            let now = self.shared.clock.now();
            if until <= now {
                return Ok(());
            }
            let _ = self.shared.replica.insert(&id, until, Owner::Unknown, now);
            self.shared.replica.publish();
            let pipe = session_pipe(&self.keys, &id, until, now);
            let res = self.write("record a session revocation", pipe).await;
            if res.is_err() {
                self.shared.remember(Pending::Session(id, until));
            }
            res
        })
    }

    /// Records the revocation in this process's replica, within its bound, then in Redis
    /// (and announces it): the id, or, when the replica was full, the anonymous cut-off or
    /// the subject revocation it fell back to (see [the bound](super#the-bound)). On error,
    /// as for [`revoke`](Denylist::revoke): this process knows, others may not.
    fn revoke_session(&self, revocation: &Revocation) -> BoxFuture<'_, Result<(), DenylistError>> {
        let r = revocation.clone();
        Box::pin(async move {
            let now = self.shared.clock.now();
            if r.until <= now {
                return Ok(());
            }
            let owner = Owner::of(&r);
            let done = self.shared.replica.insert(&r.id, r.until, owner, now);
            self.shared.replica.publish();
            let horizon = self.horizon(now);
            let mut writes = Vec::new();
            if let Some(cutoff) = done.cutoff {
                writes.push(Pending::Subject(String::new(), cutoff));
            }
            if let Some(before) = done.subject_before
                && let Owner::Subject(subject, _) = owner
            {
                writes.push(Pending::Subject(subject.to_owned(), before));
            }
            if done.entry {
                writes.push(match owner {
                    Owner::Anonymous(issued_at) => Pending::Anonymous(r.id, r.until, issued_at),
                    Owner::Unknown | Owner::Subject(..) => Pending::Session(r.id, r.until),
                });
            }
            for (i, w) in writes.iter().enumerate() {
                let pipe = w.pipe(&self.keys, now, horizon);
                if let Err(e) = self.write("record a session revocation", pipe).await {
                    for w in writes.into_iter().skip(i) {
                        self.shared.remember(w);
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    /// Records the revocation in Redis (and announces it), then in the local replica. On
    /// error, as for [`revoke`](Denylist::revoke): this process knows, others may not.
    fn revoke_subject(
        &self,
        subject: &str,
        before: Timestamp,
    ) -> BoxFuture<'_, Result<(), DenylistError>> {
        let subject = subject.to_owned();
        Box::pin(async move {
            check_subject(&subject)?;
            let now = self.shared.clock.now();
            self.shared.replica.insert_subject(&subject, before, now);
            self.shared.replica.publish();
            let pipe = subject_pipe(&self.keys, &subject, before, self.horizon(now));
            let res = self.write("record a subject revocation", pipe).await;
            if res.is_err() {
                self.shared.remember(Pending::Subject(subject, before));
            }
            res
        })
    }

    fn status(&self) -> Status {
        let health = self.shared.health(self.shared.clock.now());
        self.shared.replica.status(health)
    }
}

/// `fresh_at` before the first load.
const NEVER: u64 = 0;

/// State shared by the denylist, its background task and the push handler.
struct Shared {
    replica: Replica,
    clock: Arc<dyn Clock>,
    /// Clock time (ms) when the replica was last known current; `NEVER` before the first load.
    fresh_at: AtomicU64,
    stale_after: Duration,
    /// Whether the connection is up and the replica loaded since.
    connected: AtomicBool,
    /// Incremented at each connection loss the client library reports.
    disconnects: AtomicU64,
    /// Wakes the background task on a connection loss.
    wake: Notify,
    /// Revocations that Redis could not record (the caller got an error). They are written
    /// at the next reconnection, before the replica counts as current again, so a logout
    /// that failed during an outage still reaches every instance afterwards, and a retry on
    /// this instance (which already refuses the session) is not a silent no-op elsewhere.
    pending: std::sync::Mutex<Vec<Pending>>,
}

/// At most this many unrecorded revocations are kept for the next reconnection; past it the
/// oldest are dropped (and logged). This process's replica still refuses them.
const MAX_PENDING: usize = 100_000;

/// A revocation waiting for Redis.
#[derive(Clone, Debug)]
enum Pending {
    /// An id and its `until`.
    Session(SessionId, Timestamp),
    /// The id of a session without a subject, its `until` and its issue time.
    Anonymous(SessionId, Timestamp, Timestamp),
    /// A subject (empty for the anonymous cut-off) and its `before`.
    Subject(String, Timestamp),
}

impl Pending {
    /// The revocation as Redis commands; `horizon` is the oldest subject time still kept.
    fn pipe(&self, keys: &Keys, now: Timestamp, horizon: u64) -> redis::Pipeline {
        match self {
            Pending::Session(id, until) => session_pipe(keys, id, *until, now),
            Pending::Anonymous(id, until, issued_at) => {
                anonymous_pipe(keys, id, *until, *issued_at, horizon)
            }
            Pending::Subject(subject, before) => subject_pipe(keys, subject, *before, horizon),
        }
    }

    /// Whether it still matters at `now` (an id past its `until` does not).
    fn live(&self, now: Timestamp) -> bool {
        match self {
            Pending::Session(_, until) | Pending::Anonymous(_, until, _) => *until > now,
            Pending::Subject(..) => true,
        }
    }
}

impl Shared {
    fn remember(&self, p: Pending) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_PENDING {
            q.remove(0);
            tracing::error!(
                limit = MAX_PENDING,
                "denylist: too many revocations waiting for Redis; dropped the oldest"
            );
        }
        q.push(p);
    }

    /// The `until` of a session revocation waiting for Redis, if `id` has one.
    fn pending_session(&self, id: &SessionId) -> Option<Timestamp> {
        let q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().rev().find_map(|p| match p {
            Pending::Session(pid, until) | Pending::Anonymous(pid, until, _) if pid == id => {
                Some(*until)
            }
            _ => None,
        })
    }

    fn take_pending(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn restore_pending(&self, mut rest: Vec<Pending>) {
        let mut q = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        rest.append(&mut q);
        *q = rest;
    }
}

/// One revocation as Redis commands: `record` (a `ZADD … GT` and a trim) in a transaction,
/// then the announcement, in one pipeline.
///
/// The `PUBLISH` stays outside the transaction. This connection is subscribed to the channel,
/// and Redis before 7.2 writes the message it pushes to a subscriber that publishes inside
/// `MULTI` into the middle of the `EXEC` reply (redis/redis#12326): the replies of the commands
/// in flight on the connection then no longer match them, and concurrent revocations failed.
/// Outside the transaction the push comes at the top level, where the client expects it. The
/// announcement still follows the record; if it is lost, the call fails and the revocation is
/// written again at the next reconnection. `EXEC` is the one reply read, so an error inside
/// the transaction fails the call.
fn revocation_pipe(record: &[redis::Cmd], events: &str, message: String) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI").ignore();
    for cmd in record {
        pipe.add_command(cmd.clone()).ignore();
    }
    pipe.cmd("EXEC")
        .cmd("PUBLISH")
        .arg(events)
        .arg(message)
        .ignore();
    pipe
}

/// The write of one session revocation: record it, trim expired entries, announce.
fn session_pipe(keys: &Keys, id: &SessionId, until: Timestamp, now: Timestamp) -> redis::Pipeline {
    let member = id.to_string();
    let mut add = redis::cmd("ZADD");
    add.arg(&keys.ids)
        .arg("GT")
        .arg(until.as_millis())
        .arg(&member);
    let mut trim = redis::cmd("ZREMRANGEBYSCORE");
    trim.arg(&keys.ids).arg("-inf").arg(now.as_millis());
    revocation_pipe(
        &[add, trim],
        &keys.events,
        format!("r {member} {}", until.as_millis()),
    )
}

/// The write of one revocation of a session without a subject: record it (scored by its
/// issue time, so that a cut-off removes what it covers in one command), trim entries
/// older than the subject TTL (expired: no session lives longer), announce.
fn anonymous_pipe(
    keys: &Keys,
    id: &SessionId,
    until: Timestamp,
    issued_at: Timestamp,
    horizon: u64,
) -> redis::Pipeline {
    let member = format!("{id} {}", until.as_millis());
    let mut add = redis::cmd("ZADD");
    add.arg(&keys.anonymous)
        .arg(issued_at.as_millis())
        .arg(&member);
    let mut trim = redis::cmd("ZREMRANGEBYSCORE");
    trim.arg(&keys.anonymous).arg("-inf").arg(horizon);
    revocation_pipe(
        &[add, trim],
        &keys.events,
        format!("a {member} {}", issued_at.as_millis()),
    )
}

/// The write of one subject revocation: record it, trim old entries, announce. The empty
/// subject is the anonymous cut-off: the entries of sessions without a subject issued
/// before it go too.
fn subject_pipe(keys: &Keys, subject: &str, before: Timestamp, horizon: u64) -> redis::Pipeline {
    let mut add = redis::cmd("ZADD");
    add.arg(&keys.subjects)
        .arg("GT")
        .arg(before.as_millis())
        .arg(subject);
    let mut trim = redis::cmd("ZREMRANGEBYSCORE");
    trim.arg(&keys.subjects).arg("-inf").arg(horizon);
    let mut record = vec![add, trim];
    if subject.is_empty() {
        let mut covered = redis::cmd("ZREMRANGEBYSCORE");
        covered
            .arg(&keys.anonymous)
            .arg("-inf")
            .arg(format!("({}", before.as_millis()));
        record.push(covered);
    }
    revocation_pipe(
        &record,
        &keys.events,
        format!("s {} {subject}", before.as_millis()),
    )
}

impl Shared {
    /// Time since the replica was last known current; `None` before the first load.
    #[inline]
    fn stale_for(&self, now: Timestamp) -> Option<Duration> {
        match self.fresh_at.load(Ordering::Acquire) {
            NEVER => None,
            t => Some(now.saturating_since(Timestamp::from_millis(t))),
        }
    }

    fn mark_fresh(&self, at: Timestamp) {
        self.fresh_at
            .fetch_max(at.as_millis().max(1), Ordering::AcqRel);
    }

    fn health(&self, now: Timestamp) -> Health {
        match self.stale_for(now) {
            None => Health::Unavailable { stale_for: None },
            Some(s) if s > self.stale_after => Health::Unavailable { stale_for: Some(s) },
            Some(_) if self.connected.load(Ordering::Acquire) => Health::Healthy,
            Some(s) => Health::Degraded {
                stale_for: s,
                bound: self.stale_after,
            },
        }
    }

    /// Called by the connection for every push: pub/sub messages and disconnections.
    fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Message => {
                if let [_, Value::BulkString(payload)] = info.data.as_slice() {
                    self.apply(payload);
                }
            }
            PushKind::Disconnection => {
                self.disconnects.fetch_add(1, Ordering::AcqRel);
                self.connected.store(false, Ordering::Release);
                self.wake.notify_one();
            }
            _ => {}
        }
    }

    /// Applies one announced revocation; ignores (with a debug line) what it cannot parse.
    fn apply(&self, payload: &[u8]) {
        let now = self.clock.now();
        let text = std::str::from_utf8(payload).ok();
        let mut parts = text.map(|t| t.splitn(3, ' '));
        let parsed = parts.as_mut().and_then(|p| {
            let kind = p.next()?;
            let a = p.next()?;
            let b = p.next()?;
            match kind {
                "r" => {
                    let id = SessionId::parse(a)?;
                    let until = b.parse::<u64>().ok()?;
                    let until = Timestamp::from_millis(until);
                    let _ = self.replica.insert(&id, until, Owner::Unknown, now);
                    Some(())
                }
                "a" => {
                    let id = SessionId::parse(a)?;
                    let (until, issued_at) = b.split_once(' ')?;
                    let until = Timestamp::from_millis(until.parse::<u64>().ok()?);
                    let issued_at = Timestamp::from_millis(issued_at.parse::<u64>().ok()?);
                    let _ = self
                        .replica
                        .insert(&id, until, Owner::Anonymous(issued_at), now);
                    Some(())
                }
                "s" => {
                    let before = a.parse::<u64>().ok()?;
                    check_subject(b).ok()?;
                    self.replica
                        .insert_subject(b, Timestamp::from_millis(before), now);
                    Some(())
                }
                _ => None,
            }
        });
        if parsed.is_some() {
            self.replica.publish();
        } else {
            tracing::debug!(
                len = payload.len(),
                "denylist: ignored an unreadable message on the revocation channel"
            );
        }
    }
}

#[derive(Clone)]
struct Keys {
    prefix: String,
    ids: String,
    anonymous: String,
    subjects: String,
    events: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            ids: format!("{prefix}ids"),
            anonymous: format!("{prefix}anonymous"),
            subjects: format!("{prefix}subjects"),
            events: format!("{prefix}events"),
        }
    }
}

/// Loads Redis into the replica.
struct Syncer {
    shared: Arc<Shared>,
    conn: ConnectionManager,
    keys: Keys,
    timeout: Duration,
}

impl Syncer {
    /// Subscribes, then loads both sets into the replica. On success the replica is current
    /// as of the moment the load began; returns the replica's sizes.
    async fn sync(&mut self) -> Result<(usize, usize), DenylistError> {
        let epoch = self.shared.disconnects.load(Ordering::Acquire);
        let events = self.keys.events.clone();
        let timeout = self.timeout;
        let mut conn = self.conn.clone();
        limit(
            timeout,
            "connect and subscribe to the revocation channel",
            conn.subscribe(events),
        )
        .await?;
        self.flush_pending().await?;
        let started = self.shared.clock.now();
        let ids = self.keys.ids.clone();
        let subjects = self.keys.subjects.clone();
        let anonymous = self.keys.anonymous.clone();
        // Subjects first: the anonymous cut-off among them covers older anonymous entries.
        self.scan(&subjects, |shared, member, score| {
            if check_subject(member).is_ok() {
                shared.replica.insert_subject(member, score, started);
            }
        })
        .await?;
        self.scan(&ids, |shared, member, score| {
            if let Some(id) = SessionId::parse(member) {
                let _ = shared.replica.insert(&id, score, Owner::Unknown, started);
            }
        })
        .await?;
        self.scan(&anonymous, |shared, member, issued_at| {
            if let Some((id, until)) = member.split_once(' ')
                && let (Some(id), Ok(until)) = (SessionId::parse(id), until.parse::<u64>())
            {
                let until = Timestamp::from_millis(until);
                let owner = Owner::Anonymous(issued_at);
                let _ = shared.replica.insert(&id, until, owner, started);
            }
        })
        .await?;
        // A loss during the load may have dropped the subscription: the load does not count.
        if self.shared.disconnects.load(Ordering::Acquire) != epoch {
            return Err(DenylistError::Backend {
                backend: BACKEND,
                op: "load the denylist",
                source: "connection lost during the load".into(),
            });
        }
        self.shared.replica.purge(started);
        self.shared.replica.publish();
        self.shared.mark_fresh(started);
        self.shared.connected.store(true, Ordering::Release);
        Ok(self.shared.replica.sizes())
    }

    /// Writes the revocations that failed while Redis was away. On error the rest stay
    /// pending and the sync fails, so the replica is not called current before they land.
    async fn flush_pending(&mut self) -> Result<(), DenylistError> {
        let pending = self.shared.take_pending();
        let now = self.shared.clock.now();
        let horizon = horizon(&self.shared, now);
        for (i, p) in pending.iter().enumerate() {
            if !p.live(now) {
                continue;
            }
            let pipe = p.pipe(&self.keys, now, horizon);
            let mut conn = self.conn.clone();
            if let Err(e) = limit(
                self.timeout,
                "record a revocation made during an outage",
                pipe.query_async::<()>(&mut conn),
            )
            .await
            {
                self.shared
                    .restore_pending(pending.get(i..).map(<[_]>::to_vec).unwrap_or_default());
                return Err(e);
            }
        }
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "denylist: recorded revocations made while Redis was unreachable"
            );
        }
        Ok(())
    }

    /// Walks one sorted set with `ZSCAN`, page by page.
    async fn scan(
        &mut self,
        key: &str,
        mut each: impl FnMut(&Shared, &str, Timestamp),
    ) -> Result<(), DenylistError> {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("ZSCAN");
            cmd.arg(key).arg(cursor).arg("COUNT").arg(SCAN_PAGE);
            let mut conn = self.conn.clone();
            let reply: Value = limit(
                self.timeout,
                "load the denylist",
                cmd.query_async(&mut conn),
            )
            .await?;
            let (next, items) = scan_reply(reply).ok_or_else(|| DenylistError::Backend {
                backend: BACKEND,
                op: "load the denylist",
                source: "unexpected ZSCAN reply".into(),
            })?;
            for pair in items.chunks_exact(2) {
                if let [member, score] = pair
                    && let (Some(m), Some(s)) = (text(member), score_ms(score))
                {
                    each(&self.shared, m, Timestamp::from_millis(s));
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// `[cursor, [member, score, …]]` from a `ZSCAN` reply.
fn scan_reply(reply: Value) -> Option<(u64, Vec<Value>)> {
    let Value::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let items = match parts.pop()? {
        Value::Array(v) | Value::Set(v) => v,
        _ => return None,
    };
    let cursor = text(parts.first()?)?.parse().ok()?;
    Some((cursor, items))
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn score_ms(v: &Value) -> Option<u64> {
    let f = match v {
        Value::Double(f) => *f,
        Value::Int(i) => *i as f64,
        other => text(other)?.parse::<f64>().ok()?,
    };
    // Millisecond times are far below 2^53, so they are exact in an f64.
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// The oldest subject time still kept at `now` (ms): older ones are past the subject TTL.
fn horizon(shared: &Shared, now: Timestamp) -> u64 {
    now.as_millis()
        .saturating_sub(duration_ms(shared.replica.subject_ttl()))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn backend(op: &'static str, e: redis::RedisError) -> DenylistError {
    DenylistError::Backend {
        backend: BACKEND,
        op,
        source: Box::new(e),
    }
}

async fn limit<T>(
    timeout: Duration,
    op: &'static str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, DenylistError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(backend(op, e)),
        Err(_) => Err(DenylistError::Timeout {
            backend: BACKEND,
            op,
            timeout,
        }),
    }
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

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The background task: heartbeats, periodic loads, reconnection.
struct Task {
    sync: Syncer,
    heartbeat: Duration,
    resync_every: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Task {
    async fn run(mut self, mut connected: bool) {
        let shared = self.sync.shared.clone();
        let mut epoch = shared.disconnects.load(Ordering::Acquire);
        let mut next_load = Instant::now() + self.resync_every;
        let mut backoff = self.backoff_min;
        let mut stale_logged = false;
        loop {
            // Once a heartbeat while connected, once a retry while not.
            #[cfg(feature = "metrics")]
            crate::stats::denylist_staleness(shared.stale_for(shared.clock.now()));
            if connected {
                let wait = self
                    .heartbeat
                    .min(next_load.saturating_duration_since(Instant::now()));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shared.wake.notified() => {}
                }
                let outcome = if shared.disconnects.load(Ordering::Acquire) != epoch {
                    Err("the connection was closed".to_owned())
                } else if Instant::now() >= next_load {
                    next_load = Instant::now() + self.resync_every;
                    match self.sync.sync().await {
                        Ok((ids, subjects)) => {
                            tracing::debug!(
                                revoked_sessions = ids,
                                revoked_subjects = subjects,
                                "denylist: periodic reload from Redis"
                            );
                            epoch = shared.disconnects.load(Ordering::Acquire);
                            Ok(())
                        }
                        Err(e) => Err(ErrorChain(&e).to_string()),
                    }
                } else {
                    self.ping().await
                };
                if let Err(reason) = outcome {
                    connected = false;
                    shared.connected.store(false, Ordering::Release);
                    backoff = self.backoff_min;
                    tracing::warn!(
                        reason = %reason,
                        stale_after = ?shared.stale_after,
                        "denylist: lost Redis; checks use the local replica until it is stale"
                    );
                }
            } else {
                match self.sync.sync().await {
                    Ok((ids, subjects)) => {
                        connected = true;
                        stale_logged = false;
                        epoch = shared.disconnects.load(Ordering::Acquire);
                        next_load = Instant::now() + self.resync_every;
                        tracing::info!(
                            revoked_sessions = ids,
                            revoked_subjects = subjects,
                            "denylist: connected to Redis and resynchronised the replica"
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %ErrorChain(&e), "denylist: Redis still unreachable");
                    }
                }
                let now = shared.clock.now();
                let stale_in = match shared.stale_for(now) {
                    Some(s) if s <= shared.stale_after => Some(shared.stale_after - s),
                    _ => None,
                };
                if stale_in.is_none() && !stale_logged {
                    stale_logged = true;
                    tracing::error!(
                        stale_for = ?shared.stale_for(now),
                        bound = ?shared.stale_after,
                        "denylist: replica stale past its bound; checks answer Unavailable until Redis is back"
                    );
                }
                // Wake at the staleness deadline too, so that the log line is on time.
                let wait = match stale_in {
                    Some(d) if !d.is_zero() => backoff.min(d + Duration::from_millis(1)),
                    _ => backoff,
                };
                tokio::time::sleep(wait).await;
                backoff = backoff.saturating_mul(2).min(self.backoff_max);
            }
        }
    }

    /// One heartbeat: a `PING` whose answer proves the replica was current when it was sent.
    async fn ping(&mut self) -> Result<(), String> {
        let shared = &self.sync.shared;
        let epoch = shared.disconnects.load(Ordering::Acquire);
        let sent = shared.clock.now();
        let mut conn = self.sync.conn.clone();
        let cmd = redis::cmd("PING");
        match limit(self.sync.timeout, "ping", cmd.query_async::<()>(&mut conn)).await {
            Ok(()) if shared.disconnects.load(Ordering::Acquire) == epoch => {
                shared.mark_fresh(sent);
                Ok(())
            }
            Ok(()) => Err("the connection was closed".to_owned()),
            Err(e) => Err(ErrorChain(&e).to_string()),
        }
    }
}
