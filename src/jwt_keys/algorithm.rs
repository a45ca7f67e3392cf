//! [`JwtAlgorithm`], the algorithms a JWT key may have, and [`JwtKeyError`], why a key or
//! ring was refused.

use std::fmt;
use std::str::FromStr;

use crate::error::KeyError;

/// A JWT signature algorithm this crate signs and verifies with.
///
/// Each key has exactly one; a token naming another algorithm than its key's is refused.
/// The names are those of RFC 7518 (`HS256`, ..., `EdDSA`).
///
/// ```
/// use sealed_session::JwtAlgorithm;
///
/// let alg: JwtAlgorithm = "eddsa".parse()?;
/// assert_eq!(alg, JwtAlgorithm::EdDSA);
/// assert!("none".parse::<JwtAlgorithm>().is_err());
/// # Ok::<(), sealed_session::JwtKeyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret of at least 32 bytes.
    HS256,
    /// HMAC-SHA384 with a shared secret of at least 48 bytes.
    HS384,
    /// HMAC-SHA512 with a shared secret of at least 64 bytes.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA key of at least 2048 bits.
    RS256,
    /// RSASSA-PSS with SHA-256, RSA key of at least 2048 bits.
    PS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA on Ed25519.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [JwtAlgorithm; 8] = [
        JwtAlgorithm::HS256,
        JwtAlgorithm::HS384,
        JwtAlgorithm::HS512,
        JwtAlgorithm::RS256,
        JwtAlgorithm::PS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::ES384,
        JwtAlgorithm::EdDSA,
    ];

    /// The RFC 7518 name, as in the `alg` header: `"HS256"`, ..., `"EdDSA"`.
    pub const fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::HS384 => "HS384",
            JwtAlgorithm::HS512 => "HS512",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::PS256 => "PS256",
            JwtAlgorithm::ES256 => "ES256",
            JwtAlgorithm::ES384 => "ES384",
            JwtAlgorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether keys of this algorithm are shared secrets (HMAC), which are never published.
    pub const fn is_symmetric(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }

    /// Shortest HMAC secret, in bytes: the hash output size (RFC 7518 section 3.2).
    /// Zero for asymmetric algorithms.
    pub const fn min_secret_len(self) -> usize {
        match self {
            JwtAlgorithm::HS256 => 32,
            JwtAlgorithm::HS384 => 48,
            JwtAlgorithm::HS512 => 64,
            _ => 0,
        }
    }

    /// The matching `jsonwebtoken` algorithm.
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            JwtAlgorithm::HS256 => A::HS256,
            JwtAlgorithm::HS384 => A::HS384,
            JwtAlgorithm::HS512 => A::HS512,
            JwtAlgorithm::RS256 => A::RS256,
            JwtAlgorithm::PS256 => A::PS256,
            JwtAlgorithm::ES256 => A::ES256,
            JwtAlgorithm::ES384 => A::ES384,
            JwtAlgorithm::EdDSA => A::EdDSA,
        }
    }

    /// How to make a key of this algorithm with the `openssl` command line.
    pub const fn openssl_hint(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "openssl rand -base64 32",
            JwtAlgorithm::HS384 => "openssl rand -base64 48",
            JwtAlgorithm::HS512 => "openssl rand -base64 64",
            JwtAlgorithm::RS256 | JwtAlgorithm::PS256 => {
                "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem"
            }
            JwtAlgorithm::ES256 => {
                "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem"
            }
            JwtAlgorithm::ES384 => {
                "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out key.pem"
            }
            JwtAlgorithm::EdDSA => "openssl genpkey -algorithm ED25519 -out key.pem",
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = JwtKeyError;
    /// Parses an RFC 7518 name, ignoring ASCII case (`es256`, `EdDSA`, ...).
    fn from_str(s: &str) -> Result<Self, JwtKeyError> {
        JwtAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| JwtKeyError::UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

/// Why a JWT key or key ring was refused. Never carries key material.
///
/// ```
/// use sealed_session::{JwtAlgorithm, JwtKey, JwtKeyError};
///
/// let weak = JwtKey::hmac("k1", JwtAlgorithm::HS256, b"too short");
/// assert!(weak.is_err());
/// let e: JwtKeyError = weak.unwrap_err();
/// assert!(!e.to_string().contains("too short"), "never the key material");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// A refusal shared with the sealed-token [`crate::Keyring`]: an invalid or duplicate
    /// `kid`, an empty ring, a short or degenerate HMAC secret, a failed RNG.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The algorithm name is not one this crate signs with (`none` never is).
    #[error(
        "unknown JWT algorithm {0:?}; expected one of HS256, HS384, HS512, RS256, PS256, ES256, ES384, EdDSA"
    )]
    UnknownAlgorithm(String),
    /// A secret was given for an asymmetric algorithm, or a PEM key for an HMAC one.
    #[error("key {kid:?}: {alg} needs {expected}")]
    WrongKeyKind {
        /// The key id.
        kid: String,
        /// The algorithm asked for.
        alg: JwtAlgorithm,
        /// What the algorithm needs: "a shared secret" or "a PEM private key".
        expected: &'static str,
    },
    /// The PEM text is not a private key of the algorithm's type (or not PEM at all).
    #[error(
        "key {kid:?}: not a PKCS#8 (or PKCS#1 for RSA) PEM private key usable with {alg}; make one with `{hint}`"
    )]
    BadPem {
        /// The key id.
        kid: String,
        /// The algorithm asked for.
        alg: JwtAlgorithm,
        /// An `openssl` command that makes a suitable key.
        hint: &'static str,
    },
    /// An RSA key is shorter than [`MIN_RSA_BITS`](super::MIN_RSA_BITS).
    #[error("key {kid:?}: RSA modulus is {bits} bits; at least {min} are required")]
    WeakRsaKey {
        /// The key id.
        kid: String,
        /// The modulus length found.
        bits: usize,
        /// The minimum.
        min: usize,
    },
    /// The key could not sign a probe and verify it again (an unusable key or a crypto
    /// backend that refuses it).
    #[error("key {kid:?} ({alg}) failed its sign-and-verify self-test")]
    SelfTest {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        alg: JwtAlgorithm,
    },
    /// No usable `jsonwebtoken` crypto provider is installed in this process (another
    /// component initialized `jsonwebtoken` without one before this crate could install its
    /// own).
    #[error(
        "no usable jsonwebtoken CryptoProvider: install one with CryptoProvider::install_default before using jsonwebtoken"
    )]
    NoCryptoProvider,
    /// This crate does not generate keys of this algorithm.
    #[error(
        "cannot generate {alg} keys here; make one with `{hint}` and load it with JwtKey::from_pem"
    )]
    GenerateUnsupported {
        /// The algorithm asked for.
        alg: JwtAlgorithm,
        /// An `openssl` command that makes one.
        hint: &'static str,
    },
}
