//! What the Redis denylist's tests share: waiting for a condition, a raw connection to the
//! test server, and the replica's health.
//!
//! Use from a test file with `mod common { pub mod denylist; }`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use sealed_session::denylist::{Denylist, Health};

/// Polls `f` every millisecond until it holds, and returns how long that took; panics
/// naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A plain connection to the Redis at `url`, for writing into it behind the denylist's back.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub fn healthy(d: &dyn Denylist) -> bool {
    d.status().health == Health::Healthy
}

pub fn degraded(d: &dyn Denylist) -> bool {
    matches!(d.status().health, Health::Degraded { .. })
}
