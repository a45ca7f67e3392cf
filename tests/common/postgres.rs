//! A throw-away PostgreSQL server for integration tests.
//!
//! `PgServer::start(test).await` finds `initdb` and `postgres` (on `PATH`, then in Debian's
//! `/usr/lib/postgresql/<version>/bin`, newest first), runs `initdb` into a temporary
//! directory (trust authentication, superuser `sealed`), starts `postgres` on a free loopback
//! port with its Unix socket in that directory and `fsync` off, waits until it accepts
//! connections, and creates the database `sessions`. It is stopped and its directory removed
//! on drop; it can be stopped and restarted on the same port (with its data) for outage
//! tests. `PgServer::start_tls` also serves TLS, with a self-signed certificate that
//! `openssl` makes.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `postgres` run
//! as the `postgres` user (which Debian's package creates), the directory being theirs.
//!
//! When the binaries (or, for TLS, `openssl`) are missing it prints `SKIPPED: ...` and
//! returns `None`, unless `CI=true`, where that is a failure.
//!
//! Use from a test file with `mod common { pub mod postgres; }`.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// How long a server may take to accept its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The superuser `initdb` makes.
pub const USER: &str = "sealed";

/// The database each server gets.
pub const DATABASE: &str = "sessions";

/// The directory holding `initdb` and `postgres`: the first on `PATH` that has both, else
/// the newest `/usr/lib/postgresql/<version>/bin` that does.
pub fn find_bindir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A free TCP port on 127.0.0.1 (free when asked; taken by the caller soon after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Prints why a test is skipped, or panics under `CI=true`.
fn skip(test: &str, why: &str) {
    let why = format!("{why}; {test} needs a real PostgreSQL");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this fails instead of skipping");
    }
    // Straight to stderr, past the test harness's capture, so a passing run still says
    // what it skipped.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The output of `id ARGS`, as a number.
fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// A `postgres` child process on a loopback port.
pub struct PgServer {
    bindir: PathBuf,
    /// The temporary directory: `data/` inside, the socket and the server's log beside it.
    base: PathBuf,
    /// The uid and gid to run as (the `postgres` user's, when the tests run as root).
    run_as: Option<(u32, u32)>,
    port: u16,
    child: Option<Child>,
    /// Whether it serves TLS, with the certificate [`PgServer::cert`].
    tls: bool,
}

impl PgServer {
    /// Starts a server with an empty database `sessions`, or returns `None` (after printing
    /// why) when PostgreSQL is not installed. Under `CI=true` that panics instead: CI must
    /// run these tests.
    pub async fn start(test: &str) -> Option<PgServer> {
        PgServer::start_with(test, false).await
    }

    /// Like [`PgServer::start`], but serving TLS too (`ssl=on`) with a self-signed
    /// certificate for `127.0.0.1` and `localhost` made by `openssl`: clients choose (in the
    /// URL's `sslmode`). Without `openssl`, skipped as without PostgreSQL.
    pub async fn start_tls(test: &str) -> Option<PgServer> {
        PgServer::start_with(test, true).await
    }

    async fn start_with(test: &str, tls: bool) -> Option<PgServer> {
        let Some(bindir) = find_bindir() else {
            skip(
                test,
                "initdb and postgres not found on PATH nor in /usr/lib/postgresql/*/bin \
                 (install them, e.g. `apt-get install postgresql`)",
            );
            return None;
        };
        let run_as = if id(&["-u"]) == Some(0) {
            match (id(&["-u", "postgres"]), id(&["-g", "postgres"])) {
                (Some(uid), Some(gid)) => Some((uid, gid)),
                _ => {
                    skip(
                        test,
                        "running as root, and PostgreSQL refuses root, but there is no \
                         `postgres` user to run it as (Debian's postgresql package makes one)",
                    );
                    return None;
                }
            }
        } else {
            None
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "sealed-session-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("create the PostgreSQL directory");
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .expect("give the PostgreSQL directory to the postgres user");
        }
        let mut server = PgServer {
            bindir,
            base,
            run_as,
            port: 0,
            child: None,
            tls,
        };
        if tls && !server.make_certificate() {
            skip(
                test,
                "openssl not found, which makes the test server's TLS certificate \
                 (install it, e.g. `apt-get install openssl`)",
            );
            return None;
        }
        server.initdb();
        server.spawn_on_a_free_port().await;
        let mut conn = server.connect_to("postgres").await;
        sqlx::raw_sql(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        Some(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://sealed@127.0.0.1:PORT/sessions`.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// A connection of its own to the database `sessions`, to look at what a store wrote.
    pub async fn connect(&self) -> PgConnection {
        self.connect_to(DATABASE).await
    }

    async fn connect_to(&self, database: &str) -> PgConnection {
        PgConnection::connect(&self.url_of(database))
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"))
    }

    /// Stops the server (a fast shutdown: clients are disconnected) and waits until it has
    /// exited. Its data stays for [`PgServer::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT: PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port, with its data.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.spawn();
            if self.wait_ready().await {
                return;
            }
            // The port was not free yet (the old server's socket lingering): try again.
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not restart on port {}: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A command running `program` from the server's bin directory as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.base).stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The server's TLS certificate (self-signed, for `127.0.0.1` and `localhost`), for a
    /// URL's `sslrootcert`.
    pub fn cert(&self) -> PathBuf {
        self.base.join("server.crt")
    }

    /// Makes the certificate and its key, owned by the server's user; `false` when there is
    /// no `openssl` to make them.
    fn make_certificate(&self) -> bool {
        let key = self.base.join("server.key");
        let made = Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            // A server's certificate, not a CA's (which rustls refuses to take as one).
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(self.cert())
            .stdin(Stdio::null())
            .output();
        let out = match made {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => panic!("run openssl: {e}"),
        };
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // PostgreSQL refuses a key that others may read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = self.run_as {
            for file in [&key, &self.cert()] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
        true
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "--auth=trust", "--no-sync", "--no-locale"])
            .args(["-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postgres` on a free port; another one if that was taken meanwhile.
    async fn spawn_on_a_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            self.spawn();
            if self.wait_ready().await {
                return;
            }
        }
        panic!("PostgreSQL did not start: {}", self.log());
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.base.join("postgres.log")).expect("create the log");
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.base)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=50"]);
        if self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", self.cert().display()))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    self.base.join("server.key").display()
                ));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
    }

    /// Waits until the server accepts a connection: `false` if it exited first.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if PgConnection::connect(&self.url_of("postgres"))
                .await
                .is_ok()
            {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} did not accept connections within {START_TIMEOUT:?}: {}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The server's log, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
