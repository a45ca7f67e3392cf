//! Observability without the `metrics` feature: the per-request `sealed_session` span and the
//! events inside it (open, refusal by reason, issue, re-issue, revocation), which never carry
//! the token, and the in-process `Stats` snapshot. Every scenario runs on the Poem middleware
//! and on the tower layer (see `http::app`).
#![cfg(any(feature = "poem", feature = "tower"))]

mod common {
    pub mod fixtures;
}
mod http;

use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use common::fixtures::{clock, keys};
use http::app::{Adapter, App, RespExt, Routes, both, send};
use http::handlers::plain::{everywhere, login_admin_subject_token, logout, touch, user};
use http::{Capture, Jar, capture};
use sealed_session::denylist::{Denylist, MemoryDenylist};
use sealed_session::{BearerConfig, Limits, SealedSession, Stats};

const NAME: &str = "__Host-sid";

fn routes() -> Routes {
    Routes::new()
        .post("/login", login_admin_subject_token)
        .get("/me", user)
        .post("/touch", touch)
        .post("/logout", logout)
        .post("/everywhere", everywhere)
}

/// The middle of a token: what a log line that leaked it would contain.
fn probe(token: &str) -> &str {
    &token[token.len() / 2 - 8..token.len() / 2 + 8]
}

/// No event field and no span field anywhere contains `probe`.
fn never_logged(cap: &Capture, probe: &str) {
    for e in cap.events() {
        for v in e.fields.values() {
            assert!(!v.contains(probe), "token text in an event: {e:?}");
        }
    }
    for s in cap.spans() {
        for v in s.fields.values() {
            assert!(!v.contains(probe), "token text in a span: {s:?}");
        }
    }
}

/// The fields of the one `sealed_session` span closed since the last clear.
fn request_span(cap: &Capture) -> std::collections::BTreeMap<String, String> {
    let spans: Vec<_> = cap
        .spans()
        .into_iter()
        .filter(|s| s.name == "sealed_session")
        .collect();
    assert_eq!(spans.len(), 1, "one span per request: {spans:?}");
    spans[0].fields.clone()
}

/// Events with `message`, that happened in the request's span.
fn messages(cap: &Capture) -> Vec<String> {
    cap.events()
        .into_iter()
        .filter(|e| e.span.as_deref() == Some("sealed_session"))
        .filter_map(|e| e.fields.get("message").cloned())
        .collect()
}

async fn each_request_has_a_span_naming_mode_transport_and_outcome(on: Adapter) {
    let (cap, _g) = capture();
    let clock = clock();
    let tc = on.app(
        &routes(),
        SealedSession::sealed(keys()).clock(clock.clone()),
    );
    let mut jar = Jar::default();

    send(&tc, &mut jar, true, "/login").await;
    let f = request_span(&cap);
    assert_eq!(
        (
            f["mode"].as_str(),
            f["transport"].as_str(),
            f["outcome"].as_str()
        ),
        ("sealed", "cookie", "issued")
    );
    assert!(!f.contains_key("reason"));
    assert_eq!(messages(&cap), vec!["session issued"]);
    let token = jar.get(NAME).unwrap().to_owned();

    cap.clear();
    assert_eq!(send(&tc, &mut jar, false, "/me").await.1, "admin");
    assert_eq!(request_span(&cap)["outcome"], "unchanged");
    assert_eq!(messages(&cap), vec!["session opened"]);

    cap.clear();
    send(&tc, &mut jar, true, "/touch").await;
    assert_eq!(request_span(&cap)["outcome"], "reissued");
    assert_eq!(messages(&cap), vec!["session opened", "session re-issued"]);

    // A refused token: one event naming the reason, in the span, which names it too.
    cap.clear();
    let mut bytes = token.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let mut forged = Jar::default();
    forged.set(NAME, &tampered);
    assert_eq!(send(&tc, &mut forged, false, "/me").await.1, "<none>");
    let f = request_span(&cap);
    assert_eq!(
        (f["outcome"].as_str(), f["reason"].as_str()),
        ("cleared", "bad_seal")
    );
    let refusals: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|e| e.fields.contains_key("reason"))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].fields["reason"], "bad_seal");
    assert_eq!(refusals[0].level, tracing::Level::WARN);
    assert_eq!(refusals[0].span.as_deref(), Some("sealed_session"));
    assert_eq!(refusals[0].fields["message"], "session token refused");
    never_logged(&cap, probe(&tampered));
    never_logged(&cap, probe(&token));
}

async fn bearer_refusals_and_revocations_are_events_without_the_token(on: Adapter) {
    let (cap, _g) = capture();
    let clock = clock();
    let denylist: Arc<dyn Denylist> = Arc::new(MemoryDenylist::with_clock(clock.clone()));
    let mw = SealedSession::sealed(keys())
        .bearer(BearerConfig::new())
        .denylist(denylist)
        .clock(clock.clone());
    let tc = on.app(&routes(), mw);
    let resp = tc.post("/login").send().await;
    let token = resp.into_body();
    let bearer = format!("Bearer {token}");

    cap.clear();
    tc.post("/logout")
        .header("authorization", &bearer)
        .send()
        .await
        .assert_status_is_ok();
    let revoked: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("session revoked"))
        .collect();
    assert_eq!(revoked.len(), 1, "{:?}", cap.events());
    assert_eq!(revoked[0].fields["kind"], "session");
    assert_eq!(revoked[0].level, tracing::Level::INFO);

    // The replayed token: a 401, the span says why and that the handler did not run.
    cap.clear();
    let resp = tc.get("/me").header("authorization", &bearer).send().await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    let f = request_span(&cap);
    assert_eq!(
        (
            f["transport"].as_str(),
            f["outcome"].as_str(),
            f["reason"].as_str()
        ),
        ("bearer", "rejected", "revoked")
    );
    assert_eq!(cap.reasons(), vec!["revoked".to_owned()]);
    never_logged(&cap, probe(&token));
}

async fn a_cookie_header_over_the_limit_is_one_event_and_a_rejected_span(on: Adapter) {
    let (cap, _g) = capture();
    let mw = SealedSession::sealed(keys()).limits(Limits::new().cookie_header_len(64));
    let tc = on.app(&routes(), mw);
    let secret = "s3cr3t-cookie-value-that-must-not-be-logged";
    let resp = tc
        .get("/me")
        .header(
            "cookie",
            format!("{NAME}={secret}; other={}", "x".repeat(40)),
        )
        .send()
        .await;
    resp.assert_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let f = request_span(&cap);
    assert_eq!(
        (f["outcome"].as_str(), f["reason"].as_str()),
        ("rejected", "cookie_header_too_large")
    );
    assert_eq!(cap.reasons(), vec!["cookie_header_too_large".to_owned()]);
    never_logged(&cap, "s3cr3t");
}

/// One client's cookie token after logging in.
async fn logged_in(tc: &App) -> (Jar, String) {
    let mut jar = Jar::default();
    send(tc, &mut jar, true, "/login").await;
    let token = jar.get(NAME).unwrap().to_owned();
    (jar, token)
}

async fn stats_count_refusals_by_reason_issues_reissues_and_revocations(on: Adapter) {
    let (_cap, _g) = capture();
    let clock = clock();
    let memory = MemoryDenylist::with_clock(clock.clone());
    let mw = SealedSession::sealed(keys())
        .idle_timeout(Some(Duration::from_secs(600)))
        .denylist(Arc::new(memory.clone()))
        .clock(clock.clone());
    // A clone kept outside shares the counters with the endpoint.
    let handle = mw.clone();
    let tc = on.app(&routes(), mw);
    assert_eq!(tc.stats(), handle.stats());

    let (mut jar, token) = logged_in(&tc).await; // issued 1
    send(&tc, &mut jar, false, "/me").await; // nothing
    send(&tc, &mut jar, true, "/touch").await; // reissues 1
    let mut bad = Jar::default();
    bad.set(NAME, "not a token!");
    send(&tc, &mut bad, false, "/me").await; // malformed 1
    bad.set(NAME, &format!("{}AA", &token[..token.len() - 2]));
    send(&tc, &mut bad, false, "/me").await; // bad_seal 1
    let stolen = jar.clone();
    send(&tc, &mut jar, true, "/logout").await; // revoked_sessions 1
    let mut replay = stolen.clone();
    send(&tc, &mut replay, false, "/me").await; // revoked 1
    let (mut jar, _) = logged_in(&tc).await; // issued 2
    send(&tc, &mut jar, true, "/everywhere").await; // revoked_subjects 1, revoked_sessions 2
    let (mut idle, _) = logged_in(&tc).await; // issued 3
    clock.advance(Duration::from_secs(600));
    send(&tc, &mut idle, false, "/me").await; // idle_timeout 1

    let s: Stats = handle.stats();
    assert_eq!(
        (s.issued, s.reissues, s.revoked_sessions, s.revoked_subjects),
        (3, 1, 2, 1)
    );
    for (reason, n) in [
        ("malformed", 1),
        ("bad_seal", 1),
        ("revoked", 1),
        ("idle_timeout", 1),
        ("expired", 0),
    ] {
        assert_eq!(s.refused(reason), n, "{reason}");
    }
    assert_eq!(s.refusals_total(), 4);
    assert_eq!(s.refusals.len(), sealed_session::stats::REASONS.len());
    let status = s.denylist.expect("a denylist is configured");
    assert_eq!((status.revoked_sessions, status.revoked_subjects), (2, 1));
    // Without a denylist there is no status.
    assert_eq!(SealedSession::sealed(keys()).stats().denylist, None);
    assert_eq!(SealedSession::sealed(keys()).stats().refusals_total(), 0);
}

async fn a_flood_of_forged_tokens_is_counted_exactly_and_logged_once_a_second(on: Adapter) {
    let (cap, _g) = capture();
    let mw = SealedSession::sealed(keys());
    let handle = mw.clone();
    let tc = on.app(&routes(), mw);
    let (_, token) = logged_in(&tc).await;
    let mut bytes = token.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();

    const FLOOD: usize = 300;
    cap.clear();
    let started = std::time::Instant::now();
    for i in 0..FLOOD {
        let mut forged = Jar::default();
        forged.set(
            NAME,
            if i % 2 == 0 {
                "not a token!"
            } else {
                &tampered
            },
        );
        assert_eq!(send(&tc, &mut forged, false, "/me").await.1, "<none>");
    }
    let seconds = started.elapsed().as_secs() as usize;

    // Every refusal counted, and named on its request's span.
    let s = handle.stats();
    assert_eq!((s.refused("malformed"), s.refused("bad_seal")), (150, 150));
    let spans = cap
        .spans()
        .into_iter()
        .filter(|s| s.name == "sealed_session" && s.fields.contains_key("reason"))
        .count();
    assert_eq!(spans, FLOOD);
    // But one line per reason per second begun, the first saying it left nothing out.
    for reason in ["malformed", "bad_seal"] {
        let lines: Vec<_> = cap
            .events()
            .into_iter()
            .filter(|e| e.fields.get("reason").map(String::as_str) == Some(reason))
            .collect();
        assert!(
            !lines.is_empty() && lines.len() <= seconds + 1,
            "{reason}: {} lines in {seconds} s",
            lines.len()
        );
        assert_eq!(lines[0].fields["suppressed"], "0", "{reason}");
        for later in &lines[1..] {
            assert_ne!(later.fields["suppressed"], "0", "{reason}: {later:?}");
        }
    }
}

both!(
    each_request_has_a_span_naming_mode_transport_and_outcome,
    bearer_refusals_and_revocations_are_events_without_the_token,
    a_cookie_header_over_the_limit_is_one_event_and_a_rejected_span,
    stats_count_refusals_by_reason_issues_reissues_and_revocations,
    a_flood_of_forged_tokens_is_counted_exactly_and_logged_once_a_second,
);
