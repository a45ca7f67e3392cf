//! `inspect`: opens a token with the keys given, or reads what it shows without them, and
//! reports it as text or as one JSON object.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::Value;

use sealed_session::codec::{SessionIdCodec, TokenKind, Unverified, peek};
use sealed_session::{
    Codec, JwtAlgorithm, JwtCodec, JwtKeyring, ManualClock, OpenError, Policy, SealedCodec,
    SessionId, SessionState, SignedCodec, Timestamp,
};

use crate::input::{Found, candidate_names};
use crate::keys::{LoadedRing, load_jwt_key};
use crate::timefmt::{human, relative};
use crate::{CliError, exit, usage};

/// JWT verification settings.
#[derive(Default)]
pub struct JwtOptions {
    pub key_file: Option<PathBuf>,
    pub alg: Option<JwtAlgorithm>,
    pub kid: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Where to check revocation.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub struct RedisOptions {
    pub url: String,
    pub prefix: Option<String>,
    pub timeout: Duration,
}

pub struct Options {
    pub name: String,
    pub purpose: Option<String>,
    pub ring: Option<LoadedRing>,
    pub jwt: JwtOptions,
    pub idle_timeout: Option<Duration>,
    pub leeway: Duration,
    pub now: Timestamp,
    pub redis: Option<RedisOptions>,
}

impl Options {
    fn policy(&self) -> Policy {
        Policy::new()
            .idle_timeout(self.idle_timeout)
            .leeway(self.leeway)
    }
}

/// A time, absolute and relative to the time of the check.
#[derive(Serialize)]
pub struct Time {
    pub ms: u64,
    pub rfc3339: String,
    pub relative: String,
}

fn time(t: Timestamp, now: Timestamp) -> Time {
    Time {
        ms: t.as_millis(),
        rfc3339: t.to_string(),
        relative: relative(t, now),
    }
}

/// The report, as printed by `--json` (field names and meanings are documented in the
/// README and in `inspect --help`).
#[derive(Serialize)]
pub struct Report {
    pub status: &'static str,
    pub exit_code: u8,
    pub verified: bool,
    pub reason: Option<String>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub source: &'static str,
    pub cookie_name: Option<String>,
    pub chunks: usize,
    pub token_length: usize,
    pub kind: Option<&'static str>,
    pub format_version: Option<u8>,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    pub key_is_primary: Option<bool>,
    pub keys_from: Option<String>,
    pub purpose: Option<String>,
    pub session_id: Option<String>,
    pub subject: Option<String>,
    pub issued_at: Option<Time>,
    pub last_seen: Option<Time>,
    pub expires_at: Option<Time>,
    pub idle_expires_at: Option<Time>,
    pub expired: Option<bool>,
    pub revocation: &'static str,
    pub data: Option<Value>,
    pub jwt_header: Option<Value>,
    pub jwt_claims: Option<Value>,
    pub unreadable: Vec<&'static str>,
    pub notes: Vec<String>,
    pub now: Time,
}

/// What a token says about its session, authenticated or not.
#[derive(Default)]
struct View {
    session_id: Option<String>,
    subject: Option<String>,
    issued_at: Option<Timestamp>,
    last_seen: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    data: Option<Value>,
}

fn view_of_state(state: &mut SessionState, notes: &mut Vec<String>) -> View {
    let data = match state.data() {
        Ok(m) => Some(Value::Object(m.clone())),
        Err(e) => {
            notes.push(format!("the session data cannot be shown: {e}"));
            None
        }
    };
    View {
        session_id: Some(state.id().to_string()),
        subject: state.subject().map(str::to_owned),
        issued_at: Some(state.issued_at()),
        last_seen: Some(state.last_seen()),
        expires_at: Some(state.expires_at()),
        data,
    }
}

/// The session as the JWT's claims describe it (see docs/FORMAT.md, appendix).
fn view_of_claims(c: &Value) -> View {
    let ms = |v: Option<&Value>| v.and_then(Value::as_u64).map(Timestamp::from_millis);
    let secs = |k: &str| {
        c.get(k)
            .and_then(Value::as_u64)
            .map(|s| Timestamp::from_millis(s.saturating_mul(1000)))
    };
    let sess = c.get("sess");
    View {
        session_id: c.get("jti").and_then(Value::as_str).map(str::to_owned),
        subject: c.get("sub").and_then(Value::as_str).map(str::to_owned),
        issued_at: ms(sess.and_then(|s| s.get("iat_ms"))).or_else(|| secs("iat")),
        last_seen: ms(sess.and_then(|s| s.get("seen_ms"))).or_else(|| secs("iat")),
        expires_at: ms(sess.and_then(|s| s.get("deadline_ms"))).or_else(|| secs("exp")),
        data: c.get("data").filter(|d| !d.is_null()).cloned(),
    }
}

impl Report {
    fn new(found: &Found, opts: &Options) -> Report {
        Report {
            status: "unverified",
            exit_code: exit::NO_KEY,
            verified: false,
            reason: None,
            error: None,
            hint: None,
            source: found.source,
            cookie_name: found.cookie_name.clone(),
            chunks: found.chunks,
            token_length: found.token.len(),
            kind: None,
            format_version: None,
            key_id: None,
            algorithm: None,
            key_is_primary: None,
            keys_from: None,
            purpose: None,
            session_id: None,
            subject: None,
            issued_at: None,
            last_seen: None,
            expires_at: None,
            idle_expires_at: None,
            expired: None,
            revocation: "not_checked",
            data: None,
            jwt_header: None,
            jwt_claims: None,
            unreadable: Vec::new(),
            notes: found.notes.clone(),
            now: time(opts.now, opts.now),
        }
    }

    fn apply(&mut self, v: View, opts: &Options) {
        let now = opts.now;
        self.session_id = v.session_id;
        self.subject = v.subject;
        self.issued_at = v.issued_at.map(|t| time(t, now));
        self.last_seen = v.last_seen.map(|t| time(t, now));
        self.expires_at = v.expires_at.map(|t| time(t, now));
        let idle_at = opts
            .idle_timeout
            .and_then(|d| v.last_seen.map(|t| t.saturating_add(d)));
        self.idle_expires_at = idle_at.map(|t| time(t, now));
        self.expired = v
            .expires_at
            .map(|abs| idle_at.map_or(abs, |i| abs.min(i)) <= now);
        self.data = v.data;
    }

    fn refuse(&mut self, e: &OpenError, hint: Option<String>) {
        self.status = "refused";
        self.exit_code = exit::REFUSED;
        self.reason = Some(e.reason().to_owned());
        self.error = Some(e.to_string());
        self.hint = hint;
    }

    fn valid(&mut self) {
        self.status = "valid";
        self.exit_code = exit::OK;
    }
}

/// Hints for a refusal: what to check or pass next.
fn hint(e: &OpenError, opts: &Options, purposes: &[String], ring_ids: &[&str]) -> Option<String> {
    Some(match e {
        OpenError::BadSeal if purposes.is_empty() => {
            "the signature does not verify: the token was changed, or signed with another key under the same kid; check --jwt-key, --jwt-alg and --kid".to_owned()
        }
        OpenError::BadSeal => format!(
            "the token was changed or cut short, made with other key material under the same key id, or made for another cookie name (purpose tried: {}; set it with --purpose)",
            purposes.join(", ")
        ),
        OpenError::UnknownKeyId(_) if ring_ids.is_empty() => {
            "the JWT's kid is not the --kid given".to_owned()
        }
        OpenError::UnknownKeyId(_) => format!(
            "the key ring holds {}: the token was made with another ring, or its key has been retired",
            ring_ids.join(", ")
        ),
        OpenError::Expired { .. } => {
            "the session passed its absolute deadline: the user must log in again".to_owned()
        }
        OpenError::IdleTimeout { .. } => format!(
            "the session was idle longer than the idle timeout ({}); --idle-timeout sets the timeout to check against",
            opts.idle_timeout.map_or_else(|| "none".to_owned(), human)
        ),
        OpenError::FromTheFuture { .. } => {
            "the token claims a time ahead of this machine's clock (beyond --leeway): compare the clocks, or pass --now".to_owned()
        }
        OpenError::ClaimMismatch { claim: "aud" } => {
            "pass --audience with the audience the application configures (a token with an aud is refused when none is configured)".to_owned()
        }
        OpenError::ClaimMismatch { .. } => {
            "pass --issuer with the issuer the application configures".to_owned()
        }
        OpenError::Malformed(_) => {
            "this is not a sealed-session token or JWT, or it was cut short: paste the whole cookie value (every NAME.N chunk)".to_owned()
        }
        OpenError::UnsupportedVersion { .. } => {
            "this is not a sealed-session token, or one made by another version of its format".to_owned()
        }
        OpenError::TooLarge { .. } => "this is larger than any session token".to_owned(),
        _ => return None,
    })
}

/// Inspects the token in `found`.
pub fn inspect(found: &Found, opts: &Options) -> Result<Report, CliError> {
    let mut r = Report::new(found, opts);
    let token = found.token.as_str();
    if token.split('.').count() == 3 {
        inspect_jwt(&mut r, token, opts)?;
    } else {
        inspect_ring_token(&mut r, token, opts);
    }
    if r.status == "valid"
        && let Some(redis) = &opts.redis
    {
        check_revocation(&mut r, redis)?;
    } else if opts.redis.is_some() {
        r.notes
            .push("revocation not checked: the token is not valid anyway".to_owned());
    }
    Ok(r)
}

fn inspect_ring_token(r: &mut Report, token: &str, opts: &Options) {
    let peeked = match peek(token) {
        Ok(p) => p,
        Err(e) => {
            let h = hint(&e, opts, &[], &[]);
            r.refuse(&e, h);
            return;
        }
    };
    let kind = peeked.header.kind;
    r.kind = Some(kind.name());
    r.format_version = Some(peeked.header.version);
    r.key_id = Some(peeked.header.key_id.clone());
    if kind != TokenKind::Sealed {
        r.algorithm = Some("hmac-sha256".to_owned());
    }
    let Some(loaded) = &opts.ring else {
        // No key: what the token shows by itself.
        r.hint = Some("give the key ring with --keys-file, --keys, SESSION_KEYS or SESSION_SECRET to verify it".to_owned());
        match peeked.unverified {
            Unverified::Encrypted => {
                r.unreadable = vec!["algorithm", "session_id", "subject", "times", "data"];
                r.notes.push(
                    "the payload is encrypted: without the key only the header can be read"
                        .to_owned(),
                );
            }
            Unverified::Session(mut state) => {
                let v = view_of_state(&mut state, &mut r.notes);
                r.apply(v, opts);
                r.notes.push("UNVERIFIED: a signed token's payload is readable without the key, but anyone could have written it".to_owned());
            }
            Unverified::SessionId(id) => {
                r.session_id = Some(id.to_string());
                r.unreadable = vec!["subject", "times", "data"];
                r.notes.push(
                    "UNVERIFIED session id; the session itself lives in the server's store"
                        .to_owned(),
                );
            }
            _ => r.unreadable = vec!["payload"],
        }
        return;
    };
    r.keys_from = Some(loaded.from.clone());
    let ring = &loaded.ring;
    let purposes: Vec<String> = match (&opts.purpose, &r.cookie_name) {
        (Some(p), _) => vec![p.clone()],
        (None, Some(c)) => vec![c.clone()],
        (None, None) => candidate_names(&opts.name),
    };
    let mut result = Err(OpenError::BadSeal);
    for purpose in &purposes {
        result = open_ring(kind, ring, token, purpose.as_bytes());
        r.purpose = Some(purpose.clone());
        if !matches!(result, Err(OpenError::BadSeal)) {
            break;
        }
    }
    let ring_ids: Vec<&str> = ring.ids().collect();
    match result {
        Err(e) => {
            if matches!(e, OpenError::BadSeal) && purposes.len() > 1 {
                r.purpose = None;
            }
            let h = hint(&e, opts, &purposes, &ring_ids);
            r.refuse(&e, h);
            if let Unverified::Session(mut state) = peeked.unverified {
                let v = view_of_state(&mut state, &mut r.notes);
                r.apply(v, opts);
                r.notes.push(
                    "the session fields shown are UNVERIFIED: the token was refused".to_owned(),
                );
            }
        }
        Ok((opened, stale)) => {
            r.verified = true;
            r.key_is_primary = Some(!stale);
            if kind == TokenKind::Sealed {
                r.algorithm = ring
                    .keys()
                    .find(|k| Some(k.id()) == r.key_id.as_deref())
                    .map(|k| k.algorithm().to_string());
            }
            if stale {
                r.notes.push(format!(
                    "made with an older key: the server re-issues it under the primary key {}",
                    ring.primary_id()
                ));
            }
            match opened {
                OpenedAny::State(mut state) => {
                    let check = opts.policy().check(&state, opts.now);
                    let v = view_of_state(&mut state, &mut r.notes);
                    r.apply(v, opts);
                    match check {
                        Ok(_) => r.valid(),
                        Err(e) => {
                            let h = hint(&e, opts, &purposes, &ring_ids);
                            r.refuse(&e, h);
                        }
                    }
                }
                OpenedAny::Id(id) => {
                    r.session_id = Some(id.to_string());
                    r.unreadable = vec!["subject", "times", "data"];
                    r.notes.push("store-backed session: the signed id is valid; its data and expiry live in the server's store".to_owned());
                    r.valid();
                }
            }
        }
    }
}

enum OpenedAny {
    State(SessionState),
    Id(SessionId),
}

fn open_ring(
    kind: TokenKind,
    ring: &sealed_session::Keyring,
    token: &str,
    purpose: &[u8],
) -> Result<(OpenedAny, bool), OpenError> {
    let state = |o: sealed_session::Opened| {
        let stale = o.needs_reissue();
        (OpenedAny::State(o.into_state()), stale)
    };
    match kind {
        TokenKind::Sealed => SealedCodec::new(ring.clone())
            .open(token, purpose)
            .map(state),
        TokenKind::Signed => SignedCodec::new(ring.clone())
            .open(token, purpose)
            .map(state),
        _ => SessionIdCodec::new(ring.clone())
            .verify(token, purpose)
            .map(|(id, stale)| (OpenedAny::Id(id), stale)),
    }
}

fn decode_segment(seg: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(seg.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

fn inspect_jwt(r: &mut Report, token: &str, opts: &Options) -> Result<(), CliError> {
    r.kind = Some("jwt");
    let mut parts = token.split('.');
    let header = parts.next().and_then(decode_segment);
    let claims = parts.next().and_then(decode_segment);
    let (Some(header), Some(claims)) = (header, claims) else {
        let e = OpenError::Malformed("JWT header or claims are not base64url JSON objects");
        let h = hint(&e, opts, &[], &[]);
        r.refuse(&e, h);
        return Ok(());
    };
    let header_alg = header.get("alg").and_then(Value::as_str).map(str::to_owned);
    let header_kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    r.key_id = header_kid.clone();
    r.algorithm = header_alg.clone();
    r.jwt_header = Some(header);
    r.jwt_claims = Some(claims.clone());
    let Some(key_file) = &opts.jwt.key_file else {
        r.apply(view_of_claims(&claims), opts);
        r.hint = Some("give the JWT key with --jwt-key FILE (the PEM private key, or the base64 HMAC secret) to verify it".to_owned());
        r.notes.push("UNVERIFIED: a JWT's header and claims are readable without the key, but anyone could have written them".to_owned());
        return Ok(());
    };
    r.keys_from = Some(format!("--jwt-key {}", key_file.display()));
    let alg = match (opts.jwt.alg, header_alg.as_deref()) {
        (Some(a), _) => a,
        (None, Some(name)) => match name.parse::<JwtAlgorithm>() {
            Ok(a) => a,
            Err(_) => {
                r.apply(view_of_claims(&claims), opts);
                r.refuse(
                    &OpenError::BadSeal,
                    Some(format!(
                        "the token's alg {name:?} is not one sealed-session accepts"
                    )),
                );
                return Ok(());
            }
        },
        (None, None) => {
            return Err(usage(
                "the JWT header has no alg; pass --jwt-alg".to_owned(),
            ));
        }
    };
    let kid = opts
        .jwt
        .kid
        .clone()
        .or(header_kid)
        .unwrap_or_else(|| "k1".to_owned());
    let key = load_jwt_key(key_file, &kid, alg)?;
    let ring = JwtKeyring::new([key]).map_err(|source| {
        usage(format!(
            "invalid JWT key in {}: {source}",
            "--jwt-key".to_owned()
        ))
    })?;
    // The application's binding as given: what is not given is not checked.
    let mut builder = JwtCodec::builder(ring).allow_missing_issuer_or_audience();
    if let Some(iss) = &opts.jwt.issuer {
        builder = builder.issuer(iss.clone());
    }
    if let Some(aud) = &opts.jwt.audience {
        builder = builder.audience(aud.clone());
    }
    let codec = builder
        .build()
        .map_err(|e| usage(format!("invalid --issuer or --audience: {e}")))?
        .leeway(opts.leeway)
        .idle_timeout(opts.idle_timeout);
    // First authenticate at the token's own issue time, so that an expired token still
    // shows its (verified) content; then judge it at `now`.
    let issued = claims
        .get("iat")
        .and_then(Value::as_u64)
        .map_or(opts.now, |s| Timestamp::from_millis(s.saturating_mul(1000)));
    let authenticated = codec
        .clone()
        .clock(ManualClock::new(issued))
        .open(token, b"");
    match authenticated {
        Err(e) => {
            r.apply(view_of_claims(&claims), opts);
            let h = hint(&e, opts, &[], &[]);
            r.refuse(&e, h);
            r.notes
                .push("the session fields shown are UNVERIFIED: the token was refused".to_owned());
        }
        Ok(opened) => {
            r.verified = true;
            r.key_is_primary = Some(true);
            let mut state = opened.into_state();
            let v = view_of_state(&mut state, &mut r.notes);
            r.apply(v, opts);
            match codec.open_checked(token, b"", &opts.policy(), opts.now) {
                Ok(_) => r.valid(),
                Err(e) => {
                    let h = hint(&e, opts, &[], &[]);
                    r.refuse(&e, h);
                }
            }
        }
    }
    Ok(())
}

/// Redis could not be reached: exit 4, and why.
#[cfg(feature = "redis")]
fn redis_error(why: String) -> CliError {
    CliError {
        code: exit::REDIS,
        message: format!(
            "Redis denylist unreachable: {why}; check --redis and that Redis is running"
        ),
    }
}

#[cfg(feature = "redis")]
fn check_revocation(r: &mut Report, redis: &RedisOptions) -> Result<(), CliError> {
    use sealed_session::denylist::{Check, Denylist, RedisDenylist};

    let Some(id) = r.session_id.as_deref().and_then(SessionId::parse) else {
        return Ok(());
    };
    // Store-backed ids carry no subject or issue time: only the id can be checked.
    let issued_at = r
        .issued_at
        .as_ref()
        .map_or(Timestamp::EPOCH, |t| Timestamp::from_millis(t.ms));
    let subject = r.subject.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| redis_error(format!("cannot start the async runtime: {e}")))?;
    let check = runtime.block_on(async {
        let mut builder = RedisDenylist::builder(redis.url.clone())
            .timeout(redis.timeout)
            .stale_after(
                Duration::from_secs(30)
                    .max(redis.timeout.saturating_mul(2) + Duration::from_secs(3)),
            );
        if let Some(p) = &redis.prefix {
            builder = builder.key_prefix(p.clone());
        }
        let denylist = builder.build().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                let _ = write!(msg, ": {s}");
                source = s.source();
            }
            redis_error(msg)
        })?;
        let check = denylist.check(&id, subject.as_deref(), issued_at);
        denylist.shutdown();
        Ok::<Check, CliError>(check)
    })?;
    r.revocation = check.reason();
    match check {
        Check::Allowed => {}
        Check::Revoked(_) => r.refuse(
            &OpenError::Revoked,
            Some(format!(
                "revoked ({}) in the Redis denylist",
                check.reason()
            )),
        ),
        Check::Unavailable => {
            r.exit_code = exit::REDIS;
            r.notes.push(
                "the Redis denylist could not vouch for the session (replica stale)".to_owned(),
            );
        }
    }
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn check_revocation(_: &mut Report, _: &RedisOptions) -> Result<(), CliError> {
    Err(CliError {
        code: exit::UNSUPPORTED,
        message:
            "this build has no Redis support; rebuild with `--features cli,redis` to use --redis"
                .to_owned(),
    })
}

fn line(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {label:<14}{value}");
}

fn time_line(out: &mut String, label: &str, t: &Option<Time>, extra: &str) {
    if let Some(t) = t {
        line(
            out,
            label,
            &format!("{} ({}){extra}", t.rfc3339, t.relative),
        );
    }
}

/// The report as text.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let from = match (&r.cookie_name, r.chunks) {
        (Some(name), 0) => format!("cookie {name} ({})", r.source),
        (Some(name), n) => format!("cookie {name} ({}, {n} chunks reassembled)", r.source),
        (None, _) => "bare token".to_owned(),
    };
    let _ = writeln!(out, "{from}, {} characters", r.token_length);
    let status = match r.status {
        "valid" => "VALID".to_owned(),
        "refused" => format!(
            "REFUSED: {} ({})",
            r.error.as_deref().unwrap_or("refused"),
            r.reason.as_deref().unwrap_or("")
        ),
        _ => "UNVERIFIED: no key to check it with".to_owned(),
    };
    line(&mut out, "status", &status);
    if let Some(kind) = r.kind {
        let v = r
            .format_version
            .map(|v| format!(" (format version {v})"))
            .unwrap_or_default();
        line(&mut out, "kind", &format!("{kind}{v}"));
    }
    if let Some(kid) = &r.key_id {
        let role = match r.key_is_primary {
            Some(true) => ", primary key",
            Some(false) => ", older key",
            None => "",
        };
        let alg = r
            .algorithm
            .as_deref()
            .unwrap_or("algorithm unknown without the key");
        line(&mut out, "key id", &format!("{kid} ({alg}{role})"));
    }
    if let Some(k) = &r.keys_from {
        line(&mut out, "keys from", k);
    }
    if let Some(p) = &r.purpose {
        line(&mut out, "purpose", p);
    }
    if let Some(id) = &r.session_id {
        line(&mut out, "session id", id);
    }
    if r.session_id.is_some() || r.issued_at.is_some() {
        line(
            &mut out,
            "subject",
            r.subject.as_deref().unwrap_or("(none)"),
        );
    }
    time_line(&mut out, "issued", &r.issued_at, "");
    time_line(&mut out, "last seen", &r.last_seen, "");
    time_line(&mut out, "expires", &r.expires_at, ", absolute deadline");
    time_line(
        &mut out,
        "idle expiry",
        &r.idle_expires_at,
        ", last seen + idle timeout",
    );
    if let Some(e) = r.expired {
        line(&mut out, "expired", if e { "yes" } else { "no" });
    }
    if r.verified {
        let rev = match r.revocation {
            "not_checked" => "not checked (pass --redis URL)",
            "allowed" => "no",
            "revoked_session" => "YES, this session was revoked",
            "revoked_subject" => {
                "YES, every session of this subject issued before a time was revoked"
            }
            "unavailable" => "unknown: the Redis denylist is unavailable",
            other => other,
        };
        line(&mut out, "revoked", rev);
    }
    if !r.unreadable.is_empty() {
        line(
            &mut out,
            "not readable",
            &format!("{} (needs the key)", r.unreadable.join(", ")),
        );
    }
    if let Some(h) = &r.hint {
        line(&mut out, "hint", h);
    }
    for n in &r.notes {
        line(&mut out, "note", n);
    }
    if let Some(h) = &r.jwt_header {
        let _ = writeln!(
            out,
            "  JWT header{}",
            if r.verified { "" } else { " (UNVERIFIED)" }
        );
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(h).unwrap_or_default()
        );
    }
    if let Some(c) = &r.jwt_claims {
        let _ = writeln!(
            out,
            "  JWT claims{}",
            if r.verified { "" } else { " (UNVERIFIED)" }
        );
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(c).unwrap_or_default()
        );
    } else if let Some(d) = &r.data {
        let _ = writeln!(
            out,
            "  data{}",
            if r.verified { "" } else { " (UNVERIFIED)" }
        );
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(d).unwrap_or_default()
        );
    }
    out
}
