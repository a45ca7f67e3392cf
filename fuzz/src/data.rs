//! Session payloads and session data, as only a key holder can write them: the fuzzed bytes
//! are a whole payload (`docs/FORMAT.md`, section 7: id, times, flags, subject, then the data's
//! JSON text), signed here with the fixture's primary key, then opened with [`SignedCodec`].
//! This is the only way past the tag to the payload decoder and to the data's parsing
//! (`src/state/`); the signing is re-implemented from `docs/FORMAT.md` (sections 1.2, 4 and 6)
//! with the public HKDF and HMAC crates, and checked against [`SignedCodec`] at start-up.
//!
//! Checks, for every input:
//! - the payload opens exactly when an independent decoder of section 7 accepts it and
//!   serde_json reads its data as an object (nothing serde_json refuses is accepted), with the
//!   same id, times and subject;
//! - an unchanged session re-signs to the very same token when its data is written as
//!   serde_json writes it (compact, keys sorted), and to a token of the same session always;
//! - the session agrees with serde_json's map: every key's value through `get` and
//!   `contains`, absent keys, `is_empty`, the whole map; after some removals and inserts, the
//!   session equals the same changes made to serde_json's map, and still does after
//!   re-sealing (signed) and through a JWT.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use sealed_session::{Codec, JwtCodec, Policy, SessionState, SignedCodec, Timestamp};

use crate::fixtures::{self, JwtRing, NOW, STATES, Snapshot, T0};

const PURPOSE: &[u8] = b"__Host-sid";
const HEADER: [u8; 5] = [1, 2, 2, b'k', b'2'];

struct Signer {
    mac: Hmac<Sha256>,
    codec: SignedCodec,
    jwt: JwtCodec,
}

static SIGNER: LazyLock<Signer> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, &fixtures::primary_material())
        .expand(b"sealed-session/v1/hmac-sha256", &mut key)
        .expect("32 bytes of HKDF output");
    let s = Signer {
        mac: <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length"),
        codec: SignedCodec::new(fixtures::ring()),
        jwt: fixtures::jwt_codec(JwtRing::Hmac),
    };
    for st in STATES.iter() {
        let ours = s.sign(&fixtures::record(st));
        let theirs = s.codec.seal(st, PURPOSE).expect("fixture seal");
        assert_eq!(ours, theirs, "docs/FORMAT.md and SignedCodec disagree");
    }
    s
});

impl Signer {
    fn sign(&self, payload: &[u8]) -> String {
        let mut raw = HEADER.to_vec();
        raw.extend_from_slice(payload);
        let mut mac = self.mac.clone();
        mac.update(&HEADER);
        mac.update(&(PURPOSE.len() as u16).to_be_bytes());
        mac.update(PURPOSE);
        mac.update(payload);
        raw.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// What section 7 says a payload holds: the metadata, and the data's bytes.
struct Decoded<'a> {
    snap: Snapshot,
    data: &'a [u8],
}

fn decode(p: &[u8]) -> Option<Decoded<'_>> {
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().unwrap_or_default());
    if p.len() < 41 {
        return None;
    }
    let flags = p[40];
    if flags > 3 {
        return None;
    }
    let mut rest = &p[41..];
    let subject = if flags & 1 == 1 {
        if rest.len() < 2 {
            return None;
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if n > 1024 || rest.len() < 2 + n {
            return None;
        }
        let s = std::str::from_utf8(&rest[2..2 + n]).ok()?.to_owned();
        rest = &rest[2 + n..];
        Some(s)
    } else {
        None
    };
    // Bit 1: a binding, kind 1 (a 32-byte thumbprint) or 2 (16-byte id, u16be length at
    // most 2048, a JSON object as UTF-8 key text).
    let binding = if flags & 2 == 2 {
        let (&kind, after) = rest.split_first()?;
        let len = match kind {
            1 => 32,
            2 => {
                let n = after.get(16..18)?;
                let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
                if n > 2048 {
                    return None;
                }
                let key = std::str::from_utf8(after.get(18..18 + n)?).ok()?;
                // JWK text: a JSON object (its syntax; no number need fit an f64).
                serde_json::from_str::<serde::de::IgnoredAny>(key).ok()?;
                if !key.starts_with('{') {
                    return None;
                }
                18 + n
            }
            _ => return None,
        };
        let raw = rest.get(..1 + len)?.to_vec();
        rest = &rest[1 + len..];
        Some(raw)
    } else {
        None
    };
    if rest.first().is_some_and(|b| *b != b'{') {
        return None;
    }
    Some(Decoded {
        snap: Snapshot {
            id: p[..16].try_into().unwrap_or_default(),
            issued_at: u64_at(16),
            last_seen: u64_at(24),
            expires_at: u64_at(32),
            subject,
            binding,
            data: None,
        },
        data: rest,
    })
}

/// `get` and friends agree with `map` on every key it has and on one it lacks.
fn agrees(st: &SessionState, map: &Map<String, Value>, what: &str) {
    for (k, v) in map {
        match st.get::<Value>(k) {
            Ok(Some(got)) if &got == v => {}
            other => panic!(
                "{what}: get({}) = {}, serde_json reads {}",
                short(k),
                short(&other),
                short(v)
            ),
        }
        assert!(
            st.contains(k).unwrap_or(false),
            "{what}: contains({})",
            short(k)
        );
    }
    let absent = "\u{1}absent";
    if !map.contains_key(absent) {
        assert!(
            matches!(st.get::<Value>(absent), Ok(None)),
            "{what}: an absent key"
        );
    }
    assert_eq!(st.is_empty(), map.is_empty(), "{what}: is_empty");
    let mut whole = st.clone();
    match whole.data() {
        Ok(m) => assert!(
            m == map,
            "{what}: data() = {}, not {}",
            short(m),
            short(map)
        ),
        Err(e) => panic!("{what}: data() failed ({e}) where serde_json reads an object"),
    }
}

pub fn session_data(payload: &[u8]) {
    let s = &*SIGNER;
    let token = s.sign(payload);
    let opened = s.codec.open(&token, PURPOSE);
    // Tokens over the codec's default limit (16 KiB of text) are refused before decoding.
    let expected = decode(payload).filter(|_| token.len() <= 16 * 1024);
    // The data as serde_json reads it: what the session must hold, if it opens at all.
    let map = expected.as_ref().and_then(|e| {
        if e.data.is_empty() {
            Some(Map::new())
        } else {
            serde_json::from_slice::<Map<String, Value>>(e.data).ok()
        }
    });
    let (opened, expected, map) = match (opened, expected, map) {
        (Ok(o), Some(e), Some(m)) => (o, e, m),
        (Err(_), None, _) | (Err(_), Some(_), None) => return,
        (Ok(_), None, _) => panic!("a payload that section 7 refuses opened"),
        (Ok(_), Some(_), None) => panic!("data that serde_json refuses opened"),
        (Err(e), Some(_), Some(_)) => panic!("a payload that section 7 accepts was refused: {e}"),
    };
    let st = opened.into_state();
    let mut snap = Snapshot::of(&st);
    snap.data = None;
    assert_eq!(snap, expected.snap, "metadata");
    let canonical = if map.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&map).unwrap_or_default()
    };
    let again = s.codec.seal(&st, PURPOSE);
    if canonical == expected.data {
        assert_eq!(
            again.as_deref().ok(),
            Some(token.as_str()),
            "an unchanged session re-signs to another token"
        );
    }
    // Written again by serde_json, the data may be longer than it came (`1e2` is `100.0`):
    // past the size limit, it is refused, not sent.
    match again {
        Ok(t) => agrees(
            s.codec
                .open(&t, PURPOSE)
                .expect("a token the codec made does not open")
                .state(),
            &map,
            "re-sealed unchanged",
        ),
        Err(e) => assert!(t_too_large(&e), "re-sealing unchanged data failed: {e}"),
    }

    let keys: Vec<String> = map.keys().cloned().collect();
    let mut changed = st.clone();
    let mut want = map.clone();
    agrees(&st, &map, "as opened");
    // Some changes: remove the first key, overwrite the last, add one.
    let changes: Vec<(String, Option<Value>)> = [
        keys.first().map(|k| (k.clone(), None)),
        keys.last()
            .map(|k| (k.clone(), Some(json!({"over": [1, "written"]})))),
        Some(("fz\"é".to_owned(), Some(json!([1, "a", null])))),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (k, v) in &changes {
        let r = match v {
            Some(v) => changed.insert(k, v).map(|_| ()),
            None => changed.remove(k).map(|_| ()),
        };
        if let Err(e) = r {
            panic!("changing {k:?} failed: {e}");
        }
        match v {
            Some(v) => want.insert(k.clone(), v.clone()),
            None => want.remove(k),
        };
    }
    agrees(&changed, &want, "after changes");
    match s.codec.seal(&changed, PURPOSE) {
        Ok(t) => {
            let back = s
                .codec
                .open(&t, PURPOSE)
                .expect("a token the codec made does not open")
                .into_state();
            agrees(&back, &want, "after changes and re-sealing");
        }
        // The changes can grow a session that opened at or just under the size limit past
        // it: that one is refused, not sent, and nothing else may fail.
        Err(e) => assert!(t_too_large(&e), "re-sealing changed data failed: {e}"),
    }
    // The same session through a JWT, with times that the JWT codec accepts at NOW.
    for (state, want) in [(&st, &map), (&changed, &want)] {
        let mut j = state.clone();
        j.set_issued_at(T0);
        j.set_last_seen(T0);
        j.set_expires_at(Timestamp::from_millis(T0.as_millis() + 3_600_000));
        match s.jwt.seal(&j, b"") {
            Ok(t) => {
                let back = s.jwt.open_checked(&t, b"", &Policy::default(), NOW);
                match back {
                    Ok((o, _)) => agrees(o.state(), want, "through a JWT"),
                    Err(e) => panic!("a JWT the codec made does not open: {e}"),
                }
            }
            // Sessions too large for a JWT, or subjects too long, are refused, not sent.
            Err(e) => assert!(
                t_too_large(&e),
                "sealing data serde_json reads as a JWT failed: {e}"
            ),
        }
    }
}

/// Debug text cut to a readable length (values can be kilobytes long).
fn short(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// The size limit's refusal, for a token really over the limit.
fn t_too_large(e: &sealed_session::SealError) -> bool {
    matches!(e, sealed_session::SealError::TooLarge { len, max } if len > max)
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = STATES.iter().map(fixtures::record).collect();
    let base = fixtures::record(&STATES[0]);
    for json in [
        &br#" { "a" : "x}\"]{" , "b\"q":[1,{"c":"]"}], "n":-1.5e3,"t":true , "z":null,"o":{} } "#[..],
        br#"{"\u0061":1,"\ud83d\ude00":"\u00e9"}"#,
        br#"{"deep":[[[[[[[[[[[[{"k":[]}]]]]]]]]]]]]}"#,
        b"{\"a\":1,\n\t\"b\":\"\\\\\"}\r\n",
        b"{}",
        br#"{"a":tru}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":1} x"#,
    ] {
        let mut p = base.clone();
        p.extend_from_slice(json);
        out.push(p);
    }
    out
}
