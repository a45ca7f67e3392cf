//! Before the handler, for cookie sessions with device binding (DBSC): a device-bound
//! session needs its bound cookie; the registration and refresh paths are answered here
//! (see [`crate::binding::dbsc`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, StatusCode};
use tracing::Span;

use super::respond::outcome;
use super::{Answer, Engine, RequestHead};
use crate::binding::ProofError;
use crate::binding::dbsc::{DeviceBinding, Endpoint, sf_string_or_bare};
use crate::clock::Timestamp;
use crate::error::OpenError;
use crate::session::Arrival;
use crate::state::{Binding, DeviceKey, SessionState};
use crate::transport::cookie::cookie_values;

const RESPONSE: &str = "secure-session-response";
const SESSION_ID: &str = "sec-secure-session-id";
const CHALLENGE: HeaderName = HeaderName::from_static("secure-session-challenge");

/// What the device check leaves for the rest of the request.
pub(super) struct DeviceOut {
    pub(super) arrival: Arrival,
    /// The engine's own answer (a DBSC path).
    pub(super) own: Option<Answer>,
    /// The session was just bound: renew its id.
    pub(super) rebind: bool,
}

/// What the device check reads of a request.
pub(super) struct Request<'a> {
    pub(super) head: RequestHead<'a>,
    /// The session cookie is the Secure one (its name, and the bound cookie's).
    pub(super) secure: bool,
    pub(super) now: Timestamp,
}

/// A header's value as DBSC sends it: an sf-string, or bare.
fn dbsc_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    sf_string_or_bare(headers.get(name)?.to_str().ok()?)
}

impl Engine {
    /// The bound cookie's name: the session cookie's, with `_bound`.
    fn bound_name(&self, secure: bool) -> &str {
        let [plain, secure_one] = &*self.bound_names;
        if secure { secure_one } else { plain }
    }

    /// A device-bound session without a valid bound cookie is not served to this request
    /// (the handler gets an empty session; the session cookie is kept, for the browser's
    /// refresh); the DBSC paths get the engine's own answer; a path that requires binding
    /// refuses a signed-in session that is not bound (403).
    pub(super) async fn check_device(
        &self,
        dbsc: &DeviceBinding,
        req: &Request<'_>,
        state: &mut SessionState,
        mut arrival: Arrival,
        span: &Span,
    ) -> Result<DeviceOut, Answer> {
        let head = &req.head;
        let path = head.uri.path();
        if let Some(endpoint) = dbsc.endpoint(head.method, path) {
            outcome(span, "dbsc");
            let (own, rebind) = match endpoint {
                Endpoint::Registration => {
                    self.register_device(dbsc, req, state, &mut arrival).await
                }
                Endpoint::Refresh => (self.refresh_device(dbsc, req, state, &arrival).await, false),
            };
            return Ok(DeviceOut {
                arrival,
                own: Some(own),
                rebind,
            });
        }
        // The DBSC session's identifier (a copy: no reference count touched per request).
        let bid = match state.binding() {
            Some(Binding::Device(key)) if !arrival.is_new => Some(*key.id()),
            _ => None,
        };
        let served = |arrival| DeviceOut {
            arrival,
            own: None,
            rebind: false,
        };
        if let Some(bid) = bid {
            let name = self.bound_name(req.secure).as_bytes();
            if !cookie_values(head.headers, name)
                .any(|v| self.bound_verifies(dbsc, v, &bid, &mut arrival, req.now))
            {
                // Not this request's session. Not `refused` either: that would clear the
                // session cookie, and a browser that sends the request before it could
                // refresh (or after a failed refresh) would be signed out for good.
                self.cfg.stats.refused(&OpenError::BadProof, span);
                let (fresh, mut anonymous) = self.fresh(req.now, None)?;
                anonymous.stands_in = true;
                *state = fresh;
                return Ok(served(anonymous));
            }
            return Ok(served(arrival));
        }
        if dbsc.requires(path) && !arrival.is_new && state.subject().is_some() {
            outcome(span, "rejected");
            return Err(Answer::text(
                StatusCode::FORBIDDEN,
                "this page needs a device-bound session: sign in again from a browser that \
                 supports Device Bound Session Credentials",
            ));
        }
        Ok(served(arrival))
    }

    /// Whether `value` is a valid bound cookie of the DBSC session `bid`: the one that
    /// verified last for this session, kept with its token by the open cache (same bytes,
    /// not expired), or one whose MAC verifies now (then kept for the next requests).
    fn bound_verifies(
        &self,
        dbsc: &DeviceBinding,
        value: &[u8],
        bid: &[u8; 16],
        arrival: &mut Arrival,
        now: Timestamp,
    ) -> bool {
        if arrival.bound.is_some_and(|b| b.admits(value, bid, now)) {
            return true;
        }
        let Some(verified) = dbsc.verify_bound(value, bid, now) else {
            return false;
        };
        arrival.bound = Some(verified);
        if let (Some(cache), Some((hash, id))) = (&self.shared.cache, arrival.cached_as) {
            cache.remember_bound(hash, id, verified);
        }
        true
    }

    /// A refused DBSC proof, logged and counted: its status, `otherwise` unless it could not
    /// be recorded as used (503: the client tries again later).
    fn proof_refused(&self, step: &str, e: &ProofError, otherwise: StatusCode) -> StatusCode {
        tracing::info!(target: "sealed_session", step, error = %e, "DBSC proof refused");
        self.cfg.stats.refused(&OpenError::BadProof, &Span::none());
        match e {
            ProofError::Unrecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => otherwise,
        }
    }

    /// A registration: the answer, and whether the session was bound (its id is then
    /// renewed, so that a token issued before the binding stops working).
    async fn register_device(
        &self,
        dbsc: &DeviceBinding,
        req: &Request<'_>,
        state: &mut SessionState,
        arrival: &mut Arrival,
    ) -> (Answer, bool) {
        if arrival.is_new {
            return (
                Answer::text(StatusCode::UNAUTHORIZED, "no session to bind"),
                false,
            );
        }
        // Once bound, never bound to another key: a thief holding the session cookie could
        // otherwise register a key of its own.
        if state.binding().is_some() {
            return (
                Answer::text(StatusCode::BAD_REQUEST, "the session is bound already"),
                false,
            );
        }
        let proof = dbsc_header(req.head.headers, RESPONSE);
        let key = match dbsc.register(proof, &state.id(), req.now).await {
            Ok(key) => key,
            Err(e) => {
                let status = self.proof_refused("registration", &e, StatusCode::BAD_REQUEST);
                return (Answer::text(status, e.description()), false);
            }
        };
        let bid = *key.id();
        state.set_binding(Some(Binding::Device(std::sync::Arc::new(key))));
        // The key travels in the session token: send it again.
        arrival.reissue = true;
        let name = self.bound_name(req.secure);
        let json = dbsc.instructions(&bid, name, &self.cfg.cookie.attribute_text(req.secure));
        let answer = Answer::json(StatusCode::OK, json)
            .with_header(http::header::SET_COOKIE, self.bound_cookie(dbsc, &bid, req))
            .with_header(CHALLENGE, dbsc.challenge_header(&bid, req.now));
        (answer, true)
    }

    async fn refresh_device(
        &self,
        dbsc: &DeviceBinding,
        req: &Request<'_>,
        state: &SessionState,
        arrival: &Arrival,
    ) -> Answer {
        let key: Option<std::sync::Arc<DeviceKey>> = match state.binding() {
            Some(Binding::Device(k)) if !arrival.is_new => Some(k.clone()),
            _ => None,
        };
        let sent_id = dbsc_header(req.head.headers, SESSION_ID);
        let Some(key) = key.filter(|k| sent_id == Some(URL_SAFE_NO_PAD.encode(k.id()).as_str()))
        else {
            // Not a session of ours (ended, revoked, or another): the browser ends it.
            return Answer::text(StatusCode::UNAUTHORIZED, "no such device-bound session");
        };
        let challenge = || dbsc.challenge_header(key.id(), req.now);
        let Some(proof) = dbsc_header(req.head.headers, RESPONSE) else {
            return Answer::text(StatusCode::FORBIDDEN, "a proof is needed")
                .with_header(CHALLENGE, challenge());
        };
        if let Err(e) = dbsc.refresh(proof, &key, req.now).await {
            // The draft: a browser keeps its session and tries later after a 5xx.
            let status = self.proof_refused("refresh", &e, StatusCode::FORBIDDEN);
            return Answer::text(status, e.description()).with_header(CHALLENGE, challenge());
        }
        Answer::text(StatusCode::OK, String::new())
            .with_header(
                http::header::SET_COOKIE,
                self.bound_cookie(dbsc, key.id(), req),
            )
            .with_header(CHALLENGE, challenge())
    }

    fn bound_cookie(
        &self,
        dbsc: &DeviceBinding,
        bid: &[u8; 16],
        req: &Request<'_>,
    ) -> Option<http::HeaderValue> {
        let value = dbsc.bound_value(bid, req.now);
        self.cfg.cookie.companion(
            self.bound_name(req.secure),
            &value,
            req.secure,
            dbsc.lifetime(),
        )
    }
}
