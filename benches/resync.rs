//! What a Redis denylist replica's resynchronisation costs at 1M revoked sessions: the whole
//! load (what every reconnection and every periodic resync did before the revocation log, and
//! what a replica still does at start or when the log no longer reaches back to it), against
//! the catch-up from the log after a reconnection that missed `MISSED` revocations.
//!
//! Usage: `cargo bench --bench resync --features redis` (needs `redis-server` on PATH; it
//! starts its own on a free loopback port). `RESYNC_ENTRIES` changes the size (default
//! 1,000,000). Prints, for each: the time until the replica is current again, the entries read,
//! and the CPU time Redis spent on the commands (`INFO commandstats`), which is what 1,000
//! replicas resynchronising multiply.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed_session::denylist::{Denylist, Health, RedisDenylist};
use sealed_session::{Clock, SessionId, SystemClock};

const MISSED: u32 = 100;

fn id(n: u32) -> SessionId {
    let mut b = [0x77; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    SessionId::from_bytes(b)
}

/// (calls, microseconds) of `command` from `INFO commandstats`.
async fn stats(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let prefix = format!("cmdstat_{command}:");
    let line = info.lines().find_map(|l| l.strip_prefix(&prefix));
    let field = |name: &str| {
        line.and_then(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
    };
    (field("calls"), field("usec"))
}

fn builder(url: &str) -> sealed_session::denylist::RedisDenylistBuilder {
    RedisDenylist::builder(url)
        .key_prefix("bench:resync:")
        .max_revoked_sessions(2_000_000)
        .heartbeat(Duration::from_millis(20))
        .backoff(Duration::from_millis(1), Duration::from_millis(10))
        .timeout(Duration::from_secs(10))
        .stale_after(Duration::from_secs(60))
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let entries: u32 = std::env::var("RESYNC_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let Ok(mut server) = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not found on PATH: nothing measured");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = loop {
        match client.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let until = SystemClock
        .now()
        .saturating_add(Duration::from_secs(3600))
        .as_millis();
    for start in (0..entries).step_by(10_000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg("bench:resync:ids");
        for n in start..(start + 10_000).min(entries) {
            cmd.arg(until).arg(id(n).to_string());
        }
        let () = cmd.query_async(&mut conn).await.expect("ZADD");
    }

    // The whole load: what a replica does at start.
    let before = stats(&mut conn, "zscan").await;
    let t = Instant::now();
    let replica = builder(&url).build().await.expect("the first load");
    let full = t.elapsed();
    let after = stats(&mut conn, "zscan").await;
    println!(
        "whole load of {entries} revoked ids: {full:.2?} until current; {} ZSCAN calls (every member, 1,000 a page); Redis CPU {:.1} ms",
        after.0 - before.0,
        (after.1 - before.1) as f64 / 1000.0
    );

    // A reconnection that missed MISSED revocations: the replica's connection is killed, the
    // other instance revokes, and the replica catches up when it reconnects.
    // The replica's connection: the one subscribed client before the other instance starts.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    let victim = list
        .lines()
        .find(|l| l.contains(" sub=1 "))
        .and_then(|l| l.split(' ').find_map(|kv| kv.strip_prefix("id=")))
        .map(str::to_owned)
        .expect("a subscribed client");
    let other = builder(&url).build().await.expect("a second instance");
    let replica: Arc<dyn Denylist> = Arc::new(replica);
    let scans = stats(&mut conn, "zscan").await;
    let ranges = stats(&mut conn, "xrange").await;
    let t = Instant::now();
    let () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&victim)
        .query_async(&mut conn)
        .await
        .map(|_: i64| ())
        .expect("CLIENT KILL");
    for n in 0..MISSED {
        other
            .revoke(
                id(entries + n),
                sealed_session::Timestamp::from_millis(until),
            )
            .await
            .expect("revoke");
    }
    // Current again: every missed revocation known, and Redis saw a resynchronisation
    // (a catch-up's XRANGE or a whole load's ZSCAN) after the kill.
    let now = SystemClock.now();
    loop {
        let all = (0..MISSED).all(|n| replica.check(&id(entries + n), None, now).is_revoked());
        let resynced = stats(&mut conn, "xrange").await.0 > ranges.0
            || stats(&mut conn, "zscan").await.0 > scans.0;
        if all && resynced && replica.status().health == Health::Healthy {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no catch-up");
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let caught_up = t.elapsed();
    let scans_after = stats(&mut conn, "zscan").await;
    let ranges_after = stats(&mut conn, "xrange").await;
    println!(
        "catch-up after {MISSED} missed revocations at {entries}: {caught_up:.2?} from the kill until current (the other instance's {MISSED} revocations, the loss noticed at the next 20 ms heartbeat, the reconnection and the catch-up); {} ZSCAN and {} XRANGE calls; Redis CPU {:.2} ms",
        scans_after.0 - scans.0,
        ranges_after.0 - ranges.0,
        ((scans_after.1 - scans.1) + (ranges_after.1 - ranges.1)) as f64 / 1000.0
    );
    let _ = server.kill();
    let _ = server.wait();
}
