//! The Redis denylist: revocations shared by many processes, checked against a local replica.
//! The design and failure behaviour are documented on [`RedisDenylist`].
//!
//! - `builder.rs`: the options and the start;
//! - `link.rs`: the connection, replaced when Redis Sentinel or Cluster names another master;
//! - `cluster.rs`: which Redis Cluster master serves the denylist's keys;
//! - `state.rs`: what the denylist, its task and the push handler share;
//! - `commands.rs`: key names and the pipelines that record a revocation;
//! - `sync.rs`: pub/sub messages and loads from Redis into the replica;
//! - `task.rs`: heartbeats, periodic reloads, reconnection.

mod builder;
mod cluster;
mod commands;
mod link;
mod state;
mod sync;
mod task;

pub use builder::{RedisDenylistBuilder, StartMode};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::memory::{Owner, check_subject};
use super::{BoxFuture, Check, Denylist, DenylistError, Revocation, Status};
use crate::clock::Timestamp;
use crate::state::SessionId;
use commands::{Keys, record, session_pipe, subject_pipe};
use link::{Link, maybe_demoted};
use state::{Pending, Shared, horizon};
use task::AbortOnDrop;

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
///   `a <id> <until> <issued_at>` or `s <before> <subject>`;
/// - `{prefix}log`: the revocation log, a stream of the same messages (field `m`), capped at
///   about [`log_len`](RedisDenylistBuilder::log_len) entries (default 100,000), from which a
///   replica that missed messages catches up.
///
/// Every revocation is one pipeline: a `MULTI`/`EXEC` of `ZADD … GT` (never shortens an
/// entry), a `ZREMRANGEBYSCORE` trimming expired entries and the `XADD … MAXLEN ~` to the log,
/// then the `PUBLISH`. Redis 6.2 or later.
///
/// # The replica
///
/// Each process keeps the tables in memory and answers [`Denylist::check`] from them, with no
/// network round trip. One RESP3 connection (the `redis` crate's `ConnectionManager`) carries
/// both commands and the subscription, so a message published before a heartbeat's `PING`
/// arrives before its `PONG`. A background task:
///
/// - at start, subscribes, notes where the log ends, and then loads the sets whole (`ZSCAN`,
///   in pages), so nothing published in between is lost;
/// - applies each pub/sub message as it arrives;
/// - sends a `PING` (on a Redis Cluster, an `EXISTS` of its key) every heartbeat; each
///   answer proves the replica was current when it was sent; revocations that failed and
///   wait in memory are written first;
/// - after every reconnection, and periodically ([`resync_every`](RedisDenylistBuilder::resync_every),
///   default 5 minutes), catches up: reads the log from the last entry it read (`XRANGE`,
///   in pages), so a missed message heals at the cost of what was revoked since, not of the
///   size of the denylist. It loads the sets whole again only when the log no longer holds
///   that entry (trimmed past it, or Redis lost its data), and at most every
///   [`reload_every`](RedisDenylistBuilder::reload_every) (default 6 hours);
/// - on a lost connection, retries with exponential backoff.
///
/// Loading and catching up merge into the replica (revocations only ever grow until they
/// expire), so a message applied twice changes nothing and one applied during a load is
/// never undone. An instance of an older version of this crate, which keeps no log, still
/// announces its revocations on the channel; a replica that misses one of those while
/// disconnected gets it at its next whole load (within `reload_every`). A Redis ACL user
/// needs `XADD`, `XRANGE` and `XREVRANGE` on `{prefix}log` besides the sorted-set
/// commands.
///
/// # Failure behaviour
///
/// - **Redis unreachable at start**: [`StartMode::RequireRedis`] (default) makes
///   [`RedisDenylistBuilder::build`] fail; [`StartMode::RetryInBackground`] starts anyway
///   and keeps retrying, and until the first load succeeds every check that is not known to be
///   revoked answers [`Check::Unavailable`].
/// - **Redis lost while running**: checks keep being answered from the replica (status
///   [`Health::Degraded`](super::Health::Degraded)); past the staleness bound (default 30 s)
///   they answer [`Check::Unavailable`] (the middleware answers 503) rather than accept a
///   session that may have been revoked elsewhere. Revocations fail with an error meanwhile.
/// - **The background task stops** (its Tokio runtime dropped, or starved): every check
///   compares the time of the replica's last confirmation (heartbeat or load) with the
///   request's time, so past the same bound checks answer [`Check::Unavailable`] too.
/// - One `tracing` line per change of state: connected, lost, stale, resynchronised.
/// - **Sentinel failover** ([`RedisDenylist::sentinel`]): the connection to the old master
///   is lost (or a revocation is refused with `READONLY`, the old master demoted, or no
///   replica acknowledged it); the
///   Sentinels are asked for the master again, at every reconnection attempt, and once they
///   name the promoted replica the denylist connects to it and catches up from the log, as
///   after any reconnection. Meanwhile checks are answered from the replica as above, and
///   revocations fail. Because Redis replicates asynchronously, in this mode each revocation
///   also waits (`WAIT 1`, at most half the [`timeout`](RedisDenylistBuilder::timeout)) for a
///   replica to acknowledge it, and fails when none did: a revocation reported as recorded
///   is on a replica too, so the failover does not lose it. While no replica is up, every
///   revocation fails (this process still refuses the session, and writes it again, without
///   waiting, at its next reconnection).
/// - **Redis restarted empty**: running replicas keep what they hold (loads only add), but a
///   process started afterwards does not know earlier revocations. Run Redis with persistence
///   (AOF) and a `maxmemory-policy` that never evicts these keys (`noeviction` or a
///   `volatile-*` policy: the keys carry no TTL).
///
/// - **Redis Cluster** ([`RedisDenylist::cluster`]): every key shares one hash tag, and the
///   denylist talks directly to the master of that slot, as to a single node; it asks the
///   cluster's nodes for that master again as it asks Sentinels above (also on `MOVED` or
///   `CLUSTERDOWN`), and waits for a replica on each revocation in the same way.
///
/// Built with [`RedisDenylist::builder`] (one node), [`RedisDenylist::cluster`] or
/// [`RedisDenylist::sentinel`] (the master of a Sentinel setup) inside a Tokio runtime; its
/// background task stops
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
    link: Arc<Link>,
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
        let (generation, conn) = self.link.conn()?;
        let res = record(self.timeout, op, &pipe, &self.keys, conn).await;
        // Sentinel mode: `READONLY`, or no replica to acknowledge, may mean this is not the
        // master any more (demoted, or left behind by a failover). Ask the Sentinels and, if
        // the master moved, write once more on the new one.
        match res {
            Err(e) if self.link.follows_master() && maybe_demoted(&e) => {
                match self.link.refresh(generation).await {
                    Ok(true) => {
                        tracing::warn!(
                            error = %task::ErrorChain(&e),
                            "denylist: a revocation failed on the old Redis master; writing it on the new one"
                        );
                        let (_, conn) = self.link.conn()?;
                        record(self.timeout, op, &pipe, &self.keys, conn).await
                    }
                    Ok(false) | Err(_) => Err(e),
                }
            }
            res => res,
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
