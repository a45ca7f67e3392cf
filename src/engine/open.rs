//! Before the handler: how the request carries its session, and the token opened (with the
//! open cache, the codec or the store, and the denylist) into the session's state.

use http::StatusCode;
use http::header::HeaderMap;
use tracing::Span;

use super::respond::{Carrier, chunks_refused, header_too_large, internal, unauthorized};
use super::{Answer, Engine};
use crate::cache::Hit;
use crate::clock::Timestamp;
use crate::codec::{Codec, SessionIdCodec};
use crate::denylist::Check;
use crate::error::OpenError;
use crate::session::Arrival;
use crate::state::{SessionId, SessionState};
use crate::store::Store;
use crate::transport::bearer::BearerIn;
use crate::transport::cookie::TokenBytes;

/// A token as the request carried it.
pub(super) enum Token<'r> {
    Absent,
    /// Within the token bound ([`Limits::token_len`](crate::Limits::token_len)).
    Bytes(TokenBytes<'r>),
    /// Over the token bound, or cookie chunks that do not form a token.
    Refused(OpenError),
}

impl<'r> Token<'r> {
    /// `bytes`, or their refusal when they pass the token bound: checked here once, before
    /// any work on them.
    fn bounded(bytes: TokenBytes<'r>, limits: &crate::Limits) -> Token<'r> {
        match limits.check_token(&bytes) {
            Ok(()) => Token::Bytes(bytes),
            Err(e) => Token::Refused(e),
        }
    }
}

/// A token's bytes as text (a token is base64), or why it is refused.
fn text(token: &[u8]) -> Result<&str, OpenError> {
    std::str::from_utf8(token).map_err(|_| OpenError::Malformed("token is not text"))
}

/// Whether the request came over HTTPS: as the connection says, or, behind a trusted
/// proxy, as the first `X-Forwarded-Proto` value says.
pub(super) fn is_https(headers: &HeaderMap, connection_https: bool, trust_proxy: bool) -> bool {
    if trust_proxy
        && let Some(proto) = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
    {
        return proto
            .split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    }
    connection_https
}

impl Engine {
    /// How the request carries its session, and the token; or the answer when the request
    /// is refused before its handler (a bad bearer header, oversized cookies).
    pub(super) fn read<'r>(
        &self,
        headers: &'r HeaderMap,
        connection_https: bool,
        span: &Span,
    ) -> Result<(Carrier, Token<'r>), Answer> {
        let cfg = &*self.cfg;
        if let Some(b) = &cfg.bearer {
            let bounded =
                |t: &'r str| Token::bounded(TokenBytes::Borrowed(t.as_bytes()), &cfg.limits);
            let (token, dpop_scheme) = match b.read(headers) {
                BearerIn::Absent => (Token::Absent, false),
                BearerIn::Token(t) => (bounded(t), false),
                // The DPoP scheme is another scheme unless DPoP is on.
                BearerIn::Dpop(t) if self.dpop_on() => (bounded(t), true),
                BearerIn::Dpop(_) => (Token::Absent, false),
                BearerIn::Refused(e) => {
                    cfg.stats.refused(&e, span);
                    return Err(unauthorized(&e, span));
                }
            };
            return Ok((Carrier::Bearer { dpop_scheme }, token));
        }
        let https = is_https(headers, connection_https, cfg.cookie.trusts_proxy());
        let secure = cfg.cookie.is_secure(https);
        let purpose = self.shared.purpose(secure);
        let max = cfg.limits.cookie_header_len;
        let (incoming, token) = match cfg.cookie.scan(headers, purpose, max) {
            Ok(scanned) => scanned,
            Err(len) => return Err(header_too_large(&cfg.stats, span, len, max)),
        };
        let token = match token {
            Some(t) => Token::bounded(t, &cfg.limits),
            // Chunks that do not form a sequence are refused like a bad token.
            None if incoming.any() => Token::Refused(chunks_refused(&cfg.cookie, &incoming)),
            None => Token::Absent,
        };
        Ok((Carrier::Cookie { secure, incoming }, token))
    }

    /// Whether DPoP is on.
    fn dpop_on(&self) -> bool {
        #[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
        return self.cfg.dpop.is_some();
        #[cfg(not(any(feature = "jwt", feature = "jwt-rust-crypto")))]
        false
    }

    /// A new session for a request that brought no token or one that was `refused`.
    pub(super) fn fresh(
        &self,
        now: Timestamp,
        refused: Option<OpenError>,
    ) -> Result<(SessionState, Arrival), Answer> {
        let id = SessionId::generate().map_err(internal)?;
        let state = SessionState::new(id, now, self.cfg.policy.expires_at(now));
        let arrival = Arrival {
            is_new: true,
            reissue: false,
            stale_key: false,
            refused,
            unconfirmed: None,
            cached_as: None,
            loaded_record: None,
            bound: None,
            stands_in: false,
        };
        Ok((state, arrival))
    }

    /// Opens the token a request carried (its bytes as they came: a cookie is not checked to
    /// be text before this) with a token codec; a fresh session when it is refused. `secure`
    /// says which of the endpoint's two purposes `purpose` is (the open cache keys on it).
    pub(super) fn open_token(
        &self,
        codec: &dyn Codec,
        token: &[u8],
        purpose: &str,
        secure: bool,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival), Answer> {
        let policy = &self.cfg.policy;
        // The open cache compares bytes; anything else needs text, and a token is base64.
        let cache = self.shared.cache.as_ref().map(|c| (c, c.hash(token)));
        // A token kept for its bytes, within the span its own times allow.
        let cached = cache
            .and_then(|(c, hash)| c.get(token, hash, secure))
            .filter(|hit| hit.validity.contains(now));
        let bound = cached.as_ref().and_then(|hit| hit.bound);
        let opened = match cached {
            // The same bytes opened before: only what depends on the time is checked again.
            Some(hit) => {
                self.cfg.stats.opened(true);
                policy
                    .check(&hit.state, now)
                    .map(|f| (hit.state, f.renew, hit.stale_key))
            }
            None => {
                let token = match text(token) {
                    Ok(token) => token,
                    Err(e) => return self.fresh(now, Some(e)),
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
                                bound: None,
                            };
                            // Checked just above, with the limits the cache was built with.
                            cache.insert_checked(token, hash, secure, hit, 0, heap);
                        }
                        Ok((state, f.renew, stale_key))
                    })
            }
        };
        let (state, mut arrival) = self.admitted(opened, cache.map(|(_, hash)| hash), now)?;
        if !arrival.is_new {
            arrival.bound = bound;
        }
        Ok((state, arrival))
    }

    /// Opens the signed session id a request carried and loads its session from the store;
    /// a fresh session when the id is refused or its session is not found. The open cache
    /// keeps the ids that verified (the session itself always comes from the store).
    pub(super) async fn open_stored(
        &self,
        ids: &SessionIdCodec,
        store: &dyn Store,
        token: &[u8],
        purpose: &str,
        secure: bool,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival), Answer> {
        let cache = self.shared.cache.as_ref().map(|c| (c, c.hash(token)));
        let verified = match cache.and_then(|(c, hash)| c.get(token, hash, secure)) {
            Some(hit) => Ok((hit.state.id(), hit.stale_key)),
            None => {
                let token = match text(token) {
                    Ok(token) => token,
                    Err(e) => return self.fresh(now, Some(e)),
                };
                let verified = ids.verify(token, purpose.as_bytes());
                if let (Some((cache, hash)), Ok((id, stale_key))) = (cache, &verified) {
                    cache.insert_id(token, hash, secure, *id, *stale_key);
                }
                verified
            }
        };
        let mut loaded = None;
        let opened = match verified {
            Err(e) => Err(e),
            Ok((id, stale)) => {
                // A store that cannot answer is not a reason to start a new session.
                loaded = store.load(&id).await.map_err(|e| {
                    tracing::error!(target: "sealed_session", error = %e, "session store unavailable");
                    // The cause goes to the log, not to the client (it may name the store).
                    Answer::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "sessions cannot be loaded right now: the session store is unavailable",
                    )
                })?;
                loaded
                    .as_deref()
                    .ok_or(OpenError::NotFound)
                    .and_then(SessionState::decode)
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
        let (state, mut arrival) = self.admitted(opened, None, now)?;
        // What a write of this session must find in the store, so that no concurrent
        // request's update is lost (see `crate::store::write`).
        if !arrival.is_new {
            arrival.loaded_record = loaded;
        }
        Ok((state, arrival))
    }

    /// The session a token opened to, once the denylist (if any) allows it; a fresh session
    /// when it was refused. `cached_hash`: where the open cache keeps the token.
    fn admitted(
        &self,
        opened: std::result::Result<(SessionState, bool, bool), OpenError>,
        cached_hash: Option<u64>,
        now: Timestamp,
    ) -> Result<(SessionState, Arrival), Answer> {
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
                        return Err(Answer::text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "sessions cannot be checked for revocation right now",
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
                    loaded_record: None,
                    bound: None,
                    stands_in: false,
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
