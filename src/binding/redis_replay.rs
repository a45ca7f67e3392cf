//! The replay cache in Redis (feature `redis`): one key per proof, `SET NX PX`, so that a
//! proof accepted by one instance is refused by every other instance on the same Redis.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::replay::{ReplayCache, ReplayError};
use crate::clock::Timestamp;
use crate::store::{BoxFuture, RedisStore, RedisStoreBuilder};

/// A [`ReplayCache`] in Redis, through the same connection handling as
/// [`RedisStore`] (one node, a Redis Cluster, or the master Sentinels name). Each proof is
/// one key, `{prefix}<hash>`, set with `SET NX PX` and expiring with its window: one round
/// trip per proof, and Redis's memory bounded by the proofs of one window.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use sealed_session::binding::{Dpop, RedisReplayCache};
///
/// let cache = RedisReplayCache::builder("redis://127.0.0.1:6379/").build().await?;
/// let dpop = Dpop::new().replay_cache(Arc::new(cache));
/// # let _ = dpop;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RedisReplayCache {
    store: RedisStore,
    prefix: String,
}

/// Builds a [`RedisReplayCache`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::binding::RedisReplayCache;
///
/// let cache = RedisReplayCache::builder("redis://127.0.0.1:6379/")
///     .key_prefix("myapp:proofs:")
///     .build()
///     .await?;
/// # let _ = cache;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisReplayCacheBuilder {
    store: RedisStoreBuilder,
    prefix: String,
}

impl RedisReplayCache {
    /// A builder for the Redis server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisReplayCacheBuilder {
        RedisReplayCacheBuilder {
            store: RedisStore::builder(url),
            prefix: "sealed-session:proofs:".to_owned(),
        }
    }

    /// A builder for a Redis Cluster reached through any of `nodes`.
    pub fn cluster<I, S>(nodes: I) -> RedisReplayCacheBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisReplayCacheBuilder {
            store: RedisStore::cluster(nodes),
            prefix: "sealed-session:proofs:".to_owned(),
        }
    }
}

impl RedisReplayCacheBuilder {
    /// Prefix of the keys. Default: `sealed-session:proofs:`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time limit for connecting and for each check. Default: 2 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.store = self.store.timeout(limit);
        self
    }

    /// Connects, failing when Redis cannot be reached within the timeout.
    pub async fn build(self) -> Result<RedisReplayCache, ReplayError> {
        let store = self
            .store
            .build()
            .await
            .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
        Ok(RedisReplayCache {
            store,
            prefix: self.prefix,
        })
    }
}

impl ReplayCache for RedisReplayCache {
    fn first_use<'a>(
        &'a self,
        key: &'a [u8; 16],
        until: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<bool, ReplayError>> {
        Box::pin(async move {
            let name = format!("{}{}", self.prefix, URL_SAFE_NO_PAD.encode(key));
            let ttl = until.saturating_since(now).as_millis().max(1);
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(ttl).unwrap_or(u64::MAX));
            let set: Option<String> = self
                .store
                .write_cmd("record a proof", &name, &cmd)
                .await
                .map_err(|e| ReplayError::Unavailable(e.to_string()))?;
            Ok(set.is_some())
        })
    }
}
