//! Sealed and signed codecs: round trips, key rotation, purpose binding, refusals with
//! their typed reasons, limits, and typed access to the data.
// What only the `test-vectors` tests use is unused without that feature.
#![cfg_attr(not(feature = "test-vectors"), allow(dead_code, unused_imports))]

mod common {
    pub mod fixtures;
}

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixtures::{T0, T0_MS};
use serde_json::json;

use sealed_session::{
    Algorithm, Codec, DataError, Key, Keyring, OpenError, SealError, SealedCodec, SessionId,
    SessionState, SignedCodec, Timestamp,
};

fn key(id: &str, alg: Algorithm) -> Key {
    Key::generate(id, alg).unwrap()
}

fn ring(keys: impl IntoIterator<Item = Key>) -> Keyring {
    Keyring::new(keys).unwrap()
}

fn state() -> SessionState {
    let mut st = SessionState::new(
        SessionId::generate().unwrap(),
        T0,
        Timestamp::from_millis(T0_MS + 86_400_000),
    );
    st.set_last_seen(Timestamp::from_millis(T0_MS + 1234));
    st.set_subject(Some("user-42".into()));
    st.insert("user", "alice").unwrap();
    st.insert("cart", &[3, 5, 8]).unwrap();
    st.insert("prefs", &json!({"theme": "dark", "lang": "de"}))
        .unwrap();
    st
}

/// Both codecs over the same ring, so every test runs for each.
fn codecs(ring: &Keyring) -> [Box<dyn Codec>; 2] {
    [
        Box::new(SealedCodec::new(ring.clone())),
        Box::new(SignedCodec::new(ring.clone())),
    ]
}

fn assert_same(a: &SessionState, b: &SessionState) {
    let (mut a, mut b) = (a.clone(), b.clone());
    assert_eq!(a.id(), b.id());
    assert_eq!(a.issued_at(), b.issued_at());
    assert_eq!(a.last_seen(), b.last_seen());
    assert_eq!(a.expires_at(), b.expires_at());
    assert_eq!(a.subject(), b.subject());
    assert_eq!(a.data().unwrap(), b.data().unwrap());
}

#[test]
fn round_trip_for_every_algorithm_and_signed() {
    for alg in Algorithm::ALL {
        let ring = ring([key("k1", alg)]);
        for codec in codecs(&ring) {
            let st = state();
            let token = codec.seal(&st, b"sid").unwrap();
            let opened = codec.open(&token, b"sid").unwrap();
            assert_eq!(opened.key_id(), "k1");
            assert!(!opened.needs_reissue());
            let back = opened.into_state();
            assert_same(&st, &back);
            assert_eq!(
                back.get::<String>("user").unwrap().as_deref(),
                Some("alice")
            );
            assert_eq!(back.get::<Vec<u32>>("cart").unwrap(), Some(vec![3, 5, 8]));

            // Opened state seals again unchanged (the raw data bytes are re-used).
            let again = codec.seal(&codec.open(&token, b"sid").unwrap().into_state(), b"sid");
            let again = codec.open(&again.unwrap(), b"sid").unwrap().into_state();
            assert_same(&st, &again);
        }
    }
}

#[test]
fn round_trip_of_an_empty_session_without_subject() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for codec in codecs(&ring) {
        let st = SessionState::new(
            SessionId::from_bytes([0xab; 16]),
            T0,
            Timestamp::from_millis(T0_MS + 1),
        );
        let token = codec.seal(&st, b"").unwrap();
        let mut back = codec.open(&token, b"").unwrap().into_state();
        assert!(back.is_empty());
        assert_eq!(back.subject(), None);
        assert!(back.data().unwrap().is_empty());
        assert_same(&st, &back);
    }
}

#[test]
fn sealing_draws_a_fresh_nonce_and_signing_is_deterministic() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    let st = state();
    let sealed = SealedCodec::new(ring.clone());
    assert_ne!(
        sealed.seal(&st, b"sid").unwrap(),
        sealed.seal(&st, b"sid").unwrap()
    );
    let signed = SignedCodec::new(ring);
    assert_eq!(
        signed.seal(&st, b"sid").unwrap(),
        signed.seal(&st, b"sid").unwrap()
    );
}

#[test]
fn sealed_hides_the_data_and_signed_shows_it() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    let st = state();
    let decode = |t: String| URL_SAFE_NO_PAD.decode(t).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let sealed = decode(SealedCodec::new(ring.clone()).seal(&st, b"sid").unwrap());
    assert!(!contains(&sealed, b"alice"));
    assert!(!contains(&sealed, b"user-42"));
    let signed = decode(SignedCodec::new(ring).seal(&st, b"sid").unwrap());
    assert!(contains(&signed, b"\"user\":\"alice\""));
    assert!(contains(&signed, b"user-42"));
}

#[test]
fn token_of_a_removed_key_is_refused_with_unknown_key_id() {
    let old = ring([key("k1", Algorithm::Aes256Gcm)]);
    let new = ring([key("k2", Algorithm::Aes256Gcm)]);
    for (old_codec, new_codec) in codecs(&old).into_iter().zip(codecs(&new)) {
        let token = old_codec.seal(&state(), b"sid").unwrap();
        let err = new_codec.open(&token, b"sid").unwrap_err();
        assert_eq!(err, OpenError::UnknownKeyId("k1".into()));
        assert_eq!(err.reason(), "unknown_key_id");
    }
}

#[test]
fn token_of_an_older_key_opens_and_asks_to_be_reissued() {
    let k1 = key("k1", Algorithm::Aes256Gcm);
    let before = ring([k1.clone()]);
    let after = before.rotate(key("k2", Algorithm::Aes256Gcm), 2).unwrap();
    for (old_codec, new_codec) in codecs(&before).into_iter().zip(codecs(&after)) {
        let st = state();
        let token = old_codec.seal(&st, b"sid").unwrap();
        let opened = new_codec.open(&token, b"sid").unwrap();
        assert_eq!(opened.key_id(), "k1");
        assert!(opened.needs_reissue());
        // Re-issued under the primary, it no longer asks.
        let reissued = new_codec.seal(opened.state(), b"sid").unwrap();
        let opened = new_codec.open(&reissued, b"sid").unwrap();
        assert_eq!(opened.key_id(), "k2");
        assert!(!opened.needs_reissue());
        assert_same(&st, opened.state());
        // The old ring, lacking k2, cannot open the re-issued token.
        assert_eq!(
            old_codec.open(&reissued, b"sid").unwrap_err(),
            OpenError::UnknownKeyId("k2".into())
        );
    }
}

#[test]
fn rotation_from_aes_gcm_to_xchacha_keeps_old_tokens_opening() {
    let aes = ring([key("aes1", Algorithm::Aes256Gcm)]);
    let old_token = SealedCodec::new(aes.clone())
        .seal(&state(), b"sid")
        .unwrap();
    let mixed = aes
        .rotate(key("xc1", Algorithm::XChaCha20Poly1305), 2)
        .unwrap();
    assert_eq!(mixed.primary_algorithm(), Algorithm::XChaCha20Poly1305);
    let codec = SealedCodec::new(mixed.clone());

    let opened = codec.open(&old_token, b"sid").unwrap();
    assert_eq!(opened.key_id(), "aes1");
    assert!(opened.needs_reissue());

    // New tokens are XChaCha20-Poly1305: the header names xc1, and after it come a 24-byte
    // nonce, the payload and a 16-byte tag.
    let new_token = codec.seal(opened.state(), b"sid").unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&new_token).unwrap();
    assert_eq!(&raw[..6], b"\x01\x01\x03xc1");
    let old_raw = URL_SAFE_NO_PAD.decode(&old_token).unwrap();
    // Same payload: 24 - 12 bytes more nonce, 3 - 4 bytes less key id.
    assert_eq!(raw.len(), old_raw.len() + 12 - 1);
    let xchacha_only = ring(mixed.keys().take(1).cloned());
    assert!(
        SealedCodec::new(xchacha_only)
            .open(&new_token, b"sid")
            .is_ok()
    );
}

#[test]
fn purpose_binds_the_token() {
    for alg in Algorithm::ALL {
        let ring = ring([key("k1", alg)]);
        for codec in codecs(&ring) {
            let token = codec.seal(&state(), b"a").unwrap();
            assert!(codec.open(&token, b"a").is_ok());
            assert_eq!(codec.open(&token, b"b").unwrap_err(), OpenError::BadSeal);
            assert_eq!(codec.open(&token, b"").unwrap_err(), OpenError::BadSeal);
            assert_eq!(codec.open(&token, b"aa").unwrap_err(), OpenError::BadSeal);
        }
    }
}

#[test]
fn signed_and_sealed_tokens_do_not_cross() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    let sealed = SealedCodec::new(ring.clone());
    let signed = SignedCodec::new(ring);
    let st = state();
    let s_token = sealed.seal(&st, b"sid").unwrap();
    let g_token = signed.seal(&st, b"sid").unwrap();
    assert_eq!(
        signed.open(&s_token, b"sid").unwrap_err(),
        OpenError::Malformed("token of another kind")
    );
    assert_eq!(
        sealed.open(&g_token, b"sid").unwrap_err(),
        OpenError::Malformed("token of another kind")
    );
    // Relabelled as the other kind, authentication fails (the kind is associated data).
    for (token, codec) in [(&s_token, &signed as &dyn Codec), (&g_token, &sealed)] {
        let mut raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        raw[1] ^= 0b11; // 1 <-> 2
        let err = codec
            .open(&URL_SAFE_NO_PAD.encode(&raw), b"sid")
            .unwrap_err();
        assert!(
            matches!(err, OpenError::BadSeal | OpenError::Malformed(_)),
            "{err:?}"
        );
    }
}

#[test]
fn unsupported_version_is_named() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for codec in codecs(&ring) {
        let token = codec.seal(&state(), b"sid").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for v in [0u8, 2, 255] {
            raw[0] = v;
            let err = codec
                .open(&URL_SAFE_NO_PAD.encode(&raw), b"sid")
                .unwrap_err();
            assert_eq!(
                err,
                OpenError::UnsupportedVersion {
                    found: v,
                    supported: 1
                }
            );
            assert_eq!(err.reason(), "unsupported_version");
        }
    }
}

#[test]
fn oversized_token_is_refused_before_decoding() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for codec in codecs(&ring) {
        // Not even base64: still TooLarge, because the length is checked first.
        let junk = "!".repeat(16 * 1024 + 1);
        assert_eq!(
            codec.open(&junk, b"sid").unwrap_err(),
            OpenError::TooLarge {
                len: 16 * 1024 + 1,
                max: 16 * 1024
            }
        );
        assert_eq!(
            codec.open(&"!".repeat(16 * 1024), b"sid").unwrap_err(),
            OpenError::Malformed("not base64url")
        );
    }
    let token = SealedCodec::new(ring.clone())
        .seal(&state(), b"sid")
        .unwrap();
    let small = SealedCodec::new(ring).max_token_len(token.len() - 1);
    assert_eq!(
        small.open(&token, b"sid").unwrap_err(),
        OpenError::TooLarge {
            len: token.len(),
            max: token.len() - 1
        }
    );
}

#[test]
fn seal_limit_is_exact() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for n in 0..6 {
        // Vary the payload so that the token length takes every value mod 4.
        let mut st = state();
        st.insert("pad", &"x".repeat(n)).unwrap();
        for codec in [
            Box::new(SealedCodec::new(ring.clone())) as Box<dyn Codec>,
            Box::new(SignedCodec::new(ring.clone())),
        ] {
            let len = codec.seal(&st, b"sid").unwrap().len();
            let (exact, under): (Box<dyn Codec>, Box<dyn Codec>) = if codec.name() == "sealed" {
                (
                    Box::new(SealedCodec::new(ring.clone()).max_token_len(len)),
                    Box::new(SealedCodec::new(ring.clone()).max_token_len(len - 1)),
                )
            } else {
                (
                    Box::new(SignedCodec::new(ring.clone()).max_token_len(len)),
                    Box::new(SignedCodec::new(ring.clone()).max_token_len(len - 1)),
                )
            };
            let token = exact.seal(&st, b"sid").unwrap();
            assert_eq!(token.len(), len);
            assert!(exact.open(&token, b"sid").is_ok());
            match under.seal(&st, b"sid") {
                Err(SealError::TooLarge { len: l, max }) => {
                    assert_eq!((l, max), (len, len - 1));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn subject_over_the_limit_is_refused_at_seal() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    let mut st = state();
    st.set_subject(Some("u".repeat(1024)));
    for codec in codecs(&ring) {
        let token = codec.seal(&st, b"sid").unwrap();
        assert_eq!(
            codec
                .open(&token, b"sid")
                .unwrap()
                .state()
                .subject()
                .map(str::len),
            Some(1024)
        );
    }
    st.set_subject(Some("u".repeat(1025)));
    for codec in codecs(&ring) {
        assert!(matches!(
            codec.seal(&st, b"sid"),
            Err(SealError::SubjectTooLong {
                len: 1025,
                max: 1024
            })
        ));
    }
}

#[test]
fn typed_get_of_the_wrong_type_is_an_error_not_none() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for codec in codecs(&ring) {
        let token = codec.seal(&state(), b"sid").unwrap();
        let st = codec.open(&token, b"sid").unwrap().into_state();
        match st.get::<u64>("user") {
            Err(DataError::WrongType { key, .. }) => assert_eq!(key, "user"),
            other => panic!("{other:?}"),
        }
        let err = st.get::<Vec<String>>("cart").unwrap_err();
        assert!(err.to_string().contains("\"cart\""), "{err}");
        assert_eq!(st.get::<u64>("absent").unwrap(), None);
        assert_eq!(st.get::<Vec<u8>>("cart").unwrap(), Some(vec![3, 5, 8]));
    }
}

#[test]
fn insert_reports_change_and_remove_returns_the_old_value() {
    let mut st = state();
    assert!(!st.insert("user", "alice").unwrap());
    assert!(st.insert("user", "bob").unwrap());
    assert!(st.insert("new", &1).unwrap());
    assert_eq!(st.remove("new").unwrap(), Some(json!(1)));
    assert_eq!(st.remove("new").unwrap(), None);
    st.clear();
    assert!(st.is_empty());
}

#[test]
fn garbage_and_short_tokens_are_malformed() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    for codec in codecs(&ring) {
        for (t, why) in [
            ("", "empty token"),
            ("a", "not base64url"),
            ("AQ==", "not base64url"),
            ("AQ", "shorter than a header"),
            ("not a token", "not base64url"),
            ("AQECA", "not base64url"),
            ("AQEC+w", "not base64url"),
        ] {
            assert_eq!(
                codec.open(t, b"sid").unwrap_err(),
                OpenError::Malformed(why),
                "{t:?}"
            );
        }
        // Four bytes: version, kind, key id length 2, one byte of key id.
        let kind = if codec.name() == "sealed" { 1 } else { 2 };
        let short = URL_SAFE_NO_PAD.encode([1, kind, 2, 3]);
        assert!(short.ends_with('w'), "{short}");
        assert_eq!(
            codec.open(&short, b"sid").unwrap_err(),
            OpenError::Malformed("key id truncated")
        );
        // The same bytes with non-zero unused bits in the last character: refused, so that
        // one token has one text.
        let non_canonical = short.replace('w', "x");
        assert_eq!(
            codec.open(&non_canonical, b"sid").unwrap_err(),
            OpenError::Malformed("not base64url")
        );
        // A valid header with no body.
        let header = URL_SAFE_NO_PAD.encode(if codec.name() == "sealed" {
            b"\x01\x01\x02k1"
        } else {
            b"\x01\x02\x02k1"
        });
        assert!(matches!(
            codec.open(&header, b"sid").unwrap_err(),
            OpenError::Malformed(_)
        ));
        // Key id length out of range, key id with a forbidden byte.
        for raw in [
            &b"\x01\x01\x00"[..],
            b"\x01\x01\x11kkkkkkkkkkkkkkkkk",
            b"\x01\x01\x02k:",
        ] {
            let mut raw = raw.to_vec();
            raw[1] = if codec.name() == "sealed" { 1 } else { 2 };
            raw.extend_from_slice(&[0u8; 64]);
            assert!(matches!(
                codec
                    .open(&URL_SAFE_NO_PAD.encode(&raw), b"sid")
                    .unwrap_err(),
                OpenError::Malformed(_)
            ));
        }
    }
}

#[test]
fn every_refusal_has_a_distinct_reason() {
    let reasons = [
        OpenError::Malformed("x").reason(),
        OpenError::UnsupportedVersion {
            found: 2,
            supported: 1,
        }
        .reason(),
        OpenError::UnknownKeyId("k".into()).reason(),
        OpenError::BadSeal.reason(),
        OpenError::Expired {
            expired_at: Timestamp::EPOCH,
            now: Timestamp::EPOCH,
        }
        .reason(),
        OpenError::IdleTimeout {
            last_seen: Timestamp::EPOCH,
            now: Timestamp::EPOCH,
        }
        .reason(),
        OpenError::FromTheFuture {
            claimed: Timestamp::EPOCH,
            now: Timestamp::EPOCH,
        }
        .reason(),
        OpenError::TooLarge { len: 2, max: 1 }.reason(),
        OpenError::Revoked.reason(),
    ];
    let mut unique = reasons.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), reasons.len());
}

#[test]
fn long_purposes_bind_too() {
    let ring = ring([key("k1", Algorithm::XChaCha20Poly1305)]);
    for codec in codecs(&ring) {
        for len in [75, 76, 77, 200, 65_535] {
            let purpose = vec![b'p'; len];
            let token = codec.seal(&state(), &purpose).unwrap();
            assert!(codec.open(&token, &purpose).is_ok(), "{len}");
            let mut other = purpose.clone();
            other[len - 1] = b'q';
            assert_eq!(codec.open(&token, &other).unwrap_err(), OpenError::BadSeal);
            assert_eq!(
                codec.open(&token, &purpose[..len - 1]).unwrap_err(),
                OpenError::BadSeal
            );
        }
        // Beyond 65535 bytes only the first 65535 are bound (docs/FORMAT.md, section 4).
        let long = vec![b'p'; 70_000];
        let token = codec.seal(&state(), &long).unwrap();
        assert!(codec.open(&token, &long[..65_535]).is_ok());
    }
}

#[cfg(feature = "test-vectors")] // seals with a given nonce
/// A thread reuses one buffer for the binary token it seals: what an earlier seal left in it
/// (a larger token, or a seal refused half-way with its plaintext) never reaches a later
/// token. The same state seals to the same bytes whatever came before (signed tokens are
/// deterministic; sealed ones are with a fixed nonce).
#[test]
fn sealing_reuses_no_bytes_of_an_earlier_seal() {
    let ring = ring([key("k1", Algorithm::Aes256Gcm)]);
    let sealed = SealedCodec::new(ring.clone());
    let signed = SignedCodec::new(ring.clone());
    let nonce = [7u8; 12];
    let small = state();
    let mut large = state();
    large.insert("pad", &"x".repeat(3000)).unwrap();
    let seal_small = |signed_kind: bool| {
        if signed_kind {
            signed.seal(&small, b"sid").unwrap()
        } else {
            sealed
                .seal_with_nonce_for_test_vectors(&small, b"sid", &nonce)
                .unwrap()
        }
    };
    for signed_kind in [false, true] {
        let (codec, tight): (&dyn Codec, Box<dyn Codec>) = if signed_kind {
            (
                &signed,
                Box::new(SignedCodec::new(ring.clone()).max_token_len(64)),
            )
        } else {
            (
                &sealed,
                Box::new(SealedCodec::new(ring.clone()).max_token_len(64)),
            )
        };
        let first = seal_small(signed_kind);
        for _ in 0..3 {
            let big = codec.seal(&large, b"sid").unwrap();
            assert!(big.len() > 4000);
            // Refused after the data was written into the buffer.
            assert!(matches!(
                tight.seal(&large, b"sid"),
                Err(SealError::TooLarge { .. })
            ));
            let again = seal_small(signed_kind);
            assert_eq!(again, first);
            let opened = codec.open(&again, b"sid").unwrap();
            assert_eq!(
                opened.state().get::<String>("user").unwrap().as_deref(),
                Some("alice")
            );
            let pad = codec
                .open(&big, b"sid")
                .unwrap()
                .state()
                .get::<String>("pad");
            assert_eq!(pad.unwrap().map(|p| p.len()), Some(3000));
        }
    }
}
