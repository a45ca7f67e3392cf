//! The device registry of the SQL stores: a second table beside the sessions',
//! `{table}_devices`, one row per recorded session, on the store's own pool. See
//! [`PostgresStore::device_registry`](super::PostgresStore::device_registry) and
//! [`SqliteStore::device_registry`](super::SqliteStore::device_registry).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::sql::{Arg, Core, Dialect, Exec, SWEEP_BATCH, millis, text};
use super::{BoxFuture, StoreError};
use crate::clock::Timestamp;
use crate::devices::{DeviceRecord, Registry, RegistryError, live_newest_first, parse_entries};
use crate::state::SessionId;

/// The SQL of the devices table of sessions table `table` (already checked to be a plain
/// identifier of at most 48 bytes, so both names fit PostgreSQL's 63).
#[derive(Debug)]
pub(super) struct DeviceQueries {
    pub(super) create_table: Box<str>,
    pub(super) create_index: Box<str>,
    /// Fails unless the table exists with the registry's columns.
    pub(super) check: Box<str>,
    /// `$1` subject, `$2` id, `$3` entry, `$4` renewed, `$5` expires_at.
    record: Box<str>,
    /// `$1` subject, `$2` now, `$3` bound.
    trim: Box<str>,
    /// `$1` subject, `$2` now.
    list: Box<str>,
    /// `$1` subject, `$2` id.
    remove: Box<str>,
    /// `$1` now.
    pub(super) sweep: Box<str>,
}

impl DeviceQueries {
    pub(super) fn new(dialect: Dialect, table: &str) -> DeviceQueries {
        let t = format!("\"{table}_devices\"");
        let (bytes, int, skip_locked) = match dialect {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => ("BYTEA", "BIGINT", " FOR UPDATE SKIP LOCKED"),
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => ("BLOB", "INTEGER", ""),
        };
        DeviceQueries {
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (subject TEXT NOT NULL, id TEXT NOT NULL, \
                 entry {bytes} NOT NULL, renewed {int} NOT NULL, expires_at {int} NOT NULL, \
                 PRIMARY KEY (subject, id))"
            )
            .into(),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_dev_exp_idx\" ON {t} (expires_at)"
            )
            .into(),
            check: format!("SELECT subject, id, entry, renewed, expires_at FROM {t} LIMIT 0")
                .into(),
            record: format!(
                "INSERT INTO {t} (subject, id, entry, renewed, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, id) DO UPDATE \
                 SET entry = excluded.entry, renewed = excluded.renewed, \
                 expires_at = excluded.expires_at"
            )
            .into(),
            trim: format!(
                "DELETE FROM {t} WHERE subject = $1 AND (expires_at <= $2 OR id NOT IN \
                 (SELECT id FROM {t} WHERE subject = $1 AND expires_at > $2 \
                 ORDER BY renewed DESC, id LIMIT $3))"
            )
            .into(),
            list: format!("SELECT entry FROM {t} WHERE subject = $1 AND expires_at > $2").into(),
            remove: format!("DELETE FROM {t} WHERE subject = $1 AND id = $2").into(),
            sweep: format!(
                "DELETE FROM {t} WHERE (subject, id) IN (SELECT subject, id FROM {t} \
                 WHERE expires_at <= $1 LIMIT {SWEEP_BATCH}{skip_locked})"
            )
            .into(),
        }
    }
}

/// A [`Registry`] on a SQL store's pool.
pub(super) struct SqlRegistry<E> {
    core: Arc<Core<E>>,
    max: usize,
}

/// The registry on `core`'s pool, its table made: from then on the store's sweep sweeps the
/// table too.
pub(super) fn registry<E: Exec>(core: &Arc<Core<E>>, max_per_subject: usize) -> Arc<dyn Registry> {
    core.devices.in_use.store(true, Ordering::Release);
    Arc::new(SqlRegistry {
        core: core.clone(),
        max: max_per_subject.max(1),
    })
}

fn failed(op: &'static str, e: StoreError) -> RegistryError {
    let (backend, source): (&'static str, Box<dyn std::error::Error + Send + Sync>) = match e {
        StoreError::Backend { store, source } => (store, source),
        other => ("sql", Box::new(other)),
    };
    RegistryError::Backend {
        backend,
        op,
        source,
    }
}

impl<E: Exec> Registry for SqlRegistry<E> {
    fn record<'a>(&'a self, record: &'a DeviceRecord) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let entry = serde_json::to_vec(record).map_err(|e| RegistryError::Backend {
                backend: self.core.store,
                op: "encode an entry",
                source: Box::new(e),
            })?;
            let sql = &self.core.devices.sql;
            let id = text(&record.id);
            let args = [
                Arg::Text(&record.subject),
                Arg::Text(&id),
                Arg::Bytes(&entry),
                Arg::Int(millis(record.renewed)),
                Arg::Int(millis(record.expires_at)),
            ];
            let op = "record a session";
            self.core
                .run(op, &sql.record, &args)
                .await
                .map_err(|e| failed(op, e))?;
            let bound = i64::try_from(self.max).unwrap_or(i64::MAX);
            let args = [
                Arg::Text(&record.subject),
                Arg::Int(millis(record.renewed)),
                Arg::Int(bound),
            ];
            self.core
                .run(op, &sql.trim, &args)
                .await
                .map_err(|e| failed(op, e))?;
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        subject: &'a str,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Vec<DeviceRecord>, RegistryError>> {
        Box::pin(async move {
            let op = "list sessions";
            let args = [Arg::Text(subject), Arg::Int(millis(now))];
            let rows = self
                .core
                .fetch_all(op, &self.core.devices.sql.list, &args)
                .await
                .map_err(|e| failed(op, e))?;
            let stored = rows.iter().map(Vec::as_slice);
            Ok(live_newest_first(parse_entries(stored), subject, now))
        })
    }

    fn remove<'a>(
        &'a self,
        subject: &'a str,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let op = "remove a session";
            let id = text(id);
            self.core
                .run(
                    op,
                    &self.core.devices.sql.remove,
                    &[Arg::Text(subject), Arg::Text(&id)],
                )
                .await
                .map_err(|e| failed(op, e))
                .map(drop)
        })
    }
}
