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
    /// gpdiag's extension, absent from the official model (whose SDKs drop unknown keys): rows
    /// written so far while `running` (as of the worker's last report, every few seconds), the
    /// file's row count once `finished`, the rows written before it stopped once `failed`.
    /// `None` when reading an answer from a server that does not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_done: Option<u64>,
}

/// A boolean extra parameter: `true`/`false` in any case (Python's `str(True)` is `True`).
fn flag(p: &Params, name: &str) -> Result<bool, ApiError> {
    match p.optional(name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ApiError::invalid(name, "expected true or false")),
    }
}

/// `Lang` (default `en`) and gpdiag's extra `Bom` and `Gzip` flags.
fn file_options(p: &Params) -> Result<gpdiag_core::FileOptions, ApiError> {
    Ok(gpdiag_core::FileOptions {
        lang: p.parsed("Lang")?.unwrap_or_default(),
        bom: flag(p, "Bom")?,
        gzip: flag(p, "Gzip")?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadDiagnosisRecordsRequest {
    pub query: crate::api::diagnosis::RecordQuery,
    pub order: gpdiag_core::RecordOrder,
    pub file: gpdiag_core::FileOptions,
}

impl DownloadDiagnosisRecordsRequest {
    pub fn from_params(p: &Params, now: chrono::DateTime<chrono::Utc>) -> Result<Self, ApiError> {
        // ResourceGroupId is accepted and has no effect: gpdiag has no resource groups.
        Ok(Self {
            query: crate::api::diagnosis::RecordQuery::from_params(p, now)?,
            order: p.parsed("Order")?.unwrap_or_default(),
            file: file_options(p)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSlowSQLRecordsRequest {
    pub instance_id: String,
    pub window: gpdiag_core::TimeWindow,
    pub database: Option<String>,
    pub user: Option<String>,
    pub keyword: Option<String>,
    /// Seconds, as documented.
    pub min_duration_s: Option<i64>,
    pub max_duration_s: Option<i64>,
    pub order: gpdiag_core::RecordOrder,
    pub file: gpdiag_core::FileOptions,
}

/// Documented defaults: EndTime now, StartTime five minutes before EndTime.
pub const SLOW_SQL_DEFAULT_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

impl DownloadSlowSQLRecordsRequest {
    pub fn from_params(p: &Params, now: chrono::DateTime<chrono::Utc>) -> Result<Self, ApiError> {
        let seconds = |name: &str| -> Result<Option<i64>, ApiError> {
            p.optional(name)
                .map(|v| match v.parse::<i64>() {
                    Ok(n) if n >= 0 => Ok(n),
                    _ => Err(ApiError::invalid(
                        name,
                        "expected a whole number of seconds, 0 or more",
                    )),
                })
                .transpose()
        };
        let (min_duration_s, max_duration_s) = (seconds("MinDuration")?, seconds("MaxDuration")?);
        if let (Some(lo), Some(hi)) = (min_duration_s, max_duration_s) {
            if lo > hi {
                return Err(ApiError::invalid(
                    "MaxDuration",
                    "MaxDuration must not be less than MinDuration",
                ));
            }
        }
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            window: crate::api::diagnosis::window_with_default(p, now, SLOW_SQL_DEFAULT_WINDOW)?,
            database: p.optional("DBName").map(str::to_owned),
            user: p.optional("UserName").map(str::to_owned),
            keyword: p.optional("Keyword").map(str::to_owned),
            min_duration_s,
            max_duration_s,
            order: match p.optional("OrderBy") {
                None => gpdiag_core::RecordOrder {
                    field: gpdiag_core::OrderField::Duration,
                    descending: true,
                },
                Some(v) => order_by(v).ok_or_else(|| {
                    ApiError::invalid(
                        "OrderBy",
                        "expected StartTime or Duration, optionally with \" asc\" or \" desc\", or the Order JSON form",
                    )
                })?,
            },
            file: file_options(p)?,
        })
    }
}

/// `OrderBy` of slow-SQL exports: `Duration`, `StartTime desc`, or the `Order` JSON form.
fn order_by(v: &str) -> Option<gpdiag_core::RecordOrder> {
    if let Ok(order) = v.parse() {
        return Some(order);
    }
    let mut words = v.split_whitespace();
    let field = match words.next()? {
        f if f.eq_ignore_ascii_case("starttime") => gpdiag_core::OrderField::StartTime,
        f if f.eq_ignore_ascii_case("duration") => gpdiag_core::OrderField::Duration,
        _ => return None,
    };
    let descending = match words.next() {
        None => true,
        Some(d) if d.eq_ignore_ascii_case("desc") => true,
        Some(d) if d.eq_ignore_ascii_case("asc") => false,
        Some(_) => return None,
    };
    words
        .next()
        .is_none()
        .then_some(gpdiag_core::RecordOrder { field, descending })
}

/// `CancelDownloadTask`, gpdiag's extra action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelDownloadTaskRequest {
    pub instance_id: String,
    pub download_id: i64,
}

impl CancelDownloadTaskRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            download_id: p.required("DownloadId")?.parse().map_err(|_| {
                ApiError::invalid(
                    "DownloadId",
                    "expected a download ID as DescribeDownloadRecords lists it",
                )
            })?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadStartedResponse {
    /// A string here, although DescribeDownloadRecords lists it as an integer.
    #[serde(rename = "DownloadId")]
    pub download_id: String,
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelDownloadTaskResponse {
    #[serde(rename = "DownloadId")]
    pub download_id: String,
    #[serde(rename = "DBInstanceId")]
    pub db_instance_id: String,
    #[serde(rename = "Status")]
    pub status: String,
}
