//! Fuzz targets for sealed-session, one per input surface; `fuzz_targets/*.rs` are thin
//! libFuzzer wrappers around the functions here, and `run.sh` builds and runs them.
//!
//! Every target uses the public API only, over fixed keys and fixture sessions
//! ([`fixtures`]), so that the seed corpora it writes ([`init`]) stay valid and so that it can
//! tell a fixture token from a forgery.

pub mod codecs;
pub mod data;
pub mod fixtures;
pub mod http;

/// One fuzz target: its name (the binary's), its entry point and its seed inputs.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "open_sealed",
        run: codecs::open_sealed,
        seeds: codecs::seeds_sealed,
    },
    Target {
        name: "open_signed",
        run: codecs::open_signed,
        seeds: codecs::seeds_signed,
    },
    Target {
        name: "open_store_id",
        run: codecs::open_store_id,
        seeds: codecs::seeds_store_id,
    },
    Target {
        name: "open_jwt_hmac",
        run: codecs::open_jwt_hmac,
        seeds: || codecs::seeds_jwt(fixtures::JwtRing::Hmac),
    },
    Target {
        name: "open_jwt_asym",
        run: codecs::open_jwt_asym,
        seeds: || codecs::seeds_jwt(fixtures::JwtRing::Asymmetric),
    },
    Target {
        name: "cookie_header",
        run: http::cookie_header,
        seeds: http::seeds_cookie,
    },
    Target {
        name: "authorization_header",
        run: http::authorization_header,
        seeds: http::seeds_authorization,
    },
    Target {
        name: "session_data",
        run: data::session_data,
        seeds: data::seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name:?}"))
}

/// Start-up of target `name`: runs every seed through it (so broken fixtures fail here, with
/// a clear message, rather than as a "crash" on the first input), and when the environment
/// variable `SEALED_SESSION_FUZZ_SEEDS` names a directory, writes the seeds there, one file
/// each, named by a hash of the content.
pub fn init(name: &str) {
    use sha2::{Digest, Sha256};
    let t = target(name);
    let seeds = (t.seeds)();
    for s in &seeds {
        (t.run)(s);
    }
    if let Some(dir) = std::env::var_os("SEALED_SESSION_FUZZ_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("seed directory");
        for s in &seeds {
            let hash = Sha256::digest(s);
            let file: String = hash[..10].iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(dir.join(format!("seed-{file}")), s).expect("seed file");
        }
        eprintln!("{name}: wrote {} seeds to {}", seeds.len(), dir.display());
    }
}
