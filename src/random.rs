//! Randomness for nonces and session ids: bytes from the operating system's RNG, fetched in
//! 4 KiB batches per thread so that a seal does not pay a system call each time.
//!
//! Every byte is handed out once. A child process made by `fork` would inherit its parent's
//! unused batch and could repeat its nonces, which for AES-GCM would be fatal, so the batch
//! records the process id it was drawn in and is discarded when that changes. Handed-out
//! bytes are wiped from the batch. Nonces need to be unique, not secret; session ids come
//! from the same source and are as unpredictable as the OS RNG itself.

use std::cell::RefCell;

use aes_gcm::aead::rand_core::{OsRng, RngCore};
use zeroize::Zeroize;

const BATCH: usize = 4096;

struct Pool {
    bytes: Box<[u8; BATCH]>,
    /// Bytes before `pos` are used (and wiped).
    pos: usize,
    pid: u32,
}

thread_local! {
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
}

/// The OS RNG failed.
#[derive(Debug)]
pub(crate) struct RngFailed;

/// Fills `out` with fresh OS randomness. Requests over 256 bytes go straight to the OS.
pub(crate) fn fill(out: &mut [u8]) -> Result<(), RngFailed> {
    if out.len() > 256 {
        return OsRng.try_fill_bytes(out).map_err(|_| RngFailed);
    }
    POOL.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| RngFailed)?;
        let pid = std::process::id();
        let pool = match slot.as_mut() {
            Some(p) if p.pid == pid && p.pos + out.len() <= BATCH => p,
            _ => {
                let mut bytes = Box::new([0u8; BATCH]);
                OsRng
                    .try_fill_bytes(&mut bytes[..])
                    .map_err(|_| RngFailed)?;
                slot.insert(Pool { bytes, pos: 0, pid })
            }
        };
        let end = pool.pos + out.len();
        let src = pool.bytes.get_mut(pool.pos..end).ok_or(RngFailed)?;
        out.copy_from_slice(src);
        src.zeroize();
        pool.pos = end;
        Ok(())
    })
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * BATCH / 12 {
            let mut n = [0u8; 12];
            fill(&mut n).unwrap();
            assert!(seen.insert(n), "a 96-bit value repeated");
        }
        let mut big = [0u8; 300];
        fill(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }

    #[test]
    fn threads_draw_different_bytes() {
        let a = std::thread::spawn(|| {
            let mut n = [0u8; 24];
            fill(&mut n).unwrap();
            n
        });
        let mut mine = [0u8; 24];
        fill(&mut mine).unwrap();
        assert_ne!(a.join().unwrap(), mine);
    }
}
