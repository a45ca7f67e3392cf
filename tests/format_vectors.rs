//! The test vectors of `docs/FORMAT.md`, checked in both directions.
//!
//! `tests/vectors/tokens.json` states, for each vector, a key, a nonce, a purpose and a
//! session; and what they give: sub-keys, associated data, payload bytes and the token.
//! These tests check that
//!
//! - the codecs open each token to the stated session (`open_gives_stated_session`);
//! - sealing the stated session with the stated nonce gives the stated token byte for byte
//!   (`seal_gives_stated_token`);
//! - a decoder written from `docs/FORMAT.md` alone, using the primitive crates directly and
//!   none of this crate's code, derives the same sub-keys and associated data and finds the
//!   stated payload in each token (`independent_decoder_agrees`).
//!
//! To regenerate the file after a deliberate format change (a new format version; vectors
//! of released versions must stay):
//! `cargo test --test format_vectors -- --ignored regenerate_vectors`.
// What only the `test-vectors` tests use is unused without that feature.
#![cfg_attr(not(feature = "test-vectors"), allow(dead_code, unused_imports))]

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use sealed_session::{
    Algorithm, Codec, Key, Keyring, SealedCodec, SessionId, SessionState, SignedCodec, Timestamp,
};

const VECTORS: &str = include_str!("vectors/tokens.json");

// ---------------------------------------------------------------------------------------
// An independent implementation of docs/FORMAT.md, from the primitive crates only.
// ---------------------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut out)
        .unwrap();
    out
}

fn spec_material_from_secret(secret: &[u8]) -> [u8; 32] {
    hkdf32(b"sealed-session/v1/secret", secret, b"key material")
}

fn spec_key_id(material: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"sealed-session/v1/key-id")
        .chain_update(material)
        .finalize();
    format!("s{}", &URL_SAFE_NO_PAD.encode(&digest[..6])[..6])
}

fn spec_aead_key(material: &[u8], alg: &str) -> [u8; 32] {
    hkdf32(
        b"",
        material,
        format!("sealed-session/v1/aead/{alg}").as_bytes(),
    )
}

fn spec_hmac_key(material: &[u8]) -> [u8; 32] {
    hkdf32(b"", material, b"sealed-session/v1/hmac-sha256")
}

fn spec_header(kind: u8, key_id: &str) -> Vec<u8> {
    let mut h = vec![1, kind, key_id.len() as u8];
    h.extend_from_slice(key_id.as_bytes());
    h
}

fn spec_ad(header: &[u8], purpose: &[u8]) -> Vec<u8> {
    let mut ad = header.to_vec();
    ad.extend_from_slice(&(purpose.len() as u16).to_be_bytes());
    ad.extend_from_slice(purpose);
    ad
}

/// The session fields of a vector, as the JSON file states them.
#[derive(Debug, PartialEq)]
struct Fields {
    id: [u8; 16],
    issued_at: u64,
    last_seen: u64,
    expires_at: u64,
    subject: Option<String>,
    data: Vec<u8>,
}

fn spec_encode_payload(f: &Fields) -> Vec<u8> {
    let mut p = f.id.to_vec();
    p.extend_from_slice(&f.issued_at.to_be_bytes());
    p.extend_from_slice(&f.last_seen.to_be_bytes());
    p.extend_from_slice(&f.expires_at.to_be_bytes());
    match &f.subject {
        None => p.push(0),
        Some(s) => {
            p.push(1);
            p.extend_from_slice(&(s.len() as u16).to_be_bytes());
            p.extend_from_slice(s.as_bytes());
        }
    }
    p.extend_from_slice(&f.data);
    p
}

fn spec_decode_payload(p: &[u8]) -> Fields {
    let u64_at = |o: usize| u64::from_be_bytes(p[o..o + 8].try_into().unwrap());
    let flags = p[40];
    assert_eq!(flags & !1, 0, "unknown flags");
    let (subject, rest) = if flags & 1 == 1 {
        let len = usize::from(u16::from_be_bytes([p[41], p[42]]));
        let s = String::from_utf8(p[43..43 + len].to_vec()).unwrap();
        (Some(s), &p[43 + len..])
    } else {
        (None, &p[41..])
    };
    Fields {
        id: p[..16].try_into().unwrap(),
        issued_at: u64_at(16),
        last_seen: u64_at(24),
        expires_at: u64_at(32),
        subject,
        data: rest.to_vec(),
    }
}

/// Seals per the spec with the primitive crates: header || nonce || ciphertext || tag.
fn spec_seal(
    alg: &str,
    aead_key: &[u8],
    header: &[u8],
    nonce: &[u8],
    ad: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let msg = Payload {
        msg: payload,
        aad: ad,
    };
    let ct = match alg {
        "aes256gcm" => Aes256Gcm::new_from_slice(aead_key)
            .unwrap()
            .encrypt(nonce.into(), msg),
        "chacha20poly1305" => ChaCha20Poly1305::new_from_slice(aead_key)
            .unwrap()
            .encrypt(nonce.into(), msg),
        "xchacha20poly1305" => XChaCha20Poly1305::new_from_slice(aead_key)
            .unwrap()
            .encrypt(nonce.into(), msg),
        other => panic!("unknown algorithm {other}"),
    }
    .unwrap();
    [header, nonce, &ct].concat()
}

/// Opens per the spec: returns the payload.
fn spec_open_sealed(alg: &str, aead_key: &[u8], header: &[u8], ad: &[u8], raw: &[u8]) -> Vec<u8> {
    let nonce_len = if alg == "xchacha20poly1305" { 24 } else { 12 };
    assert_eq!(&raw[..header.len()], header, "header");
    let nonce = &raw[header.len()..header.len() + nonce_len];
    let body = &raw[header.len() + nonce_len..];
    let msg = Payload { msg: body, aad: ad };
    match alg {
        "aes256gcm" => Aes256Gcm::new_from_slice(aead_key)
            .unwrap()
            .decrypt(nonce.into(), msg),
        "chacha20poly1305" => ChaCha20Poly1305::new_from_slice(aead_key)
            .unwrap()
            .decrypt(nonce.into(), msg),
        "xchacha20poly1305" => XChaCha20Poly1305::new_from_slice(aead_key)
            .unwrap()
            .decrypt(nonce.into(), msg),
        other => panic!("unknown algorithm {other}"),
    }
    .expect("AEAD authentication per the spec")
}

fn spec_sign(hmac_key: &[u8], header: &[u8], ad: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(hmac_key).unwrap();
    mac.update(ad);
    mac.update(payload);
    let tag = mac.finalize().into_bytes();
    [header, payload, &tag[..]].concat()
}

// ---------------------------------------------------------------------------------------
// Reading the vectors.
// ---------------------------------------------------------------------------------------

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("tokens.json is JSON")
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("field {k} of {v}"))
}

fn fields(v: &Value) -> Fields {
    let sess = &v["session"];
    Fields {
        id: unhex(s(sess, "id_hex")).try_into().unwrap(),
        issued_at: sess["issued_at_ms"].as_u64().unwrap(),
        last_seen: sess["last_seen_ms"].as_u64().unwrap(),
        expires_at: sess["expires_at_ms"].as_u64().unwrap(),
        subject: sess["subject"].as_str().map(str::to_owned),
        data: s(sess, "data").as_bytes().to_vec(),
    }
}

fn ring(v: &Value) -> Keyring {
    let alg: Algorithm = s(v, "algorithm").parse().unwrap();
    let key = Key::from_base64(s(v, "key_id"), alg, s(v, "key_material")).unwrap();
    Keyring::new([key]).unwrap()
}

fn state_of(f: &Fields) -> SessionState {
    let mut st = SessionState::new(
        SessionId::from_bytes(f.id),
        Timestamp::from_millis(f.issued_at),
        Timestamp::from_millis(f.expires_at),
    );
    st.set_last_seen(Timestamp::from_millis(f.last_seen));
    st.set_subject(f.subject.clone());
    if !f.data.is_empty() {
        let map: Map<String, Value> = serde_json::from_slice(&f.data).unwrap();
        for (k, val) in &map {
            st.insert(k, val).unwrap();
        }
    }
    st
}

fn tokens() -> Vec<Value> {
    let all = vectors();
    let list = all["tokens"].as_array().unwrap().clone();
    assert!(list.len() >= 4, "one vector per algorithm and one signed");
    list
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn vectors_cover_every_algorithm_and_signed() {
    let list = tokens();
    for alg in Algorithm::ALL {
        assert!(
            list.iter()
                .any(|v| s(v, "kind") == "sealed" && s(v, "algorithm") == alg.name()),
            "no sealed vector for {alg}"
        );
    }
    assert!(list.iter().any(|v| s(v, "kind") == "signed"));
}

#[test]
fn open_gives_stated_session() {
    for v in tokens() {
        let name = s(&v, "name");
        let ring = ring(&v);
        let purpose = s(&v, "purpose").as_bytes();
        let token = s(&v, "token");
        let opened = match s(&v, "kind") {
            "sealed" => SealedCodec::new(ring).open(token, purpose),
            "signed" => SignedCodec::new(ring).open(token, purpose),
            k => panic!("kind {k}"),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(opened.key_id(), s(&v, "key_id"), "{name}");
        assert!(!opened.needs_reissue(), "{name}");
        let f = fields(&v);
        let mut st = opened.into_state();
        assert_eq!(st.id().as_bytes(), &f.id, "{name}");
        assert_eq!(st.id().to_string(), s(&v["session"], "id"), "{name}");
        assert_eq!(st.issued_at().as_millis(), f.issued_at, "{name}");
        assert_eq!(st.last_seen().as_millis(), f.last_seen, "{name}");
        assert_eq!(st.expires_at().as_millis(), f.expires_at, "{name}");
        assert_eq!(st.subject(), f.subject.as_deref(), "{name}");
        let want: Map<String, Value> = if f.data.is_empty() {
            Map::new()
        } else {
            serde_json::from_slice(&f.data).unwrap()
        };
        assert_eq!(st.data().unwrap(), &want, "{name}");
    }
}

#[cfg(feature = "test-vectors")] // seals with a given nonce
#[test]
fn seal_gives_stated_token() {
    for v in tokens() {
        let name = s(&v, "name");
        let ring = ring(&v);
        let purpose = s(&v, "purpose").as_bytes();
        let st = state_of(&fields(&v));
        let token = match s(&v, "kind") {
            "sealed" => SealedCodec::new(ring)
                .seal_with_nonce_for_test_vectors(&st, purpose, &unhex(s(&v, "nonce_hex")))
                .unwrap(),
            "signed" => SignedCodec::new(ring).seal(&st, purpose).unwrap(),
            k => panic!("kind {k}"),
        };
        assert_eq!(token, s(&v, "token"), "{name}");
    }
}

#[test]
fn independent_decoder_agrees() {
    for v in tokens() {
        let name = s(&v, "name");
        let alg = s(&v, "algorithm");
        let material = URL_SAFE_NO_PAD.decode(s(&v, "key_material")).unwrap();
        assert_eq!(
            hex(&spec_aead_key(&material, alg)),
            s(&v, "aead_key_hex"),
            "{name}"
        );
        assert_eq!(
            hex(&spec_hmac_key(&material)),
            s(&v, "hmac_key_hex"),
            "{name}"
        );
        let kind = if s(&v, "kind") == "sealed" { 1 } else { 2 };
        let header = spec_header(kind, s(&v, "key_id"));
        assert_eq!(hex(&header), s(&v, "header_hex"), "{name}");
        let ad = spec_ad(&header, s(&v, "purpose").as_bytes());
        assert_eq!(hex(&ad), s(&v, "associated_data_hex"), "{name}");
        let f = fields(&v);
        assert_eq!(
            hex(&spec_encode_payload(&f)),
            s(&v, "payload_hex"),
            "{name}"
        );

        let raw = URL_SAFE_NO_PAD.decode(s(&v, "token")).unwrap();
        let payload = if kind == 1 {
            spec_open_sealed(alg, &spec_aead_key(&material, alg), &header, &ad, &raw)
        } else {
            let (body, tag) = raw.split_at(raw.len() - 32);
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&spec_hmac_key(&material)).unwrap();
            mac.update(&ad);
            mac.update(&body[header.len()..]);
            mac.verify_slice(tag).expect("HMAC per the spec");
            body[header.len()..].to_vec()
        };
        assert_eq!(hex(&payload), s(&v, "payload_hex"), "{name}");
        assert_eq!(spec_decode_payload(&payload), f, "{name}");
    }
}

#[test]
fn derivation_vectors() {
    let all = vectors();
    let list = all["derivations"].as_array().unwrap();
    assert!(!list.is_empty());
    for v in list {
        let secret = s(v, "secret").as_bytes();
        let material = spec_material_from_secret(secret);
        assert_eq!(URL_SAFE_NO_PAD.encode(material), s(v, "key_material"));
        assert_eq!(spec_key_id(&material), s(v, "key_id"));
        // The crate agrees: the derived key carries that id and material.
        let key = Key::derive(None, Algorithm::Aes256Gcm, secret).unwrap();
        assert_eq!(key.id(), s(v, "key_id"));
        let entry = key.to_ring_entry();
        assert_eq!(
            entry.as_str(),
            format!("{}:aes256gcm:{}", s(v, "key_id"), s(v, "key_material"))
        );
    }
}

// ---------------------------------------------------------------------------------------
// The generator.
// ---------------------------------------------------------------------------------------

struct Input {
    name: &'static str,
    kind: &'static str,
    alg: &'static str,
    key_id: &'static str,
    material: [u8; 32],
    nonce: Vec<u8>,
    purpose: &'static str,
    fields: Fields,
}

fn seq(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

fn inputs() -> Vec<Input> {
    let id = unhex("00112233445566778899aabbccddeeff")
        .try_into()
        .unwrap();
    let id2 = unhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
        .try_into()
        .unwrap();
    let t0 = 1_764_000_000_000; // 2025-11-24T16:00:00.000Z
    vec![
        Input {
            name: "sealed-aes256gcm",
            kind: "sealed",
            alg: "aes256gcm",
            key_id: "k1",
            material: seq(0x00, 32).try_into().unwrap(),
            nonce: seq(0xa0, 12),
            purpose: "sid",
            fields: Fields {
                id,
                issued_at: t0,
                last_seen: t0 + 600_000,
                expires_at: t0 + 86_400_000,
                subject: Some("user-42".into()),
                data: br#"{"cart":[3,5],"user":"alice"}"#.to_vec(),
            },
        },
        Input {
            name: "sealed-chacha20poly1305",
            kind: "sealed",
            alg: "chacha20poly1305",
            key_id: "c-2025",
            material: seq(0x20, 32).try_into().unwrap(),
            nonce: seq(0xb0, 12),
            purpose: "__Host-sid",
            fields: Fields {
                id: id2,
                issued_at: t0,
                last_seen: t0,
                expires_at: t0 + 3_600_000,
                subject: None,
                data: br#"{"n":1}"#.to_vec(),
            },
        },
        Input {
            name: "sealed-xchacha20poly1305",
            kind: "sealed",
            alg: "xchacha20poly1305",
            key_id: "x.1",
            material: seq(0x40, 32).try_into().unwrap(),
            nonce: seq(0xc0, 24),
            purpose: "sid",
            fields: Fields {
                id,
                issued_at: t0,
                last_seen: t0 + 1,
                expires_at: t0 + 86_400_000,
                subject: Some("jürgen".into()),
                data: br#"{"theme":"dark"}"#.to_vec(),
            },
        },
        Input {
            name: "sealed-aes256gcm-empty",
            kind: "sealed",
            alg: "aes256gcm",
            key_id: "k1",
            material: seq(0x00, 32).try_into().unwrap(),
            nonce: seq(0xd0, 12),
            purpose: "sid",
            fields: Fields {
                id: id2,
                issued_at: t0,
                last_seen: t0,
                expires_at: t0 + 86_400_000,
                subject: None,
                data: Vec::new(),
            },
        },
        Input {
            name: "signed",
            kind: "signed",
            alg: "aes256gcm",
            key_id: "k1",
            material: seq(0x00, 32).try_into().unwrap(),
            nonce: Vec::new(),
            purpose: "sid",
            fields: Fields {
                id,
                issued_at: t0,
                last_seen: t0 + 600_000,
                expires_at: t0 + 86_400_000,
                subject: Some("user-42".into()),
                data: br#"{"cart":[3,5],"user":"alice"}"#.to_vec(),
            },
        },
    ]
}

#[cfg(feature = "test-vectors")] // seals with a given nonce
/// Writes `tests/vectors/tokens.json` from the inputs above, computing every derived value
/// with the independent implementation and the token with the crate (the other tests then
/// check that both agree).
#[test]
#[ignore = "regenerates tests/vectors/tokens.json"]
fn regenerate_vectors() {
    let mut out = Vec::new();
    for i in inputs() {
        let header = spec_header(if i.kind == "sealed" { 1 } else { 2 }, i.key_id);
        let ad = spec_ad(&header, i.purpose.as_bytes());
        let payload = spec_encode_payload(&i.fields);
        let aead_key = spec_aead_key(&i.material, i.alg);
        let hmac_key = spec_hmac_key(&i.material);
        let raw = if i.kind == "sealed" {
            spec_seal(i.alg, &aead_key, &header, &i.nonce, &ad, &payload)
        } else {
            spec_sign(&hmac_key, &header, &ad, &payload)
        };
        let token = URL_SAFE_NO_PAD.encode(&raw);
        // The crate makes the same token from the same inputs.
        let f = &i.fields;
        let alg: Algorithm = i.alg.parse().unwrap();
        let ring = Keyring::new([Key::new(i.key_id, alg, &i.material).unwrap()]).unwrap();
        let crate_token = if i.kind == "sealed" {
            SealedCodec::new(ring)
                .seal_with_nonce_for_test_vectors(&state_of(f), i.purpose.as_bytes(), &i.nonce)
                .unwrap()
        } else {
            SignedCodec::new(ring)
                .seal(&state_of(f), i.purpose.as_bytes())
                .unwrap()
        };
        assert_eq!(crate_token, token, "{}", i.name);
        let mut v = json!({
            "name": i.name,
            "kind": i.kind,
            "algorithm": i.alg,
            "key_id": i.key_id,
            "key_material": URL_SAFE_NO_PAD.encode(i.material),
            "aead_key_hex": hex(&aead_key),
            "hmac_key_hex": hex(&hmac_key),
            "purpose": i.purpose,
            "session": {
                "id_hex": hex(&f.id),
                "id": SessionId::from_bytes(f.id).to_string(),
                "issued_at_ms": f.issued_at,
                "last_seen_ms": f.last_seen,
                "expires_at_ms": f.expires_at,
                "subject": f.subject,
                "data": String::from_utf8(f.data.clone()).unwrap(),
            },
            "header_hex": hex(&header),
            "associated_data_hex": hex(&ad),
            "payload_hex": hex(&payload),
            "token": token,
        });
        if i.kind == "sealed" {
            v["nonce_hex"] = json!(hex(&i.nonce));
        }
        out.push(v);
    }
    let secret = "correct horse battery staple, then some more words";
    let material = spec_material_from_secret(secret.as_bytes());
    let doc = json!({
        "format_version": 1,
        "description": "Test vectors of docs/FORMAT.md. Binary values are lower-case hex (\
            *_hex) or base64url without padding (key_material, token, session.id). \
            session.data holds the exact bytes of the JSON object in the payload \
            (empty string: no data, read as {}).",
        "tokens": out,
        "derivations": [{
            "secret": secret,
            "key_material": URL_SAFE_NO_PAD.encode(material),
            "key_id": spec_key_id(&material),
        }],
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/tokens.json");
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    std::fs::write(path, text).unwrap();
}
