//! Inputs that once made a fuzz target fail (`fuzz/`, see CONTRIBUTING.md, "Fuzzing"), kept in
//! `tests/fuzz-regressions/<target>/` and replayed here through the same public paths, with
//! the property that failed. `fuzz/run.sh` also replays them at the start of every run.
//!
//! - `session_data/`: whole session payloads (`docs/FORMAT.md`, section 7), signed here as
//!   the key holder would (sections 1.2, 4 and 6) and opened with `SignedCodec`; whenever
//!   serde_json reads the data as an object, the session must read the same, and after a
//!   change it must seal again unless the change took it past the token size limit.
//! - `authorization_header/`: a byte choosing the fuzz target's backend (ignored here), then
//!   an `Authorization` header value; another scheme than `Bearer` must be no session, not a
//!   401.
#![cfg(feature = "poem")]

mod common {
    pub mod fixtures;
}

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixtures::keys;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use poem::http::{HeaderValue, StatusCode};
use poem::test::TestClient;
use poem::web::Json;
use poem::{EndpointExt, Route, get, handler};
use serde_json::{Map, Value};
use sha2::Sha256;

use sealed_session::{
    Algorithm, BearerConfig, Codec, Key, Keyring, ManualClock, OpenError, SealError, SealedCodec,
    SealedSession, Session, SessionState, SignedCodec, Timestamp,
};

const MATERIAL: [u8; 32] = *b"fuzz regression key material!!!!";
const PURPOSE: &[u8] = b"__Host-sid";

/// The files of one target's regressions, by name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regressions in {}", dir.display());
    out
}

fn codec() -> SignedCodec {
    SignedCodec::new(
        Keyring::new([Key::new("k2", Algorithm::Aes256Gcm, &MATERIAL).unwrap()]).unwrap(),
    )
}

/// A signed token of `payload`, made from `docs/FORMAT.md` rather than by the codec.
fn sign(payload: &[u8]) -> String {
    sign_for(payload, PURPOSE)
}

/// [`sign`] for another purpose (cookie name).
fn sign_for(payload: &[u8], purpose: &[u8]) -> String {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &MATERIAL)
        .expand(b"sealed-session/v1/hmac-sha256", &mut key)
        .unwrap();
    let header = [1, 2, 2, b'k', b'2'];
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&header);
    mac.update(&(purpose.len() as u16).to_be_bytes());
    mac.update(purpose);
    mac.update(payload);
    let mut raw = header.to_vec();
    raw.extend_from_slice(payload);
    raw.extend_from_slice(&mac.finalize().into_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// A sealed (AES-256-GCM) token of `payload`, made from `docs/FORMAT.md` (sections 1.2, 4
/// and 5) rather than by the codec. A fixed nonce: test data only.
fn seal_for(payload: &[u8], purpose: &[u8]) -> String {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, &MATERIAL)
        .expand(b"sealed-session/v1/aead/aes256gcm", &mut key)
        .unwrap();
    let header = [1, 1, 2, b'k', b'2'];
    let nonce = [9u8; 12];
    let mut ad = header.to_vec();
    ad.extend_from_slice(&(purpose.len() as u16).to_be_bytes());
    ad.extend_from_slice(purpose);
    let msg = Payload {
        msg: payload,
        aad: &ad,
    };
    let sealed = aes_gcm::Aes256Gcm::new(&key.into())
        .encrypt(&nonce.into(), msg)
        .unwrap();
    let mut raw = header.to_vec();
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    URL_SAFE_NO_PAD.encode(raw)
}

/// The payload of a session with no subject whose data is `json`.
fn payload(json: &str) -> Vec<u8> {
    let mut p = vec![7u8; 16];
    for t in [1_764_000_000_000u64, 1_764_000_000_000, 1_764_086_400_000] {
        p.extend_from_slice(&t.to_be_bytes());
    }
    p.push(0);
    p.extend_from_slice(json.as_bytes());
    p
}

fn open(payload: &[u8]) -> SessionState {
    codec().open(&sign(payload), PURPOSE).unwrap().into_state()
}

/// The data part of a payload: after the fixed fields and the subject, if any.
fn data_of(payload: &[u8]) -> &[u8] {
    let flags = payload[40];
    let mut rest = &payload[41..];
    if flags & 1 == 1 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2 + n..];
    }
    // A binding (docs/FORMAT.md, section 7): kind 1, a 32-byte thumbprint; kind 2, an id,
    // a length and a key. Where it does not fit, the rest is what the codec refuses.
    if flags & 2 == 2 {
        let len = match rest.first() {
            Some(1) => 33,
            Some(2) => rest.get(17..19).map_or(usize::MAX, |n| {
                19 + usize::from(u16::from_be_bytes([n[0], n[1]]))
            }),
            _ => usize::MAX,
        };
        rest = rest.get(len..).unwrap_or(rest);
    }
    rest
}

/// The session reads what serde_json reads: each key, emptiness, the whole map.
fn assert_agrees(state: &SessionState, map: &Map<String, Value>, what: &str) {
    for (k, v) in map {
        assert_eq!(
            state.get::<Value>(k).unwrap().as_ref(),
            Some(v),
            "{what}: get({k:?})"
        );
    }
    assert_eq!(state.is_empty(), map.is_empty(), "{what}: is_empty");
    assert_eq!(state.clone().data().unwrap(), map, "{what}: data()");
}

#[test]
fn session_data_regressions_agree_with_serde_json() {
    for (name, payload) in inputs("session_data") {
        // A binding docs/FORMAT.md refuses (truncated, too long, a key that is not a JSON
        // object) is refused, naming the binding, whatever the data.
        if payload.get(40).is_some_and(|f| f & 2 == 2)
            && let Err(OpenError::Malformed(m)) = codec().open(&sign(&payload), PURPOSE)
        {
            assert!(m.contains("binding"), "{name}: {m}");
            continue;
        }
        let data = data_of(&payload);
        let map = if data.is_empty() {
            Map::new()
        } else {
            match serde_json::from_slice(data) {
                Ok(map) => map,
                // What serde_json refuses, the codec refuses, and names the cause.
                Err(_) => {
                    match codec().open(&sign(&payload), PURPOSE) {
                        Err(OpenError::Malformed(_) | OpenError::DataTooDeep { .. }) => {}
                        other => panic!("{name}: data serde_json refuses gave {other:?}"),
                    }
                    continue;
                }
            }
        };
        let state = open(&payload);
        assert_agrees(&state, &map, &name);
        // And after a change, which writes the data out again.
        let mut changed = state.clone();
        changed.insert("fz", &1).unwrap();
        let mut want = map.clone();
        want.insert("fz".into(), 1.into());
        assert_agrees(&changed, &want, &name);
        let token = match codec().seal(&changed, PURPOSE) {
            Ok(t) => t,
            // A session that opened at the size limit and grew past it is refused, not sent.
            Err(SealError::TooLarge { len, max }) => {
                assert!(len > max, "{name}: refused at {len} of {max}");
                // "fz":1 adds 7 bytes of JSON, 10 or fewer characters of token text.
                assert!(
                    sign(&payload).len() + 10 > max,
                    "{name}: refused, but it was not within 10 characters of the limit"
                );
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let back = codec().open(&token, PURPOSE).unwrap().into_state();
        assert_agrees(&back, &want, &name);
    }
}

/// Found by fuzzing (`session_data`): a session that opens at the codec's size limit
/// (16 KiB of token text) and grows is refused with `TooLarge` when it is sealed again; the
/// fuzz target had expected every change to re-seal.
#[test]
fn a_session_at_the_size_limit_that_grows_is_refused_not_sealed() {
    let max = sealed_session::codec::DEFAULT_MAX_TOKEN_LEN;
    // The input found: it opens, at the limit exactly. Its data, written out again by
    // serde_json (escapes decoded), is shorter, so it seals again.
    let found = inputs("session_data")
        .into_iter()
        .find(|(name, _)| name == "grows-past-the-size-limit")
        .map(|(_, p)| p)
        .unwrap();
    assert_eq!(sign(&found).len(), max);
    assert!(codec().seal(&open(&found), PURPOSE).unwrap().len() <= max);
    // Data as serde_json writes it, padded to the limit: unchanged, it seals to the same
    // token; grown, it is refused.
    let at_limit = (12_000..12_300)
        .map(|n| payload(&format!(r#"{{"pad":"{}"}}"#, "x".repeat(n))))
        .find(|p| sign(p).len() == max)
        .unwrap();
    let token = sign(&at_limit);
    let state = open(&at_limit);
    assert_eq!(codec().seal(&state, PURPOSE).unwrap(), token);
    let mut grown = state.clone();
    grown.insert("fz", &1).unwrap();
    match codec().seal(&grown, PURPOSE) {
        Err(SealError::TooLarge { len, max: m }) => {
            assert_eq!(m, max);
            assert!(len > max);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A token signed (or sealed) with a valid key whose data is not a JSON object serde_json
/// reads: the codec refuses it with `Malformed`, and the middleware gives a fresh session,
/// never one that holds the data. These opened when the data was only split into its
/// entries on arrival and each value parsed at its first read: `{"a":tru}` was accepted,
/// and sealed again as it came.
#[tokio::test]
async fn malformed_data_in_an_authentic_token_is_refused() {
    let ring = || Keyring::new([Key::new("k2", Algorithm::Aes256Gcm, &MATERIAL).unwrap()]).unwrap();
    let tc = TestClient::new(
        Route::new().at("/", get(me)).with(
            SealedSession::signed(ring())
                .host_prefix(false)
                // A minute after the payloads' issue time.
                .clock(ManualClock::new(Timestamp::from_millis(1_764_000_060_000))),
        ),
    );
    for json in [
        r#"{"a":tru}"#,
        r#"{"user":"alice","a":fals}"#,
        r#"{"user":"alice","a":nul}"#,
        r#"{"user":"alice","a":01}"#,
        r#"{"user":"alice","a":"\x"}"#,
        r#"{"user":"alice","a":"\ud800"}"#,
        r#"{"user":"alice","a":"\udc00"}"#,
        r#"{"user":"alice","a":"\u00"}"#,
        "{\"user\":\"alice\",\"a\":\"tab\there\"}",
        r#"{"user":"alice"} x"#,
        r#"{"user":"alice"}}"#,
        r#"{"user":"alice",}"#,
        r#"{"user":"alice","a":[1,2}"#,
        r#"{"user":"alice","a":1e400}"#,
    ] {
        let p = payload(json);
        assert!(
            matches!(
                codec().open(&sign(&p), PURPOSE),
                Err(OpenError::Malformed("session data is not a JSON object"))
            ),
            "{json}"
        );
        // Through the middleware: the token is refused, the session starts empty.
        let resp = tc
            .get("/")
            .header("cookie", format!("sid={}", sign_for(&p, b"sid")))
            .send()
            .await;
        resp.assert_status_is_ok();
        resp.assert_json(serde_json::json!({ "new": true, "user": null }))
            .await;
    }
    // A byte that is not UTF-8 inside a string, sealed (AES-256-GCM) rather than signed.
    let p = [payload(r#"{"user":"al"#).as_slice(), b"\xff", br#"ice"}"#].concat();
    assert!(matches!(
        SealedCodec::new(ring()).open(&seal_for(&p, PURPOSE), PURPOSE),
        Err(OpenError::Malformed("session data is not a JSON object"))
    ));
    // Well formed, the same session opens through both.
    let good = payload(r#"{"user":"alice"}"#);
    let resp = tc
        .get("/")
        .header("cookie", format!("sid={}", sign_for(&good, b"sid")))
        .send()
        .await;
    resp.assert_json(serde_json::json!({ "new": false, "user": "alice" }))
        .await;
    assert!(
        SealedCodec::new(ring())
            .open(&seal_for(&good, PURPOSE), PURPOSE)
            .is_ok()
    );
}

/// Found by fuzzing (`session_data`): `get` read the first of two entries with the same key,
/// `data()` (serde_json) the last, so one session showed two values for one key.
#[test]
fn duplicate_keys_read_as_the_last_one_like_serde_json() {
    let state = open(&payload(r#"{"role":"user","n":1,"role":"admin"}"#));
    assert_eq!(
        state.get::<String>("role").unwrap().as_deref(),
        Some("admin")
    );
    assert_eq!(state.clone().data().unwrap()["role"], "admin");
    // Removing the key removes every entry of it.
    let mut s = state.clone();
    assert_eq!(s.remove("role").unwrap(), Some(Value::from("admin")));
    assert_eq!(s.get::<Value>("role").unwrap(), None);
    let back = codec()
        .open(&codec().seal(&s, PURPOSE).unwrap(), PURPOSE)
        .unwrap()
        .into_state();
    assert_eq!(back.get::<Value>("role").unwrap(), None);
}

/// Found by fuzzing (`session_data`): data that arrived as an object with no entries but
/// with white space (`{ }`) was not `is_empty`.
#[test]
fn an_empty_object_with_white_space_is_empty() {
    for json in ["{ }", "{\n}\r\n", "{\t}", "{}"] {
        assert!(open(&payload(json)).is_empty(), "{json:?}");
    }
    assert!(!open(&payload(r#"{ "a": 1 }"#)).is_empty());
}

#[handler]
fn me(session: &Session) -> poem::Result<Json<Value>> {
    Ok(Json(serde_json::json!({
        "new": session.is_new(),
        "user": session.get::<Value>("user")?,
    })))
}

#[tokio::test]
async fn authorization_header_regressions_of_other_schemes_are_no_session() {
    let tc = TestClient::new(
        Route::new()
            .at("/", get(me))
            .with(SealedSession::sealed(keys()).bearer(BearerConfig::new().max_len(4096))),
    );
    for (name, input) in inputs("authorization_header") {
        let value = &input[1..];
        let trimmed = value.trim_ascii();
        let bearer = trimmed
            .iter()
            .position(|b| *b == b' ')
            .is_some_and(|sp| trimmed[..sp].eq_ignore_ascii_case(b"bearer"));
        let resp = tc
            .get("/")
            .header("authorization", HeaderValue::from_bytes(value).unwrap())
            .send()
            .await;
        if bearer {
            assert_eq!(resp.0.status(), StatusCode::UNAUTHORIZED, "{name}");
        } else {
            assert_eq!(resp.0.status(), StatusCode::OK, "{name}");
            resp.assert_json(serde_json::json!({ "new": true, "user": null }))
                .await;
        }
    }
}
