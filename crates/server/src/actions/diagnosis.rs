//! The diagnosis read actions over the caller's query records, all behind the availability gate.

use super::Ctx;
use gpdiag_core::plan::sorted_metrics;
use gpdiag_core::{OrderField, RecordFilter, RecordOrder};
use gpdiag_store::Page;
use gpdiag_wire::api::diagnosis::*;
use gpdiag_wire::{ApiError, ErrorCode};

fn filter(
    ctx: &Ctx<'_>,
    q: &RecordQuery,
    keyword: Option<String>,
) -> Result<RecordFilter, ApiError> {
    ctx.diagnosis_instance(&q.instance_id)?;
    Ok(RecordFilter {
        instance: q.instance_id.clone(),
        database: Some(q.database.clone()),
        window: q.window,
        user: q.user.clone(),
        keyword,
        condition: q.condition,
    })
}

pub async fn describe_diagnosis_records(
    ctx: &Ctx<'_>,
    req: DescribeDiagnosisRecordsRequest,
) -> Result<DescribeDiagnosisRecordsResponse, ApiError> {
    let filter = filter(ctx, &req.query, req.keyword)?;
    let page = Page {
        offset: u64::from(req.page_number - 1) * u64::from(req.page_size),
        limit: u64::from(req.page_size),
    };
    let found = ctx
        .app
        .store
        .search_records(&filter, req.order, page)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(DescribeDiagnosisRecordsResponse {
        items: found
            .records
            .iter()
            .map(DiagnosisItem::from_record)
            .collect(),
        page_number: req.page_number,
        total_count: found.total,
    })
}

pub async fn describe_diagnosis_sql_info(
    ctx: &Ctx<'_>,
    req: DescribeDiagnosisSQLInfoRequest,
) -> Result<DescribeDiagnosisSQLInfoResponse, ApiError> {
    ctx.diagnosis_instance(&req.instance_id)?;
    let record = ctx
        .app
        .store
        .get_record(&req.instance_id, &req.query_id)
        .await
        .map_err(|e| ctx.store_failure(e))?
        .filter(|r| r.database == req.database)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQueryIdNotFound,
                format!(
                    "The specified query is not found: no query {:?} in database {:?} of this instance.",
                    req.query_id.chars().take(128).collect::<String>(),
                    req.database.chars().take(128).collect::<String>()
                ),
            )
        })?;
    Ok(DescribeDiagnosisSQLInfoResponse {
        database: record.database.clone(),
        duration: record.duration_ms / 1000,
        max_output_rows: record.rows.map(|r| r.to_string()).unwrap_or_default(),
        query_id: record.query_id.clone(),
        sorted_metrics: sorted_metrics(record.plan_json.as_deref()),
        query_plan: record.plan_json.clone().unwrap_or_default(),
        sql_stmt: record.sql.clone(),
        session_id: record.session_id.clone(),
        start_time: record.start_time.timestamp_millis(),
        status: record.status.as_str().into(),
        text_plan: record.plan_text.clone().unwrap_or_default(),
        user: record.user.clone(),
    })
}

pub async fn describe_diagnosis_dimensions(
    ctx: &Ctx<'_>,
    req: DescribeDiagnosisDimensionsRequest,
) -> Result<DescribeDiagnosisDimensionsResponse, ApiError> {
    ctx.diagnosis_instance(&req.instance_id)?;
    let dims = ctx
        .app
        .store
        .record_dimensions(&req.instance_id, req.window)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(DescribeDiagnosisDimensionsResponse {
        databases: dims.databases,
        user_names: dims.users,
    })
}

pub async fn describe_diagnosis_monitor_performance(
    ctx: &Ctx<'_>,
    req: DescribeDiagnosisMonitorPerformanceRequest,
) -> Result<DescribeDiagnosisMonitorPerformanceResponse, ApiError> {
    let filter = filter(ctx, &req.query, None)?;
    // Oldest first, as a time series is drawn.
    let order = RecordOrder {
        field: OrderField::StartTime,
        descending: false,
    };
    let page = Page {
        offset: 0,
        limit: u64::from(PERFORMANCES_THRESHOLD),
    };
    let found = ctx
        .app
        .store
        .search_records(&filter, order, page)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    Ok(DescribeDiagnosisMonitorPerformanceResponse {
        performances: found
            .records
            .iter()
            .map(|r| Performance {
                cost: r.duration_ms,
                database: r.database.clone(),
                query_id: r.query_id.clone(),
                start_time: r.start_time.timestamp_millis(),
                status: r.status.as_str().into(),
                user: r.user.clone(),
            })
            .collect(),
        performances_threshold: PERFORMANCES_THRESHOLD,
        performances_truncated: found.total > u64::from(PERFORMANCES_THRESHOLD),
    })
}
