//! # sealed-session
//!
//! Sessions for [Poem](https://docs.rs/poem) and [axum](https://docs.rs/axum) (any tower
//! service) with no server-side store: the whole session
//! lives in an authenticated-encrypted cookie (or a signed one), keys rotate without logging
//! anyone out, and expiry (absolute and idle) is enforced by the server, not only by the
//! browser.
//!
//! ```
//! use sealed_session::{Codec, Keyring, Policy, SealedCodec, SessionId, SessionState, Timestamp};
//! use std::time::Duration;
//!
//! // Keys: newest first; in production from `SESSION_KEYS` or a long `SESSION_SECRET`.
//! let ring = Keyring::from_secret("a long random secret of at least thirty-two bytes")?;
//! let codec = SealedCodec::new(ring);
//! let policy = Policy::new().max_age(Duration::from_secs(3600));
//!
//! let now = Timestamp::from_millis(1_764_000_000_000);
//! let mut state = SessionState::new(SessionId::generate()?, now, policy.expires_at(now));
//! state.insert("user", "alice")?;
//! let token = codec.seal(&state, b"sid")?;             // the cookie value
//!
//! let (opened, _fresh) = codec.open_checked(&token, b"sid", &policy, now)?;
//! assert_eq!(opened.into_state().get::<String>("user")?.as_deref(), Some("alice"));
//!
//! // An hour later the server refuses it, whatever the browser does.
//! let later = now.saturating_add(Duration::from_secs(3600));
//! assert!(codec.open_checked(&token, b"sid", &policy, later).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pieces: [`Keyring`] (keys and rotation), [`Codec`] with [`SealedCodec`] and
//! [`SignedCodec`] (token formats, documented byte for byte in `docs/FORMAT.md`), [`Policy`]
//! (expiry), [`Clock`] (time, injectable for tests).
//!
//! Beyond those: [`SealedSession`] (the builder: the Poem middleware itself, and a tower
//! layer through `SealedSession::layer`), the framework-neutral [`engine`] both run, and
//! [`Session`] (the handler's handle), the bearer transport ([`BearerConfig`]), JWT sessions ([`JwtCodec`], [`Jwks`]),
//! revocation ([`denylist`]), the express-session design ([`store`]) and bounds on all
//! that the client sends ([`Limits`]).
//!
//! ## Features
//! - `poem` (default): the Poem middleware, `&Session` as a handler argument, and [`Jwks`]
//!   as a Poem endpoint.
//! - `tower`: the tower layer (`SealedSession::layer`) for axum 0.8 and hyper, and
//!   `Session` as an axum extractor (and [`Jwks`] as a tower service).
//! - `aws-lc` (default): AES-256-GCM, ChaCha20-Poly1305 and HMAC-SHA256 through aws-lc-rs;
//!   without it the pure-Rust RustCrypto crates (same bytes on the wire).
//! - `jwt` (default): the JWT codec on jsonwebtoken with aws-lc-rs; `jwt-rust-crypto` for its
//!   pure-Rust backend.
//! - `redis`: the Redis denylist and store.
//! - `postgres`: `PostgresStore`, sessions in a PostgreSQL table (through sqlx).
//! - `sqlite`: `SqliteStore`, sessions in an embedded SQLite file (through sqlx).
//! - `cli`: the `sealed-session` command-line tool.
//! - `metrics`: counters and gauges through the [`metrics`](https://docs.rs/metrics) facade
//!   (refusals by reason, issues, re-issues, revocations, denylist size and Redis replica
//!   staleness; names in [`stats`]). Without it, [`SealedSession::stats`] still gives an
//!   in-process snapshot.
//!
// Built without a JWT feature, the JWT types above do not exist: their links lead to the
// features list instead of breaking the docs build.
#![cfg_attr(
    not(any(feature = "jwt", feature = "jwt-rust-crypto")),
    doc = "[`JwtCodec`]: crate#features\n[`Jwks`]: crate#features"
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adapter;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub mod binding;
mod builder;
mod cache;
mod clock;
pub mod codec;
pub mod denylist;
pub mod devices;
pub mod engine;
mod error;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
mod jwt_keys;
mod keys;
pub mod limits;
mod policy;
mod random;
mod session;
mod state;
pub mod stats;
pub mod store;
pub mod transport;

#[cfg(feature = "poem")]
pub use adapter::poem::SealedSessionEndpoint;
#[cfg(feature = "tower")]
pub use adapter::tower::{SessionLayer, SessionService};
pub use builder::SealedSession;
pub use cache::DEFAULT_OPEN_CACHE_BYTES;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use codec::{Codec, Opened, SealedCodec, SignedCodec};
pub use denylist::{Check, Denylist, MemoryDenylist};
pub use error::{DataError, KeyError, OpenError, SealError};
pub use keys::{Algorithm, KEY_LEN, Key, Keyring, MAX_KEY_ID_LEN};
pub use limits::{LimitError, Limits};
pub use policy::{Fresh, Policy};
pub use session::{Session, SessionError};
pub use state::{Binding, DeviceKey, MAX_DEVICE_KEY_LEN, MAX_SUBJECT_LEN, SessionId, SessionState};
pub use stats::Stats;
pub use transport::bearer::BearerConfig;
pub use transport::cookie::{CookieConfig, SameSite, Secure};
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub use transport::jwks::Jwks;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub use {
    codec::{JwtCodec, JwtCodecBuilder, JwtConfigError},
    jwt_keys::{JwtAlgorithm, JwtKey, JwtKeyError, JwtKeyring, MAX_JWT_KID_LEN, MIN_RSA_BITS},
};

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guides' examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/COOKIES.md")]
pub struct CookiesGuideDoctests;

/// The guides' examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/SPA.md")]
pub struct SpaGuideDoctests;

/// The guides' examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/SCALING.md")]
pub struct ScalingGuideDoctests;

/// The guides' examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/EXPRESS.md")]
pub struct ExpressGuideDoctests;
