//! Device Bound Session Credentials (the W3C DBSC draft) on cookie sessions, driven over
//! real HTTP by the test-only browser of `tests/common/dbsc_browser.rs`, which was written
//! from the draft (and Chromium's client) apart from the server code, and signs with
//! RustCrypto. The browser's clock is the server's, so the bound cookie's expiry and the
//! refresh cycle run without waiting. Each scenario runs on the Poem middleware and on the
//! tower layer.
//!
//! The attacks of issue 28: a stolen session cookie without the bound cookie; both cookies
//! stolen and replayed after the bound one expires; a replayed refresh proof; a proof by
//! another key; a `jwk` in a refresh proof; `alg` none or HS256; a challenge of another
//! session.
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
#![cfg(any(feature = "poem", feature = "tower"))]

mod http;
mod common {
    pub mod dbsc_browser;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::dbsc_browser::{Browser, BrowserClock, ProofBuilder, Response, SessionKey};
use http::app::{Adapter, App, Req, Routes, both};
use http_body_util::BodyExt;
use sealed_session::binding::{Dbsc, MemoryReplayCache};
use sealed_session::denylist::MemoryDenylist;
use sealed_session::{Clock, Keyring, SealedSession, Secure, Session, SessionError, Timestamp};

/// 2025-11-24T16:00:00Z.
const T0_MS: u64 = 1_764_000_000_000;
const COOKIE: &str = "__Host-sid";
const BOUND: &str = "__Host-sid_bound";

/// The server reads the browser's clock.
struct Shared(Arc<AtomicU64>);

impl Clock for Shared {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

fn home(session: &Session) -> Result<String, SessionError> {
    Ok(match session.get::<String>("user")? {
        Some(user) => format!("signed in as {user}"),
        None => "anonymous".to_owned(),
    })
}

fn login(req: &Req) -> Result<String, SessionError> {
    let session = &req.session;
    session.regenerate()?;
    session.insert("user", "alice")?;
    session.set_subject("alice");
    Ok("welcome".to_owned())
}

/// A route that changes the session: each answer carries a new session cookie.
fn count(session: &Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("count")?.unwrap_or(0) + 1;
    session.insert("count", &n)?;
    Ok(format!("{n}"))
}

fn logout(session: &Session) -> Result<String, SessionError> {
    session.destroy()?;
    Ok("bye".to_owned())
}

fn admin(session: &Session) -> Result<String, SessionError> {
    Ok(format!(
        "admin page; bound: {}",
        session.binding().is_some()
    ))
}

/// Serves `app` over HTTP/1.1 on a free loopback port; its base URL.
async fn serve(app: App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let app = app.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await?.to_bytes();
                            let body = String::from_utf8_lossy(&bytes).into_owned();
                            let resp = app.call(::http::Request::from_parts(parts, body)).await;
                            Ok::<_, hyper::Error>(resp.map(|body| {
                                http_body_util::Full::new(hyper::body::Bytes::from(body))
                            }))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

/// A site with DBSC (binding required under `/admin`), and a clock the browsers share.
struct Site {
    base: String,
    clock: BrowserClock,
}

impl Site {
    async fn new(on: Adapter) -> Site {
        Site::with(on, Dbsc::new().require_for("/admin")).await
    }

    async fn with(on: Adapter, dbsc: Dbsc) -> Site {
        Site::serving(on, dbsc, |keys, _| SealedSession::sealed(keys)).await
    }

    /// The site with sessions made by `design` from the keys.
    async fn serving(
        on: Adapter,
        dbsc: Dbsc,
        design: impl FnOnce(Keyring, Shared) -> SealedSession,
    ) -> Site {
        let clock = BrowserClock::new(T0_MS);
        let keys = Keyring::from_secret("sealed-session DBSC test secret, long enough!").unwrap();
        let server_clock = Shared(clock.shared());
        let sessions = design(keys, Shared(clock.shared()))
            .clock(Shared(clock.shared()))
            .denylist(Arc::new(MemoryDenylist::with_clock(server_clock)))
            .device_bound(dbsc);
        let routes = Routes::new()
            .get("/", home)
            .post("/login", login)
            .post("/logout", logout)
            .post("/count", count)
            .get("/admin", admin);
        Site {
            base: serve(on.app(&routes, sessions)).await,
            clock,
        }
    }

    /// A DBSC browser, signed in (it registered a key).
    async fn signed_in(&self) -> Browser {
        let mut b = Browser::new(&self.base, self.clock.clone());
        let resp = b.post_form("/login", &[]).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(b.registrations(), 1, "{:?}", b.log());
        assert!(b.cookie(BOUND).is_some(), "{:?}", b.log());
        b
    }

    /// A browser without DBSC (it ignores the registration header).
    fn legacy(&self) -> Browser {
        let mut b = Browser::new(&self.base, self.clock.clone());
        b.supported_algorithms.clear();
        b
    }
}

fn cookie_pair(b: &Browser, name: &str) -> Option<String> {
    b.cookie(name).map(|v| format!("{name}={v}"))
}

/// What a thief holding these cookies (and no key) gets from `GET /`.
async fn thief_get(b: &Browser, cookies: &[String]) -> Response {
    let headers = vec![("Cookie".to_owned(), cookies.join("; "))];
    b.send_raw("GET", "/", headers, "").await
}

// ---- The cycle ----

async fn registration_then_expiry_then_a_signed_refresh(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let session = b.sessions()[0].clone();
    assert_eq!(session.credential_names(), [BOUND]);
    assert_eq!(b.get("/").await.body, "signed in as alice");
    for round in 1..=3 {
        // Past the bound cookie's 10 minutes: the browser refreshes before the request.
        site.clock.advance_secs(601);
        let resp = b.get("/").await;
        assert_eq!(
            resp.body,
            "signed in as alice",
            "round {round}: {:?}",
            b.log()
        );
        assert_eq!(b.refreshes(), round, "{:?}", b.log());
    }
    // The first refresh was answered with a 403 challenge only if none was cached: every
    // answer carries the next challenge, so the browser signs it at once.
    assert_eq!(b.refresh_failures(), 0);
    // The admin page, which needs binding, is served.
    assert_eq!(b.get("/admin").await.body, "admin page; bound: true");
}

async fn a_refresh_without_a_proof_gets_a_403_challenge(on: Adapter) {
    let site = Site::new(on).await;
    let b = site.signed_in().await;
    let id = b.sessions()[0].id.clone();
    let resp = b
        .send_raw_with_jar("POST", "/dbsc/refresh", b.refresh_headers(&id, None), "")
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    let challenge = resp
        .header("secure-session-challenge")
        .expect("a challenge");
    let entries = common::dbsc_browser::parse_challenge_header(&challenge).unwrap();
    assert_eq!(entries[0].session_id.as_deref(), Some(id.as_str()));
    // Signed by the registered key, it is answered with a new bound cookie.
    let proof = b
        .refresh_proof_for(&id, &entries[0].challenge)
        .unwrap()
        .build();
    let resp = b
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            b.refresh_headers(&id, Some(&proof)),
            "",
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.set_cookies().iter().any(|c| c.starts_with(BOUND)));
    // The same proof again: refused (a challenge is answered once).
    let resp = b
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            b.refresh_headers(&id, Some(&proof)),
            "",
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert!(!resp.set_cookies().iter().any(|c| c.starts_with(BOUND)));
}

async fn a_browser_that_never_registers_keeps_working(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.legacy();
    let resp = b.post_form("/login", &[]).await;
    assert!(resp.header("secure-session-registration").is_some());
    assert_eq!(b.registrations(), 0);
    site.clock.advance_secs(3000);
    assert_eq!(b.get("/").await.body, "signed in as alice");
    // But a route that requires binding refuses its session.
    let resp = b.get("/admin").await;
    assert_eq!(resp.status, 403, "{}", resp.body);
}

// ---- Theft ----

async fn a_stolen_session_cookie_without_the_bound_cookie_is_refused(on: Adapter) {
    let site = Site::new(on).await;
    let b = site.signed_in().await;
    let stolen = cookie_pair(&b, COOKIE).unwrap();
    let resp = thief_get(&b, &[stolen]).await;
    assert_eq!(resp.body, "anonymous");
    // The bound cookie of the session, forged or of another session, does not help.
    let other = site.signed_in().await;
    let mixed = [
        cookie_pair(&b, COOKIE).unwrap(),
        cookie_pair(&other, BOUND).unwrap(),
    ];
    assert_eq!(thief_get(&b, &mixed).await.body, "anonymous");
    let forged = [
        cookie_pair(&b, COOKIE).unwrap(),
        format!("{BOUND}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ];
    assert_eq!(thief_get(&b, &forged).await.body, "anonymous");
}

/// A bound cookie that verified is kept with its session's token in the open cache, so
/// that the same cookie sent again is not verified again: only the same bytes pass that way.
async fn a_kept_bound_cookie_admits_only_its_own_bytes(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let other = site.signed_in().await;
    // The owner's requests: the bound cookie verifies, then is admitted as kept.
    for _ in 0..3 {
        assert_eq!(b.get("/").await.body, "signed in as alice");
    }
    let session = cookie_pair(&b, COOKIE).unwrap();
    let bound = b.cookie(BOUND).unwrap();
    // The last character changed: other bytes, refused.
    let mut altered = bound.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for value in [
        altered,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        other.cookie(BOUND).unwrap(),
        bound.get(..31).unwrap().to_owned(),
        format!("{bound}A"),
    ] {
        let cookies = [session.clone(), format!("{BOUND}={value}")];
        assert_eq!(thief_get(&b, &cookies).await.body, "anonymous", "{value}");
    }
    // The kept cookie itself still passes, and the owner goes on.
    let cookies = [session.clone(), format!("{BOUND}={bound}")];
    assert_eq!(thief_get(&b, &cookies).await.body, "signed in as alice");
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

/// A write's new session cookie takes over the bound cookie that verified: the same
/// bound cookie keeps working with it, and nothing else does.
async fn a_written_session_still_needs_its_bound_cookie(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let other = site.signed_in().await;
    let before = b.cookie(COOKIE).unwrap();
    for n in 1..=3 {
        assert_eq!(b.post_form("/count", &[]).await.body, n.to_string());
    }
    assert_ne!(
        b.cookie(COOKIE).unwrap(),
        before,
        "a write sends a new cookie"
    );
    let session = cookie_pair(&b, COOKIE).unwrap();
    let bound = cookie_pair(&b, BOUND).unwrap();
    assert_eq!(
        thief_get(&b, std::slice::from_ref(&session)).await.body,
        "anonymous"
    );
    for wrong in [
        cookie_pair(&other, BOUND).unwrap(),
        format!("{BOUND}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let cookies = [session.clone(), wrong];
        assert_eq!(thief_get(&b, &cookies).await.body, "anonymous");
    }
    let both = [session.clone(), bound];
    assert_eq!(thief_get(&b, &both).await.body, "signed in as alice");
    // Past the bound cookie's life: the kept one is refused too; the owner refreshes.
    site.clock.advance_secs(661);
    assert_eq!(thief_get(&b, &both).await.body, "anonymous");
    assert_eq!(b.post_form("/count", &[]).await.body, "4", "{:?}", b.log());
}

async fn both_cookies_stolen_stop_working_when_the_bound_one_expires(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let stolen = [
        cookie_pair(&b, COOKIE).unwrap(),
        cookie_pair(&b, BOUND).unwrap(),
    ];
    // Within the bound cookie's life, both cookies together work (the window DBSC allows).
    assert_eq!(thief_get(&b, &stolen).await.body, "signed in as alice");
    // Past its Max-Age and the minute of grace for the browser's clock.
    site.clock.advance_secs(661);
    assert_eq!(thief_get(&b, &stolen).await.body, "anonymous");
    // The thief cannot refresh: no proof, or a proof by a key of its own.
    let id = b.sessions()[0].id.clone();
    let challenge = thief_challenge(&b, &id, &stolen).await;
    let thief_key = SessionKey::generate();
    let proof = ProofBuilder::refresh(&thief_key, &challenge).build();
    let resp = b
        .send_raw(
            "POST",
            "/dbsc/refresh",
            with_cookies(b.refresh_headers(&id, Some(&proof)), &stolen),
            "",
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert!(!resp.set_cookies().iter().any(|c| c.starts_with(BOUND)));
    // The owner's browser still refreshes and goes on.
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

fn with_cookies(mut headers: Vec<(String, String)>, cookies: &[String]) -> Vec<(String, String)> {
    headers.push(("Cookie".to_owned(), cookies.join("; ")));
    headers
}

/// The refresh challenge a client holding only `cookies` (no key) gets for the DBSC
/// session `id`: a refresh without a proof, answered with a 403.
async fn thief_challenge(b: &Browser, id: &str, cookies: &[String]) -> String {
    let headers = with_cookies(b.refresh_headers(id, None), cookies);
    let resp = b.send_raw("POST", "/dbsc/refresh", headers, "").await;
    assert_eq!(resp.status, 403);
    challenge_of(&resp)
}

fn challenge_of(resp: &Response) -> String {
    let header = resp
        .header("secure-session-challenge")
        .expect("a challenge");
    common::dbsc_browser::parse_challenge_header(&header).unwrap()[0]
        .challenge
        .clone()
}

/// Makes a proof for a challenge.
type MakeProof = Box<dyn Fn(String) -> ProofBuilder>;

/// Refresh proofs that must be refused: each gets a 403 and no bound cookie.
async fn forged_refresh_proofs_are_refused(on: Adapter) {
    let site = Site::new(on).await;
    let b = site.signed_in().await;
    let other = site.signed_in().await;
    let id = b.sessions()[0].id.clone();
    let other_id = other.sessions()[0].id.clone();
    let fresh_challenge = || async {
        let resp = b
            .send_raw_with_jar("POST", "/dbsc/refresh", b.refresh_headers(&id, None), "")
            .await;
        challenge_of(&resp)
    };
    let key = b.session_key(&id).unwrap().clone();
    let attacks: Vec<(&str, MakeProof)> = vec![
        (
            "another key",
            Box::new(|c| ProofBuilder::refresh(&SessionKey::generate(), &c)),
        ),
        ("jwk in the header", {
            let key = key.clone();
            Box::new(move |c| ProofBuilder::refresh(&key, &c).jwk_of(&key))
        }),
        ("alg none", {
            let key = key.clone();
            Box::new(move |c| ProofBuilder::refresh(&key, &c).alg_none())
        }),
        ("HS256", {
            let key = key.clone();
            Box::new(move |c| ProofBuilder::refresh(&key, &c).hs256(b"any secret at all"))
        }),
        ("typ JWT", {
            let key = key.clone();
            Box::new(move |c| ProofBuilder::refresh(&key, &c).header("typ", "JWT".into()))
        }),
        ("a made-up challenge", {
            let key = key.clone();
            Box::new(move |_| {
                ProofBuilder::refresh(&key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            })
        }),
    ];
    for (what, make) in attacks {
        let proof = make(fresh_challenge().await).build();
        let resp = b
            .send_raw_with_jar(
                "POST",
                "/dbsc/refresh",
                b.refresh_headers(&id, Some(&proof)),
                "",
            )
            .await;
        assert_eq!(resp.status, 403, "{what}: {}", resp.body);
        assert!(
            !resp.set_cookies().iter().any(|c| c.starts_with(BOUND)),
            "{what}"
        );
    }
    // A challenge made for another session, signed by this session's key.
    let resp = other
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            other.refresh_headers(&other_id, None),
            "",
        )
        .await;
    let foreign = challenge_of(&resp);
    let proof = ProofBuilder::refresh(&key, &foreign).build();
    let resp = b
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            b.refresh_headers(&id, Some(&proof)),
            "",
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
    // Another session's id with this session's cookies: not a session of ours (401).
    let resp = b
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            b.refresh_headers(&other_id, None),
            "",
        )
        .await;
    assert_eq!(resp.status, 401, "{}", resp.body);
    // A stale challenge (past its 15 minutes) is refused too.
    let stale = fresh_challenge().await;
    site.clock.advance_secs(901);
    let proof = ProofBuilder::refresh(&key, &stale).build();
    let resp = b
        .send_raw_with_jar(
            "POST",
            "/dbsc/refresh",
            b.refresh_headers(&id, Some(&proof)),
            "",
        )
        .await;
    assert_eq!(resp.status, 403, "{}", resp.body);
}

/// Registration proofs that must be refused: the session stays unbound.
async fn forged_registration_proofs_are_refused(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.legacy();
    let resp = b.post_form("/login", &[]).await;
    let offer = resp.header("secure-session-registration").unwrap();
    let offers = common::dbsc_browser::parse_registration_header(&offer).unwrap();
    assert!(offers[0].algorithms.iter().any(|a| a == "ES256"), "{offer}");
    assert_eq!(offers[0].path, "/dbsc/register");
    let challenge = offers[0].challenge.clone().unwrap();
    let key = SessionKey::generate();
    let register = |proof: String| {
        let headers = vec![(
            "Secure-Session-Response".to_owned(),
            b.sf_header_value(&proof),
        )];
        b.send_raw_with_jar("POST", "/dbsc/register", headers, "")
    };
    for (what, proof) in [
        (
            "no jwk",
            ProofBuilder::registration(&key, Some(&challenge), None).without_header("jwk"),
        ),
        (
            "alg none",
            ProofBuilder::registration(&key, Some(&challenge), None).alg_none(),
        ),
        (
            "HS256",
            ProofBuilder::registration(&key, Some(&challenge), None).hs256(b"secret"),
        ),
        (
            "signed by another key",
            ProofBuilder::registration(&key, Some(&challenge), None)
                .signed_by(&SessionKey::generate()),
        ),
        (
            "a challenge not ours",
            ProofBuilder::registration(&key, Some("made-up"), None),
        ),
        (
            "private jwk",
            ProofBuilder::registration(&key, Some(&challenge), None).header("jwk", {
                let mut jwk = key.public_jwk();
                jwk["d"] = "AAAA".into();
                jwk
            }),
        ),
    ] {
        let resp = register(proof.build()).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.body);
        assert!(resp.set_cookies().is_empty(), "{what}");
    }
    // A valid one binds the session, under a new id: the cookie from before the binding
    // is revoked, so it cannot register again, nor be used at all.
    let proof = ProofBuilder::registration(&key, Some(&challenge), None).build();
    let resp = register(proof.clone()).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let bound_cookies: Vec<String> = resp
        .set_cookies()
        .iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .collect();
    assert_eq!(register(proof.clone()).await.status, 401);
    let before = cookie_pair(&b, COOKIE).unwrap();
    assert_eq!(thief_get(&b, &[before]).await.body, "anonymous");
    // With the bound session's own cookies: bound already, whatever the proof (a thief
    // holding them cannot bind the session to a key of its own).
    let with_bound = |proof: String| {
        let headers = vec![
            (
                "Secure-Session-Response".to_owned(),
                b.sf_header_value(&proof),
            ),
            ("Cookie".to_owned(), bound_cookies.join("; ")),
        ];
        b.send_raw("POST", "/dbsc/register", headers, "")
    };
    let resp = with_bound(proof).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.body.contains("bound already"), "{}", resp.body);
    assert_eq!(
        thief_get(&b, &bound_cookies).await.body,
        "signed in as alice",
        "the bound session works with its cookies"
    );
}

/// The draft's text puts the new key in the registration proof's claims (`key`); Chromium
/// puts it in the header (`jwk`). Either is accepted, not both.
async fn the_registration_key_may_come_as_a_claim(on: Adapter) {
    let site = Site::new(on).await;
    for (both, want) in [(true, 400), (false, 200)] {
        let mut b = site.legacy();
        let resp = b.post_form("/login", &[]).await;
        let offer = resp.header("secure-session-registration").unwrap();
        let offers = common::dbsc_browser::parse_registration_header(&offer).unwrap();
        let challenge = offers[0].challenge.clone().unwrap();
        let key = SessionKey::generate();
        let mut proof =
            ProofBuilder::registration(&key, Some(&challenge), None).claim("key", key.public_jwk());
        if !both {
            proof = proof.without_header("jwk");
        }
        let headers = vec![(
            "Secure-Session-Response".to_owned(),
            b.sf_header_value(&proof.build()),
        )];
        let resp = b
            .send_raw_with_jar("POST", "/dbsc/register", headers, "")
            .await;
        assert_eq!(resp.status, want, "key in both: {both}: {}", resp.body);
    }
}

/// A thief with the session cookie asks the refresh path for a challenge and answers it
/// at the registration path with a key of its own: refused (a refresh challenge is no
/// registration challenge, and a bound session is never bound again).
async fn a_thief_cannot_rebind_a_session_to_its_own_key(on: Adapter) {
    let site = Site::new(on).await;
    let b = site.signed_in().await;
    let id = b.sessions()[0].id.clone();
    let stolen = [cookie_pair(&b, COOKIE).unwrap()];
    let challenge = thief_challenge(&b, &id, &stolen).await;
    let thief_key = SessionKey::generate();
    let proof = ProofBuilder::registration(&thief_key, Some(&challenge), None).build();
    let headers = vec![(
        "Secure-Session-Response".to_owned(),
        b.sf_header_value(&proof),
    )];
    let resp = b
        .send_raw("POST", "/dbsc/register", with_cookies(headers, &stolen), "")
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.set_cookies().is_empty());
}

/// A request whose bound cookie has run out (the browser could not refresh in time) is
/// served as anonymous, but its session cookie is not cleared: the next refresh brings the
/// session back.
async fn a_missing_bound_cookie_does_not_sign_the_browser_out(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let resp = b.send_raw_with_jar("GET", "/", vec![], "").await;
    assert_eq!(resp.body, "signed in as alice");
    served_without_its_bound_cookie_then_refreshed(&mut b).await;
}

/// `b`'s session sent without its bound cookie: served as anonymous, with no cookie set over
/// the session's; the browser's next refresh brings it back.
async fn served_without_its_bound_cookie_then_refreshed(b: &mut Browser) {
    let id = b.sessions()[0].id.clone();
    let only_session = [cookie_pair(b, COOKIE).unwrap()];
    let resp = thief_get(b, &only_session).await;
    assert_eq!(resp.body, "anonymous");
    assert!(resp.set_cookies().is_empty(), "{:?}", resp.set_cookies());
    assert_eq!(
        b.refresh_now(&id).await,
        common::dbsc_browser::RefreshOutcome::Refreshed
    );
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

/// The same with `save_uninitialized(true)`: the empty session that stands in for the bound
/// one is not written over its cookie.
async fn a_missing_bound_cookie_does_not_sign_out_a_site_that_saves_new_sessions(on: Adapter) {
    let site = Site::serving(on, Dbsc::new(), |keys, _| {
        SealedSession::sealed(keys).save_uninitialized(true)
    })
    .await;
    let mut b = site.signed_in().await;
    served_without_its_bound_cookie_then_refreshed(&mut b).await;
    // A browser without a session still gets one saved.
    let fresh = b.send_raw("GET", "/", vec![], "").await;
    assert!(
        fresh.set_cookies().iter().any(|c| c.starts_with(COOKIE)),
        "{:?}",
        fresh.set_cookies()
    );
}

/// A registration whose challenge cannot be recorded as answered (the replay cache is
/// full) is a 503, never a registration that could be replayed; the session goes on unbound.
async fn a_full_replay_cache_refuses_registrations_with_a_503(on: Adapter) {
    let full = Dbsc::new().replay_cache(Arc::new(MemoryReplayCache::new(1)));
    let site = Site::with(on, full).await;
    let _first = site.signed_in().await;
    let mut b = Browser::new(&site.base, site.clock.clone());
    let resp = b.post_form("/login", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(b.registrations(), 0, "{:?}", b.log());
    assert!(b.log().iter().any(|l| l.contains("503")), "{:?}", b.log());
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

async fn a_revoked_session_ends_its_device_binding(on: Adapter) {
    let site = Site::new(on).await;
    let mut b = site.signed_in().await;
    let stolen = [
        cookie_pair(&b, COOKIE).unwrap(),
        cookie_pair(&b, BOUND).unwrap(),
    ];
    // The copied cookies work while the session lives, and their bound cookie is kept by
    // the open cache: revocation must win over it.
    for _ in 0..2 {
        assert_eq!(thief_get(&b, &stolen).await.body, "signed in as alice");
    }
    b.post_form("/logout", &[]).await;
    assert_eq!(b.get("/").await.body, "anonymous");
    // The copied cookies are refused (the denylist revoked the id), and a refresh of the
    // ended session is answered with a 401: the browser drops it.
    assert_eq!(thief_get(&b, &stolen).await.body, "anonymous");
    let id = b.sessions().first().map(|s| s.id.clone());
    if let Some(id) = id {
        let resp = b
            .send_raw(
                "POST",
                "/dbsc/refresh",
                with_cookies(b.refresh_headers(&id, None), &stolen),
                "",
            )
            .await;
        assert_eq!(resp.status, 401, "{}", resp.body);
    }
}

/// The express-session design: the key is kept in the store's record, not in the cookie.
async fn device_binding_works_on_server_stored_sessions(on: Adapter) {
    let site = Site::serving(on, Dbsc::new(), |keys, clock| {
        let store = sealed_session::store::MemoryStore::with_clock(clock);
        SealedSession::server_store(store, keys)
    })
    .await;
    let mut b = site.signed_in().await;
    site.clock.advance_secs(601);
    assert_eq!(b.get("/").await.body, "signed in as alice", "{:?}", b.log());
    assert_eq!(b.refreshes(), 1);
    let stolen = [cookie_pair(&b, COOKIE).unwrap()];
    assert_eq!(thief_get(&b, &stolen).await.body, "anonymous");
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

/// Cookies without the `__Host-` prefix (`Secure::Never`): the bound cookie is `sid_bound`,
/// checked and kept the same way.
async fn device_binding_works_with_unprefixed_cookies(on: Adapter) {
    let site = Site::serving(on, Dbsc::new(), |keys, _| {
        SealedSession::sealed(keys).secure(Secure::Never)
    })
    .await;
    let mut b = Browser::new(&site.base, site.clock.clone());
    assert_eq!(b.post_form("/login", &[]).await.status, 200);
    assert_eq!(b.registrations(), 1, "{:?}", b.log());
    assert!(b.cookie("sid_bound").is_some(), "{:?}", b.log());
    for _ in 0..2 {
        assert_eq!(b.get("/").await.body, "signed in as alice");
    }
    let session = cookie_pair(&b, "sid").unwrap();
    assert_eq!(
        thief_get(&b, std::slice::from_ref(&session)).await.body,
        "anonymous"
    );
    let forged = [
        session.clone(),
        "sid_bound=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ];
    assert_eq!(thief_get(&b, &forged).await.body, "anonymous");
    // The secure name does not stand in for the plain one.
    let renamed = [
        session.clone(),
        format!("{BOUND}={}", b.cookie("sid_bound").unwrap()),
    ];
    assert_eq!(thief_get(&b, &renamed).await.body, "anonymous");
    let both = [session, cookie_pair(&b, "sid_bound").unwrap()];
    assert_eq!(thief_get(&b, &both).await.body, "signed in as alice");
}

/// The signed design: the key is readable in the cookie, and still only a proof renews
/// the bound cookie.
async fn device_binding_works_on_signed_sessions(on: Adapter) {
    let site = Site::serving(on, Dbsc::new(), |keys, _| SealedSession::signed(keys)).await;
    let mut b = site.signed_in().await;
    site.clock.advance_secs(601);
    assert_eq!(b.get("/").await.body, "signed in as alice", "{:?}", b.log());
    assert_eq!(b.post_form("/count", &[]).await.body, "1");
    let stolen = [cookie_pair(&b, COOKIE).unwrap()];
    assert_eq!(thief_get(&b, &stolen).await.body, "anonymous");
    // After the owner's requests (its bound cookie kept with the token), another value is
    // still refused.
    let forged = [
        cookie_pair(&b, COOKIE).unwrap(),
        format!("{BOUND}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ];
    assert_eq!(thief_get(&b, &forged).await.body, "anonymous");
    assert_eq!(b.get("/").await.body, "signed in as alice");
}

both!(
    the_registration_key_may_come_as_a_claim,
    a_thief_cannot_rebind_a_session_to_its_own_key,
    a_missing_bound_cookie_does_not_sign_the_browser_out,
    a_missing_bound_cookie_does_not_sign_out_a_site_that_saves_new_sessions,
    a_full_replay_cache_refuses_registrations_with_a_503,
    device_binding_works_on_server_stored_sessions,
    device_binding_works_on_signed_sessions,
    device_binding_works_with_unprefixed_cookies,
    registration_then_expiry_then_a_signed_refresh,
    a_refresh_without_a_proof_gets_a_403_challenge,
    a_browser_that_never_registers_keeps_working,
    a_stolen_session_cookie_without_the_bound_cookie_is_refused,
    both_cookies_stolen_stop_working_when_the_bound_one_expires,
    a_kept_bound_cookie_admits_only_its_own_bytes,
    a_written_session_still_needs_its_bound_cookie,
    forged_refresh_proofs_are_refused,
    forged_registration_proofs_are_refused,
    a_revoked_session_ends_its_device_binding,
);
