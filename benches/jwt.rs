//! JWT encode and decode per algorithm: this crate's `JwtCodec` (seal, open_checked) beside
//! plain `jsonwebtoken::encode` / `decode` calls with the same keys and equivalent claims, in
//! the same run. Run briefly with:
//!
//! ```text
//! cargo bench --bench jwt -- --warm-up-time 0.5 --measurement-time 1
//! ```
//!
//! Ids: `jwt/<ALG>/{ours,raw}_{encode,decode}`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use sealed_session::{
    Codec, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Policy, SessionId, SessionState, Timestamp,
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
        let codec = JwtCodec::new(JwtKeyring::new([key]).expect("ring"))
            .issuer("https://issuer.test")
            .audience("api")
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
        g.finish();
    }
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
