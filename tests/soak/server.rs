//! The server side: the application each instance runs (in a child process: this test binary
//! started again, running only the ignored test `soak_server_process`), and the parent's handle
//! on such a process.
//!
//! Child protocol: the configuration comes in `SOAK_CHILD` (the instance name), `SOAK_PORT`,
//! `SOAK_KEYS` (a key-ring string), `SOAK_REDIS` (a URL) and `SOAK_SERVER_THREADS`. The child
//! prints `SOAK-LISTENING <port>` once it serves, shuts down gracefully when its standard input
//! closes, then prints `SOAK-STOPPED panics=<n>` and exits. A separate process per instance
//! means a real restart (a fresh denylist replica loaded from Redis), and memory and panics
//! that are the server's own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener as _, TcpAcceptor, TcpListener};
use poem::web::{Data, Query};
use poem::{EndpointExt as _, Route, Server, get, handler, post};
use sealed_session::denylist::{Denylist, RedisDenylist};
use sealed_session::{Keyring, SealedSession, Session};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Panics in this process (the child), counted by a panic hook.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// The Redis key prefix the instances share.
pub const PREFIX: &str = "soak:denylist:";
/// How long a stopping instance may take to finish the requests it has.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
struct Who {
    c: String,
}

#[handler]
fn login(session: &Session, Query(who): Query<Who>) -> poem::Result<String> {
    session.regenerate()?;
    session.insert("c", &who.c)?;
    session.insert("n", &0u64)?;
    session.set_subject(who.c.clone());
    Ok(format!("{} 0", who.c))
}

/// The client id and counter in the session, if it has them.
fn shown(session: &Session) -> poem::Result<Option<(String, u64)>> {
    let Some(c) = session.get::<String>("c")? else {
        return Ok(None);
    };
    Ok(Some((c, session.get::<u64>("n")?.unwrap_or(u64::MAX))))
}

#[handler]
fn me(session: &Session) -> poem::Result<String> {
    Ok(match shown(session)? {
        Some((c, n)) => format!("{c} {n}"),
        None => "-".to_owned(),
    })
}

#[handler]
fn incr(session: &Session) -> poem::Result<String> {
    Ok(match shown(session)? {
        Some((c, n)) => {
            session.insert("n", &(n + 1))?;
            format!("{c} {}", n + 1)
        }
        None => "-".to_owned(),
    })
}

#[handler]
fn logout(session: &Session) -> poem::Result<&'static str> {
    session.destroy()?;
    Ok("bye")
}

#[handler]
fn status(denylist: Data<&Arc<dyn Denylist>>) -> String {
    let s = denylist.status();
    format!(
        "health={} revoked={} subjects={} panics={}",
        s.health.label(),
        s.revoked_sessions,
        s.revoked_subjects,
        PANICS.load(Ordering::Relaxed)
    )
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("soak server: {name} is not set"))
}

async fn bind(port: u16) -> TcpAcceptor {
    // The previous process on this port has exited, but give the port a moment anyway.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(format!("127.0.0.1:{port}"))
            .into_acceptor()
            .await
        {
            Ok(a) => return a,
            Err(e) if Instant::now() < deadline => {
                eprintln!("soak server: bind 127.0.0.1:{port}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("soak server: cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// The child process: serves until its standard input closes. Returns at once when this
/// process is not a soak child (the ignored test was run by hand).
pub fn child_main() {
    let Ok(name) = std::env::var("SOAK_CHILD") else {
        eprintln!("soak_server_process runs only as a child of the `soak` test; nothing to do");
        return;
    };
    let port: u16 = env("SOAK_PORT").parse().expect("SOAK_PORT");
    let ring: Keyring = env("SOAK_KEYS").parse().expect("SOAK_KEYS");
    let redis = env("SOAK_REDIS");
    let threads: usize = env("SOAK_SERVER_THREADS")
        .parse()
        .expect("SOAK_SERVER_THREADS");

    // `SOAK_LOG=sealed_session=debug` (an env-filter) shows the library's events.
    if let Ok(filter) = std::env::var("SOAK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::Relaxed);
        previous(info);
    }));

    // Standard input closing (or a `stop` line) starts the graceful shutdown.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0)
            && line.trim() != "stop"
        {
            line.clear();
        }
        let _ = stop_tx.send(());
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(format!("soak-{name}"))
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    rt.block_on(async move {
        let denylist: Arc<dyn Denylist> = Arc::new(
            RedisDenylist::builder(redis)
                .key_prefix(PREFIX)
                .build()
                .await
                .expect("soak server: the Redis denylist"),
        );
        let app = Route::new()
            .at("/login", post(login))
            .at("/me", get(me))
            .at("/incr", post(incr))
            .at("/logout", post(logout))
            .at("/status", get(status))
            .with(SealedSession::sealed(ring).denylist(denylist.clone()))
            .data(denylist);
        let acceptor = bind(port).await;
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("a TCP address")
            .port();
        // On a line of its own: libtest has written `test soak_server_process ... ` before.
        println!("\nSOAK-LISTENING {port}");
        let stopped = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, stopped, Some(DRAIN))
            .await
        {
            eprintln!("soak server {name}: {e}");
        }
    });
    println!("\nSOAK-STOPPED panics={}", PANICS.load(Ordering::Relaxed));
    // The runtime may still hold connections past the drain time: do not wait for them.
    std::process::exit(0);
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One instance process as the parent sees it.
pub struct ServerProc {
    pub name: &'static str,
    pub generation: u32,
    pub keys: String,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    pub rss_start_kib: u64,
    started: Instant,
}

/// What one instance process did, from start to stop.
#[derive(Clone, Debug)]
pub struct Generation {
    pub name: &'static str,
    pub generation: u32,
    pub keys: String,
    pub lifetime: Duration,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub peak_kib: u64,
    pub panics: u64,
    /// It did not report a clean stop (crashed, or had to be killed).
    pub unclean: bool,
}

impl ServerProc {
    /// Starts an instance on `port` with `ring` and waits until it serves.
    pub async fn spawn(
        name: &'static str,
        generation: u32,
        port: u16,
        ring: &Keyring,
        redis_url: &str,
        threads: usize,
    ) -> ServerProc {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["soak_server_process", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("SOAK_CHILD", name)
            .env("SOAK_PORT", port.to_string())
            .env("SOAK_KEYS", ring.to_ring_string().as_str())
            .env("SOAK_REDIS", redis_url)
            .env("SOAK_SERVER_THREADS", threads.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start a soak server process");
        let pid = child.id().expect("a running child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.recv().await {
                if line.starts_with("SOAK-LISTENING ") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(listening, Ok(true)),
            "soak server {name} (generation {generation}) did not start"
        );
        ServerProc {
            name,
            generation,
            keys: ring.ids().collect::<Vec<_>>().join(","),
            pid,
            child,
            stdin,
            lines,
            rss_start_kib: memory_kib(pid).0,
            started,
        }
    }

    /// Stops the instance gracefully (standard input closed) and reports on it.
    pub async fn stop(mut self) -> Generation {
        let (rss_end_kib, peak_kib) = memory_kib(self.pid);
        drop(self.stdin.take());
        let mut panics = None;
        let reported = tokio::time::timeout(DRAIN + Duration::from_secs(10), async {
            while let Some(line) = self.lines.recv().await {
                if let Some(n) = line.strip_prefix("SOAK-STOPPED panics=") {
                    panics = n.trim().parse::<u64>().ok();
                }
            }
        })
        .await;
        let exited = match reported {
            Ok(()) => tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok_and(|s| s.is_ok_and(|s| s.success())),
            Err(_) => false,
        };
        if !exited {
            let _ = self.child.kill().await;
        }
        Generation {
            name: self.name,
            generation: self.generation,
            keys: self.keys,
            lifetime: self.started.elapsed(),
            rss_start_kib: self.rss_start_kib,
            rss_end_kib,
            peak_kib,
            panics: panics.unwrap_or(0),
            unclean: !exited || panics.is_none(),
        }
    }
}
