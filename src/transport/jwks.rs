//! A Poem endpoint that publishes a JWT key ring's public keys as a JWK Set (RFC 7517), for
//! other services to verify this service's session JWTs. HMAC secrets are never published.

use std::sync::Arc;

use poem::http::header::CACHE_CONTROL;
use poem::{Endpoint, Request, Response, Result};

use crate::jwt_keys::JwtKeyring;

/// Serves the JWK Set of a [`JwtKeyring`]: mount it at `/.well-known/jwks.json`.
///
/// ```
/// use poem::{Route, get};
/// use sealed_session::{JwtAlgorithm, JwtKeyring, Jwks};
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
/// let app = Route::new().at("/.well-known/jwks.json", get(Jwks::new(&ring)));
/// # Ok::<(), sealed_session::JwtKeyError>(())
/// ```
///
/// The body is built once; the response is `application/jwk-set+json` and may be cached
/// for five minutes. Keep a retired key in the ring until every token signed with it has
/// expired (the session lifetime), and publish a new key at least five minutes before
/// signing with it, so verifiers holding a cached set know it.
#[derive(Clone, Debug)]
pub struct Jwks {
    body: Arc<str>,
}

impl Jwks {
    /// The endpoint for `ring`'s public keys (an empty set when the ring holds only HMAC
    /// secrets).
    pub fn new(ring: &JwtKeyring) -> Jwks {
        Jwks {
            body: Arc::from(ring.jwks_json()),
        }
    }
}

impl Endpoint for Jwks {
    type Output = Response;

    async fn call(&self, _req: Request) -> Result<Response> {
        Ok(Response::builder()
            .content_type("application/jwk-set+json")
            .header(CACHE_CONTROL, "public, max-age=300")
            .body(self.body.to_string()))
    }
}
