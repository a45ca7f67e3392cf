//! A throw-away `redis-server` for integration tests, and a TCP proxy that can cut one
//! client off from it.
//!
//! `RedisServer::start()` finds `redis-server` on `PATH`, starts it on a free loopback port
//! with no persistence, waits until it answers `PING`, and kills it on drop. It can be stopped
//! and restarted on the same port for outage tests; `start_persistent` keeps its data across
//! restarts (append-only file, fsync on every write), as a production Redis should. When
//! `redis-server` is missing it prints
//! `SKIPPED: ...` and returns `None`, unless `CI=true`, where a missing server is a failure.
//!
//! Use from a test file with `mod common { pub mod redis; }`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `redis-server` from `PATH`, if any.
pub fn find_redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (free when asked; taken by the caller soon after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Whether something on `port` answers a Redis `PING`.
pub fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A `redis-server` child process on a loopback port.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The data directory of a persistent server, removed on drop.
    data_dir: Option<PathBuf>,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after printing why) when `redis-server` is not
    /// installed. Under `CI=true` a missing server panics instead: CI must run these tests.
    pub fn start(test: &str) -> Option<RedisServer> {
        RedisServer::start_with(test, false)
    }

    /// Like [`RedisServer::start`], but with an append-only file in a temporary directory,
    /// fsynced before every reply: what Redis acknowledged survives `stop` (a kill) and
    /// `restart`.
    pub fn start_persistent(test: &str) -> Option<RedisServer> {
        RedisServer::start_with(test, true)
    }

    fn start_with(test: &str, persistent: bool) -> Option<RedisServer> {
        let Some(binary) = find_redis_server() else {
            let why = format!(
                "redis-server not found on PATH; {test} needs a real Redis \
                 (install it, e.g. `apt-get install redis-server`)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}; CI=true, so this fails instead of skipping");
            }
            // Straight to stderr, past the test harness's capture, so a passing run still
            // says what it skipped.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
            return None;
        };
        let port = free_port();
        let data_dir = persistent.then(|| {
            let dir = std::env::temp_dir().join(format!(
                "sealed-session-redis-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create the Redis data directory");
            dir
        });
        let mut server = RedisServer {
            binary,
            port,
            child: None,
            data_dir,
        };
        server.spawn();
        Some(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Whether the server is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits until the port no longer answers. Data is lost,
    /// unless the server is persistent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while answers_ping(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port: empty, or with its data when persistent.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut cmd = Command::new(&self.binary);
            cmd.args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--daemonize", "no"]);
            match &self.data_dir {
                Some(dir) => cmd
                    .args(["--appendonly", "yes"])
                    .args(["--appendfsync", "always"])
                    .arg("--dir")
                    .arg(dir),
                None => cmd.args(["--appendonly", "no"]),
            };
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            self.child = Some(child);
            while Instant::now() < deadline {
                if answers_ping(self.port) {
                    return;
                }
                // Exited early (port taken between `free_port` and the bind?): try again.
                if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                self.port
            );
            self.child = None;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TCP proxy from a loopback port to `target`, that can cut every connection (and refuse
/// new ones) and be restored, to cut one client off while others keep their connection.
/// Runs on the current Tokio runtime.
pub struct Proxy {
    port: u16,
    target: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy on a free port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Proxy {
        let proxy = Proxy {
            port: free_port(),
            target,
            tasks: Arc::default(),
        };
        proxy.listen().await;
        proxy
    }

    /// `redis://127.0.0.1:PORT/` through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Closes every proxied connection and stops accepting new ones.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn restore(&self) {
        self.cut();
        self.listen().await;
    }

    async fn listen(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("proxy cannot bind port {}: {e}", self.port),
            }
        };
        let target = self.target;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
