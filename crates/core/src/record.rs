//! Query records and the ways the diagnosis API selects them: the time window, the
//! `QueryCondition` grammar, the `Order` list and the keyword.

use crate::instance::ParseError;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::str::FromStr;

/// Whether a query was still running when it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QueryStatus {
    Running,
    #[default]
    Finished,
}

impl QueryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
        }
    }
}

impl FromStr for QueryStatus {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "running" => Ok(Self::Running),
            "finished" => Ok(Self::Finished),
            _ => Err(ParseError {
                what: "status",
                value: s.to_owned(),
                reason: "expected running or finished",
            }),
        }
    }
}

/// One execution of one statement on one instance. `(instance, query_id)` identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryRecord {
    pub instance: String,
    /// Unique per execution (not PostgreSQL's per-shape `query_id`).
    pub query_id: String,
    pub session_id: String,
    pub database: String,
    pub user: String,
    /// UTC, millisecond precision.
    pub start_time: DateTime<Utc>,
    pub duration_ms: i64,
    pub status: QueryStatus,
    /// Set for executions that failed; they stay `finished` on the wire.
    pub error: Option<String>,
    /// The full text, never truncated in storage.
    pub sql: String,
    pub plan_json: Option<String>,
    pub plan_text: Option<String>,
    pub rows: Option<i64>,
    /// Where the record came from (`import`, `csvlog`, `pg_stat_activity`, …).
    pub source: String,
    /// PostgreSQL's own `query_id`: the statement's shape, shared by all its executions.
    pub pg_query_id: Option<i64>,
    /// The exact duration where the source gives microseconds (server logs do).
    pub duration_us: Option<i64>,
    /// The SQL text is known or suspected to be cut: a log record over the size cap, or
    /// `pg_stat_activity`'s `track_activity_query_size`.
    pub sql_truncated: bool,
    /// Bind parameters of an extended-protocol execution, as the server logged them.
    pub parameters: Option<String>,
}

impl QueryRecord {
    /// The first text field holding U+0000, which no store can keep (PostgreSQL refuses it
    /// in text); such a record is refused where it enters.
    pub fn field_with_nul(&self) -> Option<&'static str> {
        [
            ("query_id", Some(&self.query_id)),
            ("session_id", Some(&self.session_id)),
            ("database", Some(&self.database)),
            ("user", Some(&self.user)),
            ("sql", Some(&self.sql)),
            ("source", Some(&self.source)),
            ("error", self.error.as_ref()),
            ("plan_json", self.plan_json.as_ref()),
            ("plan_text", self.plan_text.as_ref()),
            ("parameters", self.parameters.as_ref()),
        ]
        .into_iter()
        .find_map(|(name, text)| text.filter(|t| t.contains('\0')).map(|_| name))
    }
}

/// A half-open window `[start, end)` with `end > start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ParseError> {
        if end <= start {
            return Err(ParseError {
                what: "EndTime",
                value: format_api_time(end),
                reason: "EndTime must be after StartTime",
            });
        }
        Ok(Self { start, end })
    }
}

/// Parses the API's request time: `yyyy-MM-ddTHH:mmZ`, also `yyyy-MM-ddTHH:mm:ssZ`, UTC.
pub fn parse_api_time(what: &'static str, s: &str) -> Result<DateTime<Utc>, ParseError> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%MZ")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ"))
        .map(|t| t.and_utc())
        .map_err(|_| ParseError {
            what,
            value: s.chars().take(64).collect(),
            reason: "expected yyyy-MM-ddTHH:mmZ or yyyy-MM-ddTHH:mm:ssZ in UTC",
        })
}

pub fn format_api_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `QueryCondition` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryCondition {
    /// The N longest queries.
    MaxCost(u32),
    Status(QueryStatus),
    /// `min <= duration_ms < max`; at least one bound. The documented wording of
    /// DownloadDiagnosisRecords ("200 ms or more and less than 1 minute") fixes the boundaries.
    Cost {
        min: Option<i64>,
        max: Option<i64>,
    },
}

/// The largest N `maxCost` accepts.
pub const MAX_COST_LIMIT: u32 = 10_000;

impl FromStr for QueryCondition {
    type Err = ParseError;

    /// Parses the JSON object. Numbers may be JSON strings (as in every documented example) or
    /// JSON numbers; key order and whitespace do not matter.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError {
            what: "QueryCondition",
            value: s.chars().take(200).collect(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(s).map_err(|_| bad("not a JSON object"))?;
        let object = value.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let field = |name: &str| object.get(name);
        let number = |name: &str| -> Result<Option<i64>, ParseError> {
            match field(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => s
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| bad("Min, Max and Value must be whole numbers")),
                Some(serde_json::Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| bad("Min, Max and Value must be whole numbers")),
                Some(_) => Err(bad("Min, Max and Value must be whole numbers")),
            }
        };
        match field("Type").and_then(|t| t.as_str()) {
            Some("maxCost") => {
                let n = number("Value")?.ok_or_else(|| bad("maxCost needs a Value"))?;
                if !(1..=i64::from(MAX_COST_LIMIT)).contains(&n) {
                    return Err(bad("maxCost Value must be from 1 to 10000"));
                }
                Ok(Self::MaxCost(n as u32))
            }
            Some("status") => match field("Value").and_then(|v| v.as_str()) {
                Some("running") => Ok(Self::Status(QueryStatus::Running)),
                Some("finished") => Ok(Self::Status(QueryStatus::Finished)),
                _ => Err(bad("status Value must be running or finished")),
            },
            Some("cost") => {
                let (min, max) = (number("Min")?, number("Max")?);
                if min.is_none() && max.is_none() {
                    return Err(bad("cost needs Min, Max or both"));
                }
                if min.is_some_and(|m| m < 0) || max.is_some_and(|m| m < 0) {
                    return Err(bad("Min and Max cannot be negative"));
                }
                if let (Some(lo), Some(hi)) = (min, max) {
                    if lo > hi {
                        return Err(bad("Min cannot be greater than Max"));
                    }
                }
                Ok(Self::Cost { min, max })
            }
            Some(_) => Err(bad("Type must be maxCost, status or cost")),
            None => Err(bad("Type is missing")),
        }
    }
}

impl std::fmt::Display for QueryCondition {
    /// The canonical JSON form, which `FromStr` reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxCost(n) => write!(f, r#"{{"Type":"maxCost","Value":"{n}"}}"#),
            Self::Status(s) => write!(f, r#"{{"Type":"status","Value":"{}"}}"#, s.as_str()),
            Self::Cost { min, max } => {
                f.write_str(r#"{"Type":"cost""#)?;
                if let Some(min) = min {
                    write!(f, r#","Min":"{min}""#)?;
                }
                if let Some(max) = max {
                    write!(f, r#","Max":"{max}""#)?;
                }
                f.write_str("}")
            }
        }
    }
}

/// What a listing is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderField {
    #[default]
    StartTime,
    Duration,
}

/// The `Order` parameter: `[{"Field":"StartTime","Type":"Desc"}]` (fields `StartTime` or
/// `Duration`, types `Asc` or `Desc`); newest first when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOrder {
    pub field: OrderField,
    pub descending: bool,
}

impl Default for RecordOrder {
    fn default() -> Self {
        Self {
            field: OrderField::StartTime,
            descending: true,
        }
    }
}

impl FromStr for RecordOrder {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |reason| ParseError {
            what: "Order",
            value: s.chars().take(200).collect(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_str(s)
            .map_err(|_| bad("expected [{\"Field\":\"StartTime\",\"Type\":\"Desc\"}]"))?;
        let first = match &value {
            serde_json::Value::Array(items) if items.len() == 1 => &items[0],
            serde_json::Value::Object(_) => &value,
            _ => return Err(bad("expected one {\"Field\":…,\"Type\":…} object")),
        };
        let field = match first.get("Field").and_then(|f| f.as_str()) {
            Some("StartTime") => OrderField::StartTime,
            Some("Duration") | Some("Cost") => OrderField::Duration,
            _ => return Err(bad("Field must be StartTime or Duration")),
        };
        let descending = match first.get("Type").and_then(|t| t.as_str()) {
            None => true,
            Some(t) if t.eq_ignore_ascii_case("desc") => true,
            Some(t) if t.eq_ignore_ascii_case("asc") => false,
            Some(_) => return Err(bad("Type must be Asc or Desc")),
        };
        Ok(Self { field, descending })
    }
}

impl std::fmt::Display for RecordOrder {
    /// The canonical JSON form, which `FromStr` reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self.field {
            OrderField::StartTime => "StartTime",
            OrderField::Duration => "Duration",
        };
        let kind = if self.descending { "Desc" } else { "Asc" };
        write!(f, r#"[{{"Field":"{field}","Type":"{kind}"}}]"#)
    }
}

/// Everything that selects records for a listing or an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    pub instance: String,
    /// Every database when `None` (slow-SQL exports may leave it open).
    pub database: Option<String>,
    pub window: TimeWindow,
    pub user: Option<String>,
    /// A literal, case-insensitive substring of the SQL text: no wildcards.
    pub keyword: Option<String>,
    pub condition: Option<QueryCondition>,
}

impl RecordFilter {
    /// The reference semantics every store must match: used by tests and by the conformance
    /// suite to compute expectations independently of SQL.
    pub fn matches(&self, r: &QueryRecord) -> bool {
        r.instance == self.instance
            && self.database.as_ref().is_none_or(|d| *d == r.database)
            && r.start_time >= self.window.start
            && r.start_time < self.window.end
            && self.user.as_ref().is_none_or(|u| *u == r.user)
            && self
                .keyword
                .as_ref()
                .is_none_or(|k| contains_case_insensitive(&r.sql, k))
            && match self.condition {
                None | Some(QueryCondition::MaxCost(_)) => true,
                Some(QueryCondition::Status(s)) => r.status == s,
                Some(QueryCondition::Cost { min, max }) => {
                    min.is_none_or(|m| r.duration_ms >= m) && max.is_none_or(|m| r.duration_ms < m)
                }
            }
    }
}

/// Case-insensitive substring test with Unicode simple lower-casing, the same rule the stores
/// implement.
pub fn contains_case_insensitive(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_query_conditions_parse() {
        let c = |s: &str| s.parse::<QueryCondition>();
        assert_eq!(
            c(r#"{"Type":"maxCost", "Value":"100"}"#),
            Ok(QueryCondition::MaxCost(100))
        );
        assert_eq!(
            c(r#"{"Type":"status","Value":"finished"}"#),
            Ok(QueryCondition::Status(QueryStatus::Finished))
        );
        assert_eq!(
            c(r#"{"Type":"status","Value":"running"}"#),
            Ok(QueryCondition::Status(QueryStatus::Running))
        );
        assert_eq!(
            c(r#"{"Type":"cost","Max":"200"}"#),
            Ok(QueryCondition::Cost {
                min: None,
                max: Some(200)
            })
        );
        assert_eq!(
            c(r#"{"Type":"cost","Min":"200","Max":"60000"}"#),
            Ok(QueryCondition::Cost {
                min: Some(200),
                max: Some(60000)
            })
        );
        assert_eq!(
            c(r#"{"Type":"cost","Min":"60000"}"#),
            Ok(QueryCondition::Cost {
                min: Some(60000),
                max: None
            })
        );
        assert_eq!(
            c(r#" { "Max" : 50, "Type" : "cost", "Min" : 30 } "#),
            Ok(QueryCondition::Cost {
                min: Some(30),
                max: Some(50)
            })
        );
    }

    #[test]
    fn bad_query_conditions_are_refused() {
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"Type":"fast"}"#,
            r#"{"Value":"1"}"#,
            r#"{"Type":"maxCost"}"#,
            r#"{"Type":"maxCost","Value":"0"}"#,
            r#"{"Type":"maxCost","Value":"-1"}"#,
            r#"{"Type":"maxCost","Value":"ten"}"#,
            r#"{"Type":"status","Value":"done"}"#,
            r#"{"Type":"cost"}"#,
            r#"{"Type":"cost","Min":"-1"}"#,
            r#"{"Type":"cost","Min":"9","Max":"3"}"#,
            r#"{"Type":"cost","Min":"1.5"}"#,
            r#"{"Type":"cost","Min":true}"#,
        ] {
            assert!(bad.parse::<QueryCondition>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn api_times_take_minutes_or_seconds() {
        assert_eq!(
            format_api_time(parse_api_time("StartTime", "2022-05-07T06:59Z").unwrap()),
            "2022-05-07T06:59:00Z"
        );
        assert_eq!(
            format_api_time(parse_api_time("StartTime", "2022-05-07T06:59:30Z").unwrap()),
            "2022-05-07T06:59:30Z"
        );
        for bad in [
            "2022-05-07",
            "2022-05-07T06:59",
            "2022-05-07 06:59Z",
            "2022-05-07T25:00Z",
            "1651906740000",
        ] {
            assert!(parse_api_time("StartTime", bad).is_err(), "{bad}");
        }
        let t = parse_api_time("x", "2022-05-07T06:59Z").unwrap();
        assert!(TimeWindow::new(t, t).is_err());
    }

    #[test]
    fn order_parses_the_console_form() {
        assert_eq!(
            r#"[{"Field":"Duration","Type":"Asc"}]"#.parse(),
            Ok(RecordOrder {
                field: OrderField::Duration,
                descending: false
            })
        );
        assert_eq!(
            r#"{"Field":"StartTime"}"#.parse(),
            Ok(RecordOrder::default())
        );
        assert!(r#"[{"Field":"User"}]"#.parse::<RecordOrder>().is_err());
        assert!("StartTime".parse::<RecordOrder>().is_err());
    }

    #[test]
    fn conditions_and_orders_round_trip_through_their_json() {
        for c in [
            QueryCondition::MaxCost(7),
            QueryCondition::Status(QueryStatus::Running),
            QueryCondition::Cost {
                min: Some(1),
                max: None,
            },
            QueryCondition::Cost {
                min: None,
                max: Some(9),
            },
            QueryCondition::Cost {
                min: Some(1),
                max: Some(9),
            },
        ] {
            assert_eq!(c.to_string().parse(), Ok(c));
        }
        for field in [OrderField::StartTime, OrderField::Duration] {
            for descending in [true, false] {
                let o = RecordOrder { field, descending };
                assert_eq!(o.to_string().parse(), Ok(o));
            }
        }
    }

    #[test]
    fn keywords_are_literal_and_case_insensitive() {
        assert!(contains_case_insensitive(
            "SELECT * FROM Öl WHERE a LIKE 'x%'",
            "öl"
        ));
        assert!(contains_case_insensitive("a_b", "_"));
        assert!(!contains_case_insensitive("ab", "a_b"));
        assert!(!contains_case_insensitive("abc", "a%c"));
    }
}
