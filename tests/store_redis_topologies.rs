//! The Redis store on a real Redis Cluster (3 masters, 3 replicas) and a real Sentinel setup
//! (1 master, 1 replica, 3 Sentinels): the `Store` conformance suite, no lost updates
//! through the middleware, `wait_for_replicas`, and a failover (the master killed with
//! SIGKILL, its replica promoted) after which sessions keep working, having cost a bounded
//! number of failed operations and lost no session written (and replicated) before it.
//!
//! Without `redis-server` and `redis-cli` on PATH each test prints `SKIPPED: ...` and
//! passes, except under `CI=true`, where it fails.
#![cfg(feature = "poem")]
#![cfg(feature = "redis")]

mod common {
    pub mod fixtures;
    pub mod lost_updates;
    pub mod redis;
    pub mod redis_topology;
    pub mod registry_conformance;
    pub mod store_conformance;
}
mod http;

use std::time::{Duration, Instant};

use common::redis_topology::{MASTER_NAME, RedisCluster, RedisSentinels};
use common::store_conformance::{Expiry, conformance};
use sealed_session::store::{RedisStore, Store, StoreError, Update};
use sealed_session::{SessionId, Timestamp};

/// The store's timeout in these tests.
const TIMEOUT: Duration = Duration::from_millis(500);

/// How long a failover may take before the test fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

/// Sessions written (and replicated) before the failover.
const SESSIONS: usize = 40;

fn far() -> Timestamp {
    Timestamp::from_millis(u64::MAX / 2)
}

fn is_redis_backend(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend { store: "redis", .. })
}

/// The conformance suite, then no lost updates through the middleware (both adapters).
async fn suites(store: &RedisStore) {
    conformance(store, Expiry::Real).await;
    common::lost_updates::no_lost_updates(http::app::Adapter::Poem, store, 3).await;
    #[cfg(feature = "tower")]
    common::lost_updates::no_lost_updates(http::app::Adapter::Tower, store, 3).await;
}

/// Writes [`SESSIONS`] sessions, each acknowledged by a replica (the store's `WAIT`).
async fn write_replicated(store: &RedisStore) -> Vec<(SessionId, Vec<u8>)> {
    let mut written = Vec::new();
    for i in 0..SESSIONS {
        let id = SessionId::generate().unwrap();
        let record = format!("session {i}").into_bytes();
        store.save(&id, &record, far()).await.unwrap();
        written.push((id, record));
    }
    written
}

/// What a failover cost: operations that failed, and the time until one succeeded again.
struct Recovery {
    failed: usize,
    took: Duration,
}

/// Repeats a write then a read of `id` every 20 ms from the failover on, until both succeed;
/// counts the operations that failed (each a 503 through the middleware).
async fn until_recovered(store: &RedisStore, id: &SessionId) -> Recovery {
    let start = Instant::now();
    let mut failed = 0;
    let mut n = 0u32;
    loop {
        n += 1;
        let record = format!("after {n}").into_bytes();
        let op_start = Instant::now();
        let ok = match store.save(id, &record, far()).await {
            Ok(()) => match store.load(id).await {
                Ok(loaded) => {
                    assert_eq!(loaded, Some(record), "the write just made");
                    true
                }
                Err(e) => {
                    assert!(is_redis_backend(&e), "{e:?}");
                    false
                }
            },
            Err(e) => {
                assert!(is_redis_backend(&e), "{e:?}");
                false
            }
        };
        assert!(
            op_start.elapsed() < TIMEOUT * 2 + Duration::from_millis(300),
            "each operation is bounded by the timeout: {:?}",
            op_start.elapsed()
        );
        if ok {
            return Recovery {
                failed,
                took: start.elapsed(),
            };
        }
        failed += 1;
        assert!(
            start.elapsed() < RECOVERY_LIMIT,
            "still failing {RECOVERY_LIMIT:?} after the failover ({failed} failed)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the failover: every session written before it is there, and sessions work
/// (update, delete).
async fn sessions_survived(store: &RedisStore, written: &[(SessionId, Vec<u8>)]) {
    for (id, record) in written {
        assert_eq!(
            store.load(id).await.unwrap().as_deref(),
            Some(&record[..]),
            "a replicated session survives the failover"
        );
    }
    let (id, record) = &written[0];
    assert_eq!(
        store.update(id, record, b"changed", far()).await.unwrap(),
        Update::Written,
        "the compare-and-set script runs on the new master"
    );
    store.delete(id).await.unwrap();
    assert_eq!(store.load(id).await.unwrap(), None);
}

/// `wait_for_replicas` asking for more replicas than there are: the write fails (after
/// being made), naming the shortfall.
async fn too_many_replicas_fail_the_write(store: &RedisStore) {
    let id = SessionId::generate().unwrap();
    let err = store.save(&id, b"r", far()).await.unwrap_err();
    assert!(is_redis_backend(&err), "{err:?}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("only 1 of the 2 replicas"), "{source}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_conformance_lost_updates_and_failover() {
    let Some(mut cluster) = RedisCluster::start("cluster test") else {
        return;
    };
    let started = Instant::now();
    let store = RedisStore::cluster(cluster.urls())
        .key_prefix("test:cluster:")
        .timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    suites(&store).await;
    // The device registry on the same cluster: each subject's keys share a hash tag.
    let registry = sealed_session::devices::RedisRegistry::cluster(cluster.urls())
        .max_per_subject(4)
        .timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    common::registry_conformance::conformance(&registry, 4, 5).await;

    let replicated = RedisStore::cluster(cluster.urls())
        .key_prefix("test:cluster:")
        .timeout(TIMEOUT)
        .wait_for_replicas(1, Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    too_many_replicas_fail_the_write(
        &RedisStore::cluster(cluster.urls())
            .timeout(TIMEOUT)
            .wait_for_replicas(2, Duration::from_millis(50))
            .build()
            .await
            .unwrap(),
    )
    .await;
    let written = write_replicated(&replicated).await;

    // Kill the master of a written session's slot; its replica takes over. The probe, a
    // session of its own, lives on that master too.
    let victim = cluster.master_of(&store.key(&written[0].0));
    let probe = &loop {
        let id = SessionId::generate().unwrap();
        if cluster.master_of(&store.key(&id)) == victim {
            break id;
        }
    };
    cluster.kill(victim);
    let killed = Instant::now();
    let recovery = until_recovered(&store, probe).await;
    eprintln!(
        "cluster failover: {} failed operations, served again {:?} after the kill \
         (set-up and suites took {:?})",
        recovery.failed,
        recovery.took,
        killed - started
    );
    assert_ne!(
        cluster.master_of(&store.key(probe)),
        victim,
        "a replica was promoted"
    );
    // Bounded: the operations fit in the recovery time, each failing fast or at the timeout.
    assert!(recovery.failed <= 400, "{} failed", recovery.failed);
    sessions_survived(&store, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_conformance_lost_updates_and_failover() {
    let Some(mut setup) = RedisSentinels::start("sentinel test") else {
        return;
    };
    let started = Instant::now();
    let store = RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .key_prefix("test:sentinel:")
        .timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    suites(&store).await;

    let replicated = RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .key_prefix("test:sentinel:")
        .timeout(TIMEOUT)
        .wait_for_replicas(1, Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    too_many_replicas_fail_the_write(
        &RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
            .timeout(TIMEOUT)
            .wait_for_replicas(2, Duration::from_millis(50))
            .build()
            .await
            .unwrap(),
    )
    .await;
    let written = write_replicated(&replicated).await;
    assert_eq!(setup.named_master_port(), Some(setup.master_port()));

    setup.kill_master();
    let killed = Instant::now();
    let probe = &SessionId::generate().unwrap();
    let recovery = until_recovered(&store, probe).await;
    eprintln!(
        "sentinel failover: {} failed operations, served again {:?} after the kill \
         (set-up and suites took {:?})",
        recovery.failed,
        recovery.took,
        killed - started
    );
    assert_eq!(
        setup.named_master_port(),
        Some(setup.replica_port()),
        "the replica was promoted"
    );
    assert!(recovery.failed <= 400, "{} failed", recovery.failed);
    sessions_survived(&store, &written).await;
    // The other store (its connection was to the old master too) follows as well.
    sessions_survived_without_writes(&replicated, &written[2..]).await;
}

/// Loads each session through `store` (after its own first failures, if any).
async fn sessions_survived_without_writes(store: &RedisStore, written: &[(SessionId, Vec<u8>)]) {
    let start = Instant::now();
    for (id, record) in written {
        let loaded = loop {
            match store.load(id).await {
                Ok(loaded) => break loaded,
                Err(e) => {
                    assert!(is_redis_backend(&e), "{e:?}");
                    assert!(start.elapsed() < RECOVERY_LIMIT, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(loaded.as_deref(), Some(&record[..]));
    }
}

/// A password in a URL is never in an error.
#[tokio::test]
async fn errors_never_show_passwords() {
    let port = common::redis::free_port();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{port}/");
    for builder in [
        RedisStore::cluster([url.clone()]),
        RedisStore::sentinel([url.clone()], MASTER_NAME),
        RedisStore::builder(url.clone()),
    ] {
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let start = Instant::now();
        let err = builder
            .timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(is_redis_backend(&err), "{err:?}");
        let mut chain = format!("{err:?}");
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            chain.push_str(&format!(" / {e}"));
            source = e.source();
        }
        assert!(!chain.contains("hunter2"), "{chain}");
    }
}

/// A master and replica that require a password: without `sentinel_master_auth` the store
/// does not start (a typed error that names no password); with it, the conformance suite
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_with_a_password() {
    const PASSWORD: &str = "store-sentinel-secret";
    let Some(setup) = RedisSentinels::start_with_password("sentinel master password", PASSWORD)
    else {
        return;
    };
    let refused = RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .timeout(TIMEOUT)
        .build()
        .await
        .expect_err("no password: refused");
    assert!(is_redis_backend(&refused), "{refused}");
    let builder = RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .sentinel_master_auth(None, PASSWORD)
        .timeout(TIMEOUT);
    assert!(!format!("{builder:?}").contains(PASSWORD));
    let store = builder.build().await.expect("with the password");
    conformance(&store, Expiry::Real).await;
    let err = RedisStore::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .sentinel_master_auth(None, "wrong-password")
        .timeout(TIMEOUT)
        .build()
        .await
        .expect_err("a wrong password: refused");
    assert!(!format!("{err} {err:?}").contains("wrong-password"));
}
