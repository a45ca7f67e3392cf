//! The Redis denylist against a real `redis-server` started on a free loopback port: two
//! instances sharing revocations, propagation time, outages, staleness and resynchronisation.
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
use std::time::{Duration, Instant};

use common::denylist::{degraded, healthy, raw, wait_until};
use common::fixtures::clock;
use common::redis::{Proxy, RedisServer};
use sealed_session::denylist::{
    Check, Denylist, DenylistError, Health, RedisDenylist, RedisDenylistBuilder, RevokedBy,
    StartMode,
};
use sealed_session::{Clock, SessionId, SystemClock};

fn id(n: u32) -> SessionId {
    let mut b = [0x3c; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SessionId::from_bytes(b)
}

/// Short intervals so outage tests run in well under a second of waiting.
fn fast(url: &str, clock: Arc<dyn Clock>) -> RedisDenylistBuilder {
    RedisDenylist::builder(url)
        .key_prefix("test:deny:")
        .clock(clock)
        .heartbeat(Duration::from_millis(50))
        .stale_after(Duration::from_secs(10))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .resync_every(Duration::from_secs(3600))
}

/// Shows the denylist's state-change log lines with `--nocapture`.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("sealed_session=info")
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_propagate_to_a_second_instance() {
    let Some(server) = RedisServer::start("revocations_propagate_to_a_second_instance") else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = fast(&server.url(), clock.clone()).build().await.unwrap();
    let b = fast(&server.url(), clock.clone()).build().await.unwrap();
    assert!(healthy(&a) && healthy(&b));

    // A session id revoked on A: the time until B's local check refuses it, measured from
    // the start of A's `revoke` call, polling B every millisecond.
    let mut samples = Vec::new();
    for n in 0..30u32 {
        let issued = clock.now();
        let until = issued.saturating_add(Duration::from_secs(3600));
        assert_eq!(b.check(&id(n), None, issued), Check::Allowed);
        let start = Instant::now();
        a.revoke(id(n), until).await.unwrap();
        assert!(
            a.check(&id(n), None, issued).is_revoked(),
            "A refuses at once"
        );
        wait_until("B to refuse the revoked id", Duration::from_secs(5), || {
            b.check(&id(n), None, issued).is_revoked()
        })
        .await;
        samples.push(start.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    eprintln!(
        "PROPAGATION (revoke on A -> refused by B, {} samples, 1 ms polling): median {median:?}, max {max:?}",
        samples.len()
    );
    assert!(
        median < Duration::from_millis(100),
        "median {median:?} over the 100 ms target"
    );

    // Per-subject revocation: sessions of "alice" issued before now are refused on B.
    let issued = clock.now();
    let before = issued.saturating_add(Duration::from_millis(1));
    a.revoke_subject("alice", before).await.unwrap();
    let took = wait_until(
        "B to refuse alice's older session",
        Duration::from_secs(5),
        || b.check(&id(100), Some("alice"), issued) == Check::Revoked(RevokedBy::Subject),
    )
    .await;
    eprintln!("PROPAGATION (subject revocation A -> B): {took:?}");
    assert_eq!(b.check(&id(100), Some("alice"), before), Check::Allowed);
    assert_eq!(b.check(&id(100), Some("bob"), issued), Check::Allowed);
    assert_eq!(b.status().revoked_subjects, 1);
    assert_eq!(b.status().revoked_sessions, 30);

    // A third instance started now loads everything from Redis.
    let c = fast(&server.url(), clock.clone()).build().await.unwrap();
    assert!(c.check(&id(7), None, issued).is_revoked());
    assert!(c.check(&id(100), Some("alice"), issued).is_revoked());
}

/// Many logouts at once on one instance: every revocation must be recorded. Redis before 7.2
/// puts the push message of a `PUBLISH` to a channel the same connection is subscribed to
/// inside the `EXEC` reply (redis/redis#12326), which desynchronised the replies of
/// concurrent revocations: most failed, so their logouts were answered 503. Found by the
/// soak test (`tests/soak`) against Debian's Redis 7.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_are_all_recorded() {
    let Some(server) = RedisServer::start("concurrent_revocations_are_all_recorded") else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = Arc::new(fast(&server.url(), clock.clone()).build().await.unwrap());
    let b = fast(&server.url(), clock.clone()).build().await.unwrap();
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200u32 {
        let a1 = a.clone();
        tasks.spawn(async move { a1.revoke(id(n), until).await });
        let a2 = a.clone();
        let subject = format!("user-{n}");
        tasks.spawn(async move { a2.revoke_subject(&subject, until).await });
    }
    let mut failed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            failed.push(format!("{e}: {:?}", std::error::Error::source(&e)));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 400 concurrent revocations failed, e.g. {}",
        failed.len(),
        failed[0]
    );
    wait_until(
        "B to hear of every revocation",
        Duration::from_secs(5),
        || {
            let s = b.status();
            s.revoked_sessions == 200 && s.revoked_subjects == 200
        },
    )
    .await;
    // The connection is still in step: a later revocation and a heartbeat work.
    a.revoke(id(1000), until).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(healthy(&*a) && healthy(&b));
    assert_eq!(
        redis::cmd("ZCARD")
            .arg("test:deny:ids")
            .query_async::<u64>(&mut raw(&server.url()).await)
            .await
            .unwrap(),
        201
    );
}

/// An error inside the revocation's transaction (here: the key holds another type) is an
/// error of the call, not a logout reported as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_redis_refuses_is_an_error() {
    let Some(server) = RedisServer::start("a_revocation_redis_refuses_is_an_error") else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = fast(&server.url(), clock.clone()).build().await.unwrap();
    let until = clock.now().saturating_add(Duration::from_secs(3600));
    a.revoke(id(1), until).await.unwrap();
    let mut conn = raw(&server.url()).await;
    redis::cmd("SET")
        .arg("test:deny:ids")
        .arg("not a sorted set")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let e = a.revoke(id(2), until).await.unwrap_err();
    assert!(
        matches!(e, DenylistError::Backend { .. }),
        "unexpected error: {e}"
    );
    // The connection is still in step.
    redis::cmd("DEL")
        .arg("test:deny:ids")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    a.revoke(id(3), until).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_replica_keeps_answering_revocations_fail_then_unavailable_then_resync() {
    logs();
    let Some(mut server) = RedisServer::start("outage test") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let a = fast(&server.url(), dyn_clock.clone())
        .resync_every(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let b = fast(&server.url(), dyn_clock.clone())
        .resync_every(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    a.revoke(id(1), until).await.unwrap();
    wait_until("B to see id 1", Duration::from_secs(5), || {
        b.check(&id(1), None, issued).is_revoked()
    })
    .await;

    // Redis goes away.
    server.stop();
    wait_until("both to report the outage", Duration::from_secs(5), || {
        degraded(&a) && degraded(&b)
    })
    .await;
    // Checks keep working from the replica.
    assert!(b.check(&id(1), None, issued).is_revoked());
    assert_eq!(b.check(&id(2), None, issued), Check::Allowed);
    // A revocation cannot be recorded: it fails, and says so.
    let started = Instant::now();
    let err = a.revoke(id(3), until).await.unwrap_err();
    assert!(
        matches!(
            err,
            DenylistError::Backend {
                backend: "redis",
                ..
            } | DenylistError::Timeout { .. }
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed fast: {:?}",
        started.elapsed()
    );
    eprintln!(
        "revoke during outage: {err} (after {:?})",
        started.elapsed()
    );
    let err = a.revoke_subject("carol", issued).await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    // ... but this process refuses the session anyway.
    assert!(a.check(&id(3), None, issued).is_revoked());

    // Past the staleness bound the replica can no longer vouch for a session.
    clock.advance(Duration::from_secs(10) + Duration::from_millis(1));
    assert_eq!(b.check(&id(2), None, issued), Check::Unavailable);
    assert!(
        b.check(&id(1), None, issued).is_revoked(),
        "known revocations still refuse"
    );
    assert!(matches!(
        b.status().health,
        Health::Unavailable { stale_for: Some(s) } if s > Duration::from_secs(10)
    ));

    // Redis comes back (empty: the test server has no persistence). A revocation written
    // straight into Redis, with no announcement, reaches the replicas by resynchronisation.
    server.restart();
    let mut conn = raw(&server.url()).await;
    let _: () = redis::cmd("ZADD")
        .arg("test:deny:ids")
        .arg(until.as_millis())
        .arg(id(4).to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("test:deny:subjects")
        .arg(clock.now().as_millis())
        .arg("dave")
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_until("both healthy again", Duration::from_secs(5), || {
        healthy(&a) && healthy(&b)
    })
    .await;
    wait_until("B to load the direct write", Duration::from_secs(5), || {
        b.check(&id(4), None, issued).is_revoked()
            && b.check(&id(5), Some("dave"), issued).is_revoked()
    })
    .await;
    assert_eq!(b.check(&id(2), None, issued), Check::Allowed);
    assert!(
        b.check(&id(1), None, issued).is_revoked(),
        "replica kept id 1"
    );
    // Revocations work again and propagate.
    a.revoke(id(6), until).await.unwrap();
    wait_until("B to see id 6", Duration::from_secs(5), || {
        b.check(&id(6), None, issued).is_revoked()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_missed_while_cut_off_heal_on_reconnect() {
    let Some(server) = RedisServer::start("cut-off test") else {
        return;
    };
    let clock = clock();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let proxy = Proxy::start(server.port()).await;
    let a = fast(&server.url(), dyn_clock.clone())
        .build()
        .await
        .unwrap();
    // B reaches Redis through a proxy; its periodic reload is an hour away, so only the
    // reload after reconnecting can bring it what it missed.
    let b = fast(&proxy.url(), dyn_clock.clone()).build().await.unwrap();
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));

    proxy.cut();
    wait_until("B to report the outage", Duration::from_secs(5), || {
        degraded(&b)
    })
    .await;
    assert!(healthy(&a), "A is unaffected");

    a.revoke(id(1), until).await.unwrap();
    a.revoke_subject("erin", issued.saturating_add(Duration::from_millis(1)))
        .await
        .unwrap();
    // Give a stray delivery every chance: B must not have it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        b.check(&id(1), None, issued),
        Check::Allowed,
        "B was cut off"
    );
    assert_eq!(b.check(&id(2), Some("erin"), issued), Check::Allowed);

    proxy.restore().await;
    let took = wait_until("B to resynchronise", Duration::from_secs(5), || {
        // The entries arrive during the load; the replica counts as current at its end.
        b.check(&id(1), None, issued).is_revoked()
            && b.check(&id(2), Some("erin"), issued).is_revoked()
            && healthy(&b)
    })
    .await;
    eprintln!("resynchronised {took:?} after the proxy was restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_modes() {
    let Some(mut server) = RedisServer::start("start modes") else {
        return;
    };
    let url = server.url();
    server.stop();
    let clock: Arc<dyn Clock> = Arc::new(clock());

    // Default: refuse to start.
    let err = fast(&url, clock.clone()).build().await.unwrap_err();
    assert!(
        matches!(
            err,
            DenylistError::Backend { .. } | DenylistError::Timeout { .. }
        ),
        "{err:?}"
    );
    eprintln!("start without Redis: {err}");

    // Or start, answer Unavailable until loaded, and keep retrying.
    let d = fast(&url, clock.clone())
        .start_mode(StartMode::RetryInBackground)
        .build()
        .await
        .unwrap();
    let issued = clock.now();
    assert_eq!(d.status().health, Health::Unavailable { stale_for: None });
    assert_eq!(d.check(&id(1), None, issued), Check::Unavailable);
    assert!(
        d.revoke(id(1), issued.saturating_add(Duration::from_secs(60)))
            .await
            .is_err()
    );
    assert!(
        d.check(&id(1), None, issued).is_revoked(),
        "refused locally even so"
    );

    server.restart();
    wait_until("the late start to connect", Duration::from_secs(5), || {
        healthy(&d)
    })
    .await;
    assert_eq!(d.check(&id(2), None, issued), Check::Allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_denylist_closes_its_connection() {
    let Some(server) = RedisServer::start("drop test") else {
        return;
    };
    let mut conn = raw(&server.url()).await;
    let mut clients = async || -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        list.lines().count()
    };
    let base = clients().await;
    let d = fast(&server.url(), Arc::new(SystemClock))
        .build()
        .await
        .unwrap();
    assert_eq!(clients().await, base + 1);
    drop(d);
    let start = Instant::now();
    while clients().await != base {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "connection still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_staleness_bound_within_two_heartbeats_is_refused() {
    let err = RedisDenylist::builder("redis://127.0.0.1:1/")
        .heartbeat(Duration::from_secs(1))
        .stale_after(Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, DenylistError::StaleBoundTooShort { .. }),
        "{err:?}"
    );
}

/// The bound: anonymous revocations that fill one instance's replica raise the anonymous
/// cut-off, which reaches every instance (and one started later) through Redis, and Redis
/// keeps no entry the cut-off covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_shares_its_anonymous_cutoff() {
    use sealed_session::denylist::Revocation;
    let Some(server) = RedisServer::start("a_full_replica_shares_its_anonymous_cutoff") else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = fast(&server.url(), clock.clone())
        .max_revoked_sessions(3)
        .build()
        .await
        .unwrap();
    let b = fast(&server.url(), clock.clone()).build().await.unwrap();
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600));
    for n in 0..3u32 {
        a.revoke_session(&Revocation::new(id(n), until, issued, None))
            .await
            .unwrap();
    }
    wait_until("B to hold the three", Duration::from_secs(5), || {
        b.status().revoked_sessions == 3
    })
    .await;
    let mut conn = raw(&server.url()).await;
    let held: usize = redis::cmd("ZCARD")
        .arg("test:deny:anonymous")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, 3);
    tokio::time::sleep(Duration::from_millis(2)).await;
    // The fourth finds A full: the cut-off rises past every anonymous session issued so far.
    a.revoke_session(&Revocation::new(id(3), until, clock.now(), None))
        .await
        .unwrap();
    assert_eq!(a.status().overflows, 1);
    assert_eq!(a.status().revoked_sessions, 0);
    let never_revoked = id(99);
    // B raises its cut-off first and drops the entries it covers right after (they are
    // refused either way in between): wait for both.
    wait_until("B to apply the cut-off", Duration::from_secs(5), || {
        b.check(&never_revoked, None, issued) == Check::Revoked(RevokedBy::Cutoff)
            && b.status().revoked_sessions == 0
    })
    .await;
    assert_eq!(b.status().revoked_sessions, 0, "B dropped what it covers");
    assert!(b.check(&never_revoked, Some("alice"), issued).is_allowed());
    let held: usize = redis::cmd("ZCARD")
        .arg("test:deny:anonymous")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, 0, "Redis keeps no covered entry");
    // An instance started later knows the cut-off.
    let c = fast(&server.url(), clock.clone()).build().await.unwrap();
    assert_eq!(
        c.check(&id(2), None, issued),
        Check::Revoked(RevokedBy::Cutoff)
    );
    let later = clock.now().saturating_add(Duration::from_millis(5));
    assert!(c.check(&never_revoked, None, later).is_allowed());
}

/// A replica whose background task stopped (its runtime dropped, so nothing marks it
/// disconnected) fails closed by time: past the staleness bound checks answer Unavailable.
#[test]
fn a_replica_whose_task_stopped_fails_closed_by_time() {
    let Some(server) = RedisServer::start("a_replica_whose_task_stopped_fails_closed_by_time")
    else {
        return;
    };
    let clock = clock();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let denylist = runtime
        .block_on(fast(&server.url(), shared).build())
        .unwrap();
    assert!(denylist.check(&id(1), None, clock.now()).is_allowed());
    // The runtime goes, and the task with it: no heartbeat, no disconnection notice.
    runtime.shutdown_background();
    clock.advance(Duration::from_secs(9));
    assert!(denylist.check(&id(1), None, clock.now()).is_allowed());
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        denylist.check(&id(1), None, clock.now()),
        Check::Unavailable
    );
    let now = clock.now();
    assert_eq!(
        denylist.check_at(&id(1), None, now, now),
        Check::Unavailable
    );
}

/// What a client that can write to Redis puts on the revocation channel, or in the sets, is
/// parsed strictly: unreadable messages and members are ignored, never a panic, and the
/// replica goes on applying the readable ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_messages_and_members_are_ignored() {
    let Some(server) = RedisServer::start("unreadable_messages_and_members_are_ignored") else {
        return;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let d = fast(&server.url(), clock.clone()).build().await.unwrap();
    let mut conn = raw(&server.url()).await;
    let issued = clock.now();
    let until = issued.saturating_add(Duration::from_secs(3600)).as_millis();
    let long_subject = "x".repeat(5000);
    let junk = [
        "".to_owned(),
        "a".to_owned(),
        "a notanid 1 2".to_owned(),
        format!("a {} {until}", id(1)),
        format!("a {} {until} notatime", id(1)),
        format!("a {} -5 {until}", id(1)),
        format!("r {} 99999999999999999999999", id(2)),
        format!("s {until} {long_subject}"),
        "s notatime alice".to_owned(),
        "z 1 2".to_owned(),
    ];
    for message in &junk {
        let () = redis::cmd("PUBLISH")
            .arg("test:deny:events")
            .arg(message)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let () = redis::cmd("PUBLISH")
        .arg("test:deny:events")
        .arg(&[0xffu8, 0xfe, b' ', b'1'][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    // Unreadable members in the sets a resynchronisation loads.
    let () = redis::cmd("ZADD")
        .arg("test:deny:anonymous")
        .arg(issued.as_millis())
        .arg("notanid 1")
        .arg(issued.as_millis())
        .arg(format!("{} notatime", id(3)))
        .query_async(&mut conn)
        .await
        .unwrap();
    // A readable message after them is applied.
    let () = redis::cmd("PUBLISH")
        .arg("test:deny:events")
        .arg(format!("a {} {until} {}", id(4), issued.as_millis()))
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_until(
        "the readable message to apply",
        Duration::from_secs(5),
        || d.check(&id(4), None, issued).is_revoked(),
    )
    .await;
    for n in 1..=3 {
        assert!(d.check(&id(n), None, issued).is_allowed(), "id {n}");
    }
    assert!(d.check(&id(5), Some("alice"), issued).is_allowed());
    assert_eq!(d.status().revoked_sessions, 1);
    // A later instance loads the sets, unreadable members included, and agrees.
    let e = fast(&server.url(), clock.clone()).build().await.unwrap();
    assert!(e.check(&id(3), None, issued).is_allowed());
    assert!(healthy(&d) && healthy(&e));
}
