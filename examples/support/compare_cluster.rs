//! The comparison's Redis Cluster row: `sealed+deny-cluster`, the sealed cookie with a
//! `RedisDenylist` on a throw-away Redis Cluster (3 masters, 3 replicas on free loopback
//! ports, started by the tests' own helper, one per run of the row).

use std::path::PathBuf;
use std::sync::Arc;

use sealed_session::denylist::Denylist;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Why the row cannot run here, if it cannot: it needs `redis-cli` besides `redis-server`.
pub fn missing(redis_server: &Option<PathBuf>) -> Option<String> {
    let cli = redis_server
        .as_deref()
        .and_then(|p| p.parent())
        .map(|dir| dir.join("redis-cli"))
        .filter(|p| p.is_file())
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("redis-cli"))
                .find(|p| p.is_file())
        });
    match (redis_server, cli) {
        (None, _) => Some("skipped: no redis-server found (PATH or COMPARE_REDIS_SERVER)".into()),
        (Some(_), None) => Some("skipped: no redis-cli found (it creates the cluster)".into()),
        (Some(_), Some(_)) => None,
    }
}

/// A running cluster (feature `redis`), stopped on drop.
pub struct Cluster {
    #[cfg(feature = "redis")]
    inner: crate::common::redis_topology::RedisCluster,
}

impl Cluster {
    /// Starts the cluster and waits until it serves every slot.
    pub fn start() -> Result<Cluster> {
        #[cfg(feature = "redis")]
        {
            let inner = crate::common::redis_topology::RedisCluster::start(
                "the comparison's sealed+deny-cluster row",
            )
            .ok_or("the Redis Cluster could not be started")?;
            Ok(Cluster { inner })
        }
        #[cfg(not(feature = "redis"))]
        {
            Err("built without the redis feature".into())
        }
    }

    /// The nodes' URLs, comma-separated (`COMPARE_REDIS_CLUSTER`).
    pub fn urls(&self) -> String {
        #[cfg(feature = "redis")]
        {
            self.inner.urls().join(",")
        }
        #[cfg(not(feature = "redis"))]
        {
            String::new()
        }
    }

    /// The process id of the master that holds the denylist (the one whose CPU the row
    /// reports as Redis's).
    pub fn denylist_master_pid(&self) -> Option<u32> {
        #[cfg(feature = "redis")]
        {
            let port = self.inner.try_master_of("{sealed-session:denylist:}ids")?;
            self.inner.pid(port)
        }
        #[cfg(not(feature = "redis"))]
        {
            None
        }
    }
}

/// The denylist on the cluster whose nodes `urls` lists (comma-separated).
#[cfg(feature = "redis")]
pub async fn denylist(urls: &str) -> Result<Arc<dyn Denylist>> {
    Ok(Arc::new(
        sealed_session::denylist::RedisDenylist::cluster(urls.split(','))
            .build()
            .await?,
    ))
}

#[cfg(not(feature = "redis"))]
pub async fn denylist(_urls: &str) -> Result<Arc<dyn Denylist>> {
    Err("built without the redis feature".into())
}
