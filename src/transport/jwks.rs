//! A Poem endpoint that publishes a JWT key ring's public keys as a JWK Set (RFC 7517), for
//! other services to verify this service's session JWTs. HMAC secrets are never published.

use std::sync::Arc;

use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

use crate::jwt_keys::JwtKeyring;

/// Serves the JWK Set of a [`JwtKeyring`]: mount it at `/.well-known/jwks.json`. A Poem
/// endpoint with the `poem` feature, a tower service (for axum's `route_service`) with the
/// `tower` feature.
///
/// ```
/// # #[cfg(feature = "poem")] {
/// use poem::{Route, get};
/// use sealed_session::{JwtAlgorithm, JwtKeyring, Jwks};
/// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA).unwrap();
/// let app = Route::new().at("/.well-known/jwks.json", get(Jwks::new(&ring)));
/// # }
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
    ///
    /// ```
    /// # #[cfg(feature = "poem")] {
    /// use poem::{Route, get};
    /// use sealed_session::{JwtAlgorithm, JwtKeyring, Jwks};
    ///
    /// let ring = JwtKeyring::generate(JwtAlgorithm::EdDSA)?;
    /// let app = Route::new().at("/.well-known/jwks.json", get(Jwks::new(&ring)));
    /// # let _ = app;
    /// # }
    /// # Ok::<(), sealed_session::JwtKeyError>(())
    /// ```
    pub fn new(ring: &JwtKeyring) -> Jwks {
        Jwks {
            body: Arc::from(ring.jwks_json()),
        }
    }

    /// The response, whatever the request: the set, its content type and caching.
    pub fn response<B: From<String>>(&self) -> http::Response<B> {
        let mut resp = http::Response::new(B::from(self.body.to_string()));
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        );
        resp
    }
}

#[cfg(feature = "poem")]
impl poem::Endpoint for Jwks {
    type Output = poem::Response;

    async fn call(&self, _req: poem::Request) -> poem::Result<poem::Response> {
        let (parts, body) = self.response::<String>().into_parts();
        let mut resp = poem::Response::builder().status(parts.status).body(body);
        *resp.headers_mut() = parts.headers;
        Ok(resp)
    }
}

/// Answers every request with the set (axum: `Router::route_service("/.well-known/jwks.json",
/// Jwks::new(&ring))`).
#[cfg(feature = "tower")]
impl<R> tower_service::Service<R> for Jwks {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: R) -> Self::Future {
        std::future::ready(Ok(self.response()))
    }
}
