//! Request and response types of each action, shared by the server (which parses requests and
//! renders responses) and the client side (which builds requests and reads responses). One file
//! per action family.

pub mod collectors;
pub mod diagnosis;
pub mod downloads;
pub mod instances;

use crate::error::{ApiError, ErrorCode};

/// Every action gpdiag answers. Parsing the name is the first step of dispatch, so an unknown
/// action is refused before any handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    DescribeDBInstances,
    DescribeDBInstanceAttribute,
    DescribeDownloadRecords,
    DescribeDiagnosisRecords,
    DescribeDiagnosisSQLInfo,
    DescribeDiagnosisDimensions,
    DescribeDiagnosisMonitorPerformance,
    DownloadDiagnosisRecords,
    DownloadSlowSQLRecords,
    /// gpdiag's own: stops a running export.
    CancelDownloadTask,
    /// gpdiag's own: the health of an instance's collector.
    DescribeCollectorStatus,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::DescribeDBInstances,
        Action::DescribeDBInstanceAttribute,
        Action::DescribeDownloadRecords,
        Action::DescribeDiagnosisRecords,
        Action::DescribeDiagnosisSQLInfo,
        Action::DescribeDiagnosisDimensions,
        Action::DescribeDiagnosisMonitorPerformance,
        Action::DownloadDiagnosisRecords,
        Action::DownloadSlowSQLRecords,
        Action::CancelDownloadTask,
        Action::DescribeCollectorStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::DescribeDBInstances => "DescribeDBInstances",
            Action::DescribeDBInstanceAttribute => "DescribeDBInstanceAttribute",
            Action::DescribeDownloadRecords => "DescribeDownloadRecords",
            Action::DescribeDiagnosisRecords => "DescribeDiagnosisRecords",
            Action::DescribeDiagnosisSQLInfo => "DescribeDiagnosisSQLInfo",
            Action::DescribeDiagnosisDimensions => "DescribeDiagnosisDimensions",
            Action::DescribeDiagnosisMonitorPerformance => "DescribeDiagnosisMonitorPerformance",
            Action::DownloadDiagnosisRecords => "DownloadDiagnosisRecords",
            Action::DownloadSlowSQLRecords => "DownloadSlowSQLRecords",
            Action::CancelDownloadTask => "CancelDownloadTask",
            Action::DescribeCollectorStatus => "DescribeCollectorStatus",
        }
    }

    pub fn parse(name: &str) -> Result<Action, ApiError> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| ApiError::code(ErrorCode::InvalidActionNotFound))
    }
}

/// Serialises a response struct into the field map the renderer takes.
pub fn to_body<T: serde::Serialize>(response: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(response) {
        Ok(serde_json::Value::Object(map)) => map,
        // Response types are structs of plain fields; anything else is a programming error that
        // the golden tests catch.
        _ => serde_json::Map::new(),
    }
}
