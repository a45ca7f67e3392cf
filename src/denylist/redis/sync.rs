//! Keeping the replica current: applying pub/sub messages as they arrive, and loading both
//! sorted sets from Redis (`ZSCAN`, in pages) at start and after every reconnection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};

use super::commands::{BACKEND, Keys, limit};
use super::state::{Shared, horizon};
use crate::clock::Timestamp;
use crate::denylist::DenylistError;
use crate::denylist::memory::{Owner, check_subject};
use crate::state::SessionId;

/// Entries asked for per `ZSCAN` page.
const SCAN_PAGE: usize = 1000;

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

/// Loads Redis into the replica.
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: ConnectionManager,
    pub(super) keys: Keys,
    pub(super) timeout: Duration,
}

impl Syncer {
    /// Subscribes, then loads both sets into the replica. On success the replica is current
    /// as of the moment the load began; returns the replica's sizes.
    pub(super) async fn sync(&mut self) -> Result<(usize, usize), DenylistError> {
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
