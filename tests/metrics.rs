//! The `metrics` feature: after a scripted sequence (a refusal of every reason, issues, a
//! re-issue, revocations of both kinds), a recorder installed for the test holds exactly the
//! documented counters and gauges. With `redis` too, the replica staleness gauge follows an
//! outage.
#![cfg(feature = "poem")]
#![cfg(all(feature = "metrics", any(feature = "jwt", feature = "jwt-rust-crypto")))]

mod common {
    pub mod fixtures;
    pub mod redis;
}
mod http;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixtures::{T0, clock, ring};
use http::handlers::{everywhere, logout, touch, user};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use poem::http::StatusCode;
use poem::http::header::SET_COOKIE;
use poem::test::TestClient;
use poem::{EndpointExt, Route, get, handler, post};
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::stats::{REASONS, describe_metrics};
use sealed_session::store::MemoryStore;
use sealed_session::{
    BearerConfig, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Limits, ManualClock, SealedSession,
    Session,
};

const NAME: &str = "__Host-sid";

/// A recorder that keeps every counter and gauge as `name{label=value,...}`.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    described: Mutex<Vec<String>>,
}

fn key_text(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl TestRecorder {
    fn counter(&self, key: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }
    fn counters(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.described.lock().unwrap().push(key.as_str().to_owned());
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .counters
            .lock()
            .unwrap()
            .entry(key_text(key))
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let g = self
            .gauges
            .lock()
            .unwrap()
            .entry(key_text(key))
            .or_default()
            .clone();
        Gauge::from_arc(g)
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[handler]
fn login(session: &Session) -> poem::Result<()> {
    session.regenerate()?;
    session.insert("user", "alice")?;
    session.insert("k", &[1, 2])?;
    session.set_subject("alice");
    Ok(())
}

fn app(mw: SealedSession) -> impl poem::Endpoint {
    Route::new()
        .at("/login", post(login))
        .at("/me", get(user))
        .at("/touch", post(touch))
        .at("/logout", post(logout))
        .at("/everywhere", post(everywhere))
        .with(mw)
}

/// POSTs `path` and returns the session cookie's value.
async fn mint(mw: SealedSession, path: &str, cookie: Option<&str>) -> String {
    let tc = TestClient::new(app(mw));
    let mut req = tc.post(path);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{NAME}={c}"));
    }
    let resp = req.send().await;
    resp.0
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix(&format!("{NAME}=")))
        .expect("a session cookie")
        .to_owned()
}

/// GET /me with this Cookie header; the body.
async fn read(mw: SealedSession, cookie: &str) -> String {
    let tc = TestClient::new(app(mw));
    let resp = tc.get("/me").header("cookie", cookie).send().await;
    resp.0.into_body().into_string().await.unwrap()
}

async fn script() {
    let clock = clock();
    let base = || SealedSession::sealed(ring("k1", 9)).clock(clock.clone());
    let token = mint(base(), "/login", None).await; // issued
    let cookie = format!("{NAME}={token}");
    assert_eq!(read(base(), &cookie).await, "alice");

    // One re-issue.
    mint(base(), "/touch", Some(&token)).await;

    // One refusal of every reason.
    read(base(), &format!("{NAME}=not-a-token!")).await; // malformed
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    raw[0] = 9;
    read(base(), &format!("{NAME}={}", URL_SAFE_NO_PAD.encode(&raw))).await; // unsupported_version
    let stranger = mint(
        SealedSession::sealed(ring("zz", 3)).clock(clock.clone()),
        "/login",
        None,
    )
    .await; // issued
    read(base(), &format!("{NAME}={stranger}")).await; // unknown_key_id
    let forged = mint(
        SealedSession::sealed(ring("k1", 3)).clock(clock.clone()),
        "/login",
        None,
    )
    .await; // issued
    read(base(), &format!("{NAME}={forged}")).await; // bad_seal
    let later = ManualClock::new(T0.saturating_add(Duration::from_secs(3600)));
    let future = mint(
        SealedSession::sealed(ring("k1", 9)).clock(later.clone()),
        "/login",
        None,
    )
    .await; // issued
    read(base(), &format!("{NAME}={future}")).await; // from_the_future
    let small = |l: Limits| base().limits(l);
    read(small(Limits::new().token_len(10)), &cookie).await; // too_large
    read(small(Limits::new().cookie_header_len(10)), &cookie).await; // cookie_header_too_large
    let half = token.len() / 2;
    let chunks = format!("{NAME}.0={}; {NAME}.1={}", &token[..half], &token[half..]);
    read(base().max_chunks(1).unwrap(), &chunks).await; // too_many_chunks
    read(small(Limits::new().data_len(5)), &cookie).await; // data_too_large
    read(small(Limits::new().json_depth(1)), &cookie).await; // data_too_deep
    let bearer = TestClient::new(app(base().bearer(BearerConfig::new())));
    bearer
        .get("/me")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .assert_status(StatusCode::BAD_REQUEST); // duplicate_authorization
    let dpop = sealed_session::binding::Dpop::new();
    TestClient::new(app(base().bearer(BearerConfig::new()).dpop(dpop)))
        .get("/me")
        .header("dpop", "not.a.proof")
        .send()
        .await
        .assert_status(StatusCode::UNAUTHORIZED); // bad_proof

    // Expiry: absolute, then idle.
    let c = common::fixtures::clock();
    let short = || {
        SealedSession::sealed(ring("k1", 9))
            .clock(c.clone())
            .max_age(Duration::from_secs(100))
            .idle_timeout(None)
    };
    let t = mint(short(), "/login", None).await; // issued
    c.advance(Duration::from_secs(100));
    read(short(), &format!("{NAME}={t}")).await; // expired
    let c = common::fixtures::clock();
    let idle = || {
        SealedSession::sealed(ring("k1", 9))
            .clock(c.clone())
            .idle_timeout(Some(Duration::from_secs(60)))
    };
    let t = mint(idle(), "/login", None).await; // issued
    c.advance(Duration::from_secs(60));
    read(idle(), &format!("{NAME}={t}")).await; // idle_timeout

    // JWT: another issuer.
    let (key, _) = JwtKey::generate("j1", JwtAlgorithm::HS256).unwrap();
    let jwt_ring = JwtKeyring::new([key]).unwrap();
    let jwt = |iss: &str| {
        let codec = JwtCodec::builder(jwt_ring.clone())
            .issuer(iss)
            .audience("api")
            .build()
            .unwrap();
        SealedSession::with_codec(codec)
    };
    let t = mint(jwt("a"), "/login", None).await; // issued
    read(jwt("b"), &format!("{NAME}={t}")).await; // claim_mismatch

    // Store-backed: a signed id that another store does not hold.
    let t = mint(
        SealedSession::server_store(MemoryStore::new(), ring("k1", 9)),
        "/login",
        None,
    )
    .await; // issued
    read(
        SealedSession::server_store(MemoryStore::new(), ring("k1", 9)),
        &format!("{NAME}={t}"),
    )
    .await; // not_found

    // Revocation: a logout (session), "log out everywhere" (subject and its session), and
    // the logged-out cookie replayed.
    let memory = MemoryDenylist::with_clock(clock.clone());
    let denylist: Arc<dyn Denylist> = Arc::new(memory.clone());
    let revoking = || base().denylist(denylist.clone());
    let t = mint(revoking(), "/login", None).await; // issued
    let tc = TestClient::new(app(revoking()));
    tc.post("/logout")
        .header("cookie", format!("{NAME}={t}"))
        .send()
        .await
        .assert_status_is_ok();
    read(revoking(), &format!("{NAME}={t}")).await; // revoked
    let t = mint(revoking(), "/login", None).await; // issued
    tc.post("/everywhere")
        .header("cookie", format!("{NAME}={t}"))
        .send()
        .await
        .assert_status_is_ok();
}

#[test]
fn counters_after_a_scripted_sequence() {
    let recorder = TestRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        describe_metrics();
        rt.block_on(script());
    });

    let counters = recorder.counters();
    for reason in REASONS {
        assert_eq!(
            recorder.counter(&format!("sealed_session_refusals_total{{reason={reason}}}")),
            1,
            "{reason}: {counters:#?}"
        );
    }
    assert_eq!(recorder.counter("sealed_session_reissues_total"), 1);
    assert_eq!(recorder.counter("sealed_session_issued_total"), 10);
    assert_eq!(
        recorder.counter("sealed_session_revocations_total{kind=session}"),
        2
    );
    assert_eq!(
        recorder.counter("sealed_session_revocations_total{kind=subject}"),
        1
    );
    // Nothing else was counted.
    let expected = REASONS.len() + 4;
    assert_eq!(counters.len(), expected, "{counters:#?}");
    assert_eq!(
        recorder.gauge("sealed_session_denylist_entries{kind=session}"),
        Some(2.0)
    );
    assert_eq!(
        recorder.gauge("sealed_session_denylist_entries{kind=subject}"),
        Some(1.0)
    );
    let mut described = recorder.described.lock().unwrap().clone();
    described.sort();
    assert_eq!(
        described,
        [
            "sealed_session_denylist_entries",
            "sealed_session_denylist_overflows_total",
            "sealed_session_denylist_staleness_seconds",
            "sealed_session_issued_total",
            "sealed_session_refusals_total",
            "sealed_session_reissues_total",
            "sealed_session_revocations_total",
        ]
    );
}

#[cfg(feature = "redis")]
#[test]
fn the_staleness_gauge_follows_a_redis_outage() {
    use common::redis::RedisServer;
    use sealed_session::denylist::RedisDenylist;
    use sealed_session::{Clock, SessionId};

    let Some(mut server) = RedisServer::start("the_staleness_gauge_follows_a_redis_outage") else {
        return;
    };
    let recorder = TestRecorder::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let staleness = || recorder.gauge("sealed_session_denylist_staleness_seconds");
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let clock = clock();
            let denylist = RedisDenylist::builder(server.url())
                .key_prefix("metrics:deny:")
                .clock(Arc::new(clock.clone()))
                .heartbeat(Duration::from_millis(20))
                .stale_after(Duration::from_secs(30))
                .backoff(Duration::from_millis(10), Duration::from_millis(50))
                .timeout(Duration::from_millis(300))
                .build()
                .await
                .unwrap();
            denylist
                .revoke(
                    SessionId::from_bytes([5; 16]),
                    clock.now().saturating_add(Duration::from_secs(60)),
                )
                .await
                .unwrap();
            assert_eq!(
                recorder.gauge("sealed_session_denylist_entries{kind=session}"),
                Some(1.0)
            );
            // Connected: the replica is confirmed at every heartbeat, at this clock's now.
            wait_for(|| staleness() == Some(0.0)).await;
            // Redis goes away and 7 seconds pass: the gauge says so at the next retry.
            server.stop();
            clock.advance(Duration::from_secs(7));
            wait_for(|| staleness().is_some_and(|s| s >= 7.0)).await;
            drop(denylist);
        });
    });
}

#[cfg(feature = "redis")]
async fn wait_for(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
