//! Targets that open one token format directly, without HTTP.
//!
//! The fuzzer cannot make a valid AEAD tag, HMAC or signature, so every token it produces
//! must be refused unless it is one of the fixture tokens (which the seed corpus holds, and
//! which the fuzzer mutates). The checks, for every input:
//! - opening never panics;
//! - a token that opens is a fixture token (byte for byte: the base64url text of a token is
//!   unique, `docs/FORMAT.md` section 2), opened with the key that made it, holding exactly
//!   the session it was made from; for a JWT, the signed part (header and claims) is a
//!   fixture's, since other encodings of the same signature may exist;
//! - it is refused for any other purpose (cookie name), except JWTs, which ignore it;
//! - what opens re-seals, and the new token opens to the same session;
//! - [`peek`] never panics, and agrees with the codec on what opened.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use sealed_session::codec::{SessionIdCodec, TokenKind, Unverified, peek};
use sealed_session::{Codec, JwtCodec, Policy, SealedCodec, SignedCodec};

use crate::fixtures::{
    self, COOKIE_PURPOSE, JwtRing, Known, KnownJwt, NOW, STATES, Snapshot, signing_input,
};

/// The token texts to try for one input: the input itself when it is UTF-8, and the
/// base64url of its bytes (so that byte-level mutations of a token's raw form are tried too).
fn candidates(data: &[u8]) -> [Option<String>; 2] {
    [
        std::str::from_utf8(data).ok().map(str::to_owned),
        Some(URL_SAFE_NO_PAD.encode(data)),
    ]
}

/// The fixture token at `token`, or a panic naming the forgery.
fn known<'a>(set: &'a HashMap<String, Known>, token: &str, what: &str) -> &'a Known {
    match set.get(token) {
        Some(k) => k,
        None => panic!("{what}: a token that is not a fixture token opened: {token:?}"),
    }
}

fn check_peek(token: &str, kind: TokenKind, key_id: &str) {
    let peeked = match peek(token) {
        Ok(p) => p,
        Err(e) => panic!("peek refused a token that opens: {e}"),
    };
    assert_eq!(peeked.header.kind, kind, "peek: kind");
    assert_eq!(peeked.header.key_id, key_id, "peek: key id");
}

struct Sealed {
    codec: SealedCodec,
    known: HashMap<String, Known>,
}

static SEALED: LazyLock<Sealed> = LazyLock::new(|| {
    let t = Sealed {
        codec: SealedCodec::new(fixtures::ring()),
        known: fixtures::sealed_tokens(COOKIE_PURPOSE),
    };
    // Else the forgery check above would hold for want of anything opening.
    assert!(
        t.known
            .keys()
            .all(|k| t.codec.open(k, COOKIE_PURPOSE).is_ok())
    );
    t
});

pub fn open_sealed(data: &[u8]) {
    let t = &*SEALED;
    for token in candidates(data).into_iter().flatten() {
        let _ = peek(&token);
        let Ok(opened) = t.codec.open(&token, COOKIE_PURPOSE) else {
            continue;
        };
        let k = known(&t.known, &token, "sealed");
        assert_eq!(opened.key_id(), k.key_id, "sealed: opened with another key");
        assert_eq!(opened.needs_reissue(), !k.primary, "sealed: reissue flag");
        let state = opened.into_state();
        assert_eq!(Snapshot::of(&state), Snapshot::of(&STATES[k.state]));
        assert!(
            t.codec.open(&token, b"sid").is_err(),
            "sealed: opened for another purpose"
        );
        check_peek(&token, TokenKind::Sealed, k.key_id);
        let again = t.codec.seal(&state, COOKIE_PURPOSE).expect("re-seal");
        let back = t.codec.open(&again, COOKIE_PURPOSE).expect("re-open");
        assert!(!back.needs_reissue());
        assert_eq!(Snapshot::of(back.state()), Snapshot::of(&state));
        // Policy checks never panic, whatever the times.
        let _ = Policy::default().check(&state, NOW);
    }
}

struct Signed {
    codec: SignedCodec,
    known: HashMap<String, Known>,
}

static SIGNED: LazyLock<Signed> = LazyLock::new(|| {
    let t = Signed {
        codec: SignedCodec::new(fixtures::ring()),
        known: fixtures::signed_tokens(COOKIE_PURPOSE),
    };
    assert!(
        t.known
            .keys()
            .all(|k| t.codec.open(k, COOKIE_PURPOSE).is_ok())
    );
    t
});

pub fn open_signed(data: &[u8]) {
    let t = &*SIGNED;
    for token in candidates(data).into_iter().flatten() {
        let peeked = peek(&token);
        let Ok(opened) = t.codec.open(&token, COOKIE_PURPOSE) else {
            continue;
        };
        let k = known(&t.known, &token, "signed");
        assert_eq!(opened.key_id(), k.key_id, "signed: opened with another key");
        assert_eq!(opened.needs_reissue(), !k.primary, "signed: reissue flag");
        let state = opened.into_state();
        let snap = Snapshot::of(&state);
        assert_eq!(snap, Snapshot::of(&STATES[k.state]));
        assert!(
            t.codec.open(&token, b"sid").is_err(),
            "signed: opened for another purpose"
        );
        check_peek(&token, TokenKind::Signed, k.key_id);
        match peeked {
            Ok(p) => match p.unverified {
                Unverified::Session(s) => assert_eq!(Snapshot::of(&s), snap, "peek: payload"),
                other => panic!("peek: a signed token's payload read as {other:?}"),
            },
            Err(e) => panic!("peek refused a signed token that opens: {e}"),
        }
        let again = t.codec.seal(&state, COOKIE_PURPOSE).expect("re-seal");
        if k.primary {
            // Signing is deterministic: the same session under the same key, the same token.
            assert_eq!(again, token, "signed: re-signing changed the token");
        }
        let back = t.codec.open(&again, COOKIE_PURPOSE).expect("re-open");
        assert_eq!(Snapshot::of(back.state()), snap);
    }
}

struct Ids {
    codec: SessionIdCodec,
    known: HashMap<String, Known>,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| {
    let t = Ids {
        codec: SessionIdCodec::new(fixtures::ring()),
        known: fixtures::signed_ids(COOKIE_PURPOSE),
    };
    assert!(
        t.known
            .keys()
            .all(|k| t.codec.verify(k, COOKIE_PURPOSE).is_ok())
    );
    t
});

pub fn open_store_id(data: &[u8]) {
    let t = &*IDS;
    for token in candidates(data).into_iter().flatten() {
        let peeked = peek(&token);
        let Ok((id, stale)) = t.codec.verify(&token, COOKIE_PURPOSE) else {
            continue;
        };
        let k = known(&t.known, &token, "signed id");
        assert_eq!(id, STATES[k.state].id(), "signed id: another id");
        assert_eq!(stale, !k.primary, "signed id: stale flag");
        assert!(
            t.codec.verify(&token, b"sid").is_err(),
            "signed id: verified for another purpose"
        );
        check_peek(&token, TokenKind::SessionId, k.key_id);
        match peeked.map(|p| p.unverified) {
            Ok(Unverified::SessionId(p)) => assert_eq!(p, id, "peek: id"),
            other => panic!("peek: a signed id read as {other:?}"),
        }
        if k.primary {
            assert_eq!(
                t.codec.sign(&id, COOKIE_PURPOSE),
                token,
                "signed id: re-sign"
            );
        }
    }
}

struct Jwt {
    codec: JwtCodec,
    known: HashMap<String, KnownJwt>,
    /// What each foreign token that opened at start-up (those with a `sess` claim) opened to.
    foreign: HashMap<String, Snapshot>,
}

fn jwt(which: JwtRing) -> Jwt {
    let codec = fixtures::jwt_codec(which);
    let known = fixtures::jwt_tokens(which);
    let mut foreign = HashMap::new();
    for (m, k) in &known {
        let opened = codec.open_checked(&k.token, b"", &Policy::default(), NOW);
        match (k.state, opened) {
            (None, Ok((o, _))) => {
                foreign.insert(m.clone(), Snapshot::of(o.state()));
            }
            // Foreign tokens without the crate's `sess` claim are refused: never opened.
            (None, Err(_)) => {}
            _ => {}
        }
    }
    Jwt {
        codec,
        known,
        foreign,
    }
}

static JWT_HMAC: LazyLock<Jwt> = LazyLock::new(|| jwt(JwtRing::Hmac));
static JWT_ASYM: LazyLock<Jwt> = LazyLock::new(|| jwt(JwtRing::Asymmetric));

fn open_jwt(t: &Jwt, data: &[u8]) {
    let token = String::from_utf8_lossy(data);
    let policy = Policy::default();
    // `open` (the codec's clock) and `open_checked` (the time given) agree.
    let plain = t.codec.open(&token, b"").map(|o| Snapshot::of(o.state()));
    let Ok((opened, _)) = t.codec.open_checked(&token, b"", &policy, NOW) else {
        return;
    };
    let m = signing_input(&token).unwrap_or_default();
    let Some(k) = t.known.get(m) else {
        panic!("jwt: a token whose signed part is not a fixture's opened: {token:?}");
    };
    assert_eq!(opened.key_id(), k.kid, "jwt: opened with another key");
    let snap = Snapshot::of(opened.state());
    assert_eq!(
        plain.as_ref().ok(),
        Some(&snap),
        "jwt: open and open_checked"
    );
    match k.state {
        Some(i) => assert_eq!(snap, Snapshot::of(&STATES[i]), "jwt: session"),
        // `None` in `foreign`: a token refused at start-up (no `sess` claim) opened now.
        None => assert_eq!(Some(&snap), t.foreign.get(m), "jwt: foreign session"),
    }
    let state = opened.into_state();
    let again = t.codec.seal(&state, b"").expect("jwt: re-seal");
    let (back, _) = t
        .codec
        .open_checked(&again, b"", &policy, NOW)
        .expect("jwt: re-open");
    assert_eq!(Snapshot::of(back.state()), snap, "jwt: round trip");
}

pub fn open_jwt_hmac(data: &[u8]) {
    open_jwt(&JWT_HMAC, data);
}

pub fn open_jwt_asym(data: &[u8]) {
    open_jwt(&JWT_ASYM, data);
}

/// Seeds: every fixture token, as text and as raw bytes.
pub fn seeds_token_set(set: &HashMap<String, Known>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for token in set.keys() {
        out.push(token.clone().into_bytes());
        if let Ok(raw) = URL_SAFE_NO_PAD.decode(token) {
            out.push(raw);
        }
    }
    out
}

pub fn seeds_sealed() -> Vec<Vec<u8>> {
    seeds_token_set(&SEALED.known)
}
pub fn seeds_signed() -> Vec<Vec<u8>> {
    seeds_token_set(&SIGNED.known)
}
pub fn seeds_store_id() -> Vec<Vec<u8>> {
    seeds_token_set(&IDS.known)
}
pub fn seeds_jwt(which: JwtRing) -> Vec<Vec<u8>> {
    let t = match which {
        JwtRing::Hmac => &*JWT_HMAC,
        JwtRing::Asymmetric => &*JWT_ASYM,
    };
    t.known
        .values()
        .map(|k| k.token.clone())
        .chain(fixtures::jwt_forgeries(which))
        .map(String::into_bytes)
        .collect()
}
