//! `sealed-session`: make and rotate keys, and decode a session cookie or token.
//!
//! Built with the `cli` feature: `cargo run --features cli --bin sealed-session -- --help`.

#![forbid(unsafe_code)]

mod input;
mod inspect;
mod keys;
mod report;
mod timefmt;

use std::io::{IsTerminal, Read, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sealed_session::{Algorithm, JwtAlgorithm, Timestamp};
use zeroize::Zeroizing;

/// Exit codes scripts can rely on; `EXIT_CODES` is what the help says of them.
pub mod exit {
    /// The token is valid (verified, not expired, not revoked), or the key was made.
    pub const OK: u8 = 0;
    /// The token is refused: forged, malformed, unknown key, expired, idle, ..., or revoked.
    pub const REFUSED: u8 = 1;
    /// Bad arguments or input: unreadable file, invalid key material, no session cookie.
    pub const USAGE: u8 = 2;
    /// No key to verify the token with: what can be read without it was printed.
    pub const NO_KEY: u8 = 3;
    /// Redis (the revocation denylist) could not be reached or could not vouch for the session.
    pub const REDIS: u8 = 4;
    /// A key type this tool cannot generate, or --redis in a build without the `redis` feature.
    pub const UNSUPPORTED: u8 = 5;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  ok: the token is valid (verified, not expired, not revoked); keygen/rotate succeeded
  1  token refused: forged, tampered, malformed, unknown key id, expired, idle timeout,
     from the future, wrong issuer/audience, or revoked
  2  usage error or bad input: bad arguments, unreadable file, invalid key material,
     no session cookie in the input
  3  no key: the token could not be verified (what is readable without the key is shown)
  4  Redis unreachable: revocation could not be checked
  5  unsupported here: a key type this tool cannot generate (the openssl command to run
     is printed), or --redis in a build without the `redis` feature";

const TOP_EXAMPLES: &str = "\
Examples:
  sealed-session keygen                          # a key for SESSION_KEYS
  sealed-session keygen --alg eddsa --id j1 > jwt.pem
  SESSION_KEYS=$(sealed-session rotate --keep 3) # new primary, keep the 2 newest old keys
  sealed-session inspect 'Cookie: theme=dark; __Host-sid=AQEC...'
  pbpaste | sealed-session inspect --json";

#[derive(Parser)]
#[command(
    name = "sealed-session",
    version,
    about = "Make and rotate sealed-session keys; decode a session cookie or token",
    after_help = format!("{TOP_EXAMPLES}\n\n{EXIT_CODES}")
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new key: a key-ring entry (id:algorithm:base64url) for sealed, signed and
    /// store-backed sessions, or a JWT key (base64url HMAC secret, or PEM for EdDSA).
    #[command(after_help = format!("\
Examples:
  sealed-session keygen                        # k1:aes256gcm:...
  sealed-session keygen --alg xchacha20poly1305 --id k7
  sealed-session keygen --alg HS256 --id j1 > jwt-secret.b64
  sealed-session keygen --alg EdDSA --id j1 > jwt.pem
  sealed-session keygen --alg ES256            # prints the openssl command; exit 5

The key goes to standard output and nowhere else; notes go to standard error.

{EXIT_CODES}"))]
    Keygen {
        /// aes256gcm (default), chacha20poly1305, xchacha20poly1305 for the key ring;
        /// HS256, HS384, HS512, EdDSA (ES256, ES384, RS256, PS256: use openssl) for JWTs.
        #[arg(long, default_value = "aes256gcm", value_parser = keys::parse_alg)]
        alg: keys::AnyAlg,
        /// The key id: 1 to 16 characters (64 for JWT kids) of A-Z a-z 0-9 . _ -
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Add a new primary key to a key ring, optionally retire the oldest, print the new ring.
    #[command(after_help = format!("\
The ring is read from the RING argument, else --file, else the SESSION_KEYS variable.
The new ring (newest first) goes to standard output; what changed goes to standard error.
Retire a key no sooner than the session max-age after it stopped being primary.

Examples:
  SESSION_KEYS=$(sealed-session rotate)            # k2 before k1
  sealed-session rotate --file keys.txt --keep 2   # new key, the newest old one kept
  sealed-session rotate --alg xchacha20poly1305 --id k9 \"$SESSION_KEYS\"

{EXIT_CODES}"))]
    Rotate(RotateArgs),
    /// Decode a session token, Set-Cookie value or Cookie header, and check it with the keys.
    #[command(after_help = format!("\
INPUT is a bare token, a Set-Cookie value ('__Host-sid=...; Path=/; ...', several lines for
chunks), or a whole Cookie header ('a=b; __Host-sid.0=...; __Host-sid.1=...'); a leading
'Cookie:' or 'Set-Cookie:' is ignored. Without INPUT (or with '-') it is read from standard
input, which keeps the token out of the shell history.

Keys: --keys, else --keys-file, else SESSION_KEYS, else a key derived from SESSION_SECRET,
as the application does; for a JWT, --jwt-key (alg and kid are taken from the token unless
--jwt-alg/--kid pin them). Without a key, what can be read is shown (the header; the payload
of signed tokens and JWTs, marked UNVERIFIED) and the exit code is 3. Key material is never
printed.

The purpose (what a token is bound to) is the cookie's name as sent, e.g. __Host-sid; for a
bare token both __Host-NAME and NAME are tried. --purpose sets it.

--json prints one object: status (valid|refused|unverified), exit_code, verified, reason
(OpenError::reason(): bad_seal, expired, idle_timeout, unknown_key_id, malformed, revoked,
...), error, hint, source (token|cookie|set-cookie), cookie_name, chunks, token_length, kind
(sealed|signed|session_id|jwt), format_version, key_id, algorithm, key_is_primary,
keys_from, purpose, session_id, subject, issued_at, last_seen, expires_at, idle_expires_at
(each {{ms, rfc3339, relative}} or null), expired, revocation (not_checked|allowed|
revoked_session|revoked_subject|unavailable), data, jwt_header, jwt_claims, unreadable (what
needs the key), notes, now.

Examples:
  sealed-session inspect --keys-file keys.txt 'AQECazEA...'
  SESSION_KEYS=... sealed-session inspect \"$(pbpaste)\"
  sealed-session inspect --name sid 'Cookie: a=b; __Host-sid=AQEC...'
  sealed-session inspect --jwt-key jwt.pem --audience api eyJ0eXAiOiJKV1Qi...
  sealed-session inspect --redis redis://127.0.0.1/ --json < cookie.txt

{EXIT_CODES}"))]
    Inspect(Box<InspectArgs>),
}

/// `rotate`'s arguments.
#[derive(Args)]
struct RotateArgs {
    /// The key ring (id:algorithm:base64, comma-separated, newest first). Prefer --file
    /// or SESSION_KEYS: arguments are visible to other users of the machine.
    ring: Option<String>,
    /// Read the ring from this file (one entry per line or comma-separated; `#` comments
    /// and a SESSION_KEYS= prefix are allowed).
    #[arg(long, value_name = "PATH", conflicts_with = "ring")]
    file: Option<PathBuf>,
    /// Algorithm of the new key. Default: that of the current primary key.
    #[arg(long, value_parser = keys::parse_ring_alg)]
    alg: Option<Algorithm>,
    /// Id of the new key. Default: k<N>, N one more than the largest k-number in the ring
    /// or than its number of keys.
    #[arg(long)]
    id: Option<String>,
    /// Keep at most N keys in all, the new one included; older ones are retired.
    #[arg(long, value_name = "N")]
    keep: Option<NonZeroUsize>,
    /// Step 1 of a rotation across several instances: add the new key in second place,
    /// so that every instance opens it before any seals with it. Deploy that ring
    /// everywhere, then run `rotate --promote`.
    #[arg(long, conflicts_with = "promote")]
    stage: bool,
    /// Step 2: make the second key (or the one named by --id) the primary, without a new
    /// key.
    #[arg(long, conflicts_with = "alg")]
    promote: bool,
}

/// `inspect`'s arguments.
#[derive(Args)]
struct InspectArgs {
    /// Token, Set-Cookie value or Cookie header; '-' or nothing reads standard input.
    input: Option<String>,
    /// Session cookie name, without the __Host- prefix (both are tried).
    #[arg(long, default_value = "sid")]
    name: String,
    /// The purpose the token is bound to. Default: the cookie's name as sent.
    #[arg(long)]
    purpose: Option<String>,
    /// Key ring string. Prefer --keys-file or SESSION_KEYS (arguments are visible to
    /// other users of the machine).
    #[arg(long, value_name = "RING")]
    keys: Option<String>,
    /// Read the key ring from this file.
    #[arg(long, value_name = "PATH", conflicts_with = "keys")]
    keys_file: Option<PathBuf>,
    /// JWT key file: a PEM private key, or a base64 HMAC secret.
    #[arg(long, value_name = "PATH")]
    jwt_key: Option<PathBuf>,
    /// JWT algorithm of --jwt-key. Default: the token's alg.
    #[arg(long, value_name = "ALG")]
    jwt_alg: Option<JwtAlgorithm>,
    /// kid of --jwt-key. Default: the token's kid.
    #[arg(long)]
    kid: Option<String>,
    /// The JWT issuer (iss) the application configures.
    #[arg(long)]
    issuer: Option<String>,
    /// The JWT audience (aud) the application configures.
    #[arg(long)]
    audience: Option<String>,
    /// Idle timeout to check against (30m, 1h, none); the library's default is 1h.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = timefmt::parse_idle)]
    idle_timeout: timefmt::Idle,
    /// Clock leeway for times in the future and JWT exp.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = timefmt::parse_duration)]
    leeway: Duration,
    /// Check as of this time (milliseconds since the epoch, or RFC 3339). Default: now.
    #[arg(long, value_name = "TIME", value_parser = timefmt::parse_now)]
    now: Option<Timestamp>,
    /// Check revocation in this Redis denylist (redis://host:port/db; feature `redis`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Key prefix of the Redis denylist. Default: the library's, sealed-session:denylist:
    #[arg(long, value_name = "PREFIX", requires = "redis")]
    redis_prefix: Option<String>,
    /// Time limit for connecting to Redis.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = timefmt::parse_duration, requires = "redis")]
    redis_timeout: Duration,
    /// Print one JSON object (fields below) instead of text.
    #[arg(long)]
    json: bool,
}

/// Why a command could not run (as opposed to a token being refused): its exit code, and a
/// message that names the file or argument at fault, never key material.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

/// A usage error (exit 2) with this message.
fn usage(message: impl Into<String>) -> CliError {
    CliError {
        code: exit::USAGE,
        message: message.into(),
    }
}

/// `items` joined with `, `, or `none`.
fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| usage(format!("cannot write to standard output: {e}")))
}

fn read_input(arg: Option<&str>) -> Result<String, CliError> {
    if let Some(s) = arg.filter(|s| *s != "-") {
        return Ok(s.to_owned());
    }
    let stdin = std::io::stdin();
    if arg.is_none() && stdin.is_terminal() {
        return Err(usage(
            "no input: give a token, Set-Cookie value or Cookie header as an argument, or pipe it in (see `sealed-session inspect --help`)",
        ));
    }
    // Far more than any cookie header; refuse the rest rather than read without end.
    std::io::read_to_string(stdin.lock().take(1 << 20))
        .map_err(|e| usage(format!("cannot read standard input: {e}")))
}

fn run(cli: Cli) -> Result<u8, CliError> {
    let (mut out, note) = match cli.command {
        Command::Keygen { alg, id } => {
            let (key, note) = keys::keygen(alg, &id)?;
            (Zeroizing::new(key.trim_end().to_owned()), note)
        }
        Command::Rotate(args) => {
            let (ring, note) = keys::rotate(&args)?;
            (ring.to_ring_string(), note)
        }
        Command::Inspect(args) => {
            if cfg!(not(feature = "redis")) && args.redis.is_some() {
                return Err(CliError {
                    code: exit::UNSUPPORTED,
                    message: "this build has no Redis support; rebuild with `--features cli,redis` to use --redis".to_owned(),
                });
            }
            let text = read_input(args.input.as_deref())?;
            let found = input::find_token(&text, &args.name)?;
            let ring = keys::load_ring(
                args.keys.as_deref().map(|k| ("--keys", k)),
                args.keys_file.as_deref().map(|p| ("--keys-file", p)),
                true,
            )?;
            let report = inspect::inspect(&args, &found, ring)?;
            print_stdout(&report.render(args.json)?)?;
            return Ok(report.exit_code);
        }
    };
    eprintln!("{note}");
    out.push('\n');
    print_stdout(&out)?;
    Ok(exit::OK)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
