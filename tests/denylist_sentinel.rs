//! The Redis denylist on a real Sentinel setup (1 master, 1 replica, 3 Sentinels): the
//! master is killed with SIGKILL and its replica promoted; every revocation reported as
//! recorded before (each waited for the replica) survives, running instances reconnect to
//! the new master and resynchronise, and an instance started afterwards loads them all.
//!
//! Without `redis-server` and `redis-cli` on PATH the test prints `SKIPPED: ...` and
//! passes, except under `CI=true`, where it fails.

#![cfg(feature = "redis")]

mod common {
    pub mod denylist;
    pub mod redis;
    pub mod redis_topology;
}

use std::time::{Duration, Instant};

use common::denylist::{healthy, wait_until};
use common::redis_topology::{MASTER_NAME, RedisSentinels};
use sealed_session::denylist::{Denylist, Health, RedisDenylist, RedisDenylistBuilder};
use sealed_session::{Clock, SessionId, Timestamp};

/// Revocations recorded before the failover.
const BEFORE: u32 = 30;

/// How long the failover and the reconnections may take before the test fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

fn id(n: u32) -> SessionId {
    let mut b = [0x3c; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SessionId::from_bytes(b)
}

/// Short intervals, on the Sentinels of `setup`.
fn fast(setup: &RedisSentinels) -> RedisDenylistBuilder {
    RedisDenylist::sentinel(setup.sentinel_urls(), MASTER_NAME)
        .key_prefix("test:sentinel:")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_recorded_before_a_failover_survive_it_and_instances_follow_the_new_master() {
    let Some(mut setup) = RedisSentinels::start("the denylist's Sentinel failover test") else {
        return;
    };
    let a = fast(&setup).build().await.unwrap();
    let b = fast(&setup).build().await.unwrap();
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
    assert_eq!(setup.named_master_port(), Some(setup.master_port()));

    setup.kill_master();
    let killed = Instant::now();
    // Revocations during the failover window: each fails (the old master is gone, and the
    // promoted one has no replica to acknowledge them), but this process refuses them at
    // once and writes them to the new master when it resynchronises.
    let mut attempted = 0u32;
    let mut failed = 0u32;
    let window = 1000..;
    let mut next = window.start;
    let promoted = setup.replica_port();
    loop {
        assert!(
            killed.elapsed() < RECOVERY_LIMIT,
            "no recovery within {RECOVERY_LIMIT:?}: master named {:?}, A {:?}, B {:?}",
            setup.named_master_port(),
            a.status().health,
            b.status().health
        );
        if setup.named_master_port() == Some(promoted) && healthy(&a) && healthy(&b) {
            break;
        }
        attempted += 1;
        if a.revoke(id(next), until).await.is_err() {
            failed += 1;
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = killed.elapsed();
    eprintln!(
        "denylist sentinel failover: A and B healthy on the new master {recovered:?} after the kill; \
         {failed} of {attempted} revocations during the window failed"
    );
    assert_eq!(failed, attempted, "no replica could acknowledge them");

    // Nothing recorded before the failover was lost, on either running instance.
    assert!(refuses(&a, 1..=BEFORE, issued), "A forgot a revocation");
    assert!(refuses(&b, 1..=BEFORE, issued), "B forgot a revocation");
    assert!(refuses(&a, window.start..next, issued), "A refuses its own");
    // A wrote its failed revocations to the new master when it resynchronised; B got them.
    wait_until(
        "B to learn the revocations that failed during the window",
        Duration::from_secs(5),
        || refuses(&b, window.start..next, issued),
    )
    .await;

    // With a replica again, a revocation is recorded, and reaches B.
    setup.add_replica(promoted);
    let after = BEFORE + 1;
    a.revoke(id(after), until)
        .await
        .expect("a revocation after the failover, with a replica again");
    wait_until(
        "B to learn the revocation made after the failover",
        Duration::from_secs(5),
        || refuses(&b, [after], issued),
    )
    .await;

    // An instance started now loads everything from the new master. Right after a
    // failover a Sentinel may still answer that it knows no such master (the build then
    // fails, as documented): a deployment retries the start, and so does the test.
    let started = Instant::now();
    let c = loop {
        match fast(&setup).build().await {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                eprintln!("starting C: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("C could not start within 10 s of the failover: {e}"),
        }
    };
    assert!(refuses(&c, 1..=after, issued), "C misses a revocation");
    assert!(refuses(&c, window.start..next, issued));
    for d in [&a, &b, &c] {
        assert_eq!(d.status().health, Health::Healthy);
    }
}

#[tokio::test]
async fn without_a_reachable_sentinel_the_build_fails_or_retries() {
    // No Redis needed: nothing listens on these ports.
    let port = common::redis::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let builder = RedisDenylist::sentinel([url.clone()], MASTER_NAME)
        .timeout(Duration::from_millis(200))
        .stale_after(Duration::from_secs(10));
    assert!(format!("{builder:?}").contains("sentinel"));
    assert!(!format!("{builder:?}").contains(&url));
    assert!(builder.clone().build().await.is_err());
    let d = builder
        .start_mode(sealed_session::denylist::StartMode::RetryInBackground)
        .build()
        .await
        .unwrap();
    assert!(matches!(
        d.status().health,
        Health::Unavailable { stale_for: None }
    ));
    assert!(
        d.revoke(
            id(1),
            sealed_session::SystemClock
                .now()
                .saturating_add(Duration::from_secs(60))
        )
        .await
        .is_err()
    );
}

/// A master and replica that require a password: without `sentinel_master_auth` the
/// denylist does not start; with it, revocations are recorded and shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_with_a_password() {
    const PASSWORD: &str = "denylist-sentinel-secret";
    let Some(setup) = RedisSentinels::start_with_password("denylist master password", PASSWORD)
    else {
        return;
    };
    assert!(
        fast(&setup).build().await.is_err(),
        "no password: refused at start"
    );
    let a = fast(&setup)
        .sentinel_master_auth(None, PASSWORD)
        .build()
        .await
        .expect("with the password");
    let b = fast(&setup)
        .sentinel_master_auth(None, PASSWORD)
        .build()
        .await
        .expect("with the password");
    let issued = sealed_session::SystemClock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    a.revoke(id(1), until).await.expect("recorded");
    wait_until("B to see it", Duration::from_secs(5), || {
        refuses(&b, [1], issued)
    })
    .await;
}
