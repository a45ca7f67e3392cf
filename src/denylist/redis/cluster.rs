//! Redis Cluster: finding the master that serves the denylist's hash slot.
//!
//! Every key of a cluster denylist carries the same hash tag (see [`Keys`](super::commands::Keys)),
//! so one master holds them all, and the denylist talks to that master directly, as to a
//! single node: its transactions, its subscription and the heartbeat that proves the replica
//! current all run on one connection. This file asks the nodes the application named which
//! master that is (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`); the link asks again whenever the
//! connection is lost or the node answers that it no longer serves the slot (`MOVED`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion,
    Value,
};

use super::commands::{BACKEND, backend, limit};
use crate::denylist::DenylistError;

/// The nodes asked where the denylist's slot is served, and a key of that slot.
pub(super) struct ClusterNodes {
    /// The nodes as the application named them, with RESP3 (for the master's connection).
    seeds: Vec<ConnectionInfo>,
    /// A key of the denylist: its slot is the slot of every key.
    key: String,
    /// The node that answered last: asked first next time.
    answered: AtomicUsize,
}

/// What a lookup is called in errors.
const OP: &str = "find the Redis Cluster master of the denylist's slot";

impl ClusterNodes {
    /// Parses `urls` (`redis://[user:password@]host:port/`; TLS with `rediss://`). The
    /// master found is reached with the credentials and TLS settings of the node that named
    /// it.
    pub(super) fn new(urls: &[String], key: String) -> Result<ClusterNodes, DenylistError> {
        if urls.is_empty() {
            return Err(DenylistError::Backend {
                backend: BACKEND,
                op: OP,
                source: "no Redis Cluster node given".into(),
            });
        }
        let seeds = urls
            .iter()
            .map(|url| {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| backend("parse a Redis Cluster node's URL", e))?;
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                Ok(info.set_redis_settings(settings))
            })
            .collect::<Result<Vec<_>, DenylistError>>()?;
        Ok(ClusterNodes {
            seeds,
            key,
            answered: AtomicUsize::new(0),
        })
    }

    /// A client for the master that serves the slot, asked of the nodes in turn (from the
    /// one that answered last) until one answers. Each node gets an equal share of
    /// `timeout`, so a node that does not answer at all (a host that is down, not a
    /// process that refuses) cannot use up the whole lookup and keep the others from being
    /// asked.
    pub(super) async fn master(&self, timeout: Duration) -> Result<redis::Client, DenylistError> {
        let n = self.seeds.len();
        let share = timeout / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        let first = self.answered.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..n {
            let at = (first + i) % n;
            let Some(seed) = self.seeds.get(at) else {
                continue;
            };
            match limit(share, OP, ask(seed, &self.key, share)).await {
                Ok(Some(addr)) => {
                    self.answered.store(at, Ordering::Relaxed);
                    return redis::Client::open(seed.clone().set_addr(addr))
                        .map_err(|e| backend("open a Redis client", e));
                }
                Ok(None) => {
                    last = Some(DenylistError::Backend {
                        backend: BACKEND,
                        op: OP,
                        source: "no master serves the slot (a failover may be running)".into(),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(DenylistError::Backend {
            backend: BACKEND,
            op: OP,
            source: "no Redis Cluster node given".into(),
        }))
    }
}

/// Asks `seed` for the slot of `key` and the address of its master.
async fn ask(
    seed: &ConnectionInfo,
    key: &str,
    timeout: Duration,
) -> redis::RedisResult<Option<ConnectionAddr>> {
    let client = redis::Client::open(seed.clone())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn: MultiplexedConnection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let (slot, slots): (i64, Value) = redis::pipe()
        .cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await?;
    Ok(master_of(slot, &slots, seed.addr()))
}

/// The master's address in a `CLUSTER SLOTS` reply for `slot`, with the transport of
/// `seed` (TLS or not). Each entry is `[start, end, [host, port, ...], replicas...]`; an
/// empty or nil host means the host the question was sent to, and `?` an unknown endpoint
/// (no answer: another node is asked).
fn master_of(slot: i64, slots: &Value, seed: &ConnectionAddr) -> Option<ConnectionAddr> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let mut fields = fields.iter();
        let start = int(fields.next()?)?;
        let end = int(fields.next()?)?;
        if !(start..=end).contains(&slot) {
            return None;
        }
        let Value::Array(master) = fields.next()? else {
            return None;
        };
        let mut master = master.iter();
        let host = match master.next()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            Value::Nil => String::new(),
            _ => return None,
        };
        let port = u16::try_from(int(master.next()?)?).ok()?;
        let (seed_host, tls) = match seed {
            ConnectionAddr::Tcp(host, _) => (host, None),
            ConnectionAddr::TcpTls {
                host,
                insecure,
                tls_params,
                ..
            } => (host, Some((*insecure, tls_params.clone()))),
            _ => return None,
        };
        if host == "?" {
            return None;
        }
        let host = if host.is_empty() {
            seed_host.clone()
        } else {
            host
        };
        Some(match tls {
            None => ConnectionAddr::Tcp(host, port),
            Some((insecure, tls_params)) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
        })
    })
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use redis::{ConnectionAddr, Value};

    use super::master_of;

    fn node(host: Value, port: i64) -> Value {
        Value::Array(vec![
            host,
            Value::Int(port),
            Value::BulkString(b"0123abcd".to_vec()),
        ])
    }

    fn slots() -> Value {
        Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(Value::BulkString(b"10.0.0.1".to_vec()), 7000),
                node(Value::BulkString(b"10.0.0.4".to_vec()), 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node(Value::BulkString(Vec::new()), 7001),
            ]),
        ])
    }

    fn seed() -> ConnectionAddr {
        ConnectionAddr::Tcp("seed.example".to_owned(), 7005)
    }

    #[test]
    fn the_master_of_the_range_holding_the_slot_is_found() {
        let found = master_of(5460, &slots(), &seed());
        assert_eq!(
            found,
            Some(ConnectionAddr::Tcp("10.0.0.1".to_owned(), 7000))
        );
    }

    #[test]
    fn an_unknown_host_means_the_node_that_was_asked() {
        let found = master_of(6000, &slots(), &seed());
        assert_eq!(
            found,
            Some(ConnectionAddr::Tcp("seed.example".to_owned(), 7001))
        );
    }

    #[test]
    fn a_slot_no_master_serves_or_a_malformed_reply_finds_nothing() {
        assert_eq!(master_of(12000, &slots(), &seed()), None);
        let unknown = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            node(Value::BulkString(b"?".to_vec()), 7000),
        ])]);
        assert_eq!(master_of(0, &unknown, &seed()), None);
        assert_eq!(master_of(1, &Value::Nil, &seed()), None);
        let bad = Value::Array(vec![Value::Array(vec![Value::Int(0)])]);
        assert_eq!(master_of(0, &bad, &seed()), None);
        let bad_port = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            node(Value::BulkString(b"h".to_vec()), 70_000),
        ])]);
        assert_eq!(master_of(0, &bad_port, &seed()), None);
    }

    #[test]
    fn a_tls_seed_gives_a_tls_master() {
        let seed = ConnectionAddr::TcpTls {
            host: "seed.example".to_owned(),
            port: 7005,
            insecure: false,
            tls_params: None,
        };
        let found = master_of(0, &slots(), &seed);
        assert!(matches!(
            found,
            Some(ConnectionAddr::TcpTls { ref host, port: 7000, insecure: false, .. }) if host == "10.0.0.1"
        ));
    }
}
