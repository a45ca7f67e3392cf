//! The JWT codec: every algorithm, key rotation by `kid`, the classic JWT attacks, claim
//! validation, interoperability with plain `jsonwebtoken` calls, and checked-in vectors.
#![cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]

mod common {
    pub mod fixtures;
}

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixtures::{T0, T0_MS, clock};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use sealed_session::{
    Codec, JwtAlgorithm, JwtCodec, JwtConfigError, JwtKey, JwtKeyError, JwtKeyring, KeyError,
    OpenError, Policy, SealError, SessionId, SessionState, Timestamp,
};
use serde_json::{Value, json};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/jwt/");
const ISS: &str = "https://issuer.test";
const AUD: &str = "api";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap()
}

fn kid(alg: JwtAlgorithm) -> String {
    alg.name().to_ascii_lowercase()
}

fn secret(alg: JwtAlgorithm) -> Vec<u8> {
    let text = fixture(&format!("{}.key.b64", kid(alg)));
    URL_SAFE_NO_PAD
        .decode(String::from_utf8(text).unwrap().trim())
        .unwrap()
}

fn private_pem(alg: JwtAlgorithm) -> Vec<u8> {
    fixture(&format!("{}.key.pem", kid(alg)))
}

fn public_pem(alg: JwtAlgorithm) -> Vec<u8> {
    fixture(&format!("{}.pub.pem", kid(alg)))
}

/// The fixture key of `alg`, with `kid` equal to the lower-case algorithm name (parsed once
/// per test binary).
fn key(alg: JwtAlgorithm) -> JwtKey {
    static KEYS: OnceLock<Vec<JwtKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| JwtAlgorithm::ALL.into_iter().map(load_key).collect());
    keys.iter().find(|k| k.algorithm() == alg).unwrap().clone()
}

fn load_key(alg: JwtAlgorithm) -> JwtKey {
    if alg.is_symmetric() {
        JwtKey::hmac(&kid(alg), alg, &secret(alg)).unwrap()
    } else {
        JwtKey::from_pem(&kid(alg), alg, &private_pem(alg)).unwrap()
    }
}

/// A ring of every fixture key, `primary` first.
fn ring(primary: JwtAlgorithm) -> JwtKeyring {
    let keys = std::iter::once(primary)
        .chain(JwtAlgorithm::ALL.into_iter().filter(|a| *a != primary))
        .map(key);
    JwtKeyring::new(keys).unwrap()
}

fn codec(primary: JwtAlgorithm) -> JwtCodec {
    bound(ring(primary))
}

/// A codec over `ring` bound to [`ISS`] and [`AUD`].
fn bound(ring: JwtKeyring) -> JwtCodec {
    JwtCodec::builder(ring)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap()
}

fn jwt_alg(alg: JwtAlgorithm) -> jsonwebtoken::Algorithm {
    alg.to_jsonwebtoken()
}

fn encoding_key(alg: JwtAlgorithm) -> EncodingKey {
    let pem = private_pem_or_secret(alg);
    match alg {
        JwtAlgorithm::RS256 | JwtAlgorithm::PS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => EncodingKey::from_ec_pem(&pem).unwrap(),
        JwtAlgorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_secret(&pem),
    }
}

fn decoding_key(alg: JwtAlgorithm) -> DecodingKey {
    match alg {
        JwtAlgorithm::RS256 | JwtAlgorithm::PS256 => {
            DecodingKey::from_rsa_pem(&public_pem(alg)).unwrap()
        }
        JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => {
            DecodingKey::from_ec_pem(&public_pem(alg)).unwrap()
        }
        JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&public_pem(alg)).unwrap(),
        _ => DecodingKey::from_secret(&secret(alg)),
    }
}

fn private_pem_or_secret(alg: JwtAlgorithm) -> Vec<u8> {
    if alg.is_symmetric() {
        secret(alg)
    } else {
        private_pem(alg)
    }
}

/// The session every test signs: fixed id and times, a subject and some data.
fn session(t0: u64) -> SessionState {
    let mut s = SessionState::new(
        SessionId::from_bytes(*b"0123456789abcdef"),
        Timestamp::from_millis(t0),
        Timestamp::from_millis(t0 + 86_400_000),
    );
    s.set_last_seen(Timestamp::from_millis(t0 + 5_000));
    s.set_subject(Some("alice".to_owned()));
    s.insert("user", "alice").unwrap();
    s.insert("views", &3).unwrap();
    s.insert("nested", &json!({"a": [1, 2], "exp": "not a claim"}))
        .unwrap();
    s
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
        it.next().unwrap().to_owned(),
    )
}

fn assert_same_session(got: &mut SessionState, want: &mut SessionState) {
    assert_eq!(got.id(), want.id());
    assert_eq!(got.issued_at(), want.issued_at());
    assert_eq!(got.last_seen(), want.last_seen());
    assert_eq!(got.expires_at(), want.expires_at());
    assert_eq!(got.subject(), want.subject());
    assert_eq!(got.data().unwrap(), want.data().unwrap());
}

// ---------------------------------------------------------------------------------------
// Round trips and keys

#[test]
fn round_trip_every_algorithm() {
    for alg in JwtAlgorithm::ALL {
        let codec = codec(alg);
        let mut want = session(T0_MS);
        let token = codec.seal(&want, b"ignored").unwrap();
        let (header, claims, _) = parts(&token);
        assert_eq!(header["alg"], alg.name(), "{alg}");
        assert_eq!(header["kid"], kid(alg), "{alg}");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(claims["jti"], want.id().to_string());
        let (opened, fresh) = codec
            .open_checked(&token, b"other purpose", &Policy::new(), at(T0_MS + 6_000))
            .unwrap();
        assert!(!fresh.renew);
        assert_eq!(opened.key_id(), kid(alg));
        assert!(!opened.needs_reissue(), "{alg}");
        assert_same_session(&mut opened.into_state(), &mut want);
    }
}

#[test]
fn claims_layout() {
    let codec = codec(JwtAlgorithm::HS256).not_before(true);
    let token = codec.seal(&session(T0_MS), b"").unwrap();
    let (_, claims, _) = parts(&token);
    let last_seen_s = (T0_MS + 5_000) / 1000;
    assert_eq!(
        claims,
        json!({
            "iss": ISS, "sub": "alice", "aud": AUD,
            // Idle timeout (1 hour by default) before the 24-hour absolute deadline.
            "exp": (T0_MS + 5_000 + 3_600_000) / 1000,
            "nbf": last_seen_s, "iat": last_seen_s,
            "jti": SessionId::from_bytes(*b"0123456789abcdef").to_string(),
            "sess": {"v": 1, "iat_ms": T0_MS, "seen_ms": T0_MS + 5_000, "deadline_ms": T0_MS + 86_400_000},
            "data": {"user": "alice", "views": 3, "nested": {"a": [1, 2], "exp": "not a claim"}},
        })
    );
    // Without issuer, audience (opted out of), subject, data or idle timeout, those claims
    // are absent and `exp` is the absolute deadline.
    let bare = JwtCodec::builder(ring(JwtAlgorithm::HS256))
        .allow_missing_issuer_or_audience()
        .build()
        .unwrap()
        .idle_timeout(None);
    let state = SessionState::new(SessionId::from_bytes([9; 16]), T0, at(T0_MS + 7_200_500));
    let (_, claims, _) = parts(&bare.seal(&state, b"").unwrap());
    let obj = claims.as_object().unwrap();
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["exp", "iat", "jti", "sess"]);
    assert_eq!(claims["exp"], (T0_MS + 7_200_500) / 1000);
}

#[test]
fn codec_policy_sets_idle_deadline_in_exp() {
    let policy = Policy::new().idle_timeout(Some(Duration::from_secs(600)));
    let codec = codec(JwtAlgorithm::HS256).policy(&policy);
    let state = session(T0_MS);
    assert_eq!(codec.token_deadline(&state), at(T0_MS + 5_000 + 600_000));
    let (_, claims, _) = parts(&codec.seal(&state, b"").unwrap());
    assert_eq!(claims["exp"], (T0_MS + 605_000) / 1000);
}

#[test]
fn generated_keys_round_trip_and_reload_from_their_export() {
    for alg in [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::EdDSA,
    ] {
        let (k, exported) = JwtKey::generate("gen", alg).unwrap();
        let token = bound(JwtKeyring::new([k]).unwrap())
            .seal(&session(T0_MS), b"")
            .unwrap();
        let reloaded = if alg.is_symmetric() {
            JwtKey::hmac_base64("gen", alg, &exported).unwrap()
        } else {
            JwtKey::from_pem("gen", alg, exported.as_bytes()).unwrap()
        };
        let codec = bound(JwtKeyring::new([reloaded]).unwrap());
        codec
            .open_checked(&token, b"", &Policy::new(), at(T0_MS + 6_000))
            .unwrap();
    }
    for alg in [
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::RS256,
        JwtAlgorithm::PS256,
    ] {
        assert!(matches!(
            JwtKey::generate("gen", alg),
            Err(JwtKeyError::GenerateUnsupported { .. })
        ));
    }
    let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA).unwrap();
    assert_eq!(ring.primary_kid(), "g1");
    assert_eq!(ring.primary_algorithm(), JwtAlgorithm::EdDSA);
}

#[test]
fn weak_and_wrong_keys_are_refused_with_the_reason() {
    let e = JwtKey::hmac("k", JwtAlgorithm::HS256, &secret(JwtAlgorithm::HS256)[..31]).unwrap_err();
    assert!(matches!(
        e,
        JwtKeyError::Key(KeyError::TooShort {
            need: 32,
            got: 31,
            ..
        })
    ));
    // RFC 7518: the secret must be at least as long as the hash.
    let e = JwtKey::hmac("k", JwtAlgorithm::HS512, &secret(JwtAlgorithm::HS256)).unwrap_err();
    assert!(matches!(
        e,
        JwtKeyError::Key(KeyError::TooShort {
            need: 64,
            got: 32,
            ..
        })
    ));
    assert!(e.to_string().contains("at least 64 bytes"), "{e}");
    let e = JwtKey::hmac("k", JwtAlgorithm::HS256, &[0u8; 32]).unwrap_err();
    assert!(matches!(e, JwtKeyError::Key(KeyError::Degenerate { .. })));
    let e = JwtKey::hmac("k", JwtAlgorithm::RS256, &secret(JwtAlgorithm::HS512)).unwrap_err();
    assert!(matches!(e, JwtKeyError::WrongKeyKind { .. }));
    let e =
        JwtKey::from_pem("k", JwtAlgorithm::HS256, &private_pem(JwtAlgorithm::ES256)).unwrap_err();
    assert!(matches!(e, JwtKeyError::WrongKeyKind { .. }));
    // A PEM of another type or curve than the algorithm, or no PEM at all.
    for (alg, pem) in [
        (JwtAlgorithm::ES256, private_pem(JwtAlgorithm::EdDSA)),
        (JwtAlgorithm::ES384, private_pem(JwtAlgorithm::ES256)),
        (JwtAlgorithm::RS256, private_pem(JwtAlgorithm::ES256)),
        (JwtAlgorithm::EdDSA, private_pem(JwtAlgorithm::RS256)),
        (JwtAlgorithm::ES256, public_pem(JwtAlgorithm::ES256)),
        (JwtAlgorithm::EdDSA, b"not a pem".to_vec()),
    ] {
        let e = JwtKey::from_pem("k", alg, &pem).unwrap_err();
        assert!(
            matches!(e, JwtKeyError::BadPem { .. } | JwtKeyError::SelfTest { .. }),
            "{alg}: {e:?}"
        );
        assert!(!e.to_string().contains("BEGIN"), "no key material in {e}");
    }
    let e = JwtKey::from_pem("k", JwtAlgorithm::RS256, &fixture("rsa1024.key.pem")).unwrap_err();
    // RustCrypto parses it and this crate counts the bits; aws-lc refuses it while parsing.
    assert!(
        matches!(
            e,
            JwtKeyError::WeakRsaKey {
                bits: 1024,
                min: 2048,
                ..
            } | JwtKeyError::BadPem { .. }
        ),
        "{e:?}"
    );
    for bad in ["", "a b", "../x", "k\"", &"k".repeat(65)] {
        let e = JwtKey::hmac(bad, JwtAlgorithm::HS256, &secret(JwtAlgorithm::HS256)).unwrap_err();
        assert!(
            matches!(e, JwtKeyError::Key(KeyError::InvalidKeyId { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        JwtKeyring::new([]),
        Err(JwtKeyError::Key(KeyError::Empty))
    ));
    assert!(matches!(
        JwtKeyring::new([key(JwtAlgorithm::HS256), key(JwtAlgorithm::HS256)]),
        Err(JwtKeyError::Key(KeyError::DuplicateKeyId(_)))
    ));
    assert!(matches!(
        "none".parse::<JwtAlgorithm>(),
        Err(JwtKeyError::UnknownAlgorithm(_))
    ));
    assert_eq!(
        "es256".parse::<JwtAlgorithm>().unwrap(),
        JwtAlgorithm::ES256
    );
}

#[test]
fn debug_shows_kids_not_secrets() {
    let hs = secret(JwtAlgorithm::HS256);
    let k = JwtKey::hmac("visible-kid", JwtAlgorithm::HS256, &hs).unwrap();
    let ring = JwtKeyring::new([k.clone()]).unwrap();
    for text in [
        format!("{k:?}"),
        format!("{ring:?}"),
        format!("{:?}", bound(ring)),
    ] {
        assert!(text.contains("visible-kid"), "{text}");
        assert!(!text.contains(&URL_SAFE_NO_PAD.encode(&hs)), "{text}");
        assert!(!text.contains(&format!("{:?}", &hs[..4])), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Rotation

#[test]
fn rotation_by_kid() {
    let k1 =
        JwtKey::from_pem("k1", JwtAlgorithm::ES256, &private_pem(JwtAlgorithm::ES256)).unwrap();
    let k2 =
        JwtKey::from_pem("k2", JwtAlgorithm::EdDSA, &private_pem(JwtAlgorithm::EdDSA)).unwrap();
    let old = bound(JwtKeyring::new([k1.clone()]).unwrap());
    let token = old.seal(&session(T0_MS), b"").unwrap();

    // k2 is new and primary, k1 still verifies: the token opens and asks to be re-issued.
    let rotated_ring = old.keyring().rotate(k2.clone(), 2).unwrap();
    assert_eq!(
        rotated_ring.keys().map(JwtKey::kid).collect::<Vec<_>>(),
        ["k2", "k1"]
    );
    let rotated = bound(rotated_ring);
    let (opened, _) = rotated
        .open_checked(&token, b"", &Policy::new(), at(T0_MS + 6_000))
        .unwrap();
    assert_eq!(opened.key_id(), "k1");
    assert!(opened.needs_reissue());
    let reissued = rotated.seal(opened.state(), b"").unwrap();
    assert_eq!(parts(&reissued).0["kid"], "k2");
    assert_eq!(parts(&reissued).0["alg"], "EdDSA");
    let (opened, _) = rotated
        .open_checked(&reissued, b"", &Policy::new(), at(T0_MS + 6_000))
        .unwrap();
    assert!(!opened.needs_reissue());

    // k1 removed: its tokens name an unknown kid, and no other key is tried.
    let only_new = bound(JwtKeyring::new([k2]).unwrap());
    assert_eq!(
        only_new
            .open_checked(&token, b"", &Policy::new(), at(T0_MS + 6_000))
            .unwrap_err(),
        OpenError::UnknownKeyId("k1".to_owned())
    );
}

#[test]
fn same_kid_with_another_key_is_a_bad_seal_not_a_fallback() {
    let a = JwtKey::hmac("k", JwtAlgorithm::HS256, &secret(JwtAlgorithm::HS256)).unwrap();
    let b = JwtKey::hmac("k", JwtAlgorithm::HS256, &secret(JwtAlgorithm::HS384)).unwrap();
    let token = bound(JwtKeyring::new([a]).unwrap())
        .seal(&session(T0_MS), b"")
        .unwrap();
    let other = bound(JwtKeyring::new([b]).unwrap());
    assert_eq!(
        other
            .open_checked(&token, b"", &Policy::new(), at(T0_MS + 6_000))
            .unwrap_err(),
        OpenError::BadSeal
    );
}

// ---------------------------------------------------------------------------------------
// Attacks

/// A token with `header` and the claims of a genuine token, and the given signature.
fn forge(genuine: &str, header: Value, signature: &str) -> String {
    let claims = genuine.split('.').nth(1).unwrap();
    format!("{}.{claims}.{signature}", b64(&header))
}

fn open_err(codec: &JwtCodec, token: &str) -> OpenError {
    codec
        .open_checked(token, b"", &Policy::new(), at(T0_MS + 6_000))
        .unwrap_err()
}

#[test]
fn alg_none_is_refused() {
    let codec = codec(JwtAlgorithm::ES256);
    let genuine = codec.seal(&session(T0_MS), b"").unwrap();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        for sig in ["", "AAAA"] {
            let t = forge(
                &genuine,
                json!({"alg": alg, "typ": "JWT", "kid": "es256"}),
                sig,
            );
            assert_eq!(open_err(&codec, &t), OpenError::BadSeal, "{alg} {sig:?}");
            let t = forge(&genuine, json!({"alg": alg, "typ": "JWT"}), sig);
            assert!(
                matches!(open_err(&codec, &t), OpenError::Malformed(_)),
                "{alg}"
            );
        }
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    // The classic: an HS256 token whose HMAC secret is the verifier's public key, sent with
    // the kid of the asymmetric key.
    let codec = codec(JwtAlgorithm::HS256);
    for alg in [
        JwtAlgorithm::RS256,
        JwtAlgorithm::PS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ] {
        let public = public_pem(alg);
        let jwk_text = key(alg).public_jwk().unwrap().to_string();
        for secret_text in [public.clone(), jwk_text.into_bytes()] {
            for hs in [
                jsonwebtoken::Algorithm::HS256,
                jsonwebtoken::Algorithm::HS384,
                jsonwebtoken::Algorithm::HS512,
            ] {
                let mut header = Header::new(hs);
                header.kid = Some(kid(alg));
                let claims = parts(&codec.seal(&session(T0_MS), b"").unwrap()).1;
                let forged =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret_text))
                        .unwrap();
                assert_eq!(
                    open_err(&codec, &forged),
                    OpenError::BadSeal,
                    "{alg} {hs:?}"
                );
            }
        }
    }
    // The other way round: an asymmetric alg under an HMAC key's kid.
    let genuine = codec.seal(&session(T0_MS), b"").unwrap();
    let sig = genuine.rsplit('.').next().unwrap();
    for alg in ["RS256", "ES256", "EdDSA", "HS512"] {
        let t = forge(
            &genuine,
            json!({"alg": alg, "typ": "JWT", "kid": "hs256"}),
            sig,
        );
        assert_eq!(open_err(&codec, &t), OpenError::BadSeal, "{alg}");
    }
}

#[test]
fn unknown_missing_and_malformed_kid_are_refused() {
    let codec = codec(JwtAlgorithm::HS256);
    let genuine = codec.seal(&session(T0_MS), b"").unwrap();
    let sig = genuine.rsplit('.').next().unwrap();
    let t = forge(&genuine, json!({"alg": "HS256", "kid": "nope"}), sig);
    assert_eq!(
        open_err(&codec, &t),
        OpenError::UnknownKeyId("nope".to_owned())
    );
    let t = forge(&genuine, json!({"alg": "HS256", "typ": "JWT"}), sig);
    assert_eq!(
        open_err(&codec, &t),
        OpenError::Malformed("JWT header has no kid")
    );
    let long = "k".repeat(65);
    for bad in [
        json!("../../etc/passwd"),
        json!("hs256 "),
        json!(""),
        json!(long),
        json!("hs256\u{0000}"),
        json!("ＨＳ256"),
    ] {
        let t = forge(&genuine, json!({"alg": "HS256", "kid": bad}), sig);
        assert_eq!(
            open_err(&codec, &t),
            OpenError::Malformed("JWT kid is not a valid key id"),
            "{bad}"
        );
    }
    for bad in [
        json!(1),
        json!(null),
        json!(["hs256"]),
        json!({"k": "hs256"}),
    ] {
        let t = forge(&genuine, json!({"alg": "HS256", "kid": bad}), sig);
        assert!(
            matches!(open_err(&codec, &t), OpenError::Malformed(_)),
            "{bad}"
        );
    }
    let t = forge(
        &genuine,
        json!({"alg": "HS256", "kid": "hs256", "crit": ["b64"]}),
        sig,
    );
    assert!(matches!(open_err(&codec, &t), OpenError::Malformed(_)));
}

#[test]
fn tampering_is_a_bad_seal() {
    for alg in JwtAlgorithm::ALL {
        let codec = codec(alg);
        let genuine = codec.seal(&session(T0_MS), b"").unwrap();
        let (header, mut claims, sig) = parts(&genuine);
        claims["sub"] = json!("admin");
        let t = format!("{}.{}.{sig}", b64(&header), b64(&claims));
        assert_eq!(open_err(&codec, &t), OpenError::BadSeal, "{alg}: payload");
        let (h, c, s) = {
            let mut it = genuine.split('.');
            (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
        };
        // Flip one character in the middle of the signature (not the last, whose low bits
        // may be padding).
        let mut sig_bytes = s.as_bytes().to_vec();
        let mid = sig_bytes.len() / 2;
        sig_bytes[mid] = if sig_bytes[mid] == b'A' { b'B' } else { b'A' };
        let t = format!("{h}.{c}.{}", String::from_utf8(sig_bytes).unwrap());
        assert_eq!(open_err(&codec, &t), OpenError::BadSeal, "{alg}: signature");
        // Drop the signature, or part of it.
        assert!(
            open_err(&codec, &format!("{h}.{c}.")).reason() == "bad_seal",
            "{alg}"
        );
        let t = &genuine[..genuine.len() - 8];
        assert!(codec.open_checked(t, b"", &Policy::new(), T0).is_err());
        // Signature of one token on another's claims.
        let other = codec.seal(&session(T0_MS + 1_000), b"").unwrap();
        let t = format!("{h}.{}.{s}", other.split('.').nth(1).unwrap());
        assert_eq!(open_err(&codec, &t), OpenError::BadSeal, "{alg}: swapped");
    }
}

#[test]
fn garbage_and_truncations_are_errors_not_panics() {
    let codec = codec(JwtAlgorithm::ES256);
    let genuine = codec.seal(&session(T0_MS), b"").unwrap();
    for i in 0..genuine.len() {
        assert!(
            codec
                .open_checked(&genuine[..i], b"", &Policy::new(), at(T0_MS + 6_000))
                .is_err(),
            "prefix {i}"
        );
    }
    for g in [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b",
        "e30.e30.",
        "e30.e30.e30",
        "eyJ.eyJ.eyJ",
        "\u{0}\u{1}",
        "ñ.ñ.ñ",
        "=====.====.==",
    ] {
        assert!(codec.open(g, b"").is_err(), "{g:?}");
    }
    // Valid header, payload not JSON / wrong types / missing claims.
    let sig = genuine.rsplit('.').next().unwrap();
    let h = b64(&json!({"alg": "ES256", "kid": "es256"}));
    for payload in ["bm90IGpzb24", "e30", "W10", &b64(&json!({"exp": "soon"}))] {
        let t = format!("{h}.{payload}.{sig}");
        assert!(codec.open(&t, b"").is_err(), "{payload}");
    }
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let codec = codec(JwtAlgorithm::HS256);
    let huge = "x".repeat(8 * 1024 + 1);
    assert_eq!(
        codec.open(&huge, b"").unwrap_err(),
        OpenError::TooLarge {
            len: 8193,
            max: 8192
        }
    );
    let mut big = session(T0_MS);
    big.insert("blob", &"y".repeat(9_000)).unwrap();
    assert!(matches!(
        codec.seal(&big, b""),
        Err(SealError::TooLarge { max: 8192, .. })
    ));
    // A larger limit lets it through both ways; a smaller one refuses a normal token.
    let roomy = codec.clone().max_token_len(64 * 1024);
    let t = roomy.seal(&big, b"").unwrap();
    roomy
        .open_checked(&t, b"", &Policy::new(), at(T0_MS + 6_000))
        .unwrap();
    let tight = codec.clone().max_token_len(100);
    let t = codec.seal(&session(T0_MS), b"").unwrap();
    assert!(matches!(
        tight.open(&t, b""),
        Err(OpenError::TooLarge { max: 100, .. })
    ));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_text_never_panics(s in "[A-Za-z0-9_.=-]{0,300}") {
            let codec = codec(JwtAlgorithm::HS256);
            prop_assert!(codec.open(&s, b"").is_err());
        }

        #[test]
        fn mutated_tokens_never_open(pos in 0usize..2000, byte in 0u8..128) {
            let codec = codec(JwtAlgorithm::HS256);
            let genuine = codec.seal(&session(T0_MS), b"").unwrap();
            let mut b = genuine.clone().into_bytes();
            let i = pos % b.len();
            prop_assume!(b[i] != byte);
            b[i] = byte;
            if let Ok(t) = String::from_utf8(b) {
                let r = codec.open_checked(&t, b"", &Policy::new(), at(T0_MS + 6_000));
                // The last signature character may carry only padding bits in some values.
                if r.is_ok() {
                    prop_assert_eq!(i, genuine.len() - 1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Claim validation

#[test]
fn exp_and_leeway() {
    let clock = clock();
    let codec = codec(JwtAlgorithm::HS256)
        .idle_timeout(None)
        .clock(clock.clone());
    let mut s = session(T0_MS);
    s.set_expires_at(at(T0_MS + 3_600_000));
    let token = codec.seal(&s, b"").unwrap();
    let exp = at(T0_MS + 3_600_000);

    clock.set(at(T0_MS + 3_599_999));
    codec.open(&token, b"").unwrap();
    // Inside the 60-second leeway, `open` still accepts (as any JWT verifier would)...
    clock.set(at(T0_MS + 3_659_999));
    codec.open(&token, b"").unwrap();
    // ...but the server's policy has no leeway on expiry.
    assert_eq!(
        codec
            .open_checked(
                &token,
                b"",
                &Policy::new().idle_timeout(None),
                at(T0_MS + 3_600_000)
            )
            .unwrap_err(),
        OpenError::Expired {
            expired_at: exp,
            now: at(T0_MS + 3_600_000)
        }
    );
    clock.set(at(T0_MS + 3_660_000));
    assert_eq!(
        codec.open(&token, b"").unwrap_err(),
        OpenError::Expired {
            expired_at: exp,
            now: at(T0_MS + 3_660_000)
        }
    );
    // Zero leeway: refused from the second of `exp` on.
    let strict = codec.clone().leeway(Duration::ZERO);
    clock.set(at(T0_MS + 3_599_999));
    strict.open(&token, b"").unwrap();
    clock.set(at(T0_MS + 3_600_000));
    assert!(matches!(
        strict.open(&token, b""),
        Err(OpenError::Expired { .. })
    ));
}

/// A key holder signs a session whose deadline is 2^64-1 ms: the policy still ends it
/// `max_age` after its issue time.
#[test]
fn a_deadline_past_max_age_from_issue_is_capped_by_the_policy() {
    let codec = codec(JwtAlgorithm::HS256).idle_timeout(None);
    let mut forever = session(T0_MS);
    forever.set_expires_at(at(u64::MAX));
    let token = codec.seal(&forever, b"").unwrap();
    let policy = Policy::new()
        .max_age(Duration::from_secs(3600))
        .idle_timeout(None);
    let deadline = at(T0_MS + 3_600_000);
    codec
        .open_checked(&token, b"", &policy, at(T0_MS + 3_599_999))
        .unwrap();
    for now in [deadline, at(T0_MS + 365 * 86_400_000)] {
        assert_eq!(
            codec.open_checked(&token, b"", &policy, now).unwrap_err(),
            OpenError::Expired {
                expired_at: deadline,
                now
            }
        );
    }
}

#[test]
fn idle_deadline_in_exp_is_reported_as_idle_timeout() {
    let codec = codec(JwtAlgorithm::HS256).idle_timeout(Some(Duration::from_secs(600)));
    let token = codec.seal(&session(T0_MS), b"").unwrap();
    // last_seen = T0_MS + 5 s; idle deadline T0_MS + 605 s; 60 s leeway.
    let policy = Policy::new().idle_timeout(None);
    codec
        .open_checked(&token, b"", &policy, at(T0_MS + 664_999))
        .unwrap();
    assert_eq!(
        codec
            .open_checked(&token, b"", &policy, at(T0_MS + 665_000))
            .unwrap_err(),
        OpenError::IdleTimeout {
            last_seen: at(T0_MS + 5_000),
            now: at(T0_MS + 665_000)
        }
    );
}

#[test]
fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let codec = codec(JwtAlgorithm::HS256).not_before(true);
    let token = codec.seal(&session(T0_MS), b"").unwrap();
    let iat = at((T0_MS + 5_000) / 1000 * 1000);
    // 60 s early is inside the leeway; 61 s is not.
    codec
        .open_checked(&token, b"", &Policy::new(), at(iat.as_millis() - 60_000))
        .unwrap();
    assert_eq!(
        codec
            .open_checked(&token, b"", &Policy::new(), at(iat.as_millis() - 61_000))
            .unwrap_err(),
        OpenError::FromTheFuture {
            claimed: iat,
            now: at(iat.as_millis() - 61_000)
        }
    );
    // An `nbf` later than `iat`, minted by a plain jsonwebtoken call with our key.
    let mut claims = parts(&token).1;
    claims["nbf"] = json!(T0_MS / 1000 + 3_000);
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs256".to_owned());
    let t = jsonwebtoken::encode(&header, &claims, &encoding_key(JwtAlgorithm::HS256)).unwrap();
    assert_eq!(
        codec
            .open_checked(&t, b"", &Policy::new(), at(T0_MS + 6_000))
            .unwrap_err(),
        OpenError::FromTheFuture {
            claimed: at(T0_MS + 3_000_000),
            now: at(T0_MS + 6_000)
        }
    );
    codec
        .open_checked(&t, b"", &Policy::new(), at(T0_MS + 2_940_000))
        .unwrap();
}

/// A codec over `r` with the given binding; `None` leaves it out, with the opt-out.
fn binding(r: &JwtKeyring, iss: Option<&str>, aud: Option<&str>) -> JwtCodec {
    let mut b = JwtCodec::builder(r.clone()).allow_missing_issuer_or_audience();
    if let Some(iss) = iss {
        b = b.issuer(iss);
    }
    if let Some(aud) = aud {
        b = b.audience(aud);
    }
    b.build().unwrap()
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let now = at(T0_MS + 6_000);
    let ours = codec(JwtAlgorithm::ES256);
    let token = ours.seal(&session(T0_MS), b"").unwrap();
    let r = ring(JwtAlgorithm::ES256);
    let wrong_iss = binding(&r, Some("https://other"), Some(AUD));
    let wrong_aud = binding(&r, Some(ISS), Some("other"));
    assert_eq!(
        open_err(&wrong_iss, &token),
        OpenError::ClaimMismatch { claim: "iss" }
    );
    assert_eq!(
        open_err(&wrong_aud, &token),
        OpenError::ClaimMismatch { claim: "aud" }
    );
    // Tokens without iss / aud, to verifiers that require them.
    let no_iss = binding(&r, None, Some(AUD))
        .seal(&session(T0_MS), b"")
        .unwrap();
    let no_aud = binding(&r, Some(ISS), None)
        .seal(&session(T0_MS), b"")
        .unwrap();
    assert_eq!(
        open_err(&ours, &no_iss),
        OpenError::ClaimMismatch { claim: "iss" }
    );
    assert_eq!(
        open_err(&ours, &no_aud),
        OpenError::ClaimMismatch { claim: "aud" }
    );
    // A token with an audience, to a verifier that has none: RFC 7519 says refuse.
    let lax = binding(&r, Some(ISS), None);
    assert_eq!(
        open_err(&lax, &token),
        OpenError::ClaimMismatch { claim: "aud" }
    );
    // A verifier that opted out of the issuer accepts any issuer.
    binding(&r, None, Some(AUD))
        .open_checked(&token, b"", &Policy::new(), now)
        .unwrap();
    assert_eq!(
        OpenError::ClaimMismatch { claim: "iss" }.reason(),
        "claim_mismatch"
    );
}

#[test]
fn building_without_issuer_and_audience_is_an_error_unless_opted_out() {
    let r = ring(JwtAlgorithm::HS256);
    for (builder, missing) in [
        (
            JwtCodec::builder(r.clone()),
            "an issuer (iss) and an audience (aud)",
        ),
        (
            JwtCodec::builder(r.clone()).issuer(ISS),
            "an audience (aud)",
        ),
        (
            JwtCodec::builder(r.clone()).audience(AUD),
            "an issuer (iss)",
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err, JwtConfigError::Missing { missing });
        let text = err.to_string();
        assert!(text.contains(missing), "{text}");
        assert!(text.contains("allow_missing_issuer_or_audience"), "{text}");
    }
    for (builder, claim) in [
        (JwtCodec::builder(r.clone()).issuer("").audience(AUD), "iss"),
        (JwtCodec::builder(r.clone()).issuer(ISS).audience(""), "aud"),
        (
            JwtCodec::builder(r.clone())
                .issuer("")
                .allow_missing_issuer_or_audience(),
            "iss",
        ),
    ] {
        assert_eq!(
            builder.build().unwrap_err(),
            JwtConfigError::Empty { claim }
        );
    }
    // The opt-out, by its name, builds a codec bound to neither.
    let unbound = JwtCodec::builder(r.clone())
        .allow_missing_issuer_or_audience()
        .build()
        .unwrap();
    assert!(format!("{unbound:?}").contains("issuer: None"));
    JwtCodec::builder(r)
        .issuer(ISS)
        .audience(AUD)
        .build()
        .unwrap();
}

/// Two services share a key ring: a token the other one minted for its own audience does not
/// open here, whether it names that audience alone or among others.
#[test]
fn a_token_minted_for_another_audience_with_the_same_keys_is_refused() {
    let r = ring(JwtAlgorithm::ES256);
    let billing = JwtCodec::builder(r.clone())
        .issuer(ISS)
        .audience("billing")
        .build()
        .unwrap();
    let token = billing.seal(&session(T0_MS), b"").unwrap();
    let ours = bound(r);
    assert_eq!(
        open_err(&ours, &token),
        OpenError::ClaimMismatch { claim: "aud" }
    );
    // The same claims with `aud` as an array that leaves ours out, signed with the same key.
    let mut claims = parts(&token).1;
    claims["aud"] = json!(["billing", "reports"]);
    let mut header = Header::new(jwt_alg(JwtAlgorithm::ES256));
    header.kid = Some(kid(JwtAlgorithm::ES256));
    let forged =
        jsonwebtoken::encode(&header, &claims, &encoding_key(JwtAlgorithm::ES256)).unwrap();
    assert_eq!(
        open_err(&ours, &forged),
        OpenError::ClaimMismatch { claim: "aud" }
    );
    // With ours among them it opens (RFC 7519 section 4.1.3).
    claims["aud"] = json!(["billing", AUD]);
    let shared =
        jsonwebtoken::encode(&header, &claims, &encoding_key(JwtAlgorithm::ES256)).unwrap();
    ours.open_checked(&shared, b"", &Policy::new(), at(T0_MS + 6_000))
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Interoperability and the JWK Set

fn now_ms() -> u64 {
    Timestamp::from_system_time(SystemTime::now()).as_millis()
}

#[test]
fn our_tokens_verify_with_plain_jsonwebtoken_decode() {
    let t = now_ms();
    for alg in JwtAlgorithm::ALL {
        let token = codec(alg).seal(&session(t), b"").unwrap();
        let mut v = Validation::new(jwt_alg(alg));
        v.set_issuer(&[ISS]);
        v.set_audience(&[AUD]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(&token, &decoding_key(alg), &v)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.header.kid.as_deref(), Some(kid(alg).as_str()));
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["data"]["views"], 3);
        // And with the key taken from our JWK Set, as another service would.
        if !alg.is_symmetric() {
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(ring(alg).jwks_json()).unwrap();
            let jwk = set.find(&kid(alg)).unwrap();
            jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
                .unwrap_or_else(|e| panic!("{alg} via JWKS: {e}"));
        }
    }
}

#[test]
fn plain_jsonwebtoken_tokens_verify_here() {
    let t = now_ms();
    for alg in JwtAlgorithm::ALL {
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(kid(alg));
        let id = SessionId::from_bytes([7; 16]).to_string();
        // Registered claims only, as another service might mint them, plus our data claim.
        let claims = json!({
            "iss": ISS, "aud": AUD, "sub": "bob", "jti": id,
            "iat": t / 1000, "exp": t / 1000 + 600,
            "data": {"role": "admin"},
        });
        let token = jsonwebtoken::encode(&header, &claims, &encoding_key(alg)).unwrap();
        // Without the `sess` claim it is not a session token: refused.
        assert_eq!(
            codec(alg)
                .open_checked(&token, b"", &Policy::new(), at(t))
                .unwrap_err(),
            OpenError::Malformed("no sess claim: not a session token"),
            "{alg}"
        );
        // With a full `sess` claim copied from one of ours, it opens.
        let mut ours = parts(&codec(alg).seal(&session(t), b"").unwrap()).1;
        ours["data"] = json!({"from": "plain"});
        let token = jsonwebtoken::encode(&header, &ours, &encoding_key(alg)).unwrap();
        let (opened, _) = codec(alg)
            .open_checked(&token, b"", &Policy::new(), at(t + 6_000))
            .unwrap();
        assert_eq!(opened.state().last_seen(), at(t + 5_000));
    }
}

/// A JWT that the ring's keys signed for something other than a session (an access token
/// of another service sharing the keys, with our issuer, audience and a jti that looks like
/// a session id) lacks the `sess` claim: refused, not turned into a session.
#[test]
fn a_jwt_without_the_session_claim_is_refused() {
    let codec = codec(JwtAlgorithm::HS256);
    let mut claims = parts(&codec.seal(&session(T0_MS), b"").unwrap()).1;
    claims.as_object_mut().unwrap().remove("sess");
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs256".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &encoding_key(JwtAlgorithm::HS256)).unwrap();
    assert_eq!(
        open_err(&codec, &token),
        OpenError::Malformed("no sess claim: not a session token")
    );
    // `sess: null` is no better.
    claims["sess"] = Value::Null;
    let token = jsonwebtoken::encode(&header, &claims, &encoding_key(JwtAlgorithm::HS256)).unwrap();
    assert!(matches!(open_err(&codec, &token), OpenError::Malformed(_)));
}

#[test]
fn foreign_claims_that_do_not_fit_a_session_are_malformed() {
    let codec = codec(JwtAlgorithm::HS256);
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs256".to_owned());
    // A well-formed session token, so that each case fails for the one claim it breaks.
    let base = json!({"iss": ISS, "aud": AUD, "jti": SessionId::from_bytes([7; 16]).to_string(),
                      "iat": T0_MS / 1000, "exp": T0_MS / 1000 + 600,
                      "sess": {"v": 1, "iat_ms": T0_MS, "seen_ms": T0_MS, "deadline_ms": T0_MS + 600_000}});
    let t = jsonwebtoken::encode(&header, &base, &encoding_key(JwtAlgorithm::HS256)).unwrap();
    codec.open_checked(&t, b"", &Policy::new(), T0).unwrap();
    let mut cases = Vec::new();
    for (k, v) in [
        ("jti", json!("not-a-session-id")),
        ("jti", json!(12)),
        ("data", json!([1, 2])),
        ("data", json!("text")),
        ("exp", json!("later")),
        ("sub", json!("x".repeat(2000))),
        (
            "sess",
            json!({"v": 2, "iat_ms": 0, "seen_ms": 0, "deadline_ms": 0}),
        ),
    ] {
        let mut c = base.clone();
        c[k] = v;
        cases.push(c);
    }
    for k in ["jti", "exp", "iat", "sess"] {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        cases.push(c);
    }
    for c in cases {
        let t = jsonwebtoken::encode(&header, &c, &encoding_key(JwtAlgorithm::HS256)).unwrap();
        let e = codec.open_checked(&t, b"", &Policy::new(), T0).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::Malformed(_) | OpenError::UnsupportedVersion { found: 2, .. }
            ),
            "{c}: {e:?}"
        );
    }
}

#[test]
fn jwks_has_public_keys_only() {
    let ring = ring(JwtAlgorithm::EdDSA);
    let jwks = ring.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["eddsa", "rs256", "ps256", "es256", "es384"]);
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"].as_str().unwrap().to_ascii_lowercase(), k["kid"]);
        assert_ne!(k["kty"], "oct");
        for private in ["k", "d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "{} has {private}", k["kid"]);
        }
    }
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert_eq!(keys[3]["crv"], "P-256");
    assert_eq!(keys[4]["crv"], "P-384");
    assert!(keys[1]["n"].as_str().unwrap().len() >= 342); // 2048 bits
    assert_eq!(
        serde_json::from_str::<Value>(ring.jwks_json()).unwrap(),
        *jwks
    );
    for alg in [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
    ] {
        let text = ring.jwks_json();
        let s = URL_SAFE_NO_PAD.encode(secret(alg));
        assert!(!text.contains(&s));
    }
    let hmac_only = JwtKeyring::new([key(JwtAlgorithm::HS256)]).unwrap();
    assert!(!hmac_only.has_public_keys());
    assert_eq!(*hmac_only.jwks(), json!({"keys": []}));
    assert!(ring.has_public_keys());
    assert!(key(JwtAlgorithm::HS512).public_jwk().is_none());
}

// ---------------------------------------------------------------------------------------
// Checked-in vectors

const VECTORS: &str = "tokens.json";
const VECTOR_NOW: u64 = T0_MS + 6_000;

/// Writes `tests/vectors/jwt/tokens.json`. Run once:
/// `WRITE_JWT_VECTORS=1 cargo test --test jwt -- --ignored write_vectors`.
#[test]
#[ignore]
fn write_vectors() {
    if std::env::var_os("WRITE_JWT_VECTORS").is_none() {
        return;
    }
    let mut valid = Vec::new();
    for alg in JwtAlgorithm::ALL {
        let token = codec(alg).seal(&session(T0_MS), b"").unwrap();
        valid.push(json!({"alg": alg.name(), "kid": kid(alg), "token": token}));
    }
    let genuine = codec(JwtAlgorithm::ES256)
        .seal(&session(T0_MS), b"")
        .unwrap();
    let claims = parts(&genuine).1;
    let mut confused = Header::new(jsonwebtoken::Algorithm::HS256);
    confused.kid = Some("rs256".to_owned());
    let confusion = jsonwebtoken::encode(
        &confused,
        &claims,
        &EncodingKey::from_secret(&public_pem(JwtAlgorithm::RS256)),
    )
    .unwrap();
    let (h, c, s) = parts(&genuine);
    let mut tampered = c.clone();
    tampered["data"]["views"] = json!(1000);
    let invalid = vec![
        json!({"name": "alg none", "reason": "bad_seal",
               "token": forge(&genuine, json!({"alg": "none", "typ": "JWT", "kid": "es256"}), "")}),
        json!({"name": "HS256 signed with the RS256 public key PEM", "reason": "bad_seal",
               "token": confusion}),
        json!({"name": "payload tampered", "reason": "bad_seal",
               "token": format!("{}.{}.{s}", b64(&h), b64(&tampered))}),
        json!({"name": "unknown kid", "reason": "unknown_key_id",
               "token": forge(&genuine, json!({"alg": "ES256", "kid": "retired"}), &s)}),
        json!({"name": "no kid", "reason": "malformed",
               "token": forge(&genuine, json!({"alg": "ES256"}), &s)}),
    ];
    let doc = json!({
        "comment": "Made by tests/jwt.rs write_vectors; keys in this folder. Open with issuer, audience and now_ms as given, every fixture key in the ring.",
        "issuer": ISS, "audience": AUD, "now_ms": VECTOR_NOW, "expired_at_ms": T0_MS + 5_000 + 3_600_000 + 60_000,
        "session": {"id": SessionId::from_bytes(*b"0123456789abcdef").to_string(), "sub": "alice",
                    "issued_at_ms": T0_MS, "last_seen_ms": T0_MS + 5_000, "expires_at_ms": T0_MS + 86_400_000,
                    "data": {"user": "alice", "views": 3, "nested": {"a": [1, 2], "exp": "not a claim"}}},
        "valid": valid,
        "invalid": invalid,
    });
    std::fs::write(
        format!("{DIR}{VECTORS}"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn checked_in_vectors() {
    let doc: Value = serde_json::from_slice(&fixture(VECTORS)).unwrap();
    let now = at(doc["now_ms"].as_u64().unwrap());
    let expired = at(doc["expired_at_ms"].as_u64().unwrap());
    let want = &doc["session"];
    let verifier = JwtCodec::builder(ring(JwtAlgorithm::HS256))
        .issuer(doc["issuer"].as_str().unwrap())
        .audience(doc["audience"].as_str().unwrap())
        .build()
        .unwrap();
    let valid = doc["valid"].as_array().unwrap();
    assert_eq!(valid.len(), JwtAlgorithm::ALL.len());
    for v in valid {
        let alg: JwtAlgorithm = v["alg"].as_str().unwrap().parse().unwrap();
        let token = v["token"].as_str().unwrap();
        let (opened, _) = verifier
            .open_checked(token, b"", &Policy::new(), now)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(opened.key_id(), v["kid"]);
        let mut s = opened.into_state();
        assert_eq!(s.id().to_string(), want["id"]);
        assert_eq!(s.subject(), want["sub"].as_str());
        assert_eq!(s.issued_at().as_millis(), want["issued_at_ms"]);
        assert_eq!(s.last_seen().as_millis(), want["last_seen_ms"]);
        assert_eq!(s.expires_at().as_millis(), want["expires_at_ms"]);
        assert_eq!(Value::Object(s.data().unwrap().clone()), want["data"]);
        // The idle deadline (1 hour after last_seen) plus the leeway ends it.
        assert!(matches!(
            verifier.open_checked(token, b"", &Policy::new().idle_timeout(None), expired),
            Err(OpenError::IdleTimeout { .. })
        ));
        // A plain jsonwebtoken decode with the public key verifies it too.
        let mut val = Validation::new(jwt_alg(alg));
        val.validate_exp = false;
        val.set_audience(&[AUD]);
        jsonwebtoken::decode::<Value>(token, &decoding_key(alg), &val)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(!invalid.is_empty());
    for v in invalid {
        let e = verifier
            .open_checked(v["token"].as_str().unwrap(), b"", &Policy::new(), now)
            .unwrap_err();
        assert_eq!(e.reason(), v["reason"], "{}", v["name"]);
    }
}
