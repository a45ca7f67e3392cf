//! Where a token travels: in cookies ([`cookie`]) or, for single-page apps, in the
//! `Authorization` header.

pub mod cookie;
