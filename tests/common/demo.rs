//! The login demo as a subprocess, and a tiny HTTP/1.1 client to drive it, shared by
//! `tests/browser.rs` and `tests/demo_modes.rs`.
//!
//! The demo comes in two examples that must behave the same: `examples/demo.rs` (Poem,
//! [`POEM`]) and `examples/axum_demo.rs` (axum through the tower layer, [`AXUM`], feature
//! `tower`). A test scenario is a function taking the example's name; [`for_each_demo!`]
//! makes one `#[test]` of it per example, the axum one only with the `tower` feature and the
//! Poem one only with `poem`.
//!
//! The demo binaries are built and found by `tests/common/example.rs`, with the **same
//! features as the test crate**, so `cargo test --all-features` tests all-features demos
//! (with `--redis`).
//!
//! Use from a test file with `mod common { pub mod demo; pub mod example; }`.

#![allow(dead_code)]

pub use super::example::TestResult;
use super::example::{example_binary, example_path};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The session cookie's name as the demo sends it (Secure, so with the `__Host-` prefix).
pub const COOKIE: &str = "__Host-sid";

/// The Poem demo, `examples/demo.rs` (feature `poem`).
pub const POEM: &str = "demo";
/// The axum demo, `examples/axum_demo.rs` (feature `tower`).
pub const AXUM: &str = "axum_demo";

/// `for_each_demo! { fn scenario; #[cfg(feature = "redis")] fn other; }` makes, for each
/// function `scenario(example: &'static str) -> TestResult` of the enclosing module, the
/// tests `on_poem::scenario` (with [`POEM`], feature `poem`) and `on_axum::scenario` (with
/// [`AXUM`], feature `tower`). Attributes before a `fn` go on both tests.
macro_rules! for_each_demo {
    ($($(#[$attr:meta])* fn $name:ident;)+) => {
        /// The scenarios against `examples/demo.rs` (Poem).
        #[cfg(feature = "poem")]
        mod on_poem {
            $(
                $(#[$attr])*
                #[test]
                fn $name() -> $crate::common::demo::TestResult {
                    super::$name($crate::common::demo::POEM)
                }
            )+
        }

        /// The scenarios against `examples/axum_demo.rs` (axum through the tower layer).
        #[cfg(feature = "tower")]
        mod on_axum {
            $(
                $(#[$attr])*
                #[test]
                fn $name() -> $crate::common::demo::TestResult {
                    super::$name($crate::common::demo::AXUM)
                }
            )+
        }
    };
}
pub(crate) use for_each_demo;

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// Kills (and reaps) the child when dropped, also when a test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/<profile>/examples/EXAMPLE` ([`POEM`] or [`AXUM`]).
pub fn demo_path(example: &'static str) -> TestResult<PathBuf> {
    example_path(example)
}

/// Builds the demo `example` ([`POEM`] or [`AXUM`]; a no-op when up to date) with this test
/// crate's features, once per example and test process (see `tests/common/example.rs`).
pub fn demo_binary(example: &'static str) -> TestResult<PathBuf> {
    example_binary(example)
}

/// The demo, listening on a free port; killed when dropped.
pub struct Demo {
    _child: KillOnDrop,
    pub addr: SocketAddr,
    /// Which example runs ([`POEM`] or [`AXUM`]), for messages.
    pub example: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    /// Runs the demo `example` ([`POEM`] or [`AXUM`]) with `args` (plus
    /// `--addr 127.0.0.1:0`) and the environment `env` (`SESSION_KEYS`, `SESSION_SECRET` and
    /// `JWT_KEY_FILE` are removed first, then `env` is applied), and waits until it prints the
    /// address it listens on.
    pub fn start(example: &'static str, args: &[&str], env: &[(&str, &str)]) -> TestResult<Demo> {
        let mut cmd = Command::new(demo_binary(example)?);
        cmd.args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("SESSION_KEYS")
            .env_remove("SESSION_SECRET")
            .env_remove("JWT_KEY_FILE")
            .env("RUST_LOG", "warn,sealed_session=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let child = KillOnDrop(child);
        // The demo prints the address it really listens on (port 0 picks one).
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.trim().to_owned());
                }
                if let Ok(mut v) = seen.lock() {
                    v.push(line);
                }
                // Keep draining so the demo never blocks on a full pipe.
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            format!("the {example} example did not print `listening on http://...` within 30 s")
        })?;
        Ok(Demo {
            _child: child,
            addr: addr.parse()?,
            example,
            lines,
        })
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits (up to 5 s) for a line of the start-up output that contains `needle`.
    pub fn wait_for_output(&self, needle: &str) -> TestResult<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .map_err(|_| "output lock poisoned")?
                .iter()
                .find(|l| l.contains(needle))
            {
                return Ok(l.clone());
            }
            if Instant::now() > deadline {
                let all = self.output();
                return Err(format!(
                    "no output line of the {} example contains {needle:?}; got:\n{all}",
                    self.example
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed on stdout so far.
    pub fn output(&self) -> String {
        self.lines.lock().map(|v| v.join("\n")).unwrap_or_default()
    }
}

pub fn free_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------
// Plain HTTP
// ---------------------------------------------------------------------------------------

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `name=value` of the session cookie this reply sets, if any.
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{COOKIE}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
    }

    /// Whether this reply clears the session cookie.
    pub fn clears_session_cookie(&self) -> bool {
        self.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{COOKIE}=")) && c.contains("Max-Age=0"))
    }

    /// The body as JSON.
    pub fn json(&self) -> TestResult<serde_json::Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not JSON ({e}): {:?}", self.body).into())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, read to the end), with a
/// form body for POST, and a session cookie if given.
pub fn http(
    demo: &Demo,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> TestResult<Reply> {
    let mut headers = Vec::new();
    if let Some(c) = cookie {
        headers.push(("Cookie", c.to_owned()));
    }
    let body = (method == "POST").then_some(("application/x-www-form-urlencoded", form));
    request(demo.addr, method, path, &headers, body)
}

/// One HTTP/1.1 request on a fresh connection, with extra headers and an optional body
/// `(content type, text)`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<(&str, &str)>,
) -> TestResult<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((content_type, text)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            text.len()
        ));
    }
    req.push_str("\r\n");
    if let Some((_, text)) = body {
        req.push_str(text);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .ok_or("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> TestResult<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("short chunk")?);
        s = rest.get(size + 2..).ok_or("short chunk")?;
    }
}
