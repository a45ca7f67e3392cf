//! JWT sessions through the middleware: bearer and cookie transports, kid rotation, and the
//! JWK Set endpoint. The session scenarios run on the Poem middleware and on the tower layer
//! (see `http::app`); the JWK Set endpoint is Poem's.
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#![cfg(any(feature = "poem", feature = "tower"))]

mod http;

use ::http::StatusCode;
use http::app::{Adapter, App, Json, RespExt, Routes, both};
use sealed_session::{
    BearerConfig, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, SealedSession, Session, SessionError,
};

fn login(session: &Session) -> Result<Json, SessionError> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

fn me(session: &Session) -> Result<Json, SessionError> {
    let views = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", &views)?;
    Ok(Json(
        serde_json::json!({ "user": session.get::<String>("user")?, "views": views }),
    ))
}

fn ring(kid: &str) -> (JwtKey, JwtKeyring) {
    let (key, _) = JwtKey::generate(kid, JwtAlgorithm::EdDSA).unwrap();
    (key.clone(), JwtKeyring::new([key]).unwrap())
}

/// A codec bound to issuer `iss` and the audience `api`.
fn codec(ring: JwtKeyring, iss: &str) -> JwtCodec {
    JwtCodec::builder(ring)
        .issuer(iss)
        .audience("api")
        .build()
        .unwrap()
}

fn routes() -> Routes {
    Routes::new().post("/api/login", login).get("/api/me", me)
}

fn api(on: Adapter, ring: &JwtKeyring) -> App {
    on.app(
        &routes(),
        SealedSession::with_codec(codec(ring.clone(), "demo")).bearer(BearerConfig::new()),
    )
}

/// A response's body as JSON.
fn json(resp: &http::app::Resp) -> serde_json::Value {
    serde_json::from_str(resp.body()).unwrap()
}

async fn token_of(tc: &App) -> String {
    let v = json(&tc.post("/api/login").send().await);
    v["token"].as_str().unwrap().to_owned()
}

async fn jwt_bearer_sessions_count_and_refresh(on: Adapter) {
    let (_, ring) = ring("k1");
    let tc = api(on, &ring);
    let token = token_of(&tc).await;
    assert_eq!(token.split('.').count(), 3, "a compact JWS");
    let resp = tc
        .get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let next = resp
        .headers()
        .get("x-session-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let v = json(&resp);
    assert_eq!(v, serde_json::json!({"user": "admin", "views": 1}));
    let resp = tc
        .get("/api/me")
        .header("authorization", format!("Bearer {next}"))
        .send()
        .await;
    let v = json(&resp);
    assert_eq!(v["views"], 2);
    // Tampered: 401 with an RFC 6750 challenge.
    let mut bad = token.clone();
    bad.push('x');
    let resp = tc
        .get("/api/me")
        .header("authorization", format!("Bearer {bad}"))
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

async fn a_token_of_another_issuer_is_refused(on: Adapter) {
    let (key, ring) = ring("k1");
    let other = on.app(
        &Routes::new().post("/api/login", login),
        SealedSession::with_codec(codec(JwtKeyring::new([key]).unwrap(), "other"))
            .bearer(BearerConfig::new()),
    );
    let token = token_of(&other).await;
    let resp = api(on, &ring)
        .get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("issuer or audience"), "{challenge}");
}

async fn an_old_kid_is_reissued_under_the_new_one_and_a_removed_kid_is_refused(on: Adapter) {
    let (old_key, old_ring) = ring("k1");
    let token = token_of(&api(on, &old_ring)).await;
    let (new_key, _) = JwtKey::generate("k2", JwtAlgorithm::EdDSA).unwrap();
    let rotated = JwtKeyring::new([new_key.clone(), old_key]).unwrap();
    let resp = api(on, &rotated)
        .get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    let reissued = resp
        .headers()
        .get("x-session-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let header = reissued.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "k2");
    let only_new = JwtKeyring::new([new_key]).unwrap();
    let resp = api(on, &only_new)
        .get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
}

async fn a_jwt_can_travel_in_a_cookie_too(on: Adapter) {
    let (_, ring) = ring("k1");
    let tc = on.app(&routes(), SealedSession::with_codec(codec(ring, "demo")));
    let resp = tc.post("/api/login").send().await;
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let pair = cookie.split(';').next().unwrap().to_owned();
    assert!(pair.starts_with("__Host-sid=ey"), "{pair}");
    let resp = tc.get("/api/me").header("cookie", pair).send().await;
    let v = json(&resp);
    assert_eq!(v["user"], "admin");
}

/// Poem only: `Jwks` is a Poem endpoint (no session, no middleware: nothing of either adapter
/// runs); an axum application serves `JwtKeyring::jwks_json` itself.
#[cfg(feature = "poem")]
#[tokio::test]
async fn the_jwk_set_endpoint_publishes_public_keys_only() {
    use poem::test::TestClient;
    use poem::{Route, get};
    use sealed_session::Jwks;

    let (_, ring) = ring("k1");
    let tc = TestClient::new(Route::new().at("/.well-known/jwks.json", get(Jwks::new(&ring))));
    let resp = tc.get("/.well-known/jwks.json").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/jwk-set+json");
    let v: serde_json::Value = resp.0.into_body().into_json().await.unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], "k1");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["use"], "sig");
    assert!(keys[0].get("d").is_none(), "no private part");

    let (hmac, _) = JwtKey::generate("h1", JwtAlgorithm::HS256).unwrap();
    let secret_only = JwtKeyring::new([hmac]).unwrap();
    let tc = TestClient::new(Route::new().at("/jwks", get(Jwks::new(&secret_only))));
    let v: serde_json::Value = tc
        .get("/jwks")
        .send()
        .await
        .0
        .into_body()
        .into_json()
        .await
        .unwrap();
    assert_eq!(
        v,
        serde_json::json!({"keys": []}),
        "HMAC secrets are never published"
    );
}

/// The `exp` claim of a token, in seconds.
fn exp_of(token: &str) -> u64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    claims["exp"].as_u64().unwrap()
}

/// `SealedSession::jwt` gives the middleware's policy to the codec: the `exp` other
/// verifiers read is the idle deadline this middleware enforces, not the codec's default.
async fn the_jwt_constructor_gives_the_codec_the_middlewares_policy(on: Adapter) {
    let (_, ring) = ring("k1");
    let idle = std::time::Duration::from_secs(5 * 60);
    let app = |mw: SealedSession| {
        on.app(
            &Routes::new().post("/api/login", login),
            mw.bearer(BearerConfig::new()).idle_timeout(Some(idle)),
        )
    };
    let with_policy = token_of(&app(SealedSession::jwt(codec(ring.clone(), "demo")))).await;
    let without = token_of(&app(SealedSession::with_codec(codec(ring, "demo")))).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = exp_of(&with_policy);
    assert!(exp <= now + idle.as_secs() + 1, "exp {exp}, now {now}");
    assert!(
        exp_of(&without) > now + idle.as_secs() + 60,
        "with_codec keeps the codec's own 1-hour idle timeout"
    );
}

both!(
    jwt_bearer_sessions_count_and_refresh,
    a_token_of_another_issuer_is_refused,
    an_old_kid_is_reissued_under_the_new_one_and_a_removed_kid_is_refused,
    a_jwt_can_travel_in_a_cookie_too,
    the_jwt_constructor_gives_the_codec_the_middlewares_policy,
);
