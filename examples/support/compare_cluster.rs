//! The comparison's Redis Cluster row: `sealed+deny-cluster`, the sealed cookie with a
//! `RedisDenylist` on a throw-away Redis Cluster (3 masters, 3 replicas on free loopback
//! ports, started by the tests' own helper, one per run of the row).

use std::sync::Arc;

use sealed_session::denylist::Denylist;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Why the row cannot run here, if it cannot: the tests' cluster helper takes
/// `redis-server` and `redis-cli` from `PATH` (`COMPARE_REDIS_SERVER` does not apply).
pub fn missing() -> Option<String> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    if !on_path("redis-server") || !on_path("redis-cli") {
        return Some(
            "skipped: redis-server or redis-cli not on PATH (they make the cluster)".into(),
        );
    }
    None
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
