//! `DescribeDBInstances` and `DescribeDBInstanceAttribute`: the instance registry on the wire.

use crate::error::ApiError;
use crate::params::Params;
use gpdiag_core::InstanceMode;
use serde::{Deserialize, Serialize};

/// `DescribeDBInstances`: `RegionId` is required; filters are optional; paging is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDBInstancesRequest {
    pub region_id: String,
    pub page_number: u32,
    pub page_size: u32,
    pub instance_ids: Vec<String>,
    /// Compared case-insensitively: one documented version spells statuses in lower case.
    pub statuses: Vec<String>,
    pub modes: Vec<InstanceMode>,
    pub description: Option<String>,
}

impl DescribeDBInstancesRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            region_id: p.required("RegionId")?.to_owned(),
            page_number: p.positive_int("PageNumber", 1, 1_000_000)?,
            page_size: p.page_size()?,
            instance_ids: p
                .list("DBInstanceIds")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            statuses: p
                .list("DBInstanceStatuses")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            modes: p
                .list("DBInstanceModes")
                .into_iter()
                .map(|m| {
                    m.parse()
                        .map_err(|e| ApiError::invalid("DBInstanceModes", e))
                })
                .collect::<Result<_, _>>()?,
            description: p.optional("DBInstanceDescription").map(str::to_owned),
        })
    }
}

/// `DescribeDBInstanceAttribute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDBInstanceAttributeRequest {
    pub instance_id: String,
}

impl DescribeDBInstanceAttributeRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstancesResponse {
    pub items: DBInstanceItems,
    pub page_number: u32,
    pub page_record_count: u32,
    pub total_record_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DBInstanceItems {
    #[serde(rename = "DBInstance")]
    pub db_instance: Vec<DBInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DBInstance {
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    #[serde(rename = "DBInstanceDescription")]
    pub db_instance_description: String,
    #[serde(rename = "DBInstanceMode")]
    pub db_instance_mode: String,
    #[serde(rename = "DBInstanceStatus")]
    pub db_instance_status: String,
    #[serde(rename = "Engine")]
    pub engine: String,
    #[serde(rename = "EngineVersion")]
    pub engine_version: String,
    #[serde(rename = "RegionId")]
    pub region_id: String,
    #[serde(rename = "CreateTime")]
    pub create_time: String,
    #[serde(rename = "Tags")]
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tags {
    #[serde(rename = "Tag")]
    pub tag: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDBInstanceAttributeResponse {
    pub items: DBInstanceAttributeItems,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DBInstanceAttributeItems {
    #[serde(rename = "DBInstanceAttribute")]
    pub db_instance_attribute: Vec<DBInstanceAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DBInstanceAttribute {
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    #[serde(rename = "DBInstanceDescription")]
    pub db_instance_description: String,
    #[serde(rename = "DBInstanceMode")]
    pub db_instance_mode: String,
    #[serde(rename = "DBInstanceStatus")]
    pub db_instance_status: String,
    #[serde(rename = "Engine")]
    pub engine: String,
    #[serde(rename = "EngineVersion")]
    pub engine_version: String,
    #[serde(rename = "CoreVersion")]
    pub core_version: String,
    #[serde(rename = "MinorVersion")]
    pub minor_version: String,
    #[serde(rename = "RegionId")]
    pub region_id: String,
    #[serde(rename = "CreationTime")]
    pub creation_time: String,
    #[serde(rename = "Tags")]
    pub tags: Tags,
}
