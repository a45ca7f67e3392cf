//! The endpoint [`SealedSession`](super::SealedSession) makes: for each request, it reads the
//! token, opens it into the request's [`Session`], runs the handler, then hands the session
//! to [`respond`](super::respond) for the response's headers.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response, Result};
use tracing::Span;

use super::Config;
use super::respond::{Carrier, chunks_refused, header_too_large, internal, outcome, unauthorized};
use crate::cache::Hit;
use crate::clock::Timestamp;
use crate::codec::{Codec, SessionIdCodec};
use crate::denylist::Check;
use crate::error::OpenError;
use crate::session::{Arrival, Backend, Inner, Session, Shared};
use crate::state::{SessionId, SessionState};
use crate::stats::Stats;
use crate::store::Store;
use crate::transport::bearer::BearerIn;
use crate::transport::cookie::TokenBytes;

/// The endpoint made by [`SealedSession`](super::SealedSession).
pub struct SealedSessionEndpoint<E> {
    pub(super) inner: E,
    pub(super) cfg: Arc<Config>,
    /// The codec's name, or `"store"`: the `mode` of the request span.
    pub(super) mode: &'static str,
    /// What this endpoint's sessions share: how tokens are made and checked, the cookie
    /// names, and the open cache.
    pub(super) shared: Arc<Shared>,
}

impl<E> SealedSessionEndpoint<E> {
    /// What this endpoint (and the middleware it came from, with its clones) has done so
    /// far; see [`SealedSession::stats`](super::SealedSession::stats).
    pub fn stats(&self) -> Stats {
        self.cfg
            .stats
            .snapshot(self.cfg.denylist.as_deref().map(|d| &*d.inner))
    }
}

/// A token as the request carried it.
enum Token<'r> {
    Absent,
    Bytes(TokenBytes<'r>),
    /// Cookie chunks that do not form a token.
    Refused(OpenError),
}

fn is_https(req: &Request, trust_proxy: bool) -> bool {
    if trust_proxy
        && let Some(proto) = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
    {
        return proto
            .split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    }
    req.scheme().as_str() == "https" || req.uri().scheme_str() == Some("https")
}

impl<E: Endpoint> Endpoint for SealedSessionEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> Result<Response> {
        let span = self.span();
        let now = self.cfg.clock.now();
        let (carrier, token) = match self.read(&req, &span) {
            Ok(read) => read,
            Err(answer) => return Ok(*answer),
        };
        let secure = carrier.is_secure();
        let purpose: &str = self.shared.purpose(secure);
        let opened = match (token, &self.cfg.backend) {
            (Token::Bytes(t), Backend::Token(codec)) => {
                self.open_token(&**codec, &t, purpose, secure, now)
            }
            (Token::Bytes(t), Backend::Store { ids, store }) => {
                self.open_stored(ids, &**store, &t, purpose, secure, now)
                    .await
            }
            (Token::Absent, _) => self.fresh(now, None),
            (Token::Refused(e), _) => self.fresh(now, Some(e)),
        };
        let (state, arrival) = opened.inspect_err(|_| outcome(&span, "unavailable"))?;
        if let Some(e) = &arrival.refused {
            self.cfg.stats.refused(e, &span);
            if matches!(carrier, Carrier::Bearer) {
                return Ok(unauthorized(e, &span));
            }
        }
        if !arrival.is_new {
            tracing::trace!(
                target: "sealed_session",
                parent: &span,
                reissue = arrival.reissue,
                stale_key = arrival.stale_key,
                "session opened"
            );
        }
        let inner = Inner::new(self.shared.clone(), state, now, secure, &arrival);
        let session = Session::new(inner);
        req.extensions_mut().insert(session.clone());
        // Changes are written even when the handler fails.
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        let refused = arrival.refused.is_some();
        let how = (&carrier, purpose);
        super::respond::finish(&self.cfg, &span, how, &session, refused, &mut resp).await;
        Ok(resp)
    }
}

impl<E> SealedSessionEndpoint<E> {
    /// One span per request, the parent of the middleware's events. Disabled, the span and
    /// its records cost a level check each.
    fn span(&self) -> Span {
        tracing::debug_span!(
            target: "sealed_session",
            "sealed_session",
            mode = self.mode,
            transport = if self.cfg.bearer.is_some() { "bearer" } else { "cookie" },
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        )
    }

    /// How the request carries its session, and the token; or the answer when the request
    /// is refused before its handler (a bad bearer header, oversized cookies).
    fn read<'r>(
        &self,
        req: &'r Request,
        span: &Span,
    ) -> std::result::Result<(Carrier, Token<'r>), Box<Response>> {
        let cfg = &*self.cfg;
        if let Some(b) = &cfg.bearer {
            let token = match b.read(req.headers()) {
                BearerIn::Absent => Token::Absent,
                BearerIn::Token(t) => Token::Bytes(TokenBytes::Borrowed(t.as_bytes())),
                BearerIn::Refused(e) => {
                    cfg.stats.refused(&e, span);
                    return Err(Box::new(unauthorized(&e, span)));
                }
            };
            return Ok((Carrier::Bearer, token));
        }
        let secure = cfg
            .cookie
            .is_secure(is_https(req, cfg.cookie.trusts_proxy()));
        let purpose = self.shared.purpose(secure);
        let max = cfg.limits.cookie_header_len;
        let (incoming, token) = match cfg.cookie.scan(req.headers(), purpose, max) {
            Ok(scanned) => scanned,
            Err(len) => return Err(Box::new(header_too_large(&cfg.stats, span, len, max))),
        };
        let token = match token {
            Some(t) => Token::Bytes(t),
            // Chunks that do not form a sequence are refused like a bad token.
            None if incoming.any() => Token::Refused(chunks_refused(&cfg.cookie, &incoming)),
            None => Token::Absent,
        };
        Ok((Carrier::Cookie { secure, incoming }, token))
    }

    /// A new session for a request that brought no token or one that was `refused`.
    fn fresh(&self, now: Timestamp, refused: Option<OpenError>) -> Result<(SessionState, Arrival)> {
        let id = SessionId::generate().map_err(internal)?;
        let state = SessionState::new(id, now, self.cfg.policy.expires_at(now));
        let arrival = Arrival {
            is_new: true,
            reissue: false,
            stale_key: false,
            refused,
            unconfirmed: None,
            cached_as: None,
        };
        Ok((state, arrival))
    }

    /// Opens the token a request carried (its bytes as they came: a cookie is not checked to
    /// be text before this) with a token codec; a fresh session when it is refused. `secure`
    /// says which of the endpoint's two purposes `purpose` is (the open cache keys on it).
    fn open_token(
        &self,
        codec: &dyn Codec,
        token: &[u8],
        purpose: &str,
        secure: bool,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival)> {
        if let Err(e) = self.cfg.limits.check_token(token) {
            return self.fresh(now, Some(e));
        }
        let policy = &self.cfg.policy;
        // The open cache compares bytes; anything else needs text, and a token is base64.
        let cache = self.shared.cache.as_ref().map(|c| (c, c.hash(token)));
        // A token kept for its bytes, within the span its own times allow.
        let cached = cache
            .and_then(|(c, hash)| c.get(token, hash, secure))
            .filter(|hit| hit.validity.contains(now));
        let opened = match cached {
            // The same bytes opened before: only what depends on the time is checked again.
            Some(hit) => {
                self.cfg.stats.opened(true);
                policy
                    .check(&hit.state, now)
                    .map(|f| (hit.state, f.renew, hit.stale_key))
            }
            None => {
                let Ok(token) = std::str::from_utf8(token) else {
                    return self.fresh(now, Some(OpenError::Malformed("token is not text")));
                };
                let limits = &self.cfg.limits;
                codec
                    .open_checked(token, purpose.as_bytes(), policy, now)
                    .and_then(|(opened, f)| {
                        let state = opened.state();
                        let heap = state.check_data(limits.data_len, limits.json_depth)?;
                        let stale_key = opened.needs_reissue();
                        let validity = opened.validity();
                        let state = opened.into_state();
                        self.cfg.stats.opened(false);
                        if let Some((cache, hash)) = cache {
                            let hit = Hit {
                                state: state.clone(),
                                stale_key,
                                validity,
                            };
                            // Checked just above, with the limits the cache was built with.
                            cache.insert_checked(token, hash, secure, hit, 0, heap);
                        }
                        Ok((state, f.renew, stale_key))
                    })
            }
        };
        self.admitted(opened, cache.map(|(_, hash)| hash), now)
    }

    /// Opens the signed session id a request carried and loads its session from the store;
    /// a fresh session when the id is refused or its session is not found. The open cache
    /// keeps the ids that verified (the session itself always comes from the store).
    async fn open_stored(
        &self,
        ids: &SessionIdCodec,
        store: &dyn Store,
        token: &[u8],
        purpose: &str,
        secure: bool,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival)> {
        if let Err(e) = self.cfg.limits.check_token(token) {
            return self.fresh(now, Some(e));
        }
        let cache = self.shared.cache.as_ref().map(|c| (c, c.hash(token)));
        let verified = match cache.and_then(|(c, hash)| c.get(token, hash, secure)) {
            Some(hit) => Ok((hit.state.id(), hit.stale_key)),
            None => {
                let Ok(token) = std::str::from_utf8(token) else {
                    return self.fresh(now, Some(OpenError::Malformed("token is not text")));
                };
                let verified = ids.verify(token, purpose.as_bytes());
                if let (Some((cache, hash)), Ok((id, stale_key))) = (cache, &verified) {
                    cache.insert_id(token, hash, secure, *id, *stale_key);
                }
                verified
            }
        };
        let opened = match verified {
            Err(e) => Err(e),
            Ok((id, stale)) => {
                // A store that cannot answer is not a reason to start a new session.
                let record = store.load(&id).await.map_err(|e| {
                    tracing::error!(target: "sealed_session", error = %e, "session store unavailable");
                    poem::Error::new(e, StatusCode::SERVICE_UNAVAILABLE)
                })?;
                record
                    .ok_or(OpenError::NotFound)
                    .and_then(|r| SessionState::decode(&r))
                    .and_then(|loaded| {
                        if loaded.id() != id {
                            return Err(OpenError::Malformed("store record of another session"));
                        }
                        let f = self.cfg.policy.check(&loaded, now)?;
                        self.cfg.stats.opened(false);
                        Ok((loaded, f.renew, stale))
                    })
            }
        };
        self.admitted(opened, None, now)
    }

    /// The session a token opened to, once the denylist (if any) allows it; a fresh session
    /// when it was refused. `cached_hash`: where the open cache keeps the token.
    fn admitted(
        &self,
        opened: std::result::Result<(SessionState, bool, bool), OpenError>,
        cached_hash: Option<u64>,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival)> {
        let mut unconfirmed = None;
        let opened = match (opened, &self.cfg.denylist) {
            (Ok(opened), Some(counted)) => {
                let denylist = &*counted.inner;
                let state = &opened.0;
                match denylist.check_at(&state.id(), state.subject(), state.issued_at(), now) {
                    Check::Allowed => Ok(opened),
                    Check::Revoked(_) => {
                        unconfirmed = denylist.pending(&state.id()).map(|u| (state.id(), u));
                        Err(OpenError::Revoked)
                    }
                    Check::Unavailable => {
                        tracing::error!(target: "sealed_session", "revocation list unavailable; refusing sessions");
                        return Err(poem::Error::from_string(
                            "sessions cannot be checked for revocation right now",
                            StatusCode::SERVICE_UNAVAILABLE,
                        ));
                    }
                }
            }
            (opened, _) => opened,
        };
        match opened {
            Ok((mut state, renew, stale_key)) => {
                // The deadline the policy enforces, so that the handler sees it and a
                // re-issued token (and its Max-Age, store TTL, denylist entry) carries it.
                let capped = self.cfg.policy.absolute_deadline(&state);
                state.set_expires_at(capped);
                let arrival = Arrival {
                    is_new: false,
                    reissue: renew || stale_key,
                    stale_key,
                    refused: None,
                    unconfirmed: None,
                    cached_as: cached_hash.map(|hash| (hash, state.id())),
                };
                Ok((state, arrival))
            }
            Err(e) => {
                let (state, mut arrival) = self.fresh(now, Some(e))?;
                arrival.unconfirmed = unconfirmed;
                Ok((state, arrival))
            }
        }
    }
}
