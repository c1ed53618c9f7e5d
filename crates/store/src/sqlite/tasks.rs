//! Download tasks in SQLite: creation under a per-account limit, leases for workers, terminal
//! transitions guarded by the lease holder, retention, and the download audit log.

use super::{backend, from_millis, millis};
use crate::{DownloadAudit, RunningProgress, StoreError};
use chrono::{DateTime, Duration, Utc};
use gpdiag_core::{DownloadTask, ExportSpec, FileOptions, NewTask, RecordFilter, TimeWindow};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "id, account, instance, task_type, database, user_name, keyword, \
    window_start_ms, window_end_ms, condition, record_order, lang, bom, gzip, file_name, status, \
    exception_msg, object_key, row_count, byte_count, rows_done, attempts, created_ms, finished_ms";

fn bump(c: &Connection) -> Result<(), StoreError> {
    c.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'tasks_generation'",
        [],
    )
    .map_err(backend)?;
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("stored task {what} is not valid: {e}").into(),
    )
}

fn to_task(r: &Row<'_>) -> rusqlite::Result<DownloadTask> {
    let parse_opt = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
    let window = TimeWindow::new(from_millis(r.get(7)?), from_millis(r.get(8)?))
        .map_err(|e| corrupt("window", e))?;
    let condition = parse_opt(9)?
        .map(|c| c.parse().map_err(|e| corrupt("condition", e)))
        .transpose()?;
    let order = r
        .get::<_, String>(10)?
        .parse()
        .map_err(|e| corrupt("order", e))?;
    let lang = r
        .get::<_, String>(11)?
        .parse()
        .map_err(|e| corrupt("lang", e))?;
    Ok(DownloadTask {
        id: r.get(0)?,
        account: r.get(1)?,
        instance: r.get(2)?,
        task_type: r
            .get::<_, String>(3)?
            .parse()
            .map_err(|e| corrupt("type", e))?,
        spec: ExportSpec {
            filter: RecordFilter {
                instance: r.get(2)?,
                database: r.get(4)?,
                window,
                user: r.get(5)?,
                keyword: r.get(6)?,
                condition,
            },
            order,
            file: FileOptions {
                lang,
                bom: r.get(12)?,
                gzip: r.get(13)?,
            },
        },
        file_name: r.get(14)?,
        status: r
            .get::<_, String>(15)?
            .parse()
            .map_err(|e| corrupt("status", e))?,
        exception_msg: r.get(16)?,
        object_key: r.get(17)?,
        rows: r.get::<_, Option<i64>>(18)?.map(|n| n.max(0) as u64),
        bytes: r.get::<_, Option<i64>>(19)?.map(|n| n.max(0) as u64),
        rows_done: r.get::<_, i64>(20)?.max(0) as u64,
        attempts: r.get::<_, i64>(21)?.clamp(0, i64::from(u32::MAX)) as u32,
        created_at: from_millis(r.get(22)?),
        finished_at: r.get::<_, Option<i64>>(23)?.map(from_millis),
    })
}

pub(super) fn create(
    c: &mut Connection,
    t: &NewTask,
    max_running: u32,
) -> Result<DownloadTask, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let running: i64 = tx
        .query_row(
            "SELECT count(*) FROM download_tasks WHERE account = ?1 AND status = 'running'",
            [&t.account],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if running >= i64::from(max_running) {
        return Err(StoreError::LimitReached(format!(
            "the account already has {running} exports running; at most {max_running} may run at once"
        )));
    }
    let f = &t.spec.filter;
    tx.execute(
        "INSERT INTO download_tasks (account, instance, task_type, database, user_name, keyword,
            window_start_ms, window_end_ms, condition, record_order, lang, bom, gzip, file_name,
            status, exception_msg, rows_done, attempts, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'running', '', 0, 0, ?15)",
        params![
            t.account,
            t.instance,
            t.task_type.as_str(),
            f.database,
            f.user,
            f.keyword,
            millis(f.window.start),
            millis(f.window.end),
            f.condition.map(|c| c.to_string()),
            t.spec.order.to_string(),
            t.spec.file.lang.as_str(),
            t.spec.file.bom,
            t.spec.file.gzip,
            t.spec.file_name(),
            millis(t.created_at),
        ],
    )
    .map_err(backend)?;
    let id = tx.last_insert_rowid();
    bump(&tx)?;
    let task = get(&tx, id)?.ok_or_else(|| StoreError::Backend("the new task vanished".into()))?;
    tx.commit().map_err(backend)?;
    Ok(task)
}

pub(super) fn get(c: &Connection, id: i64) -> Result<Option<DownloadTask>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM download_tasks WHERE id = ?1"
    ))
    .map_err(backend)?
    .query_row([id], to_task)
    .optional()
    .map_err(backend)
}

pub(super) fn list(c: &Connection) -> Result<Vec<DownloadTask>, StoreError> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM download_tasks ORDER BY id DESC"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], to_task).map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}

pub(super) fn claim(
    c: &mut Connection,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<DownloadTask>, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let id: Option<i64> = tx
        .query_row(
            "SELECT id FROM download_tasks
             WHERE status = 'running' AND (claimed_by IS NULL OR lease_until_ms < ?1)
             ORDER BY id LIMIT 1",
            [millis(now)],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    let Some(id) = id else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE download_tasks SET claimed_by = ?2, lease_until_ms = ?3, attempts = attempts + 1,
                rows_done = 0
         WHERE id = ?1",
        params![id, worker, millis(now + lease)],
    )
    .map_err(backend)?;
    bump(&tx)?;
    let task = get(&tx, id)?;
    tx.commit().map_err(backend)?;
    Ok(task)
}

pub(super) fn renew(
    c: &mut Connection,
    id: i64,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    rows_done: u64,
) -> Result<bool, StoreError> {
    // No bump: the lease and the progress are not what the generation tracks.
    let n = c
        .prepare_cached(
            "UPDATE download_tasks SET lease_until_ms = ?3, rows_done = ?4
             WHERE id = ?1 AND claimed_by = ?2 AND status = 'running'",
        )
        .map_err(backend)?
        .execute(params![id, worker, millis(now + lease), rows_done as i64])
        .map_err(backend)?;
    Ok(n == 1)
}

/// The generation and the running tasks' progress in one read transaction, so both come from
/// the same snapshot; `download_tasks_running` finds the running tasks.
pub(super) fn running_progress(c: &Connection) -> Result<RunningProgress, StoreError> {
    let tx = c.unchecked_transaction().map_err(backend)?;
    let generation = super::counter(&tx, "tasks_generation")?;
    let tasks = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, rows_done FROM download_tasks WHERE status = 'running' ORDER BY id",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
    };
    tx.commit().map_err(backend)?;
    Ok(RunningProgress { generation, tasks })
}

pub(super) fn finish(
    c: &mut Connection,
    id: i64,
    worker: &str,
    object_key: &str,
    rows: u64,
    bytes: u64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE download_tasks SET status = 'finished', object_key = ?3, row_count = ?4,
                    byte_count = ?5, rows_done = ?4, finished_ms = ?6, claimed_by = NULL,
                    lease_until_ms = NULL
             WHERE id = ?1 AND claimed_by = ?2 AND status = 'running'",
            params![
                id,
                worker,
                object_key,
                rows as i64,
                bytes as i64,
                millis(now)
            ],
        )
        .map_err(backend)?;
    bump(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn fail(
    c: &mut Connection,
    id: i64,
    worker: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE download_tasks SET status = 'failed', exception_msg = ?3, finished_ms = ?4,
                    claimed_by = NULL, lease_until_ms = NULL
             WHERE id = ?1 AND status = 'running' AND (?2 IS NULL OR claimed_by = ?2)",
            params![id, worker, message, millis(now)],
        )
        .map_err(backend)?;
    bump(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn release_all(c: &mut Connection) -> Result<u64, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let n = tx
        .execute(
            "UPDATE download_tasks SET claimed_by = NULL, lease_until_ms = NULL
             WHERE status = 'running' AND claimed_by IS NOT NULL",
            [],
        )
        .map_err(backend)?;
    bump(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(n as u64)
}

pub(super) fn delete_before(
    c: &mut Connection,
    before: DateTime<Utc>,
) -> Result<Vec<DownloadTask>, StoreError> {
    let tx = c.transaction().map_err(backend)?;
    let doomed = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM download_tasks WHERE created_ms < ?1 AND status <> 'running'"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map([millis(before)], to_task).map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)?
    };
    tx.execute(
        "DELETE FROM download_tasks WHERE created_ms < ?1 AND status <> 'running'",
        [millis(before)],
    )
    .map_err(backend)?;
    tx.execute(
        "DELETE FROM download_audit WHERE task_id NOT IN (SELECT id FROM download_tasks)",
        [],
    )
    .map_err(backend)?;
    bump(&tx)?;
    tx.commit().map_err(backend)?;
    Ok(doomed)
}

pub(super) fn record_download(c: &mut Connection, e: &DownloadAudit) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO download_audit (task_id, account, instance, file_name, client, user_agent,
                                     byte_range, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.task_id,
            e.account,
            e.instance,
            e.file_name,
            e.client,
            e.user_agent,
            e.range,
            millis(e.at)
        ],
    )
    .map_err(backend)?;
    Ok(())
}

pub(super) fn list_downloads(
    c: &Connection,
    task_id: i64,
) -> Result<Vec<DownloadAudit>, StoreError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT task_id, account, instance, file_name, client, user_agent, byte_range, at_ms
             FROM download_audit WHERE task_id = ?1 ORDER BY id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([task_id], |r| {
            Ok(DownloadAudit {
                task_id: r.get(0)?,
                account: r.get(1)?,
                instance: r.get(2)?,
                file_name: r.get(3)?,
                client: r.get(4)?,
                user_agent: r.get(5)?,
                range: r.get(6)?,
                at: from_millis(r.get(7)?),
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(backend)
}
