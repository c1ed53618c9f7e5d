//! `DescribeCollectorStatus` (gpdiag's own): how an instance's collector is doing.

use crate::{ApiError, Params};
use gpdiag_core::CollectorHealth;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeCollectorStatusRequest {
    pub instance_id: String,
}

impl DescribeCollectorStatusRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCollectorStatusResponse {
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    /// Absent until a collector has reported for the instance.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub collector: Option<CollectorHealth>,
}
