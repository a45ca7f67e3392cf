//! The comparison's theft-resistance rows: `sealed+dbsc` (the sealed cookie, device-bound:
//! each request carries the bound cookie, checked between refreshes) and `jwt+dpop` (the
//! HS256 JWT bearer row, DPoP-bound: each request carries a fresh ES256 proof). Their login
//! is the devices row's, which gives the session a subject, as a sign-in does. The client
//! side (the DBSC registration, the DPoP proofs) signs with RustCrypto's p256, in the load
//! generator.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use poem::endpoint::BoxEndpoint;
use poem::{EndpointExt as _, Response, Route, get, post};
use sealed_session::{Keyring, SealedSession};

fn routes() -> Route {
    Route::new()
        .at("/login", post(crate::devices::login))
        .at("/read", get(crate::ours_read))
        .at("/write", post(crate::ours_write))
        .at("/logout", post(crate::ours_logout))
}

/// `sealed+dbsc`: the sealed cookie with device binding.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub fn dbsc_app(keys: Keyring) -> BoxEndpoint<'static, Response> {
    let sessions = SealedSession::sealed(keys).device_bound(sealed_session::binding::Dbsc::new());
    routes().with(sessions).map_to_response().boxed()
}

/// `jwt+dpop`: the JWT bearer row's sessions, with DPoP required.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub fn dpop_app(bearer: SealedSession) -> BoxEndpoint<'static, Response> {
    let dpop = sealed_session::binding::Dpop::new().required(true);
    routes().with(bearer.dpop(dpop)).map_to_response().boxed()
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
pub fn dbsc_app(_keys: Keyring) -> BoxEndpoint<'static, Response> {
    routes().map_to_response().boxed()
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
pub fn dpop_app(_bearer: SealedSession) -> BoxEndpoint<'static, Response> {
    routes().map_to_response().boxed()
}

/// A client's key (ES256), for DBSC registration or DPoP proofs.
pub struct ClientKey {
    key: SigningKey,
    jwk: serde_json::Value,
}

impl ClientKey {
    pub fn generate() -> ClientKey {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let coord =
            |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b)).unwrap_or_default();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": coord(point.x()), "y": coord(point.y()),
        });
        ClientKey { key, jwk }
    }

    fn jws(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// The DBSC registration proof answering the challenge of `offer` (a
    /// `Secure-Session-Registration` value), and the registration path.
    pub fn registration(&self, offer: &str) -> Option<(String, String)> {
        let param = |name: &str| {
            let start = offer.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = offer.get(start..)?;
            rest.find('"')
                .and_then(|end| rest.get(..end))
                .map(str::to_owned)
        };
        let (path, challenge) = (param("path")?, param("challenge")?);
        let header = serde_json::json!({"alg": "ES256", "typ": "dbsc+jwt", "jwk": self.jwk});
        Some((
            path,
            self.jws(&header, &serde_json::json!({ "jti": challenge })),
        ))
    }

    /// A DPoP proof for `method` on `http://{host}{path}`, with `ath` of `token`.
    pub fn dpop_proof(&self, method: &str, host: &str, path: &str, token: Option<&str>) -> String {
        let mut jti = [0u8; 16];
        let _ = getrandom::fill(&mut jti);
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = serde_json::json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": format!("http://{host}{path}"),
            "iat": iat,
        });
        if let Some(t) = token {
            use sha2::Digest as _;
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(t.as_bytes()))
                .into();
        }
        let header = serde_json::json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.jwk});
        self.jws(&header, &claims)
    }
}
