//! Targets that go through the whole middleware: a Poem request whose `Cookie` or
//! `Authorization` header holds the fuzzed bytes, the [`SealedSession`] endpoint, a handler
//! that reads the session and, for a session it was given, stores a value.
//!
//! Checks, for every input:
//! - nothing panics, and the answer is a 200 (the handler cannot fail) or, for a bearer token
//!   that is refused, a 401 with an RFC 6750 challenge. The middleware's documented 5xx (a
//!   session too large to send, an unavailable store or denylist) cannot happen with this
//!   set-up, so any 5xx fails;
//! - the handler is only ever given an existing session (not a fresh one) when the request
//!   carried a fixture token: it is then that session, never a revoked, expired or idle one;
//! - a presented bearer token is either accepted or answered with a 401, never silently
//!   replaced by a fresh session;
//! - every token the response sends (`Set-Cookie`, chunked or not, or the token header)
//!   opens with the codec and holds the session the handler saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use poem::endpoint::BoxEndpoint;
use poem::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use poem::http::{HeaderValue, StatusCode};
use poem::web::Json;
use poem::{Endpoint, EndpointExt, Request, Response, handler};
use serde_json::{Value, json};

use sealed_session::codec::SessionIdCodec;
use sealed_session::store::{MemoryStore, Store};
use sealed_session::{
    BearerConfig, Codec, JwtCodec, ManualClock, MemoryDenylist, Policy, SealedCodec, SealedSession,
    Session, SessionId, SessionState, SignedCodec,
};

use crate::fixtures::{self, BEARER_PURPOSE, COOKIE_PURPOSE, JwtRing, NOW, REVOKED, STATES};

#[handler]
fn app(session: &Session) -> poem::Result<Json<Value>> {
    let user = session.get::<Value>("user")?;
    let is_new = session.is_new();
    if !is_new {
        // The same value every time, so the store-backed target stays deterministic.
        session.insert("seen", &true)?;
    }
    Ok(Json(json!({
        "new": is_new,
        "id": session.id().to_string(),
        "user": user,
    })))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    });
    &RT
}

/// How a backend's tokens are opened, to check what the response sends.
enum Opener {
    Codec(Arc<dyn Codec>),
    Ids(SessionIdCodec),
    Jwt(JwtCodec),
}

impl Opener {
    /// The session id inside `token`, or why it does not open.
    fn id_of(&self, token: &str, purpose: &[u8]) -> Result<SessionId, String> {
        match self {
            Opener::Codec(c) => c
                .open(token, purpose)
                .map(|o| o.state().id())
                .map_err(|e| e.to_string()),
            Opener::Ids(c) => c
                .verify(token, purpose)
                .map(|(id, _)| id)
                .map_err(|e| e.to_string()),
            Opener::Jwt(c) => c
                .open_checked(token, b"", &Policy::default(), NOW)
                .map(|(o, _)| o.state().id())
                .map_err(|e| e.to_string()),
        }
    }
}

struct Backend {
    name: &'static str,
    ep: BoxEndpoint<'static, Response>,
    opener: Opener,
    /// The sessions that may be accepted (live, not revoked, present in the store), with
    /// the `user` value each holds.
    acceptable: HashMap<SessionId, Value>,
}

fn user_of(state: &SessionState) -> Value {
    state
        .get::<Value>("user")
        .expect("fixture data")
        .unwrap_or(Value::Null)
}

/// The fixture sessions that are live and not revoked at [`NOW`].
fn acceptable() -> HashMap<SessionId, Value> {
    [0usize, 1, 2, 5, 6]
        .into_iter()
        .map(|i| (STATES[i].id(), user_of(&STATES[i])))
        .collect()
}

/// The same for JWTs: the fixture sessions, and the foreign tokens that open.
fn acceptable_jwt(codec: &JwtCodec) -> HashMap<SessionId, Value> {
    let mut out = acceptable();
    for k in fixtures::jwt_tokens(JwtRing::Hmac).into_values() {
        if k.state.is_none()
            && let Ok((o, _)) = codec.open_checked(&k.token, b"", &Policy::default(), NOW)
        {
            out.insert(o.state().id(), user_of(o.state()));
        }
    }
    out
}

/// The denylist every backend checks: the fixture session [`REVOKED`] is revoked.
fn denylist() -> Arc<MemoryDenylist> {
    let d = MemoryDenylist::builder()
        .clock(Arc::new(ManualClock::new(NOW)))
        .build();
    d.insert(
        STATES[REVOKED].id(),
        NOW.saturating_add(std::time::Duration::from_secs(86_400)),
    );
    Arc::new(d)
}

fn middleware(base: SealedSession) -> SealedSession {
    base.clock(ManualClock::new(NOW)).denylist(denylist())
}

fn boxed(ep: impl Endpoint<Output = Response> + 'static) -> BoxEndpoint<'static, Response> {
    ep.boxed()
}

static COOKIE_BACKENDS: LazyLock<Vec<Backend>> = LazyLock::new(|| {
    let store = MemoryStore::with_clock(ManualClock::new(NOW));
    runtime().block_on(async {
        for st in STATES.iter() {
            store
                .save(&st.id(), &fixtures::record(st), st.expires_at())
                .await
                .expect("memory store");
        }
    });
    vec![
        Backend {
            name: "sealed",
            ep: boxed(app.with(middleware(SealedSession::sealed(fixtures::ring())))),
            opener: Opener::Codec(Arc::new(SealedCodec::new(fixtures::ring()))),
            acceptable: acceptable(),
        },
        Backend {
            name: "signed",
            ep: boxed(app.with(middleware(SealedSession::signed(fixtures::ring())))),
            opener: Opener::Codec(Arc::new(SignedCodec::new(fixtures::ring()))),
            acceptable: acceptable(),
        },
        Backend {
            name: "stored",
            ep: boxed(app.with(middleware(SealedSession::server_store(
                store,
                fixtures::ring(),
            )))),
            opener: Opener::Ids(SessionIdCodec::new(fixtures::ring())),
            acceptable: acceptable(),
        },
    ]
});

static BEARER_BACKENDS: LazyLock<Vec<Backend>> = LazyLock::new(|| {
    let bearer = || BearerConfig::new().max_len(4096);
    let jwt = fixtures::jwt_codec(JwtRing::Hmac);
    vec![
        Backend {
            name: "sealed",
            ep: boxed(app.with(middleware(
                SealedSession::sealed(fixtures::ring()).bearer(bearer()),
            ))),
            opener: Opener::Codec(Arc::new(SealedCodec::new(fixtures::ring()))),
            acceptable: acceptable(),
        },
        Backend {
            name: "jwt",
            ep: boxed(app.with(middleware(
                SealedSession::with_codec(jwt.clone()).bearer(bearer()),
            ))),
            acceptable: acceptable_jwt(&jwt),
            opener: Opener::Jwt(jwt),
        },
    ]
});

/// Splits the input: the first byte picks the backend, the rest (split at `\n`, which no
/// header value can hold) gives the header values. `None` when a value is not a valid
/// header value (such a request never reaches a Poem endpoint).
fn split(data: &[u8], n: usize) -> Option<(usize, Vec<HeaderValue>)> {
    let (first, rest) = data.split_first()?;
    let values = rest
        .split(|b| *b == b'\n')
        .map(HeaderValue::from_bytes)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((usize::from(*first) % n, values))
}

struct Answer {
    status: StatusCode,
    resp: Response,
    body: Value,
}

fn call(ep: &BoxEndpoint<'static, Response>, req: Request) -> Answer {
    runtime().block_on(async {
        let resp = match ep.call(req).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .into_bytes()
            .await
            .expect("a body in memory");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut resp = Response::builder().status(status).finish();
        *resp.headers_mut() = headers;
        Answer { status, resp, body }
    })
}

/// The session the handler saw, when it was given an existing one: its id, checked to be an
/// acceptable fixture session with its own user.
fn existing_session(b: &Backend, body: &Value) -> Option<SessionId> {
    if body["new"] == Value::Bool(true) {
        return None;
    }
    assert_eq!(body["new"], Value::Bool(false), "{}: body {body}", b.name);
    let id = body["id"]
        .as_str()
        .and_then(SessionId::parse)
        .unwrap_or_else(|| panic!("{}: no session id in {body}", b.name));
    let Some(user) = b.acceptable.get(&id) else {
        panic!(
            "{}: the handler was given session {id}, which no acceptable fixture token holds",
            b.name
        );
    };
    assert_eq!(
        &body["user"], user,
        "{}: the session's data is not the fixture's",
        b.name
    );
    Some(id)
}

pub fn cookie_header(data: &[u8]) {
    let backends = &*COOKIE_BACKENDS;
    let Some((which, values)) = split(data, backends.len()) else {
        return;
    };
    let b = &backends[which];
    let mut req = Request::builder().uri_str("https://app.example/");
    for v in values {
        req = req.header(COOKIE, v);
    }
    let a = call(&b.ep, req.finish());
    assert_eq!(a.status, StatusCode::OK, "{}: status", b.name);
    let id = existing_session(b, &a.body);

    // What the response sends: the plain cookie or its chunks, reassembled in order.
    let name = std::str::from_utf8(COOKIE_PURPOSE).unwrap_or_default();
    let mut plain = None;
    let mut chunks = BTreeMap::new();
    for v in a.resp.headers().get_all(SET_COOKIE) {
        let v = v.to_str().expect("Set-Cookie is ASCII");
        let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
        let (k, val) = pair
            .split_once('=')
            .expect("Set-Cookie has a name=value pair");
        assert!(
            attrs.contains("Secure") && attrs.contains("HttpOnly"),
            "{v}"
        );
        if attrs.contains("Max-Age=0") {
            assert!(val.is_empty(), "a removal with a value: {v}");
            continue;
        }
        if k == name {
            assert!(
                plain.replace(val.to_owned()).is_none(),
                "two session cookies"
            );
        } else if let Some(i) = k
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|i| i.parse::<usize>().ok())
        {
            assert!(
                chunks.insert(i, val.to_owned()).is_none(),
                "chunk {i} twice"
            );
        } else {
            panic!("{}: a cookie of another name: {v}", b.name);
        }
    }
    assert!(
        plain.is_none() || chunks.is_empty(),
        "a plain cookie and chunks"
    );
    if !chunks.is_empty() {
        assert!(
            chunks.keys().copied().eq(0..chunks.len()),
            "chunks are not 0..n"
        );
    }
    let sent = plain.or_else(|| (!chunks.is_empty()).then(|| chunks.into_values().collect()));
    if let Some(token) = sent {
        let got = b
            .opener
            .id_of(&token, COOKIE_PURPOSE)
            .unwrap_or_else(|e| panic!("{}: the cookie sent does not open: {e}", b.name));
        // Only a session the handler was given is written (it stores a value in it).
        assert_eq!(
            Some(got),
            id,
            "{}: the cookie sent holds another session",
            b.name
        );
    }
}

pub fn authorization_header(data: &[u8]) {
    let backends = &*BEARER_BACKENDS;
    let Some((which, values)) = split(data, backends.len()) else {
        return;
    };
    let b = &backends[which];
    let mut req = Request::builder().uri_str("https://api.example/");
    for v in &values {
        req = req.header(AUTHORIZATION, v.clone());
    }
    let a = call(&b.ep, req.finish());
    // An independent reading of the transport's contract (`transport::bearer` docs): more
    // than one Authorization header is a 400 with `invalid_request`, whatever the schemes;
    // with one, a bearer token was presented when its scheme is `Bearer`; another scheme
    // means no session token at all.
    if values.len() > 1 {
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}: two headers", b.name);
        let challenge = a
            .resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{}: a 400 without a challenge", b.name));
        assert!(
            challenge.starts_with("Bearer error=\"invalid_request\""),
            "{challenge}"
        );
        assert!(a.resp.headers().get("x-session-token").is_none());
        return;
    }
    let presented = values.first().is_some_and(|v| {
        let v = v.as_bytes().trim_ascii();
        v.iter()
            .position(|b| *b == b' ')
            .is_some_and(|sp| v[..sp].eq_ignore_ascii_case(b"bearer"))
    });
    match a.status {
        StatusCode::OK => {
            let id = existing_session(b, &a.body);
            assert_eq!(
                id.is_some(),
                presented,
                "{}: a presented token was not used, or a session came from nowhere",
                b.name
            );
            if let Some(v) = a.resp.headers().get("x-session-token") {
                let token = v.to_str().expect("a token is ASCII");
                let got = b
                    .opener
                    .id_of(token, BEARER_PURPOSE)
                    .unwrap_or_else(|e| panic!("{}: the token sent does not open: {e}", b.name));
                assert_eq!(
                    Some(got),
                    id,
                    "{}: the token sent holds another session",
                    b.name
                );
            }
        }
        StatusCode::UNAUTHORIZED => {
            assert!(presented, "{}: a 401 without a bearer token", b.name);
            let challenge = a
                .resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{}: a 401 without a challenge", b.name));
            assert!(
                challenge.starts_with("Bearer error=\"invalid_token\""),
                "{challenge}"
            );
            assert!(a.resp.headers().get("x-session-token").is_none());
        }
        other => panic!("{}: status {other}", b.name),
    }
}

// ---- seeds ----

fn with_selector(which: u8, header: &str) -> Vec<u8> {
    let mut v = vec![which];
    v.extend_from_slice(header.as_bytes());
    v
}

pub fn seeds_cookie() -> Vec<Vec<u8>> {
    let name = "__Host-sid";
    let mut out = Vec::new();
    let sets: [(u8, HashMap<String, fixtures::Known>); 3] = [
        (0, fixtures::sealed_tokens(COOKIE_PURPOSE)),
        (1, fixtures::signed_tokens(COOKIE_PURPOSE)),
        (2, fixtures::signed_ids(COOKIE_PURPOSE)),
    ];
    for (which, set) in sets {
        for (token, k) in set {
            out.push(with_selector(which, &format!("{name}={token}")));
            if k.primary {
                out.push(with_selector(
                    which,
                    &format!("theme=dark; {name}=\"{token}\"; other=1"),
                ));
                // The same token in chunks, in two Cookie headers, out of order.
                let mid = token.len() / 2;
                out.push(with_selector(
                    which,
                    &format!(
                        "{name}.1={}\n{name}.0={}; x=y",
                        &token[mid..],
                        &token[..mid]
                    ),
                ));
            }
        }
        out.push(with_selector(which, &format!("{name}=; {name}.7=abc")));
    }
    out.push(with_selector(0, "sid=AQE; __Host-sid.0=AQECazI"));
    out
}

pub fn seeds_authorization() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for token in fixtures::sealed_tokens(BEARER_PURPOSE).into_keys() {
        out.push(with_selector(0, &format!("Bearer {token}")));
    }
    for token in crate::codecs::seeds_jwt(JwtRing::Hmac) {
        let token = String::from_utf8_lossy(&token).into_owned();
        out.push(with_selector(1, &format!("bearer  {token} ")));
    }
    out.push(with_selector(0, "Basic dXNlcjpwYXNz"));
    out.push(with_selector(1, "Bearer"));
    // Two headers: refused, never served as the first.
    out.push(with_selector(0, "Basic dXNlcjpwYXNz\nBearer x"));
    out
}
