//! [`RedisRegistry`]: the sessions of each subject in Redis, shared by every instance.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{
    BoxFuture, DEFAULT_MAX_PER_SUBJECT, DeviceRecord, Registry, RegistryError, live_newest_first,
    parse_entries,
};
use crate::clock::Timestamp;
use crate::state::SessionId;
use crate::store::{RedisStore, RedisStoreBuilder, StoreError};

const BACKEND: &str = "redis";

/// Records one entry, then drops the subject's expired entries and, past the bound, the
/// least recently renewed; the keys live as long as their latest entry.
/// KEYS: the hash (id → JSON), the ids by renewal, the ids by expiry.
/// ARGV: id, JSON, renewed ms, expires ms, bound, now ms.
static RECORD: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local h, r, e = KEYS[1], KEYS[2], KEYS[3]
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('HDEL', h, id)
    redis.call('ZREM', r, id)
    redis.call('ZREM', e, id)
  end
end
redis.call('HSET', h, ARGV[1], ARGV[2])
redis.call('ZADD', r, ARGV[3], ARGV[1])
redis.call('ZADD', e, ARGV[4], ARGV[1])
drop(redis.call('ZRANGEBYSCORE', e, '-inf', ARGV[6]))
local over = redis.call('ZCARD', r) - tonumber(ARGV[5])
if over > 0 then drop(redis.call('ZRANGE', r, 0, over - 1)) end
local last = redis.call('ZRANGE', e, -1, -1, 'WITHSCORES')
if last[2] then
  local ms = math.floor(tonumber(last[2]) - tonumber(ARGV[6]))
  if ms > 0 then
    for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ms) end
  end
end
return 1
",
    )
});

/// Removes one entry. KEYS as for [`RECORD`]; ARGV: id.
static REMOVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
",
    )
});

/// Builds a [`RedisRegistry`]. Every setter names its default.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use sealed_session::devices::RedisRegistry;
///
/// let registry = RedisRegistry::builder("redis://127.0.0.1:6379/").max_per_subject(20).build().await?;
/// # let _ = registry;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RedisRegistryBuilder {
    store: RedisStoreBuilder,
    prefix: String,
    max: usize,
}

impl RedisRegistryBuilder {
    /// Prefix of the registry's keys. Default: `sealed-session:devices:`. Keep `{` and `}`
    /// out of it (each subject's keys carry a hash tag of their own).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Keeps at most `n` entries per subject (at least 1), the most recently renewed.
    /// Default: [`DEFAULT_MAX_PER_SUBJECT`] (50). Give every process the same value.
    pub fn max_per_subject(mut self, n: usize) -> Self {
        self.max = n.max(1);
        self
    }

    /// Time limit for connecting and for each operation. Default: 2 seconds.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.store = self.store.timeout(limit);
        self
    }

    /// Sentinel only: the credentials of the master and replicas the Sentinels name; see
    /// [`RedisStoreBuilder::sentinel_master_auth`].
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.store = self.store.sentinel_master_auth(username, password);
        self
    }

    /// Connects, failing when Redis cannot be reached within the timeout.
    pub async fn build(self) -> Result<RedisRegistry, RegistryError> {
        let store = self.store.build().await.map_err(|e| failed("connect", e))?;
        Ok(RedisRegistry {
            store,
            prefix: self.prefix,
            max: self.max,
        })
    }
}

/// A [`Registry`] in Redis, shared by every instance that uses the same Redis and prefix;
/// on one node, a Redis Cluster or the master Sentinels name (through the same connection
/// handling as [`RedisStore`], with its timeouts and failover behaviour).
///
/// # Data in Redis
/// Each subject has three keys, sharing one hash tag (the subject in base64url) so that a
/// cluster keeps them on one master: `{prefix}{<subject>}:h`, a hash from session id to the
/// entry as JSON; `…:r`, the ids scored by their last renewal; `…:e`, the ids scored by
/// their expiry. A record is one Lua script (`EVALSHA`): it writes the entry, drops the
/// subject's expired entries and, past the bound, the least recently renewed, and makes the
/// keys expire with their latest entry. A list is one `HGETALL`; a removal one script.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use sealed_session::devices::{Devices, RedisRegistry};
///
/// let registry = RedisRegistry::builder("redis://127.0.0.1:6379/")
///     .key_prefix("myapp:devices:")
///     .build()
///     .await?;
/// let devices = Devices::new(Arc::new(registry));
/// # let _ = devices;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RedisRegistry {
    store: RedisStore,
    prefix: String,
    max: usize,
}

impl RedisRegistry {
    /// A builder for the Redis server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisRegistryBuilder {
        RedisRegistryBuilder::new(RedisStore::builder(url))
    }

    /// A builder for a Redis Cluster reached through any of `nodes`.
    pub fn cluster<I, S>(nodes: I) -> RedisRegistryBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisRegistryBuilder::new(RedisStore::cluster(nodes))
    }

    /// A builder for the master these Sentinels know as `master_name`.
    pub fn sentinel<I, S>(sentinels: I, master_name: impl Into<String>) -> RedisRegistryBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisRegistryBuilder::new(RedisStore::sentinel(sentinels, master_name))
    }

    /// The keys of `subject`: the hash, by renewal, by expiry.
    fn keys(&self, subject: &str) -> [String; 3] {
        let tag = URL_SAFE_NO_PAD.encode(subject);
        let base = format!("{}{{{tag}}}", self.prefix);
        [
            format!("{base}:h"),
            format!("{base}:r"),
            format!("{base}:e"),
        ]
    }
}

impl RedisRegistryBuilder {
    fn new(store: RedisStoreBuilder) -> RedisRegistryBuilder {
        RedisRegistryBuilder {
            store,
            prefix: "sealed-session:devices:".to_owned(),
            max: DEFAULT_MAX_PER_SUBJECT,
        }
    }
}

fn failed(op: &'static str, e: StoreError) -> RegistryError {
    let source: Box<dyn std::error::Error + Send + Sync> = match e {
        StoreError::Backend { source, .. } => source,
        other => Box::new(other),
    };
    RegistryError::Backend {
        backend: BACKEND,
        op,
        source,
    }
}

impl Registry for RedisRegistry {
    fn record<'a>(&'a self, record: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let json = serde_json::to_string(record).map_err(|e| RegistryError::Backend {
                backend: BACKEND,
                op: "encode an entry",
                source: Box::new(e),
            })?;
            let keys = self.keys(&record.subject);
            let mut invocation = RECORD.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            invocation
                .arg(record.id.to_string())
                .arg(json)
                .arg(record.renewed.as_millis())
                .arg(record.expires_at.as_millis())
                .arg(self.max)
                .arg(record.renewed.as_millis());
            let _: i64 = self
                .store
                .run_script("record a session", &keys[0], &invocation)
                .await
                .map_err(|e| failed("record a session", e))?;
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        subject: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>> {
        Box::pin(async move {
            let keys = self.keys(subject);
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(&keys[0]);
            let entries: Vec<(String, Vec<u8>)> = self
                .store
                .read_cmd("list sessions", &keys[0], &cmd)
                .await
                .map_err(|e| failed("list sessions", e))?;
            let stored = entries.iter().map(|(_, json)| json.as_slice());
            Ok(live_newest_first(parse_entries(stored), subject, now))
        })
    }

    fn remove<'a>(
        &'a self,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let keys = self.keys(subject);
            let mut invocation = REMOVE.prepare_invoke();
            for k in &keys {
                invocation.key(k);
            }
            invocation.arg(id.to_string());
            let _: i64 = self
                .store
                .run_script("remove a session", &keys[0], &invocation)
                .await
                .map_err(|e| failed("remove a session", e))?;
            Ok(())
        })
    }
}
