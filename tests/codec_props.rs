//! Property tests: whatever is done to a token (a bit flipped, cut short, extended, replaced
//! by garbage), both codecs refuse it with an error and never panic; and any session
//! survives a round trip.

mod common {
    pub mod fixtures;
}

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::fixtures::T0;
use proptest::prelude::*;
use serde_json::{Map, Value};

use sealed_session::{
    Algorithm, Codec, Key, Keyring, OpenError, SealedCodec, SessionId, SessionState, SignedCodec,
    Timestamp,
};

/// One codec per algorithm plus the signed codec, all over rings that hold "k1" (primary)
/// and "k0", so that a flipped key id can also land on another key of the ring.
static CODECS: LazyLock<Vec<Box<dyn Codec>>> = LazyLock::new(|| {
    let mut v: Vec<Box<dyn Codec>> = Vec::new();
    for alg in Algorithm::ALL {
        let ring = Keyring::new([
            Key::generate("k1", alg).unwrap(),
            Key::generate("k0", alg).unwrap(),
        ])
        .unwrap();
        v.push(Box::new(SealedCodec::new(ring.clone())));
        if alg == Algorithm::Aes256Gcm {
            v.push(Box::new(SignedCodec::new(ring)));
        }
    }
    v
});

/// Valid tokens to mutate: one per codec, of a small session.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut st = SessionState::new(
        SessionId::from_bytes([7; 16]),
        T0,
        Timestamp::from_millis(1_764_086_400_000),
    );
    st.set_subject(Some("user-42".into()));
    st.insert("user", "alice").unwrap();
    st.insert("n", &42).unwrap();
    CODECS
        .iter()
        .map(|c| c.seal(&st, b"sid").unwrap())
        .collect()
});

fn codec_index() -> impl Strategy<Value = usize> {
    0..CODECS.len()
}

fn raw(i: usize) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(&TOKENS[i]).unwrap()
}

#[test]
fn unmodified_tokens_open() {
    for (c, t) in CODECS.iter().zip(TOKENS.iter()) {
        assert!(c.open(t, b"sid").is_ok(), "{}", c.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bit_flip_in_the_bytes_is_refused(i in codec_index(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut raw = raw(i);
        let p = pos.index(raw.len());
        raw[p] ^= 1 << bit;
        let res = CODECS[i].open(&URL_SAFE_NO_PAD.encode(&raw), b"sid");
        prop_assert!(res.is_err(), "flip of bit {} at byte {} accepted", bit, p);
    }

    #[test]
    fn any_bit_flip_in_the_text_is_refused(i in codec_index(), pos in any::<prop::sample::Index>(), bit in 0u8..7) {
        let mut text = TOKENS[i].clone().into_bytes();
        let p = pos.index(text.len());
        text[p] ^= 1 << bit;
        // A flipped ASCII byte is still ASCII, so still a `str`.
        let text = String::from_utf8(text).unwrap();
        prop_assert!(CODECS[i].open(&text, b"sid").is_err());
    }

    #[test]
    fn any_truncation_is_refused(i in codec_index(), cut in any::<prop::sample::Index>()) {
        let token = &TOKENS[i];
        let n = cut.index(token.len()); // 0..len: always shorter
        prop_assert!(CODECS[i].open(&token[..n], b"sid").is_err());
        let raw = raw(i);
        let n = cut.index(raw.len());
        prop_assert!(CODECS[i].open(&URL_SAFE_NO_PAD.encode(&raw[..n]), b"sid").is_err());
    }

    #[test]
    fn any_extension_is_refused(i in codec_index(), extra in prop::collection::vec(any::<u8>(), 1..64), text_extra in "[A-Za-z0-9_-]{1,8}") {
        let mut raw = raw(i);
        raw.extend_from_slice(&extra);
        prop_assert!(CODECS[i].open(&URL_SAFE_NO_PAD.encode(&raw), b"sid").is_err());
        let text = format!("{}{}", TOKENS[i], text_extra);
        prop_assert!(CODECS[i].open(&text, b"sid").is_err());
    }

    #[test]
    fn any_garbage_string_is_refused(i in codec_index(), s in any::<String>()) {
        prop_assert!(CODECS[i].open(&s, b"sid").is_err());
    }

    #[test]
    fn any_garbage_base64_is_refused(i in codec_index(), bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(CODECS[i].open(&URL_SAFE_NO_PAD.encode(&bytes), b"sid").is_err());
    }

    /// Garbage behind a valid header, so the input reaches key lookup and authentication.
    #[test]
    fn garbage_behind_a_valid_header_is_refused(i in codec_index(), key in prop::sample::select(vec!["k1", "k0", "k9"]), body in prop::collection::vec(any::<u8>(), 0..600)) {
        let kind = raw(i)[1];
        let mut raw = vec![1, kind, key.len() as u8];
        raw.extend_from_slice(key.as_bytes());
        raw.extend_from_slice(&body);
        let err = CODECS[i].open(&URL_SAFE_NO_PAD.encode(&raw), b"sid").unwrap_err();
        prop_assert!(
            matches!(err, OpenError::BadSeal | OpenError::Malformed(_) | OpenError::UnknownKeyId(_)),
            "{:?}", err
        );
        if key == "k9" {
            prop_assert_eq!(err, OpenError::UnknownKeyId("k9".into()));
        }
    }

    /// A token spliced from two valid tokens (header of one, body of another) is refused.
    #[test]
    fn spliced_tokens_are_refused(i in codec_index(), j in codec_index(), cut in any::<prop::sample::Index>()) {
        prop_assume!(i != j);
        let (a, b) = (raw(i), raw(j));
        let n = cut.index(a.len().min(b.len()));
        let spliced = [&a[..n], &b[n..]].concat();
        prop_assume!(spliced != b);
        prop_assert!(CODECS[j].open(&URL_SAFE_NO_PAD.encode(&spliced), b"sid").is_err());
    }

    #[test]
    fn any_session_round_trips(
        i in codec_index(),
        id in any::<[u8; 16]>(),
        times in any::<(u64, u64, u64)>(),
        subject in prop::option::of("\\PC{0,40}"),
        data in prop::collection::btree_map("\\PC{0,12}", prop_oneof![
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ], 0..8),
        purpose in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut st = SessionState::new(
            SessionId::from_bytes(id),
            Timestamp::from_millis(times.0),
            Timestamp::from_millis(times.2),
        );
        st.set_last_seen(Timestamp::from_millis(times.1));
        st.set_subject(subject.clone());
        for (k, v) in &data {
            st.insert(k, v).unwrap();
        }
        let token = CODECS[i].seal(&st, &purpose).unwrap();
        let opened = CODECS[i].open(&token, &purpose).unwrap();
        prop_assert!(!opened.needs_reissue());
        let mut back = opened.into_state();
        prop_assert_eq!(*back.id().as_bytes(), id);
        prop_assert_eq!(back.issued_at().as_millis(), times.0);
        prop_assert_eq!(back.last_seen().as_millis(), times.1);
        prop_assert_eq!(back.expires_at().as_millis(), times.2);
        prop_assert_eq!(back.subject(), subject.as_deref());
        let want: Map<String, Value> = data.into_iter().collect();
        prop_assert_eq!(back.data().unwrap(), &want);
    }
}
