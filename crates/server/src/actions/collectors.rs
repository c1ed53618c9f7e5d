//! `DescribeCollectorStatus`: the last health report of the caller's instance's collector.

use super::Ctx;
use gpdiag_core::CollectorHealth;
use gpdiag_wire::api::collectors::*;
use gpdiag_wire::ApiError;

pub async fn describe_collector_status(
    ctx: &Ctx<'_>,
    req: DescribeCollectorStatusRequest,
) -> Result<DescribeCollectorStatusResponse, ApiError> {
    let instance = ctx.instance(&req.instance_id)?;
    let report = ctx
        .app
        .store
        .collector_health(&instance.id)
        .await
        .map_err(|e| ctx.store_failure(e))?;
    let collector = report.and_then(
        |text| match serde_json::from_str::<CollectorHealth>(&text) {
            Ok(health) => Some(health),
            Err(e) => {
                tracing::warn!(instance = %instance.id, "unreadable collector health report: {e}");
                None
            }
        },
    );
    Ok(DescribeCollectorStatusResponse {
        db_instance_id: instance.id.clone(),
        collector,
    })
}
