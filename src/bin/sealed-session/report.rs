//! The report `inspect` prints: one JSON object (`--json`), or text.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use sealed_session::Timestamp;

use crate::timefmt::relative;
use crate::{CliError, usage};

/// A time, absolute and relative to the time of the check.
#[derive(Default, Serialize)]
pub struct Time {
    pub ms: u64,
    pub rfc3339: String,
    pub relative: String,
}

impl Time {
    /// `t`, seen at `now`.
    pub fn new(t: Timestamp, now: Timestamp) -> Time {
        Time {
            ms: t.as_millis(),
            rfc3339: t.to_string(),
            relative: relative(t, now),
        }
    }
}

/// The report, as printed by `--json` (field names and meanings are documented in the
/// README and in `inspect --help`).
#[derive(Default, Serialize)]
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

impl Report {
    /// The report as one JSON object (`json`), or as text.
    pub fn render(&self, json: bool) -> Result<String, CliError> {
        if json {
            return serde_json::to_string_pretty(self)
                .map(|s| s + "\n")
                .map_err(|e| usage(format!("cannot write the report as JSON: {e}")));
        }
        let from = match (&self.cookie_name, self.chunks) {
            (Some(name), 0) => format!("cookie {name} ({})", self.source),
            (Some(name), n) => format!("cookie {name} ({}, {n} chunks reassembled)", self.source),
            (None, _) => "bare token".to_owned(),
        };
        let mut out = format!("{from}, {} characters\n", self.token_length);
        let status = match self.status {
            "valid" => "VALID".to_owned(),
            "refused" => format!(
                "REFUSED: {} ({})",
                self.error.as_deref().unwrap_or("refused"),
                self.reason.as_deref().unwrap_or("")
            ),
            _ => "UNVERIFIED: no key to check it with".to_owned(),
        };
        let version = self
            .format_version
            .map(|v| format!(" (format version {v})"));
        let kind = self
            .kind
            .map(|k| format!("{k}{}", version.unwrap_or_default()));
        let role = match self.key_is_primary {
            Some(true) => ", primary key",
            Some(false) => ", older key",
            None => "",
        };
        let alg = self.algorithm.as_deref();
        let alg = alg.unwrap_or("algorithm unknown without the key");
        let key_id = self
            .key_id
            .as_ref()
            .map(|kid| format!("{kid} ({alg}{role})"));
        let has_session = self.session_id.is_some() || self.issued_at.is_some();
        let subject = self.subject.as_deref().unwrap_or("(none)");
        let time = |t: &Option<Time>, extra: &str| {
            t.as_ref()
                .map(|t| format!("{} ({}){extra}", t.rfc3339, t.relative))
        };
        let idle_expiry = time(&self.idle_expires_at, ", last seen + idle timeout");
        let expired = self
            .expired
            .map(|e| if e { "yes" } else { "no" }.to_owned());
        let revoked = match self.revocation {
            "not_checked" => "not checked (pass --redis URL)",
            "allowed" => "no",
            "revoked_session" => "YES, this session was revoked",
            "revoked_subject" => {
                "YES, every session of this subject issued before a time was revoked"
            }
            "unavailable" => "unknown: the Redis denylist is unavailable",
            other => other,
        };
        let unreadable = self.unreadable.join(", ");
        let unreadable = (!unreadable.is_empty()).then(|| format!("{unreadable} (needs the key)"));
        let lines = [
            ("status", Some(status)),
            ("kind", kind),
            ("key id", key_id),
            ("keys from", self.keys_from.clone()),
            ("purpose", self.purpose.clone()),
            ("session id", self.session_id.clone()),
            ("subject", has_session.then(|| subject.to_owned())),
            ("issued", time(&self.issued_at, "")),
            ("last seen", time(&self.last_seen, "")),
            ("expires", time(&self.expires_at, ", absolute deadline")),
            ("idle expiry", idle_expiry),
            ("expired", expired),
            ("revoked", self.verified.then(|| revoked.to_owned())),
            ("not readable", unreadable),
            ("hint", self.hint.clone()),
        ];
        let notes = self.notes.iter().map(|n| ("note", Some(n.clone())));
        for (label, value) in lines.into_iter().chain(notes) {
            if let Some(value) = value {
                let _ = writeln!(out, "  {label:<14}{value}");
            }
        }
        let mark = if self.verified { "" } else { " (UNVERIFIED)" };
        // A JWT's data is in its claims.
        let data = self.data.as_ref().filter(|_| self.jwt_claims.is_none());
        for (label, value) in [
            ("JWT header", self.jwt_header.as_ref()),
            ("JWT claims", self.jwt_claims.as_ref()),
            ("data", data),
        ] {
            if let Some(v) = value {
                let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
                let _ = writeln!(out, "  {label}{mark}\n{pretty}");
            }
        }
        Ok(out)
    }
}
