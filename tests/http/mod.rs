//! Test helpers for HTTP-level tests: a tiny cookie jar that replays `Set-Cookie` like a
//! browser, and a tracing capture that records the events the middleware emits.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use poem::http::header::{COOKIE, SET_COOKIE};
use poem::test::TestResponse;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

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

/// All Set-Cookie headers of a response.
pub fn set_cookies(resp: &TestResponse) -> Vec<SetCookie> {
    resp.0
        .headers()
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
    pub fn absorb(&mut self, resp: &TestResponse) -> Vec<SetCookie> {
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

/// One captured tracing event: level, message and fields as text.
#[derive(Debug, Clone)]
pub struct Captured {
    pub level: tracing::Level,
    pub fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<Captured>>>);

impl Capture {
    pub fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
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

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut V(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            fields,
        });
    }
}

/// Installs a capturing subscriber for the current thread (use with current-thread tests).
///
/// tracing caches, per callsite, whether any subscriber is interested; with only one
/// thread-local subscriber alive, a callsite first reached on a thread that has none is
/// cached as "never". Rebuilding the cache here makes this thread's subscriber count; tests
/// that assert on events should capture before their first request.
pub fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let cap = Capture::default();
    let sub = tracing_subscriber::registry().with(cap.clone());
    let guard = tracing::subscriber::set_default(sub);
    tracing::callsite::rebuild_interest_cache();
    (cap, guard)
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
