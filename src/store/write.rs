//! How the middleware writes a store-backed session without losing the update of a
//! concurrent request of the same session, and without bringing back a session another
//! request ended.
//!
//! A session the request loaded is written with [`Store::update`], a compare-and-set against
//! the record it loaded. When another request wrote the session in between, this request's
//! own changes (from what it loaded to what it has now) are applied to the record the store
//! holds now ([`SessionState::merged`]) and the write is tried again against that record.
//! When the record is gone (a logout, `regenerate`, expiry), nothing is written.

use std::time::Duration;

use super::{Store, StoreError, Update};
use crate::clock::Timestamp;
use crate::error::SealError;
use crate::state::{SessionId, SessionState};

/// How many times a write is tried against records that other requests keep changing
/// before it fails with [`StoreError::Contended`].
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// What a request loaded from the store: the record's bytes, and the id of the session they
/// decoded to. The session itself is decoded again from the bytes only when a merge needs it
/// (another request wrote meanwhile): keeping a copy of it on every request cost a clone and
/// a drop of the data (about 5,000 instructions a request, `bash benches/instructions.sh
/// store`).
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub(crate) record: Vec<u8>,
    pub(crate) id: SessionId,
    /// The deadline the request's session started from: the record's, capped by the policy
    /// when it was opened. A merge's base carries it, so that the cap is not taken for a
    /// change of this request's.
    pub(crate) expires_at: Timestamp,
}

/// What a write left in the store: the record and its session.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) record: Vec<u8>,
    pub(crate) state: SessionState,
}

/// A store-backed session to write.
#[derive(Debug)]
pub(crate) struct Write {
    /// The session as the request leaves it.
    pub(crate) state: SessionState,
    /// Its record.
    pub(crate) record: Vec<u8>,
    /// The idle timeout, for the record's deadline.
    pub(crate) idle_timeout: Option<Duration>,
    /// What the request loaded, when this write replaces it (same session id); `None` for a
    /// new session (or a new id), which is written with [`Store::save`].
    pub(crate) loaded: Option<Loaded>,
}

/// When the record of `state` stops being usable: the earlier of its absolute deadline and
/// its idle deadline.
pub(crate) fn deadline(state: &SessionState, idle_timeout: Option<Duration>) -> Timestamp {
    let abs = state.expires_at();
    match idle_timeout {
        Some(idle) => abs.min(state.last_seen().saturating_add(idle)),
        None => abs,
    }
}

/// Writes `w`. What is in the store afterwards (the record and its session: this request's,
/// or this request's changes merged into another's), or `None` when the session was ended by
/// another request (or expired) and so was not written.
pub(crate) async fn write(store: &dyn Store, w: Write) -> Result<Option<Written>, StoreError> {
    let Some(loaded) = w.loaded else {
        let until = deadline(&w.state, w.idle_timeout);
        store.save(&w.state.id(), &w.record, until).await?;
        return Ok(Some(Written {
            record: w.record,
            state: w.state,
        }));
    };
    let id = w.state.id();
    // What this request loaded, decoded again at the first merge.
    let mut base: Option<SessionState> = None;
    let (mut expected, mut next) = (
        std::borrow::Cow::Borrowed(loaded.record.as_slice()),
        Written {
            record: w.record,
            state: w.state.clone(),
        },
    );
    for _ in 0..MAX_ATTEMPTS {
        let until = deadline(&next.state, w.idle_timeout);
        match store.update(&id, &expected, &next.record, until).await? {
            Update::Written => return Ok(Some(next)),
            Update::Gone => return Ok(None),
            Update::Changed(current) => {
                let theirs = match SessionState::decode(&current) {
                    Ok(theirs) if theirs.id() == id => theirs,
                    // Not a record of this session: it would be refused when loaded, so the
                    // session is over either way.
                    _ => {
                        tracing::warn!(target: "sealed_session", "the store holds a record that is not this session's; not saved");
                        return Ok(None);
                    }
                };
                // The record decoded when it was loaded, so it decodes again; were it not to,
                // this request's state would count as all changes (the last write wins).
                let base = base.get_or_insert_with(|| {
                    let mut base =
                        SessionState::decode(&loaded.record).unwrap_or_else(|_| theirs.clone());
                    base.set_expires_at(loaded.expires_at);
                    base
                });
                let state = w.state.merged(base, &theirs);
                let record = encode(&state)?;
                // This request's changes are already there (a renewal that another request
                // renewed later, say): nothing to write, and nothing to race for.
                if record == current {
                    return Ok(Some(Written { record, state }));
                }
                next = Written { record, state };
                expected = std::borrow::Cow::Owned(current);
            }
        }
    }
    Err(StoreError::Contended {
        attempts: MAX_ATTEMPTS,
    })
}

fn encode(state: &SessionState) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::with_capacity(state.encoded_len_hint());
    state.encode_into(&mut out)?;
    Ok(out)
}
