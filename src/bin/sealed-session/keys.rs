//! Key material: loading rings and JWT keys, `keygen` and `rotate`.

use std::num::NonZeroUsize;
use std::path::Path;

use sealed_session::{
    Algorithm, JwtAlgorithm, JwtKey, JwtKeyError, Key, KeyError, Keyring, MAX_KEY_ID_LEN,
};
use zeroize::Zeroizing;

use crate::{CliError, RotateArgs, exit, list_or_none, usage};

/// What `--alg` names: a key of the ring (sealed, signed and store-backed sessions) or a JWT
/// algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyAlg {
    Ring(Algorithm),
    Jwt(JwtAlgorithm),
}

/// `keygen --alg`: a key-ring algorithm or a JWT one.
pub fn parse_alg(s: &str) -> Result<AnyAlg, String> {
    if let Ok(a) = s.parse::<Algorithm>() {
        return Ok(AnyAlg::Ring(a));
    }
    s.parse::<JwtAlgorithm>().map(AnyAlg::Jwt).map_err(|_| {
        format!(
            "unknown algorithm {:?}: use aes256gcm, chacha20poly1305 or xchacha20poly1305 for a key-ring key (sealed, signed and store-backed sessions), or HS256, HS384, HS512, EdDSA, ES256, ES384, RS256, PS256 for a JWT key",
            s.chars().take(40).collect::<String>()
        )
    })
}

/// `rotate --alg`: a key-ring algorithm; a JWT one is pointed to `keygen`.
pub fn parse_ring_alg(s: &str) -> Result<Algorithm, String> {
    match parse_alg(s)? {
        AnyAlg::Ring(a) => Ok(a),
        AnyAlg::Jwt(j) => Err(format!(
            "rotate works on key rings ({}); {j} is a JWT algorithm: make a JWT key with `sealed-session keygen --alg {j}`",
            Algorithm::ALL.map(Algorithm::name).join(", ")
        )),
    }
}

/// Reads a file of key material, naming the file (never its content) on error.
fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, CliError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| usage(format!("cannot read the key file {}: {e}", path.display())))
}

/// A key-ring string as written in a file: blank lines and `#` comments ignored, lines
/// joined with `,`, an optional `SESSION_KEYS=` prefix and quotes dropped.
fn ring_text_from_file(text: &str) -> Zeroizing<String> {
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let line = line.strip_prefix("export ").map_or(line, str::trim_start);
            let line = line.strip_prefix("SESSION_KEYS=").unwrap_or(line);
            line.trim().trim_matches(['"', '\''])
        })
        .collect();
    Zeroizing::new(entries.join(","))
}

/// A ring and where it came from (`--keys`, `--keys-file PATH`, `SESSION_KEYS`, ...).
pub struct LoadedRing {
    pub ring: Keyring,
    pub from: String,
}

fn env_nonempty(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name)
        .ok()
        .map(Zeroizing::new)
        .filter(|v| !v.trim().is_empty())
}

/// The first ring given: `text` (with the name of its argument), else the file `file` (with
/// its flag), else `SESSION_KEYS`, else, when `secret`, a key derived from `SESSION_SECRET`.
/// `None` when none is given.
pub fn load_ring(
    text: Option<(&str, &str)>,
    file: Option<(&str, &Path)>,
    secret: bool,
) -> Result<Option<LoadedRing>, CliError> {
    let loaded = |ring: Result<Keyring, KeyError>, from: String| match ring {
        Ok(ring) => Ok(Some(LoadedRing { ring, from })),
        Err(e) => Err(usage(format!("invalid key material in {from}: {e}"))),
    };
    if let Some((from, text)) = text {
        return loaded(text.parse(), from.to_owned());
    }
    if let Some((flag, path)) = file {
        let text = ring_text_from_file(&read_secret_file(path)?);
        return loaded(text.parse(), format!("{flag} {}", path.display()));
    }
    if let Some(keys) = env_nonempty("SESSION_KEYS") {
        return loaded(keys.parse(), "SESSION_KEYS".to_owned());
    }
    match env_nonempty("SESSION_SECRET").filter(|_| secret) {
        Some(s) => loaded(
            Keyring::from_secret(s.as_bytes()),
            "SESSION_SECRET".to_owned(),
        ),
        None => Ok(None),
    }
}

/// A JWT key from a file holding a PEM private key or a base64 HMAC secret.
pub fn load_jwt_key(path: &Path, kid: &str, alg: JwtAlgorithm) -> Result<JwtKey, CliError> {
    let text = read_secret_file(path)?;
    let key = if text.trim_start().starts_with("-----BEGIN") {
        JwtKey::from_pem(kid, alg, text.as_bytes())
    } else {
        JwtKey::hmac_base64(kid, alg, text.trim())
    };
    key.map_err(|e| {
        usage(format!(
            "invalid JWT key in --jwt-key {}: {e}",
            path.display()
        ))
    })
}

/// A fresh key-ring key named by `--id`.
fn new_key(id: &str, alg: Algorithm) -> Result<Key, CliError> {
    Key::generate(id, alg)
        .map_err(|e| usage(format!("invalid key material in the new key (--id): {e}")))
}

/// `keygen`: the text to print (a ring entry, an HMAC secret or a PEM) and a note for stderr.
pub fn keygen(alg: AnyAlg, id: &str) -> Result<(Zeroizing<String>, String), CliError> {
    match alg {
        AnyAlg::Ring(alg) => Ok((
            new_key(id, alg)?.to_ring_entry(),
            format!(
                "key {id} ({alg}) in key-ring form; put it first in SESSION_KEYS (or run `sealed-session rotate`), newest first"
            ),
        )),
        AnyAlg::Jwt(alg) => {
            let (_, text) = JwtKey::generate(id, alg).map_err(|e| match e {
                JwtKeyError::GenerateUnsupported { alg, hint } => CliError {
                    code: exit::UNSUPPORTED,
                    message: format!(
                        "sealed-session cannot generate {alg} keys; make one with:\n    {hint}\nthen use the PEM file with JwtKey::from_pem, or `sealed-session inspect --jwt-key key.pem`"
                    ),
                },
                e => usage(format!("invalid JWT key in the new key (--id): {e}")),
            })?;
            let note = if alg.is_symmetric() {
                format!(
                    "{alg} secret for kid {id}, base64url; load it with JwtKey::hmac_base64 or `inspect --jwt-key FILE`"
                )
            } else {
                format!(
                    "{alg} private key (PKCS#8 PEM) for kid {id}; load it with JwtKey::from_pem or `inspect --jwt-key FILE`"
                )
            };
            Ok((text, note))
        }
    }
}

/// The next free id of the form `k<N>`: one more than the largest `k<N>` in the ring, or the
/// number of keys plus one.
pub fn next_id(ring: &Keyring) -> String {
    let largest = ring
        .ids()
        .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let count = u64::try_from(ring.ids().count()).unwrap_or(u64::MAX);
    // A free id is found within the ring's size; one too long for an id can only be free.
    (largest.max(count).saturating_add(1)..)
        .map(|n| format!("k{n}"))
        .find(|id| !ring.ids().any(|i| i == id))
        .filter(|id| id.len() <= MAX_KEY_ID_LEN)
        .unwrap_or_else(|| "k1".to_owned())
}

/// `rotate`: the new ring, and what happened for stderr. A fresh key becomes the primary at
/// once; with `--stage` it goes in second place (opened everywhere, sealed with nowhere
/// yet); with `--promote` the second key (or `--id`) becomes the primary, with no new key.
pub fn rotate(args: &RotateArgs) -> Result<(Keyring, String), CliError> {
    let old = load_ring(
        args.ring.as_deref().map(|r| ("the RING argument", r)),
        args.file.as_deref().map(|p| ("--file", p)),
        false,
    )?
    .ok_or_else(|| usage("no key ring to rotate: give it as the RING argument, with --file PATH, or in SESSION_KEYS; to start a ring, run `sealed-session keygen`"))?
    .ring;
    // Room for the new key: no reallocation leaves a copy of key material behind.
    let mut keys: Vec<Key> = Vec::with_capacity(old.keys().count() + 1);
    keys.extend(old.keys().cloned());
    let head = if args.promote {
        let target = match args.id.as_deref() {
            Some(id) => id,
            None => old.ids().nth(1).ok_or_else(|| {
                usage("the ring has one key: nothing to promote (stage one with `rotate --stage`)")
            })?,
        };
        let i = keys
            .iter()
            .position(|k| k.id() == target)
            .ok_or_else(|| usage(format!("no key {target:?} in the ring")))?;
        keys[..=i].rotate_right(1); // key i first, the others in their order
        format!("new primary {target} ({})", keys[0].algorithm())
    } else {
        let alg = args.alg.unwrap_or_else(|| old.primary_algorithm());
        let id = args.id.clone().unwrap_or_else(|| next_id(&old));
        keys.insert(usize::from(args.stage), new_key(&id, alg)?);
        if args.stage {
            format!(
                "staged {id} ({alg}) in second place; primary still {}. Deploy this ring to every instance, then run `sealed-session rotate --promote`",
                old.primary_id()
            )
        } else {
            format!("new primary {id} ({alg})")
        }
    };
    let keep = args.keep.map_or(usize::MAX, NonZeroUsize::get);
    let keep = if args.stage { keep.max(2) } else { keep };
    let ring = Keyring::new(keys.into_iter().take(keep)).map_err(|e| match e {
        KeyError::DuplicateKeyId(id) => usage(format!(
            "key id {id:?} is already in the ring; choose another with --id"
        )),
        e => usage(format!("invalid key material in the new key (--id): {e}")),
    })?;
    let kept: Vec<&str> = ring.ids().skip(1).collect();
    let retired: Vec<&str> = old.ids().filter(|i| !ring.ids().any(|k| k == *i)).collect();
    let mut note = format!("{head}; still opening: {}", list_or_none(&kept));
    if !retired.is_empty() {
        note.push_str(&format!(
            "; retired: {} (sessions sealed with them are refused once this ring is deployed: retire a key no sooner than the session max-age after it stopped being primary)",
            retired.join(", ")
        ));
    }
    Ok((ring, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_ids_file_forms_and_algs() {
        let k = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let ring: Keyring = format!("a:{k},b:{k}").parse().unwrap();
        assert_eq!(next_id(&ring), "k3");
        let t = ring_text_from_file("# keys\nexport SESSION_KEYS=\"k2:x\"\n\nk1:y\n");
        assert_eq!(t.as_str(), "k2:x,k1:y");
        assert_eq!(
            parse_alg("AES-256-GCM"),
            Ok(AnyAlg::Ring(Algorithm::Aes256Gcm))
        );
        assert!(parse_ring_alg("HS256").is_err_and(|e| e.contains("keygen --alg HS256")));
    }
}
