//! `DescribeDownloadRecords`: the instance's export records on the wire.

use crate::error::ApiError;
use crate::params::Params;
use gpdiag_core::DownloadTaskType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDownloadRecordsRequest {
    pub instance_id: String,
    /// `SQL_DIAGNOSE` when absent: the default is undocumented, and that is the type the
    /// documented `DownloadDiagnosisRecords` creates.
    pub task_type: DownloadTaskType,
}

impl DescribeDownloadRecordsRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            task_type: p.parsed("DownloadTaskType")?.unwrap_or_default(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDownloadRecordsResponse {
    pub records: Vec<DownloadRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DownloadRecord {
    /// An integer here, although `DownloadDiagnosisRecords` returns it as a string.
    pub download_id: i64,
    pub file_name: String,
    pub status: String,
    pub download_url: String,
    pub exception_msg: String,
}
