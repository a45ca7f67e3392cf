//! The limits on what the middleware reads from the client (`Limits`): for each, an input
//! exactly at the limit is accepted and one byte, chunk or level more is refused with the
//! documented answer (431 for the `Cookie` header; a fresh session for cookies, a 401 for
//! bearer tokens otherwise), logged once at `info` with its reason and never the token.
//! Every scenario runs on the Poem middleware and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use ::http::StatusCode;
use common::fixtures::keys;
use http::app::{Adapter, App, Json, Req, RespExt, Routes, both, send};
use http::handlers::plain::user;
use http::{Capture, Jar, capture, set_cookies};
use sealed_session::codec::Codec as _;
use sealed_session::limits::{
    DEFAULT_MAX_CHUNKS, DEFAULT_MAX_COOKIE_HEADER_LEN, DEFAULT_MAX_DATA_LEN,
    DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_TOKEN_LEN, LimitError, MAX_CHUNKS, MAX_JSON_DEPTH,
};
use sealed_session::{
    BearerConfig, CookieConfig, Limits, SealedCodec, SealedSession, Session, SessionError,
    SessionId, SessionState, Timestamp,
};
use serde_json::Value;

const NAME: &str = "__Host-sid";

fn login(session: &Session) -> Result<Json, SessionError> {
    session.insert("user", "alice")?;
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

/// `[[...]]`: `levels` nested arrays (0: `null`).
fn nested(levels: usize) -> Value {
    let mut v = Value::Null;
    for _ in 0..levels {
        v = Value::Array(vec![v]);
    }
    v
}

/// Stores `{"user":"alice","k":<levels nested arrays>}`: `levels + 1` deep.
fn deep(req: &Req) -> Result<Json, SessionError> {
    let (session, levels) = (&req.session, req.param::<usize>("levels"));
    session.insert("user", "alice")?;
    session.insert("k", &nested(levels))?;
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

/// Stores `{"user":"alice","pad":"xxx..."}` with `n` characters of padding.
fn pad(req: &Req) -> Result<Json, SessionError> {
    let (session, n) = (&req.session, req.param::<usize>("n"));
    session.insert("user", "alice")?;
    session.insert("pad", &"x".repeat(n))?;
    Ok(Json(serde_json::json!({ "token": session.token()? })))
}

fn app(on: Adapter, mw: SealedSession) -> App {
    let routes = Routes::new()
        .post("/login", login)
        .post("/deep/:levels", deep)
        .post("/pad/:n", pad)
        .get("/user", user);
    on.app(&routes, mw)
}

/// A session cookie's token minted by a middleware with no tight limits.
async fn mint(on: Adapter, path: &str) -> String {
    mint_with(on, path, SealedSession::sealed(keys())).await
}

/// The same for the bearer transport (whose tokens are bound to the bare name).
async fn mint_bearer(on: Adapter, path: &str) -> String {
    mint_with(
        on,
        path,
        SealedSession::sealed(keys()).bearer(BearerConfig::new()),
    )
    .await
}

async fn mint_with(on: Adapter, path: &str, mw: SealedSession) -> String {
    let tc = app(
        on,
        mw.limits(
            Limits::new()
                .json_depth(MAX_JSON_DEPTH)
                .data_len(usize::MAX)
                .token_len(usize::MAX),
        ),
    );
    let v: Value = serde_json::from_str(tc.post(path).send().await.body()).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// GET /user with exactly these `Cookie` header values.
async fn get_user(
    on: Adapter,
    mw: SealedSession,
    cookies: &[&str],
) -> (StatusCode, String, Vec<String>) {
    let tc = app(on, mw);
    let mut req = tc.get("/user");
    for c in cookies {
        req = req.header("cookie", *c);
    }
    let resp = req.send().await;
    let set = set_cookies(&resp).into_iter().map(|c| c.raw).collect();
    let status = resp.status();
    (status, resp.into_body(), set)
}

/// One event naming `reason`, at `info`, and no event carrying the token.
fn refused_once(cap: &Capture, reason: &str, token: &str) {
    let events: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|e| e.fields.contains_key("reason"))
        .collect();
    assert_eq!(events.len(), 1, "one refusal event: {events:?}");
    assert_eq!(events[0].fields["reason"], reason);
    assert_eq!(events[0].level, tracing::Level::INFO, "{reason}");
    let probe = &token[token.len() / 2..][..token.len().min(24) / 2];
    for e in cap.events() {
        for v in e.fields.values() {
            assert!(!v.contains(probe), "{reason}: the token is never logged");
        }
    }
}

fn no_refusal(cap: &Capture) {
    assert!(cap.reasons().is_empty(), "{:?}", cap.events());
}

#[test]
fn defaults_are_documented_values() {
    assert_eq!(
        Limits::default(),
        Limits::new()
            .cookie_header_len(32 * 1024)
            .token_len(16 * 1024)
            .data_len(16 * 1024)
            .json_depth(32)
    );
    assert_ne!(Limits::default(), Limits::new().json_depth(31));
    assert_eq!(
        (
            DEFAULT_MAX_COOKIE_HEADER_LEN,
            DEFAULT_MAX_CHUNKS,
            DEFAULT_MAX_TOKEN_LEN,
            DEFAULT_MAX_DATA_LEN,
            DEFAULT_MAX_JSON_DEPTH
        ),
        (32 * 1024, 4, 16 * 1024, 16 * 1024, 32)
    );
    assert_eq!(Limits::new().json_depth(0), Limits::new().json_depth(1));
    assert_eq!(
        Limits::new().json_depth(1000),
        Limits::new().json_depth(127)
    );
    assert_ne!(Limits::new().json_depth(127), Limits::new().json_depth(126));
}

#[test]
fn chunk_counts_over_the_hard_maximum_are_refused_when_configured() {
    assert_eq!(MAX_CHUNKS, 32);
    for n in [MAX_CHUNKS + 1, 4096, 1 << 32, usize::MAX] {
        let err = CookieConfig::new().max_chunks(n).unwrap_err();
        assert_eq!(
            err,
            LimitError::TooManyChunks {
                requested: n,
                max: MAX_CHUNKS
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("limit of 32") && msg.contains("MAX_CHUNKS"),
            "{msg}"
        );
        assert!(SealedSession::sealed(keys()).max_chunks(n).is_err(), "{n}");
    }
    assert!(CookieConfig::new().max_chunks(MAX_CHUNKS).is_ok());
    assert!(SealedSession::sealed(keys()).max_chunks(MAX_CHUNKS).is_ok());
}

async fn no_chunk_index_makes_the_middleware_work_in_proportion_to_it(on: Adapter) {
    let (_cap, _g) = capture();
    // The largest chunk count there is: the reader keeps at most that many chunks, ignores
    // indexes from 4 x MAX_CHUNKS on, and so clears at most that many cookies.
    let mw = || {
        SealedSession::sealed(keys())
            .max_chunks(MAX_CHUNKS)
            .unwrap()
    };
    for idx in ["4294967295", "18446744073709551615", "99999999999999999999"] {
        let cookie = format!("{NAME}.{idx}=x");
        let (status, body, set) = get_user(on, mw(), &[&cookie]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"), "{idx}");
        assert!(
            set.is_empty(),
            "{idx}: an ignored cookie is not cleared: {set:?}"
        );
    }
    // The highest index still read: refused, and only the cookie that came is cleared (not
    // every index below it, which would let one small cookie ask for 128 removals).
    let last = 4 * MAX_CHUNKS - 1;
    let (status, body, set) = get_user(on, mw(), &[&format!("{NAME}.{last}=x")]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"));
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with(&format!("{NAME}.{last}=;")), "{set:?}");
    // Scattered chunks: exactly those are cleared.
    let (_, _, set) = get_user(
        on,
        mw(),
        &[&format!("{NAME}.3=x; {NAME}.40=y; {NAME}.90=z")],
    )
    .await;
    let mut cleared: Vec<&str> = set.iter().map(|c| c.split('=').next().unwrap()).collect();
    cleared.sort_unstable();
    let expected = [3, 40, 90].map(|i| format!("{NAME}.{i}"));
    let mut expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(cleared, expected);
}

async fn only_canonical_chunk_names_are_read(on: Adapter) {
    let (_cap, _g) = capture();
    let token = mint(on, "/login").await;
    let (head, tail) = token.split_at(token.len() / 2);
    let pair = |a: &str, b: &str| format!("{NAME}.{a}={head}; {NAME}.{b}={tail}");
    let (_, body, _) = get_user(on, SealedSession::sealed(keys()), &[&pair("0", "1")]).await;
    assert_eq!(body, "alice");
    for (a, b) in [
        ("00", "1"),
        ("+0", "1"),
        ("0", "01"),
        ("0", "+1"),
        ("0", " 1"),
        ("0", "1 "),
        ("0", "0x1"),
    ] {
        let (status, body, _) = get_user(on, SealedSession::sealed(keys()), &[&pair(a, b)]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "<none>"),
            ".{a} .{b}"
        );
    }
    // A second spelling of chunk 0, sent first, does not stand in for it.
    let shadowed = format!("{NAME}.00=AAAA; {}", pair("0", "1"));
    let (_, body, _) = get_user(on, SealedSession::sealed(keys()), &[&shadowed]).await;
    assert_eq!(body, "alice");
}

/// A `Cookie` header of exactly `len` bytes: the session cookie, then a filler cookie.
fn cookie_header_of(token: &str, len: usize) -> String {
    let head = format!("{NAME}={token}; pad=");
    assert!(len > head.len());
    format!("{head}{}", "p".repeat(len - head.len()))
}

async fn cookie_header_at_the_limit_is_read_one_byte_over_is_431(on: Adapter) {
    let (cap, _g) = capture();
    let token = mint(on, "/login").await;
    for max in [1000, DEFAULT_MAX_COOKIE_HEADER_LEN] {
        cap.clear();
        let mw = || {
            if max == DEFAULT_MAX_COOKIE_HEADER_LEN {
                SealedSession::sealed(keys())
            } else {
                SealedSession::sealed(keys()).limits(Limits::new().cookie_header_len(max))
            }
        };
        let at = cookie_header_of(&token, max);
        assert_eq!(at.len(), max);
        let (status, body, _) = get_user(on, mw(), &[&at]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"), "{max}");
        no_refusal(&cap);

        let over = cookie_header_of(&token, max + 1);
        let (status, body, set) = get_user(on, mw(), &[&over]).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{max}");
        assert_ne!(body, "alice", "the handler did not run");
        assert!(set.is_empty(), "no cookie set or cleared: {set:?}");
        refused_once(&cap, "cookie_header_too_large", &token);
    }
}

async fn cookie_headers_are_bounded_together(on: Adapter) {
    let (_cap, _g) = capture();
    // HTTP/2 sends one header per cookie: the bound is on their sum.
    let token = mint(on, "/login").await;
    let first = format!("{NAME}={token}");
    let max = first.len() + 100;
    let mw = || SealedSession::sealed(keys()).limits(Limits::new().cookie_header_len(max));
    let fill = |n: usize| format!("pad={}", "p".repeat(n - 4));
    let (status, body, _) = get_user(on, mw(), &[&first, &fill(100)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    let (status, _, _) = get_user(on, mw(), &[&first, &fill(101)]).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// The token split into `n` chunk cookies, as one `Cookie` header.
fn chunked(token: &str, n: usize) -> String {
    let size = token.len().div_ceil(n);
    let parts: Vec<String> = token
        .as_bytes()
        .chunks(size)
        .enumerate()
        .map(|(i, p)| format!("{NAME}.{i}={}", std::str::from_utf8(p).unwrap()))
        .collect();
    assert_eq!(parts.len(), n);
    parts.join("; ")
}

async fn chunks_at_the_limit_are_joined_one_more_gives_a_fresh_session(on: Adapter) {
    let (cap, _g) = capture();
    let token = mint(on, "/login").await;
    for (max, how) in [
        (3, "cookie"),
        (3, "builder"),
        (DEFAULT_MAX_CHUNKS, "default"),
    ] {
        cap.clear();
        let mw = || match how {
            "cookie" => SealedSession::sealed(keys())
                .cookie(CookieConfig::new().name("sid").max_chunks(max).unwrap()),
            "builder" => SealedSession::sealed(keys()).max_chunks(max).unwrap(),
            _ => SealedSession::sealed(keys()),
        };
        let (status, body, _) = get_user(on, mw(), &[&chunked(&token, max)]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"), "{how}");
        no_refusal(&cap);

        let (status, body, set) = get_user(on, mw(), &[&chunked(&token, max + 1)]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"), "{how}");
        // Every chunk the request carried is cleared.
        assert_eq!(set.len(), max + 1, "{how}: {set:?}");
        assert!(set.iter().all(|c| c.contains("Max-Age=0")), "{set:?}");
        refused_once(&cap, "too_many_chunks", &token);
    }
}

async fn the_last_chunk_setting_wins(on: Adapter) {
    let (_cap, _g) = capture();
    let token = mint(on, "/login").await;
    // `cookie` after `max_chunks`, and `max_chunks` after `cookie`; `limits` leaves it alone.
    let cookie = |n| CookieConfig::new().name("sid").max_chunks(n).unwrap();
    let a = SealedSession::sealed(keys())
        .max_chunks(2)
        .unwrap()
        .cookie(cookie(3))
        .limits(Limits::new());
    let b = SealedSession::sealed(keys())
        .cookie(cookie(2))
        .max_chunks(3)
        .unwrap()
        .limits(Limits::new());
    for mw in [a, b] {
        let (_, body, _) = get_user(on, mw, &[&chunked(&token, 3)]).await;
        assert_eq!(body, "alice");
    }
}

async fn token_at_the_limit_is_opened_one_byte_over_gives_a_fresh_session(on: Adapter) {
    let (cap, _g) = capture();
    let token = mint(on, "/login").await;
    let cookie = format!("{NAME}={token}");
    let mw = |n| SealedSession::sealed(keys()).limits(Limits::new().token_len(n));
    let (status, body, _) = get_user(on, mw(token.len()), &[&cookie]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
    no_refusal(&cap);
    let (status, body, set) = get_user(on, mw(token.len() - 1), &[&cookie]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"));
    assert!(
        set.iter()
            .any(|c| c.starts_with(NAME) && c.contains("Max-Age=0"))
    );
    refused_once(&cap, "too_large", &token);
}

async fn token_limit_applies_to_joined_chunks(on: Adapter) {
    let (cap, _g) = capture();
    // The bound is on the joined token, whatever the size of each chunk.
    let big = mint(on, &format!("/pad/{}", 9000)).await;
    let mw = |n| SealedSession::sealed(keys()).limits(Limits::new().token_len(n));
    let (_, body, _) = get_user(on, mw(big.len()), &[&chunked(&big, 4)]).await;
    assert_eq!(body, "alice");
    no_refusal(&cap);
    let (_, body, _) = get_user(on, mw(big.len() - 1), &[&chunked(&big, 4)]).await;
    assert_eq!(body, "<none>");
    refused_once(&cap, "too_large", &big);
}

async fn data_at_the_limit_is_opened_one_byte_over_gives_a_fresh_session(on: Adapter) {
    let (cap, _g) = capture();
    let token = mint(on, "/pad/100").await;
    let data_len = serde_json::to_string(&serde_json::json!({
        "pad": "x".repeat(100),
        "user": "alice",
    }))
    .unwrap()
    .len();
    let cookie = format!("{NAME}={token}");
    let mw = |n| SealedSession::sealed(keys()).limits(Limits::new().data_len(n));
    let (_, body, _) = get_user(on, mw(data_len), &[&cookie]).await;
    assert_eq!(body, "alice");
    no_refusal(&cap);
    let (status, body, _) = get_user(on, mw(data_len - 1), &[&cookie]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"));
    refused_once(&cap, "data_too_large", &token);
}

async fn data_at_the_depth_limit_is_opened_one_level_over_gives_a_fresh_session(on: Adapter) {
    let (cap, _g) = capture();
    for depth in [2, 5, DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH] {
        cap.clear();
        // `{"user":..,"k":[..]}` with depth - 1 nested arrays is `depth` levels deep.
        let token = mint(on, &format!("/deep/{}", depth - 1)).await;
        let cookie = format!("{NAME}={token}");
        let mw = |n| SealedSession::sealed(keys()).limits(Limits::new().json_depth(n));
        let (_, body, _) = get_user(on, mw(depth), &[&cookie]).await;
        assert_eq!(body, "alice", "{depth}");
        no_refusal(&cap);
        let (status, body, _) = get_user(on, mw(depth - 1), &[&cookie]).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "<none>"),
            "{depth}"
        );
        refused_once(&cap, "data_too_deep", &token);
        if depth == DEFAULT_MAX_JSON_DEPTH {
            let (_, body, _) = get_user(on, SealedSession::sealed(keys()), &[&cookie]).await;
            assert_eq!(body, "alice", "the default is {DEFAULT_MAX_JSON_DEPTH}");
            let deeper = mint(on, &format!("/deep/{depth}")).await;
            let (_, body, _) = get_user(
                on,
                SealedSession::sealed(keys()),
                &[&format!("{NAME}={deeper}")],
            )
            .await;
            assert_eq!(body, "<none>");
        }
    }
}

async fn data_deeper_than_serde_json_parses_is_refused_not_a_500(on: Adapter) {
    let (cap, _g) = capture();
    // A token may carry what serde_json will not parse back (200 levels: made here with the
    // codec, as another holder of the key could; the middleware's `insert` refuses it); it
    // is refused, whatever the limit says.
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut state = SessionState::new(
        SessionId::generate().unwrap(),
        now,
        now.saturating_add(std::time::Duration::from_secs(3600)),
    );
    state.insert("user", "alice").unwrap();
    state.insert("k", &nested(200)).unwrap();
    let token = SealedCodec::new(keys())
        .seal(&state, NAME.as_bytes())
        .unwrap();
    let cookie = format!("{NAME}={token}");
    let mw = SealedSession::sealed(keys()).limits(Limits::new().json_depth(usize::MAX));
    let (status, body, _) = get_user(on, mw, &[&cookie]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"));
    refused_once(&cap, "data_too_deep", &token);
}

fn bearer_app(on: Adapter, limits: Limits) -> App {
    app(
        on,
        SealedSession::sealed(keys())
            .bearer(BearerConfig::new())
            .limits(limits),
    )
}

async fn bearer_get(on: Adapter, limits: Limits, token: &str) -> (StatusCode, String) {
    let tc = bearer_app(on, limits);
    let resp = tc
        .get("/user")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await;
    let status = resp.status();
    (status, resp.into_body())
}

async fn bearer_tokens_over_a_limit_are_401s(on: Adapter) {
    let (cap, _g) = capture();
    let token = mint_bearer(on, "/deep/3").await; // 4 levels
    for (limits, reason) in [
        (Limits::new().token_len(token.len()), None),
        (Limits::new().token_len(token.len() - 1), Some("too_large")),
        (Limits::new().json_depth(4), None),
        (Limits::new().json_depth(3), Some("data_too_deep")),
    ] {
        cap.clear();
        let (status, body) = bearer_get(on, limits, &token).await;
        match reason {
            None => {
                assert_eq!((status, body.as_str()), (StatusCode::OK, "alice"));
                no_refusal(&cap);
            }
            Some(reason) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
                refused_once(&cap, reason, &token);
            }
        }
    }
}

async fn a_refused_cookie_session_starts_over_cleanly(on: Adapter) {
    let (_cap, _g) = capture();
    // After a refusal the client gets a working session again.
    let token = mint(on, "/deep/10").await;
    let mw = SealedSession::sealed(keys()).limits(Limits::new().json_depth(4));
    let tc = app(on, mw);
    let mut jar = Jar::default();
    jar.set(NAME, &token);
    let (status, body) = send(&tc, &mut jar, false, "/user").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "<none>"));
    assert!(jar.get(NAME).is_none(), "the refused cookie was cleared");
    let (status, _) = send(&tc, &mut jar, true, "/login").await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = send(&tc, &mut jar, false, "/user").await;
    assert_eq!(body, "alice");
}

async fn a_handler_cannot_store_data_deeper_than_the_limit(on: Adapter) {
    // At the limit: stored, sent, and opened again by the same middleware.
    for depth in [3, DEFAULT_MAX_JSON_DEPTH] {
        let limits = Limits::new().json_depth(depth);
        let tc = app(on, SealedSession::sealed(keys()).limits(limits));
        // `{"user":..,"k":[..]}` with depth - 1 nested arrays is `depth` levels deep.
        let resp = tc.post(format!("/deep/{}", depth - 1)).send().await;
        resp.assert_status_is_ok();
        let mut jar = Jar::default();
        jar.absorb(&resp);
        let (_, body) = send(&tc, &mut jar, false, "/user").await;
        assert_eq!(body, "alice", "{depth}");
        // One level more: the insert fails, naming the key and the bound. What the handler
        // stored before it (the user) is still sent, as after any handler error, and opens:
        // nothing is sent that would be refused on its way back.
        let resp = tc.post(format!("/deep/{depth}")).send().await;
        resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
        let mut jar = Jar::default();
        jar.absorb(&resp);
        let (_, who) = send(&tc, &mut jar, false, "/user").await;
        assert_eq!(who, "alice", "{depth}");
        let body = resp.into_body();
        assert!(
            body.contains("\"k\"") && body.contains(&depth.to_string()),
            "{body}"
        );
    }
}

both!(
    no_chunk_index_makes_the_middleware_work_in_proportion_to_it,
    only_canonical_chunk_names_are_read,
    cookie_header_at_the_limit_is_read_one_byte_over_is_431,
    cookie_headers_are_bounded_together,
    chunks_at_the_limit_are_joined_one_more_gives_a_fresh_session,
    the_last_chunk_setting_wins,
    token_at_the_limit_is_opened_one_byte_over_gives_a_fresh_session,
    token_limit_applies_to_joined_chunks,
    data_at_the_limit_is_opened_one_byte_over_gives_a_fresh_session,
    data_at_the_depth_limit_is_opened_one_level_over_gives_a_fresh_session,
    data_deeper_than_serde_json_parses_is_refused_not_a_500,
    bearer_tokens_over_a_limit_are_401s,
    a_refused_cookie_session_starts_over_cleanly,
    a_handler_cannot_store_data_deeper_than_the_limit,
);
