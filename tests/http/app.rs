//! One test application, two adapters: routes whose handlers are plain functions of the
//! session, mounted on a Poem `Route` behind the middleware or on an axum `Router` behind
//! the tower layer, and a client that sends `http` requests to either and answers
//! `http::Response<String>`.
//!
//! A suite writes each scenario once as `async fn scenario(a: Adapter)`, builds its apps
//! with `a.app(&routes, mw)`, and lists its scenarios in [`both!`], which makes one
//! `#[tokio::test]` per adapter (`on_poem::scenario`, `on_tower::scenario`). Each adapter
//! is there when its feature is: a build without `tower` runs the Poem tests only.
//!
//! The adapters' own code is what runs: the session comes from each framework's extractor
//! (Poem's `FromRequest`, axum's `FromRequestParts`), a handler's `SessionError` goes out
//! through each framework's error path (a Poem `Err`, axum's `IntoResponse`), and requests
//! go through Poem's `Endpoint::get_response` (as `poem::test::TestClient` does) or
//! tower's `oneshot`.
#![allow(dead_code)]

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ::http::header::{CONTENT_TYPE, COOKIE, HeaderName, HeaderValue};
use ::http::{Method, StatusCode};
use sealed_session::{SealedSession, Session, SessionError, Stats};

use super::{Jar, SetCookie};

/// Which adapter a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adapter {
    /// The Poem middleware (`Route::with(SealedSession)`).
    #[cfg(feature = "poem")]
    Poem,
    /// The tower layer on an axum router (`Router::layer(SealedSession::layer())`).
    #[cfg(feature = "tower")]
    Tower,
}

impl Adapter {
    /// `routes` behind `mw`.
    pub fn app(self, routes: &Routes, mw: SealedSession) -> App {
        self.mount(routes, Some(mw))
    }

    /// `routes` without the middleware.
    pub fn bare(self, routes: &Routes) -> App {
        self.mount(routes, None)
    }

    fn mount(self, routes: &Routes, mw: Option<SealedSession>) -> App {
        match self {
            #[cfg(feature = "poem")]
            Adapter::Poem => on_poem::mount(routes, mw),
            #[cfg(feature = "tower")]
            Adapter::Tower => on_tower::mount(routes, mw),
        }
    }
}

// ---- Handlers ----

/// What a handler gets: the request's session and the route's path parameters.
pub struct Req {
    pub session: Session,
    params: Vec<(String, String)>,
}

impl Req {
    /// The path parameter `name` (`/:name` in the route), parsed.
    pub fn param<T: std::str::FromStr>(&self, name: &str) -> T {
        let raw = self
            .params
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
            .unwrap_or_else(|| panic!("no path parameter {name}"));
        raw.parse()
            .unwrap_or_else(|_| panic!("path parameter {name}: cannot parse {raw:?}"))
    }

    /// The `i`-th path parameter, parsed (as Poem's `Path<(A, B)>` reads them).
    pub fn param_at<T: std::str::FromStr>(&self, i: usize) -> T {
        let raw = &self
            .params
            .get(i)
            .unwrap_or_else(|| panic!("no path parameter {i}"))
            .1;
        raw.parse()
            .unwrap_or_else(|_| panic!("path parameter {i}: cannot parse {raw:?}"))
    }
}

/// A successful answer: a status, a content type, other headers and a body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: Option<&'static str>,
    /// Headers the handler sets, appended in order (as Poem's `with_header` and axum's
    /// header tuples do).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: String,
}

impl Reply {
    /// `200 OK`, `text/plain`, as Poem and axum answer a `String`.
    pub fn text(body: impl Into<String>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: Some("text/plain; charset=utf-8"),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// This answer with the header `key: value` too.
    pub fn with_header(mut self, key: HeaderName, value: &'static str) -> Reply {
        self.headers.push((key, HeaderValue::from_static(value)));
        self
    }
}

/// A JSON answer, as `poem::web::Json` and `axum::Json` make it.
pub struct Json(pub serde_json::Value);

/// A failed handler: a session error (which goes out through the adapter's own conversion:
/// Poem's `ResponseError`, axum's `IntoResponse`), or any other status and message.
#[derive(Debug)]
pub enum Fail {
    Session(SessionError),
    Status(StatusCode, String),
}

impl Fail {
    pub fn status(status: StatusCode, msg: impl Into<String>) -> Fail {
        Fail::Status(status, msg.into())
    }
}

impl From<SessionError> for Fail {
    fn from(e: SessionError) -> Fail {
        Fail::Session(e)
    }
}

/// What a handler's answer can be.
pub trait IntoReply {
    fn into_reply(self) -> Reply;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}
impl IntoReply for String {
    fn into_reply(self) -> Reply {
        Reply::text(self)
    }
}
impl IntoReply for &'static str {
    fn into_reply(self) -> Reply {
        Reply::text(self)
    }
}
impl IntoReply for () {
    /// An empty `200 OK`, without a content type, as both frameworks answer `()`.
    fn into_reply(self) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: None,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}
impl IntoReply for Json {
    fn into_reply(self) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type: Some("application/json; charset=utf-8"),
            headers: Vec::new(),
            body: self.0.to_string(),
        }
    }
}

/// What a handler returns: an answer, or a `Result` of one.
pub trait Outcome {
    fn outcome(self) -> Result<Reply, Fail>;
}

impl<T: IntoReply, E: Into<Fail>> Outcome for Result<T, E> {
    fn outcome(self) -> Result<Reply, Fail> {
        self.map(IntoReply::into_reply).map_err(Into::into)
    }
}

macro_rules! plain_outcome {
    ($($t:ty),*) => {$(
        impl Outcome for $t {
            fn outcome(self) -> Result<Reply, Fail> {
                Ok(self.into_reply())
            }
        }
    )*};
}
plain_outcome!(Reply, String, &'static str, (), Json);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A handler, framework-neutral.
pub type DynHandler = Arc<dyn Fn(Req) -> BoxFuture<Result<Reply, Fail>> + Send + Sync>;

/// The shapes a handler can have: `fn(&Session) -> R`, `fn(&Req) -> R`, and the async
/// `fn(Session) -> impl Future<Output = R>` and `fn(Req) -> impl Future<Output = R>`, where
/// `R` is an [`Outcome`]. `M` tells the shapes apart.
pub trait Handler<M>: Send + Sync + 'static {
    fn into_dyn(self) -> DynHandler;
}

pub struct BySession;
pub struct ByReq;
pub struct AsyncSession;
pub struct AsyncReq;

impl<F, R> Handler<BySession> for F
where
    F: Fn(&Session) -> R + Send + Sync + 'static,
    R: Outcome,
{
    fn into_dyn(self) -> DynHandler {
        Arc::new(move |req: Req| Box::pin(std::future::ready(self(&req.session).outcome())))
    }
}

impl<F, R> Handler<ByReq> for F
where
    F: Fn(&Req) -> R + Send + Sync + 'static,
    R: Outcome,
{
    fn into_dyn(self) -> DynHandler {
        Arc::new(move |req: Req| Box::pin(std::future::ready(self(&req).outcome())))
    }
}

impl<F, Fut> Handler<AsyncSession> for F
where
    F: Fn(Session) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Outcome,
{
    fn into_dyn(self) -> DynHandler {
        Arc::new(move |req: Req| {
            let fut = self(req.session);
            Box::pin(async move { fut.await.outcome() })
        })
    }
}

impl<F, Fut> Handler<AsyncReq> for F
where
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Outcome,
{
    fn into_dyn(self) -> DynHandler {
        Arc::new(move |req: Req| {
            let fut = self(req);
            Box::pin(async move { fut.await.outcome() })
        })
    }
}

/// One route.
#[derive(Clone)]
struct Route {
    method: Method,
    /// Poem's syntax: `/set/:key/:val`.
    path: String,
    /// The names of its parameters, in order.
    params: Vec<String>,
    handler: DynHandler,
}

/// An application's routes, to mount on either adapter.
#[derive(Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// `handler` for `method` on `path`, whose parameters are written `:name` (Poem's
    /// syntax; the axum mount writes them `{name}`).
    pub fn at<M>(mut self, method: Method, path: &str, handler: impl Handler<M>) -> Routes {
        let params = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix(':'))
            .map(str::to_owned)
            .collect();
        self.routes.push(Route {
            method,
            path: path.to_owned(),
            params,
            handler: handler.into_dyn(),
        });
        self
    }

    pub fn get<M>(self, path: &str, handler: impl Handler<M>) -> Routes {
        self.at(Method::GET, path, handler)
    }

    pub fn post<M>(self, path: &str, handler: impl Handler<M>) -> Routes {
        self.at(Method::POST, path, handler)
    }

    /// The routes grouped by path, in the order first seen.
    fn by_path(&self) -> Vec<(&str, Vec<&Route>)> {
        let mut out: Vec<(&str, Vec<&Route>)> = Vec::new();
        for r in &self.routes {
            match out.iter_mut().find(|(p, _)| *p == r.path) {
                Some((_, v)) => v.push(r),
                None => out.push((&r.path, vec![r])),
            }
        }
        out
    }
}

// ---- The application and its client ----

/// A response, its body as text.
pub type Resp = ::http::Response<String>;

type DynApp = dyn Fn(::http::Request<String>) -> BoxFuture<Resp> + Send + Sync;

type DynStats = dyn Fn() -> Stats + Send + Sync;

/// A mounted application: cheap to clone, each clone the same app (the same engine).
#[derive(Clone)]
pub struct App {
    call: Arc<DynApp>,
    /// The mounted middleware's or layer's own counters, when there is one.
    stats: Option<Arc<DynStats>>,
}

impl App {
    /// Sends one request.
    pub fn call(&self, req: ::http::Request<String>) -> impl Future<Output = Resp> + Send + use<> {
        (self.call)(req)
    }

    /// What the mounted endpoint (Poem's `SealedSessionEndpoint::stats`) or layer
    /// (`SessionLayer::stats`) has counted; panics for an app without the middleware.
    pub fn stats(&self) -> Stats {
        (self.stats.as_ref().expect("an app behind the middleware"))()
    }

    pub fn request(&self, method: Method, uri: impl Display) -> RequestBuilder {
        RequestBuilder {
            app: self.clone(),
            req: ::http::Request::builder()
                .method(method)
                .uri(uri.to_string())
                .body(String::new())
                .unwrap(),
        }
    }

    pub fn get(&self, uri: impl Display) -> RequestBuilder {
        self.request(Method::GET, uri)
    }

    pub fn post(&self, uri: impl Display) -> RequestBuilder {
        self.request(Method::POST, uri)
    }
}

/// A request on its way, in the manner of `poem::test::TestRequestBuilder`.
pub struct RequestBuilder {
    app: App,
    req: ::http::Request<String>,
}

impl RequestBuilder {
    /// Appends a header (a second `cookie` header is a second header, as HTTP/2 sends them).
    pub fn header<K, V>(mut self, key: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        let (Ok(key), Ok(value)) = (key.try_into(), value.try_into()) else {
            panic!("an invalid header");
        };
        self.req.headers_mut().append(key, value);
        self
    }

    pub fn send(self) -> impl Future<Output = Resp> + Send {
        self.app.call(self.req)
    }
}

/// Assertions on a response, named as `poem::test::TestResponse`'s.
pub trait RespExt {
    fn assert_status_is_ok(&self);
    fn assert_status(&self, status: StatusCode);
    fn assert_text(&self, text: &str);
    fn assert_content_type(&self, content_type: &str);
    fn assert_header_is_not_exist(&self, key: &str);
    fn assert_json(&self, json: serde_json::Value);
}

impl RespExt for Resp {
    #[track_caller]
    fn assert_status_is_ok(&self) {
        self.assert_status(StatusCode::OK);
    }
    #[track_caller]
    fn assert_status(&self, status: StatusCode) {
        assert_eq!(self.status(), status, "body: {}", self.body());
    }
    #[track_caller]
    fn assert_text(&self, text: &str) {
        assert_eq!(self.body(), text);
    }
    #[track_caller]
    fn assert_content_type(&self, content_type: &str) {
        assert_eq!(
            self.headers()
                .get(CONTENT_TYPE)
                .map(|v| v.to_str().unwrap()),
            Some(content_type)
        );
    }
    #[track_caller]
    fn assert_header_is_not_exist(&self, key: &str) {
        assert!(
            !self.headers().contains_key(key),
            "{key}: {:?}",
            self.headers().get(key)
        );
    }
    /// The body, parsed, is `json` (as Poem's `assert_json` compares them).
    #[track_caller]
    fn assert_json(&self, json: serde_json::Value) {
        let body: serde_json::Value = serde_json::from_str(self.body())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body()));
        assert_eq!(body, json);
    }
}

/// A browser in miniature: an [`App`] and a [`Jar`] that sends the cookies it was given and
/// keeps those the answers set.
pub struct Client {
    pub app: App,
    pub jar: Jar,
}

impl Client {
    pub fn new(app: App) -> Self {
        Client {
            app,
            jar: Jar::default(),
        }
    }

    /// `GET` (`post` false) or `POST` `uri` with the jar's cookies; the jar takes the
    /// answer's Set-Cookie headers, which are also returned.
    pub async fn send(&mut self, post: bool, uri: &str) -> (Resp, Vec<SetCookie>) {
        let resp = self.send_with(post, uri, self.jar.header()).await;
        let set = self.jar.absorb(&resp);
        (resp, set)
    }

    /// A request with exactly `cookie` (the jar neither used nor changed).
    pub fn send_with(
        &self,
        post: bool,
        uri: &str,
        cookie: Option<String>,
    ) -> impl Future<Output = Resp> + Send + use<> {
        let mut req = if post {
            self.app.post(uri)
        } else {
            self.app.get(uri)
        };
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send()
    }

    /// The body of [`Client::send`]'s answer.
    pub async fn text(&mut self, post: bool, uri: &str) -> String {
        let (resp, _) = self.send(post, uri).await;
        resp.into_body()
    }

    /// [`Client::text`] for a request that must succeed: asserts `200 OK` first.
    pub async fn text_ok(&mut self, post: bool, uri: &str) -> String {
        let (resp, _) = self.send(post, uri).await;
        resp.assert_status_is_ok();
        resp.into_body()
    }
}

/// One request with the jar's cookies; the jar takes the response's Set-Cookie headers.
/// Returns the status and the body.
pub async fn send(app: &App, jar: &mut Jar, post: bool, uri: &str) -> (StatusCode, String) {
    let mut req = if post { app.post(uri) } else { app.get(uri) };
    if let Some(c) = jar.header() {
        req = req.header(COOKIE, c);
    }
    let resp = req.send().await;
    jar.absorb(&resp);
    (resp.status(), resp.into_body())
}

/// Each scenario of the list once per adapter: `async fn scenario(a: Adapter)` becomes the
/// tests `on_poem::scenario` (feature `poem`) and `on_tower::scenario` (feature `tower`).
/// A scenario may be preceded by `#[tower_ignore = "reason"]` to keep it off the tower
/// adapter's run (reported as ignored, with the reason).
#[allow(unused_macros)]
macro_rules! both {
    ($($(#[tower_ignore = $why:literal])? $name:ident),* $(,)?) => {
        #[cfg(feature = "poem")]
        mod on_poem {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::http::app::Adapter::Poem).await
                }
            )*
        }
        #[cfg(feature = "tower")]
        mod on_tower {
            $(
                #[tokio::test]
                $(#[ignore = $why])?
                async fn $name() {
                    super::$name($crate::http::app::Adapter::Tower).await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both;

// ---- The adapters ----

#[cfg(feature = "poem")]
mod on_poem {
    use poem::{Endpoint, EndpointExt, FromRequest, IntoResponse};

    use super::*;

    fn endpoint(r: &Route) -> impl Endpoint<Output = poem::Response> + 'static {
        let (handler, names) = (r.handler.clone(), r.params.clone());
        poem::endpoint::make(move |req: poem::Request| {
            let (handler, names) = (handler.clone(), names.clone());
            async move {
                // Poem's own extractor: a 500 naming the cause without the middleware.
                let session = Session::from_request_without_body(&req).await?;
                let params = names
                    .iter()
                    .map(|n| {
                        let v = req.raw_path_param(n).unwrap_or_default().to_owned();
                        (n.clone(), v)
                    })
                    .collect();
                match handler(Req { session, params }).await {
                    Ok(reply) => {
                        let mut resp = poem::Response::builder().status(reply.status);
                        if let Some(ct) = reply.content_type {
                            resp = resp.content_type(ct);
                        }
                        let mut resp = resp.body(reply.body);
                        for (k, v) in reply.headers {
                            resp.headers_mut().append(k, v);
                        }
                        Ok(resp)
                    }
                    // The handler's error, as a Poem handler returns it: the middleware
                    // sees an `Err`.
                    Err(Fail::Session(e)) => Err(poem::Error::from(e)),
                    Err(Fail::Status(status, msg)) => Err(poem::Error::from_string(msg, status)),
                }
            }
        })
    }

    pub(super) fn mount(routes: &Routes, mw: Option<SealedSession>) -> App {
        let mut route = poem::Route::new();
        for (path, rs) in routes.by_path() {
            let mut methods = poem::RouteMethod::new();
            for r in rs {
                methods = methods.method(r.method.clone(), endpoint(r));
            }
            route = route.at(path, methods);
        }
        let (ep, stats): (Arc<poem::endpoint::BoxEndpoint<'static, poem::Response>>, _) = match mw {
            Some(mw) => {
                let ep = Arc::new(route.with(mw));
                let counted = ep.clone();
                let stats: Arc<DynStats> = Arc::new(move || counted.stats());
                (Arc::new(ep.map_to_response().boxed()), Some(stats))
            }
            None => (Arc::new(route.map_to_response().boxed()), None),
        };
        let call = Arc::new(move |req: ::http::Request<String>| {
            let ep = ep.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let mut preq = poem::Request::builder()
                    .method(parts.method)
                    .uri(parts.uri)
                    .version(parts.version)
                    .body(body);
                *preq.headers_mut() = parts.headers;
                // As `poem::test::TestClient` sends a request.
                let resp = ep.get_response(preq).await.into_response();
                let status = resp.status();
                let headers = resp.headers().clone();
                let bytes = resp.into_body().into_vec().await.unwrap();
                let mut out = ::http::Response::new(String::from_utf8(bytes).unwrap());
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                out
            }) as BoxFuture<Resp>
        });
        App { call, stats }
    }
}

#[cfg(feature = "tower")]
mod on_tower {
    use axum::extract::RawPathParams;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{MethodFilter, MethodRouter};
    use tower::ServiceExt;

    use super::*;

    fn respond(out: Result<Reply, Fail>) -> Response {
        match out {
            Ok(reply) => {
                let mut resp = (reply.status, reply.body).into_response();
                match reply.content_type {
                    Some(ct) => {
                        resp.headers_mut()
                            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
                    }
                    None => {
                        resp.headers_mut().remove(CONTENT_TYPE);
                    }
                }
                for (k, v) in reply.headers {
                    resp.headers_mut().append(k, v);
                }
                resp
            }
            // The adapter's `IntoResponse for SessionError`.
            Err(Fail::Session(e)) => e.into_response(),
            Err(Fail::Status(status, msg)) => (status, msg).into_response(),
        }
    }

    /// `/set/:key/:val` as axum writes it: `/set/{key}/{val}`.
    fn axum_path(path: &str) -> String {
        path.split('/')
            .map(|seg| match seg.strip_prefix(':') {
                Some(name) => format!("{{{name}}}"),
                None => seg.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub(super) fn mount(routes: &Routes, mw: Option<SealedSession>) -> App {
        let mut router = axum::Router::new();
        for (path, rs) in routes.by_path() {
            let mut methods = MethodRouter::new();
            for r in rs {
                let filter = MethodFilter::try_from(r.method.clone()).unwrap();
                let (handler, names) = (r.handler.clone(), r.params.clone());
                // The adapter's extractor: a 500 naming the cause without the layer.
                methods = if r.params.is_empty() {
                    methods.on(filter, move |session: Session| async move {
                        respond(
                            handler(Req {
                                session,
                                params: Vec::new(),
                            })
                            .await,
                        )
                    })
                } else {
                    methods.on(
                        filter,
                        move |session: Session, raw: RawPathParams| async move {
                            // In the route's order, as the Poem mount gives them.
                            let params = names
                                .iter()
                                .map(|n| {
                                    let v = raw.iter().find(|(k, _)| k == n).unwrap().1;
                                    (n.clone(), v.to_owned())
                                })
                                .collect();
                            respond(handler(Req { session, params }).await)
                        },
                    )
                };
            }
            router = router.route(&axum_path(path), methods);
        }
        let mut stats: Option<Arc<DynStats>> = None;
        if let Some(mw) = mw {
            let layer = mw.layer();
            let counted = layer.clone();
            stats = Some(Arc::new(move || counted.stats()));
            router = router.layer(layer);
        }
        let call = Arc::new(move |req: ::http::Request<String>| {
            let router = router.clone();
            Box::pin(async move {
                let resp = router
                    .oneshot(req.map(axum::body::Body::from))
                    .await
                    .unwrap();
                let (parts, body) = resp.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                ::http::Response::from_parts(parts, String::from_utf8(bytes.to_vec()).unwrap())
            }) as BoxFuture<Resp>
        });
        App { call, stats }
    }
}
