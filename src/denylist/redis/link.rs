//! The connection the denylist, its task and its syncer share: one RESP3
//! `ConnectionManager`, replaced when Sentinels (or the nodes of a Redis Cluster) name
//! another master.
//!
//! A `ConnectionManager` reconnects to the address it was built for, never to another: after
//! a failover it would keep knocking at the dead (or demoted) master. So in Sentinel and
//! Cluster mode the link asks for the master again when the task finds the connection lost,
//! and when a revocation is refused (`READONLY`, `MOVED`) or no replica acknowledged it; if
//! the master moved, a new manager replaces the old one, and the task resynchronises on it.
//! On a single node the manager is never replaced.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::SentinelClient;
use redis::{ConnectionAddr, PushInfo, PushKind};

use super::cluster::ClusterNodes;
use super::commands::{BACKEND, NoReplica, backend};
use super::state::Shared;
use crate::denylist::DenylistError;

/// After a failed lookup of the master, the next one waits this long (as in the store):
/// an outage never turns into a stream of lookups.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(100);

/// The current connection, shared by the denylist, its task and its syncer.
pub(super) struct Link {
    /// The manager in use and the address it was built for (`None` before the first lookup
    /// in Sentinel mode). Cloned out, never held across an `.await`.
    current: Mutex<Option<(ConnectionManager, Option<ConnectionAddr>)>>,
    /// Incremented at each replacement; a manager's push handler passes on its disconnection
    /// only while it is the current one, so a dropped manager does not disturb its successor.
    generation: Arc<AtomicU64>,
    /// The manager settings, without the push sender (added per manager).
    config: ConnectionManagerConfig,
    shared: Arc<Shared>,
    timeout: Duration,
    /// Sentinel and Cluster mode: the lookups, one at a time.
    resolver: Option<tokio::sync::Mutex<Resolver>>,
}

/// Who names the master.
pub(super) enum Source {
    /// The Sentinels, by the master's name.
    Sentinel(SentinelClient),
    /// The nodes of a Redis Cluster, by the denylist's hash slot.
    Cluster(ClusterNodes),
}

impl Source {
    /// What a lookup is called in errors and log lines.
    fn op(&self) -> &'static str {
        match self {
            Source::Sentinel(_) => "reach the master through Redis Sentinel",
            Source::Cluster(_) => "reach the master of the denylist's Redis Cluster slot",
        }
    }

    /// A client for the master as named now, within `timeout`.
    async fn master(&mut self, timeout: Duration) -> Result<redis::Client, DenylistError> {
        let op = self.op();
        let lookup = async {
            match self {
                Source::Sentinel(client) => {
                    client.async_get_client().await.map_err(|e| backend(op, e))
                }
                Source::Cluster(nodes) => nodes.master(timeout).await,
            }
        };
        tokio::time::timeout(timeout, lookup)
            .await
            .unwrap_or(Err(DenylistError::Timeout {
                backend: BACKEND,
                op,
                timeout,
            }))
    }
}

struct Resolver {
    source: Source,
    /// When the last lookup failed: none before this.
    retry_after: Option<Instant>,
    /// When a lookup last found the master unchanged: another one within
    /// [`RESOLVE_BACKOFF`] answers the same without asking (many revocations failing at once
    /// ask the Sentinels at most about ten times a second).
    unchanged_at: Option<Instant>,
}

impl Link {
    /// A link to one node (or a proxy): one manager for good, as before Sentinel support.
    pub(super) fn single(
        client: redis::Client,
        config: ConnectionManagerConfig,
        shared: Arc<Shared>,
        timeout: Duration,
    ) -> Result<Link, DenylistError> {
        let link = Link {
            current: Mutex::new(None),
            generation: Arc::new(AtomicU64::new(0)),
            config,
            shared,
            timeout,
            resolver: None,
        };
        let manager = ConnectionManager::new_lazy_with_config(client, link.manager_config(0))
            .map_err(|e| backend("configure the Redis connection", e))?;
        *link.lock() = Some((manager, None));
        Ok(link)
    }

    /// A link to the master `source` names; no connection until [`Link::refresh`].
    pub(super) fn following(
        source: Source,
        config: ConnectionManagerConfig,
        shared: Arc<Shared>,
        timeout: Duration,
    ) -> Link {
        Link {
            current: Mutex::new(None),
            generation: Arc::new(AtomicU64::new(0)),
            config,
            shared,
            timeout,
            resolver: Some(tokio::sync::Mutex::new(Resolver {
                source,
                retry_after: None,
                unchanged_at: None,
            })),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(ConnectionManager, Option<ConnectionAddr>)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The settings of the `generation`-th manager: its pushes go to the shared state.
    fn manager_config(&self, generation: u64) -> ConnectionManagerConfig {
        let sink = self.shared.clone();
        let current = self.generation.clone();
        self.config
            .clone()
            .set_push_sender(move |info: PushInfo| -> Result<(), Infallible> {
                if info.kind == PushKind::Disconnection
                    && current.load(Ordering::Acquire) != generation
                {
                    return Ok(());
                }
                sink.on_push(info);
                Ok(())
            })
    }

    /// The current manager and its generation.
    pub(super) fn conn(&self) -> Result<(u64, ConnectionManager), DenylistError> {
        let current = self.lock();
        let generation = self.generation.load(Ordering::Acquire);
        match current.as_ref() {
            Some((manager, _)) => Ok((generation, manager.clone())),
            None => Err(DenylistError::Backend {
                backend: BACKEND,
                op: "reach the Redis master",
                source: "no master found yet".into(),
            }),
        }
    }

    /// Whether the master is looked up (Sentinel or Cluster mode).
    pub(super) fn follows_master(&self) -> bool {
        self.resolver.is_some()
    }

    /// The current generation.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Sentinel and Cluster mode: asks for the master and, if it is not the one the
    /// current manager was built for, replaces the manager and tells the task to
    /// resynchronise. `seen` is the generation the caller used: if the manager was replaced
    /// since, nothing is asked. Whether the manager is not the one `seen` names any more. On
    /// a single node, does nothing.
    pub(super) async fn refresh(&self, seen: u64) -> Result<bool, DenylistError> {
        let Some(resolver) = &self.resolver else {
            return Ok(false);
        };
        let mut resolver = resolver.lock().await;
        if self.generation() != seen {
            return Ok(true);
        }
        if resolver
            .unchanged_at
            .is_some_and(|t| t.elapsed() < RESOLVE_BACKOFF)
        {
            return Ok(false);
        }
        if resolver.retry_after.is_some_and(|t| Instant::now() < t) {
            return Err(DenylistError::Backend {
                backend: BACKEND,
                op: resolver.source.op(),
                source: "the master could not be found a moment ago".into(),
            });
        }
        // Set before the lookup: one cut short by the timeout counts as failed too.
        resolver.retry_after = Some(Instant::now() + RESOLVE_BACKOFF);
        let client = resolver.source.master(self.timeout).await?;
        resolver.retry_after = None;
        let addr = client.get_connection_info().addr().clone();
        let same = self
            .lock()
            .as_ref()
            .is_some_and(|(_, at)| at.as_ref() == Some(&addr));
        if same {
            resolver.unchanged_at = Some(Instant::now());
            return Ok(false);
        }
        let next = seen.wrapping_add(1);
        let manager = ConnectionManager::new_lazy_with_config(client, self.manager_config(next))
            .map_err(|e| backend("configure the Redis connection", e))?;
        {
            let mut current = self.lock();
            let old = current
                .as_ref()
                .and_then(|(_, at)| at.as_ref().map(ToString::to_string));
            tracing::info!(
                master = %addr,
                previous = old.as_deref().unwrap_or("none"),
                "denylist: the Redis master moved; connecting to it"
            );
            *current = Some((manager, Some(addr)));
            self.generation.store(next, Ordering::Release);
        }
        // The task resynchronises on the new manager (subscribes, writes what is pending,
        // catches up), as after any reconnection.
        self.shared.disconnects.fetch_add(1, Ordering::AcqRel);
        self.shared.connected.store(false, Ordering::Release);
        self.shared.wake.notify_one();
        Ok(true)
    }
}

/// Whether `e` suggests that the connection reaches a master that is no longer the one the
/// Sentinels (or the cluster) name: a write refused as on a replica (`READONLY`, or the
/// transaction aborted for it), a cluster node that does not serve the slot (`MOVED`) or
/// has no master for it yet (`CLUSTERDOWN`), or a master with no replica to acknowledge it
/// (one left behind by a failover whose demotion has not reached it yet).
pub(super) fn maybe_demoted(e: &DenylistError) -> bool {
    match e {
        DenylistError::Backend { source, .. } => {
            source.downcast_ref::<NoReplica>().is_some()
                || source.downcast_ref::<redis::RedisError>().is_some_and(|r| {
                    matches!(
                        r.kind(),
                        redis::ErrorKind::Server(
                            redis::ServerErrorKind::ReadOnly
                                | redis::ServerErrorKind::ExecAbort
                                | redis::ServerErrorKind::Moved
                                | redis::ServerErrorKind::ClusterDown
                        )
                    )
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis::{ErrorKind, RedisError, ServerErrorKind};

    use super::{BACKEND, NoReplica, maybe_demoted};
    use crate::denylist::DenylistError;

    fn failed(source: Box<dyn std::error::Error + Send + Sync>) -> DenylistError {
        DenylistError::Backend {
            backend: BACKEND,
            op: "record a session revocation",
            source,
        }
    }

    #[test]
    fn a_refused_or_unacknowledged_write_asks_the_sentinels_other_failures_do_not() {
        for kind in [
            ServerErrorKind::ReadOnly,
            ServerErrorKind::ExecAbort,
            ServerErrorKind::Moved,
            ServerErrorKind::ClusterDown,
        ] {
            let e = RedisError::from((ErrorKind::Server(kind), "refused"));
            assert!(maybe_demoted(&failed(Box::new(e))), "{kind:?}");
        }
        assert!(maybe_demoted(&failed(Box::new(NoReplica(
            Duration::from_millis(250)
        )))));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!maybe_demoted(&failed(Box::new(io))));
        assert!(!maybe_demoted(&DenylistError::Timeout {
            backend: BACKEND,
            op: "record a session revocation",
            timeout: Duration::from_secs(1),
        }));
    }
}
