//! Collector state in SQLite: leases, health, log positions, and the running-record swaps.

use super::{backend, millis, records};
use crate::{CollectedBatch, LogFilePosition, Plans, StoreError};
use chrono::{DateTime, Duration, Utc};
use gpdiag_core::QueryRecord;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub(super) fn claim(
    c: &mut Connection,
    instance: &str,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let n = c
        .execute(
            "INSERT INTO collectors (instance, owner, lease_until_ms) VALUES (?1, ?2, ?4)
             ON CONFLICT (instance) DO UPDATE SET owner = ?2, lease_until_ms = ?4
             WHERE collectors.owner IS NULL OR collectors.owner = ?2
                OR collectors.lease_until_ms IS NULL OR collectors.lease_until_ms <= ?3",
            params![instance, owner, millis(now), millis(now + lease)],
        )
        .map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn release(c: &mut Connection, instance: &str, owner: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE collectors SET owner = NULL, lease_until_ms = NULL
         WHERE instance = ?1 AND owner = ?2",
        params![instance, owner],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn files(c: &Connection, instance: &str) -> Result<Vec<LogFilePosition>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT file_name, identity, offset_bytes FROM collector_files
             WHERE instance = ?1 ORDER BY file_name",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([instance], |r| {
            Ok(LogFilePosition {
                file_name: r.get(0)?,
                identity: r.get(1)?,
                offset: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(super) fn commit(c: &mut Connection, batch: &CollectedBatch) -> Result<(), StoreError> {
    let tx = c.transaction().map_err(backend)?;
    records::upsert_in(&tx, &batch.records, Plans::KeepWhenMissing)?;
    settle(&tx, &batch.instance, &batch.settled_sessions())?;
    {
        let mut save = tx
            .prepare_cached(
                "INSERT INTO collector_files (instance, file_name, identity, offset_bytes)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (instance, file_name) DO UPDATE SET
                    identity = excluded.identity, offset_bytes = excluded.offset_bytes",
            )
            .map_err(backend)?;
        for p in &batch.positions {
            save.execute(params![
                batch.instance,
                p.file_name,
                p.identity,
                i64::try_from(p.offset).unwrap_or(i64::MAX)
            ])
            .map_err(backend)?;
        }
        let mut forget = tx
            .prepare_cached("DELETE FROM collector_files WHERE instance = ?1 AND file_name = ?2")
            .map_err(backend)?;
        for name in &batch.forgotten {
            forget
                .execute(params![batch.instance, name])
                .map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)
}

fn settle(
    tx: &Transaction<'_>,
    instance: &str,
    sessions: &[(String, DateTime<Utc>)],
) -> Result<(), StoreError> {
    let mut delete = tx
        .prepare_cached(
            "DELETE FROM query_records
             WHERE instance = ?1 AND session_id = ?2 AND running = 1 AND start_ms <= ?3",
        )
        .map_err(backend)?;
    for (session, end) in sessions {
        delete
            .execute(params![instance, session, millis(*end)])
            .map_err(backend)?;
    }
    Ok(())
}

pub(super) fn replace_running(
    c: &mut Connection,
    instance: &str,
    running: &[QueryRecord],
) -> Result<(), StoreError> {
    let tx = c.transaction().map_err(backend)?;
    tx.execute(
        "DELETE FROM query_records WHERE instance = ?1 AND running = 1",
        [instance],
    )
    .map_err(backend)?;
    records::upsert_in(&tx, running, Plans::Replace)?;
    tx.commit().map_err(backend)
}

pub(super) fn put_health(
    c: &mut Connection,
    instance: &str,
    health: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO collectors (instance, health) VALUES (?1, ?2)
         ON CONFLICT (instance) DO UPDATE SET health = excluded.health",
        params![instance, health],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn health(c: &Connection, instance: &str) -> Result<Option<String>, StoreError> {
    c.query_row(
        "SELECT health FROM collectors WHERE instance = ?1",
        [instance],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
    .map_err(backend)
}
