//! The per-request denylist check, with 0, 10 thousand and 1 million revoked sessions, for
//! sessions that are revoked (hits) and sessions that are not (misses), through
//! `Arc<dyn Denylist>::check_at` as the middleware calls it (with the request's time).
//!
//! Each iteration checks the next id of a large pool, so look-ups land on cold cache lines as
//! they would for real traffic rather than re-reading one hot entry.
//!
//! Run: `cargo bench --bench denylist` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sealed_session::denylist::{Check, Denylist, MemoryDenylist};
use sealed_session::{SessionId, SystemClock, Timestamp};

/// Deterministic pseudo-random ids (splitmix64), distinct for distinct `seed`/`i`.
fn id(seed: u64, i: u64) -> SessionId {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let mut next = || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&next().to_le_bytes());
    b[8..].copy_from_slice(&next().to_le_bytes());
    SessionId::from_bytes(b)
}

const POOL: u64 = 1 << 16;

fn check(c: &mut Criterion) {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let until = now.saturating_add(Duration::from_secs(3600));
    let mut group = c.benchmark_group("denylist_check");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    for n in [0u64, 10_000, 1_000_000] {
        let memory = MemoryDenylist::with_clock(SystemClock);
        for i in 0..n {
            memory.insert(id(1, i), until);
        }
        let denylist: Arc<dyn Denylist> = Arc::new(memory);

        // Misses: ids never revoked.
        let misses: Vec<SessionId> = (0..POOL).map(|i| id(2, i)).collect();
        let mut k = 0usize;
        group.bench_function(BenchmarkId::new("miss", n), |b| {
            b.iter(|| {
                k = (k + 1) & (misses.len() - 1);
                let r = denylist.check_at(black_box(&misses[k]), None, now, now);
                debug_assert_eq!(r, Check::Allowed);
                r
            })
        });

        // Misses of a session with a subject, while some subjects are revoked.
        if n > 0 {
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new("miss_with_subject", n), |b| {
                b.iter(|| {
                    k = (k + 1) & (misses.len() - 1);
                    denylist.check_at(black_box(&misses[k]), Some("user-123456"), now, now)
                })
            });
        }

        // Hits: ids revoked, spread over the whole table.
        if n > 0 {
            // A power of two no larger than `n`, spread over the whole table.
            let pool = POOL.min(1 << n.ilog2());
            let stride = n / pool;
            let hits: Vec<SessionId> = (0..pool).map(|i| id(1, i * stride)).collect();
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new("hit", n), |b| {
                b.iter(|| {
                    k = (k + 1) & (hits.len() - 1);
                    let r = denylist.check_at(black_box(&hits[k]), None, now, now);
                    debug_assert!(r.is_revoked());
                    r
                })
            });

            // Hits one after another over every revoked id (a pool as large as the table, so
            // the table cannot stay in the CPU caches), each id chosen from the previous
            // answer so that the CPU cannot overlap one look-up's cache miss with the next:
            // the latency of a lone check on a cold table, as a single request sees it.
            let all: Vec<SessionId> = (0..n).map(|i| id(1, i)).collect();
            let mut k = 0usize;
            group.bench_function(BenchmarkId::new("hit_cold_latency", n), |b| {
                b.iter(|| {
                    let r = denylist.check_at(black_box(&all[k]), None, now, now);
                    k = (k + 1 + usize::from(r.is_allowed())) % all.len();
                    r
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
