//! The Poem adapter (feature `poem`): [`SealedSession`] is a Poem middleware, and `&Session`
//! (or `Session`) a handler argument. Each request goes through the [`Engine`].

use poem::error::ResponseError;
use poem::http::StatusCode;
use poem::{
    Endpoint, FromRequest, IntoResponse, Middleware, Request, RequestBody, Response, Result,
};

use crate::builder::SealedSession;
use crate::engine::{Answer, Engine, RequestHead};
use crate::session::{Session, SessionError};
use crate::stats::Stats;

/// The endpoint made by [`SealedSession`] as a Poem middleware.
///
/// ```
/// use poem::{EndpointExt, Route, get, handler};
/// use sealed_session::{Keyring, SealedSession, Session};
///
/// #[handler]
/// fn index(session: &Session) -> String {
///     format!("{:?}", session.get::<u64>("views"))
/// }
/// let sessions = SealedSession::sealed(Keyring::generate()?);
/// let endpoint = Route::new().at("/", get(index)).with(sessions.clone());
/// assert_eq!(endpoint.stats().issued, 0);
/// # Ok::<(), sealed_session::KeyError>(())
/// ```
pub struct SealedSessionEndpoint<E> {
    inner: E,
    engine: Engine,
}

impl<E> SealedSessionEndpoint<E> {
    /// What this endpoint (and the middleware it came from, with its clones) has done so
    /// far; see [`SealedSession::stats`].
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }
}

impl<E: Endpoint> Middleware<E> for SealedSession {
    type Output = SealedSessionEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        SealedSessionEndpoint {
            inner: ep,
            engine: self.engine(),
        }
    }
}

fn response(answer: Answer) -> Response {
    let (parts, body) = answer.into_response::<String>().into_parts();
    let mut resp = Response::builder().status(parts.status).body(body);
    *resp.headers_mut() = parts.headers;
    resp
}

impl<E: Endpoint> Endpoint for SealedSessionEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let https = req.scheme().as_str() == "https" || req.uri().scheme_str() == Some("https");
        // The URI as the client sent it: under `Route::nest`, `uri()` has lost the prefix,
        // and a DPoP proof names the whole URI. A request made with `Request::builder` (as
        // `poem::test::TestClient` makes them) has no original URI (`/`): `uri()` is whole.
        let uri = match req.original_uri().path() {
            "/" => req.uri(),
            _ => req.original_uri(),
        };
        let head = RequestHead::new(req.method(), uri, req.headers()).https(https);
        let mut started = match self.engine.start(head).await {
            Ok(started) => started,
            Err(answer) => return Ok(response(answer)),
        };
        if started.wants_peer_ip()
            && let Some(addr) = req.remote_addr().as_socket_addr()
        {
            started.set_peer_ip(addr.ip());
        }
        req.extensions_mut().insert(started.session().clone());
        // Changes are written even when the handler fails. A DBSC registration or refresh
        // is answered by the engine itself.
        let mut resp = match started.take_own_response() {
            Some(answer) => response(answer),
            None => match self.inner.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            },
        };
        if let Err(answer) = self.engine.finish(&started, resp.headers_mut()).await {
            resp = response(answer);
        }
        Ok(resp)
    }
}

impl ResponseError for SessionError {
    fn status(&self) -> StatusCode {
        SessionError::status(self)
    }
}

impl<'a> FromRequest<'a> for &'a Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> Result<Self> {
        req.extensions()
            .get::<Session>()
            .ok_or_else(|| SessionError::MiddlewareMissing.into())
    }
}

impl<'a> FromRequest<'a> for Session {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> Result<Self> {
        req.extensions()
            .get::<Session>()
            .cloned()
            .ok_or_else(|| SessionError::MiddlewareMissing.into())
    }
}
