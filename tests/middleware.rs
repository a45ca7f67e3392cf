//! The session middleware's behaviour, on the Poem middleware and on the tower layer (see
//! `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{T0, clock, key, ring};
use http::app::{Adapter, App, Client, Fail, Req, RespExt, Routes, both};
use http::handlers::plain::{login_admin, logout, max_age, noop, session_id, set_key, touch};
use http::{SetCookie, capture, set_cookies};
use sealed_session::{
    Codec, Keyring, ManualClock, SealedCodec, SealedSession, Secure, Session, SessionError,
    SessionId, SessionState, Timestamp,
};

const NAME: &str = "__Host-sid";

fn get_key(req: &Req) -> Result<String, SessionError> {
    let key: String = req.param("key");
    Ok(match req.session.get::<String>(&key)? {
        Some(v) => v,
        None => "<none>".to_owned(),
    })
}

fn get_num(session: &Session) -> Result<String, SessionError> {
    // A typed read of a string value as a number must be an error, not a silent None.
    Ok(format!("{:?}", session.get::<u64>("n")?))
}

fn fail_after_set(session: &Session) -> Result<(), Fail> {
    session.insert("attempt", "1")?;
    Err(Fail::status(StatusCode::BAD_REQUEST, "boom"))
}

fn big(req: &Req) -> Result<(), SessionError> {
    let n: usize = req.param("n");
    // Incompressible-looking data of n characters.
    let s: String = (0..n)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    req.session.insert("big", &s)?;
    Ok(())
}

fn routes() -> Routes {
    Routes::new()
        .get("/get/:key", get_key)
        .post("/set/:key/:val", set_key)
        .get("/num", get_num)
        .get("/noop", noop)
        .get("/id", session_id)
        .post("/destroy", logout)
        .post("/regenerate", login_admin)
        .post("/touch", touch)
        .post("/fail", fail_after_set)
        .post("/big/:n", big)
        .post("/max-age/:secs", max_age)
}

fn keys() -> Keyring {
    ring("k1", 9)
}

fn app(a: Adapter, mw: SealedSession) -> App {
    a.app(&routes(), mw)
}

async fn no_cookie_until_changed_then_exactly_one(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    let (_, set) = c.send(false, "/noop").await;
    assert!(set.is_empty(), "an untouched new session sends nothing");
    let (_, set) = c.send(false, "/get/user").await;
    assert!(set.is_empty(), "reading a new session sends nothing");

    let (resp, set) = c.send(true, "/set/user/alice").await;
    resp.assert_status_is_ok();
    assert_eq!(set.len(), 1, "exactly one Set-Cookie: {set:?}");
    let ck = &set[0];
    assert_eq!(ck.name, NAME);
    assert!(ck.has_flag("HttpOnly") && ck.has_flag("Secure"));
    assert_eq!(ck.attr("SameSite"), Some("Lax"));
    assert_eq!(ck.attr("Path"), Some("/"));
    assert!(
        ck.attr("Max-Age").is_none(),
        "browser-session cookie by default"
    );
    assert_eq!(
        resp.headers().get("cache-control").unwrap(),
        "private, no-store",
        "a response that sets a session must not be cached"
    );

    assert_eq!(c.text(false, "/get/user").await, "alice");
    let (_, set) = c.send(false, "/get/user").await;
    assert!(
        set.is_empty(),
        "an unchanged session is not re-sent: {set:?}"
    );
    let (_, set) = c.send(true, "/set/user/alice").await;
    assert!(set.is_empty(), "storing the same value is not a change");
    let (_, set) = c.send(true, "/set/user/bob").await;
    assert_eq!(set.len(), 1);
    assert_eq!(c.text(false, "/get/user").await, "bob");
}

async fn save_uninitialized_sends_a_cookie_for_a_new_session(on: Adapter) {
    let mut c = Client::new(app(
        on,
        SealedSession::sealed(keys()).save_uninitialized(true),
    ));
    let (_, set) = c.send(false, "/noop").await;
    assert_eq!(set.len(), 1);
    let (_, set) = c.send(false, "/noop").await;
    assert!(
        set.is_empty(),
        "once saved, an unchanged session is not re-sent"
    );
}

async fn typed_get_of_the_wrong_type_is_an_error(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    c.send(true, "/set/n/seven").await;
    let (resp, _) = c.send(false, "/num").await;
    resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
}

async fn older_key_token_is_reissued_under_the_primary(on: Adapter) {
    let old = ring("k1", 9);
    let new = Keyring::new([key("k2", 5), key("k1", 9)]).unwrap();
    let mut a = Client::new(app(on, SealedSession::sealed(old)));
    a.send(true, "/set/user/alice").await;
    let old_token = a.jar.get(NAME).unwrap().to_owned();

    let mut b = Client::new(app(on, SealedSession::sealed(new.clone())));
    b.jar = a.jar.clone();
    let (resp, set) = b.send(false, "/get/user").await;
    assert_eq!(resp.into_body(), "alice");
    assert_eq!(set.len(), 1, "re-issued under the primary key");
    assert_ne!(set[0].value, old_token);
    // The new token opens with a ring that holds only the new key.
    let only_new = ring("k2", 5);
    let mut c = Client::new(app(on, SealedSession::sealed(only_new)));
    c.jar = b.jar.clone();
    assert_eq!(c.text(false, "/get/user").await, "alice");
    // And an unchanged session under the primary is not re-issued again.
    let (_, set) = b.send(false, "/get/user").await;
    assert!(set.is_empty());
}

/// Each bad cookie: the handler sees a fresh empty session, the cookie is cleared, and one
/// tracing event names the reason without the token.
async fn refused(
    on: Adapter,
    mw: SealedSession,
    clock: Option<(&ManualClock, Duration)>,
    cookie: Option<String>,
    reason: &str,
) {
    let mut c = Client::new(app(on, mw));
    c.send(true, "/set/user/alice").await;
    if let Some((clock, d)) = clock {
        clock.advance(d);
    }
    if let Some(v) = &cookie {
        c.jar.set(NAME, v);
    }
    let token = c.jar.get(NAME).unwrap().to_owned();
    let (cap, _g) = capture();
    let (resp, set) = c.send(false, "/get/user").await;
    assert_eq!(resp.into_body(), "<none>", "{reason}");
    assert_eq!(set.len(), 1, "{reason}: {set:?}");
    assert!(
        set[0].is_removal() && set[0].name == NAME,
        "{reason}: cleared"
    );
    assert_eq!(set[0].attr("Path"), Some("/"));
    let reasons = cap.reasons();
    assert_eq!(
        reasons,
        vec![reason.to_owned()],
        "{reason}: one event naming the reason"
    );
    for e in cap.events() {
        for v in e.fields.values() {
            assert!(
                !v.contains(&token[..token.len().min(40)]),
                "the token is never logged"
            );
        }
    }
    assert!(c.jar.get(NAME).is_none());
}

async fn bad_cookies_give_a_fresh_session_and_are_cleared(on: Adapter) {
    let clock = clock();
    let mw = || SealedSession::sealed(keys()).clock(clock.clone());
    // Expired (absolute) and idle-expired.
    refused(
        on,
        mw().max_age(Duration::from_secs(100)).idle_timeout(None),
        Some((&clock, Duration::from_secs(100))),
        None,
        "expired",
    )
    .await;
    refused(
        on,
        mw().idle_timeout(Some(Duration::from_secs(60))),
        Some((&clock, Duration::from_secs(60))),
        None,
        "idle_timeout",
    )
    .await;
    // Tampered: flip one character in the middle.
    let mut c = Client::new(app(on, mw()));
    c.send(true, "/set/user/alice").await;
    let good = c.jar.get(NAME).unwrap().to_owned();
    let mut bytes = good.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    refused(on, mw(), None, Some(tampered), "bad_seal").await;
    // Wrong key: a token sealed under a key with the same id but other material.
    let other = ring("k1", 3);
    let mut o = Client::new(app(on, SealedSession::sealed(other).clock(clock.clone())));
    o.send(true, "/set/user/mallory").await;
    let forged = o.jar.get(NAME).unwrap().to_owned();
    refused(on, mw(), None, Some(forged), "bad_seal").await;
    // Unknown key id.
    let stranger = ring("zz", 3);
    let mut s = Client::new(app(
        on,
        SealedSession::sealed(stranger).clock(clock.clone()),
    ));
    s.send(true, "/set/user/mallory").await;
    refused(
        on,
        mw(),
        None,
        Some(s.jar.get(NAME).unwrap().to_owned()),
        "unknown_key_id",
    )
    .await;
    // Garbage and oversized.
    refused(on, mw(), None, Some("not a token!".to_owned()), "malformed").await;
    refused(on, mw(), None, Some("A".repeat(20_000)), "too_large").await;
}

async fn a_token_for_another_cookie_name_is_refused(on: Adapter) {
    let mut a = Client::new(app(on, SealedSession::sealed(keys()).name("other")));
    a.send(true, "/set/user/alice").await;
    let token = a.jar.get("__Host-other").unwrap().to_owned();
    let mut b = Client::new(app(on, SealedSession::sealed(keys())));
    b.jar.set(NAME, &token);
    assert_eq!(b.text(false, "/get/user").await, "<none>");
}

async fn destroy_clears_with_the_same_path_and_domain(on: Adapter) {
    let mw = SealedSession::sealed(keys())
        .path("/app")
        .domain("example.com")
        .name("s");
    let mut c = Client::new(app(on, mw));
    let (_, set) = c.send(true, "/set/user/alice").await;
    assert_eq!(
        set[0].name, "s",
        "no __Host- prefix with a Domain or a Path other than /"
    );
    assert_eq!(set[0].attr("Path"), Some("/app"));
    assert_eq!(set[0].attr("Domain"), Some("example.com"));
    let (_, set) = c.send(true, "/destroy").await;
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].is_removal());
    assert_eq!(set[0].attr("Path"), Some("/app"));
    assert_eq!(set[0].attr("Domain"), Some("example.com"));
    assert!(c.jar.header().is_none());
    assert_eq!(c.text(false, "/get/user").await, "<none>");
}

async fn destroy_without_a_session_sends_nothing(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    let (_, set) = c.send(true, "/destroy").await;
    assert!(set.is_empty(), "{set:?}");
}

async fn changes_are_written_when_the_handler_fails(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    let (resp, set) = c.send(true, "/fail").await;
    resp.assert_status(StatusCode::BAD_REQUEST);
    assert_eq!(set.len(), 1);
    assert_eq!(c.text(false, "/get/attempt").await, "1");
}

async fn regenerate_gives_a_new_id_and_drops_old_data(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    c.send(true, "/set/cart/3").await;
    let before = c.text(false, "/id").await;
    let (_, set) = c.send(true, "/regenerate").await;
    assert_eq!(set.len(), 1);
    let after = c.text(false, "/id").await;
    assert_ne!(before, after);
    assert_eq!(c.text(false, "/get/user").await, "admin");
    assert_eq!(c.text(false, "/get/cart").await, "<none>");
}

async fn renewal_only_after_the_renewal_interval_and_rolling_every_time(on: Adapter) {
    let clock = clock();
    let mw = SealedSession::sealed(keys())
        .clock(clock.clone())
        .idle_timeout(Some(Duration::from_secs(400)))
        .renew_after(Duration::from_secs(100));
    let mut c = Client::new(app(on, mw));
    c.send(true, "/set/user/alice").await;
    clock.advance(Duration::from_secs(99));
    let (_, set) = c.send(false, "/get/user").await;
    assert!(set.is_empty(), "not yet due");
    clock.advance(Duration::from_secs(1));
    let (_, set) = c.send(false, "/get/user").await;
    assert_eq!(set.len(), 1, "due at the renewal interval");
    // The idle clock moved: 399 s later the session is still alive.
    clock.advance(Duration::from_secs(399));
    assert_eq!(c.text(false, "/get/user").await, "alice");

    let rolling = SealedSession::sealed(keys())
        .clock(clock.clone())
        .rolling(true);
    let mut r = Client::new(app(on, rolling));
    r.send(true, "/set/user/alice").await;
    for _ in 0..3 {
        let (_, set) = r.send(false, "/get/user").await;
        assert_eq!(set.len(), 1, "rolling re-issues on every response");
    }
    let (_, set) = r.send(true, "/touch").await;
    assert_eq!(set.len(), 1);
}

async fn touch_reissues_and_max_age_override_moves_the_deadline(on: Adapter) {
    let clock = clock();
    let mw = SealedSession::sealed(keys())
        .clock(clock.clone())
        .idle_timeout(None)
        .max_age(Duration::from_secs(1000))
        .persistent(true);
    let mut c = Client::new(app(on, mw));
    let (_, set) = c.send(true, "/set/user/alice").await;
    assert_eq!(set[0].attr("Max-Age"), Some("1000"));
    let (_, set) = c.send(true, "/touch").await;
    assert_eq!(set.len(), 1, "touch re-issues");
    let (_, set) = c.send(true, "/max-age/10").await;
    assert_eq!(set[0].attr("Max-Age"), Some("10"));
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        c.text(false, "/get/user").await,
        "<none>",
        "the shorter lifetime holds"
    );
}

/// A key holder's token that claims to live for ever (deadline 2^64-1 ms) ends `max_age`
/// after its issue time; `set_max_age` cannot extend a session past that point either, and
/// the token it asks for is not refused before it.
async fn no_session_outlives_max_age_from_its_issue_time(on: Adapter) {
    let clock = clock();
    let mw = || {
        SealedSession::sealed(keys())
            .clock(clock.clone())
            .idle_timeout(None)
            .max_age(Duration::from_secs(1000))
            .persistent(true)
    };
    let mut forever = SessionState::new(
        SessionId::generate().unwrap(),
        T0,
        Timestamp::from_millis(u64::MAX),
    );
    forever.insert("user", "mallory").unwrap();
    let token = SealedCodec::new(keys())
        .seal(&forever, NAME.as_bytes())
        .unwrap();
    let mut c = Client::new(app(on, mw()));
    c.jar.set(NAME, &token);
    clock.advance(Duration::from_secs(999));
    assert_eq!(c.text(false, "/get/user").await, "mallory");
    // A change re-issues the token: its deadline and Max-Age are the capped ones.
    let (_, set) = c.send(true, "/set/n/1").await;
    assert_eq!(set[0].attr("Max-Age"), Some("1"), "{set:?}");
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.text(false, "/get/user").await, "<none>");

    let mut c = Client::new(app(on, mw()));
    c.send(true, "/set/user/alice").await;
    clock.advance(Duration::from_secs(100));
    let (_, set) = c.send(true, "/max-age/100000").await;
    assert_eq!(set[0].attr("Max-Age"), Some("900"), "clamped: {set:?}");
    clock.advance(Duration::from_secs(899));
    assert_eq!(c.text(false, "/get/user").await, "alice");
    clock.advance(Duration::from_secs(1));
    assert_eq!(c.text(false, "/get/user").await, "<none>");
}

async fn large_sessions_are_chunked_reassembled_and_shrunk(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    let (_, set) = c.send(true, "/big/9000").await;
    assert_eq!(
        set.len(),
        3,
        "9000 bytes need 3 chunks: {:?}",
        set.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for (i, s) in set.iter().enumerate() {
        assert_eq!(s.name, format!("{NAME}.{i}"));
        assert!(s.raw.len() <= 4096, "chunk {i} is {} bytes", s.raw.len());
    }
    assert_eq!(c.text(false, "/get/big").await.len(), 9000);

    // Shrink to 5000 bytes: 2 chunks, the third removed.
    let (_, set) = c.send(true, "/big/5000").await;
    let names: Vec<(&str, bool)> = set
        .iter()
        .map(|s| (s.name.as_str(), s.is_removal()))
        .collect();
    assert!(names.contains(&("__Host-sid.2", true)), "{names:?}");
    assert_eq!(c.jar.cookies.len(), 2);
    assert_eq!(c.text(false, "/get/big").await.len(), 5000);

    // Shrink to one cookie: all chunks removed, a plain cookie set.
    let (_, set) = c.send(true, "/big/10").await;
    assert_eq!(set.iter().filter(|s| s.is_removal()).count(), 2);
    assert_eq!(c.jar.cookies.keys().collect::<Vec<_>>(), vec![NAME]);
    assert_eq!(c.text(false, "/get/big").await.len(), 10);
}

async fn a_session_too_large_is_a_clear_error_and_the_old_cookie_stays(on: Adapter) {
    let mut c = Client::new(app(
        on,
        SealedSession::sealed(keys()).max_chunks(2).unwrap(),
    ));
    c.send(true, "/set/user/alice").await;
    let before = c.jar.clone();
    let (resp, set) = c.send(true, "/big/9000").await;
    assert!(
        set.is_empty(),
        "nothing a browser would drop is sent: {set:?}"
    );
    resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body();
    assert!(
        body.contains("bytes") && body.contains("limit of 2"),
        "{body}"
    );
    assert_eq!(c.jar.cookies, before.cookies);
    assert_eq!(c.text(false, "/get/user").await, "alice");
}

async fn incomplete_chunks_are_refused_and_cleared(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    c.send(true, "/big/9000").await;
    c.jar.cookies.remove("__Host-sid.1");
    let (resp, set) = c.send(false, "/get/big").await;
    assert_eq!(resp.into_body(), "<none>");
    assert!(
        set.iter().all(SetCookie::is_removal) && !set.is_empty(),
        "{set:?}"
    );
}

async fn secure_auto_follows_the_scheme_and_trusts_proxies_only_when_told(on: Adapter) {
    let mw = SealedSession::sealed(keys()).secure(Secure::Auto);
    let tc = app(on, mw.clone());
    let resp = tc.post("/set/user/alice").send().await;
    let set = set_cookies(&resp);
    assert_eq!(
        set[0].name, "sid",
        "plain HTTP: no Secure, no __Host- prefix"
    );
    assert!(!set[0].has_flag("Secure"));
    let resp = tc
        .post("/set/user/alice")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    assert!(
        !set_cookies(&resp)[0].has_flag("Secure"),
        "proxy header ignored by default"
    );

    let tc = app(on, mw.trust_proxy(true));
    let resp = tc
        .post("/set/user/alice")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    let set = set_cookies(&resp);
    assert!(set[0].has_flag("Secure"));
    assert_eq!(set[0].name, NAME);
}

async fn signed_sessions_work_behind_the_same_api(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::signed(keys())));
    c.send(true, "/set/user/alice").await;
    assert_eq!(c.text(false, "/get/user").await, "alice");
}

async fn a_session_extractor_without_the_middleware_is_a_500_with_a_message(on: Adapter) {
    let tc = on.bare(&routes());
    let resp = tc.get("/get/user").send().await;
    resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body();
    assert!(body.contains("middleware is not installed"), "{body}");
}

async fn cookies_that_are_not_text_neither_break_nor_hide_the_session(on: Adapter) {
    let mut c = Client::new(app(on, SealedSession::sealed(keys())));
    c.send(true, "/set/user/alice")
        .await
        .0
        .assert_status_is_ok();
    let token = c.jar.get(NAME).unwrap().to_owned();
    let get_user = |cookie: Vec<u8>| {
        let cookie = ::http::HeaderValue::from_bytes(&cookie).unwrap();
        c.app.get("/get/user").header("cookie", cookie).send()
    };

    // Another application's cookie in Latin-1 or UTF-8, beside ours: ours still opens.
    for other in [&b"pref=caf\xe9"[..], "pref=café".as_bytes()] {
        let mut header = other.to_vec();
        header.extend_from_slice(format!("; {NAME}={token}").as_bytes());
        let resp = get_user(header).await;
        resp.assert_status_is_ok();
        assert_eq!(resp.into_body(), "alice");
    }

    // Our own cookie with bytes that are not text: a fresh session, never a 500.
    for bad in [&b"\xff\xfe"[..], &b"abc\x80def"[..], "é".as_bytes()] {
        let mut header = format!("{NAME}=").into_bytes();
        header.extend_from_slice(bad);
        let resp = get_user(header).await;
        resp.assert_status_is_ok();
        let cleared = set_cookies(&resp);
        assert_eq!(resp.into_body(), "<none>");
        assert!(
            cleared.iter().any(|s| s.name == NAME && s.is_removal()),
            "the unusable cookie is cleared: {cleared:?}"
        );
    }
}

both!(
    no_cookie_until_changed_then_exactly_one,
    save_uninitialized_sends_a_cookie_for_a_new_session,
    typed_get_of_the_wrong_type_is_an_error,
    older_key_token_is_reissued_under_the_primary,
    bad_cookies_give_a_fresh_session_and_are_cleared,
    a_token_for_another_cookie_name_is_refused,
    destroy_clears_with_the_same_path_and_domain,
    destroy_without_a_session_sends_nothing,
    changes_are_written_when_the_handler_fails,
    regenerate_gives_a_new_id_and_drops_old_data,
    renewal_only_after_the_renewal_interval_and_rolling_every_time,
    touch_reissues_and_max_age_override_moves_the_deadline,
    no_session_outlives_max_age_from_its_issue_time,
    large_sessions_are_chunked_reassembled_and_shrunk,
    a_session_too_large_is_a_clear_error_and_the_old_cookie_stays,
    incomplete_chunks_are_refused_and_cleared,
    secure_auto_follows_the_scheme_and_trusts_proxies_only_when_told,
    signed_sessions_work_behind_the_same_api,
    a_session_extractor_without_the_middleware_is_a_500_with_a_message,
    cookies_that_are_not_text_neither_break_nor_hide_the_session,
);
