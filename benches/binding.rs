//! What theft resistance costs per request, through the Poem middleware:
//! - `sealed/read` against `sealed_dbsc/read`: a signed-in sealed cookie session, plain and
//!   device-bound (DBSC: the bound cookie checked on every request between refreshes; the
//!   plain case sends a cookie of the same size so the headers weigh the same);
//! - `jwt_bearer/read` against `jwt_dpop/read`: an EdDSA JWT bearer session, plain and
//!   DPoP-bound (each request with a fresh ES256 proof, its signature verified and its jti
//!   recorded). The proofs are made before the counted requests.
//!
//! With `SS_COUNT=<case>` (and `SS_COUNT_ITERS`), runs that case a fixed number of times for
//! `bash benches/instructions.sh binding`, which counts instructions under valgrind.
//!
//! With `SS_PAIRED=1`, times the plain and the device-bound sealed read in alternating
//! batches (21 rounds of 200,000 requests each), so that both see the same machine, and
//! prints each round and the median difference: on a shared machine, criterion's cases,
//! measured one after the other, can differ by more than the bound cookie costs.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use poem::http::header::{AUTHORIZATION, COOKIE, HOST, SET_COOKIE};
use poem::{Endpoint, EndpointExt, Request, Route, get, handler, post};
use sealed_session::binding::{Dbsc, Dpop};
use sealed_session::{
    BearerConfig, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Keyring, SealedSession, Secure,
    Session,
};

#[handler]
fn login(session: &Session) -> poem::Result<String> {
    session.regenerate()?;
    session.insert("user", "alice@example.com")?;
    session.set_subject("alice@example.com");
    Ok(session.token()?.unwrap_or_default())
}

#[handler]
fn read(session: &Session) -> String {
    format!("{:?}", session.get::<String>("user").ok().flatten())
}

fn routes() -> Route {
    Route::new()
        .at("/login", post(login))
        .at("/read", get(read))
}

type Ep = Box<dyn poem::endpoint::DynEndpoint<Output = poem::Response>>;

fn boxed(ep: impl Endpoint + 'static) -> Ep {
    Box::new(poem::endpoint::ToDynEndpoint(ep.map_to_response()))
}

/// A JWS (ES256) over `header` and `claims`, as a client makes it.
fn jws(key: &SigningKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

fn public_jwk(key: &SigningKey) -> serde_json::Value {
    let point = key.verifying_key().to_encoded_point(false);
    serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
        "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `name=value` of each Set-Cookie of `resp`.
fn cookies_of(resp: &poem::Response) -> Vec<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect()
}

struct Apps {
    sealed: Ep,
    sealed_cookie: String,
    dbsc: Ep,
    dbsc_cookie: String,
    bearer: Ep,
    bearer_token: String,
    dpop: Ep,
    dpop_token: String,
    dpop_key: SigningKey,
}

/// Signs in on each app; on the DBSC one, registers a key as a browser would.
async fn apps() -> Apps {
    let keys = Keyring::from_secret("bench secret bench secret bench secret!!").expect("key");
    let sealed = boxed(routes().with(SealedSession::sealed(keys.clone()).secure(Secure::Never)));
    let dbsc = boxed(
        routes().with(
            SealedSession::sealed(keys)
                .secure(Secure::Never)
                .device_bound(Dbsc::new()),
        ),
    );
    let login_req = || {
        Request::builder()
            .method(poem::http::Method::POST)
            .uri_str("/login")
    };
    let resp = sealed.get_response(login_req().finish()).await;
    let sealed_session = cookies_of(&resp).join("; ");

    let resp = dbsc.get_response(login_req().finish()).await;
    let session = cookies_of(&resp).join("; ");
    let offer = resp
        .headers()
        .get("secure-session-registration")
        .and_then(|v| v.to_str().ok())
        .expect("a registration offer")
        .to_owned();
    let challenge = offer
        .split("challenge=\"")
        .nth(1)
        .and_then(|c| c.split('"').next())
        .expect("a challenge");
    let key = SigningKey::random(&mut rand_core::OsRng);
    let proof = jws(
        &key,
        &serde_json::json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": public_jwk(&key)}),
        &serde_json::json!({"jti": challenge}),
    );
    let resp = dbsc
        .get_response(
            Request::builder()
                .method(poem::http::Method::POST)
                .uri_str("/dbsc/register")
                .header(COOKIE, &session)
                .header("secure-session-response", proof)
                .finish(),
        )
        .await;
    assert!(
        resp.status().is_success(),
        "registration: {}",
        resp.status()
    );
    let dbsc_cookie = cookies_of(&resp).join("; ");
    // The plain case carries a cookie of the same length in its place.
    let pad = dbsc_cookie.len().saturating_sub(sealed_session.len() + 2);
    let sealed_cookie = format!("{sealed_session}; x={}", "a".repeat(pad.saturating_sub(2)));

    let (jwt_key, _) = JwtKey::generate("k1", JwtAlgorithm::EdDSA).expect("key");
    let ring = JwtKeyring::new([jwt_key]).expect("ring");
    let codec = || {
        JwtCodec::builder(ring.clone())
            .issuer("https://bench")
            .audience("bench")
            .build()
            .expect("codec")
    };
    let bearer = boxed(routes().with(SealedSession::jwt(codec()).bearer(BearerConfig::new())));
    let dpop = boxed(
        routes().with(
            SealedSession::jwt(codec())
                .bearer(BearerConfig::new())
                .dpop(Dpop::new().max_age(Duration::from_secs(3600))),
        ),
    );
    let body = |resp: poem::Response| async move {
        resp.into_body().into_string().await.expect("a token")
    };
    let bearer_token = body(bearer.get_response(login_req().finish()).await).await;
    let dpop_key = SigningKey::random(&mut rand_core::OsRng);
    let login_proof = dpop_proof(&dpop_key, "POST", "/login", None);
    let resp = dpop
        .get_response(
            login_req()
                .header(HOST, "bench")
                .header("dpop", login_proof)
                .finish(),
        )
        .await;
    assert!(resp.status().is_success(), "DPoP login: {}", resp.status());
    let dpop_token = body(resp).await;
    Apps {
        sealed,
        sealed_cookie,
        dbsc,
        dbsc_cookie,
        bearer,
        bearer_token,
        dpop,
        dpop_token,
        dpop_key,
    }
}

/// A DPoP proof by `key` for `htm` on `http://bench{path}`, with `ath` of `token`.
fn dpop_proof(key: &SigningKey, htm: &str, path: &str, token: Option<&str>) -> String {
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).expect("random");
    let mut claims = serde_json::json!({
        "jti": URL_SAFE_NO_PAD.encode(jti), "htm": htm, "htu": format!("http://bench{path}"),
        "iat": now_secs(),
    });
    if let Some(t) = token {
        use sha2::Digest as _;
        claims["ath"] = URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(t.as_bytes()))
            .into();
    }
    jws(
        key,
        &serde_json::json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": public_jwk(key)}),
        &claims,
    )
}

async fn cookie_read(ep: &Ep, cookie: &str) {
    let req = Request::builder()
        .uri_str("/read")
        .header(COOKIE, cookie)
        .finish();
    let resp = ep.get_response(req).await;
    assert!(resp.status().is_success());
    black_box(resp);
}

async fn bearer_read(ep: &Ep, scheme: &str, token: &str, proof: Option<&str>) {
    let mut req = Request::builder()
        .uri_str("/read")
        .header(HOST, "bench")
        .header(AUTHORIZATION, format!("{scheme} {token}"));
    if let Some(p) = proof {
        req = req.header("dpop", p);
    }
    let resp = ep.get_response(req.finish()).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    black_box(resp);
}

/// Proofs made before the counted requests: the same number whatever the count, so that
/// their cost cancels out of the difference of two runs.
const PROOFS: usize = 1_300;

fn count_mode(rt: &tokio::runtime::Runtime, apps: &Apps, case: &str, iters: usize) {
    let proofs: Vec<String> = if case == "jwt_dpop/read" {
        (0..PROOFS)
            .map(|_| dpop_proof(&apps.dpop_key, "GET", "/read", Some(&apps.dpop_token)))
            .collect()
    } else {
        Vec::new()
    };
    rt.block_on(async {
        for i in 0..iters {
            match case {
                "sealed/read" => cookie_read(&apps.sealed, &apps.sealed_cookie).await,
                "sealed_dbsc/read" => cookie_read(&apps.dbsc, &apps.dbsc_cookie).await,
                "jwt_bearer/read" => {
                    bearer_read(&apps.bearer, "Bearer", &apps.bearer_token, None).await
                }
                "jwt_dpop/read" => {
                    let proof = proofs.get(i).expect("SS_COUNT_ITERS at most 1300");
                    bearer_read(&apps.dpop, "DPoP", &apps.dpop_token, Some(proof)).await
                }
                other => panic!("unknown case {other}"),
            }
        }
    });
}

/// `SS_PAIRED=1`: the plain and the device-bound read timed in alternating batches.
fn paired(rt: &tokio::runtime::Runtime, apps: &Apps) {
    const ROUNDS: usize = 21;
    const BATCH: u32 = 200_000;
    let time = |ep: &Ep, cookie: &str| {
        let start = std::time::Instant::now();
        rt.block_on(async {
            for _ in 0..BATCH {
                cookie_read(ep, cookie).await;
            }
        });
        start.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    let mut diffs = Vec::with_capacity(ROUNDS);
    for round in 1..=ROUNDS {
        let plain = time(&apps.sealed, &apps.sealed_cookie);
        let bound = time(&apps.dbsc, &apps.dbsc_cookie);
        println!(
            "round {round:2}: sealed {plain:6.0} ns, device-bound {bound:6.0} ns, difference {:5.0} ns",
            bound - plain
        );
        diffs.push(bound - plain);
    }
    diffs.sort_by(f64::total_cmp);
    println!(
        "the bound cookie adds {:.0} ns to a read (median of {ROUNDS} rounds; lowest {:.0}, highest {:.0})",
        diffs[ROUNDS / 2],
        diffs[0],
        diffs[ROUNDS - 1]
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let apps = rt.block_on(apps());
    if std::env::var_os("SS_PAIRED").is_some() {
        paired(&rt, &apps);
        std::process::exit(0);
    }
    if let Ok(case) = std::env::var("SS_COUNT") {
        let iters = std::env::var("SS_COUNT_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        count_mode(&rt, &apps, &case, iters);
        std::process::exit(0);
    }
    let mut g = c.benchmark_group("binding");
    g.bench_function("sealed/read", |b| {
        b.to_async(&rt)
            .iter(|| cookie_read(&apps.sealed, &apps.sealed_cookie))
    });
    g.bench_function("sealed_dbsc/read", |b| {
        b.to_async(&rt)
            .iter(|| cookie_read(&apps.dbsc, &apps.dbsc_cookie))
    });
    g.bench_function("jwt_bearer/read", |b| {
        b.to_async(&rt)
            .iter(|| bearer_read(&apps.bearer, "Bearer", &apps.bearer_token, None))
    });
    // A fresh proof per request, made outside the timed part.
    g.bench_function("jwt_dpop/read", |b| {
        b.to_async(&rt).iter_batched(
            || dpop_proof(&apps.dpop_key, "GET", "/read", Some(&apps.dpop_token)),
            |proof| {
                let apps = &apps;
                async move { bearer_read(&apps.dpop, "DPoP", &apps.dpop_token, Some(&proof)).await }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
