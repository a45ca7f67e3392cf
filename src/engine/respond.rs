//! After the handler: the session's [`Plan`] turned into the response's headers, with the
//! revocations and store writes it waits for.

use http::header::{self, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tracing::Span;

use std::net::IpAddr;

use super::{Answer, BindingOut, Config};
use crate::denylist::Denylist as _;
use crate::devices::{DeviceRecord, Devices, ip_prefix};
use crate::error::OpenError;
use crate::session::{Backend, DeviceWork, Ended, Outcome, Plan, Recorded, Sending, Session};
use crate::stats::Counters;
use crate::transport::bearer::{self, BearerConfig};
use crate::transport::cookie::{CookieConfig, Incoming};

/// How the request carried its session.
#[derive(Debug)]
pub(super) enum Carrier {
    Cookie {
        secure: bool,
        incoming: Incoming,
    },
    /// `dpop_scheme`: the token came as `Authorization: DPoP`.
    Bearer {
        dpop_scheme: bool,
    },
}

impl Carrier {
    /// Whether the request came over HTTPS (for the cookie name); bearer tokens have one name.
    pub(super) fn is_secure(&self) -> bool {
        matches!(self, Carrier::Cookie { secure: true, .. })
    }
}

/// What the device registry is told about the client, kept from the request when "your
/// devices" is on: its `User-Agent` and, when IP prefixes are wanted, its address.
#[derive(Debug)]
pub(super) struct Client {
    agent: Option<HeaderValue>,
    /// IP prefixes are on.
    pub(super) ip_wanted: bool,
    pub(super) ip: Option<IpAddr>,
}

impl Client {
    /// From the request's headers: the `User-Agent`, and with `trust_proxy` the last
    /// `X-Forwarded-For` address.
    pub(super) fn of(headers: &HeaderMap, ip_wanted: bool, trust_proxy: bool) -> Client {
        // The last address: the one the trusted proxy appended (the ones before it are the
        // client's own claim).
        let forwarded = || {
            // The last header line, if the proxy added a line of its own.
            let value = headers.get_all("x-forwarded-for").iter().next_back()?;
            let last = value.to_str().ok()?.rsplit(',').next()?;
            last.trim().parse::<IpAddr>().ok()
        };
        Client {
            agent: headers.get(header::USER_AGENT).cloned(),
            ip_wanted,
            ip: if ip_wanted && trust_proxy {
                forwarded()
            } else {
                None
            },
        }
    }

    /// The registry entry of `seen`, labelled by `devices`.
    fn record(&self, devices: &Devices, seen: Recorded) -> DeviceRecord {
        let agent = self.agent.as_ref().and_then(|v| v.to_str().ok());
        DeviceRecord {
            id: seen.id,
            subject: seen.subject,
            started: seen.started,
            renewed: seen.renewed,
            // Past the session's by the refresh interval: a session still in use is recorded
            // again before its entry runs out.
            expires_at: seen.expires_at.saturating_add(devices.refresh_every),
            label: devices.label(agent),
            ip_prefix: self.ip.filter(|_| self.ip_wanted).map(ip_prefix),
        }
    }
}

/// The 401 for a refused bearer token, the handler not run.
pub(super) fn unauthorized(e: &OpenError, span: &Span) -> Answer {
    outcome(span, "rejected");
    bearer::unauthorized(e)
}

/// Records what the request did with its session on its span.
pub(super) fn outcome(span: &Span, label: &'static str) {
    if !span.is_disabled() {
        span.record("outcome", label);
    }
}

pub(super) fn internal(e: impl std::error::Error) -> Answer {
    Answer::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Everything after the handler: the plan, the revocations and store write it needs, and
/// the session's headers on the response's `headers` (or the answer that replaces it).
pub(super) async fn finish(
    cfg: &Config,
    span: &Span,
    (carrier, purpose): (&Carrier, &str),
    session: &Session,
    (refused, client): (bool, Option<&Client>),
    binding: Option<&BindingOut>,
    headers: &mut HeaderMap,
) -> Result<(), Answer> {
    let how = Sending {
        had_cookie: matches!(carrier, Carrier::Cookie { incoming, .. } if incoming.any()),
        bearer: matches!(carrier, Carrier::Bearer { .. }),
        refused,
        save_uninitialized: cfg.save_uninitialized,
        rolling: cfg.policy.is_rolling(),
        persistent: cfg.cookie.is_persistent(),
    };
    let mut plan = match session.plan(how) {
        Ok(plan) => plan,
        Err(e) => {
            // Sessions the handler ended are ended even if the new one cannot be sent.
            let ended = session.take_ended();
            Box::pin(end_sessions(cfg, span, &ended)).await?;
            return Err(not_saved(span, &e.to_string()));
        }
    };
    // Sessions the handler ended are ended whatever is sent: before the refusals below.
    if !plan.ended.is_empty() {
        // Boxed, as the store write below: rare, and large futures (see `Engine::start`).
        Box::pin(end_sessions(cfg, span, &plan.ended)).await?;
    }
    // DPoP required: no unbound bearer token goes out (a request without a proof, or a
    // handler that started a new session after `destroy`).
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    if let (Some(dpop), Carrier::Bearer { .. }, Outcome::Write, Some(_)) =
        (&cfg.dpop, carrier, plan.outcome, &plan.token)
        && dpop.is_required()
        && session.binding().is_none()
    {
        outcome(span, "rejected");
        return Err(super::bind::unbound_refused(dpop));
    }
    // A login's DPoP proof: recorded as used now that a token is issued to it.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    if let (Some(dpop), Some((key, until))) =
        (&cfg.dpop, binding.and_then(|b| b.pending_proof.as_ref()))
        && plan.outcome == Outcome::Write
        && plan.token.is_some()
    {
        let now = cfg.clock.now();
        if let Err(refusal) = Box::pin(dpop.record(key, *until, now)).await {
            outcome(span, "rejected");
            return Err(super::bind::refusal_answer(dpop, refusal, now));
        }
    }
    // Store-backed: the session may be found ended by another request when writing it.
    let mut ended_elsewhere = false;
    if let Backend::Store { store, .. } = &cfg.backend
        && let Some(write) = plan.record.take()
    {
        match Box::pin(crate::store::write(&**store, write)).await {
            Ok(Some(_)) => {}
            // Ended by another request (logout, regenerate) or expired meanwhile: it stays
            // ended. No cookie goes out, neither the dead id nor a removal, which could erase
            // the cookie a concurrent `regenerate` sets; a dead id is refused and cleared on
            // its next use.
            Ok(None) => {
                tracing::info!(target: "sealed_session", "session ended by another request; not saved");
                plan.token = None;
                ended_elsewhere = true;
            }
            Err(e) => {
                tracing::error!(target: "sealed_session", error = %e, "session not saved to the store");
                // Not written, so not recorded: the next write is due again.
                if let (Some(devices), Some(seen)) = (
                    &cfg.devices,
                    plan.devices.as_ref().and_then(|w| w.recorded.as_ref()),
                ) {
                    devices.recent.forget(&seen.id);
                }
                return Err(unavailable(
                    span,
                    "the session could not be saved: the session store is unavailable",
                ));
            }
        }
    }
    if let (Some(devices), Some(work)) = (&cfg.devices, plan.devices.take()) {
        Box::pin(device_work(devices, client, *work, ended_elsewhere)).await;
    }
    if let Some(nonce) = binding.and_then(|b| b.dpop_nonce.clone()) {
        headers.insert("dpop-nonce", nonce);
    }
    // DBSC: a signed-in session issued to a browser, not bound yet, is offered binding.
    #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
    if let (Some(dbsc), Carrier::Cookie { .. }, Outcome::Write, Some(_), false) = (
        &cfg.dbsc,
        carrier,
        plan.outcome,
        &plan.token,
        ended_elsewhere,
    ) && session.binding().is_none()
        && session.subject().is_some()
        && let Some(offer) = dbsc.registration_header(&session.id(), cfg.clock.now())
    {
        headers.insert("secure-session-registration", offer);
    }
    respond(
        cfg,
        span,
        (carrier, purpose),
        plan,
        headers,
        ended_elsewhere,
    )
}

/// The registry's work at the end of a request: record the session (unless another request
/// ended it meanwhile), remove entries under a former subject.
async fn device_work(
    devices: &Devices,
    client: Option<&Client>,
    work: DeviceWork,
    ended_elsewhere: bool,
) {
    if let (Some(client), Some(seen)) = (client, work.recorded)
        && !ended_elsewhere
    {
        record_device(devices, client, seen).await;
    }
    for (subject, id) in work.forget {
        devices.recent.forget(&id);
        if let Err(e) = devices.registry.remove(&subject, &id).await {
            tracing::warn!(target: "sealed_session", error = %e, "entry under a former subject not removed from the device registry");
        }
    }
}

/// Records the session in the device registry. A failure is logged, not answered: the
/// session works, it is only missing from the user's list of devices until its next
/// renewal (and "log out everywhere" still reaches it).
async fn record_device(devices: &Devices, client: &Client, seen: Recorded) {
    let record = client.record(devices, seen);
    if let Err(e) = devices.registry.record(&record).await {
        devices.recent.forget(&record.id);
        tracing::warn!(target: "sealed_session", error = %e, "session not recorded in the device registry");
    }
}

/// Removes the sessions a request ended from the device registry. A failure is logged: the
/// entry stays listed until it expires, but the session is ended (and a listing leaves out
/// sessions the denylist refuses).
async fn forget_devices(devices: &Devices, ended: &[Ended]) {
    for end in ended {
        if let Ended::Session(r) = end
            && let Some(subject) = r.subject.as_deref().filter(|s| !s.is_empty())
        {
            devices.recent.forget(&r.id);
            let Err(e) = devices.registry.remove(subject, &r.id).await else {
                continue;
            };
            tracing::warn!(target: "sealed_session", error = %e, "ended session not removed from the device registry");
        }
    }
}

/// Adds the session's headers to the handler's response (or replaces it with a 500 when
/// the session cannot be sent).
fn respond(
    cfg: &Config,
    span: &Span,
    (carrier, purpose): (&Carrier, &str),
    plan: Plan,
    headers: &mut HeaderMap,
    ended_elsewhere: bool,
) -> Result<(), Answer> {
    // Store-backed writes that keep the cookie as it is carry no token.
    let sends_token = plan.token.is_some();
    match (&plan.outcome, carrier, plan.token) {
        (Outcome::Clear, Carrier::Cookie { secure, incoming }, _) => {
            append_all(headers, cfg.cookie.clear(purpose, *secure, incoming));
        }
        (Outcome::Write, Carrier::Cookie { secure, incoming }, Some(token)) => {
            let mut set_cookies = SetCookies(headers);
            if let Err(e) = cfg.cookie.write_into(
                &mut set_cookies,
                purpose,
                &token,
                *secure,
                Some(plan.max_age),
                incoming,
            ) {
                return Err(not_saved(span, &e.to_string()));
            }
        }
        (Outcome::Write, Carrier::Bearer { .. }, Some(token)) => {
            let header = cfg.bearer.as_ref().map(BearerConfig::header);
            match (header, HeaderValue::try_from(token)) {
                (Some(h), Ok(v)) => {
                    headers.insert(h.clone(), v);
                }
                _ => return Err(not_saved(span, "the token is not a valid header value")),
            }
        }
        _ => {}
    }
    if plan.outcome == Outcome::Clear || plan.outcome == Outcome::Write && sends_token {
        no_store(headers, span);
    }
    if matches!(plan.outcome, Outcome::Write) && !ended_elsewhere {
        cfg.stats.sent(plan.is_new, span);
    }
    outcome(
        span,
        match plan.outcome {
            _ if ended_elsewhere => "ended_elsewhere",
            Outcome::Nothing => "unchanged",
            Outcome::Write if plan.is_new => "issued",
            Outcome::Write => "reissued",
            Outcome::Clear => "cleared",
        },
    );
    Ok(())
}

/// The answer when a session cannot be sent: nothing a browser would drop goes out, and the
/// previous cookie stays.
fn not_saved(span: &Span, msg: &str) -> Answer {
    outcome(span, "not_saved");
    tracing::error!(target: "sealed_session", error = %msg, "session not saved");
    Answer::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("session not saved: {msg}"),
    )
}

/// Revokes (token modes, with a denylist) or deletes (store mode) the sessions a request
/// ended; on failure, the response to send instead.
async fn end_sessions(cfg: &Config, span: &Span, ended: &[Ended]) -> Result<(), Answer> {
    match (&cfg.backend, &cfg.denylist) {
        (Backend::Token(_), Some(denylist)) => {
            for end in ended {
                let recorded = match end {
                    Ended::Session(revocation) => denylist.revoke_session(revocation).await,
                    Ended::Unconfirmed(id, until) => denylist.revoke(*id, *until).await,
                };
                if let Err(e) = recorded {
                    tracing::error!(target: "sealed_session", error = %e, "session not revoked");
                    return Err(unavailable(
                        span,
                        "the session could not be ended: the revocation was not recorded",
                    ));
                }
            }
        }
        (Backend::Store { store, .. }, _) => {
            for end in ended {
                if let Err(e) = store.delete(&end.id()).await {
                    tracing::error!(target: "sealed_session", error = %e, "ended session not deleted from the store");
                    return Err(unavailable(
                        span,
                        "the session could not be ended: the session store is unavailable",
                    ));
                }
            }
        }
        (Backend::Token(_), None) => {}
    }
    if let Some(devices) = &cfg.devices {
        forget_devices(devices, ended).await;
    }
    Ok(())
}

/// The answer to a request whose `Cookie` headers pass the configured bound: no cookie is
/// read and the handler does not run.
pub(super) fn header_too_large(stats: &Counters, span: &Span, len: usize, max: usize) -> Answer {
    stats.refused(&OpenError::CookieHeaderTooLarge { len, max }, span);
    outcome(span, "rejected");
    Answer::text(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the request's cookies are too large",
    )
}

/// Why chunk cookies that did not form a token were refused.
pub(super) fn chunks_refused(cookie: &CookieConfig, incoming: &Incoming) -> OpenError {
    let max = cookie.max_chunks;
    if incoming.chunks > max {
        OpenError::TooManyChunks {
            chunks: incoming.chunks,
            max,
        }
    } else {
        OpenError::Malformed("incomplete cookie chunks")
    }
}

/// What a response that sets or clears a session says to caches.
const NO_STORE: HeaderValue = HeaderValue::from_static("private, no-store");

/// Makes a response that carries a session token (or clears one) unstorable by any cache,
/// whatever the handler said: a shared cache would hand the token to the next visitor, and
/// renewal adds a token to responses of any route, behind the handler's back. A handler's
/// own `Cache-Control` is replaced, and that is logged.
fn no_store(headers: &mut HeaderMap, span: &Span) {
    // What would let a shared cache keep the response (or cannot be read to tell).
    let shared = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            let v = v.to_ascii_lowercase();
            v.contains("public") || v.contains("s-maxage")
        })
    });
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    if shared {
        tracing::warn!(
            target: "sealed_session",
            parent: span,
            "the handler's Cache-Control let shared caches store a response carrying a session token; sent with `private, no-store` instead"
        );
    }
}

fn unavailable(span: &Span, msg: &str) -> Answer {
    outcome(span, "unavailable");
    Answer::text(StatusCode::SERVICE_UNAVAILABLE, msg)
}

fn append_all(headers: &mut HeaderMap, values: Vec<HeaderValue>) {
    SetCookies(headers).extend(values);
}

/// A response's headers, taking `Set-Cookie` values.
struct SetCookies<'h>(&'h mut HeaderMap);

impl Extend<HeaderValue> for SetCookies<'_> {
    fn extend<I: IntoIterator<Item = HeaderValue>>(&mut self, values: I) {
        for v in values {
            self.0.append(SET_COOKIE, v);
        }
    }
}
