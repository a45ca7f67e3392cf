//! Throw-away Redis topologies for integration tests: a Redis Cluster of 3 masters and 3
//! replicas, and a Sentinel setup (1 master, 1 replica, 3 Sentinels), each on free loopback
//! ports with its files in a temporary directory. Every process is killed on drop (so also
//! when a test panics), and the directory removed.
//!
//! When `redis-server` or `redis-cli` is missing, `start` prints `SKIPPED: ...` and returns
//! `None`, unless `CI=true`, where that is a failure (as in `common::redis`).
//!
//! Use from a test file with `mod common { pub mod redis; pub mod redis_topology; }`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::redis::{answers_ping, find_redis_server, free_port};

/// How long a topology may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The master's name in the Sentinel setup.
pub const MASTER_NAME: &str = "sessions";

fn find_redis_cli() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-cli"))
        .find(|p| p.is_file())
}

/// The binaries, or `None` after printing why (a panic under `CI=true`).
fn binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (find_redis_server(), find_redis_cli()) {
        (Some(server), Some(cli)) => Some((server, cli)),
        _ => {
            let why = format!(
                "redis-server or redis-cli not found on PATH; {test} needs a real Redis \
                 (install it, e.g. `apt-get install redis-server`)"
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}; CI=true, so this fails instead of skipping");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
            None
        }
    }
}

fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sealed-session-{kind}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// One process of a topology, killed on drop.
struct Process {
    port: u16,
    child: Option<Child>,
}

impl Process {
    fn spawn(binary: &Path, args: &[String], port: u16) -> Process {
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let process = Process {
            port,
            child: Some(child),
        };
        until(&format!("port {port} answers PING"), || answers_ping(port));
        process
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ready` every 50 ms; panics after [`READY_TIMEOUT`].
fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "not ready after {READY_TIMEOUT:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-cli -p port args...`, its output (empty when it fails).
fn run_cli(binary: &Path, port: u16, args: &[&str]) -> String {
    Command::new(binary)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A Redis Cluster: 3 masters, each with 1 replica, `cluster-node-timeout` 1 s.
pub struct RedisCluster {
    server: PathBuf,
    cli: PathBuf,
    nodes: Vec<Process>,
    /// Each node's command line, by position in `nodes`, for restarts.
    args: Vec<Vec<String>>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the six nodes, creates the cluster, and waits until every node says
    /// `cluster_state:ok` and every replica is in sync.
    pub fn start(test: &str) -> Option<RedisCluster> {
        let (server, cli) = binaries(test)?;
        let dir = temp_dir("cluster");
        let mut nodes = Vec::new();
        let mut node_args = Vec::new();
        for _ in 0..6 {
            let port = free_port();
            let bus = free_port();
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("create a node directory");
            let mut list = args(&[
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-config-file",
                "nodes.conf",
            ]);
            list.extend([
                "--port".to_owned(),
                port.to_string(),
                "--cluster-port".to_owned(),
                bus.to_string(),
                "--dir".to_owned(),
                node_dir.display().to_string(),
            ]);
            nodes.push(Process::spawn(&server, &list, port));
            node_args.push(list);
        }
        let cluster = RedisCluster {
            server,
            cli,
            nodes,
            args: node_args,
            dir,
        };
        let mut create = Command::new(&cluster.cli);
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let status = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &cluster.nodes {
            until("cluster_state:ok", || {
                run_cli(&cluster.cli, node.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        for node in &cluster.nodes {
            until("replicas in sync", || {
                let info = run_cli(&cluster.cli, node.port, &["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
        }
        Some(cluster)
    }

    /// `redis://127.0.0.1:PORT/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The port of the master that serves `key`, asked of a running node; waits (up to the
    /// readiness limit) while that node's view names none, as it can for a moment while a
    /// failover spreads by gossip.
    pub fn master_of(&self, key: &str) -> u16 {
        let mut found = None;
        until(&format!("a master serving the slot of {key}"), || {
            found = self.try_master_of(key);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no master serves the slot of {key}"))
    }

    /// Like [`RedisCluster::master_of`], `None` while no master serves it (during a
    /// failover).
    pub fn try_master_of(&self, key: &str) -> Option<u16> {
        let port = self.running_port();
        let slot: u16 = run_cli(&self.cli, port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT");
        for line in run_cli(&self.cli, port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                match (ends.next().flatten(), ends.next().flatten()) {
                    (Some(a), Some(b)) => (a..=b).contains(&slot),
                    (Some(a), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let addr = fields[1].split('@').next().expect("address");
                return Some(
                    addr.rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .expect("port"),
                );
            }
        }
        None
    }

    fn running_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .expect("a running node")
    }

    /// The process id of the node on `port`, while it runs.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node on that port");
        node.kill();
    }

    /// Starts the node on `port` again, with its files: a master killed and replaced by a
    /// failover rejoins as a replica of its successor. Waits until it is in sync.
    pub fn restart(&mut self, port: u16) {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node on that port");
        self.nodes[i].kill();
        self.nodes[i] = Process::spawn(&self.server, &self.args[i], port);
        until("the restarted node in sync", || {
            let info = run_cli(&self.cli, port, &["INFO", "replication"]);
            info.contains("master_link_status:up")
        });
        // And counted by its master (for `WAIT`): online once it has acknowledged, which
        // may be a second after its own link is up.
        let info = run_cli(&self.cli, port, &["INFO", "replication"]);
        let master: u16 = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("master_port:"))
            .and_then(|p| p.parse().ok())
            .expect("the restarted node's master");
        until("the restarted node online at its master", || {
            run_cli(&self.cli, master, &["INFO", "replication"])
                .contains(&format!("port={port},state=online"))
        });
    }

    /// The ports of the running replicas of the master on `master_port`.
    pub fn replicas_of(&self, master_port: u16) -> Vec<u16> {
        let nodes = run_cli(&self.cli, self.running_port(), &["CLUSTER", "NODES"]);
        let id_of = |port: u16| {
            nodes.lines().find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let addr = fields.get(1)?.split('@').next()?;
                (addr.rsplit(':').next()? == port.to_string()).then(|| fields[0].to_owned())
            })
        };
        let master = id_of(master_port).expect("the master's node id");
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .filter(|&p| {
                nodes.lines().any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() > 3
                        && fields[1]
                            .split('@')
                            .next()
                            .and_then(|a| a.rsplit(':').next())
                            == Some(&p.to_string())
                        && fields[2].contains("slave")
                        && !fields[2].contains("fail")
                        && fields[3] == master
                })
            })
            .collect()
    }

    /// `CLUSTER FAILOVER` on the replica on `port` (a manual failover: its master, alive,
    /// becomes its replica), and waits until it says it is a master.
    pub fn manual_failover(&self, port: u16) {
        let out = run_cli(&self.cli, port, &["CLUSTER", "FAILOVER"]);
        assert!(out.contains("OK"), "CLUSTER FAILOVER: {out}");
        until("the replica promoted by CLUSTER FAILOVER", || {
            run_cli(&self.cli, port, &["ROLE"]).starts_with("master")
        });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, its replica, and 3 Sentinels watching it (quorum 2,
/// `down-after-milliseconds` 500, `failover-timeout` 2000).
pub struct RedisSentinels {
    server: PathBuf,
    cli: PathBuf,
    master: Process,
    /// Replicas added after the start (see [`RedisSentinels::add_replica`]).
    added: Vec<Process>,
    replica: Process,
    sentinels: Vec<Process>,
    dir: PathBuf,
}

impl RedisSentinels {
    /// Starts the master and the replica, waits until the replica is in sync, then starts
    /// the Sentinels and waits until each knows the replica and the other two.
    pub fn start(test: &str) -> Option<RedisSentinels> {
        RedisSentinels::start_with(test, None)
    }

    /// Like [`RedisSentinels::start`], with the master and the replica requiring `password`
    /// (`requirepass`, `masterauth`) and the Sentinels given it (`auth-pass`).
    pub fn start_with_password(test: &str, password: &str) -> Option<RedisSentinels> {
        RedisSentinels::start_with(test, Some(password))
    }

    fn start_with(test: &str, password: Option<&str>) -> Option<RedisSentinels> {
        let (server, cli) = binaries(test)?;
        let dir = temp_dir("sentinel");
        let node = |port: u16, extra: &[String]| {
            let mut list = args(&["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
            list.extend(["--port".to_owned(), port.to_string()]);
            list.extend(["--dir".to_owned(), dir.display().to_string()]);
            list.extend_from_slice(extra);
            Process::spawn(&server, &list, port)
        };
        let master_port = free_port();
        let master = node(master_port, &[]);
        let replica_port = free_port();
        let replica = node(
            replica_port,
            &[
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master_port.to_string(),
            ],
        );
        until("the replica in sync", || {
            run_cli(&cli, replica_port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        // Passwords once the replica is in sync (its link stays up), before the Sentinels.
        let mut auth_pass = String::new();
        if let Some(pw) = password {
            run_cli(&cli, replica_port, &["CONFIG", "SET", "masterauth", pw]);
            for port in [replica_port, master_port] {
                run_cli(&cli, port, &["CONFIG", "SET", "requirepass", pw]);
            }
            auth_pass = format!("sentinel auth-pass {MASTER_NAME} {pw}\n");
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                     sentinel failover-timeout {MASTER_NAME} 2000\n{auth_pass}",
                    dir = dir.display()
                ),
            )
            .expect("write a Sentinel configuration");
            let list = vec![conf.display().to_string(), "--sentinel".to_owned()];
            sentinels.push(Process::spawn(&server, &list, port));
        }
        let setup = RedisSentinels {
            server: server.clone(),
            cli,
            master,
            added: Vec::new(),
            replica,
            sentinels,
            dir,
        };
        for s in &setup.sentinels {
            until(
                "each Sentinel knows the replica and the other Sentinels",
                || {
                    let info = run_cli(&setup.cli, s.port, &["SENTINEL", "MASTER", MASTER_NAME]);
                    let lines: Vec<&str> = info.lines().collect();
                    let field = |name: &str| {
                        lines
                            .iter()
                            .position(|l| *l == name)
                            .and_then(|i| lines.get(i + 1))
                            .copied()
                    };
                    field("num-slaves") == Some("1") && field("num-other-sentinels") == Some("2")
                },
            );
        }
        Some(setup)
    }

    /// `redis://127.0.0.1:PORT/` of every Sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}/", s.port))
            .collect()
    }

    /// The master's port.
    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    /// The replica's port.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The master's port, as the first Sentinel names it.
    pub fn named_master_port(&self) -> Option<u16> {
        let port = self.sentinels.first()?.port;
        let out = run_cli(
            &self.cli,
            port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// SIGKILLs the master.
    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Starts one more replica, of the master on `master_port` (after a failover, the
    /// promoted one), and waits until it is in sync; its port.
    pub fn add_replica(&mut self, master_port: u16) -> u16 {
        let port = free_port();
        let mut list = args(&["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        list.extend(["--port".to_owned(), port.to_string()]);
        list.extend(["--dir".to_owned(), self.dir.display().to_string()]);
        list.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master_port.to_string(),
        ]);
        self.added.push(Process::spawn(&self.server, &list, port));
        until("the added replica in sync", || {
            run_cli(&self.cli, port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        port
    }
}

impl Drop for RedisSentinels {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            s.kill();
        }
        self.master.kill();
        self.replica.kill();
        for r in &mut self.added {
            r.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
