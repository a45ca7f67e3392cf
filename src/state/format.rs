//! The binary payload of a token (`docs/FORMAT.md`, section 7): what a sealed token
//! encrypts, a signed token signs, and a session store keeps.
//!
//! ```text
//! id (16) | issued_at (8) | last_seen (8) | expires_at (8) | flags (1)
//!         | [subject length (2) | subject]
//!         | [binding: kind 1 (1) | jkt (32)  or  kind 2 (1) | id (16) | key length (2) | JWK]
//!         | data (JSON object text, or nothing)
//! ```
//!
//! Times are u64 big-endian milliseconds. Decoding only ever sees authenticated bytes (or a
//! server's own store record), but checks every length all the same and never panics; the
//! data is parsed and validated in full by serde_json ([`Data::parse`]).

use std::sync::Arc;

use super::data::Data;
use super::{Binding, DeviceKey, MAX_DEVICE_KEY_LEN, SessionId, SessionState};
use crate::clock::Timestamp;
use crate::error::{OpenError, SealError};

/// Longest subject (user id) a token can carry, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// Length of the fixed part of the payload: id, three times and the flags byte.
pub(crate) const FIXED_LEN: usize = 16 + 8 + 8 + 8 + 1;

/// Flags bit 0: a subject follows the fixed part.
const FLAG_SUBJECT: u8 = 0x01;
/// Flags bit 1: a binding follows the subject (or the fixed part). The other bits must be 0.
const FLAG_BINDING: u8 = 0x02;
/// Binding kinds.
const BINDING_DPOP: u8 = 1;
const BINDING_DEVICE: u8 = 2;

/// Appends the payload of `state` to `out`.
pub(super) fn encode(state: &SessionState, out: &mut Vec<u8>) -> Result<(), SealError> {
    out.extend_from_slice(state.id.as_bytes());
    for t in [state.issued_at, state.last_seen, state.expires_at] {
        out.extend_from_slice(&t.as_millis().to_be_bytes());
    }
    let flags_at = out.len();
    out.push(0);
    if let Some(s) = &state.subject {
        let len = u16::try_from(s.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_SUBJECT_LEN)
            .ok_or(SealError::SubjectTooLong {
                len: s.len(),
                max: MAX_SUBJECT_LEN,
            })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    match &state.binding {
        None => {}
        Some(Binding::Dpop { jkt }) => {
            out.push(BINDING_DPOP);
            out.extend_from_slice(jkt);
        }
        Some(Binding::Device(key)) => {
            // Checked when the key was registered; a longer one is never written.
            let len = u16::try_from(key.jwk.len())
                .ok()
                .filter(|l| usize::from(*l) <= MAX_DEVICE_KEY_LEN)
                .ok_or(SealError::Sign)?;
            out.push(BINDING_DEVICE);
            out.extend_from_slice(&key.id);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(key.jwk.as_bytes());
        }
    }
    let flags = u8::from(state.subject.is_some()) * FLAG_SUBJECT
        + u8::from(state.binding.is_some()) * FLAG_BINDING;
    if let Some(f) = out.get_mut(flags_at) {
        *f = flags;
    }
    state.data.write(out)
}

/// Decodes a payload. Each failure is `Malformed` with the message `docs/FORMAT.md` (section
/// 8, step 13) names, or one of the data's refusals ([`Data::parse`]).
pub(super) fn decode(b: &[u8]) -> Result<SessionState, OpenError> {
    const SHORT: OpenError = OpenError::Malformed("payload shorter than its fixed fields");
    let (id, rest) = b.split_first_chunk::<16>().ok_or(SHORT)?;
    let (issued_at, rest) = rest.split_first_chunk::<8>().ok_or(SHORT)?;
    let (last_seen, rest) = rest.split_first_chunk::<8>().ok_or(SHORT)?;
    let (expires_at, rest) = rest.split_first_chunk::<8>().ok_or(SHORT)?;
    let (&flags, rest) = rest.split_first().ok_or(SHORT)?;
    if flags & !(FLAG_SUBJECT | FLAG_BINDING) != 0 {
        return Err(OpenError::Malformed("unknown payload flags"));
    }
    let (subject, data) = if flags & FLAG_SUBJECT != 0 {
        let (len, rest) = rest
            .split_first_chunk::<2>()
            .ok_or(OpenError::Malformed("subject length missing"))?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len > MAX_SUBJECT_LEN {
            return Err(OpenError::Malformed("subject too long"));
        }
        let (s, rest) = rest
            .split_at_checked(len)
            .ok_or(OpenError::Malformed("subject truncated"))?;
        let s = std::str::from_utf8(s).map_err(|_| OpenError::Malformed("subject not UTF-8"))?;
        (Some(Arc::from(s)), rest)
    } else {
        (None, rest)
    };
    let (binding, data) = if flags & FLAG_BINDING != 0 {
        decode_binding(data)?
    } else {
        (None, data)
    };
    // Encoders write the object with no leading white space.
    if data.first().is_some_and(|b| *b != b'{') {
        return Err(OpenError::Malformed("session data is not a JSON object"));
    }
    let time = |t: &[u8; 8]| Timestamp::from_millis(u64::from_be_bytes(*t));
    Ok(SessionState {
        id: SessionId::from_bytes(*id),
        issued_at: time(issued_at),
        last_seen: time(last_seen),
        expires_at: time(expires_at),
        subject,
        binding,
        data: Data::parse(data)?,
    })
}

/// The binding at the start of `b`, and the bytes after it.
fn decode_binding(b: &[u8]) -> Result<(Option<Binding>, &[u8]), OpenError> {
    const SHORT: OpenError = OpenError::Malformed("binding truncated");
    let (&kind, rest) = b.split_first().ok_or(SHORT)?;
    match kind {
        BINDING_DPOP => {
            let (jkt, rest) = rest.split_first_chunk::<32>().ok_or(SHORT)?;
            Ok((Some(Binding::Dpop { jkt: *jkt }), rest))
        }
        BINDING_DEVICE => {
            let (id, rest) = rest.split_first_chunk::<16>().ok_or(SHORT)?;
            let (len, rest) = rest.split_first_chunk::<2>().ok_or(SHORT)?;
            let len = usize::from(u16::from_be_bytes(*len));
            if len > MAX_DEVICE_KEY_LEN {
                return Err(OpenError::Malformed("binding key too long"));
            }
            let (jwk, rest) = rest.split_at_checked(len).ok_or(SHORT)?;
            let jwk = std::str::from_utf8(jwk)
                .map_err(|_| OpenError::Malformed("binding key not UTF-8"))?;
            // JWK text: a JSON object, so that the session can be written in any format
            // (a JWT carries it as its `cnf.jwk`).
            let object =
                jwk.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(jwk).is_ok();
            if !object {
                return Err(OpenError::Malformed("binding key is not a JSON object"));
            }
            let key = DeviceKey::new(*id, Box::from(jwk));
            Ok((Some(Binding::Device(Arc::new(key))), rest))
        }
        _ => Err(OpenError::Malformed("unknown binding kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(flags: u8, tail: &[u8]) -> Vec<u8> {
        let mut p = vec![7u8; 16];
        for t in [1u64, 2, 3] {
            p.extend_from_slice(&t.to_be_bytes());
        }
        p.push(flags);
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn every_truncation_is_refused_never_a_panic() {
        let whole = payload(FLAG_SUBJECT, b"\x00\x05alice{\"a\":[1,\"x\"]}");
        assert!(decode(&whole).is_ok());
        let subject_end = FIXED_LEN + 2 + 5;
        for n in 0..whole.len() {
            // Cut inside the fixed part or the subject, or mid-JSON; cut right after the
            // subject, it is a session with no data.
            assert_eq!(decode(&whole[..n]).is_ok(), n == subject_end, "{n}");
        }
    }

    #[test]
    fn each_refusal_names_its_cause() {
        let malformed = |p: &[u8]| match decode(p) {
            Err(OpenError::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            malformed(&[0; FIXED_LEN - 1]),
            "payload shorter than its fixed fields"
        );
        assert_eq!(malformed(&payload(0x04, b"")), "unknown payload flags");
        assert_eq!(malformed(&payload(0x02, b"")), "binding truncated");
        assert_eq!(malformed(&payload(0x02, b"\x09")), "unknown binding kind");
        assert_eq!(malformed(&payload(0x02, &[1; 32])), "binding truncated");
        let mut long = vec![2u8; 17];
        long.extend_from_slice(&[0x08, 0x01]);
        assert_eq!(malformed(&payload(0x02, &long)), "binding key too long");
        for key in [&b"[1]"[..], b"{", b"{}x", b"x"] {
            let mut bad = vec![2u8; 17];
            bad.extend_from_slice(&(key.len() as u16).to_be_bytes());
            bad.extend_from_slice(key);
            assert_eq!(
                malformed(&payload(0x02, &bad)),
                "binding key is not a JSON object",
                "{key:?}"
            );
        }
        assert_eq!(
            malformed(&payload(FLAG_SUBJECT, b"\x00")),
            "subject length missing"
        );
        assert_eq!(
            malformed(&payload(FLAG_SUBJECT, b"\x04\x01")),
            "subject too long"
        );
        assert_eq!(
            malformed(&payload(FLAG_SUBJECT, b"\x00\x05ali")),
            "subject truncated"
        );
        assert_eq!(
            malformed(&payload(FLAG_SUBJECT, b"\x00\x01\xff")),
            "subject not UTF-8"
        );
        for data in [&b" {}"[..], b"[]", b"{\"a\":tru}", b"{\"a\":1} x"] {
            assert_eq!(
                malformed(&payload(0, data)),
                "session data is not a JSON object",
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn encode_then_decode_gives_the_state_back() {
        let mut s = SessionState::new(
            SessionId::from_bytes([9; 16]),
            Timestamp::from_millis(5),
            Timestamp::from_millis(u64::MAX),
        );
        s.set_last_seen(Timestamp::from_millis(6));
        s.set_subject(Some("user-42".into()));
        s.insert("b", &[1, 2]).unwrap();
        s.insert("a", "x").unwrap();
        let mut out = Vec::new();
        encode(&s, &mut out).unwrap();
        // Keys in sorted order, compact.
        assert!(out.ends_with(br#"{"a":"x","b":[1,2]}"#));
        let back = decode(&out).unwrap();
        assert_eq!(back.id(), s.id());
        assert_eq!(back.issued_at(), s.issued_at());
        assert_eq!(back.last_seen(), s.last_seen());
        assert_eq!(back.expires_at(), s.expires_at());
        assert_eq!(back.subject(), Some("user-42"));
        assert_eq!(back.data.map(), s.data.map());
        // No data is no bytes.
        s.clear();
        let mut out = Vec::new();
        encode(&s, &mut out).unwrap();
        assert_eq!(out.len(), FIXED_LEN + 2 + 7);
        assert!(decode(&out).unwrap().is_empty());
        // Each binding, with and without a subject.
        for binding in [
            Binding::Dpop { jkt: [3; 32] },
            Binding::Device(Arc::new(DeviceKey::new([4; 16], r#"{"kty":"EC"}"#.into()))),
        ] {
            for subject in [None, Some("u".to_owned())] {
                let mut b = s.clone();
                b.set_subject(subject.clone());
                b.set_binding(Some(binding.clone()));
                b.insert("k", "v").unwrap();
                let mut out = Vec::new();
                encode(&b, &mut out).unwrap();
                let back = decode(&out).unwrap();
                assert_eq!(back.binding(), Some(&binding));
                assert_eq!(back.subject(), subject.as_deref());
                assert_eq!(back.get::<String>("k").unwrap().as_deref(), Some("v"));
                // Every truncation is refused, never a panic.
                for n in 0..out.len() {
                    let _ = decode(&out[..n]);
                }
            }
        }
        s.set_subject(Some("x".repeat(MAX_SUBJECT_LEN + 1)));
        assert!(matches!(
            encode(&s, &mut Vec::new()),
            Err(SealError::SubjectTooLong { .. })
        ));
    }
}
