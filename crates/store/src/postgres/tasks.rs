//! Download tasks in PostgreSQL: creation under a per-account limit, leases for workers,
//! terminal transitions guarded by the lease holder, retention, and the download audit log.
//!
//! Several gpdiag processes may share the database: creation takes a per-account advisory
//! lock before counting, and claiming skips rows another transaction has locked, so no limit
//! is overrun and no task is handed to two workers. Every change but a renewal bumps
//! `tasks_generation`, last in its transaction, so transactions never wait on each other in a
//! cycle; a renewal is one statement on its task's row.

use super::{backend, to_millis};
use crate::{DownloadAudit, RunningProgress, StoreError};
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Object;
use gpdiag_core::{DownloadTask, ExportSpec, FileOptions, NewTask, RecordFilter, TimeWindow};
use tokio_postgres::Row;

const COLUMNS: &str = "id, account, instance, task_type, database, user_name, keyword, \
    window_start, window_end, condition, record_order, lang, bom, gzip, file_name, status, \
    exception_msg, object_key, row_count, byte_count, rows_done, attempts, created_at, \
    finished_at";

const BUMP: &str = "UPDATE counters SET value = value + 1 WHERE name = 'tasks_generation'";

/// The first key of the two-key advisory locks that serialize task creation per account
/// ("gpdt" in ASCII); two-key locks never collide with the one-key migration lock.
const CREATE_LOCK_CLASS: i32 = 0x6770_6474;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored task {what} is not valid: {e}"))
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: Option<i64>) -> Option<u64> {
    n.map(|n| u64::try_from(n).unwrap_or(0))
}

/// When a lease taken at `now` for `lease` ends, to the millisecond.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    to_millis(
        now.checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

fn to_task(r: &Row) -> Result<DownloadTask, StoreError> {
    let text = |i: usize| r.try_get::<_, String>(i).map_err(backend);
    let window = TimeWindow::new(
        r.try_get(7).map_err(backend)?,
        r.try_get(8).map_err(backend)?,
    )
    .map_err(|e| corrupt("window", e))?;
    let condition = r
        .try_get::<_, Option<String>>(9)
        .map_err(backend)?
        .map(|c| c.parse().map_err(|e| corrupt("condition", e)))
        .transpose()?;
    let instance = text(2)?;
    Ok(DownloadTask {
        id: r.try_get(0).map_err(backend)?,
        account: text(1)?,
        task_type: text(3)?.parse().map_err(|e| corrupt("type", e))?,
        spec: ExportSpec {
            filter: RecordFilter {
                instance: instance.clone(),
                database: r.try_get(4).map_err(backend)?,
                window,
                user: r.try_get(5).map_err(backend)?,
                keyword: r.try_get(6).map_err(backend)?,
                condition,
            },
            order: text(10)?.parse().map_err(|e| corrupt("order", e))?,
            file: FileOptions {
                lang: text(11)?.parse().map_err(|e| corrupt("lang", e))?,
                bom: r.try_get(12).map_err(backend)?,
                gzip: r.try_get(13).map_err(backend)?,
            },
        },
        instance,
        file_name: text(14)?,
        status: text(15)?.parse().map_err(|e| corrupt("status", e))?,
        exception_msg: text(16)?,
        object_key: r.try_get(17).map_err(backend)?,
        rows: count(r.try_get(18).map_err(backend)?),
        bytes: count(r.try_get(19).map_err(backend)?),
        rows_done: u64::try_from(r.try_get::<_, i64>(20).map_err(backend)?).unwrap_or(0),
        attempts: u32::try_from(r.try_get::<_, i32>(21).map_err(backend)?).unwrap_or(0),
        created_at: r.try_get(22).map_err(backend)?,
        finished_at: r.try_get(23).map_err(backend)?,
    })
}

/// Runs one fenced `UPDATE` (or other change) in a transaction, bumping the generation only
/// when it touched a row. Returns how many rows it touched.
async fn change(
    client: &mut Object,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    let stmt = tx.prepare_cached(sql).await.map_err(backend)?;
    let n = tx.execute(&stmt, params).await.map_err(backend)?;
    if n > 0 {
        tx.execute(BUMP, &[]).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(n)
}

pub(super) async fn create(
    client: &mut Object,
    t: &NewTask,
    max_running: u32,
) -> Result<DownloadTask, StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    // Creations for one account take turns across processes; the count below is a new
    // statement, so under READ COMMITTED it sees every task the previous holder committed.
    // An advisory lock needs no row, so accounts that are not (yet) rows are covered too.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&CREATE_LOCK_CLASS, &t.account],
    )
    .await
    .map_err(backend)?;
    let running: i64 = tx
        .query_one(
            "SELECT count(*) FROM download_tasks WHERE account = $1 AND status = 'running'",
            &[&t.account],
        )
        .await
        .map_err(backend)?
        .get(0);
    if running >= i64::from(max_running) {
        return Err(StoreError::LimitReached(format!(
            "the account already has {running} exports running; at most {max_running} may run at once"
        )));
    }
    let f = &t.spec.filter;
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO download_tasks (account, instance, task_type, database, user_name,
                keyword, window_start, window_end, condition, record_order, lang, bom, gzip,
                file_name, status, exception_msg, rows_done, attempts, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'running', '',
                     0, 0, $15)
             RETURNING {COLUMNS}"
        ))
        .await
        .map_err(backend)?;
    let row = tx
        .query_one(
            &insert,
            &[
                &t.account,
                &t.instance,
                &t.task_type.as_str(),
                &f.database,
                &f.user,
                &f.keyword,
                &to_millis(f.window.start),
                &to_millis(f.window.end),
                &f.condition.map(|c| c.to_string()),
                &t.spec.order.to_string(),
                &t.spec.file.lang.as_str(),
                &t.spec.file.bom,
                &t.spec.file.gzip,
                &t.spec.file_name(),
                &to_millis(t.created_at),
            ],
        )
        .await
        .map_err(backend)?;
    let task = to_task(&row)?;
    tx.execute(BUMP, &[]).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(task)
}

pub(super) async fn get(client: &Object, id: i64) -> Result<Option<DownloadTask>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM download_tasks WHERE id = $1"
        ))
        .await
        .map_err(backend)?;
    let row = client.query_opt(&stmt, &[&id]).await.map_err(backend)?;
    row.as_ref().map(to_task).transpose()
}

pub(super) async fn list(client: &Object) -> Result<Vec<DownloadTask>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM download_tasks ORDER BY id DESC"
        ))
        .await
        .map_err(backend)?;
    let rows = client.query(&stmt, &[]).await.map_err(backend)?;
    rows.iter().map(to_task).collect()
}

pub(super) async fn generation(client: &Object) -> Result<i64, StoreError> {
    client
        .query_one(
            "SELECT value FROM counters WHERE name = 'tasks_generation'",
            &[],
        )
        .await
        .map_err(backend)?
        .try_get(0)
        .map_err(backend)
}

pub(super) async fn claim(
    client: &mut Object,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<DownloadTask>, StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    // The candidate is locked as it is chosen; a row another claimer has locked is skipped
    // rather than waited for, and one it has just claimed no longer qualifies when rechecked.
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE download_tasks
             SET claimed_by = $2, lease_until = $3, attempts = attempts + 1, rows_done = 0
             WHERE id = (
                 SELECT id FROM download_tasks
                 WHERE status = 'running' AND (claimed_by IS NULL OR lease_until < $1)
                 ORDER BY id LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING {COLUMNS}"
        ))
        .await
        .map_err(backend)?;
    let row = tx
        .query_opt(&stmt, &[&to_millis(now), &worker, &lease_end(now, lease)])
        .await
        .map_err(backend)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let task = to_task(&row)?;
    tx.execute(BUMP, &[]).await.map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(Some(task))
}

pub(super) async fn renew(
    client: &mut Object,
    id: i64,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    rows_done: u64,
) -> Result<bool, StoreError> {
    // Not through `change`: the lease and the progress are not what the generation tracks.
    let stmt = client
        .prepare_cached(
            "UPDATE download_tasks SET lease_until = $3, rows_done = $4
             WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .await
        .map_err(backend)?;
    let n = client
        .execute(
            &stmt,
            &[&id, &worker, &lease_end(now, lease), &clamp(rows_done)],
        )
        .await
        .map_err(backend)?;
    Ok(n == 1)
}

/// The generation and the running tasks' progress in one statement, so both come from the
/// same snapshot: the counter row is joined to the running tasks (found through
/// `download_tasks_running`), and stands alone, with no task, when none is running.
pub(super) async fn running_progress(client: &Object) -> Result<RunningProgress, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT c.value, t.id, t.rows_done
             FROM counters c
             LEFT JOIN download_tasks t ON t.status = 'running'
             WHERE c.name = 'tasks_generation'
             ORDER BY t.id",
        )
        .await
        .map_err(backend)?;
    let rows = client.query(&stmt, &[]).await.map_err(backend)?;
    let generation = rows
        .first()
        .ok_or_else(|| StoreError::Backend("the tasks_generation counter is missing".into()))?
        .try_get(0)
        .map_err(backend)?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: Option<i64> = row.try_get(1).map_err(backend)?;
        let done: Option<i64> = row.try_get(2).map_err(backend)?;
        if let (Some(id), Some(done)) = (id, done) {
            tasks.push((id, u64::try_from(done).unwrap_or(0)));
        }
    }
    Ok(RunningProgress { generation, tasks })
}

pub(super) async fn finish(
    client: &mut Object,
    id: i64,
    worker: &str,
    object_key: &str,
    rows: u64,
    bytes: u64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = change(
        client,
        "UPDATE download_tasks SET status = 'finished', object_key = $3, row_count = $4,
                byte_count = $5, rows_done = $4, finished_at = $6, claimed_by = NULL,
                lease_until = NULL
         WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        &[
            &id,
            &worker,
            &object_key,
            &clamp(rows),
            &clamp(bytes),
            &to_millis(now),
        ],
    )
    .await?;
    Ok(n == 1)
}

pub(super) async fn fail(
    client: &mut Object,
    id: i64,
    worker: Option<&str>,
    message: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = change(
        client,
        "UPDATE download_tasks SET status = 'failed', exception_msg = $3, finished_at = $4,
                claimed_by = NULL, lease_until = NULL
         WHERE id = $1 AND status = 'running' AND ($2::text IS NULL OR claimed_by = $2::text)",
        &[&id, &worker, &message, &to_millis(now)],
    )
    .await?;
    Ok(n == 1)
}

pub(super) async fn release_all(client: &mut Object) -> Result<u64, StoreError> {
    change(
        client,
        "UPDATE download_tasks SET claimed_by = NULL, lease_until = NULL
         WHERE status = 'running' AND claimed_by IS NOT NULL",
        &[],
    )
    .await
}

pub(super) async fn delete_before(
    client: &mut Object,
    before: DateTime<Utc>,
) -> Result<Vec<DownloadTask>, StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    let rows = tx
        .query(
            &format!(
                "DELETE FROM download_tasks WHERE created_at < $1 AND status <> 'running'
                 RETURNING {COLUMNS}"
            ),
            &[&to_millis(before)],
        )
        .await
        .map_err(backend)?;
    let mut doomed = rows.iter().map(to_task).collect::<Result<Vec<_>, _>>()?;
    doomed.sort_unstable_by_key(|t| t.id);
    // The audit lines of every task that is gone, as in SQLite.
    tx.execute(
        "DELETE FROM download_audit a
         WHERE NOT EXISTS (SELECT 1 FROM download_tasks t WHERE t.id = a.task_id)",
        &[],
    )
    .await
    .map_err(backend)?;
    if !doomed.is_empty() {
        tx.execute(BUMP, &[]).await.map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(doomed)
}

pub(super) async fn record_download(client: &Object, e: &DownloadAudit) -> Result<(), StoreError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO download_audit (task_id, account, instance, file_name, client,
                                         user_agent, byte_range, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(backend)?;
    client
        .execute(
            &stmt,
            &[
                &e.task_id,
                &e.account,
                &e.instance,
                &e.file_name,
                &e.client,
                &e.user_agent,
                &e.range,
                &to_millis(e.at),
            ],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

pub(super) async fn list_downloads(
    client: &Object,
    task_id: i64,
) -> Result<Vec<DownloadAudit>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT task_id, account, instance, file_name, client, user_agent, byte_range, at
             FROM download_audit WHERE task_id = $1 ORDER BY id",
        )
        .await
        .map_err(backend)?;
    let rows = client.query(&stmt, &[&task_id]).await.map_err(backend)?;
    rows.iter()
        .map(|r| {
            Ok(DownloadAudit {
                task_id: r.try_get(0)?,
                account: r.try_get(1)?,
                instance: r.try_get(2)?,
                file_name: r.try_get(3)?,
                client: r.try_get(4)?,
                user_agent: r.try_get(5)?,
                range: r.try_get(6)?,
                at: r.try_get(7)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(backend)
}
