//! Keys for JWTs: each with a `kid` and exactly one algorithm, parsed once when the ring is
//! built.
//!
//! A [`JwtKey`] holds the `jsonwebtoken` signing key, the verifying key (for an asymmetric
//! key, derived from the private key through its public parameters) and, for an asymmetric
//! key, its public JWK. Every key is tested when it is made: it signs a probe and verifies it,
//! so a key that the crypto backend cannot use is refused at start-up with a [`JwtKeyError`],
//! never found out on a request.
//!
//! # Crypto backend
//!
//! `jsonwebtoken` reaches its crypto through a process-wide `CryptoProvider`. With neither
//! or both of its backend features enabled (which other crates in a build can cause), its
//! automatic choice is a provider that panics on first use. This module therefore installs
//! one explicitly before any key is made: aws-lc-rs with the `jwt` feature (the default),
//! RustCrypto with only `jwt-rust-crypto`. An application may install its own provider first;
//! it is kept. Either way the self-test of every key runs under `catch_unwind`, so a missing
//! provider is a [`JwtKeyError::NoCryptoProvider`] at start-up, not a panic on a request.
//!
//! aws-lc-rs is the default because it is about 10 times faster for ES256 and 3 to 4 times
//! for RSA signing than the RustCrypto backend on the same machine (see
//! `docs/FORMAT.md, appendix`), at the price of a C compiler at build time.

mod algorithm;

pub use algorithm::{JwtAlgorithm, JwtKeyError};

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::keys::{check_id, check_not_degenerate, fill_random};

/// Longest `kid`, in characters. Longer than the 16 of [`crate::Keyring`] so that RFC 7638
/// thumbprints (43 characters) fit.
pub const MAX_JWT_KID_LEN: usize = 64;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Installs this crate's crypto provider as `jsonwebtoken`'s process default, unless one is
/// already installed. Idempotent and cheap after the first call.
pub(crate) fn install_crypto_provider() {
    #[cfg(feature = "jwt")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "jwt-rust-crypto", not(feature = "jwt")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // `Err` means a provider is already installed (ours earlier, or the application's): keep it.
    let _ = provider.install_default();
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// One JWT key: a `kid`, its algorithm, the signing and verifying keys parsed once, the
/// `jsonwebtoken` header it signs with and, for an asymmetric key, its public JWK.
///
/// `Debug` shows the `kid` and algorithm only.
///
/// ```
/// use sealed_session::{JwtAlgorithm, JwtKey, JwtKeyring};
///
/// let (key, secret) = JwtKey::generate("k2", JwtAlgorithm::HS256)?; // keep `secret` safe
/// assert_eq!((key.kid(), key.algorithm()), ("k2", JwtAlgorithm::HS256));
/// assert!(key.public_jwk().is_none(), "a shared secret is never published");
/// let again = JwtKey::hmac_base64("k2", JwtAlgorithm::HS256, &secret)?;
/// let ring = JwtKeyring::new([again])?;
/// # let _ = ring;
/// # Ok::<(), sealed_session::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct JwtKey {
    kid: String,
    alg: JwtAlgorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    pub(crate) header: Header,
    public_jwk: Option<Jwk>,
}

impl JwtKey {
    /// An HMAC key (`HS256`, `HS384`, `HS512`) from a shared secret.
    ///
    /// Refuses a secret shorter than the hash output (32, 48 or 64 bytes, RFC 7518 section
    /// 3.2) and a secret whose bytes are all equal.
    ///
    /// ```
    /// use sealed_session::{JwtAlgorithm, JwtKey, JwtKeyError, KeyError};
    /// let weak = JwtKey::hmac("k1", JwtAlgorithm::HS256, b"secret");
    /// assert!(matches!(weak, Err(JwtKeyError::Key(KeyError::TooShort { need: 32, got: 6, .. }))));
    /// ```
    pub fn hmac(kid: &str, alg: JwtAlgorithm, secret: &[u8]) -> Result<JwtKey, JwtKeyError> {
        check_id(kid, MAX_JWT_KID_LEN)?;
        if !alg.is_symmetric() {
            return Err(JwtKeyError::WrongKeyKind {
                kid: kid.to_owned(),
                alg,
                expected: "a PEM private key",
            });
        }
        let need = alg.min_secret_len();
        if secret.len() < need {
            return Err(KeyError::TooShort {
                what: "HMAC secret",
                need,
                got: secret.len(),
            }
            .into());
        }
        check_not_degenerate("HMAC secret", secret)?;
        JwtKey::build(
            kid,
            alg,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            None,
        )
    }

    /// An HMAC key from base64 (standard or URL-safe alphabet, padded or not).
    pub fn hmac_base64(kid: &str, alg: JwtAlgorithm, b64: &str) -> Result<JwtKey, JwtKeyError> {
        check_id(kid, MAX_JWT_KID_LEN)?;
        let b64 = b64.trim();
        let secret = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(b64.trim_end_matches('='))
                .or_else(|_| STANDARD.decode(b64))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
                .map_err(|_| KeyError::BadBase64 { id: kid.to_owned() })?,
        );
        JwtKey::hmac(kid, alg, &secret)
    }

    /// An asymmetric key (`RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`) from its PEM private
    /// key: PKCS#8 (`BEGIN PRIVATE KEY`, what `openssl genpkey` writes) or, for RSA, PKCS#1.
    ///
    /// The verifying key and the public JWK are derived from it. Refuses RSA keys under
    /// 2048 bits, a key of another type than `alg`, and a key that fails its self-test.
    pub fn from_pem(kid: &str, alg: JwtAlgorithm, pem: &[u8]) -> Result<JwtKey, JwtKeyError> {
        check_id(kid, MAX_JWT_KID_LEN)?;
        let bad_pem = || JwtKeyError::BadPem {
            kid: kid.to_owned(),
            alg,
            hint: alg.openssl_hint(),
        };
        let encoding = match alg {
            JwtAlgorithm::RS256 | JwtAlgorithm::PS256 => EncodingKey::from_rsa_pem(pem),
            JwtAlgorithm::ES256 | JwtAlgorithm::ES384 => EncodingKey::from_ec_pem(pem),
            JwtAlgorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                return Err(JwtKeyError::WrongKeyKind {
                    kid: kid.to_owned(),
                    alg,
                    expected: "a shared secret",
                });
            }
        }
        .map_err(|_| bad_pem())?;
        JwtKey::from_private(kid, alg, encoding, bad_pem)
    }

    /// A fresh random key, with the text to keep it in: the base64url secret for `HS*`
    /// (read it back with [`JwtKey::hmac_base64`]) or the PKCS#8 PEM for `EdDSA` (read it
    /// back with [`JwtKey::from_pem`]).
    ///
    /// RSA and ECDSA keys are not generated here; [`JwtAlgorithm::openssl_hint`] says how to
    /// make one.
    pub fn generate(
        kid: &str,
        alg: JwtAlgorithm,
    ) -> Result<(JwtKey, Zeroizing<String>), JwtKeyError> {
        check_id(kid, MAX_JWT_KID_LEN)?;
        if alg.is_symmetric() {
            let mut secret = Zeroizing::new(vec![0u8; alg.min_secret_len()]);
            fill_random(&mut secret[..])?;
            let key = JwtKey::hmac(kid, alg, &secret)?;
            return Ok((key, Zeroizing::new(URL_SAFE_NO_PAD.encode(&secret[..]))));
        }
        if alg != JwtAlgorithm::EdDSA {
            return Err(JwtKeyError::GenerateUnsupported {
                alg,
                hint: alg.openssl_hint(),
            });
        }
        let mut der = Zeroizing::new([0u8; 48]);
        der[..16].copy_from_slice(&ED25519_PKCS8_PREFIX);
        fill_random(&mut der[16..])?;
        let b64 = Zeroizing::new(STANDARD.encode(&der[..]));
        let pem = Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            b64.as_str()
        ));
        let key = JwtKey::from_pem(kid, alg, pem.as_bytes())?;
        Ok((key, pem))
    }

    fn from_private(
        kid: &str,
        alg: JwtAlgorithm,
        encoding: EncodingKey,
        bad_pem: impl Fn() -> JwtKeyError,
    ) -> Result<JwtKey, JwtKeyError> {
        install_crypto_provider();
        let jwk = guarded(|| Jwk::from_encoding_key(&encoding, alg.to_jsonwebtoken()))?
            .map_err(|_| bad_pem())?;
        if let AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
            let n = URL_SAFE_NO_PAD.decode(&rsa.n).map_err(|_| bad_pem())?;
            let bits = match n.iter().position(|b| *b != 0) {
                Some(i) => {
                    let top = n.get(i).map_or(0, |b| b.leading_zeros() as usize);
                    (n.len() - i) * 8 - top
                }
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(JwtKeyError::WeakRsaKey {
                    kid: kid.to_owned(),
                    bits,
                    min: MIN_RSA_BITS,
                });
            }
        }
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| bad_pem())?;
        JwtKey::build(kid, alg, encoding, decoding, Some(jwk))
    }

    fn build(
        kid: &str,
        alg: JwtAlgorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        jwk: Option<Jwk>,
    ) -> Result<JwtKey, JwtKeyError> {
        install_crypto_provider();
        let public_jwk = jwk.map(|mut jwk| {
            jwk.common.key_id = Some(kid.to_owned());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk
        });
        let mut header = Header::new(alg.to_jsonwebtoken());
        header.kid = Some(kid.to_owned());
        let key = JwtKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            decoding,
            header,
            public_jwk,
        };
        key.self_test()?;
        Ok(key)
    }

    /// Signs a probe and verifies it, under `catch_unwind` in case no provider is usable.
    fn self_test(&self) -> Result<(), JwtKeyError> {
        const PROBE: &[u8] = b"sealed-session jwt key self-test";
        let jalg = self.alg.to_jsonwebtoken();
        let ok = guarded(|| {
            jsonwebtoken::crypto::sign(PROBE, &self.encoding, jalg)
                .and_then(|sig| jsonwebtoken::crypto::verify(&sig, PROBE, &self.decoding, jalg))
                .unwrap_or(false)
        })?;
        if ok {
            Ok(())
        } else {
            Err(JwtKeyError::SelfTest {
                kid: self.kid.clone(),
                alg: self.alg,
            })
        }
    }

    /// The key id, as in the `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key signs and verifies with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.alg
    }

    /// The public key as a JWK (`kty`, `kid`, `alg`, `use: "sig"` and the key parameters),
    /// or `None` for an HMAC key, whose secret is never published.
    pub fn public_jwk(&self) -> Option<serde_json::Value> {
        self.public_jwk
            .as_ref()
            .and_then(|j| serde_json::to_value(j).ok())
    }
}

/// Runs `f`, turning a panic (only from `jsonwebtoken`'s placeholder provider, when none is
/// usable) into [`JwtKeyError::NoCryptoProvider`]. Used at key construction only.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, JwtKeyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| JwtKeyError::NoCryptoProvider)
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Ordered JWT keys, newest first. The newest (primary) signs; every listed key verifies the
/// tokens that name its `kid`, and only with its own algorithm. A token verified by an older
/// key asks to be re-issued ([`crate::Opened::needs_reissue`]).
///
/// Remove a key no sooner than the session `max_age` after it stopped being primary, or
/// sessions signed with it end early. Publish a new asymmetric key in the JWK Set (and let
/// other services' caches refresh) before making it primary.
///
/// Cheap to clone (an `Arc`). `Debug` shows `kid`s and algorithms only.
///
/// ```
/// use sealed_session::{JwtAlgorithm, JwtKey, JwtKeyring};
///
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
/// assert!(ring.has_public_keys());
/// // Rotation: the new key signs, the old one still verifies; keep at most 2.
/// let (new, _) = JwtKey::generate("k9", JwtAlgorithm::EdDSA)?;
/// let ring = ring.rotate(new, 2)?;
/// assert_eq!(ring.primary_kid(), "k9");
/// assert!(ring.jwks_json().contains("\"kid\":\"k9\""));
/// # Ok::<(), sealed_session::JwtKeyError>(())
/// ```
#[derive(Clone)]
pub struct JwtKeyring {
    inner: Arc<RingInner>,
}

struct RingInner {
    primary: JwtKey,
    older: Vec<JwtKey>,
    jwks: serde_json::Value,
    jwks_json: String,
}

impl JwtKeyring {
    /// A ring from keys, newest first. Refuses an empty list and duplicate `kid`s.
    pub fn new(keys: impl IntoIterator<Item = JwtKey>) -> Result<JwtKeyring, JwtKeyError> {
        let mut keys = keys.into_iter();
        let primary = keys.next().ok_or(KeyError::Empty)?;
        let older: Vec<JwtKey> = keys.collect();
        let all = || std::iter::once(&primary).chain(older.iter());
        for (i, k) in all().enumerate() {
            if all().take(i).any(|o| o.kid == k.kid) {
                return Err(KeyError::DuplicateKeyId(k.kid.clone()).into());
            }
        }
        let set = JwkSet {
            keys: all().filter_map(|k| k.public_jwk.clone()).collect(),
        };
        let jwks = serde_json::to_value(&set).unwrap_or_else(|_| serde_json::json!({"keys": []}));
        let jwks_json = jwks.to_string();
        Ok(JwtKeyring {
            inner: Arc::new(RingInner {
                primary,
                older,
                jwks,
                jwks_json,
            }),
        })
    }

    /// A ring of one fresh random key of `alg` (HMAC or EdDSA) with `kid` `"g1"`. Tokens it
    /// signs do not survive a restart; use it for tests and first runs.
    pub fn generate(alg: JwtAlgorithm) -> Result<JwtKeyring, JwtKeyError> {
        let (key, _secret) = JwtKey::generate("g1", alg)?;
        JwtKeyring::new([key])
    }

    /// The `kid` of the primary (signing) key.
    pub fn primary_kid(&self) -> &str {
        &self.inner.primary.kid
    }

    /// The algorithm of the primary key.
    pub fn primary_algorithm(&self) -> JwtAlgorithm {
        self.inner.primary.alg
    }

    /// The keys, newest first.
    pub fn keys(&self) -> impl Iterator<Item = &JwtKey> {
        std::iter::once(&self.inner.primary).chain(self.inner.older.iter())
    }

    /// A new ring with `key` as the new primary, keeping at most `keep` keys in all.
    pub fn rotate(&self, key: JwtKey, keep: usize) -> Result<JwtKeyring, JwtKeyError> {
        JwtKeyring::new(
            std::iter::once(key)
                .chain(self.keys().cloned())
                .take(keep.max(1)),
        )
    }

    /// Whether any key is asymmetric, that is whether a JWK Set endpoint has anything to
    /// serve.
    pub fn has_public_keys(&self) -> bool {
        self.keys().any(|k| k.public_jwk.is_some())
    }

    /// The JWK Set (RFC 7517) of the ring's public keys, newest first: `{"keys": [...]}`,
    /// each with `kty`, `kid`, `alg`, `use: "sig"` and its public parameters. HMAC secrets
    /// are never included. Built once with the ring.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.inner.jwks
    }

    /// [`JwtKeyring::jwks`] as JSON text, ready to serve at `/.well-known/jwks.json`.
    pub fn jwks_json(&self) -> &str {
        &self.inner.jwks_json
    }

    pub(crate) fn primary(&self) -> &JwtKey {
        &self.inner.primary
    }

    /// The key with this `kid` and its position (0 for the primary), found by id without
    /// trying keys.
    pub(crate) fn find(&self, kid: &str) -> Option<(usize, &JwtKey)> {
        self.keys().enumerate().find(|(_, k)| k.kid == kid)
    }
}

impl fmt::Debug for JwtKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys().map(|k| format!("{}:{}", k.kid, k.alg)))
            .finish()
    }
}
