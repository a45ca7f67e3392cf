//! Before the handler, for cookie sessions with device binding (DBSC): a device-bound
//! session needs its bound cookie; the registration and refresh paths are answered here
//! (see [`crate::binding::dbsc`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, StatusCode};
use tracing::Span;

use super::respond::outcome;
use super::{Answer, Engine, RequestHead};
use crate::binding::dbsc::{DeviceBinding, Endpoint, sf_string_or_bare};
use crate::clock::Timestamp;
use crate::error::OpenError;
use crate::session::Arrival;
use crate::state::{Binding, DeviceKey, SessionState};

const RESPONSE: &str = "secure-session-response";
const SESSION_ID: &str = "sec-secure-session-id";
const CHALLENGE: HeaderName = HeaderName::from_static("secure-session-challenge");

/// What the device check reads of a request.
pub(super) struct Request<'a> {
    pub(super) head: RequestHead<'a>,
    /// The session cookie is the Secure one (its name, and the bound cookie's).
    pub(super) secure: bool,
    pub(super) now: Timestamp,
}

/// The value of the cookie whose `name=` `finder` looks for in the request's `Cookie`
/// headers (a read's Cookie header is mostly the session token).
fn cookie<'h>(headers: &'h HeaderMap, finder: &memchr::memmem::Finder<'_>) -> Option<&'h [u8]> {
    let prefix = finder.needle();
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        let bytes = v.as_bytes();
        finder.find_iter(bytes).find_map(|at| {
            // At the start of a pair, not inside another cookie's name or value.
            let starts = at == 0 || matches!(bytes.get(at - 1), Some(b' ' | b';'));
            let rest = bytes.get(at + prefix.len()..)?;
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            starts.then(|| rest.get(..end).unwrap_or(rest).trim_ascii())
        })
    })
}

/// A header's value as DBSC sends it: an sf-string, or bare.
fn dbsc_header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    sf_string_or_bare(headers.get(name)?.to_str().ok()?)
}

impl Engine {
    /// The bound cookie's name: the session cookie's, with `_bound`.
    fn bound_name(&self, secure: bool) -> &str {
        let name = self.bound_finder(secure).needle();
        let name = name.strip_suffix(b"=").unwrap_or(name);
        // Made from the cookie name, a `String`.
        std::str::from_utf8(name).unwrap_or_default()
    }

    /// Finds `{bound cookie name}=`; made once per engine.
    fn bound_finder(&self, secure: bool) -> &memchr::memmem::Finder<'static> {
        let [plain, secure_one] = &*self.bound_prefixes;
        if secure { secure_one } else { plain }
    }

    /// A device-bound session without a valid bound cookie is refused (a fresh session);
    /// the DBSC paths get the engine's own answer; a path that requires binding refuses a
    /// signed-in session that is not bound (403). Returns the request's arrival (replaced
    /// when refused) and the engine's own answer, if any.
    pub(super) async fn check_device(
        &self,
        dbsc: &DeviceBinding,
        req: &Request<'_>,
        state: &mut SessionState,
        mut arrival: Arrival,
        span: &Span,
    ) -> Result<(Arrival, Option<Answer>), Answer> {
        let head = &req.head;
        let path = head.uri.path();
        if let Some(endpoint) = dbsc.endpoint(head.method, path) {
            outcome(span, "dbsc");
            let answer = match endpoint {
                Endpoint::Registration => {
                    self.register_device(dbsc, req, state, &mut arrival).await
                }
                Endpoint::Refresh => self.refresh_device(dbsc, req, state, &arrival).await,
            };
            return Ok((arrival, Some(answer)));
        }
        let key = match state.binding() {
            Some(Binding::Device(key)) if !arrival.is_new => Some(key.clone()),
            _ => None,
        };
        if let Some(key) = key {
            let value = cookie(head.headers, self.bound_finder(req.secure));
            if !value.is_some_and(|v| dbsc.bound_valid(v, key.id(), req.now)) {
                let e = OpenError::BadProof;
                self.cfg.stats.refused(&e, span);
                let (fresh, refused) = self.fresh(req.now, Some(e))?;
                *state = fresh;
                return Ok((refused, None));
            }
            return Ok((arrival, None));
        }
        if dbsc.requires(path) && !arrival.is_new && state.subject().is_some() {
            outcome(span, "rejected");
            return Err(Answer::text(
                StatusCode::FORBIDDEN,
                "this page needs a device-bound session: sign in again from a browser that \
                 supports Device Bound Session Credentials",
            ));
        }
        Ok((arrival, None))
    }

    async fn register_device(
        &self,
        dbsc: &DeviceBinding,
        req: &Request<'_>,
        state: &mut SessionState,
        arrival: &mut Arrival,
    ) -> Answer {
        if arrival.is_new {
            return Answer::text(StatusCode::UNAUTHORIZED, "no session to bind");
        }
        let proof = dbsc_header(req.head.headers, RESPONSE);
        let key = match dbsc.register(proof, &state.id(), req.now).await {
            Ok(key) => key,
            Err(e) => {
                tracing::info!(target: "sealed_session", error = %e, "DBSC registration refused");
                self.cfg.stats.refused(&OpenError::BadProof, &Span::none());
                return Answer::text(StatusCode::BAD_REQUEST, e.description());
            }
        };
        let bid = *key.id();
        state.set_binding(Some(Binding::Device(std::sync::Arc::new(key))));
        // The key travels in the session token: send it again.
        arrival.reissue = true;
        let name = self.bound_name(req.secure);
        let json = dbsc.instructions(&bid, name, &self.cfg.cookie.attribute_text(req.secure));
        Answer::json(StatusCode::OK, json)
            .with_header(http::header::SET_COOKIE, self.bound_cookie(dbsc, &bid, req))
            .with_header(CHALLENGE, dbsc.challenge_header(&state.id(), &bid, req.now))
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
        let id = state.id();
        let challenge = || dbsc.challenge_header(&id, key.id(), req.now);
        let Some(proof) = dbsc_header(req.head.headers, RESPONSE) else {
            return Answer::text(StatusCode::FORBIDDEN, "a proof is needed")
                .with_header(CHALLENGE, challenge());
        };
        if let Err(e) = dbsc.refresh(proof, &key, &id, req.now).await {
            tracing::info!(target: "sealed_session", error = %e, "DBSC refresh refused");
            self.cfg.stats.refused(&OpenError::BadProof, &Span::none());
            return Answer::text(StatusCode::FORBIDDEN, e.description())
                .with_header(CHALLENGE, challenge());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_cookie_is_found_by_its_whole_name_only() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(http::header::COOKIE, v.parse().unwrap());
            }
            h
        };
        let p = memchr::memmem::Finder::new("sid_bound=");
        let find = |values: &[&str]| cookie(&headers(values), &p).map(|v| v.to_vec());
        assert_eq!(find(&["sid=x; sid_bound=abc"]), Some(b"abc".to_vec()));
        assert_eq!(find(&["sid_bound=abc;sid=x"]), Some(b"abc".to_vec()));
        assert_eq!(find(&["sid=x", "sid_bound= abc "]), Some(b"abc".to_vec()));
        assert_eq!(find(&["xsid_bound=abc; sid=x"]), None);
        assert_eq!(find(&["sid=sid_bound=abc"]), None);
        assert_eq!(
            find(&["sid=x; xsid_bound=1; sid_bound=2"]),
            Some(b"2".to_vec())
        );
        assert_eq!(find(&["sid=x"]), None);
        assert_eq!(find(&["sid_bound="]), Some(Vec::new()));
    }
}
