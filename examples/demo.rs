//! The seeds' express-session login demo, on sealed sessions: the whole session lives in one
//! encrypted cookie, nothing is stored on the server.
//!
//! ```text
//! cargo run --example demo                          # http://127.0.0.1:3000
//! cargo run --example demo -- --addr 0.0.0.0:8080
//! SESSION_SECRET="$(head -c 48 /dev/urandom | base64)" cargo run --example demo
//! SESSION_KEYS="k2:BASE64,k1:BASE64" cargo run --example demo   # newest key first
//! ```
//!
//! Log in as `admin` / `letmein`. Routes:
//!
//! - `GET /`: the login form, or the user's name, a visit counter and a logout button;
//! - `POST /login`: checks the form, regenerates the session, 303 to `/secureplace`;
//! - `GET /secureplace`: only for logged-in users, others are sent back to `/`;
//! - `POST /logout`: destroys the session, 303 to `/`;
//! - `GET /views`: `{"views": n}`, counted per session.
//!
//! Options: `--addr HOST:PORT` (default `127.0.0.1:3000`; port 0 picks a free one, and the
//! address printed at start is the real one), `--mode sealed` (the only mode so far),
//! `--cookie-secure always|auto` (default `always`, see [`cookie_config`]).
//!
//! Keys: `SESSION_KEYS` (a key ring, see `Keyring`'s docs), else a key derived from
//! `SESSION_SECRET` (at least 32 bytes, through HKDF), else a random key made at start, with
//! a warning: sessions then do not survive a restart. Invalid keys or a weak secret end the
//! program with a message and exit code 2. Logs: `RUST_LOG` (default
//! `info,sealed_session=debug`, which shows each refused cookie and why).

use std::process::ExitCode;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::Tracing;
use poem::web::{Form, Html, Json, Redirect};
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route, Server, get, handler, post};
use sealed_session::{CookieConfig, Keyring, SameSite, SealedSession, Secure, Session};
use serde::Deserialize;
use subtle::ConstantTimeEq;

const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const USERNAME: &str = "admin";
const PASSWORD: &str = "letmein";

/// Session keys for `user`, `visits` (the counter of `GET /`) and `views` (of `/views`).
const USER: &str = "user";
const VISITS: &str = "visits";
const VIEWS: &str = "views";

// ---------------------------------------------------------------------------------------
// Command line and configuration
// ---------------------------------------------------------------------------------------

/// How sessions travel. Only `sealed` exists today; `jwt` (bearer tokens) and a store-backed
/// mode (`--redis URL`, the express-session design) are meant to join here: a variant, its
/// parsing in [`Args::parse`], its middleware in [`app`] and its line in [`Mode::describe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The whole session sealed (AES-256-GCM) into a cookie.
    Sealed,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "sealed" => Ok(Mode::Sealed),
            other => Err(format!(
                "unknown --mode {other:?}; available: sealed (jwt and redis are not implemented yet)"
            )),
        }
    }

    fn describe(self, keys: &Keyring) -> String {
        match self {
            Mode::Sealed => format!(
                "sealed (whole session in one {} encrypted cookie, no server-side store; primary key {:?})",
                keys.primary_algorithm(),
                keys.primary_id()
            ),
        }
    }
}

#[derive(Debug)]
struct Args {
    addr: String,
    mode: Mode,
    secure: Secure,
}

const USAGE: &str = "usage: demo [--addr HOST:PORT] [--mode sealed] [--cookie-secure always|auto]

  --addr HOST:PORT            where to listen (default 127.0.0.1:3000; port 0 picks one)
  --mode sealed               how sessions travel (only `sealed` for now)
  --cookie-secure always|auto Secure cookie attribute (default always; `auto` sets it only
                              for HTTPS requests, for browsers that refuse Secure cookies
                              from http://127.0.0.1)

environment:
  SESSION_KEYS    key ring, newest first: id:base64[,id:base64...] (32-byte keys)
  SESSION_SECRET  a long secret (>= 32 bytes) the key is derived from (HKDF)
  RUST_LOG        log filter (default info,sealed_session=debug)";

impl Args {
    /// Parses `--flag value` and `--flag=value`. `Ok(None)` for `--help`.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
        let mut out = Args {
            addr: DEFAULT_ADDR.to_owned(),
            mode: Mode::Sealed,
            secure: Secure::Always,
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
                other => return Err(format!("unknown argument {other:?}")),
            }
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

/// The routes, independent of how sessions travel.
fn routes() -> Route {
    Route::new()
        .at("/", get(index))
        .at("/login", post(login))
        .at("/logout", post(logout))
        .at("/secureplace", get(secureplace))
        .at("/views", get(views))
}

/// The whole application for a mode, a key ring and a cookie configuration.
fn app(mode: Mode, keys: Keyring, cookie: CookieConfig) -> impl Endpoint {
    let sessions = match mode {
        Mode::Sealed => SealedSession::new(keys).cookie(cookie),
    };
    routes().with(sessions).with(Tracing)
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
// Start-up
// ---------------------------------------------------------------------------------------

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sealed_session=debug"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
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

    let (keys, source) = match load_keys(
        std::env::var("SESSION_KEYS").ok(),
        std::env::var("SESSION_SECRET").ok(),
    ) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if source == KeySource::Generated {
        eprintln!(
            "warning: neither SESSION_KEYS nor SESSION_SECRET is set; using a random key made \
             at start: sessions will not survive a restart"
        );
    }

    let cookie = cookie_config(args.secure);
    let cookie_line = describe_cookie(&cookie);
    let endpoint = app(args.mode, keys.clone(), cookie);

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
    let keys_line = match source {
        KeySource::Ring => "keys from SESSION_KEYS",
        KeySource::Secret => "key derived from SESSION_SECRET",
        KeySource::Generated => "random key made at start",
    };
    println!("listening on http://{addr}");
    println!("session mode: {}", args.mode.describe(&keys));
    println!("session {cookie_line}; {keys_line}");
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
        assert!(args(&["--mode", "jwt"]).is_err());
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
