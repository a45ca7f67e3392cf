//! The tower adapter (feature `tower`): [`SealedSession::layer`] gives a
//! [`tower_layer::Layer`] for axum 0.8, hyper and any tower service on the `http` crate's
//! types, and `Session` is an axum extractor. Each request goes through the [`Engine`].
//!
//! ```
//! use axum::{Router, routing::get};
//! use sealed_session::{Keyring, SealedSession, Session, SessionError};
//!
//! async fn views(session: Session) -> Result<String, SessionError> {
//!     let n = session.get::<u64>("views")?.unwrap_or(0) + 1;
//!     session.insert("views", &n)?;
//!     Ok(format!("views: {n}"))
//! }
//!
//! let keys = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
//! let app: Router = Router::new()
//!     .route("/", get(views))
//!     .layer(SealedSession::sealed(keys).layer());
//! # Ok::<(), sealed_session::KeyError>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::uri::Scheme;
use tower_layer::Layer;
use tower_service::Service;

use crate::builder::SealedSession;
use crate::engine::{Engine, RequestHead};
use crate::session::{Session, SessionError};
use crate::stats::Stats;

/// The tower layer of a [`SealedSession`]: made by [`SealedSession::layer`].
///
/// ```
/// use sealed_session::{Keyring, SealedSession, Session};
///
/// async fn index(session: Session) -> String {
///     format!("{:?}", session.get::<u64>("views"))
/// }
/// let layer = SealedSession::sealed(Keyring::generate()?).layer();
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(index))
///     .layer(layer);
/// # let _ = app;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    engine: Engine,
}

impl SealedSession {
    /// This configuration as a tower layer (feature `tower`), for axum and hyper: handlers
    /// take a [`Session`] argument. Each call makes a new engine, with its own open cache.
    ///
    /// With [`Secure::Auto`](crate::Secure::Auto), a request counts as HTTPS when its URI
    /// names the scheme (absolute form), or, with `trust_proxy`, when `X-Forwarded-Proto`
    /// says so: a plain hyper server does not know whether TLS was terminated in front of
    /// it. The default, [`Secure::Always`](crate::Secure::Always), does not depend on it.
    ///
    /// ```
    /// use sealed_session::{Keyring, SealedSession, Session, SessionError};
    ///
    /// async fn index(session: Session) -> Result<String, SessionError> {
    ///     let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    ///     session.insert("n", &n)?;
    ///     Ok(n.to_string())
    /// }
    /// let sessions = SealedSession::sealed(Keyring::generate()?);
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/", axum::routing::get(index))
    ///     .layer(sessions.layer());
    /// # let _ = app;
    /// # Ok::<(), sealed_session::KeyError>(())
    /// ```
    pub fn layer(&self) -> SessionLayer {
        SessionLayer {
            engine: self.engine(),
        }
    }
}

impl SessionLayer {
    /// What this layer has done so far; see [`SealedSession::stats`].
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> SessionService<S> {
        SessionService {
            inner,
            engine: self.engine.clone(),
        }
    }
}

/// The service a [`SessionLayer`] wraps around another.
///
/// ```
/// use sealed_session::{Keyring, SealedSession};
/// use tower_layer::Layer;
///
/// let layer = SealedSession::sealed(Keyring::generate()?).layer();
/// let service = layer.layer(tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// }));
/// # let _ = service;
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    engine: Engine,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for SessionService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        // The service that was made ready is the one that serves this request; its clone
        // waits for the next `poll_ready`.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let engine = self.engine.clone();
        Box::pin(async move {
            // Without a TLS-aware connector in front, only an absolute URI names the scheme;
            // behind a proxy, `trust_proxy` reads `X-Forwarded-Proto`.
            let https = req.uri().scheme() == Some(&Scheme::HTTPS);
            let mut started = match engine.start(RequestHead::of(&req).https(https)).await {
                Ok(started) => started,
                Err(answer) => return Ok(answer.into_response()),
            };
            req.extensions_mut().insert(started.session().clone());
            // Changes are written whatever the handler's status, and when the inner service
            // fails (a timeout, say) the sessions the handler ended are still revoked or
            // deleted: a logout is not lost with the response. No response carries the
            // headers then, and an answer the engine would send instead has no response to
            // replace: the inner service's error goes on.
            // A DBSC registration or refresh is answered by the engine itself.
            let own = started.take_own_response();
            let mut resp = match own {
                Some(answer) => answer.into_response(),
                None => match inner.call(req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        let _ = engine.finish(&started, &mut http::HeaderMap::new()).await;
                        return Err(e);
                    }
                },
            };
            if let Err(answer) = engine.finish(&started, resp.headers_mut()).await {
                resp = answer.into_response();
            }
            Ok(resp)
        })
    }
}

/// The request's session, for axum handlers; a 500 naming the cause when the layer is
/// missing ([`SessionError::MiddlewareMissing`]).
impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionError::MiddlewareMissing)
    }
}

/// A [`SessionError`] as an axum response: its status ([`SessionError::status`]) and its
/// message.
impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
