//! The diagnosis read actions: `DescribeDiagnosisRecords`, `DescribeDiagnosisSQLInfo`,
//! `DescribeDiagnosisDimensions` and `DescribeDiagnosisMonitorPerformance`.

use crate::error::ApiError;
use crate::params::Params;
use chrono::{DateTime, Duration, Utc};
use gpdiag_core::record::{parse_api_time, QueryRecord};
use gpdiag_core::{QueryCondition, RecordOrder, TimeWindow};
use serde::{Deserialize, Serialize};

/// SQL longer than this many characters is cut in listings (never in storage or exports).
pub const SQL_TRUNCATED_THRESHOLD: usize = 5120;

/// At most this many points in `DescribeDiagnosisMonitorPerformance`.
pub const PERFORMANCES_THRESHOLD: u32 = 10_000;

/// Without StartTime/EndTime a listing covers the hour before now.
pub const DEFAULT_WINDOW: Duration = Duration::hours(1);

/// `StartTime` and `EndTime`: either may be omitted (EndTime defaults to now, StartTime to one
/// hour before EndTime); EndTime must be after StartTime.
pub fn window(p: &Params, now: DateTime<Utc>) -> Result<TimeWindow, ApiError> {
    window_with_default(p, now, DEFAULT_WINDOW)
}

/// As `window`, with StartTime defaulting to `default` before EndTime.
pub fn window_with_default(
    p: &Params,
    now: DateTime<Utc>,
    default: Duration,
) -> Result<TimeWindow, ApiError> {
    let time = |name: &'static str| {
        p.optional(name)
            .map(|v| parse_api_time(name, v).map_err(|e| ApiError::invalid(name, e.reason)))
            .transpose()
    };
    let end = time("EndTime")?.unwrap_or(now);
    let start = time("StartTime")?.unwrap_or(end - default);
    TimeWindow::new(start, end)
        .map_err(|_| ApiError::invalid("EndTime", "EndTime must be after StartTime"))
}

/// The filter parameters shared by listings and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordQuery {
    pub instance_id: String,
    pub database: String,
    pub window: TimeWindow,
    pub user: Option<String>,
    pub condition: Option<QueryCondition>,
}

impl RecordQuery {
    pub fn from_params(p: &Params, now: DateTime<Utc>) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            database: p.required("Database")?.to_owned(),
            window: window(p, now)?,
            user: p.optional("User").map(str::to_owned),
            condition: p.parsed("QueryCondition")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDiagnosisRecordsRequest {
    pub query: RecordQuery,
    pub keyword: Option<String>,
    pub order: RecordOrder,
    pub page_number: u32,
    pub page_size: u32,
}

impl DescribeDiagnosisRecordsRequest {
    pub fn from_params(p: &Params, now: DateTime<Utc>) -> Result<Self, ApiError> {
        Ok(Self {
            query: RecordQuery::from_params(p, now)?,
            keyword: p.optional("Keyword").map(str::to_owned),
            order: p.parsed("Order")?.unwrap_or_default(),
            page_number: p.positive_int("PageNumber", 1, 1_000_000)?,
            page_size: p.page_size()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDiagnosisSQLInfoRequest {
    pub instance_id: String,
    pub database: String,
    pub query_id: String,
}

impl DescribeDiagnosisSQLInfoRequest {
    pub fn from_params(p: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            database: p.required("Database")?.to_owned(),
            // The SDK model spells it QueryID; accept the QueryId spelling people also write.
            query_id: match p.optional("QueryId") {
                Some(v) if p.get("QueryID").is_none() => v.to_owned(),
                _ => p.required("QueryID")?.to_owned(),
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDiagnosisDimensionsRequest {
    pub instance_id: String,
    /// Not in the SDK model; when StartTime/EndTime are given, only that window counts.
    pub window: Option<TimeWindow>,
}

impl DescribeDiagnosisDimensionsRequest {
    pub fn from_params(p: &Params, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let windowed = p.optional("StartTime").is_some() || p.optional("EndTime").is_some();
        Ok(Self {
            instance_id: p.required("DBInstanceId")?.to_owned(),
            window: if windowed {
                Some(window(p, now)?)
            } else {
                None
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeDiagnosisMonitorPerformanceRequest {
    pub query: RecordQuery,
}

impl DescribeDiagnosisMonitorPerformanceRequest {
    pub fn from_params(p: &Params, now: DateTime<Utc>) -> Result<Self, ApiError> {
        Ok(Self {
            query: RecordQuery::from_params(p, now)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDiagnosisRecordsResponse {
    pub items: Vec<DiagnosisItem>,
    pub page_number: u32,
    pub total_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisItem {
    #[serde(rename = "Database")]
    pub database: String,
    /// Whole seconds.
    #[serde(rename = "Duration")]
    pub duration: i64,
    #[serde(rename = "QueryID")]
    pub query_id: String,
    #[serde(rename = "SQLStmt")]
    pub sql_stmt: String,
    #[serde(rename = "SQLTruncated")]
    pub sql_truncated: bool,
    #[serde(rename = "SQLTruncatedThreshold")]
    pub sql_truncated_threshold: u32,
    #[serde(rename = "SessionID")]
    pub session_id: String,
    /// Epoch milliseconds.
    #[serde(rename = "StartTime")]
    pub start_time: i64,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "User")]
    pub user: String,
}

impl DiagnosisItem {
    pub fn from_record(r: &QueryRecord) -> Self {
        let (sql_stmt, sql_truncated) = match r.sql.char_indices().nth(SQL_TRUNCATED_THRESHOLD) {
            Some((cut, _)) => (r.sql[..cut].to_owned(), true),
            None => (r.sql.clone(), false),
        };
        Self {
            database: r.database.clone(),
            duration: r.duration_ms / 1000,
            query_id: r.query_id.clone(),
            sql_stmt,
            sql_truncated,
            sql_truncated_threshold: SQL_TRUNCATED_THRESHOLD as u32,
            session_id: r.session_id.clone(),
            start_time: r.start_time.timestamp_millis(),
            status: r.status.as_str().into(),
            user: r.user.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeDiagnosisSQLInfoResponse {
    #[serde(rename = "Database")]
    pub database: String,
    #[serde(rename = "Duration")]
    pub duration: i64,
    #[serde(rename = "MaxOutputRows")]
    pub max_output_rows: String,
    #[serde(rename = "QueryID")]
    pub query_id: String,
    /// The plan as a JSON string (EXPLAIN FORMAT JSON), empty when none was captured.
    #[serde(rename = "QueryPlan")]
    pub query_plan: String,
    #[serde(rename = "SQLStmt")]
    pub sql_stmt: String,
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "SortedMetrics")]
    pub sorted_metrics: String,
    #[serde(rename = "StartTime")]
    pub start_time: i64,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "TextPlan")]
    pub text_plan: String,
    #[serde(rename = "User")]
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDiagnosisDimensionsResponse {
    pub databases: Vec<String>,
    pub user_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeDiagnosisMonitorPerformanceResponse {
    pub performances: Vec<Performance>,
    pub performances_threshold: u32,
    pub performances_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    /// Milliseconds.
    #[serde(rename = "Cost")]
    pub cost: i64,
    #[serde(rename = "Database")]
    pub database: String,
    #[serde(rename = "QueryID")]
    pub query_id: String,
    #[serde(rename = "StartTime")]
    pub start_time: i64,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "User")]
    pub user: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn windows_default_to_the_last_hour_and_must_be_ordered() {
        let w = window(&params(&[]), now()).unwrap();
        assert_eq!((w.start, w.end), (now() - Duration::hours(1), now()));
        let w = window(
            &params(&[
                ("StartTime", "2022-05-07T06:59Z"),
                ("EndTime", "2022-05-07T07:00:30Z"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(w.end.timestamp() - w.start.timestamp(), 90);
        for (start, end) in [
            ("2022-05-07T07:00Z", "2022-05-07T07:00Z"),
            ("2022-05-07T08:00Z", "2022-05-07T07:00Z"),
        ] {
            let err =
                window(&params(&[("StartTime", start), ("EndTime", end)]), now()).unwrap_err();
            assert!(err.message.contains("EndTime"), "{}", err.message);
        }
        assert!(window(&params(&[("StartTime", "yesterday")]), now()).is_err());
    }

    #[test]
    fn long_sql_is_cut_at_5120_characters_not_bytes() {
        let mut r = QueryRecord {
            instance: "i".into(),
            query_id: "q".into(),
            session_id: "s".into(),
            database: "d".into(),
            user: "u".into(),
            start_time: now(),
            duration_ms: 2999,
            status: gpdiag_core::QueryStatus::Finished,
            error: None,
            sql: "中".repeat(5120),
            plan_json: None,
            plan_text: None,
            rows: None,
            source: "t".into(),
            ..Default::default()
        };
        let item = DiagnosisItem::from_record(&r);
        assert!(!item.sql_truncated);
        assert_eq!(item.duration, 2);
        r.sql.push('x');
        let item = DiagnosisItem::from_record(&r);
        assert!(item.sql_truncated);
        assert_eq!(item.sql_stmt.chars().count(), 5120);
    }

    #[test]
    fn query_id_is_accepted_in_both_spellings() {
        let base = [("DBInstanceId", "gp"), ("Database", "d")];
        let with = |extra: (&str, &str)| {
            let mut all = base.to_vec();
            all.push(extra);
            DescribeDiagnosisSQLInfoRequest::from_params(&params(&all))
        };
        assert_eq!(with(("QueryID", "a")).unwrap().query_id, "a");
        assert_eq!(with(("QueryId", "b")).unwrap().query_id, "b");
        assert!(DescribeDiagnosisSQLInfoRequest::from_params(&params(&base)).is_err());
    }
}
