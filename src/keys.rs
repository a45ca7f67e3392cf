//! Keys and the key ring: which key seals, which keys still open, and how keys are made.
//!
//! Each [`Key`] is 32 bytes of material, a short id and the AEAD [`Algorithm`] it seals with.
//! From that material the ring derives, once, through HKDF-SHA256, one sub-key for the AEAD
//! and one for HMAC-SHA256 (see `docs/FORMAT.md`), so one ring serves sealed and signed tokens
//! without using a key for two algorithms. Cipher key schedules are built when the ring is
//! built, never per request.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
#[cfg(not(feature = "aws-lc"))]
use aes_gcm::aead::generic_array::GenericArray;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use hmac::Hmac;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{KeyError, OpenError};

/// Length of key material and of secrets, in bytes (the minimum for a secret).
pub const KEY_LEN: usize = 32;
/// Longest key id, in characters.
pub const MAX_KEY_ID_LEN: usize = 16;

/// The AEAD a key seals with. A ring may hold keys of different algorithms, so a deployment
/// can move from one to another by rotation without logging anyone out.
///
/// ```
/// use sealed_session::Algorithm;
///
/// let alg: Algorithm = "xchacha20poly1305".parse()?;
/// assert_eq!(alg, Algorithm::XChaCha20Poly1305);
/// assert_eq!(Algorithm::default(), Algorithm::Aes256Gcm);
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256 in Galois/Counter Mode, 96-bit random nonce. The default: fastest where the
    /// CPU has AES instructions. See `docs/SECURITY.md` for its per-key message limit.
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 96-bit random nonce. Constant-time without AES
    /// instructions.
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305, 192-bit random nonce: no practical limit on messages per key.
    XChaCha20Poly1305,
}

impl Algorithm {
    /// All algorithms, in the order of their wire names.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::Aes256Gcm,
        Algorithm::ChaCha20Poly1305,
        Algorithm::XChaCha20Poly1305,
    ];

    /// The name used in key-ring strings: `aes256gcm`, `chacha20poly1305`, `xchacha20poly1305`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes256gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20poly1305",
            Algorithm::XChaCha20Poly1305 => "xchacha20poly1305",
        }
    }

    /// Nonce length in bytes: 12, or 24 for XChaCha20-Poly1305.
    pub const fn nonce_len(self) -> usize {
        match self {
            Algorithm::XChaCha20Poly1305 => 24,
            _ => 12,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == norm)
            .ok_or_else(|| KeyError::UnknownAlgorithm(s.to_owned()))
    }
}

/// Whether `id` is 1 to `max` characters from `A-Z a-z 0-9 . _ -`: a key id (at most
/// [`MAX_KEY_ID_LEN`]) or a JWT `kid`.
pub(crate) fn valid_id(id: &[u8], max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// [`valid_id`], as a refusal naming the id.
pub(crate) fn check_id(id: &str, max: usize) -> Result<(), KeyError> {
    if valid_id(id.as_bytes(), max) {
        Ok(())
    } else {
        Err(KeyError::InvalidKeyId {
            id: id.chars().take(64).collect(),
            max,
        })
    }
}

/// Fills `out` from the operating system's generator, as nonces and session ids are.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), KeyError> {
    crate::random::fill(out).map_err(|_| KeyError::Rng)
}

pub(crate) fn check_not_degenerate(what: &'static str, bytes: &[u8]) -> Result<(), KeyError> {
    match bytes.first() {
        Some(first) if bytes.iter().all(|b| b == first) => Err(KeyError::Degenerate { what }),
        _ => Ok(()),
    }
}

/// One key: an id, an algorithm and 32 bytes of material, zeroized on drop.
///
/// `Debug` shows the id and algorithm only.
///
/// ```
/// use sealed_session::{Algorithm, Key, Keyring};
///
/// let new = Key::generate("k2", Algorithm::Aes256Gcm)?;
/// let old = Key::derive(Some("k1"), Algorithm::Aes256Gcm, b"a long secret, at least 32 bytes of it")?;
/// let ring = Keyring::new([new, old])?;   // k2 seals; both open
/// assert_eq!(ring.primary_id(), "k2");
/// assert!(Key::new("k3", Algorithm::Aes256Gcm, &[7; 32]).is_err(), "all one byte");
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Key {
    id: String,
    alg: Algorithm,
    material: Zeroizing<[u8; KEY_LEN]>,
}

impl Key {
    /// A key from exactly 32 raw bytes.
    ///
    /// Refuses a shorter or longer slice, a slice whose bytes are all equal, and an invalid id.
    ///
    /// ```
    /// use sealed_session::{Algorithm, Key, KeyError};
    /// let key = Key::new("k1", Algorithm::Aes256Gcm, &[7u8; 31]);
    /// assert!(matches!(key, Err(KeyError::TooShort { need: 32, got: 31, .. })));
    /// ```
    pub fn new(id: &str, alg: Algorithm, bytes: &[u8]) -> Result<Key, KeyError> {
        check_id(id, MAX_KEY_ID_LEN)?;
        if bytes.len() < KEY_LEN {
            return Err(KeyError::TooShort {
                what: "key",
                need: KEY_LEN,
                got: bytes.len(),
            });
        }
        let material: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyError::TooLong {
            need: KEY_LEN,
            got: bytes.len(),
        })?;
        let material = Zeroizing::new(material);
        check_not_degenerate("key", &material[..])?;
        Ok(Key {
            id: id.to_owned(),
            alg,
            material,
        })
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate(id: &str, alg: Algorithm) -> Result<Key, KeyError> {
        check_id(id, MAX_KEY_ID_LEN)?;
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut material[..])?;
        Ok(Key {
            id: id.to_owned(),
            alg,
            material,
        })
    }

    /// A key from base64 (standard or URL-safe alphabet, padded or not) of 32 bytes.
    pub fn from_base64(id: &str, alg: Algorithm, b64: &str) -> Result<Key, KeyError> {
        check_id(id, MAX_KEY_ID_LEN)?;
        let bytes = Zeroizing::new(
            decode_any_base64(b64.trim())
                .ok_or_else(|| KeyError::BadBase64 { id: id.to_owned() })?,
        );
        Key::new(id, alg, &bytes)
    }

    /// A key derived from a long secret (at least 32 bytes) through HKDF-SHA256.
    ///
    /// The same secret always gives the same key, so processes that share the secret share
    /// sessions. The id is derived from the key too (`s` and 6 characters) unless one is given.
    pub fn derive(id: Option<&str>, alg: Algorithm, secret: &[u8]) -> Result<Key, KeyError> {
        if secret.len() < KEY_LEN {
            return Err(KeyError::TooShort {
                what: "secret",
                need: KEY_LEN,
                got: secret.len(),
            });
        }
        check_not_degenerate("secret", secret)?;
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_expand(SECRET_SALT, secret, &[SECRET_INFO], &mut material[..]);
        let id = match id {
            Some(id) => {
                check_id(id, MAX_KEY_ID_LEN)?;
                id.to_owned()
            }
            None => derived_key_id(&material),
        };
        Ok(Key { id, alg, material })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The algorithm this key seals with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// This key in key-ring string form, `id:algorithm:base64url`. This exposes the key
    /// material: write it only where the key belongs (a secret store, an environment file).
    pub fn to_ring_entry(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}:{}:{}",
            self.id,
            self.alg.name(),
            URL_SAFE_NO_PAD.encode(&self.material[..])
        ))
    }

    pub(crate) fn material(&self) -> &[u8; KEY_LEN] {
        &self.material
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

const SECRET_SALT: &[u8] = b"sealed-session/v1/secret";
const SECRET_INFO: &[u8] = b"key material";
const AEAD_INFO: &[u8] = b"sealed-session/v1/aead/";
const MAC_INFO: &[u8] = b"sealed-session/v1/hmac-sha256";

/// HKDF-SHA256 with the given salt, input key material and info parts, filling `out`.
fn hkdf_expand(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // `expand_multi_info` only fails when `out` is longer than 255 * 32 bytes; ours is 32.
    if hk.expand_multi_info(info, out).is_err() {
        out.fill(0);
    }
}

fn derived_key_id(material: &[u8; KEY_LEN]) -> String {
    let mut h = Sha256::new();
    h.update(b"sealed-session/v1/key-id");
    h.update(material);
    let digest = h.finalize();
    let mut id = String::from("s");
    id.push_str(&URL_SAFE_NO_PAD.encode(&digest[..6])[..6]);
    id
}

fn decode_any_base64(s: &str) -> Option<Vec<u8>> {
    [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD]
        .into_iter()
        .find_map(|e| e.decode(s).ok())
}

/// The cipher instance of one key, built once.
pub(crate) enum AeadCipher {
    /// AES-256-GCM or ChaCha20-Poly1305 through aws-lc-rs. AWS-LC wipes the key schedule
    /// when it frees the context.
    #[cfg(feature = "aws-lc")]
    AwsLc(Box<aws_lc_rs::aead::LessSafeKey>),
    Aes256Gcm(Box<Aes256Gcm>),
    ChaCha20Poly1305(Box<ChaCha20Poly1305>),
    XChaCha20Poly1305(Box<XChaCha20Poly1305>),
}

/// The aws-lc-rs cipher for `alg`, when that backend is built in and has the algorithm.
#[cfg(feature = "aws-lc")]
fn fast_cipher(alg: Algorithm, key: &[u8]) -> Option<AeadCipher> {
    aws_lc_key(alg, key).map(|k| AeadCipher::AwsLc(Box::new(k)))
}

/// Without the `aws-lc` feature every algorithm uses RustCrypto.
#[cfg(not(feature = "aws-lc"))]
fn fast_cipher(_alg: Algorithm, _key: &[u8]) -> Option<AeadCipher> {
    None
}

#[cfg(feature = "aws-lc")]
fn aws_lc_key(alg: Algorithm, key: &[u8]) -> Option<aws_lc_rs::aead::LessSafeKey> {
    use aws_lc_rs::aead::{AES_256_GCM, CHACHA20_POLY1305, LessSafeKey, UnboundKey};
    let a = match alg {
        Algorithm::Aes256Gcm => &AES_256_GCM,
        Algorithm::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        Algorithm::XChaCha20Poly1305 => return None,
    };
    UnboundKey::new(a, key).ok().map(LessSafeKey::new)
}

/// The HMAC-SHA256 key of one ring key, its inner and outer states computed once. With the
/// `aws-lc` feature it lives in an AWS-LC context, which is wiped when freed; the pure-Rust
/// fallback (RustCrypto `Hmac`) does not wipe its precomputed states on drop.
pub(crate) enum MacKey {
    #[cfg(feature = "aws-lc")]
    AwsLc(Box<aws_lc_rs::hmac::Key>),
    #[cfg_attr(feature = "aws-lc", allow(dead_code))]
    RustCrypto(Box<Hmac<Sha256>>),
}

impl MacKey {
    /// `padded` is the 32-byte sub-key followed by zeros to the 64-byte block, as HMAC pads
    /// it; both backends give the same tags.
    fn new(padded: &[u8; 64]) -> MacKey {
        #[cfg(feature = "aws-lc")]
        {
            MacKey::AwsLc(Box::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &padded[..KEY_LEN],
            )))
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            MacKey::RustCrypto(Box::new(<Hmac<Sha256> as KeyInit>::new(
                GenericArray::from_slice(&padded[..]),
            )))
        }
    }

    /// A MAC key for one purpose (`info`), derived by HKDF-SHA256 from `secret`: the
    /// binding's nonces, challenges and bound cookies.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn derived(secret: &[u8], info: &[u8]) -> MacKey {
        let mut padded = Zeroizing::new([0u8; 64]);
        hkdf_expand(
            b"sealed-session/v1/binding",
            secret,
            &[info],
            &mut padded[..KEY_LEN],
        );
        MacKey::new(&padded)
    }

    /// A MAC key for one purpose (`info`), derived from `key` (a ring's primary key).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn derived_from(key: &Key, info: &[u8]) -> MacKey {
        MacKey::derived(key.material(), info)
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            #[cfg(feature = "aws-lc")]
            MacKey::AwsLc(k) => {
                let mut ctx = aws_lc_rs::hmac::Context::with_key(k);
                for p in parts {
                    ctx.update(p);
                }
                out.copy_from_slice(ctx.sign().as_ref());
            }
            MacKey::RustCrypto(h) => {
                use hmac::Mac;
                let mut m = (**h).clone();
                for p in parts {
                    m.update(p);
                }
                out.copy_from_slice(&m.finalize().into_bytes());
            }
        }
        out
    }

    /// Whether `tag` is the first 16 bytes of the HMAC of `parts` (the binding's nonces,
    /// challenges and bound cookies), compared in constant time.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    pub(crate) fn verify_truncated(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() == 16 && constant_time_eq::constant_time_eq(tag, &self.tag(parts)[..16])
    }

    /// Whether `tag` is the HMAC of `parts`, compared in constant time.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        tag.len() == 32 && bool::from(self.tag(parts)[..].ct_eq(tag))
    }
}

/// One key of a built ring, with its key schedules.
pub(crate) struct RingKey {
    pub(crate) id: String,
    pub(crate) alg: Algorithm,
    pub(crate) aead: AeadCipher,
    pub(crate) mac: MacKey,
    key: Key,
}

impl RingKey {
    fn build(key: Key) -> RingKey {
        let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_expand(
            b"",
            key.material(),
            &[AEAD_INFO, key.alg.name().as_bytes()],
            &mut aead_key[..],
        );
        let aead = fast_cipher(key.alg, &aead_key[..]).unwrap_or_else(|| match key.alg {
            Algorithm::Aes256Gcm => AeadCipher::Aes256Gcm(Box::new(Aes256Gcm::new(
                aes_gcm::Key::<Aes256Gcm>::from_slice(&aead_key[..]),
            ))),
            Algorithm::ChaCha20Poly1305 => AeadCipher::ChaCha20Poly1305(Box::new(
                ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&aead_key[..])),
            )),
            Algorithm::XChaCha20Poly1305 => AeadCipher::XChaCha20Poly1305(Box::new(
                XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&aead_key[..])),
            )),
        });
        // HMAC pads a key shorter than the hash's 64-byte block with zeros; doing it here
        // lets us use the infallible fixed-size constructor.
        let mut mac_key = Zeroizing::new([0u8; 64]);
        hkdf_expand(b"", key.material(), &[MAC_INFO], &mut mac_key[..KEY_LEN]);
        let mac = MacKey::new(&mac_key);
        RingKey {
            id: key.id.clone(),
            alg: key.alg,
            aead,
            mac,
            key,
        }
    }
}

/// Ordered keys, newest first. The newest (primary) seals and signs; every listed key opens
/// and verifies, and a token opened with an older key asks to be re-issued under the primary.
///
/// Remove a key no sooner than the session `max_age` after it stopped being primary, or
/// sessions sealed with it end early.
///
/// A `Keyring` is cheap to clone (an `Arc`). `Debug` shows key ids and algorithms only.
///
/// # Key-ring strings
///
/// [`Keyring::from_str`] (and so the `SESSION_KEYS` variable of the examples) reads a comma-
/// separated list, newest first, of `id:base64` or `id:algorithm:base64` entries, where the
/// base64 (standard or URL-safe, padded or not) holds exactly 32 bytes and the algorithm is
/// `aes256gcm` (the default), `chacha20poly1305` or `xchacha20poly1305`:
///
/// ```
/// use sealed_session::Keyring;
/// let ring: Keyring = "k2:xchacha20poly1305:Jm0mOuIqC4Sxv3kVCM4ZPl6tJTg7DJAXo7Bfy8S4rAk,\
///                      k1:8h5vY4lNGLrl3WiMvMnXaTRbCn1GPVQ9jLYbAmm2h2c".parse()?;
/// assert_eq!(ring.primary_id(), "k2");
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<[RingKey]>,
}

impl Keyring {
    /// A ring from keys, newest first. Refuses an empty list and duplicate ids.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Result<Keyring, KeyError> {
        let keys: Vec<Key> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyError::DuplicateKeyId(k.id.clone()));
            }
        }
        Ok(Keyring {
            keys: keys.into_iter().map(RingKey::build).collect(),
        })
    }

    /// A ring of one fresh random AES-256-GCM key. Sessions sealed with it do not survive
    /// a restart; use it for tests and first runs.
    pub fn generate() -> Result<Keyring, KeyError> {
        let mut id = [0u8; 4];
        fill_random(&mut id)?;
        let id = format!("g{}", URL_SAFE_NO_PAD.encode(id));
        Keyring::new([Key::generate(&id, Algorithm::Aes256Gcm)?])
    }

    /// A ring of one AES-256-GCM key derived from a long secret (at least 32 bytes).
    ///
    /// ```
    /// # use sealed_session::Keyring;
    /// let keys = Keyring::from_secret(std::env::var("SESSION_SECRET").unwrap_or_else(|_| {
    ///     "a random secret of at least 32 bytes, from your secret store".to_owned()
    /// }))?;
    /// assert!(Keyring::from_secret("short").is_err());
    /// # let _ = keys;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Keyring, KeyError> {
        Keyring::from_secrets([secret])
    }

    /// A ring derived from secrets, newest first, like express-session's `secret` array:
    /// the first seals, all open.
    ///
    /// ```
    /// # use sealed_session::Keyring;
    /// // express-session's `secret: [new, old]`: the first seals, both open.
    /// let keys = Keyring::from_secrets(["the new secret, 32 bytes or more!!", "the old secret, 32 bytes or more!!"])?;
    /// assert_eq!(keys.ids().count(), 2);
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn from_secrets<S: AsRef<[u8]>>(
        secrets: impl IntoIterator<Item = S>,
    ) -> Result<Keyring, KeyError> {
        let keys = secrets
            .into_iter()
            .map(|s| Key::derive(None, Algorithm::Aes256Gcm, s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::new(keys)
    }

    /// The id of the primary (newest) key.
    pub fn primary_id(&self) -> &str {
        self.primary().id.as_str()
    }

    /// The algorithm of the primary key.
    pub fn primary_algorithm(&self) -> Algorithm {
        self.primary().alg
    }

    /// Key ids, newest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The keys, newest first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().map(|k| &k.key)
    }

    /// A new ring with `key` as the new primary, keeping at most `keep` keys in all.
    ///
    /// ```
    /// # use sealed_session::{Algorithm, Key, Keyring};
    /// let ring = Keyring::generate()?;
    /// let first = ring.primary_id().to_owned();
    /// let ring = ring.rotate(Key::generate("k2", Algorithm::Aes256Gcm)?, 2)?;
    /// assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2", first.as_str()]);
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn rotate(&self, key: Key, keep: usize) -> Result<Keyring, KeyError> {
        let keep = keep.max(1);
        Keyring::new(std::iter::once(key).chain(self.keys().cloned()).take(keep))
    }

    /// The ring in key-ring string form. This exposes key material.
    pub fn to_ring_string(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::new());
        for (i, key) in self.keys().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&key.to_ring_entry());
        }
        s
    }

    pub(crate) fn primary(&self) -> &RingKey {
        // `Keyring::new` refuses an empty list, so index 0 exists.
        &self.keys[0]
    }

    /// The key with this id and whether it is the primary, found without trying keys.
    pub(crate) fn find(&self, id: &[u8]) -> Result<(&RingKey, bool), OpenError> {
        self.keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.id.as_bytes() == id)
            .map(|(i, k)| (k, i == 0))
            .ok_or_else(|| OpenError::UnknownKeyId(String::from_utf8_lossy(id).into_owned()))
    }
}

impl FromStr for Keyring {
    type Err = KeyError;
    /// Parses a key-ring string; see [the type docs](Keyring#key-ring-strings).
    fn from_str(s: &str) -> Result<Keyring, KeyError> {
        let mut keys = Vec::new();
        for (i, entry) in s.split(',').enumerate() {
            let entry = entry.trim();
            let parts: Vec<&str> = entry.split(':').collect();
            let key = match parts.as_slice() {
                [id, b64] => Key::from_base64(id.trim(), Algorithm::default(), b64)?,
                [id, alg, b64] => Key::from_base64(id.trim(), alg.trim().parse()?, b64)?,
                _ => return Err(KeyError::BadRingEntry { position: i + 1 }),
            };
            keys.push(key);
        }
        Keyring::new(keys)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| format!("{}:{}", k.id, k.alg)))
            .finish()
    }
}
