//! `DescribeDownloadRecords`: the instance's exports, behind the availability gate.

use super::Ctx;
use gpdiag_wire::api::downloads::{
    DescribeDownloadRecordsRequest, DescribeDownloadRecordsResponse,
};
use gpdiag_wire::ApiError;

pub fn describe_download_records(
    ctx: &Ctx<'_>,
    req: DescribeDownloadRecordsRequest,
) -> Result<DescribeDownloadRecordsResponse, ApiError> {
    ctx.diagnosis_instance(&req.instance_id)?;
    // Exports arrive with DownloadDiagnosisRecords; until then every instance has none.
    let _ = req.task_type;
    Ok(DescribeDownloadRecordsResponse {
        records: Vec::new(),
    })
}
