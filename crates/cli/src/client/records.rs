//! `gpdiag records search`: DescribeDiagnosisRecords, every page, as a table, JSON or CSV. The
//! filters are shared with `gpdiag export`.

use super::output::{self, Format};
use super::{time, Client, ClientArgs, Failure, Outcome};
use chrono::{DateTime, Utc};
use clap::Args;
use gpdiag_core::{QueryCondition, QueryStatus};
use gpdiag_wire::api::diagnosis::{DescribeDiagnosisRecordsResponse, DiagnosisItem};
use std::collections::HashSet;

/// The filters of the diagnosis list, as `records search` and `export` take them.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// The instance ID.
    #[arg(long, value_name = "ID")]
    pub instance: String,
    /// The database.
    #[arg(long, value_name = "DB")]
    pub database: String,
    /// Start of the window (queries that started at or after it). Forms: 2026-01-02T08:00Z,
    /// RFC 3339, a date, now, or relative: -6h, -30m, -2d, -1h30m.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub start: String,
    /// End of the window (queries that started before it); same forms as --start.
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        default_value = "now"
    )]
    pub end: String,
    /// Only this database user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only queries that ran at least this many milliseconds.
    #[arg(long, value_name = "MS", conflicts_with_all = ["status", "top"])]
    pub min_ms: Option<u64>,
    /// Only queries that ran less than this many milliseconds.
    #[arg(long, value_name = "MS", conflicts_with_all = ["status", "top"])]
    pub max_ms: Option<u64>,
    /// Only queries in this state.
    #[arg(long, value_enum, conflicts_with = "top")]
    pub status: Option<StatusArg>,
    /// Only the N longest queries (1 to 10000), longest first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub top: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    Running,
    Finished,
}

impl FilterArgs {
    /// The API parameters: DBInstanceId, Database, StartTime, EndTime, User, QueryCondition,
    /// and Order (longest first with --top).
    pub fn params(&self, now: DateTime<Utc>) -> Outcome<Vec<(String, String)>> {
        let (start, end) = time::window(&self.start, &self.end, now).map_err(Failure::usage)?;
        let mut params = super::pairs([
            ("DBInstanceId", self.instance.as_str()),
            ("Database", self.database.as_str()),
            ("StartTime", start.as_str()),
            ("EndTime", end.as_str()),
        ]);
        if let Some(user) = &self.user {
            params.push(("User".into(), user.clone()));
        }
        if let Some(condition) = self.condition()? {
            params.push(("QueryCondition".into(), condition.to_string()));
        }
        if self.top.is_some() {
            params.push((
                "Order".into(),
                r#"[{"Field":"Duration","Type":"Desc"}]"#.into(),
            ));
        }
        Ok(params)
    }

    /// The one QueryCondition the API takes; clap already refused combinations.
    fn condition(&self) -> Outcome<Option<QueryCondition>> {
        let ms = |v: Option<u64>, name: &str| -> Outcome<Option<i64>> {
            v.map(|n| {
                i64::try_from(n).map_err(|_| Failure::usage(format!("--{name} is too large")))
            })
            .transpose()
        };
        let (min, max) = (ms(self.min_ms, "min-ms")?, ms(self.max_ms, "max-ms")?);
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(Failure::usage(format!(
                    "--min-ms ({lo}) must not be greater than --max-ms ({hi})"
                )));
            }
        }
        Ok(if let Some(n) = self.top {
            Some(QueryCondition::MaxCost(n))
        } else if let Some(status) = self.status {
            Some(QueryCondition::Status(match status {
                StatusArg::Running => QueryStatus::Running,
                StatusArg::Finished => QueryStatus::Finished,
            }))
        } else if min.is_some() || max.is_some() {
            Some(QueryCondition::Cost { min, max })
        } else {
            None
        })
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
gpdiag records search --instance gp-bp1analytics01 --database sales --start -6h\n  \
gpdiag records search --instance gp-bp1analytics01 --database sales --start -1d --top 20\n  \
gpdiag records search --instance gp-bp1analytics01 --database sales --start 2026-01-02T00:00Z \\\n    \
--end 2026-01-03T00:00Z --user etl --min-ms 60000 --output csv > slow.csv\n  \
gpdiag records search --instance gp-bp1analytics01 --database sales --start -30m --keyword orders --output json")]
pub struct SearchArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only SQL containing this text (case-insensitive, literal).
    #[arg(long)]
    pub keyword: Option<String>,
    /// table for reading; json (an array of the API's items) or csv for programs.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The largest page DescribeDiagnosisRecords serves.
const PAGE_SIZE: u32 = 100;

const CSV_HEADER: [&str; 9] = [
    "QueryID",
    "SessionID",
    "Database",
    "User",
    "Status",
    "StartTime",
    "Duration",
    "SQLTruncated",
    "SQLStmt",
];

pub async fn run(args: SearchArgs) -> Outcome {
    let mut params = args.filter.params(Utc::now())?;
    let client = Client::from_args(&args.client)?;
    if let Some(keyword) = &args.keyword {
        params.push(("Keyword".into(), keyword.clone()));
    }
    params.push(("PageSize".into(), PAGE_SIZE.to_string()));
    let mut sink = Sink::new(args.output);
    // Records that arrive while paging can shift later pages; a query is printed once.
    let mut seen = HashSet::new();
    let mut printed: u64 = 0;
    'pages: for page in 1u64.. {
        let mut p = params.clone();
        p.push(("PageNumber".into(), page.to_string()));
        let reply: DescribeDiagnosisRecordsResponse =
            client.call("DescribeDiagnosisRecords", &p).await?;
        if reply.items.is_empty() {
            break;
        }
        for item in &reply.items {
            if args.limit.is_some_and(|l| printed >= l) {
                break 'pages;
            }
            if seen.insert(item.query_id.clone()) {
                sink.item(item)?;
                printed += 1;
            }
        }
        if page * u64::from(PAGE_SIZE) >= reply.total_count {
            break;
        }
    }
    sink.finish()?;
    if printed == 0 {
        client.ui.note("no records match");
    }
    Ok(())
}

/// Where items go as they arrive: JSON and CSV stream; a table waits for its widths. Nothing is
/// written before the first answer, so a failed first call leaves standard output empty.
enum Sink {
    Table(Vec<Vec<String>>),
    Json {
        written: u64,
    },
    Csv {
        writer: Box<csv::Writer<std::io::Stdout>>,
        started: bool,
    },
}

fn start_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Sink {
    fn new(format: Format) -> Sink {
        match format {
            Format::Table => Sink::Table(Vec::new()),
            Format::Json => Sink::Json { written: 0 },
            Format::Csv => Sink::Csv {
                writer: Box::new(csv::Writer::from_writer(std::io::stdout())),
                started: false,
            },
        }
    }

    /// The CSV header, once.
    fn csv_header(writer: &mut csv::Writer<std::io::Stdout>, started: &mut bool) -> Outcome {
        if !*started {
            writer.write_record(CSV_HEADER).map_err(csv_failure)?;
            *started = true;
        }
        Ok(())
    }

    fn item(&mut self, item: &DiagnosisItem) -> Outcome {
        match self {
            Sink::Table(rows) => rows.push(vec![
                start_time(item.start_time)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
                format!("{}s", item.duration),
                output::cell(&item.status),
                output::cell(&item.user),
                output::cell(&item.database),
                output::cell(&item.query_id),
                output::shorten(&item.sql_stmt, 80),
            ]),
            Sink::Json { written } => {
                let text = serde_json::to_string(item)
                    .map_err(|e| Failure::io("cannot write JSON", e.into()))?;
                output::print_text(&format!(
                    "{}\n{text}",
                    if *written == 0 { "[" } else { "," }
                ))?;
                *written += 1;
            }
            Sink::Csv { writer: w, started } => {
                Self::csv_header(w, started)?;
                let start = start_time(item.start_time)
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string();
                w.write_record([
                    item.query_id.as_str(),
                    item.session_id.as_str(),
                    item.database.as_str(),
                    item.user.as_str(),
                    item.status.as_str(),
                    start.as_str(),
                    item.duration.to_string().as_str(),
                    if item.sql_truncated { "true" } else { "false" },
                    item.sql_stmt.as_str(),
                ])
                .map_err(csv_failure)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Outcome {
        match self {
            Sink::Table(rows) => output::print_text(&output::table(
                &[
                    "START (UTC)",
                    "DURATION",
                    "STATUS",
                    "USER",
                    "DATABASE",
                    "QUERY ID",
                    "SQL",
                ],
                &rows,
            )),
            Sink::Json { written: 0 } => output::print_text("[]\n"),
            Sink::Json { .. } => output::print_text("\n]\n"),
            Sink::Csv {
                mut writer,
                mut started,
            } => {
                Self::csv_header(&mut writer, &mut started)?;
                writer.flush().map_err(output::stdout_failure)
            }
        }
    }
}

fn csv_failure(e: csv::Error) -> Failure {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => output::stdout_failure(e),
        other => Failure::io(
            "cannot write CSV",
            std::io::Error::other(format!("{other:?}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn filter() -> FilterArgs {
        FilterArgs {
            instance: "gp-1".into(),
            database: "sales".into(),
            start: "-1h".into(),
            end: "now".into(),
            user: None,
            min_ms: None,
            max_ms: None,
            status: None,
            top: None,
        }
    }

    fn param(params: &[(String, String)], name: &str) -> Option<String> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn filters_become_the_documented_parameters() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let p = filter().params(now).unwrap();
        assert_eq!(param(&p, "StartTime").as_deref(), Some("2026-01-01T11:00Z"));
        assert_eq!(param(&p, "EndTime").as_deref(), Some("2026-01-01T12:00Z"));
        assert_eq!(param(&p, "QueryCondition"), None);
        let f = FilterArgs {
            min_ms: Some(200),
            max_ms: Some(60_000),
            user: Some("etl".into()),
            ..filter()
        };
        let p = f.params(now).unwrap();
        assert_eq!(
            param(&p, "QueryCondition").as_deref(),
            Some(r#"{"Type":"cost","Min":"200","Max":"60000"}"#)
        );
        assert_eq!(param(&p, "User").as_deref(), Some("etl"));
        let p = FilterArgs {
            top: Some(20),
            ..filter()
        }
        .params(now)
        .unwrap();
        assert_eq!(
            param(&p, "QueryCondition").as_deref(),
            Some(r#"{"Type":"maxCost","Value":"20"}"#)
        );
        assert!(param(&p, "Order").unwrap().contains("Duration"));
        let p = FilterArgs {
            status: Some(StatusArg::Running),
            ..filter()
        }
        .params(now)
        .unwrap();
        assert_eq!(
            param(&p, "QueryCondition").as_deref(),
            Some(r#"{"Type":"status","Value":"running"}"#)
        );
        let e = FilterArgs {
            min_ms: Some(5),
            max_ms: Some(4),
            ..filter()
        }
        .params(now)
        .unwrap_err();
        assert_eq!(e.exit, super::super::Exit::Usage);
        let e = FilterArgs {
            start: "soon".into(),
            ..filter()
        }
        .params(now)
        .unwrap_err();
        assert!(e.message.contains("soon"), "{}", e.message);
    }
}
