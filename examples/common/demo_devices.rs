//! The demo's "your devices" page: the signed-in user's sessions, each with a sign-out
//! button (sealed mode). The registry is in memory, or on Redis with `--redis URL`.

use std::sync::Arc;

use sealed_session::devices::{DeviceHandle, MemoryRegistry, Registry};
use sealed_session::{Clock, Session, SessionError, SystemClock, Timestamp};
use serde::Deserialize;

use super::{Reply, current_user, escape, page};

/// The registry's key prefix on Redis.
#[cfg(feature = "redis")]
pub const REDIS_PREFIX: &str = "sealed-session-demo:devices:";

/// The sign-out form's field.
#[derive(Deserialize)]
pub struct EndDevice {
    pub device: String,
}

/// The registry: in memory, or on Redis with `--redis URL`; and its line for the start-up
/// output.
pub async fn make_registry(redis: Option<&str>) -> Result<(Arc<dyn Registry>, String), String> {
    match redis {
        None => Ok((
            Arc::new(MemoryRegistry::new()),
            "in-memory registry (GET /devices lists the sessions this process signed in)"
                .to_owned(),
        )),
        Some(url) => redis_registry(url).await,
    }
}

#[cfg(feature = "redis")]
async fn redis_registry(url: &str) -> Result<(Arc<dyn Registry>, String), String> {
    let registry = sealed_session::devices::RedisRegistry::builder(url)
        .key_prefix(REDIS_PREFIX)
        .build()
        .await
        .map_err(|e| {
            format!(
                "cannot use Redis at {} for devices: {e}",
                super::redact(url)
            )
        })?;
    Ok((
        Arc::new(registry),
        format!(
            "Redis registry at {} (key prefix {REDIS_PREFIX:?}; GET /devices lists the sessions \
             of every demo process using this Redis)",
            super::redact(url)
        ),
    ))
}

#[cfg(not(feature = "redis"))]
async fn redis_registry(_url: &str) -> Result<(Arc<dyn Registry>, String), String> {
    Err("--redis needs the `redis` feature".to_owned())
}

/// "5 min ago", "just now".
fn ago(then: Timestamp, now: Timestamp) -> String {
    let secs = now.saturating_since(then).as_secs();
    match secs {
        0..=59 => "just now".to_owned(),
        60..=3599 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// `GET /devices`: the signed-in user's sessions, newest first, each with a sign-out
/// button; others are sent to `/`.
pub async fn devices_page(session: &Session) -> Result<Reply, SessionError> {
    if current_user(session)?.is_none() {
        return Ok(Reply::SeeOther("/"));
    }
    let now = SystemClock.now();
    let mut rows = String::new();
    for d in session.devices().await? {
        let this = if d.current {
            " <em class=\"current\">(this device)</em>"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr class=\"device\"><td class=\"label\">{label}{this}</td>\
             <td>signed in {started}</td><td>active {renewed}</td>\
             <td><form method=\"post\" action=\"/devices/end\">\
             <input type=\"hidden\" name=\"device\" value=\"{handle}\">\
             <button type=\"submit\" class=\"end\" id=\"end-{handle}\" data-current=\"{current}\">\
             Sign out</button></form></td></tr>",
            label = escape(&d.label),
            started = ago(d.started, now),
            renewed = ago(d.renewed, now),
            handle = escape(d.handle.as_str()),
            current = d.current,
        ));
    }
    Ok(Reply::Page(
        http::StatusCode::OK,
        page(
            "Your devices",
            &format!(
                "<p>Where you are signed in. Signing a device out ends its session at once.</p>\
                 <table id=\"devices\">{rows}</table><p><a href=\"/\">Home</a></p>"
            ),
        ),
    ))
}

/// `POST /devices/end`: signs one of the user's devices out, 303 to `/devices` (to `/` for
/// this device). A handle that is not one of theirs is a 404.
pub async fn end_device(session: &Session, form: &EndDevice) -> Result<Reply, SessionError> {
    if current_user(session)?.is_none() {
        return Ok(Reply::SeeOther("/"));
    }
    let handle = DeviceHandle::parse(&form.device).ok_or(SessionError::NoSuchDevice)?;
    let current = session
        .devices()
        .await?
        .iter()
        .any(|d| d.current && d.handle == handle);
    session.end_device(&handle).await?;
    Ok(Reply::SeeOther(if current { "/" } else { "/devices" }))
}
