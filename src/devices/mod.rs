//! "Your devices": where a user is signed in, and signing one of those sessions out.
//!
//! A stateless session lives in the client's token, so the server cannot list a user's
//! sessions by itself. A [`Registry`] keeps a small list per subject (user id) instead,
//! written when a session is written (a login, a renewal, a change: its token re-issued or,
//! store-backed, its record saved) and when it ends, never when a request leaves its session
//! as it was. A session whose token is re-issued on every request (its data changes each
//! time, or `rolling`) is recorded again at most every
//! [`refresh_every`](Devices::refresh_every) (5 minutes) by each process. Each entry holds the session's id, when it started, when it was last
//! renewed, when it expires, a short device label ("Firefox on Linux", from the
//! `User-Agent`, or from a hook of your own) and, only when you turn it on, the client's IP
//! prefix (a /24 for IPv4, a /48 for IPv6).
//!
//! Turn it on with [`SealedSession::devices`](crate::SealedSession::devices); then, in a
//! handler of a signed-in user, [`Session::devices`](crate::Session::devices) lists the
//! user's sessions (marking the current one), [`Session::end_device`](crate::Session::end_device)
//! ends one of them and [`Session::end_other_devices`](crate::Session::end_other_devices)
//! all but the current one. Ending a session revokes it through the middleware's denylist
//! (so every instance sharing the denylist refuses it from then on) or, store-backed,
//! deletes it from the store. Sessions are told apart by a [`DeviceHandle`], a hash of the
//! id: the page that lists them never shows a session id.
//!
//! Registries that come with the crate:
//! - [`MemoryRegistry`]: one process;
//! - `RedisRegistry` (feature `redis`): shared through Redis (one node, a Redis Cluster or
//!   the master Sentinels name);
//! - `PostgresStore::device_registry` and `SqliteStore::device_registry` (features
//!   `postgres`, `sqlite`): a table beside the store's sessions.
//!
//! Each keeps at most [`DEFAULT_MAX_PER_SUBJECT`] (50) entries per subject, the most
//! recently renewed, and drops an entry when its session expires (recorded
//! [`refresh_every`](Devices::refresh_every) past the session's deadline, so that a session
//! still in use is never dropped between two records).
//!
//! ```
//! use std::sync::Arc;
//! use sealed_session::devices::{Devices, MemoryRegistry};
//! use sealed_session::denylist::MemoryDenylist;
//! use sealed_session::{Keyring, SealedSession};
//!
//! let keys = Keyring::from_secret("at least thirty-two bytes of real secret, please")?;
//! let middleware = SealedSession::sealed(keys)
//!     .denylist(Arc::new(MemoryDenylist::new()))
//!     .devices(Devices::new(Arc::new(MemoryRegistry::new())));
//! # let _ = middleware;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod agent;
mod memory;
mod recent;
#[cfg(feature = "redis")]
mod redis;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::state::SessionId;

pub use crate::store::BoxFuture;
pub use agent::label_of;
pub use memory::MemoryRegistry;
#[cfg(feature = "redis")]
pub use redis::{RedisRegistry, RedisRegistryBuilder};

/// How many sessions a registry keeps per subject unless told otherwise: the 50 most
/// recently renewed.
pub const DEFAULT_MAX_PER_SUBJECT: usize = 50;

/// The longest device label kept, in characters; a longer one (from a hook) is cut.
pub const MAX_LABEL_CHARS: usize = 64;

/// The longest subject a registry keeps entries for, in bytes; a session with a longer
/// subject is not recorded.
pub const MAX_SUBJECT_LEN: usize = 256;

/// One session in a [`Registry`], as recorded when its token was last issued.
///
/// See [`Registry`] for an example.
///
/// ```
/// use sealed_session::devices::DeviceRecord;
/// fn describe(r: &DeviceRecord) -> String {
///     format!("{} (until {})", r.label, r.expires_at)
/// }
/// # let _ = describe;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The session id.
    #[serde(with = "id_text")]
    pub id: SessionId,
    /// Whose session it is.
    pub subject: String,
    /// When the session started (its issue time).
    #[serde(with = "millis")]
    pub started: Timestamp,
    /// When its token was last issued (a login, a renewal, a change).
    #[serde(with = "millis")]
    pub renewed: Timestamp,
    /// Until when the entry is kept: the session's deadline as of `renewed` (the earlier of
    /// its absolute and idle deadlines), plus the refresh interval
    /// ([`Devices::refresh_every`]), so that a session in use is never dropped between two
    /// records.
    #[serde(with = "millis")]
    pub expires_at: Timestamp,
    /// A short description of the device ("Chrome on Windows").
    pub label: String,
    /// The client's IP prefix (`203.0.113.0/24`, `2001:db8:1::/48`), when the application
    /// turned that on.
    pub ip_prefix: Option<String>,
}

/// One of the current user's sessions, as [`Session::devices`](crate::Session::devices)
/// lists them.
///
/// ```
/// use sealed_session::devices::Device;
/// use sealed_session::{Session, SessionError};
///
/// /// A "your devices" list, newest first, the current one marked.
/// async fn lines(session: &Session) -> Result<Vec<String>, SessionError> {
///     let devices: Vec<Device> = session.devices().await?;
///     Ok(devices
///         .iter()
///         .map(|d| format!("{}{}", d.label, if d.current { " (this device)" } else { "" }))
///         .collect())
/// }
/// # let _ = lines;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// What names this session to [`Session::end_device`](crate::Session::end_device).
    pub handle: DeviceHandle,
    /// Whether it is the session of the request that listed it.
    pub current: bool,
    /// When the session started.
    pub started: Timestamp,
    /// When it was last recorded (a login, a renewal, a change; at most
    /// [`Devices::refresh_every`] old while the session is in use).
    pub renewed: Timestamp,
    /// When it expires unless used again: its deadline as of `renewed`.
    pub expires_at: Timestamp,
    /// A short description of the device.
    pub label: String,
    /// The client's IP prefix, when the application turned that on.
    pub ip_prefix: Option<String>,
}

/// Names one session in a list of devices without showing its id: the first 128 bits of a
/// SHA-256 of the id, as 22 base64url characters. Put it in the "sign out" form; it names
/// nothing for another user.
///
/// ```
/// use sealed_session::SessionId;
/// use sealed_session::devices::DeviceHandle;
///
/// let id = SessionId::from_bytes([7; 16]);
/// let handle = DeviceHandle::of(&id);
/// assert_eq!(handle.as_str().len(), 22);
/// assert_ne!(handle.as_str(), id.to_string());
/// assert_eq!(DeviceHandle::parse(handle.as_str()), Some(handle));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceHandle(String);

impl DeviceHandle {
    /// The handle of session `id`.
    pub fn of(id: &SessionId) -> DeviceHandle {
        let mut h = Sha256::new();
        h.update(b"sealed-session device handle\0");
        h.update(id.as_bytes());
        let digest = h.finalize();
        DeviceHandle(URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&[])))
    }

    /// A handle from a form or a URL: 22 base64url characters, or `None`.
    pub fn parse(s: &str) -> Option<DeviceHandle> {
        let ok = s.len() == 22
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| DeviceHandle(s.to_owned()))
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A registry failed.
///
/// ```
/// use sealed_session::SessionError;
/// use sealed_session::devices::RegistryError;
///
/// // A registry that cannot list sessions answers a "your devices" page with a 503.
/// fn status_of(e: RegistryError) -> http::StatusCode {
///     SessionError::Registry(e).status()
/// }
/// # let _ = status_of;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The backend failed or did not answer in time. Never contains a session id.
    #[error("the device registry ({backend}) could not {op}: {source}")]
    Backend {
        /// Which registry.
        backend: &'static str,
        /// What it was doing.
        op: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where the sessions of each subject are listed. See [the module](self).
///
/// Every method is called by the middleware or by the [`Session`](crate::Session) methods;
/// an application does not call them itself except to implement a registry.
///
/// ```
/// use sealed_session::devices::{DeviceRecord, MemoryRegistry, Registry};
/// use sealed_session::{SessionId, Timestamp};
///
/// # block_on(async {
/// let registry = MemoryRegistry::new();
/// let now = Timestamp::from_millis(1_764_000_000_000);
/// let record = DeviceRecord {
///     id: SessionId::generate()?,
///     subject: "alice".to_owned(),
///     started: now,
///     renewed: now,
///     expires_at: Timestamp::from_millis(now.as_millis() + 3_600_000),
///     label: "Firefox on Linux".to_owned(),
///     ip_prefix: None,
/// };
/// registry.record(&record).await?;
/// let list = registry.list("alice", now).await?;
/// assert_eq!(list[0].label, "Firefox on Linux");
/// registry.remove("alice", &record.id).await?;
/// assert!(registry.list("alice", now).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
/// #     }
/// # }
/// ```
pub trait Registry: Send + Sync + 'static {
    /// Records `record` under its subject, replacing the entry of the same id; keeps at most
    /// the registry's bound of entries for that subject (the most recently renewed) and
    /// none past its `expires_at`.
    fn record<'a>(&'a self, record: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// The entries of `subject` that have not expired at `now`, most recently renewed first.
    fn list<'a>(
        &'a self,
        subject: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>>;

    /// Removes the entry of session `id` of `subject`, if there is one.
    fn remove<'a>(
        &'a self,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;
}

/// What a registry's `list` answers from the entries it holds for `subject`: those of
/// `subject` still live at `now`, most recently renewed first.
pub(crate) fn live_newest_first(
    entries: impl IntoIterator<Item = DeviceRecord>,
    subject: &str,
    now: Timestamp,
) -> Vec<DeviceRecord> {
    let mut list: Vec<DeviceRecord> = entries
        .into_iter()
        .filter(|r| r.subject == subject && r.expires_at > now)
        .collect();
    list.sort_by_key(|r| std::cmp::Reverse(r.renewed));
    list
}

/// Entries stored as JSON (Redis, SQL), read back: one that does not read (written by
/// another version, or by hand) is skipped, not an error, since the list is for display.
#[cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]
pub(crate) fn parse_entries<'a>(
    stored: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = DeviceRecord> {
    stored
        .into_iter()
        .filter_map(|json| serde_json::from_slice::<DeviceRecord>(json).ok())
}

/// A hook that makes the device label from the request's `User-Agent` (`None` when it
/// sent none), in place of [`label_of`].
pub type LabelHook = Arc<dyn Fn(Option<&str>) -> String + Send + Sync>;

/// The "your devices" settings of a middleware: the registry, how a device is labelled,
/// and whether the client's IP prefix is kept. Given to
/// [`SealedSession::devices`](crate::SealedSession::devices).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sealed_session::devices::{Devices, MemoryRegistry};
///
/// let devices = Devices::new(Arc::new(MemoryRegistry::new()))
///     .refresh_every(Duration::from_secs(60))
///     .ip_prefix(true);
/// # let _ = devices;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Devices {
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) label: Option<LabelHook>,
    pub(crate) ip_prefix: bool,
    pub(crate) refresh_every: Duration,
    /// Shared by the clones: what this process recorded lately.
    pub(crate) recent: Arc<recent::Recent>,
}

/// How often, at most, one process records the same session again while its token keeps
/// being re-issued, unless told otherwise: 5 minutes.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices")
            .field("custom_label", &self.label.is_some())
            .field("ip_prefix", &self.ip_prefix)
            .field("refresh_every", &self.refresh_every)
            .finish_non_exhaustive()
    }
}

impl Devices {
    /// Sessions listed in `registry`, labelled by [`label_of`], without IP prefixes.
    pub fn new(registry: Arc<dyn Registry>) -> Devices {
        Devices {
            registry,
            label: None,
            ip_prefix: false,
            refresh_every: DEFAULT_REFRESH_EVERY,
            recent: Arc::new(recent::Recent::default()),
        }
    }

    /// How often, at most, this process records the same session again while its token
    /// keeps being re-issued (its data changes on every request, or the policy is
    /// `rolling`): an entry's "last renewed" time is then at most this old, and its expiry
    /// is recorded this much past the session's, so that a session that stays in use is
    /// never dropped from the list between two records. A new session, a new id and a new
    /// subject are recorded at once. Default: [`DEFAULT_REFRESH_EVERY`] (5 minutes); zero
    /// records every token.
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Makes device labels with `hook` (given the `User-Agent`, if any) instead of
    /// [`label_of`]. Labels longer than [`MAX_LABEL_CHARS`] are cut. The `User-Agent` is
    /// whatever the client sent: a label made from its text must be escaped where it is
    /// shown (the default labels are fixed strings).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sealed_session::devices::{Devices, MemoryRegistry};
    ///
    /// let devices = Devices::new(Arc::new(MemoryRegistry::new()))
    ///     .label_with(|agent| match agent {
    ///         Some(a) if a.contains("MyApp/") => "MyApp".to_owned(),
    ///         other => sealed_session::devices::label_of(other),
    ///     });
    /// # let _ = devices;
    /// ```
    pub fn label_with(
        mut self,
        hook: impl Fn(Option<&str>) -> String + Send + Sync + 'static,
    ) -> Self {
        self.label = Some(Arc::new(hook));
        self
    }

    /// Keeps the client's IP prefix (a /24 for IPv4, a /48 for IPv6) with each entry.
    /// Default: off. The address is the connection's peer (Poem), or with
    /// [`trust_proxy`](crate::SealedSession::trust_proxy) the last `X-Forwarded-For`
    /// address (the one your proxy appended: earlier ones are the client's own word);
    /// without either (a tower service that is not told its peer,
    /// [`Started::set_peer_ip`](crate::engine::Started::set_peer_ip)) none is kept.
    pub fn ip_prefix(mut self, on: bool) -> Self {
        self.ip_prefix = on;
        self
    }

    /// The label of a device that sent `agent`.
    pub(crate) fn label(&self, agent: Option<&str>) -> String {
        let label = match &self.label {
            Some(hook) => hook(agent),
            None => label_of(agent),
        };
        label.chars().take(MAX_LABEL_CHARS).collect()
    }
}

/// The prefix of `ip` kept in a registry: the /24 of an IPv4 address, the /48 of an IPv6
/// one (an IPv4-mapped IPv6 address counts as IPv4).
///
/// ```
/// use sealed_session::devices::ip_prefix;
///
/// assert_eq!(ip_prefix("203.0.113.77".parse()?), "203.0.113.0/24");
/// assert_eq!(ip_prefix("2001:db8:1:2::5".parse()?), "2001:db8:1::/48");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn ip_prefix(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// Serde for a session id as its text.
mod id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::state::SessionId;

    pub(super) fn serialize<S: Serializer>(id: &SessionId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SessionId, D::Error> {
        let text = <&str>::deserialize(d)?;
        SessionId::parse(text).ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

/// Serde for a timestamp as milliseconds since the epoch.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clock::Timestamp;

    pub(super) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.as_millis())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        u64::deserialize(d).map(Timestamp::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_differ_per_id_and_reject_what_is_not_one() {
        let a = DeviceHandle::of(&SessionId::from_bytes([1; 16]));
        let b = DeviceHandle::of(&SessionId::from_bytes([2; 16]));
        assert_ne!(a, b);
        assert_eq!(DeviceHandle::parse(a.as_str()), Some(a));
        assert_eq!(DeviceHandle::parse("short"), None);
        assert_eq!(DeviceHandle::parse("aaaaaaaaaaaaaaaaaaaa/+"), None);
        assert_eq!(DeviceHandle::parse("ééééééééééé"), None);
    }

    #[test]
    fn ip_prefixes_hide_the_host() {
        assert_eq!(ip_prefix("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(ip_prefix("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(ip_prefix("2001:db8::1".parse().unwrap()), "2001:db8::/48");
    }

    #[test]
    fn labels_are_cut_and_hooks_replace_them() {
        let devices = Devices::new(Arc::new(MemoryRegistry::new()));
        assert_eq!(devices.label(None), "Unknown device");
        let long = devices.label_with(|_| "x".repeat(500));
        assert_eq!(long.label(Some("Firefox")).chars().count(), MAX_LABEL_CHARS);
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = DeviceRecord {
            id: SessionId::from_bytes([9; 16]),
            subject: "alice".into(),
            started: Timestamp::from_millis(1),
            renewed: Timestamp::from_millis(2),
            expires_at: Timestamp::from_millis(3),
            label: "Firefox on Linux".into(),
            ip_prefix: Some("10.0.0.0/24".into()),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<DeviceRecord>(&json).unwrap(), r);
        assert!(serde_json::from_str::<DeviceRecord>(&json.replace("CQkJ", "!!!!")).is_err());
    }
}
