//! Test helpers for HTTP-level tests: a tiny cookie jar that replays `Set-Cookie` like a
//! browser, and a tracing capture that records the events the middleware emits.
#![allow(dead_code)]

pub mod app;
pub mod handlers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use poem::Endpoint;
use poem::http::header::{COOKIE, SET_COOKIE};
use poem::test::{TestClient, TestResponse};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One parsed Set-Cookie header.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    pub attrs: Vec<String>,
    pub raw: String,
}

impl SetCookie {
    pub fn parse(raw: &str) -> SetCookie {
        let mut parts = raw.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        SetCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            attrs: parts.map(str::to_owned).collect(),
            raw: raw.to_owned(),
        }
    }
    pub fn is_removal(&self) -> bool {
        self.attrs
            .iter()
            .any(|a| a.eq_ignore_ascii_case("Max-Age=0"))
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find_map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
            k.eq_ignore_ascii_case(name).then_some(v)
        })
    }
    pub fn has_flag(&self, flag: &str) -> bool {
        self.attrs.iter().any(|a| a.eq_ignore_ascii_case(flag))
    }
}

/// A response whose headers can be read: Poem's `TestResponse` or an `http::Response`.
pub trait Headers {
    fn header_map(&self) -> &poem::http::HeaderMap;
}

impl Headers for TestResponse {
    fn header_map(&self) -> &poem::http::HeaderMap {
        self.0.headers()
    }
}

impl<B> Headers for ::http::Response<B> {
    fn header_map(&self) -> &poem::http::HeaderMap {
        self.headers()
    }
}

/// All Set-Cookie headers of a response.
pub fn set_cookies(resp: &impl Headers) -> Vec<SetCookie> {
    resp.header_map()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| SetCookie::parse(v.to_str().unwrap()))
        .collect()
}

/// A cookie jar for one client.
#[derive(Default, Debug, Clone)]
pub struct Jar {
    pub cookies: BTreeMap<String, String>,
}

impl Jar {
    /// Applies a response's Set-Cookie headers, returning them.
    pub fn absorb(&mut self, resp: &impl Headers) -> Vec<SetCookie> {
        let all = set_cookies(resp);
        for c in &all {
            if c.is_removal() {
                self.cookies.remove(&c.name);
            } else {
                self.cookies.insert(c.name.clone(), c.value.clone());
            }
        }
        all
    }
    /// The Cookie header value, or None when empty.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }
}

pub const COOKIE_HEADER: poem::http::HeaderName = COOKIE;

/// A browser in miniature: Poem's test client with a [`Jar`] that sends the cookies it was
/// given and keeps those the answers set.
pub struct Client<E: Endpoint> {
    pub tc: TestClient<E>,
    pub jar: Jar,
}

impl<E: Endpoint> Client<E> {
    pub fn new(ep: E) -> Self {
        Client {
            tc: TestClient::new(ep),
            jar: Jar::default(),
        }
    }

    /// `GET` (`post` false) or `POST` `uri` with the jar's cookies; the jar takes the
    /// answer's Set-Cookie headers, which are also returned.
    pub async fn send(&mut self, post: bool, uri: &str) -> (TestResponse, Vec<SetCookie>) {
        let resp = self.send_with(post, uri, self.jar.header()).await;
        let set = self.jar.absorb(&resp);
        (resp, set)
    }

    /// A request with exactly `cookie` (the jar neither used nor changed).
    pub async fn send_with(&self, post: bool, uri: &str, cookie: Option<String>) -> TestResponse {
        let mut req = if post {
            self.tc.post(uri)
        } else {
            self.tc.get(uri)
        };
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        req.send().await
    }

    /// The body of [`Client::send`]'s answer.
    pub async fn text(&mut self, post: bool, uri: &str) -> String {
        let (resp, _) = self.send(post, uri).await;
        resp.0.into_body().into_string().await.unwrap()
    }

    /// [`Client::text`] for a request that must succeed: asserts `200 OK` first.
    pub async fn text_ok(&mut self, post: bool, uri: &str) -> String {
        let (resp, _) = self.send(post, uri).await;
        resp.assert_status_is_ok();
        resp.0.into_body().into_string().await.unwrap()
    }
}

/// The body of an answer.
pub async fn body(resp: TestResponse) -> String {
    resp.0.into_body().into_string().await.unwrap()
}

/// One captured tracing event: level, message and fields as text, and the name of the
/// span it happened in.
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: tracing::Level,
    pub fields: BTreeMap<String, String>,
    pub span: Option<String>,
}

/// One closed span: its name and its fields as last recorded.
#[derive(Debug, Clone)]
pub struct CapturedSpan {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<Captured>>>,
    spans: Arc<Mutex<Vec<CapturedSpan>>>,
}

impl Capture {
    pub fn events(&self) -> Vec<Captured> {
        self.events.lock().unwrap().clone()
    }
    /// Spans closed so far.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.spans.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
        self.spans.lock().unwrap().clear();
    }
    /// Events carrying a `reason` field.
    pub fn reasons(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| e.fields.get("reason").cloned())
            .collect()
    }
}

struct V<'a>(&'a mut BTreeMap<String, String>);
impl Visit for V<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

thread_local! {
    /// The captures active on this thread, innermost last.
    static ACTIVE: std::cell::RefCell<Vec<Capture>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn deliver(f: impl FnOnce(&Capture)) {
    ACTIVE.with(|a| {
        if let Some(c) = a.borrow().last() {
            f(c);
        }
    });
}

/// Fields of a live span.
struct SpanFields(BTreeMap<String, String>);

/// The one global layer: hands what happens on a thread to that thread's capture.
struct Router;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Router {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut V(&mut fields));
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        deliver(|c| {
            c.events.lock().unwrap().push(Captured {
                level: *event.metadata().level(),
                fields,
                span,
            })
        });
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut V(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &tracing::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(f) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut V(&mut f.0));
        }
    }

    fn on_close(&self, id: tracing::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<SpanFields>()
                .map(|f| f.0.clone())
                .unwrap_or_default();
            let name = span.name().to_owned();
            deliver(|c| c.spans.lock().unwrap().push(CapturedSpan { name, fields }));
        }
    }
}

/// Stops a capture when dropped.
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        ACTIVE.with(|a| {
            a.borrow_mut().pop();
        });
    }
}

/// Captures the events and spans of the current thread until the guard drops (use with
/// current-thread tests).
///
/// One global subscriber routes to per-thread captures. Thread-local subscribers
/// (`set_default`) lose events when tests run in parallel: tracing caches per callsite
/// whether any subscriber is interested, and a callsite first reached on a thread with
/// none can be cached as "never" for every thread.
pub fn capture() -> (Capture, CaptureGuard) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Router));
    });
    let cap = Capture::default();
    ACTIVE.with(|a| a.borrow_mut().push(cap.clone()));
    (cap, CaptureGuard(()))
}

/// One request with the jar's cookies; the jar takes the response's Set-Cookie headers.
/// Returns the status and the body.
pub async fn send<E: poem::Endpoint>(
    tc: &poem::test::TestClient<E>,
    jar: &mut Jar,
    post: bool,
    uri: &str,
) -> (poem::http::StatusCode, String) {
    let mut req = if post { tc.post(uri) } else { tc.get(uri) };
    if let Some(c) = jar.header() {
        req = req.header("cookie", c);
    }
    let resp = req.send().await;
    jar.absorb(&resp);
    let status = resp.0.status();
    (
        status,
        resp.0.into_body().into_string().await.unwrap_or_default(),
    )
}
