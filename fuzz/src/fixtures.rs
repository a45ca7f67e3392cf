//! Fixed keys, sessions and the tokens made from them. Everything here is deterministic, so
//! the seed corpora written from it stay valid from one build to the next, and a target can
//! tell whether a token it opened is one of these (the only tokens that exist for its keys).

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use sealed_session::codec::SessionIdCodec;
use sealed_session::{
    Algorithm, Codec, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Key, Keyring, ManualClock,
    Policy, SealedCodec, SessionId, SessionState, SignedCodec, Timestamp,
};

/// The time of every request and every time check.
pub const NOW: Timestamp = Timestamp::from_millis(1_764_000_600_000);
/// Ten minutes before [`NOW`]: when most fixture sessions were issued.
pub const T0: Timestamp = Timestamp::from_millis(1_764_000_000_000);
const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;

/// The purpose of tokens in a `__Host-sid` cookie (the middleware's default name over HTTPS).
pub const COOKIE_PURPOSE: &[u8] = b"__Host-sid";
/// The purpose of bearer tokens (the cookie name without the Secure-only prefix).
pub const BEARER_PURPOSE: &[u8] = b"sid";

pub const JWT_ISSUER: &str = "https://app.example";
pub const JWT_AUDIENCE: &str = "app";

/// 32 bytes of key material that are not all equal.
fn material(seed: u8) -> [u8; 32] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7 + 1))
}

/// The three keys of the fixture ring, newest first: one per AEAD.
pub fn keys() -> Vec<Key> {
    vec![
        Key::new("k2", Algorithm::Aes256Gcm, &material(2)).expect("fixture key"),
        Key::new("k1", Algorithm::ChaCha20Poly1305, &material(1)).expect("fixture key"),
        Key::new("k0.old", Algorithm::XChaCha20Poly1305, &material(0)).expect("fixture key"),
    ]
}

/// The raw material of the primary key (for the target that signs payloads itself).
pub fn primary_material() -> [u8; 32] {
    material(2)
}

/// The ring every target opens with: `k2` primary, `k1` and `k0.old` still accepted.
pub fn ring() -> Keyring {
    Keyring::new(keys()).expect("fixture ring")
}

/// The ring with the key at `index` moved to the front, to make tokens under an older key.
fn ring_with_primary(index: usize) -> Keyring {
    let mut ks = keys();
    let k = ks.remove(index);
    ks.insert(0, k);
    Keyring::new(ks).expect("fixture ring")
}

/// What a session holds, in a form that compares with `==`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: [u8; 16],
    pub issued_at: u64,
    pub last_seen: u64,
    pub expires_at: u64,
    pub subject: Option<String>,
    /// The binding as section 7 encodes it (kind byte first).
    pub binding: Option<Vec<u8>>,
    /// `None` when the data does not parse as a JSON object.
    pub data: Option<Map<String, Value>>,
}

impl Snapshot {
    pub fn of(state: &SessionState) -> Snapshot {
        let mut s = state.clone();
        Snapshot {
            id: *state.id().as_bytes(),
            issued_at: state.issued_at().as_millis(),
            last_seen: state.last_seen().as_millis(),
            expires_at: state.expires_at().as_millis(),
            subject: state.subject().map(str::to_owned),
            binding: state.binding().map(binding_bytes),
            data: s.data().ok().cloned(),
        }
    }
}

/// A binding as `docs/FORMAT.md` section 7 encodes it.
fn binding_bytes(b: &sealed_session::Binding) -> Vec<u8> {
    match b {
        sealed_session::Binding::Dpop { jkt } => [&[1u8][..], jkt].concat(),
        sealed_session::Binding::Device(k) => {
            let len = (k.jwk().len() as u16).to_be_bytes();
            [&[2u8][..], k.id(), &len, k.jwk().as_bytes()].concat()
        }
        _ => Vec::new(),
    }
}

fn state(
    id: u8,
    issued: u64,
    seen: u64,
    expires: u64,
    subject: Option<&str>,
    data: Value,
) -> SessionState {
    let mut s = SessionState::new(
        SessionId::from_bytes([id; 16]),
        Timestamp::from_millis(issued),
        Timestamp::from_millis(expires),
    );
    s.set_last_seen(Timestamp::from_millis(seen));
    s.set_subject(subject.map(str::to_owned));
    if let Value::Object(m) = data {
        for (k, v) in m {
            s.insert(&k, &v).expect("fixture data");
        }
    }
    s
}

/// The fixture sessions. Under the default policy (24 h, 1 h idle, renewal after 15 min) at
/// [`NOW`]: 0 to 2 are live, 3 is past its deadline, 4 is idle, 5 is due for renewal, 6 is too
/// large for one cookie, 7 is revoked in the middleware's denylist.
pub static STATES: LazyLock<Vec<SessionState>> = LazyLock::new(|| {
    let t0 = T0.as_millis();
    let now = NOW.as_millis();
    vec![
        state(0x10, t0, t0, t0 + 24 * HOUR, None, json!({})),
        state(
            0x11,
            t0,
            t0,
            t0 + 24 * HOUR,
            Some("user-42"),
            json!({"user": "alice", "n": 42, "cart": [1, 2, {"x": null}]}),
        ),
        state(
            0x12,
            t0,
            now - MIN,
            t0 + 24 * HOUR,
            Some("é"),
            json!({"é\"\\n": "x}\"]{", "nested": {"a": [{}]}, "f": 1.5e3, "z": null, "user": "dave"}),
        ),
        state(
            0x13,
            t0 - 48 * HOUR,
            t0 - 25 * HOUR,
            t0 - 24 * HOUR,
            None,
            json!({"user": "bob"}),
        ),
        state(
            0x14,
            t0 - 3 * HOUR,
            now - 2 * HOUR,
            t0 + 20 * HOUR,
            None,
            json!({"user": "carol"}),
        ),
        state(
            0x15,
            t0 - HOUR,
            now - 20 * MIN,
            t0 + 20 * HOUR,
            Some("user-7"),
            json!({"user": "erin"}),
        ),
        state(
            0x16,
            t0,
            t0,
            t0 + 24 * HOUR,
            None,
            json!({"user": "frank", "blob": "x".repeat(5000)}),
        ),
        state(
            0x17,
            t0,
            t0,
            t0 + 24 * HOUR,
            None,
            json!({"user": "mallory"}),
        ),
    ]
});

/// Index in [`STATES`] of the session revoked in the middleware targets' denylist.
pub const REVOKED: usize = 7;

/// A known token: what it holds and how it must open.
#[derive(Clone, Debug)]
pub struct Known {
    pub state: usize,
    pub key_id: &'static str,
    pub primary: bool,
}

const KEY_IDS: [&str; 3] = ["k2", "k1", "k0.old"];

/// Every sealed token there is for [`ring`] and `purpose`: each fixture session under each key,
/// with a fixed nonce (a test-vector helper; never done in production).
pub fn sealed_tokens(purpose: &[u8]) -> HashMap<String, Known> {
    let mut out = HashMap::new();
    for (k, key_id) in KEY_IDS.iter().enumerate() {
        let codec = SealedCodec::new(ring_with_primary(k));
        let nonce_len = codec.keyring().primary_algorithm().nonce_len();
        for (i, st) in STATES.iter().enumerate() {
            let nonce: Vec<u8> = (0..nonce_len).map(|b| (b + i * 3 + k) as u8).collect();
            let token = codec
                .seal_with_nonce_for_test_vectors(st, purpose, &nonce)
                .expect("fixture seal");
            out.insert(
                token,
                Known {
                    state: i,
                    key_id,
                    primary: k == 0,
                },
            );
        }
    }
    out
}

/// Every signed token there is for [`ring`] and `purpose`.
pub fn signed_tokens(purpose: &[u8]) -> HashMap<String, Known> {
    let mut out = HashMap::new();
    for (k, key_id) in KEY_IDS.iter().enumerate() {
        let codec = SignedCodec::new(ring_with_primary(k));
        for (i, st) in STATES.iter().enumerate() {
            out.insert(
                codec.seal(st, purpose).expect("fixture seal"),
                Known {
                    state: i,
                    key_id,
                    primary: k == 0,
                },
            );
        }
    }
    out
}

/// Every signed session id there is for [`ring`] and `purpose`.
pub fn signed_ids(purpose: &[u8]) -> HashMap<String, Known> {
    let mut out = HashMap::new();
    for (k, key_id) in KEY_IDS.iter().enumerate() {
        let codec = SessionIdCodec::new(ring_with_primary(k));
        for (i, st) in STATES.iter().enumerate() {
            out.insert(
                codec.sign(&st.id(), purpose),
                Known {
                    state: i,
                    key_id,
                    primary: k == 0,
                },
            );
        }
    }
    out
}

/// The binary payload of `state` (the record a store keeps), cut out of a signed token:
/// header (3 + key id), payload, 32-byte tag (`docs/FORMAT.md`, section 6).
pub fn record(state: &SessionState) -> Vec<u8> {
    let token = SignedCodec::new(ring())
        .seal(state, b"record")
        .expect("fixture seal");
    let raw = URL_SAFE_NO_PAD.decode(token).expect("base64url");
    let start = 3 + usize::from(raw[2]);
    raw[start..raw.len() - 32].to_vec()
}

// ---- JWT ----

const HS256_SECRET: &str = include_str!("../../tests/vectors/jwt/hs256.key.b64");
const HS512_SECRET: &str = include_str!("../../tests/vectors/jwt/hs512.key.b64");
pub const EDDSA_PEM: &str = include_str!("../../tests/vectors/jwt/eddsa.key.pem");
pub const EDDSA_PUBLIC_PEM: &str = include_str!("../../tests/vectors/jwt/eddsa.pub.pem");
const ES256_PEM: &str = include_str!("../../tests/vectors/jwt/es256.key.pem");

/// Which JWT key ring a target uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtRing {
    /// `hs256` (HS256, primary) and `hs512` (HS512).
    Hmac,
    /// `ed` (EdDSA, primary) and `es` (ES256).
    Asymmetric,
}

fn jwt_keys(which: JwtRing) -> Vec<JwtKey> {
    match which {
        JwtRing::Hmac => vec![
            JwtKey::hmac_base64("hs256", JwtAlgorithm::HS256, HS256_SECRET).expect("hs256"),
            JwtKey::hmac_base64("hs512", JwtAlgorithm::HS512, HS512_SECRET).expect("hs512"),
        ],
        JwtRing::Asymmetric => vec![
            JwtKey::from_pem("ed", JwtAlgorithm::EdDSA, EDDSA_PEM.as_bytes()).expect("eddsa"),
            JwtKey::from_pem("es", JwtAlgorithm::ES256, ES256_PEM.as_bytes()).expect("es256"),
        ],
    }
}

/// The JWT codec of the targets: issuer and audience required, the default policy's idle
/// timeout, the clock stopped at [`NOW`].
pub fn jwt_codec(which: JwtRing) -> JwtCodec {
    jwt_codec_over(JwtKeyring::new(jwt_keys(which)).expect("jwt ring"))
}

fn jwt_codec_over(ring: JwtKeyring) -> JwtCodec {
    JwtCodec::builder(ring)
        .issuer(JWT_ISSUER)
        .audience(JWT_AUDIENCE)
        .build()
        .expect("jwt codec")
        .policy(&Policy::default())
        .clock(ManualClock::new(NOW))
}

/// A JWT's signing input (everything before the last `.`), which is what a signature covers.
pub fn signing_input(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(m, _)| m)
}

/// What a known JWT holds. `state` is `None` for foreign tokens (minted with the key by other
/// software, with registered claims only); those are compared with what opened at start-up.
#[derive(Clone, Debug)]
pub struct KnownJwt {
    pub token: String,
    pub state: Option<usize>,
    pub kid: &'static str,
}

/// Every JWT there is for the ring `which`, by signing input: each fixture session under
/// each key, and a few foreign tokens.
pub fn jwt_tokens(which: JwtRing) -> HashMap<String, KnownJwt> {
    let kids: [&'static str; 2] = match which {
        JwtRing::Hmac => ["hs256", "hs512"],
        JwtRing::Asymmetric => ["ed", "es"],
    };
    let mut out = HashMap::new();
    for (k, kid) in kids.iter().enumerate() {
        let mut ks = jwt_keys(which);
        let key = ks.remove(k);
        ks.insert(0, key);
        let codec = jwt_codec_over(JwtKeyring::new(ks).expect("jwt ring"));
        for (i, st) in STATES.iter().enumerate() {
            let Ok(token) = codec.seal(st, b"") else {
                continue; // too large for a JWT (the 5000-byte blob is not: 8 KiB)
            };
            let m = signing_input(&token).expect("three segments").to_owned();
            out.insert(
                m,
                KnownJwt {
                    token,
                    state: Some(i),
                    kid,
                },
            );
        }
        for claims in foreign_claims() {
            let token = foreign_token(which, k, &claims);
            let m = signing_input(&token).expect("three segments").to_owned();
            out.insert(
                m,
                KnownJwt {
                    token,
                    state: None,
                    kid,
                },
            );
        }
    }
    out
}

/// Claims as another service holding the key might write them.
fn foreign_claims() -> Vec<Value> {
    let iat = T0.as_millis() / 1000;
    vec![
        json!({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": iat, "exp": iat + 3000,
               "jti": "AAECAwQFBgcICQoLDA0ODw", "sub": "svc"}),
        json!({"iss": JWT_ISSUER, "aud": [JWT_AUDIENCE, "other"], "iat": iat, "exp": iat + 3000,
               "nbf": iat, "jti": "EBESExQVFhcYGRobHB0eHw",
               "data": {"user": "ivan", "user2": {"deep": [1, 2, 3]}}}),
        json!({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": iat, "exp": iat + 3000,
               "jti": "ICEiIyQlJicoKSorLC0uLw", "data": null,
               "sess": {"v": 1, "iat_ms": T0.as_millis(), "seen_ms": T0.as_millis(),
                        "deadline_ms": T0.as_millis() + 24 * HOUR}}),
    ]
}

fn foreign_token(which: JwtRing, k: usize, claims: &Value) -> String {
    use jsonwebtoken::{Algorithm as A, EncodingKey, Header};
    let (alg, kid, key) = match (which, k) {
        (JwtRing::Hmac, 0) => (
            A::HS256,
            "hs256",
            EncodingKey::from_secret(&decode_secret(HS256_SECRET)),
        ),
        (JwtRing::Hmac, _) => (
            A::HS512,
            "hs512",
            EncodingKey::from_secret(&decode_secret(HS512_SECRET)),
        ),
        (JwtRing::Asymmetric, 0) => (
            A::EdDSA,
            "ed",
            EncodingKey::from_ed_pem(EDDSA_PEM.as_bytes()).expect("eddsa"),
        ),
        (JwtRing::Asymmetric, _) => (
            A::ES256,
            "es",
            EncodingKey::from_ec_pem(ES256_PEM.as_bytes()).expect("es256"),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("foreign token")
}

fn decode_secret(b64: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(b64.trim().trim_end_matches('='))
        .expect("fixture secret")
}

/// Forged JWTs for the seed corpus: refused, but close to what attacks look like.
pub fn jwt_forgeries(which: JwtRing) -> Vec<String> {
    use jsonwebtoken::{Algorithm as A, EncodingKey, Header};
    let genuine = jwt_tokens(which)
        .into_values()
        .find(|k| k.state == Some(1))
        .expect("a fixture token")
        .token;
    let mut parts = genuine.split('.');
    let (_, claims, sig) = (parts.next(), parts.next().unwrap_or(""), parts.next());
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let kid = match which {
        JwtRing::Hmac => "hs256",
        JwtRing::Asymmetric => "ed",
    };
    let mut out = vec![
        format!("{}.{claims}.", b64(json!({"alg": "none", "kid": kid}))),
        format!(
            "{}.{claims}.{}",
            b64(json!({"alg": "HS256", "kid": kid, "crit": ["b64"]})),
            sig.unwrap_or("")
        ),
        format!("{}.{claims}.", b64(json!({"alg": "HS256", "kid": "nope"}))),
    ];
    // Algorithm confusion: an HS256 token "signed" with the public key as the secret.
    let mut header = Header::new(A::HS256);
    header.kid = Some(kid.to_owned());
    let claims_json: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims)
            .expect("fixture claims are base64url"),
    )
    .expect("fixture claims are JSON");
    if let Ok(t) = jsonwebtoken::encode(
        &header,
        &claims_json,
        &EncodingKey::from_secret(EDDSA_PUBLIC_PEM.as_bytes()),
    ) {
        out.push(t);
    }
    out
}
