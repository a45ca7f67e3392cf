//! A copy of the process never hands out the random bytes the original hands out: not as
//! session ids, not as nonces. Two copies sealing with the same AES-GCM nonce under one key
//! would reveal its authentication key.
//!
//! Copies are made two ways: `fork()` from libc, which runs the `pthread_atfork` handlers,
//! and (on Linux) a raw `clone` system call, which runs none. The raw clone stands in for
//! the copies nothing in the process is told about: CRIU, a VM snapshot restored twice. A
//! random source kept in the process (a batch of bytes, a user-space generator) that is
//! reset only by a fork handler repeats itself in the second kind; the OS generator, drawn
//! from on every seal, does not.
//!
//! This test forks, so it runs without the test harness: `main` is the only thread, and the
//! child can use the allocator and the library safely.

mod common {
    pub mod fixtures;
}

#[cfg(unix)]
fn main() {
    use common::fixtures::T0;
    use sealed_session::{
        Algorithm, Codec as _, Key, Keyring, SealedCodec, SessionId, SessionState, Timestamp,
    };

    let codec = SealedCodec::new(
        Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm).unwrap()]).unwrap(),
    );
    let state = SessionState::new(
        SessionId::generate().unwrap(),
        T0,
        Timestamp::from_millis(1_764_086_400_000),
    );
    // The parent has drawn: whatever it keeps of its randomness, the copies inherit.
    let first = codec.seal(&state, b"sid").unwrap();

    // SAFETY: this process has one thread (no test harness), so the child may run any code.
    copies_draw_apart(&codec, &state, &first, "fork", || unsafe { libc::fork() });
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    copies_draw_apart(&codec, &state, &first, "raw clone", || {
        // SAFETY: `clone` with only SIGCHLD and no new stack is `fork` without glibc's
        // handlers: the child gets a copy of this single-threaded process.
        let (flags, none): (libc::c_long, libc::c_long) = (libc::SIGCHLD.into(), 0);
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags, none, none, none, none) };
        libc::pid_t::try_from(pid).unwrap_or(-1)
    });
}

/// Copies the process with `copy` (a `fork`: the child's pid, 0 in the child, negative on
/// failure); both draw eight session ids and a token of `state`, and none of the child's
/// may be the parent's.
#[cfg(unix)]
fn copies_draw_apart(
    codec: &sealed_session::SealedCodec,
    state: &sealed_session::SessionState,
    first: &str,
    how: &str,
    copy: impl FnOnce() -> libc::pid_t,
) {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;

    use sealed_session::{Codec as _, SessionId};

    const DRAWS: usize = 8;
    let draw = || -> Vec<String> {
        let mut out: Vec<String> = (0..DRAWS)
            .map(|_| SessionId::generate().unwrap().to_string())
            .collect();
        out.push(codec.seal(state, b"sid").unwrap());
        out
    };

    let (mut parent_end, mut child_end) = UnixStream::pair().unwrap();
    let pid = copy();
    assert!(pid >= 0, "{how} failed");
    if pid == 0 {
        drop(parent_end);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child_end.write_all(draw().join("\n").as_bytes()).is_ok()
        }));
        drop(child_end);
        // SAFETY: ends the child at once, without running the parent's exit handlers twice.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    drop(child_end);
    let mine = draw();
    let mut theirs = String::new();
    parent_end.read_to_string(&mut theirs).unwrap();
    let mut status = 0;
    // SAFETY: waits for the child this process made.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{how}: the child failed: {status}"
    );

    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(
        theirs.len(),
        DRAWS + 1,
        "{how}: the child reported {theirs:?}"
    );
    for (what, t) in theirs.iter().enumerate() {
        assert!(
            !mine.iter().any(|m| m == t),
            "{how}: the child drew what the parent drew ({}): {t}",
            if what < DRAWS {
                "a session id"
            } else {
                "a token, so its nonce"
            }
        );
    }
    // Both processes' tokens still open: each drew a fresh nonce, from its own randomness.
    for token in [mine[DRAWS].as_str(), theirs[DRAWS], first] {
        codec.open(token, b"sid").unwrap();
    }
    println!("fork: a child made by {how} drew none of the parent's session ids or nonces ... ok");
}

#[cfg(not(unix))]
fn main() {
    println!("fork: skipped (no fork on this platform)");
}
