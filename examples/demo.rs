//! The seeds' express-session login demo, on stateless sessions: in sealed mode the whole
//! session lives in one encrypted cookie; in jwt mode it is a signed JWT bearer token for
//! single-page apps. Nothing is stored on the server but the revocation list (the denylist).
//!
//! ```text
//! cargo run --example demo                          # http://127.0.0.1:3000
//! cargo run --example demo -- --addr 0.0.0.0:8080
//! SESSION_SECRET="$(head -c 48 /dev/urandom | base64)" cargo run --example demo
//! SESSION_KEYS="k2:BASE64,k1:BASE64" cargo run --example demo   # newest key first
//! cargo run --example demo -- --mode jwt            # JSON API with bearer JWTs (EdDSA)
//! cargo run --example demo --features redis -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! Log in as `admin` / `letmein`. Routes of `--mode sealed` (the default):
//!
//! - `GET /`: the login form, or the user's name, a visit counter and a logout button;
//! - `POST /login`: checks the form, regenerates the session, 303 to `/secureplace`;
//! - `GET /secureplace`: only for logged-in users, others are sent back to `/`;
//! - `POST /logout`: destroys (and revokes) the session, 303 to `/`;
//! - `GET /views`: `{"views": n}`, counted per session.
//!
//! Routes of `--mode jwt` (JSON; the token travels in `Authorization: Bearer TOKEN`):
//!
//! - `GET /`: says which mode runs and lists the API routes;
//! - `POST /api/login` with `{"username": ..., "password": ...}`: `{"token": ...}`, or 401
//!   with `WWW-Authenticate: Bearer realm="sealed-session-demo"` (400 for a body that is not
//!   such JSON);
//! - `GET /api/me`: `{"user": ..., "views": n}`, counting; each answer carries the refreshed
//!   token in the `x-session-token` response header (use it for the next request);
//! - `POST /api/logout`: ends (and revokes) the session: the token then gets a 401;
//! - `GET /.well-known/jwks.json`: the public keys as a JWK Set (asymmetric keys only).
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:3000`; port 0 picks a free one, and the
//! address printed at start is the real one), `--mode sealed|jwt`,
//! `--cookie-secure always|auto` (default `always`, see [`cookie_config`]), `--redis URL`
//! (share revocations through Redis, feature `redis`), `--jwt-alg ALG` and `--jwt-kid KID`
//! (jwt mode). See [`USAGE`].
//!
//! Revocation: logging out calls `Session::destroy`, which revokes the session id through
//! the denylist, so a cookie or token replayed after logout is refused. By default the
//! denylist is in this process's memory; with `--redis URL` it is a `RedisDenylist`, so
//! several demo processes (on different ports, given the same `SESSION_KEYS` or
//! `SESSION_SECRET`, or in jwt mode the same `JWT_KEY_FILE`) share sessions, which they do
//! statelessly anyway, and revocations. Redis unreachable at start: a message and exit code 2.
//!
//! Keys, sealed mode: `SESSION_KEYS` (a key ring, see `Keyring`'s docs), else a key derived
//! from `SESSION_SECRET` (at least 32 bytes, through HKDF), else a random key made at start,
//! with a warning: sessions then do not survive a restart. Keys, jwt mode: `JWT_KEY_FILE` (a
//! PKCS#8 PEM private key for the asymmetric algorithms, the base64 secret for `HS*`), else a
//! key generated at start (EdDSA and `HS*` only), with the same warning. Invalid keys or a
//! weak secret end the program with a message and exit code 2. Logs: `RUST_LOG` (default
//! `info,sealed_session=debug`, which shows each refused cookie or token and why).

use std::process::ExitCode;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Tracing;
use poem::web::{Form, Html, Json, Redirect};
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, endpoint::BoxEndpoint, get, handler, post,
};
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::{CookieConfig, Keyring, SameSite, SealedSession, Secure, Session};
use serde::Deserialize;
use subtle::ConstantTimeEq;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const USERNAME: &str = "admin";
const PASSWORD: &str = "letmein";

/// Session keys for `user`, `visits` (the counter of `GET /`) and `views` (of `/views` and
/// `/api/me`).
const USER: &str = "user";
const VISITS: &str = "visits";
const VIEWS: &str = "views";

/// The Redis key prefix of the demo's denylist: every demo process given the same `--redis`
/// shares revocations through it.
#[cfg(feature = "redis")]
const REDIS_PREFIX: &str = "sealed-session-demo:denylist:";

// ---------------------------------------------------------------------------------------
// Command line and configuration
// ---------------------------------------------------------------------------------------

/// How sessions travel. A store-backed mode (the express-session design) would join here:
/// a variant, its parsing in [`Mode::parse`], its application in [`main`] and its line in the
/// start-up output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The whole session sealed (AES-256-GCM) into a cookie; HTML forms.
    Sealed,
    /// The session as a signed JWT in `Authorization: Bearer`; a JSON API.
    Jwt,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "sealed" => Ok(Mode::Sealed),
            "jwt" => Ok(Mode::Jwt),
            other => Err(format!("unknown --mode {other:?}; available: sealed, jwt")),
        }
    }
}

#[derive(Debug)]
struct Args {
    addr: String,
    mode: Mode,
    secure: Secure,
    /// `--redis URL`: the Redis denylist instead of the in-memory one.
    redis: Option<String>,
    /// `--jwt-alg`, parsed when the jwt mode starts (default EdDSA).
    jwt_alg: Option<String>,
    /// `--jwt-kid` (default `k1` for a key from `JWT_KEY_FILE`, `g1` for a generated one).
    jwt_kid: Option<String>,
}

const USAGE: &str = "usage: demo [--addr HOST:PORT] [--mode sealed|jwt] [--cookie-secure always|auto]
            [--redis URL] [--jwt-alg ALG] [--jwt-kid KID]

  --addr HOST:PORT            where to listen (default 127.0.0.1:3000; port 0 picks one)
  --mode sealed|jwt           how sessions travel (default sealed):
                                sealed: the whole session in one encrypted cookie; HTML forms
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
                              needs the `redis` feature: cargo run --example demo --features redis
                              Default: an in-memory denylist (this process only). Either way a
                              cookie or token replayed after logout is refused.
  --jwt-alg ALG               jwt mode: EdDSA (default), ES256, ES384, RS256, PS256, HS256,
                              HS384 or HS512. EdDSA because it is the fastest asymmetric one
                              (about 60 us to sign and verify with aws-lc, against 84 us for
                              ES256, and far more for RSA) with compact keys and signatures;
                              HS256 is faster still, but a shared secret cannot be published,
                              so other services could not verify the tokens.
  --jwt-kid KID               jwt mode: the key id (default k1 with JWT_KEY_FILE, else g1)

environment:
  SESSION_KEYS    sealed mode: key ring, newest first: id:base64[,id:base64...] (32-byte keys)
  SESSION_SECRET  sealed mode: a long secret (>= 32 bytes) the key is derived from (HKDF)
  JWT_KEY_FILE    jwt mode: the signing key: a PKCS#8 PEM private key (EdDSA, ES*, RS*, PS*;
                  e.g. `openssl genpkey -algorithm ED25519 -out key.pem`) or, for HS*, a
                  base64 secret (`openssl rand -base64 32`). Without it a key is generated at
                  start (EdDSA and HS* only) and tokens do not survive a restart. Give two
                  jwt-mode processes the same file (and kid) to share sessions.
  RUST_LOG        log filter (default info,sealed_session=debug)";

impl Args {
    /// Parses `--flag value` and `--flag=value`. `Ok(None)` for `--help`.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
        let mut out = Args {
            addr: DEFAULT_ADDR.to_owned(),
            mode: Mode::Sealed,
            secure: Secure::Always,
            redis: None,
            jwt_alg: None,
            jwt_kid: None,
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
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
        Ok(Some(out))
    }
}

/// Where the keys came from, for the start-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    Ring,
    Secret,
    Generated,
}

/// Keys from `SESSION_KEYS`, else from `SESSION_SECRET`, else generated.
fn load_keys(
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
fn cookie_config(secure: Secure) -> CookieConfig {
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

// ---------------------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------------------

/// The HTML routes of the sealed (cookie) mode.
fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/login", post(login))
        .at("/logout", post(logout))
        .at("/secureplace", get(secureplace))
        .at("/views", get(views))
}

/// The sealed-mode application: sessions in a cookie, checked against `denylist`.
fn sealed_app(
    keys: Keyring,
    cookie: CookieConfig,
    denylist: Arc<dyn Denylist>,
) -> BoxEndpoint<'static> {
    routes()
        .with(
            SealedSession::sealed(keys)
                .cookie(cookie)
                .denylist(denylist),
        )
        .with(Tracing)
        .map_to_response()
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------

/// The denylist: in memory by default, or on Redis with `--redis URL`; and its line for the
/// start-up output.
async fn make_denylist(redis: Option<&str>) -> Result<(Arc<dyn Denylist>, String), String> {
    match redis {
        None => Ok((
            Arc::new(MemoryDenylist::new()),
            "in-memory denylist (this process only; a cookie or token replayed after logout \
             is refused here, not by other processes: use --redis URL to share)"
                .to_owned(),
        )),
        Some(url) => redis_denylist(url).await,
    }
}

#[cfg(feature = "redis")]
async fn redis_denylist(url: &str) -> Result<(Arc<dyn Denylist>, String), String> {
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
async fn redis_denylist(_url: &str) -> Result<(Arc<dyn Denylist>, String), String> {
    Err(
        "--redis needs the `redis` feature, and this demo was built without it; build with \
         `--features redis`: cargo run --example demo --features redis -- --redis URL"
            .to_owned(),
    )
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
fn redact(url: &str) -> String {
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

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(s: &str) -> String {
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

/// A page around `body`, which must already be escaped.
fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}\
         .error{{color:#b00}}label{{display:block;margin:.5em 0}}</style>\
         </head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    ))
}

fn login_form(error: Option<&str>, username: &str) -> Html<String> {
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

fn current_user(session: &Session) -> poem::Result<Option<String>> {
    Ok(session.get::<String>(USER)?)
}

#[handler]
fn index(session: &Session) -> poem::Result<Html<String>> {
    let Some(user) = current_user(session)? else {
        // Nothing is stored for anonymous visitors, so they get no cookie at all.
        return Ok(login_form(None, ""));
    };
    let visits = session.get::<u64>(VISITS)?.unwrap_or(0).saturating_add(1);
    session.insert(VISITS, &visits)?;
    Ok(page(
        "Welcome",
        &format!(
            "<p>Logged in as <strong id=\"user\">{}</strong>.</p>\
             <p>Visits to this page in this session: <span id=\"visits\">{visits}</span></p>\
             <p><a href=\"/secureplace\">The secure place</a> · <a href=\"/views\">/views</a></p>\
             {LOGOUT_FORM}",
            escape(&user)
        ),
    ))
}

/// Constant-time credential check: both comparisons always run (`&` on `Choice`, no
/// short-circuit), so the timing tells nothing about which field was wrong or how much of it
/// matched. (Lengths may leak; a real app compares password hashes, which have a fixed length.)
fn credentials_ok(username: &str, password: &str) -> bool {
    let user_ok = username.as_bytes().ct_eq(USERNAME.as_bytes());
    let pass_ok = password.as_bytes().ct_eq(PASSWORD.as_bytes());
    bool::from(user_ok & pass_ok)
}

/// The forms post same-origin only in practice: the session cookie is SameSite=Lax, so a
/// cross-site form POST arrives without it (no login CSRF into an existing session, no
/// forced logout that matters).
#[handler]
fn login(session: &Session, Form(form): Form<Login>) -> poem::Result<Response> {
    if !credentials_ok(&form.username, &form.password) {
        tracing::info!(username = %form.username, "login refused");
        return Ok(
            login_form(Some("Wrong username or password."), &form.username)
                .with_status(StatusCode::UNAUTHORIZED)
                .into_response(),
        );
    }
    // A new session id at login, against session fixation; the old data is dropped.
    session.regenerate()?;
    session.insert(USER, &form.username)?;
    session.set_subject(form.username.as_str());
    tracing::info!(username = %form.username, "logged in");
    Ok(Redirect::see_other("/secureplace").into_response())
}

#[handler]
fn secureplace(session: &Session) -> poem::Result<Response> {
    match current_user(session)? {
        Some(user) => Ok(page(
            "The secure place",
            &format!(
                "<p>Welcome to the secure place, <strong id=\"user\">{}</strong>.</p>\
                 <p><a href=\"/\">Home</a></p>{LOGOUT_FORM}",
                escape(&user)
            ),
        )
        .into_response()),
        None => Ok(Redirect::see_other("/").into_response()),
    }
}

#[handler]
fn logout(session: &Session) -> poem::Result<Redirect> {
    session.destroy()?;
    Ok(Redirect::see_other("/"))
}

#[handler]
fn views(session: &Session) -> poem::Result<Json<serde_json::Value>> {
    let n = session.get::<u64>(VIEWS)?.unwrap_or(0).saturating_add(1);
    session.insert(VIEWS, &n)?;
    Ok(Json(serde_json::json!({ "views": n })))
}

// ---------------------------------------------------------------------------------------
// jwt mode: a JSON API with bearer JWTs
// ---------------------------------------------------------------------------------------

#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt {
    use std::sync::Arc;

    use poem::endpoint::{BoxEndpoint, make_sync};
    use poem::http::StatusCode;
    use poem::http::header::WWW_AUTHENTICATE;
    use poem::middleware::Tracing;
    use poem::web::{Html, Json};
    use poem::{EndpointExt, IntoResponse, Response, Route, get, handler, post};
    use sealed_session::denylist::Denylist;
    use sealed_session::{
        BearerConfig, Jwks, JwtAlgorithm, JwtCodec, JwtConfigError, JwtKey, JwtKeyError,
        JwtKeyring, SealedSession, Session,
    };
    use serde::Deserialize;

    use super::{USER, VIEWS, credentials_ok, current_user, escape, page};

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

    /// The jwt-mode application: `/`, the API under bearer JWT sessions checked against
    /// `denylist`, and the JWK Set when the key is asymmetric.
    pub fn app(
        ring: &JwtKeyring,
        denylist: Arc<dyn Denylist>,
    ) -> Result<BoxEndpoint<'static>, JwtConfigError> {
        let codec = JwtCodec::builder(ring.clone())
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()?;
        let sessions = SealedSession::with_codec(codec)
            .bearer(BearerConfig::new())
            .denylist(denylist);
        let api = Route::new()
            .at("/login", post(login))
            .at("/me", get(me))
            .at("/logout", post(logout))
            .with(sessions);
        let home = index_page(ring);
        let mut route = Route::new()
            .at("/", get(make_sync(move |_| home.clone())))
            .nest("/api", api);
        if ring.has_public_keys() {
            route = route.at("/.well-known/jwks.json", get(Jwks::new(ring)));
        }
        Ok(route.with(Tracing).map_to_response().boxed())
    }

    /// The routes, for `GET /` and the start-up output.
    pub fn route_lines(ring: &JwtKeyring) -> Vec<String> {
        let mut lines = vec![
            "POST /api/login   {\"username\": ..., \"password\": ...} -> {\"token\": ...}"
                .to_owned(),
            "GET  /api/me      Authorization: Bearer TOKEN -> {\"user\": ..., \"views\": n}"
                .to_owned(),
            "POST /api/logout  Authorization: Bearer TOKEN -> the token is revoked".to_owned(),
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

    fn index_page(ring: &JwtKeyring) -> Html<String> {
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

    #[derive(Deserialize)]
    struct Credentials {
        username: String,
        password: String,
    }

    fn json_error(status: StatusCode, msg: &str) -> Response {
        Json(serde_json::json!({ "error": msg }))
            .with_status(status)
            .into_response()
    }

    /// 401 for a request without a logged-in session (RFC 6750: a bare `Bearer` challenge
    /// when no token came; a refused token never reaches the handler, the middleware answers
    /// it with `error="invalid_token"`).
    fn not_logged_in() -> Response {
        unauthorized("not logged in: POST /api/login first")
    }

    /// A 401 with `msg` and the `WWW-Authenticate: Bearer realm="..."` challenge that every
    /// 401 must carry (RFC 9110 section 15.5.2): the API authenticates by bearer token, which
    /// `POST /api/login` hands out.
    fn unauthorized(msg: &str) -> Response {
        json_error(StatusCode::UNAUTHORIZED, msg)
            .with_header(WWW_AUTHENTICATE, format!("Bearer realm=\"{ISSUER}\""))
            .into_response()
    }

    #[handler]
    fn login(session: &Session, body: poem::Result<Json<Credentials>>) -> poem::Result<Response> {
        let Ok(Json(creds)) = body else {
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
        session.regenerate()?;
        session.insert(USER, &creds.username)?;
        session.set_subject(creds.username.as_str());
        let Some(token) = session.token()? else {
            return Ok(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the session ended before its token was made",
            ));
        };
        tracing::info!(username = %creds.username, "api logged in");
        Ok(Json(serde_json::json!({ "token": token })).into_response())
    }

    #[handler]
    fn me(session: &Session) -> poem::Result<Response> {
        let Some(user) = current_user(session)? else {
            return Ok(not_logged_in());
        };
        let views = session.get::<u64>(VIEWS)?.unwrap_or(0).saturating_add(1);
        session.insert(VIEWS, &views)?;
        Ok(Json(serde_json::json!({ "user": user, "views": views })).into_response())
    }

    #[handler]
    fn logout(session: &Session) -> poem::Result<Response> {
        if current_user(session)?.is_none() {
            return Ok(not_logged_in());
        }
        // Revokes the session id through the denylist (after the handler, in the
        // middleware; a revocation Redis could not record turns this into a 503).
        session.destroy()?;
        Ok(Json(serde_json::json!({ "logged_out": true })).into_response())
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

/// The application of the chosen mode, and the lines that describe it at start.
struct Built {
    endpoint: BoxEndpoint<'static>,
    lines: Vec<String>,
}

/// Sealed mode: keys from `SESSION_KEYS` / `SESSION_SECRET`, the cookie, the forms.
fn build_sealed(args: &Args, denylist: Arc<dyn Denylist>) -> Result<Built, String> {
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
    Ok(Built {
        endpoint: sealed_app(keys, cookie, denylist),
        lines,
    })
}

/// jwt mode: the key from `JWT_KEY_FILE` or generated, the JSON API.
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
fn build_jwt(args: &Args, denylist: Arc<dyn Denylist>) -> Result<Built, String> {
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
    Ok(Built {
        endpoint: jwt::app(&ring, denylist).map_err(|e| format!("JWT codec refused: {e}"))?,
        lines,
    })
}

#[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
fn build_jwt(_args: &Args, _denylist: Arc<dyn Denylist>) -> Result<Built, String> {
    Err(
        "--mode jwt needs the `jwt` feature (on by default), and this demo was built without it"
            .to_owned(),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logs();

    let (denylist, denylist_line) = match make_denylist(args.redis.as_deref()).await {
        Ok(d) => d,
        Err(e) => return refuse(&e),
    };
    let built = match args.mode {
        Mode::Sealed => build_sealed(&args, denylist),
        Mode::Jwt => build_jwt(&args, denylist),
    };
    let Built { endpoint, lines } = match built {
        Ok(b) => b,
        Err(e) => return refuse(&e),
    };

    let acceptor = match TcpListener::bind(args.addr.as_str()).into_acceptor().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .map_or_else(|| args.addr.clone(), |a| a.to_string());
    println!("listening on http://{addr}");
    for line in lines {
        println!("{line}");
    }
    println!("revocation: {denylist_line}");
    println!("log in with {USERNAME} / {PASSWORD}");

    if let Err(e) = Server::new_with_acceptor(acceptor).run(endpoint).await {
        eprintln!("error: server stopped: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
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
        assert!(args(&["--mode", "store"]).is_err());
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
