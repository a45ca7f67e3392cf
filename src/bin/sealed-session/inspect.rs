//! `inspect`: opens a token with the keys given, or reads what it shows without them, and
//! fills the [`Report`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use sealed_session::codec::{SessionIdCodec, TokenKind, Unverified, peek};
use sealed_session::{
    Clock, Codec, JwtCodec, JwtKeyring, Keyring, ManualClock, OpenError, Policy, SealedCodec,
    SessionId, SessionState, SignedCodec, SystemClock, Timestamp,
};

use crate::input::{Found, candidate_names};
use crate::keys::{LoadedRing, load_jwt_key};
use crate::report::{Report, Time};
use crate::timefmt::human;
use crate::{CliError, InspectArgs, exit, usage};

/// What a check needs besides the token.
struct Ctx<'a> {
    args: &'a InspectArgs,
    /// The time of the check.
    now: Timestamp,
    ring: Option<LoadedRing>,
    policy: Policy,
    /// The purposes a ring token is opened for: `--purpose`, else the cookie's name as sent,
    /// else both names a bare token's cookie may have had.
    purposes: Vec<String>,
}

/// Inspects the token in `found`, with the key ring `ring` (and for a JWT, `--jwt-key`).
pub fn inspect(
    args: &InspectArgs,
    found: &Found,
    ring: Option<LoadedRing>,
) -> Result<Report, CliError> {
    let now = args.now.unwrap_or_else(|| SystemClock.now());
    let ctx = Ctx {
        args,
        now,
        ring,
        policy: Policy::new()
            .idle_timeout(args.idle_timeout.0)
            .leeway(args.leeway),
        purposes: match (&args.purpose, &found.cookie_name) {
            (Some(p), _) | (None, Some(p)) => vec![p.clone()],
            (None, None) => candidate_names(&args.name),
        },
    };
    let mut r = Report {
        status: "unverified",
        exit_code: exit::NO_KEY,
        source: found.source,
        cookie_name: found.cookie_name.clone(),
        chunks: found.chunks,
        token_length: found.token.len(),
        revocation: "not_checked",
        notes: found.notes.clone(),
        now: Time::new(now, now),
        ..Report::default()
    };
    if found.token.split('.').count() == 3 {
        inspect_jwt(&mut r, &found.token, &ctx)?;
    } else {
        inspect_ring_token(&mut r, &found.token, &ctx);
    }
    match &args.redis {
        Some(_) if r.status != "valid" => r
            .notes
            .push("revocation not checked: the token is not valid anyway".to_owned()),
        #[cfg(feature = "redis")]
        Some(url) => check_revocation(&mut r, url, &ctx)?,
        _ => {}
    }
    Ok(r)
}

impl Report {
    /// Shows a session's fields: opened, or read without the key.
    fn show_state(&mut self, mut state: SessionState, ctx: &Ctx) {
        self.session_id = Some(state.id().to_string());
        self.subject = state.subject().map(str::to_owned);
        let data = state.data().map(|m| Value::Object(m.clone()));
        if let Err(e) = &data {
            let note = format!("the session data cannot be shown: {e}");
            self.notes.push(note);
        }
        self.data = data.ok();
        let times = [state.issued_at(), state.last_seen(), state.expires_at()];
        self.show_times(times.map(Some), ctx);
    }

    /// Shows the session as a JWT's claims describe it (see docs/FORMAT.md, appendix).
    fn show_claims(&mut self, c: &Value, ctx: &Ctx) {
        let ms = |k: &str| c.pointer(&format!("/sess/{k}")).and_then(Value::as_u64);
        let secs = |k: &str| {
            c.get(k)
                .and_then(Value::as_u64)
                .map(|s| s.saturating_mul(1000))
        };
        self.session_id = text(c, "jti");
        self.subject = text(c, "sub");
        self.data = c.get("data").filter(|d| !d.is_null()).cloned();
        let times = [
            ms("iat_ms").or_else(|| secs("iat")),
            ms("seen_ms").or_else(|| secs("iat")),
            ms("deadline_ms").or_else(|| secs("exp")),
        ];
        self.show_times(times.map(|t| t.map(Timestamp::from_millis)), ctx);
    }

    /// Shows the issue, last-seen and expiry times, and whether the session has expired.
    fn show_times(&mut self, [issued, seen, expires]: [Option<Timestamp>; 3], ctx: &Ctx) {
        let time = |t: Option<Timestamp>| t.map(|t| Time::new(t, ctx.now));
        let idle_at = ctx
            .args
            .idle_timeout
            .0
            .and_then(|d| seen.map(|t| t.saturating_add(d)));
        self.issued_at = time(issued);
        self.last_seen = time(seen);
        self.expires_at = time(expires);
        self.idle_expires_at = time(idle_at);
        self.expired = expires.map(|abs| idle_at.map_or(abs, |i| abs.min(i)) <= ctx.now);
    }

    /// Notes that the fields shown are those of a refused token.
    fn unverified_note(&mut self) {
        let note = "the session fields shown are UNVERIFIED: the token was refused";
        self.notes.push(note.to_owned());
    }

    fn refuse(&mut self, e: &OpenError, ctx: &Ctx) {
        self.status = "refused";
        self.exit_code = exit::REFUSED;
        self.reason = Some(e.reason().to_owned());
        self.error = Some(e.to_string());
        self.hint = hint(e, self, ctx);
    }

    /// The token authenticated; `verdict` says whether it is valid or refused (expired,
    /// idle, ...).
    fn authenticated<T>(&mut self, verdict: Result<T, OpenError>, ctx: &Ctx) {
        self.verified = true;
        match verdict {
            Ok(_) => {
                self.status = "valid";
                self.exit_code = exit::OK;
            }
            Err(e) => self.refuse(&e, ctx),
        }
    }
}

/// A string field of a JSON object.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Hints for a refusal: what to check or pass next.
fn hint(e: &OpenError, r: &Report, ctx: &Ctx) -> Option<String> {
    let jwt = r.kind == Some("jwt");
    Some(match e {
        OpenError::BadSeal if jwt => {
            "the signature does not verify: the token was changed, or signed with another key under the same kid; check --jwt-key, --jwt-alg and --kid".to_owned()
        }
        OpenError::BadSeal => format!(
            "the token was changed or cut short, made with other key material under the same key id, or made for another cookie name (purpose tried: {}; set it with --purpose)",
            ctx.purposes.join(", ")
        ),
        OpenError::UnknownKeyId(_) if jwt => "the JWT's kid is not the --kid given".to_owned(),
        OpenError::UnknownKeyId(_) => format!(
            "the key ring holds {}: the token was made with another ring, or its key has been retired",
            ctx.ring.iter().flat_map(|l| l.ring.ids()).collect::<Vec<_>>().join(", ")
        ),
        OpenError::Expired { .. } => {
            "the session passed its absolute deadline: the user must log in again".to_owned()
        }
        OpenError::IdleTimeout { .. } => format!(
            "the session was idle longer than the idle timeout ({}); --idle-timeout sets the timeout to check against",
            ctx.args.idle_timeout.0.map_or_else(|| "none".to_owned(), human)
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

/// A sealed or signed token, or the signed id of a store-backed session.
fn inspect_ring_token(r: &mut Report, token: &str, ctx: &Ctx) {
    let peeked = match peek(token) {
        Ok(p) => p,
        Err(e) => return r.refuse(&e, ctx),
    };
    let (kind, unverified) = (peeked.header.kind, peeked.unverified);
    r.kind = Some(kind.name());
    r.format_version = Some(peeked.header.version);
    r.key_id = Some(peeked.header.key_id);
    if kind != TokenKind::Sealed {
        r.algorithm = Some("hmac-sha256".to_owned());
    }
    let store_backed = ["subject", "times", "data"];
    let Some(LoadedRing { ring, from }) = &ctx.ring else {
        // No key: what the token shows by itself.
        r.hint = Some("give the key ring with --keys-file, --keys, SESSION_KEYS or SESSION_SECRET to verify it".to_owned());
        let note = match unverified {
            Unverified::Encrypted => {
                r.unreadable = vec!["algorithm", "session_id", "subject", "times", "data"];
                "the payload is encrypted: without the key only the header can be read"
            }
            Unverified::Session(state) => {
                r.show_state(state, ctx);
                "UNVERIFIED: a signed token's payload is readable without the key, but anyone could have written it"
            }
            Unverified::SessionId(id) => {
                r.session_id = Some(id.to_string());
                r.unreadable = store_backed.to_vec();
                "UNVERIFIED session id; the session itself lives in the server's store"
            }
            _ => {
                r.unreadable = vec!["payload"];
                return;
            }
        };
        r.notes.push(note.to_owned());
        return;
    };
    r.keys_from = Some(from.clone());
    let mut opened = Err(OpenError::BadSeal);
    for purpose in &ctx.purposes {
        opened = open_ring(kind, ring, token, purpose.as_bytes());
        r.purpose = Some(purpose.clone());
        if !matches!(opened, Err(OpenError::BadSeal)) {
            break;
        }
    }
    let (opened, stale) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            if matches!(e, OpenError::BadSeal) && ctx.purposes.len() > 1 {
                r.purpose = None;
            }
            r.refuse(&e, ctx);
            if let Unverified::Session(state) = unverified {
                r.show_state(state, ctx);
                r.unverified_note();
            }
            return;
        }
    };
    r.key_is_primary = Some(!stale);
    if kind == TokenKind::Sealed {
        let key = ring.keys().find(|k| Some(k.id()) == r.key_id.as_deref());
        r.algorithm = key.map(|k| k.algorithm().to_string());
    }
    if stale {
        r.notes.push(format!(
            "made with an older key: the server re-issues it under the primary key {}",
            ring.primary_id()
        ));
    }
    match opened {
        OpenedAny::State(state) => {
            let verdict = ctx.policy.check(&state, ctx.now);
            r.show_state(state, ctx);
            r.authenticated(verdict, ctx);
        }
        OpenedAny::Id(id) => {
            r.session_id = Some(id.to_string());
            r.unreadable = store_backed.to_vec();
            r.notes.push("store-backed session: the signed id is valid; its data and expiry live in the server's store".to_owned());
            r.authenticated(Ok(()), ctx);
        }
    }
}

/// What a ring token opens to: a session, or the id of a store-backed one.
enum OpenedAny {
    State(SessionState),
    Id(SessionId),
}

/// Opens a ring token of `kind`; `true` beside it when an older key made it.
fn open_ring(
    kind: TokenKind,
    ring: &Keyring,
    token: &str,
    purpose: &[u8],
) -> Result<(OpenedAny, bool), OpenError> {
    let opened = match kind {
        TokenKind::Sealed => SealedCodec::new(ring.clone()).open(token, purpose)?,
        TokenKind::Signed => SignedCodec::new(ring.clone()).open(token, purpose)?,
        _ => {
            let (id, stale) = SessionIdCodec::new(ring.clone()).verify(token, purpose)?;
            return Ok((OpenedAny::Id(id), stale));
        }
    };
    let stale = opened.needs_reissue();
    Ok((OpenedAny::State(opened.into_state()), stale))
}

/// A JWT segment: base64url of a JSON object.
fn decode_segment(seg: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(seg.trim_end_matches('=')).ok()?;
    let value = serde_json::from_slice::<Value>(&bytes).ok()?;
    value.is_object().then_some(value)
}

fn inspect_jwt(r: &mut Report, token: &str, ctx: &Ctx) -> Result<(), CliError> {
    r.kind = Some("jwt");
    let mut parts = token.split('.').map(decode_segment);
    let (Some(Some(header)), Some(Some(claims))) = (parts.next(), parts.next()) else {
        let e = OpenError::Malformed("JWT header or claims are not base64url JSON objects");
        r.refuse(&e, ctx);
        return Ok(());
    };
    r.key_id = text(&header, "kid");
    r.algorithm = text(&header, "alg");
    // What the claims say, unverified: replaced by the session if the token authenticates.
    r.show_claims(&claims, ctx);
    r.jwt_header = Some(header);
    r.jwt_claims = Some(claims);
    let args = &ctx.args;
    let Some(key_file) = &args.jwt_key else {
        r.hint = Some("give the JWT key with --jwt-key FILE (the PEM private key, or the base64 HMAC secret) to verify it".to_owned());
        r.notes.push("UNVERIFIED: a JWT's header and claims are readable without the key, but anyone could have written them".to_owned());
        return Ok(());
    };
    r.keys_from = Some(format!("--jwt-key {}", key_file.display()));
    let alg = match (args.jwt_alg, r.algorithm.as_deref()) {
        (Some(alg), _) => alg,
        (None, None) => return Err(usage("the JWT header has no alg; pass --jwt-alg")),
        (None, Some(name)) => match name.parse() {
            Ok(alg) => alg,
            Err(_) => {
                let hint = format!("the token's alg {name:?} is not one sealed-session accepts");
                r.refuse(&OpenError::BadSeal, ctx);
                r.hint = Some(hint);
                return Ok(());
            }
        },
    };
    let kid = args.kid.as_deref().or(r.key_id.as_deref()).unwrap_or("k1");
    let ring = JwtKeyring::new([load_jwt_key(key_file, kid, alg)?])
        .map_err(|e| usage(format!("invalid JWT key in --jwt-key: {e}")))?;
    // The application's binding as given: what is not given is not checked.
    let mut builder = JwtCodec::builder(ring).allow_missing_issuer_or_audience();
    if let Some(iss) = &args.issuer {
        builder = builder.issuer(iss.clone());
    }
    if let Some(aud) = &args.audience {
        builder = builder.audience(aud.clone());
    }
    let codec = builder
        .build()
        .map_err(|e| usage(format!("invalid --issuer or --audience: {e}")))?
        .policy(&ctx.policy);
    // First authenticate at the token's own issue time, so that an expired token still
    // shows its (verified) content; then judge it at `now`.
    let iat = r.jwt_claims.as_ref().and_then(|c| c.get("iat")?.as_u64());
    let issued = iat.map_or(ctx.now, |s| Timestamp::from_millis(s.saturating_mul(1000)));
    match codec
        .clone()
        .clock(ManualClock::new(issued))
        .open(token, b"")
    {
        Err(e) => {
            r.refuse(&e, ctx);
            r.unverified_note();
        }
        Ok(opened) => {
            r.key_is_primary = Some(true);
            r.show_state(opened.into_state(), ctx);
            r.authenticated(codec.open_checked(token, b"", &ctx.policy, ctx.now), ctx);
        }
    }
    Ok(())
}

/// Checks the valid token's session (and subject) in the Redis denylist at `url`.
#[cfg(feature = "redis")]
fn check_revocation(r: &mut Report, url: &str, ctx: &Ctx) -> Result<(), CliError> {
    use sealed_session::denylist::{Check, Denylist, RedisDenylist};
    use std::time::Duration;

    let Some(id) = r.session_id.as_deref().and_then(SessionId::parse) else {
        return Ok(());
    };
    // Store-backed ids carry no subject or issue time: only the id can be checked.
    let issued_at = r.issued_at.as_ref().map_or(0, |t| t.ms);
    let unreachable = |why: String| CliError {
        code: exit::REDIS,
        message: format!(
            "Redis denylist unreachable: {why}; check --redis and that Redis is running"
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(format!("cannot start the async runtime: {e}")))?;
    let check = runtime.block_on(async {
        let timeout = ctx.args.redis_timeout;
        let stale_after =
            Duration::from_secs(30).max(timeout.saturating_mul(2) + Duration::from_secs(3));
        let mut builder = RedisDenylist::builder(url)
            .timeout(timeout)
            .stale_after(stale_after);
        if let Some(p) = &ctx.args.redis_prefix {
            builder = builder.key_prefix(p.clone());
        }
        let denylist = builder.build().await.map_err(|e| {
            // The error and its causes: which address, and why it failed.
            let causes = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source());
            unreachable(causes.map(|e| e.to_string()).collect::<Vec<_>>().join(": "))
        })?;
        let subject = r.subject.as_deref();
        let check = denylist.check(&id, subject, Timestamp::from_millis(issued_at));
        denylist.shutdown();
        Ok::<Check, CliError>(check)
    })?;
    r.revocation = check.reason();
    match check {
        Check::Allowed => {}
        Check::Revoked(_) => {
            r.refuse(&OpenError::Revoked, ctx);
            r.hint = Some(format!("revoked ({}) in the Redis denylist", r.revocation));
        }
        Check::Unavailable => {
            r.exit_code = exit::REDIS;
            let note = "the Redis denylist could not vouch for the session (replica stale)";
            r.notes.push(note.to_owned());
        }
    }
    Ok(())
}
