//! The Redis denylist's catch-up, against a real `redis-server`: a replica that missed
//! messages reads the revocation log from where it left off instead of re-loading the whole
//! denylist, and re-loads it whole only when the log no longer reaches back that far (trimmed,
//! or Redis lost its data). Which one happened is read off Redis's own command counters
//! (`INFO commandstats`): `ZSCAN` is the whole load, `XRANGE` the catch-up.
//!
//! Without `redis-server` on PATH each test prints `SKIPPED: ...` and passes, except under
//! `CI=true`, where it fails.

#![cfg(feature = "redis")]

mod common {
    pub mod denylist;
    pub mod fixtures;
    pub mod redis;
}

use std::sync::Arc;
use std::time::Duration;

use common::denylist::{degraded, healthy, raw, wait_until};
use common::fixtures::clock;
use common::redis::{Proxy, RedisServer};
use sealed_session::denylist::{Check, Denylist as _, RedisDenylist, RedisDenylistBuilder};
use sealed_session::{Clock, SessionId};

fn id(n: u32) -> SessionId {
    let mut b = [0x5a; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SessionId::from_bytes(b)
}

/// Short intervals; the periodic catch-up an hour away, so only a reconnection starts one.
fn fast(url: &str, clock: Arc<dyn Clock>) -> RedisDenylistBuilder {
    RedisDenylist::builder(url)
        .key_prefix("test:catch:")
        .clock(clock)
        .heartbeat(Duration::from_millis(50))
        .stale_after(Duration::from_secs(10))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .resync_every(Duration::from_secs(3600))
}

/// How many times Redis has run `command` (lower case), from `INFO commandstats`.
async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// `n` revoked ids written straight into the set, as a large denylist.
async fn fill(conn: &mut redis::aio::MultiplexedConnection, n: u32, until: u64) {
    let mut cmd = redis::cmd("ZADD");
    cmd.arg("test:catch:ids");
    for i in 0..n {
        cmd.arg(until).arg(id(1_000_000 + i).to_string());
    }
    let () = cmd.query_async(conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_replica_reads_what_it_missed_from_the_log_not_the_whole_denylist() {
    let Some(server) = RedisServer::start("catch-up from the log") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    let mut conn = raw(&server.url()).await;
    fill(&mut conn, 5_000, until.as_millis()).await;
    let proxy = Proxy::start(server.port()).await;
    let a = fast(&server.url(), dyn_clock.clone())
        .build()
        .await
        .unwrap();
    let b = fast(&proxy.url(), dyn_clock.clone()).build().await.unwrap();
    assert!(b.check(&id(1_000_007), None, issued).is_revoked(), "loaded");
    let scans = calls(&mut conn, "zscan").await;
    let ranges = calls(&mut conn, "xrange").await;

    proxy.cut();
    wait_until("B to report the outage", Duration::from_secs(5), || {
        degraded(&b)
    })
    .await;
    for n in 1..=3 {
        a.revoke(id(n), until).await.unwrap();
    }
    a.revoke_subject("erin", issued.saturating_add(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.check(&id(1), None, issued),
        Check::Allowed,
        "B was cut off"
    );

    proxy.restore().await;
    wait_until("B to catch up", Duration::from_secs(5), || {
        (1..=3).all(|n| b.check(&id(n), None, issued).is_revoked())
            && b.check(&id(9), Some("erin"), issued).is_revoked()
            && healthy(&b)
    })
    .await;
    assert_eq!(
        calls(&mut conn, "zscan").await,
        scans,
        "no whole load: the 5,000 ids were not read again"
    );
    assert!(calls(&mut conn, "xrange").await > ranges, "read the log");
    assert!(b.check(&id(1_000_007), None, issued).is_revoked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_log_no_longer_reaches_reloads_the_whole_denylist() {
    let Some(server) = RedisServer::start("catch-up past the log") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    let mut conn = raw(&server.url()).await;
    // Small stream nodes, so that `XADD ... MAXLEN ~ 10` trims after a few dozen entries.
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(5)
        .query_async(&mut conn)
        .await
        .unwrap();
    let proxy = Proxy::start(server.port()).await;
    let a = fast(&server.url(), dyn_clock.clone())
        .log_len(10)
        .build()
        .await
        .unwrap();
    let b = fast(&proxy.url(), dyn_clock.clone())
        .log_len(10)
        .build()
        .await
        .unwrap();
    let scans = calls(&mut conn, "zscan").await;

    proxy.cut();
    wait_until("B to report the outage", Duration::from_secs(5), || {
        degraded(&b)
    })
    .await;
    for n in 1..=60 {
        a.revoke(id(n), until).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN")
        .arg("test:catch:log")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(len < 60, "the log was trimmed to about 10 entries: {len}");

    proxy.restore().await;
    wait_until("B to reload", Duration::from_secs(5), || {
        (1..=60).all(|n| b.check(&id(n), None, issued).is_revoked()) && healthy(&b)
    })
    .await;
    assert!(
        calls(&mut conn, "zscan").await > scans,
        "the whole denylist was loaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_data_a_replica_reloads_the_whole_denylist() {
    let Some(mut server) = RedisServer::start("catch-up after data loss") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    let proxy = Proxy::start(server.port()).await;
    let b = fast(&proxy.url(), dyn_clock.clone()).build().await.unwrap();
    // Redis comes back empty (no persistence); an entry appears in the set without a log
    // entry (as an instance of an older version, which kept no log, would write it), while
    // B is still cut off, so that its reconnection finds it.
    proxy.cut();
    wait_until("B to report the outage", Duration::from_secs(5), || {
        degraded(&b)
    })
    .await;
    server.restart();
    let mut conn = raw(&server.url()).await;
    let () = redis::cmd("ZADD")
        .arg("test:catch:ids")
        .arg(until.as_millis())
        .arg(id(4).to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    proxy.restore().await;
    wait_until("B to reload", Duration::from_secs(5), || {
        b.check(&id(4), None, issued).is_revoked() && healthy(&b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_reload_every_a_replica_loads_the_whole_denylist_again() {
    let Some(server) = RedisServer::start("whole reload past reload_every") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(7 * 3600));
    let proxy = Proxy::start(server.port()).await;
    let b = fast(&proxy.url(), dyn_clock.clone())
        .reload_every(Duration::from_secs(6 * 3600))
        .build()
        .await
        .unwrap();
    let mut conn = raw(&server.url()).await;
    // A revocation with no log entry, made while B is cut off: a catch-up cannot see it.
    for (n, later) in [(1, Duration::ZERO), (2, Duration::from_secs(6 * 3600))] {
        clock.advance(later);
        // The next heartbeat confirms the replica at the new time.
        wait_until("B to be confirmed", Duration::from_secs(5), || healthy(&b)).await;
        let scans = calls(&mut conn, "zscan").await;
        proxy.cut();
        wait_until("B to report the outage", Duration::from_secs(5), || {
            degraded(&b)
        })
        .await;
        let () = redis::cmd("ZADD")
            .arg("test:catch:ids")
            .arg(until.as_millis())
            .arg(id(n).to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        proxy.restore().await;
        wait_until("B to resynchronise", Duration::from_secs(5), || healthy(&b)).await;
        let whole = calls(&mut conn, "zscan").await > scans;
        if n == 1 {
            assert!(!whole, "within reload_every: a catch-up");
            assert_eq!(
                b.check(&id(1), None, issued),
                Check::Allowed,
                "a catch-up reads the log only"
            );
        } else {
            assert!(whole, "past reload_every: a whole load");
            assert!(b.check(&id(1), None, issued).is_revoked());
            assert!(b.check(&id(2), None, issued).is_revoked());
        }
    }
}
