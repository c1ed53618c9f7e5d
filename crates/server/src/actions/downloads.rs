//! Exports: `DownloadDiagnosisRecords` and `DownloadSlowSQLRecords` start one,
//! `DescribeDownloadRecords` lists them with fresh download links, and gpdiag's own
//! `CancelDownloadTask` stops one. All behind the availability gate.

use super::Ctx;
use gpdiag_core::{
    DownloadTaskType, ExportSpec, NewTask, QueryCondition, RecordFilter, TaskStatus,
};
use gpdiag_store::StoreError;
use gpdiag_wire::api::downloads::*;
use gpdiag_wire::{ApiError, ErrorCode};

pub async fn describe_download_records(
    ctx: &Ctx<'_>,
    req: DescribeDownloadRecordsRequest,
) -> Result<DescribeDownloadRecordsResponse, ApiError> {
    let instance = ctx.diagnosis_instance(&req.instance_id)?;
    let tasks = ctx.app.registry.tasks_of(&instance.id, req.task_type);
    let now = ctx.now();
    let mut records = Vec::with_capacity(tasks.len());
    for t in &tasks {
        records.push(DownloadRecord {
            download_id: t.id,
            file_name: t.file_name.clone(),
            status: t.status.as_str().into(),
            // Every call signs a fresh link; only finished tasks have one.
            download_url: match (t.status, &t.object_key) {
                (TaskStatus::Finished, Some(key)) => {
                    ctx.app.exports.link(t.id, &t.file_name, key, now).await
                }
                _ => String::new(),
            },
            exception_msg: t.exception_msg.clone(),
            // The worker reports progress with each lease renewal; a renewal changes the tasks'
            // generation, so the registry (refreshed every second) follows it.
            rows_done: Some(t.rows.unwrap_or(t.rows_done)),
        });
    }
    Ok(DescribeDownloadRecordsResponse { records })
}

pub async fn download_diagnosis_records(
    ctx: &Ctx<'_>,
    req: DownloadDiagnosisRecordsRequest,
) -> Result<DownloadStartedResponse, ApiError> {
    ctx.diagnosis_instance(&req.query.instance_id)?;
    let q = req.query;
    let spec = ExportSpec {
        filter: RecordFilter {
            instance: q.instance_id.clone(),
            database: Some(q.database),
            window: q.window,
            user: q.user,
            keyword: None,
            condition: q.condition,
        },
        order: req.order,
        file: req.file,
    };
    let id = start(ctx, &q.instance_id, DownloadTaskType::SqlDiagnose, spec).await?;
    Ok(DownloadStartedResponse {
        download_id: id.to_string(),
        db_instance_id: q.instance_id,
    })
}

pub async fn download_slow_sql_records(
    ctx: &Ctx<'_>,
    req: DownloadSlowSQLRecordsRequest,
) -> Result<DownloadStartedResponse, ApiError> {
    ctx.diagnosis_instance(&req.instance_id)?;
    // Slow means at least the configured threshold, and at least MinDuration if that is more.
    let threshold = ctx.app.exports.slow_query_ms;
    let min = req
        .min_duration_s
        .map_or(threshold, |s| s.saturating_mul(1000).max(threshold));
    // A MaxDuration below the threshold selects nothing: `min <= d < min` is a valid, empty
    // range, where `min > max` would not be a valid condition.
    let max = req.max_duration_s.map(|s| s.saturating_mul(1000).max(min));
    let spec = ExportSpec {
        filter: RecordFilter {
            instance: req.instance_id.clone(),
            database: req.database,
            window: req.window,
            user: req.user,
            keyword: req.keyword,
            condition: Some(QueryCondition::Cost {
                min: Some(min),
                max,
            }),
        },
        order: req.order,
        file: req.file,
    };
    let id = start(ctx, &req.instance_id, DownloadTaskType::SlowSql, spec).await?;
    Ok(DownloadStartedResponse {
        download_id: id.to_string(),
        db_instance_id: req.instance_id,
    })
}

/// Records the task and returns at once; a worker picks it up.
async fn start(
    ctx: &Ctx<'_>,
    instance: &str,
    task_type: DownloadTaskType,
    spec: ExportSpec,
) -> Result<i64, ApiError> {
    let task = NewTask {
        account: ctx.caller.account().to_string(),
        instance: instance.to_owned(),
        task_type,
        spec,
        created_at: ctx.now(),
    };
    let created = ctx
        .app
        .store
        .create_task(&task, ctx.app.exports.max_running_per_account)
        .await
        .map_err(|e| match e {
            StoreError::LimitReached(why) => ApiError::new(
                ErrorCode::QuotaExceededDownloadTasks,
                format!("Too many exports are running: {why}. Wait for one to finish, or cancel one with CancelDownloadTask."),
            ),
            e => ctx.store_failure(e),
        })?;
    ctx.app.exports.wake_workers.notify_one();
    ctx.app.tasks_changed().await;
    Ok(created.id)
}

pub async fn cancel_download_task(
    ctx: &Ctx<'_>,
    req: CancelDownloadTaskRequest,
) -> Result<CancelDownloadTaskResponse, ApiError> {
    let instance = ctx.diagnosis_instance(&req.instance_id)?;
    let not_found = || {
        ApiError::new(
            ErrorCode::InvalidDownloadIdNotFound,
            format!(
                "The specified download is not found: no download {} on this instance.",
                req.download_id
            ),
        )
    };
    let task = ctx
        .app
        .store
        .get_task(req.download_id)
        .await
        .map_err(|e| ctx.store_failure(e))?
        .filter(|t| t.instance == instance.id && t.account == **ctx.caller.account())
        .ok_or_else(not_found)?;
    let canceled = ctx
        .app
        .store
        .fail_task(task.id, None, "canceled", ctx.now())
        .await
        .map_err(|e| ctx.store_failure(e))?;
    if !canceled {
        return Err(ApiError::new(
            ErrorCode::IncorrectDownloadTaskState,
            format!(
                "The download {} has already ended and cannot be canceled.",
                task.id
            ),
        ));
    }
    ctx.app.tasks_changed().await;
    Ok(CancelDownloadTaskResponse {
        download_id: task.id.to_string(),
        db_instance_id: instance.id.clone(),
        status: TaskStatus::Failed.as_str().into(),
    })
}
