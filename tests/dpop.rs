//! DPoP (RFC 9449) on bearer sessions, driven by the test-only client of
//! `tests/common/dpop_client.rs`, which was written from the RFCs apart from the server
//! code (and signs with RustCrypto, not with the server's aws-lc and jsonwebtoken). Each
//! scenario runs on the Poem middleware and on the tower layer.
//!
//! The attacks of issue 28: a bound token sent as `Bearer`; a proof replayed, by another
//! key, for another method or URI, stale or from the future, with a wrong or missing `ath`;
//! `alg` none or HS256; a private or missing `jwk`; two proofs; an unbound token sent with
//! the DPoP scheme; a missing or foreign server nonce.
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#![cfg(any(feature = "poem", feature = "tower"))]

mod http;
mod common {
    pub mod dpop_client;
    #[cfg(feature = "redis")]
    pub mod redis;
}

use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use common::dpop_client::{self as client, Alg, DpopKey, JwkHeader, ProofSpec, Sig};
use http::app::{Adapter, App, Json, Resp, RespExt, Routes, both};
use sealed_session::binding::{Dpop, MemoryReplayCache, ProofAlgorithm};
use sealed_session::denylist::MemoryDenylist;
use sealed_session::{
    BearerConfig, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, ManualClock, SealedSession, Session,
    SessionError, Timestamp,
};

/// 2025-11-24T16:00:00Z, the server's clock and the client's.
const T0: u64 = 1_764_000_000;
const HOST: &str = "api.test";

fn url(path: &str) -> String {
    format!("http://{HOST}{path}")
}

fn login(session: &Session) -> Result<Json, SessionError> {
    session.regenerate()?;
    session.insert("user", "admin")?;
    session.set_subject("admin");
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

fn me(session: &Session) -> Result<Json, SessionError> {
    let views = session.get::<u64>("views")?.unwrap_or(0) + 1;
    session.insert("views", &views)?;
    Ok(Json(serde_json::json!({
        "user": session.get::<String>("user")?,
        "views": views,
        "bound": session.binding().is_some(),
    })))
}

fn logout(session: &Session) -> Result<Json, SessionError> {
    session.destroy()?;
    Ok(Json(serde_json::json!({ "ok": true })))
}

/// Reads nothing and writes nothing: no token is issued.
fn ping(_session: &Session) -> Result<Json, SessionError> {
    Ok(Json(serde_json::json!({ "pong": true })))
}

/// Ends the session and starts another, unbound: what DPoP's required mode cannot send.
fn switch(session: &Session) -> Result<Json, SessionError> {
    session.destroy()?;
    session.insert("guest", &true)?;
    Ok(Json(serde_json::json!({ "ok": true })))
}

struct Api {
    app: App,
    clock: ManualClock,
}

impl Api {
    fn new(on: Adapter, dpop: Dpop) -> Api {
        Api::with(on, dpop, |s| s)
    }

    fn with(on: Adapter, dpop: Dpop, f: impl FnOnce(SealedSession) -> SealedSession) -> Api {
        let (key, _) = JwtKey::generate("k1", JwtAlgorithm::EdDSA).unwrap();
        Api::keyed(on, dpop, key, f)
    }

    /// Sessions signed with `key`.
    fn keyed(
        on: Adapter,
        dpop: Dpop,
        key: JwtKey,
        f: impl FnOnce(SealedSession) -> SealedSession,
    ) -> Api {
        let codec = JwtCodec::builder(JwtKeyring::new([key]).unwrap())
            .issuer("https://api.test")
            .audience("api")
            .build()
            .unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0 * 1000));
        let sessions = SealedSession::jwt(codec)
            .bearer(BearerConfig::new())
            .denylist(Arc::new(MemoryDenylist::with_clock(clock.clone())))
            .clock(clock.clone())
            .dpop(dpop);
        let sessions = f(sessions);
        let routes = Routes::new()
            .post("/api/login", login)
            .get("/api/me", me)
            .post("/api/logout", logout)
            .post("/api/switch", switch)
            .get("/api/ping", ping);
        Api {
            app: on.app(&routes, sessions),
            clock,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_millis() / 1000
    }

    /// `POST /api/login`, with `proof` in `DPoP` if any.
    async fn login(&self, proof: Option<String>) -> Resp {
        let mut req = self.app.post("/api/login").header("host", HOST);
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        req.send().await
    }

    /// Logs in with a valid proof by `key`; the bound token.
    async fn bound_token(&self, key: &DpopKey) -> String {
        let proof = key.proof_for("POST", &url("/api/login"), None, None, self.now());
        let resp = self.login(Some(proof)).await;
        resp.assert_status_is_ok();
        body(&resp)["token"].as_str().unwrap().to_owned()
    }

    /// `GET /api/me` with `Authorization: {scheme} {token}` and each of `proofs`.
    async fn me(&self, scheme: &str, token: &str, proofs: &[String]) -> Resp {
        let mut req = self
            .app
            .get("/api/me")
            .header("host", HOST)
            .header("authorization", format!("{scheme} {token}"));
        for p in proofs {
            req = req.header("dpop", p.as_str());
        }
        req.send().await
    }

    /// A valid proof by `key` for `GET /api/me` with `token`.
    fn me_proof(&self, key: &DpopKey, token: &str) -> String {
        key.proof_for("GET", &url("/api/me"), Some(token), None, self.now())
    }
}

trait ClockExt {
    fn now_millis(&self) -> u64;
}

impl ClockExt for ManualClock {
    fn now_millis(&self) -> u64 {
        sealed_session::Clock::now(self).as_millis()
    }
}

fn body(resp: &Resp) -> serde_json::Value {
    serde_json::from_str(resp.body()).unwrap_or_else(|e| panic!("{e}: {}", resp.body()))
}

/// The JWT's claims, read without verifying (the client's own decoder).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&client::b64u_decode(payload).unwrap()).unwrap()
}

/// A 401 whose `WWW-Authenticate` is a DPoP challenge with `error` and the allowed
/// algorithms, read by the client's RFC 9449 parser.
#[track_caller]
fn assert_refused(resp: &Resp, error: &str) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{}", resp.body());
    let www = resp
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate header")
        .to_str()
        .unwrap();
    let challenge = client::challenge_of(www).expect("a DPoP challenge");
    assert!(challenge.is_dpop(), "{www}");
    assert_eq!(challenge.error.as_deref(), Some(error), "{www}");
    assert!(challenge.algs.iter().any(|a| a == "ES256"), "{www}");
    assert!(challenge.algs.iter().any(|a| a == "EdDSA"), "{www}");
}

// ---- Binding and use ----

async fn a_login_with_a_proof_gets_a_token_bound_to_its_key(on: Adapter) {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let api = Api::new(on, Dpop::new());
        let key = DpopKey::generate(alg);
        let mut token = api.bound_token(&key).await;
        // RFC 9449, section 6.1: cnf.jkt is the key's RFC 7638 thumbprint.
        assert_eq!(claims(&token)["cnf"]["jkt"], key.thumbprint(), "{alg:?}");
        for views in 1..=3 {
            let resp = api.me("DPoP", &token, &[api.me_proof(&key, &token)]).await;
            resp.assert_status_is_ok();
            assert_eq!(body(&resp)["views"], views);
            assert_eq!(body(&resp)["bound"], true);
            // Each write re-issues the token; it stays bound to the same key.
            let next = resp
                .headers()
                .get("x-session-token")
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(claims(next)["cnf"]["jkt"], key.thumbprint());
            token = next.to_owned();
        }
    }
}

async fn a_login_without_a_proof_gets_a_plain_bearer_token_when_dpop_is_optional(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let resp = api.login(None).await;
    resp.assert_status_is_ok();
    let token = body(&resp)["token"].as_str().unwrap().to_owned();
    assert!(claims(&token).get("cnf").is_none());
    let resp = api.me("Bearer", &token, &[]).await;
    resp.assert_status_is_ok();
    assert_eq!(body(&resp)["bound"], false);
    // The same unbound token with the DPoP scheme is refused (RFC 9449, section 7.1).
    let key = DpopKey::generate(Alg::Es256);
    let resp = api.me("DPoP", &token, &[api.me_proof(&key, &token)]).await;
    assert_refused(&resp, "invalid_token");
}

async fn a_bound_token_sent_as_bearer_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    assert_refused(&api.me("Bearer", &token, &[]).await, "invalid_token");
    // Even with a valid proof next to it.
    let resp = api
        .me("Bearer", &token, &[api.me_proof(&key, &token)])
        .await;
    assert_refused(&resp, "invalid_token");
    // Without any proof, with the right scheme.
    assert_refused(&api.me("DPoP", &token, &[]).await, "invalid_dpop_proof");
}

async fn a_replayed_proof_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::EdDsa);
    let token = api.bound_token(&key).await;
    let proof = api.me_proof(&key, &token);
    api.me("DPoP", &token, std::slice::from_ref(&proof))
        .await
        .assert_status_is_ok();
    assert_refused(
        &api.me("DPoP", &token, &[proof]).await,
        "invalid_dpop_proof",
    );
    // A proof replayed at login is refused as well.
    let login_proof = key.proof_for("POST", &url("/api/login"), None, None, api.now());
    api.login(Some(login_proof.clone()))
        .await
        .assert_status_is_ok();
    assert_refused(&api.login(Some(login_proof)).await, "invalid_dpop_proof");
}

async fn a_proof_by_another_key_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let (key, thief) = (DpopKey::generate(Alg::Es256), DpopKey::generate(Alg::Es256));
    let token = api.bound_token(&key).await;
    // The thief has the token, and signs proofs with a key of its own.
    let resp = api
        .me("DPoP", &token, &[api.me_proof(&thief, &token)])
        .await;
    assert_refused(&resp, "invalid_dpop_proof");
    assert!(resp.body().contains("another key"), "{}", resp.body());
    // Or puts the owner's public key in the header and signs with its own.
    let forged = thief.proof(
        &ProofSpec::for_url("GET", &url("/api/me"))
            .iat(api.now())
            .access_token(&token)
            .jwk_of(&key),
    );
    assert_refused(
        &api.me("DPoP", &token, &[forged]).await,
        "invalid_dpop_proof",
    );
}

async fn a_proof_for_another_method_or_uri_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    let now = api.now();
    for (htm, target) in [
        ("POST", url("/api/me")),
        ("get", url("/api/me")),
        ("GET", url("/api/logout")),
        ("GET", "https://api.test/api/me".to_owned()),
        ("GET", "http://other.test/api/me".to_owned()),
        ("GET", "http://api.test:8080/api/me".to_owned()),
        ("GET", "/api/me".to_owned()),
    ] {
        let proof = key.proof_for(htm, &target, Some(&token), None, now);
        let resp = api.me("DPoP", &token, &[proof]).await;
        assert_refused(&resp, "invalid_dpop_proof");
    }
    // The query and fragment do not count, nor the case of the scheme and host, nor a
    // default port (RFC 9449, section 4.3, point 9).
    for target in [
        "http://api.test/api/me?x=1#f",
        "HTTP://API.TEST/api/me",
        "http://api.test:80/api/me",
    ] {
        let spec = ProofSpec::new("GET", target).iat(now).access_token(&token);
        let resp = api.me("DPoP", &token, &[key.proof(&spec)]).await;
        resp.assert_status_is_ok();
    }
}

async fn a_stale_or_future_proof_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new().max_age(Duration::from_secs(60)));
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    for iat in [api.now() - 61, api.now() + 6, 0] {
        let proof = key.proof_for("GET", &url("/api/me"), Some(&token), None, iat);
        assert_refused(
            &api.me("DPoP", &token, &[proof]).await,
            "invalid_dpop_proof",
        );
    }
    for iat in [api.now() - 60, api.now() + 5] {
        let proof = key.proof_for("GET", &url("/api/me"), Some(&token), None, iat);
        api.me("DPoP", &token, &[proof]).await.assert_status_is_ok();
    }
}

async fn a_wrong_or_missing_ath_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    let other = api.bound_token(&key).await;
    let now = api.now();
    let for_other = key.proof_for("GET", &url("/api/me"), Some(&other), None, now);
    let resp = api.me("DPoP", &token, &[for_other]).await;
    assert_refused(&resp, "invalid_dpop_proof");
    assert!(resp.body().contains("ath"), "{}", resp.body());
    let without = key.proof_for("GET", &url("/api/me"), None, None, now);
    assert_refused(
        &api.me("DPoP", &token, &[without]).await,
        "invalid_dpop_proof",
    );
}

async fn forged_and_malformed_proofs_are_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    let valid = || {
        ProofSpec::for_url("GET", &url("/api/me"))
            .iat(api.now())
            .access_token(&token)
    };
    let specs = [
        ("alg none", valid().alg_none()),
        (
            "HS256",
            valid().hmac(b"the public key as an HMAC secret, or any"),
        ),
        ("alg RS256 on an EC key", valid().alg("RS256")),
        ("typ JWT", valid().typ("JWT")),
        ("no typ", valid().without_header_param("typ")),
        ("private jwk", valid().private_jwk()),
        ("no jwk", valid().without_jwk()),
        ("DER signature", valid().signature(Sig::Der)),
        ("empty signature", valid().signature(Sig::Empty)),
        ("garbage signature", valid().signature(Sig::Garbage)),
        ("no jti", valid().without_claim("jti")),
        ("no htm", valid().without_claim("htm")),
        ("no htu", valid().without_claim("htu")),
        ("no iat", valid().without_claim("iat")),
        ("string iat", valid().claim("iat", serde_json::json!("now"))),
        (
            "crit",
            valid().header_param("crit", serde_json::json!(["exp"])),
        ),
    ];
    for (what, spec) in specs {
        let resp = api.me("DPoP", &token, &[key.proof(&spec)]).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            resp.body()
        );
        assert_refused(&resp, "invalid_dpop_proof");
    }
    // The header's jwk replaced by another key's: the signature does not verify.
    let other = DpopKey::generate(Alg::Es256);
    let swapped = valid().jwk(JwkHeader::Replace(other.public_jwk()));
    assert_refused(
        &api.me("DPoP", &token, &[key.proof(&swapped)]).await,
        "invalid_dpop_proof",
    );
    for junk in [
        "".to_owned(),
        "a.b.c".to_owned(),
        "....".to_owned(),
        "x".repeat(5000),
        "eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.AAAA".to_owned(),
    ] {
        let resp = api.me("DPoP", &token, &[junk]).await;
        assert_refused(&resp, "invalid_dpop_proof");
    }
    // Two proofs, each valid: refused (RFC 9449, section 4.3, point 1).
    let two = [api.me_proof(&key, &token), api.me_proof(&key, &token)];
    assert_refused(&api.me("DPoP", &token, &two).await, "invalid_dpop_proof");
    // After all that, a valid proof still works: nothing above was recorded as used.
    api.me("DPoP", &token, &[api.me_proof(&key, &token)])
        .await
        .assert_status_is_ok();
}

async fn a_login_proof_that_fails_issues_no_session(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::Es256);
    let stale = key.proof_for("POST", &url("/api/login"), None, None, api.now() - 3600);
    let resp = api.login(Some(stale)).await;
    assert_refused(&resp, "invalid_dpop_proof");
    assert!(resp.headers().get("x-session-token").is_none());
}

/// A proof that comes with no token and gets none fills nothing: only a proof a token is
/// issued to is recorded, so proofs by keys a client makes up cannot fill the cache.
async fn a_proof_that_issues_no_token_is_not_recorded(on: Adapter) {
    let cache = Arc::new(MemoryReplayCache::new(100));
    let api = Api::new(on, Dpop::new().replay_cache(cache.clone()));
    for _ in 0..3 {
        let key = DpopKey::generate(Alg::EdDsa);
        let proof = key.proof_for("GET", &url("/api/ping"), None, None, api.now());
        let resp = api
            .app
            .get("/api/ping")
            .header("host", HOST)
            .header("dpop", proof)
            .send()
            .await;
        resp.assert_status_is_ok();
        assert!(resp.headers().get("x-session-token").is_none());
    }
    assert_eq!(cache.len(), 0);
    let key = DpopKey::generate(Alg::EdDsa);
    let _token = api.bound_token(&key).await;
    assert_eq!(
        cache.len(),
        1,
        "the login's proof, once a token is issued to it"
    );
}

// ---- Settings ----

async fn required_dpop_refuses_plain_bearer_tokens_and_unproven_logins(on: Adapter) {
    let api = Api::new(on, Dpop::new().required(true));
    // A login without a proof gets no token: 401 with a DPoP challenge (no error code:
    // the request had no credentials, RFC 6750 section 3.1).
    let resp = api.login(None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{}", resp.body());
    assert!(resp.headers().get("x-session-token").is_none());
    let www = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    let challenge = client::challenge_of(www).unwrap();
    assert!(challenge.is_dpop() && challenge.error.is_none(), "{www}");
    // A login with a proof works.
    let key = DpopKey::generate(Alg::EdDsa);
    let token = api.bound_token(&key).await;
    api.me("DPoP", &token, &[api.me_proof(&key, &token)])
        .await
        .assert_status_is_ok();
    // A plain bearer token (made with the same keys where DPoP is optional) is refused.
    let (jwt_key, _) = JwtKey::generate("k1", JwtAlgorithm::EdDSA).unwrap();
    let optional = Api::keyed(on, Dpop::new(), jwt_key.clone(), |s| s);
    let required = Api::keyed(on, Dpop::new().required(true), jwt_key, |s| s);
    let plain = body(&optional.login(None).await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    optional
        .me("Bearer", &plain, &[])
        .await
        .assert_status_is_ok();
    assert_refused(&required.me("Bearer", &plain, &[]).await, "invalid_token");
}

async fn server_nonces_are_required_then_accepted_and_renewed(on: Adapter) {
    let secret = b"the nonce secret every instance shares, 32+ bytes";
    let api = Api::new(
        on,
        Dpop::new()
            .nonces(secret, Duration::from_secs(300))
            .unwrap(),
    );
    let key = DpopKey::generate(Alg::Es256);
    let proof = key.proof_for("POST", &url("/api/login"), None, None, api.now());
    let resp = api.login(Some(proof)).await;
    assert_refused(&resp, "use_dpop_nonce");
    let nonce = client::wants_nonce(resp.status().as_u16(), resp.headers()).expect("a nonce");
    let proof = key.proof_for("POST", &url("/api/login"), None, Some(&nonce), api.now());
    let resp = api.login(Some(proof)).await;
    resp.assert_status_is_ok();
    let token = body(&resp)["token"].as_str().unwrap().to_owned();
    // A fresh nonce is good for its lifetime; past half of it, the answer brings the next.
    api.clock.advance(Duration::from_secs(100));
    let proof = key.proof_for(
        "GET",
        &url("/api/me"),
        Some(&token),
        Some(&nonce),
        api.now(),
    );
    let resp = api.me("DPoP", &token, &[proof]).await;
    resp.assert_status_is_ok();
    assert!(client::nonce_of(resp.headers()).is_none());
    api.clock.advance(Duration::from_secs(100));
    let proof = key.proof_for(
        "GET",
        &url("/api/me"),
        Some(&token),
        Some(&nonce),
        api.now(),
    );
    let resp = api.me("DPoP", &token, &[proof]).await;
    resp.assert_status_is_ok();
    let next = client::nonce_of(resp.headers()).expect("the next nonce");
    assert_ne!(next, nonce);
    // Past its lifetime the old one is refused with a new one.
    api.clock.advance(Duration::from_secs(101));
    let proof = key.proof_for(
        "GET",
        &url("/api/me"),
        Some(&token),
        Some(&nonce),
        api.now(),
    );
    let resp = api.me("DPoP", &token, &[proof]).await;
    assert_refused(&resp, "use_dpop_nonce");
    // A nonce another server made (another secret) is refused.
    let other = Api::new(
        on,
        Dpop::new()
            .nonces(
                b"another secret, also 32 bytes or more",
                Duration::from_secs(300),
            )
            .unwrap(),
    );
    let proof = key.proof_for("POST", &url("/api/login"), None, Some(&next), other.now());
    assert_refused(&other.login(Some(proof)).await, "use_dpop_nonce");
}

async fn the_uri_is_read_from_a_trusted_proxy_or_the_configured_origin(on: Adapter) {
    let key = DpopKey::generate(Alg::Es256);
    // Behind a trusted proxy: X-Forwarded-Proto and X-Forwarded-Host name the URI.
    let api = Api::with(on, Dpop::new(), |s| s.trust_proxy(true));
    let proof = key.proof_for(
        "POST",
        "https://public.example/api/login",
        None,
        None,
        api.now(),
    );
    let resp = api
        .app
        .post("/api/login")
        .header("host", "10.0.0.5:8080")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example")
        .header("dpop", proof)
        .send()
        .await;
    resp.assert_status_is_ok();
    // Without trust_proxy, the forwarded headers are the client's word and do not count.
    let api = Api::new(on, Dpop::new());
    let proof = key.proof_for(
        "POST",
        "https://public.example/api/login",
        None,
        None,
        api.now(),
    );
    let resp = api
        .app
        .post("/api/login")
        .header("host", "10.0.0.5:8080")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "public.example")
        .header("dpop", proof)
        .send()
        .await;
    assert_refused(&resp, "invalid_dpop_proof");
    // A configured origin wins over whatever Host says.
    let api = Api::new(on, Dpop::new().origin("https://public.example").unwrap());
    let proof = key.proof_for(
        "POST",
        "https://public.example/api/login",
        None,
        None,
        api.now(),
    );
    let resp = api
        .app
        .post("/api/login")
        .header("host", "evil.example")
        .header("dpop", proof)
        .send()
        .await;
    resp.assert_status_is_ok();
}

async fn a_full_replay_cache_refuses_proofs_rather_than_forget_them(on: Adapter) {
    let api = Api::new(
        on,
        Dpop::new().replay_cache(Arc::new(MemoryReplayCache::new(2))),
    );
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await; // the first proof
    api.me("DPoP", &token, &[api.me_proof(&key, &token)])
        .await
        .assert_status_is_ok();
    let resp = api.me("DPoP", &token, &[api.me_proof(&key, &token)]).await;
    assert_refused(&resp, "invalid_dpop_proof");
    // Once the window has passed, the cache has room again.
    api.clock.advance(Duration::from_secs(66));
    api.me("DPoP", &token, &[api.me_proof(&key, &token)])
        .await
        .assert_status_is_ok();
}

async fn a_revoked_bound_token_is_refused_even_with_a_valid_proof(on: Adapter) {
    let api = Api::new(on, Dpop::new());
    let key = DpopKey::generate(Alg::EdDsa);
    let token = api.bound_token(&key).await;
    let proof = key.proof_for("POST", &url("/api/logout"), Some(&token), None, api.now());
    api.app
        .post("/api/logout")
        .header("host", HOST)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .assert_status_is_ok();
    let resp = api.me("DPoP", &token, &[api.me_proof(&key, &token)]).await;
    assert_refused(&resp, "invalid_token");
}

/// Under required DPoP, a handler that ends the session and starts an unbound one gets a
/// 401 (no unbound token goes out), and the session it ended is ended all the same.
async fn an_ended_session_is_revoked_even_when_its_answer_is_refused(on: Adapter) {
    let api = Api::new(on, Dpop::new().required(true));
    let key = DpopKey::generate(Alg::EdDsa);
    let token = api.bound_token(&key).await;
    let proof = key.proof_for("POST", &url("/api/switch"), Some(&token), None, api.now());
    let resp = api
        .app
        .post("/api/switch")
        .header("host", HOST)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{}", resp.body());
    let resp = api.me("DPoP", &token, &[api.me_proof(&key, &token)]).await;
    assert_refused(&resp, "invalid_token");
}

async fn only_the_allowed_algorithms_are_accepted(on: Adapter) {
    let api = Api::new(
        on,
        Dpop::new().algorithms(&[ProofAlgorithm::EdDsa]).unwrap(),
    );
    let es = DpopKey::generate(Alg::Es256);
    let proof = es.proof_for("POST", &url("/api/login"), None, None, api.now());
    let resp = api.login(Some(proof)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let www = resp
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    let challenge = client::challenge_of(www).unwrap();
    assert!(!challenge.algs.iter().any(|a| a == "ES256"), "{www}");
    assert!(challenge.algs.iter().any(|a| a == "EdDSA"), "{www}");
    let ed = DpopKey::generate(Alg::EdDsa);
    api.bound_token(&ed).await;
}

/// A DPoP-bound token where its binding is not checked: sent as the session cookie of a
/// cookie middleware, or to a bearer middleware without DPoP, both with the same keys. It
/// is refused, never served without its proof.
async fn a_bound_token_is_refused_where_its_binding_is_not_checked(on: Adapter) {
    let (jwt_key, _) = JwtKey::generate("k1", JwtAlgorithm::EdDSA).unwrap();
    let api = Api::keyed(on, Dpop::new(), jwt_key.clone(), |s| s);
    let key = DpopKey::generate(Alg::Es256);
    let token = api.bound_token(&key).await;
    let codec = JwtCodec::builder(JwtKeyring::new([jwt_key]).unwrap())
        .issuer("https://api.test")
        .audience("api")
        .build()
        .unwrap();
    let routes = Routes::new().get("/api/me", me);
    let clock = ManualClock::new(Timestamp::from_millis(T0 * 1000));
    let without_dpop = on.app(
        &routes,
        SealedSession::jwt(codec.clone())
            .bearer(BearerConfig::new())
            .clock(clock.clone()),
    );
    let resp = without_dpop
        .get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{}", resp.body());
    let cookies = on.app(&routes, SealedSession::jwt(codec).clock(clock));
    let resp = cookies
        .get("/api/me")
        .header("cookie", format!("__Host-sid={token}"))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_eq!(
        body(&resp)["user"],
        serde_json::Value::Null,
        "served as anonymous"
    );
}

/// Two instances behind a load balancer share the proofs seen through Redis: a proof
/// accepted by one is refused by the other; and Redis down is a 503, not an accepted proof.
#[cfg(feature = "redis")]
pub(crate) async fn a_proof_used_on_one_instance_is_refused_on_another(on: Adapter) {
    use sealed_session::binding::RedisReplayCache;
    let Some(mut redis) = common::redis::RedisServer::start("dpop replay") else {
        return;
    };
    let cache = || async {
        RedisReplayCache::builder(redis.url())
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap()
    };
    let (jwt_key, _) = JwtKey::generate("k1", JwtAlgorithm::EdDSA).unwrap();
    let a = Api::keyed(
        on,
        Dpop::new().replay_cache(Arc::new(cache().await)),
        jwt_key.clone(),
        |s| s,
    );
    let b = Api::keyed(
        on,
        Dpop::new().replay_cache(Arc::new(cache().await)),
        jwt_key,
        |s| s,
    );
    let key = DpopKey::generate(Alg::Es256);
    let token = a.bound_token(&key).await;
    let proof = a.me_proof(&key, &token);
    a.me("DPoP", &token, std::slice::from_ref(&proof))
        .await
        .assert_status_is_ok();
    assert_refused(&b.me("DPoP", &token, &[proof]).await, "invalid_dpop_proof");
    b.me("DPoP", &token, &[b.me_proof(&key, &token)])
        .await
        .assert_status_is_ok();
    redis.stop();
    let resp = a.me("DPoP", &token, &[a.me_proof(&key, &token)]).await;
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.body()
    );
}

/// The shared-cache scenario, on both adapters.
#[cfg(feature = "redis")]
mod shared {
    use super::*;
    both!(a_proof_used_on_one_instance_is_refused_on_another);
}

both!(
    a_bound_token_is_refused_where_its_binding_is_not_checked,
    a_login_with_a_proof_gets_a_token_bound_to_its_key,
    a_login_without_a_proof_gets_a_plain_bearer_token_when_dpop_is_optional,
    a_bound_token_sent_as_bearer_is_refused,
    a_replayed_proof_is_refused,
    a_proof_by_another_key_is_refused,
    a_proof_for_another_method_or_uri_is_refused,
    a_stale_or_future_proof_is_refused,
    a_wrong_or_missing_ath_is_refused,
    forged_and_malformed_proofs_are_refused,
    a_login_proof_that_fails_issues_no_session,
    required_dpop_refuses_plain_bearer_tokens_and_unproven_logins,
    an_ended_session_is_revoked_even_when_its_answer_is_refused,
    server_nonces_are_required_then_accepted_and_renewed,
    the_uri_is_read_from_a_trusted_proxy_or_the_configured_origin,
    a_full_replay_cache_refuses_proofs_rather_than_forget_them,
    a_proof_that_issues_no_token_is_not_recorded,
    a_revoked_bound_token_is_refused_even_with_a_valid_proof,
    only_the_allowed_algorithms_are_accepted,
);
