#![cfg(feature = "jwt")]
//! Self-tests of the DBSC test browser (`tests/common/dbsc_browser.rs`): its parsing of the
//! draft's header examples, the exact proofs it makes, its cookie jar's clock, and one
//! end-to-end run against a tiny fake DBSC server written here from the W3C draft (not from
//! this crate). None of this needs the crate's own server.

mod common {
    pub mod dbsc_browser;
}

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use common::dbsc_browser::*;
use hmac::Mac as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use p256::ecdsa::VerifyingKey;
use serde_json::{Value, json};

fn keys_of(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------------------
// Header parsing
// ---------------------------------------------------------------------------------------

fn offer(
    algs: &[&str],
    path: &str,
    challenge: Option<&str>,
    auth: Option<&str>,
) -> RegistrationOffer {
    RegistrationOffer {
        algorithms: algs.iter().map(|a| a.to_string()).collect(),
        path: path.to_string(),
        challenge: challenge.map(str::to_string),
        authorization: auth.map(str::to_string),
    }
}

#[test]
fn registration_header_examples_from_the_spec_parse_to_their_offers() {
    // spec.bs §"`Secure-Session-Registration` HTTP header field", its five examples (two
    // field lines are joined with ", " as `get a structured field value` does).
    let cases: Vec<(String, Vec<RegistrationOffer>)> = vec![
        (
            r#"(ES256);path="reg";challenge="cv";authorization="ac""#.into(),
            vec![offer(&["ES256"], "reg", Some("cv"), Some("ac"))],
        ),
        (
            r#"(ES256 RS256);path="reg";challenge="cv""#.into(),
            vec![offer(&["ES256", "RS256"], "reg", Some("cv"), None)],
        ),
        (
            [
                r#"(ES256);path="reg1";challenge="cv1";authorization="a""#,
                r#"(RS256);path="reg2";challenge="cv2";authorization="b""#,
            ]
            .join(", "),
            vec![
                offer(&["ES256"], "reg1", Some("cv1"), Some("a")),
                offer(&["RS256"], "reg2", Some("cv2"), Some("b")),
            ],
        ),
        (
            r#"(ES256);path="reg1";challenge="cv1";authorization="a", (RS256);path="reg2";challenge="cv2";authorization="b""#.into(),
            vec![
                offer(&["ES256"], "reg1", Some("cv1"), Some("a")),
                offer(&["RS256"], "reg2", Some("cv2"), Some("b")),
            ],
        ),
        (
            r#"(ES256);path="reg1";challenge="cv1";provider_key="abc";provider_id="idp_id";provider_url="https://id_origin.example.com""#.into(),
            vec![offer(&["ES256"], "reg1", Some("cv1"), None)],
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(
            parse_registration_header(&header).expect(&header),
            expected,
            "{header}"
        );
    }
}

#[test]
fn registration_header_entries_outside_the_draft_are_skipped_or_rejected() {
    // Not an inner list; no path; path not a string: skipped. A non-string challenge or
    // authorization is ignored (the draft: "if it exists and is a string").
    let header = r#"ES256;path="a", (ES256);challenge="c", (ES256);path=tok, (ES256 "x" 7);path="ok";challenge=tok;authorization=?1"#;
    assert_eq!(
        parse_registration_header(header).unwrap(),
        vec![offer(&["ES256"], "ok", None, None)]
    );
    // Not a valid sf-list at all: the whole field is ignored.
    for bad in [
        r#"(ES256;path="a""#,
        r#"(ES256);path="a","#,
        r#"(ES256);path="unterminated"#,
        r#"(ES256);PATH="upper-case key""#,
    ] {
        assert!(parse_registration_header(bad).is_err(), "{bad}");
    }
}

#[test]
fn challenge_header_examples_from_the_spec_parse_with_their_session_ids() {
    // spec.bs §"`Secure-Session-Challenge` HTTP header field", its five examples.
    let entry = |c: &str, id: Option<&str>| ChallengeEntry {
        challenge: c.to_string(),
        session_id: id.map(str::to_string),
    };
    let cases = vec![
        (
            r#""new challenge""#.to_string(),
            vec![entry("new challenge", None)],
        ),
        (
            r#""new challenge";id="my session""#.to_string(),
            vec![entry("new challenge", Some("my session"))],
        ),
        (
            [
                r#""new challenge";id="my session 1""#,
                r#""another challenge";id="my session 2""#,
            ]
            .join(", "),
            vec![
                entry("new challenge", Some("my session 1")),
                entry("another challenge", Some("my session 2")),
            ],
        ),
        (
            r#""c1";id="session 1", "c2";id="session 2""#.to_string(),
            vec![
                entry("c1", Some("session 1")),
                entry("c2", Some("session 2")),
            ],
        ),
        (
            r#""esc\"aped\\";id="s";other=1"#.to_string(),
            vec![entry("esc\"aped\\", Some("s"))],
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(
            parse_challenge_header(&header).expect(&header),
            expected,
            "{header}"
        );
    }
}

#[test]
fn challenge_header_members_that_are_not_strings_are_skipped() {
    let parsed = parse_challenge_header(
        r#"token;id="a", ("in" "list");id="b", "kept";id=notastring, 42;id="c""#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        vec![ChallengeEntry {
            challenge: "kept".into(),
            session_id: None
        }]
    );
    assert!(parse_challenge_header(r#""a" "b""#).is_err());
}

#[test]
fn sf_strings_round_trip_through_the_parser_with_escapes() {
    for value in ["plain", "with \"quotes\"", "back\\slash", "eyJ.eyJ.sig-_"] {
        let written = sf_string(value);
        assert_eq!(parse_sf_string_item(&written).unwrap(), value, "{written}");
    }
    assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
    assert!(parse_sf_string_item("bare-token").is_err());
    assert_eq!(parse_sf_string_item(r#""id";x=1"#).unwrap(), "id");
}

// ---------------------------------------------------------------------------------------
// Proofs
// ---------------------------------------------------------------------------------------

#[test]
fn registration_proof_has_exactly_the_draft_header_and_payload_and_verifies() {
    let key = SessionKey::generate();
    let token = ProofBuilder::registration(&key, Some("cv"), Some("ac")).build();
    assert!(!token.contains('='), "base64url without padding: {token}");
    let jws = decode_jws(&token).unwrap();
    assert_eq!(keys_of(&jws.header), ["alg", "jwk", "typ"]);
    assert_eq!(jws.header["alg"], "ES256");
    assert_eq!(jws.header["typ"], "dbsc+jwt");
    let jwk = &jws.header["jwk"];
    assert_eq!(
        keys_of(jwk),
        ["crv", "kty", "x", "y"],
        "public members only"
    );
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jws.payload, json!({"jti": "cv", "authorization": "ac"}));
    assert_eq!(jws.signature.len(), 64, "raw r||s");
    // Verified with the key rebuilt from the header's JWK, not with the key object.
    let from_jwk = verifying_key_from_jwk(jwk).unwrap();
    assert_eq!(from_jwk, key.verifying_key());
    verify_es256(&token, &from_jwk).unwrap();
    // And a different key does not verify it.
    assert!(verify_es256(&token, &SessionKey::generate().verifying_key()).is_err());

    let without_auth =
        decode_jws(&ProofBuilder::registration(&key, Some("cv"), None).build()).unwrap();
    assert_eq!(without_auth.payload, json!({"jti": "cv"}));
}

#[test]
fn refresh_proof_has_no_jwk_and_only_jti_and_verifies_with_the_session_key() {
    let key = SessionKey::generate();
    let token = ProofBuilder::refresh(&key, "rc-1").build();
    let jws = verify_es256(&token, &key.verifying_key()).unwrap();
    assert_eq!(jws.header, json!({"alg": "ES256", "typ": "dbsc+jwt"}));
    assert_eq!(jws.payload, json!({"jti": "rc-1"}));
}

#[test]
fn tampered_proofs_carry_exactly_the_requested_change() {
    let key = SessionKey::generate();
    let other = SessionKey::generate();
    let session_key: VerifyingKey = key.verifying_key();

    let with_jwk = ProofBuilder::refresh(&key, "c").jwk_of(&key).build();
    let jws = verify_es256(&with_jwk, &session_key).unwrap();
    assert_eq!(jws.header["jwk"], key.public_jwk());

    let by_other = ProofBuilder::refresh(&key, "c").signed_by(&other).build();
    assert!(verify_es256(&by_other, &session_key).is_err());
    verify_es256(&by_other, &other.verifying_key()).unwrap();

    let none = decode_jws(&ProofBuilder::refresh(&key, "c").alg_none().build()).unwrap();
    assert_eq!(none.header["alg"], "none");
    assert!(none.signature.is_empty());

    let secret = b"shared secret";
    let hs = decode_jws(&ProofBuilder::refresh(&key, "c").hs256(secret).build()).unwrap();
    assert_eq!(hs.header["alg"], "HS256");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(hs.signing_input.as_bytes());
    mac.verify_slice(&hs.signature)
        .expect("a valid HMAC-SHA-256");

    let wrong_jti = ProofBuilder::refresh(&key, "c")
        .claim("jti", json!("other"))
        .claim("iat", json!(1))
        .without_header("typ")
        .build();
    let jws = verify_es256(&wrong_jti, &session_key).unwrap();
    assert_eq!(jws.payload, json!({"jti": "other", "iat": 1}));
    assert_eq!(jws.header, json!({"alg": "ES256"}));

    let raw = decode_jws(
        &ProofBuilder::refresh(&key, "c")
            .raw_signature(vec![7; 3])
            .build(),
    )
    .unwrap();
    assert_eq!(raw.signature, vec![7; 3]);
}

// ---------------------------------------------------------------------------------------
// Cookie jar, URLs, scope, instructions
// ---------------------------------------------------------------------------------------

#[test]
fn cookie_jar_expiry_follows_the_injected_clock() {
    // 2023-11-14T22:13:20Z
    let clock = BrowserClock::new(1_700_000_000_000);
    let mut jar = CookieJar::new(clock.clone());
    jar.store_set_cookie("short=1; Max-Age=60; Path=/; Secure; HttpOnly");
    jar.store_set_cookie("session=2; Path=/");
    // Max-Age wins over Expires, whatever their order.
    jar.store_set_cookie("both=3; Expires=Wed, 01 Jan 2031 00:00:00 GMT; Max-Age=120");
    jar.store_set_cookie("dated=4; expires=Tue, 14-Nov-2023 22:15:00 GMT");
    jar.store_set_cookie("asctime=5; Expires=Tue Nov 14 22:14:00 2023");
    jar.store_set_cookie("past=6; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        jar.names(),
        ["asctime", "both", "dated", "session", "short"]
    );
    assert_eq!(jar.get("short").unwrap().attribute("secure"), Some(None));

    clock.advance_secs(59);
    assert_eq!(jar.value("short").as_deref(), Some("1"));
    clock.advance_secs(1);
    assert_eq!(jar.value("short"), None, "gone at exactly Max-Age");
    clock.advance_secs(1); // 22:14:01
    assert_eq!(jar.value("asctime"), None);
    assert_eq!(jar.value("dated").as_deref(), Some("4"));
    clock.advance_secs(60); // 22:15:01
    assert_eq!(jar.value("dated"), None);
    assert_eq!(jar.value("both"), None, "Max-Age=120 beat the 2031 Expires");
    assert_eq!(jar.cookie_header().as_deref(), Some("session=2"));

    // Max-Age=0 deletes, and so does a negative one; a bad Max-Age is ignored.
    jar.store_set_cookie("session=2; Max-Age=0");
    assert_eq!(jar.value("session"), None);
    jar.store_set_cookie("x=1");
    jar.store_set_cookie("x=1; Max-Age=-5");
    assert_eq!(jar.value("x"), None);
    jar.store_set_cookie("y=1; Max-Age=soon");
    assert_eq!(jar.value("y").as_deref(), Some("1"));
    // Lines without '=' or with an empty name are ignored.
    assert_eq!(jar.store_set_cookie("novalue"), None);
    assert_eq!(jar.store_set_cookie("=v"), None);

    // Going back in time revives nothing deleted, but an expiry still in the future holds.
    clock.set_ms(1_700_000_000_000);
    jar.store_set_cookie("z=1; Max-Age=10");
    clock.advance_ms(9_999);
    assert!(jar.get("z").is_some());
    clock.advance_ms(1);
    assert!(jar.get("z").is_none());
}

#[test]
fn cookie_dates_parse_as_rfc_6265_says() {
    assert_eq!(
        parse_cookie_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_cookie_date("Sunday, 06-Nov-94 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_cookie_date("Sun Nov  6 08:49:37 1994"),
        Some(784_111_777)
    );
    assert_eq!(parse_cookie_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    assert_eq!(parse_cookie_date("yesterday"), None);
}

#[test]
fn registration_paths_resolve_against_the_response_url_as_rfc_3986_says() {
    let base = Url::parse("http://127.0.0.1:8080/a/b/login.html?x=1").unwrap();
    let resolve = |r: &str| base.resolve(r).unwrap().to_string();
    assert_eq!(resolve("reg"), "http://127.0.0.1:8080/a/b/reg");
    assert_eq!(resolve("/reg"), "http://127.0.0.1:8080/reg");
    assert_eq!(resolve("../reg?y=2"), "http://127.0.0.1:8080/a/reg?y=2");
    assert_eq!(resolve("./"), "http://127.0.0.1:8080/a/b/");
    assert_eq!(resolve("http://127.0.0.1:9/r"), "http://127.0.0.1:9/r");
    assert_eq!(resolve("//localhost/r"), "http://localhost/r");
    assert_eq!(resolve(""), "http://127.0.0.1:8080/a/b/login.html?x=1");
    assert!(base.is_potentially_trustworthy());
    assert!(
        !Url::parse("http://example.com/")
            .unwrap()
            .is_potentially_trustworthy()
    );
    assert!(
        Url::parse("https://example.com/")
            .unwrap()
            .is_potentially_trustworthy()
    );
    assert!(
        Url::parse("https://a.example.com/")
            .unwrap()
            .same_site(&Url::parse("https://b.example.com/").unwrap())
    );
}

#[test]
fn scope_follows_the_draft_url_in_scope_algorithm() {
    let origin = Url::parse("https://example.com").unwrap();
    let refresh = Url::parse("https://example.com/dbsc/refresh").unwrap();
    let rule = |t: &str, d: &str, p: &str| ScopeRule {
        rule_type: t.into(),
        domain: d.into(),
        path: p.into(),
    };
    let scope = SessionScope {
        origin: origin.clone(),
        include_site: false,
        rules: vec![
            rule("exclude", "*", "/static"),
            rule("include", "example.com", "/static/private/"),
        ],
    };
    let in_scope = |u: &str| url_in_scope(&Url::parse(u).unwrap(), &scope, &refresh);
    assert!(in_scope("https://example.com/account"));
    assert!(
        !in_scope("https://example.com/dbsc/refresh"),
        "never the refresh URL"
    );
    assert!(!in_scope("https://example.com/dbsc/refresh?q=1"));
    assert!(!in_scope("https://example.com/static"));
    assert!(!in_scope("https://example.com/static/app.js"));
    assert!(
        !in_scope("https://example.com/static/private/x"),
        "the first matching rule decides"
    );
    assert!(in_scope("https://example.com/staticky"));
    assert!(
        !in_scope("https://www.example.com/account"),
        "origin-scoped"
    );
    assert!(!in_scope("http://example.com/account"));

    let site = SessionScope {
        origin,
        include_site: true,
        rules: vec![rule("exclude", "*.example.com", "/")],
    };
    let in_site = |u: &str| url_in_scope(&Url::parse(u).unwrap(), &site, &refresh);
    assert!(in_site("https://example.com/x"));
    assert!(!in_site("https://www.example.com/x"));
    assert!(!in_site("https://example.org/x"));

    assert!(host_pattern_matches("example.com", "*"));
    assert!(host_pattern_matches("example.com", "example.com"));
    assert!(!host_pattern_matches("example.com", "*.example.com"));
    assert!(host_pattern_matches("sub.example.com", "*.example.com"));
    assert!(!host_pattern_matches("sub.example.com", "*example.com"));
}

#[test]
fn session_instructions_parse_and_are_checked_as_the_draft_says() {
    // The draft's example, its comments removed.
    let example = r#"{
        "session_identifier": "session_id",
        "refresh_url": "/RefreshEndpoint",
        "defer_requests": true,
        "scope": {
          "origin": "https://example.com",
          "include_site": true,
          "scope_specification" : [
            { "type": "include", "domain": "trusted.example.com", "path": "/only_trusted_path" },
            { "type": "exclude", "domain": "untrusted.example.com", "path": "/" },
            { "type": "exclude", "domain": "*.example.com", "path": "/static" }
          ]
        },
        "credentials": [{
          "type": "cookie",
          "name": "auth_cookie",
          "attributes": "Domain=example.com; Path=/; Secure; HttpOnly; SameSite=None"
        }],
        "allowed_refresh_initiators": [ "example.com", "*.example.com" ]
    }"#;
    let parsed = parse_session_instructions(example).unwrap();
    assert_eq!(parsed.session_identifier, "session_id");
    assert_eq!(parsed.refresh_url.as_deref(), Some("/RefreshEndpoint"));
    assert!(parsed.continue_session);
    assert_eq!(parsed.scope.origin.as_deref(), Some("https://example.com"));
    assert!(parsed.scope.include_site);
    assert_eq!(parsed.scope.rules.len(), 3);
    assert_eq!(parsed.scope.rules[1].domain, "untrusted.example.com");
    assert_eq!(parsed.credentials[0].name, "auth_cookie");
    assert_eq!(
        parsed.allowed_refresh_initiators,
        ["example.com", "*.example.com"]
    );

    let minimal = r#"{"session_identifier":"s","scope":{"include_site":false,
        "scope_specification":[{"type":"exclude"}]},
        "credentials":[{"type":"cookie","name":"b"}]}"#;
    let parsed = parse_session_instructions(minimal).unwrap();
    assert_eq!(parsed.refresh_url, None);
    assert_eq!(parsed.scope.rules[0].domain, "*");
    assert_eq!(parsed.scope.rules[0].path, "/");
    assert_eq!(parsed.credentials[0].attributes, "");

    let stop =
        parse_session_instructions(r#"{"session_identifier":"s","continue":false}"#).unwrap();
    assert!(!stop.continue_session);

    for bad in [
        r#"not json"#,
        r#"{"scope":{"include_site":false},"credentials":[{"type":"cookie","name":"b"}]}"#,
        r#"{"session_identifier":"","scope":{"include_site":false},"credentials":[{"type":"cookie","name":"b"}]}"#,
        r#"{"session_identifier":"s","credentials":[{"type":"cookie","name":"b"}]}"#,
        r#"{"session_identifier":"s","scope":{},"credentials":[{"type":"cookie","name":"b"}]}"#,
        r#"{"session_identifier":"s","scope":{"include_site":false},"credentials":[]}"#,
        r#"{"session_identifier":"s","scope":{"include_site":false},"credentials":[{"type":"token","name":"b"}]}"#,
        r#"{"session_identifier":"s","scope":{"include_site":false},"credentials":[{"type":"cookie","name":""}]}"#,
        r#"{"session_identifier":"s","scope":{"include_site":false,"scope_specification":[{"type":"maybe"}]},"credentials":[{"type":"cookie","name":"b"}]}"#,
        r#"{"session_identifier":"s","scope":{"include_site":false},"credentials":[{"type":"cookie","name":"b"}],"allowed_refresh_initiators":[1]}"#,
    ] {
        assert!(parse_session_instructions(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------
// End to end, against a fake DBSC server written here from the draft
// ---------------------------------------------------------------------------------------

const SESSION_ID: &str = "S1";
const REG_CHALLENGE: &str = "reg-challenge-1";
const AUTHORIZATION: &str = "auth-code-7";

#[derive(Default)]
struct FakeServer {
    key: Option<VerifyingKey>,
    /// Refresh challenges issued and not yet used.
    open_challenges: Vec<String>,
    issued: u32,
    bound: Option<String>,
    end_session_on_next_refresh: bool,
    /// "METHOD path [detail]" per request, in order.
    requests: Vec<String>,
    /// What the fake server found wrong in the browser's requests (must stay empty).
    complaints: Vec<String>,
}

impl FakeServer {
    fn new_challenge(&mut self) -> String {
        self.issued += 1;
        let challenge = format!("refresh-challenge-{}", self.issued);
        self.open_challenges.push(challenge.clone());
        challenge
    }

    fn new_bound(&mut self) -> String {
        let value = format!("b{}", self.issued + 1);
        self.bound = Some(value.clone());
        value
    }
}

fn header<'a>(req: &'a hyper::Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn cookies_of(req: &hyper::Request<Incoming>) -> Vec<(String, String)> {
    header(req, "cookie")
        .unwrap_or("")
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn reply(status: u16, headers: &[(&str, String)], body: String) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, value.as_str());
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}

fn bound_cookie(value: &str) -> String {
    format!("bound={value}; Max-Age=600; Path=/; Secure; HttpOnly; SameSite=Lax")
}

fn check_registration_proof(
    proof: Option<&str>,
    with_cookies: bool,
) -> Result<VerifyingKey, String> {
    if !with_cookies {
        return Err("registration came without the site's cookies".into());
    }
    let token = parse_sf_string_item(proof.ok_or("no proof")?)?;
    let jws = decode_jws(&token)?;
    if keys_of(&jws.header) != ["alg", "jwk", "typ"]
        || jws.header["alg"] != "ES256"
        || jws.header["typ"] != "dbsc+jwt"
    {
        return Err(format!("registration header {}", jws.header));
    }
    if jws.payload != json!({"jti": REG_CHALLENGE, "authorization": AUTHORIZATION}) {
        return Err(format!("registration payload {}", jws.payload));
    }
    let key = verifying_key_from_jwk(&jws.header["jwk"])?;
    verify_es256(&token, &key)?;
    Ok(key)
}

/// The refresh proof's `jti` once header, payload keys and signature are right.
fn check_refresh_proof(proof: &str, key: &VerifyingKey) -> Result<String, String> {
    let token = parse_sf_string_item(proof)?;
    let jws = verify_es256(&token, key)?;
    if jws.header != json!({"alg": "ES256", "typ": "dbsc+jwt"}) {
        return Err(format!("refresh header {}", jws.header));
    }
    if keys_of(&jws.payload) != ["jti"] {
        return Err(format!("refresh payload {}", jws.payload));
    }
    Ok(jws.payload["jti"].as_str().unwrap_or("").to_string())
}

async fn fake_dbsc_server(
    state: Arc<Mutex<FakeServer>>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let cookies = cookies_of(&req);
    let has_cookie = |name: &str, value: &str| cookies.iter().any(|(n, v)| n == name && v == value);
    let proof = header(&req, RESPONSE_HEADER).map(str::to_string);
    let session_id = header(&req, SESSION_ID_HEADER).map(str::to_string);
    let mut s = state.lock().unwrap();
    let response = match (method.as_str(), path.as_str()) {
        ("GET", "/login") => {
            s.requests.push("GET /login".into());
            reply(
                200,
                &[
                    ("set-cookie", "sid=alice; Path=/; HttpOnly".into()),
                    (
                        REGISTRATION_HEADER,
                        format!(
                            r#"(RS256 ES256);path="dbsc/register";challenge="{REG_CHALLENGE}";authorization="{AUTHORIZATION}""#
                        ),
                    ),
                ],
                "welcome".into(),
            )
        }
        ("POST", "/dbsc/register") => {
            s.requests.push("POST /dbsc/register".into());
            let checked = check_registration_proof(proof.as_deref(), has_cookie("sid", "alice"));
            match checked {
                Ok(key) => {
                    s.key = Some(key);
                    let bound = s.new_bound();
                    let body = json!({
                        "session_identifier": SESSION_ID,
                        "refresh_url": "/dbsc/refresh",
                        "scope": {
                            "include_site": false,
                            "scope_specification": [{"type": "exclude", "path": "/public"}],
                        },
                        "credentials": [{
                            "type": "cookie",
                            "name": "bound",
                            "attributes": "Path=/; Secure; HttpOnly; SameSite=Lax",
                        }],
                    });
                    reply(
                        200,
                        &[("set-cookie", bound_cookie(&bound))],
                        body.to_string(),
                    )
                }
                Err(complaint) => {
                    s.complaints.push(complaint);
                    reply(400, &[], String::new())
                }
            }
        }
        ("POST", "/dbsc/refresh") => {
            let id_ok = session_id
                .as_deref()
                .is_some_and(|v| parse_sf_string_item(v).as_deref() == Ok(SESSION_ID));
            if !id_ok {
                s.complaints
                    .push(format!("refresh with {SESSION_ID_HEADER} {session_id:?}"));
            }
            if !has_cookie("sid", "alice") {
                s.complaints
                    .push("refresh came without the site's cookies".into());
            }
            if s.end_session_on_next_refresh {
                s.requests
                    .push("POST /dbsc/refresh -> continue:false".into());
                reply(
                    200,
                    &[],
                    json!({"session_identifier": SESSION_ID, "continue": false}).to_string(),
                )
            } else if let Some(proof) = proof {
                let key = s.key.expect("registered");
                let checked = check_refresh_proof(&proof, &key);
                match checked {
                    Ok(jti) if s.open_challenges.contains(&jti) => {
                        s.open_challenges.retain(|c| *c != jti);
                        s.requests.push(format!("POST /dbsc/refresh proof {jti}"));
                        let bound = s.new_bound();
                        let next = s.new_challenge();
                        reply(
                            200,
                            &[
                                ("set-cookie", bound_cookie(&bound)),
                                (CHALLENGE_HEADER, format!(r#""{next}";id="{SESSION_ID}""#)),
                            ],
                            String::new(),
                        )
                    }
                    Ok(jti) => {
                        s.requests.push(format!("POST /dbsc/refresh stale {jti}"));
                        let next = s.new_challenge();
                        reply(
                            403,
                            &[(CHALLENGE_HEADER, format!(r#""{next}";id="{SESSION_ID}""#))],
                            String::new(),
                        )
                    }
                    Err(complaint) => {
                        s.requests.push("POST /dbsc/refresh bad proof".into());
                        s.complaints.push(complaint);
                        reply(400, &[], String::new())
                    }
                }
            } else {
                s.requests.push("POST /dbsc/refresh no proof".into());
                let next = s.new_challenge();
                reply(
                    403,
                    &[(CHALLENGE_HEADER, format!(r#""{next}";id="{SESSION_ID}""#))],
                    String::new(),
                )
            }
        }
        ("GET", "/account") => {
            let bound = s.bound.clone().unwrap_or_default();
            let ok = has_cookie("sid", "alice") && has_cookie("bound", &bound);
            s.requests.push(format!(
                "GET /account {}",
                if ok { "bound" } else { "unbound" }
            ));
            if ok {
                reply(200, &[], "account of alice".into())
            } else {
                reply(401, &[], String::new())
            }
        }
        ("GET", "/public") => {
            s.requests.push("GET /public".into());
            reply(200, &[], "public".into())
        }
        _ => reply(404, &[], String::new()),
    };
    Ok(response)
}

async fn start_fake_server(state: Arc<Mutex<FakeServer>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| fake_dbsc_server(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn requests_since(state: &Arc<Mutex<FakeServer>>, from: usize) -> Vec<String> {
    state.lock().unwrap().requests[from..].to_vec()
}

fn request_count(state: &Arc<Mutex<FakeServer>>) -> usize {
    state.lock().unwrap().requests.len()
}

#[tokio::test]
async fn end_to_end_registration_expiry_challenge_signed_refresh_and_termination() {
    let state = Arc::new(Mutex::new(FakeServer::default()));
    let base = start_fake_server(state.clone()).await;
    let clock = BrowserClock::new(1_700_000_000_000);
    let mut browser = Browser::new(&base, clock.clone());

    // Login: the response offers registration (RS256 first, ES256 second: the browser picks
    // ES256); the browser registers at once with the site's cookie.
    let login = browser.get("/login").await;
    assert_eq!(login.status, 200);
    assert_eq!(browser.registrations(), 1, "{:#?}", browser.log());
    assert_eq!(
        requests_since(&state, 0),
        ["GET /login", "POST /dbsc/register"]
    );
    let session = &browser.sessions()[0];
    assert_eq!(session.id, SESSION_ID);
    assert_eq!(
        session.refresh_url.to_string(),
        format!("{base}/dbsc/refresh")
    );
    assert_eq!(session.registration_url.path, "/dbsc/register");
    assert_eq!(session.credential_names(), ["bound"]);
    assert_eq!(browser.cookie("bound").as_deref(), Some("b1"));

    // The bound cookie is fresh: no refresh.
    assert_eq!(browser.get("/account").await.status, 200);
    assert_eq!(browser.refresh_attempts(), 0);

    // It expires by the injected clock: the request is deferred, the refresh gets a 403
    // challenge, the signed retry a new cookie, and then the request goes.
    clock.advance_secs(600);
    assert_eq!(browser.cookie("bound"), None);
    let mark = request_count(&state);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "{:#?}", browser.log());
    assert_eq!(
        requests_since(&state, mark),
        [
            "POST /dbsc/refresh no proof",
            "POST /dbsc/refresh proof refresh-challenge-1",
            "GET /account bound",
        ]
    );
    assert_eq!(browser.refreshes(), 1);
    // The 403's challenge, and the one the 200 carried for next time.
    assert_eq!(browser.challenges_seen(), 2);
    assert_eq!(
        browser.sessions()[0].cached_challenge.as_deref(),
        Some("refresh-challenge-2")
    );

    // Out of scope (excluded path): no refresh even though the credential is missing.
    clock.advance_secs(601);
    let mark = request_count(&state);
    assert_eq!(browser.get("/public").await.status, 200);
    assert_eq!(requests_since(&state, mark), ["GET /public"]);
    assert_eq!(browser.refresh_attempts(), 1);

    // In scope again: the cached challenge is signed at once, no 403 round trip.
    let mark = request_count(&state);
    assert_eq!(browser.get("/account").await.status, 200);
    assert_eq!(
        requests_since(&state, mark),
        [
            "POST /dbsc/refresh proof refresh-challenge-2",
            "GET /account bound"
        ]
    );
    assert_eq!(browser.refreshes(), 2);

    // The server ends the session: the browser drops it and sends the deferred request
    // without the credential; afterwards nothing is refreshed any more.
    state.lock().unwrap().end_session_on_next_refresh = true;
    clock.advance_secs(601);
    let mark = request_count(&state);
    assert_eq!(browser.get("/account").await.status, 401);
    assert_eq!(
        requests_since(&state, mark),
        [
            "POST /dbsc/refresh -> continue:false",
            "GET /account unbound"
        ]
    );
    assert!(browser.sessions().is_empty());
    assert_eq!(browser.refresh_failures(), 1);
    let mark = request_count(&state);
    assert_eq!(browser.get("/account").await.status, 401);
    assert_eq!(requests_since(&state, mark), ["GET /account unbound"]);

    let complaints = state.lock().unwrap().complaints.clone();
    assert!(
        complaints.is_empty(),
        "the fake server objected: {complaints:#?}"
    );
    assert!(
        browser
            .log()
            .iter()
            .any(|l| l.contains("terminated") && l.contains("continue: false")),
        "{:#?}",
        browser.log()
    );
}
