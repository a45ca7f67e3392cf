//! `GET /session`: where the session is, and how to decode it, as the seeds ask ("where is
//! that cookie, and how do I decode it?"). On one side what the browser holds (each cookie's
//! name and size, and what a session token shows without the key: format version, kind,
//! key id and algorithm); on the other what the server reads from it (id, times, subject,
//! binding, data; in store mode the record the store keeps); then the `sealed-session
//! inspect` command line that decodes the same cookie.

use std::sync::{Arc, OnceLock};

use sealed_session::codec::peek;
use sealed_session::store::Store;
use sealed_session::{Keyring, Session, SessionError, Timestamp};

use super::{Reply, escape, page};

/// What the page needs to know of the running demo.
pub struct SessionView {
    /// `sealed` or `store`.
    pub mode: &'static str,
    /// The cookie keys, for the algorithm a key id names.
    pub keys: Keyring,
    /// Store mode: the store, to show the record it keeps.
    pub store: Option<Arc<dyn Store>>,
}

static VIEW: OnceLock<SessionView> = OnceLock::new();

/// Tells the page about the running demo (once, at start).
pub fn init(view: SessionView) {
    let _ = VIEW.set(view);
}

/// How far `t` is from `now`, for people.
fn relative(t: Timestamp, now: Timestamp) -> String {
    let (d, ago) = if t >= now {
        (t.saturating_since(now), false)
    } else {
        (now.saturating_since(t), true)
    };
    let s = d.as_secs();
    let text = match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    };
    if ago {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// The `name=value` pairs of a `Cookie` header.
fn cookies(header: Option<&str>) -> Vec<(&str, &str)> {
    header
        .unwrap_or_default()
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .collect()
}

/// `GET /session`. `cookie_header`: the request's `Cookie` header; `now`: the time.
pub async fn session_page(
    session: &Session,
    cookie_header: Option<&str>,
    now: Timestamp,
) -> Result<Reply, SessionError> {
    let Some(view) = VIEW.get() else {
        return Ok(Reply::page(page(
            "Your session",
            "<p>Not available in this mode.</p>",
        )));
    };
    // What the browser holds.
    let mut held = String::new();
    let mut session_cookie = None;
    for (name, value) in cookies(cookie_header) {
        let what = match peek(value) {
            Ok(p) => {
                let alg = view
                    .keys
                    .keys()
                    .find(|k| k.id() == p.header.key_id)
                    .map_or("a key no longer in the ring".to_owned(), |k| {
                        k.algorithm().to_string()
                    });
                session_cookie.get_or_insert((name, value.len()));
                format!(
                    "a session token: format version {}, kind <code>{}</code>, key id <code>{}</code> ({})",
                    p.header.version,
                    p.header.kind.name(),
                    escape(&p.header.key_id),
                    escape(&alg)
                )
            }
            Err(_) if name.ends_with("_bound") => {
                "the device-bound session's short-lived cookie (DBSC)".to_owned()
            }
            Err(_) => "not a session token".to_owned(),
        };
        held.push_str(&format!(
            "<tr class=\"cookie\"><td><code>{}</code></td><td>{} bytes</td><td>{what}</td></tr>",
            escape(name),
            value.len()
        ));
    }
    if held.is_empty() {
        held.push_str(
            "<tr><td colspan=\"3\">no cookies: nothing is stored in this session yet</td></tr>",
        );
    }
    // What the server reads.
    let data = serde_json::Value::Object(session.data());
    let data = serde_json::to_string_pretty(&data).unwrap_or_default();
    let binding = match session.binding() {
        Some(_) => "yes: a key the browser registered (DBSC)",
        None => "no",
    };
    let row = |k: &str, v: String| format!("<tr><th>{k}</th><td>{v}</td></tr>");
    let mut read = [
        row(
            "session id",
            format!("<code id=\"session-id\">{}</code>", session.id()),
        ),
        row(
            "new (nothing came, or it was refused)",
            session.is_new().to_string(),
        ),
        row("issued", relative(session.issued_at(), now)),
        row("last seen", relative(session.last_seen(), now)),
        row("deadline", relative(session.expires_at(), now)),
        row(
            "subject",
            escape(&session.subject().unwrap_or_else(|| "none".to_owned())),
        ),
        row("device-bound", binding.to_owned()),
        row(
            "data",
            format!("<pre id=\"session-data\">{}</pre>", escape(&data)),
        ),
    ]
    .concat();
    if let Some(store) = &view.store {
        let record = match store.load(&session.id()).await {
            Ok(Some(r)) => format!(
                "<span id=\"store-record\">{} bytes</span> under the id (the payload of \
                 docs/FORMAT.md, section 7): the cookie holds only the signed id",
                r.len()
            ),
            Ok(None) => "none: nothing saved yet".to_owned(),
            Err(e) => format!("the store did not answer: {}", escape(&e.to_string())),
        };
        read.push_str(&row("the store's record", record));
    }
    let command = match session_cookie {
        Some((name, _)) => format!(
            "sealed-session inspect --keys \"$SESSION_KEYS\" '{}=COOKIE_VALUE'",
            escape(name)
        ),
        None => "sealed-session inspect --keys \"$SESSION_KEYS\" 'COOKIE'".to_owned(),
    };
    let body = format!(
        "<p>Mode: <strong id=\"mode\">{mode}</strong>. {where_}</p>\
         <h2>What your browser holds</h2>\
         <table id=\"cookies\"><tr><th>cookie</th><th>size</th><th>what it shows without the key</th></tr>{held}</table>\
         <h2>What the server reads from it</h2><table id=\"server\">{read}</table>\
         <h2>Decode it yourself</h2>\
         <p>Copy the cookie's value from your browser's developer tools (it is HttpOnly: \
         this page's scripts cannot read it), then:</p><pre id=\"inspect\">{command}</pre>\
         <p><code>cargo install --path . --features cli</code> installs the tool; \
         docs/CLI.md says what it prints.</p>\
         <p><a href=\"/\">Home</a> · <a href=\"/devices\">Your devices</a></p>",
        mode = view.mode,
        where_ = match view.mode {
            "store" => "The cookie holds a signed session id; the session lives in the store.",
            _ => "The whole session travels in the cookie, encrypted: the server keeps nothing.",
        },
    );
    Ok(Reply::page(page("Your session", &body)))
}
