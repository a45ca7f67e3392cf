//! The background task: heartbeats, periodic reloads and reconnection with backoff.

use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::commands::limit;
use super::sync::Syncer;

/// Shows an error with its sources, for log lines.
pub(super) struct ErrorChain<'a>(pub(super) &'a (dyn std::error::Error + 'static));

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

pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The background task: heartbeats, periodic loads, reconnection.
pub(super) struct Task {
    pub(super) sync: Syncer,
    pub(super) heartbeat: Duration,
    pub(super) resync_every: Duration,
    pub(super) backoff_min: Duration,
    pub(super) backoff_max: Duration,
}

impl Task {
    pub(super) async fn run(mut self, mut connected: bool) {
        let shared = self.sync.shared.clone();
        let mut epoch = shared.disconnects.load(Ordering::Acquire);
        let mut next_load = Instant::now() + self.resync_every;
        let mut backoff = self.backoff_min;
        let mut stale_logged = false;
        loop {
            // Once a heartbeat while connected, once a retry while not.
            #[cfg(feature = "metrics")]
            crate::denylist::metrics::denylist_staleness(shared.stale_for(shared.clock.now()));
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
                        Ok(report) => {
                            tracing::debug!(
                                revoked_sessions = report.sizes.0,
                                revoked_subjects = report.sizes.1,
                                full_load = report.full,
                                entries_read = report.read,
                                "denylist: periodic catch-up with Redis"
                            );
                            epoch = shared.disconnects.load(Ordering::Acquire);
                            Ok(())
                        }
                        Err(e) => Err(ErrorChain(&e).to_string()),
                    }
                } else if shared.has_pending() {
                    // Revocations that failed after the last resynchronisation (one whose
                    // write raced a reconnection): written now, not at the next one.
                    match self.sync.flush_pending().await {
                        Ok(()) => self.ping().await,
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
                // Sentinel mode: the master may have moved (a connection never follows it).
                let seen = self.sync.link.generation();
                if let Err(e) = self.sync.link.refresh(seen).await {
                    tracing::debug!(error = %ErrorChain(&e), "denylist: looking up the Redis master failed");
                }
                match self.sync.sync().await {
                    Ok(report) => {
                        connected = true;
                        stale_logged = false;
                        epoch = shared.disconnects.load(Ordering::Acquire);
                        next_load = Instant::now() + self.resync_every;
                        tracing::info!(
                            revoked_sessions = report.sizes.0,
                            revoked_subjects = report.sizes.1,
                            full_load = report.full,
                            entries_read = report.read,
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

    /// One heartbeat: a `PING` (in cluster mode, a command of the denylist's slot) whose
    /// answer proves the replica was current when it was sent.
    async fn ping(&mut self) -> Result<(), String> {
        let shared = &self.sync.shared;
        let epoch = shared.disconnects.load(Ordering::Acquire);
        let sent = shared.clock.now();
        let mut conn = match self.sync.link.conn() {
            Ok((_, conn)) => conn,
            Err(e) => return Err(ErrorChain(&e).to_string()),
        };
        let cmd = self.sync.keys.heartbeat();
        match limit(
            self.sync.timeout,
            "ping",
            cmd.query_async::<Value>(&mut conn),
        )
        .await
        {
            Ok(_) if shared.disconnects.load(Ordering::Acquire) == epoch => {
                shared.mark_fresh(sent);
                Ok(())
            }
            Ok(_) => Err("the connection was closed".to_owned()),
            Err(e) => Err(ErrorChain(&e).to_string()),
        }
    }
}
