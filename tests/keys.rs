//! Key ring: construction, refusals of weak or malformed keys, secrecy of `Debug`, the
//! key-ring string round trip and derivation from secrets.

mod common {
    pub mod fixtures;
}

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use common::fixtures::T0;

use sealed_session::{
    Algorithm, Codec, Key, KeyError, Keyring, SealedCodec, SessionId, SessionState, SignedCodec,
    Timestamp,
};

fn material(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1))
}

fn state() -> SessionState {
    let now = T0;
    let mut st = SessionState::new(
        SessionId::from_bytes([9; 16]),
        now,
        Timestamp::from_millis(1_764_003_600_000),
    );
    st.insert("user", "alice").unwrap();
    st
}

#[test]
fn short_key_is_refused_and_says_how_long() {
    let err = Key::new("k1", Algorithm::Aes256Gcm, &material(1)[..31]).unwrap_err();
    assert_eq!(
        err,
        KeyError::TooShort {
            what: "key",
            need: 32,
            got: 31
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("key is 31 bytes"), "{msg}");
    assert!(msg.contains("at least 32 bytes"), "{msg}");
}

#[test]
fn long_raw_key_is_refused_and_points_to_derivation() {
    let long = [material(1), material(2)].concat();
    let err = Key::new("k1", Algorithm::Aes256Gcm, &long).unwrap_err();
    assert_eq!(err, KeyError::TooLong { need: 32, got: 64 });
    assert!(err.to_string().contains("Key::derive"), "{err}");
}

#[test]
fn short_secret_is_refused_and_says_so() {
    let err = Keyring::from_secret("hunter2").unwrap_err();
    assert_eq!(
        err,
        KeyError::TooShort {
            what: "secret",
            need: 32,
            got: 7
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("secret is 7 bytes"), "{msg}");
    assert!(msg.contains("at least 32"), "{msg}");
    // 31 bytes is still too short; 32 is enough.
    assert!(matches!(
        Keyring::from_secret("0123456789abcdef0123456789abcde"),
        Err(KeyError::TooShort { got: 31, .. })
    ));
    assert!(Keyring::from_secret("0123456789abcdef0123456789abcdef").is_ok());
}

#[test]
fn all_same_byte_key_or_secret_is_refused() {
    let err = Key::new("k1", Algorithm::Aes256Gcm, &[0u8; 32]).unwrap_err();
    assert_eq!(err, KeyError::Degenerate { what: "key" });
    assert!(err.to_string().contains("every byte equal"), "{err}");
    let err = Keyring::from_secret([b'a'; 64]).unwrap_err();
    assert_eq!(err, KeyError::Degenerate { what: "secret" });
    assert!(
        err.to_string().contains("secret has every byte equal"),
        "{err}"
    );
    // The same refusal through base64 and the ring string.
    let zeros = URL_SAFE_NO_PAD.encode([0u8; 32]);
    assert_eq!(
        format!("k1:{zeros}").parse::<Keyring>().unwrap_err(),
        KeyError::Degenerate { what: "key" }
    );
}

#[test]
fn bad_key_ids_are_refused() {
    for id in ["", "has space", "k:1", "k,1", "ünï", "seventeen-chars-x"] {
        let err = Key::new(id, Algorithm::Aes256Gcm, &material(1)).unwrap_err();
        assert!(
            matches!(&err, KeyError::InvalidKeyId { id: got, max: 16 } if got == id),
            "{id:?}: {err:?}"
        );
        assert!(err.to_string().contains("A-Z a-z 0-9 . _ -"), "{err}");
        assert!(matches!(
            Key::generate(id, Algorithm::Aes256Gcm),
            Err(KeyError::InvalidKeyId { .. })
        ));
        assert!(matches!(
            Key::derive(
                Some(id),
                Algorithm::Aes256Gcm,
                &[material(1), material(2)].concat()
            ),
            Err(KeyError::InvalidKeyId { .. })
        ));
    }
    for id in ["k", "k-2025.11_a", "sixteen-chars-xx"] {
        assert!(
            Key::new(id, Algorithm::Aes256Gcm, &material(1)).is_ok(),
            "{id}"
        );
    }
}

#[test]
fn duplicate_ids_and_empty_rings_are_refused() {
    let a = Key::new("k1", Algorithm::Aes256Gcm, &material(1)).unwrap();
    let b = Key::new("k1", Algorithm::XChaCha20Poly1305, &material(2)).unwrap();
    let err = Keyring::new([a, b]).unwrap_err();
    assert_eq!(err, KeyError::DuplicateKeyId("k1".into()));
    assert!(err.to_string().contains("appears twice"), "{err}");

    let err = Keyring::new(Vec::<Key>::new()).unwrap_err();
    assert_eq!(err, KeyError::Empty);
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(matches!(
        Keyring::from_secrets(Vec::<&str>::new()),
        Err(KeyError::Empty)
    ));
}

#[test]
fn bad_base64_is_refused_naming_the_key() {
    let err = Key::from_base64("k7", Algorithm::Aes256Gcm, "not*base64!").unwrap_err();
    assert_eq!(err, KeyError::BadBase64 { id: "k7".into() });
    assert!(err.to_string().contains("\"k7\""), "{err}");
    assert!(err.to_string().contains("base64"), "{err}");
    // Valid base64 of the wrong length is a length error, not a base64 error.
    assert!(matches!(
        Key::from_base64("k7", Algorithm::Aes256Gcm, &STANDARD.encode([1u8, 2, 3])),
        Err(KeyError::TooShort { got: 3, .. })
    ));
}

#[test]
fn every_base64_alphabet_is_accepted() {
    let m = material(5);
    for b64 in [
        URL_SAFE_NO_PAD.encode(m),
        STANDARD.encode(m),
        STANDARD_NO_PAD.encode(m),
        format!("  {}  ", STANDARD.encode(m)),
    ] {
        let k = Key::from_base64("k1", Algorithm::Aes256Gcm, &b64).unwrap();
        assert_eq!(
            k.to_ring_entry().as_str(),
            format!("k1:aes256gcm:{}", URL_SAFE_NO_PAD.encode(m))
        );
    }
}

#[test]
fn bad_ring_entries_are_refused_with_their_position() {
    let good = URL_SAFE_NO_PAD.encode(material(1));
    let cases = [
        ("k1".to_owned(), 1),
        (format!("k2:{good},garbage"), 2),
        (format!("k2:{good},k1:aes256gcm:{good}:extra"), 2),
        (format!("k2:{good},"), 2),
        (String::new(), 1),
    ];
    for (s, position) in cases {
        let err = s.parse::<Keyring>().unwrap_err();
        assert_eq!(err, KeyError::BadRingEntry { position }, "{s:?}");
        assert!(
            err.to_string()
                .contains(&format!("entry {position} is not of the form")),
            "{err}"
        );
    }
    let err = format!("k1:rot13:{good}").parse::<Keyring>().unwrap_err();
    assert_eq!(err, KeyError::UnknownAlgorithm("rot13".into()));
    assert!(err.to_string().contains("aes256gcm"), "{err}");
}

#[test]
fn algorithm_names_parse_loosely_and_print_canonically() {
    for (s, alg) in [
        ("aes256gcm", Algorithm::Aes256Gcm),
        ("AES-256-GCM", Algorithm::Aes256Gcm),
        ("ChaCha20-Poly1305", Algorithm::ChaCha20Poly1305),
        ("xchacha20_poly1305", Algorithm::XChaCha20Poly1305),
    ] {
        assert_eq!(s.parse::<Algorithm>().unwrap(), alg);
        assert_eq!(alg.name().parse::<Algorithm>().unwrap(), alg);
    }
    assert_eq!(Algorithm::default(), Algorithm::Aes256Gcm);
    assert_eq!(Algorithm::XChaCha20Poly1305.nonce_len(), 24);
    assert_eq!(Algorithm::Aes256Gcm.nonce_len(), 12);
}

fn encodings_of(m: &[u8]) -> Vec<String> {
    let hex_lower: String = m.iter().map(|b| format!("{b:02x}")).collect();
    let hex_upper: String = m.iter().map(|b| format!("{b:02X}")).collect();
    let decimal_list = format!("{m:?}");
    vec![
        URL_SAFE_NO_PAD.encode(m),
        STANDARD.encode(m),
        STANDARD_NO_PAD.encode(m),
        hex_lower,
        hex_upper,
        decimal_list,
        // A prefix long enough to be a leak but not a coincidence.
        URL_SAFE_NO_PAD.encode(m)[..12].to_owned(),
    ]
}

#[test]
fn debug_never_shows_key_material() {
    let m1 = material(1);
    let m2 = material(2);
    let k1 = Key::new("k1", Algorithm::Aes256Gcm, &m1).unwrap();
    let k2 = Key::new("k2", Algorithm::XChaCha20Poly1305, &m2).unwrap();
    let ring = Keyring::new([k2.clone(), k1.clone()]).unwrap();
    let sealed = SealedCodec::new(ring.clone());
    let signed = SignedCodec::new(ring.clone());
    let shown = [
        format!("{k1:?}"),
        format!("{k1:#?}"),
        format!("{k2:?}"),
        format!("{ring:?}"),
        format!("{ring:#?}"),
        format!("{sealed:?}"),
        format!("{signed:?}"),
    ];
    for text in &shown {
        for enc in encodings_of(&m1).iter().chain(&encodings_of(&m2)) {
            assert!(!text.contains(enc.as_str()), "{text} shows {enc}");
        }
    }
    // It does show what is not secret.
    assert!(
        shown[0].contains("k1") && shown[0].contains("Aes256Gcm"),
        "{}",
        shown[0]
    );
    assert!(shown[3].contains("k2:xchacha20poly1305"), "{}", shown[3]);
    assert!(shown[3].contains("k1:aes256gcm"), "{}", shown[3]);
}

#[test]
fn ring_string_round_trip_opens_the_same_tokens() {
    let ring = Keyring::new([
        Key::generate("x3", Algorithm::XChaCha20Poly1305).unwrap(),
        Key::generate("c2", Algorithm::ChaCha20Poly1305).unwrap(),
        Key::generate("a1", Algorithm::Aes256Gcm).unwrap(),
    ])
    .unwrap();
    let text = ring.to_ring_string();
    let parsed: Keyring = text.parse().unwrap();
    assert_eq!(parsed.ids().collect::<Vec<_>>(), ["x3", "c2", "a1"]);
    assert_eq!(parsed.to_ring_string().as_str(), text.as_str());
    assert_eq!(parsed.primary_algorithm(), Algorithm::XChaCha20Poly1305);

    // Tokens of every key of the original ring open with the parsed ring, and back.
    for keep in 1..=3 {
        let sub = Keyring::new(ring.keys().skip(3 - keep).cloned()).unwrap();
        let token = SealedCodec::new(sub.clone())
            .seal(&state(), b"sid")
            .unwrap();
        let opened = SealedCodec::new(parsed.clone())
            .open(&token, b"sid")
            .unwrap();
        assert_eq!(opened.key_id(), sub.primary_id());
        let token = SignedCodec::new(sub).seal(&state(), b"sid").unwrap();
        assert!(
            SignedCodec::new(parsed.clone())
                .open(&token, b"sid")
                .is_ok()
        );
    }
    let token = SealedCodec::new(parsed).seal(&state(), b"sid").unwrap();
    assert!(SealedCodec::new(ring).open(&token, b"sid").is_ok());
}

#[test]
fn ring_string_without_algorithm_means_aes256gcm() {
    let b64 = STANDARD.encode(material(3));
    let ring: Keyring = format!(
        " k2 : {b64} , k1:xchacha20poly1305:{}",
        URL_SAFE_NO_PAD.encode(material(4))
    )
    .parse()
    .unwrap();
    assert_eq!(ring.primary_id(), "k2");
    assert_eq!(ring.primary_algorithm(), Algorithm::Aes256Gcm);
    let algs: Vec<Algorithm> = ring.keys().map(Key::algorithm).collect();
    assert_eq!(algs, [Algorithm::Aes256Gcm, Algorithm::XChaCha20Poly1305]);
}

#[test]
fn derivation_is_deterministic_and_secrets_rotate_like_express_session() {
    let s1 = "first secret, long enough to be a real secret: 5d1f";
    let s2 = "second secret, long enough to be a real secret: 9a0c";
    let a = Keyring::from_secret(s1).unwrap();
    let b = Keyring::from_secret(s1).unwrap();
    assert_eq!(a.primary_id(), b.primary_id());
    assert!(a.primary_id().starts_with('s') && a.primary_id().len() == 7);
    assert_eq!(a.to_ring_string().as_str(), b.to_ring_string().as_str());
    let other = Keyring::from_secret(s2).unwrap();
    assert_ne!(a.primary_id(), other.primary_id());

    // A token of one process opens in another that shares the secret.
    let token = SealedCodec::new(a).seal(&state(), b"sid").unwrap();
    assert!(SealedCodec::new(b).open(&token, b"sid").is_ok());

    // express-session's secret array: the first seals, every one opens.
    let rotated = Keyring::from_secrets([s2, s1]).unwrap();
    assert_eq!(rotated.primary_id(), other.primary_id());
    let opened = SealedCodec::new(rotated).open(&token, b"sid").unwrap();
    assert!(opened.needs_reissue());
}

#[test]
fn rotate_puts_the_new_key_first_and_keeps_at_most_keep() {
    let ring = Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm).unwrap()]).unwrap();
    let ring = ring
        .rotate(Key::generate("k2", Algorithm::Aes256Gcm).unwrap(), 2)
        .unwrap();
    let ring = ring
        .rotate(
            Key::generate("k3", Algorithm::XChaCha20Poly1305).unwrap(),
            2,
        )
        .unwrap();
    assert_eq!(ring.ids().collect::<Vec<_>>(), ["k3", "k2"]);
    assert!(matches!(
        ring.rotate(Key::generate("k2", Algorithm::Aes256Gcm).unwrap(), 3),
        Err(KeyError::DuplicateKeyId(id)) if id == "k2"
    ));
    let one = ring
        .rotate(Key::generate("k4", Algorithm::Aes256Gcm).unwrap(), 0)
        .unwrap();
    assert_eq!(one.ids().collect::<Vec<_>>(), ["k4"]);
}

#[test]
fn generated_rings_are_distinct() {
    let a = Keyring::generate().unwrap();
    let b = Keyring::generate().unwrap();
    assert_ne!(a.to_ring_string().as_str(), b.to_ring_string().as_str());
    let token = SealedCodec::new(a).seal(&state(), b"sid").unwrap();
    assert!(SealedCodec::new(b).open(&token, b"sid").is_err());
}
