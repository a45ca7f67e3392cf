//! The load and soak test: thousands of concurrent clients against two real server processes
//! (instances A and B, one key ring, one Redis denylist) on loopback only, while the keys are
//! rotated twice by rolling restarts and Redis is killed and restarted. It counts valid
//! sessions lost, invalid sessions accepted, panics, errors by kind, and server memory at
//! start and end, prints a report and fails when a target is missed.
//!
//! Short form, part of `cargo test --all-features` (so of `.ci/run`): 2000 clients for 20 s.
//! Long form, the same test with other numbers:
//!
//! ```sh
//! SOAK_SECS=600 SOAK_CLIENTS=5000 cargo test --release --all-features --test soak -- --nocapture
//! ```
//!
//! Settings (environment): `SOAK_SECS` (load duration, 20), `SOAK_CLIENTS` (2000),
//! `SOAK_THINK_MS` (longest pause between a client's requests, 20), `SOAK_IN_FLIGHT` (requests
//! in flight at most; default: the clients, within the open-file limit), `SOAK_GRACE_MS` (how
//! soon after a logout every instance must refuse the cookie, 1000), `SOAK_SWEEP_MAX`
//! (revoked cookies replayed at the end, 6000), `SOAK_SERVER_THREADS` (2), `SOAK_SEED`, and
//! `SOAK_LOG` (an env-filter for the servers' log, e.g. `sealed_session=debug`, on stderr).
//! Two switches break the deployment on purpose, to show that the counters see it:
//! `SOAK_ROTATION=one-phase` (each rotation in one rolling deploy, so the instance that still
//! runs the old ring refuses sessions the other sealed with the new key: sessions are lost)
//! and `SOAK_REDIS_PERSIST=0` (Redis restarts empty, so instances started afterwards accept
//! sessions revoked before: see `RedisDenylist`'s "Redis restarted empty").
//!
//! The run:
//! 1. Redis (append-only file, fsync on every write), then A and B with ring `k1`. The keys
//!    `k1`, `k2`, `k3` are AES-256-GCM, ChaCha20-Poly1305 and XChaCha20-Poly1305, so the
//!    rotations also move the ring from one algorithm to another.
//! 2. Every client: log in, read and increment its counter 3 to 30 times, then log out (40%)
//!    or keep the session for the final check (a client keeps its first and its last).
//! 3. Meanwhile, at 10% and 25% of the run, the first rotation as two rolling deploys (A, then
//!    B): `k1,k2` (the new key opens everywhere before anything seals with it), then `k2,k1`.
//!    At 45%, Redis is killed and restarted. At 60% and 75%, the second rotation: `k2,k3,k1`,
//!    then `k3,k2,k1`. An event starts when its time has come and the previous one is done;
//!    the load goes on past `SOAK_SECS` if needed, until a tenth of it (at least the grace
//!    period plus a second) after the last event.
//! 4. At the end, with every instance healthy: each kept session must still hold its counter
//!    and be re-issued under `k3`; sampled logged-out cookies (before and after the Redis
//!    restart) and every forgery must be refused by both instances.
//!
//! Without `redis-server` on PATH it prints `SKIPPED` and passes, except under `CI=true`.

#![cfg(feature = "redis")]

mod client;
#[path = "../common/redis.rs"]
mod redis_server;
mod report;
mod server;

use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sealed_session::{Algorithm, Key, Keyring};
use tokio::task::JoinSet;

use client::{Forgery, Live, Net, Revoked, Rng, Shared, bump, count_lost, judge_forgery};
use redis_server::{RedisServer, free_port};
use report::{Event, RedisRestart, Report};
use server::{Generation, ServerProc};

/// Instance names, by index.
const NAMES: [&str; 2] = ["A", "B"];

/// The run's settings, from the environment.
pub struct Config {
    pub secs: u64,
    pub clients: usize,
    pub think_ms: u64,
    pub in_flight: usize,
    pub grace: Duration,
    pub sweep_max: usize,
    pub server_threads: usize,
    pub seed: u64,
    pub one_phase: bool,
    pub persist: bool,
}

fn var<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_file_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
}

impl Config {
    fn from_env() -> Config {
        let clients = var("SOAK_CLIENTS", 2000usize).max(1);
        // Each request in flight holds a socket here, and the pool may keep one per instance.
        let fd_room = open_file_limit().saturating_sub(256) / 2;
        let seed = var(
            "SOAK_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        );
        let rotation: String = var("SOAK_ROTATION", "two-phase".to_owned());
        assert!(
            rotation == "two-phase" || rotation == "one-phase",
            "SOAK_ROTATION is two-phase or one-phase, not {rotation:?}"
        );
        Config {
            secs: var("SOAK_SECS", 20u64).max(4),
            clients,
            think_ms: var("SOAK_THINK_MS", 20),
            in_flight: var("SOAK_IN_FLIGHT", clients.min(fd_room.max(16))),
            grace: Duration::from_millis(var("SOAK_GRACE_MS", 1000)),
            sweep_max: var("SOAK_SWEEP_MAX", 6000),
            server_threads: var("SOAK_SERVER_THREADS", 2usize).max(1),
            seed,
            one_phase: rotation == "one-phase",
            persist: var("SOAK_REDIS_PERSIST", 1u8) != 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let cfg = Config::from_env();
    let redis = if cfg.persist {
        RedisServer::start_persistent("the soak test")
    } else {
        RedisServer::start("the soak test")
    };
    let Some(redis) = redis else {
        return;
    };
    let report = run(&cfg, redis).await;
    // Straight to stderr, past the harness's capture: the report shows in every run.
    let _ = writeln!(std::io::stderr(), "{report}");
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "the soak missed its targets:\n- {}",
        failures.join("\n- ")
    );
}

/// Not a test: the server process the `soak` test starts (twice per deploy).
#[test]
#[ignore = "a server process of the `soak` test, started by it"]
fn soak_server_process() {
    server::child_main();
}

/// Something done to the deployment during the run.
enum Action {
    Deploy(&'static str, Keyring),
    RestartRedis,
}

/// The initial ring and the timed actions (as fractions of the run).
fn plan(one_phase: bool) -> (Keyring, Vec<(f64, Action)>) {
    let key = |id: &str, alg| Key::generate(id, alg).expect("a random key");
    let (k1, k2, k3) = (
        key("k1", Algorithm::Aes256Gcm),
        key("k2", Algorithm::ChaCha20Poly1305),
        key("k3", Algorithm::XChaCha20Poly1305),
    );
    let ring = |keys: &[&Key]| Keyring::new(keys.iter().map(|k| (*k).clone())).unwrap();
    let first = ring(&[&k1]);
    let rotated = first.rotate(k2.clone(), 3).unwrap();
    let rotated_twice = rotated.rotate(k3.clone(), 3).unwrap();
    let actions = if one_phase {
        vec![
            (0.25, Action::Deploy("rotate to k2", rotated)),
            (0.50, Action::RestartRedis),
            (0.75, Action::Deploy("rotate to k3", rotated_twice)),
        ]
    } else {
        vec![
            (0.10, Action::Deploy("stage k2", ring(&[&k1, &k2]))),
            (0.25, Action::Deploy("promote k2", rotated)),
            (0.45, Action::RestartRedis),
            (0.60, Action::Deploy("stage k3", ring(&[&k2, &k3, &k1]))),
            (0.75, Action::Deploy("promote k3", rotated_twice)),
        ]
    };
    (first, actions)
}

/// The two instances.
struct Fleet {
    procs: [Option<ServerProc>; 2],
    ports: [u16; 2],
    redis_url: String,
    threads: usize,
    generations: Vec<Generation>,
    next: [u32; 2],
}

impl Fleet {
    async fn start(ring: &Keyring, redis_url: String, threads: usize) -> Fleet {
        let ports = [free_port(), free_port()];
        let a = ServerProc::spawn(NAMES[0], 0, ports[0], ring, &redis_url, threads).await;
        let b = ServerProc::spawn(NAMES[1], 0, ports[1], ring, &redis_url, threads).await;
        Fleet {
            procs: [Some(a), Some(b)],
            ports,
            redis_url,
            threads,
            generations: Vec::new(),
            next: [0, 0],
        }
    }

    /// Waits until both instances report a healthy denylist; how long that took.
    async fn wait_healthy(&self, net: &Net, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let mut healthy = true;
            for i in 0..2 {
                let s = net.status(i).await.unwrap_or_default();
                healthy &= s.starts_with("health=healthy");
            }
            if healthy {
                return Some(start.elapsed());
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replaces instance `i` by a new process with `ring`; returns how long it was down.
    async fn restart(&mut self, i: usize, ring: &Keyring, sh: &Shared) -> Duration {
        let start = Instant::now();
        if let Some(old) = self.procs[i].take() {
            self.generations.push(old.stop().await);
        }
        sh.instance_gen[i].fetch_add(1, Ordering::AcqRel);
        self.next[i] += 1;
        self.procs[i] = Some(
            ServerProc::spawn(
                NAMES[i],
                self.next[i],
                self.ports[i],
                ring,
                &self.redis_url,
                self.threads,
            )
            .await,
        );
        start.elapsed()
    }

    async fn stop_all(&mut self) {
        for p in &mut self.procs {
            if let Some(p) = p.take() {
                self.generations.push(p.stop().await);
            }
        }
        self.generations.sort_by_key(|g| (g.name, g.generation));
    }
}

/// Revocations recorded in Redis (the sorted set of revoked ids).
fn redis_revocations(url: &str) -> Option<u64> {
    tokio::task::block_in_place(|| {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        redis::cmd("ZCARD")
            .arg(format!("{}ids", server::PREFIX))
            .query::<u64>(&mut conn)
            .ok()
    })
}

async fn run(cfg: &Config, mut redis: RedisServer) -> Report {
    let wall = Instant::now();
    let (first_ring, actions) = plan(cfg.one_phase);
    let mut fleet = Fleet::start(&first_ring, redis.url(), cfg.server_threads).await;
    let net = Arc::new(Net::new(fleet.ports, cfg.in_flight));
    assert!(
        fleet
            .wait_healthy(&net, Duration::from_secs(30))
            .await
            .is_some(),
        "the instances did not become healthy"
    );
    let server_rss_start = [0, 1].map(|i| fleet.procs[i].as_ref().map_or(0, |p| p.rss_start_kib));
    let client_rss_start = server::memory_kib(std::process::id()).0;

    let mut rng = Rng::new(cfg.seed);
    let forged = client::forgeries(&first_ring, &mut rng);
    let t0 = Instant::now();
    let run_for = Duration::from_secs(cfg.secs);
    let sh = Arc::new(Shared {
        t0,
        end_ms: AtomicU64::new(run_for.as_millis() as u64),
        seed: cfg.seed,
        think_ms: cfg.think_ms,
        ramp_ms: (cfg.secs * 1000 / 10).min(2000),
        grace: cfg.grace,
        disturbance: AtomicU64::new(0),
        redis_restarts: AtomicU64::new(0),
        instance_gen: [AtomicU64::new(0), AtomicU64::new(0)],
        key_order: vec!["k1".into(), "k2".into(), "k3".into()],
        forged,
        kept: Default::default(),
        revoked: Shared::revoked_store(cfg.sweep_max),
    });
    let mut clients = JoinSet::new();
    for id in 0..cfg.clients {
        clients.spawn(client::client(id, net.clone(), sh.clone()));
    }

    let mut events = Vec::new();
    let mut redis_restart = None;
    for (at, action) in actions {
        tokio::time::sleep_until((t0 + run_for.mul_f64(at)).into()).await;
        let started = t0.elapsed();
        let clock = Instant::now();
        let answered = client::get(&net.c.answered);
        match action {
            Action::Deploy(label, ring) => {
                let ids = ring.ids().collect::<Vec<_>>().join(",");
                let mut down = Vec::new();
                for i in 0..2 {
                    down.push(fleet.restart(i, &ring, &sh).await);
                }
                let healthy = fleet.wait_healthy(&net, Duration::from_secs(30)).await;
                events.push(Event {
                    at: started,
                    what: format!("rolling deploy, {label}: ring {ids}"),
                    took: clock.elapsed(),
                    answered: client::get(&net.c.answered) - answered,
                    detail: format!(
                        "A down {}, B down {}{}",
                        report::secs(down[0]),
                        report::secs(down[1]),
                        if healthy.is_some() {
                            ""
                        } else {
                            "; NOT healthy after"
                        }
                    ),
                });
            }
            Action::RestartRedis => {
                sh.disturbance.fetch_add(1, Ordering::AcqRel);
                sh.redis_restarts.fetch_add(1, Ordering::AcqRel);
                let before = redis_revocations(&redis.url());
                tokio::task::block_in_place(|| redis.restart());
                let down = clock.elapsed();
                let after = redis_revocations(&redis.url());
                let resync = fleet.wait_healthy(&net, Duration::from_secs(60)).await;
                let resynced_after = clock.elapsed();
                let answered = client::get(&net.c.answered) - answered;
                // Logouts that began in the window get the grace period too.
                tokio::time::sleep(sh.grace).await;
                sh.disturbance.fetch_add(1, Ordering::AcqRel);
                events.push(Event {
                    at: started,
                    what: format!(
                        "Redis killed (SIGKILL) and restarted{}",
                        if cfg.persist {
                            ", append-only file"
                        } else {
                            ", EMPTY (no persistence)"
                        }
                    ),
                    took: down,
                    answered,
                    detail: format!(
                        "revocations in Redis {} -> {}; both replicas healthy {} after the kill",
                        before.map_or("?".into(), |n| n.to_string()),
                        after.map_or("?".into(), |n| n.to_string()),
                        resync.map_or("NEVER".into(), |_| report::secs(resynced_after)),
                    ),
                });
                redis_restart = Some(RedisRestart {
                    before,
                    after,
                    healthy: resync.is_some(),
                });
            }
        }
    }

    // The load goes on for a while after the last event, however late that ended.
    let tail = (run_for / 10).max(sh.grace + Duration::from_secs(1));
    sh.end_ms
        .fetch_max((t0.elapsed() + tail).as_millis() as u64, Ordering::AcqRel);
    let mut client_panics = 0;
    let finished = tokio::time::timeout(Duration::from_secs(cfg.secs + 180), async {
        while let Some(r) = clients.join_next().await {
            if r.is_err_and(|e| e.is_panic()) {
                client_panics += 1;
            }
        }
    })
    .await;
    let unfinished = if finished.is_err() {
        let n = clients.len() as u64;
        clients.abort_all();
        n
    } else {
        0
    };
    let load = t0.elapsed();

    // The final check, with everything healthy.
    let healthy_at_end = fleet
        .wait_healthy(&net, Duration::from_secs(60))
        .await
        .is_some();
    let sweep_started = Instant::now();
    let (revoked_logouts, sweep_panics) = sweep(&net, &sh, "k3").await;
    let sweep_took = sweep_started.elapsed();
    let mut replicas = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        replicas.push(format!(
            "{name}: {}",
            net.status(i).await.unwrap_or_else(|| "no answer".into())
        ));
    }
    let client_rss_end = server::memory_kib(std::process::id()).0;
    fleet.stop_all().await;
    drop(redis);

    Report {
        cfg_line: format!(
            "{} clients, {} s of load, think 0-{} ms, {} requests in flight at most, \
             {} rotation, Redis {}, seed {}",
            cfg.clients,
            cfg.secs,
            cfg.think_ms,
            cfg.in_flight,
            if cfg.one_phase {
                "ONE-PHASE"
            } else {
                "two-phase"
            },
            if cfg.persist {
                "with AOF"
            } else {
                "WITHOUT persistence"
            },
            cfg.seed
        ),
        wall: wall.elapsed(),
        load,
        sweep: sweep_took,
        net,
        events,
        generations: fleet.generations,
        server_rss_start,
        redis: redis_restart,
        client_panics: client_panics + sweep_panics,
        unfinished,
        healthy_at_end,
        client_rss: (client_rss_start, client_rss_end),
        replicas,
        revoked_logouts,
    }
}

/// The final check: kept sessions must be intact and move to `primary`; revoked cookies
/// and forgeries must be refused by both instances. Returns how many logouts the replayed
/// cookies were sampled from (before, during or after the Redis restart) and panicked checks.
async fn sweep(net: &Arc<Net>, sh: &Arc<Shared>, primary: &'static str) -> ([u64; 2], u64) {
    let kept: Vec<Live> = std::mem::take(&mut *sh.kept.lock().unwrap());
    let (revoked, seen) = sh.take_revoked();
    let mut tasks = JoinSet::new();
    for (i, mut live) in kept.into_iter().enumerate() {
        let (net, seed) = (net.clone(), sh.seed ^ i as u64);
        tasks.spawn(async move {
            let mut rng = Rng::new(seed);
            bump(&net.c.sweep_kept_checked);
            let cookie = live.jar.header();
            let Some(r) = net
                .call_ok(&mut rng, None, false, "/me", cookie.as_deref())
                .await
            else {
                return;
            };
            if count_lost(&net, &live, &r, live.n, "at the end") {
                bump(&net.c.sweep_kept_lost);
                return;
            }
            live.jar.absorb(&r.set_cookies);
            if live.jar.key_id() != primary {
                bump(&net.c.sweep_not_on_primary);
                net.sample("not re-issued under the primary", || {
                    format!("{} still under {}", live.cid, live.jar.key_id())
                });
            }
        });
    }
    for (i, revoked) in revoked.into_iter().enumerate() {
        let Revoked {
            jar,
            cid,
            at,
            by,
            before_redis_restart,
        } = revoked;
        let (net, seed) = (net.clone(), sh.seed ^ ((i as u64) << 20));
        tasks.spawn(async move {
            let mut rng = Rng::new(seed);
            if before_redis_restart {
                bump(&net.c.sweep_revoked_before_redis_restart);
            }
            let cookie = jar.header();
            for (inst, name) in NAMES.iter().enumerate() {
                if let Some(r) = net
                    .call(&mut rng, Some(inst), false, "/me", cookie.as_deref())
                    .await
                {
                    bump(&net.c.sweep_revoked_checked);
                    if r.shows_session() {
                        bump(&net.c.sweep_revoked_accepted);
                        let kind = if before_redis_restart {
                            "replay accepted at the end, logged out before the Redis restart"
                        } else {
                            "replay accepted at the end, logged out during or after the Redis restart"
                        };
                        net.sample(kind, || {
                            format!(
                                "{cid} (logged out on {} at {}) accepted by {}: `{}`",
                                NAMES[by],
                                report::secs(at),
                                name,
                                r.body
                            )
                        });
                    }
                }
            }
        });
    }
    for i in 0..sh.forged.len() {
        let (net, sh) = (net.clone(), sh.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(sh.seed ^ 0xF0F0 ^ i as u64);
            let f: &Forgery = &sh.forged[i];
            for inst in 0..2 {
                let cookie = format!("{}={}", client::COOKIE_NAME, f.token);
                if let Some(r) = net
                    .call(&mut rng, Some(inst), false, "/me", Some(&cookie))
                    .await
                {
                    judge_forgery(
                        &net,
                        f,
                        &r,
                        &net.c.sweep_forged_checked,
                        &net.c.sweep_forged_accepted,
                    );
                }
            }
        });
    }
    let mut panics = 0;
    while let Some(r) = tasks.join_next().await {
        if r.is_err_and(|e| e.is_panic()) {
            panics += 1;
        }
    }
    (seen, panics)
}
