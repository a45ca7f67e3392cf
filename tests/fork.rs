//! A process made by `fork` never hands out the random bytes its parent hands out: not as
//! session ids, not as nonces. The child inherits its parent's per-thread batch of OS
//! randomness; the batch must be discarded in the child, or both processes would issue the
//! same session ids and seal with the same AES-GCM nonces.
//!
//! This test forks, so it runs without the test harness: `main` is the only thread, and the
//! child can use the allocator and the library safely.

#[cfg(unix)]
fn main() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;

    use sealed_session::{
        Algorithm, Codec as _, Key, Keyring, SealedCodec, SessionId, SessionState, Timestamp,
    };

    const DRAWS: usize = 8;
    let codec = SealedCodec::new(
        Keyring::new([Key::generate("k1", Algorithm::Aes256Gcm).unwrap()]).unwrap(),
    );
    let now = Timestamp::from_millis(1_764_000_000_000);
    let state = SessionState::new(
        SessionId::generate().unwrap(),
        now,
        Timestamp::from_millis(1_764_086_400_000),
    );
    // The parent has drawn: its thread's batch has unused bytes that the child inherits.
    let first = codec.seal(&state, b"sid").unwrap();

    // What each process draws after the fork: ids, then one token of the same state.
    let draw = || -> Vec<String> {
        let mut out: Vec<String> = (0..DRAWS)
            .map(|_| SessionId::generate().unwrap().to_string())
            .collect();
        out.push(codec.seal(&state, b"sid").unwrap());
        out
    };

    let (mut parent_end, mut child_end) = UnixStream::pair().unwrap();
    // SAFETY: this process has one thread (no test harness), so the child may run any code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
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
        "the child failed: {status}"
    );

    let theirs: Vec<&str> = theirs.lines().collect();
    assert_eq!(theirs.len(), DRAWS + 1, "the child reported {theirs:?}");
    for (what, t) in theirs.iter().enumerate() {
        assert!(
            !mine.iter().any(|m| m == t),
            "the child drew what the parent drew ({}): {t}",
            if what < DRAWS {
                "a session id"
            } else {
                "a token, so its nonce"
            }
        );
    }
    // Both processes' tokens still open: each drew a fresh nonce, from its own randomness.
    for token in [mine[DRAWS].as_str(), theirs[DRAWS], first.as_str()] {
        codec.open(token, b"sid").unwrap();
    }
    println!("fork: the child drew none of the parent's session ids or nonces ... ok");
}

#[cfg(not(unix))]
fn main() {
    println!("fork: skipped (no fork on this platform)");
}
