//! A test-only Device Bound Session Credentials (DBSC) "browser", written from the W3C
//! draft and NOT from this crate's server code, so that the two cannot share a mistake.
//!
//! # Sources
//!
//! * W3C `w3c/webappsec-dbsc`, `spec.bs` at commit
//!   `004d31c0675fc9890864f9bb0ad9c47679fd3af1` (the newest version that could be read: it
//!   has the `Secure-Session-*` header names, RFC 9651 structured fields and the
//!   `include_site` / `.well-known` rules). Sections followed:
//!   - §"Identify session" (`#algo-identify-session`),
//!   - §"Identify if a URL is in scope of a session" (`#algo-url-in-scope`),
//!   - §"Identify if a host matches a pattern" (`#algo-host-pattern-matches`),
//!   - §"Identify session needing refresh" (`#algo-identify-session-needing-refresh`),
//!   - §"Identify if missing session credential"
//!     (`#algo-identify-if-missing-session-credential`),
//!   - §"Cache challenge" (`#algo-process-challenge`),
//!   - §"Send request" (`#algo-session-request`): status handling of registration and
//!     refresh, `continue: false`, session-instruction validation,
//!   - §"Create session" (`#algo-create-session`) and §"Create session key",
//!   - §"DBSC Formats": `Secure-Session-Registration`, `Secure-Session-Challenge`,
//!     `Secure-Session-Response`, `Sec-Secure-Session-Id`, the JSON session instructions,
//!     scope, scope rule and credentials formats,
//!   - §"Changes to the Fetch specification" (defer the request, refresh, restart).
//! * The DBSC proof JWT (§"DBSC Proof JWT Syntax") as changed by w3c/webappsec-dbsc PR #216
//!   "Update JWT format" (merged 2025-09-02, closing issue #201) and the explainer update
//!   PR #222, cross-checked against Chromium's
//!   `net/device_bound_sessions/session_binding_utils.cc` (2025–2026:
//!   `CreateKeyRegistrationHeaderAndPayload`, `CreateKeyRefreshHeaderAndPayload`):
//!   header `{"alg","typ":"dbsc+jwt","jwk"}` on registration and `{"alg","typ"}` (no `jwk`)
//!   on refresh; payload `{"jti": <challenge>}` plus `"authorization"` on registration when
//!   the registration header carried one. No `aud`, `iat`, `key` or `sub` (those were the
//!   pre-#216 format of the commit above).
//! * Chromium `net/device_bound_sessions/registration_fetcher.cc`,
//!   `registration_fetcher_param.cc`, `session_challenge_param.cc` and
//!   `session_json_utils.cc` (2025–2026) as tie-breakers for header names and where the
//!   draft is silent (at most 5 challenge rounds; credentials must be non-empty; a 200
//!   refresh with an empty body means "no config change").
//!
//! # What is modelled, and what is not
//!
//! One site, over real HTTP/1.1 to a server on a loopback port (`http://127.0.0.1:port` is a
//! potentially trustworthy origin, as browsers treat localhost, so `Secure` cookies are
//! sent and DBSC is allowed over plain HTTP). Registration is done synchronously, right
//! after the response that carried the header (a real browser does it in the background).
//! Redirects are not followed (a 3xx is handed back; for a DBSC request it is a failure
//! that keeps the session, as the draft says). The cookie jar keys cookies by name only:
//! Domain, Path, SameSite and HttpOnly are stored but not evaluated, and a credential is
//! "missing" exactly when no live cookie of its name is in the jar. Sessions do not expire
//! (the draft leaves the session expiration timestamp to the user agent). The
//! `allowed_refresh_initiators` list is stored but every request is same-origin, so it
//! never matters. `.well-known/device-bound-sessions` is not fetched: a site-scoped
//! (`include_site`) session registered from a subdomain is refused instead. Registrable
//! domains are approximated without the public suffix list (an IP literal or `localhost`
//! is its own site; otherwise the last two labels).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64_STANDARD, URL_SAFE_NO_PAD as B64URL};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

/// Response header that starts a registration (spec.bs §"`Secure-Session-Registration`";
/// Chromium `registration_fetcher_param.cc`).
pub const REGISTRATION_HEADER: &str = "Secure-Session-Registration";
/// Response header carrying a challenge, with the session id as its `id` parameter.
pub const CHALLENGE_HEADER: &str = "Secure-Session-Challenge";
/// Request header carrying the DBSC proof JWT.
pub const RESPONSE_HEADER: &str = "Secure-Session-Response";
/// Request header naming the session on a refresh.
pub const SESSION_ID_HEADER: &str = "Sec-Secure-Session-Id";
/// The `typ` of every DBSC proof.
pub const PROOF_TYP: &str = "dbsc+jwt";
/// Chromium stops after this many signed challenges in one registration or refresh
/// (`kMaxChallenges` in `registration_fetcher.cc`); the draft has no limit.
pub const MAX_CHALLENGE_ROUNDS: usize = 5;

// ---------------------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------------------

/// The browser's clock, unix milliseconds, shared by every clone. Cookie expiry and the
/// optional proof `iat` read it; a test keeps the server's clock in step with it.
#[derive(Clone, Debug)]
pub struct BrowserClock(Arc<AtomicU64>);

impl BrowserClock {
    pub fn new(unix_ms: u64) -> BrowserClock {
        BrowserClock(Arc::new(AtomicU64::new(unix_ms)))
    }

    /// Starts at the real time (then only moves when told to).
    pub fn starting_now() -> BrowserClock {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        BrowserClock::new(ms)
    }

    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    pub fn set_ms(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn advance_secs(&self, secs: u64) {
        self.advance_ms(secs * 1000);
    }

    /// The shared counter itself, for a server clock that reads the same value.
    pub fn shared(&self) -> Arc<AtomicU64> {
        self.0.clone()
    }
}

// ---------------------------------------------------------------------------------------
// URLs (just enough of RFC 3986 for a browser on one site)
// ---------------------------------------------------------------------------------------

/// An absolute `http`/`https` URL, fragment dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    /// Lower-cased; an IPv6 literal keeps its brackets.
    pub host: String,
    pub port: Option<u16>,
    /// Always starts with `/`.
    pub path: String,
    pub query: Option<String>,
}

fn has_scheme(reference: &str) -> bool {
    let mut chars = reference.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    for c in chars {
        if c == ':' {
            return true;
        }
        if !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.') {
            return false;
        }
    }
    false
}

fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate().skip(1) {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn split_query(s: &str) -> (&str, Option<String>) {
    match s.find('?') {
        Some(i) => (&s[..i], Some(s[i + 1..].to_string())),
        None => (s, None),
    }
}

impl Url {
    pub fn parse(input: &str) -> Result<Url, String> {
        let input = input.trim();
        let input = input.split('#').next().unwrap_or("");
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| format!("not an absolute URL: {input:?}"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("unsupported scheme in {input:?}"));
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!("userinfo not supported in {input:?}"));
        }
        let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
            let close = stripped
                .find(']')
                .ok_or_else(|| format!("bad IPv6 host in {input:?}"))?;
            let host = format!("[{}]", &stripped[..close]);
            let after = &stripped[close + 1..];
            let port = match after.strip_prefix(':') {
                None if after.is_empty() => None,
                None => return Err(format!("bad authority in {input:?}")),
                Some("") => None,
                Some(p) => Some(p.parse().map_err(|_| format!("bad port in {input:?}"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, "")) => (h.to_string(), None),
                Some((h, p)) => (
                    h.to_string(),
                    Some(p.parse().map_err(|_| format!("bad port in {input:?}"))?),
                ),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {input:?}"));
        }
        let (path, query) = split_query(path_and_query);
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            remove_dot_segments(path)
        };
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path,
            query,
        })
    }

    /// Resolves a reference (absolute, scheme-relative, absolute-path or relative-path)
    /// against this URL, as RFC 3986 §5.2 does.
    pub fn resolve(&self, reference: &str) -> Result<Url, String> {
        let reference = reference.trim();
        let reference = reference.split('#').next().unwrap_or("");
        if has_scheme(reference) {
            return Url::parse(reference);
        }
        if let Some(rest) = reference.strip_prefix("//") {
            return Url::parse(&format!("{}://{rest}", self.scheme));
        }
        let mut out = self.clone();
        if reference.is_empty() {
            return Ok(out);
        }
        if let Some(q) = reference.strip_prefix('?') {
            out.query = Some(q.to_string());
            return Ok(out);
        }
        let (path, query) = split_query(reference);
        out.query = query;
        if path.starts_with('/') {
            out.path = remove_dot_segments(path);
        } else {
            let dir = &self.path[..=self.path.rfind('/').unwrap_or(0)];
            out.path = remove_dot_segments(&format!("{dir}{path}"));
        }
        Ok(out)
    }

    pub fn effective_port(&self) -> u16 {
        self.port
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// `scheme://host[:port]`, the default port left out.
    pub fn origin(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        if self.effective_port() == default {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}:{}", self.scheme, self.host, self.effective_port())
        }
    }

    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    pub fn same_origin(&self, other: &Url) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.effective_port() == other.effective_port()
    }

    fn is_ip_or_localhost(host: &str) -> bool {
        host.starts_with('[') || host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// The registrable domain, approximated without the public suffix list: an IP literal
    /// or `localhost` is its own site, otherwise the last two labels.
    pub fn registrable_domain(&self) -> String {
        if Url::is_ip_or_localhost(&self.host) {
            return self.host.clone();
        }
        let labels: Vec<&str> = self.host.split('.').collect();
        if labels.len() <= 2 {
            self.host.clone()
        } else {
            labels[labels.len() - 2..].join(".")
        }
    }

    /// Schemeful same-site.
    pub fn same_site(&self, other: &Url) -> bool {
        self.scheme == other.scheme && self.registrable_domain() == other.registrable_domain()
    }

    /// `https`, or a loopback host (browsers treat localhost as secure).
    pub fn is_potentially_trustworthy(&self) -> bool {
        self.scheme == "https"
            || self.host == "localhost"
            || self.host.ends_with(".localhost")
            || self.host == "[::1]"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query())
    }
}

// ---------------------------------------------------------------------------------------
// Structured fields (RFC 9651), the subset DBSC uses, parsed properly
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum SfBareItem {
    Integer(i64),
    Decimal(f64),
    String(String),
    Token(String),
    ByteSequence(Vec<u8>),
    Boolean(bool),
    Date(i64),
    DisplayString(String),
}

impl SfBareItem {
    pub fn as_string(&self) -> Option<&str> {
        match self {
            SfBareItem::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_token(&self) -> Option<&str> {
        match self {
            SfBareItem::Token(s) => Some(s),
            _ => None,
        }
    }
}

pub type SfParameters = Vec<(String, SfBareItem)>;

/// A member of an `sf-list`.
#[derive(Clone, Debug, PartialEq)]
pub enum SfMember {
    Item(SfBareItem, SfParameters),
    InnerList(Vec<(SfBareItem, SfParameters)>, SfParameters),
}

impl SfMember {
    pub fn params(&self) -> &SfParameters {
        match self {
            SfMember::Item(_, p) | SfMember::InnerList(_, p) => p,
        }
    }

    pub fn param(&self, key: &str) -> Option<&SfBareItem> {
        self.params().iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

struct SfParser<'a> {
    input: &'a [u8],
    pos: usize,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl SfParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ') | Some(b'\t')) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!(
            "structured field: {what} at byte {} of {:?}",
            self.pos,
            String::from_utf8_lossy(self.input)
        ))
    }

    fn list(&mut self) -> Result<Vec<SfMember>, String> {
        let mut members = Vec::new();
        self.skip_sp();
        while self.peek().is_some() {
            members.push(self.item_or_inner_list()?);
            self.skip_ows();
            if self.peek().is_none() {
                return Ok(members);
            }
            if !self.eat(b',') {
                return self.err("expected ','");
            }
            self.skip_ows();
            if self.peek().is_none() {
                return self.err("trailing ','");
            }
        }
        Ok(members)
    }

    fn item_or_inner_list(&mut self) -> Result<SfMember, String> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    let params = self.parameters()?;
                    return Ok(SfMember::InnerList(items, params));
                }
                let item = self.bare_item()?;
                let params = self.parameters()?;
                items.push((item, params));
                match self.peek() {
                    Some(b' ') | Some(b')') => {}
                    _ => return self.err("expected SP or ')' in an inner list"),
                }
            }
        }
        let item = self.bare_item()?;
        let params = self.parameters()?;
        Ok(SfMember::Item(item, params))
    }

    fn parameters(&mut self) -> Result<SfParameters, String> {
        let mut params: SfParameters = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.bare_item()?
            } else {
                SfBareItem::Boolean(true)
            };
            match params.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => params.push((key, value)),
            }
        }
        Ok(params)
    }

    fn key(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => {}
            _ => return self.err("a key must start with lcalpha or '*'"),
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn bare_item(&mut self) -> Result<SfBareItem, String> {
        match self.peek() {
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            Some(b'"') => self.string().map(SfBareItem::String),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => Ok(self.token()),
            Some(b':') => self.byte_sequence(),
            Some(b'?') => {
                self.pos += 1;
                if self.eat(b'1') {
                    Ok(SfBareItem::Boolean(true))
                } else if self.eat(b'0') {
                    Ok(SfBareItem::Boolean(false))
                } else {
                    self.err("bad boolean")
                }
            }
            Some(b'@') => {
                self.pos += 1;
                match self.number()? {
                    SfBareItem::Integer(i) => Ok(SfBareItem::Date(i)),
                    _ => self.err("a date must be an integer"),
                }
            }
            Some(b'%') => self.display_string(),
            _ => self.err("expected a bare item"),
        }
    }

    fn number(&mut self) -> Result<SfBareItem, String> {
        let negative = self.eat(b'-');
        let start = self.pos;
        let mut dot = None;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                self.pos += 1;
            } else if c == b'.' && dot.is_none() {
                dot = Some(self.pos);
                self.pos += 1;
            } else {
                break;
            }
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        if text.is_empty() || !text.as_bytes()[0].is_ascii_digit() {
            return self.err("expected a digit");
        }
        match dot {
            None => {
                if text.len() > 15 {
                    return self.err("integer too long");
                }
                let v: i64 = text.parse().map_err(|_| "bad integer".to_string())?;
                Ok(SfBareItem::Integer(if negative { -v } else { v }))
            }
            Some(d) => {
                let int_len = d - start;
                let frac_len = self.pos - d - 1;
                if int_len > 12 || frac_len == 0 || frac_len > 3 {
                    return self.err("bad decimal");
                }
                let v: f64 = text.parse().map_err(|_| "bad decimal".to_string())?;
                Ok(SfBareItem::Decimal(if negative { -v } else { v }))
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat(b'"') {
            return self.err("expected '\"'");
        }
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c as char);
                            self.pos += 1;
                        }
                        _ => return self.err("bad escape in a string"),
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) if (0x20..=0x7e).contains(&c) => {
                    out.push(c as char);
                    self.pos += 1;
                }
                Some(_) => return self.err("non-printable character in a string"),
            }
        }
    }

    fn token(&mut self) -> SfBareItem {
        let start = self.pos;
        self.pos += 1;
        while let Some(c) = self.peek() {
            if is_tchar(c) || c == b':' || c == b'/' {
                self.pos += 1;
            } else {
                break;
            }
        }
        SfBareItem::Token(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn byte_sequence(&mut self) -> Result<SfBareItem, String> {
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b':' {
                let text = &self.input[start..self.pos];
                self.pos += 1;
                return B64_STANDARD
                    .decode(text)
                    .map(SfBareItem::ByteSequence)
                    .map_err(|e| format!("structured field: bad byte sequence: {e}"));
            }
            if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
                self.pos += 1;
            } else {
                return self.err("bad character in a byte sequence");
            }
        }
        self.err("unterminated byte sequence")
    }

    fn display_string(&mut self) -> Result<SfBareItem, String> {
        self.pos += 1;
        if !self.eat(b'"') {
            return self.err("expected '\"' after '%'");
        }
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated display string"),
                Some(b'%') => {
                    let hex = self.input.get(self.pos + 1..self.pos + 3);
                    let hex = hex.and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| {
                        if h.bytes()
                            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
                        {
                            u8::from_str_radix(h, 16).ok()
                        } else {
                            None
                        }
                    }) {
                        Some(b) => bytes.push(b),
                        None => return self.err("bad percent escape"),
                    }
                    self.pos += 3;
                }
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(bytes)
                        .map(SfBareItem::DisplayString)
                        .map_err(|_| "structured field: display string not UTF-8".to_string());
                }
                Some(c) if (0x20..=0x7e).contains(&c) => {
                    bytes.push(c);
                    self.pos += 1;
                }
                Some(_) => return self.err("bad character in a display string"),
            }
        }
    }
}

/// Parses an `sf-list` (RFC 9651 §4.2.1). Several field lines are joined with ", " first,
/// as `get a structured field value` does.
pub fn parse_sf_list(value: &str) -> Result<Vec<SfMember>, String> {
    let trimmed = value.trim_matches(' ');
    let mut parser = SfParser {
        input: trimmed.as_bytes(),
        pos: 0,
    };
    parser.list()
}

/// Serialises an `sf-string` (RFC 9651 §4.1.6).
pub fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Parses a field whose value is one `sf-string` (ignoring parameters), as
/// `Sec-Secure-Session-Id` and `Secure-Session-Response` are defined.
pub fn parse_sf_string_item(value: &str) -> Result<String, String> {
    let members = parse_sf_list(value)?;
    match members.as_slice() {
        [SfMember::Item(SfBareItem::String(s), _)] => Ok(s.clone()),
        _ => Err(format!("not a single sf-string: {value:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// The DBSC headers
// ---------------------------------------------------------------------------------------

/// One usable entry of `Secure-Session-Registration` (spec.bs §"Create session").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationOffer {
    /// The `sf-token`s of the inner list, in order (non-tokens dropped).
    pub algorithms: Vec<String>,
    pub path: String,
    pub challenge: Option<String>,
    pub authorization: Option<String>,
}

/// Parses `Secure-Session-Registration`: a list of inner lists of algorithm tokens, each
/// with the parameters `path` (required string), `challenge` and `authorization` (strings
/// when present; of another type they are ignored, as the draft says). Members that are
/// not inner lists, or have no string `path`, are skipped. `Err` when the field is not a
/// valid `sf-list` (the draft then ignores the whole header).
pub fn parse_registration_header(value: &str) -> Result<Vec<RegistrationOffer>, String> {
    let mut offers = Vec::new();
    for member in parse_sf_list(value)? {
        let SfMember::InnerList(items, _) = &member else {
            continue;
        };
        let Some(path) = member.param("path").and_then(SfBareItem::as_string) else {
            continue;
        };
        offers.push(RegistrationOffer {
            algorithms: items
                .iter()
                .filter_map(|(item, _)| item.as_token().map(str::to_string))
                .collect(),
            path: path.to_string(),
            challenge: member
                .param("challenge")
                .and_then(SfBareItem::as_string)
                .map(str::to_string),
            authorization: member
                .param("authorization")
                .and_then(SfBareItem::as_string)
                .map(str::to_string),
        });
    }
    Ok(offers)
}

/// One entry of `Secure-Session-Challenge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeEntry {
    pub challenge: String,
    /// The `id` parameter when it is an `sf-string`.
    pub session_id: Option<String>,
}

/// Parses `Secure-Session-Challenge` as spec.bs §"Cache challenge" does: a list whose
/// members are `sf-string` challenges with an optional `id` string parameter; members of
/// another type are skipped.
pub fn parse_challenge_header(value: &str) -> Result<Vec<ChallengeEntry>, String> {
    let mut entries = Vec::new();
    for member in parse_sf_list(value)? {
        let SfMember::Item(SfBareItem::String(challenge), _) = &member else {
            continue;
        };
        entries.push(ChallengeEntry {
            challenge: challenge.clone(),
            session_id: member
                .param("id")
                .and_then(SfBareItem::as_string)
                .map(str::to_string),
        });
    }
    Ok(entries)
}

// ---------------------------------------------------------------------------------------
// Keys and proofs
// ---------------------------------------------------------------------------------------

/// A session's ES256 (P-256) key pair, made with RustCrypto's `p256` and the OS RNG.
#[derive(Clone)]
pub struct SessionKey {
    signing: SigningKey,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKey")
            .field("public_jwk", &self.public_jwk())
            .finish()
    }
}

impl SessionKey {
    pub fn generate() -> SessionKey {
        SessionKey {
            signing: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        *self.signing.verifying_key()
    }

    /// The public key as a JWK (RFC 7518 §6.2.1): `kty`, `crv`, `x`, `y`, nothing private.
    pub fn public_jwk(&self) -> Value {
        let point = self.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": B64URL.encode(point.x().expect("uncompressed point")),
            "y": B64URL.encode(point.y().expect("uncompressed point")),
        })
    }

    /// ES256: ECDSA P-256 over SHA-256, the signature as raw `r || s` (64 bytes).
    pub fn sign_es256(&self, message: &[u8]) -> Vec<u8> {
        let signature: Signature = self.signing.sign(message);
        signature.to_bytes().to_vec()
    }
}

/// Which DBSC request a proof is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    Registration,
    Refresh,
}

/// How a proof is signed.
#[derive(Clone, Debug)]
pub enum ProofSigner {
    Es256(SessionKey),
    /// HMAC-SHA-256 with this secret (an attack: a symmetric `alg`).
    Hs256(Vec<u8>),
    /// Empty signature (with `alg: none`).
    Unsigned,
    /// These exact signature bytes.
    Raw(Vec<u8>),
}

/// A DBSC proof JWT, built by hand: the draft's header and payload, and hooks to change any
/// part of it for attack tests.
#[derive(Clone, Debug)]
pub struct ProofBuilder {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub signer: ProofSigner,
}

impl ProofBuilder {
    /// The registration proof: header `alg`, `typ: "dbsc+jwt"`, `jwk` (the new public key);
    /// payload `jti` = the challenge and, when the registration header had one,
    /// `authorization`.
    pub fn registration(
        key: &SessionKey,
        challenge: Option<&str>,
        authorization: Option<&str>,
    ) -> ProofBuilder {
        let mut header = Map::new();
        header.insert("alg".into(), json!("ES256"));
        header.insert("typ".into(), json!(PROOF_TYP));
        header.insert("jwk".into(), key.public_jwk());
        let mut payload = Map::new();
        if let Some(challenge) = challenge {
            payload.insert("jti".into(), json!(challenge));
        }
        if let Some(authorization) = authorization {
            payload.insert("authorization".into(), json!(authorization));
        }
        ProofBuilder {
            header,
            payload,
            signer: ProofSigner::Es256(key.clone()),
        }
    }

    /// The refresh proof: header `alg`, `typ: "dbsc+jwt"` and NO `jwk` (the server must use
    /// the key it registered); payload `jti` = the challenge.
    pub fn refresh(key: &SessionKey, challenge: &str) -> ProofBuilder {
        let mut header = Map::new();
        header.insert("alg".into(), json!("ES256"));
        header.insert("typ".into(), json!(PROOF_TYP));
        let mut payload = Map::new();
        payload.insert("jti".into(), json!(challenge));
        ProofBuilder {
            header,
            payload,
            signer: ProofSigner::Es256(key.clone()),
        }
    }

    pub fn header(mut self, name: &str, value: Value) -> ProofBuilder {
        self.header.insert(name.to_string(), value);
        self
    }

    pub fn without_header(mut self, name: &str) -> ProofBuilder {
        self.header.remove(name);
        self
    }

    pub fn claim(mut self, name: &str, value: Value) -> ProofBuilder {
        self.payload.insert(name.to_string(), value);
        self
    }

    pub fn without_claim(mut self, name: &str) -> ProofBuilder {
        self.payload.remove(name);
        self
    }

    /// Puts `key`'s public JWK in the header (on a refresh: a proof the draft forbids).
    pub fn jwk_of(self, key: &SessionKey) -> ProofBuilder {
        self.header("jwk", key.public_jwk())
    }

    /// Signs with another key (ES256; the header is unchanged).
    pub fn signed_by(mut self, key: &SessionKey) -> ProofBuilder {
        self.signer = ProofSigner::Es256(key.clone());
        self
    }

    /// `alg: "none"` and an empty signature.
    pub fn alg_none(mut self) -> ProofBuilder {
        self.header.insert("alg".into(), json!("none"));
        self.signer = ProofSigner::Unsigned;
        self
    }

    /// `alg: "HS256"`, signed with HMAC-SHA-256 under `secret`.
    pub fn hs256(mut self, secret: &[u8]) -> ProofBuilder {
        self.header.insert("alg".into(), json!("HS256"));
        self.signer = ProofSigner::Hs256(secret.to_vec());
        self
    }

    /// These exact signature bytes.
    pub fn raw_signature(mut self, signature: Vec<u8>) -> ProofBuilder {
        self.signer = ProofSigner::Raw(signature);
        self
    }

    /// The JWS compact serialisation: `b64url(header).b64url(payload).b64url(signature)`.
    pub fn build(&self) -> String {
        use hmac::Mac as _;
        let header = serde_json::to_vec(&self.header).expect("header serialises");
        let payload = serde_json::to_vec(&self.payload).expect("payload serialises");
        let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let signature = match &self.signer {
            ProofSigner::Es256(key) => key.sign_es256(signing_input.as_bytes()),
            ProofSigner::Hs256(secret) => {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                    .expect("HMAC takes any key length");
                mac.update(signing_input.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            ProofSigner::Unsigned => Vec::new(),
            ProofSigner::Raw(bytes) => bytes.clone(),
        };
        format!("{signing_input}.{}", B64URL.encode(signature))
    }
}

/// A JWS compact serialisation taken apart (no verification).
#[derive(Clone, Debug)]
pub struct DecodedJws {
    pub header: Value,
    pub payload: Value,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

pub fn decode_jws(token: &str) -> Result<DecodedJws, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(format!("not a JWS compact serialisation: {token:?}"));
    };
    let decode = |part: &str, what: &str| {
        B64URL
            .decode(part)
            .map_err(|e| format!("{what} is not base64url without padding: {e}"))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|e| format!("header is not JSON: {e}"))?;
    let payload: Value = serde_json::from_slice(&decode(p, "payload")?)
        .map_err(|e| format!("payload is not JSON: {e}"))?;
    Ok(DecodedJws {
        header,
        payload,
        signing_input: format!("{h}.{p}"),
        signature: decode(s, "signature")?,
    })
}

/// A P-256 public key from a JWK's `x` and `y` (and a check of `kty` and `crv`).
pub fn verifying_key_from_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
    if jwk.get("kty") != Some(&json!("EC")) || jwk.get("crv") != Some(&json!("P-256")) {
        return Err(format!("not a P-256 EC JWK: {jwk}"));
    }
    let coordinate = |name: &str| -> Result<Vec<u8>, String> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("JWK has no {name}"))?;
        let bytes = B64URL
            .decode(text)
            .map_err(|e| format!("JWK {name} not base64url: {e}"))?;
        if bytes.len() != 32 {
            return Err(format!("JWK {name} is {} bytes, not 32", bytes.len()));
        }
        Ok(bytes)
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let point = p256::EncodedPoint::from_affine_coordinates(
        p256::FieldBytes::from_slice(&x),
        p256::FieldBytes::from_slice(&y),
        false,
    );
    VerifyingKey::from_encoded_point(&point).map_err(|e| format!("JWK is not on P-256: {e}"))
}

/// Verifies an ES256 JWS (raw `r || s` signature) with `key`.
pub fn verify_es256(token: &str, key: &VerifyingKey) -> Result<DecodedJws, String> {
    let jws = decode_jws(token)?;
    if jws.signature.len() != 64 {
        return Err(format!(
            "ES256 signature is {} bytes, not 64",
            jws.signature.len()
        ));
    }
    let signature =
        Signature::from_slice(&jws.signature).map_err(|e| format!("bad signature: {e}"))?;
    key.verify(jws.signing_input.as_bytes(), &signature)
        .map_err(|_| "signature does not verify".to_string())?;
    Ok(jws)
}

// ---------------------------------------------------------------------------------------
// JSON session instructions
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCredential {
    pub name: String,
    pub attributes: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    /// `"include"` or `"exclude"`.
    pub rule_type: String,
    /// Host pattern (JSON key `domain`, default `*`).
    pub domain: String,
    /// Path pattern (default `/`).
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstructionScope {
    pub origin: Option<String>,
    pub include_site: bool,
    pub rules: Vec<ScopeRule>,
}

/// The JSON session instructions (spec.bs §"JSON Session Instruction Format").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInstructions {
    pub session_identifier: String,
    pub refresh_url: Option<String>,
    /// `continue` (default true). When false nothing else is validated.
    pub continue_session: bool,
    pub scope: InstructionScope,
    pub credentials: Vec<SessionCredential>,
    pub allowed_refresh_initiators: Vec<String>,
}

/// Parses and checks the instructions: `session_identifier` a non-empty string; `scope`
/// present with a boolean `include_site`; each scope rule with `type` include/exclude,
/// `domain` (default `*`) and `path` (default `/`) non-empty; `credentials` a non-empty list
/// of `{type: "cookie", name (non-empty), attributes (default "")}`;
/// `allowed_refresh_initiators` a list of strings. `{"continue": false}` is returned as is.
pub fn parse_session_instructions(body: &str) -> Result<SessionInstructions, String> {
    let root: Value =
        serde_json::from_str(body).map_err(|e| format!("instructions are not JSON: {e}"))?;
    let root = root
        .as_object()
        .ok_or("instructions are not a JSON object")?;
    let continue_session = root
        .get("continue")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let session_identifier = root
        .get("session_identifier")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !continue_session {
        return Ok(SessionInstructions {
            session_identifier,
            refresh_url: None,
            continue_session,
            scope: InstructionScope {
                origin: None,
                include_site: false,
                rules: Vec::new(),
            },
            credentials: Vec::new(),
            allowed_refresh_initiators: Vec::new(),
        });
    }
    if session_identifier.is_empty() {
        return Err("session_identifier missing or empty".into());
    }
    let refresh_url = match root.get("refresh_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("refresh_url is not a string: {other}")),
    };
    let scope = root
        .get("scope")
        .and_then(Value::as_object)
        .ok_or("scope missing")?;
    let include_site = scope
        .get("include_site")
        .and_then(Value::as_bool)
        .ok_or("scope.include_site missing or not a boolean")?;
    let origin = scope
        .get("origin")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut rules = Vec::new();
    if let Some(list) = scope.get("scope_specification") {
        let list = list
            .as_array()
            .ok_or("scope.scope_specification is not a list")?;
        for rule in list {
            let rule = rule.as_object().ok_or("a scope rule is not an object")?;
            let rule_type = rule
                .get("type")
                .and_then(Value::as_str)
                .ok_or("a scope rule has no type")?;
            if rule_type != "include" && rule_type != "exclude" {
                return Err(format!("scope rule type {rule_type:?}"));
            }
            let domain = rule.get("domain").and_then(Value::as_str).unwrap_or("*");
            let path = rule.get("path").and_then(Value::as_str).unwrap_or("/");
            if domain.is_empty() || path.is_empty() {
                return Err("a scope rule has an empty domain or path".into());
            }
            rules.push(ScopeRule {
                rule_type: rule_type.to_string(),
                domain: domain.to_string(),
                path: path.to_string(),
            });
        }
    }
    let mut credentials = Vec::new();
    if let Some(list) = root.get("credentials") {
        let list = list.as_array().ok_or("credentials is not a list")?;
        for credential in list {
            let credential = credential
                .as_object()
                .ok_or("a credential is not an object")?;
            if credential.get("type").and_then(Value::as_str) != Some("cookie") {
                return Err("a credential's type is not \"cookie\"".into());
            }
            let name = credential.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                return Err("a credential has no name".into());
            }
            credentials.push(SessionCredential {
                name: name.to_string(),
                attributes: credential
                    .get("attributes")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
    }
    if credentials.is_empty() {
        return Err("no credentials".into());
    }
    let mut allowed_refresh_initiators = Vec::new();
    if let Some(list) = root.get("allowed_refresh_initiators") {
        for initiator in list
            .as_array()
            .ok_or("allowed_refresh_initiators is not a list")?
        {
            allowed_refresh_initiators.push(
                initiator
                    .as_str()
                    .ok_or("a refresh initiator is not a string")?
                    .to_string(),
            );
        }
    }
    Ok(SessionInstructions {
        session_identifier,
        refresh_url,
        continue_session,
        scope: InstructionScope {
            origin,
            include_site,
            rules,
        },
        credentials,
        allowed_refresh_initiators,
    })
}

// ---------------------------------------------------------------------------------------
// Sessions and scope
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionScope {
    /// The origin the session applies to (a URL with path `/`).
    pub origin: Url,
    pub include_site: bool,
    pub rules: Vec<ScopeRule>,
}

/// spec.bs §"Identify if a host matches a pattern".
pub fn host_pattern_matches(host: &str, pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(rest) = pattern.strip_prefix('*') {
        if !rest.starts_with('.') {
            return false;
        }
        return host.ends_with(rest);
    }
    host == pattern
}

fn path_pattern_matches(path: &str, pattern: &str) -> bool {
    path == pattern
        || (pattern.ends_with('/') && path.starts_with(pattern))
        || path
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// spec.bs §"Identify if a URL is in scope of a session": origin (or site) first, the
/// refresh URL never (compared on origin and path, the query ignored), then the FIRST
/// scope rule whose host and path patterns match decides; no match means "include".
pub fn url_in_scope(url: &Url, scope: &SessionScope, refresh_url: &Url) -> bool {
    if scope.include_site {
        if !url.same_site(&scope.origin) {
            return false;
        }
    } else if !url.same_origin(&scope.origin) {
        return false;
    }
    if url.same_origin(refresh_url) && url.path == refresh_url.path {
        return false;
    }
    for rule in &scope.rules {
        if host_pattern_matches(&url.host, &rule.domain)
            && path_pattern_matches(&url.path, &rule.path)
        {
            return rule.rule_type == "include";
        }
    }
    true
}

/// A registered device bound session, as the browser keeps it.
#[derive(Clone, Debug)]
pub struct DbscSession {
    pub id: String,
    pub refresh_url: Url,
    /// Where it was registered (after resolution).
    pub registration_url: Url,
    pub scope: SessionScope,
    pub credentials: Vec<SessionCredential>,
    pub allowed_refresh_initiators: Vec<String>,
    /// The challenge to sign next (spec.bs: "cached challenge").
    pub cached_challenge: Option<String>,
    key: SessionKey,
}

impl DbscSession {
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    pub fn credential_names(&self) -> Vec<String> {
        self.credentials.iter().map(|c| c.name.clone()).collect()
    }

    pub fn covers(&self, url: &Url) -> bool {
        url_in_scope(url, &self.scope, &self.refresh_url)
    }
}

/// Validates `instructions` received from `destination` (spec.bs §"Send request", the
/// validations after "Let session identifier be …") and makes the session.
fn session_from_instructions(
    instructions: SessionInstructions,
    destination: &Url,
    key: SessionKey,
    expected_id: Option<&str>,
) -> Result<DbscSession, String> {
    if let Some(expected) = expected_id
        && instructions.session_identifier != expected
    {
        return Err(format!(
            "session_identifier {:?} is not the refreshed session {expected:?}",
            instructions.session_identifier
        ));
    }
    let origin = match &instructions.scope.origin {
        Some(origin) => {
            let url = Url::parse(origin).map_err(|e| format!("scope.origin: {e}"))?;
            if url.path != "/" || url.query.is_some() {
                return Err(format!("scope.origin {origin:?} is not an origin"));
            }
            url
        }
        None => Url::parse(&destination.origin())?,
    };
    if !origin.same_site(destination) {
        return Err(format!(
            "scope.origin {} is not same-site with {}",
            origin.origin(),
            destination.origin()
        ));
    }
    let refresh_url = destination
        .resolve(instructions.refresh_url.as_deref().unwrap_or(""))
        .map_err(|e| format!("refresh_url: {e}"))?;
    if !refresh_url.is_potentially_trustworthy() {
        return Err(format!(
            "refresh URL {refresh_url} is neither https nor localhost"
        ));
    }
    if !refresh_url.same_site(destination) {
        return Err(format!("refresh URL {refresh_url} is not same-site"));
    }
    if instructions.scope.include_site {
        let domain = destination.registrable_domain();
        if origin.host != domain {
            return Err(format!(
                "include_site needs scope.origin's host to be the site {domain}"
            ));
        }
        if destination.host != domain {
            return Err(
                "include_site from a subdomain needs /.well-known/device-bound-sessions \
                 (not modelled)"
                    .into(),
            );
        }
    }
    Ok(DbscSession {
        id: instructions.session_identifier,
        refresh_url,
        registration_url: destination.clone(),
        scope: SessionScope {
            origin,
            include_site: instructions.scope.include_site,
            rules: instructions.scope.rules,
        },
        credentials: instructions.credentials,
        allowed_refresh_initiators: instructions.allowed_refresh_initiators,
        cached_challenge: None,
        key,
    })
}

// ---------------------------------------------------------------------------------------
// Cookie jar
// ---------------------------------------------------------------------------------------

/// A cookie as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    /// Unix ms after which it is gone; `None` for a session cookie.
    pub expires_at_ms: Option<u64>,
    /// Every attribute as received (name lower-cased), for inspection only.
    pub attributes: Vec<(String, Option<String>)>,
}

impl StoredCookie {
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        let name = name.to_ascii_lowercase();
        self.attributes
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref())
    }
}

fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 6265 §5.1.1 cookie-date parsing; unix seconds.
pub fn parse_cookie_date(text: &str) -> Option<i64> {
    let is_delimiter = |c: char| {
        c == '\t'
            || (' '..='/').contains(&c)
            || (';'..='@').contains(&c)
            || ('['..='`').contains(&c)
            || ('{'..='~').contains(&c)
    };
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in text.split(is_delimiter).filter(|t| !t.is_empty()) {
        if time.is_none() {
            let parts: Vec<&str> = token.split(':').collect();
            if parts.len() == 3
                && parts
                    .iter()
                    .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
            {
                let n: Vec<u32> = parts.iter().map(|p| p.parse().unwrap_or(99)).collect();
                time = Some((n[0], n[1], n[2]));
                continue;
            }
        }
        let leading_digits = token.bytes().take_while(u8::is_ascii_digit).count();
        if day.is_none() && (1..=2).contains(&leading_digits) {
            day = token[..leading_digits].parse::<u32>().ok();
            continue;
        }
        if month.is_none() && token.len() >= 3 {
            const MONTHS: [&str; 12] = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ];
            let prefix = token[..3].to_ascii_lowercase();
            if let Some(i) = MONTHS.iter().position(|m| *m == prefix) {
                month = Some(i as u32 + 1);
                continue;
            }
        }
        if year.is_none() && (2..=4).contains(&leading_digits) {
            year = token[..leading_digits].parse::<i64>().ok();
            continue;
        }
    }
    let (hour, minute, second) = time?;
    let (day, month, mut year) = (day?, month?, year?);
    if (70..=99).contains(&year) {
        year += 1900;
    } else if (0..=69).contains(&year) {
        year += 2000;
    }
    if !(1..=31).contains(&day) || year < 1601 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(
        days_from_civil(year, month, day) * 86_400
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second),
    )
}

/// A cookie jar keyed by name. Expiry (`Max-Age`, which wins over `Expires`) is evaluated
/// against the injected [`BrowserClock`]; `Max-Age=0` (or negative, or an `Expires` in the
/// past) deletes. Domain and Path are stored but ignored: every cookie goes to every
/// request of the one site. `Secure` cookies are sent over `http://127.0.0.1` (loopback is
/// a secure context).
#[derive(Clone, Debug)]
pub struct CookieJar {
    clock: BrowserClock,
    cookies: BTreeMap<String, StoredCookie>,
}

impl CookieJar {
    pub fn new(clock: BrowserClock) -> CookieJar {
        CookieJar {
            clock,
            cookies: BTreeMap::new(),
        }
    }

    fn live(&self, cookie: &StoredCookie) -> bool {
        cookie
            .expires_at_ms
            .is_none_or(|at| self.clock.now_ms() < at)
    }

    /// Stores one `Set-Cookie` line (RFC 6265 §5.2). Returns the cookie's name, or `None`
    /// when the line is ignored.
    pub fn store_set_cookie(&mut self, line: &str) -> Option<String> {
        let mut parts = line.split(';');
        let name_value = parts.next()?;
        let (name, value) = name_value.split_once('=')?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return None;
        }
        let now = self.clock.now_ms();
        let mut attributes = Vec::new();
        let mut max_age_expiry: Option<u64> = None;
        let mut expires_expiry: Option<u64> = None;
        for attribute in parts {
            let (attr_name, attr_value) = match attribute.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (attribute.trim().to_ascii_lowercase(), None),
            };
            if attr_name.is_empty() {
                continue;
            }
            match (attr_name.as_str(), attr_value.as_deref()) {
                ("max-age", Some(v)) => {
                    let valid = v
                        .strip_prefix('-')
                        .unwrap_or(v)
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        && !v.is_empty()
                        && v != "-";
                    if valid {
                        let delta: i64 = v.parse().unwrap_or(i64::MAX);
                        max_age_expiry = Some(if delta <= 0 {
                            0
                        } else {
                            now.saturating_add((delta as u64).saturating_mul(1000))
                        });
                    }
                }
                ("expires", Some(v)) => {
                    if let Some(secs) = parse_cookie_date(v) {
                        expires_expiry = Some((secs.max(0) as u64).saturating_mul(1000));
                    }
                }
                _ => {}
            }
            attributes.push((attr_name, attr_value));
        }
        let expires_at_ms = max_age_expiry.or(expires_expiry);
        let cookie = StoredCookie {
            name: name.to_string(),
            value: value.to_string(),
            expires_at_ms,
            attributes,
        };
        if self.live(&cookie) {
            self.cookies.insert(cookie.name.clone(), cookie);
        } else {
            self.cookies.remove(name);
        }
        Some(name.to_string())
    }

    /// The live cookie called `name`.
    pub fn get(&self, name: &str) -> Option<&StoredCookie> {
        self.cookies.get(name).filter(|c| self.live(c))
    }

    pub fn value(&self, name: &str) -> Option<String> {
        self.get(name).map(|c| c.value.clone())
    }

    /// Inserts a session cookie (no expiry, no attributes).
    pub fn insert(&mut self, name: &str, value: &str) {
        self.insert_with_expiry(name, value, None);
    }

    pub fn insert_with_expiry(&mut self, name: &str, value: &str, expires_at_ms: Option<u64>) {
        self.cookies.insert(
            name.to_string(),
            StoredCookie {
                name: name.to_string(),
                value: value.to_string(),
                expires_at_ms,
                attributes: Vec::new(),
            },
        );
    }

    pub fn remove(&mut self, name: &str) -> Option<StoredCookie> {
        self.cookies.remove(name)
    }

    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// Names of the live cookies.
    pub fn names(&self) -> Vec<String> {
        self.cookies
            .values()
            .filter(|c| self.live(c))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Every live cookie as `(name, value)`.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.cookies
            .values()
            .filter(|c| self.live(c))
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect()
    }

    /// The `Cookie` header the jar would send now, or `None` when it is empty.
    pub fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = self
            .pairs()
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store_from(&mut self, headers: &HeaderMap) -> Vec<String> {
        headers
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|line| self.store_set_cookie(line))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// A response as the browser saw it.
#[derive(Clone, Debug)]
pub struct Response {
    /// The HTTP status, or 0 for a network error (then `body` says what happened).
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// The URL that answered.
    pub url: String,
}

impl Response {
    fn network_error(url: &Url, error: String) -> Response {
        Response {
            status: 0,
            headers: HeaderMap::new(),
            body: error,
            url: url.to_string(),
        }
    }

    pub fn is_network_error(&self) -> bool {
        self.status == 0
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Every value of `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    /// All field lines of `name` joined with ", " (how a structured field is read).
    pub fn combined_header(&self, name: &str) -> Option<String> {
        let values = self.header_values(name);
        (!values.is_empty()).then(|| values.join(", "))
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.header_values("set-cookie")
    }
}

/// How the browser writes `Sec-Secure-Session-Id` and `Secure-Session-Response`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderStyle {
    /// As the draft defines them: an `sf-string` (`"value"`, quoted and escaped).
    StructuredString,
    /// As Chromium sends them (`SetExtraRequestHeaderByName(name, value)`): the bare value.
    Bare,
}

/// What a refresh came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed,
    /// Failed; `terminated` says whether the session was dropped.
    Failed {
        terminated: bool,
        reason: String,
    },
    NoSuchSession,
}

type ProofTamper = Box<dyn FnMut(ProofKind, ProofBuilder) -> ProofBuilder + Send>;

fn form_urlencode(form: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A DBSC-capable browser for one site.
pub struct Browser {
    base: Url,
    client: Client<HttpConnector, Full<Bytes>>,
    clock: BrowserClock,
    jar: CookieJar,
    sessions: Vec<DbscSession>,
    /// How the two `sf-string` request headers are written (default: as the draft says).
    pub header_style: HeaderStyle,
    /// Adds `iat` (NumericDate from the injected clock) to every proof. Off by default: the
    /// current draft has no `iat` (it was removed by PR #216).
    pub proof_iat: bool,
    /// Algorithms this browser can make keys for (`ES256` only).
    pub supported_algorithms: Vec<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    tamper: Option<ProofTamper>,
    registrations: u64,
    registration_attempts: u64,
    refreshes: u64,
    refresh_attempts: u64,
    refresh_failures: u64,
    challenges_seen: u64,
    log: Vec<String>,
}

impl Browser {
    /// A browser for the site at `base_url` (e.g. `http://127.0.0.1:PORT`).
    pub fn new(base_url: &str, clock: BrowserClock) -> Browser {
        let base = Url::parse(base_url).expect("base URL");
        let client = Client::builder(TokioExecutor::new()).build_http();
        Browser {
            base,
            client,
            jar: CookieJar::new(clock.clone()),
            clock,
            sessions: Vec::new(),
            header_style: HeaderStyle::StructuredString,
            proof_iat: false,
            supported_algorithms: vec!["ES256".to_string()],
            timeout: Duration::from_secs(15),
            tamper: None,
            registrations: 0,
            registration_attempts: 0,
            refreshes: 0,
            refresh_attempts: 0,
            refresh_failures: 0,
            challenges_seen: 0,
            log: Vec::new(),
        }
    }

    pub fn clock(&self) -> &BrowserClock {
        &self.clock
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `path` resolved against the base URL.
    pub fn url(&self, path: &str) -> Url {
        self.base.resolve(path).expect("a resolvable path")
    }

    // --- normal browsing -------------------------------------------------------------

    /// A GET as a page would make it, with DBSC: deferred for a refresh when a bound
    /// credential is missing, and registration or challenges taken from the response.
    pub async fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, Vec::new(), Vec::new()).await
    }

    /// A form POST (`application/x-www-form-urlencoded`), with DBSC.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let headers = vec![(
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        self.request("POST", path, headers, form_urlencode(form).into_bytes())
            .await
    }

    /// Any request, with DBSC (the jar's cookies added to `headers`).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Response {
        let url = self.url(path);
        // spec.bs §"Changes to the Fetch specification": after computing cookies, find a
        // session needing refresh; refresh it; restart with the original inputs. A session
        // once deferred for this request is not refreshed again for it.
        let mut deferred: HashSet<String> = HashSet::new();
        while let Some(id) = self.session_needing_refresh(&url, &deferred) {
            deferred.insert(id.clone());
            self.note(format!(
                "{method} {}: session {id:?} lacks a bound credential; request deferred for a refresh",
                url.path_and_query()
            ));
            let outcome = self.refresh_session(&id).await;
            self.note(format!(
                "{method} {}: resumed after refresh of {id:?}: {outcome:?}",
                url.path_and_query()
            ));
        }
        let mut headers = headers;
        if let Some(cookie) = self.jar.cookie_header() {
            headers.push(("Cookie".to_string(), cookie));
        }
        let response = match self.exchange(method, &url, headers, body).await {
            Ok(response) => response,
            Err(error) => {
                self.note(format!(
                    "{method} {}: network error: {error}",
                    url.path_and_query()
                ));
                return Response::network_error(&url, error);
            }
        };
        self.note(format!(
            "{method} {} -> {}",
            url.path_and_query(),
            response.status
        ));
        self.jar.store_from(&response.headers);
        self.cache_challenges(&url, &response);
        self.process_registration(&url, &response).await;
        response
    }

    // --- state and hooks -------------------------------------------------------------

    pub fn sessions(&self) -> &[DbscSession] {
        &self.sessions
    }

    pub fn session(&self, id: &str) -> Option<&DbscSession> {
        self.sessions.iter().find(|s| s.id == id)
    }

    pub fn session_key(&self, id: &str) -> Option<&SessionKey> {
        self.session(id).map(DbscSession::key)
    }

    pub fn session_mut(&mut self, id: &str) -> Option<&mut DbscSession> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    /// Drops a session (as clearing site data would), keeping the cookies.
    pub fn forget_session(&mut self, id: &str) -> bool {
        let before = self.sessions.len();
        self.sessions.retain(|s| s.id != id);
        before != self.sessions.len()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.value(name)
    }

    pub fn set_cookie_raw(&mut self, name: &str, value: &str) {
        self.jar.insert(name, value);
    }

    pub fn remove_cookie(&mut self, name: &str) {
        self.jar.remove(name);
    }

    pub fn jar(&self) -> &CookieJar {
        &self.jar
    }

    pub fn jar_mut(&mut self) -> &mut CookieJar {
        &mut self.jar
    }

    /// The `Cookie` header the jar would send now.
    pub fn cookie_header(&self) -> Option<String> {
        self.jar.cookie_header()
    }

    /// Changes every proof the browser makes from now on (attack tests); `f` gets the
    /// draft's proof and returns the one to send.
    pub fn set_proof_tamper(
        &mut self,
        f: impl FnMut(ProofKind, ProofBuilder) -> ProofBuilder + Send + 'static,
    ) {
        self.tamper = Some(Box::new(f));
    }

    pub fn clear_proof_tamper(&mut self) {
        self.tamper = None;
    }

    /// Successful registrations.
    pub fn registrations(&self) -> u64 {
        self.registrations
    }

    pub fn registration_attempts(&self) -> u64 {
        self.registration_attempts
    }

    /// Successful refreshes.
    pub fn refreshes(&self) -> u64 {
        self.refreshes
    }

    pub fn refresh_attempts(&self) -> u64 {
        self.refresh_attempts
    }

    pub fn refresh_failures(&self) -> u64 {
        self.refresh_failures
    }

    /// Challenges cached for a known session (from any response).
    pub fn challenges_seen(&self) -> u64 {
        self.challenges_seen
    }

    pub fn log(&self) -> &[String] {
        &self.log
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    /// A header value written in [`Browser::header_style`].
    pub fn sf_header_value(&self, value: &str) -> String {
        match self.header_style {
            HeaderStyle::StructuredString => sf_string(value),
            HeaderStyle::Bare => value.to_string(),
        }
    }

    /// The draft's refresh proof for session `id` over `challenge` (before any tamper).
    pub fn refresh_proof_for(&self, id: &str, challenge: &str) -> Option<ProofBuilder> {
        self.session_key(id)
            .map(|key| ProofBuilder::refresh(key, challenge))
    }

    /// The headers of a refresh request for `id` with an optional proof, as this browser
    /// writes them (for replaying by hand through [`Browser::send_raw`]).
    pub fn refresh_headers(&self, id: &str, proof: Option<&str>) -> Vec<(String, String)> {
        let mut headers = vec![(SESSION_ID_HEADER.to_string(), self.sf_header_value(id))];
        if let Some(proof) = proof {
            headers.push((RESPONSE_HEADER.to_string(), self.sf_header_value(proof)));
        }
        headers
    }

    // --- raw requests ----------------------------------------------------------------

    /// A request with exactly `headers` and `body`: no DBSC logic, no cookies (unless the
    /// caller put a `Cookie` header in), nothing stored from the response.
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: impl AsRef<[u8]>,
    ) -> Response {
        let url = self.url(path);
        match self
            .exchange(method, &url, headers, body.as_ref().to_vec())
            .await
        {
            Ok(response) => response,
            Err(error) => Response::network_error(&url, error),
        }
    }

    /// [`Browser::send_raw`] with the jar's `Cookie` header added (still no DBSC logic and
    /// nothing stored): what a thief holding the cookies, but not the key, can send.
    pub async fn send_raw_with_jar(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: impl AsRef<[u8]>,
    ) -> Response {
        let mut headers = headers;
        if let Some(cookie) = self.jar.cookie_header() {
            headers.push(("Cookie".to_string(), cookie));
        }
        self.send_raw(method, path, headers, body).await
    }

    async fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<Response, String> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = Request::builder().method(method).uri(url.to_string());
        for (name, value) in &headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                url: url.to_string(),
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("timed out after {:?}", self.timeout))?
    }

    // --- DBSC ------------------------------------------------------------------------

    fn make_proof(&mut self, kind: ProofKind, builder: ProofBuilder) -> String {
        let mut builder = builder;
        if self.proof_iat {
            builder = builder.claim("iat", json!(self.clock.now_secs()));
        }
        if let Some(tamper) = self.tamper.as_mut() {
            builder = tamper(kind, builder);
        }
        builder.build()
    }

    /// spec.bs §"Identify session needing refresh" (sessions never expire here; every
    /// request is same-origin, so always "allowed" to refresh).
    fn session_needing_refresh(&self, url: &Url, deferred: &HashSet<String>) -> Option<String> {
        self.sessions
            .iter()
            .filter(|s| !deferred.contains(&s.id))
            .filter(|s| s.covers(url))
            .find(|s| {
                s.credentials
                    .iter()
                    .any(|c| self.jar.get(&c.name).is_none())
            })
            .map(|s| s.id.clone())
    }

    /// spec.bs §"Cache challenge": every `Secure-Session-Challenge` entry naming a known
    /// session (same site as the response) becomes that session's cached challenge.
    fn cache_challenges(&mut self, response_url: &Url, response: &Response) {
        let Some(value) = response.combined_header(CHALLENGE_HEADER) else {
            return;
        };
        let entries = match parse_challenge_header(&value) {
            Ok(entries) => entries,
            Err(error) => {
                self.note(format!("{CHALLENGE_HEADER} ignored: {error}"));
                return;
            }
        };
        for entry in entries {
            let Some(id) = entry.session_id else {
                self.note(format!(
                    "{CHALLENGE_HEADER} {:?} has no id; ignored",
                    entry.challenge
                ));
                continue;
            };
            let Some(session) = self
                .sessions
                .iter_mut()
                .find(|s| s.id == id && s.refresh_url.same_site(response_url))
            else {
                self.note(format!(
                    "{CHALLENGE_HEADER} {:?} for unknown session {id:?}; ignored",
                    entry.challenge
                ));
                continue;
            };
            session.cached_challenge = Some(entry.challenge.clone());
            self.challenges_seen += 1;
            self.note(format!(
                "challenge {:?} cached for session {id:?}",
                entry.challenge
            ));
        }
    }

    /// spec.bs §"Create session": each usable `Secure-Session-Registration` entry whose
    /// algorithms include one this browser supports starts a registration.
    async fn process_registration(&mut self, response_url: &Url, response: &Response) {
        let Some(value) = response.combined_header(REGISTRATION_HEADER) else {
            return;
        };
        let offers = match parse_registration_header(&value) {
            Ok(offers) => offers,
            Err(error) => {
                self.note(format!("{REGISTRATION_HEADER} ignored: {error}"));
                return;
            }
        };
        for offer in offers {
            let Some(algorithm) = offer
                .algorithms
                .iter()
                .find(|a| self.supported_algorithms.contains(a))
                .cloned()
            else {
                self.note(format!(
                    "registration offer {:?} ignored: no supported algorithm in {:?}",
                    offer.path, offer.algorithms
                ));
                continue;
            };
            let endpoint = match response_url.resolve(&offer.path) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    self.note(format!("registration path {:?}: {error}", offer.path));
                    continue;
                }
            };
            if !endpoint.is_potentially_trustworthy() || !endpoint.same_site(response_url) {
                self.note(format!(
                    "registration endpoint {endpoint} refused (not secure or not same-site)"
                ));
                continue;
            }
            self.register(&offer, &algorithm, endpoint).await;
        }
    }

    /// spec.bs §"Send request" for a registration (session id null).
    async fn register(&mut self, offer: &RegistrationOffer, algorithm: &str, endpoint: Url) {
        self.registration_attempts += 1;
        let key = SessionKey::generate();
        let mut headers = Vec::new();
        if offer.challenge.is_some() || offer.authorization.is_some() {
            let builder = ProofBuilder::registration(
                &key,
                offer.challenge.as_deref(),
                offer.authorization.as_deref(),
            );
            let proof = self.make_proof(ProofKind::Registration, builder);
            headers.push((RESPONSE_HEADER.to_string(), self.sf_header_value(&proof)));
        }
        if let Some(cookie) = self.jar.cookie_header() {
            headers.push(("Cookie".to_string(), cookie));
        }
        let path = endpoint.path_and_query();
        let response = match self.exchange("POST", &endpoint, headers, Vec::new()).await {
            Ok(response) => response,
            Err(error) => {
                self.note(format!("registration POST {path}: network error: {error}"));
                return;
            }
        };
        self.jar.store_from(&response.headers);
        let status = response.status;
        let fail = |this: &mut Browser, why: &str| {
            this.note(format!(
                "registration POST {path} ({algorithm}, challenge {:?}) -> {status}: failed: {why}",
                offer.challenge
            ));
            this.cache_challenges(&endpoint, &response);
        };
        if status == 403 {
            // The draft: "If session id is null, return" (Chromium:
            // kRegistrationAttemptedChallenge). A registration gets no second round.
            return fail(self, "403 to a registration (no session id to retry for)");
        }
        if !(200..300).contains(&status) {
            return fail(self, "not a 2xx");
        }
        if response.body.trim().is_empty() {
            return fail(
                self,
                "empty body (a registration needs session instructions)",
            );
        }
        let instructions = match parse_session_instructions(&response.body) {
            Ok(instructions) => instructions,
            Err(error) => return fail(self, &error),
        };
        if !instructions.continue_session {
            return fail(self, "continue: false");
        }
        let session = match session_from_instructions(instructions, &endpoint, key, None) {
            Ok(session) => session,
            Err(error) => return fail(self, &error),
        };
        let id = session.id.clone();
        self.sessions.retain(|s| s.id != id);
        self.sessions.push(session);
        self.registrations += 1;
        self.note(format!(
            "registration POST {path} ({algorithm}, challenge {:?}) -> {status}: session {id:?} registered",
            offer.challenge
        ));
        self.cache_challenges(&endpoint, &response);
    }

    /// Refreshes session `id` now, as a browser MAY do at any time (proactively).
    pub async fn refresh_now(&mut self, id: &str) -> RefreshOutcome {
        self.refresh_session(id).await
    }

    fn terminate(&mut self, id: &str, why: &str) {
        self.sessions.retain(|s| s.id != id);
        self.note(format!("session {id:?} terminated: {why}"));
    }

    /// spec.bs §"Send request" for a refresh: POST to the refresh URL with
    /// `Sec-Secure-Session-Id`, and a proof when a challenge is cached; on 403 sign the
    /// newly cached challenge and go again. 4xx (but 403, 407, 429) or bad instructions
    /// or `continue: false` end the session; 3xx, 5xx, 407, 429 and network errors fail
    /// and keep it.
    async fn refresh_session(&mut self, id: &str) -> RefreshOutcome {
        let Some(session) = self.session(id) else {
            return RefreshOutcome::NoSuchSession;
        };
        let refresh_url = session.refresh_url.clone();
        let key = session.key.clone();
        let mut challenge = session.cached_challenge.clone();
        self.refresh_attempts += 1;
        let path = refresh_url.path_and_query();
        let mut signed_rounds = 0;
        let outcome = loop {
            let mut headers = vec![(SESSION_ID_HEADER.to_string(), self.sf_header_value(id))];
            if let Some(challenge) = &challenge {
                signed_rounds += 1;
                let proof =
                    self.make_proof(ProofKind::Refresh, ProofBuilder::refresh(&key, challenge));
                headers.push((RESPONSE_HEADER.to_string(), self.sf_header_value(&proof)));
            }
            if let Some(cookie) = self.jar.cookie_header() {
                headers.push(("Cookie".to_string(), cookie));
            }
            let response = match self
                .exchange("POST", &refresh_url, headers, Vec::new())
                .await
            {
                Ok(response) => response,
                Err(error) => {
                    break RefreshOutcome::Failed {
                        terminated: false,
                        reason: format!("network error: {error}"),
                    };
                }
            };
            let status = response.status;
            self.note(format!(
                "refresh {id:?}: POST {path} ({}) -> {status}",
                match &challenge {
                    Some(c) => format!("proof over {c:?}"),
                    None => "no proof".to_string(),
                }
            ));
            self.jar.store_from(&response.headers);
            if status == 403 {
                self.cache_challenges(&refresh_url, &response);
                let cached = self.session(id).and_then(|s| s.cached_challenge.clone());
                match cached {
                    None => {
                        break RefreshOutcome::Failed {
                            terminated: false,
                            reason: format!("403 without a {CHALLENGE_HEADER} for this session id"),
                        };
                    }
                    Some(_) if signed_rounds >= MAX_CHALLENGE_ROUNDS => {
                        break RefreshOutcome::Failed {
                            terminated: false,
                            reason: format!("still 403 after {signed_rounds} signed challenges"),
                        };
                    }
                    Some(next) => {
                        challenge = Some(next);
                        continue;
                    }
                }
            }
            if status == 407 || status == 429 || (300..400).contains(&status) || status >= 500 {
                self.cache_challenges(&refresh_url, &response);
                break RefreshOutcome::Failed {
                    terminated: false,
                    reason: format!("status {status}"),
                };
            }
            if (400..500).contains(&status) || status < 200 {
                self.terminate(id, &format!("refresh answered {status}"));
                break RefreshOutcome::Failed {
                    terminated: true,
                    reason: format!("status {status}"),
                };
            }
            if response.body.trim().is_empty() {
                self.cache_challenges(&refresh_url, &response);
                break RefreshOutcome::Refreshed;
            }
            let instructions = match parse_session_instructions(&response.body) {
                Ok(instructions) => instructions,
                Err(error) => {
                    self.terminate(id, &format!("bad session instructions: {error}"));
                    break RefreshOutcome::Failed {
                        terminated: true,
                        reason: error,
                    };
                }
            };
            if !instructions.continue_session {
                self.terminate(id, "the server answered continue: false");
                break RefreshOutcome::Failed {
                    terminated: true,
                    reason: "continue: false".into(),
                };
            }
            match session_from_instructions(instructions, &refresh_url, key.clone(), Some(id)) {
                Ok(mut updated) => {
                    let slot = self
                        .sessions
                        .iter_mut()
                        .find(|s| s.id == id)
                        .expect("the session being refreshed");
                    updated.registration_url = slot.registration_url.clone();
                    updated.cached_challenge = slot.cached_challenge.take();
                    *slot = updated;
                    self.note(format!("refresh {id:?}: session instructions updated"));
                    self.cache_challenges(&refresh_url, &response);
                    break RefreshOutcome::Refreshed;
                }
                Err(error) => {
                    self.terminate(id, &format!("bad session instructions: {error}"));
                    break RefreshOutcome::Failed {
                        terminated: true,
                        reason: error,
                    };
                }
            }
        };
        match &outcome {
            RefreshOutcome::Refreshed => {
                self.refreshes += 1;
                let missing: Vec<String> = self
                    .session(id)
                    .map(|s| {
                        s.credentials
                            .iter()
                            .filter(|c| self.jar.get(&c.name).is_none())
                            .map(|c| c.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                if missing.is_empty() {
                    self.note(format!("refresh {id:?}: done"));
                } else {
                    self.note(format!(
                        "refresh {id:?}: done, but credential(s) {missing:?} still missing"
                    ));
                }
            }
            RefreshOutcome::Failed { reason, terminated } => {
                self.refresh_failures += 1;
                self.note(format!(
                    "refresh {id:?}: failed ({reason}); session {}",
                    if *terminated { "dropped" } else { "kept" }
                ));
            }
            RefreshOutcome::NoSuchSession => {}
        }
        outcome
    }
}
