//! `gpdiag records import`: JSON lines (one record per line, fields named as in `QueryRecord`)
//! or the CSV that exports write (header in any `Lang`), parsed on a blocking thread and
//! upserted in batches, so a file of any size is imported in bounded memory.

use chrono::{DateTime, Utc};
use gpdiag_core::{Column, Lang, QueryRecord, QueryStatus};
use gpdiag_store::{Store, StoreError};
use serde::Deserialize;
use std::io::{BufRead, Read};
use tokio::sync::mpsc;

/// Records written per transaction.
pub const BATCH: usize = 5_000;

/// The `source` of imported records that name none.
pub const DEFAULT_SOURCE: &str = "import";

/// What to do with a line that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadLine {
    /// Report it and stop; records before it stay imported.
    Stop,
    /// Report it, skip it and go on.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based; for CSV the line where the record starts.
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: u64,
    /// Every bad line, in order; with `OnBadLine::Stop` at most one.
    pub bad_lines: Vec<BadLine>,
    /// Set when the import stopped at a bad line.
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the input: {0}")]
    Read(String),
    #[error("the input is neither JSON lines nor a gpdiag CSV export (its first line is no recognised header)")]
    UnknownFormat,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A JSON line, field for field. Unknown fields are refused so that a typo is not silently lost.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    #[serde(default)]
    instance: Option<String>,
    query_id: String,
    #[serde(default)]
    session_id: String,
    database: String,
    user: String,
    start_time: String,
    duration_ms: i64,
    status: String,
    #[serde(default)]
    error: Option<String>,
    sql: String,
    #[serde(default)]
    plan_json: Option<String>,
    #[serde(default)]
    plan_text: Option<String>,
    #[serde(default)]
    rows: Option<i64>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    pg_query_id: Option<i64>,
    #[serde(default)]
    duration_us: Option<i64>,
    #[serde(default)]
    sql_truncated: bool,
    #[serde(default)]
    parameters: Option<String>,
}

/// The common checks of both formats.
struct Fields<'a> {
    query_id: String,
    session_id: String,
    database: String,
    user: String,
    start_time: &'a str,
    duration_ms: i64,
    status: &'a str,
    sql: String,
}

fn build(instance: &str, f: Fields<'_>) -> Result<QueryRecord, String> {
    if f.query_id.is_empty() {
        return Err("query_id is empty".into());
    }
    if f.database.is_empty() {
        return Err("database is empty".into());
    }
    if f.duration_ms < 0 {
        return Err(format!("duration_ms {} is negative", f.duration_ms));
    }
    let start_time = DateTime::parse_from_rfc3339(f.start_time)
        .map_err(|_| {
            format!(
                "start_time {:?} is not RFC 3339 (e.g. 2026-11-01T10:00:00.123Z)",
                clip(f.start_time)
            )
        })?
        .with_timezone(&Utc);
    // Storage keeps milliseconds; drop finer digits here so a round trip is exact.
    let start_time =
        DateTime::from_timestamp_millis(start_time.timestamp_millis()).unwrap_or(start_time);
    let status: QueryStatus = f
        .status
        .parse()
        .map_err(|_| format!("status {:?} is not running or finished", clip(f.status)))?;
    Ok(QueryRecord {
        instance: instance.to_owned(),
        query_id: f.query_id,
        session_id: f.session_id,
        database: f.database,
        user: f.user,
        start_time,
        duration_ms: f.duration_ms,
        status,
        error: None,
        sql: f.sql,
        plan_json: None,
        plan_text: None,
        rows: None,
        source: DEFAULT_SOURCE.into(),
        ..Default::default()
    })
}

/// A record no store can hold is a bad line, not a failed import.
fn storable(record: QueryRecord) -> Result<QueryRecord, String> {
    match record.field_with_nul() {
        Some(field) => Err(format!(
            "{field} contains a NUL character (U+0000), which cannot be stored"
        )),
        None => Ok(record),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_json_line(instance: &str, line: &str) -> Result<QueryRecord, String> {
    let j: JsonRecord =
        serde_json::from_str(line).map_err(|e| format!("not a valid record: {e}"))?;
    if let Some(other) = j.instance.as_deref().filter(|i| *i != instance) {
        return Err(format!(
            "the record belongs to instance {:?}, not {instance:?}",
            clip(other)
        ));
    }
    let mut record = build(
        instance,
        Fields {
            query_id: j.query_id,
            session_id: j.session_id,
            database: j.database,
            user: j.user,
            start_time: &j.start_time,
            duration_ms: j.duration_ms,
            status: &j.status,
            sql: j.sql,
        },
    )?;
    record.error = j.error;
    record.plan_json = j.plan_json;
    record.plan_text = j.plan_text;
    record.rows = j.rows;
    record.pg_query_id = j.pg_query_id;
    record.duration_us = j.duration_us;
    record.sql_truncated = j.sql_truncated;
    record.parameters = j.parameters;
    if let Some(source) = j.source {
        record.source = source;
    }
    Ok(record)
}

fn parse_csv_row(instance: &str, row: &csv::StringRecord) -> Result<QueryRecord, String> {
    if row.len() != Column::ALL.len() {
        return Err(format!(
            "expected {} fields, found {}",
            Column::ALL.len(),
            row.len()
        ));
    }
    let field = |c: Column| {
        row.get(Column::ALL.iter().position(|x| *x == c).unwrap_or(0))
            .unwrap_or("")
    };
    let duration = field(Column::DurationMs);
    build(
        instance,
        Fields {
            query_id: field(Column::QueryId).to_owned(),
            session_id: field(Column::SessionId).to_owned(),
            database: field(Column::Database).to_owned(),
            user: field(Column::User).to_owned(),
            start_time: field(Column::StartTime),
            duration_ms: duration.parse().map_err(|_| {
                format!(
                    "duration {:?} is not a whole number of milliseconds",
                    clip(duration)
                )
            })?,
            status: field(Column::Status),
            sql: field(Column::Sql).to_owned(),
        },
    )
}

/// One parsed item on its way from the reader thread to the writer.
enum Item {
    Batch(Vec<QueryRecord>),
    Bad(BadLine),
}

/// Imports everything `input` holds into `instance`. `progress` is told the running total.
pub async fn import<R: Read + Send + 'static>(
    input: R,
    instance: &str,
    store: &dyn Store,
    on_bad_line: OnBadLine,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let (tx, mut rx) = mpsc::channel::<Result<Item, ImportError>>(4);
    let owned_instance = instance.to_owned();
    let reader =
        tokio::task::spawn_blocking(move || parse_all(input, &owned_instance, on_bad_line, &tx));
    let mut report = ImportReport::default();
    while let Some(item) = rx.recv().await {
        match item? {
            Item::Batch(batch) => {
                report.imported += store.upsert_records(batch).await?;
                progress(report.imported);
            }
            Item::Bad(bad) => {
                report.bad_lines.push(bad);
                if on_bad_line == OnBadLine::Stop {
                    report.stopped = true;
                    break;
                }
            }
        }
    }
    drop(rx);
    // The reader ends on its own once the channel closes.
    let _ = reader.await;
    Ok(report)
}

/// Runs on a blocking thread: detects the format, parses, and sends batches in file order.
fn parse_all<R: Read>(
    input: R,
    instance: &str,
    on_bad_line: OnBadLine,
    tx: &mpsc::Sender<Result<Item, ImportError>>,
) {
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let first = match input.fill_buf() {
        Ok(buf) => buf.iter().copied().find(|b| !b.is_ascii_whitespace()),
        Err(e) => {
            let _ = tx.blocking_send(Err(ImportError::Read(e.to_string())));
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    let emit = |item: Result<QueryRecord, BadLine>, batch: &mut Vec<QueryRecord>| -> bool {
        match item {
            Ok(record) => {
                batch.push(record);
                if batch.len() == BATCH {
                    return tx
                        .blocking_send(Ok(Item::Batch(std::mem::take(batch))))
                        .is_ok();
                }
                true
            }
            Err(bad) => {
                // Records before a bad line are written first, so `Stop` keeps them.
                if !batch.is_empty()
                    && tx
                        .blocking_send(Ok(Item::Batch(std::mem::take(batch))))
                        .is_err()
                {
                    return false;
                }
                tx.blocking_send(Ok(Item::Bad(bad))).is_ok() && on_bad_line == OnBadLine::Skip
            }
        }
    };
    match first {
        None => {}
        Some(b'{') => {
            let mut raw = Vec::new();
            let mut number = 0u64;
            loop {
                raw.clear();
                number += 1;
                match input.read_until(b'\n', &mut raw) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(ImportError::Read(e.to_string())));
                        return;
                    }
                }
                let item = match std::str::from_utf8(&raw) {
                    Err(_) => Err(BadLine {
                        line: number,
                        reason: "the line is not valid UTF-8".into(),
                    }),
                    Ok(text) => {
                        let text = text.trim_end_matches(['\n', '\r']);
                        if text.trim().is_empty() {
                            continue;
                        }
                        parse_json_line(instance, text)
                            .and_then(storable)
                            .map_err(|reason| BadLine {
                                line: number,
                                reason,
                            })
                    }
                };
                if !emit(item, &mut batch) {
                    return;
                }
            }
        }
        Some(_) => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(input);
            let mut rows = csv.records();
            match rows.next() {
                Some(Ok(header))
                    if Lang::of_header(&header.iter().collect::<Vec<_>>()).is_some() => {}
                _ => {
                    let _ = tx.blocking_send(Err(ImportError::UnknownFormat));
                    return;
                }
            }
            for row in rows {
                let item = match row {
                    Ok(row) => {
                        let line = row.position().map_or(0, |p| p.line());
                        parse_csv_row(instance, &row)
                            .and_then(storable)
                            .map_err(|reason| BadLine { line, reason })
                    }
                    Err(e) => Err(BadLine {
                        line: e.position().map_or(0, |p| p.line()),
                        reason: format!("not valid CSV: {e}"),
                    }),
                };
                if !emit(item, &mut batch) {
                    return;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(Item::Batch(batch)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_with_optional_fields() {
        let r = parse_json_line(
            "gp-1",
            r#"{"query_id":"q1","database":"d","user":"u","start_time":"2026-11-01T10:00:00.1239Z","duration_ms":5,"status":"finished","sql":"select 1","rows":3}"#,
        )
        .unwrap();
        assert_eq!(r.start_time.timestamp_millis() % 1000, 123);
        assert_eq!(
            (r.rows, r.source.as_str(), r.session_id.as_str()),
            (Some(3), DEFAULT_SOURCE, "")
        );
    }

    #[test]
    fn bad_json_lines_say_why() {
        for (line, why) in [
            (
                r#"{"query_id":"q","database":"d","user":"u","start_time":"yesterday","duration_ms":1,"status":"finished","sql":""}"#,
                "start_time",
            ),
            (
                r#"{"query_id":"q","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":-1,"status":"finished","sql":""}"#,
                "negative",
            ),
            (
                r#"{"query_id":"q","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":1,"status":"done","sql":""}"#,
                "status",
            ),
            (
                r#"{"query_id":"q","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":1,"status":"finished","sql":"","colour":1}"#,
                "colour",
            ),
            (
                r#"{"instance":"gp-2","query_id":"q","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":1,"status":"finished","sql":""}"#,
                "gp-2",
            ),
            (
                r#"{"query_id":"","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":1,"status":"finished","sql":""}"#,
                "query_id",
            ),
            ("{not json", "valid"),
            (
                r#"{"query_id":"q","database":"d","user":"u","start_time":"2026-11-01T10:00:00Z","duration_ms":1,"status":"finished","sql":"","plan_text":"a\u0000b"}"#,
                "plan_text contains a NUL",
            ),
        ] {
            let err = parse_json_line("gp-1", line)
                .and_then(storable)
                .unwrap_err();
            assert!(err.contains(why), "{err} lacks {why}");
        }
    }
}
