//! The Redis side of a revocation: key names, the pipelines that record and announce one,
//! and the errors of a command.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::state::Pending;
use crate::clock::Timestamp;
use crate::denylist::DenylistError;
use crate::state::SessionId;

/// The backend name in errors.
pub(super) const BACKEND: &str = "redis";

impl Pending {
    /// The revocation as Redis commands; `horizon` is the oldest subject time still kept.
    pub(super) fn pipe(&self, keys: &Keys, now: Timestamp, horizon: u64) -> redis::Pipeline {
        match self {
            Pending::Session(id, until) => session_pipe(keys, id, *until, now),
            Pending::Anonymous(id, until, issued_at) => {
                anonymous_pipe(keys, id, *until, *issued_at, horizon)
            }
            Pending::Subject(subject, before) => subject_pipe(keys, subject, *before, horizon),
        }
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
///
/// The transaction also appends the message to the revocation log (`XADD`, capped at about
/// `keys.log_len` entries), from which a replica that missed messages catches up.
fn revocation_pipe(record: &[redis::Cmd], keys: &Keys, message: String) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI").ignore();
    for cmd in record {
        pipe.add_command(cmd.clone()).ignore();
    }
    pipe.cmd("XADD")
        .arg(&keys.log)
        .arg("MAXLEN")
        .arg("~")
        .arg(keys.log_len)
        .arg("*")
        .arg(LOG_FIELD)
        .arg(&message)
        .ignore();
    pipe.cmd("EXEC")
        .cmd("PUBLISH")
        .arg(&keys.events)
        .arg(message)
        .ignore();
    // Sentinel mode: the revocation counts as recorded only once a replica has it, so that
    // a failover (which promotes a replica) cannot lose it. After the announcement, which
    // need not wait.
    if let Some(wait) = keys.wait {
        pipe.cmd("WAIT")
            .arg(1)
            .arg(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    pipe
}

/// Runs a pipeline of [`revocation_pipe`] on `conn`. When `keys.wait` is set, fails unless a
/// replica acknowledged the write (the `WAIT` reply, read last).
pub(super) async fn record(
    timeout: Duration,
    op: &'static str,
    pipe: &redis::Pipeline,
    keys: &Keys,
    mut conn: ConnectionManager,
) -> Result<(), DenylistError> {
    let Some(wait) = keys.wait else {
        return limit(timeout, op, pipe.query_async::<()>(&mut conn)).await;
    };
    let ((), acked): ((), i64) = limit(timeout, op, pipe.query_async(&mut conn)).await?;
    if acked < 1 {
        return Err(DenylistError::Backend {
            backend: BACKEND,
            op,
            source: Box::new(NoReplica(wait)),
        });
    }
    Ok(())
}

/// No replica acknowledged a revocation within the time given (the `WAIT` reply was 0).
#[derive(Debug)]
pub(super) struct NoReplica(pub(super) Duration);

impl std::fmt::Display for NoReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no replica acknowledged the revocation within {:?}",
            self.0
        )
    }
}

impl std::error::Error for NoReplica {}

/// The field of a revocation log entry that holds the message.
pub(super) const LOG_FIELD: &str = "m";

/// The write of one session revocation: record it, trim expired entries, announce.
pub(super) fn session_pipe(
    keys: &Keys,
    id: &SessionId,
    until: Timestamp,
    now: Timestamp,
) -> redis::Pipeline {
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
        keys,
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
        keys,
        format!("a {member} {}", issued_at.as_millis()),
    )
}

/// The write of one subject revocation: record it, trim old entries, announce. The empty
/// subject is the anonymous cut-off: the entries of sessions without a subject issued
/// before it go too.
pub(super) fn subject_pipe(
    keys: &Keys,
    subject: &str,
    before: Timestamp,
    horizon: u64,
) -> redis::Pipeline {
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
    revocation_pipe(&record, keys, format!("s {} {subject}", before.as_millis()))
}

#[derive(Clone)]
pub(super) struct Keys {
    /// The prefix as the application gave it.
    pub(super) prefix: String,
    pub(super) ids: String,
    pub(super) anonymous: String,
    pub(super) subjects: String,
    pub(super) events: String,
    /// The revocation log: a stream of the announced messages.
    pub(super) log: String,
    /// About how many entries the log keeps.
    pub(super) log_len: usize,
    /// Sentinel and Cluster mode: how long a revocation waits for a replica to acknowledge
    /// it (`WAIT 1`); none on a single node.
    pub(super) wait: Option<Duration>,
    /// Cluster mode: the keys share one hash slot, and the heartbeat is a command of that
    /// slot, which a node that no longer serves it answers with `MOVED`.
    pub(super) cluster: bool,
}

impl Keys {
    /// The key names under `prefix`. In cluster mode, a prefix without a hash tag is made
    /// one (`{prefix}`), so that every key lands in the same slot and a transaction may
    /// hold them all.
    pub(super) fn new(prefix: &str, log_len: usize, wait: Option<Duration>, cluster: bool) -> Keys {
        let base = if cluster && !has_hash_tag(prefix) {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        };
        Keys {
            prefix: prefix.to_owned(),
            ids: format!("{base}ids"),
            anonymous: format!("{base}anonymous"),
            subjects: format!("{base}subjects"),
            events: format!("{base}events"),
            log: format!("{base}log"),
            log_len,
            wait,
            cluster,
        }
    }

    /// The heartbeat: `PING`, or in cluster mode `EXISTS` of a denylist key, which fails
    /// with `MOVED` on a node that no longer serves the slot (a master demoted by a manual
    /// failover keeps its connections).
    pub(super) fn heartbeat(&self) -> redis::Cmd {
        if self.cluster {
            let mut cmd = redis::cmd("EXISTS");
            cmd.arg(&self.ids);
            cmd
        } else {
            redis::cmd("PING")
        }
    }
}

/// Whether Redis Cluster hashes only part of `key`: a `{` followed later by a `}` with
/// something between them (the first such pair counts).
pub(super) fn has_hash_tag(key: &str) -> bool {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .is_some_and(|(tag, _)| !tag.is_empty())
}

pub(super) fn backend(op: &'static str, e: redis::RedisError) -> DenylistError {
    DenylistError::Backend {
        backend: BACKEND,
        op,
        source: Box::new(e),
    }
}

pub(super) async fn limit<T>(
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

#[cfg(test)]
mod tests {
    use super::{Keys, has_hash_tag};

    #[test]
    fn hash_tags_follow_redis_rule() {
        assert!(has_hash_tag("{app}:denylist:"));
        assert!(has_hash_tag("app:{denylist}:"));
        assert!(!has_hash_tag("app:denylist:"));
        assert!(!has_hash_tag("app:{}:denylist:"));
        assert!(!has_hash_tag("app:}{:"));
    }

    #[test]
    fn cluster_keys_share_one_hash_tag_and_single_node_keys_are_unchanged() {
        let single = Keys::new("app:", 10, None, false);
        assert_eq!(single.ids, "app:ids");
        assert_eq!(single.log, "app:log");
        let cluster = Keys::new("app:", 10, None, true);
        assert_eq!(cluster.ids, "{app:}ids");
        assert_eq!(cluster.subjects, "{app:}subjects");
        assert_eq!(cluster.prefix, "app:");
        let tagged = Keys::new("{app}:", 10, None, true);
        assert_eq!(tagged.anonymous, "{app}:anonymous");
    }
}
