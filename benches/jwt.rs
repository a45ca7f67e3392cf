//! JWT encode and decode per algorithm: this crate's `JwtCodec` (seal, open_checked) beside
//! plain `jsonwebtoken::encode` / `decode` calls with the same keys and equivalent claims, in
//! the same run. Run briefly with:
//!
//! ```text
//! cargo bench --bench jwt -- --warm-up-time 0.5 --measurement-time 1
//! ```
//!
//! Ids: `jwt/<ALG>/{ours,raw}_{encode,decode}`, and the per-request cost in the middleware:
//! `jwt/<ALG>/middleware_request` (a bearer request whose handler changes the session, so
//! the middleware decodes and re-encodes) beside `jwt/<ALG>/no_session_request` (the same
//! request to the same handler without sessions), and `jwt/<ALG>/middleware_read` (a bearer
//! request that only reads, sending the same token again as a single-page app does: the open
//! cache answers it). `python3 benches/ratios.py jwt` prints
//! (middleware_request - no_session_request) / (raw_encode + raw_decode); target <= 1.3.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use poem::{Endpoint, EndpointExt, Request, Route, get, handler};
use sealed_session::{
    BearerConfig, Codec, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Policy, SealedSession,
    Session, SessionId, SessionState, Timestamp,
};
use serde::{Deserialize, Serialize};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/jwt/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).expect("fixture")
}

/// The same claims this crate writes, as an application using jsonwebtoken directly would
/// declare them.
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    sess: Sess,
    data: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Sess {
    v: u64,
    iat_ms: u64,
    seen_ms: u64,
    deadline_ms: u64,
}

fn keys(alg: JwtAlgorithm) -> (JwtKey, EncodingKey, DecodingKey) {
    let name = alg.name().to_ascii_lowercase();
    if alg.is_symmetric() {
        let b64 = String::from_utf8(fixture(&format!("{name}.key.b64"))).expect("utf8");
        let key = JwtKey::hmac_base64(&name, alg, &b64).expect("key");
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            b64.trim(),
        )
        .expect("b64");
        (
            key,
            EncodingKey::from_secret(&raw),
            DecodingKey::from_secret(&raw),
        )
    } else {
        let private = fixture(&format!("{name}.key.pem"));
        let public = fixture(&format!("{name}.pub.pem"));
        let key = JwtKey::from_pem(&name, alg, &private).expect("key");
        let (enc, dec) = match alg {
            JwtAlgorithm::RS256 | JwtAlgorithm::PS256 => (
                EncodingKey::from_rsa_pem(&private).expect("pem"),
                DecodingKey::from_rsa_pem(&public).expect("pem"),
            ),
            JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => (
                EncodingKey::from_ec_pem(&private).expect("pem"),
                DecodingKey::from_ec_pem(&public).expect("pem"),
            ),
            _ => (
                EncodingKey::from_ed_pem(&private).expect("pem"),
                DecodingKey::from_ed_pem(&public).expect("pem"),
            ),
        };
        (key, enc, dec)
    }
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_system_time(SystemTime::now());
    let policy = Policy::new();
    let mut state = SessionState::new(SessionId::from_bytes([7; 16]), now, policy.expires_at(now));
    state.set_subject(Some("alice".to_owned()));
    state.insert("user", "alice").expect("insert");
    state.insert("views", &3).expect("insert");

    let algs = std::env::var("JWT_BENCH_ALGS").ok();
    for alg in JwtAlgorithm::ALL {
        if let Some(only) = &algs
            && !only.split(',').any(|a| a.eq_ignore_ascii_case(alg.name()))
        {
            continue;
        }
        let (key, enc, dec) = keys(alg);
        let codec = JwtCodec::builder(JwtKeyring::new([key]).expect("ring"))
            .issuer("https://issuer.test")
            .audience("api")
            .build()
            .expect("codec")
            .policy(&policy);
        let ours = codec.seal(&state, b"").expect("seal");

        let mut header = Header::new(alg.to_jsonwebtoken());
        header.kid = Some(alg.name().to_ascii_lowercase());
        let claims = Claims {
            iss: "https://issuer.test".into(),
            sub: "alice".into(),
            aud: "api".into(),
            exp: codec.token_deadline(&state).as_millis() / 1000,
            iat: now.as_millis() / 1000,
            jti: state.id().to_string(),
            sess: Sess {
                v: 1,
                iat_ms: now.as_millis(),
                seen_ms: now.as_millis(),
                deadline_ms: state.expires_at().as_millis(),
            },
            data: serde_json::json!({"user": "alice", "views": 3}),
        };
        let mut validation = Validation::new(alg.to_jsonwebtoken());
        validation.set_issuer(&["https://issuer.test"]);
        validation.set_audience(&["api"]);
        let raw = jsonwebtoken::encode(&header, &claims, &enc).expect("encode");

        // The middleware path: one bearer request that reads and changes the session.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mw = SealedSession::with_codec(
            JwtCodec::builder(codec.keyring().clone())
                .issuer("https://issuer.test")
                .audience("api")
                .build()
                .expect("codec")
                .policy(&policy),
        )
        .bearer(BearerConfig::new());
        let routes = || Route::new().at("/count", get(count)).at("/read", get(read));
        let app = routes().with(mw.clone());
        // Every token verified and parsed again, as before the open cache took JWTs.
        let uncached = routes().with(mw.open_cache(0));
        let bare = Route::new()
            .at("/count", get(count_without_session))
            .at("/read", get(count_without_session));
        let token = rt.block_on(async {
            let resp = app
                .get_response(Request::builder().uri_str("/count").finish())
                .await;
            resp.headers()
                .get("x-session-token")
                .and_then(|v| v.to_str().ok())
                .map(|t| format!("Bearer {t}"))
                .expect("a new session sends a token")
        });
        // `SS_COUNT=<ALG>/<case>`: run one case a fixed number of times and exit, for
        // `benches/instructions.sh jwt` (instruction counts under valgrind).
        if let Ok(case) = std::env::var("SS_COUNT") {
            let iters: usize = std::env::var("SS_COUNT_ITERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            match case.strip_prefix(&format!("{}/", alg.name())) {
                Some("middleware_request") => rt.block_on(async {
                    for _ in 0..iters {
                        request(&app, &token).await;
                    }
                }),
                Some("middleware_read") => rt.block_on(async {
                    for _ in 0..iters {
                        request_at(&app, "/read", &token).await;
                    }
                }),
                Some("middleware_read_uncached") => rt.block_on(async {
                    for _ in 0..iters {
                        request_at(&uncached, "/read", &token).await;
                    }
                }),
                Some("no_session_read") => rt.block_on(async {
                    for _ in 0..iters {
                        request_at(&bare, "/read", &token).await;
                    }
                }),
                Some("no_session_request") => rt.block_on(async {
                    for _ in 0..iters {
                        request(&bare, &token).await;
                    }
                }),
                Some("raw_roundtrip") => {
                    for _ in 0..iters {
                        black_box(
                            jsonwebtoken::decode::<Claims>(&raw, &dec, &validation)
                                .expect("decode"),
                        );
                        black_box(jsonwebtoken::encode(&header, &claims, &enc).expect("encode"));
                    }
                }
                _ => continue,
            }
            std::process::exit(0);
        }
        let mut g = c.benchmark_group(format!("jwt/{}", alg.name()));
        g.bench_function("ours_encode", |b| {
            b.iter(|| codec.seal(black_box(&state), b"").expect("seal"))
        });
        g.bench_function("raw_encode", |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &enc).expect("encode"))
        });
        g.bench_function("ours_decode", |b| {
            b.iter(|| {
                codec
                    .open_checked(black_box(&ours), b"", &policy, now)
                    .expect("open")
            })
        });
        g.bench_function("raw_decode", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Claims>(black_box(&raw), &dec, &validation).expect("decode")
            })
        });
        g.bench_function("middleware_request", |b| {
            b.to_async(&rt).iter(|| request(&app, &token))
        });
        g.bench_function("no_session_request", |b| {
            b.to_async(&rt).iter(|| request(&bare, &token))
        });
        g.bench_function("middleware_read", |b| {
            b.to_async(&rt).iter(|| request_at(&app, "/read", &token))
        });
        g.finish();
    }
}

#[handler]
fn count(session: &Session) -> String {
    let n = session.get::<u64>("views").ok().flatten().unwrap_or(0) + 1;
    let _ = session.insert("views", &n);
    n.to_string()
}

/// A read: the same token comes back on every request, as a single-page app sends it.
#[handler]
fn read(session: &Session) -> String {
    let n = session.get::<u64>("views").ok().flatten().unwrap_or(0);
    n.to_string()
}

#[handler]
fn count_without_session() -> String {
    1u64.to_string()
}

async fn request(ep: &impl Endpoint, auth: &str) {
    request_at(ep, "/count", auth).await;
}

async fn request_at(ep: &impl Endpoint, path: &str, auth: &str) {
    let req = Request::builder()
        .uri_str(path)
        .header("authorization", auth)
        .finish();
    black_box(ep.get_response(req).await);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
