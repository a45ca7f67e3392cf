//! Randomness for nonces, session ids and generated keys: every draw is one call to the
//! operating system's generator ([`getrandom`]), and no random byte is kept in the process.
//!
//! # Why nothing is kept
//!
//! A nonce repeated under one AES-GCM key reveals that key's authentication key, so a nonce
//! must never be handed out twice. Random bytes kept in the process to save system calls
//! (this module kept a 4 KiB batch per thread, once) are copied with the process: by
//! `fork`, which a handler can notice, but also by a raw `clone`, by CRIU, and by a VM
//! snapshot restored more than once, which nothing in the process notices. Every copy would
//! then hand out the same bytes.
//!
//! The kernel's generator is safe against all of these. A forked or cloned process keeps no
//! part of it. On Linux 5.18 and later, when the hypervisor announces a new VM generation
//! (the VMGenID device: Hyper-V, QEMU/KVM with `-device vmgenid`, and others), the `vmgenid`
//! driver has the kernel reseed its generator before its next output
//! (`add_vmfork_randomness` in `drivers/char/random.c`), so two VMs restored from one
//! snapshot draw different bytes. glibc 2.41 and later answer `getrandom` from the vDSO,
//! with the same guarantee and without the system call.
//!
//! # Why not AWS-LC's generator
//!
//! With the `aws-lc` feature the ciphers come from AWS-LC, whose `RAND_bytes`
//! (`aws_lc_rs::rand::fill`) keeps a per-thread DRBG and reseeds it on a
//! "uniqueness-breaking event". It detects forks (`MADV_WIPEONFORK`), but VM snapshots only
//! through `/dev/sysgenid`, a driver that mainline Linux does not have
//! (`crypto/ube/vm_ube_detect.c` in aws-lc-sys 0.47). Without it AWS-LC reseeds from the OS
//! before every call (`rand_check_ctr_drbg_uniqueness` in `crypto/fipsmodule/rand/rand.c`):
//! as safe as the OS generator, at the OS generator's cost plus its own. So both builds draw
//! from the OS generator directly, through one code path.
//!
//! Nonces need to be unique, not secret; session ids come from the same source and are as
//! unpredictable as the OS generator itself.

/// The OS generator failed.
#[derive(Debug)]
pub(crate) struct RngFailed;

/// Fills `out` with fresh bytes from the OS generator.
#[inline]
pub(crate) fn fill(out: &mut [u8]) -> Result<(), RngFailed> {
    getrandom::fill(out).map_err(|_| RngFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1024 {
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
