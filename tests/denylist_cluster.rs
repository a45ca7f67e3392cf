//! The Redis denylist on a real Redis Cluster (3 masters, 3 replicas, `cluster-node-timeout`
//! 1 s): its keys share one hash slot; the master of that slot is killed with SIGKILL and
//! its replica promoted, or hands over to it by a manual failover. Every revocation reported
//! as recorded before survives, running instances find the new master and resynchronise,
//! and an instance started afterwards loads them all.
//!
//! Without `redis-server` and `redis-cli` on PATH the tests print `SKIPPED: ...` and pass,
//! except under `CI=true`, where they fail.

#![cfg(feature = "redis")]

mod common {
    pub mod denylist;
    pub mod redis;
    pub mod redis_topology;
}

use std::time::{Duration, Instant};

use common::denylist::{healthy, wait_until};
use common::redis_topology::RedisCluster;
use sealed_session::denylist::{Denylist, Health, RedisDenylist, RedisDenylistBuilder};
use sealed_session::{Clock, SessionId, Timestamp};

const PREFIX: &str = "test:cluster:";

/// The key of revoked ids, as the denylist names it in a cluster (the prefix made a tag).
const IDS_KEY: &str = "{test:cluster:}ids";

/// Revocations recorded before a failover.
const BEFORE: u32 = 30;

/// How long a failover and the reconnections may take before the test fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

fn id(n: u32) -> SessionId {
    let mut b = [0x5a; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SessionId::from_bytes(b)
}

/// Short intervals, on `cluster`.
fn fast(cluster: &RedisCluster) -> RedisDenylistBuilder {
    RedisDenylist::cluster(cluster.urls())
        .key_prefix(PREFIX)
        .heartbeat(Duration::from_millis(50))
        .stale_after(Duration::from_secs(10))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .resync_every(Duration::from_secs(3600))
}

fn refuses(d: &dyn Denylist, ids: impl IntoIterator<Item = u32>, issued: Timestamp) -> bool {
    ids.into_iter()
        .all(|n| d.check(&id(n), None, issued).is_revoked())
}

/// Every key of the denylist is in the slot of [`IDS_KEY`], on its master.
async fn keys_on_one_master(cluster: &RedisCluster) {
    let master = cluster.master_of(IDS_KEY);
    let url = format!("redis://127.0.0.1:{master}/");
    let mut conn = common::denylist::raw(&url).await;
    let mut found: Vec<String> = redis::cmd("KEYS")
        .arg("*test:cluster:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    found.sort();
    assert_eq!(found, ["{test:cluster:}ids", "{test:cluster:}log"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_the_kill_of_the_slot_master_and_instances_follow_its_successor() {
    let Some(mut cluster) = RedisCluster::start("the denylist's cluster failover test") else {
        return;
    };
    let a = fast(&cluster).build().await.unwrap();
    let b = fast(&cluster).build().await.unwrap();
    let issued = sealed_session::SystemClock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));

    for n in 1..=BEFORE {
        a.revoke(id(n), until)
            .await
            .unwrap_or_else(|e| panic!("revocation {n} before the failover: {e}"));
    }
    wait_until("B to learn the revocations", Duration::from_secs(5), || {
        refuses(&b, 1..=BEFORE, issued)
    })
    .await;
    keys_on_one_master(&cluster).await;

    let master = cluster.master_of(IDS_KEY);
    let replicas = cluster.replicas_of(master);
    assert_eq!(replicas.len(), 1, "the slot's master has one replica");
    cluster.kill(master);
    let killed = Instant::now();
    // Revocations during the failover: each fails (the master is gone, then the promoted
    // one has no replica to acknowledge them), but this process refuses them at once and
    // writes them to the new master when it resynchronises.
    let mut attempted = 0u32;
    let mut failed = 0u32;
    let window = 1000..;
    let mut next = window.start;
    loop {
        assert!(
            killed.elapsed() < RECOVERY_LIMIT,
            "no recovery within {RECOVERY_LIMIT:?}: A {:?}, B {:?}",
            a.status().health,
            b.status().health
        );
        if cluster.try_master_of(IDS_KEY) == Some(replicas[0]) && healthy(&a) && healthy(&b) {
            break;
        }
        attempted += 1;
        if a.revoke(id(next), until).await.is_err() {
            failed += 1;
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "denylist cluster failover: A and B healthy on the new master {:?} after the kill; \
         {failed} of {attempted} revocations during the window failed",
        killed.elapsed()
    );
    assert!(attempted > 0, "the failover window was observed");
    assert_eq!(failed, attempted, "no replica could acknowledge them");

    // (A and B learned 1..=BEFORE before the kill and never forget: C, below, shows what
    // the new master holds.)
    assert!(refuses(&a, window.start..next, issued), "A refuses its own");
    wait_until(
        "B to learn the revocations that failed during the window",
        Duration::from_secs(5),
        || refuses(&b, window.start..next, issued),
    )
    .await;

    // The old master comes back as a replica of its successor: revocations are recorded
    // again, and reach B.
    cluster.restart(master);
    let after = BEFORE + 1;
    a.revoke(id(after), until)
        .await
        .expect("a revocation with a replica again");
    wait_until("B to learn it", Duration::from_secs(5), || {
        refuses(&b, [after], issued)
    })
    .await;

    // An instance started now loads everything from the new master.
    let c = fast(&cluster).build().await.unwrap();
    assert!(refuses(&c, 1..=after, issued), "C misses a revocation");
    assert!(refuses(&c, window.start..next, issued));
    for d in [&a, &b, &c] {
        assert_eq!(d.status().health, Health::Healthy);
    }
}

/// A manual failover leaves the old master running, as a replica, and keeps the
/// denylist's connection to it open: the heartbeat (a command of the slot) is answered
/// `MOVED`, and the instances move to the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_is_followed_without_a_lost_connection() {
    let Some(cluster) = RedisCluster::start("the denylist's manual failover test") else {
        return;
    };
    let a = fast(&cluster).build().await.unwrap();
    let b = fast(&cluster).build().await.unwrap();
    let issued = sealed_session::SystemClock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    for n in 1..=BEFORE {
        a.revoke(id(n), until).await.unwrap();
    }

    let master = cluster.master_of(IDS_KEY);
    let replica = cluster.replicas_of(master)[0];
    cluster.manual_failover(replica);
    let moved = Instant::now();
    // A revocation is recorded on the new master within the recovery limit: the first
    // attempts may fail (`MOVED` from the old master sends A to the new one).
    let after = BEFORE + 1;
    loop {
        if a.revoke(id(after), until).await.is_ok() {
            break;
        }
        assert!(
            moved.elapsed() < RECOVERY_LIMIT,
            "no revocation recorded after the manual failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until("B to learn the revocation", RECOVERY_LIMIT, || {
        refuses(&b, [after], issued) && healthy(&b)
    })
    .await;
    // Every node learns the new master by gossip: the one asked may lag a moment.
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while cluster.try_master_of(IDS_KEY) != Some(replica) {
        assert!(
            Instant::now() < deadline,
            "the cluster does not name the promoted replica master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both instances now listen on the new master, none on the old: B, which wrote
    // nothing, was moved by its heartbeat (the cluster also forwards announcements to the
    // old master, so B learning the revocation does not show it).
    let subscribers = |port: u16| async move {
        let mut conn = common::denylist::raw(&format!("redis://127.0.0.1:{port}/")).await;
        let (_, n): (String, u32) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("{test:cluster:}events")
            .query_async(&mut conn)
            .await
            .unwrap();
        n
    };
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while (subscribers(replica).await, subscribers(master).await) != (2, 0) {
        assert!(
            Instant::now() < deadline,
            "subscribers on the new and the old master: {} and {}",
            subscribers(replica).await,
            subscribers(master).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The revocation is on the new master itself (not only on the old one's connection).
    let mut conn = common::denylist::raw(&format!("redis://127.0.0.1:{replica}/")).await;
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(IDS_KEY)
        .arg(id(after).to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(score.is_some(), "the revocation is on the new master");
    let c = fast(&cluster).build().await.unwrap();
    assert!(refuses(&c, 1..=after, issued), "C misses a revocation");
}

#[tokio::test]
async fn without_a_reachable_node_the_build_fails_or_retries() {
    // No Redis needed: nothing listens on these ports.
    let urls: Vec<String> = (0..2)
        .map(|_| format!("redis://127.0.0.1:{}/", common::redis::free_port()))
        .collect();
    let builder = RedisDenylist::cluster(urls.clone())
        .timeout(Duration::from_millis(200))
        .stale_after(Duration::from_secs(10));
    assert!(format!("{builder:?}").contains("cluster"));
    assert!(!format!("{builder:?}").contains(&urls[0]));
    assert!(builder.clone().build().await.is_err());
    let empty = RedisDenylist::cluster(Vec::<String>::new()).build().await;
    assert!(
        empty
            .as_ref()
            .is_err_and(|e| e.to_string().contains("Redis Cluster")),
        "{empty:?}"
    );
    let d = builder
        .start_mode(sealed_session::denylist::StartMode::RetryInBackground)
        .build()
        .await
        .unwrap();
    assert!(matches!(
        d.status().health,
        Health::Unavailable { stale_for: None }
    ));
    let until = sealed_session::SystemClock
        .now()
        .saturating_add(Duration::from_secs(60));
    assert!(d.revoke(id(1), until).await.is_err());
}
