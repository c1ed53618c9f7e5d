//! Collector state in PostgreSQL: leases, health, log positions, and the running-record swaps.

use super::{backend, records};
use crate::{CollectedBatch, LogFilePosition, Plans, StoreError};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Object;
use gpdiag_core::QueryRecord;

pub(super) async fn claim(
    client: &Object,
    instance: &str,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let until = now + lease;
    let n = client
        .execute(
            "INSERT INTO collectors (instance, owner, lease_until) VALUES ($1, $2, $4)
             ON CONFLICT (instance) DO UPDATE SET owner = $2, lease_until = $4
             WHERE collectors.owner IS NULL OR collectors.owner = $2
                OR collectors.lease_until IS NULL OR collectors.lease_until <= $3",
            &[&instance, &owner, &now, &until],
        )
        .await
        .map_err(backend)?;
    Ok(n == 1)
}

pub(super) async fn release(
    client: &Object,
    instance: &str,
    owner: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "UPDATE collectors SET owner = NULL, lease_until = NULL
             WHERE instance = $1 AND owner = $2",
            &[&instance, &owner],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

pub(super) async fn files(
    client: &Object,
    instance: &str,
) -> Result<Vec<LogFilePosition>, StoreError> {
    let rows = client
        .query(
            "SELECT file_name, identity, offset_bytes FROM collector_files
             WHERE instance = $1 ORDER BY file_name",
            &[&instance],
        )
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(LogFilePosition {
                file_name: r.try_get(0).map_err(backend)?,
                identity: r.try_get(1).map_err(backend)?,
                offset: r.try_get::<_, i64>(2).map_err(backend)?.max(0) as u64,
            })
        })
        .collect()
}

pub(super) async fn commit(client: &mut Object, batch: &CollectedBatch) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    records::upsert_in(&tx, &batch.records, Plans::KeepWhenMissing).await?;
    for (session, end) in batch.settled_sessions() {
        tx.execute(
            "DELETE FROM query_records
             WHERE instance = $1 AND session_id = $2 AND running AND start_time <= $3",
            &[&batch.instance, &session, &end],
        )
        .await
        .map_err(backend)?;
    }
    for p in &batch.positions {
        let offset = i64::try_from(p.offset).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO collector_files (instance, file_name, identity, offset_bytes)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (instance, file_name) DO UPDATE SET
                identity = excluded.identity, offset_bytes = excluded.offset_bytes",
            &[&batch.instance, &p.file_name, &p.identity, &offset],
        )
        .await
        .map_err(backend)?;
    }
    for name in &batch.forgotten {
        tx.execute(
            "DELETE FROM collector_files WHERE instance = $1 AND file_name = $2",
            &[&batch.instance, name],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

pub(super) async fn replace_running(
    client: &mut Object,
    instance: &str,
    running: &[QueryRecord],
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute(
        "DELETE FROM query_records WHERE instance = $1 AND running",
        &[&instance],
    )
    .await
    .map_err(backend)?;
    records::upsert_in(&tx, running, Plans::Replace).await?;
    tx.commit().await.map_err(backend)
}

pub(super) async fn put_health(
    client: &Object,
    instance: &str,
    health: &str,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO collectors (instance, health) VALUES ($1, $2)
             ON CONFLICT (instance) DO UPDATE SET health = excluded.health",
            &[&instance, &health],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

pub(super) async fn health(client: &Object, instance: &str) -> Result<Option<String>, StoreError> {
    let row = client
        .query_opt(
            "SELECT health FROM collectors WHERE instance = $1",
            &[&instance],
        )
        .await
        .map_err(backend)?;
    match row {
        Some(r) => r.try_get(0).map_err(backend),
        None => Ok(None),
    }
}
