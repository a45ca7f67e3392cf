//! Seal a session into a token and open it again, with key rotation and server-side expiry.
//!
//! `cargo run --example seal_open`

use std::time::Duration;

use sealed_session::{
    Algorithm, Clock, Codec, Key, Keyring, Policy, SealedCodec, SessionId, SessionState,
    SystemClock,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let old = Key::generate("k1", Algorithm::Aes256Gcm)?;
    let policy = Policy::new()
        .max_age(Duration::from_secs(8 * 3600))
        .idle_timeout(Some(Duration::from_secs(30 * 60)));
    let now = SystemClock.now();

    // Seal under k1.
    let codec = SealedCodec::new(Keyring::new([old.clone()])?);
    let mut state = SessionState::new(SessionId::generate()?, now, policy.expires_at(now));
    state.insert("user", "alice")?;
    state.set_subject(Some("user-42".to_owned()));
    let token = codec.seal(&state, b"sid")?;
    println!("token ({} bytes): {token}", token.len());

    // Rotate: k2 is now primary, k1 still opens.
    let rotated = SealedCodec::new(Keyring::new([
        Key::generate("k2", Algorithm::XChaCha20Poly1305)?,
        old,
    ])?);
    let (opened, fresh) = rotated.open_checked(&token, b"sid", &policy, now)?;
    println!(
        "opened with key {}, re-issue under the primary: {}, renewal due: {}",
        opened.key_id(),
        opened.needs_reissue(),
        fresh.renew
    );
    let state = opened.into_state();
    println!("user = {:?}", state.get::<String>("user")?);
    let reissued = rotated.seal(&state, b"sid")?;
    println!("re-issued under k2 ({} bytes)", reissued.len());

    // A token pasted into another cookie, or one past its deadline, is refused.
    println!(
        "other cookie: {}",
        rotated.open(&reissued, b"other").unwrap_err()
    );
    let later = now.saturating_add(Duration::from_secs(9 * 3600));
    let err = rotated
        .open_checked(&reissued, b"sid", &policy, later)
        .unwrap_err();
    println!("nine hours later: {err}");
    Ok(())
}
