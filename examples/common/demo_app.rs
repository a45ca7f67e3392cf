//! The login demo's application, whatever serves it: the command line, the keys, the
//! denylist, the `SealedSession` configuration, the pages and what each route does with the
//! session. `examples/demo.rs` (Poem) and `examples/axum_demo.rs` (axum 0.8 through
//! `SealedSession::layer`) include it with `#[path = "common/demo_app.rs"] mod demo_app;` and
//! keep only their framework's glue: routes, extractors, turning a [`Reply`] into a response,
//! and serving. So both answer the same requests with the same statuses, pages and JSON, and
//! print the same start-up lines.

use std::process::ExitCode;
use std::sync::Arc;

#[path = "demo_binding.rs"]
mod binding;
#[path = "demo_devices.rs"]
pub mod devices;
#[path = "demo_session.rs"]
pub mod session_view;
#[path = "demo_store.rs"]
mod store;

use http::StatusCode;
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::{
    CookieConfig, Keyring, SameSite, SealedSession, Secure, Session, SessionError,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
pub const USERNAME: &str = "admin";
pub const PASSWORD: &str = "letmein";

/// Session keys for `user`, `visits` (the counter of `GET /`) and `views` (of `/views` and
/// `/api/me`).
pub const USER: &str = "user";
pub const VISITS: &str = "visits";
pub const VIEWS: &str = "views";

/// The Redis key prefix of the demo's denylist: every demo process given the same `--redis`
/// shares revocations through it (whichever framework serves it).
#[cfg(feature = "redis")]
pub const REDIS_PREFIX: &str = "sealed-session-demo:denylist:";

/// Which example runs this application: its name in the usage text and in the `cargo run`
/// commands of messages, and the features it needs besides `redis`.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// `demo` or `axum_demo`.
    pub name: &'static str,
    /// The features to build it with `--redis`, e.g. `redis` or `redis,tower`.
    pub redis_features: &'static str,
}

// ---------------------------------------------------------------------------------------
// Command line and configuration
// ---------------------------------------------------------------------------------------

/// How sessions travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The whole session sealed (AES-256-GCM) into a cookie; HTML forms.
    Sealed,
    /// The session as a signed JWT in `Authorization: Bearer`; a JSON API.
    Jwt,
    /// The express-session design: a signed session id in the cookie, the session in a
    /// store (in memory, or Redis with `--redis`); the same HTML forms.
    Store,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "sealed" => Ok(Mode::Sealed),
            "jwt" => Ok(Mode::Jwt),
            "store" => Ok(Mode::Store),
            other => Err(format!(
                "unknown --mode {other:?}; available: sealed, jwt, store"
            )),
        }
    }
}

#[derive(Debug)]
pub struct Args {
    pub addr: String,
    pub mode: Mode,
    pub secure: Secure,
    /// `--redis URL`: the Redis denylist instead of the in-memory one.
    pub redis: Option<String>,
    /// `--jwt-alg`, parsed when the jwt mode starts (default EdDSA).
    pub jwt_alg: Option<String>,
    /// `--jwt-kid` (default `k1` for a key from `JWT_KEY_FILE`, `g1` for a generated one).
    pub jwt_kid: Option<String>,
    /// `--dpop` (jwt mode): DPoP-bound tokens for clients that send proofs.
    pub dpop: bool,
    /// `--device-bound` (sealed and store modes): DBSC for browsers that support it.
    pub device_bound: bool,
}

/// The usage text; `PROGRAM` and `FEATURES` stand for [`Program`]'s fields.
const USAGE: &str = "usage: PROGRAM [--addr HOST:PORT] [--mode sealed|jwt|store] [--cookie-secure always|auto]
            [--redis URL] [--jwt-alg ALG] [--jwt-kid KID] [--dpop] [--device-bound]

  --addr HOST:PORT            where to listen (default 127.0.0.1:3000; port 0 picks one)
  --mode sealed|jwt|store     how sessions travel (default sealed):
                                sealed: the whole session in one encrypted cookie; HTML forms
                                store: the express-session design: a signed session id in the
                                  cookie, the session in a store (in memory, or Redis with
                                  --redis); the same HTML forms
                                jwt: a signed JWT in `Authorization: Bearer`; a JSON API:
                                  POST /api/login {\"username\":..,\"password\":..} -> {\"token\":..}
                                  GET  /api/me -> {\"user\":..,\"views\":n} (the refreshed
                                       token comes back in the x-session-token header)
                                  POST /api/logout (the token is revoked: then 401)
                                  GET  /.well-known/jwks.json (asymmetric keys only)
  --cookie-secure always|auto Secure cookie attribute (default always; `auto` sets it only
                              for HTTPS requests, for browsers that refuse Secure cookies
                              from http://127.0.0.1)
  --redis URL                 share revocations (logouts) with every demo process given the
                              same URL, through a Redis denylist (redis://[:password@]host:port/);
                              needs the `redis` feature: cargo run --example PROGRAM --features FEATURES
                              Default: an in-memory denylist (this process only). Either way a
                              cookie or token replayed after logout is refused.
  --jwt-alg ALG               jwt mode: EdDSA (default), ES256, ES384, RS256, PS256, HS256,
                              HS384 or HS512. EdDSA because it is the fastest asymmetric one
                              (about 60 us to sign and verify with aws-lc, against 84 us for
                              ES256, and far more for RSA) with compact keys and signatures;
                              HS256 is faster still, but a shared secret cannot be published,
                              so other services could not verify the tokens.
  --jwt-kid KID               jwt mode: the key id (default k1 with JWT_KEY_FILE, else g1)
  --device-bound              sealed and store modes: Device Bound Session Credentials (W3C
                              DBSC): a browser that supports it registers a key at login, and
                              the session then needs a 10-minute bound cookie that only a proof
                              signed by that key renews (POST /dbsc/register, /dbsc/refresh);
                              other browsers work as before
  --dpop                      jwt mode: DPoP (RFC 9449): a login that sends a DPoP proof gets a
                              token bound to its key, accepted only as `Authorization: DPoP
                              TOKEN` with a fresh proof (ES256 or EdDSA) on each request; a
                              copied token is useless without the key. Proofs are accepted
                              once (with --redis, once across every demo process)

environment:
  SESSION_KEYS    sealed and store modes: key ring, newest first: id:base64[,id:base64...] (32-byte keys)
  SESSION_SECRET  sealed and store modes: a long secret (>= 32 bytes) the key is derived from (HKDF)
  JWT_KEY_FILE    jwt mode: the signing key: a PKCS#8 PEM private key (EdDSA, ES*, RS*, PS*;
                  e.g. `openssl genpkey -algorithm ED25519 -out key.pem`) or, for HS*, a
                  base64 secret (`openssl rand -base64 32`). Without it a key is generated at
                  start (EdDSA and HS* only) and tokens do not survive a restart. Give two
                  jwt-mode processes the same file (and kid) to share sessions.
  RUST_LOG        log filter (default info,sealed_session=debug)";

/// The usage text of `program`.
pub fn usage(program: &Program) -> String {
    USAGE
        .replace("PROGRAM", program.name)
        .replace("FEATURES", program.redis_features)
}

impl Args {
    /// Parses `--flag value` and `--flag=value`. `Ok(None)` for `--help`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
        let mut out = Args {
            addr: DEFAULT_ADDR.to_owned(),
            mode: Mode::Sealed,
            secure: Secure::Always,
            redis: None,
            jwt_alg: None,
            jwt_kid: None,
            dpop: false,
            device_bound: false,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            if arg == "--dpop" {
                out.dpop = true;
                continue;
            }
            if arg == "--device-bound" {
                out.device_bound = true;
                continue;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--addr" => out.addr = value()?,
                "--mode" => out.mode = Mode::parse(&value()?)?,
                "--cookie-secure" => {
                    out.secure = match value()?.as_str() {
                        "always" => Secure::Always,
                        "auto" => Secure::Auto,
                        other => {
                            return Err(format!(
                                "unknown --cookie-secure {other:?}; expected always or auto"
                            ));
                        }
                    }
                }
                "--redis" => {
                    let url = value()?;
                    if url.trim().is_empty() {
                        return Err("--redis needs a URL, e.g. redis://127.0.0.1:6379/".into());
                    }
                    out.redis = Some(url);
                }
                "--jwt-alg" => out.jwt_alg = Some(value()?),
                "--jwt-kid" => out.jwt_kid = Some(value()?),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if out.mode != Mode::Jwt && (out.jwt_alg.is_some() || out.jwt_kid.is_some()) {
            return Err("--jwt-alg and --jwt-kid apply to --mode jwt only".into());
        }
        if out.mode != Mode::Jwt && out.dpop {
            return Err("--dpop applies to --mode jwt only (bearer tokens)".into());
        }
        if out.mode == Mode::Jwt && out.device_bound {
            return Err(
                "--device-bound applies to cookie sessions (--mode sealed or store)".into(),
            );
        }
        Ok(Some(out))
    }
}

/// Where the keys came from, for the start-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Ring,
    Secret,
    Generated,
}

/// Keys from `SESSION_KEYS`, else from `SESSION_SECRET`, else generated.
pub fn load_keys(
    session_keys: Option<String>,
    session_secret: Option<String>,
) -> Result<(Keyring, KeySource), String> {
    if let Some(ring) = session_keys.filter(|s| !s.trim().is_empty()) {
        let keys = ring
            .parse::<Keyring>()
            .map_err(|e| format!("SESSION_KEYS is not a valid key ring: {e}"))?;
        return Ok((keys, KeySource::Ring));
    }
    if let Some(secret) = session_secret.filter(|s| !s.is_empty()) {
        let keys = Keyring::from_secret(secret.as_bytes()).map_err(|e| {
            format!(
                "SESSION_SECRET refused: {e}. Use a long random secret, for example \
                 `head -c 48 /dev/urandom | base64`"
            )
        })?;
        return Ok((keys, KeySource::Secret));
    }
    let keys = Keyring::generate().map_err(|e| format!("cannot generate a session key: {e}"))?;
    Ok((keys, KeySource::Generated))
}

/// The session cookie: the library's secure defaults (`__Host-sid`, Secure, HttpOnly,
/// SameSite=Lax, Path=/), unless `--cookie-secure auto` is given.
///
/// The demo serves plain HTTP, yet `Secure` (and so the `__Host-` prefix) is kept: browsers
/// treat `http://localhost` and `http://127.0.0.1` as secure contexts, and Chromium stores and
/// sends back a `Secure` `__Host-` cookie set by `http://127.0.0.1:PORT`. This was checked
/// with headless Chromium, and `tests/browser.rs` relies on it. Browsers that refuse it
/// (Safari, for one) keep you on the login form after a correct login: run with
/// `--cookie-secure auto`, which sends `Secure` only for HTTPS requests (and then the cookie is
/// plain `sid`, since `__Host-` requires `Secure`).
pub fn cookie_config(secure: Secure) -> CookieConfig {
    CookieConfig::new()
        .name("sid")
        .secure(secure)
        .http_only(true)
        .same_site(Some(SameSite::Lax))
}

fn describe_cookie(cookie: &CookieConfig) -> String {
    let secure = match cookie.secure_mode() {
        Secure::Always => "Secure",
        Secure::Auto => "Secure on HTTPS requests only",
        _ => "not Secure",
    };
    let (http, https) = (
        cookie.full_name(cookie.is_secure(false)),
        cookie.full_name(cookie.is_secure(true)),
    );
    let name = if http == https {
        http
    } else {
        format!("{http} (over HTTPS: {https})")
    };
    format!("cookie {name} ({secure}; HttpOnly; SameSite=Lax; Path=/; browser-session cookie)")
}

/// The sealed mode's sessions: sealed with `keys` into `cookie`, checked against `denylist`.
/// Poem applies it as a middleware (`.with(sessions)`), axum as a layer
/// (`.layer(sessions.layer())`).
pub fn sealed_sessions(
    keys: Keyring,
    cookie: CookieConfig,
    denylist: Arc<dyn Denylist>,
    registry: Arc<dyn sealed_session::devices::Registry>,
) -> SealedSession {
    SealedSession::sealed(keys)
        .cookie(cookie)
        .denylist(denylist)
        .devices(sealed_session::devices::Devices::new(registry))
}

// ---------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------

/// The denylist: in memory by default, or on Redis with `--redis URL`; and its line for the
/// start-up output.
async fn make_denylist(
    program: &Program,
    redis: Option<&str>,
) -> Result<(Arc<dyn Denylist>, String), String> {
    match redis {
        None => Ok((
            Arc::new(MemoryDenylist::new()),
            "in-memory denylist (this process only; a cookie or token replayed after logout \
             is refused here, not by other processes: use --redis URL to share)"
                .to_owned(),
        )),
        Some(url) => redis_denylist(program, url).await,
    }
}

#[cfg(feature = "redis")]
async fn redis_denylist(
    _program: &Program,
    url: &str,
) -> Result<(Arc<dyn Denylist>, String), String> {
    use sealed_session::denylist::RedisDenylist;
    // `RequireRedis` (the default start mode): a Redis that cannot be reached now is an
    // error, not a demo that silently forgets logouts.
    let denylist = RedisDenylist::builder(url)
        .key_prefix(REDIS_PREFIX)
        .build()
        .await
        .map_err(|e| {
            format!(
                "cannot use Redis at {} for revocations: {}",
                redact(url),
                chain(&e)
            )
        })?;
    Ok((
        Arc::new(denylist),
        format!(
            "Redis denylist at {} (key prefix {REDIS_PREFIX:?}; shared with every demo process \
             using this Redis, each checking a local replica kept current over pub/sub)",
            redact(url)
        ),
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis_denylist(
    program: &Program,
    _url: &str,
) -> Result<(Arc<dyn Denylist>, String), String> {
    Err(format!(
        "--redis needs the `redis` feature, and this demo was built without it; build with \
         `--features {features}`: cargo run --example {name} --features {features} -- --redis URL",
        name = program.name,
        features = program.redis_features,
    ))
}

/// An error and its sources, `a: b: c`.
#[cfg(feature = "redis")]
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A Redis URL without its password, for messages.
#[cfg(feature = "redis")]
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// What the routes answer
// ---------------------------------------------------------------------------------------

/// A handler's answer, which each example turns into its framework's response: Poem's
/// `Html`, `Redirect` and `Json`, or axum's.
#[derive(Debug)]
pub enum Reply {
    /// An HTML page (`text/html; charset=utf-8`) with this status.
    Page(StatusCode, String),
    /// 303 See Other to this path.
    SeeOther(&'static str),
    /// A JSON body with this status, and the `WWW-Authenticate` challenge if any.
    Json {
        status: StatusCode,
        body: serde_json::Value,
        challenge: Option<String>,
    },
}

impl Reply {
    fn page(html: String) -> Reply {
        Reply::Page(StatusCode::OK, html)
    }

    fn json(body: serde_json::Value) -> Reply {
        Reply::Json {
            status: StatusCode::OK,
            body,
            challenge: None,
        }
    }
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The demo's stylesheet: a small application's look, in every page.
const STYLE: &str = "\
    :root{--ink:#1d2733;--muted:#5b6776;--accent:#2f6fdf;--line:#dde3ea;--bg:#f5f7fa}\
    *{box-sizing:border-box}\
    body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:var(--bg)}\
    header{background:var(--ink);color:#fff}\
    header .bar{max-width:46em;margin:0 auto;padding:.8em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
    header strong{font-size:1.1em;margin-right:auto}\
    header a{color:#cfe0ff;text-decoration:none}header a:hover{color:#fff}\
    main{max-width:46em;margin:2em auto;padding:1.5em 2em;background:#fff;border:1px solid var(--line);border-radius:10px}\
    h1{margin-top:0;font-size:1.6em}h2{font-size:1.15em;margin-top:1.6em}\
    table{border-collapse:collapse;width:100%;margin:.5em 0}\
    th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid var(--line);vertical-align:top}\
    th{color:var(--muted);font-weight:600}\
    pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.7em;overflow-x:auto}\
    code{font-size:.92em}\
    button{background:var(--accent);color:#fff;border:0;border-radius:6px;padding:.5em 1.1em;font:inherit;cursor:pointer}\
    input{font:inherit;padding:.4em .5em;border:1px solid var(--line);border-radius:6px;width:100%}\
    label{display:block;margin:.6em 0}.error{color:#b00}.muted{color:var(--muted)}\
    footer{max-width:46em;margin:0 auto 2em;padding:0 1.2em;color:var(--muted);font-size:.85em}";

/// A page around `body`, which must already be escaped: the stylesheet, a bar with the
/// links to every page, the title, the body.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n\
         <header><nav class=\"bar\" id=\"nav\"><strong>sealed-session demo</strong>\
         <a href=\"/\">Home</a><a href=\"/secureplace\">Secure place</a>\
         <a href=\"/devices\">Your devices</a><a href=\"/session\">Your session</a></nav></header>\n\
         <main><h1>{title}</h1>\n{body}\n</main>\n\
         <footer>Stateless sessions: the whole session travels in the cookie, sealed. \
         <a href=\"/session\">Where is it?</a></footer></body></html>\n",
        title = escape(title),
    )
}

fn login_form(error: Option<&str>, username: &str) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    page(
        "Log in",
        &format!(
            "{error}<form id=\"login\" method=\"post\" action=\"/login\">\
             <label>Username <input name=\"username\" id=\"username\" value=\"{}\" \
             autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" id=\"password\" type=\"password\" \
             autocomplete=\"current-password\" required></label>\
             <button type=\"submit\" id=\"login-submit\">Log in</button></form>\
             <p>Try admin / letmein.</p>",
            escape(username)
        ),
    )
}

const LOGOUT_FORM: &str = "<form id=\"logout\" method=\"post\" action=\"/logout\">\
    <button type=\"submit\" id=\"logout-submit\">Log out</button></form>";

pub fn current_user(session: &Session) -> Result<Option<String>, SessionError> {
    session.get::<String>(USER)
}

/// Adds one to the counter `key` of the session and returns it.
fn count(session: &Session, key: &str) -> Result<u64, SessionError> {
    let n = session.get::<u64>(key)?.unwrap_or(0).saturating_add(1);
    session.insert(key, &n)?;
    Ok(n)
}

/// Constant-time credential check: both comparisons always run (`&` on `Choice`, no
/// short-circuit), so the timing tells nothing about which field was wrong or how much of it
/// matched. (Lengths may leak; a real app compares password hashes, which have a fixed length.)
pub fn credentials_ok(username: &str, password: &str) -> bool {
    let user_ok = username.as_bytes().ct_eq(USERNAME.as_bytes());
    let pass_ok = password.as_bytes().ct_eq(PASSWORD.as_bytes());
    bool::from(user_ok & pass_ok)
}

/// Logs `username` in: a new session id, against session fixation (the old one, if any, is
/// revoked and its data dropped), then the user and the token's subject.
fn log_in(session: &Session, username: &str) -> Result<(), SessionError> {
    session.regenerate()?;
    session.insert(USER, username)?;
    session.set_subject(username);
    Ok(())
}

/// `GET /`: the login form, or the user, a visit counter and a logout button.
pub fn index(session: &Session) -> Result<Reply, SessionError> {
    let Some(user) = current_user(session)? else {
        // Nothing is stored for anonymous visitors, so they get no cookie at all.
        return Ok(Reply::page(login_form(None, "")));
    };
    let visits = count(session, VISITS)?;
    let bound = match session.binding() {
        Some(_) => "yes: this browser holds the key (DBSC)",
        None => "no",
    };
    let now = sealed_session::Clock::now(&sealed_session::SystemClock);
    let left = session.expires_at().saturating_since(now).as_secs();
    let expires = format!("in {} h {} min", left / 3600, left % 3600 / 60);
    Ok(Reply::page(page(
        "Welcome",
        &format!(
            "<p>Logged in as <strong id=\"user\">{}</strong>.</p>\
             <p>Visits to this page in this session: <span id=\"visits\">{visits}</span></p>\
             <p>Your session ends <span id=\"expires\">{expires}</span> at the latest \
             (sooner after an hour without a visit).</p>\
             <p>Device-bound: <span id=\"device-bound\">{bound}</span></p>\
             <p><a href=\"/secureplace\">The secure place</a> · <a href=\"/views\">/views</a> · \
             <a href=\"/devices\" id=\"devices-link\">Your devices</a> · \
             <a href=\"/session\" id=\"session-link\">Your session</a></p>\
             {LOGOUT_FORM}",
            escape(&user)
        ),
    )))
}

/// `POST /login`: 303 to `/secureplace`, or 401 with the form again.
///
/// The forms post same-origin only in practice: the session cookie is SameSite=Lax, so a
/// cross-site form POST arrives without it (no login CSRF into an existing session, no
/// forced logout that matters).
pub fn login(session: &Session, form: &Login) -> Result<Reply, SessionError> {
    if !credentials_ok(&form.username, &form.password) {
        tracing::info!(username = %form.username, "login refused");
        return Ok(Reply::Page(
            StatusCode::UNAUTHORIZED,
            login_form(Some("Wrong username or password."), &form.username),
        ));
    }
    log_in(session, &form.username)?;
    tracing::info!(username = %form.username, "logged in");
    Ok(Reply::SeeOther("/secureplace"))
}

/// `GET /secureplace`: for logged-in users; others are sent back to `/`.
pub fn secureplace(session: &Session) -> Result<Reply, SessionError> {
    Ok(match current_user(session)? {
        Some(user) => Reply::page(page(
            "The secure place",
            &format!(
                "<p>Welcome to the secure place, <strong id=\"user\">{}</strong>.</p>\
                 <p><a href=\"/\">Home</a> · <a href=\"/devices\">Your devices</a></p>{LOGOUT_FORM}",
                escape(&user)
            ),
        )),
        None => Reply::SeeOther("/"),
    })
}

/// `POST /logout`: destroys (and revokes) the session, 303 to `/`.
pub fn logout(session: &Session) -> Result<Reply, SessionError> {
    session.destroy()?;
    Ok(Reply::SeeOther("/"))
}

/// `GET /views`: `{"views": n}`, counted per session.
pub fn views(session: &Session) -> Result<Reply, SessionError> {
    let n = count(session, VIEWS)?;
    Ok(Reply::json(serde_json::json!({ "views": n })))
}

// ---------------------------------------------------------------------------------------
// jwt mode: a JSON API with bearer JWTs
// ---------------------------------------------------------------------------------------

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub mod jwt {
    use std::sync::Arc;

    use http::StatusCode;
    use sealed_session::denylist::Denylist;
    use sealed_session::{
        BearerConfig, JwtAlgorithm, JwtCodec, JwtConfigError, JwtKey, JwtKeyError, JwtKeyring,
        SealedSession, Session, SessionError,
    };
    use serde::Deserialize;

    use super::{Reply, VIEWS, count, credentials_ok, current_user, escape, log_in, page};

    /// The `iss` claim of the demo's tokens (written, and required when opening).
    pub const ISSUER: &str = "sealed-session-demo";
    /// The `aud` claim of the demo's tokens (written, and required when opening).
    pub const AUDIENCE: &str = "sealed-session-demo-api";
    /// The response header that carries a refreshed token (the library's default).
    pub const TOKEN_HEADER: &str = sealed_session::transport::bearer::DEFAULT_TOKEN_HEADER;

    /// The default algorithm: EdDSA (Ed25519). Measured on the development machine with the
    /// aws-lc backend (docs/FORMAT.md, appendix), signing and verifying one token costs about
    /// 60 us with EdDSA against about 84 us with ES256 (and 700 us or more with RSA, whose
    /// keys and signatures are also much larger); Ed25519 keys are 32 bytes, signatures 64. HS256 is the fastest
    /// of all, but its key is a shared secret, which cannot be published in a JWK Set: other
    /// services could not verify the tokens without being able to forge them.
    pub const DEFAULT_ALG: JwtAlgorithm = JwtAlgorithm::EdDSA;

    /// Where the JWT key came from, for the start-up output.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum KeySource {
        File(String),
        Generated,
    }

    /// The key ring: one key of `alg` (default EdDSA) with `kid`, from the file `key_file`
    /// (a PEM private key, or a base64 secret for HS*), else generated.
    pub fn load_ring(
        alg: Option<&str>,
        kid: Option<&str>,
        key_file: Option<String>,
    ) -> Result<(JwtKeyring, KeySource), String> {
        let alg = match alg {
            Some(a) => a
                .parse::<JwtAlgorithm>()
                .map_err(|e| format!("--jwt-alg: {e}"))?,
            None => DEFAULT_ALG,
        };
        let (key, source) = match key_file.filter(|f| !f.trim().is_empty()) {
            Some(path) => {
                let kid = kid.unwrap_or("k1");
                let text = std::fs::read(&path)
                    .map_err(|e| format!("JWT_KEY_FILE {path:?} cannot be read: {e}"))?;
                let key = if alg.is_symmetric() {
                    let text = std::str::from_utf8(&text).map_err(|_| {
                        format!("JWT_KEY_FILE {path:?}: an {alg} key is a base64 secret (text)")
                    })?;
                    JwtKey::hmac_base64(kid, alg, text)
                } else {
                    JwtKey::from_pem(kid, alg, &text)
                }
                .map_err(|e| format!("JWT_KEY_FILE {path:?} refused for {alg}: {e}"))?;
                (key, KeySource::File(path))
            }
            None => {
                let kid = kid.unwrap_or("g1");
                let key = match JwtKey::generate(kid, alg) {
                    Ok((key, _text)) => key,
                    Err(JwtKeyError::GenerateUnsupported { hint, .. }) => {
                        return Err(format!(
                            "--jwt-alg {alg} needs a key file: the demo generates EdDSA and \
                             HS* keys only. Make one with `{hint}` and set JWT_KEY_FILE=key.pem"
                        ));
                    }
                    Err(e) => return Err(format!("cannot make a {alg} key: {e}")),
                };
                (key, KeySource::Generated)
            }
        };
        let ring = JwtKeyring::new([key]).map_err(|e| format!("JWT key ring refused: {e}"))?;
        Ok((ring, source))
    }

    /// The jwt mode's application, for the example to route: the sessions of the `/api`
    /// routes, the page of `GET /`, and the key ring (whose public keys, if any, are served
    /// at `/.well-known/jwks.json`).
    pub struct JwtApp {
        /// Bearer JWT sessions checked against the denylist: for `/api` only.
        pub sessions: SealedSession,
        /// The page of `GET /`.
        pub home: String,
        pub ring: JwtKeyring,
    }

    /// The sessions: JWTs of `ring` with the demo's issuer and audience, sent as bearer
    /// tokens, checked against `denylist`.
    pub fn app(
        ring: JwtKeyring,
        denylist: Arc<dyn Denylist>,
        dpop: Option<sealed_session::binding::Dpop>,
    ) -> Result<JwtApp, JwtConfigError> {
        let codec = JwtCodec::builder(ring.clone())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()?;
        let mut sessions = SealedSession::with_codec(codec)
            .bearer(BearerConfig::new())
            .denylist(denylist);
        if let Some(dpop) = dpop {
            sessions = sessions.dpop(dpop);
        }
        Ok(JwtApp {
            sessions,
            home: index_page(&ring),
            ring,
        })
    }

    /// The routes, for `GET /` and the start-up output.
    pub fn route_lines(ring: &JwtKeyring) -> Vec<String> {
        let mut lines = vec![
            "POST /api/login   {\"username\": ..., \"password\": ...} -> {\"token\": ...}"
                .to_owned(),
            "GET  /api/me      Authorization: Bearer TOKEN -> {\"user\": ..., \"views\": n}"
                .to_owned(),
            "POST /api/logout  Authorization: Bearer TOKEN -> the token is revoked".to_owned(),
            "GET  /api/session Authorization: Bearer TOKEN -> the token's header and what the \
             server reads"
                .to_owned(),
        ];
        lines.push(if ring.has_public_keys() {
            format!(
                "GET  /.well-known/jwks.json  the public key (kid {:?}) as a JWK Set",
                ring.primary_kid()
            )
        } else {
            format!(
                "(no /.well-known/jwks.json: {} keys are shared secrets, never published)",
                ring.primary_algorithm()
            )
        });
        lines
    }

    fn index_page(ring: &JwtKeyring) -> String {
        let routes: String = route_lines(ring)
            .iter()
            .map(|l| format!("<li><code>{}</code></li>", escape(l)))
            .collect();
        page(
            "sealed-session demo: jwt mode",
            &format!(
                "<p>Mode: <strong id=\"mode\">jwt</strong>: sessions are {alg} JWTs \
                 (signed, not encrypted) sent as <code>Authorization: Bearer TOKEN</code>; \
                 refreshed tokens come back in the <code>{TOKEN_HEADER}</code> response \
                 header. Log in as admin / letmein.</p><ul id=\"routes\">{routes}</ul>\
                 <pre>curl -s -X POST http://HOST/api/login -H 'content-type: application/json' \
                 -d '{{\"username\":\"admin\",\"password\":\"letmein\"}}'\n\
                 curl -si http://HOST/api/me -H \"authorization: Bearer $TOKEN\"</pre>",
                alg = ring.primary_algorithm(),
            ),
        )
    }

    /// The body of `POST /api/login`.
    #[derive(Deserialize)]
    pub struct Credentials {
        pub username: String,
        pub password: String,
    }

    fn json_error(status: StatusCode, msg: &str) -> Reply {
        Reply::Json {
            status,
            body: serde_json::json!({ "error": msg }),
            challenge: None,
        }
    }

    /// 401 for a request without a logged-in session (RFC 6750: a bare `Bearer` challenge
    /// when no token came; a refused token never reaches the handler, the middleware answers
    /// it with `error="invalid_token"`).
    fn not_logged_in() -> Reply {
        unauthorized("not logged in: POST /api/login first")
    }

    /// A 401 with `msg` and the `WWW-Authenticate: Bearer realm="..."` challenge that every
    /// 401 must carry (RFC 9110 section 15.5.2): the API authenticates by bearer token, which
    /// `POST /api/login` hands out.
    fn unauthorized(msg: &str) -> Reply {
        Reply::Json {
            status: StatusCode::UNAUTHORIZED,
            body: serde_json::json!({ "error": msg }),
            challenge: Some(format!("Bearer realm=\"{ISSUER}\"")),
        }
    }

    /// `POST /api/login`; `creds` is `None` for a body that is not such JSON (a 400).
    pub fn login(session: &Session, creds: Option<Credentials>) -> Result<Reply, SessionError> {
        let Some(creds) = creds else {
            return Ok(json_error(
                StatusCode::BAD_REQUEST,
                "expected a JSON body {\"username\": ..., \"password\": ...}",
            ));
        };
        if !credentials_ok(&creds.username, &creds.password) {
            tracing::info!(username = %creds.username, "api login refused");
            return Ok(unauthorized("wrong username or password"));
        }
        // A new session id at login, as in the form login; the old one (if any) is revoked.
        log_in(session, &creds.username)?;
        let Some(token) = session.token()? else {
            return Ok(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session ended before its token was made",
            ));
        };
        tracing::info!(username = %creds.username, "api logged in");
        Ok(Reply::json(serde_json::json!({ "token": token })))
    }

    /// `GET /api/session`: the token's readable header as the client sent it, and what
    /// the server reads from the token (the `/session` page of the JSON API).
    pub fn session_json(session: &Session, authorization: Option<&str>) -> Reply {
        use base64::Engine as _;
        let token = authorization
            .and_then(|a| a.split_once(' '))
            .map(|(_, t)| t.trim());
        let header = token
            .and_then(|t| t.split('.').next())
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok());
        let ms = |t: sealed_session::Timestamp| t.as_millis();
        Reply::json(serde_json::json!({
            "client_holds": {
                "where": "the Authorization header (the app keeps the token in memory)",
                "token_bytes": token.map(str::len),
                "header": header,
            },
            "server_reads": {
                "session_id": session.id().to_string(),
                "new": session.is_new(),
                "issued_ms": ms(session.issued_at()),
                "last_seen_ms": ms(session.last_seen()),
                "deadline_ms": ms(session.expires_at()),
                "subject": session.subject(),
                "dpop_bound": session.binding().is_some(),
                "data": session.data(),
            },
            "inspect": "sealed-session inspect --jwt-key key.pem --issuer sealed-session-demo \
                        --audience sealed-session-demo-api TOKEN",
        }))
    }

    /// `GET /session` in jwt mode: where the session is, and how to look at it.
    pub fn session_page() -> Reply {
        Reply::page(page(
            "Your session",
            "<p>Mode: <strong id=\"mode\">jwt</strong>. The session is a signed JWT that the \
             application keeps and sends in <code>Authorization</code>: the browser holds no \
             session cookie. <code>GET /api/session</code> with that header answers with the \
             token's readable header and what the server reads from it.</p>\
             <pre id=\"inspect\">curl -s http://HOST/api/session -H \"authorization: Bearer $TOKEN\"\n\
             sealed-session inspect --jwt-key key.pem TOKEN</pre>\
             <p><a href=\"/\">Home</a></p>",
        ))
    }

    /// `GET /api/me`: the user and a counter.
    pub fn me(session: &Session) -> Result<Reply, SessionError> {
        let Some(user) = current_user(session)? else {
            return Ok(not_logged_in());
        };
        let views = count(session, VIEWS)?;
        Ok(Reply::json(
            serde_json::json!({ "user": user, "views": views }),
        ))
    }

    /// `POST /api/logout`.
    pub fn logout(session: &Session) -> Result<Reply, SessionError> {
        if current_user(session)?.is_none() {
            return Ok(not_logged_in());
        }
        // Revokes the session id through the denylist (after the handler, in the
        // middleware; a revocation Redis could not record turns this into a 503).
        session.destroy()?;
        Ok(Reply::json(serde_json::json!({ "logged_out": true })))
    }
}

// ---------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sealed_session=debug"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Ends the program with exit code 2 and a message: for every start-up refusal.
fn refuse(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// The application of the chosen mode, for the example to route and serve.
pub enum App {
    /// The HTML routes under these sessions.
    Sealed(SealedSession),
    /// `/`, the JSON API under bearer JWT sessions, the JWK Set.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    Jwt(jwt::JwtApp),
}

/// What [`start`] made: where to listen, the application, and what to print once listening.
pub struct Setup {
    /// `--addr`, as given.
    pub addr: String,
    pub app: App,
    pub banner: Banner,
}

/// The start-up output but its first line (which needs the real address).
pub struct Banner {
    lines: Vec<String>,
    denylist_line: String,
    /// Sealed mode: the device registry's line.
    devices_line: Option<String>,
}

impl Banner {
    /// Prints the start-up output, once listening on `addr` (the real address: port 0
    /// resolved).
    pub fn announce(&self, addr: &str) {
        println!("listening on http://{addr}");
        for line in &self.lines {
            println!("{line}");
        }
        println!("revocation: {}", self.denylist_line);
        if let Some(line) = &self.devices_line {
            println!("devices: {line}");
        }
        println!("log in with {USERNAME} / {PASSWORD}");
    }
}

/// Sealed mode: keys from `SESSION_KEYS` / `SESSION_SECRET`, the cookie, the forms.
/// The keys of the sealed and store modes, from the environment ([`load_keys`]); a warning
/// when they were generated.
fn env_keys() -> Result<(Keyring, KeySource), String> {
    let (keys, source) = load_keys(
        std::env::var("SESSION_KEYS").ok(),
        std::env::var("SESSION_SECRET").ok(),
    )?;
    if source == KeySource::Generated {
        eprintln!(
            "warning: neither SESSION_KEYS nor SESSION_SECRET is set; using a random key made \
             at start: sessions will not survive a restart"
        );
    }
    Ok((keys, source))
}

fn build_sealed(
    args: &Args,
    denylist: Arc<dyn Denylist>,
    registry: Arc<dyn sealed_session::devices::Registry>,
) -> Result<(App, Vec<String>), String> {
    let (keys, source) = env_keys()?;
    let cookie = cookie_config(args.secure);
    let cookie_line = describe_cookie(&cookie);
    let keys_line = match source {
        KeySource::Ring => "keys from SESSION_KEYS",
        KeySource::Secret => "key derived from SESSION_SECRET",
        KeySource::Generated => "random key made at start",
    };
    let lines = vec![
        format!(
            "session mode: sealed (whole session in one {} encrypted cookie, no server-side \
             store; primary key {:?})",
            keys.primary_algorithm(),
            keys.primary_id()
        ),
        format!("session {cookie_line}; {keys_line}"),
    ];
    session_view::init(session_view::SessionView {
        mode: "sealed",
        keys: keys.clone(),
        store: None,
    });
    Ok((
        App::Sealed(sealed_sessions(keys, cookie, denylist, registry)),
        lines,
    ))
}

/// jwt mode: the key from `JWT_KEY_FILE` or generated, the JSON API.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
fn build_jwt(
    args: &Args,
    denylist: Arc<dyn Denylist>,
    dpop: Option<(sealed_session::binding::Dpop, String)>,
) -> Result<(App, Vec<String>), String> {
    let (ring, source) = jwt::load_ring(
        args.jwt_alg.as_deref(),
        args.jwt_kid.as_deref(),
        std::env::var("JWT_KEY_FILE").ok(),
    )?;
    let key_line = match &source {
        jwt::KeySource::File(path) => format!("key from JWT_KEY_FILE {path}"),
        jwt::KeySource::Generated => {
            eprintln!(
                "warning: JWT_KEY_FILE is not set; using a key generated at start ({}): tokens \
                 will not survive a restart, and other processes cannot verify them",
                ring.primary_algorithm()
            );
            "key generated at start".to_owned()
        }
    };
    if std::env::var_os("SESSION_KEYS").is_some() || std::env::var_os("SESSION_SECRET").is_some() {
        eprintln!(
            "note: SESSION_KEYS and SESSION_SECRET are not used in jwt mode (JWT_KEY_FILE is)"
        );
    }
    let mut lines = vec![
        format!(
            "session mode: jwt (bearer JWTs signed with {}, kid {:?}, issuer {:?}, audience \
             {:?}; {key_line}; signed, not encrypted: clients can read the claims)",
            ring.primary_algorithm(),
            ring.primary_kid(),
            jwt::ISSUER,
            jwt::AUDIENCE
        ),
        format!(
            "send the token as `Authorization: Bearer TOKEN`; a refreshed token comes back in \
             the {} response header whenever the session changes: use the newest one",
            jwt::TOKEN_HEADER
        ),
    ];
    lines.extend(
        jwt::route_lines(&ring)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    let dpop = dpop.map(|(dpop, line)| {
        lines.push(format!("DPoP: {line}"));
        dpop
    });
    let app = jwt::app(ring, denylist, dpop).map_err(|e| format!("JWT codec refused: {e}"))?;
    Ok((App::Jwt(app), lines))
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
fn build_jwt(
    _args: &Args,
    _denylist: Arc<dyn Denylist>,
    _dpop: Option<((), String)>,
) -> Result<(App, Vec<String>), String> {
    Err(
        "--mode jwt needs the `jwt` feature (on by default), and this demo was built without it"
            .to_owned(),
    )
}

/// Everything before listening: the command line (`--help` prints the usage), the logs, the
/// denylist, the keys and the sessions. `Err` is the exit code to end with, the message
/// already printed (2 for every refusal).
pub async fn start(program: &Program) -> Result<Setup, ExitCode> {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", usage(program));
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", usage(program));
            return Err(ExitCode::from(2));
        }
    };
    init_logs();

    let (built, denylist_line, devices_line) = match args.mode {
        Mode::Sealed => {
            let (denylist, denylist_line) = make_denylist(program, args.redis.as_deref())
                .await
                .map_err(|e| refuse(&e))?;
            let (registry, line) = devices::make_registry(args.redis.as_deref())
                .await
                .map_err(|e| refuse(&e))?;
            let built = build_sealed(&args, denylist, registry);
            (built, denylist_line, Some(line))
        }
        Mode::Jwt => {
            let (denylist, denylist_line) = make_denylist(program, args.redis.as_deref())
                .await
                .map_err(|e| refuse(&e))?;
            let dpop = match args.dpop {
                true => Some(
                    binding::make_dpop(args.redis.as_deref())
                        .await
                        .map_err(|e| refuse(&e))?,
                ),
                false => None,
            };
            (build_jwt(&args, denylist, dpop), denylist_line, None)
        }
        Mode::Store => {
            let (registry, line) = devices::make_registry(args.redis.as_deref())
                .await
                .map_err(|e| refuse(&e))?;
            // A logout deletes the session from the store: no denylist.
            let denylist_line =
                "the store: a logout deletes the session from it (no denylist needed)".to_owned();
            (
                store::build(program, &args, registry).await,
                denylist_line,
                Some(line),
            )
        }
    };
    let (mut app, mut lines) = built.map_err(|e| refuse(&e))?;
    if args.device_bound {
        let (bound, line) = binding::device_bound(app).map_err(|e| refuse(&e))?;
        app = bound;
        lines.push(format!("device binding: {line}"));
    }
    Ok(Setup {
        addr: args.addr,
        app,
        banner: Banner {
            lines,
            denylist_line,
            devices_line,
        },
    })
}

/// The message and exit code (1) when `addr` cannot be listened on.
pub fn cannot_listen(addr: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: cannot listen on {addr}: {e}");
    ExitCode::FAILURE
}

/// The message and exit code (1) when the server stops with an error.
pub fn server_stopped(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: server stopped: {e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        Args::parse(v.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_arguments() {
        let a = args(&[]).unwrap().unwrap();
        assert_eq!(a.addr, DEFAULT_ADDR);
        assert_eq!(a.mode, Mode::Sealed);
        let a = args(&[
            "--addr",
            "0.0.0.0:1",
            "--mode=sealed",
            "--cookie-secure",
            "auto",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.addr, "0.0.0.0:1");
        assert_eq!(a.secure, Secure::Auto);
        assert_eq!(a.redis, None);
        let a = args(&[
            "--mode",
            "jwt",
            "--jwt-alg=es256",
            "--jwt-kid",
            "k9",
            "--redis",
            "redis://127.0.0.1:1/",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.mode, Mode::Jwt);
        assert_eq!(a.jwt_alg.as_deref(), Some("es256"));
        assert_eq!(a.jwt_kid.as_deref(), Some("k9"));
        assert_eq!(a.redis.as_deref(), Some("redis://127.0.0.1:1/"));
        assert_eq!(
            args(&["--mode", "store"]).unwrap().unwrap().mode,
            Mode::Store
        );
        assert!(args(&["--mode", "memcached"]).is_err());
        assert!(
            args(&["--jwt-alg", "EdDSA"]).is_err(),
            "jwt flags need --mode jwt"
        );
        assert!(args(&["--redis", ""]).is_err());
        assert!(args(&["--addr"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn usage_names_the_program() {
        let text = usage(&Program {
            name: "axum_demo",
            redis_features: "redis,tower",
        });
        assert!(text.starts_with("usage: axum_demo [--addr"), "{text}");
        assert!(
            text.contains("cargo run --example axum_demo --features redis,tower"),
            "{text}"
        );
        assert!(!text.contains("PROGRAM") && !text.contains("FEATURES"));
    }

    #[test]
    fn keys_come_from_the_environment() {
        let (_, s) = load_keys(
            None,
            Some("a long and varied secret, forty-eight bytes ok!".into()),
        )
        .unwrap();
        assert_eq!(s, KeySource::Secret);
        assert!(load_keys(None, Some("short".into())).is_err());
        assert!(load_keys(Some("nonsense".into()), None).is_err());
        let (_, s) = load_keys(None, None).unwrap();
        assert_eq!(s, KeySource::Generated);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_urls_are_shown_without_password() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(
            redact("redis://user:s3cret@db.example:6379/0"),
            "redis://***@db.example:6379/0"
        );
        assert_eq!(redact("redis://:p@w@h/"), "redis://***@h/");
    }

    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    #[test]
    fn jwt_keys_load_or_generate() {
        use sealed_session::JwtAlgorithm;
        let (ring, source) = jwt::load_ring(None, None, None).unwrap();
        assert_eq!(ring.primary_algorithm(), JwtAlgorithm::EdDSA);
        assert_eq!(ring.primary_kid(), "g1");
        assert_eq!(source, jwt::KeySource::Generated);
        assert!(ring.has_public_keys());
        let (ring, _) = jwt::load_ring(Some("hs256"), Some("s1"), None).unwrap();
        assert!(!ring.has_public_keys());
        let e = jwt::load_ring(Some("ES256"), None, None).unwrap_err();
        assert!(e.contains("JWT_KEY_FILE") && e.contains("openssl"), "{e}");
        assert!(jwt::load_ring(Some("none"), None, None).is_err());
        let pem = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/jwt/es256.key.pem"
        );
        let (ring, source) = jwt::load_ring(Some("ES256"), None, Some(pem.to_owned())).unwrap();
        assert_eq!(
            (ring.primary_kid(), ring.primary_algorithm()),
            ("k1", JwtAlgorithm::ES256)
        );
        assert_eq!(source, jwt::KeySource::File(pem.to_owned()));
        // A PEM of another type, and a missing file: refused with the variable's name.
        let e = jwt::load_ring(None, None, Some(pem.to_owned())).unwrap_err();
        assert!(e.contains("JWT_KEY_FILE"), "{e}");
        let e = jwt::load_ring(None, None, Some("/nonexistent/key.pem".into())).unwrap_err();
        assert!(e.contains("JWT_KEY_FILE"), "{e}");
    }

    #[test]
    fn credentials_and_escaping() {
        assert!(credentials_ok("admin", "letmein"));
        assert!(!credentials_ok("admin", "letmeout"));
        assert!(!credentials_ok("root", "letmein"));
        assert!(!credentials_ok("", ""));
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
