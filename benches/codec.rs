//! Codec micro-benchmarks: seal and open of sessions of 200 B, 1 KiB and 3 KiB of data with
//! each AEAD and with signed tokens, beside the raw primitives a token is made of (serde_json,
//! the bare AEAD with an OsRng nonce, HMAC-SHA256, base64url), so the overhead shows as a
//! ratio measured in one run.
//!
//! ```text
//! cargo bench --bench codec                  # about 3 minutes; figures in docs/COMPARISON.md
//! cargo bench --bench codec -- roundtrip     # only the request-sized comparison
//! ```
//!
//! Groups:
//! - `seal/<codec>/<size>`, `open/<codec>/<size>`: one codec call. `open` authenticates and
//!   decodes the metadata; the data stays raw bytes until read.
//! - `primitive/<name>/<size>`: `json` = `serde_json::to_vec` + `from_slice` into a
//!   `Map<String, Value>`; `<aead>` = nonce from `OsRng` + encrypt + decrypt in place;
//!   `hmac` = sign + verify; `base64` = encode + decode of a token-sized buffer;
//!   `os_rng_nonce` = the nonce draw alone; `getrandom_nonce` = the draw a seal makes;
//!   `aws_lc_rand_nonce` = the same from AWS-LC's generator (`aws-lc` feature).
//! - `roundtrip_200B/<codec>/...`: what one request does with a 200-byte session. `get` =
//!   open + `get::<String>("user")` + seal of the renewed session; `data` = open + `data()`
//!   (the whole map parsed) + seal (the map serialized again); `primitives` = the same work
//!   done with the primitives alone (base64 decode, decrypt, JSON parse, JSON serialize,
//!   nonce + encrypt, base64 encode).

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::rand_core::{OsRng, RngCore};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305, XNonce};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use sealed_session::{
    Algorithm, Codec, Key, Keyring, SealedCodec, SessionId, SessionState, SignedCodec, Timestamp,
};

const SIZES: [(&str, usize); 3] = [("200B", 200), ("1KiB", 1024), ("3KiB", 3072)];
const PURPOSE: &[u8] = b"sid";
/// Header of a sealed token with key id "k1", then the purpose: the associated data.
const AD: &[u8] = b"\x01\x01\x02k1\x00\x03sid";
const T0: u64 = 1_764_000_000_000;

/// Session data whose JSON text is exactly `n` bytes: a few typical entries, then cart
/// items, then a padding string to hit the size.
fn data_of_size(n: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("user".into(), json!("alice"));
    m.insert("uid".into(), json!(48_213));
    m.insert("roles".into(), json!(["editor", "viewer"]));
    m.insert("csrf".into(), json!("q3Zp0vRk8sT1uW2xY4aB6c"));
    let mut i = 0;
    while serde_json::to_vec(&m).unwrap().len() + 60 < n {
        m.insert(
            format!("item{i:03}"),
            json!({"sku": 10_000 + i, "name": format!("product {i}"), "qty": i % 5 + 1}),
        );
        i += 1;
    }
    m.insert("pad".into(), json!(""));
    let len = serde_json::to_vec(&m).unwrap().len();
    assert!(len <= n, "base data of {len} bytes is over {n}");
    m.insert("pad".into(), json!("x".repeat(n - len)));
    let out = serde_json::to_vec(&m).unwrap();
    assert_eq!(out.len(), n);
    m
}

fn state_of_size(n: usize) -> SessionState {
    let mut st = SessionState::new(
        SessionId::from_bytes([7; 16]),
        Timestamp::from_millis(T0),
        Timestamp::from_millis(T0 + 86_400_000),
    );
    st.set_subject(Some("user-42".into()));
    for (k, v) in data_of_size(n) {
        st.insert(&k, &v).unwrap();
    }
    st
}

/// The payload a codec seals for `state_of_size(n)`: 41 fixed bytes, the subject, the JSON.
fn payload_len(n: usize) -> usize {
    41 + 2 + "user-42".len() + n
}

fn material(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8 * 13 + 1))
}

fn ring(alg: Algorithm) -> Keyring {
    Keyring::new([Key::new("k1", alg, &material(alg.name().len() as u8)).unwrap()]).unwrap()
}

/// Every codec under test, by name.
fn codecs() -> Vec<(&'static str, Box<dyn Codec>)> {
    let mut v: Vec<(&'static str, Box<dyn Codec>)> = Algorithm::ALL
        .into_iter()
        .map(|alg| {
            (
                alg.name(),
                Box::new(SealedCodec::new(ring(alg))) as Box<dyn Codec>,
            )
        })
        .collect();
    v.push((
        "signed",
        Box::new(SignedCodec::new(ring(Algorithm::Aes256Gcm))),
    ));
    v
}

fn bench_codecs(c: &mut Criterion) {
    for (name, codec) in codecs() {
        let mut seal = c.benchmark_group(format!("seal/{name}"));
        for (label, n) in SIZES {
            let st = state_of_size(n);
            seal.bench_function(label, |b| {
                b.iter(|| codec.seal(black_box(&st), PURPOSE).unwrap())
            });
        }
        seal.finish();
        let mut open = c.benchmark_group(format!("open/{name}"));
        for (label, n) in SIZES {
            let token = codec.seal(&state_of_size(n), PURPOSE).unwrap();
            open.bench_function(label, |b| {
                b.iter(|| codec.open(black_box(&token), PURPOSE).unwrap())
            });
        }
        open.finish();
    }
}

/// The bare AEADs, each built once like the key ring does.
enum Bare {
    Gcm(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
    XChaCha(Box<XChaCha20Poly1305>),
}

impl Bare {
    fn new(alg: Algorithm) -> Bare {
        let k = material(99);
        match alg {
            Algorithm::Aes256Gcm => Bare::Gcm(Box::new(Aes256Gcm::new_from_slice(&k).unwrap())),
            Algorithm::ChaCha20Poly1305 => {
                Bare::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(&k).unwrap()))
            }
            _ => Bare::XChaCha(Box::new(XChaCha20Poly1305::new_from_slice(&k).unwrap())),
        }
    }

    fn nonce_len(&self) -> usize {
        match self {
            Bare::XChaCha(_) => 24,
            _ => 12,
        }
    }

    /// Fills `nonce` from OsRng and encrypts `buf` in place, returning the tag.
    fn seal(&self, nonce: &mut [u8], buf: &mut [u8]) -> [u8; 16] {
        OsRng.fill_bytes(nonce);
        let tag = match self {
            Bare::Gcm(c) => c.encrypt_in_place_detached(GcmNonce::from_slice(nonce), AD, buf),
            Bare::ChaCha(c) => c.encrypt_in_place_detached(GcmNonce::from_slice(nonce), AD, buf),
            Bare::XChaCha(c) => c.encrypt_in_place_detached(XNonce::from_slice(nonce), AD, buf),
        }
        .unwrap();
        tag.into()
    }

    fn open(&self, nonce: &[u8], buf: &mut [u8], tag: &[u8]) {
        let tag = tag.into();
        match self {
            Bare::Gcm(c) => c.decrypt_in_place_detached(GcmNonce::from_slice(nonce), AD, buf, tag),
            Bare::ChaCha(c) => {
                c.decrypt_in_place_detached(GcmNonce::from_slice(nonce), AD, buf, tag)
            }
            Bare::XChaCha(c) => {
                c.decrypt_in_place_detached(XNonce::from_slice(nonce), AD, buf, tag)
            }
        }
        .unwrap();
    }
}

fn hmac_key() -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(&material(77)).unwrap()
}

fn bench_primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitive");
    // The nonce draw alone (a getrandom system call), part of every AEAD figure below.
    g.bench_function("os_rng_nonce", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            OsRng.fill_bytes(&mut nonce);
            nonce
        })
    });
    // The draw a seal makes (src/random.rs): `getrandom::fill`, through the C library's
    // `getrandom`, which glibc 2.41 and later answer from the vDSO without a system call.
    g.bench_function("getrandom_nonce", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).unwrap();
            nonce
        })
    });
    // AWS-LC's generator, the alternative src/random.rs weighs: without `/dev/sysgenid` it
    // reseeds from the OS before every call.
    #[cfg(feature = "aws-lc")]
    g.bench_function("aws_lc_rand_nonce", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            aws_lc_rs::rand::fill(&mut nonce).unwrap();
            nonce
        })
    });
    for (label, n) in SIZES {
        let map = data_of_size(n);
        g.bench_function(BenchmarkId::new("json", label), |b| {
            b.iter(|| {
                let bytes = serde_json::to_vec(black_box(&map)).unwrap();
                let back: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
                back
            })
        });
        let payload = vec![0x5au8; payload_len(n)];
        for alg in Algorithm::ALL {
            let aead = Bare::new(alg);
            let mut buf = payload.clone();
            let mut nonce = vec![0u8; aead.nonce_len()];
            g.bench_function(BenchmarkId::new(alg.name(), label), |b| {
                b.iter(|| {
                    let tag = aead.seal(&mut nonce, black_box(&mut buf));
                    aead.open(&nonce, &mut buf, &tag);
                })
            });
        }
        let mac = hmac_key();
        g.bench_function(BenchmarkId::new("hmac", label), |b| {
            b.iter(|| {
                let mut m = mac.clone();
                m.update(AD);
                m.update(black_box(&payload));
                let tag = m.finalize().into_bytes();
                let mut m = mac.clone();
                m.update(AD);
                m.update(&payload);
                m.verify_slice(&tag).unwrap();
            })
        });
        // A token's raw bytes: header, 12-byte nonce, payload, tag.
        let raw = vec![0xa5u8; 5 + 12 + payload.len() + 16];
        g.bench_function(BenchmarkId::new("base64", label), |b| {
            b.iter(|| {
                let text = URL_SAFE_NO_PAD.encode(black_box(&raw));
                URL_SAFE_NO_PAD.decode(text.as_bytes()).unwrap()
            })
        });
    }
    g.finish();
}

/// One request's worth of work on a 200-byte session, with the codec and with primitives.
fn bench_roundtrip(c: &mut Criterion) {
    let n = 200;
    let mut g = c.benchmark_group("roundtrip_200B");
    // Longer than the other groups: these are the figures the target is stated on.
    g.measurement_time(Duration::from_secs(4));
    let later = Timestamp::from_millis(T0 + 60_000);
    let map = data_of_size(n);
    let json = serde_json::to_vec(&map).unwrap();
    let plen = payload_len(n);
    // Each codec's variants and its primitives run back to back, so that a change in the
    // machine's load during the run moves both sides of a ratio alike.
    for (name, codec) in codecs() {
        let token = codec.seal(&state_of_size(n), PURPOSE).unwrap();
        g.bench_function(BenchmarkId::new(name, "get"), |b| {
            b.iter(|| {
                let mut st = codec.open(black_box(&token), PURPOSE).unwrap().into_state();
                let user: Option<String> = st.get("user").unwrap();
                black_box(user);
                st.set_last_seen(later);
                codec.seal(&st, PURPOSE).unwrap()
            })
        });
        g.bench_function(BenchmarkId::new(name, "data"), |b| {
            b.iter(|| {
                let mut st = codec.open(black_box(&token), PURPOSE).unwrap().into_state();
                black_box(st.data().unwrap().len());
                st.set_last_seen(later);
                codec.seal(&st, PURPOSE).unwrap()
            })
        });
        // The same work from primitives: base64 decode, authenticate, JSON parse, JSON
        // serialize, authenticate (with a fresh nonce when sealed), base64 encode.
        match Algorithm::ALL.into_iter().find(|a| a.name() == name) {
            Some(alg) => primitives_sealed(&mut g, alg, &json, plen),
            None => primitives_signed(&mut g, &json, plen),
        }
    }
    g.finish();
}

fn primitives_sealed(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    alg: Algorithm,
    json: &[u8],
    plen: usize,
) {
    let n = json.len();
    let aead = Bare::new(alg);
    // Token bytes: header (5) || nonce || payload (fixed fields, subject, JSON) || tag.
    let hl = 5 + aead.nonce_len();
    let mut raw = vec![0x5au8; hl + plen];
    raw[hl + plen - n..].copy_from_slice(json);
    let (head, body) = raw.split_at_mut(hl);
    let tag = aead.seal(&mut head[5..], body);
    raw.extend_from_slice(&tag);
    let text = URL_SAFE_NO_PAD.encode(&raw);
    g.bench_function(BenchmarkId::new(alg.name(), "primitives"), |b| {
        b.iter(|| {
            let mut raw = URL_SAFE_NO_PAD.decode(black_box(text.as_bytes())).unwrap();
            let (head, rest) = raw.split_at_mut(hl);
            let (body, tag) = rest.split_at_mut(plen);
            aead.open(&head[5..], body, tag);
            let m: Map<String, Value> = serde_json::from_slice(&body[plen - n..]).unwrap();
            let mut out = Vec::with_capacity(raw.len() + 64);
            out.extend_from_slice(&raw[..hl + plen - n]);
            serde_json::to_writer(&mut out, &m).unwrap();
            let (head, body) = out.split_at_mut(hl);
            let tag = aead.seal(&mut head[5..], body);
            out.extend_from_slice(&tag);
            URL_SAFE_NO_PAD.encode(&out)
        })
    });
}

fn primitives_signed(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    json: &[u8],
    plen: usize,
) {
    let n = json.len();
    let mac = hmac_key();
    // Token bytes: header (5) || payload || tag (32).
    let mut raw = vec![0x5au8; 5 + plen];
    raw[5 + plen - n..].copy_from_slice(json);
    let mut m = mac.clone();
    m.update(AD);
    m.update(&raw[5..]);
    raw.extend_from_slice(&m.finalize().into_bytes());
    let text = URL_SAFE_NO_PAD.encode(&raw);
    g.bench_function(BenchmarkId::new("signed", "primitives"), |b| {
        b.iter(|| {
            let raw = URL_SAFE_NO_PAD.decode(black_box(text.as_bytes())).unwrap();
            let (body, tag) = raw.split_at(5 + plen);
            let mut m = mac.clone();
            m.update(AD);
            m.update(&body[5..]);
            m.verify_slice(tag).unwrap();
            let map: Map<String, Value> = serde_json::from_slice(&body[5 + plen - n..]).unwrap();
            let mut out = Vec::with_capacity(raw.len() + 64);
            out.extend_from_slice(&body[..5 + plen - n]);
            serde_json::to_writer(&mut out, &map).unwrap();
            let mut m = mac.clone();
            m.update(AD);
            m.update(&out[5..]);
            out.extend_from_slice(&m.finalize().into_bytes());
            URL_SAFE_NO_PAD.encode(&out)
        })
    });
}

fn config() -> Criterion {
    // Short runs: the whole bench stays within a few minutes on a shared 2-core machine.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_codecs, bench_primitives, bench_roundtrip
}
criterion_main!(benches);
