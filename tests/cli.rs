//! The `sealed-session` binary, run as a user would: on tokens made by the library, on a
//! cookie made by the Poem middleware, and on hostile input.
#![cfg(feature = "cli")]
#![cfg(feature = "poem")]

#[cfg(feature = "redis")]
mod common {
    pub mod redis;
}

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use poem::http::header::SET_COOKIE;
use poem::test::TestClient;
use poem::{EndpointExt, Route, get, handler};
use sealed_session::codec::SessionIdCodec;
use sealed_session::{
    Codec, JwtAlgorithm, JwtCodec, JwtKey, JwtKeyring, Keyring, SealedCodec, SealedSession,
    Session, SessionId, SessionState, SignedCodec, Timestamp,
};
use serde_json::Value;

const RING: &str = "k2:xchacha20poly1305:Jm0mOuIqC4Sxv3kVCM4ZPl6tJTg7DJAXo7Bfy8S4rAk,k1:8h5vY4lNGLrl3WiMvMnXaTRbCn1GPVQ9jLYbAmm2h2c";
/// Same ids, other material.
const OTHER_RING: &str = "k2:xchacha20poly1305:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// Other ids.
const FOREIGN_RING: &str = "z9:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs the binary with `args`, no key variables unless given in `env`, `stdin` piped in.
fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealed-session"));
    cmd.args(args)
        .env_remove("SESSION_KEYS")
        .env_remove("SESSION_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run sealed-session");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for sealed-session");
    Out {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

fn ring() -> Keyring {
    RING.parse().unwrap()
}

/// A session issued `age` ago, last seen `idle` ago, expiring `ttl` after issue.
fn state(age: Duration, idle: Duration, ttl: Duration) -> SessionState {
    let issued = Timestamp::from_millis(now().as_millis() - age.as_millis() as u64);
    let seen = Timestamp::from_millis(now().as_millis() - idle.as_millis() as u64);
    let mut s = SessionState::new(
        SessionId::generate().unwrap(),
        issued,
        issued.saturating_add(ttl),
    );
    s.set_last_seen(seen);
    s.set_subject(Some("user-42".to_owned()));
    s.insert("user", "admin").unwrap();
    s.insert("cart", &[3, 5]).unwrap();
    s
}

fn fresh() -> SessionState {
    state(
        Duration::from_secs(600),
        Duration::from_secs(60),
        Duration::from_secs(86_400),
    )
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sealed-session-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn sealed_token_with_keys_from_env() {
    let s = fresh();
    let token = SealedCodec::new(ring()).seal(&s, b"sid").unwrap();
    let out = run(&["inspect", &token], &[("SESSION_KEYS", RING)], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for want in [
        "VALID",
        "sealed",
        "k2 (xchacha20poly1305, primary key)",
        &s.id().to_string(),
        "user-42",
        "\"user\": \"admin\"",
        "ago)",
        "(in 23h",
        "expired       no",
    ] {
        assert!(
            out.stdout.contains(want),
            "missing {want:?} in\n{}",
            out.stdout
        );
    }
    // The key material is never printed.
    assert!(!out.stdout.contains("Jm0mOuIq") && !out.stderr.contains("Jm0mOuIq"));
}

#[test]
fn json_output_fields() {
    let s = fresh();
    let older: Keyring = RING.split(',').nth(1).unwrap().parse().unwrap();
    let token = SealedCodec::new(older).seal(&s, b"sid").unwrap();
    let keys = temp_file(
        "ring.txt",
        &format!("# the ring\n{}\n", RING.replace(',', "\n")),
    );
    let out = run(
        &[
            "inspect",
            "--json",
            "--keys-file",
            keys.to_str().unwrap(),
            &token,
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let j = out.json();
    assert_eq!(j["status"], "valid");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["verified"], true);
    assert_eq!(j["kind"], "sealed");
    assert_eq!(j["key_id"], "k1");
    assert_eq!(j["algorithm"], "aes256gcm");
    assert_eq!(j["key_is_primary"], false);
    assert_eq!(j["purpose"], "sid");
    assert_eq!(j["session_id"], s.id().to_string());
    assert_eq!(j["subject"], "user-42");
    assert_eq!(j["data"]["cart"], serde_json::json!([3, 5]));
    assert_eq!(j["issued_at"]["ms"], s.issued_at().as_millis());
    let rel = j["issued_at"]["relative"].as_str().unwrap();
    assert!(rel.starts_with("10m") && rel.ends_with(" ago"), "{rel}");
    assert_eq!(j["expired"], false);
    assert_eq!(j["revocation"], "not_checked");
    assert!(j["notes"][0].as_str().unwrap().contains("re-issues"));
}

#[test]
fn signed_token_without_key_is_readable_but_unverified() {
    let s = fresh();
    let token = SignedCodec::new(ring()).seal(&s, b"sid").unwrap();
    let out = run(&["inspect", "-"], &[], Some(&format!("{token}\n")));
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("UNVERIFIED"), "{}", out.stdout);
    assert!(out.stdout.contains("\"user\": \"admin\""), "{}", out.stdout);
    let j = run(&["inspect", "--json", &token], &[], None).json();
    assert_eq!(j["status"], "unverified");
    assert_eq!(j["verified"], false);
    assert_eq!(j["session_id"], s.id().to_string());
}

#[test]
fn sealed_token_without_key_shows_header_only() {
    let token = SealedCodec::new(ring()).seal(&fresh(), b"sid").unwrap();
    let out = run(&["inspect", "--json", &token], &[], None);
    assert_eq!(out.code, 3);
    let j = out.json();
    assert_eq!(
        (j["kind"].as_str(), j["key_id"].as_str()),
        (Some("sealed"), Some("k2"))
    );
    assert_eq!(j["format_version"], 1);
    assert_eq!(j["session_id"], Value::Null);
    assert_eq!(j["data"], Value::Null);
    assert!(j["unreadable"].as_array().unwrap().contains(&"data".into()));
}

#[test]
fn store_backed_signed_id() {
    let id = SessionId::generate().unwrap();
    let token = SessionIdCodec::new(ring()).sign(&id, b"__Host-sid");
    let cookie = format!("__Host-sid={token}");
    let j = run(
        &["inspect", "--json", &cookie],
        &[("SESSION_KEYS", RING)],
        None,
    )
    .json();
    assert_eq!(j["status"], "valid");
    assert_eq!(j["kind"], "session_id");
    assert_eq!(j["session_id"], id.to_string());
    assert_eq!(j["purpose"], "__Host-sid");
    // Without the key: the id is readable, unverified.
    let out = run(&["inspect", "--json", &cookie], &[], None);
    assert_eq!(out.code, 3);
    assert_eq!(out.json()["session_id"], id.to_string());
}

#[test]
fn secret_from_env() {
    let secret = "a long random secret of at least thirty-two bytes";
    let ring = Keyring::from_secret(secret).unwrap();
    let token = SealedCodec::new(ring).seal(&fresh(), b"sid").unwrap();
    let out = run(&["inspect", &token], &[("SESSION_SECRET", secret)], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(secret));
}

#[test]
fn jwt_with_and_without_key() {
    let (key, pem) = JwtKey::generate("j1", JwtAlgorithm::EdDSA).unwrap();
    let codec = JwtCodec::builder(JwtKeyring::new([key]).unwrap())
        .audience("api")
        .allow_missing_issuer_or_audience()
        .build()
        .unwrap();
    let s = fresh();
    let token = codec.seal(&s, b"").unwrap();
    let pem_file = temp_file("jwt.pem", &pem);
    let pem_path = pem_file.to_str().unwrap();

    let out = run(
        &[
            "inspect",
            "--json",
            "--jwt-key",
            pem_path,
            "--audience",
            "api",
            &token,
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["kind"], "jwt");
    assert_eq!(j["algorithm"], "EdDSA");
    assert_eq!(j["key_id"], "j1");
    assert_eq!(j["session_id"], s.id().to_string());
    assert_eq!(j["data"]["user"], "admin");
    assert_eq!(j["jwt_claims"]["aud"], "api");
    assert!(!out.stdout.contains("PRIVATE KEY"));

    // Without --audience the library refuses a token that carries one; the hint says so.
    let out = run(
        &["inspect", "--json", "--jwt-key", pem_path, &token],
        &[],
        None,
    );
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(j["reason"], "claim_mismatch");
    assert!(j["hint"].as_str().unwrap().contains("--audience"));

    // Without a key: the claims, unverified.
    let out = run(&["inspect", &token], &[], None);
    assert_eq!(out.code, 3);
    assert!(out.stdout.contains("UNVERIFIED") && out.stdout.contains("\"user\": \"admin\""));

    // Another key under the same kid.
    let (_, other) = JwtKey::generate("j1", JwtAlgorithm::EdDSA).unwrap();
    let other = temp_file("other.pem", &other);
    let out = run(
        &[
            "inspect",
            "--json",
            "--audience",
            "api",
            "--jwt-key",
            other.to_str().unwrap(),
            &token,
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["reason"], "bad_seal");
}

#[test]
fn expired_and_idle_tokens() {
    let hour = Duration::from_secs(3600);
    // Absolute deadline passed.
    let s = state(25 * hour, Duration::from_secs(60), 24 * hour);
    let token = SealedCodec::new(ring()).seal(&s, b"sid").unwrap();
    let out = run(
        &["inspect", "--json", &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(j["status"], "refused");
    assert_eq!(j["reason"], "expired");
    assert_eq!(j["verified"], true, "authenticated even though expired");
    assert_eq!(j["expired"], true);
    assert_eq!(j["data"]["user"], "admin");
    assert!(j["error"].as_str().unwrap().contains("expired at"));

    // Idle for two hours: refused under the default 1 h, accepted with --idle-timeout 3h.
    let s = state(3 * hour, 2 * hour, 24 * hour);
    let token = SignedCodec::new(ring()).seal(&s, b"sid").unwrap();
    let out = run(&["inspect", &token], &[("SESSION_KEYS", RING)], None);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("REFUSED") && out.stdout.contains("idle_timeout"));
    let out = run(
        &["inspect", "--idle-timeout", "3h", &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    let out = run(
        &["inspect", "--idle-timeout", "none", &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    // --now moves the check back to when it was fresh.
    let then = (s.last_seen().as_millis() + 1000).to_string();
    let out = run(
        &["inspect", "--now", &then, &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn tampered_and_wrong_keys() {
    let token = SealedCodec::new(ring()).seal(&fresh(), b"sid").unwrap();
    // Flip one character in the ciphertext.
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let out = run(
        &["inspect", "--json", &tampered],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(j["reason"], "bad_seal");
    assert_eq!(j["verified"], false);
    assert!(j["hint"].as_str().unwrap().contains("__Host-sid, sid"));

    let out = run(
        &["inspect", "--json", &token],
        &[("SESSION_KEYS", OTHER_RING)],
        None,
    );
    assert_eq!(
        (out.code, out.json()["reason"].clone()),
        (1, "bad_seal".into())
    );

    let out = run(
        &["inspect", "--json", &token],
        &[("SESSION_KEYS", FOREIGN_RING)],
        None,
    );
    assert_eq!(out.code, 1);
    let j = out.json();
    assert_eq!(j["reason"], "unknown_key_id");
    assert!(j["hint"].as_str().unwrap().contains("z9"));

    // A token made for another cookie: refused with the purpose given.
    let out = run(
        &["inspect", "--json", "--purpose", "other", &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.json()["reason"], "bad_seal");
}

#[test]
fn cookie_header_with_chunks() {
    let token = SealedCodec::new(ring())
        .seal(&fresh(), b"__Host-sid")
        .unwrap();
    let (a, b) = token.split_at(token.len() / 2);
    let header = format!("Cookie: theme=dark; __Host-sid.1={b}; __Host-sid.0={a}; lang=en");
    let out = run(
        &["inspect", "--json", &header],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["source"], "cookie");
    assert_eq!(j["cookie_name"], "__Host-sid");
    assert_eq!(j["chunks"], 2);
    assert_eq!(j["purpose"], "__Host-sid");

    // A missing chunk is bad input, and says which.
    let out = run(
        &["inspect", &format!("__Host-sid.1={b}; x=y")],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("__Host-sid.0"), "{}", out.stderr);

    // No session cookie at all: names the cookies found and --name.
    let out = run(&["inspect", "theme=dark; lang=en"], &[], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("theme, lang") && out.stderr.contains("--name"));
}

#[test]
fn set_cookie_value_and_custom_name() {
    let token = SignedCodec::new(ring()).seal(&fresh(), b"app").unwrap();
    let set_cookie = format!("app={token}; Path=/; HttpOnly; SameSite=Lax");
    let out = run(
        &["inspect", "--json", "--name", "app", &set_cookie],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(
        (j["source"].as_str(), j["purpose"].as_str()),
        (Some("set-cookie"), Some("app"))
    );
}

#[test]
fn keygen_and_rotate_round_trip() {
    let out = run(&["keygen", "--id", "k1"], &[], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first: Keyring = out
        .stdout
        .trim()
        .parse()
        .expect("keygen output is a key ring");
    assert_eq!(first.primary_id(), "k1");

    let out = run(
        &["rotate", "--alg", "chacha20poly1305"],
        &[("SESSION_KEYS", out.stdout.trim())],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second: Keyring = out.stdout.trim().parse().unwrap();
    assert_eq!(second.ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert_eq!(second.primary_algorithm().name(), "chacha20poly1305");
    // The old key is kept as it was.
    assert!(out.stdout.trim().ends_with(first.to_ring_string().as_str()));

    let file = temp_file("rotate.txt", out.stdout.trim());
    let out = run(&["rotate", "--file", file.to_str().unwrap()], &[], None);
    let third: Keyring = out.stdout.trim().parse().unwrap();
    assert_eq!(third.ids().collect::<Vec<_>>(), ["k3", "k2", "k1"]);

    let out = run(
        &["rotate", "--keep", "2", "--id", "new", out.stdout.trim()],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kept: Keyring = out.stdout.trim().parse().unwrap();
    assert_eq!(kept.ids().collect::<Vec<_>>(), ["new", "k3"]);
    assert!(out.stderr.contains("retired: k2, k1"), "{}", out.stderr);

    // A token sealed with the retired key is refused by the new ring.
    let old_token = SealedCodec::new(first).seal(&fresh(), b"sid").unwrap();
    let j = run(
        &["inspect", "--json", &old_token],
        &[("SESSION_KEYS", kept.to_ring_string().as_str())],
        None,
    )
    .json();
    assert_eq!(j["reason"], "unknown_key_id");
}

#[test]
fn rotate_in_two_steps_stages_then_promotes() {
    let out = run(&["keygen", "--id", "k1"], &[], None);
    let first: Keyring = out.stdout.trim().parse().unwrap();
    let token_k1 = SealedCodec::new(first.clone())
        .seal(&fresh(), b"sid")
        .unwrap();

    // Step 1: the new key opens everywhere, the primary still seals.
    let out = run(
        &["rotate", "--stage"],
        &[("SESSION_KEYS", out.stdout.trim())],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let staged: Keyring = out.stdout.trim().parse().unwrap();
    assert_eq!(staged.ids().collect::<Vec<_>>(), ["k1", "k2"]);
    assert!(out.stderr.contains("rotate --promote"), "{}", out.stderr);
    // An instance on the staged ring still seals with k1, which the old ring opens...
    let sealed_staged = SealedCodec::new(staged.clone())
        .seal(&fresh(), b"sid")
        .unwrap();
    assert!(
        SealedCodec::new(first.clone())
            .open(&sealed_staged, b"sid")
            .is_ok()
    );

    // Step 2: k2 becomes the primary; k1 still opens.
    let out = run(
        &["rotate", "--promote"],
        &[("SESSION_KEYS", staged.to_ring_string().as_str())],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let promoted: Keyring = out.stdout.trim().parse().unwrap();
    assert_eq!(promoted.ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert!(out.stderr.contains("new primary k2"), "{}", out.stderr);
    // ...and tokens the promoted ring seals open on instances still on the staged ring.
    let sealed_promoted = SealedCodec::new(promoted.clone())
        .seal(&fresh(), b"sid")
        .unwrap();
    assert!(
        SealedCodec::new(staged)
            .open(&sealed_promoted, b"sid")
            .is_ok()
    );
    assert!(
        SealedCodec::new(promoted.clone())
            .open(&token_k1, b"sid")
            .is_ok()
    );

    // Nothing to promote in a one-key ring; an unknown id is named.
    let out = run(
        &["rotate", "--promote"],
        &[("SESSION_KEYS", first.to_ring_string().as_str())],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nothing to promote"), "{}", out.stderr);
    let out = run(
        &["rotate", "--promote", "--id", "nope"],
        &[("SESSION_KEYS", promoted.to_ring_string().as_str())],
        None,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no key \"nope\""), "{}", out.stderr);
}

#[test]
fn keygen_jwt_keys() {
    let out = run(&["keygen", "--alg", "hs256", "--id", "j1"], &[], None);
    assert_eq!(out.code, 0);
    JwtKey::hmac_base64("j1", JwtAlgorithm::HS256, out.stdout.trim()).expect("an HS256 secret");
    let out = run(&["keygen", "--alg", "EdDSA"], &[], None);
    JwtKey::from_pem("k1", JwtAlgorithm::EdDSA, out.stdout.as_bytes()).expect("an EdDSA PEM");
    let out = run(&["keygen", "--alg", "ES256"], &[], None);
    assert_eq!(out.code, 5);
    assert!(
        out.stderr.contains("openssl genpkey -algorithm EC"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors() {
    for (args, env) in [
        (vec!["keygen", "--alg", "rot13"], vec![]),
        (vec!["rotate"], vec![]),
        (vec!["rotate", "--keep", "0", RING], vec![]),
        (vec!["inspect", "--keys", "k1:short", "AQEC"], vec![]),
        (vec!["inspect", "AQEC"], vec![("SESSION_KEYS", "k1:AAAA")]),
        (
            vec!["inspect", "--keys-file", "/nonexistent/keys", "AQEC"],
            vec![],
        ),
        (vec!["inspect", "--idle-timeout", "soon", "AQEC"], vec![]),
        (vec!["frobnicate"], vec![]),
    ] {
        let out = run(&args, &env, None);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(!out.stderr.is_empty());
    }
    let help = run(&["inspect", "--help"], &[], None);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes") && help.stdout.contains("Examples"));
}

#[test]
fn hostile_input_never_panics() {
    let token = SealedCodec::new(ring()).seal(&fresh(), b"sid").unwrap();
    let jwt_like = "eyJhbGciOiJub25lIn0.eyJqdGkiOjF9.";
    let long = "A".repeat(100_000);
    let inputs = [
        "AQ",
        "AQEAAA",
        "AQH_",
        "____",
        "%%%",
        "a.b.c",
        jwt_like,
        "..",
        "=",
        ";;;",
        "__Host-sid=",
        "__Host-sid.99999999999999999999=x",
        "sid=\"\"",
        &token[..10],
        &long,
        "Set-Cookie:",
        "\u{0}\u{1}",
        "ключ=значение",
    ];
    for input in inputs {
        for (env, stdin) in [
            (vec![], false),
            (vec![("SESSION_KEYS", RING)], false),
            (vec![("SESSION_KEYS", RING)], true),
        ] {
            // NUL cannot be an argument; everything goes through standard input once.
            let out = match (stdin, input.contains('\0')) {
                (false, true) => continue,
                (false, false) => run(&["inspect", input], &env, None),
                (true, _) => run(&["inspect"], &env, Some(input)),
            };
            assert!(
                [1, 2, 3].contains(&out.code),
                "{input:?} gave {}: {}{}",
                out.code,
                out.stdout,
                out.stderr
            );
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        }
    }
}

#[handler]
fn login(session: &Session) -> poem::Result<&'static str> {
    session.insert("user", "admin")?;
    Ok("ok")
}

/// The cookie the demo sets after a login, made through the same middleware.
#[tokio::test]
async fn cookie_from_the_middleware() {
    let app = Route::new()
        .at("/login", get(login))
        .with(SealedSession::sealed(ring()));
    let resp = TestClient::new(app).get("/login").send().await;
    resp.assert_status_is_ok();
    let set_cookie = resp
        .0
        .headers()
        .get(SET_COOKIE)
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.starts_with("__Host-sid="), "{set_cookie}");

    let out = run(
        &["inspect", "--json", &set_cookie],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["source"], "set-cookie");
    assert_eq!(j["purpose"], "__Host-sid");
    assert_eq!(j["data"], serde_json::json!({"user": "admin"}));
    assert_eq!(j["key_id"], "k2");

    // The same value as a browser sends it back, in a Cookie header among others.
    let value = set_cookie.split(';').next().unwrap();
    let out = run(
        &["inspect", &format!("a=b; {value}; c=d")],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("\"user\": \"admin\""));
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn revocation_in_redis() {
    use sealed_session::denylist::{Denylist, RedisDenylist};

    let s = fresh();
    let token = SealedCodec::new(ring()).seal(&s, b"sid").unwrap();
    // Unreachable Redis: exit 4.
    let port = common::redis::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let out = run(
        &[
            "inspect",
            "--redis",
            &url,
            "--redis-timeout",
            "500ms",
            &token,
        ],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Redis"), "{}", out.stderr);

    let Some(server) = common::redis::RedisServer::start("cli revocation_in_redis") else {
        return;
    };
    let url = server.url();
    let out = run(
        &["inspect", "--json", "--redis", &url, &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.json()["revocation"], "allowed");

    let denylist = RedisDenylist::builder(url.clone()).build().await.unwrap();
    denylist.revoke(s.id(), s.expires_at()).await.unwrap();
    let out = run(
        &["inspect", "--json", "--redis", &url, &token],
        &[("SESSION_KEYS", RING)],
        None,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let j = out.json();
    assert_eq!(j["reason"], "revoked");
    assert_eq!(j["revocation"], "revoked_session");
}
