//! The keys and the time most tests start from.
//!
//! Use from a test file with `mod common { pub mod fixtures; }`.

#![allow(dead_code)]

use sealed_session::{Algorithm, Key, Keyring, ManualClock, Timestamp};

/// The time tests start at, in milliseconds since the epoch: 2025-11-24T16:00:00.000Z.
pub const T0_MS: u64 = 1_764_000_000_000;

/// [`T0_MS`] as a [`Timestamp`].
pub const T0: Timestamp = Timestamp::from_millis(T0_MS);

/// The secret [`keys`] derives its key from.
pub const SECRET: &str = "sealed-session test secret, long enough!";

/// A ring of one key derived from [`SECRET`]: for tests that need some keys, not particular ones.
pub fn keys() -> Keyring {
    Keyring::from_secret(SECRET).unwrap()
}

/// A manual clock at [`T0`].
pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

/// An AES-256-GCM key with this id, whose material is made from `byte`: keys made from
/// different bytes differ, and the same id and byte give the same key.
pub fn key(id: &str, byte: u8) -> Key {
    let mut material = [byte; 32];
    material[0] = !byte;
    Key::new(id, Algorithm::Aes256Gcm, &material).unwrap()
}

/// A ring of the one key [`key`] makes.
pub fn ring(id: &str, byte: u8) -> Keyring {
    Keyring::new([key(id, byte)]).unwrap()
}
