//! A DPoP client for tests, written from the standards, not from the server code, so that
//! the two cannot share a mistake. It signs with RustCrypto (`p256`, `ed25519-dalek`), not
//! with the `jsonwebtoken` / aws-lc-rs code the server verifies with, and builds the JWS
//! compact serialization by hand.
//!
//! What it follows:
//!
//! - RFC 9449 (DPoP) §4.1 (the `DPoP` header is one JWT), §4.2 (proof syntax: header `typ`
//!   `dpop+jwt`, `alg`, `jwk` without private members; claims `jti` with at least 96 bits of
//!   randomness, `htm`, `htu` without query and fragment, `iat`, `ath` when an access token
//!   goes with the proof, `nonce` when the server gave one), §7.1 (the `DPoP` authentication
//!   scheme and its `WWW-Authenticate` challenge: `error`, `error_description`, `algs`),
//!   §8 (authorization server nonce: 400 with `use_dpop_nonce` and a `DPoP-Nonce` header;
//!   at most one such header), §8.1 (nonce syntax `1*NQCHAR`), §8.2 (a new nonce on a 200),
//!   §9 (resource server nonce: 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"`),
//!   §11.1 (`jti` uniqueness).
//! - RFC 7638 (JWK thumbprint) §3.2 (the required members only: `e`, `kty`, `n` for RSA;
//!   `crv`, `kty`, `x`, `y` for EC), §3.3 (lexicographic order, no whitespace, UTF-8) and the
//!   §3.1 worked example; RFC 8037 §2 adds `crv`, `kty`, `x` for OKP.
//! - RFC 7515 (JWS) §7.1 (compact serialization: `BASE64URL(header) '.' BASE64URL(payload)
//!   '.' BASE64URL(signature)`, no padding, §2) and §4.1.3 (`jwk` header parameter).
//! - RFC 7518 (JWA) §3.4 (ES256: the signature is the 64 bytes `R || S`, not DER), §3.2 (HS256,
//!   used here only as an attack), §6.2.1 (EC public key members, coordinates in full 32 bytes).
//! - RFC 8037 §2 (OKP keys, `crv` `Ed25519`, `x` the 32-byte public key, `d` the seed) and §3.1
//!   (`alg` `EdDSA`). RFC 9864 later registered the fully-specified name `Ed25519` for the same
//!   signature; the `dpop` npm package sends that name. [`ProofSpec::alg`] makes it.
//! - RFC 9110 §11.6.1 and §11.2 (a `WWW-Authenticate` value is a list of challenges:
//!   `scheme [ token68 / #auth-param ]`, parameter values a token or a quoted-string,
//!   scheme and parameter names case-insensitive), RFC 2104 (HMAC, for the HS256 attack).
//!
//! Use from a test file with `mod common { pub mod dpop_client; }`.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// base64url without padding (RFC 7515 §2).
pub fn b64u(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The inverse of [`b64u`]: strict base64url without padding.
pub fn b64u_decode(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("not base64url: {e}"))
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `ath` (RFC 9449 §4.2): base64url of the SHA-256 of the ASCII access token.
pub fn ath(access_token: &str) -> String {
    b64u(Sha256::digest(access_token.as_bytes()))
}

/// `htu` (RFC 9449 §4.2): the target URI without its query and fragment. The query starts at
/// the first `?` and the fragment at the first `#` (RFC 3986 §3); whichever comes first ends
/// the `htu`. Nothing else is changed: no case, default-port or percent-encoding
/// normalization. RFC 9449 §4.3 asks servers (SHOULD) to normalize per RFC 3986 §6.2.2-6.2.3
/// before comparing, so a test can send an unnormalized `htu` through [`ProofSpec::new`].
pub fn htu_of(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].to_owned()
}

/// A fresh `jti` (RFC 9449 §4.2, §11.1): 128 random bits from the OS, base64url (22 chars).
pub fn fresh_jti() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    b64u(bytes)
}

/// HMAC-SHA-256 (RFC 2104), for the HS256 attack knob only.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The RFC 7638 §3.2-§3.3 canonical JSON of a JWK: only the members the key type requires
/// (RSA `e kty n`, EC `crv kty x y`, OKP `crv kty x` per RFC 8037 §2, oct `k kty`), in
/// lexicographic order, no whitespace. Every required member must be a string.
pub fn canonical_jwk(jwk: &Value) -> Result<String, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("no string kty")?;
    let required: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        other => return Err(format!("unknown kty {other:?}")),
    };
    let mut out = String::from("{");
    for (i, name) in required.iter().enumerate() {
        let value = jwk
            .get(*name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{kty} JWK without string member {name:?}"))?;
        if i > 0 {
            out.push(',');
        }
        // serde_json escapes only what JSON requires (RFC 7638 §3.3 wants no other escaping).
        out.push_str(&serde_json::to_string(name).unwrap());
        out.push(':');
        out.push_str(&serde_json::to_string(value).unwrap());
    }
    out.push('}');
    Ok(out)
}

/// The RFC 7638 SHA-256 thumbprint of a JWK, base64url: the `jkt` of RFC 9449 §6.1.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, String> {
    Ok(b64u(Sha256::digest(canonical_jwk(jwk)?.as_bytes())))
}

/// The signature algorithms of a DPoP key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4), an EC JWK with `crv` `P-256`.
    Es256,
    /// Ed25519 (RFC 8037 §3.1, `alg` `EdDSA`), an OKP JWK with `crv` `Ed25519`.
    EdDsa,
}

impl Alg {
    /// Both algorithms, for tests that run on each.
    pub const ALL: [Alg; 2] = [Alg::Es256, Alg::EdDsa];

    /// The JWS `alg` value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

#[derive(Clone)]
enum Secret {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

/// A DPoP key pair held by the client.
#[derive(Clone)]
pub struct DpopKey {
    secret: Secret,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("DpopKey")
            .field("alg", &self.alg_name())
            .field("jkt", &self.thumbprint())
            .finish()
    }
}

impl DpopKey {
    /// A new random key from the OS generator.
    pub fn generate(alg: Alg) -> DpopKey {
        let secret = match alg {
            Alg::Es256 => Secret::Es256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            Alg::EdDsa => Secret::EdDsa(ed25519_dalek::SigningKey::generate(&mut OsRng)),
        };
        DpopKey { secret }
    }

    /// An ES256 key from its 32-byte private scalar (the JWK `d`), e.g. a published example.
    pub fn from_p256_secret(d: &[u8]) -> DpopKey {
        let key = p256::ecdsa::SigningKey::from_slice(d).expect("a P-256 private scalar");
        DpopKey {
            secret: Secret::Es256(key),
        }
    }

    /// An Ed25519 key from its 32-byte seed (the JWK `d` of RFC 8037 §2).
    pub fn from_ed25519_seed(d: &[u8; 32]) -> DpopKey {
        DpopKey {
            secret: Secret::EdDsa(ed25519_dalek::SigningKey::from_bytes(d)),
        }
    }

    pub fn alg(&self) -> Alg {
        match self.secret {
            Secret::Es256(_) => Alg::Es256,
            Secret::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The JWS `alg` this key signs with: `ES256` or `EdDSA`.
    pub fn alg_name(&self) -> &'static str {
        self.alg().name()
    }

    /// The public JWK (RFC 7518 §6.2.1, RFC 8037 §2): public members only.
    pub fn public_jwk(&self) -> Value {
        match &self.secret {
            Secret::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64u(point.x().expect("uncompressed point")),
                    "y": b64u(point.y().expect("uncompressed point")),
                })
            }
            Secret::EdDsa(key) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64u(key.verifying_key().to_bytes()),
            }),
        }
    }

    /// The JWK with the private member `d` too: what a proof's `jwk` MUST NOT be (RFC 9449
    /// §4.2, §4.3 check 7).
    pub fn private_jwk(&self) -> Value {
        let mut jwk = self.public_jwk();
        let d = match &self.secret {
            Secret::Es256(key) => b64u(key.to_bytes()),
            Secret::EdDsa(key) => b64u(key.to_bytes()),
        };
        jwk["d"] = Value::String(d);
        jwk
    }

    /// The raw public key: the SEC1 uncompressed point for ES256, the 32 bytes for Ed25519.
    /// A classic alg-confusion attack uses it as an HMAC secret.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.secret {
            Secret::Es256(key) => key
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            Secret::EdDsa(key) => key.verifying_key().to_bytes().to_vec(),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint of [`Self::public_jwk`], base64url (the `jkt`).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.public_jwk()).expect("own JWK is complete")
    }

    /// The JWS signature of `signing_input` in its JWS form: `R || S` (64 bytes) for ES256
    /// (RFC 7518 §3.4), the 64-byte signature for Ed25519 (RFC 8037 §3.1).
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match &self.secret {
            Secret::Es256(key) => {
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(key, signing_input);
                signature.to_bytes().to_vec()
            }
            Secret::EdDsa(key) => key.sign(signing_input).to_bytes().to_vec(),
        }
    }

    /// An ES256 signature in ASN.1 DER, which JWS does not allow (RFC 7518 §3.4): a server
    /// must refuse it. Panics for an Ed25519 key, whose signatures have no DER form.
    pub fn sign_der(&self, signing_input: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::Es256(key) => {
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(key, signing_input);
                signature.to_der().as_bytes().to_vec()
            }
            Secret::EdDsa(_) => panic!("an Ed25519 signature has no DER form"),
        }
    }

    /// A JWS in compact serialization (RFC 7515 §7.1) of this exact header JSON text and
    /// payload bytes, signed with this key.
    pub fn jws_compact(&self, header_json: &str, payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", b64u(header_json), b64u(payload));
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64u(signature))
    }

    /// A DPoP proof as `spec` describes it (a valid one unless an attack knob is set).
    pub fn proof(&self, spec: &ProofSpec) -> String {
        let alg = spec.alg.clone().unwrap_or_else(|| match spec.signature {
            Sig::Hmac(_) => "HS256".to_owned(),
            _ => self.alg_name().to_owned(),
        });
        let mut header = Map::new();
        header.insert(
            "typ".into(),
            Value::String(spec.typ.clone().unwrap_or_else(|| "dpop+jwt".into())),
        );
        header.insert("alg".into(), Value::String(alg));
        match &spec.jwk {
            JwkHeader::Public => {
                header.insert("jwk".into(), self.public_jwk());
            }
            JwkHeader::WithPrivate => {
                header.insert("jwk".into(), self.private_jwk());
            }
            JwkHeader::Omit => {}
            JwkHeader::Replace(jwk) => {
                header.insert("jwk".into(), jwk.clone());
            }
        }
        for (name, value) in &spec.extra_header {
            header.insert(name.clone(), value.clone());
        }
        for name in &spec.omit_header {
            header.remove(name);
        }

        let mut claims = Map::new();
        claims.insert(
            "jti".into(),
            Value::String(spec.jti.clone().unwrap_or_else(fresh_jti)),
        );
        claims.insert("htm".into(), Value::String(spec.htm.clone()));
        claims.insert("htu".into(), Value::String(spec.htu.clone()));
        claims.insert("iat".into(), json!(spec.iat.unwrap_or_else(now_secs)));
        if let Some(token) = &spec.access_token {
            claims.insert("ath".into(), Value::String(ath(token)));
        }
        if let Some(nonce) = &spec.nonce {
            claims.insert("nonce".into(), Value::String(nonce.clone()));
        }
        for (name, value) in &spec.extra_claims {
            claims.insert(name.clone(), value.clone());
        }
        for name in &spec.omit_claims {
            claims.remove(name);
        }

        let signing_input = format!(
            "{}.{}",
            b64u(serde_json::to_vec(&Value::Object(header)).unwrap()),
            b64u(serde_json::to_vec(&Value::Object(claims)).unwrap()),
        );
        let signature = match &spec.signature {
            Sig::Valid => b64u(self.sign(signing_input.as_bytes())),
            Sig::Der => b64u(self.sign_der(signing_input.as_bytes())),
            Sig::Hmac(secret) => b64u(hmac_sha256(secret, signing_input.as_bytes())),
            Sig::Empty => String::new(),
            Sig::Garbage => {
                let mut bytes = [0u8; 64];
                OsRng.fill_bytes(&mut bytes);
                b64u(bytes)
            }
            Sig::Literal(text) => text.clone(),
        };
        format!("{signing_input}.{signature}")
    }

    /// A valid proof for a request: `htm`, `htu` = [`htu_of`]`(url)`, `iat` = `now_secs`,
    /// `ath` of the access token if any, the server's nonce if any, a fresh `jti`.
    pub fn proof_for(
        &self,
        htm: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now_secs: u64,
    ) -> String {
        let mut spec = ProofSpec::for_url(htm, url).iat(now_secs);
        spec.access_token = access_token.map(str::to_owned);
        spec.nonce = nonce.map(str::to_owned);
        self.proof(&spec)
    }
}

/// What goes in the proof's `jwk` header parameter.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum JwkHeader {
    /// The signing key's public JWK (valid).
    #[default]
    Public,
    /// The signing key's JWK with its private member `d` (RFC 9449 §4.3 check 7 refuses it).
    WithPrivate,
    /// No `jwk` at all.
    Omit,
    /// Another JWK (e.g. another key's public JWK) while signing with this key.
    Replace(Value),
}

/// The proof's signature segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Sig {
    /// The JWS signature by the key (valid).
    #[default]
    Valid,
    /// ES256 only: the signature in ASN.1 DER instead of `R || S` (RFC 7518 §3.4 forbids).
    Der,
    /// HMAC-SHA-256 with this secret (the `alg` becomes `HS256` unless overridden).
    Hmac(Vec<u8>),
    /// An empty signature segment (`header.payload.`).
    Empty,
    /// 64 random bytes: well-formed, wrong.
    Garbage,
    /// This exact text as the signature segment.
    Literal(String),
}

/// One DPoP proof to make, builder style. [`ProofSpec::new`] describes a valid proof; the
/// other setters are the attack knobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProofSpec {
    /// `htm`: the HTTP method.
    pub htm: String,
    /// `htu`, exactly as given (see [`ProofSpec::for_url`] to strip query and fragment).
    pub htu: String,
    /// The access token the proof goes with: gives the `ath` claim.
    pub access_token: Option<String>,
    /// The server's `DPoP-Nonce`: gives the `nonce` claim.
    pub nonce: Option<String>,
    /// `iat` in seconds; `None` is now (an injected clock, or a stale or future proof).
    pub iat: Option<u64>,
    /// `jti`; `None` is a fresh random one (a given one makes a replay).
    pub jti: Option<String>,
    /// The `typ` header value; `None` is `dpop+jwt`.
    pub typ: Option<String>,
    /// The `alg` header value; `None` is the key's own (`HS256` with [`Sig::Hmac`]).
    pub alg: Option<String>,
    /// The `jwk` header parameter.
    pub jwk: JwkHeader,
    /// The signature segment.
    pub signature: Sig,
    /// Header parameters added (or replacing the standard ones), in order.
    pub extra_header: Vec<(String, Value)>,
    /// Header parameters removed, after the additions.
    pub omit_header: Vec<String>,
    /// Claims added (or replacing the standard ones), in order.
    pub extra_claims: Vec<(String, Value)>,
    /// Claims removed, after the additions.
    pub omit_claims: Vec<String>,
}

impl ProofSpec {
    /// A valid proof for this method and `htu` (taken as given).
    pub fn new(htm: &str, htu: &str) -> ProofSpec {
        ProofSpec {
            htm: htm.to_owned(),
            htu: htu.to_owned(),
            ..ProofSpec::default()
        }
    }

    /// A valid proof for this method and request URL: `htu` is [`htu_of`]`(url)`.
    pub fn for_url(htm: &str, url: &str) -> ProofSpec {
        ProofSpec::new(htm, &htu_of(url))
    }

    pub fn access_token(mut self, token: &str) -> Self {
        self.access_token = Some(token.to_owned());
        self
    }

    pub fn nonce(mut self, nonce: &str) -> Self {
        self.nonce = Some(nonce.to_owned());
        self
    }

    pub fn iat(mut self, secs: u64) -> Self {
        self.iat = Some(secs);
        self
    }

    pub fn jti(mut self, jti: &str) -> Self {
        self.jti = Some(jti.to_owned());
        self
    }

    pub fn typ(mut self, typ: &str) -> Self {
        self.typ = Some(typ.to_owned());
        self
    }

    /// The `alg` header value, whatever the key signs with (e.g. `none`, `HS256`, `RS256`,
    /// or `Ed25519`, RFC 9864's name for what an Ed25519 key signs, as the `dpop` npm
    /// package sends).
    pub fn alg(mut self, alg: &str) -> Self {
        self.alg = Some(alg.to_owned());
        self
    }

    /// `alg` `none` with an empty signature (RFC 7519 §6's unsecured JWT).
    pub fn alg_none(self) -> Self {
        self.alg("none").signature(Sig::Empty)
    }

    /// Signed with HMAC-SHA-256 under `secret`, `alg` `HS256`.
    pub fn hmac(self, secret: &[u8]) -> Self {
        self.signature(Sig::Hmac(secret.to_vec()))
    }

    pub fn jwk(mut self, jwk: JwkHeader) -> Self {
        self.jwk = jwk;
        self
    }

    /// The `jwk` header with the private member `d`.
    pub fn private_jwk(self) -> Self {
        self.jwk(JwkHeader::WithPrivate)
    }

    /// No `jwk` header.
    pub fn without_jwk(self) -> Self {
        self.jwk(JwkHeader::Omit)
    }

    /// `other`'s public JWK in the header while this key signs.
    pub fn jwk_of(self, other: &DpopKey) -> Self {
        self.jwk(JwkHeader::Replace(other.public_jwk()))
    }

    pub fn signature(mut self, signature: Sig) -> Self {
        self.signature = signature;
        self
    }

    pub fn header_param(mut self, name: &str, value: Value) -> Self {
        self.extra_header.push((name.to_owned(), value));
        self
    }

    pub fn without_header_param(mut self, name: &str) -> Self {
        self.omit_header.push(name.to_owned());
        self
    }

    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.extra_claims.push((name.to_owned(), value));
        self
    }

    pub fn without_claim(mut self, name: &str) -> Self {
        self.omit_claims.push(name.to_owned());
        self
    }
}

/// A proof taken apart (no check but the JWS syntax).
#[derive(Clone, Debug)]
pub struct DecodedProof {
    pub header: Value,
    pub claims: Value,
    /// `BASE64URL(header) '.' BASE64URL(payload)`, what the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

/// Splits a compact JWS into its JSON header, JSON claims and signature bytes.
pub fn decode(proof: &str) -> Result<DecodedProof, String> {
    let parts: Vec<&str> = proof.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(format!("{} segments, not 3", parts.len()));
    };
    let json = |segment: &str| -> Result<Value, String> {
        serde_json::from_slice(&b64u_decode(segment)?).map_err(|e| format!("not JSON: {e}"))
    };
    Ok(DecodedProof {
        header: json(header)?,
        claims: json(claims)?,
        signing_input: format!("{header}.{claims}"),
        signature: b64u_decode(signature)?,
    })
}

/// Verifies a JWS signature with a public JWK, for `ES256` (P-256, `R || S`) and
/// `EdDSA`/`Ed25519` (OKP `Ed25519`). Nothing else is accepted.
pub fn verify_with_jwk(
    alg: &str,
    jwk: &Value,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let member = |name: &str| -> Result<Vec<u8>, String> {
        b64u_decode(
            jwk.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("JWK without {name}"))?,
        )
    };
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match (alg, kty, crv) {
        ("ES256", Some("EC"), Some("P-256")) => {
            use p256::ecdsa::signature::Verifier as _;
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates are not 32 bytes".into());
            }
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|e| format!("not a P-256 point: {e}"))?;
            if signature.len() != 64 {
                return Err(format!("ES256 signature of {} bytes", signature.len()));
            }
            let signature = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|e| format!("bad ES256 signature: {e}"))?;
            key.verify(signing_input, &signature)
                .map_err(|e| format!("ES256 signature does not verify: {e}"))
        }
        ("EdDSA" | "Ed25519", Some("OKP"), Some("Ed25519")) => {
            let x: [u8; 32] = member("x")?
                .try_into()
                .map_err(|_| "Ed25519 x is not 32 bytes")?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map_err(|e| format!("not an Ed25519 key: {e}"))?;
            let signature = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|e| format!("bad Ed25519 signature: {e}"))?;
            key.verify_strict(signing_input, &signature)
                .map_err(|e| format!("Ed25519 signature does not verify: {e}"))
        }
        _ => Err(format!("cannot verify alg {alg:?} with JWK {jwk}")),
    }
}

/// Decodes a proof and verifies its signature with the `jwk` and `alg` of its own header.
pub fn verify_self_signed(proof: &str) -> Result<DecodedProof, String> {
    let decoded = decode(proof)?;
    let alg = decoded.header["alg"].as_str().ok_or("no string alg")?;
    verify_with_jwk(
        alg,
        &decoded.header["jwk"],
        decoded.signing_input.as_bytes(),
        &decoded.signature,
    )?;
    Ok(decoded)
}

/// One challenge of a `WWW-Authenticate` value (RFC 9110 §11.6.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme as sent (compare case-insensitively).
    pub scheme: String,
    /// A token68 instead of parameters, if the challenge has one.
    pub token68: Option<String>,
    /// Every auth-param, names lower-cased, values unquoted, in order.
    pub params: Vec<(String, String)>,
    /// `error` (RFC 6750 §3, RFC 9449 §7.1).
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
    /// `algs`: the space-delimited list of JWS algorithms (RFC 9449 §7.1), split.
    pub algs: Vec<String>,
}

impl Challenge {
    /// The first value of a parameter, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_dpop(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("DPoP")
    }

    fn finish(mut self) -> Challenge {
        self.error = self.param("error").map(str::to_owned);
        self.error_description = self.param("error_description").map(str::to_owned);
        self.algs = self
            .param("algs")
            .map(|a| {
                a.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        self
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted_string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                    self.i += 1;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `token BWS "=" BWS ( token / quoted-string )`, or nothing (and the cursor unmoved).
    fn auth_param(&mut self) -> Option<(String, String)> {
        let start = self.i;
        let parsed = (|| {
            let name = self.token()?;
            self.skip_ows();
            if self.peek() != Some(b'=') {
                return None;
            }
            self.i += 1;
            self.skip_ows();
            let value = match self.peek() {
                Some(b'"') => self.quoted_string()?,
                _ => self.token()?,
            };
            Some((name.to_ascii_lowercase(), value))
        })();
        if parsed.is_none() {
            self.i = start;
        }
        parsed
    }

    /// `token68` followed by the end or a comma, or nothing (and the cursor unmoved).
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_token68_char) {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let end = self.i;
        self.skip_ows();
        if matches!(self.peek(), None | Some(b',')) {
            Some(String::from_utf8_lossy(&self.s[start..end]).into_owned())
        } else {
            self.i = start;
            None
        }
    }
}

/// Every challenge of one `WWW-Authenticate` value (RFC 9110 §11.6.1: `#challenge`, each
/// `auth-scheme [ 1*SP ( token68 / #auth-param ) ]`). Parsing stops at the first element
/// that fits neither form; what came before is returned.
pub fn challenges(www_authenticate: &str) -> Vec<Challenge> {
    let mut cur = Cursor {
        s: www_authenticate.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        // Empty list elements and separators.
        while matches!(cur.peek(), Some(b' ' | b'\t' | b',')) {
            cur.i += 1;
        }
        if cur.peek().is_none() {
            break;
        }
        // An auth-param of the current challenge, or a new challenge's scheme.
        if let Some(current) = out.last_mut()
            && let Some(param) = cur.auth_param()
        {
            if current.token68.is_some() {
                break; // a parameter after a token68: not a challenge list
            }
            current.params.push(param);
            continue;
        }
        let Some(scheme) = cur.token() else { break };
        let mut challenge = Challenge {
            scheme,
            ..Challenge::default()
        };
        if matches!(cur.peek(), Some(b' ' | b'\t')) {
            cur.skip_ows();
            if let Some(param) = cur.auth_param() {
                challenge.params.push(param);
            } else if let Some(token68) = cur.token68() {
                challenge.token68 = Some(token68);
            }
        }
        out.push(challenge);
    }
    out.into_iter().map(Challenge::finish).collect()
}

/// The `DPoP` challenge of a `WWW-Authenticate` value, if it has one (RFC 9449 §7.1).
pub fn challenge_of(www_authenticate: &str) -> Option<Challenge> {
    challenges(www_authenticate)
        .into_iter()
        .find(Challenge::is_dpop)
}

/// The `DPoP` challenge among all the `WWW-Authenticate` fields of a response.
pub fn dpop_challenge(headers: &http::HeaderMap) -> Option<Challenge> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(challenge_of)
}

/// NQCHAR (RFC 6749 Appendix A): `%x21 / %x23-5B / %x5D-7E`.
fn is_nqchar(c: u8) -> bool {
    matches!(c, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)
}

/// The response's `DPoP-Nonce` (RFC 9449 §8.2: a server may send a new one on any response,
/// a 200 included). `None` if there is none, if there is more than one (§8: "MUST NOT be
/// more than one"), or if it is not `1*NQCHAR` (§8.1): a strict client, to catch a server
/// that gets it wrong.
pub fn nonce_of(headers: &http::HeaderMap) -> Option<String> {
    let mut values = headers.get_all("dpop-nonce").iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let bytes = value.as_bytes();
    (!bytes.is_empty() && bytes.iter().all(|&c| is_nqchar(c)))
        .then(|| String::from_utf8(bytes.to_vec()).unwrap())
}

/// The nonce to retry with, when a response asks for one: a 401 with
/// `WWW-Authenticate: DPoP error="use_dpop_nonce"` (RFC 9449 §9, resource server), or a 400
/// with the same challenge (an authorization server that also sends the challenge), and a
/// single well-formed `DPoP-Nonce` header. §8's authorization servers put `use_dpop_nonce`
/// in the JSON body instead: see [`wants_nonce_with_body`].
pub fn wants_nonce(status: u16, headers: &http::HeaderMap) -> Option<String> {
    if status != 401 && status != 400 {
        return None;
    }
    let challenge = dpop_challenge(headers)?;
    if challenge.error.as_deref() != Some("use_dpop_nonce") {
        return None;
    }
    nonce_of(headers)
}

/// [`wants_nonce`], and also a 400 whose JSON body is an OAuth error response (RFC 6749
/// §5.2) with `"error": "use_dpop_nonce"` (RFC 9449 §8, Figure 20).
pub fn wants_nonce_with_body(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    if let Some(nonce) = wants_nonce(status, headers) {
        return Some(nonce);
    }
    if status != 400 {
        return None;
    }
    let body: Value = serde_json::from_slice(body).ok()?;
    if body.get("error").and_then(Value::as_str) != Some("use_dpop_nonce") {
        return None;
    }
    nonce_of(headers)
}
