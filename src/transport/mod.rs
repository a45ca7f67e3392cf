//! Where a token travels: in cookies ([`cookie`]) or, for single-page apps, in the
//! `Authorization` header ([`bearer`]).

pub mod bearer;
pub mod cookie;
#[cfg(any(feature = "jwt", feature = "jwt-rust-crypto"))]
pub mod jwks;
