//! The actions, one file per family, behind one exhaustive dispatch. Actions see a verified
//! caller and domain types; they know nothing of HTTP.

mod collectors;
mod diagnosis;
mod downloads;
mod instances;

use crate::protocol::auth::Caller;
use crate::state::AppState;
use gpdiag_core::{check_diagnosis_available, GateError, Instance};
use gpdiag_wire::api::diagnosis::*;
use gpdiag_wire::api::downloads::*;
use gpdiag_wire::api::instances::{DescribeDBInstanceAttributeRequest, DescribeDBInstancesRequest};
use gpdiag_wire::api::{to_body, Action};
use gpdiag_wire::{ApiError, ErrorCode, Params};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Context passed first to every action.
pub struct Ctx<'a> {
    pub caller: &'a Caller,
    pub app: &'a AppState,
}

pub async fn dispatch(
    ctx: &Ctx<'_>,
    action: Action,
    params: &Params,
) -> Result<Map<String, Value>, ApiError> {
    Ok(match action {
        Action::DescribeDBInstances => to_body(&instances::describe_db_instances(
            ctx,
            DescribeDBInstancesRequest::from_params(params)?,
        )),
        Action::DescribeDBInstanceAttribute => to_body(&instances::describe_db_instance_attribute(
            ctx,
            DescribeDBInstanceAttributeRequest::from_params(params)?,
        )?),
        Action::DescribeDownloadRecords => to_body(
            &downloads::describe_download_records(
                ctx,
                DescribeDownloadRecordsRequest::from_params(params)?,
            )
            .await?,
        ),
        Action::DownloadDiagnosisRecords => to_body(
            &downloads::download_diagnosis_records(
                ctx,
                DownloadDiagnosisRecordsRequest::from_params(params, ctx.now())?,
            )
            .await?,
        ),
        Action::DownloadSlowSQLRecords => to_body(
            &downloads::download_slow_sql_records(
                ctx,
                DownloadSlowSQLRecordsRequest::from_params(params, ctx.now())?,
            )
            .await?,
        ),
        Action::CancelDownloadTask => to_body(
            &downloads::cancel_download_task(ctx, CancelDownloadTaskRequest::from_params(params)?)
                .await?,
        ),
        Action::DescribeCollectorStatus => to_body(
            &collectors::describe_collector_status(
                ctx,
                gpdiag_wire::api::collectors::DescribeCollectorStatusRequest::from_params(params)?,
            )
            .await?,
        ),
        Action::DescribeDiagnosisRecords => to_body(
            &diagnosis::describe_diagnosis_records(
                ctx,
                DescribeDiagnosisRecordsRequest::from_params(params, ctx.now())?,
            )
            .await?,
        ),
        Action::DescribeDiagnosisSQLInfo => to_body(
            &diagnosis::describe_diagnosis_sql_info(
                ctx,
                DescribeDiagnosisSQLInfoRequest::from_params(params)?,
            )
            .await?,
        ),
        Action::DescribeDiagnosisDimensions => to_body(
            &diagnosis::describe_diagnosis_dimensions(
                ctx,
                DescribeDiagnosisDimensionsRequest::from_params(params, ctx.now())?,
            )
            .await?,
        ),
        Action::DescribeDiagnosisMonitorPerformance => to_body(
            &diagnosis::describe_diagnosis_monitor_performance(
                ctx,
                DescribeDiagnosisMonitorPerformanceRequest::from_params(params, ctx.now())?,
            )
            .await?,
        ),
    })
}

impl Ctx<'_> {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.app.clock.now()
    }

    /// A store failure becomes an opaque `ServiceUnavailable` (worth retrying) or
    /// `InternalError`; the cause goes to the log only.
    pub fn store_failure(&self, e: gpdiag_store::StoreError) -> ApiError {
        tracing::error!(error = %e, account = %self.caller.account(), "store failure");
        match e {
            gpdiag_store::StoreError::Unavailable(_) => {
                ApiError::code(ErrorCode::ServiceUnavailable)
            }
            _ => ApiError::internal(),
        }
    }

    /// The caller's own instance, or `InvalidDBInstanceId.NotFound` (also for another account's).
    pub fn instance(&self, id: &str) -> Result<Arc<Instance>, ApiError> {
        self.app
            .registry
            .owned_instance(self.caller.account(), id)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidDBInstanceIdNotFound,
                    format!(
                        "The specified instance is not found: {}.",
                        id.chars().take(64).collect::<String>()
                    ),
                )
            })
    }

    /// The availability gate every diagnosis action passes: owned, elastic storage mode, and
    /// minor version V6.3.10.1 or later.
    pub fn diagnosis_instance(&self, id: &str) -> Result<Arc<Instance>, ApiError> {
        let instance = self.instance(id)?;
        check_diagnosis_available(&instance).map_err(|e| match e {
            GateError::NotStorageElastic { .. } => ApiError::new(
                ErrorCode::IncorrectDBInstanceState,
                format!("The specified instance state does not support this operation: {e}."),
            ),
            GateError::VersionTooOld { .. } => ApiError::new(
                ErrorCode::IncorrectModuleVersion,
                format!("The specified module version does not support this operation: {e}."),
            ),
        })?;
        Ok(instance)
    }
}
