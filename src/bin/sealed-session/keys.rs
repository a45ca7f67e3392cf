//! Key material: loading rings and JWT keys, `keygen` and `rotate`.

use std::path::Path;

use sealed_session::{
    Algorithm, JwtAlgorithm, JwtKey, JwtKeyError, Key, KeyError, Keyring, MAX_KEY_ID_LEN,
};
use zeroize::Zeroizing;

use crate::{CliError, usage};

/// What `--alg` names: a key of the ring (sealed, signed and store-backed sessions) or a JWT
/// algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyAlg {
    Ring(Algorithm),
    Jwt(JwtAlgorithm),
}

pub fn parse_alg(s: &str) -> Result<AnyAlg, CliError> {
    if let Ok(a) = s.parse::<Algorithm>() {
        return Ok(AnyAlg::Ring(a));
    }
    s.parse::<JwtAlgorithm>()
        .map(AnyAlg::Jwt)
        .map_err(|_| {
            usage(format!(
                "unknown algorithm {:?}: use aes256gcm, chacha20poly1305 or xchacha20poly1305 for a key-ring key (sealed, signed and store-backed sessions), or HS256, HS384, HS512, EdDSA, ES256, ES384, RS256, PS256 for a JWT key",
                s.chars().take(40).collect::<String>()
            ))
        })
}

/// Reads a file of key material, naming the file (never its content) on error.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, CliError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| {
            usage(format!(
                "cannot read the key file {}: {source}",
                path.display()
            ))
        })
}

/// A key-ring string as written in a file: blank lines and `#` comments ignored, lines
/// joined with `,`, an optional `SESSION_KEYS=` prefix and quotes dropped.
fn ring_text_from_file(text: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let line = line
            .strip_prefix("SESSION_KEYS=")
            .unwrap_or(line)
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(line);
    }
    out
}

fn parse_ring(text: &str, from: &str) -> Result<Keyring, CliError> {
    text.parse::<Keyring>()
        .map_err(|source| usage(format!("invalid key material in {from}: {source}")))
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

/// The ring for `inspect`: `--keys`, else `--keys-file`, else `SESSION_KEYS`, else a key
/// derived from `SESSION_SECRET`. `None` when none is given.
pub fn load_ring(
    keys: Option<&str>,
    keys_file: Option<&Path>,
) -> Result<Option<LoadedRing>, CliError> {
    if let Some(k) = keys {
        return parse_ring(k, "--keys").map(|ring| {
            Some(LoadedRing {
                ring,
                from: "--keys".to_owned(),
            })
        });
    }
    if let Some(path) = keys_file {
        let from = format!("--keys-file {}", path.display());
        let text = read_secret_file(path)?;
        return parse_ring(&ring_text_from_file(&text), &from)
            .map(|ring| Some(LoadedRing { ring, from }));
    }
    if let Some(k) = env_nonempty("SESSION_KEYS") {
        return parse_ring(&k, "SESSION_KEYS").map(|ring| {
            Some(LoadedRing {
                ring,
                from: "SESSION_KEYS".to_owned(),
            })
        });
    }
    if let Some(secret) = env_nonempty("SESSION_SECRET") {
        return Keyring::from_secret(secret.as_bytes())
            .map(|ring| {
                Some(LoadedRing {
                    ring,
                    from: "SESSION_SECRET".to_owned(),
                })
            })
            .map_err(|source| usage(format!("invalid key material in SESSION_SECRET: {source}")));
    }
    Ok(None)
}

/// A JWT key from a file holding a PEM private key or a base64 HMAC secret.
pub fn load_jwt_key(path: &Path, kid: &str, alg: JwtAlgorithm) -> Result<JwtKey, CliError> {
    let text = read_secret_file(path)?;
    let from = format!("--jwt-key {}", path.display());
    let key = if text.trim_start().starts_with("-----BEGIN") {
        JwtKey::from_pem(kid, alg, text.as_bytes())
    } else {
        JwtKey::hmac_base64(kid, alg, text.trim())
    };
    key.map_err(|source| usage(format!("invalid JWT key in {from}: {source}")))
}

/// `keygen`: the text to print (a ring entry, an HMAC secret or a PEM) and a note for stderr.
pub fn keygen(alg: AnyAlg, id: &str) -> Result<(Zeroizing<String>, String), CliError> {
    match alg {
        AnyAlg::Ring(alg) => {
            let key = Key::generate(id, alg).map_err(|source| {
                usage(format!(
                    "invalid key material in the new key (--id): {source}"
                ))
            })?;
            Ok((
                key.to_ring_entry(),
                format!(
                    "key {id} ({alg}) in key-ring form; put it first in SESSION_KEYS (or run `sealed-session rotate`), newest first"
                ),
            ))
        }
        AnyAlg::Jwt(jalg) => match JwtKey::generate(id, jalg) {
            Ok((_, text)) if jalg.is_symmetric() => Ok((
                text,
                format!(
                    "{jalg} secret for kid {id}, base64url; load it with JwtKey::hmac_base64 or `inspect --jwt-key FILE`"
                ),
            )),
            Ok((_, pem)) => Ok((
                pem,
                format!(
                    "{jalg} private key (PKCS#8 PEM) for kid {id}; load it with JwtKey::from_pem or `inspect --jwt-key FILE`"
                ),
            )),
            Err(JwtKeyError::GenerateUnsupported { alg, hint }) => Err(CliError {
                code: crate::exit::UNSUPPORTED,
                message: format!(
                    "sealed-session cannot generate {alg} keys; make one with:\n    {hint}\nthen use the PEM file with JwtKey::from_pem, or `sealed-session inspect --jwt-key key.pem`"
                ),
            }),
            Err(source) => Err(usage(format!(
                "invalid JWT key in the new key (--id): {source}"
            ))),
        },
    }
}

/// The ring for `rotate`: the argument, else `--file`, else `SESSION_KEYS`.
pub fn load_rotate_ring(ring: Option<&str>, file: Option<&Path>) -> Result<LoadedRing, CliError> {
    if let Some(r) = ring {
        return parse_ring(r, "the RING argument").map(|ring| LoadedRing {
            ring,
            from: "argument".to_owned(),
        });
    }
    if let Some(path) = file {
        let from = format!("--file {}", path.display());
        let text = read_secret_file(path)?;
        return parse_ring(&ring_text_from_file(&text), &from)
            .map(|ring| LoadedRing { ring, from });
    }
    match env_nonempty("SESSION_KEYS") {
        Some(k) => parse_ring(&k, "SESSION_KEYS").map(|ring| LoadedRing {
            ring,
            from: "SESSION_KEYS".to_owned(),
        }),
        None => Err(usage(
            "no key ring to rotate: give it as the RING argument, with --file PATH, or in SESSION_KEYS; to start a ring, run `sealed-session keygen`".to_owned(),
        )),
    }
}

/// The next free id of the form `k<N>`: one more than the largest `k<N>` in the ring, or the
/// number of keys plus one.
pub fn next_id(ring: &Keyring) -> String {
    let largest = ring
        .ids()
        .filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
        .max();
    let count = u64::try_from(ring.ids().count()).unwrap_or(u64::MAX);
    let mut n = largest.map_or(count, |l| l.max(count)).saturating_add(1);
    loop {
        let id = format!("k{n}");
        if id.len() > MAX_KEY_ID_LEN {
            return "k1".to_owned();
        }
        if !ring.ids().any(|i| i == id) {
            return id;
        }
        n = n.saturating_add(1);
    }
}

/// Which rotation `rotate` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A fresh key becomes the primary at once (one instance, or all restarted together).
    Replace,
    /// A fresh key is added in second place: opened everywhere, sealed with nowhere yet.
    Stage,
    /// The second key (or `--id`) becomes the primary; no new key.
    Promote,
}

/// `rotate`: a new ring, and what happened for stderr.
pub fn rotate(
    old: &Keyring,
    step: Step,
    alg: Option<Algorithm>,
    id: Option<&str>,
    keep: Option<usize>,
) -> Result<(Keyring, String), CliError> {
    let keep = match keep {
        Some(0) => {
            return Err(usage("--keep must be at least 1 (the new key)".to_owned()));
        }
        Some(n) => n,
        None => usize::MAX,
    };
    let key_error = |source| match source {
        KeyError::DuplicateKeyId(id) => usage(format!(
            "key id {id:?} is already in the ring; choose another with --id"
        )),
        source => usage(format!(
            "invalid key material in the new key (--id): {source}"
        )),
    };
    let (ring, head) = match step {
        Step::Replace | Step::Stage => {
            let alg = alg.unwrap_or_else(|| old.primary_algorithm());
            let id = id.map_or_else(|| next_id(old), str::to_owned);
            let key = Key::generate(&id, alg).map_err(|source| {
                usage(format!(
                    "invalid key material in the new key (--id): {source}"
                ))
            })?;
            if step == Step::Replace {
                let ring = old.rotate(key, keep).map_err(key_error)?;
                (ring, format!("new primary {id} ({alg})"))
            } else {
                let mut keys = old.keys().cloned();
                let primary = keys.next();
                let ring = Keyring::new(
                    primary
                        .into_iter()
                        .chain(std::iter::once(key))
                        .chain(keys)
                        .take(keep.max(2)),
                )
                .map_err(key_error)?;
                (
                    ring,
                    format!(
                        "staged {id} ({alg}) in second place; primary still {}. Deploy this ring to every instance, then run `sealed-session rotate --promote`",
                        old.primary_id()
                    ),
                )
            }
        }
        Step::Promote => {
            let target = match id {
                Some(id) => id.to_owned(),
                None => old.ids().nth(1).map(str::to_owned).ok_or_else(|| {
                    usage(
                        "the ring has one key: nothing to promote (stage one with `rotate --stage`)"
                            .to_owned(),
                    )
                })?,
            };
            let key = old
                .keys()
                .find(|k| k.id() == target)
                .cloned()
                .ok_or_else(|| usage(format!("no key {target:?} in the ring")))?;
            let ring = Keyring::new(
                std::iter::once(key.clone())
                    .chain(old.keys().filter(|k| k.id() != target).cloned())
                    .take(keep),
            )
            .map_err(key_error)?;
            (ring, format!("new primary {target} ({})", key.algorithm()))
        }
    };
    let kept: Vec<&str> = ring.ids().skip(1).collect();
    let retired: Vec<&str> = old
        .ids()
        .filter(|i| !kept.contains(i) && *i != ring.primary_id())
        .collect();
    let mut note = format!(
        "{head}; still opening: {}",
        if kept.is_empty() {
            "none".to_owned()
        } else {
            kept.join(", ")
        }
    );
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

    const K: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn next_ids() {
        let ring: Keyring = format!("k2:{K},old:{K}").parse().unwrap();
        assert_eq!(next_id(&ring), "k3");
        let ring: Keyring = format!("a:{K},b:{K}").parse().unwrap();
        assert_eq!(next_id(&ring), "k3");
    }

    #[test]
    fn file_forms() {
        let t = ring_text_from_file("# keys\nexport SESSION_KEYS=\"k2:x\"\n\nk1:y\n");
        assert_eq!(t.as_str(), "k2:x,k1:y");
    }

    #[test]
    fn algs() {
        assert_eq!(
            parse_alg("AES-256-GCM").unwrap(),
            AnyAlg::Ring(Algorithm::Aes256Gcm)
        );
        assert_eq!(
            parse_alg("eddsa").unwrap(),
            AnyAlg::Jwt(JwtAlgorithm::EdDSA)
        );
        assert!(parse_alg("none").is_err());
    }
}
