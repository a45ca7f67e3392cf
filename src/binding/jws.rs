//! A proof of possession: a JWS in compact form that a client signs with the key it holds.
//! DPoP (RFC 9449, section 4.3) and DBSC (the W3C draft's registration and refresh) check
//! it the same way: a bounded length, the expected `typ`, an allow-listed asymmetric
//! `alg`, no `crit`, the key either in the header as a public `jwk` (a new key) or given
//! (a registered one, and then the header must not carry one), a key that fits the
//! algorithm, and a valid signature (checked by `jsonwebtoken`'s crypto).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ProofError;
use crate::jwt_keys::MIN_RSA_BITS;

/// Longest proof read, checked before any parsing: a proof with an RSA-4096 key in its
/// header is about 1.5 KiB.
pub const MAX_PROOF_LEN: usize = 4096;

/// An algorithm a proof may be signed with. Asymmetric only: `none` and the `HS*` family
/// are never accepted (a proof must show a private key that the server never holds).
///
/// ```
/// use sealed_session::binding::{Dpop, ProofAlgorithm};
///
/// let dpop = Dpop::new().algorithms(&[ProofAlgorithm::Es256, ProofAlgorithm::Ps256])?;
/// # let _ = dpop;
/// # Ok::<(), sealed_session::binding::DpopConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProofAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (keys of at least 2048 bits).
    Rs256,
    /// RSASSA-PSS with SHA-256 (keys of at least 2048 bits).
    Ps256,
}

impl ProofAlgorithm {
    /// The `alg` name.
    ///
    /// ```
    /// use sealed_session::binding::ProofAlgorithm;
    /// assert_eq!(ProofAlgorithm::EdDsa.name(), "EdDSA");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ProofAlgorithm::Es256 => "ES256",
            ProofAlgorithm::Es384 => "ES384",
            ProofAlgorithm::EdDsa => "EdDSA",
            ProofAlgorithm::Rs256 => "RS256",
            ProofAlgorithm::Ps256 => "PS256",
        }
    }

    /// The algorithm named `alg`, if it is one of these. `Ed25519` (RFC 9864's fully
    /// specified name, which some clients send) is [`ProofAlgorithm::EdDsa`] too.
    ///
    /// ```
    /// use sealed_session::binding::ProofAlgorithm;
    /// assert_eq!(ProofAlgorithm::from_name("Ed25519"), Some(ProofAlgorithm::EdDsa));
    /// assert_eq!(ProofAlgorithm::from_name("HS256"), None);
    /// ```
    pub fn from_name(alg: &str) -> Option<ProofAlgorithm> {
        if alg == "Ed25519" {
            return Some(ProofAlgorithm::EdDsa);
        }
        [
            ProofAlgorithm::Es256,
            ProofAlgorithm::Es384,
            ProofAlgorithm::EdDsa,
            ProofAlgorithm::Rs256,
            ProofAlgorithm::Ps256,
        ]
        .into_iter()
        .find(|a| a.name() == alg)
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            ProofAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            ProofAlgorithm::Es384 => jsonwebtoken::Algorithm::ES384,
            ProofAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            ProofAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            ProofAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
        }
    }

    /// Whether `key` is a key of this algorithm (curve, type, RSA size).
    fn fits(self, key: &Jwk) -> bool {
        match (self, &key.algorithm) {
            (ProofAlgorithm::Es256, AlgorithmParameters::EllipticCurve(p)) => {
                p.curve == EllipticCurve::P256
            }
            (ProofAlgorithm::Es384, AlgorithmParameters::EllipticCurve(p)) => {
                p.curve == EllipticCurve::P384
            }
            (ProofAlgorithm::EdDsa, AlgorithmParameters::OctetKeyPair(p)) => {
                p.curve == EllipticCurve::Ed25519
            }
            (ProofAlgorithm::Rs256 | ProofAlgorithm::Ps256, AlgorithmParameters::RSA(p)) => {
                URL_SAFE_NO_PAD.decode(&p.n).is_ok_and(|n| {
                    let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
                    let top = n.first().map_or(8, |b| b.leading_zeros() as usize);
                    (n.len() * 8).saturating_sub(top) >= MIN_RSA_BITS
                })
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for ProofAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the proof's key comes from.
pub(crate) enum KeyIn<'a> {
    /// The header's `jwk` (a key the client presents now).
    Header,
    /// The header's `jwk`, or else the payload's claim of this name (the DBSC draft's
    /// registration proof carries the new key as `key`; Chromium sends it as `jwk`). Not
    /// both.
    HeaderOrClaim(&'static str),
    /// A key registered before, as JWK text; the header must not carry one.
    Registered(&'a str),
}

/// A proof whose signature verified.
pub(crate) struct Verified<C> {
    pub(crate) claims: C,
    /// The key's RFC 7638 thumbprint (SHA-256).
    pub(crate) jkt: [u8; 32],
    /// The key as JWK text, its thumbprint members only, in order.
    pub(crate) jwk: String,
}

/// Members of a JWK that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks `proof` (see the module docs) and returns its claims, parsed as `C`.
pub(crate) fn verify<C: DeserializeOwned>(
    proof: &str,
    typ: &str,
    algs: &[ProofAlgorithm],
    key: KeyIn<'_>,
) -> Result<Verified<C>, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::TooLarge {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    let (header_b64, _) = proof
        .split_once('.')
        .ok_or(ProofError::Malformed("not a JWS: no '.'"))?;
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| ProofError::Malformed("JWS header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header_json)
        .map_err(|_| ProofError::Malformed("JWS header is not a JSON object"))?;
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(ProofError::Type);
    }
    if header.contains_key("crit") {
        return Err(ProofError::Malformed(
            "JWS header has crit; no extension is understood",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(ProofAlgorithm::from_name)
        .filter(|a| algs.contains(a))
        .ok_or(ProofError::Algorithm)?;
    let presented = |jwk: Option<&Value>| -> Result<Jwk, ProofError> {
        let jwk = jwk.and_then(Value::as_object).ok_or(ProofError::NoKey)?;
        if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
            return Err(ProofError::PrivateKey);
        }
        serde_json::from_value(Value::Object(jwk.clone()))
            .map_err(|_| ProofError::Malformed("jwk is not a supported public key"))
    };
    let jwk: Jwk = match key {
        KeyIn::Header => presented(header.get("jwk"))?,
        KeyIn::HeaderOrClaim(claim) => {
            // The claims as sent, read before the signature is checked only to find the
            // key that must have made it.
            let payload = proof
                .split('.')
                .nth(1)
                .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                .and_then(|p| serde_json::from_slice::<Map<String, Value>>(&p).ok())
                .ok_or(ProofError::Malformed("JWS payload is not a JSON object"))?;
            match (header.get("jwk"), payload.get(claim)) {
                (Some(_), Some(_)) => {
                    return Err(ProofError::Malformed(
                        "a key in both the header and the claims",
                    ));
                }
                (Some(jwk), None) | (None, Some(jwk)) => presented(Some(jwk))?,
                (None, None) => return Err(ProofError::NoKey),
            }
        }
        KeyIn::Registered(text) => {
            if header.contains_key("jwk") {
                return Err(ProofError::KeyPresent);
            }
            serde_json::from_str(text)
                .map_err(|_| ProofError::Malformed("registered key does not parse"))?
        }
    };
    if !alg.fits(&jwk) {
        return Err(ProofError::KeyMismatch);
    }
    let canonical = canonical_jwk(&jwk).ok_or(ProofError::KeyMismatch)?;
    // The provider is installed when DPoP or DBSC is configured; were it missing,
    // jsonwebtoken would panic, so the crypto runs guarded: a refusal, never a panic.
    let decoding = std::panic::catch_unwind(|| DecodingKey::from_jwk(&jwk))
        .map_err(|_| ProofError::Signature)?
        .map_err(|_| ProofError::KeyMismatch)?;
    // header.payload.signature, exactly three parts.
    let (signed, signature) = proof
        .rsplit_once('.')
        .ok_or(ProofError::Malformed("not a JWS: no signature"))?;
    let payload_b64 = signed
        .split_once('.')
        .map(|(_, p)| p)
        .filter(|p| !p.contains('.'))
        .ok_or(ProofError::Malformed("not a JWS: not three parts"))?;
    let valid = std::panic::catch_unwind(|| {
        jsonwebtoken::crypto::verify(
            signature,
            signed.as_bytes(),
            &decoding,
            alg.to_jsonwebtoken(),
        )
    })
    .is_ok_and(|v| v.unwrap_or(false));
    if !valid {
        return Err(ProofError::Signature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| ProofError::Malformed("JWS payload is not base64url"))?;
    let claims: C = serde_json::from_slice(&payload)
        .map_err(|_| ProofError::Malformed("proof claims are not the expected JSON"))?;
    Ok(Verified {
        claims,
        jkt: Sha256::digest(canonical.as_bytes()).into(),
        jwk: canonical,
    })
}

/// The RFC 7638 form of a public key: its required members only, in lexicographic order,
/// no white space. Its SHA-256 is the key's thumbprint.
pub(crate) fn canonical_jwk(jwk: &Jwk) -> Option<String> {
    let s = |v: &str| serde_json::to_string(v).ok();
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => {
            let crv = match p.curve {
                EllipticCurve::P256 => "P-256",
                EllipticCurve::P384 => "P-384",
                EllipticCurve::P521 => "P-521",
                _ => return None,
            };
            Some(format!(
                r#"{{"crv":"{crv}","kty":"EC","x":{},"y":{}}}"#,
                s(&p.x)?,
                s(&p.y)?
            ))
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Some(format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":{}}}"#,
            s(&p.x)?
        )),
        AlgorithmParameters::RSA(p) => Some(format!(
            r#"{{"e":{},"kty":"RSA","n":{}}}"#,
            s(&p.e)?,
            s(&p.n)?
        )),
        _ => None,
    }
}

/// The SHA-256 of `text`, base64url: a proof's `ath` for an access token.
pub(crate) fn sha256_b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638, section 3.1: the thumbprint of the example RSA key.
    #[test]
    fn thumbprint_of_the_rfc_7638_example() {
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        let canonical = canonical_jwk(&jwk).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn algorithm_names_round_trip_and_symmetric_ones_are_unknown() {
        for a in [
            ProofAlgorithm::Es256,
            ProofAlgorithm::Es384,
            ProofAlgorithm::EdDsa,
            ProofAlgorithm::Rs256,
            ProofAlgorithm::Ps256,
        ] {
            assert_eq!(ProofAlgorithm::from_name(a.name()), Some(a));
        }
        for name in ["none", "HS256", "es256", ""] {
            assert_eq!(ProofAlgorithm::from_name(name), None);
        }
    }
}
