//! Before the handler, for a bound session: the DPoP proof a bearer request carries
//! (RFC 9449), checked against the token's `cnf.jkt`; a proof sent when a session is
//! issued binds it.

use http::StatusCode;
use tracing::Span;

use super::respond::outcome;
use super::{Answer, BindingOut, Engine};
use crate::binding::Dpop;
use crate::binding::ProofError;
use crate::binding::dpop::{Refusal, Request};
use crate::clock::Timestamp;
use crate::error::OpenError;
use crate::state::{Binding, SessionState};

/// How the request presented its session.
pub(super) struct Presented<'a> {
    /// The token that opened (`None`: the request brought none, or it was refused).
    pub(super) token: Option<&'a str>,
    /// It came as `Authorization: DPoP`.
    pub(super) dpop_scheme: bool,
}

impl Engine {
    /// Checks a bearer request under DPoP; binds `state` to the proof's key when the session
    /// is not bound yet and the request brings a proof. `Err`: the 401 (or 503) to send.
    pub(super) async fn check_dpop(
        &self,
        dpop: &Dpop,
        req: &Request<'_>,
        presented: Presented<'_>,
        state: &mut SessionState,
        now: Timestamp,
        span: &Span,
    ) -> Result<Option<Box<BindingOut>>, Answer> {
        let bound = match state.binding() {
            Some(Binding::Dpop { jkt }) => Some(*jkt),
            _ => None,
        };
        let has_proof = req.headers.contains_key("dpop");
        let refuse = |error: &str, description: &str| {
            outcome(span, "rejected");
            tracing::debug!(target: "sealed_session", parent: span, reason = description, "DPoP request refused");
            Answer::text(StatusCode::UNAUTHORIZED, description)
                .with_challenge(dpop.challenge(Some(error), description))
        };
        match (presented.token, bound) {
            (Some(_), Some(_)) if !presented.dpop_scheme => {
                return Err(refuse(
                    "invalid_token",
                    "the token is DPoP-bound: send it with the DPoP scheme and a proof",
                ));
            }
            (Some(_), None) if presented.dpop_scheme => {
                return Err(refuse("invalid_token", "the token is not DPoP-bound"));
            }
            (Some(_), None) if dpop.is_required() => {
                return Err(refuse("invalid_token", "a DPoP-bound token is required"));
            }
            (_, None) if !has_proof => return Ok(None),
            _ => {}
        }
        let verdict = match dpop.check(req, presented.token, now).await {
            Ok(v) => v,
            Err(refusal) => {
                if matches!(refusal, Refusal::Proof(_)) {
                    self.cfg.stats.refused(&OpenError::BadProof, span);
                }
                outcome(span, "rejected");
                return Err(refusal_answer(dpop, refusal, now));
            }
        };
        match bound {
            Some(jkt) if !constant_time_eq::constant_time_eq(&jkt, &verdict.jkt) => {
                self.cfg.stats.refused(&OpenError::BadProof, span);
                return Err(refuse(
                    "invalid_dpop_proof",
                    ProofError::OtherKey.description(),
                ));
            }
            Some(_) => {}
            // A session issued to this request is bound to the proof's key. An unbound token
            // sent with a proof stays as it was (its proof checked all the same).
            None if presented.token.is_none() => {
                state.set_binding(Some(Binding::Dpop { jkt: verdict.jkt }));
            }
            None => {}
        }
        let nonce = verdict.nonce_due.then(|| dpop.fresh_nonce(now)).flatten();
        if nonce.is_none() && verdict.pending.is_none() {
            return Ok(None);
        }
        Ok(Some(Box::new(BindingOut {
            dpop_nonce: nonce,
            pending_proof: verdict.pending,
        })))
    }
}

/// The answer for a refused proof: 401 `invalid_dpop_proof`; 401 `use_dpop_nonce` with a
/// fresh nonce; 503 when proofs cannot be checked for replay.
pub(super) fn refusal_answer(dpop: &Dpop, refusal: Refusal, now: Timestamp) -> Answer {
    match refusal {
        Refusal::Proof(e) => {
            let description = e.description();
            Answer::text(StatusCode::UNAUTHORIZED, description)
                .with_challenge(dpop.challenge(Some("invalid_dpop_proof"), description))
        }
        Refusal::UseNonce => {
            let description = "Resource server requires nonce in DPoP proof";
            Answer::text(StatusCode::UNAUTHORIZED, description)
                .with_challenge(dpop.challenge(Some("use_dpop_nonce"), description))
                .with_dpop_nonce(dpop.fresh_nonce(now))
        }
        Refusal::Unavailable => Answer::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "DPoP proofs cannot be checked for replay right now",
        ),
    }
}

/// The 401 that replaces a response that would issue an unbound token where DPoP is
/// required (no error code: the request brought no proof, RFC 6750 section 3.1).
pub(super) fn unbound_refused(dpop: &Dpop) -> Answer {
    Answer::text(
        StatusCode::UNAUTHORIZED,
        "a DPoP proof is required to issue a session",
    )
    .with_challenge(dpop.challenge(None, ""))
}

/// The 401 for a token refused when sent with the DPoP scheme.
pub(super) fn token_refused(dpop: &Dpop, e: &OpenError, span: &Span) -> Answer {
    let bearer = super::respond::unauthorized(e, span);
    let challenge = dpop.challenge(Some("invalid_token"), &bearer.body);
    Answer::text(bearer.status, bearer.body).with_challenge(challenge)
}
