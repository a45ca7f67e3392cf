//! Keeping the replica current: applying pub/sub messages as they arrive; catching up from
//! the revocation log (a stream of the same messages) after a reconnection and periodically,
//! from where the last catch-up ended; and loading the sorted sets whole (`ZSCAN`, in pages)
//! at start, or when the log no longer reaches back to where this replica left it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};

use super::commands::{BACKEND, Keys, LOG_FIELD, limit, record};
use super::link::Link;
use super::state::{Shared, horizon};
use crate::clock::Timestamp;
use crate::denylist::DenylistError;
use crate::denylist::memory::{Owner, check_subject};
use crate::state::SessionId;

/// Entries asked for per `ZSCAN` or `XRANGE` page.
const SCAN_PAGE: usize = 1000;

/// The message of the entry a replica adds to an empty log at a full load, so that its
/// position names an entry (whose loss, when Redis loses its data, it can tell). Not a
/// revocation: applying it does nothing.
const LOG_MARK: &[u8] = b"start";

impl Shared {
    /// Called by the connection for every push: pub/sub messages and disconnections.
    pub(super) fn on_push(&self, info: PushInfo) {
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
        if self.apply_message(payload, self.clock.now()) {
            self.replica.publish();
        }
    }

    /// Applies one message of the channel or the log; whether it could be read.
    fn apply_message(&self, payload: &[u8], now: Timestamp) -> bool {
        if payload == LOG_MARK {
            return true;
        }
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
        if parsed.is_none() {
            tracing::debug!(
                len = payload.len(),
                "denylist: ignored an unreadable revocation message"
            );
        }
        parsed.is_some()
    }
}

/// What one synchronisation did.
#[derive(Clone, Copy, Debug)]
pub(super) struct SyncReport {
    /// The replica's sizes afterwards (revoked ids, subjects).
    pub(super) sizes: (usize, usize),
    /// The sets were loaded whole (at start, or the log no longer reached back far enough).
    pub(super) full: bool,
    /// Entries read from Redis: set members for a full load, log entries for a catch-up.
    pub(super) read: usize,
}

/// Loads Redis into the replica.
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
    pub(super) link: Arc<Link>,
    pub(super) keys: Keys,
    pub(super) timeout: Duration,
    /// Where in the revocation log the replica is current to: the id of the last entry it
    /// applied. `None` until the first full load.
    pub(super) log_pos: Option<String>,
    /// How long catch-ups may stand in for a whole load: past it since the last one, the
    /// next synchronisation loads the sets whole (healing what no log entry carries).
    pub(super) reload_every: Duration,
    /// When the sets were last loaded whole.
    pub(super) loaded_at: Option<Timestamp>,
}

impl Syncer {
    /// Subscribes, then catches up from the revocation log, or loads the sets whole when it
    /// cannot (see the module). On success the replica is current as of the moment the load
    /// began.
    pub(super) async fn sync(&mut self) -> Result<SyncReport, DenylistError> {
        let epoch = self.shared.disconnects.load(Ordering::Acquire);
        let events = self.keys.events.clone();
        let timeout = self.timeout;
        let (_, mut conn) = self.link.conn()?;
        limit(
            timeout,
            "connect and subscribe to the revocation channel",
            conn.subscribe(events),
        )
        .await?;
        self.flush_pending().await?;
        let started = self.shared.clock.now();
        let reload_due = self
            .loaded_at
            .is_none_or(|at| started.saturating_since(at) >= self.reload_every);
        let caught_up = match self.log_pos.clone() {
            Some(pos) if !reload_due => self.catch_up(pos, started).await?,
            _ => None,
        };
        let (full, read, pos) = match caught_up {
            Some((read, pos)) => (false, read, pos),
            None => {
                let (read, pos) = self.load(started).await?;
                (true, read, pos)
            }
        };
        // A loss during the load may have dropped the subscription: the load does not count.
        if self.shared.disconnects.load(Ordering::Acquire) != epoch {
            return Err(DenylistError::Backend {
                backend: BACKEND,
                op: "load the denylist",
                source: "connection lost during the load".into(),
            });
        }
        self.log_pos = Some(pos);
        if full {
            self.loaded_at = Some(started);
        }
        self.shared.replica.purge(started);
        self.shared.replica.publish();
        self.shared.mark_fresh(started);
        self.shared.connected.store(true, Ordering::Release);
        Ok(SyncReport {
            sizes: self.shared.replica.sizes(),
            full,
            read,
        })
    }

    /// Applies the log's entries after `pos`, page by page; how many it read and the new
    /// position. `None` when the log no longer holds everything after `pos` (trimmed past it,
    /// or Redis lost its data): the sets must be loaded whole.
    async fn catch_up(
        &mut self,
        mut pos: String,
        now: Timestamp,
    ) -> Result<Option<(usize, String)>, DenylistError> {
        // Trimming drops the oldest entries, so the log still holds all that followed `pos`
        // exactly when `pos` itself is still there (and a Redis that lost its data has lost
        // it too). Each page is read from `pos` inclusive and must start with it: a trim
        // between two pages (other instances keep appending) is seen, not skipped over.
        let mut read = 0;
        loop {
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&self.keys.log)
                .arg(&pos)
                .arg("+")
                .arg("COUNT")
                .arg(SCAN_PAGE + 1);
            let reply: Value = self.query("read the revocation log", cmd).await?;
            let entries = log_entries(reply).ok_or_else(|| DenylistError::Backend {
                backend: BACKEND,
                op: "read the revocation log",
                source: "unexpected XRANGE reply".into(),
            })?;
            let mut entries = entries.into_iter();
            match entries.next() {
                Some((first, _)) if first == pos => {}
                _ => return Ok(None),
            }
            let mut page = 0;
            for (id, message) in entries {
                if let Some(m) = message {
                    self.shared.apply_message(&m, now);
                }
                pos = id;
                page += 1;
            }
            read += page;
            if page < SCAN_PAGE {
                return Ok(Some((read, pos)));
            }
        }
    }

    /// Loads the three sets whole into the replica; how many members it read, and the log
    /// position to catch up from next time (read first, so that nothing logged during the
    /// load is skipped: entries read twice change nothing).
    async fn load(&mut self, started: Timestamp) -> Result<(usize, String), DenylistError> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.keys.log)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let tip: Value = self.query("read the revocation log", cmd).await?;
        let tip = log_entries(tip).and_then(|e| e.into_iter().next());
        let pos = match tip {
            Some((id, _)) => id,
            None => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&self.keys.log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.keys.log_len)
                    .arg("*")
                    .arg(LOG_FIELD)
                    .arg(LOG_MARK);
                self.query("start the revocation log", cmd).await?
            }
        };
        let ids = self.keys.ids.clone();
        let subjects = self.keys.subjects.clone();
        let anonymous = self.keys.anonymous.clone();
        // Subjects first: the anonymous cut-off among them covers older anonymous entries.
        let mut read = 0;
        read += self
            .scan(&subjects, |shared, member, score| {
                if check_subject(member).is_ok() {
                    shared.replica.insert_subject(member, score, started);
                }
            })
            .await?;
        read += self
            .scan(&ids, |shared, member, score| {
                if let Some(id) = SessionId::parse(member) {
                    let _ = shared.replica.insert(&id, score, Owner::Unknown, started);
                }
            })
            .await?;
        read += self
            .scan(&anonymous, |shared, member, issued_at| {
                if let Some((id, until)) = member.split_once(' ')
                    && let (Some(id), Ok(until)) = (SessionId::parse(id), until.parse::<u64>())
                {
                    let until = Timestamp::from_millis(until);
                    let owner = Owner::Anonymous(issued_at);
                    let _ = shared.replica.insert(&id, until, owner, started);
                }
            })
            .await?;
        Ok((read, pos))
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, DenylistError> {
        let (_, mut conn) = self.link.conn()?;
        limit(self.timeout, op, cmd.query_async(&mut conn)).await
    }

    /// Writes the revocations that failed while Redis was away. On error the rest stay
    /// pending and the sync fails, so the replica is not called current before they land.
    pub(super) async fn flush_pending(&mut self) -> Result<(), DenylistError> {
        let pending = self.shared.take_pending();
        // Sentinel mode: written without waiting for a replica. Their callers were already
        // told they failed; requiring a replica here would keep a master without replicas
        // from ever being resynchronised with (and every check Unavailable once stale).
        let keys = Keys {
            wait: None,
            ..self.keys.clone()
        };
        let now = self.shared.clock.now();
        let horizon = horizon(&self.shared, now);
        for (i, p) in pending.iter().enumerate() {
            if !p.live(now) {
                continue;
            }
            let pipe = p.pipe(&keys, now, horizon);
            let written = match self.link.conn() {
                Ok((_, conn)) => {
                    record(
                        self.timeout,
                        "record a revocation made during an outage",
                        &pipe,
                        &keys,
                        conn,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
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

    /// Walks one sorted set with `ZSCAN`, page by page; how many members it read.
    async fn scan(
        &mut self,
        key: &str,
        mut each: impl FnMut(&Shared, &str, Timestamp),
    ) -> Result<usize, DenylistError> {
        let mut cursor: u64 = 0;
        let mut read = 0;
        loop {
            let mut cmd = redis::cmd("ZSCAN");
            cmd.arg(key).arg(cursor).arg("COUNT").arg(SCAN_PAGE);
            let (_, mut conn) = self.link.conn()?;
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
            read += items.len() / 2;
            for pair in items.chunks_exact(2) {
                if let [member, score] = pair
                    && let (Some(m), Some(s)) = (text(member), score_ms(score))
                {
                    each(&self.shared, m, Timestamp::from_millis(s));
                }
            }
            if next == 0 {
                return Ok(read);
            }
            cursor = next;
        }
    }
}

/// `[[id, [field, value, …]], …]` from an `XRANGE` reply: each entry's id, and its message
/// (the value of `LOG_FIELD`) when it has one.
fn log_entries(reply: Value) -> Option<Vec<(String, Option<Vec<u8>>)>> {
    let Value::Array(entries) = reply else {
        return match reply {
            Value::Nil => Some(Vec::new()),
            _ => None,
        };
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let mut parts = parts.into_iter();
            let id = text(&parts.next()?)?.to_owned();
            let fields: Vec<Value> = match parts.next()? {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => return None,
            };
            let message = fields.chunks_exact(2).find_map(|kv| match kv {
                [k, Value::BulkString(v)] if text(k) == Some(LOG_FIELD) => Some(v.clone()),
                _ => None,
            });
            Some((id, message))
        })
        .collect()
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
